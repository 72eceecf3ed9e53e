/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Re-attaching to a recorded device model started by any process.
 */
#include "dm-private.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- attach ---- */

/* The attach's own state. */
typedef struct attach_op {
    libdm__op op;
    char *lock_holder;          /* who holds monitor.lock (cmdline) */
    int lock_holder_pid;
} attach_op;

static attach_op *attach_of(const libdm_dm *dm)
{
    return libdm__container_of(dm->op, attach_op, op);
}

static void attach_free(libdm__op *op)
{
    free(libdm__container_of(op, attach_op, op)->lock_holder);
}

static int attach_from_record(libdm_dm *dm, const libdm__record *rec)
{
    dm->name = strdup(rec->name);
    dm->profile = strdup(rec->profile ? rec->profile : "plain");
    dm->domid = rec->domid;
    dm->machine = rec->machine ? strdup(rec->machine) : NULL;
    dm->memory_mb = rec->memory_mb;
    dm->confinement = rec->confinement ? strdup(rec->confinement) : NULL;
    dm->nics = rec->nics ? strdup(rec->nics) : NULL;
    dm->pid = rec->pid;
    dm->pid_start = rec->pid_start;
    dm->keeper_pid = rec->keeper_pid;
    dm->keeper_start = rec->keeper_start;
    dm->created_ms = rec->created_ms;
    /* Recorded as incoming: stays so until libdm itself sees completion. */
    dm->incoming = rec->state && !strcmp(rec->state, "incoming");
    if (!dm->name || !dm->profile)
        return -ENOMEM;
    /* pidfd first, then the start time: if they match, the pidfd is the
     * process the record names, not one that reused its pid. */
    dm->pidfd = rec->pid > 0 ? libdm__pidfd_open(rec->pid) : -ESRCH;
    if (dm->pidfd < 0 || libdm__proc_start_time(rec->pid) != rec->pid_start)
        return -ESRCH;
    /* Its keeper, checked the same way (older records may lack it). */
    dm->keeper_pidfd = rec->keeper_pid > 0 ? libdm__pidfd_open(rec->keeper_pid) : -1;
    if (dm->keeper_pidfd >= 0 && libdm__proc_start_time(rec->keeper_pid) != rec->keeper_start)
        libdm__close(&dm->keeper_pidfd);
    return libdm__watch_add(dm->ctx, dm->pidfd, POLLIN, libdm__dm_on_pidfd, dm, &dm->pidfd_watch);
}

/* The run directory the store's root names for this DM, never the path a
 * record claims: a record is input from other processes. */
static int attach_rundir(libdm_dm *dm, libdm__store *store)
{
    const char *root = libdm__store_run_root(store);
    char *why = NULL;
    int r = root ? libdm__rundir_open(root, dm->name, &dm->rd, &why) : -ENOENT;

    if (r < 0) {
        libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    return libdm__dm_set_paths(dm, false);
}

/* ---- attach, as an operation: lock the monitor, connect, query ----
 *   ATTACH_LOCKING    monitor.lock polled on op_tick (flock has no fd to
 *                     wait on); a migration holding it fails us at once
 *   ATTACH_CONNECTING QMP connect + negotiation (its monitor_state: READY)
 *   ATTACH_QUERYING   query-status decides the state */

/* Alive but its monitor unusable: the handle stays, BROKEN, stoppable
 * through its pidfd. The connection is left to close with the handle (this
 * may run inside the connection's own state callback). */
static void attach_fail(libdm_dm *dm, int status)
{
    dm->broken_errno = status;
    libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
    libdm__dm_op_finish(dm, status);
}

static void attach_on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;

    dm->op->call = libdm_qmp_slot_free(dm->op->call);
    if (r->status < 0) {
        libdm__dm_reply_error(dm, r, "query-status");
        attach_fail(dm, r->status);
        return;
    }
    rs = libdm__json_get_str(r->value, "status");
    if (!rs) {
        libdm__dm_error(dm, "query-status answered without a status");
        attach_fail(dm, -EPROTO);
        return;
    }
    libdm__dm_set_runstate(dm, rs);
    if (!strcmp(rs, "inmigrate"))
        dm->incoming = true;
    libdm__dm_set_state(dm, !strcmp(rs, "running") ? LIBDM_DM_RUNNING
                   : dm->incoming             ? LIBDM_DM_INCOMING
                                              : LIBDM_DM_PAUSED);
    libdm__dm_op_finish(dm, 0);
}

