/*
 * test_rt_sched_ring.c — the schedulers' run queues (src/rt/sched.c): the
 * lock-free ring each scheduler pushes into, the locked overflow behind
 * it, thieves taking half of a ring, and the sleep/wake rule. Also run
 * under ThreadSanitizer by `make check-tsan` (the file name matches
 * test_rt_sched*).
 *
 * What would break if the ring did, and the test that would see it:
 *  - a process handed to two takers (owner and thief, or two thieves):
 *    it runs on two threads at once, or a message is handled twice —
 *    every behaviour here flags a second thread inside it, and counts
 *    each message it sees;
 *  - a process dropped by a spill, a refill or a steal: its message is
 *    never handled and the bounded wait for it times out;
 *  - a lost wake-up: all schedulers asleep with work queued, so the
 *    bounded wait times out;
 *  - the overflow starved behind a ring that never empties.
 *
 * Every wait is a receive with a timeout or a bounded poll of a counter;
 * nothing sleeps to synchronise. Callbacks record failures with CHECK().
 */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "rt/rt_internal.h"
#include "rt_harness.h"

enum { T_WORK = 0x100, T_ACK, T_GO, T_DONE, T_WOKE, T_LOOP, T_READY };

static void setup_four(void)
{
    /* More schedulers than the machine's cores (2 here): threads are
     * preempted in the middle of pushes, pops and steals. */
    rt_config_t cfg = {.schedulers = 4};
    start_with(&cfg);
}

static void setup_one(void)
{
    rt_config_t cfg = {.schedulers = 1};
    start_with(&cfg);
}

/* The arrays the behaviours share with the test. A callback may still be
 * on its way out after its last report, so they are freed only once the
 * runtime has stopped (its threads joined). */
static rt_pid_t *fan_workers, *mp_targets, *sl_workers, *fair_workers, *ovf_workers;
static atomic_int *fan_inside, *mp_inside, *ovf_count;
static _Atomic uint8_t *mp_seen; /* [sender * MP_MSGS + k]: times handled */

static void teardown_ring(void)
{
    teardown();
    free(fan_workers);
    free(fan_inside);
    free(mp_targets);
    free(mp_inside);
    free((void *)mp_seen);
    free(sl_workers);
    free(fair_workers);
    free(ovf_workers);
    free(ovf_count);
}

static void log_counts(const char *what)
{
    rt_sched_counts_t c;
    rt__sched_counts(&c);
    cr_log_info("%s: %llu spills, %llu steals moving %llu processes, %llu batch grabs", what,
                (unsigned long long)c.spills, (unsigned long long)c.steals,
                (unsigned long long)c.stolen, (unsigned long long)c.grabs);
}

/* A behaviour's "one thread at a time" check: a flag per process that a
 * second thread would find already set. */
static atomic_long n_overlaps;

static void enter(atomic_int *inside)
{
    if (atomic_exchange(inside, 1) != 0)
        atomic_fetch_add(&n_overlaps, 1);
}

static void leave(atomic_int *inside) { atomic_store(inside, 0); }

static void spin_a_little(uint64_t seed)
{
    /* Long enough that two overlapping turns would overlap here. */
    volatile uint64_t x = seed;
    for (int i = 0; i < 40; i++)
        x = x * 31 + (uint64_t)i;
}

/* ---- Rounds of fan-out: one hub wakes every worker at once ------------------------------
 * Each round puts all the workers on the hub's scheduler (far more than a
 * ring holds, so it spills), and the three idle schedulers steal from its
 * ring and its overflow. Every worker must see every round exactly once
 * and in order; the hub must get exactly one ack per worker per round. */

#define FAN_WORKERS SIZED(3000, 700)
#define FAN_ROUNDS SIZED(60, 12)

static rt_pid_t fan_hub;
static atomic_long fan_handled;

typedef struct fworker {
    uint32_t idx;
    uint64_t last_round;
} fworker_t;

