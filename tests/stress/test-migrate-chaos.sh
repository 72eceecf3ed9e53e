#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Chaos campaign for dmctl migrate (issue 13). Each trial migrates a fresh
# 64 MiB guest through migrate-relay.pl to a migrate-receive on fifos and
# injects one random fault: the transport dying or dropping at a line, the
# sender or the receiver SIGKILLed or SIGSTOPped, a QEMU SIGKILLed. Then the
# stranded state, if any, is recovered with migrate-recover, and invariants
# are checked through the QEMUs' extra monitors (never dmctl's):
#   - never both running (sampled every 10 ms for the whole trial)
#   - a paused source left by a sender that exited is named with its recovery
#   - after recovery exactly one QEMU runs the guest, unless the fault killed
#     a QEMU (then at most one)
#   - no QEMU, keeper or record left once both are stopped
#   - one history: QEMU's own vm_state_notify trace never shows the guest
#     running on the destination and then again on the source
# Recovery-path faults (issue 22): concurrent and repeated --recover, a
# --recover from the wrong host, a receiver frozen with the finish queued
# across --destination-gone, a store writer stalled during Finish.
# MIGRATE_CHAOS_TRIALS (default 20; 200+ for a soak), MIGRATE_CHAOS_SEED.

MIGRATE_LIBDIR="$(dirname "$0")/../integration"
. "$MIGRATE_LIBDIR/dmctl-migrate-lib.sh"

trials=${MIGRATE_CHAOS_TRIALS:-20}
seed=${MIGRATE_CHAOS_SEED:-$(($(date +%s) % 100000))}
echo "# $trials trials, MIGRATE_CHAOS_SEED=$seed"

migrate_tmp test-migrate-chaos
spid=
cleanup() {
    for _p in $spid; do
        kill -CONT "$_p" 2>/dev/null
        kill -9 "$_p" 2>/dev/null
    done
    cleanup_pair
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Both QEMUs observed, $receiver and (issue 22: the recovery path) a
# receiver on the source's host, $src_receiver, for a recovery run from
# the wrong side; and a switchover hook that makes a writer hold the
# destination's record lock for 5 s (a stalled store).
observed_pair
cat >"$tmp/stall-hook" <<EOF
#!/bin/sh
perl -e 'use Fcntl ":flock"; open(my \$d, "<", \$ARGV[0]) or exit 0;
         flock(\$d, LOCK_EX | LOCK_NB) or exit 0; \$| = 1; print "locked\\n"; sleep 5' \
    '$dst/vm' >'$tmp/stall.ready' </dev/null 2>/dev/null &
i=0
while ! [ -s '$tmp/stall.ready' ] && [ \$i -lt 200 ]; do sleep 0.01; i=\$((i + 1)); done
rm -f '$tmp/stall.ready'
EOF
chmod +x "$tmp/stall-hook"

# rand N: a number in [0, N) in $R (an LCG: reproducible by seed).
rand() {
    seed=$(((seed * 1103515245 + 12345) % 2147483648))
    R=$(((seed / 65536) % $1))
}

faults="none relay-die-after-prepare relay-die-after-finish relay-drop-finish \
kill-sender-at-finish stall-receiver kill-source kill-destination kill-receiver \
kill-sender stop-sender recover-concurrent recover-repeat recover-wrong-side \
frozen-receiver-gone stalled-store"
nfaults=$(echo $faults | wc -w)

# A fault applied while the sender runs (pid $spid), after @delay ms.
async_fault() {
    sleep "$(awk "BEGIN { print $2 / 1000 }")"
    case $1 in
    kill-source) kill -9 "$(cat "$tmp/src.pid")" 2>/dev/null ;;
    kill-destination) kill -9 "$(cat "$tmp/dst.pid" 2>/dev/null)" 2>/dev/null ;;
    kill-receiver) kill -9 "$rpid" 2>/dev/null ;;
    kill-sender) kill -9 "$spid" 2>/dev/null ;;
    stop-sender)
        kill -STOP "$spid" 2>/dev/null
        sleep 1
        kill -CONT "$spid" 2>/dev/null
        ;;
    esac
}

running_count() {
    _c=0
    [ "$(obs "$tmp" src)" = running ] && _c=$((_c + 1))
    [ "$(obs "$tmp" dst)" = running ] && _c=$((_c + 1))
    echo $_c
}

count() {
    eval "_v=\${cnt_$1:-0}"
    eval "cnt_$1=$((_v + 1))"
}

