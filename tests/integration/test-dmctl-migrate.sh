#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl migrate / migrate-receive between two real QEMUs on this host, each
# in its own store: a migration with a switchover hook, a cancel at
# pre-switchover, a receiver killed during perform, the receiver's
# controller SIGKILLed after prepare (autokill), and a tcp --json
# --keep-paused migration, and dmctl migrate itself SIGKILLed mid-perform
# (destination gone, source recovered by migrate-cancel). Every scenario ends with no record and no
# process of either store left.

. "$(dirname "$0")/dmctl-migrate-lib.sh"

migrate_setup test-dmctl-migrate plain

# The receiver as the --to command sees it (quoted for /bin/sh -c).
receiver="'$DMCTL' --store '$dst' --timeout 20 migrate-receive"

step() {
    echo "# $*"
    t0=$(now_ms)
}

took() {
    echo "# ... $1 took $(($(now_ms) - t0)) ms"
}

# ---- 1: migration with --pause-before-switchover and a hook ----
step "migrate with a switchover hook"
start_running "$src" vm1 || fail "starting vm1"
t1=$(now_ms)
dm "$src" migrate vm1 --to "$receiver" --live --pause-before-switchover \
    --switchover-hook "date +%s%N >'$tmp/hook-ran'; echo \"\$DMCTL_MIGRATE_NAME\" >'$tmp/hook-name'" \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "migrate vm1 succeeds" "$tmp/err"
echo "# migrate itself: $(($(now_ms) - t1)) ms"
if [ -s "$tmp/hook-ran" ] && [ "$(cat "$tmp/hook-name" 2>/dev/null)" = vm1 ]; then
    ok "the hook ran with DMCTL_MIGRATE_NAME=vm1"
else
    fail "the hook did not run (or without DMCTL_MIGRATE_NAME)"
fi
expect_in "$tmp/out" "vm1: migrated (destination runstate: running)" "migrate reports the result"
expect_status "$dst" vm1 running "the destination runs vm1"
expect_clean "$src" "the source store has no record and no process" 3000
stop_clean "$dst" vm1 "the destination stops cleanly"
took "scenario 1"

# ---- 1b: operator commands during a migration are refused at once ----
# The hook (at pre-switchover, monitor held by dmctl migrate) runs
# `dmctl status` on the source: refused within its deadline's fraction,
# naming the migration, never queued until after the switchover.
step "status during a migration is refused now"
start_running "$src" vm1b || fail "starting vm1b"
dm "$src" migrate vm1b --to "$receiver" --pause-before-switchover \
    --switchover-hook "s=\$(date +%s%N); '$DMCTL' --store '$src' --timeout 10 status vm1b \
        >'$tmp/busy.out' 2>&1; echo \$? \$(( (\$(date +%s%N) - s) / 1000000 )) >'$tmp/busy.rc'" \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "migrate vm1b succeeds" "$tmp/err"
read busy_rc busy_ms <"$tmp/busy.rc"
if [ "$busy_rc" = 1 ] && [ "$busy_ms" -lt 2000 ] && grep -q "migration in progress" "$tmp/busy.out"; then
    ok "status during the migration: exit 1 in ${busy_ms} ms, 'migration in progress'"
else
    fail "status during the migration: exit $busy_rc after ${busy_ms} ms: $(cat "$tmp/busy.out")"
fi
dm "$dst" stop vm1b >/dev/null
expect_clean "$src" "vm1b: the source store is clean" 3000
expect_clean "$dst" "vm1b: the destination stops cleanly" 3000
took "scenario 1b"

# ---- 1c: migrate-cancel reaches a migration in progress at once ----
# While dmctl migrate waits in its switchover hook, `dmctl migrate-cancel`
# from elsewhere cancels it now (not after the switchover): the source runs
# again, the destination is gone, the migration reports the interruption.
step "migrate-cancel during a migration"
start_running "$src" vm1c || fail "starting vm1c"
dm "$src" migrate vm1c --to "$receiver" --pause-before-switchover \
    --switchover-hook "sleep 20" >"$tmp/out" 2>"$tmp/err" &
