#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# compare.sh CFG DOMID OUTDIR: writes OUTDIR/NAME.libxl (libxl's own argv
# and environment for CFG, from libxl-argv) and OUTDIR/NAME.libdm (dmctl
# start --dry-run), both normalised by normalise.sed, and prints the diff.
# Exit 0 equal, 1 different, 2 a side refused the configuration.
# Environment: LIBXL_ARGV, DMCTL, XL, XLHYP_PRELOAD, XENSTORED_PATH (the
# fake hypervisor's, see tests/harness/xen-env.sh) and IMGDIR (scratch
# images for the @IMG@, @IMG2@, @QCOW@, @ISO@ placeholders).
set -u
cfg=$1 d=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
n=$(basename "$cfg" .cfg)
sed -e "s|@IMG@|$IMGDIR/a.raw|g" -e "s|@IMG2@|$IMGDIR/b.raw|g" \
    -e "s|@QCOW@|$IMGDIR/c.qcow2|g" -e "s|@ISO@|$IMGDIR/d.iso|g" -e "s|@USER@|${DMUSER:-}|g" \
    "$cfg" >"$out/$n.cfg"
if ! LD_PRELOAD="$XLHYP_PRELOAD" "$XL" -N create "$out/$n.cfg" >"$out/$n.json" 2>"$out/$n.xl.err" ||
   ! LD_PRELOAD="$XLHYP_PRELOAD" "$LIBXL_ARGV" "$d" <"$out/$n.json" >"$out/$n.libxl.raw" \
        2>"$out/$n.libxl.err"; then
    echo "libxl refused $n: $(cat "$out/$n.xl.err" "$out/$n.libxl.err" | tail -n 2)"
    exit 2
fi
if ! "$DMCTL" start --config "$out/$n.cfg" --profile xen --domid "$d" --dry-run \
        >"$out/$n.libdm.raw" 2>"$out/$n.libdm.err"; then
    echo "libdm refused $n: $(tail -n 2 "$out/$n.libdm.err")"
    exit 2
fi
# libdm's plan has no environment lines yet; libxl's are compared apart.
grep -v '^env ' "$out/$n.libxl.raw" | sed -f "$here/normalise.sed" -e "s/@D@/$d/g" >"$out/$n.libxl"
sed -f "$here/normalise.sed" "$out/$n.libdm.raw" >"$out/$n.libdm"
diff -u "$out/$n.libxl" "$out/$n.libdm" >"$out/$n.diff" && exit 0
cat "$out/$n.diff"
exit 1
