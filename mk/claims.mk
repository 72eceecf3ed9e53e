# Issue 18, the claims part: one DM per domid, only the owner removes a
# domain's files, every end cleans devices and sockets.
TESTS += tests/integration/test-attack-18-claims.sh
EXTRA_DIST += tests/integration/test-attack-18-claims.sh
# Item 4: the caller's chroot is opened once and used by fd.
TESTS += tests/integration/test-attack-18-chroot.sh
EXTRA_DIST += tests/integration/test-attack-18-chroot.sh
