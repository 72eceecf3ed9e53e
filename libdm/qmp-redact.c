/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What of a QMP command may be logged: a copy of its arguments with every
 * secret replaced by "<redacted>" (issue 18, item 9). A secret is:
 *  - the value of a key named "password", "passwd" or ending in
 *    "-password" / "-passwd" / "_password", at any depth (set_password,
 *    change-vnc-password, expire_password's siblings, blockdev options);
 *  - "data" anywhere in an object-add / object_add of a secret object
 *    (qom-type "secret", "secret_keyring"...);
 *  - the command line of a human-monitor-command that sets a password
 *    ("set_password ...", "change vnc password ...") or adds an object.
 * The text sent to QEMU is not touched; only the logged form is redacted.
 */
#include "internal.h"
#include "qmp-internal.h"

#include <string.h>

#define REDACTED "<redacted>"

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && !strcmp(s + n - m, suffix);
}

static bool secret_key(const char *key, bool in_secret_object)
{
    if (!strcmp(key, "password") || !strcmp(key, "passwd") || ends_with(key, "-password") ||
        ends_with(key, "_password") || ends_with(key, "-passwd") || ends_with(key, "_passwd"))
        return true;
    return in_secret_object && !strcmp(key, "data");
}

static bool secret_hmp(const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    return !strncmp(line, "set_password", 12) || !strncmp(line, "change", 6) ||
           !strncmp(line, "object_add", 10) || !strncmp(line, "object-add", 10);
}

static bool has_secret(const libdm_json *v, bool in_secret_object)
{
    size_t i, n = libdm_json_length(v);

    switch (libdm_json_get_type(v)) {
    case LIBDM_JSON_OBJECT:
        for (i = 0; i < n; i++)
            if (secret_key(libdm_json_object_key_at(v, i), in_secret_object) ||
                has_secret(libdm_json_object_value_at(v, i), in_secret_object))
                return true;
        return false;
    case LIBDM_JSON_ARRAY:
        for (i = 0; i < n; i++)
            if (has_secret(libdm_json_array_get(v, i), in_secret_object))
                return true;
        return false;
    default:
        return false;
    }
}

/* A copy of @v with secrets redacted; NULL if out of memory. */
static libdm_json *redacted_copy(const libdm_json *v, bool in_secret_object)
{
    libdm_json *out = NULL;
    libdm_json *m;
    size_t i, n;

    switch (libdm_json_get_type(v)) {
    case LIBDM_JSON_OBJECT:
        out = libdm_json_new_object();
        n = libdm_json_length(v);
        for (i = 0; out && i < n; i++) {
            const char *key = libdm_json_object_key_at(v, i);

            m = secret_key(key, in_secret_object)
                    ? libdm_json_new_string(REDACTED)
                    : redacted_copy(libdm_json_object_value_at(v, i), in_secret_object);
            /* _add takes @m, even on failure */
            if (!m || libdm_json_object_add(out, key, m) < 0)
                out = libdm_json_free(out);
        }
        return out;
    case LIBDM_JSON_ARRAY:
        out = libdm_json_new_array();
        n = libdm_json_length(v);
        for (i = 0; out && i < n; i++) {
            m = redacted_copy(libdm_json_array_get(v, i), in_secret_object);
            if (!m || libdm_json_array_append(out, m) < 0)
                out = libdm_json_free(out);
        }
        return out;
    default:
        return libdm_json_copy(v, &out) < 0 ? NULL : out;
    }
}

int libdm__qmp_redact(const char *command, const libdm_json *arguments, libdm_json **ret_copy)
{
    bool secret_object = false;
    const char *t;
    libdm_json *copy;

    *ret_copy = NULL;
    if (!arguments || libdm_json_get_type(arguments) != LIBDM_JSON_OBJECT)
        return 0;
    if (!strcmp(command, "human-monitor-command")) {
        t = libdm_json_get_string(libdm_json_object_get(arguments, "command-line"));
        if (!t || !secret_hmp(t))
            return 0;
        copy = libdm_json_new_object();
        if (!copy || libdm_json_object_add(copy, "command-line",
                                           libdm_json_new_string(REDACTED)) < 0) {
            libdm_json_free(copy);
            return -ENOMEM;
        }
        *ret_copy = copy;
        return 1;
    }
    if (!strcmp(command, "object-add") || !strcmp(command, "object_add")) {
        t = libdm_json_get_string(libdm_json_object_get(arguments, "qom-type"));
        secret_object = t && !strncmp(t, "secret", 6);
    }
    if (!has_secret(arguments, secret_object))
        return 0;
    copy = redacted_copy(arguments, secret_object);
    if (!copy)
        return -ENOMEM;
    *ret_copy = copy;
    return 1;
}
