/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The lock files of the run directories (owner.lock, monitor.lock, the
 * domain claims) and the helpers rundir.c, rundir-domid.c and
 * rundir-scan.c share: opened through a directory fd, never a link, always
 * a regular file of ours.
 */
#include "rundir-internal.h"
#include "store.h"

#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define CLAIM_ATTEMPTS 20
#define HOLDER_MAX 256

void libdm__rd_why(char **ret_why, const char *fmt, ...)
{
    va_list ap;
    char *s;

    if (!ret_why)
        return;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    free(*ret_why);
    *ret_why = s;
}

const char *libdm__rd_dir_problem(int r)
{
    switch (r) {
    case -ELOOP: return "it is a symlink";
    case -ENOTDIR: return "it is not a directory";
    case -EPERM: return "it belongs to another user or is writable by others";
    default: return strerror(-r);
    }
}


/* Whether @dfd is still the directory named @name in @root_fd (nobody
 * removed or replaced it since we opened it). */
bool libdm__rd_still_named(int root_fd, const char *name, int dfd)
{
    struct stat held, named;

    return fstat(dfd, &held) == 0 && held.st_nlink > 0 &&
           fstatat(root_fd, name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
           held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

/* Whether @file in @root_fd is the inode @fd holds. */
bool libdm__rd_names_fd(int root_fd, const char *file, int fd)
{
    struct stat held, named;

    return fd >= 0 && fstat(fd, &held) == 0 &&
           fstatat(root_fd, file, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
           held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

/* Opens @file in @dfd (a regular file of ours, never a link). */
int libdm__rd_open_lock(int dfd, const char *file, bool create, int *ret_fd)
{
    struct stat st;
    int fd = openat(dfd, file, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | (create ? O_CREAT : 0),
                    0600);

    if (fd < 0)
        return errno == ELOOP ? -ELOOP : -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return -EPERM;
    }
    *ret_fd = fd;
    return 0;
}

/* Takes an exclusive flock on @file without waiting and checks the inode
 * we hold is still the one named @file (it may have been removed by its
 * last holder meanwhile). 0, -EAGAIN (held), or -errno. */
int libdm__rd_lock(int dfd, const char *file, int *ret_fd)
{
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        struct stat held, named;
        int fd, r = libdm__rd_open_lock(dfd, file, true, &fd);

        if (r < 0)
            return r;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            r = errno == EWOULDBLOCK ? -EAGAIN : -errno;
            close(fd);
            return r;
        }
        if (fstat(fd, &held) == 0 && fstatat(dfd, file, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
            held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
            libdm__fork_drop_fd(fd); /* a forked child must not keep it */
            *ret_fd = fd;
            return 0;
        }
        close(fd);
    }
    return -EAGAIN;
}

void libdm__rd_write_holder_pid(int fd, int pid, const char *note)
{
    char buf[HOLDER_MAX];
    int n = snprintf(buf, sizeof(buf), "%d%s%s\n", pid, note ? " " : "", note ? note : "");

    /* Written over the old text, then cut: a reader never sees it empty. */
    if (n > 0) {
        size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;

        if (pwrite(fd, buf, len, 0) == (ssize_t)len)
            (void)!ftruncate(fd, (off_t)len);
    }
}

void libdm__rd_write_holder(int fd, const char *note)
{
    libdm__rd_write_holder_pid(fd, (int)getpid(), note);
}

void libdm__rundir_set_owner_note(libdm__rundir *rd, int pid, const char *note)
{
    if (rd->owner_fd >= 0)
        libdm__rd_write_holder_pid(rd->owner_fd, pid, note);
}

/* The holder a lock file names: its pid (0 if unreadable), its note. */
void libdm__rd_read_holder(int dfd, const char *file, int *ret_pid, char **ret_note)
{
    char buf[HOLDER_MAX];
    char *sp, *nl;
    ssize_t n = -1;
    int fd, pid = 0;

    if (libdm__rd_open_lock(dfd, file, false, &fd) == 0) {
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    if ((nl = strchr(buf, '\n')))
        *nl = '\0';
    if (sscanf(buf, "%d", &pid) != 1 || pid <= 0)
        pid = 0;
    if (ret_pid)
        *ret_pid = pid;
    if (ret_note) {
        sp = strchr(buf, ' ');
        *ret_note = sp && sp[1] ? strdup(sp + 1) : NULL;
    }
}

/* The pid the kernel names for the flock on @file (/proc/locks: "N: FLOCK
 * ADVISORY WRITE PID MAJ:MIN:INODE ..."), 0 if none. The pid is the
 * locker's, which a keeper inherits the lock from: asked only while the
 * holder has not written its own pid yet, the moment after it locked. */
int libdm__rd_flock_holder(int dfd, const char *file)
{
    char line[256];
    struct stat st;
    unsigned long ino;
    unsigned maj, min;
    int pid = 0, p;
    FILE *f;

    if (fstatat(dfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0 || !(f = fopen("/proc/locks", "re")))
        return 0;
    while (!pid && fgets(line, sizeof(line), f)) {
        if (!strstr(line, " FLOCK ") || strstr(line, "->") ||
            sscanf(line, "%*d: FLOCK %*s %*s %d %x:%x:%lu", &p, &maj, &min, &ino) != 4)
            continue;
        if (ino == (unsigned long)st.st_ino && maj == major(st.st_dev) &&
            min == minor(st.st_dev) && p > 0)
            pid = p;
    }
    fclose(f);
    return pid;
}

char *libdm__proc_cmdline(int pid)
{
    char path[64], buf[201];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    while (n > 0 && buf[n - 1] == '\0')
        n--;
    buf[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
        else if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] == 0x7f)
            buf[i] = '?';
    return strdup(buf);
}

