/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-parts: the parts of one libdm start (and its stop) that the floor
 * does not have, each timed alone, wall and CPU (this process plus reaped
 * children, getrusage), median of PARTS_RUNS repetitions, in the directory
 * the benchmark's store lives in (so ext4 vs tmpfs shows):
 *   keeper exec      fork + execve(LIBDM_KEEPER) with no arguments (it loads,
 *                    prints its usage, exits 2) + reap, minus a bare fork;
 *                    i.e. exec + dynamic loading + exit of the keeper;
 *   fork             fork + _exit + reap from this process (the keeper's fork
 *                    of QEMU; the keeper is smaller, so an upper bound);
 *   PID namespace    clone(CLONE_NEWPID) + _exit + reap, minus a bare fork;
 *   run directory    mkdir + rmdir;
 *   file x3          create + close + unlink (owner.lock, monitor.lock,
 *                    qemu.log);
 *   socket           bind + unlink of a unix socket;
 *   record x2        write a temporary file + rename over the record (the
 *                    spawn-time and the ready-time versions), unlink at stop.
 * The sum is set against the floor's per-DM figure and libdm's. Not counted:
 * QMP's extra `events` capability exchange and the `quit` at stop (a round
 * trip each, on the QEMU's side), the claim's flock and libdm's own code.
 */
#define _GNU_SOURCE
#include "bench-parts.h"
#include "bench-util.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PARTS_RUNS 41

enum { P_FORK, P_EXEC, P_NS, P_DIR, P_FILE, P_SOCK, P_REC, P_N };
static const char *const part_name[P_N] = {
    "fork + exit + reap", "keeper exec + loading + exit", "PID namespace (clone NEWPID)",
    "run directory (mkdir, rmdir)", "file create + unlink", "socket bind + unlink",
    "record write (tmp + rename), unlink",
};
static const int part_count[P_N] = { 1, 1, 1, 1, 3, 1, 2 };

static double cpu_ms(void)
{
    struct rusage s, c;

    getrusage(RUSAGE_SELF, &s);
    getrusage(RUSAGE_CHILDREN, &c);
    return (s.ru_utime.tv_sec + s.ru_stime.tv_sec + c.ru_utime.tv_sec + c.ru_stime.tv_sec) * 1e3 +
           (s.ru_utime.tv_usec + s.ru_stime.tv_usec + c.ru_utime.tv_usec + c.ru_stime.tv_usec) / 1e3;
}

static int one(int part, const char *dir, const char *keeper, int i)
{
    char p[600], q[600];
    pid_t pid;
    int fd, r = 0;

    switch (part) {
    case P_FORK:
    case P_EXEC:
        pid = fork();
        if (pid == 0) {
            if (part == P_EXEC) {
                int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (nul >= 0)
                    dup2(nul, 2);
                execl(keeper, keeper, (char *)NULL);
            }
            _exit(0);
        }
        return pid < 0 ? -1 : (waitpid(pid, NULL, 0) < 0 ? -1 : 0);
    case P_NS:
        pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
        if (pid == 0)
            _exit(0);
        return pid < 0 ? -1 : (waitpid(pid, NULL, 0) < 0 ? -1 : 0);
    case P_DIR:
        snprintf(p, sizeof(p), "%s/bp-dir%d", dir, i);
        return mkdir(p, 0700) < 0 ? -1 : rmdir(p);
    case P_FILE:
        snprintf(p, sizeof(p), "%s/bp-file%d", dir, i);
        fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return -1;
        close(fd);
        return unlink(p);
    case P_SOCK: {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof(a.sun_path), "%s/bp-s%d", dir, i);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        r = bind(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        return r < 0 ? -1 : unlink(a.sun_path);
    }
    case P_REC: {
        static const char rec[] = "version 1\nname bench\nstate RUNNING\nqemu /usr/bin/qemu-system-x86_64\n"
                                  "pid 12345\nkeeper 12344\nstarttime 1234567\n";
        snprintf(p, sizeof(p), "%s/bp-rec%d.tmp", dir, i);
        snprintf(q, sizeof(q), "%s/bp-rec%d", dir, i);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return -1;
        r = write(fd, rec, sizeof(rec) - 1) == (ssize_t)(sizeof(rec) - 1) ? 0 : -1;
        close(fd);
        if (r < 0 || rename(p, q) < 0)
            return -1;
        return unlink(q);
    }
    }
    return -1;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bp_breakdown(const char *store_dir, double floor_ms, double lib_ms, const char *what)
{
    const char *keeper = getenv("LIBDM_KEEPER");
    double wall[P_N][PARTS_RUNS], cpu[P_N][PARTS_RUNS], mw[P_N], mc[P_N];
    double sum_w = 0, sum_c = 0;
    bool is_cpu = strcmp(what, "CPU") == 0;

    if (!keeper || access(keeper, X_OK) != 0)
        keeper = "/bin/true";
    for (int i = 0; i < PARTS_RUNS; i++)
        for (int p = 0; p < P_N; p++) {
            double c0 = cpu_ms(), t0 = bu_now_us();
            int r = one(p, store_dir, keeper, i);
            wall[p][i] = r < 0 ? -1 : (bu_now_us() - t0) / 1000.0;
            cpu[p][i] = cpu_ms() - c0;
        }
    for (int p = 0; p < P_N; p++) {
        qsort(wall[p], PARTS_RUNS, sizeof(double), cmpd);
        qsort(cpu[p], PARTS_RUNS, sizeof(double), cmpd);
        mw[p] = wall[p][PARTS_RUNS / 2];
        /* rusage ticks are coarse for one call: the mean, not the median. */
        mc[p] = 0;
        for (int i = 0; i < PARTS_RUNS; i++)
            mc[p] += cpu[p][i];
        mc[p] /= PARTS_RUNS;
    }
    /* exec and namespace are what they add to a bare fork. */
    mw[P_EXEC] -= mw[P_FORK];
    mc[P_EXEC] -= mc[P_FORK];
    mw[P_NS] -= mw[P_FORK];
    mc[P_NS] -= mc[P_FORK];
    printf("breakdown per DM: parts libdm has and the floor has not, each timed alone in this run\n"
           "  (dir %s, keeper %s, %d reps; wall median, CPU mean; set against the floor's %s %.2f ms)\n",
           store_dir, keeper, PARTS_RUNS, what, floor_ms);
    for (int p = 0; p < P_N; p++) {
        double w = mw[p] * part_count[p], c = mc[p] * part_count[p];
        if (wall[p][0] < 0) {
            printf("  %-38s  failed (%s)\n", part_name[p], p == P_NS ? "no CLONE_NEWPID here" : "error");
            continue;
        }
        sum_w += w;
        sum_c += c;
        printf("  %-36s x%d  wall %7.3f ms  CPU %7.3f ms  = %5.1f %% of the floor\n", part_name[p],
               part_count[p], w, c, 100.0 * (is_cpu ? c : w) / floor_ms);
    }
    printf("  %-39s  wall %7.3f ms  CPU %7.3f ms  = %5.1f %% of the floor\n", "sum of the parts", sum_w,
           sum_c, 100.0 * (is_cpu ? sum_c : sum_w) / floor_ms);
    printf("  libdm over the floor, measured: %.2f ms (%+.1f %%); parts explain %.0f %% of it\n",
           lib_ms - floor_ms, 100.0 * (lib_ms - floor_ms) / floor_ms,
           lib_ms > floor_ms ? 100.0 * (is_cpu ? sum_c : sum_w) / (lib_ms - floor_ms) : 0.0);
}
