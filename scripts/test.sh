#!/usr/bin/env bash
# keyrot's whole test suite: installs the real peers the tests run against
# (OpenBao, moto, aiosmtpd into a cache directory, once; PostgreSQL from
# the distribution when missing), then the unit
# tests of every crate of the workspace and the integration tests that run
# the real binary (with failpoints compiled in for the crash suite).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYROT_PEERS_DIR="$(bash scripts/peers.sh)"
export KEYROT_PEERS_DIR
# Most integration tests wait on a daemon's timers and its peers rather than
# on the CPU, so more of them run at once than there are cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}"
exec cargo test --locked --workspace --features failpoints "$@"
