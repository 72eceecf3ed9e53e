#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Builds tests/stress/test-threads with ThreadSanitizer in a separate build
# tree and runs it: 4 threads, each with its own libdm_ctx, against separate
# fakeqmp server processes and real QEMUs. Exits non-zero if the build fails,
# the test fails, or TSan reports anything.
#
#   tests/stress/run-tsan.sh [BUILD-DIR]
#
# BUILD-DIR defaults to a fresh temporary directory (removed afterwards);
# a given directory is configured once and reused. Needs clang (Debian:
# clang, libclang-rt-14-dev). The QMP servers are the standalone fakeqmp
# program (its own processes), so the harness's server threads are not part
# of what TSan watches in the test process.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
cleanup=
if [ $# -ge 1 ]; then
    b=$1
    mkdir -p "$b"
else
    b=$(mktemp -d "${TMPDIR:-/tmp}/libdm-tsan.XXXXXX")
    cleanup=$b
fi
b=$(cd "$b" && pwd)
trap '[ -z "$cleanup" ] || rm -rf "$cleanup"' EXIT

if ! command -v clang >/dev/null; then
    echo "run-tsan: clang not found" >&2
    exit 1
fi

if [ ! -f "$b/Makefile" ]; then
    echo "run-tsan: configuring in $b"
    (cd "$b" && "$src/configure" -q CC=clang \
        CFLAGS="-fsanitize=thread -O1 -g -fno-omit-frame-pointer" \
        LDFLAGS=-fsanitize=thread)
fi
echo "run-tsan: building"
make -C "$b" -s -j"$(nproc)" tools/libdm-keeper tests/harness/fakeqmp tests/stress/test-threads \
    >"$b/tsan-build.log" 2>&1 || { tail -n 40 "$b/tsan-build.log"; exit 1; }

export LIBDM_KEEPER="$b/tools/libdm-keeper" FAKEQMP="$b/tests/harness/fakeqmp"
export top_srcdir="$src" top_builddir="$b"
export LIBDM_LOG=${LIBDM_LOG:-warn}
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

# clang 14's TSan cannot map its shadow with the high ASLR entropy of recent
# kernels ("unexpected memory mapping"): run without address randomisation.
run=()
if command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
    run=(setarch "$(uname -m)" -R)
fi

log="$b/tsan-test-threads.log"
echo "run-tsan: running tests/stress/test-threads"
set +e
"${run[@]}" "$b/tests/stress/test-threads" >"$log" 2>&1
rc=$?
set -e
cat "$log"
if grep -q "ThreadSanitizer" "$log"; then
    echo "run-tsan: ThreadSanitizer reported a problem (see above)" >&2
    exit 1
fi
if [ "$rc" != 0 ]; then
    echo "run-tsan: test-threads failed (exit status $rc)" >&2
    exit 1
fi
echo "run-tsan: clean"
