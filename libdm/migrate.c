/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration: Begin, Prepare, Perform, Finish, Confirm, cancel and
 * recovery (see migrate.h), as asynchronous operations: the steps on the
 * DM's operation core (here) and the phases' entry points
 * (migrate-phases.c, migrate-op-internal.h between them); the blocking
 * forms (migrate-sync.c) wait for them.
 *
 * DO NOT TRUST QEMU: statuses come through the bounded QMP engine and every
 * wait is bounded by the operation's deadline. No wait relies on an event
 * alone: a MIGRATION event wakes the operation's tick at once (then
 * query-migrate confirms), and the tick also fires every MIGRATE_POLL_MS in
 * case an event is missed.
 *
 * Each phase but Prepare's start and Finish's wait (dm-start.c and dm-ops.c
 * own those) is an operation OP_MIGRATE on the DM's operation core, with a
 * mig_op for its state: one monitor call at a time, owned by the operation
 * (its slot is freed when the next call is made or the operation ends: no
 * floating call), one tick timer, the deadline. The operation can also end
 * from outside (the DM exits: -ESRCH; a stop interrupts it: -ECANCELED):
 * every handler first asks whether its mig_op is still the running one,
 * and the mig_op itself is freed only by the deferred completion.
 *
 * The steps (mig_step) and their transitions:
 *
 *   one-look phases (Begin, Confirm, Cancel, Recover):
 *     S_STATUS     query-status sent        -> S_MIGSTATUS | S_CONT | end
 *     S_MIGSTATUS  query-migrate sent       -> C_SEND | S_STATUS | end
 *     S_CONT       cont sent                -> S_CONT_RETRY ("not finalized") | end
 *     S_CONT_RETRY tick                     -> S_CONT
 *   Prepare (after the DM started), and the incoming fd of a restricted one:
 *     S_GETFD      getfd sent (with the fd) -> S_INCOMING
 *     S_INCOMING   migrate-incoming sent    -> end
 *   source state:
 *     S_SRC_QUERY  query-migrate sent       -> end | S_SRC_EXIT
 *     S_SRC_EXIT   tick: exited yet?        -> end (GONE; UNKNOWN at the deadline)
 *   a phase that fails ends through libdm__dm_mig_fail(): -ESRCH if its DM
 *   died, even when the monitor reset before the exit was reported
 *   Perform:
 *     P_STATUS     query-status sent (was the guest running?)  -> P_CAPS
 *     P_CAPS       query-migrate-capabilities  -> P_SET_PBS | P_SET_EVENTS
 *     P_SET_PBS    pause-before-switchover set -> P_SET_EVENTS
 *     P_SET_EVENTS events capability set       -> P_MIGRATE | P_CONNECT
 *     P_CONNECT    libdm's connect (restricted) -> P_GETFD
 *     P_GETFD      getfd sent (with the fd)    -> P_MIGRATE ("fd:NAME")
 *     P_MIGRATE    migrate sent                -> P_QUERY
 *     P_WAIT       tick (or a MIGRATION event) -> P_QUERY
 *     P_QUERY      query-migrate sent          -> end | P_WAIT | P_HOOK | P_EXIT
 *     P_HOOK       the host's switchover hook runs; waits for
 *                  libdm_migrate_switchover_done() -> P_CONTINUE | C_SEND
 *     P_CONTINUE   migrate-continue sent       -> P_WAIT | C_SEND
 *     P_EXIT       tick: a query failed, the DM may be dying -> end | C_SEND
 *     the deadline: before migrate -> libdm__mig_op_end(-ETIMEDOUT); after -> C_SEND
 *   cancelling (Perform, Cancel, Recover), with its own deadline:
 *     C_SEND       migrate_cancel sent         -> C_QUERY
 *     C_QUERY      query-migrate sent          -> C_WAIT | settled
 *     C_WAIT       tick                        -> C_QUERY
 *     settled (or not by the deadline): Perform ends, Cancel and Recover go
 *     on to S_STATUS.
 *
 * The decision table of Finish (what the source says x what the
 * destination's own incoming migration says) is in migrate.h; it is coded in
 * finish_decision() and nowhere else.
 *
 * Ownership (seed 004): the destination DM belongs to its keeper's autokill
 * until Finish succeeded; Perform creates nothing that outlives it (no
 * timers, no listeners, no calls); every exit path of Perform leaves the
 * source either migrated or cancelled.
 */
#include "migrate-op-internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const phase_names[] = {
    [PH_BEGIN] = "begin", [PH_INCOMING] = "prepare", [PH_PERFORM] = "perform",
    [PH_CONFIRM] = "confirm", [PH_CANCEL] = "cancel", [PH_RECOVER_RUN] = "recover",
    [PH_RECOVER_STOP] = "recover", [PH_SOURCE_STATE] = "source state",
};

