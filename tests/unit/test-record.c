/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The record and its "dir" text format: round trips, escaping, and every
 * malformed input rejected with the output untouched. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store.h"
#include "record-asserts.h"

static void fill_full(libdm__record *rec)
{
    libdm__record_init(rec);
    rec->name = strdup("vm-1.test_A");
    rec->domid = 7;
    rec->pid = 4242;
    rec->pid_start = UINT64_MAX;
    rec->keeper_pid = 4241;
    rec->keeper_start = 123456789;
    rec->qmp_socket = strdup("/run/libdm/vm-1/qmp \\ with\nnewline");
    rec->dir = strdup("/run/libdm/vm-1");
    rec->profile = strdup("xen");
    rec->state = strdup("running");
    rec->created_ms = INT64_MAX;
    rec->exit_status = 65535;
    assert_non_null(rec->name);
    assert_non_null(rec->qmp_socket);
}

static void test_init_clear(void **state)
{
    libdm__record rec;

    memset(&rec, 0x5a, sizeof(rec));
    libdm__record_init(&rec);
    assert_null(rec.name);
    assert_int_equal(rec.exit_status, -1);
    assert_int_equal(rec.domid, 0);
    fill_full(&rec);
    libdm__record_clear(&rec);
    assert_null(rec.name);
    assert_null(rec.qmp_socket);
    assert_int_equal(rec.exit_status, -1);
    libdm__record_clear(&rec); /* twice is fine */
    libdm__record_init(NULL);
    libdm__record_clear(NULL);
}

static void test_copy(void **state)
{
    libdm__record a, b;

    fill_full(&a);
    assert_int_equal(libdm__record_copy(&a, &b), 0);
    tu_assert_records_equal(&a, &b);
    assert_ptr_not_equal(a.name, b.name);
    assert_ptr_not_equal(a.qmp_socket, b.qmp_socket);
    libdm__record_clear(&a);
    assert_string_equal(b.name, "vm-1.test_A");
    libdm__record_clear(&b);
    assert_int_equal(libdm__record_copy(NULL, &b), -EINVAL);
}

static void test_round_trip(void **state)
{
    libdm__record a, b;
    char *buf;
    size_t len;

    fill_full(&a);
    assert_int_equal(libdm__record_format(&a, &buf, &len), 0);
    assert_int_equal(strlen(buf), len);
    /* Newline and backslash escaped: every line is one key. */
    assert_non_null(strstr(buf, "qmp-socket=/run/libdm/vm-1/qmp \\\\ with\\nnewline\n"));
    assert_non_null(strstr(buf, "pid-start=18446744073709551615\n"));
    assert_non_null(strstr(buf, "created-ms=9223372036854775807\n"));
    assert_non_null(strstr(buf, "exit-status=65535\n"));
    assert_int_equal(libdm__record_parse(buf, len, &b), 0);
    tu_assert_records_equal(&a, &b);
    free(buf);
    libdm__record_clear(&b);

    /* Minimal: just a name; absent strings stay NULL. */
    libdm__record_clear(&a);
    a.name = strdup("x");
    assert_int_equal(libdm__record_format(&a, &buf, &len), 0);
    assert_int_equal(libdm__record_parse(buf, len, &b), 0);
    tu_assert_records_equal(&a, &b);
    assert_int_equal(b.exit_status, -1);
    assert_null(b.qmp_socket);
    free(buf);
    libdm__record_clear(&b);
    libdm__record_clear(&a);
}

static void test_parse_accepts(void **state)
{
    static const char *ok[] = {
        "name=a\n",
        "name=a\ndomid=0\npid=0\nexit-status=-1\n",
        "future-key=whatever \\\\ \\n value\nname=a\n",   /* unknown keys skipped */
        "name=a\nfuture=1\nfuture=2\n",                   /* even twice */
        "name=Zz9_.-\n",
        "name=a\nunknown=\n",
        "name=a\ndomid=32751\npid=2147483647\nkeeper-pid=1\n",
        "name=a\ncreated-ms=0\nexit-status=0\n",
        "name=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", /* 64 */
        "name=a\nprofile=plain\nstate=pre-launch_2\n",
        "name=a\nconfinement=uid 65534 gid 65534, chroot /r,x/root, seccomp qemu-sandbox\n",
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        libdm__record rec;
        int r = libdm__record_parse(ok[i], strlen(ok[i]), &rec);

        if (r != 0)
            fail_msg("rejected valid record #%zu: \"%s\" (%d)", i, ok[i], r);
        libdm__record_clear(&rec);
    }
}

