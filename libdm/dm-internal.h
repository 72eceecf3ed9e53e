/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What migrate.c needs from dm.c. */
#ifndef LIBDM_DM_INTERNAL_H
#define LIBDM_DM_INTERNAL_H

#include "internal.h"

/* Start with autokill armed in the keeper from the first instant: if this
 * process goes away before libdm__dm_set_autokill(dm, false), the keeper
 * kills the DM (seed 002). */
int libdm__dm_start_async(libdm_ctx *ctx, const libdm_dm_config *cfg, bool autokill,
                          libdm_dm_done_fn *cb, void *userdata, libdm_dm **ret_dm);
int libdm__dm_start(libdm_ctx *ctx, const libdm_dm_config *cfg, bool autokill,
                    libdm_dm **ret_dm);
int libdm__dm_set_autokill(libdm_dm *dm, bool on);
/* Sets the DM's last error (libdm_dm_last_error(): "NAME: ...") and logs it. */
void libdm__dm_error(libdm_dm *dm, const char *fmt, ...) LIBDM__PRINTF(2, 3);
/* The operation in progress frees its userdata with @destroy if the DM is
 * released before its callback runs. */
void libdm__dm_op_set_destroy(libdm_dm *dm, void (*destroy)(void *user));
/* True while a record write of @dm waits for another writer's lock (the
 * loop retries it, for DM_STORE_RETRY_MS at most). */
bool libdm__dm_record_pending(const libdm_dm *dm);
/* The state @dm's own record says (one record read, not a listing): 0 and
 * a malloc'd *ret_state, -ENOENT without a record, another negative errno. */
int libdm__dm_recorded_state(libdm_dm *dm, char **ret_state);
bool libdm__dm_exited(const libdm_dm *dm);
libdm_ctx *libdm__dm_ctx(const libdm_dm *dm);
/* Whether the source ran before Perform, for Confirm after a failure. */
void libdm__dm_set_migrate_was_running(libdm_dm *dm, bool running);
bool libdm__dm_migrate_was_running(const libdm_dm *dm);
/* Whether the incoming migration is over: 1 completed (query-migrate and the
 * MIGRATION event agree), 0 not yet, -EIO failed or cancelled. */
int libdm__incoming_verdict(libdm_dm *dm, const char *query_status);
/* Marks the DM's monitor as held by a migration (others are refused at
 * once, never queued until after the switchover), or clears the mark. */
int libdm__dm_set_migrating(libdm_dm *dm, bool on);
/* "events" is on before @dm's incoming stream: its MIGRATION event counts. */
void libdm__dm_set_incoming_events(libdm_dm *dm);
/* Incoming migration confirmed completed: INCOMING -> PAUSED. */
/* @record: write the PAUSED state now (not when a resume follows at once:
 * the write would only add to the guest's downtime). */
void libdm__dm_incoming_done(libdm_dm *dm, bool record);
/* Finish (destination): waits until the incoming migration is confirmed
 * completed (seed 000's rule, libdm__incoming_verdict), then sends cont at
 * once unless @keep_paused. The guarded resume's own wait: it exists once.
 * An operation (OP_RESUME): @cb gets -EIO if the incoming migration failed,
 * -ESRCH if the DM died, -ETIMEDOUT at the deadline; fails at once (no
 * callback) when the DM has no usable monitor. */
int libdm__dm_finish_incoming_async(libdm_dm *dm, bool keep_paused, int timeout_ms,
                                    libdm_dm_done_fn *cb, void *userdata);

/* A blocking call waits for its own operation's completion (dm.c). A
 * caller may wake the wait early by setting @done from a callback of its
 * own (to run a step outside any dispatch), then clear it and wait again. */
typedef struct sync_op {
    bool done;
    int status;
} sync_op;
void libdm__dm_sync_done_cb(libdm_dm *dm, int status, void *user);
int libdm__dm_sync_wait(libdm_dm *dm, sync_op *s);

/* ---- a migration phase on the DM's operation core (dm-ops.c) ----
 * One operation at a time per DM: the phase holds it from mig_begin until
 * mig_finish (or until the DM exits: -ESRCH, or a stop interrupts it:
 * -ECANCELED). Everything it waits on belongs to the operation and ends
 * with it: the monitor call (one slot), the tick timer, the deadline. */
/* 0, or why no monitor call can be made (-ESRCH exited, -ENOTCONN). */
int libdm__dm_mig_usable(libdm_dm *dm);
/* Starts the operation; @state (the phase's object) is passed to @cb. */
int libdm__dm_mig_begin(libdm_dm *dm, int timeout_ms, libdm__timer_fn *on_deadline,
                        libdm_dm_done_fn *cb, void *state, void (*destroy)(void *state));
/* The running migration phase's @state, or NULL (none, or it ended). */
void *libdm__dm_mig_state(libdm_dm *dm);
void libdm__dm_mig_finish(libdm_dm *dm, int status);
/* Ends it with the failure @status: -ESRCH if the DM died, also when its
 * monitor failed first (a moment is given for the exit to show). */
void libdm__dm_mig_fail(libdm_dm *dm, int status);
/* Sends @cmd; the call is owned by the operation (freed when it ends or at
 * the next call). @cb gets the DM as its userdata. */
int libdm__dm_mig_call(libdm_dm *dm, const char *cmd, const libdm_json *args,
                       libdm_qmp_reply_fn *cb);
/* The same, passing @fd (not consumed; -1: none) with @cmd (getfd). */
int libdm__dm_mig_call_fd(libdm_dm *dm, const char *cmd, const libdm_json *args, int fd,
                          libdm_qmp_reply_fn *cb);
/* Arms the operation's tick: @fn(ctx, timer, dm) in @delay_ms, or at once
 * when a MIGRATION event arrives first (never an event alone). */
void libdm__dm_mig_tick(libdm_dm *dm, libdm__timer_fn *fn, int delay_ms);
/* A MIGRATION event came while the phase had no tick armed (its query in
 * flight): true once, and the caller's next wait is none. */
bool libdm__dm_mig_take_event(libdm_dm *dm);
/* Moves the operation's deadline to @abs_ms. */
void libdm__dm_mig_set_deadline(libdm_dm *dm, uint64_t abs_ms);

#endif
