#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 18, the crash-point campaign on the surfaces of a domain: the xen
# profile's per-domain paths (libxl's qmp-libxl-D and qmp-libxenstat-D,
# the restricted DM's chroot qemu-root-D, libdm's host-global claim
# libdm-domid-D), two DMs (two names, two stores) on one domid, concurrent
# stop and start on one name and on one domid, and taps on a bridge (a
# plain DM with a NIC, in a private network namespace). Each round runs one
# or two dmctl commands at once and SIGKILLs one of dmctl, a keeper or a
# QEMU at a random moment (0-400 ms); then restricted xen starts run with
# one system call failing (faultinj). After every round, within 3 s:
#   - never two QEMUs for the domain (-xen-domid D);
#   - every QEMU running is listed alive, with its pid (nothing invisible);
#   - qmp-libxl-D, qemu-root-D and libdm-domid-D exist only while a DM of
#     the domain is listed (nothing of a domain without its owner);
# and on about half of the rounds (and at the end) `dmctl stop` (then
# --force) of every name ends everything: no QEMU, keeper, record, run
# directory, tap, chroot, socket or claim left.
#
#   CRASHPOINT_DOMAIN_ROUNDS  rounds (default 8, with the fault phase about
#                             a minute; e.g. 300
#                             for a soak)
#   FAULTINJ_DOMAIN_MAX_N     the injected-fault phase: N per kind (default 6)
#   CRASHPOINT_SEED           the random seed (printed; set it to replay)
# The real Xen DM under the FAKE hypervisor (tests/harness/xenhyp.c,
# xen-env.sh). Runs as root.

[ -n "${top_srcdir:-}" ] || { echo "ERROR: run from make check (\$top_srcdir)"; exit 99; }
. "$top_srcdir/tests/harness/xen-test.sh"
xen_test_require "/var/run/xen, network namespaces"

rounds_wanted=${CRASHPOINT_DOMAIN_ROUNDS:-8}
seed=${CRASHPOINT_SEED:-$(($(date +%s%N) / 1000 % 1000000007))}
echo "# seed $seed (replay: CRASHPOINT_SEED=$seed CRASHPOINT_DOMAIN_ROUNDS=$rounds_wanted $0)"
rnd=$seed

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-crashpoints-domain.XXXXXX") || exit 99
chmod 0755 "$tmp"
sa=$tmp/sa sb=$tmp/sb
mkdir -m 0700 "$sa" "$sb" || exit 99
D=$((16000 + $$ % 1000))
u=$((430000 + $$ % 10000))
sfx=$$
ns=cpd$sfx
br=cpdbr$((sfx % 10000))
A=cda$sfx B=cdb$sfx N=cdn$sfx

. "$top_srcdir/tests/harness/tap.sh"

