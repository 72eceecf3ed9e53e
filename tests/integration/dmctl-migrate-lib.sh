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

fails=0
n=0

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

ok() {
    n=$((n + 1))
    echo "ok $n - $*"
}

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
MIGRATE_LIBDIR=$(cd "${MIGRATE_LIBDIR:-$(dirname "$0")}" && pwd)
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
