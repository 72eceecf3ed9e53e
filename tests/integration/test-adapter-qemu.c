/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The header-only event-loop adapters (libdm/adapters/) against a real
 * qemu-system-x86_64: two DMs started, resumed and stopped with the async
 * calls, driven ONLY by the host library's loop (never libdm_ctx_run_once),
 * each step within a deadline; then the context becomes idle (and says so
 * through the idle callback), and nothing is left: fds, children.
 *
 * Built once per adapter: LIBDM_TEST_ADAPTER is 1 (sd-event), 2 (libuv) or
 * 3 (GLib).
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "qemu-fixture.h"
#include "testutil.h"

#if LIBDM_TEST_ADAPTER == 1
#include <libdm/adapters/sd-event.h>
#define ADAPTER_NAME "sd-event"
static sd_event *host_loop;
static libdm_sdevent *adapter;
static void host_new(void) { assert_true(sd_event_new(&host_loop) >= 0); }
static int host_attach(libdm_ctx *ctx) { return libdm_sdevent_attach(ctx, host_loop, &adapter); }
/* One iteration, waiting at most 100 ms. */
static void host_iterate(void) { assert_true(sd_event_run(host_loop, 100 * 1000) >= 0); }
static void host_detach(void) { adapter = libdm_sdevent_detach(adapter); }
static void host_free(void) { host_loop = sd_event_unref(host_loop); }
#elif LIBDM_TEST_ADAPTER == 2
#include <libdm/adapters/libuv.h>
#define ADAPTER_NAME "libuv"
static uv_loop_t host_loop;
static uv_timer_t tick; /* bounds each iteration to 100 ms */
static libdm_uv *adapter;
static void on_tick(uv_timer_t *t) { (void)t; }
/* libuv keeps a process-wide signal pipe once a loop was made: open it
 * before the test counts fds. */
#define HOST_WARM_UP() do { uv_loop_t l; uv_loop_init(&l); uv_loop_close(&l); } while (0)
static void host_new(void)
{
    assert_int_equal(uv_loop_init(&host_loop), 0);
    uv_timer_init(&host_loop, &tick);
    uv_timer_start(&tick, on_tick, 100, 100);
}
static int host_attach(libdm_ctx *ctx) { return libdm_uv_attach(ctx, &host_loop, &adapter); }
static void host_iterate(void) { uv_run(&host_loop, UV_RUN_ONCE); }
static void host_detach(void)
{
    adapter = libdm_uv_detach(adapter);
    uv_run(&host_loop, UV_RUN_NOWAIT); /* runs the close callbacks */
}
static void host_free(void)
{
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&host_loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&host_loop), 0);
}
#elif LIBDM_TEST_ADAPTER == 3
#include <libdm/adapters/glib.h>
#define ADAPTER_NAME "glib"
static GMainContext *host_loop;
static GSource *tick;
static libdm_glib *adapter;
static gboolean on_tick(gpointer p) { (void)p; return G_SOURCE_CONTINUE; }
static void host_new(void)
{
    host_loop = g_main_context_new();
    tick = g_timeout_source_new(100);
    g_source_set_callback(tick, on_tick, NULL, NULL);
    g_source_attach(tick, host_loop);
}
static int host_attach(libdm_ctx *ctx) { return libdm_glib_attach(ctx, host_loop, &adapter); }
static void host_iterate(void) { g_main_context_iteration(host_loop, TRUE); }
static void host_detach(void) { adapter = libdm_glib_detach(adapter); }
static void host_free(void)
{
    g_source_destroy(tick);
    g_source_unref(tick);
    g_main_context_unref(host_loop);
}
#else
#error "LIBDM_TEST_ADAPTER must be 1, 2 or 3"
#endif

#define NDM 2

/* An operation's completions: qf_on_done() counts them. */
typedef qf_done op;

static void on_idle(libdm_ctx *ctx, void *user)
{
    (void)ctx;
    (*(int *)user)++;
}

static bool all_done(const op *ops)
{
    for (int i = 0; i < NDM; i++)
        if (!ops[i].n)
            return false;
    return true;
}

