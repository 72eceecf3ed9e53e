/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm_restrict, the libdm side: libxl's measures (runas policy, an empty
 * mode-0000 chroot, -xen-domid-restrict) and more (seccomp always, from
 * QEMU's -sandbox or the keeper's own filter). Everything here runs before
 * the keeper is spawned, so a bad configuration is refused with nothing
 * started. What the keeper applies before exec is tools/keeper-restrict.c;
 * the probe for QEMU's -sandbox is restrict-probe.c.
 */
#include "internal.h"
#include "config-internal.h"
#include "restrict-internal.h"
#include "spawn-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the passwd database ---- */

static int pw_fill(struct passwd *p, libdm__pw_entry *ret)
{
    ret->uid = (uint32_t)p->pw_uid;
    ret->gid = (uint32_t)p->pw_gid;
    snprintf(ret->name, sizeof(ret->name), "%s", p->pw_name);
    return 1;
}

static int sys_by_name(void *user, const char *name, libdm__pw_entry *ret)
{
    struct passwd pw, *p = NULL;
    char buf[4096];
    int e = getpwnam_r(name, &pw, buf, sizeof(buf), &p);

    (void)user;
    if (!p)
        return e == 0 || e == ENOENT || e == ESRCH ? 0 : -e;
    return pw_fill(p, ret);
}

static int sys_by_uid(void *user, uint32_t uid, libdm__pw_entry *ret)
{
    struct passwd pw, *p = NULL;
    char buf[4096];
    int e = getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &p);

    (void)user;
    if (!p)
        return e == 0 || e == ENOENT || e == ESRCH ? 0 : -e;
    return pw_fill(p, ret);
}

const libdm__pw_ops libdm__pw_system = { sys_by_name, sys_by_uid, NULL };

/* ---- runas ---- */

void libdm__runas_clear(libdm__runas *r)
{
    free(r->arg);
    *r = (libdm__runas){ 0 };
}

static int set_err(char **ret_err, int r, const char *fmt, ...) LIBDM__PRINTF(3, 4);
static int set_err(char **ret_err, int r, const char *fmt, ...)
{
    va_list ap;

    free(*ret_err);
    va_start(ap, fmt);
    if (vasprintf(ret_err, fmt, ap) < 0)
        *ret_err = NULL;
    va_end(ap);
    return r;
}

static int runas_set(libdm__runas *ret, const char *arg, uint32_t uid, uint32_t gid,
                     char **ret_err)
{
    if (uid == 0 || gid == 0)
        return set_err(ret_err, -EINVAL,
                       "runas %s is uid %" PRIu32 " gid %" PRIu32
                       ": a restricted device model never runs as root", arg, uid, gid);
    ret->arg = strdup(arg);
    if (!ret->arg)
        return -ENOMEM;
    ret->uid = uid;
    ret->gid = gid;
    return 0;
}

/* The configured runas: "uid:gid" as given (the setter refused 0), or a
 * user name that must exist (QEMU would fail on it later, less clearly). */
static int runas_configured(const char *runas, const libdm__pw_ops *pw, libdm__runas *ret,
                            char **ret_err)
{
    libdm__pw_entry e;
    unsigned long uid, gid;
    int r;

    if (sscanf(runas, "%lu:%lu", &uid, &gid) == 2)
        return runas_set(ret, runas, (uint32_t)uid, (uint32_t)gid, ret_err);
    r = pw->by_name(pw->user, runas, &e);
    if (r < 0)
        return set_err(ret_err, r, "cannot look up user %s: %s", runas, strerror(-r));
    if (r == 0)
        return set_err(ret_err, -EINVAL, "runas user %s does not exist", runas);
    return runas_set(ret, runas, e.uid, e.gid, ret_err);
}

/* libxl__domain_get_device_model_uid(): base + domid, which must be no
 * one's uid, with the base user's gid. */
