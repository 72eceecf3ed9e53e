/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 22, 13: QEMU's ram.mbps is a fractional JSON number ("mbps":
 * 44.74435): libdm__json_get_double() reads every JSON number form, and
 * libdm_json_get_int() still refuses a fraction. Before the fix progress
 * read mbps as an integer and always said 0 Mbit/s.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <libdm/libdm.h>
#include "internal.h"

static double parse_double(const char *text)
{
    libdm_json *v = NULL;
    double d = -1;

    assert_int_equal(libdm_json_parse(text, strlen(text), &v), 0);
    assert_int_equal(libdm__json_get_double(v, &d), 0);
    libdm_json_free(v);
    return d;
}

static void fractions(void **state)
{
    (void)state;
    assert_true(parse_double("44.74435") > 44.7443 && parse_double("44.74435") < 44.7444);
    assert_true(parse_double("30.792678787878785") > 30.79);
    assert_true(parse_double("-1.5") == -1.5);
    assert_true(parse_double("2e3") == 2000);
    assert_true(parse_double("2.5E-1") == 0.25);
    assert_true(parse_double("0") == 0);
    assert_true(parse_double("123") == 123);
}

static void mbps_member(void **state)
{
    const char *reply = "{\"status\":\"completed\",\"ram\":{\"mbps\":268.0843,\"total\":67641344}}";
    libdm_json *v = NULL;
    const libdm_json *mbps;
    int64_t i;
    double d;

    (void)state;
    assert_int_equal(libdm_json_parse(reply, strlen(reply), &v), 0);
    mbps = libdm_json_object_get(libdm_json_object_get(v, "ram"), "mbps");
    assert_int_equal(libdm_json_get_int(mbps, &i), -EINVAL);   /* the old reading */
    assert_int_equal(libdm__json_get_double(mbps, &d), 0);
    assert_true(d > 268 && d < 268.1);
    assert_int_equal(libdm__json_get_double(libdm_json_object_get(v, "status"), &d), -EINVAL);
    libdm_json_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fractions),
        cmocka_unit_test(mbps_member),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
