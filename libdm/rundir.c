/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The run directory of one device model and the claim on its name (see
 * rundir-internal.h for the layout). Every file operation is relative to
 * the directory's fd; sockets are bound and connected through
 * /proc/self/fd/N so that not even bind() and connect() re-resolve the
 * directory's path.
 */
#include "rundir-internal.h"
#include "store.h"

#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CLAIM_ATTEMPTS 20

char *libdm__rundir_file(const libdm__rundir *rd, const char *file)
{
    return libdm__sprintf("%s/%s", rd->path, file);
}

libdm__rundir *libdm__rundir_free(libdm__rundir *rd)
{
    if (!rd)
        return NULL;
    libdm__close(&rd->monitor_fd);
    libdm__close(&rd->owner_fd);
    libdm__close(&rd->dfd);
    libdm__close(&rd->sock_dfd);
    free(rd->root);
    free(rd->name);
    free(rd->path);
    free(rd);
    return NULL;
}

/* Opens <root>/<name> (creating both if @create), checked. */
static int open_dirs(const char *root, const char *name, bool create, libdm__rundir *rd,
                     char **ret_why)
{
    int root_fd, r;
    bool existed;
    struct stat st;

    r = libdm__store_open_dir(AT_FDCWD, root, create, &root_fd);
    if (r < 0) {
        libdm__rd_why(ret_why, "refusing the run directory %s: %s", root, libdm__rd_dir_problem(r));
        return r;
    }
    existed = fstatat(root_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    r = libdm__store_open_dir(root_fd, name, create, &rd->dfd);
    /* Made here but not usable: an empty directory is all we leave out. */
    if (r < 0 && create && !existed)
        (void)unlinkat(root_fd, name, AT_REMOVEDIR);
    if (r < 0) {
        if (r == -ENOENT)
            libdm__rd_why(ret_why, "%s: no such device model directory", rd->path);
        else
            libdm__rd_why(ret_why, "refusing the directory %s: %s", rd->path, libdm__rd_dir_problem(r));
    } else if (!existed) {
        rd->made |= LIBDM__RD_MADE_DIR;
    }
    close(root_fd);
    return r;
}

static libdm__rundir *rundir_alloc(const char *root, const char *name)
{
    libdm__rundir *rd = calloc(1, sizeof(*rd));

    if (!rd)
        return NULL;
    rd->dfd = rd->owner_fd = rd->monitor_fd = rd->sock_dfd = -1;
    snprintf(rd->sock_name, sizeof(rd->sock_name), "%s", LIBDM__RD_SOCK);
    rd->root = strdup(root);
    rd->name = strdup(name);
    rd->path = libdm__sprintf("%s/%s", root, name);
    if (!rd->root || !rd->name || !rd->path)
        return libdm__rundir_free(rd);
    return rd;
}

int libdm__rundir_open(const char *root, const char *name, libdm__rundir **ret, char **ret_why)
{
    libdm__rundir *rd;
    int r;

    if (!root || !name || libdm__record_check_name(name) < 0)
        return -EINVAL;
    rd = rundir_alloc(root, name);
    if (!rd)
        return -ENOMEM;
    r = open_dirs(root, name, false, rd, ret_why);
    if (r < 0) {
        libdm__rundir_free(rd);
        return r;
    }
    *ret = rd;
    return 0;
}

int libdm__rundir_adopt(const char *root, const char *name, int dfd, int owner_fd,
                        libdm__rundir **ret)
{
    libdm__rundir *rd;

    if (!root || !name || libdm__record_check_name(name) < 0)
        return -EINVAL;
    rd = rundir_alloc(root, name);
    if (!rd)
        return -ENOMEM;
    rd->dfd = dfd;
    rd->owner_fd = owner_fd;
    *ret = rd;
    return 0;
}

static void explain_held(libdm__rundir *rd, char **ret_why)
{
    int pid;
    char *cmd;

    /* The holder writes its pid right after it locked: give it that moment,
     * then (it was preempted in between) ask the kernel who locked. */
    for (int i = 0; i < 50; i++) {
        libdm__rd_read_holder(rd->dfd, LIBDM__RD_OWNER, &pid, NULL);
        if (pid > 0)
            break;
        sched_yield();
    }
    if (pid <= 0)
        pid = libdm__rd_flock_holder(rd->dfd, LIBDM__RD_OWNER);
    cmd = pid > 0 ? libdm__proc_cmdline(pid) : NULL;
    if (pid > 0)
        libdm__rd_why(ret_why, "the name is in use by a device model being started or running (pid %d%s%s)",
                pid, cmd ? ", " : "", cmd ? cmd : "");
    else
        libdm__rd_why(ret_why, "the name is in use by a device model being started or running");
    free(cmd);
}

int libdm__rundir_claim(const char *root, const char *name, libdm__rundir **ret, char **ret_why)
{
    libdm__rundir *rd;
    int r = -EAGAIN;

    if (!root || !name || libdm__record_check_name(name) < 0)
        return -EINVAL;
    rd = rundir_alloc(root, name);
    if (!rd)
        return -ENOMEM;
    /* Retried only if the directory was removed under us by its last owner. */
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS && r == -EAGAIN; attempt++) {
        int root_fd;

        libdm__close(&rd->dfd);
        rd->made = 0;
        r = open_dirs(root, name, true, rd, ret_why);
        if (r < 0)
            break;
        r = libdm__rd_lock(rd->dfd, LIBDM__RD_OWNER, &rd->owner_fd);
        if (r == -EAGAIN) {
            explain_held(rd, ret_why);
            r = -EEXIST;
            break;
        }
        if (r < 0) {
            libdm__rd_why(ret_why, "cannot lock %s/" LIBDM__RD_OWNER ": %s", rd->path,
                    r == -EPERM ? "not a regular file of ours" : strerror(-r));
            break;
        }
        libdm__rd_write_holder(rd->owner_fd, NULL); /* at once: a loser names us */
        r = libdm__store_open_dir(AT_FDCWD, root, false, &root_fd);
        if (r < 0) {
            libdm__rd_why(ret_why, "cannot open the run directory %s: %s", root, libdm__rd_dir_problem(r));
            break;
        }
        if (!libdm__rd_still_named(root_fd, name, rd->dfd)) {
            libdm__close(&rd->owner_fd);
            r = -EAGAIN;
        }
        close(root_fd);
    }
    if (r < 0) {
        /* A claim that failed for an error (not because the name is held)
         * leaves nothing it made: but only once the name is provably ours. */
        if (r != -EEXIST && rd->dfd >= 0 && (rd->made & LIBDM__RD_MADE_DIR) &&
            (rd->owner_fd >= 0 || libdm__rd_lock(rd->dfd, LIBDM__RD_OWNER, &rd->owner_fd) == 0))
            libdm__rundir_remove(rd, LIBDM__RD_REMOVE_ALL);
        libdm__rundir_free(rd);
        return r;
    }
    *ret = rd;
    return 0;
}

