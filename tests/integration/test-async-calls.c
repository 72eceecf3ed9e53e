/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 19, "everything async": the asynchronous forms of list, forget,
 * monitor_holder, query_devices and apply_config against a real
 * qemu-system-x86_64 (-machine none) and the real libdm-keeper. For each:
 * the call returns before its callback, the callback runs from the loop
 * (never inside a libdm call), its result equals the blocking form's, and
 * a call made from inside a callback works (the blocking query_devices
 * returns -EDEADLK there). list is incremental: one record per dispatch.
 * ctx_free with a job pending runs its destroy notification, not its
 * callback. test_userdata: per-DM user data with a getter.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "testutil.h"
#include "qemu-fixture.h"

#define LONG_MS 10000
#define N_DMS 3

typedef struct fixture {
    qf_store s;         /* store and context */
    char prefix[32];
    libdm_dm *dms[N_DMS];
} fixture;

static bool in_call;    /* set around every libdm call the test makes */
#define CALL(expr) (in_call = true, _call_r = (expr), in_call = false, _call_r)
static int _call_r;

static libdm_dm_config *config(fixture *f, int i)
{
    return qf_config_nth(f->prefix, i, LONG_MS);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    qf_open(&f->s, "asynccalls");
    snprintf(f->prefix, sizeof(f->prefix), "ac%d", (int)getpid());
    for (int i = 0; i < N_DMS; i++) {
        libdm_dm_config *cfg = config(f, i);

        if (i == 0) { /* devices: a machine with a bus; VNC on a private socket */
            char vnc[300];

            snprintf(vnc, sizeof(vnc), "unix:%s/vnc.sock", f->s.dir);
            assert_int_equal(libdm_dm_config_set_machine(cfg, "pc"), 0);
            assert_int_equal(libdm_dm_config_add_serial(cfg, LIBDM_SERIAL_PTY, NULL), 0);
            assert_int_equal(libdm_dm_config_set_vnc(cfg, vnc, 0, "secret"), 0);
        }
        assert_int_equal(libdm_dm_start(f->s.ctx, cfg, &f->dms[i]), 0);
        libdm_dm_config_free(cfg);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    for (int i = 0; i < N_DMS; i++)
        if (f->dms[i]) {
            (void)libdm_dm_stop(f->dms[i], 1, LONG_MS);
            libdm_dm_release(f->dms[i]);
        }
    qf_close(&f->s);
    free(f);
    return 0;
}

static void run_until(fixture *f, const bool *done)
{
    qf_run_until(f->s.ctx, done, 5, LONG_MS);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const libdm_dm_info *)a)->name, ((const libdm_dm_info *)b)->name);
}

static void assert_same_infos(libdm_dm_info *a, size_t na, libdm_dm_info *b, size_t nb)
{
    assert_int_equal(na, nb);
    qsort(a, na, sizeof(*a), by_name);
    qsort(b, nb, sizeof(*b), by_name);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(a[i].name, b[i].name);
        assert_int_equal(a[i].pid, b[i].pid);
        assert_int_equal(a[i].alive, b[i].alive);
        assert_string_equal(a[i].state, b[i].state);
        assert_string_equal(a[i].qmp_socket, b[i].qmp_socket);
    }
}

/* ---- list ---- */

typedef struct list_result {
    bool done;
    int status;
    libdm_dm_info *infos;
    size_t count;
    fixture *f;
    bool nested;        /* call the others from inside the callback */
    bool nested_done;
    struct list_result *inner;
} list_result;

static void on_list(libdm_ctx *ctx, int status, libdm_dm_info *infos, size_t count, void *user)
{
    list_result *l = user;

    assert_false(in_call); /* from the loop, never inside a call */
    assert_false(l->done);
    l->done = true;
    l->status = status;
    l->infos = infos;
    l->count = count;
    if (l->nested) {
        libdm_dm_info *b = NULL;
        size_t nb = 0;
        libdm_json *dev = NULL;

        /* Blocking store calls still work from a callback; a blocking
         * monitor call does not (-EDEADLK); async ones are accepted. */
        assert_int_equal(libdm_dm_list(ctx, &b, &nb), 0);
        assert_int_equal(nb, count);
        libdm_dm_info_free(b, nb);
        assert_int_equal(libdm_dm_query_devices(l->f->dms[0], 1000, &dev), -EDEADLK);
        assert_null(dev);
        assert_int_equal(libdm_dm_list_async(ctx, on_list, l->inner, NULL), 0);
        assert_false(l->inner->done);
    }
}

