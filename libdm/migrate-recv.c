/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The receiver of a migration between two hosts (migrate.h; dmctl(1),
 * PROTOCOL OF MIGRATE), on the context's loop:
 *
 *   first line awaited (deadline: timeout) -> "query": migrate-query.c
 *                                          -> "prepare":
 *   the configuration from "prepare" (the source's document, its
 *   confinement), refused before anything runs if it cannot be honoured
 *   -> libdm_migrate_prepare_async (autokill armed) -> tcp: query-migrate
 *   for the port QEMU bound -> "prepared" sent -> "finish" awaited until
 *   2 x the sender's timeout less a margin (never obeyed after) ->
 *   by the table: libdm_migrate_finish_async then "finished", or the
 *   destination stopped then "aborted" ("error" if it could not be
 *   stopped: the sender must not resume its source then).
 *
 * The receiver needs no cleanup when the sender dies: until Finish its
 * destination DM is under autokill; a channel that closes before a finish
 * stops it at once.
 */
#include "migrate-internal.h"
#include "migrate-op-internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- failures ---- */

/* Records the failure, sends {"phase":"error"} (best effort) and ends. */
static void recv_fail(libdm_migration *m, const char *phase, int err, const char *fmt, ...)
    LIBDM__PRINTF(4, 5);
static void recv_fail(libdm_migration *m, const char *phase, int err, const char *fmt, ...)
{
    libdm_json *o = libdm__mig_msg("error");
    char *text = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    libdm__mig_fail(m, phase, err, "%s", text ? text : strerror(-err));
    if (m->ch && o && libdm__mig_add_str(o, "message", text ? text : strerror(-err)))
        (void)libdm__mchan_send(m->ch, o);
    else
        libdm_json_free(o);
    free(text);
    libdm__mig_notify(m, "error");
    libdm__mig_end(m, err);
}

/* libdm's reason for @err: the DM's last error, else strerror. */
static const char *cause(libdm_migration *m, int err)
{
    const char *e = m->dm ? libdm_dm_last_error(m->dm) : NULL;

    return e ? e : err == -ETIMEDOUT ? "timed out (see --timeout)" : strerror(-err);
}

/* ---- stopping the destination ---- */

typedef enum after_stop { THEN_ERROR, THEN_ABORTED } after_stop;

static void on_stopped(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    libdm_json *o;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0) {
        recv_fail(m, "finish", m->err ? m->err : status, "%s; the destination could not be "
                  "stopped", m->why ? m->why : strerror(-status));
        return;
    }
    libdm__mig_mark_clear(m->ctx, m->name);   /* the destination is dead */
    if (m->stop_then == THEN_ERROR) {
        recv_fail(m, m->failed_in ? m->failed_in : "finish", m->err ? m->err : -EIO, "%s",
                  m->why ? m->why : "failed");
        return;
    }
    /* "aborted" only once the destination is dead. */
    o = libdm__mig_msg("aborted");
    o = libdm__mig_check(o, o && libdm__mig_add_str(o, "message", m->why ? m->why
                                                    : "the destination was stopped"));
    if (m->ch)
        (void)libdm__mchan_send(m->ch, o);
    else
        libdm_json_free(o);
    libdm__mig_notify(m, "aborted");
    libdm__mig_end(m, m->err ? m->err : -ECANCELED);
}

/* Stops the destination (at once: it does not run this guest), then an
 * error line or "aborted". @why: the failure, recorded first. */
static void stop_dst(libdm_migration *m, after_stop then, int err, const char *fmt, ...)
    LIBDM__PRINTF(4, 5);
static void stop_dst(libdm_migration *m, after_stop then, int err, const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    int r;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    libdm__mig_fail(m, "finish", err, "%s", text ? text : strerror(-err));
    free(text);
    m->stop_then = then;
    libdm__mig_hold(m);
    r = m->dm ? libdm_dm_stop_async(m->dm, 1, m->timeout_ms, on_stopped, m) : -ENOENT;
    if (r < 0) {
        m->pending--;
        if (r == -ENOENT || libdm_dm_get_state(m->dm) == LIBDM_DM_DEAD ||
            libdm__dm_exited(m->dm)) {
            libdm__mig_hold(m);
            on_stopped(m->dm, 0, m);
        } else {
            recv_fail(m, "finish", m->err, "%s; the destination could not be stopped",
                      m->why ? m->why : strerror(-r));
        }
    }
}

