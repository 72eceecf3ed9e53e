/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Operations on a running device model: guarded resume (seed 000), pause,
 * query-status, and stop (quit -> SIGTERM -> SIGKILL).
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

/* ---- each operation's own state ---- */

typedef struct resume_op {
    libdm__op op;
    bool keep_paused;           /* Finish with keep_paused: confirm, no cont */
    bool finish;                /* Finish: release autokill before cont */
} resume_op;

typedef enum { STOP_QUIT, STOP_TERM, STOP_KILL } stop_step;

typedef struct stop_op {
    libdm__op op;
    stop_step step;
    bool killed_keeper;         /* the keeper did not act on "kill": killed */
} stop_op;

/* A migration phase (migrate.c): its deadline is the phase's own. */
typedef struct mig_op {
    libdm__op op;
    libdm__timer_fn *on_deadline;
} mig_op;

static resume_op *resume_of(const libdm_dm *dm)
{
    return libdm__container_of(dm->op, resume_op, op);
}

static stop_op *stop_of(const libdm_dm *dm)
{
    return libdm__container_of(dm->op, stop_op, op);
}

/* ---- guarded resume (seed 000) ---- */

/* The head of every reply of these operations: the call is over; a failed
 * one ends the operation with its error. Whether the reply is good. */
static bool reply_ok(libdm_dm *dm, const libdm_qmp_reply *r, const char *what)
{
    dm->op->call = libdm_qmp_slot_free(dm->op->call);
    if (r->status >= 0)
        return true;
    libdm__dm_reply_error(dm, r, what);
    libdm__dm_op_fail(dm, r->status);
    return false;
}

static void resume_query(libdm_dm *dm);

static void resume_on_cont(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;

    if (!reply_ok(dm, r, "cont"))
        return;
    libdm__dm_set_runstate(dm, "running");
    libdm__dm_set_state(dm, LIBDM_DM_RUNNING);
    libdm__dm_record_state(dm);
    libdm__dm_op_finish(dm, 0);
}

static void resume_send_cont(libdm_dm *dm)
{
    int r = libdm__dm_call(dm, "cont", NULL, resume_on_cont);

    if (r < 0) {
        libdm__dm_error(dm, "cannot send cont: %s", strerror(-r));
        libdm__dm_op_finish(dm, r);
    }
}

static void resume_on_migrate(libdm_qmp *q, const libdm_qmp_reply *r_, void *user)
{
    libdm_dm *dm = user;
    const char *st;
    int r;

    if (!reply_ok(dm, r_, "query-migrate"))
        return;
    st = libdm__json_get_str(r_->value, "status");
    switch (libdm__incoming_verdict(dm, st)) {
    case -EIO:
        libdm__dm_op_finish(dm, -EIO);
        return;
    case 1:
        /* Confirmed just now (seed 000's rule): cont at once, or stop here
         * for a Finish that keeps the guest paused. Every step between the
         * completion and cont is guest-visible downtime. */
        libdm__dm_incoming_done(dm, resume_of(dm)->keep_paused);
        /* Finish (seed 002): the destination stops depending on its
         * controller in the same step that makes it the guest's owner,
         * before cont, so that no death of the controller after cont can
         * end a running destination (issue 22, 4 and 5). The message is on
         * the keeper's channel before any EOF of it. */
        if (resume_of(dm)->finish && (r = libdm__dm_set_autokill(dm, false)) < 0) {
            libdm__dm_error(dm, "cannot release the destination from autokill: %s; "
                            "not resumed", strerror(-r));
            libdm__dm_op_finish(dm, r);
            return;
        }
        if (resume_of(dm)->keep_paused)
            libdm__dm_op_finish(dm, 0);
        else
            resume_send_cont(dm);
        return;
    }
    /* Not yet: look again on the MIGRATION event (resume_event)
     * or, as the safety net against a missed event, on a timer; at once if
     * the event came while this look was in flight (it may be older than
     * the completion the event announced). */
    (void)libdm__timer_arm(dm->ctx, &dm->op->tick, libdm_now_ms() +
                           (dm->op->event_pending ? 0 : DM_MIGRATE_POLL_MS));
    dm->op->event_pending = false;
}

