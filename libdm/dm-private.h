/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private to the dm*.c files: the device-model object and what its parts
 * share. Floors, bottom first (tests/layers/floors.txt; nothing lower calls
 * anything higher):
 *   dm.c          the object (identity, state, records, notices) and the
 *                 operation core: one operation at a time, its deadline,
 *                 its deferred completion, dispatch through its kind's
 *                 table (libdm__op_ops); it names no operation;
 *   dm-end.c      the DM's end seen and said, the cleanup after it;
 *   dm-prepare.c  a start's steps before its keeper (claim, plan);
 *   dm-start.c, dm-ops.c (resume, pause, query-status, stop, a migration
 *   phase), dm-attach.c, dm-devices.c: the operations, each with its own
 *   struct embedding libdm__op and its own table; then migrate.c.
 */
#ifndef LIBDM_DM_PRIVATE_H
#define LIBDM_DM_PRIVATE_H

#include "dm-internal.h"
#include "ctx-internal.h"
#include "config-internal.h"
#include "qmp-internal.h"
#include "keeper-proto.h"
#include "rundir-internal.h"
#include "spawn-internal.h"
#include "restrict-internal.h"
#include "devices-internal.h"
#include "store.h"

#include <sys/wait.h>

#define DM_TERM_GRACE_MS 3000   /* SIGTERM -> SIGKILL */
#define DM_KILL_WAIT_MS 5000    /* SIGKILL -> give up */
#define DM_END_GRACE_MS 200     /* a failed monitor: the keeper's word on the DM's end */
#define DM_MIGRATE_POLL_MS 100  /* re-check query-migrate: never wait on an event alone */
#define DM_LOG_TAIL 1024
#define DM_EXIT_RECORD_POLL_MS 10  /* attached, no keeper pidfd: re-read the record */
#define DM_EXIT_RECORD_POLLS 50
#define DM_KEEPER_EXIT_WAIT_MS 5000 /* attached: the keeper records, then exits */
#define DM_EXIT_SHOW_MS 200         /* a failed monitor: time for the DM's exit to show */
#define DM_STORE_RETRY_MS 5000      /* a record's lock held by another writer: retry until */
#define DM_KEEPER_LEAVE_MS 2000     /* the DM ended: time for its keeper to let go of the name */

typedef enum {
    OP_NONE, OP_START, OP_RESUME, OP_STOP, OP_PAUSE, OP_QUERY, OP_ATTACH,
    OP_MIGRATE,     /* a migration phase (migrate.c) */
    OP_DEVICES,     /* query_devices, apply_config (dm-devices.c) */
} op_kind;

#define libdm__container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* A state change the host has not been told about yet. */
typedef struct notice {
    struct notice *next;
    libdm_dm_event ev;
    char *cause;
    char *log_tail;             /* DEAD: ev.log_tail's copy */
} notice;

/* A finished operation whose callback has not run yet (they run deferred,
 * in the order the operations ended). */
typedef struct completion {
    struct completion *next;
    libdm_dm_done_fn *cb;
    void *user;
    void (*destroy)(void *user); /* frees @user if the callback never runs */
    int status;
    uint64_t side_id;           /* a query beside an operation: its id, else 0 */
} completion;

typedef struct libdm__op libdm__op;

/* A QEMU event waiting for the host's subscriptions (dm-events.c). */
typedef struct sub_event {
    struct sub_event *next;
    char *name;
    libdm_json *data;           /* NULL if the event had none */
    uint64_t seq;               /* heard by subscriptions made before it */
} sub_event;

struct libdm_dm_subscription {
    libdm_dm *dm;               /* NULL once the handle let it go */
    libdm_dm_subscription *prev, *next;
    char *event;                /* NULL: every event */
    libdm_dm_qmp_event_fn *cb;
    void *userdata;
    libdm_destroy_fn *destroy;
    bool floating;              /* the handle's: freed with it */
    bool dead;                  /* freed while callbacks ran: swept after */
    uint64_t since;             /* the DM's event count when it was made */
};
#define DM_SUB_MAX_QUEUED 1024  /* undelivered events per DM (as QMP's default) */
#define DM_SUB_MAX_NAME 128

/* A query-status running alongside another operation (dm-query.c). */
typedef struct side_query {
    struct side_query *next;
    libdm_dm *dm;
    libdm_qmp_slot *call;
    libdm__timer deadline;
    libdm_dm_done_fn *cb;
    void *user;
    void (*destroy)(void *user);
    uint64_t id;                /* for set_op_destroy, after it ended too */
} side_query;

/* A request waiting for the running operation to end (dm-query.c): its
 * operation begins from the loop once the DM has none. @start begins it
 * (0, or <0: it ends with that status); @free frees the request either way. */
