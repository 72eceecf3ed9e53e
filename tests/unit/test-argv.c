/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm_dm_config and the device model's argv: golden command lines, every
 * setter's rejections (the config must be unchanged afterwards), and the
 * QEMU option-value escape/split round trip.
 *
 * LIBDM_UPDATE_GOLDEN=1 rewrites the golden files instead of comparing.
 */
#include "internal.h"
#include "config-internal.h"

#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define QEMU "/usr/bin/qemu-system-x86_64"
#define XEN_QEMU "/usr/lib/xen-4.17/bin/qemu-system-i386"
#define QMP_FD 3

/* ---- helpers ---- */

static libdm_dm_config *new_config(void)
{
    libdm_dm_config *c = NULL;

    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_non_null(c);
    return c;
}

static char *join_lines(char **argv)
{
    size_t len = 1, i;
    char *s;

    for (i = 0; argv[i]; i++)
        len += strlen(argv[i]) + 1;
    s = malloc(len);
    assert_non_null(s);
    s[0] = '\0';
    for (i = 0; argv[i]; i++) {
        strcat(s, argv[i]);
        strcat(s, "\n");
    }
    return s;
}

static char *build_text(const libdm_dm_config *c)
{
    char **argv = NULL;
    char *s;

    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), 0);
    assert_non_null(argv);
    s = join_lines(argv);
    libdm_strv_free(argv);
    return s;
}

/* Everything a config holds, argv for both profiles included, as text: the
 * "unchanged" check compares two of these. */
static char *describe(const libdm_dm_config *c)
{
    libdm_dm_config *x = NULL;
    char *plain, *xen, *s;

    assert_int_equal(libdm__config_copy(c, &x), 0);
    x->profile = LIBDM_PROFILE_PLAIN;
    plain = build_text(x);
    x->profile = LIBDM_PROFILE_XEN;
    xen = build_text(x);
    s = libdm__sprintf("profile=%d domid=%u mem=%" PRIu64 " timeout=%d restrict=%d "
                       "seccomp=%d\n%s--\n%s",
                       (int)c->profile, (unsigned)c->domid, c->memory_mb, c->timeout_ms,
                       (int)c->restricted, (int)c->seccomp, plain, xen);
    assert_non_null(s);
    free(plain);
    free(xen);
    libdm_dm_config_free(x);
    return s;
}

/* A config with every field set, so that a setter that wrongly clears or
 * overwrites one shows up in describe(). Buildable in both profiles. */
static libdm_dm_config *full_config(void)
{
    libdm_dm_config *c = new_config();

    assert_int_equal(libdm_dm_config_set_name(c, "full"), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 42), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 96), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, "nobody"), 0);
    assert_int_equal(libdm_dm_config_set_chroot(c, "/var/empty"), 0);
    assert_int_equal(libdm_dm_config_set_incoming(c, "defer"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "-serial"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "none"), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(c, 1234), 0);
    assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_QEMU), 0);
    return c;
}

static char *golden_path(const char *name)
{
    const char *top = getenv("top_srcdir");
    char *p;

#ifdef LIBDM_TEST_TOP_SRCDIR
    if (!top || !top[0])
        top = LIBDM_TEST_TOP_SRCDIR;
#endif
    if (!top || !top[0])
        top = ".";
    p = libdm__sprintf("%s/tests/unit/golden/%s.argv", top, name);
    assert_non_null(p);
    return p;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long len;

    if (!f)
        fail_msg("cannot open golden file %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static void check_golden(const char *name, const libdm_dm_config *c)
{
    char *path = golden_path(name), *got = build_text(c), *want;
    const char *update = getenv("LIBDM_UPDATE_GOLDEN");

    if (update && strcmp(update, "1") == 0) {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fputs(got, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
    }
    want = read_file(path);
    if (strcmp(got, want) != 0)
        fail_msg("argv differs from %s\n--- want\n%s--- got\n%s", path, want, got);
    free(want);
    free(got);
    free(path);
}

/* ---- golden command lines ---- */

static void test_golden_plain_minimal(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "g1"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    check_golden("plain-minimal", c);
    libdm_dm_config_free(c);
}

static void test_golden_plain_pc_incoming(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "mig-dst.1"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 256), 0);
    assert_int_equal(libdm_dm_config_set_incoming(c, "defer"), 0);
    check_golden("plain-pc-incoming", c);
    libdm_dm_config_free(c);
}

static void test_golden_plain_pc_default_memory(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "pc64"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc-i440fx-7.2"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "-serial"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "file:/tmp/a log"), 0);
    check_golden("plain-pc-default-memory", c);
    libdm_dm_config_free(c);
}

static void test_golden_plain_restricted(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "confined"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, "nobody"), 0);
    assert_int_equal(libdm_dm_config_set_chroot(c, "/var/run/libdm/root-confined"), 0);
    check_golden("plain-restricted", c);
    libdm_dm_config_free(c);
}

/* restrict with neither runas nor chroot: only the seccomp sandbox. */
static void test_golden_plain_restricted_bare(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    check_golden("plain-restricted-bare", c);
    libdm_dm_config_free(c);
}

