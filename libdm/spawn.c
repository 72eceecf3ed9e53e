/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Spawning a DM: libdm clone3()s and execs libdm-keeper (safe in a threaded
 * daemon: the child makes async-signal-safe calls only; nothing of ours
 * leaks past the seven fds it is given; the call never waits for the exec),
 * and the keeper forks QEMU. The keeper is our child: we reap it through its
 * pidfd, never with a SIGCHLD handler, and hand that job to the context when
 * the DM handle goes away before the keeper does.
 */
#include "spawn-internal.h"
#include "ctx-internal.h"
#include "keeper-proto.h"
#include "store.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <linux/sched.h>
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
    int dm_pid;         /* QEMU's, once the keeper said it */
    bool dm_gone_at_pid; /* QEMU had already ended when its pid came */
    bool exit_reported;
    bool autokill;      /* armed in the keeper: its DM dies with our channel */
    bool ending;        /* its DM is being stopped: the keeper exits soon */
    bool by_helper;     /* forked by the context's helper: not our child */
    bool kill_pending;  /* killed before it said its pid: killed when it does */
    unsigned helper_gen;
    int helper_pidfd;   /* the starting helper we killed: its end is ours */
    bool counted;       /* in ctx->keepers_live */
    libdm__watch *exit_watch; /* the channel closed: waiting for the process */
};

/* ---- the control channel ---- */

/* The keeper's pidfd once nothing follows it: our child is reaped (now or
 * later); one forked by the helper is the helper's to reap. */
static void drop_keeper_pidfd(libdm__keeper *k, bool exiting)
{
    if (k->keeper_pidfd < 0)
        return;
    if (k->by_helper)
        libdm__close(&k->keeper_pidfd);
    else if (libdm__reap_later(k->ctx, k->keeper_pidfd, exiting) < 0)
        LIBDM__WARN(k->ctx, "libdm-keeper (pid %d) will not be reaped by this process",
                    k->keeper_pid);
    k->keeper_pidfd = -1;
}

static void report_exit(libdm__keeper *k, int status)
{
    libdm__watch_del(k->exit_watch);
    k->exit_watch = NULL;
    if (k->exit_reported)
        return;
    k->exit_reported = true;
    if (k->counted) {
        k->counted = false;
        k->ctx->keepers_live--;
    }
    if (k->by_helper)
        libdm__helper_keeper_done(k->ctx, k->helper_gen);
    if (k->ops->on_exit)
        k->ops->on_exit(k, status, k->user);
}

static bool pidfd_exited(int pidfd)
{
    struct pollfd p = { .fd = pidfd, .events = POLLIN };

    return poll(&p, 1, 0) != 0;
}

static void handle_message(libdm__keeper *k, const char *msg, int fd)
{
    int v;

    /* Forked by the helper, the keeper's first word: its pid and pidfd. */
    if (sscanf(msg, "keeper %d", &v) == 1 && fd >= 0 && k->by_helper && k->keeper_pidfd < 0) {
        k->keeper_pid = v;
        k->keeper_pidfd = fd;
        if (k->kill_pending)
            (void)libdm__pidfd_signal(fd, SIGKILL);
        return;
    }
    if (sscanf(msg, "pid %d", &v) == 1 && fd >= 0 && k->dm_pid <= 0) {
        /* Looked at once, then closed: the keeper signals its own child
         * for us and reports its end (one fd less per DM, issue 19). */
        k->dm_pid = v;
        k->dm_gone_at_pid = pidfd_exited(fd);
        close(fd);
        if (k->ops->on_pid)
            k->ops->on_pid(k, v, k->user);
        return;
    }
    if (fd >= 0)
        close(fd);
    if (sscanf(msg, "exit %d", &v) == 1) {
        report_exit(k, v);
    } else if (!strncmp(msg, "error ", 6)) {
        int err = 0, skip = 0;

        /* "error ERRNO TEXT"; a bare "error TEXT" is errno unknown. */
        if (sscanf(msg + 6, "%d %n", &err, &skip) != 1 || err <= 0 || skip == 0)
            err = 0, skip = 0;
        if (k->ops->on_error)
            k->ops->on_error(k, err ? -err : -ECHILD, msg + 6 + skip, k->user);
    } else {
        LIBDM__WARN(k->ctx, "ignoring an unknown message from libdm-keeper");
    }
}

/* The keeper's process ended: reap it now, so a dead DM holds no process
 * and no fd whatever its handle's owner does. */
