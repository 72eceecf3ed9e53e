/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl: the commands migrate and migrate-receive, in the manner of
 * xl migrate. The sender runs a shell command (e.g. "ssh host dmctl
 * migrate-receive") whose stdin and stdout are its control channel; the two
 * sides drive libdm's migration phases in lockstep over that channel, one
 * JSON object per line (at most 64 KiB each):
 *
 *   sender                                   receiver
 *   Begin
 *   {"phase":"prepare","name":..,"config":{..},"timeout_ms":..}  ->
 *                                            Prepare (autokill armed)
 *                          <-  {"phase":"prepared","uri":..} | {"phase":"error",..}
 *   Perform (hook at pre-switchover, in its own process group)
 *   {"phase":"finish","source":S,"success":B,"keep_paused":B}  ->
 *                                            Finish by the table below, or
 *                                            stop the destination
 *          <-  {"phase":"finished","runstate":..[,"record_error":..]}
 *              | {"phase":"aborted"} | error
 *   Confirm
 *
 * S is what the sender knows of its source once Perform is over
 * (libdm_migrate_source_state()): "completed" (paused in postmigrate),
 * "gone" (its QEMU exited), "keeps" (failed or cancelled: the source has the
 * guest) or "unknown". B is S == "completed", for older receivers.
 *
 * Decision table (the receiver; libdm_migrate_finish_from() codes it):
 *
 *   S          destination's incoming   receiver                 answers
 *   completed  completed                cont (unless keep_paused) finished
 *   completed  failed, dead, too late   stops the destination     aborted
 *   gone       completed                cont (unless keep_paused) finished
 *   gone       failed, dead, too late   stops the destination     aborted (guest lost
 *                                                                 with the source QEMU)
 *   keeps      (not asked)              stops the destination     aborted
 *   unknown    (not asked)              stops the destination     aborted
 *   no finish (channel closed or deadline)  stops the destination (autokill)
 *   "aborted" is sent only once the destination is dead; a destination that
 *   could not be stopped is answered with "error".
 *
 * The sender, by S and the answer:
 *
 *   S          answer                    sender                         exit
 *   completed  finished                  stops the source               0
 *   completed  aborted                   resumes the source             1
 *   completed  error, none, closed,      source stays paused:           4
 *              deadline                  "outcome unknown" naming
 *                                        migrate --recover
 *   gone       finished                  (source already gone)          0
 *   gone       aborted                   guest lost with the source     1
 *   gone       anything else             outcome unknown                4
 *   keeps      any                       source runs (QEMU resumed it)  1
 *   unknown    aborted                   source untouched: recover with 4
 *                                        --destination-gone
 *   unknown    anything else             outcome unknown                4
 *
 * A finish is never sent once the sender knows the channel is gone (the
 * destination cannot run without one, and stops): the source is resumed.
 * So once a finish that may let the destination run may have left, the
 * source is never resumed on the sender's own; exactly one side is resumed
 * by "migrate --recover", which asks the destination through the same
 * transport:
 *
 *   {"phase":"query","name":NAME,"resume":B}  ->
 *          <-  {"phase":"state","guest":"running"|"paused"|"absent"|"busy",..}
 *
 * "absent": no DM of that name, or one whose incoming migration never
 * completed (stopped now); "running"/"paused": it has the guest (a paused
 * one with a completed incoming migration is resumed when B); "busy": its
 * monitor is held (a receiver still works on it) or its state is ambiguous.
 *
 * Every wait on the channel is a poll() bounded by the --timeout deadline.
 * The receiver needs no cleanup when the sender dies: until Finish its
 * destination DM is under autokill.
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

/* ================================ migrate =============================== */





static const struct option migrate_opts_table[] = {
    { "to", required_argument, NULL, OPT_TO },
    { "live", no_argument, NULL, OPT_LIVE },
    { "pause-before-switchover", no_argument, NULL, OPT_PAUSE_BEFORE_SWITCHOVER },
    { "switchover-hook", required_argument, NULL, OPT_SWITCHOVER_HOOK },
    { "keep-paused", no_argument, NULL, OPT_KEEP_PAUSED },
    { "uri-host", required_argument, NULL, OPT_URI_HOST },
    { "machine", required_argument, NULL, OPT_MACHINE },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "recover", no_argument, NULL, OPT_RECOVER },
    { "destination-gone", no_argument, NULL, OPT_DESTINATION_GONE },
    { NULL, 0, NULL, 0 },
};