static void test_list(void **state)
{
    fixture *f = *state;
    list_result l = { .f = f }, inner = { .f = f }, outer = { .f = f, .nested = true,
                                                              .inner = &inner };
    libdm_dm_info *b = NULL;
    size_t nb = 0;
    int dispatches = 0;
    uint64_t end = tu_now_ms() + LONG_MS;

    assert_int_equal(CALL(libdm_dm_list_async(f->s.ctx, on_list, &l, NULL)), 0);
    assert_false(l.done);
    /* Incremental: the directory in one dispatch, then one record each. */
    while (!l.done && tu_now_ms() < end) {
        libdm_ctx_run_once(f->s.ctx, 5);
        dispatches++;
    }
    assert_true(l.done);
    assert_int_equal(l.status, 0);
    assert_true(dispatches >= N_DMS + 1);
    assert_int_equal(CALL(libdm_dm_list(f->s.ctx, &b, &nb)), 0);
    assert_same_infos(l.infos, l.count, b, nb);
    assert_int_equal(nb, N_DMS);
    libdm_dm_info_free(l.infos, l.count);
    libdm_dm_info_free(b, nb);

    /* From inside a callback. */
    assert_int_equal(CALL(libdm_dm_list_async(f->s.ctx, on_list, &outer, NULL)), 0);
    run_until(f, &outer.done);
    run_until(f, &inner.done);
    assert_int_equal(inner.status, 0);
    assert_int_equal(inner.count, N_DMS);
    libdm_dm_info_free(outer.infos, outer.count);
    libdm_dm_info_free(inner.infos, inner.count);
}

/* ---- forget ---- */

typedef struct done_result {
    bool done;
    int status;
} done_result;

static void on_forget(libdm_ctx *ctx, int status, void *user)
{
    done_result *d = user;

    assert_false(in_call);
    d->done = true;
    d->status = status;
}

static int forget_async(fixture *f, const char *name)
{
    done_result d = { 0 };

    assert_int_equal(CALL(libdm_dm_forget_async(f->s.ctx, name, on_forget, &d, NULL)), 0);
    assert_false(d.done);
    run_until(f, &d.done);
    return d.status;
}

static bool is_alive(fixture *f, const char *name)
{
    libdm_dm_info *b = NULL;
    size_t nb = 0;
    bool alive = false, found = false;

    assert_int_equal(libdm_dm_list(f->s.ctx, &b, &nb), 0);
    for (size_t i = 0; i < nb; i++)
        if (!strcmp(b[i].name, name))
            found = true, alive = b[i].alive;
    libdm_dm_info_free(b, nb);
    assert_true(found);
    return alive;
}

