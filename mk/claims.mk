# Issue 18, the claims part: one DM per domid, only the owner removes a
# domain's files, every end cleans devices and sockets.
TESTS += tests/integration/test-attack-18-claims.sh
EXTRA_DIST += tests/integration/test-attack-18-claims.sh
