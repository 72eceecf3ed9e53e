/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A context-level asynchronous job (issue 19: list, forget, monitor_holder):
 * a step function run from the loop, one short step per dispatch (one or
 * two file operations), never inside the call that starts it. The job is
 * on its context's list until it ends; libdm_ctx_free() drops the jobs
 * still pending, calling each one's @drop (which runs the caller's destroy
 * notification instead of its callback).
 */
#ifndef LIBDM_JOB_INTERNAL_H
#define LIBDM_JOB_INTERNAL_H
#include "internal.h"

typedef struct libdm__job libdm__job;
/* One step: > 0 more steps to come; -EAGAIN: the same step again in a
 * millisecond (a record's lock held by another writer), for
 * LIBDM__JOB_RETRY_MS at most, then the job ends with -EBUSY; otherwise the
 * job's result. */
#define LIBDM__JOB_RETRY_MS 5000
typedef int libdm__job_step_fn(libdm__job *job);
/* The job ended with @status: deliver it to the caller and free the job. */
typedef void libdm__job_done_fn(libdm__job *job, int status);
/* The job is dropped (its context freed): free it, notify, no callback. */
typedef void libdm__job_drop_fn(libdm__job *job);

struct libdm__job {
    libdm_ctx *ctx;
    libdm__timer timer;
    libdm__job_step_fn *step;
    libdm__job_done_fn *done;
    libdm__job_drop_fn *drop;
    uint64_t again_since;       /* first -EAGAIN of the current wait, or 0 */
    libdm__job *prev, *next;    /* ctx->jobs */
};

/* Links @job into @ctx and defers its first step to the loop. */
int libdm__job_start(libdm_ctx *ctx, libdm__job *job, libdm__job_step_fn *step,
                     libdm__job_done_fn *done, libdm__job_drop_fn *drop);
/* The blocking forms: runs every step of @job here, then returns its result
 * (the job is not linked, @done is not called). A step's -EAGAIN ends it
 * with -EBUSY at once: no wait inside a call that may run on the loop. */
int libdm__job_run_inline(libdm_ctx *ctx, libdm__job *job, libdm__job_step_fn *step);
/* ctx.c: libdm_ctx_free() drops every pending job. */
void libdm__jobs_drop_all(libdm_ctx *ctx);
#endif
