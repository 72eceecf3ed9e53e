#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 18, "the second attack": one regression check per item of the
# second engineer's share, through dmctl and a real QEMU (-machine none or
# pc, TCG). Each check failed on the tree before its fix (see the commit
# messages).
#   9  no secret in a log: a VNC password set with --vnc-password-file is in
#      no stderr, at -v, -vv and LIBDM_LOG=debug (the library side, with an
#      application logger at debug, is tests/unit/test-qmp-redact.c)
# Needs $DMCTL and qemu-system-x86_64.

. "$(dirname "$0")/dmctl-migrate-lib.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-attack-18.XXXXXX") || exit 99
store="$tmp/store"
mkdir -m 0700 "$store" || exit 99
chmod 0755 "$tmp"
cleanup() {
    kill_store "$store"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
sfx=$$

# ---- 9: the VNC password is in no log ----
echo "# 9: no secret in a log"
# 8 characters at most (VNC); unique to this run
pw=$(printf 'Zq%06d' $((sfx % 1000000)))
printf '%s\n' "$pw" >"$tmp/vncpw"
chmod 0600 "$tmp/vncpw"
i=0
for how in "-v" "-vv" "LIBDM_LOG=debug" "LIBDM_LOG=debug -v"; do
    i=$((i + 1))
    name="a18-pw$i-$sfx"
    case $how in
    LIBDM_LOG=debug*) envset=LIBDM_LOG=debug; flags=${how#LIBDM_LOG=debug} ;;
    *) envset=LIBDM_LOG=; flags=$how ;;
    esac
    # shellcheck disable=SC2086
    env $envset timeout -k 5 60 "$DMCTL" --store "$store" --timeout 20 $flags \
        start "$name" --machine pc --memory 64 --vnc "unix:$tmp/vnc$i.sock" \
        --vnc-password-file "$tmp/vncpw" >"$tmp/out9" 2>"$tmp/err9"
    rc=$?
    # shellcheck disable=SC2086
    env $envset timeout -k 5 60 "$DMCTL" --store "$store" --timeout 20 $flags \
        stop "$name" >>"$tmp/out9" 2>>"$tmp/err9"
    if [ "$rc" != 0 ]; then
        fail "9: start with a VNC password ($how): exit $rc"
        sed 's/^/    /' "$tmp/err9"
    elif ! grep -q 'set_password' "$tmp/err9"; then
        fail "9: $how: no set_password logged (is debug on?)"
    elif grep -q -- "$pw" "$tmp/err9" "$tmp/out9" "$store"/*/* 2>/dev/null; then
        fail "9: $how: the VNC password is in the log"
        grep -- "$pw" "$tmp/err9" | sed 's/^/    /'
    elif ! grep -q 'set_password.*<redacted>' "$tmp/err9"; then
        fail "9: $how: set_password logged without <redacted>"
    else
        ok "9: $how: set_password logged, the password redacted"
    fi
done

finish
