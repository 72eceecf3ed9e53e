/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl start --config FILE: an xl.cfg (xl.cfg(5)) read with libxlutil,
 * the parser xl itself uses, and applied through libdm's typed setters.
 *
 * This lives in dmctl, not in libdm: libxlutil drags in libxenlight, which
 * a device-model library has no business depending on (a toolstack that
 * holds a parsed config already has its own parser and calls the setters).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxl.h>
#include <libxlutil.h>

#include "dmctl.h"
#include "dmctl-xlcfg.h"
#include "dmctl-xlu.h"

#define MAX_KEYS 256
#define KEY_MAX 64

/* Disk numbers already used, as "ide0" / "scsi3", for a precise error. */
static char used_vdevs[LIBDM_MAX_DISKS * 2][8];
static size_t n_used_vdevs;

static int fail(const char *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *where, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "dmctl: %s: ", where);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return DMCTL_EXIT_USAGE;
}

/* ---- disk ---- */

/* "ide0".."ide3" / "scsi0".. for hdX/xvdX/sdX, or NULL. */
static bool vdev_slot(const char *vdev, char slot[8])
{
    const char *p = NULL;

    if (!strncmp(vdev, "hd", 2) || !strncmp(vdev, "sd", 2))
        p = vdev + 2;
    else if (!strncmp(vdev, "xvd", 3))
        p = vdev + 3;
    if (!p || p[0] < 'a' || p[0] > 'z' || p[1])
        return false;
    snprintf(slot, 8, "%s%d", vdev[0] == 's' ? "scsi" : "ide", p[0] - 'a');
    return true;
}

static int check_vdev(const char *where, const char *vdev)
{
    char slot[8];

    if (!vdev || !vdev_slot(vdev, slot))
        return fail(where, "vdev '%s': not one of hda-hdd, xvda-xvdd, sda-sdp",
                    vdev ? vdev : "");
    for (size_t i = 0; i < n_used_vdevs; i++)
        if (!strcmp(used_vdevs[i], slot))
            return fail(where, "vdev '%s': duplicate (that disk is already defined)", vdev);
    if (n_used_vdevs < sizeof(used_vdevs) / sizeof(used_vdevs[0]))
        snprintf(used_vdevs[n_used_vdevs++], 8, "%s", slot);
    return 0;
}

static int disk_format(const char *where, const libxl_device_disk *d, libdm_disk_format *ret)
{
    switch (d->format) {
    case LIBXL_DISK_FORMAT_UNKNOWN:
    case LIBXL_DISK_FORMAT_RAW:
    case LIBXL_DISK_FORMAT_EMPTY:
        *ret = LIBDM_DISK_RAW;
        return 0;
    case LIBXL_DISK_FORMAT_QCOW2:
        *ret = LIBDM_DISK_QCOW2;
        return 0;
    default:
        return fail(where, "format %s: unsupported (raw or qcow2)",
                    libxl_disk_format_to_string(d->format));
    }
}

static int apply_disk(const char *where, const libxl_device_disk *d, libdm_dm_config *cfg)
{
    const char *path = d->pdev_path && d->pdev_path[0] ? d->pdev_path : NULL;
    unsigned flags = (d->is_cdrom ? LIBDM_DISK_CDROM : 0) |
                     (!d->readwrite && !d->is_cdrom ? LIBDM_DISK_READONLY : 0);
    libdm_disk_format fmt = LIBDM_DISK_RAW;
    int ex = check_vdev(where, d->vdev);

    ex = ex ? ex : disk_format(where, d, &fmt);
    if (ex)
        return ex;
    if (!path && !d->is_cdrom)
        return fail(where, "vdev %s: no target (only a CD-ROM may be empty)", d->vdev);
    if (path && path[0] != '/')
        return fail(where, "target '%s': not an absolute path", path);
    if (libdm_dm_config_add_disk(cfg, d->vdev, path, fmt, flags) < 0)
        return fail(where, "vdev %s: rejected (%s)", d->vdev,
                    flags & LIBDM_DISK_READONLY ? "read-only IDE hard disks are not supported "
                                                  "by qemu-xen; use sdX"
                                                : "a CD-ROM must be hda-hdd; at most 8 disks");
    return 0;
}

