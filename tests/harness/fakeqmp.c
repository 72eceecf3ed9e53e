/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fakeqmp: a FAKE, scriptable QMP server for tests (see fakeqmp.h for why
 * it exists and what it models). Independent of libdm on purpose.
 *
 * Layout: one server thread runs a poll() loop. It holds f->lock except
 * while it sleeps in poll(), so the script FIFO, the settings and the
 * counters are shared with the test thread under that one mutex, and the
 * connection state (struct conn) is only ever touched by the thread (or by
 * fakeqmp_free after the thread is joined).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "fakeqmp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#define GREETING                                                                    \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
    "\"package\": \"fakeqmp\"}, \"capabilities\": [\"oob\"]}}\r\n"
#define OVERSIZE_HEAD "{\"return\":\""
#define OVERSIZE_TAIL "\"}\r\n"
#define OVERSIZE_MIN (sizeof(OVERSIZE_HEAD) - 1 + sizeof(OVERSIZE_TAIL) - 1)

enum {
    LISTEN_BACKLOG = 1,         /* what QEMU's chardev and libxl use */
    IN_MAX = 1 << 20,           /* longest command line accepted */
    READ_CHUNK = 64 << 10,
    STREAM_CHUNK = 64 << 10,    /* streamed steps are generated this much at a time */
    FLUSH_CALLS = 4096,         /* write() calls per loop turn */
    PROGRESS_BUDGET = 256,      /* steps or commands per loop turn */
    ACCEPT_RETRY_MS = 50,       /* pause after accept() fails for lack of resources */
};

