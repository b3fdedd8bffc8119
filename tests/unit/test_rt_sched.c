/*
 * test_rt_sched.c — the schedulers (also run under ThreadSanitizer by
 * `make check-tsan`): a process never runs on two threads at once, hand-
 * offs between processes lose nothing, idle schedulers sleep, and a fast
 * sender is slowed down by a long mailbox (backpressure).
 *
 * The test thread acts as a process through an inbox. Callbacks record
 * failures with CHECK(), never with Criterion's assertions. Counts are
 * exact; waits are receives with a timeout (the idle test alone sleeps,
 * because idleness is what it measures).
 */
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rt_harness.h"

enum { T_WORK = 0x100, T_DONE, T_GO, T_CHECK, T_TOKEN };

static void setup_four(void)
{
    rt_config_t cfg = {.schedulers = 4};
    start_with(&cfg);
}

static void setup_backpressure(void)
{
    rt_config_t cfg = {.schedulers = 2, .mailbox_high = 1000};
    start_with(&cfg);
}

static uint64_t cpu_time_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
}

/* ---- One process, one thread at a time ----------------------------------------------------- */

#define TARGETS 4
#define EXT_SENDERS 4
#define PROC_SENDERS 8
#define PER_SENDER (40000 / SCALE)

static atomic_int inside[TARGETS];
static atomic_long n_overlaps, n_handled;

typedef struct excl {
    int idx;
    uint64_t count;      /* plain: only the process touches it */
    pthread_t last_thread;
    uint64_t migrations; /* times it ran on another thread than before */
    uint64_t expect;
} excl_t;

typedef struct excl_arg {
    int idx;
    uint64_t expect;
} excl_arg_t;

static rt_reason_t *excl_init(void *arg, void **state)
{
    const excl_arg_t *a = arg;
    excl_t *e = calloc(1, sizeof *e);
    if (!e)
        return rt_reason_new("enomem");
    e->idx = a->idx;
    e->expect = a->expect;
    e->last_thread = pthread_self();
    *state = e;
    return NULL;
}

static void excl_info(void *state, rt_msg_t *m)
{
    excl_t *e = state;
    if (atomic_exchange(&inside[e->idx], 1) != 0)
        atomic_fetch_add(&n_overlaps, 1);
    if (!pthread_equal(e->last_thread, pthread_self())) {
        e->migrations++;
        e->last_thread = pthread_self();
    }
    if (m->tag == T_WORK) {
        /* A little work so that overlapping turns would overlap here. */
        volatile uint64_t x = m->a;
        for (int i = 0; i < 50; i++)
            x = x * 31 + (uint64_t)i;
        e->count++;
        atomic_fetch_add(&n_handled, 1);
        if (e->count == e->expect)
            result(T_DONE, (uint64_t)e->idx, e->count);
    } else if (m->tag == T_CHECK) {
        result(T_CHECK, e->count, e->migrations);
    }
    atomic_store(&inside[e->idx], 0);
}

static void excl_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t excl_beh =
    RT_BEHAVIOUR(.name = "excl", .init = excl_init, .handle_info = excl_info,
                 .handle_cast = excl_info, .terminate = excl_terminate);

static rt_pid_t targets[TARGETS];

/* Sender i sends PER_SENDER messages to target (i + k) % TARGETS for
 * k = 0, 1, ...: every target gets the same share. */
static void *ext_main(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    for (int k = 0; k < PER_SENDER; k++)
        CHECK(rt_send(targets[(id + (uintptr_t)k) % TARGETS], T_WORK, (uint64_t)k, id) == RT_OK);
    return NULL;
}

typedef struct psend {
    uint64_t id, next;
} psend_t;

static rt_reason_t *psend_init(void *arg, void **state)
{
    psend_t *s = calloc(1, sizeof *s);
    if (!s)
        return rt_reason_new("enomem");
    s->id = (uint64_t)(uintptr_t)arg;
    *state = s;
    return NULL;
}

static void psend_info(void *state, rt_msg_t *m)
{
    psend_t *s = state;
    for (int i = 0; i < 500 && s->next < PER_SENDER; i++, s->next++)
        CHECK(rt_cast(targets[(s->id + s->next) % TARGETS], T_WORK, s->next, s->id) == RT_OK);
    if (s->next < PER_SENDER)
        CHECK(rt_send(rt_self(), T_GO, 0, 0) == RT_OK);
}