/* ---- the configuration from "prepare" ---- */

static int set_profile_name(libdm_dm_config *cfg, const char *p)
{
    if (p && !strcmp(p, "plain"))
        return libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_PLAIN);
    if (p && !strcmp(p, "xen"))
        return libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_XEN);
    return -EINVAL;
}

/* "restrict" and "runas": a restricted source gives a restricted
 * destination, or none at all (issue 22, 2). Its QEMU is chrooted: a unix
 * socket in the run directory is out of its reach, so libdm listens and
 * accepts and hands QEMU the stream (issue 22, 3: see accept_stream()). */
static int confine_from(libdm_migration *m, const libdm_json *c, libdm_dm_config *cfg,
                        const char **ret_bad)
{
    const char *runas = libdm__json_get_str(c, "runas");
    bool restricted = false;

    if (!libdm__mig_bool(c, "restrict", &restricted) || !restricted)
        return 0;
    if (libdm_dm_config_set_restrict(cfg, 1) < 0)
        return *ret_bad = "restrict", -EINVAL;
    if (runas && libdm_dm_config_set_runas(cfg, runas) < 0)
        return *ret_bad = "runas", -EINVAL;
    m->fd_transport = true;
    return 0;
}

/* The source's configuration document (issue 22, 1), when it sent one:
 * the destination starts with exactly that. */
static int config_from_doc(libdm_migration *m, const libdm_json *c, libdm_dm_config **ret_cfg,
                           const char **ret_bad)
{
    char reason[256], *text = NULL;
    const libdm_json *doc = libdm_json_object_get(c, "doc");
    int r;

    *ret_cfg = NULL;
    if (!doc)
        return 0;
    if (libdm_json_to_string(doc, 0, &text) < 0)
        return *ret_bad = "(out of memory)", -ENOMEM;
    r = libdm_dm_config_from_doc(text, strlen(text), ret_cfg, reason, sizeof(reason));
    free(text);
    if (r < 0) {
        free(m->detail);
        m->detail = libdm__sprintf("configuration document (%s)", reason);
        return *ret_bad = m->detail ? m->detail : "configuration document", -EINVAL;
    }
    return 0;
}

static libdm_dm_config *config_from(libdm_migration *m, const libdm_json *c,
                                    const char **ret_bad)
{
    libdm_dm_config *cfg = NULL;
    int64_t mem = 0, domid = 0;
    const char *machine = libdm__json_get_str(c, "machine");
    bool from_doc = false, own_machine = false, own_memory = false;

    if (config_from_doc(m, c, &cfg, ret_bad) < 0)
        return NULL;
    if (cfg) {
        /* The document's, unless the sender's --machine / --memory. */
        from_doc = true;
        own_machine = !libdm__mig_bool(c, "override_machine", &own_machine) || !own_machine;
        own_memory = !libdm__mig_bool(c, "override_memory", &own_memory) || !own_memory;
    } else if (libdm_dm_config_new(&cfg) < 0) {
        return *ret_bad = "(out of memory)", NULL;
    }
    if (libdm_dm_config_set_name(cfg, m->name) < 0)
        *ret_bad = "name";
    else if (!from_doc && set_profile_name(cfg, libdm__json_get_str(c, "profile")) < 0)
        *ret_bad = "profile";
    else if (!own_machine && (!machine || libdm_dm_config_set_machine(cfg, machine) < 0))
        *ret_bad = "machine";
    else if (!own_memory &&
             (libdm_json_get_int(libdm_json_object_get(c, "memory"), &mem) < 0 || mem <= 0 ||
              libdm_dm_config_set_memory_mb(cfg, (uint64_t)mem) < 0))
        *ret_bad = "memory";
    else if (libdm_json_get_int(libdm_json_object_get(c, "domid"), &domid) < 0 ||
             domid < 0 || domid > UINT32_MAX ||
             (domid && libdm_dm_config_set_domid(cfg, (uint32_t)domid) < 0))
        *ret_bad = "domid";
    else if (confine_from(m, c, cfg, ret_bad) < 0)
        ;
    else if (m->qemu && libdm_dm_config_set_qemu_path(cfg, m->qemu) < 0)
        *ret_bad = "--qemu";
    else if (libdm_dm_config_set_timeout_ms(cfg, m->timeout_ms) < 0)
        *ret_bad = "--timeout";
    else
        return cfg;
    return libdm_dm_config_free(cfg);
}

