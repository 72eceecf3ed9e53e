/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate --recover, and the entry points of migrate and
 * migrate-recover (see dmctl-migrate.h).
 */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dmctl-migrate.h"

/* ---- migrate-recover ---- */

/* What the destination has of the guest, by its answer to "query". */
typedef enum dest_guest {
    DEST_RUNNING,
    DEST_PAUSED,
    DEST_ABSENT,
    DEST_BUSY,               /* its receiver still holds it, or ambiguous */
    DEST_WRONG_SIDE,         /* it is the source: recover runs on the wrong host */
    DEST_NO_ANSWER,
} dest_guest;

static libdm_json *query_msg(migration *m)
{
    libdm_json *o = msg_new("query");
    bool ok = o && dmctl_json_add_str(o, "name", m->o.name);

    ok = ok && dmctl_json_add_bool(o, "resume", !m->o.keep_paused);
    ok = ok && dmctl_json_add_int(o, "version", MIG_PROTO_VERSION);
    /* Not obeyed after this (wall clock, less a margin): the answer is
     * awaited until now + timeout (issue 22, 6: a receiver frozen across
     * this side's deadline and a --destination-gone). */
    ok = ok && dmctl_json_add_int(o, "not_after_ms", (int64_t)(realtime_ms() +
                                  (uint64_t)m->d->timeout_ms - obey_margin_ms(m->d->timeout_ms)));
    ok = ok && dmctl_json_add_int(o, "timeout_ms", m->d->timeout_ms);
    return msg_check(o, ok);
}

static dest_guest dest_guest_from(const char *g)
{
    static const char *const names[] = {
        [DEST_RUNNING] = "running", [DEST_PAUSED] = "paused",
        [DEST_ABSENT] = "absent", [DEST_BUSY] = "busy", [DEST_WRONG_SIDE] = "wrong-side",
    };

    for (size_t i = 0; g && i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(g, names[i]))
            return (dest_guest)i;
    return DEST_NO_ANSWER;
}

/* Asks the destination side through --to; *ret_detail says more. */
static dest_guest ask_destination(migration *m, char **ret_detail)
{
    libdm_json *reply = NULL;
    const char *msg;
    dest_guest dg;
    int r = spawn_peer(m);

    if (r < 0) {
        fail(m, "recover", r, "cannot run the --to command: %s", strerror(-r));
        *ret_detail = strdup(m->why ? m->why : "cannot run the --to command");
        return DEST_NO_ANSWER;
    }
    r = exchange(m, "recover", query_msg(m), "state", deadline_in(m->d->timeout_ms), &reply);
    if (r < 0) {
        *ret_detail = strdup(m->why ? m->why : chan_strerror(r));
        return DEST_NO_ANSWER;
    }
    dg = dest_guest_from(msg_str(reply, "guest"));
    msg = msg_str(reply, "message");
    *ret_detail = strdup(msg ? msg : dg == DEST_NO_ANSWER ? "an unknown answer" : "");
    libdm_json_free(reply);
    return dg;
}

/* The source by name; NULL (and 0) if it has no record or its process is
 * gone: the destination may still be asked. */
static int recover_attach(migration *m)
{
    int ex = dmctl_open_ctx(m->d), r;

    if (ex)
        return ex;
    r = libdm_dm_attach_timeout(m->d->ctx, m->o.name, m->d->timeout_ms, &m->src);
    if (r == -ENOENT || r == -ESRCH) {
        dmctl_logger_discard(m->d->lg);
        m->src = NULL;
        return 0;
    }
    return r < 0 ? dmctl_report_attach(m->d, m->o.name, r) : 0;
}

/* --recover runs on the source's side. A local DM that runs the guest is
 * not a stranded source (issue 22, 8: on the destination's host, recovery
 * would stop the copy that holds the guest): the other side is then only
 * asked (never resumed) and nothing here is stopped. 0 or an exit status. */
static int recover_side(migration *m)
{
    char *rs = NULL;
    int r;

    if (!m->src)
        return 0;
    r = libdm_dm_query_status(m->src, m->d->timeout_ms, &rs);
    if (r < 0)
        return dmctl_report_dm(m->d, m->src, m->o.name, "migrate-recover", r);
    m->local_runs = !strcmp(rs, "running");
    if (m->local_runs)
        m->o.keep_paused = true;   /* "resume": false */
    free(rs);
    return 0;
}

