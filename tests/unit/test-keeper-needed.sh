#!/bin/sh
# Issue 23: the keeper is exec'd once per DM, so the dynamic loader must map
# nothing but libc for it. When configure linked libxenstore, libxentoollog,
# libxentoolcore and libseccomp into it from their archives (KEEPER_LIBS,
# --disable-static-keeper-libs not given), its only NEEDED entry is libc.
set -eu
keeper="${LIBDM_KEEPER:?}"
mk="${top_builddir:?}/Makefile"
if ! grep -q '^KEEPER_LIBS = .*\.a' "$mk"; then
    echo "SKIP: configure kept the keeper's libraries shared"
    exit 77
fi
needed=$(readelf -d "$keeper" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "keeper NEEDED: $needed"
# A sanitizer build (CI's ASan/UBSan/TSan stages) adds the sanitizers'
# runtimes: they are the build's, not the keeper's own dependencies.
extra=$(printf '%s\n' "$needed" | grep -v '^libc\.so\.' |
        grep -Ev '^lib(asan|ubsan|tsan|lsan)\.so\.' || true)
if [ -n "$extra" ]; then
    echo "FAIL: the keeper loads more than libc: $extra"
    exit 1
fi
echo "PASS"
