/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sender of a migration between two hosts (migrate.h; the messages
 * and tables are in dmctl(1), PROTOCOL OF MIGRATE), on the context's loop:
 *
 *   STAGE_BEGIN         libdm_migrate_begin_async        -> PREPARE | CONFIRM
 *   STAGE_PREPARE       "prepare" sent, "prepared" awaited (deadline: timeout)
 *                                                        -> PERFORM | CONFIRM
 *   STAGE_PERFORM       libdm_migrate_perform_async; the channel watched: a
 *                       peer that goes cancels the migration at once
 *                                                        -> SOURCE_STATE | finish
 *   STAGE_SOURCE_STATE  libdm_migrate_source_state_async (Perform failed)
 *   finish              "finish" sent with the source's word (STAGE_FINISH_SENT
 *                       before a byte leaves, when it may let the destination
 *                       run), its answer awaited until 2 x timeout after
 *                       "prepared" (never less than the receiver obeys it)
 *                                                        -> ANSWERED | end
 *   STAGE_CONFIRM       libdm_migrate_confirm_async, unless the outcome is
 *                       unknown (the source stays paused) -> end
 *
 * A finish is never sent once the channel is known gone (the destination
 * cannot run without one): that counts as "aborted".
 */
#include "migrate-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static void do_confirm(libdm_migration *m);
static void finish_phase(libdm_migration *m);

static int fail_err(libdm_migration *m, const char *phase, int err)
{
    return libdm__mig_fail(m, phase, err, NULL);
}

static int fail_peer_lost(libdm_migration *m)
{
    m->peer_lost = true;
    return libdm__mig_fail(m, "perform", -ECANCELED, "%s",
                           libdm__mchan_strerror(-ECONNRESET));
}

/* "UID:GID" of a restricted DM, from its confinement ("uid U gid G, ..."). */
static bool source_runas(libdm_dm *dm, char *buf, size_t size)
{
    const char *c = libdm_dm_get_confinement(dm);
    unsigned uid, gid;

    if (!c || sscanf(c, "uid %u gid %u", &uid, &gid) != 2)
        return false;
    snprintf(buf, size, "%u:%u", uid, gid);
    return true;
}

/* The document the source was started with (issue 22, 1). None (a DM
 * started before libdm kept it): the old prepare, name, machine, memory and
 * confinement only. One that cannot be read whole: refused. */
static int load_doc(libdm_migration *m)
{
    char *text = NULL, why[256];
    libdm_dm_config *check = NULL;
    int r = libdm_dm_get_config_doc(m->dm, &text);

    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return libdm__mig_fail(m, "begin", r, "cannot read the source's configuration "
                               "document: %s", strerror(-r));
    /* What this side cannot read, the other cannot honour either. */
    r = libdm_dm_config_from_doc(text, strlen(text), &check, why, sizeof(why));
    libdm_dm_config_free(check);
    if (r < 0) {
        free(text);
        return libdm__mig_fail(m, "begin", r, "the source's configuration document: %s", why);
    }
    r = libdm_json_parse(text, strlen(text), &m->doc);
    free(text);
    return r < 0 ? fail_err(m, "begin", r) : 0;
}

