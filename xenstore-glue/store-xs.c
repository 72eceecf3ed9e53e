/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The "xenstore" backend (libxenstore).
 *
 * A record lives under /tool/libdm/<domid>/<key>, one node per key of the
 * "dir" format, each value being exactly what the dir format would hold
 * after "key=" (same escaping), so that reading back goes through the same
 * per-field validator (libdm__record_set_value). Put also writes the keys
 * libxl's own readers use, so that xl and libxl recognise the DM:
 *   /libxl/<domid>/dm-version = qemu_xen          (xen profile; missing,
 *                                libxl takes the DM for qemu-traditional)
 *   /local/domain/<domid>/image/device-model-pid  (the DM pid, if known)
 *   /local/domain/<domid>/image/device-model-kill-uid (restricted: the
 *                                uid libxl's reaper kills by)
 * Those keys are libxl's too: libdm writes one only if it is absent or
 * libdm wrote it (the tokens in /tool/libdm/<domid>/owns), and removes
 * only those it owns; a key libxl wrote is never overwritten or deleted.
 * kill-uid only for a uid this domain's DM alone runs as (as libxl: never
 * xen-qemuuser-shared's, nobody's, or one another recorded DM runs as),
 * since libxl's destroy kills every process of that uid. Before the DM
 * starts (xen profile) /local/domain/0/device-model/<domid> is made if
 * missing, as libxl does, readable by the domain.
 * After start, libdm__store_publish() adds what libxl publishes from QMP:
 * /local/domain/<domid>/serial/<n>/tty and console/vnc-{listen,port}, and
 * console/vnc-pass once QEMU accepted the VNC password (as libxl does).
 * /local/domain/0/device-model/<domid>/state belongs to QEMU, which writes
 * "running" into it itself: libdm neither writes nor reads it.
 * Every node written gets permissions "n0": owned by dom0, no access for
 * anyone else. Each call is one transaction, retried a bounded number of
 * times on EAGAIN (a conflicting transaction).
 *
 * Why /tool/libdm and not /libxl/<domid>/libdm (where records were until
 * issue 21): libxl's destroy removes /libxl/<domid> (libxl_domain.c,
 * devices_destroy_cb) whether or not the DM has ended (it signals the DM,
 * it does not wait for it), so a record there vanished under a live DM
 * (dmctl list lost it) or before its keeper or libdm-xl-dm could record
 * the exit, leaving /run/libdm/NAME behind. Restoring it after the fact
 * would need a process watching xenstore; libdm has none (no daemon).
 * /tool is the namespace xenstore-paths.pandoc gives tools, and nothing of
 * Xen removes /tool/libdm: a record there ends only through libdm (stop,
 * forget, the keeper's autokill), as in the dir store. The price: a dead
 * DM's record outlives its domain until stopped or forgotten, and until
 * then blocks that domid for a DM of another name (-EEXIST).
 *
 * Records are found by name by scanning /tool/libdm/<domid>/name; put
 * refuses (-EEXIST) a name already recorded for another domid, or a domid
 * already recorded under another name.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#include "store-internal.h"
#include "store-xs-internal.h"

#define TX_ATTEMPTS 16
#define PATH_LEN LIBDM__XS_PATH_LEN

typedef int tx_fn(libdm__store *s, xs_transaction_t t, void *arg);

static bool connection_error(int r)
{
    return r == -EBADF || r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN ||
           r == -ECONNREFUSED || r == -EIO;
}

static void base_path(char *buf, uint32_t domid)
{
    snprintf(buf, PATH_LEN, LIBDM__XS_ROOT "/%u", domid);
}

static int reconnect(libdm__store *s)
{
    struct xs_handle *h;

    if (!s->xs_broken && s->xsh)
        return 0;
    h = xs_open(0);
    if (!h) {
        /* Not -ENOENT (no socket): callers must not read it as "no record". */
        libdm__store_log(s, XTL_ERROR, errno, "cannot reconnect to xenstored");
        return errno == ENOMEM ? -ENOMEM : -ENOTCONN;
    }
    xs_close(s->xsh);
    s->xsh = h;
    s->xs_broken = false;
    return 0;
}

/* Runs @fn in a transaction, again on EAGAIN, at most TX_ATTEMPTS times. */
static int run_tx(libdm__store *s, const char *what, tx_fn *fn, void *arg)
{
    int r;

    r = reconnect(s);
    if (r < 0)
        return r;
    for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
        xs_transaction_t t = xs_transaction_start(s->xsh);

        if (t == XBT_NULL) {
            r = libdm__xs_errno();
            goto fail;
        }
        r = fn(s, t, arg);
        if (r < 0) {
            xs_transaction_end(s->xsh, t, true);
            if (r == -EAGAIN)
                continue;
            goto fail;
        }
        if (xs_transaction_end(s->xsh, t, false))
            return r;
        r = libdm__xs_errno();
        if (r != -EAGAIN)
            goto fail;
    }
    libdm__store_log(s, XTL_ERROR, -1, "%s: xenstore transaction kept conflicting (%d attempts)",
                     what, TX_ATTEMPTS);
    return -EAGAIN;
fail:
    if (connection_error(r))
        s->xs_broken = true;
    if (r != -ENOENT && r != -EEXIST && r != -EINVAL)
        libdm__store_log(s, XTL_ERROR, -r, "%s: xenstore request failed", what);
    return r;
}

