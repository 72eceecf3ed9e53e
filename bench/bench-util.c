/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared helpers of the benchmarks (see bench-util.h). */
#define _GNU_SOURCE
#include "bench-util.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bu_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

const char *bu_qemu(void)
{
    const char *q = getenv("QEMU");

    return q && *q ? q : BU_QEMU_DEFAULT;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double bu_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bu_print_stats(const char *label, double *v, size_t n, const char *unit)
{
    double med = bu_median(v, n);

    printf("  %-34s median %10.3f %s  (min %.3f, max %.3f, n=%zu)\n", label, med, unit,
           n ? v[0] : 0.0, n ? v[n - 1] : 0.0, n);
}

void bu_result(const char *name, const char *lib, const char *floor_, double ratio,
               const char *target, const char *met)
{
    char r[32];

    if (ratio > 0)
        snprintf(r, sizeof(r), "%.3fx", ratio);
    else
        snprintf(r, sizeof(r), "-");
    printf("RESULT|%s|%s|%s|%s|%s|%s\n", name, lib, floor_, r, target, met);
    fflush(stdout);
}

void bu_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

char *bu_mkdtemp(const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    char *p;

    if (asprintf(&p, "%s/bench-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag) < 0)
        return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void bu_rmtree(const char *dir)
{
    if (dir)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void child_stdio(void)
{
    int null = open("/dev/null", O_RDWR);

    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (!getenv("BENCH_VERBOSE"))
            dup2(null, 2);
        if (null > 2)
            close(null);
    }
}

pid_t bu_spawn(char *const argv[], int keep_fd)
{
    pid_t pid = fork();

    if (pid != 0)
        return pid;
    child_stdio();
    if (keep_fd >= 0)
        fcntl(keep_fd, F_SETFD, 0);
    execvp(argv[0], argv);
    _exit(127);
}

int bu_reap(pid_t pid, int timeout_ms)
{
    int status = -1;

    for (int waited = 0; waited < timeout_ms; waited++) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid || (r < 0 && errno != EINTR))
            return status;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

pid_t bu_spawn_qemu_unix(const char *path, const char *const *extra)
{
    char *argv[40], qmp[600];
    size_t n = 0;

    snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", path);
    argv[n++] = (char *)bu_qemu();
    argv[n++] = (char *)"-S";
    argv[n++] = (char *)"-nodefaults";
    argv[n++] = (char *)"-display";
    argv[n++] = (char *)"none";
    for (; extra && *extra && n < 34; extra++)
        argv[n++] = (char *)*extra;
    argv[n++] = (char *)"-qmp";
    argv[n++] = qmp;
    argv[n] = NULL;
    return bu_spawn(argv, -1);
}

int bu_connect_retry(const char *path, int timeout_ms)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    double deadline = bu_now_us() + timeout_ms * 1000.0;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        close(fd);
        if (bu_now_us() > deadline)
            return -1;
        usleep(1000);
    }
}

int bu_write_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t w = write(fd, s, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        len -= (size_t)w;
    }
    return 0;
}

char *bu_read_line(bu_conn *c)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);

        if (nl) {
            char *line = c->buf + c->off;

            *nl = '\0';
            c->off = (size_t)(nl - c->buf) + 1;
            return line;
        }
        if (c->off) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        if (c->len == sizeof(c->buf))
            return NULL;
        /* Bounded: a QEMU that never answers (or a stale socket's peer)
         * fails the run instead of hanging the benchmark. */
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int pr = poll(&p, 1, c->timeout_ms > 0 ? c->timeout_ms : BU_READ_TIMEOUT_MS);

        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return NULL;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL;
        c->len += (size_t)r;
    }
}

char *bu_read_until(bu_conn *c, const char *needle)
{
    char *l;

    while ((l = bu_read_line(c)))
        if (strstr(l, needle))
            return l;
    return NULL;
}

int bu_negotiate(bu_conn *c)
{
    static const char caps[] = "{\"execute\":\"qmp_capabilities\",\"id\":\"c\"}\n";

    if (!bu_read_until(c, "\"QMP\""))
        return -1;
    if (bu_write_all(c->fd, caps, sizeof(caps) - 1) < 0)
        return -1;
    return bu_read_until(c, "\"return\"") ? 0 : -1;
}

void bu_quit(bu_conn *c)
{
    static const char quit[] = "{\"execute\":\"quit\"}\n";

    if (bu_write_all(c->fd, quit, sizeof(quit) - 1) == 0)
        while (bu_read_line(c))
            ;
    close(c->fd);
    c->fd = -1;
}

int bu_prebind(const char *path, int *ret_client)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int l, c;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(path);
    if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(l, 1) < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (l >= 0)
            close(l);
        if (c >= 0)
            close(c);
        return -1;
    }
    *ret_client = c;
    return l;
}
