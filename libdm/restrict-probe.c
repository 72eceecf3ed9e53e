/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm_restrict: whether a QEMU binary has -sandbox (seccomp), probed by
 * running it once (blocking, or on the loop) and cached per binary
 * (path, device, inode, size, mtime). restrict.c's plan asks here.
 */
#include "internal.h"
#include "config-internal.h"
#include "restrict-internal.h"
#include "spawn-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the -sandbox probe ---- */

typedef struct probe_entry {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int result;
} probe_entry;

#define PROBE_CACHE_SIZE 16
/* Held for lookups and stores only, never while a probe runs: a lookup
 * never waits for another thread's probe. */
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static probe_entry probe_cache[PROBE_CACHE_SIZE];
static unsigned probe_next;

static char *const probe_env[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                   (char *)"LC_ALL=C", NULL };

static bool probe_matches(const probe_entry *e, const char *path, const struct stat *st)
{
    return e->path && !strcmp(e->path, path) && e->dev == st->st_dev && e->ino == st->st_ino &&
           e->size == st->st_size && e->mtime.tv_sec == st->st_mtim.tv_sec &&
           e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* The cached answer for @path as @st describes it, or -EAGAIN. */
static int cache_lookup(const char *path, const struct stat *st)
{
    int result = -EAGAIN;

    pthread_mutex_lock(&probe_lock);
    for (unsigned i = 0; i < PROBE_CACHE_SIZE && result < 0; i++)
        if (probe_matches(&probe_cache[i], path, st))
            result = probe_cache[i].result;
    pthread_mutex_unlock(&probe_lock);
    return result;
}

/* Records @result for @path as @st describes it. The path's older entry is
 * replaced: probes of one binary may now run side by side. */
static void cache_store(const char *path, const struct stat *st, int result)
{
    char *copy = strdup(path);
    probe_entry *e = NULL;

    if (!copy)
        return;
    pthread_mutex_lock(&probe_lock);
    for (unsigned i = 0; i < PROBE_CACHE_SIZE && !e; i++)
        if (probe_cache[i].path && !strcmp(probe_cache[i].path, path))
            e = &probe_cache[i];
    if (!e)
        e = &probe_cache[probe_next++ % PROBE_CACHE_SIZE];
    free(e->path);
    *e = (probe_entry){ copy, st->st_dev, st->st_ino, st->st_size, st->st_mtim, result };
    pthread_mutex_unlock(&probe_lock);
}

int libdm__qemu_sandbox_cached(const char *qemu)
{
    struct stat st;

    if (stat(qemu, &st) < 0)
        return 0;
    return cache_lookup(qemu, &st);
}

/* The probe's child, before exec: raw system calls only (see
 * libdm__clone_pidfd()). fds 0-2 on /dev/null, nothing else open. */
static void probe_child(char *const *argv)
{
    long nullfd;

    libdm__child_reset_signals();
    /* No O_CLOEXEC: with our stdio closed it lands on 0-2 itself, and
     * above 2 close_range() closes it. */
    nullfd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR);
    if (nullfd < 0)
        syscall(SYS_exit_group, 127);
    for (int fd = 0; fd < 3; fd++)
        if (fd != nullfd && syscall(SYS_dup3, (int)nullfd, fd, 0) < 0)
            syscall(SYS_exit_group, 127);
    (void)syscall(SYS_close_range, 3, ~0U, 0);
    (void)syscall(SYS_execve, argv[0], argv, probe_env);
    syscall(SYS_exit_group, 127);
}

/* Starts "@qemu -sandbox on -version" without waiting for its exec. Its
 * pidfd, or -errno. */
static int probe_start(const char *qemu)
{
    char *const argv[] = { (char *)qemu, (char *)"-sandbox", (char *)"on", (char *)"-version",
                           NULL };
    int pidfd = -1;
    pid_t pid = libdm__clone_pidfd(false, &pidfd, NULL);

    if (pid == 0)
        probe_child(argv);
    return pid < 0 ? (int)pid : pidfd;
}

/* 1 if the probe's child exited 0, else 0. */
static int probe_answer(const siginfo_t *si)
{
    return si->si_code == CLD_EXITED && si->si_status == 0;
}

/* Waits for the child until @timeout_ms, kills it then, reaps it. */
static int probe_wait(int pidfd, int timeout_ms)
{
    struct pollfd p = { .fd = pidfd, .events = POLLIN };
    siginfo_t si = { 0 };
    int n;

    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        (void)libdm__pidfd_signal(pidfd, SIGKILL);
    while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
        ;
    return n > 0 && probe_answer(&si);
}

static int run_probe(const char *qemu, int timeout_ms)
{
    int pidfd = probe_start(qemu), result;

    if (pidfd < 0)
        return 0;
    result = probe_wait(pidfd, timeout_ms);
    libdm__close(&pidfd);
    return result;
}

int libdm__qemu_has_sandbox(const char *qemu, int timeout_ms)
{
    struct stat st;
    int result;

    if (stat(qemu, &st) < 0)
        return 0;
    result = cache_lookup(qemu, &st);
    if (result == -EAGAIN) {
        result = run_probe(qemu, timeout_ms);
        cache_store(qemu, &st, result);
    }
    return result;
}