/* Iterates the host loop until every op is done or @ms pass. */
static void run_ops(op *ops, int ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)ms;

    while (!all_done(ops) && tu_now_ms() < deadline)
        host_iterate();
    for (int i = 0; i < NDM; i++) {
        assert_int_equal(ops[i].n, 1);
        assert_int_equal(ops[i].status, 0);
    }
}

static void test_async_lifecycle(void **state)
{
    int fds_before, idle_calls = 0;
    char *dir = tu_mkdtemp("adapter");
    libdm_dm_config *cfg[NDM];
    libdm_dm *dm[NDM];
    op ops[NDM];
    libdm_ctx *ctx;
    uint64_t deadline;

    (void)state;
    assert_non_null(dir);
    fds_before = tu_fd_count();
    host_new();
    assert_int_equal(libdm_ctx_new(NULL, &ctx), 0);
    assert_int_equal(libdm_ctx_set_store(ctx, dir), 0);
    assert_int_equal(libdm_ctx_set_idle_callback(ctx, on_idle, &idle_calls), 0);
    assert_int_equal(host_attach(ctx), 0);
    /* fd mode excludes hooks mode. */
    {
        static const libdm_loop_hooks none;
        assert_int_equal(libdm_ctx_set_loop_hooks(ctx, &none, NULL), -EINVAL);
    }

    memset(ops, 0, sizeof(ops));
    for (int i = 0; i < NDM; i++) {
        char name[16];

        snprintf(name, sizeof(name), "ad%d", i);
        cfg[i] = qf_config(name, 15000);
        assert_int_equal(libdm_dm_start_async(ctx, cfg[i], qf_on_done, &ops[i], &dm[i]), 0);
    }
    /* Not idle while starting. */
    assert_int_equal(libdm_ctx_is_idle(ctx), 0);
    run_ops(ops, 20000);
    for (int i = 0; i < NDM; i++)
        assert_int_equal(libdm_dm_get_state(dm[i]), LIBDM_DM_PAUSED);

    memset(ops, 0, sizeof(ops));
    for (int i = 0; i < NDM; i++)
        assert_int_equal(libdm_dm_resume_async(dm[i], 10000, qf_on_done, &ops[i]), 0);
    run_ops(ops, 10000);
    for (int i = 0; i < NDM; i++)
        assert_int_equal(libdm_dm_get_state(dm[i]), LIBDM_DM_RUNNING);

    memset(ops, 0, sizeof(ops));
    for (int i = 0; i < NDM; i++)
        assert_int_equal(libdm_dm_stop_async(dm[i], 0, 10000, qf_on_done, &ops[i]), 0);
    run_ops(ops, 15000);
    for (int i = 0; i < NDM; i++) {
        assert_int_equal(libdm_dm_get_state(dm[i]), LIBDM_DM_DEAD);
        assert_true(WIFEXITED(libdm_dm_get_exit_status(dm[i])));
        libdm_dm_release(dm[i]);
        libdm_dm_config_free(cfg[i]);
    }

    /* Everything drains: idle within a deadline, reported once at least. */
    deadline = tu_now_ms() + 5000;
    while ((!libdm_ctx_is_idle(ctx) || idle_calls == 0) && tu_now_ms() < deadline)
        host_iterate();
    assert_int_equal(libdm_ctx_is_idle(ctx), 1);
    assert_true(idle_calls >= 1);
    print_message("%s: idle callback ran %d time(s)\n", ADAPTER_NAME, idle_calls);

    host_detach();
    libdm_ctx_free(ctx);
    host_free();
    assert_int_equal(tu_child_count(), 0);
    assert_int_equal(tu_fd_count(), fds_before);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_async_lifecycle),
    };
    int r = tu_require_dm_env();

    if (r)
        return r;
#ifdef HOST_WARM_UP
    HOST_WARM_UP();
#endif
    return cmocka_run_group_tests_name(ADAPTER_NAME, tests, NULL, NULL);
}
