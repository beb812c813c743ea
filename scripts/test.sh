#!/usr/bin/env bash
# keyrot's whole test suite: unit tests, and integration tests that run the
# real binary (with failpoints compiled in for the crash suite).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --locked --features failpoints "$@"