int dmctl_xl_disk(const char *where, const char *spec, libdm_dm_config *cfg)
{
    XLU_Config *x;
    libxl_device_disk d;
    int ex = dmctl_xlu_load(where);

    if (ex)
        return ex;
    x = xlu_cfg_init(stderr, where);
    if (!x)
        return fail(where, "%s", strerror(errno));
    libxl_device_disk_init(&d);
    if (xlu_disk_parse(x, 1, &spec, &d))
        ex = fail(where, "'%s': not a valid disk specification", spec);
    else
        ex = apply_disk(where, &d, cfg);
    libxl_device_disk_dispose(&d);
    xlu_cfg_destroy(x);
    return ex;
}

/* ---- vif ---- */

static bool mac_syntax_ok(const char *s)
{
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    return s[17] == '\0';
}

typedef struct vif_spec {
    char *mac, *bridge, *model, *vifname, *type;
} vif_spec;

/* key=value pieces separated by ','; unknown keys (ip, script, rate...)
 * belong to the PV vif and are not ours. */
static void vif_split(char *s, vif_spec *v)
{
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');

        while (*tok == ' ')
            tok++;
        if (!eq)
            continue;
        *eq = '\0';
        if (!strcmp(tok, "mac"))
            v->mac = eq + 1;
        else if (!strcmp(tok, "bridge"))
            v->bridge = eq + 1;
        else if (!strcmp(tok, "model"))
            v->model = eq + 1;
        else if (!strcmp(tok, "vifname"))
            v->vifname = eq + 1;
        else if (!strcmp(tok, "type"))
            v->type = eq + 1;
    }
}

static int apply_vif(const char *where, const vif_spec *v, libdm_dm_config *cfg)
{
    char ifname[32];

    if (v->type && !strcmp(v->type, "vif"))
        return 0; /* PV only: no emulated NIC, as libxl */
    if (v->mac && !mac_syntax_ok(v->mac))
        return fail(where, "mac '%s': not xx:xx:xx:xx:xx:xx", v->mac);
    if (v->model && strcmp(v->model, "e1000") && strcmp(v->model, "rtl8139") &&
        strcmp(v->model, "virtio-net-pci") && strcmp(v->model, "ne2k_pci") &&
        strcmp(v->model, "e1000e"))
        return fail(where, "model '%s': unsupported (e1000, e1000e, rtl8139, ne2k_pci or "
                    "virtio-net-pci)", v->model);
    if (v->vifname)
        snprintf(ifname, sizeof(ifname), "%s-emu", v->vifname);
    if (libdm_dm_config_add_nic(cfg, v->mac, v->model, v->bridge,
                                v->vifname ? ifname : NULL, NULL) < 0)
        return fail(where, "rejected (a multicast mac, a bad bridge or vifname, a duplicate "
                           "name, or more than %d NICs)", LIBDM_MAX_NICS);
    return 0;
}

int dmctl_xl_vif(const char *where, const char *spec, libdm_dm_config *cfg)
{
    vif_spec v = { 0 };
    char *s = strdup(spec);
    int ex;

    if (!s)
        return fail(where, "%s", strerror(ENOMEM));
    vif_split(s, &v);
    ex = apply_vif(where, &v, cfg);
    free(s);
    return ex;
}

/* ---- serial ---- */

int dmctl_xl_serial(const char *where, const char *spec, libdm_dm_config *cfg)
{
    char path[4096];
    int r;

    if (!strcmp(spec, "pty"))
        r = libdm_dm_config_add_serial(cfg, LIBDM_SERIAL_PTY, NULL);
    else if (!strncmp(spec, "file:", 5))
        r = libdm_dm_config_add_serial(cfg, LIBDM_SERIAL_FILE, spec + 5);
    else if (!strncmp(spec, "unix:", 5)) {
        /* xl users write "unix:PATH,server,nowait": we always listen. */
        snprintf(path, sizeof(path), "%s", spec + 5);
        path[strcspn(path, ",")] = '\0';
        r = libdm_dm_config_add_serial(cfg, LIBDM_SERIAL_UNIX, path);
    } else {
        return fail(where, "'%s': unsupported (pty, file:PATH or unix:PATH)", spec);
    }
    if (r < 0)
        return fail(where, "'%s': rejected (an absolute path without ',', at most %d ports)",
                    spec, LIBDM_MAX_SERIALS);
    return 0;
}

/* ---- the file ---- */

