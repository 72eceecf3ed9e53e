/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "internal.h"

#include <sys/stat.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The clock of every deadline; here, at the bottom, so the loop and its
 * users share it without the loop being below util. */
uint64_t libdm_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *libdm__sprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

void libdm__set_error(char **slot, const char *fmt, ...)
{
    va_list ap;
    char *s;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    free(*slot);
    *slot = s;
}

int libdm__set_cloexec(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFD);

    if (flags < 0)
        return -errno;
    flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
    return fcntl(fd, F_SETFD, flags) < 0 ? -errno : 0;
}

int libdm__set_nonblock(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0)
        return -errno;
    flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
    return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

void libdm__close(int *fd)
{
    if (*fd >= 0) {
        /* Linux always releases the descriptor, even on EINTR: never retry. */
        (void)close(*fd);
        *fd = -1;
    }
}

uint64_t libdm__proc_start_time(int pid)
{
    char path[64], buf[1024];
    const char *p;
    unsigned long long start = 0;
    ssize_t n;
    int fd, field;

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name (field 2) may contain spaces and ')': skip to the last ')'. */
    p = strrchr(buf, ')');
    if (!p)
        return 0;
    for (field = 2; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    if (field != 22 || sscanf(p, "%llu", &start) != 1)
        return 0;
    return start;
}

char libdm__proc_state(int pid)
{
    char path[64], buf[512];
    const char *p;
    ssize_t n;
    int fd;

    if (pid <= 0)
        return '?';
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] ? p[2] : '?';
}

uint64_t libdm__deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return UINT64_MAX;
    return libdm_now_ms() + (uint64_t)timeout_ms;
}

ssize_t libdm__send_with_fd(int sock, const void *buf, size_t len, int fd, int flags)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;

    if (fd >= 0) {
        struct cmsghdr *c;
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    /* MSG_NOSIGNAL: the library never owns SIGPIPE. */
    n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
    return n < 0 ? -errno : n;
}

/* ---- children of this process that no context follows any more ----
 * Keepers are our children: a context reaps them, but one freed before
 * they exit leaves them behind (ctx_free waits a bounded time). They are
 * kept here, process-wide, and reaped by any context's next look (its
 * creation, its freeing, a dispatch at most once a second), so that no
 * keeper stays a zombie while this process lives on. A spinlock: contexts
 * may live in different threads of the host; libdm starts none. */

static atomic_flag orphans_lock = ATOMIC_FLAG_INIT;
static int *orphans;
static size_t orphans_n, orphans_cap;
static atomic_size_t orphans_count;
static _Atomic uint64_t orphans_last_ms;

static void orphans_take(void)
{
    while (atomic_flag_test_and_set_explicit(&orphans_lock, memory_order_acquire))
        ;
}

static void orphans_give(void)
{
    atomic_flag_clear_explicit(&orphans_lock, memory_order_release);
}

void libdm__orphan_add(int pidfd)
{
    int *grown;

    if (pidfd < 0)
        return;
    orphans_take();
    if (orphans_n == orphans_cap) {
        size_t cap = orphans_cap ? orphans_cap * 2 : 16;

        grown = realloc(orphans, cap * sizeof(*grown));
        if (!grown) {
            orphans_give();
            close(pidfd); /* a zombie until this process ends */
            return;
        }
        orphans = grown;
        orphans_cap = cap;
    }
    orphans[orphans_n++] = pidfd;
    atomic_store(&orphans_count, orphans_n);
    orphans_give();
}

void libdm__orphans_reap(bool now)
{
    uint64_t t;

    if (atomic_load(&orphans_count) == 0)
        return;
    t = libdm_now_ms();
    if (!now && t < atomic_load(&orphans_last_ms) + 1000)
        return;
    atomic_store(&orphans_last_ms, t);
    orphans_take();
    for (size_t i = 0; i < orphans_n;) {
        siginfo_t si = { 0 };

        if (waitid((idtype_t)P_PIDFD, (id_t)orphans[i], &si, WEXITED | WNOHANG) == 0 &&
            si.si_pid == 0) {
            i++; /* still running */
            continue;
        }
        close(orphans[i]); /* reaped, or not ours to reap */
        orphans[i] = orphans[--orphans_n];
    }
    atomic_store(&orphans_count, orphans_n);
    orphans_give();
}

char **libdm_strv_free(char **strv)
{
    char **p;

    if (!strv)
        return NULL;
    for (p = strv; *p; p++)
        free(*p);
    free(strv);
    return NULL;
}

/* ---- fork-safety: a forked child does not keep libdm's locks ----
 * A flock belongs to the open file: a child forked (without exec: the fds
 * are O_CLOEXEC) while a handle holds a DM's monitor.lock or a start holds
 * the name's owner.lock would keep it held after the parent let go. The
 * child's copies are replaced by /dev/null at fork (pthread_atfork): its
 * fd numbers stay valid for whatever it frees, the locks are the parent's
 * alone. Entries are (fd, dev, ino): one closed and reused meanwhile no
 * longer matches and is left alone. */

typedef struct fork_lock {
    int fd;
    dev_t dev;
    ino_t ino;
} fork_lock;

static pthread_mutex_t fork_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static fork_lock *fork_locks;
static size_t n_fork_locks, cap_fork_locks;

static bool fork_lock_current(const fork_lock *l)
{
    struct stat st;

    return fstat(l->fd, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino;
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&fork_mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&fork_mu);
}

static void fork_child(void)
{
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    for (size_t i = 0; null >= 0 && i < n_fork_locks; i++)
        if (fork_lock_current(&fork_locks[i]))
            (void)dup3(null, fork_locks[i].fd, O_CLOEXEC);
    n_fork_locks = 0;
    if (null >= 0)
        close(null);
    pthread_mutex_unlock(&fork_mu);
}

static void fork_init(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void libdm__fork_drop_fd(int fd)
{
    struct stat st;

    if (fd < 0 || pthread_once(&fork_once, fork_init) != 0 || fstat(fd, &st) < 0)
        return;
    pthread_mutex_lock(&fork_mu);
    /* An fd number is unique while it is open: an entry with this number
     * is one that was closed since, and this one replaces it. So the table
     * never outgrows the fd table, and no thread looks at another
     * context's fds (a compaction by fstat did: ThreadSanitizer). */
    for (size_t i = 0; i < n_fork_locks; i++) {
        if (fork_locks[i].fd == fd) {
            fork_locks[i] = (fork_lock){ .fd = fd, .dev = st.st_dev, .ino = st.st_ino };
            pthread_mutex_unlock(&fork_mu);
            return;
        }
    }
    if (n_fork_locks == cap_fork_locks) {
        size_t cap = cap_fork_locks ? cap_fork_locks * 2 : 16;
        fork_lock *grown = realloc(fork_locks, cap * sizeof(*grown));

        if (!grown) {
            pthread_mutex_unlock(&fork_mu);
            return;
        }
        fork_locks = grown;
        cap_fork_locks = cap;
    }
    fork_locks[n_fork_locks++] = (fork_lock){ .fd = fd, .dev = st.st_dev, .ino = st.st_ino };
    pthread_mutex_unlock(&fork_mu);
}
