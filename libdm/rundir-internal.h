/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The run directory of one device model, <root>/<name>/, and the claim on
 * its name. This module is the only owner of that layout:
 *
 *   owner.lock    flock()ed by whoever owns the name: the process starting
 *                 the DM, then its keeper for the DM's whole life (the
 *                 keeper is the init of the DM's PID namespace, so nothing
 *                 of the DM outlives it). Lock free = no DM of that name.
 *                 Holds the holder's pid, for messages.
 *   monitor.lock  flock()ed by the one process talking QMP to the DM (QEMU
 *                 serves one client at a time). Holds "PID [NOTE]".
 *   qmp.sock      the monitor, bound by libdm and handed to QEMU as fd 3
 *   qemu.log      QEMU's stdout and stderr
 *   record, .lock the "dir" store's record (xenstore-glue/store-dir.c)
 *
 * Everything goes through the directory's fd (opened O_NOFOLLOW and checked
 * once): nothing is ever removed by re-resolving a path, and a directory
 * that is refused is left exactly as it was.
 */
#ifndef LIBDM_RUNDIR_INTERNAL_H
#define LIBDM_RUNDIR_INTERNAL_H

#include "internal.h"

#define LIBDM__RD_SOCK "qmp.sock"
#define LIBDM__RD_LOG "qemu.log"
#define LIBDM__RD_OWNER "owner.lock"
#define LIBDM__RD_MONITOR "monitor.lock"
/* The configuration document (config-doc.c, LIBDM__CONFIG_DOC_FILE). */
#define LIBDM__RD_CONFIG "config.json"
/* ...and its temporary name until the rename (left by a writer killed in
 * between: removed with the rest). */
#define LIBDM__RD_CONFIG_TMP "config.json.new"

/* What a rundir object created, and so may remove. */
enum {
    LIBDM__RD_MADE_DIR = 1u << 0,
    LIBDM__RD_MADE_SOCK = 1u << 1,
    LIBDM__RD_MADE_LOG = 1u << 2,
};

typedef struct libdm__rundir {
    char *root;       /* <root>, for messages */
    char *name;
    char *path;       /* <root>/<name>, for messages and records */
    int dfd;          /* the directory, checked: ours, 0700-ish, not a link */
    int owner_fd;     /* owner.lock while we hold the claim, else -1 */
    int monitor_fd;   /* monitor.lock while we hold it, else -1 */
    bool monitor_lent; /* held for us by the DM's keeper (lend_monitor) */
    bool monitor_noted; /* a note was written while lent */
    unsigned made;
    /* The monitor socket: qmp.sock in dfd, or for the xen profile libxl's
     * /var/run/xen/qmp-libxl-<domid> (xl and libxl connect there). */
    int sock_dfd;     /* -1: dfd */
    char sock_name[48];
    char xenstat_name[48]; /* QEMU's second monitor there, removed at the end */
    uint32_t domid;   /* the xen domain whose sockets those are (0: none) */
} libdm__rundir;

/* Claims @name under @root: creates <root> and <root>/<name> if missing,
 * refuses a directory that is a symlink, not ours or writable by others,
 * and takes owner.lock without waiting. -EEXIST if the name is held (by a
 * starting or running DM; *ret_why says by whom). *ret_why (malloc'd, may
 * be NULL) explains any failure. */
int libdm__rundir_claim(const char *root, const char *name, libdm__rundir **ret,
                        char **ret_why);
/* Opens an existing <root>/<name> with the same checks, claiming nothing. */
int libdm__rundir_open(const char *root, const char *name, libdm__rundir **ret,
                       char **ret_why);
/* Wraps fds received from libdm (the keeper's fds 5 and 6); takes them. */
int libdm__rundir_adopt(const char *root, const char *name, int dfd, int owner_fd,
                        libdm__rundir **ret);
/* Rewrites owner.lock's holder line with this process's pid (as the run
 * directory's readers see it) and @note. */
void libdm__rundir_set_owner_note(libdm__rundir *rd, int pid, const char *note);
/* Whether someone holds @rd's owner.lock (a DM starting or alive): 1 yes
 * (*ret_pid: the holder as it wrote itself, 0 if unknown), 0 no. */
