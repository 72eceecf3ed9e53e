#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Restricted guests keep their data (issue 20): a restricted DM writes past
# 1 GiB into a sparse raw image and into a qcow2 image, on both QEMU
# binaries (qemu-system-x86_64, and the REAL Xen DM under the FAKE
# hypervisor of tests/harness/xen-env.sh), and the data reads back on the
# host after stop (qemu-io). The write is QEMU's own block layer, through
# the fd libdm passed (-add-fd), driven by HMP's "qemu-io" command: the same
# path a guest's write takes, without needing a guest OS. Before the fix the
# keeper's RLIMIT_FSIZE (256 KiB, libxl's) made every such write fail
# (EFBIG). Also checked: the limit is gone only for such DMs, and then
# QEMU's stdout/stderr is a pipe the keeper copies with a cap, and status
# says so. Root only (dm_restrict); a private uid, never a shared one.

XEN_QEMU=${XEN_QEMU:-/usr/libexec/xen-qemu-system-i386}
XENSTORED=${XENSTORED:-/usr/lib/xen-4.17/bin/xenstored}
QEMU=${QEMU:-qemu-system-x86_64}
for t in "$QEMU" qemu-img qemu-io; do
    command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (dm_restrict)"
    exit 77
fi
if [ -z "${DMCTL:-}" ] || [ -z "${top_srcdir:-}" ] || [ -z "${top_builddir:-}" ]; then
    echo "ERROR: run from make check (\$DMCTL, \$top_srcdir, \$top_builddir)"
    exit 99
