/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fakeqmp: the fake QMP server of fakeqmp.h as a program, for shell tests
 * and the fault matrix. It is not QEMU; see fakeqmp.h for why it exists.
 *
 *   fakeqmp [--forever] SOCKET-PATH SCRIPT-FILE|-
 *   fakeqmp [--forever] --listen-fd N SCRIPT-FILE|-
 *
 * Serves until the script is exhausted and the client has disconnected
 * (at least one client must come), or until SIGTERM/SIGINT. --forever
 * serves until the signal only (clients that reconnect, auto mode). A
 * wedged monitor (monitor-block-bug) never exhausts its script either, so
 * such runs also end by signal. Exit status: 0 no mismatch, 1 mismatches
 * (listed on stderr, with the steps never reached), 2 usage or script
 * error.
 *
 * Script: one step per line; blank lines and lines starting with '#' are
 * ignored ('#' elsewhere is data). TEXT runs to the end of the line and
 * understands the escapes \n \r \t \\ \xHH (\x00 is only kept by send;
 * elsewhere it ends the text).
 *
 *   greeting normal|none|partial-eof|delay MS
 *   preamble TEXT                 bytes before every greeting
 *   bytewise on|off
 *   monitor-block-bug on|off
 *   auto on|off
 *   expect CMD return JSON
 *   expect CMD error CLASS DESC...
 *   expect CMD noreply
 *   expect CMD delay MS return JSON
 *   expect CMD raw TEXT           $ID becomes the request's id
 *   event NAME [JSON]
 *   send TEXT
 *   oversize NBYTES
 *   deep DEPTH
 *   burst NAME COUNT
 *   sleep MS
 *   close
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fakeqmp.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* ---- lexing ---- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Cut the next blank-separated word off *p; "" when none is left. */
static char *next_word(char **p)
{
    char *w = *p, *e;

    while (is_space(*w))
        w++;
    for (e = w; *e && !is_space(*e); e++)
        ;
    *p = e;
    if (*e) {
        *e = '\0';
        (*p)++;
    }
    return w;
}

/* The rest of the line after the separating blanks. */
static char *rest(char **p)
{
    while (is_space(**p))
        (*p)++;
    return *p;
}

static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;

    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0' && *out <= max;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode escapes in place; returns the decoded length or -1. */
static long unescape(char *s)
{
    char *start = s, *d = s;

    for (; *s; s++) {
        if (*s != '\\') {
            *d++ = *s;
            continue;
        }
        switch (*++s) {
        case 'n': *d++ = '\n'; break;
        case 'r': *d++ = '\r'; break;
        case 't': *d++ = '\t'; break;
        case '\\': *d++ = '\\'; break;
        case 'x': {
            int hi = hex_digit(s[1]), lo = hi < 0 ? -1 : hex_digit(s[2]);

            if (lo < 0)
                return -1;
            *d++ = (char)(hi << 4 | lo);
            s += 2;
            break;
        }
        default:
            return -1;
        }
    }
    *d = '\0';
    return (long)(d - start);
}

/* ---- script steps ---- */

struct ctx {
    fakeqmp *f;
    const char *file;
    unsigned lineno;
};

static int script_error(const struct ctx *x, const char *what)
{
    fprintf(stderr, "fakeqmp: %s:%u: %s\n", x->file, x->lineno, what);
    return -1;
}

static int parse_switch(const struct ctx *x, char *arg, int *on)
{
    if (strcmp(arg, "on") == 0)
        *on = 1;
    else if (strcmp(arg, "off") == 0)
        *on = 0;
    else
        return script_error(x, "expected on or off");
    return 0;
}

static int parse_count(const struct ctx *x, const char *arg, unsigned long long max, unsigned long long *n)
{
    return parse_uint(arg, max, n) ? 0 : script_error(x, "expected a number");
}

