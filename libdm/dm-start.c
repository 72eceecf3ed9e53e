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

/* ---- start ---- */

static void start_deadline(libdm_ctx *ctx, libdm__timer *t, void *user);

void libdm__dm_start_fail(libdm_dm *dm, int status)
{
    if (dm->op_failing)
        return;
    dm->op_failing = true;
    dm->op_status = status;
    if (dm->exited) {
        libdm__dm_start_fail_finished(dm);
        return;
    }
    if (dm->keeper)
        (void)libdm__keeper_signal(dm->keeper, SIGKILL);
    /* Bounded wait for the keeper to report the end. */
    (void)libdm__timer_arm(dm->ctx, &dm->op_deadline, libdm__deadline(DM_KILL_WAIT_MS));
}

void libdm__dm_start_fail_finished(libdm_dm *dm)
{
    int status = dm->op_status < 0 ? dm->op_status : -ECHILD;

    libdm__dm_close_qmp(dm);
    libdm__devices_cleanup(dm->ctx, dm->nics); /* devices-run.c: leftover taps */
    libdm__dm_remove_files(dm->ctx, dm->name, dm->rd, dm->profile, dm->domid);
    libdm__dm_set_state(dm, LIBDM_DM_DEAD);
    libdm__dm_op_finish(dm, status);
}

static bool runstate_is_ready(const char *rs)
{
    return rs && (!strcmp(rs, "prelaunch") || !strcmp(rs, "paused") || !strcmp(rs, "inmigrate"));
}

void libdm__dm_start_maybe_ready(libdm_dm *dm)
{
    if (dm->op != OP_START || dm->op_failing || !dm->start_have_pid || !dm->start_have_status)
        return;
    if (!strcmp(dm->runstate, "inmigrate"))
        dm->incoming = true;
    libdm__dm_set_state(dm, dm->incoming ? LIBDM_DM_INCOMING : LIBDM_DM_PAUSED);
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

    dm->call = libdm_qmp_slot_free(dm->call);
    if (dm->op_failing)
        return;
    if (r->status < 0) {
        libdm__dm_reply_error(dm, r, "query-status");
        libdm__dm_start_fail(dm, r->status);
        return;
    }
    rs = libdm__json_get_str(r->value, "status");
    if (!runstate_is_ready(rs)) {
        /* Started with -S, QEMU can only be in these states: anything else
         * is a DM that does not do what it is told. */
        libdm__dm_error(dm, "device model reports runstate '%s' at start, not a paused one",
                 rs ? rs : "(none)");
        libdm__dm_start_fail(dm, -EPROTO);
        return;
    }
    libdm__dm_set_runstate(dm, rs);
    dm->start_have_status = true;
    /* The pid may still be on its way from the keeper: wait for it too. */
    if (!dm->start_have_pid)
        (void)libdm__timer_arm(dm->ctx, &dm->op_tick, libdm_now_ms() + 5);
    libdm__dm_start_maybe_ready(dm);
}

void libdm__dm_start_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (dm->op == OP_START && !dm->start_have_pid)
        (void)libdm__timer_arm(ctx, t, libdm_now_ms() + 5);
    libdm__dm_start_maybe_ready(dm);
}