static const char *const step_names[] = {
    [S_NONE] = "none", [S_STATUS] = "status", [S_MIGSTATUS] = "migration-status",
    [S_CONT] = "cont", [S_CONT_RETRY] = "cont-retry", [S_IN_EVENTS] = "incoming-events",
    [S_GETFD] = "getfd",
    [S_INCOMING] = "incoming",
    [S_SRC_QUERY] = "source-query", [S_SRC_EXIT] = "source-exit-wait",
    [P_STATUS] = "perform-status", [P_CAPS] = "perform-caps", [P_SET_PBS] = "perform-set-pbs",
    [P_SET_EVENTS] = "perform-set-events", [P_CONNECT] = "perform-connect",
    [P_GETFD] = "perform-getfd", [P_MIGRATE] = "perform-migrate",
    [P_WAIT] = "perform-wait", [P_QUERY] = "perform-query", [P_HOOK] = "perform-hook",
    [P_CONTINUE] = "perform-continue", [P_EXIT] = "perform-exit-wait",
    [C_SEND] = "cancel-send", [C_QUERY] = "cancel-query", [C_WAIT] = "cancel-wait",
};

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = libdm_now_ms();

    if (now >= deadline)
        return 0;
    return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

static const char *dm_name(const mig_op *m)
{
    return libdm_dm_get_name(m->dm);
}

static libdm_ctx *mig_ctx(const mig_op *m)
{
    return libdm__dm_ctx(m->dm);
}

/* ---- the operation ---- */

static void set_step(mig_op *m, mig_step to)
{
    LIBDM__DEBUG(mig_ctx(m), "%s: %s: %s -> %s", dm_name(m), phase_names[m->phase],
                 step_names[m->step], step_names[to]);
    m->step = to;
}

/* Whether @m still runs (the DM's exit or a stop may have ended it). */
static bool current(const mig_op *m)
{
    return libdm__dm_mig_state(m->dm) == m;
}

/* Ends the phase with @status; a failure through the operation core, which
 * says -ESRCH for a DM that died (migrate.h's promise). */
void libdm__mig_op_end(mig_op *m, int status)
{
    set_step(m, S_NONE);
    if (status < 0)
        libdm__dm_mig_fail(m->dm, status);
    else
        libdm__dm_mig_finish(m->dm, status);
}

static void mig_free(mig_op *m)
{
    if (m->watch)
        libdm__watch_del(m->watch);
    libdm__close(&m->fd);
    free(m->uri);
    free(m);
}

/* The DM was released before the phase's callback ran: what the caller
 * handed over goes too. */
static void mig_destroy(void *state)
{
    mig_op *m = state;

    if (m->user_destroy)
        m->user_destroy(m->user);
    mig_free(m);
}

static int source_from_status(int status)
{
    if (status >= 0)
        return status;
    return status == -ESRCH ? LIBDM_MIGRATE_SOURCE_GONE : LIBDM_MIGRATE_SOURCE_UNKNOWN;
}

/* The operation core's completion, deferred: frees @m, then tells the
 * caller (after stopping the source, for a Recover that decided so). */
static void mig_done(libdm_dm *dm, int status, void *user)
{
    mig_op *m = user;
    libdm_dm_done_fn *cb = m->cb;
    void *cb_user = m->user;
    /* Recover with the destination's guest: the source goes; one that
     * died went already (the stop only cleans up). One interrupted by a
     * stop (-ECANCELED) is that stop's to end, not a second one's. */
    bool stop = m->stop_after && (status >= 0 || status == -ESRCH);
    int left = remaining_ms(m->deadline);

    if (m->phase == PH_SOURCE_STATE)
        status = source_from_status(status);
    mig_free(m);
    if (stop) {
        status = libdm_dm_stop_async(dm, 0, left ? left : 1, cb, cb_user);
        if (status >= 0)
            return;
        status = status == -EALREADY ? 0 : status;
    }
    if (cb)
        cb(dm, status, cb_user);
}