typedef struct libdm__queued libdm__queued;
struct libdm__queued {
    libdm__queued *next;
    int (*start)(libdm_dm *dm, libdm__queued *q);
    void (*free)(libdm__queued *q);
    libdm_dm_done_fn *cb;
    void *user;
    void (*destroy)(void *user);
    uint64_t id;                /* for set_op_destroy, as a side query's */
};

/* What an operation kind gives the core (the kernel's file_operations, the
 * uv_req_t types): dm.c calls an operation only through its table and
 * knows nothing of its insides. A NULL member takes the core's default. */
typedef struct libdm__op_ops {
    op_kind kind;
    const char *name;           /* for messages: "start", "resume"... */
    bool ends_dm;               /* the DM's end is what it asked for (stop):
                                 * the DEAD notice has no cause */
    bool heavy_tick;            /* its tick's steps create files or clone:
                                 * one per dispatch (libdm__timer_set_alone) */
    /* Its deadline passed. Default: "NAME did not complete before its
     * deadline", the operation ends -ETIMEDOUT. */
    void (*deadline)(libdm__op *op);
    /* The DM's process ended (@status: wait status, -1 unknown). Default:
     * the end said (libdm__dm_say_end), DEAD, the operation ends -ESRCH,
     * and the DM lets go of its monitor and run directory. */
    void (*dm_died)(libdm__op *op, int status);
    /* The monitor went to @s (@err: why it broke): true if the operation
     * took care of it. Default: BROKEN makes the DM BROKEN. */
    bool (*monitor_state)(libdm__op *op, libdm_qmp_state s, int err);
    /* A MIGRATION event arrived (its status in dm->migration_event). */
    void (*monitor_event)(libdm__op *op);
    /* The handle is released with the operation in progress, before the
     * core drops it: what the operation must not leave behind. */
    void (*release)(libdm__op *op);
    /* Frees what the kind's own struct holds; the core frees the memory. */
    void (*free)(libdm__op *op);
} libdm__op_ops;

/* One operation on a DM with its own state (libxl's libxl__dm_spawn_state
 * manner): made by libdm__dm_op_begin(), freed when it finishes. Its timers
 * and its monitor call end with it, so nothing of an ended operation can
 * fire, and no operation re-uses another's timer. Each kind embeds this in
 * a struct of its own, in its own file (container_of). */
struct libdm__op {
    libdm_dm *dm;
    const libdm__op_ops *ops;
    libdm_dm_done_fn *cb;
    void *user;
    void (*destroy)(void *user); /* frees @user if the callback never runs */
    int status;
    libdm__timer deadline;      /* the whole operation's */
    libdm__timer tick;          /* its next step: a retry, a poll, a deferred step */
    libdm_qmp_slot *call;       /* its monitor call in flight */
    bool cleaning;              /* in the cleanup steps at its end (dm-end.c) */
    unsigned clean, rd_step;
    uint64_t keeper_wait_since; /* cleaning: the keeper still held the name, since */
    int clean_status;           /* the status the operation ends with after them */
    bool event_pending;         /* a MIGRATION event came with no tick armed: the
                                 * next wait is none (issue 22, 12) */
    bool said;                  /* it set last_error: later sentences append */
    libdm_dm_end_by kill_cause; /* it had libdm kill the DM: why (TIMEOUT, FAILED) */
};

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
    libdm_qmp *qmp;             /* every call made on it has a slot owned by an op */
    char *runstate;
    char *migration_event;      /* status of the last MIGRATION event */
    bool exited;
    bool unclaimed;             /* nothing on disk is ours any more: a start
                                 * refused before its keeper ran removed what
                                 * it made, or a stop cleaned up */
    bool pid_gone;              /* attached: the pidfd said so; the record may lag */
    bool keeper_killed;         /* attached: its keeper outlived the DM: SIGKILLed */
    int exit_status;
    char *last_error;
    bool last_error_soft;       /* a symptom (the monitor reset): the cause replaces it */
    libdm_dm_end_by ended_by;   /* DEAD: who ended it (libdm_dm_get_ended_by) */
    char *log_tail;             /* DEAD: the end of its log, printable */
    libdm__timer broken_grace;  /* the monitor reset: BROKEN unless the exit shows */
    libdm__timer record_retry;  /* record_state found the record's lock held */
    uint64_t store_wait_since;  /* a store write waiting for the lock, since */
    int timeout_ms;

    libdm__op *op;              /* the operation in progress, or NULL */
    libdm__timer op_done;       /* runs the completions below */
    libdm__timer exit_poll;     /* attached: waiting for the keeper's record */
    unsigned exit_polls;
    completion *done_head, **done_tail;
    libdm_dm *ctx_prev, *ctx_next; /* ctx->dms */
    libdm_dm_event_fn *event_cb;
    void *event_user;
    notice *notice_head, **notice_tail;
    libdm__timer notice_timer;
    bool migrate_was_running;
    bool incoming;              /* started (or recorded) with -incoming */
    bool incoming_events;       /* libdm turned "events" on before the stream
                                 * (libdm__mig_incoming_begin) */
    bool autokill_after_ready;  /* a migration destination: armed until Finish */
    int broken_errno;           /* why the monitor became unusable, if known */
    libdm_json *devices;        /* the last query_devices_async answer */
    void *userdata;             /* the host's (libdm_dm_set_userdata) */
    libdm_dm_subscription *subs; /* QEMU events for the host (dm-events.c) */
    unsigned subs_running;      /* > 0 while their callbacks run */
    bool *subs_gone;            /* set if the handle is released meanwhile */
    sub_event *sub_head, **sub_tail;
    size_t sub_count;
    uint64_t sub_seq;           /* events queued so far */
    libdm__timer sub_timer;
    side_query *queries;        /* query-status alongside an operation (dm-query.c) */
    libdm__queued *queued;      /* requests behind the operation (dm-query.c) */
    libdm__timer queue_timer;   /* starts the next of them once no operation runs */
    uint64_t side_ids;          /* queries made so far */
    uint64_t last_side;         /* the last async call was the query of this id,
                                 * 0: an operation (set_op_destroy) */
};