void libdm__qemu_sandbox_cache_clear(void)
{
    pthread_mutex_lock(&probe_lock);
    for (unsigned i = 0; i < PROBE_CACHE_SIZE; i++) {
        free(probe_cache[i].path);
        probe_cache[i] = (probe_entry){ 0 };
    }
    pthread_mutex_unlock(&probe_lock);
}

/* ---- the -sandbox probe on the loop ---- */

struct libdm__sandbox_probe {
    libdm_ctx *ctx;
    char *qemu;
    struct stat st;             /* the binary as probed: the cache key */
    int pidfd;                  /* the child, or -1 */
    bool reaped;                /* its wait status was collected */
    libdm__watch *watch;        /* the child's end */
    libdm__timer timer;         /* its deadline, or the deferred answer */
    int result;                 /* a known answer, or -EAGAIN */
    libdm__sandbox_probe_fn *cb;
    void *user;
};

/* A child still running is killed and its reaping handed to the context:
 * it dies at once, and the loop must not wait for it. */
static void async_free(libdm__sandbox_probe *p)
{
    libdm__watch_del(p->watch);
    libdm__timer_disarm(p->ctx, &p->timer);
    if (p->pidfd >= 0 && !p->reaped) {
        (void)libdm__pidfd_signal(p->pidfd, SIGKILL);
        if (libdm__reap_later(p->ctx, p->pidfd, true) < 0)
            LIBDM__WARN(p->ctx, "the -sandbox probe of %s will not be reaped by this process",
                        p->qemu);
        p->pidfd = -1;
    }
    libdm__close(&p->pidfd);
    free(p->qemu);
    free(p);
}

/* Freed first: @cb may start another probe, and must not cancel this one. */
static void async_finish(libdm__sandbox_probe *p, int result)
{
    libdm__sandbox_probe_fn *cb = p->cb;
    void *user = p->user;

    async_free(p);
    cb(result, user);
}

static void on_probe_exit(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm__sandbox_probe *p = user;
    siginfo_t si = { 0 };
    int result = 0;

    (void)ctx;
    (void)revents;
    if (waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == 0) {
        if (si.si_pid == 0)
            return; /* not exited yet */
        result = probe_answer(&si);
    }
    /* Else someone else reaped it (a waitpid(-1) in the application): the
     * answer is lost, and "no -sandbox" is the safe one. */
    p->reaped = true;
    cache_store(p->qemu, &p->st, result);
    async_finish(p, result);
}

static void on_probe_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm__sandbox_probe *p = user;

    (void)t;
    /* As the blocking probe: a binary too slow to say counts as without. */
    LIBDM__DEBUG(ctx, "%s -sandbox on -version did not answer in time: killed", p->qemu);
    cache_store(p->qemu, &p->st, 0);
    async_finish(p, 0);
}

static void on_probe_deferred(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm__sandbox_probe *p = user;

    (void)ctx;
    (void)t;
    async_finish(p, p->result);
}

/* Starts the child, its watch and its deadline. A child left behind by a
 * failure is killed and reaped here: it has not exec'd QEMU yet, or just
 * has, and dies at once (as libdm__keeper_spawn() does). */
static int async_spawn(libdm__sandbox_probe *p, int timeout_ms)
{
    int r;

    libdm__timer_init(&p->timer, on_probe_deadline, p);
    r = libdm__timer_arm(p->ctx, &p->timer, libdm__deadline(timeout_ms));
    if (r < 0)
        return r;
    p->pidfd = probe_start(p->qemu);
    if (p->pidfd < 0) {
        r = p->pidfd;
        p->pidfd = -1;
        return r;
    }
    /* On failure async_free() kills the child and hands it to the context's
     * reaper: nothing here waits for it. */
    return libdm__watch_add(p->ctx, p->pidfd, POLLIN, on_probe_exit, p, &p->watch);
}

int libdm__qemu_sandbox_probe_async(libdm_ctx *ctx, const char *qemu, int timeout_ms,
                                    libdm__sandbox_probe_fn *cb, void *user,
                                    libdm__sandbox_probe **ret)
{
    libdm__sandbox_probe *p;
    int r;

    if (!ctx || !qemu || !cb || !ret)
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    *p = (libdm__sandbox_probe){ .ctx = ctx, .qemu = strdup(qemu), .pidfd = -1, .cb = cb,
                                 .user = user };
    if (!p->qemu) {
        free(p);
        return -ENOMEM;
    }
    libdm__timer_init(&p->timer, on_probe_deferred, p);
    /* A missing binary answers 0 uncached, as the blocking probe does. */
    p->result = stat(qemu, &p->st) < 0 ? 0 : cache_lookup(qemu, &p->st);
    r = p->result == -EAGAIN ? async_spawn(p, timeout_ms) : libdm__defer(ctx, &p->timer);
    if (r < 0) {
        async_free(p);
        return r;
    }
    *ret = p;
    return 0;
}

void libdm__sandbox_probe_cancel(libdm__sandbox_probe *p)
{
    if (p)
        async_free(p);
}

