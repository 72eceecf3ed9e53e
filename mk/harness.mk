# harness: fakeqmp, a fake QMP server (see tests/harness/fakeqmp.h).
# libfakeqmp.la is linked by the cmocka tests (through TEST_LIBS) and runs
# in a thread of the test; tests/harness/fakeqmp is the same server as a
# program, driven by a script file, for shell tests and the fault matrix.
# None of it links libdm: it is libdm's independent peer.
FAKEQMP_CFLAGS = $(AM_CFLAGS) -pthread

check_LTLIBRARIES += libfakeqmp.la
libfakeqmp_la_SOURCES = tests/harness/fakeqmp.h tests/harness/fakeqmp.c
libfakeqmp_la_CFLAGS = $(FAKEQMP_CFLAGS)
# -lpthread (not -pthread) so that it reaches every program linking the
# convenience library through its dependency_libs.
libfakeqmp_la_LIBADD = $(YAJL_LIBS) -lpthread

check_PROGRAMS += tests/harness/fakeqmp
tests_harness_fakeqmp_SOURCES = tests/harness/fakeqmp-main.c
tests_harness_fakeqmp_CFLAGS = $(FAKEQMP_CFLAGS) -I$(top_srcdir)/tests/harness
tests_harness_fakeqmp_LDFLAGS = -pthread
tests_harness_fakeqmp_LDADD = libfakeqmp.la

check_PROGRAMS += tests/harness/test-fakeqmp
tests_harness_test_fakeqmp_SOURCES = tests/harness/test-fakeqmp.c
tests_harness_test_fakeqmp_CFLAGS = $(TEST_CFLAGS) -pthread
tests_harness_test_fakeqmp_LDFLAGS = -pthread
tests_harness_test_fakeqmp_LDADD = libfakeqmp.la $(CMOCKA_LIBS)
TESTS += tests/harness/test-fakeqmp

# xenhyp: the hypervisor fake that lets the REAL Xen device model
# (qemu-system-xen) and the real xl run without Xen (tests only; see the
# comment at the top of the source). A libtool module like xsshim, so the
# shared object is tests/harness/.libs/xenhyp.so; its symbols interpose, so
# no -fvisibility=hidden. tests/harness/xen-env.sh sets up xenstored, the
# domain's nodes and a QEMU wrapper that preloads it.
check_LTLIBRARIES += tests/harness/xenhyp.la
tests_harness_xenhyp_la_SOURCES = tests/harness/xenhyp.c tests/harness/xendoms.c tests/harness/xendoms.h
tests_harness_xenhyp_la_CFLAGS = -std=gnu11 $(WARN_CFLAGS) $(XENTOOLLOG_CFLAGS)
tests_harness_xenhyp_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
tests_harness_xenhyp_la_LIBADD = -ldl -lpthread
EXTRA_DIST += tests/harness/tap.sh tests/harness/xen-test.sh tests/harness/xen-env.sh tests/harness/xen-qemu-wrapper.sh

# faultinj: an LD_PRELOAD fake of failing syscalls (the Nth openat, write,
# rename, socket or mkdirat fails with a chosen errno; see the source's
# comment). Shared object: tests/harness/.libs/faultinj.so. Used by
# tests/integration/test-dmctl-faultinj.sh.
check_LTLIBRARIES += tests/harness/faultinj.la
tests_harness_faultinj_la_SOURCES = tests/harness/faultinj.c
tests_harness_faultinj_la_CFLAGS = -std=gnu11 $(WARN_CFLAGS)
tests_harness_faultinj_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
tests_harness_faultinj_la_LIBADD = -ldl
