/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl demo: the main job of libdm, step by step and timed: start a real
 * QEMU paused (restricted when root), show it ready by QMP, resume it, stop
 * it and show it is gone.
 */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dmctl.h"

enum {
    OPT_DEMO_QEMU = 0x3000,
    OPT_NO_RESTRICT,
};

static const struct option demo_opts[] = {
    { "qemu", required_argument, NULL, OPT_DEMO_QEMU },
    { "no-restrict", no_argument, NULL, OPT_NO_RESTRICT },
    { NULL, 0, NULL, 0 },
};

#define DEMO_RUNAS "64530:64530" /* a private uid: never nobody */

typedef struct demo {
    dmctl *d;
    char name[32];
    const char *qemu;        /* --qemu, or NULL */
    bool restricted;
    char *chroot_dir;        /* created by the demo, removed at the end */
    libdm_dm *dm;
    int pid;
    uint64_t begin_us, step_us;
    libdm_json *steps;       /* --json: the steps, reported at the end */
} demo;

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Reports a step that took the time since the previous one. */
static void step(demo *x, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void step(demo *x, const char *what, const char *fmt, ...)
{
    uint64_t t = now_us(), us = t - x->step_us;
    char detail[512];
    libdm_json *o;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    x->step_us = t;
    if (!x->d->json) {
        printf("[%7.1f ms] %s: %s\n", (double)us / 1000.0, what, detail);
        fflush(stdout);
        return;
    }
    o = libdm_json_new_object();
    if (o && dmctl_json_add_str(o, "step", what) && dmctl_json_add_int(o, "us", (int64_t)us)
        && dmctl_json_add_str(o, "detail", detail))
        libdm_json_array_append(x->steps, o);
    else
        libdm_json_free(o);
}

/* ---- set-up ---- */

static int make_chroot(demo *x)
{
    const char *tmp = getenv("TMPDIR");
    char tmpl[4096];

    snprintf(tmpl, sizeof(tmpl), "%s/libdm-demo-root-XXXXXX",
             tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(tmpl) || chmod(tmpl, 0755) < 0) {
        dmctl_error(x->name, "creating the chroot directory %s: %s", tmpl, strerror(errno));
        if (strstr(tmpl, "XXXXXX") == NULL)
            rmdir(tmpl);
        return DMCTL_EXIT_FAIL;
    }
    x->chroot_dir = strdup(tmpl);
    if (!x->chroot_dir) {
        rmdir(tmpl);
        return DMCTL_EXIT_FAIL;
    }
    return 0;
}

static int demo_setup(demo *x)
{
    int ex;

    if (!x->restricted) {
        step(x, "setup", "%s: running unrestricted (no -runas, -chroot or -sandbox)",
             geteuid() == 0 ? "--no-restrict" : "not root");
        return 0;
    }
    ex = make_chroot(x);
    if (!ex)
        step(x, "setup", "restricted: runas %s, chroot %s (empty, mode 0755), seccomp",
             DEMO_RUNAS, x->chroot_dir);
    return ex;
}

static int set(demo *x, int r, const char *what)
{
    if (r >= 0)
        return 0;
    dmctl_error(x->name, "configuring %s: %s", what, strerror(-r));
    return DMCTL_EXIT_FAIL;
}

static int demo_config(demo *x, libdm_dm_config *cfg)
{
    int ex = set(x, libdm_dm_config_set_name(cfg, x->name), "the name");

    ex = ex ? ex : set(x, libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_PLAIN), "the profile");
    ex = ex ? ex : set(x, libdm_dm_config_set_machine(cfg, "none"), "the machine");
    ex = ex ? ex : set(x, libdm_dm_config_set_timeout_ms(cfg, x->d->timeout_ms), "the timeout");
    if (!ex && x->qemu)
        ex = set(x, libdm_dm_config_set_qemu_path(cfg, x->qemu), "--qemu");
    if (!ex && x->restricted) {
        ex = set(x, libdm_dm_config_set_restrict(cfg, 1), "restriction");
        ex = ex ? ex : set(x, libdm_dm_config_set_runas(cfg, DEMO_RUNAS), "runas");
        ex = ex ? ex : set(x, libdm_dm_config_set_chroot(cfg, x->chroot_dir), "the chroot");
    }
    return ex;
}

/* ---- steps ---- */

static int demo_start(demo *x)
{
    libdm_dm_config *cfg = NULL;
    int r, ex;

    r = libdm_dm_config_new(&cfg);
    if (r < 0)
        return set(x, r, "a configuration");
    ex = demo_config(x, cfg);
    if (!ex) {
        r = libdm_dm_start(x->d->ctx, cfg, &x->dm);
        if (r < 0)
            ex = dmctl_report_dm(x->d, NULL, x->name, "start failed", r);
    }
    libdm_dm_config_free(cfg);
    if (ex)
        return ex;
    x->pid = libdm_dm_get_pid(x->dm);
    step(x, "start", "%s spawned paused (-S), pid %d, QMP %s", x->name, x->pid,
         libdm_dm_get_qmp_path(x->dm));
    if (x->restricted)
        step(x, "start", "confinement: %s", libdm_dm_get_confinement(x->dm));
    return 0;
}

static int demo_query(demo *x, const char *what, const char *detail)
{
    char *rs = NULL;
    int r = libdm_dm_query_status(x->dm, x->d->timeout_ms, &rs);

    if (r < 0)
        return dmctl_report_dm(x->d, x->dm, x->name, "query-status", r);
    step(x, what, "%s: query-status says %s", detail, rs);
    free(rs);
    return 0;
}

