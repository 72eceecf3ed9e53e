/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device models: start paused, readiness by QMP alone, guarded resume,
 * escalating stop, records, re-attach.
 *
 * DO NOT TRUST QEMU: everything it says arrives through the bounded QMP
 * engine, every operation has a deadline, and a DM that stops answering is
 * marked BROKEN yet can still be stopped (by signals through its pidfd).
 *
 * One operation (start, resume, stop) runs at a time on a DM; its callback is
 * always deferred. DM states, and who moves them:
 *   SPAWNING    -> NEGOTIATING      QMP greeting seen
 *   NEGOTIATING -> PAUSED|INCOMING  query-status: prelaunch/paused | inmigrate
 *   INCOMING    -> PAUSED           incoming migration confirmed completed
 *   PAUSED     <-> RUNNING          cont / stop, or the RESUME / STOP events
 *   any live    -> BROKEN           a monitor deadline passed, or the monitor broke
 *   any         -> STOPPING -> DEAD stop, or the process ended
 */

#include "dm-private.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *dm_state_names[] = {
    [LIBDM_DM_SPAWNING] = "spawning", [LIBDM_DM_NEGOTIATING] = "negotiating",
    [LIBDM_DM_PAUSED] = "paused",     [LIBDM_DM_INCOMING] = "incoming",
    [LIBDM_DM_RUNNING] = "running",   [LIBDM_DM_STOPPING] = "stopping",
    [LIBDM_DM_DEAD] = "dead",         [LIBDM_DM_BROKEN] = "broken",
};

const char *libdm_dm_state_to_string(libdm_dm_state s)
{
    return (unsigned)s < LIBDM__ARRAY_SIZE(dm_state_names) ? dm_state_names[s] : "invalid";
}

/* ---- notices: state changes for the host's callback, always deferred ---- */

static void drop_notices(libdm_dm *dm)
{
    while (dm->notice_head) {
        notice *n = dm->notice_head;

        dm->notice_head = n->next;
        free(n->cause);
        free(n);
    }
    dm->notice_tail = &dm->notice_head;
}

/* Whether @dm's callbacks must wait: a blocking call for another object
 * runs. @t then runs when it ends. */
static bool must_postpone(libdm_dm *dm, libdm__timer *t)
{
    if (!libdm__blocking_other(dm->ctx, dm))
        return false;
    libdm__postpone(dm->ctx, t);
    return true;
}

/* One notice per run, like completions: the callback may release the DM.
 * A state change waits out any blocking call, the DM's own included (as
 * sd-bus runs no callback inside sd_bus_call): a host's event callback
 * never runs inside a call it made. */
static void notice_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    notice *n = dm->notice_head;

    if (!n)
        return;
    if (libdm__blocking_other(ctx, NULL)) {
        libdm__postpone(ctx, t);
        return;
    }
    dm->notice_head = n->next;
    if (!dm->notice_head)
        dm->notice_tail = &dm->notice_head;
    else
        (void)libdm__defer(ctx, t);
    n->ev.cause = n->cause;
    if (n->ev.new_state == LIBDM_DM_DEAD) {
        n->ev.exit_status = dm->exited ? dm->exit_status : -1;
        n->ev.ended_by = dm->exited ? dm->ended_by : LIBDM_END_UNKNOWN;
        n->ev.exit_code = dm->exited ? libdm__status_exit_code(dm->exit_status) : -1;
        n->ev.term_signal = dm->exited ? libdm__status_signal(dm->exit_status) : 0;
        n->log_tail = dm->log_tail ? strdup(dm->log_tail) : NULL;
        n->ev.log_tail = n->log_tail;
    }
    if (dm->event_cb)
        dm->event_cb(dm, &n->ev, dm->event_user);
    free(n->log_tail);
    free(n->cause);
    free(n);
}