static libdm_json *prepare_msg(libdm_migration *m)
{
    char runas[32];
    const char *profile = libdm_dm_get_profile(m->dm);
    const char *machine = m->machine ? m->machine : libdm_dm_get_machine(m->dm);
    uint64_t memory = m->memory_mb ? m->memory_mb : libdm_dm_get_memory_mb(m->dm);
    libdm_json *cfg = libdm_json_new_object();
    libdm_json *o = libdm__mig_msg("prepare");
    bool ok = o && cfg;

    ok = ok && libdm__mig_add_str(cfg, "profile", profile ? profile : "plain");
    /* The destination looks like the source: the recorded machine and
     * memory, unless overridden (records from before they were kept: pc/64). */
    ok = ok && libdm__mig_add_str(cfg, "machine", machine ? machine : "pc");
    ok = ok && libdm__mig_add_int(cfg, "memory", (int64_t)(memory ? memory : 64));
    ok = ok && libdm__mig_add_int(cfg, "domid", libdm_dm_get_domid(m->dm));
    /* A restricted source gives a restricted destination, as the same user
     * (issue 22, 2). */
    if (ok && source_runas(m->dm, runas, sizeof(runas))) {
        ok = libdm__mig_add_bool(cfg, "restrict", true);
        ok = ok && libdm__mig_add_str(cfg, "runas", runas);
    }
    /* The whole DM (issue 22, 1): the document it was started with. */
    if (ok && m->doc) {
        ok = libdm_json_object_add(cfg, "doc", m->doc) >= 0;
        m->doc = NULL;
        if (ok && m->machine)
            ok = libdm__mig_add_bool(cfg, "override_machine", true);
        if (ok && m->memory_mb)
            ok = libdm__mig_add_bool(cfg, "override_memory", true);
    }
    ok = ok && libdm__mig_add_str(o, "name", libdm_dm_get_name(m->dm));
    ok = ok && libdm__mig_add_str(o, "id", m->id);
    if (ok) {
        ok = libdm_json_object_add(o, "config", cfg) >= 0;
        cfg = NULL;
    }
    ok = ok && libdm__mig_add_int(o, "timeout_ms", m->timeout_ms);
    libdm_json_free(cfg);
    return libdm__mig_check(o, ok);
}

/* The migration's identity: 128 random bits in hex. */
static void make_id(char id[33])
{
    unsigned char b[16] = { 0 };

    if (getrandom(b, sizeof(b), GRND_NONBLOCK) != (ssize_t)sizeof(b)) {
        uint64_t t = libdm_now_ms() ^ ((uint64_t)getpid() << 32);

        memcpy(b, &t, sizeof(t));
    }
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(id + 2 * i, 3, "%02x", b[i]);
}

/* The PORT of "tcp:HOST:PORT" (HOST possibly "[IPV6]"), or NULL. */
static const char *tcp_uri_port(const char *uri)
{
    const char *p = uri + 4, *port;

    if (strncmp(uri, "tcp:", 4) != 0)
        return NULL;
    if (*p == '[') {
        p = strchr(p, ']');
        if (!p || p[1] != ':')
            return NULL;
        port = p + 2;
    } else {
        port = strrchr(p, ':');
        if (!port)
            return NULL;
        port++;
    }
    return *port ? port : NULL;
}

/* ---- Begin, Prepare ---- */

static void on_begin(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    int r;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status >= 0 && m->interrupted)
        status = libdm__mig_fail(m, "begin", -EINTR, "interrupted");
    if (status < 0) {
        fail_err(m, "begin", status);
        do_confirm(m);
        return;
    }
    make_id(m->id);
    {
        libdm__mig_mark mk = { .role = "source" };

        libdm__mig_mark_set_dm(&mk, m->dm);

        memcpy(mk.id, m->id, sizeof(mk.id));
        (void)libdm__mig_mark_write(m->ctx, libdm_dm_get_name(m->dm), &mk);
    }
    m->stage = STAGE_PREPARE;
    r = libdm__mchan_send(m->ch, prepare_msg(m));
    m->doc = libdm_json_free(m->doc);
    if (r == 0)
        r = libdm__mig_recv(m, libdm__mig_deadline_in(m->timeout_ms));
    if (r < 0) {
        m->peer_lost = true;
        libdm__mig_fail(m, "prepare", r, "%s", libdm__mchan_strerror(r));
        do_confirm(m);
    }
}

/* Begin, from the loop: the document is read and checked here, not
 * inside libdm_migration_start(). */
static void on_send_step(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_migration *m = user;
    int r;

    (void)ctx;
    (void)t;
    if (load_doc(m) < 0) {
        do_confirm(m);
        return;
    }
    libdm__mig_hold(m);
    r = libdm_migrate_begin_async(m->dm, m->timeout_ms, on_begin, m);
    if (r < 0) {
        m->pending--;
        fail_err(m, "begin", r);
        do_confirm(m);
    }
}

