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
#define DM_MIGRATE_POLL_MS 100  /* re-check query-migrate: never wait on an event alone */
#define DM_LOG_TAIL 1024
#define DM_EXIT_RECORD_POLL_MS 10  /* attached, no keeper pidfd: re-read the record */
#define DM_EXIT_RECORD_POLLS 50
#define DM_KEEPER_EXIT_WAIT_MS 5000 /* attached: the keeper records, then exits */

typedef enum {
    OP_NONE, OP_START, OP_RESUME, OP_STOP, OP_PAUSE, OP_QUERY, OP_ATTACH,
    OP_MIGRATE,     /* a migration phase (migrate.c) */
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
    void (*op_destroy)(void *user); /* frees op_user if the DM is released first */
    int op_status;
    bool op_failing;            /* start failed: waiting for the DM to be gone */
    stop_step step;
    libdm__timer op_deadline, op_tick, op_done;
    libdm__timer exit_poll;     /* attached: waiting for the keeper's record */
    unsigned exit_polls;
    completion *done_head, **done_tail;
    libdm_dm *postponed_next;   /* on ctx->postponed while a blocking call for
                                 * another DM runs */
    bool postponed;
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
    bool autokill_after_ready;
    bool resume_keep_paused;    /* Finish with keep_paused: confirm, no cont */  /* a migration destination: armed until Finish */
    int broken_errno;           /* why the monitor became unusable, if known */
    char *lock_holder;          /* attach: who holds monitor.lock (cmdline) */
    int lock_holder_pid;
};


void libdm__dm_attach_connected(libdm_dm *dm);
void libdm__dm_attach_fail(libdm_dm *dm, int status);
int libdm__dm_attach_qmp(libdm_dm *dm, libdm_qmp *q);
void libdm__dm_close_qmp(libdm_dm *dm);
char *libdm__dm_describe_status(int status);
libdm_dm *libdm__dm_alloc(libdm_ctx *ctx);
int libdm__dm_call(libdm_dm *dm, const char *cmd, const libdm_json *args, libdm_qmp_reply_fn *cb);
void libdm__dm_error(libdm_dm *dm, const char *fmt, ...) LIBDM__PRINTF(2, 3);
void libdm__dm_free(libdm_dm *dm);
void libdm__dm_set_state(libdm_dm *dm, libdm_dm_state to);
int libdm__dm_store(libdm_dm *dm, libdm__store **ret);
bool libdm__dm_usable(libdm_dm *dm);
void libdm__dm_on_pidfd(libdm_ctx *ctx, int fd, short revents, void *user);
void libdm__dm_on_qmp_state(libdm_qmp *q, libdm_qmp_state s, int err, void *user);
int libdm__dm_op_begin(libdm_dm *dm, op_kind kind, int timeout_ms, libdm__timer_fn *on_deadline,
                    libdm_dm_done_fn *cb, void *user);
void libdm__dm_op_deadline_fire(libdm_ctx *ctx, libdm__timer *t, void *user);
void libdm__dm_op_finish(libdm_dm *dm, int status);
bool libdm__dm_record_alive(const libdm__record *rec);
int libdm__dm_record_state(libdm_dm *dm);
void libdm__dm_remove_files(libdm_ctx *ctx, const char *name, libdm__rundir *rd,
                         const char *profile, uint32_t domid);
void libdm__dm_reply_error(libdm_dm *dm, const libdm_qmp_reply *r, const char *what);
int libdm__dm_set_paths(libdm_dm *dm, bool create);
void libdm__dm_set_runstate(libdm_dm *dm, const char *rs);
void libdm__dm_start_fail(libdm_dm *dm, int status);
void libdm__dm_start_fail_finished(libdm_dm *dm);
void libdm__dm_start_maybe_ready(libdm_dm *dm);
void libdm__dm_start_tick(libdm_ctx *ctx, libdm__timer *t, void *user);
void libdm__dm_stop_finished(libdm_dm *dm);
/* A MIGRATION event arrived (dm-ops.c: a waiting resume looks now). */
void libdm__dm_incoming_event(libdm_dm *dm);
int libdm__dm_write_record(libdm_dm *dm);

void libdm__dm_remove_own_chroot(libdm__rundir *rd, const char *profile, uint32_t domid);

extern const libdm__keeper_ops libdm__dm_keeper_ops;

#endif