int libdm__rundir_owner_held(libdm__rundir *rd, int *ret_pid)
{
    int fd, r;

    if (rd->owner_fd >= 0) {
        if (ret_pid)
            *ret_pid = (int)getpid();
        return 1;
    }
    r = libdm__rd_open_lock(rd->dfd, LIBDM__RD_OWNER, false, &fd);
    if (r < 0)
        return 0; /* no lock file: nobody ever claimed it, or it was cleaned */
    r = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the lock if we got it */
    if (r)
        libdm__rd_read_holder(rd->dfd, LIBDM__RD_OWNER, ret_pid, NULL);
    return r;
}

int libdm__rundir_reclaim(libdm__rundir *rd)
{
    int root_fd = -1, r;

    if (rd->owner_fd >= 0)
        return 0;
    r = libdm__rd_lock(rd->dfd, LIBDM__RD_OWNER, &rd->owner_fd);
    if (r < 0)
        return r;
    r = libdm__store_open_dir(AT_FDCWD, rd->root, false, &root_fd);
    if (r >= 0 && !libdm__rd_still_named(root_fd, rd->name, rd->dfd))
        r = -ESTALE;
    if (root_fd >= 0)
        close(root_fd);
    if (r < 0)
        libdm__close(&rd->owner_fd);
    return r;
}

int libdm__rundir_take_owner_fd(libdm__rundir *rd)
{
    int fd = rd->owner_fd;

    rd->owner_fd = -1;
    return fd;
}

static int sock_dir(const libdm__rundir *rd)
{
    return rd->sock_dfd >= 0 ? rd->sock_dfd : rd->dfd;
}

/* "/proc/self/fd/N/<socket>": the directory by its fd, never by its path. */
static int fd_sockaddr(const libdm__rundir *rd, struct sockaddr_un *sa)
{
    int n;

    *sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
    n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", sock_dir(rd),
                 rd->sock_name);
    return n > 0 && (size_t)n < sizeof(sa->sun_path) ? 0 : -ENAMETOOLONG;
}

/* Whether a process listens on @sa (a live DM's monitor): 1, 0, or -errno. */
static int someone_listens(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), r;

    if (fd < 0)
        return -errno;
    r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN;
    close(fd);
    return r;
}