static int do_greeting(const struct ctx *x, char *args)
{
    static const struct {
        const char *word;
        enum fakeqmp_greeting mode;
    } modes[] = {
        {"normal", FAKEQMP_GREETING_NORMAL},
        {"none", FAKEQMP_GREETING_NONE},
        {"partial-eof", FAKEQMP_GREETING_PARTIAL_THEN_EOF},
        {"delay", FAKEQMP_GREETING_DELAYED},
    };
    char *word = next_word(&args);
    unsigned long long ms = 0;

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(word, modes[i].word) != 0)
            continue;
        if (modes[i].mode == FAKEQMP_GREETING_DELAYED && parse_count(x, next_word(&args), UINT_MAX, &ms) < 0)
            return -1;
        fakeqmp_set_greeting(x->f, modes[i].mode, (unsigned)ms);
        return 0;
    }
    return script_error(x, "greeting: expected normal, none, partial-eof or delay MS");
}

/* expect CMD return JSON | error CLASS DESC | noreply | delay MS return JSON | raw TEXT */
static int do_expect(const struct ctx *x, char *args)
{
    char *cmd = next_word(&args), *how = next_word(&args);
    unsigned long long ms = 0;

    if (!*cmd)
        return script_error(x, "expect: missing command");
    if (strcmp(how, "noreply") == 0)
        return fakeqmp_expect_noreply(x->f, cmd);
    if (strcmp(how, "error") == 0) {
        char *cls = next_word(&args);

        return fakeqmp_expect_error(x->f, cmd, cls, rest(&args));
    }
    if (strcmp(how, "raw") == 0)
        return unescape(args) < 0 ? script_error(x, "bad escape") : fakeqmp_expect_raw(x->f, cmd, args);
    if (strcmp(how, "delay") == 0) {
        if (parse_count(x, next_word(&args), UINT_MAX, &ms) < 0)
            return -1;
        how = next_word(&args);
    }
    if (strcmp(how, "return") == 0)
        return fakeqmp_expect_delay(x->f, cmd, (unsigned)ms, rest(&args));
    return script_error(x, "expect: expected return, error, noreply, delay or raw");
}

static int do_text(const struct ctx *x, char *args, bool preamble)
{
    long len = unescape(args);

    if (len < 0)
        return script_error(x, "bad escape");
    return preamble ? fakeqmp_set_preamble(x->f, args) : fakeqmp_send_raw(x->f, args, (size_t)len);
}

static int do_switch(const struct ctx *x, const char *kw, char *args)
{
    int on;

    if (parse_switch(x, next_word(&args), &on) < 0)
        return -1;
    if (strcmp(kw, "bytewise") == 0)
        fakeqmp_set_bytewise(x->f, on);
    else if (strcmp(kw, "monitor-block-bug") == 0)
        fakeqmp_set_monitor_block_bug(x->f, on);
    else
        fakeqmp_set_auto(x->f, on);
    return 0;
}

static int do_number_step(const struct ctx *x, const char *kw, char *args)
{
    unsigned long long n;

    if (parse_count(x, next_word(&args), strcmp(kw, "sleep") == 0 ? UINT_MAX : SIZE_MAX, &n) < 0)
        return -1;
    if (strcmp(kw, "oversize") == 0)
        return fakeqmp_send_oversize_step(x->f, (size_t)n);
    if (strcmp(kw, "deep") == 0)
        return fakeqmp_send_deep_step(x->f, (size_t)n);
    return fakeqmp_sleep(x->f, (unsigned)n);
}

static int do_event(const struct ctx *x, char *args, bool burst)
{
    char *name = next_word(&args);
    unsigned long long n;

    if (!burst)
        return fakeqmp_event(x->f, name, *rest(&args) ? rest(&args) : NULL);
    if (parse_count(x, next_word(&args), SIZE_MAX, &n) < 0)
        return -1;
    return fakeqmp_event_burst_step(x->f, name, (size_t)n);
}

