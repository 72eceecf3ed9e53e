/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging goes through the caller's xentoollog_logger, context "libdm". */
#include "ctx-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool libdm__log_enabled(libdm_ctx *ctx, xentoollog_level level)
{
    return ctx && level >= ctx->log_level;
}

void libdm__log(libdm_ctx *ctx, xentoollog_level level, int errnoval, const char *fmt, ...)
{
    va_list ap;

    if (!libdm__log_enabled(ctx, level))
        return;
    va_start(ap, fmt);
    xtl_logv(ctx->lg, level, errnoval, "libdm", fmt, ap);
    va_end(ap);
}

/* ---- the plain logger (libdm_ctx_set_log_fn) ---- */

static void fn_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                        const char *context, const char *format, va_list al)
{
    libdm_ctx *ctx = ((libdm__fn_logger *)(void *)lg)->ctx;
    char *msg = NULL, *full = NULL;

    (void)context;
    if (!ctx->log_fn || level < ctx->log_level || vasprintf(&msg, format, al) < 0)
        return;
    if (errnoval >= 0 && asprintf(&full, "%s: %s", msg, strerror(errnoval)) >= 0) {
        free(msg);
        msg = full;
    }
    ctx->log_fn(ctx, level, msg, ctx->log_user);
    free(msg);
}

static void fn_destroy(xentoollog_logger *lg)
{
    (void)lg; /* embedded in the context */
}

int libdm_ctx_set_log_fn(libdm_ctx *ctx, libdm_log_fn *fn, void *userdata,
                         xentoollog_level min_level)
{
    if (!ctx || (fn && (min_level < XTL_DEBUG || min_level > XTL_CRITICAL)))
        return -EINVAL;
    if (ctx->store)
        return -EBUSY; /* the store logs through the logger it was opened with */
    if (!fn) {
        if (ctx->log_fn) {
            ctx->lg = ctx->host_lg;
            ctx->log_fn = NULL;
        }
        return 0;
    }
    if (!ctx->log_fn)
        ctx->host_lg = ctx->lg;
    ctx->fn_logger.vtable.vmessage = fn_vmessage;
    ctx->fn_logger.vtable.progress = NULL;
    ctx->fn_logger.vtable.destroy = fn_destroy;
    ctx->fn_logger.ctx = ctx;
    ctx->log_fn = fn;
    ctx->log_user = userdata;
    ctx->log_level = min_level;
    ctx->lg = &ctx->fn_logger.vtable;
    return 0;
}
