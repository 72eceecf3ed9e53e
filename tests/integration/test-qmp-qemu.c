/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP engine against a real qemu-system-x86_64 (-S -machine none, TCG):
 * negotiation, query-status prelaunch -> cont -> running, events, QMP errors,
 * pipelining, fd passing, quit with its early EOF, and both loop modes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "testutil.h"

typedef struct fixture {
    char *dir;
    char *sock;
    pid_t pid;
    int fds_before;
    libdm_ctx *ctx;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!tu_have_qemu()) {
        print_message("qemu-system-x86_64 not found: skipping\n");
        free(f);
        return -1;
    }
    f->fds_before = tu_fd_count();
    f->dir = tu_mkdtemp("qmp");
    assert_non_null(f->dir);
    assert_true(asprintf(&f->sock, "%s/qmp.sock", f->dir) > 0);
    f->pid = tu_spawn_qemu_qmp(f->sock, NULL);
    assert_true(f->pid > 0);
    assert_int_equal(libdm_ctx_new(NULL, &f->ctx), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    libdm_ctx_free(f->ctx);
    kill(f->pid, SIGKILL);
    tu_reap(f->pid, 5000);
    tu_rmtree(f->dir);
    free(f->sock);
    free(f->dir);
    /* Nothing libdm opened may survive its objects. */
    assert_int_equal(tu_fd_count(), f->fds_before);
    free(f);
    return 0;
}

static char *runstate(libdm_qmp *q)
{
    libdm_json *v = NULL;
    char *s;

    assert_int_equal(libdm_qmp_call(q, "query-status", NULL, 5000, &v), 0);
    s = strdup(libdm_json_get_string(libdm_json_object_get(v, "status")));
    libdm_json_free(v);
    return s;
}

typedef struct seen {
    int resume, shutdown, any;
} seen;

static void on_event(libdm_qmp *q, const char *name, const libdm_json *data, void *user)
{
    seen *s = user;

    (void)q;
    (void)data;
    s->any++;
    if (!strcmp(name, "RESUME"))
        s->resume++;
    if (!strcmp(name, "SHUTDOWN"))
        s->shutdown++;
}

static void test_lifecycle(void **state)
{
    fixture *f = *state;
    libdm_qmp *q;
    libdm_json *v = NULL;
    seen ev = { 0 };
    int64_t major = 0;
    char *rs;

    assert_int_equal(libdm_qmp_open(f->ctx, f->sock, 5000, &q), 0);
    assert_int_equal(libdm_qmp_get_state(q), LIBDM_QMP_READY);
    assert_int_equal(libdm_json_get_int(libdm_json_object_get(libdm_json_object_get(
                         libdm_json_object_get(libdm_qmp_get_greeting(q), "version"), "qemu"),
                                                              "major"),
                                        &major),
                     0);
    assert_true(major >= 7);

    rs = runstate(q);
    assert_string_equal(rs, "prelaunch");
    free(rs);

    /* Listener registered before the command that causes the event. */
    assert_int_equal(libdm_qmp_add_event_listener(q, NULL, on_event, &ev, NULL), 0);
    assert_int_equal(libdm_qmp_call(q, "cont", NULL, 5000, NULL), 0);
    rs = runstate(q);
    assert_string_equal(rs, "running");
    free(rs);
    assert_int_equal(ev.resume, 1);

    /* A QMP error keeps its class and desc. */
    assert_int_equal(libdm_qmp_call(q, "no-such-command", NULL, 5000, &v), -EREMOTEIO);
    assert_null(v);
    assert_string_equal(libdm_qmp_error_class(q), "CommandNotFound");
    assert_non_null(libdm_qmp_error_desc(q));

    /* quit: SHUTDOWN arrives first and QEMU may close before the return. */
    assert_int_equal(libdm_qmp_call(q, "quit", NULL, 5000, NULL), 0);
    assert_int_equal(ev.shutdown, 1);
    assert_int_equal(libdm_qmp_close(q, 5000), 0);
    assert_true(WIFEXITED(tu_reap(f->pid, 5000)));
}

typedef struct pipeline {
    int done, in_order, failed;
    int expect;
} pipeline;

static void on_pipelined(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    pipeline *p = user;

    (void)q;
    if (r->status != 0 || strcmp(libdm_json_get_string(libdm_json_object_get(r->value, "status")),
                                 "prelaunch"))
        p->failed++;
    p->done++;
}

static void on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    pipeline *p = user;

    (void)q;
    if (r->status != 0)
        p->failed++;
    p->done++;
}

