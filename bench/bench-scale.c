/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-scale: one thread, one libdm_ctx, N = 10, 100, 1000 connections to
 * the fake QMP server (bench-qmp-server, another process). For each N:
 *   connect+negotiate  libdm_qmp_connect() on each, loop until all READY;
 *   throughput         every connection keeps one query-status in flight
 *                      for WINDOW ms; aggregate replies/s;
 *   memory             RSS delta (/proc/self/statm) / N with all READY and
 *                      idle, measured first, each N in a fresh forked child
 *                      (a reused heap would hide the growth).
 * Then real keepers (issue 19 "scale to 1,000 DMs", issue 23): in a fresh
 * forked child, one ctx starts BENCH_SCALE_DMS (64) real DMs (qemu -machine
 * none, keepers forked by the helper) and, all ready, prints the fds and
 * the heap (mallinfo2) the controlling process holds per DM, the RSS of a
 * keeper, and the extrapolation to 1,000 DMs against RLIMIT_NOFILE.
 * Usage: bench-scale SERVER-BINARY [RUNS [WINDOW-MS]].
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "bench-util.h"

#define NSIZES 3
static const int sizes[NSIZES] = { 10, 100, 1000 };

typedef struct scale {
    libdm_ctx *ctx;
    libdm_qmp **q;
    int n;
    int ready;
    int broken;
    long replies;
    int inflight;
    double end_us;
} scale;

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;

    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static void on_state(libdm_qmp *qmp, libdm_qmp_state st, int error, void *userdata)
{
    scale *s = userdata;

    (void)qmp;
    (void)error;
    if (st == LIBDM_QMP_READY)
        s->ready++;
    else if (st == LIBDM_QMP_BROKEN)
        s->broken++;
}

/* Connects all N and runs the loop until they are READY; ms or -1. */
static double connect_all(scale *s, const char *path)
{
    double t0 = bu_now_us();

    s->ready = s->broken = 0;
    for (int i = 0; i < s->n; i++) {
        if (libdm_qmp_new(s->ctx, &s->q[i]) < 0 ||
            libdm_qmp_set_state_callback(s->q[i], on_state, s) < 0 ||
            libdm_qmp_connect(s->q[i], path, 10000) < 0)
            return -1;
    }
    while (s->ready + s->broken < s->n)
        if (libdm_ctx_run_once(s->ctx, -1) < 0)
            return -1;
    return s->broken ? -1 : (bu_now_us() - t0) / 1000.0;
}

static void close_all(scale *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->q[i])
            libdm_qmp_close(s->q[i], 5000);
    memset(s->q, 0, sizeof(*s->q) * (size_t)s->n);
}

static void on_status(libdm_qmp *qmp, const libdm_qmp_reply *reply, void *userdata);

static int issue(scale *s, libdm_qmp *q)
{
    int r = libdm_qmp_call_async(q, "query-status", NULL, 0, on_status, s, NULL);

    if (r >= 0)
        s->inflight++;
    return r;
}

static void on_status(libdm_qmp *qmp, const libdm_qmp_reply *reply, void *userdata)
{
    scale *s = userdata;

    s->inflight--;
    if (reply->status < 0) {
        s->broken++;
        return;
    }
    if (bu_now_us() < s->end_us) {
        s->replies++;
        issue(s, qmp);
    }
}

/* Aggregate replies/s with one query-status in flight per connection. */
static double throughput(scale *s, int window_ms)
{
    double t0 = bu_now_us();

    s->replies = 0;
    s->inflight = 0;
    s->end_us = t0 + window_ms * 1000.0;
    for (int i = 0; i < s->n; i++)
        if (issue(s, s->q[i]) < 0)
            return -1;
    while (s->inflight > 0)
        if (libdm_ctx_run_once(s->ctx, -1) < 0)
            return -1;
    return s->broken ? -1 : s->replies / ((s->end_us - t0) / 1e6);
}

static int scale_init(scale *s, int n)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    s->q = calloc((size_t)n, sizeof(*s->q));
    return s->q && libdm_ctx_new(NULL, &s->ctx) == 0 ? 0 : -1;
}

static void scale_fini(scale *s)
{
    close_all(s);
    libdm_ctx_free(s->ctx);
    free(s->q);
}

/* In a fresh child: bytes of RSS per idle READY connection. */
static void measure_memory_child(const char *path, int n)
{
    scale s;
    long before, after;
    size_t heap_before, heap_after;
    int ok;

    ok = scale_init(&s, n) == 0;
    before = rss_bytes();
    heap_before = mallinfo2().uordblks;
    ok = ok && connect_all(&s, path) >= 0;
    /* Let the connections go idle: nothing pending, buffers settled. */
    for (int i = 0; ok && i < 5; i++)
        libdm_ctx_run_once(s.ctx, 2);
    after = rss_bytes();
    heap_after = mallinfo2().uordblks;
    if (ok)
        printf("MEM %d %.0f %.0f\n", n, (double)(after - before) / n,
               (double)(heap_after - heap_before) / n);
    fflush(stdout);
    scale_fini(&s);
    _exit(ok ? 0 : 1);
}

