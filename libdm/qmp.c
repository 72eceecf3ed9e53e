/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP client engine.
 *
 * DO NOT TRUST QEMU. Under dm_restrict the device model may be compromised:
 * every message it sends is bounded by the decoder (size, depth, values),
 * anything before the greeting is discarded, replies with ids we never sent
 * are dropped, and every phase has a deadline.
 *
 * Requests in flight are "pending" records, separate from the caller's slot:
 * a caller may give up on a call (slot freed, deadline passed), but the reply
 * QEMU owes is still read and dropped before the socket is closed. That is
 * the drain rule (seed 001: pre-4.2 QEMU wedges its monitor for good when a
 * client leaves with a reply outstanding).
 *
 * Callbacks for calls are always delivered from a deferred timer, never from
 * inside the libdm call that caused them; event listeners run from the read
 * path. The connection holds a reference on itself while it dispatches, so a
 * callback may close it.
 */
#include "qmp-internal.h"
#include "ctx-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_READ_CHUNK 65536
#define QMP_ID_MAX 48
#define QMP_DEFAULT_CALL_TIMEOUT_MS 30000
#define QMP_RETRY_MIN_MS 5
#define QMP_RETRY_MAX_MS 100

typedef struct pending pending;

struct libdm_qmp_slot {
    libdm_qmp *qmp;            /* NULL once the connection is gone */
    bool is_listener;
    bool floating;
    bool done;                 /* call completed (delivered or queued for delivery) */
    bool in_callback;
    bool free_after_callback;
    bool dead;                 /* listener removed while listeners were iterating */
    bool internal;             /* libdm's own (a DM's): never held back */
    libdm_destroy_fn *destroy;
    void *userdata;
    libdm_qmp_slot *prev, *next; /* listeners list, or the delivery list */

    /* calls */
    libdm_qmp_reply_fn *reply_cb;
    pending *pending;          /* while not completed */
    libdm__timer timer;        /* the call's deadline */
    int status;
    libdm_json *msg;           /* the whole reply message, owned */

    /* listeners */
    char *event;
    libdm_qmp_event_fn *event_cb;
};

/* One request: queued (not yet fully written) or in flight (written, reply owed). */
struct pending {
    pending *prev, *next;
    char id[QMP_ID_MAX];
    char *command;
    char *text;
    size_t len, off;           /* off: bytes already written */
    int pass_fd;               /* sent with the first byte, -1 if none */
    libdm_qmp_slot *slot;      /* NULL: orphan, reply dropped on arrival */
    bool sent;                 /* fully written: in the inflight list */
};

typedef struct pending_list {
    pending *head, *tail;
    unsigned count;
} pending_list;

typedef struct queued_event {
    struct queued_event *next;
    libdm_json *msg;
} queued_event;

struct libdm_qmp {
    libdm_ctx *ctx;
    unsigned refs;
    libdm_qmp_state state;
    int fd;
    libdm__watch *watch;
    libdm__qmp_decoder *decoder;
    libdm_qmp_limits limits;
    bool want_oob, oob;
    bool out_blocked;          /* the socket refused bytes: wait for POLLOUT */
    int call_timeout_ms;
    char *path;                /* for connect retries and messages */
    char *log_prefix;

    libdm__timer phase_timer;  /* connect/negotiate deadline, then drain deadline */
    libdm__timer retry_timer;  /* next connect attempt */
    unsigned retry_ms;
    libdm__timer deliver_timer;

    pending_list queued, inflight;
    pending *caps;             /* the qmp_capabilities request */
    libdm_qmp_slot *listeners;
    unsigned iterating;        /* > 0 while listeners run */
    libdm_qmp_slot *deliver_head, *deliver_tail;
    libdm_json *current_msg;   /* message of the callback being delivered */

    queued_event *ev_head, *ev_tail;
    size_t ev_count;
    bool queue_events;

    libdm_json *greeting;
    bool saw_shutdown;
    char *last_error;
    int broken_error;          /* why the connection broke (negative errno) */
    char *err_class, *err_desc;

    libdm_qmp_state_fn *state_cb;
    void *state_userdata;

    /* Host callbacks wait while a blocking call for another object runs
     * (libdm__wait_for): events for the host's listeners queue here. */
    const void *owner;         /* itself, or the DM it serves */
    queued_event *held_head, *held_tail;
    size_t held_count;
    libdm__timer held_timer;

    bool closing;
    bool close_done;
    libdm_qmp *closing_prev, *closing_next; /* ctx->closing_qmps while closing */
    int close_status;
    libdm_qmp_closed_fn *closed_cb;
    void *closed_userdata;
};

static void flush(libdm_qmp *q);
static void deliver(libdm_ctx *ctx, libdm__timer *t, void *user);

/* ---- small helpers ---- */

static const char *state_names[] = {
    [LIBDM_QMP_CONNECTING] = "connecting", [LIBDM_QMP_GREETING] = "greeting",
    [LIBDM_QMP_NEGOTIATING] = "negotiating", [LIBDM_QMP_READY] = "ready",
    [LIBDM_QMP_DRAINING] = "draining",   [LIBDM_QMP_CLOSED] = "closed",
    [LIBDM_QMP_BROKEN] = "broken",
};

const char *libdm_qmp_state_to_string(libdm_qmp_state s)
{
    return (unsigned)s < LIBDM__ARRAY_SIZE(state_names) ? state_names[s] : "invalid";
}

static const char *who(const libdm_qmp *q)
{
    if (q->log_prefix)
        return q->log_prefix;
    return q->path ? q->path : "QMP";
}

static void list_append(pending_list *l, pending *p)
{
    p->next = NULL;
    p->prev = l->tail;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    l->count++;
}

static void list_remove(pending_list *l, pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        l->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->tail = p->prev;
    p->prev = p->next = NULL;
    l->count--;
}

static void pending_free(pending *p)
{
    if (!p)
        return;
    libdm__close(&p->pass_fd);
    free(p->command);
    free(p->text);
    free(p);
}

static void qmp_ref(libdm_qmp *q)
{
    q->refs++;
}

static void qmp_free(libdm_qmp *q);

static void qmp_unref(libdm_qmp *q)
{
    if (--q->refs == 0)
        qmp_free(q);
}

/*
 * The one place the state changes. Allowed transitions:
 *   CONNECTING  -> GREETING | CLOSED | BROKEN
 *   GREETING    -> NEGOTIATING | CLOSED | BROKEN
 *   NEGOTIATING -> READY | DRAINING | BROKEN
 *   READY       -> DRAINING | CLOSED (EOF after SHUTDOWN, or nothing owed) | BROKEN
 *   DRAINING    -> CLOSED | BROKEN
 *   CLOSED, BROKEN: final.
 */
