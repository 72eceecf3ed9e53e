/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm-xl-dm: libxl's device model, run by libdm. An xl.cfg names it
 *
 *     device_model_override = "/usr/libexec/libdm-xl-dm"
 *
 * and libxl executes it with the full QEMU command line it built for the
 * domain, and its environment. Nothing of Xen changes.
 *
 * It takes that argv as it is (libdm_dm_config_set_argv) and starts QEMU
 * under libdm's keeper, paused (-S), with libdm's own monitor beside
 * libxl's: libxl's keeps working for libxl (query-status, query-chardev,
 * cont, xl qemu-monitor-command...). Under dm_restrict libxl binds
 * /var/run/xen/qmp-libxl-<domid> itself and passes it as
 * "-chardev socket,id=libxl-cmd,fd=N": that fd is handed through to QEMU
 * (renumbered); libdm's monitor is in its run directory, never at libxl's
 * path. libxl's -runas and -chroot are libdm's too, so the keeper adds its
 * confinement (mount and IPC namespaces, rlimits, no_new_privs, seccomp) to
 * libxl's. libdm's readiness comes from its QMP alone; if libxl did not ask
 * for -S (it waits for QEMU's "running" in xenstore then), libdm resumes
 * the DM once ready, as QEMU would have run by itself. A restore
 * ("-incoming fd:N", libxl's saved device state) hands N to QEMU and is
 * resumed, if libxl asked for no -S, only once QMP says the load completed.
 *
 * It keeps libxl's contract for a DM process: it stays alive while the DM
 * lives (libxl records its pid and signals it); SIGHUP, SIGTERM or SIGINT
 * become a clean libdm stop (quit, then SIGTERM, SIGKILL); when the DM ends
 * by itself (or is killed by libxl's uid reaper) it removes what libdm made
 * and exits, 0 after a stop, 1 otherwise. Logs go where libxl sends them:
 * libxl opens /var/log/xen/qemu-dm-<name>.log as its DM's stdout and
 * stderr; our messages, the keeper's and QEMU's output all go there, QEMU's
 * through the keeper's pipe, capped at 256 KiB (libdm_dm_config_set_log_fd).
 * Under dm_restrict libxl gave us its RLIMIT_FSIZE of 256 KiB (meant for
 * QEMU, and it cannot be lifted without CAP_SYS_RESOURCE): the keeper
 * keeps QEMU's part of the log below it, with room for the messages that
 * follow (a write past it would end the writer with SIGXFSZ).
 *
 * Environment: LIBDM_XL_DM_QEMU (the QEMU binary, default the configured
 * Xen device model), LIBDM_XL_DM_STORE (libdm's store, default dmctl's:
 * xenstore when a xenstored answers, so a plain `dmctl list` shows it),
 * LIBDM_LOG, LIBDM_KEEPER.
 */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DEFAULT_STORE "auto"
#define STOP_TIMEOUT_MS 5000

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void die(const char *fmt, const char *arg, int err)
{
    fprintf(stderr, "libdm-xl-dm: ");
    fprintf(stderr, fmt, arg);
    if (err)
        fprintf(stderr, ": %s", strerror(err));
    fputc('\n', stderr);
    exit(1);
}

/* The value of option @opt in @argv, or NULL. */
static const char *opt_value(char **argv, const char *opt)
{
    for (int i = 0; argv[i]; i++)
        if (strcmp(argv[i], opt) == 0 && argv[i + 1])
            return argv[i + 1];
    return NULL;
}

/* In "socket,...,fd=N,...": hands N to QEMU as *qemu_fd and rewrites it. */
static char *pass_chardev_fd(libdm_dm_config *cfg, const char *value)
{
    const char *p = strstr(value, ",fd=");
    char *end, *out;
    long fd;
    int qfd, r;

    if (!p)
        return NULL;
    errno = 0;
    fd = strtol(p + 4, &end, 10);
    if (errno || end == p + 4 || fd < 0 || fd > INT_MAX || (*end && *end != ','))
        die("bad fd in '%s'", value, 0);
    r = libdm_dm_config_pass_fd(cfg, (int)fd, &qfd);
    if (r < 0)
        die("cannot pass libxl's fd in '%s'", value, -r);
    close((int)fd); /* QEMU gets libdm's duplicate */
    if (asprintf(&out, "%.*s,fd=%d%s", (int)(p - value), value, qfd, end) < 0)
        die("%s", "out of memory", ENOMEM);
    return out;
}

/* libxl's restore: "-incoming fd:N", N a file libxl opened (the saved
 * device state): N is handed to QEMU (renumbered), and the DM is an
 * incoming one for libdm, so that it is resumed only once the load is
 * QMP-confirmed completed (seed 000). Any other value ("defer", a URI) is
 * kept as it is, also as incoming. */
static char *pass_incoming(libdm_dm_config *cfg, const char *value)
{
    char *end, *out;
    long fd;
    int qfd, r;

    if (strncmp(value, "fd:", 3) == 0) {
        errno = 0;
        fd = strtol(value + 3, &end, 10);
        if (errno || end == value + 3 || *end || fd < 0 || fd > INT_MAX)
            die("bad -incoming '%s'", value, 0);
        r = libdm_dm_config_pass_fd(cfg, (int)fd, &qfd);
        if (r < 0)
            die("cannot pass libxl's fd in -incoming '%s'", value, -r);
        close((int)fd); /* QEMU gets libdm's duplicate */
        if (asprintf(&out, "fd:%d", qfd) < 0)
            die("%s", "out of memory", ENOMEM);
    } else if (!(out = strdup(value))) {
        die("%s", "out of memory", ENOMEM);
    }
    r = libdm_dm_config_set_incoming(cfg, out);
    if (r < 0)
        die("bad -incoming '%s'", value, -r);
    return out;
}

static libdm_dm_config *config_from_argv(int argc, char **argv, int *resume)
{
    char **args = calloc((size_t)argc, sizeof(*args));
    const char *domid_s = opt_value(argv, "-xen-domid"), *name = opt_value(argv, "-name");
    const char *runas = opt_value(argv, "-runas"), *chroot_dir = opt_value(argv, "-chroot");
    const char *qemu = getenv("LIBDM_XL_DM_QEMU");
    libdm_dm_config *cfg = NULL;
    char dname[32], *end;
    unsigned long domid;
    int r;

    if (!args || libdm_dm_config_new(&cfg) < 0)
        die("%s", "out of memory", ENOMEM);
    if (!domid_s)
        die("%s", "no -xen-domid: run me from libxl (device_model_override=)", 0);
    errno = 0;
    domid = strtoul(domid_s, &end, 10);
    if (errno || *end || libdm_dm_config_set_domid(cfg, (uint32_t)domid) < 0)
        die("bad -xen-domid '%s'", domid_s, 0);
    libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_XEN);
    /* The guest's name if libdm takes it, else dom<domid>. */
    snprintf(dname, sizeof(dname), "dom%lu", domid);
    if (!name || libdm_dm_config_set_name(cfg, name) < 0)
        libdm_dm_config_set_name(cfg, dname);
    if (qemu && *qemu && (r = libdm_dm_config_set_qemu_path(cfg, qemu)) < 0)
        die("bad LIBDM_XL_DM_QEMU '%s'", qemu, -r);
    if (runas) { /* libxl's dm_restrict: libdm confines the same identity */
        if ((r = libdm_dm_config_set_restrict(cfg, 1)) < 0 ||
            (r = libdm_dm_config_set_runas(cfg, runas)) < 0)
            die("cannot run as '%s'", runas, -r);
        if (chroot_dir && (r = libdm_dm_config_set_chroot(cfg, chroot_dir)) < 0)
            die("bad -chroot '%s'", chroot_dir, -r);
    }
    *resume = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-S") == 0)
            *resume = 0; /* libxl resumes it itself */
        if (i > 1 && strcmp(argv[i - 1], "-chardev") == 0 && strstr(argv[i], ",fd="))
            args[i - 1] = pass_chardev_fd(cfg, argv[i]);
        else if (i > 1 && strcmp(argv[i - 1], "-incoming") == 0)
            args[i - 1] = pass_incoming(cfg, argv[i]);
        else if (!(args[i - 1] = strdup(argv[i])))
            die("%s", "out of memory", ENOMEM);
    }
    r = libdm_dm_config_set_argv(cfg, (const char *const *)args);
    if (r < 0)
        die("%s", "cannot take libxl's command line", -r);
    for (int i = 0; i < argc - 1; i++)
        free(args[i]);
    free(args);
    return cfg;
}

/* Removes the record and directory of a DM that ended by itself, once its
 * keeper has recorded the end (-EBUSY until then). */
static void forget(libdm_ctx *ctx, const char *name)
{
    for (int i = 0; i < 100; i++) {
        int r = libdm_dm_forget(ctx, name);

        if (r != -EBUSY)
            return;
        libdm_ctx_run_once(ctx, 50);
    }
    fprintf(stderr, "libdm-xl-dm: %s: its record stays (its keeper did not finish)\n", name);
}

/* SIGHUP/SIGTERM from libxl: a clean stop, whoever holds the monitor. */
static int stop(libdm_ctx *ctx, const char *name)
{
    libdm_dm *dm = NULL;
    int r = libdm_dm_attach_flags(ctx, name, 2000, LIBDM_ATTACH_ANY_MONITOR, &dm);

    if (r == -ESRCH || r == -ENOENT) {
        forget(ctx, name);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "libdm-xl-dm: %s: cannot attach to stop it: %s\n", name, strerror(-r));
        return r;
    }
    r = libdm_dm_stop(dm, 0, STOP_TIMEOUT_MS);
    if (r < 0)
        fprintf(stderr, "libdm-xl-dm: %s: stop: %s\n", name, strerror(-r));
    libdm_dm_release(dm);
    return r;
}

