/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Typed devices of a libdm_dm_config: disks, NICs, VNC, serial ports,
 * vCPUs, boot order, VGA, USB and the -machine options libxl sets.
 *
 * As in config.c, each setter checks everything that reaches QEMU's
 * command line and leaves the configuration untouched on any error. Paths
 * are absolute (never read as options) and escaped by the argv builder.
 */
#include "internal.h"
#include "config-internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PATH_MAX_LEN 4095
#define LISTEN_MAX_LEN 255
#define VNC_PASSWORD_MAX 8   /* VNC's DES challenge uses 8 characters */
#define MAX_VCPUS 128
#define MAX_VGAMEM_MB 256

/* ---- lifecycle ---- */

void libdm__devices_init(libdm__devices *d)
{
    memset(d, 0, sizeof(*d));
    d->vnc_display = -1;
    d->vnc_findunused = -1;
    d->suppress_vmdesc = -1;
    d->igd_passthru = -1;
}

void libdm__devices_clear(libdm__devices *d)
{
    for (size_t i = 0; i < d->n_disks; i++) {
        free(d->disks[i].vdev);
        free(d->disks[i].path);
    }
    for (size_t i = 0; i < d->n_nics; i++) {
        free(d->nics[i].bridge);
        free(d->nics[i].ifname);
    }
    for (size_t i = 0; i < d->n_serials; i++)
        free(d->serials[i].path);
    free(d->vnc_listen);
    free(d->keymap);
    if (d->vnc_password)
        explicit_bzero(d->vnc_password, strlen(d->vnc_password));
    free(d->vnc_password);
    libdm__devices_init(d);
}

static int dup_str(const char *s, char **ret)
{
    *ret = s ? strdup(s) : NULL;
    return s && !*ret ? -ENOMEM : 0;
}

/* Deep copy. File descriptors (qemu_fd) are numbers in QEMU's table, owned
 * by the config's pass_fds, and are copied as numbers. */
int libdm__devices_copy(const libdm__devices *src, libdm__devices *dst)
{
    int r = 0;

    *dst = *src;
    for (size_t i = 0; i < src->n_disks; i++)
        dst->disks[i].vdev = dst->disks[i].path = NULL;
    for (size_t i = 0; i < src->n_nics; i++)
        dst->nics[i].bridge = dst->nics[i].ifname = NULL;
    for (size_t i = 0; i < src->n_serials; i++)
        dst->serials[i].path = NULL;
    dst->vnc_listen = dst->vnc_password = dst->keymap = NULL;
    for (size_t i = 0; r == 0 && i < src->n_disks; i++) {
        r = dup_str(src->disks[i].vdev, &dst->disks[i].vdev);
        r = r ? r : dup_str(src->disks[i].path, &dst->disks[i].path);
    }
    for (size_t i = 0; r == 0 && i < src->n_nics; i++) {
        r = dup_str(src->nics[i].bridge, &dst->nics[i].bridge);
        r = r ? r : dup_str(src->nics[i].ifname, &dst->nics[i].ifname);
    }
    for (size_t i = 0; r == 0 && i < src->n_serials; i++)
        r = dup_str(src->serials[i].path, &dst->serials[i].path);
    r = r ? r : dup_str(src->vnc_listen, &dst->vnc_listen);
    r = r ? r : dup_str(src->vnc_password, &dst->vnc_password);
    r = r ? r : dup_str(src->keymap, &dst->keymap);
    return r;
}

unsigned libdm__devices_video_mb(const libdm__devices *d)
{
    if (d->vga == LIBDM_VGA_NONE)
        return 0;
    if (d->vgamem_mb)
        return d->vgamem_mb;
    return d->vga == LIBDM_VGA_STD ? LIBDM__VGAMEM_STD_MB : LIBDM__VGAMEM_CIRRUS_MB;
}