static rt_reason_t *fworker_init(void *arg, void **state)
{
    fworker_t *w = calloc(1, sizeof *w);
    if (!w)
        return rt_reason_new("enomem");
    w->idx = (uint32_t)(uintptr_t)arg;
    *state = w;
    return NULL;
}

static void fworker_info(void *state, rt_msg_t *m)
{
    fworker_t *w = state;
    enter(&fan_inside[w->idx]);
    if (m->tag == T_WORK) {
        CHECK(m->a == w->last_round + 1); /* each round once, in order */
        w->last_round = m->a;
        spin_a_little(m->a);
        atomic_fetch_add(&fan_handled, 1);
        CHECK(rt_send(fan_hub, T_ACK, m->a, w->idx) == RT_OK);
    }
    leave(&fan_inside[w->idx]);
}

static void free_state(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t fworker_beh = RT_BEHAVIOUR(
    .name = "fan_worker", .init = fworker_init, .handle_info = fworker_info,
    .terminate = free_state);

typedef struct fhub {
    uint64_t round, acks;
    uint64_t *seen; /* round in which each worker last acked */
} fhub_t;

static rt_reason_t *fhub_init(void *arg, void **state)
{
    fhub_t *h = calloc(1, sizeof *h);
    if (!h)
        return rt_reason_new("enomem");
    h->seen = calloc(FAN_WORKERS, sizeof *h->seen);
    if (!h->seen) {
        free(h);
        return rt_reason_new("enomem");
    }
    *state = h;
    return NULL;
}

static void fhub_info(void *state, rt_msg_t *m)
{
    fhub_t *h = state;
    if (m->tag == T_GO) {
        h->round++;
        h->acks = 0;
        /* All in one callback: every worker lands on this scheduler. */
        for (uint32_t i = 0; i < FAN_WORKERS; i++)
            CHECK(rt_send(fan_workers[i], T_WORK, h->round, 0) == RT_OK);
        return;
    }
    if (m->tag != T_ACK)
        return;
    CHECK(m->a == h->round);
    CHECK(m->b < FAN_WORKERS);
    if (m->b >= FAN_WORKERS)
        return;
    CHECK(h->seen[m->b] != h->round); /* no second ack this round */
    h->seen[m->b] = h->round;
    if (++h->acks < FAN_WORKERS)
        return;
    if (h->round == FAN_ROUNDS)
        result(T_DONE, h->round, h->acks);
    else
        CHECK(rt_send(rt_self(), T_GO, 0, 0) == RT_OK);
}

static void fhub_terminate(void *state, rt_reason_t *reason)
{
    fhub_t *h = state;
    free(h->seen);
    free(h);
}

static const rt_behaviour_t fhub_beh = RT_BEHAVIOUR(
    .name = "fan_hub", .init = fhub_init, .handle_info = fhub_info,
    .terminate = fhub_terminate);

Test(ring, fan_out_rounds_reach_every_worker_exactly_once_while_thieves_steal,
     .init = setup_four, .fini = teardown_ring, .timeout = 120)
{
    fan_workers = calloc(FAN_WORKERS, sizeof *fan_workers);
    fan_inside = calloc(FAN_WORKERS, sizeof *fan_inside);
    cr_assert(fan_workers && fan_inside);
    cr_assert_eq(rt_spawn(&fhub_beh, NULL, NULL, &fan_hub), RT_OK);
    for (uintptr_t i = 0; i < FAN_WORKERS; i++)
        cr_assert_eq(rt_spawn(&fworker_beh, (void *)i, NULL, &fan_workers[i]), RT_OK);
    cr_assert_eq(rt_send(fan_hub, T_GO, 0, 0), RT_OK);

    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 100000);
    cr_assert_not_null(m, "round trips lost: %ld of %d handled", atomic_load(&fan_handled),
                       FAN_WORKERS * FAN_ROUNDS);
    rt_msg_free(m);
    cr_assert_eq(atomic_load(&fan_handled), (long)FAN_WORKERS * FAN_ROUNDS);
    cr_assert_eq(atomic_load(&n_overlaps), 0, "a process ran on two threads at once %ld times",
                 atomic_load(&n_overlaps));
    ASSERT_NO_BAD_CHECKS();
    log_counts("fan-out rounds");
}