/* ------------------------------------------------------------------ */
/* Allocation: a test harness has nothing better to do on OOM than stop. */

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fputs("fakeqmp: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xzalloc(size_t n)
{
    return memset(xrealloc(NULL, n), 0, n);
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xrealloc(NULL, n + 1);

    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(int err)
{
    errno = err;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Byte buffer: data lives in p[off, len). */

struct buf {
    char *p;
    size_t off, len, cap;
};

static size_t buf_pending(const struct buf *b)
{
    return b->len - b->off;
}

static void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

/* Make room for n more bytes after len. */
static void buf_reserve(struct buf *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 256;

    if (b->off > 0 && b->cap - b->len < n) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len >= n)
        return;
    while (cap - b->len < n)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_add(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_adds(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_fill(struct buf *b, char c, size_t n)
{
    buf_reserve(b, n);
    memset(b->p + b->len, c, n);
    b->len += n;
}

static void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_addf(struct buf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    if ((size_t)n < sizeof(small)) {
        buf_add(b, small, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void buf_add_json_string(struct buf *b, const char *s)
{
    buf_adds(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            buf_addf(b, "\\%c", ch);
        else if (ch < 0x20)
            buf_addf(b, "\\u%04x", ch);
        else
            buf_add(b, s, 1);
    }
    buf_adds(b, "\"");
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------ */
/* Growable list of owned strings. */

struct strvec {
    char **v;
    size_t n, cap;
};

static void strvec_push(struct strvec *sv, char *s)
{
    if (sv->n == sv->cap) {
        sv->cap = sv->cap ? sv->cap * 2 : 16;
        sv->v = xrealloc(sv->v, sv->cap * sizeof(*sv->v));
    }
    sv->v[sv->n++] = s;
}

static void strvec_free(struct strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof(*sv));
}

/* ------------------------------------------------------------------ */
/* Script steps. */

enum step_kind {
    STEP_EXPECT,
    STEP_EVENT,
    STEP_SEND,
    STEP_CLOSE,
    STEP_SLEEP,
    STEP_OVERSIZE,
    STEP_DEEP,
    STEP_BURST,
};

enum reply_kind { REPLY_RETURN, REPLY_ERROR, REPLY_NONE, REPLY_RAW };

struct step {
    struct step *next;
    enum step_kind kind;
    enum reply_kind reply; /* STEP_EXPECT */
    char *name;            /* expect: command; event, burst: event name */
    char *text;            /* return JSON, error class, raw text, event data, sent bytes */
    char *desc;            /* error description */
    size_t len;            /* send: length of text */
    size_t count;          /* oversize: bytes; deep: depth; burst: events */
    unsigned ms;           /* expect: reply delay; sleep: duration */
};

static void step_free(struct step *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->text);
    free(s->desc);
    free(s);
}

/* ------------------------------------------------------------------ */
/* The server. */

struct conn {
    int fd; /* -1: no client */
    bool greeted;
    bool silent; /* wedged or never greeting: answer nothing, run no step */
    bool negotiated;
    bool closing; /* close once the output is written */
    bool sleeping;
    int64_t greet_at;
    int64_t sleep_until;
    struct step *inflight; /* expect step whose reply is pending */
    char *inflight_id;     /* its request's id JSON, or NULL */
    int64_t reply_at;
    struct step *stream; /* oversize, deep or burst step being written */
    size_t stream_pos;
    struct buf in, out;
};

struct fakeqmp {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast on: command received, client came or left */
    pthread_t thread;
    bool started, stop;
    int listen_fd;
    bool own_listen;
    char *path;
    int wake_fd; /* eventfd: pokes the thread out of poll() */

    struct step *head, **tail;
    size_t nsteps;

    enum fakeqmp_greeting greeting;
    unsigned greeting_ms;
    char *preamble;
    bool bytewise, block_bug, auto_mode;
    const char *vm_status; /* auto mode's idea of the run state */

    bool wedged;
    size_t connections, pending_disc;
    struct strvec names, lines, mismatches;
    size_t bytes_sent, write_calls;
    int64_t accept_retry_at;

    struct conn c;
};

static void wake(fakeqmp *f)
{
    uint64_t one = 1;

    /* A full counter already means "wake up": nothing to do on EAGAIN. */
    if (write(f->wake_fd, &one, sizeof(one)) < 0)
        return;
}

static void record_mismatch(fakeqmp *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record_mismatch(fakeqmp *f, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    strvec_push(&f->mismatches, xstrdup(text));
}

static struct step *pop_step(fakeqmp *f)
{
    struct step *s = f->head;

    f->head = s->next;
    if (!f->head)
        f->tail = &f->head;
    f->nsteps--;
    s->next = NULL;
    return s;
}

/* ---- messages ---- */

/* Close a reply: the id member (if the request had one) and CRLF. */
static void put_id_tail(struct buf *b, const char *id)
{
    if (id)
        buf_addf(b, ", \"id\": %s", id);
    buf_adds(b, "}\r\n");
}

static void put_return(struct buf *b, const char *json, const char *id)
{
    buf_adds(b, "{\"return\": ");
    buf_adds(b, json);
    put_id_tail(b, id);
}

static void put_error(struct buf *b, const char *cls, const char *desc, const char *id)
{
    buf_adds(b, "{\"error\": {\"class\": ");
    buf_add_json_string(b, cls);
    buf_adds(b, ", \"desc\": ");
    buf_add_json_string(b, desc);
    buf_adds(b, "}");
    put_id_tail(b, id);
}

static void put_event(struct buf *b, const char *name, const char *data)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    buf_adds(b, "{\"event\": ");
    buf_add_json_string(b, name);
    buf_addf(b, ", \"data\": %s, \"timestamp\": {\"seconds\": %lld, \"microseconds\": %ld}}\r\n",
             data ? data : "{}", (long long)ts.tv_sec, ts.tv_nsec / 1000);
}

/* Raw text with every "$ID" replaced by the id JSON. */
static void put_raw(struct buf *b, const char *text, const char *id)
{
    const char *p;

    while ((p = strstr(text, "$ID")) != NULL) {
        buf_add(b, text, (size_t)(p - text));
        buf_adds(b, id ? id : "null");
        text = p + 3;
    }
    buf_adds(b, text);
}

static void put_reply(struct buf *b, const struct step *s, const char *id)
{
    switch (s->reply) {
    case REPLY_RETURN:
        put_return(b, s->text, id);
        break;
    case REPLY_ERROR:
        put_error(b, s->text, s->desc, id);
        break;
    case REPLY_RAW:
        put_raw(b, s->text, id);
        break;
    case REPLY_NONE:
        break;
    }
}

/* ---- streamed steps: generated STREAM_CHUNK at a time, never whole ---- */

/* A streamed line is at most four runs: literal text or one repeated byte. */
struct run {
    const char *text; /* NULL: n copies of fill */
    char fill;
    size_t n;
};

static void pattern_runs(const struct step *s, struct run r[4])
{
    if (s->kind == STEP_OVERSIZE) {
        r[0] = (struct run){OVERSIZE_HEAD, 0, sizeof(OVERSIZE_HEAD) - 1};
        r[1] = (struct run){NULL, 'a', s->count - OVERSIZE_MIN};
        r[2] = (struct run){NULL, 0, 0};
        r[3] = (struct run){OVERSIZE_TAIL, 0, sizeof(OVERSIZE_TAIL) - 1};
    } else {
        r[0] = (struct run){NULL, 0, 0};
        r[1] = (struct run){NULL, '[', s->count};
        r[2] = (struct run){NULL, ']', s->count};
        r[3] = (struct run){"\r\n", 0, 2};
    }
}

/* Append the next chunk of an oversize or deep line; false once all sent. */
static bool pattern_generate(const struct step *s, size_t *pos, struct buf *out)
{
    struct run r[4];
    size_t start = 0, room = STREAM_CHUNK;
    bool any = false;

    pattern_runs(s, r);
    for (int i = 0; i < 4 && room > 0; start += r[i].n, i++) {
        size_t off, n;

        if (*pos >= start + r[i].n)
            continue;
        off = *pos - start;
        n = r[i].n - off < room ? r[i].n - off : room;
        if (r[i].text)
            buf_add(out, r[i].text + off, n);
        else
            buf_fill(out, r[i].fill, n);
        *pos += n;
        room -= n;
        any = true;
    }
    return any;
}

/* Append the next chunk of an event burst; false once all sent. */
static bool burst_generate(const struct step *s, size_t *pos, struct buf *out)
{
    if (*pos >= s->count)
        return false;
    while (*pos < s->count && buf_pending(out) < STREAM_CHUNK) {
        put_event(out, s->name, NULL);
        (*pos)++;
    }
    return true;
}

/* Refill the output from the streamed step in progress, if any. */
static bool stream_refill(struct conn *c)
{
    bool more;

    if (!c->stream)
        return false;
    if (c->stream->kind == STEP_BURST)
        more = burst_generate(c->stream, &c->stream_pos, &c->out);
    else
        more = pattern_generate(c->stream, &c->stream_pos, &c->out);
    if (!more) {
        step_free(c->stream);
        c->stream = NULL;
    }
    return more;
}

/* ---- connection life ---- */

static void greet(fakeqmp *f)
{
    buf_adds(&f->c.out, GREETING);
    f->c.greeted = true;
    /* The bug suspended the monitor's input: the greeting still goes out. */
    f->c.silent = f->wedged;
}

static void conn_open(fakeqmp *f, int fd)
{
    struct conn *c = &f->c;

    c->fd = fd;
    c->greeted = c->silent = c->negotiated = c->closing = c->sleeping = false;
    f->connections++;
    if (f->preamble)
        buf_adds(&c->out, f->preamble);
    switch (f->greeting) {
    case FAKEQMP_GREETING_NORMAL:
        greet(f);
        break;
    case FAKEQMP_GREETING_NONE:
        c->greeted = c->silent = true;
        break;
    case FAKEQMP_GREETING_PARTIAL_THEN_EOF:
        buf_add(&c->out, GREETING, (sizeof(GREETING) - 1) / 2);
        c->greeted = c->silent = c->closing = true;
        break;
    case FAKEQMP_GREETING_DELAYED:
        c->greet_at = now_ms() + f->greeting_ms;
        break;
    }
    pthread_cond_broadcast(&f->cond);
}

/* Forget the client. A reply still pending is what wedged pre-4.2 QEMU. */
static void conn_drop(fakeqmp *f)
{
    struct conn *c = &f->c;

    if (c->inflight) {
        f->pending_disc++;
        if (f->block_bug)
            f->wedged = true;
    }
    step_free(c->inflight);
    step_free(c->stream);
    free(c->inflight_id);
    c->inflight = c->stream = NULL;
    c->inflight_id = NULL;
    close(c->fd);
    c->fd = -1;
    c->in.off = c->in.len = 0;
    c->out.off = c->out.len = 0;
    pthread_cond_broadcast(&f->cond);
}

static void accept_client(fakeqmp *f)
{
    int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd >= 0) {
        conn_open(f, fd);
        return;
    }
    /* EAGAIN and friends are harmless; anything else (EMFILE...) would make
     * poll() report the listener again at once, so back off a little. */
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        f->accept_retry_at = now_ms() + ACCEPT_RETRY_MS;
}

static bool want_read(const struct conn *c)
{
    return buf_pending(&c->in) < IN_MAX;
}

static void conn_read(fakeqmp *f)
{
    struct buf *in = &f->c.in;
    ssize_t r;

    buf_reserve(in, READ_CHUNK);
    r = recv(f->c.fd, in->p + in->len, READ_CHUNK, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        conn_drop(f); /* EOF, ECONNRESET... */
        return;
    }
    in->len += (size_t)r;
    if (!want_read(&f->c) && !memchr(in->p + in->off, '\n', buf_pending(in))) {
        record_mismatch(f, "command line longer than %d bytes", IN_MAX);
        conn_drop(f);
    }
}

/* Write what can be written without blocking. Returns true when the loop
 * should turn again at once (budget used up, stream finished, client gone). */
static bool conn_flush(fakeqmp *f)
{
    struct conn *c = &f->c;
    bool streaming = c->stream != NULL;

    for (int calls = 0; calls < FLUSH_CALLS; calls++) {
        size_t n;
        ssize_t w;

        if (buf_pending(&c->out) == 0 && !stream_refill(c)) {
            if (c->closing) {
                conn_drop(f);
                return true;
            }
            return streaming;
        }
        n = f->bytewise ? 1 : buf_pending(&c->out);
        w = send(c->fd, c->out.p + c->out.off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (w < 0) {
            conn_drop(f); /* EPIPE, ECONNRESET... */
            return true;
        }
        f->write_calls++;
        f->bytes_sent += (size_t)w;
        buf_consume(&c->out, (size_t)w);
    }
    return true;
}

/* ---- commands ---- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

static const char *skip_string(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

/* End of the member value starting at p: the ',' or '}' that follows it. */
static const char *skip_value(const char *p)
{
    size_t depth = 0;

    while (*p) {
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        if (depth == 0 && (*p == ',' || *p == '}' || *p == ']'))
            break;
        if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']')
            depth--;
        p++;
    }
    return p;
}

/* The request's "id" exactly as written (so any JSON type round-trips
 * byte for byte), or NULL. line must be a JSON object already validated. */
static char *request_id(const char *line)
{
    const char *p = skip_ws(line);

    if (*p != '{')
        return NULL;
    for (p = skip_ws(p + 1); *p == '"'; p = skip_ws(p + 1)) {
        const char *key = p, *val, *end;

        p = skip_ws(skip_string(p));
        if (*p != ':')
            return NULL;
        val = skip_ws(p + 1);
        end = p = skip_value(val);
        while (end > val && strchr(" \t\r\n", end[-1]))
            end--;
        if (strncmp(key, "\"id\"", 4) == 0)
            return xstrndup(val, (size_t)(end - val));
        if (*p != ',')
            return NULL;
    }
    return NULL;
}

static const char *command_name(yajl_val tree)
{
    static const char *execute[] = {"execute", NULL}, *oob[] = {"exec-oob", NULL};
    yajl_val v = yajl_tree_get(tree, execute, yajl_t_string);

    if (!v)
        v = yajl_tree_get(tree, oob, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

static void record_command(fakeqmp *f, const char *line, const char *name)
{
    strvec_push(&f->names, xstrdup(name ? name : ""));
    strvec_push(&f->lines, xstrdup(line));
    pthread_cond_broadcast(&f->cond);
}

static void auto_answer(fakeqmp *f, const char *name, const char *id)
{
    struct buf *out = &f->c.out;

    if (strcmp(name, "query-status") == 0) {
        char status[128];

        snprintf(status, sizeof(status), "{\"status\": \"%s\", \"running\": %s, \"singlestep\": false}",
                 f->vm_status, strcmp(f->vm_status, "running") == 0 ? "true" : "false");
        put_return(out, status, id);
        return;
    }
    if (strcmp(name, "cont") == 0)
        f->vm_status = "running";
    else if (strcmp(name, "stop") == 0)
        f->vm_status = "paused";
    else if (strcmp(name, "quit") == 0) {
        /* QEMU's order: the event, then the return, then the socket goes. */
        put_event(out, "SHUTDOWN", "{\"guest\": false, \"reason\": \"host-qmp-quit\"}");
        f->c.closing = true;
    }
    put_return(out, "{}", id);
}

/* Answer now, or park the step until its reply is due (delay, noreply). */
static void take_expect(fakeqmp *f, struct step *s, const char *id)
{
    struct conn *c = &f->c;

    if (s->reply != REPLY_NONE && s->ms == 0) {
        put_reply(&c->out, s, id);
        step_free(s);
        return;
    }
    c->inflight = s;
    c->inflight_id = id ? xstrdup(id) : NULL;
    c->reply_at = now_ms() + s->ms;
}

static bool head_matches(const fakeqmp *f, const char *name, bool caps)
{
    const struct step *s = f->head;

    if (!s || s->kind != STEP_EXPECT)
        return false;
    /* "*" leaves qmp_capabilities to the emulation: scripts rarely want to
     * spell out the negotiation, and a wildcard meant for the first real
     * command must not swallow it. */
    return strcmp(s->name, name) == 0 || (!caps && strcmp(s->name, "*") == 0);
}

static void answer_command(fakeqmp *f, const char *name, const char *id)
{
    struct conn *c = &f->c;
    bool caps = strcmp(name, "qmp_capabilities") == 0;

    if (!c->negotiated && !caps) {
        put_error(&c->out, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'", id);
    } else if (head_matches(f, name, caps)) {
        struct step *s = pop_step(f);

        if (caps && s->reply != REPLY_ERROR)
            c->negotiated = true;
        take_expect(f, s, id);
    } else if (caps && c->negotiated) {
        put_error(&c->out, "CommandNotFound", "Capabilities negotiation is already complete, command ignored", id);
    } else if (caps) {
        put_return(&c->out, "{}", id);
        c->negotiated = true;
    } else if (!f->head && f->auto_mode) {
        auto_answer(f, name, id);
    } else {
        char desc[256];

        snprintf(desc, sizeof(desc), "fakeqmp: unexpected command %s", name);
        record_mismatch(f, "unexpected command %s (script expects %s)", name,
                        !f->head ? "nothing" : f->head->kind == STEP_EXPECT ? f->head->name : "no command");
        put_error(&c->out, "GenericError", desc, id);
    }
}

/* Record one command line and, unless the monitor is silent, answer it. */
static void handle_line(fakeqmp *f, const char *line)
{
    char err[128];
    yajl_val tree = yajl_tree_parse(line, err, sizeof(err));
    bool object = tree && YAJL_IS_OBJECT(tree);
    const char *name = object ? command_name(tree) : NULL;
    char *id = object ? request_id(line) : NULL;

    record_command(f, line, name);
    if (f->c.silent) {
        /* received, never answered */
    } else if (name) {
        answer_command(f, name, id);
    } else {
        /* QEMU's own messages; a parse error carries no id. */
        const char *why = !tree ? "JSON parse error" : !object ? "QMP input must be a JSON object"
                                                                : "QMP input lacks member 'execute'";

        record_mismatch(f, "%s: %.200s", why, line);
        put_error(&f->c.out, "GenericError", why, id);
    }
    free(id);
    yajl_tree_free(tree);
}

/* Next complete, non-blank input line without its line ending, or NULL. */
static char *take_line(struct buf *in)
{
    for (;;) {
        const char *start = in->p + in->off;
        const char *nl = buf_pending(in) ? memchr(start, '\n', buf_pending(in)) : NULL;
        size_t len;
        char *line;

        if (!nl)
            return NULL;
        len = (size_t)(nl - start);
        if (len > 0 && start[len - 1] == '\r')
            len--;
        line = xstrndup(start, len);
        buf_consume(in, (size_t)(nl - start) + 1);
        if (line[strspn(line, " \t\r")] != '\0')
            return line;
        free(line);
    }
}

/* ---- the script ---- */

/* Run the FIFO head if it is not an expect step; false if it could not. */
static bool run_head_step(fakeqmp *f, int64_t now)
{
    struct conn *c = &f->c;
    struct step *s = f->head;

    if (!s || s->kind == STEP_EXPECT)
        return false;
    /* QEMU sends no event before negotiation. */
    if ((s->kind == STEP_EVENT || s->kind == STEP_BURST) && !c->negotiated)
        return false;
    pop_step(f);
    switch (s->kind) {
    case STEP_EVENT:
        put_event(&c->out, s->name, s->text);
        break;
    case STEP_SEND:
        buf_add(&c->out, s->text, s->len);
        break;
    case STEP_CLOSE:
        c->closing = true;
        break;
    case STEP_SLEEP:
        c->sleeping = true;
        c->sleep_until = now + s->ms;
        break;
    case STEP_OVERSIZE:
    case STEP_DEEP:
    case STEP_BURST:
        c->stream = s; /* written by conn_flush, freed when done */
        c->stream_pos = 0;
        return true;
    case STEP_EXPECT:
        break;
    }
    step_free(s);
    return true;
}

enum tick { TICK_BLOCKED, TICK_DID, TICK_IDLE };

/* Move the script on by one thing: end a sleep, send a due reply or run a
 * non-expect step. */
static enum tick script_tick(fakeqmp *f, int64_t now)
{
    struct conn *c = &f->c;

    if (c->sleeping) {
        if (now < c->sleep_until)
            return TICK_BLOCKED;
        c->sleeping = false;
    }
    if (c->inflight) {
        if (c->inflight->reply == REPLY_NONE || now < c->reply_at)
            return TICK_BLOCKED;
        put_reply(&c->out, c->inflight, c->inflight_id);
        step_free(c->inflight);
        free(c->inflight_id);
        c->inflight = NULL;
        c->inflight_id = NULL;
        return TICK_DID;
    }
    return run_head_step(f, now) ? TICK_DID : TICK_IDLE;
}

/* Run steps and answer commands until blocked. Returns true if the budget
 * ran out (more to do at once). */
static bool conn_progress(fakeqmp *f, int64_t now)
{
    struct conn *c = &f->c;

    for (int budget = PROGRESS_BUDGET; budget > 0; budget--) {
        enum tick t = TICK_IDLE;
        char *line;

        /* While a stream is being written nothing may queue behind it. */
        if (c->fd < 0 || c->closing || c->stream)
            return false;
        if (!c->greeted) {
            if (now < c->greet_at)
                return false;
            greet(f);
        }
        if (!c->silent)
            t = script_tick(f, now);
        if (t == TICK_BLOCKED)
            return false;
        if (t == TICK_DID)
            continue;
        line = take_line(&c->in);
        if (!line)
            return false;
        handle_line(f, line);
        free(line);
    }
    return true;
}

/* ---- the thread ---- */

static int64_t next_deadline(const fakeqmp *f)
{
    const struct conn *c = &f->c;
    int64_t t = INT64_MAX;

    if (c->fd < 0)
        return f->accept_retry_at ? f->accept_retry_at : t;
    if (!c->greeted && c->greet_at < t)
        t = c->greet_at;
    if (c->sleeping && c->sleep_until < t)
        t = c->sleep_until;
    if (c->inflight && c->inflight->reply != REPLY_NONE && c->reply_at < t)
        t = c->reply_at;
    return t;
}

/* Do all that can be done now; returns the poll() timeout. */
static int advance(fakeqmp *f)
{
    int64_t now = now_ms(), deadline;
    bool busy = false;

    if (f->accept_retry_at && now >= f->accept_retry_at)
        f->accept_retry_at = 0;
    if (f->c.fd >= 0)
        busy = conn_progress(f, now);
    if (f->c.fd >= 0)
        busy |= conn_flush(f);
    if (busy)
        return 0;
    deadline = next_deadline(f);
    if (deadline == INT64_MAX)
        return -1;
    return deadline <= now ? 0 : deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

static nfds_t poll_setup(const fakeqmp *f, struct pollfd pfd[2])
{
    const struct conn *c = &f->c;

    pfd[0] = (struct pollfd){.fd = f->wake_fd, .events = POLLIN};
    if (c->fd >= 0) {
        short ev = POLLRDHUP;

        if (want_read(c))
            ev |= POLLIN;
        if (buf_pending(&c->out) || c->stream)
            ev |= POLLOUT;
        pfd[1] = (struct pollfd){.fd = c->fd, .events = ev};
        return 2;
    }
    if (f->accept_retry_at)
        return 1;
    pfd[1] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
    return 2;
}

static void drain_wake(fakeqmp *f)
{
    uint64_t count;

    /* EAGAIN only means there was nothing left to drain. */
    if (read(f->wake_fd, &count, sizeof(count)) < 0)
        return;
}

static void handle_events(fakeqmp *f, const struct pollfd pfd[2], nfds_t n)
{
    short ev;

    if (pfd[0].revents & POLLIN)
        drain_wake(f);
    if (n < 2 || !pfd[1].revents)
        return;
    if (f->c.fd < 0) {
        accept_client(f);
        return;
    }
    ev = pfd[1].revents;
    /* Input is always read when there is room, so EOF is seen even while a
     * reply is pending: that is when the monitor-block bug bites. */
    if (want_read(&f->c) && (ev & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)))
        conn_read(f);
    else if (ev & (POLLHUP | POLLERR | POLLRDHUP))
        conn_drop(f);
}

static void *server_main(void *arg)
{
    fakeqmp *f = arg;

    pthread_mutex_lock(&f->lock);
    while (!f->stop) {
        struct pollfd pfd[2];
        int timeout = advance(f);
        nfds_t n = poll_setup(f, pfd);
        int r;

        pthread_mutex_unlock(&f->lock);
        r = poll(pfd, n, timeout);
        pthread_mutex_lock(&f->lock);
        if (r > 0 && !f->stop)
            handle_events(f, pfd, n);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Life cycle. */

/* Bind under a temporary name, listen, then rename into place: the path
 * appears already listening, so a client that waits for it to exist never
 * meets ECONNREFUSED. Falls back to binding in place if the name is too
 * long for the detour. */
static int listen_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char tmp[sizeof(a.sun_path)];
    int n = snprintf(tmp, sizeof(tmp), "%s.%ld~", path, (long)getpid());
    bool staged = n > 0 && (size_t)n < sizeof(tmp);
    const char *bind_path = staged ? tmp : path;
    int fd, err;

    if (strlen(path) >= sizeof(a.sun_path))
        return fail(ENAMETOOLONG);
    unlink(bind_path); /* stale socket; rename replaces the real path */
    memcpy(a.sun_path, bind_path, strlen(bind_path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, LISTEN_BACKLOG) == 0 &&
        (!staged || rename(tmp, path) == 0))
        return fd;
    err = errno;
    close(fd);
    unlink(bind_path);
    return fail(err);
}

static fakeqmp *fakeqmp_alloc(int listen_fd)
{
    fakeqmp *f = xzalloc(sizeof(*f));
    pthread_condattr_t ca;

    f->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (f->wake_fd < 0) {
        free(f);
        return NULL;
    }
    pthread_mutex_init(&f->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    f->listen_fd = listen_fd;
    f->tail = &f->head;
    f->vm_status = "prelaunch";
    f->c.fd = -1;
    return f;
}

fakeqmp *fakeqmp_new(const char *socket_path)
{
    int fd = socket_path ? listen_unix(socket_path) : fail(EINVAL);
    fakeqmp *f;

    if (fd < 0)
        return NULL;
    f = fakeqmp_alloc(fd);
    if (!f) {
        int err = errno;

        close(fd);
        unlink(socket_path);
        errno = err;
        return NULL;
    }
    f->own_listen = true;
    f->path = xstrdup(socket_path);
    return f;
}

fakeqmp *fakeqmp_new_listen_fd(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    /* accept() must never block the loop, even if a client vanished. */
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return NULL;
    return fakeqmp_alloc(fd);
}

int fakeqmp_start(fakeqmp *f)
{
    sigset_t all, old;
    int r;

    if (f->started)
        return fail(EBUSY);
    /* Signals belong to the test (or to fakeqmp-main), not to the server. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&f->thread, NULL, server_main, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return fail(r);
    f->started = true;
    return 0;
}

void fakeqmp_free(fakeqmp *f)
{
    if (!f)
        return;
    if (f->started) {
        pthread_mutex_lock(&f->lock);
        f->stop = true;
        pthread_mutex_unlock(&f->lock);
        wake(f);
        pthread_join(f->thread, NULL);
    }
    if (f->c.fd >= 0)
        close(f->c.fd);
    step_free(f->c.inflight);
    step_free(f->c.stream);
    free(f->c.inflight_id);
    buf_free(&f->c.in);
    buf_free(&f->c.out);
    if (f->own_listen) {
        close(f->listen_fd);
        unlink(f->path);
    }
    close(f->wake_fd);
    while (f->head)
        step_free(pop_step(f));
    strvec_free(&f->names);
    strvec_free(&f->lines);
    strvec_free(&f->mismatches);
    free(f->preamble);
    free(f->path);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* ------------------------------------------------------------------ */
/* Script API. */

static bool json_valid(const char *s)
{
    char err[64];
    yajl_val v = s ? yajl_tree_parse(s, err, sizeof(err)) : NULL;

    yajl_tree_free(v);
    return v != NULL;
}

static struct step *step_new(enum step_kind kind, const char *name)
{
    struct step *s = xzalloc(sizeof(*s));

    s->kind = kind;
    s->name = name ? xstrdup(name) : NULL;
    return s;
}

static int add_step(fakeqmp *f, struct step *s)
{
    pthread_mutex_lock(&f->lock);
    *f->tail = s;
    f->tail = &s->next;
    f->nsteps++;
    pthread_mutex_unlock(&f->lock);
    wake(f);
    return 0;
}

static int add_expect(fakeqmp *f, const char *cmd, enum reply_kind reply, unsigned ms, const char *text,
                      const char *desc)
{
    struct step *s;

    if (!cmd || !*cmd)
        return fail(EINVAL);
    s = step_new(STEP_EXPECT, cmd);
    s->reply = reply;
    s->ms = ms;
    s->text = text ? xstrdup(text) : NULL;
    s->desc = desc ? xstrdup(desc) : NULL;
    return add_step(f, s);
}

int fakeqmp_expect(fakeqmp *f, const char *cmd, const char *return_json)
{
    return fakeqmp_expect_delay(f, cmd, 0, return_json);
}

int fakeqmp_expect_delay(fakeqmp *f, const char *cmd, unsigned ms, const char *return_json)
{
    if (!json_valid(return_json))
        return fail(EINVAL);
    return add_expect(f, cmd, REPLY_RETURN, ms, return_json, NULL);
}

int fakeqmp_expect_error(fakeqmp *f, const char *cmd, const char *cls, const char *desc)
{
    if (!cls || !desc)
        return fail(EINVAL);
    return add_expect(f, cmd, REPLY_ERROR, 0, cls, desc);
}

int fakeqmp_expect_noreply(fakeqmp *f, const char *cmd)
{
    return add_expect(f, cmd, REPLY_NONE, 0, NULL, NULL);
}

int fakeqmp_expect_raw(fakeqmp *f, const char *cmd, const char *text)
{
    if (!text)
        return fail(EINVAL);
    return add_expect(f, cmd, REPLY_RAW, 0, text, NULL);
}

int fakeqmp_event(fakeqmp *f, const char *name, const char *data_json)
{
    struct step *s;

    if (!name || !*name || (data_json && !json_valid(data_json)))
        return fail(EINVAL);
    s = step_new(STEP_EVENT, name);
    s->text = xstrdup(data_json ? data_json : "{}");
    return add_step(f, s);
}

int fakeqmp_send_raw(fakeqmp *f, const void *bytes, size_t len)
{
    struct step *s;

    if (!bytes && len)
        return fail(EINVAL);
    s = step_new(STEP_SEND, NULL);
    s->text = xstrndup(len ? bytes : "", len);
    s->len = len;
    return add_step(f, s);
}

int fakeqmp_close_step(fakeqmp *f)
{
    return add_step(f, step_new(STEP_CLOSE, NULL));
}

int fakeqmp_sleep(fakeqmp *f, unsigned ms)
{
    struct step *s = step_new(STEP_SLEEP, NULL);

    s->ms = ms;
    return add_step(f, s);
}

int fakeqmp_send_oversize_step(fakeqmp *f, size_t nbytes)
{
    struct step *s = step_new(STEP_OVERSIZE, NULL);

    s->count = nbytes < OVERSIZE_MIN ? OVERSIZE_MIN : nbytes;
    return add_step(f, s);
}

int fakeqmp_send_deep_step(fakeqmp *f, size_t depth)
{
    struct step *s = step_new(STEP_DEEP, NULL);

    s->count = depth;
    return add_step(f, s);
}

int fakeqmp_event_burst_step(fakeqmp *f, const char *name, size_t count)
{
    struct step *s;

    if (!name || !*name)
        return fail(EINVAL);
    s = step_new(STEP_BURST, name);
    s->count = count;
    return add_step(f, s);
}

/* ------------------------------------------------------------------ */
/* Settings. */

/* Settings change under the lock, then the thread re-evaluates. */
static void lock(fakeqmp *f)
{
    pthread_mutex_lock(&f->lock);
}

static void unlock_and_wake(fakeqmp *f)
{
    pthread_mutex_unlock(&f->lock);
    wake(f);
}

void fakeqmp_set_auto(fakeqmp *f, int on)
{
    lock(f);
    f->auto_mode = on;
    unlock_and_wake(f);
}

void fakeqmp_set_greeting(fakeqmp *f, enum fakeqmp_greeting mode, unsigned delay_ms)
{
    lock(f);
    f->greeting = mode;
    f->greeting_ms = delay_ms;
    unlock_and_wake(f);
}

int fakeqmp_set_preamble(fakeqmp *f, const char *bytes)
{
    char *copy = bytes && *bytes ? xstrdup(bytes) : NULL;

    lock(f);
    free(f->preamble);
    f->preamble = copy;
    unlock_and_wake(f);
    return 0;
}

void fakeqmp_set_bytewise(fakeqmp *f, int on)
{
    lock(f);
    f->bytewise = on;
    unlock_and_wake(f);
}

void fakeqmp_set_monitor_block_bug(fakeqmp *f, int on)
{
    lock(f);
    f->block_bug = on;
    unlock_and_wake(f);
}

/* ------------------------------------------------------------------ */
/* Introspection. */

/* Read one counter consistently with the thread's updates. */
static size_t counter(fakeqmp *f, const size_t *field)
{
    size_t v;

    pthread_mutex_lock(&f->lock);
    v = *field;
    pthread_mutex_unlock(&f->lock);
    return v;
}

int fakeqmp_is_wedged(fakeqmp *f)
{
    int v;

    pthread_mutex_lock(&f->lock);
    v = f->wedged;
    pthread_mutex_unlock(&f->lock);
    return v;
}

unsigned fakeqmp_connections(fakeqmp *f)
{
    return (unsigned)counter(f, &f->connections);
}

unsigned fakeqmp_commands(fakeqmp *f)
{
    return (unsigned)counter(f, &f->names.n);
}

unsigned fakeqmp_mismatches(fakeqmp *f)
{
    return (unsigned)counter(f, &f->mismatches.n);
}

unsigned fakeqmp_pending_at_disconnect(fakeqmp *f)
{
    return (unsigned)counter(f, &f->pending_disc);
}

size_t fakeqmp_steps_left(fakeqmp *f)
{
    return counter(f, &f->nsteps);
}

size_t fakeqmp_bytes_sent(fakeqmp *f)
{
    return counter(f, &f->bytes_sent);
}

size_t fakeqmp_write_calls(fakeqmp *f)
{
    return counter(f, &f->write_calls);
}

/* Strings are never freed before fakeqmp_free, so the pointer outlives
 * the lock; only the vector's array may move. */
static const char *strvec_at(fakeqmp *f, const struct strvec *sv, unsigned i)
{
    const char *s;

    pthread_mutex_lock(&f->lock);
    s = i < sv->n ? sv->v[i] : NULL;
    pthread_mutex_unlock(&f->lock);
    return s;
}

const char *fakeqmp_command_name(fakeqmp *f, unsigned i)
{
    return strvec_at(f, &f->names, i);
}

const char *fakeqmp_command_line(fakeqmp *f, unsigned i)
{
    return strvec_at(f, &f->lines, i);
}

const char *fakeqmp_mismatch(fakeqmp *f, unsigned i)
{
    return strvec_at(f, &f->mismatches, i);
}

static struct timespec deadline_after(unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

unsigned fakeqmp_wait_commands(fakeqmp *f, unsigned n, unsigned timeout_ms)
{
    struct timespec until = deadline_after(timeout_ms);
    unsigned got;

    pthread_mutex_lock(&f->lock);
    while (f->names.n < n && pthread_cond_timedwait(&f->cond, &f->lock, &until) == 0)
        ;
    got = (unsigned)f->names.n;
    pthread_mutex_unlock(&f->lock);
    return got;
}

static bool finished(const fakeqmp *f)
{
    return f->connections > 0 && f->c.fd < 0 && !f->head;
}

int fakeqmp_wait_finished(fakeqmp *f, unsigned timeout_ms)
{
    struct timespec until = deadline_after(timeout_ms);
    bool done;

    pthread_mutex_lock(&f->lock);
    while (!finished(f) && pthread_cond_timedwait(&f->cond, &f->lock, &until) == 0)
        ;
    done = finished(f);
    pthread_mutex_unlock(&f->lock);
    return done;
}
