#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 13: live migration never splits the brain. One scenario per defect
# of the chaos campaign, each through a transport the test controls
# (migrate-relay.pl between dmctl migrate and a migrate-receive on fifos)
# and checked through a second observer: extra QMP monitors of both QEMUs
# (migrate-observe.pl), never dmctl's own connection.
#   1  receiver stalled (SIGSTOP) around Finish: no resume of the source
#      while the finish may be obeyed; woken after its deadline, the
#      receiver does not obey it (issue 22, 6)
#   2  transport dies right after carrying "finish": no resume of the source
#   4  source QEMU dies after both sides completed: the destination keeps it
#   5  dmctl migrate SIGKILLed before "finish": migrate-cancel does not lie,
#      migrate-recover resumes the source from postmigrate
#   7  a hanging switchover hook is killed with its children

. "$(dirname "$0")/dmctl-migrate-lib.sh"

migrate_setup test-dmctl-migsafe

# ---- 1: the receiver stalls around Finish ----
fifo_scenario vm1 "1: receiver SIGSTOPped with the finish queued"
start_watch "$tmp"
dm "$src" --timeout 3 migrate vm1 --to "$(relay_cmd "$tmp" --stop-pid "$rpid" --stop-at 2)" \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 4 "1: the sender times out: exit 4 (outcome unknown)" "$tmp/err"
expect_in "$tmp/err" "outcome unknown" "1: the message says outcome unknown"
expect_in "$tmp/err" "dmctl migrate vm1 --recover --to" "1: the message names the recovery"
expect_obs "$tmp" src postmigrate "1: the source stays paused (postmigrate)"
wake_receiver
# Issue 22, 6: the receiver continues after its own deadline (which ends
# before the sender's): it no longer obeys the late finish; the
# destination is stopped and recovery resumes the source. (Before, the
# destination ran here: a finish obeyed after the sender gave up.)
expect_obs "$tmp" dst gone "1: the receiver continued late: the destination was stopped"
expect_obs "$tmp" src postmigrate "1: the source still does not run"
dm "$src" migrate vm1 --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "1: migrate-recover succeeds" "$tmp/err"
expect_in "$tmp/out" "the source runs" "1: migrate-recover resumes the source"
expect_obs "$tmp" src running "1: the source runs"
expect_obs "$tmp" dst gone "1: no destination"
expect_never_both "$tmp" "1: never both running"
finish_scenario 1

# ---- 2: the transport dies right after carrying "finish" ----
fifo_scenario vm2 "2: transport exits after forwarding finish"
start_watch "$tmp"
dm "$src" migrate vm2 --to "$(relay_cmd "$tmp" --die-after 2)" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 4 "2: channel lost after finish: exit 4" "$tmp/err"
expect_in "$tmp/err" "dmctl migrate vm2 --recover --to" "2: the message names the recovery"
reap_receiver
expect_obs "$tmp" dst running "2: the destination finished and runs"
expect_obs "$tmp" src postmigrate "2: the source stays paused"
dm "$src" migrate vm2 --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "2: migrate-recover succeeds" "$tmp/err"
expect_obs "$tmp" src gone "2: the source was stopped"
expect_never_both "$tmp" "2: never both running"
finish_scenario 2

# ---- 4: the source QEMU dies after both sides completed ----
# The hook stops dmctl migrate and, behind its back, lets the migration
# complete through the source's extra monitor, waits for the destination
# to complete, kills the source QEMU and continues dmctl.
fifo_scenario vm4 "4: source QEMU killed after completion, before the sender saw it"
start_watch "$tmp"
cat >"$tmp/hook4" <<EOF
#!/bin/sh
sender=\$PPID
(
    perl '$OBSERVE' cmd '$tmp/src-obs.sock' migrate-continue '{"state":"pre-switchover"}' >/dev/null
    perl '$OBSERVE' wait-mig '$tmp/dst-obs.sock' completed 10000 && echo dst-completed >'$tmp/hook4.log'
    kill -9 \$(cat '$tmp/src.pid')
    sleep 0.2
    kill -CONT \$sender
) </dev/null >/dev/null 2>&1 &
kill -STOP \$sender
EOF
chmod +x "$tmp/hook4"
dm "$src" migrate vm4 --to "$(relay_cmd "$tmp")" --pause-before-switchover \
    --switchover-hook "$tmp/hook4" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "4: the migration succeeds although the source died" "$tmp/err"
expect_in "$tmp/hook4.log" dst-completed "4: the destination had completed when the source died"
expect_in "$tmp/err" "the source QEMU exited" "4: dmctl notes the source's death"
reap_receiver
expect_obs "$tmp" dst running "4: the destination keeps and runs the guest"
expect_never_both "$tmp" "4: never both running"
finish_scenario 4

# ---- 5: dmctl migrate SIGKILLed between completion and "finish" ----
fifo_scenario vm5 "5: sender SIGKILLed before the finish left"
start_watch "$tmp"
dm "$src" migrate vm5 --to "$(relay_cmd "$tmp" --kill-sender-at 2)" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 137 "5: dmctl migrate was SIGKILLed" "$tmp/err"
reap_receiver
expect_obs "$tmp" dst gone "5: the destination was stopped (no finish)"
expect_obs "$tmp" src postmigrate "5: the source is stranded in postmigrate"
dm "$src" migrate-cancel vm5 >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" != 0 ]; then ok "5: migrate-cancel refuses"; else fail "5: migrate-cancel resumed blindly"; fi
expect_not_in "$tmp/err" "runs on the destination" "5: migrate-cancel does not claim the guest runs on the destination"
expect_in "$tmp/err" "migrate vm5 --recover" "5: migrate-cancel names the recovery"
dm "$src" migrate vm5 --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "5: migrate-recover succeeds" "$tmp/err"
expect_in "$tmp/out" "the source runs" "5: migrate-recover resumes the source"
expect_obs "$tmp" src running "5: the source runs (from postmigrate)"
expect_never_both "$tmp" "5: never both running"
finish_scenario 5

# ---- 7: a hanging hook and its children ----
echo "# 7: switchover hook hangs with a child"
start_observed "$src" vm7 "$tmp" || fail "starting vm7"
dm "$src" --timeout 3 migrate vm7 --to "$receiver" --pause-before-switchover \
    --switchover-hook "sleep 300 & echo \$! >'$tmp/hook7.child'; wait" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 3 "7: the hook times out: exit 3" "$tmp/err"
expect_in "$tmp/err" "killed with its process group" "7: the message says the group was killed"
child=$(cat "$tmp/hook7.child" 2>/dev/null)
if [ -n "$child" ] && wait_pid_gone "$child" 2000; then
    ok "7: the hook's child ($child) was killed too"
else
    fail "7: the hook's child '$child' survived"
    kill -9 "$child" 2>/dev/null
fi
expect_obs "$tmp" src running "7: the source runs again"
finish_scenario 7

finish
