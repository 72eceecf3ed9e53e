/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-embed: libdm embedded in an sd-event daemon in one-fd mode (the
 * context's fd and deadline registered as sd-event sources, as
 * libdm/adapters/sd-event.h does, but with every libdm call timed).
 *
 * A 1 ms ticker on the same loop measures the host loop's lateness (actual
 * wake-up minus due time): first with the loop idle (baseline), then while
 * 16 DMs are started, resumed, queried (query-status) and stopped with the
 * async calls, all concurrently. Prints lateness p50/p99/max for both and
 * the longest single libdm call (libdm_ctx_process() or an async starter).
 * Usage: bench-embed [NDM] (default 16). Env: QEMU, LIBDM_KEEPER.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include <libdm/libdm.h>
#include "bench-util.h"

#define MAX_SAMPLES 200000

static sd_event *ev;
static libdm_ctx *ctx;
static sd_event_source *io_src, *time_src, *tick_src;
static double *late;
static size_t nlate;
static double max_call_us;
static const char *max_call_what = "-";
static int pending;

static const char *labels[8];
static double label_max[8], label_sum[8];
static unsigned label_n[8];

static void timed(double t0, const char *what)
{
    double d = bu_now_us() - t0;
    int i;

    for (i = 0; i < 8 && labels[i] && labels[i] != what; i++)
        ;
    if (i < 8) {
        labels[i] = what;
        label_n[i]++;
        label_sum[i] += d;
        if (d > label_max[i])
            label_max[i] = d;
    }

    if (d > max_call_us) {
        max_call_us = d;
        max_call_what = what;
    }
}

static void process(void)
{
    double t0 = bu_now_us();

    (void)libdm_ctx_process(ctx);
    timed(t0, "libdm_ctx_process");
}

static int on_io(sd_event_source *s, int fd, uint32_t re, void *u)
{
    (void)s, (void)fd, (void)re, (void)u;
    process();
    return 0;
}

static int on_time(sd_event_source *s, uint64_t usec, void *u)
{
    (void)s, (void)usec, (void)u;
    process();
    return 0;
}

static int prepare(sd_event_source *s, void *u)
{
    uint64_t abs_ms;

    (void)s, (void)u;
    if (libdm_ctx_get_timeout(ctx, &abs_ms) <= 0)
        return sd_event_source_set_enabled(time_src, SD_EVENT_OFF);
    sd_event_source_set_time(time_src, abs_ms ? abs_ms * 1000 : 1);
    return sd_event_source_set_enabled(time_src, SD_EVENT_ONESHOT);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *u)
{
    uint64_t now;

    (void)u;
    sd_event_now(ev, CLOCK_MONOTONIC, &now);
    /* sd_event_now is the wake-up time of this iteration. */
    if (nlate < MAX_SAMPLES)
        late[nlate++] = (double)(now - usec);
    sd_event_source_set_time(s, now + 1000);
    return 0;
}

static void run_for(double ms)
{
    double end = bu_now_us() + ms * 1000;

    while (bu_now_us() < end)
        sd_event_run(ev, 10000);
}

static void run_until_done(int timeout_ms)
{
    double end = bu_now_us() + timeout_ms * 1000.0;

    while (pending > 0 && bu_now_us() < end)
        sd_event_run(ev, 10000);
}

static void on_done(libdm_dm *dm, int status, void *u)
{
    (void)u;
    if (status < 0)
        fprintf(stderr, "bench-embed: %s: %s\n", libdm_dm_get_name(dm),
                libdm_dm_last_error(dm) ? libdm_dm_last_error(dm) : strerror(-status));
    pending--;
}

static void on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *u)
{
    (void)q, (void)u;
    if (r->status < 0)
        fprintf(stderr, "bench-embed: query-status: %s\n", strerror(-r->status));
    pending--;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *label, double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp);
    printf("%-26s n=%-6zu p50 %7.1f us  p99 %7.1f us  max %8.1f us\n", label, n,
           n ? v[n / 2] : 0, n ? v[(size_t)(n * 0.99)] : 0, n ? v[n - 1] : 0);
}

