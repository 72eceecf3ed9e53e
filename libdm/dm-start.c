/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Starting a device model (the order is in libdm__dm_start_async's
 * comment): checked, claimed, recorded, spawned under its keeper, ready by
 * QMP alone.
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

/* ---- start: the operation's own state, its failure paths ---- *
 *
 * Steps (start_step in dm-private.h), each a deferred run of the
 * operation's tick, so that sixteen starts issued from one host callback
 * cost the host sixteen configuration checks, and each step one short
 * dispatch (the loop's budget interleaves them with the host's work). A
 * step creates one file (the claim two: its directory and lock): on a disk
 * filesystem each costs a few hundred microseconds.
 *   CLAIM -> LOCK -> [PROBE] -> PREPARE -> SOCKET -> LOG -> SPAWN -> READY
 *   (QMP says paused, the keeper gave the pid) ; any -> FAILING (killed,
 *   waiting for its end)
 * A step that fails before the keeper runs removes what the start made
 * (unclaim) and ends the operation at once. */

typedef enum {
    START_CLAIM,    /* claim the name, clear a dead predecessor */
    START_LOCK,     /* the monitor's lock: the starter is its one client */
    START_PROBE,    /* restricted: is -sandbox there? (probed in the background) */
    START_PREPARE,  /* dm_restrict, devices, the command line, the record */
    START_SOCKET,   /* the monitor socket, bound and connected */
    START_LOG,      /* QEMU's log file */
    START_SPAWN,    /* the keeper */
    START_READY,    /* keeper running: waiting for QMP readiness and the pid */
    START_FAILING,  /* killed: waiting for the keeper to report the end */
} start_step;

/* The start's own state. */
typedef struct start_op {
    libdm__op op;
    start_step step;
    libdm_dm_config *cfg;       /* the caller's, copied: steps run later */
    bool autokill;
    bool have_pid, have_status;
    bool killed_keeper;         /* FAILING: the keeper was SIGKILLed too */
    bool grace;                 /* FAILING: waiting for the keeper's "exit" */
    libdm__restrict_plan plan;
    char **argv;
    libdm__sandbox_probe *probe;
    int listen_fd, log_fd;      /* SOCKET, LOG -> SPAWN: QEMU's, until passed */
} start_op;

/* The start in progress (the caller knows dm->op is one). */
static start_op *st(const libdm_dm *dm)
{
    return libdm__container_of(dm->op, start_op, op);
}

static void start_fail(libdm_dm *dm, int status);
static void start_fail_finished(libdm_dm *dm);

static void start_free(libdm__op *op)
{
    start_op *so = libdm__container_of(op, start_op, op);

    libdm_dm_config_free(so->cfg);
    libdm__restrict_plan_clear(&so->plan);
    libdm_strv_free(so->argv);
    libdm__sandbox_probe_cancel(so->probe);
    libdm__close(&so->listen_fd);
    libdm__close(&so->log_fd);
}

/* Removes what the steps of a start made before its keeper ran. */
static void undo_unspawned(libdm_dm *dm)
{
    libdm__dm_unclaim(dm);
    libdm__devices_cleanup(dm->ctx, dm->nics); /* netdev.c: taps it made */
}

/* A start that ends before its keeper ran: nothing of it is left, and the
 * handle holds no fd (DEAD, "no process"). */
static void start_refused(libdm_dm *dm, int status)
{
    libdm__dm_close_qmp(dm);
    undo_unspawned(dm);
    dm->rd = libdm__rundir_free(dm->rd);
    dm->exited = true;
    dm->unclaimed = true;
    libdm__dm_set_state(dm, LIBDM_DM_DEAD);
    libdm__dm_op_finish(dm, status);
}

/* A start released before its keeper ran: removes what it made. */
static void start_release(libdm__op *op)
{
    libdm_dm *dm = op->dm;

    if (!dm->keeper && !dm->unclaimed)
        undo_unspawned(dm);
}

/* Cancels a start whose keeper has not run yet (a stop came first). Whether
 * it did. */
bool libdm__dm_start_cancel_unspawned(libdm_dm *dm)
{
    if (libdm__dm_op_kind(dm) != OP_START || dm->keeper)
        return false;
    libdm__dm_error(dm, "start interrupted by stop before the device model ran");
    start_refused(dm, -ECANCELED);
    return true;
}

