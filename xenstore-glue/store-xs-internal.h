/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The xenstore store's shared helpers (store-xs.c) and libxl's keys
 * (store-xs-libxl.c). Include "store-internal.h" first.
 */
#ifndef LIBDM_STORE_XS_INTERNAL_H
#define LIBDM_STORE_XS_INTERNAL_H

#include <stdint.h>
#include <xenstore.h>

#define LIBDM__XS_PATH_LEN 96
/* Where the records live: /tool/libdm/<domid>/<key>. Not under
 * /libxl/<domid>, which libxl's destroy removes while the DM may still run
 * (store-xs.c). */
#define LIBDM__XS_ROOT "/tool/libdm"

int libdm__xs_errno(void);
int libdm__xs_rm_ok(libdm__store *s, xs_transaction_t t, const char *path);
/* Writes @value (NULL: a directory) at @path with permissions n0. */
int libdm__xs_write_n0(libdm__store *s, xs_transaction_t t, const char *path, const char *value);
long libdm__xs_confinement_uid(const char *confinement);
uint32_t libdm__xs_parse_domid(const char *s);
void libdm__xs_key_path(char *buf, uint32_t domid, const char *key);
void libdm__xs_pid_path(char *buf, uint32_t domid);
void libdm__xs_kill_uid_path(char *buf, uint32_t domid);
void libdm__xs_dm_version_path(char *buf, uint32_t domid);

/* store-xs-libxl.c: the keys libxl's readers use, written only where
 * absent or libdm's own (listed in the record's "owns", malloc'd by
 * libdm__xs_read_owns, "" if none; NULL with errno on error). */
char *libdm__xs_read_owns(libdm__store *s, xs_transaction_t t, uint32_t domid);
int libdm__xs_put_libxl_keys(libdm__store *s, xs_transaction_t t, const libdm__record *rec,
                             const char *before);
int libdm__xs_del_libxl_keys(libdm__store *s, xs_transaction_t t, uint32_t domid,
                             const char *before);

#endif
