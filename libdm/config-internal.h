/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device-model configuration: the struct behind libdm_dm_config, the
 * resolved defaults the spawner uses, and QEMU option-value quoting.
 * Include "internal.h" first.
 */
#ifndef LIBDM_CONFIG_INTERNAL_H
#define LIBDM_CONFIG_INTERNAL_H

#include <libdm/dm.h>

/* The argv under construction: the first failure sticks in err. */
typedef struct libdm__argv {
    char **v;
    size_t n, cap;
    int err;
} libdm__argv;
void libdm__argv_add(libdm__argv *b, const char *s);
void libdm__argv_add_pair(libdm__argv *b, const char *opt, const char *value);
void libdm__argv_addf(libdm__argv *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends @before @value @after, @value quoted for a QEMU option list. */
void libdm__argv_add_escaped(libdm__argv *b, const char *before, const char *value,
                             const char *after);

#include "devices-internal.h"

#define LIBDM__DEFAULT_TIMEOUT_MS 10000
#define LIBDM__PLAIN_MEMORY_MB 64u   /* plain profile, machine other than "none" */
#define LIBDM__XEN_MEMORY_MB 128u    /* xen profile */
#define LIBDM__MAX_MEMORY_MB (UINT64_C(1) << 20)
#define LIBDM__MAX_DOMID 32751u      /* DOMID_FIRST_RESERVED - 1 */
#define LIBDM__PLAIN_MACHINE "none"
#define LIBDM__XEN_MACHINE "xenfv"
/* libxl's run directory: the xenstat monitor and the default chroot live here. */
#define LIBDM__XEN_RUN_DIR "/var/run/xen"
/* The seccomp policy for dm_restrict. elevateprivileges must stay "allow":
 * -runas needs setuid/setgid after the filter is installed, and QEMU is
 * killed with SIGSYS otherwise (verified with QEMU 7.2). */
#define LIBDM__SANDBOX_OPTS "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"

/* Every pointer member is owned; NULL means "not set" (profile default). */
struct libdm_dm_config {
    char *name;             /* NULL: no -name */
    uint32_t domid;         /* 0: none (refused by the xen profile) */
    libdm_profile profile;
    uint64_t memory_mb;     /* 0: profile default */
    uint64_t maxmem_mb;     /* xl's maxmem; 0: memory_mb */
    char *machine;          /* NULL: profile default */
    bool restricted;        /* dm_restrict ("restrict" is a C keyword) */
    char *runas;            /* user name or "uid:gid" */
    char *chroot_dir;
    libdm_seccomp seccomp;  /* AUTO is resolved at start (restrict.c) */
    char *incoming;         /* "defer" or a migration URI */
    char *qemu_path;        /* NULL: LIBDM_DEFAULT_QEMU / LIBDM_DEFAULT_XEN_QEMU */
    char **extra_args;      /* NULL-terminated, never NULL */
    size_t n_extra_args;
    char **extra_args_hvm;  /* xl's device_model_args_hvm: after -machine */
    size_t n_extra_args_hvm;
    int timeout_ms;
    int pass_fds[LIBDM_MAX_PASS_FDS]; /* ours (O_CLOEXEC dups); QEMU's fd
                                       * LIBDM_PASS_FD_FIRST + i */
    size_t n_pass_fds;
    libdm__devices dev;     /* devices.c */
    char **adopt_argv;      /* set_argv (config-adopt.c): the caller's DM
                             * arguments; NULL: libdm builds them */
    bool has_log_fd;        /* set_log_fd (config-adopt.c): the DM's log is */
    int log_fd;             /* this fd (ours, O_CLOEXEC), not the run dir's */
};

/* Deep copy of @src. */
int libdm__config_copy(const libdm_dm_config *src, libdm_dm_config **ret);
/* The binary to execute: the configured one or the profile's default. */
const char *libdm__config_qemu_path(const libdm_dm_config *config);
/* The machine type passed to -machine (without the accel= we add). */
const char *libdm__config_machine(const libdm_dm_config *config);
/* The guest RAM size; 0 when no -m is passed (plain profile, machine none). */
uint64_t libdm__config_memory_mb(const libdm_dm_config *config);
/* The chroot directory QEMU will be given, or NULL if none (always NULL
 * without restrict: -chroot is a restrict option). The xen profile
 * with restrict defaults to LIBDM__XEN_RUN_DIR/qemu-root-DOMID, which is
 * malloc'd: *ret_dir is always malloc'd (or NULL); -ENOMEM on failure. */
int libdm__config_chroot_dir(const libdm_dm_config *config, char **ret_dir);
/* config-adopt.c: a caller-built command line. */
int libdm__config_adopt_copy(const libdm_dm_config *src, libdm_dm_config *dst);
void libdm__config_adopt_free(libdm_dm_config *config);
/* The caller's log fd (set_log_fd) duplicated into *ret_fd: 1; 0 if none
 * (the run directory's log then), or -errno. */
int libdm__config_log_fd(const libdm_dm_config *config, int *ret_fd);
/* argv.c: the command line of a configuration with set_argv. */
int libdm__config_adopt_build(const libdm_dm_config *c, int qmp_fd, char ***ret_argv);
/* The profile a DM is recorded with: "xl" for a caller-built command line
 * (libxl's), else libdm__profile_to_string(). */
#define LIBDM__PROFILE_XL "xl"

/* config-doc.c: the configuration document (issue 22, defect 1), kept in
 * the DM's run directory as LIBDM__CONFIG_DOC_FILE (0600: it holds the VNC
 * password) so that a later dmctl can send the whole DM elsewhere.
 * Nothing is written (and an old file removed) for a configuration that
 * cannot travel. */
#define LIBDM__CONFIG_DOC_FILE "config.json"
#define LIBDM__CONFIG_DOC_MAX (256u * 1024u)
int libdm__config_doc_save(int dfd, const libdm_dm_config *c);

/* "plain" or "xen". */
const char *libdm__profile_to_string(libdm_profile profile);

/* ---- QEMU option values (argv.c) ----
 * QEMU parses option values such as "socket,id=x,path=P" as a comma
 * separated list; inside a value ",," is a literal comma. */

/* *ret = @in with every ',' doubled. */
int libdm__qemu_opt_escape(const char *in, char **ret);
/* Splits @optstr by QEMU's rule, scanning left to right: ",," is a literal
 * comma, a single ',' ends a piece. Every separator yields a piece, so
 * "" -> [""] and "a," -> ["a", ""] (QEMU itself ignores an empty last
 * piece). *ret_pieces is a NULL-terminated vector (libdm_strv_free());
 * returns the number of pieces (>= 1) or a negative errno. */
int libdm__qemu_opt_split(const char *optstr, char ***ret_pieces);

#endif
