#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A xen-profile DM with a VNC password publishes console/vnc-pass as libxl
# does (Xen 4.17 libxl_dm.c, device_model_postconfig_vnc_passwd): written
# into /local/domain/<d>/console/vnc-pass only after QEMU accepted the
# password (change-vnc-password there, set_password here), after
# console/vnc-{listen,port}; and /local/domain/0/device-model/<d> exists
# before the DM is spawned (libxl makes it first; QEMU writes "state" in it).
#
# The real xenstored runs under the hypervisor stub (tests/harness/
# xen-env.sh). The QEMU is NOT the Xen device model: Debian's
# qemu-system-xen has no DES cipher, so "-vnc ...,password=on" makes it exit
# at start ("Cipher backend does not support DES algorithm") and no VNC
# password can be set there at all. This test runs the xen profile's
# command line on qemu-system-x86_64 (which has DES) through a wrapper that
# drops the Xen-only options (-xen-domid, -machine xenfv: "-machine none"):
# what is checked is libdm's side (what it writes, when, with which
# permissions), with a real QEMU taking or refusing the password; what is
# not checked is the Xen DM itself taking one. The wrapper also records
# whether device-model/<d> existed when it ran (at the DM's exec).
# Root only (the xen profile's monitor is in /var/run/xen); skips (77)
# without xenstored, the Xen DM (xen-env.sh) or qemu-system-x86_64.

QEMU_X86=${QEMU_X86:-$(command -v qemu-system-x86_64)}
if [ -z "$QEMU_X86" ] || [ ! -x "$QEMU_X86" ]; then
    echo "SKIP: qemu-system-x86_64 not installed"
    exit 77
fi
[ -n "${top_srcdir:-}" ] || { echo "ERROR: run from make check (\$top_srcdir)"; exit 99; }
. "$top_srcdir/tests/harness/xen-test.sh"
xen_test_require /var/run/xen
xen_test_tmp test-xen-vncpass
d=$((14000 + $$ % 1000))
d2=$((d + 600))
cleanup() {
    "$DMCTL" --store xenstore --timeout 5 stop "vp$$" --force >/dev/null 2>&1
    "$DMCTL" --store xenstore --timeout 5 stop "vq$$" --force >/dev/null 2>&1
    "$DMCTL" --store xenstore forget "vq$$" >/dev/null 2>&1
    sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

xen_test_env "$d" "$d2"

. "$top_srcdir/tests/harness/tap.sh"
has() { case $1 in *"$2"*) return 0 ;; esac; return 1; }
dx() { "$DMCTL" --store xenstore --timeout 20 "$@"; }

# The wrapper: libdm hands QEMU only PATH and LC_ALL, so what it needs is
# written into it. STRIP_PW=1: "password=on" dropped (a QEMU that refuses
# set_password).
mkwrapper() {
    {
        echo '#!/bin/sh'
        echo "XENSTORED_PATH='$XENSTORED_PATH'; export XENSTORED_PATH"
        echo "if xenstore-exists /local/domain/0/device-model/$1; then"
        echo "    echo yes >'$tmp/dmdir-$1'; else echo no >'$tmp/dmdir-$1'; fi"
        echo 'n=$#; i=0; skip=0'
        echo 'for a in "$@"; do'
        echo '    i=$((i + 1))'
        echo '    if [ $skip = 1 ]; then skip=0'
        echo '    elif [ "$a" = -xen-domid ]; then skip=1'
        echo '    elif [ "$a" = -xen-domid-restrict ]; then :'
        echo '    else'
        echo '        case $a in'
        echo '        xenfv*) a=none ;;'
        [ "$2" = 1 ] && echo '        *,password=on*) a=$(echo "$a" | sed "s/,password=on//") ;;'
        echo '        esac'
        echo '        set -- "$@" "$a"'
        echo '    fi'
        echo 'done'
        echo 'shift $n'
        echo "exec '$QEMU_X86' \"\$@\""
    } >"$tmp/qemu-$1"
    chmod 0755 "$tmp/qemu-$1"
}

pw=$(printf 'p%06d' $(($$ % 1000000))) # VNC: at most 8 characters
printf '%s\n' "$pw" >"$tmp/pw"
chmod 0600 "$tmp/pw"

# ---- 1. a QEMU that takes the password ----
mkwrapper "$d" 0
# The domain as libxl leaves it before the spawn, minus device-model/<d>:
# libdm makes it.
xenstore-rm "/local/domain/0/device-model/$d"
port=$((d % 40 + 20))
if out=$(dx start "vp$$" --profile xen --domid "$d" --qemu "$tmp/qemu-$d" \
        --vnc "127.0.0.1:$port" --vnc-password-file "$tmp/pw" 2>&1); then
    ok "start (xen profile, VNC password)"
    check "device-model/$d existed when the DM was spawned" \
        test "$(cat "$tmp/dmdir-$d" 2>/dev/null)" = yes
    check "device-model/$d: owned by dom0, readable by the domain" \
        sh -c "xenstore-ls -p /local/domain/0/device-model | grep -q '^$d = \"\" [ .]*(n0,r$d)\$'"
    check "QEMU's VNC asks for the password (query-vnc auth vnc)" \
        has "$(dx qmp "vp$$" query-vnc 2>&1)" '"auth": "vnc"'
    check "console/vnc-port" test "$(xenstore-read "/local/domain/$d/console/vnc-port")" = \
        $((5900 + port))
    check "console/vnc-pass is the password QEMU took" \
        test "$(xenstore-read "/local/domain/$d/console/vnc-pass" 2>/dev/null)" = "$pw"
    check "console/vnc-pass readable by dom0 alone (n0)" \
        sh -c "xenstore-ls -p /local/domain/$d/console | grep -q '^vnc-pass = \"$pw\" [ .]*(n0)\$'"
    check "stop" dx stop "vp$$"
    check "console/vnc-pass removed at stop" \
        sh -c "! xenstore-read /local/domain/$d/console/vnc-pass 2>/dev/null"
else
    fail "start (xen profile, VNC password): $out"
fi

# ---- 2. a QEMU that refuses it: nothing published ----
mkwrapper "$d2" 1
port=$((d2 % 40 + 60))
out=$(dx start "vq$$" --profile xen --domid "$d2" --qemu "$tmp/qemu-$d2" \
    --vnc "127.0.0.1:$port" --vnc-password-file "$tmp/pw" 2>&1)
rc=$?
check "set_password refused: the start fails ($rc)" test "$rc" -ne 0
check "set_password refused: no console/vnc-pass" \
    sh -c "! xenstore-read /local/domain/$d2/console/vnc-pass 2>/dev/null"

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
