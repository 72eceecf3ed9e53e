/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration: Begin, Prepare, Perform, Finish, Confirm (see migrate.h).
 *
 * DO NOT TRUST QEMU: statuses come through the bounded QMP engine and every
 * wait is bounded. No wait relies on an event alone: a MIGRATION event ends
 * the wait at once (then query-migrate confirms), and query-migrate is also
 * polled every MIGRATE_POLL_MS in case an event is missed.
 *
 * The decision table of Finish (what the source says x what the
 * destination's own incoming migration says) is in migrate.h; it is coded in
 * finish_decision() and nowhere else.
 *
 * Ownership (seed 004): the destination DM belongs to its keeper's autokill
 * until Finish succeeded; Perform creates nothing that outlives it (no
 * timers, no listeners); every exit path of Perform leaves the source either
 * migrated or cancelled.
 */
#include "dm-internal.h"
#include "config-internal.h"

#include <stdlib.h>
#include <string.h>

#define MIGRATE_POLL_MS 50
#define MIGRATE_CANCEL_WAIT_MS 10000

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = libdm_now_ms();

    if (now >= deadline)
        return 0;
    return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

/* A MIGRATION event listener for the length of one wait. */
typedef struct mig_watch {
    libdm_qmp_slot *slot;
    bool fired;
} mig_watch;

static void on_migration_event(libdm_qmp *q, const char *event, const libdm_json *data,
                               void *user)
{
    (void)q;
    (void)event;
    (void)data;
    ((mig_watch *)user)->fired = true;
}

static void watch_start(libdm_dm *dm, mig_watch *w)
{
    libdm_qmp *q = libdm_dm_get_qmp(dm);

    w->fired = false;
    w->slot = NULL;
    if (q && libdm_qmp_add_event_listener(q, "MIGRATION", on_migration_event, w, &w->slot) < 0)
        w->slot = NULL;   /* the timer alone, then */
}

static void watch_stop(mig_watch *w)
{
    w->slot = libdm_qmp_slot_free(w->slot);
}

/* Lets the loop deliver events for up to @ms (or until @deadline), ending
 * early once @w (may be NULL) saw a MIGRATION event. */
static void pump(libdm_ctx *ctx, mig_watch *w, int ms, uint64_t deadline)
{
    uint64_t until = libdm_now_ms() + (uint64_t)ms;

    if (until > deadline)
        until = deadline;
    while (libdm_now_ms() < until && !(w && w->fired))
        if (libdm_ctx_run_once(ctx, remaining_ms(until)) < 0)
            break;
    if (w)
        w->fired = false;
}

static libdm_qmp *monitor(libdm_dm *dm)
{
    libdm_qmp *q = libdm_dm_get_qmp(dm);

    if (!q)
        LIBDM__ERROR(libdm__dm_ctx(dm), "%s: no usable monitor connection",
                     libdm_dm_get_name(dm));
    return q;
}

static int call(libdm_dm *dm, const char *cmd, libdm_json *args, uint64_t deadline,
                libdm_json **ret)
{
    libdm_qmp *q = monitor(dm);
    int r;

    if (!q) {
        libdm_json_free(args);
        return -ENOTCONN;
    }
    r = libdm_qmp_call(q, cmd, args, remaining_ms(deadline) ? remaining_ms(deadline) : 1, ret);
    if (r == -EREMOTEIO)
        LIBDM__ERROR(libdm__dm_ctx(dm), "%s: %s: %s: %s", libdm_dm_get_name(dm), cmd,
                     libdm_qmp_error_class(q), libdm_qmp_error_desc(q));
    else if (r < 0)
        LIBDM__ERROR(libdm__dm_ctx(dm), "%s: %s: %s", libdm_dm_get_name(dm), cmd, strerror(-r));
    libdm_json_free(args);
    return r;
}

/* query-migrate's status ("none" before any migration). Caller frees. */
static int migration_status(libdm_dm *dm, uint64_t deadline, char **ret_status,
                            libdm_json **ret_info)
{
    libdm_json *v = NULL;
    const char *st;
    int r = call(dm, "query-migrate", NULL, deadline, &v);

    if (r < 0)
        return r;
    st = libdm__json_get_str(v, "status");
    *ret_status = strdup(st ? st : "none");
    if (ret_info)
        *ret_info = v;
    else
        libdm_json_free(v);
    return *ret_status ? 0 : -ENOMEM;
}

static libdm_json *string_arg(const char *key, const char *value)
{
    libdm_json *o = libdm_json_new_object();

    if (o && libdm_json_object_add(o, key, libdm_json_new_string(value)) < 0)
        o = libdm_json_free(o);
    return o;
}

static bool is_one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(s, *set))
            return true;
    return false;
}