static void on_deadline(libdm_ctx *ctx, libdm__timer *t, void *user);

/* Starts phase @ph on @dm: the operation is @dm's until libdm__mig_op_end(). */
int libdm__mig_op_start(libdm_dm *dm, mig_phase ph, int timeout_ms, libdm_dm_done_fn *cb,
                     void *user, mig_op **ret)
{
    mig_op *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return -ENOMEM;
    *m = (mig_op){ .dm = dm, .phase = ph, .cb = cb, .user = user, .fd = -1,
                   .deadline = libdm__deadline(timeout_ms > 0 ? timeout_ms : MIGRATE_DEFAULT_MS) };
    r = libdm__dm_mig_begin(dm, timeout_ms, on_deadline, mig_done, m, mig_destroy);
    if (r < 0) {
        mig_free(m);
        return r;
    }
    *ret = m;
    return 0;
}

static void on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user);
static void step_reply(mig_op *m, const libdm_qmp_reply *r);

static void log_failure(mig_op *m, const libdm_qmp_reply *r)
{
    if (r->status == -EREMOTEIO)
        libdm__dm_error(m->dm, "%s: %s: %s", m->cmd, r->error_class ? r->error_class : "?",
                        r->error_desc ? r->error_desc : "?");
    else
        libdm__dm_error(m->dm, "%s: %s", m->cmd, strerror(-r->status));
}

/* Sends @cmd (consumes @args) and moves to @next, where its reply is
 * handled; a call that cannot be sent is handled there as its failure. */
void libdm__mig_op_send(mig_op *m, mig_step next, const char *cmd, libdm_json *args)
{
    libdm__mig_op_send_fd(m, next, cmd, args, -1);
}

void libdm__mig_op_send_fd(mig_op *m, mig_step next, const char *cmd, libdm_json *args, int fd)
{
    int r;

    set_step(m, next);
    m->cmd = cmd;
    r = libdm__dm_mig_call_fd(m->dm, cmd, args, fd, on_reply);
    libdm_json_free(args);
    if (r < 0) {
        libdm_qmp_reply fake = { .status = r };

        log_failure(m, &fake);
        step_reply(m, &fake);
    }
}

static void on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    mig_op *m = libdm__dm_mig_state(user);

    (void)q;
    if (!m)
        return;
    if (r->status < 0)
        log_failure(m, r);
    step_reply(m, r);
}

static void on_tick(libdm_ctx *ctx, libdm__timer *t, void *user);

void libdm__mig_op_tick(mig_op *m, mig_step next, int ms)
{
    /* An event before the wait was armed still counts (issue 22, 12): a
     * completion announced in the same read as an older query's reply
     * must not cost a whole poll tick of downtime. */
    if ((next == P_WAIT || next == C_WAIT) && libdm__dm_mig_take_event(m->dm))
        ms = 0;
    set_step(m, next);
    m->tick_due = libdm_now_ms() + (uint64_t)ms;
    libdm__dm_mig_tick(m->dm, on_tick, ms);
}

/* ---- cancelling (Perform, Cancel, Recover) ---- */

void libdm__mig_op_cancel(mig_op *m, int why)
{
    LIBDM__WARN(mig_ctx(m), "%s: cancelling the migration (%s)", dm_name(m), strerror(-why));
    m->why = why;
    libdm__dm_mig_set_deadline(m->dm, libdm__deadline(MIGRATE_CANCEL_WAIT_MS));
    libdm__mig_op_send(m, C_SEND, "migrate_cancel", NULL);
}

static void completed_elsewhere(mig_op *m);

/* The cancel settled: @r is 0 if the migration completed anyway (the
 * cancel lost the race), else m->why. */
static void cancel_settled(mig_op *m, int r)
{
    uint64_t floor = libdm_now_ms() + MIGRATE_AFTER_CANCEL_MS;

    switch (m->phase) {
    case PH_PERFORM:
        libdm__mig_op_end(m, r);
        return;
    case PH_CANCEL:
        if (r == 0) {
            completed_elsewhere(m);
            return;
        }
        break;
    default:
        break;
    }
    /* A cancelled migration resumes a source that ran; one that was
     * stopped at the switchover is left paused: look, cont if needed. */
    libdm__dm_mig_set_deadline(m->dm, m->deadline > floor ? m->deadline : floor);
    libdm__mig_op_send(m, S_STATUS, "query-status", NULL);
}

