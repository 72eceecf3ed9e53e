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
 *
 * This file: connecting, the greeting and negotiation, the read path, and
 * the constructor and settings. It sits on top of qmp-call.c, qmp-event.c
 * and qmp-core.c (see qmp-private.h for the floors).
 */
#include "qmp-private.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_READ_CHUNK 65536
#define QMP_DEFAULT_CALL_TIMEOUT_MS 30000
#define QMP_RETRY_MIN_MS 5
#define QMP_RETRY_MAX_MS 100
#define QMP_RENEGOTIATE_MAX 3

/* ---- input ---- */

static pending *find_inflight(libdm_qmp *q, const char *id)
{
    for (pending *p = q->inflight.head; p; p = p->next)
        if (!strcmp(p->id, id))
            return p;
    return NULL;
}

/* Builds qmp_capabilities (with "oob" if @oob) as q->caps, to be written
 * by the next flush. 0 or negative errno. */
static int build_caps(libdm_qmp *q, bool oob)
{
    libdm_json *args = NULL, *list;
    char *text;
    size_t len;
    int r;

    if (oob) {
        list = libdm_json_new_array();
        args = libdm_json_new_object();
        if (!list || !args || libdm_json_array_append(list, libdm_json_new_string("oob")) < 0 ||
            libdm_json_object_add(args, "enable", list) < 0) {
            libdm_json_free(args);
            return -ENOMEM;
        }
    }
    q->caps = calloc(1, sizeof(*q->caps));
    if (q->caps)
        q->caps->pass_fd = -1;
    r = q->caps ? libdm__next_id(q->ctx, q->caps->id, sizeof(q->caps->id)) : -ENOMEM;
    if (r >= 0)
        r = libdm__json_qmp_command("qmp_capabilities", args, q->caps->id, false, &text, &len);
    libdm_json_free(args);
    if (r >= 0) {
        q->caps->text = text;
        q->caps->len = len;
        q->caps->command = strdup("qmp_capabilities");
        if (!q->caps->command)
            r = -ENOMEM;
    }
    if (r < 0) {
        libdm__qmp_pending_free(q->caps);
        q->caps = NULL;
    }
    return r;
}

