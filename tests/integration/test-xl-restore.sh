#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# libxl's restore through libdm-xl-dm: libxl 4.17 (libxl_dm.c) opens the
# saved device state (what QEMU's xen-save-devices-state wrote at `xl save`
# or in the migration stream) and passes it as "-incoming fd:N", after
# -chroot and before the extra arguments; it never passes "-incoming defer".
# libdm-xl-dm must hand fd N to QEMU and resume only once QMP confirmed the
# load completed (seed 000), never after a failed one.
#
# Real parts: the Xen device model (qemu-system-xen) under the FAKE
# hypervisor (tests/harness/xen-env.sh), the real xenstored; the saved state
# is written by that QEMU's own xen-save-devices-state. Not the real `xl
# restore` / `xl migrate`: their domain memory goes through libxenguest's
# xc_domain_save / xc_domain_restore, run in libxl-save-helper with
# callbacks into libxl (suspend, which saves QEMU's state; the restore's
# stream records), and the fakes (xenhyp.c, xlhyp.c) fake the domain
# builder, not that stream. So libxl's side is played here as libxl does
# it: the fd open in libdm-xl-dm's parent, libxl's argument order, without
# -S (libxl without dm_restrict waits for QEMU's "running" in xenstore;
# under dm_restrict it passes -S and sends "cont" itself).
# Root only (xen profile paths in /var/run/xen); skips (77) without the Xen
# DM or xenstored.

[ -n "${top_srcdir:-}" ] || { echo "ERROR: run from make check (\$top_srcdir)"; exit 99; }
. "$top_srcdir/tests/harness/xen-test.sh"
xen_test_require /var/run/xen
XLDM=${XLDM:-$top_builddir/tools/libdm-xl-dm}
xen_test_tmp test-xl-restore
d1=$((18000 + $$ % 600 * 3)) d2=$((18001 + $$ % 600 * 3)) d3=$((18002 + $$ % 600 * 3))
tag=r$$
prog=
cleanup() {
    [ -n "$prog" ] && kill -TERM "$prog" 2>/dev/null && wait "$prog" 2>/dev/null
    for n in src rs bad; do
        "$DMCTL" --store "$store" --timeout 5 stop "$tag-$n" --force >/dev/null 2>&1
    done
    sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

xen_test_env "$d1" "$d2" "$d3"

. "$top_srcdir/tests/harness/tap.sh"
has() { case $1 in *"$2"*) return 0 ;; esac; return 1; }
dmctl() { "$DMCTL" --store "$store" --timeout 20 "$@"; }
qemu_of() { pgrep -f "^$XEN_QEMU -xen-domid $1 " | head -n 1; }
# first_line FILE PATTERN: the number of FILE's first line with PATTERN.
first_line() { grep -n -- "$2" "$1" | head -n 1 | cut -d: -f1; }

# ---- the saved state, by the Xen DM itself ----
state=$tmp/qemu-save.$d1
if ! out=$(dmctl start "$tag-src" --profile xen --domid "$d1" --qemu "$XEN_QEMU_WRAPPER" 2>&1); then
    fail "start the source DM: $out"
fi
dmctl resume "$tag-src" >/dev/null 2>&1
dmctl qmp "$tag-src" xen-save-devices-state "{\"filename\": \"$state\", \"live\": false}" \
    >/dev/null 2>&1
check "xen-save-devices-state wrote the device state" test -s "$state"
dmctl stop "$tag-src" >/dev/null 2>&1

# run_xldm NAME DOMID STATE-FILE: libdm-xl-dm as libxl execs it for a
# restore (the saved state on fd 9), in the background; its stderr (libxl's
# log) in $tmp/NAME.log, with libdm's QMP traffic (LIBDM_LOG=debug).
run_xldm() {
    LIBDM_LOG=debug LIBDM_XL_DM_QEMU=$XEN_QEMU_WRAPPER LIBDM_XL_DM_STORE=$store \
        "$XLDM" -xen-domid "$2" -no-shutdown -nodefaults -no-user-config -name "$tag-$1" \
        -display none -machine xenfv -m 16 -incoming fd:9 9<"$3" 2>"$tmp/$1.log" &
    prog=$!
}

# ---- 1. a restore ----
run_xldm rs "$d2" "$state"
ready_or_gone() { grep -q "ready" "$tmp/rs.log" || ! kill -0 "$prog" 2>/dev/null; }
wait_for 30 ready_or_gone
check "[rs] libdm-xl-dm: the restored DM is ready" grep -q "device model $tag-rs .* ready" "$tmp/rs.log"
q=$(qemu_of "$d2")
check "[rs] QEMU got the stream as a passed fd (-incoming fd:N, N >= 7)" \
    sh -c "tr '\\0' ' ' </proc/$q/cmdline | grep -Eq ' -incoming fd:([7-9]|[1-9][0-9]+) '"
check "[rs] query-migrate on libdm's monitor: completed" \
    has "$(dmctl qmp "$tag-rs" query-migrate 2>&1)" '"status": "completed"'
resumed() { has "$(dmctl qmp "$tag-rs" query-status 2>&1)" '"status": "running"'; }
check "[rs] resumed after the load (no -S from libxl): running" wait_for 10 resumed
done_at=$(first_line "$tmp/rs.log" 'QMP recv: {"return":{"status":"completed"')
cont_at=$(first_line "$tmp/rs.log" 'QMP send: {"execute":"cont"')
check "[rs] \"cont\" sent only after QMP said the load completed (lines $done_at < $cont_at)" \
    test -n "$done_at" -a -n "$cont_at" -a "${done_at:-0}" -lt "${cont_at:-0}"
check "[rs] QEMU wrote running into xenstore (what libxl waits for)" \
    test "$(xenstore-read "/local/domain/0/device-model/$d2/state" 2>/dev/null)" = running
kill -HUP "$prog"
wait "$prog"
rc=$?
prog=
check "[rs] SIGHUP (libxl's destroy): stopped, exit 0 ($rc)" test "$rc" = 0
check "[rs] no QEMU, record or run directory left" sh -c \
    "test -z '$(qemu_of "$d2")' && ! '$DMCTL' --store '$store' list | grep -q '^$tag-rs ' &&
     test ! -e '$store/$tag-rs'"
[ "$fails" -eq 0 ] || sed "s/^/    rs: /" "$tmp/rs.log" | tail -40

# ---- 2. a stream that does not load: never resumed ----
head -c 4096 /dev/urandom >"$tmp/garbage"
run_xldm bad "$d3" "$tmp/garbage"
wait "$prog"
rc=$?
prog=
check "[bad] libdm-xl-dm fails ($rc)" test "$rc" -ne 0
check "[bad] libdm's QMP traffic is logged" grep -q 'QMP send: {"execute":"qmp_capabilities"' "$tmp/bad.log"
check "[bad] no \"cont\" ever sent" sh -c "! grep -q 'QMP send: {\"execute\":\"cont\"' '$tmp/bad.log'"
check "[bad] no QEMU, record or run directory left" sh -c \
    "test -z '$(qemu_of "$d3")' && ! '$DMCTL' --store '$store' list | grep -q '^$tag-bad ' &&
     test ! -e '$store/$tag-bad'"

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