bool libdm__dm_start_awaits_pid(const libdm_dm *dm)
{
    return libdm__dm_op_kind(dm) == OP_START && !st(dm)->have_pid;
}

/* The start failed once the keeper may run: kill it, and finish when its
 * end is reported (bounded). @status 0: the DM's end says why. */
static void start_fail(libdm_dm *dm, int status)
{
    libdm__op *op = dm->op;

    if (libdm__dm_op_kind(dm) != OP_START || st(dm)->step == START_FAILING)
        return;
    if (!dm->keeper) {
        start_refused(dm, status < 0 ? status : -EIO);
        return;
    }
    st(dm)->step = START_FAILING;
    op->status = status;
    if (dm->exited) {
        start_fail_finished(dm);
        return;
    }
    /* A monitor that failed (status 0) most often means QEMU died and the
     * keeper is about to say how: killing the keeper now (QEMU's pid not
     * yet told) would lose that. So it gets a short grace first; a start
     * that failed for its own reason (a deadline, an error) kills at once. */
    /* (With its pid known too: a SIGKILL now would hide how it ended, and
     * its code, behind libdm's kill.) */
    if (status == 0) {
        st(dm)->grace = true;
        (void)libdm__timer_arm(dm->ctx, &op->deadline, libdm__deadline(DM_END_GRACE_MS));
        return;
    }
    /* Before the keeper said QEMU's pid, the keeper itself is killed (and
     * QEMU with it): a start never ends with a QEMU nobody follows. */
    op->kill_cause = status == -ETIMEDOUT ? LIBDM_END_TIMEOUT : LIBDM_END_FAILED;
    (void)libdm__keeper_kill(dm->keeper);
    /* Bounded wait for the keeper to report the end. */
    (void)libdm__timer_arm(dm->ctx, &op->deadline, libdm__deadline(DM_KILL_WAIT_MS));
}

/* The code of a start that ended with the DM's own end (the table in
 * dm.h): status 1 is QEMU refusing its command line; a signal libdm did
 * not send is a kill; anything else is an early exit. */
static int start_code_of_exit(const libdm_dm *dm, int ws)
{
    if (ws >= 0 && WIFEXITED(ws))
        return WEXITSTATUS(ws) == 1 ? -EINVAL : -ECHILD;
    if (ws >= 0 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL && dm->op &&
        dm->op->kill_cause != LIBDM_END_NONE)
        return -ECONNRESET; /* libdm killed it: its monitor had failed */
    if (ws >= 0 && WIFSIGNALED(ws) && !libdm__dm_crash_signal(WTERMSIG(ws)))
        return -ESRCH;
    return -ECHILD;
}

static void start_fail_finished(libdm_dm *dm)
{
    int status = dm->op && dm->op->status < 0 ? dm->op->status
                                              : start_code_of_exit(dm, dm->exit_status);

    libdm__dm_clean_then_finish(dm, status);
}

/* ---- start: readiness by QMP alone ---- */

static bool runstate_is_ready(const libdm_dm *dm, const char *rs)
{
    if (rs && !strcmp(rs, "running") && !strcmp(dm->profile, LIBDM__PROFILE_XL))
        return true; /* libxl resumed it over its own monitor (config-adopt.c) */
    return rs && (!strcmp(rs, "prelaunch") || !strcmp(rs, "paused") || !strcmp(rs, "inmigrate"));
}

static void start_maybe_ready(libdm_dm *dm)
{
    int r;

    if (libdm__dm_op_kind(dm) != OP_START || st(dm)->step != START_READY ||
        !st(dm)->have_pid || !st(dm)->have_status)
        return;
    if (!strcmp(dm->runstate, "inmigrate"))
        dm->incoming = true;
    libdm__dm_set_state(dm, dm->incoming              ? LIBDM_DM_INCOMING
                            : !strcmp(dm->runstate, "running") ? LIBDM_DM_RUNNING
                                                              : LIBDM_DM_PAUSED);
    r = libdm__dm_write_record(dm);
    if (libdm__dm_store_retry(dm, &dm->op->tick, r))
        return; /* another writer holds the record: START_READY's tick again */
    if (r < 0) {
        start_fail(dm, -EIO);
        return;
    }
    /* Recorded as ready: from now on the keeper alone holds the name, and
     * only a migration destination stays under autokill (until Finish). */
    if (!dm->autokill_after_ready && libdm__keeper_set_autokill(dm->keeper, false) < 0) {
        start_fail(dm, -ESRCH);
        return;
    }
    libdm__close(&dm->rd->owner_fd);
    LIBDM__INFO(dm->ctx, "%s: ready (pid %d, runstate %s)", dm->name, dm->pid, dm->runstate);
    libdm__dm_op_finish(dm, 0);
}