/* The keeper's seccomp filter (QEMU without -sandbox): no -sandbox. */
static void test_golden_plain_restricted_filter(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "filtered"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, "65534:65534"), 0);
    assert_int_equal(libdm_dm_config_set_chroot(c, "/run/libdm/filtered/root"), 0);
    assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_FILTER), 0);
    check_golden("plain-restricted-filter", c);
    libdm_dm_config_free(c);
}

static void test_golden_xen(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "hvm-guest"), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 7), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 1024), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, XEN_QEMU), 0);
    check_golden("xen", c);
    libdm_dm_config_free(c);
}

static void test_golden_xen_restricted(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "hvm-restricted"), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 12), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, XEN_QEMU), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, "131084:131084"), 0);
    check_golden("xen-restricted", c);
    libdm_dm_config_free(c);
}

/* Restore-style: -incoming fd:N, an explicit chroot, a non-xen machine
 * (accel=xen spelled out), extras last. */
static void test_golden_xen_restricted_restore(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "restored"), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 32751), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, XEN_QEMU), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 2048), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, "xen-qemuuser-c1"), 0);
    assert_int_equal(libdm_dm_config_set_chroot(c, "/run/xen/root-restored"), 0);
    assert_int_equal(libdm_dm_config_set_incoming(c, "fd:9"), 0);
    /* device_model_args before -machine, device_model_args_hvm after its
     * value, as libxl 4.17 places them. */
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "-smp"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "2,maxcpus=4"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg_hvm(c, "-no-hpet"), 0);
    check_golden("xen-restricted-restore", c);
    libdm_dm_config_free(c);
}

/* Paths QEMU 7.2 takes whole (-chroot, the binary, -incoming) keep their
 * commas as they are: doubling them would name another directory (checked
 * by hand: "-chroot /x,,y" fails, "-chroot /x,y" works). */
static void test_golden_commas(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "commas"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, "/opt/qemu,7.2/bin/qemu-system-x86_64"), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_chroot(c, "/srv/dm,root/,x,,"), 0);
    assert_int_equal(libdm_dm_config_set_incoming(c, "unix:/run/a,b.sock"), 0);
    check_golden("commas", c);
    libdm_dm_config_free(c);
    /* Names go into -name's option list: a comma would start a new key. */
    c = new_config();
    assert_int_equal(libdm_dm_config_set_name(c, "a,b"), -EINVAL);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc,accel=kvm"), -EINVAL);
    libdm_dm_config_free(c);
}

/* ---- defaults, copy, build-time checks ---- */

static void test_defaults(void **state)
{
    libdm_dm_config *c = new_config();
    char **argv = NULL;

    (void)state;
    assert_int_equal(c->timeout_ms, 10000);
    assert_int_equal(c->profile, LIBDM_PROFILE_PLAIN);
    assert_string_equal(libdm__config_qemu_path(c), LIBDM_DEFAULT_QEMU);
    assert_string_equal(libdm__config_machine(c), "none");
    assert_int_equal(libdm__config_memory_mb(c), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), 0);
    assert_string_equal(argv[0], LIBDM_DEFAULT_QEMU);
    argv = libdm_strv_free(argv);
    assert_null(argv);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    assert_int_equal(libdm__config_memory_mb(c), 64);

    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, NULL), 0);
    assert_string_equal(libdm__config_qemu_path(c), LIBDM_DEFAULT_XEN_QEMU);
    assert_string_equal(libdm__config_machine(c), "xenfv");
    assert_int_equal(libdm__config_memory_mb(c), 128);
    assert_int_equal(libdm_dm_config_set_domid(c, 1), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), 0);
    assert_string_equal(argv[0], LIBDM_DEFAULT_XEN_QEMU);
    libdm_strv_free(argv);
    assert_string_equal(libdm__profile_to_string(LIBDM_PROFILE_XEN), "xen");
    assert_string_equal(libdm__profile_to_string(LIBDM_PROFILE_PLAIN), "plain");
    libdm_dm_config_free(c);
    assert_null(libdm_dm_config_free(NULL));
    assert_null(libdm_strv_free(NULL));
}

static void test_copy(void **state)
{
    libdm_dm_config *c = full_config(), *d = NULL;
    char *before = describe(c), *after;

    (void)state;
    assert_int_equal(libdm__config_copy(c, &d), 0);
    libdm_dm_config_free(c); /* the copy owns nothing of the original */
    after = describe(d);
    assert_string_equal(before, after);
    assert_int_equal(d->n_extra_args, 2);
    free(before);
    free(after);
    libdm_dm_config_free(d);
}

static void test_chroot_dir(void **state)
{
    libdm_dm_config *c = new_config();
    char *dir = (char *)"sentinel";

    (void)state;
    assert_int_equal(libdm_dm_config_set_chroot(c, "/x"), 0);
    assert_int_equal(libdm__config_chroot_dir(c, &dir), 0);
    assert_null(dir); /* not restricted: no -chroot */
    assert_int_equal(libdm_dm_config_set_restrict(c, 7), 0);
    assert_true(c->restricted);
    assert_int_equal(libdm__config_chroot_dir(c, &dir), 0);
    assert_string_equal(dir, "/x");
    free(dir);
    assert_int_equal(libdm_dm_config_set_chroot(c, NULL), 0);
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 5), 0);
    assert_int_equal(libdm__config_chroot_dir(c, &dir), 0);
    assert_string_equal(dir, "/var/run/xen/qemu-root-5");
    free(dir);
    libdm_dm_config_free(c);
}

