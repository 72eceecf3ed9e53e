#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 22, the smaller migration defects, one scenario each (each failed
# before its fix). QEMU's own vm_state_notify trace checks the history.
#   2   a restricted source gives a restricted destination (checked in
#       /proc: uid, seccomp, no_new_privs, root), over unix and over tcp:
#       libdm connects and accepts, QEMU gets the stream with getfd and
#       migrates over "fd:" (issue 22, 3; its chroot cannot reach a unix
#       socket: before, over unix was refused)
#   2n  the same over tcp given a host NAME (an /etc/hosts entry, not
#       "localhost"), for --listen and --uri-host: dmctl resolves it before
#       the library gets it (libdm never resolves on its loop; QEMU cannot
#       in its chroot). Before, the receiver refused the name and, with a
#       numeric --listen, the source's QEMU was left to resolve --uri-host
#       in its chroot and failed.
#   7   a second --recover --to after the source was resumed does not
#       resume the paused destination (a second copy)
#   8   --recover run on the wrong host is refused, nothing changes
#   9   a refused migrate-receive leaves the holder's listening socket
#   10  the switchover hook's process group dies with a SIGKILLed dmctl
#   11  an interruption (migrate-cancel) after completion changes nothing
#   13  progress reports QEMU's fractional ram.mbps
#   14  a destination record that could not be written is not "migrated" 0

. "$(dirname "$0")/dmctl-migrate-lib.sh"

migrate_setup test-dmctl-migdef

# ---- 2, 2n: a restricted source ----
ruid=$((43000 + $$ % 1000))
start_r() {
    dm "$src" start vm2r --machine pc --memory 64 --restrict --runas "$ruid:$ruid" \
        --qemu "$tmp/qemu-src" >/dev/null && dm "$src" resume vm2r >/dev/null
}
confined() {   # $1: what; the destination QEMU as the source was
    expect_confined "2: $1" "$(cat "$tmp/dst.pid" 2>/dev/null)" "$ruid" "$dst"
}

if only 2; then
if [ "$(id -u)" != 0 ]; then
    echo "# 2: skipped (dm_restrict needs root)"
else
echo "# 2: a restricted source migrates to a restricted destination"
start_r || fail "starting vm2r restricted"
dm "$src" migrate vm2r --to "$receiver" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "2: over unix: migrated" "$tmp/err"
expect_obs "$tmp" dst running "2: over unix: the destination runs"
confined "over unix"
kill_store "$dst"
kill_store "$src"
expect_clean "$src" "2: no process or record left of the source" 3000
expect_clean "$dst" "2: no process or record left of the destination" 3000
start_r || fail "starting vm2r restricted again"
dm "$src" migrate vm2r --to "'$DMCTL' --store '$dst' --timeout 10 migrate-receive \
    --listen tcp:127.0.0.1 --qemu '$tmp/qemu-dst'" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "2: over tcp: migrated" "$tmp/err"
expect_obs "$tmp" dst running "2: over tcp: the destination runs"
confined "over tcp"
finish_scenario 2
fi
fi

# ---- 2n: a restricted source given a host name ----
if only 2n; then
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null 2>&1; then
    echo "# 2n: skipped (needs root and unshare: a private /etc/hosts)"
else
echo "# 2n: a restricted source over tcp given a host name"
# Both dmctl's see /etc/hosts with "migpeer-22" for 127.0.0.1, in their own
# mount namespace (the host's file is untouched).
printf '127.0.0.1 localhost\n127.0.0.1 migpeer-22\n' >"$tmp/hosts"
printf '#!/bin/sh\nmount --bind "%s" /etc/hosts || exit 99\nexec "$@"\n' "$tmp/hosts" \
    >"$tmp/withhosts"
chmod +x "$tmp/withhosts"
start_r || fail "2n: starting vm2r restricted"
NSEXEC="unshare -m --propagation private $tmp/withhosts"
dm "$src" migrate vm2r --uri-host migpeer-22 --to "unshare -m --propagation private \
    '$tmp/withhosts' '$DMCTL' --store '$dst' --timeout 10 migrate-receive \
    --listen tcp:migpeer-22 --qemu '$tmp/qemu-dst'" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "2n: over tcp to a host name: migrated" "$tmp/err"
NSEXEC=
expect_obs "$tmp" dst running "2n: the destination runs"
confined "host name"
finish_scenario 2n
fi
fi

