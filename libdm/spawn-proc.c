/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Processes for spawn.c and spawn-helper.c (floor 7, below both): clone3()
 * with a pidfd and the exec'd child's raw set-up, the keeper's path and
 * environment, pidfds, and reaping the children no handle follows any more.
 */
#include "spawn-internal.h"
#include "ctx-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <linux/sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The uapi of <linux/pidfd.h> since Linux 6.15, spelled here: the build
 * host's headers may be older than the kernel it runs on. */
struct libdm__pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
};
#define LIBDM__PIDFD_INFO_EXIT (1ull << 3)
#define LIBDM__PIDFD_GET_INFO _IOWR(0xFF, 11, struct libdm__pidfd_info)
_Static_assert(sizeof(struct libdm__pidfd_info) == 64, "PIDFD_INFO_SIZE_VER0");

int libdm__pidfd_exit_status(int pidfd)
{
    struct libdm__pidfd_info info = { .mask = LIBDM__PIDFD_INFO_EXIT };

    if (pidfd < 0 || ioctl(pidfd, LIBDM__PIDFD_GET_INFO, &info) < 0 ||
        !(info.mask & LIBDM__PIDFD_INFO_EXIT))
        return -1;
    return info.exit_code;
}

/* ---- reaping children we no longer follow ---- */

struct libdm__reaper {
    int pidfd;
    bool exiting;       /* a keeper whose DM has ended: it exits in a moment */
    libdm__watch *watch;
    libdm__reaper *next;
};

static void reaper_free(libdm_ctx *ctx, libdm__reaper *r)
{
    libdm__reaper **pp = &ctx->reapers;

    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    if (r->exiting)
        ctx->n_exiting_reapers--;
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

int libdm__reap_later(libdm_ctx *ctx, int pidfd, bool exiting)
{
    libdm__reaper *r = calloc(1, sizeof(*r));
    int e;

    if (!r) {
        libdm__close(&pidfd);
        return -ENOMEM;
    }
    r->pidfd = pidfd;
    r->exiting = exiting;
    e = libdm__watch_add(ctx, pidfd, POLLIN, reap_now, r, &r->watch);
    if (e < 0) {
        libdm__close(&r->pidfd);
        free(r);
        return e;
    }
    r->next = ctx->reapers;
    ctx->reapers = r;
    if (exiting)
        ctx->n_exiting_reapers++;
    return 0;
}

#define REAPERS_FREE_WAIT_MS 1000

void libdm__reapers_free(libdm_ctx *ctx)
{
    uint64_t deadline = libdm__deadline(REAPERS_FREE_WAIT_MS);

    /* A keeper whose DM has ended exits within moments: reap it here (a
     * bounded wait, at teardown only: one deadline for all of them, so
     * REAPERS_FREE_WAIT_MS in all whatever their number, see ctx.h), or it would stay a zombie child of a
     * process that goes on. Keepers not exited by then (DMs still running,
     * or slow) are left to the process-wide orphans (util.c), reaped by
     * the next context that looks. */
    while (ctx->reapers) {
        libdm__reaper *r = ctx->reapers;
        uint64_t now = libdm_now_ms();

        if (r->exiting && now < deadline) {
            struct pollfd p = { .fd = r->pidfd, .events = POLLIN };

            if (poll(&p, 1, (int)(deadline - now)) == 1 &&
                waitid((idtype_t)P_PIDFD, (id_t)r->pidfd, &(siginfo_t){ 0 },
                       WEXITED | WNOHANG) == 0) {
                reaper_free(ctx, r);
                continue;
            }
        }
        /* Not exited yet: reaped later by whichever context looks. */
        libdm__orphan_add(r->pidfd);
        r->pidfd = -1;
        reaper_free(ctx, r);
    }
}


const char *libdm__keeper_path(void)
{
    const char *p = getenv("LIBDM_KEEPER");

    return p && *p ? p : LIBDM_LIBEXECDIR "/libdm-keeper";
}


char **libdm__keeper_env(void)
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


/* The kernel's struct sigaction (x86-64, and the generic layout). */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

void libdm__child_reset_signals(void)
{
    const struct kernel_sigaction dfl = { .handler = SIG_DFL };
    unsigned long none = 0;

    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
    (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none));
}

