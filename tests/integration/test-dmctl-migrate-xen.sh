#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 22, "Done when", on the Xen DM: the xl.cfg-like guest (a qcow2
# disk, a pty serial) on /usr/libexec/xen-qemu-system-i386 (profile xen)
# migrated with `dmctl migrate` to a migrate-receive on a second "host",
# unrestricted, keeping query-block, query-chardev, query-pci. The second
# host: its own xenstored (a second xen-env.sh in $tmp/xen2, the same
# domid, as a Xen migration keeps it) and its own /var/run/xen (a tmpfs in
# the receiver's mount namespace: libdm's host-global domid claim and
# libxl's paths live there).
# The hypervisor is FAKED (tests/harness/xen-env.sh: xenhyp's LD_PRELOAD
# stubs and the real xenstored). It never fakes a pass.
#
# What happens today (found here, 2026-12-05): prepare succeeds and the
# destination Xen DM starts with -incoming; libdm's Perform is QMP
# `migrate`, whose stream begins with QEMU's "ram" savevm section, and the
# destination refuses it: "xen_ram_alloc: do not alloc ... when runstate is
# INMIGRATE", then "loadvm: ram RAM loading not allowed on Xen" (QEMU's
# migration/ram.c refuses RAM on a Xen accelerator), "load of migration
# failed: Invalid argument"; the sender sees a broken pipe and keeps the
# source. This is not the fake hypervisor's limit: on Xen, guest RAM is the
# hypervisor's and travels through libxenguest, and QEMU's part is only
# xen-save-devices-state / xen-load-devices-state (as libxl does, see
# test-xl-restore.sh). libdm's migration would need that path on the xen
# profile (and the RAM carried by a toolstack, which the fake cannot). So
# libdm now refuses a xen-profile migration at Begin (-EOPNOTSUPP, said
# as such) and this test checks that refusal: exit 1, the reason, no
# destination started, the source untouched.
# Root only (xen profile paths in /var/run/xen).

[ -n "${top_srcdir:-}" ] || { echo "ERROR: run from make check (\$top_srcdir)"; exit 99; }
. "$top_srcdir/tests/harness/xen-test.sh"
xen_test_require /var/run/xen "$(command -v qemu-img || echo qemu-img)"
xen_test_tmp test-dmctl-migrate-xen
d1=$((20000 + $$ % 900 * 2))
dst=$tmp/dst
mkdir -m 0700 "$dst" || exit 99
cleanup() {
    for s in "$store" "$dst"; do
        "$DMCTL" --store "$s" --timeout 5 stop xmig --force >/dev/null 2>&1
    done
    sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    sh "$xenenv" stop "$tmp/xen2" >/dev/null 2>&1
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
# (The second first: the first's exported environment would confuse it.)
env2=$(sh "$xenenv" start "$tmp/xen2" "$d1") || exit 99
xen_test_env "$d1"
xs2=$tmp/xen2/xs/socket
[ -S "$xs2" ] || { echo "ERROR: no xenstored socket $xs2: $env2"; exit 99; }
# host2 CMD...: CMD on the second host.
cat >"$tmp/host2" <<EOS
#!/bin/sh
mount -t tmpfs -o mode=0755 xen2run /var/run/xen || exit 99
XENSTORED_PATH='$xs2' exec "\$@"
EOS
chmod +x "$tmp/host2"
# The destination QEMU's stderr kept for the reason (libdm drops its log
# with the DM).
printf '#!/bin/sh\nexec "%s" "$@" 2>>"%s"\n' "$tmp/xen2/qemu" "$tmp/dst-qemu.err" >"$tmp/qemu-dst"
chmod +x "$tmp/qemu-dst"

. "$top_srcdir/tests/harness/tap.sh"
dm() { _s=$1; shift; timeout -k 5 60 "$DMCTL" --store "$_s" --timeout 20 "$@"; }
view() {
    dm "$1" qmp xmig "$2" | tr -d ' \n' |
        sed 's,/dev/pts/[0-9]*,/dev/pts/N,g; s,"#block[0-9]*","#blockN",g;
             s,/proc/self/fd/[0-9]*/,/proc/self/fd/N/,g'
}

qemu-img create -q -f qcow2 "$tmp/data.qcow2" 16M || exit 99
if ! out=$(dm "$store" start xmig --profile xen --domid "$d1" --memory 16 \
           --qemu "$XEN_QEMU_WRAPPER" --disk "$tmp/data.qcow2,qcow2,hdb,rw" \
           --serial pty 2>&1) || ! dm "$store" resume xmig >/dev/null 2>&1; then
    fail "starting the Xen DM: $out"
    echo "$n checks, $fails failed"
    exit 1
fi
ok "the Xen DM runs (domid $d1)"
for q in query-block query-chardev query-pci; do
    view "$store" $q >"$tmp/before.$q"
done
dm "$store" migrate xmig --to "unshare -m --propagation private '$tmp/host2' \
    '$DMCTL' --store '$dst' --timeout 20 migrate-receive --qemu '$tmp/qemu-dst'" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
# libdm refuses at Begin, before the receiver runs: nothing started there,
# the source runs on, untouched. (Before: prepare started a destination
# Xen DM, QMP migrate's RAM section was refused by it, "RAM loading not
# allowed on Xen", and the sender saw a broken pipe.)
check "dmctl migrate of a Xen DM is refused (exit $rc)" [ "$rc" -eq 1 ]
check "it says why: $(grep -v '%' "$tmp/err" | tail -n 1)" grep -q "xen-profile DM does not migrate" "$tmp/err"
check "no destination QEMU ran" sh -c "! grep -q 'RAM loading' '$tmp/dst-qemu.err' 2>/dev/null"
check "the source still runs" sh -c "'$DMCTL' --store '$store' status xmig | grep -q running"
for q in query-block query-chardev query-pci; do
    view "$store" $q >"$tmp/after.$q"
    check "$q: the source's is unchanged" cmp -s "$tmp/before.$q" "$tmp/after.$q"
done
echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
