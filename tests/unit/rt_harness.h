/*
 * rt_harness.h — the harness shared by the runtime tests (test_rt_*.c).
 * Included by exactly one .c file per test binary: it defines static
 * functions and data (all marked unused, since not every file uses every
 * helper). The scheduler, mailbox, stress and executor tests
 * (test_rt_sched*, test_rt_mailbox*, test_rt_stress*) are also compiled for
 * ThreadSanitizer against tests/tsan/criterion/criterion.h, so only what
 * that stand-in implements is used here: cr_assert, cr_assert_not,
 * cr_assert_eq/neq/lt, cr_assert_not_null.
 *
 * The test thread acts as a process through an inbox (ib, pid me).
 * Callbacks run on scheduler threads, where Criterion's assertions must not
 * be used (they unwind the test thread), so a callback records a failed
 * check with CHECK() and the test asserts afterwards that no check failed
 * (ASSERT_NO_BAD_CHECKS). Every wait is a receive with a timeout.
 *
 * The puppet is a process the test drives: T_RUN runs a function inside
 * it (run_in), T_PING answers (ping), everything else it receives is
 * reported to the test as a report_t (want_report, take).
 */
#ifndef ROOST_TESTS_RT_HARNESS_H
#define ROOST_TESTS_RT_HARNESS_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/rt.h"

#define HARNESS static __attribute__((unused))

/* Sizes: smaller under ThreadSanitizer, which is ~10x slower. */
#if defined(__SANITIZE_THREAD__)
#define SCALE 4
#define SIZED(plain, tsan) (tsan)
#else
#define SCALE 1
#define SIZED(plain, tsan) (plain)
#endif

#define WAIT_MS 5000 /* an event that has not come in 5 s is not coming */

HARNESS rt_inbox_t *ib;
HARNESS rt_pid_t me;

HARNESS atomic_int bad;      /* failed CHECKs inside callbacks */
HARNESS atomic_int bad_line; /* the first one's line */
#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            int zero_ = 0;                                                    \
            atomic_fetch_add(&bad, 1);                                        \
            atomic_compare_exchange_strong(&bad_line, &zero_, __LINE__);      \
        }                                                                     \
    } while (0)
#define ASSERT_NO_BAD_CHECKS()                                                \
    cr_assert_eq(atomic_load(&bad), 0, "a check inside a callback failed (line %d)", \
                 atomic_load(&bad_line))

/* Messages taken from the inbox while looking for another one wait here,
 * in arrival order, so nothing is lost or reordered. */
#define STASH_MAX 4096
HARNESS rt_msg_t *stash[STASH_MAX];
HARNESS size_t nstash;

HARNESS void stash_clear(void)
{
    for (size_t i = 0; i < nstash; i++)
        rt_msg_free(stash[i]);
    nstash = 0;
}

HARNESS void start_with(const rt_config_t *cfg)
{
    cr_assert_eq(rt_runtime_start(cfg), RT_OK);
    ib = rt_inbox_open(0);
    cr_assert_not_null(ib);
    me = rt_inbox_pid(ib);
    cr_assert_neq(me, RT_NOPID);
}

HARNESS void setup(void) { start_with(NULL); }

HARNESS void setup_one_sched(void)
{
    rt_config_t cfg = {.schedulers = 1};
    start_with(&cfg);
}

HARNESS void teardown(void)
{
    stash_clear();
    if (ib)
        rt_inbox_close(ib);
    ib = NULL;
    rt_runtime_stop();
}

/* What a puppet tells the test about a message it handled, or a result. */
#define K_RESULT 200 /* report kind for results of code run in a process */
typedef struct report {
    rt_pid_t by;   /* the process that handled the message */
    rt_pid_t from;
    uint64_t ref, a, b, c;
    uint64_t t_ms; /* rt_now_ms() when the report was made */
    uint32_t tag;
    uint16_t kind;
    uint8_t flags;
    const void *data;
    int rcode; /* the reason's code, or -1 */
    char reason[160];
} report_t;

enum {
    T_REPORT = 0x7e570000, /* to the test: data is a report_t */
    T_RUN,                 /* to a puppet: a = function, b = argument */
    T_PING,
    T_SENTINEL,            /* a timer a puppet sets itself (fn_sentinel) */
};

/* Matching a message: 0 fields match anything. With rep, only reports
 * match and the fields are the report's; else the raw message's (by is
 * compared with from). */
typedef struct want {
    bool rep;
    uint16_t kind;
    uint64_t ref;
    uint32_t tag;
    rt_pid_t by;
} want_t;

HARNESS bool is_report(const rt_msg_t *m)
{
    return m->kind == RT_MSG_INFO && m->tag == T_REPORT && m->data != NULL;
}