/* ---- Prepare ---- */

static int unix_listen_uri(libdm_migration *m)
{
    const char *dir = libdm_ctx_get_run_dir(m->ctx);
    struct sockaddr_un sun;

    if (!dir)
        return -ENOENT;
    /* This receiver's own path (its pid): a receiver refused because the
     * name is taken never unlinks the socket of the one that holds it
     * (issue 22, 9). A stale one of this path is of a dead process. */
    m->sock_path = libdm__sprintf("%s/%s-incoming.%ld.sock", dir, m->name, (long)getpid());
    if (!m->sock_path)
        return -ENOMEM;
    if (strlen(m->sock_path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    (void)unlink(m->sock_path);
    m->uri = libdm__sprintf("unix:%s", m->sock_path);
    return m->uri ? 0 : -ENOMEM;
}

static void send_prepared(libdm_migration *m)
{
    const char *conf = libdm_dm_get_confinement(m->dm);
    libdm_json *o = libdm__mig_msg("prepared");
    int r;

    o = libdm__mig_check(o, o && libdm__mig_add_str(o, "uri", m->uri));
    o = libdm__mig_check(o, o && libdm__mig_add_str(o, "confinement", conf ? conf : "none"));
    {
        libdm__mig_mark mk = { .role = "destination" };

        libdm__mig_mark_set_dm(&mk, m->dm);

        if (m->peer_id && strlen(m->peer_id) < sizeof(mk.id))
            memcpy(mk.id, m->peer_id, strlen(m->peer_id) + 1);
        (void)libdm__mig_mark_write(m->ctx, m->name, &mk);
    }
    libdm__mig_notify(m, "prepared");
    /* Before a byte leaves: the sender's wait starts after it. */
    m->obey_until = libdm_now_ms() + 2 * (uint64_t)m->peer_timeout_ms -
                    libdm__mig_obey_margin_ms(m->peer_timeout_ms);
    r = libdm__mchan_send(m->ch, o);
    if (r == 0)
        r = libdm__mig_recv(m, m->obey_until);
    m->stage = STAGE_PERFORM;
    if (r < 0)
        stop_dst(m, THEN_ERROR, r, "prepare failed: %s", libdm__mchan_strerror(r));
}

/* The first "inet" entry of query-migrate's "socket-address" (QEMU 7.2:
 * [{"type": "inet", "host": "::1", "port": "40593", "ipv6": true}, ...]). */
static const libdm_json *first_inet(const libdm_json *v, size_t *ret_count)
{
    const libdm_json *list = libdm_json_object_get(v, "socket-address"), *first = NULL;
    size_t n = libdm_json_get_type(list) == LIBDM_JSON_ARRAY ? libdm_json_length(list) : 0;

    *ret_count = 0;
    for (size_t i = 0; i < n; i++) {
        const libdm_json *e = libdm_json_array_get(list, i);
        const char *type = libdm__json_get_str(e, "type");

        if (type && !strcmp(type, "inet")) {
            if (!first)
                first = e;
            ++*ret_count;
        }
    }
    return first;
}

/* QEMU binds port 0 itself ("tcp:HOST:0"): the port it got, from
 * query-migrate (nothing is bound and closed again, so no other process can
 * take the port before QEMU listens). A name that resolved to several
 * addresses gets a socket each: then the first address QEMU reports. */
static void on_bound(libdm_qmp *q, const libdm_qmp_reply *rep, void *user)
{
    libdm_migration *m = user;
    const libdm_json *e;
    const char *port, *host;
    size_t count = 0;
    int64_t p = 0;
    char *uri = NULL, *end = NULL;

    (void)q;
    m->slot = NULL;      /* freed by the connection after this callback */
    if (libdm__mig_put(m))
        return;
    e = rep->status == 0 ? first_inet(rep->value, &count) : NULL;
    port = libdm__json_get_str(e, "port");
    host = libdm__json_get_str(e, "host");
    if (port)
        p = strtoll(port, &end, 10);
    if (rep->status == 0 && port && end && !*end && p > 0 && p <= 65535 &&
        !(count > 1 && !host))
        uri = libdm__mig_tcp_uri(count > 1 ? host : m->tcp_host, port);
    if (!uri) {
        stop_dst(m, THEN_ERROR, rep->status < 0 ? rep->status : -EPROTO,
                 "cannot learn the port QEMU listens on (query-migrate): %s",
                 rep->status == 0 ? "no inet socket-address in the reply"
                                  : strerror(-rep->status));
        return;
    }
    free(m->uri);
    m->uri = uri;
    send_prepared(m);
}

/* ---- the fd transport of a restricted destination (issue 22, 3) ---- */

static void on_finish_msg(libdm_migration *m, libdm_json *msg, int err);

/* QEMU took the stream (or not). Not a pending call of the receiver's (a
 * message read meanwhile would be dropped): a released DM never calls back.
 * A "finish" that came first waited for this. */
static void on_incoming_fd(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    libdm_json *msg = m->finish_msg;

    (void)dm;
    m->fd_busy = false;
    m->finish_msg = NULL;
    if (status < 0) {
        libdm_json_free(msg);
        if (status != -ECANCELED && m->stage == STAGE_PERFORM && !m->pending)
            stop_dst(m, THEN_ERROR, status, "the destination did not take the stream "
                     "(getfd, migrate-incoming fd:): %s", strerror(-status));
    } else if (msg) {
        on_finish_msg(m, msg, 0);
    }
}

static void stop_listening(libdm_migration *m)
{
    if (m->listen_watch)
        libdm__watch_del(m->listen_watch);
    m->listen_watch = NULL;
    libdm__close(&m->listen_fd);
}

/* The sender's one connection: it goes to QEMU, the listener closes. No
 * wait of its own: the sender's next message (or its deadline) bounds it. */
static void accept_stream(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm_migration *m = user;
    int s, r;

    (void)ctx;
    (void)revents;
    s = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED))
        return;
    stop_listening(m);
    r = s < 0 ? -errno : 0;
    if (r == 0) {
        r = libdm_migrate_incoming_fd_async(m->dm, s, m->timeout_ms, on_incoming_fd, m);
        libdm__close(&s);       /* the operation holds its own copy */
        m->fd_busy = r == 0;
    }
    if (r < 0)
        stop_dst(m, THEN_ERROR, r, "cannot hand the stream to the destination: %s",
                 strerror(-r));
}