/* ---- Begin ---- */

int libdm_migrate_begin(libdm_dm *src, int timeout_ms)
{
    static const char *const busy[] = { "setup", "active", "pre-switchover", "device",
                                        "cancelling", "postcopy-active", "wait-unplug", NULL };
    uint64_t deadline = libdm__deadline(timeout_ms);
    char *rs = NULL, *st = NULL;
    int r;

    r = libdm_dm_query_status(src, remaining_ms(deadline), &rs);
    if (r < 0)
        return r;
    if (strcmp(rs, "running") && strcmp(rs, "paused") && strcmp(rs, "prelaunch")) {
        LIBDM__ERROR(libdm__dm_ctx(src), "%s: cannot migrate from runstate '%s'",
                     libdm_dm_get_name(src), rs);
        free(rs);
        return -EBUSY;
    }
    free(rs);
    r = migration_status(src, deadline, &st, NULL);
    if (r >= 0 && is_one_of(st, busy)) {
        LIBDM__ERROR(libdm__dm_ctx(src), "%s: a migration is already in progress (%s)",
                     libdm_dm_get_name(src), st);
        r = -EBUSY;
    }
    free(st);
    /* Other users of this monitor are refused from now on, not queued. */
    if (r >= 0)
        (void)libdm__dm_set_migrating(src, true);
    return r;
}

/* ---- Prepare ---- */

int libdm_migrate_prepare(libdm_ctx *ctx, const libdm_dm_config *config, const char *listen_uri,
                          libdm_dm **ret_dm)
{
    libdm_dm_config *cfg = NULL;
    libdm_dm *dm = NULL;
    uint64_t deadline;
    int r;

    if (!listen_uri || !*listen_uri)
        return -EINVAL;
    r = libdm__config_copy(config, &cfg);
    if (r >= 0)
        r = libdm_dm_config_set_incoming(cfg, "defer");
    /* Autokill is armed before QEMU even runs: from here on the DM dies
     * with this process unless Finish releases it. */
    if (r >= 0)
        r = libdm__dm_start(ctx, cfg, true, &dm);
    if (r >= 0) {
        deadline = libdm__deadline(cfg->timeout_ms);
        (void)libdm__dm_set_migrating(dm, true);
        r = call(dm, "migrate-incoming", string_arg("uri", listen_uri), deadline, NULL);
        if (r < 0) {
            (void)libdm_dm_stop(dm, 1, cfg->timeout_ms);
            libdm_dm_release(dm);
        }
    }
    libdm_dm_config_free(cfg);
    if (r >= 0)
        *ret_dm = dm;
    return r;
}

/* ---- Perform ---- */

static int set_capability(libdm_dm *dm, const char *name, bool on, uint64_t deadline)
{
    libdm_json *args = libdm_json_new_object(), *list = libdm_json_new_array(),
               *cap = libdm_json_new_object();

    if (!args || !list || !cap ||
        libdm_json_object_add(cap, "capability", libdm_json_new_string(name)) < 0 ||
        libdm_json_object_add(cap, "state", libdm_json_new_bool(on)) < 0 ||
        libdm_json_array_append(list, cap) < 0 ||
        libdm_json_object_add(args, "capabilities", list) < 0) {
        libdm_json_free(args);
        return -ENOMEM;
    }
    return call(dm, "migrate-set-capabilities", args, deadline, NULL);
}

