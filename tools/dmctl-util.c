/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dmctl: context set-up, error reporting, parsing and output helpers. */
#include "config.h"

#include <libdm/libdm.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmctl.h"

static char *join_path(const char *dir, const char *name);

/* ---- context ---- */

static xentoollog_level log_level(const dmctl *d)
{
    const char *v = getenv("LIBDM_LOG");

    if (d->verbose > 0)
        return XTL_DEBUG;
    if (v && strcmp(v, "debug") == 0)
        return XTL_DEBUG;
    if (v && strcmp(v, "info") == 0)
        return XTL_INFO;
    if (v && strcmp(v, "error") == 0)
        return XTL_ERROR;
    return XTL_WARN;
}

/* A store directory given by the user must exist: a typo must not become
 * a new, empty store. Only libdm's default run directory (/run/libdm for
 * root, $XDG_RUNTIME_DIR/libdm otherwise) may be created. */
static bool store_dir_may_be_made(const char *abs)
{
    const char *xdg = geteuid() == 0 ? "/run" : getenv("XDG_RUNTIME_DIR");
    size_t n = strlen(abs), x = xdg ? strlen(xdg) : 0;
    struct stat st;

    while (n > 1 && abs[n - 1] == '/')
        n--;
    if (xdg && n == x + 6 && !strncmp(abs, xdg, x) && !strncmp(abs + x, "/libdm", 6))
        return true;
    return lstat(abs, &st) == 0 || errno != ENOENT;
}

/* "xenstore", "auto" and "dir" are passed on; "xenstore:DIR" with DIR made
 * absolute; anything else is a directory. */
static int store_spec(dmctl *d, const char **ret_spec)
{
    const char *s = d->store;
    bool xs_dir = s && !strncmp(s, "xenstore:", 9);
    char *abs;

    if (!s || !strcmp(s, "xenstore") || !strcmp(s, "auto") || !strcmp(s, "dir")) {
        *ret_spec = s;
        return 0;
    }
    abs = dmctl_absolute_path(xs_dir ? s + 9 : s, false);
    if (!abs)
        return -errno;
    if (!xs_dir && !store_dir_may_be_made(abs)) {
        free(abs);
        return -ENOENT;
    }
    free(d->store_abs);
    d->store_abs = abs;
    if (xs_dir) {
        if (asprintf(&d->store_abs, "xenstore:%s", abs) < 0)
            d->store_abs = NULL;
        free(abs);
    }
    if (!d->store_abs)
        return -ENOMEM;
    *ret_spec = d->store_abs;
    return 0;
}

/* Uninstalled use (./build/tools/dmctl): without $LIBDM_KEEPER and with no
 * installed keeper, use the libdm-keeper next to this dmctl, if any. */
static void find_keeper(void)
{
    char self[PATH_MAX], *slash, *sibling;
    ssize_t n;

    if (getenv("LIBDM_KEEPER") || access(LIBDM_LIBEXECDIR "/libdm-keeper", X_OK) == 0)
        return;
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return;
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (!slash)
        return;
    *slash = '\0';
    sibling = join_path(self, "libdm-keeper");
    if (sibling && access(sibling, X_OK) == 0)
        setenv("LIBDM_KEEPER", sibling, 0);
    free(sibling);
}

