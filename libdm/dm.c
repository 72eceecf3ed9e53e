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
#include "dm-internal.h"
#include "config-internal.h"
#include "qmp-internal.h"
#include "keeper-proto.h"
#include "rundir-internal.h"
#include "spawn-internal.h"
#include "restrict-internal.h"
#include "store.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DM_TERM_GRACE_MS 3000   /* SIGTERM -> SIGKILL */
#define DM_KILL_WAIT_MS 5000    /* SIGKILL -> give up */
#define DM_MIGRATE_POLL_MS 100  /* re-check query-migrate: never wait on an event alone */
#define DM_LOG_TAIL 1024
#define DM_EXIT_RECORD_POLL_MS 10  /* attached, no keeper pidfd: re-read the record */
#define DM_EXIT_RECORD_POLLS 50
#define DM_KEEPER_EXIT_WAIT_MS 5000 /* attached: the keeper records, then exits */

typedef enum { OP_NONE, OP_START, OP_RESUME, OP_STOP, OP_PAUSE, OP_QUERY, OP_ATTACH } op_kind;

static const char *const op_names[] = {
    [OP_NONE] = "no operation", [OP_START] = "start", [OP_RESUME] = "resume",
    [OP_STOP] = "stop",         [OP_PAUSE] = "pause", [OP_QUERY] = "query-status",
    [OP_ATTACH] = "attach",
};

/* A state change the host has not been told about yet. */
typedef struct notice {
    struct notice *next;
    libdm_dm_event ev;
    char *cause;
} notice;

/* A finished operation whose callback has not run yet (they run deferred,
 * in the order the operations ended). */
typedef struct completion {
    struct completion *next;
    libdm_dm_done_fn *cb;
    void *user;
    int status;
} completion;
typedef enum { STOP_QUIT, STOP_TERM, STOP_KILL } stop_step;

struct libdm_dm {
    libdm_ctx *ctx;
    libdm_dm_state state;
    char *name;
    uint32_t domid;
    char *profile;
    char *machine;              /* NULL if unknown (attached to an old record) */
    uint64_t memory_mb;
    char *confinement;          /* dm_restrict in force (restrict.c), NULL if unknown */
    char *nics;                 /* devices-run.c: the NICs and their taps, NULL if none */
    char *dir, *qmp_path, *log_path;
    int pid;
    uint64_t pid_start;
    int keeper_pid;
    uint64_t keeper_start;
    int64_t created_ms;

    libdm__keeper *keeper;      /* we started it: the keeper reports its end */
    int pidfd;                  /* attached: exit seen on the pidfd */
    libdm__watch *pidfd_watch;
    int keeper_pidfd;           /* attached: its keeper, whose exit ends the story */
    libdm__watch *keeper_watch;

    libdm__rundir *rd;          /* its run directory (and, while starting, the claim) */
    libdm_qmp *qmp;
    libdm_qmp_slot *caps_call;  /* every call we make has a slot: none outlives us */
    char *runstate;
    char *migration_event;      /* status of the last MIGRATION event */
    bool exited;
    bool pid_gone;              /* attached: the pidfd said so; the record may lag */
    int exit_status;
    char *last_error;
    int timeout_ms;

    op_kind op;
    libdm_dm_done_fn *op_cb;
    void *op_user;
    int op_status;
    bool op_failing;            /* start failed: waiting for the DM to be gone */
    stop_step step;
    libdm__timer op_deadline, op_tick, op_done;
    libdm__timer exit_poll;     /* attached: waiting for the keeper's record */
    unsigned exit_polls;
    completion *done_head, **done_tail;
    libdm_dm_event_fn *event_cb;
    void *event_user;
    notice *notice_head, **notice_tail;
    libdm__timer notice_timer;
    libdm_qmp_slot *call;
    bool start_have_pid, start_have_status;
    bool migrate_was_running;
    bool incoming;              /* started (or recorded) with -incoming */
    bool incoming_at_start;     /* -incoming URI (not defer): QEMU loads before
                                 * the events capability can be turned on */
    bool autokill_after_ready;  /* a migration destination: armed until Finish */
    int broken_errno;           /* why the monitor became unusable, if known */
    char *lock_holder;          /* attach: who holds monitor.lock (cmdline) */
    int lock_holder_pid;
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

/* One notice per run, like completions: the callback may release the DM. */
static void notice_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    notice *n = dm->notice_head;

    if (!n)
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
    if ((to == LIBDM_DM_DEAD && dm->op != OP_STOP) || to == LIBDM_DM_BROKEN)
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

static void dm_set_state(libdm_dm *dm, libdm_dm_state to)
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

static void dm_error(libdm_dm *dm, const char *fmt, ...) LIBDM__PRINTF(2, 3);
static void dm_error(libdm_dm *dm, const char *fmt, ...)
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
    dm_errorv(dm, dm->op == OP_START ? XTL_ERROR : XTL_INFO, fmt, ap);
    va_end(ap);
}

static void set_runstate(libdm_dm *dm, const char *rs)
{
    char *copy = rs ? strdup(rs) : NULL;

    if (!copy)
        return;
    free(dm->runstate);
    dm->runstate = copy;
}

/* ---- records and files ---- */

static int dm_store(libdm_dm *dm, libdm__store **ret)
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

static int write_record(libdm_dm *dm)
{
    libdm__store *store;
    libdm__record rec;
    int r = dm_store(dm, &store);

    if (r < 0)
        return r;
    fill_record(dm, &rec);
    r = libdm__store_put(store, &rec);
    if (r < 0)
        dm_error(dm, "cannot record the device model: %s", strerror(-r));
    return r;
}

/* Records the current state. A failed write is retried once: the record
 * must never silently say something else than the DM does. */
static int record_state(libdm_dm *dm)
{
    libdm__store *store;
    int r = dm_store(dm, &store);

    for (int attempt = 0; r >= 0 && attempt < 2; attempt++) {
        r = libdm__store_set_state(store, dm->name, libdm_dm_state_to_string(dm->state), -1);
        if (r >= 0 || r == -ENOENT)
            return r;
    }
    dm_error(dm, "the device model is %s but its record could not be updated: %s",
             libdm_dm_state_to_string(dm->state), strerror(-r));
    return r;
}

