/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The claim on a domain (one DM per domid), like the name's: two links to
 * the claimer's owner.lock, so that whoever holds the name (the starter,
 * then the keeper for the DM's life) holds the domain:
 *   <root>/.domid-D.lock           a hard link to owner.lock (per store)
 *   /var/run/xen/libdm-domid-D     a symlink to that link: the claim is
 *                                  host-global, across stores (a domid is
 *                                  the host's, and so are libxl's paths
 *                                  qmp-libxl-D and qemu-root-D)
 * A link whose inode nobody has locked is stale and replaced.
 */
#include "rundir-internal.h"
#include "config-internal.h"
#include "devices-internal.h"
#include "store.h"

#include <limits.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLAIM_ATTEMPTS 20
/* Serialises the replacement of stale global links (held for a few file
 * operations, never across a wait). */
#define GLOBAL_MUTEX ".libdm-domid.lock"

static void domid_lock_name(uint32_t domid, char *buf, size_t len)
{
    snprintf(buf, len, ".domid-%" PRIu32 ".lock", domid);
}

bool libdm__rundir_domid_ours(const libdm__rundir *rd, uint32_t domid)
{
    char file[48];
    int root_fd;
    bool ours;

    if (!rd || domid == 0 || rd->owner_fd < 0 ||
        libdm__store_open_dir(AT_FDCWD, rd->root, false, &root_fd) < 0)
        return false;
    domid_lock_name(domid, file, sizeof(file));
    ours = libdm__rd_names_fd(root_fd, file, rd->owner_fd);
    close(root_fd);
    return ours;
}

/* The link exists and is not ours: 1 if a holder has it (a live DM or a
 * start of that domain), 0 if it was stale and is now removed, -errno. */
static int domid_held_by_other(int root_fd, const char *file, int *ret_pid, char **ret_note)
{
    int fd, r = libdm__rd_open_lock(root_fd, file, false, &fd);

    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? 1 : -errno;
        close(fd);
        if (r == 1)
            libdm__rd_read_holder(root_fd, file, ret_pid, ret_note);
        return r;
    }
    /* Nobody holds it: stale. Removed only while it is the inode we locked
     * (whoever replaces a stale link does so under this same lock). */
    if (libdm__rd_names_fd(root_fd, file, fd))
        (void)unlinkat(root_fd, file, 0);
    close(fd);
    return 0;
}

/* ---- the host-global claim: LIBDM__XEN_RUN_DIR/libdm-domid-D ---- */

static void global_name(uint32_t domid, char *buf, size_t len)
{
    snprintf(buf, len, "libdm-domid-%" PRIu32, domid);
}

/* What our global link says: the absolute path of our per-store link. */
static char *global_target(const libdm__rundir *rd, const char *file)
{
    char cwd[PATH_MAX];

    if (rd->root[0] == '/')
        return libdm__sprintf("%s/%s", rd->root, file);
    if (!getcwd(cwd, sizeof(cwd)))
        return NULL;
    return libdm__sprintf("%s/%s/%s", cwd, rd->root, file);
}

/* Opens LIBDM__XEN_RUN_DIR and takes the mutex: 0, or -errno. */
static int global_lock(bool create, int *ret_xfd, int *ret_mfd)
{
    int r = libdm__store_open_dir(AT_FDCWD, LIBDM__XEN_RUN_DIR, create, ret_xfd);

    if (r < 0)
        return r;
    r = libdm__rd_open_lock(*ret_xfd, GLOBAL_MUTEX, true, ret_mfd);
    if (r >= 0 && flock(*ret_mfd, LOCK_EX) < 0) {
        r = -errno;
        close(*ret_mfd);
    }
    if (r < 0)
        close(*ret_xfd);
    return r;
}

/* Whether the link @target (another store's .domid-D.lock) is held: 1
 * (*ret_pid: its holder's word, for the message), 0 stale, -errno. */
