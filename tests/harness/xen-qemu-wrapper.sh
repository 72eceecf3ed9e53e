#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs the REAL Xen device model (qemu-system-xen) under the hypervisor fake
# tests/harness/xenhyp.c. For tests only, and only because the hypervisor is
# faked: on a Xen host QEMU needs neither LD_PRELOAD nor a private xenstored.
#
# libdm gives QEMU an explicit environment (PATH and LC_ALL only), so
# neither LD_PRELOAD nor XENSTORED_PATH can reach QEMU from the test's
# environment. tests/harness/xen-env.sh therefore links this script as
# DIR/qemu and writes DIR/qemu.env next to it; the test passes DIR/qemu as
# `dmctl start --qemu`. The script reads "$0.env" (XEN_QEMU, LD_PRELOAD,
# XENSTORED_PATH) and execs the real binary: same pid, so the pid libdm
# records and signals is the real QEMU's, and /proc/PID/exe is the binary.
set -eu

env_file=$0.env
if [ ! -r "$env_file" ]; then
    echo "$0: $env_file not found (written by tests/harness/xen-env.sh start)" >&2
    exit 127
fi
. "$env_file"
export LD_PRELOAD XENSTORED_PATH
exec "$XEN_QEMU" "$@"
