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
#include <pthread.h>

#include "rt_harness.h"

/* ---- Sizes (SCALE: smaller under ThreadSanitizer) ------------------------------------------ */

#define PER_SENDER (200000 / SCALE)
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

#define INBOX_N SIZED(50000, 5000)

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