/* ---- Many producers on every scheduler, and plain threads, wake shared targets -----------
 * Producer processes (on whichever scheduler runs them) and external
 * threads (through the global queue) send numbered messages to a set of
 * shared targets. A target is woken by whoever finds it idle, so it moves
 * between schedulers' rings all the time. Every message must be handled
 * exactly once, in its sender's order. */

#define MP_TARGETS SIZED(1500, 400)
#define MP_PROCS 6
#define MP_THREADS 2
#define MP_SENDERS (MP_PROCS + MP_THREADS)
#define MP_MSGS SIZED(60000, 8000) /* per sender */
#define MP_CHUNK 400

static atomic_long mp_total;

typedef struct mtarget {
    uint32_t idx;
    int64_t last[MP_SENDERS]; /* last k seen from each sender */
} mtarget_t;

static rt_reason_t *mtarget_init(void *arg, void **state)
{
    mtarget_t *t = calloc(1, sizeof *t);
    if (!t)
        return rt_reason_new("enomem");
    t->idx = (uint32_t)(uintptr_t)arg;
    for (int i = 0; i < MP_SENDERS; i++)
        t->last[i] = -1;
    *state = t;
    return NULL;
}

static void mtarget_info(void *state, rt_msg_t *m)
{
    mtarget_t *t = state;
    enter(&mp_inside[t->idx]);
    if (m->tag == T_WORK) {
        uint64_t sender = m->a, k = m->b;
        CHECK(sender < MP_SENDERS && k < MP_MSGS);
        if (sender < MP_SENDERS && k < MP_MSGS) {
            CHECK((int64_t)k > t->last[sender]); /* the sender's order */
            t->last[sender] = (int64_t)k;
            CHECK(atomic_fetch_add(&mp_seen[sender * MP_MSGS + k], 1) == 0); /* once */
        }
        spin_a_little(k);
        if (atomic_fetch_add(&mp_total, 1) + 1 == (long)MP_SENDERS * MP_MSGS)
            result(T_DONE, 0, 0);
    }
    leave(&mp_inside[t->idx]);
}

static const rt_behaviour_t mtarget_beh = RT_BEHAVIOUR(
    .name = "mp_target", .init = mtarget_init, .handle_info = mtarget_info,
    .terminate = free_state);

/* Message k of sender s goes to a target that depends on both, so every
 * target hears from every sender, in a different order for each. */
static rt_pid_t mp_dest(uint64_t s, uint64_t k)
{
    return mp_targets[(k * 7919u + s * 104729u) % MP_TARGETS];
}

typedef struct mproducer {
    uint64_t id, next;
} mproducer_t;

static rt_reason_t *mproducer_init(void *arg, void **state)
{
    mproducer_t *p = calloc(1, sizeof *p);
    if (!p)
        return rt_reason_new("enomem");
    p->id = (uint64_t)(uintptr_t)arg;
    *state = p;
    return NULL;
}

static void mproducer_info(void *state, rt_msg_t *m)
{
    mproducer_t *p = state;
    if (m->tag != T_GO)
        return;
    /* In chunks, so that producers, targets and thieves interleave. */
    for (int i = 0; i < MP_CHUNK && p->next < MP_MSGS; i++, p->next++)
        CHECK(rt_send(mp_dest(p->id, p->next), T_WORK, p->id, p->next) == RT_OK);
    if (p->next < MP_MSGS)
        CHECK(rt_send(rt_self(), T_GO, 0, 0) == RT_OK);
}

static const rt_behaviour_t mproducer_beh = RT_BEHAVIOUR(
    .name = "mp_producer", .init = mproducer_init, .handle_info = mproducer_info,
    .terminate = free_state);