static bool transition_allowed(libdm_qmp_state from, libdm_qmp_state to)
{
    static const unsigned allowed[] = {
        [LIBDM_QMP_CONNECTING] = 1u << LIBDM_QMP_GREETING | 1u << LIBDM_QMP_CLOSED | 1u << LIBDM_QMP_BROKEN,
        [LIBDM_QMP_GREETING] = 1u << LIBDM_QMP_NEGOTIATING | 1u << LIBDM_QMP_CLOSED | 1u << LIBDM_QMP_BROKEN,
        [LIBDM_QMP_NEGOTIATING] = 1u << LIBDM_QMP_READY | 1u << LIBDM_QMP_DRAINING | 1u << LIBDM_QMP_BROKEN,
        [LIBDM_QMP_READY] = 1u << LIBDM_QMP_DRAINING | 1u << LIBDM_QMP_CLOSED | 1u << LIBDM_QMP_BROKEN,
        [LIBDM_QMP_DRAINING] = 1u << LIBDM_QMP_CLOSED | 1u << LIBDM_QMP_BROKEN,
        [LIBDM_QMP_CLOSED] = 0,
        [LIBDM_QMP_BROKEN] = 0,
    };
    return (allowed[from] >> to) & 1u;
}

static void set_state(libdm_qmp *q, libdm_qmp_state to, int error)
{
    if (!transition_allowed(q->state, to)) {
        LIBDM__ERROR(q->ctx, "%s: internal error: QMP state %s -> %s refused", who(q),
                     libdm_qmp_state_to_string(q->state), libdm_qmp_state_to_string(to));
        return;
    }
    LIBDM__DEBUG(q->ctx, "%s: QMP %s -> %s", who(q), libdm_qmp_state_to_string(q->state),
                 libdm_qmp_state_to_string(to));
    q->state = to;
    if (q->state_cb)
        q->state_cb(q, to, error, q->state_userdata);
}

static bool is_final(const libdm_qmp *q)
{
    return q->state == LIBDM_QMP_CLOSED || q->state == LIBDM_QMP_BROKEN;
}

/* ---- completing calls ---- */

/* Records the result of a call and schedules its callback. Takes @msg. */
static void complete_slot(libdm_qmp *q, libdm_qmp_slot *s, int status, libdm_json *msg)
{
    libdm__timer_disarm(q->ctx, &s->timer);
    s->pending = NULL;
    s->done = true;
    s->status = status;
    s->msg = msg;
    s->next = NULL;
    s->prev = q->deliver_tail;
    if (q->deliver_tail)
        q->deliver_tail->next = s;
    else
        q->deliver_head = s;
    q->deliver_tail = s;
    if (libdm__defer(q->ctx, &q->deliver_timer) < 0)
        LIBDM__ERROR(q->ctx, "%s: cannot schedule a QMP completion", who(q));
}

/* Completes the caller's side of @p (if any) and makes @p an orphan. */
static void complete_pending(libdm_qmp *q, pending *p, int status, libdm_json *msg)
{
    libdm_qmp_slot *s = p->slot;

    p->slot = NULL;
    if (s)
        complete_slot(q, s, status, msg);
    else
        libdm_json_free(msg);
}

static void fail_list(libdm_qmp *q, pending_list *l, int status)
{
    while (l->head) {
        pending *p = l->head;
        list_remove(l, p);
        complete_pending(q, p, status, NULL);
        pending_free(p);
    }
}

static void drop_events(libdm_qmp *q)
{
    while (q->ev_head) {
        queued_event *e = q->ev_head;
        q->ev_head = e->next;
        libdm_json_free(e->msg);
        free(e);
    }
    q->ev_tail = NULL;
    q->ev_count = 0;
}

/* qmp_capabilities is on no list until fully written: free it here then. */
static void drop_caps(libdm_qmp *q)
{
    if (q->caps && !q->caps->sent)
        pending_free(q->caps);
    q->caps = NULL;
}

static void close_socket(libdm_qmp *q)
{
    libdm__timer_disarm(q->ctx, &q->retry_timer);
    libdm__timer_disarm(q->ctx, &q->phase_timer);
    libdm__watch_del(q->watch);
    q->watch = NULL;
    libdm__close(&q->fd);
}

static void finish_close(libdm_qmp *q, int status);

/* The connection is unusable: close it, and give every call its result. */
static void go_broken(libdm_qmp *q, int err, const char *fmt, ...) LIBDM__PRINTF(3, 4);
static void go_broken(libdm_qmp *q, int err, const char *fmt, ...)
{
    va_list ap;
    char *why = NULL;

    if (is_final(q))
        return;
    va_start(ap, fmt);
    if (vasprintf(&why, fmt, ap) < 0)
        why = NULL;
    va_end(ap);
    /* The peer going away (most often the DM ending) reaches the caller
     * anyway, through every pending call and the state callback: not an
     * error of its own. A peer breaking the protocol is worth a warning. */
    libdm__log(q->ctx, err == -ECONNRESET ? XTL_INFO : XTL_WARN, -1, "%s: %s", who(q),
               why ? why : "QMP connection failed");
    if (why) {
        free(q->last_error);
        q->last_error = why;
    }
    q->broken_error = err;
    close_socket(q);
    drop_caps(q);
    fail_list(q, &q->inflight, err);
    fail_list(q, &q->queued, err);
    set_state(q, LIBDM_QMP_BROKEN, err);
    if (q->closing)
        finish_close(q, err);
}

/* ---- the close path ---- */

static void finish_close(libdm_qmp *q, int status)
{
    q->close_status = status;
    /* The closed callback runs from deliver(), after the last call's. */
    if (libdm__defer(q->ctx, &q->deliver_timer) < 0)
        LIBDM__ERROR(q->ctx, "%s: cannot schedule the close completion", who(q));
}

/* The drain is over when nothing is owed and nothing half-written remains. */
static void maybe_drained(libdm_qmp *q)
{
    if (q->state != LIBDM_QMP_DRAINING || q->inflight.count > 0 || q->queued.count > 0)
        return;
    close_socket(q);
    set_state(q, LIBDM_QMP_CLOSED, 0);
    finish_close(q, 0);
}

static void drain_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;

    LIBDM__ERROR(ctx, "%s: monitor wedged: %u repl%s still outstanding at the close deadline",
                 who(q), q->inflight.count, q->inflight.count == 1 ? "y" : "ies");
    libdm__set_error(&q->last_error, "monitor wedged: %u reply(ies) outstanding at the close deadline",
                     q->inflight.count);
    close_socket(q);
    fail_list(q, &q->inflight, -ETIMEDOUT);
    fail_list(q, &q->queued, -ETIMEDOUT);
    set_state(q, LIBDM_QMP_CLOSED, -ETIMEDOUT);
    finish_close(q, -ETIMEDOUT);
}

/* ---- output ---- */

