# Issue 20: xl.cfg guests under dm_restrict keep their data (file images
# past RLIMIT_FSIZE), on both QEMU binaries (root; the Xen half needs the
# Xen DM and xenstored).
TESTS += tests/integration/test-restrict-disk.sh
EXTRA_DIST += tests/integration/test-restrict-disk.sh
