/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 18, item 9: no secret in a log. An application's logger gets
 * XTL_DEBUG by default and so every QMP command as sent; the commands that
 * carry a secret (set_password, change-vnc-password, object-add of a
 * secret, a password key at any depth, a human-monitor-command setting a
 * password) must be logged with "<redacted>" in its place, while QEMU
 * still receives the secret. The peer is fakeqmp (a fake QEMU: the
 * commands need no device model to be answered; the dmctl side with a
 * real QEMU is tests/integration/test-attack-18-cli.sh).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xentoollog.h>

#include "fakeqmp.h"
#include "testutil.h"
#include "libdm/libdm.h"
#include "qmp-internal.h"

#define SECRET "s3cr3t-Hunter2"

/* An application logger: keeps every message, at every level. */
typedef struct {
    xentoollog_logger vtable;
    char *all;
    size_t len;
} capture_logger;

static void capture_vmessage(xentoollog_logger *l, xentoollog_level level, int errnoval,
                             const char *context, const char *format, va_list al)
{
    capture_logger *c = (capture_logger *)l;
    char *m = NULL;
    int n;

    (void)level;
    (void)errnoval;
    (void)context;
    n = vasprintf(&m, format, al);
    assert_true(n >= 0);
    c->all = realloc(c->all, c->len + (size_t)n + 2);
    assert_non_null(c->all);
    memcpy(c->all + c->len, m, (size_t)n);
    c->len += (size_t)n;
    c->all[c->len++] = '\n';
    c->all[c->len] = '\0';
    free(m);
}

static void capture_progress(xentoollog_logger *l, const char *context, const char *doing,
                             int percent, unsigned long done, unsigned long total)
{
    (void)l, (void)context, (void)doing, (void)percent, (void)done, (void)total;
}

static void capture_destroy(xentoollog_logger *l)
{
    (void)l;
}

static libdm_json *args(const char *text)
{
    libdm_json *a = NULL;

    assert_int_equal(libdm_json_parse(text, strlen(text), &a), 0);
    return a;
}

static const char *const calls[][2] = {
    { "set_password", "{\"protocol\":\"vnc\",\"password\":\"" SECRET "\"}" },
    { "change-vnc-password", "{\"password\":\"" SECRET "\"}" },
    { "object-add", "{\"qom-type\":\"secret\",\"id\":\"sec0\",\"data\":\"" SECRET "\"}" },
    { "object-add", "{\"qom-type\":\"secret\",\"id\":\"sec1\",\"props\":{\"data\":\"" SECRET
                    "\"}}" },
    { "blockdev-add", "{\"node-name\":\"n\",\"opts\":[{\"x-vnc-password\":\"" SECRET "\"}]}" },
    { "human-monitor-command", "{\"command-line\":\"set_password vnc " SECRET "\"}" },
    { "human-monitor-command", "{\"command-line\":\"change vnc password " SECRET "\"}" },
};

static void test_application_logger_at_debug(void **state)
{
    capture_logger log = { .vtable = { capture_vmessage, capture_progress, capture_destroy } };
    size_t n = sizeof(calls) / sizeof(calls[0]);
    char *dir, *sock;
    libdm_ctx *ctx = NULL;
    libdm_qmp *q = NULL;
    fakeqmp *f;

    (void)state;
    dir = tu_mkdtemp("redact");
    assert_non_null(dir);
    assert_true(asprintf(&sock, "%s/qmp.sock", dir) > 0);
    f = fakeqmp_new(sock);
    assert_non_null(f);
    fakeqmp_set_auto(f, 1);
    assert_int_equal(fakeqmp_start(f), 0);
    /* An application's logger: debug by default (no set_log_level). */
    assert_int_equal(libdm_ctx_new((xentoollog_logger *)&log, &ctx), 0);
    assert_int_equal(libdm_ctx_get_log_level(ctx), XTL_DEBUG);
    assert_int_equal(libdm_qmp_open(ctx, sock, 5000, &q), 0);
    for (size_t i = 0; i < n; i++) {
        libdm_json *a = args(calls[i][1]), *ret = NULL;

        assert_int_equal(libdm_qmp_call(q, calls[i][0], a, 5000, &ret), 0);
        libdm_json_free(ret);
        libdm_json_free(a);
    }
    /* libdm_qmp_call_text: the same path. */
    assert_int_equal(libdm_qmp_call_text(q, "set_password",
                                         "{\"protocol\":\"vnc\",\"password\":\"" SECRET "\"}",
                                         5000, NULL), 0);
    /* A command without a secret is logged as is. */
    assert_int_equal(libdm_qmp_call_text(q, "qom-get", "{\"path\":\"/machine\","
                                         "\"property\":\"password-free\"}", 5000, NULL), 0);
    libdm_qmp_close(q, 2000);

    /* QEMU got the secret every time... */
    assert_true(fakeqmp_commands(f) >= n + 2);
    for (unsigned i = 0; i < fakeqmp_commands(f); i++)
        if (strstr(fakeqmp_command_line(f, i), "password") &&
            !strstr(fakeqmp_command_line(f, i), "password-free"))
            assert_non_null(strstr(fakeqmp_command_line(f, i), SECRET));
    /* ...the log never. */
    assert_non_null(log.all);
    if (strstr(log.all, SECRET))
        fail_msg("the secret is in the log:\n%s", log.all);
    assert_non_null(strstr(log.all, "QMP send: {\"execute\":\"set_password\""));
    assert_non_null(strstr(log.all, "\"password\":\"<redacted>\""));
    assert_non_null(strstr(log.all, "\"data\":\"<redacted>\""));
    assert_non_null(strstr(log.all, "\"x-vnc-password\":\"<redacted>\""));
    assert_non_null(strstr(log.all, "\"command-line\":\"<redacted>\""));
    assert_non_null(strstr(log.all, "\"property\":\"password-free\""));

    libdm_ctx_free(ctx);
    fakeqmp_free(f);
    free(log.all);
    free(sock);
    tu_rmtree(dir);
    free(dir);
}

/* The redactor alone: what is and is not a secret. */
static void test_redact_rules(void **state)
{
    libdm_json *a, *c = NULL;
    char *t = NULL;

    (void)state;
    a = args("{\"qom-type\":\"memory-backend-ram\",\"id\":\"m\",\"data\":\"x\"}");
    assert_int_equal(libdm__qmp_redact("object-add", a, &c), 0);
    assert_null(c);
    libdm_json_free(a);
    a = args("{\"protocol\":\"vnc\",\"time\":\"now\"}");
    assert_int_equal(libdm__qmp_redact("expire_password", a, &c), 0);
    libdm_json_free(a);
    a = args("{\"command-line\":\"info status\"}");
    assert_int_equal(libdm__qmp_redact("human-monitor-command", a, &c), 0);
    libdm_json_free(a);
    assert_int_equal(libdm__qmp_redact("cont", NULL, &c), 0);
    a = args("{\"qom-type\":\"secret_keyring\",\"id\":\"k\",\"data\":\"" SECRET "\","
             "\"list\":[{\"passwd\":\"" SECRET "\"}]}");
    assert_int_equal(libdm__qmp_redact("object-add", a, &c), 1);
    assert_int_equal(libdm_json_to_string(c, 0, &t), 0);
    assert_null(strstr(t, SECRET));
    assert_non_null(strstr(t, "\"id\":\"k\""));
    free(t);
    libdm_json_free(c);
    libdm_json_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_rules),
        cmocka_unit_test(test_application_logger_at_debug),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
