#!/bin/sh
# Issue 23: test-abandon and the library crash-point campaign again, every
# keeper forked by the context's helper (LIBDM_KEEPER_HELPER=1): a start
# abandoned, timed out or cut by the controller's death at any moment,
# with the helper in the path (a start before the helper started kills
# it; its queued requests close with it). Both run unchanged.
set -u
: "${top_builddir:?run through make check}"
export LIBDM_KEEPER_HELPER=1
rc=0
for t in tests/integration/test-abandon tests/stress/test-lib-crashpoints; do
    echo "# $t with LIBDM_KEEPER_HELPER=1"
    "$top_builddir/$t" || { echo "not ok - $t (exit $?)"; rc=1; }
done
exit $rc