static int libdm__mig_send_start(libdm_migration *m)
{
    m->stage = STAGE_BEGIN;
    libdm__timer_init(&m->step, on_send_step, m);
    return libdm__defer(m->ctx, &m->step);
}

/* The sender's side of a failed exchange: the receiver said "error" or the
 * channel failed. */
static int fail_exchange(libdm_migration *m, const char *phase, int err, const libdm_json *reply)
{
    const char *msg = reply ? libdm__json_get_str(reply, "message") : NULL;

    if (reply && !strcmp(libdm__mig_phase(reply), "error"))
        return libdm__mig_fail(m, phase, -EIO, "the receiver: %s", msg ? msg : "(no message)");
    if (reply)
        return libdm__mig_fail(m, phase, -EPROTO, "the receiver answered '%s'",
                               libdm__mig_phase(reply));
    m->peer_lost = true;
    return libdm__mig_fail(m, phase, err, "%s", libdm__mchan_strerror(err));
}

static void perform(libdm_migration *m);

static void on_prepared(libdm_migration *m, libdm_json *reply, int err)
{
    const char *uri, *conf, *port;
    char runas[32];
    int r = 0;

    if (err < 0 || strcmp(libdm__mig_phase(reply), "prepared")) {
        fail_exchange(m, "prepare", err, reply);
        libdm_json_free(reply);
        do_confirm(m);
        return;
    }
    m->prepared_at = libdm_now_ms();
    uri = libdm__json_get_str(reply, "uri");
    if (libdm__mig_peer_version(reply) < 0)
        r = libdm__mig_fail(m, "prepare", -EPROTO, "the receiver speaks an unknown protocol "
                            "version");
    else if (source_runas(m->dm, runas, sizeof(runas)) &&
             (!(conf = libdm__json_get_str(reply, "confinement")) || strncmp(conf, "uid ", 4)))
        r = libdm__mig_fail(m, "prepare", -EPERM, "the source is restricted but the receiver "
                            "did not confine the destination (%s): refused",
                            conf ? conf : "an older receiver?");
    else if (!uri || !uri[0])
        r = libdm__mig_fail(m, "prepare", -EPROTO, "the receiver sent no URI");
    else if (m->uri_host && (port = tcp_uri_port(uri)))
        m->uri = libdm__mig_tcp_uri(m->uri_host, port);
    else
        m->uri = strdup(uri);
    if (r == 0 && !m->uri)
        r = fail_err(m, "prepare", -ENOMEM);
    libdm_json_free(reply);
    if (r < 0) {
        /* The receiver stops its destination when the channel closes
         * without a finish. */
        do_confirm(m);
        return;
    }
    m->prepared = true;
    perform(m);
}

/* ---- Perform ---- */

static void cancel_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    (void)q;
    (void)r;
    (void)user;
}

static void send_cancel(libdm_migration *m)
{
    libdm_qmp *q = libdm_dm_get_qmp(m->dm);

    if (m->cancel_sent || m->perform_done)
        return;
    m->cancel_sent = true;
    if (q)
        (void)libdm_qmp_call_async(q, "migrate_cancel", NULL, m->timeout_ms, cancel_reply,
                                   NULL, NULL);
}

/* The receiver went away during Perform: cancel at once (Perform would
 * wait until its deadline otherwise). */
static void peer_gone_in_perform(libdm_migration *m)
{
    if (m->perform_done)
        return;
    fail_peer_lost(m);
    if (m->hook_pending) {
        m->hook_pending = false;
        (void)libdm_migrate_switchover_done(m->dm, -ECANCELED);
        return;
    }
    send_cancel(m);
}

static void on_hook(libdm_dm *src, void *user)
{
    libdm_migration *m = user;

    if (libdm__mchan_gone(m->ch)) {
        fail_peer_lost(m);
        (void)libdm_migrate_switchover_done(src, -ECANCELED);
    } else if (!m->hook) {
        (void)libdm_migrate_switchover_done(src, 0);
    } else {
        m->hook_pending = true;
        m->hook(m, m->hook_user);
    }
}

