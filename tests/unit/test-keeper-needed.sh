#!/bin/sh
# Issue 23: the keeper is exec'd once per DM, so the dynamic loader must map
# nothing but libc for it. When configure linked libxenstore, libxentoollog,
# libxentoolcore and libseccomp into it from their archives (KEEPER_LIBS,
# --disable-static-keeper-libs not given), its only NEEDED entry is libc;
# linked -static-pie (--disable-static-keeper not given), it has none.
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
# With -static-pie (KEEPER_LDFLAGS), no loader at all: no interpreter and
# no NEEDED entry, and the one NSS lookup it would make arrives by argument.
if grep -q '^KEEPER_LDFLAGS = .*-static-pie' "$mk"; then
    if [ -n "$needed" ] || readelf -l "$keeper" | grep -q 'INTERP'; then
        echo "FAIL: configured -static-pie, yet the keeper has a loader or NEEDED: $needed"
        exit 1
    fi
    echo "keeper: static-pie, no loader"
fi
echo "PASS"
