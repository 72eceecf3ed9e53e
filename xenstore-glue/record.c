/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Records and their "dir" text format.
 *
 * A record is "key=value\n" lines. Values escape '\\' as "\\\\", newline as
 * "\\n" and NUL as "\\0"; no other escape exists. The parser reads input
 * written by other processes (and is fuzzed): it is bounded
 * (LIBDM__RECORD_MAX bytes), strict (every line ends in '\n', keys are
 * [a-z0-9-]+, known keys appear at most once, numbers are canonical
 * decimal in range, strings are checked) and leaves *ret untouched on any
 * failure. Unknown keys are skipped (their values must still be well
 * escaped), so that newer writers stay readable.
 *
 * Every field goes through one table and one validator, used by the text
 * parser, by the formatter and by the xenstore backend alike.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-internal.h"

enum field_type {
    T_NAME,  /* char *, libdm__record_check_name() */
    T_PATH,  /* char *, absolute, <= LIBDM__RECORD_PATH_MAX bytes */
    T_TOKEN, /* char *, [a-z0-9_-]{1,32} */
    T_TEXT,  /* char *, printable ASCII, 1..LIBDM__RECORD_TEXT_MAX bytes */
    T_U32,   /* uint32_t */
    T_INT,   /* int */
    T_U64,   /* uint64_t */
    T_I64,   /* int64_t */
};

struct field {
    const char *key;
    enum field_type type;
    size_t offset;
    int64_t min; /* numbers: inclusive range */
    uint64_t max;
};

#define F(k, t, m, lo, hi) { k, t, offsetof(libdm__record, m), lo, hi }
static const struct field fields[LIBDM__F_COUNT] = {
    [LIBDM__F_NAME] = F("name", T_NAME, name, 0, 0),
    [LIBDM__F_DOMID] = F("domid", T_U32, domid, 0, LIBDM__DOMID_MAX),
    [LIBDM__F_PID] = F("pid", T_INT, pid, 0, INT_MAX),
    [LIBDM__F_PID_START] = F("pid-start", T_U64, pid_start, 0, UINT64_MAX),
    [LIBDM__F_KEEPER_PID] = F("keeper-pid", T_INT, keeper_pid, 0, INT_MAX),
    [LIBDM__F_KEEPER_START] = F("keeper-start", T_U64, keeper_start, 0, UINT64_MAX),
    [LIBDM__F_QMP_SOCKET] = F("qmp-socket", T_PATH, qmp_socket, 0, 0),
    [LIBDM__F_DIR] = F("dir", T_PATH, dir, 0, 0),
    [LIBDM__F_PROFILE] = F("profile", T_TOKEN, profile, 0, 0),
    [LIBDM__F_STATE] = F("state", T_TOKEN, state, 0, 0),
    [LIBDM__F_CREATED_MS] = F("created-ms", T_I64, created_ms, 0, INT64_MAX),
    [LIBDM__F_EXIT_STATUS] = F("exit-status", T_INT, exit_status, -1, 65535),
    /* Machine names follow the same rule as DM names: [A-Za-z0-9_.-]. */
    [LIBDM__F_MACHINE] = F("machine", T_NAME, machine, 0, 0),
    [LIBDM__F_MEMORY_MB] = F("memory-mb", T_U64, memory_mb, 0, UINT64_C(1) << 20),
    /* dm_restrict in force, as libdm_dm_get_confinement() says it. */
    [LIBDM__F_CONFINEMENT] = F("confinement", T_TEXT, confinement, 0, 0),
    /* Emulated NICs and their taps (libdm_dm_get_nics()); optional. */
    [LIBDM__F_NICS] = F("nics", T_TEXT, nics, 0, 0),
};
#undef F

#define TOKEN_MAX 32
#define NAME_MAX_LEN 64
#define KEY_MAX 64
/* Longest canonical decimal we accept: UINT64_MAX has 20 digits. */
#define DIGITS_MAX 20

static bool is_string(enum field_type t)
{
    return t == T_NAME || t == T_PATH || t == T_TOKEN || t == T_TEXT;
}

static char **str_slot(libdm__record *rec, const struct field *f)
{
    return (char **)((char *)rec + f->offset);
}

static const char *str_get(const libdm__record *rec, const struct field *f)
{
    return *(char *const *)((const char *)rec + f->offset);
}