int main(int argc, char **argv)
{
    const char *store = getenv("LIBDM_XL_DM_STORE");
    struct sigaction sa = { .sa_handler = on_signal };
    libdm_dm_config *cfg;
    libdm_ctx *ctx = NULL;
    libdm_dm *dm = NULL;
    char *name;
    int r, resume, pid, pidfd, status = 1;

    if (argc < 2)
        die("%s", "usage: libdm-xl-dm QEMU-ARGS... (run by libxl: device_model_override=)", 0);
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    if (sigaction(SIGHUP, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
        sigaction(SIGINT, &sa, NULL) < 0)
        die("%s", "sigaction", errno);
    signal(SIGPIPE, SIG_IGN);
    cfg = config_from_argv(argc, argv, &resume);
    r = libdm_dm_config_set_log_fd(cfg, STDERR_FILENO);
    if (r < 0)
        die("%s", "cannot take libxl's log (stderr)", -r);
    r = libdm_ctx_new(NULL, &ctx);
    if (r < 0)
        die("%s", "cannot create a libdm context", -r);
    r = libdm_ctx_set_store(ctx, store && *store ? store : DEFAULT_STORE);
    if (r < 0)
        die("cannot open the store %s", store && *store ? store : DEFAULT_STORE, -r);
    r = libdm_dm_start(ctx, cfg, &dm);
    if (r < 0)
        die("%s", "the device model did not start", -r);
    name = strdup(libdm_dm_get_name(dm));
    pid = libdm_dm_get_pid(dm);
    if (!name)
        die("%s", "out of memory", ENOMEM);
    fprintf(stderr, "libdm-xl-dm: domain %s: device model %s (pid %d) ready, confinement: %s\n",
            opt_value(argv, "-xen-domid"), name, pid,
            libdm_dm_get_confinement(dm) ? libdm_dm_get_confinement(dm) : "?");
    if (resume && (r = libdm_dm_resume(dm, 0)) < 0)
        fprintf(stderr, "libdm-xl-dm: cannot resume the device model: %s\n", strerror(-r));
    /* The monitor is free for dmctl and the other clients (QEMU serves one
     * at a time): the DM's end is watched through a pidfd. */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    libdm_dm_release(dm);
    while (pidfd >= 0 && !got_signal) {
        struct pollfd p[2] = { { .fd = pidfd, .events = POLLIN },
                               { .fd = libdm_ctx_get_fd(ctx), .events = POLLIN } };

        r = poll(p, p[1].fd >= 0 ? 2 : 1, 500);
        if (r > 0 && (p[1].revents & POLLIN))
            libdm_ctx_process(ctx);
        if (r > 0 && (p[0].revents & POLLIN))
            break; /* the DM ended */
    }
    if (got_signal) {
        fprintf(stderr, "libdm-xl-dm: signal %d: stopping the device model\n", (int)got_signal);
        status = stop(ctx, name) < 0;
    } else {
        fprintf(stderr, "libdm-xl-dm: the device model ended\n");
        forget(ctx, name);
    }
    /* libxl's chroot (mode 0000, empty) goes with its DM: libxl itself only
     * removes a stale one at the next start of that domid. rmdir: only an
     * empty directory goes. */
    if (opt_value(argv, "-chroot"))
        (void)rmdir(opt_value(argv, "-chroot"));
    if (pidfd >= 0)
        close(pidfd);
    free(name);
    libdm_dm_config_free(cfg);
    libdm_ctx_free(ctx);
    return status;
}
