/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl migrate-receive: the receiving end of the protocol (see
 * dmctl-migrate.c and dmctl(1), PROTOCOL OF MIGRATE).
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

/* ============================ migrate-receive =========================== */

typedef struct receiver {
    dmctl *d;
    const char *name_opt;    /* --name */
    const char *listen;      /* --listen: "unix" or "tcp:HOST" */
    char *tcp_host;          /* tcp: HOST without brackets */
    bool tcp_v6;             /* tcp: HOST is an IPv6 literal */
    const char *qemu;        /* --qemu */
    chan ch;
    char *name;
    char *uri;
    char *sock_path;         /* unix: the listening socket, removed at the end */
    libdm_dm *dst;
    int64_t peer_timeout_ms;
    char *id;                /* the migration's, from "prepare" (version 2) */
    uint64_t started_at;     /* this process's start */
    uint64_t obey_until;     /* a finish or query is obeyed only before */
    uint64_t obey_until_real; /* a query: the sender's wall-clock bound */
} receiver;

static const struct option receive_opts_table[] = {
    { "name", required_argument, NULL, OPT_NAME },
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "qemu", required_argument, NULL, OPT_QEMU },
    { NULL, 0, NULL, 0 },
};

static int receive_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                         receiver *rc)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, argc, argv, receive_opts_table, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        if (c == OPT_NAME)
            rc->name_opt = optarg;
        else if (c == OPT_LISTEN)
            rc->listen = optarg;
        else if (c == OPT_QEMU)
            rc->qemu = optarg;
        else
            return dmctl_usage_error(cmd, "unknown option");
    }
    if (argc - optind > 0)
        return dmctl_usage_error(cmd, "too many arguments");
    if (!strcmp(rc->listen, "unix"))
        return 0;
    if (!strncmp(rc->listen, "tcp:", 4))
        rc->tcp_host = dmctl_parse_tcp_host(rc->listen + 4, &rc->tcp_v6);
    if (!rc->tcp_host && errno == ENOMEM)
        return dmctl_usage_error(cmd, "--listen: %s", strerror(ENOMEM));
    if (!rc->tcp_host)
        return dmctl_usage_error(cmd, "invalid --listen value '%s' (unix or tcp:HOST; HOST a "
                                 "host name, an IPv4 address or [IPv6])", rc->listen);
    return 0;
}

/* Takes stdin/stdout as the channel; fds 0 and 1 become /dev/null and
 * stderr so that nothing else (libdm's children included) ever writes a
 * byte to the channel or holds it open. */
static int take_stdio(chan *ch)
{
    int in = fcntl(0, F_DUPFD_CLOEXEC, 3);
    int out = fcntl(1, F_DUPFD_CLOEXEC, 3);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (in < 0 || out < 0 || null < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0) {
        int e = errno;

        if (in >= 0)
            close(in);
        if (out >= 0)
            close(out);
        if (null >= 0)
            close(null);
        return -e;
    }
    close(null);
    chan_init(ch, in, out);
    return 0;
}

/* A human message on stderr and, best effort, {"phase":"error"} on the
 * channel. Returns the exit status for @err. */
static int receive_fail(receiver *rc, const char *phase, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int receive_fail(receiver *rc, const char *phase, int err, const char *fmt, ...)
{
    libdm_json *o = msg_new("error");
    char *text = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    dmctl_error(rc->name ? rc->name : "migrate-receive", "%s failed: %s", phase,
                text ? text : strerror(-err));
    if (o && dmctl_json_add_str(o, "message", text ? text : strerror(-err)))
        (void)chan_send(&rc->ch, o, deadline_in(1000));
    else
        libdm_json_free(o);
    free(text);
    return dmctl_exit_for(err);
}

/* libdm's reason for @err: the DM's last error, a held message, strerror. */
static char *libdm_cause(receiver *rc, int err)
{
    const char *dmerr = rc->dst ? libdm_dm_last_error(rc->dst) : NULL;
    char *held = dmctl_logger_take_error(rc->d->lg, NULL);

    if (dmerr) {
        free(held);
        return strdup(dmerr);
    }
    return held ? held : strdup(err == -ETIMEDOUT ? "timed out (see --timeout)"
                                                  : strerror(-err));
}

static int receive_fail_libdm(receiver *rc, const char *phase, int err)
{
    char *why = libdm_cause(rc, err);
    int ex = receive_fail(rc, phase, err, "%s", why ? why : strerror(-err));

    free(why);
    return ex;
}

static int set_profile_name(libdm_dm_config *cfg, const char *p)
{
    if (p && !strcmp(p, "plain"))
        return libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_PLAIN);
    if (p && !strcmp(p, "xen"))
        return libdm_dm_config_set_profile(cfg, LIBDM_PROFILE_XEN);
    return -EINVAL;
}