void libdm__record_init(libdm__record *rec)
{
    if (!rec)
        return;
    memset(rec, 0, sizeof(*rec));
    rec->exit_status = -1;
}

void libdm__record_clear(libdm__record *rec)
{
    if (!rec)
        return;
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++)
        if (is_string(fields[i].type))
            free(*str_slot(rec, &fields[i]));
    libdm__record_init(rec);
}

int libdm__record_copy(const libdm__record *src, libdm__record *ret)
{
    libdm__record tmp;

    if (!src || !ret)
        return -EINVAL;
    tmp = *src;
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++)
        if (is_string(fields[i].type))
            *str_slot(&tmp, &fields[i]) = NULL;
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++) {
        const char *s;

        if (!is_string(fields[i].type))
            continue;
        s = str_get(src, &fields[i]);
        if (s && !(*str_slot(&tmp, &fields[i]) = strdup(s))) {
            libdm__record_clear(&tmp);
            return -ENOMEM;
        }
    }
    *ret = tmp;
    return 0;
}

/* ---- validation ---- */

int libdm__record_check_name(const char *name)
{
    size_t n;

    if (!name)
        return -EINVAL;
    for (n = 0; name[n]; n++) {
        char c = name[n];

        if (n >= NAME_MAX_LEN)
            return -EINVAL;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return -EINVAL;
    }
    if (n == 0 || name[0] == '.' || name[0] == '-')
        return -EINVAL;
    return 0;
}

static int check_token(const char *s)
{
    size_t n;

    for (n = 0; s[n]; n++) {
        char c = s[n];

        if (n >= TOKEN_MAX)
            return -EINVAL;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return -EINVAL;
    }
    return n ? 0 : -EINVAL;
}

static int check_path(const char *s)
{
    if (s[0] != '/' || strnlen(s, LIBDM__RECORD_PATH_MAX + 1) > LIBDM__RECORD_PATH_MAX)
        return -EINVAL;
    return 0;
}

static int check_text(const char *s)
{
    size_t n;

    for (n = 0; s[n]; n++)
        if (n >= LIBDM__RECORD_TEXT_MAX || s[n] < 0x20 || s[n] > 0x7e)
            return -EINVAL;
    return n ? 0 : -EINVAL;
}

static int check_string(const struct field *f, const char *s)
{
    switch (f->type) {
    case T_NAME:
        return libdm__record_check_name(s);
    case T_PATH:
        return check_path(s);
    case T_TOKEN:
        return check_token(s);
    case T_TEXT:
        return check_text(s);
    default:
        return -EINVAL;
    }
}

int libdm__record_check_state(const char *state)
{
    return state ? check_token(state) : -EINVAL;
}

int libdm__record_check_exit_status(int status)
{
    const struct field *f = &fields[LIBDM__F_EXIT_STATUS];

    if (status < 0)
        return status >= f->min ? 0 : -EINVAL;
    return (uint64_t)status <= f->max ? 0 : -EINVAL;
}

/* A number as sign and magnitude, so that one range check serves every
 * numeric type. */
struct num {
    bool neg;
    uint64_t mag;
};

static bool num_in_range(const struct field *f, struct num n)
{
    if (n.neg)
        return n.mag != 0 && f->min < 0 && n.mag <= (uint64_t)(-(f->min + 1)) + 1;
    if (f->min > 0 && n.mag < (uint64_t)f->min)
        return false;
    return n.mag <= f->max;
}

static struct num num_get(const libdm__record *rec, const struct field *f)
{
    const char *p = (const char *)rec + f->offset;
    struct num n = { false, 0 };
    int64_t s = 0;

    switch (f->type) {
    case T_U32:
        n.mag = *(const uint32_t *)(const void *)p;
        return n;
    case T_U64:
        n.mag = *(const uint64_t *)(const void *)p;
        return n;
    case T_INT:
        s = *(const int *)(const void *)p;
        break;
    case T_I64:
        s = *(const int64_t *)(const void *)p;
        break;
    default:
        return n;
    }
    n.neg = s < 0;
    n.mag = n.neg ? (uint64_t)(-(s + 1)) + 1 : (uint64_t)s;
    return n;
}

