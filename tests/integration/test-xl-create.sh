#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The REAL `xl create` (Debian's xl 4.17) of an HVM guest, run to
# completion on the REAL Xen device model (qemu-system-xen), under a FAKE
# hypervisor: no Xen runs on these machines (tests/harness/xenhyp.c and
# xlhyp.c fake the hypercalls and the domain builder, the real xenstored
# runs under xsshim.c, tests/harness/xenconsoled-standin writes
# console/tty; see tests/harness/xen-env.sh).
#  1. libxl spawning the Xen DM itself: xl create exits 0, xl list shows
#     the domain, xl destroy leaves no QEMU;
#  2. through libdm's program (device_model_override = libdm-xl-dm),
#     without dm_restrict: the DM runs under libdm's keeper, its parent
#     chain is the pid libxl recorded; dmctl list/status/qmp see it (libdm's
#     own monitor, beside libxl's); xl qemu-monitor-command, xl list -l,
#     xl console (the guest's serial, a pty) and xl vncviewer (the VNC keys
#     libxl read from QEMU) work; QEMU's output is in libxl's log for the
#     DM, capped; xl destroy leaves no process, socket, record or run
#     directory;
#  3. the same with dm_restrict = 1 and a private device_model_user created
#     for this test: libxl's pre-opened monitor fd is handed through (xl
#     qemu-monitor-command), libdm's confinement is added to libxl's (the
#     keeper's seccomp filter, namespaces), QEMU runs as that uid; xl
#     destroy (libxl's uid reaper) leaves nothing, libxl's chroot included.
# Not carried by the fake: no guest runs (no vCPU, so nothing is ever
# written on the serial and xl shutdown cannot complete); Debian's Xen DM
# has no DES cipher, so a VNC password (vncpasswd=) makes it exit; with an
# emulated CD-ROM, `xl cd-insert` makes it exit too (its qdisk backend for
# the drive fails without a guest), with libxl's own DM as with libdm's.
# Skips (77) without the Xen DM, xenstored or xl, or when not root.

[ -n "${top_srcdir:-}" ] || { echo "ERROR: run from make check (\$top_srcdir)"; exit 99; }
. "$top_srcdir/tests/harness/xen-test.sh"
XL_BIN=${XL:-/usr/lib/xen-4.17/bin/xl}
xen_test_require "xl create" "$XL_BIN"
XLDM=${XLDM:-$top_builddir/tools/libdm-xl-dm}
if ldd "$DMCTL" 2>/dev/null | grep -q libasan; then
    # xl hands its device model its own LD_PRELOAD (the hypervisor fakes),
    # and AddressSanitizer must come first in it: the sanitizers' run of
    # the suite covers the rest, the plain run covers this.
    echo "SKIP: libdm-xl-dm is built with AddressSanitizer (as dmctl is)"
    exit 77
fi
mkdir -p /var/lib/xen /var/log/xen || exit 99

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-xl-create.XXXXXX") || exit 99
store=$tmp/store
mkdir -m 0700 "$store" "$tmp/bin" || exit 99
# Domids are the fake's (from XENHYP_DOMID_BASE up, never reused): distinct
# per run, since /var/run/xen and /var/lib/xen are the host's.
XENHYP_DOMID_BASE=$((24000 + ($$ % 1000) * 8))
export XENHYP_DOMID_BASE
tag=x$$
# A private user for the restricted DM (never nobody: libxl's destroy
# kills every process of that uid).
uid=$((43000 + $$ % 2000))
user=libdmxl$uid
made_user=

xl() { LD_PRELOAD=$XLHYP_PRELOAD "$XL_BIN" "$@"; }

