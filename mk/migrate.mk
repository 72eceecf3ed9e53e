# Issue 22, migration: one guest never has two histories (checked by QEMU's
# own vm_state_notify trace on both sides) and the smaller defects of the
# migration commands, one scenario each.
TESTS += tests/integration/test-dmctl-migrate-history.sh tests/integration/test-dmctl-migrate-defects.sh
EXTRA_DIST += tests/integration/test-dmctl-migrate-history.sh tests/integration/test-dmctl-migrate-defects.sh

# Issue 22, 13: fractional JSON numbers (QEMU's ram.mbps).
check_PROGRAMS += tests/unit/test-json-number
TESTS += tests/unit/test-json-number
tests_unit_test_json_number_SOURCES = tests/unit/test-json-number.c
tests_unit_test_json_number_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_json_number_LDADD = $(TEST_LIBS)

# The configuration document (issue 22, defect 1): the whole DM travels.
libdm_core_la_SOURCES += libdm/config-doc.c
# Issue 22, 1: a guest with devices from an xl.cfg migrates between two
# network namespaces and keeps them (query-block, query-chardev, query-pci).
TESTS += tests/integration/test-dmctl-migrate-devices.sh
EXTRA_DIST += tests/integration/test-dmctl-migrate-devices.sh
# The same guest restricted (--restrict, a private uid): the destination is
# confined as the source was.
TESTS += tests/integration/test-dmctl-migrate-devices-restricted.sh
EXTRA_DIST += tests/integration/test-dmctl-migrate-devices-restricted.sh
# The same on the Xen DM over the fake hypervisor (skips, saying what fails,
# where the fake cannot carry it).
TESTS += tests/integration/test-dmctl-migrate-xen.sh
EXTRA_DIST += tests/integration/test-dmctl-migrate-xen.sh
# Issue 22, 1: the configuration document's round trip and refusals.
check_PROGRAMS += tests/unit/test-config-doc
TESTS += tests/unit/test-config-doc
tests_unit_test_config_doc_SOURCES = tests/unit/test-config-doc.c
tests_unit_test_config_doc_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_config_doc_LDADD = $(TEST_LIBS)

# The protocol between two hosts in the library (issue 24): the channel,
# the messages and decisions, the sender, the receiver, the recovery.
libdm_core_la_SOURCES += libdm/migrate-internal.h libdm/migrate-chan.c \
	libdm/migrate-proto.c libdm/migrate-send.c libdm/migrate-recv.c \
	libdm/migrate-query.c libdm/migrate-recover.c
# migrate.c split along its seam: the steps on the operation core, and the
# phases' entry points (issue 24: files under 800 lines).
libdm_core_la_SOURCES += libdm/migrate-op-internal.h libdm/migrate-phases.c
# Issue 22, 3: the fd transport of a restricted DM (getfd, "fd:NAME").
libdm_core_la_SOURCES += libdm/migrate-fd.c
# migrate.c's QMP vocabulary: the arguments its steps send, what they read
# from QEMU's answers (files under 800 lines).
libdm_core_la_SOURCES += libdm/migrate-qmp.c
# Issue 22, 3: a restricted DM migrates through the library over unix and tcp.
check_PROGRAMS += tests/integration/test-migrate-restricted
TESTS += tests/integration/test-migrate-restricted
tests_integration_test_migrate_restricted_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_migrate_restricted_LDADD = libtestutil.la $(TEST_LIBS)