/* "restrict" and "runas" of "prepare": a restricted source gives a
 * restricted destination, or none at all (issue 22, 2). Its QEMU is
 * chrooted: the unix socket in the run directory is out of its reach, so
 * that transport is refused before anything runs (use --listen tcp:HOST). */
static int confine_from(receiver *rc, const libdm_json *c, libdm_dm_config *cfg,
                        const char **ret_bad)
{
    const char *runas = msg_str(c, "runas");
    bool restricted = false;

    if (!msg_bool(c, "restrict", &restricted) || !restricted)
        return 0;
    if (!rc->tcp_host)
        return *ret_bad = "restrict (a restricted destination needs --listen tcp:HOST: "
                          "its chroot cannot reach a unix socket)", -EINVAL;
    if (libdm_dm_config_set_restrict(cfg, 1) < 0)
        return *ret_bad = "restrict", -EINVAL;
    if (runas && libdm_dm_config_set_runas(cfg, runas) < 0)
        return *ret_bad = "runas", -EINVAL;
    return 0;
}

/* The destination's configuration from "prepare"; NULL and *ret_bad naming
 * the bad member if invalid. */
/* The source's configuration document (issue 22, 1), when it sent one:
 * the destination starts with exactly that. 0 (*ret_cfg NULL: none), or
 * -EINVAL with *ret_bad saying why; nothing has run. */
static int config_from_doc(const libdm_json *c, libdm_dm_config **ret_cfg, const char **ret_bad)
{
    static char why[300];
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
        snprintf(why, sizeof(why), "configuration document (%s)", reason);
        return *ret_bad = why, -EINVAL;
    }
    return 0;
}

static libdm_dm_config *config_from(receiver *rc, const libdm_json *c, const char **ret_bad)
{
    libdm_dm_config *cfg = NULL;
    int64_t mem = 0, domid = 0;
    const char *machine = msg_str(c, "machine");
    bool from_doc = false, own_machine = false, own_memory = false;

    if (config_from_doc(c, &cfg, ret_bad) < 0)
        return NULL;
    if (cfg) {
        /* The document's, unless the sender's --machine / --memory. */
        from_doc = true;
        own_machine = !msg_bool(c, "override_machine", &own_machine) || !own_machine;
        own_memory = !msg_bool(c, "override_memory", &own_memory) || !own_memory;
    } else if (libdm_dm_config_new(&cfg) < 0)
        return *ret_bad = "(out of memory)", NULL;
    if (libdm_dm_config_set_name(cfg, rc->name) < 0)
        *ret_bad = "name";
    else if (!from_doc && set_profile_name(cfg, msg_str(c, "profile")) < 0)
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
    else if (confine_from(rc, c, cfg, ret_bad) < 0)
        ;
    else if (rc->qemu && libdm_dm_config_set_qemu_path(cfg, rc->qemu) < 0)
        *ret_bad = "--qemu";
    else if (libdm_dm_config_set_timeout_ms(cfg, rc->d->timeout_ms) < 0)
        *ret_bad = "--timeout";
    else
        return cfg;
    return libdm_dm_config_free(cfg);
}

/* Reads "prepare" (@msg, consumed): the name and the configuration. 0 or
 * an exit status. */