/* Removes the record, the socket, the log and the directory of a DM that
 * is gone, through its directory fd, and only while holding the name's
 * claim: once the keeper exited, another start may own the name already. */
static void remove_files(libdm_ctx *ctx, const char *name, libdm__rundir *rd,
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
        libdm__restrict_cleanup(rd->path, profile, domid);
        libdm__rundir_remove(rd, LIBDM__RD_REMOVE_ALL);
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

static char *describe_status(int status)
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

    if (!c)
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

static void drop_completions(libdm_dm *dm)
{
    while (dm->done_head) {
        completion *c = dm->done_head;
        dm->done_head = c->next;
        free(c);
    }
    dm->done_tail = &dm->done_head;
}

/* Ends the current operation; its callback runs from the loop, never from
 * the call that ended it. */
static void op_finish(libdm_dm *dm, int status)
{
    completion *c;

    if (dm->op == OP_NONE)
        return;
    libdm__timer_disarm(dm->ctx, &dm->op_deadline);
    libdm__timer_disarm(dm->ctx, &dm->op_tick);
    dm->call = libdm_qmp_slot_free(dm->call);
    dm->op = OP_NONE;
    dm->op_failing = false;
    c = calloc(1, sizeof(*c));
    if (!c) {
        LIBDM__ERROR(dm->ctx, "%s: out of memory: an operation's callback is lost", dm->name);
        return;
    }
    *c = (completion){ .cb = dm->op_cb, .user = dm->op_user, .status = status };
    dm->op_cb = NULL;
    *dm->done_tail = c;
    dm->done_tail = &c->next;
    (void)libdm__defer(dm->ctx, &dm->op_done);
}

/* Starts operation @kind; @on_deadline runs if it has not finished in
 * time. The deadline timer is (re)initialised only here, and only when no
 * operation holds it: re-initialising an armed timer would corrupt the
 * loop's timer heap. */
static int op_begin(libdm_dm *dm, op_kind kind, int timeout_ms, libdm__timer_fn *on_deadline,
                    libdm_dm_done_fn *cb, void *user)
{
    if (dm->op != OP_NONE)
        return -EBUSY;
    libdm__timer_disarm(dm->ctx, &dm->op_deadline);
    libdm__timer_init(&dm->op_deadline, on_deadline, dm);
    dm->op = kind;
    dm->op_cb = cb;
    dm->op_user = user;
    dm->op_status = 0;
    return libdm__timer_arm(dm->ctx, &dm->op_deadline,
                            libdm__deadline(timeout_ms > 0 ? timeout_ms : dm->timeout_ms));
}

static int dm_call(libdm_dm *dm, const char *cmd, const libdm_json *args, libdm_qmp_reply_fn *cb)
{
    dm->call = libdm_qmp_slot_free(dm->call);
    if (!dm->qmp || libdm_qmp_get_state(dm->qmp) >= LIBDM_QMP_DRAINING)
        return -ENOTCONN;
    return libdm_qmp_call_async(dm->qmp, cmd, args, dm->timeout_ms, cb, dm, &dm->call);
}

/* A deadline passed on the monitor: QEMU is alive but not answering. */
static void monitor_failed(libdm_dm *dm, int status, const char *what)
{
    if (status == -ETIMEDOUT) {
        dm_error(dm, "the monitor did not answer %s before its deadline", what);
        dm_set_state(dm, LIBDM_DM_BROKEN);
        record_state(dm);
    } else if (status == -EREMOTEIO) {
        dm_error(dm, "%s failed: %s: %s", what,
                 libdm_qmp_error_class(dm->qmp) ? libdm_qmp_error_class(dm->qmp) : "?",
                 libdm_qmp_error_desc(dm->qmp) ? libdm_qmp_error_desc(dm->qmp) : "?");
    } else {
        dm_error(dm, "%s failed: %s", what, strerror(-status));
    }
}

/* Error text of a failed reply; keeps class and desc on the connection. */
static void reply_error(libdm_dm *dm, const libdm_qmp_reply *r, const char *what)
{
    if (r->status == -EREMOTEIO)
        dm_error(dm, "%s failed: %s: %s", what, r->error_class ? r->error_class : "?",
                 r->error_desc ? r->error_desc : "?");
    else
        monitor_failed(dm, r->status, what);
}

/* ---- the end of the process ---- */

static void stop_finished(libdm_dm *dm);
static void start_fail_finished(libdm_dm *dm);
static void close_qmp(libdm_dm *dm);
static void attach_connected(libdm_dm *dm);
static void attach_fail(libdm_dm *dm, int status);

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
    libdm__close(&dm->keeper_pidfd);
    if (dm->op != OP_STOP) {
        how = describe_status(status);
        tail = log_tail(dm);
        dm_notice(dm, "device model (pid %d) %s%s%s%s", dm->pid, how ? how : "ended",
                 dm->op == OP_START ? " during start-up" : "", tail ? "; log: " : "",
                 tail ? tail : "");
        free(how);
        free(tail);
    }
    dm_set_state(dm, LIBDM_DM_DEAD);
    if (dm->op == OP_STOP) {
        stop_finished(dm);
    } else if (dm->op == OP_START) {
        start_fail_finished(dm);
    } else {
        if (dm->op != OP_NONE)
            op_finish(dm, -ESRCH);
        /* DEAD holds no process and no fd, whatever the caller keeps: the
         * monitor drains in the background, the keeper (its control channel
         * closes as it exits) is reaped at once, and a later stop reopens
         * the directory to clean up. */
        close_qmp(dm);
        dm->rd = libdm__rundir_free(dm->rd);
    }
}

static void start_fail(libdm_dm *dm, int status);