static void start_on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;

    dm->op->call = libdm_qmp_slot_free(dm->op->call);
    if (st(dm)->step == START_FAILING)
        return;
    if (r->status < 0) {
        libdm__dm_reply_error(dm, r, "query-status");
        start_fail(dm, r->status);
        return;
    }
    rs = libdm__json_get_str(r->value, "status");
    if (!runstate_is_ready(dm, rs)) {
        /* Started with -S, QEMU can only be in these states: anything else
         * is a DM that does not do what it is told. */
        libdm__dm_error(dm, "device model reports runstate '%s' at start, not a paused one",
                 rs ? rs : "(none)");
        start_fail(dm, -EPROTO);
        return;
    }
    libdm__dm_set_runstate(dm, rs);
    st(dm)->have_status = true;
    /* Without the pid yet (the keeper says it as QEMU execs, so this is
     * rare), its arrival runs the tick (keeper_on_pid). */
    start_maybe_ready(dm);
}

/* Queued before QEMU even runs, written with qmp_capabilities once QEMU
 * greets (libdm__qmp_connect_fd_pipelined): query-status decides
 * readiness. Nothing more: QEMU 7.2's monitor reads a byte per main-loop
 * turn, so every byte sent here delays the start (the "events" migration
 * capability is set by the migration that needs it,
 * libdm__mig_incoming_begin() and Perform). */
static int queue_readiness(libdm_dm *dm)
{
    return libdm__dm_call(dm, "query-status", NULL, start_on_status);
}

static void start_deadline(libdm__op *op_)
{
    libdm_dm *dm = op_->dm;
    libdm_ctx *ctx = dm->ctx;

    if (dm->op->cleaning)
        return; /* the DM ended: its files go, a few dispatches */
    if (st(dm)->step == START_FAILING) {
        libdm__op *op = dm->op;

        if (st(dm)->grace) { /* the keeper said nothing: kill now */
            st(dm)->grace = false;
            op->status = -ECONNRESET; /* the monitor failed, the DM lived on */
            op->kill_cause = LIBDM_END_FAILED;
            (void)libdm__keeper_kill(dm->keeper);
            (void)libdm__timer_arm(ctx, &op->deadline, libdm__deadline(DM_KILL_WAIT_MS));
            return;
        }

        /* Not gone after SIGKILL: the keeper goes too (and QEMU with it)
         * once; then the start gives up, the DM left recorded (listed,
         * stoppable), never removed while something of it may run. */
        if (!st(dm)->killed_keeper) {
            st(dm)->killed_keeper = true;
            (void)libdm__keeper_kill_keeper(dm->keeper);
            (void)libdm__timer_arm(ctx, &op->deadline, libdm__deadline(DM_KILL_WAIT_MS));
            return;
        }
        libdm__dm_error_append(dm, "the device model did not end after SIGKILL; it stays "
                                   "recorded");
        libdm__dm_close_qmp(dm);
        dm->rd = libdm__rundir_free(dm->rd);
        libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
        libdm__dm_op_finish(dm, op->status < 0 ? op->status : -ETIMEDOUT);
        return;
    }
    if (!dm->keeper) {
        libdm__dm_error(dm, "not started before the deadline (still setting up)");
        start_refused(dm, -ETIMEDOUT);
        return;
    }
    /* The process state tells a busy or stopped DM from a wedged monitor. */
    libdm__dm_error(dm, "not ready before the deadline (monitor %s, %u repl%s owed; process %d state %c)",
             dm->qmp ? libdm_qmp_state_to_string(libdm_qmp_get_state(dm->qmp)) : "absent",
             dm->qmp ? libdm_qmp_outstanding(dm->qmp) : 0u,
             dm->qmp && libdm_qmp_outstanding(dm->qmp) == 1 ? "y" : "ies", dm->pid,
             libdm__proc_state(dm->pid));
    start_fail(dm, -ETIMEDOUT);
}

