# stress: long-running cycles (fd/RSS/child accounting), contexts on several
# threads, and the real-QEMU fault matrix.
#
# tests/stress/test-stress: 1,000 connect/negotiate/query-status/close cycles
# against fakeqmp and 100 start/resume/stop cycles of a real QEMU; the fd
# count, the child list and RSS must not grow. LIBDM_STRESS_QUICK=1 shrinks
# the counts (for valgrind).
# tests/stress/test-threads: 4 threads, one libdm_ctx each, concurrently.
# tests/stress/run-tsan.sh builds and runs test-threads under ThreadSanitizer
# in a separate build tree (not part of make check).
# tests/fault/test-fault-qemu: real QEMU killed, stopped, exiting, aborting.
STRESS_LDADD = libtestutil.la libfakeqmp.la libdm-core.la $(DEPS_LIBS) $(CMOCKA_LIBS) -lpthread

check_PROGRAMS += tests/stress/test-stress
TESTS += tests/stress/test-stress
tests_stress_test_stress_SOURCES = tests/stress/test-stress.c
tests_stress_test_stress_CFLAGS = $(TEST_CFLAGS) -pthread
tests_stress_test_stress_LDFLAGS = -pthread
tests_stress_test_stress_LDADD = $(STRESS_LDADD)

check_PROGRAMS += tests/stress/test-threads
TESTS += tests/stress/test-threads
tests_stress_test_threads_SOURCES = tests/stress/test-threads.c
tests_stress_test_threads_CFLAGS = $(TEST_CFLAGS) -pthread
tests_stress_test_threads_LDFLAGS = -pthread
tests_stress_test_threads_LDADD = $(STRESS_LDADD)

check_PROGRAMS += tests/fault/test-fault-qemu
TESTS += tests/fault/test-fault-qemu
tests_fault_test_fault_qemu_SOURCES = tests/fault/test-fault-qemu.c
tests_fault_test_fault_qemu_CFLAGS = $(TEST_CFLAGS) -pthread
tests_fault_test_fault_qemu_LDFLAGS = -pthread
tests_fault_test_fault_qemu_LDADD = $(STRESS_LDADD)

EXTRA_DIST += tests/stress/run-tsan.sh

# Issue 13, live migration never splits the brain: one regression scenario
# per defect (tests/integration/test-dmctl-migrate-safety.sh) and a bounded
# chaos campaign (tests/stress/test-migrate-chaos.sh: MIGRATE_CHAOS_TRIALS,
# default 20; e.g. 200 for a soak). Both drive dmctl through
# migrate-relay.pl and check invariants with migrate-observe.pl.
TESTS += tests/integration/test-dmctl-migrate-safety.sh tests/stress/test-migrate-chaos.sh
EXTRA_DIST += tests/integration/test-dmctl-migrate-safety.sh tests/stress/test-migrate-chaos.sh \
	tests/integration/migrate-relay.pl tests/integration/migrate-observe.pl

# Issue 12, crash-point campaign: dmctl start/stop/resume/status with dmctl,
# the keeper or QEMU SIGKILLed at a random moment; invariants after each
# kill (nothing invisible, nothing listed alive that is dead, one QEMU per
# name, stop ends everything). CRASHPOINT_KILLS (default 50; 500 for a
# soak), CRASHPOINT_SEED to replay.
TESTS += tests/stress/test-crashpoints.sh
EXTRA_DIST += tests/stress/test-crashpoints.sh