static void keeper_on_pid(libdm__keeper *k, int pid, void *user)
{
    libdm_dm *dm = user;

    dm->pid = pid;
    dm->pid_start = libdm__proc_start_time(pid);
    dm->keeper_start = libdm__proc_start_time(dm->keeper_pid);
    LIBDM__DEBUG(dm->ctx, "%s: device model is pid %d", dm->name, pid);
    /* Without its start time a pid cannot be told from a reused one: the
     * record would not let anyone find this DM again. */
    if (!dm->pid_start || !dm->keeper_start) {
        dm_error(dm, "cannot read the start time of pid %d or of its keeper %d", pid,
                 dm->keeper_pid);
        start_fail(dm, -EIO);
        return;
    }
    dm->start_have_pid = true;
}

static void start_maybe_ready(libdm_dm *dm);

static void keeper_on_exit(libdm__keeper *k, int status, void *user)
{
    dm_exited(user, status);
}

static void keeper_on_error(libdm__keeper *k, const char *msg, void *user)
{
    libdm_dm *dm = user;

    dm_error(dm, "%s", msg);
    dm->op_failing = dm->op == OP_START;
}

static const libdm__keeper_ops keeper_ops = {
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

    if (dm_store(dm, &store) < 0 || libdm__store_get(store, dm->name, &rec) < 0)
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
    libdm__close(&dm->keeper_pidfd);
    libdm__timer_disarm(ctx, &dm->exit_poll);
    dm_exited(dm, status < 0 ? -1 : status);
}

static void keeper_wait_expired(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    LIBDM__WARN(ctx, "%s: its keeper did not exit after the device model", dm->name);
    on_keeper_gone(ctx, dm->keeper_pidfd, 0, dm);
}

static void on_pidfd(libdm_ctx *ctx, int fd, short revents, void *user)
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
        set_runstate(dm, "running");
        dm_set_state(dm, LIBDM_DM_RUNNING);
    } else if (!strcmp(name, "STOP")) {
        set_runstate(dm, "paused");
        if (dm->state == LIBDM_DM_RUNNING)
            dm_set_state(dm, LIBDM_DM_PAUSED);
    } else if (!strcmp(name, "MIGRATION")) {
        const char *st = libdm__json_get_str(data, "status");
        char *copy = st ? strdup(st) : NULL;
        if (copy) {
            free(dm->migration_event);
            dm->migration_event = copy;
        }
    }
}

static void on_qmp_state(libdm_qmp *q, libdm_qmp_state s, int err, void *user)
{
    libdm_dm *dm = user;

    if (s == LIBDM_QMP_NEGOTIATING)
        dm_set_state(dm, LIBDM_DM_NEGOTIATING);
    if (s == LIBDM_QMP_READY && dm->op == OP_ATTACH)
        attach_connected(dm);
    if (s != LIBDM_QMP_BROKEN || dm->exited || dm->op == OP_STOP)
        return;
    if (dm->op == OP_ATTACH) {
        dm_error(dm, "cannot connect to the monitor %s: %s", dm->qmp_path,
                 libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : strerror(-err));
        attach_fail(dm, err < 0 ? err : -ECONNRESET);
        return;
    }
    if (dm->op == OP_START && !dm->op_failing) {
        /* Most often the DM died: kill it for sure and report its end. */
        dm_error(dm, "the monitor failed during start-up: %s",
                 libdm_qmp_last_error(q) ? libdm_qmp_last_error(q) : strerror(-err));
        dm->op_failing = true;
        if (dm->keeper)
            (void)libdm__keeper_signal(dm->keeper, SIGKILL);
        return;
    }
    dm_set_state(dm, LIBDM_DM_BROKEN);
}

static int attach_qmp(libdm_dm *dm, libdm_qmp *q)
{
    int r;

    dm->qmp = q;
    libdm__qmp_set_log_prefix(q, dm->name);
    r = libdm_qmp_set_state_callback(q, on_qmp_state, dm);
    if (r >= 0)
        r = libdm_qmp_add_event_listener(q, NULL, on_event, dm, NULL);
    return r;
}

static void close_qmp(libdm_dm *dm)
{
    libdm_qmp *q = dm->qmp;

    if (!q)
        return;
    dm->qmp = NULL;
    dm->call = libdm_qmp_slot_free(dm->call);
    dm->caps_call = libdm_qmp_slot_free(dm->caps_call);
    (void)libdm_qmp_set_state_callback(q, NULL, NULL);
    /* Drained in the background, bounded by the DM's own deadline. */
    if (libdm_qmp_close_async(q, dm->timeout_ms, NULL, NULL) < 0)
        LIBDM__ERROR(dm->ctx, "%s: cannot close the monitor", dm->name);
}

/* ---- start ---- */

static void start_deadline(libdm_ctx *ctx, libdm__timer *t, void *user);

static void start_fail(libdm_dm *dm, int status)
{
    if (dm->op_failing)
        return;
    dm->op_failing = true;
    dm->op_status = status;
    if (dm->exited) {
        start_fail_finished(dm);
        return;
    }
    if (dm->keeper)
        (void)libdm__keeper_signal(dm->keeper, SIGKILL);
    /* Bounded wait for the keeper to report the end. */
    (void)libdm__timer_arm(dm->ctx, &dm->op_deadline, libdm__deadline(DM_KILL_WAIT_MS));
}

static void start_fail_finished(libdm_dm *dm)
{
    int status = dm->op_status < 0 ? dm->op_status : -ECHILD;

    close_qmp(dm);
    libdm__devices_cleanup(dm->ctx, dm->nics); /* devices-run.c: leftover taps */
    remove_files(dm->ctx, dm->name, dm->rd, dm->profile, dm->domid);
    dm_set_state(dm, LIBDM_DM_DEAD);
    op_finish(dm, status);
}

static bool runstate_is_ready(const char *rs)
{
    return rs && (!strcmp(rs, "prelaunch") || !strcmp(rs, "paused") || !strcmp(rs, "inmigrate"));
}