static void cancel_on_query(mig_op *m, const libdm_qmp_reply *r)
{
    const char *st = r->status < 0 ? NULL : libdm__json_get_str(r->value, "status");

    if (r->status < 0) {
        libdm__dm_error(m->dm, "the migration did not settle after migrate_cancel");
        cancel_settled(m, m->why);
    } else if (libdm__mig_state_settled(st)) {
        cancel_settled(m, st && !strcmp(st, "completed") ? 0 : m->why);
    } else {
        libdm__mig_op_tick(m, C_WAIT, MIGRATE_POLL_MS);
    }
}

/* ---- Begin ---- */

static void begin_on_status(mig_op *m, const char *rs)
{
    if (strcmp(rs, "running") && strcmp(rs, "paused") && strcmp(rs, "prelaunch")) {
        libdm__dm_error(m->dm, "cannot migrate from runstate '%s'", rs);
        libdm__mig_op_end(m, -EBUSY);
        return;
    }
    libdm__mig_op_send(m, S_MIGSTATUS, "query-migrate", NULL);
}

static void begin_on_migstatus(mig_op *m, const char *st)
{
    if (libdm__mig_state_busy(st)) {
        libdm__dm_error(m->dm, "a migration is already in progress (%s)", st);
        libdm__mig_op_end(m, -EBUSY);
        return;
    }
    /* Other users of this monitor are refused from now on, not queued. */
    (void)libdm__dm_set_migrating(m->dm, true);
    libdm__mig_op_end(m, 0);
}

/* ---- Perform ---- */

static void report_progress(mig_op *m, const char *status, const libdm_json *info)
{
    libdm_migrate_progress p;

    libdm__mig_read_progress(info, status, &p);
    if (m->progress)
        m->progress(m->dm, &p, m->progress_user);
}

static void set_capability(mig_op *m, mig_step next, const char *name, bool on)
{
    libdm_json *args = libdm__mig_capability_args(name, on);

    if (!args) {
        libdm__mig_op_end(m, -ENOMEM);
        return;
    }
    libdm__mig_op_send(m, next, "migrate-set-capabilities", args);
}

/* P_CAPS: set pause-before-switchover either way where QEMU has it: a
 * capability left on by an earlier, cancelled attempt would otherwise
 * pause this migration too. */
static void perform_on_caps(mig_op *m, const libdm_qmp_reply *r)
{
    bool want = m->flags & LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER;

    if (r->status >= 0 && libdm__mig_has_capability(r->value, "pause-before-switchover")) {
        set_capability(m, P_SET_PBS, "pause-before-switchover", want);
        return;
    }
    if (want)
        LIBDM__INFO(mig_ctx(m), "%s: QEMU has no pause-before-switchover", dm_name(m));
    set_capability(m, P_SET_EVENTS, "events", true);
}

static int failed_reason(mig_op *m, const libdm_json *info)
{
    const char *desc = libdm__json_get_str(info, "error-desc");

    libdm__dm_error(m->dm, "migration failed: %s", desc ? desc : "QEMU gave no reason");
    return -EIO;
}

/* P_HOOK: at pre-switchover, the host's hook; it answers through
 * libdm_migrate_switchover_done(), now or later. */
static void perform_switchover(mig_op *m)
{
    set_step(m, P_HOOK);
    if (m->hook)
        m->hook(m->dm, m->hook_user);
    else
        (void)libdm_migrate_switchover_done(m->dm, 0);
}

int libdm_migrate_switchover_done(libdm_dm *src, int status)
{
    mig_op *m = src ? libdm__dm_mig_state(src) : NULL;

    if (!src)
        return -EINVAL;
    if (!m || m->phase != PH_PERFORM || m->step != P_HOOK)
        return -EALREADY;
    if (status < 0) {
        LIBDM__WARN(libdm__dm_ctx(src), "%s: switchover hook failed: %s", libdm_dm_get_name(src),
                    strerror(-status));
        libdm__mig_op_cancel(m, status);
        return 0;
    }
    libdm__mig_op_send(m, P_CONTINUE, "migrate-continue",
                       libdm__mig_string_arg("state", "pre-switchover"));
    return 0;
}

