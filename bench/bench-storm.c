/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-storm: time until N device models started at once are all ready
 * (QMP prelaunch), alternated in one process:
 *   floor  for each DM: a non-blocking listening socket pre-bound, a client
 *          connected to it and qmp_capabilities + query-status queued
 *          before fork/exec (libxl's way); all N exec'd back to back, then
 *          one poll() loop until every query-status reply is in;
 *   libdm  libdm_dm_start_async() for all N, then libdm_ctx_run_once()
 *          until every callback ran.
 * Both run the same command line: the floor's argv is the one
 * libdm_dm_config_build_argv() gives for the same configuration
 * (qemu -S -nodefaults -no-user-config -display none -name guest=..
 * -machine none, monitor on the passed fd). Stopping is outside the timed
 * region; every QEMU is quit (SIGKILL after 5 s) and reaped, every keeper
 * reaped, and the program checks it has no child left.
 *
 * Usage: bench-storm [--n N]... [--runs R] [--timeout-ms MS]
 * (default --n 16 --n 64 --runs 5; each run bounded by --timeout-ms,
 * default 120000). Env: QEMU, LIBDM_KEEPER.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "bench-parts.h"
#include "bench-util.h"

#define MAX_NS 8
#define MAX_DM 1024

static int timeout_ms = 120000;
/* Of the last run: how long issuing all N starts took (ms), and the CPU
 * (user + system, ms) this process and its reaped children used, start
 * and stop included. */
static double last_issue_ms, last_cpu_ms;

static double cpu_ms(void)
{
    struct rusage s, c;

    getrusage(RUSAGE_SELF, &s);
    getrusage(RUSAGE_CHILDREN, &c);
    return (double)(s.ru_utime.tv_sec + s.ru_stime.tv_sec + c.ru_utime.tv_sec +
                    c.ru_stime.tv_sec) * 1e3 +
           (double)(s.ru_utime.tv_usec + s.ru_stime.tv_usec + c.ru_utime.tv_usec +
                    c.ru_stime.tv_usec) / 1e3;
}

/* ------------------------------------------------------------------ floor */

typedef struct fl_dm {
    pid_t pid;
    int fd;           /* our client end */
    bool ready;
    size_t len;
    char buf[4096];
} fl_dm;

/* Lines of @d's buffer; true once the query-status reply was seen. */
static bool fl_scan(fl_dm *d)
{
    char *nl;

    while ((nl = memchr(d->buf, '\n', d->len))) {
        size_t n = (size_t)(nl - d->buf) + 1;

        *nl = '\0';
        if (strstr(d->buf, "\"id\": \"s\"") && strstr(d->buf, "\"return\""))
            return true;
        memmove(d->buf, d->buf + n, d->len - n);
        d->len -= n;
    }
    if (d->len == sizeof(d->buf))
        d->len = 0;   /* an over-long line (not a reply we wait for) */
    return false;
}

static void fl_stop(fl_dm *dms, int n)
{
    static const char quit[] = "{\"execute\":\"quit\"}\n";

    for (int i = 0; i < n; i++)
        if (dms[i].fd >= 0) {
            (void)bu_write_all(dms[i].fd, quit, sizeof(quit) - 1);
            shutdown(dms[i].fd, SHUT_WR);
        }
    for (int i = 0; i < n; i++) {
        if (dms[i].pid > 0)
            bu_reap(dms[i].pid, 5000);
        if (dms[i].fd >= 0)
            close(dms[i].fd);
        dms[i].pid = -1;
        dms[i].fd = -1;
    }
}

static double run_floor(libdm_dm_config **cfgs, int n, const char *dir)
{
    static const char cmds[] = "{\"execute\":\"qmp_capabilities\",\"id\":\"c\"}\n"
                               "{\"execute\":\"query-status\",\"id\":\"s\"}\n";
    fl_dm *dms = calloc((size_t)n, sizeof(*dms));
    struct pollfd *pfd = calloc((size_t)n, sizeof(*pfd));
    double t0, t1 = -1, deadline;
    int ready = 0, fail = 0;

    if (!dms || !pfd)
        return -1;
    for (int i = 0; i < n; i++)
        dms[i].fd = -1, dms[i].pid = -1;
    last_cpu_ms = cpu_ms();
    t0 = bu_now_us();
    deadline = t0 + timeout_ms * 1000.0;
    for (int i = 0; i < n && !fail; i++) {
        char path[512], **argv = NULL;
        int l;

        snprintf(path, sizeof(path), "%s/f%d.sock", dir, i);
        l = bu_prebind(path, &dms[i].fd);
        if (l < 0 || bu_write_all(dms[i].fd, cmds, sizeof(cmds) - 1) < 0 ||
            libdm_dm_config_build_argv(cfgs[i], l, &argv) < 0) {
            fail = 1;
        } else {
            dms[i].pid = bu_spawn(argv, l);
            fail = dms[i].pid < 0;
        }
        libdm_strv_free(argv);
        if (l >= 0)
            close(l);
        unlink(path);   /* the bound socket lives on in QEMU's fd */
    }
    last_issue_ms = (bu_now_us() - t0) / 1000.0;
    while (!fail && ready < n) {
        int k = 0, r, wait = (int)((deadline - bu_now_us()) / 1000);

        if (wait <= 0) {
            fprintf(stderr, "bench-storm: floor: %d of %d ready at the deadline\n", ready, n);
            fail = 1;
            break;
        }
        for (int i = 0; i < n; i++)
            if (!dms[i].ready)
                pfd[k++] = (struct pollfd){ .fd = dms[i].fd, .events = POLLIN };
        r = poll(pfd, (nfds_t)k, wait);
        if (r < 0 && errno != EINTR)
            fail = 1;
        for (int j = 0, i = 0; r > 0 && j < k; j++) {
            if (!pfd[j].revents)
                continue;
            while (dms[i].fd != pfd[j].fd)
                i++;
            ssize_t got = read(dms[i].fd, dms[i].buf + dms[i].len,
                               sizeof(dms[i].buf) - dms[i].len);
            if (got <= 0) {
                int st = -1;

                fprintf(stderr, "bench-storm: floor: DM %d closed its monitor (%s)", i,
                        got < 0 ? strerror(errno) : "EOF");
                if (waitpid(dms[i].pid, &st, WNOHANG) == dms[i].pid) {
                    fprintf(stderr, ", QEMU exited with status 0x%x", st);
                    dms[i].pid = -1;
                }
                fputc('\n', stderr);
                fail = 1;
                break;
            }
            dms[i].len += (size_t)got;
            if (fl_scan(&dms[i])) {
                dms[i].ready = true;
                ready++;
            }
        }
    }
    if (!fail)
        t1 = bu_now_us();
    fl_stop(dms, n);
    last_cpu_ms = cpu_ms() - last_cpu_ms;
    free(dms);
    free(pfd);
    return t1 < 0 ? -1 : (t1 - t0) / 1000.0;
}

/* ------------------------------------------------------------------ libdm */

typedef struct lib_state {
    int pending;
    int failed;
} lib_state;

static void on_started(libdm_dm *dm, int status, void *userdata)
{
    lib_state *s = userdata;

    if (status < 0) {
        fprintf(stderr, "bench-storm: %s: %s\n", libdm_dm_get_name(dm),
                libdm_dm_last_error(dm) ? libdm_dm_last_error(dm) : strerror(-status));
        s->failed++;
    }
    s->pending--;
}

static void on_stopped(libdm_dm *dm, int status, void *userdata)
{
    lib_state *s = userdata;

    if (status < 0) {
        fprintf(stderr, "bench-storm: stop %s: %s\n", libdm_dm_get_name(dm), strerror(-status));
        s->failed++;
    }
    s->pending--;
}

static void run_until(libdm_ctx *ctx, lib_state *s, double deadline)
{
    while (s->pending > 0 && bu_now_us() < deadline)
        if (libdm_ctx_run_once(ctx, 100) < 0)
            break;
}

/* Lets the context reap the keepers of stopped DMs. */
static void settle(libdm_ctx *ctx)
{
    double end = bu_now_us() + 5e6;

    while (!libdm_ctx_is_idle(ctx) && bu_now_us() < end)
        libdm_ctx_run_once(ctx, 10);
    for (int i = 0; i < 20; i++)
        libdm_ctx_run_once(ctx, 5);
}

/* One context per run, freed within the run: the keeper helper (issue 23)
 * exits with it and is reaped, so that its CPU and its keepers' (and
 * through them QEMU's) is counted here (RUSAGE_CHILDREN). @helper: the
 * keepers forked by the helper (the default), or each exec'd
 * (LIBDM_KEEPER_HELPER=0, as before). */
static double run_libdm(const char *store, libdm_dm_config **cfgs, int n, bool helper)
{
    libdm_dm **dms = calloc((size_t)n, sizeof(*dms));
    lib_state s = { 0, 0 };
    double t0, t1 = -1;
    int started = 0;
    libdm_ctx *ctx = NULL;

    if (!dms)
        return -1;
    if (!helper)
        setenv("LIBDM_KEEPER_HELPER", "0", 1);
    last_cpu_ms = cpu_ms();
    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, store) < 0) {
        free(dms);
        return -1;
    }
    t0 = bu_now_us();
    for (int i = 0; i < n; i++) {
        int r = libdm_dm_start_async(ctx, cfgs[i], on_started, &s, &dms[i]);

        if (r < 0) {
            fprintf(stderr, "bench-storm: libdm_dm_start_async: %s\n", strerror(-r));
            dms[i] = NULL;
            s.failed++;
            break;
        }
        s.pending++;
        started++;
    }
    last_issue_ms = (bu_now_us() - t0) / 1000.0;
    run_until(ctx, &s, t0 + timeout_ms * 1000.0);
    if (s.pending == 0 && s.failed == 0)
        t1 = bu_now_us();
    else if (s.pending)
        fprintf(stderr, "bench-storm: libdm: %d of %d not ready at the deadline\n", s.pending, n);
    /* Stop every DM that has a handle (a failed start was already ended). */
    s.pending = 0;
    for (int i = 0; i < started; i++) {
        libdm_dm_state st = libdm_dm_get_state(dms[i]);

        if (st == LIBDM_DM_DEAD)
            continue;
        if (libdm_dm_stop_async(dms[i], 0, 5000, on_stopped, &s) == 0)
            s.pending++;
        else
            libdm_dm_stop(dms[i], 1, 5000);
    }
    run_until(ctx, &s, bu_now_us() + 60e6);
    for (int i = 0; i < started; i++)
        libdm_dm_release(dms[i]);
    settle(ctx);
    libdm_ctx_free(ctx);
    last_cpu_ms = cpu_ms() - last_cpu_ms;
    unsetenv("LIBDM_KEEPER_HELPER");
    free(dms);
    return t1 < 0 ? -1 : (t1 - t0) / 1000.0;
}