static int send_pending(libdm_qmp *q, pending *p)
{
    /* The fd goes with the command's first byte, once. */
    int fd = p->off == 0 ? p->pass_fd : -1;
    ssize_t n = libdm__send_with_fd(q->fd, p->text + p->off, p->len - p->off, fd, MSG_DONTWAIT);

    if (n < 0) {
        q->out_blocked = n == -EAGAIN || n == -EWOULDBLOCK;
        return q->out_blocked || n == -EINTR ? 0 : (int)n;
    }
    if (fd >= 0)
        libdm__close(&p->pass_fd);
    p->off += (size_t)n;
    return 1;
}

/* The next request to write in the current state, or NULL. */
static pending *next_to_send(libdm_qmp *q)
{
    switch (q->state) {
    case LIBDM_QMP_NEGOTIATING:
        return q->caps && q->caps->off < q->caps->len ? q->caps : NULL;
    case LIBDM_QMP_READY:
        return q->queued.head;
    case LIBDM_QMP_DRAINING:
        /* Finish a half-written command; never start a new one. */
        return q->queued.head && q->queued.head->off > 0 ? q->queued.head : NULL;
    default:
        return NULL;
    }
}

static void log_sent(libdm_qmp *q, const pending *p)
{
    char *text;

    if (!libdm__log_enabled(q->ctx, XTL_DEBUG))
        return;
    /* Never the command verbatim: it may carry a password. */
    if (libdm__qmp_redact(p->text, p->len - 1, &text) < 0) {
        LIBDM__DEBUG(q->ctx, "%s: QMP send: %s (arguments not shown)", who(q),
                     p->command ? p->command : "?");
        return;
    }
    LIBDM__DEBUG(q->ctx, "%s: QMP send: %s", who(q), text);
    free(text);
}

static void flush(libdm_qmp *q)
{
    pending *p;
    int r;

    while ((p = next_to_send(q))) {
        r = send_pending(q, p);
        if (r < 0) {
            go_broken(q, r == -EPIPE ? -ECONNRESET : r, "cannot write to the monitor: %s",
                      strerror(-r));
            return;
        }
        if (r == 0)
            break;
        if (p->off < p->len)
            continue;
        log_sent(q, p);
        if (p != q->caps)
            list_remove(&q->queued, p);
        p->sent = true;
        list_append(&q->inflight, p);
    }
    if (q->watch)
        (void)libdm__watch_set_events(q->watch, (short)(POLLIN | (p ? POLLOUT : 0)));
    maybe_drained(q);
}

/* ---- input ---- */

static pending *find_inflight(libdm_qmp *q, const char *id)
{
    for (pending *p = q->inflight.head; p; p = p->next)
        if (!strcmp(p->id, id))
            return p;
    return NULL;
}

static void handle_greeting(libdm_qmp *q, libdm_json *msg)
{
    const libdm_json *g = libdm_json_object_get(msg, "QMP");
    const libdm_json *caps = libdm_json_object_get(g, "capabilities");
    libdm_json *args = NULL;
    char *text;
    size_t len;
    int r;

    if (libdm_json_get_type(g) != LIBDM_JSON_OBJECT) {
        /* Bytes before the greeting (a previous client's reply: seen with
         * QEMU 7.2) are not ours: discard them. */
        LIBDM__DEBUG(q->ctx, "%s: discarding a message received before the greeting", who(q));
        libdm_json_free(msg);
        return;
    }
    q->greeting = libdm__json_detach(msg, "QMP");
    libdm_json_free(msg);
    for (size_t i = 0; i < libdm_json_length(caps); i++) {
        const char *c = libdm_json_get_string(libdm_json_array_get(caps, i));
        if (c && !strcmp(c, "oob") && q->want_oob)
            q->oob = true;
    }
    if (q->oob) {
        libdm_json *list = libdm_json_new_array();
        args = libdm_json_new_object();
        if (!list || !args || libdm_json_array_append(list, libdm_json_new_string("oob")) < 0 ||
            libdm_json_object_add(args, "enable", list) < 0) {
            libdm_json_free(args);
            go_broken(q, -ENOMEM, "out of memory");
            return;
        }
    }
    q->caps = calloc(1, sizeof(*q->caps));
    if (q->caps)
        q->caps->pass_fd = -1;
    r = q->caps ? libdm__next_id(q->ctx, q->caps->id, sizeof(q->caps->id)) : -ENOMEM;
    if (r >= 0)
        r = libdm__json_qmp_command("qmp_capabilities", args, q->caps->id, false, &text, &len);
    libdm_json_free(args);
    if (r < 0) {
        pending_free(q->caps);
        q->caps = NULL;
        go_broken(q, r, "cannot build qmp_capabilities: %s", strerror(-r));
        return;
    }
    q->caps->text = text;
    q->caps->len = len;
    q->caps->pass_fd = -1;
    q->caps->command = strdup("qmp_capabilities");
    if (!q->caps->command) {
        pending_free(q->caps);
        q->caps = NULL;
        go_broken(q, -ENOMEM, "out of memory");
        return;
    }
    set_state(q, LIBDM_QMP_NEGOTIATING, 0);
    flush(q);
}

static void handle_caps_reply(libdm_qmp *q, libdm_json *msg)
{
    const libdm_json *err = libdm_json_object_get(msg, "error");

    if (err) {
        go_broken(q, -EPROTO, "qmp_capabilities refused: %s: %s",
                  libdm__json_get_str(err, "class") ? libdm__json_get_str(err, "class") : "?",
                  libdm__json_get_str(err, "desc") ? libdm__json_get_str(err, "desc") : "?");
        libdm_json_free(msg);
        return;
    }
    libdm_json_free(msg);
    libdm__timer_disarm(q->ctx, &q->phase_timer);
    if (q->state == LIBDM_QMP_NEGOTIATING)
        set_state(q, LIBDM_QMP_READY, 0);
    flush(q);
}

static void handle_reply(libdm_qmp *q, libdm_json *msg, const libdm_json *id)
{
    const char *ids = libdm_json_get_string(id);
    const libdm_json *err = libdm_json_object_get(msg, "error");
    pending *p = ids ? find_inflight(q, ids) : NULL;
    bool was_caps;

    if (!p) {
        /* Never sent by this connection: a stale reply meant for a previous
         * client, a duplicate, or a lie. Drop it. */
        LIBDM__WARN(q->ctx, "%s: dropping a QMP reply with an id this connection never sent", who(q));
        libdm_json_free(msg);
        return;
    }
    list_remove(&q->inflight, p);
    was_caps = p == q->caps;
    if (was_caps) {
        q->caps = NULL;
        pending_free(p);
        handle_caps_reply(q, msg);
        return;
    }
    complete_pending(q, p, err ? -EREMOTEIO : 0, msg);
    pending_free(p);
    maybe_drained(q);
}

static bool listener_matches(const libdm_qmp_slot *s, const char *name)
{
    return !s->dead && (!s->event || !strcmp(s->event, name));
}

