#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl interrupted (defect 6): a burst of SIGINTs (two 1 ms apart, or GNU
# timeout's signal to the child and to its process group) is one
# interruption. dmctl never dies of it in the middle of a QMP exchange: it
# exits 4 (dmctl(1), EXIT STATUS) after draining the monitor, and an
# interrupted start leaves no unrecorded QEMU behind.
#
# The monitor is fakeqmp with the pre-4.2 monitor-block bug emulated: a
# client that leaves with a reply outstanding wedges it, so the next
# client's query-status times out. Needs $DMCTL, $FAKEQMP and, for the
# start checks, qemu-system-x86_64.

if [ -z "${DMCTL:-}" ] || [ -z "${FAKEQMP:-}" ]; then
    echo "SKIP: \$DMCTL or \$FAKEQMP is not set"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-dmctl-signals.XXXXXX") || exit 99
fq=
cleanup() {
    [ -n "$fq" ] && kill "$fq" 2>/dev/null && wait "$fq" 2>/dev/null
    "$DMCTL" --store "$tmp/store" --timeout 5 stop "sig$$" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
store="$tmp/store"
name="sig$$"
mkdir -m 0700 "$store" || exit 99

. "$top_srcdir/tests/harness/tap.sh"
show_err() {
    sed 's/^/    stderr: /' "$tmp/err"
}

# A fakeqmp that answers query-status after 1.5 s, then like an idle QEMU.
start_fakeqmp() {
    printf '%s\n' 'monitor-block-bug on' \
        'expect query-status delay 1500 return {"status": "paused", "running": false}' \
        'auto on' >"$tmp/script"
    fakeqmp_start "$tmp/script" "$tmp/qmp.sock" "$tmp/fakeqmp.err"
}

# expect_interrupted DESC STATUS: dmctl exited 5, said so once, and did
# not die by the signal (a shell reports that as 130).
expect_interrupted() {
    if [ "$2" -ne 5 ]; then
        fail "$1: exit $2, expected 5 (interrupted)"
        show_err
        return 1
    fi
    if [ "$(grep -c 'interrupted by SIGINT' "$tmp/err")" -ne 1 ]; then
        fail "$1: 'interrupted by SIGINT' not said exactly once"
        show_err
        return 1
    fi
    ok "$1: exit 5"
}

# The reply outstanding at the interruption was read before the close: the
# emulated monitor is not wedged, the next client gets its answer.
expect_drained() {
    if "$DMCTL" --timeout 3 qmp --socket "$tmp/qmp.sock" query-status >/dev/null 2>"$tmp/err2"
    then
        ok "$1: the monitor was drained (not wedged)"
    else
        fail "$1: the monitor is wedged: dmctl closed with a reply outstanding"
        sed 's/^/    next client: /' "$tmp/err2"
    fi
}

# ---- qmp: two SIGINTs 1 ms apart mid-exchange ----
start_fakeqmp
"$DMCTL" --timeout 10 qmp --socket "$tmp/qmp.sock" query-status >"$tmp/out" 2>"$tmp/err" &
pid=$!
sleep 0.5
kill -INT $pid
sleep 0.001
kill -INT $pid
wait $pid
expect_interrupted "qmp, two SIGINTs 1 ms apart" $? && expect_drained "qmp, two SIGINTs"
fakeqmp_stop

# ---- qmp under GNU timeout -s INT (child and process group signalled) ----
if command -v timeout >/dev/null 2>&1; then
    start_fakeqmp
    timeout -s INT 0.5 "$DMCTL" --timeout 10 qmp --socket "$tmp/qmp.sock" query-status \
        >"$tmp/out" 2>"$tmp/err"
    st=$?
    # timeout says 124 when it had to signal; --preserve-status shows dmctl's.
    if [ $st -ne 124 ]; then
        fail "timeout -s INT: exit $st, expected 124"
        show_err
    elif [ "$(grep -c 'interrupted by SIGINT' "$tmp/err")" -ne 1 ]; then
        fail "timeout -s INT: dmctl did not report one interruption"
        show_err
    else
        ok "timeout -s INT: dmctl interrupted"
        expect_drained "timeout -s INT"
    fi
    fakeqmp_stop
    start_fakeqmp
    timeout --preserve-status -s INT 0.5 "$DMCTL" --timeout 10 qmp \
        --socket "$tmp/qmp.sock" query-status >"$tmp/out" 2>"$tmp/err"
    expect_interrupted "timeout --preserve-status -s INT" $? &&
        expect_drained "timeout --preserve-status -s INT"
    fakeqmp_stop
fi

# Processes of the DM: its keeper (or the wrapper before exec) names $tmp,
# QEMU names the DM.
left_running() {
    { pgrep -f -- "$tmp/" ; pgrep -f -- "-name $name( |\$)"; } | grep -vx "$$" | wc -l
}

# ---- start: interrupted mid-start, no QEMU left unrecorded ----
qemu=$(command -v qemu-system-x86_64)
if [ -z "$qemu" ]; then
    echo "no qemu-system-x86_64: start checks skipped"
else
    # A QEMU that takes a second to come up, so the signals land mid-start.
    printf '#!/bin/sh\nsleep 1\nexec %s "$@"\n' "$qemu" >"$tmp/slow-qemu"
    chmod +x "$tmp/slow-qemu"
    "$DMCTL" --store "$store" --timeout 20 start "$name" --qemu "$tmp/slow-qemu" \
        >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    sleep 0.5
    kill -INT $pid 2>/dev/null
    sleep 0.001
    kill -INT $pid 2>/dev/null
    wait $pid
    expect_interrupted "start, two SIGINTs 1 ms apart" $?
    sleep 0.5
    listed=$("$DMCTL" --store "$store" list --no-query | grep -c "^$name ")
    running=$(left_running)
    if [ "$running" -gt 0 ] && [ "$listed" -eq 0 ]; then
        fail "start interrupted: a device model runs but is not recorded (orphan)"
    else
        ok "start interrupted: nothing left unrecorded (running $running, recorded $listed)"
    fi
    # Interrupted before the start: under timeout with its group signal.
    timeout -s INT 0.3 "$DMCTL" --store "$store" --timeout 20 start "$name" \
        --qemu "$tmp/slow-qemu" >"$tmp/out" 2>"$tmp/err"
    st=$?
    sleep 0.5
    listed=$("$DMCTL" --store "$store" list --no-query | grep -c "^$name ")
    running=$(left_running)
    if [ $st -ne 124 ] || ! grep -q 'interrupted by SIGINT' "$tmp/err"; then
        fail "start under timeout -s INT: exit $st, expected 124 and an interruption"
        show_err
    elif [ "$running" -gt 0 ] && [ "$listed" -eq 0 ]; then
        fail "start under timeout -s INT: an unrecorded device model is left"
    else
        ok "start under timeout -s INT: nothing left unrecorded"
    fi
fi

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