int libdm_migration_switchover_done(libdm_migration *m, int status, const char *why)
{
    if (!m || m->role != ROLE_SEND)
        return -EINVAL;
    if (!m->hook_pending)
        return -EALREADY;
    m->hook_pending = false;
    if (status < 0) {
        libdm__mig_fail(m, "perform", status, "%s", why ? why : "the switchover hook failed; "
                        "migration cancelled");
        return libdm_migrate_switchover_done(m->dm, -ECANCELED);
    }
    if (libdm__mchan_gone(m->ch)) {   /* went away during the hook */
        fail_peer_lost(m);
        return libdm_migrate_switchover_done(m->dm, -ECANCELED);
    }
    return libdm_migrate_switchover_done(m->dm, 0);
}

int libdm_migration_hook_pending(const libdm_migration *m)
{
    return m && m->hook_pending;
}

static void on_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user)
{
    libdm_migration *m = user;

    if (libdm__mchan_gone(m->ch))
        peer_gone_in_perform(m);
    if (m->progress)
        m->progress(src, p, m->progress_user);
}

static void on_source_state(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    m->source = status >= 0 ? (libdm_migrate_source)status : LIBDM_MIGRATE_SOURCE_UNKNOWN;
    finish_phase(m);
}

static void on_perform(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    int r;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    m->perform_done = true;
    if (status == -ETIMEDOUT && m->hook_pending)
        libdm__mig_fail(m, "perform", status, "the switchover hook did not end before the "
                        "deadline (killed with its process group)");
    m->hook_pending = false;
    if (status == 0) {
        /* "completed" is final in QEMU: no second look on the downtime path. */
        m->source = LIBDM_MIGRATE_SOURCE_COMPLETED;
        finish_phase(m);
        return;
    }
    fail_err(m, "perform", status);
    m->stage = STAGE_SOURCE_STATE;
    libdm__mig_hold(m);
    r = libdm_migrate_source_state_async(m->dm, m->timeout_ms, on_source_state, m);
    if (r < 0) {
        m->pending--;
        m->source = LIBDM_MIGRATE_SOURCE_UNKNOWN;
        finish_phase(m);
        return;
    }
}

static void perform(libdm_migration *m)
{
    unsigned flags = m->flags & LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER;
    int r;

    m->stage = STAGE_PERFORM;
    if (m->interrupted) {
        libdm__mig_fail(m, "perform", -EINTR, "interrupted");
        m->source = LIBDM_MIGRATE_SOURCE_KEEPS;
        finish_phase(m);
        return;
    }
    libdm__mig_hold(m);
    r = libdm_migrate_perform_async(m->dm, m->uri, flags, on_hook, m, on_progress, m,
                                    m->timeout_ms, on_perform, m);
    if (r < 0) {
        m->pending--;
        m->perform_done = true;
        fail_err(m, "perform", r);
        m->source = LIBDM_MIGRATE_SOURCE_KEEPS;
        finish_phase(m);
        return;
    }
}

int libdm_migration_cancel(libdm_migration *m)
{
    if (!m || m->role != ROLE_SEND || !m->started)
        return -EINVAL;
    if (m->done || m->ending || m->stage >= STAGE_SOURCE_STATE)
        return libdm__mig_finish_may_run(m->source) || m->stage < STAGE_SOURCE_STATE
               ? -EALREADY : 0;
    if (m->interrupted)
        return 0;
    m->interrupted = true;
    if (m->stage == STAGE_PREPARE) {
        libdm__timer_disarm(m->ctx, &m->deadline);
        libdm__mchan_disarm(m->ch);
        libdm__mig_fail(m, "prepare", -EINTR, "interrupted");
        do_confirm(m);
    } else if (m->stage == STAGE_PERFORM && m->hook_pending) {
        libdm_migration_switchover_done(m, -EINTR, "interrupted during the switchover hook "
                                        "(killed with its process group)");
    } else if (m->stage == STAGE_PERFORM) {
        send_cancel(m);
    }
    return 0;
}

