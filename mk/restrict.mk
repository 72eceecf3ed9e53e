# dm_restrict: policy in libdm/restrict.c (in libdm-core, see libdm.mk), the
# keeper side in tools/keeper-restrict.c (see keeper.mk). The unit test
# links both, the keeper's part compiled in directly.
check_PROGRAMS += tests/unit/test-restrict
TESTS += tests/unit/test-restrict
tests_unit_test_restrict_SOURCES = tests/unit/test-restrict.c tools/keeper-restrict.c
tests_unit_test_restrict_CFLAGS = $(TEST_CFLAGS) $(LIBSECCOMP_CFLAGS) -I$(top_srcdir)/tools
tests_unit_test_restrict_LDADD = libtestutil.la libdm-core.la $(DEPS_LIBS) $(CMOCKA_LIBS) \
	$(LIBSECCOMP_LIBS)
