# fuzz: the QMP fault matrix (against fakeqmp) and the fuzz targets.
#
# tests/fault/test-fault-qmp: table-driven fault matrix, one cmocka test per
# row. LIBDM_FAULT_QUICK=1 shrinks its two heavy rows (for valgrind).
check_PROGRAMS += tests/fault/test-fault-qmp
TESTS += tests/fault/test-fault-qmp
tests_fault_test_fault_qmp_SOURCES = tests/fault/test-fault-qmp.c
tests_fault_test_fault_qmp_CFLAGS = $(TEST_CFLAGS) -pthread
tests_fault_test_fault_qmp_LDFLAGS = -pthread
tests_fault_test_fault_qmp_LDADD = libtestutil.la libfakeqmp.la libdm-core.la $(DEPS_LIBS) \
	$(CMOCKA_LIBS) -lpthread

# The libFuzzer targets (tests/fuzz/fuzz-*.c) are built with clang only by
# tests/fuzz/run-fuzzers.sh. Under make check their seed corpora are replayed
# through the same entry points, compiled with gcc (see test-fuzz-replay.c).
check_PROGRAMS += tests/fuzz/test-fuzz-replay
TESTS += tests/fuzz/test-fuzz-replay
tests_fuzz_test_fuzz_replay_SOURCES = tests/fuzz/test-fuzz-replay.c
EXTRA_tests_fuzz_test_fuzz_replay_DEPENDENCIES = \
	$(srcdir)/tests/fuzz/fuzz-qmp-decoder.c $(srcdir)/tests/fuzz/fuzz-json.c \
	$(srcdir)/tests/fuzz/fuzz-record.c $(srcdir)/tests/fuzz/fuzz-qemu-opt.c \
	$(srcdir)/tests/fuzz/fuzz-qmp-transcript.c
tests_fuzz_test_fuzz_replay_CFLAGS = $(TEST_CFLAGS)
tests_fuzz_test_fuzz_replay_CPPFLAGS = $(AM_CPPFLAGS) -DLIBDM_FUZZ_REPLAY \
	-DLIBDM_TEST_TOP_SRCDIR='"$(abs_top_srcdir)"'
tests_fuzz_test_fuzz_replay_LDADD = libdm-core.la $(DEPS_LIBS)
EXTRA_DIST += tests/fuzz/run-fuzzers.sh tests/fuzz/corpus \
	tests/fuzz/fuzz-qmp-decoder.c tests/fuzz/fuzz-json.c tests/fuzz/fuzz-record.c \
	tests/fuzz/fuzz-qemu-opt.c tests/fuzz/fuzz-qmp-transcript.c tests/fuzz/fuzz-common.h