mpid=$!
i=0
until pgrep -f "^sleep 20" >/dev/null || [ $i -ge 200 ]; do sleep 0.05; i=$((i + 1)); done
t1=$(now_ms)
dm "$src" migrate-cancel vm1c >"$tmp/cancel.out" 2>&1
crc=$?
wait "$mpid"
mrc=$?
took_ms=$(($(now_ms) - t1))
if [ "$mrc" -ne 0 ] && [ "$took_ms" -lt 5000 ]; then
    ok "migrate-cancel ended the migration in ${took_ms} ms (migrate exit $mrc, cancel exit $crc)"
else
    fail "migrate-cancel: migrate exit $mrc after ${took_ms} ms: $(cat "$tmp/err") / $(cat "$tmp/cancel.out")"
fi
expect_status "$src" vm1c running "the source runs vm1c again"
expect_clean "$dst" "vm1c: no destination left" 3000
stop_clean "$src" vm1c "vm1c: the source stops cleanly"
took "scenario 1c"

# ---- 1d: the destination's keeper is SIGKILLed before Finish ----
# Keeper death is never read as DM death: the keeper is the init of the
# DM's PID namespace, so the destination QEMU dies with it (no orphan with
# a copy of the guest); the source keeps the guest.
step "destination keeper killed before Finish"
start_running "$src" vm1d || fail "starting vm1d"
dm "$src" migrate vm1d --to "$receiver" --pause-before-switchover \
    --switchover-hook "pgrep -f '^[^ ]*libdm-keeper --name=vm1d --store=$dst' >'$tmp/k1d'; \
        pgrep -P \$(cat '$tmp/k1d') >'$tmp/q1d'; kill -9 \$(cat '$tmp/k1d'); sleep 0.3" \
    >"$tmp/out" 2>"$tmp/err"
mrc=$?
kq=$(cat "$tmp/q1d" 2>/dev/null)
if [ -n "$kq" ] && wait_pid_gone "$kq" 2000; then
    ok "the destination QEMU ($kq) died with its keeper"
else
    fail "destination QEMU '$kq' survived its keeper: $(ps -o pid,ppid,args -p "${kq:-0}" 2>/dev/null)"
    [ -n "$kq" ] && kill -9 "$kq" 2>/dev/null
fi
if [ "$mrc" -ne 0 ]; then ok "the migration failed (exit $mrc)"; else fail "migration succeeded without a destination"; fi
expect_status "$src" vm1d running "the source keeps and runs vm1d"
kill_store "$dst"
expect_clean "$dst" "vm1d: nothing of the destination left" 3000
stop_clean "$src" vm1d "vm1d: the source stops cleanly"
took "scenario 1d"

# ---- 2: the hook fails: cancel at pre-switchover ----
step "cancel at pre-switchover"
start_running "$src" vm2 || fail "starting vm2"
dm "$src" migrate vm2 --to "$receiver" --pause-before-switchover \
    --switchover-hook 'exit 1' >"$tmp/out" 2>"$tmp/err"
expect_rc $? 1 "a failing hook fails the migration with exit 1" "$tmp/err"
expect_in "$tmp/err" "dmctl: vm2: migration failed in perform: the switchover hook exited with status 1" \
    "the message names the perform phase and the hook"
expect_status "$src" vm2 running "the source runs again"
expect_clean "$dst" "the destination has no record and no process" 2000
stop_clean "$src" vm2 "the source stops cleanly"
took "scenario 2"

# ---- 3: the receiver is SIGKILLed during perform (at the hook) ----
step "receiver killed during perform"
start_running "$src" vm3 || fail "starting vm3"
dm "$src" migrate vm3 --to "echo \$\$ >'$tmp/recv.pid'; exec $receiver" \
    --pause-before-switchover --switchover-hook "kill -9 \$(cat '$tmp/recv.pid')" \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 1 "a dead receiver fails the migration" "$tmp/err"
expect_in "$tmp/err" "migration failed in perform: the control channel closed" \
    "the message names perform and the closed channel"
