#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmctl's command line: usage errors (exit 2), help and version (exit 0),
# failures naming what failed. Needs no QEMU: nothing here starts a DM.
# $DMCTL comes from AM_TESTS_ENVIRONMENT; without it the test is skipped.

if [ -z "${DMCTL:-}" ]; then
    echo "SKIP: \$DMCTL is not set"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-dmctl-cli.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
# A private, empty store: nothing here may touch the real one.
store="$tmp/store"
mkdir -m 0700 "$store" || exit 99

. "$top_srcdir/tests/harness/tap.sh"

# run EXPECTED DESCRIPTION ARGS...: dmctl_run (tap.sh).
run() { dmctl_run "$@"; }

# expect_in FILE PATTERN DESCRIPTION: FILE (out or err) contains PATTERN.
expect_in() {
    if ! grep -q -- "$2" "$tmp/$1"; then
        fail "$3: '$2' not in std$1"
        sed "s/^/    std$1: /" "$tmp/$1"
    fi
}

expect_empty() {
    if [ -s "$tmp/$1" ]; then
        fail "$2: std$1 not empty"
        sed "s/^/    std$1: /" "$tmp/$1"
    fi
}

# ---- usage errors: exit 2, a message and the usage on stderr ----
run 2 "no command" && expect_in err "usage:" "no command"
run 2 "unknown command" frobnicate && expect_in err "frobnicate" "unknown command"
run 2 "unknown global option" --frobnicate list && expect_in err "frobnicate" "unknown option"
run 2 "unknown command option" --store "$store" list --frobnicate &&
    expect_in err "frobnicate" "unknown command option"
run 2 "start without NAME" --store "$store" start && expect_in err "NAME" "start without NAME"
run 2 "--memory abc" --store "$store" start t1 --memory abc &&
    expect_in err "invalid --memory value 'abc'" "--memory abc"
run 2 "--memory 0" --store "$store" start t1 --memory 0 &&
    expect_in err "\-\-memory" "--memory 0"
run 2 "--domid -1" --store "$store" start t1 --domid -1 && expect_in err "\-\-domid" "--domid -1"
run 2 "--domid too big" --store "$store" start t1 --domid 40000 &&
    expect_in err "invalid --domid value '40000'" "--domid 40000"
run 2 "--profile bogus" --store "$store" start t1 --profile bogus &&
    expect_in err "\-\-profile" "--profile bogus"
run 2 "bad NAME" --store "$store" start '-bad/name' && expect_in err "NAME" "bad NAME"
run 2 "--runas without --restrict" --store "$store" start t1 --runas nobody &&
    expect_in err "\-\-restrict" "--runas without --restrict"
run 2 "--runas root" --store "$store" start t1 --restrict --runas root &&
    expect_in err "not root" "--runas root"
if [ "$(id -u)" = 0 ]; then
    # Refused by libdm before anything runs: exit 2, the problem named.
    run 2 "--chroot /" --store "$store" start t1 --restrict --runas nobody --chroot / &&
        expect_in err "root directory" "--chroot /"
    if ! getent passwd xen-qemuuser-shared xen-qemuuser-range-base >/dev/null; then
        run 2 "xen restrict without a user" --store "$store" start t1 --profile xen --domid 3 \
            --restrict && expect_in err "xen-qemuuser-shared" "xen restrict without a user"
    fi
    [ -z "$(ls -A "$store")" ] || fail "refused starts left files: $(ls -A "$store")"
fi
run 2 "--timeout 0" --timeout 0 list && expect_in err "invalid --timeout value '0'" "--timeout 0"
run 2 "--timeout abc" --timeout abc list && expect_in err "\-\-timeout" "--timeout abc"
run 2 "--timeout -1" --timeout -1 list && expect_in err "\-\-timeout" "--timeout -1"
run 2 "--timeout missing value" list --timeout && expect_in err "needs a value" "--timeout"
run 2 "status without target" --store "$store" status
run 2 "status with two names" --store "$store" status a b
run 2 "resume without NAME" --store "$store" resume
run 2 "stop with extra argument" --store "$store" stop a b
run 2 "qmp without command" --store "$store" qmp t1
run 2 "help of an unknown command" help frobnicate

# qmp: malformed JSON is a usage error named in the message, found before
# any connection is tried (the socket does not even exist).
run 2 "qmp bad JSON" --timeout 2 qmp --socket "$tmp/none.sock" query-status '{bad json' &&
    expect_in err "{bad json" "qmp bad JSON"
run 2 "qmp JSON not an object" --timeout 2 qmp --socket "$tmp/none.sock" query-status '[1]' &&
    expect_in err "object" "qmp JSON array"

