#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 22, "Done when": the xl.cfg guest of test-dmctl-migrate-devices.sh
# (qcow2 disk, NIC on a bridge, pty serials, VNC) started with --restrict and
# a private uid migrates between two network namespaces on
# qemu-system-x86_64, keeps its devices (query-block, query-chardev,
# query-pci equal before and after), and the destination QEMU is confined
# (/proc/PID/status Uid, Seccomp, NoNewPrivs, /proc/PID/root).
#
# Regression (issue 22, found here 2026-12-05): the destination's `cont`
# was refused with 'Failed to get "write" lock' on the disk image. The
# image was an fdset of an O_RDWR and an O_RDONLY description; -drive's
# default auto-read-only=on made QEMU move between them, and the OFD locks
# it had taken on the writable one stayed with that description, which the
# set kept open after the source's inactivation. libdm now passes one fd
# and says auto-read-only=off (devices-argv.c).
# Root only; skips (77) otherwise.
MIGDEV_RESTRICT=1
export MIGDEV_RESTRICT
exec "$(dirname "$0")/test-dmctl-migrate-devices.sh"