static bool has_capability(libdm_dm *dm, const char *name, uint64_t deadline)
{
    libdm_json *caps = NULL;
    bool found = false;

    if (call(dm, "query-migrate-capabilities", NULL, deadline, &caps) < 0)
        return false;
    for (size_t i = 0; i < libdm_json_length(caps) && !found; i++) {
        const char *c = libdm__json_get_str(libdm_json_array_get(caps, i), "capability");
        found = c && !strcmp(c, name);
    }
    libdm_json_free(caps);
    return found;
}

static uint64_t ram_field(const libdm_json *info, const char *key)
{
    int64_t v = 0;

    (void)libdm_json_get_int(libdm_json_object_get(libdm_json_object_get(info, "ram"), key), &v);
    return v > 0 ? (uint64_t)v : 0;
}

static void report_progress(libdm_dm *src, const char *status, const libdm_json *info,
                            libdm_progress_fn *progress, void *user)
{
    libdm_migrate_progress p = {
        .status = status,
        .ram_transferred = ram_field(info, "transferred"),
        .ram_total = ram_field(info, "total"),
        .ram_remaining = ram_field(info, "remaining"),
    };
    double mbps = 0;
    const libdm_json *m = libdm_json_object_get(libdm_json_object_get(info, "ram"), "mbps");
    int64_t iv;

    if (libdm_json_get_int(m, &iv) == 0)
        mbps = (double)iv;
    p.mbps = (uint64_t)mbps;
    if (progress)
        progress(src, &p, user);
}

static const char *const settled_states[] = { "completed", "cancelled", "failed", NULL };

/* migrate_cancel, then wait for QEMU to settle. Returns 0 if the migration
 * completed anyway (the cancel lost the race), else @why. */
static int cancel_migration(libdm_dm *src, int why)
{
    uint64_t deadline = libdm__deadline(MIGRATE_CANCEL_WAIT_MS);
    libdm_ctx *ctx = libdm__dm_ctx(src);
    char *st = NULL;

    bool settled = false;
    mig_watch w;
    int r = why;

    LIBDM__WARN(ctx, "%s: cancelling the migration (%s)", libdm_dm_get_name(src), strerror(-why));
    watch_start(src, &w);
    (void)call(src, "migrate_cancel", NULL, deadline, NULL);
    while (!settled && remaining_ms(deadline) > 0 &&
           migration_status(src, deadline, &st, NULL) >= 0) {
        if (!strcmp(st, "completed"))
            r = 0;   /* the cancel lost the race */
        settled = is_one_of(st, settled_states);
        free(st);
        st = NULL;
        if (!settled)
            pump(ctx, &w, MIGRATE_POLL_MS, deadline);
    }
    watch_stop(&w);
    if (!settled)
        LIBDM__ERROR(ctx, "%s: the migration did not settle after migrate_cancel",
                     libdm_dm_get_name(src));
    return r;
}

/* At pre-switchover: the caller's hook, then migrate-continue. */
static int switchover(libdm_dm *src, libdm_switchover_fn *hook, void *user, uint64_t deadline)
{
    int r = hook ? hook(src, user) : 0;

    if (r < 0) {
        LIBDM__WARN(libdm__dm_ctx(src), "%s: switchover hook failed: %s",
                    libdm_dm_get_name(src), strerror(-r));
        return r;
    }
    return call(src, "migrate-continue", string_arg("state", "pre-switchover"), deadline, NULL);
}

static int failed_reason(libdm_dm *src, const libdm_json *info)
{
    const char *desc = libdm__json_get_str(info, "error-desc");

    LIBDM__ERROR(libdm__dm_ctx(src), "%s: migration failed: %s", libdm_dm_get_name(src),
                 desc ? desc : "QEMU gave no reason");
    return -EIO;
}

