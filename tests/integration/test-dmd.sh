#!/bin/sh
# examples/dmd (sd-event + libdm's sd-event adapter) driven over its unix
# socket by socat against a real QEMU: two DMs started, listed, resumed and
# stopped with pipelined commands; errors for a duplicate and an unknown
# name; the QEMU processes are gone after stop; SIGTERM ends dmd cleanly.
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
"$dmd" --socket "$sock" --store "$tmp/store" --qemu "$(command -v "$qemu")" 2>"$tmp/dmd.log" &
dpid=$!
trap 'kill $dpid 2>/dev/null || true; rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; echo "--- dmd log"; cat "$tmp/dmd.log"; exit 1; }
# Sends the lines, half-closes, prints every reply (dmd closes once all
# operations asked for have answered).
ask() { printf '%s\n' "$@" | timeout 40 socat -t 40 - "UNIX-CONNECT:$sock"; }
expect() { printf '%s\n' "$1" | grep -qE "$2" || fail "expected /$2/ in: $1"; }

i=0
while [ ! -S "$sock" ]; do
    i=$((i + 1)); [ $i -le 100 ] || fail "dmd did not listen"; sleep 0.05
done

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

# A DM left running is stopped at SIGTERM.
out=$(ask "start c")
expect "$out" '^ok start c pid [0-9]+$'
cpid=${out##* }
kill -TERM $dpid
wait $dpid || fail "dmd exited $?"
! kill -0 "$cpid" 2>/dev/null || fail "DM c still alive after dmd exited"
grep -q 'dmd: exiting' "$tmp/dmd.log" || fail "no clean exit"
echo "dmd: start/list/resume/stop over the socket, errors, shutdown: ok"
