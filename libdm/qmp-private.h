/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP client's insides, shared by its files only (nothing outside
 * libdm/qmp*.c includes this). Floors, bottom first (tests/layers):
 *   qmp-core.c   the connection object: state, requests, writing, breaking,
 *                draining, free;
 *   qmp-event.c  event listeners, held and queued events;
 *   qmp-call.c   calls and their slots, deferred delivery, close;
 *   qmp.c        connect, negotiate, the read path, the constructor.
 * A file calls only files below it.
 *
 * DO NOT TRUST QEMU: see qmp.c.
 */
#ifndef LIBDM_QMP_PRIVATE_H
#define LIBDM_QMP_PRIVATE_H

#include "qmp-internal.h"
#include "ctx-internal.h"

#define QMP_ID_MAX 48

typedef struct pending pending;

struct libdm_qmp_slot {
    libdm_qmp *qmp;            /* NULL once the connection is gone */
    bool is_listener;
    bool floating;
    bool done;                 /* call completed (delivered or queued for delivery) */
    bool in_callback;
    bool free_after_callback;
    bool dead;                 /* listener removed while listeners were iterating */
    bool internal;             /* libdm's own (a DM's): never held back */
    libdm_destroy_fn *destroy;
    void *userdata;
    libdm_qmp_slot *prev, *next; /* listeners list, or the delivery list */

    /* calls */
    libdm_qmp_reply_fn *reply_cb;
    pending *pending;          /* while not completed */
    libdm__timer timer;        /* the call's deadline */
    int status;
    libdm_json *msg;           /* the whole reply message, owned */

    /* listeners */
    char *event;
    libdm_qmp_event_fn *event_cb;
};

/* One request: queued (not yet fully written) or in flight (written, reply owed). */
struct pending {
    pending *prev, *next;
    char id[QMP_ID_MAX];
    char *command;
    char *text;
    size_t len, off;           /* off: bytes already written */
    int pass_fd;               /* sent with the first byte, -1 if none */
    libdm_qmp_slot *slot;      /* NULL: orphan, reply dropped on arrival */
    bool sent;                 /* fully written: in the inflight list */
};

typedef struct pending_list {
    pending *head, *tail;
    unsigned count;
} pending_list;

typedef struct queued_event {
    struct queued_event *next;
    libdm_json *msg;
} queued_event;

struct libdm_qmp {
    libdm_ctx *ctx;
    unsigned refs;
    libdm_qmp_state state;
    int fd;
    libdm__watch *watch;
    libdm__qmp_decoder *decoder;
    libdm_qmp_limits limits;
    bool want_oob, oob;
    /* The queued commands follow qmp_capabilities at once, before its
     * reply (QEMU runs them in order, after it), so that a start waits for
     * one round trip after the greeting, not two (issue 23). Never before
     * the greeting: QEMU 7.2 loses, rarely, what a client wrote before its
     * monitor was set up (1 in ~200 QEMUs started 32 at a time here: the
     * greeting, then no reply ever). */
    bool pipelined;
    bool out_blocked;          /* the socket refused bytes: wait for POLLOUT */
    int call_timeout_ms;
    char *path;                /* for connect retries and messages */
    char *log_prefix;

    libdm__timer phase_timer;  /* connect/negotiate deadline, then drain deadline */
    libdm__timer retry_timer;  /* next connect attempt */
    unsigned retry_ms;
    libdm__timer deliver_timer;

    pending_list queued, inflight;
    pending *caps;             /* the qmp_capabilities request */
    unsigned renegotiations;   /* qmp_capabilities sent again (qmp.c) */
    libdm_qmp_slot *listeners;
    unsigned iterating;        /* > 0 while listeners run */
    libdm_qmp_slot *deliver_head, *deliver_tail;
    libdm_json *current_msg;   /* message of the callback being delivered */

    queued_event *ev_head, *ev_tail;
    size_t ev_count;
    bool queue_events;

    libdm_json *greeting;
    bool saw_shutdown;
    char *last_error;
    int broken_error;          /* why the connection broke (negative errno) */
    char *err_class, *err_desc;

    libdm_qmp_state_fn *state_cb;
    void *state_userdata;

    /* Host callbacks wait while a blocking call for another object runs
     * (libdm__wait_for): events for the host's listeners queue here. */
    const void *owner;         /* itself, or the DM it serves */
    queued_event *held_head, *held_tail;
    size_t held_count;
    libdm__timer held_timer;

    bool closing;
    bool close_done;
    libdm_qmp *closing_prev, *closing_next; /* ctx->closing_qmps while closing */
    int close_status;
    libdm_qmp_closed_fn *closed_cb;
    void *closed_userdata;
};
/* qmp-core.c */
const char *libdm__qmp_who(const libdm_qmp *q);
void libdm__qmp_list_append(pending_list *l, pending *p);
void libdm__qmp_list_remove(pending_list *l, pending *p);
void libdm__qmp_pending_free(pending *p);
void libdm__qmp_ref(libdm_qmp *q);
void libdm__qmp_unref(libdm_qmp *q);
/* The one place the state changes (see the transitions in qmp-core.c). */
void libdm__qmp_set_state(libdm_qmp *q, libdm_qmp_state to, int error);
bool libdm__qmp_is_final(const libdm_qmp *q);
void libdm__qmp_complete_pending(libdm_qmp *q, pending *p, int status, libdm_json *msg);
void libdm__qmp_fail_list(libdm_qmp *q, pending_list *l, int status);
void libdm__qmp_drop_events(libdm_qmp *q);
void libdm__qmp_drop_caps(libdm_qmp *q);
void libdm__qmp_close_socket(libdm_qmp *q);
void libdm__qmp_go_broken(libdm_qmp *q, int err, const char *fmt, ...) LIBDM__PRINTF(3, 4);
void libdm__qmp_finish_close(libdm_qmp *q, int status);
void libdm__qmp_maybe_drained(libdm_qmp *q);
void libdm__qmp_drain_deadline(libdm_ctx *ctx, libdm__timer *t, void *user);
void libdm__qmp_flush(libdm_qmp *q);
void libdm__qmp_unlink_delivery(libdm_qmp *q, libdm_qmp_slot *s);
void libdm__qmp_call_slot_destroy(libdm_qmp_slot *s);

/* qmp-event.c */
void libdm__qmp_sweep_listeners(libdm_qmp *q);
void libdm__qmp_deliver_held(libdm_ctx *ctx, libdm__timer *t, void *user);
void libdm__qmp_dispatch_event(libdm_qmp *q, libdm_json *msg, const char *name);
void libdm__qmp_queue_event(libdm_qmp *q, libdm_json *msg);

/* qmp-call.c */
void libdm__qmp_deliver(libdm_ctx *ctx, libdm__timer *t, void *user);

#endif
