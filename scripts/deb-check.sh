#!/usr/bin/env bash
# Installs keyrot's Debian package on this machine (as root), checks what it
# installed, and purges it again, leaving the machine as it found it (a trap
# purges and removes what the check created, also on failure).
#
#   1. builds the .deb (scripts/package.sh) and purges an earlier install;
#   2. install: binary and version, unit, conffile, man pages, completions,
#      sysusers/tmpfiles, the keyrot user and /var/lib/keyrot (0700 keyrot);
#      `systemd-analyze verify` without a single warning about the unit, and
#      `systemd-analyze security --offline=true` at or under the exposure
#      budget; the unit's ExecStartPre and ExecStart command lines as the
#      keyrot user: the check passes, the daemon refuses to start without
#      its master key credential;
#   3. purge with no state: every file of the package is gone, and so is the
#      empty /var/lib/keyrot; the keyrot user stays (postrm says why);
#   4. reinstall; `keyrot init`, a drop-in with a key, the daemon run by hand
#      exactly as ExecStart= (keyrot user, master key as a credential): it
#      issues the key into the file sink and answers `keyrot status`; an
#      upgrade keeps an edited conffile; purge keeps the store and master key
#      and says so.
# Needs root, dpkg, systemd-analyze (systemd need not run), setpriv, man.
# KEYROT_MAX_EXPOSURE (default 1.5) is the exposure budget.
# Ends with "deb-check: N passed, M failed"; exits 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

max_exposure="${KEYROT_MAX_EXPOSURE:-1.5}"
unit=/usr/lib/systemd/system/keyrot.service
conf=/etc/keyrot/keyrot.toml
passed=0
failed=0
daemon_pid=""
tmp="$(mktemp -d)"

ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
# check DESCRIPTION COMMAND...: runs the command, counts the result.
check() {
  local what="$1"
  shift
  if "$@" >"$tmp/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/    /' "$tmp/out"; fi
}
die() { echo "deb-check: $*" >&2; exit 1; }
installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' keyrot 2>/dev/null || true)" == installed ]]; }
# The daemon, as the unit runs it: keyrot user and group, a clean
# environment, UMask=0077, the master key as a credential when $1 names a
# directory.
as_unit() {
  local creds="$1"
  shift
  (
    umask 0077
    exec setpriv --reuid=keyrot --regid=keyrot --init-groups -- \
      env -i PATH=/usr/bin:/bin ${creds:+CREDENTIALS_DIRECTORY="$creds"} "$@"
  )
}

[[ "$(id -u)" == 0 ]] || die "needs root (dpkg -i)"
for tool in dpkg dpkg-deb dpkg-query systemd-analyze setpriv man; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done

# What was here before, so the cleanup removes only what this run made.
if installed; then
  echo "deb-check: purging an earlier keyrot install"
  dpkg --purge keyrot
fi
if [[ -n "$(ls -A /var/lib/keyrot 2>/dev/null)" || -e /etc/keyrot/master.key ]]; then
  die "/var/lib/keyrot or /etc/keyrot/master.key holds a key store: not touching this machine"
fi
had_user=no
getent passwd keyrot >/dev/null && had_user=yes
had_group=no
getent group keyrot >/dev/null && had_group=yes
had_etc=no
[[ -e /etc/keyrot ]] && had_etc=yes
had_state=no
[[ -e /var/lib/keyrot ]] && had_state=yes
had_run=no
[[ -e /run/keyrot ]] && had_run=yes