static void psend_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t psend_beh = RT_BEHAVIOUR(
    .name = "psend", .init = psend_init, .handle_info = psend_info, .terminate = psend_terminate);

Test(sched, a_process_never_runs_on_two_threads_at_once, .init = setup_four, .fini = teardown,
     .timeout = 60)
{
    const uint64_t total = (uint64_t)(EXT_SENDERS + PROC_SENDERS) * PER_SENDER;
    static excl_arg_t args[TARGETS];
    for (int i = 0; i < TARGETS; i++) {
        args[i] = (excl_arg_t){.idx = i, .expect = total / TARGETS};
        cr_assert_eq(rt_spawn(&excl_beh, &args[i], NULL, &targets[i]), RT_OK);
    }
    pthread_t th[EXT_SENDERS];
    for (uintptr_t i = 0; i < EXT_SENDERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, ext_main, (void *)i), 0);
    for (uintptr_t i = 0; i < PROC_SENDERS; i++) {
        rt_pid_t p;
        cr_assert_eq(rt_spawn(&psend_beh, (void *)(EXT_SENDERS + i), NULL, &p), RT_OK);
        cr_assert_eq(rt_send(p, T_GO, 0, 0), RT_OK);
    }
    for (int i = 0; i < EXT_SENDERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < TARGETS; i++) {
        rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 45000);
        cr_assert_not_null(m, "%ld of %llu handled", atomic_load(&n_handled),
                           (unsigned long long)total);
        rt_msg_free(m);
    }
    uint64_t sum = 0, migrations = 0;
    for (int i = 0; i < TARGETS; i++) {
        report_t r;
        cr_assert_eq(rt_send(targets[i], T_CHECK, 0, 0), RT_OK);
        want_report((want_t){.kind = K_RESULT, .tag = T_CHECK, .by = targets[i]}, &r);
        cr_assert_eq(r.a, total / TARGETS);
        sum += r.a;
        migrations += r.b;
    }
    cr_assert_eq(sum, total);
    cr_assert_eq(atomic_load(&n_handled), (long)total);
    cr_assert_eq(atomic_load(&n_overlaps), 0, "a process ran on two threads at once %ld times",
                 atomic_load(&n_overlaps));
    cr_log_info("targets changed threads %llu times", (unsigned long long)migrations);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- A ring: scheduling hand-offs between processes ---------------------------------------------- */

#define RING 100
#define HOPS (200000 / SCALE)

static rt_pid_t ring[RING];

static rt_reason_t *ring_init(void *arg, void **state)
{
    *state = arg; /* its index, as a pointer-sized integer */
    return NULL;
}

static void ring_info(void *state, rt_msg_t *m)
{
    uintptr_t i = (uintptr_t)state;
    if (m->tag != T_TOKEN)
        return;
    CHECK(m->a % RING == i);
    if (m->a + 1 == HOPS) {
        result(T_DONE, m->a + 1, 0);
        return;
    }
    CHECK(rt_send(ring[(i + 1) % RING], T_TOKEN, m->a + 1, 0) == RT_OK);
}

static const rt_behaviour_t ring_beh =
    RT_BEHAVIOUR(.name = "ring", .init = ring_init, .handle_info = ring_info);

Test(sched, tokens_go_round_a_ring_exactly, .init = setup_four, .fini = teardown,
     .timeout = 60)
{
    for (uintptr_t i = 0; i < RING; i++)
        cr_assert_eq(rt_spawn(&ring_beh, (void *)i, NULL, &ring[i]), RT_OK);
    cr_assert_eq(rt_send(ring[0], T_TOKEN, 0, 0), RT_OK);
    report_t r;
    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 45000);
    cr_assert_not_null(m, "the token got lost");
    r = *(const report_t *)m->data;
    rt_msg_free(m);
    cr_assert_eq(r.a, HOPS);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Idle schedulers sleep ------------------------------------------------------------------------- */

