# Issue 19: a daemon can trust libdm (tests/integration/test-abandon.c): a
# start abandoned at any point (release, deadline, ctx_free) leaves no QEMU
# nobody owns; blocking calls deliver nothing of other objects; a stop's
# file work is cut into steps; ctx_free is bounded.
check_PROGRAMS += tests/integration/test-abandon
TESTS += tests/integration/test-abandon
tests_integration_test_abandon_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_abandon_LDADD = libtestutil.la $(TEST_LIBS)
# Every file removal of the test process is counted (stop_file_steps).
tests_integration_test_abandon_LDFLAGS = -Wl,--wrap=unlinkat -Wl,--wrap=rmdir

# The library's crash-point campaign (tests/stress/test-lib-crashpoints.c):
# every async operation x {release, ctx_free, deadline, controller SIGKILL}
# at a random moment; 50 rounds here, LIBDM_CRASH_ROUNDS=500 for the soak
# (tests/stress/soak-lib-crashpoints.sh).
check_PROGRAMS += tests/stress/test-lib-crashpoints
TESTS += tests/stress/test-lib-crashpoints
tests_stress_test_lib_crashpoints_CFLAGS = $(TEST_CFLAGS)
tests_stress_test_lib_crashpoints_LDADD = libtestutil.la $(TEST_LIBS)
EXTRA_DIST += tests/stress/soak-lib-crashpoints.sh

# The async forms of list, forget, monitor_holder, query_devices and
# apply_config (tests/integration/test-async-calls.c).
check_PROGRAMS += tests/integration/test-async-calls
TESTS += tests/integration/test-async-calls
tests_integration_test_async_calls_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_async_calls_LDADD = libtestutil.la $(TEST_LIBS)

# One error code per cause (the table in libdm/include/libdm/dm.h), the
# first cause kept in last_error (tests/integration/test-errcodes.c).
check_PROGRAMS += tests/integration/test-errcodes
TESTS += tests/integration/test-errcodes
tests_integration_test_errcodes_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_errcodes_LDADD = libtestutil.la $(TEST_LIBS)

# Daemon ergonomics: idle after releasing a running DM, the plain logger,
# fork-safety of monitor.lock (tests/integration/test-daemon-ergo.c).
check_PROGRAMS += tests/integration/test-daemon-ergo
TESTS += tests/integration/test-daemon-ergo
tests_integration_test_daemon_ergo_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_daemon_ergo_LDADD = libtestutil.la $(TEST_LIBS)

# pkg-config files for the header-only adapters (issue 19), made from
# libdm/libdm-*.pc.in like libdm.pc (here, not in configure.ac).
ADAPTER_PCS = libdm/libdm-sdevent.pc libdm/libdm-libuv.pc libdm/libdm-glib.pc
pkgconfig_DATA += $(ADAPTER_PCS)
EXTRA_DIST += $(ADAPTER_PCS:=.in)
CLEANFILES += $(ADAPTER_PCS)
# (The brackets keep config.status from substituting the patterns themselves.)
ADAPTER_PC_SED = sed -e 's|@[p]refix@|$(prefix)|g' -e 's|@[e]xec_prefix@|$(exec_prefix)|g' \
	-e 's|@[l]ibdir@|$(libdir)|g' -e 's|@[i]ncludedir@|$(includedir)|g' \
	-e 's|@[P]ACKAGE_VERSION@|$(PACKAGE_VERSION)|g'
libdm/libdm-sdevent.pc: $(srcdir)/libdm/libdm-sdevent.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) libdm && $(ADAPTER_PC_SED) $(srcdir)/libdm/libdm-sdevent.pc.in >$@
libdm/libdm-libuv.pc: $(srcdir)/libdm/libdm-libuv.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) libdm && $(ADAPTER_PC_SED) $(srcdir)/libdm/libdm-libuv.pc.in >$@
libdm/libdm-glib.pc: $(srcdir)/libdm/libdm-glib.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) libdm && $(ADAPTER_PC_SED) $(srcdir)/libdm/libdm-glib.pc.in >$@
check_SCRIPTS = $(ADAPTER_PCS)
TESTS += tests/unit/test-adapter-pc.sh
EXTRA_DIST += tests/unit/test-adapter-pc.sh

# Each adapter header compiles with -std=c11 alone (tests/unit/test-adapter-c11.c):
# its own CPPFLAGS (no AM_CPPFLAGS: no feature macro) and CFLAGS.
ADAPTER_C11_CPPFLAGS = -I$(top_srcdir)/libdm/include
ADAPTER_C11_CFLAGS = -std=c11 -Wall -Wextra -Werror -pedantic
if HAVE_LIBSYSTEMD
check_PROGRAMS += tests/unit/test-adapter-c11-sdevent
TESTS += tests/unit/test-adapter-c11-sdevent
tests_unit_test_adapter_c11_sdevent_SOURCES = tests/unit/test-adapter-c11.c
tests_unit_test_adapter_c11_sdevent_CPPFLAGS = $(ADAPTER_C11_CPPFLAGS) $(LIBSYSTEMD_CFLAGS) \
	-DLIBDM_TEST_ADAPTER=1
tests_unit_test_adapter_c11_sdevent_CFLAGS = $(ADAPTER_C11_CFLAGS)
endif
if HAVE_LIBUV
check_PROGRAMS += tests/unit/test-adapter-c11-libuv
TESTS += tests/unit/test-adapter-c11-libuv
tests_unit_test_adapter_c11_libuv_SOURCES = tests/unit/test-adapter-c11.c
tests_unit_test_adapter_c11_libuv_CPPFLAGS = $(ADAPTER_C11_CPPFLAGS) $(LIBUV_CFLAGS) \
	-DLIBDM_TEST_ADAPTER=2
tests_unit_test_adapter_c11_libuv_CFLAGS = $(ADAPTER_C11_CFLAGS)
endif
if HAVE_GLIB
check_PROGRAMS += tests/unit/test-adapter-c11-glib
TESTS += tests/unit/test-adapter-c11-glib
tests_unit_test_adapter_c11_glib_SOURCES = tests/unit/test-adapter-c11.c
tests_unit_test_adapter_c11_glib_CPPFLAGS = $(ADAPTER_C11_CPPFLAGS) $(GLIB_CFLAGS) \
	-DLIBDM_TEST_ADAPTER=3
tests_unit_test_adapter_c11_glib_CFLAGS = $(ADAPTER_C11_CFLAGS)
endif

# QEMU event subscriptions per DM that survive re-attach, and query-status
# beside a running operation (tests/integration/test-dm-events.c).
check_PROGRAMS += tests/integration/test-dm-events
TESTS += tests/integration/test-dm-events
tests_integration_test_dm_events_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_dm_events_LDADD = libtestutil.la $(TEST_LIBS)
# Issue 19: the fds the controlling process holds per running DM, with real
# QEMUs and keepers (tests/integration/test-fds-per-dm.c).
check_PROGRAMS += tests/integration/test-fds-per-dm
TESTS += tests/integration/test-fds-per-dm
tests_integration_test_fds_per_dm_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_fds_per_dm_LDADD = libtestutil.la $(TEST_LIBS)
