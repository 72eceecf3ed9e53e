#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Where the downtime goes: one migration by bench-migrate (MODE libdm or
# dmctl) under bench/trace-shim.c, then the timeline from the source's STOP
# to the destination's RESUME: QEMU's event timestamps (EV) merged with
# every QMP message libdm sent (Q>) or received (Q<), every line on dmctl's
# channel (C>, C<) and every record rename (R), all CLOCK_REALTIME, in ms
# from STOP. Usage: trace-migrate.sh BENCHDIR MODE [FILL_MIB]
# (env as for bench-migrate: QEMU, DMCTL, LIBDM_KEEPER; CC).
set -eu
B=${1:?usage: trace-migrate.sh BENCHDIR MODE [FILL_MIB]}
MODE=${2:?mode: libdm or dmctl}
FILL=${3:-32}
src=$(cd "$(dirname "$0")" && pwd)/trace-shim.c
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -O2 -Wall -Wextra -Werror -shared -fPIC -o "$tmp/shim.so" "$src" -ldl
BENCH_TRACE="$tmp/trace" LD_PRELOAD="$tmp/shim.so" \
    "$B/bench-migrate" --runs 1 --only "$MODE" --fill "$FILL" >"$tmp/out" 2>&1 || {
    cat "$tmp/out"; exit 1; }
grep 'downtime' "$tmp/out" | head -n 1
sort -n -s -k1,1 "$tmp/trace" | awk '
    $3 == "EV" && $4 == "src" && $5 == "STOP" { t0 = $1 }
    t0 && !done {
        line = ""; for (i = 3; i <= NF; i++) line = line " " $i
        printf "%8.3f ms  pid %-7s%s\n", ($1 - t0) / 1000, $2, substr(line, 1, 100)
    }
    $3 == "EV" && $5 == "RESUME" { done = 1 }'
