#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl migrate between two "hosts": two network namespaces joined by a veth
# pair (10.250.0.1/30 and 10.250.0.2/30, fd00:250::1/64 and fd00:250::2/64,
# fe80::250:1 and fe80::250:2; addresses that exist only inside the
# namespaces this test creates, the IPv6 ones added with nodad). The source
# dmctl and QEMU run in namespace A, the receiver in namespace B; the stream
# crosses the veth pair:
#  1. --listen tcp:10.250.0.2: the receiver binds no port to find a free
#     one (strace of dmctl, if installed; QEMU binds port 0 itself), and the
#     URI's port is the one QEMU accepted the stream on (ss);
#  2. --listen tcp:[fd00:250::2] (an IPv6 literal in brackets), same checks;
#  3. --listen tcp:[fe80::250:2%vethB] with --uri-host [fe80::250:2%vethA]
#     (link-local: each side names its own interface).
# Root only; the namespaces are always deleted.

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
migrate_tmp test-dmctl-migrate-netns
cleanup() {
    NSEXEC=
    kill_store "$src"
    kill_store "$dst"
    netns_pair_del "$nsa" "$nsb" "$veth_a"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! netns_pair "$nsa" "$nsb" "$veth_a" "$veth_b" 10.250.0.1/30 10.250.0.2/30; then
    echo "SKIP: cannot create network namespaces and a veth pair here"
    exit 77
fi
ok "namespaces $nsa and $nsb joined by $veth_a/$veth_b"
if ip -n "$nsa" addr add fd00:250::1/64 dev "$veth_a" nodad &&
   ip -n "$nsb" addr add fd00:250::2/64 dev "$veth_b" nodad &&
   ip -n "$nsa" addr add fe80::250:1/64 dev "$veth_a" nodad &&
   ip -n "$nsb" addr add fe80::250:2/64 dev "$veth_b" nodad; then
    have_v6=1
    ok "IPv6 addresses on $veth_a/$veth_b"
else
    have_v6=
    echo "# no IPv6 here: the IPv6 migrations are skipped"
fi

# uri_port FILE: the port of the last "listening on tcp:...:PORT" in FILE.
uri_port() {
    sed -n 's/.*listening on tcp:.*:\([0-9][0-9]*\)$/\1/p' "$1" | tail -n 1
}

# The switchover hook records nsb's TCP sockets while the stream is open
# (QEMU closes its listener once it has accepted the stream).
printf '#!/bin/sh\nip netns exec %s ss -tnpH >%s 2>&1\n' "$nsb" "$tmp/ss.txt" >"$tmp/hook"
chmod +x "$tmp/hook"

# expect_qemu_port ADDR PORT WHAT: a QEMU socket in nsb has local ADDR:PORT.
expect_qemu_port() {
    if [ -z "$2" ]; then
        fail "$3: no port in the receiver's URI"
    elif grep -F "$1:$2 " "$tmp/ss.txt" 2>/dev/null | grep -q qemu; then
        ok "$3"
    else
        fail "$3: no QEMU socket on $1:$2 in $nsb"
        sed 's/^/    ss: /' "$tmp/ss.txt" 2>/dev/null
    fi
}

# expect_no_prebind WHAT: the receiver dmctl itself (strace without -f:
# not its keeper nor QEMU, and strace ends with dmctl) bound no TCP socket;
# QEMU binds port 0 and reports the port.
expect_no_prebind() {
    if [ -z "$trace" ]; then
        echo "# strace not installed: $1 skipped"
    elif grep -q '^+++ exited' "$tmp/bind.log" 2>/dev/null &&
         ! grep -q 'AF_INET' "$tmp/bind.log"; then
        ok "$1"
    else
        fail "$1"
        sed 's/^/    strace: /' "$tmp/bind.log" 2>/dev/null
    fi
}

trace=
if command -v strace >/dev/null 2>&1; then
    # LeakSanitizer cannot run under ptrace (it aborts at exit): in an ASan
    # build the traced receiver runs without leak checking (the other
    # tests check its leaks).
    trace="env ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -q -e trace=bind -o '$tmp/bind.log'"
fi
receiver="ip netns exec $nsb $trace '$DMCTL' --store '$dst' --timeout 20 migrate-receive"

# ---- 1: IPv4 ----
t0=$(now_ms)
NSEXEC="ip netns exec $nsa"
start_running "$src" vm || fail "starting the source in $nsa"
dm "$src" migrate vm --pause-before-switchover --switchover-hook "$tmp/hook" \
    --to "$receiver --listen tcp:10.250.0.2" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "migrate from $nsa to $nsb over tcp succeeds" "$tmp/err"
echo "# migration across namespaces took $(($(now_ms) - t0)) ms (with the source's start)"
expect_in "$tmp/err" "listening on tcp:10.250.0.2:" "the receiver listened on 10.250.0.2 in $nsb"
expect_qemu_port 10.250.0.2 "$(uri_port "$tmp/err")" \
    "the URI's port is the one the destination QEMU accepted the stream on"
expect_no_prebind "the receiver bound no TCP port of its own (QEMU binds port 0)"
NSEXEC="ip netns exec $nsb"
expect_status "$dst" vm running "the destination runs in $nsb"
expect_clean "$src" "the source store is empty" 3000
stop_clean "$dst" vm "the destination stops cleanly"

if [ -n "$have_v6" ]; then
    # ---- 2: IPv6 literal in brackets ----
    NSEXEC="ip netns exec $nsa"
    rm -f "$tmp/ss.txt" "$tmp/bind.log"
    start_running "$src" vm6 || fail "starting vm6 in $nsa"
    dm "$src" migrate vm6 --pause-before-switchover --switchover-hook "$tmp/hook" \
        --to "$receiver --listen 'tcp:[fd00:250::2]'" >"$tmp/out" 2>"$tmp/err"
    expect_rc $? 0 "migrate over tcp:[fd00:250::2] succeeds" "$tmp/err"
    expect_in "$tmp/err" "listening on tcp:\[fd00:250::2\]:[0-9]" "the URI is tcp:[fd00:250::2]:PORT"
    expect_qemu_port "[fd00:250::2]" "$(uri_port "$tmp/err")" \
        "IPv6: the URI's port is the one the destination QEMU accepted the stream on"
    expect_no_prebind "IPv6: the receiver bound no TCP port of its own"
    NSEXEC="ip netns exec $nsb"
    expect_status "$dst" vm6 running "the destination runs (IPv6)"
    expect_clean "$src" "the source store is empty (IPv6)" 3000
    dm "$dst" stop vm6 >/dev/null
    expect_clean "$dst" "the destination stops cleanly (IPv6)" 3000

    # ---- 3: link-local with zones; --uri-host in brackets ----
    NSEXEC="ip netns exec $nsa"
    start_running "$src" vmll || fail "starting vmll in $nsa"
    dm "$src" migrate vmll --uri-host "[fe80::250:2%$veth_a]" \
        --to "$receiver --listen 'tcp:[fe80::250:2%$veth_b]'" >"$tmp/out" 2>"$tmp/err"
    expect_rc $? 0 "migrate over link-local tcp:[fe80::250:2%zone] with --uri-host succeeds" \
        "$tmp/err"
    expect_in "$tmp/err" "listening on tcp:\[fe80::250:2%$veth_b\]:[0-9]" \
        "the receiver's URI keeps its zone inside the brackets"
    NSEXEC="ip netns exec $nsb"
    expect_status "$dst" vmll running "the destination runs (link-local)"
    expect_clean "$src" "the source store is empty (link-local)" 3000
    dm "$dst" stop vmll >/dev/null
    expect_clean "$dst" "the destination stops cleanly (link-local)" 3000
fi
finish
