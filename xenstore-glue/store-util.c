/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the store's backends share, below them (tests/layers/floors.txt):
 * logging, the checks of a directory of ours (the xenstore backend keeps
 * its sockets and logs on disk too), and the sorted list of names.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-internal.h"

#define LOG_CONTEXT "libdm-store"

void libdm__store_logv(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                       const char *fmt, va_list ap)
{
    if (lg)
        xtl_logv(lg, level, errnoval, LOG_CONTEXT, fmt, ap);
}

void libdm__store_log(const libdm__store *store, xentoollog_level level, int errnoval,
                      const char *fmt, ...)
{
    va_list ap;

    if (!store || !store->lg)
        return;
    va_start(ap, fmt);
    libdm__store_logv(store->lg, level, errnoval, fmt, ap);
    va_end(ap);
}

/* ---- secure directories ---- */

/* Opens @name (no trailing slash) as a directory of ours, refusing a
 * symlink as its last component. */
static int open_dir_checked(int dirfd, const char *name, bool create, int *ret_fd)
{
    struct stat st;
    bool created = false;
    int fd, r;

    if (create) {
        if (mkdirat(dirfd, name, 0700) == 0)
            created = true;
        else if (errno != EEXIST)
            return -errno;
    }
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        /* Tell a symlink from another non-directory. */
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISLNK(st.st_mode))
                return -ELOOP;
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        }
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        r = -ENOTDIR;
        goto fail;
    }
    if (st.st_uid != geteuid() || (!created && (st.st_mode & (S_IWGRP | S_IWOTH)))) {
        r = -EPERM;
        goto fail;
    }
    /* Whatever the umask, a directory we create is exactly 0700. */
    if (created && (st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0) {
        r = -errno;
        goto fail;
    }
    *ret_fd = fd;
    return 0;
fail:
    close(fd);
    return r;
}

/* A copy of @name without trailing slashes ("/" stays "/"), or NULL. A
 * trailing slash would make O_NOFOLLOW resolve "link/" through the link. */
static char *strip_trailing_slashes(const char *name)
{
    size_t n = strlen(name);
    char *copy;

    while (n > 1 && name[n - 1] == '/')
        n--;
    copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, name, n);
        copy[n] = '\0';
    }
    return copy;
}

int libdm__store_open_dir(int dirfd, const char *name, bool create, int *ret_fd)
{
    char *stripped;
    int r;

    if (!name || !*name || !ret_fd)
        return -EINVAL;
    stripped = strip_trailing_slashes(name);
    if (!stripped)
        return -ENOMEM;
    r = open_dir_checked(dirfd, stripped, create, ret_fd);
    free(stripped);
    return r;
}

/* ---- names ---- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int libdm__store_names_finish(char **names, size_t count, char ***ret_names,
                              size_t *ret_count)
{
    char **out;
    size_t n = 0;

    out = realloc(names, (count + 1) * sizeof(*out));
    if (!out) {
        for (size_t i = 0; i < count; i++)
            free(names[i]);
        free(names);
        return -ENOMEM;
    }
    if (count)
        qsort(out, count, sizeof(*out), cmp_names);
    for (size_t i = 0; i < count; i++) {
        if (n > 0 && strcmp(out[n - 1], out[i]) == 0)
            free(out[i]);
        else
            out[n++] = out[i];
    }
    out[n] = NULL;
    *ret_names = out;
    if (ret_count)
        *ret_count = n;
    return 0;
}

/* One subdirectory entry of a scan: kept if it is a valid name of a
 * directory holding a regular @marker. */
static bool scan_keeps(int dirfd, const char *name, const char *marker)
{
    char path[NAME_MAX + 2 + NAME_MAX + 1];
    struct stat st;

    if (libdm__record_check_name(name) < 0 ||
        fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return false;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", name, marker) >= sizeof(path))
        return false;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

int libdm__store_scan_dirs(int dirfd, const char *marker, char ***ret_names,
                           size_t *ret_count)
{
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    DIR *d;
    int fd, r = 0;

    fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        r = -errno;
        close(fd);
        return r;
    }
    for (;;) {
        errno = 0;
        e = readdir(d);
        if (!e) {
            r = errno ? -errno : 0;
            break;
        }
        if (!scan_keeps(fd, e->d_name, marker))
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **n = realloc(names, ncap * sizeof(*n));

            if (!n) {
                r = -ENOMEM;
                break;
            }
            names = n;
            cap = ncap;
        }
        if (!(names[count] = strdup(e->d_name))) {
            r = -ENOMEM;
            break;
        }
        count++;
    }
    closedir(d);
    if (r < 0) {
        for (size_t i = 0; i < count; i++)
            free(names[i]);
        free(names);
        return r;
    }
    return libdm__store_names_finish(names, count, ret_names, ret_count);
}
