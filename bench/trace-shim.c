/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * trace-shim: an LD_PRELOAD library for bench/trace-migrate.sh. In processes
 * named dmctl or bench-migrate only (QEMU and the keeper are left alone),
 * it timestamps (CLOCK_REALTIME, the clock of QEMU's event timestamps) each
 * QMP message libdm sends (sendmsg) and receives (recv), each line on a pipe
 * (dmctl's migration channel) and each record rename, into memory, and
 * appends them to $BENCH_TRACE at exit: "USEC PID TAG TEXT" per line.
 * Built by trace-migrate.sh, never part of the library.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAXREC 4096

typedef struct rec {
    double us;
    char tag[4];
    char text[72];
} rec;

static rec *recs;
static int nrec, active;

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void add(const char *tag, const char *p, size_t n)
{
    rec *r;

    if (!active || nrec >= MAXREC)
        return;
    r = &recs[nrec++];
    r->us = now_us();
    snprintf(r->tag, sizeof(r->tag), "%s", tag);
    n = n < sizeof(r->text) - 1 ? n : sizeof(r->text) - 1;
    memcpy(r->text, p, n);
    r->text[n] = '\0';
    for (char *c = r->text; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}

/* One record per line of @p (QMP and the channel are line based). */
static void add_lines(const char *tag, const char *p, ssize_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', (size_t)n);
        size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)n;

        if (len > 1)
            add(tag, p, len);
        p += len;
        n -= (ssize_t)len;
    }
}

static int is_pipe(int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

__attribute__((constructor)) static void shim_init(void)
{
    char comm[32] = "";
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        ssize_t n = read(fd, comm, sizeof(comm) - 1);
        comm[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    if (getenv("BENCH_TRACE") && (!strncmp(comm, "dmctl", 5) || !strncmp(comm, "bench-migrate", 13)))
        active = (recs = calloc(MAXREC, sizeof(*recs))) != NULL;
}

__attribute__((destructor)) static void shim_fini(void)
{
    FILE *f;

    if (!active || !(f = fopen(getenv("BENCH_TRACE"), "a")))
        return;
    for (int i = 0; i < nrec; i++)
        fprintf(f, "%.0f %d %s %s\n", recs[i].us, (int)getpid(), recs[i].tag, recs[i].text);
    fclose(f);
}

ssize_t sendmsg(int fd, const struct msghdr *mh, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    ssize_t r;

    if (!real)
        real = (ssize_t (*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
    if (active && mh->msg_iovlen)
        add_lines("Q>", mh->msg_iov[0].iov_base, (ssize_t)mh->msg_iov[0].iov_len);
    r = real(fd, mh, flags);
    return r;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    static ssize_t (*real)(int, void *, size_t, int);
    ssize_t r;

    if (!real)
        real = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
    r = real(fd, buf, len, flags);
    if (active && r > 0)
        add_lines("Q<", buf, r);
    return r;
}

ssize_t write(int fd, const void *buf, size_t len)
{
    static ssize_t (*real)(int, const void *, size_t);

    if (!real)
        real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (active && len && is_pipe(fd))
        add_lines("C>", buf, (ssize_t)len);
    return real(fd, buf, len);
}

ssize_t read(int fd, void *buf, size_t len)
{
    static ssize_t (*real)(int, void *, size_t);
    ssize_t r;

    if (!real)
        real = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    r = real(fd, buf, len);
    if (active && r > 0 && is_pipe(fd))
        add_lines("C<", buf, r);
    return r;
}

int renameat(int od, const char *o, int nd, const char *n)
{
    static int (*real)(int, const char *, int, const char *);

    if (!real)
        real = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
    add("R", n, strlen(n));
    return real(od, o, nd, n);
}