/* The keeper's side of clone3(), before exec. Raw system calls only: the
 * caller may be a threaded daemon (only async-signal-safe calls are
 * allowed), and sanitizer or preload interceptors must not run in a child
 * that shares none of their parent's thread state. @src[i] becomes fd i. */
static void keeper_child(const int *src, int nfds, int err_fd, char **argv, char **env)
{
    static const char text[] = " cannot execute libdm-keeper";
    char msg[sizeof(text) + 16] = "error ";
    size_t len = 6;
    long nullfd, e;

    /* The application's signal mask and handlers are not the keeper's. */
    libdm__child_reset_signals();
    nullfd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0 || syscall(SYS_dup3, (int)nullfd, 0, 0) < 0)
        syscall(SYS_exit_group, 127);
    for (int fd = 1; fd < nfds; fd++)
        if (syscall(SYS_dup3, src[fd], fd, 0) < 0)
            syscall(SYS_exit_group, 127);
    (void)syscall(SYS_close_range, nfds, ~0U, 0);
    e = syscall(SYS_execve, argv[0], argv, env) < 0 ? errno : 0;
    /* "error ERRNO TEXT" (keeper-proto.h), formatted by hand. */
    if (e <= 0 || e > 9999)
        e = ENOEXEC;
    for (long div = e >= 1000 ? 1000 : e >= 100 ? 100 : e >= 10 ? 10 : 1; div; div /= 10)
        msg[len++] = (char)('0' + (e / div) % 10);
    for (size_t i = 0; i < sizeof(text) - 1; i++)
        msg[len++] = text[i];
    (void)syscall(SYS_sendto, err_fd, msg, len, MSG_NOSIGNAL, NULL, 0);
    syscall(SYS_exit_group, 127);
}

/* The legacy clone() with the same flags, for where clone3() is refused
 * with ENOSYS: container runtimes' default seccomp profiles do that so
 * that libc falls back to clone(). With CLONE_PIDFD the pidfd is stored
 * through the parent_tid argument, the third on every architecture but
 * s390's. */
static pid_t clone_legacy(uint64_t flags, int *ret_pidfd)
{
#if defined(__s390__) || defined(__s390x__)
    return (pid_t)syscall(SYS_clone, NULL, flags | SIGCHLD, ret_pidfd, NULL, NULL);
#else
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, ret_pidfd, NULL, NULL);
#endif
}

static pid_t clone_once(uint64_t flags, int *ret_pidfd)
{
    struct clone_args ca = {
        .flags = flags,
        .pidfd = (uint64_t)(uintptr_t)ret_pidfd,
        .exit_signal = SIGCHLD,
    };
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));

    return pid < 0 && errno == ENOSYS ? clone_legacy(flags, ret_pidfd) : pid;
}

/* clone3() without CLONE_VFORK: returns as soon as the child exists, never
 * waiting for its exec (a host's loop is never stalled by a slow exec). */
pid_t libdm__clone_pidfd(bool try_newpid, int *ret_pidfd, bool *ret_ns)
{
    for (;;) {
        pid_t pid = clone_once(CLONE_PIDFD | (try_newpid ? CLONE_NEWPID : 0), ret_pidfd);

        if (pid >= 0 || !try_newpid || (errno != EPERM && errno != EINVAL &&
                                        errno != ENOSPC && errno != EUSERS)) {
            if (ret_ns)
                *ret_ns = try_newpid;
            return pid < 0 ? -errno : pid;
        }
        try_newpid = false; /* no privilege for a namespace: a plain child */
    }
}

/* As root the keeper gets its own PID namespace and is its init; without
 * the privilege it is a subreaper instead. */
pid_t libdm__spawn_exec(libdm_ctx *ctx, const int *src, int nfds, int err_fd, char **argv,
                        char **env, bool try_newpid, int *ret_pidfd, bool *ret_ns)
{
    pid_t pid;

    if (libdm__spawn_vm_enabled()) {
        pid = libdm__spawn_exec_vm(ctx, src, nfds, err_fd, argv, env, try_newpid, ret_pidfd,
                                   ret_ns);
        /* -EINVAL: a CLONE_VM without CLONE_THREAD refused (valgrind does). */
        if (pid != -ENOSYS && pid != -EINVAL)
            return pid;
    }
    pid = libdm__clone_pidfd(try_newpid, ret_pidfd, ret_ns);

    if (pid == 0)
        keeper_child(src, nfds, err_fd, argv, env);
    return pid;
}

