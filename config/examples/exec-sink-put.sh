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
# The name comes from the provider. keyrot refuses names with `/`, control
# characters or a leading `.`, but a program that makes a path of it
# checks for itself: only a plain file name stays inside DIR.
case "$name" in
'' | .* | -* | */* | *[[:cntrl:]]*)
    echo "exec-sink-put: refusing a key name that is not a plain file name" >&2
    exit 65
    ;;
esac
umask 077
mkdir -p "$dir"
# mktemp creates a new file (never opens one that exists, nor a link).
tmp=$(mktemp "$dir/.keyrot-put.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat >"$tmp"
# rename(2) replaces whatever is at the target, a link included, and
# never writes through it.
mv -f -- "$tmp" "$dir/$name"
tmp=$(mktemp "$dir/.keyrot-put.XXXXXX")
printf '%s\n' "$KEYROT_ROTATION_ID" >"$tmp"
mv -f -- "$tmp" "$dir/.$name.rotation"
