/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm_restrict: the policy decided in libdm before the keeper is spawned
 * (who QEMU runs as, its chroot, which seccomp filter), and the
 * directories libdm makes for it. What the keeper applies in QEMU's child
 * before exec is tools/keeper-restrict.c; SECURITY.md lists all of it.
 * Include "internal.h" and "config-internal.h" first.
 */
#ifndef LIBDM_RESTRICT_INTERNAL_H
#define LIBDM_RESTRICT_INTERNAL_H

/* libxl's users (tools/libs/light/libxl_internal.h). */
#define LIBDM__XEN_USER_RANGE_BASE "xen-qemuuser-range-base"
#define LIBDM__XEN_USER_SHARED "xen-qemuuser-shared"
/* libxl__set_qemu_env_for_xsa_180(): 1 MiB unless the environment says. */
#define LIBDM__XEN_CONSOLE_LIMIT 1048576ul
/* Deadline of the "-sandbox on -version" probe. */
#define LIBDM__SANDBOX_PROBE_MS 2000
/* The plain profile's chroot, inside the DM's directory. */
#define LIBDM__PLAIN_ROOT_NAME "root"

/* ---- who the DM runs as ---- */

typedef struct libdm__pw_entry {
    uint32_t uid, gid;
    char name[64];
} libdm__pw_entry;

/* The passwd database, replaceable by a fake in tests. Each lookup returns
 * 1 (found, *ret filled), 0 (no such entry) or a negative errno. */
typedef struct libdm__pw_ops {
    int (*by_name)(void *user, const char *name, libdm__pw_entry *ret);
    int (*by_uid)(void *user, uint32_t uid, libdm__pw_entry *ret);
    void *user;
} libdm__pw_ops;
extern const libdm__pw_ops libdm__pw_system;

typedef struct libdm__runas {
    char *arg;          /* what -runas gets: a user name or "uid:gid" */
    uint32_t uid, gid;  /* what that resolves to */
} libdm__runas;

/* The user a restricted DM runs as: the configured runas (a name must
 * exist), else on xen libxl's policy: xen-qemuuser-range-base's uid +
 * domid with its gid (refused if that uid belongs to a user), else
 * xen-qemuuser-shared. uid or gid 0 is refused. On failure *ret_err is a
 * sentence saying what to do (malloc'd) and -EINVAL/-ENOENT is returned. */
int libdm__restrict_runas(const libdm_dm_config *c, const libdm__pw_ops *pw,
                          libdm__runas *ret, char **ret_err);
void libdm__runas_clear(libdm__runas *r);

/* ---- the chroot ---- */

/* A caller's chroot: an existing directory (the last component not a
 * symlink), not "/", empty, owned by us and not writable by others. */
int libdm__restrict_check_chroot(const char *dir, char **ret_err);
/* The same, walking @dir one component at a time with none a symlink, and
 * keeping the checked directory open in *ret_fd (O_CLOEXEC; NULL: closed). */
int libdm__restrict_open_chroot(const char *dir, int *ret_fd, char **ret_err);
/* Makes libdm's own chroot @dir: removes a stale one (an empty directory,
 * or a symlink or file planted there), then mkdir mode 0000. Its parent
 * must be ours and not writable by others. */
int libdm__restrict_make_chroot(const char *dir, char **ret_err);
/* The chroot libdm makes for @profile ("plain"/"xen"): DM_DIR/root or
 * /var/run/xen/qemu-root-DOMID. malloc'd, NULL on ENOMEM. */
char *libdm__restrict_own_chroot(const char *dm_dir, const char *profile, uint32_t domid);
/* Removes the xen profile's chroot libdm made, /var/run/xen/qemu-root-D
 * (if empty; never a caller's). The plain profile's chroot lives in the
 * DM's run directory and is removed through its fd (rundir.c). Safe for
 * any DM and twice. */
void libdm__restrict_cleanup(const char *profile, uint32_t domid);