/* "Uid:" and "Seccomp:" of /proc/PID/status, as one line. */
static void proc_confinement(int pid, char *buf, size_t len)
{
    char path[64], line[256], root[256] = "?";
    unsigned uid = 0, seccomp = 0;
    bool have_uid = false;
    ssize_t n;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "re");
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "Uid: %*u %u", &uid) == 1)
            have_uid = true;
        sscanf(line, "Seccomp: %u", &seccomp);
    }
    if (f)
        fclose(f);
    snprintf(path, sizeof(path), "/proc/%d/root", pid);
    n = readlink(path, root, sizeof(root) - 1);
    root[n > 0 ? n : 1] = '\0';
    if (!have_uid) {
        snprintf(buf, len, "cannot read /proc/%d/status", pid);
        return;
    }
    snprintf(buf, len, "/proc/%d: effective uid %u%s, root %s, seccomp %s", pid, uid,
             uid == 0 ? " (NOT dropped)" : "", root,
             seccomp == 2 ? "filter on" : seccomp == 1 ? "strict" : "off");
}

static int demo_confinement(demo *x)
{
    char buf[512];

    if (!x->restricted)
        return 0;
    proc_confinement(x->pid, buf, sizeof(buf));
    step(x, "confined", "%s", buf);
    return 0;
}

static int demo_resume(demo *x)
{
    int r = libdm_dm_resume(x->dm, x->d->timeout_ms);

    if (r < 0)
        return dmctl_report_dm(x->d, x->dm, x->name, "resume", r);
    return demo_query(x, "resume", "guarded cont sent");
}

static bool record_gone(demo *x)
{
    libdm_dm *again = NULL;
    int r = libdm_dm_attach(x->d->ctx, x->name, &again);

    libdm_dm_release(again);
    dmctl_logger_discard(x->d->lg);   /* "no such device model" */
    return r == -ENOENT;
}

static int demo_stop(demo *x)
{
    char buf[64];
    bool gone;
    int r = libdm_dm_stop(x->dm, 0, x->d->timeout_ms);

    if (r < 0)
        return dmctl_report_dm(x->d, x->dm, x->name, "stop", r);
    gone = kill(x->pid, 0) < 0 && errno == ESRCH;
    step(x, "stop", "quit: %s, reaped; pid %d %s; record %s",
         dmctl_describe_wait(libdm_dm_get_exit_status(x->dm), buf, sizeof(buf)), x->pid,
         gone ? "is gone" : "STILL EXISTS", record_gone(x) ? "removed" : "STILL THERE");
    return gone ? 0 : DMCTL_EXIT_FAIL;
}

/* ---- driver ---- */

static int demo_report(demo *x, int ex)
{
    uint64_t total = now_us() - x->begin_us;
    bool interrupted = dmctl_signal_received() != 0;
    libdm_json *o;
    bool ok;

    if (!x->d->json) {
        printf("[%7.1f ms] total: %s\n", (double)total / 1000.0,
               ex ? "FAILED" : interrupted ? "interrupted" : "ok");
        return ex;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "name", x->name);
    ok = ok && dmctl_json_add_bool(o, "restricted", x->restricted);
    ok = ok && libdm_json_object_add(o, "steps", x->steps) >= 0;
    x->steps = NULL;
    ok = ok && dmctl_json_add_int(o, "total_us", (int64_t)total);
    ok = ok && dmctl_json_add_bool(o, "ok", ex == 0 && !interrupted);
    if (!ok)
        o = libdm_json_free(o);
    return dmctl_json_emit(o) ? DMCTL_EXIT_FAIL : ex;
}

/* Runs the steps; the DM is stopped whatever happened once it started. */
static int demo_run(demo *x)
{
    int ex = demo_setup(x), ex2;

    if (!ex)
        ex = demo_start(x);
    if (ex)
        return ex;
    if (!dmctl_signal_received())
        ex = demo_query(x, "ready", "by QMP alone");
    if (!ex && !dmctl_signal_received())
        ex = demo_confinement(x);
    if (!ex && !dmctl_signal_received())
        ex = demo_resume(x);
    if (dmctl_signal_received())
        dmctl_error(x->name, "interrupted: stopping the demo DM");
    ex2 = demo_stop(x);
    return ex ? ex : ex2;
}

static int demo_parse(demo *x, const dmctl_command *cmd, int argc, char **argv)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(x->d, cmd, argc, argv, demo_opts, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        if (c == OPT_DEMO_QEMU)
            x->qemu = optarg;
        else
            x->restricted = false;
    }
    return argc > optind ? dmctl_usage_error(cmd, "too many arguments") : 0;
}

int dmctl_cmd_demo(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("demo");
    demo x = { .d = d, .restricted = geteuid() == 0 };
    char *qemu = NULL;
    int ex;

    snprintf(x.name, sizeof(x.name), "demo-%d", (int)getpid());
    ex = demo_parse(&x, cmd, argc, argv);
    if (!ex && x.qemu && !(x.qemu = qemu = dmctl_absolute_path(x.qemu, true))) {
        dmctl_error("--qemu", "%s", strerror(errno));
        ex = DMCTL_EXIT_USAGE;
    }
    if (!ex)
        ex = dmctl_open_ctx(d);
    if (ex) {
        free(qemu);
        return ex;
    }
    x.steps = libdm_json_new_array();
    x.begin_us = x.step_us = now_us();
    ex = demo_report(&x, demo_run(&x));
    libdm_dm_release(x.dm);
    if (x.chroot_dir)
        rmdir(x.chroot_dir);
    free(x.chroot_dir);
    libdm_json_free(x.steps);
    free(qemu);
    return ex;
}
