/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The event loop of one context.
 *
 * Every watched fd is in the context's epoll set whatever the mode, so the
 * blocking calls can always run the loop themselves; in hooks mode each watch
 * is also registered with the host, and the earliest timer deadline is handed
 * to the host's single timer. Timers are a binary min-heap of structures
 * embedded in their owners: arming never allocates after the heap has grown,
 * and the next deadline is found in O(1), so a thousand connections cost no
 * scan per event.
 *
 * Re-entrancy: a callback may delete any watch, including one whose event is
 * still in the current batch; deleted watches are only marked dead and freed
 * after the batch.
 */
#include "ctx-internal.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LIBDM__EPOLL_BATCH 64
/* One dispatch runs callbacks for at most this long, then returns to the
 * host; what is left (level-triggered fds, due timers) is still pending, so
 * the host comes straight back. A batch of heavy steps (sixteen starts'
 * set-up, say) thus never stalls the host's own work: a dispatch lasts the
 * budget plus one light callback, or one heavy step alone (a start's step
 * creates at most two files: ~0.6 ms on a busy ext4, ~0.1 ms on tmpfs). */
#define LIBDM__DISPATCH_BUDGET_US 250

struct libdm__watch {
    libdm_ctx *ctx;
    int fd;
    short events;
    bool dead;
    libdm__watch_fn *fn;
    void *user;
    void *host_reg;
    libdm__watch *next_dead;
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int libdm__loop_init(libdm_ctx *ctx)
{
    ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->epfd < 0)
        return -errno;
    ctx->host_deadline = UINT64_MAX;
    return 0;
}

static void free_dead_watches(libdm_ctx *ctx)
{
    while (ctx->dead_watches) {
        libdm__watch *w = ctx->dead_watches;
        ctx->dead_watches = w->next_dead;
        free(w);
    }
}

void libdm__loop_fini(libdm_ctx *ctx)
{
    free_dead_watches(ctx);
    if (ctx->nwatches)
        LIBDM__WARN(ctx, "context freed with %u fd watch(es) still registered", ctx->nwatches);
    free(ctx->heap);
    ctx->heap = NULL;
    ctx->heap_len = ctx->heap_cap = 0;
    libdm__close(&ctx->epfd);
}

unsigned libdm__dispatch_depth(libdm_ctx *ctx)
{
    /* No context: a DM handle whose context was freed (libdm_ctx_free());
     * its blocking calls must not run. */
    if (!ctx)
        return 1;
    return ctx->depth;
}

/* ---- fd watches ---- */

static uint32_t to_epoll(short events)
{
    return (events & POLLIN ? EPOLLIN : 0u) | (events & POLLOUT ? EPOLLOUT : 0u);
}

static short from_epoll(uint32_t ev)
{
    return (short)((ev & EPOLLIN ? POLLIN : 0) | (ev & EPOLLOUT ? POLLOUT : 0) |
                   (ev & EPOLLERR ? POLLERR : 0) | (ev & EPOLLHUP ? POLLHUP : 0));
}

int libdm__watch_add(libdm_ctx *ctx, int fd, short events, libdm__watch_fn *fn, void *user,
                     libdm__watch **ret_watch)
{
    struct epoll_event ev = { .events = to_epoll(events) };
    libdm__watch *w;
    int r;

    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (libdm__watch){ .ctx = ctx, .fd = fd, .events = events, .fn = fn, .user = user };
    ev.data.ptr = w;
    if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        r = -errno;
        free(w);
        return r;
    }
    if (ctx->hooks_mode) {
        r = ctx->hooks.fd_register(ctx->hooks_user, fd, events, w, &w->host_reg);
        if (r < 0) {
            (void)epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, fd, NULL);
            free(w);
            return r;
        }
    }
    ctx->nwatches++;
    *ret_watch = w;
    return 0;
}