static void start_maybe_ready(libdm_dm *dm)
{
    if (dm->op != OP_START || dm->op_failing || !dm->start_have_pid || !dm->start_have_status)
        return;
    if (!strcmp(dm->runstate, "inmigrate"))
        dm->incoming = true;
    dm_set_state(dm, dm->incoming ? LIBDM_DM_INCOMING : LIBDM_DM_PAUSED);
    if (write_record(dm) < 0) {
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
    op_finish(dm, 0);
}

static void start_on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;

    dm->call = libdm_qmp_slot_free(dm->call);
    if (dm->op_failing)
        return;
    if (r->status < 0) {
        reply_error(dm, r, "query-status");
        start_fail(dm, r->status);
        return;
    }
    rs = libdm__json_get_str(r->value, "status");
    if (!runstate_is_ready(rs)) {
        /* Started with -S, QEMU can only be in these states: anything else
         * is a DM that does not do what it is told. */
        dm_error(dm, "device model reports runstate '%s' at start, not a paused one",
                 rs ? rs : "(none)");
        start_fail(dm, -EPROTO);
        return;
    }
    set_runstate(dm, rs);
    dm->start_have_status = true;
    /* The pid may still be on its way from the keeper: wait for it too. */
    if (!dm->start_have_pid)
        (void)libdm__timer_arm(dm->ctx, &dm->op_tick, libdm_now_ms() + 5);
    start_maybe_ready(dm);
}

static void start_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (dm->op == OP_START && !dm->start_have_pid)
        (void)libdm__timer_arm(ctx, t, libdm_now_ms() + 5);
    start_maybe_ready(dm);
}

static void start_on_caps(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;

    dm->caps_call = libdm_qmp_slot_free(dm->caps_call);
    if (r->status < 0 && !dm->op_failing) {
        reply_error(dm, r, "migrate-set-capabilities events");
        start_fail(dm, r->status);
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
        r = dm_call(dm, "query-status", NULL, start_on_status);
    return r;
}

static void start_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (dm->op_failing) {
        /* The DM did not go away even after SIGKILL: give up on it. */
        dm_error(dm, "device model did not exit after SIGKILL");
        start_fail_finished(dm);
        return;
    }
    /* The process state tells a busy or stopped DM from a wedged monitor. */
    dm_error(dm, "not ready before the deadline (monitor %s, %u repl%s owed; process %d state %c)",
             dm->qmp ? libdm_qmp_state_to_string(libdm_qmp_get_state(dm->qmp)) : "absent",
             dm->qmp ? libdm_qmp_outstanding(dm->qmp) : 0u,
             dm->qmp && libdm_qmp_outstanding(dm->qmp) == 1 ? "y" : "ies", dm->pid,
             libdm__proc_state(dm->pid));
    start_fail(dm, -ETIMEDOUT);
}

static void op_deadline_fire(libdm_ctx *ctx, libdm__timer *t, void *user);

static libdm_dm *dm_alloc(libdm_ctx *ctx)
{
    libdm_dm *dm = calloc(1, sizeof(*dm));

    if (!dm)
        return NULL;
    dm->ctx = ctx;
    dm->pidfd = -1;
    dm->keeper_pidfd = -1;
    dm->exit_status = -1;
    dm->timeout_ms = 10000;
    libdm__timer_init(&dm->op_deadline, op_deadline_fire, dm);
    libdm__timer_init(&dm->op_tick, start_tick, dm);
    libdm__timer_init(&dm->op_done, op_done_fire, dm);
    libdm__timer_init(&dm->exit_poll, exit_poll_fire, dm);
    libdm__timer_init(&dm->notice_timer, notice_fire, dm);
    dm->done_tail = &dm->done_head;
    dm->notice_tail = &dm->notice_head;
    return dm;
}

static void dm_free(libdm_dm *dm)
{
    libdm__timer_disarm(dm->ctx, &dm->op_deadline);
    libdm__timer_disarm(dm->ctx, &dm->op_tick);
    libdm__timer_disarm(dm->ctx, &dm->op_done);
    libdm__timer_disarm(dm->ctx, &dm->exit_poll);
    libdm__timer_disarm(dm->ctx, &dm->notice_timer);
    drop_completions(dm);
    drop_notices(dm);
    close_qmp(dm);
    libdm__keeper_free(dm->keeper);
    dm->rd = libdm__rundir_free(dm->rd);
    libdm__watch_del(dm->pidfd_watch);
    libdm__close(&dm->pidfd);
    libdm__watch_del(dm->keeper_watch);
    libdm__close(&dm->keeper_pidfd);
    free(dm->name);
    free(dm->profile);
    free(dm->machine);
    free(dm->confinement);
    free(dm->nics);
    free(dm->dir);
    free(dm->qmp_path);
    free(dm->log_path);
    free(dm->runstate);
    free(dm->migration_event);
    free(dm->last_error);
    free(dm->lock_holder);
    free(dm);
}

/* Whether a record's DM process is alive (pid and start time match). */
static bool record_alive(const libdm__record *rec)
{
    return rec->pid > 0 && libdm__proc_start_time(rec->pid) == rec->pid_start;
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
        dm_error(dm, "cannot tell whether the name is free: its record is unreadable (%s); "
                 "inspect %s and remove it by hand", strerror(-r), dm->rd->path);
        return -EEXIST;
    }
    if (record_alive(&rec)) {
        /* Only a DM started before names were claimed by lock gets here. */
        dm_error(dm, "a device model of that name is already running (pid %d)", rec.pid);
        libdm__record_clear(&rec);
        return -EEXIST;
    }
    (void)libdm__store_del(store, dm->name);
    libdm__restrict_cleanup(dm->rd->path, rec.profile, rec.domid);
    libdm__record_clear(&rec);
    libdm__rundir_remove(dm->rd, LIBDM__RD_REMOVE_LEFTOVERS);
    return 0;
}

/* The DM's directory, log and monitor paths. The xen profile's monitor is
 * at libxl's path, where xl and libxl's own QMP client look for it. */
