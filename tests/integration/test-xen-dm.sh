#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl and the REAL Xen device model (qemu-system-xen, QEMU 7.2) under a
# FAKE hypervisor (tests/harness/xenhyp.c; no Xen runs on these machines),
# with a private real xenstored (tests/harness/xen-env.sh):
#  - start --profile xen is ready by QMP (prelaunch); QEMU's own "running"
#    in /local/domain/0/device-model/<d>/state appears only at resume, and
#    that key is never used for readiness: a stale "running" there does not
#    make a start report anything but QMP's prelaunch, and a DM that writes
#    "running" but never answers QMP is not ready;
#  - stop leaves no process (nor zombie) behind;
#  - after QEMU is killed (-9), list and status report it dead and the same
#    NAME starts again;
#  - the real xl (with the fake) lists the domain; `xl qemu-monitor-command`
#    only once libdm's QMP socket for the xen profile is libxl's path.
# Skips (77) only if the Xen device model or xenstored is not installed.
# Runs as root (QEMU binds /var/run/xen/qmp-libxenstat-<d>).

[ -n "${top_srcdir:-}" ] || { echo "ERROR: run from make check (\$top_srcdir)"; exit 99; }
. "$top_srcdir/tests/harness/xen-test.sh"
XL=${XL:-/usr/lib/xen-4.17/bin/xl}
# (It makes /var/run/xen: QEMU's second monitor, libxenstat's, is bound
# there; a Xen host has it.)
xen_test_require ""

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-xen-dm.XXXXXX") || exit 99
store=$tmp/store
mkdir -m 0700 "$store" || exit 99
# Distinct per run, so parallel runs do not share /var/run/xen sockets.
d=$((2000 + $$ % 800))
name=xen$d

cleanup() {
    "$DMCTL" --store "$store" --timeout 5 stop "$name" --force >/dev/null 2>&1
    "$DMCTL" --store "$store" --timeout 5 stop liar --force >/dev/null 2>&1
    "$DMCTL" --store xenstore --timeout 5 stop "$name" --force >/dev/null 2>&1
    sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

xen_test_env "$d"

. "$top_srcdir/tests/harness/tap.sh"

dmctl() {
    "$DMCTL" --store "$store" --timeout 20 "$@"
}

state_key=/local/domain/0/device-model/$d/state
state() {
    xenstore-read "$state_key" 2>/dev/null
}

record() {
    dmctl --json list | grep "\"name\":\"$name\""
}

state_is_running() { [ "$(state)" = running ]; }
# Any QEMU of this test's domain (of any test run using the same domid,
# which the domid choice above makes unlikely).
no_qemu_left() { ! pgrep -f "^$XEN_QEMU -xen-domid $d " >/dev/null; }

start_dm() {
    out=$(dmctl --json start "$name" --profile xen --domid "$d" --qemu "$XEN_QEMU_WRAPPER")
    rc=$?
    printf '%s\n' "$out"
    [ $rc -eq 0 ]
}

# stopped_clean PID KEEPER_PID: no process and no zombie left.
stopped_clean() {
    wait_for 5 pid_gone "$1" || { fail "QEMU pid $1 still there: $(cat /proc/$1/stat 2>/dev/null)"; return 1; }
    # The keeper was reparented; whoever adopted it must reap it.
    wait_for 5 pid_gone "$2" || { fail "keeper pid $2 left (zombie?): $(cat /proc/$2/stat 2>/dev/null)"; return 1; }
    wait_for 5 no_qemu_left || { fail "a QEMU of domain $d is left: $(pgrep -fa "^$XEN_QEMU -xen-domid $d ")"; return 1; }
    ok "stop left no QEMU, keeper or zombie"
}

# ---- 1. start, ready by QMP; xenstore's state only at resume ----
xenstore-rm "$state_key" 2>/dev/null
if out=$(start_dm); then
    ok "start --profile xen with the real Xen DM"
else
    fail "start --profile xen: $out"
    echo "$n checks, $fails failed"
    exit 1
fi
rec=$(record)
pid=$(field "$rec" pid)
keeper=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)
sock=$(field "$rec" qmp_socket)
check "the recorded pid is the real QEMU (the wrapper exec'd)" \
    test "$(readlink "/proc/$pid/exe")" = "$XEN_QEMU"
st=$(dmctl --json status "$name")
check "status --json: prelaunch ($st)" test "$(field "$st" runstate)" = prelaunch
sleep 0.3
check "xenstore state is not 'running' before resume ('$(state)')" test "$(state)" != running