struct bad {
    const char *text;
    size_t len; /* 0: strlen */
    int err;
};

static void check_rejected(const char *text, size_t len, int err, size_t idx)
{
    libdm__record rec, orig;
    int r;

    memset(&rec, 0xa5, sizeof(rec));
    memcpy(&orig, &rec, sizeof(rec));
    r = libdm__record_parse(text, len, &rec);
    if (r != err)
        fail_msg("case #%zu \"%.*s\": got %d, expected %d", idx, (int)(len > 200 ? 200 : len),
                 text, r, err);
    assert_memory_equal(&rec, &orig, sizeof(rec));
}

static void test_parse_rejects(void **state)
{
    static const struct bad bad[] = {
        { "", 0, -EINVAL },                              /* no name */
        { "domid=1\n", 0, -EINVAL },                     /* no name */
        { "name=a", 0, -EINVAL },                        /* no final newline */
        { "name=a\ndomid=1", 0, -EINVAL },
        { "\n", 0, -EINVAL },                            /* empty line */
        { "name=a\n\n", 0, -EINVAL },
        { "name\n", 0, -EINVAL },                        /* no '=' */
        { "=a\nname=a\n", 0, -EINVAL },                  /* empty key */
        { "Name=a\n", 0, -EINVAL },                      /* key charset */
        { "na me=a\n", 0, -EINVAL },
        { "name =a\n", 0, -EINVAL },
        { "name=a\nname=a\n", 0, -EINVAL },              /* duplicate */
        { "name=a\ndomid=1\ndomid=1\n", 0, -EINVAL },
        { "name=\n", 0, -EINVAL },                       /* bad names */
        { "name=.a\n", 0, -EINVAL },
        { "name=-a\n", 0, -EINVAL },
        { "name=a/b\n", 0, -EINVAL },
        { "name=a b\n", 0, -EINVAL },
        { "name=a\r\n", 0, -EINVAL },
        { "name=..\n", 0, -EINVAL },
        { "name=a\\n\n", 0, -EINVAL },
        { "name=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 0, -EINVAL },
        { "name=\xc3\xa9\n", 0, -EINVAL },
        { "name=a\nfoo=\\x\n", 0, -EINVAL },             /* bad escapes, also in unknown keys */
        { "name=a\nfoo=\\\n", 0, -EINVAL },
        { "name=a\ndir=/a\\\n", 0, -EINVAL },
        { "name=a\ndir=/a\\t\n", 0, -EINVAL },
        { "name=a\ndir=/a\\0b\n", 0, -EINVAL },          /* NUL inside a string */
        { "name=a\0\n", 7, -EINVAL },                    /* raw NUL */
        { "name=a\nfoo=\0\n", 13, -EINVAL },
        { "\0name=a\n", 8, -EINVAL },
        { "name=a\ndir=\n", 0, -EINVAL },                /* paths */
        { "name=a\ndir=relative/x\n", 0, -EINVAL },
        { "name=a\nqmp-socket=x\n", 0, -EINVAL },
        { "name=a\nconfinement=\n", 0, -EINVAL },        /* free text: printable only */
        { "name=a\nconfinement=uid 1\\n\n", 0, -EINVAL },
        { "name=a\nconfinement=\xc3\xa9\n", 0, -EINVAL },
        { "name=a\nconfinement=a\tb\n", 0, -EINVAL },
        { "name=a\nprofile=\n", 0, -EINVAL },            /* tokens */
        { "name=a\nprofile=Xen\n", 0, -EINVAL },
        { "name=a\nstate=run ning\n", 0, -EINVAL },
        { "name=a\nstate=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 0, -EINVAL }, /* 33 */
        { "name=a\ndomid=\n", 0, -EINVAL },              /* numbers */
        { "name=a\ndomid=-1\n", 0, -EINVAL },
        { "name=a\ndomid=+1\n", 0, -EINVAL },
        { "name=a\ndomid= 1\n", 0, -EINVAL },
        { "name=a\ndomid=1 \n", 0, -EINVAL },
        { "name=a\ndomid=01\n", 0, -EINVAL },
        { "name=a\ndomid=00\n", 0, -EINVAL },
        { "name=a\ndomid=0x10\n", 0, -EINVAL },
        { "name=a\ndomid=1e3\n", 0, -EINVAL },
        { "name=a\ndomid=32752\n", 0, -EINVAL },         /* DOMID_FIRST_RESERVED */
        { "name=a\ndomid=4294967296\n", 0, -EINVAL },
        { "name=a\ndomid=99999999999999999999999\n", 0, -EINVAL },
        { "name=a\npid=-5\n", 0, -EINVAL },
        { "name=a\npid=-0\n", 0, -EINVAL },
        { "name=a\npid=2147483648\n", 0, -EINVAL },
        { "name=a\nkeeper-pid=-1\n", 0, -EINVAL },
        { "name=a\npid-start=18446744073709551616\n", 0, -EINVAL },
        { "name=a\npid-start=-1\n", 0, -EINVAL },
        { "name=a\nkeeper-start=1.5\n", 0, -EINVAL },
        { "name=a\ncreated-ms=-1\n", 0, -EINVAL },
        { "name=a\ncreated-ms=9223372036854775808\n", 0, -EINVAL },
        { "name=a\nexit-status=-2\n", 0, -EINVAL },
        { "name=a\nexit-status=65536\n", 0, -EINVAL },
        { "name=a\nexit-status=-\n", 0, -EINVAL },
        { "name=a\nexit-status=--1\n", 0, -EINVAL },
        { "name=a\nexit-status=\\0\n", 0, -EINVAL },     /* escaped NUL in a number */
        { "name=a\npid=1\\n\n", 0, -EINVAL },
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_rejected(bad[i].text, bad[i].len ? bad[i].len : strlen(bad[i].text), bad[i].err, i);
}

static void test_size_bound(void **state)
{
    size_t big = 16384 + 1;
    char *buf = malloc(big + 1);
    libdm__record rec;
    size_t off;

    assert_non_null(buf);
    /* A valid record padded with unknown keys up to exactly 16 KiB parses. */
    off = (size_t)sprintf(buf, "name=a\n");
    while (off < 16384) {
        size_t room = 16384 - off;
        size_t n = room > 100 ? 100 : room;

        if (n < 3) { /* too short for "k=\n": widen the previous line */
            break;
        }
        buf[off] = 'k';
        buf[off + 1] = '=';
        memset(buf + off + 2, 'v', n - 3);
        buf[off + n - 1] = '\n';
        off += n;
    }
    assert_int_equal(off, 16384);
    assert_int_equal(libdm__record_parse(buf, off, &rec), 0);
    libdm__record_clear(&rec);
    /* One byte more is refused before anything is looked at. */
    buf[off] = '\n';
    check_rejected(buf, big, -E2BIG, 0);
    free(buf);
}

static void test_bad_args(void **state)
{
    libdm__record rec;
    char *buf;

    assert_int_equal(libdm__record_parse(NULL, 1, &rec), -EINVAL);
    assert_int_equal(libdm__record_parse("name=a\n", 7, NULL), -EINVAL);
    assert_int_equal(libdm__record_parse(NULL, 0, &rec), -EINVAL); /* empty: no name */
    assert_int_equal(libdm__record_format(NULL, &buf, NULL), -EINVAL);
}

static void test_format_rejects(void **state)
{
    libdm__record rec;
    char *buf = (char *)0x1;
    char *huge;

    libdm__record_init(&rec);
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL); /* no name */
    rec.name = strdup(".hidden");
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    free(rec.name);
    rec.name = strdup("ok");
    rec.dir = strdup("relative");
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    free(rec.dir);
    rec.dir = NULL;
    rec.domid = 40000;
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    rec.domid = 1;
    rec.pid = -3;
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    rec.pid = 1;
    rec.exit_status = -7;
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    rec.exit_status = -1;
    rec.created_ms = -1;
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    rec.created_ms = 0;
    rec.state = strdup("Running");
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    free(rec.state);
    rec.state = NULL;
    /* Longer than a path may be. */
    huge = malloc(5000);
    memset(huge, 'a', 4999);
    huge[0] = '/';
    huge[4999] = '\0';
    rec.dir = huge;
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -EINVAL);
    /* Paths of the longest length, all escaped: over 16 KiB in total. */
    memset(huge + 1, '\\', 4094);
    huge[4095] = '\0';
    rec.qmp_socket = strdup(huge);
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), -E2BIG);
    huge[3000] = '\0';
    free(rec.qmp_socket);
    rec.qmp_socket = strdup(huge);
    assert_int_equal(libdm__record_format(&rec, &buf, NULL), 0);
    {
        libdm__record back;
        assert_int_equal(libdm__record_parse(buf, strlen(buf), &back), 0);
        tu_assert_records_equal(&rec, &back);
        libdm__record_clear(&back);
    }
    free(buf);
    libdm__record_clear(&rec);
}

