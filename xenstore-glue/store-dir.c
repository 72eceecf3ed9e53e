/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The "dir" backend: <root>/<name>/record, one file per device model.
 *
 * Everything is reached through the root's directory fd (opened once,
 * checked, never re-resolved) with *at() calls, O_NOFOLLOW and O_CLOEXEC, so
 * a symlink planted anywhere under the root is refused rather than
 * followed. Records are replaced atomically: a fresh temporary file
 * (.record.tmpXXXXXX, created O_EXCL next to the record) then rename.
 * Readers need no lock since rename is atomic; and a reader holding the old
 * record's inode keeps reading it unchanged, which is why a record file is
 * never rewritten in place nor its inode reused. Writers (put, set_state,
 * del) serialise on a flock of the per-DM directory itself: no lock file
 * to create (on a disk filesystem each created inode costs hundreds of
 * microseconds, on every DM start).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store-internal.h"

#define RECORD_FILE "record"
#define TMP_PREFIX ".record.tmp"
#define TMP_ATTEMPTS 100

static void close_keep_errno(int fd)
{
    int e = errno;

    if (fd >= 0)
        close(fd);
    errno = e;
}

/* Opens the per-DM directory <root>/<name>. */
static int open_dm_dir(libdm__store *s, const char *name, bool create, int *ret_fd)
{
    int r = libdm__store_open_dir(s->root_fd, name, create, ret_fd);

    if (r < 0 && r != -ENOENT)
        libdm__store_log(s, XTL_ERROR, -r, "refusing record directory %s/%s", s->run_root,
                         name);
    return r;
}

/* Takes the writers' lock of an open per-DM directory: flock on the
 * directory's own descriptor (each caller opens its own), released when it
 * is closed. A writer that waited while the directory was removed holds the
 * lock of a deleted directory, where creating a file fails (ENOENT): it can
 * never write into a new directory of the same name.
 * The wait has a deadline (STORE_LOCK_WAIT_MS): a stalled writer holding
 * the lock delays a record, never the caller without end (issue 22, 5: a
 * migration's destination must answer "finished", not hang after cont). */
#define STORE_LOCK_WAIT_MS 5000

static int lock_dm_dir(libdm__store *s, int dfd, const char *name)
{
    struct timespec start, now, nap = { 0, 1000 * 1000 };
    int r;

    clock_gettime(CLOCK_MONOTONIC, &start);
    while (flock(dfd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        if (r == -EINTR)
            continue;
        /* The library's store: its loop retries (libdm__dm_store_retry). */
        if (r == -EWOULDBLOCK && s->nowait)
            return -EAGAIN;
        if (r == -EWOULDBLOCK) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((now.tv_sec - start.tv_sec) * 1000 +
                    (now.tv_nsec - start.tv_nsec) / 1000000 < STORE_LOCK_WAIT_MS) {
                nanosleep(&nap, NULL);
                if (nap.tv_nsec < 16 * 1000 * 1000)
                    nap.tv_nsec *= 2;
                continue;
            }
            r = -ETIMEDOUT;
        }
        libdm__store_log(s, XTL_ERROR, -r, "cannot lock the record directory %s/%s%s",
                         s->run_root, name, r == -ETIMEDOUT ? " (another writer holds it)" : "");
        return r;
    }
    return 0;
}

