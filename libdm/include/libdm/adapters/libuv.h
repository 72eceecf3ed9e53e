/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Header-only adapter: drives a libdm context from a libuv loop.
 *
 *     libdm_uv *a;
 *     libdm_uv_attach(ctx, uv_default_loop(), &a);   ... uv_run(...) ...
 *     libdm_uv_detach(a);   then let the loop run once more (the handles
 *                           close asynchronously; the adapter frees itself)
 *
 * The context's fd becomes a uv_poll_t, its deadline a uv_timer_t re-armed
 * by a uv_prepare_t before every wait (so libdm calls made from the
 * application's own callbacks are seen at once). The poll handle keeps the
 * loop alive while attached. The context must not use hooks mode. Link with
 * libuv (pkg-config libdm-libuv). Compiles with -std=c11 alone when it is
 * included first: libuv's <uv.h> needs POSIX's pthread types, which strict
 * ISO C hides, so it asks for POSIX.1-2008 if nothing else was asked for.
 */
#ifndef LIBDM_ADAPTERS_LIBUV_H
#define LIBDM_ADAPTERS_LIBUV_H

#if !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#include <libdm/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct libdm_uv {
    libdm_ctx *ctx;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_prepare_t prepare;
    int open_handles;
} libdm_uv;

static inline void libdm_uv__on_timer(uv_timer_t *t)
{
    (void)libdm_ctx_process(((libdm_uv *)t->data)->ctx);
}

static inline void libdm_uv__arm(libdm_uv *a)
{
    uint64_t abs_ms, now;

    if (libdm_ctx_get_timeout(a->ctx, &abs_ms) <= 0) {
        uv_timer_stop(&a->timer);
        return;
    }
    /* uv timers are relative to the loop's time; libdm's deadline is
     * absolute CLOCK_MONOTONIC: convert against the same clock. */
    now = libdm_now_ms();
    uv_timer_start(&a->timer, libdm_uv__on_timer, abs_ms > now ? abs_ms - now : 0, 0);
}

static inline void libdm_uv__on_prepare(uv_prepare_t *p)
{
    libdm_uv__arm((libdm_uv *)p->data);
}

static inline void libdm_uv__on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    (void)libdm_ctx_process(((libdm_uv *)p->data)->ctx);
}

static inline void libdm_uv__on_close(uv_handle_t *h)
{
    libdm_uv *a = (libdm_uv *)h->data;

    if (--a->open_handles == 0)
        free(a);
}

/* Stops driving the context at once; the handles close and the adapter is
 * freed at the loop's next iteration. Returns NULL. */
static inline libdm_uv *libdm_uv_detach(libdm_uv *a)
{
    if (!a)
        return NULL;
    a->ctx = NULL;
    if (a->open_handles == 0) {
        free(a);
        return NULL;
    }
    uv_poll_stop(&a->poll);
    uv_timer_stop(&a->timer);
    uv_prepare_stop(&a->prepare);
    uv_close((uv_handle_t *)&a->poll, libdm_uv__on_close);
    uv_close((uv_handle_t *)&a->timer, libdm_uv__on_close);
    uv_close((uv_handle_t *)&a->prepare, libdm_uv__on_close);
    return NULL;
}

/* Registers @ctx with @loop. 0, or a negative errno (libuv's are too). */
static inline int libdm_uv_attach(libdm_ctx *ctx, uv_loop_t *loop, libdm_uv **ret_adapter)
{
    libdm_uv *a;
    int fd = libdm_ctx_get_fd(ctx), r;

    if (fd < 0)
        return fd;
    a = (libdm_uv *)calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->ctx = ctx;
    r = uv_poll_init(loop, &a->poll, fd);
    if (r < 0) {
        free(a);
        return r;
    }
    a->poll.data = a->timer.data = a->prepare.data = a;
    a->open_handles = 1;
    if ((r = uv_timer_init(loop, &a->timer)) == 0)
        a->open_handles++;
    if (r == 0 && (r = uv_prepare_init(loop, &a->prepare)) == 0)
        a->open_handles++;
    if (r == 0)
        r = uv_poll_start(&a->poll, UV_READABLE, libdm_uv__on_poll);
    if (r == 0)
        r = uv_prepare_start(&a->prepare, libdm_uv__on_prepare);
    if (r < 0) {
        /* Close what was initialised (the adapter is freed with the last). */
        a->poll.data = a->timer.data = a->prepare.data = a;
        uv_close((uv_handle_t *)&a->poll, libdm_uv__on_close);
        if (a->open_handles >= 2)
            uv_close((uv_handle_t *)&a->timer, libdm_uv__on_close);
        if (a->open_handles >= 3)
            uv_close((uv_handle_t *)&a->prepare, libdm_uv__on_close);
        return r;
    }
    /* The prepare handle alone must not keep the loop running. */
    uv_unref((uv_handle_t *)&a->prepare);
    libdm_uv__arm(a);
    *ret_adapter = a;
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif
