/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef BENCH_PARTS_H
#define BENCH_PARTS_H
/*
 * bench-parts: where libdm's extra cost over the floor goes, per DM, measured
 * in the calling benchmark's own run (same machine state): each part of a
 * libdm start that the floor does not have, repeated alone (see bench-parts.c).
 * floor_ms: the floor's per-DM figure the parts are set against;
 * lib_ms: libdm's; what: "wall" or "CPU".
 */
void bp_breakdown(const char *store_dir, double floor_ms, double lib_ms, const char *what);
#endif