static void *mp_thread(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t k = 0; k < MP_MSGS; k++) {
        CHECK(rt_send(mp_dest(id, k), T_WORK, id, k) == RT_OK);
        if ((k & 1023) == 1023)
            sched_yield(); /* let the schedulers drain and go idle now and then */
    }
    return NULL;
}

Test(ring, producers_on_every_scheduler_and_threads_deliver_each_message_once,
     .init = setup_four, .fini = teardown_ring, .timeout = 120)
{
    mp_targets = calloc(MP_TARGETS, sizeof *mp_targets);
    mp_inside = calloc(MP_TARGETS, sizeof *mp_inside);
    mp_seen = calloc((size_t)MP_SENDERS * MP_MSGS, sizeof *mp_seen);
    cr_assert(mp_targets && mp_inside && mp_seen);
    for (uintptr_t i = 0; i < MP_TARGETS; i++)
        cr_assert_eq(rt_spawn(&mtarget_beh, (void *)i, NULL, &mp_targets[i]), RT_OK);
    for (uintptr_t i = 0; i < MP_PROCS; i++) {
        rt_pid_t p;
        cr_assert_eq(rt_spawn(&mproducer_beh, (void *)i, NULL, &p), RT_OK);
        cr_assert_eq(rt_send(p, T_GO, 0, 0), RT_OK);
    }
    pthread_t th[MP_THREADS];
    for (uintptr_t i = 0; i < MP_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, mp_thread, (void *)(MP_PROCS + i)), 0);
    for (int i = 0; i < MP_THREADS; i++)
        pthread_join(th[i], NULL);

    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 100000);
    cr_assert_not_null(m, "%ld of %ld messages handled", atomic_load(&mp_total),
                       (long)MP_SENDERS * MP_MSGS);
    rt_msg_free(m);
    cr_assert_eq(atomic_load(&mp_total), (long)MP_SENDERS * MP_MSGS);
    for (size_t i = 0; i < (size_t)MP_SENDERS * MP_MSGS; i++)
        cr_assert_eq(atomic_load(&mp_seen[i]), 1, "message %zu of sender %zu handled %d times",
                     i % MP_MSGS, i / MP_MSGS, atomic_load(&mp_seen[i]));
    cr_assert_eq(atomic_load(&n_overlaps), 0, "a process ran on two threads at once %ld times",
                 atomic_load(&n_overlaps));
    ASSERT_NO_BAD_CHECKS();
    log_counts("many producers");
}

/* ---- Sleepers: waking a runtime whose schedulers all sleep ------------------------------
 * Before each burst every scheduler is asleep. The burst reaches one
 * process through the global queue (a thread that is not a scheduler),
 * and that process wakes more processes than a ring holds on its own
 * scheduler; each of them answers the test. A wake-up lost on the way
 * leaves the burst unanswered. */

#define SL_WORKERS SIZED(600, 300)
#define SL_BURSTS SIZED(40, 10)


static rt_reason_t *sworker_init(void *arg, void **state)
{
    *state = arg; /* its index */
    return NULL;
}

static void sworker_info(void *state, rt_msg_t *m)
{
    if (m->tag == T_WORK)
        result(T_WOKE, (uint64_t)(uintptr_t)state, m->a);
}

static const rt_behaviour_t sworker_beh =
    RT_BEHAVIOUR(.name = "sl_worker", .init = sworker_init, .handle_info = sworker_info);

static void fn_wake_workers(puppet_t *p, uint64_t burst)
{
    for (uint32_t i = 0; i < SL_WORKERS; i++)
        CHECK(rt_send(sl_workers[i], T_WORK, burst, 0) == RT_OK);
}

/* Bounded wait until every scheduler has gone to sleep. */
static void wait_all_asleep(void)
{
    uint64_t end = rt_now_ms() + WAIT_MS;
    for (;;) {
        rt_sched_counts_t c;
        rt__sched_counts(&c);
        if (c.sleeping == c.nscheds)
            return;
        cr_assert_lt(rt_now_ms(), end, "schedulers still awake after %d ms (%u of %u asleep)",
                     WAIT_MS, c.sleeping, c.nscheds);
        sched_yield();
    }
}

