#!/bin/sh
# An `exec` sink program: stores the secret it reads on stdin as
# DIR/<key name>, atomically and readable by its owner only, and records
# which rotation wrote it. Idempotent: running it twice for the same
# rotation leaves the same file. Usage in keyrot.toml:
#   command = ["/usr/local/lib/keyrot/exec-sink-put.sh", "/srv/app/secrets"]
# Replace the body with your own store (kubectl, a config-management push,
# a proprietary vault client); keep reading the secret from stdin.
set -eu
dir="$1"
name="${KEYROT_KEY_NAME:?run by keyrot}"
umask 077
mkdir -p "$dir"
tmp="$dir/.$name.tmp"
cat > "$tmp"
mv "$tmp" "$dir/$name"
printf '%s\n' "$KEYROT_ROTATION_ID" > "$dir/.$name.rotation"
