#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs every libdm benchmark and prints the final table, also written to
# BENCHDIR/results-latest.txt. Usage: run-bench.sh BENCHDIR (the build
# tree's bench/). Env: QEMU, LIBDM_KEEPER, DMCTL, BENCH_RUNS (default 10+).
# Figures never fail the run; a benchmark that errors makes it exit 1.
set -u
B=${1:?usage: run-bench.sh BENCHDIR}
OUT="$B/results-latest.txt"
LOG="$B/results-latest.log"
RUNS=${BENCH_RUNS:-}
status=0
: >"$LOG"

run() {
    echo "== $*" | tee -a "$LOG"
    "$@" >"$LOG.one" 2>&1
    rc=$?
    grep -v '^RESULT|' "$LOG.one"
    cat "$LOG.one" >>"$LOG"
    if [ $rc -ne 0 ]; then
        echo "** $1 failed (exit $rc)" | tee -a "$LOG"
        status=1
    fi
}

decode() {
    out="$B/callgrind.$1.out"
    rm -f "$out"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        --toggle-collect="bench_decode_$1" "$B/bench-decode" "$1" >"$LOG.one" 2>&1 || {
        echo "** bench-decode $1 failed" | tee -a "$LOG"; status=1; echo 0; return; }
    sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$out" | head -n 1
}

run_decode() {
    echo "== bench-decode under callgrind" | tee -a "$LOG"
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "  valgrind not installed: skipped"; return; fi
    bytes=$("$B/bench-decode" libdm | sed -n 's/^BYTES \([0-9]*\).*/\1/p')
    lib=$(decode libdm)
    yj=$(decode yajl)
    [ -n "$bytes" ] && [ "${lib:-0}" -gt 0 ] && [ "${yj:-0}" -gt 0 ] || {
        echo "** bench-decode produced no count" | tee -a "$LOG"; status=1; return; }
    awk -v b="$bytes" -v l="$lib" -v y="$yj" 'BEGIN {
        printf "  decode %d-byte reply: %d instructions (%.1f per byte); yajl_tree_parse alone: %d (%.1f per byte)\n", b, l, l / b, y, y / b
        printf "RESULT|decode 1 MiB reply (instr)|%.1f/byte|%.1f/byte (yajl_tree)|%.3fx|info|-\n", l / b, y / b, l / y
    }' | tee -a "$LOG" | grep -v '^RESULT|'
}

start=$(date +%s)
run "$B/bench-start" ${RUNS:-15}
run "$B/bench-helper" 100 ${RUNS:-6}
run "$B/bench-rtt" ${RUNS:-10}
run "$B/bench-scale" "$B/bench-qmp-server" ${RUNS:-10} 1000
run "$B/bench-resume" ${RUNS:-20}
run "$B/bench-storm" --runs "${RUNS:-5}"
run "$B/bench-migrate" --runs "${RUNS:-10}"
run_decode
[ -x "$B/bench-embed" ] && run "$B/bench-embed" 16
end=$(date +%s)
rm -f "$LOG.one"

{
    echo "libdm benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(${QEMU:-qemu-system-x86_64} --version | head -n 1)"
    printf '%-32s | %-30s | %-24s | %-8s | %-10s | %s\n' benchmark library floor ratio target met?
    printf '%s\n' '---------------------------------+--------------------------------+--------------------------+----------+------------+-----'
    grep '^RESULT|' "$LOG" | awk -F'|' '{ printf "%-32s | %-30s | %-24s | %-8s | %-10s | %s\n", $2, $3, $4, $5, $6, $7 }'
    echo "(total $((end - start)) s; full output in $LOG)"
} >"$OUT"
echo
cat "$OUT"
exit $status
