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
/* Incoming migration confirmed completed: INCOMING -> PAUSED. */
/* @record: write the PAUSED state now (not when a resume follows at once:
 * the write would only add to the guest's downtime). */
void libdm__dm_incoming_done(libdm_dm *dm, bool record);
/* Finish (destination): waits until the incoming migration is confirmed
 * completed (seed 000's rule, libdm__incoming_verdict), then sends cont at
 * once unless @keep_paused. The guarded resume's own wait: it exists once.
 * Blocking; -EIO if the incoming migration failed, -ESRCH if the DM died. */
int libdm__dm_finish_incoming(libdm_dm *dm, bool keep_paused, int timeout_ms);

#endif