static int start_migration(libdm_dm *src, const char *uri, unsigned flags, uint64_t deadline)
{
    char *rs = NULL;
    int r;

    r = libdm_dm_query_status(src, remaining_ms(deadline), &rs);
    if (r < 0)
        return r;
    libdm__dm_set_migrate_was_running(src, !strcmp(rs, "running"));
    free(rs);
    /* Set either way: a capability left on by an earlier, cancelled attempt
     * would otherwise pause this migration too. */
    if (has_capability(src, "pause-before-switchover", deadline))
        r = set_capability(src, "pause-before-switchover",
                           flags & LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER, deadline);
    else if (flags & LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER)
        LIBDM__INFO(libdm__dm_ctx(src), "%s: QEMU has no pause-before-switchover",
                    libdm_dm_get_name(src));
    if (r >= 0)
        r = set_capability(src, "events", true, deadline);
    if (r >= 0)
        r = call(src, "migrate", string_arg("uri", uri), deadline, NULL);
    return r;
}

static bool wait_exited(libdm_dm *dm, uint64_t deadline);

/* One look at the source's migration: 1 completed, 0 go on waiting, or a
 * negative errno (cancelled when it had to be). */
static int perform_step(libdm_dm *src, libdm_switchover_fn *hook, void *hook_user,
                        libdm_progress_fn *progress, void *progress_user, uint64_t deadline)
{
    libdm_json *info = NULL;
    char *st = NULL;
    int r;

    if (remaining_ms(deadline) == 0)
        return cancel_migration(src, -ETIMEDOUT) == 0 ? 1 : -ETIMEDOUT;
    r = migration_status(src, deadline, &st, &info);
    /* A monitor that fails is most often a DM that died: its pidfd may
     * not have been dispatched yet; give it a moment to say so. */
    if (r < 0 && !libdm__dm_exited(src))
        (void)wait_exited(src, libdm_now_ms() + 200 < deadline ? libdm_now_ms() + 200 : deadline);
    if (r < 0)
        return libdm__dm_exited(src) ? r : cancel_migration(src, r) == 0 ? 1 : r;
    report_progress(src, st, info, progress, progress_user);
    if (!strcmp(st, "completed"))
        r = 1;
    else if (!strcmp(st, "failed"))
        r = failed_reason(src, info);
    else if (!strcmp(st, "cancelled"))
        r = -ECANCELED;
    else if (!strcmp(st, "pre-switchover")) {
        r = switchover(src, hook, hook_user, deadline);
        r = r < 0 ? cancel_migration(src, r) : 0;   /* 0: completed anyway, look again */
    }
    free(st);
    libdm_json_free(info);
    return r;
}

int libdm_migrate_perform(libdm_dm *src, const char *uri, unsigned flags,
                          libdm_switchover_fn *hook, void *hook_user,
                          libdm_progress_fn *progress, void *progress_user, int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);
    libdm_ctx *ctx = libdm__dm_ctx(src);
    mig_watch w;
    int r;

    if (!uri || !*uri || (flags & ~LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER))
        return -EINVAL;
    if (libdm__dispatch_depth(ctx) > 0)
        return -EDEADLK;
    watch_start(src, &w);
    r = start_migration(src, uri, flags, deadline);
    while (r == 0) {
        r = perform_step(src, hook, hook_user, progress, progress_user, deadline);
        if (r == 0)
            pump(ctx, &w, MIGRATE_POLL_MS, deadline);
    }
    watch_stop(&w);
    return r > 0 ? 0 : r;
}

/* ---- Finish ---- */

/* The decision table of migrate.h: may the destination run the guest if its
 * own incoming migration completed? Only if the source cannot run it. */
static bool finish_decision(libdm_migrate_source source)
{
    switch (source) {
    case LIBDM_MIGRATE_SOURCE_COMPLETED:   /* paused in postmigrate, stays so */
    case LIBDM_MIGRATE_SOURCE_GONE:        /* holds nothing any more */
        return true;
    case LIBDM_MIGRATE_SOURCE_KEEPS:       /* runs it, or can run it */
    case LIBDM_MIGRATE_SOURCE_UNKNOWN:
    default:
        return false;
    }
}

int libdm_migrate_finish(libdm_dm *dst, int keep_paused, int timeout_ms)
{
    return libdm_migrate_finish_from(dst, LIBDM_MIGRATE_SOURCE_COMPLETED, keep_paused,
                                     timeout_ms);
}