static void keeper_gone(libdm__keeper *k)
{
    libdm_ctx *ctx = k->ctx;

    libdm__watch_del(k->exit_watch);
    k->exit_watch = NULL;
    libdm__close(&k->helper_pidfd);
    if (k->by_helper && k->keeper_pid <= 0 && !k->exit_reported) {
        /* No keeper ever said its pid: the helper did not start it (it
         * died, failed, or the request was dropped), or it died at once.
         * Either way no QEMU ran (the keeper speaks before it forks). */
        int err;
        const char *why = libdm__helper_error(ctx, &err);

        if (k->ops->on_error && !k->kill_pending) /* not our own kill */
            k->ops->on_error(k, err,
                             why ? why : "libdm-keeper's helper did not start the keeper",
                             k->user);
        libdm__watch_del(k->ctl_watch);
        k->ctl_watch = NULL;
        libdm__close(&k->ctl);
        report_exit(k, -1);
        return;
    }
    drop_keeper_pidfd(k, true);
    /* The DM cannot outlive its keeper (see tools/keeper.c). */
    if (!k->exit_reported)
        LIBDM__WARN(ctx, "libdm-keeper (pid %d) died; its device model died with it",
                    k->keeper_pid);
    report_exit(k, -1);
}

static void on_keeper_exit(libdm_ctx *ctx, int fd, short revents, void *user)
{
    keeper_gone(user);
}

static void on_ctl(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm__keeper *k = user;
    char msg[LIBDM__KEEPER_MSG_MAX];
    int passed, n;

    n = libdm__kp_recv(k->ctl, msg, sizeof(msg), &passed);
    /* A keeper that exits with our messages unread (an exec that failed
     * before it read "monitor", a kill) leaves ECONNRESET pending here, and
     * the kernel reports it before the messages it sent us ("error",
     * "exit"): the error is cleared by being read; the messages follow. */
    if (n == -ECONNRESET)
        n = libdm__kp_recv(k->ctl, msg, sizeof(msg), &passed);
    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n > 0) {
        handle_message(k, msg, passed);
        return;
    }
    /* The keeper is going (it exits right after "exit", or was killed):
     * the end is reported once its process is gone, and with it (the init
     * of the DM's PID namespace) everything it ran: until then the name is
     * not free. */
    libdm__watch_del(k->ctl_watch);
    k->ctl_watch = NULL;
    libdm__close(&k->ctl);
    if (k->keeper_pidfd >= 0 && !k->exit_watch && !pidfd_exited(k->keeper_pidfd) &&
        libdm__watch_add(ctx, k->keeper_pidfd, POLLIN, on_keeper_exit, k, &k->exit_watch) >= 0)
        return;
    keeper_gone(k);
}

/* ---- spawning ---- */

_Static_assert(LIBDM__KEEPER_NFDS == LIBDM_PASS_FD_FIRST, "passed fds follow the keeper's own");
/* The lowest fd above every target. No higher: F_DUPFD_CLOEXEC with a floor
 * at or past the soft RLIMIT_NOFILE is EINVAL, and `ulimit -n 64` is real. */
#define HIGH_FD_FLOOR (LIBDM_PASS_FD_FIRST + LIBDM_MAX_PASS_FDS)

/* Moves @fd above the fds the keeper receives, so that placing one cannot
 * clobber another's source. Out of fds is -EMFILE, never -EINVAL. */
static int high_fd(int fd)
{
    int r = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD_FLOOR);

    return r >= 0 ? r : errno == EINVAL ? -EMFILE : -errno;
}

static char **keeper_argv(const libdm__spawn_args *a, bool hello)
{
    size_t n = 0, qn = 0;
    char **argv;

    while (a->argv[qn])
        qn++;
    argv = calloc(qn + 12, sizeof(*argv)); /* 11 options at most, and NULL */
    if (!argv)
        return NULL;
    argv[n++] = strdup(libdm__keeper_path());
    if (hello) /* forked by the helper: it says its own pid first */
        argv[n++] = strdup("--hello");
    argv[n++] = libdm__sprintf("--name=%s", a->name);
    argv[n++] = libdm__sprintf("--store=%s", a->store_spec);
    argv[n++] = libdm__sprintf("--rundir=%s", a->run_root);
    if (a->autokill)
        argv[n++] = strdup("--autokill");
    if (a->xen_socket_domid)
        argv[n++] = libdm__sprintf("--xen-socket-domid=%u", a->xen_socket_domid);
    if (a->n_pass_fds)
        argv[n++] = libdm__sprintf("--pass-fds=%zu", a->n_pass_fds);
    if (a->restrict_spec) {
        char uids[64];

        argv[n++] = libdm__sprintf("--restrict=%s", a->restrict_spec);
        /* Resolved here, where NSS is the host's: a static keeper's NSS
         * would need the glibc it was built with (store.h). Only the
         * xenstore store asks (kill-uid), and its own record writes here
         * already make the same lookups. */
        if (!strncmp(a->store_spec, "xenstore:", 9) &&
            libdm__store_shared_uids(uids, sizeof(uids)) == 0)
            argv[n++] = libdm__sprintf("--shared-uids=%s", uids);
    }
    argv[n++] = strdup("--");
    for (size_t i = 0; i < qn; i++)
        argv[n++] = strdup(a->argv[i]);
    for (size_t i = 0; i < n; i++)
        if (!argv[i])
            return libdm_strv_free(argv);
    return argv;
}

