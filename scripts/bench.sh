#!/usr/bin/env bash
# keyrot's benchmarks (docs/benchmarks.md): `bash scripts/bench.sh` runs all
# of them, `bash scripts/bench.sh NAME...` some (durability, postgres, openbao,
# scale, idle). Each prints a table and a final JSON line; this script also keeps
# their output in target/bench/NAME.log. Never part of the test suite: run
# them on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(durability postgres openbao scale idle)
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${all[@]}")
KEYROT_PEERS_DIR="$(bash scripts/peers.sh)"
export KEYROT_PEERS_DIR
mkdir -p target/bench
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r)"
echo "disk: $(df -h --output=source,fstype,size . | tail -1)"
for name in "${names[@]}"; do
  echo "== $name"
  if [[ -f "scripts/bench/$name.sh" ]]; then
    bash "scripts/bench/$name.sh" 2>&1 | tee "target/bench/$name.log"
  else
    cargo bench --locked --bench "$name" 2>&1 | tee "target/bench/$name.log"
  fi
done
