/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The xenstore store and libxl's own keys: /libxl/<domid>/dm-version,
 * /local/domain/<domid>/image/device-model-{pid,kill-uid} and
 * /local/domain/0/device-model/<domid>. libxl writes them for the DMs it
 * starts, libdm for its own: each side keeps to what it wrote (see the
 * comment at the top of store-xs.c).
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-internal.h"
#include "store-xs-internal.h"

/* ---- libxl's keys: written only where absent or ours ---- */

#define OWNS_LEN 64

static bool has_token(const char *list, const char *token)
{
    size_t n = strlen(token);

    for (const char *p = list; p && (p = strstr(p, token)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static void add_token(char *list, const char *token)
{
    size_t len = strlen(list);

    snprintf(list + len, OWNS_LEN - len, "%s%s", len ? " " : "", token);
}

/* Sets libxl's key @path to @value (NULL: absent) unless someone else wrote
 * it: @before lists what libdm owned, @owns gets @token if it owns it now. */
static int own_key(libdm__store *s, xs_transaction_t t, const char *path, const char *value,
                   const char *token, const char *before, char *owns)
{
    bool owned = has_token(before, token);
    unsigned len;
    char *v = xs_read(s->xsh, t, path, &len);
    int r;

    if (!v && errno != ENOENT)
        return libdm__xs_errno();
    free(v);
    if (v && !owned)
        return 0; /* libxl's (or another toolstack's): never touched */
    if (!value)
        return owned ? libdm__xs_rm_ok(s, t, path) : 0;
    r = libdm__xs_write_n0(s, t, path, value);
    if (r == 0)
        add_token(owns, token);
    return r;
}

/* A DM of another domain, @d, runs as @uid too: its kill-uid, if libdm
 * wrote it, goes (libxl's destroy of @d would kill ours). */
static int unshare_kill_uid(libdm__store *s, xs_transaction_t t, uint32_t d)
{
    char path[LIBDM__XS_PATH_LEN], *owns = libdm__xs_read_owns(s, t, d), *p;
    int r = 0;

    if (!owns)
        return libdm__xs_errno();
    if (has_token(owns, "kill-uid")) {
        libdm__xs_kill_uid_path(path, d);
        r = libdm__xs_rm_ok(s, t, path);
        p = strstr(owns, "kill-uid"); /* a token: has_token said so */
        memmove(p, p + 8, strlen(p + 8) + 1);
        libdm__xs_key_path(path, d, "owns");
        if (r == 0)
            r = libdm__xs_write_n0(s, t, path, owns);
    }
    free(owns);
    return r;
}

/* 1 if a DM of another domain is recorded as running as @uid (their
 * kill-uid is then withdrawn), 0 if none, or a negative errno. */
static int uid_shared(libdm__store *s, xs_transaction_t t, uint32_t domid, long uid)
{
    unsigned num = 0;
    char **ents = xs_directory(s->xsh, t, LIBDM__XS_ROOT, &num);
    int shared = 0, r = 0;

    if (!ents)
        return errno == ENOENT ? 0 : libdm__xs_errno();
    for (unsigned i = 0; i < num && r == 0; i++) {
        uint32_t d = libdm__xs_parse_domid(ents[i]);
        char path[LIBDM__XS_PATH_LEN];
        unsigned len;
        char *v;

        if (!d || d == domid)
            continue;
        libdm__xs_key_path(path, d, libdm__record_key(LIBDM__F_CONFINEMENT));
        v = xs_read(s->xsh, t, path, &len);
        if (v && libdm__xs_confinement_uid(v) == uid) {
            shared = 1;
            r = unshare_kill_uid(s, t, d);
        }
        free(v);
    }
    free(ents);
    return r < 0 ? r : shared;
}

/* The kill-uid to record for @rec, or -1: only a uid that belongs to this
 * domain's DM alone (libxl: device_model_user or range base + domid). */
static const char *const shared_users[LIBDM__STORE_SHARED_UIDS_MAX] = {
    "xen-qemuuser-shared", "nobody"
};

int libdm__store_shared_uids(char *buf, size_t len)
{
    size_t used = 0;

    if (!buf || !len)
        return -EINVAL;
    buf[0] = '\0';
    for (size_t i = 0; i < LIBDM__STORE_SHARED_UIDS_MAX; i++) {
        struct passwd pw, *p = NULL;
        char pwbuf[1024];
        int n;

        if (getpwnam_r(shared_users[i], &pw, pwbuf, sizeof(pwbuf), &p) || !p)
            continue;
        n = snprintf(buf + used, len - used, "%s%ld", used ? "," : "", (long)p->pw_uid);
        if (n < 0 || (size_t)n >= len - used)
            return -ENOSPC;
        used += (size_t)n;
    }
    return 0;
}

int libdm__store_set_shared_uids(libdm__store *store, const char *list)
{
    size_t n = 0;

    if (!store || !list)
        return -EINVAL;
    for (const char *p = list; *p;) {
        char *end;
        long v;

        errno = 0;
        v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || n == LIBDM__STORE_SHARED_UIDS_MAX ||
            (*end && *end != ','))
            return -EINVAL;
        store->shared_uids[n++] = v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return -EINVAL;
    }
    store->n_shared_uids = n;
    store->have_shared_uids = true;
    return 0;
}

/* Whether @uid is one of libxl's shared DM users. */
static bool uid_of_shared_user(const libdm__store *s, long uid)
{
    if (s->have_shared_uids) {
        for (size_t i = 0; i < s->n_shared_uids; i++)
            if (s->shared_uids[i] == uid)
                return true;
        return false;
    }
    for (size_t i = 0; i < LIBDM__STORE_SHARED_UIDS_MAX; i++) {
        struct passwd *pw = getpwnam(shared_users[i]);

        if (pw && (long)pw->pw_uid == uid)
            return true;
    }
    return false;
}

static int kill_uid(libdm__store *s, xs_transaction_t t, const libdm__record *rec, long *ret)
{
    long uid = libdm__xs_confinement_uid(rec->confinement);
    int r;

    *ret = -1;
    if (uid < 0 || uid_of_shared_user(s, uid))
        return 0;
    if (uid == 65534) /* the overflow uid: nobody's on most systems */
        return 0;
    r = uid_shared(s, t, rec->domid, uid);
    if (r == 0)
        *ret = uid;
    return r < 0 ? r : 0;
}

/* /local/domain/0/device-model/<domid>, as libxl makes it before the spawn:
 * owned by dom0, readable by the domain (QEMU writes "state" in it). */
static int own_dm_dir(libdm__store *s, xs_transaction_t t, const libdm__record *rec,
                      const char *before, char *owns)
{
    struct xs_permissions perm[2] = { { .id = 0, .perms = XS_PERM_NONE },
                                      { .id = rec->domid, .perms = XS_PERM_READ } };
    char path[LIBDM__XS_PATH_LEN];
    unsigned len;
    char *v;

    snprintf(path, sizeof(path), "/local/domain/0/device-model/%u", rec->domid);
    v = xs_read(s->xsh, t, path, &len);
    if (!v && errno != ENOENT)
        return libdm__xs_errno();
    free(v);
    if (v && !has_token(before, "dm-dir"))
        return 0;
    if (!v && (!xs_mkdir(s->xsh, t, path) || !xs_set_permissions(s->xsh, t, path, perm, 2)))
        return libdm__xs_errno();
    add_token(owns, "dm-dir");
    return 0;
}

/* libxl's keys for @rec; the record's "owns" is rewritten. */
int libdm__xs_put_libxl_keys(libdm__store *s, xs_transaction_t t, const libdm__record *rec,
                          const char *before)
{
    bool xen = rec->profile && !strcmp(rec->profile, "xen");
    char path[LIBDM__XS_PATH_LEN], owns[OWNS_LEN] = "", num[24];
    long uid;
    int r;

    /* libdm-xl-dm's DMs (config-adopt.c): every such key is libxl's. */
    if (rec->profile && !strcmp(rec->profile, "xl"))
        return 0;
    libdm__xs_dm_version_path(path, rec->domid);
    r = own_key(s, t, path, xen ? "qemu_xen" : NULL, "dm-version", before, owns);
    if (r == 0)
        r = kill_uid(s, t, rec, &uid);
    if (r == 0) {
        snprintf(num, sizeof(num), "%ld", uid);
        libdm__xs_kill_uid_path(path, rec->domid);
        r = own_key(s, t, path, uid > 0 ? num : NULL, "kill-uid", before, owns);
    }
    if (r == 0) {
        snprintf(num, sizeof(num), "%d", rec->pid);
        libdm__xs_pid_path(path, rec->domid);
        r = own_key(s, t, path, rec->pid > 0 ? num : NULL, "pid", before, owns);
    }
    if (r == 0 && xen)
        r = own_dm_dir(s, t, rec, before, owns);
    libdm__xs_key_path(path, rec->domid, "owns");
    if (r == 0 && owns[0])
        r = libdm__xs_write_n0(s, t, path, owns);
    return r;
}

/* Removes the libxl keys libdm owns (before: the record's "owns"). */
int libdm__xs_del_libxl_keys(libdm__store *s, xs_transaction_t t, uint32_t domid,
                             const char *before)
{
    char path[LIBDM__XS_PATH_LEN];
    int r = 0;

    libdm__xs_dm_version_path(path, domid);
    if (has_token(before, "dm-version"))
        r = libdm__xs_rm_ok(s, t, path);
    libdm__xs_kill_uid_path(path, domid);
    if (r == 0 && has_token(before, "kill-uid"))
        r = libdm__xs_rm_ok(s, t, path);
    libdm__xs_pid_path(path, domid);
    if (r == 0 && has_token(before, "pid"))
        r = libdm__xs_rm_ok(s, t, path);
    snprintf(path, sizeof(path), "/local/domain/0/device-model/%u", domid);
    if (r == 0 && has_token(before, "dm-dir"))
        r = libdm__xs_rm_ok(s, t, path);
    return r;
}

/* The record's "owns" (malloc'd, "" if none), or NULL with errno. */
char *libdm__xs_read_owns(libdm__store *s, xs_transaction_t t, uint32_t domid)
{
    char path[LIBDM__XS_PATH_LEN];
    unsigned len;
    char *v;

    libdm__xs_key_path(path, domid, "owns");
    v = xs_read(s->xsh, t, path, &len);
    if (!v && errno == ENOENT)
        v = strdup("");
    return v;
}

