/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store object: picks a backend and dispatches to it. The helpers
 * both backends share (logging, the directory checks, the names list) are
 * in store-util.c, below the backends, which never call this file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-internal.h"

static void log_lg(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void log_lg(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                   const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    libdm__store_logv(lg, level, errnoval, fmt, ap);
    va_end(ap);
}

/* ---- secure directories (the checks: store-util.c) ---- */

int libdm__secure_dir(const char *path, int create)
{
    int fd, r;

    if (!path || !*path)
        return -EINVAL;
    r = libdm__store_open_dir(AT_FDCWD, path, create != 0, &fd);
    if (r < 0)
        return r;
    close(fd);
    return 0;
}

/* root -> /run/libdm; others -> $XDG_RUNTIME_DIR/libdm. */
static int default_root(xentoollog_logger *lg, char **ret)
{
    const char *xdg;
    char *p;

    if (geteuid() == 0) {
        p = strdup("/run/libdm");
    } else {
        xdg = secure_getenv("XDG_RUNTIME_DIR");
        if (!xdg || xdg[0] != '/') {
            log_lg(lg, XTL_ERROR, -1,
                   "no default run directory: not root and XDG_RUNTIME_DIR is %s; "
                   "give the store an absolute directory",
                   xdg ? "not an absolute path" : "unset");
            return -ENOENT;
        }
        if (asprintf(&p, "%s/libdm", xdg) < 0)
            p = NULL;
    }
    if (!p)
        return -ENOMEM;
    *ret = p;
    return 0;
}

/* ---- the store ---- */

void libdm__store_close(libdm__store *store)
{
    if (!store)
        return;
    if (store->ops && store->ops->close)
        store->ops->close(store);
    if (store->root_fd >= 0)
        close(store->root_fd);
    free(store->run_root);
    free(store);
}

static int open_run_root(libdm__store *store, const char *dir)
{
    char *root = NULL;
    int r;

    if (dir) {
        root = strdup(dir);
        if (!root)
            return -ENOMEM;
    } else {
        r = default_root(store->lg, &root);
        if (r < 0)
            return r;
    }
    /* Kept open: DMs without a domid are recorded here (see below). */
    r = libdm__store_open_dir(AT_FDCWD, root, true, &store->root_fd);
    if (r < 0) {
        libdm__store_log(store, XTL_ERROR, -r, "run directory %s is unusable", root);
        free(root);
        return r;
    }
    store->run_root = root;
    return 0;
}

int libdm__store_open(const char *spec, xentoollog_logger *lg, libdm__store **ret)
{
    libdm__store *store;
    char *root = NULL;
    int r;

    if (!ret)
        return -EINVAL;
    if (!spec)
        spec = "auto";
    store = calloc(1, sizeof(*store));
    if (!store)
        return -ENOMEM;
    store->lg = lg;
    store->root_fd = -1;

    if (strcmp(spec, "auto") == 0) {
        r = libdm__store_xs_init(store, true);
        if (r == 0) {
            r = open_run_root(store, NULL);
        } else {
            /* No xenstored answers: the embedded default. */
            libdm__store_log(store, XTL_DEBUG, -1, "no xenstored answers: using the dir store");
            if (store->ops && store->ops->close)
                store->ops->close(store);
            store->ops = NULL;
            r = default_root(lg, &root);
            if (r == 0)
                r = libdm__store_dir_init(store, root);
        }
    } else if (strcmp(spec, "xenstore") == 0 || strncmp(spec, "xenstore:", 9) == 0) {
        const char *dir = spec[8] == ':' ? spec + 9 : NULL;

        if (dir && dir[0] != '/') {
            libdm__store_log(store, XTL_ERROR, -1,
                             "store spec \"%s\": the run directory must be absolute", spec);
            r = -EINVAL;
        } else {
            r = libdm__store_xs_init(store, false);
            if (r == 0)
                r = open_run_root(store, dir);
        }
    } else if (strcmp(spec, "dir") == 0) {
        r = default_root(lg, &root);
        if (r == 0)
            r = libdm__store_dir_init(store, root);
    } else if (spec[0] == '/') {
        r = libdm__store_dir_init(store, spec);
    } else {
        libdm__store_log(store, XTL_ERROR, -1,
                         "unknown store \"%s\" (auto, xenstore, dir or an absolute directory)",
                         spec);
        r = -EINVAL;
    }
    free(root);
    if (r < 0) {
        libdm__store_close(store);
        return r;
    }
    *ret = store;
    return 0;
}

const char *libdm__store_kind(const libdm__store *store)
{
    return store && store->ops ? store->ops->kind : NULL;
}

const char *libdm__store_run_root(const libdm__store *store)
{
    return store ? store->run_root : NULL;
}

/* ---- the xenstore store's two parts ----
 *
 * xenstore can only hold a DM that has a domain (its record lives under
 * /libxl/<domid>/). The xenstore store (chosen by "auto" when a xenstored
 * answers, or asked for) therefore records a DM without a domid in its run
 * directory, exactly as the dir store at that root would: the per-DM
 * directory there holds its socket and log in either case. get, set_state
 * and del look in the run directory first (one openat), then in xenstore;
 * list shows both; a name is recorded in at most one of them. */

static bool is_xs(const libdm__store *store)
{
    return store->ops == &libdm__store_xs_ops && store->root_fd >= 0;
}

static const struct libdm__store_ops *part_for(const libdm__store *store, uint32_t domid)
{
    return domid ? store->ops : &libdm__store_dir_ops;
}

static const struct libdm__store_ops *other_part(const libdm__store *store, bool xs)
{
    return xs ? store->ops : &libdm__store_dir_ops;
}

static int list_both(libdm__store *store, char ***ret_names, size_t *ret_count)
{
    char **a = NULL, **b = NULL, **all;
    size_t na = 0, nb = 0;
    int r;

    r = libdm__store_dir_ops.list(store, &a, &na);
    if (r < 0)
        return r;
    r = store->ops->list(store, &b, &nb);
    if (r < 0) {
        libdm__store_names_free(a);
        return r;
    }
    all = malloc((na + nb + 1) * sizeof(*all));
    if (!all) {
        libdm__store_names_free(a);
        libdm__store_names_free(b);
        return -ENOMEM;
    }
    memcpy(all, a, na * sizeof(*all));
    memcpy(all + na, b, nb * sizeof(*all));
    free(a);   /* the strings moved to @all */
    free(b);
    return libdm__store_names_finish(all, na + nb, ret_names, ret_count);
}

int libdm__store_put(libdm__store *store, const libdm__record *rec)
{
    libdm__record other;
    int r;

    if (!store || !rec)
        return -EINVAL;
    r = libdm__record_validate(rec);
    if (r < 0) {
        libdm__store_log(store, XTL_ERROR, -1, "refusing to store an invalid record (%s)",
                         libdm__record_check_name(rec->name) == 0 ? rec->name : "bad name");
        return r;
    }
    if (!is_xs(store))
        return store->ops->put(store, rec);
    /* One name, one record: never the same name in both parts. */
    r = other_part(store, rec->domid == 0)->get(store, rec->name, &other);
    if (r == 0) {
        libdm__record_clear(&other);
        libdm__store_log(store, XTL_ERROR, -1, "%s: already recorded %s", rec->name,
                         rec->domid ? "in the run directory (without a domid)"
                                    : "in xenstore (with a domid)");
        return -EEXIST;
    }
    if (r != -ENOENT)
        return r;
    return part_for(store, rec->domid)->put(store, rec);
}

int libdm__store_get(libdm__store *store, const char *name, libdm__record *ret)
{
    if (!store || !ret || libdm__record_check_name(name) < 0)
        return -EINVAL;
    if (is_xs(store)) {
        int r = libdm__store_dir_ops.get(store, name, ret);

        if (r != -ENOENT)
            return r;
    }
    return store->ops->get(store, name, ret);
}

int libdm__store_set_state(libdm__store *store, const char *name, const char *state,
                           int exit_status)
{
    if (!store || libdm__record_check_name(name) < 0)
        return -EINVAL;
    if ((state && libdm__record_check_state(state) < 0) ||
        libdm__record_check_exit_status(exit_status) < 0)
        return -EINVAL;
    if (is_xs(store)) {
        int r = libdm__store_dir_ops.set_state(store, name, state, exit_status);

        if (r != -ENOENT)
            return r;
    }
    return store->ops->set_state(store, name, state, exit_status);
}

int libdm__store_set_pids(libdm__store *store, const char *name, int pid, uint64_t pid_start,
                          int keeper_pid, uint64_t keeper_start)
{
    libdm__record rec;
    int r;

    r = libdm__store_get(store, name, &rec);
    if (r < 0)
        return r;
    rec.pid = pid;
    rec.pid_start = pid_start;
    rec.keeper_pid = keeper_pid;
    rec.keeper_start = keeper_start;
    r = libdm__store_put(store, &rec);
    libdm__record_clear(&rec);
    return r;
}

int libdm__store_publish(libdm__store *store, uint32_t domid, const char *const *keys_values)
{
    if (!store || !keys_values)
        return -EINVAL;
    return store->ops->publish ? store->ops->publish(store, domid, keys_values) : 0;
}

int libdm__store_del(libdm__store *store, const char *name)
{
    if (!store || libdm__record_check_name(name) < 0)
        return -EINVAL;
    if (is_xs(store)) {
        int r = libdm__store_dir_ops.del(store, name);

        if (r != -ENOENT)
            return r;
    }
    return store->ops->del(store, name);
}

int libdm__store_list(libdm__store *store, char ***ret_names, size_t *ret_count)
{
    if (!store || !ret_names)
        return -EINVAL;
    if (is_xs(store))
        return list_both(store, ret_names, ret_count);
    return store->ops->list(store, ret_names, ret_count);
}

void libdm__store_names_free(char **names)
{
    if (!names)
        return;
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}
