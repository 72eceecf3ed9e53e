/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON values: a small tree, a bounded parser on yajl's streaming API, and a
 * generator on yajl_gen.
 *
 * The text parsed here comes from the device model, which is untrusted: the
 * size is checked before parsing, and depth and value count are enforced in
 * the yajl callbacks as the tree is built (yajl itself has no depth limit).
 * yajl validates UTF-8 in strings; embedded NULs are kept with their length.
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

struct libdm_json {
    libdm_json_type type;
    union {
        int boolean;
        struct {
            int64_t i;
            char *text; /* non-integers keep their text, NULL for integers */
        } num;
        struct {
            char *s;
            size_t len;
        } str;
        struct {
            libdm_json **items;
            char **keys; /* objects only */
            size_t len, cap;
        } c;
    } u;
};

const libdm__json_limits libdm__json_default_limits = {
    .max_bytes = 10u << 20,
    .max_depth = 128,
    .max_values = 1000000,
};

/* ---- construction and destruction ---- */

static libdm_json *new_value(libdm_json_type type)
{
    libdm_json *v = calloc(1, sizeof(*v));

    if (v)
        v->type = type;
    return v;
}

libdm_json *libdm_json_free(libdm_json *v)
{
    if (!v)
        return NULL;
    switch (v->type) {
    case LIBDM_JSON_NUMBER:
        free(v->u.num.text);
        break;
    case LIBDM_JSON_STRING:
        free(v->u.str.s);
        break;
    case LIBDM_JSON_ARRAY:
    case LIBDM_JSON_OBJECT:
        for (size_t i = 0; i < v->u.c.len; i++) {
            libdm_json_free(v->u.c.items[i]);
            if (v->u.c.keys)
                free(v->u.c.keys[i]);
        }
        free(v->u.c.items);
        free(v->u.c.keys);
        break;
    default:
        break;
    }
    free(v);
    return NULL;
}

libdm_json *libdm_json_new_null(void)
{
    return new_value(LIBDM_JSON_NULL);
}

libdm_json *libdm_json_new_bool(int b)
{
    libdm_json *v = new_value(LIBDM_JSON_BOOL);

    if (v)
        v->u.boolean = !!b;
    return v;
}

libdm_json *libdm_json_new_int(int64_t i)
{
    libdm_json *v = new_value(LIBDM_JSON_NUMBER);

    if (v)
        v->u.num.i = i;
    return v;
}

static libdm_json *new_string_len(const char *s, size_t len)
{
    libdm_json *v = new_value(LIBDM_JSON_STRING);

    if (!v)
        return NULL;
    v->u.str.s = malloc(len + 1);
    if (!v->u.str.s)
        return libdm_json_free(v);
    memcpy(v->u.str.s, s, len);
    v->u.str.s[len] = '\0';
    v->u.str.len = len;
    return v;
}

libdm_json *libdm_json_new_string(const char *s)
{
    return s ? new_string_len(s, strlen(s)) : NULL;
}

libdm_json *libdm_json_new_array(void)
{
    return new_value(LIBDM_JSON_ARRAY);
}

libdm_json *libdm_json_new_object(void)
{
    libdm_json *v = new_value(LIBDM_JSON_OBJECT);

    return v;
}

/* Appends @member (and @key for objects), taking ownership of both. */
static int container_push(libdm_json *c, char *key, libdm_json *member)
{
    if (c->u.c.len == c->u.c.cap) {
        size_t cap = c->u.c.cap ? c->u.c.cap * 2 : 4;
        libdm_json **items = realloc(c->u.c.items, cap * sizeof(*items));
        if (!items)
            goto nomem;
        c->u.c.items = items;
        if (c->type == LIBDM_JSON_OBJECT) {
            char **keys = realloc(c->u.c.keys, cap * sizeof(*keys));
            if (!keys)
                goto nomem;
            c->u.c.keys = keys;
        }
        c->u.c.cap = cap;
    }
    c->u.c.items[c->u.c.len] = member;
    if (c->type == LIBDM_JSON_OBJECT)
        c->u.c.keys[c->u.c.len] = key;
    c->u.c.len++;
    return 0;
nomem:
    free(key);
    libdm_json_free(member);
    return -ENOMEM;
}

int libdm_json_object_add(libdm_json *object, const char *key, libdm_json *member)
{
    char *k;

    if (!object || object->type != LIBDM_JSON_OBJECT || !key || !member) {
        libdm_json_free(member);
        return -EINVAL;
    }
    k = strdup(key);
    if (!k) {
        libdm_json_free(member);
        return -ENOMEM;
    }
    return container_push(object, k, member);
}

