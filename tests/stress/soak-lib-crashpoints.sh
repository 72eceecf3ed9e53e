#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The soak of the library's crash-point campaign: 500 rounds (or $1).
# Run from the build directory: tests/stress/soak-lib-crashpoints.sh [ROUNDS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${LIBDM_KEEPER:=$(pwd)/tools/libdm-keeper}"
export LIBDM_KEEPER
LIBDM_CRASH_ROUNDS=${1:-500} exec ./tests/stress/test-lib-crashpoints