static void notify(libdm_dm *dm, libdm_dm_state from, libdm_dm_state to)
{
    notice *n;

    if (!dm->event_cb)
        return;
    n = calloc(1, sizeof(*n));
    if (!n) {
        LIBDM__WARN(dm->ctx, "%s: out of memory: a state change is not reported", dm->name);
        return;
    }
    n->ev = (libdm_dm_event){ .old_state = from, .new_state = to, .exit_status = -1 };
    /* A stop that went as asked has no cause; anything else says why. */
    if ((to == LIBDM_DM_DEAD && !(dm->op && dm->op->ops->ends_dm)) || to == LIBDM_DM_BROKEN)
        n->cause = dm->last_error ? strdup(dm->last_error) : NULL;
    *dm->notice_tail = n;
    dm->notice_tail = &n->next;
    (void)libdm__defer(dm->ctx, &dm->notice_timer);
}

int libdm_dm_set_event_callback(libdm_dm *dm, libdm_dm_event_fn *fn, void *userdata)
{
    if (!dm)
        return -EINVAL;
    dm->event_cb = fn;
    dm->event_user = userdata;
    if (!fn)
        drop_notices(dm);
    return 0;
}

static bool dm_transition_allowed(libdm_dm_state from, libdm_dm_state to)
{
    if (from == LIBDM_DM_DEAD)
        return false;
    switch (to) {
    case LIBDM_DM_NEGOTIATING:
        return from == LIBDM_DM_SPAWNING;
    case LIBDM_DM_PAUSED:
    case LIBDM_DM_INCOMING:
    case LIBDM_DM_RUNNING:
        return from != LIBDM_DM_STOPPING && from != LIBDM_DM_SPAWNING;
    case LIBDM_DM_BROKEN:
        return from != LIBDM_DM_STOPPING;
    case LIBDM_DM_STOPPING:
    case LIBDM_DM_DEAD:
        return true;
    case LIBDM_DM_SPAWNING:
        return false;
    }
    return false;
}

void libdm__dm_set_state(libdm_dm *dm, libdm_dm_state to)
{
    if (dm->state == to)
        return;
    if (!dm_transition_allowed(dm->state, to)) {
        LIBDM__DEBUG(dm->ctx, "%s: state %s -> %s not taken", dm->name,
                     libdm_dm_state_to_string(dm->state), libdm_dm_state_to_string(to));
        return;
    }
    LIBDM__DEBUG(dm->ctx, "%s: %s -> %s", dm->name, libdm_dm_state_to_string(dm->state),
                 libdm_dm_state_to_string(to));
    notify(dm, dm->state, to);
    dm->state = to;
}

/* ---- records and files ---- */

int libdm__dm_store(libdm_dm *dm, libdm__store **ret)
{
    return libdm__ctx_store(dm->ctx, ret);
}

static void fill_record(const libdm_dm *dm, libdm__record *rec)
{
    libdm__record_init(rec);
    rec->name = dm->name;
    rec->domid = dm->domid;
    rec->pid = dm->pid;
    rec->pid_start = dm->pid_start;
    rec->keeper_pid = dm->keeper_pid;
    rec->keeper_start = dm->keeper_start;
    rec->qmp_socket = dm->qmp_path;
    rec->dir = dm->dir;
    rec->profile = dm->profile;
    rec->machine = dm->machine;
    rec->memory_mb = dm->memory_mb;
    rec->confinement = dm->confinement;
    rec->nics = dm->nics;
    rec->state = (char *)libdm_dm_state_to_string(dm->state);
    rec->created_ms = dm->created_ms;
    rec->exit_status = -1;
}

int libdm__dm_write_record(libdm_dm *dm)
{
    libdm__store *store;
    libdm__record rec;
    int r = libdm__dm_store(dm, &store);

    if (r < 0)
        return r;
    fill_record(dm, &rec);
    r = libdm__store_put(store, &rec);
    if (r < 0 && r != -EAGAIN) /* -EAGAIN: the caller retries */
        libdm__dm_error(dm, "cannot record the device model: %s", strerror(-r));
    return r;
}

bool libdm__dm_store_retry(libdm_dm *dm, libdm__timer *t, int r)
{
    uint64_t now = libdm_now_ms();

    if (r != -EAGAIN) {
        dm->store_wait_since = 0;
        return false;
    }
    if (!dm->store_wait_since)
        dm->store_wait_since = now;
    if (now - dm->store_wait_since >= DM_STORE_RETRY_MS) {
        dm->store_wait_since = 0;
        libdm__dm_error(dm, "its record stayed locked by another writer for %d ms",
                        DM_STORE_RETRY_MS);
        return false;
    }
    (void)libdm__timer_arm(dm->ctx, t, now + 1);
    return true;
}