int libdm_json_array_append(libdm_json *array, libdm_json *member)
{
    if (!array || array->type != LIBDM_JSON_ARRAY || !member) {
        libdm_json_free(member);
        return -EINVAL;
    }
    return container_push(array, NULL, member);
}

/* ---- accessors ---- */

libdm_json_type libdm_json_get_type(const libdm_json *v)
{
    return v ? v->type : LIBDM_JSON_NULL;
}

const char *libdm_json_get_string(const libdm_json *v)
{
    return v && v->type == LIBDM_JSON_STRING ? v->u.str.s : NULL;
}

int libdm_json_get_int(const libdm_json *v, int64_t *ret)
{
    if (!v || v->type != LIBDM_JSON_NUMBER || v->u.num.text)
        return -EINVAL;
    *ret = v->u.num.i;
    return 0;
}

/* A JSON number as a double, whatever its form ("123", "-1.5", "2e3"),
 * parsed without the locale (strtod's decimal point is the locale's). */
int libdm__json_get_double(const libdm_json *v, double *ret)
{
    const char *p;
    double x = 0, scale = 1;
    int sign = 1, esign = 1, e = 0;

    if (!v || v->type != LIBDM_JSON_NUMBER)
        return -EINVAL;
    if (!v->u.num.text) {
        *ret = (double)v->u.num.i;
        return 0;
    }
    p = v->u.num.text;
    if (*p == '-') {
        sign = -1;
        p++;
    }
    for (; *p >= '0' && *p <= '9'; p++)
        x = x * 10 + (*p - '0');
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            x += (*p - '0') * (scale /= 10);
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            esign = *p++ == '-' ? -1 : 1;
        for (; *p >= '0' && *p <= '9' && e < 400; p++)
            e = e * 10 + (*p - '0');
        for (; e > 0; e--)
            x = esign > 0 ? x * 10 : x / 10;
    }
    if (*p)
        return -EINVAL;
    *ret = sign * x;
    return 0;
}

int libdm_json_get_bool(const libdm_json *v, int *ret)
{
    if (!v || v->type != LIBDM_JSON_BOOL)
        return -EINVAL;
    *ret = v->u.boolean;
    return 0;
}

static bool is_container(const libdm_json *v)
{
    return v && (v->type == LIBDM_JSON_ARRAY || v->type == LIBDM_JSON_OBJECT);
}

size_t libdm_json_length(const libdm_json *v)
{
    return is_container(v) ? v->u.c.len : 0;
}

const libdm_json *libdm_json_object_get(const libdm_json *o, const char *key)
{
    if (!o || o->type != LIBDM_JSON_OBJECT || !key)
        return NULL;
    for (size_t i = 0; i < o->u.c.len; i++)
        if (!strcmp(o->u.c.keys[i], key))
            return o->u.c.items[i];
    return NULL;
}

const char *libdm_json_object_key_at(const libdm_json *o, size_t i)
{
    return o && o->type == LIBDM_JSON_OBJECT && i < o->u.c.len ? o->u.c.keys[i] : NULL;
}

const libdm_json *libdm_json_object_value_at(const libdm_json *o, size_t i)
{
    return o && o->type == LIBDM_JSON_OBJECT && i < o->u.c.len ? o->u.c.items[i] : NULL;
}

const libdm_json *libdm_json_array_get(const libdm_json *a, size_t i)
{
    return a && a->type == LIBDM_JSON_ARRAY && i < a->u.c.len ? a->u.c.items[i] : NULL;
}

const char *libdm__json_get_str(const libdm_json *object, const char *key)
{
    return libdm_json_get_string(libdm_json_object_get(object, key));
}

libdm_json *libdm__json_detach(libdm_json *o, const char *key)
{
    if (!o || o->type != LIBDM_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < o->u.c.len; i++) {
        if (strcmp(o->u.c.keys[i], key))
            continue;
        libdm_json *v = o->u.c.items[i];
        free(o->u.c.keys[i]);
        o->u.c.len--;
        memmove(&o->u.c.items[i], &o->u.c.items[i + 1], (o->u.c.len - i) * sizeof(*o->u.c.items));
        memmove(&o->u.c.keys[i], &o->u.c.keys[i + 1], (o->u.c.len - i) * sizeof(*o->u.c.keys));
        return v;
    }
    return NULL;
}