static void resume_poll_migrate(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    int r;

    if (libdm__dm_op_kind(dm) != OP_RESUME || dm->op->call)
        return; /* a look is already under way */
    r = libdm__dm_call(dm, "query-migrate", NULL, resume_on_migrate);
    if (r < 0)
        libdm__dm_op_finish(dm, r);
}

/* A MIGRATION event arrived. A resume waiting for the incoming migration
 * looks now rather than at its next tick. */
static void resume_event(libdm__op *op)
{
    libdm_dm *dm = op->dm;

    if (dm->state != LIBDM_DM_INCOMING)
        return;
    if (dm->op->call) {
        dm->op->event_pending = true;
        return;
    }
    libdm__timer_disarm(dm->ctx, &dm->op->tick);
    resume_poll_migrate(dm->ctx, &dm->op->tick, dm);
}

static void resume_on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;

    if (!reply_ok(dm, r, "query-status"))
        return;
    rs = libdm__json_get_str(r->value, "status");
    libdm__dm_set_runstate(dm, rs);
    if (rs && !strcmp(rs, "running")) {
        libdm__dm_set_state(dm, LIBDM_DM_RUNNING);
        libdm__dm_op_finish(dm, 0);
    } else if (rs && (!strcmp(rs, "inmigrate") || dm->incoming)) {
        /* Seed 000: cont now could start a half-loaded guest. Wait for the
         * incoming migration, checking query-migrate on a timer. The
         * runstate alone is not trusted: old QEMU had no "inmigrate" and
         * said "paused" while still loading; libdm knows it asked for
         * -incoming. */
        libdm__dm_set_state(dm, LIBDM_DM_INCOMING);
        resume_poll_migrate(dm->ctx, &dm->op->tick, dm);
    } else if (rs && (!strcmp(rs, "prelaunch") || !strcmp(rs, "paused"))) {
        resume_send_cont(dm);
    } else {
        libdm__dm_error(dm, "cannot resume from runstate '%s'", rs ? rs : "(none)");
        libdm__dm_op_finish(dm, -EBUSY);
    }
}

static void resume_query(libdm_dm *dm)
{
    int r = libdm__dm_call(dm, "query-status", NULL, resume_on_status);

    if (r < 0) {
        libdm__dm_error(dm, "cannot query the runstate: %s", strerror(-r));
        libdm__dm_op_finish(dm, r);
    }
}

static const libdm__op_ops resume_ops = {
    .kind = OP_RESUME,
    .name = "resume",
    .monitor_event = resume_event,
};

/* The resume operation begins (a plain resume, or Finish's). */
static int resume_begin(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata)
{
    if (!dm->ctx)
        return -ESHUTDOWN;
    if (!libdm__dm_usable(dm))
        return dm->exited ? -ESRCH : -ENOTCONN;
    return libdm__dm_op_begin(dm, &resume_ops, sizeof(resume_op), timeout_ms,
                              resume_poll_migrate, cb, userdata);
}

int libdm_dm_resume_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata)
{
    int r = resume_begin(dm, timeout_ms, cb, userdata);

    if (r < 0)
        return r;
    resume_query(dm);   /* only Finish keeps the guest paused (resume_op) */
    return 0;
}

typedef int op_async_fn(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata);

/* The blocking form of @op_async: starts it and waits for its completion. */
static int run_blocking(libdm_dm *dm, op_async_fn *op_async, int timeout_ms)
{
    sync_op s = { 0 };
    int r;

    if (!dm->ctx)
        return -ESHUTDOWN;
    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    r = op_async(dm, timeout_ms, libdm__dm_sync_done_cb, &s);
    return r < 0 ? r : libdm__dm_sync_wait(dm, &s);
}

int libdm_dm_resume(libdm_dm *dm, int timeout_ms)
{
    return run_blocking(dm, libdm_dm_resume_async, timeout_ms);
}

/* ---- pause and query-status: one monitor call each ---- */