static void record_retry_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    (void)libdm__dm_record_state(user);
}

/* Records the current state. A failed write is retried once: the record
 * must never silently say something else than the DM does. */
int libdm__dm_record_state(libdm_dm *dm)
{
    libdm__store *store;
    int r = libdm__dm_store(dm, &store);

    for (int attempt = 0; r >= 0 && attempt < 2; attempt++) {
        r = libdm__store_set_state(store, dm->name, libdm_dm_state_to_string(dm->state), -1);
        if (r >= 0 || r == -ENOENT) {
            dm->store_wait_since = 0;
            return r;
        }
        if (r == -EAGAIN)
            break;
    }
    /* Another writer holds the record: the loop tries again (the state it
     * then writes is the DM's latest). */
    if (libdm__dm_store_retry(dm, &dm->record_retry, r))
        return 0;
    libdm__dm_error(dm, "the device model is %s but its record could not be updated: %s",
             libdm_dm_state_to_string(dm->state), strerror(-r));
    return r;
}

/* ---- operations ---- */

/* Runs the callbacks of finished operations. One at a time: a callback may
 * start another operation, or release the DM (then the rest are dropped). */
static void op_done_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    completion *c = dm->done_head;

    if (!c || must_postpone(dm, t))
        return;
    dm->done_head = c->next;
    if (!dm->done_head)
        dm->done_tail = &dm->done_head;
    else
        (void)libdm__defer(ctx, t);
    if (c->cb)
        c->cb(dm, c->status, c->user);
    free(c);
}

/* The DM is released with callbacks still to run: they never will, and
 * the state an operation kept for its callback is freed with them. */
static void drop_completions(libdm_dm *dm)
{
    while (dm->done_head) {
        completion *c = dm->done_head;
        dm->done_head = c->next;
        if (c->destroy)
            c->destroy(c->user);
        free(c);
    }
    dm->done_tail = &dm->done_head;
}

/* Detaches and frees the operation: its timers and its monitor call go
 * with it. The caller has taken its callback (or drops it). */
static void op_free(libdm_dm *dm, libdm__op *op)
{
    dm->op = NULL;
    libdm__timer_disarm(dm->ctx, &op->deadline);
    libdm__timer_disarm(dm->ctx, &op->tick);
    op->call = libdm_qmp_slot_free(op->call);
    if (op->ops->free)
        op->ops->free(op);
    free(op);
    libdm__dm_queue_kick(dm);
}

/* Ends the current operation; its callback runs from the loop, never from
 * the call that ended it. */
void libdm__dm_op_finish(libdm_dm *dm, int status)
{
    libdm__op *op = dm->op;

    if (!op)
        return;
    libdm__dm_complete(dm, op->cb, op->user, op->destroy, status, 0);
    op_free(dm, op);
}

void libdm__dm_op_discard(libdm_dm *dm)
{
    if (dm->op)
        op_free(dm, dm->op);
}

/* The operation's deadline: its own handler, or the core's. */
static void op_deadline_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    (void)ctx, (void)t;
    if (dm->op->ops->deadline) {
        dm->op->ops->deadline(dm->op);
        return;
    }
    libdm__dm_error(dm, "%s did not complete before its deadline", dm->op->ops->name);
    libdm__dm_op_finish(dm, -ETIMEDOUT);
}

/* Starts an operation of @ops's kind with fresh timers of its own: its
 * deadline runs @ops->deadline if it has not finished in time, @on_tick
 * (if any) when it arms its tick; a heavy kind's tick (@ops->heavy_tick)
 * runs alone. */