cleanup() {
    "$DMCTL" --store xenstore --timeout 5 stop "$tag-s1" --force >/dev/null 2>&1
    "$DMCTL" --store xenstore --timeout 5 stop "$tag-s2" --force >/dev/null 2>&1
    "$DMCTL" --store xenstore forget "$tag-s1" >/dev/null 2>&1
    [ -n "${d1:-}" ] && rmdir "/var/run/xen/qemu-root-$d1" 2>/dev/null
    for d in $(cat "$tmp/domids" 2>/dev/null); do
        xl destroy "$d" >/dev/null 2>&1
    done
    sh "$xenenv" stop "$tmp/xen" >/dev/null 2>&1
    [ -n "$made_user" ] && userdel "$user" >/dev/null 2>&1
    rm -f /var/log/xen/qemu-dm-"$tag"-*.log
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

xen_test_env
# What libdm-xl-dm is told by the environment libxl hands it: the QEMU
# wrapper that preloads the fake (the hypervisor is simulated), the keeper
# of this build, a private store.
LIBDM_XL_DM_QEMU=$XEN_QEMU_WRAPPER
LIBDM_XL_DM_STORE=$store
export LIBDM_XL_DM_QEMU LIBDM_XL_DM_STORE

. "$top_srcdir/tests/harness/tap.sh"
has() { case $1 in *"$2"*) return 0 ;; esac; return 1; }
xsread() { xenstore-read "$1" 2>/dev/null; }
dmctl() { "$DMCTL" --store "$store" --timeout 20 "$@"; }

