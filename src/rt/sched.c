/*
 * sched.c — scheduler threads, run queues, sleeping and waking, and the
 * runtime's start and stop.
 *
 * Each scheduler has a `runnext` slot and a FIFO run queue. A process
 * woken by a process running on this thread goes to runnext, so a
 * request/answer pair or a ring hop runs on the same core with warm
 * caches and no lock; a displaced runnext goes to the queue. A run of
 * 32 consecutive runnext turns yields to the queue so that two processes
 * bouncing messages cannot starve the others. Idle schedulers steal half
 * of a busy one's queue, and its runnext if that has not moved for a few
 * microseconds while the owner finished no turn (Go's rule: a long
 * callback must not strand the process it just woke); schedules from non-scheduler threads go to a
 * global queue. A scheduler that finds nothing spins briefly, then sleeps
 * on a condition variable: an idle server uses no CPU.
 *
 * Wake-up rule (no lost wake-ups): a pusher makes work visible (queue
 * length, seq_cst) and then reads `nsleeping`; a sleeper increments
 * `nsleeping` (seq_cst) and then re-checks every queue under sleep_mu
 * before waiting. One of the two always sees the other.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt/rt_internal.h"

typedef struct rq {
    pthread_mutex_t mu;
    rt_proc_t *head, *tail;
    _Atomic uint32_t len;
} rq_t;

typedef struct rt_sched {
    rq_t q;
    /* Taken by exchange, so an idle scheduler can steal it when the owner
     * is stuck in a long callback (see steal_runnext). */
    _Atomic(rt_proc_t *) runnext;
    _Atomic uint64_t turns;      /* turns finished: "is the owner stuck?" */
    unsigned streak;
    unsigned tick;
    unsigned id;
    pthread_t thread;
    pthread_cond_t cond;
    bool sleeping;
    bool woken;
    uint32_t rng;
} rt_sched_t;

static rt_sched_t *scheds;
static unsigned nscheds;
static rq_t global_q;
static pthread_mutex_t sleep_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int nsleeping;
static _Atomic int stopping;

static void rq_init(rq_t *q)
{
    pthread_mutex_init(&q->mu, NULL);
    q->head = q->tail = NULL;
    atomic_init(&q->len, 0);
}

static void rq_push(rq_t *q, rt_proc_t *p)
{
    p->rq_next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->rq_next = p;
    else
        q->head = p;
    q->tail = p;
    atomic_fetch_add_explicit(&q->len, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&q->mu);
}