static int measure_memory(const char *path, double *rss_per, double *heap_per)
{
    for (int k = 0; k < NSIZES; k++) {
        int fds[2], st;
        char line[128];
        pid_t pid;
        FILE *f;

        fflush(stdout);
        if (pipe(fds) < 0 || (pid = fork()) < 0)
            return -1;
        if (pid == 0) {
            close(fds[0]);
            dup2(fds[1], 1);
            measure_memory_child(path, sizes[k]);
        }
        close(fds[1]);
        f = fdopen(fds[0], "r");
        if (!f || !fgets(line, sizeof(line), f) ||
            sscanf(line, "MEM %*d %lf %lf", &rss_per[k], &heap_per[k]) != 2)
            rss_per[k] = -1;
        if (f)
            fclose(f);
        waitpid(pid, &st, 0);
        if (rss_per[k] < 0)
            return -1;
    }
    return 0;
}

/* ---- real keepers ---- */

static int fd_count(void)
{
    int n = 0;

    for (int fd = 0; fd < 65536; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

static long vmrss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int ppid_of(int pid)
{
    char path[64], buf[512], *p;
    int ppid = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
        (void)sscanf(p + 1, " %*c %d", &ppid);
    fclose(f);
    return ppid;
}

static void on_real_ready(libdm_dm *dm, int status, void *userdata)
{
    int *pending = userdata;

    (void)dm;
    if (status < 0)
        fprintf(stderr, "bench-scale: a real DM failed: %s\n", strerror(-status));
    (*pending)--;
}

static int real_keepers_child(int n)
{
    char *store = bu_mkdtemp("scale-store");
    libdm_dm **dms = calloc((size_t)n, sizeof(*dms));
    struct mallinfo2 m0, m1;
    int fd0, fd1, pending = 0, ok = 0;
    long krss = 0, kn = 0;
    libdm_ctx *ctx;
    struct rlimit rl;
    double t0, fds_per, heap_per;

    if (!store || !dms || libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, store) < 0)
        return 1;
    fd0 = fd_count();
    m0 = mallinfo2();
    t0 = bu_now_us();
    for (int i = 0; i < n; i++) {
        libdm_dm_config *cfg;
        char name[32];

        snprintf(name, sizeof(name), "sc%d", i);
        if (libdm_dm_config_new(&cfg) < 0 || libdm_dm_config_set_name(cfg, name) < 0 ||
            libdm_dm_config_set_qemu_path(cfg, bu_qemu()) < 0 ||
            libdm_dm_config_set_machine(cfg, "none") < 0 ||
            libdm_dm_config_set_timeout_ms(cfg, 120000) < 0 ||
            libdm_dm_start_async(ctx, cfg, on_real_ready, &pending, &dms[i]) < 0)
            return 1;
        pending++;
        libdm_dm_config_free(cfg);
    }
    while (pending > 0 && bu_now_us() - t0 < 180e6)
        libdm_ctx_run_once(ctx, 100);
    for (int i = 0; i < n; i++)
        if (libdm_dm_get_state(dms[i]) == LIBDM_DM_PAUSED) {
            int keeper = ppid_of(libdm_dm_get_pid(dms[i]));
            long r = keeper > 0 ? vmrss_kib(keeper) : -1;

            ok++;
            if (r > 0)
                krss += r, kn++;
        }
    fd1 = fd_count();
    m1 = mallinfo2();
    getrlimit(RLIMIT_NOFILE, &rl);
    fds_per = ok ? (double)(fd1 - fd0) / ok : 0;
    heap_per = ok ? (double)(m1.uordblks - m0.uordblks) / ok : 0;
    printf("bench-scale: real keepers, %d of %d DMs ready (qemu -machine none) in %.0f ms\n",
           ok, n, (bu_now_us() - t0) / 1000.0);
    printf("  controlling process: %.2f fds per DM (%d -> %d, the helper's included), "
           "%.1f KiB heap per DM (mallinfo2)\n", fds_per, fd0, fd1, heap_per / 1024);
    printf("  keeper RSS: %.0f KiB mean (of %ld)\n", kn ? (double)krss / kn : 0.0, kn);
    printf("  extrapolated to 1,000 DMs: %.0f fds (soft limit %llu, hard %llu: %s), "
           "%.1f MiB heap\n", fd0 + 1000 * fds_per, (unsigned long long)rl.rlim_cur,
           (unsigned long long)rl.rlim_max,
           fd0 + 1000 * fds_per <= (double)rl.rlim_cur ? "fits" : "needs the soft limit raised",
           1000 * heap_per / (1024 * 1024));
    {
        char a[64];

        snprintf(a, sizeof(a), "%.2f fds, %.1f KiB heap", fds_per, heap_per / 1024);
        bu_result("scale: per real DM (controller)", a, "-", 0, "info", "-");
    }
    for (int i = 0; i < n; i++) {
        if (dms[i] && libdm_dm_get_state(dms[i]) != LIBDM_DM_DEAD)
            libdm_dm_stop(dms[i], 1, 10000);
        libdm_dm_release(dms[i]);
    }
    libdm_ctx_free(ctx);
    bu_rmtree(store);
    return ok == n ? 0 : 1;
}

static int real_keepers(int n)
{
    pid_t pid;
    int st = -1;

    fflush(stdout);
    pid = fork();
    if (pid == 0)
        _exit(real_keepers_child(n));
    if (pid < 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static pid_t start_server(const char *server, const char *path, int *ret_ctl)
{
    int in[2], out[2];
    char buf[16] = "";
    pid_t pid;

    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl(server, server, path, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pid < 0 || read(out[0], buf, sizeof(buf) - 1) <= 0 || strncmp(buf, "ready", 5)) {
        close(in[1]);
        close(out[0]);
        if (pid > 0)
            bu_reap(pid, 1000);
        return -1;
    }
    close(out[0]);
    *ret_ctl = in[1];
    return pid;
}

static void report(double conn[NSIZES][64], double tput[NSIZES][64], int runs,
                   const double *rss, const double *heap)
{
    double mc[NSIZES], mt[NSIZES], flat;
    char a[80], b[80];

    puts("bench-scale: one thread, one ctx, N connections to a fake QMP server");
    for (int k = 0; k < NSIZES; k++) {
        char label[64];

        snprintf(label, sizeof(label), "N=%d connect+negotiate", sizes[k]);
        bu_print_stats(label, conn[k], (size_t)runs, "ms");
        snprintf(label, sizeof(label), "N=%d aggregate throughput", sizes[k]);
        bu_print_stats(label, tput[k], (size_t)runs, "cmd/s");
        printf("  N=%d idle memory: %.0f B RSS/conn (%.0f B malloc'd/conn)\n", sizes[k],
               rss[k], heap[k]);
        mc[k] = bu_median(conn[k], (size_t)runs);
        mt[k] = bu_median(tput[k], (size_t)runs);
    }
    snprintf(a, sizeof(a), "%.1f ms", mc[2]);
    bu_result("scale: 1000 connect+negotiate", a, "-", 0, "< 1000 ms", mc[2] < 1000 ? "yes" : "NO");
    flat = mt[2] / mt[0];
    snprintf(a, sizeof(a), "%.0f cmd/s @1000", mt[2]);
    snprintf(b, sizeof(b), "%.0f cmd/s @10", mt[0]);
    bu_result("scale: throughput 1000 vs 10", a, b, flat, "0.80-1.20x",
              flat >= 0.8 && flat <= 1.2 ? "yes" : "NO");
    snprintf(a, sizeof(a), "%.1f KiB RSS (%.1f KiB heap)", rss[2] / 1024, heap[2] / 1024);
    bu_result("scale: memory per idle conn", a, "-", 0, "<= 32 KiB",
              rss[2] <= 32 * 1024 ? "yes" : "NO");
}

int main(int argc, char **argv)
{
    int runs = argc > 2 ? atoi(argv[2]) : 10, window = argc > 3 ? atoi(argv[3]) : 1000;
    static double conn[NSIZES][64], tput[NSIZES][64];
    double rss[NSIZES], heap[NSIZES];
    char *dir = bu_mkdtemp("scale"), path[512];
    int ctl = -1, fail = 0;
    pid_t srv;

    if (argc < 2 || runs < 1 || runs > 64 || !dir) {
        fprintf(stderr, "usage: bench-scale SERVER [RUNS<=64 [WINDOW-MS]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    bu_raise_nofile();
    snprintf(path, sizeof(path), "%s/fake.sock", dir);
    srv = start_server(argv[1], path, &ctl);
    if (srv < 0 || measure_memory(path, rss, heap) < 0) {
        fprintf(stderr, "bench-scale: %s failed\n", srv < 0 ? "server" : "memory");
        fail = 1;
    }
    for (int r = 0; r < runs && !fail; r++) {
        for (int k = 0; k < NSIZES && !fail; k++) {
            scale s;

            fail = scale_init(&s, sizes[k]) < 0;
            conn[k][r] = fail ? -1 : connect_all(&s, path);
            tput[k][r] = conn[k][r] < 0 ? -1 : throughput(&s, window);
            fail = fail || tput[k][r] < 0;
            scale_fini(&s);
        }
    }
    if (!fail)
        report(conn, tput, runs, rss, heap);
    else
        fprintf(stderr, "bench-scale: a run failed\n");
    if (ctl >= 0)
        close(ctl);
    if (srv > 0)
        bu_reap(srv, 5000);
    {
        const char *e = getenv("BENCH_SCALE_DMS");
        int n = e && *e ? atoi(e) : 64;

        if (n > 0 && real_keepers(n) < 0) {
            fprintf(stderr, "bench-scale: the real-keeper run failed\n");
            fail = 1;
        }
    }
    bu_rmtree(dir);
    return fail;
}
