#!/usr/bin/env bash
# keyrot's whole test suite: installs the real peers the tests run against
# (OpenBao, moto, aiosmtpd; into a cache directory, once), then the unit
# tests of every crate of the workspace and the integration tests that run
# the real binary (with failpoints compiled in for the crash suite).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYROT_PEERS_DIR="$(bash scripts/peers.sh)"
export KEYROT_PEERS_DIR
exec cargo test --locked --workspace --features failpoints "$@"
