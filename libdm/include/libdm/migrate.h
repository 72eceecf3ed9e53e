/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration in libvirt's five phases, as calls a toolstack drives from
 * two hosts (or two processes); each phase is blocking or asynchronous (the
 * _async forms at the end):
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
 * a hook that fails cancels, and QEMU un-pauses the source. Every wait wakes
 * at once on a MIGRATION event and also polls query-migrate on a timer (a
 * missed event once deadlocked libvirt and QEMU together); each has a
 * deadline after which the migration is cancelled cleanly.
 *
 * Never a split brain. After Perform the source tells Finish what it knows
 * (libdm_migrate_source_state()), and Finish decides on that *and* on the
 * destination's own evidence:
 *
 *   source says   destination's incoming migration   Finish
 *   COMPLETED     completed                          cont (unless keep_paused)  0
 *   COMPLETED     failed / not before the deadline   no cont, caller stops it   <0
 *   GONE          completed                          cont (unless keep_paused)  0
 *   GONE          failed / not before the deadline   no cont, caller stops it   <0 (lost
 *                                                     with the only QEMU holding it)
 *   KEEPS         (not even asked)                   no cont, -ECANCELED, caller stops it
 *   UNKNOWN       (not even asked)                   no cont, -ECANCELED, caller stops it
 *
 * So only a source that completed (and then stays paused: postmigrate) or
 * died ever lets the destination run. Once the source side has told a
 * destination COMPLETED it must not resume the source unless the destination
 * answered that it stopped; without an answer the outcome is unknown and
 * only libdm_migrate_recover(), with the destination's fact, decides.
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
 * running or paused, no migration in progress). A xen-profile DM is refused
 * (-EOPNOTSUPP, said in its last error): on Xen the guest's RAM is the
 * hypervisor's and a domain moves with its toolstack (xl migrate), QEMU's
 * part being its device state only. */
LIBDM_EXPORT int libdm_migrate_begin(libdm_dm *source, int timeout_ms);

/* Prepare (destination): starts @config's DM paused with -incoming defer and
 * autokill armed, then migrate-incoming @listen_uri (unix:PATH, tcp:HOST:PORT).
 * @listen_uri "defer": no migrate-incoming yet; the stream comes later with
 * libdm_migrate_incoming_fd_async() (a restricted DM, below). */
LIBDM_EXPORT int libdm_migrate_prepare(libdm_ctx *ctx, const libdm_dm_config *config,
                                       const char *listen_uri, libdm_dm **ret_dm);

/* Perform (source): migrates to @uri and waits for completion. On failure
 * or deadline the migration is cancelled and the source keeps running.
 *
 * Restricted DMs (libdm_dm_config_set_restrict) and the fd transport: a
 * chrooted QEMU cannot open a unix socket outside its root, so for a
 * restricted source and a "unix:PATH" or "tcp:ADDRESS:PORT" @uri (ADDRESS
 * numeric or localhost: resolving a name could block) libdm itself connects,
 * non-blocking on the loop within the deadline, hands QEMU the socket with
 * QMP getfd and migrates to "fd:NAME"; libdm's copy is closed once getfd
 * answered. An unrestricted source lets QEMU connect (unchanged). A
 * restricted source given "tcp:NAME:PORT" with NAME a host name is refused
 * at the call (-EINVAL, said in its last error): neither QEMU in its chroot
 * nor libdm on its loop resolves it; the caller resolves it first. */
LIBDM_EXPORT int libdm_migrate_perform(libdm_dm *source, const char *uri, unsigned flags,
                                       libdm_switchover_fn *hook, void *hook_userdata,
                                       libdm_progress_fn *progress, void *progress_userdata,
                                       int timeout_ms);

/* What the source side knows after Perform (see the table above). */
typedef enum libdm_migrate_source {
    LIBDM_MIGRATE_SOURCE_COMPLETED = 0, /* completed: the source is paused (postmigrate) */
    LIBDM_MIGRATE_SOURCE_KEEPS,         /* failed, cancelled or never started: the source
                                           holds the guest (QEMU resumed it if it ran) */
    LIBDM_MIGRATE_SOURCE_GONE,          /* the source QEMU exited: it holds nothing */
    LIBDM_MIGRATE_SOURCE_UNKNOWN,       /* cannot tell (monitor lost, not settled) */
} libdm_migrate_source;