int libdm_migrate_finish_from(libdm_dm *dst, libdm_migrate_source source, int keep_paused,
                              int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);
    int r;

    if (libdm__dispatch_depth(libdm__dm_ctx(dst)) > 0)
        return -EDEADLK;
    if (!finish_decision(source)) {
        LIBDM__ERROR(libdm__dm_ctx(dst), "%s: the source says '%s': the destination must "
                     "not run the guest", libdm_dm_get_name(dst),
                     libdm_migrate_source_to_string(source));
        return -ECANCELED;
    }
    /* The same wait as the guarded resume's (dm-ops.c), then cont at once:
     * every step between completion and cont is guest-visible downtime
     * (bench/bench-migrate.c). */
    r = libdm__dm_finish_incoming(dst, keep_paused,
                                  remaining_ms(deadline) ? remaining_ms(deadline) : 1);
    /* Only now does the DM stop depending on this process (seed 002). */
    if (r >= 0)
        r = libdm__dm_set_autokill(dst, false);
    if (r >= 0)
        (void)libdm__dm_set_migrating(dst, false);
    return r;
}

/* ---- Confirm ---- */

/* QEMU reports a migration "failed" or "cancelled" a moment before its
 * migration thread lets go: `cont` is refused ("Migration is not finalized
 * yet") meanwhile. Retry until the deadline; any other refusal is final. */
static int cont_when_settled(libdm_dm *src, uint64_t deadline)
{
    const char *desc;
    int r;

    for (;;) {
        r = call(src, "cont", NULL, deadline, NULL);
        desc = monitor(src) ? libdm_qmp_error_desc(monitor(src)) : NULL;
        if (r != -EREMOTEIO || !desc || !strstr(desc, "not finalized") ||
            remaining_ms(deadline) == 0)
            return r;
        pump(libdm__dm_ctx(src), NULL, 20, deadline);
    }
}

int libdm_migrate_confirm(libdm_dm *src, int success, int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);
    char *rs = NULL;
    int r;

    (void)libdm__dm_set_migrating(src, false);
    if (success)
        return libdm_dm_stop(src, 0, timeout_ms);
    r = libdm_dm_query_status(src, remaining_ms(deadline), &rs);
    if (r < 0)
        return r;
    if (libdm__dm_migrate_was_running(src) && strcmp(rs, "running"))
        r = cont_when_settled(src, deadline);
    free(rs);
    return r;
}

/* ---- the source's word ---- */

static const char *const source_names[] = {
    [LIBDM_MIGRATE_SOURCE_COMPLETED] = "completed",
    [LIBDM_MIGRATE_SOURCE_KEEPS] = "keeps",
    [LIBDM_MIGRATE_SOURCE_GONE] = "gone",
    [LIBDM_MIGRATE_SOURCE_UNKNOWN] = "unknown",
};

const char *libdm_migrate_source_to_string(libdm_migrate_source s)
{
    return (unsigned)s < sizeof(source_names) / sizeof(source_names[0]) ? source_names[s]
                                                                        : "unknown";
}

int libdm_migrate_source_from_string(const char *s, libdm_migrate_source *ret)
{
    for (size_t i = 0; s && i < sizeof(source_names) / sizeof(source_names[0]); i++)
        if (!strcmp(s, source_names[i])) {
            *ret = (libdm_migrate_source)i;
            return 0;
        }
    return -EINVAL;
}

/* Gives a DM whose monitor failed until @deadline to show that it exited. */
static bool wait_exited(libdm_dm *dm, uint64_t deadline)
{
    libdm_ctx *ctx = libdm__dm_ctx(dm);

    while (!libdm__dm_exited(dm) && remaining_ms(deadline) > 0)
        if (libdm_ctx_run_once(ctx, remaining_ms(deadline) < 20 ? remaining_ms(deadline) : 20) < 0)
            break;
    return libdm__dm_exited(dm);
}

