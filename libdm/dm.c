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

const char *const libdm__dm_op_names[] = {
    [OP_NONE] = "no operation", [OP_START] = "start", [OP_RESUME] = "resume",
    [OP_STOP] = "stop",         [OP_PAUSE] = "pause", [OP_QUERY] = "query-status",
    [OP_ATTACH] = "attach",     [OP_MIGRATE] = "migration",
    [OP_DEVICES] = "query-devices",
};

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

static void release_keeper_pidfd(libdm_ctx *ctx, int *pidfd);

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

/* One notice per run, like completions: the callback may release the DM. */
static void notice_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    notice *n = dm->notice_head;

    if (!n || must_postpone(dm, t))
        return;
    dm->notice_head = n->next;
    if (!dm->notice_head)
        dm->notice_tail = &dm->notice_head;
    else
        (void)libdm__defer(ctx, t);
    n->ev.cause = n->cause;
    if (n->ev.new_state == LIBDM_DM_DEAD)
        n->ev.exit_status = dm->exited ? dm->exit_status : -1;
    if (dm->event_cb)
        dm->event_cb(dm, &n->ev, dm->event_user);
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
    if ((to == LIBDM_DM_DEAD && libdm__dm_op_kind(dm) != OP_STOP) || to == LIBDM_DM_BROKEN)
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

/* Sets the DM's last error (libdm_dm_last_error) and logs it at @level. */
static void dm_errorv(libdm_dm *dm, xentoollog_level level, const char *fmt, va_list ap)
{
    char *msg;

    if (vasprintf(&msg, fmt, ap) < 0)
        return;
    free(dm->last_error);
    dm->last_error = libdm__sprintf("%s: %s", dm->name, msg);
    free(msg);
    if (dm->last_error)
        libdm__log(dm->ctx, level, -1, "%s", dm->last_error);
}

void libdm__dm_error_append(libdm_dm *dm, const char *fmt, ...)
{
    char *msg, *joined;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (!dm->last_error) {
        libdm__dm_error(dm, "%s", msg);
        free(msg);
        return;
    }
    joined = libdm__sprintf("%s; %s", dm->last_error, msg);
    if (joined) {
        free(dm->last_error);
        dm->last_error = joined;
        libdm__log(dm->ctx, XTL_ERROR, -1, "%s: %s", dm->name, msg);
    }
    free(msg);
}

void libdm__dm_error(libdm_dm *dm, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dm_errorv(dm, XTL_ERROR, fmt, ap);
    va_end(ap);
}

/* An expected event, reported to the host anyway (through an operation's
 * result or its event callback): logged once, below ERROR. */
static void dm_notice(libdm_dm *dm, const char *fmt, ...) LIBDM__PRINTF(2, 3);
static void dm_notice(libdm_dm *dm, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dm_errorv(dm, libdm__dm_op_kind(dm) == OP_START ? XTL_ERROR : XTL_INFO, fmt, ap);
    va_end(ap);
}

void libdm__dm_set_runstate(libdm_dm *dm, const char *rs)
{
    char *copy = rs ? strdup(rs) : NULL;

    if (!copy)
        return;
    free(dm->runstate);
    dm->runstate = copy;
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
    if (r < 0)
        libdm__dm_error(dm, "cannot record the device model: %s", strerror(-r));
    return r;
}

/* Records the current state. A failed write is retried once: the record
 * must never silently say something else than the DM does. */
int libdm__dm_record_state(libdm_dm *dm)
{
    libdm__store *store;
    int r = libdm__dm_store(dm, &store);

    for (int attempt = 0; r >= 0 && attempt < 2; attempt++) {
        r = libdm__store_set_state(store, dm->name, libdm_dm_state_to_string(dm->state), -1);
        if (r >= 0 || r == -ENOENT)
            return r;
    }
    libdm__dm_error(dm, "the device model is %s but its record could not be updated: %s",
             libdm_dm_state_to_string(dm->state), strerror(-r));
    return r;
}

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

/* Removes the record, the socket, the log and the directory of a DM that
 * is gone, through its directory fd, and only while holding the name's
 * claim: once the keeper exited, another start may own the name already. */
