/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The configuration document (issue 22, defect 1): a DM's complete
 * configuration as versioned JSON, so that the whole DM can travel to
 * another host and start there with exactly what it had. Written with
 * json.c (yajl_gen); read back through the public setters, so a document
 * can never make a configuration the setters would refuse. The reader
 * refuses an unknown version, an unknown member and anything it cannot
 * honour, saying why, before anything runs.
 *
 * What does not travel: the name (the destination's own), the QEMU binary,
 * the timeout and "incoming" (the receiver's). What cannot travel is
 * refused when the document is made: a caller-built command line
 * (set_argv), a NIC on the caller's tap fd, fds passed to QEMU.
 */
#include "internal.h"
#include "config-internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DOC_VERSION 1

/* ---- writing ---- */

static bool add(libdm_json *o, const char *key, libdm_json *v)
{
    if (!v)
        return false;
    if (libdm_json_object_add(o, key, v) < 0) {
        libdm_json_free(v);
        return false;
    }
    return true;
}

static bool add_str(libdm_json *o, const char *key, const char *s)
{
    return !s || add(o, key, libdm_json_new_string(s));
}

static bool add_int(libdm_json *o, const char *key, int64_t i)
{
    return add(o, key, libdm_json_new_int(i));
}

static bool add_bool(libdm_json *o, const char *key, bool b)
{
    return add(o, key, libdm_json_new_bool(b));
}

static bool add_strv(libdm_json *o, const char *key, char *const *v, size_t n)
{
    libdm_json *a;

    if (!n)
        return true;
    a = libdm_json_new_array();
    for (size_t i = 0; a && i < n; i++)
        if (libdm_json_array_append(a, libdm_json_new_string(v[i])) < 0)
            a = libdm_json_free(a);
    return add(o, key, a);
}

static const char *seccomp_name(libdm_seccomp s)
{
    return s == LIBDM_SECCOMP_QEMU ? "qemu" : s == LIBDM_SECCOMP_FILTER ? "filter" : "auto";
}

static const char *serial_name(libdm_serial_kind k)
{
    return k == LIBDM_SERIAL_FILE ? "file" : k == LIBDM_SERIAL_UNIX ? "unix" : "pty";
}

static const char *vga_name(libdm_vga v)
{
    return v == LIBDM_VGA_STD ? "std" : v == LIBDM_VGA_CIRRUS ? "cirrus" : "none";
}

static bool add_disks(libdm_json *o, const libdm__devices *d)
{
    libdm_json *a = libdm_json_new_array();

    for (size_t i = 0; a && i < d->n_disks; i++) {
        const libdm__disk *k = &d->disks[i];
        libdm_json *e = libdm_json_new_object();
        bool ok = e && add_str(e, "vdev", k->vdev) && add_str(e, "path", k->path) &&
                  add_str(e, "format", k->format == LIBDM_DISK_QCOW2 ? "qcow2" : "raw") &&
                  add_bool(e, "readonly", k->readonly) && add_bool(e, "cdrom", k->cdrom);

        if (!ok || libdm_json_array_append(a, e) < 0) {
            libdm_json_free(e);
            a = libdm_json_free(a);
        }
    }
    return add(o, "disks", a);
}

static bool add_nics(libdm_json *o, const libdm__devices *d)
{
    libdm_json *a = libdm_json_new_array();

    for (size_t i = 0; a && i < d->n_nics; i++) {
        const libdm__nic *n = &d->nics[i];
        char mac[18];
        libdm_json *e = libdm_json_new_object();

        libdm__mac_format(n->mac, mac);
        bool ok = e && add_str(e, "mac", mac) && add_str(e, "model", n->model) &&
                  add_str(e, "bridge", n->bridge) && add_str(e, "ifname", n->ifname);
        if (!ok || libdm_json_array_append(a, e) < 0) {
            libdm_json_free(e);
            a = libdm_json_free(a);
        }
    }
    return add(o, "nics", a);
}

static bool add_serials(libdm_json *o, const libdm__devices *d)
{
    libdm_json *a = libdm_json_new_array();

    for (size_t i = 0; a && i < d->n_serials; i++) {
        libdm_json *e = libdm_json_new_object();
        bool ok = e && add_str(e, "kind", serial_name(d->serials[i].kind)) &&
                  add_str(e, "path", d->serials[i].path);

        if (!ok || libdm_json_array_append(a, e) < 0) {
            libdm_json_free(e);
            a = libdm_json_free(a);
        }
    }
    return add(o, "serials", a);
}

static bool add_vnc(libdm_json *o, const libdm__devices *d)
{
    libdm_json *e;

    if (d->vnc_display < 0)
        return true;
    e = libdm_json_new_object();
    bool ok = e && add_int(e, "display", d->vnc_display) &&
              add_str(e, "listen", d->vnc_listen) &&
              add_int(e, "findunused", d->vnc_findunused) &&
              add_str(e, "password", d->vnc_password);
    if (!ok)
        e = libdm_json_free(e);
    return add(o, "vnc", e);
}

static bool add_devices(libdm_json *o, const libdm__devices *d)
{
    char buf[32];
    libdm_json *mo = libdm_json_new_object();
    bool ok = mo != NULL;

    if (ok && d->suppress_vmdesc >= 0)
        ok = add_str(mo, "suppress-vmdesc", d->suppress_vmdesc ? "on" : "off");
    if (ok && d->igd_passthru >= 0)
        ok = add_str(mo, "igd-passthru", d->igd_passthru ? "on" : "off");
    if (ok && d->max_ram_below_4g) {
        snprintf(buf, sizeof(buf), "%" PRIu64, d->max_ram_below_4g);
        ok = add_str(mo, "max-ram-below-4g", buf);
    }
    if (!ok)
        mo = libdm_json_free(mo);
    return add(o, "machine_opts", mo) && add_disks(o, d) && add_nics(o, d) &&
           add_serials(o, d) && add_vnc(o, d) && add_str(o, "keymap", d->keymap) &&
           add_bool(o, "acpi", !d->no_acpi) && add_int(o, "vcpus", d->vcpus) &&
           add_int(o, "max_vcpus", d->max_vcpus) &&
           add_str(o, "boot", d->boot[0] ? d->boot : NULL) &&
           add_str(o, "vga", vga_name(d->vga)) && add_int(o, "vgamem_mb", d->vgamem_mb) &&
           add_bool(o, "usb", d->usb) && add_bool(o, "tablet", d->tablet);
}

static const char *unportable(const libdm_dm_config *c)
{
    if (c->adopt_argv)
        return "a caller-built command line (set_argv) cannot be re-created elsewhere";
    for (size_t i = 0; i < c->dev.n_nics; i++)
        if (c->dev.nics[i].caller_fd)
            return "a NIC on the caller's tap fd cannot travel";
    if (c->n_pass_fds)
        return "fds passed to QEMU cannot travel";
    return NULL;
}

int libdm_dm_config_to_doc(const libdm_dm_config *c, char **ret_text, const char **ret_why)
{
    const char *why;
    libdm_json *o;
    int r;

    if (!c || !ret_text)
        return -EINVAL;
    *ret_text = NULL;
    if ((why = unportable(c))) {
        if (ret_why)
            *ret_why = why;
        return -ENOTSUP;
    }
    o = libdm_json_new_object();
    bool ok = o && add_int(o, "version", DOC_VERSION) &&
              add_str(o, "profile", libdm__profile_to_string(c->profile)) &&
              add_int(o, "domid", c->domid) && add_str(o, "machine", c->machine) &&
              add_int(o, "memory_mb", (int64_t)c->memory_mb) &&
              add_int(o, "maxmem_mb", (int64_t)c->maxmem_mb) &&
              add_bool(o, "restrict", c->restricted) && add_str(o, "runas", c->runas) &&
              add_str(o, "chroot", c->chroot_dir) &&
              add_str(o, "seccomp", seccomp_name(c->seccomp)) &&
              add_strv(o, "extra_args", c->extra_args, c->n_extra_args) &&
              add_strv(o, "extra_args_hvm", c->extra_args_hvm, c->n_extra_args_hvm) &&
              add_devices(o, &c->dev);
    r = ok ? libdm_json_to_string(o, 0, ret_text) : -ENOMEM;
    libdm_json_free(o);
    return r;
}

/* ---- reading ---- */

typedef struct reader {
    libdm_dm_config *c;
    char *why;
    size_t why_len;
} reader;

__attribute__((format(printf, 2, 3)))
static int refuse(reader *rd, const char *fmt, ...)
{
    va_list ap;

    if (rd->why && rd->why_len) {
        va_start(ap, fmt);
        vsnprintf(rd->why, rd->why_len, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static bool get_str(const libdm_json *v, const char **ret)
{
    return (*ret = libdm_json_get_string(v)) != NULL;
}

static bool get_uint(const libdm_json *v, int64_t max, int64_t *ret)
{
    return libdm_json_get_int(v, ret) >= 0 && *ret >= 0 && *ret <= max;
}

static bool get_bool(const libdm_json *v, bool *ret)
{
    int b;

    if (libdm_json_get_bool(v, &b) < 0)
        return false;
    *ret = b;
    return true;
}

/* Every member of @o must be one of @keys (NULL-terminated). */
static int only_keys(reader *rd, const libdm_json *o, const char *what, const char *const *keys)
{
    if (libdm_json_get_type(o) != LIBDM_JSON_OBJECT)
        return refuse(rd, "%s is not an object", what);
    for (size_t i = 0; i < libdm_json_length(o); i++) {
        const char *k = libdm_json_object_key_at(o, i);
        size_t j = 0;

        while (keys[j] && strcmp(keys[j], k))
            j++;
        if (!keys[j])
            return refuse(rd, "%s: unknown member \"%.40s\" (not honoured here)", what, k);
    }
    return 0;
}

static int read_disk(reader *rd, const libdm_json *e, size_t i)
{
    static const char *const keys[] = { "vdev", "path", "format", "readonly", "cdrom", NULL };
    const char *vdev = NULL, *path = NULL, *fmt = NULL;
    bool ro = false, cd = false;
    const libdm_json *p = libdm_json_object_get(e, "path");

    if (only_keys(rd, e, "disk", keys) < 0)
        return -EINVAL;
    if (!get_str(libdm_json_object_get(e, "vdev"), &vdev) ||
        (p && !get_str(p, &path)) || !get_str(libdm_json_object_get(e, "format"), &fmt) ||
        (strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) ||
        !get_bool(libdm_json_object_get(e, "readonly"), &ro) ||
        !get_bool(libdm_json_object_get(e, "cdrom"), &cd))
        return refuse(rd, "disk %zu: a member is missing or of the wrong type", i);
    unsigned flags = (cd ? LIBDM_DISK_CDROM : 0) | (ro && !cd ? LIBDM_DISK_READONLY : 0);
    if (libdm_dm_config_add_disk(rd->c, vdev, path, strcmp(fmt, "qcow2") ? LIBDM_DISK_RAW :
                                 LIBDM_DISK_QCOW2, flags) < 0)
        return refuse(rd, "disk %zu (%.8s): refused by this libdm", i, vdev);
    return 0;
}

static int read_nic(reader *rd, const libdm_json *e, size_t i)
{
    static const char *const keys[] = { "mac", "model", "bridge", "ifname", NULL };
    const char *mac = NULL, *model = NULL, *bridge = NULL, *ifname = NULL;
    const libdm_json *b = libdm_json_object_get(e, "bridge"), *n = libdm_json_object_get(e, "ifname");

    if (only_keys(rd, e, "nic", keys) < 0)
        return -EINVAL;
    if (!get_str(libdm_json_object_get(e, "mac"), &mac) ||
        !get_str(libdm_json_object_get(e, "model"), &model) ||
        (b && !get_str(b, &bridge)) || (n && !get_str(n, &ifname)))
        return refuse(rd, "nic %zu: a member is missing or of the wrong type", i);
    if (libdm_dm_config_add_nic(rd->c, mac, model, bridge, ifname, NULL) < 0)
        return refuse(rd, "nic %zu: refused by this libdm", i);
    return 0;
}

static int read_serial(reader *rd, const libdm_json *e, size_t i)
{
    static const char *const keys[] = { "kind", "path", NULL };
    const char *kind = NULL, *path = NULL;
    const libdm_json *p = libdm_json_object_get(e, "path");
    libdm_serial_kind k;

    if (only_keys(rd, e, "serial", keys) < 0)
        return -EINVAL;
    if (!get_str(libdm_json_object_get(e, "kind"), &kind) || (p && !get_str(p, &path)))
        return refuse(rd, "serial %zu: a member is missing or of the wrong type", i);
    if (!strcmp(kind, "pty"))
        k = LIBDM_SERIAL_PTY;
    else if (!strcmp(kind, "file"))
        k = LIBDM_SERIAL_FILE;
    else if (!strcmp(kind, "unix"))
        k = LIBDM_SERIAL_UNIX;
    else
        return refuse(rd, "serial %zu: unknown kind \"%.16s\"", i, kind);
    if (libdm_dm_config_add_serial(rd->c, k, path) < 0)
        return refuse(rd, "serial %zu: refused by this libdm", i);
    return 0;
}

static int read_list(reader *rd, const libdm_json *a, const char *what,
                     int (*fn)(reader *, const libdm_json *, size_t))
{
    if (libdm_json_get_type(a) != LIBDM_JSON_ARRAY)
        return refuse(rd, "%s is not an array", what);
    for (size_t i = 0; i < libdm_json_length(a); i++) {
        int r = fn(rd, libdm_json_array_get(a, i), i);
        if (r < 0)
            return r;
    }
    return 0;
}

static int read_vnc(reader *rd, const libdm_json *e)
{
    static const char *const keys[] = { "display", "listen", "findunused", "password", NULL };
    const char *listen = NULL, *pw = NULL;
    const libdm_json *l = libdm_json_object_get(e, "listen"), *p = libdm_json_object_get(e, "password");
    int64_t display, fu;

    if (only_keys(rd, e, "vnc", keys) < 0)
        return -EINVAL;
    if (!get_uint(libdm_json_object_get(e, "display"), 99, &display) ||
        libdm_json_get_int(libdm_json_object_get(e, "findunused"), &fu) < 0 || fu < -1 || fu > 1 ||
        (l && !get_str(l, &listen)) || (p && !get_str(p, &pw)))
        return refuse(rd, "vnc: a member is missing or of the wrong type");
    /* The password is never quoted in a reason: it would land in a log. */
    if (libdm_dm_config_set_vnc(rd->c, listen, (int)display, pw) < 0)
        return refuse(rd, "vnc: refused by this libdm");
    if (fu >= 0 && libdm_dm_config_set_vnc_findunused(rd->c, (int)fu) < 0)
        return refuse(rd, "vnc: findunused refused");
    return 0;
}

static int read_machine_opts(reader *rd, const libdm_json *o)
{
    static const char *const keys[] = { "suppress-vmdesc", "igd-passthru", "max-ram-below-4g", NULL };

    if (only_keys(rd, o, "machine_opts", keys) < 0)
        return -EINVAL;
    for (size_t i = 0; i < libdm_json_length(o); i++) {
        const char *v = libdm_json_get_string(libdm_json_object_value_at(o, i));
        const char *k = libdm_json_object_key_at(o, i);

        if (!v || libdm_dm_config_set_machine_opt(rd->c, k, v) < 0)
            return refuse(rd, "machine option %s: refused by this libdm", k);
    }
    return 0;
}

static int read_strv(reader *rd, const libdm_json *a, const char *what,
                     int (*add_fn)(libdm_dm_config *, const char *))
{
    if (libdm_json_get_type(a) != LIBDM_JSON_ARRAY)
        return refuse(rd, "%s is not an array", what);
    for (size_t i = 0; i < libdm_json_length(a); i++) {
        const char *s = libdm_json_get_string(libdm_json_array_get(a, i));
        if (!s || add_fn(rd->c, s) < 0)
            return refuse(rd, "%s %zu: refused by this libdm", what, i);
    }
    return 0;
}

static int read_scalar(reader *rd, const char *k, const libdm_json *v)
{
    libdm_dm_config *c = rd->c;
    const char *s = libdm_json_get_string(v);
    int64_t i = 0;
    bool b = false;

    if (!strcmp(k, "version"))
        return 0;
    if (!strcmp(k, "profile")) {
        if (!s || (strcmp(s, "plain") && strcmp(s, "xen")))
            return refuse(rd, "profile \"%.16s\" is not honoured here", s ? s : "?");
        return libdm_dm_config_set_profile(c, strcmp(s, "xen") ? LIBDM_PROFILE_PLAIN :
                                           LIBDM_PROFILE_XEN) < 0 ? refuse(rd, "profile") : 0;
    }
    if (!strcmp(k, "domid"))
        return !get_uint(v, LIBDM__MAX_DOMID, &i) ||
               (i && libdm_dm_config_set_domid(c, (uint32_t)i) < 0) ? refuse(rd, "invalid domid") : 0;
    if (!strcmp(k, "machine"))
        return !s || libdm_dm_config_set_machine(c, s) < 0 ? refuse(rd, "invalid machine") : 0;
    if (!strcmp(k, "memory_mb"))
        return !get_uint(v, (int64_t)LIBDM__MAX_MEMORY_MB, &i) ||
               (i && libdm_dm_config_set_memory_mb(c, (uint64_t)i) < 0) ? refuse(rd, "invalid memory_mb") : 0;
    if (!strcmp(k, "maxmem_mb"))
        return !get_uint(v, (int64_t)LIBDM__MAX_MEMORY_MB, &i) ||
               (i && libdm_dm_config_set_maxmem_mb(c, (uint64_t)i) < 0) ? refuse(rd, "invalid maxmem_mb") : 0;
    if (!strcmp(k, "restrict"))
        return !get_bool(v, &b) || libdm_dm_config_set_restrict(c, b) < 0 ? refuse(rd, "invalid restrict") : 0;
    if (!strcmp(k, "runas"))
        return !s || libdm_dm_config_set_runas(c, s) < 0 ? refuse(rd, "invalid runas") : 0;
    if (!strcmp(k, "chroot"))
        return !s || libdm_dm_config_set_chroot(c, s) < 0 ? refuse(rd, "invalid chroot") : 0;
    if (!strcmp(k, "seccomp")) {
        libdm_seccomp m = !s ? (libdm_seccomp)-1 : !strcmp(s, "auto") ? LIBDM_SECCOMP_AUTO :
                          !strcmp(s, "qemu") ? LIBDM_SECCOMP_QEMU :
                          !strcmp(s, "filter") ? LIBDM_SECCOMP_FILTER : (libdm_seccomp)-1;
        return (int)m < 0 || libdm_dm_config_set_seccomp(c, m) < 0 ? refuse(rd, "invalid seccomp") : 0;
    }
    if (!strcmp(k, "keymap"))
        return !s || libdm_dm_config_set_keymap(c, s) < 0 ? refuse(rd, "invalid keymap") : 0;
    if (!strcmp(k, "acpi"))
        return !get_bool(v, &b) || libdm_dm_config_set_acpi(c, b) < 0 ? refuse(rd, "invalid acpi") : 0;
    if (!strcmp(k, "boot"))
        return !s || libdm_dm_config_set_boot(c, s) < 0 ? refuse(rd, "invalid boot") : 0;
    return 1; /* not a scalar member */
}

static int read_member(reader *rd, const libdm_json *doc, const char *k, const libdm_json *v)
{
    int64_t a = 0, b = 0;
    bool usb = false, tablet = false;
    int r = read_scalar(rd, k, v);

    if (r <= 0)
        return r;
    if (!strcmp(k, "disks"))
        return read_list(rd, v, "disks", read_disk);
    if (!strcmp(k, "nics"))
        return read_list(rd, v, "nics", read_nic);
    if (!strcmp(k, "serials"))
        return read_list(rd, v, "serials", read_serial);
    if (!strcmp(k, "vnc"))
        return read_vnc(rd, v);
    if (!strcmp(k, "machine_opts"))
        return read_machine_opts(rd, v);
    if (!strcmp(k, "extra_args"))
        return read_strv(rd, v, "extra_args", libdm_dm_config_add_extra_arg);
    if (!strcmp(k, "extra_args_hvm"))
        return read_strv(rd, v, "extra_args_hvm", libdm_dm_config_add_extra_arg_hvm);
    /* Pairs: read once, at the first member. */
    if (!strcmp(k, "vcpus") || !strcmp(k, "max_vcpus")) {
        if (!get_uint(libdm_json_object_get(doc, "vcpus"), 1024, &a) ||
            !get_uint(libdm_json_object_get(doc, "max_vcpus"), 1024, &b))
            return refuse(rd, "invalid vcpus/max_vcpus");
        return (a || b) && libdm_dm_config_set_vcpus(rd->c, (unsigned)a, (unsigned)b) < 0 ?
               refuse(rd, "vcpus %u of %u refused by this libdm", (unsigned)a, (unsigned)b) : 0;
    }
    if (!strcmp(k, "vga") || !strcmp(k, "vgamem_mb")) {
        const char *s = libdm_json_get_string(libdm_json_object_get(doc, "vga"));
        libdm_vga g = !s ? (libdm_vga)-1 : !strcmp(s, "none") ? LIBDM_VGA_NONE :
                      !strcmp(s, "std") ? LIBDM_VGA_STD :
                      !strcmp(s, "cirrus") ? LIBDM_VGA_CIRRUS : (libdm_vga)-1;
        if ((int)g < 0 || !get_uint(libdm_json_object_get(doc, "vgamem_mb"), 1024, &a))
            return refuse(rd, "invalid vga/vgamem_mb");
        return g != LIBDM_VGA_NONE && libdm_dm_config_set_vga(rd->c, g, (unsigned)a) < 0 ?
               refuse(rd, "vga refused by this libdm") : 0;
    }
    if (!strcmp(k, "usb") || !strcmp(k, "tablet")) {
        if (!get_bool(libdm_json_object_get(doc, "usb"), &usb) ||
            !get_bool(libdm_json_object_get(doc, "tablet"), &tablet))
            return refuse(rd, "invalid usb/tablet");
        return libdm_dm_config_set_usb(rd->c, usb, tablet) < 0 ? refuse(rd, "usb refused") : 0;
    }
    return refuse(rd, "unknown member \"%.40s\" (not honoured here)", k);
}

int libdm_dm_config_from_doc(const char *text, size_t len, libdm_dm_config **ret,
                             char *why, size_t why_len)
{
    reader rd = { .why = why, .why_len = why_len };
    libdm_json *doc = NULL;
    int64_t version = 0;
    int r;

    if (!text || !ret)
        return -EINVAL;
    *ret = NULL;
    if (why && why_len)
        why[0] = '\0';
    if (len > LIBDM__CONFIG_DOC_MAX || libdm_json_parse(text, len, &doc) < 0)
        return refuse(&rd, "not a configuration document (invalid JSON or too long)");
    if (libdm_json_get_type(doc) != LIBDM_JSON_OBJECT ||
        libdm_json_get_int(libdm_json_object_get(doc, "version"), &version) < 0) {
        libdm_json_free(doc);
        return refuse(&rd, "not a configuration document (no version)");
    }
    if (version != DOC_VERSION) {
        libdm_json_free(doc);
        return refuse(&rd, "configuration document version %lld is not understood (this "
                      "libdm reads version %d)", (long long)version, DOC_VERSION);
    }
    r = libdm_dm_config_new(&rd.c);
    /* The profile first: other setters depend on it. */
    const libdm_json *p = libdm_json_object_get(doc, "profile");
    if (r >= 0 && p)
        r = read_member(&rd, doc, "profile", p);
    for (size_t i = 0; r >= 0 && i < libdm_json_length(doc); i++)
        if (strcmp(libdm_json_object_key_at(doc, i), "profile"))
            r = read_member(&rd, doc, libdm_json_object_key_at(doc, i),
                            libdm_json_object_value_at(doc, i));
    if (r >= 0 && libdm__devices_check(rd.c) < 0)
        r = refuse(&rd, "the devices do not fit the machine or profile");
    libdm_json_free(doc);
    if (r < 0) {
        libdm_dm_config_free(rd.c);
        return r;
    }
    *ret = rd.c;
    return 0;
}

/* ---- the DM's copy (the run directory) ---- */

int libdm__config_doc_save(int dfd, const libdm_dm_config *c)
{
    char *text = NULL, tmp[] = LIBDM__CONFIG_DOC_FILE ".new";
    int r = libdm_dm_config_to_doc(c, &text, NULL), fd;

    if (r == -ENOTSUP) { /* nothing to write: migrate says why */
        (void)unlinkat(dfd, LIBDM__CONFIG_DOC_FILE, 0);
        return 0;
    }
    if (r < 0)
        return r;
    /* 0600: it holds the VNC password. */
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        free(text);
        return -errno;
    }
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            r = w < 0 ? -errno : -EIO;
            break;
        }
        off += (size_t)w;
    }
    free(text);
    close(fd);
    if (r >= 0 && renameat(dfd, tmp, dfd, LIBDM__CONFIG_DOC_FILE) < 0)
        r = -errno;
    if (r < 0)
        (void)unlinkat(dfd, tmp, 0);
    return r;
}
