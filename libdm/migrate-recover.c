/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The recovery of a migration whose outcome is unknown (migrate.h;
 * dmctl(1), PROTOCOL OF MIGRATE), on the context's loop: it resumes exactly
 * one side.
 *
 *   attach NAME here (none: the source is gone) -> query-status (a local
 *   DM that runs is not a stranded source: the other side is then only
 *   asked, never resumed, and nothing here is stopped) -> "query" sent,
 *   "state" awaited (deadline: timeout), unless the destination is known
 *   gone -> by the answer: libdm_migrate_recover_async (stop the source if
 *   the destination has the guest, else make it run), or refuse.
 */
#include "migrate-internal.h"

#include <stdlib.h>
#include <string.h>

/* What the other side has of the guest, by its answer to "query". */
typedef enum dest_guest {
    DEST_RUNNING, DEST_PAUSED, DEST_ABSENT, DEST_BUSY, DEST_WRONG_SIDE, DEST_NO_ANSWER,
} dest_guest;

static dest_guest dest_guest_from(const char *g)
{
    static const char *const names[] = {
        [DEST_RUNNING] = "running", [DEST_PAUSED] = "paused",
        [DEST_ABSENT] = "absent", [DEST_BUSY] = "busy", [DEST_WRONG_SIDE] = "wrong-side",
    };

    for (size_t i = 0; g && i < LIBDM__ARRAY_SIZE(names); i++)
        if (!strcmp(g, names[i]))
            return (dest_guest)i;
    return DEST_NO_ANSWER;
}

static void finish(libdm_migration *m, libdm_migrate_recovery rec, int status)
{
    libdm__mig_mark mk = { .role = "source", .fenced = true };

    m->recovery = rec;
    if (rec == LIBDM_MIGRATE_RECOVERY_SOURCE_RUNS)
        /* The source runs again: the other side is fenced, and the record
         * says so where a recovery (or a query) on this host reads it. */
        (void)libdm__mig_mark_write(m->ctx, m->name, &mk);
    else if (rec == LIBDM_MIGRATE_RECOVERY_DEST_HAS || rec == LIBDM_MIGRATE_RECOVERY_NO_SOURCE ||
             rec == LIBDM_MIGRATE_RECOVERY_LOST)
        libdm__mig_mark_clear(m->ctx, m->name);
    if (m->ch)
        libdm__mchan_close_out(m->ch);
    libdm__mig_end(m, status);
}

static void on_recovered(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0) {
        libdm__mig_fail(m, "recover", status, NULL);
        finish(m, LIBDM_MIGRATE_RECOVERY_NONE, status);
        return;
    }
    finish(m, m->dest_has ? LIBDM_MIGRATE_RECOVERY_DEST_HAS
                          : LIBDM_MIGRATE_RECOVERY_SOURCE_RUNS, 0);
}

/* Resumes exactly one side, by the other side's answer @dg. */
static void apply(libdm_migration *m, dest_guest dg)
{
    int r;

    m->dest_has = dg == DEST_RUNNING || dg == DEST_PAUSED;
    if (dg == DEST_WRONG_SIDE) {
        finish(m, LIBDM_MIGRATE_RECOVERY_WRONG_SIDE, -EPERM);
    } else if (m->local_runs) {
        if (dg == DEST_RUNNING)
            finish(m, LIBDM_MIGRATE_RECOVERY_BOTH_RUN, -EEXIST);
        else
            finish(m, LIBDM_MIGRATE_RECOVERY_RUNS_HERE, 0);
    } else if (dg == DEST_BUSY || dg == DEST_NO_ANSWER) {
        finish(m, LIBDM_MIGRATE_RECOVERY_UNKNOWN, -EAGAIN);
    } else if (!m->dm) {
        finish(m, m->dest_has ? LIBDM_MIGRATE_RECOVERY_NO_SOURCE : LIBDM_MIGRATE_RECOVERY_LOST,
               m->dest_has ? 0 : -ENOENT);
    } else {
        libdm__mig_hold(m);
        r = libdm_migrate_recover_async(m->dm, m->dest_has, m->timeout_ms, on_recovered, m);
        if (r < 0) {
            m->pending--;
            libdm__mig_fail(m, "recover", r, NULL);
            finish(m, LIBDM_MIGRATE_RECOVERY_NONE, r);
        }
    }
}

