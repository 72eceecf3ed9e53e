#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Typed devices with a real QEMU (TCG, plain profile), from an xl.cfg read
# by `dmctl start --config`:
#  - raw and qcow2 disks, a read-only CD-ROM (query-block);
#  - an e1000 NIC on a tap libdm creates in a bridge this test makes in its
#    own network namespace (dmctl runs inside it): MAC in the guest (info
#    network) and in status --json, the tap up and in the bridge, gone after
#    stop;
#  - VNC with a password (query-vnc auth "vnc"; the password in no
#    /proc/PID/cmdline), two pty serial ports (query-chardev, status --json),
#    2 vCPUs (query-cpus-fast), boot order, std VGA and e1000 (query-pci),
#    a USB tablet (info usb);
#  - dm_restrict: images and taps are fds (query-block says /dev/fdset/N);
#  - bad configs, one error each: missing image, bad MAC, duplicate vdev,
#    missing bridge, unsupported model, a VNC password with VNC off.
# Root only (network namespace, bridge, taps).

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (network namespace, bridge, taps)"
    exit 77
fi
for t in ip qemu-img; do
    command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not found"; exit 77; }
done
if [ -z "${DMCTL:-}" ]; then
    echo "ERROR: run from make check (\$DMCTL)"
    exit 99
fi