/* P_QUERY: one look at the source's migration. */
static void perform_on_query(mig_op *m, const libdm_qmp_reply *r)
{
    const char *st;

    if (r->status < 0) {
        /* A monitor that fails is most often a DM that died: its pidfd may
         * not have been dispatched yet; give it a moment to say so (the
         * operation then ends with -ESRCH). */
        m->why = r->status;
        if (libdm__dm_exited(m->dm))
            libdm__mig_op_end(m, r->status);
        else
            libdm__mig_op_tick(m, P_EXIT, MIGRATE_EXIT_WAIT_MS);
        return;
    }
    st = libdm__json_get_str(r->value, "status");
    st = st ? st : "none";
    report_progress(m, st, r->value);
    if (!current(m))
        return;   /* the progress callback ended it (a stop) */
    if (!strcmp(st, "completed"))
        libdm__mig_op_end(m, 0);
    else if (!strcmp(st, "failed"))
        libdm__mig_op_end(m, failed_reason(m, r->value));
    else if (!strcmp(st, "cancelled"))
        libdm__mig_op_end(m, -ECANCELED);
    else if (!strcmp(st, "pre-switchover"))
        perform_switchover(m);
    else
        libdm__mig_op_tick(m, P_WAIT, MIGRATE_POLL_MS);
}

/* ---- the fd transport of a restricted DM (migrate-fd.c, migrate.h) ---- */

void libdm__mig_fd_hand_over(mig_op *m, mig_step next)
{
    libdm__mig_op_send_fd(m, next, "getfd",
                          libdm__mig_string_arg("fdname", LIBDM__MIG_FDNAME), m->fd);
}

static void on_connected(libdm_ctx *ctx, int fd, short revents, void *user)
{
    mig_op *m = libdm__dm_mig_state(user);
    int r;

    (void)ctx;
    (void)revents;
    if (!m || m->step != P_CONNECT || m->fd != fd)
        return;
    libdm__watch_del(m->watch);
    m->watch = NULL;
    r = libdm__mig_connect_result(fd);
    if (r < 0) {
        libdm__dm_error(m->dm, "cannot connect to %s: %s", m->uri, strerror(-r));
        libdm__mig_op_end(m, r);
    } else {
        libdm__mig_fd_hand_over(m, P_GETFD);
    }
}

/* The "events" capability is turned on here, for the migration that
 * needs it, and not at every start: QEMU 7.2's monitor reads its input a
 * byte per main-loop turn (~5-9 us a byte), so the 121 bytes of this call
 * cost a start about a millisecond before it was ready (issue 23). */
void libdm__mig_incoming_begin(mig_op *m)
{
    set_capability(m, S_IN_EVENTS, "events", true);
}

static void incoming_on_events(mig_op *m, const libdm_qmp_reply *r)
{
    if (r->status < 0) {
        libdm__mig_op_end(m, r->status);
        return;
    }
    libdm__dm_set_incoming_events(m->dm);
    if (m->fd >= 0)
        libdm__mig_fd_hand_over(m, S_GETFD);
    else
        libdm__mig_op_send(m, S_INCOMING, "migrate-incoming",
                           libdm__mig_string_arg("uri", m->uri));
}

/* getfd answered: libdm's copy goes (QEMU holds the stream), then "fd:". */
static void on_getfd(mig_op *m)
{
    libdm__close(&m->fd);
    m->started = m->step == P_GETFD;
    libdm__mig_op_send(m, m->started ? P_MIGRATE : S_INCOMING,
                       m->started ? "migrate" : "migrate-incoming",
                       libdm__mig_string_arg("uri", "fd:" LIBDM__MIG_FDNAME));
}

