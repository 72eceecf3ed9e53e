# Device-model configuration and command line (libdm/config.c, libdm/argv.c).
libdm_core_la_SOURCES += libdm/config.c libdm/argv.c libdm/config-internal.h
# Typed devices (disks, NICs and their taps, VNC, serial...): libdm/devices*.c.
libdm_core_la_SOURCES += libdm/devices.c libdm/devices-argv.c libdm/devices-run.c \
	libdm/netdev.c libdm/devices-internal.h

check_PROGRAMS += tests/unit/test-argv
TESTS += tests/unit/test-argv
tests_unit_test_argv_SOURCES = tests/unit/test-argv.c
tests_unit_test_argv_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_argv_LDADD = libdm-core.la $(DEPS_LIBS) $(CMOCKA_LIBS)
EXTRA_DIST += tests/unit/golden
# Where the golden files are when $top_srcdir is not exported (a manual run).
tests_unit_test_argv_CPPFLAGS = $(AM_CPPFLAGS) -DLIBDM_TEST_TOP_SRCDIR='"$(abs_top_srcdir)"'

# Devices with a real QEMU from an xl.cfg (root: netns, bridge, taps), and
# the same guest on the xen profile with the real Xen DM (fake hypervisor).
TESTS += tests/integration/test-dmctl-devices.sh tests/integration/test-xen-devices.sh
EXTRA_DIST += tests/integration/test-dmctl-devices.sh tests/integration/test-xen-devices.sh