# ---- 7: a second recovery after --destination-gone ----
if only 7; then
fifo_scenario vm7 "7: --recover --to after --destination-gone resumed the source"
strand_at_finish vm7 7
dm "$src" migrate vm7 --recover --destination-gone >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "7: --destination-gone resumes the source" "$tmp/err"
expect_obs "$tmp" src running "7: the source runs"
dm "$src" migrate vm7 --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_obs "$tmp" dst paused "7: the second recovery left the destination paused (rc $rc)"
expect_obs "$tmp" src running "7: the source still runs"
expect_one_history "$tmp" "7: one history"
if [ "$(runs "$tmp" dst)" = 0 ]; then ok "7: the destination never ran"
else fail "7: the destination ran"; fi
finish_scenario 7
fi

# ---- 8: --recover on the wrong host ----
if only 8; then
fifo_scenario vm8 "8: migrate --recover run on the destination's host"
strand_at_finish vm8 8
expect_obs "$tmp" dst paused "8: the destination holds the guest, paused"
expect_obs "$tmp" src postmigrate "8: the source is paused in postmigrate"
dm "$dst" migrate vm8 --recover --to "$src_receiver" >"$tmp/out" 2>"$tmp/err"
expect_refused $? "8: recovery from the wrong host"
expect_obs "$tmp" dst paused "8: the destination still holds the guest"
expect_obs "$tmp" src postmigrate "8: the source is still paused"
dm "$src" migrate vm8 --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "8: recovery from the source's host succeeds" "$tmp/err"
expect_obs "$tmp" src gone "8: the source was stopped"
expect_one_history "$tmp" "8: one history"
finish_scenario 8
fi

# ---- 8b: --recover from the destination's host, by its record ----
# The destination's host holds the migration's destination (its record
# says so since "prepared"): a recovery there is refused before it looks,
# even with --destination-gone (before: the paused destination was taken
# for a stranded source and resumed, exit 0).
if only 8b; then
fifo_scenario vm8b "8b: migrate --recover --destination-gone run on the destination's host"
strand_at_finish vm8b 8b
expect_obs "$tmp" dst paused "8b: the destination holds the guest, paused"
dm "$dst" migrate vm8b --recover --destination-gone >"$tmp/out" 2>"$tmp/err"
expect_refused $? "8b: recovery on the destination's host"
expect_in "$tmp/err" "holds the destination" "8b: it says this host holds the destination"
expect_obs "$tmp" dst paused "8b: the destination is untouched"
expect_obs "$tmp" src postmigrate "8b: the source is untouched"
dm "$src" migrate vm8b --recover --to "$receiver" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "8b: recovery from the source's host succeeds" "$tmp/err"
expect_obs "$tmp" src gone "8b: the source was stopped"
expect_one_history "$tmp" "8b: one history"
finish_scenario 8b
fi

# ---- 9: a refused migrate-receive ----
if only 9; then
echo "# 9: a second migrate-receive for a name being received"
rm -f "$tmp/r.in" "$tmp/r.out"
mkfifo "$tmp/r.in" "$tmp/r.out"
"$DMCTL" --store "$dst" --timeout 20 migrate-receive --qemu "$tmp/qemu-dst" \
    <"$tmp/r.in" >"$tmp/r.out" 2>"$tmp/r.err" &
rpid=$!
exec 4>"$tmp/r.in"
exec 3<"$tmp/r.out"
prep='{"phase":"prepare","name":"vm9","config":{"profile":"plain","machine":"pc","memory":64,"domid":0},"timeout_ms":20000}'
echo "$prep" >&4
IFS= read -r reply <&3
uri=$(echo "$reply" | sed -n 's/.*"uri":"unix:\([^"]*\)".*/\1/p')
if [ -n "$uri" ] && [ -S "$uri" ]; then ok "9: the first receiver listens on $uri"
else fail "9: no listening socket from the first receiver ($reply)"; fi
echo "$prep" | timeout 30 "$DMCTL" --store "$dst" --timeout 10 migrate-receive \
    --qemu "$tmp/qemu-dst" >"$tmp/out2" 2>"$tmp/err2"
rc=$?
if [ "$rc" != 0 ]; then ok "9: the second receiver is refused (exit $rc)"
else fail "9: the second receiver was accepted"; fi
if [ -n "$uri" ] && [ -S "$uri" ]; then ok "9: the holder's socket is still there"
else fail "9: the refused receiver removed the holder's socket $uri"; fi
exec 4>&- 3<&-
reap_receiver
finish_scenario 9
fi

