#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs the REAL xenstored (Debian xen-utils-4.17) on a machine without Xen,
# under the hypervisor fake tests/harness/xsshim.c (LD_PRELOAD). For tests
# and manual experiments; tests/integration/test-store-xs.c does the same in
# C (fork/exec) and does not need this script.
#
#   xenstored-run.sh start DIR   start it with XENSTORED_RUNDIR=DIR; prints
#                                the socket path (DIR/socket) once it
#                                accepts connections (at most 5 s).
#                                Exit 77 if xenstored is not installed.
#   xenstored-run.sh stop DIR    SIGTERM, then SIGKILL after 2 s.
#
# Then: XENSTORED_PATH=DIR/socket xenstore-ls /   (or any libxenstore user).
# Environment: XENSTORED (binary, default /usr/lib/xen-4.17/bin/xenstored),
# XSSHIM (default $top_builddir/tests/harness/.libs/xsshim.so).
# The daemon's output goes to DIR/log, its trace to DIR/trace.
set -eu

XENSTORED=${XENSTORED:-/usr/lib/xen-4.17/bin/xenstored}
XSSHIM=${XSSHIM:-${top_builddir:-.}/tests/harness/.libs/xsshim.so}

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
mode=$1
dir=$2
case $dir in
/*) ;;
*) dir=$(pwd)/$dir ;;
esac

stop() {
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    case $pid in '' | *[!0-9]*) return 0 ;; esac
    kill -TERM "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 200 ]; then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.01
    done
    rm -f "$dir/pid" "$dir/socket"
}

case $mode in
start)
    if [ ! -x "$XENSTORED" ]; then
        echo "SKIP: $XENSTORED not found (apt-get install --no-install-recommends xen-utils-4.17)" >&2
        exit 77
    fi
    if [ ! -r "$XSSHIM" ]; then
        echo "$0: hypervisor shim $XSSHIM not found (set XSSHIM or run make check)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    chmod 0700 "$dir"
    rm -f "$dir/socket" "$dir/pid"
    # -N: no fork, so $! is the daemon; -F also records it for "stop".
    XENSTORED_RUNDIR=$dir XSSHIM_DIR=$dir LD_PRELOAD=$XSSHIM \
        "$XENSTORED" -N -F "$dir/pid" -T "$dir/trace" >"$dir/log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    i=0
    until [ -S "$dir/socket" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$0: xenstored exited; its output:" >&2
            cat "$dir/log" >&2
            exit 1
        fi
        i=$((i + 1))
        if [ $i -gt 500 ]; then
            echo "$0: no socket in $dir after 5 s" >&2
            stop
            exit 1
        fi
        sleep 0.01
    done
    echo "$dir/socket"
    ;;
stop)
    stop
    ;;
*)
    usage
    ;;
esac