static int listen_for_stream(libdm_migration *m)
{
    char *uri = NULL;
    int r = libdm__mig_listen(m->uri, &m->listen_fd, &uri);

    if (r < 0)
        return r;
    free(m->uri);
    m->uri = uri;
    return libdm__watch_add(m->ctx, m->listen_fd, POLLIN, accept_stream, m, &m->listen_watch);
}

static void on_prepare(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    libdm_qmp *q;
    int r;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0) {
        recv_fail(m, "prepare", status, "%s", cause(m, status));
        return;
    }
    if (!m->tcp_host || m->fd_transport) {
        send_prepared(m);
        return;
    }
    q = libdm_dm_get_qmp(m->dm);
    libdm__mig_hold(m);
    r = q ? libdm_qmp_call_async(q, "query-migrate", NULL, m->timeout_ms, on_bound, m, NULL)
          : -ENOTCONN;
    if (r < 0) {
        m->pending--;
        stop_dst(m, THEN_ERROR, r, "cannot learn the port QEMU listens on (query-migrate): %s",
                 strerror(-r));
    }
}

/* Reads "prepare" (@msg, consumed) and starts the destination. */
static void prepare(libdm_migration *m, libdm_json *msg)
{
    libdm_dm_config *cfg = NULL;
    const char *bad = NULL, *name = m->name_opt ? m->name_opt : libdm__json_get_str(msg, "name");
    int r;

    if (strcmp(libdm__mig_phase(msg), "prepare") || !name) {
        libdm_json_free(msg);
        recv_fail(m, "prepare", -EPROTO, "expected a prepare line with a name");
        return;
    }
    m->name = strdup(name);
    if (libdm__mig_peer_version(msg) < 0) {
        libdm_json_free(msg);
        recv_fail(m, "prepare", -EPROTO, "unknown protocol version (this receiver speaks 1 "
                  "to %d)", LIBDM_MIGRATE_PROTO_VERSION);
        return;
    }
    if (libdm__json_get_str(msg, "id"))
        m->peer_id = strdup(libdm__json_get_str(msg, "id"));
    if (libdm_json_get_int(libdm_json_object_get(msg, "timeout_ms"), &m->peer_timeout_ms) < 0 ||
        m->peer_timeout_ms <= 0 || m->peer_timeout_ms > LIBDM__MIG_PEER_MAX_TIMEOUT_MS)
        m->peer_timeout_ms = m->timeout_ms;
    cfg = m->name ? config_from(m, libdm_json_object_get(msg, "config"), &bad) : NULL;
    libdm_json_free(msg);
    if (!cfg) {
        recv_fail(m, "prepare", -EINVAL, "invalid %s in the prepare line", bad ? bad : "name");
        return;
    }
    r = m->tcp_host ? ((m->uri = libdm__mig_tcp_uri(m->tcp_host, "0")) ? 0 : -ENOMEM)
                    : unix_listen_uri(m);
    if (r >= 0 && m->fd_transport)
        r = listen_for_stream(m);
    /* A host name: libdm does not resolve on its loop, nor can QEMU in its
     * chroot (no resolver files there). */
    if (r == -EDESTADDRREQ && m->fd_transport && m->tcp_host) {
        libdm_dm_config_free(cfg);
        recv_fail(m, "prepare", r, "a restricted destination listens on a numeric address "
                  "or localhost (--listen tcp:%s: a host name)", m->tcp_host);
        return;
    }
    if (r < 0) {
        libdm_dm_config_free(cfg);
        recv_fail(m, "prepare", r, "cannot choose a listening address (%s): %s",
                  m->tcp_host ? "tcp" : "unix", strerror(-r));
        return;
    }
    m->stage = STAGE_PREPARE;
    libdm__mig_hold(m);
    r = libdm_migrate_prepare_async(m->ctx, cfg, m->fd_transport ? "defer" : m->uri,
                                    on_prepare, m, &m->dm);
    libdm_dm_config_free(cfg);
    if (r < 0) {
        m->pending--;
        recv_fail(m, "prepare", r, "%s", cause(m, r));
    }
}

