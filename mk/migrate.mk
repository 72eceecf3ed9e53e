# Issue 22, migration: one guest never has two histories (checked by QEMU's
# own vm_state_notify trace on both sides) and the smaller defects of the
# migration commands, one scenario each.
TESTS += tests/integration/test-dmctl-migrate-history.sh
EXTRA_DIST += tests/integration/test-dmctl-migrate-history.sh