/* Releases DM @i and kills its QEMU from outside: a dead record. */
static char *make_dead(fixture *f, int i)
{
    char *name = strdup(libdm_dm_get_name(f->dms[i]));
    int pid = libdm_dm_get_pid(f->dms[i]);
    uint64_t end = tu_now_ms() + LONG_MS;

    assert_non_null(name);
    f->dms[i] = libdm_dm_release(f->dms[i]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    while (is_alive(f, name) && tu_now_ms() < end)
        libdm_ctx_run_once(f->s.ctx, 5);
    assert_false(is_alive(f, name));
    return name;
}

static void test_forget(void **state)
{
    fixture *f = *state;
    char missing[80], *dead1, *dead2;
    libdm_dm_info *b = NULL;
    size_t nb = 0;

    snprintf(missing, sizeof(missing), "%s-none", f->prefix);
    /* Nothing of that name; a live DM. */
    assert_int_equal(forget_async(f, missing), libdm_dm_forget(f->s.ctx, missing));
    assert_int_equal(forget_async(f, missing), -ENOENT);
    assert_int_equal(forget_async(f, libdm_dm_get_name(f->dms[0])), -EBUSY);
    assert_int_equal(libdm_dm_forget(f->s.ctx, libdm_dm_get_name(f->dms[0])), -EBUSY);
    /* Dead ones: both forms remove record and directory. */
    dead1 = make_dead(f, 1);
    dead2 = make_dead(f, 2);
    tu_settle_children(f->s.ctx, 0);
    assert_int_equal(forget_async(f, dead1), 0);
    assert_false(tu_path_exists(f->s.dir, dead1));
    assert_int_equal(libdm_dm_forget(f->s.ctx, dead2), 0);
    assert_false(tu_path_exists(f->s.dir, dead2));
    assert_int_equal(libdm_dm_list(f->s.ctx, &b, &nb), 0);
    assert_int_equal(nb, 1);
    libdm_dm_info_free(b, nb);
    assert_int_equal(forget_async(f, dead1), -ENOENT);
    free(dead1);
    free(dead2);
}

/* ---- monitor_holder ---- */

typedef struct holder_result {
    bool done;
    int status, pid;
} holder_result;

static void on_holder(libdm_ctx *ctx, int status, int pid, const char *note,
                      const char *command, void *user)
{
    holder_result *h = user;

    assert_false(in_call);
    h->done = true;
    h->status = status;
    h->pid = pid;
    if (status == 1)
        assert_non_null(command);
}

static void test_monitor_holder(void **state)
{
    fixture *f = *state;
    holder_result h = { 0 };
    char *name = strdup(libdm_dm_get_name(f->dms[0]));
    int pid = -1, r;

    /* Held by this process (the handle is the monitor's one client). */
    r = CALL(libdm_dm_monitor_holder(f->s.ctx, name, &pid, NULL, NULL));
    assert_int_equal(CALL(libdm_dm_monitor_holder_async(f->s.ctx, name, on_holder, &h, NULL)), 0);
    assert_false(h.done);
    run_until(f, &h.done);
    assert_int_equal(h.status, r);
    assert_int_equal(h.status, 1);
    assert_int_equal(h.pid, pid);
    assert_int_equal(h.pid, getpid());
    /* Released: free. */
    f->dms[0] = libdm_dm_release(f->dms[0]);
    tu_settle_children(f->s.ctx, 0);
    r = libdm_dm_monitor_holder(f->s.ctx, name, &pid, NULL, NULL);
    h = (holder_result){ 0 };
    assert_int_equal(libdm_dm_monitor_holder_async(f->s.ctx, name, on_holder, &h, NULL), 0);
    run_until(f, &h.done);
    assert_int_equal(h.status, r);
    assert_int_equal(h.status, 0);
    assert_int_equal(libdm_dm_attach(f->s.ctx, name, &f->dms[0]), 0);
    free(name);
}

/* ---- query_devices, apply_config ---- */

typedef struct dm_result {
    bool done;
    int status;
    fixture *f;
    bool nested;
    struct dm_result *inner;
} dm_result;

static void on_dm_done(libdm_dm *dm, int status, void *user)
{
    dm_result *d = user;
    libdm_json *dev = NULL;

    assert_false(in_call);
    d->done = true;
    d->status = status;
    if (d->nested) {
        assert_int_equal(libdm_dm_query_devices(dm, 1000, &dev), -EDEADLK);
        assert_int_equal(libdm_dm_query_devices_async(dm, LONG_MS, on_dm_done, d->inner), 0);
        assert_false(d->inner->done);
    }
}

static char *json_text(const libdm_json *j)
{
    char *s = NULL;

    assert_non_null(j);
    assert_int_equal(libdm_json_to_string(j, 0, &s), 0);
    return s;
}

static void test_devices(void **state)
{
    fixture *f = *state;
    libdm_dm *dm = f->dms[0];
    dm_result d = { .f = f }, inner = { .f = f }, outer = { .f = f, .nested = true,
                                                            .inner = &inner };
    libdm_json *dev = NULL;
    libdm_dm_config *cfg = config(f, 0);
    char *a, *b;

    assert_int_equal(CALL(libdm_dm_query_devices_async(dm, LONG_MS, on_dm_done, &d)), 0);
    assert_false(d.done);
    /* Behind the running one, not -EBUSY (issue 19): queued, it begins once
     * the first ended. */
    assert_int_equal(CALL(libdm_dm_query_devices_async(dm, LONG_MS, on_dm_done, &inner)), 0);
    run_until(f, &d.done);
    assert_int_equal(d.status, 0);
    assert_false(inner.done);
    run_until(f, &inner.done);
    assert_int_equal(inner.status, 0);
    inner = (dm_result){ .f = f };
    a = json_text(libdm_dm_get_devices(dm));
    assert_non_null(strstr(a, "\"pty\""));
    assert_non_null(strstr(a, "\"vnc\""));
    assert_int_equal(CALL(libdm_dm_query_devices(dm, LONG_MS, &dev)), 0);
    b = json_text(dev);
    assert_string_equal(a, b);
    free(a);
    free(b);
    libdm_json_free(dev);

    /* From inside a callback. */
    assert_int_equal(CALL(libdm_dm_query_devices_async(dm, LONG_MS, on_dm_done, &outer)), 0);
    run_until(f, &outer.done);
    run_until(f, &inner.done);
    assert_int_equal(inner.status, 0);

    /* apply_config: the VNC password over QMP. */
    assert_int_equal(libdm_dm_config_set_vnc(cfg, "127.0.0.1", 90, "secret"), 0);
    d = (dm_result){ .f = f };
    assert_int_equal(CALL(libdm_dm_apply_config_async(dm, cfg, LONG_MS, on_dm_done, &d)), 0);
    assert_false(d.done);
    run_until(f, &d.done);
    assert_int_equal(d.status, 0);
    assert_int_equal(CALL(libdm_dm_apply_config(dm, cfg, LONG_MS)), d.status);
    /* Nothing to do (no VNC): still from the loop. */
    assert_int_equal(libdm_dm_config_set_vnc(cfg, NULL, -1, NULL), 0);
    d = (dm_result){ .f = f };
    assert_int_equal(CALL(libdm_dm_apply_config_async(dm, cfg, LONG_MS, on_dm_done, &d)), 0);
    assert_false(d.done);
    run_until(f, &d.done);
    assert_int_equal(d.status, 0);
    libdm_dm_config_free(cfg);
}

/* ---- query_devices and apply_config behind another operation ---- */

static int q_destroyed;
static void q_destroy(void *user) { (void)user; q_destroyed++; }
static void q_never(libdm_dm *dm, int status, void *user)
{
    (void)dm, (void)status, (void)user;
    fail_msg("a released queued call's callback ran");
}

static void test_devices_behind(void **state)
{
    fixture *f = *state;
    libdm_dm *dm = f->dms[0];
    dm_result pause = { .f = f }, dev = { .f = f }, apply = { .f = f };
    libdm_dm_config *cfg = config(f, 0);
    char name[64];

    /* A pause runs: query_devices and apply_config wait behind it, in order,
     * and each completes from the loop (-EBUSY before). */
    assert_int_equal(libdm_dm_config_set_vnc(cfg, "127.0.0.1", 91, "secret2"), 0);
    assert_int_equal(CALL(libdm_dm_pause_async(dm, LONG_MS, on_dm_done, &pause)), 0);
    assert_int_equal(CALL(libdm_dm_query_devices_async(dm, LONG_MS, on_dm_done, &dev)), 0);
    assert_int_equal(CALL(libdm_dm_apply_config_async(dm, cfg, LONG_MS, on_dm_done, &apply)), 0);
    run_until(f, &pause.done);
    assert_int_equal(pause.status, 0);
    assert_false(dev.done);
    assert_false(apply.done);
    run_until(f, &dev.done);
    assert_int_equal(dev.status, 0);
    assert_non_null(libdm_dm_get_devices(dm));
    assert_false(apply.done);
    run_until(f, &apply.done);
    assert_int_equal(apply.status, 0);
    /* Released while queued: its callback never runs, its destroy once. */
    q_destroyed = 0;
    pause = (dm_result){ .f = f };
    assert_int_equal(libdm_dm_resume_async(dm, LONG_MS, on_dm_done, &pause), 0);
    assert_int_equal(libdm_dm_query_devices_async(dm, LONG_MS, q_never, NULL), 0);
    assert_int_equal(libdm_dm_set_op_destroy(dm, q_destroy), 0);
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(dm));
    f->dms[0] = libdm_dm_release(dm);
    assert_int_equal(q_destroyed, 1);
    for (int i = 0; i < 40; i++)
        libdm_ctx_run_once(f->s.ctx, 5);
    assert_int_equal(q_destroyed, 1);
    assert_int_equal(libdm_dm_attach(f->s.ctx, name, &f->dms[0]), 0);
    /* A queued call on a DM that dies ends with -ESRCH, or -ENOTCONN when
     * its monitor reset was seen before its exit (dm.h). */
    dm = f->dms[0];
    pause = (dm_result){ .f = f };
    dev = (dm_result){ .f = f };
    assert_int_equal(libdm_dm_pause_async(dm, LONG_MS, on_dm_done, &pause), 0);
    assert_int_equal(libdm_dm_query_devices_async(dm, LONG_MS, on_dm_done, &dev), 0);
    assert_int_equal(kill(libdm_dm_get_pid(dm), SIGKILL), 0);
    run_until(f, &dev.done);
    assert_true(dev.status == -ESRCH || dev.status == -ENOTCONN);
    run_until(f, &pause.done);
    libdm_dm_config_free(cfg);
}