static void sweep_listeners(libdm_qmp *q)
{
    libdm_qmp_slot *s = q->listeners, *next;

    if (q->iterating)
        return;
    for (; s; s = next) {
        next = s->next;
        if (!s->dead)
            continue;
        if (s->prev)
            s->prev->next = s->next;
        else
            q->listeners = s->next;
        if (s->next)
            s->next->prev = s->prev;
        if (s->destroy)
            s->destroy(s->userdata);
        free(s->event);
        free(s);
    }
}

/* Runs the listeners of @msg: libdm's own (@internal) or the host's. */
static void run_listeners(libdm_qmp *q, const libdm_json *msg, const char *name, bool internal)
{
    const libdm_json *data = libdm_json_object_get(msg, "data");

    q->iterating++;
    for (libdm_qmp_slot *s = q->listeners; s && !is_final(q); s = s->next)
        if (listener_matches(s, name) && s->internal == internal)
            s->event_cb(q, name, data, s->userdata);
    q->iterating--;
    sweep_listeners(q);
}

static bool has_host_listener(const libdm_qmp *q, const char *name)
{
    for (const libdm_qmp_slot *s = q->listeners; s; s = s->next)
        if (listener_matches(s, name) && !s->internal)
            return true;
    return false;
}

/* A blocking call for another object runs: the host's listeners get the
 * event once it returns (in order: later events queue behind it). */
static void hold_event(libdm_qmp *q, const libdm_json *msg)
{
    queued_event *e;

    if (q->held_count >= q->limits.max_queued_events) {
        LIBDM__WARN(q->ctx, "%s: more than %zu events while a blocking call for another "
                            "object runs: dropping one", who(q), q->limits.max_queued_events);
        return;
    }
    e = calloc(1, sizeof(*e));
    if (!e || libdm_json_copy(msg, &e->msg) < 0) {
        free(e);
        LIBDM__WARN(q->ctx, "%s: out of memory: an event is not delivered", who(q));
        return;
    }
    if (q->held_tail)
        q->held_tail->next = e;
    else
        q->held_head = e;
    q->held_tail = e;
    q->held_count++;
    libdm__postpone(q->ctx, &q->held_timer);
}

static void deliver_held(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;

    if (libdm__blocking_other(ctx, q->owner)) {
        libdm__postpone(ctx, t);
        return;
    }
    qmp_ref(q);
    /* One per run: a listener may make a blocking call, or close q. */
    if (q->held_head && !is_final(q)) {
        queued_event *e = q->held_head;
        const char *name = libdm__json_get_str(e->msg, "event");

        q->held_head = e->next;
        if (!q->held_head)
            q->held_tail = NULL;
        q->held_count--;
        if (name)
            run_listeners(q, e->msg, name, false);
        libdm_json_free(e->msg);
        free(e);
        if (q->held_head)
            (void)libdm__defer(ctx, t);
    }
    qmp_unref(q);
}

static void dispatch_event(libdm_qmp *q, libdm_json *msg, const char *name)
{
    if (!strcmp(name, "SHUTDOWN"))
        q->saw_shutdown = true;
    run_listeners(q, msg, name, true);
    if (is_final(q) || !has_host_listener(q, name))
        return;
    if (q->held_head || libdm__blocking_other(q->ctx, q->owner))
        hold_event(q, msg);
    else
        run_listeners(q, msg, name, false);
}

static void queue_event(libdm_qmp *q, libdm_json *msg)
{
    queued_event *e;

    if (q->ev_count >= q->limits.max_queued_events) {
        libdm_json_free(msg);
        go_broken(q, -ENOBUFS, "more than %zu unread QMP events: the monitor floods us",
                  q->limits.max_queued_events);
        return;
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        libdm_json_free(msg);
        go_broken(q, -ENOMEM, "out of memory");
        return;
    }
    e->msg = msg;
    if (q->ev_tail)
        q->ev_tail->next = e;
    else
        q->ev_head = e;
    q->ev_tail = e;
    q->ev_count++;
}

static void handle_message(libdm_qmp *q, libdm_json *msg)
{
    const libdm_json *id = libdm_json_object_get(msg, "id");
    const char *event = libdm__json_get_str(msg, "event");

    if (q->state == LIBDM_QMP_GREETING) {
        handle_greeting(q, msg);
        return;
    }
    if (libdm_json_get_type(msg) != LIBDM_JSON_OBJECT) {
        libdm_json_free(msg);
        go_broken(q, -EPROTO, "the monitor sent a message that is not a JSON object");
        return;
    }
    if (event) {
        dispatch_event(q, msg, event);
        if (q->queue_events && !is_final(q))
            queue_event(q, msg);
        else
            libdm_json_free(msg);
        return;
    }
    if (libdm_json_object_get(msg, "return") || libdm_json_object_get(msg, "error")) {
        if (!id && libdm_json_object_get(msg, "error")) {
            /* QEMU answers without an id only when it could not parse a
             * command: we never send such, so the stream is out of step. */
            const char *desc = libdm__json_get_str(libdm_json_object_get(msg, "error"), "desc");
            go_broken(q, -EPROTO, "QMP error without id (%s): the monitor and libdm are out of step",
                      desc ? desc : "no description");
            libdm_json_free(msg);
            return;
        }
        handle_reply(q, msg, id);
        return;
    }
    LIBDM__WARN(q->ctx, "%s: dropping a QMP message that is neither reply nor event", who(q));
    libdm_json_free(msg);
}

static void log_received(libdm_qmp *q, const libdm_json *msg)
{
    char *text;

    if (!libdm__log_enabled(q->ctx, XTL_DEBUG) || libdm__qmp_redact_json(msg, &text) < 0)
        return;
    LIBDM__DEBUG(q->ctx, "%s: QMP recv: %.*s", who(q), 4096, text);
    free(text);
}

static void process_input(libdm_qmp *q)
{
    const char *why = NULL;
    libdm_json *msg;
    int r;

    while (!is_final(q) && (r = libdm__qmp_decoder_next(q->decoder, &msg, &why)) != 0) {
        if (r < 0) {
            if (q->state == LIBDM_QMP_GREETING && r == -EPROTO) {
                /* Junk before the greeting is discarded, not fatal. */
                LIBDM__DEBUG(q->ctx, "%s: discarding bytes received before the greeting", who(q));
                continue;
            }
            go_broken(q, r, "%s", why ? why : "malformed QMP stream");
            return;
        }
        log_received(q, msg);
        handle_message(q, msg);
    }
}

