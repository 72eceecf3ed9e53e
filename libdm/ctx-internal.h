/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The context structure, shared by ctx.c (lifetime, ids, store) and loop.c
 * (watches, timers, dispatch). Nothing else looks inside it. */
#ifndef LIBDM_CTX_INTERNAL_H
#define LIBDM_CTX_INTERNAL_H

#include "internal.h"

struct libdm__store;

/* The plain logger (libdm_ctx_set_log_fn, log.c): a xentoollog_logger
 * whose vmessage hands the formatted line to the host's callback. */
typedef struct libdm__fn_logger {
    xentoollog_logger vtable;    /* first: the logger's address is ours */
    libdm_ctx *ctx;
} libdm__fn_logger;

struct libdm_ctx {
    xentoollog_logger *lg;
    xentoollog_logger *own_lg;   /* the default logger we created, or NULL */
    xentoollog_logger *host_lg;  /* the logger lg was before set_log_fn */
    xentoollog_level log_level;  /* lowest level worth formatting */
    libdm_log_fn *log_fn;        /* libdm_ctx_set_log_fn's callback, or NULL */
    void *log_user;
    libdm__fn_logger fn_logger;

    int epfd;                    /* every watch, in both loop modes */
    bool hooks_mode;
    bool fd_mode;                /* libdm_ctx_get_fd() was called: host polls epfd */
    libdm_loop_hooks hooks;
    void *hooks_user;
    uint64_t host_deadline;      /* the deadline last given to timer_set */

    libdm__timer **heap;         /* min-heap of armed timers by deadline */
    size_t heap_len, heap_cap;
    uint64_t timer_seq;        /* the last timer's arming number */

    libdm__watch *dead_watches;  /* removed during a batch, freed after it */
    unsigned nwatches;
    unsigned depth;              /* > 0 while libdm dispatches callbacks */
    uint64_t dispatch_start_us;  /* when the outermost dispatch began (budget) */

    uint32_t id_nonce;           /* per context, random: ids unique across processes */
    uint64_t id_counter;

    char *store_spec;
    struct libdm__store *store;  /* opened on first use */

    unsigned nclosing;           /* connections draining after close_async */
    struct libdm_qmp *closing_qmps; /* those connections (qmp.c) */
    struct libdm__reaper *reapers; /* keepers whose DM handle is gone */
    struct libdm__helper *helper;  /* forks the keepers (spawn-helper.c) */
    struct libdm__spawn_stack *spawn_stacks; /* children before their exec (spawn-vm.c) */
    unsigned helper_gen;
    unsigned keepers_live;         /* keepers followed, not ended (spawn.c) */
    unsigned n_exiting_reapers;    /* ...of which whose DM ended: they exit in a
                                    * moment (the rest run with their DMs and
                                    * do not keep the context busy) */

    struct libdm_dm *dms;        /* every DM handle of the context (dm.c) */
    struct libdm__job *jobs;     /* pending list/forget/holder jobs (job.c) */
    /* Set by the layers above when they first use the context, run by
     * libdm_ctx_free() (the context never calls up): */
    void (*free_dms)(libdm_ctx *ctx);                  /* dm.c */
    void (*hurry_closing)(libdm_ctx *ctx, uint64_t abs_ms); /* qmp.c */
    const void *blocking_for;    /* the object a blocking libdm call waits for */
    libdm__timer *postponed;     /* others' deliveries, deferred when it ends */

    libdm_ctx_idle_fn *idle_cb;  /* libdm_ctx_set_idle_callback() */
    void *idle_user;
    bool idle_reported;          /* idle_cb ran since the context was last busy */
};

/* dm.c: libdm_ctx_free() with DM handles still held: each is released as
 * libdm_dm_release() would (a running DM stays recorded and attachable, a
 * start under autokill ends), its memory kept for the caller's getters and
 * final release; the handle has no context any more (its operations return
 * -ESHUTDOWN). */
void libdm__dm_detach_all(libdm_ctx *ctx);

/* qmp.c: every connection still draining ends by @abs_ms at the latest. */
void libdm__qmp_hurry_closing(libdm_ctx *ctx, uint64_t abs_ms);

/* spawn.c */
typedef struct libdm__reaper libdm__reaper;
void libdm__reapers_free(libdm_ctx *ctx);
/* spawn-vm.c: frees the stacks of children past their exec. */
void libdm__spawn_stacks_free(libdm_ctx *ctx);
void libdm__helper_free(libdm_ctx *ctx);

/* loop.c */
int libdm__loop_init(libdm_ctx *ctx);
void libdm__loop_fini(libdm_ctx *ctx);
/* Nothing draining or pending: no timer armed, no connection closing, no
 * reaper (see libdm_ctx_is_idle()). */
bool libdm__ctx_idle(const libdm_ctx *ctx);

#endif