LIBDM_EXPORT const char *libdm_migrate_source_to_string(libdm_migrate_source s);
/* "completed", "keeps", "gone", "unknown"; -EINVAL for anything else. */
LIBDM_EXPORT int libdm_migrate_source_from_string(const char *s, libdm_migrate_source *ret);

/* The source's state after Perform, from QEMU (query-migrate) and the DM's
 * exit; a monitor that fails is given up to @timeout_ms to show an exit. */
LIBDM_EXPORT libdm_migrate_source libdm_migrate_source_state(libdm_dm *source, int timeout_ms);

/* Finish (destination) on the source's word @source, by the table above:
 * waits until the incoming migration is confirmed completed, then sends
 * cont unless @keep_paused, then releases autokill. On failure no cont is
 * ever sent; the caller stops the DM. */
LIBDM_EXPORT int libdm_migrate_finish_from(libdm_dm *dest, libdm_migrate_source source,
                                           int keep_paused, int timeout_ms);
/* libdm_migrate_finish_from(@dest, LIBDM_MIGRATE_SOURCE_COMPLETED, ...). */
LIBDM_EXPORT int libdm_migrate_finish(libdm_dm *dest, int keep_paused, int timeout_ms);

/* Confirm (source): @success: stop the source DM; else make sure it runs
 * again if it was running before Perform (or stays paused if it was). After
 * a completed Perform, !@success is the caller's word that the destination
 * answered it stopped (see the table above): cont works from postmigrate. */
LIBDM_EXPORT int libdm_migrate_confirm(libdm_dm *source, int success, int timeout_ms);

/* Recovery (source): cancels a migration left in flight, e.g. paused at
 * pre-switchover by a controller that died, and makes the source run again.
 * Returns 0 if the source runs (or no migration was in flight and it ran),
 * -EALREADY if the migration had completed: the source alone cannot know
 * whether the destination runs the guest, so it stays paused (use
 * libdm_migrate_recover() with the destination's answer). */
LIBDM_EXPORT int libdm_migrate_cancel(libdm_dm *source, int timeout_ms);

/* Recovery (source) once the caller knows where the guest is:
 * @destination_has_guest: stop the source (refused with -EBUSY if the source
 * runs: then both would); else make the source run: cancel a migration in
 * flight and cont, from postmigrate too. */
LIBDM_EXPORT int libdm_migrate_recover(libdm_dm *source, int destination_has_guest,
                                       int timeout_ms);

/* ---- asynchronous forms ----
 *
 * Every phase above also exists as an operation on the DM's operation core
 * (one operation at a time per DM: -EBUSY while another runs): the call
 * returns at once, having only sent the first monitor command, and @cb runs
 * later from the loop, never from inside the call that started it, with 0
 * or a negative errno, exactly what the blocking form returns. A negative
 * return means the phase did not start and @cb will not run. The blocking
 * forms above are these calls plus a wait; there is one implementation.
 * A phase ends early with -ESRCH if its DM exits, -ECANCELED if
 * libdm_dm_stop_async() interrupts it. Callbacks (@cb, the switchover hook,
 * @progress) run as libdm callbacks: blocking libdm calls return -EDEADLK
 * there; async calls are fine. */

/* Async switchover hook: runs from the loop when the source reached
 * pre-switchover. The migration waits there (the guest paused, bounded by
 * Perform's deadline) until the host calls libdm_migrate_switchover_done(),
 * from inside the hook or later. */
typedef void libdm_switchover_async_fn(libdm_dm *source, void *userdata);

/* The host's answer to the switchover hook: 0 continues (migrate-continue),
 * a negative errno cancels the migration (QEMU un-pauses the source) and
 * Perform reports it. -EALREADY if Perform no longer waits for an answer
 * (its deadline passed, it was interrupted, or none runs). */
LIBDM_EXPORT int libdm_migrate_switchover_done(libdm_dm *source, int status);

LIBDM_EXPORT int libdm_migrate_begin_async(libdm_dm *source, int timeout_ms,
                                           libdm_dm_done_fn *cb, void *userdata);
/* *@ret_dm is the destination's handle at once (state SPAWNING until
 * ready); on failure @cb gets the error with the handle still valid for
 * libdm_dm_last_error(); the DM was stopped and the caller releases it. */
LIBDM_EXPORT int libdm_migrate_prepare_async(libdm_ctx *ctx, const libdm_dm_config *config,
                                             const char *listen_uri, libdm_dm_done_fn *cb,
                                             void *userdata, libdm_dm **ret_dm);
