# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers of test-dmctl-migrate*.sh (sourced). Every dmctl runs under
# timeout(1) as well as its own --timeout: no step can hang the test.

if [ -z "${DMCTL:-}" ]; then
    echo "SKIP: \$DMCTL is not set"
    exit 77
fi
QEMU_BIN=${QEMU:-qemu-system-x86_64}
if ! command -v "$QEMU_BIN" >/dev/null 2>&1; then
    echo "SKIP: $QEMU_BIN not found"
    exit 77
fi

# ok, fail and their counters n, fails: the shell tests' common ones.
MIGRATE_LIBDIR=$(cd "${MIGRATE_LIBDIR:-$(dirname "$0")}" && pwd)
. "$MIGRATE_LIBDIR/../harness/tap.sh"

now_ms() {
    echo $(($(date +%s%N) / 1000000))
}

# dm STORE ARGS...: dmctl on STORE, bounded.
dm() {
    _store=$1
    shift
    timeout -k 5 60 ${NSEXEC:-} "$DMCTL" --store "$_store" --timeout 20 "$@"
}

# The keeper and QEMU processes of STORE (keepers carry --store=STORE).
store_pids() {
    for _k in $(pgrep -f -- "libdm-keeper .*--store=$1 " 2>/dev/null); do
        echo "$_k"
        pgrep -P "$_k" 2>/dev/null
    done
}

# wait_no_procs STORE MS: 0 once STORE has no process left, within MS.
wait_no_procs() {
    _end=$(($(now_ms) + $2))
    while [ -n "$(store_pids "$1")" ]; do
        [ "$(now_ms)" -ge "$_end" ] && return 1
        sleep 0.05
    done
    return 0
}

# records STORE: the number of recorded DMs.
records() {
    dm "$1" --json list --no-query 2>/dev/null | grep -c '"name"'
}

# wait_no_records STORE MS
wait_no_records() {
    _end=$(($(now_ms) + $2))
    while [ "$(records "$1")" != 0 ]; do
        [ "$(now_ms)" -ge "$_end" ] && return 1
        sleep 0.05
    done
    return 0
}

# expect_clean STORE WHAT MS: no record and no process of STORE within MS.
expect_clean() {
    if ! wait_no_procs "$1" "$3"; then
        fail "$2: processes of $1 left: $(store_pids "$1" | tr '\n' ' ')"
    elif ! wait_no_records "$1" "$3"; then
        fail "$2: records left in $1"
        dm "$1" list --no-query | sed 's/^/    /'
    else
        ok "$2"
    fi
}

