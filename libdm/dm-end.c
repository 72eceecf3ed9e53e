/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The end of a device model: its process's end seen (the keeper's word, or
 * for an attached DM its pidfd and the record its keeper writes), said
 * once, handed to the operation in progress (its dm_died), and the cleanup
 * that follows (a stop's, a failed start's) in steps from the loop.
 *
 * Above dm.c (the object, the operation core), below the operations.
 */
#include "dm-private.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- files ---- */

/* The chroot libdm made for a restricted DM: in the run directory (plain,
 * through its fd) or libxl's /var/run/xen/qemu-root-D (xen). */
void libdm__dm_remove_own_chroot(libdm__rundir *rd, const char *profile, uint32_t domid)
{
    if (!rd)
        return;
    libdm__rundir_remove_subdir(rd, LIBDM__PLAIN_ROOT_NAME);
    /* qemu-root-D is per domain: ours only while we hold the domain's claim
     * (never because a record names that domid). */
    if (profile && !strcmp(profile, "xen") && domid > 0 &&
        libdm__rundir_hold_domid(rd, domid, NULL) == 0)
        libdm__restrict_cleanup(profile, domid);
}

/* The last lines of the DM's log, printable, for error messages. */
static char *log_tail(const libdm_dm *dm)
{
    char buf[DM_LOG_TAIL + 1];
    const char *start;
    off_t size;
    ssize_t n;
    int fd;

    if (!dm->log_path)
        return NULL;
    fd = open(dm->log_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    size = lseek(fd, 0, SEEK_END);
    n = pread(fd, buf, DM_LOG_TAIL, size > DM_LOG_TAIL ? size - DM_LOG_TAIL : 0);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = '|';
        else if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] == 0x7f)
            buf[i] = '?';
    /* The log is written by the DM: keep the end only, it is the useful part. */
    start = n > 400 ? buf + n - 400 : buf;
    return strdup(start);
}

char *libdm__dm_describe_status(int status)
{
    if (status < 0)
        return strdup("ended (status unknown)");
    if (WIFEXITED(status))
        return libdm__sprintf("exited with status %d", WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return libdm__sprintf("was killed by signal %d (%s)", WTERMSIG(status),
                              strsignal(WTERMSIG(status)));
    return libdm__sprintf("ended with wait status %d", status);
}

/* ---- the end of the process ---- */

/* How the DM ended, with the end of its log, as its last error: logged
 * once, below ERROR (the host hears of it anyway, through an operation's
 * result or its event callback), at ERROR during a start. */
void libdm__dm_say_end(libdm_dm *dm, int status, bool starting)
{
    char *how = libdm__dm_describe_status(status),
         *tail = dm->log_tail ? strdup(dm->log_tail) : log_tail(dm);

    libdm__dm_error_at(dm, starting ? XTL_ERROR : XTL_INFO, "device model (pid %d) %s%s%s%s",
                       dm->pid, how ? how : "ended", starting ? " during start-up" : "",
                       tail ? "; log: " : "", tail ? tail : "");
    free(how);
    free(tail);
}

bool libdm__dm_crash_signal(int sig)
{
    return sig == SIGSEGV || sig == SIGABRT || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
           sig == SIGSYS || sig == SIGTRAP;
}

/* Who ended it (the structured DEAD cause). */
static libdm_dm_end_by ended_by(const libdm_dm *dm, int status)
{
    if (dm->op && dm->op->ops->ends_dm)
        return LIBDM_END_STOP;
    /* libdm killed it (SIGKILL), or its start failed before QEMU ran. */
    if (dm->op && dm->op->kill_cause != LIBDM_END_NONE &&
        (dm->pid <= 0 || status < 0 || (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)))
        return dm->op->kill_cause;
    if (status < 0)
        return LIBDM_END_UNKNOWN;
    if (WIFEXITED(status))
        return LIBDM_END_SELF;
    if (WIFSIGNALED(status))
        return libdm__dm_crash_signal(WTERMSIG(status)) ? LIBDM_END_SELF : LIBDM_END_EXTERNAL;
    return LIBDM_END_UNKNOWN;
}

void libdm__dm_ended(libdm_dm *dm, int status)
{
    if (dm->exited)
        return;
    dm->exited = true;
    dm->exit_status = status;
    dm->ended_by = ended_by(dm, status);
    libdm__timer_disarm(dm->ctx, &dm->broken_grace);
    free(dm->log_tail);
    dm->log_tail = log_tail(dm);
    libdm__watch_del(dm->pidfd_watch);
    dm->pidfd_watch = NULL;
    libdm__close(&dm->pidfd);
    libdm__watch_del(dm->keeper_watch);
    dm->keeper_watch = NULL;
    libdm__dm_release_keeper_pidfd(dm->ctx, &dm->keeper_pidfd);
    if (dm->op && dm->op->ops->dm_died) {
        dm->op->ops->dm_died(dm->op, status);
        return;
    }
    libdm__dm_say_end(dm, status, false);
    libdm__dm_set_state(dm, LIBDM_DM_DEAD);
    libdm__dm_op_finish(dm, -ESRCH);
    /* DEAD holds no process and no fd, whatever the caller keeps: the
     * monitor drains in the background, the keeper (its control channel
     * closes as it exits) is reaped at once, and a later stop reopens the
     * directory to clean up. */
    libdm__dm_close_qmp(dm);
    dm->rd = libdm__rundir_free(dm->rd);
}

/* The wait status the keeper recorded: >= 0, -1 not yet, -2 no record. */
static int recorded_exit_status(libdm_dm *dm)
{
    libdm__store *store;
    libdm__record rec;
    int status;

    if (libdm__dm_store(dm, &store) < 0 || libdm__store_get(store, dm->name, &rec) < 0)
        return -2;
    status = rec.exit_status;
    libdm__record_clear(&rec);
    return status;
}

/* An attached DM's end: the keeper's record first; without one (its
 * keeper autokilled it and removed the record, or was killed before it
 * wrote), the kernel's, once the keeper reaped it. -1: not known. */
static int attached_exit_status(libdm_dm *dm, int recorded)
{
    return recorded >= 0 ? recorded : libdm__pidfd_exit_status(dm->pidfd);
}

/* Attached DMs: the keeper (the DM's parent, not us) records the wait status
 * a moment after the pidfd says the process ended. Poll for it on a timer,
 * never by sleeping in the loop. */
static void exit_poll_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    int status = recorded_exit_status(dm);
    /* The keeper records the end, then lets go of the name: wait for both,
     * so that the files can be cleaned up under the claim. */
    bool keeper_busy = status == -1 || (dm->rd && libdm__rundir_owner_held(dm->rd, NULL));

    if (keeper_busy && ++dm->exit_polls < DM_EXIT_RECORD_POLLS) {
        (void)libdm__timer_arm(ctx, t, libdm_now_ms() + DM_EXIT_RECORD_POLL_MS);
        return;
    }
    libdm__dm_ended(dm, attached_exit_status(dm, status));
}

