/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A start's monitor connection pipelines its readiness (issue 23):
 * libdm__qmp_connect_fd_pipelined() writes qmp_capabilities and every
 * queued command together once QEMU greets, so the start waits for one
 * round trip after the greeting, not two. Never before the greeting: QEMU
 * 7.2 rarely loses what was written before its monitor was set up. The
 * peer here is the other end of a socketpair, driven by hand (the
 * protocol, byte for byte, is what is tested; tests/integration/
 * test-dm-qemu starts real QEMUs through this path).
 *  - pipelined: nothing before the greeting, then both commands before any
 *    reply; the replies complete the call, the connection READY;
 *  - plain libdm_qmp_connect_fd(), with or without "oob": the command only
 *    after the capabilities' reply;
 *  - capabilities refused after a pipelined write: the queued call fails
 *    with the connection, nothing waits for its deadline.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"
#include "qmp-internal.h"
#include "testutil.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
                 "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"

typedef struct peer {
    libdm_ctx *ctx;
    libdm_qmp *q;
    int fd;            /* QEMU's end */
    int status, done;
    char rs[32];
} peer;

static void on_status(libdm_qmp *q, const libdm_qmp_reply *r, void *user)
{
    peer *p = user;
    const char *rs = r->value ? libdm_json_get_string(libdm_json_object_get(r->value, "status"))
                              : NULL;

    p->status = r->status;
    p->done = 1;
    snprintf(p->rs, sizeof(p->rs), "%s", rs ? rs : "");
}

static void setup(peer *p, bool oob)
{
    int sp[2];

    memset(p, 0, sizeof(*p));
    assert_int_equal(libdm_ctx_new(NULL, &p->ctx), 0);
    assert_int_equal(libdm_qmp_new(p->ctx, &p->q), 0);
    if (oob)
        assert_int_equal(libdm_qmp_set_oob(p->q, 1), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    p->fd = sp[1];
    assert_int_equal(oob ? libdm_qmp_connect_fd(p->q, sp[0], 5000)
                         : libdm__qmp_connect_fd_pipelined(p->q, sp[0], 5000), 0);
    assert_int_equal(libdm_qmp_call_async(p->q, "query-status", NULL, 5000, on_status, p, NULL),
                     0);
}

static void teardown(peer *p)
{
    close(p->fd); /* nothing owed: the close returns at once */
    (void)libdm_qmp_close(p->q, 1000);
    libdm_ctx_free(p->ctx);
}

/* What the client wrote so far (a few loop turns first), NUL-terminated. */
static size_t drain(peer *p, char *buf, size_t len)
{
    size_t got = 0;
    ssize_t n;

    for (int i = 0; i < 5; i++)
        (void)libdm_ctx_run_once(p->ctx, 10);
    while (got + 1 < len && (n = recv(p->fd, buf + got, len - 1 - got, MSG_DONTWAIT)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    return got;
}

/* The id of the line of @text that runs @command. */
static void id_of(const char *text, const char *command, char *id, size_t len)
{
    char key[64];
    const char *c, *i;

    snprintf(key, sizeof(key), "\"execute\":\"%s\"", command);
    c = strstr(text, key);
    assert_non_null(c);
    i = strstr(c, "\"id\":\"");
    assert_non_null(i);
    i += 6;
    snprintf(id, len, "%.*s", (int)strcspn(i, "\""), i);
}

#define say(p, ...) assert_true(tu_sayf((p)->fd, __VA_ARGS__))

static void run_until_done(peer *p)
{
    for (int i = 0; i < 200 && !p->done; i++)
        (void)libdm_ctx_run_once(p->ctx, 10);
    assert_true(p->done);
}

static void test_pipelined_after_greeting(void **state)
{
    char buf[1024], caps[32], qs[32];
    peer p;

    (void)state;
    setup(&p, false);
    /* Nothing before QEMU greets. */
    assert_int_equal(drain(&p, buf, sizeof(buf)), 0);
    say(&p, "%s", GREETING);
    /* Then both commands, in order, before any reply. */
    assert_true(drain(&p, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "qmp_capabilities"));
    assert_non_null(strstr(buf, "query-status"));
    assert_true(strstr(buf, "qmp_capabilities") < strstr(buf, "query-status"));
    id_of(buf, "qmp_capabilities", caps, sizeof(caps));
    id_of(buf, "query-status", qs, sizeof(qs));
    assert_int_equal(libdm_qmp_get_state(p.q), LIBDM_QMP_NEGOTIATING);
    say(&p, "{\"return\": {}, \"id\": \"%s\"}\r\n"
            "{\"return\": {\"status\": \"prelaunch\", \"running\": false}, \"id\": \"%s\"}\r\n",
        caps, qs);
    run_until_done(&p);
    assert_int_equal(p.status, 0);
    assert_string_equal(p.rs, "prelaunch");
    assert_int_equal(libdm_qmp_get_state(p.q), LIBDM_QMP_READY);
    assert_int_equal(drain(&p, buf, sizeof(buf)), 0); /* nothing sent twice */
    teardown(&p);
}

static void negotiates_after_greeting(bool oob)
{
    char buf[1024], caps[32], qs[32];
    peer p;

    memset(&p, 0, sizeof(p));
    if (oob) {
        setup(&p, true);
    } else {
        int sp[2];

        assert_int_equal(libdm_ctx_new(NULL, &p.ctx), 0);
        assert_int_equal(libdm_qmp_new(p.ctx, &p.q), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        p.fd = sp[1];
        assert_int_equal(libdm_qmp_connect_fd(p.q, sp[0], 5000), 0);
        assert_int_equal(libdm_qmp_call_async(p.q, "query-status", NULL, 5000, on_status, &p,
                                              NULL), 0);
    }
    assert_int_equal(drain(&p, buf, sizeof(buf)), 0);
    say(&p, "%s", GREETING);
    assert_true(drain(&p, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "qmp_capabilities"));
    assert_null(strstr(buf, "query-status")); /* not before the capabilities' reply */
    assert_true(!oob == !strstr(buf, "\"oob\""));
    id_of(buf, "qmp_capabilities", caps, sizeof(caps));
    say(&p, "{\"return\": {}, \"id\": \"%s\"}\r\n", caps);
    assert_true(drain(&p, buf, sizeof(buf)) > 0);
    id_of(buf, "query-status", qs, sizeof(qs));
    say(&p, "{\"return\": {\"status\": \"prelaunch\", \"running\": false}, \"id\": \"%s\"}\r\n", qs);
    run_until_done(&p);
    assert_int_equal(p.status, 0);
    teardown(&p);
}

static void test_plain_connect_waits_for_greeting(void **state)
{
    (void)state;
    negotiates_after_greeting(false);
}

static void test_oob_waits_for_greeting(void **state)
{
    (void)state;
    negotiates_after_greeting(true);
}

static void test_pipelined_caps_refused(void **state)
{
    char buf[1024], caps[32];
    peer p;

    (void)state;
    setup(&p, false);
    say(&p, "%s", GREETING);
    assert_true(drain(&p, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "query-status")); /* pipelined */
    id_of(buf, "qmp_capabilities", caps, sizeof(caps));
    say(&p, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": \"%s\"}\r\n",
        caps);
    run_until_done(&p);
    assert_true(p.status < 0);
    assert_int_equal(libdm_qmp_get_state(p.q), LIBDM_QMP_BROKEN);
    teardown(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_after_greeting),
        cmocka_unit_test(test_plain_connect_waits_for_greeting),
        cmocka_unit_test(test_oob_waits_for_greeting),
        cmocka_unit_test(test_pipelined_caps_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