bool libdm__devices_any(const libdm__devices *d)
{
    return d->n_disks || d->n_nics || d->n_serials || d->vnc_display >= 0 || d->vcpus ||
           d->boot[0] || d->vga != LIBDM_VGA_NONE || d->usb || d->max_ram_below_4g ||
           d->igd_passthru >= 0 || d->suppress_vmdesc >= 0 || d->keymap || d->no_acpi;
}

/* ---- validation ---- */

static bool valid_abs_path(const char *s)
{
    return s && s[0] == '/' && strnlen(s, PATH_MAX_LEN + 1) <= PATH_MAX_LEN;
}

/* hd[a-d], xvd[a-d] -> IDE 0-3; sd[a-p] -> SCSI 0-15. */
static int parse_vdev(const char *vdev, bool *ret_scsi)
{
    static const struct { const char *prefix; int count; bool scsi; } buses[] = {
        { "hd", 4, false }, { "xvd", 4, false }, { "sd", 16, true },
    };

    for (size_t i = 0; vdev && i < LIBDM__ARRAY_SIZE(buses); i++) {
        size_t n = strlen(buses[i].prefix);

        if (strncmp(vdev, buses[i].prefix, n) || vdev[n] < 'a' || vdev[n + 1])
            continue;
        if (vdev[n] - 'a' >= buses[i].count)
            return -EINVAL;
        *ret_scsi = buses[i].scsi;
        return vdev[n] - 'a';
    }
    return -EINVAL;
}

static bool disk_number_taken(const libdm__devices *d, bool scsi, int index)
{
    for (size_t i = 0; i < d->n_disks; i++)
        if (d->disks[i].scsi == scsi && d->disks[i].index == index)
            return true;
    return false;
}

static bool valid_disk(const libdm__devices *d, bool scsi, int index, const char *path,
                       libdm_disk_format format, unsigned flags)
{
    bool cdrom = flags & LIBDM_DISK_CDROM;

    if (flags & ~(unsigned)(LIBDM_DISK_READONLY | LIBDM_DISK_CDROM))
        return false;
    if (format != LIBDM_DISK_RAW && format != LIBDM_DISK_QCOW2)
        return false;
    if (path ? !valid_abs_path(path) : !cdrom)
        return false;
    /* libxl: CD-ROMs on IDE only; no read-only IDE hard disks in qemu-xen. */
    if (cdrom && scsi)
        return false;
    if (!cdrom && !scsi && (flags & LIBDM_DISK_READONLY))
        return false;
    return d->n_disks < LIBDM_MAX_DISKS && !disk_number_taken(d, scsi, index);
}

int libdm_dm_config_add_disk(libdm_dm_config *config, const char *vdev, const char *path,
                             libdm_disk_format format, unsigned flags)
{
    libdm__disk disk = { .qemu_fd = -1 };
    int index;

    if (!config)
        return -EINVAL;
    index = parse_vdev(vdev, &disk.scsi);
    if (index < 0 || !valid_disk(&config->dev, disk.scsi, index, path, format, flags))
        return -EINVAL;
    disk.index = index;
    disk.format = format;
    disk.cdrom = flags & LIBDM_DISK_CDROM;
    disk.readonly = disk.cdrom || (flags & LIBDM_DISK_READONLY);
    disk.vdev = strdup(vdev);
    if (!disk.vdev || dup_str(path, &disk.path) < 0) {
        free(disk.vdev);
        return -ENOMEM;
    }
    config->dev.disks[config->dev.n_disks++] = disk;
    return 0;
}

/* ---- NICs ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "xx:xx:xx:xx:xx:xx", unicast. */
static bool parse_mac(const char *s, uint8_t mac[6])
{
    for (int i = 0; i < 6; i++) {
        const char *p = s + 3 * i;
        int hi = hexval(p[0]), lo = hi < 0 ? -1 : hexval(p[1]);

        if (lo < 0 || p[2] != (i == 5 ? '\0' : ':'))
            return false;
        mac[i] = (uint8_t)(hi << 4 | lo);
    }
    return !(mac[0] & 1);
}