/* ---- bounded parser ---- */

typedef struct parser {
    const libdm__json_limits *limits;
    libdm_json *root;
    libdm_json **stack; /* open containers */
    unsigned depth;
    char *key;          /* pending object key */
    size_t values;
    const char *why;
    int err;            /* set with why by a callback that stops the parse */
} parser;

static int fail(parser *p, int err, const char *why)
{
    p->err = err;
    p->why = why;
    return 0;
}

static int attach(parser *p, libdm_json *v)
{
    libdm_json *top;
    char *key;

    if (!v)
        return fail(p, -ENOMEM, "out of memory");
    if (++p->values > p->limits->max_values) {
        libdm_json_free(v);
        return fail(p, -E2BIG, "too many values in one message");
    }
    if (p->depth == 0) {
        if (p->root) {
            libdm_json_free(v);
            return fail(p, -EINVAL, "more than one JSON value");
        }
        p->root = v;
        return 1;
    }
    top = p->stack[p->depth - 1];
    key = p->key;
    p->key = NULL;
    if (top->type == LIBDM_JSON_OBJECT && !key) {
        libdm_json_free(v);
        return fail(p, -EINVAL, "object member without key");
    }
    if (container_push(top, key, v) < 0)
        return fail(p, -ENOMEM, "out of memory");
    return 1;
}

static int cb_null(void *ctx)
{
    return attach(ctx, libdm_json_new_null());
}

static int cb_boolean(void *ctx, int b)
{
    return attach(ctx, libdm_json_new_bool(b));
}

static int cb_number(void *ctx, const char *s, size_t len)
{
    char buf[64], *end;
    long long ll;
    libdm_json *v;

    v = new_value(LIBDM_JSON_NUMBER);
    if (v && len < sizeof(buf)) {
        memcpy(buf, s, len);
        buf[len] = '\0';
        errno = 0;
        ll = strtoll(buf, &end, 10);
        if (errno == 0 && *end == '\0') {
            v->u.num.i = ll;
            return attach(ctx, v);
        }
    }
    /* Not an int64 (fraction, exponent, huge): keep the exact text. */
    if (v && !(v->u.num.text = strndup(s, len)))
        v = libdm_json_free(v);
    return attach(ctx, v);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    return attach(ctx, new_string_len((const char *)s, len));
}

static int open_container(parser *p, libdm_json_type type)
{
    libdm_json *v;

    if (p->depth >= p->limits->max_depth)
        return fail(p, -E2BIG, "JSON nesting too deep");
    v = new_value(type);
    if (!attach(p, v))
        return 0;
    p->stack[p->depth++] = v;
    return 1;
}

static int cb_start_map(void *ctx)
{
    return open_container(ctx, LIBDM_JSON_OBJECT);
}

static int cb_start_array(void *ctx)
{
    return open_container(ctx, LIBDM_JSON_ARRAY);
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
    parser *p = ctx;

    free(p->key);
    p->key = strndup((const char *)s, len);
    return p->key ? 1 : fail(p, -ENOMEM, "out of memory");
}

static int cb_end(void *ctx)
{
    parser *p = ctx;

    p->depth--;
    return 1;
}

static const yajl_callbacks parser_callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

int libdm__json_parse_bounded(const char *text, size_t len, const libdm__json_limits *limits,
                              libdm_json **ret_value, const char **ret_why)
{
    parser p = { .limits = limits };
    yajl_handle h;
    yajl_status st;
    int r = 0;

    if (len > limits->max_bytes) {
        *ret_why = "JSON message too large";
        return -E2BIG;
    }
    p.stack = malloc((limits->max_depth ? limits->max_depth : 1) * sizeof(*p.stack));
    h = yajl_alloc(&parser_callbacks, NULL, &p);
    if (!p.stack || !h) {
        fail(&p, -ENOMEM, "out of memory");
        r = p.err;
        goto out;
    }
    st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st != yajl_status_ok || !p.root) {
        if (!p.err)
            fail(&p, -EINVAL, "malformed JSON");
        r = p.err;
    }
out:
    if (h)
        yajl_free(h);
    free(p.stack);
    free(p.key);
    if (r < 0) {
        libdm_json_free(p.root);
        *ret_why = p.why;
        return r;
    }
    *ret_value = p.root;
    return 0;
}

int libdm_json_parse(const char *text, size_t len, libdm_json **ret_value)
{
    const char *why;

    return libdm__json_parse_bounded(text, len, &libdm__json_default_limits, ret_value, &why);
}

