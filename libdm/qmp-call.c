/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP client: calls and their slots, deferred delivery of the replies
 * (callbacks never run inside the call that caused them), and the close.
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

static void call_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp_slot *s = user;
    libdm_qmp *q = s->qmp;
    pending *p = s->pending;

    LIBDM__WARN(ctx, "%s: no reply to %s before its deadline", libdm__qmp_who(q), p->command);
    libdm__set_error(&q->last_error, "no reply to %s before its deadline", p->command);
    if (p->off == 0) {
        /* Never written: QEMU owes nothing, forget it entirely. */
        libdm__qmp_list_remove(&q->queued, p);
        libdm__qmp_complete_pending(q, p, -ETIMEDOUT, NULL);
        libdm__qmp_pending_free(p);
        return;
    }
    /* Written: the reply is still owed and will be drained and dropped. */
    libdm__qmp_complete_pending(q, p, -ETIMEDOUT, NULL);
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
    if (q->closing || libdm__qmp_is_final(q))
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
    libdm__qmp_list_append(&q->queued, p);
    if (ret_slot)
        *ret_slot = s;
    /* A full socket is retried on POLLOUT, not on every new call. */
    if (!q->out_blocked)
        libdm__qmp_flush(q);
    return 0;
fail:
    libdm__qmp_pending_free(p);
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
    return libdm__qmp_call_async_internal_fd(q, command, arguments, -1, timeout_ms, cb,
                                             userdata, ret_slot);
}

int libdm__qmp_call_async_internal_fd(libdm_qmp *q, const char *command,
                                      const libdm_json *arguments, int fd, int timeout_ms,
                                      libdm_qmp_reply_fn *cb, void *userdata,
                                      libdm_qmp_slot **ret_slot)
{
    libdm_qmp_slot *s = NULL;
    int r = new_call(q, command, arguments, fd, timeout_ms, cb, userdata, &s);

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
    libdm__qmp_ref(q);
    /* The call's own deadline completes it; the wait cannot outlive it. */
    r = libdm__wait_for(q->ctx, q->owner, sync_done, &c, UINT64_MAX);
    libdm_qmp_slot_free(s);
    libdm__qmp_unref(q);
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

void libdm_qmp_slot_set_destroy(libdm_qmp_slot *s, libdm_destroy_fn *fn)
{
    if (s)
        s->destroy = fn;
}

static bool in_delivery_list(const libdm_qmp *q, const libdm_qmp_slot *s)
{
    return s->prev || q->deliver_head == s;
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
        libdm__qmp_sweep_listeners(q);
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
                libdm__qmp_list_remove(&q->queued, p);
                libdm__qmp_pending_free(p);
            }
            /* Else (partly) written: it stays as an orphan and is drained. */
        }
        if (s->done && in_delivery_list(q, s))
            libdm__qmp_unlink_delivery(q, s);
    }
    libdm__qmp_call_slot_destroy(s);
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
void libdm__qmp_deliver(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;
    bool hold = libdm__blocking_other(ctx, q->owner);
    libdm_qmp_slot *s;

    libdm__qmp_ref(q);
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
        libdm__qmp_unlink_delivery(q, s);
        s->in_callback = true;
        q->current_msg = s->msg;
        s->reply_cb(q, &reply, s->userdata);
        q->current_msg = NULL;
        s->in_callback = false;
        if (s->floating || s->free_after_callback) {
            s->qmp = NULL;
            libdm__qmp_call_slot_destroy(s);
        }
    }
    if (hold && (q->deliver_head || (q->closing && !q->close_done && q->closed_cb))) {
        libdm__postpone(ctx, t);
        libdm__qmp_unref(q);
        return;
    }
    if (q->closing && !q->close_done && libdm__qmp_is_final(q) && !q->deliver_head) {
        q->close_done = true;
        if (q->closed_cb)
            q->closed_cb(q, q->close_status, q->closed_userdata);
        libdm__ctx_closing_add(q->ctx, -1);
        closing_unlink(q);
        /* Drop the reference the caller handed over at close. */
        libdm__qmp_unref(q);
    }
    libdm__qmp_unref(q);
}

/* Calls never written are cancelled; a half-written one is finished. */
static void cancel_unsent(libdm_qmp *q)
{
    pending *p = q->queued.head, *next;

    for (; p; p = next) {
        next = p->next;
        if (p->off > 0)
            continue;
        libdm__qmp_list_remove(&q->queued, p);
        libdm__qmp_complete_pending(q, p, -ECANCELED, NULL);
        libdm__qmp_pending_free(p);
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
     * completes (dropped in libdm__qmp_deliver()). */
    libdm__ctx_closing_add(q->ctx, 1);
    q->closing_next = q->ctx->closing_qmps;
    if (q->closing_next)
        q->closing_next->closing_prev = q;
    q->ctx->closing_qmps = q;
    cancel_unsent(q);
    if (libdm__qmp_is_final(q)) {
        libdm__qmp_finish_close(q, 0);
        return 0;
    }
    if (q->state == LIBDM_QMP_CONNECTING || q->state == LIBDM_QMP_GREETING) {
        libdm__qmp_close_socket(q);
        libdm__qmp_set_state(q, LIBDM_QMP_CLOSED, 0);
        libdm__qmp_finish_close(q, 0);
        return 0;
    }
    libdm__qmp_set_state(q, LIBDM_QMP_DRAINING, 0);
    libdm__timer_disarm(q->ctx, &q->phase_timer);
    libdm__timer_init(&q->phase_timer, libdm__qmp_drain_deadline, q);
    r = libdm__timer_arm(q->ctx, &q->phase_timer, libdm__deadline(timeout_ms));
    if (r < 0)
        LIBDM__ERROR(q->ctx, "%s: cannot arm the drain deadline", libdm__qmp_who(q));
    if (q->inflight.count)
        LIBDM__DEBUG(q->ctx, "%s: draining %u outstanding repl%s before close", libdm__qmp_who(q),
                     q->inflight.count, q->inflight.count == 1 ? "y" : "ies");
    libdm__qmp_maybe_drained(q);
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

/* libdm_ctx_free(): every drain ends by @abs_ms at the latest. */
void libdm__qmp_hurry_closing(libdm_ctx *ctx, uint64_t abs_ms)
{
    for (libdm_qmp *q = ctx->closing_qmps; q; q = q->closing_next)
        if (q->state == LIBDM_QMP_DRAINING && libdm__timer_armed(&q->phase_timer) &&
            q->phase_timer.deadline > abs_ms)
            (void)libdm__timer_arm(ctx, &q->phase_timer, abs_ms);
}
