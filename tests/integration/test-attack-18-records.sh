#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 18, item 8, and issue 19: a record never hides a DM. Through dmctl
# and a real QEMU (-machine none):
#   8  a live DM whose record is unreadable (garbage, truncated to nothing,
#      replaced by a directory) is in `list` (text and --json) as
#      "unreadable", with its keeper's pid as the kernel proves it (the
#      keeper's lock on owner.lock, not the pid written in that file), and
#      list exits 1; `stop` without --force refuses and leaves it running;
#      `stop --force` ends it through its keeper and removes everything;
#      once its keeper is dead, a plain `stop` removes it
#   2  a run directory without a record (a starter killed between its claim
#      and its first record) is in `list` as "no-record", with whether its
#      claim is held; `stop` leaves it while held, removes it once free
# Each failed on the tree before its fix (see the commit).
# Needs $DMCTL and qemu-system-x86_64.

. "$(dirname "$0")/dmctl-migrate-lib.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-attack-18-rec.XXXXXX") || exit 99
store="$tmp/store"
mkdir -m 0700 "$store" || exit 99
holder=
cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null
    kill_store "$store"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
QEMU_PATH=$(command -v "$QEMU_BIN")
sfx=$$

jline() { # NAME: its line of `list --json`
    dm "$store" --json list --no-query 2>/dev/null | tr '}' '\n' | grep "\"name\":\"$1\""
}
keeper_of() { # NAME: the keeper's pid (from the store's processes, not libdm)
    pgrep -f -- "libdm-keeper --name=$1 --store=$store " | head -1
}
wait_gone() { i=0; while [ -e "/proc/$1" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done; }
start() { dm "$store" start "$1" --qemu "$QEMU_PATH" --machine none >/dev/null 2>"$tmp/err"; }

# ---- 8: an unreadable record of a live DM ----
spoil() { # HOW NAME
    case $1 in
    garbage) printf 'not a record\n' >"$store/$2/record" ;;
    empty) : >"$store/$2/record" ;;
    dir) rm -f "$store/$2/record" && mkdir "$store/$2/record" ;;
    esac
}
for how in garbage empty dir; do
    nm=u$how$sfx
    if ! start "$nm"; then
        fail "8 ($how): start: $(cat "$tmp/err")"
        continue
    fi
    kp=$(keeper_of "$nm")
    qp=$(pgrep -P "$kp" | head -1)
    spoil "$how" "$nm"
    # The pid written in owner.lock is the holder's word: a lie there changes nothing.
    printf '1 liar\n' >"$store/$nm/owner.lock"
    out=$(dm "$store" list --no-query 2>"$tmp/lerr")
    rc=$?
    check "8 ($how): list exits non-zero (rc $rc)" test "$rc" -ne 0
    check "8 ($how): list shows $nm as unreadable ($out)" \
        sh -c "printf '%s\n' \"\$1\" | grep \"^$nm \" | grep -q unreadable" _ "$out"
    check "8 ($how): list says its keeper's pid $kp ($(cat "$tmp/lerr"))" \
        grep -q "keeper (pid $kp)" "$tmp/lerr"
    j=$(jline "$nm")
    check "8 ($how): --json: record unreadable ($j)" test "$(field "$j" record)" = unreadable
    check "8 ($how): --json: claimed" test "$(field "$j" claimed)" = true
    check "8 ($how): --json: keeper_pid is the keeper ($kp)" test "$(field "$j" keeper_pid)" = "$kp"
    out=$(dm "$store" stop "$nm" 2>&1)
    rc=$?
    check "8 ($how): stop without --force refuses ($out)" test "$rc" -ne 0
    check "8 ($how): ... and QEMU still runs" test -e "/proc/$qp"
    out=$(dm "$store" stop --force "$nm" 2>&1)
    rc=$?
    check "8 ($how): stop --force ($out)" test "$rc" -eq 0
    wait_gone "$qp"
    wait_gone "$kp"
    check "8 ($how): QEMU $qp is gone" test ! -e "/proc/$qp"
    check "8 ($how): the keeper $kp is gone" test ! -e "/proc/$kp"
    check "8 ($how): the run directory is gone ($(ls "$store/$nm" 2>&1 | tr '\n' ' '))" \
        test ! -e "$store/$nm"
    check "8 ($how): list is empty and exits 0" \
        sh -c "[ -z \"\$(\"\$DMCTL\" --store '$store' --json list --no-query)\" ]"
done

# A dead DM (its keeper killed) with an unreadable record: a plain stop removes it.
nm=udead$sfx
if start "$nm"; then
    kp=$(keeper_of "$nm")
    qp=$(pgrep -P "$kp" | head -1)
    spoil garbage "$nm"
    kill -9 "$kp"
    wait_gone "$kp"
    wait_gone "$qp"
    j=$(jline "$nm")
    check "8 (dead): listed, unreadable, not claimed ($j)" \
        test "$(field "$j" record)" = unreadable -a "$(field "$j" claimed)" = false
    out=$(dm "$store" stop "$nm" 2>&1)
    check "8 (dead): stop removes it ($out)" test $? -eq 0 -a ! -e "$store/$nm"
else
    fail "8 (dead): start: $(cat "$tmp/err")"
fi

# ---- 2: a run directory without a record ----
nm=norec$sfx
mkdir -m 0700 "$store/$nm" && : >"$store/$nm/owner.lock" && chmod 0600 "$store/$nm/owner.lock"
# A starter between its claim and its first record: it holds owner.lock.
(exec 9<>"$store/$nm/owner.lock" && flock -x 9 && exec sleep 60) &
holder=$!
i=0
while [ "$(field "$(jline "$nm")" claimed)" != true ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
j=$(jline "$nm")
check "2: listed as missing its record ($j)" test "$(field "$j" record)" = missing
check "2: its claim is held" test "$(field "$j" claimed)" = true
check "2: text list says no-record and exits 0" \
    sh -c "\"\$DMCTL\" --store '$store' list --no-query 2>/dev/null | grep \"^$nm \" | grep -q no-record"
out=$(dm "$store" stop "$nm" 2>&1)
check "2: stop while the claim is held leaves it ($out)" test -d "$store/$nm"
kill "$holder"
wait "$holder" 2>/dev/null
holder=
j=$(jline "$nm")
check "2: once released, listed as not claimed ($j)" test "$(field "$j" claimed)" = false
out=$(dm "$store" stop "$nm" 2>&1)
check "2: stop removes it ($out)" test $? -eq 0 -a ! -e "$store/$nm"

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