void libdm__dm_remove_files(libdm_ctx *ctx, const char *name, libdm__rundir *rd,
                         const char *profile, uint32_t domid)
{
    libdm__store *store;
    bool held_here = rd && rd->owner_fd >= 0;

    if (rd && !held_here && libdm__rundir_reclaim(rd) < 0)
        return; /* the name has a new owner: nothing here is ours any more */
    if (libdm__ctx_store(ctx, &store) >= 0)
        (void)libdm__store_del(store, name);
    if (rd) {
        /* libdm's own chroot (never a caller's), before the directory. */
        libdm__dm_remove_own_chroot(rd, profile, domid);
        if (profile && !strcmp(profile, "xen"))
            libdm__rundir_remove_xen_sockets(rd, LIBDM__XEN_RUN_DIR, domid);
        libdm__rundir_remove(rd, LIBDM__RD_REMOVE_ALL);
        libdm__rundir_drop_domid(rd, domid);
    }
    if (rd && !held_here)
        libdm__close(&rd->owner_fd);
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
    switch (op->kind) {
    case OP_START:
        libdm__dm_start_op_fini(op);
        break;
    case OP_ATTACH:
        free(op->u.attach.lock_holder);
        break;
    default:
        break;
    }
    if (op->fini)
        op->fini(op);
    free(op);
}

/* Ends the current operation; its callback runs from the loop, never from
 * the call that ended it. */
void libdm__dm_op_finish(libdm_dm *dm, int status)
{
    libdm__op *op = dm->op;
    completion *c;

    if (!op)
        return;
    c = calloc(1, sizeof(*c));
    if (c) {
        *c = (completion){ .cb = op->cb, .user = op->user, .destroy = op->destroy,
                           .status = status };
        *dm->done_tail = c;
        dm->done_tail = &c->next;
        (void)libdm__defer(dm->ctx, &dm->op_done);
    } else {
        LIBDM__ERROR(dm->ctx, "%s: out of memory: an operation's callback is lost", dm->name);
        if (op->destroy)
            op->destroy(op->user);
    }
    op_free(dm, op);
}

void libdm__dm_op_discard(libdm_dm *dm)
{
    if (dm->op)
        op_free(dm, dm->op);
}

/* Starts operation @kind with fresh timers of its own: @on_deadline runs
 * if it has not finished in time, @on_tick (if any) when it arms its tick. */
int libdm__dm_op_begin(libdm_dm *dm, op_kind kind, int timeout_ms, libdm__timer_fn *on_deadline,
                       libdm__timer_fn *on_tick, libdm_dm_done_fn *cb, void *user)
{
    libdm__op *op;
    int r;

    if (dm->op)
        return -EBUSY;
    op = calloc(1, sizeof(*op));
    if (!op)
        return -ENOMEM;
    *op = (libdm__op){ .dm = dm, .kind = kind, .cb = cb, .user = user };
    if (kind == OP_START) {
        op->u.start.listen_fd = op->u.start.log_fd = -1;
        /* Its steps create files and clone: one per dispatch. */
        libdm__timer_set_alone(&op->tick, true);
    }
    libdm__timer_init(&op->deadline, on_deadline, dm);
    libdm__timer_init(&op->tick, on_tick, dm);
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
 * (dm_exited() ends it at once) or with @status if it does not. */
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
    if (!dm->op)
        return -ECANCELED;
    dm->op->call = libdm_qmp_slot_free(dm->op->call);
    if (!dm->qmp || libdm_qmp_get_state(dm->qmp) >= LIBDM_QMP_DRAINING)
        return -ENOTCONN;
    return libdm__qmp_call_async_internal(dm->qmp, cmd, args, dm->timeout_ms, cb, dm,
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

static void dm_exited(libdm_dm *dm, int status)
{
    char *how, *tail;

    if (dm->exited)
        return;
    dm->exited = true;
    dm->exit_status = status;
    libdm__watch_del(dm->pidfd_watch);
    dm->pidfd_watch = NULL;
    libdm__close(&dm->pidfd);
    libdm__watch_del(dm->keeper_watch);
    dm->keeper_watch = NULL;
    release_keeper_pidfd(dm->ctx, &dm->keeper_pidfd);
    if (libdm__dm_op_kind(dm) == OP_START && dm->op->u.start.step == START_FAILING &&
        dm->op->status < 0 && dm->last_error) {
        /* Killed for a reason already said (a deadline...): that stays the
         * first cause, the kill only follows it. */
        how = libdm__dm_describe_status(status);
        libdm__dm_error_append(dm, "device model (pid %d) then %s", dm->pid,
                               how ? how : "ended");
        free(how);
    } else if (libdm__dm_op_kind(dm) != OP_STOP) {
        how = libdm__dm_describe_status(status);
        tail = log_tail(dm);
        dm_notice(dm, "device model (pid %d) %s%s%s%s", dm->pid, how ? how : "ended",
                 libdm__dm_op_kind(dm) == OP_START ? " during start-up" : "",
                 tail ? "; log: " : "", tail ? tail : "");
        free(how);
        free(tail);
    }
    libdm__dm_set_state(dm, LIBDM_DM_DEAD);
    if (libdm__dm_op_kind(dm) == OP_STOP) {
        libdm__dm_stop_finished(dm);
    } else if (libdm__dm_op_kind(dm) == OP_START) {
        libdm__dm_start_fail_finished(dm);
    } else {
        libdm__dm_op_finish(dm, -ESRCH);
        /* DEAD holds no process and no fd, whatever the caller keeps: the
         * monitor drains in the background, the keeper (its control channel
         * closes as it exits) is reaped at once, and a later stop reopens
         * the directory to clean up. */
        libdm__dm_close_qmp(dm);
        dm->rd = libdm__rundir_free(dm->rd);
    }
}

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
            libdm__dm_start_fail(dm, 0);
            return;
        }
        libdm__dm_error(dm, "cannot read the start time of pid %d or of its keeper %d", pid,
                 dm->keeper_pid);
        libdm__dm_start_fail(dm, -EIO);
        return;
    }
    if (libdm__dm_op_kind(dm) == OP_START)
        dm->op->u.start.have_pid = true;
}

