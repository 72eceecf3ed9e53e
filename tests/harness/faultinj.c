/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultinj: an LD_PRELOAD FAKE of failing system calls, for tests only.
 *
 * ENOSPC, EIO and EMFILE cannot be produced reliably on a test machine (a
 * full or failing disk, an exhausted fd table at exactly one call), so this
 * module makes exactly one chosen call fail instead: the Nth call of one
 * kind, optionally only among calls whose path contains a substring. It is
 * not the kernel failing; it only shows what libdm and dmctl do when a call
 * returns that error. The real call is not made for the failing one.
 *
 *   FAULTINJ_CALL        openat | write | rename | socket | mkdirat
 *                        (openat also covers open/open64/openat64, rename
 *                        covers renameat/renameat2, socket covers socketpair,
 *                        mkdirat covers mkdir)
 *   FAULTINJ_NTH         1-based index of the call that fails
 *   FAULTINJ_ERRNO       ENOSPC, EIO, EMFILE, ENFILE, EACCES, EPERM, EROFS,
 *                        ENOMEM, EDQUOT or a number
 *   FAULTINJ_PATH_SUBSTR optional: count only calls whose path contains it
 *                        (a relative path under a directory fd is taken
 *                        as "<that directory>/<path>"; for write, the
 *                        fd's own path; both from /proc/self/fd)
 *   FAULTINJ_DELAY_MS    independent of the above: every unlinkat() whose
 *                        path contains FAULTINJ_DELAY_SUBSTR (default
 *                        "qmp-libxl-") is delayed that long before the real
 *                        call: libdm's window between "does anyone listen
 *                        on the socket" and clearing its path to bind it
 *   FAULTINJ_LOG         optional: a file to which one line is appended
 *                        when the fault fires ("CALL N PATH"), so a test
 *                        knows when N went past the last call
 *
 * Only calls made through the PLT are seen: glibc's own internal calls
 * (stdio's write, fopen's open) and raw syscall() are not. The counter is
 * per process; children that exec with a fixed environment (libdm's
 * keeper) do not load the module at all.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum { K_NONE, K_OPENAT, K_WRITE, K_RENAME, K_SOCKET, K_MKDIRAT };

static int kind = -1;
static long nth;
static int err;
static const char *substr;
static const char *logpath;
static long count;
static __thread int inside; /* our own calls (readlink, the log) */

static int parse_errno(const char *s)
{
    static const struct { const char *n; int e; } t[] = {
        { "ENOSPC", ENOSPC }, { "EIO", EIO }, { "EMFILE", EMFILE }, { "ENFILE", ENFILE },
        { "EACCES", EACCES }, { "EPERM", EPERM }, { "EROFS", EROFS }, { "ENOMEM", ENOMEM },
        { "EDQUOT", EDQUOT },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].n) == 0)
            return t[i].e;
    return atoi(s) > 0 ? atoi(s) : EIO;
}

static void init(void)
{
    const char *c = getenv("FAULTINJ_CALL"), *n = getenv("FAULTINJ_NTH"),
               *e = getenv("FAULTINJ_ERRNO");

    kind = K_NONE;
    if (!c || !n)
        return;
    if (strcmp(c, "openat") == 0 || strcmp(c, "open") == 0)
        kind = K_OPENAT;
    else if (strcmp(c, "write") == 0)
        kind = K_WRITE;
    else if (strcmp(c, "rename") == 0 || strcmp(c, "renameat") == 0)
        kind = K_RENAME;
    else if (strcmp(c, "socket") == 0)
        kind = K_SOCKET;
    else if (strcmp(c, "mkdirat") == 0 || strcmp(c, "mkdir") == 0)
        kind = K_MKDIRAT;
    nth = atol(n);
    err = e ? parse_errno(e) : EIO;
    substr = getenv("FAULTINJ_PATH_SUBSTR");
    if (substr && !*substr)
        substr = NULL;
    logpath = getenv("FAULTINJ_LOG");
}

/* Whether this call (of kind @k, on @path, may be NULL) is the one to fail. */
static int hit(int k, const char *path)
{
    if (kind < 0)
        init();
    if (k != kind || inside || nth <= 0)
        return 0;
    if (substr && (!path || !strstr(path, substr)))
        return 0;
    if (__atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST) != nth)
        return 0;
    if (logpath) {
        inside = 1;
        FILE *f = fopen(logpath, "a");
        if (f) {
            fprintf(f, "%d %ld %s pid %d\n", k, nth, path ? path : "-", (int)getpid());
            fclose(f);
        }
        inside = 0;
    }
    return 1;
}