/* ------------------------------------------------------------------- main */

static int children_left(void)
{
    int left = 0, st;
    pid_t p;

    /* Anything still ours gets killed and reaped, and counted. */
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        left++;
    if (p == 0) {
        fprintf(stderr, "bench-storm: children still running at exit\n");
        left++;
    }
    return left;
}

int main(int argc, char **argv)
{
    int ns[MAX_NS], nn = 0, runs = 5, fail = 0, maxn = 0, retries = 0;
    char *dir = bu_mkdtemp("storm"), *store = bu_mkdtemp("storm-store");
    libdm_dm_config **cfgs;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc && nn < MAX_NS)
            ns[nn++] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
            timeout_ms = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench-storm [--n N]... [--runs R] [--timeout-ms MS]\n");
            return 2;
        }
    }
    if (nn == 0) {
        ns[nn++] = 16;
        ns[nn++] = 64;
    }
    for (int i = 0; i < nn; i++) {
        if (ns[i] < 1 || ns[i] > MAX_DM) {
            fprintf(stderr, "bench-storm: --n must be 1..%d\n", MAX_DM);
            return 2;
        }
        if (ns[i] > maxn)
            maxn = ns[i];
    }
    if (runs < 1 || timeout_ms < 1000 || !dir || !store)
        return 2;
    /* A QEMU that closed its monitor must not kill us in the "quit" write
     * and leave the others unreaped. */
    signal(SIGPIPE, SIG_IGN);
    bu_raise_nofile();
    cfgs = calloc((size_t)maxn, sizeof(*cfgs));
    if (!cfgs)
        return 1;
    for (int i = 0; i < maxn; i++) {
        char name[16];

        snprintf(name, sizeof(name), "st%d", i);
        if (libdm_dm_config_new(&cfgs[i]) < 0 || libdm_dm_config_set_name(cfgs[i], name) < 0 ||
            libdm_dm_config_set_qemu_path(cfgs[i], bu_qemu()) < 0 ||
            libdm_dm_config_set_machine(cfgs[i], "none") < 0 ||
            libdm_dm_config_set_timeout_ms(cfgs[i], timeout_ms) < 0)
            return 1;
    }
    printf("bench-storm: N DMs started at once, time until all are ready (ms), %d runs each\n",
           runs);
    for (int k = 0; k < nn && !fail; k++) {
        int n = ns[k];
        double *f = calloc((size_t)runs, sizeof(double)), *l = calloc((size_t)runs, sizeof(double));
        double fi[runs], li[runs], fc[runs], lc[runs], x[runs], xi[runs], xc[runs];
        double mf, ml, lo_r, hi_r;
        char a[64], b[64], name[64], label[64];

        if (!f || !l)
            return 1;
        for (int i = 0, attempt = 0; i < runs && !fail; i++) {
            /* Alternate which goes first, so neither always meets the
             * other's leftovers (page cache, reaping). */
            /* The three sides in a rotating order: floor, libdm with its
             * keepers forked by the helper, libdm with each exec'd. */
            f[i] = l[i] = x[i] = 0;
            for (int side = 0; side < 3; side++) {
                switch ((side + i) % 3) {
                case 0:
                    f[i] = run_floor(cfgs, n, dir);
                    fi[i] = last_issue_ms, fc[i] = last_cpu_ms;
                    break;
                case 1:
                    l[i] = run_libdm(store, cfgs, n, true);
                    li[i] = last_issue_ms, lc[i] = last_cpu_ms;
                    break;
                default:
                    x[i] = run_libdm(store, cfgs, n, false);
                    xi[i] = last_issue_ms, xc[i] = last_cpu_ms;
                    break;
                }
                if (f[i] < 0 || l[i] < 0 || x[i] < 0)
                    break;
            }
            fail = f[i] < 0 || l[i] < 0 || x[i] < 0;
            /* A rare QEMU that closes its monitor at start (seen once in
             * ~100 floor runs) costs a retry, not the benchmark; reported. */
            if (fail && ++attempt < 3) {
                fprintf(stderr, "bench-storm: N=%d run %d failed; retrying it\n", n, i + 1);
                retries++;
                fail = 0;
                i--;
                continue;
            }
            attempt = 0;
            if (!fail)
                printf("    N=%-4d run %d: floor %8.1f ms  libdm %8.1f ms  (%.3fx)  exec'd "
                       "keepers %8.1f ms (%.3fx)   issuing all: floor %6.1f ms, libdm %6.1f ms"
                       "   CPU incl. stop: floor %6.0f ms, libdm %6.0f ms (%.3fx), exec'd "
                       "keepers %6.0f ms (%.3fx)\n", n, i + 1, f[i], l[i], l[i] / f[i], x[i],
                       x[i] / f[i], fi[i], li[i], fc[i], lc[i], lc[i] / fc[i], xc[i],
                       xc[i] / fc[i]);
            fflush(stdout);
        }
        if (fail) {
            fprintf(stderr, "bench-storm: a run failed at N=%d\n", n);
            free(f);
            free(l);
            break;
        }
        /* Per-run ratios (paired), before the medians sort the arrays. */
        lo_r = 1e9, hi_r = 0;
        for (int i = 0; i < runs; i++) {
            double r = l[i] / f[i];
            lo_r = r < lo_r ? r : lo_r;
            hi_r = r > hi_r ? r : hi_r;
        }
        snprintf(label, sizeof(label), "N=%d floor (pre-bound, exec)", n);
        bu_print_stats(label, f, (size_t)runs, "ms");
        snprintf(label, sizeof(label), "N=%d libdm_dm_start_async", n);
        bu_print_stats(label, l, (size_t)runs, "ms");
        snprintf(label, sizeof(label), "N=%d libdm, keepers exec'd", n);
        bu_print_stats(label, x, (size_t)runs, "ms");
        printf("  N=%d keepers exec'd (LIBDM_KEEPER_HELPER=0): wall %.3fx, CPU %.0f ms (%.3fx) "
               "of the floor\n", n, bu_median(x, (size_t)runs) / bu_median(f, (size_t)runs),
               bu_median(xc, (size_t)runs),
               bu_median(xc, (size_t)runs) / bu_median(fc, (size_t)runs));
        (void)xi;
        mf = bu_median(f, (size_t)runs);
        ml = bu_median(l, (size_t)runs);
        printf("  N=%d ratio of medians %.3fx (per-run ratios %.3f-%.3f)\n", n, ml / mf, lo_r,
               hi_r);
        printf("  N=%d medians: issuing all starts floor %.1f ms, libdm %.1f ms; CPU (this "
               "process + children, start and stop) floor %.0f ms, libdm %.0f ms (%.2fx)\n", n,
               bu_median(fi, (size_t)runs), bu_median(li, (size_t)runs),
               bu_median(fc, (size_t)runs), bu_median(lc, (size_t)runs),
               bu_median(lc, (size_t)runs) / bu_median(fc, (size_t)runs));
        bp_breakdown(store, bu_median(fc, (size_t)runs) / n, bu_median(lc, (size_t)runs) / n,
                     "CPU");
        snprintf(name, sizeof(name), "storm: %d DMs CPU", n);
        snprintf(a, sizeof(a), "%.0f ms", bu_median(lc, (size_t)runs));
        snprintf(b, sizeof(b), "%.0f ms", bu_median(fc, (size_t)runs));
        bu_result(name, a, b, bu_median(lc, (size_t)runs) / bu_median(fc, (size_t)runs),
                  "<= 1.10x (issue 23)",
                  bu_median(lc, (size_t)runs) <= 1.10 * bu_median(fc, (size_t)runs) ? "yes" : "NO");
        snprintf(name, sizeof(name), "storm: %d DMs all ready", n);
        snprintf(a, sizeof(a), "%.1f ms", ml);
        snprintf(b, sizeof(b), "%.1f ms (pre-bound)", mf);
        bu_result(name, a, b, ml / mf, "<= 1.05x (issue 23)", ml / mf <= 1.05 ? "yes" : "NO");
        free(f);
        free(l);
    }
    for (int i = 0; i < maxn; i++)
        libdm_dm_config_free(cfgs[i]);
    free(cfgs);
    {
        int left = children_left();

        printf("  children left at exit: %d; runs retried after a failure: %d\n", left, retries);
        fail = fail || left;
    }
    bu_rmtree(dir);
    bu_rmtree(store);
    return fail;
}
