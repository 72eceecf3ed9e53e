# Issue 18, "the second attack": regression checks through dmctl
# (tests/integration/test-attack-18-cli.sh) and the QMP layer's redaction
# of secrets in the log (tests/unit/test-qmp-redact.c, with fakeqmp).
TESTS += tests/integration/test-attack-18-cli.sh
EXTRA_DIST += tests/integration/test-attack-18-cli.sh

check_PROGRAMS += tests/unit/test-qmp-redact
TESTS += tests/unit/test-qmp-redact
tests_unit_test_qmp_redact_SOURCES = tests/unit/test-qmp-redact.c
tests_unit_test_qmp_redact_CFLAGS = $(TEST_CFLAGS) -pthread
tests_unit_test_qmp_redact_LDFLAGS = -pthread
tests_unit_test_qmp_redact_LDADD = libtestutil.la libfakeqmp.la libdm-core.la $(DEPS_LIBS) \
	$(CMOCKA_LIBS) -lpthread

# dmctl's one sanitizer of what the device model says (issue 18, item 10).
tools_dmctl_SOURCES += tools/dmctl-safe.c
