# xl.cfg parity and restricted disks (issue 20).
# A restricted guest writes its images past RLIMIT_FSIZE on both binaries.
TESTS += tests/integration/test-restricted-disks.sh
EXTRA_DIST += tests/integration/test-restricted-disks.sh
