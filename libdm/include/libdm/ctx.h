/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Contexts and the event loop.
 *
 * Every asynchronous libdm object belongs to one libdm_ctx. A context is
 * driven in one of three ways:
 *  - its own loop: libdm_ctx_run_once(), used by the blocking calls and by
 *    dmctl;
 *  - one fd (sd-bus style): the host polls libdm_ctx_get_fd() for reading,
 *    wakes up at libdm_ctx_get_timeout() at the latest, and calls
 *    libdm_ctx_process(); see libdm/adapters/ for sd-event, libuv and GLib;
 *  - hooks (libxl's osevent hooks): libdm_ctx_set_loop_hooks() below.
 *
 * Hook contract (hooks mode):
 *  - fd_register is called once per fd libdm watches; fd_deregister ends it.
 *    The host passes back the libdm_reg cookie in libdm_ctx_dispatch_fd().
 *  - fd_modify changes the events of a registered fd. It is called whenever
 *    the events libdm wants change, for instance POLLIN|POLLOUT when a write
 *    to a QMP socket would block (the peer does not read) and output is
 *    queued, and back to POLLIN once the queue has been written. The host
 *    must poll for exactly the events of the latest call; it may pass the
 *    new value of *host_reg back (the cookie may be replaced).
 *  - timer_set tells the host the single absolute CLOCK_MONOTONIC deadline
 *    (milliseconds, see libdm_now_ms()) at which libdm_ctx_dispatch_timeout()
 *    must be called; UINT64_MAX means no timer. Each call replaces the
 *    previous deadline. A deadline at or before now (0 included: libdm uses
 *    it for deferred completions) is due: the host must call
 *    libdm_ctx_dispatch_timeout() as soon as it can, at its next iteration,
 *    never drop it nor wait for a later one. Calling dispatch early or twice
 *    is harmless. The timer is one-shot: once the host has called
 *    libdm_ctx_dispatch_timeout() for a deadline, that deadline is spent
 *    (dispatch calls timer_set again if anything is still armed); a host
 *    that kept firing the spent deadline would spin.
 *  - hooks must not call back into libdm; a hook that fails makes the libdm
 *    operation that needed it fail with that error.
 *  - blocking calls (libdm_qmp_call(), libdm_dm_start(), ...) still work in
 *    hooks mode: they poll the context's own descriptors until done. They
 *    must not be called from inside a libdm callback (they return -EDEADLK).
 *
 * Completion callbacks are never invoked from inside the call that started the
 * operation: they are deferred to the next loop iteration.
 *
 * Every dispatch (libdm_ctx_process(), libdm_ctx_dispatch_fd(),
 * libdm_ctx_dispatch_timeout(), one libdm_ctx_run_once()) starts callbacks
 * for a quarter of a millisecond at most, then returns even if more is due: what
 * is left stays pending (a readable fd, a deadline already due), so a host
 * that follows the rules above simply comes back at its next iteration, and
 * its own events run in between. A host loop that picks among equally
 * urgent sources arbitrarily (sd-event at one priority) may run two libdm
 * dispatches back to back; one that wants its own events first gives
 * libdm's sources a lower priority (bench/bench-embed.c --libdm-priority;
 * libdm_sdevent_set_priority() in libdm/adapters/sd-event.h).
 *
 * fork(): a child forked without exec does not keep what libdm holds for
 * its parent: the fds of DMs' monitor.lock and owner.lock, of monitor
 * connections and of the channels to DMs' keepers are replaced by
 * /dev/null in the child (pthread_atfork), so a lock, QEMU's one monitor
 * client or a keeper's autokill is never held by a child after the parent
 * lets go. Every libdm fd is O_CLOEXEC: an exec keeps none. The
 * child must not use the contexts and handles it inherited (as with
 * sd-bus): it may only free them, or _exit.
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

/* Frees the context. DM handles still held are released first, as
 * libdm_dm_release() would: their operations end without callbacks (an
 * internal userdata's destroy runs), a DM that runs stays running,
 * recorded and attachable, a start whose DM is not ready yet is ended
 * (autokill) and removed. Such a handle stays valid for its getters and
 * must still be released with libdm_dm_release(); its operations return
 * -ESHUTDOWN. Connections still draining get 200 ms at most (a reply still
 * owed then is abandoned), and keepers of DMs that ended or are being
 * ended are reaped (1 s at most in all, one deadline for every keeper
 * whatever their number; keepers of DMs still running are not waited
 * for): free the context once libdm_ctx_is_idle()
 * says so and it never waits. Keepers not exited by then (DMs still
 * running) are children of this process that outlive the context: they are
 * reaped when they exit by any context of the process (its creation, its
 * freeing, or its dispatches, once a second at most), or at the process's
 * exit. Returns NULL. */
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