int libdm__rundir_owner_held(libdm__rundir *rd, int *ret_pid);
/* Takes the claim again on a DM that has gone (to clean up after it):
 * -EAGAIN if someone holds it, -ESTALE if the directory was replaced. */
int libdm__rundir_reclaim(libdm__rundir *rd);
/* Hands the claim over: the caller gets the owner.lock fd (with the lock),
 * the rundir no longer closes it. */
int libdm__rundir_take_owner_fd(libdm__rundir *rd);

/* The claim on a domain (one DM per domid), like the name's: <root>/.domid-D.lock
 * is a hard link to the claimer's owner.lock, so whoever holds that name
 * (the starter, then the keeper for the DM's life) holds the domain, and a
 * link whose inode nobody has locked is stale. Needs the name's claim.
 * 0: ours (made now or already); -EEXIST: another DM's (*ret_why says
 * whose); -errno. Taken before anything of the domain is touched. */
int libdm__rundir_hold_domid(libdm__rundir *rd, uint32_t domid, char **ret_why);
/* Whether <root>/.domid-D.lock is our owner.lock (we hold it). */
bool libdm__rundir_domid_ours(const libdm__rundir *rd, uint32_t domid);
/* Gives the domain up (unlinks the link if it is ours): last, after all of
 * the domain's files are removed. */
void libdm__rundir_drop_domid(libdm__rundir *rd, uint32_t domid);
/* Removes libxl's sockets of domain @domid (qmp-libxl-D, qmp-libxenstat-D)
 * in @xen_run_dir, only if the domain's claim is ours (taken if stale). */
void libdm__rundir_remove_xen_sockets(libdm__rundir *rd, const char *xen_run_dir,
                                      uint32_t domid);

/* Removes the taps @nics names (libdm__devices_cleanup()): for a xen DM
 * (vifD.N-emu, per domain) only if the domain's claim is ours. */
void libdm__rundir_remove_taps(libdm__rundir *rd, libdm_ctx *ctx, const char *profile,
                               uint32_t domid, const char *nics);

/* Puts the monitor at libxl's path for domain @domid, in @xen_run_dir
 * (created 0700 if missing and @create; refused if a symlink, not ours or
 * writable by others). The full path is returned in *ret_path. */
int libdm__rundir_use_xen_socket(libdm__rundir *rd, const char *xen_run_dir, uint32_t domid,
                                 bool create, char **ret_path, char **ret_why);

/* A listening socket at qmp.sock (non-blocking: see dm.c) and a client
 * already connected to it. */
int libdm__rundir_make_socket(libdm__rundir *rd, int *ret_listen, int *ret_client);
/* Creates qemu.log (truncated), O_APPEND, for writing. */
int libdm__rundir_make_log(libdm__rundir *rd, int *ret_fd);
/* The path to connect to qmp.sock through the directory's fd, after
 * checking it is a socket of ours (not a link): -ELOOP for a symlink,
 * -EPERM for anything else planted. */
int libdm__rundir_socket_path(libdm__rundir *rd, char **ret_path, char **ret_why);

/* Takes monitor.lock without waiting: 0, or -EAGAIN with *ret_pid and
 * *ret_note (malloc'd or NULL) naming the holder. @note is written for
 * others to read (e.g. "migration"). */
int libdm__rundir_lock_monitor(libdm__rundir *rd, const char *note, int *ret_pid,
                               char **ret_note);
void libdm__rundir_unlock_monitor(libdm__rundir *rd);
/* Our monitor.lock descriptor went to the DM's keeper (libdm__keeper_spawn
 * sent it): ours closes, and its copy, the same open file, holds the lock
 * for us until our channel to it closes: one fd less per DM here (issue
 * 19), and nothing for a forked child to inherit. */
void libdm__rundir_lend_monitor(libdm__rundir *rd);
/* Rewrites the note others read while we hold monitor.lock. */
int libdm__rundir_set_monitor_note(libdm__rundir *rd, const char *note);

/* What libdm__rundir_remove() removes. */
typedef enum libdm__rd_remove {
    LIBDM__RD_REMOVE_MADE,      /* only what this object created */
    LIBDM__RD_REMOVE_LEFTOVERS, /* a dead predecessor's socket and log: the
                                 * claim and the directory stay */
    LIBDM__RD_REMOVE_ALL,       /* everything, then the directory if empty */
} libdm__rd_remove;