static void handle_eof(libdm_qmp *q, int err)
{
    if (q->saw_shutdown && (q->state == LIBDM_QMP_READY || q->state == LIBDM_QMP_DRAINING)) {
        /* After SHUTDOWN, QEMU may close before answering quit: that is
         * success for quit, and the end for anything else. */
        for (pending *p = q->inflight.head, *n; p; p = n) {
            n = p->next;
            if (!strcmp(p->command, "quit")) {
                list_remove(&q->inflight, p);
                complete_pending(q, p, 0, NULL);
                pending_free(p);
            }
        }
        LIBDM__DEBUG(q->ctx, "%s: monitor closed after SHUTDOWN", who(q));
        close_socket(q);
        fail_list(q, &q->inflight, -ECONNRESET);
        fail_list(q, &q->queued, -ECONNRESET);
        set_state(q, LIBDM_QMP_CLOSED, 0);
        if (q->closing)
            finish_close(q, 0);
        return;
    }
    go_broken(q, -ECONNRESET, "%s", err ? "the monitor connection was reset"
                                        : "QEMU closed the monitor connection");
}

static void on_readable(libdm_qmp *q)
{
    char buf[QMP_READ_CHUNK];
    ssize_t n;
    int r;

    n = recv(q->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        if (errno == ECONNRESET) {
            handle_eof(q, errno);
            return;
        }
        go_broken(q, -errno, "cannot read from the monitor: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        handle_eof(q, 0);
        return;
    }
    r = libdm__qmp_decoder_feed(q->decoder, buf, (size_t)n);
    if (r < 0) {
        go_broken(q, r, "QMP message exceeds the size limit of %zu bytes", q->limits.max_message);
        return;
    }
    process_input(q);
}

static void on_fd(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm_qmp *q = user;

    qmp_ref(q);
    if (revents & (POLLIN | POLLHUP | POLLERR))
        on_readable(q);
    if (!is_final(q) && (revents & POLLOUT)) {
        q->out_blocked = false;
        flush(q);
    }
    qmp_unref(q);
}

/* ---- connecting ---- */

static void phase_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;

    go_broken(q, -ETIMEDOUT, "no QMP %s before the deadline",
              q->state == LIBDM_QMP_CONNECTING ? "connection" :
              q->state == LIBDM_QMP_GREETING ? "greeting" : "negotiation");
}

static int start_io(libdm_qmp *q)
{
    int r = libdm__watch_add(q->ctx, q->fd, POLLIN, on_fd, q, &q->watch);

    if (r < 0)
        return r;
    set_state(q, LIBDM_QMP_GREETING, 0);
    return 0;
}

static void retry_connect(libdm_ctx *ctx, libdm__timer *t, void *user);

static int try_connect(libdm_qmp *q)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int r;

    memcpy(sa.sun_path, q->path, strlen(q->path) + 1);
    if (q->fd < 0) {
        q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (q->fd < 0)
            return -errno;
    }
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return start_io(q);
    r = -errno;
    if (r == -ENOENT || r == -ECONNREFUSED || r == -EAGAIN) {
        /* QEMU creates its socket a little after exec, and a backlog of one
         * refuses a second client until the first is accepted: retry. */
        libdm__close(&q->fd);
        LIBDM__DEBUG(q->ctx, "%s: connect: %s; retrying in %u ms", who(q), strerror(-r), q->retry_ms);
        r = libdm__timer_arm(q->ctx, &q->retry_timer, libdm_now_ms() + q->retry_ms);
        q->retry_ms = q->retry_ms * 2 > QMP_RETRY_MAX_MS ? QMP_RETRY_MAX_MS : q->retry_ms * 2;
        return r;
    }
    libdm__set_error(&q->last_error, "cannot connect to %s: %s", q->path, strerror(-r));
    return r;
}

static void retry_connect(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;
    int r = try_connect(q);

    if (r < 0)
        go_broken(q, r, "cannot connect to %s: %s", q->path, strerror(-r));
}

/* ---- public API ---- */

int libdm_qmp_new(libdm_ctx *ctx, libdm_qmp **ret_qmp)
{
    libdm_qmp *q = calloc(1, sizeof(*q));
    int r;

    if (!q)
        return -ENOMEM;
    q->ctx = ctx;
    q->refs = 1;
    q->fd = -1;
    q->state = LIBDM_QMP_CONNECTING;
    q->call_timeout_ms = QMP_DEFAULT_CALL_TIMEOUT_MS;
    q->limits = (libdm_qmp_limits){
        .max_message = libdm__json_default_limits.max_bytes,
        .max_depth = libdm__json_default_limits.max_depth,
        .max_values = libdm__json_default_limits.max_values,
        .max_queued_events = 1024,
    };
    libdm__timer_init(&q->phase_timer, phase_deadline, q);
    libdm__timer_init(&q->retry_timer, retry_connect, q);
    libdm__timer_init(&q->deliver_timer, deliver, q);
    libdm__timer_init(&q->held_timer, deliver_held, q);
    ctx->hurry_closing = libdm__qmp_hurry_closing;
    q->owner = q;
    r = libdm__qmp_decoder_new(NULL, &q->decoder);
    if (r < 0) {
        free(q);
        return r;
    }
    *ret_qmp = q;
    return 0;
}

int libdm_qmp_set_limits(libdm_qmp *q, const libdm_qmp_limits *limits)
{
    libdm__json_limits jl;
    libdm__qmp_decoder *d;
    int r;

    if (!limits || !limits->max_message || !limits->max_depth || !limits->max_values ||
        !limits->max_queued_events)
        return -EINVAL;
    if (q->state != LIBDM_QMP_CONNECTING || q->fd >= 0)
        return -EBUSY;
    jl = (libdm__json_limits){ limits->max_message, limits->max_depth, limits->max_values };
    r = libdm__qmp_decoder_new(&jl, &d);
    if (r < 0)
        return r;
    libdm__qmp_decoder_free(q->decoder);
    q->decoder = d;
    q->limits = *limits;
    return 0;
}

int libdm_qmp_set_oob(libdm_qmp *q, int enable)
{
    if (q->state != LIBDM_QMP_CONNECTING)
        return -EBUSY;
    q->want_oob = !!enable;
    return 0;
}

int libdm_qmp_set_call_timeout(libdm_qmp *q, int timeout_ms)
{
    if (timeout_ms <= 0)
        return -EINVAL;
    q->call_timeout_ms = timeout_ms;
    return 0;
}

int libdm_qmp_set_state_callback(libdm_qmp *q, libdm_qmp_state_fn *cb, void *userdata)
{
    q->state_cb = cb;
    q->state_userdata = userdata;
    return 0;
}

int libdm_qmp_set_event_queue(libdm_qmp *q, int enable)
{
    q->queue_events = !!enable;
    if (!enable)
        drop_events(q);
    return 0;
}

int libdm_qmp_pop_event(libdm_qmp *q, char **ret_name, libdm_json **ret_data)
{
    queued_event *e = q->ev_head;
    char *name;

    if (!e)
        return 0;
    name = strdup(libdm__json_get_str(e->msg, "event"));
    if (!name)
        return -ENOMEM;
    q->ev_head = e->next;
    if (!q->ev_head)
        q->ev_tail = NULL;
    q->ev_count--;
    *ret_name = name;
    if (ret_data)
        *ret_data = libdm__json_detach(e->msg, "data");
    libdm_json_free(e->msg);
    free(e);
    return 1;
}