/* Reads and parses the record file of an open per-DM directory. */
static int read_record(libdm__store *s, int dfd, const char *name, libdm__record *ret)
{
    char *buf;
    size_t len = 0;
    struct stat st;
    int fd, r;

    fd = openat(dfd, RECORD_FILE,
                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        r = -errno;
        if (r != -ENOENT)
            libdm__store_log(s, XTL_ERROR, -r, "cannot open the record of %s", name);
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        libdm__store_log(s, XTL_ERROR, -1, "refusing the record of %s: not a regular file of ours",
                         name);
        close(fd);
        return -EPERM;
    }
    buf = malloc(LIBDM__RECORD_MAX + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    /* Read one byte more than the bound to detect an oversized file. */
    while (len <= LIBDM__RECORD_MAX) {
        ssize_t n = read(fd, buf + len, LIBDM__RECORD_MAX + 1 - len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > LIBDM__RECORD_MAX) {
        libdm__store_log(s, XTL_ERROR, -1, "the record of %s is larger than %d bytes", name,
                         LIBDM__RECORD_MAX);
        r = -E2BIG;
        goto out;
    }
    r = libdm__record_parse(buf, len, ret);
    if (r < 0) {
        libdm__store_log(s, XTL_ERROR, -r, "the record of %s is malformed", name);
        goto out;
    }
    if (strcmp(ret->name, name) != 0) {
        libdm__store_log(s, XTL_ERROR, -1, "the record in %s/%s names \"%s\"", s->run_root,
                         name, ret->name);
        libdm__record_clear(ret);
        r = -EINVAL;
    }
out:
    free(buf);
    close(fd);
    return r;
}

static void tmp_name(char *buf, size_t size, unsigned attempt)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[6];
    struct timespec ts;
    char suffix[7];

    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
        uint64_t x;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20) ^ ((uint64_t)attempt << 40);
        for (size_t i = 0; i < sizeof(rnd); i++, x >>= 8)
            rnd[i] = (unsigned char)x;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        suffix[i] = set[rnd[i] % (sizeof(set) - 1)];
    suffix[6] = '\0';
    snprintf(buf, size, TMP_PREFIX "%s", suffix);
}

/* Makes the written temporary file @tmp the record. Exchanged, then the old
 * record (now named @tmp) unlinked, rather than renamed over it: ext4 starts
 * writing back a file renamed over another (auto_da_alloc), which made each
 * record write cost ~3x more. A reader holding the old record still reads
 * it whole. A plain rename when there is no record yet (or the filesystem
 * cannot exchange). */
static int install_record(int dfd, const char *tmp)
{
    if (renameat2(dfd, tmp, dfd, RECORD_FILE, RENAME_EXCHANGE) == 0) {
        (void)unlinkat(dfd, tmp, 0);
        return 0;
    }
    if (errno != ENOENT && errno != EINVAL && errno != ENOSYS)
        return -errno;
    return renameat(dfd, tmp, dfd, RECORD_FILE) < 0 ? -errno : 0;
}

/* Writes @buf as the record of an open per-DM directory: temporary file,
 * then installed as "record" (install_record). */
static int write_record(libdm__store *s, int dfd, const char *name, const char *buf, size_t len)
{
    char tmp[sizeof(TMP_PREFIX) + 8];
    size_t off = 0;
    int fd = -1, r;

    for (unsigned attempt = 0; attempt < TMP_ATTEMPTS && fd < 0; attempt++) {
        tmp_name(tmp, sizeof(tmp), attempt);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                    0600);
        if (fd < 0 && errno != EEXIST) {
            r = -errno;
            libdm__store_log(s, XTL_ERROR, -r, "cannot create a temporary record for %s", name);
            return r;
        }
    }
    if (fd < 0)
        return -EEXIST;
    if (fchmod(fd, 0600) < 0) {
        r = -errno;
        goto fail;
    }
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto fail;
        }
        off += (size_t)n;
    }
    r = close(fd);
    fd = -1;
    if (r < 0) {
        r = -errno;
        goto fail;
    }
    r = install_record(dfd, tmp);
    if (r < 0)
        goto fail;
    return 0;
fail:
    libdm__store_log(s, XTL_ERROR, -r, "cannot write the record of %s", name);
    close_keep_errno(fd);
    unlinkat(dfd, tmp, 0);
    return r;
}

/* Removes temporary files left by a writer that died before its rename. */
static void remove_stale_tmp(int dfd)
{
    DIR *d;
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct dirent *e;

    if (fd < 0)
        return;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    while ((e = readdir(d)))
        if (strncmp(e->d_name, TMP_PREFIX, sizeof(TMP_PREFIX) - 1) == 0)
            unlinkat(dfd, e->d_name, 0);
    closedir(d);
}