/* One-fd integration (built-in loop only; -EBUSY in hooks mode, and
 * libdm_ctx_set_loop_hooks() is refused once it was called).
 *
 * libdm_ctx_get_fd: an epoll descriptor, owned by the context (do not close
 * it), that is readable when one of the context's descriptors has an event
 * libdm waits for. Due timers are not signalled on it: the host also wakes
 * up at the deadline of libdm_ctx_get_timeout(). */
LIBDM_EXPORT int libdm_ctx_get_fd(libdm_ctx *ctx);
/* The earliest libdm deadline, as an absolute CLOCK_MONOTONIC time in
 * milliseconds (the clock of libdm_now_ms(); multiply by 1000 for sd-event's
 * usec). A value at or before now (0 for a deferred completion) means "due
 * now". Returns 1 and the deadline, or 0 and UINT64_MAX if no timer is
 * armed. Any libdm call may arm a timer: read it again before each wait
 * (sd_bus_get_timeout()'s rule; the adapters do it in their prepare step). */
LIBDM_EXPORT int libdm_ctx_get_timeout(libdm_ctx *ctx, uint64_t *ret_abs_ms);
/* Dispatches, without waiting, the fd events that are ready and the timers
 * that are due, within the dispatch budget above (the rest stays pending).
 * Never blocks. Returns the number of events and timers
 * dispatched, -EDEADLK from inside a libdm callback, -EBUSY in hooks mode. */
LIBDM_EXPORT int libdm_ctx_process(libdm_ctx *ctx);

/* Idle: nothing of the context is pending or draining: no timer armed (no
 * deferred completion, no operation waiting for a reply or a deadline), no
 * QMP connection still closing, no keeper of an ended DM still to reap. Live
 * objects with nothing in flight (an open connection, a running DM's handle)
 * do not count, nor does a released running DM: its keeper is reaped when
 * it exits, however late, and the context is idle meanwhile (the idle
 * callback runs). Returns 1 if idle, 0 if not. */
LIBDM_EXPORT int libdm_ctx_is_idle(libdm_ctx *ctx);
typedef void libdm_ctx_idle_fn(libdm_ctx *ctx, void *userdata);
/* @cb (NULL: none) runs once each time the context becomes idle, at the end
 * of a dispatch (run_once, process or a hooks-mode dispatch). It runs as a
 * libdm callback: blocking calls return -EDEADLK, and it must not free the
 * context. */
LIBDM_EXPORT int libdm_ctx_set_idle_callback(libdm_ctx *ctx, libdm_ctx_idle_fn *cb,
                                             void *userdata);

/* Minimum level of the messages libdm formats and hands to the logger.
 * Default: with the context's own logger, $LIBDM_LOG (see libdm_ctx_new());
 * with a caller's logger, XTL_DEBUG (everything: the logger filters). QMP
 * traffic is logged at XTL_DEBUG. -EINVAL for a level outside
 * XTL_DEBUG..XTL_CRITICAL. */
LIBDM_EXPORT int libdm_ctx_set_log_level(libdm_ctx *ctx, xentoollog_level level);
LIBDM_EXPORT xentoollog_level libdm_ctx_get_log_level(libdm_ctx *ctx);

/* Selects the record store: NULL or "auto" (xenstore if a xenstored answers,
 * else the run directory), "xenstore", or a directory path. Also sets where
 * per-DM directories (QMP socket, log) live: the directory given, else
 * /run/libdm for root or $XDG_RUNTIME_DIR/libdm. */
LIBDM_EXPORT int libdm_ctx_set_store(libdm_ctx *ctx, const char *spec);

/* The directory holding per-DM directories (QMP socket, log) for the
 * context's store, e.g. /run/libdm; NULL if the store cannot be opened. */
LIBDM_EXPORT const char *libdm_ctx_get_run_dir(libdm_ctx *ctx);

/* A plain logger for embedders without xentoollog (no vtable): @fn gets
 * each message libdm formats at @min_level or above (XTL_DEBUG ..
 * XTL_CRITICAL), one line without its newline, "libdm: " not included,
 * with strerror appended when an errno goes with it, and @userdata. It runs
 * on the thread that called into libdm, possibly inside any libdm call,
 * and must not call libdm. NULL @fn goes back to the logger the context
 * was created with. Before the store is opened (libdm_ctx_set_store(), or
 * the first call that needs it): -EBUSY after. -EINVAL for a bad level. */
typedef void libdm_log_fn(libdm_ctx *ctx, xentoollog_level level, const char *message,
                          void *userdata);
LIBDM_EXPORT int libdm_ctx_set_log_fn(libdm_ctx *ctx, libdm_log_fn *fn, void *userdata,
                                      xentoollog_level min_level);

/* The logger the context reports through. */
LIBDM_EXPORT xentoollog_logger *libdm_ctx_get_logger(libdm_ctx *ctx);

/* CLOCK_MONOTONIC in milliseconds: the clock of every libdm deadline. */
LIBDM_EXPORT uint64_t libdm_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
