/*
 * sched.c — scheduler threads, run queues, sleeping and waking, and the
 * runtime's start and stop.
 *
 * Each scheduler has a `runnext` slot, a ring of RING_SIZE (256)
 * runnable processes that only its own thread pushes into, and an
 * overflow queue (a locked array of pointers) behind the ring. This is
 * Go's run queue: the common push and pop take no lock, and the lock is
 * taken once per half ring, not twice per turn.
 *
 * A process woken by a process running on this thread goes to runnext,
 * so a request/answer pair or a ring hop runs on the same core with warm
 * caches; a displaced runnext goes to the ring. A run of 32 consecutive
 * runnext turns yields to the queued processes so that two processes
 * bouncing messages cannot starve the others. Idle schedulers take half
 * of a busy one's ring (or of its overflow), and its runnext if that has
 * not moved for a few microseconds while the owner finished no turn
 * (Go's rule: a long callback must not strand the process it just
 * woke). Schedules from threads that are not schedulers go to a global
 * queue. A scheduler that finds nothing spins briefly, then sleeps on a
 * condition variable: an idle server uses no CPU.
 *
 * Rules (the code below relies on them):
 *  1. Only a scheduler's own thread writes its ring's slots and `tail`.
 *     A process woken on another scheduler thread goes to *that*
 *     thread's runnext/ring; one woken on any other thread goes to the
 *     global queue. So a ring has a single producer and needs no lock.
 *  2. Anyone may take from a ring (the owner one at a time, a thief half
 *     at once): read the slots from `head`, then advance `head` with a
 *     CAS. A taker whose CAS fails uses nothing it read. Slots are
 *     atomics because a slow thief may read a slot the owner is already
 *     reusing (its CAS then fails): relaxed, since `tail` (release) and
 *     `head` (CAS) order them.
 *  3. A full ring moves its older half and the new process to the
 *     overflow queue in one locked copy (Go's runqputslow). An empty
 *     ring is refilled from the overflow queue, at most half a ring at a
 *     time. The overflow holds processes older than the ring's, so every
 *     61st pick serves it (after the global queue) before the ring.
 *  4. Wake-up rule (no lost wake-ups): whoever makes work visible (a
 *     ring's `tail` or a queue's `len`, seq_cst) then reads `nsleeping`
 *     and wakes a sleeper; a sleeper increments `nsleeping` (seq_cst) and
 *     then re-checks every ring and queue under sleep_mu before waiting.
 *     One of the two always sees the other. Moving processes between
 *     queues hides them for a moment, so every move ends with the same
 *     publish-then-wake step.
 *  5. A process is in at most one place: a runnext, a ring, a locked
 *     run queue, an executor queue or the muted list (rt_internal.h,
 *     invariant 2). Rings and locked run queues hold pointers and never
 *     write the process; executor queues and the muted list link it
 *     through rq_next.
 */
#include <assert.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt/rt_internal.h"

#define RING_SIZE 256u
#define RING_HALF (RING_SIZE / 2)
_Static_assert((RING_SIZE & (RING_SIZE - 1)) == 0, "ring indices wrap with the uint32 counters");

/* A locked FIFO of process pointers: a scheduler's overflow, and the
 * global queue. A circular array, not a list through the processes: a
 * spill or a refill copies pointers and touches no process, where a list
 * would chase (and write) one cold process per entry. It grows by
 * doubling and keeps its size until the runtime stops: 8 bytes per
 * process that was ever queued in it at once. */
typedef struct rq {
    pthread_mutex_t mu;
    rt_proc_t **v;               /* cap entries, cap a power of two (or 0) */
    uint32_t cap;
    uint32_t first;              /* index of the oldest */
    _Atomic uint32_t len;        /* written under mu; read without it */
} rq_t;

typedef struct rt_sched {
    /* -- the ring: the owner pushes (rule 1); anyone takes (rule 2).
     *    head and tail share a line: a taker reads both. -- */
    _Alignas(64) _Atomic uint32_t head;   /* oldest queued; CAS by every taker */
    _Atomic uint32_t tail;                /* next free slot; the owner only */
    _Atomic(rt_proc_t *) ring[RING_SIZE];
    /* -- overflow (rule 3), behind its own lock -- */
    _Alignas(64) rq_t q;
    /* -- runnext: the owner exchanges it; a thief CASes a stuck one -- */
    _Alignas(64) _Atomic(rt_proc_t *) runnext;
    _Atomic uint64_t turns;      /* turns finished: "is the owner stuck?" */
    /* -- the owner only (counters: the owner writes, tests read) -- */
    _Alignas(64) unsigned streak;
    unsigned tick;
    unsigned id;
    _Atomic uint64_t n_spills, n_steals, n_stolen, n_grabs;
    pthread_t thread;
    /* -- sleep_mu -- */
    pthread_cond_t cond;
    bool sleeping;
    bool woken;
} rt_sched_t;