static int receive_prepare_msg(receiver *rc, libdm_json *msg, libdm_dm_config **ret_cfg)
{
    const char *bad = NULL, *name;

    name = rc->name_opt ? rc->name_opt : msg_str(msg, "name");
    if (strcmp(msg_phase(msg), "prepare") || !name) {
        libdm_json_free(msg);
        return receive_fail(rc, "prepare", -EPROTO, "expected a prepare line with a name");
    }
    rc->name = strdup(name);
    if (peer_version(msg) < 0) {
        libdm_json_free(msg);
        return receive_fail(rc, "prepare", -EPROTO, "unknown protocol version (this "
                            "receiver speaks 1 to %d)", MIG_PROTO_VERSION);
    }
    if (msg_str(msg, "id"))
        rc->id = strdup(msg_str(msg, "id"));
    if (libdm_json_get_int(libdm_json_object_get(msg, "timeout_ms"), &rc->peer_timeout_ms) < 0 ||
        rc->peer_timeout_ms <= 0 || rc->peer_timeout_ms > PEER_MAX_TIMEOUT_MS)
        rc->peer_timeout_ms = rc->d->timeout_ms;
    *ret_cfg = rc->name ? config_from(rc, libdm_json_object_get(msg, "config"), &bad) : NULL;
    libdm_json_free(msg);
    if (!*ret_cfg)
        return receive_fail(rc, "prepare", -EINVAL, "invalid %s in the prepare line",
                            bad ? bad : "name");
    return 0;
}

