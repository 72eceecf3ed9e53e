#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 12, crash-point campaign: dmctl start, stop, resume and status run
# against a real QEMU (-machine none) while one of dmctl, the DM's keeper or
# QEMU is SIGKILLed at a random moment (0-300 ms after the command began).
# After every kill, within a settling time of 2 s:
#   - every QEMU running with -name NAME is listed by `dmctl list` with
#     alive=yes and its pid (nothing invisible);
#   - every DM listed alive has that QEMU running (dead ones say alive=no);
#   - no two QEMUs share a name; no zombie under the driver or a keeper;
# and on about half of the rounds (and for every name at the end) `dmctl
# stop NAME`, with --force if it fails, ends everything: no QEMU, no keeper,
# no record, no directory left in the store.
#
#   CRASHPOINT_KILLS  kills to make (default 50; e.g. 500 for a soak)
#   CRASHPOINT_SEED   the random seed (default: from the clock; printed,
#                     set it to replay a run)
# Needs $DMCTL and qemu-system-x86_64.

MIGRATE_LIBDIR=$(cd "$(dirname "$0")/../integration" && pwd)
. "$MIGRATE_LIBDIR/dmctl-migrate-lib.sh"

kills_wanted=${CRASHPOINT_KILLS:-50}
seed=${CRASHPOINT_SEED:-$(($(date +%s%N) / 1000 % 1000000007))}
echo "# seed $seed (replay: CRASHPOINT_SEED=$seed CRASHPOINT_KILLS=$kills_wanted $0)"
rnd=$seed

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-crashpoints.XXXXXX") || exit 99
store="$tmp/store"
mkdir -m 0700 "$store" || exit 99
prefix="cp$$"
cleanup() {
    [ -n "${cpid:-}" ] && kill -9 "$cpid" 2>/dev/null
    kill_store "$store"
    for q in $(pgrep -f -- "-name $prefix-" 2>/dev/null); do kill -9 "$q" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# rand N: a number in [0, N) in $r (an LCG on the seed: replayable).
rand() {
    rnd=$(((rnd * 1103515245 + 12345) % 2147483648))
    r=$(((rnd / 65536) % $1))
}

qemu_pids() {
    pgrep -f -- "^[^ ]*qemu-system[^ ]* .*-name $1( |\$)" 2>/dev/null
}
keeper_pids() {
    pgrep -f -- "libdm-keeper --name=$1 --store=$store " 2>/dev/null
}
# list_line NAME: dmctl --json list's line for NAME (without QMP queries).
list_line() {
    "$DMCTL" --store "$store" --timeout 10 --json list --no-query 2>/dev/null | grep "\"name\":\"$1\""
}
json_field() { # LINE FIELD
    echo "$1" | sed -n "s/.*\"$2\":\\([^,}]*\\).*/\\1/p" | tr -d '"'
}

violations=0
violation() {
    violations=$((violations + 1))
    echo "VIOLATION (seed $seed, round $round, $what): $*"
}

# zombies: zombie children of the driver or of this store's keepers.
zombies() {
    _parents="$$"
    for _n in $names; do _parents="$_parents $(keeper_pids "$_n" | tr '\n' ' ')"; done
    ps -eo pid=,ppid=,stat=,comm= | awk -v p=" $_parents " \
        '$3 ~ /^Z/ && index(p, " " $2 " ") { print $1 "(" $4 ")" }'
}

# invariants NAME: the problems now, one per line (nothing when all hold).
invariants() {
    _q=$(qemu_pids "$1")
    _nq=$(echo "$_q" | grep -c .)
    _l=$(list_line "$1")
    _alive=$(json_field "$_l" alive)
    _pid=$(json_field "$_l" pid)
    [ "$_nq" -gt 1 ] && echo "$_nq QEMUs named $1: $(echo $_q)"
    if [ "$_nq" -ge 1 ]; then
        if [ -z "$_l" ]; then
            echo "QEMU $(echo $_q) of $1 runs but is not listed"
        elif [ "$_alive" != true ] || ! echo "$_q" | grep -qx "$_pid"; then
            echo "QEMU $(echo $_q) of $1 runs but list says alive=$_alive pid=$_pid"
        fi
    elif [ "$_alive" = true ] && [ "$_pid" -gt 0 ] 2>/dev/null &&
        grep -q qemu "/proc/$_pid/cmdline" 2>/dev/null; then
        : # the QEMU is there, under another command line match (exec'ing)
    elif [ "$_alive" = true ]; then
        echo "$1 listed alive (pid $_pid) but no QEMU runs"
    fi
    _z=$(zombies)
    [ -n "$_z" ] && echo "zombies: $_z"
}

# check_invariants NAME: they hold within 2 s, else violations.
check_invariants() {
    _end=$(($(now_ms) + 2000))
    while :; do
        _bad=$(invariants "$1")
        [ -z "$_bad" ] && return 0
        [ "$(now_ms)" -ge "$_end" ] && break
        sleep 0.05
    done
    echo "$_bad" | while read -r _line; do echo "VIOLATION (seed $seed, round $round, $what): $_line"; done
    violations=$((violations + $(echo "$_bad" | grep -c .)))
    return 1
}

# stop_all_of NAME: dmctl stop, then stop --force; then nothing may be left.
stop_all_of() {
    "$DMCTL" --store "$store" --timeout 10 stop "$1" >/dev/null 2>"$tmp/stop.err" ||
        "$DMCTL" --store "$store" --timeout 10 stop --force "$1" >/dev/null 2>"$tmp/stop.err"
    _end=$(($(now_ms) + 3000))
    while :; do
        _left=
        [ -n "$(qemu_pids "$1")" ] && _left="$_left QEMU $(qemu_pids "$1" | tr '\n' ' ')"
        [ -n "$(keeper_pids "$1")" ] && _left="$_left keeper $(keeper_pids "$1" | tr '\n' ' ')"
        [ -n "$(list_line "$1")" ] && _left="$_left record"
        [ -e "$store/$1" ] && _left="$_left files: $(ls -A "$store/$1" 2>/dev/null | tr '\n' ' ')"
        [ -z "$_left" ] && return 0
        [ "$(now_ms)" -ge "$_end" ] && break
        sleep 0.05
    done
    violation "after stop of $1:$_left ($(head -n1 "$tmp/stop.err"))"
    for _p in $(qemu_pids "$1") $(keeper_pids "$1"); do kill -9 "$_p" 2>/dev/null; done
    "$DMCTL" --store "$store" --timeout 10 stop --force "$1" >/dev/null 2>&1
    return 1
}

# A QEMU that takes 150 ms to exec (a slow host): starts last long enough
# for kills to land between spawn and ready.
QEMU_PATH=$(command -v "$QEMU_BIN")
cat >"$tmp/slowqemu" <<EOF
#!/bin/sh
sleep 0.15
exec '$QEMU_PATH' "\$@"
EOF
chmod 0755 "$tmp/slowqemu"
chmod 0755 "$tmp"

names="$prefix-0 $prefix-1"
ops="start stop resume status"
victims="dmctl keeper qemu"
kills=0
k_dmctl=0
k_keeper=0
k_qemu=0
round=0
t_start=$(now_ms)
max_rounds=$((kills_wanted * 4 + 20))
while [ "$kills" -lt "$kills_wanted" ] && [ "$round" -lt "$max_rounds" ]; do
    round=$((round + 1))
    rand 2
    name="$prefix-$r"
    # A DM not there: start it (every op but start would just fail).
    if [ -z "$(list_line "$name")" ]; then
        op=start
    else
        rand 4
        op=$(echo $ops | cut -d' ' -f$((r + 1)))
    fi
    rand 3
    victim=$(echo $victims | cut -d' ' -f$((r + 1)))
    rand 301
    delay=$r
    what="$op $name, kill $victim at $delay ms"
    extra=
    [ "$op" = start ] && extra="--qemu $tmp/slowqemu"
    "$DMCTL" --store "$store" --timeout 10 $op "$name" $extra >/dev/null 2>"$tmp/op.err" &
    cpid=$!
    sleep "$(printf '0.%03d' "$delay")"
    case $victim in
    dmctl) vp=$cpid ;;
    keeper) vp=$(keeper_pids "$name" | head -n1) ;;
    qemu) vp=$(qemu_pids "$name" | head -n1) ;;
    esac
    if [ -n "$vp" ] && kill -9 "$vp" 2>/dev/null; then
        kills=$((kills + 1))
        eval "k_$victim=\$((k_$victim + 1))"
    fi
    # dmctl ends by itself (its own --timeout bounds it); 15 s at most.
    if ! wait_pid_gone "$cpid" 15000; then
        violation "dmctl $op did not end within 15 s"
        kill -9 "$cpid" 2>/dev/null
    fi
    wait "$cpid" 2>/dev/null
    cpid=
    check_invariants "$name"
    rand 2
    [ "$r" = 0 ] && stop_all_of "$name"
done
t_end=$(now_ms)
for name in $names; do
    what="final stop"
    stop_all_of "$name"
done
left=$(ls -A "$store")
[ -n "$left" ] && violation "files left in the store: $left"
procs=$(pgrep -f -- "-name $prefix-" 2>/dev/null | tr '\n' ' ')
[ -n "$procs" ] && violation "processes left: $procs"
secs=$(((t_end - t_start) / 1000))
echo "# crash-point campaign: $kills kills (dmctl $k_dmctl, keeper $k_keeper, QEMU $k_qemu) in $round rounds, $violations violations, ${secs} s (seed $seed)"
if [ "$kills" -lt "$kills_wanted" ]; then
    echo "FAIL: only $kills of $kills_wanted kills happened in $round rounds"
    exit 1
fi
[ "$violations" -eq 0 ]
