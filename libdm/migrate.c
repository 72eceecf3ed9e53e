/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration: Begin, Prepare, Perform, Finish, Confirm (see migrate.h).
 *
 * DO NOT TRUST QEMU: statuses come through the bounded QMP engine and every
 * wait is bounded. No wait relies on an event alone: query-migrate is polled
 * every MIGRATE_POLL_MS while the loop also delivers MIGRATION events.
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

/* Lets the loop deliver events for up to @ms (or until @deadline). */
static void pump(libdm_ctx *ctx, int ms, uint64_t deadline)
{
    uint64_t until = libdm_now_ms() + (uint64_t)ms;

    if (until > deadline)
        until = deadline;
    while (libdm_now_ms() < until)
        if (libdm_ctx_run_once(ctx, remaining_ms(until)) < 0)
            break;
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

/* migrate_cancel, then wait for QEMU to settle. Returns 0 if the migration
 * completed anyway (the cancel lost the race), else @why. */
static int cancel_migration(libdm_dm *src, int why)
{
    uint64_t deadline = libdm__deadline(MIGRATE_CANCEL_WAIT_MS);
    libdm_ctx *ctx = libdm__dm_ctx(src);
    char *st = NULL;

    LIBDM__WARN(ctx, "%s: cancelling the migration (%s)", libdm_dm_get_name(src), strerror(-why));
    (void)call(src, "migrate_cancel", NULL, deadline, NULL);
    while (remaining_ms(deadline) > 0 && migration_status(src, deadline, &st, NULL) >= 0) {
        if (!strcmp(st, "completed")) {
            free(st);
            return 0;
        }
        if (!strcmp(st, "cancelled") || !strcmp(st, "failed")) {
            free(st);
            return why;
        }
        free(st);
        st = NULL;
        pump(ctx, MIGRATE_POLL_MS, deadline);
    }
    free(st);
    LIBDM__ERROR(ctx, "%s: the migration did not settle after migrate_cancel",
                 libdm_dm_get_name(src));
    return why;
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

int libdm_migrate_perform(libdm_dm *src, const char *uri, unsigned flags,
                          libdm_switchover_fn *hook, void *hook_user,
                          libdm_progress_fn *progress, void *progress_user, int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);
    libdm_ctx *ctx = libdm__dm_ctx(src);
    int r;

    if (!uri || !*uri || (flags & ~LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER))
        return -EINVAL;
    if (libdm__dispatch_depth(ctx) > 0)
        return -EDEADLK;
    r = start_migration(src, uri, flags, deadline);
    if (r < 0)
        return r;
    for (;;) {
        libdm_json *info = NULL;
        char *st = NULL;

        if (remaining_ms(deadline) == 0)
            return cancel_migration(src, -ETIMEDOUT);
        r = migration_status(src, deadline, &st, &info);
        if (r < 0)
            return libdm__dm_exited(src) ? r : cancel_migration(src, r);
        report_progress(src, st, info, progress, progress_user);
        if (!strcmp(st, "completed"))
            r = 1;
        else if (!strcmp(st, "failed"))
            r = failed_reason(src, info);
        else if (!strcmp(st, "cancelled"))
            r = -ECANCELED;
        else if (!strcmp(st, "pre-switchover")) {
            r = switchover(src, hook, hook_user, deadline);
            r = r < 0 ? cancel_migration(src, r) : 0;
        }
        free(st);
        libdm_json_free(info);
        if (r != 0)
            return r > 0 ? 0 : r;
        pump(ctx, MIGRATE_POLL_MS, deadline);
    }
}

/* ---- Finish ---- */

static int wait_incoming_completed(libdm_dm *dst, uint64_t deadline)
{
    libdm_ctx *ctx = libdm__dm_ctx(dst);

    for (;;) {
        char *st = NULL;
        int r;

        if (libdm__dm_exited(dst))
            return -ESRCH;
        r = migration_status(dst, deadline, &st, NULL);
        if (r < 0)
            return r;
        r = libdm__incoming_verdict(dst, st);
        free(st);
        if (r != 0)
            return r < 0 ? r : 0;
        if (remaining_ms(deadline) == 0) {
            LIBDM__ERROR(ctx, "%s: incoming migration not completed before the deadline",
                         libdm_dm_get_name(dst));
            return -ETIMEDOUT;
        }
        pump(ctx, MIGRATE_POLL_MS, deadline);
    }
}

int libdm_migrate_finish(libdm_dm *dst, int keep_paused, int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);
    int r;

    if (libdm__dispatch_depth(libdm__dm_ctx(dst)) > 0)
        return -EDEADLK;
    r = wait_incoming_completed(dst, deadline);
    if (r >= 0)
        libdm__dm_incoming_done(dst);
    /* Confirmed: the guarded resume now sees a plain paused DM. */
    if (r >= 0 && !keep_paused)
        r = libdm_dm_resume(dst, remaining_ms(deadline) ? remaining_ms(deadline) : 1);
    /* Only now does the DM stop depending on this process (seed 002). */
    if (r >= 0)
        r = libdm__dm_set_autokill(dst, false);
    return r;
}

/* ---- Confirm ---- */

int libdm_migrate_confirm(libdm_dm *src, int success, int timeout_ms)
{
    uint64_t deadline = libdm__deadline(timeout_ms);
    char *rs = NULL;
    int r;

    if (success)
        return libdm_dm_stop(src, 0, timeout_ms);
    r = libdm_dm_query_status(src, remaining_ms(deadline), &rs);
    if (r < 0)
        return r;
    if (libdm__dm_migrate_was_running(src) && strcmp(rs, "running"))
        r = call(src, "cont", NULL, deadline, NULL);
    free(rs);
    return r;
}

/* ---- recovery ---- */

int libdm_migrate_cancel(libdm_dm *src, int timeout_ms)
{
    static const char *const in_flight[] = { "setup", "active", "pre-switchover", "device",
                                             "postcopy-active", "wait-unplug", NULL };
    uint64_t deadline = libdm__deadline(timeout_ms);
    char *st = NULL, *rs = NULL;
    int r;

    r = migration_status(src, deadline, &st, NULL);
    if (r < 0)
        return r;
    if (!strcmp(st, "completed")) {
        LIBDM__ERROR(libdm__dm_ctx(src), "%s: the migration completed: the guest runs on the "
                     "destination, not resuming the source", libdm_dm_get_name(src));
        free(st);
        return -EALREADY;
    }
    if (is_one_of(st, in_flight) && cancel_migration(src, -ECANCELED) == 0) {
        free(st);
        return -EALREADY; /* the cancel lost the race: it completed */
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
