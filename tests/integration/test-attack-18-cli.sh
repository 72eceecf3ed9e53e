#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 18, "the second attack": one regression check per item of the
# engineer "attack", through dmctl, a real QEMU (-machine none) and fakeqmp
# (a fake QMP server, for what a real QEMU cannot be made to say: a hostile
# runstate and error description). Each check failed on the tree before
# its fix (9bbab37).
#   9   the VNC password is in no log: dmctl -v, LIBDM_LOG=debug, the DM's
#       log and the store (the redaction itself: tests/unit/test-qmp-redact)
#  10   ESC/OSC from the DM (runstate, QMP error description) never reaches
#       the terminal raw, in text or --json
#  15   --vnc and xl.cfg vnclisten: a display past 99, wrapping past int,
#       or negative, is refused (exit 2)
#  16   `ulimit -n 64`: a start works; `ulimit -n 14`: EMFILE, exit 1
#  17   --store /existing/typo: refused, typo not created
# Needs $DMCTL, $FAKEQMP and qemu-system-x86_64.

. "$(dirname "$0")/dmctl-migrate-lib.sh"
if [ -z "${FAKEQMP:-}" ]; then
    echo "SKIP: \$FAKEQMP is not set"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-attack-18.XXXXXX") || exit 99
store="$tmp/store"
mkdir -m 0700 "$store" || exit 99
chmod 0755 "$tmp"
fq=
cleanup() {
    [ -n "$fq" ] && kill "$fq" 2>/dev/null
    kill_store "$store"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
QEMU_PATH=$(command -v "$QEMU_BIN")
sfx=$$
ESC=$(printf '\033')

# ---- 9: no secret in a log ----
echo "# 9: the VNC password in no log"
pw="Pw$((sfx % 100000))"
printf '%s\n' "$pw" >"$tmp/pw"
disp=$((sfx % 50 + 40))
n9="a18pw-$sfx"
if LIBDM_LOG=debug dm "$store" -v start "$n9" --qemu "$QEMU_PATH" --machine pc \
        --vnc "127.0.0.1:$disp" --vnc-password-file "$tmp/pw" >"$tmp/out" 2>"$tmp/err"; then
    LIBDM_LOG=debug dm "$store" -v status "$n9" >>"$tmp/out" 2>>"$tmp/err"
    LIBDM_LOG=debug dm "$store" -v stop "$n9" >>"$tmp/out" 2>>"$tmp/err"
    if ! grep -q 'set_password' "$tmp/err"; then
        fail "9: the debug log does not show set_password at all (nothing checked)"
    elif grep -rq -- "$pw" "$tmp/out" "$tmp/err" "$store" 2>/dev/null; then
        fail "9: the password is in a log: $(grep -rh -- "$pw" "$tmp/err" | head -2)"
    elif ! grep 'set_password' "$tmp/err" | grep -q '<redacted>'; then
        fail "9: set_password logged without <redacted>"
    else
        ok "9: set_password logged as <redacted> at debug, password nowhere"
    fi
else
    fail "9: start with a VNC password: $(cat "$tmp/err" | tail -3)"
fi

# ---- 10: terminal escapes from the DM ----
echo "# 10: ESC/OSC from the DM"
start_fakeqmp() {
    fakeqmp_start "$tmp/script" "$tmp/qmp.sock" "$tmp/fakeqmp.err"
}
no_esc() {   # DESC FILE...
    _d=$1
    shift
    if cat "$@" | grep -q "$ESC"; then
        fail "10: $_d: a raw ESC reached the output: $(cat "$@" | od -c | head -3)"
    elif cat "$@" | LC_ALL=C grep -q "$(printf '\302\233')"; then
        fail "10: $_d: a raw C1 CSI reached the output"
    else
        ok "10: $_d: no raw control sequence"
    fi
}
printf '%s\n' \
    'expect query-status return {"status": "\u001b]0;PWNED\u0007\u001b[2J\u009b31m", "running": true}' \
    'expect query-status return {"status": "\u001b]0;PWNED\u0007\u009b31m", "running": true}' \
    'expect query-status raw {"error": {"class": "GenericError", "desc": "\\u001b]0;PWNED\\u0007\\u001b[31mred\\u009b1m"}, "id": $ID}\r\n' \
    'expect query-status raw {"error": {"class": "GenericError", "desc": "\\u001b]0;PWNED\\u0007\\u001b[31mred\\u009b1m"}, "id": $ID}\r\n' \
    >"$tmp/script"
start_fakeqmp
"$DMCTL" --timeout 5 status --socket "$tmp/qmp.sock" >"$tmp/o1" 2>"$tmp/e1"
no_esc "status --socket (runstate)" "$tmp/o1" "$tmp/e1"
grep -q 'x1b' "$tmp/o1" || fail "10: the escaped runstate is not shown: $(cat "$tmp/o1")"
"$DMCTL" --json --timeout 5 status --socket "$tmp/qmp.sock" >"$tmp/o2" 2>"$tmp/e2"
no_esc "status --json --socket (runstate)" "$tmp/o2" "$tmp/e2"
if command -v python3 >/dev/null && ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/o2"; then
    fail "10: status --json is not valid JSON: $(cat "$tmp/o2")"
fi
"$DMCTL" --timeout 5 status --socket "$tmp/qmp.sock" >"$tmp/o3" 2>"$tmp/e3"
no_esc "status --socket (QMP error description)" "$tmp/o3" "$tmp/e3"
grep -q 'PWNED' "$tmp/e3" || fail "10: the error description is not shown: $(cat "$tmp/e3")"
"$DMCTL" -v --timeout 5 status --socket "$tmp/qmp.sock" >"$tmp/o4" 2>"$tmp/e4"
no_esc "status -v --socket (QMP error description, log)" "$tmp/o4" "$tmp/e4"
fakeqmp_stop

# ---- 15: VNC display ranges ----
echo "# 15: vnclisten / --vnc displays"
for v in 127.0.0.1:4294967297 127.0.0.1:-3 127.0.0.1:100 127.0.0.1:+1; do
    printf 'name = "a18v-%s"\nbuilder = "hvm"\nmemory = 64\nvnc = 1\nvnclisten = "%s"\n' \
        "$sfx" "$v" >"$tmp/v.cfg"
    dm "$store" start --config "$tmp/v.cfg" --qemu "$QEMU_PATH" >"$tmp/out" 2>"$tmp/err"
    ex=$?
    [ "$ex" -eq 2 ] && ok "15: vnclisten $v: exit 2" ||
        fail "15: vnclisten $v: exit $ex ($(cat "$tmp/err"))"
    dm "$store" stop --force "a18v-$sfx" >/dev/null 2>&1
    dm "$store" start "a18w-$sfx" --qemu "$QEMU_PATH" --machine none --vnc "$v" \
        >"$tmp/out" 2>"$tmp/err"
    ex=$?
    [ "$ex" -eq 2 ] && ok "15: --vnc $v: exit 2" || fail "15: --vnc $v: exit $ex ($(cat "$tmp/err"))"
    dm "$store" stop --force "a18w-$sfx" >/dev/null 2>&1
done

# ---- 16: ulimit -n 64 ----
echo "# 16: ulimit -n 64"
n16="a18fd-$sfx"
if (ulimit -n 64 && dm "$store" start "$n16" --qemu "$QEMU_PATH" --machine none) \
        >"$tmp/out" 2>"$tmp/err"; then
    ok "16: start under ulimit -n 64"
else
    fail "16: start under ulimit -n 64: $(cat "$tmp/err")"
fi
dm "$store" stop "$n16" >/dev/null 2>&1
# A true exhaustion: EMFILE, said so, exit 1 (not 2, "usage").
(ulimit -n 14 && dm "$store" start "$n16-b" --qemu "$QEMU_PATH" --machine none) \
    >"$tmp/out" 2>"$tmp/err"
ex=$?
if [ "$ex" -eq 1 ] && grep -q 'Too many open files' "$tmp/err"; then
    ok "16: ulimit -n 14: exit 1, Too many open files"
else
    fail "16: ulimit -n 14: exit $ex: $(cat "$tmp/err")"
fi
dm "$store" stop --force "$n16-b" >/dev/null 2>&1

# ---- 17: --store typo ----
echo "# 17: --store /existing/typo"
"$DMCTL" --store "$tmp/typo" list >"$tmp/out" 2>"$tmp/err"
ex=$?
if [ -e "$tmp/typo" ]; then
    fail "17: --store $tmp/typo created the directory"
elif [ "$ex" -eq 0 ]; then
    fail "17: --store $tmp/typo: exit 0"
elif ! grep -q "does not exist\|No such file" "$tmp/err"; then
    fail "17: no clear message: $(cat "$tmp/err")"
else
    ok "17: --store typo refused (exit $ex), not created"
fi

finish