typedef struct xl_file {
    const char *path;
    XLU_Config *x;
    libdm_dm_config *cfg;
    unsigned seen;
} xl_file;

/* @key's string value; 0 (found), 1 (absent) or 2 (reported). */
static int get_str(const xl_file *f, const char *key, const char **ret)
{
    int r = xlu_cfg_get_string(f->x, key, ret, 1);

    if (r == ESRCH)
        return 1;
    return r ? fail(f->path, "%s: not a string", key) : 0;
}

static int get_long(const xl_file *f, const char *key, long min, long max, long *ret)
{
    int r = xlu_cfg_get_long(f->x, key, ret, 1);

    if (r == ESRCH)
        return 1;
    if (r)
        return fail(f->path, "%s: not a number", key);
    if (*ret < min || *ret > max)
        return fail(f->path, "%s: %ld out of range (%ld-%ld)", key, *ret, min, max);
    return 0;
}

/* A list, or a single string as a one-item list (serial= takes both).
 * Calls @fn for each item; 0 or 2. */
static int each_item(const xl_file *f, const char *key,
                     int (*fn)(const char *, const char *, libdm_dm_config *))
{
    XLU_ConfigList *list;
    const char *s;
    char where[KEY_MAX + 4096];
    int n = 0, ex = 0;

    snprintf(where, sizeof(where), "%s: %s", f->path, key);
    if (xlu_cfg_get_list(f->x, key, &list, &n, 1) == 0) {
        for (int i = 0; i < n && !ex; i++)
            ex = fn(where, xlu_cfg_get_listitem(list, i), f->cfg);
        return ex;
    }
    if (get_str(f, key, &s) == 0)
        return fn(where, s, f->cfg);
    return 0;
}

static int setter(const xl_file *f, const char *key, int r, const char *why)
{
    return r < 0 ? fail(f->path, "%s: %s", key, why) : 0;
}

static int apply_type(const xl_file *f, char **ret_name)
{
    const char *s;
    int ex;

    if ((ex = get_str(f, "type", &s)) == 0 && strcmp(s, "hvm"))
        return fail(f->path, "type: '%s': only hvm guests have a device model here", s);
    if (ex == 2)
        return ex;
    if ((ex = get_str(f, "builder", &s)) == 0 && strcmp(s, "hvm"))
        return fail(f->path, "builder: '%s': only hvm", s);
    if (ex == 2)
        return ex;
    if ((ex = get_str(f, "name", &s)) == 0 && !(*ret_name = strdup(s)))
        return fail(f->path, "name: %s", strerror(ENOMEM));
    return ex == 2 ? ex : 0;
}

static int apply_cpu_mem(const xl_file *f)
{
    long mem, maxmem, vcpus = 1, maxv = 0;
    int ex;

    /* libxl gives QEMU maxmem (less the video memory) as -m. */
    if ((ex = get_long(f, "maxmem", 1, 1L << 20, &maxmem)) == 2)
        return ex;
    if (ex == 0 && (ex = setter(f, "maxmem", libdm_dm_config_set_maxmem_mb(f->cfg,
                                                                           (uint64_t)maxmem),
                                "invalid")))
        return ex;

    if (!(f->seen & XLCFG_SEEN_MEMORY) && (ex = get_long(f, "memory", 1, 1L << 20, &mem)) != 1) {
        if (ex)
            return ex;
        if ((ex = setter(f, "memory", libdm_dm_config_set_memory_mb(f->cfg, (uint64_t)mem),
                         "invalid")))
            return ex;
    }
    if (f->seen & XLCFG_SEEN_VCPUS)
        return 0;
    ex = get_long(f, "vcpus", 1, 128, &vcpus);
    if (ex == 2 || (ex = ex == 2 ? 2 : get_long(f, "maxvcpus", 1, 128, &maxv)) == 2)
        return 2;
    if (vcpus == 1 && maxv == 0)
        return 0;
    return setter(f, "maxvcpus",
                  libdm_dm_config_set_vcpus(f->cfg, (unsigned)vcpus, (unsigned)maxv),
                  "must be at least vcpus");
}

static int apply_boot(const xl_file *f)
{
    const char *s;
    int ex;

    if ((f->seen & XLCFG_SEEN_BOOT) || (ex = get_str(f, "boot", &s)) == 1)
        return 0;
    return ex ? ex : setter(f, "boot", libdm_dm_config_set_boot(f->cfg, s),
                            "1-4 distinct letters of a, c, d, n");
}

