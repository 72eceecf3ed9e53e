/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Header-only adapter: drives a libdm context from a GLib main context.
 *
 *     libdm_glib *a;
 *     libdm_glib_attach(ctx, NULL, &a);       (NULL: the default context)
 *     ... g_main_loop_run(...) ...
 *     libdm_glib_detach(a);                   before libdm_ctx_free(ctx)
 *
 * One GSource: its prepare step reads libdm_ctx_get_timeout() before every
 * wait (so libdm calls made from the application's own callbacks are seen
 * at once), it polls the context's fd (libdm_ctx_get_fd()), and dispatch
 * calls libdm_ctx_process(). The context must not use hooks mode. Link with
 * glib-2.0 (pkg-config libdm-glib). Compiles with -std=c11 alone.
 */
#ifndef LIBDM_ADAPTERS_GLIB_H
#define LIBDM_ADAPTERS_GLIB_H

#include <errno.h>
#include <stdint.h>
#include <glib.h>

#include <libdm/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct libdm_glib {
    GSource source; /* first: GLib allocates the whole structure */
    libdm_ctx *ctx;
    gpointer fd_tag;
} libdm_glib;

/* TRUE if a libdm deadline is due; else *ret_timeout (ms, -1 none). */
static inline gboolean libdm_glib__due(libdm_glib *a, gint *ret_timeout)
{
    uint64_t abs_ms, now;

    *ret_timeout = -1;
    if (libdm_ctx_get_timeout(a->ctx, &abs_ms) <= 0)
        return FALSE;
    now = libdm_now_ms();
    if (abs_ms <= now) {
        *ret_timeout = 0;
        return TRUE;
    }
    *ret_timeout = abs_ms - now > G_MAXINT ? G_MAXINT : (gint)(abs_ms - now);
    return FALSE;
}

static inline gboolean libdm_glib__prepare(GSource *s, gint *timeout)
{
    return libdm_glib__due((libdm_glib *)s, timeout);
}

static inline gboolean libdm_glib__check(GSource *s)
{
    libdm_glib *a = (libdm_glib *)s;
    gint unused;

    if (g_source_query_unix_fd(s, a->fd_tag) & G_IO_IN)
        return TRUE;
    return libdm_glib__due(a, &unused);
}

static inline gboolean libdm_glib__dispatch(GSource *s, GSourceFunc cb, gpointer data)
{
    (void)cb;
    (void)data;
    (void)libdm_ctx_process(((libdm_glib *)s)->ctx);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs libdm_glib__funcs = {
    libdm_glib__prepare, libdm_glib__check, libdm_glib__dispatch, NULL, NULL, NULL,
};

/* Stops driving the context; frees the adapter. Returns NULL. */
static inline libdm_glib *libdm_glib_detach(libdm_glib *a)
{
    if (!a)
        return NULL;
    g_source_destroy(&a->source);
    g_source_unref(&a->source);
    return NULL;
}

/* Registers @ctx with @context (NULL: the default main context). 0, or a
 * negative errno. */
static inline int libdm_glib_attach(libdm_ctx *ctx, GMainContext *context,
                                    libdm_glib **ret_adapter)
{
    libdm_glib *a;
    int fd = libdm_ctx_get_fd(ctx);

    if (fd < 0)
        return fd;
    a = (libdm_glib *)g_source_new(&libdm_glib__funcs, sizeof(libdm_glib));
    if (!a)
        return -ENOMEM;
    a->ctx = ctx;
    a->fd_tag = g_source_add_unix_fd(&a->source, fd, G_IO_IN);
    g_source_set_name(&a->source, "libdm");
    g_source_attach(&a->source, context);
    *ret_adapter = a;
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif
