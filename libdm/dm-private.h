/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private to the dm*.c files: the device-model object and what its parts
 * share. dm.c holds the object (identity, state, records, notices, the
 * operation core: one operation at a time, its deadline, its deferred
 * completion); dm-start.c, dm-ops.c (resume, pause, query-status, stop)
 * and dm-attach.c hold the operations, each built on that core.
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

#define DM_TERM_GRACE_MS 3000   /* SIGTERM -> SIGKILL */
#define DM_KILL_WAIT_MS 5000    /* SIGKILL -> give up */
#define DM_END_GRACE_MS 200     /* a failed monitor: the keeper's word on the DM's end */
#define DM_MIGRATE_POLL_MS 100  /* re-check query-migrate: never wait on an event alone */
#define DM_LOG_TAIL 1024
#define DM_EXIT_RECORD_POLL_MS 10  /* attached, no keeper pidfd: re-read the record */
#define DM_EXIT_RECORD_POLLS 50
#define DM_KEEPER_EXIT_WAIT_MS 5000 /* attached: the keeper records, then exits */
#define DM_EXIT_SHOW_MS 200         /* a failed monitor: time for the DM's exit to show */

typedef enum {
    OP_NONE, OP_START, OP_RESUME, OP_STOP, OP_PAUSE, OP_QUERY, OP_ATTACH,
    OP_MIGRATE,     /* a migration phase (migrate.c) */
    OP_DEVICES,     /* query_devices, apply_config (dm-devices.c) */
} op_kind;

extern const char *const libdm__dm_op_names[];

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
    void (*destroy)(void *user); /* frees @user if the callback never runs */
    int status;
} completion;
typedef enum { STOP_QUIT, STOP_TERM, STOP_KILL } stop_step;

/* The steps of a start (dm-start.c), each run from the loop, never inside
 * libdm_dm_start_async(): that call only checks the configuration. */
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


/* One operation on a DM with its own state (libxl's libxl__dm_spawn_state
 * manner): made by libdm__dm_op_begin(), freed when it finishes. Its timers
 * and its monitor call end with it, so nothing of an ended operation can
 * fire, and no operation re-uses another's timer. */
typedef struct libdm__op {
    libdm_dm *dm;
    op_kind kind;
    libdm_dm_done_fn *cb;
    void *user;
    void (*destroy)(void *user); /* frees @user if the callback never runs */
    int status;
    void (*fini)(struct libdm__op *op); /* frees what the kind's union holds */
    libdm__timer deadline;      /* the whole operation's */
    libdm__timer tick;          /* its next step: a retry, a poll, a deferred step */
    libdm_qmp_slot *call;       /* its monitor call in flight */
    bool cleaning;              /* in the cleanup steps at its end (dm.c) */
    unsigned clean, rd_step;
    int clean_status;           /* the status the operation ends with after them */
    bool event_pending;         /* a MIGRATION event came with no tick armed: the
                                 * next wait is none (issue 22, 12) */
    union {
        struct {
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
            libdm_qmp_slot *caps_call;  /* migrate-set-capabilities events */
        } start;
        struct {
            stop_step step;
        } stop;
        struct {
            bool keep_paused;           /* Finish with keep_paused: confirm, no cont */
            bool finish;                /* Finish: release autokill before cont */
        } resume;
        struct {
            libdm_json *out;            /* the devices found so far */
            char *password;             /* apply_config: the VNC password to set */
            bool apply;                 /* apply_config (publish, then the password) */
        } devices;
        struct {
            char *lock_holder;          /* who holds monitor.lock (cmdline) */
            int lock_holder_pid;
        } attach;
    } u;
} libdm__op;

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
    bool incoming_at_start;     /* -incoming URI (not defer): QEMU loads before
                                 * the events capability can be turned on */
    bool autokill_after_ready;  /* a migration destination: armed until Finish */
    int broken_errno;           /* why the monitor became unusable, if known */
    libdm_json *devices;        /* the last query_devices_async answer */
    void *userdata;             /* the host's (libdm_dm_set_userdata) */
};

/* The kind of operation in progress (OP_NONE if none). */
static inline op_kind libdm__dm_op_kind(const libdm_dm *dm)
{
    return dm->op ? dm->op->kind : OP_NONE;
}


void libdm__dm_attach_connected(libdm_dm *dm);
void libdm__dm_attach_fail(libdm_dm *dm, int status);
int libdm__dm_attach_qmp(libdm_dm *dm, libdm_qmp *q);
void libdm__dm_close_qmp(libdm_dm *dm);
char *libdm__dm_describe_status(int status);
libdm_dm *libdm__dm_alloc(libdm_ctx *ctx);
int libdm__dm_call(libdm_dm *dm, const char *cmd, const libdm_json *args, libdm_qmp_reply_fn *cb);
void libdm__dm_free(libdm_dm *dm);
void libdm__dm_set_state(libdm_dm *dm, libdm_dm_state to);
int libdm__dm_store(libdm_dm *dm, libdm__store **ret);
bool libdm__dm_usable(libdm_dm *dm);
void libdm__dm_on_pidfd(libdm_ctx *ctx, int fd, short revents, void *user);
void libdm__dm_on_qmp_state(libdm_qmp *q, libdm_qmp_state s, int err, void *user);
/* Starts operation @kind (-EBUSY if one runs): its deadline fires
 * @on_deadline(ctx, timer, dm), its tick @on_tick (NULL: none). */
int libdm__dm_op_begin(libdm_dm *dm, op_kind kind, int timeout_ms, libdm__timer_fn *on_deadline,
                       libdm__timer_fn *on_tick, libdm_dm_done_fn *cb, void *user);
/* Drops the operation without a callback (a start refused before it
 * returned to its caller). */
void libdm__dm_op_discard(libdm_dm *dm);
void libdm__dm_op_deadline_fire(libdm_ctx *ctx, libdm__timer *t, void *user);
void libdm__dm_op_finish(libdm_dm *dm, int status);
/* Ends the operation whose call failed with @status: -ESRCH if the DM died
 * (waiting a moment for its exit to show when the monitor failed first). */
void libdm__dm_op_fail(libdm_dm *dm, int status);
bool libdm__dm_record_alive(const libdm__record *rec);
int libdm__dm_record_state(libdm_dm *dm);
void libdm__dm_remove_files(libdm_ctx *ctx, const char *name, libdm__rundir *rd,
                         const char *profile, uint32_t domid);
void libdm__dm_reply_error(libdm_dm *dm, const libdm_qmp_reply *r, const char *what);
int libdm__dm_set_paths(libdm_dm *dm, bool create);
void libdm__dm_set_runstate(libdm_dm *dm, const char *rs);
void libdm__dm_start_fail(libdm_dm *dm, int status);
/* Adds "; @fmt" to the DM's last error (the first cause is kept). */
void libdm__dm_error_append(libdm_dm *dm, const char *fmt, ...) LIBDM__PRINTF(2, 3);
void libdm__dm_start_fail_finished(libdm_dm *dm);
/* Stop came before the start's keeper ran: undone, DEAD. Whether it was. */
bool libdm__dm_start_cancel_unspawned(libdm_dm *dm);
/* A start released before its keeper ran: removes what it made. */
void libdm__dm_start_abandon(libdm_dm *dm);
/* Frees the start-specific state of @op. */
void libdm__dm_start_op_fini(libdm__op *op);
void libdm__dm_stop_finished(libdm_dm *dm);
/* The DM is gone: its taps, chroot, files and record are removed in steps
 * from the loop (one or two file operations each, never inside a call),
 * then it is DEAD, holding no fd, and the operation ends with @status. */
void libdm__dm_clean_then_finish(libdm_dm *dm, int status);
/* A MIGRATION event arrived (dm-ops.c: a waiting resume looks now). */
void libdm__dm_incoming_event(libdm_dm *dm);
int libdm__dm_write_record(libdm_dm *dm);

void libdm__dm_remove_own_chroot(libdm__rundir *rd, const char *profile, uint32_t domid);

extern const libdm__keeper_ops libdm__dm_keeper_ops;

#endif