/* The kind of operation in progress (OP_NONE if none). */
static inline op_kind libdm__dm_op_kind(const libdm_dm *dm)
{
    return dm->op ? dm->op->ops->kind : OP_NONE;
}


/* ---- dm.c: the object, its state, records, notices, the operation core ---- */
libdm_dm *libdm__dm_alloc(libdm_ctx *ctx);
void libdm__dm_free(libdm_dm *dm);
void libdm__dm_set_state(libdm_dm *dm, libdm_dm_state to);
void libdm__dm_set_runstate(libdm_dm *dm, const char *rs);
/* libdm__dm_error() at @level: an expected event, reported anyway. */
void libdm__dm_error_at(libdm_dm *dm, xentoollog_level level, const char *fmt, ...)
    LIBDM__PRINTF(3, 4);
/* Adds "; @fmt" to the DM's last error (the first cause is kept). */
void libdm__dm_error_append(libdm_dm *dm, const char *fmt, ...) LIBDM__PRINTF(2, 3);
int libdm__dm_store(libdm_dm *dm, libdm__store **ret);
int libdm__dm_write_record(libdm_dm *dm);
int libdm__dm_record_state(libdm_dm *dm);
bool libdm__dm_record_alive(const libdm__record *rec);
int libdm__dm_set_paths(libdm_dm *dm, bool create);
bool libdm__dm_usable(libdm_dm *dm);
int libdm__dm_attach_qmp(libdm_dm *dm, libdm_qmp *q);
void libdm__dm_close_qmp(libdm_dm *dm);
/* Closes an attached DM's keeper pidfd (reaping it later if ours). */
void libdm__dm_release_keeper_pidfd(libdm_ctx *ctx, int *pidfd);
void libdm__dm_reply_error(libdm_dm *dm, const libdm_qmp_reply *r, const char *what);

/* Starts an operation of @ops's kind (-EBUSY if one runs): @size bytes (the
 * kind's struct, libdm__op first), zeroed, become dm->op. Its deadline runs
 * @ops->deadline, its tick @on_tick (NULL: none). */
int libdm__dm_op_begin(libdm_dm *dm, const libdm__op_ops *ops, size_t size, int timeout_ms,
                       libdm__timer_fn *on_tick, libdm_dm_done_fn *cb, void *user);
/* Drops the operation without a callback (a start refused before it
 * returned to its caller). */
void libdm__dm_op_discard(libdm_dm *dm);
void libdm__dm_op_finish(libdm_dm *dm, int status);
/* Ends the operation whose call failed with @status: -ESRCH if the DM died
 * (waiting a moment for its exit to show when the monitor failed first). */
void libdm__dm_op_fail(libdm_dm *dm, int status);
int libdm__dm_call(libdm_dm *dm, const char *cmd, const libdm_json *args, libdm_qmp_reply_fn *cb);
/* The same, passing @fd (not consumed) with it (getfd). */
int libdm__dm_call_fd(libdm_dm *dm, const char *cmd, const libdm_json *args, int fd,
                      libdm_qmp_reply_fn *cb);