static void simple_on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;
    int status = 0;

    if (!reply_ok(dm, r, dm->op->ops->name))
        return;
    if (libdm__dm_op_kind(dm) == OP_PAUSE) {
        libdm__dm_set_runstate(dm, "paused");
        libdm__dm_set_state(dm, LIBDM_DM_PAUSED);
        status = libdm__dm_record_state(dm);
    } else {
        rs = libdm__json_get_str(r->value, "status");
        if (!rs) {
            libdm__dm_error(dm, "query-status answered without a status");
            status = -EPROTO;
        } else {
            libdm__dm_set_runstate(dm, rs);
            if (!strcmp(rs, "running"))
                libdm__dm_set_state(dm, LIBDM_DM_RUNNING);
        }
    }
    libdm__dm_op_finish(dm, status < 0 && status != -ENOENT ? status : 0);
}

/* A monitor that misses a deadline can no longer be trusted. */
static void simple_deadline(libdm__op *op)
{
    libdm_dm *dm = op->dm;

    libdm__dm_error(dm, "%s did not complete before its deadline", op->ops->name);
    libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
    (void)libdm__dm_record_state(dm);
    libdm__dm_op_finish(dm, -ETIMEDOUT);
}

static const libdm__op_ops pause_ops = {
    .kind = OP_PAUSE, .name = "pause", .deadline = simple_deadline,
};

static const libdm__op_ops query_ops = {
    .kind = OP_QUERY, .name = "query-status", .deadline = simple_deadline,
};

static int simple_call_async(libdm_dm *dm, const libdm__op_ops *ops, const char *cmd, int timeout_ms,
                             libdm_dm_done_fn *cb, void *userdata)
{
    int r;

    if (!dm->ctx)
        return -ESHUTDOWN;
    if (!libdm__dm_usable(dm))
        return dm->exited ? -ESRCH : dm->broken_errno < 0 ? dm->broken_errno : -ENOTCONN;
    /* Read-only: beside a running operation, never -EBUSY (dm-query.c). */
    if (dm->op && ops->kind == OP_QUERY)
        return libdm__dm_side_query(dm, timeout_ms, cb, userdata);
    r = libdm__dm_op_begin(dm, ops, sizeof(libdm__op), timeout_ms, NULL, cb, userdata);
    if (r < 0)
        return r;
    r = libdm__dm_call(dm, cmd, NULL, simple_on_reply);
    if (r < 0) {
        libdm__dm_error(dm, "cannot send %s: %s", cmd, strerror(-r));
        libdm__dm_op_discard(dm);
    }
    return r;
}

int libdm_dm_pause_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata)
{
    return dm ? simple_call_async(dm, &pause_ops, "stop", timeout_ms, cb, userdata) : -EINVAL;
}

int libdm_dm_query_status_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb,
                                void *userdata)
{
    return dm ? simple_call_async(dm, &query_ops, "query-status", timeout_ms, cb, userdata)
              : -EINVAL;
}

int libdm_dm_pause(libdm_dm *dm, int timeout_ms)
{
    return run_blocking(dm, libdm_dm_pause_async, timeout_ms);
}

int libdm_dm_query_status(libdm_dm *dm, int timeout_ms, char **ret_runstate)
{
    char *copy;
    int r = run_blocking(dm, libdm_dm_query_status_async, timeout_ms);

    if (r < 0)
        return r;
    copy = dm->runstate ? strdup(dm->runstate) : NULL;
    if (!copy)
        return -ENOMEM;
    *ret_runstate = copy;
    return 0;
}

/* ---- stop: quit -> SIGTERM -> SIGKILL ---- */

static int dm_signal(libdm_dm *dm, int sig)
{
    if (dm->keeper)
        return libdm__keeper_signal(dm->keeper, sig);
    return dm->pidfd >= 0 ? libdm__pidfd_signal(dm->pidfd, sig) : -ESRCH;
}

static void stop_finished(libdm_dm *dm)
{
    /* The files go in steps from the loop (a stop of a DEAD DM removes
     * nothing inside libdm_dm_stop_async()). */
    libdm__dm_clean_then_finish(dm, 0);
}

/* The DM ended as asked: nothing to say. */
static void stop_dm_died(libdm__op *op, int status)
{
    (void)status;
    libdm__dm_set_state(op->dm, LIBDM_DM_DEAD);
    stop_finished(op->dm);
}

