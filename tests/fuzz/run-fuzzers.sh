#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Builds the libFuzzer targets (tests/fuzz/fuzz-*.c) with clang and runs each
# for SECONDS (default 60), in parallel, on a copy of its seed corpus
# (tests/fuzz/corpus/<target>/). Prints per target
#   fuzz <target>: <execs> executions, <secs> s, <n> crashes
# and exits non-zero if any target crashed (or failed to build).
#
# Usage: tests/fuzz/run-fuzzers.sh [SECONDS]
# Environment:
#   BUILDDIR   a configured build directory whose config.h to use; without
#              it the tree is configured in a temporary directory.
#   FUZZ_TARGETS  space-separated subset of targets (default: all).
#   FUZZ_JOBS  targets run at once (default: all of them).
#   FUZZ_KEEP  1: keep the work directory (crash artifacts, logs).
# Needs clang and libclang-rt-14-dev (libFuzzer, ASan, UBSan runtimes) and
# the yajl, xenstore and xentoollog development files; installs nothing.
set -eu

SECS=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
CC=${CC_FUZZ:-clang}
targets=${FUZZ_TARGETS:-"fuzz-qmp-decoder fuzz-json fuzz-qmp-transcript fuzz-record fuzz-qemu-opt"}

command -v "$CC" >/dev/null 2>&1 || { echo "run-fuzzers: $CC not found" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/libdm-fuzz.XXXXXX")
cleanup() { [ "${FUZZ_KEEP:-0}" = 1 ] && echo "run-fuzzers: work dir $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT INT TERM

# config.h
if [ -n "${BUILDDIR:-}" ]; then
    [ -f "$BUILDDIR/config.h" ] || { echo "run-fuzzers: no config.h in $BUILDDIR" >&2; exit 2; }
    cfgdir=$(cd "$BUILDDIR" && pwd)
else
    mkdir "$work/cfg"
    (cd "$work/cfg" && "$top/configure" -q >"$work/configure.log" 2>&1) ||
        { echo "run-fuzzers: configure failed, see $work/configure.log" >&2; FUZZ_KEEP=1; exit 2; }
    cfgdir=$work/cfg
fi

PKGS="yajl xenstore xentoollog"
CPPFLAGS="-I$cfgdir -I$top/libdm/include -I$top/libdm -I$top/xenstore-glue -I$here \
 -DLIBDM_BUILDING -DLIBDM_LIBEXECDIR=\"/usr/local/libexec\" -DLIBDM_BINDIR=\"/usr/local/bin\" \
 $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -lpthread"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=gnu11 -g -O1 -fno-omit-frame-pointer"

# The library objects, once (instrumented for coverage, not linked with the
# libFuzzer main).
mkdir "$work/obj"
objs=
for src in "$top"/libdm/*.c "$top"/xenstore-glue/*.c; do
    o=$work/obj/$(basename "$(dirname "$src")")-$(basename "$src" .c).o
    # shellcheck disable=SC2086
    $CC $CFLAGS $SAN -fsanitize=fuzzer-no-link $CPPFLAGS -c "$src" -o "$o" ||
        { echo "run-fuzzers: cannot compile $src" >&2; exit 2; }
    objs="$objs $o"
done

for t in $targets; do
    # shellcheck disable=SC2086
    $CC $CFLAGS $SAN -fsanitize=fuzzer $CPPFLAGS "$here/$t.c" $objs $LIBS -o "$work/$t" ||
        { echo "run-fuzzers: cannot build $t" >&2; exit 2; }
done

run_one() {
    t=$1
    mkdir -p "$work/corpus-$t" "$work/crash-$t"
    if [ -d "$here/corpus/$t" ]; then cp "$here/corpus/$t"/* "$work/corpus-$t/" 2>/dev/null || :; fi
    start=$(date +%s)
    rc=0
    (cd "$work/crash-$t" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        "$work/$t" -max_total_time="$SECS" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$work/crash-$t/" "$work/corpus-$t" \
        >"$work/$t.log" 2>&1) || rc=$?
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
    crashes=$(find "$work/crash-$t" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes=1
    echo "fuzz $t: ${execs:-0} executions, $((end - start)) s, $crashes crashes" >"$work/$t.result"
    if [ "$crashes" -ne 0 ]; then
        {
            echo "---- $t (exit $rc): log tail ----"
            tail -n 60 "$work/$t.log"
            for a in "$work/crash-$t"/*; do [ -f "$a" ] && echo "artifact: $a"; done
        } >"$work/$t.fail"
    fi
}

jobs=${FUZZ_JOBS:-0}
running=0
for t in $targets; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$jobs" -gt 0 ] && [ "$running" -ge "$jobs" ]; then wait; running=0; fi
done
wait

status=0
for t in $targets; do
    cat "$work/$t.result"
    if [ -f "$work/$t.fail" ]; then
        cat "$work/$t.fail" >&2
        status=1
        FUZZ_KEEP=1
    fi
done
exit $status