int libdm__dm_op_begin(libdm_dm *dm, const libdm__op_ops *ops, size_t size, int timeout_ms,
                       libdm__timer_fn *on_tick, libdm_dm_done_fn *cb, void *user)
{
    libdm__op *op;
    int r;

    if (dm->op)
        return -EBUSY;
    op = calloc(1, size < sizeof(*op) ? sizeof(*op) : size);
    if (!op)
        return -ENOMEM;
    *op = (libdm__op){ .dm = dm, .ops = ops, .cb = cb, .user = user };
    dm->last_side = 0; /* set_op_destroy: this operation now */
    libdm__timer_init(&op->deadline, op_deadline_fire, dm);
    libdm__timer_init(&op->tick, on_tick, dm);
    /* After its init (which clears it): a heavy tick runs only as the
     * first callback of a dispatch (loop.c), so a dispatch runs at most
     * one start step. */
    libdm__timer_set_alone(&op->tick, ops->heavy_tick);
    dm->op = op;
    r = libdm__timer_arm(dm->ctx, &op->deadline,
                         libdm__deadline(timeout_ms > 0 ? timeout_ms : dm->timeout_ms));
    if (r < 0)
        op_free(dm, op);
    return r;
}

/* Whether @status says the monitor connection failed (reset, closed...):
 * most often the DM died, its exit not reported yet. */
static bool is_monitor_failure(int status)
{
    return status == -ECONNRESET || status == -EPIPE || status == -ENOTCONN ||
           status == -ECONNABORTED || status == -ESHUTDOWN;
}

static void exit_wait_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    (void)ctx, (void)t;
    libdm__dm_op_finish(dm, libdm__dm_exited(dm) ? -ESRCH : dm->op->status);
}

/* The operation's call failed with @status. A failed monitor is most often
 * a DM that died, the socket resetting before its exit is reported: the
 * operation then waits a moment, and ends -ESRCH when the exit shows
 * (libdm__dm_ended() ends it at once) or with @status if it does not. */
void libdm__dm_op_fail(libdm_dm *dm, int status)
{
    libdm__op *op = dm->op;

    if (!op)
        return;
    if (!is_monitor_failure(status) || libdm__dm_exited(dm)) {
        libdm__dm_op_finish(dm, is_monitor_failure(status) ? -ESRCH : status);
        return;
    }
    op->status = status;
    libdm__timer_disarm(dm->ctx, &op->tick);
    libdm__timer_init(&op->tick, exit_wait_fire, dm);
    (void)libdm__timer_arm(dm->ctx, &op->tick, libdm_now_ms() + DM_EXIT_SHOW_MS);
}

/* Sends @cmd as the current operation's call (one at a time). */
int libdm__dm_call(libdm_dm *dm, const char *cmd, const libdm_json *args, libdm_qmp_reply_fn *cb)
{
    return libdm__dm_call_fd(dm, cmd, args, -1, cb);
}

int libdm__dm_call_fd(libdm_dm *dm, const char *cmd, const libdm_json *args, int fd,
                      libdm_qmp_reply_fn *cb)
{
    if (!dm->op)
        return -ECANCELED;
    dm->op->call = libdm_qmp_slot_free(dm->op->call);
    if (!dm->qmp || libdm_qmp_get_state(dm->qmp) >= LIBDM_QMP_DRAINING)
        return -ENOTCONN;
    return libdm__qmp_call_async_internal_fd(dm->qmp, cmd, args, fd, dm->timeout_ms, cb, dm,
                                             &dm->op->call);
}

/* A deadline passed on the monitor: QEMU is alive but not answering. */
static void monitor_failed(libdm_dm *dm, int status, const char *what)
{
    if (status == -ETIMEDOUT) {
        libdm__dm_error(dm, "the monitor did not answer %s before its deadline", what);
        libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
        libdm__dm_record_state(dm);
    } else if (status == -EREMOTEIO) {
        libdm__dm_error(dm, "%s failed: %s: %s", what,
                 libdm_qmp_error_class(dm->qmp) ? libdm_qmp_error_class(dm->qmp) : "?",
                 libdm_qmp_error_desc(dm->qmp) ? libdm_qmp_error_desc(dm->qmp) : "?");
    } else {
        libdm__dm_error(dm, "%s failed: %s", what, strerror(-status));
    }
}

/* Error text of a failed reply; keeps class and desc on the connection. */
void libdm__dm_reply_error(libdm_dm *dm, const libdm_qmp_reply *r, const char *what)
{
    if (r->status == -EREMOTEIO)
        libdm__dm_error(dm, "%s failed: %s: %s", what, r->error_class ? r->error_class : "?",
                 r->error_desc ? r->error_desc : "?");
    else
        monitor_failed(dm, r->status, what);
}

