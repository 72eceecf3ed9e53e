/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Typed devices of a libdm_dm_config (devices.c), their command-line
 * elements (devices-argv.c) and the taps behind NICs (netdev.c).
 * Include "internal.h" and "config-internal.h" first.
 */
#ifndef LIBDM_DEVICES_INTERNAL_H
#define LIBDM_DEVICES_INTERNAL_H

#include <libdm/dm.h>

#include <stdbool.h>
#include <stdint.h>

#define LIBDM__IFNAME_MAX 15    /* IFNAMSIZ - 1 */
#define LIBDM__NIC_MODEL_MAX 16

typedef struct libdm__disk {
    bool scsi;              /* sdX (lsi53c895a), else IDE */
    int index;              /* disk number: IDE 0-3, SCSI 0-15 */
    char *vdev;             /* as given */
    char *path;             /* NULL: empty CD-ROM */
    libdm_disk_format format;
    bool readonly, cdrom;
    int qemu_fd;            /* >= 0 after start-up under restrict: -add-fd */
} libdm__disk;

typedef struct libdm__nic {
    int devid;
    uint8_t mac[6];
    char model[LIBDM__NIC_MODEL_MAX];
    char *bridge;           /* NULL: none */
    char *ifname;           /* NULL: the default name (or a caller's fd) */
    bool caller_fd;         /* the tap is the caller's (qemu_fd set at once) */
    int qemu_fd;            /* >= 0: -netdev tap,fd=; else ifname= (libxl's form) */
} libdm__nic;

typedef struct libdm__serial {
    libdm_serial_kind kind;
    char *path;
} libdm__serial;

typedef struct libdm__devices {
    libdm__disk disks[LIBDM_MAX_DISKS];
    size_t n_disks;
    libdm__nic nics[LIBDM_MAX_NICS];
    size_t n_nics;
    libdm__serial serials[LIBDM_MAX_SERIALS];
    size_t n_serials;
    int vnc_display;        /* -1: off */
    int vnc_findunused;     /* -1: profile default (xen: on, as libxl), 0, 1 */
    char *keymap;           /* -k; NULL: none */
    bool no_acpi;           /* xl's acpi=0: -no-acpi */
    char *vnc_listen;       /* NULL: 127.0.0.1 */
    char *vnc_password;     /* never on the command line */
    unsigned vcpus, max_vcpus; /* 0: not set (one vCPU, no -smp) */
    char boot[5];
    libdm_vga vga;
    unsigned vgamem_mb;     /* 0: default */
    bool usb, tablet;
    int suppress_vmdesc;    /* -1: profile default, 0 off, 1 on */
    uint64_t max_ram_below_4g; /* 0: not set */
    int igd_passthru;       /* -1 not set, 0 off, 1 on */
} libdm__devices;

#define LIBDM__VGAMEM_STD_MB 16   /* libxl's defaults (and minimums) for qemu-xen */
#define LIBDM__VGAMEM_CIRRUS_MB 8

void libdm__devices_init(libdm__devices *d);
/* The video memory QEMU gets: the configured size, libxl's default for the
 * card, 0 without one. */
unsigned libdm__devices_video_mb(const libdm__devices *d);
void libdm__devices_clear(libdm__devices *d);
int libdm__devices_copy(const libdm__devices *src, libdm__devices *dst);
bool libdm__devices_any(const libdm__devices *d);
/* The tap name NIC @n gets: its ifname, vif<domid>.<n>-emu, or dm<name>.<n>. */
int libdm__nic_ifname(const libdm_dm_config *c, const libdm__nic *n, char *buf, size_t len);
/* "aa:bb:cc:dd:ee:ff" into @buf (18 bytes). */
void libdm__mac_format(const uint8_t mac[6], char buf[18]);

/* ---- start and stop (hooks in dm.c) ----
 * Before spawning, on the resolved copy @cfg: checks every image (missing
 * one: -ENOENT), opens them under restrict and creates the taps, handing
 * QEMU the fds (libdm_dm_config_pass_fd). *ret_nics: the record's text
 * (libdm_dm_get_nics()), NULL if no NIC. Errors logged as "NAME: ...";
 * taps made are removed again on failure. */
int libdm__devices_prepare(libdm_ctx *ctx, libdm_dm_config *cfg, char **ret_nics);
/* After the DM is gone: removes any tap listed in @nics still there. */
void libdm__devices_cleanup(libdm_ctx *ctx, const char *nics);

/* ---- command line (devices-argv.c) ---- */
/* Appends the device elements of the plain profile / of libxl's xen argv
 * (see argv.c for where each group goes). */
void libdm__devices_argv_plain(libdm__argv *b, const libdm_dm_config *c);
void libdm__devices_argv_xen_front(libdm__argv *b, const libdm_dm_config *c);
void libdm__devices_argv_xen_disks(libdm__argv *b, const libdm_dm_config *c);
/* ",suppress-vmdesc=on,..." for -machine ("" if none); NULL: -ENOMEM. */
char *libdm__devices_machine_opts(const libdm_dm_config *c);
/* Problems each setter alone cannot see (needs a machine, profile-only
 * options): 0 or -EINVAL. */
int libdm__devices_check(const libdm_dm_config *c);

/* ---- taps (netdev.c) ---- */
/* Creates (or takes over an unused persistent) tap @name, not persistent
 * (it goes away when the last fd closes), IFF_TAP|IFF_NO_PI|IFF_VNET_HDR,
 * up, and in @bridge if not NULL (-ENODEV: no such bridge). */
int libdm__tap_create(const char *name, const char *bridge, int *ret_fd);
/* Removes tap @name if it exists and nobody holds it; 0 if gone. */
int libdm__tap_remove(const char *name);
/* 1 if interface @name exists, 0 if not. */
int libdm__netdev_exists(const char *name);

#endif
