# xl: libdm as libxl's device model (issue 21) and the harness that runs
# the real `xl create` without Xen.

# xlhyp: the fake of the domain-creation hypercalls and of the domain
# builder, loaded beside xenhyp.so into the real xl (tests only; see the
# comment at the top of the source). Shared object tests/harness/.libs/xlhyp.so.
check_LTLIBRARIES += tests/harness/xlhyp.la
tests_harness_xlhyp_la_SOURCES = tests/harness/xlhyp.c tests/harness/xendoms.c tests/harness/xendoms.h
tests_harness_xlhyp_la_CFLAGS = -std=gnu11 $(WARN_CFLAGS) $(XENTOOLLOG_CFLAGS)
tests_harness_xlhyp_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
tests_harness_xlhyp_la_LIBADD = -ldl

# The stand-in for xenconsoled (tests only; see the source): writes
# /local/domain/<d>/console/tty, which libxl waits for.
check_PROGRAMS += tests/harness/xenconsoled-standin
tests_harness_xenconsoled_standin_SOURCES = tests/harness/xenconsoled-standin.c
tests_harness_xenconsoled_standin_CFLAGS = $(TEST_CFLAGS) $(XENSTORE_CFLAGS)
tests_harness_xenconsoled_standin_LDADD = $(XENSTORE_LIBS)

# A caller-built command line (libdm_dm_config_set_argv), for libdm-xl-dm.
libdm_core_la_SOURCES += libdm/config-adopt.c

# libdm-xl-dm: libxl's device model run by libdm (device_model_override=).
libexec_PROGRAMS += tools/libdm-xl-dm
tools_libdm_xl_dm_SOURCES = tools/libdm-xl-dm.c
tools_libdm_xl_dm_LDADD = libdm.la

# The real `xl create` through libdm-xl-dm, with and without dm_restrict,
# on the real Xen DM under the fake hypervisor (skips, 77, without them).
TESTS += tests/integration/test-xl-create.sh
EXTRA_DIST += tests/integration/test-xl-create.sh

# console/vnc-pass and device-model/<d> as libxl writes them, for a
# xen-profile DM with a VNC password (on qemu-system-x86_64: the Xen DM has
# no DES; see the test's header).
TESTS += tests/integration/test-xen-vncpass.sh
EXTRA_DIST += tests/integration/test-xen-vncpass.sh

# libxl's restore argv (-incoming fd:N) through libdm-xl-dm, on the real Xen
# DM under the fake hypervisor (the fake cannot carry xl save/restore: see
# the test's header).
TESTS += tests/integration/test-xl-restore.sh
EXTRA_DIST += tests/integration/test-xl-restore.sh

# The xenstore store's handling of libxl's keys (xenstore-glue/).
libdm_core_la_SOURCES += xenstore-glue/store-xs-libxl.c xenstore-glue/store-xs-util.c \
	xenstore-glue/store-xs-internal.h

# libdm_dm_config_set_argv's command line.
check_PROGRAMS += tests/unit/test-adopt
TESTS += tests/unit/test-adopt
tests_unit_test_adopt_SOURCES = tests/unit/test-adopt.c
tests_unit_test_adopt_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_adopt_LDADD = libdm-core.la $(DEPS_LIBS) $(CMOCKA_LIBS)

# A simulation of libxl's side of a DM spawn under dm_restrict (tests only).
check_PROGRAMS += tests/harness/xl-spawn-sim
tests_harness_xl_spawn_sim_SOURCES = tests/harness/xl-spawn-sim.c
tests_harness_xl_spawn_sim_CFLAGS = $(TEST_CFLAGS)