static void start_on_caps(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;

    dm->caps_call = libdm_qmp_slot_free(dm->caps_call);
    if (r->status < 0 && !dm->op_failing) {
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
    r = libdm_qmp_call_async(dm->qmp, "migrate-set-capabilities", args, dm->timeout_ms,
                             start_on_caps, dm, &dm->caps_call);
    libdm_json_free(args);
    if (r >= 0)
        r = libdm__dm_call(dm, "query-status", NULL, start_on_status);
    return r;
}

static void start_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (dm->op_failing) {
        /* The DM did not go away even after SIGKILL: give up on it. */
        libdm__dm_error(dm, "device model did not exit after SIGKILL");
        libdm__dm_start_fail_finished(dm);
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
    libdm__dm_remove_own_chroot(dm->rd, rec.profile, rec.domid);
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
    r = clear_leftovers(dm, store);
    if (r >= 0)
        r = libdm__dm_set_paths(dm, true);
    if (r < 0)
        return r;
    /* The starter is the monitor's one client until it lets go. */
    return libdm__rundir_lock_monitor(dm->rd, NULL, NULL, NULL) == 0 ? 0 : -EBUSY;
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

/* What the keeper opens to record the DM's end: the same store as ours. */
static const char *store_spec(const libdm__store *store)
{
    return strcmp(libdm__store_kind(store), "xenstore") ? libdm__store_run_root(store) : "xenstore";
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

static int spawn_dm(libdm_dm *dm, char **argv, libdm__store *store, bool autokill,
                    const libdm__restrict_plan *plan)
{
    int lfd = -1, cfd = -1, log_fd = -1, r;

    r = libdm__rundir_make_socket(dm->rd, &lfd, &cfd);
    if (r == -EADDRINUSE) {
        libdm__dm_error(dm, "domain %u already has a device model: its monitor %s answers",
                 dm->domid, dm->qmp_path);
        goto out;
    } else if (r < 0) {
        libdm__dm_error(dm, "cannot create the QMP socket %s: %s", dm->qmp_path, strerror(-r));
        goto out;
    }
    r = libdm__rundir_make_log(dm->rd, &log_fd);
    if (r < 0) {
        libdm__dm_error(dm, "cannot create %s: %s", dm->log_path, strerror(-r));
        goto out;
    }
    r = connect_monitor(dm, cfd);
    cfd = -1;
    if (r < 0) {
        libdm__dm_error(dm, "cannot set up the monitor connection: %s", strerror(-r));
        goto out;
    }
    /* Autokill is armed until the DM is ready: a controller that dies
     * during start-up never leaves a DM nobody knows about. */
    r = libdm__keeper_spawn(dm->ctx,
                            &(libdm__spawn_args){ .name = dm->name,
                                                  .store_spec = store_spec(store),
                                                  .run_root = dm->rd->root,
                                                  .xen_socket_domid =
                                                      dm->rd->sock_dfd >= 0 ? dm->domid : 0,
                                                  .argv = argv, .qmp_listen_fd = lfd,
                                                  .log_fd = log_fd, .owner_fd = dm->rd->owner_fd,
                                                  .rundir_fd = dm->rd->dfd, .autokill = true,
                                                  .restrict_spec = plan->keeper_spec,
                                                  .pass_fds = plan->cfg->pass_fds,
                                                  .n_pass_fds = plan->cfg->n_pass_fds },
                            &libdm__dm_keeper_ops, dm, &dm->keeper);
    if (r >= 0)
        dm->keeper_pid = libdm__keeper_keeper_pid(dm->keeper);
    else
        libdm__dm_error(dm, "cannot start libdm-keeper: %s", strerror(-r));
    dm->autokill_after_ready = autokill;
out:
    libdm__close(&lfd);
    libdm__close(&cfd);
    libdm__close(&log_fd);
    return r;
}

static int dm_init_from_config(libdm_dm *dm, const libdm_dm_config *cfg)
{
    dm->name = strdup(cfg->name);
    dm->profile = strdup(libdm__profile_to_string(cfg->profile));
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

/* Start, in an order where whoever dies at any moment leaves nothing that
 * `list` cannot show or `stop` cannot end:
 *   1. the command line is built (a bad configuration creates nothing);
 *   2. the name is claimed (owner.lock) and a dead predecessor cleared;
 *   3. the record is written, state "spawning", before any process runs;
 *   4. the keeper starts with autokill armed; it records QEMU's pid before
 *      QEMU execs, and holds the claim for the DM's life. */
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

/* Start, in an order where whoever dies at any moment leaves nothing that
 * `list` cannot show or `stop` cannot end:
 *   1. the configuration is checked (a bad one creates nothing);
 *   2. the name is claimed (owner.lock) and a dead predecessor cleared;
 *   3. dm_restrict is resolved and the final command line built;
 *   4. the record is written, state "spawning", before any process runs;
 *   5. the keeper starts with autokill armed; it records QEMU's pid before
 *      QEMU execs, and holds the claim for the DM's life. */
int libdm__dm_start_async(libdm_ctx *ctx, const libdm_dm_config *cfg, bool autokill,
                          libdm_dm_done_fn *cb, void *userdata, libdm_dm **ret_dm)
{
    libdm__restrict_plan plan = { 0 };
    libdm__store *store;
    libdm_dm *dm;
    char **argv = NULL;
    int r = check_config(ctx, cfg);

    if (r >= 0)
        r = libdm__ctx_store(ctx, &store);
    if (r < 0)
        return r;
    dm = libdm__dm_alloc(ctx);
    if (!dm)
        return -ENOMEM;
    r = dm_init_from_config(dm, cfg);
    if (r >= 0)
        r = claim_name(dm, store);
    if (r >= 0)
        r = plan_command(dm, cfg, &plan, &argv);
    if (r >= 0)
        r = libdm__dm_write_record(dm);
    if (r >= 0)
        r = libdm__dm_op_begin(dm, OP_START, cfg->timeout_ms, start_deadline, cb, userdata);
    if (r >= 0)
        r = spawn_dm(dm, argv, store, autokill, &plan);
    libdm_strv_free(argv);
    libdm__restrict_plan_clear(&plan);
    if (r < 0) {
        libdm__dm_close_qmp(dm);
        unclaim(dm);
        dm->op = OP_NONE;
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

