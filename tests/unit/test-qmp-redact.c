/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The logged form of QMP commands (libdm/qmp-redact.c): no password, no
 * secret's data, at any depth; everything else as sent. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qmp-internal.h"

static char *redact(const char *text)
{
    char *out = NULL;

    assert_int_equal(libdm__qmp_redact(text, strlen(text), &out), 0);
    assert_non_null(out);
    return out;
}

static void check(const char *in, const char *secret, const char *kept)
{
    char *out = redact(in);

    assert_null(strstr(out, secret));
    assert_non_null(strstr(out, "<redacted>"));
    if (kept)
        assert_non_null(strstr(out, kept));
    free(out);
}

static void test_set_password(void **state)
{
    (void)state;
    check("{\"execute\":\"set_password\",\"arguments\":{\"protocol\":\"vnc\","
          "\"password\":\"S3kr1t-Pw\"},\"id\":\"7\"}", "S3kr1t-Pw", "\"protocol\":\"vnc\"");
    check("{\"execute\":\"change-vnc-password\",\"arguments\":{\"password\":\"S3kr1t-Pw\"}}",
          "S3kr1t-Pw", "change-vnc-password");
}

static void test_object_add_secret(void **state)
{
    (void)state;
    check("{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"secret\",\"id\":\"sec0\","
          "\"data\":\"TopSecretData\",\"format\":\"raw\"}}", "TopSecretData", "\"id\":\"sec0\"");
}

static void test_nested_password(void **state)
{
    (void)state;
    check("{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"nbd\",\"server\":"
          "{\"password\":\"NestedPw\"},\"list\":[{\"Passphrase\":\"ArrPw\"}]}}", "NestedPw",
          "\"driver\":\"nbd\"");
    check("{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":\"t0\","
          "\"x\":[{\"passphrase\":\"ArrPw\"}]}}", "ArrPw", "\"tls-creds\":\"t0\"");
}

static void test_harmless_untouched(void **state)
{
    char *out;

    (void)state;
    /* "data" is a secret only in object-add. */
    out = redact("{\"execute\":\"human-monitor-command\",\"arguments\":{\"data\":\"info\"}}");
    assert_string_equal(out, "{\"execute\":\"human-monitor-command\",\"arguments\":{\"data\":\"info\"}}");
    free(out);
    out = redact("{\"execute\":\"query-status\",\"id\":\"1\"}");
    assert_string_equal(out, "{\"execute\":\"query-status\",\"id\":\"1\"}");
    free(out);
}

static void test_invalid_refused(void **state)
{
    char *out = (char *)"x";

    (void)state;
    assert_true(libdm__qmp_redact("{\"password\":", 12, &out) < 0);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_password),
        cmocka_unit_test(test_object_add_secret),
        cmocka_unit_test(test_nested_password),
        cmocka_unit_test(test_harmless_untouched),
        cmocka_unit_test(test_invalid_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