static int arm_phase_deadline(libdm_qmp *q, int timeout_ms)
{
    return libdm__timer_arm(q->ctx, &q->phase_timer, libdm__deadline(timeout_ms));
}

int libdm_qmp_connect(libdm_qmp *q, const char *path, int timeout_ms)
{
    struct sockaddr_un sa;
    int r;

    if (!path || !*path)
        return -EINVAL;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    if (q->state != LIBDM_QMP_CONNECTING || q->fd >= 0 || q->path)
        return -EBUSY;
    q->path = strdup(path);
    if (!q->path)
        return -ENOMEM;
    q->retry_ms = QMP_RETRY_MIN_MS;
    r = arm_phase_deadline(q, timeout_ms);
    if (r >= 0)
        r = try_connect(q);
    if (r < 0) {
        close_socket(q);
        free(q->path);
        q->path = NULL;
    }
    return r;
}

int libdm_qmp_connect_fd(libdm_qmp *q, int fd, int timeout_ms)
{
    int r;

    if (fd < 0)
        return -EBADF;
    if (q->state != LIBDM_QMP_CONNECTING || q->fd >= 0) {
        libdm__close(&fd);
        return -EBUSY;
    }
    q->fd = fd;
    r = libdm__set_nonblock(fd, true);
    if (r >= 0)
        r = libdm__set_cloexec(fd, true);
    if (r >= 0)
        r = arm_phase_deadline(q, timeout_ms);
    if (r >= 0)
        r = start_io(q);
    if (r < 0)
        close_socket(q);
    return r;
}

static bool ready_or_final(void *arg)
{
    libdm_qmp *q = arg;

    return q->state == LIBDM_QMP_READY || is_final(q);
}

int libdm_qmp_wait_ready(libdm_qmp *q)
{
    int r = libdm__wait_for(q->ctx, q->owner, ready_or_final, q, UINT64_MAX);

    if (r < 0)
        return r;
    if (q->state == LIBDM_QMP_READY)
        return 0;
    /* The cause, so a missed deadline reads as -ETIMEDOUT, not a generic error. */
    if (q->state == LIBDM_QMP_BROKEN)
        return q->broken_error < 0 ? q->broken_error : -ENOTCONN;
    return -ESHUTDOWN;
}

int libdm_qmp_open(libdm_ctx *ctx, const char *path, int timeout_ms, libdm_qmp **ret_qmp)
{
    libdm_qmp *q;
    int r;

    r = libdm_qmp_new(ctx, &q);
    if (r < 0)
        return r;
    r = libdm_qmp_connect(q, path, timeout_ms);
    if (r >= 0)
        r = libdm_qmp_wait_ready(q);
    if (r < 0) {
        if (q->last_error)
            LIBDM__ERROR(ctx, "%s: %s", path, q->last_error);
        libdm_qmp_close(q, 0);
        return r;
    }
    *ret_qmp = q;
    return 0;
}

static void call_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp_slot *s = user;
    libdm_qmp *q = s->qmp;
    pending *p = s->pending;

    LIBDM__WARN(ctx, "%s: no reply to %s before its deadline", who(q), p->command);
    libdm__set_error(&q->last_error, "no reply to %s before its deadline", p->command);
    if (p->off == 0) {
        /* Never written: QEMU owes nothing, forget it entirely. */
        list_remove(&q->queued, p);
        complete_pending(q, p, -ETIMEDOUT, NULL);
        pending_free(p);
        return;
    }
    /* Written: the reply is still owed and will be drained and dropped. */
    complete_pending(q, p, -ETIMEDOUT, NULL);
}