static int global_held(const char *target, int *ret_pid)
{
    char buf[64];
    struct stat st;
    ssize_t n;
    int fd = open(target, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY), r;

    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return -EPERM;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        close(fd);
        return 0;
    }
    r = errno == EWOULDBLOCK ? 1 : -errno;
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    if (sscanf(buf, "%d", ret_pid) != 1)
        *ret_pid = 0;
    close(fd);
    return r;
}

/* Makes LIBDM__XEN_RUN_DIR/libdm-domid-D point at our per-store link
 * @file (already ours), replacing a stale one: 0, -EEXIST (another
 * store's DM has the domain), -errno. */
static int hold_global(libdm__rundir *rd, uint32_t domid, const char *file, char **ret_why)
{
    char gname[48], link[PATH_MAX];
    char *mine = global_target(rd, file);
    int xfd, mfd, r;

    if (!mine)
        return -ENOMEM;
    global_name(domid, gname, sizeof(gname));
    r = global_lock(true, &xfd, &mfd);
    if (r < 0) {
        libdm__rd_why(ret_why, "cannot claim domain %" PRIu32 " in %s: %s", domid,
                      LIBDM__XEN_RUN_DIR, libdm__rd_dir_problem(r));
        free(mine);
        return r;
    }
    r = -EAGAIN;
    for (int attempt = 0; attempt < 2 && r == -EAGAIN; attempt++) {
        ssize_t n = readlinkat(xfd, gname, link, sizeof(link) - 1);
        int pid = 0;

        if (n < 0 && errno == ENOENT) {
            r = symlinkat(mine, xfd, gname) < 0 ? -errno : 0;
            break;
        }
        if (n < 0) {
            r = errno == EINVAL ? -EPERM : -errno; /* not a symlink: planted */
            break;
        }
        link[n] = '\0';
        if (!strcmp(link, mine)) {
            r = 0;
            break;
        }
        r = global_held(link, &pid);
        if (r == 1) {
            char *cmd = pid > 0 ? libdm__proc_cmdline(pid) : NULL;

            libdm__rd_why(ret_why, "domain %" PRIu32 " already has a device model, being started "
                          "or running, in another store (%s: pid %d%s%s)", domid, link, pid,
                          cmd ? ", " : "", cmd ? cmd : "");
            free(cmd);
            r = -EEXIST;
        } else if (r == 0) {
            (void)unlinkat(xfd, gname, 0); /* stale: under the mutex, nobody raced us */
            r = -EAGAIN;
        }
    }
    if (r < 0 && r != -EEXIST)
        libdm__rd_why(ret_why, "cannot claim domain %" PRIu32 " (%s/%s): %s", domid,
                      LIBDM__XEN_RUN_DIR, gname,
                      r == -EPERM ? "not a link of ours" : strerror(-r));
    close(mfd);
    close(xfd);
    free(mine);
    return r;
}

/* Removes our global link (only if it still points at our own). */
static void drop_global(libdm__rundir *rd, uint32_t domid, const char *file)
{
    char gname[48], link[PATH_MAX];
    char *mine = global_target(rd, file);
    ssize_t n;
    int xfd, mfd;

    if (!mine)
        return;
    global_name(domid, gname, sizeof(gname));
    if (global_lock(false, &xfd, &mfd) == 0) {
        n = readlinkat(xfd, gname, link, sizeof(link) - 1);
        if (n > 0) {
            link[n] = '\0';
            if (!strcmp(link, mine))
                (void)unlinkat(xfd, gname, 0);
        }
        close(mfd);
        close(xfd);
    }
    free(mine);
}


