/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared by the fuzz targets: the entry point's name. Built by libFuzzer
 * (run-fuzzers.sh) it is LLVMFuzzerTestOneInput; test-fuzz-replay.c includes
 * every target with FUZZ_ENTRY defined to a distinct name. */
#ifndef LIBDM_FUZZ_COMMON_H
#define LIBDM_FUZZ_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#endif
#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
int FUZZ_ENTRY(const uint8_t *data, size_t size);