static int new_call(libdm_qmp *q, const char *command, const libdm_json *arguments, int fd,
                    int timeout_ms, libdm_qmp_reply_fn *cb, void *userdata,
                    libdm_qmp_slot **ret_slot)
{
    libdm_qmp_slot *s = NULL;
    pending *p = NULL;
    int r = -ENOMEM;

    if (!command || !*command || !cb)
        return -EINVAL;
    if (q->closing || is_final(q))
        return -ENOTCONN;
    p = calloc(1, sizeof(*p));
    s = calloc(1, sizeof(*s));
    if (!p || !s || !(p->command = strdup(command)))
        goto fail;
    p->pass_fd = -1;
    if (fd >= 0 && (p->pass_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) {
        r = -errno;
        goto fail;
    }
    r = libdm__next_id(q->ctx, p->id, sizeof(p->id));
    if (r >= 0)
        r = libdm__json_qmp_command(command, arguments, p->id, false, &p->text, &p->len);
    if (r < 0)
        goto fail;
    s->qmp = q;
    s->reply_cb = cb;
    s->userdata = userdata;
    s->floating = !ret_slot;
    s->pending = p;
    p->slot = s;
    libdm__timer_init(&s->timer, call_deadline, s);
    r = libdm__timer_arm(q->ctx, &s->timer,
                         libdm__deadline(timeout_ms > 0 ? timeout_ms : q->call_timeout_ms));
    if (r < 0)
        goto fail;
    list_append(&q->queued, p);
    if (ret_slot)
        *ret_slot = s;
    /* A full socket is retried on POLLOUT, not on every new call. */
    if (!q->out_blocked)
        flush(q);
    return 0;
fail:
    pending_free(p);
    free(s);
    return r;
}

int libdm_qmp_call_async(libdm_qmp *q, const char *command, const libdm_json *arguments,
                         int timeout_ms, libdm_qmp_reply_fn *cb, void *userdata,
                         libdm_qmp_slot **ret_slot)
{
    return new_call(q, command, arguments, -1, timeout_ms, cb, userdata, ret_slot);
}

int libdm__qmp_call_async_internal(libdm_qmp *q, const char *command,
                                   const libdm_json *arguments, int timeout_ms,
                                   libdm_qmp_reply_fn *cb, void *userdata,
                                   libdm_qmp_slot **ret_slot)
{
    libdm_qmp_slot *s = NULL;
    int r = new_call(q, command, arguments, -1, timeout_ms, cb, userdata, &s);

    if (r < 0)
        return r;
    s->internal = true;
    if (ret_slot)
        *ret_slot = s;
    else
        s->floating = true;
    return 0;
}

void libdm__qmp_set_owner(libdm_qmp *q, const void *owner)
{
    q->owner = owner;
}

int libdm_qmp_call_async_with_fd(libdm_qmp *q, const char *command, const libdm_json *arguments,
                                 int fd, int timeout_ms, libdm_qmp_reply_fn *cb, void *userdata,
                                 libdm_qmp_slot **ret_slot)
{
    if (fd < 0)
        return -EBADF;
    return new_call(q, command, arguments, fd, timeout_ms, cb, userdata, ret_slot);
}

typedef struct sync_call {
    bool done;
    int status;
    libdm_json *value;
} sync_call;

static void sync_reply(libdm_qmp *q, const libdm_qmp_reply *reply, void *userdata)
{
    sync_call *c = userdata;

    c->done = true;
    c->status = reply->status;
    free(q->err_class);
    free(q->err_desc);
    q->err_class = q->err_desc = NULL;
    if (reply->status == -EREMOTEIO) {
        q->err_class = strdup(reply->error_class ? reply->error_class : "");
        q->err_desc = strdup(reply->error_desc ? reply->error_desc : "");
    } else if (reply->status == 0 && q->current_msg) {
        c->value = libdm__json_detach(q->current_msg, "return");
    }
}

static bool sync_done(void *arg)
{
    return ((sync_call *)arg)->done;
}

int libdm_qmp_call(libdm_qmp *q, const char *command, const libdm_json *arguments, int timeout_ms,
                   libdm_json **ret_value)
{
    sync_call c = { 0 };
    libdm_qmp_slot *s;
    int r;

    if (libdm__dispatch_depth(q->ctx) > 0)
        return -EDEADLK;
    r = libdm_qmp_call_async(q, command, arguments, timeout_ms, sync_reply, &c, &s);
    if (r < 0)
        return r;
    /* Held for the wait: the connection's owner (a DM whose QEMU died)
     * may close and release it meanwhile, and the slot still points at it
     * (a use after free, seen by ASan in test-fault-qemu). */
    qmp_ref(q);
    /* The call's own deadline completes it; the wait cannot outlive it. */
    r = libdm__wait_for(q->ctx, q->owner, sync_done, &c, UINT64_MAX);
    libdm_qmp_slot_free(s);
    qmp_unref(q);
    if (r < 0) {
        libdm_json_free(c.value);
        return r;
    }
    if (c.status < 0) {
        libdm_json_free(c.value);
        return c.status;
    }
    if (ret_value)
        *ret_value = c.value ? c.value : libdm_json_new_object();
    else
        libdm_json_free(c.value);
    return 0;
}

int libdm_qmp_call_text(libdm_qmp *q, const char *command, const char *arguments_json,
                        int timeout_ms, libdm_json **ret_value)
{
    libdm_json *args = NULL;
    int r;

    if (arguments_json) {
        r = libdm_json_parse(arguments_json, strlen(arguments_json), &args);
        if (r < 0)
            return r;
        if (libdm_json_get_type(args) != LIBDM_JSON_OBJECT) {
            libdm_json_free(args);
            return -EINVAL;
        }
    }
    r = libdm_qmp_call(q, command, args, timeout_ms, ret_value);
    libdm_json_free(args);
    return r;
}

int libdm_qmp_add_event_listener(libdm_qmp *q, const char *event, libdm_qmp_event_fn *cb,
                                 void *userdata, libdm_qmp_slot **ret_slot)
{
    libdm_qmp_slot *s;

    if (!cb)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s || (event && !(s->event = strdup(event)))) {
        free(s);
        return -ENOMEM;
    }
    s->qmp = q;
    s->is_listener = true;
    s->floating = !ret_slot;
    s->event_cb = cb;
    s->userdata = userdata;
    s->next = q->listeners;
    if (q->listeners)
        q->listeners->prev = s;
    q->listeners = s;
    if (ret_slot)
        *ret_slot = s;
    return 0;
}

int libdm__qmp_add_internal_listener(libdm_qmp *q, libdm_qmp_event_fn *cb, void *userdata)
{
    int r = libdm_qmp_add_event_listener(q, NULL, cb, userdata, NULL);

    if (r >= 0)
        q->listeners->internal = true; /* added at the head */
    return r;
}

void libdm__qmp_drop_internal_listeners(libdm_qmp *q)
{
    for (libdm_qmp_slot *s = q->listeners; s; s = s->next)
        if (s->internal)
            s->dead = true;
    sweep_listeners(q);
}

void libdm_qmp_slot_set_destroy(libdm_qmp_slot *s, libdm_destroy_fn *fn)
{
    if (s)
        s->destroy = fn;
}

static void unlink_delivery(libdm_qmp *q, libdm_qmp_slot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        q->deliver_head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        q->deliver_tail = s->prev;
    s->prev = s->next = NULL;
}

static bool in_delivery_list(const libdm_qmp *q, const libdm_qmp_slot *s)
{
    return s->prev || q->deliver_head == s;
}

static void call_slot_destroy(libdm_qmp_slot *s)
{
    libdm_json_free(s->msg);
    if (s->destroy)
        s->destroy(s->userdata);
    free(s);
}

libdm_qmp_slot *libdm_qmp_slot_free(libdm_qmp_slot *s)
{
    libdm_qmp *q;

    if (!s)
        return NULL;
    q = s->qmp;
    if (s->is_listener) {
        if (!q) {
            free(s->event);
            free(s);
            return NULL;
        }
        s->dead = true;
        sweep_listeners(q);
        return NULL;
    }
    if (s->in_callback) {
        s->free_after_callback = true;
        return NULL;
    }
    if (q) {
        libdm__timer_disarm(q->ctx, &s->timer);
        if (s->pending) {
            pending *p = s->pending;
            p->slot = NULL;
            if (!p->sent && p->off == 0) {
                /* Not written yet: nothing is owed, forget it. */
                list_remove(&q->queued, p);
                pending_free(p);
            }
            /* Else (partly) written: it stays as an orphan and is drained. */
        }
        if (s->done && in_delivery_list(q, s))
            unlink_delivery(q, s);
    }
    call_slot_destroy(s);
    return NULL;
}

static void closing_unlink(libdm_qmp *q)
{
    if (q->closing_prev)
        q->closing_prev->closing_next = q->closing_next;
    else if (q->ctx->closing_qmps == q)
        q->ctx->closing_qmps = q->closing_next;
    if (q->closing_next)
        q->closing_next->closing_prev = q->closing_prev;
    q->closing_prev = q->closing_next = NULL;
}