/* The destination's half of the fd transport: @dest was prepared with
 * "defer"; @fd (not consumed; a connected stream the caller accepted, e.g. on
 * a socket it listens on outside the chroot) goes to QEMU with getfd, then
 * migrate-incoming "fd:NAME". @cb once QEMU accepted it (the migration
 * itself is Finish's to wait for). */
LIBDM_EXPORT int libdm_migrate_incoming_fd_async(libdm_dm *dest, int fd, int timeout_ms,
                                                 libdm_dm_done_fn *cb, void *userdata);
/* @hook NULL: continue at once at pre-switchover. @progress runs after each
 * look at the migration. */
LIBDM_EXPORT int libdm_migrate_perform_async(libdm_dm *source, const char *uri, unsigned flags,
                                             libdm_switchover_async_fn *hook,
                                             void *hook_userdata, libdm_progress_fn *progress,
                                             void *progress_userdata, int timeout_ms,
                                             libdm_dm_done_fn *cb, void *userdata);
/* Finish on the source's word: a @source that forbids running the guest
 * fails at once with -ECANCELED. */
LIBDM_EXPORT int libdm_migrate_finish_async(libdm_dm *dest, libdm_migrate_source source,
                                            int keep_paused, int timeout_ms,
                                            libdm_dm_done_fn *cb, void *userdata);
LIBDM_EXPORT int libdm_migrate_confirm_async(libdm_dm *source, int success, int timeout_ms,
                                             libdm_dm_done_fn *cb, void *userdata);
LIBDM_EXPORT int libdm_migrate_cancel_async(libdm_dm *source, int timeout_ms,
                                            libdm_dm_done_fn *cb, void *userdata);
LIBDM_EXPORT int libdm_migrate_recover_async(libdm_dm *source, int destination_has_guest,
                                             int timeout_ms, libdm_dm_done_fn *cb,
                                             void *userdata);
/* @cb's status is a libdm_migrate_source (>= 0), never an error. */
LIBDM_EXPORT int libdm_migrate_source_state_async(libdm_dm *source, int timeout_ms,
                                                  libdm_dm_done_fn *cb, void *userdata);

/* ---- the protocol between two hosts ----
 *
 * A migration between two hosts (or two processes) is one libdm_migration
 * on each side, talking over a control channel the caller provides: any
 * pair of fds (a transport command's stdin and stdout, e.g. "ssh host dmctl
 * migrate-receive"; one socket given twice). The library owns the fds from
 * libdm_migration_start() on and closes them. The sender drives Begin,
 * Prepare (through the receiver), Perform, Finish and Confirm; the receiver
 * starts the destination, decides Finish by the table above and answers;
 * a recovery asks the other side what it has and resumes exactly one side.
 * The messages are one JSON object per line, each carrying the protocol's
 * version (LIBDM_MIGRATE_PROTO_VERSION): both sides refuse a version they
 * do not know, before anything runs. dmctl(1), PROTOCOL OF MIGRATE, has the
 * messages and the decision tables.
 *
 * Everything runs on the context's loop: libdm_migration_start() returns
 * at once and @cb runs later from the loop (never from inside the call),
 * with 0 or a negative errno; the getters then say what happened. Dropping
 * the last reference (libdm_migration_unref()) before @cb ran abandons the
 * migration: the channel closes, the peer sees it (a receiver stops its
 * destination, a sender that had not sent its finish resumes its source);
 * @cb does not run, @destroy does. libdm_migration_run() is the blocking
 * form (-EDEADLK from inside a libdm callback). */
#define LIBDM_MIGRATE_PROTO_VERSION 2

typedef struct libdm_migration libdm_migration;

/* The end of a migration, as the sender (and a recovery) reports it. */
typedef enum libdm_migrate_outcome {
    LIBDM_MIGRATE_OUTCOME_MIGRATED = 0, /* the destination has the guest */
    LIBDM_MIGRATE_OUTCOME_FAILED,       /* the source has the guest */
    LIBDM_MIGRATE_OUTCOME_LOST,         /* the only QEMU holding it died */
    LIBDM_MIGRATE_OUTCOME_UNKNOWN,      /* nobody knows here: the source stays paused;
                                           libdm_migration_new_recover() decides */
} libdm_migrate_outcome;