/* vnc, vnclisten ("HOST" or "HOST:DISPLAY"), vncdisplay, vncpasswd. xl's
 * default for hvm: VNC on. */
static int apply_vnc(const xl_file *f)
{
    const char *listen = NULL, *pw = NULL;
    long on = 1, display = -1, unused = 1;
    char host[256];
    int ex;

    if (f->seen & XLCFG_SEEN_VNC)
        return 0;
    if ((ex = get_long(f, "vnc", 0, 1, &on)) == 2 ||
        (ex = get_long(f, "vncdisplay", 0, 65535 - 5900, &display)) == 2 ||
        (ex = get_str(f, "vnclisten", &listen)) == 2 || (ex = get_str(f, "vncpasswd", &pw)) == 2)
        return 2;
    if ((ex = get_long(f, "vncunused", 0, 1, &unused)) == 2)
        return 2;
    if (ex == 0 && libdm_dm_config_set_vnc_findunused(f->cfg, (int)unused) < 0)
        return fail(f->path, "vncunused: invalid");
    if (!on) {
        if (pw && pw[0])
            return fail(f->path, "vncpasswd: set while vnc=0 (VNC is off)");
        return 0;
    }
    if (listen && strchr(listen, ':') && strncmp(listen, "unix:", 5)) {
        const char *colon = strrchr(listen, ':');
        char *end;

        if (display >= 0)
            return fail(f->path, "vnclisten: has a display and vncdisplay is set too");
        /* Digits only, 0-99 as vncdisplay: no sign, no wrap past int. */
        errno = 0;
        display = strtol(colon + 1, &end, 10);
        if (*end || colon[1] < '0' || colon[1] > '9' || errno || display > 99)
            return fail(f->path, "vnclisten: '%s': bad display (0-99)", listen);
        snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
        listen = host;
    }
    return setter(f, "vnc", libdm_dm_config_set_vnc(f->cfg, listen, display < 0 ? 0 : (int)display,
                                                   pw && pw[0] ? pw : NULL),
                  "invalid vnclisten, vncdisplay (0-59635) or vncpasswd (1-8 printable "
                  "characters)");
}

static int apply_vga(const xl_file *f)
{
    const char *s;
    long std = 0, mem = 0;
    libdm_vga vga = LIBDM_VGA_CIRRUS; /* xl's default */
    int ex;

    if (f->seen & XLCFG_SEEN_VGA)
        return 0;
    if ((ex = get_long(f, "stdvga", 0, 1, &std)) == 2 ||
        (ex = get_long(f, "videoram", 1, 256, &mem)) == 2)
        return 2;
    if (std)
        vga = LIBDM_VGA_STD;
    if ((ex = get_str(f, "vga", &s)) == 2)
        return ex;
    if (ex == 0) {
        if (!strcmp(s, "stdvga"))
            vga = LIBDM_VGA_STD;
        else if (!strcmp(s, "cirrus"))
            vga = LIBDM_VGA_CIRRUS;
        else if (!strcmp(s, "none"))
            vga = LIBDM_VGA_NONE;
        else
            return fail(f->path, "vga: '%s': unsupported (stdvga, cirrus or none)", s);
    }
    return setter(f, "videoram",
                  libdm_dm_config_set_vga(f->cfg, vga, vga == LIBDM_VGA_NONE ? 0 : (unsigned)mem),
                  "invalid");
}

static int apply_usb(const xl_file *f)
{
    XLU_ConfigList *list;
    const char *s = NULL;
    long usb = 0;
    int n = 0, ex;

    if (f->seen & XLCFG_SEEN_USB)
        return 0;
    if ((ex = get_long(f, "usb", 0, 1, &usb)) == 2)
        return ex;
    if (xlu_cfg_get_list(f->x, "usbdevice", &list, &n, 1) == 0)
        s = n == 1 ? xlu_cfg_get_listitem(list, 0) : n ? "" : NULL;
    else if ((ex = get_str(f, "usbdevice", &s)) == 2)
        return ex;
    if (s && strcmp(s, "tablet"))
        return fail(f->path, "usbdevice: '%s': unsupported (tablet)", s);
    return setter(f, "usb", libdm_dm_config_set_usb(f->cfg, usb != 0, s != NULL), "invalid");
}

