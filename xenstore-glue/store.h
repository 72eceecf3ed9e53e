/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The record store: where libdm records each device model so that any later
 * process can find it, re-attach to it, and clean up after it.
 *
 * Backends:
 *  - "dir": the embedded default. Records live in <root>/<name>/record,
 *    written atomically (temporary file + rename, O_NOFOLLOW|O_CLOEXEC);
 *    <root> is /run/libdm for root, else $XDG_RUNTIME_DIR/libdm, or the
 *    directory given.
 *  - "xenstore": libxenstore, for Xen hosts. Written in one transaction under
 *    /tool/libdm/<domid>/... (not under /libxl/<domid>, which libxl's
 *    destroy removes under a live DM), plus the keys libxl itself uses:
 *    /local/domain/0/device-model/<domid>/state and
 *    /local/domain/<domid>/image/device-model-pid. Needs domid >= 1: a
 *    record without a domid goes to the run directory instead, as the dir
 *    backend at that root would write it; get, set_state, del and list see
 *    both, and a name is recorded in at most one of them (-EEXIST).
 *
 * Nothing read from the store ever decides readiness (QMP alone does).
 * Records are input from other processes: parsing is bounded and strict.
 */
#ifndef LIBDM_STORE_H
#define LIBDM_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <xentoollog.h>

typedef struct libdm__store libdm__store;

/* One device model's record. Strings are malloc'd and owned by the record. */
typedef struct libdm__record {
    char *name;           /* [A-Za-z0-9_.-]{1,64}, not starting with '.' or '-' */
    uint32_t domid;       /* 0: none */
    int pid;              /* the DM process */
    uint64_t pid_start;   /* its start time (/proc/PID/stat field 22) */
    int keeper_pid;       /* the libdm-keeper that is its parent */
    uint64_t keeper_start;
    char *qmp_socket;     /* absolute path */
    char *dir;            /* the per-DM directory (socket, log) */
    char *profile;        /* "plain" | "xen" */
    char *state;          /* libdm_dm_state_to_string() of the last recorded state */
    int64_t created_ms;   /* CLOCK_REALTIME at creation, ms */
    int exit_status;      /* wait status recorded by the keeper, -1 while alive */
    char *machine;        /* QEMU machine type (NULL: not recorded) */
    uint64_t memory_mb;   /* guest RAM in MiB (0: none or not recorded) */
    char *confinement;    /* dm_restrict in force, printable text (NULL: not recorded) */
    char *nics;           /* NICs: "DEVID IFNAME MAC MODEL BRIDGE;..." (NULL: none) */
} libdm__record;

void libdm__record_init(libdm__record *rec);   /* zero, exit_status = -1 */
void libdm__record_clear(libdm__record *rec);  /* frees strings, re-inits */
int libdm__record_copy(const libdm__record *src, libdm__record *ret);
/* 0 if @name is a valid record name (see libdm__record.name), else -EINVAL. */
int libdm__record_check_name(const char *name);

/* The "dir" backend's text format: "key=value\n" lines, values with '\\',
 * '\n' and NUL escaped; unknown keys ignored; at most 16 KiB. Strict: -EINVAL
 * on anything malformed, missing name, or out-of-range numbers; -E2BIG over
 * 16 KiB. A record written by format is always accepted by parse (format
 * refuses, -EINVAL, a record that parse would reject).
 * Output records (*ret here and in libdm__store_get) are overwritten, not
 * cleared, on success, and untouched on failure. */
int libdm__record_parse(const char *buf, size_t len, libdm__record *ret);
int libdm__record_format(const libdm__record *rec, char **ret_buf, size_t *ret_len);

/* @spec: NULL or "auto" (xenstore if a xenstored answers, else dir at the
 * default root; the run directory of the xenstore backend is that same
 * default root, so a DM without a domid is recorded in the same place
 * either way), "xenstore", "dir" (default root) or an absolute directory.
 * "xenstore:/ABS/DIR" is the xenstore backend with run_root /ABS/DIR.
 * @lg may be NULL. */