static void perform_reply(mig_op *m, const libdm_qmp_reply *r)
{
    const char *rs;
    int e;

    if (m->step == P_QUERY) {
        perform_on_query(m, r);
        return;
    }
    if (m->step == P_CAPS) {
        perform_on_caps(m, r);
        return;
    }
    if (r->status < 0) {
        /* migrate-continue refused: cancel; before that nothing started. */
        if (m->step == P_CONTINUE)
            libdm__mig_op_cancel(m, r->status);
        else
            libdm__mig_op_end(m, r->status);
        return;
    }
    switch (m->step) {
    case P_STATUS:
        rs = libdm__json_get_str(r->value, "status");
        libdm__dm_set_migrate_was_running(m->dm, rs && !strcmp(rs, "running"));
        libdm__mig_op_send(m, P_CAPS, "query-migrate-capabilities", NULL);
        break;
    case P_SET_PBS:
        set_capability(m, P_SET_EVENTS, "events", true);
        break;
    case P_SET_EVENTS:
        if (libdm__mig_fd_wanted(m->dm, m->uri)) {    /* restricted */
            set_step(m, P_CONNECT);
            e = libdm__mig_connect_start(mig_ctx(m), m->uri, on_connected, m->dm, &m->fd,
                                         &m->watch);
            if (e < 0) {
                libdm__dm_error(m->dm, "cannot connect to %s: %s", m->uri, strerror(-e));
                libdm__mig_op_end(m, e);
            }
            break;
        }
        m->started = true;
        libdm__mig_op_send(m, P_MIGRATE, "migrate", libdm__mig_string_arg("uri", m->uri));
        break;
    case P_GETFD:
        on_getfd(m);
        break;
    case P_MIGRATE:
        libdm__mig_op_send(m, P_QUERY, "query-migrate", NULL);
        break;
    case P_CONTINUE:
        libdm__mig_op_tick(m, P_WAIT, MIGRATE_POLL_MS);
        break;
    default:
        break;
    }
}

/* ---- Confirm, Cancel, Recover: query-status, then cont if needed ---- */

/* The source completed: whether the destination runs the guest is not
 * something the source can know. */
static void completed_elsewhere(mig_op *m)
{
    libdm__dm_error(m->dm, "the migration completed, so the destination may "
                    "run the guest: the outcome is unknown here and the source stays paused "
                    "(ask the destination: dmctl migrate %s --recover --to CMD; or, if the "
                    "destination is gone: dmctl migrate %s --recover --destination-gone)",
                    dm_name(m), dm_name(m));
    libdm__mig_op_end(m, -EALREADY);
}

static void on_status(mig_op *m, const char *rs)
{
    switch (m->phase) {
    case PH_BEGIN:
        begin_on_status(m, rs);
        return;
    case PH_CONFIRM:
        /* Back to running if it ran before Perform (or stays paused). */
        if (libdm__dm_migrate_was_running(m->dm) && strcmp(rs, "running"))
            libdm__mig_op_send(m, S_CONT, "cont", NULL);
        else
            libdm__mig_op_end(m, 0);
        return;
    case PH_RECOVER_STOP:
        if (!strcmp(rs, "running")) {
            libdm__dm_error(m->dm, "the source runs although the destination has "
                            "the guest: not stopping either (decide by hand)");
            libdm__mig_op_end(m, -EBUSY);
        } else {
            libdm__mig_op_end(m, 0);   /* mig_done stops it */
        }
        return;
    default:
        /* Cancel, Recover: QEMU 7.2 accepts cont in postmigrate too. */
        if (strcmp(rs, "running"))
            libdm__mig_op_send(m, S_CONT, "cont", NULL);
        else
            libdm__mig_op_end(m, 0);
        return;
    }
}

static void on_migstatus(mig_op *m, const char *st)
{
    if (m->phase == PH_BEGIN) {
        begin_on_migstatus(m, st);
    } else if (m->phase == PH_CANCEL && !strcmp(st, "completed")) {
        completed_elsewhere(m);
    } else if (libdm__mig_state_in_flight(st)) {
        libdm__mig_op_cancel(m, -ECANCELED);
    } else {
        libdm__mig_op_send(m, S_STATUS, "query-status", NULL);
    }
}

/* QEMU reports a migration "failed" or "cancelled" a moment before its
 * migration thread lets go: `cont` is refused ("Migration is not finalized
 * yet") meanwhile. Retry until the deadline; any other refusal is final. */
static void on_cont(mig_op *m, const libdm_qmp_reply *r)
{
    if (r->status == -EREMOTEIO && r->error_desc && strstr(r->error_desc, "not finalized") &&
        remaining_ms(m->deadline) > 0)
        libdm__mig_op_tick(m, S_CONT_RETRY, MIGRATE_CONT_RETRY_MS);
    else
        libdm__mig_op_end(m, r->status < 0 ? r->status : 0);
}