/* What a recovery did (libdm_migration_get_recovery()). */
typedef enum libdm_migrate_recovery {
    LIBDM_MIGRATE_RECOVERY_NONE = 0,     /* not a recovery, or it did not end */
    LIBDM_MIGRATE_RECOVERY_SOURCE_RUNS,  /* the source was made to run */
    LIBDM_MIGRATE_RECOVERY_DEST_HAS,     /* the destination has the guest; source stopped */
    LIBDM_MIGRATE_RECOVERY_RUNS_HERE,    /* the local DM runs the guest: nothing done */
    LIBDM_MIGRATE_RECOVERY_NO_SOURCE,    /* no source here; the destination has the guest */
    LIBDM_MIGRATE_RECOVERY_LOST,         /* no source and no destination: guest lost */
    LIBDM_MIGRATE_RECOVERY_WRONG_SIDE,   /* refused: run from the other host (nothing done) */
    LIBDM_MIGRATE_RECOVERY_BOTH_RUN,     /* refused: both sides say they run */
    LIBDM_MIGRATE_RECOVERY_FENCED,       /* refused: the other side was fenced by an
                                            earlier recovery (nothing done) */
    LIBDM_MIGRATE_RECOVERY_UNKNOWN,      /* the other side could not tell: nothing done */
} libdm_migrate_recovery;

#define LIBDM_MIGRATION_KEEP_PAUSED      0x2u /* sender: the destination stays paused;
                                                 recovery: never resume the other side */
#define LIBDM_MIGRATION_DESTINATION_GONE 0x4u /* recovery: the destination is known gone:
                                                 no channel, resume the source */

typedef void libdm_migration_done_fn(libdm_migration *m, int status, void *userdata);
/* Progress of a migration (@what: "prepared", "finished", "aborted",
 * "state", "error"): for messages; the getters have the details. */
typedef void libdm_migration_notify_fn(libdm_migration *m, const char *what, void *userdata);
/* Sender at pre-switchover: answer with libdm_migration_switchover_done(). */
typedef void libdm_migration_hook_fn(libdm_migration *m, void *userdata);

/* The sender of @source's migration (a reference on @source is not taken:
 * it must outlive the migration). */
LIBDM_EXPORT int libdm_migration_new_send(libdm_dm *source, libdm_migration **ret);
/* The receiver: the first message says whether a migration comes
 * ("prepare") or a recovery asks ("query"). */
LIBDM_EXPORT int libdm_migration_new_receive(libdm_ctx *ctx, libdm_migration **ret);
/* The recovery of @name's migration, on either side's host: the local
 * record says which side this is. */
LIBDM_EXPORT int libdm_migration_new_recover(libdm_ctx *ctx, const char *name,
                                             libdm_migration **ret);
LIBDM_EXPORT libdm_migration *libdm_migration_ref(libdm_migration *m);
LIBDM_EXPORT libdm_migration *libdm_migration_unref(libdm_migration *m);

/* Settings, before libdm_migration_start() (-EBUSY after). */
LIBDM_EXPORT int libdm_migration_set_timeout_ms(libdm_migration *m, int timeout_ms);
/* LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER, LIBDM_MIGRATION_KEEP_PAUSED,
 * LIBDM_MIGRATION_DESTINATION_GONE. */
LIBDM_EXPORT int libdm_migration_set_flags(libdm_migration *m, unsigned flags);
/* Sender: the host the source's QEMU connects to instead of the one in the
 * receiver's tcp: URI (a name, IPv4 or IPv6 without brackets). */
LIBDM_EXPORT int libdm_migration_set_uri_host(libdm_migration *m, const char *host);
/* Sender: the destination's machine type and memory instead of the source's. */
LIBDM_EXPORT int libdm_migration_set_machine(libdm_migration *m, const char *machine);
LIBDM_EXPORT int libdm_migration_set_memory_mb(libdm_migration *m, uint64_t mb);
/* Receiver: the destination's name instead of the sender's. */
LIBDM_EXPORT int libdm_migration_set_name(libdm_migration *m, const char *name);
/* Receiver: NULL: a unix socket in the run directory (the default); else
 * tcp on @tcp_host (without brackets), the port chosen by QEMU. */
LIBDM_EXPORT int libdm_migration_set_listen_tcp(libdm_migration *m, const char *tcp_host);
LIBDM_EXPORT int libdm_migration_set_qemu_path(libdm_migration *m, const char *path);
LIBDM_EXPORT int libdm_migration_set_hook(libdm_migration *m, libdm_migration_hook_fn *fn,
                                          void *userdata);
