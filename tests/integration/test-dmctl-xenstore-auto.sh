#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl with the default store ("auto") on a host where a xenstored answers
# (the REAL xenstored, privately, under tests/harness/xenstored-run.sh):
#  - a DM started without --domid is recorded in the run directory
#    (/run/libdm/NAME/record), not refused for lacking a domid;
#  - a DM started with --domid is recorded in xenstore (/tool/libdm/<d>);
#  - list shows both; the keeper finds each record (pids recorded, the
#    death of a killed QEMU recorded); stop removes both records;
#  - with --store xenstore:DIR a domid-less DM and its keeper use DIR.
# Runs as root (the default run directory /run/libdm; names are unique per
# run). Skips (77) if xenstored is not installed.

XENSTORED=${XENSTORED:-/usr/lib/xen-4.17/bin/xenstored}
if [ ! -x "$XENSTORED" ]; then
    echo "SKIP: $XENSTORED not installed (quickstart installs xen-utils-4.17)"
    exit 77
fi
if [ -z "${DMCTL:-}" ] || [ -z "${top_srcdir:-}" ] || [ -z "${top_builddir:-}" ]; then
    echo "ERROR: run from make check (\$DMCTL, \$top_srcdir, \$top_builddir)"
    exit 99
fi
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (the default store of root is /run/libdm)"
    exit 77
fi
QEMU=${LIBDM_TEST_QEMU:-/usr/bin/qemu-system-x86_64}
export top_builddir XENSTORED

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-dmctl-xs-auto.XXXXXX") || exit 99
d=$((4000 + $$ % 1000))
plain=xsauto-plain-$$
withd=xsauto-dom-$$
xsrun="$top_srcdir/tests/harness/xenstored-run.sh"

cleanup() {
    "$DMCTL" --timeout 5 stop "$plain" --force >/dev/null 2>&1
    "$DMCTL" --timeout 5 stop "$withd" --force >/dev/null 2>&1
    sh "$xsrun" stop "$tmp/xs" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

sock=$(sh "$xsrun" start "$tmp/xs")
rc=$?
[ $rc -eq 0 ] || exit $rc
XENSTORED_PATH=$sock
export XENSTORED_PATH
unset LIBDM_STORE 2>/dev/null

. "$top_srcdir/tests/harness/tap.sh"

# No --store: "auto", which finds the xenstored above.
dmctl() { "$DMCTL" --timeout 20 "$@"; }

out=$(dmctl --json start "$plain" --qemu "$QEMU" 2>"$tmp/err")
rc=$?
if [ $rc -eq 0 ]; then
    ok "start without --domid under auto with a xenstored"
else
    fail "start without --domid exited $rc: $(cat "$tmp/err")"
fi
check "its record is in the run directory" test -f "/run/libdm/$plain/record"

out=$(dmctl --json start "$withd" --domid "$d" --qemu "$QEMU" 2>"$tmp/err")
rc=$?
if [ $rc -eq 0 ]; then ok "start with --domid $d"; else fail "start --domid exited $rc: $(cat "$tmp/err")"; fi
check "its record is in xenstore" \
    test "$(xenstore-read "/tool/libdm/$d/name" 2>/dev/null)" = "$withd"
check "and not in the run directory" test ! -e "/run/libdm/$withd/record"

list=$(dmctl --json list 2>"$tmp/err")
for nm in "$plain" "$withd"; do
    line=$(printf '%s\n' "$list" | grep "\"name\":\"$nm\"")
    check "list shows $nm, alive, its pid recorded by the keeper" \
        sh -c 'printf "%s" "$1" | grep -q "\"alive\":true" &&
               ! printf "%s" "$1" | grep -q "\"pid\":0,"' _ "$line"
done
check "status of the domid-less DM: prelaunch" \
    test "$(dmctl status "$plain" 2>&1)" = prelaunch

# The keeper records the death of QEMU in the right part of the store.
pid=$(printf '%s\n' "$list" | grep "\"name\":\"$plain\"" | sed 's/.*"pid":\([0-9]*\).*/\1/')
if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then
    i=0
    while [ $i -lt 100 ]; do
        dmctl --json list --no-query 2>/dev/null | grep "\"name\":\"$plain\"" |
            grep -q '"state":"dead"' && break
        i=$((i + 1))
        sleep 0.05
    done
    check "the keeper recorded the killed QEMU as dead" \
        sh -c 'dmctl() { "$DMCTL" --timeout 20 "$@"; }; dmctl --json list --no-query |
               grep "\"name\":\"$1\"" | grep -q "\"state\":\"dead\""' _ "$plain"
else
    fail "no pid for $plain in list"
fi

check "stop the domid-less DM (already gone)" dmctl stop "$plain"
check "stop the DM with a domid" dmctl stop "$withd"
check "no record left in the run directory" test ! -e "/run/libdm/$plain/record"
check "no record left in xenstore" sh -c '! xenstore-read "/tool/libdm/$1/name" >/dev/null 2>&1' _ "$d"
check "list no longer shows them" \
    sh -c '! "$DMCTL" list --no-query | grep -E -q "^($1|$2) "' _ "$plain" "$withd"

# --store xenstore:DIR: a domid-less DM lives in DIR, and its keeper
# records there too (it once opened the default run directory instead).
own="$tmp/own-run"
xsd() { "$DMCTL" --timeout 20 --store "xenstore:$own" "$@"; }
if xsd start "$plain" --qemu "$QEMU" >/dev/null 2>"$tmp/err"; then
    ok "start under --store xenstore:DIR"
else
    fail "start under --store xenstore:DIR: $(cat "$tmp/err")"
fi
check "its record is in DIR" test -f "$own/$plain/record"
check "nothing in the default run directory" test ! -e "/run/libdm/$plain"
pid=$(xsd --json list --no-query 2>/dev/null | grep "\"name\":\"$plain\"" |
      sed 's/.*"pid":\([0-9]*\).*/\1/')
check "its keeper recorded the pid in DIR" test -n "$pid" -a "$pid" != 0
[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
i=0
while [ $i -lt 100 ] && ! grep -q '^state=dead' "$own/$plain/record" 2>/dev/null; do
    i=$((i + 1))
    sleep 0.05
done
check "its keeper recorded the death in DIR" grep -q '^state=dead' "$own/$plain/record"
check "stop under --store xenstore:DIR" xsd stop "$plain"
check "DIR has nothing of it left" test ! -e "$own/$plain"

echo "1..$n"
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
exit 0