cleanup() {
  local rc=$?
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if installed || dpkg-query -W keyrot >/dev/null 2>&1; then
    dpkg --purge keyrot >/dev/null 2>&1 || echo "deb-check: cleanup: dpkg --purge keyrot failed" >&2
  fi
  [[ "$had_etc" == no ]] && rm -rf /etc/keyrot
  [[ "$had_state" == no ]] && rm -rf /var/lib/keyrot
  [[ "$had_run" == no ]] && rm -rf /run/keyrot
  if [[ "$had_user" == no ]] && getent passwd keyrot >/dev/null; then
    userdel keyrot 2>/dev/null || echo "deb-check: cleanup: userdel keyrot failed" >&2
  fi
  if [[ "$had_group" == no ]] && getent group keyrot >/dev/null; then
    groupdel keyrot 2>/dev/null || echo "deb-check: cleanup: groupdel keyrot failed" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$SECONDS
deb="$(bash scripts/package.sh)"
echo "deb-check: built $deb in $((SECONDS - start))s"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"

# --- the archive ------------------------------------------------------------
archive_owned_by_root() { [[ "$(dpkg-deb -c "$deb" | awk '{print $2}' | sort -u)" =~ ^(root/root|0/0)$ ]]; }
depends_resolved() {
  local d
  d="$(dpkg-deb -f "$deb" Depends)"
  echo "Depends: $d"
  [[ "$d" != *\$auto* && "$d" == *libc6* ]]
}
check "the .deb's files are owned by root" archive_owned_by_root
check "Depends was resolved (no \$auto left) and names libc6" depends_resolved

# --- first install ------------------------------------------------------------
dpkg -i "$deb" </dev/null
is_installed() { [[ "$(dpkg-query -W -f='${Version} ${db:Status-Status}' keyrot)" == "$version-1 installed" ]]; }
binary_version() { [[ "$(/usr/bin/keyrot --version)" == "keyrot $version" ]]; }
not_enabled() { ! compgen -G '/etc/systemd/system/*.wants/keyrot.service' >/dev/null; }
is_conffile() { dpkg-query -W -f='${Conffiles}\n' keyrot | grep -q "^ $conf "; }
man_finds_page() { [[ "$(man -w keyrot)" == /usr/share/man/man1/keyrot.1.gz ]]; }
man_pages_render() {
  local p w
  for p in /usr/share/man/man1/keyrot*.1.gz; do
    w="$(MANWIDTH=80 man --warnings -E UTF-8 -l "$p" 2>&1 >/dev/null)"
    [[ -z "$w" ]] || { echo "$p: $w"; return 1; }
  done
}
man_names_subcommands() {
  local page s
  page="$(MANWIDTH=200 man -E UTF-8 -l /usr/share/man/man1/keyrot.1.gz 2>/dev/null)"
  for s in run check init status rotate; do
    grep -q "keyrot-$s(1)" <<<"$page" || { echo "no keyrot-$s(1)"; return 1; }
  done
}
bash_completion_loads() {
  bash -c 'source /usr/share/bash-completion/completions/keyrot && complete -p keyrot'
}
system_user() {
  local u
  u="$(getent passwd keyrot)" && getent group keyrot >/dev/null || return 1
  echo "$u"
  (($(cut -d: -f3 <<<"$u") < 1000)) && [[ "$(cut -d: -f7 <<<"$u")" == */nologin ]]
}
# mode_owner PATH "MODE USER GROUP"
mode_owner() { [[ "$(stat -c '%a %U %G' "$1")" == "$2" ]]; }
check "dpkg says keyrot $version-1 is installed" is_installed
check "/usr/bin/keyrot --version is $version" binary_version
check "the unit is installed" test -f "$unit"
check "the install neither enables nor starts the unit" not_enabled
check "$conf is a conffile" is_conffile
check "sysusers.d and tmpfiles.d files are installed" \
  test -f /usr/lib/sysusers.d/keyrot.conf -a -f /usr/lib/tmpfiles.d/keyrot.conf
check "docs, copyright and provider presets are in /usr/share/doc/keyrot" \
  test -f /usr/share/doc/keyrot/configuration.md -a -f /usr/share/doc/keyrot/copyright \
  -a -f /usr/share/doc/keyrot/providers/gitlab-personal-access-tokens.toml
check "man finds keyrot(1), gzipped" man_finds_page
check "a man page per subcommand (keyrot-run, keyrot-rotation-resume)" \
  test -f /usr/share/man/man1/keyrot-run.1.gz -a -f /usr/share/man/man1/keyrot-rotation-resume.1.gz
check "every man page renders without a groff warning" man_pages_render
check "keyrot(1) names run, check, init, status and rotate" man_names_subcommands
check "the bash completion loads" bash_completion_loads
check "zsh and fish completions are installed" \
  test -f /usr/share/zsh/vendor-completions/_keyrot -a -f /usr/share/fish/vendor_completions.d/keyrot.fish
check "the keyrot system user and group exist (uid < 1000, nologin)" system_user
check "/var/lib/keyrot is 0700 keyrot:keyrot" mode_owner /var/lib/keyrot "700 keyrot keyrot"
check "/run/keyrot is 0750 keyrot:keyrot" mode_owner /run/keyrot "750 keyrot keyrot"

# systemd-analyze verify: exit 0 and not one line about the unit (unknown
# keys and bad values only warn on stderr).
if systemd-analyze verify "$unit" >"$tmp/verify" 2>&1; then verify_rc=0; else verify_rc=$?; fi
if [[ "$verify_rc" == 0 ]] && ! grep -q 'keyrot' "$tmp/verify"; then
  ok "systemd-analyze verify $unit: clean"
else
  bad "systemd-analyze verify $unit (exit $verify_rc)"
fi
sed 's/^/    verify: /' "$tmp/verify"

# systemd-analyze security works offline (systemd need not run).
systemd-analyze security --offline=true --no-pager "$unit" >"$tmp/security" 2>&1 || true
exposure_line="$(grep 'Overall exposure level' "$tmp/security" || true)"
exposure="$(sed -n 's/.*keyrot.service: \([0-9.]*\) .*/\1/p' <<<"$exposure_line")"
echo "deb-check: systemd-analyze security: ${exposure_line:-no score}"
grep '✗' "$tmp/security" | sed 's/^/    open: /' || true
if [[ -n "$exposure" ]] && awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
  ok "exposure $exposure is within the budget $max_exposure"
else
  bad "exposure ${exposure:-unknown} is over the budget $max_exposure"
  cat "$tmp/security"
fi

# The unit's command lines, taken from the installed unit and run as its
# User=, as an operator does by hand where systemd is not PID 1.
pre="$(sed -n 's/^ExecStartPre=//p' "$unit")"
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
read -r -a pre_argv <<<"$pre"
read -r -a start_argv <<<"$exec_start"
check "ExecStartPre ($pre) passes on the shipped config" as_unit "" "${pre_argv[@]}"
if as_unit "" timeout 30 "${start_argv[@]}" >"$tmp/nokey" 2>&1; then nokey_rc=0; else nokey_rc=$?; fi
if [[ "$nokey_rc" == 1 ]] && grep -q '/etc/keyrot/master.key' "$tmp/nokey"; then
  ok "ExecStart ($exec_start) without the master key refuses to start: $(tail -n 1 "$tmp/nokey")"
else
  bad "ExecStart without the master key: exit $nokey_rc"
  sed 's/^/    /' "$tmp/nokey"
fi

# --- purge with no state ----------------------------------------------------
dpkg -L keyrot | while read -r f; do [[ -d "$f" ]] || echo "$f"; done >"$tmp/files"
dpkg --purge keyrot </dev/null
files_gone() {
  local f left=0
  while read -r f; do
    if [[ -e "$f" ]]; then
      echo "left: $f"
      left=1
    fi
  done <"$tmp/files"
  return "$left"
}
dirs_gone() {
  local d left=0
  for d in /var/lib/keyrot /etc/keyrot /run/keyrot; do
    if [[ -e "$d" ]]; then
      echo "left: $d"
      left=1
    fi
  done
  return "$left"
}
check "purge removed all $(wc -l <"$tmp/files") files of the package" files_gone
check "purge removed the empty /var/lib/keyrot, /etc/keyrot and /run/keyrot" dirs_gone
check "purge kept the keyrot user (system users are never deleted)" getent passwd keyrot

# --- reinstall, run the daemon as ExecStart= does -----------------------------
dpkg -i "$deb" </dev/null
init_key() { /usr/bin/keyrot init && mode_owner /etc/keyrot/master.key "600 root root"; }
check "reinstall with the keyrot user already there" is_installed
check "keyrot init creates /etc/keyrot/master.key (0600) from the shipped config" init_key
mkdir -p /etc/keyrot/conf.d
printf '%s\n' \
  '# deb-check: one local key, no window, issued at once.' \
  '[[policy]]' 'name = "deb-check"' 'new_key_lifetime = "1h"' \
  'rotate_before_expiry = "10m"' 'jitter = false' '' \
  '[[key]]' 'name = "deb-check"' 'provider = "local"' 'policy = "deb-check"' \
  'sinks = ["files"]' >/etc/keyrot/conf.d/50-deb-check.toml
# LoadCredential=master-key:/etc/keyrot/master.key, by hand.
creds="$tmp/credentials"
chmod 0711 "$tmp"
install -d -m 0500 -o keyrot -g keyrot "$creds"
install -m 0400 -o keyrot -g keyrot /etc/keyrot/master.key "$creds/master-key"
check "ExecStartPre passes with the drop-in" as_unit "$creds" "${pre_argv[@]}"
# A simple command, not the function: $! is then the daemon itself
# (setpriv and env exec it), so SIGTERM reaches keyrot. UMask=0077 as the unit.
(
  umask 0077
  exec setpriv --reuid=keyrot --regid=keyrot --init-groups -- \
    env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$creds" "${start_argv[@]}"
) >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
sink_file=/var/lib/keyrot/out/local-deb-check.json
for _ in $(seq 1 120); do
  [[ -S /run/keyrot/control.sock && -f "$sink_file" ]] && break
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.5
done
status_lists_key() {
  local out
  out="$(setpriv --reuid=keyrot --regid=keyrot --init-groups -- /usr/bin/keyrot status --config "$conf")"
  echo "$out"
  grep -q 'deb-check' <<<"$out"
}
check "the daemon serves /run/keyrot/control.sock" test -S /run/keyrot/control.sock
check "the daemon issued the drop-in's key into the file sink (0600 keyrot)" \
  mode_owner "$sink_file" "600 keyrot keyrot"
check "keyrot status (as keyrot) lists the key" status_lists_key
if kill -TERM "$daemon_pid" 2>/dev/null; then
  if wait "$daemon_pid"; then daemon_rc=0; else daemon_rc=$?; fi
else
  daemon_rc=dead
fi
daemon_pid=""
if [[ "$daemon_rc" == 0 ]]; then ok "SIGTERM stops the daemon with exit 0"; else bad "daemon exit: $daemon_rc"; fi
if [[ "$failed" != 0 ]]; then sed 's/^/    daemon: /' "$tmp/daemon.log"; fi

# An upgrade (here: the same version again) keeps the operator's edits.
echo "# edited by deb-check" >>"$conf"
dpkg -i "$deb" </dev/null
check "an upgrade keeps the edited conffile" grep -q 'edited by deb-check' "$conf"

# --- purge with state ---------------------------------------------------------
dpkg --purge keyrot </dev/null 2>"$tmp/purge.err" || true
sed 's/^/    purge: /' "$tmp/purge.err"
not_installed() { ! dpkg-query -W keyrot >/dev/null 2>&1; }
package_files_gone() { ! [[ -e /usr/bin/keyrot || -e "$unit" || -e "$conf" ]]; }
check "purge removed the package" not_installed
check "purge removed the binary, the unit and the shipped conffile" package_files_gone
check "purge kept the store and the master key" test -f /var/lib/keyrot/state.redb -a -f /etc/keyrot/master.key
check "purge said it kept them" grep -q 'purge kept the key store' "$tmp/purge.err"

echo "deb-check: $passed passed, $failed failed"
[[ "$failed" == 0 ]]