/* Only called after num_in_range(), so every conversion is exact. */
static void num_set(libdm__record *rec, const struct field *f, struct num n)
{
    char *p = (char *)rec + f->offset;
    int64_t s = n.neg ? -(int64_t)(n.mag - 1) - 1 : (int64_t)n.mag;

    switch (f->type) {
    case T_U32:
        *(uint32_t *)(void *)p = (uint32_t)n.mag;
        break;
    case T_U64:
        *(uint64_t *)(void *)p = n.mag;
        break;
    case T_INT:
        *(int *)(void *)p = (int)s;
        break;
    case T_I64:
        *(int64_t *)(void *)p = s;
        break;
    default:
        break;
    }
}

/* Canonical decimal: optional '-' (only where the range allows it), no '+',
 * no blanks, no leading zeros, no overflow. */
static int num_parse(const struct field *f, const char *s, size_t len, struct num *ret)
{
    struct num n = { false, 0 };
    size_t i = 0;

    if (len > 0 && s[0] == '-') {
        n.neg = true;
        i = 1;
    }
    if (i == len || len - i > DIGITS_MAX)
        return -EINVAL;
    if (s[i] == '0' && len - i > 1)
        return -EINVAL;
    for (; i < len; i++) {
        unsigned d;

        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        d = (unsigned)(s[i] - '0');
        if (n.mag > (UINT64_MAX - d) / 10)
            return -EINVAL;
        n.mag = n.mag * 10 + d;
    }
    if (!num_in_range(f, n))
        return -EINVAL;
    *ret = n;
    return 0;
}

static int field_validate(const libdm__record *rec, const struct field *f)
{
    if (is_string(f->type)) {
        const char *s = str_get(rec, f);

        /* Every string may be absent but the record's own name. */
        if (!s)
            return f == &fields[LIBDM__F_NAME] ? -EINVAL : 0;
        return check_string(f, s);
    }
    return num_in_range(f, num_get(rec, f)) ? 0 : -EINVAL;
}

int libdm__record_validate(const libdm__record *rec)
{
    if (!rec)
        return -EINVAL;
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++)
        if (field_validate(rec, &fields[i]) < 0)
            return -EINVAL;
    return 0;
}

/* ---- escaping ---- */

/* Decodes @len bytes into a NUL-terminated malloc'd buffer; *ret_len is the
 * decoded length (it may contain NUL bytes from "\\0"). Raw NUL and newline
 * bytes are malformed. */