/* Called with each domain's libdm/name (@name, @len bytes, ours to keep or
 * free; @path where it was read): 0 goes on, anything else stops the walk
 * and is its result. */
typedef int name_fn(libdm__store *s, uint32_t domid, const char *path, char *name,
                    unsigned len, void *arg);

/* Walks the names under libdm's root: @fn's stop value, 0 at the end,
 * @no_root without a root, or the xenstore error. */
static int each_name(libdm__store *s, xs_transaction_t t, int no_root, name_fn *fn, void *arg)
{
    unsigned num = 0;
    char **ents;
    int r = 0;

    ents = xs_directory(s->xsh, t, LIBDM__XS_ROOT, &num);
    if (!ents)
        return errno == ENOENT ? no_root : libdm__xs_errno();
    for (unsigned i = 0; i < num && r == 0; i++) {
        uint32_t d = libdm__xs_parse_domid(ents[i]);
        char path[PATH_LEN];
        unsigned len;
        char *v;

        if (!d)
            continue;
        libdm__xs_key_path(path, d, "name");
        v = xs_read(s->xsh, t, path, &len);
        if (v)
            r = fn(s, d, path, v, len, arg);
        else if (errno != ENOENT)
            r = libdm__xs_errno();
    }
    free(ents);
    return r;
}

struct find_args {
    const char *name;
    uint32_t domid;
};

static int match_name(libdm__store *s, uint32_t domid, const char *path, char *name,
                      unsigned len, void *arg)
{
    struct find_args *a = arg;
    bool match = len == strlen(a->name) && memcmp(name, a->name, len) == 0;

    (void)s;
    (void)path;
    free(name);
    if (!match)
        return 0;
    a->domid = domid;
    return 1;
}

/* The domid whose libdm/name is @name: 0 and *ret_domid, or -ENOENT. */
static int find_domid(libdm__store *s, xs_transaction_t t, const char *name, uint32_t *ret_domid)
{
    struct find_args a = { name, 0 };
    int r = each_name(s, t, -ENOENT, match_name, &a);

    if (r > 0)
        *ret_domid = a.domid;
    return r > 0 ? 0 : r == 0 ? -ENOENT : r;
}