int libdm__rundir_use_xen_socket(libdm__rundir *rd, const char *xen_run_dir, uint32_t domid,
                                 bool create, char **ret_path, char **ret_why)
{
    int r = libdm__store_open_dir(AT_FDCWD, xen_run_dir, create, &rd->sock_dfd);

    if (r < 0) {
        libdm__rd_why(ret_why, "refusing %s: %s", xen_run_dir, libdm__rd_dir_problem(r));
        return r;
    }
    rd->domid = domid;
    snprintf(rd->sock_name, sizeof(rd->sock_name), "qmp-libxl-%u", domid);
    snprintf(rd->xenstat_name, sizeof(rd->xenstat_name), "qmp-libxenstat-%u", domid);
    *ret_path = libdm__sprintf("%s/%s", xen_run_dir, rd->sock_name);
    return *ret_path ? 0 : -ENOMEM;
}

int libdm__rundir_make_socket(libdm__rundir *rd, int *ret_listen, int *ret_client)
{
    struct sockaddr_un sa;
    int lfd = -1, cfd = -1, r;

    r = fd_sockaddr(rd, &sa);
    if (r < 0)
        return r;
    /* libxl's path is per domain, not per name: a live monitor there is
     * another DM of this domain. */
    if (rd->sock_dfd >= 0 && someone_listens(&sa) > 0)
        return -EADDRINUSE;
    /* Non-blocking, like the listening sockets QEMU makes itself: QEMU's
     * main loop may call accept() on a spurious wakeup after it took our
     * connection, and a blocking listener then hangs its main loop (and so
     * the monitor) for good (1 start in a few hundred under load). */
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (lfd < 0)
        return -errno;
    /* We hold the name's claim: whatever is there is a stale socket. */
    (void)unlinkat(sock_dir(rd), rd->sock_name, 0);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    rd->made |= LIBDM__RD_MADE_SOCK;
    if (listen(lfd, 1) < 0)
        goto fail;
    cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    *ret_listen = lfd;
    *ret_client = cfd;
    return 0;
fail:
    r = -errno;
    libdm__close(&lfd);
    libdm__close(&cfd);
    return r;
}

int libdm__rundir_make_log(libdm__rundir *rd, int *ret_fd)
{
    int fd = openat(rd->dfd, LIBDM__RD_LOG,
                    O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                    0600);

    if (fd < 0)
        return -errno;
    rd->made |= LIBDM__RD_MADE_LOG;
    *ret_fd = fd;
    return 0;
}

int libdm__rundir_socket_path(libdm__rundir *rd, char **ret_path, char **ret_why)
{
    const char *where = rd->sock_dfd >= 0 ? "libxl's run directory" : rd->path;
    struct sockaddr_un sa;
    struct stat st;
    int r;

    if (fstatat(sock_dir(rd), rd->sock_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        r = -errno;
        libdm__rd_why(ret_why, "no monitor socket %s in %s: %s", rd->sock_name, where, strerror(-r));
        return r;
    }
    if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
        libdm__rd_why(ret_why, "refusing the monitor %s in %s: %s", rd->sock_name, where,
                S_ISLNK(st.st_mode) ? "it is a symlink" :
                !S_ISSOCK(st.st_mode) ? "it is not a socket" : "it belongs to another user");
        return S_ISLNK(st.st_mode) ? -ELOOP : -EPERM;
    }
    r = fd_sockaddr(rd, &sa);
    if (r < 0)
        return r;
    *ret_path = strdup(sa.sun_path);
    return *ret_path ? 0 : -ENOMEM;
}

int libdm__rundir_lock_monitor(libdm__rundir *rd, const char *note, int *ret_pid, char **ret_note)
{
    int r;

    if (rd->monitor_fd >= 0 || rd->monitor_lent)
        return 0;
    r = libdm__rd_lock(rd->dfd, LIBDM__RD_MONITOR, &rd->monitor_fd);
    if (r == -EAGAIN)
        libdm__rd_read_holder(rd->dfd, LIBDM__RD_MONITOR, ret_pid, ret_note);
    else if (r == 0)
        libdm__rd_write_holder(rd->monitor_fd, note);
    return r;
}

void libdm__rundir_remove_subdir(libdm__rundir *rd, const char *name)
{
    /* rmdir semantics: only an empty directory, never a link's target. */
    (void)unlinkat(rd->dfd, name, AT_REMOVEDIR);
}

int libdm__rundir_set_monitor_note(libdm__rundir *rd, const char *note)
{
    int fd, r;

    if (rd->monitor_fd >= 0) {
        libdm__rd_write_holder(rd->monitor_fd, note);
        return 0;
    }
    if (!rd->monitor_lent)
        return -ENOLCK;
    /* The keeper holds the lock for us: the note is only the file's text. */
    r = libdm__rd_open_lock(rd->dfd, LIBDM__RD_MONITOR, false, &fd);
    if (r < 0)
        return r;
    libdm__rd_write_holder(fd, note);
    close(fd);
    rd->monitor_noted = note != NULL;
    return 0;
}

