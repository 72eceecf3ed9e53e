# SPDX-License-Identifier: LGPL-2.1-or-later
# The shell tests' common checks (sourced: . "$top_srcdir/tests/harness/tap.sh").
#   ok DESC / fail DESC       count a passed / failed check (TAP-style lines)
#   check DESC COMMAND...     ok if COMMAND succeeds, else fail
#   field JSON KEY            the value of "KEY" in one line of JSON
#   tap_done                  prints "N passed, N failed"; status 0 if none failed
#   fakeqmp_start, fakeqmp_stop  a fake QMP server (below)
#   dmctl_run WANT DESC ARGS...  $DMCTL ARGS (stdin /dev/null, stdout and
#                             stderr in $tmp/out, $tmp/err); ok DESC if its exit
#                             status is WANT (several: 1|3), else fail, status 1
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
dmctl_run() {
    want=$1 desc=$2
    shift 2
    n=$((n + 1))
    "$DMCTL" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    got=$?
    case "|$want|" in
    *"|$got|"*) ;;
    *)
        fail "$desc: exit $got, expected $want (dmctl $*)"
        sed 's/^/    stderr: /' "$tmp/err"
        return 1
        ;;
    esac
    echo "ok $n - $desc"
    return 0
}

# A fake QMP server for the dmctl tests ($FAKEQMP, tests/harness/fakeqmp-main.c):
#   fakeqmp_start SCRIPT SOCK ERRFILE   serves SCRIPT on SOCK (--forever), its
#                                       pid in $fq; waits up to 5 s for SOCK
#   fakeqmp_stop                        kills and reaps it
fakeqmp_start() {
    rm -f "$2"
    "$FAKEQMP" --forever "$2" "$1" 2>"$3" &
    fq=$!
    _i=0
    while [ ! -S "$2" ] && [ $_i -lt 50 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
}
fakeqmp_stop() {
    kill "$fq" 2>/dev/null
    wait "$fq" 2>/dev/null
    fq=
}
