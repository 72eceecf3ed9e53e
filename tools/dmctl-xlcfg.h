/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dmctl: xl.cfg files and xl-style device specs (dmctl-xlcfg.c, libxlutil). */
#ifndef DMCTL_XLCFG_H
#define DMCTL_XLCFG_H

#include <libdm/libdm.h>

/* What the command line set: the file does not override it. */
enum {
    XLCFG_SEEN_MEMORY = 1u << 0,
    XLCFG_SEEN_VCPUS = 1u << 1,
    XLCFG_SEEN_BOOT = 1u << 2,
    XLCFG_SEEN_DISK = 1u << 3,
    XLCFG_SEEN_NIC = 1u << 4,
    XLCFG_SEEN_VNC = 1u << 5,
    XLCFG_SEEN_SERIAL = 1u << 6,
    XLCFG_SEEN_VGA = 1u << 7,
    XLCFG_SEEN_USB = 1u << 8,
    XLCFG_SEEN_RESTRICT = 1u << 9,
    XLCFG_SEEN_RUNAS = 1u << 10,
    XLCFG_SEEN_QEMU = 1u << 11,
    XLCFG_SEEN_MACHINE = 1u << 12,
};

/* Applies the xl.cfg @path to @cfg, except what @seen says the command line
 * set. *@ret_name: the file's name= (malloc'd) or NULL. The VNC password,
 * if any, is in @cfg (for libdm_dm_apply_config()). Keys it does not use are
 * listed once on stderr. 0, or 2 after "dmctl: FILE: KEY: reason". */
int dmctl_xlcfg_apply(const char *path, libdm_dm_config *cfg, unsigned seen, char **ret_name);

/* One xl disk spec (xl-disk-configuration), vif spec (mac=, bridge=,
 * model=, vifname=) or serial ("pty", "file:PATH", "unix:PATH[,server,
 * nowait]"), from the file or the command line; @where names it in errors
 * ("FILE: disk" or "--disk"). 0 or 2 (reported). */
int dmctl_xl_disk(const char *where, const char *spec, libdm_dm_config *cfg);
int dmctl_xl_vif(const char *where, const char *spec, libdm_dm_config *cfg);
int dmctl_xl_serial(const char *where, const char *spec, libdm_dm_config *cfg);

#endif
