#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 18, "the second attack": the checks of engineer attack2's items
# (6, 11, 12, 14; items 9 and 10 are in test-attack-18-cli.sh), through
# dmctl and a real QEMU (TCG). Each check failed on the tree before its
# fix (see the commit messages).
#   6  a FIFO (or a char device, a socket) as a disk is refused at once,
#      exit 2 with a clear message, with and without --restrict (it used to
#      block a start step forever under --restrict)
#  12  two concurrent stops of one DM (its QEMU held with SIGSTOP until
#      both began): both exit 0 (the loser says it was already gone),
#      nothing left; and deterministically: a stop of a dead DM while
#      another process (a concurrent stop cleaning up) holds owner.lock
#      waits for it and exits 0 instead of "Device or resource busy"
#  11  stop of a DM whose keeper is SIGSTOPped: the keeper is SIGKILLed
#      through its pidfd and everything cleaned (exit 0, no record, no
#      directory, not listed), never "stopped" with the files left
#  14  status --json with three NICs (bridged, unbridged, bridged): each
#      NIC's bridge is its own ("brx", none, "brx"), never "brx;1" or "-;2"
#      (root and ip: a bridge in a private network namespace; else skipped)
# Needs $DMCTL and qemu-system-x86_64; root and ip for check 14.

. "$(dirname "$0")/dmctl-migrate-lib.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-attack-18-dm.XXXXXX") || exit 99
store="$tmp/store"
mkdir -m 0700 "$store" || exit 99
chmod 0755 "$tmp"
cleanup() {
    kill_store "$store"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
sfx=$$

# listed NAME: dmctl list --json's line for NAME, if any.
listed() {
    dm "$store" --json list --no-query 2>/dev/null | grep "\"name\":\"$1\""
}

# ---- 6: a FIFO as a disk ----
echo "# 6: a FIFO, a char device or a socket as a disk is refused at once"
mkfifo "$tmp/fifo" || exit 99
perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => $ARGV[0], Listen => 1) or die' \
    "$tmp/sock" 2>/dev/null || python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$tmp/sock"
runas=$((60000 + sfx % 5000))
for img in fifo fifo-ro chr sock; do
    mode=rw vdev=hda
    case $img in
    fifo) path=$tmp/fifo ;;
    fifo-ro) path=$tmp/fifo mode=ro vdev=sda ;;
    chr) path=/dev/null ;;
    sock) path=$tmp/sock ;;
    esac
    for how in plain restrict; do
        name="a18-d-$img-$how-$sfx"
        extra=
        [ $how = restrict ] && extra="--restrict --runas $runas:$runas"
        t0=$(now_ms)
        # shellcheck disable=SC2086
        timeout -k 2 15 "$DMCTL" --store "$store" --timeout 5 start "$name" --machine pc \
            --memory 64 --disk "$path,raw,$vdev,$mode" $extra >"$tmp/out6" 2>"$tmp/err6"
        rc=$?
        el=$(($(now_ms) - t0))
        if [ "$rc" != 2 ]; then
            fail "6: $img as a disk ($how): exit $rc in $el ms, expected 2"
            sed 's/^/    /' "$tmp/err6"
            dm "$store" stop --force "$name" >/dev/null 2>&1
        elif ! grep -q "not a regular file or a block device" "$tmp/err6"; then
            fail "6: $img as a disk ($how): unclear message: $(cat "$tmp/err6")"
        elif [ -d "$store/$name" ]; then
            fail "6: $img as a disk ($how): $store/$name left"
        else
            ok "6: $img as a disk ($how): exit 2 in $el ms, nothing left"
        fi
    done
done