# ---- 2. the real xl against it ----
if [ -x "$XL" ]; then
    xl() { LD_PRELOAD=$XENHYP_PRELOAD "$XL" "$@"; }
    if out=$(xl list 2>&1) && printf '%s\n' "$out" | grep -q "^xenhyp-$d  *$d "; then
        ok "xl list shows domain $d"
    else
        fail "xl list: $out"
    fi
    if [ "$sock" = "/var/run/xen/qmp-libxl-$d" ]; then
        if out=$(xl qemu-monitor-command "$d" 'info status' 2>&1) &&
            printf '%s\n' "$out" | grep -q "paused (prelaunch)"; then
            ok "xl qemu-monitor-command: paused (prelaunch)"
        else
            fail "xl qemu-monitor-command 'info status': $out"
        fi
    else
        echo "SKIP xl part: qmp not at libxl path ($sock)"
    fi
else
    echo "SKIP xl part: $XL not installed"
fi

# ---- 3. resume: QEMU writes "running" itself ----
check "resume" dmctl resume "$name"
check "QEMU wrote 'running' to $state_key at cont" wait_for 5 state_is_running
st=$(dmctl --json status "$name")
check "status --json: running ($st)" test "$(field "$st" runstate)" = running

# ---- 4. stop: nothing left ----
check "stop" dmctl stop "$name"
stopped_clean "$pid" "$keeper"
check "the record is gone" test -z "$(record)"

# ---- 5. a stale "running" in xenstore is not readiness ----
# QEMU never removes the key: it still says running. Say it again anyway.
xenstore-write "$state_key" running
if out=$(start_dm); then
    ok "start again with a stale 'running' in xenstore"
else
    fail "start with a stale 'running': $out"
fi
st=$(dmctl --json status "$name")
check "status --json: prelaunch despite xenstore's 'running' ($st)" \
    test "$(field "$st" runstate)" = prelaunch
check "start reported QMP's prelaunch" test "$(field "$out" runstate)" = prelaunch

# A "device model" that writes "running" to xenstore and never speaks QMP
# is never ready: start must time out.
cat >"$tmp/liar" <<EOF
#!/bin/sh
XENSTORED_PATH='$XENSTORED_PATH' xenstore-write '/local/domain/0/device-model/$((d + 100))/state' running
exec sleep 30
EOF
chmod +x "$tmp/liar"
"$DMCTL" --store "$store" --timeout 2 start liar --profile xen --domid $((d + 100)) \
    --qemu "$tmp/liar" >"$tmp/liar.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ "$(xenstore-read "/local/domain/0/device-model/$((d + 100))/state")" = running ]; then
    ok "a DM that writes 'running' but answers no QMP is not ready (exit $rc)"
else
    fail "start of a QMP-silent DM: exit $rc, $(cat "$tmp/liar.out")"
fi
"$DMCTL" --store "$store" --timeout 5 stop liar --force >/dev/null 2>&1

# ---- 6. crash, then start the same name again ----
rec=$(record)
pid=$(field "$rec" pid)
keeper=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)
check "kill -9 QEMU ($pid)" kill -9 "$pid"
dead_in_list() { [ "$(field "$(record)" alive)" = false ]; }
check "list reports it not alive" wait_for 5 dead_in_list
rec=$(record)
check "list --json: state dead ($rec)" test "$(field "$rec" state)" = dead
check "list --json: exit status 9 ($rec)" test "$(field "$rec" exit_status)" = 9
if dmctl --json status "$name" >"$tmp/st.out" 2>&1; then
    fail "status of a dead DM succeeded: $(cat "$tmp/st.out")"
else
    check "status names it dead" grep -q "gone" "$tmp/st.out"
fi
wait_for 5 pid_gone "$keeper" || fail "keeper $keeper left after the crash"
if out=$(start_dm); then
    ok "the same NAME starts again after the crash"
else
    fail "start after the crash: $out"
fi
st=$(dmctl --json status "$name")
check "status --json: prelaunch ($st)" test "$(field "$st" runstate)" = prelaunch
rec=$(record)
pid=$(field "$rec" pid)
keeper=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)
check "stop" dmctl stop "$name"
stopped_clean "$pid" "$keeper"
check "no QMP socket of domain $d left in /var/run/xen" \
    test ! -e "/var/run/xen/qmp-libxenstat-$d"

check "no libxl QMP socket of domain $d left" test ! -e "/var/run/xen/qmp-libxl-$d"