static int unescape(const char *in, size_t len, char **ret, size_t *ret_len)
{
    char *out;
    size_t o = 0;

    if (len > LIBDM__RECORD_MAX)
        return -EINVAL;
    out = malloc(len + 1);
    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];

        if (c == '\0' || c == '\n')
            goto bad;
        if (c == '\\') {
            if (++i == len)
                goto bad;
            switch (in[i]) {
            case '\\':
                c = '\\';
                break;
            case 'n':
                c = '\n';
                break;
            case '0':
                c = '\0';
                break;
            default:
                goto bad;
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
    *ret = out;
    *ret_len = o;
    return 0;
bad:
    free(out);
    return -EINVAL;
}

static char *escape(const char *s)
{
    size_t n = 0;
    char *out, *o;

    for (const char *p = s; *p; p++)
        n += (*p == '\\' || *p == '\n') ? 2 : 1;
    out = malloc(n + 1);
    if (!out)
        return NULL;
    o = out;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' || *p == '\n') {
            *o++ = '\\';
            *o++ = *p == '\n' ? 'n' : '\\';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* ---- field access ---- */

const char *libdm__record_key(unsigned field)
{
    return field < LIBDM__F_COUNT ? fields[field].key : NULL;
}

int libdm__record_lookup(const char *key, size_t len)
{
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++)
        if (strlen(fields[i].key) == len && memcmp(fields[i].key, key, len) == 0)
            return (int)i;
    return -1;
}

int libdm__record_set_value(libdm__record *rec, unsigned field, const char *value, size_t len)
{
    const struct field *f;
    char *text;
    size_t text_len;
    int r;

    if (!rec || field >= LIBDM__F_COUNT || (!value && len))
        return -EINVAL;
    f = &fields[field];
    r = unescape(value ? value : "", len, &text, &text_len);
    if (r < 0)
        return r;
    if (is_string(f->type)) {
        char **slot = str_slot(rec, f);

        /* An embedded NUL cannot be represented in a C string. */
        if (strlen(text) != text_len || check_string(f, text) < 0) {
            free(text);
            return -EINVAL;
        }
        free(*slot);
        *slot = text;
        return 0;
    } else {
        struct num n;

        r = strlen(text) == text_len ? num_parse(f, text, text_len, &n) : -EINVAL;
        free(text);
        if (r < 0)
            return r;
        num_set(rec, f, n);
        return 0;
    }
}

int libdm__record_get_value(const libdm__record *rec, unsigned field, char **ret_value)
{
    const struct field *f;
    char *out;

    if (!rec || field >= LIBDM__F_COUNT || !ret_value)
        return -EINVAL;
    f = &fields[field];
    if (field_validate(rec, f) < 0)
        return -EINVAL;
    if (is_string(f->type)) {
        const char *s = str_get(rec, f);

        if (!s)
            return -ENOENT;
        out = escape(s);
    } else {
        struct num n = num_get(rec, f);
        char buf[DIGITS_MAX + 2];

        snprintf(buf, sizeof(buf), "%s%" PRIu64, n.neg ? "-" : "", n.mag);
        out = strdup(buf);
    }
    if (!out)
        return -ENOMEM;
    *ret_value = out;
    return 0;
}

/* ---- the text format ---- */

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

int libdm__record_parse(const char *buf, size_t len, libdm__record *ret)
{
    libdm__record tmp;
    uint32_t seen = 0;
    const char *p, *end;
    int r = 0;

    if ((!buf && len) || !ret)
        return -EINVAL;
    if (len > LIBDM__RECORD_MAX)
        return -E2BIG;
    libdm__record_init(&tmp);
    p = buf;
    end = buf ? buf + len : buf;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eq;
        size_t klen;
        int idx;

        if (!nl || !(eq = memchr(p, '=', (size_t)(nl - p)))) {
            r = -EINVAL;
            goto out;
        }
        klen = (size_t)(eq - p);
        if (klen == 0 || klen > KEY_MAX) {
            r = -EINVAL;
            goto out;
        }
        for (size_t i = 0; i < klen; i++)
            if (!key_char(p[i])) {
                r = -EINVAL;
                goto out;
            }
        idx = libdm__record_lookup(p, klen);
        if (idx < 0) {
            /* Unknown key: skipped, but its value must be well formed. */
            char *junk;
            size_t junk_len;

            r = unescape(eq + 1, (size_t)(nl - eq - 1), &junk, &junk_len);
            if (r < 0)
                goto out;
            free(junk);
        } else {
            if (seen & (UINT32_C(1) << idx)) {
                r = -EINVAL;
                goto out;
            }
            seen |= UINT32_C(1) << idx;
            r = libdm__record_set_value(&tmp, (unsigned)idx, eq + 1, (size_t)(nl - eq - 1));
            if (r < 0)
                goto out;
        }
        p = nl + 1;
    }
    if (!(seen & (UINT32_C(1) << LIBDM__F_NAME)) || libdm__record_validate(&tmp) < 0) {
        r = -EINVAL;
        goto out;
    }
    *ret = tmp;
    return 0;
out:
    libdm__record_clear(&tmp);
    return r;
}

int libdm__record_format(const libdm__record *rec, char **ret_buf, size_t *ret_len)
{
    char *out;
    size_t len = 0;
    int r;

    if (!rec || !ret_buf)
        return -EINVAL;
    r = libdm__record_validate(rec);
    if (r < 0)
        return r;
    out = malloc(LIBDM__RECORD_MAX + 1);
    if (!out)
        return -ENOMEM;
    for (unsigned i = 0; i < LIBDM__F_COUNT; i++) {
        char *v;
        size_t klen = strlen(fields[i].key), vlen;

        r = libdm__record_get_value(rec, i, &v);
        if (r == -ENOENT)
            continue;
        if (r < 0)
            goto fail;
        vlen = strlen(v);
        if (klen + vlen + 2 > LIBDM__RECORD_MAX - len) {
            free(v);
            r = -E2BIG;
            goto fail;
        }
        memcpy(out + len, fields[i].key, klen);
        len += klen;
        out[len++] = '=';
        memcpy(out + len, v, vlen);
        len += vlen;
        out[len++] = '\n';
        free(v);
    }
    out[len] = '\0';
    *ret_buf = out;
    if (ret_len)
        *ret_len = len;
    return 0;
fail:
    free(out);
    return r;
}