/* The attach's connection is READY. */
static void attach_connected(libdm_dm *dm)
{
    int r = libdm__dm_call(dm, "query-status", NULL, attach_on_status);

    if (r < 0)
        attach_fail(dm, r);
}

static void attach_connect(libdm_dm *dm)
{
    char *why = NULL, *path = NULL;
    libdm_qmp *q;
    int r = libdm__rundir_socket_path(dm->rd, &path, &why);

    if (r < 0) {
        libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        attach_fail(dm, r);
        return;
    }
    r = libdm_qmp_new(dm->ctx, &q);
    if (r >= 0)
        r = libdm__dm_attach_qmp(dm, q);
    /* Connecting retries while the one-deep backlog is full. */
    if (r >= 0)
        r = libdm_qmp_connect(dm->qmp, path, dm->timeout_ms);
    free(path);
    if (r < 0) {
        libdm__dm_error(dm, "cannot connect to the monitor %s: %s", dm->qmp_path, strerror(-r));
        attach_fail(dm, r);
    }
}

/* QEMU serves one monitor client at a time: concurrent users queue on
 * monitor.lock. A migration holds it for long and says so: refused now,
 * never deferred until after the switchover. */
static void attach_lock_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    char *note = NULL, *cmd;
    int pid = 0, r;

    if (libdm__dm_op_kind(dm) != OP_ATTACH)
        return;
    r = libdm__rundir_lock_monitor(dm->rd, NULL, &pid, &note);
    if (r == 0) {
        attach_connect(dm);
    } else if (r == -EAGAIN && !(note && !strcmp(note, "migration"))) {
        (void)libdm__timer_arm(ctx, t, libdm_now_ms() + 20);
        free(attach_of(dm)->lock_holder);
        attach_of(dm)->lock_holder = pid > 0 ? libdm__proc_cmdline(pid) : NULL;
        attach_of(dm)->lock_holder_pid = pid;
    } else if (r == -EAGAIN) {
        cmd = pid > 0 ? libdm__proc_cmdline(pid) : NULL;
        libdm__dm_error(dm, "migration in progress (pid %d, %s)", pid, cmd ? cmd : "?");
        free(cmd);
        attach_fail(dm, -EBUSY);
    } else {
        libdm__dm_error(dm, "cannot lock the monitor: %s", strerror(-r));
        attach_fail(dm, r);
    }
    free(note);
}

static void attach_deadline(libdm__op *op)
{
    libdm_dm *dm = op->dm;

    libdm__timer_disarm(dm->ctx, &op->tick);
    if (!dm->qmp && attach_of(dm)->lock_holder_pid > 0)
        libdm__dm_error(dm, "the monitor is held by another client (pid %d, %s)",
                        attach_of(dm)->lock_holder_pid,
                        attach_of(dm)->lock_holder ? attach_of(dm)->lock_holder : "?");
    else
        libdm__dm_error(dm, "the monitor did not answer before the deadline (%s)",
                 dm->qmp ? libdm_qmp_state_to_string(libdm_qmp_get_state(dm->qmp)) : "not connected");
    attach_fail(dm, -ETIMEDOUT);
}

static bool attach_monitor_state(libdm__op *op, libdm_qmp_state s, int err)
{
    libdm_dm *dm = op->dm;
    libdm_qmp *q = dm->qmp;

    if (s == LIBDM_QMP_READY) {
        attach_connected(dm);
        return true;
    }
    if (s != LIBDM_QMP_BROKEN || dm->exited)
        return false;
    libdm__dm_error(dm, "cannot connect to the monitor %s: %s", dm->qmp_path,
                    q && libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : strerror(-err));
    attach_fail(dm, err < 0 ? err : -ECONNRESET);
    return true;
}

static const libdm__op_ops attach_ops = {
    .kind = OP_ATTACH,
    .name = "attach",
    .deadline = attach_deadline,
    .monitor_state = attach_monitor_state,
    .free = attach_free,
};

static int attach_record(libdm_ctx *ctx, libdm__store *store, const char *name,
                         libdm__record *rec)
{
    int r = libdm__store_get(store, name, rec);

    if (r == -ENOENT)
        LIBDM__ERROR(ctx, "%s: no such device model", name);
    else if (r < 0)
        LIBDM__ERROR(ctx, "%s: its record is unreadable: %s", name, strerror(-r));
    return r;
}

/* The part of attaching that needs no waiting: the record, the pidfds, the
 * run directory, the monitor's path checked. */