/* ---- the end of the process ---- */

/* ---- QMP events and state ---- */

static void on_event(libdm_qmp *q, const char *name, const libdm_json *data, void *user)
{
    libdm_dm *dm = user;

    if (!strcmp(name, "RESUME")) {
        libdm__dm_set_runstate(dm, "running");
        libdm__dm_set_state(dm, LIBDM_DM_RUNNING);
    } else if (!strcmp(name, "STOP")) {
        libdm__dm_set_runstate(dm, "paused");
        if (dm->state == LIBDM_DM_RUNNING)
            libdm__dm_set_state(dm, LIBDM_DM_PAUSED);
    } else if (!strcmp(name, "MIGRATION")) {
        const char *st = libdm__json_get_str(data, "status");
        char *copy = st ? strdup(st) : NULL;
        if (copy) {
            free(dm->migration_event);
            dm->migration_event = copy;
            if (dm->op && dm->op->ops->monitor_event)
                dm->op->ops->monitor_event(dm->op);
        }
    }
    /* The host's subscriptions: on every connection the handle gets. */
    libdm__dm_subs_event(dm, name, data);
}

static void on_qmp_state(libdm_qmp *q, libdm_qmp_state s, int err, void *user)
{
    libdm_dm *dm = user;

    if (s == LIBDM_QMP_NEGOTIATING)
        libdm__dm_set_state(dm, LIBDM_DM_NEGOTIATING);
    if (dm->op && dm->op->ops->monitor_state && dm->op->ops->monitor_state(dm->op, s, err))
        return;
    if (s != LIBDM_QMP_BROKEN || dm->exited)
        return;
    /* The cause BROKEN carries; and a DM whose monitor reset because it
     * died goes DEAD, not BROKEN then DEAD: its exit gets a moment to show. */
    if (!dm->op || !dm->op->said)
        libdm__dm_error(dm, "the monitor failed: %s",
                        libdm_qmp_last_error(q) ? libdm_qmp_last_error(q)
                                                : strerror(err < 0 ? -err : ECONNRESET));
    if (err != -ETIMEDOUT && !dm->pid_gone && (dm->keeper || dm->pidfd >= 0)) {
        (void)libdm__timer_arm(dm->ctx, &dm->broken_grace, libdm__deadline(DM_EXIT_SHOW_MS));
        return;
    }
    libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
}

static void broken_grace_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (!dm->exited)
        libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
}

int libdm__dm_attach_qmp(libdm_dm *dm, libdm_qmp *q)
{
    int r;

    dm->qmp = q;
    libdm__qmp_set_log_prefix(q, dm->name);
    /* The host's own calls and listeners on it are the DM's: held back
     * while a blocking call for another object runs (libdm__wait_for). */
    libdm__qmp_set_owner(q, dm);
    r = libdm_qmp_set_state_callback(q, on_qmp_state, dm);
    if (r >= 0)
        r = libdm__qmp_add_internal_listener(q, on_event, dm);
    return r;
}

void libdm__dm_close_qmp(libdm_dm *dm)
{
    libdm_qmp *q = dm->qmp;

    if (!q)
        return;
    dm->qmp = NULL;
    if (dm->op) {
        dm->op->call = libdm_qmp_slot_free(dm->op->call);
    }
    libdm__dm_side_queries_end(dm, -ENOTCONN);
    (void)libdm_qmp_set_state_callback(q, NULL, NULL);
    /* The DM may be freed while the connection drains: an event arriving
     * meanwhile must not reach it (a use after free, found by
     * test-lib-crashpoints under ASan). */
    libdm__qmp_drop_internal_listeners(q);
    /* Drained in the background, bounded by the DM's own deadline. */
    if (libdm_qmp_close_async(q, dm->timeout_ms, NULL, NULL) < 0)
        LIBDM__ERROR(dm->ctx, "%s: cannot close the monitor", dm->name);
}

