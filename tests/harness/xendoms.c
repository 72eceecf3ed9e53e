/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fakes' shared list of domains: see xendoms.h. Tests only. */
#include "config.h"

#include "xendoms.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define DOMID_LIMIT 0x7ff0u /* DOMID_FIRST_RESERVED */

static unsigned int insert(uint32_t *ids, unsigned int n, unsigned int max, unsigned long v)
{
    unsigned int i = n;

    if (v >= DOMID_LIMIT || n >= max)
        return n;
    while (i > 0 && ids[i - 1] > v)
        i--;
    if (i > 0 && ids[i - 1] == v)
        return n;
    memmove(&ids[i + 1], &ids[i], (n - i) * sizeof(*ids));
    ids[i] = (uint32_t)v;
    return n + 1;
}

unsigned int xendoms_list(uint32_t *ids, unsigned int max)
{
    const char *s = getenv("XENHYP_DOMIDS"), *state = getenv("XENHYP_STATE");
    unsigned int n = 0;

    if (max == 0)
        return 0;
    ids[n++] = 0;
    while (s && *s) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (end != s && !errno)
            n = insert(ids, n, max, v);
        s = strchr(s, ',');
        s = s ? s + 1 : NULL;
    }
    if (state && *state) {
        DIR *d = opendir(state);
        struct dirent *e;

        while (d && (e = readdir(d))) {
            char *end;
            unsigned long v;

            if (strncmp(e->d_name, "dom.", 4) != 0)
                continue;
            errno = 0;
            v = strtoul(e->d_name + 4, &end, 10);
            if (end != e->d_name + 4 && !*end && !errno)
                n = insert(ids, n, max, v);
        }
        if (d)
            closedir(d);
    }
    return n;
}

int xendoms_exists(uint32_t domid)
{
    uint32_t ids[XENDOMS_MAX];
    unsigned int n = xendoms_list(ids, XENDOMS_MAX);

    for (unsigned int i = 0; i < n; i++)
        if (ids[i] == domid)
            return 1;
    return 0;
}

static int path(char *buf, size_t size, const char *leaf, uint32_t domid)
{
    const char *state = getenv("XENHYP_STATE");

    if (!state || !*state) {
        errno = ENOSYS; /* no state directory: domains cannot be created */
        return -1;
    }
    int n = leaf ? snprintf(buf, size, "%s/%s", state, leaf)
                 : snprintf(buf, size, "%s/dom.%u", state, (unsigned int)domid);

    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* The next domid from the counter file (under flock). */
static int next_domid(uint32_t *domid)
{
    char p[4096], buf[32] = "";
    const char *base = getenv("XENHYP_DOMID_BASE");
    unsigned long v = base && *base ? strtoul(base, NULL, 10) : 1;
    ssize_t r;
    int fd, err = 0;

    if (path(p, sizeof(p), "next", 0) < 0)
        return -1;
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) < 0) {
        err = errno;
        goto out;
    }
    r = pread(fd, buf, sizeof(buf) - 1, 0);
    if (r > 0) {
        buf[r] = '\0';
        v = strtoul(buf, NULL, 10);
    }
    if (v == 0 || v >= DOMID_LIMIT) {
        err = ENOSPC;
        goto out;
    }
    *domid = (uint32_t)v;
    r = snprintf(buf, sizeof(buf), "%lu", v + 1);
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)r, 0) != r)
        err = errno;
out:
    if (fd >= 0)
        close(fd);
    errno = err;
    return err ? -1 : 0;
}

int xendoms_create(uint32_t *domid)
{
    return xendoms_create_handle(domid, NULL);
}

int xendoms_create_handle(uint32_t *domid, const uint8_t handle[16])
{
    char p[4096];
    int fd, ok = 1;

    if (*domid == 0 && next_domid(domid) < 0)
        return -1;
    if (*domid >= DOMID_LIMIT || xendoms_exists(*domid)) {
        errno = EEXIST;
        return -1;
    }
    if (path(p, sizeof(p), NULL, *domid) < 0)
        return -1;
    fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (handle)
        ok = write(fd, handle, 16) == 16;
    close(fd);
    if (!ok) {
        unlink(p);
        errno = EIO;
        return -1;
    }
    return 0;
}

int xendoms_handle(uint32_t domid, uint8_t handle[16])
{
    char p[4096];
    int fd, ok;

    if (path(p, sizeof(p), NULL, domid) < 0)
        return -1;
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ok = read(fd, handle, 16) == 16;
    close(fd);
    return ok ? 0 : -1;
}

int xendoms_destroy(uint32_t domid)
{
    char p[4096];

    if (path(p, sizeof(p), NULL, domid) < 0)
        return -1;
    if (unlink(p) < 0) {
        errno = ESRCH;
        return -1;
    }
    return 0;
}
