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
