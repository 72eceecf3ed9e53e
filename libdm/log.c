/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging goes through the caller's xentoollog_logger, context "libdm". */
#include "ctx-internal.h"

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
