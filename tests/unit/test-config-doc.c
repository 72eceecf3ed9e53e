/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issue 22, 1: the configuration document (libdm/config-doc.c). A
 * configuration with every kind of device survives the round trip (the
 * same document and the same command line), and the reader refuses,
 * saying why and never quoting the VNC password, an unknown version, an
 * unknown member, a device this libdm would refuse and what cannot travel.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <libdm/libdm.h>

static libdm_dm_config *full_config(void)
{
    libdm_dm_config *c = NULL;

    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_int_equal(libdm_dm_config_set_name(c, "doc1"), 0);
    assert_int_equal(libdm_dm_config_set_machine(c, "pc"), 0);
    assert_int_equal(libdm_dm_config_set_memory_mb(c, 96), 0);
    assert_int_equal(libdm_dm_config_set_maxmem_mb(c, 128), 0);
    assert_int_equal(libdm_dm_config_set_vcpus(c, 2, 4), 0);
    assert_int_equal(libdm_dm_config_set_boot(c, "dc"), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hda", "/img/root.raw", LIBDM_DISK_RAW, 0), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hdb", "/img/data,x.qcow2", LIBDM_DISK_QCOW2, 0), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "hdc", "/img/cd.iso", LIBDM_DISK_RAW,
                                              LIBDM_DISK_CDROM), 0);
    assert_int_equal(libdm_dm_config_add_disk(c, "sda", "/img/s.raw", LIBDM_DISK_RAW,
                                              LIBDM_DISK_READONLY), 0);
    assert_int_equal(libdm_dm_config_add_nic(c, "00:16:3e:01:02:03", "e1000", "br0", NULL, NULL), 0);
    assert_int_equal(libdm_dm_config_add_nic(c, "00:16:3e:01:02:04", NULL, NULL, "tapx", NULL), 0);
    assert_int_equal(libdm_dm_config_add_serial(c, LIBDM_SERIAL_PTY, NULL), 0);
    assert_int_equal(libdm_dm_config_add_serial(c, LIBDM_SERIAL_UNIX, "/run/s.sock"), 0);
    assert_int_equal(libdm_dm_config_set_vnc(c, "127.0.0.1", 7, "Secr3tpw"), 0);
    assert_int_equal(libdm_dm_config_set_vnc_findunused(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_keymap(c, "de"), 0);
    assert_int_equal(libdm_dm_config_set_vga(c, LIBDM_VGA_STD, 32), 0);
    assert_int_equal(libdm_dm_config_set_usb(c, 1, 1), 0);
    assert_int_equal(libdm_dm_config_set_acpi(c, 0), 0);
    assert_int_equal(libdm_dm_config_set_machine_opt(c, "suppress-vmdesc", "on"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "-rtc"), 0);
    assert_int_equal(libdm_dm_config_add_extra_arg(c, "base=utc"), 0);
    assert_int_equal(libdm_dm_config_set_restrict(c, 1), 0);
    assert_int_equal(libdm_dm_config_set_runas(c, "64531:64531"), 0);
    return c;
}

static void round_trip(void **state)
{
    libdm_dm_config *c = full_config(), *back = NULL;
    char *doc = NULL, *doc2 = NULL, **a1 = NULL, **a2 = NULL, why[256];

    (void)state;
    assert_int_equal(libdm_dm_config_to_doc(c, &doc, NULL), 0);
    assert_non_null(strstr(doc, "\"version\":1"));
    assert_int_equal(libdm_dm_config_from_doc(doc, strlen(doc), &back, why, sizeof(why)), 0);
    assert_int_equal(libdm_dm_config_to_doc(back, &doc2, NULL), 0);
    assert_string_equal(doc, doc2);
    /* The same command line, once both have the name (not in the document). */
    assert_int_equal(libdm_dm_config_set_name(back, "doc1"), 0);
    assert_int_equal(libdm_dm_config_build_argv(c, 3, &a1), 0);
    assert_int_equal(libdm_dm_config_build_argv(back, 3, &a2), 0);
    size_t i;
    for (i = 0; a1[i] && a2[i]; i++)
        assert_string_equal(a1[i], a2[i]);
    assert_null(a1[i]);
    assert_null(a2[i]);
    assert_true(i > 20);
    libdm_strv_free(a1);
    libdm_strv_free(a2);
    free(doc);
    free(doc2);
    libdm_dm_config_free(c);
    libdm_dm_config_free(back);
}

/* @edit: the document with @from replaced by @to; the reader must refuse it
 * with a reason containing @reason and never the password. */
static void expect_refused(const char *from, const char *to, const char *reason)
{
    libdm_dm_config *c = full_config(), *back = (libdm_dm_config *)1;
    char *doc = NULL, why[256], edited[8192];

    assert_int_equal(libdm_dm_config_to_doc(c, &doc, NULL), 0);
    char *at = strstr(doc, from);
    assert_non_null(at);
    assert_true(strlen(doc) - strlen(from) + strlen(to) < sizeof(edited));
    snprintf(edited, sizeof(edited), "%.*s%s%s", (int)(at - doc), doc, to, at + strlen(from));
    assert_int_equal(libdm_dm_config_from_doc(edited, strlen(edited), &back, why, sizeof(why)),
                     -EINVAL);
    assert_null(back);
    if (!strstr(why, reason))
        fail_msg("refused for \"%s\", expected \"%s\"", why, reason);
    assert_null(strstr(why, "Secr3tpw"));
    free(doc);
    libdm_dm_config_free(c);
}

static void refusals(void **state)
{
    (void)state;
    expect_refused("\"version\":1", "\"version\":2", "version 2 is not understood");
    expect_refused("\"version\":1,", "", "no version");
    expect_refused("\"version\":1", "\"version\":1,\"hotplug\":true", "unknown member \"hotplug\"");
    expect_refused("\"vdev\":\"hda\"", "\"vdev\":\"hda\",\"iothread\":1", "unknown member \"iothread\"");
    expect_refused("\"vdev\":\"hda\"", "\"vdev\":\"hdz\"", "disk 0");
    expect_refused("\"format\":\"raw\"", "\"format\":\"vmdk\"", "disk 0");
    expect_refused("\"kind\":\"pty\"", "\"kind\":\"spice\"", "unknown kind");
    expect_refused("\"profile\":\"plain\"", "\"profile\":\"kvm\"", "profile");
    expect_refused("\"model\":\"e1000\"", "\"model\":\"ne2k\"", "nic 0");
    expect_refused("\"password\":\"Secr3tpw\"", "\"password\":\"Secr3tpw-far-too-long\"", "vnc");
    expect_refused("\"memory_mb\":96", "\"memory_mb\":\"96\"", "memory_mb");
    expect_refused("{", "[", "not a configuration document");
}

static void cannot_travel(void **state)
{
    libdm_dm_config *c = NULL;
    const char *argv[] = { "-xen-domid", "5", NULL }, *why = NULL;
    char *doc = (char *)1;

    (void)state;
    assert_int_equal(libdm_dm_config_new(&c), 0);
    assert_int_equal(libdm_dm_config_set_profile(c, LIBDM_PROFILE_XEN), 0);
    assert_int_equal(libdm_dm_config_set_domid(c, 5), 0);
    assert_int_equal(libdm_dm_config_set_argv(c, argv), 0);
    assert_int_equal(libdm_dm_config_to_doc(c, &doc, &why), -ENOTSUP);
    assert_null(doc);
    assert_non_null(why);
    assert_non_null(strstr(why, "set_argv"));
    libdm_dm_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(refusals),
        cmocka_unit_test(cannot_travel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
