#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A Xen host's environment for the REAL Xen device model (qemu-system-xen)
# and the real xl, on a machine without Xen, for tests only. Everything a
# hypervisor would provide is FAKED (no Xen runs here):
#  - the real xenstored runs under tests/harness/xsshim.c (through
#    tests/harness/xenstored-run.sh), privately in DIR/xs;
#  - QEMU and xl run under tests/harness/xenhyp.c (LD_PRELOAD), a fake of
#    the hypervisor calls they make outside libxenstore.
# What a toolstack (libxl) writes into xenstore before it starts a device
# model is written here for each domain: /local/domain/<d>/{name,domid,vm,
# device,control,control/shutdown}, /vm/<uuid>/{uuid,name},
# /local/domain/0/device-model/<d> (an empty directory: QEMU itself writes
# its "state" there) and /libxl/<d>/dm-version; plus dom0's name and domid
# and cpupool 0's name (as xen-init-dom0 writes them). For the real
# `xl create`, tests/harness/xenconsoled-standin runs beside xenstored (a
# stand-in for xenconsoled: it writes each domain's console/tty).
#
#   xen-env.sh start DIR [DOMID...]   start xenstored, write dom0's and each
#                                     DOMID's nodes, print the environment
#                                     (shell assignments, for eval).
#                                     Exit 77 if the Xen device model or
#                                     xenstored is not installed.
#   xen-env.sh domain DIR DOMID NAME  add a domain (nodes and XENHYP_DOMIDS),
#                                     print the environment again.
#   xen-env.sh stop DIR               stop xenstored (DIR is left in place).
#
# The environment printed:
#   XENSTORED_PATH     the private xenstored's socket, for xenstore-* and xl;
#   XENHYP_PRELOAD     the fake's shared object, for LD_PRELOAD of xl;
#   XENHYP_DOMIDS      the domains the fake reports to xl (dom0 implied);
#   XEN_QEMU_WRAPPER   DIR/qemu: give it to libdm as the QEMU binary;
#   XENHYP_STATE       DIR/hyp: the domains the fakes share (xendoms.h);
#   XENHYP_DOMID_BASE  the first domid the fake xc_domain_create gives
#                      (environment, default 1: make it distinct per test,
#                      /var/run/xen is shared);
#   XLHYP_PRELOAD      xenhyp.so and xlhyp.so, for LD_PRELOAD of the real
#                      `xl create` / `xl destroy` (tests/harness/xlhyp.c).
# DIR/qemu is a link to tests/harness/xen-qemu-wrapper.sh, which reads
# DIR/qemu.env and execs the real QEMU with LD_PRELOAD and XENSTORED_PATH:
# libdm hands QEMU only PATH and LC_ALL, so the wrapper is the only way in.
# It exists only because the hypervisor is faked; on a Xen host the real
# binary is passed directly.
#
# Environment: XEN_QEMU (default /usr/libexec/xen-qemu-system-i386),
# XENHYP (default $top_builddir/tests/harness/.libs/xenhyp.so), XENSTORED
# and XSSHIM (see xenstored-run.sh), top_srcdir, top_builddir.
set -eu

XEN_QEMU=${XEN_QEMU:-/usr/libexec/xen-qemu-system-i386}
XENSTORED=${XENSTORED:-/usr/lib/xen-4.17/bin/xenstored}
XENHYP=${XENHYP:-${top_builddir:-.}/tests/harness/.libs/xenhyp.so}
XLHYP=${XLHYP:-$(dirname "$XENHYP")/xlhyp.so}
XENHYP_DOMID_BASE=${XENHYP_DOMID_BASE:-1}
STANDIN=${XENCONSOLED_STANDIN:-${top_builddir:-.}/tests/harness/xenconsoled-standin}
here=$(cd "$(dirname "$0")" && pwd)

usage() {
    echo "usage: $0 start DIR [DOMID...] | domain DIR DOMID NAME | stop DIR" >&2
    exit 2
}

die() {
    echo "$0: $*" >&2
    exit 1
}