static rt_sched_t *scheds;
static unsigned nscheds;
static rq_t global_q;
static pthread_mutex_t sleep_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int nsleeping;
static _Atomic int stopping;

/* An owner-written counter: a relaxed load and store, no locked
 * instruction (the same reasoning as rt__count). */
static inline void owner_count(_Atomic uint64_t *c, uint64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
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

/* ---- locked queues ---- */

static void rq_init(rq_t *q)
{
    pthread_mutex_init(&q->mu, NULL);
    q->v = NULL;
    q->cap = q->first = 0;
    atomic_init(&q->len, 0);
}

static void rq_fini(rq_t *q)
{
    pthread_mutex_destroy(&q->mu);
    free(q->v);
    q->v = NULL;
}

/* mu held: room for `more` entries. A run queue cannot refuse a
 * runnable process, so running out of memory here is fatal (the
 * runtime's policy for allocations nobody can be told about). */
static void rq_reserve(rq_t *q, uint32_t len, uint32_t more)
{
    if (len + more <= q->cap)
        return;
    uint32_t cap = q->cap ? q->cap : RING_SIZE;
    while (cap < len + more)
        cap *= 2;
    rt_proc_t **v = malloc((size_t)cap * sizeof *v);
    if (!v)
        rt__panic("out of memory for a run queue (%u processes)", len + more);
    for (uint32_t i = 0; i < len; i++)
        v[i] = q->v[(q->first + i) & (q->cap - 1)];
    free(q->v);
    q->v = v;
    q->cap = cap;
    q->first = 0;
}

/* Appends n processes in order. The caller wakes a sleeper. */
static void rq_push_n(rq_t *q, rt_proc_t *const *src, uint32_t n)
{
    pthread_mutex_lock(&q->mu);
    uint32_t len = atomic_load_explicit(&q->len, memory_order_relaxed);
    rq_reserve(q, len, n);
    for (uint32_t i = 0; i < n; i++)
        q->v[(q->first + len + i) & (q->cap - 1)] = src[i];
    /* seq_cst: rule 4. */
    atomic_store_explicit(&q->len, len + n, memory_order_seq_cst);
    pthread_mutex_unlock(&q->mu);
}

static void rq_push(rq_t *q, rt_proc_t *p)
{
    rq_push_n(q, &p, 1);
}

/* Takes up to max of the oldest into dst (all of them, or half when
 * `half`, at least one); returns how many. */
static uint32_t rq_take(rq_t *q, rt_proc_t **dst, uint32_t max, bool half)
{
    if (atomic_load_explicit(&q->len, memory_order_relaxed) == 0)
        return 0;
    pthread_mutex_lock(&q->mu);
    uint32_t len = atomic_load_explicit(&q->len, memory_order_relaxed);
    uint32_t n = half ? (len + 1) / 2 : len;
    if (n > max)
        n = max;
    for (uint32_t i = 0; i < n; i++)
        dst[i] = q->v[(q->first + i) & (q->cap - 1)];
    q->first = (q->first + n) & (q->cap ? q->cap - 1 : 0);
    atomic_store_explicit(&q->len, len - n, memory_order_relaxed);
    pthread_mutex_unlock(&q->mu);
    return n;
}

static rt_proc_t *rq_pop(rq_t *q)
{
    rt_proc_t *p;
    return rq_take(q, &p, 1, false) ? p : NULL;
}

/* ---- the ring ---- */

static inline uint32_t ring_len(rt_sched_t *s)
{
    /* head first: tail only grows and head never passes it, so the
     * difference is never negative. seq_cst for sleepers (rule 4). */
    uint32_t h = atomic_load_explicit(&s->head, memory_order_seq_cst);
    uint32_t t = atomic_load_explicit(&s->tail, memory_order_seq_cst);
    return t - h;
}

/* The ring is full (head h, tail t): moves its older half and p to the
 * overflow queue. Returns false if a thief took from the ring meanwhile
 * (there is room again: the caller retries the ring). */
static bool ring_spill(rt_sched_t *s, rt_proc_t *p, uint32_t h, uint32_t t)
{
    uint32_t n = (t - h) / 2;
    assert(n == RING_HALF);
    rt_proc_t *batch[RING_HALF + 1];
    for (uint32_t i = 0; i < n; i++)
        batch[i] = atomic_load_explicit(&s->ring[(h + i) % RING_SIZE], memory_order_relaxed);
    /* Claims the half like any taker (rule 2). */
    if (!atomic_compare_exchange_strong_explicit(&s->head, &h, h + n, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return false;
    batch[n] = p;
    rq_push_n(&s->q, batch, n + 1);
    owner_count(&s->n_spills, 1);
    return true;
}

/* Owner only (rule 1). The caller wakes a sleeper afterwards. */
static void ring_put(rt_sched_t *s, rt_proc_t *p)
{
    for (;;) {
        /* acquire: a taker read its slots before its CAS on head, so
         * the slots below head may be overwritten. */
        uint32_t h = atomic_load_explicit(&s->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&s->tail, memory_order_relaxed); /* ours */
        if (t - h < RING_SIZE) {
            atomic_store_explicit(&s->ring[t % RING_SIZE], p, memory_order_relaxed);
            /* seq_cst: publishes the slot (release) and is the "work is
             * visible" half of rule 4. */
            atomic_store_explicit(&s->tail, t + 1, memory_order_seq_cst);
            return;
        }
        if (ring_spill(s, p, h, t))
            return;
    }
}

/* How many queued processes ring_pop prefetches. A process is two cache
 * lines and a sender touches only the first; the runner needs both. The
 * old list-based queue wrote the second (rq_next) at every push, which
 * warmed it as a side effect; without that, a fan-out to 100,000 idle
 * processes paid a cold miss per turn (one scheduler: 18 -> 24 ms per
 * broadcast; 20 ms with this prefetch). */
#define PREFETCH_AHEAD 2u
_Static_assert(sizeof(rt_proc_t) <= 128, "ring_pop prefetches a process as two cache lines");

/* Owner only: the oldest process in the ring, or NULL. A thief may race
 * for the same slot; the CAS decides. */
static rt_proc_t *ring_pop(rt_sched_t *s)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&s->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&s->tail, memory_order_relaxed); /* ours */
        if (t == h)
            return NULL;
        rt_proc_t *p = atomic_load_explicit(&s->ring[h % RING_SIZE], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&s->head, &h, h + 1, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            /* A slot a thief has taken meanwhile only wastes a prefetch:
             * process memory is never unmapped (rt_internal.h, 1). */
            for (uint32_t k = 1; k <= PREFETCH_AHEAD && h + k != t; k++) {
                rt_proc_t *n =
                    atomic_load_explicit(&s->ring[(h + k) % RING_SIZE], memory_order_relaxed);
                __builtin_prefetch(n, 1, 3);
                __builtin_prefetch((const char *)n + 64, 1, 3);
            }
            return p;
        }
    }
}

