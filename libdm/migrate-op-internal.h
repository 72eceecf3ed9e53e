/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A migration phase on the DM's operation core (migrate.c): what the
 * phases' entry points (migrate-phases.c) use. The steps and their
 * transitions are described in migrate.c.
 */
#ifndef LIBDM_MIGRATE_OP_INTERNAL_H
#define LIBDM_MIGRATE_OP_INTERNAL_H

#include "dm-internal.h"

#include <sys/socket.h>

#define MIGRATE_POLL_MS 50
#define MIGRATE_CANCEL_WAIT_MS 10000
#define MIGRATE_EXIT_WAIT_MS 200    /* a failed monitor: time for the DM's exit to show */
#define MIGRATE_EXIT_POLL_MS 20
#define MIGRATE_CONT_RETRY_MS 20
#define MIGRATE_AFTER_CANCEL_MS 2000 /* at least this long for the steps after a cancel */
#define MIGRATE_DEFAULT_MS 10000     /* a timeout <= 0: the DM's default */

typedef enum mig_phase {
    PH_BEGIN, PH_INCOMING, PH_PERFORM, PH_CONFIRM, PH_CANCEL, PH_RECOVER_RUN,
    PH_RECOVER_STOP, PH_SOURCE_STATE,
} mig_phase;

typedef enum mig_step {
    S_NONE, S_STATUS, S_MIGSTATUS, S_CONT, S_CONT_RETRY, S_IN_EVENTS, S_GETFD, S_INCOMING,
    S_SRC_QUERY,
    S_SRC_EXIT, P_STATUS, P_CAPS, P_SET_PBS, P_SET_EVENTS, P_CONNECT, P_GETFD, P_MIGRATE,
    P_WAIT, P_QUERY, P_HOOK,
    P_CONTINUE, P_EXIT, C_SEND, C_QUERY, C_WAIT,
} mig_step;

typedef struct mig_op {
    libdm_dm *dm;
    mig_phase phase;
    mig_step step;
    const char *cmd;            /* the command in flight, for messages */
    libdm_dm_done_fn *cb;       /* the caller's */
    void *user;
    uint64_t deadline;          /* the phase's own (a cancel moves the op's) */
    uint64_t tick_due;          /* an event may wake a tick early */
    int why;                    /* P_EXIT, cancelling: the error to report */
    bool started;               /* Perform: migrate was sent */
    bool stop_after;            /* Recover: the source goes once this succeeded */
    void (*user_destroy)(void *user); /* frees @user if the DM is released first */
    char *uri;
    int fd;                     /* the stream for getfd (migrate-fd.c), -1: none */
    libdm__watch *watch;        /* P_CONNECT: the connect completing */
    unsigned flags;
    libdm_switchover_async_fn *hook;
    void *hook_user;
    libdm_progress_fn *progress;
    void *progress_user;
} mig_op;

/* Starts phase @ph on @dm: the operation is @dm's until the end. */
int libdm__mig_op_start(libdm_dm *dm, mig_phase ph, int timeout_ms, libdm_dm_done_fn *cb,
                        void *user, mig_op **ret);
/* Sends @cmd (consumes @args) and moves to @next, where its reply is
 * handled; a call that cannot be sent is handled there as its failure. */
void libdm__mig_op_send(mig_op *m, mig_step next, const char *cmd, libdm_json *args);
/* Ends the phase with @status (a failure: -ESRCH for a DM that died). */
void libdm__mig_op_end(mig_op *m, int status);
void libdm__mig_op_tick(mig_op *m, mig_step next, int ms);
/* Cancels the migration in flight (Perform, Cancel, Recover). */
void libdm__mig_op_cancel(mig_op *m, int why);
/* An incoming migration's first step: the "events" capability, then the
 * stream: getfd (m->fd >= 0) and "fd:", or migrate-incoming m->uri. */
void libdm__mig_incoming_begin(mig_op *m);
/* Starts a one-look phase (Confirm, Cancel, Recover) at @first. */
int libdm__mig_op_one_look(libdm_dm *src, mig_phase ph, mig_step first, int timeout_ms,
                           libdm_dm_done_fn *cb, void *user, mig_op **ret);
/* ---- the steps' QMP vocabulary (migrate-qmp.c) ---- */
/* Arguments: {KEY: VALUE}; migrate-set-capabilities' for one capability. */
libdm_json *libdm__mig_string_arg(const char *key, const char *value);
libdm_json *libdm__mig_capability_args(const char *name, bool on);
/* query-migrate's "status" (NULL: none yet): a migration under way (Begin
 * refuses another), in flight (to cancel), settled after a cancel, or one
 * that leaves the source with the guest. */
bool libdm__mig_state_busy(const char *st);
bool libdm__mig_state_in_flight(const char *st);
bool libdm__mig_state_settled(const char *st);
bool libdm__mig_state_source_keeps(const char *st);
/* query-migrate-capabilities' answer lists @name. */
bool libdm__mig_has_capability(const libdm_json *caps, const char *name);
/* query-migrate's answer @info as a progress report (@status borrowed). */
void libdm__mig_read_progress(const libdm_json *info, const char *status,
                              libdm_migrate_progress *ret);
/* libdm__mig_op_send() passing @fd (not consumed) with @cmd (getfd). */
void libdm__mig_op_send_fd(mig_op *m, mig_step next, const char *cmd, libdm_json *args, int fd);

/* ---- the fd transport of a restricted DM (sockets: migrate-fd.c; steps: migrate.c) ----
 * A chrooted QEMU cannot reach a unix socket outside its root: libdm
 * connects (source) or accepts (destination) and hands QEMU the stream
 * with getfd as LIBDM__MIG_FDNAME, then migrate / migrate-incoming
 * "fd:" LIBDM__MIG_FDNAME. */
#define LIBDM__MIG_FDNAME "libdm-migrate"
/* Does @dm's Perform to @uri go through libdm's own connect? (restricted,
 * and "unix:PATH" or "tcp:NUMERIC-HOST:PORT") */
bool libdm__mig_fd_wanted(libdm_dm *dm, const char *uri);
/* 0, or -EINVAL (said in @dm's last error) for a restricted @dm's "tcp:"
 * URI that names a host: QEMU in its chroot cannot resolve it, and libdm
 * does not (a lookup could block the loop). The caller resolves first. */
int libdm__mig_uri_usable(libdm_dm *dm, const char *uri);
/* (migrate.c) Hands m->fd to QEMU with getfd, then @next's reply is handled. */
void libdm__mig_fd_hand_over(mig_op *m, mig_step next);
/* A non-blocking connect to @uri: @fn(ctx, fd, revents, @user) on the loop
 * once it completed (or failed); the caller owns *ret_fd and *ret_watch. */
int libdm__mig_connect_start(libdm_ctx *ctx, const char *uri, libdm__watch_fn *fn, void *user,
                             int *ret_fd, libdm__watch **ret_watch);
/* How it completed (SO_ERROR); on success the socket is blocking again. */
int libdm__mig_connect_result(int fd);
/* Sockets: "unix:PATH" / "tcp:HOST:PORT" (HOST numeric, [v6]) -> the
 * address; -EDESTADDRREQ when HOST is a name (never resolved here: that
 * could block), -EINVAL for anything else. */
int libdm__mig_sockaddr(const char *uri, struct sockaddr_storage *sa, socklen_t *len);
/* A non-blocking, close-on-exec listening socket on @uri (tcp port 0: one
 * the kernel picks); *ret_uri is the address to give the sender. */
int libdm__mig_listen(const char *uri, int *ret_fd, char **ret_uri);

#endif