Test(ring, bursts_wake_sleeping_schedulers_every_time, .init = setup_four, .fini = teardown_ring,
     .timeout = 120)
{
    sl_workers = calloc(SL_WORKERS, sizeof *sl_workers);
    cr_assert_not_null(sl_workers);
    for (uintptr_t i = 0; i < SL_WORKERS; i++)
        cr_assert_eq(rt_spawn(&sworker_beh, (void *)i, NULL, &sl_workers[i]), RT_OK);
    rt_pid_t waker = spawn_puppet(0, NULL);
    ping(waker);
    uint8_t *seen = calloc(SL_WORKERS, 1);
    cr_assert_not_null(seen);
    for (uint64_t burst = 1; burst <= SL_BURSTS; burst++) {
        wait_all_asleep();
        run_in(waker, fn_wake_workers, burst);
        memset(seen, 0, SL_WORKERS);
        for (uint32_t got = 0; got < SL_WORKERS; got++) {
            rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_WOKE}, WAIT_MS);
            cr_assert_not_null(m, "burst %llu: %u of %d workers answered",
                               (unsigned long long)burst, got, SL_WORKERS);
            const report_t *r = m->data;
            cr_assert_eq(r->b, burst);
            cr_assert_lt(r->a, SL_WORKERS);
            cr_assert_eq(seen[r->a], 0, "worker %llu answered twice", (unsigned long long)r->a);
            seen[r->a] = 1;
            rt_msg_free(m);
        }
    }
    ASSERT_NO_BAD_CHECKS();
    log_counts("bursts");
    free(seen);
}

/* ---- Fairness: the overflow is not starved by a ring that never empties --------------------
 * One scheduler, no thieves. A looping process keeps itself runnable
 * forever (it sends itself a message every time, so it is requeued after
 * each turn). Then a process wakes more processes than the ring holds:
 * the older ones spill to the overflow, which the owner refills from only
 * when its ring is empty — and the looper keeps it from ever being empty.
 * Every woken process must still run. */

#define FAIR_WORKERS SIZED(1000, 400)

static atomic_int loop_stop;
static atomic_long loop_turns;

static rt_reason_t *looper_init(void *arg, void **state)
{
    *state = NULL;
    CHECK(rt_send(rt_self(), T_LOOP, 0, 0) == RT_OK);
    result(T_READY, 0, 0);
    return NULL;
}

static void looper_info(void *state, rt_msg_t *m)
{
    if (m->tag != T_LOOP)
        return;
    atomic_fetch_add(&loop_turns, 1);
    if (!atomic_load(&loop_stop))
        CHECK(rt_send(rt_self(), T_LOOP, 0, 0) == RT_OK);
}

static const rt_behaviour_t looper_beh =
    RT_BEHAVIOUR(.name = "looper", .init = looper_init, .handle_info = looper_info);


static void fn_wake_fair(puppet_t *p, uint64_t unused)
{
    for (uint32_t i = 0; i < FAIR_WORKERS; i++)
        CHECK(rt_send(fair_workers[i], T_WORK, 1, 0) == RT_OK);
}

