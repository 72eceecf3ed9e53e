# tools: dmctl, the command-line client (tools/dmctl*.c, man page dmctl.1).
# It links the static core so that it runs uninstalled from the build tree.
bin_PROGRAMS += tools/dmctl
tools_dmctl_SOURCES = tools/dmctl.h tools/dmctl.c tools/dmctl-util.c tools/dmctl-log.c \
	tools/dmctl-cmds.c tools/dmctl-demo.c tools/dmctl-migrate.c tools/dmctl-signal.c \
	tools/dmctl-migrate-chan.c tools/dmctl-migrate-perform.c tools/dmctl-migrate-recover.c \
	tools/dmctl-migrate-receive.c tools/dmctl-migrate.h \
	tools/dmctl-xlcfg.c tools/dmctl-xlcfg.h tools/dmctl-xlu.c tools/dmctl-xlu.h tools/dmctl-plan.c
# xl.cfg files are read with libxlutil (and libxenlight for its disk type):
# dmctl's dependency only, never libdm's, and dlopen'd when an xl.cfg is
# read (tools/dmctl-xlu.c): headers at build time, sonames from configure.
tools_dmctl_CFLAGS = $(AM_CFLAGS) $(XLUTIL_CFLAGS)
# DMCTL_LIBS (configure.ac): yajl, libxenstore, libxentoollog and
# libxentoolcore from their archives when they link, so that the loader
# maps libc only (issue 23: ~1 ms of CPU per dmctl command). The core's
# archive itself: through libdm-core.la libtool would add their -l flags.
tools_dmctl_LDADD = .libs/libdm-core.a $(DMCTL_LIBS) -ldl
tools_dmctl_DEPENDENCIES = libdm-core.la
dist_man_MANS += tools/dmctl.1
# Issue 23: xl's parser is loaded on use, not linked (tools/dmctl-xlu.c).
TESTS += tests/unit/test-dmctl-needed.sh
EXTRA_DIST += tests/unit/test-dmctl-needed.sh

# Usage errors, help and version of dmctl ($DMCTL, see AM_TESTS_ENVIRONMENT).
TESTS += tests/integration/test-dmctl-cli.sh
EXTRA_DIST += tests/integration/test-dmctl-cli.sh

# dmctl interrupted by signals, its exit statuses and error messages
# against a real QEMU and fakeqmp.
TESTS += tests/integration/test-dmctl-signals.sh tests/integration/test-dmctl-errors.sh
EXTRA_DIST += tests/integration/test-dmctl-signals.sh tests/integration/test-dmctl-errors.sh

# dmctl migrate / migrate-receive between two real QEMUs (local stores; and,
# as root, between two network namespaces over TCP).
TESTS += tests/integration/test-dmctl-migrate.sh tests/integration/test-dmctl-migrate-netns.sh
EXTRA_DIST += tests/integration/test-dmctl-migrate.sh tests/integration/test-dmctl-migrate-netns.sh \
	tests/integration/dmctl-migrate-lib.sh

# The default store ("auto") when a xenstored answers (the real one, as root):
# DMs without a domid in the run directory, with one in xenstore.
TESTS += tests/integration/test-dmctl-xenstore-auto.sh
EXTRA_DIST += tests/integration/test-dmctl-xenstore-auto.sh

# libdm-keeper: see below