/* ---- generator ---- */

static yajl_gen_status gen_value(yajl_gen g, const libdm_json *v)
{
    yajl_gen_status st;

    switch (v->type) {
    case LIBDM_JSON_NULL:
        return yajl_gen_null(g);
    case LIBDM_JSON_BOOL:
        return yajl_gen_bool(g, v->u.boolean);
    case LIBDM_JSON_NUMBER:
        if (v->u.num.text)
            return yajl_gen_number(g, v->u.num.text, strlen(v->u.num.text));
        return yajl_gen_integer(g, v->u.num.i);
    case LIBDM_JSON_STRING:
        return yajl_gen_string(g, (const unsigned char *)v->u.str.s, v->u.str.len);
    case LIBDM_JSON_ARRAY:
        st = yajl_gen_array_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->u.c.len; i++)
            st = gen_value(g, v->u.c.items[i]);
        return st == yajl_gen_status_ok ? yajl_gen_array_close(g) : st;
    case LIBDM_JSON_OBJECT:
        st = yajl_gen_map_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->u.c.len; i++) {
            const char *k = v->u.c.keys[i];
            st = yajl_gen_string(g, (const unsigned char *)k, strlen(k));
            if (st == yajl_gen_status_ok)
                st = gen_value(g, v->u.c.items[i]);
        }
        return st == yajl_gen_status_ok ? yajl_gen_map_close(g) : st;
    }
    return yajl_gen_invalid_string;
}

static yajl_gen new_gen(bool pretty)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    if (g) {
        yajl_gen_config(g, yajl_gen_beautify, pretty ? 1 : 0);
        yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    }
    return g;
}

/* Copies the generator's buffer, plus an optional trailing newline. */
static int gen_take(yajl_gen g, yajl_gen_status st, bool newline, char **ret, size_t *ret_len)
{
    const unsigned char *buf;
    size_t len;
    char *s;

    if (st != yajl_gen_status_ok)
        return st == yajl_gen_invalid_string ? -EILSEQ : -EINVAL;
    yajl_gen_get_buf(g, &buf, &len);
    s = malloc(len + 2);
    if (!s)
        return -ENOMEM;
    memcpy(s, buf, len);
    if (newline)
        s[len++] = '\n';
    s[len] = '\0';
    *ret = s;
    if (ret_len)
        *ret_len = len;
    return 0;
}

int libdm_json_to_string(const libdm_json *v, int pretty, char **ret_text)
{
    yajl_gen g;
    int r;

    if (!v)
        return -EINVAL;
    g = new_gen(pretty);
    if (!g)
        return -ENOMEM;
    r = gen_take(g, gen_value(g, v), false, ret_text, NULL);
    yajl_gen_free(g);
    return r;
}

int libdm_json_copy(const libdm_json *v, libdm_json **ret_copy)
{
    char *text;
    int r;

    /* Round trip through text: simple, and copies are rare (blocking calls). */
    r = libdm_json_to_string(v, 0, &text);
    if (r < 0)
        return r;
    r = libdm_json_parse(text, strlen(text), ret_copy);
    free(text);
    return r;
}

static yajl_gen_status gen_cstr(yajl_gen g, const char *s)
{
    return yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

int libdm__json_qmp_command(const char *execute, const libdm_json *arguments, const char *id,
                            bool oob, char **ret_text, size_t *ret_len)
{
    yajl_gen_status st;
    yajl_gen g;
    int r;

    if (arguments && arguments->type != LIBDM_JSON_OBJECT)
        return -EINVAL;
    g = new_gen(false);
    if (!g)
        return -ENOMEM;
    st = yajl_gen_map_open(g);
    if (st == yajl_gen_status_ok)
        st = gen_cstr(g, oob ? "exec-oob" : "execute");
    if (st == yajl_gen_status_ok)
        st = gen_cstr(g, execute);
    if (st == yajl_gen_status_ok && arguments) {
        st = gen_cstr(g, "arguments");
        if (st == yajl_gen_status_ok)
            st = gen_value(g, arguments);
    }
    if (st == yajl_gen_status_ok)
        st = gen_cstr(g, "id");
    if (st == yajl_gen_status_ok)
        st = gen_cstr(g, id);
    if (st == yajl_gen_status_ok)
        st = yajl_gen_map_close(g);
    r = gen_take(g, st, true, ret_text, ret_len);
    yajl_gen_free(g);
    return r;
}