static int parse_step(const struct ctx *x, char *line)
{
    char *kw = next_word(&line);
    int r;

    if (strcmp(kw, "greeting") == 0)
        r = do_greeting(x, line);
    else if (strcmp(kw, "preamble") == 0 || strcmp(kw, "send") == 0)
        r = do_text(x, rest(&line), strcmp(kw, "preamble") == 0);
    else if (strcmp(kw, "bytewise") == 0 || strcmp(kw, "monitor-block-bug") == 0 || strcmp(kw, "auto") == 0)
        r = do_switch(x, kw, line);
    else if (strcmp(kw, "expect") == 0)
        r = do_expect(x, line);
    else if (strcmp(kw, "event") == 0 || strcmp(kw, "burst") == 0)
        r = do_event(x, line, strcmp(kw, "burst") == 0);
    else if (strcmp(kw, "oversize") == 0 || strcmp(kw, "deep") == 0 || strcmp(kw, "sleep") == 0)
        r = do_number_step(x, kw, line);
    else if (strcmp(kw, "close") == 0)
        r = fakeqmp_close_step(x->f);
    else
        return script_error(x, "unknown step");
    /* Library refusals (invalid JSON, missing name) come back as -1/EINVAL. */
    return r < 0 && errno == EINVAL ? script_error(x, "invalid arguments (bad JSON?)") : r;
}

static int load_script(fakeqmp *f, const char *file)
{
    struct ctx x = {f, file, 0};
    FILE *in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int r = 0;

    if (!in) {
        fprintf(stderr, "fakeqmp: %s: %s\n", file, strerror(errno));
        return -1;
    }
    while (r == 0 && (len = getline(&line, &cap, in)) >= 0) {
        char *p = line;

        x.lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[len - 1] = '\0';
        while (is_space(*p))
            p++;
        if (*p && *p != '#')
            r = parse_step(&x, p);
    }
    free(line);
    if (in != stdin)
        fclose(in);
    return r;
}

/* ---- main ---- */

static void usage(void)
{
    fputs("usage: fakeqmp [--forever] SOCKET-PATH SCRIPT|-\n"
          "       fakeqmp [--forever] --listen-fd N SCRIPT|-\n",
          stderr);
}

static fakeqmp *open_server(int argc, char **argv, const char **script, bool *forever)
{
    unsigned long long fd;

    *forever = argc > 1 && strcmp(argv[1], "--forever") == 0;
    if (*forever) {
        argc--;
        argv++;
    }
    if (argc == 4 && strcmp(argv[1], "--listen-fd") == 0) {
        if (!parse_uint(argv[2], INT_MAX, &fd)) {
            usage();
            return NULL;
        }
        *script = argv[3];
        return fakeqmp_new_listen_fd((int)fd);
    }
    if (argc != 3) {
        usage();
        return NULL;
    }
    *script = argv[2];
    return fakeqmp_new(argv[1]);
}

static void report(fakeqmp *f)
{
    unsigned n = fakeqmp_mismatches(f);

    for (unsigned i = 0; i < n; i++)
        fprintf(stderr, "fakeqmp: mismatch: %s\n", fakeqmp_mismatch(f, i));
    if (fakeqmp_steps_left(f))
        fprintf(stderr, "fakeqmp: %zu script steps never reached\n", fakeqmp_steps_left(f));
}

static void serve(fakeqmp *f, bool forever)
{
    static const struct timespec slice = {0, 100 * 1000 * 1000};

    /* Waits are sliced so that a signal is noticed within 100 ms. */
    while (!stop_signal) {
        if (forever)
            nanosleep(&slice, NULL);
        else if (fakeqmp_wait_finished(f, 100))
            return;
    }
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_signal};
    const char *script = NULL;
    bool forever;
    fakeqmp *f = open_server(argc, argv, &script, &forever);
    int status;

    if (!f) {
        if (script)
            fprintf(stderr, "fakeqmp: cannot listen: %s\n", strerror(errno));
        return 2;
    }
    if (load_script(f, script) < 0) {
        fakeqmp_free(f);
        return 2;
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (fakeqmp_start(f) < 0) {
        fprintf(stderr, "fakeqmp: cannot start: %s\n", strerror(errno));
        fakeqmp_free(f);
        return 2;
    }
    serve(f, forever);
    report(f);
    status = fakeqmp_mismatches(f) ? 1 : 0;
    fakeqmp_free(f);
    return status;
}