static int runas_range(const libdm__pw_entry *base, uint32_t domid, const libdm__pw_ops *pw,
                       libdm__runas *ret, char **ret_err)
{
    libdm__pw_entry clash;
    uint32_t uid = base->uid + domid;
    char arg[32];
    int r;

    if (base->uid > UINT32_MAX - 1 - domid)
        return set_err(ret_err, -EINVAL, "user %s (uid %" PRIu32 ") + domid %" PRIu32
                       " overflows the uid range", LIBDM__XEN_USER_RANGE_BASE, base->uid, domid);
    r = pw->by_uid(pw->user, uid, &clash);
    if (r < 0)
        return set_err(ret_err, r, "cannot look up uid %" PRIu32 ": %s", uid, strerror(-r));
    if (r > 0)
        return set_err(ret_err, -EINVAL,
                       "wanted uid %" PRIu32 " (%s + domid %" PRIu32 ") but that is user %s",
                       uid, LIBDM__XEN_USER_RANGE_BASE, domid, clash.name);
    snprintf(arg, sizeof(arg), "%" PRIu32 ":%" PRIu32, uid, base->gid);
    return runas_set(ret, arg, uid, base->gid, ret_err);
}

static int runas_xen_policy(uint32_t domid, const libdm__pw_ops *pw, libdm__runas *ret,
                            char **ret_err)
{
    libdm__pw_entry e;
    int r = pw->by_name(pw->user, LIBDM__XEN_USER_RANGE_BASE, &e);

    if (r > 0)
        return runas_range(&e, domid, pw, ret, ret_err);
    if (r == 0)
        r = pw->by_name(pw->user, LIBDM__XEN_USER_SHARED, &e);
    if (r > 0)
        return runas_set(ret, LIBDM__XEN_USER_SHARED, e.uid, e.gid, ret_err);
    if (r < 0)
        return set_err(ret_err, r, "cannot look up the xen-qemuuser users: %s", strerror(-r));
    return set_err(ret_err, -EINVAL,
                   "restricted xen device models run as user " LIBDM__XEN_USER_RANGE_BASE
                   " (its uid + domid) or " LIBDM__XEN_USER_SHARED
                   ", and neither exists: create one (e.g. useradd --system --no-create-home "
                   LIBDM__XEN_USER_SHARED ") or set runas");
}

int libdm__restrict_runas(const libdm_dm_config *c, const libdm__pw_ops *pw, libdm__runas *ret,
                          char **ret_err)
{
    *ret = (libdm__runas){ 0 };
    if (c->runas)
        return runas_configured(c->runas, pw, ret, ret_err);
    if (c->profile == LIBDM_PROFILE_XEN)
        return runas_xen_policy(c->domid, pw, ret, ret_err);
    return set_err(ret_err, -EINVAL,
                   "a restricted device model on the plain profile needs runas "
                   "(a user name or uid:gid, not root)");
}

/* ---- the chroot ---- */

static int dir_is_empty(int fd)
{
    int dfd = dup(fd);
    struct dirent *e;
    DIR *d;
    int empty = 1;

    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty;
}

/* Ours (the euid) and not writable by group or others. */
static int check_ours(const struct stat *st, const char *what, const char *dir, char **ret_err)
{
    if (st->st_uid != geteuid())
        return set_err(ret_err, -EINVAL, "%s %s belongs to uid %u, not to uid %u", what, dir,
                       (unsigned)st->st_uid, (unsigned)geteuid());
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return set_err(ret_err, -EINVAL, "%s %s is writable by group or others (mode %04o)",
                       what, dir, (unsigned)(st->st_mode & 07777));
    return 0;
}

static int open_chroot_err(const char *dir, int e, char **ret_err)
{
    if (e == ELOOP)
        return set_err(ret_err, -EINVAL, "chroot %s is a symlink: give the real directory", dir);
    if (e == ENOTDIR)
        return set_err(ret_err, -EINVAL, "chroot %s is not a directory", dir);
    if (e == ENOENT)
        return set_err(ret_err, -EINVAL, "chroot %s does not exist: make an empty directory",
                       dir);
    return set_err(ret_err, -EINVAL, "chroot %s: %s", dir, strerror(e));
}

/* Opens @dir's canonical path (links in its parents, such as /var/run,
 * resolved first) walking it one component at a time, none a symlink (nor
 * ".."): a component swapped for a link meanwhile fails the open, and once
 * open the fd is what is checked and used, whatever the path becomes.
 * Readable (for the emptiness check). */
