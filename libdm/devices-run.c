/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Devices at start, after start and at stop: images checked (and opened
 * under dm_restrict), taps created and handed over, the VNC password set
 * over QMP, and what the running DM reports about its devices.
 */
#include "internal.h"
#include "config-internal.h"
#include "dm-internal.h"
#include "store.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NICS_TEXT_MAX 1024

/* ---- start ---- */

/* Opens @d's image with @mode, never blocking (a FIFO, a tty), and checks
 * on the fd that it is a regular file or a block device (issue 18, item
 * 6): 0 and *ret_fd (blocking again), or -errno, logged. */
static int open_image(libdm_ctx *ctx, const libdm_dm_config *cfg, const libdm__disk *d,
                      int mode, int *ret_fd)
{
    int fd = open(d->path, mode | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), fl, r;
    struct stat st;

    if (fd < 0) {
        r = -errno;
        /* a socket cannot be opened (ENXIO): the same refusal as a FIFO */
        if (r == -ENXIO && stat(d->path, &st) == 0 && S_ISSOCK(st.st_mode))
            goto not_image;
        LIBDM__ERROR(ctx, "%s: disk %s: %s: %s", cfg->name, d->vdev, d->path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        LIBDM__ERROR(ctx, "%s: disk %s: %s: %s", cfg->name, d->vdev, d->path, strerror(-r));
        return r;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        close(fd);
        goto not_image;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
not_image:
    LIBDM__ERROR(ctx, "%s: disk %s: %s: not a regular file or a block device", cfg->name,
                 d->vdev, d->path);
    return -EINVAL;
}

/* Opens @d's image with @mode and hands it to QEMU (*ret_qemu_fd). */
static int pass_image(libdm_ctx *ctx, libdm_dm_config *cfg, const libdm__disk *d, int mode,
                      int *ret_qemu_fd)
{
    int fd = -1, r = open_image(ctx, cfg, d, mode, &fd);

    if (r < 0)
        return r;
    r = libdm_dm_config_pass_fd(cfg, fd, ret_qemu_fd);
    close(fd);
    if (r < 0)
        LIBDM__ERROR(ctx, "%s: disk %s: cannot pass its fd: %s", cfg->name, d->vdev,
                     strerror(-r));
    return r;
}

/* The image must exist and be usable. Under restrict libdm opens it and
 * QEMU gets the fd: it never resolves the path (no chroot games). */
static int prepare_disk(libdm_ctx *ctx, libdm_dm_config *cfg, libdm__disk *d)
{
    int r;

    if (!d->path)
        return 0;
    if (!cfg->restricted) {
        /* QEMU opens the path itself; checked the same way first. */
        int fd = -1;

        r = open_image(ctx, cfg, d, d->readonly ? O_RDONLY : O_RDWR, &fd);
        if (fd >= 0)
            close(fd);
        return r;
    }
    r = pass_image(ctx, cfg, d, d->readonly ? O_RDONLY : O_RDWR, &d->qemu_fd);
    /* QEMU opens a writable image read-only first, then reopens it for
     * writing: the set needs an fd of each access mode. */
    if (r >= 0 && !d->readonly)
        r = pass_image(ctx, cfg, d, O_RDONLY, &d->qemu_fd_ro);
    return r;
}

static void log_tap_error(libdm_ctx *ctx, const libdm_dm_config *cfg, const libdm__nic *n,
                          const char *ifname, int r)
{
    if (r == -ENODEV && n->bridge)
        LIBDM__ERROR(ctx, "%s: nic %d: bridge %s does not exist", cfg->name, n->devid,
                     n->bridge);
    else if (r == -EBUSY)
        LIBDM__ERROR(ctx, "%s: nic %d: tap %s is in use by another process", cfg->name,
                     n->devid, ifname);
    else
        LIBDM__ERROR(ctx, "%s: nic %d: cannot create tap %s: %s", cfg->name, n->devid,
                     ifname, strerror(-r));
}

static int prepare_nic(libdm_ctx *ctx, libdm_dm_config *cfg, libdm__nic *n)
{
    char ifname[LIBDM__IFNAME_MAX + 1];
    int fd = -1, r;

    if (n->caller_fd)
        return 0;
    r = libdm__nic_ifname(cfg, n, ifname, sizeof(ifname));
    if (r >= 0)
        r = libdm__tap_create(ifname, n->bridge, &fd);
    if (r < 0) {
        log_tap_error(ctx, cfg, n, ifname, r);
        return r;
    }
    r = libdm_dm_config_pass_fd(cfg, fd, &n->qemu_fd);
    close(fd); /* the config's copy keeps the tap until QEMU has it */
    if (r < 0)
        LIBDM__ERROR(ctx, "%s: nic %d: cannot pass the tap's fd: %s", cfg->name, n->devid,
                     strerror(-r));
    return r;
}

/* "DEVID IFNAME MAC MODEL BRIDGE;..." ('-' for none). */
static char *nics_text(const libdm_dm_config *cfg)
{
    char buf[NICS_TEXT_MAX] = "";
    size_t off = 0;

    for (size_t i = 0; i < cfg->dev.n_nics; i++) {
        const libdm__nic *n = &cfg->dev.nics[i];
        char mac[18], ifname[LIBDM__IFNAME_MAX + 1] = "-";
        int w;

        if (!n->caller_fd && libdm__nic_ifname(cfg, n, ifname, sizeof(ifname)) < 0)
            return NULL;
        libdm__mac_format(n->mac, mac);
        w = snprintf(buf + off, sizeof(buf) - off, "%s%d %s %s %s %s", i ? ";" : "", n->devid,
                     ifname, mac, n->model, n->bridge ? n->bridge : "-");
        if (w < 0 || (size_t)w >= sizeof(buf) - off)
            return NULL;
        off += (size_t)w;
    }
    return strdup(buf);
}

int libdm__devices_prepare(libdm_ctx *ctx, libdm_dm_config *cfg, char **ret_nics)
{
    int r = 0;

    *ret_nics = NULL;
    for (size_t i = 0; r >= 0 && i < cfg->dev.n_disks; i++)
        r = prepare_disk(ctx, cfg, &cfg->dev.disks[i]);
    for (size_t i = 0; r >= 0 && i < cfg->dev.n_nics; i++)
        r = prepare_nic(ctx, cfg, &cfg->dev.nics[i]);
    /* On failure the taps made so far go when @cfg's fds close. */
    if (r < 0 || !cfg->dev.n_nics)
        return r;
    *ret_nics = nics_text(cfg);
    return *ret_nics ? 0 : -ENOMEM;
}

/* ---- stop ---- */

/* ---- after start ---- */

static int publish_devices(libdm_dm *dm, int timeout_ms);

int libdm_dm_apply_config(libdm_dm *dm, const libdm_dm_config *config, int timeout_ms)
{
    libdm_json *args;
    libdm_qmp *q;
    int r;

    if (!dm || !config)
        return -EINVAL;
    if (!libdm__dm_ctx(dm))
        return -ESHUTDOWN;
    r = publish_devices(dm, timeout_ms);
    if (r < 0 || config->dev.vnc_display < 0 || !config->dev.vnc_password)
        return r;
    q = libdm_dm_get_qmp(dm);
    if (!q)
        return -ENOTCONN;
    args = libdm_json_new_object();
    if (!args || libdm_json_object_add(args, "protocol", libdm_json_new_string("vnc")) < 0 ||
        libdm_json_object_add(args, "password",
                              libdm_json_new_string(config->dev.vnc_password)) < 0) {
        libdm_json_free(args);
        return -ENOMEM;
    }
    r = libdm_qmp_call(q, "set_password", args, timeout_ms, NULL);
    libdm_json_free(args);
    return r;
}

/* ---- what the DM reports ---- */

static int add_str(libdm_json *o, const char *key, const char *value)
{
    return value ? libdm_json_object_add(o, key, libdm_json_new_string(value)) : 0;
}

/* query-chardev: the "serialN" devices, with the pty path when there is one. */
static int serial_info(libdm_qmp *q, int timeout_ms, libdm_json *out)
{
    libdm_json *v = NULL, *list = libdm_json_new_array();
    int r = list ? libdm_qmp_call(q, "query-chardev", NULL, timeout_ms, &v) : -ENOMEM;

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
    libdm_json_free(v);
    if (r < 0) {
        libdm_json_free(list);
        return r;
    }
    return libdm_json_object_add(out, "serial", list);
}

static int vnc_info(libdm_qmp *q, int timeout_ms, libdm_json *out)
{
    libdm_json *v = NULL, *o;
    int enabled = 0, r = libdm_qmp_call(q, "query-vnc", NULL, timeout_ms, &v);

    if (r == -EREMOTEIO) /* built without VNC */
        return 0;
    if (r < 0 || libdm_json_get_bool(libdm_json_object_get(v, "enabled"), &enabled) < 0 ||
        !enabled) {
        libdm_json_free(v);
        return r < 0 ? r : 0;
    }
    o = libdm_json_new_object();
    r = o ? 0 : -ENOMEM;
    r = r < 0 ? r : add_str(o, "host", libdm__json_get_str(v, "host"));
    r = r < 0 ? r : add_str(o, "service", libdm__json_get_str(v, "service"));
    r = r < 0 ? r : add_str(o, "auth", libdm__json_get_str(v, "auth"));
    libdm_json_free(v);
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

int libdm_dm_query_devices(libdm_dm *dm, int timeout_ms, libdm_json **ret)
{
    libdm_qmp *q;
    libdm_json *out;
    int r;

    if (!dm || !ret)
        return -EINVAL;
    q = libdm_dm_get_qmp(dm);
    if (!q)
        return -ENOTCONN;
    out = libdm_json_new_object();
    if (!out)
        return -ENOMEM;
    r = serial_info(q, timeout_ms, out);
    r = r < 0 ? r : vnc_info(q, timeout_ms, out);
    r = r < 0 ? r : nic_info(libdm_dm_get_nics(dm), out);
    if (r < 0) {
        libdm_json_free(out);
        return r;
    }
    *ret = out;
    return 0;
}

/* ---- libxl's keys (xen profile, xenstore store) ---- */

/* What libxl writes into the domain's tree once its DM runs, from QMP:
 * serial/<n>/tty (the pty of serial port n), console/vnc-{listen,port}.
 * Values come from the DM's monitor (query-chardev, query-vnc): QEMU's
 * word, bounded by the QMP engine, and written under the domain's own
 * tree only (the store refuses any other key). */
static int publish_devices(libdm_dm *dm, int timeout_ms)
{
    const char *kv[2 * LIBDM_MAX_SERIALS + 8];
    char keys[LIBDM_MAX_SERIALS][32];
    libdm__store *store;
    libdm_json *dev = NULL;
    const libdm_json *list, *vnc;
    size_t n = 0;
    int r;

    if (strcmp(libdm_dm_get_profile(dm), "xen") || libdm_dm_get_domid(dm) == 0)
        return 0;
    r = libdm__ctx_store(libdm__dm_ctx(dm), &store);
    if (r < 0 || strcmp(libdm__store_kind(store), "xenstore"))
        return r < 0 ? r : 0;
    r = libdm_dm_query_devices(dm, timeout_ms, &dev);
    if (r < 0)
        return r;
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
    r = n ? libdm__store_publish(store, libdm_dm_get_domid(dm), kv) : 0;
    libdm_json_free(dev);
    return r;
}