/* ---- Finish ---- */

/* After Finish: does the store record the destination as it is? NULL if
 * so, else why not (a store that failed, or stalled past its deadline,
 * after cont: the DM runs, its record says otherwise). */
static char *record_mismatch(libdm_migration *m)
{
    const char *want = libdm_dm_state_to_string(libdm_dm_get_state(m->dm));
    char *state = NULL, *why = NULL;
    /* Its own record only: a listing of the store would cost the loop one
     * read per DM of the host. */
    int r = libdm__dm_recorded_state(m->dm, &state);

    if (r == -ENOENT)
        return strdup("no record of it");
    if (r < 0)
        return libdm__sprintf("cannot read the store: %s", strerror(-r));
    if (!state || strcmp(state, want))
        why = libdm__sprintf("it is %s, its record says %s", want, state ? state : "nothing");
    free(state);
    return why;
}

static void answer_finished(libdm_migration *m);

static void on_final_status(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    const char *rs;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    rs = status >= 0 ? libdm_dm_get_runstate(m->dm) : NULL;
    m->runstate = strdup(rs ? rs : "?");
    answer_finished(m);
}

/* A stalled store writer delays the answer (issue 22): while the DM's
 * record write after cont waits for another writer's lock (retried on the
 * loop, bounded), the receiver waits too, so that its answer says what the
 * record says; it never answers early with a record that will change. */
