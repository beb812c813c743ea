#!/usr/bin/env bash
# Coverage-guided fuzzing of keyrot with cargo-fuzz (libFuzzer), on the
# machine's stable Rust: cargo-fuzz passes nightly `-Z` flags, which stable
# rustc accepts with RUSTC_BOOTSTRAP=1.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Each target runs SECONDS (default 60) from its seeds in fuzz/corpus/TARGET
# (read only); inputs that reach new code are kept in fuzz/work/TARGET, a
# crash (a panic or a finding) in fuzz/artifacts/TARGET/, the log in
# fuzz/work/TARGET.log. Exits non-zero if any target crashed. A crash
# replays with `RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET FILE`; copy the
# file into fuzz/corpus/TARGET once fixed, and crates/fuzzing/tests/fuzz_replay/ replays
# it in every test run.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# The peer-driven targets keep a scratch directory for the whole process
# (a libFuzzer process never drops it): keep those here and remove them.
export TMPDIR="$PWD/work/tmp"
mkdir -p "$TMPDIR"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
failed=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    # -malloc_limit_mb: any single allocation over 256 MiB from a fuzz
    # input (at most 64 KiB) is a bug; -timeout: a hang is one too.
    if cargo fuzz run -O "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
        -malloc_limit_mb=256 -timeout=20 -print_final_stats=1 \
        >"work/$t.log" 2>&1; then
        result=ok
    else
        result=CRASH
        failed=1
    fi
    execs=$(grep -m1 '^stat::number_of_executed_units' "work/$t.log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "work/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    rm -rf "$TMPDIR"/keyrot-fuzz-*
    echo "$t: $result, ${execs:-?} execs in ${secs} s, ${cov:-no coverage line}"
done
exit "$failed"
