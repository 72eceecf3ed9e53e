/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm: a device-model manager for Xen-style toolstacks.
 *
 * Conventions used by every libdm call:
 *  - int returns are >= 0 on success and a negative errno on failure;
 *  - output parameters come last, are named ret_*, and are left untouched on
 *    failure;
 *  - objects are opaque; *_free(NULL) / *_unref(NULL) are no-ops;
 *  - the library never owns signals, never calls exit(), and runs no threads.
 *    One libdm_ctx must only be used by one thread at a time; several
 *    contexts in several threads are fine (there is no global state).
 */
#ifndef LIBDM_COMMON_H
#define LIBDM_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(LIBDM_BUILDING)
#define LIBDM_EXPORT __attribute__((visibility("default")))
#else
#define LIBDM_EXPORT
#endif

typedef struct libdm_ctx libdm_ctx;

#ifdef __cplusplus
}
#endif
#endif