/* A monitor failing during a stop is the stop working. */
static bool stop_monitor_state(libdm__op *op, libdm_qmp_state s, int err)
{
    (void)op, (void)err;
    return s == LIBDM_QMP_BROKEN;
}

/* Released while stopping: its keeper exits in a moment, to be reaped. */
static void stop_release(libdm__op *op)
{
    if (op->dm->keeper)
        libdm__keeper_set_ending(op->dm->keeper);
}

static void stop_escalate(libdm__op *op)
{
    libdm_dm *dm = op->dm;
    libdm_ctx *ctx = dm->ctx;
    libdm__timer *t = &op->deadline;

    if (dm->exited || dm->op->cleaning)
        return;
    switch (stop_of(dm)->step) {
    case STOP_QUIT:
        LIBDM__WARN(ctx, "%s: no exit after quit: sending SIGTERM", dm->name);
        stop_of(dm)->step = STOP_TERM;
        (void)dm_signal(dm, SIGTERM);
        (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_TERM_GRACE_MS));
        break;
    case STOP_TERM:
        LIBDM__WARN(ctx, "%s: no exit after SIGTERM: sending SIGKILL", dm->name);
        stop_of(dm)->step = STOP_KILL;
        (void)dm_signal(dm, SIGKILL);
        (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_KILL_WAIT_MS));
        break;
    case STOP_KILL:
        /* The keeper signals QEMU for us: one that does not (stopped,
         * hung) is killed, and QEMU with it (its PID namespace's init, or
         * PDEATHSIG). Its end is then reported as the keeper's. */
        if (dm->keeper && !stop_of(dm)->killed_keeper) {
            LIBDM__WARN(ctx, "%s: no exit after SIGKILL: killing its keeper (pid %d)",
                        dm->name, dm->keeper_pid);
            stop_of(dm)->killed_keeper = true;
            (void)libdm__keeper_kill_keeper(dm->keeper);
            (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_KILL_WAIT_MS));
            break;
        }
        libdm__dm_error(dm, "device model (pid %d) survived SIGKILL", dm->pid);
        libdm__dm_op_finish(dm, -ETIMEDOUT);
        break;
    }
}

static void stop_on_quit(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;

    dm->op->call = libdm_qmp_slot_free(dm->op->call);
    if (r->status < 0 && !dm->exited)
        LIBDM__DEBUG(dm->ctx, "%s: quit: %s", dm->name, strerror(-r->status));
}

static const libdm__op_ops stop_ops = {
    .kind = OP_STOP,
    .name = "stop",
    .ends_dm = true,
    .deadline = stop_escalate,
    .dm_died = stop_dm_died,
    .monitor_state = stop_monitor_state,
    .release = stop_release,
};

int libdm_dm_stop_async(libdm_dm *dm, int force, int timeout_ms, libdm_dm_done_fn *cb,
                        void *userdata)
{
    libdm__op *op;
    int r;

    if (!dm)
        return -EINVAL;
    if (!dm->ctx)
        return -ESHUTDOWN; /* its context was freed: the DM was released */
    if (libdm__dm_op_kind(dm) == OP_STOP)
        return -EALREADY;
    /* Stopping wins over whatever was in progress (a resume waiting for an
     * incoming migration that will never complete, a start): that operation
     * completes with -ECANCELED. A start whose keeper has not run yet only
     * undoes what it made. */
    if (!libdm__dm_start_cancel_unspawned(dm) && dm->op) {
        libdm__dm_error(dm, "%s interrupted by stop", dm->op->ops->name);
        libdm__dm_op_finish(dm, -ECANCELED);
    }
    r = libdm__dm_op_begin(dm, &stop_ops, sizeof(stop_op), timeout_ms, NULL, cb, userdata);
    if (r < 0)
        return r;
    op = dm->op;
    libdm__dm_set_state(dm, LIBDM_DM_STOPPING);
    if (dm->exited) {
        stop_finished(dm);
        return 0;
    }
    stop_of(dm)->step = STOP_QUIT;
    if (force || libdm__dm_call(dm, "quit", NULL, stop_on_quit) < 0) {
        stop_of(dm)->step = force ? STOP_KILL : STOP_TERM;
        (void)dm_signal(dm, force ? SIGKILL : SIGTERM);
        (void)libdm__timer_arm(dm->ctx, &op->deadline,
                               libdm__deadline(force ? DM_KILL_WAIT_MS : DM_TERM_GRACE_MS));
    }
    return 0;
}