/* ---- Finish ---- */

static libdm_json *finish_msg(libdm_migration *m)
{
    libdm_json *o = libdm__mig_msg("finish");
    bool ok = o && libdm__mig_add_str(o, "source", libdm_migrate_source_to_string(m->source));

    ok = ok && libdm__mig_add_str(o, "id", m->id);
    ok = ok && libdm__mig_add_int(o, "epoch", 1);
    ok = ok && libdm__mig_add_bool(o, "success", m->source == LIBDM_MIGRATE_SOURCE_COMPLETED);
    ok = ok && libdm__mig_add_bool(o, "keep_paused", m->flags & LIBDM_MIGRATION_KEEP_PAUSED);
    return libdm__mig_check(o, ok);
}

static mig_answer read_answer(libdm_migration *m, const libdm_json *reply, char **ret_why)
{
    const char *phase = libdm__mig_phase(reply), *msg = libdm__json_get_str(reply, "message");

    if (!strcmp(phase, "finished")) {
        msg = libdm__json_get_str(reply, "runstate");
        m->runstate = strdup(msg ? msg : "?");
        msg = libdm__json_get_str(reply, "record_error");
        m->record_error = msg ? strdup(msg) : NULL;
        return ANSWER_FINISHED;
    }
    if (!strcmp(phase, "aborted")) {
        *ret_why = strdup(msg ? msg : "the destination was stopped");
        return ANSWER_ABORTED;
    }
    *ret_why = libdm__sprintf("the receiver answered '%s'%s%s", phase, msg ? ": " : "",
                              msg ? msg : "");
    return ANSWER_NONE;
}

/* The outcome by the sender's table, for the answer @a. */
static void decide(libdm_migration *m, mig_answer a, char *why)
{
    m->outcome = libdm__mig_outcome_for(m->source, a);
    if (m->outcome == LIBDM_MIGRATE_OUTCOME_FAILED &&
        m->source == LIBDM_MIGRATE_SOURCE_COMPLETED)
        libdm__mig_fail(m, "finish", -EIO, "%s; the source runs again", why ? why : "aborted");
    else if (m->outcome == LIBDM_MIGRATE_OUTCOME_UNKNOWN)
        libdm__mig_fail(m, "finish", -EIO, "%s", why ? why : "no answer");
    if (m->outcome == LIBDM_MIGRATE_OUTCOME_UNKNOWN) {
        free(m->detail);
        m->detail = why;   /* why the finish got no answer */
        why = NULL;
    }
    free(why);
    do_confirm(m);
}

static void on_answer(libdm_migration *m, libdm_json *reply, int err)
{
    char *why = NULL;
    mig_answer a = ANSWER_NONE;

    if (err < 0)
        why = strdup(libdm__mchan_strerror(err));
    else
        a = read_answer(m, reply, &why);
    libdm_json_free(reply);
    if (a != ANSWER_NONE)
        m->stage = STAGE_ANSWERED;
    if (a == ANSWER_FINISHED) {
        /* The receiver keeps its mark (this host may report the outcome
         * unknown) until told that the answer arrived. */
        libdm_json *o = libdm__mig_msg("confirmed");

        (void)libdm__mchan_send(m->ch, libdm__mig_check(o, o && libdm__mig_add_str(o, "id",
                                                                                    m->id)));
    }
    decide(m, a, why);
}

/* After Perform: with the channel gone no finish is sent (the destination
 * cannot run without one), as if it had answered "aborted". */
static void finish_phase(libdm_migration *m)
{
    /* The receiver obeys a finish until 2 x timeout (less a margin) after
     * it sent "prepared": the answer is awaited at least that long, so no
     * finish is obeyed after this side gave up (issue 22, 6). */
    uint64_t deadline = m->prepared_at + 2 * (uint64_t)m->timeout_ms;
    int r;

    if (!m->prepared || libdm__mchan_gone(m->ch)) {
        decide(m, ANSWER_ABORTED, strdup(libdm__mchan_strerror(-ECONNRESET)));
        return;
    }
    m->stage = libdm__mig_finish_may_run(m->source) ? STAGE_FINISH_SENT : STAGE_SOURCE_STATE;
    m->awaiting_answer = true;
    r = libdm__mchan_send(m->ch, finish_msg(m));
    if (r == 0)
        r = libdm__mig_recv(m, deadline);
    if (r < 0) {
        m->awaiting_answer = false;
        on_answer(m, NULL, r);
    }
}