libdm_dm *libdm__dm_alloc(libdm_ctx *ctx)
{
    libdm_dm *dm = calloc(1, sizeof(*dm));

    if (!dm)
        return NULL;
    dm->ctx = ctx;
    dm->pidfd = -1;
    dm->keeper_pidfd = -1;
    dm->exit_status = -1;
    dm->timeout_ms = 10000;
    libdm__timer_init(&dm->op_done, op_done_fire, dm);
    libdm__timer_init(&dm->queue_timer, libdm__dm_queue_fire, dm);
    libdm__timer_init(&dm->exit_poll, NULL, dm); /* dm-end.c sets it */
    libdm__timer_init(&dm->notice_timer, notice_fire, dm);
    libdm__timer_init(&dm->broken_grace, broken_grace_fire, dm);
    libdm__timer_init(&dm->record_retry, record_retry_fire, dm);
    dm->done_tail = &dm->done_head;
    dm->notice_tail = &dm->notice_head;
    libdm__dm_subs_init(dm);
    ctx->free_dms = libdm__dm_detach_all;
    dm->ctx_next = ctx->dms;
    if (ctx->dms)
        ctx->dms->ctx_prev = dm;
    ctx->dms = dm;
    return dm;
}

/* Everything of the handle that involves its context: its operation (the
 * userdata's destroy runs), timers, monitor, keeper channel, watches. What
 * runs keeps running (recorded, attachable); a start under autokill ends. */
/* Attached to a DM whose keeper this process started (through a context
 * since freed): the keeper is our child, reaped by whoever follows it to
 * its end, or it would stay a zombie. Others' keepers are only closed. */