/* The source's word from its query-migrate. */
static void on_source_query(mig_op *m, const libdm_qmp_reply *r)
{
    const char *st = r->status < 0 ? NULL : libdm__json_get_str(r->value, "status");

    if (r->status < 0)
        libdm__mig_op_tick(m, S_SRC_EXIT, MIGRATE_EXIT_POLL_MS);   /* dying? until the deadline */
    else if (st && !strcmp(st, "completed"))
        libdm__mig_op_end(m, LIBDM_MIGRATE_SOURCE_COMPLETED);
    else if (libdm__mig_state_source_keeps(st))
        libdm__mig_op_end(m, LIBDM_MIGRATE_SOURCE_KEEPS);
    else
        libdm__mig_op_end(m, LIBDM_MIGRATE_SOURCE_UNKNOWN);
}

/* ---- dispatch: replies, ticks, the deadline ---- */

static void step_reply(mig_op *m, const libdm_qmp_reply *r)
{
    const char *s = r->status < 0 ? NULL : libdm__json_get_str(r->value, "status");

    if (m->step >= P_STATUS && m->step <= P_EXIT) {
        perform_reply(m, r);
        return;
    }
    switch (m->step) {
    case C_SEND:   /* whatever it answered, look */
        libdm__mig_op_send(m, C_QUERY, "query-migrate", NULL);
        return;
    case C_QUERY:
        cancel_on_query(m, r);
        return;
    case S_CONT:
        on_cont(m, r);
        return;
    case S_SRC_QUERY:
        on_source_query(m, r);
        return;
    case S_IN_EVENTS:
        incoming_on_events(m, r);
        return;
    case S_GETFD:
        if (r->status < 0)
            libdm__mig_op_end(m, r->status);
        else
            on_getfd(m);
        return;
    case S_INCOMING:
        libdm__mig_op_end(m, r->status < 0 ? r->status : 0);
        return;
    default:
        break;
    }
    if (r->status < 0) {
        libdm__mig_op_end(m, r->status);
    } else if (m->step == S_STATUS) {
        if (s)
            on_status(m, s);
        else
            libdm__mig_op_end(m, -EPROTO);
    } else if (m->step == S_MIGSTATUS) {
        on_migstatus(m, s ? s : "none");   /* none before any migration */
    }
}

static void on_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    mig_op *m = libdm__dm_mig_state(user);
    uint64_t now = libdm_now_ms();

    (void)ctx;
    (void)t;
    if (!m)
        return;
    /* A MIGRATION event wakes any tick: only the waits for QEMU's
     * migration status take it as a reason to look now. */
    if ((m->step == P_EXIT || m->step == S_CONT_RETRY) && now < m->tick_due) {
        libdm__dm_mig_tick(m->dm, on_tick, (int)(m->tick_due - now));
        return;
    }
    switch (m->step) {
    case P_WAIT:
        libdm__mig_op_send(m, P_QUERY, "query-migrate", NULL);
        break;
    case C_WAIT:
        libdm__mig_op_send(m, C_QUERY, "query-migrate", NULL);
        break;
    case S_CONT_RETRY:
        libdm__mig_op_send(m, S_CONT, "cont", NULL);
        break;
    case P_EXIT:
        if (libdm__dm_exited(m->dm))
            libdm__mig_op_end(m, m->why);
        else
            libdm__mig_op_cancel(m, m->why);
        break;
    case S_SRC_EXIT:
        if (libdm__dm_exited(m->dm))
            libdm__mig_op_end(m, LIBDM_MIGRATE_SOURCE_GONE);
        else
            libdm__mig_op_tick(m, S_SRC_EXIT, MIGRATE_EXIT_POLL_MS);
        break;
    default:
        break;
    }
}

static bool cancelling(const mig_op *m)
{
    return m->step == C_SEND || m->step == C_QUERY || m->step == C_WAIT;
}

static void on_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    mig_op *m = libdm__dm_mig_state(user);

    (void)t;
    if (!m)
        return;
    if (cancelling(m)) {
        libdm__dm_error(m->dm, "the migration did not settle after migrate_cancel");
        cancel_settled(m, m->why);
    } else if (m->phase == PH_PERFORM && m->started) {
        libdm__mig_op_cancel(m, -ETIMEDOUT);
    } else if (m->phase == PH_SOURCE_STATE) {
        libdm__mig_op_end(m, LIBDM_MIGRATE_SOURCE_UNKNOWN);
    } else {
        libdm__dm_error(m->dm, "%s did not complete before its deadline (%s)",
                        phase_names[m->phase], step_names[m->step]);
        libdm__mig_op_end(m, -ETIMEDOUT);
    }
}
