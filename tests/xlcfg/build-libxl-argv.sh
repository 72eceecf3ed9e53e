#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds tests/xlcfg/libxl-argv (libxl 4.17's own device-model argv for an
# xl.cfg) into OUTDIR:
#   build-libxl-argv.sh OUTDIR
# Needs Debian's libxen-dev (libxenlight.a, the public headers) and libxl's
# internal headers, which no binary package ships: they come from Debian's
# xen source package (apt-get source, with a deb-src line for Debian's own
# archive added when missing; root only), kept in $LIBDM_XEN_SRC_CACHE
# (default /var/cache/libdm-xen-src) for the next run. Nothing of it is in
# this tree. The generated type headers are made with libxl's own
# generators (gentypes.py, libxl_save_msgs_gen.pl). Debian's libxenlight.a
# is copied with the static builder libxl__build_device_model_args made
# global (objcopy): the program calls libxl's code, not a copy of it.
# Exit 0 built, 77 cannot be built here (says why), 1 a build error.
set -eu
out=${1:?usage: build-libxl-argv.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
cache=${LIBDM_XEN_SRC_CACHE:-/var/cache/libdm-xen-src}
lib=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/libxenlight.a
skip() { echo "SKIP: $*"; exit 77; }

[ -f "$lib" ] || skip "no $lib (libxen-dev)"
for t in gcc objcopy python3 perl; do
    command -v "$t" >/dev/null || skip "no $t"
done
mkdir -p "$out"
[ -x "$out/libxl-argv" ] && [ "$out/libxl-argv" -nt "$here/libxl-argv.c" ] &&
    [ "$out/libxl-argv" -nt "$lib" ] && exit 0

src=$(ls -d "$cache"/xen-4.17*/tools/libs/light 2>/dev/null | tail -n 1 || true)
if [ -z "$src" ]; then
    [ "$(id -u)" = 0 ] || skip "libxl's internal headers: no xen source in $cache (run once as root)"
    command -v apt-get >/dev/null || skip "no apt-get to fetch Debian's xen source package"
    if ! apt-cache showsrc xen >/dev/null 2>&1 || [ -z "$(apt-cache showsrc xen 2>/dev/null)" ]; then
        cat >/etc/apt/sources.list.d/libdm-deb-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update -qq >/dev/null 2>&1 || true
    fi
    command -v dpkg-source >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null 2>&1 || true
    mkdir -p "$cache"
    (cd "$cache" && apt-get source -qq xen >/dev/null 2>&1) ||
        skip "apt-get source xen failed (no deb-src reachable?)"
    src=$(ls -d "$cache"/xen-4.17*/tools/libs/light 2>/dev/null | tail -n 1 || true)
    [ -n "$src" ] || skip "Debian's xen source has no tools/libs/light"
fi
top=$(cd "$src/../../.." && pwd)

gen="$out/gen"
mkdir -p "$gen"
for stem in "" _internal; do
    python3 "$src/gentypes.py" "$src/libxl_types$stem.idl" "$gen/_libxl_types$stem.h" \
        "$gen/_libxl_types${stem}_private.h" "$gen/_libxl_types${stem}_json.h" \
        "$gen/_libxl_types$stem.c" >/dev/null
done
perl -w "$src/libxl_save_msgs_gen.pl" _libxl_save_msgs_callout.h >"$gen/_libxl_save_msgs_callout.h"
# The path macros libxl_internal.h names; the values that count are those
# compiled into libxenlight.a itself.
cat >"$gen/_paths.h" <<'EOF'
#define XEN_RUN_DIR "/var/run/xen"
#define XEN_LOG_DIR "/var/log/xen"
#define XEN_LIB_DIR "/var/lib/xen"
#define XEN_RUN_STORED "/var/run/xenstored"
#define XEN_CONFIG_DIR "/etc/xen"
#define XEN_SCRIPT_DIR "/etc/xen/scripts"
#define LIBEXEC_BIN "/usr/lib/xen-4.17/bin"
#define XEN_PAGING_DIR "/var/lib/xen/xenpaging"
#define XEN_DUMP_DIR "/var/lib/xen/dump"
#define SBINDIR "/usr/sbin"
#define BINDIR "/usr/bin"
#define PRIVATE_BINDIR "/usr/lib/xen-4.17/bin"
#define QEMU_XEN_PATH "/usr/libexec/xen-qemu-system-i386"
#define XENFIRMWAREDIR "/usr/lib/xen-4.17/boot"
#define XEN_LOCK_DIR "/var/lock"
EOF
objcopy --globalize-symbol=libxl__build_device_model_args "$lib" "$out/libxenlight-open.a"
gcc -O1 -g -D__XEN_TOOLS__ -DHAVE_YAJL_YAJL_VERSION_H -I"$gen" -I"$src" \
    -idirafter "$top/tools/include" -o "$out/libxl-argv.new" "$here/libxl-argv.c" \
    "$out/libxenlight-open.a" -lxenctrl -lxenguest -lxenstore -lxentoollog -lxenevtchn \
    -lxenhypfs -lxentoolcore -lxendevicemodel -lxencall -lxenforeignmemory -lxengnttab \
    -lyajl -luuid -lpthread -lutil -lm
mv -f "$out/libxl-argv.new" "$out/libxl-argv"