static void test_build_refusals(void **state)
{
    libdm_dm_config *c = new_config();
    char **argv = (char **)&argv; /* must stay untouched on failure */
    char **sentinel = argv;
    char *text;

    (void)state;
    assert_int_equal(libdm_dm_config_build_argv(NULL, QMP_FD, &argv), -EINVAL);
    assert_int_equal(libdm_dm_config_build_argv(c, -1, &argv), -EINVAL);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, NULL), -EINVAL);
    /* xen needs a domid */
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), -EINVAL);
    assert_int_equal(libdm_dm_config_set_domid(c, 3), 0);
    /* xen + restrict needs someone to run as */
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), -EINVAL);
    assert_ptr_equal(argv, sentinel);
    assert_int_equal(libdm_dm_config_set_runas(c, "0:0"), -EINVAL);
    assert_int_equal(libdm_dm_config_set_runas(c, "1:1"), 0);
    text = build_text(c);
    assert_non_null(strstr(text, "\n-runas\n1:1\n"));
    free(text);
    /* the plain profile ignores the domid and needs no runas */
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_PLAIN), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 0), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, NULL), 0);
    text = build_text(c);
    assert_null(strstr(text, "-xen-domid"));
    assert_null(strstr(text, "-runas"));
    assert_non_null(strstr(text, "\n-sandbox\n"));
    free(text);
    /* the keeper's filter instead of QEMU's -sandbox */
    assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_FILTER), 0);
    text = build_text(c);
    assert_null(strstr(text, "-sandbox"));
    free(text);
    assert_int_equal(libdm_dm_config_set_seccomp(c, LIBDM_SECCOMP_QEMU), 0);
    text = build_text(c);
    assert_non_null(strstr(text, "\n-sandbox\n"));
    free(text);
    assert_int_equal(libdm_dm_config_set_seccomp(c, (libdm_seccomp)3), -EINVAL);
    assert_int_equal(libdm_dm_config_set_seccomp(c, (libdm_seccomp)-1), -EINVAL);
    assert_int_equal(libdm_dm_config_set_seccomp(NULL, LIBDM_SECCOMP_AUTO), -EINVAL);
    assert_int_equal(c->seccomp, LIBDM_SECCOMP_QEMU);
    /* turning restrict off drops every restrict option */
    assert_int_equal(libdm_dm_config_set_restrict(c, 0), 0);
    text = build_text(c);
    assert_null(strstr(text, "-sandbox"));
    free(text);
    libdm_dm_config_free(c);
}

/* ---- setter rejections ---- */

static char *repeat(char ch, size_t n, const char *prefix)
{
    size_t plen = strlen(prefix);
    char *s = malloc(plen + n + 1);

    assert_non_null(s);
    memcpy(s, prefix, plen);
    memset(s + plen, ch, n);
    s[plen + n] = '\0';
    return s;
}

typedef int string_setter(libdm_dm_config *config, const char *value);

/* @bad must be refused with -EINVAL and leave full_config() as it was;
 * @good must be accepted. */
static void check_string_setter(string_setter *set, const char *const *bad, size_t nbad,
                                const char *const *good, size_t ngood)
{
    libdm_dm_config *c = full_config();
    char *before = describe(c), *after;
    size_t i;

    assert_int_equal(set(NULL, good[0]), -EINVAL);
    for (i = 0; i < nbad; i++) {
        if (set(c, bad[i]) != -EINVAL)
            fail_msg("accepted bad value #%zu \"%s\"", i, bad[i] ? bad[i] : "(null)");
        after = describe(c);
        if (strcmp(before, after) != 0)
            fail_msg("bad value \"%s\" changed the config", bad[i] ? bad[i] : "(null)");
        free(after);
    }
    for (i = 0; i < ngood; i++)
        if (set(c, good[i]) != 0)
            fail_msg("refused good value \"%s\"", good[i]);
    free(before);
    libdm_dm_config_free(c);
}

#define CHECK_STRING_SETTER(set, bad, good) \
    check_string_setter(set, bad, LIBDM__ARRAY_SIZE(bad), good, LIBDM__ARRAY_SIZE(good))

static void test_reject_name(void **state)
{
    char *long_name = repeat('n', 65, ""), *max_name = repeat('n', 64, "");
    const char *bad[] = { "", ".a", "-a", "a,b", "a b", "a=b", "a/b", "a\n", "a:b",
                          "\xc3\xa9", "a\tb", long_name };
    const char *good[] = { "a", "A.b-c_9", "9lives", max_name, "guest" };

    (void)state;
    CHECK_STRING_SETTER(libdm_dm_config_set_name, bad, good);
    free(long_name);
    free(max_name);
}