static int unix_listen_uri(receiver *rc)
{
    const char *dir = libdm_ctx_get_run_dir(rc->d->ctx);
    struct sockaddr_un sun;

    if (!dir)
        return -ENOENT;
    /* This receiver's own path (its pid): a receiver refused because the
     * name is taken never unlinks the socket of the one that holds it
     * (issue 22, 9). A stale one of this path is of a dead process. */
    if (asprintf(&rc->sock_path, "%s/%s-incoming.%ld.sock", dir, rc->name,
                 (long)getpid()) < 0) {
        rc->sock_path = NULL;
        return -ENOMEM;
    }
    if (strlen(rc->sock_path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    (void)unlink(rc->sock_path);
    return asprintf(&rc->uri, "unix:%s", rc->sock_path) < 0 ? -ENOMEM : 0;
}

/* QEMU binds port 0 itself ("tcp:HOST:0"); the port it got is read back
 * with query-migrate (see tcp_bound_uri): nothing is bound and closed
 * again, so no other process can take the port before QEMU listens. */
static int tcp_listen_uri(receiver *rc)
{
    rc->uri = dmctl_tcp_uri(rc->tcp_host, rc->tcp_v6, "0");
    return rc->uri ? 0 : -ENOMEM;
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
        const char *type = libdm_json_get_string(libdm_json_object_get(e, "type"));

        if (type && !strcmp(type, "inet")) {
            if (!first)
                first = e;
            ++*ret_count;
        }
    }
    return first;
}

/* Replaces rc->uri ("tcp:HOST:0") by "tcp:HOST:PORT" with the port QEMU
 * bound. A name that resolved to several addresses gets a socket (and a
 * port) each: then the first address QEMU reports is used, numerically. */
static int tcp_bound_uri(receiver *rc)
{
    libdm_json *v = NULL;
    const libdm_json *e;
    const char *port, *host;
    uint64_t p;
    size_t count;
    char *uri;
    int r = libdm_qmp_call(libdm_dm_get_qmp(rc->dst), "query-migrate", NULL,
                           rc->d->timeout_ms, &v);

    if (r < 0)
        return r;
    e = first_inet(v, &count);
    port = libdm_json_get_string(libdm_json_object_get(e, "port"));
    host = libdm_json_get_string(libdm_json_object_get(e, "host"));
    if (!port || !dmctl_parse_u64(port, 65535, &p) || p == 0 || (count > 1 && !host)) {
        libdm_json_free(v);
        return -EPROTO;
    }
    if (count > 1)
        uri = dmctl_tcp_uri(host, strchr(host, ':') != NULL, port);
    else
        uri = dmctl_tcp_uri(rc->tcp_host, rc->tcp_v6, port);
    libdm_json_free(v);
    if (!uri)
        return -ENOMEM;
    free(rc->uri);
    rc->uri = uri;
    return 0;
}

static int receive_prepare(receiver *rc, libdm_json *msg)
{
    libdm_dm_config *cfg = NULL;
    int ex = receive_prepare_msg(rc, msg, &cfg), r;

    if (ex)
        return ex;
    ex = dmctl_open_ctx(rc->d);
    r = ex ? -EIO : rc->tcp_host ? tcp_listen_uri(rc) : unix_listen_uri(rc);
    if (r < 0) {
        libdm_dm_config_free(cfg);
        return receive_fail(rc, "prepare", r, "cannot choose a listening address (%s): %s",
                            rc->listen, strerror(-r));
    }
    r = libdm_migrate_prepare(rc->d->ctx, cfg, rc->uri, &rc->dst);
    libdm_dm_config_free(cfg);
    if (r < 0)
        return receive_fail_libdm(rc, "prepare", r);
    r = rc->tcp_host ? tcp_bound_uri(rc) : 0;
    if (r < 0)
        return receive_fail(rc, "prepare", r, "cannot learn the port QEMU listens on "
                            "(query-migrate): %s", r == -EPROTO ? "no inet socket-address "
                            "in the reply" : strerror(-r));
    fprintf(stderr, "dmctl: %s: prepared, listening on %s\n", rc->name, rc->uri);
    return 0;
}

static int send_prepared(receiver *rc)
{
    libdm_json *o = msg_new("prepared");
    int r;

    const char *conf = libdm_dm_get_confinement(rc->dst);

    o = msg_check(o, o && dmctl_json_add_str(o, "uri", rc->uri));
    o = msg_check(o, o && dmctl_json_add_int(o, "version", MIG_PROTO_VERSION));
    o = msg_check(o, o && dmctl_json_add_str(o, "confinement", conf ? conf : "none"));
    /* Before a byte leaves: the sender's wait starts after it. */
    rc->obey_until = libdm_now_ms() + 2 * (uint64_t)rc->peer_timeout_ms -
                     obey_margin_ms(rc->peer_timeout_ms);
    r = chan_send(&rc->ch, o, deadline_in(rc->d->timeout_ms));
    if (r < 0)
        dmctl_error(rc->name, "prepare failed: %s", chan_strerror(r));
    return r < 0 ? dmctl_exit_for(r) : 0;
}

/* Stops the destination (at once: it does not run this guest); false if
 * it may still be alive. */
static bool stop_dst(receiver *rc)
{
    if (rc->dst && libdm_dm_stop(rc->dst, 1, rc->d->timeout_ms) < 0) {
        dmctl_report_dm(rc->d, rc->dst, rc->name, "stopping the destination", -EIO);
        return false;
    }
    return true;
}

/* Finish refused or failed: the destination goes; "aborted" only once it is
 * dead (else "error": the sender must not resume its source). */
static int receive_refused(receiver *rc, int err)
{
    char *why = libdm_cause(rc, err);
    libdm_json *o;
    int ex;

    if (!stop_dst(rc))
        return receive_fail(rc, "finish", err, "%s; the destination could not be stopped",
                            why ? why : strerror(-err));
    dmctl_logger_discard(rc->d->lg);
    dmctl_error(rc->name, "finish: %s; destination stopped", why ? why : strerror(-err));
    o = msg_new("aborted");
    o = msg_check(o, o && dmctl_json_add_str(o, "message", why ? why : strerror(-err)));
    (void)chan_send(&rc->ch, o, deadline_in(rc->d->timeout_ms));
    ex = dmctl_exit_for(err);
    free(why);
    return ex;
}

/* After Finish: does the store record the destination as it is? NULL if
 * so, else why not (a store that failed, or stalled past its deadline,
 * after cont: the DM runs, its record says otherwise). */
static char *record_mismatch(receiver *rc)
{
    const char *want = libdm_dm_state_to_string(libdm_dm_get_state(rc->dst));
    libdm_dm_info *infos = NULL;
    size_t n = 0, i;
    char *why = NULL;
    int r = libdm_dm_list(rc->d->ctx, &infos, &n);

    if (r < 0) {
        if (asprintf(&why, "cannot read the store: %s", strerror(-r)) < 0)
            why = NULL;
        return why;
    }
    for (i = 0; i < n && strcmp(infos[i].name, rc->name); i++)
        ;
    if (i == n) {
        why = strdup("no record of it");
    } else if (!infos[i].state || strcmp(infos[i].state, want)) {
        if (asprintf(&why, "it is %s, its record says %s", want,
                     infos[i].state ? infos[i].state : "nothing") < 0)
            why = NULL;
    }
    libdm_dm_info_free(infos, n);
    return why;
}

static int receive_success(receiver *rc, libdm_migrate_source source, bool keep_paused)
{
    char *stale;
    libdm_json *o;
    char *rs = NULL;
    uint64_t now = libdm_now_ms();
    int left = rc->obey_until > now ? (int)(rc->obey_until - now) : 1;
    int r = libdm_migrate_finish_from(rc->dst, source, keep_paused,
                                      left < rc->d->timeout_ms ? left : rc->d->timeout_ms);

    if (r < 0)
        return receive_refused(rc, r);
    if (libdm_dm_query_status(rc->dst, rc->d->timeout_ms, &rs) < 0)
        dmctl_logger_discard(rc->d->lg);
    stale = record_mismatch(rc);
    o = msg_new("finished");
    o = msg_check(o, o && dmctl_json_add_str(o, "runstate", rs ? rs : "?"));
    if (stale)
        o = msg_check(o, o && dmctl_json_add_str(o, "record_error", stale));
    r = chan_send(&rc->ch, o, deadline_in(rc->d->timeout_ms));
    fprintf(stderr, "dmctl: %s: migration finished (runstate %s)\n", rc->name,
            rs ? rs : "?");
    if (stale)
        dmctl_error(rc->name, "the destination runs, but its record could not be "
                    "updated: %s", stale);
    free(rs);
    free(stale);
    /* The migration is done whether or not the sender still listens. */
    return stale ? DMCTL_EXIT_FAIL : 0;
}

static int receive_abort(receiver *rc, libdm_migrate_source source)
{
    if (!stop_dst(rc))
        return receive_fail(rc, "finish", -EIO, "the destination could not be stopped");
    dmctl_logger_discard(rc->d->lg);   /* e.g. QEMU quit after the cancel */
    (void)chan_send(&rc->ch, msg_new("aborted"), deadline_in(rc->d->timeout_ms));
    dmctl_error(rc->name, "migration aborted by the sender (source: %s); destination stopped",
                libdm_migrate_source_to_string(source));
    return DMCTL_EXIT_FAIL;
}

/* The sender's word in "finish": "source", else (older senders) "success". */
static int finish_source(const libdm_json *msg, libdm_migrate_source *ret)
{
    bool success;

    if (strcmp(msg_phase(msg), "finish"))
        return -EPROTO;
    if (libdm_migrate_source_from_string(msg_str(msg, "source"), ret) == 0)
        return 0;
    if (!msg_bool(msg, "success", &success))
        return -EPROTO;
    *ret = success ? LIBDM_MIGRATE_SOURCE_COMPLETED : LIBDM_MIGRATE_SOURCE_KEEPS;
    return 0;
}

/* Waits for "finish" (the sender's Perform may take its whole deadline),
 * then decides by the table in the file header. */
static int receive_finish(receiver *rc)
{
    libdm_migrate_source source = LIBDM_MIGRATE_SOURCE_UNKNOWN;
    libdm_json *msg = NULL;
    bool keep = false;
    const char *id;
    int r = chan_recv(&rc->ch, rc->obey_until, &msg), ex;

    if (r == 0)
        r = finish_source(msg, &source);
    if (r == 0)
        (void)msg_bool(msg, "keep_paused", &keep);
    id = r == 0 ? msg_str(msg, "id") : NULL;
    if (r == 0 && rc->id && (!id || strcmp(id, rc->id)))
        r = -EBADMSG;   /* not this migration's finish */
    libdm_json_free(msg);
    if (r == -EBADMSG) {
        ex = receive_fail(rc, "finish", -EPROTO, "a finish of another migration (id)");
        stop_dst(rc);
        return ex;
    }
    if (r < 0) {
        ex = receive_fail(rc, "finish", r, "%s", chan_strerror(r));
        stop_dst(rc);
        return ex;
    }
    if (libdm_now_ms() >= rc->obey_until && source != LIBDM_MIGRATE_SOURCE_KEEPS) {
        /* Read after this side's deadline (a frozen host): the sender has
         * given up or is about to, and its source may run already. The
         * destination never runs on it (issue 22, 6). */
        dmctl_error(rc->name, "the finish came after the receiver's deadline: not obeyed");
        return receive_abort(rc, LIBDM_MIGRATE_SOURCE_UNKNOWN);
    }
    if (source == LIBDM_MIGRATE_SOURCE_KEEPS || source == LIBDM_MIGRATE_SOURCE_UNKNOWN)
        return receive_abort(rc, source);
    return receive_success(rc, source, keep);
}

/* ---- migrate-recover: the destination's side ---- */

static int send_state(receiver *rc, const char *guest, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int send_state(receiver *rc, const char *guest, const char *fmt, ...)
{
    libdm_json *o = msg_new("state");
    char *text = NULL;
    va_list ap;
    bool ok;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    ok = o && dmctl_json_add_str(o, "guest", guest);
    ok = ok && dmctl_json_add_str(o, "message", text ? text : guest);
    fprintf(stderr, "dmctl: %s: recover: the destination: %s (%s)\n", rc->name, guest,
            text ? text : "");
    free(text);
    return chan_send(&rc->ch, msg_check(o, ok), deadline_in(rc->d->timeout_ms)) < 0
               ? DMCTL_EXIT_FAIL : 0;
}

/* The incoming migration's status on the attached destination, or NULL. */
static char *incoming_status(receiver *rc)
{
    libdm_json *v = NULL;
    const char *st;
    char *ret = NULL;

    if (libdm_qmp_call(libdm_dm_get_qmp(rc->dst), "query-migrate", NULL, rc->d->timeout_ms,
                       &v) == 0) {
        st = libdm_json_get_string(libdm_json_object_get(v, "status"));
        ret = strdup(st ? st : "none");
    }
    libdm_json_free(v);
    return ret;
}

/* Whether a query may still act (resume): before its wall-clock bound and
 * within the sender's timeout of this process's start. */
static bool query_in_time(const receiver *rc)
{
    if (rc->obey_until_real && realtime_ms() >= rc->obey_until_real)
        return false;
    return !rc->obey_until || libdm_now_ms() < rc->obey_until;
}

/* An attached, answering destination: what does it have? */
static int answer_attached(receiver *rc, bool resume)
{
    char *rs = NULL, *st = NULL;
    int ex;

    if (libdm_dm_query_status(rc->dst, rc->d->timeout_ms, &rs) < 0 || !(st = incoming_status(rc)))
        ex = send_state(rc, "busy", "its monitor does not answer");
    else if (!strcmp(rs, "postmigrate"))
        /* An outgoing migration's source: --recover was run on the wrong
         * host (issue 22, 8). Its "completed" is not an incoming one. */
        ex = send_state(rc, "wrong-side", "this host's %s is the migration's source "
                        "(runstate postmigrate): run --recover on the source's host, with "
                        "--to reaching this one", rc->name);
    else if (!strcmp(rs, "running"))
        ex = send_state(rc, "running", "it runs the guest");
    else if (!strcmp(st, "completed") && resume && !query_in_time(rc))
        ex = send_state(rc, "busy", "the query came after its deadline: not resumed "
                        "(its incoming migration completed; runstate %s)", rs);
    else if (!strcmp(st, "completed") && resume && libdm_dm_resume(rc->dst, rc->d->timeout_ms) == 0)
        ex = send_state(rc, "running", "its incoming migration had completed; resumed now");
    else if (!strcmp(st, "completed"))
        ex = send_state(rc, "paused", "its incoming migration completed; runstate %s", rs);
    else if (!strcmp(rs, "inmigrate") || !strcmp(st, "failed") || !strcmp(st, "active"))
        ex = stop_dst(rc) ? send_state(rc, "absent", "its incoming migration never "
                                       "completed (%s); stopped now", st)
                          : send_state(rc, "busy", "an incomplete destination that could "
                                       "not be stopped");
    else
        ex = send_state(rc, "busy", "runstate %s, migration status %s: not a migrated guest",
                        rs, st);
    free(rs);
    free(st);
    return ex;
}

static int receive_query(receiver *rc, libdm_json *msg)
{
    const char *name = rc->name_opt ? rc->name_opt : msg_str(msg, "name");
    bool resume = true;
    int64_t v;
    int ex, r;

    (void)msg_bool(msg, "resume", &resume);
    if (peer_version(msg) < 0) {
        libdm_json_free(msg);
        return receive_fail(rc, "recover", -EPROTO, "unknown protocol version (this "
                            "receiver speaks 1 to %d)", MIG_PROTO_VERSION);
    }
    if (libdm_json_get_int(libdm_json_object_get(msg, "not_after_ms"), &v) == 0 && v > 0)
        rc->obey_until_real = (uint64_t)v;
    if (libdm_json_get_int(libdm_json_object_get(msg, "timeout_ms"), &v) == 0 && v > 0 &&
        v <= PEER_MAX_TIMEOUT_MS)
        rc->obey_until = rc->started_at + (uint64_t)v - obey_margin_ms(v);
    rc->name = name ? strdup(name) : NULL;
    libdm_json_free(msg);
    if (!rc->name)
        return receive_fail(rc, "recover", -EPROTO, "expected a query line with a name");
    ex = dmctl_open_ctx(rc->d);
    if (ex)
        return receive_fail(rc, "recover", -EIO, "cannot open the store");
    r = libdm_dm_attach_timeout(rc->d->ctx, rc->name, rc->d->timeout_ms, &rc->dst);
    dmctl_logger_discard(rc->d->lg);
    if (r == -ENOENT || r == -ESRCH)
        return send_state(rc, "absent", "no live device model called %s", rc->name);
    if (r < 0)
        return send_state(rc, "busy", "cannot attach: %s", strerror(-r));
    if (libdm_dm_get_state(rc->dst) == LIBDM_DM_BROKEN)
        return send_state(rc, "busy", "its monitor is held (a receiver still works on it?)");
    return answer_attached(rc, resume);
}

/* The first line: "prepare" (a migration) or "query" (migrate-recover). */
static int receive_first(receiver *rc)
{
    libdm_json *msg = NULL;
    int r = chan_recv(&rc->ch, deadline_in(rc->d->timeout_ms), &msg), ex;

    if (r < 0)
        return receive_fail(rc, "prepare", r, "%s", chan_strerror(r));
    if (!strcmp(msg_phase(msg), "query"))
        return receive_query(rc, msg);
    ex = receive_prepare(rc, msg);
    if (!ex)
        ex = send_prepared(rc);
    if (ex)
        stop_dst(rc);
    else
        ex = receive_finish(rc);
    return ex;
}

int dmctl_cmd_migrate_receive(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate-receive");
    receiver rc = { .d = d, .listen = "unix", .started_at = libdm_now_ms() };
    int ex = receive_parse(d, cmd, argc, argv, &rc), r;

    if (ex)
        return ex;
    r = take_stdio(&rc.ch);
    if (r < 0) {
        dmctl_error("migrate-receive", "cannot take stdin/stdout: %s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    signal(SIGPIPE, SIG_IGN);
    ex = receive_first(&rc);
    if (rc.sock_path)
        (void)unlink(rc.sock_path);
    libdm_dm_release(rc.dst);
    chan_close(&rc.ch);
    free(rc.name);
    free(rc.id);
    free(rc.uri);
    free(rc.tcp_host);
    free(rc.sock_path);
    return ex;
}