/* The path a test matches FAULTINJ_PATH_SUBSTR against: @path itself, or
 * for a relative one under a directory fd, "<that directory>/<path>". */
static int hit_at(int k, int dfd, const char *path)
{
    char link[64], dir[PATH_MAX], full[2 * PATH_MAX];
    ssize_t n;

    if (kind < 0)
        init();
    if (k != kind || !substr || !path || path[0] == '/' || dfd == AT_FDCWD)
        return hit(k, path);
    inside = 1;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dfd);
    n = readlink(link, dir, sizeof(dir) - 1);
    inside = 0;
    dir[n > 0 ? n : 0] = 0;
    snprintf(full, sizeof(full), "%s/%s", dir, path);
    return hit(k, full);
}

#define REAL(ret, name, ...)                                    \
    static ret (*real_##name)(__VA_ARGS__);                     \
    if (!real_##name)                                           \
        real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

static int open_mode_needed(int flags)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

int openat(int dfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    REAL(int, openat, int, const char *, int, ...);
    if (open_mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (hit_at(K_OPENAT, dfd, path)) {
        errno = err;
        return -1;
    }
    return real_openat(dfd, path, flags, mode);
}

int openat64(int dfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    REAL(int, openat64, int, const char *, int, ...);
    if (open_mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (hit_at(K_OPENAT, dfd, path)) {
        errno = err;
        return -1;
    }
    return real_openat64(dfd, path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    REAL(int, open, const char *, int, ...);
    if (open_mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (hit(K_OPENAT, path)) {
        errno = err;
        return -1;
    }
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    REAL(int, open64, const char *, int, ...);
    if (open_mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (hit(K_OPENAT, path)) {
        errno = err;
        return -1;
    }
    return real_open64(path, flags, mode);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    REAL(ssize_t, write, int, const void *, size_t);
    if (kind < 0)
        init();
    if (kind == K_WRITE && !inside) {
        char link[64], path[PATH_MAX] = "";
        if (substr) {
            inside = 1;
            snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, path, sizeof(path) - 1);
            path[n > 0 ? n : 0] = 0;
            inside = 0;
        }
        if (hit(K_WRITE, substr ? path : NULL)) {
            errno = err;
            return -1;
        }
    }
    return real_write(fd, buf, len);
}

int rename(const char *from, const char *to)
{
    REAL(int, rename, const char *, const char *);
    if (hit(K_RENAME, to)) {
        errno = err;
        return -1;
    }
    return real_rename(from, to);
}

int renameat(int fdf, const char *from, int fdt, const char *to)
{
    REAL(int, renameat, int, const char *, int, const char *);
    if (hit_at(K_RENAME, fdt, to)) {
        errno = err;
        return -1;
    }
    return real_renameat(fdf, from, fdt, to);
}

int renameat2(int fdf, const char *from, int fdt, const char *to, unsigned flags)
{
    REAL(int, renameat2, int, const char *, int, const char *, unsigned);
    if (hit_at(K_RENAME, fdt, to)) {
        errno = err;
        return -1;
    }
    return real_renameat2(fdf, from, fdt, to, flags);
}

int socket(int domain, int type, int proto)
{
    REAL(int, socket, int, int, int);
    if (hit(K_SOCKET, NULL)) {
        errno = err;
        return -1;
    }
    return real_socket(domain, type, proto);
}

int socketpair(int domain, int type, int proto, int sv[2])
{
    REAL(int, socketpair, int, int, int, int *);
    if (hit(K_SOCKET, NULL)) {
        errno = err;
        return -1;
    }
    return real_socketpair(domain, type, proto, sv);
}

static void delay_if(const char *path)
{
    const char *ms = getenv("FAULTINJ_DELAY_MS"), *sub = getenv("FAULTINJ_DELAY_SUBSTR");

    if (ms && path && strstr(path, sub && *sub ? sub : "qmp-libxl-")) {
        struct timespec ts = { atol(ms) / 1000, (atol(ms) % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
}

int unlinkat(int dfd, const char *path, int flags)
{
    REAL(int, unlinkat, int, const char *, int);
    delay_if(path);
    return real_unlinkat(dfd, path, flags);
}

int mkdirat(int dfd, const char *path, mode_t mode)
{
    REAL(int, mkdirat, int, const char *, mode_t);
    if (hit_at(K_MKDIRAT, dfd, path)) {
        errno = err;
        return -1;
    }
    return real_mkdirat(dfd, path, mode);
}

int mkdir(const char *path, mode_t mode)
{
    REAL(int, mkdir, const char *, mode_t);
    if (hit(K_MKDIRAT, path)) {
        errno = err;
        return -1;
    }
    return real_mkdir(path, mode);
}
