/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP client: the connection object. Its state machine, the requests
 * queued and in flight, writing them, breaking, draining and freeing.
 *
 * DO NOT TRUST QEMU: see qmp.c. Floors: qmp-private.h.
 */
#include "qmp-private.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

const char *libdm__qmp_who(const libdm_qmp *q)
{
    if (q->log_prefix)
        return q->log_prefix;
    return q->path ? q->path : "QMP";
}

void libdm__qmp_list_append(pending_list *l, pending *p)
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

void libdm__qmp_list_remove(pending_list *l, pending *p)
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

void libdm__qmp_pending_free(pending *p)
{
    if (!p)
        return;
    libdm__close(&p->pass_fd);
    free(p->command);
    free(p->text);
    free(p);
}

void libdm__qmp_ref(libdm_qmp *q)
{
    q->refs++;
}

static void qmp_free(libdm_qmp *q);

void libdm__qmp_unref(libdm_qmp *q)
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

void libdm__qmp_set_state(libdm_qmp *q, libdm_qmp_state to, int error)
{
    if (!transition_allowed(q->state, to)) {
        LIBDM__ERROR(q->ctx, "%s: internal error: QMP state %s -> %s refused", libdm__qmp_who(q),
                     libdm_qmp_state_to_string(q->state), libdm_qmp_state_to_string(to));
        return;
    }
    LIBDM__DEBUG(q->ctx, "%s: QMP %s -> %s", libdm__qmp_who(q), libdm_qmp_state_to_string(q->state),
                 libdm_qmp_state_to_string(to));
    q->state = to;
    if (q->state_cb)
        q->state_cb(q, to, error, q->state_userdata);
}

bool libdm__qmp_is_final(const libdm_qmp *q)
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
        LIBDM__ERROR(q->ctx, "%s: cannot schedule a QMP completion", libdm__qmp_who(q));
}

/* Completes the caller's side of @p (if any) and makes @p an orphan. */
void libdm__qmp_complete_pending(libdm_qmp *q, pending *p, int status, libdm_json *msg)
{
    libdm_qmp_slot *s = p->slot;

    p->slot = NULL;
    if (s)
        complete_slot(q, s, status, msg);
    else
        libdm_json_free(msg);
}

void libdm__qmp_fail_list(libdm_qmp *q, pending_list *l, int status)
{
    while (l->head) {
        pending *p = l->head;
        libdm__qmp_list_remove(l, p);
        libdm__qmp_complete_pending(q, p, status, NULL);
        libdm__qmp_pending_free(p);
    }
}

void libdm__qmp_drop_events(libdm_qmp *q)
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
void libdm__qmp_drop_caps(libdm_qmp *q)
{
    if (q->caps && !q->caps->sent)
        libdm__qmp_pending_free(q->caps);
    q->caps = NULL;
}

void libdm__qmp_close_socket(libdm_qmp *q)
{
    libdm__timer_disarm(q->ctx, &q->retry_timer);
    libdm__timer_disarm(q->ctx, &q->phase_timer);
    libdm__watch_del(q->watch);
    q->watch = NULL;
    libdm__close(&q->fd);
}

/* The connection is unusable: close it, and give every call its result. */
void libdm__qmp_go_broken(libdm_qmp *q, int err, const char *fmt, ...)
{
    va_list ap;
    char *why = NULL;

    if (libdm__qmp_is_final(q))
        return;
    va_start(ap, fmt);
    if (vasprintf(&why, fmt, ap) < 0)
        why = NULL;
    va_end(ap);
    /* The peer going away (most often the DM ending) reaches the caller
     * anyway, through every pending call and the state callback: not an
     * error of its own. A peer breaking the protocol is worth a warning. */
    libdm__log(q->ctx, err == -ECONNRESET ? XTL_INFO : XTL_WARN, -1, "%s: %s", libdm__qmp_who(q),
               why ? why : "QMP connection failed");
    if (why) {
        free(q->last_error);
        q->last_error = why;
    }
    q->broken_error = err;
    libdm__qmp_close_socket(q);
    libdm__qmp_drop_caps(q);
    libdm__qmp_fail_list(q, &q->inflight, err);
    libdm__qmp_fail_list(q, &q->queued, err);
    libdm__qmp_set_state(q, LIBDM_QMP_BROKEN, err);
    if (q->closing)
        libdm__qmp_finish_close(q, err);
}