/* Publishes n processes that s (the owner) wrote into its own ring's
 * free slots from `t` on, and wakes a sleeper to share them (rule 4). */
static void ring_publish(rt_sched_t *s, uint32_t t, uint32_t n)
{
    if (n == 0)
        return;
    assert(t + n - atomic_load_explicit(&s->head, memory_order_relaxed) <= RING_SIZE);
    atomic_store_explicit(&s->tail, t + n, memory_order_seq_cst);
    wake_one();
}

/* Thief s takes half of v's ring (Go's runqsteal) and returns one to run
 * now; the rest go into s's own ring, which is empty (s found it empty,
 * and only s pushes into it). */
static rt_proc_t *ring_steal(rt_sched_t *s, rt_sched_t *v)
{
    uint32_t t = atomic_load_explicit(&s->tail, memory_order_relaxed); /* ours */
    uint32_t n;
    for (;;) {
        /* acquire on both: the slots below v's tail were written before
         * it was stored. */
        uint32_t h = atomic_load_explicit(&v->head, memory_order_acquire);
        uint32_t vt = atomic_load_explicit(&v->tail, memory_order_acquire);
        n = vt - h;
        n -= n / 2;
        if (n == 0)
            return NULL;
        if (n > RING_HALF)
            continue; /* h and vt read at different moments: read again */
        for (uint32_t i = 0; i < n; i++)
            atomic_store_explicit(
                &s->ring[(t + i) % RING_SIZE],
                atomic_load_explicit(&v->ring[(h + i) % RING_SIZE], memory_order_relaxed),
                memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(&v->head, &h, h + n, memory_order_acq_rel,
                                                    memory_order_relaxed))
            break;
    }
    owner_count(&s->n_steals, 1);
    owner_count(&s->n_stolen, n);
    /* The newest one runs now; the older ones wait in order. */
    rt_proc_t *p = atomic_load_explicit(&s->ring[(t + n - 1) % RING_SIZE], memory_order_relaxed);
    ring_publish(s, t, n - 1);
    return p;
}