# ---- 10: the hook's process group dies with dmctl ----
if only 10; then
echo "# 10: dmctl SIGKILLed while its switchover hook runs"
start_observed "$src" vm10 "$tmp" || fail "starting vm10"
rm -f "$tmp/hook10.child"
dm "$src" --timeout 20 migrate vm10 --to "$receiver" --pause-before-switchover \
    --switchover-hook "sleep 300 & echo \$! >'$tmp/hook10.child'; wait" \
    >"$tmp/out" 2>"$tmp/err" &
spid=$!
i=0
while ! [ -s "$tmp/hook10.child" ] && [ $i -lt 1500 ]; do sleep 0.01; i=$((i + 1)); done
child=$(cat "$tmp/hook10.child" 2>/dev/null)
# The dmctl under timeout(1): its only child that is dmctl.
sender=$(pgrep -P "$spid" -f "timeout" 2>/dev/null)
sender=$(pgrep -P "${sender:-$spid}" -x dmctl 2>/dev/null || pgrep -P "${sender:-$spid}" 2>/dev/null | head -1)
if [ -n "$child" ] && [ -n "$sender" ]; then
    kill -9 "$sender"
    if wait_pid_gone "$child" 3000; then ok "10: the hook's child died with dmctl"
    else fail "10: the hook's child ($child) outlived dmctl"; kill -9 "$child" 2>/dev/null; fi
else
    fail "10: no hook child ('$child') or no dmctl ('$sender')"
fi
wait "$spid" 2>/dev/null
finish_scenario 10
fi

# ---- 11: an interruption after completion ----
if only 11; then
fifo_scenario vm11 "11: SIGINT (as migrate-cancel sends) reaching a completed migration"
dm "$src" migrate vm11 --to "$(relay_cmd "$tmp" --int-sender-at 2)" >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "11: the migration succeeds: exit 0" "$tmp/err"
expect_in "$tmp/out" "migrated" "11: it says migrated"
expect_in "$tmp/err" "came too late" "11: it says the interruption came too late"
reap_receiver
expect_obs "$tmp" dst running "11: the destination runs"
expect_obs "$tmp" src gone "11: the source was stopped"
expect_one_history "$tmp" "11: one history"
finish_scenario 11
fi

# ---- 13: progress throughput ----
# QEMU's ram.mbps is fractional. The hook reads QEMU's own figure at
# pre-switchover (its second monitor); dmctl's progress at pre-switchover
# must then say the same, rounded (0 only if QEMU said below 0.5).
if only 13; then
echo "# 13: Mbit/s in the progress"
start_observed "$src" vm13 "$tmp" || fail "starting vm13"
dm "$src" --json migrate vm13 --to "$receiver" --pause-before-switchover \
    --switchover-hook "perl '$OBSERVE' cmd '$tmp/src-obs.sock' query-migrate >'$tmp/qm13'" \
    >"$tmp/out" 2>"$tmp/err"
expect_rc $? 0 "13: migrated" "$tmp/err"
qm=$(sed -n 's/.*"mbps": *\([0-9.eE+-]*\).*/\1/p' "$tmp/qm13" | head -1)
got=$(grep '"status":"pre-switchover"' "$tmp/out" | sed -n 's/.*"mbps":\([0-9]*\).*/\1/p' | head -1)
want=$(perl -e 'printf "%d", $ARGV[0] + 0.5' "${qm:-0}")
if [ -n "$qm" ] && [ "$got" = "$want" ]; then
    ok "13: the progress says $got Mbit/s as QEMU said $qm"
else
    fail "13: the progress says '$got' Mbit/s, QEMU said '$qm'"
    sed 's/^/    /' "$tmp/out" "$tmp/qm13"
fi
finish_scenario 13
fi

# ---- 14: a record that could not be written ----
if only 14; then
echo "# 14: the destination's record write fails after cont"
start_observed "$src" vm14 "$tmp" || fail "starting vm14"
dm "$src" --timeout 30 migrate vm14 --to "$receiver" --pause-before-switchover \
    --switchover-hook "$(stall_hook vm14)" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" != 0 ]; then ok "14: not a success (exit $rc)"
else fail "14: exit 0 although the destination's record is stale"; sed 's/^/    /' "$tmp/out" "$tmp/err"; fi
expect_in "$tmp/err" "record could not be updated" "14: the message names the record"
expect_obs "$tmp" dst running "14: the destination runs"
expect_obs "$tmp" src gone "14: the source was stopped"
finish_scenario 14
fi

finish
