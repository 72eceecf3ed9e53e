#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 22, defect 1: the whole DM travels. A guest started from an xl.cfg
# with a qcow2 disk, a raw disk, a NIC on a bridge, two pty serial ports,
# VNC (with a password), std VGA and a USB tablet migrates with `dmctl
# migrate` between two "hosts": network namespaces A and B, each with its
# own bridge of the same name, joined by a veth pair (10.251.0.1/30 and
# 10.251.0.2/30). The images are the same files (shared storage is the
# caller's promise). query-block, query-chardev (pty numbers aside) and
# query-pci of the destination equal the source's; the destination's NIC
# tap is in B's bridge; the VNC password is in no log or stderr.
# Before the fix the destination started without the devices ("Unknown
# savevm section") and the migration failed.
# With MIGDEV_RESTRICT=1 (test-dmctl-migrate-devices-restricted.sh) the
# guest is started with --restrict and a private uid (never nobody): the
# devices travel the same, and the destination QEMU is confined as the
# source was (/proc: Uid, Seccomp 2, NoNewPrivs 1, root under its store).
# Root only; the namespaces are always deleted.

. "$(dirname "$0")/dmctl-migrate-lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (network namespaces, bridges, taps)"
    exit 77
fi
for t in ip qemu-img; do
    command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not found"; exit 77; }
done

restrict=${MIGDEV_RESTRICT:-0}
if [ "$restrict" = 1 ]; then
    tag=r
    ruid=$((44000 + $$ % 1000))   # private: no account, no other process has it
    set -- --restrict --runas "$ruid:$ruid"
else
    tag=
    set --