expect_status "$src" vm3 running "the source keeps running"
expect_clean "$dst" "the destination went with its receiver (autokill)" 2000
stop_clean "$src" vm3 "the source stops cleanly"
took "scenario 3"

# ---- 4: the receiver's controller SIGKILLed after "prepared" ----
step "receiver SIGKILLed after prepared (autokill)"
mkfifo "$tmp/in" || exit 99
"$DMCTL" --store "$dst" --timeout 20 migrate-receive <"$tmp/in" >"$tmp/recv.out" \
    2>"$tmp/recv.err" &
rpid=$!
exec 3<>"$tmp/in"
printf '%s\n' '{"phase":"prepare","name":"vm4","config":{"profile":"plain","machine":"pc","memory":64,"domid":0},"timeout_ms":20000}' >&3
end=$(($(now_ms) + 20000))
until grep -q '"phase":"prepared"' "$tmp/recv.out" 2>/dev/null || [ "$(now_ms)" -ge "$end" ]; do
    sleep 0.05
done
expect_in "$tmp/recv.out" '"phase":"prepared","uri":"unix:' "migrate-receive answers prepared"
if [ "$(grep -vc '^{"phase":' "$tmp/recv.out")" = 0 ]; then
    ok "migrate-receive writes protocol lines only on stdout"
else
    fail "migrate-receive wrote something else on stdout"
fi
# (Its monitor is held by migrate-receive: one client per socket.)
qpid=$(dm "$dst" --json list --no-query | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
    ok "the destination vm4 is recorded and alive (pid $qpid)"
else
    fail "no live destination recorded for vm4"
fi
t1=$(now_ms)
kill -9 "$rpid"
reap_receiver
exec 3>&-
while [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null && [ $(($(now_ms) - t1)) -lt 3000 ]; do
    sleep 0.02
done
gone=$(($(now_ms) - t1))
if [ -n "$qpid" ] && ! kill -0 "$qpid" 2>/dev/null && [ "$gone" -lt 2000 ]; then
    ok "the destination QEMU ($qpid) died with its controller in $gone ms"
else
    fail "the destination QEMU '$qpid' still alive after $gone ms"
fi
expect_clean "$dst" "no record and no process left in the destination store" 2000
took "scenario 4"

# ---- 5: tcp, --json progress, --keep-paused ----
step "tcp with --json and --keep-paused"
start_running "$src" vm5 || fail "starting vm5"
dm "$src" --json migrate vm5 --to "$receiver --listen tcp:127.0.0.1" --keep-paused \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "migrate vm5 over tcp succeeds" "$tmp/err"
expect_in "$tmp/out" '"event":"progress","name":"vm5"' "--json prints progress objects"
expect_in "$tmp/out" '"event":"migrated","name":"vm5","runstate":"paused"' \
    "--json prints the result; the destination stayed paused"
expect_in "$tmp/err" "listening on tcp:127.0.0.1:" "the receiver listened on tcp"
expect_status "$dst" vm5 paused "the destination is paused (--keep-paused)"
expect_clean "$src" "the source store is empty" 3000
stop_clean "$dst" vm5 "the destination stops cleanly"
took "scenario 5"

# ---- 6: the controlling dmctl migrate SIGKILLed during perform ----
# The hook runs as dmctl migrate's child: killing its parent leaves the
# source paused at pre-switchover and the receiver without a controller.
step "dmctl migrate itself killed during perform"
start_running "$src" vm6 || fail "starting vm6"
dm "$src" migrate vm6 --to "$receiver" --pause-before-switchover \
    --switchover-hook 'kill -9 $PPID' >"$tmp/out" 2>"$tmp/err"
expect_rc $? 137 "dmctl migrate was SIGKILLed" "$tmp/err"
expect_clean "$dst" "the destination went with its controller" 2000
expect_status "$src" vm6 finish-migrate "the source waits at pre-switchover, paused"
dm "$src" migrate-cancel vm6 >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "migrate-cancel recovers the source" "$tmp/err"
expect_status "$src" vm6 running "the source runs again"
stop_clean "$src" vm6 "the source stops cleanly"
took "scenario 6"

finish