/* ---- per-DM user data ---- */

static void on_done_userdata(libdm_dm *dm, int status, void *user)
{
    assert_ptr_equal(libdm_dm_get_userdata(dm), user);
    *(bool *)libdm_dm_get_userdata(dm) = true;
}

static void test_userdata(void **state)
{
    fixture *f = *state;
    bool done = false;
    int other;
    char name[64];

    assert_null(libdm_dm_get_userdata(NULL));
    assert_null(libdm_dm_get_userdata(f->dms[1]));
    assert_null(libdm_dm_set_userdata(f->dms[1], &other));
    assert_ptr_equal(libdm_dm_set_userdata(f->dms[1], &done), &other);
    assert_null(libdm_dm_get_userdata(f->dms[2]));  /* per handle */
    /* Kept across operations; the callback finds it on its handle. */
    assert_int_equal(libdm_dm_query_status_async(f->dms[1], LONG_MS, on_done_userdata, &done), 0);
    run_until(f, &done);
    assert_ptr_equal(libdm_dm_get_userdata(f->dms[1]), &done);
    /* A new handle starts without. */
    snprintf(name, sizeof(name), "%s", libdm_dm_get_name(f->dms[1]));
    f->dms[1] = libdm_dm_release(f->dms[1]);
    assert_int_equal(libdm_dm_attach(f->s.ctx, name, &f->dms[1]), 0);
    assert_null(libdm_dm_get_userdata(f->dms[1]));
}

