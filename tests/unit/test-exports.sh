#!/bin/sh
# The shared library exports exactly the functions the public headers declare
# with LIBDM_EXPORT: nothing internal (libdm__*), nothing in libdevmapper's
# dm_* namespace, nothing missing.
set -eu
lib="${top_builddir:?}/.libs/libdm.so"
[ -f "$lib" ] || { echo "SKIP: $lib not built (static-only build?)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRV]$/ { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/actual"
sed -n 's/^LIBDM_EXPORT[^(]*[ *]\(libdm_[a-z0-9_]*\)(.*/\1/p' \
    "${top_srcdir:?}"/libdm/include/libdm/*.h | sort -u >"$tmp/expected"

status=0
if grep -E '^(libdm__|dm_)' "$tmp/actual"; then
    echo "FAIL: internal or dm_* symbols exported (above)"
    status=1
fi
if ! diff -u "$tmp/expected" "$tmp/actual"; then
    echo "FAIL: exported symbols differ from the LIBDM_EXPORT declarations (- declared, + exported)"
    status=1
fi
[ "$status" = 0 ] && echo "exports: $(wc -l <"$tmp/actual") symbols, all declared"
exit $status