static void keeper_on_exit(libdm__keeper *k, int status, void *user)
{
    dm_exited(user, status);
}

static void keeper_on_error(libdm__keeper *k, const char *msg, void *user)
{
    libdm_dm *dm = user;

    libdm__dm_error(dm, "%s", msg);
    if (libdm__dm_op_kind(dm) == OP_START)
        dm->op->u.start.step = START_FAILING;
}

const libdm__keeper_ops libdm__dm_keeper_ops = {
    .on_pid = keeper_on_pid,
    .on_exit = keeper_on_exit,
    .on_error = keeper_on_error,
};

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
    dm_exited(dm, status < 0 ? -1 : status);
}

/* Attached: the keeper exits once it has recorded the end and let go of
 * the name, which is when the record is final and the files ours to clean. */
static void on_keeper_gone(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm_dm *dm = user;
    int status = recorded_exit_status(dm);

    libdm__watch_del(dm->keeper_watch);
    dm->keeper_watch = NULL;
    release_keeper_pidfd(ctx, &dm->keeper_pidfd);
    libdm__timer_disarm(ctx, &dm->exit_poll);
    dm_exited(dm, status < 0 ? -1 : status);
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
    exit_poll_fire(ctx, &dm->exit_poll, dm);
}

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
            libdm__dm_incoming_event(dm);
        }
    }
}

void libdm__dm_on_qmp_state(libdm_qmp *q, libdm_qmp_state s, int err, void *user)
{
    libdm_dm *dm = user;

    if (s == LIBDM_QMP_NEGOTIATING)
        libdm__dm_set_state(dm, LIBDM_DM_NEGOTIATING);
    if (s == LIBDM_QMP_READY && libdm__dm_op_kind(dm) == OP_ATTACH)
        libdm__dm_attach_connected(dm);
    if (s != LIBDM_QMP_BROKEN || dm->exited || libdm__dm_op_kind(dm) == OP_STOP)
        return;
    if (libdm__dm_op_kind(dm) == OP_ATTACH) {
        libdm__dm_error(dm, "cannot connect to the monitor %s: %s", dm->qmp_path,
                 libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : strerror(-err));
        libdm__dm_attach_fail(dm, err < 0 ? err : -ECONNRESET);
        return;
    }
    if (libdm__dm_op_kind(dm) == OP_START) {
        /* Most often the DM died: kill it for sure and report its end. */
        if (dm->op->u.start.step != START_FAILING)
            libdm__dm_error(dm, "the monitor failed during start-up: %s",
                            libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : strerror(-err));
        /* The greeting's deadline is the start's own: say so; otherwise
         * the DM's end, when seen, says why. */
        libdm__dm_start_fail(dm, err == -ETIMEDOUT ? -ETIMEDOUT : 0);
        return;
    }
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
    r = libdm_qmp_set_state_callback(q, libdm__dm_on_qmp_state, dm);
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
        if (dm->op->kind == OP_START)
            dm->op->u.start.caps_call = libdm_qmp_slot_free(dm->op->u.start.caps_call);
    }
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
    libdm__timer_init(&dm->exit_poll, exit_poll_fire, dm);
    libdm__timer_init(&dm->notice_timer, notice_fire, dm);
    dm->done_tail = &dm->done_head;
    dm->notice_tail = &dm->notice_head;
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
static void release_keeper_pidfd(libdm_ctx *ctx, int *pidfd)
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
    /* A stop under way: its keeper exits in a moment, to be reaped. */
    if (dm->keeper && libdm__dm_op_kind(dm) == OP_STOP)
        libdm__keeper_set_ending(dm->keeper);
    if (libdm__dm_op_kind(dm) == OP_START)
        libdm__dm_start_abandon(dm);
    if (dm->op) {
        /* Released mid-operation: its callback never runs. */
        if (dm->op->destroy)
            dm->op->destroy(dm->op->user);
        libdm__dm_op_discard(dm);
    }
    libdm__timer_disarm(dm->ctx, &dm->op_done);
    libdm__timer_disarm(dm->ctx, &dm->exit_poll);
    libdm__timer_disarm(dm->ctx, &dm->notice_timer);
    drop_completions(dm);
    drop_notices(dm);
    libdm__dm_close_qmp(dm);
    libdm__keeper_free(dm->keeper);
    dm->keeper = NULL;
    dm->rd = libdm__rundir_free(dm->rd);
    libdm__watch_del(dm->pidfd_watch);
    dm->pidfd_watch = NULL;
    libdm__close(&dm->pidfd);
    libdm__watch_del(dm->keeper_watch);
    dm->keeper_watch = NULL;
    release_keeper_pidfd(ctx, &dm->keeper_pidfd);
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

