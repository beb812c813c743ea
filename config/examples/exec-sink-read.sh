#!/bin/sh
# The `read_command` matching exec-sink-put.sh: prints the stored secret
# on stdout so keyrot can compare it (by hash) with the one it issued.
#   read_command = ["/usr/local/lib/keyrot/exec-sink-read.sh", "/srv/app/secrets"]
set -eu
cat "$1/${KEYROT_KEY_NAME:?run by keyrot}"