# ---- 12: two concurrent stops ----
echo "# 12: two concurrent stops"
bad12=0
for i in 1 2 3 4 5 6 7 8; do
    name="a18-cs$i-$sfx"
    if ! dm "$store" start "$name" --machine none >/dev/null 2>"$tmp/err12"; then
        fail "12: start $name: $(cat "$tmp/err12")"
        bad12=1
        continue
    fi
    qpid=$(dm "$store" --json list --no-query | grep "\"$name\"" |
        sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    [ -n "$qpid" ] && kill -STOP "$qpid"
    dm "$store" stop "$name" >"$tmp/o12a" 2>"$tmp/e12a" &
    p1=$!
    dm "$store" stop "$name" >"$tmp/o12b" 2>"$tmp/e12b" &
    p2=$!
    sleep 1
    [ -n "$qpid" ] && kill -CONT "$qpid"
    wait $p1
    r1=$?
    wait $p2
    r2=$?
    for x in "a $r1" "b $r2"; do
        set -- $x
        [ "$2" = 0 ] && continue
        fail "12: round $i: a stop exited $2: $(cat "$tmp/e12$1")"
        bad12=1
    done
    if [ "$r1" != 0 ] && [ "$r2" != 0 ]; then
        fail "12: round $i: neither stop succeeded"
        bad12=1
    fi
    if [ -e "$store/$name" ] || listed12=$(dm "$store" --json list --no-query | grep "\"$name\""); then
        fail "12: round $i: $name left: $listed12"
        bad12=1
    fi
done
[ $bad12 = 0 ] && ok "12: 8 rounds of two concurrent stops: both exit 0, nothing left"
name="a18-cl-$sfx"
if dm "$store" start "$name" --machine none >/dev/null 2>"$tmp/err12"; then
    qpid=$(dm "$store" --json list --no-query | grep "\"$name\"" |
        sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    kill -9 "$qpid"
    wait_pid_gone "$qpid" 5000
    sleep 0.5
    # the other stop: holds the name 1.5 s, as while it removes the files
    flock "$store/$name/owner.lock" sleep 1.5 &
    fl=$!
    sleep 0.3
    dm "$store" stop "$name" >"$tmp/o12" 2>"$tmp/e12"
    rc=$?
    wait $fl
    if [ "$rc" != 0 ]; then
        fail "12: stop while another holds the name: exit $rc: $(cat "$tmp/e12")"
    elif [ -e "$store/$name" ]; then
        fail "12: stop while another holds the name: $store/$name left"
    else
        ok "12: stop while another holds the name: waits, exit 0, nothing left"
    fi
else
    fail "12: start $name: $(cat "$tmp/err12")"
fi

# ---- 11: stop with a stopped keeper ----
echo "# 11: stop with a SIGSTOPped keeper"
name="a18-ks-$sfx"
if dm "$store" start "$name" --machine none >/dev/null 2>"$tmp/err11"; then
    qpid=$(dm "$store" --json list --no-query | grep "\"$name\"" |
        sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    kpid=$(ps -o ppid= -p "$qpid" | tr -d ' ')
    kcomm=$(cat "/proc/$kpid/comm" 2>/dev/null)
    if [ "$kcomm" != libdm-keeper ]; then
        fail "11: the parent of QEMU $qpid is '$kcomm', not libdm-keeper"
    else
        kill -STOP "$kpid"
        dm "$store" stop "$name" >"$tmp/o11" 2>"$tmp/e11"
        rc=$?
        kill -CONT "$kpid" 2>/dev/null
        if [ "$rc" = 0 ] && { [ -e "$store/$name" ] || listed "$name" >/dev/null; }; then
            fail "11: stop said '$(cat "$tmp/o11")', exit 0, but $name is left: $(ls "$store/$name" 2>&1 | tr '\n' ' ')"
        elif [ "$rc" != 0 ]; then
            fail "11: stop exited $rc: $(cat "$tmp/e11")"
        elif kill -0 "$kpid" 2>/dev/null && [ "$(ps -o stat= -p "$kpid" | cut -c1)" != Z ]; then
            fail "11: the keeper $kpid still runs"
        else
            ok "11: the stopped keeper killed, everything cleaned, exit 0"
        fi
    fi
else
    fail "11: start $name: $(cat "$tmp/err11")"
fi

# ---- 14: --json NIC bridges ----
echo "# 14: status --json with several NICs"
ns="a18n-$sfx"
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && ip netns add "$ns" 2>/dev/null; then
    ip netns exec "$ns" ip link add brx type bridge &&
        ip netns exec "$ns" ip link set brx up
    name="a18-nic-$sfx"
    if ip netns exec "$ns" "$DMCTL" --store "$store" --timeout 20 start "$name" --machine pc \
        --memory 64 --nic bridge=brx,model=e1000 --nic model=e1000 \
        --nic bridge=brx,model=e1000 >/dev/null 2>"$tmp/err14"; then
        js=$(ip netns exec "$ns" "$DMCTL" --store "$store" --json status "$name" 2>&1)
        b=$(printf '%s\n' "$js" | sed 's/{"devid"/\n{"devid"/g' | grep '^{"devid"' |
            sed -n 's/.*"devid":\([0-9]*\),.*"ifname":"[^"]*"\(,"bridge":"\([^"]*\)"\)\{0,1\}}.*/\1=\3/p' |
            tr '\n' ' ')
        if [ "$b" = "0=brx 1= 2=brx " ]; then
            ok "14: status --json: the bridges of 3 NICs are brx, none, brx"
        else
            fail "14: status --json NIC bridges '$b': $js"
        fi
        ip netns exec "$ns" "$DMCTL" --store "$store" stop "$name" >/dev/null 2>&1
    else
        fail "14: start with 3 NICs: $(cat "$tmp/err14")"
    fi
    ip netns del "$ns"
else
    echo "# 14 skipped: needs root and ip netns"
fi

finish