LIBDM_EXPORT int libdm_migration_set_progress(libdm_migration *m, libdm_progress_fn *fn,
                                              void *userdata);
LIBDM_EXPORT int libdm_migration_set_notify(libdm_migration *m, libdm_migration_notify_fn *fn,
                                            void *userdata);

/* Starts the protocol over @in_fd / @out_fd (owned from now on, even on
 * failure; the same fd twice for a socket; -1 -1 for a recovery with
 * LIBDM_MIGRATION_DESTINATION_GONE). @destroy (may be NULL) frees
 * @userdata once @cb ran or the migration was dropped. */
LIBDM_EXPORT int libdm_migration_start(libdm_migration *m, int in_fd, int out_fd,
                                       libdm_migration_done_fn *cb, void *userdata,
                                       libdm_destroy_fn *destroy);
/* The blocking form: start, then run the loop until the end. */
LIBDM_EXPORT int libdm_migration_run(libdm_migration *m, int in_fd, int out_fd);
/* Whether @cb ran (the migration ended). */
LIBDM_EXPORT int libdm_migration_is_done(const libdm_migration *m);

/* Sender: the hook's answer: 0 continues, a negative errno cancels (@why,
 * may be NULL, is the failure's text). -EALREADY if no answer is awaited. */
LIBDM_EXPORT int libdm_migration_switchover_done(libdm_migration *m, int status,
                                                 const char *why);
/* Whether the hook's answer is still awaited (a host that runs a hook
 * process kills it once this is 0: the deadline passed, the peer went). */
LIBDM_EXPORT int libdm_migration_hook_pending(const libdm_migration *m);
/* Sender: cancels a migration still in flight (^C): before Perform ends
 * the source keeps the guest. -EALREADY once the source's migration
 * completed (or its QEMU is gone): too late, the protocol decides. */
LIBDM_EXPORT int libdm_migration_cancel(libdm_migration *m);

/* ---- results ---- */
LIBDM_EXPORT libdm_migrate_outcome libdm_migration_get_outcome(const libdm_migration *m);
LIBDM_EXPORT const char *libdm_migrate_outcome_to_string(libdm_migrate_outcome o);
/* Sender: the source's word after Perform. */
LIBDM_EXPORT libdm_migrate_source libdm_migration_get_source_state(const libdm_migration *m);
/* Sender: whether a finish that may let the destination run was sent. */
LIBDM_EXPORT int libdm_migration_finish_sent(const libdm_migration *m);
/* The phase that failed first ("begin", "prepare", ...) and why (a
 * sentence), or NULL. */
LIBDM_EXPORT const char *libdm_migration_get_failed_phase(const libdm_migration *m);
LIBDM_EXPORT const char *libdm_migration_get_error(const libdm_migration *m);
/* Sender: the channel failed: the transport's own status may say why. */
LIBDM_EXPORT int libdm_migration_peer_lost(const libdm_migration *m);
/* Sender: Confirm failed with this errno (0: it did not fail). */
LIBDM_EXPORT int libdm_migration_get_confirm_error(const libdm_migration *m);
/* The destination's runstate ("finished"), and why its record is stale. */
LIBDM_EXPORT const char *libdm_migration_get_runstate(const libdm_migration *m);
LIBDM_EXPORT const char *libdm_migration_get_record_error(const libdm_migration *m);
/* The DM's name (receiver: once "prepare" or "query" arrived). */
LIBDM_EXPORT const char *libdm_migration_get_name(const libdm_migration *m);
/* Receiver: the URI the destination listens on (once "prepared"). */
LIBDM_EXPORT const char *libdm_migration_get_uri(const libdm_migration *m);
/* Receiver: a query's answer ("running", "paused", "absent", "busy",
 * "wrong-side", "fenced") and its text; recovery: the other side's. */
LIBDM_EXPORT const char *libdm_migration_get_guest(const libdm_migration *m);
LIBDM_EXPORT const char *libdm_migration_get_detail(const libdm_migration *m);
LIBDM_EXPORT libdm_migrate_recovery libdm_migration_get_recovery(const libdm_migration *m);
/* The local DM (source, destination or recovered), or NULL: still owned
 * by the migration. */
LIBDM_EXPORT libdm_dm *libdm_migration_get_dm(const libdm_migration *m);

#ifdef __cplusplus
}
#endif
#endif