static void handle_greeting(libdm_qmp *q, libdm_json *msg)
{
    const libdm_json *g = libdm_json_object_get(msg, "QMP");
    const libdm_json *caps = libdm_json_object_get(g, "capabilities");
    int r;

    if (libdm_json_get_type(g) != LIBDM_JSON_OBJECT) {
        /* Bytes before the greeting (a previous client's reply: seen with
         * QEMU 7.2) are not ours: discard them. */
        LIBDM__DEBUG(q->ctx, "%s: discarding a message received before the greeting", libdm__qmp_who(q));
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
    if ((r = build_caps(q, q->oob)) < 0) {
        libdm__qmp_go_broken(q, r, "cannot build qmp_capabilities: %s", strerror(-r));
        return;
    }
    libdm__qmp_set_state(q, LIBDM_QMP_NEGOTIATING, 0);
    libdm__qmp_flush(q);
}

/* QEMU 7.2 sometimes mixes a new client's negotiation with the end of the
 * previous client's session (FACTS.md: 0.1-0.2 % of reconnects). Seen here
 * as a second greeting, then an error without id for what was left of our
 * qmp_capabilities. Either says the monitor started negotiating afresh or
 * lost our command: qmp_capabilities again, at most QMP_RENEGOTIATE_MAX
 * times (a device model saying it forever is refused). The earlier one is
 * forgotten: should its reply come after all, its id is unknown and it is
 * dropped; the new one is then answered "already complete"
 * (handle_caps_reply). QEMU answers in order, so once the new one is
 * answered nothing of the old is owed (the drain rule holds). A pipelined
 * connection is not retried: the commands that followed qmp_capabilities
 * may be lost as well, and only a start's new socket, which has had no
 * earlier client, is pipelined. */
static bool renegotiate(libdm_qmp *q, const char *why)
{
    int r;

    if (q->state != LIBDM_QMP_NEGOTIATING || q->pipelined || !q->caps || !q->caps->sent ||
        q->renegotiations >= QMP_RENEGOTIATE_MAX)
        return false;
    q->renegotiations++;
    LIBDM__WARN(q->ctx, "%s: %s while negotiating: the monitor is out of step (QEMU's "
                "reconnect race); qmp_capabilities again", libdm__qmp_who(q), why);
    libdm__qmp_list_remove(&q->inflight, q->caps);
    libdm__qmp_pending_free(q->caps);
    q->caps = NULL;
    if ((r = build_caps(q, q->oob)) < 0) {
        libdm__qmp_go_broken(q, r, "cannot build qmp_capabilities: %s", strerror(-r));
        return true;
    }
    libdm__qmp_flush(q);
    return true;
}

static bool is_greeting(const libdm_json *msg)
{
    return libdm_json_get_type(libdm_json_object_get(msg, "QMP")) == LIBDM_JSON_OBJECT;
}

static void handle_caps_reply(libdm_qmp *q, libdm_json *msg)
{
    const libdm_json *err = libdm_json_object_get(msg, "error");
    const char *cls = libdm__json_get_str(err, "class");

    /* After a renegotiation: an earlier qmp_capabilities took effect. */
    if (err && q->renegotiations && cls && !strcmp(cls, "CommandNotFound"))
        err = NULL;
    if (err) {
        libdm__qmp_go_broken(q, -EPROTO, "qmp_capabilities refused: %s: %s", cls ? cls : "?",
                  libdm__json_get_str(err, "desc") ? libdm__json_get_str(err, "desc") : "?");
        libdm_json_free(msg);
        return;
    }
    libdm_json_free(msg);
    libdm__timer_disarm(q->ctx, &q->phase_timer);
    if (q->state == LIBDM_QMP_NEGOTIATING)
        libdm__qmp_set_state(q, LIBDM_QMP_READY, 0);
    libdm__qmp_flush(q);
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
        LIBDM__WARN(q->ctx, "%s: dropping a QMP reply with an id this connection never sent", libdm__qmp_who(q));
        libdm_json_free(msg);
        return;
    }
    libdm__qmp_list_remove(&q->inflight, p);
    was_caps = p == q->caps;
    if (was_caps) {
        q->caps = NULL;
        libdm__qmp_pending_free(p);
        handle_caps_reply(q, msg);
        return;
    }
    libdm__qmp_complete_pending(q, p, err ? -EREMOTEIO : 0, msg);
    libdm__qmp_pending_free(p);
    libdm__qmp_maybe_drained(q);
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
        libdm__qmp_go_broken(q, -EPROTO, "the monitor sent a message that is not a JSON object");
        return;
    }
    if (event) {
        libdm__qmp_dispatch_event(q, msg, event);
        if (q->queue_events && !libdm__qmp_is_final(q))
            libdm__qmp_queue_event(q, msg);
        else
            libdm_json_free(msg);
        return;
    }
    if (libdm_json_object_get(msg, "return") || libdm_json_object_get(msg, "error")) {
        if (!id && libdm_json_object_get(msg, "error")) {
            /* QEMU answers without an id only when it could not parse a
             * command: we never send such, so the stream is out of step. */
            const char *desc;

            if (renegotiate(q, "an error without id")) {
                libdm_json_free(msg);
                return;
            }
            desc = libdm__json_get_str(libdm_json_object_get(msg, "error"), "desc");
            libdm__qmp_go_broken(q, -EPROTO, "QMP error without id (%s): the monitor and libdm are out of step",
                      desc ? desc : "no description");
            libdm_json_free(msg);
            return;
        }
        handle_reply(q, msg, id);
        return;
    }
    if (is_greeting(msg) && renegotiate(q, "a second greeting")) {
        libdm_json_free(msg);
        return;
    }
    LIBDM__WARN(q->ctx, "%s: dropping a QMP message that is neither reply nor event", libdm__qmp_who(q));
    libdm_json_free(msg);
}

static void log_received(libdm_qmp *q, const libdm_json *msg)
{
    char *text;

    if (!libdm__log_enabled(q->ctx, XTL_DEBUG) || libdm__qmp_redact_json(msg, &text) < 0)
        return;
    LIBDM__DEBUG(q->ctx, "%s: QMP recv: %.*s", libdm__qmp_who(q), 4096, text);
    free(text);
}

