#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl migrate between two "hosts": two network namespaces joined by a veth
# pair (10.250.0.1/30 and 10.250.0.2/30, addresses that exist only inside
# the namespaces this test creates). The source dmctl and QEMU run in
# namespace A, the receiver in namespace B listening on tcp:10.250.0.2; the
# stream crosses the veth pair. Root only; the namespaces are always deleted.

. "$(dirname "$0")/dmctl-migrate-lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (creates network namespaces and a veth pair)"
    exit 77
fi
if ! command -v ip >/dev/null 2>&1; then
    echo "SKIP: ip(8) not found"
    exit 77
fi

nsa="dmctl-mig-a-$$"
nsb="dmctl-mig-b-$$"
veth_a="dmA$$"
veth_b="dmB$$"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-dmctl-migrate-netns.XXXXXX") || exit 99
src="$tmp/src"
dst="$tmp/dst"
mkdir -m 0700 "$src" "$dst" || exit 99
cleanup() {
    NSEXEC=
    kill_store "$src"
    kill_store "$dst"
    ip netns del "$nsa" 2>/dev/null
    ip netns del "$nsb" 2>/dev/null
    ip link del "$veth_a" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { ip netns add "$nsa" && ip netns add "$nsb" &&
       ip link add "$veth_a" type veth peer name "$veth_b" &&
       ip link set "$veth_a" netns "$nsa" && ip link set "$veth_b" netns "$nsb" &&
       ip -n "$nsa" addr add 10.250.0.1/30 dev "$veth_a" &&
       ip -n "$nsb" addr add 10.250.0.2/30 dev "$veth_b" &&
       ip -n "$nsa" link set lo up && ip -n "$nsb" link set lo up &&
       ip -n "$nsa" link set "$veth_a" up && ip -n "$nsb" link set "$veth_b" up; }; then
    echo "SKIP: cannot create network namespaces and a veth pair here"
    exit 77
fi
ok "namespaces $nsa and $nsb joined by $veth_a/$veth_b"

t0=$(now_ms)
NSEXEC="ip netns exec $nsa"
start_running "$src" vm || fail "starting the source in $nsa"
dm "$src" migrate vm --pause-before-switchover \
    --to "ip netns exec $nsb '$DMCTL' --store '$dst' --timeout 20 migrate-receive --listen tcp:10.250.0.2" \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "migrate from $nsa to $nsb over tcp succeeds" "$tmp/err"
echo "# migration across namespaces took $(($(now_ms) - t0)) ms (with the source's start)"
expect_in "$tmp/err" "listening on tcp:10.250.0.2:" "the receiver listened on 10.250.0.2 in $nsb"
NSEXEC="ip netns exec $nsb"
expect_status "$dst" vm running "the destination runs in $nsb"
expect_clean "$src" "the source store is empty" 3000
dm "$dst" stop vm >/dev/null
expect_clean "$dst" "the destination stops cleanly" 3000
finish
