/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP client.
 *
 * The peer is untrusted: every message is bounded in size, depth and value
 * count; bytes before the greeting are discarded; replies whose id this
 * connection never sent are dropped; every wait has a deadline.
 *
 * Drain rule: a connection is never closed while a reply it asked for is
 * outstanding (pre-4.2 QEMU wedges its monitor forever otherwise). Closing
 * waits for every outstanding reply, up to a deadline; if the deadline passes
 * the close is reported as -ETIMEDOUT ("wedged"), never as a clean close.
 *
 * Connection states (libdm_qmp_state):
 *   CONNECTING -> GREETING -> NEGOTIATING -> READY -> DRAINING -> CLOSED
 *   and from any state but CLOSED: -> BROKEN (EOF, protocol error, bound
 *   exceeded, deadline). Commands submitted before READY are queued and sent
 *   once negotiation is done.
 */
#ifndef LIBDM_QMP_H
#define LIBDM_QMP_H

#include <libdm/ctx.h>
#include <libdm/json.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct libdm_qmp libdm_qmp;
/* A pending call or an event listener; freeing it cancels it. */
typedef struct libdm_qmp_slot libdm_qmp_slot;

typedef enum libdm_qmp_state {
    LIBDM_QMP_CONNECTING,
    LIBDM_QMP_GREETING,
    LIBDM_QMP_NEGOTIATING,
    LIBDM_QMP_READY,
    LIBDM_QMP_DRAINING,
    LIBDM_QMP_CLOSED,
    LIBDM_QMP_BROKEN,
} libdm_qmp_state;

typedef struct libdm_qmp_reply {
    /* 0: success; -EREMOTEIO: QEMU answered with an error (class and desc
     * below); other negative errno: no answer (-ETIMEDOUT deadline,
     * -ECONNRESET peer closed, -ECANCELED connection closed before sending,
     * -EPROTO peer broke the protocol, -E2BIG a bound was exceeded). */
    int status;
    const libdm_json *value;   /* the "return" member on success */
    const char *error_class;   /* on -EREMOTEIO; NULL if QEMU sent none */
    const char *error_desc;    /* on -EREMOTEIO; may be NULL; never parse it */
} libdm_qmp_reply;

typedef void libdm_qmp_reply_fn(libdm_qmp *qmp, const libdm_qmp_reply *reply,
                                void *userdata);
typedef void libdm_qmp_event_fn(libdm_qmp *qmp, const char *event,
                                const libdm_json *data, void *userdata);
/* Called on each state change; @error is 0 or why the connection broke. */
typedef void libdm_qmp_state_fn(libdm_qmp *qmp, libdm_qmp_state state,
                                int error, void *userdata);
typedef void libdm_qmp_closed_fn(libdm_qmp *qmp, int status, void *userdata);
typedef void libdm_destroy_fn(void *userdata);

/* Limits against a hostile peer. Defaults: 10 MiB per message, depth 128,
 * 1,000,000 values per message, 1024 undelivered events. */
typedef struct libdm_qmp_limits {
    size_t max_message;
    unsigned max_depth;
    size_t max_values;
    size_t max_queued_events;
} libdm_qmp_limits;

LIBDM_EXPORT int libdm_qmp_new(libdm_ctx *ctx, libdm_qmp **ret_qmp);
LIBDM_EXPORT int libdm_qmp_set_limits(libdm_qmp *qmp, const libdm_qmp_limits *limits);
/* Negotiate the "oob" capability when the server offers it. */
LIBDM_EXPORT int libdm_qmp_set_oob(libdm_qmp *qmp, int enable);
/* Default deadline of each call (ms, > 0); 30 s unless set. */
LIBDM_EXPORT int libdm_qmp_set_call_timeout(libdm_qmp *qmp, int timeout_ms);
LIBDM_EXPORT int libdm_qmp_set_state_callback(libdm_qmp *qmp, libdm_qmp_state_fn *cb,
                                              void *userdata);

/* Connects to a unix socket, retrying while it does not exist yet or refuses
 * connections, until @timeout_ms has passed; then greeting and negotiation.
 * Asynchronous: watch the state callback, or call libdm_qmp_wait_ready(). */
LIBDM_EXPORT int libdm_qmp_connect(libdm_qmp *qmp, const char *path, int timeout_ms);
/* Same on an already connected (or connecting) stream socket; takes
 * ownership of @fd, even on failure. */
LIBDM_EXPORT int libdm_qmp_connect_fd(libdm_qmp *qmp, int fd, int timeout_ms);
/* Blocks until READY (0) or failure: the errno that broke the connection
 * (-ETIMEDOUT at the deadline, -ECONNRESET, -EPROTO, ...). */
LIBDM_EXPORT int libdm_qmp_wait_ready(libdm_qmp *qmp);
/* new + connect + wait_ready. */
LIBDM_EXPORT int libdm_qmp_open(libdm_ctx *ctx, const char *path, int timeout_ms,
                                libdm_qmp **ret_qmp);

