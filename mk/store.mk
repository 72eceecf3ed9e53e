# store: the record store (xenstore-glue/): records, the "dir" and
# "xenstore" backends. Linked into libdm-core (hence libdm and the keeper);
# depends on nothing of libdm beyond store.h.
libdm_core_la_SOURCES += \
	xenstore-glue/store.h xenstore-glue/store-internal.h \
	xenstore-glue/record.c xenstore-glue/store.c \
	xenstore-glue/store-dir.c xenstore-glue/store-xs.c

# The hypervisor fake that lets the real xenstored run on a machine without
# Xen (tests only; see the comment at the top of the source). A libtool
# module, so the shared object is tests/harness/.libs/xsshim.so. It must not
# be built with -fvisibility=hidden (its symbols interpose), hence its own
# CFLAGS.
check_LTLIBRARIES += tests/harness/xsshim.la
tests_harness_xsshim_la_SOURCES = tests/harness/xsshim.c tests/harness/xendoms.c tests/harness/xendoms.h
tests_harness_xsshim_la_CFLAGS = -std=gnu11 $(WARN_CFLAGS) $(XENTOOLLOG_CFLAGS)
tests_harness_xsshim_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
tests_harness_xsshim_la_LIBADD = -ldl
EXTRA_DIST += tests/harness/xenstored-run.sh

# The store's tests link libdm-core directly (no fake QMP needed).
STORE_TEST_LIBS = libdm-core.la $(DEPS_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test-record tests/unit/test-store-dir \
	tests/integration/test-store-xs
TESTS += tests/unit/test-record tests/unit/test-store-dir \
	tests/integration/test-store-xs

tests_unit_test_record_SOURCES = tests/unit/test-record.c
tests_unit_test_record_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_record_LDADD = $(STORE_TEST_LIBS)

# The claim's loser names the holder (libdm/rundir.c explain_held).
check_PROGRAMS += tests/unit/test-rundir-claim
TESTS += tests/unit/test-rundir-claim
tests_unit_test_rundir_claim_SOURCES = tests/unit/test-rundir-claim.c
tests_unit_test_rundir_claim_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_rundir_claim_LDADD = libtestutil.la $(STORE_TEST_LIBS)

tests_unit_test_store_dir_SOURCES = tests/unit/test-store-dir.c
tests_unit_test_store_dir_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_store_dir_LDADD = $(STORE_TEST_LIBS)

# Runs the real xenstored under the shim (skips, 77, without xen-utils-4.17).
tests_integration_test_store_xs_SOURCES = tests/integration/test-store-xs.c
tests_integration_test_store_xs_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_store_xs_LDADD = $(STORE_TEST_LIBS)
EXTRA_tests_integration_test_store_xs_DEPENDENCIES = tests/harness/xsshim.la