static libdm_json *query_msg(libdm_migration *m)
{
    libdm_json *o = libdm__mig_msg("query");
    bool ok = o && libdm__mig_add_str(o, "name", m->name);

    ok = ok && libdm__mig_add_bool(o, "resume", !(m->flags & LIBDM_MIGRATION_KEEP_PAUSED) &&
                                   !m->local_runs);
    /* Not obeyed after this (wall clock, less a margin): the answer is
     * awaited until now + timeout (issue 22, 6: a receiver frozen across
     * this side's deadline and a --destination-gone). */
    ok = ok && libdm__mig_add_int(o, "not_after_ms", (int64_t)(libdm__mig_realtime_ms() +
                                  (uint64_t)m->timeout_ms -
                                  libdm__mig_obey_margin_ms(m->timeout_ms)));
    ok = ok && libdm__mig_add_int(o, "timeout_ms", m->timeout_ms);
    return libdm__mig_check(o, ok);
}

static void libdm__mig_recover_on_msg(libdm__mchan *ch, libdm_json *msg, int err, void *user);

static void ask(libdm_migration *m)
{
    int r;

    if (m->flags & LIBDM_MIGRATION_DESTINATION_GONE) {
        apply(m, DEST_ABSENT);
        return;
    }
    r = libdm__mchan_send(m->ch, query_msg(m));
    if (r == 0)
        r = libdm__mig_recv(m, libdm__mig_deadline_in(m->timeout_ms));
    if (r < 0)
        libdm__mig_recover_on_msg(m->ch, NULL, r, m);
}

static void libdm__mig_recover_on_msg(libdm__mchan *ch, libdm_json *msg, int err, void *user)
{
    libdm_migration *m = user;
    const char *text;
    dest_guest dg;

    (void)ch;
    if (m->ending || m->pending || m->stage != STAGE_PREPARE) {
        libdm_json_free(msg);
        return;
    }
    m->stage = STAGE_ANSWERED;
    libdm__timer_disarm(m->ctx, &m->deadline);
    if (err < 0) {
        m->peer_lost = true;
        libdm__mig_fail(m, "recover", err, "%s", libdm__mchan_strerror(err));
        m->detail = strdup(libdm__mchan_strerror(err));
        apply(m, DEST_NO_ANSWER);
        return;
    }
    if (strcmp(libdm__mig_phase(msg), "state")) {
        text = libdm__json_get_str(msg, "message");
        m->detail = !strcmp(libdm__mig_phase(msg), "error")
                        ? libdm__sprintf("the receiver: %s", text ? text : "(no message)")
                        : libdm__sprintf("the receiver answered '%s'", libdm__mig_phase(msg));
        libdm_json_free(msg);
        apply(m, DEST_NO_ANSWER);
        return;
    }
    dg = dest_guest_from(libdm__json_get_str(msg, "guest"));
    text = libdm__json_get_str(msg, "message");
    m->guest = strdup(libdm__json_get_str(msg, "guest") ? libdm__json_get_str(msg, "guest")
                                                         : "?");
    m->detail = strdup(text ? text : dg == DEST_NO_ANSWER ? "an unknown answer" : "");
    libdm_json_free(msg);
    apply(m, dg);
}

static void libdm__mig_recover_on_deadline(libdm_migration *m)
{
    libdm__mig_recover_on_msg(m->ch, NULL, -ETIMEDOUT, m);
}