static int add_arg(const char *where, const char *arg, libdm_dm_config *cfg)
{
    return libdm_dm_config_add_extra_arg(cfg, arg) < 0 ? fail(where, "'%s': invalid", arg) : 0;
}

/* device_model_args_hvm: libdm places them after -machine, as libxl does. */
static int add_arg_hvm(const char *where, const char *arg, libdm_dm_config *cfg)
{
    return libdm_dm_config_add_extra_arg_hvm(cfg, arg) < 0 ? fail(where, "'%s': invalid", arg)
                                                          : 0;
}

static int apply_dm(const xl_file *f)
{
    const char *s;
    long restrict_ = 0, pci = 1, acpi = 1;
    int ex;

    if ((ex = get_str(f, "keymap", &s)) == 0 &&
        (ex = setter(f, "keymap", libdm_dm_config_set_keymap(f->cfg, s),
                     "a QEMU keymap name such as de or en-us")))
        return ex;
    if (ex == 2)
        return ex;
    if ((ex = get_long(f, "acpi", 0, 1, &acpi)) == 2)
        return ex;
    if (ex == 0 && (ex = setter(f, "acpi", libdm_dm_config_set_acpi(f->cfg, (int)acpi),
                                "invalid")))
        return ex;
    /* libxl: without the platform device the machine is "pc" (accel=xen). */
    if ((ex = get_long(f, "xen_platform_pci", 0, 1, &pci)) == 2)
        return ex;
    if (ex == 0 && !pci && !(f->seen & XLCFG_SEEN_MACHINE) &&
        (ex = setter(f, "xen_platform_pci", libdm_dm_config_set_machine(f->cfg, "pc"),
                     "cannot set the machine")))
        return ex;

    if ((ex = get_str(f, "device_model_version", &s)) == 0 && strcmp(s, "qemu-xen"))
        return fail(f->path, "device_model_version: '%s': only qemu-xen", s);
    if (ex == 2 || (ex = get_long(f, "dm_restrict", 0, 1, &restrict_)) == 2)
        return 2;
    if (restrict_ && !(f->seen & XLCFG_SEEN_RESTRICT))
        (void)libdm_dm_config_set_restrict(f->cfg, 1);
    if (!(f->seen & XLCFG_SEEN_RUNAS) && (ex = get_str(f, "device_model_user", &s)) != 1) {
        if (ex || (ex = setter(f, "device_model_user", libdm_dm_config_set_runas(f->cfg, s),
                               "a user name or uid:gid, not root")))
            return ex;
    }
    if (!(f->seen & XLCFG_SEEN_QEMU) && (ex = get_str(f, "device_model_override", &s)) != 1) {
        if (ex || (ex = setter(f, "device_model_override",
                               libdm_dm_config_set_qemu_path(f->cfg, s), "an absolute path")))
            return ex;
    }
    ex = each_item(f, "device_model_args", add_arg);
    return ex ? ex : each_item(f, "device_model_args_hvm", add_arg_hvm);
}

static int apply_lists(const xl_file *f)
{
    int ex = 0;

    if (!(f->seen & XLCFG_SEEN_DISK))
        ex = each_item(f, "disk", dmctl_xl_disk);
    if (!ex && !(f->seen & XLCFG_SEEN_NIC))
        ex = each_item(f, "vif", dmctl_xl_vif);
    if (!ex && !(f->seen & XLCFG_SEEN_SERIAL))
        ex = each_item(f, "serial", dmctl_xl_serial);
    return ex;
}

/* ---- keys we do not use ---- */

static const char *const used_keys[] = {
    "type", "builder", "name", "memory", "maxmem", "vcpus", "maxvcpus", "boot", "disk", "vif",
    "vnc", "vnclisten", "vncdisplay", "vncpasswd", "vncunused", "serial", "vga", "stdvga",
    "videoram", "usb", "usbdevice", "keymap", "xen_platform_pci", "acpi", "device_model_args",
    "device_model_args_hvm", "device_model_user", "dm_restrict", "device_model_version",
    "device_model_override",
};

/* Keys of xl.cfg(5) that change libxl's device-model command line and that
 * libdm does not map yet: refused, never dropped (README, "xl.cfg"). */
