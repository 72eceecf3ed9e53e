# loop: one-fd integration (libdm_ctx_get_fd/get_timeout/process), the
# header-only adapters for sd-event, libuv and GLib, their tests against
# real QEMU, the hooks contract test, and the example daemon examples/dmd.
adaptersincludedir = $(includedir)/libdm/adapters
adaptersinclude_HEADERS = \
	libdm/include/libdm/adapters/sd-event.h \
	libdm/include/libdm/adapters/libuv.h \
	libdm/include/libdm/adapters/glib.h

# The adapters compile cleanly with the strict warnings of the tree.
ADAPTER_TEST_SRC = tests/integration/test-adapter-qemu.c
EXTRA_DIST += $(ADAPTER_TEST_SRC)

if HAVE_LIBSYSTEMD
check_PROGRAMS += tests/integration/test-adapter-sdevent
TESTS += tests/integration/test-adapter-sdevent
tests_integration_test_adapter_sdevent_SOURCES = $(ADAPTER_TEST_SRC)
tests_integration_test_adapter_sdevent_CFLAGS = $(TEST_CFLAGS) $(LIBSYSTEMD_CFLAGS) \
	-DLIBDM_TEST_ADAPTER=1
tests_integration_test_adapter_sdevent_LDADD = libtestutil.la $(TEST_LIBS) $(LIBSYSTEMD_LIBS)
endif

if HAVE_LIBUV
check_PROGRAMS += tests/integration/test-adapter-libuv
TESTS += tests/integration/test-adapter-libuv
tests_integration_test_adapter_libuv_SOURCES = $(ADAPTER_TEST_SRC)
tests_integration_test_adapter_libuv_CFLAGS = $(TEST_CFLAGS) $(LIBUV_CFLAGS) \
	-DLIBDM_TEST_ADAPTER=2
tests_integration_test_adapter_libuv_LDADD = libtestutil.la $(TEST_LIBS) $(LIBUV_LIBS)
endif

if HAVE_GLIB
check_PROGRAMS += tests/integration/test-adapter-glib
TESTS += tests/integration/test-adapter-glib
tests_integration_test_adapter_glib_SOURCES = $(ADAPTER_TEST_SRC)
tests_integration_test_adapter_glib_CFLAGS = $(TEST_CFLAGS) $(GLIB_CFLAGS) \
	-DLIBDM_TEST_ADAPTER=3
tests_integration_test_adapter_glib_LDADD = libtestutil.la $(TEST_LIBS) $(GLIB_LIBS)
endif

# The hooks contract (past deadlines, fd_modify on a blocked write), fd
# mode, idle and the log level, against fakeqmp.
check_PROGRAMS += tests/unit/test-loop
TESTS += tests/unit/test-loop
tests_unit_test_loop_SOURCES = tests/unit/test-loop.c
tests_unit_test_loop_CFLAGS = $(TEST_CFLAGS) -pthread
tests_unit_test_loop_LDFLAGS = -pthread
tests_unit_test_loop_LDADD = libtestutil.la libfakeqmp.la $(TEST_LIBS) -lpthread

# examples/dmd: a daemon on sd-event managing DMs over a unix-socket line
# API (not installed); tests/integration/test-dmd.sh drives it with socat.
if HAVE_LIBSYSTEMD
noinst_PROGRAMS += examples/dmd
examples_dmd_SOURCES = examples/dmd.c
examples_dmd_CFLAGS = $(AM_CFLAGS) $(LIBSYSTEMD_CFLAGS)
examples_dmd_LDADD = libdm-core.la $(DEPS_LIBS) $(LIBSYSTEMD_LIBS)
endif
EXTRA_DIST += examples/dmd.c
TESTS += tests/integration/test-dmd.sh
EXTRA_DIST += tests/integration/test-dmd.sh

# bench/bench-embed (make bench only): host-loop lateness of an sd-event
# daemon driving 16 DMs through the context fd.
if HAVE_LIBSYSTEMD
BENCH_PROGS += bench/bench-embed
bench_bench_embed_SOURCES = bench/bench-embed.c $(BENCH_UTIL)
bench_bench_embed_CFLAGS = $(BENCH_CFLAGS) $(LIBSYSTEMD_CFLAGS)
bench_bench_embed_LDADD = $(BENCH_LIBS) $(LIBSYSTEMD_LIBS)
endif

# A start pipelines its readiness after QEMU greets (issue 23).
check_PROGRAMS += tests/unit/test-qmp-pipelined
TESTS += tests/unit/test-qmp-pipelined
tests_unit_test_qmp_pipelined_SOURCES = tests/unit/test-qmp-pipelined.c
tests_unit_test_qmp_pipelined_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_qmp_pipelined_LDADD = libtestutil.la $(TEST_LIBS)
