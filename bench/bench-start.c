/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-start: start-to-ready of `qemu -S -nodefaults -display none
 * -machine none`, four ways, alternated in one process:
 *   floor-poll  fork/exec with -qmp unix:..., connect retried every 1 ms,
 *               greeting, qmp_capabilities, query-status;
 *   floor-fd    listening socket pre-bound and passed as -chardev fd=N,
 *               connected and the commands queued before exec (libxl's way);
 *   libdm       libdm_dm_start() (plain profile) until it returns;
 *   dmctl       `dmctl --store DIR start NAME --json` until it exits (its
 *               exit seen through a pidfd), and `dmctl --version` for the
 *               fixed price of exec, dynamic linking and exit.
 * libdm also runs with its keeper cloned fork-style (LIBDM_SPAWN_VM=0) and
 * with query-status written only after qmp_capabilities' reply
 * (LIBDM_QMP_PIPELINE=0, before issue 23's sixth step), alternated.
 * Stopping is outside the timed region. With BENCH_KEEPER_BASE=PATH (another
 * build's libdm-keeper, e.g. a dynamically linked one), libdm_dm_start is
 * also run with that keeper, alternated with LIBDM_KEEPER's in one process.
 * Usage: bench-start [RUNS] (env QEMU, DMCTL, LIBDM_KEEPER, BENCH_KEEPER_BASE).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "bench-parts.h"
#include "bench-util.h"

static bu_conn conn;
static const char *const none_machine[] = { "-machine", "none", NULL };

static double run_floor_poll(const char *dir)
{
    char path[512];
    double t0, t1;
    pid_t pid;

    snprintf(path, sizeof(path), "%s/poll.sock", dir);
    t0 = bu_now_us();
    pid = bu_spawn_qemu_unix(path, none_machine);
    if (pid < 0)
        return -1;
    conn.fd = bu_connect_retry(path, 10000);
    conn.len = conn.off = 0;
    if (conn.fd < 0 || bu_negotiate(&conn) < 0 ||
        bu_write_all(conn.fd, "{\"execute\":\"query-status\",\"id\":\"s\"}\n", 37) < 0 ||
        !bu_read_until(&conn, "\"return\"")) {
        bu_reap(pid, 0);
        return -1;
    }
    t1 = bu_now_us();
    bu_quit(&conn);
    bu_reap(pid, 5000);
    unlink(path);
    return (t1 - t0) / 1000.0;
}

/* @events: also the "events" migration capability, as libdm_dm_start sent
 * before issue 23's step 5 (QEMU 7.2 reads its monitor a byte per
 * main-loop turn: what each byte of a start's exchange costs, same run). */
static double run_floor_fd_cmds(const char *dir, bool events)
{
    static const char plain[] = "{\"execute\":\"qmp_capabilities\",\"id\":\"c\"}\n"
                                "{\"execute\":\"query-status\",\"id\":\"s\"}\n";
    static const char with_events[] =
        "{\"execute\":\"qmp_capabilities\",\"id\":\"c\"}\n"
        "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
        "[{\"capability\":\"events\",\"state\":true}]},\"id\":\"AVBeFDB\"}\n"
        "{\"execute\":\"query-status\",\"id\":\"s\"}\n";
    const char *cmds = events ? with_events : plain;
    char path[512], chardev[64];
    double t0, t1;
    int l;
    pid_t pid;

    snprintf(path, sizeof(path), "%s/fd.sock", dir);
    t0 = bu_now_us();
    l = bu_prebind(path, &conn.fd);
    if (l < 0)
        return -1;
    conn.len = conn.off = 0;
    bu_write_all(conn.fd, cmds, strlen(cmds));
    snprintf(chardev, sizeof(chardev), "socket,id=m,fd=%d,server=on,wait=off", l);
    char *argv[] = { (char *)bu_qemu(), (char *)"-S", (char *)"-nodefaults",
                     (char *)"-display", (char *)"none", (char *)"-machine", (char *)"none",
                     (char *)"-chardev", chardev, (char *)"-mon",
                     (char *)"chardev=m,mode=control", NULL };
    pid = bu_spawn(argv, l);
    close(l);
    if (pid < 0 || !bu_read_until(&conn, "\"id\": \"s\"")) {
        close(conn.fd);
        if (pid > 0)
            bu_reap(pid, 0);
        return -1;
    }
    t1 = bu_now_us();
    bu_quit(&conn);
    bu_reap(pid, 5000);
    unlink(path);
    return (t1 - t0) / 1000.0;
}

static double run_floor_fd(const char *dir)
{
    return run_floor_fd_cmds(dir, false);
}

static double run_libdm(libdm_ctx *ctx, libdm_dm_config *cfg)
{
    libdm_dm *dm = NULL;
    double t0 = bu_now_us(), t1;
    int r = libdm_dm_start(ctx, cfg, &dm);

    t1 = bu_now_us();
    if (r < 0) {
        fprintf(stderr, "bench-start: libdm_dm_start: %s\n", strerror(-r));
        return -1;
    }
    libdm_dm_stop(dm, 0, 5000);
    libdm_dm_release(dm);
    return (t1 - t0) / 1000.0;
}

/* Waits for @pid's exit through a pidfd (bu_reap() polls every 1 ms, which
 * would add up to 1 ms to an exec-to-exit time); SIGKILL after @timeout_ms. */
static int reap_exact(pid_t pid, int timeout_ms)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd p = { .fd = pfd, .events = POLLIN };
    int st = -1;

    if (pfd < 0)
        return bu_reap(pid, timeout_ms);
    while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
        ;
    if (!(p.revents & POLLIN))
        kill(pid, SIGKILL);
    close(pfd);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

static int run_cmd(char *const argv[])
{
    pid_t pid = bu_spawn(argv, -1);
    int st;

    if (pid < 0)
        return -1;
    st = reap_exact(pid, 30000);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The fixed price of any CLI: `dmctl --version`, exec to exit. */
static double run_dmctl_exec(const char *dmctl)
{
    char *argv[] = { (char *)dmctl, (char *)"--version", NULL };
    double t0 = bu_now_us();
    int r = run_cmd(argv);

    return r < 0 ? -1 : (bu_now_us() - t0) / 1000.0;
}

static double run_dmctl(const char *dmctl, const char *dir)
{
    char *start[] = { (char *)dmctl, (char *)"--store", (char *)dir, (char *)"start",
                      (char *)"bd", (char *)"--json", (char *)"--qemu", (char *)bu_qemu(), NULL };
    char *stop[] = { (char *)dmctl, (char *)"--store", (char *)dir, (char *)"stop",
                     (char *)"bd", NULL };
    double t0 = bu_now_us(), t1;
    int r = run_cmd(start);

    t1 = bu_now_us();
    run_cmd(stop);
    return r < 0 ? -1 : (t1 - t0) / 1000.0;
}

static void settle(libdm_ctx *ctx)
{
    /* The keepers are our children until they exit: let the context reap. */
    for (int i = 0; i < 200; i++)
        libdm_ctx_run_once(ctx, 5);
}

static const char *met(double ratio, double target)
{
    return ratio <= target ? "yes" : "NO";
}

/* libdm_dm_start() with @var=@value in the environment (libdm reads its
 * knobs at each start). */
static double run_libdm_with(libdm_ctx *ctx, libdm_dm_config *cfg, const char *var,
                             const char *value)
{
    double ms;

    setenv(var, value, 1);
    ms = run_libdm(ctx, cfg);
    unsetenv(var);
    return ms;
}

/* libdm_dm_start() with another DM of the context running (a daemon's
 * usual case), its keeper exec'd (LIBDM_KEEPER_HELPER=0, as before issue
 * 23's helper) or forked by the context's helper (the default then). */
static double run_libdm_beside(libdm_ctx *ctx, libdm_dm_config *cfg, bool helper)
{
    return run_libdm_with(ctx, cfg, "LIBDM_KEEPER_HELPER", helper ? "1" : "0");
}

/* libdm_dm_start() with the keeper cloned fork-style (LIBDM_SPAWN_VM=0, as
 * before spawn-vm.c): the caller's page tables copied. */
static double run_libdm_forkstyle(libdm_ctx *ctx, libdm_dm_config *cfg)
{
    return run_libdm_with(ctx, cfg, "LIBDM_SPAWN_VM", "0");
}

/* libdm_dm_start() as before issue 23's sixth step: query-status written
 * only once qmp_capabilities answered (LIBDM_QMP_PIPELINE=0). */
static double run_libdm_unpiped(libdm_ctx *ctx, libdm_dm_config *cfg)
{
    return run_libdm_with(ctx, cfg, "LIBDM_QMP_PIPELINE", "0");
}

/* libdm_dm_start() with the keeper at @path (BENCH_KEEPER_BASE). */
static double run_libdm_keeper(libdm_ctx *ctx, libdm_dm_config *cfg, const char *path)
{
    char *own = strdup(getenv("LIBDM_KEEPER") ? getenv("LIBDM_KEEPER") : "");
    double ms;

    setenv("LIBDM_KEEPER", path, 1);
    ms = run_libdm(ctx, cfg);
    setenv("LIBDM_KEEPER", own ? own : "", 1);
    free(own);
    return ms;
}

/* A variant of libdm_dm_start() (@what, @tag in the ratio's baseline
 * column) against the default and against floor-fd. */
static void report_variant(const double *lib, const double *var, const double *fd, int n,
                           const char *what, const char *tag)
{
    double ml = bu_median((double *)lib, (size_t)n), mv = bu_median((double *)var, (size_t)n),
           mf = bu_median((double *)fd, (size_t)n);
    char a[64], b[64], name[128];

    snprintf(name, sizeof(name), "libdm_dm_start, %s", what);
    bu_print_stats(name, (double *)var, (size_t)n, "ms");
    snprintf(a, sizeof(a), "%.1f ms", ml);
    snprintf(b, sizeof(b), "%.1f ms (%s)", mv, tag);
    snprintf(name, sizeof(name), "start: libdm_dm_start vs %s", what);
    bu_result(name, a, b, ml / mv, "info", "-");
    snprintf(a, sizeof(a), "%.1f ms", mv);
    snprintf(b, sizeof(b), "%.1f ms (fd)", mf);
    snprintf(name, sizeof(name), "start: libdm_dm_start, %s", what);
    bu_result(name, a, b, mv / mf, "info", "-");
}

static void report_beside(double *fd, double *ex, double *hp, int n)
{
    double mf = bu_median(fd, (size_t)n), me = bu_median(ex, (size_t)n),
           mh = bu_median(hp, (size_t)n);
    char a[64], b[64];

    puts("bench-start: libdm_dm_start with another DM of the context running (ms)");
    bu_print_stats("keeper exec'd (LIBDM_KEEPER_HELPER=0)", ex, (size_t)n, "ms");
    bu_print_stats("keeper forked by the helper", hp, (size_t)n, "ms");
    snprintf(a, sizeof(a), "%.1f ms", me);
    snprintf(b, sizeof(b), "%.1f ms (fd)", mf);
    bu_result("start beside a DM: keeper exec'd", a, b, me / mf, "info", "-");
    snprintf(a, sizeof(a), "%.1f ms", mh);
    bu_result("start beside a DM: keeper forked", a, b, mh / mf, "<= 1.05x (issue 23)",
              met(mh / mf, 1.05));
    snprintf(b, sizeof(b), "%.1f ms (exec'd)", me);
    bu_result("start beside a DM: forked vs exec'd", a, b, mh / me, "info", "-");
}

static void report(double *poll_, double *fd, double *lib, double *ctl, double *exe,
                   const double *fk, int n, bool have_ctl, const char *store)
{
    double mp, mf, ml, mc = 0, me;
    char a[64], b[64];

    puts("bench-start: start-to-ready of qemu -machine none (ms)");
    bu_print_stats("floor-poll (connect retry 1 ms)", poll_, (size_t)n, "ms");
    bu_print_stats("floor-fd (pre-bound socket)", fd, (size_t)n, "ms");
    bu_print_stats("libdm_dm_start", lib, (size_t)n, "ms");
    bu_print_stats("libdm_dm_start, fork-style clone", (double *)fk, (size_t)n, "ms");
    if (have_ctl)
    {
        bu_print_stats("dmctl start (exec to exit)", ctl, (size_t)n, "ms");
        bu_print_stats("dmctl --version (exec to exit)", exe, (size_t)n, "ms");
    } else
        puts("  dmctl: not built");
    mp = bu_median(poll_, (size_t)n);
    mf = bu_median(fd, (size_t)n);
    ml = bu_median(lib, (size_t)n);
    snprintf(b, sizeof(b), "%.1f ms (poll)", mp);
    snprintf(a, sizeof(a), "%.1f ms", ml);
    bu_result("start: libdm vs floor-poll", a, b, ml / mp, "info", "-");
    snprintf(b, sizeof(b), "%.1f ms (fd)", mf);
    bu_result("start: libdm_dm_start", a, b, ml / mf, "<= 1.05x (issue 23)", met(ml / mf, 1.05));
    snprintf(b, sizeof(b), "%.1f ms (fork-style clone)", bu_median((double *)fk, (size_t)n));
    bu_result("start: CLONE_VM vs fork-style clone", a, b, ml / bu_median((double *)fk, (size_t)n),
              "info", "-");
    bp_breakdown(store, mf, ml, "wall");
    if (have_ctl) {
        mc = bu_median(ctl, (size_t)n);
        snprintf(a, sizeof(a), "%.1f ms", mc);
        snprintf(b, sizeof(b), "%.1f ms (poll)", mp);
        bu_result("start: dmctl start", a, b, mc / mp, "<= 1.10x", met(mc / mp, 1.10));
        me = bu_median(exe, (size_t)n);
        snprintf(a, sizeof(a), "%.1f ms", mc - me);
        snprintf(b, sizeof(b), "%.1f ms (libdm)", ml);
        bu_result("start: dmctl minus its exec", a, b, (mc - me) / ml, "info", "-");
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 15;
    const char *dmctl = getenv("DMCTL");
    bool have_ctl = dmctl && access(dmctl, X_OK) == 0;
    double *p = calloc((size_t)n, sizeof(double)), *f = calloc((size_t)n, sizeof(double));
    double *l = calloc((size_t)n, sizeof(double)), *c = calloc((size_t)n, sizeof(double));
    double *e = calloc((size_t)n, sizeof(double)), *fk = calloc((size_t)n, sizeof(double));
    double *bx = calloc((size_t)n, sizeof(double)), *bh = calloc((size_t)n, sizeof(double));
    double *kb = calloc((size_t)n, sizeof(double)), *fe = calloc((size_t)n, sizeof(double));
    double *up = calloc((size_t)n, sizeof(double));
    const char *base = getenv("BENCH_KEEPER_BASE");
    libdm_dm_config *ccfg = NULL;
    libdm_dm *companion = NULL;
    char *dir = bu_mkdtemp("start"), *store = bu_mkdtemp("start-store");
    char *ctlstore = bu_mkdtemp("start-dmctl");
    libdm_ctx *ctx = NULL;
    libdm_dm_config *cfg = NULL;
    int fail = 0;

    if (n < 1 || !p || !f || !l || !c || !e || !fk || !bx || !bh || !kb || !up || !dir || !store || !ctlstore ||
        libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, store) < 0 ||
        libdm_dm_config_new(&cfg) < 0 || libdm_dm_config_set_name(cfg, "bs") < 0 ||
        libdm_dm_config_set_qemu_path(cfg, bu_qemu()) < 0 ||
        libdm_dm_config_set_machine(cfg, "none") < 0) {
        fprintf(stderr, "bench-start: setup failed\n");
        return 1;
    }
    for (int i = 0; i < n && !fail; i++) {
        p[i] = run_floor_poll(dir);
        f[i] = run_floor_fd(dir);
        fe[i] = run_floor_fd_cmds(dir, true);
        if (i % 2) {
            l[i] = run_libdm(ctx, cfg);
            settle(ctx);
            fk[i] = run_libdm_forkstyle(ctx, cfg);
            settle(ctx);
            up[i] = run_libdm_unpiped(ctx, cfg);
        } else {
            up[i] = run_libdm_unpiped(ctx, cfg);
            settle(ctx);
            fk[i] = run_libdm_forkstyle(ctx, cfg);
            settle(ctx);
            l[i] = run_libdm(ctx, cfg);
        }
        settle(ctx);
        if (base) {
            kb[i] = run_libdm_keeper(ctx, cfg, base);
            settle(ctx);
        }
        c[i] = have_ctl ? run_dmctl(dmctl, ctlstore) : 0;
        e[i] = have_ctl ? run_dmctl_exec(dmctl) : 0;
        fail = p[i] < 0 || f[i] < 0 || l[i] < 0 || fk[i] < 0 || c[i] < 0 || e[i] < 0 ||
               kb[i] < 0 || fe[i] < 0 || up[i] < 0;
    }
    if (!fail) {
        char a[64], b[64];
        double mfe = bu_median(fe, (size_t)n), mf = bu_median(f, (size_t)n);

        report(p, f, l, c, e, fk, n, have_ctl, store);
        snprintf(a, sizeof(a), "%.1f ms", mfe);
        snprintf(b, sizeof(b), "%.1f ms (fd)", mf);
        bu_result("start: floor-fd + the events capability (no longer sent)", a, b, mfe / mf,
                  "info", "-");
        report_variant(l, up, f, n, "readiness not pipelined (before)", "not pipelined");
    }
    if (!fail && base) {
        printf("bench-start: the baseline keeper %s, alternated\n", base);
        report_variant(l, kb, f, n, "baseline keeper", "base keeper");
    }
    else if (fail)
        fprintf(stderr, "bench-start: a run failed\n");
    /* Then the same start beside a running DM: exec'd against forked,
     * alternated (which goes first rotates), against floor-fd. */
    if (!fail && (libdm_dm_config_new(&ccfg) < 0 || libdm_dm_config_set_name(ccfg, "bs-c") < 0 ||
                  libdm_dm_config_set_qemu_path(ccfg, bu_qemu()) < 0 ||
                  libdm_dm_config_set_machine(ccfg, "none") < 0 ||
                  libdm_dm_start(ctx, ccfg, &companion) < 0)) {
        fprintf(stderr, "bench-start: cannot start the companion DM\n");
        fail = 1;
    }
    for (int i = 0; i < n && !fail; i++) {
        f[i] = run_floor_fd(dir);
        if (i % 2) {
            bh[i] = run_libdm_beside(ctx, cfg, true);
            bx[i] = run_libdm_beside(ctx, cfg, false);
        } else {
            bx[i] = run_libdm_beside(ctx, cfg, false);
            bh[i] = run_libdm_beside(ctx, cfg, true);
        }
        fail = f[i] < 0 || bx[i] < 0 || bh[i] < 0;
    }
    if (!fail)
        report_beside(f, bx, bh, n);
    if (companion) {
        libdm_dm_stop(companion, 0, 5000);
        libdm_dm_release(companion);
    }
    libdm_dm_config_free(ccfg);
    libdm_dm_config_free(cfg);
    libdm_ctx_free(ctx);
    bu_rmtree(dir);
    bu_rmtree(store);
    bu_rmtree(ctlstore);
    return fail;
}
