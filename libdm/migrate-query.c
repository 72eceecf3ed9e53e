/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The receiver's answer to a recovery's "query" (migrate.h; dmctl(1),
 * PROTOCOL OF MIGRATE):
 *
 *   {"phase":"query","name":NAME,"resume":B,...}  ->
 *       <-  {"phase":"state","guest":"running"|"paused"|"absent"|"busy"|
 *                                    "wrong-side",...}
 *
 * attach NAME -> query-status -> query-migrate -> (resume | stop) -> state.
 * "absent": no DM of that name, or one whose incoming migration never
 * completed (stopped now); "running"/"paused": it has the guest (a paused
 * one with a completed incoming migration is resumed when B, and only
 * before the query's own deadline); "busy": its monitor is held or its
 * state is ambiguous; "wrong-side": it is the migration's source.
 */
#include "migrate-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void libdm__mig_send_state(libdm_migration *m, const char *guest, const char *fmt, ...)
{
    libdm_json *o = libdm__mig_msg("state");
    char *text = NULL;
    va_list ap;
    bool ok;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    free(m->guest);
    m->guest = strdup(guest);
    free(m->detail);
    m->detail = text;
    ok = o && libdm__mig_add_str(o, "guest", guest);
    ok = ok && libdm__mig_add_str(o, "message", text ? text : guest);
    libdm__mig_notify(m, "state");
    if (m->ch && libdm__mchan_send(m->ch, libdm__mig_check(o, ok)) < 0)
        libdm__mig_fail(m, "recover", -ECONNRESET, "%s", libdm__mchan_strerror(-ECONNRESET));
    else if (!m->ch)
        libdm_json_free(o);
    libdm__mig_end(m, m->err);
}

/* Whether a query may still act (resume): before its wall-clock bound and
 * within the sender's timeout of this process's start. */
static bool query_in_time(const libdm_migration *m)
{
    if (m->obey_until_real && libdm__mig_realtime_ms() >= m->obey_until_real)
        return false;
    return !m->obey_until || libdm_now_ms() < m->obey_until;
}

static void on_resumed(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status == 0) {
        libdm__mig_mark_clear(m->ctx, m->name);   /* decided: it has the guest */
        libdm__mig_send_state(m, "running", "its incoming migration had completed; resumed "
                              "now");
    }
    else
        libdm__mig_send_state(m, "paused", "its incoming migration completed; runstate %s",
                              m->query_rs);
}

static void on_stopped(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0)
        libdm__mig_send_state(m, "busy", "an incomplete destination that could not be "
                              "stopped");
    else {
        libdm__mig_mark_clear(m->ctx, m->name);   /* decided: it is gone */
        libdm__mig_send_state(m, "absent", "its incoming migration never completed (%s); "
                              "stopped now", m->query_st);
    }
}

/* An attached, answering destination: what does it have? */
static void answer(libdm_migration *m)
{
    const char *rs = m->query_rs, *st = m->query_st;
    int r;

    if (!strcmp(rs, "postmigrate")) {
        /* An outgoing migration's source: --recover was run on the wrong
         * host (issue 22, 8). Its "completed" is not an incoming one. */
        libdm__mig_send_state(m, "wrong-side", "this host's %s is the migration's source "
                              "(runstate postmigrate): run --recover on the source's host, "
                              "with --to reaching this one", m->name);
    } else if (!strcmp(rs, "running")) {
        libdm__mig_send_state(m, "running", "it runs the guest");
    } else if (!strcmp(st, "completed") && m->query_resume && !query_in_time(m)) {
        libdm__mig_send_state(m, "busy", "the query came after its deadline: not resumed "
                              "(its incoming migration completed; runstate %s)", rs);
    } else if (!strcmp(st, "completed") && m->query_resume) {
        libdm__mig_hold(m);
        r = libdm_dm_resume_async(m->dm, m->timeout_ms, on_resumed, m);
        if (r < 0) {
            m->pending--;
            libdm__mig_hold(m);
            on_resumed(m->dm, r, m);
        }
    } else if (!strcmp(st, "completed")) {
        libdm__mig_send_state(m, "paused", "its incoming migration completed; runstate %s", rs);
    } else if (!strcmp(rs, "inmigrate") || !strcmp(st, "failed") || !strcmp(st, "active")) {
        libdm__mig_hold(m);
        r = libdm_dm_stop_async(m->dm, 1, m->timeout_ms, on_stopped, m);
        if (r < 0) {
            m->pending--;
            libdm__mig_hold(m);
            on_stopped(m->dm, r, m);
        }
    } else {
        libdm__mig_send_state(m, "busy", "runstate %s, migration status %s: not a migrated "
                              "guest", rs, st);
    }
}