abspath() {
    case $1 in
    /*) echo "$1" ;;
    *) echo "$(pwd)/$1" ;;
    esac
}

# quoted VALUE: VALUE in single quotes, for a file that sh sources.
quoted() {
    case $1 in
    *"'"*) die "a quote in '$1'" ;;
    esac
    printf "'%s'" "$1"
}

valid_domid() {
    case $1 in
    '' | *[!0-9]*) return 1 ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 32751 ]
}

xs() {
    XENSTORED_PATH=$dir/xs/socket "$@"
}

# write_domain DOMID NAME: the nodes libxl writes before the DM starts.
write_domain() {
    d=$1 name=$2
    dp=/local/domain/$d
    uuid=$(printf '00000000-0000-0000-0000-%012x' "$d")
    xs xenstore-rm "$dp" 2>/dev/null || true
    xs xenstore-write "$dp/name" "$name" "$dp/domid" "$d" "$dp/vm" "/vm/$uuid" \
        "$dp/device" "" "$dp/control" "" "$dp/control/shutdown" "" \
        "/vm/$uuid/uuid" "$uuid" "/vm/$uuid/name" "$name" \
        "/local/domain/0/device-model/$d" "" "/libxl/$d/dm-version" "qemu_xen"
    # Owner dom0, readable by the guest; the guest may write control/shutdown.
    # (libxl makes the guest its owner; xenstored refuses an owner it was
    # never introduced to, and no domain can be introduced without Xen.)
    xs xenstore-chmod "$dp" n0 "r$d"
    xs xenstore-chmod "$dp/device" n0 "r$d"
    xs xenstore-chmod "$dp/control" n0 "r$d"
    xs xenstore-chmod "$dp/control/shutdown" n0 "b$d"
    grep -qx "$d" "$dir/domids" 2>/dev/null || echo "$d" >>"$dir/domids"
}

# The wrapper's environment (see xen-qemu-wrapper.sh).
write_qemu_env() {
    {
        echo "XEN_QEMU=$(quoted "$XEN_QEMU")"
        echo "LD_PRELOAD=$(quoted "$XENHYP")"
        echo "XENSTORED_PATH=$(quoted "$dir/xs/socket")"
        echo "XLHYP=$(quoted "$XLHYP")"
    } >"$dir/qemu.env.tmp"
    mv "$dir/qemu.env.tmp" "$dir/qemu.env"
}

print_env() {
    domids=$(paste -s -d, "$dir/domids")
    echo "XENSTORED_PATH=$(quoted "$dir/xs/socket"); export XENSTORED_PATH"
    echo "XENHYP_PRELOAD=$(quoted "$XENHYP"); export XENHYP_PRELOAD"
    echo "XENHYP_DOMIDS=$(quoted "$domids"); export XENHYP_DOMIDS"
    echo "XEN_QEMU_WRAPPER=$(quoted "$dir/qemu"); export XEN_QEMU_WRAPPER"
    echo "XENHYP_STATE=$(quoted "$dir/hyp"); export XENHYP_STATE"
    echo "XENHYP_DOMID_BASE=$(quoted "$XENHYP_DOMID_BASE"); export XENHYP_DOMID_BASE"
    echo "XLHYP_PRELOAD=$(quoted "$XENHYP $XLHYP"); export XLHYP_PRELOAD"
}

[ $# -ge 2 ] || usage
mode=$1
dir=$(abspath "$2")
shift 2

case $mode in
start)
    if [ ! -x "$XEN_QEMU" ]; then
        echo "SKIP: $XEN_QEMU not found (apt-get install --no-install-recommends qemu-system-xen)" >&2
        exit 77
    fi
    if [ ! -x "$XENSTORED" ]; then
        echo "SKIP: $XENSTORED not found (apt-get install --no-install-recommends xen-utils-4.17)" >&2
        exit 77
    fi
    XENHYP=$(abspath "$XENHYP")
    [ -r "$XENHYP" ] || die "hypervisor fake $XENHYP not found (set XENHYP or run make check)"
    for d in "$@"; do
        valid_domid "$d" || die "invalid domid '$d'"
    done
    mkdir -p "$dir" "$dir/hyp"
    chmod 0700 "$dir"
    XLHYP=$(abspath "$XLHYP")
    # xenstored sees the domains the fake xc_domain_create makes.
    XENHYP_STATE=$dir/hyp XENSTORED=$XENSTORED sh "$here/xenstored-run.sh" start "$dir/xs" >/dev/null
    # What xen-init-dom0 writes on a Xen host (libxl names cpupool 0 from it).
    xs xenstore-write /local/domain/0/name Domain-0 /local/domain/0/domid 0 \
        /local/pool/0/name Pool-0
    : >"$dir/domids"
    for d in "$@"; do
        write_domain "$d" "xenhyp-$d"
    done
    if [ -x "$STANDIN" ]; then
        rm -f "$dir/standin.pid"
        XENSTORED_PATH=$dir/xs/socket "$STANDIN" "$dir/standin.pid" </dev/null >"$dir/standin.log" 2>&1 &
        i=0
        until [ -s "$dir/standin.pid" ]; do
            i=$((i + 1))
            [ $i -le 500 ] || die "xenconsoled-standin did not start: $(cat "$dir/standin.log")"
            sleep 0.01
        done
    fi
    ln -sf "$here/xen-qemu-wrapper.sh" "$dir/qemu"
    write_qemu_env
    print_env
    ;;
domain)
    [ $# -eq 2 ] || usage
    valid_domid "$1" || die "invalid domid '$1'"
    [ -S "$dir/xs/socket" ] || die "no xenstored in $dir (xen-env.sh start first)"
    XENHYP=$(. "$dir/qemu.env" && echo "$LD_PRELOAD")
    XLHYP=$(. "$dir/qemu.env" && echo "$XLHYP")
    write_domain "$1" "$2"
    print_env
    ;;
stop)
    [ $# -eq 0 ] || usage
    if [ -s "$dir/standin.pid" ]; then
        kill "$(cat "$dir/standin.pid")" 2>/dev/null
        rm -f "$dir/standin.pid"
    fi
    sh "$here/xenstored-run.sh" stop "$dir/xs"
    ;;
*)
    usage
    ;;
esac