/* libxl's choice: the Xen OUI 00:16:3e and three random bytes. */
static int random_mac(uint8_t mac[6])
{
    uint8_t r[3];

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return -EIO;
    mac[0] = 0x00;
    mac[1] = 0x16;
    mac[2] = 0x3e;
    mac[3] = r[0] & 0x7f;
    mac[4] = r[1];
    mac[5] = r[2];
    return 0;
}

void libdm__mac_format(const uint8_t mac[6], char buf[18])
{
    snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
             mac[4], mac[5]);
}

static bool valid_model(const char *m)
{
    /* libxl passes any model through as -device MODEL; these are the NICs
     * both QEMU binaries have (ne2k_pci and e1000e included, as xl.cfg(5)). */
    return !strcmp(m, "e1000") || !strcmp(m, "rtl8139") || !strcmp(m, "virtio-net-pci") ||
           !strcmp(m, "ne2k_pci") || !strcmp(m, "e1000e");
}

/* A Linux interface name: 1-15 of [A-Za-z0-9_.-], not "." or "..". */
static bool valid_ifname(const char *s)
{
    size_t n = strnlen(s, LIBDM__IFNAME_MAX + 1);

    if (n == 0 || n > LIBDM__IFNAME_MAX || s[0] == '-' || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

static bool ifname_taken(const libdm__devices *d, const char *name)
{
    for (size_t i = 0; i < d->n_nics; i++)
        if (d->nics[i].ifname && !strcmp(d->nics[i].ifname, name))
            return true;
    return false;
}

/* Fills @n from the common arguments; 0 or -EINVAL / -ENOMEM. */
static int nic_init(const libdm__devices *d, libdm__nic *n, const char *mac, const char *model)
{
    memset(n, 0, sizeof(*n));
    n->qemu_fd = -1;
    n->devid = (int)d->n_nics;
    if (d->n_nics >= LIBDM_MAX_NICS)
        return -EINVAL;
    if (!model)
        model = "rtl8139";
    if (!valid_model(model))
        return -EINVAL;
    snprintf(n->model, sizeof(n->model), "%s", model);
    if (mac)
        return parse_mac(mac, n->mac) ? 0 : -EINVAL;
    return random_mac(n->mac);
}

int libdm_dm_config_add_nic(libdm_dm_config *config, const char *mac, const char *model,
                            const char *bridge, const char *ifname, int *ret_devid)
{
    libdm__nic n;
    int r;

    if (!config)
        return -EINVAL;
    r = nic_init(&config->dev, &n, mac, model);
    if (r < 0)
        return r;
    if ((bridge && !valid_ifname(bridge)) ||
        (ifname && (!valid_ifname(ifname) || ifname_taken(&config->dev, ifname))))
        return -EINVAL;
    if (dup_str(bridge, &n.bridge) < 0 || dup_str(ifname, &n.ifname) < 0) {
        free(n.bridge);
        return -ENOMEM;
    }
    config->dev.nics[config->dev.n_nics++] = n;
    if (ret_devid)
        *ret_devid = n.devid;
    return 0;
}

/* Here, below config.c: a passed fd is a device's backing (a tap...). */
int libdm_dm_config_pass_fd(libdm_dm_config *config, int fd, int *ret_qemu_fd)
{
    int copy;

    if (!config || fd < 0 || !ret_qemu_fd)
        return -EINVAL;
    if (config->n_pass_fds >= LIBDM_MAX_PASS_FDS)
        return -E2BIG;
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0)
        return -errno;
    config->pass_fds[config->n_pass_fds] = copy;
    *ret_qemu_fd = LIBDM_PASS_FD_FIRST + (int)config->n_pass_fds++;
    return 0;
}

int libdm_dm_config_add_nic_fd(libdm_dm_config *config, const char *mac, const char *model,
                               int tap_fd, int *ret_devid)
{
    libdm__nic n;
    int r;

    if (!config || tap_fd < 0 || fcntl(tap_fd, F_GETFD) < 0)
        return -EINVAL;
    r = nic_init(&config->dev, &n, mac, model);
    if (r < 0)
        return r;
    n.caller_fd = true;
    r = libdm_dm_config_pass_fd(config, tap_fd, &n.qemu_fd);
    if (r < 0)
        return r;
    config->dev.nics[config->dev.n_nics++] = n;
    if (ret_devid)
        *ret_devid = n.devid;
    return 0;
}

int libdm__nic_ifname(const libdm_dm_config *c, const libdm__nic *n, char *buf, size_t len)
{
    int w;

    if (n->ifname)
        w = snprintf(buf, len, "%s", n->ifname);
    else if (c->domid)
        w = snprintf(buf, len, "vif%" PRIu32 ".%d-emu", c->domid, n->devid);
    else {
        /* dm<name>.<devid> when it fits in IFNAMSIZ; else dm-<hash of the
         * whole name>.<devid>: names sharing a prefix never share a tap
         * (a name cannot start with '-', so the two forms never meet). */
        const char *name = c->name ? c->name : "";
        uint32_t h = 2166136261u; /* FNV-1a */

        w = snprintf(buf, len, "dm%s.%d", name, n->devid);
        if (w < 0 || w > LIBDM__IFNAME_MAX || (size_t)w >= len) {
            for (const char *p = name; *p; p++)
                h = (h ^ (unsigned char)*p) * 16777619u;
            w = snprintf(buf, len, "dm-%08" PRIx32 ".%d", h, n->devid);
        }
    }
    return w < 0 || (size_t)w >= len ? -ENAMETOOLONG : 0;
}

/* ---- VNC ---- */

/* A host name or address: [A-Za-z0-9.-], or "unix:" and an absolute path. */
static bool valid_listen(const char *s)
{
    size_t n;

    if (!strncmp(s, "unix:", 5))
        return valid_abs_path(s + 5);
    n = strnlen(s, LISTEN_MAX_LEN + 1);
    if (n == 0 || n > LISTEN_MAX_LEN || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

static bool valid_password(const char *s)
{
    size_t n = strnlen(s, VNC_PASSWORD_MAX + 1);

    if (n == 0 || n > VNC_PASSWORD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

int libdm_dm_config_set_vnc(libdm_dm_config *config, const char *listen, int display,
                            const char *password)
{
    char *l = NULL, *p = NULL;

    /* libxl takes any display whose port (5900 + display) exists. */
    if (!config || display < -1 || display > 65535 - 5900)
        return -EINVAL;
    if (display == -1 && (listen || password))
        return -EINVAL;
    if ((listen && !valid_listen(listen)) || (password && !valid_password(password)))
        return -EINVAL;
    if (dup_str(listen, &l) < 0 || dup_str(password, &p) < 0) {
        free(l);
        return -ENOMEM;
    }
    free(config->dev.vnc_listen);
    if (config->dev.vnc_password)
        explicit_bzero(config->dev.vnc_password, strlen(config->dev.vnc_password));
    free(config->dev.vnc_password);
    config->dev.vnc_listen = l;
    config->dev.vnc_password = p;
    config->dev.vnc_display = display;
    return 0;
}

/* ---- serial ---- */

int libdm_dm_config_add_serial(libdm_dm_config *config, libdm_serial_kind kind,
                               const char *path)
{
    libdm__serial s = { .kind = kind };

    if (!config || config->dev.n_serials >= LIBDM_MAX_SERIALS)
        return -EINVAL;
    if (kind == LIBDM_SERIAL_PTY ? path != NULL
                                 : (kind != LIBDM_SERIAL_FILE && kind != LIBDM_SERIAL_UNIX) ||
                                       !valid_abs_path(path) || strchr(path, ','))
        return -EINVAL; /* -serial's legacy syntax has no comma quoting */
    if (dup_str(path, &s.path) < 0)
        return -ENOMEM;
    config->dev.serials[config->dev.n_serials++] = s;
    return 0;
}

/* ---- CPUs, boot, VGA, USB ---- */

int libdm_dm_config_set_vcpus(libdm_dm_config *config, unsigned vcpus, unsigned max_vcpus)
{
    if (!max_vcpus)
        max_vcpus = vcpus;
    if (!config || vcpus < 1 || max_vcpus > MAX_VCPUS || vcpus > max_vcpus)
        return -EINVAL;
    config->dev.vcpus = vcpus;
    config->dev.max_vcpus = max_vcpus;
    return 0;
}

int libdm_dm_config_set_boot(libdm_dm_config *config, const char *order)
{
    size_t n;

    if (!config)
        return -EINVAL;
    if (!order) {
        config->dev.boot[0] = '\0';
        return 0;
    }
    n = strnlen(order, sizeof(config->dev.boot));
    if (n == 0 || n >= sizeof(config->dev.boot))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!strchr("acdn", order[i]) || memchr(order, order[i], i))
            return -EINVAL;
    memcpy(config->dev.boot, order, n + 1);
    return 0;
}

int libdm_dm_config_set_vga(libdm_dm_config *config, libdm_vga vga, unsigned vgamem_mb)
{
    if (!config || (vga != LIBDM_VGA_NONE && vga != LIBDM_VGA_STD && vga != LIBDM_VGA_CIRRUS))
        return -EINVAL;
    if (vgamem_mb > MAX_VGAMEM_MB || (vga == LIBDM_VGA_NONE && vgamem_mb))
        return -EINVAL;
    config->dev.vga = vga;
    config->dev.vgamem_mb = vgamem_mb;
    return 0;
}

int libdm_dm_config_set_vnc_findunused(libdm_dm_config *config, int on)
{
    if (!config)
        return -EINVAL;
    config->dev.vnc_findunused = on != 0;
    return 0;
}

/* QEMU's keymap names: lower-case letters, digits and '-' (e.g. "en-us"). */
int libdm_dm_config_set_keymap(libdm_dm_config *config, const char *keymap)
{
    char *copy = NULL;

    if (!config)
        return -EINVAL;
    if (keymap) {
        size_t n = strlen(keymap);

        if (n == 0 || n > 16 || strspn(keymap, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
            return -EINVAL;
        if (!(copy = strdup(keymap)))
            return -ENOMEM;
    }
    free(config->dev.keymap);
    config->dev.keymap = copy;
    return 0;
}

int libdm_dm_config_set_acpi(libdm_dm_config *config, int on)
{
    if (!config)
        return -EINVAL;
    config->dev.no_acpi = !on;
    return 0;
}

int libdm_dm_config_set_usb(libdm_dm_config *config, int usb, int tablet)
{
    if (!config)
        return -EINVAL;
    config->dev.usb = usb || tablet;
    config->dev.tablet = tablet != 0;
    return 0;
}

/* ---- -machine options ---- */

static int parse_onoff(const char *v)
{
    if (!v)
        return -1;
    if (!strcmp(v, "on"))
        return 1;
    return !strcmp(v, "off") ? 0 : -2;
}

/* Canonical decimal bytes, 256 MiB..4 GiB, a multiple of 1 MiB. */
static bool parse_below_4g(const char *v, uint64_t *ret)
{
    uint64_t x = 0;

    if (!v[0] || v[0] == '0' || strlen(v) > 10)
        return false;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (x < (UINT64_C(256) << 20) || x > (UINT64_C(1) << 32) || x % (UINT64_C(1) << 20))
        return false;
    *ret = x;
    return true;
}

int libdm_dm_config_set_machine_opt(libdm_dm_config *config, const char *key,
                                    const char *value)
{
    int v = parse_onoff(value);
    uint64_t bytes = 0;

    if (!config || !key)
        return -EINVAL;
    if (!strcmp(key, "max-ram-below-4g")) {
        if (value && !parse_below_4g(value, &bytes))
            return -EINVAL;
        config->dev.max_ram_below_4g = bytes;
        return 0;
    }
    if (v == -2)
        return -EINVAL;
    if (!strcmp(key, "suppress-vmdesc"))
        config->dev.suppress_vmdesc = v;
    else if (!strcmp(key, "igd-passthru"))
        config->dev.igd_passthru = v;
    else
        return -EINVAL;
    return 0;
}
