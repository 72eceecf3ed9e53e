# Issue 18 ("the second attack"): the unit test of QMP redaction and the
# CLI regression checks.
check_PROGRAMS += tests/unit/test-qmp-redact
TESTS += tests/unit/test-qmp-redact
tests_unit_test_qmp_redact_SOURCES = tests/unit/test-qmp-redact.c
tests_unit_test_qmp_redact_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_qmp_redact_LDADD = libdm-core.la $(DEPS_LIBS) $(CMOCKA_LIBS)

TESTS += tests/integration/test-attack-18-cli.sh
EXTRA_DIST += tests/integration/test-attack-18-cli.sh
tools_dmctl_SOURCES += tools/dmctl-safe.c
# Items 6, 11, 12, 14 (engineer attack2): FIFO disks, stops with a stopped
# keeper and concurrent stops, NIC bridges in --json.
TESTS += tests/integration/test-attack-18-dm.sh
EXTRA_DIST += tests/integration/test-attack-18-dm.sh