static rt_proc_t *rq_pop(rq_t *q)
{
    if (atomic_load_explicit(&q->len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&q->mu);
    rt_proc_t *p = q->head;
    if (p) {
        q->head = p->rq_next;
        if (!q->head)
            q->tail = NULL;
        p->rq_next = NULL;
        atomic_fetch_sub_explicit(&q->len, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&q->mu);
    return p;
}

/* Moves up to half of `from` (at least one, at most STEAL_MAX) into
 * `to` and returns the first of them to run now. The rest is spliced in
 * one step: one lock on each queue, however many move. */
#define STEAL_MAX 256u

static rt_proc_t *rq_steal(rq_t *from, rq_t *to)
{
    if (atomic_load_explicit(&from->len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&from->mu);
    uint32_t len = atomic_load_explicit(&from->len, memory_order_relaxed);
    uint32_t take = (len + 1) / 2;
    if (take > STEAL_MAX)
        take = STEAL_MAX;
    rt_proc_t *first = from->head;
    if (!first || take == 0) {
        pthread_mutex_unlock(&from->mu);
        return NULL;
    }
    rt_proc_t *last = first;
    for (uint32_t i = 1; i < take; i++)
        last = last->rq_next;
    from->head = last->rq_next;
    if (!from->head)
        from->tail = NULL;
    atomic_fetch_sub_explicit(&from->len, take, memory_order_relaxed);
    pthread_mutex_unlock(&from->mu);
    last->rq_next = NULL;

    rt_proc_t *rest = first->rq_next;
    first->rq_next = NULL;
    if (rest) {
        pthread_mutex_lock(&to->mu);
        if (to->tail)
            to->tail->rq_next = rest;
        else
            to->head = rest;
        to->tail = last;
        atomic_fetch_add_explicit(&to->len, take - 1, memory_order_seq_cst);
        pthread_mutex_unlock(&to->mu);
    }
    return first;
}

static void wake_one(void)
{
    if (atomic_load_explicit(&nsleeping, memory_order_seq_cst) == 0)
        return;
    pthread_mutex_lock(&sleep_mu);
    for (unsigned i = 0; i < nscheds; i++) {
        if (scheds[i].sleeping && !scheds[i].woken) {
            scheds[i].woken = true;
            pthread_cond_signal(&scheds[i].cond);
            break;
        }
    }
    pthread_mutex_unlock(&sleep_mu);
}

static void push_local(rt_sched_t *s, rt_proc_t *p)
{
    rq_push(&s->q, p);
    wake_one();
}

bool rt__on_scheduler(void)
{
    return rt__tls.sched != NULL;
}

/* ---- executors ---- */

int rt_exec_init(rt_exec_t *e, void (*wake)(rt_exec_t *), void *data)
{
    e->wake = wake;
    e->data = data;
    pthread_mutex_init(&e->mu, NULL);
    e->head = e->tail = NULL;
    atomic_init(&e->len, 0);
    return RT_OK;
}

void rt_exec_destroy(rt_exec_t *e)
{
    pthread_mutex_destroy(&e->mu);
}

static void exec_push(rt_exec_t *e, rt_proc_t *p)
{
    p->rq_next = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->tail)
        ((rt_proc_t *)e->tail)->rq_next = p;
    else
        e->head = p;
    e->tail = p;
    bool was_empty = atomic_fetch_add_explicit(&e->len, 1, memory_order_relaxed) == 0;
    pthread_mutex_unlock(&e->mu);
    if (was_empty)
        e->wake(e);
}

size_t rt_exec_run(rt_exec_t *e, size_t max)
{
    rt__tls_check_epoch();
    for (size_t i = 0; i < max; i++) {
        pthread_mutex_lock(&e->mu);
        rt_proc_t *p = e->head;
        if (p) {
            e->head = p->rq_next;
            if (!e->head)
                e->tail = NULL;
            atomic_fetch_sub_explicit(&e->len, 1, memory_order_relaxed);
        }
        pthread_mutex_unlock(&e->mu);
        if (!p)
            break;
        p->rq_next = NULL;
        rt_exec_t *saved = rt__tls.exec;
        rt__tls.exec = e;
        rt__run(p);
        rt__tls.exec = saved;
    }
    return atomic_load_explicit(&e->len, memory_order_relaxed);
}

void rt__schedule(rt_proc_t *p)
{
    rt_exec_t *e = atomic_load_explicit(&p->exec, memory_order_relaxed);
    if (e) {
        exec_push(e, p);
        return;
    }
    rt_sched_t *s = rt__tls.sched;
    if (!s) {
        rq_push(&global_q, p);
        wake_one();
        return;
    }
    rt_proc_t *old = atomic_exchange_explicit(&s->runnext, p, memory_order_acq_rel);
    if (old)
        push_local(s, old);
}

void rt__reschedule(rt_proc_t *p)
{
    rt_exec_t *e = atomic_load_explicit(&p->exec, memory_order_relaxed);
    if (e) {
        exec_push(e, p);
        return;
    }
    rt_sched_t *s = rt__tls.sched;
    if (!s) {
        rq_push(&global_q, p);
        wake_one();
        return;
    }
    push_local(s, p);
}

static bool any_work(void)
{
    if (atomic_load_explicit(&global_q.len, memory_order_seq_cst))
        return true;
    for (unsigned i = 0; i < nscheds; i++)
        if (atomic_load_explicit(&scheds[i].q.len, memory_order_seq_cst))
            return true;
    return false;
}

static rt_proc_t *pick(rt_sched_t *s)
{
    rt_proc_t *p;
    if (atomic_load_explicit(&s->runnext, memory_order_relaxed)) {
        p = atomic_exchange_explicit(&s->runnext, NULL, memory_order_acq_rel);
        if (p) {
            if (s->streak < 32 || atomic_load_explicit(&s->q.len, memory_order_relaxed) == 0) {
                s->streak++;
                return p;
            }
            push_local(s, p);
        }
    }
    s->streak = 0;
    /* Now and then serve the global queue first so it cannot starve. */
    if ((++s->tick % 61) == 0 && (p = rq_pop(&global_q)))
        return p;
    if ((p = rq_pop(&s->q)))
        return p;
    if ((p = rq_steal(&global_q, &s->q)))
        return p;
    for (unsigned k = 1; k < nscheds; k++) {
        rt_sched_t *v = &scheds[(s->id + k) % nscheds];
        if ((p = rq_steal(&v->q, &s->q)))
            return p;
    }
    return NULL;
}

/* A runnext that has not moved for `STUCK_NS` while its owner finished
 * no turn belongs to a scheduler stuck in a long callback: take it. */
#define STUCK_NS 5000u

static rt_proc_t *steal_runnext(rt_sched_t *s, rt_proc_t **seen, uint64_t *turns)
{
    for (unsigned k = 0; k < nscheds; k++) {
        rt_sched_t *v = &scheds[k];
        if (v == s)
            continue;
        rt_proc_t *rn = atomic_load_explicit(&v->runnext, memory_order_relaxed);
        uint64_t t = atomic_load_explicit(&v->turns, memory_order_relaxed);
        if (rn && rn == seen[k] && t == turns[k] &&
            atomic_compare_exchange_strong_explicit(&v->runnext, &rn, NULL,
                                                    memory_order_acq_rel, memory_order_relaxed))
            return rn;
        seen[k] = rn;
        turns[k] = t;
    }
    return NULL;
}

static rt_proc_t *idle(rt_sched_t *s)
{
    rt_proc_t *seen[64] = { 0 };
    uint64_t turns[64] = { 0 };
    unsigned n = nscheds < 64 ? nscheds : 64;
    for (unsigned k = 0; k < n; k++) {
        seen[k] = atomic_load_explicit(&scheds[k].runnext, memory_order_relaxed);
        turns[k] = atomic_load_explicit(&scheds[k].turns, memory_order_relaxed);
    }
    /* Spin a little first: a message is often a few microseconds away,
     * and a futex sleep/wake costs more than that. */
    uint64_t t0 = rt_now_ns();
    for (int i = 0; i < 4000; i++) {
        if (any_work() || atomic_load_explicit(&stopping, memory_order_relaxed))
            return NULL;
        __builtin_ia32_pause();
        if ((i & 63) == 63 && rt_now_ns() - t0 > STUCK_NS) {
            rt_proc_t *p = steal_runnext(s, seen, turns);
            if (p)
                return p;
            t0 = rt_now_ns();
        }
    }
    rt_proc_t *p = steal_runnext(s, seen, turns);
    if (p)
        return p;
    /* A stuck owner's runnext must not wait for a wake that never comes:
     * sleep with a timeout while any runnext is occupied. */
    bool occupied = false;
    for (unsigned k = 0; k < nscheds; k++)
        occupied |= atomic_load_explicit(&scheds[k].runnext, memory_order_relaxed) != NULL;
    /* Backpressure must never deadlock processes flooding each other. */
    rt__unmute_cycles();
    pthread_mutex_lock(&sleep_mu);
    atomic_fetch_add_explicit(&nsleeping, 1, memory_order_seq_cst);
    if (!any_work() && !atomic_load_explicit(&stopping, memory_order_seq_cst)) {
        s->sleeping = true;
        s->woken = false;
        if (occupied) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000; /* 1 ms */
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (!s->woken && !atomic_load_explicit(&stopping, memory_order_relaxed))
                pthread_cond_timedwait(&s->cond, &sleep_mu, &ts);
        } else {
            while (!s->woken && !atomic_load_explicit(&stopping, memory_order_relaxed))
                pthread_cond_wait(&s->cond, &sleep_mu);
        }
        s->sleeping = false;
    }
    atomic_fetch_sub_explicit(&nsleeping, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&sleep_mu);
    return NULL;
}

static void *sched_main(void *arg)
{
    rt_sched_t *s = arg;
    rt__tls.sched = s;
    for (;;) {
        rt_proc_t *p = pick(s);
        if (!p) {
            if (atomic_load_explicit(&stopping, memory_order_acquire) && !any_work())
                break;
            p = idle(s);
        }
        if (p) {
            rt__run(p);
            atomic_store_explicit(&s->turns,
                                  atomic_load_explicit(&s->turns, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
        }
    }
    rt__tls.sched = NULL;
    return NULL;
}

int rt__sched_start(unsigned n)
{
    scheds = calloc(n, sizeof *scheds);
    if (!scheds)
        return RT_ENOMEM;
    nscheds = n;
    atomic_store(&stopping, 0);
    atomic_store(&nsleeping, 0);
    rq_init(&global_q);
    for (unsigned i = 0; i < n; i++) {
        rq_init(&scheds[i].q);
        pthread_cond_init(&scheds[i].cond, NULL);
        scheds[i].id = i;
    }
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&scheds[i].thread, NULL, sched_main, &scheds[i]) != 0)
            rt__panic("cannot start scheduler thread %u", i);
    }
    return RT_OK;
}