/* Runs deferred completions, then the closed callback if the close is done. */
static void deliver(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;
    bool hold = libdm__blocking_other(ctx, q->owner);
    libdm_qmp_slot *s;

    qmp_ref(q);
    for (;;) {
        const libdm_json *err;

        /* The host's callbacks wait while a blocking call for another
         * object runs; libdm's own run (its DMs' operations go on). */
        for (s = q->deliver_head; s && !s->internal && hold; s = s->next)
            ;
        if (!s)
            break;
        err = libdm_json_object_get(s->msg, "error");
        libdm_qmp_reply reply = {
            .status = s->status,
            .value = libdm_json_object_get(s->msg, "return"),
            .error_class = libdm__json_get_str(err, "class"),
            .error_desc = libdm__json_get_str(err, "desc"),
        };
        unlink_delivery(q, s);
        s->in_callback = true;
        q->current_msg = s->msg;
        s->reply_cb(q, &reply, s->userdata);
        q->current_msg = NULL;
        s->in_callback = false;
        if (s->floating || s->free_after_callback) {
            s->qmp = NULL;
            call_slot_destroy(s);
        }
    }
    if (hold && (q->deliver_head || (q->closing && !q->close_done && q->closed_cb))) {
        libdm__postpone(ctx, t);
        qmp_unref(q);
        return;
    }
    if (q->closing && !q->close_done && is_final(q) && !q->deliver_head) {
        q->close_done = true;
        if (q->closed_cb)
            q->closed_cb(q, q->close_status, q->closed_userdata);
        libdm__ctx_closing_add(q->ctx, -1);
        closing_unlink(q);
        /* Drop the reference the caller handed over at close. */
        qmp_unref(q);
    }
    qmp_unref(q);
}

/* Calls never written are cancelled; a half-written one is finished. */
static void cancel_unsent(libdm_qmp *q)
{
    pending *p = q->queued.head, *next;

    for (; p; p = next) {
        next = p->next;
        if (p->off > 0)
            continue;
        list_remove(&q->queued, p);
        complete_pending(q, p, -ECANCELED, NULL);
        pending_free(p);
    }
}

int libdm_qmp_close_async(libdm_qmp *q, int timeout_ms, libdm_qmp_closed_fn *cb, void *userdata)
{
    int r;

    if (!q)
        return 0;
    if (q->closing)
        return -EALREADY;
    q->closing = true;
    q->closed_cb = cb;
    q->closed_userdata = userdata;
    /* The caller's reference now belongs to the context until the close
     * completes (dropped in deliver()). */
    libdm__ctx_closing_add(q->ctx, 1);
    q->closing_next = q->ctx->closing_qmps;
    if (q->closing_next)
        q->closing_next->closing_prev = q;
    q->ctx->closing_qmps = q;
    cancel_unsent(q);
    if (is_final(q)) {
        finish_close(q, 0);
        return 0;
    }
    if (q->state == LIBDM_QMP_CONNECTING || q->state == LIBDM_QMP_GREETING) {
        close_socket(q);
        set_state(q, LIBDM_QMP_CLOSED, 0);
        finish_close(q, 0);
        return 0;
    }
    set_state(q, LIBDM_QMP_DRAINING, 0);
    libdm__timer_disarm(q->ctx, &q->phase_timer);
    libdm__timer_init(&q->phase_timer, drain_deadline, q);
    r = libdm__timer_arm(q->ctx, &q->phase_timer, libdm__deadline(timeout_ms));
    if (r < 0)
        LIBDM__ERROR(q->ctx, "%s: cannot arm the drain deadline", who(q));
    if (q->inflight.count)
        LIBDM__DEBUG(q->ctx, "%s: draining %u outstanding repl%s before close", who(q),
                     q->inflight.count, q->inflight.count == 1 ? "y" : "ies");
    maybe_drained(q);
    return 0;
}

typedef struct sync_close {
    bool done;
    int status;
} sync_close;

static void sync_closed(libdm_qmp *q, int status, void *userdata)
{
    sync_close *c = userdata;

    c->done = true;
    c->status = status;
}

static bool sync_close_done(void *arg)
{
    return ((sync_close *)arg)->done;
}

int libdm_qmp_close(libdm_qmp *q, int timeout_ms)
{
    sync_close c = { 0 };
    libdm_ctx *ctx;
    int r;

    if (!q)
        return 0;
    ctx = q->ctx;
    if (libdm__dispatch_depth(ctx) > 0)
        return -EDEADLK;
    r = libdm_qmp_close_async(q, timeout_ms, sync_closed, &c);
    if (r < 0)
        return r;
    /* The drain deadline bounds this wait. */
    r = libdm__wait_for(ctx, q->owner, sync_close_done, &c, UINT64_MAX);
    return r < 0 ? r : c.status;
}

static void qmp_free(libdm_qmp *q)
{
    libdm_qmp_slot *s, *next;

    close_socket(q);
    drop_caps(q);
    fail_list(q, &q->inflight, -ECANCELED);
    fail_list(q, &q->queued, -ECANCELED);
    /* Completed but undelivered calls: their owners still hold the slots. */
    while ((s = q->deliver_head)) {
        unlink_delivery(q, s);
        s->qmp = NULL;
        if (s->floating)
            call_slot_destroy(s);
    }
    for (s = q->listeners; s; s = next) {
        next = s->next;
        s->qmp = NULL;
        s->prev = s->next = NULL;
        if (s->floating || s->dead) {
            if (s->destroy)
                s->destroy(s->userdata);
            free(s->event);
            free(s);
        }
    }
    libdm__timer_disarm(q->ctx, &q->deliver_timer);
    libdm__timer_disarm(q->ctx, &q->held_timer);
    while (q->held_head) {
        queued_event *e = q->held_head;

        q->held_head = e->next;
        libdm_json_free(e->msg);
        free(e);
    }
    drop_events(q);
    libdm__qmp_decoder_free(q->decoder);
    libdm_json_free(q->greeting);
    free(q->path);
    free(q->log_prefix);
    free(q->last_error);
    free(q->err_class);
    free(q->err_desc);
    free(q);
}

/* libdm_ctx_free(): every drain ends by @abs_ms at the latest. */
void libdm__qmp_hurry_closing(libdm_ctx *ctx, uint64_t abs_ms)
{
    for (libdm_qmp *q = ctx->closing_qmps; q; q = q->closing_next)
        if (q->state == LIBDM_QMP_DRAINING && libdm__timer_armed(&q->phase_timer) &&
            q->phase_timer.deadline > abs_ms)
            (void)libdm__timer_arm(ctx, &q->phase_timer, abs_ms);
}

/* ---- getters ---- */

libdm_qmp_state libdm_qmp_get_state(const libdm_qmp *q)
{
    return q->state;
}

unsigned libdm_qmp_outstanding(const libdm_qmp *q)
{
    return q->inflight.count;
}

const libdm_json *libdm_qmp_get_greeting(const libdm_qmp *q)
{
    return q->greeting;
}

const char *libdm_qmp_error_class(const libdm_qmp *q)
{
    return q->err_class;
}

const char *libdm_qmp_error_desc(const libdm_qmp *q)
{
    return q->err_desc;
}

const char *libdm_qmp_last_error(const libdm_qmp *q)
{
    return q->last_error;
}

void libdm__qmp_set_log_prefix(libdm_qmp *q, const char *prefix)
{
    char *p = prefix ? strdup(prefix) : NULL;

    free(q->log_prefix);
    q->log_prefix = p;
}