/* Attached: the keeper exits once it has recorded the end and let go of
 * the name, which is when the record is final and the files ours to clean. */
static void on_keeper_gone(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm_dm *dm = user;
    int status = recorded_exit_status(dm);

    libdm__watch_del(dm->keeper_watch);
    dm->keeper_watch = NULL;
    libdm__dm_release_keeper_pidfd(ctx, &dm->keeper_pidfd);
    libdm__timer_disarm(ctx, &dm->exit_poll);
    libdm__dm_ended(dm, attached_exit_status(dm, status));
}

static void keeper_wait_expired(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    /* A stopped or hung keeper holds the name (and its DM's zombie): the
     * files could not be cleaned under the claim. The pidfd is this DM's
     * keeper (its start time was checked at attach): end it, then clean
     * (issue 18, item 11). */
    if (!dm->keeper_killed && dm->keeper_pidfd >= 0 &&
        libdm__pidfd_signal(dm->keeper_pidfd, SIGKILL) == 0) {
        LIBDM__WARN(ctx, "%s: its keeper (pid %d) did not exit after the device model: "
                    "killed it", dm->name, dm->keeper_pid);
        dm->keeper_killed = true;
        (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_KILL_WAIT_MS));
        return;
    }
    LIBDM__WARN(ctx, "%s: its keeper did not exit after the device model", dm->name);
    on_keeper_gone(ctx, dm->keeper_pidfd, 0, dm);
}

void libdm__dm_on_pidfd(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm_dm *dm = user;

    libdm__watch_del(dm->pidfd_watch);
    dm->pidfd_watch = NULL;
    dm->pid_gone = true;
    if (dm->keeper_pidfd >= 0 &&
        libdm__watch_add(ctx, dm->keeper_pidfd, POLLIN, on_keeper_gone, dm,
                         &dm->keeper_watch) >= 0) {
        libdm__timer_init(&dm->exit_poll, keeper_wait_expired, dm);
        (void)libdm__timer_arm(ctx, &dm->exit_poll, libdm__deadline(DM_KEEPER_EXIT_WAIT_MS));
        return;
    }
    libdm__timer_init(&dm->exit_poll, exit_poll_fire, dm);
    exit_poll_fire(ctx, &dm->exit_poll, dm);
}


/* ---- the cleanup at a DM's end (a stop's, a failed start's), in steps ---- */