/* ---- dm-events.c: QEMU's events for the host's subscriptions ---- */
void libdm__dm_subs_init(libdm_dm *dm);
/* An event from the DM's monitor (whatever connection it has now). */
void libdm__dm_subs_event(libdm_dm *dm, const char *name, const libdm_json *data);
/* The handle goes: every subscription's destroy runs, the queue is dropped. */
void libdm__dm_subs_detach(libdm_dm *dm);

/* ---- dm-query.c: query-status alongside another operation ---- */
/* Queues a callback with the DM's completions (run from the loop, in
 * order); @side_id 0 for the operation's own, else a query's or a queued
 * request's id. Out of memory: @destroy runs instead. */
void libdm__dm_complete(libdm_dm *dm, libdm_dm_done_fn *cb, void *user,
                        void (*destroy)(void *user), int status, uint64_t side_id);
int libdm__dm_side_query(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *user);
/* The monitor closes: the queries end with @status (deferred callbacks). */
void libdm__dm_side_queries_end(libdm_dm *dm, int status);
/* set_op_destroy for the query @id, running or ended with its callback
 * still due; -ENOENT once that ran. */
int libdm__dm_side_query_set_destroy(libdm_dm *dm, uint64_t id, void (*destroy)(void *user));
/* The handle goes: their callbacks never run, their destroy does. */
void libdm__dm_side_queries_drop(libdm_dm *dm);
/* Queues @q behind the running operation (the caller filled start, free,
 * cb, user); it becomes the DM's last async call for set_op_destroy. */
void libdm__dm_queue(libdm_dm *dm, libdm__queued *q);
/* queue_timer's callback (dm.c initialises it with the DM). */
void libdm__dm_queue_fire(libdm_ctx *ctx, libdm__timer *t, void *user);
/* An operation ended (op_free): the next request starts from the loop. */
void libdm__dm_queue_kick(libdm_dm *dm);
/* The handle goes: their callbacks never run, their destroy does. */
void libdm__dm_queue_drop(libdm_dm *dm);

/* ---- dm-end.c: the DM's end and the cleanup after it ---- */
/* The DM's process ended: said, and handed to the operation (dm_died). */
void libdm__dm_ended(libdm_dm *dm, int status);
/* Says how the DM ended (and the end of its log) as its last error. */
void libdm__dm_say_end(libdm_dm *dm, int status, bool starting);
char *libdm__dm_describe_status(int status);
/* A store write that found the record's lock held (-EAGAIN): true if it
 * is tried again on @t in a millisecond (until DM_STORE_RETRY_MS). */
bool libdm__dm_store_retry(libdm_dm *dm, libdm__timer *t, int r);
/* A signal a process raises on itself when it crashes (SIGSEGV, ...). */
bool libdm__dm_crash_signal(int sig);
void libdm__dm_on_pidfd(libdm_ctx *ctx, int fd, short revents, void *user);
void libdm__dm_remove_own_chroot(libdm__rundir *rd, const char *profile, uint32_t domid);
/* The DM is gone: its taps, chroot, files and record are removed in steps
 * from the loop (one or two file operations each, never inside a call),
 * then it is DEAD, holding no fd, and the operation ends with @status. */
void libdm__dm_clean_then_finish(libdm_dm *dm, int status);

/* ---- dm-prepare.c: a start's steps before its keeper ---- */
/* A configuration that cannot become a command line fails here, before
 * anything is created. */
int libdm__dm_check_config(libdm_ctx *ctx, const libdm_dm_config *cfg);
int libdm__dm_init_from_config(libdm_dm *dm, const libdm_dm_config *cfg);
/* dm_restrict resolved, then the command line QEMU really gets. */
int libdm__dm_plan_command(libdm_dm *dm, const libdm_dm_config *cfg,
                           libdm__restrict_plan *plan, char ***ret_argv);
/* Claims the name and its run directory, clears a dead predecessor's
 * leftovers. Refusals leave everything as it was. */
int libdm__dm_claim_name(libdm_dm *dm, libdm__store *store);
/* Undoes a start that failed before its keeper ran: only what it made. */
void libdm__dm_unclaim(libdm_dm *dm);

/* ---- dm-start.c ---- */
/* Stop came before the start's keeper ran: undone, DEAD. Whether it was. */
bool libdm__dm_start_cancel_unspawned(libdm_dm *dm);
/* A start is under way whose keeper has not told QEMU's pid yet (for
 * tests/integration/test-abandon). */
bool libdm__dm_start_awaits_pid(const libdm_dm *dm);

/* A wait status, decoded: -1 / 0 when it says otherwise (or is unknown, < 0). */
static inline int libdm__status_exit_code(int status)
{
    return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static inline int libdm__status_signal(int status)
{
    return status >= 0 && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

#endif