static void process_input(libdm_qmp *q)
{
    const char *why = NULL;
    libdm_json *msg;
    int r;

    while (!libdm__qmp_is_final(q) && (r = libdm__qmp_decoder_next(q->decoder, &msg, &why)) != 0) {
        if (r < 0) {
            if (q->state == LIBDM_QMP_GREETING && r == -EPROTO) {
                /* Junk before the greeting is discarded, not fatal. */
                LIBDM__DEBUG(q->ctx, "%s: discarding bytes received before the greeting", libdm__qmp_who(q));
                continue;
            }
            libdm__qmp_go_broken(q, r, "%s", why ? why : "malformed QMP stream");
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
                libdm__qmp_list_remove(&q->inflight, p);
                libdm__qmp_complete_pending(q, p, 0, NULL);
                libdm__qmp_pending_free(p);
            }
        }
        LIBDM__DEBUG(q->ctx, "%s: monitor closed after SHUTDOWN", libdm__qmp_who(q));
        libdm__qmp_close_socket(q);
        libdm__qmp_fail_list(q, &q->inflight, -ECONNRESET);
        libdm__qmp_fail_list(q, &q->queued, -ECONNRESET);
        libdm__qmp_set_state(q, LIBDM_QMP_CLOSED, 0);
        if (q->closing)
            libdm__qmp_finish_close(q, 0);
        return;
    }
    libdm__qmp_go_broken(q, -ECONNRESET, "%s", err ? "the monitor connection was reset"
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
        libdm__qmp_go_broken(q, -errno, "cannot read from the monitor: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        handle_eof(q, 0);
        return;
    }
    r = libdm__qmp_decoder_feed(q->decoder, buf, (size_t)n);
    if (r < 0) {
        libdm__qmp_go_broken(q, r, "QMP message exceeds the size limit of %zu bytes", q->limits.max_message);
        return;
    }
    process_input(q);
}

static void on_fd(libdm_ctx *ctx, int fd, short revents, void *user)
{
    libdm_qmp *q = user;

    libdm__qmp_ref(q);
    if (revents & (POLLIN | POLLHUP | POLLERR))
        on_readable(q);
    if (!libdm__qmp_is_final(q) && (revents & POLLOUT)) {
        q->out_blocked = false;
        libdm__qmp_flush(q);
    }
    libdm__qmp_unref(q);
}

/* ---- connecting ---- */

static void phase_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;

    libdm__qmp_go_broken(q, -ETIMEDOUT, "no QMP %s before the deadline",
              q->state == LIBDM_QMP_CONNECTING ? "connection" :
              q->state == LIBDM_QMP_GREETING ? "greeting" : "negotiation");
}

static int start_io(libdm_qmp *q)
{
    int r = libdm__watch_add(q->ctx, q->fd, POLLIN, on_fd, q, &q->watch);

    if (r < 0)
        return r;
    libdm__qmp_set_state(q, LIBDM_QMP_GREETING, 0);
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
        /* QEMU serves one monitor client: a forked child must not hold it. */
        libdm__fork_drop_fd(q->fd);
    }
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return start_io(q);
    r = -errno;
    if (r == -ENOENT || r == -ECONNREFUSED || r == -EAGAIN) {
        /* QEMU creates its socket a little after exec, and a backlog of one
         * refuses a second client until the first is accepted: retry. */
        libdm__close(&q->fd);
        LIBDM__DEBUG(q->ctx, "%s: connect: %s; retrying in %u ms", libdm__qmp_who(q), strerror(-r), q->retry_ms);
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
        libdm__qmp_go_broken(q, r, "cannot connect to %s: %s", q->path, strerror(-r));
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
    libdm__timer_init(&q->deliver_timer, libdm__qmp_deliver, q);
    libdm__timer_init(&q->held_timer, libdm__qmp_deliver_held, q);
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
        libdm__qmp_close_socket(q);
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
    libdm__fork_drop_fd(fd); /* a forked child must not hold the monitor */
    r = libdm__set_nonblock(fd, true);
    if (r >= 0)
        r = libdm__set_cloexec(fd, true);
    if (r >= 0)
        r = arm_phase_deadline(q, timeout_ms);
    if (r >= 0)
        r = start_io(q);
    if (r < 0)
        libdm__qmp_close_socket(q);
    return r;
}

int libdm__qmp_connect_fd_pipelined(libdm_qmp *q, int fd, int timeout_ms)
{
    int r = libdm_qmp_connect_fd(q, fd, timeout_ms);

    if (r >= 0)
        q->pipelined = true;
    return r;
}

static bool ready_or_final(void *arg)
{
    libdm_qmp *q = arg;

    return q->state == LIBDM_QMP_READY || libdm__qmp_is_final(q);
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

