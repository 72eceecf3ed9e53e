#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 22: one guest never has two histories. Each scenario is checked by
# QEMU's own vm_state_notify trace on both sides (expect_one_history): a
# destination that ran the guest and a source that then ran it again is a
# failure, whatever dmctl's exit status says.
#   A (4)  migrate-receive SIGKILLed after cont, while its record write
#          waits for a stalled store writer: autokill must already be
#          released; recovery stops the source
#   B (5)  a store writer stalled past the sender's deadline: the
#          destination is answered late (or never), it is not killed;
#          recovery stops the source
#   C (6)  the receiver frozen (SIGSTOP) with the finish queued, across the
#          sender's deadline and --recover --destination-gone: when it wakes
#          it does not obey the late finish
#   D (6)  the same for a recovery query: a receiver frozen with the query
#          queued does not resume the destination when it wakes

. "$(dirname "$0")/dmctl-migrate-lib.sh"

migrate_setup test-dmctl-mighist

# wait_obs DIR ROLE RUNSTATE MS
wait_obs() {
    _end=$(($(now_ms) + $4))
    while [ "$(obs "$1" "$2")" != "$3" ]; do
        [ "$(now_ms)" -ge "$_end" ] && return 1
        sleep 0.05
    done
    return 0
}

# ---- A: the receiver SIGKILLed after cont ----
if only A ]; then
fifo_scenario vmA "A: migrate-receive SIGKILLed after cont (its record write stalled)"
dm "$src" --timeout 20 migrate vmA --to "$(relay_cmd "$tmp")" --pause-before-switchover \
    --switchover-hook "$(stall_hook vmA)" >"$tmp/out" 2>"$tmp/err" &
spid=$!
# QEMU's own trace says when the destination runs: the kill lands while
# the receiver waits for the store, well within its deadline.
i=0
while ! grep -q 'running 1' "$tmp/dst.trace" 2>/dev/null && [ $i -lt 3000 ]; do
    sleep 0.005
    i=$((i + 1))
done
if grep -q 'running 1' "$tmp/dst.trace" 2>/dev/null; then
    ok "A: the destination runs (cont sent) while its record write waits"
else
    fail "A: the destination never ran"
fi
if kill -9 "$rpid" 2>/dev/null; then
    ok "A: the receiver was SIGKILLed after cont, before it answered"
else
    fail "A: the receiver had already ended (the store did not stall it)"
    sed 's/^/    receiver: /' "$tmp/r.err"
fi
reap_receiver
wait "$spid"
expect_rc $? 4 "A: the sender cannot know: exit 4" "$tmp/err"
sleep 0.5
expect_obs "$tmp" dst running "A: the destination still runs after its receiver's death"
dm "$src" migrate vmA --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "A: migrate-recover succeeds" "$tmp/err"
expect_obs "$tmp" src gone "A: the source was stopped"
expect_one_history "$tmp" "A: one history"
finish_scenario A
fi

# ---- B: a store writer stalled past the sender's deadline ----
if only B ]; then
echo "# B: store stalled past the sender's deadline"
reset_traces "$tmp"
start_observed "$src" vmB "$tmp" || fail "starting vmB"
dm "$src" --timeout 3 migrate vmB --to "$receiver" --pause-before-switchover \
    --switchover-hook "$(stall_hook vmB)" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" = 4 ] || { [ "$rc" = 1 ] && grep -q "record could not be updated" "$tmp/err"; }; then
    ok "B: the sender says unknown, or migrated with a stale record (exit $rc)"
else
    fail "B: exit $rc"
    sed 's/^/    stderr: /' "$tmp/err"
fi
sleep 0.5
expect_obs "$tmp" dst running "B: the destination runs (a stalled writer never kills it)"
if [ "$rc" = 4 ]; then
    # The receiver may still wait for the store (bounded): "busy", retry.
    i=0
    while :; do
        dm "$src" migrate vmB --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        [ "$rc" = 4 ] && grep -q busy "$tmp/err" && [ $i -lt 4 ] || break
        i=$((i + 1))
        sleep 2
    done
    expect_rc $rc 0 "B: migrate-recover succeeds" "$tmp/err"
fi
expect_obs "$tmp" src gone "B: the source was stopped"
expect_one_history "$tmp" "B: one history"
dm "$dst" list --no-query >"$tmp/list" 2>&1
finish_scenario B
fi

# ---- C: a late finish ----
if only C ]; then
fifo_scenario vmC "C: receiver frozen with the finish queued, across --destination-gone"
dm "$src" --timeout 3 migrate vmC --to "$(relay_cmd "$tmp" --stop-pid "$rpid" --stop-at 2)" \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 4 "C: the sender gives up: exit 4" "$tmp/err"
dm "$src" migrate vmC --recover --destination-gone >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "C: --destination-gone resumes the source" "$tmp/err"
wake_receiver
sleep 0.3
expect_obs "$tmp" src running "C: the source runs"
expect_obs_not "$tmp" dst running "C: the woken receiver did not run the destination (a late finish is not obeyed)"
expect_one_history "$tmp" "C: one history"
finish_scenario C
fi

# ---- D: a late recovery query ----
if only D ]; then
fifo_scenario vmD "D: receiver frozen with the recovery query queued, across --destination-gone"
strand_at_finish vmD D
expect_obs "$tmp" dst paused "D: the destination holds the guest, paused"
start_fifo_receiver "$dst" "$tmp" 20
dm "$src" --timeout 3 migrate vmD --recover \
    --to "$(relay_cmd "$tmp" --stop-pid "$rpid" --stop-at 1)" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 4 "D: the recovery gets no answer: exit 4" "$tmp/err"
dm "$src" migrate vmD --recover --destination-gone >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "D: --destination-gone resumes the source" "$tmp/err"
wake_receiver
sleep 0.3
expect_obs "$tmp" src running "D: the source runs"
expect_obs_not "$tmp" dst running "D: the woken receiver did not resume the destination (a late query is not obeyed)"
expect_one_history "$tmp" "D: one history"
finish_scenario D
fi

finish