/* Reads the record at @domid through the shared field validator. */
static int read_record(libdm__store *s, xs_transaction_t t, uint32_t domid, libdm__record *ret)
{
    libdm__record rec;
    int r = 0;

    libdm__record_init(&rec);
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++) {
        char path[PATH_LEN];
        unsigned len;
        char *v;

        libdm__xs_key_path(path, domid, libdm__record_key(i));
        v = xs_read(s->xsh, t, path, &len);
        if (!v) {
            if (errno == ENOENT)
                continue;
            r = libdm__xs_errno();
            goto fail;
        }
        r = libdm__record_set_value(&rec, i, v, len);
        free(v);
        if (r < 0) {
            if (r == -EINVAL)
                libdm__store_log(s, XTL_ERROR, -1, "invalid value at %s", path);
            goto fail;
        }
    }
    if (libdm__record_validate(&rec) < 0 || rec.domid != domid) {
        libdm__store_log(s, XTL_ERROR, -1, "the record under " LIBDM__XS_ROOT "/%u is %s", domid,
                         rec.name ? "for another domain" : "incomplete");
        r = -EINVAL;
        goto fail;
    }
    *ret = rec;
    return 0;
fail:
    libdm__record_clear(&rec);
    return r;
}

/* ---- put ---- */

struct put_args {
    const libdm__record *rec;
    char *values[LIBDM__F_COUNT]; /* NULL: absent */
    bool conflict;
};

static int put_tx(libdm__store *s, xs_transaction_t t, void *arg)
{
    struct put_args *a = arg;
    const libdm__record *rec = a->rec;
    char path[PATH_LEN];
    uint32_t other;
    unsigned len;
    char *v, *owns;
    int r;

    a->conflict = false;
    r = find_domid(s, t, rec->name, &other);
    if (r == 0 && other != rec->domid) {
        a->conflict = true;
        return -EEXIST;
    }
    if (r < 0 && r != -ENOENT)
        return r;
    libdm__xs_key_path(path, rec->domid, "name");
    v = xs_read(s->xsh, t, path, &len);
    if (v) {
        bool same = len == strlen(rec->name) && memcmp(v, rec->name, len) == 0;

        free(v);
        if (!same) {
            a->conflict = true;
            return -EEXIST;
        }
    } else if (errno != ENOENT) {
        return libdm__xs_errno();
    }

    owns = libdm__xs_read_owns(s, t, rec->domid);
    if (!owns)
        return libdm__xs_errno();
    base_path(path, rec->domid);
    if ((r = libdm__xs_rm_ok(s, t, path)) < 0 || (r = libdm__xs_write_n0(s, t, path, NULL)) < 0) {
        free(owns);
        return r;
    }
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++) {
        if (!a->values[i])
            continue;
        libdm__xs_key_path(path, rec->domid, libdm__record_key(i));
        r = libdm__xs_write_n0(s, t, path, a->values[i]);
        if (r < 0) {
            free(owns);
            return r;
        }
    }
    r = libdm__xs_put_libxl_keys(s, t, rec, owns);
    free(owns);
    return r;
}

static int xs_put(libdm__store *s, const libdm__record *rec)
{
    struct put_args a = { .rec = rec };
    int r = 0;

    if (rec->domid < 1) {
        libdm__store_log(s, XTL_ERROR, -1,
                         "%s: the xenstore store needs a domid >= 1 (the record has none)",
                         rec->name);
        return -EINVAL;
    }
    for (unsigned i = 0; i < LIBDM__F_COUNT && r >= 0; i++) {
        r = libdm__record_get_value(rec, i, &a.values[i]);
        if (r == -ENOENT) {
            a.values[i] = NULL;
            r = 0;
        }
    }
    if (r >= 0)
        r = run_tx(s, "put", put_tx, &a);
    if (r == -EEXIST && a.conflict)
        libdm__store_log(s, XTL_ERROR, -1,
                         "%s: xenstore already holds this name for another domain, "
                         "or domain %u under another name",
                         rec->name, rec->domid);
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++)
        free(a.values[i]);
    return r;
}

/* ---- get ---- */

struct get_args {
    const char *name;
    libdm__record rec;
    bool have;
};