# kill_store STORE: stops every DM of STORE, then kills what is left.
kill_store() {
    [ -d "$1" ] || return 0
    for _d in "$1"/*/; do
        [ -d "$_d" ] && dm "$1" stop --force "$(basename "$_d")" >/dev/null 2>&1
    done
    for _p in $(store_pids "$1"); do
        kill -9 "$_p" 2>/dev/null
    done
}

# start_running STORE NAME: a running 64 MiB pc guest.
start_running() {
    dm "$1" start "$2" --machine pc --memory 64 >/dev/null &&
        dm "$1" resume "$2" >/dev/null
}

# expect_status STORE NAME RUNSTATE WHAT
expect_status() {
    _rs=$(dm "$1" status "$2" 2>&1)
    if [ "$_rs" = "$3" ]; then
        ok "$4"
    else
        fail "$4: status of $2 in $1 is '$_rs', expected $3"
    fi
}

# expect_rc GOT WANT WHAT ERRFILE
expect_rc() {
    if [ "$1" = "$2" ]; then
        ok "$3"
    else
        fail "$3: exit $1, expected $2"
        [ -f "$4" ] && sed 's/^/    stderr: /' "$4"
    fi
}

expect_in() {
    if grep -q -- "$2" "$1"; then
        ok "$3"
    else
        fail "$3: '$2' not in $1"
        sed 's/^/    /' "$1"
    fi
}

finish() {
    if [ "$fails" -gt 0 ]; then
        echo "$fails of $n checks failed"
        exit 1
    fi
    echo "all $n checks passed"
    exit 0
}

# ---- fault injection and a second observer (test-dmctl-migrate-safety.sh,
# tests/stress/test-migrate-chaos.sh) ----
# (Tests outside tests/integration set MIGRATE_LIBDIR before sourcing.)
RELAY="$MIGRATE_LIBDIR/migrate-relay.pl"
OBSERVE="$MIGRATE_LIBDIR/migrate-observe.pl"

# observed_qemu DIR ROLE: DIR/qemu-ROLE runs QEMU with two extra monitors,
# DIR/ROLE-watch.sock and DIR/ROLE-obs.sock, and its pid in DIR/ROLE.pid.
# QEMU's own run-state trace goes to DIR/ROLE.trace (vm_state_notify lines,
# written at once: they survive a SIGKILL of the QEMU).
observed_qemu() {
    _q=$(command -v "$QEMU_BIN")
    cat >"$1/qemu-$2" <<EOS
#!/bin/sh
rm -f '$1/$2-watch.sock' '$1/$2-obs.sock'
# The host's pid (\$\$ would be the DM's PID namespace's own number).
read _pid _rest </proc/self/stat
echo \$_pid >'$1/$2.pid'
exec '$_q' "\$@" -qmp unix:$1/$2-watch.sock,server=on,wait=off -qmp unix:$1/$2-obs.sock,server=on,wait=off \\
    -msg timestamp=on -trace enable=vm_state_notify,file=$1/$2.trace
EOS
    chmod 0755 "$1/qemu-$2"
}

# obs DIR ROLE: the runstate of ROLE's QEMU by its own monitor ("gone").
obs() {
    perl "$OBSERVE" status "$1/$2-obs.sock"
}

# start_observed STORE NAME DIR: a running 64 MiB guest under DIR/qemu-src.
start_observed() {
    dm "$1" start "$2" --machine pc --memory 64 --qemu "$3/qemu-src" >/dev/null &&
        dm "$1" resume "$2" >/dev/null
}

# start_fifo_receiver STORE DIR TIMEOUT: migrate-receive on DIR/r.in and
# DIR/r.out (see relay_cmd), its pid in $rpid, stderr in DIR/r.err.
start_fifo_receiver() {
    rm -f "$2/r.in" "$2/r.out"
    mkfifo "$2/r.in" "$2/r.out" || return 1
    "$DMCTL" --store "$1" --timeout "$3" migrate-receive --qemu "$2/qemu-dst" \
        <"$2/r.in" >"$2/r.out" 2>"$2/r.err" &
    rpid=$!
}

# relay_cmd DIR [FAULTS]: the --to command relaying to the fifo receiver.
relay_cmd() {
    _d=$1
    shift
    echo "exec perl '$RELAY' --in '$_d/r.in' --out '$_d/r.out' --log '$_d/relay.log' $*"
}

# wait_pid_gone PID MS
wait_pid_gone() {
    _end=$(($(now_ms) + $2))
    while kill -0 "$1" 2>/dev/null; do
        [ "$(now_ms)" -ge "$_end" ] && return 1
        sleep 0.02
    done
    return 0
}

# start_watch DIR: samples both QEMUs' runstates into DIR/watch.log.
start_watch() {
    perl "$OBSERVE" watch "$1/src-watch.sock" "$1/dst-watch.sock" >"$1/watch.log" 2>&1 &
    wpid=$!
    # A fault fired at once must not beat the watcher's first sample.
    _i=0
    while ! grep -q running "$1/watch.log" 2>/dev/null && [ $_i -lt 200 ]; do
        sleep 0.01
        _i=$((_i + 1))
    done
}

stop_watch() {
    [ -n "${wpid:-}" ] && kill -TERM "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
    wpid=
}

# expect_never_both DIR WHAT: the watcher never saw both running.
expect_never_both() {
    if ! grep -q running "$1/watch.log"; then
        fail "$2: the watcher saw no QEMU running at all (is it working?)"
    elif grep -q BOTH-RUNNING "$1/watch.log"; then
        fail "$2: source and destination ran at the same time"
        grep -m3 BOTH-RUNNING "$1/watch.log" | sed 's/^/    /'
    else
        ok "$2"
    fi
}

# expect_obs DIR ROLE RUNSTATE WHAT (by the second observer)
expect_obs() {
    _rs=$(obs "$1" "$2")
    if [ "$_rs" = "$3" ]; then
        ok "$4"
    else
        fail "$4: $2 is '$_rs' by its own monitor, expected $3"
    fi
}

expect_not_in() {
    if grep -q -- "$2" "$1"; then
        fail "$3: '$2' in $1"
        sed 's/^/    /' "$1"
    else
        ok "$3"
    fi
}

# runs DIR ROLE: how many times ROLE's QEMU started running, by its own
# trace (the last QEMU of that role).
runs() {
    grep -c 'vm_state_notify running 1' "$1/$2.trace" 2>/dev/null || true
}

# reset_traces DIR: before a scenario.
reset_traces() {
    rm -f "$1/src.trace" "$1/dst.trace"
}

# expect_one_history DIR WHAT: the guest never ran on the destination and
# then again on the source (the source runs once from its start; a second
# run is a resume after the migration stopped it).
expect_one_history() {
    _d=$(runs "$1" dst)
    _s=$(runs "$1" src)
    if [ "$_s" -lt 1 ]; then
        fail "$2: no run of the source in its trace (is tracing working?)"
    elif [ "$_d" -ge 1 ] && [ "$_s" -ge 2 ]; then
        fail "$2: two histories: the destination ran ($_d) and the source ran again ($_s runs)"
        sed 's/^/    src: /' "$1/src.trace"
        sed 's/^/    dst: /' "$1/dst.trace"
    else
        ok "$2 (source runs: $_s, destination runs: $_d)"
    fi
}

# ---- the two stores and a scenario's set-up and end (the migration tests) ----

# migrate_tmp PREFIX: $tmp (0755: a restricted DM reads its wrappers there)
# holding the two stores $src and $dst (0700).
migrate_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 99
    chmod 0755 "$tmp"
    src="$tmp/src"
    dst="$tmp/dst"
    mkdir -m 0700 "$src" "$dst" || exit 99
    rpid=
    wpid=
}

# observed_pair: both QEMUs observed (observed_qemu), $receiver the --to
# command of a migrate-receive into $dst, $src_receiver one into $src (a
# receiver on the source's host, for a recovery run on the wrong host).
observed_pair() {
    observed_qemu "$tmp" src
    observed_qemu "$tmp" dst
    receiver="'$DMCTL' --store '$dst' --timeout 10 migrate-receive --qemu '$tmp/qemu-dst'"
    src_receiver="'$DMCTL' --store '$src' --timeout 10 migrate-receive --qemu '$tmp/qemu-src'"
}

# only SCENARIO: true if $ONLY is unset or names SCENARIO.
only() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }

# expect_confined WHAT PID UID STORE: QEMU PID runs as UID, under seccomp
# (2) and no_new_privs, chrooted under STORE (a restricted destination,
# confined as its source was: issue 22, 2).
expect_confined() {
    _what=$1 _pid=$2 _uid=$3 _store=$4
    _st="/proc/${_pid:-0}/status"
    if [ -z "$_pid" ] || [ ! -r "$_st" ]; then
        fail "$_what: no destination QEMU to look at"
        return
    fi
    _u=$(awk '/^Uid:/ { print $2 }' "$_st")
    _sc=$(awk '/^Seccomp:/ { print $2 }' "$_st")
    _nnp=$(awk '/^NoNewPrivs:/ { print $2 }' "$_st")
    _root=$(readlink "/proc/$_pid/root")
    case "$_root" in "$_store"/?*) _in=yes ;; *) _in=no ;; esac
    if [ "$_u" = "$_uid" ] && [ "$_sc" = 2 ] && [ "$_nnp" = 1 ] && [ "$_in" = yes ]; then
        ok "$_what: the destination QEMU is confined (uid $_u, seccomp $_sc, no_new_privs $_nnp, root $_root)"
    else
        fail "$_what: the destination QEMU $_pid: uid $_u (want $_uid), seccomp $_sc, no_new_privs $_nnp, root $_root (want under $_store)"
    fi
}

# unstall: kills the stalled store writer of stall_hook, if any.
unstall() {
    [ -f "$tmp/stall.pid" ] && kill -9 "$(cat "$tmp/stall.pid")" 2>/dev/null
    rm -f "$tmp/stall.pid"
}

# stall_hook NAME: a switchover hook that makes a stalled writer hold the
# destination's record directory $dst/NAME (its flock) until unstall.
stall_hook() {
    cat >"$tmp/stall-$1" <<EOF
#!/bin/sh
rm -f '$tmp/stall.ready'
perl -e 'use Fcntl ":flock"; open(my \$d, "<", \$ARGV[0]) or die "\$ARGV[0]: \$!";
         flock(\$d, LOCK_EX | LOCK_NB) or die "flock: \$!"; \$| = 1; print "locked\\n";
         sleep 60' '$dst/$1' >'$tmp/stall.ready' </dev/null &
echo \$! >'$tmp/stall.pid'
i=0
while ! [ -s '$tmp/stall.ready' ] && [ \$i -lt 300 ]; do sleep 0.01; i=\$((i + 1)); done
EOF
    chmod +x "$tmp/stall-$1"
    echo "$tmp/stall-$1"
}

# cleanup_pair: the watcher, a stalled writer, the receiver (woken first)
# and every DM of both stores (the tests' EXIT traps).
cleanup_pair() {
    stop_watch
    unstall
    [ -n "${rpid:-}" ] && kill -CONT "$rpid" 2>/dev/null && kill -9 "$rpid" 2>/dev/null
    kill_store "$src"
    kill_store "$dst"
}

# fifo_scenario NAME WHAT: a scenario through the fifo receiver: its
# title, fresh traces, a running observed guest NAME, the receiver ($rpid).
fifo_scenario() {
    echo "# $2"
    reset_traces "$tmp"
    start_observed "$src" "$1" "$tmp" || fail "starting $1"
    start_fifo_receiver "$dst" "$tmp" 20
}

# reap_receiver: waits for the fifo receiver to end.
reap_receiver() {
    wait "$rpid" 2>/dev/null
    rpid=
}

# wake_receiver: continues a SIGSTOPped fifo receiver and waits for its end.
wake_receiver() {
    kill -CONT "$rpid"
    reap_receiver
}

# expect_refused RC WHAT: ok if RC is not 0 ("WHAT is refused"), else a
# failure that shows $tmp/out and $tmp/err.
expect_refused() {
    if [ "$1" != 0 ]; then
        ok "$2 is refused (exit $1)"
    else
        fail "$2 said success"
        sed 's/^/    /' "$tmp/out" "$tmp/err"
    fi
}

# expect_obs_not DIR ROLE RUNSTATE WHAT: ROLE's QEMU is not in RUNSTATE by
# its own monitor (else a failure that shows the fifo receiver's stderr).
expect_obs_not() {
    _rs=$(obs "$1" "$2")
    if [ "$_rs" != "$3" ]; then
        ok "$4"
    else
        fail "$4: $2 is $3 by its own monitor"
        sed 's/^/    /' "$1/r.err"
    fi
}

# finish_scenario WHAT: stops what runs, checks both stores are empty.
finish_scenario() {
    stop_watch
    unstall
    [ -n "$rpid" ] && { kill -CONT "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; }
    rpid=
    kill_store "$src"
    kill_store "$dst"
    expect_clean "$src" "$1: no process or record left of the source" 3000
    expect_clean "$dst" "$1: no process or record left of the destination" 3000
}

# ---- two "hosts": network namespaces joined by a veth pair ----

# netns_pair NSA NSB VETHA VETHB ADDRA ADDRB: both namespaces, the veth
# pair between them (VETHA in NSA with ADDRA, VETHB in NSB with ADDRB),
# loopback and the pair up. Status not 0 if any step failed.
netns_pair() {
    ip netns add "$1" && ip netns add "$2" &&
        ip link add "$3" type veth peer name "$4" &&
        ip link set "$3" netns "$1" && ip link set "$4" netns "$2" &&
        ip -n "$1" addr add "$5" dev "$3" &&
        ip -n "$2" addr add "$6" dev "$4" &&
        ip -n "$1" link set lo up && ip -n "$2" link set lo up &&
        ip -n "$1" link set "$3" up && ip -n "$2" link set "$4" up
}

# netns_pair_del NSA NSB VETHA: deletes what netns_pair made.
netns_pair_del() {
    ip netns del "$1" 2>/dev/null
    ip netns del "$2" 2>/dev/null
    ip link del "$3" 2>/dev/null
}

# stop_clean STORE NAME WHAT: stops NAME, then no record and no process of
# STORE within 3 s.
stop_clean() {
    dm "$1" stop "$2" >/dev/null
    expect_clean "$1" "$3" 3000
}

# strand_at_finish NAME SCENARIO: migrates NAME (from $src, to the fifo
# receiver) with --keep-paused through a relay that dies right after it
# carried "finish": exit 4 expected; then the receiver is reaped.
strand_at_finish() {
    dm "$src" migrate "$1" --keep-paused --to "$(relay_cmd "$tmp" --die-after 2)" \
        >"$tmp/out" 2>"$tmp/err"
    expect_rc $? 4 "$2: the transport died after finish: exit 4" "$tmp/err"
    reap_receiver
}

# migrate_setup PREFIX [plain]: migrate_tmp PREFIX, an EXIT trap that runs
# cleanup_pair and removes $tmp (kept if $KEEP is set), INT/TERM exit 130;
# then observed_pair, unless "plain" (QEMU as it is).
migrate_setup() {
    migrate_tmp "$1"
    trap 'cleanup_pair; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
    trap 'exit 130' INT TERM
    [ "${2:-}" = plain ] || observed_pair
}