static const char *const refused_keys[] = {
    "soundhw", "nographic", "sdl", "opengl", "display", "xauthority", "kernel", "ramdisk",
    "cmdline", "root", "extra", "usbversion", "usbctrl", "usbdev", "hdtype", "vendor_device",
    "channel", "spice", "spicehost", "spiceport", "spicetls_port", "spicedisable_ticketing",
    "spicepasswd", "spiceagent_mouse", "spicevdagent", "spice_clipboard_sharing",
    "spiceusbredirection", "device_model_stubdomain_override",
    "device_model_stubdomain_seclabel", "pci", "gfx_passthru", "rdm", "vtpm", "p9", "vsnd",
    "vdispl", "vkb", "vfb", "smbios", "acpi_firmware",
};

/* A refused key present in the file: exit 2 naming it. */
static int refuse_unmapped(const xl_file *f)
{
    for (size_t i = 0; i < sizeof(refused_keys) / sizeof(refused_keys[0]); i++) {
        XLU_ConfigList *list;
        const char *s;

        if (!xlu_cfg_get_string(f->x, refused_keys[i], &s, 1) ||
            !xlu_cfg_get_list(f->x, refused_keys[i], &list, NULL, 1))
            return fail(f->path, "%s: libxl maps it into the device model's command line "
                        "and libdm does not yet: refused rather than ignored",
                        refused_keys[i]);
    }
    return 0;
}

static bool is_used(const char *key)
{
    for (size_t i = 0; i < sizeof(used_keys) / sizeof(used_keys[0]); i++)
        if (!strcmp(key, used_keys[i]))
            return true;
    return false;
}

/* The KEY of a "KEY = ..." line, libxlutil having accepted the file. */
static bool line_key(const char *line, char key[KEY_MAX])
{
    size_t n = 0;

    while (*line == ' ' || *line == '\t')
        line++;
    while ((line[n] >= 'a' && line[n] <= 'z') || (line[n] >= 'A' && line[n] <= 'Z') ||
           (line[n] >= '0' && line[n] <= '9') || line[n] == '_')
        n++;
    if (n == 0 || n >= KEY_MAX || (line[0] >= '0' && line[0] <= '9'))
        return false;
    memcpy(key, line, n);
    key[n] = '\0';
    line += n;
    while (*line == ' ' || *line == '\t')
        line++;
    return *line == '=';
}

static void list_ignored(const char *path)
{
    FILE *fp = fopen(path, "r");
    char line[4096], key[KEY_MAX], seen[MAX_KEYS][KEY_MAX];
    size_t n = 0;

    while (fp && fgets(line, sizeof(line), fp)) {
        bool dup = false;

        if (!line_key(line, key) || is_used(key))
            continue;
        for (size_t i = 0; i < n && !dup; i++)
            dup = !strcmp(seen[i], key);
        if (!dup && n < MAX_KEYS)
            snprintf(seen[n++], KEY_MAX, "%s", key);
    }
    if (fp)
        fclose(fp);
    if (!n)
        return;
    fprintf(stderr, "dmctl: %s: ignored (not device-model settings here):", path);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s %s", i ? "," : "", seen[i]);
    fputc('\n', stderr);
}

int dmctl_xlcfg_apply(const char *path, libdm_dm_config *cfg, unsigned seen, char **ret_name)
{
    xl_file f = { .path = path, .cfg = cfg, .seen = seen };
    int r, ex;

    *ret_name = NULL;
    if ((ex = dmctl_xlu_load(path)))
        return ex;
    f.x = xlu_cfg_init(stderr, path);
    if (!f.x)
        return fail(path, "%s", strerror(errno));
    r = xlu_cfg_readfile(f.x, path);
    if (r) {
        xlu_cfg_destroy(f.x);
        return fail(path, "cannot read it: %s", strerror(r));
    }
    ex = apply_type(&f, ret_name);
    ex = ex ? ex : refuse_unmapped(&f);
    ex = ex ? ex : apply_cpu_mem(&f);
    ex = ex ? ex : apply_boot(&f);
    ex = ex ? ex : apply_vnc(&f);
    ex = ex ? ex : apply_vga(&f);
    ex = ex ? ex : apply_usb(&f);
    ex = ex ? ex : apply_dm(&f);
    ex = ex ? ex : apply_lists(&f);
    xlu_cfg_destroy(f.x);
    if (!ex)
        list_ignored(path);
    if (ex) {
        free(*ret_name);
        *ret_name = NULL;
    }
    return ex;
}