/* Resumes exactly one side, by the destination's answer @dg. */
static int recover_apply(migration *m, dest_guest dg, const char *detail)
{
    bool dest_has = dg == DEST_RUNNING || dg == DEST_PAUSED;
    int r;

    if (dg == DEST_WRONG_SIDE) {
        dmctl_error(m->o.name, "refused: the other side says: %s; nothing was changed",
                    detail);
        return DMCTL_EXIT_FAIL;
    }
    if (m->local_runs) {
        if (dg == DEST_RUNNING) {
            dmctl_error(m->o.name, "refused: %s runs here and the other side says: %s; "
                        "nothing was changed", m->o.name, detail);
            return DMCTL_EXIT_FAIL;
        }
        printf("%s: recovered: it runs here; nothing to do (the other side: %s)\n",
               m->o.name, detail[0] ? detail : "no guest");
        return 0;
    }
    if (dg == DEST_BUSY || dg == DEST_NO_ANSWER) {
        dmctl_error(m->o.name, "outcome still unknown: the destination: %s; the source "
                    "stays paused. Retry, or if the destination is gone: dmctl "
                    "migrate %s --recover --destination-gone", detail, m->o.name);
        return DMCTL_EXIT_UNKNOWN;
    }
    if (!m->src) {
        dmctl_error(m->o.name, dest_has ? "recovered: no source left; the destination has "
                    "the guest (%s)" : "no source left and the destination does not have "
                    "the guest: it is lost%s", dest_has ? detail : "");
        return dest_has ? 0 : DMCTL_EXIT_FAIL;
    }
    r = libdm_migrate_recover(m->src, dest_has, m->d->timeout_ms);
    if (r < 0)
        return dmctl_report_dm(m->d, m->src, m->o.name, "migrate-recover", r);
    printf("%s: recovered: %s\n", m->o.name, dest_has
           ? "the destination has the guest; the source was stopped"
           : "the source runs (the destination does not have the guest)");
    return 0;
}

static int migrate_recover(migration *m)
{
    dest_guest dg = DEST_ABSENT;
    char *detail = NULL;
    int ex = recover_attach(m);

    if (ex)
        return ex;
    if (!m->src && m->o.destination_gone) {
        dmctl_error(m->o.name, "no such source device model (no record, or its process "
                    "is gone): nothing to resume");
        return DMCTL_EXIT_FAIL;
    }
    ex = recover_side(m);
    if (ex) {
        libdm_dm_release(m->src);
        return ex;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!m->o.destination_gone)
        dg = ask_destination(m, &detail);
    reap_peer(m);
    ex = recover_apply(m, dg, detail ? detail : "");
    free(detail);
    free(m->why);
    libdm_dm_release(m->src);
    return ex;
}

int dmctl_cmd_migrate_recover(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate-recover");
    migration m = { .d = d, .peer = -1 };
    int ex;

    if (!cmd)
        cmd = dmctl_find_command("migrate");
    chan_init(&m.ch, -1, -1);
    m.o.recover = true;
    ex = migrate_parse(d, cmd, argc, argv, &m.o);
    return ex ? ex : migrate_recover(&m);
}

int dmctl_cmd_migrate(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate");
    migration m = { .d = d, .peer = -1 };
    int ex;

    chan_init(&m.ch, -1, -1);
    ex = migrate_parse(d, cmd, argc, argv, &m.o);
    if (!ex && m.o.recover)
        return migrate_recover(&m);
    if (!ex)
        ex = dmctl_attach(d, m.o.name, &m.src);
    if (ex)
        return ex;
    signal(SIGPIPE, SIG_IGN);
    migrate_phases(&m);
    do_confirm(&m);
    reap_peer(&m);
    if (too_late_to_cancel && dmctl_signal_received()) {
        dmctl_error(m.o.name, "note: %s came too late: the migration had completed",
                    dmctl_signal_name(dmctl_signal_received()));
        dmctl_signal_forget();
    }
    ex = migrate_report(&m);
    libdm_dm_release(m.src);
    free(m.why);
    free(m.unknown_why);
    free(m.runstate);
    free(m.record_error);
    libdm_json_free(m.doc);
    return ex;
}
