# bench: performance benchmarks against real QEMU and a fake QMP server.
# Built and run only by `make bench`, never by `make check` (see bench/README.md).
BENCH_PROGS = bench/bench-start bench/bench-rtt bench/bench-scale \
	bench/bench-qmp-server bench/bench-resume bench/bench-decode \
	bench/bench-storm bench/bench-migrate bench/bench-helper
EXTRA_PROGRAMS = $(BENCH_PROGS)
BENCH_CFLAGS = $(AM_CFLAGS) -O2
BENCH_LIBS = libdm-core.la $(DEPS_LIBS)
BENCH_UTIL = bench/bench-util.c bench/bench-util.h bench/bench-parts.c bench/bench-parts.h

bench_bench_start_SOURCES = bench/bench-start.c $(BENCH_UTIL)
bench_bench_start_CFLAGS = $(BENCH_CFLAGS)
bench_bench_start_LDADD = $(BENCH_LIBS)
bench_bench_rtt_SOURCES = bench/bench-rtt.c $(BENCH_UTIL)
bench_bench_rtt_CFLAGS = $(BENCH_CFLAGS)
bench_bench_rtt_LDADD = $(BENCH_LIBS)
bench_bench_scale_SOURCES = bench/bench-scale.c $(BENCH_UTIL)
bench_bench_scale_CFLAGS = $(BENCH_CFLAGS)
bench_bench_scale_LDADD = $(BENCH_LIBS)
bench_bench_qmp_server_SOURCES = bench/bench-qmp-server.c
bench_bench_qmp_server_CFLAGS = $(BENCH_CFLAGS)
bench_bench_resume_SOURCES = bench/bench-resume.c $(BENCH_UTIL)
bench_bench_resume_CFLAGS = $(BENCH_CFLAGS)
bench_bench_resume_LDADD = $(BENCH_LIBS)
bench_bench_storm_SOURCES = bench/bench-storm.c $(BENCH_UTIL)
bench_bench_storm_CFLAGS = $(BENCH_CFLAGS)
bench_bench_storm_LDADD = $(BENCH_LIBS)
bench_bench_migrate_SOURCES = bench/bench-migrate.c $(BENCH_UTIL)
bench_bench_migrate_CFLAGS = $(BENCH_CFLAGS)
bench_bench_migrate_LDADD = $(BENCH_LIBS)
bench_bench_helper_SOURCES = bench/bench-helper.c bench/bench-util.c bench/bench-util.h
bench_bench_helper_CFLAGS = $(BENCH_CFLAGS)
bench_bench_helper_LDADD = $(BENCH_LIBS)
bench_bench_decode_SOURCES = bench/bench-decode.c
bench_bench_decode_CFLAGS = $(BENCH_CFLAGS)
bench_bench_decode_LDADD = $(BENCH_LIBS)

EXTRA_DIST += bench/run-bench.sh bench/README.md bench/trace-migrate.sh bench/trace-shim.c \
	bench/trace-start.sh
CLEANFILES += $(BENCH_PROGS) bench/results-latest.txt

.PHONY: bench
bench: $(BENCH_PROGS) libdm-core.la tools/libdm-keeper
	@$(MAKE) $(AM_MAKEFLAGS) tools/dmctl >/dev/null 2>&1 || true
	QEMU='$(QEMU_BENCH)' LIBDM_KEEPER='$(abs_top_builddir)/tools/libdm-keeper' \
	DMCTL='$(abs_top_builddir)/tools/dmctl' \
	$(SHELL) $(srcdir)/bench/run-bench.sh '$(abs_top_builddir)/bench'

# bench-util's reads are bounded (issue 23: floor-poll could hang for good).
check_PROGRAMS += tests/unit/test-bench-util
TESTS += tests/unit/test-bench-util
tests_unit_test_bench_util_SOURCES = tests/unit/test-bench-util.c bench/bench-util.c bench/bench-util.h
tests_unit_test_bench_util_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/bench
tests_unit_test_bench_util_LDADD = libdm-core.la $(DEPS_LIBS)
