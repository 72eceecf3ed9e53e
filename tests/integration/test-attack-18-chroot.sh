#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 18, item 4 ("chroot parent swapped"): with --restrict --chroot DIR,
# whoever owns DIR's parent replaces DIR (or a parent) by a symlink to /
# once the keeper shows in /proc, i.e. after libdm's check. QEMU's root
# must be the directory that was checked (its inode), never /: the chroot is
# opened once, one component at a time with none a symlink, checked on the
# fd, and QEMU chroots to /proc/self/fd/N (restrict.c pin_chroot). Real
# qemu-system-x86_64 (-machine none). Failed on f1acf94 (the tree before):
# QEMU's root was /.
# Also: a symlinked parent at start (as /var/run) is resolved once, then.
# Runs as root (--restrict); a private uid for QEMU.

if [ -z "${DMCTL:-}" ] || [ -z "${top_srcdir:-}" ]; then
    echo "ERROR: run from make check (\$DMCTL, \$top_srcdir)"
    exit 99
fi
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (--restrict)"
    exit 77
fi
command -v "${QEMU_BIN:-qemu-system-x86_64}" >/dev/null || { echo "SKIP: no QEMU"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-attack-18-chroot.XXXXXX") || exit 99
chmod 0755 "$tmp"
store=$tmp/store
mkdir -m 0700 "$store" || exit 99
uid=$((61000 + $$ % 2000))
sfx=$$
M=c18m$sfx
cleanup() {
    "$DMCTL" --store "$store" --timeout 5 stop "$M" --force >/dev/null 2>&1
    "$DMCTL" --store "$store" --timeout 5 stop "${M}l" --force >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$top_srcdir/tests/harness/tap.sh"
dmctl() { timeout -k 5 90 "$DMCTL" --store "$store" --timeout 30 "$@"; }

# swap_when_keeper NAME WHAT TARGET: once NAME's keeper runs, WHAT becomes
# a symlink to TARGET (the old WHAT kept as WHAT.old); "swapped" marks it.
swap_when_keeper() {
    i=0
    until pgrep -f -- "libdm-keeper .*--name=$1 " >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -le 3000 ] || exit 1
        sleep 0.01
    done
    mv "$2" "$2.old" && ln -s "$3" "$2" && echo swapped >"$tmp/swapped"
}

# run_swap LABEL DIR WHAT TARGET: start with --chroot DIR while WHAT is
# swapped; QEMU's root must be DIR's inode as checked.
run_swap() {
    label=$1 dir=$2 what=$3 target=$4
    rm -f "$tmp/swapped"
    ino=$(stat -c %i "$dir")
    swap_when_keeper "$M" "$what" "$target" &
    watcher=$!
    if out=$(dmctl --json start "$M" --machine none --restrict --runas "$uid:$uid" \
            --chroot "$dir" 2>&1); then
        wait "$watcher"
        pm=$(field "$out" pid)
        if [ ! -f "$tmp/swapped" ]; then
            fail "$label: the swap did not happen"
        else
            got=$(stat -L -c %i "/proc/$pm/root/." 2>/dev/null)
            if [ "$got" = "$ino" ]; then
                ok "$label: QEMU's root is the checked directory ($(readlink "/proc/$pm/root"))"
            else
                fail "$label: QEMU's root is $(readlink "/proc/$pm/root") (inode $got, checked $ino)"
            fi
        fi
        dmctl stop "$M" >/dev/null 2>&1
    else
        wait "$watcher"
        fail "$label: start: $out"
    fi
}

# ---- DIR itself swapped ----
mkdir -p "$tmp/a/root" && chmod 0755 "$tmp/a" "$tmp/a/root"
run_swap "DIR swapped for a link to /" "$tmp/a/root" "$tmp/a/root" /

# ---- DIR's parent swapped (DIR=P/root, P becomes a link to a tree whose
# root is a link to /) ----
mkdir -p "$tmp/b/p/root" "$tmp/evil" && chmod 0755 "$tmp/b" "$tmp/b/p" "$tmp/b/p/root"
ln -s / "$tmp/evil/root"
run_swap "DIR's parent swapped for a link" "$tmp/b/p/root" "$tmp/b/p" "$tmp/evil"

# ---- a symlinked parent at start (as /var/run is) is resolved then, and
# QEMU's root is the real directory ----
mkdir -p "$tmp/c/real/root" && chmod 0755 "$tmp/c" "$tmp/c/real" "$tmp/c/real/root"
ln -s real "$tmp/c/link"
if out=$(dmctl --json start "${M}l" --machine none --restrict --runas "$uid:$uid" \
        --chroot "$tmp/c/link/root" 2>&1); then
    pm=$(field "$out" pid)
    if [ "$(stat -L -c %i "/proc/$pm/root/.")" = "$(stat -c %i "$tmp/c/real/root")" ]; then
        ok "a chroot under a symlinked parent: QEMU's root is the real directory"
    else
        fail "a chroot under a symlinked parent: QEMU's root is $(readlink "/proc/$pm/root")"
    fi
    dmctl stop "${M}l" >/dev/null 2>&1
else
    fail "a chroot under a symlinked parent: $out"
fi

echo "$n passed, $fails failed"
[ "$fails" -eq 0 ]