libdm_migrate_source libdm_migrate_source_state(libdm_dm *src, int timeout_ms)
{
    static const char *const keeps[] = { "none", "cancelled", "failed", NULL };
    uint64_t deadline = libdm__deadline(timeout_ms);
    libdm_migrate_source ret = LIBDM_MIGRATE_SOURCE_UNKNOWN;
    char *st = NULL;

    if (libdm__dm_exited(src))
        return LIBDM_MIGRATE_SOURCE_GONE;
    if (migration_status(src, deadline, &st, NULL) < 0)
        return wait_exited(src, deadline) ? LIBDM_MIGRATE_SOURCE_GONE
                                          : LIBDM_MIGRATE_SOURCE_UNKNOWN;
    if (!strcmp(st, "completed"))
        ret = LIBDM_MIGRATE_SOURCE_COMPLETED;
    else if (is_one_of(st, keeps))
        ret = LIBDM_MIGRATE_SOURCE_KEEPS;
    free(st);
    return ret;
}

/* ---- recovery ---- */

static const char *const in_flight[] = { "setup", "active", "pre-switchover", "device",
                                         "postcopy-active", "wait-unplug", NULL };

/* The source completed: whether the destination runs the guest is not
 * something the source can know. */
static int completed_elsewhere(libdm_dm *src)
{
    LIBDM__ERROR(libdm__dm_ctx(src), "%s: the migration completed, so the destination may "
                 "run the guest: the outcome is unknown here and the source stays paused "
                 "(ask the destination: dmctl migrate %s --recover --to CMD; or, if the "
                 "destination is gone: dmctl migrate %s --recover --destination-gone)",
                 libdm_dm_get_name(src), libdm_dm_get_name(src), libdm_dm_get_name(src));
    return -EALREADY;
}

int libdm_migrate_cancel(libdm_dm *src, int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);
    char *st = NULL, *rs = NULL;
    int r;

    r = migration_status(src, deadline, &st, NULL);
    if (r < 0)
        return r;
    if (!strcmp(st, "completed") ||
        (is_one_of(st, in_flight) && cancel_migration(src, -ECANCELED) == 0)) {
        free(st);
        return completed_elsewhere(src);
    }
    free(st);
    /* A cancelled migration resumes a source that ran; one that was
     * stopped at the switchover is left paused ("finish-migrate"). */
    r = libdm_dm_query_status(src, remaining_ms(deadline), &rs);
    if (r >= 0 && strcmp(rs, "running"))
        r = call(src, "cont", NULL, deadline, NULL);
    free(rs);
    return r;
}

/* The destination answered that it has the guest: the source goes. */
static int recover_stop_source(libdm_dm *src, uint64_t deadline)
{
    char *rs = NULL;
    int r = libdm_dm_query_status(src, remaining_ms(deadline), &rs);

    if (r >= 0 && !strcmp(rs, "running")) {
        LIBDM__ERROR(libdm__dm_ctx(src), "%s: the source runs although the destination has "
                     "the guest: not stopping either (decide by hand)", libdm_dm_get_name(src));
        r = -EBUSY;
    }
    free(rs);
    if (r >= 0 || libdm__dm_exited(src))
        r = libdm_dm_stop(src, 0, remaining_ms(deadline) ? remaining_ms(deadline) : 1);
    return r;
}

/* Nobody else has the guest: the source runs it again. */
static int recover_run_source(libdm_dm *src, uint64_t deadline)
{
    char *st = NULL, *rs = NULL;
    int r = migration_status(src, deadline, &st, NULL);

    if (r >= 0 && is_one_of(st, in_flight))
        (void)cancel_migration(src, -ECANCELED);
    free(st);
    if (r >= 0)
        r = libdm_dm_query_status(src, remaining_ms(deadline), &rs);
    /* QEMU 7.2 accepts cont in postmigrate: the guest is whole there. */
    if (r >= 0 && strcmp(rs, "running"))
        r = call(src, "cont", NULL, deadline, NULL);
    free(rs);
    return r;
}

int libdm_migrate_recover(libdm_dm *src, int destination_has_guest, int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);

    if (libdm__dispatch_depth(libdm__dm_ctx(src)) > 0)
        return -EDEADLK;
    return destination_has_guest ? recover_stop_source(src, deadline)
                                 : recover_run_source(src, deadline);
}
