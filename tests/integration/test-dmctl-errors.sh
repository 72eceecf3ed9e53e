#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl's exit statuses and error messages against a real QEMU and fakeqmp
# (defects 9 and 10): a deadline is exit 3 for every command; each failure
# is one line on stderr naming its cause (not a clean-up error, not libdm's
# log lines besides dmctl's). Needs $DMCTL, $FAKEQMP, qemu-system-x86_64.

if [ -z "${DMCTL:-}" ] || [ -z "${FAKEQMP:-}" ]; then
    echo "SKIP: \$DMCTL or \$FAKEQMP is not set"
    exit 77
fi
qemu=$(command -v qemu-system-x86_64)
if [ -z "$qemu" ]; then
    echo "SKIP: no qemu-system-x86_64"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-dmctl-errors.XXXXXX") || exit 99
store="$tmp/store"
name="err$$"
qpid=
cleanup() {
    [ -n "$qpid" ] && kill -CONT "$qpid" 2>/dev/null
    "$DMCTL" --store "$store" --timeout 5 stop "$name" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -m 0700 "$store" || exit 99

. "$top_srcdir/tests/harness/tap.sh"

# run EXPECTED DESCRIPTION ARGS...: dmctl_run (tap.sh).
run() { dmctl_run "$@"; }

# one_error DESCRIPTION PATTERN: stderr is exactly one line, matching.
one_error() {
    lines=$(wc -l <"$tmp/err")
    if [ "$lines" -ne 1 ] || ! grep -q -- "$2" "$tmp/err"; then
        fail "$1: expected one line matching '$2', got $lines"
        sed 's/^/    stderr: /' "$tmp/err"
    fi
}

# ---- failed starts: one line, the cause ----
run 1 "start with --qemu /bin/false" --store "$store" --timeout 10 start "$name" \
    --qemu /bin/false && one_error "start /bin/false" "exited with status 1"

printf '#!/bin/sh\necho "qemu: -bogus: invalid option" >&2\nexit 1\n' >"$tmp/bad-qemu"
chmod +x "$tmp/bad-qemu"
run 1 "start with a QEMU that prints an error and exits 1" --store "$store" --timeout 10 \
    start "$name" --qemu "$tmp/bad-qemu" &&
    one_error "start bad-qemu" "exited with status 1.*invalid option"

# Never greets: the deadline is the cause, not the SIGKILL that follows it.
printf '#!/bin/sh\nexec sleep 30\n' >"$tmp/mute-qemu"
chmod +x "$tmp/mute-qemu"
run 3 "start with a QEMU that never answers: timeout" --store "$store" --timeout 1 \
    start "$name" --qemu "$tmp/mute-qemu" &&
    one_error "start mute-qemu" "not ready before the deadline"

# ---- a live DM: QMP errors are one line with QMP's error class ----
run 0 "start $name" --store "$store" --timeout 20 start "$name" || exit 1
run 1 "qmp bogus-command" --store "$store" qmp "$name" bogus-command &&
    one_error "qmp bogus-command" "CommandNotFound"
run 1 "qmp with a bad argument" --store "$store" qmp "$name" query-status '{"x": 1}' &&
    one_error "qmp bad argument" "GenericError"

# ---- a DM whose monitor does not answer: every command times out (3) ----
qpid=$("$DMCTL" --store "$store" --json list --no-query |
       sed -n "s/.*\"name\":\"$name\".*\"pid\":\([0-9]*\).*/\1/p")
if [ -z "$qpid" ]; then
    fail "no pid recorded for $name"
else
    kill -STOP "$qpid"
    for c in status resume pause migrate-cancel; do
        run 3 "$c of a stopped QEMU: timeout" --store "$store" --timeout 1 $c "$name" &&
            one_error "$c stopped QEMU" "$name.*deadline"
    done
    run 3 "qmp of a stopped QEMU: timeout" --store "$store" --timeout 1 \
        qmp "$name" query-status && one_error "qmp stopped QEMU" "$name.*deadline"
    run 3 "migrate of a stopped QEMU: timeout" --store "$store" --timeout 1 \
        migrate --to true "$name" && one_error "migrate stopped QEMU" "$name.*deadline"
    kill -CONT "$qpid"
    qpid=
fi
run 0 "stop $name" --store "$store" --timeout 10 stop "$name"

# ---- a monitor that never replies, by socket: timeout (3) ----
printf 'expect query-status noreply\n' >"$tmp/script"
for c in status qmp; do
    fakeqmp_start "$tmp/script" "$tmp/qmp.sock" /dev/null
    if [ $c = qmp ]; then
        run 3 "qmp --socket, no reply: timeout" --timeout 1 qmp --socket "$tmp/qmp.sock" query-status
    else
        run 3 "status --socket, no reply: timeout" --timeout 1 status --socket "$tmp/qmp.sock"
    fi
    fakeqmp_stop
done

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