static int get_tx(libdm__store *s, xs_transaction_t t, void *arg)
{
    struct get_args *a = arg;
    uint32_t domid;
    int r;

    if (a->have) {
        libdm__record_clear(&a->rec);
        a->have = false;
    }
    r = find_domid(s, t, a->name, &domid);
    if (r < 0)
        return r;
    r = read_record(s, t, domid, &a->rec);
    if (r < 0)
        return r;
    a->have = true;
    if (strcmp(a->rec.name, a->name) != 0)
        return -EAGAIN; /* changed between the scan and the read */
    return 0;
}

static int xs_get(libdm__store *s, const char *name, libdm__record *ret)
{
    struct get_args a = { .name = name };
    int r;

    r = run_tx(s, "get", get_tx, &a);
    if (r < 0) {
        if (a.have)
            libdm__record_clear(&a.rec);
        return r;
    }
    *ret = a.rec;
    return 0;
}

/* ---- set_state ---- */

struct set_state_args {
    const char *name;
    const char *state;
    int exit_status;
};

static int set_state_tx(libdm__store *s, xs_transaction_t t, void *arg)
{
    struct set_state_args *a = arg;
    libdm__record rec;
    char path[PATH_LEN];
    uint32_t domid;
    int r;

    r = find_domid(s, t, a->name, &domid);
    if (r < 0)
        return r;
    r = read_record(s, t, domid, &rec);
    if (r < 0)
        return r;
    libdm__record_clear(&rec);
    if (a->state) {
        libdm__xs_key_path(path, domid, "state");
        if ((r = libdm__xs_write_n0(s, t, path, a->state)) < 0)
            return r;
    }
    if (a->exit_status != -1) {
        char v[16];

        snprintf(v, sizeof(v), "%d", a->exit_status);
        libdm__xs_key_path(path, domid, "exit-status");
        if ((r = libdm__xs_write_n0(s, t, path, v)) < 0)
            return r;
    }
    return 0;
}

static int xs_set_state(libdm__store *s, const char *name, const char *state, int exit_status)
{
    struct set_state_args a = { name, state, exit_status };

    return run_tx(s, "set_state", set_state_tx, &a);
}

/* ---- publish: what libxl's readers look up after start ---- */

/* Everything publish may write, for del to remove. */
static const char *const published[] = { "serial", "console/vnc-listen", "console/vnc-port",
                                         "console/vnc-pass" };

struct publish_args {
    uint32_t domid;
    const char *const *kv;
};

static bool publishable(const char *key)
{
    for (size_t i = 0; i < sizeof(published) / sizeof(published[0]); i++)
        if (!strncmp(key, published[i], strlen(published[i])))
            return !strstr(key, "..");
    return false;
}

static int publish_tx(libdm__store *s, xs_transaction_t t, void *arg)
{
    struct publish_args *a = arg;
    char path[PATH_LEN];
    int r;

    for (size_t i = 0; a->kv[i] && a->kv[i + 1]; i += 2) {
        snprintf(path, sizeof(path), "/local/domain/%u/%s", a->domid, a->kv[i]);
        if ((r = libdm__xs_write_n0(s, t, path, a->kv[i + 1])) < 0)
            return r;
    }
    return 0;
}

static int xs_publish(libdm__store *s, uint32_t domid, const char *const *kv)
{
    struct publish_args a = { domid, kv };

    if (domid < 1)
        return -EINVAL;
    for (size_t i = 0; kv[i]; i += 2)
        if (!kv[i + 1] || !publishable(kv[i]))
            return -EINVAL;
    return run_tx(s, "publish", publish_tx, &a);
}

/* ---- del ---- */