int main(int argc, char **argv)
{
    int ndm = argc > 1 ? atoi(argv[1]) : 16, failed = 0;
    char *dir = bu_mkdtemp("embed");
    libdm_dm_config **cfg;
    libdm_dm **dm;
    double t0, base_p99, load_p99;
    size_t nbase;

    if (ndm < 1 || !dir || !(late = calloc(MAX_SAMPLES, sizeof(*late))))
        return 1;
    /* BENCH_FIFO=1: the daemon at SCHED_FIFO, its children (keepers, QEMUs)
     * reset to SCHED_OTHER, as the issue measures it: what is left of the
     * host's lateness is libdm's own, not the CPU its QEMUs take. */
    if (getenv("BENCH_FIFO") && atoi(getenv("BENCH_FIFO"))) {
        struct sched_param sp = { .sched_priority = 10 };

        if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
            perror("bench-embed: SCHED_FIFO");
        else
            printf("scheduling: SCHED_FIFO 10, children reset to SCHED_OTHER\n");
    }
    cfg = calloc((size_t)ndm, sizeof(*cfg));
    dm = calloc((size_t)ndm, sizeof(*dm));
    if (sd_event_new(&ev) < 0 || libdm_ctx_new(NULL, &ctx) < 0 ||
        libdm_ctx_set_store(ctx, dir) < 0)
        return 1;
    sd_event_add_io(ev, &io_src, libdm_ctx_get_fd(ctx), EPOLLIN, on_io, NULL);
    sd_event_source_set_prepare(io_src, prepare);
    sd_event_add_time(ev, &time_src, CLOCK_MONOTONIC, 1, 1, on_time, NULL);
    sd_event_source_set_enabled(time_src, SD_EVENT_OFF);
    {
        uint64_t now;
        sd_event_now(ev, CLOCK_MONOTONIC, &now);
        sd_event_add_time(ev, &tick_src, CLOCK_MONOTONIC, now + 1000, 1, on_tick, NULL);
        sd_event_source_set_enabled(tick_src, SD_EVENT_ON);
    }

    /* Baseline: the idle loop with the ticker only. */
    run_for(2000);
    nbase = nlate;
    report("lateness, idle baseline", late, nbase);
    base_p99 = nbase ? late[(size_t)(nbase * 0.99)] : 0;

    nlate = 0;
    max_call_us = 0;
    t0 = bu_now_us();
    for (int i = 0; i < ndm; i++) {
        char name[16];
        double c0;

        snprintf(name, sizeof(name), "e%d", i);
        if (libdm_dm_config_new(&cfg[i]) < 0 || libdm_dm_config_set_name(cfg[i], name) < 0 ||
            libdm_dm_config_set_qemu_path(cfg[i], bu_qemu()) < 0 ||
            libdm_dm_config_set_timeout_ms(cfg[i], 30000) < 0)
            return 1;
        c0 = bu_now_us();
        if (libdm_dm_start_async(ctx, cfg[i], on_done, NULL, &dm[i]) < 0) {
            failed++;
            continue;
        }
        timed(c0, "libdm_dm_start_async");
        pending++;
    }
    run_until_done(60000);
    printf("start %d DMs: %.1f ms\n", ndm, (bu_now_us() - t0) / 1000);
    t0 = bu_now_us();
    for (int i = 0; i < ndm; i++) {
        double c0 = bu_now_us();
        if (dm[i] && libdm_dm_resume_async(dm[i], 10000, on_done, NULL) == 0)
            pending++;
        timed(c0, "libdm_dm_resume_async");
    }
    run_until_done(30000);
    for (int i = 0; i < ndm; i++) {
        double c0 = bu_now_us();
        libdm_qmp *q = dm[i] ? libdm_dm_get_qmp(dm[i]) : NULL;
        if (q && libdm_qmp_call_async(q, "query-status", NULL, 10000, on_reply, NULL, NULL) == 0)
            pending++;
        timed(c0, "libdm_qmp_call_async");
    }
    run_until_done(30000);
    printf("resume + query %d DMs: %.1f ms\n", ndm, (bu_now_us() - t0) / 1000);
    t0 = bu_now_us();
    for (int i = 0; i < ndm; i++) {
        double c0 = bu_now_us();
        if (dm[i] && libdm_dm_stop_async(dm[i], 0, 10000, on_done, NULL) == 0)
            pending++;
        timed(c0, "libdm_dm_stop_async");
    }
    run_until_done(60000);
    printf("stop %d DMs: %.1f ms\n", ndm, (bu_now_us() - t0) / 1000);
    report("lateness, under load", late, nlate);
    load_p99 = nlate ? late[(size_t)(nlate * 0.99)] : 0;
    printf("longest libdm call: %.1f us (%s)\n", max_call_us, max_call_what);
    for (int i = 0; i < 8 && labels[i]; i++)
        printf("  %-24s calls %-5u mean %8.1f us  max %8.1f us\n", labels[i], label_n[i],
               label_sum[i] / label_n[i], label_max[i]);
    if (pending)
        failed++;
    for (int i = 0; i < ndm; i++) {
        libdm_dm_release(dm[i]);
        libdm_dm_config_free(cfg[i]);
    }
    {
        char lib[64], floor_[64];
        snprintf(lib, sizeof(lib), "%.0f us p99", load_p99);
        snprintf(floor_, sizeof(floor_), "%.0f us p99 idle", base_p99);
        bu_result("embed: host lateness, 16 DMs", lib, floor_,
                  base_p99 > 0 ? load_p99 / base_p99 : 0, "info", "-");
        snprintf(lib, sizeof(lib), "%.0f us", max_call_us);
        bu_result("embed: longest libdm call", lib, "-", 0, "info", "-");
    }
    sd_event_source_disable_unref(io_src);
    sd_event_source_disable_unref(time_src);
    sd_event_source_disable_unref(tick_src);
    libdm_ctx_free(ctx);
    sd_event_unref(ev);
    bu_rmtree(dir);
    free(dir);
    free(cfg);
    free(dm);
    free(late);
    return failed ? 1 : 0;
}
