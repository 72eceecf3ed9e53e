#!/bin/sh
# examples/dmd (sd-event + libdm's sd-event adapter) driven over its unix
# socket by socat against a real QEMU: two DMs started, listed, resumed and
# stopped with pipelined commands; dmd raises its soft RLIMIT_NOFILE to
# the hard limit; errors for a duplicate and an unknown
# name; the QEMU processes are gone after stop; a dmd restarted after a
# SIGKILL finds and controls the DMs it left; SIGTERM ends dmd cleanly.
set -eu
[ -n "${top_builddir:-}" ] || { echo "SKIP: run through make check"; exit 77; }
dmd="$top_builddir/examples/dmd"
[ -x "$dmd" ] || { echo "SKIP: examples/dmd not built (libsystemd missing)"; exit 77; }
command -v socat >/dev/null || { echo "SKIP: socat not installed"; exit 77; }
qemu=${LIBDM_TEST_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || { echo "SKIP: $qemu not found"; exit 77; }

tmp=$(mktemp -d)
sock="$tmp/dmd.sock"
mkdir "$tmp/store"
# Started with a low soft RLIMIT_NOFILE: dmd raises its own to the hard
# limit (a DM held costs it a few fds; libdm never changes limits).
hardn=$(ulimit -H -n)
(ulimit -S -n 256 2>/dev/null || true
 exec "$dmd" --socket "$sock" --store "$tmp/store" --qemu "$(command -v "$qemu")") 2>"$tmp/dmd.log" &
dpid=$!
rpids=
# A failed run leaves no DM behind (those the restart test left running).
trap 'kill $dpid 2>/dev/null || true; for p in $rpids; do kill -KILL $p 2>/dev/null || true; done
      rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; echo "--- dmd log"; cat "$tmp/dmd.log"; exit 1; }
# Sends the lines, half-closes, prints every reply (dmd closes once all
# operations asked for have answered).
ask() { printf '%s\n' "$@" | timeout 40 socat -t 40 - "UNIX-CONNECT:$sock"; }
expect() { printf '%s\n' "$1" | grep -qE "$2" || fail "expected /$2/ in: $1"; }

i=0
while [ ! -S "$sock" ]; do
    i=$((i + 1)); [ $i -le 100 ] || fail "dmd did not listen"; sleep 0.05
done

softn=$(awk '/^Max open files/ { print $4 }' "/proc/$dpid/limits")
[ "$softn" = "$hardn" ] ||
    fail "dmd's soft RLIMIT_NOFILE is $softn, not raised to the hard limit $hardn"

out=$(ask "start a" "start b")
expect "$out" '^ok start a pid [0-9]+$'
expect "$out" '^ok start b pid [0-9]+$'
pids=$(printf '%s\n' "$out" | sed -n 's/^ok start . pid //p')
for p in $pids; do kill -0 "$p" || fail "DM pid $p not running"; done

out=$(ask list)
expect "$out" '^a paused$'
expect "$out" '^b paused$'
expect "$out" '^ok list 2$'

out=$(ask "start a" "resume nosuch" "bogus")
expect "$out" '^error start a: already managed$'
expect "$out" '^error resume nosuch: not managed$'
expect "$out" '^error usage'

out=$(ask "resume a" "resume b" "list")
expect "$out" '^ok resume a$'
expect "$out" '^ok resume b$'
out=$(ask list)
expect "$out" '^a running$'
expect "$out" '^b running$'

out=$(ask "stop a" "stop b")
expect "$out" '^ok stop a$'
expect "$out" '^ok stop b$'
out=$(ask list)
expect "$out" '^ok list 0$'
for p in $pids; do ! kill -0 "$p" 2>/dev/null || fail "DM pid $p still alive after stop"; done
[ -z "$(ls "$tmp/store")" ] || fail "store not empty: $(ls "$tmp/store")"

# Restart (issue 19): dmd killed with DMs running; the new dmd finds them
# (list_async + attach_async, no blocking call) and controls them; the
# record of one that died meanwhile is forgotten.
out=$(ask "start d" "start e" "start f")
expect "$out" '^ok start d pid [0-9]+$'
expect "$out" '^ok start e pid [0-9]+$'
expect "$out" '^ok start f pid [0-9]+$'
rpids=$(printf '%s\n' "$out" | sed -n 's/^ok start [de] pid //p')
fpid=$(printf '%s\n' "$out" | sed -n 's/^ok start f pid //p')
kill -KILL $dpid
wait $dpid 2>/dev/null || true
for p in $rpids $fpid; do kill -0 "$p" || fail "DM pid $p died with dmd"; done
kill -KILL "$fpid"
i=0
while kill -0 "$fpid" 2>/dev/null; do
    i=$((i + 1)); [ $i -le 200 ] || fail "DM f did not die"; sleep 0.05
done
sleep 0.5 # its keeper records the exit, then ends: the name is free to forget
rm -f "$sock"
"$dmd" --socket "$sock" --store "$tmp/store" --qemu "$(command -v "$qemu")" 2>>"$tmp/dmd.log" &
dpid=$!
i=0
until grep -q 'rediscovered e:' "$tmp/dmd.log" && grep -q 'rediscovered d:' "$tmp/dmd.log"; do
    i=$((i + 1)); [ $i -le 400 ] || { fail "restarted dmd did not find d and e"; }
    sleep 0.05
done
grep -q 'dmd: rediscovery: 2 running' "$tmp/dmd.log" || { fail "rediscovery count"; }
grep -q 'rediscovered d: paused' "$tmp/dmd.log" || { fail "d not paused"; }
i=0
until grep -q 'dmd: forgot f: ok' "$tmp/dmd.log"; do
    i=$((i + 1)); [ $i -le 200 ] || { fail "dead f not forgotten"; }
    sleep 0.05
done
! ls "$tmp/store" | grep -q '^f' || fail "f's record left: $(ls "$tmp/store")"
out=$(ask list)
expect "$out" '^d paused$'
expect "$out" '^e paused$'
expect "$out" '^ok list 2$'
out=$(ask "resume d" "stop e")
expect "$out" '^ok resume d$'
expect "$out" '^ok stop e$'
out=$(ask list "stop d")
expect "$out" '^d running$'
expect "$out" '^ok stop d$'
for p in $rpids; do ! kill -0 "$p" 2>/dev/null || fail "DM pid $p alive after stop"; done
rpids= # gone: never signal a pid that may be reused

# A DM left running is stopped at SIGTERM.
out=$(ask "start c")
expect "$out" '^ok start c pid [0-9]+$'
cpid=${out##* }
kill -TERM $dpid
wait $dpid || fail "dmd exited $?"
! kill -0 "$cpid" 2>/dev/null || fail "DM c still alive after dmd exited"
grep -q 'dmd: exiting' "$tmp/dmd.log" || fail "no clean exit"
echo "dmd: start/list/resume/stop over the socket, errors, restart rediscovery, shutdown: ok"