static int attach_prepare(libdm_ctx *ctx, const char *name, int timeout_ms, libdm_dm **ret_dm)
{
    libdm__store *store;
    libdm__record rec;
    libdm_dm *dm;
    char *path = NULL;
    int r;

    r = libdm__ctx_store(ctx, &store);
    if (r >= 0)
        r = attach_record(ctx, store, name, &rec);
    if (r < 0)
        return r;
    dm = libdm__dm_alloc(ctx);
    if (!dm) {
        libdm__record_clear(&rec);
        return -ENOMEM;
    }
    dm->state = LIBDM_DM_NEGOTIATING;
    if (timeout_ms > 0)
        dm->timeout_ms = timeout_ms;
    r = attach_from_record(dm, &rec);
    if (r == -ESRCH) {
        char *how = libdm__dm_describe_status(rec.exit_status);
        LIBDM__ERROR(ctx, "%s: device model (pid %d) is gone: it %s", name, rec.pid,
                     how ? how : "ended");
        free(how);
    }
    libdm__record_clear(&rec);
    if (r >= 0)
        r = attach_rundir(dm, store);
    if (r >= 0) {
        char *why = NULL;

        r = libdm__rundir_socket_path(dm->rd, &path, &why);
        if (r < 0)
            libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        free(path);
    }
    *ret_dm = dm;
    return r;
}

/* Re-attach as an operation: @cb gets 0 (ready; the state says running,
 * paused or incoming) or a negative errno with the DM BROKEN (alive, its
 * monitor unusable: stoppable). Errors found without waiting (no record,
 * -ESRCH gone, a planted path) are returned at once and no handle made. */
int libdm_dm_attach_async(libdm_ctx *ctx, const char *name, int timeout_ms,
                          libdm_dm_done_fn *cb, void *userdata, libdm_dm **ret_dm)
{
    libdm_dm *dm = NULL;
    int r;

    if (!ctx || !name || !ret_dm)
        return -EINVAL;
    r = attach_prepare(ctx, name, timeout_ms, &dm);
    if (r >= 0)
        r = libdm__dm_op_begin(dm, &attach_ops, sizeof(attach_op), dm->timeout_ms,
                               attach_lock_tick, cb, userdata);
    if (r < 0) {
        if (dm)
            libdm__dm_free(dm);
        return r;
    }
    attach_lock_tick(ctx, &dm->op->tick, dm);
    *ret_dm = dm;
    return 0;
}

int libdm_dm_attach(libdm_ctx *ctx, const char *name, libdm_dm **ret_dm)
{
    return libdm_dm_attach_timeout(ctx, name, 10000, ret_dm);
}

int libdm_dm_attach_timeout(libdm_ctx *ctx, const char *name, int timeout_ms, libdm_dm **ret_dm)
{
    return libdm_dm_attach_flags(ctx, name, timeout_ms, 0, ret_dm);
}

int libdm_dm_attach_flags(libdm_ctx *ctx, const char *name, int timeout_ms, unsigned flags,
                          libdm_dm **ret_dm)
{
    sync_op s = { 0 };
    libdm_dm *dm = NULL;
    int r;

    if (!ctx || !name || !ret_dm || (flags & ~LIBDM_ATTACH_ANY_MONITOR))
        return -EINVAL;
    if (libdm__dispatch_depth(ctx) > 0)
        return -EDEADLK;
    r = attach_prepare(ctx, name, timeout_ms, &dm);
    if (r >= 0)
        r = libdm__dm_op_begin(dm, &attach_ops, sizeof(attach_op), dm->timeout_ms,
                               attach_lock_tick, libdm__dm_sync_done_cb, &s);
    if (r >= 0) {
        attach_lock_tick(ctx, &dm->op->tick, dm);
        r = libdm__dm_sync_wait(dm, &s);
        /* Alive, monitor unusable: handed over BROKEN, stoppable by
         * signals. Only a migration's hold is an error to a plain attach. */
        if (r < 0 && r != -EBUSY && r != -ESRCH && !libdm__dm_exited(dm))
            r = 0;
    }
    /* The process is alive and its pidfd names exactly the recorded one:
     * whatever is wrong with its directory or monitor, a caller that only
     * wants to end it gets a BROKEN handle. */
    if (r < 0 && r != -ESRCH && r != -ENOMEM && dm && dm->pidfd >= 0 &&
        (flags & LIBDM_ATTACH_ANY_MONITOR)) {
        libdm__dm_close_qmp(dm);
        libdm__dm_op_discard(dm);
        libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
        r = 0;
    }
    if (r < 0) {
        if (dm)
            libdm__dm_free(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}