void rt__sched_stop(void)
{
    atomic_store(&stopping, 1);
    pthread_mutex_lock(&sleep_mu);
    for (unsigned i = 0; i < nscheds; i++) {
        scheds[i].woken = true;
        pthread_cond_signal(&scheds[i].cond);
    }
    pthread_mutex_unlock(&sleep_mu);
    for (unsigned i = 0; i < nscheds; i++)
        pthread_join(scheds[i].thread, NULL);
    for (unsigned i = 0; i < nscheds; i++) {
        pthread_mutex_destroy(&scheds[i].q.mu);
        pthread_cond_destroy(&scheds[i].cond);
    }
    pthread_mutex_destroy(&global_q.mu);
    free(scheds);
    scheds = NULL;
    nscheds = 0;
}

/* ---- runtime lifecycle ---- */

int rt_runtime_start(const rt_config_t *cfg)
{
    if (atomic_load(&rt__g.running))
        return RT_ESTATE;
    rt_config_t c = cfg ? *cfg : (rt_config_t){ 0 };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    rt__g.nsched = c.schedulers ? c.schedulers : (unsigned)(ncpu > 0 ? ncpu : 1);
    rt__g.batch = c.batch ? c.batch : 100;
    rt__g.mailbox_high = c.mailbox_high ? c.mailbox_high : 65536;
    rt__g.max_procs = c.max_procs ? c.max_procs : RT_MAX_CHUNKS * RT_CHUNK_SIZE;
    rt__g.epoch++;
    atomic_store(&rt__g.next_ref, 0);
    atomic_store(&rt__g.live_procs, 0);
    atomic_store(&rt__g.spawned, 0);
    atomic_store(&rt__g.exited, 0);
    atomic_store(&rt__g.restarts, 0);
    rt__procs_init();
    rt__registry_init();
    rt__pubsub_init();
    if (rt__timers_start() != RT_OK)
        return RT_ENOMEM;
    atomic_store(&rt__g.running, 1);
    return rt__sched_start(rt__g.nsched);
}

