#!/bin/sh
# Issue 23: every dmctl command paid ~3.5 ms to map libxlutil, libxenlight
# and their ten dependencies, which only `start --config` and `--disk`
# (xl's syntax) use. dmctl loads them with dlopen() then (tools/dmctl-xlu.c):
# they are not in its NEEDED entries, and an xl.cfg is still read by them.
# yajl and the libxen* libraries it needs itself are linked from their
# archives where configure found them: then libc is its only NEEDED entry.
set -eu
. "${top_srcdir:?}/tests/harness/tap.sh"
dmctl="${top_builddir:?}/tools/dmctl"
needed=$(readelf -d "$dmctl" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "# dmctl NEEDED: $needed"
case " $needed" in
*libxlutil* | *libxenlight*) fail "dmctl links xl's parser" ;;
*) ok "dmctl does not link xl's parser" ;;
esac
# And, when configure found their archives, nothing but libc (issue 23).
if grep -q '^DMCTL_LIBS = .*libyajl_s\.a' "${top_builddir:?}/Makefile"; then
    extra=$(printf '%s\n' $needed | grep -v '^libc\.so\.' |
            grep -Ev '^lib(asan|ubsan|tsan|lsan)\.so\.' | tr '\n' ' ')
    check "dmctl's loader maps libc only (extra: ${extra:-none})" [ -z "$extra" ]
fi
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
: >"$d/img"
sed "s|@IMG@|$d/img|" "${top_srcdir:?}/tests/xlcfg/corpus/02-minimal.cfg" >"$d/g.cfg"
out=$("$dmctl" --store "$d" start --dry-run --config "$d/g.cfg" 2>&1) && rc=0 || rc=$?
echo "$out" | sed 's/^/#   /' | head -5
check "an xl.cfg is read through the loaded parser (exit $rc)" [ "$rc" -eq 0 ]
case "$out" in *"$d/img"*) ok "its disk is in the command line" ;;
*) fail "its disk is not in the command line" ;; esac
out=$("$dmctl" --store "$d" start --dry-run --config "$d/g.cfg" --disk 'hdb,,raw' 2>&1) && rc=0 || rc=$?
check "a bad disk in xl's syntax is refused by the parser (exit $rc)" [ "$rc" -eq 2 ]
tap_done
