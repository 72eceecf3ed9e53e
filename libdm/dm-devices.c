/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The devices of a running DM (issue 19: every operation async):
 * query_devices (query-chardev, query-vnc, the recorded NICs) and
 * apply_config (libxl's xenstore keys, then the VNC password over QMP), as
 * DM operations: each monitor call's reply runs the next step from the
 * loop. The blocking forms wait for the async ones (-EDEADLK inside a
 * callback, as every blocking DM operation).
 */
#include "dm-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NICS_TEXT_MAX 1024 /* as devices-run.c's */

/* ---- building the answer ---- */

static int add_str(libdm_json *o, const char *key, const char *value)
{
    return value ? libdm_json_object_add(o, key, libdm_json_new_string(value)) : 0;
}

/* query-chardev: the "serialN" devices, with the pty path when there is one. */
static int serial_info(const libdm_json *v, libdm_json *out)
{
    libdm_json *list = libdm_json_new_array();
    int r = list ? 0 : -ENOMEM;

    for (size_t i = 0; r >= 0 && i < libdm_json_length(v); i++) {
        const libdm_json *c = libdm_json_array_get(v, i);
        const char *label = libdm_json_get_string(libdm_json_object_get(c, "label"));
        const char *file = libdm_json_get_string(libdm_json_object_get(c, "filename"));
        libdm_json *o;

        if (!label || strncmp(label, "serial", 6) || !file)
            continue;
        o = libdm_json_new_object();
        r = o ? 0 : -ENOMEM;
        r = r < 0 ? r : add_str(o, "id", label);
        r = r < 0 ? r : add_str(o, "filename", file);
        if (r >= 0 && !strncmp(file, "pty:", 4))
            r = add_str(o, "pty", file + 4);
        r = r < 0 ? (libdm_json_free(o), r) : libdm_json_array_append(list, o);
    }
    if (r < 0) {
        libdm_json_free(list);
        return r;
    }
    return libdm_json_object_add(out, "serial", list);
}

static int vnc_info(const libdm_json *v, libdm_json *out)
{
    libdm_json *o;
    int enabled = 0, r;

    if (libdm_json_get_bool(libdm_json_object_get(v, "enabled"), &enabled) < 0 || !enabled)
        return 0;
    o = libdm_json_new_object();
    r = o ? 0 : -ENOMEM;
    r = r < 0 ? r : add_str(o, "host", libdm__json_get_str(v, "host"));
    r = r < 0 ? r : add_str(o, "service", libdm__json_get_str(v, "service"));
    r = r < 0 ? r : add_str(o, "auth", libdm__json_get_str(v, "auth"));
    if (r < 0) {
        libdm_json_free(o);
        return r;
    }
    return libdm_json_object_add(out, "vnc", o);
}

/* One recorded NIC "DEVID IFNAME MAC MODEL BRIDGE" (the @len bytes at
 * @text, before the next ';') as an object. */
static libdm_json *nic_object(const char *text, size_t len)
{
    char entry[NICS_TEXT_MAX], ifname[32], mac[32], model[32], bridge[32], extra[2];
    int devid;
    libdm_json *o;
    int r;

    /* %s stops at blanks only: the entry is cut at its ';' first (issue
     * 18, item 14: "BR;1" was the first NIC's bridge). */
    if (len >= sizeof(entry))
        return NULL;
    memcpy(entry, text, len);
    entry[len] = '\0';
    if (sscanf(entry, "%d %31s %31s %31s %31s %1s", &devid, ifname, mac, model, bridge,
               extra) != 5)
        return NULL;
    o = libdm_json_new_object();
    r = o ? libdm_json_object_add(o, "devid", libdm_json_new_int(devid)) : -ENOMEM;
    r = r < 0 ? r : add_str(o, "mac", mac);
    r = r < 0 ? r : add_str(o, "model", model);
    r = r < 0 ? r : add_str(o, "ifname", strcmp(ifname, "-") ? ifname : NULL);
    r = r < 0 ? r : add_str(o, "bridge", strcmp(bridge, "-") ? bridge : NULL);
    return r < 0 ? libdm_json_free(o) : o;
}

static int nic_info(const char *nics, libdm_json *out)
{
    libdm_json *list = libdm_json_new_array();
    int r = list ? 0 : -ENOMEM;

    for (const char *p = nics; r >= 0 && p && *p;) {
        const char *end = strchr(p, ';');
        libdm_json *o = nic_object(p, end ? (size_t)(end - p) : strlen(p));

        r = o ? libdm_json_array_append(list, o) : -EINVAL;
        p = end ? end + 1 : NULL;
    }
    if (r < 0) {
        libdm_json_free(list);
        return r;
    }
    return libdm_json_object_add(out, "nics", list);
}

/* ---- libxl's keys (xen profile, xenstore store) ---- */

/* What libxl writes into the domain's tree once its DM runs, from QMP:
 * serial/<n>/tty (the pty of serial port n), console/vnc-{listen,port}.
 * Values come from the DM's monitor (query-chardev, query-vnc): QEMU's
 * word, bounded by the QMP engine, and written under the domain's own
 * tree only (the store refuses any other key). One store operation. */
static int publish_devices(libdm_dm *dm, const libdm_json *dev)
{
    const char *kv[2 * LIBDM_MAX_SERIALS + 8];
    char keys[LIBDM_MAX_SERIALS][32];
    libdm__store *store;
    const libdm_json *list, *vnc;
    size_t n = 0;
    int r;

    if (strcmp(dm->profile, "xen") || dm->domid == 0)
        return 0;
    r = libdm__ctx_store(dm->ctx, &store);
    if (r < 0 || strcmp(libdm__store_kind(store), "xenstore"))
        return r < 0 ? r : 0;
    list = libdm_json_object_get(dev, "serial");
    for (size_t i = 0; i < libdm_json_length(list) && i < LIBDM_MAX_SERIALS; i++) {
        const libdm_json *o = libdm_json_array_get(list, i);
        const char *id = libdm__json_get_str(o, "id"), *pty = libdm__json_get_str(o, "pty");
        unsigned port;

        if (!id || !pty || sscanf(id, "serial%u", &port) != 1 || port >= LIBDM_MAX_SERIALS)
            continue;
        snprintf(keys[i], sizeof(keys[i]), "serial/%u/tty", port);
        kv[n++] = keys[i];
        kv[n++] = pty;
    }
    vnc = libdm_json_object_get(dev, "vnc");
    if (vnc && libdm__json_get_str(vnc, "host") && libdm__json_get_str(vnc, "service")) {
        kv[n++] = "console/vnc-listen";
        kv[n++] = libdm__json_get_str(vnc, "host");
        kv[n++] = "console/vnc-port";
        kv[n++] = libdm__json_get_str(vnc, "service");
    }
    kv[n] = NULL;
    return n ? libdm__store_publish(store, dm->domid, kv) : 0;
}

/* ---- the operation ---- */

/* The operation's own state. */
typedef struct devices_op {
    libdm__op op;
    libdm_json *out;            /* the devices found so far */
    char *password;             /* apply_config: the VNC password to set */
    bool apply;                 /* apply_config (publish, then the password) */
} devices_op;

static devices_op *devices_of(const libdm_dm *dm)
{
    return libdm__container_of(dm->op, devices_op, op);
}

static void devices_free(libdm__op *op)
{
    devices_op *d = libdm__container_of(op, devices_op, op);

    libdm_json_free(d->out);
    if (d->password) {
        explicit_bzero(d->password, strlen(d->password));
        free(d->password);
    }
}

static const libdm__op_ops devices_ops = {
    .kind = OP_DEVICES,
    .name = "query-devices",
    .free = devices_free,
};

/* The call is over; a failed one (@tolerated aside) ends the operation. */
static bool reply_ok(libdm_dm *dm, const libdm_qmp_reply *r, const char *what, int tolerated)
{
    dm->op->call = libdm_qmp_slot_free(dm->op->call);
    if (r->status >= 0 || (tolerated && r->status == tolerated))
        return true;
    libdm__dm_reply_error(dm, r, what);
    libdm__dm_op_fail(dm, r->status);
    return false;
}

static void devices_call(libdm_dm *dm, const char *cmd, const libdm_json *args,
                         libdm_qmp_reply_fn *cb)
{
    int r = libdm__dm_call(dm, cmd, args, cb);

    if (r < 0) {
        libdm__dm_error(dm, "cannot send %s: %s", cmd, strerror(-r));
        libdm__dm_op_finish(dm, r);
    }
}

static bool wants_publish(libdm_dm *dm);

/* As libxl (libxl_dm.c, device_model_postconfig_vnc_passwd): the password
 * goes to console/vnc-pass (xl vncviewer --autopass reads it) only once
 * QEMU took it; n0 there, readable by dom0 alone. */
static void on_password(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *kv[3] = { "console/vnc-pass", devices_of(dm)->password, NULL };
    libdm__store *store;
    int e = 0;

    if (!reply_ok(dm, r, "set_password", 0))
        return;
    if (wants_publish(dm) && (e = libdm__ctx_store(dm->ctx, &store)) >= 0)
        e = libdm__store_publish(store, dm->domid, kv);
    libdm__dm_op_finish(dm, e < 0 ? e : 0);
}

static void on_vnc(libdm_qmp *q, const libdm_qmp_reply *r_, void *user)
{
    libdm_dm *dm = user;
    libdm_json *args;
    int r;

    if (!reply_ok(dm, r_, "query-vnc", -EREMOTEIO)) /* -EREMOTEIO: built without VNC */
        return;
    r = r_->status < 0 ? 0 : vnc_info(r_->value, devices_of(dm)->out);
    r = r < 0 ? r : nic_info(dm->nics, devices_of(dm)->out);
    if (r >= 0 && !devices_of(dm)->apply) {
        libdm_json_free(dm->devices);
        dm->devices = devices_of(dm)->out;
        devices_of(dm)->out = NULL;
    }
    if (r >= 0 && devices_of(dm)->apply)
        r = publish_devices(dm, devices_of(dm)->out);
    if (r < 0 || !devices_of(dm)->apply || !devices_of(dm)->password) {
        libdm__dm_op_finish(dm, r < 0 ? r : 0);
        return;
    }
    args = libdm_json_new_object();
    if (!args || libdm_json_object_add(args, "protocol", libdm_json_new_string("vnc")) < 0 ||
        libdm_json_object_add(args, "password",
                              libdm_json_new_string(devices_of(dm)->password)) < 0) {
        libdm_json_free(args);
        libdm__dm_op_finish(dm, -ENOMEM);
        return;
    }
    devices_call(dm, "set_password", args, on_password);
    libdm_json_free(args);
}

static void on_chardev(libdm_qmp *q, const libdm_qmp_reply *r_, void *user)
{
    libdm_dm *dm = user;
    int r;

    if (!reply_ok(dm, r_, "query-chardev", 0))
        return;
    r = serial_info(r_->value, devices_of(dm)->out);
    if (r < 0)
        libdm__dm_op_finish(dm, r);
    else
        devices_call(dm, "query-vnc", NULL, on_vnc);
}

static int devices_begin_now(libdm_dm *dm, int timeout_ms, const char *password, bool apply,
                             libdm_dm_done_fn *cb, void *userdata)
{
    libdm_json *out;
    char *pw = NULL;
    int r;

    if (!libdm__dm_usable(dm) || !libdm_dm_get_qmp(dm))
        return dm->exited ? -ESRCH : -ENOTCONN;
    out = libdm_json_new_object();
    if (password && !(pw = strdup(password))) {
        libdm_json_free(out);
        return -ENOMEM;
    }
    if (!out) {
        free(pw);
        return -ENOMEM;
    }
    r = libdm__dm_op_begin(dm, &devices_ops, sizeof(devices_op), timeout_ms, NULL, cb,
                           userdata);
    if (r < 0) {
        libdm_json_free(out);
        if (pw)
            explicit_bzero(pw, strlen(pw));
        free(pw);
        return r;
    }
    devices_of(dm)->out = out;
    devices_of(dm)->password = pw;
    devices_of(dm)->apply = apply;
    /* The first call is sent now; its reply, and all that follows, comes
     * from the loop. */
    r = libdm__dm_call(dm, "query-chardev", NULL, on_chardev);
    if (r < 0) {
        libdm__dm_op_discard(dm);
        return r;
    }
    return 0;
}

static int noop_begin_now(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata);

/* ---- behind another operation (issue 19: queued, not -EBUSY) ---- */

typedef struct devices_req {
    libdm__queued q;
    int timeout_ms;
    char *password;
    bool apply, noop;
} devices_req;

static void req_free(libdm__queued *q)
{
    devices_req *d = libdm__container_of(q, devices_req, q);

    if (d->password) {
        explicit_bzero(d->password, strlen(d->password));
        free(d->password);
    }
    free(d);
}

static int req_start(libdm_dm *dm, libdm__queued *q)
{
    devices_req *d = libdm__container_of(q, devices_req, q);

    if (d->noop)
        return noop_begin_now(dm, d->timeout_ms, q->cb, q->user);
    return devices_begin_now(dm, d->timeout_ms, d->password, d->apply, q->cb, q->user);
}

/* Begins now, or queued behind the running operation (a stop aside: the DM
 * is going, -EBUSY as before). */
static int devices_begin(libdm_dm *dm, int timeout_ms, const char *password, bool apply,
                         bool noop, libdm_dm_done_fn *cb, void *userdata)
{
    devices_req *d;

    if (!dm->ctx)
        return -ESHUTDOWN;
    if (!dm->op && !dm->queued)   /* behind queued ones too: in order */
        return noop ? noop_begin_now(dm, timeout_ms, cb, userdata)
                    : devices_begin_now(dm, timeout_ms, password, apply, cb, userdata);
    if (libdm__dm_op_kind(dm) == OP_STOP)
        return -EBUSY;
    if (!libdm__dm_usable(dm) || !libdm_dm_get_qmp(dm))
        return dm->exited ? -ESRCH : -ENOTCONN;
    d = calloc(1, sizeof(*d));
    if (!d || (password && !(d->password = strdup(password)))) {
        free(d);
        return -ENOMEM;
    }
    d->timeout_ms = timeout_ms;
    d->apply = apply;
    d->noop = noop;
    d->q = (libdm__queued){ .start = req_start, .free = req_free, .cb = cb, .user = userdata };
    libdm__dm_queue(dm, &d->q);
    return 0;
}

int libdm_dm_query_devices_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb,
                                 void *userdata)
{
    if (!dm)
        return -EINVAL;
    return devices_begin(dm, timeout_ms, NULL, false, false, cb, userdata);
}

