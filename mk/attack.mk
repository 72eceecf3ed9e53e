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
tools_dmctl_SOURCES += tools/dmctl-stop.c
tools_dmctl_SOURCES += tools/dmctl-status.c
# Items 2 and 8: a record never hides a DM (unreadable, or missing).
TESTS += tests/integration/test-attack-18-records.sh
EXTRA_DIST += tests/integration/test-attack-18-records.sh
# Item 5: the crash-point campaign on a domain's surfaces (xen sockets and
# chroot, the global claim, two DMs on one domid, taps); bounded (about a
# minute), CRASHPOINT_DOMAIN_ROUNDS for a soak.
TESTS += tests/stress/test-crashpoints-domain.sh
EXTRA_DIST += tests/stress/test-crashpoints-domain.sh
