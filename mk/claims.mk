# Issue 18, the claims part: one DM per domid, only the owner removes a
# domain's files, every end cleans devices and sockets.
TESTS += tests/integration/test-attack-18-claims.sh
EXTRA_DIST += tests/integration/test-attack-18-claims.sh
# Item 4: the caller's chroot is opened once and used by fd.
TESTS += tests/integration/test-attack-18-chroot.sh
EXTRA_DIST += tests/integration/test-attack-18-chroot.sh
# The run directories' lock files, the domain claims (host-global for the
# xen profile) and what list proves without a record (issue 18, 2 and 8).
libdm_core_la_SOURCES += libdm/rundir-lock.c libdm/rundir-domid.c libdm/rundir-scan.c
# restrict.c's -sandbox probe, split off along its seam.
libdm_core_la_SOURCES += libdm/restrict-probe.c