int libdm__watch_set_events(libdm__watch *w, short events)
{
    libdm_ctx *ctx = w->ctx;
    struct epoll_event ev = { .events = to_epoll(events), .data.ptr = w };
    int r;

    if (w->dead)
        return -EINVAL;
    if (events == w->events)
        return 0;
    if (epoll_ctl(ctx->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
        return -errno;
    if (ctx->hooks_mode) {
        r = ctx->hooks.fd_modify(ctx->hooks_user, w->fd, events, &w->host_reg);
        if (r < 0)
            return r;
    }
    w->events = events;
    return 0;
}

void libdm__watch_del(libdm__watch *w)
{
    libdm_ctx *ctx;

    if (!w || w->dead)
        return;
    ctx = w->ctx;
    (void)epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    if (ctx->hooks_mode)
        ctx->hooks.fd_deregister(ctx->hooks_user, w->fd, w->host_reg);
    w->dead = true;
    ctx->nwatches--;
    w->next_dead = ctx->dead_watches;
    ctx->dead_watches = w;
    if (ctx->depth == 0)
        free_dead_watches(ctx);
}

/* ---- timers: a binary min-heap on deadline, then arming order ---- */

/* Equal deadlines run in the order they were armed. A heap alone orders
 * them by its shape: two deadlines from one timeout (an operation's and its
 * monitor's, armed a moment later in the same millisecond) then fired in
 * either order, and which error a caller got depended on it. */
static bool timer_before(const libdm__timer *a, const libdm__timer *b)
{
    return a->deadline != b->deadline ? a->deadline < b->deadline : a->seq < b->seq;
}

static void heap_place(libdm_ctx *ctx, size_t i, libdm__timer *t)
{
    ctx->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(libdm_ctx *ctx, size_t i)
{
    libdm__timer *t = ctx->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, ctx->heap[parent]))
            break;
        heap_place(ctx, i, ctx->heap[parent]);
        i = parent;
    }
    heap_place(ctx, i, t);
}

static void heap_down(libdm_ctx *ctx, size_t i)
{
    libdm__timer *t = ctx->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= ctx->heap_len)
            break;
        if (child + 1 < ctx->heap_len && timer_before(ctx->heap[child + 1], ctx->heap[child]))
            child++;
        if (!timer_before(ctx->heap[child], t))
            break;
        heap_place(ctx, i, ctx->heap[child]);
        i = child;
    }
    heap_place(ctx, i, t);
}

static void heap_remove(libdm_ctx *ctx, libdm__timer *t)
{
    size_t i = t->heap_index;
    libdm__timer *last = ctx->heap[--ctx->heap_len];

    t->heap_index = SIZE_MAX;
    if (last == t)
        return;
    heap_place(ctx, i, last);
    heap_up(ctx, i);
    heap_down(ctx, last->heap_index);
}

/* Tells the host the earliest deadline, if it changed (hooks mode only). */
static void sync_host_timer(libdm_ctx *ctx)
{
    uint64_t next = ctx->heap_len ? ctx->heap[0]->deadline : UINT64_MAX;

    if (!ctx->hooks_mode || ctx->depth > 0 || next == ctx->host_deadline)
        return;
    if (ctx->hooks.timer_set(ctx->hooks_user, next) < 0)
        LIBDM__ERROR(ctx, "host timer_set hook failed; libdm deadlines may be late");
    ctx->host_deadline = next;
}

void libdm__timer_init(libdm__timer *t, libdm__timer_fn *fn, void *user)
{
    *t = (libdm__timer){ .heap_index = SIZE_MAX, .fn = fn, .user = user };
}

void libdm__timer_set_alone(libdm__timer *t, bool alone)
{
    t->alone = alone;
}

bool libdm__timer_armed(const libdm__timer *t)
{
    return t->heap_index != SIZE_MAX;
}

