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
        libdm__dm_incoming_done(dm, dm->op->u.resume.keep_paused);
        /* Finish (seed 002): the destination stops depending on its
         * controller in the same step that makes it the guest's owner,
         * before cont, so that no death of the controller after cont can
         * end a running destination (issue 22, 4 and 5). The message is on
         * the keeper's channel before any EOF of it. */
        if (dm->op->u.resume.finish && (r = libdm__dm_set_autokill(dm, false)) < 0) {
            libdm__dm_error(dm, "cannot release the destination from autokill: %s; "
                            "not resumed", strerror(-r));
            libdm__dm_op_finish(dm, r);
            return;
        }
        if (dm->op->u.resume.keep_paused)
            libdm__dm_op_finish(dm, 0);
        else
            resume_send_cont(dm);
        return;
    }
    /* Not yet: look again on the MIGRATION event (libdm__dm_incoming_event)
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

/* dm.c: a MIGRATION event arrived. A resume waiting for the incoming
 * migration looks now rather than at its next tick. */
void libdm__dm_incoming_event(libdm_dm *dm)
{
    /* A migration phase waiting on its tick looks now, too. An event that
     * comes before the wait is armed (a query in flight, whose reply may
     * predate it, in the same read) still counts: the next wait is none
     * (issue 22, 12). */
    if (libdm__dm_op_kind(dm) == OP_MIGRATE) {
        if (libdm__timer_armed(&dm->op->tick))
            (void)libdm__defer(dm->ctx, &dm->op->tick);
        else
            dm->op->event_pending = true;
        return;
    }
    if (libdm__dm_op_kind(dm) != OP_RESUME || dm->state != LIBDM_DM_INCOMING)
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

int libdm_dm_resume_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata)
{
    int r;

    if (!dm->ctx)
        return -ESHUTDOWN;
    if (!libdm__dm_usable(dm))
        return dm->exited ? -ESRCH : -ENOTCONN;
    r = libdm__dm_op_begin(dm, OP_RESUME, timeout_ms, libdm__dm_op_deadline_fire,
                           resume_poll_migrate, cb, userdata);
    if (r < 0)
        return r;
    resume_query(dm);   /* only Finish keeps the guest paused (u.resume) */
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

    if (!reply_ok(dm, r, libdm__dm_op_names[libdm__dm_op_kind(dm)]))
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

static int simple_call_async(libdm_dm *dm, op_kind kind, const char *cmd, int timeout_ms,
                             libdm_dm_done_fn *cb, void *userdata)
{
    int r;

    if (!dm->ctx)
        return -ESHUTDOWN;
    if (!libdm__dm_usable(dm))
        return dm->exited ? -ESRCH : dm->broken_errno < 0 ? dm->broken_errno : -ENOTCONN;
    r = libdm__dm_op_begin(dm, kind, timeout_ms, libdm__dm_op_deadline_fire, NULL, cb,
                           userdata);
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
    return dm ? simple_call_async(dm, OP_PAUSE, "stop", timeout_ms, cb, userdata) : -EINVAL;
}

int libdm_dm_query_status_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb,
                                void *userdata)
{
    return dm ? simple_call_async(dm, OP_QUERY, "query-status", timeout_ms, cb, userdata)
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

void libdm__dm_stop_finished(libdm_dm *dm)
{
    /* The files go in steps from the loop (a stop of a DEAD DM removes
     * nothing inside libdm_dm_stop_async()). */
    libdm__dm_clean_then_finish(dm, 0);
}

static void stop_escalate(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (dm->exited || dm->op->cleaning)
        return;
    switch (dm->op->u.stop.step) {
    case STOP_QUIT:
        LIBDM__WARN(ctx, "%s: no exit after quit: sending SIGTERM", dm->name);
        dm->op->u.stop.step = STOP_TERM;
        (void)dm_signal(dm, SIGTERM);
        (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_TERM_GRACE_MS));
        break;
    case STOP_TERM:
        LIBDM__WARN(ctx, "%s: no exit after SIGTERM: sending SIGKILL", dm->name);
        dm->op->u.stop.step = STOP_KILL;
        (void)dm_signal(dm, SIGKILL);
        (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_KILL_WAIT_MS));
        break;
    case STOP_KILL:
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
        libdm__dm_error(dm, "%s interrupted by stop", libdm__dm_op_names[dm->op->kind]);
        libdm__dm_op_finish(dm, -ECANCELED);
    }
    r = libdm__dm_op_begin(dm, OP_STOP, timeout_ms, stop_escalate, NULL, cb, userdata);
    if (r < 0)
        return r;
    op = dm->op;
    libdm__dm_set_state(dm, LIBDM_DM_STOPPING);
    if (dm->exited) {
        libdm__dm_stop_finished(dm);
        return 0;
    }
    op->u.stop.step = STOP_QUIT;
    if (force || libdm__dm_call(dm, "quit", NULL, stop_on_quit) < 0) {
        op->u.stop.step = force ? STOP_KILL : STOP_TERM;
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
    int r;

    if (!dm->ctx)
        return -ESHUTDOWN;
    if (!libdm__dm_usable(dm))
        return dm->exited ? -ESRCH : -ENOTCONN;
    r = libdm__dm_op_begin(dm, OP_RESUME, timeout_ms, libdm__dm_op_deadline_fire,
                           resume_poll_migrate, cb, userdata);
    if (r < 0)
        return r;
    dm->op->u.resume.keep_paused = keep_paused;
    dm->op->u.resume.finish = true;
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

int libdm__dm_mig_begin(libdm_dm *dm, int timeout_ms, libdm__timer_fn *on_deadline,
                        libdm_dm_done_fn *cb, void *state, void (*destroy)(void *state))
{
    int r = libdm__dm_op_begin(dm, OP_MIGRATE, timeout_ms, on_deadline, NULL, cb, state);

    if (r >= 0)
        dm->op->destroy = destroy;
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
    return libdm__dm_op_kind(dm) == OP_MIGRATE ? libdm__dm_call(dm, cmd, args, cb) : -ECANCELED;
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