inns() { ip netns exec "$ns" "$@"; }
dmc() { # STORE ARGS...
    _s=$1
    shift
    timeout -k 5 60 "$DMCTL" --store "$_s" --timeout 10 "$@"
}
store_of() { [ "$1" = "$B" ] && echo "$sb" || echo "$sa"; }
keeper_pids() { pgrep -f -- "libdm-keeper --name=$1 --store=$(store_of "$1") " 2>/dev/null; }
# QEMUs (not the keeper, whose command line holds QEMU's after "--").
dom_qemus() { pgrep -f -- "^[^ ]*qemu[^ ]* .*-xen-domid $D( |\$)" 2>/dev/null; }
net_qemus() { pgrep -f -- "^[^ ]*qemu-system[^ ]* .*-name $N( |\$)" 2>/dev/null; }
list_line() { dmc "$(store_of "$1")" --json list --no-query 2>/dev/null | tr '}' '\n' | grep "\"name\":\"$1\""; }
jf() { printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

cleanup() {
    for nm in $A $B; do
        "$DMCTL" --store "$(store_of "$nm")" --timeout 5 stop --force "$nm" >/dev/null 2>&1
    done
    inns "$DMCTL" --store "$sa" --timeout 5 stop --force "$N" >/dev/null 2>&1
    for p in $(keeper_pids "$A") $(keeper_pids "$B") $(keeper_pids "$N") $(dom_qemus) $(net_qemus); do
        kill -9 "$p" 2>/dev/null
    done
    sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    ip netns del "$ns" 2>/dev/null
    rmdir "/var/run/xen/qemu-root-$D" 2>/dev/null
    rm -f "/var/run/xen/qmp-libxl-$D" "/var/run/xen/qmp-libxenstat-$D" "/var/run/xen/libdm-domid-$D"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

xen_test_env "$D"
if ! { ip netns add "$ns" && inns ip link set lo up && inns ip link add "$br" type bridge &&
       inns ip link set "$br" up; }; then
    echo "SKIP: cannot create a network namespace with a bridge here"
    exit 77
fi

rand() {
    rnd=$(((rnd * 1103515245 + 12345) % 2147483648))
    r=$(((rnd / 65536) % $1))
}

# The commands a round runs, in the background; their pids in $cpids.
# dmctl itself (not under timeout(1)) so that the victim "dmctl" is it; its
# own --timeout bounds it.
xen_start() { # NAME
    "$DMCTL" --store "$(store_of "$1")" --timeout 10 start "$1" --profile xen --domid "$D" --qemu "$XEN_QEMU_WRAPPER" \
        --restrict --runas "$u:$u" >/dev/null 2>>"$tmp/cmd.err" &
    cpids="$cpids $!"
}
xen_stop() { # NAME [--force]
    "$DMCTL" --store "$(store_of "$1")" --timeout 10 stop "$@" >/dev/null 2>>"$tmp/cmd.err" &
    cpids="$cpids $!"
}
net_start() {
    inns "$DMCTL" --store "$sa" --timeout 10 start "$N" --machine pc --memory 64 \
        --nic "bridge=$br" >/dev/null 2>>"$tmp/cmd.err" &
    cpids="$cpids $!"
}
net_stop() {
    inns "$DMCTL" --store "$sa" --timeout 10 stop "$N" >/dev/null 2>>"$tmp/cmd.err" &
    cpids="$cpids $!"
}

violations=0
violation() {
    violations=$((violations + 1))
    echo "VIOLATION (seed $seed, round $round, $what): $*"
}

# The problems now, one per line.
invariants() {
    _dq=$(dom_qemus)
    _ndq=$(echo "$_dq" | grep -c .)
    [ "$_ndq" -gt 1 ] && echo "$_ndq QEMUs for domain $D: $(echo $_dq)"
    _owners=
    for _nm in $A $B; do
        _l=$(list_line "$_nm")
        [ -n "$_l" ] && _owners="$_owners $_nm"
        _p=$(jf "$_l" pid)
        if [ -n "$_p" ] && [ "$(jf "$_l" alive)" = true ] && [ "$_p" -gt 0 ] 2>/dev/null &&
            ! echo "$_dq" | grep -qx "$_p" && [ -e "/proc/$_p" ]; then
            echo "$_nm listed alive with pid $_p, which is not a QEMU of domain $D"
        fi
    done
    for _q in $_dq; do
        _found=
        for _nm in $A $B; do
            _l=$(list_line "$_nm")
            [ "$(jf "$_l" pid)" = "$_q" ] && [ "$(jf "$_l" alive)" = true ] && _found=1
        done
        [ -z "$_found" ] && echo "QEMU $_q of domain $D runs but no DM lists it alive"
    done
    if [ -z "$_owners" ]; then
        for _f in "qmp-libxl-$D" "qemu-root-$D"; do
            [ -e "/var/run/xen/$_f" ] && echo "/var/run/xen/$_f exists, no DM of domain $D is listed"
        done
    fi
    _nq=$(net_qemus)
    if [ -n "$_nq" ]; then
        _l=$(list_line "$N")
        { [ "$(jf "$_l" alive)" = true ] && echo "$_nq" | grep -qx "$(jf "$_l" pid)"; } ||
            echo "QEMU $(echo $_nq) of $N runs but list says: ${_l:-nothing}"
    fi
}

check_invariants() {
    _end=$(($(now_ms) + 3000))
    while :; do
        _bad=$(invariants)
        [ -z "$_bad" ] && return 0
        [ "$(now_ms)" -ge "$_end" ] && break
        sleep 0.1
    done
    echo "$_bad" | while read -r _line; do echo "VIOLATION (seed $seed, round $round, $what): $_line"; done
    violations=$((violations + $(echo "$_bad" | grep -c .)))
}

# Stops everything, then nothing of anyone may be left.
stop_all() {
    for _nm in $A $B; do
        dmc "$(store_of "$_nm")" stop "$_nm" >/dev/null 2>&1 ||
            dmc "$(store_of "$_nm")" stop --force "$_nm" >/dev/null 2>&1
    done
    inns "$DMCTL" --store "$sa" --timeout 10 stop "$N" >/dev/null 2>&1 ||
        inns "$DMCTL" --store "$sa" --timeout 10 stop --force "$N" >/dev/null 2>&1
    _end=$(($(now_ms) + 3000))
    while :; do
        _left=
        [ -n "$(dom_qemus)$(net_qemus)" ] && _left="$_left QEMU $(echo $(dom_qemus) $(net_qemus))"
        for _nm in $A $B $N; do
            [ -n "$(keeper_pids "$_nm")" ] && _left="$_left keeper-of-$_nm"
            [ -n "$(list_line "$_nm")" ] && _left="$_left listed-$_nm"
            [ -e "$(store_of "$_nm")/$_nm" ] && _left="$_left dir-$_nm"
        done
        for _f in "qmp-libxl-$D" "qmp-libxenstat-$D" "qemu-root-$D" "libdm-domid-$D"; do
            [ -e "/var/run/xen/$_f" ] || [ -L "/var/run/xen/$_f" ] && _left="$_left $_f"
        done
        for _s in "$sa" "$sb"; do
            [ -e "$_s/.domid-$D.lock" ] && _left="$_left $_s/.domid-$D.lock"
        done
        _taps=$(inns ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^dm$N")
        [ -n "$_taps" ] && _left="$_left taps: $(echo $_taps)"
        [ -z "$_left" ] && return 0
        [ "$(now_ms)" -ge "$_end" ] && break
        sleep 0.1
    done
    violation "after stopping everything, left:$_left"
    for _p in $(keeper_pids "$A") $(keeper_pids "$B") $(keeper_pids "$N") $(dom_qemus) $(net_qemus); do
        kill -9 "$_p" 2>/dev/null
    done
    for _nm in $A $B; do dmc "$(store_of "$_nm")" stop --force "$_nm" >/dev/null 2>&1; done
    inns "$DMCTL" --store "$sa" --timeout 10 stop --force "$N" >/dev/null 2>&1
}

kills=0
round=0
dom_up=0 net_up=0
t0=$(now_ms)
while [ "$round" -lt "$rounds_wanted" ]; do
    round=$((round + 1))
    cpids=
    : >"$tmp/cmd.err"
    rand 7
    case $r in
    0) what="start $A and $B on domain $D at once"; xen_start "$A"; xen_start "$B" ;;
    1) what="stop $A while starting $A"; xen_stop "$A"; xen_start "$A" ;;
    2) what="stop $A while starting $B (one domain)"; xen_stop "$A"; xen_start "$B" ;;
    3) what="stop --force $B while starting $A"; xen_stop "$B" --force; xen_start "$A" ;;
    4) what="start $A"; xen_start "$A" ;;
    5) what="start $N (a tap)"; net_start ;;
    6) what="stop $N while starting $N"; net_stop; net_start ;;
    esac
    rand 4
    victim=$(echo "dmctl keeper qemu none" | cut -d' ' -f$((r + 1)))
    rand 401
    sleep "$(printf '0.%03d' "$r")"
    what="$what, kill $victim at $r ms"
    vp=
    case $victim in
    dmctl) vp=$(echo $cpids | cut -d' ' -f1) ;;
    keeper) vp=$( { keeper_pids "$A"; keeper_pids "$B"; keeper_pids "$N"; } | head -n1) ;;
    qemu) vp=$( { dom_qemus; net_qemus; } | head -n1) ;;
    esac
    [ -n "$vp" ] && kill -9 "$vp" 2>/dev/null && kills=$((kills + 1))
    for p in $cpids; do wait "$p" 2>/dev/null; done
    check_invariants
    [ -n "$(dom_qemus)" ] && dom_up=$((dom_up + 1))
    [ -n "$(net_qemus)" ] && net_up=$((net_up + 1))
    rand 2
    [ "$r" = 0 ] && { what="$what; stop all"; stop_all; }