/* Removes files through the directory fd; never follows a path. */
void libdm__rundir_remove(libdm__rundir *rd, libdm__rd_remove what);
/* Removes the empty directory @name inside the run directory (through its
 * fd: e.g. the chroot libdm made there for a restricted plain DM). */
void libdm__rundir_remove_subdir(libdm__rundir *rd, const char *name);
/* libdm__rundir_remove(rd, LIBDM__RD_REMOVE_ALL) cut into steps of one or
 * two file operations, for the loop (issue 19): call with *@step 0, then
 * again while it returns 1; 0 once the directory is gone (or left, not
 * empty). Step LIBDM__RD_STEP_CLAIM removes owner.lock: the claim ends
 * there; the steps before it remove the DM's other files. */
#define LIBDM__RD_STEP_CLAIM 3
int libdm__rundir_remove_step(libdm__rundir *rd, unsigned *step);
/* "<root>/<name>/<file>" (malloc'd). */
char *libdm__rundir_file(const libdm__rundir *rd, const char *file);
libdm__rundir *libdm__rundir_free(libdm__rundir *rd);

/* A process's command line, printable, at most 200 bytes (malloc'd). */
char *libdm__proc_cmdline(int pid);

/* ---- what the run root proves without a record (rundir-scan.c) ---- */
/* The names of the run directories under @root (a valid name, a
 * directory with owner.lock): with a record or without (a starter killed between its claim
 * and its first record). Sorted, NULL-terminated, @*ret_count of them;
 * free with libdm__store_names_free(). */
int libdm__rundir_list(const char *root, char ***ret_names, size_t *ret_count);
/* Whether the name's claim (owner.lock) is held: 1 (*ret_pid: the holder as
 * the kernel proves it, the keeper's record lock; 0 if unproven, e.g. a
 * starter), 0 free, -errno. Reads no file the DM or a user could forge. */
int libdm__rundir_claim_holder(libdm__rundir *rd, int *ret_pid);
/* The domain the claim holds (<root>/.domid-D.lock is our owner.lock's
 * inode), 0 if none. */
uint32_t libdm__rundir_claimed_domid(const libdm__rundir *rd);
/* Sends @sig to the claim's holder, proven by its lock (pidfd opened while
 * it held it: never a pid read from a file). -ESRCH nobody holds it,
 * -ENOLCK held by a process that cannot be proven (a starter), -EAGAIN the
 * holder changed meanwhile. */
int libdm__rundir_signal_holder(libdm__rundir *rd, int sig);
/* The keeper's proof of holding @rd's claim: a POSIX write lock on
 * owner.lock (F_GETLK names its holder's pid; released only when the
 * keeper exits or closes owner.lock). */
int libdm__rundir_mark_holder(libdm__rundir *rd);

/* ---- private to rundir*.c (rundir-lock.c) ---- */
void libdm__rd_why(char **ret_why, const char *fmt, ...) LIBDM__PRINTF(2, 3);
const char *libdm__rd_dir_problem(int r);
/* Whether @dfd is still the directory named @name in @root_fd. */
bool libdm__rd_still_named(int root_fd, const char *name, int dfd);
/* Whether @file in @root_fd is the inode @fd holds. */
bool libdm__rd_names_fd(int root_fd, const char *file, int fd);
/* Opens @file in @dfd: a regular file of ours, never a link. */
int libdm__rd_open_lock(int dfd, const char *file, bool create, int *ret_fd);
/* An exclusive flock on @file without waiting, on the inode still named
 * @file: 0, -EAGAIN (held), -errno. */
int libdm__rd_lock(int dfd, const char *file, int *ret_fd);
void libdm__rd_write_holder_pid(int fd, int pid, const char *note);
void libdm__rd_write_holder(int fd, const char *note);
/* The holder a lock file names (its own word): pid (0 if unreadable), note. */
void libdm__rd_read_holder(int dfd, const char *file, int *ret_pid, char **ret_note);
int libdm__rd_flock_holder(int dfd, const char *file);

#endif
