# SPDX-License-Identifier: LGPL-2.1-or-later
# The shell tests' common checks (sourced: . "$top_srcdir/tests/harness/tap.sh").
#   ok DESC / fail DESC       count a passed / failed check (TAP-style lines)
#   check DESC COMMAND...     ok if COMMAND succeeds, else fail
#   field JSON KEY            the value of "KEY" in one line of JSON
#   tap_done                  prints "N passed, N failed"; status 0 if none failed
fails=0
n=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}
ok() {
    n=$((n + 1))
    echo "ok $n - $*"
}
check() {
    desc=$1
    shift
    if "$@"; then ok "$desc"; else fail "$desc"; fi
}
field() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p"
}
tap_done() {
    echo "$n passed, $fails failed"
    [ "$fails" -eq 0 ]
}