ppid_of() { awk '{print $4}' "/proc/$1/stat" 2>/dev/null; }
uid_of() { awk '/^Uid:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
# The QEMU of domain D (the real binary: the wrapper exec'd it).
qemu_of() { pgrep -f "^$XEN_QEMU -xen-domid $1 " | head -n 1; }
no_qemu() { [ -z "$(qemu_of "$1")" ]; }

# cfg NAME EXTRA...: an HVM guest's xl.cfg.
cfg() {
    f=$tmp/$1.cfg
    {
        echo "name = \"$tag-$1\""
        echo 'type = "hvm"'
        echo 'memory = 128'
        echo 'vcpus = 1'
        echo 'serial = "pty"'
        echo 'vnc = 1'
        echo 'vnclisten = "127.0.0.1"'
        echo 'vncunused = 1'
        echo 'device_model_version = "qemu-xen"'
        shift
        for l in "$@"; do echo "$l"; done
    } >"$f"
    echo "$f"
}

# create NAME CFG: xl create; prints the domid.
create() {
    if ! out=$(xl create "$2" 2>&1); then
        echo "xl create $2: $out" >&2
        return 1
    fi
    d=$(xl domid "$tag-$1" 2>/dev/null) || return 1
    echo "$d" >>"$tmp/domids"
    echo "$d"
}

# ---- 1. libxl spawns the Xen DM itself ----
if d=$(create plain "$(cfg plain)"); then
    ok "xl create (libxl's own DM) exits 0: domain $d"
    check "xl list shows $tag-plain" sh -c "LD_PRELOAD='$XLHYP_PRELOAD' '$XL_BIN' list | grep -q '^$tag-plain  *$d '"
    q=$(qemu_of "$d")
    check "the real Xen DM runs for it" test -n "$q"
    check "xl destroy" xl destroy "$d"
    check "no QEMU of domain $d left" wait_for 5 no_qemu "$d"
else
    fail "xl create (libxl's own DM)"
fi

# vm_checks NAME D: what xl and dmctl see of a DM run by libdm-xl-dm.
vm_checks() {
    name=$tag-$1 d=$2
    q=$(qemu_of "$d")
    prog=$(xsread "/local/domain/$d/image/device-model-pid")
    keeper=$(ppid_of "$q")
    check "[$1] QEMU's parent is libdm's keeper" \
        test "$(readlink "/proc/$keeper/exe")" = "$top_builddir/tools/.libs/libdm-keeper" -o \
        "$(readlink "/proc/$keeper/exe")" = "$top_builddir/tools/libdm-keeper"
    check "[$1] the keeper's parent is the pid libxl recorded ($prog)" \
        test -n "$prog" -a "$(ppid_of "$keeper")" = "$prog"
    check "[$1] QEMU has libxl's monitor and libdm's own (id libdm-qmp)" \
        sh -c "tr '\\0' ' ' </proc/$q/cmdline | grep -q 'id=libxl-cmd,.*id=libdm-qmp,'"
    l=$(dmctl list)
    check "[$1] dmctl list: $name, domid $d, profile xl" \
        sh -c "printf '%s\n' '$l' | grep -q '^$name  *$d  *$q  *yes .* xl '"
    st=$(dmctl --json status "$name")
    check "[$1] dmctl status: runstate running" has "$st" '"runstate":"running"'
    check "[$1] dmctl qmp query-status (libdm's monitor)" \
        has "$(dmctl qmp "$name" query-status 2>&1)" '"status": "running"'
    check "[$1] xl qemu-monitor-command (libxl's monitor)" \
        has "$(xl qemu-monitor-command "$d" 'info status' 2>&1)" "VM status: running"
    check "[$1] xl list -l: the domain's configuration with the override" \
        has "$(xl list -l "$d" 2>&1)" "\"device_model\": \"$XLDM\""
    tty=$(xsread "/local/domain/$d/serial/0/tty")
    check "[$1] serial/0/tty is QEMU's pty ($tty)" sh -c "case '$tty' in /dev/pts/*) exit 0;; esac; exit 1"
    # xl console (xenconsole) opens the guest's serial pty.
    script -qc "LD_PRELOAD='$XLHYP_PRELOAD' '$XL_BIN' console $d" /dev/null </dev/null >/dev/null 2>&1 &
    cpid=$!
    con_has_tty() {
        for p in $(pgrep -f "xenconsole $d --num 0"); do
            ls -l "/proc/$p/fd" 2>/dev/null | grep -q " $tty\$" && return 0
        done
        return 1
    }
    check "[$1] xl console opens the guest's serial ($tty)" wait_for 5 con_has_tty
    pkill -P "$cpid" >/dev/null 2>&1
    kill "$cpid" 2>/dev/null
    wait "$cpid" 2>/dev/null
    port=$(xsread "/local/domain/$d/console/vnc-port")
    v=$(PATH=$tmp/bin:$PATH xl vncviewer "$d" 2>&1)
    check "[$1] xl vncviewer: 127.0.0.1:$((port - 5900)) (vnc-port $port)" \
        test -n "$port" -a "$v" = "vncviewer 127.0.0.1:$((port - 5900))"
    log_checks "$1" "$d"
}

# log_checks NAME D: QEMU's output lands in the log libxl opened for its DM
# (stdout/stderr of libdm-xl-dm: /var/log/xen/qemu-dm-NAME.log), through
# the keeper's pipe, capped at 256 KiB. QEMU writes on stderr what its
# trace event handle_qmp_command logs: each QMP request it gets.
log_checks() {
    name=$tag-$1 d=$2 log=/var/log/xen/qemu-dm-$tag-$1.log
    dmctl qmp "$name" trace-event-set-state '{"name": "handle_qmp_command", "enable": true}' \
        >/dev/null 2>&1
    xl qemu-monitor-command "$d" "info mark-$1-$$" >/dev/null 2>&1
    check "[$1] QEMU's output is in libxl's log $log" wait_for 5 grep -q "mark-$1-$$" "$log"
    big=$(head -c 60000 /dev/zero | tr '\0' x)
    for i in 1 2 3 4 5 6; do
        dmctl qmp "$name" human-monitor-command "{\"command-line\": \"info $big\"}" \
            >/dev/null 2>&1
    done
    check "[$1] libxl's log is capped: the keeper's note" \
        wait_for 5 grep -q "log reached its limit" "$log"
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    check "[$1] libxl's log holds at most 256 KiB of QEMU's (size $size)" \
        test "$size" -gt 0 -a "$size" -lt $((256 * 1024 + 4096))
    check "[$1] the DM still answers after the cap" \
        has "$(dmctl qmp "$name" query-status 2>&1)" '"status": "running"'
}

# gone NAME D PROG Q [CHROOT]: nothing of the DM is left.
gone() {
    name=$tag-$1 d=$2
    check "[$1] libdm-xl-dm (pid $3) exited" wait_for 10 pid_gone "$3"
    check "[$1] QEMU (pid $4) is gone" wait_for 5 pid_gone "$4"
    check "[$1] no record left" sh -c "! '$DMCTL' --store '$store' list | grep -q '^$name '"
    check "[$1] no run directory left" test ! -e "$store/$name"
    check "[$1] no monitor socket left in /var/run/xen" \
        sh -c "! ls /var/run/xen/qmp-libxl-$d /var/run/xen/qmp-libxenstat-$d 2>/dev/null | grep -q ."
    if [ -n "${5:-}" ]; then
        check "[$1] libxl's chroot $5 removed" test ! -e "$5"
    fi
}

printf '#!/bin/sh\necho "vncviewer $*"\n' >"$tmp/bin/vncviewer"
chmod +x "$tmp/bin/vncviewer"

# ---- 2. libdm's program, without dm_restrict ----
if d=$(create libdm "$(cfg libdm "device_model_override = \"$XLDM\"")"); then
    ok "xl create through libdm-xl-dm exits 0: domain $d"
    vm_checks libdm "$d"
    prog=$(xsread "/local/domain/$d/image/device-model-pid")
    q=$(qemu_of "$d")
    check "xl destroy" xl destroy "$d"
    gone libdm "$d" "$prog" "$q"
else
    fail "xl create through libdm-xl-dm"
fi

# ---- 2b. the same with libdm's default store on a Xen host: xenstore ----
# The record sits beside libxl's keys, none of which libdm touches: the DM's
# pid libxl recorded stays libdm-xl-dm's, dm-version libxl's; nothing of
# libdm is left after xl destroy.
if d=$(LIBDM_XL_DM_STORE= create xs "$(cfg xs "device_model_override = \"$XLDM\"")"); then
    ok "[xs] xl create through libdm-xl-dm, default store (xenstore here): domain $d"
    prog=$(xsread "/local/domain/$d/image/device-model-pid")
    q=$(qemu_of "$d")
    check "[xs] dmctl list (default store) shows it, profile xl" \
        sh -c "'$DMCTL' list | grep -q '^$tag-xs  *$d  *$q  *yes .* xl '"
    check "[xs] device-model-pid is still libxl's (libdm-xl-dm, $prog)" \
        test "$(readlink "/proc/$prog/exe")" = "$top_builddir/tools/.libs/libdm-xl-dm"
    check "[xs] libdm wrote no kill-uid" test -z "$(xsread "/local/domain/$d/image/device-model-kill-uid")"
    # libxl's destroy removes /libxl/D (libxl_domain.c, devices_destroy_cb)
    # while libdm's DM may still run: done here alone, the DM stays listed.
    xenstore-rm "/libxl/$d"
    check "[xs] /libxl/$d removed (as libxl's destroy does): dmctl list still has the live DM" \
        sh -c "'$DMCTL' list | grep -q '^$tag-xs  *$d  *$q  *yes  *running '"
    check "xl destroy" xl destroy "$d"
    check "[xs] libdm-xl-dm exited" wait_for 10 pid_gone "$prog"
    check "[xs] no record in xenstore, no run directory" sh -c \
        "! xenstore-read /tool/libdm/$d/name 2>/dev/null && ! '$DMCTL' list | grep -q '^$tag-xs ' &&
         test ! -e /run/libdm/$tag-xs"
else
    fail "[xs] xl create through libdm-xl-dm with the default store"
fi

# ---- 3. the same with dm_restrict ----
if getent passwd "$uid" >/dev/null || getent passwd "$user" >/dev/null; then
    fail "uid $uid or user $user exists already: cannot make a private user"
elif ! useradd --system --no-create-home --shell /usr/sbin/nologin -u "$uid" "$user" 2>/dev/null; then
    fail "useradd $user (uid $uid)"
else
    made_user=1
    if d=$(create rst "$(cfg rst "device_model_override = \"$XLDM\"" 'dm_restrict = 1' \
            "device_model_user = \"$user\"")"); then
        ok "xl create through libdm-xl-dm with dm_restrict exits 0: domain $d"
        vm_checks rst "$d"
        q=$(qemu_of "$d")
        prog=$(xsread "/local/domain/$d/image/device-model-pid")
        check "[rst] QEMU runs as the private uid $uid" test "$(uid_of "$q")" = "$uid"
        check "[rst] libxl's monitor fd is handed through (fd=7)" \
            sh -c "tr '\\0' ' ' </proc/$q/cmdline | grep -q 'socket,id=libxl-cmd,fd=7,'"
        check "[rst] libxl's kill-uid is the private uid" \
            test "$(xsread "/local/domain/$d/image/device-model-kill-uid")" = "$uid"
        st=$(dmctl --json status "$tag-rst")
        check "[rst] libdm's confinement on top of libxl's: seccomp, namespaces" \
            sh -c "printf '%s' '$st' | grep -q 'uid $uid.*ns mnt+ipc.*no_new_privs, seccomp'"
        check "[rst] QEMU is seccomp-filtered" \
            test "$(awk '/^Seccomp:/ {print $2}' "/proc/$q/status")" = 2
        check "xl destroy (libxl's uid reaper)" xl destroy "$d"
        gone rst "$d" "$prog" "$q" "/var/run/xen/qemu-root-$d"
        check "[rst] no process of uid $uid left" sh -c "! pgrep -u $uid >/dev/null"
    else
        fail "xl create through libdm-xl-dm with dm_restrict"
    fi
fi

# ---- 4. two domains' DMs as one user: destroying one spares the other ----
# libxl's destroy kills every process of a DM's kill-uid; libdm records it
# only for a uid that belongs to one domain alone. Here DMs started by
# dmctl with the xenstore store, both run as the test's private user (as
# xen-qemuuser-shared would be shared); `xl destroy` of the first.
if [ -n "$made_user" ]; then
    d1=$((XENHYP_DOMID_BASE + 6)) d2=$((XENHYP_DOMID_BASE + 7))
    eval "$(sh "$xenenv" domain "$tmp/xen" "$d1" "$tag-s1")"
    eval "$(sh "$xenenv" domain "$tmp/xen" "$d2" "$tag-s2")"
    dx() { "$DMCTL" --store xenstore --timeout 20 "$@"; }
    for i in 1 2; do
        eval "dd=\$d$i"
        if ! out=$(dx start "$tag-s$i" --profile xen --domid "$dd" --qemu "$XEN_QEMU_WRAPPER" \
                --restrict --runas "$user" 2>&1); then
            fail "dmctl start $tag-s$i (restricted, as $user): $out"
        fi
    done
    q1=$(qemu_of "$d1") q2=$(qemu_of "$d2")
    check "both DMs run as $uid" test -n "$q1" -a -n "$q2" -a "$(uid_of "$q1")" = "$uid" \
        -a "$(uid_of "$q2")" = "$uid"
    check "no kill-uid for a uid two domains' DMs share" sh -c \
        "! xenstore-read /local/domain/$d1/image/device-model-kill-uid 2>/dev/null &&
         ! xenstore-read /local/domain/$d2/image/device-model-kill-uid 2>/dev/null"
    xl destroy "$d1" >/dev/null 2>&1
    check "xl destroy $d1 ended its DM" wait_for 10 pid_gone "$q1"
    sleep 0.5
    check "the other domain's DM (pid $q2) still runs" test -d "/proc/$q2"
    check "the other domain's DM answers" \
        has "$(dx qmp "$tag-s2" query-status 2>&1)" '"status"'
    # libdm's record is not under /libxl/D, which libxl's destroy removed:
    # the DM that xl destroy ended is still listed (dead, with its status),
    # and libdm's stop removes all of it, libxl's chroot path included.
    check "xl destroy $d1: dmctl list still has $tag-s1 (dead)" \
        sh -c "'$DMCTL' --store xenstore list | grep -q '^$tag-s1  *$d1 .* dead '"
    check "stop $tag-s1 (after xl destroy)" dx stop "$tag-s1"
    check "[s1] no run directory /run/libdm/$tag-s1, no chroot qemu-root-$d1 left" \
        sh -c "test ! -e /run/libdm/$tag-s1 && test ! -e /var/run/xen/qemu-root-$d1"
    # libxl's removal of /libxl/D alone (a live DM): the DM stays listed.
    xenstore-rm "/libxl/$d2"
    check "/libxl/$d2 removed: dmctl list still has the live $tag-s2" \
        sh -c "'$DMCTL' --store xenstore list | grep -q '^$tag-s2  *$d2  *$q2  *yes '"
    xenstore-write "/libxl/$d2/dm-version" qemu_xen
    check "stop $tag-s2" dx stop "$tag-s2"
    check "[s2] no run directory, no record left" sh -c \
        "test ! -e /run/libdm/$tag-s2 && ! xenstore-read /tool/libdm/$d2/name 2>/dev/null"
    # A dm-version libxl wrote (xen-env.sh plays libxl) is never removed.
    check "libxl's dm-version for $d2 stays after libdm's stop" \
        test "$(xsread "/libxl/$d2/dm-version")" = qemu_xen
fi

# ---- 5. libxl resumes before libdm is ready ----
# Under dm_restrict libxl talks to QEMU over its own pre-bound monitor and
# sends "cont" as soon as its own sequence is done, which may be before
# libdm's readiness exchange. Deterministically here: the "cont" is queued
# on libxl's connection before the spawn (tests/harness/xl-spawn-sim, a
# simulation of libxl's side), so QEMU runs it first; the DM must still be
# libdm's, ready and running.
d5=$((XENHYP_DOMID_BASE + 5))
eval "$(sh "$xenenv" domain "$tmp/xen" "$d5" "$tag-early")"
"$top_builddir/tests/harness/xl-spawn-sim" "$tmp/early.sock" \
    '{"execute":"qmp_capabilities"}
{"execute":"cont"}
' "$XLDM" -xen-domid "$d5" -no-shutdown -chardev "socket,id=libxl-cmd,fd=@FD@,server=on,wait=off" \
    -mon chardev=libxl-cmd,mode=control -nodefaults -name "$tag-early" -machine xenfv -m 16 -S \
    2>"$tmp/early.err" &
sim=$!
ready_or_gone() { grep -q "ready" "$tmp/early.err" || ! kill -0 "$sim" 2>/dev/null; }
wait_for 30 ready_or_gone
check "ready although libxl resumed it first" grep -q "ready" "$tmp/early.err"
l=$(dmctl list | grep "^$tag-early ")
check "dmctl list: libdm's state running, runstate running ($l)" \
    sh -c "printf '%s\n' '$l' | grep -q ' yes  *running  *running  *xl '"
prog=$(pgrep -P "$sim")
q=$(qemu_of "$d5")
[ -n "$prog" ] && kill -HUP "$prog"
wait "$sim"
rc=$?
check "SIGHUP (libxl's destroy): libdm-xl-dm stopped the DM and exited 0 ($rc)" test "$rc" = 0
if [ -n "$q" ]; then
    check "[early] QEMU is gone" wait_for 5 pid_gone "$q"
fi
check "[early] no record, no run directory left" \
    sh -c "! '$DMCTL' --store '$store' list | grep -q '^$tag-early ' && test ! -e '$store/$tag-early'"
[ "$fails" -eq 0 ] || sed 's/^/    early: /' "$tmp/early.err"

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