static void test_reject_machine(void **state)
{
    char *long_machine = repeat('m', 65, "");
    const char *bad[] = { "", "-pc", ".pc", "pc,accel=kvm", "pc accel", "pc=1", "pc\n",
                          long_machine };
    const char *good[] = { "pc", "q35", "pc-i440fx-7.2", "none", "xenfv" };

    (void)state;
    CHECK_STRING_SETTER(libdm_dm_config_set_machine, bad, good);
    free(long_machine);
}

static void test_reject_runas(void **state)
{
    char *long_user = repeat('u', 32, "u"), *max_user = repeat('u', 31, "u");
    const char *bad[] = {
        "", "-u", "Root", "0root", "user name", "nobody,x", "a$", long_user,
        /* uid:gid: canonical decimal only, since QEMU reads base 0 */
        ":", "1:", ":1", "01:1", "1:01", "0x1:1", "+1:1", "-1:1", "1:2:3", " 1:1",
        "4294967295:1", "1:4294967295", "99999999999:1", "1:1 ",
        /* never root: by name, uid 0 or gid 0 */
        "root", "0", "0:0", "0:1", "1:0", "00:1",
    };
    const char *good[] = { "nobody", "_x", "a-b_c9", max_user, "1:1", "65534:65534",
                           "4294967294:4294967294", "rooty", "xen-qemuuser-shared" };

    (void)state;
    CHECK_STRING_SETTER(libdm_dm_config_set_runas, bad, good);
    free(long_user);
    free(max_user);
}

static void test_reject_chroot(void **state)
{
    char *too_long = repeat('d', 4095, "/"), *max = repeat('d', 4094, "/");
    const char *bad[] = { "", "relative", "-x", "./x", "~/x", too_long };
    const char *good[] = { "/", "/var/empty", "/a,b", max };

    (void)state;
    CHECK_STRING_SETTER(libdm_dm_config_set_chroot, bad, good);
    free(too_long);
    free(max);
}

static void test_reject_qemu_path(void **state)
{
    char *too_long = repeat('q', 4095, "/");
    const char *bad[] = { "", "qemu-system-x86_64", "-S", "bin/qemu", too_long };
    const char *good[] = { QEMU, "/q" };

    (void)state;
    CHECK_STRING_SETTER(libdm_dm_config_set_qemu_path, bad, good);
    free(too_long);
}

static void test_reject_incoming(void **state)
{
    char *too_long = repeat('x', 4092, "tcp:");
    const char *bad[] = { "", "DEFER", "defer ", "deferred", "unix:", "tcp:", "fd:", "exec:",
                          "file:/x", "rdma:h:1", "-incoming", "/tmp/x", too_long };
    const char *good[] = { "defer", "unix:/tmp/x.sock", "tcp:0:4444", "fd:3",
                           "exec:cat /tmp/state" };

    (void)state;
    CHECK_STRING_SETTER(libdm_dm_config_set_incoming, bad, good);
    free(too_long);
}

static void test_reject_extra_arg(void **state)
{
    const char *bad[] = { NULL, "" };
    const char *good[] = { "-smp", "2", " ", "a,b" };

    (void)state;
    CHECK_STRING_SETTER(libdm_dm_config_add_extra_arg, bad, good);
}

/* NULL clears an optional string back to the profile default. */
static void test_clear_strings(void **state)
{
    libdm_dm_config *c = full_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, NULL), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, NULL), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, NULL), 0);
    assert_int_equal(libdm_dm_config_set_chroot(c, NULL), 0);
    assert_int_equal(libdm_dm_config_set_incoming(c, NULL), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, NULL), 0);
    assert_null(c->name);
    assert_null(c->machine);
    assert_null(c->runas);
    assert_null(c->chroot_dir);
    assert_null(c->incoming);
    assert_null(c->qemu_path);
    libdm_dm_config_free(c);
}

static void check_unchanged_after(libdm_dm_config *c, const char *before, int r)
{
    char *after = describe(c);

    assert_int_equal(r, -EINVAL);
    assert_string_equal(before, after);
    free(after);
}

