/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shared fixture of the real-QEMU cmocka tests (qemu-fixture.h). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "qemu-fixture.h"
#include "testutil.h"

void qf_open(qf_store *s, const char *tag)
{
    s->fds_before = tu_fd_count();
    s->dir = tu_mkdtemp(tag);
    assert_non_null(s->dir);
    assert_int_equal(libdm_ctx_new(NULL, &s->ctx), 0);
    assert_int_equal(libdm_ctx_set_store(s->ctx, s->dir), 0);
}

void qf_close(qf_store *s)
{
    if (s->ctx) {
        tu_settle_children(s->ctx, 0);
        libdm_ctx_free(s->ctx);
        s->ctx = NULL;
    }
    if (s->dir) {
        tu_rmtree(s->dir);
        free(s->dir);
        s->dir = NULL;
    }
}

void qf_assert_clean(const qf_store *s)
{
    assert_int_equal(tu_fd_count(), s->fds_before);
    assert_int_equal(tu_child_count(), 0);
}

size_t qf_listed(libdm_ctx *ctx)
{
    libdm_dm_info *infos = NULL;
    size_t n = 0;

    assert_int_equal(libdm_dm_list(ctx, &infos, &n), 0);
    libdm_dm_info_free(infos, n);
    return n;
}

void qf_assert_no_records(libdm_ctx *ctx)
{
    assert_int_equal(qf_listed(ctx), 0);
}

libdm_dm_config *qf_config(const char *name, int timeout_ms)
{
    libdm_dm_config *cfg = NULL;

    assert_int_equal(libdm_dm_config_new(&cfg), 0);
    assert_int_equal(libdm_dm_config_set_name(cfg, name), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(cfg, tu_qemu()), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(cfg, timeout_ms), 0);
    return cfg;
}

libdm_dm_config *qf_config_nth(const char *prefix, int i, int timeout_ms)
{
    char name[64];

    snprintf(name, sizeof(name), "%s-%d", prefix, i);
    return qf_config(name, timeout_ms);
}

libdm_dm_config *qf_config_pc(const char *name)
{
    libdm_dm_config *cfg = qf_config(name, 10000);

    assert_int_equal(libdm_dm_config_set_machine(cfg, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(cfg, 64), 0);
    return cfg;
}

void qf_on_done(libdm_dm *dm, int status, void *user)
{
    qf_done *d = user;

    (void)dm;
    d->n++;
    d->status = status;
}

void qf_on_reply(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    qf_reply *o = user;

    (void)q;
    o->done = true;
    o->status = r->status;
}

void qf_run_until(libdm_ctx *ctx, const bool *done, int step_ms, int timeout_ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)timeout_ms;

    while (!*done && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, step_ms);
    assert_true(*done);
}

void qf_run_until_count(libdm_ctx *ctx, const int *counter, int want, int timeout_ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)timeout_ms;

    while (*counter < want && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
}

void qf_wait_gone(libdm_ctx *ctx, int pid, int timeout_ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)timeout_ms;

    while (tu_pid_alive(pid) && tu_now_ms() < end)
        libdm_ctx_run_once(ctx, 10);
    assert_false(tu_pid_alive(pid));
}