/* ---- seccomp ---- */

/* 1 if @qemu accepts "-sandbox on" (QEMU built with seccomp), 0 if not or if
 * the probe failed or took longer than @timeout_ms. Cached per binary (path,
 * device, inode, size, mtime) for the process. Blocks for the probe (up to
 * @timeout_ms) when the cache has no answer, so libdm itself never calls it
 * (its start runs the async probe below); for synchronous tools and tests.
 * A missing binary answers 0 (not cached). */
int libdm__qemu_has_sandbox(const char *qemu, int timeout_ms);
/* The cached answer for @qemu (1 has -sandbox, 0 not), or -EAGAIN when it
 * was never probed or the binary changed (path, dev, ino, size, mtime).
 * Runs nothing; never waits for a probe (the cache's lock is never held
 * across one). A missing binary answers 0. */
int libdm__qemu_sandbox_cached(const char *qemu);
/* Forgets the cache (tests). */
void libdm__qemu_sandbox_cache_clear(void);

typedef struct libdm__sandbox_probe libdm__sandbox_probe;
/* @has_sandbox: 1 or 0, as libdm__qemu_has_sandbox() answers. */
typedef void libdm__sandbox_probe_fn(int has_sandbox, void *user);
/* Probes @qemu on @ctx's loop: the child is started by clone3 without
 * waiting for its exec (libdm__clone_pidfd()), fds 0-2 on /dev/null and
 * nothing else open, environment PATH and LC_ALL=C; its end is seen through
 * a watch on its pidfd, and at @timeout_ms (< 0: none) it is SIGKILLed and
 * its reaping handed to the context. @cb runs exactly once, from the loop,
 * never inside this call: a cached answer, or a missing binary's 0, is
 * deferred (libdm__defer). The answer is cached as the blocking probe's.
 * After @cb has run, *ret is freed by libdm: do not cancel it from @cb or
 * later. Cancel every probe before libdm_ctx_free(). Returns 0 and *ret,
 * or a negative errno with nothing started and @cb never called. */
int libdm__qemu_sandbox_probe_async(libdm_ctx *ctx, const char *qemu, int timeout_ms,
                                    libdm__sandbox_probe_fn *cb, void *user,
                                    libdm__sandbox_probe **ret);
/* Cancels a probe whose @cb has not run yet: @cb never runs, nothing is
 * cached, a running child is killed and reaped by the context
 * (libdm__reap_later()). Safe on NULL. */
void libdm__sandbox_probe_cancel(libdm__sandbox_probe *p);

/* ---- the whole plan, made at start ---- */

typedef struct libdm__restrict_plan {
    libdm_dm_config *cfg;   /* resolved copy: runas, chroot and seccomp fixed */
    char *keeper_spec;      /* the keeper's --restrict= value, NULL if none */
    char *confinement;      /* libdm_dm_get_confinement()'s text */
} libdm__restrict_plan;

/* Validates and resolves @cfg for a DM whose directory is @dm_dir (already
 * made): decides runas, checks or makes the chroot, decides seccomp from
 * the -sandbox cache alone (no answer: the keeper's filter; run the async
 * probe first). Never runs or waits for anything. Errors are logged as "NAME: ..." and nothing is left behind
 * (the chroot made is removed again). Unrestricted configs get a plain copy
 * (and, on xen, XEN_QEMU_CONSOLE_LIMIT). */
int libdm__restrict_prepare(libdm_ctx *ctx, const libdm_dm_config *cfg, const char *dm_dir,
                            libdm__restrict_plan *ret);
void libdm__restrict_plan_clear(libdm__restrict_plan *p);
/* The same with an explicit passwd database (tests). */
int libdm__restrict_prepare_pw(libdm_ctx *ctx, const libdm_dm_config *cfg, const char *dm_dir,
                               const libdm__pw_ops *pw, libdm__restrict_plan *ret);

#endif
