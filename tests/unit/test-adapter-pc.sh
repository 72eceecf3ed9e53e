#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 19: pkg-config files for the adapters (libdm-sdevent, libdm-libuv,
# libdm-glib), as built (uninstalled): each resolves (its loop library and
# libdm found) and gives the include directory. Needs pkg-config.
command -v pkg-config >/dev/null 2>&1 || { echo "SKIP: no pkg-config"; exit 77; }
dir="${top_builddir:?}/libdm"
export PKG_CONFIG_PATH="$dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fails=0 n=0
for pc in libdm-sdevent:libsystemd libdm-libuv:libuv libdm-glib:glib-2.0; do
    name=${pc%%:*} dep=${pc#*:}
    n=$((n + 1))
    if [ ! -f "$dir/$name.pc" ]; then
        echo "not ok $n - $name.pc is built"; fails=$((fails + 1)); continue
    fi
    if ! pkg-config --exists "$dep"; then
        echo "ok $n - $name # SKIP no $dep.pc here"; continue
    fi
    if pkg-config --exists --print-errors "$name" &&
        pkg-config --cflags "$name" | grep -q -- "-I" &&
        ! grep -q '@' "$dir/$name.pc"; then
        echo "ok $n - $name resolves ($(pkg-config --modversion "$name"))"
    else
        echo "not ok $n - $name resolves"; fails=$((fails + 1))
    fi
done
echo "1..$n"
[ "$fails" -eq 0 ]
