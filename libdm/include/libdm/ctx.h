/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Contexts and the event loop.
 *
 * Every asynchronous libdm object belongs to one libdm_ctx. A context either
 * runs its own loop (libdm_ctx_run_once(), used by the blocking calls and by
 * dmctl), or is driven by the application's loop through libdm_loop_hooks, in
 * the manner of libxl's osevent hooks.
 *
 * Hook contract (hooks mode):
 *  - fd_register is called once per fd libdm watches; fd_modify changes the
 *    events (POLLIN/POLLOUT) of a registered fd; fd_deregister ends it. The
 *    host passes back the libdm_reg cookie in libdm_ctx_dispatch_fd().
 *  - timer_set tells the host the single absolute CLOCK_MONOTONIC deadline
 *    (milliseconds, see libdm_now_ms()) at which libdm_ctx_dispatch_timeout()
 *    must be called; UINT64_MAX means no timer. Calling dispatch early or
 *    twice is harmless.
 *  - hooks must not call back into libdm; a hook that fails makes the libdm
 *    operation that needed it fail with that error.
 *  - blocking calls (libdm_qmp_call(), libdm_dm_start(), ...) still work in
 *    hooks mode: they poll the context's own descriptors until done. They
 *    must not be called from inside a libdm callback (they return -EDEADLK).
 *
 * Completion callbacks are never invoked from inside the call that started the
 * operation: they are deferred to the next loop iteration.
 */
#ifndef LIBDM_CTX_H
#define LIBDM_CTX_H

#include <libdm/common.h>
#include <xentoollog.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct libdm_loop_hooks {
    int (*fd_register)(void *user, int fd, short events, void *libdm_reg,
                       void **ret_host_reg);
    int (*fd_modify)(void *user, int fd, short events, void **host_reg);
    void (*fd_deregister)(void *user, int fd, void *host_reg);
    int (*timer_set)(void *user, uint64_t abs_ms);
} libdm_loop_hooks;

/* Creates a context logging to @logger (NULL: a stderr logger at level
 * warning, or at the level named by $LIBDM_LOG=debug|info|warn|error). */
LIBDM_EXPORT int libdm_ctx_new(xentoollog_logger *logger, libdm_ctx **ret_ctx);

/* Frees the context. Connections still draining are drained first (bounded
 * by their deadlines); device models keep running (their keepers reap them).
 * Returns NULL. */
LIBDM_EXPORT libdm_ctx *libdm_ctx_free(libdm_ctx *ctx);

/* Switches the context to hooks mode. Must be called before any object is
 * created on the context (-EBUSY otherwise). */
LIBDM_EXPORT int libdm_ctx_set_loop_hooks(libdm_ctx *ctx,
                                          const libdm_loop_hooks *hooks,
                                          void *user);

/* Hooks mode: the host reports that a registered fd is ready. */
LIBDM_EXPORT void libdm_ctx_dispatch_fd(libdm_ctx *ctx, void *libdm_reg, int fd,
                                        short revents);
/* Hooks mode: the timer set through timer_set expired. */
LIBDM_EXPORT void libdm_ctx_dispatch_timeout(libdm_ctx *ctx);

/* Built-in loop: waits at most @timeout_ms (-1: until the next libdm timer)
 * for one batch of events and dispatches them. Returns the number of events
 * and timers dispatched, or a negative errno. */
LIBDM_EXPORT int libdm_ctx_run_once(libdm_ctx *ctx, int timeout_ms);

/* Selects the record store: NULL or "auto" (xenstore if a xenstored answers,
 * else the run directory), "xenstore", or a directory path. Also sets where
 * per-DM directories (QMP socket, log) live: the directory given, else
 * /run/libdm for root or $XDG_RUNTIME_DIR/libdm. */
LIBDM_EXPORT int libdm_ctx_set_store(libdm_ctx *ctx, const char *spec);

/* The directory holding per-DM directories (QMP socket, log) for the
 * context's store, e.g. /run/libdm; NULL if the store cannot be opened. */
LIBDM_EXPORT const char *libdm_ctx_get_run_dir(libdm_ctx *ctx);

/* The logger the context reports through. */
LIBDM_EXPORT xentoollog_logger *libdm_ctx_get_logger(libdm_ctx *ctx);

/* CLOCK_MONOTONIC in milliseconds: the clock of every libdm deadline. */
LIBDM_EXPORT uint64_t libdm_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
