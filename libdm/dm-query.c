/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Calls beside or behind another operation (issue 19: "a query allowed
 * while another operation runs, or queued, not -EBUSY").
 *
 * query-status alongside another operation. query-status is read-only, and QEMU
 * answers it whatever else its monitor does, so it runs at once beside the
 * running operation, never queued behind it: nothing can wait on it (a
 * migration phase that queried its own DM would otherwise wait for itself).
 *
 * Each query has its own monitor call and deadline; its callback joins the
 * DM's completions (deferred, in the order they ended). It only sets the
 * runstate: the DM's state, last_error and BROKEN belong to the running
 * operation. Floor 12 (below dm.c): calls nothing of dm*.c but dm-error.c.
 *
 * Requests behind the running operation (query_devices, apply_config: a
 * chain of calls, or a change): queued in order, each begins from the loop
 * once the DM has no operation, with its own deadline from then. A DM that
 * died or lost its monitor meanwhile refuses each as it comes (-ESRCH once
 * its end is known: the running operation waits for that). Like the side
 * queries, they are
 * the DM's "last async call" for set_op_destroy.
 *
 * DO NOT TRUST QEMU: the answer arrives through the bounded QMP reader, and
 * the deadline bounds the wait.
 */
#include "dm-private.h"

#include <stdlib.h>
#include <string.h>

static void unlink_query(libdm_dm *dm, side_query *q)
{
    side_query **pp = &dm->queries;

    while (*pp && *pp != q)
        pp = &(*pp)->next;
    if (*pp)
        *pp = q->next;
}

static void query_free(libdm_dm *dm, side_query *q)
{
    unlink_query(dm, q);
    libdm__timer_disarm(dm->ctx, &q->deadline);
    q->call = libdm_qmp_slot_free(q->call);
    free(q);
}

void libdm__dm_complete(libdm_dm *dm, libdm_dm_done_fn *cb, void *user,
                        void (*destroy)(void *user), int status, uint64_t side_id)
{
    completion *c = calloc(1, sizeof(*c));

    if (!c) {
        LIBDM__ERROR(dm->ctx, "%s: out of memory: a callback is lost", dm->name);
        if (destroy)
            destroy(user);
        return;
    }
    *c = (completion){ .cb = cb, .user = user, .destroy = destroy, .status = status,
                       .side_id = side_id };
    *dm->done_tail = c;
    dm->done_tail = &c->next;
    (void)libdm__defer(dm->ctx, &dm->op_done);
}

/* Ends @q: its callback is queued with the operations' completions. */
static void query_finish(side_query *q, int status)
{
    libdm_dm *dm = q->dm;

    libdm__dm_complete(dm, q->cb, q->user, q->destroy, status, q->id);
    query_free(dm, q);
}

static void on_reply(libdm_qmp *qmp, const libdm_qmp_reply *r, void *user)
{
    side_query *q = user;
    libdm_dm *dm = q->dm;
    const char *rs;
    int status = 0;

    (void)qmp;
    q->call = libdm_qmp_slot_free(q->call);
    if (r->status < 0) {
        status = dm->exited || dm->pid_gone ? -ESRCH : r->status;
        LIBDM__DEBUG(dm->ctx, "%s: query-status beside %s failed: %s", dm->name,
                     dm->op ? dm->op->ops->name : "an operation", strerror(-r->status));
    } else if (!(rs = libdm__json_get_str(r->value, "status"))) {
        status = -EPROTO;
    } else {
        libdm__dm_set_runstate(dm, rs);
    }
    query_finish(q, status);
}

static void on_deadline(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    side_query *q = user;

    (void)ctx, (void)t;
    LIBDM__DEBUG(q->dm->ctx, "%s: query-status beside an operation: no answer by its "
                 "deadline", q->dm->name);
    query_finish(q, -ETIMEDOUT);
}

int libdm__dm_side_query(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb, void *user)
{
    side_query *q = calloc(1, sizeof(*q));
    int r;

    if (!q)
        return -ENOMEM;
    *q = (side_query){ .dm = dm, .cb = cb, .user = user, .id = dm->side_ids + 1 };
    libdm__timer_init(&q->deadline, on_deadline, q);
    r = libdm__timer_arm(dm->ctx, &q->deadline,
                         libdm__deadline(timeout_ms > 0 ? timeout_ms : dm->timeout_ms));
    if (r >= 0)
        r = libdm__qmp_call_async_internal(dm->qmp, "query-status", NULL,
                                           timeout_ms > 0 ? timeout_ms : dm->timeout_ms,
                                           on_reply, q, &q->call);
    if (r < 0) {
        libdm__timer_disarm(dm->ctx, &q->deadline);
        free(q);
        return r;
    }
    q->next = dm->queries;
    dm->queries = q;
    dm->side_ids = q->id;
    dm->last_side = q->id;
    return 0;
}

int libdm__dm_side_query_set_destroy(libdm_dm *dm, uint64_t id, void (*destroy)(void *user))
{
    for (side_query *q = dm->queries; q; q = q->next)
        if (q->id == id) {
            q->destroy = destroy;
            return 0;
        }
    for (libdm__queued *q = dm->queued; q; q = q->next)
        if (q->id == id) {
            q->destroy = destroy;
            return 0;
        }
    for (completion *c = dm->done_head; c; c = c->next)
        if (c->side_id == id) {
            c->destroy = destroy;
            return 0;
        }
    return -ENOENT; /* its callback ran */
}

void libdm__dm_side_queries_end(libdm_dm *dm, int status)
{
    while (dm->queries)
        query_finish(dm->queries, dm->exited || dm->pid_gone ? -ESRCH : status);
}

void libdm__dm_side_queries_drop(libdm_dm *dm)
{
    while (dm->queries) {
        side_query *q = dm->queries;

        if (q->destroy)
            q->destroy(q->user);
        query_free(dm, q);
    }
}

/* ---- requests behind the running operation ---- */

/* Ends @q without starting it: its callback joins the completions. */
static void queued_end(libdm_dm *dm, libdm__queued *q, int status)
{
    libdm__dm_complete(dm, q->cb, q->user, q->destroy, status, q->id);
    q->free(q);
}

/* The next request begins, if the DM has no operation (a callback may have
 * begun one first: then that one's end kicks again). */
void libdm__dm_queue_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    libdm__queued *q = dm->queued;
    void (*destroy)(void *user);
    int r;

    (void)ctx, (void)t;
    if (!q || dm->op)
        return;
    dm->queued = q->next;
    destroy = q->destroy;
    r = q->start(dm, q);
    if (r < 0) {
        queued_end(dm, q, r);
        libdm__dm_queue_kick(dm);
        return;
    }
    if (dm->op)
        dm->op->destroy = destroy;
    q->free(q);
}

void libdm__dm_queue(libdm_dm *dm, libdm__queued *q)
{
    libdm__queued **pp = &dm->queued;

    while (*pp)
        pp = &(*pp)->next;
    q->next = NULL;
    q->id = ++dm->side_ids;
    *pp = q;
    dm->last_side = q->id;
}

void libdm__dm_queue_kick(libdm_dm *dm)
{
    if (dm->queued && !dm->op && dm->ctx)
        (void)libdm__defer(dm->ctx, &dm->queue_timer);
}

void libdm__dm_queue_drop(libdm_dm *dm)
{
    libdm__timer_disarm(dm->ctx, &dm->queue_timer);
    while (dm->queued) {
        libdm__queued *q = dm->queued;

        dm->queued = q->next;
        if (q->destroy)
            q->destroy(q->user);
        q->free(q);
    }
}