int dmctl_open_ctx(dmctl *d)
{
    const char *spec = NULL;
    int r;

    if (d->ctx)
        return 0;
    find_keeper();
    d->lg = dmctl_logger_new(log_level(d), d->verbose == 0);
    if (!d->lg) {
        dmctl_error(NULL, "cannot create a logger: %s", strerror(ENOMEM));
        return DMCTL_EXIT_FAIL;
    }
    r = libdm_ctx_new(d->lg, &d->ctx);
    if (r < 0) {
        dmctl_error(NULL, "cannot create a libdm context: %s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    r = store_spec(d, &spec);
    if (r == 0 && spec)
        r = libdm_ctx_set_store(d->ctx, spec);
    if (r < 0) {
        dmctl_error("--store", "%s: %s", d->store, strerror(-r));
        return dmctl_exit_for(r);
    }
    return 0;
}

void dmctl_close(dmctl *d)
{
    /* Frees only after any connection still draining has drained. */
    d->ctx = libdm_ctx_free(d->ctx);
    if (d->lg)
        xtl_logger_destroy(d->lg);
    d->lg = NULL;
    free(d->store_abs);
    d->store_abs = NULL;
}

/* ---- errors ---- */

int dmctl_exit_for(int err)
{
    return err == -ETIMEDOUT ? DMCTL_EXIT_TIMEOUT : DMCTL_EXIT_FAIL;
}

int dmctl_check_name(const char *name)
{
    libdm_dm_config *cfg = NULL;
    int r = libdm_dm_config_new(&cfg);

    if (r >= 0)
        r = libdm_dm_config_set_name(cfg, name);   /* libdm owns the rule */
    libdm_dm_config_free(cfg);
    if (r == -EINVAL) {
        dmctl_error(NULL, "invalid NAME '%s' (%s)", name, DMCTL_NAME_RULE);
        return DMCTL_EXIT_USAGE;
    }
    if (r < 0) {
        dmctl_error(NULL, "%s", strerror(-r));
        return dmctl_exit_for(r);
    }
    return 0;
}

void dmctl_error(const char *what, const char *fmt, ...)
{
    va_list ap;

    char *msg = NULL;

    fputs("dmctl: ", stderr);
    if (what)
        fprintf(stderr, "%s: ", what);
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    /* Error messages quote what the DM said (QMP error descriptions). */
    dmctl_put_safe(stderr, msg, DMCTL_SAFE_LINE);
    free(msg);
    fputc('\n', stderr);
}

static bool report_remote(libdm_qmp *q, const char *what, const char *op, int err)
{
    const char *cls = q ? libdm_qmp_error_class(q) : NULL;
    const char *desc = q ? libdm_qmp_error_desc(q) : NULL;

    if (err != -EREMOTEIO || !cls)
        return false;
    dmctl_error(what, "%s: QEMU error %s: %s", op, cls, desc ? desc : "(no description)");
    return true;
}

/* "dmctl: WHAT: OP: WHY", or "dmctl: WHY" when WHY names WHAT already. */
static void report_cause(const char *what, const char *op, const char *why)
{
    size_t n = strlen(what);

    if (strncmp(why, what, n) == 0 && why[n] == ':')
        dmctl_error(NULL, "%s", why);
    else
        dmctl_error(what, "%s: %s", op, why);
}

/* Reports @err with @why (may be NULL) or what libdm logged, else strerror. */
static int report(dmctl *d, const char *what, const char *op, const char *why, int err)
{
    char *held = dmctl_logger_take_error(d->lg, why);   /* @why: drops copies, NULL */

    if (why || held)
        report_cause(what, op, why ? why : held);
    else if (err == -ETIMEDOUT)
        dmctl_error(what, "%s: timed out (see --timeout)", op);
    else
        dmctl_error(what, "%s: %s", op, strerror(-err));
    free(held);
    dmctl_logger_discard(d->lg);   /* the rest belonged to this failure */
    return dmctl_exit_for(err);
}

int dmctl_report_start(dmctl *d, libdm_dm *dm, const char *name, int err)
{
    int st = dm ? libdm_dm_get_exit_status(dm) : -1;
    bool ended_by_itself = st >= 0 && !(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    char *first = dmctl_logger_take_first_error(d->lg);
    const char *why = first;
    int ex;

    /* A DM that exited by itself says why in its exit message (status, log
     * tail); otherwise the first error is the cause and the later ones
     * (its SIGKILL, cancelled calls, record clean-up) only follow from it. */
    if (ended_by_itself || !why)
        why = dm && libdm_dm_last_error(dm) ? libdm_dm_last_error(dm) : why;
    ex = report(d, name, "start failed", why, err);
    free(first);
    return ex;
}

int dmctl_report_dm(dmctl *d, libdm_dm *dm, const char *name, const char *op, int err)
{
    if (report_remote(dm ? libdm_dm_get_qmp(dm) : NULL, name, op, err)) {
        dmctl_logger_discard(d->lg);
        return dmctl_exit_for(err);
    }
    return report(d, name, op, dm ? libdm_dm_last_error(dm) : NULL, err);
}

int dmctl_report_qmp(dmctl *d, libdm_qmp *q, const char *what, const char *command, int err)
{
    if (report_remote(q, what, command, err)) {
        dmctl_logger_discard(d->lg);
        return dmctl_exit_for(err);
    }
    return report(d, what, command, q ? libdm_qmp_last_error(q) : NULL, err);
}

/* How a DM whose process is gone ended, from its record. */
static void report_gone(dmctl *d, const char *name)
{
    libdm_dm_info *infos = NULL;
    size_t n = 0, i;
    char buf[64];
    int status = -1;

    if (libdm_dm_list(d->ctx, &infos, &n) >= 0) {
        for (i = 0; i < n; i++)
            if (strcmp(infos[i].name, name) == 0)
                status = infos[i].exit_status;
        libdm_dm_info_free(infos, n);
    }
    dmctl_error(name, "its process is gone (%s); 'dmctl stop %s' removes the record",
                dmctl_describe_wait(status, buf, sizeof(buf)), name);
}

/* A DM handed over BROKEN (alive, monitor not answering) cannot serve the
 * command: report why its monitor broke. A call on a BROKEN DM does no I/O
 * and returns that cause (-ETIMEDOUT when the greeting never came). */
static int report_broken(dmctl *d, libdm_dm *dm, const char *name)
{
    char *rs = NULL;
    int r = libdm_dm_query_status(dm, d->timeout_ms, &rs);

    free(rs);
    return dmctl_report_dm(d, dm, name, "attach", r < 0 ? r : -ENOTCONN);
}

int dmctl_attach(dmctl *d, const char *name, libdm_dm **ret_dm)
{
    libdm_dm *dm = NULL;
    int r = dmctl_check_name(name);

    if (!r)
        r = dmctl_open_ctx(d);
    if (r)
        return r;
    r = libdm_dm_attach_timeout(d->ctx, name, d->timeout_ms, &dm);
    if (r < 0)
        return dmctl_report_attach(d, name, r);
    if (libdm_dm_get_state(dm) == LIBDM_DM_BROKEN) {
        r = report_broken(d, dm, name);
        libdm_dm_release(dm);
        return r;
    }
    *ret_dm = dm;
    return 0;
}

int dmctl_report_attach(dmctl *d, const char *name, int r)
{
    if (r == -ENOENT || r == -ESRCH)
        dmctl_logger_discard(d->lg);   /* said better below */
    if (r == -ENOENT)
        dmctl_error(name, "no such device model (no record; see 'dmctl list')");
    else if (r == -ESRCH)
        report_gone(d, name);
    else
        return dmctl_report_dm(d, NULL, name, "attach", r);
    return dmctl_exit_for(r);
}

/* Connecting retries while the socket does not exist (for a DM starting
 * up); a path given by the user must exist now. */
static int check_socket_path(const char *path)
{
    struct stat st;

    if (stat(path, &st) < 0) {
        dmctl_error(path, "%s", strerror(errno));
        return DMCTL_EXIT_FAIL;
    }
    if (!S_ISSOCK(st.st_mode)) {
        dmctl_error(path, "not a socket");
        return DMCTL_EXIT_FAIL;
    }
    return 0;
}

int dmctl_open_socket(dmctl *d, const char *path, libdm_qmp **ret_qmp)
{
    int r = check_socket_path(path);

    if (r)
        return r;
    r = dmctl_open_ctx(d);
    if (r)
        return r;
    r = libdm_qmp_open(d->ctx, path, d->timeout_ms, ret_qmp);
    if (r == -ETIMEDOUT) {
        dmctl_logger_discard(d->lg);
        dmctl_error(path, "no QMP greeting and negotiation before the deadline "
                    "(is another client connected?)");
    } else if (r < 0) {
        return report(d, path, "cannot open QMP", NULL, r);
    }
    return r < 0 ? dmctl_exit_for(r) : 0;
}

int dmctl_close_socket(dmctl *d, const char *path, libdm_qmp *q)
{
    int r;

    (void)dmctl_drain(d, q);   /* whatever is still outstanding: wedged */
    r = libdm_qmp_close(q, 1);

    if (r == -ETIMEDOUT) {
        dmctl_logger_discard(d->lg);
        dmctl_error(path, "monitor wedged: a reply was still outstanding at the deadline");
        return dmctl_exit_for(r);
    }
    return r < 0 ? report(d, path, "closing QMP", NULL, r) : 0;
}

/* ---- parsing ---- */

bool dmctl_parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    unsigned long long v;
    char *end;

    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *ret = v;
    return true;
}

bool dmctl_parse_seconds(const char *s, int *ret_ms)
{
    double v, ms;
    char *end;

    if (!s || !((*s >= '0' && *s <= '9') || *s == '.'))
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v <= 0)
        return false;
    ms = v * 1000.0;
    if (ms > INT_MAX)
        return false;
    *ret_ms = (int)ms;
    if (*ret_ms < ms)
        ++*ret_ms;    /* round up: 0.0001 s is 1 ms, not "no deadline" */
    return true;
}

/* An IPv6 literal, optionally with "%ZONE" (an interface name or index). */
static bool is_ipv6_literal(const char *s, size_t len)
{
    char addr[INET6_ADDRSTRLEN];
    struct in6_addr a;
    const char *pct = memchr(s, '%', len);
    size_t alen = pct ? (size_t)(pct - s) : len;

    if (alen == 0 || alen >= sizeof(addr))
        return false;
    if (pct) {
        size_t zlen = len - alen - 1;

        if (zlen == 0 || zlen > 15)   /* IFNAMSIZ - 1 */
            return false;
        for (size_t i = 0; i < zlen; i++)
            if (!isalnum((unsigned char)pct[1 + i]) && !strchr("_.-", pct[1 + i]))
                return false;
    }
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    return inet_pton(AF_INET6, addr, &a) == 1;
}

char *dmctl_parse_tcp_host(const char *s, bool *ret_v6)
{
    size_t len = strlen(s);
    char *out;

    if (s[0] == '[') {
        if (len < 3 || s[len - 1] != ']' || !is_ipv6_literal(s + 1, len - 2))
            goto invalid;
        out = strndup(s + 1, len - 2);
        *ret_v6 = true;
    } else if (strchr(s, ':')) {
        /* Only a whole IPv6 literal: "HOST:PORT" is not a host. */
        if (!is_ipv6_literal(s, len))
            goto invalid;
        out = strdup(s);
        *ret_v6 = true;
    } else {
        if (!len || len > 253)
            goto invalid;
        for (size_t i = 0; i < len; i++)
            if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
                goto invalid;
        out = strdup(s);
        *ret_v6 = false;
    }
    if (!out)
        errno = ENOMEM;
    return out;
invalid:
    errno = EINVAL;
    return NULL;
}

char *dmctl_tcp_uri(const char *host, bool v6, const char *port)
{
    char *uri;

    if (asprintf(&uri, "tcp:%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0)
        return NULL;
    return uri;
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);

    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static char *search_path(const char *name)
{
    const char *path = getenv("PATH");
    char *copy, *dir, *save = NULL, *found = NULL;

    copy = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
    if (!copy)
        return NULL;
    for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        if (dir[0] != '/')
            continue;   /* only absolute entries: the result must be absolute */
        found = join_path(dir, name);
        if (found && access(found, X_OK) != 0) {
            free(found);
            found = NULL;
        }
    }
    free(copy);
    if (!found)
        errno = ENOENT;
    return found;
}

char *dmctl_absolute_path(const char *path, bool search)
{
    char cwd[PATH_MAX];

    if (path[0] == '/')
        return strdup(path);
    if (search && !strchr(path, '/'))
        return search_path(path);
    if (!getcwd(cwd, sizeof(cwd)))
        return NULL;
    return join_path(cwd, path);
}

const char *dmctl_describe_wait(int status, char *buf, size_t len)
{
    if (status < 0)
        snprintf(buf, len, "how it ended is not recorded");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "wait status %#x", (unsigned)status);
    return buf;
}

/* ---- output ---- */

int dmctl_json_emit(libdm_json *v)
{
    char *text = NULL;
    int r = v ? libdm_json_to_string(v, 0, &text) : -ENOMEM;

    char *safe;

    libdm_json_free(v);
    if (r < 0) {
        dmctl_error(NULL, "cannot produce JSON: %s", strerror(-r));
        return DMCTL_EXIT_FAIL;
    }
    safe = dmctl_json_escape_c1(text);
    free(text);
    if (!safe) {
        dmctl_error(NULL, "cannot produce JSON: %s", strerror(ENOMEM));
        return DMCTL_EXIT_FAIL;
    }
    puts(safe);
    free(safe);
    return 0;
}

bool dmctl_json_add_str(libdm_json *o, const char *key, const char *s)
{
    return libdm_json_object_add(o, key, s ? libdm_json_new_string(s) : libdm_json_new_null()) >= 0;
}

bool dmctl_json_add_int(libdm_json *o, const char *key, int64_t i)
{
    return libdm_json_object_add(o, key, libdm_json_new_int(i)) >= 0;
}

bool dmctl_json_add_bool(libdm_json *o, const char *key, bool b)
{
    return libdm_json_object_add(o, key, libdm_json_new_bool(b)) >= 0;
}

void dmctl_print_kv(int width, const char *key, const char *fmt, ...)
{
    va_list ap;

    char *v = NULL;

    printf("%-*s ", width + 1, key);
    va_start(ap, fmt);
    if (vasprintf(&v, fmt, ap) < 0)
        v = NULL;
    va_end(ap);
    dmctl_put_safe(stdout, v, DMCTL_SAFE_SHORT);   /* values come from the DM */
    free(v);
    putchar('\n');
}

static int print_dm_json(libdm_dm *dm)
{
    char *rs = dmctl_safe(libdm_dm_get_runstate(dm), DMCTL_SAFE_SHORT);
    libdm_json *o = libdm_json_new_object();
    bool ok = o != NULL;

    ok = ok && dmctl_json_add_str(o, "name", libdm_dm_get_name(dm));
    ok = ok && dmctl_json_add_int(o, "domid", libdm_dm_get_domid(dm));
    ok = ok && dmctl_json_add_int(o, "pid", libdm_dm_get_pid(dm));
    ok = ok && dmctl_json_add_str(o, "qmp_socket", libdm_dm_get_qmp_path(dm));
    ok = ok && dmctl_json_add_str(o, "runstate", rs);
    free(rs);
    ok = ok && dmctl_json_add_str(o, "profile", libdm_dm_get_profile(dm));
    ok = ok && dmctl_json_add_str(o, "state", libdm_dm_state_to_string(libdm_dm_get_state(dm)));
    if (ok && libdm_dm_get_confinement(dm))
        ok = dmctl_json_add_str(o, "confinement", libdm_dm_get_confinement(dm));
    if (!ok) {
        libdm_json_free(o);
        o = NULL;
    }
    return dmctl_json_emit(o);
}

static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

int dmctl_print_dm(const dmctl *d, libdm_dm *dm)
{
    const int w = 10;
    uint32_t domid = libdm_dm_get_domid(dm);

    if (d->json)
        return print_dm_json(dm);
    dmctl_print_kv(w, "name:", "%s", or_dash(libdm_dm_get_name(dm)));
    if (domid)
        dmctl_print_kv(w, "domid:", "%" PRIu32, domid);
    else
        dmctl_print_kv(w, "domid:", "none");
    dmctl_print_kv(w, "pid:", "%d", libdm_dm_get_pid(dm));
    dmctl_print_kv(w, "qmp_socket:", "%s", or_dash(libdm_dm_get_qmp_path(dm)));
    dmctl_print_kv(w, "runstate:", "%s", or_dash(libdm_dm_get_runstate(dm)));
    dmctl_print_kv(w, "profile:", "%s", or_dash(libdm_dm_get_profile(dm)));
    dmctl_print_kv(w, "state:", "%s", libdm_dm_state_to_string(libdm_dm_get_state(dm)));
    dmctl_print_kv(w, "confinement:", "%s", or_dash(libdm_dm_get_confinement(dm)));
    return 0;
}