/* Records the first failure: @phase, @err and (if @fmt) dmctl's cause. */
int fail(migration *m, const char *phase, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int fail(migration *m, const char *phase, int err, const char *fmt, ...)
{
    va_list ap;

    if (m->failed_in)
        return err;
    m->failed_in = phase;
    m->err = err;
    va_start(ap, fmt);
    if (vasprintf(&m->why, fmt, ap) < 0)
        m->why = NULL;
    va_end(ap);
    return err;
}

/* The receiver went away (its exit status is worth a note). */
int fail_peer_lost(migration *m)
{
    m->peer_lost = true;
    return fail(m, "perform", -ECANCELED, "%s", chan_strerror(-ECONNRESET));
}

/* A failure whose cause libdm logged (or strerror). */
int fail_err(migration *m, const char *phase, int err)
{
    if (!m->failed_in) {
        m->failed_in = phase;
        m->err = err;
    }
    return err;
}

static int migrate_option(const dmctl_command *cmd, migrate_opts *o, int c, const char *arg)
{
    switch (c) {
    case OPT_TO:
        o->to = arg;
        return 0;
    case OPT_LIVE:
        return 0;   /* precopy is always live */
    case OPT_PAUSE_BEFORE_SWITCHOVER:
        o->pause_before_switchover = true;
        return 0;
    case OPT_SWITCHOVER_HOOK:
        o->hook = arg;
        return 0;
    case OPT_KEEP_PAUSED:
        o->keep_paused = true;
        return 0;
    case OPT_URI_HOST: {
        bool v6;
        char *host = dmctl_parse_tcp_host(arg, &v6);

        if (!host && errno == ENOMEM)
            return dmctl_usage_error(cmd, "--uri-host: %s", strerror(ENOMEM));
        free(host);
        o->uri_host = arg;
        return host ? 0 : dmctl_usage_error(cmd, "invalid --uri-host value '%s' (a host name, "
                                            "an IPv4 address or [IPv6])", arg);
    }
    case OPT_MACHINE:
        o->machine = arg;
        return arg[0] ? 0 : dmctl_usage_error(cmd, "invalid --machine value ''");
    case OPT_MEMORY:
        if (!dmctl_parse_u64(arg, UINT32_MAX, &o->memory_mb) || o->memory_mb == 0)
            return dmctl_usage_error(cmd, "invalid --memory value '%s' (MiB)", arg);
        return 0;
    case OPT_RECOVER:
        o->recover = true;
        return 0;
    case OPT_DESTINATION_GONE:
        o->destination_gone = true;
        return 0;
    default:
        return dmctl_usage_error(cmd, "unknown option '%s'", arg ? arg : "");
    }
}

int migrate_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
                         migrate_opts *o)
{
    int c, ex = 0;

    while ((c = dmctl_getopt(d, cmd, argc, argv, migrate_opts_table, &ex)) != -1) {
        if (c == DMCTL_OPT_STOP)
            return ex;
        ex = migrate_option(cmd, o, c, optarg);
        if (ex)
            return ex;
    }
    if (argc - optind < 1)
        return dmctl_usage_error(cmd, "missing NAME");
    if (argc - optind > 1)
        return dmctl_usage_error(cmd, "too many arguments");
    o->name = argv[optind];
    if (o->destination_gone && !o->recover)
        return dmctl_usage_error(cmd, "--destination-gone needs --recover");
    if (o->recover && o->destination_gone && o->to)
        return dmctl_usage_error(cmd, "--destination-gone and --to exclude each other");
    if ((!o->to || !o->to[0]) && !o->destination_gone)
        return dmctl_usage_error(cmd, "missing --to 'SHELL-COMMAND'");
    return 0;
}

