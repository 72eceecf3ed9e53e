/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Context-level asynchronous jobs (job-internal.h). */
#include "job-internal.h"
#include "ctx-internal.h"

/* -EAGAIN from a step: true while the same step may be tried again. */
static bool again(libdm__job *job, int r)
{
    uint64_t now;

    if (r != -EAGAIN) {
        job->again_since = 0;
        return false;
    }
    now = libdm_now_ms();
    if (!job->again_since)
        job->again_since = now;
    return now - job->again_since < LIBDM__JOB_RETRY_MS;
}

static void unlink_job(libdm__job *job)
{
    libdm_ctx *ctx = job->ctx;

    libdm__timer_disarm(ctx, &job->timer);
    if (job->prev)
        job->prev->next = job->next;
    else
        ctx->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->prev = job->next = NULL;
}

static void job_tick(libdm_ctx *ctx, libdm__timer *t, void *user)
{
    libdm__job *job = user;
    int r;

    /* A blocking call for another object runs: nothing of this job is
     * delivered inside it (issue 19, 4). */
    if (libdm__blocking_other(ctx, job)) {
        libdm__postpone(ctx, t);
        return;
    }
    r = job->step(job);
    if (again(job, r)) {
        if (libdm__timer_arm(ctx, t, libdm_now_ms() + 1) >= 0)
            return;
        r = -ENOMEM;
    }
    if (r > 0) {
        if (libdm__defer(ctx, t) >= 0)
            return;
        r = -ENOMEM;
    }
    if (r == -EAGAIN)
        r = -EBUSY; /* another writer held the lock past the bound */
    unlink_job(job);
    job->done(job, r);
}

int libdm__job_start(libdm_ctx *ctx, libdm__job *job, libdm__job_step_fn *step,
                     libdm__job_done_fn *done, libdm__job_drop_fn *drop)
{
    int r;

    job->ctx = ctx;
    job->step = step;
    job->done = done;
    job->drop = drop;
    job->again_since = 0;
    libdm__timer_init(&job->timer, job_tick, job);
    r = libdm__defer(ctx, &job->timer);
    if (r < 0)
        return r;
    job->prev = NULL;
    job->next = ctx->jobs;
    if (ctx->jobs)
        ctx->jobs->prev = job;
    ctx->jobs = job;
    return 0;
}

int libdm__job_run_inline(libdm_ctx *ctx, libdm__job *job, libdm__job_step_fn *step)
{
    int r;

    job->ctx = ctx;
    job->step = step;
    /* No wait here: a blocking form may run inside a callback, on the
     * host's loop. A held lock says -EBUSY at once; the async form waits
     * for it from the loop. */
    while ((r = step(job)) > 0)
        ;
    return r == -EAGAIN ? -EBUSY : r;
}

void libdm__jobs_drop_all(libdm_ctx *ctx)
{
    while (ctx->jobs) {
        libdm__job *job = ctx->jobs;

        unlink_job(job);
        job->drop(job);
    }
}