/* The DM ended during its start: said (after the cause already said, if
 * the start was failing for one), then the cleanup. */
static void start_dm_died(libdm__op *op, int status)
{
    libdm_dm *dm = op->dm;
    char *how;

    if (st(dm)->step == START_FAILING && op->status < 0 && dm->last_error) {
        /* Killed for a reason already said (a deadline...): that stays the
         * first cause, the kill only follows it (nothing if QEMU never ran:
         * it could not be executed). */
        if (dm->pid > 0) {
            how = libdm__dm_describe_status(status);
            libdm__dm_error_append(dm, "device model (pid %d) then %s", dm->pid,
                                   how ? how : "ended");
            free(how);
        }
    } else {
        libdm__dm_say_end(dm, status, true);
    }
    libdm__dm_set_state(dm, LIBDM_DM_DEAD);
    start_fail_finished(dm);
}

static bool start_monitor_state(libdm__op *op, libdm_qmp_state s, int err)
{
    libdm_dm *dm = op->dm;
    libdm_qmp *q = dm->qmp;

    if (s != LIBDM_QMP_BROKEN || dm->exited)
        return false;
    /* Most often the DM died: kill it for sure and report its end. */
    if (st(dm)->step != START_FAILING) {
        libdm__dm_error(dm, "the monitor failed during start-up: %s",
                        q && libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : strerror(-err));
        /* A symptom: the DM's end, if it shows, is the cause. */
        dm->last_error_soft = err != -ETIMEDOUT;
    }
    /* The greeting's deadline is the start's own: say so; otherwise the
     * DM's end, when seen, says why. */
    start_fail(dm, err == -ETIMEDOUT ? -ETIMEDOUT : 0);
    return true;
}

static const libdm__op_ops start_ops = {
    .kind = OP_START,
    .name = "start",
    .heavy_tick = true,
    .deadline = start_deadline,
    .dm_died = start_dm_died,
    .monitor_state = start_monitor_state,
    .release = start_release,
    .free = start_free,
};

/* ---- the keeper's reports (it runs for the DM's life) ---- */

static void keeper_on_pid(libdm__keeper *k, int pid, void *user)
{
    libdm_dm *dm = user;

    /* A keeper forked by the helper says its pid just before QEMU's. */
    dm->keeper_pid = libdm__keeper_keeper_pid(k);
    dm->pid = pid;
    dm->pid_start = libdm__proc_start_time(pid);
    dm->keeper_start = libdm__proc_start_time(dm->keeper_pid);
    LIBDM__DEBUG(dm->ctx, "%s: device model is pid %d", dm->name, pid);
    /* Without its start time a pid cannot be told from a reused one: the
     * record would not let anyone find this DM again. */
    if (!dm->pid_start || !dm->keeper_start) {
        /* A QEMU that already exited: its end, which the keeper reports
         * next, is the cause, not the missing start time. */
        if (libdm__keeper_dm_gone(k)) {
            start_fail(dm, 0);
            return;
        }
        libdm__dm_error(dm, "cannot read the start time of pid %d or of its keeper %d", pid,
                 dm->keeper_pid);
        start_fail(dm, -EIO);
        return;
    }
    if (libdm__dm_op_kind(dm) == OP_START) {
        st(dm)->have_pid = true;
        (void)libdm__defer(dm->ctx, &dm->op->tick); /* ready, if QMP said so */
    }
}

static void keeper_on_exit(libdm__keeper *k, int status, void *user)
{
    libdm__dm_ended(user, status);
}

static void keeper_on_error(libdm__keeper *k, int err, const char *msg, void *user)
{
    libdm_dm *dm = user;

    libdm__dm_error(dm, "%s", msg);
    if (libdm__dm_op_kind(dm) == OP_START) {
        st(dm)->step = START_FAILING;
        /* The exec's errno is the start's code (-ENOENT, -EACCES, ...). */
        if (dm->op->status >= 0)
            dm->op->status = err;
        dm->op->kill_cause = LIBDM_END_FAILED;
    }
}