static int open_no_links(const char *dir)
{
    char *copy = realpath(dir, NULL), *save = NULL, *comp, *next;
    int fd, e = 0;

    if (!copy)
        return -errno;
    fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (comp = strtok_r(copy, "/", &save); fd >= 0 && comp; comp = next) {
        int nfd;

        next = strtok_r(NULL, "/", &save);
        if (!strcmp(comp, "..") || !strcmp(comp, ".")) {
            close(fd);
            fd = -1;
            errno = EINVAL;
            break;
        }
        nfd = openat(fd, comp, (next ? O_PATH : O_RDONLY) | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        e = errno;
        close(fd);
        fd = nfd;
        errno = e;
    }
    e = errno;
    free(copy);
    return fd >= 0 ? fd : -e;
}

int libdm__restrict_open_chroot(const char *dir, int *ret_fd, char **ret_err)
{
    struct stat st, root;
    int fd, r;

    /* lstat for the message; the walk without links is what holds. */
    if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
        return open_chroot_err(dir, ELOOP, ret_err);
    fd = open_no_links(dir);
    if (fd == -ENOTDIR && lstat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return open_chroot_err(dir, ENOTDIR, ret_err);
    if (fd == -ENOTDIR) /* a parent became a link after it was resolved */
        return set_err(ret_err, -EINVAL, "chroot %s changed while it was opened", dir);
    if (fd < 0)
        return open_chroot_err(dir, -fd, ret_err);
    if (fstat(fd, &st) < 0 || stat("/", &root) < 0) {
        r = set_err(ret_err, -errno, "chroot %s: %s", dir, strerror(errno));
    } else if (st.st_dev == root.st_dev && st.st_ino == root.st_ino) {
        r = set_err(ret_err, -EINVAL, "chroot %s is the root directory: that confines nothing",
                    dir);
    } else if ((r = check_ours(&st, "chroot", dir, ret_err)) == 0) {
        r = dir_is_empty(fd);
        if (r == 0)
            r = set_err(ret_err, -EINVAL, "chroot %s is not empty: give an empty directory", dir);
        else if (r < 0)
            r = set_err(ret_err, r, "chroot %s: %s", dir, strerror(-r));
        else
            r = 0;
    }
    if (r == 0 && ret_fd)
        *ret_fd = fd;
    else
        close(fd);
    return r;
}

int libdm__restrict_check_chroot(const char *dir, char **ret_err)
{
    return libdm__restrict_open_chroot(dir, NULL, ret_err);
}

/* Opens the parent of libdm's chroot, making it (0755) if missing: on a host
 * without xencommons /var/run/xen does not exist yet. */
static int open_parent(const char *parent, char **ret_err)
{
    struct stat st;
    int fd, r;

    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && mkdir(parent, 0755) == 0)
        fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return set_err(ret_err, -errno, "cannot open %s: %s", parent, strerror(errno));
    if (fstat(fd, &st) < 0) {
        r = set_err(ret_err, -errno, "%s: %s", parent, strerror(errno));
    } else {
        r = check_ours(&st, "directory", parent, ret_err);
        if (r == 0)
            return fd;
    }
    close(fd);
    return r;
}

/* Removes whatever is at @name in @pfd (a stale chroot, or something
 * planted there), never following a link and never recursing. */
static int remove_stale(int pfd, const char *name, const char *dir, char **ret_err)
{
    struct stat st;

    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : set_err(ret_err, -errno, "%s: %s", dir, strerror(errno));
    if (unlinkat(pfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0)
        return 0;
    if (errno == ENOTEMPTY || errno == EEXIST)
        return set_err(ret_err, -EEXIST,
                       "stale chroot %s is not empty (a device model may still use it): "
                       "remove it", dir);
    return set_err(ret_err, -errno, "cannot remove the stale chroot %s: %s", dir,
                   strerror(errno));
}

static int split_path(const char *dir, char **ret_parent, const char **ret_name)
{
    const char *slash = strrchr(dir, '/');

    if (!slash || !slash[1])
        return -EINVAL;
    *ret_parent = slash == dir ? strdup("/") : strndup(dir, (size_t)(slash - dir));
    *ret_name = slash + 1;
    return *ret_parent ? 0 : -ENOMEM;
}

int libdm__restrict_make_chroot(const char *dir, char **ret_err)
{
    const char *name;
    char *parent = NULL;
    struct stat st;
    int pfd, r;

    r = split_path(dir, &parent, &name);
    if (r < 0)
        return set_err(ret_err, r, "invalid chroot path %s", dir);
    pfd = open_parent(parent, ret_err);
    free(parent);
    if (pfd < 0)
        return pfd;
    r = remove_stale(pfd, name, dir, ret_err);
    if (r == 0 && mkdirat(pfd, name, 0) < 0)
        r = set_err(ret_err, -errno, "cannot make the chroot %s: %s", dir, strerror(errno));
    if (r == 0 && (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
                   (st.st_mode & 07777) != 0 || st.st_uid != geteuid()))
        r = set_err(ret_err, -EPERM, "the chroot %s changed under us", dir);
    close(pfd);
    return r;
}

char *libdm__restrict_own_chroot(const char *dm_dir, const char *profile, uint32_t domid)
{
    if (profile && strcmp(profile, "xen") == 0)
        return libdm__sprintf("%s/qemu-root-%" PRIu32, LIBDM__XEN_RUN_DIR, domid);
    return libdm__sprintf("%s/" LIBDM__PLAIN_ROOT_NAME, dm_dir);
}

void libdm__restrict_cleanup(const char *profile, uint32_t domid)
{
    char *dir;

    if (!profile || strcmp(profile, "xen") || domid == 0)
        return;
    dir = libdm__restrict_own_chroot(NULL, profile, domid);
    /* rmdir: only an empty directory goes, a symlink there is left alone. */
    if (dir)
        (void)rmdir(dir);
    free(dir);
}

/* ---- the plan ---- */

void libdm__restrict_plan_clear(libdm__restrict_plan *p)
{
    libdm_dm_config_free(p->cfg);
    free(p->keeper_spec);
    free(p->confinement);
    *p = (libdm__restrict_plan){ 0 };
}

/* libxl leaves an administrator's XEN_QEMU_CONSOLE_LIMIT alone. */
static unsigned long console_limit(void)
{
    const char *s = getenv("XEN_QEMU_CONSOLE_LIMIT");
    char *end;
    unsigned long v;

    if (!s || s[0] < '0' || s[0] > '9')
        return LIBDM__XEN_CONSOLE_LIMIT;
    errno = 0;
    v = strtoul(s, &end, 10);
    return errno || *end || v == 0 ? LIBDM__XEN_CONSOLE_LIMIT : v;
}

/* A disk QEMU may write: RLIMIT_FSIZE would fail its writes past 256 KiB
 * (it limits writes to any regular file, fds passed in included). */
static bool writable_images(const libdm_dm_config *c)
{
    for (size_t i = 0; i < c->dev.n_disks; i++)
        if (!c->dev.disks[i].readonly && !c->dev.disks[i].cdrom)
            return true;
    return false;
}

/* The keeper's --restrict= value; owned-root= last: a path may hold commas.
 * A restricted DM's log always goes through the keeper (log-pipe), capped
 * as RLIMIT_FSIZE capped it under libxl; the limit itself is lifted only
 * when the DM has images to write (SECURITY.md, "Disk images"). */
static char *keeper_spec(const libdm_dm_config *c, const char *own_root)
{
    char limit[48] = "";

    if (c->profile == LIBDM_PROFILE_XEN)
        snprintf(limit, sizeof(limit), "console-limit=%lu", console_limit());
    if (!c->restricted && c->has_log_fd) /* a caller's log: capped too */
        return libdm__sprintf("log-pipe%s%s", limit[0] ? "," : "", limit);
    if (!c->restricted)
        return limit[0] ? strdup(limit) : NULL;
    return libdm__sprintf("ns,rlimits,log-pipe,nnp%s%s%s%s%s%s",
                          writable_images(c) ? ",fsize-unlimited" : "",
                          c->seccomp == LIBDM_SECCOMP_FILTER ? ",seccomp" : "",
                          limit[0] ? "," : "", limit, own_root ? ",owned-root=" : "",
                          own_root ? own_root : "");
}

static char *confinement(const libdm_dm_config *c, const libdm__runas *ra)
{
    return libdm__sprintf("uid %" PRIu32 " gid %" PRIu32 ", chroot %s, ns mnt+ipc, rlimits "
                          "(file size %s, log capped at 256 KiB), no_new_privs, seccomp %s%s",
                          ra->uid, ra->gid, c->chroot_dir,
                          writable_images(c) ? "unlimited: writable images" : "256 KiB",
                          c->seccomp == LIBDM_SECCOMP_FILTER ? "keeper-filter" : "qemu-sandbox",
                          c->profile == LIBDM_PROFILE_XEN ? ", xen-domid-restrict" : "");
}

/* Runas and the caller's chroot: checks without side effects, first. */
static int resolve_identity(libdm_dm_config *c, const libdm__pw_ops *pw, libdm__runas *ra,
                            char **err)
{
    int r;

    if (geteuid() != 0)
        return set_err(err, -EPERM, "a restricted device model needs root "
                       "(QEMU's -runas and -chroot, the keeper's namespaces)");
    r = libdm__restrict_runas(c, pw, ra, err);
    if (r < 0)
        return r;
    free(c->runas);
    c->runas = strdup(ra->arg);
    if (!c->runas)
        return -ENOMEM;
    return 0;
}

/* The caller's chroot, opened once without links and checked on the fd;
 * QEMU gets that fd and chroots to /proc/self/fd/N, never to the path
 * again (whoever owns a parent could swap it for a link meanwhile). */
static int pin_chroot(libdm_dm_config *c, char **err)
{
    int fd = -1, qemu_fd, r = libdm__restrict_open_chroot(c->chroot_dir, &fd, err);

    if (r < 0)
        return r;
    r = libdm_dm_config_pass_fd(c, fd, &qemu_fd);
    close(fd);
    if (r < 0)
        return set_err(err, r, "chroot %s: cannot pass it to QEMU: %s", c->chroot_dir,
                       strerror(-r));
    free(c->chroot_dir);
    c->chroot_dir = libdm__sprintf("/proc/self/fd/%d", qemu_fd);
    return c->chroot_dir ? 0 : -ENOMEM;
}

/* The start path runs the async probe first, so the cache answers. Without
 * an answer (the binary changed since) nothing is run here, on the caller's
 * loop: the keeper's own filter is used, seccomp is on either way. */
static bool qemu_has_sandbox(const char *qemu)
{
    return libdm__qemu_sandbox_cached(qemu) > 0;
}

static int resolve_restrict(libdm__restrict_plan *p, const char *dm_dir,
                            const libdm__pw_ops *pw, char **own_root, char **err)
{
    libdm_dm_config *c = p->cfg;
    libdm__runas ra = { 0 };
    int r = resolve_identity(c, pw, &ra, err);

    if (r == 0 && !c->chroot_dir) {
        *own_root = libdm__restrict_own_chroot(dm_dir, libdm__profile_to_string(c->profile),
                                               c->domid);
        r = *own_root ? libdm__restrict_make_chroot(*own_root, err) : -ENOMEM;
        if (r < 0) {
            free(*own_root);
            *own_root = NULL;
        } else if (!(c->chroot_dir = strdup(*own_root))) {
            r = -ENOMEM;
        }
    }
    /* Last: the probe runs QEMU, and a refused configuration starts nothing. */
    if (r == 0 && c->seccomp == LIBDM_SECCOMP_AUTO)
        c->seccomp = qemu_has_sandbox(libdm__config_qemu_path(c)) ? LIBDM_SECCOMP_QEMU
                                                                   : LIBDM_SECCOMP_FILTER;
    if (r == 0 && !(p->confinement = confinement(c, &ra)))
        r = -ENOMEM;
    if (r == 0 && !*own_root) /* the caller's: said by path above, used by fd */
        r = pin_chroot(c, err);
    libdm__runas_clear(&ra);
    return r;
}

int libdm__restrict_prepare_pw(libdm_ctx *ctx, const libdm_dm_config *cfg, const char *dm_dir,
                               const libdm__pw_ops *pw, libdm__restrict_plan *ret)
{
    libdm__restrict_plan p = { 0 };
    char *own_root = NULL, *err = NULL;
    int r = libdm__config_copy(cfg, &p.cfg);

    if (r == 0 && cfg->restricted)
        r = resolve_restrict(&p, dm_dir, pw, &own_root, &err);
    else if (r == 0 && !(p.confinement = strdup("none")))
        r = -ENOMEM;
    if (r == 0) {
        p.keeper_spec = keeper_spec(p.cfg, own_root);
        if (!p.keeper_spec && (cfg->restricted || cfg->profile == LIBDM_PROFILE_XEN))
            r = -ENOMEM;
    }
    if (r < 0) {
        LIBDM__ERROR(ctx, "%s: %s", cfg->name ? cfg->name : "device model",
                     err ? err : strerror(-r));
        if (own_root)
            (void)rmdir(own_root);
        libdm__restrict_plan_clear(&p);
    } else {
        *ret = p;
    }
    free(own_root);
    free(err);
    return r;
}

int libdm__restrict_prepare(libdm_ctx *ctx, const libdm_dm_config *cfg, const char *dm_dir,
                            libdm__restrict_plan *ret)
{
    return libdm__restrict_prepare_pw(ctx, cfg, dm_dir, &libdm__pw_system, ret);
}