int libdm__store_open(const char *spec, xentoollog_logger *lg, libdm__store **ret);
void libdm__store_close(libdm__store *store);
/* libxl's shared DM users (xen-qemuuser-shared, nobody) decide whether a
 * restricted DM's uid is its own (the xenstore store's kill-uid key).
 * shared_uids resolves them (NSS: call it where a lookup may wait, never in
 * a keeper) as "U1,U2" into @buf (empty: none exists); set_shared_uids
 * gives a store that list, so that its writes ask no NSS: the keeper is
 * linked statically (issue 23), where NSS needs the very glibc it was
 * built with. -EINVAL for a malformed list. */
#define LIBDM__STORE_SHARED_UIDS_MAX 2
int libdm__store_shared_uids(char *buf, size_t len);
int libdm__store_set_shared_uids(libdm__store *store, const char *list);
/* @on: a writer (put, set_state, del) finding the record's lock held by
 * another returns -EAGAIN at once instead of waiting for it (up to 5 s):
 * the library's mode, which retries from its loop (a loop must never wait
 * on a lock). Off by default (the keeper and tools wait). */
void libdm__store_set_nowait(libdm__store *store, bool on);
const char *libdm__store_kind(const libdm__store *store);   /* "dir" | "xenstore" */
/* Directory under which per-DM directories are created (0700, our uid).
 * For the dir backend it is the record root itself. */
const char *libdm__store_run_root(const libdm__store *store);

/* Creates or replaces the whole record (atomic). */
int libdm__store_put(libdm__store *store, const libdm__record *rec);
/* -ENOENT if there is none. */
int libdm__store_get(libdm__store *store, const char *name, libdm__record *ret);
/* Updates the state and exit status fields only (exit_status -1: unchanged). */
int libdm__store_set_state(libdm__store *store, const char *name, const char *state,
                           int exit_status);
/* Records the DM's and its keeper's pids and start times (read, modify,
 * write: only the keeper calls it, while libdm waits for its "pid"). */
int libdm__store_set_pids(libdm__store *store, const char *name, int pid, uint64_t pid_start,
                          int keeper_pid, uint64_t keeper_start);
/* Writes what libxl's readers look up in the domain's tree after start,
 * @keys_values being "KEY", "VALUE", ..., NULL, KEY relative to
 * /local/domain/<domid>/ (e.g. "serial/0/tty", "console/vnc-port"). Only
 * the xenstore backend has such a tree: 0 and nothing done elsewhere.
 * Removed by libdm__store_del(). */
int libdm__store_publish(libdm__store *store, uint32_t domid, const char *const *keys_values);
/* Removes the record (not the per-DM directory's other files). -ENOENT if none. */
int libdm__store_del(libdm__store *store, const char *name);
/* Names of all records, sorted, NULL-terminated; free with
 * libdm__store_names_free(). */
int libdm__store_list(libdm__store *store, char ***ret_names, size_t *ret_count);
void libdm__store_names_free(char **names);   /* NULL ok */

/* Creates <root> (mode 0700) if missing and checks that it and @path are not
 * symlinks and belong to our uid: -ELOOP / -EPERM otherwise. Also -ENOTDIR
 * for a non-directory and -EPERM if it is writable by group or others. */
int libdm__secure_dir(const char *path, int create);
/* Opens directory @name relative to @dirfd (AT_FDCWD for a path) without
 * following a final symlink, creating it 0700 first if @create, and checks
 * it: -ELOOP (symlink), -ENOTDIR, -EPERM (other owner, or writable by group
 * or others). *ret_fd is O_RDONLY|O_DIRECTORY|O_CLOEXEC. */
int libdm__store_open_dir(int dirfd, const char *name, bool create, int *ret_fd);
/* Names of the subdirectories of @dirfd (not consumed) that are valid
 * record names and hold a regular file @marker (neither followed through a
 * symlink): the store's records, the run root's claims. Sorted, each once,
 * NULL-terminated; free with libdm__store_names_free(). */
int libdm__store_scan_dirs(int dirfd, const char *marker, char ***ret_names,
                           size_t *ret_count);

#endif
