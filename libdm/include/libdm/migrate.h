/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration in libvirt's five phases, as blocking calls a toolstack
 * drives from two hosts (or two processes):
 *
 *   source                          destination
 *   libdm_migrate_begin()
 *                                   libdm_migrate_prepare()   DM paused, -incoming defer,
 *                                                             autokill armed (seed 002)
 *   libdm_migrate_perform()                                   (QEMU streams directly)
 *                                   libdm_migrate_finish()    cont only once the MIGRATION
 *                                                             event and query-migrate both
 *                                                             say completed (seed 000);
 *                                                             autokill released after
 *   libdm_migrate_confirm()         quit the source on success, resume it on failure
 *
 * Perform sets pause-before-switchover when QEMU offers it: at pre-switchover
 * the caller's hook runs (settle block jobs: seed 003), then migrate-continue;
 * a hook that fails cancels, and QEMU un-pauses the source. Every wait polls
 * query-migrate on a timer as well as listening for events (a missed event
 * once deadlocked libvirt and QEMU together) and has a deadline after which
 * the migration is cancelled cleanly.
 */
#ifndef LIBDM_MIGRATE_H
#define LIBDM_MIGRATE_H

#include <libdm/dm.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER 0x1u

typedef struct libdm_migrate_progress {
    const char *status;          /* QEMU's migration status */
    uint64_t ram_transferred;    /* bytes */
    uint64_t ram_total;
    uint64_t ram_remaining;
    uint64_t mbps;               /* QEMU's throughput estimate, Mbit/s */
} libdm_migrate_progress;

/* Runs at pre-switchover; return 0 to continue, a negative errno to cancel. */
typedef int libdm_switchover_fn(libdm_dm *source, void *userdata);
typedef void libdm_progress_fn(libdm_dm *source, const libdm_migrate_progress *p,
                               void *userdata);

/* Begin (source): the DM can migrate now (alive, monitor ready, runstate
 * running or paused, no migration in progress). */
LIBDM_EXPORT int libdm_migrate_begin(libdm_dm *source, int timeout_ms);

/* Prepare (destination): starts @config's DM paused with -incoming defer and
 * autokill armed, then migrate-incoming @listen_uri (unix:PATH, tcp:HOST:PORT). */
LIBDM_EXPORT int libdm_migrate_prepare(libdm_ctx *ctx, const libdm_dm_config *config,
                                       const char *listen_uri, libdm_dm **ret_dm);

/* Perform (source): migrates to @uri and waits for completion. On failure
 * or deadline the migration is cancelled and the source keeps running. */
LIBDM_EXPORT int libdm_migrate_perform(libdm_dm *source, const char *uri, unsigned flags,
                                       libdm_switchover_fn *hook, void *hook_userdata,
                                       libdm_progress_fn *progress, void *progress_userdata,
                                       int timeout_ms);

/* Finish (destination): waits until the incoming migration is confirmed
 * completed, then sends cont unless @keep_paused, then releases autokill.
 * On failure no cont is ever sent; the caller stops the DM. */
LIBDM_EXPORT int libdm_migrate_finish(libdm_dm *dest, int keep_paused, int timeout_ms);

/* Confirm (source): @success: stop the source DM; else make sure it runs
 * again if it was running before Perform (or stays paused if it was). */
LIBDM_EXPORT int libdm_migrate_confirm(libdm_dm *source, int success, int timeout_ms);

/* Recovery (source): cancels a migration left in flight, e.g. paused at
 * pre-switchover by a controller that died, and makes the source run again.
 * Returns 0 if the source runs (or no migration was in flight and it ran),
 * -EALREADY if the migration had completed (the source must not run: the
 * guest lives on the destination). */
LIBDM_EXPORT int libdm_migrate_cancel(libdm_dm *source, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
