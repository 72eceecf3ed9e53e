/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Context lifetime, logging set-up, command ids, the record store. */
#include "ctx-internal.h"
#include "store.h"
#include "job-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static xentoollog_level level_from_env(void)
{
    const char *v = getenv("LIBDM_LOG");

    if (!v)
        return XTL_WARN;
    if (!strcmp(v, "debug"))
        return XTL_DEBUG;
    if (!strcmp(v, "info"))
        return XTL_INFO;
    if (!strcmp(v, "error"))
        return XTL_ERROR;
    return XTL_WARN;
}

static uint32_t random_nonce(void)
{
    uint32_t v;

    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
        return v;
    /* No entropy yet (early boot): pid and time still separate processes. */
    return (uint32_t)getpid() ^ (uint32_t)libdm_now_ms() * 2654435761u;
}

int libdm_ctx_new(xentoollog_logger *logger, libdm_ctx **ret_ctx)
{
    libdm_ctx *ctx;
    int r;

    ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return -ENOMEM;
    ctx->epfd = -1;
    if (logger) {
        ctx->lg = logger;
        /* The caller's logger filters for itself; forward everything
         * unless the caller sets a minimum (libdm_ctx_set_log_level). */
        ctx->log_level = XTL_DEBUG;
    } else {
        ctx->log_level = level_from_env();
        ctx->own_lg = (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, ctx->log_level, 0);
        if (!ctx->own_lg) {
            free(ctx);
            return -ENOMEM;
        }
        ctx->lg = ctx->own_lg;
    }
    libdm__orphans_reap(true);
    r = libdm__loop_init(ctx);
    if (r < 0) {
        libdm_ctx_free(ctx);
        return r;
    }
    ctx->id_nonce = random_nonce();
    *ret_ctx = ctx;
    return 0;
}

#define CTX_FREE_DRAIN_MS 200

libdm_ctx *libdm_ctx_free(libdm_ctx *ctx)
{
    if (!ctx)
        return NULL;
    if (ctx->free_dms)
        ctx->free_dms(ctx); /* libdm__dm_detach_all() */
    /* Pending list/forget/holder jobs: their destroy notification runs. */
    libdm__jobs_drop_all(ctx);
    /* Connections handed over by close_async finish draining first, for
     * CTX_FREE_DRAIN_MS at most: an owed reply not read by then is lost
     * (the socket closes with it outstanding). */
    if (ctx->hurry_closing)
        ctx->hurry_closing(ctx, libdm__deadline(CTX_FREE_DRAIN_MS));
    while (ctx->nclosing > 0 && ctx->depth == 0)
        if (libdm_ctx_run_once(ctx, CTX_FREE_DRAIN_MS) < 0)
            break;
    libdm__helper_free(ctx);
    libdm__reapers_free(ctx);
    libdm__spawn_stacks_free(ctx);
    libdm__orphans_reap(true);
    if (ctx->store)
        libdm__store_close(ctx->store);
    free(ctx->store_spec);
    libdm__loop_fini(ctx);
    if (ctx->own_lg)
        xtl_logger_destroy(ctx->own_lg);
    free(ctx);
    return NULL;
}

int libdm_ctx_set_loop_hooks(libdm_ctx *ctx, const libdm_loop_hooks *hooks, void *user)
{
    if (!hooks || !hooks->fd_register || !hooks->fd_modify || !hooks->fd_deregister ||
        !hooks->timer_set)
        return -EINVAL;
    if (ctx->nwatches > 0 || ctx->heap_len > 0 || ctx->fd_mode)
        return -EBUSY;
    ctx->hooks = *hooks;
    ctx->hooks_user = user;
    ctx->hooks_mode = true;
    return 0;
}

int libdm_ctx_set_log_level(libdm_ctx *ctx, xentoollog_level level)
{
    if (level < XTL_DEBUG || level > XTL_CRITICAL)
        return -EINVAL;
    ctx->log_level = level;
    /* Our own stderr logger filters too: keep it in step. */
    if (ctx->own_lg)
        xtl_stdiostream_set_minlevel((xentoollog_logger_stdiostream *)ctx->own_lg, level);
    return 0;
}

xentoollog_level libdm_ctx_get_log_level(libdm_ctx *ctx)
{
    return ctx->log_level;
}

xentoollog_logger *libdm_ctx_get_logger(libdm_ctx *ctx)
{
    return ctx->lg;
}

/* Appends @v in base64url digits, least significant first (ids are only
 * compared, never read back as numbers). */
static size_t put_b64(char *out, uint64_t v, size_t min_digits)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0;

    do {
        out[n++] = digits[v & 63];
        v >>= 6;
    } while (v || n < min_digits);
    return n;
}

/*
 * Ids are the per-context random nonce (6 digits) then the counter: unique
 * across connections and processes, and short, because QEMU's JSON lexer
 * charges a few microseconds per byte of every command (measured here: a
 * 20-byte id cost QEMU 7.2 about 60 us per query-status).
 */
int libdm__next_id(libdm_ctx *ctx, char *buf, size_t len)
{
    char tmp[32];
    size_t n;

    n = put_b64(tmp, ctx->id_nonce, 6);
    n += put_b64(tmp + n, ++ctx->id_counter, 1);
    if (n >= len)
        return -ENOBUFS;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return 0;
}

int libdm_ctx_set_store(libdm_ctx *ctx, const char *spec)
{
    char *copy = NULL;

    if (spec && !(copy = strdup(spec)))
        return -ENOMEM;
    if (ctx->store) {
        libdm__store_close(ctx->store);
        ctx->store = NULL;
    }
    free(ctx->store_spec);
    ctx->store_spec = copy;
    return 0;
}

int libdm__ctx_store(libdm_ctx *ctx, struct libdm__store **ret_store)
{
    int r;

    if (!ctx->store) {
        r = libdm__store_open(ctx->store_spec, ctx->lg, &ctx->store);
        if (r < 0) {
            LIBDM__ERROR(ctx, "cannot open the record store %s: %s",
                         ctx->store_spec ? ctx->store_spec : "(auto)", strerror(-r));
            return r;
        }
        /* A busy record lock never holds the loop: callers retry. */
        libdm__store_set_nowait(ctx->store, true);
    }
    *ret_store = ctx->store;
    return 0;
}

void libdm__ctx_closing_add(libdm_ctx *ctx, int delta)
{
    ctx->nclosing += delta;
}

const char *libdm_ctx_get_run_dir(libdm_ctx *ctx)
{
    struct libdm__store *store;

    return libdm__ctx_store(ctx, &store) < 0 ? NULL : libdm__store_run_root(store);
}
