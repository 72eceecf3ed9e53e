#!/bin/sh
# The floors of libdm's core hold: no call from a lower file to a higher
# one, no circle. Reads the symbol tables of the built objects (nm) of
# libdm/ and xenstore-glue/, so it checks what is really linked, macros and
# all. Floors: tests/layers/floors.txt; known breaks: tests/layers/debt.txt.
#   check-layers.sh [BUILDDIR]      exit 0 clean, 1 a new break, 77 skipped
set -eu
src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
bld=${1:-${top_builddir:-$src/build}}
command -v nm >/dev/null || { echo "SKIP: no nm"; exit 77; }
objs=$(ls "$bld"/libdm/*.o "$bld"/xenstore-glue/*.o 2>/dev/null | grep -v '/libdm_' || true)
[ -n "$objs" ] || { echo "SKIP: no objects under $bld"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# defs: SYMBOL FILE   uses: FILE SYMBOL
for o in $objs; do
    f=$(basename "$o" .o)
    nm "$o" | awk -v f="$f" 'NF==3 && $2 ~ /^[TDBR]$/ {print $3, f > "'"$tmp"'/defs"}
                             $1=="U" {print f, $2 > "'"$tmp"'/uses"}'
    # awk truncates on first open per run: append through the shell instead
    cat "$tmp/defs" >> "$tmp/alldefs" 2>/dev/null || true
    cat "$tmp/uses" >> "$tmp/alluses" 2>/dev/null || true
    rm -f "$tmp/defs" "$tmp/uses"
done

# edges: CALLER CALLEE SYMBOL
awk 'NR==FNR {def[$1]=$2; next} ($2 in def) && def[$2]!=$1 {print $1, def[$2], $2}' \
    "$tmp/alldefs" "$tmp/alluses" | sort -u > "$tmp/edges"

awk -v debtf="$src/tests/layers/debt.txt" -v floorf="$src/tests/layers/floors.txt" '
function load(   l, n, a, i) {
    while ((getline l < floorf) > 0) {
        if (l ~ /^#/ || l ~ /^[ \t]*$/) continue
        n = split(l, a, /[ \t]+/)
        for (i = 2; i <= n; i++) floor[a[i]] = a[1] + 0
    }
    while ((getline l < debtf) > 0) {
        if (l ~ /^#/ || l ~ /^[ \t]*$/) continue
        split(l, a, /[ \t]+/); debt[a[1] " " a[2]] = 1
    }
}
BEGIN { load() }
{
    e = $1 " " $2
    if (!($1 in floor) || !($2 in floor)) {
        f = ($1 in floor) ? $2 : $1
        if (!(f in unplaced))
            printf "check-layers: %s.c is on no floor (tests/layers/floors.txt)\n", f
        unplaced[f] = 1; bad = 1; next
    }
    call[e] = call[e] " " $3
    # Circles are followed through level and downward calls only: one
    # through an upward call is reported at that call.
    if (floor[$2] <= floor[$1]) callee[$1] = callee[$1] " " $2
}
function reaches(a, b, seen,   n, l, i) {   # is there a path a -> ... -> b ?
    if (a == b) return 1
    if (a in seen) return 0
    seen[a] = 1
    n = split(callee[a], l, " ")
    for (i = 1; i <= n; i++) if (reaches(l[i], b, seen)) return 1
    return 0
}
END {
    for (e in call) {
        split(e, p, " ")
        why = ""
        if (floor[p[2]] > floor[p[1]]) why = "calls up (floor " floor[p[1]] " -> " floor[p[2]] ")"
        else if (floor[p[2]] == floor[p[1]]) {
            # A downward call is never the break: a circle through it has
            # an upward or same-floor call, which is reported instead.
            delete seen; if (reaches(p[2], p[1], seen)) why = "closes a circle on floor " floor[p[1]]
        }
        if (why == "") continue
        if (e in debt) { used[e] = 1; continue }
        printf "check-layers: %s.c -> %s.c %s:%s\n", p[1], p[2], why, call[e]
        bad = 1
    }
    for (e in debt) if (!(e in used))
        printf "check-layers: debt.txt lists \"%s\", which no longer breaks the floors: delete that line\n", e
    nd = 0; for (e in used) nd++
    printf "check-layers: %d calls between files, %d known breaks left in debt.txt\n", NR, nd
    exit bad
}' "$tmp/edges"