/* ---- the close path ---- */

void libdm__qmp_finish_close(libdm_qmp *q, int status)
{
    q->close_status = status;
    /* The closed callback runs from libdm__qmp_deliver(), after the last call's. */
    if (libdm__defer(q->ctx, &q->deliver_timer) < 0)
        LIBDM__ERROR(q->ctx, "%s: cannot schedule the close completion", libdm__qmp_who(q));
}

/* The drain is over when nothing is owed and nothing half-written remains. */
void libdm__qmp_maybe_drained(libdm_qmp *q)
{
    if (q->state != LIBDM_QMP_DRAINING || q->inflight.count > 0 || q->queued.count > 0)
        return;
    libdm__qmp_close_socket(q);
    libdm__qmp_set_state(q, LIBDM_QMP_CLOSED, 0);
    libdm__qmp_finish_close(q, 0);
}

void libdm__qmp_drain_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;

    LIBDM__ERROR(ctx, "%s: monitor wedged: %u repl%s still outstanding at the close deadline",
                 libdm__qmp_who(q), q->inflight.count, q->inflight.count == 1 ? "y" : "ies");
    libdm__set_error(&q->last_error, "monitor wedged: %u reply(ies) outstanding at the close deadline",
                     q->inflight.count);
    libdm__qmp_close_socket(q);
    libdm__qmp_fail_list(q, &q->inflight, -ETIMEDOUT);
    libdm__qmp_fail_list(q, &q->queued, -ETIMEDOUT);
    libdm__qmp_set_state(q, LIBDM_QMP_CLOSED, -ETIMEDOUT);
    libdm__qmp_finish_close(q, -ETIMEDOUT);
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
        if (q->caps && q->caps->off < q->caps->len)
            return q->caps;
        /* Pipelined, the commands follow qmp_capabilities at once. */
        return q->pipelined && q->caps && q->caps->sent ? q->queued.head : NULL;
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
        LIBDM__DEBUG(q->ctx, "%s: QMP send: %s (arguments not shown)", libdm__qmp_who(q),
                     p->command ? p->command : "?");
        return;
    }
    LIBDM__DEBUG(q->ctx, "%s: QMP send: %s", libdm__qmp_who(q), text);
    free(text);
}

void libdm__qmp_flush(libdm_qmp *q)
{
    pending *p;
    int r;

    while ((p = next_to_send(q))) {
        r = send_pending(q, p);
        if (r < 0) {
            libdm__qmp_go_broken(q, r == -EPIPE ? -ECONNRESET : r, "cannot write to the monitor: %s",
                      strerror(-r));
            return;
        }
        if (r == 0)
            break;
        if (p->off < p->len)
            continue;
        log_sent(q, p);
        if (p != q->caps)
            libdm__qmp_list_remove(&q->queued, p);
        p->sent = true;
        libdm__qmp_list_append(&q->inflight, p);
    }
    if (q->watch)
        (void)libdm__watch_set_events(q->watch, (short)(POLLIN | (p ? POLLOUT : 0)));
    libdm__qmp_maybe_drained(q);
}


void libdm__qmp_unlink_delivery(libdm_qmp *q, libdm_qmp_slot *s)
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

void libdm__qmp_call_slot_destroy(libdm_qmp_slot *s)
{
    libdm_json_free(s->msg);
    if (s->destroy)
        s->destroy(s->userdata);
    free(s);
}

static void qmp_free(libdm_qmp *q)
{
    libdm_qmp_slot *s, *next;

    libdm__qmp_close_socket(q);
    libdm__qmp_drop_caps(q);
    libdm__qmp_fail_list(q, &q->inflight, -ECANCELED);
    libdm__qmp_fail_list(q, &q->queued, -ECANCELED);
    /* Completed but undelivered calls: their owners still hold the slots. */
    while ((s = q->deliver_head)) {
        libdm__qmp_unlink_delivery(q, s);
        s->qmp = NULL;
        if (s->floating)
            libdm__qmp_call_slot_destroy(s);
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
    libdm__qmp_drop_events(q);
    libdm__qmp_decoder_free(q->decoder);
    libdm_json_free(q->greeting);
    free(q->path);
    free(q->log_prefix);
    free(q->last_error);
    free(q->err_class);
    free(q->err_desc);
    free(q);
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