static int set_paths(libdm_dm *dm, bool create)
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
        dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    return dm->dir && dm->qmp_path && dm->log_path ? 0 : -ENOMEM;
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
        dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    r = clear_leftovers(dm, store);
    if (r >= 0)
        r = set_paths(dm, true);
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
    if (dm->rd->owner_fd >= 0 && dm_store(dm, &store) >= 0)
        (void)libdm__store_del(store, dm->name);
    if (dm->confinement) /* the chroot restrict.c made, if any */
        libdm__restrict_cleanup(dm->rd->path, dm->profile, dm->domid);
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
    r = attach_qmp(dm, q);
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
        dm_error(dm, "domain %u already has a device model: its monitor %s answers",
                 dm->domid, dm->qmp_path);
        goto out;
    } else if (r < 0) {
        dm_error(dm, "cannot create the QMP socket %s: %s", dm->qmp_path, strerror(-r));
        goto out;
    }
    r = libdm__rundir_make_log(dm->rd, &log_fd);
    if (r < 0) {
        dm_error(dm, "cannot create %s: %s", dm->log_path, strerror(-r));
        goto out;
    }
    r = connect_monitor(dm, cfd);
    cfd = -1;
    if (r < 0) {
        dm_error(dm, "cannot set up the monitor connection: %s", strerror(-r));
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
                            &keeper_ops, dm, &dm->keeper);
    if (r >= 0)
        dm->keeper_pid = libdm__keeper_keeper_pid(dm->keeper);
    else
        dm_error(dm, "cannot start libdm-keeper: %s", strerror(-r));
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
        dm_error(dm, "invalid configuration: cannot build the command line: %s", strerror(-r));
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
    dm = dm_alloc(ctx);
    if (!dm)
        return -ENOMEM;
    r = dm_init_from_config(dm, cfg);
    if (r >= 0)
        r = claim_name(dm, store);
    if (r >= 0)
        r = plan_command(dm, cfg, &plan, &argv);
    if (r >= 0)
        r = write_record(dm);
    if (r >= 0)
        r = op_begin(dm, OP_START, cfg->timeout_ms, start_deadline, cb, userdata);
    if (r >= 0)
        r = spawn_dm(dm, argv, store, autokill, &plan);
    libdm_strv_free(argv);
    libdm__restrict_plan_clear(&plan);
    if (r < 0) {
        close_qmp(dm);
        unclaim(dm);
        dm->op = OP_NONE;
        dm_free(dm);
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

typedef struct sync_op {
    bool done;
    int status;
} sync_op;

static void sync_done_cb(libdm_dm *dm, int status, void *user)
{
    sync_op *s = user;

    s->done = true;
    s->status = status;
}

static bool sync_is_done(void *arg)
{
    return ((sync_op *)arg)->done;
}

/* Every operation has its own deadline timer, which bounds this wait. */
static int sync_wait(libdm_ctx *ctx, sync_op *s)
{
    int r = libdm__wait(ctx, sync_is_done, s, UINT64_MAX);

    return r < 0 ? r : s->status;
}

int libdm__dm_start(libdm_ctx *ctx, const libdm_dm_config *cfg, bool autokill, libdm_dm **ret_dm)
{
    sync_op s = { 0 };
    libdm_dm *dm;
    int r;

    if (libdm__dispatch_depth(ctx) > 0)
        return -EDEADLK;
    r = libdm__dm_start_async(ctx, cfg, autokill, sync_done_cb, &s, &dm);
    if (r < 0)
        return r;
    r = sync_wait(ctx, &s);
    if (r < 0) {
        dm_free(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}

int libdm_dm_start(libdm_ctx *ctx, const libdm_dm_config *cfg, libdm_dm **ret_dm)
{
    return libdm__dm_start(ctx, cfg, false, ret_dm);
}

/* ---- guarded resume (seed 000) ---- */

static void resume_query(libdm_dm *dm);

static void resume_on_cont(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;

    dm->call = libdm_qmp_slot_free(dm->call);
    if (r->status < 0) {
        reply_error(dm, r, "cont");
        op_finish(dm, r->status);
        return;
    }
    set_runstate(dm, "running");
    dm_set_state(dm, LIBDM_DM_RUNNING);
    record_state(dm);
    op_finish(dm, 0);
}

static void resume_send_cont(libdm_dm *dm)
{
    int r = dm_call(dm, "cont", NULL, resume_on_cont);

    if (r < 0) {
        dm_error(dm, "cannot send cont: %s", strerror(-r));
        op_finish(dm, r);
    }
}

static void resume_on_migrate(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *st;

    dm->call = libdm_qmp_slot_free(dm->call);
    if (r->status < 0) {
        reply_error(dm, r, "query-migrate");
        op_finish(dm, r->status);
        return;
    }
    st = libdm__json_get_str(r->value, "status");
    switch (libdm__incoming_verdict(dm, st)) {
    case -EIO:
        op_finish(dm, -EIO);
        return;
    case 1:
        libdm__dm_incoming_done(dm);
        resume_query(dm);
        return;
    }
    (void)libdm__timer_arm(dm->ctx, &dm->op_tick, libdm_now_ms() + DM_MIGRATE_POLL_MS);
}

static void resume_poll_migrate(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    int r;

    if (dm->op != OP_RESUME)
        return;
    r = dm_call(dm, "query-migrate", NULL, resume_on_migrate);
    if (r < 0)
        op_finish(dm, r);
}

static void resume_on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;

    dm->call = libdm_qmp_slot_free(dm->call);
    if (r->status < 0) {
        reply_error(dm, r, "query-status");
        op_finish(dm, r->status);
        return;
    }
    rs = libdm__json_get_str(r->value, "status");
    set_runstate(dm, rs);
    if (rs && !strcmp(rs, "running")) {
        dm_set_state(dm, LIBDM_DM_RUNNING);
        op_finish(dm, 0);
    } else if (rs && (!strcmp(rs, "inmigrate") || dm->incoming)) {
        /* Seed 000: cont now could start a half-loaded guest. Wait for the
         * incoming migration, checking query-migrate on a timer. The
         * runstate alone is not trusted: old QEMU had no "inmigrate" and
         * said "paused" while still loading; libdm knows it asked for
         * -incoming. */
        dm_set_state(dm, LIBDM_DM_INCOMING);
        libdm__timer_disarm(dm->ctx, &dm->op_tick);
        libdm__timer_init(&dm->op_tick, resume_poll_migrate, dm);
        resume_poll_migrate(dm->ctx, &dm->op_tick, dm);
    } else if (rs && (!strcmp(rs, "prelaunch") || !strcmp(rs, "paused"))) {
        resume_send_cont(dm);
    } else {
        dm_error(dm, "cannot resume from runstate '%s'", rs ? rs : "(none)");
        op_finish(dm, -EBUSY);
    }
}

static void resume_query(libdm_dm *dm)
{
    int r = dm_call(dm, "query-status", NULL, resume_on_status);

    if (r < 0) {
        dm_error(dm, "cannot query the runstate: %s", strerror(-r));
        op_finish(dm, r);
    }
}

static bool dm_usable(libdm_dm *dm)
{
    if (dm->exited || dm->state == LIBDM_DM_DEAD) {
        dm_error(dm, "the device model is not running");
        return false;
    }
    if (!dm->qmp || libdm_qmp_get_state(dm->qmp) != LIBDM_QMP_READY) {
        if (dm->state == LIBDM_DM_BROKEN && dm->last_error)
            return false; /* keep the cause the monitor broke for */
        dm_error(dm, "no usable monitor connection (%s)",
                 dm->qmp ? libdm_qmp_state_to_string(libdm_qmp_get_state(dm->qmp)) : "none");
        return false;
    }
    return true;
}

static void op_deadline_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    dm_error(dm, "%s did not complete before its deadline", op_names[dm->op]);
    /* A monitor that misses a deadline can no longer be trusted. */
    if (dm->op == OP_PAUSE || dm->op == OP_QUERY) {
        dm_set_state(dm, LIBDM_DM_BROKEN);
        (void)record_state(dm);
    }
    op_finish(dm, -ETIMEDOUT);
}

int libdm_dm_resume_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *userdata)
{
    int r;

    if (!dm_usable(dm))
        return dm->exited ? -ESRCH : -ENOTCONN;
    r = op_begin(dm, OP_RESUME, timeout_ms, op_deadline_fire, cb, userdata);
    if (r < 0)
        return r;
    resume_query(dm);
    return 0;
}

