/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the run root proves of a DM without its record (issue 18, item 8;
 * issue 19): a record that is missing (a starter killed between its claim
 * and its first record) or unreadable (corrupt, truncated, not a file)
 * must not hide a DM. The proofs are the kernel's, never a file's word:
 *   - the name's claim is held: flock on owner.lock;
 *   - who holds it: the keeper also takes a POSIX write lock on owner.lock
 *     (libdm__rundir_mark_holder), which F_GETLK names by pid;
 *   - the domain it holds: <root>/.domid-D.lock is owner.lock's inode.
 */
#include "rundir-internal.h"
#include "store.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int libdm__rundir_list(const char *root, char ***ret_names, size_t *ret_count)
{
    int fd, r;

    r = libdm__store_open_dir(AT_FDCWD, root, false, &fd);
    if (r < 0)
        return r;
    /* A DM's directory has its claim's lock file (a directory of anything
     * else in the root is not ours to list). */
    r = libdm__store_scan_dirs(fd, LIBDM__RD_OWNER, ret_names, ret_count);
    close(fd);
    return r;
}

/* The pid of the process holding a POSIX lock on @fd's file (the keeper's
 * proof), 0 if none or not visible from our PID namespace, -errno. */
static int posix_holder(int fd)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

    if (fcntl(fd, F_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type == F_UNLCK || fl.l_pid <= 0 ? 0 : (int)fl.l_pid;
}

/* Whether anyone holds the flock on @fd's file. Taken for a moment if free
 * (as libdm__rundir_owner_held does): only for a name without a readable
 * record. */
static bool flock_held(int fd)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        (void)flock(fd, LOCK_UN);
        return false;
    }
    return errno == EWOULDBLOCK;
}

int libdm__rundir_claim_holder(libdm__rundir *rd, int *ret_pid)
{
    int fd, pid, r;

    *ret_pid = 0;
    if (rd->owner_fd >= 0)
        return 0; /* ours: not another's */
    r = libdm__rd_open_lock(rd->dfd, LIBDM__RD_OWNER, false, &fd);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    pid = posix_holder(fd);
    if (pid > 0) {
        *ret_pid = pid;
        r = 1;
    } else {
        r = flock_held(fd);
    }
    close(fd);
    return r;
}

uint32_t libdm__rundir_claimed_domid(const libdm__rundir *rd)
{
    struct stat owner, st;
    struct dirent *e;
    uint32_t domid = 0;
    DIR *d;
    int fd;

    /* A claimed domain is a second link to owner.lock. */
    if (fstatat(rd->dfd, LIBDM__RD_OWNER, &owner, AT_SYMLINK_NOFOLLOW) < 0 ||
        owner.st_nlink < 2 || libdm__store_open_dir(AT_FDCWD, rd->root, false, &fd) < 0)
        return 0;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    while (domid == 0 && (e = readdir(d))) {
        uint32_t id;
        char end;

        if (sscanf(e->d_name, ".domid-%" SCNu32 ".loc%c", &id, &end) == 2 && end == 'k' &&
            id > 0 && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_dev == owner.st_dev && st.st_ino == owner.st_ino)
            domid = id;
    }
    closedir(d);
    return domid;
}

int libdm__rundir_signal_holder(libdm__rundir *rd, int sig)
{
    int fd, pid, pidfd, r;

    r = libdm__rd_open_lock(rd->dfd, LIBDM__RD_OWNER, false, &fd);
    if (r < 0)
        return r == -ENOENT ? -ESRCH : r;
    pid = posix_holder(fd);
    if (pid <= 0) {
        r = pid < 0 ? pid : flock_held(fd) ? -ENOLCK : -ESRCH;
        close(fd);
        return r;
    }
    /* The pidfd is opened while @pid holds the lock, and the lock still
     * names @pid after: the pidfd is the holder (a pid reused meanwhile
     * would hold no lock of this file). */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        r = errno == ESRCH ? -EAGAIN : -errno;
        close(fd);
        return r;
    }
    r = posix_holder(fd) == pid ? 0 : -EAGAIN;
    if (r == 0 && syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
        r = errno == ESRCH ? -EAGAIN : -errno;
    close(pidfd);
    close(fd);
    return r;
}

int libdm__rundir_mark_holder(libdm__rundir *rd)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

    if (rd->owner_fd < 0)
        return -ENOLCK;
    return fcntl(rd->owner_fd, F_SETLK, &fl) < 0 ? -errno : 0;
}
