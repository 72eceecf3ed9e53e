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
 *   Perform (hook at pre-switchover)
 *   {"phase":"finish","success":B,"keep_paused":B}  ->
 *                                            Finish, or stop the destination
 *          <-  {"phase":"finished","runstate":..} | {"phase":"aborted"} | error
 *   Confirm
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
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
};

#define CHAN_MAX_LINE (64 * 1024)
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
        if (dmctl_signal_received())
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
} migrate_opts;

typedef struct migration {
    dmctl *d;
    migrate_opts o;
    libdm_dm *src;
    chan ch;
    pid_t peer;              /* the --to command, or -1 */
    uint64_t perform_deadline;
    const char *failed_in;   /* the phase that failed, or NULL */
    int err;
    char *why;               /* dmctl's own cause, else libdm's */
    char *runstate;          /* the destination's, from "finished" */
    bool prepared;           /* the receiver has a destination DM */
    bool cancel_sent;
    bool peer_lost;          /* the channel failed: the peer's status tells why */
    bool confirm_failed;
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
    case OPT_URI_HOST:
        o->uri_host = arg;
        return arg[0] ? 0 : dmctl_usage_error(cmd, "invalid --uri-host value ''");
    case OPT_MACHINE:
        o->machine = arg;
        return arg[0] ? 0 : dmctl_usage_error(cmd, "invalid --machine value ''");
    case OPT_MEMORY:
        if (!dmctl_parse_u64(arg, UINT32_MAX, &o->memory_mb) || o->memory_mb == 0)
            return dmctl_usage_error(cmd, "invalid --memory value '%s' (MiB)", arg);
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
    if (!o->to || !o->to[0])
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

static libdm_json *prepare_msg(migration *m)
{
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
    ok = ok && dmctl_json_add_str(o, "name", m->o.name);
    if (ok) {
        ok = libdm_json_object_add(o, "config", cfg) >= 0;
        cfg = NULL;
    }
    ok = ok && dmctl_json_add_int(o, "timeout_ms", m->d->timeout_ms);
    libdm_json_free(cfg);
    return msg_check(o, ok);
}

/* "tcp:HOST:PORT" with HOST replaced by --uri-host; other URIs unchanged. */
static char *apply_uri_host(const char *uri, const char *host)
{
    const char *port = strrchr(uri, ':');
    char *out = NULL;
    bool v6 = strchr(host, ':') && host[0] != '[';

    if (!host || strncmp(uri, "tcp:", 4) != 0 || port == uri + 3)
        return strdup(uri);
    if (asprintf(&out, "tcp:%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0)
        return NULL;
    return out;
}

static int do_prepare(migration *m, char **ret_uri)
{
    libdm_json *reply = NULL;
    const char *uri;
    int r = exchange(m, "prepare", prepare_msg(m), "prepared",
                     deadline_in(m->d->timeout_ms), &reply);

    if (r < 0)
        return r;
    uri = msg_str(reply, "uri");
    if (!uri || !uri[0])
        r = fail(m, "prepare", -EPROTO, "the receiver sent no URI");
    else if (!(*ret_uri = m->o.uri_host ? apply_uri_host(uri, m->o.uri_host) : strdup(uri)))
        r = fail_err(m, "prepare", -ENOMEM);
    libdm_json_free(reply);
    return r;
}

/* ---- perform: hook and progress ---- */

static int run_hook(migration *m)
{
    char buf[64];
    pid_t pid;
    int status = 0, r;

    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);

        if (null < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0 ||
            setenv("DMCTL_MIGRATE_NAME", m->o.name, 1) < 0)
            _exit(127);
        exec_shell(m->o.hook);
    }
    r = wait_child(pid, m->perform_deadline, &status);
    if (r == -ETIMEDOUT)
        return fail(m, "perform", -ETIMEDOUT, "the switchover hook did not end "
                    "before the deadline (killed)");
    if (r < 0)
        return r;
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

static void on_progress(libdm_dm *src, const libdm_migrate_progress *p, void *user)
{
    migration *m = user;

    check_peer(m, src);
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

static libdm_json *finish_msg(bool success, bool keep_paused)
{
    libdm_json *o = msg_new("finish");
    bool ok = o && dmctl_json_add_bool(o, "success", success);

    ok = ok && dmctl_json_add_bool(o, "keep_paused", keep_paused);
    return msg_check(o, ok);
}

/* Success: the destination must answer "finished". Failure: it stops its DM
 * and says "aborted" (waited for, so that it is gone when dmctl exits). */
static int do_finish(migration *m, bool success)
{
    libdm_json *reply = NULL;
    const char *rs;
    int r;

    if (m->ch.out < 0)
        return -ECONNRESET;
    r = exchange(m, "finish", finish_msg(success, m->o.keep_paused),
                 success ? "finished" : "aborted", deadline_in(m->d->timeout_ms), &reply);
    if (r < 0 || !success) {
        libdm_json_free(reply);
        return r;
    }
    rs = msg_str(reply, "runstate");
    m->runstate = strdup(rs ? rs : "?");
    libdm_json_free(reply);
    return 0;
}

/* Success: stop the source; failure: it runs again (or stays paused). */
static void do_confirm(migration *m, bool success)
{
    int r = libdm_migrate_confirm(m->src, success, m->d->timeout_ms);

    if (r >= 0)
        return;
    m->confirm_failed = true;
    dmctl_report_dm(m->d, m->src, m->o.name, success
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

/* Begin, Prepare, Perform, Finish; returns whether it succeeded. */
static bool migrate_phases(migration *m)
{
    char *uri = NULL;
    int r;

    r = libdm_migrate_begin(m->src, m->d->timeout_ms);
    if (r < 0)
        return fail_err(m, "begin", r), false;
    r = spawn_peer(m);
    if (r < 0)
        return fail(m, "prepare", r, "cannot run the --to command: %s", strerror(-r)), false;
    r = do_prepare(m, &uri);
    m->prepared = r == 0;
    if (r == 0)
        r = do_perform(m, uri);
    free(uri);
    if (r == 0)
        r = do_finish(m, true);
    else if (m->prepared && !chan_peer_gone(&m->ch))
        (void)do_finish(m, false);   /* the receiver stops its DM */
    return r == 0;
}

static int migrate_report(migration *m)
{
    libdm_json *o;
    char op[64];
    bool ok;

    if (!m->failed_in && m->confirm_failed)
        return DMCTL_EXIT_FAIL;
    if (m->failed_in && m->why) {
        dmctl_logger_discard(m->d->lg);
        dmctl_error(m->o.name, "migration failed in %s: %s", m->failed_in, m->why);
        return dmctl_exit_for(m->err);
    }
    if (m->failed_in) {
        snprintf(op, sizeof(op), "migration failed in %s", m->failed_in);
        return dmctl_report_dm(m->d, m->src, m->o.name, op, m->err);
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

int dmctl_cmd_migrate(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate");
    migration m = { .d = d, .peer = -1 };
    bool success;
    int ex;

    chan_init(&m.ch, -1, -1);
    ex = migrate_parse(d, cmd, argc, argv, &m.o);
    if (!ex)
        ex = dmctl_attach(d, m.o.name, &m.src);
    if (ex)
        return ex;
    signal(SIGPIPE, SIG_IGN);
    success = migrate_phases(&m);
    do_confirm(&m, success);
    reap_peer(&m);
    ex = migrate_report(&m);
    libdm_dm_release(m.src);
    free(m.why);
    free(m.runstate);
    return ex;
}

/* ============================ migrate-receive =========================== */

typedef struct receiver {
    dmctl *d;
    const char *name_opt;    /* --name */
    const char *listen;      /* --listen: "unix" or "tcp:HOST" */
    const char *qemu;        /* --qemu */
    chan ch;
    char *name;
    char *uri;
    char *sock_path;         /* unix: the listening socket, removed at the end */
    libdm_dm *dst;
    int64_t peer_timeout_ms;
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
    if (strcmp(rc->listen, "unix") && (strncmp(rc->listen, "tcp:", 4) || !rc->listen[4]))
        return dmctl_usage_error(cmd, "invalid --listen value '%s' (unix or tcp:HOST)",
                                 rc->listen);
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
    else if (rc->qemu && libdm_dm_config_set_qemu_path(cfg, rc->qemu) < 0)
        *ret_bad = "--qemu";
    else if (libdm_dm_config_set_timeout_ms(cfg, rc->d->timeout_ms) < 0)
        *ret_bad = "--timeout";
    else
        return cfg;
    return libdm_dm_config_free(cfg);
}

/* Reads "prepare": the name and the configuration. 0 or an exit status. */
static int receive_prepare_msg(receiver *rc, libdm_dm_config **ret_cfg)
{
    libdm_json *msg = NULL;
    const char *bad = NULL, *name;
    int r = chan_recv(&rc->ch, deadline_in(rc->d->timeout_ms), &msg);

    if (r < 0)
        return receive_fail(rc, "prepare", r, "%s", chan_strerror(r));
    name = rc->name_opt ? rc->name_opt : msg_str(msg, "name");
    if (strcmp(msg_phase(msg), "prepare") || !name) {
        libdm_json_free(msg);
        return receive_fail(rc, "prepare", -EPROTO, "expected a prepare line with a name");
    }
    rc->name = strdup(name);
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
    if (asprintf(&rc->sock_path, "%s/%s-incoming.sock", dir, rc->name) < 0) {
        rc->sock_path = NULL;
        return -ENOMEM;
    }
    if (strlen(rc->sock_path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    (void)unlink(rc->sock_path);   /* a stale one from a killed receiver */
    return asprintf(&rc->uri, "unix:%s", rc->sock_path) < 0 ? -ENOMEM : 0;
}

/* Binds port 0 on @host to learn a free port. It is closed again before
 * QEMU listens: another process could take it meanwhile (then Prepare
 * fails and can be retried). */
static int free_port(const char *host, unsigned *ret_port)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = -1, r;

    r = getaddrinfo(host, "0", &hints, &ai);
    if (r != 0)
        return -EADDRNOTAVAIL;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    r = fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ? -errno : 0;
    if (r == 0)
        *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return r;
}

static int tcp_listen_uri(receiver *rc)
{
    const char *host = rc->listen + 4;
    bool v6 = strchr(host, ':') && host[0] != '[';
    unsigned port = 0;
    int r = free_port(host, &port);

    if (r < 0)
        return r;
    return asprintf(&rc->uri, "tcp:%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0
               ? -ENOMEM : 0;
}

static int receive_prepare(receiver *rc)
{
    libdm_dm_config *cfg = NULL;
    int ex = receive_prepare_msg(rc, &cfg), r;

    if (ex)
        return ex;
    ex = dmctl_open_ctx(rc->d);
    r = ex ? -EIO : !strcmp(rc->listen, "unix") ? unix_listen_uri(rc) : tcp_listen_uri(rc);
    if (r < 0) {
        libdm_dm_config_free(cfg);
        return receive_fail(rc, "prepare", r, "cannot choose a listening address (%s): %s",
                            rc->listen, strerror(-r));
    }
    r = libdm_migrate_prepare(rc->d->ctx, cfg, rc->uri, &rc->dst);
    libdm_dm_config_free(cfg);
    if (r < 0)
        return receive_fail_libdm(rc, "prepare", r);
    fprintf(stderr, "dmctl: %s: prepared, listening on %s\n", rc->name, rc->uri);
    return 0;
}

static int send_prepared(receiver *rc)
{
    libdm_json *o = msg_new("prepared");
    int r;

    o = msg_check(o, o && dmctl_json_add_str(o, "uri", rc->uri));
    r = chan_send(&rc->ch, o, deadline_in(rc->d->timeout_ms));
    if (r < 0)
        dmctl_error(rc->name, "prepare failed: %s", chan_strerror(r));
    return r < 0 ? dmctl_exit_for(r) : 0;
}

/* Stops the destination (at once: it never ran this guest). */
static void stop_dst(receiver *rc)
{
    if (rc->dst && libdm_dm_stop(rc->dst, 1, rc->d->timeout_ms) < 0)
        dmctl_report_dm(rc->d, rc->dst, rc->name, "stopping the destination", -EIO);
}

static int receive_success(receiver *rc, bool keep_paused)
{
    libdm_json *o;
    char *rs = NULL;
    int r = libdm_migrate_finish(rc->dst, keep_paused, rc->d->timeout_ms);

    if (r < 0) {
        int ex = receive_fail_libdm(rc, "finish", r);

        stop_dst(rc);
        return ex;
    }
    if (libdm_dm_query_status(rc->dst, rc->d->timeout_ms, &rs) < 0)
        dmctl_logger_discard(rc->d->lg);
    o = msg_new("finished");
    o = msg_check(o, o && dmctl_json_add_str(o, "runstate", rs ? rs : "?"));
    r = chan_send(&rc->ch, o, deadline_in(rc->d->timeout_ms));
    fprintf(stderr, "dmctl: %s: migration finished (runstate %s)\n", rc->name,
            rs ? rs : "?");
    free(rs);
    /* The migration is done whether or not the sender still listens. */
    return 0;
}

static int receive_abort(receiver *rc)
{
    stop_dst(rc);
    dmctl_logger_discard(rc->d->lg);   /* e.g. QEMU quit after the cancel */
    (void)chan_send(&rc->ch, msg_new("aborted"), deadline_in(rc->d->timeout_ms));
    dmctl_error(rc->name, "migration aborted by the sender; destination stopped");
    return DMCTL_EXIT_FAIL;
}

/* Waits for "finish" (the sender's Perform may take its whole deadline). */
static int receive_finish(receiver *rc)
{
    uint64_t deadline = deadline_in(rc->d->timeout_ms) + (uint64_t)rc->peer_timeout_ms;
    libdm_json *msg = NULL;
    bool success = false, keep = false;
    int r = chan_recv(&rc->ch, deadline, &msg), ex;

    if (r == 0 && (strcmp(msg_phase(msg), "finish") || !msg_bool(msg, "success", &success)))
        r = -EPROTO;
    if (r == 0)
        (void)msg_bool(msg, "keep_paused", &keep);
    libdm_json_free(msg);
    if (r < 0) {
        ex = receive_fail(rc, "finish", r, "%s", chan_strerror(r));
        stop_dst(rc);
        return ex;
    }
    return success ? receive_success(rc, keep) : receive_abort(rc);
}

int dmctl_cmd_migrate_receive(dmctl *d, int argc, char **argv)
{
    const dmctl_command *cmd = dmctl_find_command("migrate-receive");
    receiver rc = { .d = d, .listen = "unix" };
    int ex = receive_parse(d, cmd, argc, argv, &rc), r;

    if (ex)
        return ex;
    r = take_stdio(&rc.ch);
    if (r < 0) {
        dmctl_error("migrate-receive", "cannot take stdin/stdout: %s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    signal(SIGPIPE, SIG_IGN);
    ex = receive_prepare(&rc);
    if (!ex)
        ex = send_prepared(&rc);
    if (ex)
        stop_dst(&rc);
    else
        ex = receive_finish(&rc);
    if (rc.sock_path)
        (void)unlink(rc.sock_path);
    libdm_dm_release(rc.dst);
    chan_close(&rc.ch);
    free(rc.name);
    free(rc.uri);
    free(rc.sock_path);
    return ex;
}
