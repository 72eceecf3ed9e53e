/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmctl: interruptions. SIGINT, SIGTERM and SIGHUP never kill dmctl: the
 * handler only records them, and dmctl stops the current operation at its
 * next safe point, drains what is outstanding on the monitor, and exits with
 * DMCTL_EXIT_INTERRUPTED. There is no SA_RESETHAND and no re-raise: dying in
 * the middle of a QMP exchange wedges pre-4.2 monitors, and during a start
 * it would leave a device model nobody recorded.
 *
 * GNU timeout, supervisors and terminals often deliver one interruption as
 * two or more signals in a burst: every signal within
 * DMCTL_SIGNAL_BURST_MS of the first is the same interruption. Only a later,
 * separate signal counts as insisting, and all it does is cut the drain
 * deadline to DMCTL_INSIST_DRAIN_MS.
 */
#include "config.h"

#include <libdm/libdm.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "dmctl.h"

#define DMCTL_SIGNAL_BURST_MS 500
#define DMCTL_INSIST_DRAIN_MS 1000
#define DMCTL_WAIT_SLICE_MS 100

static volatile sig_atomic_t first_signal;
static volatile sig_atomic_t insisted;
/* Written by the handler only, before first_signal is set; the handler
 * never interrupts itself (sa_mask blocks all three signals). */
static struct timespec first_at;

static long elapsed_ms(const struct timespec *from, const struct timespec *to)
{
    return (long)(to->tv_sec - from->tv_sec) * 1000 + (to->tv_nsec - from->tv_nsec) / 1000000;
}

/* Async-signal-safe: clock_gettime and plain stores only. */
static void on_signal(int sig)
{
    struct timespec now;
    int saved = errno;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!first_signal) {
        first_at = now;
        first_signal = sig;
    } else if (elapsed_ms(&first_at, &now) >= DMCTL_SIGNAL_BURST_MS) {
        insisted = 1;
    }
    errno = saved;
}

void dmctl_install_signal_handlers(void)
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    struct sigaction sa;
    size_t i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&sa.sa_mask, sigs[i]);
    /* No SA_RESTART: libdm's waits see EINTR and dmctl's own waits notice
     * the interruption; no SA_RESETHAND: a later signal is handled too. */
    sa.sa_flags = 0;
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}

int dmctl_signal_received(void)
{
    return first_signal;
}

/* An interruption that came too late to change anything (a migration
 * that had completed): forgotten, so that the command's own outcome and
 * exit status stand (issue 22, 11). Blocks the signals while it clears. */
void dmctl_signal_forget(void)
{
    sigset_t all, old;

    sigemptyset(&all);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGTERM);
    sigaddset(&all, SIGHUP);
    sigprocmask(SIG_BLOCK, &all, &old);
    first_signal = 0;
    insisted = 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
}

const char *dmctl_signal_name(int sig)
{
    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "a signal";
    }
}

int dmctl_wait(dmctl *d, const bool *done)
{
    int r;

    while (!*done) {
        if (dmctl_signal_received())
            return -EINTR;
        r = libdm_ctx_run_once(d->ctx, DMCTL_WAIT_SLICE_MS);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The drain deadline: @deadline, or sooner once the user insisted. */
static uint64_t drain_deadline(uint64_t deadline, uint64_t *insist_deadline)
{
    if (insisted && *insist_deadline == UINT64_MAX)
        *insist_deadline = libdm_now_ms() + DMCTL_INSIST_DRAIN_MS;
    return *insist_deadline < deadline ? *insist_deadline : deadline;
}

int dmctl_drain(dmctl *d, libdm_qmp *q)
{
    uint64_t deadline = libdm_now_ms() + (uint64_t)d->timeout_ms;
    uint64_t insist_deadline = UINT64_MAX, now;
    int r;

    while (q && libdm_qmp_outstanding(q) > 0) {
        now = libdm_now_ms();
        if (now >= drain_deadline(deadline, &insist_deadline))
            return 0;
        r = libdm_ctx_run_once(d->ctx, DMCTL_WAIT_SLICE_MS);
        if (r < 0)
            return r;
    }
    return 1;
}