int libdm__rundir_hold_domid(libdm__rundir *rd, uint32_t domid, char **ret_why)
{
    char file[48];
    int root_fd, r = -EAGAIN;

    if (domid == 0)
        return 0;
    if (rd->owner_fd < 0)
        return -ENOLCK;
    r = libdm__store_open_dir(AT_FDCWD, rd->root, false, &root_fd);
    if (r < 0) {
        libdm__rd_why(ret_why, "cannot open the run directory %s: %s", rd->root, libdm__rd_dir_problem(r));
        return r;
    }
    domid_lock_name(domid, file, sizeof(file));
    r = -EAGAIN;
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS && r == -EAGAIN; attempt++) {
        int pid = 0;
        char *note = NULL;

        bool made = linkat(rd->dfd, LIBDM__RD_OWNER, root_fd, file, 0) == 0;

        if (made || libdm__rd_names_fd(root_fd, file, rd->owner_fd)) {
            /* Ours in this store; and across stores (the host's domain). */
            r = hold_global(rd, domid, file, ret_why);
            if (r < 0 && made && libdm__rd_names_fd(root_fd, file, rd->owner_fd))
                (void)unlinkat(root_fd, file, 0);
            break;
        }
        if (errno != EEXIST) {
            r = -errno;
            libdm__rd_why(ret_why, "cannot claim domain %" PRIu32 " (%s/%s): %s", domid, rd->root,
                    file, strerror(-r));
            break;
        }
        r = domid_held_by_other(root_fd, file, &pid, &note);
        if (r == 1) {
            char *cmd = pid > 0 ? libdm__proc_cmdline(pid) : NULL;

            libdm__rd_why(ret_why, "domain %" PRIu32 " already has a device model, being started or "
                    "running (pid %d%s%s)", domid, pid, cmd ? ", " : "", cmd ? cmd : "");
            free(cmd);
            r = -EEXIST;
        } else if (r == 0) {
            r = -EAGAIN; /* stale, removed: link again */
        } else {
            libdm__rd_why(ret_why, "cannot claim domain %" PRIu32 " (%s/%s): %s", domid, rd->root,
                    file, r == -EPERM ? "not a regular file of ours" : strerror(-r));
        }
        free(note);
    }
    if (r == -EAGAIN)
        libdm__rd_why(ret_why, "cannot claim domain %" PRIu32 ": its claim keeps changing", domid);
    /* The domain goes with the run directory (libdm__rundir_remove), even
     * if its sockets were never set up (a start failing right after). */
    if (r == 0 && rd->domid == 0)
        rd->domid = domid;
    close(root_fd);
    return r;
}

void libdm__rundir_drop_domid(libdm__rundir *rd, uint32_t domid)
{
    char file[48];
    int root_fd;

    if (domid == 0 || rd->owner_fd < 0 ||
        libdm__store_open_dir(AT_FDCWD, rd->root, false, &root_fd) < 0)
        return;
    domid_lock_name(domid, file, sizeof(file));
    if (libdm__rd_names_fd(root_fd, file, rd->owner_fd)) {
        drop_global(rd, domid, file);
        (void)unlinkat(root_fd, file, 0);
    }
    close(root_fd);
}

void libdm__rundir_remove_xen_sockets(libdm__rundir *rd, const char *xen_run_dir,
                                      uint32_t domid)
{
    char name[48];
    int dfd;

    if (domid == 0 || libdm__rundir_hold_domid(rd, domid, NULL) < 0 ||
        libdm__store_open_dir(AT_FDCWD, xen_run_dir, false, &dfd) < 0)
        return;
    snprintf(name, sizeof(name), "qmp-libxl-%" PRIu32, domid);
    (void)unlinkat(dfd, name, 0);
    snprintf(name, sizeof(name), "qmp-libxenstat-%" PRIu32, domid);
    (void)unlinkat(dfd, name, 0);
    close(dfd);
}


void libdm__rundir_remove_taps(libdm__rundir *rd, libdm_ctx *ctx, const char *profile,
                               uint32_t domid, const char *nics)
{
    /* A xen DM's taps (vifD.N-emu) are the domain's: only under its claim,
     * never because a record names that domid. */
    if (profile && !strcmp(profile, "xen") && domid > 0 &&
        (!rd || libdm__rundir_hold_domid(rd, domid, NULL) < 0))
        return;
    libdm__devices_cleanup(ctx, nics);
}
