/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The logged form of a QMP command: every value that may carry a secret
 * (the VNC/SPICE password of set_password and change-vnc-password, the
 * "data" of an object-add secret, any member whose name holds "password" or
 * "passphrase", at any depth) shows as "<redacted>". The command sent is
 * unchanged; only what reaches a logger is. */
#include "config.h"

#include "qmp-internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REDACTED "<redacted>"

static int secret_key(const char *key, int in_object_add)
{
    static const char *const words[] = { "password", "passwd", "passphrase", "secret-data", NULL };

    for (size_t i = 0; words[i]; i++)
        if (strcasestr(key, words[i]))
            return 1;
    /* object-add's "data" is the secret's value (qom-type secret,
     * secret_keyring...); "iv" and "keyid" are not secrets but data is. */
    return in_object_add && (!strcmp(key, "data") || !strcmp(key, "key"));
}

static libdm_json *redacted_copy(const libdm_json *v, int in_object_add)
{
    libdm_json *out;

    switch (libdm_json_get_type(v)) {
    case LIBDM_JSON_OBJECT:
        if (!(out = libdm_json_new_object()))
            return NULL;
        for (size_t i = 0; i < libdm_json_length(v); i++) {
            const char *k = libdm_json_object_key_at(v, i);
            const libdm_json *m = libdm_json_object_value_at(v, i);
            libdm_json *c = secret_key(k, in_object_add) ? libdm_json_new_string(REDACTED)
                                                         : redacted_copy(m, in_object_add);

            if (!c || libdm_json_object_add(out, k, c) < 0)
                return libdm_json_free(out);
        }
        return out;
    case LIBDM_JSON_ARRAY:
        if (!(out = libdm_json_new_array()))
            return NULL;
        for (size_t i = 0; i < libdm_json_length(v); i++) {
            libdm_json *c = redacted_copy(libdm_json_array_get(v, i), in_object_add);

            if (!c || libdm_json_array_append(out, c) < 0)
                return libdm_json_free(out);
        }
        return out;
    default:
        return libdm_json_copy(v, &out) < 0 ? NULL : out;
    }
}

int libdm__qmp_redact_json(const libdm_json *msg, char **ret_text)
{
    const char *cmd = libdm_json_get_string(libdm_json_object_get(msg, "execute"));
    libdm_json *copy;
    int r;

    *ret_text = NULL;
    if (!cmd)
        cmd = libdm_json_get_string(libdm_json_object_get(msg, "exec-oob"));
    copy = redacted_copy(msg, cmd && !strcmp(cmd, "object-add"));
    if (!copy)
        return -ENOMEM;
    r = libdm_json_to_string(copy, 0, ret_text);
    libdm_json_free(copy);
    return r;
}

int libdm__qmp_redact(const char *text, size_t len, char **ret_text)
{
    libdm_json *msg = NULL;
    int r;

    *ret_text = NULL;
    r = libdm_json_parse(text, len, &msg);
    if (r < 0)
        return r;
    r = libdm__qmp_redact_json(msg, ret_text);
    libdm_json_free(msg);
    return r;
}
