/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol between two hosts (migrate.h, libdm_migration): what its
 * files share.
 *   migrate-chan.c     the control channel (lines of JSON over two fds)
 *   migrate-proto.c    the object, its messages, the decision tables
 *   migrate-send.c     the sender: Begin, Prepare, Perform, Finish, Confirm
 *   migrate-recv.c     the receiver: Prepare, Finish
 *   migrate-query.c    the receiver's answer to a recovery's query
 *   migrate-recover.c  the recovery (either side's host)
 */
#ifndef LIBDM_MIGRATE_INTERNAL_H
#define LIBDM_MIGRATE_INTERNAL_H

#include "dm-internal.h"

#define LIBDM__MCHAN_MAX_LINE (64 * 1024)
#define LIBDM__MIG_PEER_MAX_TIMEOUT_MS (24 * 3600 * 1000)

/* ---- the channel (migrate-chan.c) ---- */
typedef struct libdm__mchan libdm__mchan;
/* A line for an armed receive (@msg, owned by the callee), or the channel's
 * failure (@msg NULL, @err: -ECONNRESET closed, -E2BIG, -EPROTO, ...); the
 * failure is told once even when no receive is armed. */
typedef void libdm__mchan_fn(libdm__mchan *ch, libdm_json *msg, int err, void *user);
/* Takes @in and @out (either may be -1; equal for one socket) on success. */
int libdm__mchan_new(libdm_ctx *ctx, int in, int out, libdm__mchan_fn *fn, void *user,
                     libdm__mchan **ret);
libdm__mchan *libdm__mchan_free(libdm__mchan *ch);
/* Queues @msg (consumed) as one line and writes what can be written now. */
int libdm__mchan_send(libdm__mchan *ch, libdm_json *msg);
/* Arms one receive: the callback gets the next line (maybe one buffered). */
int libdm__mchan_recv(libdm__mchan *ch);
void libdm__mchan_disarm(libdm__mchan *ch);
/* EOF to the peer (our side writes no more). */
void libdm__mchan_close_out(libdm__mchan *ch);
bool libdm__mchan_gone(const libdm__mchan *ch);
bool libdm__mchan_flushed(const libdm__mchan *ch);
const char *libdm__mchan_strerror(int err);

/* ---- the migration object (migrate-proto.c) ---- */
typedef enum mig_role { ROLE_SEND, ROLE_RECEIVE, ROLE_RECOVER } mig_role;

/* What a side supplies (the object knows no side: its files sit above). */
typedef struct libdm__mig_ops {
    int (*start)(libdm_migration *m);
    libdm__mchan_fn *on_msg;                 /* the channel's callback */
    void (*on_deadline)(libdm_migration *m); /* the wait on the channel */
    void (*abandon)(libdm_migration *m);     /* dropped before the end; may be NULL */
    void (*cleanup)(libdm_migration *m);     /* at the free; may be NULL */
} libdm__mig_ops;

/* How far the sender got: from STAGE_FINISH_SENT on (a finish that lets the
 * destination run may have left) the source is never resumed unless the
 * destination answered that it stopped. */
typedef enum mig_stage {
    STAGE_NEW, STAGE_BEGIN, STAGE_PREPARE, STAGE_PERFORM, STAGE_SOURCE_STATE,
    STAGE_FINISH_SENT, STAGE_ANSWERED, STAGE_CONFIRM, STAGE_DONE,
} mig_stage;

/* The receiver's answer to "finish". */
typedef enum mig_answer { ANSWER_FINISHED, ANSWER_ABORTED, ANSWER_NONE } mig_answer;

struct libdm_migration {
    unsigned refs;
    mig_role role;
    const libdm__mig_ops *ops;
    libdm_ctx *ctx;
    libdm_dm *dm;               /* sender: the source (not owned); else owned */
    libdm__mchan *ch;
    int timeout_ms;
    unsigned flags;
    char *uri_host, *machine, *name_opt, *tcp_host, *qemu;
    uint64_t memory_mb;
    libdm_migration_done_fn *cb;
    void *user;
    libdm_destroy_fn *destroy;
    libdm_migration_hook_fn *hook;
    void *hook_user;
    libdm_progress_fn *progress;
    void *progress_user;
    libdm_migration_notify_fn *notify;
    void *notify_user;
    libdm__timer deadline;      /* the wait on the channel */
    libdm__timer end_timer;     /* the deferred completion (or a flush's wait) */
    libdm_qmp_slot *slot;       /* a monitor call of our own */
    bool started, done, ending, in_cb, free_after_cb;
    unsigned pending;           /* libdm calls whose callback is still due */
    uint64_t end_by;            /* the end waits for queued output until then */
    int status;                 /* the completion's */
    /* sender */
    mig_stage stage;
    libdm_migrate_outcome outcome;
    libdm_migrate_source source;
    const char *failed_in;
    int err;
    char *why;
    char *runstate, *record_error;
    char id[33];
    libdm_json *doc;
    char *uri;
    uint64_t prepared_at;
    bool prepared, cancel_sent, peer_lost, hook_pending, perform_done;
    bool interrupted, awaiting_answer;
    int confirm_err;
    /* receiver */
    char *name;
    char *sock_path;
    bool fd_transport;          /* restricted: libdm listens, QEMU gets the fd */
    int listen_fd;
    libdm__watch *listen_watch;
    bool fd_busy;               /* getfd / migrate-incoming in flight */
    libdm_json *finish_msg;     /* a finish read meanwhile */
    char *peer_id;
    int64_t peer_timeout_ms;
    uint64_t started_at, obey_until, obey_until_real;
    bool query_resume;
    char *guest, *detail;
    /* recovery */
    libdm_migrate_recovery recovery;
    bool local_runs, dest_has;
    libdm__timer step;          /* a deferred step of a side */
    int stop_then;              /* receiver: what follows the destination's stop */
    char *query_rs, *query_st;  /* receiver: a query's runstate, migration status */
};

/* An operation in flight holds the migration (hold before the call, put
 * first thing in its callback: true if the migration was abandoned, maybe
 * freed: return at once). op_destroy: the put of a callback that never
 * runs (libdm_dm_set_op_destroy, libdm_qmp_slot_set_destroy). */
void libdm__mig_hold(libdm_migration *m);
bool libdm__mig_put(libdm_migration *m);
void libdm__mig_op_destroy(void *user);
int libdm__mig_new(libdm_ctx *ctx, mig_role role, const libdm__mig_ops *ops,
                   libdm_migration **ret);
/* Records the first failure: @phase, @err and (if @fmt) the cause. */
int libdm__mig_fail(libdm_migration *m, const char *phase, int err, const char *fmt, ...)
    LIBDM__PRINTF(4, 5);
/* Ends the migration with @status: @cb runs from the loop (after the
 * channel's queued output went out, within a second). */
void libdm__mig_end(libdm_migration *m, int status);
void libdm__mig_notify(libdm_migration *m, const char *what);
/* Arms the channel's receive with a deadline (absolute ms). */
int libdm__mig_recv(libdm_migration *m, uint64_t deadline);
uint64_t libdm__mig_deadline_in(int ms);
/* What a receiver keeps back from the sender's deadline, so that it stops
 * obeying before the sender stops waiting (issue 22, 6). */
uint64_t libdm__mig_obey_margin_ms(int64_t timeout_ms);
uint64_t libdm__mig_realtime_ms(void);
int libdm__mig_remaining(uint64_t deadline);

/* Messages: {"phase": PHASE, "version": N} to add members to. */
libdm_json *libdm__mig_msg(const char *phase);
bool libdm__mig_add_str(libdm_json *o, const char *key, const char *value);
bool libdm__mig_add_int(libdm_json *o, const char *key, int64_t value);
bool libdm__mig_add_bool(libdm_json *o, const char *key, bool value);
libdm_json *libdm__mig_check(libdm_json *o, bool ok);
const char *libdm__mig_phase(const libdm_json *msg);
bool libdm__mig_bool(const libdm_json *msg, const char *key, bool *ret);
/* The peer's protocol version (1 without one), or -1 if unknown here. */
int libdm__mig_peer_version(const libdm_json *msg);
/* "tcp:HOST:PORT", HOST bracketed when it has a ':'. */
char *libdm__mig_tcp_uri(const char *host, const char *port);
/* Whether a finish saying @source may let the destination run the guest. */
bool libdm__mig_finish_may_run(libdm_migrate_source source);
/* The sender's decision table (dmctl(1), PROTOCOL OF MIGRATE). */
libdm_migrate_outcome libdm__mig_outcome_for(libdm_migrate_source source, mig_answer a);

/* The migration's mark on each host (NAME.migration in the store's run
 * directory, beside the records): which side this host holds, the id, and
 * whether a recovery fenced the other side. Written at Begin (source) and
 * at "prepared" (destination), removed when the migration's outcome is
 * known on that side; read by a recovery and by a query. */
typedef struct libdm__mig_mark {
    char role[16];              /* "source" | "destination" */
    char id[33];
    bool fenced;                /* a recovery resumed this side: the other is fenced */
    int pid;                    /* the DM this side held (0: not recorded) */
    uint64_t pid_start;         /* its start time: with pid, the DM's identity */
} libdm__mig_mark;
/* Records @dm (NULL: nothing) as the DM the mark speaks of. */
void libdm__mig_mark_set_dm(libdm__mig_mark *mark, const libdm_dm *dm);
/* The DM an unfenced mark speaks of is gone (its recorded identity no
 * longer lives): what the mark said of this host no longer holds. A mark
 * without an identity, or a fence, is never stale (a fence outlives the DM
 * that the recovery resumed: the other side must still never run). */
bool libdm__mig_mark_stale(const libdm__mig_mark *mark);
int libdm__mig_mark_write(libdm_ctx *ctx, const char *name, const libdm__mig_mark *mark);
/* 0 and *ret, -ENOENT without a mark, another negative errno. */
int libdm__mig_mark_read(libdm_ctx *ctx, const char *name, libdm__mig_mark *ret);
void libdm__mig_mark_clear(libdm_ctx *ctx, const char *name);

/* The receiver's answer to a "query" (@msg consumed; migrate-query.c). */
void libdm__mig_query(libdm_migration *m, libdm_json *msg);
/* The answer of a query, then the end. */
void libdm__mig_send_state(libdm_migration *m, const char *guest, const char *fmt, ...)
    LIBDM__PRINTF(3, 4);
/* Receiver: the error line of the recorded failure, then the end. */
void libdm__mig_send_error(libdm_migration *m);

#endif
