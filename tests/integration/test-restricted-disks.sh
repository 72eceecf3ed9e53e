#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A restricted guest keeps its data (issue 20, section 3). RLIMIT_FSIZE, the
# 256 KiB limit libxl sets, applies to every write at or past it into any
# regular file, disk images handed to QEMU as fds included: a restricted
# guest lost every write past 256 KiB. Now, on both QEMU binaries
# (qemu-system-x86_64 TCG, and the real Xen device model under the FAKE
# hypervisor of tests/harness/xenhyp.c - no Xen runs here):
#  - a restricted DM writes past 1 GiB into a sparse raw image and into a
#    qcow2 image (QEMU's own block layer, through HMP's qemu-io: no guest OS
#    is needed), and the host reads the data back after stop;
#  - its RLIMIT_FSIZE is unlimited only because it has writable images; a
#    restricted DM without one keeps libxl's 256 KiB;
#  - what the limit bounded, the log, is still bounded: QEMU's output goes
#    through the keeper, which caps it at 256 KiB and says so.
# Runs as root with a private uid (never nobody); skips (77) otherwise.

QEMU=${QEMU:-qemu-system-x86_64}
XEN_QEMU=${XEN_QEMU:-/usr/libexec/xen-qemu-system-i386}
if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root (dm_restrict)"; exit 77; fi
for t in "$QEMU" qemu-img qemu-io; do
    command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
if [ -z "${DMCTL:-}" ] || [ -z "${top_srcdir:-}" ] || [ -z "${top_builddir:-}" ]; then
    echo "ERROR: run from make check (\$DMCTL, \$top_srcdir, \$top_builddir)"
    exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-rdisks.XXXXXX") || exit 99
store=$tmp/store
mkdir -m 0700 "$store" || exit 99
uid=$((62000 + $$ % 1000)) # private: no account, no other process has it
d=$((6000 + $$ % 1000))
names="rd$$ rx$$ rl$$ rn$$"
xenenv="$top_srcdir/tests/harness/xen-env.sh"
xen=no

