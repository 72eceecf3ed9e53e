/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Spawning a DM: libdm posix_spawn()s libdm-keeper (vfork semantics, safe in
 * a threaded daemon, nothing of ours leaks past the five fds it is given),
 * and the keeper forks QEMU. The keeper is our child: we reap it through its
 * pidfd, never with a SIGCHLD handler, and hand that job to the context when
 * the DM handle goes away before the keeper does.
 */
#include "spawn-internal.h"
#include "ctx-internal.h"
#include "keeper-proto.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct libdm__keeper {
    libdm_ctx *ctx;
    const libdm__keeper_ops *ops;
    void *user;
    int ctl;
    libdm__watch *ctl_watch;
    int keeper_pidfd;
    int keeper_pid;
    int dm_pidfd;
    int dm_pid;
    bool exit_reported;
};

extern char **environ;

int libdm__pidfd_open(int pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);

    return fd < 0 ? -errno : fd;
}

int libdm__pidfd_signal(int pidfd, int sig)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* ---- reaping children we no longer follow ---- */

struct libdm__reaper {
    int pidfd;
    libdm__watch *watch;
    libdm__reaper *next;
};

static void reaper_free(libdm_ctx *ctx, libdm__reaper *r)
{
    libdm__reaper **pp = &ctx->reapers;

    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    libdm__watch_del(r->watch);
    libdm__close(&r->pidfd);
    free(r);
}

static void reap_now(libdm_ctx *ctx, int fd, short revents, void *user)
{
    siginfo_t si = { 0 };

    if (waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0)
        return; /* not exited yet */
    reaper_free(ctx, user);
}

int libdm__reap_later(libdm_ctx *ctx, int pidfd)
{
    libdm__reaper *r = calloc(1, sizeof(*r));
    int e;

    if (!r) {
        libdm__close(&pidfd);
        return -ENOMEM;
    }
    r->pidfd = pidfd;
    e = libdm__watch_add(ctx, pidfd, POLLIN, reap_now, r, &r->watch);
    if (e < 0) {
        libdm__close(&r->pidfd);
        free(r);
        return e;
    }
    r->next = ctx->reapers;
    ctx->reapers = r;
    return 0;
}

void libdm__reapers_free(libdm_ctx *ctx)
{
    /* Keepers still running outlive the context: once this process exits
     * they are reparented and reaped by init or a subreaper. */
    while (ctx->reapers)
        reaper_free(ctx, ctx->reapers);
}

/* ---- the control channel ---- */

static void report_exit(libdm__keeper *k, int status)
{
    if (k->exit_reported)
        return;
    k->exit_reported = true;
    if (k->ops->on_exit)
        k->ops->on_exit(k, status, k->user);
}

static void handle_message(libdm__keeper *k, const char *msg, int fd)
{
    int v;

    if (sscanf(msg, "pid %d", &v) == 1 && fd >= 0 && k->dm_pidfd < 0) {
        k->dm_pid = v;
        k->dm_pidfd = fd;
        if (k->ops->on_pid)
            k->ops->on_pid(k, v, k->user);
        return;
    }
    if (fd >= 0)
        close(fd);
    if (sscanf(msg, "exit %d", &v) == 1) {
        report_exit(k, v);
    } else if (!strncmp(msg, "error ", 6)) {
        if (k->ops->on_error)
            k->ops->on_error(k, msg + 6, k->user);
    } else {
        LIBDM__WARN(k->ctx, "ignoring an unknown message from libdm-keeper");
    }
}

static void on_ctl(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm__keeper *k = user;
    char msg[LIBDM__KEEPER_MSG_MAX];
    int passed, n;

    n = libdm__kp_recv(k->ctl, msg, sizeof(msg), &passed);
    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n > 0) {
        handle_message(k, msg, passed);
        return;
    }
    /* The keeper is gone (it exits right after "exit"). */
    libdm__watch_del(k->ctl_watch);
    k->ctl_watch = NULL;
    libdm__close(&k->ctl);
    if (!k->exit_reported)
        LIBDM__ERROR(ctx, "libdm-keeper (pid %d) died without reporting the device model's end",
                     k->keeper_pid);
    report_exit(k, -1);
}

/* ---- spawning ---- */

static const char *keeper_path(void)
{
    const char *p = getenv("LIBDM_KEEPER");

    return p && *p ? p : LIBDM_LIBEXECDIR "/libdm-keeper";
}

/* Moves @fd above the five the keeper receives, so the dup2 file actions
 * cannot clobber one source with another. */
static int high_fd(int fd)
{
    int r = fcntl(fd, F_DUPFD_CLOEXEC, 10);

    return r < 0 ? -errno : r;
}