/* ---- Confirm ---- */

static void on_confirm(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0 && !(m->outcome == LIBDM_MIGRATE_OUTCOME_LOST &&
                        libdm_dm_get_state(m->dm) == LIBDM_DM_DEAD))
        m->confirm_err = status;
    libdm__mchan_close_out(m->ch);
    libdm__mig_mark_clear(m->ctx, libdm_dm_get_name(m->dm));   /* the outcome is known */
    libdm__mig_end(m, m->outcome == LIBDM_MIGRATE_OUTCOME_MIGRATED && !m->confirm_err
                      ? 0 : m->err ? m->err : m->confirm_err ? m->confirm_err : -EIO);
}

/* Success: stop the source; failure: it runs again (or stays paused);
 * unknown: the source is not touched. */
static void do_confirm(libdm_migration *m)
{
    int r;

    if (m->outcome == LIBDM_MIGRATE_OUTCOME_UNKNOWN) {
        libdm__mchan_close_out(m->ch);
        libdm__mig_end(m, m->err ? m->err : -EIO);
        return;
    }
    m->stage = m->stage == STAGE_FINISH_SENT ? STAGE_FINISH_SENT : STAGE_CONFIRM;
    libdm__mig_hold(m);
    r = libdm_migrate_confirm_async(m->dm, m->outcome != LIBDM_MIGRATE_OUTCOME_FAILED,
                                    m->timeout_ms, on_confirm, m);
    if (r < 0) {
        m->pending--;
        if (!(m->outcome == LIBDM_MIGRATE_OUTCOME_LOST))
            m->confirm_err = r;
        libdm__mchan_close_out(m->ch);
        libdm__mig_mark_clear(m->ctx, libdm_dm_get_name(m->dm));
        libdm__mig_end(m, m->err ? m->err : r);
        return;
    }
}

/* ---- the channel and the deadline ---- */

static void libdm__mig_send_on_msg(libdm__mchan *ch, libdm_json *msg, int err, void *user)
{
    libdm_migration *m = user;

    (void)ch;
    if (m->ending) {
        libdm_json_free(msg);
        return;
    }
    if (m->stage == STAGE_PREPARE && (msg || libdm__timer_armed(&m->deadline))) {
        libdm__timer_disarm(m->ctx, &m->deadline);
        on_prepared(m, msg, err);
    } else if (m->awaiting_answer) {
        m->awaiting_answer = false;
        libdm__timer_disarm(m->ctx, &m->deadline);
        on_answer(m, msg, err);
    } else if (!msg && m->stage == STAGE_PERFORM) {
        peer_gone_in_perform(m);
    } else {
        libdm_json_free(msg);
    }
}

static void libdm__mig_send_on_deadline(libdm_migration *m)
{
    if (m->stage == STAGE_PREPARE) {
        on_prepared(m, NULL, -ETIMEDOUT);
    } else if (m->awaiting_answer) {
        m->awaiting_answer = false;
        on_answer(m, NULL, -ETIMEDOUT);
    }
}

static const libdm__mig_ops send_ops = {
    .start = libdm__mig_send_start,
    .on_msg = libdm__mig_send_on_msg,
    .on_deadline = libdm__mig_send_on_deadline,
};

int libdm_migration_new_send(libdm_dm *source, libdm_migration **ret)
{
    int r;

    if (!source)
        return -EINVAL;
    r = libdm__mig_new(libdm__dm_ctx(source), ROLE_SEND, &send_ops, ret);
    if (r == 0)
        (*ret)->dm = source;
    return r;
}