/* Takes processes from a locked queue into s's ring, which is empty, and
 * returns the first to run now: all of `from` up to half a ring (s's own
 * overflow), or half of it (the global queue, a victim's overflow). One
 * lock however many move. */
static rt_proc_t *rq_grab(rq_t *from, rt_sched_t *s, bool half)
{
    rt_proc_t *batch[RING_HALF];
    uint32_t n = rq_take(from, batch, RING_HALF, half);
    if (n == 0)
        return NULL;
    uint32_t t = atomic_load_explicit(&s->tail, memory_order_relaxed); /* ours */
    for (uint32_t i = 1; i < n; i++)
        atomic_store_explicit(&s->ring[(t + i - 1) % RING_SIZE], batch[i], memory_order_relaxed);
    owner_count(&s->n_grabs, 1);
    ring_publish(s, t, n - 1);
    return batch[0];
}

static void push_local(rt_sched_t *s, rt_proc_t *p)
{
    ring_put(s, p);
    wake_one();
}

void rt__sched_counts(rt_sched_counts_t *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < nscheds; i++) {
        out->spills += atomic_load_explicit(&scheds[i].n_spills, memory_order_relaxed);
        out->steals += atomic_load_explicit(&scheds[i].n_steals, memory_order_relaxed);
        out->stolen += atomic_load_explicit(&scheds[i].n_stolen, memory_order_relaxed);
        out->grabs += atomic_load_explicit(&scheds[i].n_grabs, memory_order_relaxed);
    }
    out->sleeping = (unsigned)atomic_load_explicit(&nsleeping, memory_order_relaxed);
    out->nscheds = nscheds;
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

/* Sleepers' half of rule 4: seq_cst loads of everything a pusher
 * publishes. runnext is not work for a sleeper: its owner is awake. */
static bool any_work(void)
{
    if (atomic_load_explicit(&global_q.len, memory_order_seq_cst))
        return true;
    for (unsigned i = 0; i < nscheds; i++)
        if (ring_len(&scheds[i]) || atomic_load_explicit(&scheds[i].q.len, memory_order_seq_cst))
            return true;
    return false;
}

static bool local_empty(rt_sched_t *s)
{
    return ring_len(s) == 0 && atomic_load_explicit(&s->q.len, memory_order_relaxed) == 0;
}

static rt_proc_t *pick(rt_sched_t *s)
{
    rt_proc_t *p;
    if (atomic_load_explicit(&s->runnext, memory_order_relaxed)) {
        p = atomic_exchange_explicit(&s->runnext, NULL, memory_order_acq_rel);
        if (p) {
            if (s->streak < 32 || local_empty(s)) {
                s->streak++;
                return p;
            }
            /* Behind everything already queued here: the ring's tail,
             * or the overflow's if the overflow holds any (it is older
             * than the ring). */
            if (atomic_load_explicit(&s->q.len, memory_order_relaxed)) {
                rq_push(&s->q, p);
                wake_one();
            } else {
                push_local(s, p);
            }
        }
    }
    s->streak = 0;
    /* Now and then serve the global queue, then the overflow, first so
     * that neither can starve behind a ring that never empties. */
    if ((++s->tick % 61) == 0 && ((p = rq_pop(&global_q)) || (p = rq_pop(&s->q))))
        return p;
    if ((p = ring_pop(s)))
        return p;
    /* From here on the ring is empty, as rq_grab and ring_steal need. */
    if ((p = rq_grab(&s->q, s, false)))
        return p;
    if ((p = rq_grab(&global_q, s, true)))
        return p;
    for (unsigned k = 1; k < nscheds; k++) {
        rt_sched_t *v = &scheds[(s->id + k) % nscheds];
        if ((p = ring_steal(s, v)) || (p = rq_grab(&v->q, s, true)))
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
    /* aligned_alloc: the struct's cache-line alignment must hold in the
     * array too (calloc only promises 16 bytes). */
    scheds = aligned_alloc(_Alignof(rt_sched_t), n * sizeof *scheds);
    if (!scheds)
        return RT_ENOMEM;
    memset(scheds, 0, n * sizeof *scheds);
    nscheds = n;
    atomic_store(&stopping, 0);
    atomic_store(&nsleeping, 0);
    rq_init(&global_q);
    for (unsigned i = 0; i < n; i++) {
        atomic_init(&scheds[i].head, 0);
        atomic_init(&scheds[i].tail, 0);
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
        rq_fini(&scheds[i].q);
        pthread_cond_destroy(&scheds[i].cond);
    }
    rq_fini(&global_q);
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