static char **keeper_env(void)
{
    static const char *const keep[] = { "XENSTORED_PATH", "XDG_RUNTIME_DIR", "LIBDM_LOG" };
    char **env = calloc(LIBDM__ARRAY_SIZE(keep) + 3, sizeof(*env));
    size_t n = 0;

    if (!env)
        return NULL;
    env[n++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    env[n++] = strdup("LC_ALL=C");
    for (size_t i = 0; i < LIBDM__ARRAY_SIZE(keep); i++)
        if (getenv(keep[i]))
            env[n++] = libdm__sprintf("%s=%s", keep[i], getenv(keep[i]));
    for (size_t i = 0; i < n; i++)
        if (!env[i])
            return libdm_strv_free(env);
    return env;
}

static char **keeper_argv(const libdm__spawn_args *a)
{
    size_t n = 0, qn = 0;
    char **argv;

    while (a->argv[qn])
        qn++;
    argv = calloc(qn + 8, sizeof(*argv));
    if (!argv)
        return NULL;
    argv[n++] = strdup(keeper_path());
    argv[n++] = libdm__sprintf("--name=%s", a->name);
    argv[n++] = libdm__sprintf("--store=%s", a->store_spec);
    if (a->autokill)
        argv[n++] = strdup("--autokill");
    if (a->restrict_spec)
        argv[n++] = libdm__sprintf("--restrict=%s", a->restrict_spec);
    argv[n++] = strdup("--");
    for (size_t i = 0; i < qn; i++)
        argv[n++] = strdup(a->argv[i]);
    for (size_t i = 0; i < n; i++)
        if (!argv[i])
            return libdm_strv_free(argv);
    return argv;
}

static int do_spawn(char **argv, char **env, int log_fd, int qmp_fd, int ctl_fd, pid_t *ret_pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    int r;

    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
    posix_spawn_file_actions_adddup2(&fa, qmp_fd, LIBDM__KEEPER_QMP_FD);
    posix_spawn_file_actions_adddup2(&fa, ctl_fd, LIBDM__KEEPER_CTL_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, LIBDM__KEEPER_CTL_FD + 1);
    /* The application's signal mask and handlers are not the keeper's. */
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    r = -posix_spawn(ret_pid, argv[0], &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return r;
}

int libdm__keeper_spawn(libdm_ctx *ctx, const libdm__spawn_args *a,
                        const libdm__keeper_ops *ops, void *user, libdm__keeper **ret)
{
    int sp[2] = { -1, -1 }, log_fd = -1, qmp_fd = -1, r;
    char **argv = keeper_argv(a), **env = keeper_env();
    libdm__keeper *k = calloc(1, sizeof(*k));
    pid_t pid;

    if (!argv || !env || !k) {
        r = -ENOMEM;
        goto out;
    }
    *k = (libdm__keeper){ .ctx = ctx, .ops = ops, .user = user, .ctl = -1,
                          .keeper_pidfd = -1, .dm_pidfd = -1 };
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        r = -errno;
        goto out;
    }
    if ((r = log_fd = high_fd(a->log_fd)) < 0 || (r = qmp_fd = high_fd(a->qmp_listen_fd)) < 0)
        goto out;
    r = high_fd(sp[1]);
    if (r < 0)
        goto out;
    libdm__close(&sp[1]);
    sp[1] = r;
    r = do_spawn(argv, env, log_fd, qmp_fd, sp[1], &pid);
    if (r < 0) {
        LIBDM__ERROR(ctx, "cannot start %s: %s", argv[0], strerror(-r));
        goto out;
    }
    k->keeper_pid = pid;
    k->keeper_pidfd = libdm__pidfd_open(pid);
    k->ctl = sp[0];
    sp[0] = -1;
    if (k->keeper_pidfd < 0 || libdm__set_nonblock(k->ctl, true) < 0 ||
        (r = libdm__watch_add(ctx, k->ctl, POLLIN, on_ctl, k, &k->ctl_watch)) < 0) {
        r = k->keeper_pidfd < 0 ? k->keeper_pidfd : (r < 0 ? r : -errno);
        LIBDM__ERROR(ctx, "cannot follow libdm-keeper: %s", strerror(-r));
        /* Still our unreaped child, so its pid cannot have been reused:
         * kill it by pid even without a pidfd, then reap it. */
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        goto out;
    }
    *ret = k;
    k = NULL;
    r = 0;
out:
    if (k) {
        libdm__close(&k->ctl);
        libdm__close(&k->keeper_pidfd);
        free(k);
    }
    libdm__close(&sp[0]);
    libdm__close(&sp[1]);
    libdm__close(&log_fd);
    libdm__close(&qmp_fd);
    libdm_strv_free(argv);
    libdm_strv_free(env);
    return r;
}

int libdm__keeper_set_autokill(libdm__keeper *k, bool on)
{
    if (k->ctl < 0)
        return -ESRCH;
    return libdm__kp_send(k->ctl, on ? "autokill 1" : "autokill 0", -1);
}

int libdm__keeper_signal(libdm__keeper *k, int sig)
{
    if (k->dm_pidfd < 0 || k->exit_reported)
        return -ESRCH;
    return libdm__pidfd_signal(k->dm_pidfd, sig);
}

int libdm__keeper_keeper_pid(const libdm__keeper *k)
{
    return k->keeper_pid;
}

void libdm__keeper_free(libdm__keeper *k)
{
    if (!k)
        return;
    libdm__watch_del(k->ctl_watch);
    libdm__close(&k->ctl);
    libdm__close(&k->dm_pidfd);
    if (k->keeper_pidfd >= 0 && libdm__reap_later(k->ctx, k->keeper_pidfd) < 0)
        LIBDM__WARN(k->ctx, "libdm-keeper (pid %d) will not be reaped by this process",
                    k->keeper_pid);
    free(k);
}
