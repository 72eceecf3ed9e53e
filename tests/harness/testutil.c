/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"
#include "testutil.h"

#include <libdm/libdm.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool tu_sayf(int fd, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < sizeof(buf) && write(fd, buf, (size_t)n) == n;
}

void tu_on_done(libdm_dm *dm, int status, void *user)
{
    tu_done *d = user;

    (void)dm;
    d->done = true;
    d->status = status;
}

int tu_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

void tu_fds_print(const char *why)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char target[256];
        ssize_t len;

        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        len = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
        target[len > 0 ? len : 0] = '\0';
        fprintf(stderr, "# %s: fd %s -> %s\n", why, e->d_name, target);
    }
    closedir(d);
}

int tu_fd_count_is(int want, const char *why)
{
    int n = tu_fd_count();

    if (n != want) {
        fprintf(stderr, "# %s: %d fds, %d expected\n", why, n, want);
        tu_fds_print(why);
    }
    return n;
}

int tu_child_count(void)
{
    char path[300], buf[512];
    DIR *d;
    struct dirent *e;
    int n = 0, me = (int)getpid();

    d = opendir("/proc");
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        FILE *f;
        int ppid = -1;
        char *p;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        f = fopen(path, "re");
        if (!f)
            continue;
        if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) &&
            sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == me)
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

char *tu_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p;

    if (asprintf(&p, "%s/libdm-%s-XXXXXX", base, tag) < 0)
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
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void tu_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_qemu(void)
{
    const char *q = getenv("LIBDM_TEST_QEMU");

    return q ? q : LIBDM_DEFAULT_QEMU;
}

bool tu_have_qemu(void)
{
    return access(tu_qemu(), X_OK) == 0;
}

bool tu_have_pidfd(void)
{
    long fd = syscall(SYS_pidfd_open, getpid(), 0);

    if (fd < 0)
        return false;
    close((int)fd);
    return true;
}

pid_t tu_spawn_qemu_qmp(const char *sock_path, const char *const *extra)
{
    const char *argv[64];
    char qmp[512];
    size_t n = 0;
    pid_t pid;

    snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", sock_path);
    argv[n++] = tu_qemu();
    argv[n++] = "-S";
    argv[n++] = "-nodefaults";
    argv[n++] = "-display";
    argv[n++] = "none";
    argv[n++] = "-machine";
    argv[n++] = "none";
    argv[n++] = "-qmp";
    argv[n++] = qmp;
    for (; extra && *extra && n < 62; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(null, 1);
        if (!getenv("LIBDM_TEST_QEMU_STDERR"))
            dup2(null, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int tu_reap(pid_t pid, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -errno;
        if (tu_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        usleep(2000);
    }
}

bool tu_pid_alive(int pid)
{
    return pid > 0 && kill(pid, 0) == 0;
}

bool tu_path_exists(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return lstat(p, &st) == 0;
}

void tu_settle_children(libdm_ctx *ctx, int want)
{
    uint64_t deadline = tu_now_ms() + 5000;

    while (tu_child_count() > want && tu_now_ms() < deadline)
        libdm_ctx_run_once(ctx, 5);
}

int tu_require_dm_env(void)
{
    if (!tu_have_qemu()) {
        printf("SKIP: %s not found\n", tu_qemu());
        return 77;
    }
    if (!getenv("LIBDM_KEEPER")) {
        printf("SKIP: LIBDM_KEEPER not set (run through make check)\n");
        return 77;
    }
    return 0;
}

void tu_proc_each(const char *file, tu_proc_fn *fn, void *user)
{
    DIR *d = opendir("/proc");
    struct dirent *e;

    while (d && (e = readdir(d))) {
        char path[300], buf[8192];
        ssize_t len;
        int fd;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/%s", e->d_name, file);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        if (!fn(atoi(e->d_name), buf, len, user))
            break;
    }
    if (d)
        closedir(d);
}

const char *tu_qemu_name(const char *cmdline, ssize_t len, const char *prefix)
{
    bool after_name = false;

    if (!strstr(cmdline, "qemu-system"))
        return NULL;
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(cmdline + i) + 1) {
        if (after_name && !strncmp(cmdline + i, prefix, strlen(prefix)))
            return cmdline + i;
        after_name = !strcmp(cmdline + i, "-name");
    }
    return NULL;
}

struct qemus_named {
    const char *prefix;
    bool kill;
    int n;
};

static bool qemu_named_seen(int pid, const char *buf, ssize_t len, void *user)
{
    struct qemus_named *w = user;

    if (tu_qemu_name(buf, len, w->prefix)) {
        w->n++;
        if (w->kill)
            (void)kill(pid, SIGKILL);
    }
    return true;
}

int tu_qemus_named(const char *prefix, bool kill)
{
    struct qemus_named w = { .prefix = prefix, .kill = kill };

    tu_proc_each("cmdline", qemu_named_seen, &w);
    return w.n;
}

static int tap_n, tap_fails;

void tu_ok(bool cond, const char *what, const char *detail)
{
    tap_n++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", tap_n, what);
    if (!cond) {
        tap_fails++;
        if (detail)
            printf("#   %s\n", detail);
    }
}

int tu_tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_fails ? 1 : 0;
}
