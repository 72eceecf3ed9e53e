#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Where a start's time goes, in order: bench-start (RUNS, default 5) under
# `perf record` with a handful of kernel tracepoints (process fork and
# exec, sendmsg, mkdirat, renameat2; nothing per byte, so QEMU's monitor,
# which reads a byte per main-loop turn, is not slowed), then the median of
# each link of the chain from the controller's claim to QEMU's last reply,
# for libdm_dm_start (the keeper's parent is bench-start), dmctl start (its
# parent is dmctl) and the floors (QEMU's parent is bench-start). Issue 23:
# the parts timed alone (bench-parts.c) do not add up to libdm's gap over
# the floor; this shows which link of the serial chain holds it.
# Usage: trace-start.sh BENCHDIR [RUNS] (env as for bench-start; needs perf
# and root).
set -eu
B=${1:?usage: trace-start.sh BENCHDIR [RUNS]}
RUNS=${2:-5}
command -v perf >/dev/null 2>&1 || { echo "trace-start: perf is not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
perf record -q -a -o "$tmp/perf.data" -e sched:sched_process_exec -e sched:sched_process_fork \
    -e syscalls:sys_enter_sendmsg -e syscalls:sys_enter_mkdirat -e syscalls:sys_enter_renameat2 \
    -- "$B/bench-start" "$RUNS" >"$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
grep '^RESULT|start: libdm_dm_start|' "$tmp/out" || true
perf script -i "$tmp/perf.data" -F comm,pid,time,event,trace 2>/dev/null | awk '
function add(k, v) { n[k]++; val[k, n[k]] = v }
function median(k,    i, j, t, a, m) {
    m = n[k]
    for (i = 1; i <= m; i++) a[i] = val[k, i]
    for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
{
    # COMM may hold spaces: the pid is the field before the time ("N.N:").
    for (f = 2; f <= NF && $f !~ /^[0-9]+\.[0-9]+:$/; f++) ;
    if (f > NF) next
    pid = $(f - 1); comm = $1; for (i = 2; i < f - 1; i++) comm = comm " " $i
    t = $f; sub(/:$/, "", t); t *= 1000; ev = $(f + 1)
    if (ev == "sched:sched_process_fork:") {
        for (i = f + 2; i <= NF; i++) if ($i ~ /^child_pid=/) { c = $i; sub(/child_pid=/, "", c) }
        tfork[c] = t; parent[c] = pid; pcomm[c] = comm
    } else if (ev == "sched:sched_process_exec:") {
        if (!(pid in texec)) texec[pid] = t
        if ($0 ~ /qemu-system/) isq[pid] = 1
        if ($0 ~ /libdm-keeper/) isk[pid] = 1
    } else if (ev == "syscalls:sys_enter_sendmsg:") {
        if (comm ~ /^qemu/) { ns[pid]++; if (ns[pid] == 1) greet[pid] = t; if (ns[pid] == 3) status[pid] = t }
        else if (comm == "bench-start" || comm == "dmctl") { nsend++; stime[nsend] = t; scomm[nsend] = comm }
    } else if (ev == "syscalls:sys_enter_mkdirat:") {
        if (comm == "bench-start" || comm == "dmctl") { nmk++; mtime[nmk] = t; mcomm[nmk] = comm }
    } else if (ev == "syscalls:sys_enter_renameat2:" && comm == "libdm-keeper") {
        nr[pid]++; rtime[pid, nr[pid]] = t
    }
}
END {
    for (q in isq) {
        if (!(q in status) || !(q in tfork)) continue
        p = parent[q]
        if (pcomm[q] == "bench-start") {
            k = "floor"
            add(k ":fork -> QEMU exec", texec[q] - tfork[q])
        } else if (isk[p] && (p in tfork)) {
            k = pcomm[p] == "dmctl" ? "dmctl" : "libdm"
            ctl = pcomm[p]
            claim = 0
            for (i = 1; i <= nmk; i++) if (mcomm[i] == ctl && mtime[i] < tfork[p] && mtime[i] > tfork[p] - 50) { claim = mtime[i]; break }
            rec = 0
            for (i = 1; i <= nr[p]; i++) if (rtime[p, i] > tfork[q]) { rec = rtime[p, i]; break }
            if (claim) add(k ":claim -> keeper clone (the steps)", tfork[p] - claim)
            add(k ":keeper clone -> its exec done", texec[p] - tfork[p])
            add(k ":keeper exec -> QEMU fork (its start-up)", tfork[q] - texec[p])
            if (rec) add(k ":QEMU fork -> pid recorded", rec - tfork[q])
            if (rec) add(k ":pid recorded -> QEMU exec done", texec[q] - rec)
            if (claim) add(k ":claim -> QEMU exec done", texec[q] - claim)
            done = 0
            for (i = 1; i <= nsend; i++) if (scomm[i] == ctl && stime[i] > status[q]) { done = stime[i]; break }
            if (done) add(k ":last reply -> ready recorded, autokill off", done - status[q])
        } else continue
        add(k ":QEMU exec -> greeting", greet[q] - texec[q])
        add(k ":greeting -> last reply", status[q] - greet[q])
    }
    split("floor libdm dmctl", kinds, " ")
    for (j = 1; j <= 3; j++) {
        printf "%s\n", kinds[j]
        for (key in n) {
            split(key, kk, ":")
            if (kk[1] == kinds[j]) line[key] = sprintf("  %-46s median %8.3f ms (n=%d)", substr(key, length(kinds[j]) + 2), median(key), n[key])
        }
        # a fixed order: the chain as it runs
        split("fork -> QEMU exec|claim -> keeper clone (the steps)|keeper clone -> its exec done|keeper exec -> QEMU fork (its start-up)|QEMU fork -> pid recorded|pid recorded -> QEMU exec done|claim -> QEMU exec done|QEMU exec -> greeting|greeting -> last reply|last reply -> ready recorded, autokill off", order, "|")
        for (i = 1; i <= 10; i++) { key = kinds[j] ":" order[i]; if (key in line) print line[key] }
    }
}'