int libdm__keeper_spawn(libdm_ctx *ctx, const libdm__spawn_args *a,
                        const libdm__keeper_ops *ops, void *user, libdm__keeper **ret)
{
    int sp[2] = { -1, -1 }, src[LIBDM_PASS_FD_FIRST + LIBDM_MAX_PASS_FDS], r;
    int nfds = LIBDM_PASS_FD_FIRST + (int)a->n_pass_fds;
    bool helper = libdm__helper_enabled(ctx);
    char **argv = keeper_argv(a, helper), **env = helper ? NULL : libdm__keeper_env();
    libdm__keeper *k = calloc(1, sizeof(*k));
    bool ns = false;
    pid_t pid;

    for (size_t i = 0; i < LIBDM__ARRAY_SIZE(src); i++)
        src[i] = -1;
    if (!argv || (!helper && !env) || !k) {
        r = -ENOMEM;
        goto out;
    }
    *k = (libdm__keeper){ .ctx = ctx, .ops = ops, .user = user, .ctl = -1,
                          .keeper_pidfd = -1, .autokill = a->autokill,
                          .helper_pidfd = -1 };
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        r = -errno;
        goto out;
    }
    /* Queued before anything runs: the lock is held by the message in
     * flight, then by the keeper; a keeper that never runs frees it with
     * its end of the channel. */
    if (a->monitor_fd >= 0 && (r = libdm__kp_send(sp[0], "monitor", a->monitor_fd)) < 0)
        goto out;
    if ((r = src[1] = high_fd(a->log_fd)) < 0 || (r = src[2] = high_fd(a->log_fd)) < 0 ||
        (r = src[LIBDM__KEEPER_QMP_FD] = high_fd(a->qmp_listen_fd)) < 0 ||
        (r = src[LIBDM__KEEPER_CTL_FD] = high_fd(sp[1])) < 0 ||
        (r = src[LIBDM__KEEPER_OWNER_FD] = high_fd(a->owner_fd)) < 0 ||
        (r = src[LIBDM__KEEPER_RUNDIR_FD] = high_fd(a->rundir_fd)) < 0)
        goto out;
    for (size_t i = 0; i < a->n_pass_fds; i++)
        if ((r = src[LIBDM_PASS_FD_FIRST + i] = high_fd(a->pass_fds[i])) < 0)
            goto out;
    /* Forked by the context's helper (a fork, not an exec), or if it
     * cannot take it now, exec'd as before. */
    if (helper && libdm__helper_submit(ctx, argv, src, nfds) == 0) {
        k->by_helper = true;
        k->helper_gen = libdm__helper_gen(ctx);
        pid = 0;
        goto follow;
    }
    if (helper) {
        libdm_strv_free(argv);
        argv = keeper_argv(a, false);
        env = libdm__keeper_env();
        if (!argv || !env) {
            r = -ENOMEM;
            goto out;
        }
    }
    pid = libdm__spawn_exec(ctx, src, nfds, LIBDM__KEEPER_CTL_FD, argv, env, geteuid() == 0,
                            &k->keeper_pidfd, &ns);
    if (pid < 0) {
        r = pid;
        LIBDM__ERROR(ctx, "cannot start %s: %s", argv[0], strerror(-r));
        goto out;
    }
    LIBDM__DEBUG(ctx, "libdm-keeper is pid %d%s", pid, ns ? ", init of a new PID namespace" : "");
follow:
    k->keeper_pid = pid;
    k->ctl = sp[0];
    sp[0] = -1;
    /* A child forked without exec must not keep the channel open: the
     * keeper would never see us go (autokill, the monitor it holds). */
    libdm__fork_drop_fd(k->ctl);
    if (libdm__set_nonblock(k->ctl, true) < 0 ||
        (r = libdm__watch_add(ctx, k->ctl, POLLIN, on_ctl, k, &k->ctl_watch)) < 0) {
        r = r < 0 ? r : -errno;
        LIBDM__ERROR(ctx, "cannot follow libdm-keeper: %s", strerror(-r));
        /* Killed; the context reaps it, this call never waits for it. */
        (void)libdm__pidfd_signal(k->keeper_pidfd, SIGKILL);
        (void)libdm__reap_later(ctx, k->keeper_pidfd, true); /* takes the pidfd */
        k->keeper_pidfd = -1;
        goto out;
    }
    k->counted = true;
    ctx->keepers_live++;
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
    for (size_t i = 0; i < LIBDM__ARRAY_SIZE(src); i++)
        libdm__close(&src[i]);
    libdm_strv_free(argv);
    libdm_strv_free(env);
    return r;
}

