/*
 * test_rt_mailbox.c — mailboxes under concurrency (also run under
 * ThreadSanitizer by `make check-tsan`): many senders (external threads
 * and processes) to one process keep per-sender FIFO order and lose
 * nothing; messages from plain pthreads are delivered.
 *
 * The test thread acts as a process through an inbox. Callbacks record
 * failures with CHECK(), never with Criterion's assertions. Counts are
 * exact; waits are receives with a timeout.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/rt.h"

/* ---- Harness --------------------------------------------------------------
 * The same in every test_rt_*.c file; not every file uses every helper. */
#define HARNESS static __attribute__((unused))

#define WAIT_MS 5000 /* an event that has not come in 5 s is not coming */

static rt_inbox_t *ib;
static rt_pid_t me;

static atomic_int bad;      /* failed CHECKs inside callbacks */
static atomic_int bad_line; /* the first one's line */
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
static rt_msg_t *stash[STASH_MAX];
static size_t nstash;

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

HARNESS void send_report(const rt_msg_t *m, uint16_t kind, uint32_t tag, uint64_t a, uint64_t b)
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

/* From inside a process: tell the test a result. */
HARNESS void result(uint32_t tag, uint64_t a, uint64_t b)
{
    send_report(NULL, K_RESULT, tag, a, b);
}

/* ---- The puppet: a process the test drives ------------------------------
 * T_RUN runs a function inside the process, T_PING answers with a result
 * T_PING, every other message is reported to the test as it was seen. */
typedef struct puppet {
    uint64_t v[4];
    void *held;
} puppet_t;
typedef void (*pfn_t)(puppet_t *p, uint64_t arg);

static rt_reason_t *puppet_init(void *arg, void **state)
{
    puppet_t *p = calloc(1, sizeof *p);
    if (!p)
        return rt_reason_new("enomem");
    *state = p;
    return NULL;
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

static const rt_behaviour_t puppet_beh = RT_BEHAVIOUR(
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


/* ---- Sizes: smaller under ThreadSanitizer, which is ~10x slower ---------------------------- */

#if defined(__SANITIZE_THREAD__)
#define PER_SENDER 50000
#else
#define PER_SENDER 200000
#endif
#define EXT_SENDERS 4
#define PROC_SENDERS 4
#define SENDERS (EXT_SENDERS + PROC_SENDERS)
#define CHUNK 1000

enum { T_DATA = 0x100, T_DONE, T_GO, T_CHECK, T_FROM_THREAD };

/* ---- The consumer: checks per-sender order and counts --------------------------------------- */

static atomic_long n_order_errors;

typedef struct consumer {
    uint64_t next[SENDERS]; /* next expected sequence number per sender */
    uint64_t total, expect;
} consumer_t;

static rt_reason_t *consumer_init(void *arg, void **state)
{
    consumer_t *c = calloc(1, sizeof *c);
    if (!c)
        return rt_reason_new("enomem");
    c->expect = *(const uint64_t *)arg;
    *state = c;
    return NULL;
}

static void consumer_info(void *state, rt_msg_t *m)
{
    consumer_t *c = state;
    if (m->tag == T_DATA) {
        uint64_t s = m->b;
        if (s >= SENDERS || m->a != c->next[s])
            atomic_fetch_add(&n_order_errors, 1);
        if (s < SENDERS)
            c->next[s] = m->a + 1;
        if (++c->total == c->expect)
            result(T_DONE, c->total, 0);
    } else if (m->tag == T_CHECK) {
        uint64_t ok = 1;
        for (int i = 0; i < SENDERS; i++)
            if (c->next[i] != (uint64_t)PER_SENDER)
                ok = 0;
        result(T_CHECK, c->total, ok);
    }
}

static void consumer_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t consumer_beh =
    RT_BEHAVIOUR(.name = "consumer", .init = consumer_init, .handle_info = consumer_info,
                 .handle_cast = consumer_info, .terminate = consumer_terminate);

/* ---- Senders ----------------------------------------------------------------------------------- */

typedef struct ext_sender {
    pthread_t th;
    rt_pid_t to;
    uint64_t id;
    long failed;
} ext_sender_t;

static void *ext_sender_main(void *arg)
{
    ext_sender_t *s = arg;
    for (uint64_t i = 0; i < PER_SENDER; i++) {
        int rc = (i & 1) ? rt_send(s->to, T_DATA, i, s->id) : rt_cast(s->to, T_DATA, i, s->id);
        if (rc != RT_OK)
            s->failed++;
    }
    return NULL;
}

typedef struct proc_sender {
    rt_pid_t to;
    uint64_t id, next;
} proc_sender_t;

static rt_reason_t *psender_init(void *arg, void **state)
{
    proc_sender_t *s = malloc(sizeof *s);
    if (!s)
        return rt_reason_new("enomem");
    *s = *(const proc_sender_t *)arg;
    *state = s;
    return NULL;
}

/* Sends a chunk, then asks itself to go on: other processes run between
 * chunks. */
static void psender_info(void *state, rt_msg_t *m)
{
    proc_sender_t *s = state;
    if (m->tag != T_GO)
        return;
    for (int i = 0; i < CHUNK && s->next < PER_SENDER; i++, s->next++)
        CHECK(rt_send(s->to, T_DATA, s->next, s->id) == RT_OK);
    if (s->next < PER_SENDER)
        CHECK(rt_send(rt_self(), T_GO, 0, 0) == RT_OK);
}

static void psender_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t psender_beh =
    RT_BEHAVIOUR(.name = "sender", .init = psender_init, .handle_info = psender_info,
                 .terminate = psender_terminate);

/* ---- Tests ---------------------------------------------------------------------------------------- */

Test(mailbox, many_senders_keep_their_order_and_lose_nothing, .init = setup, .fini = teardown,
     .timeout = 60)
{
    uint64_t expect = (uint64_t)SENDERS * PER_SENDER;
    rt_pid_t c = RT_NOPID;
    cr_assert_eq(rt_spawn(&consumer_beh, &expect, NULL, &c), RT_OK);

    ext_sender_t ext[EXT_SENDERS];
    for (int i = 0; i < EXT_SENDERS; i++) {
        ext[i] = (ext_sender_t){.to = c, .id = (uint64_t)i};
        cr_assert_eq(pthread_create(&ext[i].th, NULL, ext_sender_main, &ext[i]), 0);
    }
    static proc_sender_t args[PROC_SENDERS]; /* borrowed until init returns */
    for (int i = 0; i < PROC_SENDERS; i++) {
        args[i] = (proc_sender_t){.to = c, .id = (uint64_t)(EXT_SENDERS + i)};
        rt_pid_t p;
        cr_assert_eq(rt_spawn(&psender_beh, &args[i], NULL, &p), RT_OK);
        cr_assert_eq(rt_send(p, T_GO, 0, 0), RT_OK);
    }
    for (int i = 0; i < EXT_SENDERS; i++) {
        pthread_join(ext[i].th, NULL);
        cr_assert_eq(ext[i].failed, 0);
    }
    report_t r;
    rt_msg_t *done = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE, .by = c}, 45000);
    cr_assert_not_null(done, "the consumer never got all %llu messages", (unsigned long long)expect);
    rt_msg_free(done);
    cr_assert_eq(rt_send(c, T_CHECK, 0, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_CHECK, .by = c}, &r);
    cr_assert_eq(r.a, expect, "received %llu, sent %llu", (unsigned long long)r.a,
                 (unsigned long long)expect);
    cr_assert_eq(r.b, 1, "some sender's messages are missing");
    cr_assert_eq(atomic_load(&n_order_errors), 0, "%ld messages out of order",
                 atomic_load(&n_order_errors));
    ASSERT_NO_BAD_CHECKS();
}