fi
export top_builddir XEN_QEMU XENSTORED

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-restrict-disk.XXXXXX") || exit 99
chmod 0755 "$tmp"
store=$tmp/store
mkdir -m 0700 "$store" || exit 99
uid=$((61000 + $$ % 1000))
d=$((2100 + $$ % 100))
xenenv="$top_srcdir/tests/harness/xen-env.sh"
xen=no
cleanup() {
    for n in rdp-$$ rdx-$$ rdr-$$ rdc-$$; do
        "$DMCTL" --store "$store" --timeout 5 stop "$n" --force >/dev/null 2>&1
    done
    [ $xen = yes ] && sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fails=0
n=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { n=$((n + 1)); echo "ok $n - $*"; }
check() {
    desc=$1
    shift
    if "$@"; then ok "$desc"; else fail "$desc"; fi
}
has() { printf '%s\n' "$1" | grep -Eq -- "$2"; }
dmctl() { "$DMCTL" --store "$store" --timeout 30 "$@"; }
hmp() { dmctl qmp "$1" human-monitor-command "{\"command-line\":\"$2\"}"; }
dm_pid() { dmctl --json list --no-query | sed -n "s/.*\"name\":\"$1\"[^}]*\"pid\":\([0-9]*\).*/\1/p"; }
fsize() { sed -n 's/^Max file size  *\([^ ]*\) .*/\1/p' "/proc/$1/limits"; }

# One DM: NAME, then dmctl start's options. Writes 64 KiB of 0x5a at
# 1100 MiB into each image and 64 KiB of 0xa5 at 3 MiB, stops, reads back.
run() {
    name=$1
    what=$2
    shift 2
    rm -f "$tmp/$name.raw" "$tmp/$name.qcow2"
    truncate -s 2G "$tmp/$name.raw"
    qemu-img create -q -f qcow2 "$tmp/$name.qcow2" 2G
    cat >"$tmp/$name.cfg" <<EOC
type = "hvm"
name = "$name"
disk = [ '$tmp/$name.raw,raw,hda,rw', '$tmp/$name.qcow2,qcow2,hdb,rw' ]
vga = "none"
vnc = 0
EOC
    if ! out=$(dmctl start --config "$tmp/$name.cfg" --restrict --runas "$uid:$uid" "$@" \
            2>"$tmp/err"); then
        fail "$what: restricted start: $out $(cat "$tmp/err")"
        return
    fi
    ok "$what: restricted start"
    pid=$(dm_pid "$name")
    check "$what: runs as uid $uid" grep -q "^Uid:[[:space:]]*$uid" "/proc/$pid/status"
    check "$what: no RLIMIT_FSIZE (writable file images)" test "$(fsize "$pid")" = unlimited
    check "$what: stderr is the keeper's pipe" \
        sh -c "readlink /proc/$pid/fd/2 | grep -q '^pipe:'"
    check "$what: stdout is the keeper's pipe" \
        sh -c "readlink /proc/$pid/fd/1 | grep -q '^pipe:'"
    st=$(dmctl --json status "$name")
    check "$what: status says FSIZE is lifted" has "$st" 'rlimits but FSIZE \(writable file images'
    for dev in ide0-hd0 ide0-hd1; do
        r=$(hmp "$name" "qemu-io $dev \\\"write -P 0x5a 1100M 64k\\\"")
        check "$what: $dev: write at 1100 MiB ($r)" sh -c "! printf '%s' '$r' | grep -qi 'fail\|error'"
        r=$(hmp "$name" "qemu-io $dev \\\"write -P 0xa5 3M 64k\\\"")
        check "$what: $dev: write at 3 MiB ($r)" sh -c "! printf '%s' '$r' | grep -qi 'fail\|error'"
        r=$(hmp "$name" "qemu-io $dev \\\"flush\\\"")
    done
    check "$what: stop" dmctl stop "$name"
    for img in raw qcow2; do
        out=$(qemu-io -f $img -c "read -P 0x5a 1100M 64k" -c "read -P 0xa5 3M 64k" \
              "$tmp/$name.$img" 2>&1)
        check "$what: $img reads back after stop" \
            sh -c "! printf '%s' '$out' | grep -qi 'fail\|error' &&
                   test \$(printf '%s' '$out' | grep -c 'read 65536/65536') = 2"
    done
}

run rdp-$$ "qemu-system-x86_64" --profile plain --machine pc --memory 64 --qemu "$(command -v "$QEMU")"

# Without a writable file image the limit stays (libxl's confinement).
cat >"$tmp/ro.cfg" <<EOF
type = "hvm"
name = "rdr-$$"
disk = [ '$tmp/rdp-$$.raw,raw,hdc,r,devtype=cdrom' ]
vga = "none"
vnc = 0
EOF
if dmctl start --config "$tmp/ro.cfg" --restrict --runas "$uid:$uid" --profile plain \
        --machine pc --memory 64 --qemu "$(command -v "$QEMU")" >/dev/null 2>"$tmp/err"; then
    pid=$(dm_pid "rdr-$$")
    check "read-only image: RLIMIT_FSIZE 256 KiB stays" test "$(fsize "$pid")" = 262144
    check "read-only image: stderr is the log file" \
        sh -c "readlink /proc/$pid/fd/2 | grep -q 'qemu.log'"
    check "read-only image: stop" dmctl stop "rdr-$$"
else
    fail "read-only image: restricted start: $(cat "$tmp/err")"
fi

# The bound FSIZE gave the log, kept by the keeper: a guest running under
# "-d in_asm" writes megabytes to stderr; qemu.log stops at 256 KiB.
truncate -s 64M "$tmp/cap.raw"
cat >"$tmp/cap.cfg" <<EOF
type = "hvm"
name = "rdc-$$"
disk = [ '$tmp/cap.raw,raw,hda,rw' ]
vga = "none"
vnc = 0
EOF
if dmctl start --config "$tmp/cap.cfg" --restrict --runas "$uid:$uid" --profile plain \
        --machine pc --memory 64 --qemu "$(command -v "$QEMU")" -- -d in_asm \
        >/dev/null 2>"$tmp/err"; then
    log=$(ls "$store"/rdc-$$/qemu.log)
    check "output cap: resume" dmctl resume "rdc-$$"
    i=0
    while ! grep -q "output past 262144 bytes dropped" "$log" && [ $i -lt 100 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    check "output cap: the keeper says it dropped the rest" \
        grep -q "libdm-keeper: device model output past 262144 bytes dropped" "$log"
    sleep 1
    sz=$(stat -c %s "$log")
    check "output cap: qemu.log stays near 256 KiB ($sz bytes)" test "$sz" -lt 270000
    check "output cap: stop" dmctl stop "rdc-$$"
else
    fail "output cap: restricted start: $(cat "$tmp/err")"
fi

if [ -x "$XEN_QEMU" ] && [ -x "$XENSTORED" ]; then
    mkdir -p /var/run/xen || exit 99
    env_out=$(sh "$xenenv" start "$tmp/xen" "$d")
    rc=$?
    [ $rc -eq 0 ] || exit $rc
    xen=yes
    eval "$env_out"
    export XENSTORED_PATH
    run rdx-$$ "Xen DM" --profile xen --domid "$d" --qemu "$XEN_QEMU_WRAPPER"
else
    echo "# no Xen DM or xenstored: the Xen half is skipped"
fi

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