static int dir_put(libdm__store *s, const libdm__record *rec)
{
    char *buf;
    size_t len;
    int dfd = -1, r;

    r = libdm__record_format(rec, &buf, &len);
    if (r < 0)
        return r;
    r = open_dm_dir(s, rec->name, true, &dfd);
    if (r < 0)
        goto out;
    r = lock_dm_dir(s, dfd, rec->name);
    if (r < 0)
        goto out;
    r = write_record(s, dfd, rec->name, buf, len);
out:
    if (dfd >= 0)
        close(dfd);
    free(buf);
    return r;
}

static int dir_get(libdm__store *s, const char *name, libdm__record *ret)
{
    libdm__record rec;
    int dfd, r;

    r = open_dm_dir(s, name, false, &dfd);
    if (r < 0)
        return r;
    r = read_record(s, dfd, name, &rec);
    close(dfd);
    if (r < 0)
        return r;
    *ret = rec;
    return 0;
}

static int dir_set_state(libdm__store *s, const char *name, const char *state, int exit_status)
{
    libdm__record rec;
    char *buf = NULL, *st = NULL;
    size_t len;
    int dfd = -1, r;

    libdm__record_init(&rec);
    if (state && !(st = strdup(state)))
        return -ENOMEM;
    r = open_dm_dir(s, name, false, &dfd);
    if (r < 0)
        goto out;
    r = lock_dm_dir(s, dfd, name);
    if (r < 0)
        goto out;
    r = read_record(s, dfd, name, &rec);
    if (r < 0)
        goto out;
    if (st) {
        free(rec.state);
        rec.state = st;
        st = NULL;
    }
    if (exit_status != -1)
        rec.exit_status = exit_status;
    r = libdm__record_format(&rec, &buf, &len);
    if (r < 0)
        goto out;
    r = write_record(s, dfd, name, buf, len);
out:
    if (dfd >= 0)
        close(dfd);
    libdm__record_clear(&rec);
    free(buf);
    free(st);
    return r;
}

static int dir_del(libdm__store *s, const char *name)
{
    int dfd = -1, r;

    r = open_dm_dir(s, name, false, &dfd);
    if (r < 0)
        return r;
    r = lock_dm_dir(s, dfd, name);
    if (r < 0)
        goto out;
    r = unlinkat(dfd, RECORD_FILE, 0) < 0 ? -errno : 0;
    if (r < 0 && r != -ENOENT)
        libdm__store_log(s, XTL_ERROR, -r, "cannot remove the record of %s", name);
    remove_stale_tmp(dfd);
out:
    close(dfd);
    return r;
}

static int dir_list(libdm__store *s, char ***ret_names, size_t *ret_count)
{
    return libdm__store_scan_dirs(s->root_fd, RECORD_FILE, ret_names, ret_count);
}

const struct libdm__store_ops libdm__store_dir_ops = {
    .kind = "dir",
    .put = dir_put,
    .get = dir_get,
    .set_state = dir_set_state,
    .del = dir_del,
    .list = dir_list,
    .close = NULL,
};

int libdm__store_dir_init(libdm__store *s, const char *root)
{
    int r;

    if (!root || root[0] != '/') {
        libdm__store_log(s, XTL_ERROR, -1, "the store directory must be an absolute path");
        return -EINVAL;
    }
    s->run_root = strdup(root);
    if (!s->run_root)
        return -ENOMEM;
    r = libdm__store_open_dir(AT_FDCWD, root, true, &s->root_fd);
    if (r < 0) {
        libdm__store_log(s, XTL_ERROR, -r, "refusing store directory %s", root);
        return r;
    }
    s->ops = &libdm__store_dir_ops;
    return 0;
}

void libdm__store_set_nowait(libdm__store *store, bool on)
{
    if (store)
        store->nowait = on;
}
