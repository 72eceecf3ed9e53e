/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The xenstore store's small helpers, shared by store-xs.c (records) and
 * store-xs-libxl.c (libxl's keys): paths, writes with permissions n0,
 * errno mapping, parsing.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#include "store-internal.h"
#include "store-xs-internal.h"

#define PATH_LEN LIBDM__XS_PATH_LEN

int libdm__xs_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

void libdm__xs_key_path(char *buf, uint32_t domid, const char *key)
{
    snprintf(buf, PATH_LEN, LIBDM__XS_ROOT "/%u/%s", domid, key);
}

void libdm__xs_pid_path(char *buf, uint32_t domid)
{
    snprintf(buf, PATH_LEN, "/local/domain/%u/image/device-model-pid", domid);
}

void libdm__xs_kill_uid_path(char *buf, uint32_t domid)
{
    snprintf(buf, PATH_LEN, "/local/domain/%u/image/device-model-kill-uid", domid);
}

void libdm__xs_dm_version_path(char *buf, uint32_t domid)
{
    snprintf(buf, PATH_LEN, "/libxl/%u/dm-version", domid);
}

/* The uid a restricted DM runs as, from its confinement text ("uid N ..."),
 * or -1. */
long libdm__xs_confinement_uid(const char *confinement)
{
    unsigned long uid;

    if (!confinement || sscanf(confinement, "uid %lu", &uid) != 1 || uid == 0 ||
        uid > 0xfffffffeul)
        return -1;
    return (long)uid;
}

/* Canonical decimal domid in 1..LIBDM__DOMID_MAX, else 0. */
uint32_t libdm__xs_parse_domid(const char *s)
{
    uint32_t v = 0;

    if (!*s || *s == '0' || strlen(s) > 5)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10 + (uint32_t)(*s - '0');
    }
    return v <= LIBDM__DOMID_MAX ? v : 0;
}

int libdm__xs_rm_ok(libdm__store *s, xs_transaction_t t, const char *path)
{
    if (!xs_rm(s->xsh, t, path) && errno != ENOENT)
        return libdm__xs_errno();
    return 0;
}

/* Writes @value at @path with permissions n0. */
int libdm__xs_write_n0(libdm__store *s, xs_transaction_t t, const char *path, const char *value)
{
    struct xs_permissions perm = { .id = 0, .perms = XS_PERM_NONE };

    if (value && !xs_write(s->xsh, t, path, value, (unsigned)strlen(value)))
        return libdm__xs_errno();
    if (!value && !xs_mkdir(s->xsh, t, path))
        return libdm__xs_errno();
    if (!xs_set_permissions(s->xsh, t, path, &perm, 1))
        return libdm__xs_errno();
    return 0;
}
