/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QEMU's events of a DM for the host (issue 19): subscriptions that belong
 * to the handle, not to a monitor connection. dm.c's own listener, added
 * on every connection the handle gets (libdm__dm_attach_qmp, the one place
 * a DM's monitor is set), hands each event here; so a subscription hears
 * whatever connection the handle has, without re-registering anything.
 *
 * Events are copied into a per-DM queue (bounded: DM_SUB_MAX_QUEUED) and
 * delivered from the loop, one per timer run, held back while any blocking
 * call runs: a callback never runs inside a libdm call. A callback may
 * free any subscription (its own included) or release the DM.
 *
 * DO NOT TRUST QEMU: the event's size, depth and value count were bounded
 * by the QMP reader; here only their number is. Floor 12 (below dm.c):
 * calls nothing of dm*.c.
 */
#include "dm-private.h"

#include <stdlib.h>
#include <string.h>

static bool sub_matches(const libdm_dm_subscription *s, const char *name)
{
    return !s->dead && (!s->event || !strcmp(s->event, name));
}

/* A subscription hears only events that came after it was made (not one
 * queued before, nor the one being delivered when a callback made it). */
static bool sub_hears(const libdm_dm_subscription *s, const sub_event *e)
{
    return e->seq > s->since && sub_matches(s, e->name);
}

static bool any_match(const libdm_dm *dm, const char *name)
{
    for (const libdm_dm_subscription *s = dm->subs; s; s = s->next)
        if (sub_matches(s, name))
            return true;
    return false;
}

static void sub_event_free(sub_event *e)
{
    free(e->name);
    libdm_json_free(e->data);
    free(e);
}

static void unlink_sub(libdm_dm *dm, libdm_dm_subscription *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        dm->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* Frees what was freed while callbacks ran. */
static void sweep(libdm_dm *dm)
{
    libdm_dm_subscription *s = dm->subs, *next;

    if (dm->subs_running)
        return;
    for (; s; s = next) {
        next = s->next;
        if (!s->dead)
            continue;
        unlink_sub(dm, s);
        free(s->event);
        free(s);
    }
}

/* One event per run: a callback may release the DM (then nothing of it is
 * touched after), free subscriptions, or make calls that return -EDEADLK. */
static void subs_fire(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm_dm *dm = user;
    sub_event *e = dm->sub_head;
    libdm_dm_subscription *s;
    bool gone = false;

    if (!e)
        return;
    /* Any blocking call, the DM's own included: never inside a call. */
    if (libdm__blocking_other(ctx, NULL)) {
        libdm__postpone(ctx, t);
        return;
    }
    dm->sub_head = e->next;
    if (!dm->sub_head)
        dm->sub_tail = &dm->sub_head;
    dm->sub_count--;
    if (dm->sub_head)
        (void)libdm__defer(ctx, t);
    dm->subs_running++;
    dm->subs_gone = &gone;
    for (s = dm->subs; s; s = s->next) {
        if (!sub_hears(s, e))
            continue;
        s->cb(dm, e->name, e->data, s->userdata);
        if (gone)
            break; /* released: dm and its subscriptions are gone */
    }
    if (!gone) {
        dm->subs_gone = NULL;
        dm->subs_running--;
        sweep(dm);
    }
    sub_event_free(e);
}

void libdm__dm_subs_init(libdm_dm *dm)
{
    dm->sub_tail = &dm->sub_head;
    libdm__timer_init(&dm->sub_timer, subs_fire, dm);
}

void libdm__dm_subs_event(libdm_dm *dm, const char *name, const libdm_json *data)
{
    sub_event *e;

    if (!dm->ctx || !any_match(dm, name))
        return;
    if (dm->sub_count >= DM_SUB_MAX_QUEUED) {
        LIBDM__WARN(dm->ctx, "%s: more than %d undelivered QEMU events: %s dropped", dm->name,
                    DM_SUB_MAX_QUEUED, name);
        return;
    }
    e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name)) || (data && libdm_json_copy(data, &e->data) < 0)) {
        if (e)
            free(e->name);
        free(e);
        LIBDM__WARN(dm->ctx, "%s: out of memory: QEMU event %s not delivered", dm->name, name);
        return;
    }
    e->seq = ++dm->sub_seq;
    *dm->sub_tail = e;
    dm->sub_tail = &e->next;
    dm->sub_count++;
    (void)libdm__defer(dm->ctx, &dm->sub_timer);
}

/* The handle goes (release, or its context freed): each live subscription's
 * destroy runs once; floating ones are freed, the caller's wait for
 * libdm_dm_subscription_free(). */
void libdm__dm_subs_detach(libdm_dm *dm)
{
    if (dm->subs_gone) {
        *dm->subs_gone = true; /* released from a subscription's callback */
        dm->subs_gone = NULL;
    }
    dm->subs_running = 0;
    if (dm->ctx)
        libdm__timer_disarm(dm->ctx, &dm->sub_timer);
    while (dm->sub_head) {
        sub_event *e = dm->sub_head;

        dm->sub_head = e->next;
        sub_event_free(e);
    }
    dm->sub_tail = &dm->sub_head;
    dm->sub_count = 0;
    while (dm->subs) {
        libdm_dm_subscription *s = dm->subs;
        bool was_dead = s->dead;

        unlink_sub(dm, s);
        s->dm = NULL;
        if (!was_dead && s->destroy)
            s->destroy(s->userdata);
        if (was_dead || s->floating) {
            free(s->event);
            free(s);
        }
    }
}

int libdm_dm_subscribe(libdm_dm *dm, const char *event, libdm_dm_qmp_event_fn *cb,
                       void *userdata, libdm_destroy_fn *destroy,
                       libdm_dm_subscription **ret)
{
    libdm_dm_subscription *s;

    if (!dm || !cb || (event && (!*event || strlen(event) > DM_SUB_MAX_NAME)))
        return -EINVAL;
    if (!dm->ctx)
        return -ESHUTDOWN;
    s = calloc(1, sizeof(*s));
    if (!s || (event && !(s->event = strdup(event)))) {
        free(s);
        return -ENOMEM;
    }
    *s = (libdm_dm_subscription){ .dm = dm, .event = s->event, .cb = cb,
                                  .userdata = userdata, .destroy = destroy,
                                  .floating = !ret, .since = dm->sub_seq };
    /* At the tail: subscribers hear an event in the order they came. */
    if (!dm->subs) {
        dm->subs = s;
    } else {
        libdm_dm_subscription *last = dm->subs;

        while (last->next)
            last = last->next;
        last->next = s;
        s->prev = last;
    }
    if (ret)
        *ret = s;
    return 0;
}

libdm_dm_subscription *libdm_dm_subscription_free(libdm_dm_subscription *s)
{
    libdm_dm *dm;

    if (!s)
        return NULL;
    dm = s->dm;
    if (!dm) {
        /* Its handle went first: destroy ran then. */
        free(s->event);
        free(s);
        return NULL;
    }
    if (s->dead)
        return NULL; /* freed twice within one delivery: once is enough */
    s->dead = true;
    if (s->destroy)
        s->destroy(s->userdata);
    sweep(dm);
    return NULL;
}