trial() {
    _f=$1
    rm -f "$tmp/src.pid" "$tmp/dst.pid" "$tmp/relay.log"
    reset_traces "$tmp"
    start_observed "$src" vm "$tmp" || { fail "trial $2: starting the source"; return; }
    start_fifo_receiver "$dst" "$tmp" 10
    start_watch "$tmp"
    _opt=
    _to=$(relay_cmd "$tmp")
    case $_f in
    relay-die-after-prepare) _to=$(relay_cmd "$tmp" --die-after 1) ;;
    relay-die-after-finish) _to=$(relay_cmd "$tmp" --die-after 2) ;;
    relay-drop-finish) _to=$(relay_cmd "$tmp" --drop-at 2) ;;
    kill-sender-at-finish) _to=$(relay_cmd "$tmp" --kill-sender-at 2) ;;
    stall-receiver|frozen-receiver-gone)
        _to=$(relay_cmd "$tmp" --stop-pid "$rpid" --stop-at 2) ;;
    recover-*) _to=$(relay_cmd "$tmp" --die-after 2) ;;
    stalled-store) _opt="--pause-before-switchover --switchover-hook $tmp/stall-hook" ;;
    esac
    # shellcheck disable=SC2086
    "$DMCTL" --store "$src" --timeout 2 migrate vm --to "$_to" $_opt >"$tmp/out" 2>"$tmp/err" &
    spid=$!
    rand 400
    _apid=
    case $_f in
    kill-*|stop-sender)
        [ "$_f" = kill-sender-at-finish ] || { async_fault "$_f" "$R" & _apid=$!; }
        ;;
    esac
    wait "$spid"
    _rc=$?
    [ -n "$_apid" ] && wait "$_apid"
    spid=
    count "exit_$_rc"
    kill -CONT "$rpid" 2>/dev/null
    wait_pid_gone "$rpid" 15000 || kill -9 "$rpid" 2>/dev/null
    wait "$rpid" 2>/dev/null
    rpid=
    # A sender that ended by itself leaves no paused source unnamed.
    _srs=$(obs "$tmp" src)
    if [ "$_rc" != 137 ] && [ "$_rc" != 0 ] && [ "$_srs" != running ] && [ "$_srs" != gone ]; then
        if grep -q -e "--recover" -e "migrate-cancel" "$tmp/err"; then
            ok "trial $2 ($_f): the paused source ($_srs) is named with its recovery"
        else
            fail "trial $2 ($_f): source $_srs, exit $_rc, and no recovery named"
            sed 's/^/    /' "$tmp/err"
        fi
    fi
    # The recovery path's own faults (issue 22).
    case $_f in
    frozen-receiver-gone)
        # The operator asserts the destination gone while its receiver is
        # frozen with the finish queued; the receiver then wakes up late.
        [ "$_srs" != running ] && [ "$_srs" != gone ] &&
            dm "$src" migrate vm --recover --destination-gone >/dev/null 2>&1
        kill -CONT "$rpid" 2>/dev/null
        wait_pid_gone "$rpid" 15000
        ;;
    recover-wrong-side)
        # Run first from the destination's host: whatever it says, the
        # invariants below must hold.
        dm "$dst" migrate vm --recover --to "$src_receiver" >/dev/null 2>&1
        count "wrong_side_$?"
        ;;
    recover-concurrent)
        dm "$src" migrate vm --recover --to "$receiver" >/dev/null 2>&1 &
        _c1=$!
        dm "$src" migrate vm --recover --to "$receiver" >/dev/null 2>&1 &
        _c2=$!
        wait "$_c1"; count "concurrent_$?"
        wait "$_c2"; count "concurrent_$?"
        ;;
    esac
    _srs=$(obs "$tmp" src)
    # Recover whatever is stranded: the source paused or the sender killed.
    if [ "$_f" = recover-repeat ] && [ "$_srs" != gone ]; then
        dm "$src" migrate vm --recover --to "$receiver" >/dev/null 2>&1
        count "repeat_first_$?"
        _srs=$(obs "$tmp" src)
    fi
    if [ "$_srs" != running ] && [ "$_srs" != gone ] || [ "$_rc" = 4 ] || [ "$_rc" = 137 ]; then
        if [ "$_srs" != gone ]; then
            dm "$src" migrate vm --recover --to "$receiver" >"$tmp/rout" 2>"$tmp/rerr"
            _rr=$?
            count "recover_$_rr"
            [ "$_rr" = 0 ] || { fail "trial $2 ($_f): migrate-recover exit $_rr"; sed 's/^/    /' "$tmp/rerr"; }
        fi
    fi
    sleep 0.1
    stop_watch
    _n=$(running_count)
    case $_f in
    kill-source|kill-destination) _ok=$([ "$_n" -le 1 ] && echo y) ;;
    *) _ok=$([ "$_n" = 1 ] && echo y) ;;
    esac
    [ "$_n" = 0 ] && count lost
    if [ "$_ok" = y ]; then
        ok "trial $2 ($_f, exit $_rc): $_n running after recovery"
    else
        fail "trial $2 ($_f, exit $_rc): $_n QEMUs run the guest after recovery"
        sed 's/^/    sender: /' "$tmp/err"
        sed 's/^/    relay: /' "$tmp/relay.log" 2>/dev/null
    fi
    expect_never_both "$tmp" "trial $2 ($_f): never both running"
    expect_one_history "$tmp" "trial $2 ($_f): one history"
    kill_store "$src"
    kill_store "$dst"
    if ! wait_no_procs "$src" 3000 || ! wait_no_procs "$dst" 3000 ||
        ! wait_no_records "$src" 3000 || ! wait_no_records "$dst" 3000; then
        fail "trial $2 ($_f): processes or records left"
    fi
}

i=1
while [ "$i" -le "$trials" ]; do
    rand "$nfaults"
    f=$(echo $faults | cut -d' ' -f$((R + 1)))
    # Every fault at least once in the first rounds.
    [ "$i" -le "$nfaults" ] && f=$(echo $faults | cut -d' ' -f"$i")
    count "fault_$(echo "$f" | tr - _)"
    trial "$f" "$i"
    i=$((i + 1))
done

echo "# counts:"
set | sed -n "s/^cnt_\(.*\)=\(.*\)/#   \1: \2/p" | tr -d "'"
finish