int libdm_dm_resume(libdm_dm *dm, int timeout_ms)
{
    sync_op s = { 0 };
    int r;

    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    r = libdm_dm_resume_async(dm, timeout_ms, sync_done_cb, &s);
    return r < 0 ? r : sync_wait(dm->ctx, &s);
}

/* ---- pause and query-status: one monitor call each ---- */

static void simple_on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;
    int status = 0;

    dm->call = libdm_qmp_slot_free(dm->call);
    if (r->status < 0) {
        reply_error(dm, r, op_names[dm->op]);
        op_finish(dm, r->status);
        return;
    }
    if (dm->op == OP_PAUSE) {
        set_runstate(dm, "paused");
        dm_set_state(dm, LIBDM_DM_PAUSED);
        status = record_state(dm);
    } else {
        rs = libdm__json_get_str(r->value, "status");
        if (!rs) {
            dm_error(dm, "query-status answered without a status");
            status = -EPROTO;
        } else {
            set_runstate(dm, rs);
            if (!strcmp(rs, "running"))
                dm_set_state(dm, LIBDM_DM_RUNNING);
        }
    }
    op_finish(dm, status < 0 && status != -ENOENT ? status : 0);
}

static int simple_call_async(libdm_dm *dm, op_kind kind, const char *cmd, int timeout_ms,
                             libdm_dm_done_fn *cb, void *userdata)
{
    int r;

    if (!dm_usable(dm))
        return dm->exited ? -ESRCH : dm->broken_errno < 0 ? dm->broken_errno : -ENOTCONN;
    r = op_begin(dm, kind, timeout_ms, op_deadline_fire, cb, userdata);
    if (r < 0)
        return r;
    r = dm_call(dm, cmd, NULL, simple_on_reply);
    if (r < 0) {
        dm_error(dm, "cannot send %s: %s", cmd, strerror(-r));
        libdm__timer_disarm(dm->ctx, &dm->op_deadline);
        dm->op = OP_NONE;
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
    sync_op s = { 0 };
    int r;

    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    r = libdm_dm_pause_async(dm, timeout_ms, sync_done_cb, &s);
    return r < 0 ? r : sync_wait(dm->ctx, &s);
}

int libdm_dm_query_status(libdm_dm *dm, int timeout_ms, char **ret_runstate)
{
    sync_op s = { 0 };
    char *copy;
    int r;

    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    r = libdm_dm_query_status_async(dm, timeout_ms, sync_done_cb, &s);
    if (r >= 0)
        r = sync_wait(dm->ctx, &s);
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
    libdm__store *store;

    close_qmp(dm);
    if (!dm->rd && dm_store(dm, &store) >= 0 && libdm__store_run_root(store))
        (void)libdm__rundir_open(libdm__store_run_root(store), dm->name, &dm->rd, NULL);
    libdm__devices_cleanup(dm->ctx, dm->nics); /* devices-run.c: leftover taps */
    remove_files(dm->ctx, dm->name, dm->rd, dm->profile, dm->domid);
    dm_set_state(dm, LIBDM_DM_DEAD);
    op_finish(dm, 0);
}

static void stop_escalate(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    if (dm->exited)
        return;
    switch (dm->step) {
    case STOP_QUIT:
        LIBDM__WARN(ctx, "%s: no exit after quit: sending SIGTERM", dm->name);
        dm->step = STOP_TERM;
        (void)dm_signal(dm, SIGTERM);
        (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_TERM_GRACE_MS));
        break;
    case STOP_TERM:
        LIBDM__WARN(ctx, "%s: no exit after SIGTERM: sending SIGKILL", dm->name);
        dm->step = STOP_KILL;
        (void)dm_signal(dm, SIGKILL);
        (void)libdm__timer_arm(ctx, t, libdm__deadline(DM_KILL_WAIT_MS));
        break;
    case STOP_KILL:
        dm_error(dm, "device model (pid %d) survived SIGKILL", dm->pid);
        op_finish(dm, -ETIMEDOUT);
        break;
    }
}

static void stop_on_quit(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;

    dm->call = libdm_qmp_slot_free(dm->call);
    if (r->status < 0 && !dm->exited)
        LIBDM__DEBUG(dm->ctx, "%s: quit: %s", dm->name, strerror(-r->status));
}