# tcp hosts of --listen and --uri-host: [IPv6] in brackets (with a zone),
# bare IPv6, IPv4 and names; anything else is a usage error, found before
# any channel or QEMU.
for bad in 'tcp:[::1' 'tcp:[]' 'tcp:[10.0.0.1]' 'tcp:10.0.0.1:4444' 'tcp:' 'tcp:a,b' \
    'tcp:[fe80::1%]' 'tcp:[::1]:4444' 'udp:1.2.3.4'; do
    run 2 "migrate-receive --listen '$bad'" --store "$store" migrate-receive --listen "$bad" &&
        expect_in err "invalid --listen value" "--listen '$bad' named"
done
for bad in '[::1' '[]' 'h:4444' 'a b' '[fe80::1%eth0'; do
    run 2 "migrate --uri-host '$bad'" --store "$store" migrate vm --to true --uri-host "$bad" &&
        expect_in err "invalid --uri-host value" "--uri-host '$bad' named"
done
# Valid ones pass parsing (and then fail on the empty channel: exit 1).
for good in 'tcp:[::1]' 'tcp:[fe80::1%eth0]' 'tcp:::1' 'tcp:127.0.0.1' 'tcp:host-2.example'; do
    run 1 "migrate-receive --listen '$good' parses" --timeout 2 --store "$store" \
        migrate-receive --listen "$good"
done

# ---- help and version: exit 0, on stdout ----
if run 0 "--help" --help; then
    expect_empty err "--help"
    for c in start status resume pause qmp stop list demo help; do
        expect_in out "^  $c " "--help mentions $c"
    done
    expect_in out "\-\-timeout" "--help mentions --timeout"
fi
run 0 "-h" -h && expect_in out "usage:" "-h"
run 0 "help" help && expect_in out "start" "help"
if run 0 "help start" help start; then
    for o in --domid --profile --restrict --runas --chroot --machine --memory --incoming --qemu; do
        expect_in out "\\$o" "help start mentions $o"
    done
fi
run 0 "start --help" start --help && expect_in out "usage: dmctl start \[NAME\]" "start --help"
run 0 "help qmp" help qmp && expect_in out "JSON-ARGUMENTS" "help qmp"
run 0 "--version" --version && expect_in out "dmctl" "--version" &&
    expect_in out "[0-9]\.[0-9]" "--version has a number"

# ---- failures: exit 1 (or 3 for a deadline), naming what failed ----
run "1|3" "status --socket /nonexistent" --timeout 2 status --socket /nonexistent/qmp.sock &&
    expect_in err "/nonexistent/qmp.sock" "status --socket names the path"
: >"$tmp/plain"
run 1 "status --socket on a regular file" --timeout 2 status --socket "$tmp/plain" &&
    expect_in err "not a socket" "not a socket"
run 1 "status of an unknown DM" --store "$store" --timeout 2 status nosuchdm &&
    expect_in err "nosuchdm" "status names the DM"
run 1 "stop of an unknown DM" --store "$store" --timeout 2 stop nosuchdm &&
    expect_in err "nosuchdm" "stop names the DM"
run 0 "list of an empty store" --store "$store" list --no-query &&
    expect_in out "NAME" "list header"
run 0 "list --json of an empty store" --store "$store" --json list && expect_empty out "list --json"

# ---- a rejected NAME is a usage error (2) for every command taking one ----
long=$(printf '%065d' 0)
for name in 'bad/name' "$long" '.hidden' 'sp ace'; do
    for c in start status resume pause stop migrate-cancel; do
        run 2 "$c rejects NAME '$name'" --store "$store" --timeout 2 $c "$name" &&
            expect_in err "invalid NAME" "$c names the NAME rule"
    done
    run 2 "qmp rejects NAME '$name'" --store "$store" --timeout 2 qmp "$name" query-status &&
        expect_in err "invalid NAME" "qmp names the NAME rule"
    run 2 "migrate rejects NAME '$name'" --store "$store" --timeout 2 migrate --to true "$name" &&
        expect_in err "invalid NAME" "migrate names the NAME rule"
done
run 2 "status rejects NAME '-x' after --" --store "$store" status -- -x &&
    expect_in err "invalid NAME" "status -- -x"

# ---- a store root that is a symlink is refused, trailing slash or not ----
mkdir -m 0700 "$tmp/realstore" && ln -s realstore "$tmp/linkstore" || exit 99
for s in "$tmp/linkstore" "$tmp/linkstore/" "$tmp/linkstore//"; do
    run 1 "--store $s (a symlink) refused" --store "$s" list --no-query &&
        expect_in err "symbolic link" "--store $s names the symlink"
done

echo "$n checks, $fails failed"
[ "$fails" -eq 0 ]