typedef enum {
    CLEAN_OPEN,     /* its run directory, reopened if the handle let it go */
    CLEAN_CLAIM,    /* the name's claim, unless a new owner has it */
    CLEAN_DEVICES,  /* taps (devices-run.c) */
    CLEAN_CHROOT,   /* libdm's own chroot (never a caller's) */
    CLEAN_FILES,    /* socket, log, monitor.lock, config.json (rundir steps before the claim) */
    CLEAN_RECORD,   /* the record: until here `list` shows the DM dead */
    CLEAN_DIR,      /* owner.lock, then the directory (LIBDM__RD_STEP_CLAIM on) */
    CLEAN_DONE,
} clean_step;

static void clean_finish(libdm_dm *dm)
{
    /* DEAD holds no fd; and nothing on disk is ours any more. */
    dm->rd = libdm__rundir_free(dm->rd);
    dm->unclaimed = true;
    libdm__dm_set_state(dm, LIBDM_DM_DEAD);
    libdm__dm_op_finish(dm, dm->op ? dm->op->clean_status : 0);
}

/* One step per dispatch: each one or two file operations (ext4 costs a
 * few hundred microseconds each). */
static void clean_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    libdm__op *op = dm->op;
    libdm__store *store;

    switch ((clean_step)op->clean++) {
    case CLEAN_OPEN:
        if (!dm->rd && libdm__dm_store(dm, &store) >= 0 && libdm__store_run_root(store))
            (void)libdm__rundir_open(libdm__store_run_root(store), dm->name, &dm->rd, NULL);
        break;
    case CLEAN_CLAIM:
        /* Once the keeper exited, another start may own the name already:
         * then nothing there is ours. */
        if (dm->rd && dm->rd->owner_fd < 0 && libdm__rundir_reclaim(dm->rd) < 0) {
            int holder = 0;

            /* ...but if the holder is this DM's own keeper (it would not
             * die), the record and files stay: a stop must not say
             * "stopped" (issue 18, item 11). */
            if (op->ops->ends_dm && dm->keeper_pid > 0 &&
                libdm__rundir_owner_held(dm->rd, &holder) == 1 && holder == dm->keeper_pid) {
                uint64_t now = libdm_now_ms();

                /* The keeper outlives its QEMU by its own cleanup: on a
                 * loaded host that can take a while. Wait (bounded). */
                if (!op->keeper_wait_since)
                    op->keeper_wait_since = now;
                if (now - op->keeper_wait_since < DM_KEEPER_LEAVE_MS &&
                    libdm__timer_arm(ctx, t, now + 10) >= 0) {
                    op->clean = CLEAN_CLAIM;
                    return;
                }
                libdm__dm_error(dm, "the device model ended, but its keeper (pid %d) still "
                                "holds its name: record and files left", holder);
                op->clean_status = -EBUSY;
            }
            op->clean = CLEAN_DONE;
        }
        break;
    case CLEAN_DEVICES:
        /* netdev.c: leftover taps (a xen DM's only under its domain's claim) */
        libdm__rundir_remove_taps(dm->rd, ctx, dm->profile, dm->domid, dm->nics);
        break;
    case CLEAN_CHROOT:
        libdm__dm_remove_own_chroot(dm->rd, dm->profile, dm->domid);
        break;
    case CLEAN_FILES:
        if (dm->rd && libdm__rundir_remove_step(dm->rd, &op->rd_step) &&
            op->rd_step < LIBDM__RD_STEP_CLAIM)
            op->clean = CLEAN_FILES;
        break;
    case CLEAN_RECORD:
        if (libdm__dm_store(dm, &store) >= 0 &&
            libdm__dm_store_retry(dm, t, libdm__store_del(store, dm->name))) {
            op->clean = CLEAN_RECORD; /* another writer holds it: again soon */
            return;
        }
        break;
    case CLEAN_DIR:
        if (dm->rd && libdm__rundir_remove_step(dm->rd, &op->rd_step))
            op->clean = CLEAN_DIR;
        break;
    case CLEAN_DONE:
        clean_finish(dm);
        return;
    }
    (void)libdm__defer(ctx, t);
}

void libdm__dm_clean_then_finish(libdm_dm *dm, int status)
{
    libdm__op *op = dm->op;

    libdm__dm_close_qmp(dm);
    if (!op)
        return;
    op->clean_status = status;
    op->cleaning = true;
    /* A start refused before its keeper ran removed all it made already;
     * the name may be someone else's by now. */
    op->clean = dm->unclaimed ? CLEAN_DONE : CLEAN_OPEN;
    op->rd_step = 0;
    libdm__timer_disarm(dm->ctx, &op->tick);
    libdm__timer_init(&op->tick, clean_tick, dm);
    libdm__timer_set_alone(&op->tick, true);
    (void)libdm__defer(dm->ctx, &op->tick);
}

