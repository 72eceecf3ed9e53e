/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The devices' command-line elements, spelled as libxl 4.17's
 * libxl__build_device_model_args_new() spells them for an HVM guest (the
 * README's "Devices" table maps each one). The plain profile uses the same
 * elements (they are plain QEMU options on a pc machine).
 *
 * Differences from libxl, on purpose: a NIC's tap is created by libdm and
 * handed over as fd= (libxl lets QEMU open it by ifname= with a script);
 * under dm_restrict disk images are fds (-add-fd, file=/dev/fdset/N);
 * VNC has no to=99 (the display asked for is the one used).
 */
#include "internal.h"
#include "config-internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>


/* libxl__device_disk_dev_number() for the vdevs we accept (partition 0). */
static int dev_number(const libdm__disk *d)
{
    static const int ide_major[] = { 3, 22 };

    if (d->scsi)
        return (8 << 8) | (d->index << 4);
    if (!strncmp(d->vdev, "xvd", 3))
        return (202 << 8) | (d->index << 4);
    return (ide_major[d->index / 2] << 8) | ((d->index % 2) << 6);
}

static const char *format_name(libdm_disk_format f)
{
    return f == LIBDM_DISK_QCOW2 ? "qcow2" : "raw";
}

static bool any_scsi_disk(const libdm__devices *d)
{
    for (size_t i = 0; i < d->n_disks; i++)
        if (d->disks[i].scsi && !d->disks[i].cdrom)
            return true;
    return false;
}

/* "-vnc HOST:DISPLAY[,password=on]" or "unix:PATH[,...]"; xen without VNC
 * says "-vnc none" as libxl does. */
static void add_vnc(libdm__argv *b, const libdm__devices *d, bool xen)
{
    /* libxl's order: the password, then to=99 ("needs to be the last one
     * of the vnc options"), which lets QEMU take the next free display. */
    bool unused = d->vnc_findunused > 0 || (xen && d->vnc_findunused < 0);
    const char *pw = d->vnc_password ? ",password=on" : "";

    if (d->vnc_display < 0) {
        if (xen) {
            libdm__argv_add(b, "-vnc");
            libdm__argv_add(b, "none");
        }
        return;
    }
    libdm__argv_add(b, "-vnc");
    if (d->vnc_listen && !strncmp(d->vnc_listen, "unix:", 5))
        libdm__argv_add_escaped(b, "unix:", d->vnc_listen + 5, pw);
    else
        libdm__argv_addf(b, "%s:%d%s%s", d->vnc_listen ? d->vnc_listen : "127.0.0.1",
                         d->vnc_display, pw, unused ? ",to=99" : "");
}

static void add_serials(libdm__argv *b, const libdm__devices *d)
{
    for (size_t i = 0; i < d->n_serials; i++) {
        const libdm__serial *s = &d->serials[i];

        libdm__argv_add(b, "-serial");
        if (s->kind == LIBDM_SERIAL_PTY)
            libdm__argv_add(b, "pty");
        else if (s->kind == LIBDM_SERIAL_FILE)
            libdm__argv_addf(b, "file:%s", s->path);
        else
            libdm__argv_addf(b, "unix:%s,server=on,wait=off", s->path);
    }
}

static void add_vga(libdm__argv *b, const libdm__devices *d)
{
    unsigned mb = libdm__devices_video_mb(d);

    if (d->vga == LIBDM_VGA_NONE)
        return;
    libdm__argv_add(b, "-device");
    libdm__argv_addf(b, "%s,vgamem_mb=%u", d->vga == LIBDM_VGA_STD ? "VGA" : "cirrus-vga", mb);
}

static void add_boot_usb_smp(libdm__argv *b, const libdm__devices *d, bool xen)
{
    /* libxl's default order for an HVM guest when boot= is not given. */
    const char *boot = d->boot[0] ? d->boot : xen ? "cda" : NULL;

    if (boot) {
        libdm__argv_add(b, "-boot");
        libdm__argv_addf(b, "order=%s", boot);
    }
    if (d->usb)
        libdm__argv_add(b, "-usb");
    if (d->tablet) {
        libdm__argv_add(b, "-usbdevice");
        libdm__argv_add(b, "tablet");
    }
    if (d->no_acpi)
        libdm__argv_add(b, "-no-acpi");
    /* xl always fills avail_vcpus, so libxl writes "N,maxcpus=M". */
    if (d->max_vcpus > 1) {
        libdm__argv_add(b, "-smp");
        libdm__argv_addf(b, "%u,maxcpus=%u", d->vcpus, d->max_vcpus);
    }
}

static void add_nic(libdm__argv *b, const libdm_dm_config *c, const libdm__nic *n)
{
    char mac[18], ifname[LIBDM__IFNAME_MAX + 1];

    libdm__mac_format(n->mac, mac);
    libdm__argv_add(b, "-device");
    libdm__argv_addf(b, "%s,id=nic%d,netdev=net%d,mac=%s", n->model, n->devid, n->devid, mac);
    libdm__argv_add(b, "-netdev");
    if (n->qemu_fd >= 0) {
        libdm__argv_addf(b, "type=tap,id=net%d,fd=%d", n->devid, n->qemu_fd);
    } else if (libdm__nic_ifname(c, n, ifname, sizeof(ifname)) < 0) {
        b->err = b->err ? b->err : -ENAMETOOLONG;
    } else {
        /* Not started yet: the tap QEMU would be given, by name (and its
         * bridge, which libxl names there too). */
        libdm__argv_addf(b, "type=tap,id=net%d,ifname=%s%s%s,script=no,downscript=no",
                         n->devid, ifname, n->bridge ? ",br=" : "", n->bridge ? n->bridge : "");
    }
}

static void add_nics(libdm__argv *b, const libdm_dm_config *c, bool xen)
{
    for (size_t i = 0; i < c->dev.n_nics; i++)
        add_nic(b, c, &c->dev.nics[i]);
    /* "If we have no emulated nics, tell qemu not to create any". */
    if (xen && !c->dev.n_nics) {
        libdm__argv_add(b, "-net");
        libdm__argv_add(b, "none");
    }
}

static void add_front(libdm__argv *b, const libdm_dm_config *c, bool xen)
{
    const libdm__devices *d = &c->dev;

    add_vnc(b, d, xen);
    if (xen) {
        libdm__argv_add(b, "-display");
        libdm__argv_add(b, "none");
    }
    if (d->keymap) {
        libdm__argv_add(b, "-k");
        libdm__argv_add(b, d->keymap);
    }
    if (any_scsi_disk(d)) {
        libdm__argv_add(b, "-device");
        libdm__argv_add(b, "lsi53c895a");
    }
    add_serials(b, d);
    add_vga(b, d);
    add_boot_usb_smp(b, d, xen);
    add_nics(b, c, xen);
}

void libdm__devices_argv_xen_front(libdm__argv *b, const libdm_dm_config *c)
{
    add_front(b, c, true);
}

/* The image: "/dev/fdset/N" after "-add-fd fd=Q,set=N" when libdm opened it. */
static char *disk_file(libdm__argv *b, const libdm__disk *d, size_t i)
{
    char *esc = NULL;

    if (d->qemu_fd >= 0) {
        libdm__argv_add(b, "-add-fd");
        libdm__argv_addf(b, "fd=%d,set=%zu", d->qemu_fd, i + 1);
        return libdm__sprintf("/dev/fdset/%zu", i + 1);
    }
    if (libdm__qemu_opt_escape(d->path, &esc) < 0)
        return NULL;
    return esc;
}

/* An fdset image's drive says auto-read-only=off. With -drive's default
 * (on) QEMU reopens a writable image read-only whenever no writer needs
 * it, as at the end of an outgoing migration, and takes its image locks
 * (OFD locks) on each description in turn. The set keeps every
 * description open, so the locks of the writable one outlived the
 * source's inactivation and the destination's `cont` failed with 'Failed
 * to get "write" lock' (issue 22; a path has no such set). With it off,
 * one description carries the locks and drops them as QEMU does for a
 * path. */
static const char *disk_fd_opts(const libdm__disk *d)
{
    return d->qemu_fd >= 0 ? ",auto-read-only=off" : "";
}

static void add_cdrom(libdm__argv *b, const libdm__disk *d, const char *file)
{
    int n = dev_number(d);

    libdm__argv_add(b, "-drive");
    if (file)
        libdm__argv_addf(b, "if=none,readonly=on,id=ide-%d,file=%s,format=%s%s", n, file,
                         format_name(d->format), disk_fd_opts(d));
    else
        libdm__argv_addf(b, "if=none,readonly=on,id=ide-%d", n);
    libdm__argv_add(b, "-device");
    libdm__argv_addf(b, "ide-cd,id=ide-%d,drive=ide-%d,bus=ide.%d,unit=%d", n, n,
                     d->index / 2, d->index % 2);
}

static void add_disk(libdm__argv *b, const libdm__disk *d, size_t i)
{
    char *file = d->path ? disk_file(b, d, i) : NULL;

    if (d->path && !file) {
        b->err = b->err ? b->err : -ENOMEM;
        return;
    }
    if (d->cdrom) {
        add_cdrom(b, d, file);
    } else if (d->scsi) {
        libdm__argv_add(b, "-drive");
        libdm__argv_addf(b, "file=%s,id=scsi0-hd%d,format=%s,if=none,readonly=%s,"
                         "cache=writeback%s", file, d->index, format_name(d->format),
                         d->readonly ? "on" : "off", disk_fd_opts(d));
        libdm__argv_add(b, "-device");
        libdm__argv_addf(b, "scsi-hd,drive=scsi0-hd%d,scsi-id=%d", d->index, d->index);
    } else {
        libdm__argv_add(b, "-drive");
        libdm__argv_addf(b, "file=%s,if=ide,index=%d,media=disk,format=%s,cache=writeback%s",
                         file, d->index, format_name(d->format), disk_fd_opts(d));
    }
    free(file);
}

void libdm__devices_argv_xen_disks(libdm__argv *b, const libdm_dm_config *c)
{
    for (size_t i = 0; i < c->dev.n_disks; i++)
        add_disk(b, &c->dev.disks[i], i);
}

void libdm__devices_argv_plain(libdm__argv *b, const libdm_dm_config *c)
{
    add_front(b, c, false);
    libdm__devices_argv_xen_disks(b, c);
}

char *libdm__devices_machine_opts(const libdm_dm_config *c)
{
    const libdm__devices *d = &c->dev;
    int vmdesc = d->suppress_vmdesc;
    char below[40] = "";

    if (vmdesc < 0)
        vmdesc = c->profile == LIBDM_PROFILE_XEN ? 1 : -1;
    if (d->max_ram_below_4g)
        snprintf(below, sizeof(below), ",max-ram-below-4g=%" PRIu64, d->max_ram_below_4g);
    return libdm__sprintf("%s%s%s", vmdesc < 0 ? "" : vmdesc ? ",suppress-vmdesc=on"
                                                              : ",suppress-vmdesc=off",
                          below,
                          d->igd_passthru < 0 ? "" : d->igd_passthru ? ",igd-passthru=on"
                                                                      : ",igd-passthru=off");
}

int libdm__devices_check(const libdm_dm_config *c)
{
    const libdm__devices *d = &c->dev;
    bool machine_none = !strcmp(libdm__config_machine(c), "none");

    if (c->profile != LIBDM_PROFILE_XEN && d->igd_passthru >= 0)
        return -EINVAL;
    if (machine_none && libdm__devices_any(d))
        return -EINVAL;
    /* libxl's minimums for qemu-xen ("videoram must be at least ..."). */
    if (c->profile == LIBDM_PROFILE_XEN && d->vgamem_mb &&
        d->vgamem_mb < (d->vga == LIBDM_VGA_STD ? LIBDM__VGAMEM_STD_MB : LIBDM__VGAMEM_CIRRUS_MB))
        return -EINVAL;
    return 0;
}
