#!/usr/bin/env bash
# keyrot's whole test suite: installs the real peers the tests run against
# (OpenBao, moto, aiosmtpd into a cache directory, once; PostgreSQL from
# the distribution when missing), then the unit
# tests of every crate of the workspace and the integration tests that run
# the real binary (with failpoints compiled in for the crash suite).
#
# The tests' temporary files (stores, sockets, PostgreSQL clusters) go to a
# fresh directory on tmpfs (/dev/shm) when there is one and TMPDIR is not
# set: a crash test kills keyrot, not the machine, so what it checks holds
# without the disk, and each of the thousands of commits' fsyncs is then
# free instead of waiting behind a build's writes. Durability on a disk is
# measured by the benchmarks (docs/benchmarks.md), which do not run here.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYROT_PEERS_DIR="$(bash scripts/peers.sh)"
export KEYROT_PEERS_DIR
# Most integration tests wait on a daemon's timers and its peers rather than
# on the CPU, so more of them run at once than there are cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}"
if [[ -z "${TMPDIR:-}" && "$(stat -f -c %T /dev/shm 2>/dev/null)" == tmpfs && -w /dev/shm ]]; then
  TMPDIR="$(mktemp -d /dev/shm/keyrot.XXXXXX)"
  # Like /tmp: the test PostgreSQL runs as its own user and makes its
  # cluster here too.
  chmod 1777 "$TMPDIR"
  export TMPDIR
  trap 'rm -rf "$TMPDIR"' EXIT
fi
cargo test --locked --workspace --features failpoints "$@"