static void test_check_name(void **state)
{
    assert_int_equal(libdm__record_check_name("a"), 0);
    assert_int_equal(libdm__record_check_name("A.b-c_9"), 0);
    assert_int_equal(libdm__record_check_name("9"), 0);
    assert_int_equal(libdm__record_check_name(NULL), -EINVAL);
    assert_int_equal(libdm__record_check_name(""), -EINVAL);
    assert_int_equal(libdm__record_check_name("."), -EINVAL);
    assert_int_equal(libdm__record_check_name("-"), -EINVAL);
    assert_int_equal(libdm__record_check_name("a:b"), -EINVAL);
}

/* Mutations of a valid record: nothing crashes or leaks (run under
 * valgrind/ASan), output untouched on failure, accepted input round-trips. */
static void test_mutations(void **state)
{
    libdm__record base;
    char *text, *buf;
    size_t len;
    unsigned seed = 12345;
    static const char alphabet[] = "=\n\\0n-a/\x00 9x";

    fill_full(&base);
    assert_int_equal(libdm__record_format(&base, &text, &len), 0);
    buf = malloc(len + 8);
    assert_non_null(buf);
    for (int iter = 0; iter < 20000; iter++) {
        libdm__record rec, orig;
        size_t n = len;
        int r;

        memcpy(buf, text, len);
        for (int k = 0; k < 1 + iter % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            switch ((seed >> 16) % 3) {
            case 0:
                buf[pos] = alphabet[(seed >> 4) % (sizeof(alphabet) - 1)];
                break;
            case 1:
                if (n > 1) {
                    memmove(buf + pos, buf + pos + 1, n - pos - 1);
                    n--;
                }
                break;
            default:
                n = pos; /* truncate */
                break;
            }
            if (n == 0)
                break;
        }
        memset(&rec, 0xa5, sizeof(rec));
        memcpy(&orig, &rec, sizeof(rec));
        r = libdm__record_parse(buf, n, &rec);
        if (r < 0) {
            assert_memory_equal(&rec, &orig, sizeof(rec));
        } else {
            char *again;
            size_t again_len;
            libdm__record back;

            assert_int_equal(libdm__record_format(&rec, &again, &again_len), 0);
            assert_int_equal(libdm__record_parse(again, again_len, &back), 0);
            tu_assert_records_equal(&rec, &back);
            libdm__record_clear(&back);
            libdm__record_clear(&rec);
            free(again);
        }
    }
    free(buf);
    free(text);
    libdm__record_clear(&base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_clear),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_accepts),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_size_bound),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_format_rejects),
        cmocka_unit_test(test_check_name),
        cmocka_unit_test(test_mutations),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