int rt_wait_idle(int timeout_ms)
{
    uint64_t end = timeout_ms < 0 ? UINT64_MAX : rt_now_ms() + (uint64_t)timeout_ms;
    while (atomic_load(&rt__g.live_procs) > 0) {
        if (rt_now_ms() >= end)
            return RT_ETIMEOUT;
        usleep(1000);
    }
    return RT_OK;
}

void rt_runtime_stop(void)
{
    if (!atomic_load(&rt__g.running))
        return;
    /* Kill until nothing is alive: a dying process may still spawn. */
    for (int round = 0; atomic_load(&rt__g.live_procs) > 0; round++) {
        rt__kill_all();
        if (rt_wait_idle(round < 50 ? 100 : 1000) == RT_OK)
            break;
        if (round > 100)
            rt__panic("processes do not die at shutdown");
    }
    atomic_store(&rt__g.running, 0);
    rt__timers_stop();
    rt__sched_stop();
    rt__pubsub_fini();
    rt__registry_fini();
    rt__procs_fini();
    rt__pool_fini();
    pthread_mutex_lock(&rt__g.stats_mu);
    while (rt__g.stats_list) {
        rt_tstats_t *n = rt__g.stats_list->next;
        free(rt__g.stats_list);
        rt__g.stats_list = n;
    }
    pthread_mutex_unlock(&rt__g.stats_mu);
    rt__g.epoch++;
    rt__tls_check_epoch();
}
