# Shared test helpers and the tests of libdm's own modules.
check_LTLIBRARIES += libtestutil.la
libtestutil_la_SOURCES = tests/harness/testutil.c tests/harness/testutil.h \
	tests/harness/qemu-fixture.c tests/harness/qemu-fixture.h
noinst_HEADERS += tests/harness/record-asserts.h
libtestutil_la_CFLAGS = $(TEST_CFLAGS)

check_PROGRAMS += tests/integration/test-qmp-qemu
TESTS += tests/integration/test-qmp-qemu
tests_integration_test_qmp_qemu_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_qmp_qemu_LDADD = libtestutil.la $(TEST_LIBS)

check_PROGRAMS += tests/integration/test-dm-qemu
TESTS += tests/integration/test-dm-qemu
tests_integration_test_dm_qemu_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_dm_qemu_LDADD = libtestutil.la $(TEST_LIBS)

TESTS += tests/unit/test-exports.sh
EXTRA_DIST += tests/unit/test-exports.sh

check_PROGRAMS += tests/integration/test-migrate-qemu
TESTS += tests/integration/test-migrate-qemu
tests_integration_test_migrate_qemu_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_migrate_qemu_LDADD = libtestutil.la $(TEST_LIBS)

check_PROGRAMS += tests/integration/test-old-qemu
TESTS += tests/integration/test-old-qemu
tests_integration_test_old_qemu_CFLAGS = $(TEST_CFLAGS) -pthread
tests_integration_test_old_qemu_LDADD = libtestutil.la $(TEST_LIBS) -lpthread

# dmctl and the real Xen device model (qemu-system-xen) under the hypervisor
# fake tests/harness/xenhyp.c, with a private real xenstored; and the real
# xl against it. Skips (77) without qemu-system-xen or xen-utils-4.17.
TESTS += tests/integration/test-xen-dm.sh
EXTRA_DIST += tests/integration/test-xen-dm.sh

# Issue 12, nothing invisible, nothing corrupted: one regression check per
# defect through dmctl and a real QEMU (tests/integration/test-defects-12.sh).
TESTS += tests/integration/test-defects-12.sh
EXTRA_DIST += tests/integration/test-defects-12.sh

# dmctl start under injected syscall failures (tests/harness/faultinj.c:
# ENOSPC/EIO on writes, EIO/EMFILE on openat, EMFILE on socket, ENOSPC on
# rename and mkdirat): exit 1 with a message and nothing left, or a working DM.
TESTS += tests/integration/test-dmctl-faultinj.sh
EXTRA_DIST += tests/integration/test-dmctl-faultinj.sh

# Issue 10: a migration driven only through the async forms in hooks mode,
# each libdm call and dispatch timed (tests/integration/test-migrate-async.c).
check_PROGRAMS += tests/integration/test-migrate-async
TESTS += tests/integration/test-migrate-async
tests_integration_test_migrate_async_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_migrate_async_LDADD = libtestutil.la $(TEST_LIBS)

# A destination mark whose DM is gone does not refuse a later recovery
# (issue 22; tests/integration/test-migrate-mark.c).
check_PROGRAMS += tests/integration/test-migrate-mark
TESTS += tests/integration/test-migrate-mark
tests_integration_test_migrate_mark_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_migrate_mark_LDADD = libtestutil.la $(TEST_LIBS)

# Every async operation x {completion, cancel (stop or release), deadline,
# QEMU's death mid-operation}, for the cells the tests above leave open
# (tests/integration/test-async-matrix.c; one cmocka test per cell).
check_PROGRAMS += tests/integration/test-async-matrix
TESTS += tests/integration/test-async-matrix
tests_integration_test_async_matrix_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_async_matrix_LDADD = libtestutil.la $(TEST_LIBS)

# Issue 22, item 12: a MIGRATION event in the same read as a query-migrate
# reply still counts (fakeqmp behind a fake QEMU; libdm's clock frozen).
check_PROGRAMS += tests/fault/test-mig-event-read
TESTS += tests/fault/test-mig-event-read
tests_fault_test_mig_event_read_SOURCES = tests/fault/test-mig-event-read.c
tests_fault_test_mig_event_read_CFLAGS = $(TEST_CFLAGS) -pthread
tests_fault_test_mig_event_read_LDFLAGS = -pthread -Wl,--wrap=libdm_now_ms
tests_fault_test_mig_event_read_LDADD = libtestutil.la libfakeqmp.la libdm-core.la $(DEPS_LIBS) \
	$(CMOCKA_LIBS) -lpthread