HARNESS bool matches(const rt_msg_t *m, const want_t *w)
{
    if (w->rep) {
        if (!is_report(m))
            return false;
        const report_t *r = m->data;
        return (!w->kind || r->kind == w->kind) && (!w->ref || r->ref == w->ref) &&
               (!w->tag || r->tag == w->tag) && (!w->by || r->by == w->by);
    }
    return (!w->kind || m->kind == w->kind) && (!w->ref || m->ref == w->ref) &&
           (!w->tag || m->tag == w->tag) && (!w->by || m->from == w->by);
}

/* The first message (stash first, then the inbox) matching w, or NULL
 * after timeout_ms. The caller frees it. */
HARNESS rt_msg_t *take(want_t w, int timeout_ms)
{
    for (size_t i = 0; i < nstash; i++) {
        if (matches(stash[i], &w)) {
            rt_msg_t *m = stash[i];
            memmove(&stash[i], &stash[i + 1], (nstash - i - 1) * sizeof stash[0]);
            nstash--;
            return m;
        }
    }
    uint64_t deadline = rt_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = rt_now_ms();
        int left = now >= deadline ? 0 : (int)(deadline - now);
        rt_msg_t *m = rt_inbox_recv(ib, left);
        if (!m)
            return NULL;
        if (matches(m, &w))
            return m;
        cr_assert_lt(nstash, STASH_MAX, "too many unexpected messages");
        stash[nstash++] = m;
    }
}

/* The next message in arrival order, or NULL after timeout_ms. */
HARNESS rt_msg_t *next_msg(int timeout_ms)
{
    if (nstash) {
        rt_msg_t *m = stash[0];
        memmove(&stash[0], &stash[1], (nstash - 1) * sizeof stash[0]);
        nstash--;
        return m;
    }
    return rt_inbox_recv(ib, timeout_ms);
}

/* Waits for a report matching w and copies it to *out. */
HARNESS void want_report(want_t w, report_t *out)
{
    w.rep = true;
    rt_msg_t *m = take(w, WAIT_MS);
    cr_assert_not_null(m, "no report (kind %u tag %#x) within %d ms", w.kind, w.tag, WAIT_MS);
    *out = *(const report_t *)m->data;
    rt_msg_free(m);
}

/* Waits for the DOWN of monitor ref and returns its reason's text in buf. */
HARNESS void want_down(uint64_t ref, char *buf, size_t cap)
{
    rt_msg_t *m = take((want_t){.kind = RT_MSG_DOWN, .ref = ref}, WAIT_MS);
    cr_assert_not_null(m, "no DOWN for monitor %llu", (unsigned long long)ref);
    rt_reason_t *why = rt_msg_reason(m);
    cr_assert_not_null(why);
    snprintf(buf, cap, "%s", why->text);
    rt_msg_free(m);
}

/* Sends the test a report of m (NULL: a result) with these fields. */
HARNESS void send_report3(const rt_msg_t *m, uint16_t kind, uint32_t tag, uint64_t a, uint64_t b,
                          uint64_t c)
{
    report_t *r = calloc(1, sizeof *r);
    CHECK(r != NULL);
    if (!r)
        return;
    r->by = rt_self();
    r->kind = kind;
    r->tag = tag;
    r->a = a;
    r->b = b;
    r->c = c;
    r->t_ms = rt_now_ms();
    r->rcode = -1;
    if (m) {
        r->from = m->from;
        r->ref = m->ref;
        r->flags = m->flags;
        r->data = m->data;
        rt_reason_t *why = rt_msg_reason(m);
        if (why) {
            r->rcode = (int)why->code;
            snprintf(r->reason, sizeof r->reason, "%s", why->text);
        }
    }
    rt_msg_t *out = rt_msg_new(T_REPORT);
    CHECK(out != NULL);
    if (!out) {
        free(r);
        return;
    }
    rt_msg_set_data(out, r, RT_OWN_FREE);
    rt_send_msg(me, out);
}

HARNESS void send_report(const rt_msg_t *m, uint16_t kind, uint32_t tag, uint64_t a, uint64_t b)
{
    send_report3(m, kind, tag, a, b, 0);
}

/* From inside a process: tell the test a result. */
HARNESS void result(uint32_t tag, uint64_t a, uint64_t b)
{
    send_report3(NULL, K_RESULT, tag, a, b, 0);
}

HARNESS void result3(uint32_t tag, uint64_t a, uint64_t b, uint64_t c)
{
    send_report3(NULL, K_RESULT, tag, a, b, c);
}

/* For init callbacks: a zeroed state of `size` bytes in *state, or the
 * reason enomem. */
HARNESS rt_reason_t *new_state(size_t size, void **state)
{
    *state = calloc(1, size);
    return *state ? NULL : rt_reason_new("enomem");
}

/* ---- The puppet: a process the test drives ------------------------------
 * T_RUN runs a function inside the process, T_PING answers with a result
 * T_PING, every other message is reported to the test as it was seen. */