int libdm_dm_stop_async(libdm_dm *dm, int force, int timeout_ms, libdm_dm_done_fn *cb,
                        void *userdata)
{
    int r;

    if (dm->op == OP_STOP)
        return -EALREADY;
    /* Stopping wins over whatever was in progress (a resume waiting for an
     * incoming migration that will never complete, a start): that operation
     * completes with -ECANCELED. */
    if (dm->op != OP_NONE) {
        dm_error(dm, "%s interrupted by stop", dm->op == OP_START ? "start" : "resume");
        op_finish(dm, -ECANCELED);
    }
    r = op_begin(dm, OP_STOP, timeout_ms, stop_escalate, cb, userdata);
    if (r < 0)
        return r;
    dm_set_state(dm, LIBDM_DM_STOPPING);
    if (dm->exited) {
        libdm__timer_disarm(dm->ctx, &dm->op_deadline);
        stop_finished(dm);
        return 0;
    }
    dm->step = STOP_QUIT;
    if (force || dm_call(dm, "quit", NULL, stop_on_quit) < 0) {
        dm->step = STOP_TERM;
        (void)dm_signal(dm, force ? SIGKILL : SIGTERM);
        if (force)
            dm->step = STOP_KILL;
        (void)libdm__timer_arm(dm->ctx, &dm->op_deadline,
                               libdm__deadline(force ? DM_KILL_WAIT_MS : DM_TERM_GRACE_MS));
    }
    return 0;
}

int libdm_dm_stop(libdm_dm *dm, int force, int timeout_ms)
{
    sync_op s = { 0 };
    int r;

    if (libdm__dispatch_depth(dm->ctx) > 0)
        return -EDEADLK;
    r = libdm_dm_stop_async(dm, force, timeout_ms, sync_done_cb, &s);
    if (r == -EALREADY)
        return 0;
    return r < 0 ? r : sync_wait(dm->ctx, &s);
}

libdm_dm *libdm_dm_release(libdm_dm *dm)
{
    if (!dm)
        return NULL;
    if (dm->op != OP_NONE)
        LIBDM__DEBUG(dm->ctx, "%s: released with an operation in progress", dm->name);
    dm_free(dm);
    return NULL;
}

/* ---- attach ---- */

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
    return libdm__watch_add(dm->ctx, dm->pidfd, POLLIN, on_pidfd, dm, &dm->pidfd_watch);
}

/* The run directory the store's root names for this DM, never the path a
 * record claims: a record is input from other processes. */
static int attach_rundir(libdm_dm *dm, libdm__store *store)
{
    const char *root = libdm__store_run_root(store);
    char *why = NULL;
    int r = root ? libdm__rundir_open(root, dm->name, &dm->rd, &why) : -ENOENT;

    if (r < 0) {
        dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    return set_paths(dm, false);
}

/* ---- attach, as an operation: lock the monitor, connect, query ----
 *   ATTACH_LOCKING    monitor.lock polled on op_tick (flock has no fd to
 *                     wait on); a migration holding it fails us at once
 *   ATTACH_CONNECTING QMP connect + negotiation (on_qmp_state: READY)
 *   ATTACH_QUERYING   query-status decides the state */

/* Alive but its monitor unusable: the handle stays, BROKEN, stoppable
 * through its pidfd. The connection is left to close with the handle (this
 * may run inside the connection's own state callback). */
static void attach_fail(libdm_dm *dm, int status)
{
    dm->broken_errno = status;
    dm_set_state(dm, LIBDM_DM_BROKEN);
    op_finish(dm, status);
}

static void attach_on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    libdm_dm *dm = user;
    const char *rs;

    dm->call = libdm_qmp_slot_free(dm->call);
    if (r->status < 0) {
        reply_error(dm, r, "query-status");
        attach_fail(dm, r->status);
        return;
    }
    rs = libdm__json_get_str(r->value, "status");
    if (!rs) {
        dm_error(dm, "query-status answered without a status");
        attach_fail(dm, -EPROTO);
        return;
    }
    set_runstate(dm, rs);
    if (!strcmp(rs, "inmigrate"))
        dm->incoming = true;
    dm_set_state(dm, !strcmp(rs, "running") ? LIBDM_DM_RUNNING
                   : dm->incoming             ? LIBDM_DM_INCOMING
                                              : LIBDM_DM_PAUSED);
    op_finish(dm, 0);
}

/* on_qmp_state() calls this when the attach's connection is READY. */
static void attach_connected(libdm_dm *dm)
{
    int r = dm_call(dm, "query-status", NULL, attach_on_status);

    if (r < 0)
        attach_fail(dm, r);
}