/* Sends @command with @arguments (NULL or an object, not consumed). The
 * callback runs exactly once, never from inside this call, unless the slot is
 * freed first. @timeout_ms <= 0 uses the connection default. With @ret_slot
 * NULL the call is floating (owned by the connection). */
LIBDM_EXPORT int libdm_qmp_call_async(libdm_qmp *qmp, const char *command,
                                      const libdm_json *arguments, int timeout_ms,
                                      libdm_qmp_reply_fn *cb, void *userdata,
                                      libdm_qmp_slot **ret_slot);
/* As above, passing @fd (not consumed) with the command by SCM_RIGHTS, for
 * getfd / add-fd. */
LIBDM_EXPORT int libdm_qmp_call_async_with_fd(libdm_qmp *qmp, const char *command,
                                              const libdm_json *arguments, int fd,
                                              int timeout_ms, libdm_qmp_reply_fn *cb,
                                              void *userdata, libdm_qmp_slot **ret_slot);
/* Blocking call. On -EREMOTEIO the QMP error is available from
 * libdm_qmp_error_class() / libdm_qmp_error_desc(). *ret_value (may be NULL)
 * receives the "return" member. */
LIBDM_EXPORT int libdm_qmp_call(libdm_qmp *qmp, const char *command,
                                const libdm_json *arguments, int timeout_ms,
                                libdm_json **ret_value);
/* Same with @arguments as JSON text (NULL: none), for tools and scripts. */
LIBDM_EXPORT int libdm_qmp_call_text(libdm_qmp *qmp, const char *command,
                                     const char *arguments_json, int timeout_ms,
                                     libdm_json **ret_value);

/* Listens for @event (NULL: every event). Register before sending the command
 * that causes the event. */
LIBDM_EXPORT int libdm_qmp_add_event_listener(libdm_qmp *qmp, const char *event,
                                              libdm_qmp_event_fn *cb, void *userdata,
                                              libdm_qmp_slot **ret_slot);

/* Keeps a copy of every event in a queue read with libdm_qmp_pop_event(),
 * besides the listeners. More than limits.max_queued_events unread events
 * break the connection (-ENOBUFS): a flooding monitor cannot exhaust memory. */
LIBDM_EXPORT int libdm_qmp_set_event_queue(libdm_qmp *qmp, int enable);
/* Takes the oldest queued event: 1 and its name and data (caller frees; data
 * may be NULL), or 0 if the queue is empty. */
LIBDM_EXPORT int libdm_qmp_pop_event(libdm_qmp *qmp, char **ret_name, libdm_json **ret_data);

/* Cancels a pending call (its callback will not run; a reply already asked
 * for is still drained and dropped) or removes a listener, then frees the
 * slot; runs its destroy callback. Returns NULL. */
LIBDM_EXPORT libdm_qmp_slot *libdm_qmp_slot_free(libdm_qmp_slot *slot);
LIBDM_EXPORT void libdm_qmp_slot_set_destroy(libdm_qmp_slot *slot, libdm_destroy_fn *fn);

/* Drains (see above), closes and frees @qmp. Returns 0 if every outstanding
 * reply arrived (or none was outstanding), -ETIMEDOUT if the monitor was
 * wedged at the deadline. Calls not yet sent complete with -ECANCELED. */
LIBDM_EXPORT int libdm_qmp_close(libdm_qmp *qmp, int timeout_ms);
/* Asynchronous close: @cb (may be NULL) runs with the same status once
 * drained; the connection is freed after it returns. */
LIBDM_EXPORT int libdm_qmp_close_async(libdm_qmp *qmp, int timeout_ms,
                                       libdm_qmp_closed_fn *cb, void *userdata);

LIBDM_EXPORT libdm_qmp_state libdm_qmp_get_state(const libdm_qmp *qmp);
LIBDM_EXPORT const char *libdm_qmp_state_to_string(libdm_qmp_state state);
/* Replies outstanding on the wire (sent, not yet answered). */
LIBDM_EXPORT unsigned libdm_qmp_outstanding(const libdm_qmp *qmp);
/* The greeting's "QMP" object once received, else NULL. */
LIBDM_EXPORT const libdm_json *libdm_qmp_get_greeting(const libdm_qmp *qmp);
/* The QMP error of the last failed blocking call, else NULL. */
LIBDM_EXPORT const char *libdm_qmp_error_class(const libdm_qmp *qmp);
LIBDM_EXPORT const char *libdm_qmp_error_desc(const libdm_qmp *qmp);
/* A sentence naming why the connection or the last call failed, else NULL. */
LIBDM_EXPORT const char *libdm_qmp_last_error(const libdm_qmp *qmp);

#ifdef __cplusplus
}
#endif
#endif