static void test_reject_numbers(void **state)
{
    libdm_dm_config *c = full_config();
    char *before = describe(c);

    (void)state;
    check_unchanged_after(c, before, libdm_dm_config_set_domid(c, 32752));
    check_unchanged_after(c, before, libdm_dm_config_set_domid(c, 0x7FF0)); /* DOMID_SELF */
    check_unchanged_after(c, before, libdm_dm_config_set_domid(c, UINT32_MAX));
    check_unchanged_after(c, before, libdm_dm_config_set_memory_mb(c, 0));
    check_unchanged_after(c, before, libdm_dm_config_set_memory_mb(c, (1u << 20) + 1));
    check_unchanged_after(c, before, libdm_dm_config_set_memory_mb(c, UINT64_MAX));
    check_unchanged_after(c, before, libdm_dm_config_set_profile(c, (libdm_profile)2));
    check_unchanged_after(c, before, libdm_dm_config_set_profile(c, (libdm_profile)-1));
    check_unchanged_after(c, before, libdm_dm_config_set_timeout_ms(c, 0));
    check_unchanged_after(c, before, libdm_dm_config_set_timeout_ms(c, -1));
    check_unchanged_after(c, before, libdm_dm_config_set_timeout_ms(c, INT_MIN));
    assert_int_equal(libdm_dm_config_set_domid(NULL, 1), -EINVAL);
    assert_int_equal(libdm_dm_config_set_memory_mb(NULL, 1), -EINVAL);
    assert_int_equal(libdm_dm_config_set_profile(NULL, LIBDM_PROFILE_XEN), -EINVAL);
    assert_int_equal(libdm_dm_config_set_timeout_ms(NULL, 1), -EINVAL);
    assert_int_equal(libdm_dm_config_set_restrict(NULL, 1), -EINVAL);
    assert_int_equal(libdm_dm_config_new(NULL), -EINVAL);

    assert_int_equal(libdm_dm_config_set_domid(c, 0), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 32751), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 1u << 20), 0);
    assert_int_equal(libdm_dm_config_set_timeout_ms(c, INT_MAX), 0);
    free(before);
    libdm_dm_config_free(c);
}

/* ---- devices (devices.c, devices-argv.c) ---- */

/* Every device kind, so that each libxl element shows in a golden file. */
static void add_devices(libdm_dm_config *c, bool xen)
{
    assert_int_equal(libdm_dm_config_add_disk(c, xen ? "xvda" : "hda", "/img/root,1.raw",
                                              LIBDM_DISK_RAW, 0), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hdb", "/img/data.qcow2", LIBDM_DISK_QCOW2, 0),
                     0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hdc", xen ? NULL : "/img/cd.iso",
                                              LIBDM_DISK_RAW, LIBDM_DISK_CDROM), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, xen ? "sdb" : "sda", "/img/scsi.raw",
                                              LIBDM_DISK_RAW, LIBDM_DISK_READONLY), 0);
    assert_int_equal(libdm_dm_config_add_nic(c, "00:16:3e:00:00:01", "e1000", "xenbr0", NULL,
                                             NULL), 0);
    assert_int_equal(libdm_dm_config_add_nic(c, "52:54:00:12:34:56", NULL, NULL,
                                             xen ? NULL : "tapx", NULL), 0);
    assert_int_equal(libdm_dm_config_add_nic(c, "52:54:00:12:34:57", "virtio-net-pci", NULL,
                                             NULL, NULL), 0);
    assert_int_equal(libdm_dm_config_add_serial(c, LIBDM_SERIAL_PTY, NULL), 0);
    assert_int_equal(libdm_dm_config_add_serial(c, LIBDM_SERIAL_UNIX, "/run/s 1.sock"), 0);
    assert_int_equal(libdm_dm_config_add_serial(c, LIBDM_SERIAL_FILE, "/var/log/s2.log"), 0);
    assert_int_equal(libdm_dm_config_set_vnc(c, xen ? "0.0.0.0" : NULL, 3, "s3cret"), 0);
    assert_int_equal(libdm_dm_config_set_vcpus(c, 2, xen ? 4 : 2), 0);
    assert_int_equal(libdm_dm_config_set_boot(c, "dc"), 0);
    assert_int_equal(libdm_dm_config_set_vga(c, xen ? LIBDM_VGA_CIRRUS : LIBDM_VGA_STD, 0), 0);
    assert_int_equal(libdm_dm_config_set_usb(c, 0, 1), 0);
    assert_int_equal(libdm_dm_config_set_machine_opt(c, "max-ram-below-4g", "3758096384"), 0);
}

static void test_golden_plain_devices(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "devs"), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, QEMU), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    add_devices(c, false);
    check_golden("plain-devices", c);
    libdm_dm_config_free(c);
}

static void test_golden_xen_devices(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "hvm-devs"), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 5), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, XEN_QEMU), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 512), 0);
    add_devices(c, true);
    assert_int_equal(libdm_dm_config_set_machine_opt(c, "igd-passthru", "off"), 0);
    check_golden("xen-devices", c);
    libdm_dm_config_free(c);
}

/* After start-up under restrict: images and taps are fds (as
 * libdm__devices_prepare() leaves them), VNC on a unix socket, std VGA with
 * its memory, suppress-vmdesc off on a pc machine, a caller's tap fd. */
static void test_golden_xen_devices_started(void **state)
{
    libdm_dm_config *c = new_config();

    (void)state;
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "hvm-fds"), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 9), 0);
    assert_int_equal(libdm_dm_config_set_qemu_path(c, XEN_QEMU), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, "131081:131081"), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hda", "/img/a.raw", LIBDM_DISK_RAW, 0), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hdd", "/img/cd.iso", LIBDM_DISK_RAW,
                                              LIBDM_DISK_CDROM), 0);
    assert_int_equal(libdm_dm_config_add_nic(c, "00:16:3e:0a:0b:0c", "rtl8139", NULL, NULL,
                                             NULL), 0);
    assert_int_equal(libdm_dm_config_add_nic_fd(c, "00:16:3e:0a:0b:0d", "e1000", 0, NULL), 0);
    assert_int_equal(libdm_dm_config_set_vnc(c, "unix:/run/vnc,9.sock", 0, "pw"), 0);
    assert_int_equal(libdm_dm_config_set_vga(c, LIBDM_VGA_STD, 32), 0);
    assert_int_equal(libdm_dm_config_set_vcpus(c, 3, 0), 0);
    assert_int_equal(libdm_dm_config_set_machine_opt(c, "suppress-vmdesc", "off"), 0);
    c->dev.disks[0].qemu_fd = 8;
    c->dev.disks[1].qemu_fd = 9;
    c->dev.nics[0].qemu_fd = 10;
    check_golden("xen-devices-started", c);
    libdm_dm_config_free(c);
}