int libdm_dm_stop(libdm_dm *dm, int force, int timeout_ms)
{
    sync_op s = { 0 };
    int r;

    if (!dm || !dm->ctx)
        return dm ? -ESHUTDOWN : -EINVAL;
    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    r = libdm_dm_stop_async(dm, force, timeout_ms, libdm__dm_sync_done_cb, &s);
    if (r == -EALREADY)
        return 0;
    return r < 0 ? r : libdm__dm_sync_wait(dm, &s);
}

libdm_dm *libdm_dm_release(libdm_dm *dm)
{
    if (!dm)
        return NULL;
    if (dm->op)
        LIBDM__DEBUG(dm->ctx, "%s: released with an operation in progress", dm->name);
    libdm__dm_free(dm);
    return NULL;
}


/* Finish's wait, the same step as the guarded resume's: until the
 * incoming migration is confirmed completed, then cont at once (or stop
 * there with @keep_paused). */
int libdm__dm_finish_incoming_async(libdm_dm *dm, bool keep_paused, int timeout_ms,
                                    libdm_dm_done_fn *cb, void *userdata)
{
    int r = resume_begin(dm, timeout_ms, cb, userdata);

    if (r < 0)
        return r;
    resume_of(dm)->keep_paused = keep_paused;
    resume_of(dm)->finish = true;
    libdm__dm_set_state(dm, LIBDM_DM_INCOMING);
    resume_poll_migrate(dm->ctx, &dm->op->tick, dm);
    return 0;
}

void libdm__dm_op_set_destroy(libdm_dm *dm, void (*destroy)(void *user))
{
    if (dm->op)
        dm->op->destroy = destroy;
}

/* ---- a migration phase (migrate.c) on the operation core ---- */

int libdm__dm_mig_usable(libdm_dm *dm)
{
    if (libdm__dm_usable(dm))
        return 0;
    return dm->exited ? -ESRCH : dm->broken_errno < 0 ? dm->broken_errno : -ENOTCONN;
}

static void mig_deadline(libdm__op *op)
{
    libdm__container_of(op, mig_op, op)->on_deadline(op->dm->ctx, &op->deadline, op->dm);
}

/* A migration phase waiting on its tick looks now. An event that comes
 * before the wait is armed (a query in flight, whose reply may predate it,
 * in the same read) still counts: the next wait is none (issue 22, 12). */
static void mig_event(libdm__op *op)
{
    if (libdm__timer_armed(&op->tick))
        (void)libdm__defer(op->dm->ctx, &op->tick);
    else
        op->event_pending = true;
}

static const libdm__op_ops mig_ops = {
    .kind = OP_MIGRATE,
    .name = "migration",
    .deadline = mig_deadline,
    .monitor_event = mig_event,
};

int libdm__dm_mig_begin(libdm_dm *dm, int timeout_ms, libdm__timer_fn *on_deadline,
                        libdm_dm_done_fn *cb, void *state, void (*destroy)(void *state))
{
    int r = libdm__dm_op_begin(dm, &mig_ops, sizeof(mig_op), timeout_ms, NULL, cb, state);

    if (r >= 0) {
        libdm__container_of(dm->op, mig_op, op)->on_deadline = on_deadline;
        dm->op->destroy = destroy;
    }
    return r;
}

void *libdm__dm_mig_state(libdm_dm *dm)
{
    return libdm__dm_op_kind(dm) == OP_MIGRATE ? dm->op->user : NULL;
}

void libdm__dm_mig_finish(libdm_dm *dm, int status)
{
    if (libdm__dm_op_kind(dm) == OP_MIGRATE)
        libdm__dm_op_finish(dm, status);
}

void libdm__dm_mig_fail(libdm_dm *dm, int status)
{
    if (libdm__dm_op_kind(dm) == OP_MIGRATE)
        libdm__dm_op_fail(dm, status);
}