fi
nsa="dmctl-migdev$tag-a-$$"
nsb="dmctl-migdev$tag-b-$$"
veth_a="dmd${tag}A$$"
veth_b="dmd${tag}B$$"
br=brmig
migrate_tmp test-dmctl-migrate-devices$tag
cleanup() {
    NSEXEC="ip netns exec $nsa"
    kill_store "$src"
    NSEXEC="ip netns exec $nsb"
    kill_store "$dst"
    NSEXEC=
    netns_pair_del "$nsa" "$nsb" "$veth_a"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { netns_pair "$nsa" "$nsb" "$veth_a" "$veth_b" 10.251.0.1/30 10.251.0.2/30 &&
       ip -n "$nsa" link add "$br" type bridge && ip -n "$nsa" link set "$br" up &&
       ip -n "$nsb" link add "$br" type bridge && ip -n "$nsb" link set "$br" up; }; then
    echo "SKIP: cannot create network namespaces, bridges and a veth pair here"
    exit 77
fi
ok "namespaces $nsa and $nsb, each with bridge $br"

qemu-img create -q -f qcow2 "$tmp/data.qcow2" 16M &&
    qemu-img create -q -f raw "$tmp/root.raw" 16M || exit 99

pw=Mig22pw
mac=00:16:3e:5a:0c:22
cat >"$tmp/g.cfg" <<EOF
type = "hvm"
name = "mdev"
memory = 64
vcpus = 2
boot = "dc"
disk = [ '$tmp/root.raw,raw,hda,rw',
         'format=qcow2, vdev=hdb, access=rw, target=$tmp/data.qcow2' ]
vif = [ 'mac=$mac,bridge=$br,model=e1000' ]
vnc = 1
vnclisten = "127.0.0.1"
vncdisplay = 58
vncpasswd = "$pw"
serial = [ 'pty', 'pty' ]
stdvga = 1
usb = 1
usbdevice = "tablet"
EOF

# view STORE NS CMD: CMD's answer on one line; what differs between any two
# QEMUs (pty numbers, QEMU's generated node names, the fd number of libdm's
# monitor directory) replaced. So is an expansion ROM's address (PCI BAR 6):
# the guest's firmware maps it while it runs the option ROM and unmaps it
# after, so it says when the query ran (SeaBIOS still starting), not what
# the migration carried (seen once: the VGA's ROM mapped before, -1 after).
view() {
    NSEXEC="ip netns exec $2" dm "$1" qmp mdev "$3" | tr -d ' \n' |
        sed 's,/dev/pts/[0-9]*,/dev/pts/N,g; s,"#block[0-9]*","#blockN",g;
             s,/proc/self/fd/[0-9]*/,/proc/self/fd/N/,g;
             s/\("bar":6,"size":[0-9]*,"address":\)-\{0,1\}[0-9]*/\1ROM/g'
}

NSEXEC="ip netns exec $nsa"
if ! dm "$src" start --config "$tmp/g.cfg" "$@" >"$tmp/start.out" 2>&1 ||
   ! dm "$src" resume mdev >/dev/null 2>&1; then
    fail "starting the guest from the xl.cfg in $nsa: $(cat "$tmp/start.out")"
    finish
fi
ok "the guest runs in $nsa from the xl.cfg"
for q in query-block query-chardev query-pci; do
    view "$src" "$nsa" $q >"$tmp/before.$q"
done
if grep -q '"device":"ide0-hd1"' "$tmp/before.query-block" &&
   { grep -q 'data.qcow2' "$tmp/before.query-block" ||   # restricted: /dev/fdset/N
     grep -q '"format":"qcow2"' "$tmp/before.query-block"; } &&
   grep -q 'serial0' "$tmp/before.query-chardev" &&
   grep -q '"device":4110,' "$tmp/before.query-pci"; then
    ok "the source has its qcow2 disk, serial ports and e1000"
else
    fail "the source lacks a device"
fi

receiver="ip netns exec $nsb '$DMCTL' --store '$dst' --timeout 20 migrate-receive"
NSEXEC="ip netns exec $nsa"
dm "$src" migrate mdev --to "$receiver --listen tcp:10.251.0.2" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "dmctl migrate of the guest with devices from $nsa to $nsb succeeds" "$tmp/err"

NSEXEC="ip netns exec $nsb"
expect_status "$dst" mdev running "the destination runs in $nsb"
for q in query-block query-chardev query-pci; do
    view "$dst" "$nsb" $q >"$tmp/after.$q"
    if [ -s "$tmp/after.$q" ] && cmp -s "$tmp/before.$q" "$tmp/after.$q"; then
        ok "$q: the destination's equals the source's"
    else
        fail "$q differs after the migration"
        echo "    before: $(cat "$tmp/before.$q")"
        echo "    after:  $(cat "$tmp/after.$q")"
    fi
done
vnc=$(view "$dst" "$nsb" query-vnc)
if printf '%s' "$vnc" | grep -q '"service":"5958"' && printf '%s' "$vnc" | grep -q '"auth":"vnc"'; then
    ok "the destination's VNC is on display 58 with password auth"
else
    fail "the destination's VNC: $vnc"
fi
if ip -n "$nsb" link show master "$br" 2>/dev/null | grep -q 'dmmdev\.0'; then
    ok "the destination's tap dmmdev.0 is in $nsb's bridge $br"
else
    fail "no tap of the destination in $nsb's $br: $(ip -n "$nsb" link show 2>&1 | tr '\n' ' ')"
fi
if grep -rqs -- "$pw" "$tmp/out" "$tmp/err" "$tmp/start.out" $(find "$src" "$dst" -name '*.log' 2>/dev/null); then
    fail "the VNC password appears in an output or a log"
else
    ok "the VNC password is in no output or log"
fi
if [ "$restrict" = 1 ]; then
    # The destination QEMU confined as the source was (as test-dmctl-
    # migrate-defects.sh scenario 2 checks it).
    dpid=$(dm "$dst" --json list --no-query 2>/dev/null |
           sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' | head -n 1)
    expect_confined "restricted" "$dpid" "$ruid" "$dst"
fi
NSEXEC="ip netns exec $nsa"
if [ "$(dm "$src" --json list --no-query 2>/dev/null | grep -c '"name"')" = 0 ]; then
    ok "the source is gone from $nsa"
else
    fail "the source is still recorded in $nsa"
fi
NSEXEC="ip netns exec $nsb"
dm "$dst" stop mdev >/dev/null 2>&1 || fail "stopping the destination"
finish