int libdm__timer_arm(libdm_ctx *ctx, libdm__timer *t, uint64_t deadline_ms)
{
    if (libdm__timer_armed(t))
        heap_remove(ctx, t);
    if (deadline_ms == UINT64_MAX) {
        sync_host_timer(ctx);
        return 0;
    }
    if (ctx->heap_len == ctx->heap_cap) {
        size_t cap = ctx->heap_cap ? ctx->heap_cap * 2 : 16;
        libdm__timer **h = realloc(ctx->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        ctx->heap = h;
        ctx->heap_cap = cap;
    }
    t->deadline = deadline_ms;
    t->seq = ++ctx->timer_seq;
    ctx->heap[ctx->heap_len] = t;
    t->heap_index = ctx->heap_len++;
    heap_up(ctx, t->heap_index);
    sync_host_timer(ctx);
    return 0;
}

static void unpostpone(libdm_ctx *ctx, libdm__timer *t)
{
    libdm__timer **pp = &ctx->postponed;

    while (*pp && *pp != t)
        pp = &(*pp)->next_postponed;
    if (*pp)
        *pp = t->next_postponed;
    t->postponed = false;
    t->next_postponed = NULL;
}

void libdm__postpone(libdm_ctx *ctx, libdm__timer *t)
{
    if (t->postponed)
        return;
    t->postponed = true;
    t->next_postponed = ctx->postponed;
    ctx->postponed = t;
}

bool libdm__blocking_other(libdm_ctx *ctx, const void *owner)
{
    return ctx->blocking_for && ctx->blocking_for != owner;
}

void libdm__timer_disarm(libdm_ctx *ctx, libdm__timer *t)
{
    if (t->postponed)
        unpostpone(ctx, t);
    if (!libdm__timer_armed(t))
        return;
    heap_remove(ctx, t);
    sync_host_timer(ctx);
}

int libdm__defer(libdm_ctx *ctx, libdm__timer *t)
{
    return libdm__timer_arm(ctx, t, 0);
}

/* Whether this dispatch has used its time: the first callback always runs,
 * so every dispatch makes progress. */
static bool over_budget(const libdm_ctx *ctx)
{
    return now_us() - ctx->dispatch_start_us >= LIBDM__DISPATCH_BUDGET_US;
}

/* Runs the timers due at @now, within the dispatch's time budget (at least
 * one if no callback ran before in this dispatch: @ran is 0); a heavy
 * ("alone") timer only as the dispatch's first callback. The count stops a
 * timer that keeps re-deferring itself from starving the fds. */
static int run_timers(libdm_ctx *ctx, uint64_t now, int ran)
{
    size_t budget = ctx->heap_len;
    int n = 0;

    while (budget-- > 0 && ctx->heap_len > 0 && ctx->heap[0]->deadline <= now &&
           (ran + n == 0 || (!over_budget(ctx) && !ctx->heap[0]->alone))) {
        libdm__timer *t = ctx->heap[0];
        heap_remove(ctx, t);
        t->fn(ctx, t, t->user);
        n++;
    }
    return n;
}

/* ---- dispatch ---- */

bool libdm__ctx_idle(const libdm_ctx *ctx)
{
    /* A released running DM's keeper is followed (reaped when it exits),
     * but is not work in flight: it may run for months. */
    return ctx->heap_len == 0 && ctx->nclosing == 0 && ctx->n_exiting_reapers == 0;
}

static void begin_dispatch(libdm_ctx *ctx)
{
    /* Busy on entry (an API call armed a timer, say): the end of this
     * dispatch may report the context idle again. */
    if (ctx->depth++ == 0) {
        ctx->dispatch_start_us = now_us();
        if (!libdm__ctx_idle(ctx))
            ctx->idle_reported = false;
    }
}

/* Runs the idle callback once per busy -> idle transition. It runs as a
 * libdm callback (depth > 0), so it cannot re-enter the loop. */
static void maybe_report_idle(libdm_ctx *ctx)
{
    if (!libdm__ctx_idle(ctx)) {
        ctx->idle_reported = false;
        return;
    }
    if (ctx->idle_reported || !ctx->idle_cb || ctx->blocking_for)
        return;
    ctx->idle_reported = true;
    ctx->depth++;
    ctx->idle_cb(ctx, ctx->idle_user);
    ctx->depth--;
}

static void end_dispatch(libdm_ctx *ctx)
{
    if (--ctx->depth == 0) {
        free_dead_watches(ctx);
        libdm__orphans_reap(false);
        sync_host_timer(ctx);
        maybe_report_idle(ctx);
    }
}

static void dispatch_watch(libdm__watch *w, short revents)
{
    if (!w->dead)
        w->fn(w->ctx, w->fd, revents, w->user);
}

static int next_timeout(libdm_ctx *ctx, int timeout_ms)
{
    uint64_t now, due;
    int t;

    if (ctx->heap_len == 0)
        return timeout_ms;
    now = libdm_now_ms();
    due = ctx->heap[0]->deadline;
    t = due <= now ? 0 : (due - now > INT32_MAX ? INT32_MAX : (int)(due - now));
    return (timeout_ms < 0 || t < timeout_ms) ? t : timeout_ms;
}

int libdm_ctx_run_once(libdm_ctx *ctx, int timeout_ms)
{
    struct epoll_event evs[LIBDM__EPOLL_BATCH];
    int n, i, dispatched;

    n = epoll_wait(ctx->epfd, evs, LIBDM__EPOLL_BATCH, next_timeout(ctx, timeout_ms));
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    begin_dispatch(ctx);
    /* Past the budget the rest of the batch waits: epoll is level-triggered,
     * so those fds are reported again by the next epoll_wait. */
    for (i = 0; i < n && (i == 0 || !over_budget(ctx)); i++)
        dispatch_watch(evs[i].data.ptr, from_epoll(evs[i].events));
    dispatched = i + run_timers(ctx, libdm_now_ms(), i);
    end_dispatch(ctx);
    return dispatched;
}

/* ---- one-fd integration (sd_bus_get_fd / get_timeout / process) ---- */

int libdm_ctx_get_fd(libdm_ctx *ctx)
{
    if (ctx->hooks_mode)
        return -EBUSY;
    ctx->fd_mode = true;
    return ctx->epfd;
}

int libdm_ctx_get_timeout(libdm_ctx *ctx, uint64_t *ret_abs_ms)
{
    if (ctx->hooks_mode)
        return -EBUSY;
    if (ctx->heap_len == 0) {
        *ret_abs_ms = UINT64_MAX;
        return 0;
    }
    *ret_abs_ms = ctx->heap[0]->deadline;
    return 1;
}

int libdm_ctx_process(libdm_ctx *ctx)
{
    if (ctx->hooks_mode)
        return -EBUSY;
    if (ctx->depth > 0)
        return -EDEADLK;
    /* A zero timeout: epoll_wait only collects what is ready. */
    return libdm_ctx_run_once(ctx, 0);
}

int libdm_ctx_is_idle(libdm_ctx *ctx)
{
    return libdm__ctx_idle(ctx) ? 1 : 0;
}

int libdm_ctx_set_idle_callback(libdm_ctx *ctx, libdm_ctx_idle_fn *cb, void *userdata)
{
    ctx->idle_cb = cb;
    ctx->idle_user = userdata;
    ctx->idle_reported = false;
    return 0;
}

void libdm_ctx_dispatch_fd(libdm_ctx *ctx, void *libdm_reg, int fd, short revents)
{
    libdm__watch *w = libdm_reg;

    if (!w || w->fd != fd)
        return;
    begin_dispatch(ctx);
    dispatch_watch(w, revents);
    end_dispatch(ctx);
}

void libdm_ctx_dispatch_timeout(libdm_ctx *ctx)
{
    /* The host's timer fired: it is no longer armed on the host side. */
    ctx->host_deadline = UINT64_MAX;
    begin_dispatch(ctx);
    run_timers(ctx, libdm_now_ms(), 0);
    end_dispatch(ctx);
}

int libdm__wait(libdm_ctx *ctx, bool (*done)(void *arg), void *arg, uint64_t deadline_ms)
{
    if (ctx->depth > 0)
        return -EDEADLK;
    for (;;) {
        uint64_t now;
        int r, slice;

        if (done(arg))
            return 0;
        now = libdm_now_ms();
        if (now >= deadline_ms)
            return -ETIMEDOUT;
        slice = deadline_ms - now > 1000 ? 1000 : (int)(deadline_ms - now);
        r = libdm_ctx_run_once(ctx, slice);
        if (r < 0)
            return r;
    }
}

int libdm__wait_for(libdm_ctx *ctx, const void *owner, bool (*done)(void *arg), void *arg,
                    uint64_t deadline_ms)
{
    const void *outer = ctx->blocking_for;
    int r;

    if (ctx->depth > 0)
        return -EDEADLK;
    if (!outer)
        ctx->blocking_for = owner;
    r = libdm__wait(ctx, done, arg, deadline_ms);
    ctx->blocking_for = outer;
    /* What the call held back is delivered from the loop, in order. */
    while (!outer && ctx->postponed) {
        libdm__timer *t = ctx->postponed;

        unpostpone(ctx, t);
        (void)libdm__defer(ctx, t);
    }
    return r;
}