# ---- 7. dm_restrict on the Xen DM (built without seccomp: the keeper's
# libseccomp filter stands in for -sandbox) ----
proc_field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | awk '{print $1}'; }
if out=$(dmctl --json start "$name" --profile xen --domid "$d" --qemu "$XEN_QEMU_WRAPPER" \
        --restrict --runas 64531:64531); then
    ok "restricted start of the Xen DM"
    rec=$(record)
    pid=$(field "$rec" pid)
    keeper=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)
    check "restricted: runs as the private uid 64531" test "$(proc_field "$pid" Uid)" = 64531
    check "restricted: no_new_privs" test "$(proc_field "$pid" NoNewPrivs)" = 1
    check "restricted: seccomp filter" test "$(proc_field "$pid" Seccomp)" = 2
    check "restricted: chroot /var/run/xen/qemu-root-$d" \
        test "$(readlink "/proc/$pid/root")" = "$(readlink -f /var/run/xen)/qemu-root-$d"
    check "restricted: own mount namespace" \
        test "$(readlink "/proc/$pid/ns/mnt")" != "$(readlink /proc/self/ns/mnt)"
    check "restricted: own IPC namespace" \
        test "$(readlink "/proc/$pid/ns/ipc")" != "$(readlink /proc/self/ns/ipc)"
    check "restricted: own PID namespace (the keeper is its init)" \
        test "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)"
    check "restricted: RLIMIT_FSIZE 256 KiB" \
        grep -q "^Max file size  *262144  *262144" "/proc/$pid/limits"
    check "restricted: RLIMIT_CORE 0" grep -q "^Max core file size  *0  *0" "/proc/$pid/limits"
    st=$(dmctl --json status "$name")
    check "restricted: ready by QMP, prelaunch ($st)" test "$(field "$st" runstate)" = prelaunch
    if [ -x "$XL" ]; then
        out=$(LD_PRELOAD=$XENHYP_PRELOAD "$XL" qemu-monitor-command "$d" 'info status' 2>&1)
        check "restricted: xl qemu-monitor-command ($out)" \
            sh -c "printf '%s' \"\$1\" | grep -q 'paused (prelaunch)'" _ "$out"
    fi
    check "restricted: resume" dmctl resume "$name"
    check "restricted: stop" dmctl stop "$name"
    stopped_clean "$pid" "$keeper"
    check "restricted: libdm's chroot removed" test ! -e "/var/run/xen/qemu-root-$d"
else
    fail "restricted start of the Xen DM: $out"
fi

# ---- 8. with the xenstore store: what libxl's readers look up ----
# dm-version, the pid, and after start the serial pty and the VNC port,
# exactly where libxl puts them; all gone after stop.
# The real xenstore store (records in xenstore, the run directory in /run/libdm).
dx() { "$DMCTL" --store xenstore --timeout 20 "$@"; }
# xen-env.sh wrote dm-version as libxl would; libdm removes only what it
# wrote (test-xl-create.sh checks libxl's stays): here libdm writes it.
xenstore-rm "/libxl/$d/dm-version" 2>/dev/null
if out=$(dx --json start "$name" --profile xen --domid "$d" --qemu "$XEN_QEMU_WRAPPER" \
        --serial pty --vnc 127.0.0.1:$((d % 40 + 50))); then
    ok "start with the xenstore store, a serial pty and VNC"
    check "dm-version qemu_xen" test "$(xenstore-read "/libxl/$d/dm-version")" = qemu_xen
    check "image/device-model-pid" test -n "$(xenstore-read "/local/domain/$d/image/device-model-pid")"
    tty=$(xenstore-read "/local/domain/$d/serial/0/tty" 2>/dev/null)
    check "serial/0/tty is the DM's pty ($tty)" test -c "$tty"
    port=$(xenstore-read "/local/domain/$d/console/vnc-port" 2>/dev/null)
    check "console/vnc-port ($port)" test "$port" = $((5900 + d % 40 + 50))
    check "console/vnc-listen" test "$(xenstore-read "/local/domain/$d/console/vnc-listen")" = 127.0.0.1
    check "stop" dx stop "$name"
    check "serial/ removed at stop" sh -c "! xenstore-read /local/domain/$d/serial/0/tty 2>/dev/null"
    check "console/vnc-port removed at stop" \
        sh -c "! xenstore-read /local/domain/$d/console/vnc-port 2>/dev/null"
    check "dm-version removed at stop" sh -c "! xenstore-read /libxl/$d/dm-version 2>/dev/null"
else
    fail "start with the xenstore store: $out"
fi

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