static void *thread_sends(void *arg)
{
    rt_pid_t to = *(rt_pid_t *)arg;
    CHECK(rt_self() == RT_NOPID);
    CHECK(rt_send(to, T_FROM_THREAD, 1, 2) == RT_OK);
    CHECK(rt_cast(to, T_FROM_THREAD, 3, 4) == RT_OK);
    rt_msg_t *m = rt_msg_new(T_FROM_THREAD);
    char *buf = malloc(16);
    CHECK(m && buf);
    if (m && buf) {
        strcpy(buf, "from a pthread");
        m->a = 5;
        rt_msg_set_data(m, buf, RT_OWN_FREE);
        CHECK(rt_send_msg(to, m) == RT_OK);
    }
    return NULL;
}

Test(mailbox, messages_from_a_plain_pthread_are_delivered, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t p = spawn_puppet(0, NULL);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_sends, &p), 0);
    pthread_join(th, NULL);
    report_t r;
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_INFO);
    cr_assert_eq(r.tag, T_FROM_THREAD);
    cr_assert_eq(r.a, 1);
    cr_assert_eq(r.b, 2);
    cr_assert_eq(r.from, RT_NOPID);
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_CAST);
    cr_assert_eq(r.a, 3);
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_INFO);
    cr_assert_eq(r.a, 5);
    cr_assert_not_null(r.data);

    /* And straight to the test's own inbox. */
    pthread_t th2;
    cr_assert_eq(pthread_create(&th2, NULL, thread_sends, &me), 0);
    pthread_join(th2, NULL);
    for (int i = 0; i < 3; i++) {
        rt_msg_t *m = take((want_t){.tag = T_FROM_THREAD}, WAIT_MS);
        cr_assert_not_null(m);
        if (i == 2)
            cr_assert_str_eq((const char *)m->data, "from a pthread");
        rt_msg_free(m);
    }
    ASSERT_NO_BAD_CHECKS();
}

typedef struct inbox_sender {
    pthread_t th;
    uint64_t id;
} inbox_sender_t;

#if defined(__SANITIZE_THREAD__)
#define INBOX_N 5000
#else
#define INBOX_N 50000
#endif

static void *inbox_sender_main(void *arg)
{
    inbox_sender_t *s = arg;
    for (uint64_t i = 0; i < INBOX_N; i++)
        CHECK(rt_send(me, T_DATA, i, s->id) == RT_OK);
    return NULL;
}

Test(mailbox, an_inbox_keeps_per_sender_order_from_many_threads, .init = setup,
     .fini = teardown, .timeout = 60)
{
    enum { NT = 4 };
    inbox_sender_t s[NT];
    for (int i = 0; i < NT; i++) {
        s[i] = (inbox_sender_t){.id = (uint64_t)i};
        cr_assert_eq(pthread_create(&s[i].th, NULL, inbox_sender_main, &s[i]), 0);
    }
    uint64_t next[NT] = {0};
    for (long n = 0; n < (long)NT * INBOX_N; n++) {
        rt_msg_t *m = rt_inbox_recv(ib, WAIT_MS);
        cr_assert_not_null(m, "only %ld of %ld arrived", n, (long)NT * INBOX_N);
        cr_assert_eq(m->tag, T_DATA);
        cr_assert_lt(m->b, NT);
        cr_assert_eq(m->a, next[m->b], "sender %llu: got %llu after %llu", (unsigned long long)m->b,
                     (unsigned long long)m->a, (unsigned long long)next[m->b]);
        next[m->b]++;
        rt_msg_free(m);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(s[i].th, NULL);
    cr_assert_eq(rt_inbox_pending(ib), 0);
    ASSERT_NO_BAD_CHECKS();
}