const libdm_json *libdm_dm_get_devices(const libdm_dm *dm)
{
    return dm ? dm->devices : NULL;
}

static bool wants_publish(libdm_dm *dm)
{
    libdm__store *store;

    return !strcmp(dm->profile, "xen") && dm->domid != 0 &&
           libdm__ctx_store(dm->ctx, &store) >= 0 &&
           !strcmp(libdm__store_kind(store), "xenstore");
}

static void finish_now(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm__dm_op_finish(user, 0);
}

int libdm_dm_apply_config_async(libdm_dm *dm, const libdm_dm_config *config, int timeout_ms,
                                libdm_dm_done_fn *cb, void *userdata)
{
    const char *pw;

    if (!dm || !config)
        return -EINVAL;
    if (!dm->ctx)
        return -ESHUTDOWN;
    pw = config->dev.vnc_display >= 0 ? config->dev.vnc_password : NULL;
    return devices_begin(dm, timeout_ms, pw, true, !pw && !wants_publish(dm), cb, userdata);
}

/* Nothing to do: still an operation, whose callback runs from the loop. */
static int noop_begin_now(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata)
{
    int r = libdm__dm_op_begin(dm, &devices_ops, sizeof(devices_op), timeout_ms, finish_now,
                               cb, userdata);

    if (r >= 0 && (r = libdm__defer(dm->ctx, &dm->op->tick)) < 0)
        libdm__dm_op_discard(dm);
    return r;
}

/* ---- the blocking forms ---- */

static int wait_blocking(libdm_dm *dm, sync_op *s, int r)
{
    return r < 0 ? r : libdm__dm_sync_wait(dm, s);
}

int libdm_dm_apply_config(libdm_dm *dm, const libdm_dm_config *config, int timeout_ms)
{
    sync_op s = { 0 };

    if (!dm || !config)
        return -EINVAL;
    if (!dm->ctx)
        return -ESHUTDOWN;
    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    return wait_blocking(dm, &s, libdm_dm_apply_config_async(dm, config, timeout_ms,
                                                             libdm__dm_sync_done_cb, &s));
}

int libdm_dm_query_devices(libdm_dm *dm, int timeout_ms, libdm_json **ret)
{
    sync_op s = { 0 };
    int r;

    if (!dm || !ret)
        return -EINVAL;
    if (!dm->ctx)
        return -ESHUTDOWN;
    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    r = wait_blocking(dm, &s, libdm_dm_query_devices_async(dm, timeout_ms,
                                                           libdm__dm_sync_done_cb, &s));
    if (r >= 0) {
        *ret = dm->devices;
        dm->devices = NULL;
    }
    return r;
}
