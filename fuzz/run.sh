#!/usr/bin/env bash
# Run every fuzz target (or those named) for SECONDS each, default 60:
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#   PARALLEL=2 fuzz/run.sh 600      # two targets at a time
#
# Installs cargo-fuzz if it is missing; needs the nightly toolchain. Seeds are read from
# fuzz/corpus/<target>/ (checked in, never written), tokens from fuzz/dict/<target>.dict
# where there is one; what the fuzzer adds goes to fuzz/out/<target>/ and a crash's
# reproducer to fuzz/artifacts/<target>/ (both ignored by git). Exits non-zero, naming the reproducer, if any target crashes or hangs (-timeout).
#
# Build: release with debug assertions and overflow checks (-O -a), and no sanitizer. The
# harnesses and everything they reach are safe Rust (the one `unsafe` in core loads
# compiled WASM, which no target reaches), so AddressSanitizer would find nothing more,
# and an ASan build of core drags wasmtime and cranelift through it: several times slower
# to build and run.
set -euo pipefail

cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
parallel=${PARALLEL:-1}
flags=(-O -a --sanitizer none)

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz/run.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build "${flags[@]}"

mkdir -p out
run_one() {
    local target=$1 log=out/$1.log
    mkdir -p "out/$target"
    local status=0 dict=()
    if [ -f "dict/$target.dict" ]; then
        dict=(-dict="dict/$target.dict")
    fi
    cargo +nightly fuzz run "${flags[@]}" "$target" "out/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        ${dict[@]+"${dict[@]}"} >"$log" 2>&1 || status=$?
    local done_line runs
    done_line=$(grep -a 'DONE' "$log" | tail -1 || true)
    runs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1 || true)
    if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
        local unit
        unit=$(grep -ao 'Test unit written to [^ ]*' "$log" | tail -1 | sed 's/Test unit written to //' || true)
        case $unit in
            /* | '') ;;
            *) unit="$PWD/${unit#./}" ;;
        esac
        printf '%-28s CRASH (exit %s) reproducer: %s  log: %s\n' \
            "$target" "$status" "${unit:-none (see the log)}" "$PWD/$log"
        printf '  reproduce: cargo +nightly fuzz run %s %s %s\n' "${flags[*]}" "$target" "$unit"
        return 1
    fi
    local cov ft corp execs
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$done_line")
    execs=$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' <<<"$done_line")
    printf '%-28s ok  %ss  runs %s  cov %s  ft %s  corpus %s  exec/s %s\n' \
        "$target" "$seconds" "${runs:-?}" "$cov" "$ft" "$corp" "$execs"
}

failed=0
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    run_one "$target" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz/run.sh: a target crashed; see the reproducers above" >&2
    exit 1
fi