static const libdm__keeper_ops keeper_ops = {
    .on_pid = keeper_on_pid,
    .on_exit = keeper_on_exit,
    .on_error = keeper_on_error,
};

/* What the keeper opens to record the DM's end: the same store as ours,
 * with the same run directory (malloc'd). */
static char *store_spec(const libdm__store *store)
{
    const char *root = libdm__store_run_root(store);

    if (strcmp(libdm__store_kind(store), "xenstore"))
        return strdup(root);
    return libdm__sprintf("xenstore:%s", root);
}

/* LIBDM_QMP_PIPELINE=0: query-status written only once qmp_capabilities
 * answered, as before issue 23's sixth step (bench-start's same-run
 * baseline). */
static bool pipeline_readiness(void)
{
    const char *e = getenv("LIBDM_QMP_PIPELINE");

    return !e || strcmp(e, "0") != 0;
}

static int connect_monitor(libdm_dm *dm, int cfd)
{
    libdm_qmp *q = NULL;
    int r = libdm_qmp_new(dm->ctx, &q);

    if (r < 0) {
        libdm__close(&cfd);
        return r;
    }
    r = libdm__dm_attach_qmp(dm, q);
    if (r >= 0)
        r = pipeline_readiness() ? libdm__qmp_connect_fd_pipelined(dm->qmp, cfd, dm->timeout_ms)
                                 : libdm_qmp_connect_fd(dm->qmp, cfd, dm->timeout_ms);
    else
        libdm__close(&cfd);
    if (r >= 0)
        r = queue_readiness(dm);
    return r;
}

/* The monitor's socket, bound and connected (QEMU accepts on the listening
 * end, passed to it), the readiness exchange queued on it. */
static int make_socket(libdm_dm *dm)
{
    int cfd = -1, r = libdm__rundir_make_socket(dm->rd, &st(dm)->listen_fd, &cfd);

    if (r == -EADDRINUSE) {
        libdm__dm_error(dm, "domain %u already has a device model: its monitor %s answers",
                 dm->domid, dm->qmp_path);
        return r;
    } else if (r < 0) {
        libdm__dm_error(dm, "cannot create the QMP socket %s: %s", dm->qmp_path, strerror(-r));
        return r;
    }
    r = connect_monitor(dm, cfd);
    if (r < 0)
        libdm__dm_error(dm, "cannot set up the monitor connection: %s", strerror(-r));
    return r;
}

static int make_log(libdm_dm *dm)
{
    int r = libdm__config_log_fd(st(dm)->cfg, &st(dm)->log_fd);

    if (r != 0) { /* the caller's (set_log_fd), or an error */
        if (r < 0)
            libdm__dm_error(dm, "cannot duplicate the log fd: %s", strerror(-r));
        return r;
    }
    r = libdm__rundir_make_log(dm->rd, &st(dm)->log_fd);

    if (r < 0)
        libdm__dm_error(dm, "cannot create %s: %s", dm->log_path, strerror(-r));
    return r;
}

static int spawn_keeper(libdm_dm *dm, libdm__store *store)
{
    const libdm__restrict_plan *plan = &st(dm)->plan;
    char *spec = store_spec(store);
    int r;

    if (!spec)
        return -ENOMEM;
    /* Autokill is armed until the DM is ready: a controller that dies
     * during start-up never leaves a DM nobody knows about. */
    r = libdm__keeper_spawn(dm->ctx,
                            &(libdm__spawn_args){ .name = dm->name,
                                                  .store_spec = spec,
                                                  .run_root = dm->rd->root,
                                                  .xen_socket_domid =
                                                      dm->rd->sock_dfd >= 0 ? dm->domid : 0,
                                                  .argv = st(dm)->argv,
                                                  .qmp_listen_fd = st(dm)->listen_fd,
                                                  .log_fd = st(dm)->log_fd,
                                                  .owner_fd = dm->rd->owner_fd,
                                                  .rundir_fd = dm->rd->dfd, .autokill = true,
                                                  .monitor_fd = dm->rd->monitor_fd,
                                                  .restrict_spec = plan->keeper_spec,
                                                  .pass_fds = plan->cfg->pass_fds,
                                                  .n_pass_fds = plan->cfg->n_pass_fds },
                            &keeper_ops, dm, &dm->keeper);
    free(spec);
    if (r < 0) {
        libdm__dm_error(dm, "cannot start libdm-keeper: %s", strerror(-r));
        return r;
    }
    dm->keeper_pid = libdm__keeper_keeper_pid(dm->keeper);
    dm->autokill_after_ready = st(dm)->autokill;
    /* The keeper holds monitor.lock for us now (the message carries it). */
    libdm__rundir_lend_monitor(dm->rd);
    /* QEMU has them now. */
    libdm__close(&st(dm)->listen_fd);
    libdm__close(&st(dm)->log_fd);
    return 0;
}