static void on_record_settle(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    (void)ctx;
    (void)t;
    answer_finished(user);
}

static void answer_finished(libdm_migration *m)
{
    libdm_json *o;

    if (libdm__dm_record_pending(m->dm)) {
        libdm__timer_init(&m->step, on_record_settle, m);
        if (libdm__timer_arm(m->ctx, &m->step, libdm_now_ms() + 2) >= 0)
            return;
    }
    m->record_error = record_mismatch(m);
    o = libdm__mig_msg("finished");
    o = libdm__mig_check(o, o && libdm__mig_add_str(o, "runstate", m->runstate ? m->runstate
                                                                               : "?"));
    if (m->record_error)
        o = libdm__mig_check(o, o && libdm__mig_add_str(o, "record_error", m->record_error));
    m->outcome = LIBDM_MIGRATE_OUTCOME_MIGRATED;
    libdm__mig_notify(m, "finished");
    /* The migration is done whether or not the sender still listens; the
     * mark stays until the sender says it has the answer ("confirmed"):
     * until then it may report the outcome unknown, and a recovery on this
     * host must know this side is the destination. */
    m->stage = STAGE_DONE;
    if (libdm__mchan_send(m->ch, o) < 0 ||
        libdm__mig_recv(m, libdm__mig_deadline_in(m->timeout_ms)) < 0)
        libdm__mig_end(m, 0);
}

static void on_finish(libdm_dm *dm, int status, void *user)
{
    libdm_migration *m = user;
    int r;

    (void)dm;
    if (libdm__mig_put(m))
        return;
    if (status < 0) {
        /* Refused or failed: the destination goes. */
        stop_dst(m, THEN_ABORTED, status, "%s", cause(m, status));
        return;
    }
    libdm__mig_hold(m);
    r = libdm_dm_query_status_async(m->dm, m->timeout_ms, on_final_status, m);
    if (r < 0) {
        m->pending--;
        libdm__mig_hold(m);
        on_final_status(m->dm, r, m);
    }
}

/* The sender's word in "finish": "source", else (older senders) "success". */
static int finish_source(const libdm_json *msg, libdm_migrate_source *ret)
{
    bool success;

    if (strcmp(libdm__mig_phase(msg), "finish"))
        return -EPROTO;
    if (libdm_migrate_source_from_string(libdm__json_get_str(msg, "source"), ret) == 0)
        return 0;
    if (!libdm__mig_bool(msg, "success", &success))
        return -EPROTO;
    *ret = success ? LIBDM_MIGRATE_SOURCE_COMPLETED : LIBDM_MIGRATE_SOURCE_KEEPS;
    return 0;
}

/* "finish" (@msg, consumed) or the wait's failure @err: decides by the
 * table (migrate.h, dmctl(1)). */
static void on_finish_msg(libdm_migration *m, libdm_json *msg, int err)
{
    libdm_migrate_source source = LIBDM_MIGRATE_SOURCE_UNKNOWN;
    bool keep = false;
    const char *id;
    uint64_t now;
    int r = err, left;

    if (r == 0 && m->fd_busy) {     /* after migrate-incoming answered */
        libdm_json_free(m->finish_msg);
        m->finish_msg = msg;
        return;
    }
    if (r == 0)
        r = finish_source(msg, &source);
    if (r == 0)
        (void)libdm__mig_bool(msg, "keep_paused", &keep);
    id = r == 0 ? libdm__json_get_str(msg, "id") : NULL;
    if (r == 0 && m->peer_id && (!id || strcmp(id, m->peer_id)))
        r = -EBADMSG;   /* not this migration's finish */
    libdm_json_free(msg);
    if (r == -EBADMSG) {
        stop_dst(m, THEN_ERROR, -EPROTO, "a finish of another migration (id)");
        return;
    }
    if (r < 0) {
        stop_dst(m, THEN_ERROR, r, "%s", libdm__mchan_strerror(r));
        return;
    }
    now = libdm_now_ms();
    if (now >= m->obey_until && source != LIBDM_MIGRATE_SOURCE_KEEPS) {
        /* Read after this side's deadline (a frozen host): the sender has
         * given up or is about to, and its source may run already. The
         * destination never runs on it (issue 22, 6). */
        stop_dst(m, THEN_ABORTED, -ETIMEDOUT, "the finish came after the receiver's "
                 "deadline: not obeyed");
        return;
    }
    if (source == LIBDM_MIGRATE_SOURCE_KEEPS || source == LIBDM_MIGRATE_SOURCE_UNKNOWN) {
        stop_dst(m, THEN_ABORTED, -ECANCELED, "migration aborted by the sender (source: "
                 "%s); destination stopped", libdm_migrate_source_to_string(source));
        return;
    }
    left = (int)(m->obey_until - now);
    m->stage = STAGE_CONFIRM;
    libdm__mig_hold(m);
    r = libdm_migrate_finish_async(m->dm, source, keep, left < m->timeout_ms ? left
                                   : m->timeout_ms, on_finish, m);
    if (r < 0) {
        m->pending--;
        stop_dst(m, THEN_ABORTED, r, "%s", cause(m, r));
    }
}

