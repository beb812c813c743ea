#!/bin/sh
# The `read_command` matching exec-sink-put.sh: prints the stored secret
# on stdout so keyrot can compare it (by hash) with the one it issued.
#   read_command = ["/usr/local/lib/keyrot/exec-sink-read.sh", "/srv/app/secrets"]
set -eu
name="${KEYROT_KEY_NAME:?run by keyrot}"
# Only a plain file name stays inside the directory (see exec-sink-put.sh).
case "$name" in
'' | .* | -* | */* | *[[:cntrl:]]*)
    echo "exec-sink-read: refusing a key name that is not a plain file name" >&2
    exit 65
    ;;
esac
cat -- "$1/$name"