void libdm__rundir_unlock_monitor(libdm__rundir *rd)
{
    /* A lent lock stays held until the keeper reads our channel's end: a
     * note such as "migration" would make an attacher refuse at once, not
     * wait those moments. */
    if (rd->monitor_lent && rd->monitor_noted)
        (void)libdm__rundir_set_monitor_note(rd, NULL);
    libdm__close(&rd->monitor_fd);
    rd->monitor_lent = false;
}

void libdm__rundir_lend_monitor(libdm__rundir *rd)
{
    if (rd->monitor_fd < 0)
        return;
    libdm__close(&rd->monitor_fd);
    rd->monitor_lent = true;
}

void libdm__rundir_remove(libdm__rundir *rd, libdm__rd_remove what)
{
    bool made_only = what == LIBDM__RD_REMOVE_MADE;
    /* libxl's sockets are per domain: only the domain's claim proves them
     * ours (never a record naming that domid). */
    bool xen_ours = rd->sock_dfd >= 0 && rd->owner_fd >= 0 &&
                    libdm__rundir_hold_domid(rd, rd->domid, NULL) == 0;
    int root_fd;

    if ((!made_only || (rd->made & LIBDM__RD_MADE_SOCK)) && (rd->sock_dfd < 0 || xen_ours))
        (void)unlinkat(sock_dir(rd), rd->sock_name, 0);
    /* QEMU binds libxenstat's monitor itself and leaves it behind. */
    if (!made_only && xen_ours && rd->xenstat_name[0])
        (void)unlinkat(rd->sock_dfd, rd->xenstat_name, 0);
    if (!made_only || (rd->made & LIBDM__RD_MADE_LOG))
        (void)unlinkat(rd->dfd, LIBDM__RD_LOG, 0);
    (void)unlinkat(rd->dfd, LIBDM__RD_CONFIG, 0); /* written under the claim */
    (void)unlinkat(rd->dfd, LIBDM__RD_CONFIG_TMP, 0); /* its writer died mid-write */
    if (what == LIBDM__RD_REMOVE_LEFTOVERS)
        return;
    /* The domain goes with the DM (after its files). */
    libdm__rundir_drop_domid(rd, rd->domid);
    if (made_only && !(rd->made & LIBDM__RD_MADE_DIR))
        return;
    (void)unlinkat(rd->dfd, LIBDM__RD_MONITOR, 0);
    /* Last: a claimer waiting on the old inode sees it is gone and retries. */
    (void)unlinkat(rd->dfd, LIBDM__RD_OWNER, 0);
    if (libdm__store_open_dir(AT_FDCWD, rd->root, false, &root_fd) < 0)
        return;
    /* Only the directory we hold, and only if empty (rmdir refuses otherwise). */
    if (libdm__rd_still_named(root_fd, rd->name, rd->dfd))
        (void)unlinkat(root_fd, rd->name, AT_REMOVEDIR);
    close(root_fd);
}

int libdm__rundir_remove_step(libdm__rundir *rd, unsigned *step)
{
    int root_fd;

    switch ((*step)++) {
    case 0:
        /* libxl's sockets are per domain: only under the domain's claim. */
        if (rd->sock_dfd < 0) {
            (void)unlinkat(rd->dfd, rd->sock_name, 0);
        } else if (rd->owner_fd >= 0 && libdm__rundir_hold_domid(rd, rd->domid, NULL) == 0) {
            (void)unlinkat(rd->sock_dfd, rd->sock_name, 0);
            if (rd->xenstat_name[0])
                (void)unlinkat(rd->sock_dfd, rd->xenstat_name, 0);
        }
        return 1;
    case 1:
        (void)unlinkat(rd->dfd, LIBDM__RD_LOG, 0);
        (void)unlinkat(rd->dfd, LIBDM__RD_MONITOR, 0);
        return 1;
    case 2:
        (void)unlinkat(rd->dfd, LIBDM__RD_CONFIG, 0);
        (void)unlinkat(rd->dfd, LIBDM__RD_CONFIG_TMP, 0);
        return 1;
    case LIBDM__RD_STEP_CLAIM:
        /* The domain goes with the DM (after its files). Last but the
         * directory: a claimer waiting on the old inode sees it is gone and
         * retries. */
        libdm__rundir_drop_domid(rd, rd->domid);
        (void)unlinkat(rd->dfd, LIBDM__RD_OWNER, 0);
        return 1;
    case LIBDM__RD_STEP_CLAIM + 1:
        if (libdm__store_open_dir(AT_FDCWD, rd->root, false, &root_fd) < 0)
            return 0;
        if (libdm__rd_still_named(root_fd, rd->name, rd->dfd))
            (void)unlinkat(root_fd, rd->name, AT_REMOVEDIR);
        close(root_fd);
        return 0;
    }
    return 0;
}
