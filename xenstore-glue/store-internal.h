/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private to xenstore-glue/: the record's field table (shared by the "dir"
 * text format and the xenstore backend so that both validate values with
 * the same code), the backends' vtable and a few helpers.
 */
#ifndef LIBDM_STORE_INTERNAL_H
#define LIBDM_STORE_INTERNAL_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <xentoollog.h>
#include "store.h"

struct xs_handle;

/* Upper bound of a serialised record (the whole "dir" file). */
#define LIBDM__RECORD_MAX 16384
/* Upper bound of a path field (PATH_MAX - 1). */
#define LIBDM__RECORD_PATH_MAX 4095
/* Free text fields (confinement): a path and some words. */
#define LIBDM__RECORD_TEXT_MAX (LIBDM__RECORD_PATH_MAX + 256)
/* Largest domid accepted (DOMID_FIRST_RESERVED - 1). */
#define LIBDM__DOMID_MAX 0x7FEFu

/* ---- the field table (record.c) ---- */
enum {
    LIBDM__F_NAME,
    LIBDM__F_DOMID,
    LIBDM__F_PID,
    LIBDM__F_PID_START,
    LIBDM__F_KEEPER_PID,
    LIBDM__F_KEEPER_START,
    LIBDM__F_QMP_SOCKET,
    LIBDM__F_DIR,
    LIBDM__F_PROFILE,
    LIBDM__F_STATE,
    LIBDM__F_CREATED_MS,
    LIBDM__F_EXIT_STATUS,
    LIBDM__F_MACHINE,
    LIBDM__F_MEMORY_MB,
    LIBDM__F_CONFINEMENT,
    LIBDM__F_NICS,
    LIBDM__F_COUNT
};

/* The key of field @field ("name", "qmp-socket", ...). */
const char *libdm__record_key(unsigned field);
/* Field index of key @key (@len bytes), or -1 if unknown. */
int libdm__record_lookup(const char *key, size_t len);
/* Decodes one escaped value (@len bytes, not NUL-terminated), validates it
 * for @field and stores it in @rec (replacing what was there). -EINVAL if
 * malformed or out of range (@rec unchanged), -ENOMEM. */
int libdm__record_set_value(libdm__record *rec, unsigned field, const char *value, size_t len);
/* The escaped text of field @field of @rec (malloc'd), or -ENOENT if the
 * field is an absent (NULL) string. -EINVAL if the value is invalid. */
int libdm__record_get_value(const libdm__record *rec, unsigned field, char **ret_value);
/* Checks every field of @rec (name present and valid, numbers in range,
 * strings well-formed): 0 or -EINVAL. */
int libdm__record_validate(const libdm__record *rec);
/* 0 if @state is a valid state token ([a-z0-9_-]{1,32}), else -EINVAL. */
int libdm__record_check_state(const char *state);
/* 0 if @status is -1 or a wait status (0..65535), else -EINVAL. */
int libdm__record_check_exit_status(int status);

/* ---- the store object (store.c) ---- */
struct libdm__store_ops {
    const char *kind;
    int (*put)(libdm__store *store, const libdm__record *rec);
    int (*get)(libdm__store *store, const char *name, libdm__record *ret);
    int (*set_state)(libdm__store *store, const char *name, const char *state,
                     int exit_status);
    int (*del)(libdm__store *store, const char *name);
    int (*list)(libdm__store *store, char ***ret_names, size_t *ret_count);
    /* Optional: keys of the domain's own tree (xenstore only). */
    int (*publish)(libdm__store *store, uint32_t domid, const char *const *keys_values);
    void (*close)(libdm__store *store);
};

struct libdm__store {
    const struct libdm__store_ops *ops;
    xentoollog_logger *lg;
    char *run_root;
    /* dir backend */
    int root_fd;
    bool nowait;    /* a busy writers' lock is -EAGAIN, not waited for */
    /* xenstore backend */
    struct xs_handle *xsh;
    bool xs_broken; /* the connection failed: reopen before the next call */
    /* The uids of libxl's shared DM users, resolved by the caller (the
     * keeper's --shared-uids): set, kill-uid decisions ask no NSS. */
    bool have_shared_uids;
    long shared_uids[LIBDM__STORE_SHARED_UIDS_MAX];
    size_t n_shared_uids;
};

extern const struct libdm__store_ops libdm__store_dir_ops;
extern const struct libdm__store_ops libdm__store_xs_ops;

/* Backend set-up; on failure the store's fields are left for
 * libdm__store_close() to release. */
int libdm__store_dir_init(libdm__store *store, const char *root);
/* @quiet: a failure to connect is logged at debug level only ("auto"). */
int libdm__store_xs_init(libdm__store *store, bool quiet);

void libdm__store_log(const libdm__store *store, xentoollog_level level, int errnoval,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void libdm__store_logv(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                       const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));


/* Sorted, NULL-terminated array of @count names (caller owns @names, which
 * is consumed: freed on failure too). Removes duplicates. */
int libdm__store_names_finish(char **names, size_t count, char ***ret_names,
                              size_t *ret_count);

#endif
