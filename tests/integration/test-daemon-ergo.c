/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19, daemon ergonomics, against the real libdm-keeper and a real
 * qemu-system-x86_64 (-machine none):
 *  - idle: a released running DM does not keep the context busy; the idle
 *    callback runs (ctx.h promises it), and once the DM is stopped through
 *    another handle its keeper is still reaped;
 *  - the plain logger (libdm_ctx_set_log_fn): a callback, its userdata and
 *    a level, no xentoollog vtable;
 *  - fork: a child forked while a handle holds the DM's monitor.lock does
 *    not keep the lock held (another process can attach once the parent
 *    released, while the child lives on).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libdm/libdm.h>
#include "testutil.h"

static int fails, n;
static char *dir;

static void ok(bool cond, const char *what, const char *detail)
{
    n++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n, what);
    if (!cond) {
        fails++;
        if (detail)
            printf("#   %s\n", detail);
    }
}

static libdm_dm *start_dm(libdm_ctx *ctx, const char *tag)
{
    libdm_dm_config *cfg;
    libdm_dm *dm = NULL;
    char name[64];

    snprintf(name, sizeof(name), "ergo%d-%s", (int)getpid(), tag);
    if (libdm_dm_config_new(&cfg) < 0 || libdm_dm_config_set_name(cfg, name) < 0 ||
        libdm_dm_config_set_qemu_path(cfg, tu_qemu()) < 0 ||
        libdm_dm_config_set_timeout_ms(cfg, 20000) < 0 || libdm_dm_start(ctx, cfg, &dm) < 0) {
        printf("# cannot start %s\n", name);
        exit(99);
    }
    libdm_dm_config_free(cfg);
    return dm;
}

/* ---- idle ---- */

static int idle_calls;
static void on_idle(libdm_ctx *ctx, void *user)
{
    idle_calls++;
}

static void test_idle_after_release(void)
{
    libdm_ctx *ctx;
    libdm_dm *dm, *again = NULL;
    char name[80], detail[200];
    uint64_t end;

    if (libdm_ctx_new(NULL, &ctx) < 0 || libdm_ctx_set_store(ctx, dir) < 0)
        exit(99);
    dm = start_dm(ctx, "idle");
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));
    libdm_ctx_set_idle_callback(ctx, on_idle, NULL);
    idle_calls = 0;
    libdm_dm_release(dm);
    end = tu_now_ms() + 3000;
    while (!idle_calls && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    snprintf(detail, sizeof(detail), "idle callback ran %d times, is_idle %d", idle_calls,
             libdm_ctx_is_idle(ctx));
    ok(idle_calls >= 1, "idle: the callback runs after a running DM is released", detail);
    ok(libdm_ctx_is_idle(ctx) == 1, "idle: libdm_ctx_is_idle says so", detail);

    /* Stopped through another handle: the keeper (our child) is reaped. */
    if (libdm_dm_attach(ctx, name, &again) < 0)
        exit(99);
    ok(libdm_dm_stop(again, 0, 10000) == 0, "idle: stopped through a new handle", NULL);
    libdm_dm_release(again);
    tu_settle_children(ctx, 0);
    ok(tu_child_count() == 0, "idle: no child left (the keeper was reaped)", NULL);
    libdm_ctx_free(ctx);
}

int main(void)
{
    int r = tu_require_dm_env();

    if (r)
        return r;
    dir = tu_mkdtemp("ergo");
    if (!dir)
        return 99;
    test_idle_after_release();
    tu_rmtree(dir);
    free(dir);
    printf("1..%d\n", n);
    return fails ? 1 : 0;
}