static void test_nic_names(void **state)
{
    libdm_dm_config *c = new_config();
    char buf[LIBDM__IFNAME_MAX + 1];
    char mac[18];

    (void)state;
    assert_int_equal(libdm_dm_config_set_name(c, "a-rather-long-name"), 0);
    assert_int_equal(libdm_dm_config_add_nic(c, NULL, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(libdm__nic_ifname(c, &c->dev.nics[0], buf, sizeof(buf)), 0);
    /* Too long for dm<name>.0 in IFNAMSIZ: a hash of the whole name, so
     * that names sharing their first characters never share a tap (issue
     * 18 item 13; it was "dma-rather-l.0", the first 10 characters). */
    assert_string_equal(buf, "dm-fabd1132.0");
    assert_int_equal(libdm_dm_config_set_name(c, "a-rather-long-nameB"), 0);
    assert_int_equal(libdm__nic_ifname(c, &c->dev.nics[0], buf, sizeof(buf)), 0);
    assert_string_equal(buf, "dm-27a27350.0");
    assert_int_equal(libdm_dm_config_set_name(c, "short"), 0);
    assert_int_equal(libdm__nic_ifname(c, &c->dev.nics[0], buf, sizeof(buf)), 0);
    assert_string_equal(buf, "dmshort.0");
    assert_int_equal(libdm_dm_config_set_domid(c, 32751), 0);
    assert_int_equal(libdm__nic_ifname(c, &c->dev.nics[0], buf, sizeof(buf)), 0);
    assert_string_equal(buf, "vif32751.0-emu");
    /* A generated MAC is libxl's: Xen OUI, unicast, locally random. */
    libdm__mac_format(c->dev.nics[0].mac, mac);
    assert_memory_equal(mac, "00:16:3e:", 9);
    assert_string_equal(c->dev.nics[0].model, "rtl8139");
    libdm_dm_config_free(c);
}

static void test_reject_devices(void **state)
{
    libdm_dm_config *c = full_config();
    char *before;

    (void)state;
    add_devices(c, false);
    before = describe(c);
    /* disks */
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "hda", "/x", 0, 0)); /* dup */
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "xvda", "/x", 0, 0)); /* = hda */
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "hde", "/x", 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "sdq", "/x", 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "vda", "/x", 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "sdb1", "/x", 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, NULL, "/x", 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "sdb", "rel.img", 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "sdb", NULL, 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "sdb", "/x", 2, 0));
    check_unchanged_after(c, before, libdm_dm_config_add_disk(c, "sdb", "/x", 0, 4));
    check_unchanged_after(c, before,
                          libdm_dm_config_add_disk(c, "sdb", "/x", 0, LIBDM_DISK_CDROM));
    check_unchanged_after(c, before,
                          libdm_dm_config_add_disk(c, "hdd", "/x", 0, LIBDM_DISK_READONLY));
    /* NICs */
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, "01:16:3e:00:00:01", NULL,
                                                             NULL, NULL, NULL)); /* multicast */
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, "00:16:3e:00:00", NULL, NULL,
                                                             NULL, NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, "00:16:3e:00:00:0g", NULL,
                                                             NULL, NULL, NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, "00-16-3e-00-00-01", NULL,
                                                             NULL, NULL, NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, NULL, "no-such-nic", NULL, NULL,
                                                             NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, NULL, NULL, "br,x", NULL, NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, NULL, NULL,
                                                             "a-bridge-name-too-long", NULL,
                                                             NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, NULL, NULL, NULL, "tapx", NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic(c, NULL, NULL, NULL, "-t", NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic_fd(c, NULL, NULL, -1, NULL));
    check_unchanged_after(c, before, libdm_dm_config_add_nic_fd(c, NULL, NULL, 999, NULL));
    /* VNC: a password where VNC is off, bad listen, display, password */
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, NULL, -1, "pw"));
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, "h,to=99", 0, NULL));
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, "-h", 0, NULL));
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, "unix:rel", 0, NULL));
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, NULL, 59636, NULL));
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, NULL, 0, "123456789"));
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, NULL, 0, ""));
    check_unchanged_after(c, before, libdm_dm_config_set_vnc(c, NULL, 0, "a\nb"));
    /* serial: a fifth port, relative or comma paths, a pty with a path */
    check_unchanged_after(c, before, libdm_dm_config_add_serial(c, LIBDM_SERIAL_PTY, "/x"));
    check_unchanged_after(c, before, libdm_dm_config_add_serial(c, LIBDM_SERIAL_FILE, "x"));
    check_unchanged_after(c, before, libdm_dm_config_add_serial(c, LIBDM_SERIAL_UNIX, "/a,b"));
    check_unchanged_after(c, before, libdm_dm_config_add_serial(c, (libdm_serial_kind)7, "/a"));
    assert_int_equal(libdm_dm_config_add_serial(c, LIBDM_SERIAL_PTY, NULL), 0);
    free(before);
    before = describe(c);
    check_unchanged_after(c, before, libdm_dm_config_add_serial(c, LIBDM_SERIAL_PTY, NULL));
    /* vCPUs, boot, VGA, machine options */
    check_unchanged_after(c, before, libdm_dm_config_set_vcpus(c, 0, 0));
    check_unchanged_after(c, before, libdm_dm_config_set_vcpus(c, 3, 2));
    check_unchanged_after(c, before, libdm_dm_config_set_vcpus(c, 1, 129));
    check_unchanged_after(c, before, libdm_dm_config_set_boot(c, ""));
    check_unchanged_after(c, before, libdm_dm_config_set_boot(c, "cdd"));
    check_unchanged_after(c, before, libdm_dm_config_set_boot(c, "cdnab"));
    check_unchanged_after(c, before, libdm_dm_config_set_boot(c, "x"));
    check_unchanged_after(c, before, libdm_dm_config_set_boot(c, "c,menu=on"));
    check_unchanged_after(c, before, libdm_dm_config_set_vga(c, (libdm_vga)3, 0));
    check_unchanged_after(c, before, libdm_dm_config_set_vga(c, LIBDM_VGA_STD, 257));
    check_unchanged_after(c, before, libdm_dm_config_set_vga(c, LIBDM_VGA_NONE, 8));
    check_unchanged_after(c, before, libdm_dm_config_set_machine_opt(c, "accel", "kvm"));
    check_unchanged_after(c, before, libdm_dm_config_set_machine_opt(c, "suppress-vmdesc", "1"));
    check_unchanged_after(c, before,
                          libdm_dm_config_set_machine_opt(c, "max-ram-below-4g", "1G"));
    check_unchanged_after(c, before,
                          libdm_dm_config_set_machine_opt(c, "max-ram-below-4g", "1048576"));
    check_unchanged_after(c, before,
                          libdm_dm_config_set_machine_opt(c, "max-ram-below-4g", "4294967297"));
    check_unchanged_after(c, before, libdm_dm_config_set_machine_opt(c, NULL, "on"));
    assert_int_equal(libdm_dm_config_add_disk(NULL, "hda", "/x", 0, 0), -EINVAL);
    assert_int_equal(libdm_dm_config_set_usb(NULL, 1, 1), -EINVAL);
    free(before);
    libdm_dm_config_free(c);
}

