/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libxlutil and libxenlight, loaded with dlopen() the first time an xl.cfg
 * (or a disk in xl's syntax) is read. Linked, they and their dependencies
 * cost every dmctl command about 3.5 ms of loading (issue 23); most
 * commands never read an xl.cfg. Include after <libxl.h> and <libxlutil.h>:
 * the names below then call through the loaded table.
 */
#ifndef DMCTL_XLU_H
#define DMCTL_XLU_H

#include <libxl.h>
#include <libxlutil.h>

#define DMCTL_XLU_FUNCS(X) \
    X(xlu_cfg_init) X(xlu_cfg_destroy) X(xlu_cfg_readfile) X(xlu_cfg_get_string) \
    X(xlu_cfg_get_long) X(xlu_cfg_get_list) X(xlu_cfg_get_listitem) X(xlu_disk_parse)
#define DMCTL_XL_FUNCS(X) \
    X(libxl_device_disk_init) X(libxl_device_disk_dispose) X(libxl_disk_format_to_string)

struct dmctl_xlu {
#define DMCTL_XLU_FIELD(f) __typeof__(f) *f;
    DMCTL_XLU_FUNCS(DMCTL_XLU_FIELD)
    DMCTL_XL_FUNCS(DMCTL_XLU_FIELD)
#undef DMCTL_XLU_FIELD
};
extern struct dmctl_xlu dmctl_xlu;

/* Loads both libraries once. 0, or the exit code after saying why (for
 * @where, the file or option being read). */
int dmctl_xlu_load(const char *where);

#ifndef DMCTL_XLU_IMPL
#define xlu_cfg_init (*dmctl_xlu.xlu_cfg_init)
#define xlu_cfg_destroy (*dmctl_xlu.xlu_cfg_destroy)
#define xlu_cfg_readfile (*dmctl_xlu.xlu_cfg_readfile)
#define xlu_cfg_get_string (*dmctl_xlu.xlu_cfg_get_string)
#define xlu_cfg_get_long (*dmctl_xlu.xlu_cfg_get_long)
#define xlu_cfg_get_list (*dmctl_xlu.xlu_cfg_get_list)
#define xlu_cfg_get_listitem (*dmctl_xlu.xlu_cfg_get_listitem)
#define xlu_disk_parse (*dmctl_xlu.xlu_disk_parse)
#define libxl_device_disk_init (*dmctl_xlu.libxl_device_disk_init)
#define libxl_device_disk_dispose (*dmctl_xlu.libxl_device_disk_dispose)
#define libxl_disk_format_to_string (*dmctl_xlu.libxl_disk_format_to_string)
#endif
#endif