static bool all_done(pipeline *p, int n)
{
    return p->done >= n;
}

static void test_pipelining(void **state)
{
    fixture *f = *state;
    enum { N = 500 };
    pipeline p = { 0 };
    libdm_qmp *q;
    uint64_t deadline;

    assert_int_equal(libdm_qmp_open(f->ctx, f->sock, 5000, &q), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(libdm_qmp_call_async(q, "query-status", NULL, 10000, on_pipelined, &p, NULL), 0);
    /* Completions are never delivered inside the call that started them. */
    assert_int_equal(p.done, 0);
    deadline = tu_now_ms() + 20000;
    while (!all_done(&p, N) && tu_now_ms() < deadline)
        assert_true(libdm_ctx_run_once(f->ctx, 1000) >= 0);
    assert_int_equal(p.done, N);
    assert_int_equal(p.failed, 0);
    assert_int_equal(libdm_qmp_outstanding(q), 0);
    assert_int_equal(libdm_qmp_close(q, 5000), 0);
}

static void test_close_drains(void **state)
{
    fixture *f = *state;
    pipeline p = { 0 };
    libdm_qmp *q;

    assert_int_equal(libdm_qmp_open(f->ctx, f->sock, 5000, &q), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(libdm_qmp_call_async(q, "query-status", NULL, 10000, on_pipelined, &p, NULL), 0);
    /* Run just enough to put everything on the wire, then close at once:
     * the close must read all 50 replies first. */
    while (libdm_qmp_outstanding(q) < 50)
        assert_true(libdm_ctx_run_once(f->ctx, 0) >= 0);
    assert_int_equal(libdm_qmp_close(q, 5000), 0);
    assert_int_equal(p.done, 50);
    assert_int_equal(p.failed, 0);
    /* And the monitor still answers a new client. */
    assert_int_equal(libdm_qmp_open(f->ctx, f->sock, 5000, &q), 0);
    assert_int_equal(libdm_qmp_call(q, "query-status", NULL, 5000, NULL), 0);
    assert_int_equal(libdm_qmp_close(q, 5000), 0);
}

static void test_getfd(void **state)
{
    fixture *f = *state;
    libdm_json *args = libdm_json_new_object();
    libdm_qmp *q;
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    assert_int_equal(libdm_json_object_add(args, "fdname", libdm_json_new_string("test-fd")), 0);
    assert_int_equal(libdm_qmp_open(f->ctx, f->sock, 5000, &q), 0);
    /* Without an fd attached QEMU refuses getfd... */
    assert_int_equal(libdm_qmp_call(q, "getfd", args, 5000, NULL), -EREMOTEIO);
    /* ...with one passed by SCM_RIGHTS it accepts it, and closefd finds it. */
    pipeline p = { 0 };
    assert_int_equal(libdm_qmp_call_async_with_fd(q, "getfd", args, pipefd[0], 5000,
                                                  on_status, &p, NULL), 0);
    while (p.done < 1)
        assert_true(libdm_ctx_run_once(f->ctx, 1000) >= 0);
    assert_int_equal(p.failed, 0);
    assert_int_equal(libdm_qmp_call(q, "closefd", args, 5000, NULL), 0);
    assert_int_equal(libdm_qmp_call(q, "closefd", args, 5000, NULL), -EREMOTEIO);
    libdm_json_free(args);
    close(pipefd[0]);
    close(pipefd[1]);
    assert_int_equal(libdm_qmp_close(q, 5000), 0);
}

/* ---- hooks mode: a minimal host loop over poll() ---- */

#define HOST_MAX 8
typedef struct host {
    libdm_ctx *ctx;
    struct {
        int fd;
        short events;
        void *reg;
        bool used;
    } fds[HOST_MAX];
    uint64_t deadline;
    int registered, deregistered, timer_sets;
} host;

static int h_register(void *user, int fd, short events, void *reg, void **ret)
{
    host *h = user;

    for (int i = 0; i < HOST_MAX; i++)
        if (!h->fds[i].used) {
            h->fds[i].used = true;
            h->fds[i].fd = fd;
            h->fds[i].events = events;
            h->fds[i].reg = reg;
            *ret = &h->fds[i];
            h->registered++;
            return 0;
        }
    return -ENOSPC;
}

static int h_modify(void *user, int fd, short events, void **hreg)
{
    (void)user;
    (void)fd;
    ((typeof(((host *)0)->fds[0]) *)*hreg)->events = events;
    return 0;
}

static void h_deregister(void *user, int fd, void *hreg)
{
    host *h = user;

    (void)fd;
    ((typeof(h->fds[0]) *)hreg)->used = false;
    h->deregistered++;
}

static int h_timer(void *user, uint64_t abs)
{
    host *h = user;

    h->deadline = abs;
    h->timer_sets++;
    return 0;
}

static void host_iterate(host *h)
{
    struct pollfd pfd[HOST_MAX];
    int idx[HOST_MAX], n = 0, timeout = 100;
    uint64_t now = libdm_now_ms();

    for (int i = 0; i < HOST_MAX; i++)
        if (h->fds[i].used) {
            pfd[n] = (struct pollfd){ .fd = h->fds[i].fd, .events = h->fds[i].events };
            idx[n++] = i;
        }
    if (h->deadline != UINT64_MAX)
        timeout = h->deadline <= now ? 0 : (int)(h->deadline - now < 100 ? h->deadline - now : 100);
    assert_true(poll(pfd, (nfds_t)n, timeout) >= 0);
    for (int i = 0; i < n; i++)
        if (pfd[i].revents && h->fds[idx[i]].used)
            libdm_ctx_dispatch_fd(h->ctx, h->fds[idx[i]].reg, pfd[i].fd, pfd[i].revents);
    if (h->deadline != UINT64_MAX && libdm_now_ms() >= h->deadline)
        libdm_ctx_dispatch_timeout(h->ctx);
}

static void on_state(libdm_qmp *q, libdm_qmp_state s, int err, void *user)
{
    (void)q;
    (void)err;
    *(libdm_qmp_state *)user = s;
}

static void on_closed(libdm_qmp *q, int status, void *user)
{
    (void)q;
    *(int *)user = status + 1000;
}

static void test_hooks_mode(void **state)
{
    fixture *f = *state;
    static const libdm_loop_hooks hooks = { h_register, h_modify, h_deregister, h_timer };
    host h = { .ctx = f->ctx, .deadline = UINT64_MAX };
    libdm_qmp_state st = LIBDM_QMP_CONNECTING;
    pipeline p = { 0 };
    libdm_qmp *q;
    uint64_t deadline = tu_now_ms() + 10000;
    int closed = 0;

    assert_int_equal(libdm_ctx_set_loop_hooks(f->ctx, &hooks, &h), 0);
    assert_int_equal(libdm_qmp_new(f->ctx, &q), 0);
    assert_int_equal(libdm_qmp_set_state_callback(q, on_state, &st), 0);
    assert_int_equal(libdm_qmp_connect(q, f->sock, 5000), 0);
    /* Queued before READY: sent once negotiation is done. */
    assert_int_equal(libdm_qmp_call_async(q, "query-status", NULL, 5000, on_pipelined, &p, NULL), 0);
    while (p.done < 1 && tu_now_ms() < deadline)
        host_iterate(&h);
    assert_int_equal(st, LIBDM_QMP_READY);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.failed, 0);
    assert_int_equal(libdm_qmp_close_async(q, 5000, on_closed, &closed), 0);
    while (!closed && tu_now_ms() < deadline)
        host_iterate(&h);
    assert_int_equal(closed, 1000);
    assert_true(h.registered >= 1);
    assert_int_equal(h.registered, h.deregistered);
    assert_true(h.timer_sets > 0);
}

typedef struct nested_call {
    int r;
    bool done;
} nested_call;

static void call_blocking_from_callback(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    nested_call *c = user;

    (void)r;
    c->r = libdm_qmp_call(q, "query-status", NULL, 1000, NULL);
    c->done = true;
}

static void test_blocking_inside_callback(void **state)
{
    fixture *f = *state;
    nested_call c = { 0 };
    libdm_qmp *q;

    assert_int_equal(libdm_qmp_open(f->ctx, f->sock, 5000, &q), 0);
    /* A blocking call from inside a callback would re-enter the loop. */
    assert_int_equal(libdm_qmp_call_async(q, "query-status", NULL, 5000,
                                          call_blocking_from_callback, &c, NULL), 0);
    while (!c.done)
        assert_true(libdm_ctx_run_once(f->ctx, 1000) >= 0);
    assert_int_equal(c.r, -EDEADLK);
    assert_int_equal(libdm_qmp_close(q, 5000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_getfd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_inside_callback, setup, teardown),
    };

    if (!tu_have_qemu()) {
        printf("SKIP: %s not found\n", tu_qemu());
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
