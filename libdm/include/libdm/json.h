/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small JSON value tree for QMP arguments and replies.
 *
 * Values handed to callbacks are borrowed and valid only during the callback;
 * values returned through ret_* parameters belong to the caller, who frees
 * them with libdm_json_free(). Parsing is bounded (size, depth, node count);
 * generation goes through yajl_gen with UTF-8 validation, never printf.
 */
#ifndef LIBDM_JSON_H
#define LIBDM_JSON_H

#include <libdm/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct libdm_json libdm_json;

typedef enum libdm_json_type {
    LIBDM_JSON_NULL,
    LIBDM_JSON_BOOL,
    LIBDM_JSON_NUMBER,
    LIBDM_JSON_STRING,
    LIBDM_JSON_ARRAY,
    LIBDM_JSON_OBJECT,
} libdm_json_type;

/* Parses one JSON text of @len bytes with the default bounds (10 MiB, depth
 * 128, one million values). -EINVAL on a syntax error, -E2BIG past a bound. */
LIBDM_EXPORT int libdm_json_parse(const char *text, size_t len,
                                  libdm_json **ret_value);
/* Serialises @value (compact, or indented if @pretty). */
LIBDM_EXPORT int libdm_json_to_string(const libdm_json *value, int pretty,
                                      char **ret_text);
LIBDM_EXPORT libdm_json *libdm_json_free(libdm_json *value);
LIBDM_EXPORT int libdm_json_copy(const libdm_json *value, libdm_json **ret_copy);

LIBDM_EXPORT libdm_json_type libdm_json_get_type(const libdm_json *value);
/* NULL unless @value is a string. */
LIBDM_EXPORT const char *libdm_json_get_string(const libdm_json *value);
/* -EINVAL unless @value is a number that fits an int64_t. */
LIBDM_EXPORT int libdm_json_get_int(const libdm_json *value, int64_t *ret_int);
/* -EINVAL unless @value is a boolean; *ret is 0 or 1. */
LIBDM_EXPORT int libdm_json_get_bool(const libdm_json *value, int *ret_bool);
/* Member @key of an object, or NULL. */
LIBDM_EXPORT const libdm_json *libdm_json_object_get(const libdm_json *object,
                                                     const char *key);
/* Number of members / elements; 0 for other types. */
LIBDM_EXPORT size_t libdm_json_length(const libdm_json *value);
LIBDM_EXPORT const char *libdm_json_object_key_at(const libdm_json *object, size_t i);
LIBDM_EXPORT const libdm_json *libdm_json_object_value_at(const libdm_json *object,
                                                          size_t i);
LIBDM_EXPORT const libdm_json *libdm_json_array_get(const libdm_json *array, size_t i);

/* Builders. The *_new_* functions return NULL on allocation failure. The
 * add/append calls take ownership of @member even when they fail. */
LIBDM_EXPORT libdm_json *libdm_json_new_null(void);
LIBDM_EXPORT libdm_json *libdm_json_new_bool(int b);
LIBDM_EXPORT libdm_json *libdm_json_new_int(int64_t i);
LIBDM_EXPORT libdm_json *libdm_json_new_string(const char *s);
LIBDM_EXPORT libdm_json *libdm_json_new_array(void);
LIBDM_EXPORT libdm_json *libdm_json_new_object(void);
LIBDM_EXPORT int libdm_json_object_add(libdm_json *object, const char *key,
                                       libdm_json *member);
LIBDM_EXPORT int libdm_json_array_append(libdm_json *array, libdm_json *member);

#ifdef __cplusplus
}
#endif
#endif
