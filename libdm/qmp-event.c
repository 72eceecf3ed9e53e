/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP client: events. Listeners (libdm's own and the host's), events held
 * while a blocking call for another object runs, and the event queue.
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

static bool listener_matches(const libdm_qmp_slot *s, const char *name)
{
    return !s->dead && (!s->event || !strcmp(s->event, name));
}

void libdm__qmp_sweep_listeners(libdm_qmp *q)
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
    for (libdm_qmp_slot *s = q->listeners; s && !libdm__qmp_is_final(q); s = s->next)
        if (listener_matches(s, name) && s->internal == internal)
            s->event_cb(q, name, data, s->userdata);
    q->iterating--;
    libdm__qmp_sweep_listeners(q);
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
                            "object runs: dropping one", libdm__qmp_who(q), q->limits.max_queued_events);
        return;
    }
    e = calloc(1, sizeof(*e));
    if (!e || libdm_json_copy(msg, &e->msg) < 0) {
        free(e);
        LIBDM__WARN(q->ctx, "%s: out of memory: an event is not delivered", libdm__qmp_who(q));
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

void libdm__qmp_deliver_held(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_qmp *q = user;

    if (libdm__blocking_other(ctx, q->owner)) {
        libdm__postpone(ctx, t);
        return;
    }
    libdm__qmp_ref(q);
    /* One per run: a listener may make a blocking call, or close q. */
    if (q->held_head && !libdm__qmp_is_final(q)) {
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
    libdm__qmp_unref(q);
}

void libdm__qmp_dispatch_event(libdm_qmp *q, libdm_json *msg, const char *name)
{
    if (!strcmp(name, "SHUTDOWN"))
        q->saw_shutdown = true;
    run_listeners(q, msg, name, true);
    if (libdm__qmp_is_final(q) || !has_host_listener(q, name))
        return;
    if (q->held_head || libdm__blocking_other(q->ctx, q->owner))
        hold_event(q, msg);
    else
        run_listeners(q, msg, name, false);
}

void libdm__qmp_queue_event(libdm_qmp *q, libdm_json *msg)
{
    queued_event *e;

    if (q->ev_count >= q->limits.max_queued_events) {
        libdm_json_free(msg);
        libdm__qmp_go_broken(q, -ENOBUFS, "more than %zu unread QMP events: the monitor floods us",
                  q->limits.max_queued_events);
        return;
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        libdm_json_free(msg);
        libdm__qmp_go_broken(q, -ENOMEM, "out of memory");
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

int libdm_qmp_set_event_queue(libdm_qmp *q, int enable)
{
    q->queue_events = !!enable;
    if (!enable)
        libdm__qmp_drop_events(q);
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
    libdm__qmp_sweep_listeners(q);
}