/* ---- start: the steps ---- */

static void start_next(libdm_dm *dm, start_step step)
{
    st(dm)->step = step;
    (void)libdm__defer(dm->ctx, &dm->op->tick);
}

static int step_claim(libdm_dm *dm)
{
    libdm__store *store;
    int r = libdm__ctx_store(dm->ctx, &store);

    if (r >= 0)
        r = libdm__dm_claim_name(dm, store);
    if (r >= 0)
        start_next(dm, START_LOCK);
    return r;
}

/* The starter is the monitor's one client until it lets go. */
static int step_lock(libdm_dm *dm)
{
    const libdm_dm_config *cfg = st(dm)->cfg;
    int r = libdm__rundir_lock_monitor(dm->rd, NULL, NULL, NULL);

    if (r != 0) {
        libdm__dm_error(dm, "cannot lock the monitor: %s", strerror(r < 0 ? -r : EBUSY));
        return -EBUSY;
    }
    /* The -sandbox probe runs QEMU: in the background, never in a step. */
    bool probe = cfg->restricted && cfg->seccomp == LIBDM_SECCOMP_AUTO &&
                 libdm__qemu_sandbox_cached(libdm__config_qemu_path(cfg)) == -EAGAIN;
    start_next(dm, probe ? START_PROBE : START_PREPARE);
    return 0;
}

static void on_probed(int has_sandbox, void *user)
{
    libdm_dm *dm = user;

    (void)has_sandbox; /* cached: dm_restrict's plan reads it (restrict.c) */
    st(dm)->probe = NULL;
    start_next(dm, START_PREPARE);
}

static int step_probe(libdm_dm *dm)
{
    int r = libdm__qemu_sandbox_probe_async(dm->ctx, libdm__config_qemu_path(st(dm)->cfg),
                                            LIBDM__SANDBOX_PROBE_MS, on_probed, dm,
                                            &st(dm)->probe);

    if (r < 0)
        libdm__dm_error(dm, "cannot probe QEMU for -sandbox: %s", strerror(-r));
    return r;
}

static int step_prepare(libdm_dm *dm)
{
    /* Planned once: a retry (the record's lock was held) only writes. */
    int r = st(dm)->argv ? 0
                         : libdm__dm_plan_command(dm, st(dm)->cfg, &st(dm)->plan, &st(dm)->argv);

    if (r >= 0)
        r = libdm__dm_write_record(dm);
    if (r == -EAGAIN)
        return r;
    /* The whole configuration, for a migration later (issue 22, 1): a
     * failure costs only that, and migrate says so. */
    if (r >= 0 && libdm__config_doc_save(dm->rd->dfd, st(dm)->cfg) < 0)
        libdm__dm_error(dm, "cannot keep the configuration document: migration will refuse");
    if (r >= 0)
        start_next(dm, START_SOCKET);
    return r;
}

static int step_socket(libdm_dm *dm)
{
    int r = make_socket(dm);

    if (r >= 0)
        start_next(dm, START_LOG);
    return r;
}

static int step_log(libdm_dm *dm)
{
    int r = make_log(dm);

    if (r >= 0)
        start_next(dm, START_SPAWN);
    return r;
}

static int step_spawn(libdm_dm *dm)
{
    libdm__store *store;
    int r = libdm__ctx_store(dm->ctx, &store);

    if (r >= 0)
        r = spawn_keeper(dm, store);
    if (r >= 0)
        st(dm)->step = START_READY;
    return r;
}

