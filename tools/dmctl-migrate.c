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

#include "dmctl.h"

enum {
    OPT_TO = 0x3000,
    OPT_LIVE,
    OPT_PAUSE_BEFORE_SWITCHOVER,
    OPT_SWITCHOVER_HOOK,
    OPT_KEEP_PAUSED,
    OPT_URI_HOST,
    OPT_MACHINE,
    OPT_MEMORY,
    OPT_NAME,
    OPT_LISTEN,
    OPT_QEMU,
    OPT_RECOVER,
    OPT_DESTINATION_GONE,
};

#define CHAN_MAX_LINE (64 * 1024)
/* The protocol's version: 1 had no "version" member (and is still
 * understood); 2 adds the migration's id, its epoch and the deadlines. A
 * side refuses a version it does not know. */
#define MIG_PROTO_VERSION 2
#define PROGRESS_PLAIN_MS 500
#define PEER_MAX_TIMEOUT_MS (24 * 3600 * 1000)

/* ============================ control channel =========================== */

typedef struct chan {
    int in, out;        /* -1: closed */
    char buf[CHAN_MAX_LINE + 1];
    size_t len;         /* bytes buffered, not yet consumed */
    bool eof;
} chan;

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = libdm_now_ms();

    if (now >= deadline)
        return 0;
    return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

static uint64_t deadline_in(int ms)
{
    return libdm_now_ms() + (uint64_t)(ms > 0 ? ms : 0);
}

/* What a receiver keeps back from the sender's deadline, so that it stops
 * obeying before the sender stops waiting (issue 22, 6). */
static uint64_t obey_margin_ms(int64_t timeout_ms)
{
    uint64_t m = (uint64_t)timeout_ms / 4;

    return m > 2000 ? 2000 : m;
}

static uint64_t realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Set once the source's migration completed (or its QEMU is gone): a
 * signal (^C, migrate-cancel) can no longer cancel anything, so the
 * channel's waits no longer end on one and the outcome decides the exit
 * status (issue 22, 11). */
static bool too_late_to_cancel;

/* Waits until @fd is ready for @events (or hung up); -ETIMEDOUT, -EINTR. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd p = { .fd = fd, .events = events };
    int r;

    for (;;) {
        r = poll(&p, 1, remaining_ms(deadline));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
        if (dmctl_signal_received() && !too_late_to_cancel)
            return -EINTR;
    }
}

static void chan_init(chan *ch, int in, int out)
{
    ch->in = in;
    ch->out = out;
    ch->len = 0;
    ch->eof = false;
}

static void chan_close_out(chan *ch)
{
    if (ch->out >= 0)
        close(ch->out);
    ch->out = -1;
}

static void chan_close(chan *ch)
{
    chan_close_out(ch);
    if (ch->in >= 0)
        close(ch->in);
    ch->in = -1;
}

/* One read() into the buffer; the fd must be readable (or hung up). */
static int chan_read_some(chan *ch)
{
    ssize_t n;

    if (ch->len >= sizeof(ch->buf))
        return -E2BIG;
    n = read(ch->in, ch->buf + ch->len, sizeof(ch->buf) - ch->len);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -errno;
    if (n == 0)
        ch->eof = true;
    ch->len += (size_t)n;
    return 0;
}

/* Without blocking: has the peer closed the channel (or broken it)? Data
 * that arrived meanwhile stays buffered for chan_recv(). */
static bool chan_peer_gone(chan *ch)
{
    struct pollfd p = { .fd = ch->in, .events = POLLIN };

    if (ch->eof || ch->in < 0)
        return true;
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (ch->len >= sizeof(ch->buf))
        return false;        /* a full buffer: chan_recv() reports it */
    return chan_read_some(ch) < 0 || ch->eof;
}

/* A line of the buffer as a JSON object with a string "phase". */
static int chan_parse(const char *line, size_t len, libdm_json **ret)
{
    libdm_json *v = NULL;
    int r = libdm_json_parse(line, len, &v);

    if (r < 0)
        return -EPROTO;
    if (libdm_json_get_type(v) != LIBDM_JSON_OBJECT ||
        !libdm_json_get_string(libdm_json_object_get(v, "phase"))) {
        libdm_json_free(v);
        return -EPROTO;
    }
    *ret = v;
    return 0;
}

/* Receives the next line: 0, -ECONNRESET (closed), -ETIMEDOUT, -E2BIG,
 * -EPROTO (not a protocol object), -EINTR or another negative errno. */