static void attach_connect(libdm_dm *dm)
{
    char *why = NULL, *path = NULL;
    libdm_qmp *q;
    int r = libdm__rundir_socket_path(dm->rd, &path, &why);

    if (r < 0) {
        dm_error(dm, "%s", why ? why : strerror(-r));
        free(why);
        attach_fail(dm, r);
        return;
    }
    r = libdm_qmp_new(dm->ctx, &q);
    if (r >= 0)
        r = attach_qmp(dm, q);
    /* Connecting retries while the one-deep backlog is full. */
    if (r >= 0)
        r = libdm_qmp_connect(dm->qmp, path, dm->timeout_ms);
    free(path);
    if (r < 0) {
        dm_error(dm, "cannot connect to the monitor %s: %s", dm->qmp_path, strerror(-r));
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

    if (dm->op != OP_ATTACH)
        return;
    r = libdm__rundir_lock_monitor(dm->rd, NULL, &pid, &note);
    if (r == 0) {
        attach_connect(dm);
    } else if (r == -EAGAIN && !(note && !strcmp(note, "migration"))) {
        (void)libdm__timer_arm(ctx, t, libdm_now_ms() + 20);
        free(dm->lock_holder);
        dm->lock_holder = pid > 0 ? libdm__proc_cmdline(pid) : NULL;
        dm->lock_holder_pid = pid;
    } else if (r == -EAGAIN) {
        cmd = pid > 0 ? libdm__proc_cmdline(pid) : NULL;
        dm_error(dm, "migration in progress (pid %d, %s)", pid, cmd ? cmd : "?");
        free(cmd);
        attach_fail(dm, -EBUSY);
    } else {
        dm_error(dm, "cannot lock the monitor: %s", strerror(-r));
        attach_fail(dm, r);
    }
    free(note);
}

static void attach_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;

    libdm__timer_disarm(ctx, &dm->op_tick);
    if (!dm->qmp && dm->lock_holder_pid > 0)
        dm_error(dm, "the monitor is held by another client (pid %d, %s)", dm->lock_holder_pid,
                 dm->lock_holder ? dm->lock_holder : "?");
    else
        dm_error(dm, "the monitor did not answer before the deadline (%s)",
                 dm->qmp ? libdm_qmp_state_to_string(libdm_qmp_get_state(dm->qmp)) : "not connected");
    attach_fail(dm, -ETIMEDOUT);
}

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
    dm = dm_alloc(ctx);
    if (!dm) {
        libdm__record_clear(&rec);
        return -ENOMEM;
    }
    dm->state = LIBDM_DM_NEGOTIATING;
    if (timeout_ms > 0)
        dm->timeout_ms = timeout_ms;
    r = attach_from_record(dm, &rec);
    if (r == -ESRCH) {
        char *how = describe_status(rec.exit_status);
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
            dm_error(dm, "%s", why ? why : strerror(-r));
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
        r = op_begin(dm, OP_ATTACH, dm->timeout_ms, attach_deadline, cb, userdata);
    if (r < 0) {
        if (dm)
            dm_free(dm);
        return r;
    }
    libdm__timer_disarm(ctx, &dm->op_tick);
    libdm__timer_init(&dm->op_tick, attach_lock_tick, dm);
    attach_lock_tick(ctx, &dm->op_tick, dm);
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
        r = op_begin(dm, OP_ATTACH, dm->timeout_ms, attach_deadline, sync_done_cb, &s);
    if (r >= 0) {
        libdm__timer_disarm(ctx, &dm->op_tick);
        libdm__timer_init(&dm->op_tick, attach_lock_tick, dm);
        attach_lock_tick(ctx, &dm->op_tick, dm);
        r = sync_wait(ctx, &s);
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
        close_qmp(dm);
        dm->op = OP_NONE;
        dm_set_state(dm, LIBDM_DM_BROKEN);
        r = 0;
    }
    if (r < 0) {
        if (dm)
            dm_free(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}

/* ---- records ---- */

static int info_from_record(const libdm__record *rec, libdm_dm_info *info)
{
    *info = (libdm_dm_info){
        .name = strdup(rec->name),
        .domid = rec->domid,
        .pid = rec->pid,
        .alive = rec->pid > 0 && libdm__proc_start_time(rec->pid) == rec->pid_start,
        .qmp_socket = strdup(rec->qmp_socket ? rec->qmp_socket : ""),
        .profile = strdup(rec->profile ? rec->profile : ""),
        .state = strdup(rec->state ? rec->state : ""),
        .exit_status = rec->exit_status,
    };
    return info->name && info->qmp_socket && info->profile && info->state ? 0 : -ENOMEM;
}

int libdm_dm_list(libdm_ctx *ctx, libdm_dm_info **ret_infos, size_t *ret_count)
{
    libdm__store *store;
    libdm_dm_info *infos;
    char **names = NULL;
    size_t n = 0, count = 0;
    int r;

    r = libdm__ctx_store(ctx, &store);
    if (r >= 0)
        r = libdm__store_list(store, &names, &n);
    if (r < 0)
        return r;
    infos = calloc(n ? n : 1, sizeof(*infos));
    for (size_t i = 0; infos && i < n; i++) {
        libdm__record rec;
        if (libdm__store_get(store, names[i], &rec) < 0)
            continue; /* removed meanwhile */
        r = info_from_record(&rec, &infos[count++]);
        libdm__record_clear(&rec);
        if (r < 0)
            break;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!infos || r < 0) {
        libdm_dm_info_free(infos, count);
        return -ENOMEM;
    }
    *ret_infos = infos;
    *ret_count = count;
    return 0;
}

void libdm_dm_info_free(libdm_dm_info *infos, size_t count)
{
    if (!infos)
        return;
    for (size_t i = 0; i < count; i++) {
        free(infos[i].name);
        free(infos[i].qmp_socket);
        free(infos[i].profile);
        free(infos[i].state);
    }
    free(infos);
}

/* Cleans up after a DM that is gone: only if nobody holds its name (a
 * keeper alive means a DM alive, or a start in progress). */
static int forget_files(libdm_ctx *ctx, libdm__store *store, const libdm__record *rec)
{
    const char *name = rec->name;
    const char *root = libdm__store_run_root(store);
    libdm__rundir *rd = NULL;
    int r = root ? libdm__rundir_open(root, name, &rd, NULL) : -ENOENT;

    if (r == -ENOENT) /* a record without directory (xenstore) */
        return libdm__store_del(store, name);
    if (r < 0)
        return r;
    r = libdm__rundir_reclaim(rd);
    if (r >= 0) {
        (void)libdm__store_del(store, name);
        libdm__restrict_cleanup(rd->path, rec->profile, rec->domid);
        libdm__rundir_remove(rd, LIBDM__RD_REMOVE_ALL);
    }
    libdm__rundir_free(rd);
    return r == -EAGAIN ? -EBUSY : r;
}

int libdm_dm_forget(libdm_ctx *ctx, const char *name)
{
    libdm__store *store;
    libdm__record rec;
    int r = libdm__ctx_store(ctx, &store);

    if (r >= 0)
        r = libdm__store_get(store, name, &rec);
    if (r < 0)
        return r;
    if (record_alive(&rec)) {
        libdm__record_clear(&rec);
        return -EBUSY;
    }
    r = forget_files(ctx, store, &rec);
    libdm__record_clear(&rec);
    return r;
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
        dm_error(dm, "incoming migration %s: the guest is not resumed", query_status);
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

void libdm__dm_incoming_done(libdm_dm *dm)
{
    dm->incoming = false;
    if (dm->state == LIBDM_DM_INCOMING) {
        dm_set_state(dm, LIBDM_DM_PAUSED);
        set_runstate(dm, "paused");
        record_state(dm);
    }
}