Test(sched, idle_schedulers_use_no_cpu, .init = setup_four, .fini = teardown, .timeout = 60)
{
    /* Some work first, so every scheduler has run. */
    for (uintptr_t i = 0; i < RING; i++)
        cr_assert_eq(rt_spawn(&ring_beh, (void *)i, NULL, &ring[i]), RT_OK);
    cr_assert_eq(rt_send(ring[0], T_TOKEN, 0, 0), RT_OK);
    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 45000);
    cr_assert_not_null(m);
    rt_msg_free(m);
    /* Idle, but with live processes and a timer far in the future. */
    cr_assert_neq(rt_send_after(60000, ring[0], rt_msg_new(T_WORK)), 0);
    rt_pid_t p = spawn_puppet(0, NULL);
    ping(p);

    /* The thing measured is idleness itself, so this one has to sleep. */
    uint64_t c0 = cpu_time_us(), t0 = rt_now_ms();
    usleep(300 * 1000);
    uint64_t c1 = cpu_time_us(), t1 = rt_now_ms();
    cr_assert_geq(t1 - t0, 300);
    cr_assert_lt(c1 - c0, 50000, "idle runtime used %llu us of CPU in %llu ms",
                 (unsigned long long)(c1 - c0), (unsigned long long)(t1 - t0));
    /* And it still works afterwards. */
    ping(p);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Backpressure ---------------------------------------------------------------------------------- */

#define BP_TOTAL (1000000 / SCALE)
#define BP_CHUNK 1000
#define BP_HIGH 1000

static _Atomic uint32_t peak_len;
static rt_pid_t bp_consumer;

static void note_len(uint32_t n)
{
    uint32_t cur = atomic_load(&peak_len);
    while (n > cur && !atomic_compare_exchange_weak(&peak_len, &cur, n))
        ;
}

typedef struct slow {
    uint64_t next;
} slow_t;

static rt_reason_t *slow_init(void *arg, void **state)
{
    *state = calloc(1, sizeof(slow_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static void slow_cast(void *state, rt_msg_t *m)
{
    slow_t *s = state;
    CHECK(m->a == s->next);
    s->next = m->a + 1;
    volatile uint64_t x = m->a;
    for (int i = 0; i < 200; i++) /* slower than the producer */
        x = x * 31 + (uint64_t)i;
    if ((s->next & 63) == 0) {
        rt_proc_info_t info;
        if (rt_process_info(rt_self(), &info) == RT_OK)
            note_len(info.mailbox_len);
    }
    if (s->next == BP_TOTAL)
        result(T_DONE, s->next, 0);
}

static void slow_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t slow_beh = RT_BEHAVIOUR(
    .name = "slow", .init = slow_init, .handle_cast = slow_cast, .terminate = slow_terminate);

static void producer_info(void *state, rt_msg_t *m)
{
    psend_t *s = state;
    if (m->tag != T_GO)
        return;
    for (int i = 0; i < BP_CHUNK && s->next < BP_TOTAL; i++, s->next++)
        CHECK(rt_cast(bp_consumer, T_WORK, s->next, 0) == RT_OK);
    rt_proc_info_t info;
    if (rt_process_info(bp_consumer, &info) == RT_OK)
        note_len(info.mailbox_len);
    if (s->next < BP_TOTAL)
        CHECK(rt_send(rt_self(), T_GO, 0, 0) == RT_OK);
}

static const rt_behaviour_t producer_beh = RT_BEHAVIOUR(
    .name = "producer", .init = psend_init, .handle_info = producer_info,
    .terminate = psend_terminate);

Test(sched, a_fast_sender_is_paused_by_a_long_mailbox, .init = setup_backpressure,
     .fini = teardown, .timeout = 60)
{
    cr_assert_eq(rt_spawn(&slow_beh, NULL, NULL, &bp_consumer), RT_OK);
    rt_pid_t p;
    cr_assert_eq(rt_spawn(&producer_beh, NULL, NULL, &p), RT_OK);
    cr_assert_eq(rt_send(p, T_GO, 0, 0), RT_OK);
    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 50000);
    cr_assert_not_null(m, "the consumer did not get all %d messages", BP_TOTAL);
    rt_msg_free(m);
    uint32_t peak = atomic_load(&peak_len);
    cr_log_info("peak mailbox length %u (high watermark %d)", peak, BP_HIGH);
    cr_assert_lt(peak, 10 * BP_HIGH, "the consumer's mailbox reached %u with mailbox_high %d",
                 peak, BP_HIGH);
    ASSERT_NO_BAD_CHECKS();
}
