/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fixture the real-QEMU cmocka tests share: a private store with a
 * context on it, the configuration of a `-machine none` QEMU, loop waits,
 * and the "nothing left" check (same fds, no child). Asserts with cmocka:
 * include <cmocka.h> before this header. */
#ifndef LIBDM_QEMU_FIXTURE_H
#define LIBDM_QEMU_FIXTURE_H

#include <stdbool.h>

#include <libdm/libdm.h>

typedef struct qf_store {
    char *dir;          /* the store: a fresh tu_mkdtemp() directory */
    libdm_ctx *ctx;     /* a context on it (no logger) */
    int fds_before;     /* this process's fds before either existed */
} qf_store;

/* Counts the fds, makes the store (tag names it) and the context. */
void qf_open(qf_store *s, const char *tag);
/* Lets the context reap its children, frees it, removes the store. */
void qf_close(qf_store *s);
/* Nothing leaked: the fds of before qf_open(), and no child. */
void qf_assert_clean(const qf_store *s);
/* The number of records in @ctx's store (asserts the list works). */
size_t qf_listed(libdm_ctx *ctx);
/* No record left in @ctx's store (none may outlive a scenario). */
void qf_assert_no_records(libdm_ctx *ctx);

/* A DM named @name on tu_qemu() (`-machine none`, the default) with
 * @timeout_ms as its start timeout. */
libdm_dm_config *qf_config(const char *name, int timeout_ms);
/* The same, named "@prefix-@i". */
libdm_dm_config *qf_config_nth(const char *prefix, int i, int timeout_ms);
/* A guest that can migrate: `-machine pc`, 64 MiB, a 10 s start timeout. */
libdm_dm_config *qf_config_pc(const char *name);

/* A completion, counted: qf_on_done() as a libdm_dm_done_fn with a
 * qf_done as its userdata. */
typedef struct qf_done {
    int n;              /* calls */
    int status;         /* the last one's */
} qf_done;
void qf_on_done(libdm_dm *dm, int status, void *user);

/* A QMP reply, recorded: qf_on_reply() as a libdm_qmp_reply_fn with a
 * qf_reply as its userdata. */
typedef struct qf_reply {
    bool done;
    int status;         /* the reply's */
} qf_reply;
void qf_on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user);

/* Runs @ctx's loop (steps of @step_ms) until *@done or @timeout_ms pass;
 * asserts *@done. */
void qf_run_until(libdm_ctx *ctx, const bool *done, int step_ms, int timeout_ms);
/* Runs @ctx's loop until *@counter >= @want or @timeout_ms pass (no
 * assert: the caller checks the count). */
void qf_run_until_count(libdm_ctx *ctx, const int *counter, int want, int timeout_ms);
/* Runs @ctx's loop until @pid is gone (reaped by its keeper) or
 * @timeout_ms pass; asserts it is gone. */
void qf_wait_gone(libdm_ctx *ctx, int pid, int timeout_ms);

#endif