done
# A seed may leave no DM up after any round (each round killed something
# before its DM was ready, or stopped it: seed 510671024 did, in CI): one
# more start, nothing killed, shows that the campaign's starts work at all.
if [ $((dom_up + net_up)) -eq 0 ]; then
    round=$((round + 1))
    cpids=
    what="start $A, nothing killed (no earlier round left a DM up)"
    xen_start "$A"
    for p in $cpids; do wait "$p" 2>/dev/null; done
    check_invariants
    [ -n "$(dom_qemus)" ] && dom_up=$((dom_up + 1))
fi
what="final stop"
stop_all

# Then the domain's paths under injected failures (tests/harness/faultinj.c,
# as test-dmctl-faultinj.sh): the restricted xen start of A with the Nth
# mkdir of its chroot, the Nth socket, the Nth open in /var/run/xen
# failing, N = 1.. until the fault no longer fires (at most
# FAULTINJ_DOMAIN_MAX_N): exit 1 with nothing of the domain left, or exit 0
# with a DM that stop ends, leaving nothing.
so="$top_builddir/tests/harness/.libs/faultinj.so"
asan=$(ldd "$DMCTL" 2>/dev/null | awk '/libasan/ { print $3 }')
[ -n "$asan" ] && so="$asan $so"
max_n=${FAULTINJ_DOMAIN_MAX_N:-6}
faults=0
for spec in "mkdirat ENOSPC qemu-root" "socket EMFILE -" "openat EIO /var/run/xen"; do
    set -- $spec
    sub=$3
    [ "$sub" = - ] && sub=
    nth=1
    while [ "$nth" -le "$max_n" ]; do
        rm -f "$tmp/fired"
        what="start $A with $1 $2 #$nth${sub:+ on *$sub*}"
        FAULTINJ_CALL=$1 FAULTINJ_NTH=$nth FAULTINJ_ERRNO=$2 FAULTINJ_PATH_SUBSTR=$sub \
            FAULTINJ_LOG="$tmp/fired" LD_PRELOAD="$so" \
            "$DMCTL" --store "$sa" --timeout 10 start "$A" --profile xen --domid "$D" \
            --qemu "$XEN_QEMU_WRAPPER" --restrict --runas "$u:$u" >/dev/null 2>"$tmp/cmd.err"
        rc=$?
        [ -f "$tmp/fired" ] || { stop_all; break; }
        faults=$((faults + 1))
        case $rc in
        0 | 1) ;;
        *) violation "exit $rc ($(head -n1 "$tmp/cmd.err"))" ;;
        esac
        [ "$rc" = 1 ] && [ ! -s "$tmp/cmd.err" ] && violation "exit 1 without a message"
        check_invariants
        stop_all
        nth=$((nth + 1))
    done
done
secs=$((($(now_ms) - t0) / 1000))
echo "# domain crash-point campaign: $round rounds, $kills kills, $violations violations, ${secs} s (seed $seed); a DM of the domain ran after $dom_up rounds, one with a tap after $net_up"
check "no violation in $round rounds" test "$violations" -eq 0
[ "$rounds_wanted" -ge 5 ] &&
    check "the rounds did start DMs (domain: $dom_up, tap: $net_up)" test $((dom_up + net_up)) -gt 0
check "the injected faults fired ($faults)" test "$faults" -gt 0
tap_done