/* The start's tick: the next step, or (READY) whether both the pid and QMP's
 * status are in. */
static void start_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    int r = 0;

    switch (st(dm)->step) {
    case START_CLAIM:
        r = step_claim(dm);
        break;
    case START_LOCK:
        r = step_lock(dm);
        break;
    case START_PROBE:
        r = step_probe(dm);
        break;
    case START_PREPARE:
        r = step_prepare(dm);
        break;
    case START_SOCKET:
        r = step_socket(dm);
        break;
    case START_LOG:
        r = step_log(dm);
        break;
    case START_SPAWN:
        r = step_spawn(dm);
        break;
    case START_READY:
        start_maybe_ready(dm);
        return;
    case START_FAILING:
        return;
    }
    if (st(dm)->step == START_PREPARE && libdm__dm_store_retry(dm, t, r))
        return; /* the record's lock was held: the same step again soon */
    if (r < 0)
        start_fail(dm, r);
}

/* Start, in an order where whoever dies at any moment leaves nothing that
 * `list` cannot show or `stop` cannot end:
 *   1. the configuration is checked, in this call (a bad one creates
 *      nothing); everything else runs from the loop, step by step;
 *   2. the name is claimed (owner.lock) and a dead predecessor cleared;
 *   3. dm_restrict is resolved and the final command line built;
 *   4. the record is written, state "spawning", before any process runs;
 *   5. the keeper starts with autokill armed; it records QEMU's pid before
 *      QEMU execs, and holds the claim for the DM's life. */
int libdm__dm_start_async(libdm_ctx *ctx, const libdm_dm_config *cfg, bool autokill,
                          libdm_dm_done_fn *cb, void *userdata, libdm_dm **ret_dm)
{
    libdm__store *store;
    libdm_dm *dm;
    int r = libdm__dm_check_config(ctx, cfg);

    /* The store is opened once per context: an unusable one is said now. */
    if (r >= 0)
        r = libdm__ctx_store(ctx, &store);
    if (r < 0)
        return r;
    dm = libdm__dm_alloc(ctx);
    if (!dm)
        return -ENOMEM;
    r = libdm__dm_init_from_config(dm, cfg);
    if (r >= 0)
        r = libdm__dm_op_begin(dm, &start_ops, sizeof(start_op), cfg->timeout_ms, start_tick, cb,
                               userdata);
    if (r >= 0) {
        st(dm)->listen_fd = st(dm)->log_fd = -1;
        st(dm)->autokill = autokill;
        r = libdm__config_copy(cfg, &st(dm)->cfg);
    }
    /* Due now, yet after every later step of starts already under way
     * (those are deferred to 0): many starts issued at once go depth-first,
     * each DM spawned as soon as possible, its QEMU starting up while the
     * loop sets up the next. */
    if (r >= 0)
        r = libdm__timer_arm(ctx, &dm->op->tick, libdm_now_ms());
    if (r < 0) {
        libdm__dm_op_discard(dm);
        libdm__dm_free(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}

int libdm_dm_start_async(libdm_ctx *ctx, const libdm_dm_config *cfg, libdm_dm_done_fn *cb,
                         void *userdata, libdm_dm **ret_dm)
{
    return libdm__dm_start_async(ctx, cfg, false, cb, userdata, ret_dm);
}

int libdm__dm_start(libdm_ctx *ctx, const libdm_dm_config *cfg, bool autokill, libdm_dm **ret_dm)
{
    sync_op s = { 0 };
    libdm_dm *dm;
    int r;

    if (libdm__dispatch_depth(ctx) > 0)
        return -EDEADLK;
    r = libdm__dm_start_async(ctx, cfg, autokill, libdm__dm_sync_done_cb, &s, &dm);
    if (r < 0)
        return r;
    r = libdm__dm_sync_wait(dm, &s);
    if (r < 0) {
        libdm__dm_free(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}

int libdm_dm_start(libdm_ctx *ctx, const libdm_dm_config *cfg, libdm_dm **ret_dm)
{
    return libdm__dm_start(ctx, cfg, false, ret_dm);
}