static void on_status(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    const char *rs;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    rs = status >= 0 ? libdm_dm_get_runstate(m->dm) : NULL;
    if (!rs) {
        libdm__mig_fail(m, "recover", status < 0 ? status : -EIO, NULL);
        finish(m, LIBDM_MIGRATE_RECOVERY_NONE, status < 0 ? status : -EIO);
        return;
    }
    m->local_runs = !strcmp(rs, "running");
    m->stage = STAGE_PREPARE;
    ask(m);
}

static void on_attached(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    int r;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0) {
        libdm__mig_fail(m, "attach", status, NULL);
        finish(m, LIBDM_MIGRATE_RECOVERY_NONE, status);
        return;
    }
    libdm__mig_hold(m);
    r = libdm_dm_query_status_async(m->dm, m->timeout_ms, on_status, m);
    if (r < 0) {
        m->pending--;
        libdm__mig_hold(m);
        on_status(m->dm, r, m);
    }
}

static void on_no_source(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_migration *m = user;

    (void)ctx;
    (void)t;
    if (m->flags & LIBDM_MIGRATION_DESTINATION_GONE) {
        libdm__mig_fail(m, "recover", -ENOENT, "no such source device model (no record, or "
                        "its process is gone): nothing to resume");
        finish(m, LIBDM_MIGRATE_RECOVERY_NONE, -ENOENT);
        return;
    }
    m->stage = STAGE_PREPARE;
    ask(m);
}

static void on_wrong_side(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_migration *m = user;

    (void)ctx;
    (void)t;
    if (m->ch)
        libdm__mchan_close_out(m->ch);
    libdm__mig_end(m, -EPERM);
}

static int libdm__mig_recover_start(libdm_migration *m)
{
    libdm__mig_mark mk;
    bool dest_here;
    int r;

    m->stage = STAGE_BEGIN;
    dest_here = libdm__mig_mark_read(m->ctx, m->name, &mk) == 0 &&
                !strcmp(mk.role, "destination");
    if (dest_here && libdm__mig_mark_stale(&mk)) {
        /* The destination this host held is gone (its receiver was killed
         * and autokill took it, say): the mark no longer says anything of
         * this host, and would refuse a recovery of a later DM of the name. */
        libdm__mig_mark_clear(m->ctx, m->name);
        dest_here = false;
    }
    if (dest_here) {
        /* This host's record says it holds the migration's destination:
         * acting from here would treat it as a stranded source (issue 22,
         * 8). Nothing is touched. */
        m->detail = libdm__sprintf("this host holds the destination of %s's migration (its "
                                   "record says so): run --recover on the source's host, with "
                                   "--to reaching this one", m->name);
        m->recovery = LIBDM_MIGRATE_RECOVERY_WRONG_SIDE;
        libdm__timer_init(&m->step, on_wrong_side, m);
        return libdm__defer(m->ctx, &m->step);
    }
    libdm__mig_hold(m);
    r = libdm_dm_attach_async(m->ctx, m->name, m->timeout_ms, on_attached, m, &m->dm);
    if (r == 0)
        return 0;
    m->pending--;
    m->dm = NULL;
    if (r != -ENOENT && r != -ESRCH)
        return r;
    /* No source here: the other side may still have the guest. */
    libdm__timer_init(&m->step, on_no_source, m);
    r = libdm__defer(m->ctx, &m->step);
    return r;
}

static const libdm__mig_ops recover_ops = {
    .start = libdm__mig_recover_start,
    .on_msg = libdm__mig_recover_on_msg,
    .on_deadline = libdm__mig_recover_on_deadline,
};

int libdm_migration_new_recover(libdm_ctx *ctx, const char *name, libdm_migration **ret)
{
    int r;

    if (!name || !name[0])
        return -EINVAL;
    r = libdm__mig_new(ctx, ROLE_RECOVER, &recover_ops, ret);
    if (r == 0 && !((*ret)->name = strdup(name))) {
        free(*ret);
        return -ENOMEM;
    }
    return r;
}
