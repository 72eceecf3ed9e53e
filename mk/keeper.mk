# libdm-keeper: the parent of each device model (tools/keeper.c).
libexec_PROGRAMS += tools/libdm-keeper
# keeper-restrict.c: dm_restrict applied in QEMU's child before exec (the
# only part of libdm that links libseccomp).
tools_libdm_keeper_SOURCES = tools/keeper.c tools/keeper-restrict.c tools/keeper-restrict.h \
	tools/keeper-log.c tools/keeper-log.h tools/keeper-helper.c tools/keeper-helper.h
tools_libdm_keeper_CFLAGS = $(AM_CFLAGS) $(LIBSECCOMP_CFLAGS)
# KEEPER_LIBS (configure.ac): the libxen*/libseccomp archives when they link
# (the loader then maps libc only: issue 23), else the shared libraries.
# The convenience library's archive itself: through libdm-core.la libtool
# would put its -lxenstore -lxentoollog before KEEPER_LIBS' archives.
# KEEPER_LDFLAGS/KEEPER_YAJL: -static-pie and yajl's archive when that
# links and runs (configure.ac), so no loader runs at the keeper's exec.
tools_libdm_keeper_LDADD = .libs/libdm-core.a $(KEEPER_YAJL) $(KEEPER_LIBS)
tools_libdm_keeper_DEPENDENCIES = libdm-core.la
tools_libdm_keeper_LDFLAGS = -Wl,--as-needed $(KEEPER_LDFLAGS)
# Issue 23: the keeper's loader maps libc only (static libxen*/libseccomp),
# or no loader runs at all (-static-pie).
TESTS += tests/unit/test-keeper-needed.sh
EXTRA_DIST += tests/unit/test-keeper-needed.sh
# Issue 23: the per-context helper that forks the keepers (libdm side).
libdm_core_la_SOURCES += libdm/spawn-helper.c libdm/spawn-proc.c libdm/spawn-vm.c
# Issue 23: keepers forked by the helper; the helper's death (test-keeper-helper.c).
check_PROGRAMS += tests/integration/test-keeper-helper
TESTS += tests/integration/test-keeper-helper
tests_integration_test_keeper_helper_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_keeper_helper_LDADD = libtestutil.la $(TEST_LIBS)
# ...and test-abandon and the library crash-point campaign with every keeper
# forked by the helper.
TESTS += tests/integration/test-helper-campaigns.sh
EXTRA_DIST += tests/integration/test-helper-campaigns.sh
# Issue 23: the keeper cloned in the caller's address space (spawn-vm.c).
check_PROGRAMS += tests/integration/test-spawn-vm
TESTS += tests/integration/test-spawn-vm
tests_integration_test_spawn_vm_CFLAGS = $(TEST_CFLAGS)
tests_integration_test_spawn_vm_LDADD = libtestutil.la $(TEST_LIBS)
