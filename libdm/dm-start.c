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

static void start_deadline(libdm_ctx *ctx, libdm__timer *t, void *user);
static void unclaim(libdm_dm *dm);

void libdm__dm_start_op_fini(libdm__op *op)
{
    libdm_dm_config_free(op->u.start.cfg);
    libdm__restrict_plan_clear(&op->u.start.plan);
    libdm_strv_free(op->u.start.argv);
    libdm__sandbox_probe_cancel(op->u.start.probe);
    libdm__close(&op->u.start.listen_fd);
    libdm__close(&op->u.start.log_fd);
    op->u.start.caps_call = libdm_qmp_slot_free(op->u.start.caps_call);
}

/* Removes what the steps of a start made before its keeper ran. */
static void undo_unspawned(libdm_dm *dm)
{
    unclaim(dm);
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

void libdm__dm_start_abandon(libdm_dm *dm)
{
    if (libdm__dm_op_kind(dm) == OP_START && !dm->keeper && !dm->unclaimed)
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

/* The start failed once the keeper may run: kill it, and finish when its
 * end is reported (bounded). @status 0: the DM's end says why. */
void libdm__dm_start_fail(libdm_dm *dm, int status)
{
    libdm__op *op = dm->op;

    if (libdm__dm_op_kind(dm) != OP_START || op->u.start.step == START_FAILING)
        return;
    if (!dm->keeper) {
        start_refused(dm, status < 0 ? status : -EIO);
        return;
    }
    op->u.start.step = START_FAILING;
    op->status = status;
    if (dm->exited) {
        libdm__dm_start_fail_finished(dm);
        return;
    }
    /* A monitor that failed (status 0) most often means QEMU died and the
     * keeper is about to say how: killing the keeper now (QEMU's pid not
     * yet told) would lose that. So it gets a short grace first; a start
     * that failed for its own reason (a deadline, an error) kills at once. */
    if (status == 0 && !op->u.start.have_pid) {
        op->u.start.grace = true;
        (void)libdm__timer_arm(dm->ctx, &op->deadline, libdm__deadline(DM_END_GRACE_MS));
        return;
    }
    /* Before the keeper said QEMU's pid, the keeper itself is killed (and
     * QEMU with it): a start never ends with a QEMU nobody follows. */
    (void)libdm__keeper_kill(dm->keeper);
    /* Bounded wait for the keeper to report the end. */
    (void)libdm__timer_arm(dm->ctx, &op->deadline, libdm__deadline(DM_KILL_WAIT_MS));
}

void libdm__dm_start_fail_finished(libdm_dm *dm)
{
    int status = dm->op && dm->op->status < 0 ? dm->op->status : -ECHILD;

    libdm__dm_clean_then_finish(dm, status);
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
            if (libdm__dm_op_kind(dm) == OP_STOP && dm->keeper_pid > 0 &&
                libdm__rundir_owner_held(dm->rd, &holder) == 1 && holder == dm->keeper_pid) {
                libdm__dm_error(dm, "the device model ended, but its keeper (pid %d) still "
                                "holds its name: record and files left", holder);
                op->clean_status = -EBUSY;
            }
            op->clean = CLEAN_DONE;
        }
        break;
    case CLEAN_DEVICES:
        libdm__devices_cleanup(ctx, dm->nics); /* netdev.c: leftover taps */
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
        if (libdm__dm_store(dm, &store) >= 0)
            (void)libdm__store_del(store, dm->name);
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

/* ---- start: readiness by QMP alone ---- */

static bool runstate_is_ready(const libdm_dm *dm, const char *rs)
{
    if (rs && !strcmp(rs, "running") && !strcmp(dm->profile, LIBDM__PROFILE_XL))
        return true; /* libxl resumed it over its own monitor (config-adopt.c) */
    return rs && (!strcmp(rs, "prelaunch") || !strcmp(rs, "paused") || !strcmp(rs, "inmigrate"));
}

static void start_maybe_ready(libdm_dm *dm)
{
    libdm__op *op = dm->op;

    if (libdm__dm_op_kind(dm) != OP_START || op->u.start.step != START_READY ||
        !op->u.start.have_pid || !op->u.start.have_status)
        return;
    if (!strcmp(dm->runstate, "inmigrate"))
        dm->incoming = true;
    libdm__dm_set_state(dm, dm->incoming              ? LIBDM_DM_INCOMING
                            : !strcmp(dm->runstate, "running") ? LIBDM_DM_RUNNING
                                                              : LIBDM_DM_PAUSED);
    if (libdm__dm_write_record(dm) < 0) {
        libdm__dm_start_fail(dm, -EIO);
        return;
    }
    /* Recorded as ready: from now on the keeper alone holds the name, and
     * only a migration destination stays under autokill (until Finish). */
    if (!dm->autokill_after_ready && libdm__keeper_set_autokill(dm->keeper, false) < 0) {
        libdm__dm_start_fail(dm, -ESRCH);
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
    if (dm->op->u.start.step == START_FAILING)
        return;
    if (r->status < 0) {
        libdm__dm_reply_error(dm, r, "query-status");
        libdm__dm_start_fail(dm, r->status);
        return;
    }
    rs = libdm__json_get_str(r->value, "status");
    if (!runstate_is_ready(dm, rs)) {
        /* Started with -S, QEMU can only be in these states: anything else
         * is a DM that does not do what it is told. */
        libdm__dm_error(dm, "device model reports runstate '%s' at start, not a paused one",
                 rs ? rs : "(none)");
        libdm__dm_start_fail(dm, -EPROTO);
        return;
    }
    libdm__dm_set_runstate(dm, rs);
    dm->op->u.start.have_status = true;
    /* The pid may still be on its way from the keeper: wait for it too. */
    if (!dm->op->u.start.have_pid)
        (void)libdm__timer_arm(dm->ctx, &dm->op->tick, libdm_now_ms() + 5);
    start_maybe_ready(dm);
}

static void start_on_caps(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;

    dm->op->u.start.caps_call = libdm_qmp_slot_free(dm->op->u.start.caps_call);
    if (r->status < 0 && dm->op->u.start.step != START_FAILING) {
        libdm__dm_reply_error(dm, r, "migrate-set-capabilities events");
        libdm__dm_start_fail(dm, r->status);
    }
}

static libdm_json *events_capability_args(void)
{
    libdm_json *args = libdm_json_new_object(), *list = libdm_json_new_array(),
               *cap = libdm_json_new_object();

    if (!args || !list || !cap ||
        libdm_json_object_add(cap, "capability", libdm_json_new_string("events")) < 0 ||
        libdm_json_object_add(cap, "state", libdm_json_new_bool(1)) < 0) {
        libdm_json_free(args);
        libdm_json_free(list);
        libdm_json_free(cap);
        return NULL;
    }
    if (libdm_json_array_append(list, cap) < 0 ||
        libdm_json_object_add(args, "capabilities", list) < 0)
        return libdm_json_free(args);
    return args;
}

/* Queued on the connection before QEMU even runs: greeting, capabilities,
 * the events migration capability, then query-status decides readiness. */
static int queue_readiness(libdm_dm *dm)
{
    libdm_json *args = events_capability_args();
    int r;

    if (!args)
        return -ENOMEM;
    r = libdm__qmp_call_async_internal(dm->qmp, "migrate-set-capabilities", args, dm->timeout_ms,
                             start_on_caps, dm, &dm->op->u.start.caps_call);
    libdm_json_free(args);
    if (r >= 0)
        r = libdm__dm_call(dm, "query-status", NULL, start_on_status);
    return r;
}

static void start_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (dm->op->cleaning)
        return; /* the DM ended: its files go, a few dispatches */
    if (dm->op->u.start.step == START_FAILING) {
        libdm__op *op = dm->op;

        if (op->u.start.grace) { /* the keeper said nothing: kill now */
            op->u.start.grace = false;
            (void)libdm__keeper_kill(dm->keeper);
            (void)libdm__timer_arm(ctx, &op->deadline, libdm__deadline(DM_KILL_WAIT_MS));
            return;
        }

        /* Not gone after SIGKILL: the keeper goes too (and QEMU with it)
         * once; then the start gives up, the DM left recorded (listed,
         * stoppable), never removed while something of it may run. */
        if (!op->u.start.killed_keeper) {
            op->u.start.killed_keeper = true;
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
    libdm__dm_start_fail(dm, -ETIMEDOUT);
}

/* The domain the DM is claimed for (libxl's per-domain paths): 0 if none. */
static uint32_t xen_domid(const libdm_dm *dm)
{
    return !strcmp(dm->profile, "xen") ? dm->domid : 0;
}

/* The name is ours (owner.lock held): what an earlier DM of that name left
 * must provably be dead before it is cleared. An unreadable record is not
 * proof (defect: a truncated or planted record once meant "free" and a
 * second QEMU was started beside a live one). */
static int clear_leftovers(libdm_dm *dm, libdm__store *store)
{
    libdm__record rec;
    int r = libdm__store_get(store, dm->name, &rec);

    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        libdm__dm_error(dm, "cannot tell whether the name is free: its record is unreadable (%s); "
                 "inspect %s and remove it by hand", strerror(-r), dm->rd->path);
        return -EEXIST;
    }
    if (libdm__dm_record_alive(&rec)) {
        /* Only a DM started before names were claimed by lock gets here. */
        libdm__dm_error(dm, "a device model of that name is already running (pid %d)", rec.pid);
        libdm__record_clear(&rec);
        return -EEXIST;
    }
    (void)libdm__store_del(store, dm->name);
    libdm__devices_cleanup(dm->ctx, rec.nics); /* netdev.c: its taps */
    /* The dead DM's per-domain files go only under that domain's claim. */
    libdm__dm_remove_own_chroot(dm->rd, rec.profile, rec.domid);
    if (rec.profile && !strcmp(rec.profile, "xen")) {
        libdm__rundir_remove_xen_sockets(dm->rd, LIBDM__XEN_RUN_DIR, rec.domid);
        if (rec.domid != xen_domid(dm))
            libdm__rundir_drop_domid(dm->rd, rec.domid);
    }
    libdm__record_clear(&rec);
    libdm__rundir_remove(dm->rd, LIBDM__RD_REMOVE_LEFTOVERS);
    return 0;
}

/* Claims the name and its run directory. Refusals leave everything as it
 * was: nothing is removed but what this call created. */
static int claim_name(libdm_dm *dm, libdm__store *store)
{
    const char *root = libdm__store_run_root(store);
    char *why = NULL;
    int r;

    if (!root)
        return -ENOENT;
    r = libdm__rundir_claim(root, dm->name, &dm->rd, &why);
    if (r < 0) {
        libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    /* One DM per domain, claimed before anything of it (its socket, its
     * chroot, a dead predecessor's files) is touched. */
    r = libdm__rundir_hold_domid(dm->rd, xen_domid(dm), &why);
    if (r < 0) {
        libdm__dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    r = clear_leftovers(dm, store);
    if (r >= 0)
        r = libdm__dm_set_paths(dm, true);
    return r;
}

/* Undoes a start that failed before its keeper ran: only what it made. */
static void unclaim(libdm_dm *dm)
{
    libdm__store *store;

    if (!dm->rd)
        return;
    /* A record write that failed half-way leaves the store's own files
     * (its lock, a temporary): under our claim, whatever is recorded for
     * the name is ours to remove. */
    if (dm->rd->owner_fd >= 0 && libdm__dm_store(dm, &store) >= 0)
        (void)libdm__store_del(store, dm->name);
    if (dm->confinement) /* the chroot restrict.c made, if any */
        libdm__dm_remove_own_chroot(dm->rd, dm->profile, dm->domid);
    libdm__rundir_remove(dm->rd, LIBDM__RD_REMOVE_MADE);
}

/* What the keeper opens to record the DM's end: the same store as ours,
 * with the same run directory (malloc'd). */
static char *store_spec(const libdm__store *store)
{
    const char *root = libdm__store_run_root(store);

    if (strcmp(libdm__store_kind(store), "xenstore"))
        return strdup(root);
    return libdm__sprintf("xenstore:%s", root);
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
        r = libdm_qmp_connect_fd(dm->qmp, cfd, dm->timeout_ms);
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
    int cfd = -1, r = libdm__rundir_make_socket(dm->rd, &dm->op->u.start.listen_fd, &cfd);

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
    int r = libdm__rundir_make_log(dm->rd, &dm->op->u.start.log_fd);

    if (r < 0)
        libdm__dm_error(dm, "cannot create %s: %s", dm->log_path, strerror(-r));
    return r;
}

static int spawn_keeper(libdm_dm *dm, libdm__store *store)
{
    libdm__op *op = dm->op;
    const libdm__restrict_plan *plan = &op->u.start.plan;
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
                                                  .argv = op->u.start.argv,
                                                  .qmp_listen_fd = op->u.start.listen_fd,
                                                  .log_fd = op->u.start.log_fd,
                                                  .owner_fd = dm->rd->owner_fd,
                                                  .rundir_fd = dm->rd->dfd, .autokill = true,
                                                  .restrict_spec = plan->keeper_spec,
                                                  .pass_fds = plan->cfg->pass_fds,
                                                  .n_pass_fds = plan->cfg->n_pass_fds },
                            &libdm__dm_keeper_ops, dm, &dm->keeper);
    free(spec);
    if (r < 0) {
        libdm__dm_error(dm, "cannot start libdm-keeper: %s", strerror(-r));
        return r;
    }
    dm->keeper_pid = libdm__keeper_keeper_pid(dm->keeper);
    dm->autokill_after_ready = op->u.start.autokill;
    /* QEMU has them now. */
    libdm__close(&op->u.start.listen_fd);
    libdm__close(&op->u.start.log_fd);
    return 0;
}

static int dm_init_from_config(libdm_dm *dm, const libdm_dm_config *cfg)
{
    dm->name = strdup(cfg->name);
    dm->profile = strdup(cfg->adopt_argv ? LIBDM__PROFILE_XL
                                         : libdm__profile_to_string(cfg->profile));
    dm->machine = strdup(libdm__config_machine(cfg));
    dm->memory_mb = libdm__config_memory_mb(cfg);
    dm->domid = cfg->domid;
    dm->timeout_ms = cfg->timeout_ms;
    dm->incoming = cfg->incoming != NULL;
    dm->incoming_at_start = cfg->incoming && strcmp(cfg->incoming, "defer") != 0;
    dm->created_ms = (int64_t)time(NULL) * 1000;
    dm->state = LIBDM_DM_SPAWNING;
    return dm->name && dm->profile && dm->machine ? 0 : -ENOMEM;
}

/* A configuration that cannot become a command line fails here, before
 * anything is created. */
static int check_config(libdm_ctx *ctx, const libdm_dm_config *cfg)
{
    char **argv = NULL;
    int r;

    if (!cfg || !cfg->name) {
        LIBDM__ERROR(ctx, "a device model needs a name");
        return -EINVAL;
    }
    /* A restricted one is resolved first (restrict.c says what is wrong). */
    if (cfg->restricted)
        return 0;
    r = libdm_dm_config_build_argv(cfg, LIBDM__KEEPER_QMP_FD, &argv);
    if (r < 0)
        LIBDM__ERROR(ctx, "%s: invalid configuration: cannot build the command line: %s",
                     cfg->name, strerror(-r));
    libdm_strv_free(argv);
    return r;
}

/* dm_restrict resolved (runas, chroot, seccomp: restrict.c), then the
 * command line QEMU really gets. */
static int plan_command(libdm_dm *dm, const libdm_dm_config *cfg, libdm__restrict_plan *plan,
                        char ***ret_argv)
{
    int r = libdm__restrict_prepare(dm->ctx, cfg, dm->dir, plan);

    if (r < 0)
        return r;
    dm->confinement = plan->confinement;
    plan->confinement = NULL;
    r = libdm__devices_prepare(dm->ctx, plan->cfg, &dm->nics); /* devices-run.c */
    if (r < 0)
        return r;
    r = libdm_dm_config_build_argv(plan->cfg, LIBDM__KEEPER_QMP_FD, ret_argv);
    if (r < 0)
        libdm__dm_error(dm, "invalid configuration: cannot build the command line: %s", strerror(-r));
    return r;
}

/* ---- start: the steps ---- */

static void start_next(libdm_dm *dm, start_step step)
{
    dm->op->u.start.step = step;
    (void)libdm__defer(dm->ctx, &dm->op->tick);
}

static int step_claim(libdm_dm *dm)
{
    libdm__store *store;
    int r = libdm__ctx_store(dm->ctx, &store);

    if (r >= 0)
        r = claim_name(dm, store);
    if (r >= 0)
        start_next(dm, START_LOCK);
    return r;
}

/* The starter is the monitor's one client until it lets go. */
static int step_lock(libdm_dm *dm)
{
    const libdm_dm_config *cfg = dm->op->u.start.cfg;
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
    dm->op->u.start.probe = NULL;
    start_next(dm, START_PREPARE);
}

static int step_probe(libdm_dm *dm)
{
    libdm__op *op = dm->op;
    int r = libdm__qemu_sandbox_probe_async(dm->ctx, libdm__config_qemu_path(op->u.start.cfg),
                                            LIBDM__SANDBOX_PROBE_MS, on_probed, dm,
                                            &op->u.start.probe);

    if (r < 0)
        libdm__dm_error(dm, "cannot probe QEMU for -sandbox: %s", strerror(-r));
    return r;
}

static int step_prepare(libdm_dm *dm)
{
    libdm__op *op = dm->op;
    int r = plan_command(dm, op->u.start.cfg, &op->u.start.plan, &op->u.start.argv);

    if (r >= 0)
        r = libdm__dm_write_record(dm);
    /* The whole configuration, for a migration later (issue 22, 1): a
     * failure costs only that, and migrate says so. */
    if (r >= 0 && libdm__config_doc_save(dm->rd->dfd, op->u.start.cfg) < 0)
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
        dm->op->u.start.step = START_READY;
    return r;
}

/* The start's tick: the next step, or (READY) another look for the pid. */
static void start_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    int r = 0;

    switch (dm->op->u.start.step) {
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
        if (!dm->op->u.start.have_pid)
            (void)libdm__timer_arm(ctx, t, libdm_now_ms() + 5);
        start_maybe_ready(dm);
        return;
    case START_FAILING:
        return;
    }
    if (r < 0)
        libdm__dm_start_fail(dm, r);
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
    int r = check_config(ctx, cfg);

    /* The store is opened once per context: an unusable one is said now. */
    if (r >= 0)
        r = libdm__ctx_store(ctx, &store);
    if (r < 0)
        return r;
    dm = libdm__dm_alloc(ctx);
    if (!dm)
        return -ENOMEM;
    r = dm_init_from_config(dm, cfg);
    if (r >= 0)
        r = libdm__dm_op_begin(dm, OP_START, cfg->timeout_ms, start_deadline, start_tick, cb,
                               userdata);
    if (r >= 0) {
        dm->op->u.start.autokill = autokill;
        r = libdm__config_copy(cfg, &dm->op->u.start.cfg);
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