void libdm__dm_release_keeper_pidfd(libdm_ctx *ctx, int *pidfd)
{
    siginfo_t si = { 0 };

    if (*pidfd < 0)
        return;
    if (waitid((idtype_t)P_PIDFD, (id_t)*pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0)
        (void)libdm__reap_later(ctx, *pidfd, false); /* our child, still running */
    else
        libdm__close(pidfd);
    *pidfd = -1;
}

static void dm_detach(libdm_dm *dm)
{
    libdm_ctx *ctx = dm->ctx;

    if (!ctx)
        return;
    if (dm->ctx_prev)
        dm->ctx_prev->ctx_next = dm->ctx_next;
    else
        ctx->dms = dm->ctx_next;
    if (dm->ctx_next)
        dm->ctx_next->ctx_prev = dm->ctx_prev;
    dm->ctx_prev = dm->ctx_next = NULL;
    if (ctx->blocking_for == dm)
        ctx->blocking_for = NULL;
    if (dm->op && dm->op->ops->release)
        dm->op->ops->release(dm->op);
    if (dm->op) {
        /* Released mid-operation: its callback never runs. */
        if (dm->op->destroy)
            dm->op->destroy(dm->op->user);
        libdm__dm_op_discard(dm);
    }
    libdm__timer_disarm(dm->ctx, &dm->op_done);
    libdm__timer_disarm(dm->ctx, &dm->exit_poll);
    libdm__timer_disarm(dm->ctx, &dm->notice_timer);
    libdm__timer_disarm(dm->ctx, &dm->broken_grace);
    libdm__timer_disarm(dm->ctx, &dm->record_retry);
    libdm__dm_side_queries_drop(dm);
    libdm__dm_queue_drop(dm);
    libdm__dm_subs_detach(dm);
    drop_completions(dm);
    drop_notices(dm);
    libdm__dm_close_qmp(dm);
    /* Before the channel closes: the keeper lets go of a lent monitor.lock
     * when it reads that, and the next holder writes its own note. */
    if (dm->rd)
        libdm__rundir_unlock_monitor(dm->rd);
    libdm__keeper_free(dm->keeper);
    dm->keeper = NULL;
    dm->rd = libdm__rundir_free(dm->rd);
    libdm__watch_del(dm->pidfd_watch);
    dm->pidfd_watch = NULL;
    libdm__close(&dm->pidfd);
    libdm__watch_del(dm->keeper_watch);
    dm->keeper_watch = NULL;
    libdm__dm_release_keeper_pidfd(ctx, &dm->keeper_pidfd);
    dm->ctx = NULL;
}

void libdm__dm_detach_all(libdm_ctx *ctx)
{
    while (ctx->dms) {
        libdm_dm *dm = ctx->dms;

        LIBDM__DEBUG(ctx, "%s: context freed with the handle held: released", dm->name);
        dm_detach(dm);
    }
}

void libdm__dm_free(libdm_dm *dm)
{
    dm_detach(dm);
    free(dm->name);
    free(dm->profile);
    free(dm->machine);
    free(dm->confinement);
    free(dm->nics);
    free(dm->dir);
    free(dm->qmp_path);
    free(dm->log_path);
    free(dm->runstate);
    libdm_json_free(dm->devices);
    free(dm->migration_event);
    free(dm->last_error);
    free(dm->log_tail);
    free(dm);
}

/* Whether a record's DM process is alive (pid and start time match). */
bool libdm__dm_record_alive(const libdm__record *rec)
{
    return rec->pid > 0 && libdm__proc_start_time(rec->pid) == rec->pid_start;
}

/* The DM's directory, log and monitor paths. The xen profile's monitor is
 * at libxl's path, where xl and libxl's own QMP client look for it. */
int libdm__dm_set_paths(libdm_dm *dm, bool create)
{
    char *why = NULL;
    int r = 0;

    dm->dir = strdup(dm->rd->path);
    dm->log_path = libdm__rundir_file(dm->rd, LIBDM__RD_LOG);
    if (!strcmp(dm->profile, "xen") && dm->domid > 0)
        r = libdm__rundir_use_xen_socket(dm->rd, LIBDM__XEN_RUN_DIR, dm->domid, create,
                                         &dm->qmp_path, &why);
    else
        dm->qmp_path = libdm__rundir_file(dm->rd, LIBDM__RD_SOCK);
    if (r < 0) {
        libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    return dm->dir && dm->qmp_path && dm->log_path ? 0 : -ENOMEM;
}

bool libdm__dm_usable(libdm_dm *dm)
{
    if (!dm->ctx)
        return false; /* its context was freed */
    if (dm->exited || dm->state == LIBDM_DM_DEAD) {
        libdm__dm_error(dm, "the device model is not running");
        return false;
    }
    if (!dm->qmp || libdm_qmp_get_state(dm->qmp) != LIBDM_QMP_READY) {
        if (dm->state == LIBDM_DM_BROKEN && dm->last_error)
            return false; /* keep the cause the monitor broke for */
        libdm__dm_error(dm, "no usable monitor connection (%s)",
                 dm->qmp ? libdm_qmp_state_to_string(libdm_qmp_get_state(dm->qmp)) : "none");
        return false;
    }
    return true;
}

void libdm__dm_sync_done_cb(libdm_dm *dm, int status, void *user)
{
    sync_op *s = user;

    s->done = true;
    s->status = status;
}

static bool sync_is_done(void *arg)
{
    return ((sync_op *)arg)->done;
}

/* Every operation has its own deadline timer, which bounds this wait.
 * While it runs, other DMs' completions and notices are held back: a host
 * never sees a callback for one object inside a blocking call it made for
 * another. They are delivered from the loop once this call returns. */
int libdm__dm_sync_wait(libdm_dm *dm, sync_op *s)
{
    libdm_ctx *ctx = dm->ctx;
    int r = libdm__wait_for(ctx, dm, sync_is_done, s, UINT64_MAX);

    return r < 0 ? r : s->status;
}

int libdm_dm_set_op_destroy(libdm_dm *dm, libdm_destroy_fn *fn)
{
    completion *last;

    if (!dm)
        return -EINVAL;
    if (dm->last_side) /* a query beside the operation (dm-query.c) */
        return libdm__dm_side_query_set_destroy(dm, dm->last_side, fn);
    if (dm->op) {
        dm->op->destroy = fn;
        return 0;
    }
    /* Finished already (its callback deferred): the last operation queued
     * (a query that ended beside it since is not it). */
    last = NULL;
    for (completion *c = dm->done_head; c; c = c->next)
        if (!c->side_id)
            last = c;
    if (!last)
        return -ENOENT;
    last->destroy = fn;
    return 0;
}

/* ---- for migrate.c ---- */

bool libdm__dm_exited(const libdm_dm *dm)
{
    return dm->exited || dm->pid_gone;
}

libdm_ctx *libdm__dm_ctx(const libdm_dm *dm)
{
    return dm->ctx;
}