static int del_tx(libdm__store *s, xs_transaction_t t, void *arg)
{
    const char *name = arg;
    char path[PATH_LEN];
    uint32_t domid;
    unsigned num = 0;
    char **ents, *owns;
    bool made_libxl_dir;
    int r;

    r = find_domid(s, t, name, &domid);
    if (r < 0)
        return r;
    owns = libdm__xs_read_owns(s, t, domid);
    if (!owns)
        return libdm__xs_errno();
    r = libdm__xs_del_libxl_keys(s, t, domid, owns);
    made_libxl_dir = strstr(owns, "dm-version") != NULL;
    free(owns);
    base_path(path, domid);
    if (r < 0 || (r = libdm__xs_rm_ok(s, t, path)) < 0)
        return r;
    for (size_t i = 0; i < sizeof(published) / sizeof(published[0]); i++) {
        snprintf(path, sizeof(path), "/local/domain/%u/%s", domid, published[i]);
        if ((r = libdm__xs_rm_ok(s, t, path)) < 0)
            return r;
    }
    /* Drop /libxl/<domid> too if libdm's dm-version made it and nothing
     * else is in it. */
    snprintf(path, sizeof(path), "/libxl/%u", domid);
    ents = made_libxl_dir ? xs_directory(s->xsh, t, path, &num) : NULL;
    if (ents) {
        free(ents);
        if (num == 0)
            r = libdm__xs_rm_ok(s, t, path);
    }
    return r;
}

static int xs_del(libdm__store *s, const char *name)
{
    return run_tx(s, "del", del_tx, (void *)name);
}

/* ---- list ---- */

struct list_args {
    char **names;
    size_t count, cap;
};

static void list_reset(struct list_args *a)
{
    for (size_t i = 0; i < a->count; i++)
        free(a->names[i]);
    free(a->names);
    *a = (struct list_args){ NULL, 0, 0 };
}

static int keep_name(libdm__store *s, uint32_t domid, const char *path, char *name,
                     unsigned len, void *arg)
{
    struct list_args *a = arg;

    (void)domid;
    if (strlen(name) != len || libdm__record_check_name(name) < 0) {
        libdm__store_log(s, XTL_WARN, -1, "ignoring an invalid name at %s", path);
        free(name);
        return 0;
    }
    if (a->count == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        char **n = realloc(a->names, cap * sizeof(*n));

        if (!n) {
            free(name);
            return -ENOMEM;
        }
        a->names = n;
        a->cap = cap;
    }
    a->names[a->count++] = name;
    return 0;
}

static int list_tx(libdm__store *s, xs_transaction_t t, void *arg)
{
    list_reset(arg);
    return each_name(s, t, 0, keep_name, arg);
}

static int xs_list(libdm__store *s, char ***ret_names, size_t *ret_count)
{
    struct list_args a = { NULL, 0, 0 };
    int r;

    r = run_tx(s, "list", list_tx, &a);
    if (r < 0) {
        list_reset(&a);
        return r;
    }
    return libdm__store_names_finish(a.names, a.count, ret_names, ret_count);
}

static void xs_store_close(libdm__store *s)
{
    xs_close(s->xsh);
    s->xsh = NULL;
}

const struct libdm__store_ops libdm__store_xs_ops = {
    .kind = "xenstore",
    .put = xs_put,
    .get = xs_get,
    .set_state = xs_set_state,
    .del = xs_del,
    .list = xs_list,
    .publish = xs_publish,
    .close = xs_store_close,
};

int libdm__store_xs_init(libdm__store *s, bool quiet)
{
    struct xs_handle *h;
    unsigned len;
    char *v;
    int r;

    h = xs_open(0);
    if (!h) {
        r = libdm__xs_errno();
        libdm__store_log(s, quiet ? XTL_DEBUG : XTL_ERROR, -r, "cannot connect to xenstored");
        return r;
    }
    /* A cheap read: any answer, even an error reply, shows a daemon is there. */
    v = xs_read(h, XBT_NULL, "/", &len);
    if (v) {
        free(v);
    } else if (errno != ENOENT && errno != EACCES && errno != EPERM && errno != EINVAL) {
        r = libdm__xs_errno();
        libdm__store_log(s, quiet ? XTL_DEBUG : XTL_ERROR, -r, "xenstored does not answer");
        xs_close(h);
        return r;
    }
    s->xsh = h;
    s->ops = &libdm__store_xs_ops;
    return 0;
}
