#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# xl.cfg parity (issue 20): for every file of tests/xlcfg/corpus/, the
# device-model command line `dmctl start --config F --profile xen
# --dry-run` gives equals the one libxl 4.17 ITSELF builds for the same
# file (tests/xlcfg/libxl-argv, Debian's libxenlight.a), after the
# documented differences of normalise.sed (README, "xl.cfg"). Then one
# real start on the real Xen DM: QEMU's environment holds libxl's
# (XEN_QEMU_CONSOLE_LIMIT, XEN_DOMAIN_ID). And every DM-relevant key libdm
# does not map is refused, exit 2, naming it.
# The hypervisor is FAKED (tests/harness/xen-env.sh: xenhyp.c, xlhyp.c);
# xl and libxl are the real ones. Skips (77) without root, xl, the Xen DM,
# or where libxl-argv cannot be built (no libxen-dev / xen source).

XL=${XL:-/usr/lib/xen-4.17/bin/xl}
XEN_QEMU=${XEN_QEMU:-/usr/libexec/xen-qemu-system-i386}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
for f in "$XL" "$XEN_QEMU" /usr/lib/xen-4.17/bin/xenstored; do
    [ -x "$f" ] || { echo "SKIP: $f not installed"; exit 77; }
done
if [ -z "${DMCTL:-}" ] || [ -z "${top_srcdir:-}" ] || [ -z "${top_builddir:-}" ]; then
    echo "ERROR: run from make check (\$DMCTL, \$top_srcdir, \$top_builddir)"
    exit 99
fi
here="$top_srcdir/tests/xlcfg"
sh "$here/build-libxl-argv.sh" "$top_builddir/tests/xlcfg"
rc=$?
[ $rc -eq 0 ] || exit $rc
LIBXL_ARGV="$top_builddir/tests/xlcfg/libxl-argv"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-xlcfg.XXXXXX") || exit 99
d=$((10000 + $$ % 1000))
uid=$((63000 + $$ % 1000))
DMUSER=libdmq$$
made_user=
store=$tmp/store
mkdir -m 0700 "$store" "$tmp/out" "$tmp/img" || exit 99
cleanup() {
    "$DMCTL" --store "$store" --timeout 5 stop "env$$" --force >/dev/null 2>&1
    sh "$top_srcdir/tests/harness/xen-env.sh" stop "$tmp/xen" >/dev/null 2>&1
    [ -n "$made_user" ] && userdel "$DMUSER" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

env_out=$(sh "$top_srcdir/tests/harness/xen-env.sh" start "$tmp/xen" "$d") || exit $?
eval "$env_out"
[ -n "${XLHYP_PRELOAD:-}" ] || { echo "SKIP: the harness has no preload for xl create"; exit 77; }
mkdir -p /var/run/xen || exit 99
IMGDIR=$tmp/img
truncate -s 64M "$IMGDIR/a.raw" "$IMGDIR/b.raw" "$IMGDIR/d.iso" &&
    qemu-img create -q -f qcow2 "$IMGDIR/c.qcow2" 64M || exit 99
# device_model_user must be a real account for libxl: a private one.
if ! getent passwd "$DMUSER" >/dev/null && ! getent passwd "$uid" >/dev/null &&
   useradd --system --no-create-home --shell /usr/sbin/nologin -u "$uid" "$DMUSER" 2>/dev/null; then
    made_user=1
fi
export IMGDIR DMUSER LIBXL_ARGV XL XLHYP_PRELOAD XENSTORED_PATH DMCTL

. "$top_srcdir/tests/harness/tap.sh"

for cfg in "$here"/corpus/*.cfg; do
    name=$(basename "$cfg" .cfg)
    if out=$(sh "$here/compare.sh" "$cfg" "$d" "$tmp/out" 2>&1); then
        ok "$name: libdm's command line is libxl's"
    else
        fail "$name: differs from libxl's:"
        printf '%s\n' "$out" | sed 's/^/#   /'
    fi
done

# libxl's environment, in a real QEMU's /proc/PID/environ.
cfg0=$tmp/out/02-minimal.cfg
want=$(grep '^env ' "$tmp/out/02-minimal.libxl.raw" | sed 's/^env //' | sort)
if out=$("$DMCTL" --store "$store" --timeout 20 --json start "env$$" --config "$cfg0" \
        --profile xen --domid "$d" --qemu "$XEN_QEMU_WRAPPER" 2>&1); then
    pid=$(printf '%s\n' "$out" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    # The wrapper of the fake hypervisor execs QEMU: its environment is QEMU's.
    have=$(tr '\0' '\n' <"/proc/$pid/environ" | grep '^XEN_' | sort)
    if [ -n "$want" ] && [ "$have" = "$want" ]; then
        ok "QEMU's environment is libxl's ($(echo $want))"
    else
        fail "QEMU's environment: libxl: '$(echo $want)'; libdm: '$(echo $have)'"
    fi
    "$DMCTL" --store "$store" --timeout 10 stop "env$$" >/dev/null 2>&1
else
    fail "start of 02-minimal on the Xen DM: $out"
fi

# Keys libdm does not map are refused, naming the key; none is dropped.
# Every key of dmctl's refused list (tools/dmctl-xlcfg.c), as a string and
# as a list.
keys=$(sed -n '/refused_keys\[\] = {/,/^};/p' "$top_srcdir/tools/dmctl-xlcfg.c" |
       grep -o '"[a-z_0-9]*"' | tr -d '"')
[ "$(printf '%s\n' $keys | wc -l)" -ge 30 ] || fail "the refused list was not found"
i=0
for k in $keys; do
    i=$((i + 1))
    if [ $((i % 2)) -eq 0 ]; then key="$k = [ \"x\" ]"; else key="$k = \"x\""; fi
    printf 'name = "r"\ntype = "hvm"\nmemory = 64\n%s\n' "$key" >"$tmp/refuse.cfg"
    "$DMCTL" start --config "$tmp/refuse.cfg" --profile xen --domid "$d" --dry-run \
        >/dev/null 2>"$tmp/refuse.err"
    rc=$?
    if [ $rc -eq 2 ] && grep -q "$k: " "$tmp/refuse.err"; then
        ok "$k: refused (exit 2), named"
    else
        fail "$k: exit $rc, $(cat "$tmp/refuse.err")"
    fi
done

echo "$n passed, $fails failed"
[ "$fails" -eq 0 ]