cleanup() {
    for n in $names; do
        "$DMCTL" --store "$store" --timeout 5 stop "$n" --force >/dev/null 2>&1
    done
    [ "$xen" = yes ] && sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$top_srcdir/tests/harness/tap.sh"
dmctl() { "$DMCTL" --store "$store" --timeout 30 "$@"; }
pid_of() { field "$(dmctl --json list | grep "\"name\":\"$1\"")" pid; }
hmp() { dmctl qmp "$1" human-monitor-command "{\"command-line\":\"$2\"}"; }
# holds FMT IMAGE PATTERN OFFSET: the host reads PATTERN back (qemu-io prints
# "read ..." even after "Pattern verification failed", so both are looked at).
holds() {
    out=$(qemu-io -f "$1" -c "read -P $3 $4 64k" "$2" 2>&1)
    printf '%s\n' "$out" | grep -q '^read 65536/65536' &&
        ! printf '%s\n' "$out" | grep -q 'verification failed'
}

# images NAME: a sparse 2 GiB raw and a 2 GiB qcow2, owned by root (libdm
# opens them and hands QEMU the fds: the private uid never needs them).
images() {
    truncate -s 2G "$tmp/$1.raw" && qemu-img create -q -f qcow2 "$tmp/$1.qcow2" 2G
}

# writes NAME LABEL START-ARGS...: the restricted DM writes past 1 GiB into
# both images; after stop the host reads the patterns back.
writes() {
    nm=$1 label=$2
    shift 2
    images "$nm" || { fail "$label: images"; return; }
    if ! out=$(dmctl start "$nm" --restrict --runas "$uid:$uid" \
            --disk "$tmp/$nm.raw,raw,hda,rw" --disk "$tmp/$nm.qcow2,qcow2,hdb,rw" "$@" 2>&1); then
        fail "$label: restricted start with two writable images: $out"
        return
    fi
    ok "$label: restricted start with two writable images"
    pid=$(pid_of "$nm")
    check "$label: runs as the private uid $uid" \
        grep -q "^Uid:[[:space:]]*$uid[[:space:]]" "/proc/$pid/status"
    check "$label: RLIMIT_FSIZE lifted (writable images)" \
        grep -q "^Max file size  *unlimited  *unlimited" "/proc/$pid/limits"
    check "$label: status says so" \
        sh -c "'$DMCTL' --store '$store' --json status '$nm' | grep -q 'file size unlimited: writable images, log capped'"
    blk=$(hmp "$nm" "info block")
    d0=$(printf '%s' "$blk" | sed -n 's/^"\{0,1\}\([^ "]*\) (#block[0-9]*): \/dev\/fdset.*(raw).*/\1/p')
    d1=$(printf '%s' "$blk" | sed -n 's/.*\\n\([^ \\]*\) (#block[0-9]*): \/dev\/fdset[^(]*(qcow2).*/\1/p')
    [ -n "$d0" ] && [ -n "$d1" ] || { fail "$label: drives not found in: $blk"; return; }
    hmp "$nm" "qemu-io $d0 \\\"write -P 0x5a 1100M 64k\\\"" >/dev/null
    hmp "$nm" "qemu-io $d1 \\\"write -P 0xa5 1500M 64k\\\"" >/dev/null
    check "$label: stop" dmctl stop "$nm"
    check "$label: raw image holds the write at 1100 MiB" holds raw "$tmp/$nm.raw" 0x5a 1100M
    check "$label: qcow2 image holds the write at 1500 MiB" \
        holds qcow2 "$tmp/$nm.qcow2" 0xa5 1500M
    check "$label: the qcow2 image is consistent" qemu-img check -q "$tmp/$nm.qcow2"
}

# ---- 1. qemu-system-x86_64 (TCG)
writes "rd$$" "qemu-system-x86_64" --machine pc --memory 64 --qemu "$QEMU"

# ---- 2. no writable image: libxl's limit stays
if dmctl start "rn$$" --restrict --runas "$uid:$uid" --qemu "$QEMU" >/dev/null 2>&1; then
    pid=$(pid_of "rn$$")
    check "no writable image: RLIMIT_FSIZE stays 256 KiB" \
        grep -q "^Max file size  *262144  *262144" "/proc/$pid/limits"
    check "no writable image: stop" dmctl stop "rn$$"
else
    fail "restricted start without images"
fi

# ---- 3. the log is still bounded: a QEMU that first writes 1 MiB to stderr
# (a wrapper run by the keeper with the DM's limits, then the real QEMU).
cat >"$tmp/noisy" <<EOF
#!/bin/sh
head -c 1048576 /dev/zero | tr '\\0' x >&2
exec $(command -v "$QEMU") "\$@"
EOF
chmod 0755 "$tmp/noisy"
truncate -s 64M "$tmp/l.raw"
if dmctl start "rl$$" --restrict --runas "$uid:$uid" --machine pc --memory 64 \
        --disk "$tmp/l.raw,raw,hda,rw" --qemu "$tmp/noisy" >/dev/null 2>&1; then
    ok "a noisy restricted DM starts"
    size=$(stat -c %s "$store/rl$$/qemu.log")
    check "its log is capped (${size} bytes)" test "$size" -le $((256 * 1024 + 200))
    check "its log says the rest was dropped" grep -q "log reached its limit" "$store/rl$$/qemu.log"
    check "the noisy DM answers QMP" sh -c "'$DMCTL' --store '$store' status 'rl$$' | grep -q prelaunch"
    check "the noisy DM stops" dmctl stop "rl$$"
else
    fail "a noisy restricted DM starts"
fi

# ---- 4. the real Xen device model
if [ -x "$XEN_QEMU" ] && [ -x /usr/lib/xen-4.17/bin/xenstored ]; then
    mkdir -p /var/run/xen || exit 99
    if env_out=$(sh "$xenenv" start "$tmp/xen" "$d"); then
        xen=yes
        eval "$env_out"
        writes "rx$$" "Xen DM" --profile xen --domid "$d" --qemu "$XEN_QEMU_WRAPPER"
    else
        fail "xen-env.sh start"
    fi
else
    echo "# the Xen device model is not installed: its half is skipped"
fi

echo "$n passed, $fails failed"
[ "$fails" -eq 0 ]