Test(ring, a_process_that_is_always_runnable_does_not_starve_the_overflow,
     .init = setup_one, .fini = teardown_ring, .timeout = 120)
{
    fair_workers = calloc(FAIR_WORKERS, sizeof *fair_workers);
    cr_assert_not_null(fair_workers);
    for (uintptr_t i = 0; i < FAIR_WORKERS; i++)
        cr_assert_eq(rt_spawn(&sworker_beh, (void *)i, NULL, &fair_workers[i]), RT_OK);
    rt_pid_t waker = spawn_puppet(0, NULL);
    ping(waker); /* every worker has run its init: all idle now */
    rt_pid_t looper;
    cr_assert_eq(rt_spawn(&looper_beh, NULL, NULL, &looper), RT_OK);
    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_READY}, WAIT_MS);
    cr_assert_not_null(m);
    rt_msg_free(m);
    rt_sched_counts_t before;
    rt__sched_counts(&before);

    run_in(waker, fn_wake_fair, 0);
    uint8_t *seen = calloc(FAIR_WORKERS, 1);
    cr_assert_not_null(seen);
    for (uint32_t got = 0; got < FAIR_WORKERS; got++) {
        m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_WOKE}, 20000);
        cr_assert_not_null(m, "%u of %d workers ran while a process looped (%ld loop turns)",
                           got, FAIR_WORKERS, atomic_load(&loop_turns));
        const report_t *r = m->data;
        cr_assert_lt(r->a, FAIR_WORKERS);
        cr_assert_eq(seen[r->a], 0);
        seen[r->a] = 1;
        rt_msg_free(m);
    }
    rt_sched_counts_t after;
    rt__sched_counts(&after);
    cr_assert_gt(after.spills, before.spills, "the ring never overflowed: the test tests nothing");
    cr_assert_gt(atomic_load(&loop_turns), 0);
    atomic_store(&loop_stop, 1);
    ping(waker);
    ASSERT_NO_BAD_CHECKS();
    log_counts("fairness");
    free(seen);
}

/* ---- One scheduler, one burst far past the ring: nothing lost, nothing twice -------------- */

#define OVF_WORKERS SIZED(5000, 1500)

static atomic_long ovf_handled;

static void oworker_info(void *state, rt_msg_t *m)
{
    uintptr_t i = (uintptr_t)state;
    if (m->tag != T_WORK)
        return;
    atomic_fetch_add(&ovf_count[i], 1);
    if (atomic_fetch_add(&ovf_handled, 1) + 1 == OVF_WORKERS)
        result(T_DONE, 0, 0);
}

static const rt_behaviour_t oworker_beh =
    RT_BEHAVIOUR(.name = "ovf_worker", .init = sworker_init, .handle_info = oworker_info);

static void fn_wake_ovf(puppet_t *p, uint64_t unused)
{
    for (uint32_t i = 0; i < OVF_WORKERS; i++)
        CHECK(rt_send(ovf_workers[i], T_WORK, 0, 0) == RT_OK);
}

static void overflow_burst(bool expect_spills)
{
    ovf_workers = calloc(OVF_WORKERS, sizeof *ovf_workers);
    ovf_count = calloc(OVF_WORKERS, sizeof *ovf_count);
    cr_assert(ovf_workers && ovf_count);
    for (uintptr_t i = 0; i < OVF_WORKERS; i++)
        cr_assert_eq(rt_spawn(&oworker_beh, (void *)i, NULL, &ovf_workers[i]), RT_OK);
    rt_pid_t waker = spawn_puppet(0, NULL);
    ping(waker);
    rt_sched_counts_t before, after;
    rt__sched_counts(&before);
    run_in(waker, fn_wake_ovf, 0);
    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 60000);
    cr_assert_not_null(m, "%ld of %d woken processes ran", atomic_load(&ovf_handled),
                       OVF_WORKERS);
    rt_msg_free(m);
    rt__sched_counts(&after);
    for (int i = 0; i < OVF_WORKERS; i++)
        cr_assert_eq(atomic_load(&ovf_count[i]), 1, "worker %d ran %d times", i,
                     atomic_load(&ovf_count[i]));
    if (expect_spills)
        cr_assert_gt(after.spills, before.spills);
    ASSERT_NO_BAD_CHECKS();
    log_counts("overflow burst");
}

Test(ring, a_burst_past_the_ring_on_one_scheduler_runs_each_process_once, .init = setup_one,
     .fini = teardown_ring, .timeout = 120)
{
    overflow_burst(true);
}

Test(ring, a_burst_past_the_ring_with_thieves_runs_each_process_once, .init = setup_four,
     .fini = teardown_ring, .timeout = 120)
{
    overflow_burst(false); /* thieves may keep the ring from filling */
}
