/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdm_dm_config: a validated description of one device model.
 *
 * Setters check everything that ends up on QEMU's command line, so that
 * build_argv never has to: a value can never be read as an option (nothing
 * may start with '-' where a value is expected) and never smuggle extra
 * option keys (names and machines exclude ','; paths are quoted by argv.c).
 * On any error the configuration is left exactly as it was.
 */
#include "internal.h"
#include "config-internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64
#define MACHINE_MAX_LEN 64
#define USER_MAX_LEN 32
#define PATH_MAX_LEN 4095
#define URI_MAX_LEN 4095

/* ---- validation ---- */

static bool is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* 1..@max characters of [A-Za-z0-9_.-], not starting with '.' or '-'. */
static bool valid_token(const char *s, size_t max)
{
    size_t i;

    if (!s[0] || s[0] == '.' || s[0] == '-')
        return false;
    for (i = 0; s[i]; i++)
        if (i >= max || !is_token_char(s[i]))
            return false;
    return true;
}

static bool valid_name(const char *s)
{
    return valid_token(s, NAME_MAX_LEN);
}

static bool valid_machine(const char *s)
{
    return valid_token(s, MACHINE_MAX_LEN);
}

/* [a-z_][a-z0-9_-]{0,31}: the portable subset of user names. */
static bool valid_user_name(const char *s)
{
    size_t i;

    if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (i = 1; s[i]; i++) {
        char c = s[i];

        if (i >= USER_MAX_LEN)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A canonical decimal id ending at @end: no sign, no leading zero. QEMU
 * reads "-runas uid:gid" with strtoul base 0, so "010" would mean 8 and
 * "0x10" 16: only the unambiguous spelling is let through. (uid_t)-1 is
 * refused as QEMU does, and so is 0: a DM never runs as root. */
static bool valid_id(const char *s, const char *end)
{
    uint64_t v = 0;
    const char *p;

    if (s == end || end - s > 10 || s[0] == '0')
        return false;
    for (p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v < UINT32_MAX;
}

static bool valid_uid_gid(const char *s)
{
    const char *colon = strchr(s, ':');

    return colon && valid_id(s, colon) && valid_id(colon + 1, colon + 1 + strlen(colon + 1));
}

static bool valid_runas(const char *s)
{
    /* Other names of uid 0 are refused at start, once resolved. */
    if (strcmp(s, "root") == 0)
        return false;
    return valid_user_name(s) || valid_uid_gid(s);
}

/* Absolute, so it can never look like an option. */
static bool valid_abs_path(const char *s)
{
    return s[0] == '/' && strnlen(s, PATH_MAX_LEN + 1) <= PATH_MAX_LEN;
}

/* "defer", or one of the transports QEMU 7.2 accepts followed by something. */
static bool valid_incoming(const char *s)
{
    static const char *const prefixes[] = { "unix:", "tcp:", "fd:", "exec:" };
    size_t i;

    if (strnlen(s, URI_MAX_LEN + 1) > URI_MAX_LEN)
        return false;
    if (strcmp(s, "defer") == 0)
        return true;
    for (i = 0; i < LIBDM__ARRAY_SIZE(prefixes); i++) {
        size_t n = strlen(prefixes[i]);

        if (strncmp(s, prefixes[i], n) == 0)
            return s[n] != '\0';
    }
    return false;
}

/* Replaces *slot by a copy of @value (NULL clears it) if @valid accepts it. */
static int set_string(char **slot, const char *value, bool (*valid)(const char *))
{
    char *copy = NULL;

    if (value) {
        if (!valid(value))
            return -EINVAL;
        copy = strdup(value);
        if (!copy)
            return -ENOMEM;
    }
    free(*slot);
    *slot = copy;
    return 0;
}

/* ---- lifecycle ---- */

int libdm_dm_config_new(libdm_dm_config **ret_config)
{
    libdm_dm_config *c;

    if (!ret_config)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->extra_args = calloc(1, sizeof(char *));
    if (!c->extra_args) {
        free(c);
        return -ENOMEM;
    }
    libdm__devices_init(&c->dev);
    c->profile = LIBDM_PROFILE_PLAIN;
    c->timeout_ms = LIBDM__DEFAULT_TIMEOUT_MS;
    *ret_config = c;
    return 0;
}

libdm_dm_config *libdm_dm_config_free(libdm_dm_config *config)
{
    if (!config)
        return NULL;
    free(config->name);
    free(config->machine);
    free(config->runas);
    free(config->chroot_dir);
    free(config->incoming);
    free(config->qemu_path);
    libdm_strv_free(config->extra_args);
    libdm_strv_free(config->extra_args_hvm);
    for (size_t i = 0; i < config->n_pass_fds; i++)
        libdm__close(&config->pass_fds[i]);
    libdm__devices_clear(&config->dev);
    libdm__config_adopt_free(config);
    free(config);
    return NULL;
}

/* ---- setters ---- */

int libdm_dm_config_set_name(libdm_dm_config *config, const char *name)
{
    if (!config)
        return -EINVAL;
    return set_string(&config->name, name, valid_name);
}

int libdm_dm_config_set_domid(libdm_dm_config *config, uint32_t domid)
{
    if (!config || domid > LIBDM__MAX_DOMID)
        return -EINVAL;
    config->domid = domid;
    return 0;
}

int libdm_dm_config_set_profile(libdm_dm_config *config, libdm_profile profile)
{
    if (!config || (profile != LIBDM_PROFILE_PLAIN && profile != LIBDM_PROFILE_XEN))
        return -EINVAL;
    config->profile = profile;
    return 0;
}

int libdm_dm_config_set_memory_mb(libdm_dm_config *config, uint64_t mb)
{
    if (!config || mb < 1 || mb > LIBDM__MAX_MEMORY_MB)
        return -EINVAL;
    config->memory_mb = mb;
    return 0;
}

int libdm_dm_config_set_maxmem_mb(libdm_dm_config *config, uint64_t mb)
{
    if (!config || mb > LIBDM__MAX_MEMORY_MB)
        return -EINVAL;
    config->maxmem_mb = mb;
    return 0;
}

int libdm_dm_config_set_machine(libdm_dm_config *config, const char *machine)
{
    if (!config)
        return -EINVAL;
    return set_string(&config->machine, machine, valid_machine);
}

int libdm_dm_config_set_restrict(libdm_dm_config *config, int enable)
{
    if (!config)
        return -EINVAL;
    config->restricted = enable != 0;
    return 0;
}

int libdm_dm_config_set_runas(libdm_dm_config *config, const char *user)
{
    if (!config)
        return -EINVAL;
    return set_string(&config->runas, user, valid_runas);
}

int libdm_dm_config_set_chroot(libdm_dm_config *config, const char *dir)
{
    if (!config)
        return -EINVAL;
    return set_string(&config->chroot_dir, dir, valid_abs_path);
}

int libdm_dm_config_set_seccomp(libdm_dm_config *config, libdm_seccomp mode)
{
    if (!config || (mode != LIBDM_SECCOMP_AUTO && mode != LIBDM_SECCOMP_QEMU &&
                    mode != LIBDM_SECCOMP_FILTER))
        return -EINVAL;
    config->seccomp = mode;
    return 0;
}

int libdm_dm_config_set_incoming(libdm_dm_config *config, const char *uri)
{
    if (!config)
        return -EINVAL;
    return set_string(&config->incoming, uri, valid_incoming);
}

int libdm_dm_config_set_qemu_path(libdm_dm_config *config, const char *path)
{
    if (!config)
        return -EINVAL;
    return set_string(&config->qemu_path, path, valid_abs_path);
}

static int append_arg(char ***v, size_t *n, const char *arg)
{
    char **grown;
    char *copy;

    if (!arg || !arg[0])
        return -EINVAL;
    copy = strdup(arg);
    if (!copy)
        return -ENOMEM;
    grown = realloc(*v, (*n + 2) * sizeof(*grown));
    if (!grown) {
        free(copy);
        return -ENOMEM;
    }
    grown[(*n)++] = copy;
    grown[*n] = NULL;
    *v = grown;
    return 0;
}

int libdm_dm_config_add_extra_arg(libdm_dm_config *config, const char *arg)
{
    return config ? append_arg(&config->extra_args, &config->n_extra_args, arg) : -EINVAL;
}

int libdm_dm_config_add_extra_arg_hvm(libdm_dm_config *config, const char *arg)
{
    return config ? append_arg(&config->extra_args_hvm, &config->n_extra_args_hvm, arg)
                  : -EINVAL;
}

int libdm_dm_config_set_timeout_ms(libdm_dm_config *config, int timeout_ms)
{
    /* No "wait forever": a DM that never answers must not hang its caller. */
    if (!config || timeout_ms <= 0)
        return -EINVAL;
    config->timeout_ms = timeout_ms;
    return 0;
}

/* ---- internal helpers ---- */

static int dup_opt(const char *s, char **ret)
{
    *ret = NULL;
    if (!s)
        return 0;
    *ret = strdup(s);
    return *ret ? 0 : -ENOMEM;
}

static int copy_strv(char *const *src, size_t n, char ***ret, size_t *ret_n)
{
    *ret = calloc(n + 1, sizeof(char *));
    if (!*ret)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        (*ret)[i] = strdup(src[i]);
        if (!(*ret)[i])
            return -ENOMEM;
        *ret_n = i + 1;
    }
    return 0;
}

static int copy_extra_args(const libdm_dm_config *src, libdm_dm_config *dst)
{
    int r = copy_strv(src->extra_args, src->n_extra_args, &dst->extra_args, &dst->n_extra_args);

    if (r >= 0 && src->n_extra_args_hvm)
        r = copy_strv(src->extra_args_hvm, src->n_extra_args_hvm, &dst->extra_args_hvm,
                      &dst->n_extra_args_hvm);
    return r;
}

int libdm__config_copy(const libdm_dm_config *src, libdm_dm_config **ret)
{
    libdm_dm_config *c;
    int r = 0;

    if (!src || !ret)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = *src;
    /* Detach every pointer first so a partial copy frees only what it owns. */
    c->name = c->machine = c->runas = c->chroot_dir = c->incoming = c->qemu_path = NULL;
    c->extra_args = c->extra_args_hvm = NULL;
    c->n_extra_args = c->n_extra_args_hvm = 0;
    c->adopt_argv = NULL;
    c->has_log_fd = false;
    c->n_pass_fds = 0;
    libdm__devices_init(&c->dev);
    for (size_t i = 0; r == 0 && i < src->n_pass_fds; i++) {
        c->pass_fds[i] = fcntl(src->pass_fds[i], F_DUPFD_CLOEXEC, 3);
        if (c->pass_fds[i] < 0)
            r = -errno;
        else
            c->n_pass_fds = i + 1;
    }
    r = r ? r : dup_opt(src->name, &c->name);
    r = r ? r : dup_opt(src->machine, &c->machine);
    r = r ? r : dup_opt(src->runas, &c->runas);
    r = r ? r : dup_opt(src->chroot_dir, &c->chroot_dir);
    r = r ? r : dup_opt(src->incoming, &c->incoming);
    r = r ? r : dup_opt(src->qemu_path, &c->qemu_path);
    r = r ? r : copy_extra_args(src, c);
    r = r ? r : libdm__devices_copy(&src->dev, &c->dev);
    r = r ? r : libdm__config_adopt_copy(src, c);
    if (r < 0) {
        libdm_dm_config_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

const char *libdm__config_qemu_path(const libdm_dm_config *config)
{
    if (config->qemu_path)
        return config->qemu_path;
    return config->profile == LIBDM_PROFILE_XEN ? LIBDM_DEFAULT_XEN_QEMU : LIBDM_DEFAULT_QEMU;
}

const char *libdm__config_machine(const libdm_dm_config *config)
{
    if (config->machine)
        return config->machine;
    return config->profile == LIBDM_PROFILE_XEN ? LIBDM__XEN_MACHINE : LIBDM__PLAIN_MACHINE;
}

uint64_t libdm__config_memory_mb(const libdm_dm_config *config)
{
    /* "-machine none" has no RAM to size: -m would only be noise. */
    if (strcmp(libdm__config_machine(config), "none") == 0)
        return 0;
    if (config->memory_mb)
        return config->memory_mb;
    return config->profile == LIBDM_PROFILE_XEN ? LIBDM__XEN_MEMORY_MB : LIBDM__PLAIN_MEMORY_MB;
}

int libdm__config_chroot_dir(const libdm_dm_config *config, char **ret_dir)
{
    char *dir = NULL;

    if (!config->restricted) {
        *ret_dir = NULL;
        return 0;
    }
    if (config->chroot_dir) {
        dir = strdup(config->chroot_dir);
    } else if (config->profile == LIBDM_PROFILE_XEN) {
        /* libxl's layout, so xen tooling finds (and cleans) the same place. */
        dir = libdm__sprintf("%s/qemu-root-%" PRIu32, LIBDM__XEN_RUN_DIR, config->domid);
    } else {
        *ret_dir = NULL;
        return 0;
    }
    if (!dir)
        return -ENOMEM;
    *ret_dir = dir;
    return 0;
}

const char *libdm__profile_to_string(libdm_profile profile)
{
    return profile == LIBDM_PROFILE_XEN ? "xen" : "plain";
}