int libdm__dm_mig_call(libdm_dm *dm, const char *cmd, const libdm_json *args,
                       libdm_qmp_reply_fn *cb)
{
    return libdm__dm_mig_call_fd(dm, cmd, args, -1, cb);
}

int libdm__dm_mig_call_fd(libdm_dm *dm, const char *cmd, const libdm_json *args, int fd,
                          libdm_qmp_reply_fn *cb)
{
    return libdm__dm_op_kind(dm) == OP_MIGRATE ? libdm__dm_call_fd(dm, cmd, args, fd, cb)
                                               : -ECANCELED;
}

bool libdm__dm_mig_take_event(libdm_dm *dm)
{
    bool pending = libdm__dm_op_kind(dm) == OP_MIGRATE && dm->op->event_pending;

    if (pending)
        dm->op->event_pending = false;
    return pending;
}

void libdm__dm_mig_tick(libdm_dm *dm, libdm__timer_fn *fn, int delay_ms)
{
    if (libdm__dm_op_kind(dm) != OP_MIGRATE)
        return;
    /* The phase's step picks its own function: re-initialised only while
     * disarmed, so the loop's heap never holds a re-initialised timer. */
    libdm__timer_disarm(dm->ctx, &dm->op->tick);
    libdm__timer_init(&dm->op->tick, fn, dm);
    (void)libdm__timer_arm(dm->ctx, &dm->op->tick, libdm_now_ms() + (uint64_t)delay_ms);
}

void libdm__dm_mig_set_deadline(libdm_dm *dm, uint64_t abs_ms)
{
    if (libdm__dm_op_kind(dm) == OP_MIGRATE)
        (void)libdm__timer_arm(dm->ctx, &dm->op->deadline, abs_ms);
}

/* ---- the DM's side of a migration (migrate.c, and Finish above) ---- */

int libdm__dm_set_autokill(libdm_dm *dm, bool on)
{
    return dm->keeper ? libdm__keeper_set_autokill(dm->keeper, on) : -ESRCH;
}

void libdm__dm_set_migrate_was_running(libdm_dm *dm, bool running)
{
    dm->migrate_was_running = running;
}

bool libdm__dm_migrate_was_running(const libdm_dm *dm)
{
    return dm->migrate_was_running;
}

/* Seed 000's rule, the one place it is decided: an incoming migration is
 * over only when query-migrate (@query_status) and the MIGRATION event both
 * say completed; one that failed or was cancelled is never resumed. Returns
 * 1 (completed), 0 (not yet) or -EIO (failed, and says so). */
int libdm__incoming_verdict(libdm_dm *dm, const char *query_status)
{
    if (query_status && (!strcmp(query_status, "failed") || !strcmp(query_status, "cancelled"))) {
        libdm__dm_error(dm, "incoming migration %s: the guest is not resumed", query_status);
        return -EIO;
    }
    if (!query_status || strcmp(query_status, "completed"))
        return 0;
    /* The event counts only where libdm turned "events" on before the
     * stream (libdm__mig_incoming_begin). A stream given at start
     * (-incoming fd:N, a restore) or fed by the caller's own
     * migrate-incoming has no complete event trail: QEMU 7.2 says "setup"
     * even without the capability, then nothing (a start sets none, issue
     * 23). Then the destination's own query-migrate alone decides. */
    if (!dm->incoming_events)
        return 1;
    return dm->migration_event && !strcmp(dm->migration_event, "completed");
}

void libdm__dm_set_incoming_events(libdm_dm *dm)
{
    dm->incoming_events = true;
}

int libdm__dm_set_migrating(libdm_dm *dm, bool on)
{
    return dm->rd ? libdm__rundir_set_monitor_note(dm->rd, on ? "migration" : NULL) : -ENOLCK;
}

void libdm__dm_incoming_done(libdm_dm *dm, bool record)
{
    dm->incoming = false;
    if (dm->state == LIBDM_DM_INCOMING) {
        libdm__dm_set_state(dm, LIBDM_DM_PAUSED);
        libdm__dm_set_runstate(dm, "paused");
        if (record)
            libdm__dm_record_state(dm);
    }
}