/* ---- the channel and the deadline ---- */

static int libdm__mig_recv_start(libdm_migration *m)
{
    m->stage = STAGE_BEGIN;
    return libdm__mig_recv(m, libdm__mig_deadline_in(m->timeout_ms));
}

static void libdm__mig_recv_on_msg(libdm__mchan *ch, libdm_json *msg, int err, void *user)
{
    libdm_migration *m = user;

    (void)ch;
    if (m->ending || m->pending) {
        libdm_json_free(msg);   /* a failure is seen when a wait is armed */
        return;
    }
    libdm__timer_disarm(m->ctx, &m->deadline);
    if (m->stage == STAGE_BEGIN && err < 0) {
        recv_fail(m, "prepare", err, "%s", libdm__mchan_strerror(err));
    } else if (m->stage == STAGE_BEGIN) {
        if (!strcmp(libdm__mig_phase(msg), "query")) {
            m->stage = STAGE_ANSWERED;
            libdm__mig_query(m, msg);
        } else {
            prepare(m, msg);
        }
    } else if (m->stage == STAGE_PERFORM) {
        on_finish_msg(m, msg, err);
    } else if (m->stage == STAGE_DONE) {
        if (msg && !strcmp(libdm__mig_phase(msg), "confirmed"))
            libdm__mig_mark_clear(m->ctx, m->name);   /* the sender knows */
        libdm_json_free(msg);
        libdm__mig_end(m, 0);
    } else {
        libdm_json_free(msg);
    }
}

static void libdm__mig_recv_on_deadline(libdm_migration *m)
{
    libdm__mig_recv_on_msg(m->ch, NULL, -ETIMEDOUT, m);
}

static void libdm__mig_recv_cleanup(libdm_migration *m)
{
    stop_listening(m);
    if (m->sock_path)
        (void)unlink(m->sock_path);
}

static void on_abandon_stopped(libdm_dm *dm, int status, void *user)
{
    (void)dm;
    (void)status;
    (void)libdm__mig_put(user);
}

static void libdm__mig_recv_abandon(libdm_migration *m)
{
    if (!m->dm || m->outcome == LIBDM_MIGRATE_OUTCOME_MIGRATED ||
        libdm_dm_get_state(m->dm) == LIBDM_DM_DEAD)
        return;
    libdm__mig_hold(m);
    if (libdm_dm_stop_async(m->dm, 1, m->timeout_ms, on_abandon_stopped, m) < 0)
        m->pending--;
}

static const libdm__mig_ops recv_ops = {
    .start = libdm__mig_recv_start,
    .on_msg = libdm__mig_recv_on_msg,
    .on_deadline = libdm__mig_recv_on_deadline,
    .abandon = libdm__mig_recv_abandon,
    .cleanup = libdm__mig_recv_cleanup,
};

int libdm_migration_new_receive(libdm_ctx *ctx, libdm_migration **ret)
{
    return libdm__mig_new(ctx, ROLE_RECEIVE, &recv_ops, ret);
}
