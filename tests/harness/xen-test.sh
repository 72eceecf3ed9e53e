# SPDX-License-Identifier: LGPL-2.1-or-later
# The preamble of the xen shell tests, sourced (". xen-test.sh") after the
# test checked $top_srcdir. The Xen host itself is xen-env.sh (FAKED
# hypervisor, real xenstored); this only checks and starts it.
#
# Domids: the domid claim is host-wide (/var/run/xen), and the suite runs
# tests in parallel, so each test draws its domids from a block of its own
# (BASE + $$ % N): 2000 xen-dm (and d+100), 4000 xenstore-auto, 6000
# restricted-disks, 8000 attack-18-claims (5 each), 10000 xlcfg-parity,
# 12000 xen-devices, 14000 xen-vncpass, 16000 crashpoints-domain, 18000
# xl-restore (3 each), 20000 migrate-xen (2 each), 24000+ xl-create (the
# fake hypervisor's XENHYP_DOMID_BASE). Overlapping ranges made two tests
# claim one domid now and then (xlcfg-parity refused by attack-18-claims).
#
#   xen_test_require WHY [BINARY...]
#       skip (77) without the Xen DM, xenstored or BINARY, or when not root
#       (WHY: what root is needed for; "" checks no uid: the test says
#       itself what it cannot do without root); error (99) outside make check
#       ($DMCTL, $top_srcdir, $top_builddir); exports top_builddir XEN_QEMU
#       XENSTORED; makes /var/run/xen.
#   xen_test_tmp NAME
#       tmp: a fresh 0755 directory (a restricted DM's uid walks it), store:
#       $tmp/store (0700).
#   xen_test_env [DOMID...]
#       starts xen-env.sh in $tmp/xen for DOMID... and evals its
#       environment; exits with its status (77: not installed) on failure.
#       The cleanup stops it: sh "$xenenv" stop "$tmp/xen".
#   wait_for SECONDS COMMAND...
#       polls COMMAND every 10 ms until it succeeds; status 1 past SECONDS.
#   pid_gone PID
#       PID has no /proc entry (gone, reaped).

XEN_QEMU=${XEN_QEMU:-/usr/libexec/xen-qemu-system-i386}
XENSTORED=${XENSTORED:-/usr/lib/xen-4.17/bin/xenstored}
xenenv="$top_srcdir/tests/harness/xen-env.sh"

xen_test_require() {
    why=$1
    shift
    for f in "$XEN_QEMU" "$XENSTORED" "$@"; do
        if [ ! -x "$f" ]; then
            echo "SKIP: $f not installed (quickstart installs qemu-system-xen, xen-utils-4.17)"
            exit 77
        fi
    done
    if [ -n "$why" ] && [ "$(id -u)" != 0 ]; then
        echo "SKIP: needs root ($why)"
        exit 77
    fi
    if [ -z "${DMCTL:-}" ] || [ -z "${top_srcdir:-}" ] || [ -z "${top_builddir:-}" ]; then
        echo "ERROR: run from make check (\$DMCTL, \$top_srcdir, \$top_builddir)"
        exit 99
    fi
    export top_builddir XEN_QEMU XENSTORED
    mkdir -p /var/run/xen || exit 99
}

xen_test_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 99
    chmod 0755 "$tmp"
    store=$tmp/store
    mkdir -m 0700 "$store" || exit 99
}

xen_test_env() {
    env_out=$(sh "$xenenv" start "$tmp/xen" "$@")
    rc=$?
    [ $rc -eq 0 ] || exit $rc
    eval "$env_out"
}

wait_for() {
    i=0 max=$(($1 * 100))
    shift
    until "$@"; do
        i=$((i + 1))
        [ $i -le $max ] || return 1
        sleep 0.01
    done
}

pid_gone() { [ ! -e "/proc/$1" ]; }