ns="dmdev-$$"
br=brdev
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-dmctl-devices.XXXXXX") || exit 99
chmod 0755 "$tmp"
store=$tmp/store
mkdir -m 0700 "$store" || exit 99
cleanup() {
    for g in dev1 dev2 bad; do
        ip netns exec "$ns" "$DMCTL" --store "$store" --timeout 5 stop "$g" --force >/dev/null 2>&1
    done
    ip netns del "$ns" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$top_srcdir/tests/harness/tap.sh"
# has TEXT PATTERN: grep -E on a string.
has() { printf '%s\n' "$1" | grep -Eq -- "$2"; }

inns() { ip netns exec "$ns" "$@"; }
dmctl() { inns "$DMCTL" --store "$store" --timeout 20 "$@"; }
qmp() { dmctl qmp "$@"; }
hmp() { dmctl qmp "$1" human-monitor-command "{\"command-line\":\"$2\"}"; }

if ! { ip netns add "$ns" && inns ip link set lo up &&
       inns ip link add "$br" type bridge && inns ip link set "$br" up; }; then
    echo "SKIP: cannot create a network namespace with a bridge here"
    exit 77
fi

qemu-img create -q -f raw "$tmp/root.raw" 16M &&
    qemu-img create -q -f qcow2 "$tmp/data.qcow2" 16M &&
    qemu-img create -q -f raw "$tmp/cd.iso" 1M || exit 99

pw=Pw11xyz
mac=00:16:3e:5a:0b:01
cfg=$tmp/g.cfg
cat >"$cfg" <<EOF
# An xl.cfg as xl reads it.
type = "hvm"
name = "dev1"
memory = 64
vcpus = 2
boot = "dc"
disk = [ '$tmp/root.raw,raw,hda,rw',
         'format=qcow2, vdev=hdb, access=rw, target=$tmp/data.qcow2',
         'vdev=hdc, devtype=cdrom, format=raw, access=ro, target=$tmp/cd.iso' ]
vif = [ 'mac=$mac,bridge=$br,model=e1000' ]
vnc = 1
vnclisten = "127.0.0.1"
vncdisplay = 57
vncpasswd = "$pw"
serial = [ 'pty', 'pty' ]
stdvga = 1
usb = 1
usbdevice = "tablet"
on_crash = "destroy"
acpi = 1
EOF

# ---- 1. the guest from the xl.cfg ----
if ! out=$(dmctl start --config "$cfg" 2>"$tmp/err"); then
    fail "start --config: $out $(cat "$tmp/err")"
    echo "$n checks, $fails failed"
    exit 1
fi
ok "start --config $cfg (name from the file)"
check "keys it does not use are listed once ($(cat "$tmp/err"))" \
    grep -qx ".*ignored (not device-model settings here): on_crash" "$tmp/err"  # acpi is mapped (-no-acpi)
pid=$(printf '%s\n' "$out" | sed -n 's/^pid: *//p')
keeper=$(awk '{print $4}' "/proc/$pid/stat")

# block_dev DEVICE: that device's query-block entry, on one line.
block_dev() {
    qmp "$1" query-block | tr -d ' \n' | sed 's/{"io-status"/\n&/g' | grep "\"device\":\"$2\""
}
b=$(block_dev dev1 ide0-hd0)
check "query-block: hda is raw $tmp/root.raw" \
    has "$b" "\"drv\":\"raw\"" && has "$b" "\"file\":\"$tmp/root.raw\"" && has "$b" '"ro":false'
b=$(block_dev dev1 ide0-hd1)
check "query-block: hdb is qcow2 $tmp/data.qcow2" \
    has "$b" "\"drv\":\"qcow2\"" && has "$b" "\"file\":\"$tmp/data.qcow2\""
b=$(block_dev dev1 ide-5632)
check "query-block: the CD-ROM (hdc) is read-only with its media" \
    has "$b" '"ro":true' && has "$b" "\"file\":\"$tmp/cd.iso\"" && has "$b" '"removable":true'

pci=$(qmp dev1 query-pci | tr -d ' \n')
check "query-pci: e1000 (8086:100e)" has "$pci" '"device":4110,[^}]*"vendor":32902'
check "query-pci: std VGA (1234:1111)" has "$pci" '"device":4369,[^}]*"vendor":4660'

vnc=$(qmp dev1 query-vnc | tr -d ' \n')
check "query-vnc: 127.0.0.1:5957 with password auth" \
    has "$vnc" '"auth":"vnc"' && has "$vnc" '"service":"5957"' && has "$vnc" '"host":"127.0.0.1"'
check "the VNC password is in no command line" \
    sh -c "! grep -q '$pw' /proc/$pid/cmdline /proc/$keeper/cmdline"

chr=$(qmp dev1 query-chardev | tr -d ' \n')
check "query-chardev: two pty serial ports" \
    has "$chr" '"label":"serial0"' && has "$chr" '"label":"serial1"' && \
    test "$(printf '%s' "$chr" | grep -o 'pty:/dev/pts/[0-9]*' | wc -l)" -ge 2
check "query-cpus-fast: 2 vCPUs" \
    test "$(qmp dev1 query-cpus-fast | grep -c '"cpu-index"')" -eq 2
check "info usb: a USB tablet" has "$(hmp dev1 'info usb')" "QEMU USB Tablet"
check "boot order dc" grep -q 'order=dc' "/proc/$pid/cmdline"
check "info network: the guest's MAC $mac" has "$(hmp dev1 'info network')" "macaddr=$mac"

tap=$(inns ip -o link show master "$br" | awk -F': ' '{print $2}' | sed 's/@.*//')
check "the tap ($tap) is in bridge $br" test "$tap" = dmdev1.0
check "the tap is up" has "$(inns ip -o link show "$tap")" "UP"
st=$(dmctl --json status dev1)
check "status --json: the MAC, tap and bridge" \
    has "$st" "\"mac\":\"$mac\",\"model\":\"e1000\",\"ifname\":\"dmdev1.0\",\"bridge\":\"$br\""
check "status --json: the pty paths" has "$st" '"pty":"/dev/pts/[0-9]+".*"pty":"/dev/pts/[0-9]+"'
check "status --json: the VNC port" has "$st" '"vnc":\{"host":"127.0.0.1","service":"5957"'

check "stop" dmctl stop dev1
check "the tap is gone after stop" sh -c "! ip netns exec $ns ip link show dmdev1.0 2>/dev/null"
check "the bridge has no port left" test -z "$(inns ip -o link show master "$br")"

# ---- 2. command-line options override the file; dm_restrict: fds ----
if out=$(dmctl start dev2 --config "$cfg" --restrict --runas 64531:64531 --vcpus 1 \
        --disk "$tmp/root.raw,raw,xvda,rw" --vnc none 2>"$tmp/err"); then
    ok "restricted start, options over the file"
    blk=$(qmp dev2 query-block | tr -d ' \n')
    check "restricted: the image is an fd (/dev/fdset/1), writable" \
        has "$blk" '"ro":false,[^{]*"drv":"raw"[^{]*"file":"/dev/fdset/1"|"file":"/dev/fdset/1"'
    check "restricted: only --disk's disks (the file's are overridden)" \
        sh -c "! printf '%s' '$blk' | grep -q qcow2"
    check "restricted: --vcpus 1 won over vcpus=2" \
        test "$(qmp dev2 query-cpus-fast | grep -c '"cpu-index"')" -eq 1
    check "restricted: --vnc none won over vnc=1" \
        has "$(qmp dev2 query-vnc | tr -d ' \n')" '"enabled":false'
    check "restricted: the tap is an fd QEMU was given" \
        has "$(tr '\0' ' ' <"/proc/$(dmctl --json list | sed -n 's/.*"name":"dev2"[^}]*"pid":\([0-9]*\).*/\1/p')/cmdline")" \
        'type=tap,id=net0,fd=[0-9]+'
    check "restricted: stop" dmctl stop dev2
    check "restricted: the tap is gone" sh -c "! ip netns exec $ns ip link show dmdev2.0 2>/dev/null"
else
    fail "restricted start: $out $(cat "$tmp/err")"
fi

# ---- 3. bad configs: one error each ----
# bad NAME STATUS PATTERN SED-EXPRESSION: the config edited by SED fails
# with STATUS and an error matching PATTERN, and leaves nothing running.
bad() {
    sed -e "s/^name = .*/name = \"bad\"/" -e "$4" "$cfg" >"$tmp/bad.cfg"
    dmctl start --config "$tmp/bad.cfg" >"$tmp/bad.out" 2>&1
    rc=$?
    if [ $rc -eq "$2" ] && grep -Eq -- "$3" "$tmp/bad.out"; then
        ok "$1: exit $rc, $(grep -E -- "$3" "$tmp/bad.out" | head -1)"
    else
        fail "$1: exit $rc (want $2), $(cat "$tmp/bad.out")"
    fi
    check "$1: nothing recorded" sh -c "! '$DMCTL' --store '$store' list | grep -q '^bad '"
}
bad "missing image" 1 "disk hda: $tmp/nothere.raw: No such file or directory" \
    "s|$tmp/root.raw|$tmp/nothere.raw|"
bad "bad MAC" 2 "bad.cfg: vif: mac '00:16:3e:zz:0b:01': not xx:xx:xx:xx:xx:xx" \
    "s|$mac|00:16:3e:zz:0b:01|"
bad "duplicate vdev" 2 "bad.cfg: disk: vdev 'hda': duplicate" "s|vdev=hdb|vdev=hda|"
bad "bridge that does not exist" 1 "nic 0: bridge nosuchbr does not exist" \
    "s|bridge=$br|bridge=nosuchbr|"
check "no tap left by the failed start" sh -c "! ip netns exec $ns ip link show dmbad.0 2>/dev/null"
bad "unsupported model" 2 "bad.cfg: vif: model 'no-such-nic': unsupported" \
    "s|model=e1000|model=no-such-nic|"
bad "password where VNC is off" 2 "bad.cfg: vncpasswd: set while vnc=0" "s|^vnc = 1|vnc = 0|"

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