/* Runs --to with its stdin and stdout as the control channel. */
int spawn_peer(migration *m)
{
    int down[2], up[2];   /* down: dmctl -> peer; up: peer -> dmctl */

    if (pipe2(down, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(up, O_CLOEXEC) < 0) {
        close(down[0]);
        close(down[1]);
        return -errno;
    }
    fflush(NULL);
    m->peer = fork();
    if (m->peer == 0) {
        if (dup2(down[0], 0) < 0 || dup2(up[1], 1) < 0)
            _exit(127);
        exec_shell(m->o.to);
    }
    close(down[0]);
    close(up[1]);
    if (m->peer < 0) {
        close(down[1]);
        close(up[0]);
        return -errno;
    }
    chan_init(&m->ch, up[0], down[1]);
    return 0;
}

/* The sender's side of a failed exchange: the receiver said "error" or the
 * channel failed. */
static int fail_exchange(migration *m, const char *phase, int err, const libdm_json *reply)
{
    const char *msg = reply ? msg_str(reply, "message") : NULL;

    if (reply && !strcmp(msg_phase(reply), "error"))
        return fail(m, phase, -EIO, "the receiver: %s", msg ? msg : "(no message)");
    if (reply)
        return fail(m, phase, -EPROTO, "the receiver answered '%s'", msg_phase(reply));
    m->peer_lost = true;
    return fail(m, phase, err, "%s", chan_strerror(err));
}

/* Sends @msg, then receives the reply; it must be of @want phase. */
int exchange(migration *m, const char *phase, libdm_json *msg, const char *want,
                    uint64_t deadline, libdm_json **ret)
{
    libdm_json *reply = NULL;
    int r = chan_send(&m->ch, msg, deadline);

    if (r == 0)
        r = chan_recv(&m->ch, deadline, &reply);
    if (r == 0 && !strcmp(msg_phase(reply), want)) {
        *ret = reply;
        return 0;
    }
    r = fail_exchange(m, phase, r, reply);
    libdm_json_free(reply);
    return r;
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

static libdm_json *prepare_msg(migration *m)
{
    char runas[32];
    const char *profile = libdm_dm_get_profile(m->src);
    libdm_json *cfg = libdm_json_new_object();
    libdm_json *o = msg_new("prepare");
    bool ok = o && cfg;

    ok = ok && dmctl_json_add_str(cfg, "profile", profile ? profile : "plain");
    /* The destination must look like the source: the recorded machine and
     * memory, unless overridden (records from before they were kept: pc/64). */
    const char *machine = m->o.machine ? m->o.machine : libdm_dm_get_machine(m->src);
    uint64_t memory = m->o.memory_mb ? m->o.memory_mb : libdm_dm_get_memory_mb(m->src);

    ok = ok && dmctl_json_add_str(cfg, "machine", machine ? machine : "pc");
    ok = ok && dmctl_json_add_int(cfg, "memory", (int64_t)(memory ? memory : 64));
    ok = ok && dmctl_json_add_int(cfg, "domid", libdm_dm_get_domid(m->src));
    /* A restricted source gives a restricted destination, as the same user
     * (issue 22, 2); libdm makes the destination's own chroot. */
    if (ok && source_runas(m->src, runas, sizeof(runas))) {
        ok = dmctl_json_add_bool(cfg, "restrict", true);
        ok = ok && dmctl_json_add_str(cfg, "runas", runas);
    }
    /* The whole DM (issue 22, 1): the document it was started with, which
     * the receiver starts the destination from, --machine / --memory on top. */
    if (ok && m->doc) {
        ok = libdm_json_object_add(cfg, "doc", m->doc) >= 0;
        m->doc = NULL;
        if (ok && m->o.machine)
            ok = dmctl_json_add_bool(cfg, "override_machine", true);
        if (ok && m->o.memory_mb)
            ok = dmctl_json_add_bool(cfg, "override_memory", true);
    }
    ok = ok && dmctl_json_add_str(o, "name", m->o.name);
    ok = ok && dmctl_json_add_int(o, "version", MIG_PROTO_VERSION);
    ok = ok && dmctl_json_add_str(o, "id", m->id);
    if (ok) {
        ok = libdm_json_object_add(o, "config", cfg) >= 0;
        cfg = NULL;
    }
    ok = ok && dmctl_json_add_int(o, "timeout_ms", m->d->timeout_ms);
    libdm_json_free(cfg);
    return msg_check(o, ok);
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

/* "tcp:HOST:PORT" with HOST replaced by --uri-host (bracketed when IPv6);
 * other URIs unchanged. */
static char *apply_uri_host(const char *uri, const char *uri_host)
{
    const char *port = tcp_uri_port(uri);
    char *host, *out;
    bool v6;

    if (!port)
        return strdup(uri);
    host = dmctl_parse_tcp_host(uri_host, &v6);   /* checked when parsed */
    out = host ? dmctl_tcp_uri(host, v6, port) : NULL;
    free(host);
    return out;
}


static int do_prepare(migration *m, char **ret_uri)
{
    libdm_json *reply = NULL;
    const char *uri, *conf;
    char runas[32];
    int r = exchange(m, "prepare", prepare_msg(m), "prepared",
                     deadline_in(m->d->timeout_ms), &reply);

    if (r < 0)
        return r;
    m->prepared_at = libdm_now_ms();
    uri = msg_str(reply, "uri");
    if (peer_version(reply) < 0)
        r = fail(m, "prepare", -EPROTO, "the receiver speaks an unknown protocol version");
    else if (source_runas(m->src, runas, sizeof(runas)) &&
             (!(conf = msg_str(reply, "confinement")) || strncmp(conf, "uid ", 4)))
        r = fail(m, "prepare", -EPERM, "the source is restricted but the receiver did not "
                 "confine the destination (%s): refused", conf ? conf : "an older receiver?");
    else if (!uri || !uri[0])
        r = fail(m, "prepare", -EPROTO, "the receiver sent no URI");
    else if (!(*ret_uri = m->o.uri_host ? apply_uri_host(uri, m->o.uri_host) : strdup(uri)))
        r = fail_err(m, "prepare", -ENOMEM);
    libdm_json_free(reply);
    return r;
}

/* ---- finish and confirm ---- */

static libdm_json *finish_msg(const char *id, libdm_migrate_source source, bool keep_paused)
{
    libdm_json *o = msg_new("finish");
    bool ok = o && dmctl_json_add_str(o, "source", libdm_migrate_source_to_string(source));

    ok = ok && dmctl_json_add_str(o, "id", id);
    ok = ok && dmctl_json_add_int(o, "epoch", 1);

    ok = ok && dmctl_json_add_bool(o, "success", source == LIBDM_MIGRATE_SOURCE_COMPLETED);
    ok = ok && dmctl_json_add_bool(o, "keep_paused", keep_paused);
    return msg_check(o, ok);
}

/* Whether a finish saying @source may let the destination run the guest. */
bool finish_may_run(libdm_migrate_source source)
{
    return source == LIBDM_MIGRATE_SOURCE_COMPLETED || source == LIBDM_MIGRATE_SOURCE_GONE;
}

/* The receiver's answer to "finish". */
typedef enum answer {
    ANSWER_FINISHED,         /* the destination has the guest */
    ANSWER_ABORTED,          /* the destination is dead */
    ANSWER_NONE,             /* error line, nothing, closed, deadline: unknown */
} answer;

static answer read_answer(migration *m, const libdm_json *reply, char **ret_why)
{
    const char *phase = msg_phase(reply), *msg = msg_str(reply, "message");

    if (!strcmp(phase, "finished")) {
        msg = msg_str(reply, "runstate");
        m->runstate = strdup(msg ? msg : "?");
        msg = msg_str(reply, "record_error");
        m->record_error = msg ? strdup(msg) : NULL;
        return ANSWER_FINISHED;
    }
    if (!strcmp(phase, "aborted")) {
        *ret_why = strdup(msg ? msg : "the destination was stopped");
        return ANSWER_ABORTED;
    }
    if (asprintf(ret_why, "the receiver answered '%s'%s%s", phase, msg ? ": " : "",
                 msg ? msg : "") < 0)
        *ret_why = NULL;
    return ANSWER_NONE;
}

/* Sends "finish" with the source's word and reads the answer. */
static answer send_finish(migration *m, char **ret_why)
{
    /* The receiver obeys a finish until 2 x timeout (less a margin) after
     * it sent "prepared": the answer is awaited at least that long, so no
     * finish is obeyed after this side gave up (issue 22, 6). */
    uint64_t deadline = m->prepared_at + 2 * (uint64_t)(m->d->timeout_ms > 0 ? m->d->timeout_ms : 0);
    libdm_json *reply = NULL;
    answer a = ANSWER_NONE;
    int r;

    if (finish_may_run(m->source))
        m->stage = STAGE_FINISH_SENT;   /* before a single byte leaves */
    r = chan_send(&m->ch, finish_msg(m->id, m->source, m->o.keep_paused), deadline);
    if (r == 0)
        r = chan_recv(&m->ch, deadline, &reply);
    if (r < 0)
        *ret_why = strdup(chan_strerror(r));
    else
        a = read_answer(m, reply, ret_why);
    if (a != ANSWER_NONE)
        m->stage = STAGE_ANSWERED;
    libdm_json_free(reply);
    return a;
}

/* The outcome by the sender's table (file header) for an answer @a. */
static sender_outcome outcome_for(libdm_migrate_source source, answer a)
{
    switch (source) {
    case LIBDM_MIGRATE_SOURCE_COMPLETED:
        return a == ANSWER_FINISHED ? OUTCOME_MIGRATED
               : a == ANSWER_ABORTED ? OUTCOME_FAILED : OUTCOME_UNKNOWN;
    case LIBDM_MIGRATE_SOURCE_GONE:
        return a == ANSWER_FINISHED ? OUTCOME_MIGRATED
               : a == ANSWER_ABORTED ? OUTCOME_LOST : OUTCOME_UNKNOWN;
    case LIBDM_MIGRATE_SOURCE_KEEPS:
        return OUTCOME_FAILED;
    case LIBDM_MIGRATE_SOURCE_UNKNOWN:
    default:
        return OUTCOME_UNKNOWN;
    }
}

/* Finish after Perform: with the channel gone no finish is sent (the
 * destination cannot run without one), as if it had answered "aborted". */
static void finish_phase(migration *m)
{
    char *why = NULL;
    answer a = ANSWER_ABORTED;

    if (m->ch.out >= 0 && !chan_peer_gone(&m->ch))
        a = send_finish(m, &why);
    else
        why = strdup(chan_strerror(-ECONNRESET));
    m->outcome = outcome_for(m->source, a);
    if (m->outcome == OUTCOME_FAILED && m->source == LIBDM_MIGRATE_SOURCE_COMPLETED)
        fail(m, "finish", -EIO, "%s; the source runs again", why ? why : "aborted");
    else if (m->outcome == OUTCOME_UNKNOWN)
        fail(m, "finish", -EIO, "%s", why ? why : "no answer");   /* or the first cause */
    if (m->outcome == OUTCOME_UNKNOWN) {
        m->unknown_why = why;
        why = NULL;
    }
    free(why);
}

/* Success: stop the source; failure: it runs again (or stays paused);
 * unknown: the source is not touched. */
void do_confirm(migration *m)
{
    int r;

    if (m->outcome == OUTCOME_UNKNOWN)
        return;
    r = libdm_migrate_confirm(m->src, m->outcome != OUTCOME_FAILED, m->d->timeout_ms);
    if (r >= 0 || (m->outcome == OUTCOME_LOST && libdm_dm_get_state(m->src) == LIBDM_DM_DEAD))
        return;
    m->confirm_failed = true;
    dmctl_report_dm(m->d, m->src, m->o.name, m->outcome == OUTCOME_MIGRATED
                    ? "migrated, but stopping the source failed"
                    : "confirm: the source may be left paused", r);
}

/* Closes the channel (EOF to the receiver) and reaps the --to command. */
void reap_peer(migration *m)
{
    int status = 0;
    char buf[64];

    chan_close(&m->ch);
    if (m->peer <= 0)
        return;
    if (wait_child(m->peer, deadline_in(m->d->timeout_ms), &status) == -ETIMEDOUT)
        dmctl_error(m->o.name, "the --to command did not exit; killed");
    else if (status != 0 && (m->peer_lost || !m->failed_in))
        dmctl_error(m->o.name, "note: the --to command %s",
                    dmctl_describe_wait(status, buf, sizeof(buf)));
    m->peer = -1;
}

/* The migration's identity: 128 random bits in hex. */
static void make_id(char id[33])
{
    unsigned char b[16] = { 0 };
    size_t i;

    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t t = libdm_now_ms() ^ ((uint64_t)getpid() << 32);

        memcpy(b, &t, sizeof(t));
    }
    for (i = 0; i < sizeof(b); i++)
        snprintf(id + 2 * i, 3, "%02x", b[i]);
}

/* The document the source was started with (issue 22, 1). None (a DM
 * started before libdm kept it): the old prepare, name, machine, memory and
 * confinement only. One that cannot be read whole: refused, nothing runs. */
static int load_doc(migration *m)
{
    char *text = NULL, why[256];
    libdm_dm_config *check = NULL;
    int r = libdm_dm_get_config_doc(m->src, &text);

    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return fail(m, "begin", r, "cannot read the source's configuration document: %s",
                    strerror(-r));
    /* What this side cannot read, the other cannot honour either. */
    r = libdm_dm_config_from_doc(text, strlen(text), &check, why, sizeof(why));
    libdm_dm_config_free(check);
    if (r < 0) {
        free(text);
        return fail(m, "begin", r, "the source's configuration document: %s", why);
    }
    r = libdm_json_parse(text, strlen(text), &m->doc);
    free(text);
    return r < 0 ? fail_err(m, "begin", r) : 0;
}

/* Begin, Prepare, Perform, Finish; sets m->outcome. */
void migrate_phases(migration *m)
{
    char *uri = NULL;
    int r;

    m->outcome = OUTCOME_FAILED;
    m->stage = STAGE_BEGIN;
    r = load_doc(m);
    if (r < 0)
        return;
    r = libdm_migrate_begin(m->src, m->d->timeout_ms);
    if (r < 0) {
        fail_err(m, "begin", r);
        return;
    }
    make_id(m->id);
    m->stage = STAGE_PREPARE;
    r = spawn_peer(m);
    if (r < 0) {
        fail(m, "prepare", r, "cannot run the --to command: %s", strerror(-r));
        return;
    }
    r = do_prepare(m, &uri);
    m->doc = libdm_json_free(m->doc);
    m->prepared = r == 0;
    if (r < 0)
        return;
    m->stage = STAGE_PERFORM;
    r = do_perform(m, uri);
    free(uri);
    /* "completed" is final in QEMU: no second look on the downtime path. */
    m->source = r == 0 ? LIBDM_MIGRATE_SOURCE_COMPLETED
                       : libdm_migrate_source_state(m->src, m->d->timeout_ms);
    too_late_to_cancel = finish_may_run(m->source);
    finish_phase(m);
}

/* "outcome unknown": the source stays paused; says how to recover. */
static int report_unknown(migration *m)
{
    dmctl_logger_discard(m->d->lg);
    if (m->source == LIBDM_MIGRATE_SOURCE_UNKNOWN && m->stage != STAGE_FINISH_SENT) {
        dmctl_error(m->o.name, "outcome unknown: the source's migration state cannot be "
                    "read (%s); the destination does not run the guest. Recover with: "
                    "dmctl migrate %s --recover --destination-gone",
                    m->why ? m->why : "see above", m->o.name);
        return DMCTL_EXIT_UNKNOWN;
    }
    dmctl_error(m->o.name, "outcome unknown: %s after the finish was sent; the %s. "
                "Resume exactly one side with: dmctl migrate %s --recover --to '%s'",
                m->unknown_why ? m->unknown_why : m->why ? m->why : "no answer",
                m->source == LIBDM_MIGRATE_SOURCE_GONE
                    ? "source QEMU is gone; the destination may run the guest"
                    : "source stays paused (the destination may run the guest)",
                m->o.name, m->o.to);
    return DMCTL_EXIT_UNKNOWN;
}

static int report_migrated(migration *m)
{
    libdm_json *o;
    bool ok;

    dmctl_logger_discard(m->d->lg);   /* e.g. the failure that preceded GONE */
    if (m->source == LIBDM_MIGRATE_SOURCE_GONE)
        dmctl_error(m->o.name, "note: the source QEMU exited; the destination had the "
                    "whole guest and runs it");
    if (m->record_error) {
        /* The guest moved, but the destination's host does not record it
         * truthfully: not a success to report as one (issue 22, 14). */
        dmctl_error(m->o.name, "migrated (destination runstate: %s), but the destination's "
                    "record could not be updated: %s", m->runstate, m->record_error);
        return DMCTL_EXIT_FAIL;
    }
    if (!m->d->json) {
        printf("%s: migrated (destination runstate: %s)\n", m->o.name, m->runstate);
        return 0;
    }
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "event", "migrated");
    ok = ok && dmctl_json_add_str(o, "name", m->o.name);
    ok = ok && dmctl_json_add_str(o, "runstate", m->runstate);
    return dmctl_json_emit(msg_check(o, ok));
}

int migrate_report(migration *m)
{
    char op[64];

    if (m->outcome == OUTCOME_UNKNOWN)
        return report_unknown(m);
    if (m->outcome == OUTCOME_MIGRATED)
        return m->confirm_failed ? DMCTL_EXIT_FAIL : report_migrated(m);
    if (m->outcome == OUTCOME_LOST) {
        dmctl_logger_discard(m->d->lg);
        dmctl_error(m->o.name, "migration failed: the source QEMU died before the "
                    "destination had the whole guest: the guest is lost");
        return DMCTL_EXIT_FAIL;
    }
    if (!m->failed_in && m->confirm_failed)
        return DMCTL_EXIT_FAIL;
    if (m->failed_in && m->why) {
        dmctl_logger_discard(m->d->lg);
        dmctl_error(m->o.name, "migration failed in %s: %s", m->failed_in, m->why);
        return dmctl_exit_for(m->err);
    }
    snprintf(op, sizeof(op), "migration failed in %s", m->failed_in ? m->failed_in : "finish");
    return dmctl_report_dm(m->d, m->src, m->o.name, op, m->err ? m->err : -EIO);
}
