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