/* Devices need a machine; igd-passthru is a xen machine option. */
static void test_devices_build_refusals(void **state)
{
    libdm_dm_config *c = new_config();
    char **argv = NULL;

    (void)state;
    assert_int_equal(libdm_dm_config_add_serial(c, LIBDM_SERIAL_PTY, NULL), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), -EINVAL);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), 0);
    libdm_strv_free(argv);
    assert_int_equal(libdm_dm_config_set_machine_opt(c, "igd-passthru", "on"), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), -EINVAL);
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 3), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, QMP_FD, &argv), 0);
    libdm_strv_free(argv);
    libdm_dm_config_free(c);
}

/* ---- escape / split ---- */

static void check_split(const char *in, const char *const *want, size_t nwant)
{
    char **pieces = NULL;
    size_t i;

    assert_int_equal(libdm__qemu_opt_split(in, &pieces), (int)nwant);
    for (i = 0; i < nwant; i++)
        assert_string_equal(pieces[i], want[i]);
    assert_null(pieces[nwant]);
    libdm_strv_free(pieces);
}

#define CHECK_SPLIT(in, ...)                                 \
    do {                                                     \
        const char *const want_[] = { __VA_ARGS__ };         \
        check_split(in, want_, LIBDM__ARRAY_SIZE(want_));    \
    } while (0)

/* QEMU's rule, left to right: ",," is a comma, a lone ',' separates. */
static void test_split_rule(void **state)
{
    (void)state;
    CHECK_SPLIT("", "");
    CHECK_SPLIT("a", "a");
    CHECK_SPLIT("a,b", "a", "b");
    CHECK_SPLIT("a,", "a", "");
    CHECK_SPLIT(",a", "", "a");
    CHECK_SPLIT(",", "", "");
    CHECK_SPLIT(",,", ",");
    CHECK_SPLIT(",,,", ",", "");
    CHECK_SPLIT(",,,,", ",,");
    CHECK_SPLIT("a,,,b", "a,", "b");
    CHECK_SPLIT("a,,,,b", "a,,b");
    CHECK_SPLIT("socket,id=x,path=/a,,b,server=on", "socket", "id=x", "path=/a,b", "server=on");
    assert_int_equal(libdm__qemu_opt_split(NULL, NULL), -EINVAL);
}