int libdm__keeper_set_autokill(libdm__keeper *k, bool on)
{
    int r;

    if (k->ctl < 0)
        return -ESRCH;
    r = libdm__kp_send(k->ctl, on ? "autokill 1" : "autokill 0", -1);
    if (r >= 0)
        k->autokill = on;
    return r;
}

/* Before the keeper said QEMU's pid there is no pidfd to signal: the
 * keeper itself is killed. As the init of the DM's PID namespace it takes
 * QEMU with it; as a subreaper, QEMU has PR_SET_PDEATHSIG SIGKILL. */
/* A keeper the helper has not forked yet has no pidfd: it is killed as it
 * says its pid, or, while the helper itself has not started (it reads no
 * request before), the helper is killed and every start queued in it ends. */
static void on_helper_killed(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm__keeper *k = user;
    char msg[LIBDM__KEEPER_MSG_MAX];
    int passed;

    /* It may have said "ready" and forked our keeper as it was killed: a
     * keeper that said its pid is followed (and killed, kill_pending). */
    while (k->ctl >= 0 && k->keeper_pidfd < 0 &&
           libdm__kp_recv(k->ctl, msg, sizeof(msg), &passed) > 0)
        handle_message(k, msg, passed);
    if (k->keeper_pidfd >= 0) {
        libdm__watch_del(k->exit_watch);
        k->exit_watch = NULL;
        libdm__close(&k->helper_pidfd);
        return;
    }
    keeper_gone(k);
}

static int kill_unborn(libdm__keeper *k)
{
    k->kill_pending = true;
    if (!libdm__helper_starting(k->ctx, k->helper_gen))
        return 0;
    LIBDM__DEBUG(k->ctx, "killing the starting libdm-keeper helper (a start before it)");
    /* It had read no request: once it is dead no keeper of ours can come
     * (even while something it left holds its socket and our channel). */
    if (k->helper_pidfd < 0 && !k->exit_watch &&
        (k->helper_pidfd = libdm__helper_pidfd_dup(k->ctx)) >= 0 &&
        libdm__watch_add(k->ctx, k->helper_pidfd, POLLIN, on_helper_killed, k,
                         &k->exit_watch) < 0)
        libdm__close(&k->helper_pidfd);
    return libdm__helper_kill(k->ctx);
}

/* Asks the keeper to signal QEMU ("kill", "term"): it holds QEMU's pidfd,
 * we do not. A keeper that does not act (stopped, hung) is the caller's
 * next step to kill, and QEMU dies with it. */
static int tell_signal(libdm__keeper *k, int sig)
{
    if (sig != SIGKILL && sig != SIGTERM)
        return -EINVAL;
    if (k->exit_reported || k->dm_pid <= 0 || k->ctl < 0)
        return -ESRCH;
    return libdm__kp_send(k->ctl, sig == SIGKILL ? "kill" : "term", -1);
}

int libdm__keeper_kill(libdm__keeper *k)
{
    if (k->exit_reported)
        return -ESRCH;
    if (k->by_helper && k->keeper_pidfd < 0 && k->ctl >= 0)
        return kill_unborn(k);
    if (tell_signal(k, SIGKILL) == 0)
        return 0;
    return k->keeper_pidfd >= 0 ? libdm__pidfd_signal(k->keeper_pidfd, SIGKILL) : -ESRCH;
}

bool libdm__keeper_dm_gone(const libdm__keeper *k)
{
    return k->dm_gone_at_pid;
}

void libdm__keeper_set_ending(libdm__keeper *k)
{
    k->ending = true;
}

int libdm__keeper_kill_keeper(libdm__keeper *k)
{
    if (k->by_helper && k->keeper_pidfd < 0 && k->ctl >= 0 && !k->exit_reported)
        return kill_unborn(k);
    return k->keeper_pidfd >= 0 ? libdm__pidfd_signal(k->keeper_pidfd, SIGKILL) : -ESRCH;
}

int libdm__keeper_signal(libdm__keeper *k, int sig)
{
    return tell_signal(k, sig);
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
    libdm__watch_del(k->exit_watch);
    libdm__close(&k->ctl);
    libdm__close(&k->helper_pidfd);
    /* Under autokill the keeper ends its DM and exits now that the
     * channel closed: a context freed now reaps it (bounded). */
    drop_keeper_pidfd(k, k->exit_reported || k->autokill || k->ending);
    if (k->counted)
        k->ctx->keepers_live--;
    if (k->by_helper && !k->exit_reported && (k->autokill || k->ending))
        libdm__helper_keeper_done(k->ctx, k->helper_gen);
    free(k);
}