/* ---- ctx_free with jobs pending ---- */

static int destroyed;
static void count_destroy(void *user) { (void)user; destroyed++; }
static void list_never(libdm_ctx *c, int s, libdm_dm_info *i, size_t n, void *u)
{
    fail_msg("a dropped list's callback ran");
}
static void forget_never(libdm_ctx *c, int s, void *u) { fail_msg("a dropped forget ran"); }

static void test_ctx_free_drops(void **state)
{
    fixture *f = *state;

    destroyed = 0;
    for (int i = 0; i < N_DMS; i++)
        f->dms[i] = libdm_dm_release(f->dms[i]); /* they run on, recorded */
    assert_int_equal(libdm_dm_list_async(f->s.ctx, list_never, NULL, count_destroy), 0);
    libdm_ctx_run_once(f->s.ctx, 0); /* part-way */
    assert_int_equal(libdm_dm_forget_async(f->s.ctx, "x", forget_never, NULL, count_destroy), 0);
    libdm_ctx_free(f->s.ctx);
    assert_int_equal(destroyed, 2);
    /* A new context finds them all, and stops them. */
    assert_int_equal(libdm_ctx_new(NULL, &f->s.ctx), 0);
    assert_int_equal(libdm_ctx_set_store(f->s.ctx, f->s.dir), 0);
    for (int i = 0; i < N_DMS; i++) {
        char name[64];

        snprintf(name, sizeof(name), "%s-%d", f->prefix, i);
        assert_int_equal(libdm_dm_attach(f->s.ctx, name, &f->dms[i]), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_monitor_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_free_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_userdata, setup, teardown),
    };
    int r = tu_require_dm_env();

    if (r)
        return r;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