static int chan_recv(chan *ch, uint64_t deadline, libdm_json **ret)
{
    char *nl;
    size_t used;
    int r;

    for (;;) {
        nl = memchr(ch->buf, '\n', ch->len);
        if (nl) {
            used = (size_t)(nl - ch->buf) + 1;
            r = chan_parse(ch->buf, used - 1, ret);
            memmove(ch->buf, ch->buf + used, ch->len - used);
            ch->len -= used;
            return r;
        }
        if (ch->len >= sizeof(ch->buf))
            return -E2BIG;
        if (ch->eof)
            return -ECONNRESET;
        r = wait_fd(ch->in, POLLIN, deadline);
        if (r == 0)
            r = chan_read_some(ch);
        if (r < 0)
            return r;
    }
}

static int write_all(int fd, const char *p, size_t len, uint64_t deadline)
{
    ssize_t n;
    int r;

    while (len > 0) {
        r = wait_fd(fd, POLLOUT, deadline);
        if (r < 0)
            return r;
        n = write(fd, p, len);
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return errno == EPIPE ? -ECONNRESET : -errno;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

/* Sends @msg (consumed) as one line. */
static int chan_send(chan *ch, libdm_json *msg, uint64_t deadline)
{
    char *text = NULL;
    size_t len;
    int r = msg ? libdm_json_to_string(msg, 0, &text) : -ENOMEM;

    libdm_json_free(msg);
    if (r < 0)
        return r;
    if (ch->out < 0) {
        r = -ECONNRESET;
    } else if ((len = strlen(text)) >= CHAN_MAX_LINE) {
        r = -E2BIG;
    } else {
        text[len] = '\n';    /* replaces the NUL: written by length */
        r = write_all(ch->out, text, len + 1, deadline);
    }
    free(text);
    return r;
}

static const char *chan_strerror(int err)
{
    switch (err) {
    case -ECONNRESET:
        return "the control channel closed (the peer is gone)";
    case -ETIMEDOUT:
        return "no answer on the control channel before the deadline (see --timeout)";
    case -E2BIG:
        return "a control line longer than 64 KiB";
    case -EPROTO:
        return "a malformed control line (not a JSON object with a phase)";
    case -EINTR:
        return "interrupted";
    default:
        return strerror(-err);
    }
}

/* {"phase": PHASE} to add members to; NULL on allocation failure. */
static libdm_json *msg_new(const char *phase)
{
    libdm_json *o = libdm_json_new_object();

    if (o && !dmctl_json_add_str(o, "phase", phase))
        o = libdm_json_free(o);
    return o;
}

static libdm_json *msg_check(libdm_json *o, bool ok)
{
    return ok ? o : libdm_json_free(o);
}

static const char *msg_phase(const libdm_json *msg)
{
    return libdm_json_get_string(libdm_json_object_get(msg, "phase"));
}

static const char *msg_str(const libdm_json *msg, const char *key)
{
    return libdm_json_get_string(libdm_json_object_get(msg, key));
}

static bool msg_bool(const libdm_json *msg, const char *key, bool *ret)
{
    int b;

    if (libdm_json_get_bool(libdm_json_object_get(msg, key), &b) < 0)
        return false;
    *ret = b;
    return true;
}

/* ============================ child processes =========================== */

/* Waits for @pid until @deadline, then SIGKILLs it; -ETIMEDOUT then. */
static int wait_child(pid_t pid, uint64_t deadline, int *ret_status)
{
    const struct timespec tick = { 0, 10 * 1000 * 1000 };
    pid_t r;

    for (;;) {
        r = waitpid(pid, ret_status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        if (remaining_ms(deadline) == 0)
            break;
        nanosleep(&tick, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, ret_status, 0) < 0 && errno == EINTR)
        ;
    return -ETIMEDOUT;
}

/* In a forked child: default SIGPIPE, then /bin/sh -c @command. */
static void exec_shell(const char *command)
{
    signal(SIGPIPE, SIG_DFL);
    execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    _exit(127);
}

/* ================================ migrate =============================== */

typedef struct migrate_opts {
    const char *name;
    const char *to;
    const char *hook;
    const char *uri_host;
    const char *machine;
    uint64_t memory_mb;
    bool keep_paused;
    bool pause_before_switchover;
    bool recover;            /* migrate-recover */
    bool destination_gone;   /* migrate-recover --destination-gone */
} migrate_opts;

/* How far the sender got: from FINISH_SENT on (a finish that lets the
 * destination run may have left) the source is never resumed unless the
 * destination answered that it stopped. */
typedef enum sender_stage {
    STAGE_BEGIN,
    STAGE_PREPARE,
    STAGE_PERFORM,
    STAGE_FINISH_SENT,
    STAGE_ANSWERED,
} sender_stage;

/* The end of a migration as dmctl reports it. */
typedef enum sender_outcome {
    OUTCOME_MIGRATED,        /* the destination has the guest; the source went */
    OUTCOME_FAILED,          /* the source has the guest */
    OUTCOME_LOST,            /* the only QEMU holding it died */
    OUTCOME_UNKNOWN,         /* nobody knows here: the source stays paused */
} sender_outcome;

typedef struct migration {
    dmctl *d;
    migrate_opts o;
    libdm_dm *src;
    chan ch;
    pid_t peer;              /* the --to command, or -1 */
    uint64_t perform_deadline;
    sender_stage stage;
    sender_outcome outcome;
    libdm_migrate_source source;   /* the source's word after Perform */
    const char *failed_in;   /* the phase that failed, or NULL */
    int err;
    char *why;               /* dmctl's own cause, else libdm's */
    char *runstate;          /* the destination's, from "finished" */
    char *record_error;      /* "finished", but the destination's record is stale */
    char *unknown_why;       /* why the finish got no answer */
    char id[33];             /* the migration's identity, made at Begin */
    uint64_t prepared_at;    /* when "prepared" arrived: the finish's answer is
                              * awaited until prepared_at + 2 x timeout, never
                              * less than the receiver obeys it */
    bool prepared;           /* the receiver has a destination DM */
    bool cancel_sent;
    bool peer_lost;          /* the channel failed: the peer's status tells why */
    bool confirm_failed;
    bool local_runs;         /* recover: the local DM runs (not a stranded source) */
    uint64_t last_print_ms;
    bool bar_drawn;
    char last_status[32];
    uint64_t last_transferred;
} migration;

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
static int fail(migration *m, const char *phase, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(migration *m, const char *phase, int err, const char *fmt, ...)
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
static int fail_peer_lost(migration *m)
{
    m->peer_lost = true;
    return fail(m, "perform", -ECANCELED, "%s", chan_strerror(-ECONNRESET));
}

/* A failure whose cause libdm logged (or strerror). */
static int fail_err(migration *m, const char *phase, int err)
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

static int migrate_parse(dmctl *d, const dmctl_command *cmd, int argc, char **argv,
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
static int spawn_peer(migration *m)
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
static int exchange(migration *m, const char *phase, libdm_json *msg, const char *want,
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

/* The peer's protocol version (1 without one), or -1 if unknown here. */
static int peer_version(const libdm_json *msg)
{
    const libdm_json *v = libdm_json_object_get(msg, "version");
    int64_t n;

    if (!v)
        return 1;
    if (libdm_json_get_int(v, &n) < 0 || n < 1 || n > MIG_PROTO_VERSION)
        return -1;
    return (int)n;
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

/* ---- perform: hook and progress ---- */

/* Why a hook was stopped before it ended. */
typedef enum hook_stop {
    HOOK_ENDED,
    HOOK_DEADLINE,
    HOOK_PEER_GONE,
    HOOK_SIGNAL,
} hook_stop;

/* Waits for the hook @pid (leader of its own process group) until it ends,
 * the deadline passes, the receiver goes away or dmctl is signalled; then
 * the whole group is SIGKILLed (a hook's children go with it) and reaped. */
static hook_stop wait_hook(migration *m, pid_t pid, int *ret_status)
{
    const struct timespec tick = { 0, 5 * 1000 * 1000 };
    hook_stop why = HOOK_ENDED;
    pid_t r;

    for (;;) {
        r = waitpid(pid, ret_status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            break;
        if (remaining_ms(m->perform_deadline) == 0)
            why = HOOK_DEADLINE;
        else if (chan_peer_gone(&m->ch))
            why = HOOK_PEER_GONE;
        else if (dmctl_signal_received())
            why = HOOK_SIGNAL;
        if (why != HOOK_ENDED)
            break;
        nanosleep(&tick, NULL);
    }
    if (why != HOOK_ENDED) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, ret_status, 0) < 0 && errno == EINTR)
            ;
    }
    return why;
}

/* The hook's guardian, in a forked child that joined the hook's process
 * group: should dmctl die (even by SIGKILL: PR_SET_PDEATHSIG), it kills
 * the whole group, so that no hook acts on a switchover dmctl no longer
 * drives (issue 22, 10). dmctl kills it once the hook ended. */
static void hook_guardian(pid_t hook, pid_t parent)
{
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent) {
        kill(-hook, SIGKILL);
        _exit(127);
    }
    while (sigwait(&set, &sig) != 0 || sig != SIGTERM)
        ;
    kill(-hook, SIGKILL);   /* dmctl died: the group goes, this one too */
    _exit(127);
}

/* The hook, leader of its own process group, runs once its guardian is in
 * place (@go: a byte, or EOF if dmctl died first). */
static void hook_child(migration *m, int go)
{
    int null;
    char c;

    if (setpgid(0, 0) < 0 || read(go, &c, 1) != 1)
        _exit(127);
    null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0 ||
        setenv("DMCTL_MIGRATE_NAME", m->o.name, 1) < 0)
        _exit(127);
    exec_shell(m->o.hook);
}

static pid_t spawn_hook(migration *m, pid_t *ret_guardian)
{
    pid_t pid, self = getpid();
    int go[2];

    *ret_guardian = -1;
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        close(go[1]);
        hook_child(m, go[0]);
    }
    close(go[0]);
    if (pid < 0) {
        close(go[1]);
        return -1;
    }
    /* Its own process group: on timeout or cancel the hook is killed with
     * everything it started; either side may win the race. */
    (void)setpgid(pid, pid);
    *ret_guardian = fork();
    if (*ret_guardian == 0) {
        close(go[1]);
        if (setpgid(0, pid) < 0)
            _exit(127);
        hook_guardian(pid, self);
    }
    if (*ret_guardian > 0)
        (void)setpgid(*ret_guardian, pid);
    if (write(go[1], "g", 1) != 1)
        kill(pid, SIGKILL);   /* reaped by wait_hook */
    close(go[1]);
    return pid;
}

/* Ends and reaps the guardian of a hook that ended. */
static void end_guardian(pid_t guardian)
{
    if (guardian <= 0)
        return;
    kill(guardian, SIGKILL);
    while (waitpid(guardian, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int run_hook(migration *m)
{
    char buf[64];
    int status = 0;
    pid_t guardian;
    pid_t pid = spawn_hook(m, &guardian);
    hook_stop stop;

    if (pid < 0)
        return -errno;
    stop = wait_hook(m, pid, &status);
    end_guardian(guardian);
    switch (stop) {
    case HOOK_DEADLINE:
        return fail(m, "perform", -ETIMEDOUT, "the switchover hook did not end "
                    "before the deadline (killed with its process group)");
    case HOOK_PEER_GONE:
        return fail_peer_lost(m);
    case HOOK_SIGNAL:
        return fail(m, "perform", -EINTR, "interrupted during the switchover hook "
                    "(killed with its process group)");
    case HOOK_ENDED:
        break;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    return fail(m, "perform", -ECANCELED, "the switchover hook %s; migration cancelled",
                dmctl_describe_wait(status, buf, sizeof(buf)));
}

static int switchover_hook(libdm_dm *src, void *user)
{
    migration *m = user;
    int r;

    (void)src;
    if (chan_peer_gone(&m->ch))
        return fail_peer_lost(m);
    if (!m->o.hook)
        return 0;
    r = run_hook(m);
    if (r == 0 && chan_peer_gone(&m->ch))   /* went away during the hook */
        r = fail_peer_lost(m);
    return r < 0 ? -ECANCELED : 0;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static unsigned percent(const libdm_migrate_progress *p)
{
    uint64_t done;

    if (!p->ram_total)
        return 0;
    done = p->ram_remaining < p->ram_total ? p->ram_total - p->ram_remaining : 0;
    return (unsigned)(done * 100 / p->ram_total);
}

static void progress_bar(migration *m, const libdm_migrate_progress *p)
{
    const unsigned width = 20;
    unsigned pct = percent(p), fill = pct * width / 100, i;
    char bar[32];

    for (i = 0; i < width; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %3u%% %.1f/%.1f MiB, %" PRIu64 " Mbit/s, remaining %.1f MiB\033[K",
            bar, pct, mib(p->ram_transferred), mib(p->ram_total), p->mbps,
            mib(p->ram_remaining));
    fflush(stderr);
    m->bar_drawn = true;
}

static void progress_line(migration *m, const libdm_migrate_progress *p)
{
    uint64_t now = libdm_now_ms();

    if (m->last_print_ms && now - m->last_print_ms < PROGRESS_PLAIN_MS)
        return;
    m->last_print_ms = now;
    fprintf(stderr, "dmctl: %s: migration %s: %u%% %.1f/%.1f MiB, %" PRIu64
            " Mbit/s, remaining %.1f MiB\n", m->o.name, p->status, percent(p),
            mib(p->ram_transferred), mib(p->ram_total), p->mbps, mib(p->ram_remaining));
}

static void progress_json(migration *m, const libdm_migrate_progress *p)
{
    libdm_json *o;
    bool ok;

    if (!strcmp(m->last_status, p->status) && m->last_transferred == p->ram_transferred)
        return;   /* nothing new */
    snprintf(m->last_status, sizeof(m->last_status), "%s", p->status);
    m->last_transferred = p->ram_transferred;
    o = libdm_json_new_object();
    ok = o && dmctl_json_add_str(o, "event", "progress");
    ok = ok && dmctl_json_add_str(o, "name", m->o.name);
    ok = ok && dmctl_json_add_str(o, "status", p->status);
    ok = ok && dmctl_json_add_int(o, "ram_transferred", (int64_t)p->ram_transferred);
    ok = ok && dmctl_json_add_int(o, "ram_total", (int64_t)p->ram_total);
    ok = ok && dmctl_json_add_int(o, "ram_remaining", (int64_t)p->ram_remaining);
    ok = ok && dmctl_json_add_int(o, "mbps", (int64_t)p->mbps);
    ok = ok && dmctl_json_add_int(o, "percent", percent(p));
    dmctl_json_emit(msg_check(o, ok));
    fflush(stdout);
}

/* Cancels early when the receiver is gone (perform would wait until its
 * deadline otherwise). */
static void check_peer(migration *m, libdm_dm *src)
{
    if (m->cancel_sent || !chan_peer_gone(&m->ch))
        return;
    fail_peer_lost(m);
    m->cancel_sent = true;
    (void)libdm_qmp_call(libdm_dm_get_qmp(src), "migrate_cancel", NULL,
                         remaining_ms(m->perform_deadline) + 1, NULL);
}

/* A signal (^C, or `dmctl migrate-cancel` from elsewhere) cancels a
 * migration still in flight: the source keeps the guest. Once completed,
 * QEMU ignores migrate_cancel and the protocol decides as usual. */
static void check_interrupt(migration *m, libdm_dm *src)
{
    if (m->cancel_sent || !dmctl_signal_received())
        return;
    m->cancel_sent = true;
    dmctl_error(m->o.name, "interrupted: cancelling the migration");
    (void)libdm_qmp_call(libdm_dm_get_qmp(src), "migrate_cancel", NULL,
                         remaining_ms(m->perform_deadline) + 1, NULL);
}

static void on_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user)
{
    migration *m = user;

    check_peer(m, src);
    check_interrupt(m, src);
    if (m->d->json)
        progress_json(m, p);
    else if (isatty(2))
        progress_bar(m, p);
    else
        progress_line(m, p);
}

static int do_perform(migration *m, const char *uri)
{
    unsigned flags = m->o.pause_before_switchover ? LIBDM_MIGRATE_PAUSE_BEFORE_SWITCHOVER : 0;
    int r;

    m->perform_deadline = deadline_in(m->d->timeout_ms);
    r = libdm_migrate_perform(m->src, uri, flags, switchover_hook, m, on_progress, m,
                              m->d->timeout_ms);
    if (m->bar_drawn)
        fputc('\n', stderr);
    return r < 0 ? fail_err(m, "perform", r) : 0;
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
static bool finish_may_run(libdm_migrate_source source)
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
static void do_confirm(migration *m)
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
static void reap_peer(migration *m)
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

/* Begin, Prepare, Perform, Finish; sets m->outcome. */
static void migrate_phases(migration *m)
{
    char *uri = NULL;
    int r;

    m->outcome = OUTCOME_FAILED;
    m->stage = STAGE_BEGIN;
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

static int migrate_report(migration *m)
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
    return ex;
}

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
static libdm_dm_config *config_from(receiver *rc, const libdm_json *c, const char **ret_bad)
{
    libdm_dm_config *cfg = NULL;
    int64_t mem = 0, domid = 0;
    const char *machine = msg_str(c, "machine");

    if (libdm_dm_config_new(&cfg) < 0)
        return *ret_bad = "(out of memory)", NULL;
    if (libdm_dm_config_set_name(cfg, rc->name) < 0)
        *ret_bad = "name";
    else if (set_profile_name(cfg, msg_str(c, "profile")) < 0)
        *ret_bad = "profile";
    else if (!machine || libdm_dm_config_set_machine(cfg, machine) < 0)
        *ret_bad = "machine";
    else if (libdm_json_get_int(libdm_json_object_get(c, "memory"), &mem) < 0 || mem <= 0 ||
             libdm_dm_config_set_memory_mb(cfg, (uint64_t)mem) < 0)
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