void libdm__dm_op_deadline_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    libdm__dm_error(dm, "%s did not complete before its deadline",
                    libdm__dm_op_names[libdm__dm_op_kind(dm)]);
    /* A monitor that misses a deadline can no longer be trusted. */
    if (libdm__dm_op_kind(dm) == OP_PAUSE || libdm__dm_op_kind(dm) == OP_QUERY) {
        libdm__dm_set_state(dm, LIBDM_DM_BROKEN);
        (void)libdm__dm_record_state(dm);
    }
    libdm__dm_op_finish(dm, -ETIMEDOUT);
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
    if (dm->op) {
        dm->op->destroy = fn;
        return 0;
    }
    /* Finished already (its callback deferred): the last one queued. */
    if (!dm->done_head)
        return -ENOENT;
    last = (completion *)((char *)dm->done_tail - offsetof(completion, next));
    last->destroy = fn;
    return 0;
}

/* ---- getters ---- */

libdm_qmp *libdm_dm_get_qmp(libdm_dm *dm)
{
    return dm->qmp && libdm_qmp_get_state(dm->qmp) == LIBDM_QMP_READY ? dm->qmp : NULL;
}

libdm_dm_state libdm_dm_get_state(const libdm_dm *dm) { return dm->state; }
const char *libdm_dm_get_name(const libdm_dm *dm) { return dm->name; }
uint32_t libdm_dm_get_domid(const libdm_dm *dm) { return dm->domid; }
int libdm_dm_get_pid(const libdm_dm *dm) { return dm->pid; }
const char *libdm_dm_get_qmp_path(const libdm_dm *dm) { return dm->qmp_path; }
const char *libdm_dm_get_profile(const libdm_dm *dm) { return dm->profile; }
const char *libdm_dm_get_machine(const libdm_dm *dm) { return dm->machine; }
uint64_t libdm_dm_get_memory_mb(const libdm_dm *dm) { return dm->memory_mb; }
const char *libdm_dm_get_runstate(const libdm_dm *dm) { return dm->runstate; }
const char *libdm_dm_get_confinement(const libdm_dm *dm) { return dm->confinement; }
const char *libdm_dm_get_nics(const libdm_dm *dm) { return dm->nics; }
int libdm_dm_get_exit_status(const libdm_dm *dm) { return dm->exited ? dm->exit_status : -1; }
const char *libdm_dm_last_error(const libdm_dm *dm) { return dm->last_error; }

/* ---- for migrate.c ---- */

int libdm__dm_set_autokill(libdm_dm *dm, bool on)
{
    return dm->keeper ? libdm__keeper_set_autokill(dm->keeper, on) : -ESRCH;
}

bool libdm__dm_exited(const libdm_dm *dm)
{
    return dm->exited || dm->pid_gone;
}

libdm_ctx *libdm__dm_ctx(const libdm_dm *dm)
{
    return dm->ctx;
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
    /* A stream given at start (-incoming fd:N, a restore) may be loaded
     * before "events" could be turned on: its MIGRATION event may never
     * come. Then the destination's own query-migrate alone decides. */
    if (dm->incoming_at_start && !dm->migration_event)
        return 1;
    return dm->migration_event && !strcmp(dm->migration_event, "completed");
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