static void on_migstatus(libdm_qmp *q, const libdm_qmp_reply *rep, void *user)
{
    libdm_migration *m = user;
    const char *st;

    (void)q;
    if (libdm__mig_put(m))
        return;
    if (rep->status < 0) {
        libdm__mig_send_state(m, "busy", "its monitor does not answer");
        return;
    }
    st = libdm__json_get_str(rep->value, "status");
    m->query_st = strdup(st ? st : "none");
    if (!m->query_st) {
        libdm__mig_send_state(m, "busy", "out of memory");
        return;
    }
    answer(m);
}

static void on_status(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    const char *rs;
    libdm_qmp *q;
    int r;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    rs = status >= 0 ? libdm_dm_get_runstate(m->dm) : NULL;
    q = libdm_dm_get_qmp(m->dm);
    if (!rs || !q || !(m->query_rs = strdup(rs))) {
        libdm__mig_send_state(m, "busy", "its monitor does not answer");
        return;
    }
    libdm__mig_hold(m);
    r = libdm_qmp_call_async(q, "query-migrate", NULL, m->timeout_ms, on_migstatus, m, NULL);
    if (r < 0) {
        m->pending--;
        libdm__mig_send_state(m, "busy", "its monitor does not answer");
    }
}

static void on_attached(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    int r;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0 || libdm_dm_get_state(m->dm) == LIBDM_DM_BROKEN) {
        if (status == -EBUSY || libdm_dm_get_state(m->dm) == LIBDM_DM_BROKEN)
            libdm__mig_send_state(m, "busy", "its monitor is held (a receiver still works "
                                  "on it?)");
        else
            libdm__mig_send_state(m, "busy", "cannot attach: %s", strerror(-status));
        return;
    }
    libdm__mig_hold(m);
    r = libdm_dm_query_status_async(m->dm, m->timeout_ms, on_status, m);
    if (r < 0) {
        m->pending--;
        libdm__mig_send_state(m, "busy", "its monitor does not answer");
    }
}

void libdm__mig_query(libdm_migration *m, libdm_json *msg)
{
    const char *name = m->name_opt ? m->name_opt : libdm__json_get_str(msg, "name");
    libdm__mig_mark mk;
    bool resume = true;
    int64_t v;
    int r;

    (void)libdm__mig_bool(msg, "resume", &resume);
    m->query_resume = resume;
    if (libdm__mig_peer_version(msg) < 0) {
        libdm_json_free(msg);
        libdm__mig_fail(m, "recover", -EPROTO, "unknown protocol version (this receiver "
                        "speaks 1 to %d)", LIBDM_MIGRATE_PROTO_VERSION);
        libdm__mig_send_error(m);
        return;
    }
    if (libdm_json_get_int(libdm_json_object_get(msg, "not_after_ms"), &v) == 0 && v > 0)
        m->obey_until_real = (uint64_t)v;
    if (libdm_json_get_int(libdm_json_object_get(msg, "timeout_ms"), &v) == 0 && v > 0 &&
        v <= LIBDM__MIG_PEER_MAX_TIMEOUT_MS)
        m->obey_until = m->started_at + (uint64_t)v - libdm__mig_obey_margin_ms(v);
    m->name = name ? strdup(name) : NULL;
    libdm_json_free(msg);
    if (!m->name) {
        libdm__mig_fail(m, "recover", -EPROTO, "expected a query line with a name");
        libdm__mig_send_error(m);
        return;
    }
    if (libdm__mig_mark_read(m->ctx, m->name, &mk) == 0 && !strcmp(mk.role, "source")) {
        /* This host's record says it holds the migration's source: the
         * recovery runs on the destination's host (issue 22, 8). */
        libdm__mig_send_state(m, "wrong-side", "this host's %s is the migration's source "
                              "(its record says so%s): run --recover on the source's host, "
                              "with --to reaching this one", m->name,
                              mk.fenced ? "; an earlier recovery resumed it" : "");
        return;
    }
    libdm__mig_hold(m);
    r = libdm_dm_attach_async(m->ctx, m->name, m->timeout_ms, on_attached, m, &m->dm);
    if (r < 0) {
        m->pending--;
        m->dm = NULL;
        if (r == -ENOENT || r == -ESRCH)
            libdm__mig_send_state(m, "absent", "no live device model called %s", m->name);
        else
            libdm__mig_send_state(m, "busy", "cannot attach: %s", strerror(-r));
    }
}