typedef struct puppet {
    uint64_t v[4];
    void *held;
} puppet_t;
typedef void (*pfn_t)(puppet_t *p, uint64_t arg);

HARNESS rt_reason_t *puppet_init(void *arg, void **state)
{
    return new_state(sizeof(puppet_t), state);
}

HARNESS void puppet_report(void *state, rt_msg_t *m)
{
    send_report(m, m->kind, m->tag, m->a, m->b);
}

HARNESS void puppet_info(void *state, rt_msg_t *m)
{
    if (m->kind == RT_MSG_INFO && m->tag == T_RUN) {
        ((pfn_t)(uintptr_t)m->a)(state, m->b);
        return;
    }
    if (m->kind == RT_MSG_INFO && m->tag == T_PING) {
        result(T_PING, m->a, 0);
        return;
    }
    puppet_report(state, m);
}

HARNESS void puppet_terminate(void *state, rt_reason_t *reason) { free(state); }

HARNESS const rt_behaviour_t puppet_beh = RT_BEHAVIOUR(
    .name = "puppet", .version = 1, .init = puppet_init, .handle_cast = puppet_report,
    .handle_info = puppet_info, .terminate = puppet_terminate);

HARNESS rt_pid_t spawn_puppet(uint32_t flags, uint64_t *mref)
{
    rt_spawn_opts_t o = {.flags = flags | (mref ? RT_SPAWN_MONITOR : 0)};
    rt_pid_t pid = RT_NOPID;
    cr_assert_eq(rt_inbox_spawn(ib, &puppet_beh, NULL, &o, &pid), RT_OK);
    cr_assert_neq(pid, RT_NOPID);
    if (mref)
        *mref = o.monitor_ref;
    return pid;
}

HARNESS void run_in(rt_pid_t pid, pfn_t fn, uint64_t arg)
{
    cr_assert_eq(rt_send(pid, T_RUN, (uint64_t)(uintptr_t)fn, arg), RT_OK);
}

/* Round trip: every message sent to pid before this has been handled. */
HARNESS void ping(rt_pid_t pid)
{
    static uint64_t nonce;
    report_t r;
    cr_assert_eq(rt_send(pid, T_PING, ++nonce, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_PING, .by = pid}, &r);
    cr_assert_eq(r.a, nonce);
}

/* A timer the puppet sends itself: when its report comes, anything the
 * puppet would have got before it has come too. */
HARNESS void fn_sentinel(puppet_t *p, uint64_t ms)
{
    CHECK(rt_send_after((int)ms, rt_self(), rt_msg_new(T_SENTINEL)) != 0);
}

/* The next report from pid must be its sentinel timer (set `ms` from now):
 * nothing else was queued for it before. */
HARNESS void expect_sentinel_next(rt_pid_t pid, int ms)
{
    report_t r;
    run_in(pid, fn_sentinel, (uint64_t)ms);
    want_report((want_t){.by = pid}, &r);
    cr_assert(r.kind == RT_MSG_TIMER && r.tag == T_SENTINEL,
              "unexpected message before the sentinel: kind %u tag %#x ref %llu reason %s",
              r.kind, r.tag, (unsigned long long)r.ref, r.reason);
}

/* ---- A counted payload ---------------------------------------------------
 * An RT_OWN_RC payload whose destructor checks it was not freed before and
 * counts itself in n_dtor. */
#define RCOBJ_MAGIC 0xABCDu
typedef struct rcobj {
    rt_rc_t rc;
    uint64_t magic;
} rcobj_t;

HARNESS atomic_int n_dtor; /* payload destructors run (rcobj and the like) */

HARNESS void rcobj_dtor(rt_rc_t *rc)
{
    rcobj_t *o = RT_CONTAINER_OF(rc, rcobj_t, rc);
    CHECK(o->magic == RCOBJ_MAGIC);
    o->magic = 0;
    free(o);
    atomic_fetch_add(&n_dtor, 1);
}

/* Any thread: a payload holding one reference, or NULL on ENOMEM. */
HARNESS rcobj_t *rcobj_try_new(void)
{
    rcobj_t *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    rt_rc_init(&o->rc, rcobj_dtor);
    o->magic = RCOBJ_MAGIC;
    return o;
}

/* The test thread: the same, asserting it was allocated. */
HARNESS rcobj_t *rcobj_new(void)
{
    rcobj_t *o = rcobj_try_new();
    cr_assert_not_null(o);
    return o;
}

/* Kills pid (monitored by the test with mref) and waits for its DOWN. */
HARNESS void kill_and_wait(rt_pid_t pid, uint64_t mref)
{
    cr_assert_eq(rt_exit(pid, RT_KILL), RT_OK);
    char why[64];
    want_down(mref, why, sizeof why);
    cr_assert_not(rt_is_alive(pid));
}

#endif