static void check_escape(const char *in, const char *want)
{
    char *out = NULL;

    assert_int_equal(libdm__qemu_opt_escape(in, &out), 0);
    assert_string_equal(out, want);
    free(out);
}

static void test_escape(void **state)
{
    char *out = NULL;

    (void)state;
    check_escape("", "");
    check_escape("abc", "abc");
    check_escape(",", ",,");
    check_escape(",a,,b,", ",,a,,,,b,,");
    assert_int_equal(libdm__qemu_opt_escape(NULL, &out), -EINVAL);
    assert_null(out);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

/* Random strings biased towards commas and runs of commas at either end. */
static void random_string(char *buf, size_t cap)
{
    static const char alphabet[] = ",,,,a=b \x01\x7f\xc3\xa9/-";
    size_t len = rng() % cap, i;

    for (i = 0; i < len; i++)
        buf[i] = alphabet[rng() % (sizeof(alphabet) - 1)];
    buf[len] = '\0';
}

/* escape(x) splits back to exactly [x], and escape(x) ",k=" escape(y) to
 * [x, "k=" y]. The "k=" matters: a piece right after a separator can never
 * start with a literal comma (",,,," after "a" reads as "a,," then nothing
 * else: pairs are taken greedily from the left), which is why QEMU values
 * always follow "key=" or the start of the string, and why we only splice
 * escaped values there. */
static void check_round_trip(const char *x, const char *y)
{
    char *ex = NULL, *ey = NULL, *joined, **pieces = NULL;

    assert_int_equal(libdm__qemu_opt_escape(x, &ex), 0);
    assert_int_equal(libdm__qemu_opt_escape(y, &ey), 0);
    assert_int_equal(libdm__qemu_opt_split(ex, &pieces), 1);
    assert_string_equal(pieces[0], x);
    assert_null(pieces[1]);
    pieces = libdm_strv_free(pieces);
    joined = libdm__sprintf("%s,k=%s", ex, ey);
    assert_non_null(joined);
    assert_int_equal(libdm__qemu_opt_split(joined, &pieces), 2);
    assert_string_equal(pieces[0], x);
    assert_memory_equal(pieces[1], "k=", 2);
    assert_string_equal(pieces[1] + 2, y);
    libdm_strv_free(pieces);
    free(joined);
    free(ex);
    free(ey);
}

static void test_round_trip(void **state)
{
    static const char *const fixed[] = { "", ",", ",,", ",,,", ",a", "a,", ",a,",
                                         "a,,b", ",,,,,,,,,,", "path=/x,y", "a,b,c," };
    char x[48], y[48];
    size_t i, j;

    (void)state;
    for (i = 0; i < LIBDM__ARRAY_SIZE(fixed); i++)
        for (j = 0; j < LIBDM__ARRAY_SIZE(fixed); j++)
            check_round_trip(fixed[i], fixed[j]);
    for (i = 0; i < 20000; i++) {
        random_string(x, sizeof(x));
        random_string(y, sizeof(y));
        check_round_trip(x, y);
    }
}

/* libxl takes a VNC display past 99 (issue 20): up to port 65535. */
static void test_vnc_display_range(void **state)
{
    libdm_dm_config *c = NULL;

    (void)state;
    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_int_equal(libdm_dm_config_set_vnc(c, NULL, 100, NULL), 0);
    assert_int_equal(libdm_dm_config_set_vnc(c, NULL, 59635, NULL), 0);
    assert_int_equal(libdm_dm_config_set_vnc(c, NULL, 59636, NULL), -EINVAL);
    libdm_dm_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vnc_display_range),
        cmocka_unit_test(test_golden_plain_minimal),
        cmocka_unit_test(test_golden_plain_pc_incoming),
        cmocka_unit_test(test_golden_plain_pc_default_memory),
        cmocka_unit_test(test_golden_plain_restricted),
        cmocka_unit_test(test_golden_plain_restricted_bare),
        cmocka_unit_test(test_golden_plain_restricted_filter),
        cmocka_unit_test(test_golden_xen),
        cmocka_unit_test(test_golden_xen_restricted),
        cmocka_unit_test(test_golden_xen_restricted_restore),
        cmocka_unit_test(test_golden_commas),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_chroot_dir),
        cmocka_unit_test(test_build_refusals),
        cmocka_unit_test(test_reject_name),
        cmocka_unit_test(test_reject_machine),
        cmocka_unit_test(test_reject_runas),
        cmocka_unit_test(test_reject_chroot),
        cmocka_unit_test(test_reject_qemu_path),
        cmocka_unit_test(test_reject_incoming),
        cmocka_unit_test(test_reject_extra_arg),
        cmocka_unit_test(test_clear_strings),
        cmocka_unit_test(test_reject_numbers),
        cmocka_unit_test(test_golden_plain_devices),
        cmocka_unit_test(test_golden_xen_devices),
        cmocka_unit_test(test_golden_xen_devices_started),
        cmocka_unit_test(test_nic_names),
        cmocka_unit_test(test_reject_devices),
        cmocka_unit_test(test_devices_build_refusals),
        cmocka_unit_test(test_split_rule),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
