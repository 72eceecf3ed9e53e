/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Header-only adapter: drives a libdm context from a systemd sd-event loop.
 *
 *     libdm_sdevent *a;
 *     libdm_sdevent_attach(ctx, event, &a);   ... sd_event_loop(event) ...
 *     libdm_sdevent_detach(a);                 before libdm_ctx_free(ctx)
 *
 * The context's fd (libdm_ctx_get_fd()) becomes an IO source and its
 * deadline (libdm_ctx_get_timeout()) a CLOCK_MONOTONIC time source, re-read
 * in the IO source's prepare step, i.e. before every wait: libdm calls made
 * from the application's own handlers (libdm_dm_start_async(), ...) are
 * seen at the next iteration. Both sources call libdm_ctx_process(). The
 * context must not use hooks mode. Link with libsystemd (pkg-config
 * libdm-sdevent). Compiles with -std=c11 alone.
 *
 * libdm_sdevent_set_priority() puts both sources at an sd-event priority:
 * a daemon whose own sources must come first gives libdm a larger number
 * (lower priority), e.g. SD_EVENT_PRIORITY_NORMAL + 1; libdm's dispatches
 * are bounded (ctx.h), so it is never starved for long.
 */
#ifndef LIBDM_ADAPTERS_SD_EVENT_H
#define LIBDM_ADAPTERS_SD_EVENT_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include <libdm/ctx.h>

/* CLOCK_MONOTONIC is POSIX: <time.h> hides it under strict ISO C. */
#ifdef CLOCK_MONOTONIC
#define LIBDM_SDEVENT__CLOCK CLOCK_MONOTONIC
#else
#define LIBDM_SDEVENT__CLOCK 1 /* Linux's CLOCK_MONOTONIC */
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct libdm_sdevent {
    libdm_ctx *ctx;
    sd_event_source *io;
    sd_event_source *timer;
} libdm_sdevent;

static inline int libdm_sdevent__arm(libdm_sdevent *a)
{
    uint64_t abs_ms;

    if (libdm_ctx_get_timeout(a->ctx, &abs_ms) <= 0)
        return sd_event_source_set_enabled(a->timer, SD_EVENT_OFF);
    /* sd-event counts in usec; 0 would be "unset", 1 is as due. */
    if (abs_ms > UINT64_MAX / 1000 - 1)
        abs_ms = UINT64_MAX / 1000 - 1;
    if (sd_event_source_set_time(a->timer, abs_ms ? abs_ms * 1000 : 1) < 0)
        return -EINVAL;
    return sd_event_source_set_enabled(a->timer, SD_EVENT_ONESHOT);
}

static inline int libdm_sdevent__prepare(sd_event_source *s, void *userdata)
{
    (void)s;
    return libdm_sdevent__arm((libdm_sdevent *)userdata);
}

static inline int libdm_sdevent__on_io(sd_event_source *s, int fd, uint32_t revents,
                                       void *userdata)
{
    (void)s;
    (void)fd;
    (void)revents;
    (void)libdm_ctx_process(((libdm_sdevent *)userdata)->ctx);
    return 0;
}

static inline int libdm_sdevent__on_time(sd_event_source *s, uint64_t usec, void *userdata)
{
    (void)s;
    (void)usec;
    (void)libdm_ctx_process(((libdm_sdevent *)userdata)->ctx);
    return 0;
}

/* Stops driving the context; frees the adapter. Returns NULL. */
static inline libdm_sdevent *libdm_sdevent_detach(libdm_sdevent *a)
{
    if (!a)
        return NULL;
    sd_event_source_disable_unref(a->io);
    sd_event_source_disable_unref(a->timer);
    free(a);
    return NULL;
}

/* Registers @ctx with @event. 0, or a negative errno. */
static inline int libdm_sdevent_attach(libdm_ctx *ctx, sd_event *event,
                                       libdm_sdevent **ret_adapter)
{
    libdm_sdevent *a;
    int fd = libdm_ctx_get_fd(ctx), r;

    if (fd < 0)
        return fd;
    a = (libdm_sdevent *)calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->ctx = ctx;
    r = sd_event_add_io(event, &a->io, fd, EPOLLIN, libdm_sdevent__on_io, a);
    if (r >= 0)
        r = sd_event_source_set_prepare(a->io, libdm_sdevent__prepare);
    /* 1 ms accuracy (in usec): the default, 250 ms, would make deadlines late. */
    if (r >= 0)
        r = sd_event_add_time(event, &a->timer, LIBDM_SDEVENT__CLOCK, 1, 1000,
                              libdm_sdevent__on_time, a);
    if (r >= 0)
        r = libdm_sdevent__arm(a);
    if (r < 0) {
        libdm_sdevent_detach(a);
        return r;
    }
    *ret_adapter = a;
    return 0;
}

/* Both of libdm's sources at sd-event priority @priority (default
 * SD_EVENT_PRIORITY_NORMAL, 0; larger runs later). 0 or a negative errno. */
static inline int libdm_sdevent_set_priority(libdm_sdevent *a, int64_t priority)
{
    int r = sd_event_source_set_priority(a->io, priority);

    return r < 0 ? r : sd_event_source_set_priority(a->timer, priority);
}

#ifdef __cplusplus
}
#endif
#endif
