/*
 * timer.c — send_after and cancel.
 *
 * One timer thread owns a binary min-heap ordered by (deadline, seq), so
 * equal deadlines fire in creation order, as libuv's do. Handles are
 * unique 64-bit refs found through a chained hash, so a stale handle can
 * never cancel somebody else's timer. Each timer also sits on its target
 * process's list, and the process's exit cancels them all (Erlang's rule:
 * a timer to a pid dies with the pid). Everything here is under one
 * mutex; firing hands the messages to the runtime outside it.
 */
#include <stdlib.h>
#include <time.h>

#include "rt/rt_internal.h"

typedef struct rt_timer {
    uint64_t deadline;            /* ns, monotonic */
    uint64_t seq;
    uint64_t id;
    uint32_t heap_idx;
    rt_pid_t to;
    rt_proc_t *owner;
    rt_msg_t *msg;
    struct rt_timer *hnext;       /* hash chain */
    struct rt_timer *onext, *oprev; /* owner's list */
} rt_timer_t;

static pthread_mutex_t tmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tcond;
static pthread_t tthread;
static bool tstop;
static rt_timer_t **heap;
static uint32_t heap_n, heap_cap;
static rt_timer_t **hash;
static uint32_t hash_cap;
static uint64_t seq;
/* When the timer thread will look at the heap next (ns). An insert wakes
 * it only if the new timer is due earlier: a call's 5 s timeout set and
 * cancelled around every call then costs no wake-up at all. */
static uint64_t sleeping_until;
#define IDLE_POLL_NS 100000000u   /* 100 ms: an idle runtime wakes 10 times a second */

static void heap_swap(uint32_t a, uint32_t b)
{
    rt_timer_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_idx = a;
    heap[b]->heap_idx = b;
}

static bool before(const rt_timer_t *a, const rt_timer_t *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void sift_up(uint32_t i)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(heap[i], heap[parent]))
            break;
        heap_swap(i, parent);
        i = parent;
    }
}

static void sift_down(uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && before(heap[l], heap[m]))
            m = l;
        if (r < heap_n && before(heap[r], heap[m]))
            m = r;
        if (m == i)
            break;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_remove(rt_timer_t *t)
{
    uint32_t i = t->heap_idx;
    heap_n--;
    if (i != heap_n) {
        heap[i] = heap[heap_n];
        heap[i]->heap_idx = i;
        sift_down(i);
        sift_up(i);
    }
}

static uint32_t hslot(uint64_t id)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (hash_cap - 1);
}

static void hash_del(rt_timer_t *t)
{
    for (rt_timer_t **pp = &hash[hslot(t->id)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == t) {
            *pp = t->hnext;
            return;
        }
    }
}

static rt_timer_t *hash_find(uint64_t id)
{
    if (!hash_cap)
        return NULL;
    for (rt_timer_t *t = hash[hslot(id)]; t; t = t->hnext)
        if (t->id == id)
            return t;
    return NULL;
}

static bool grow(void)
{
    if (heap_n == heap_cap) {
        uint32_t cap = heap_cap ? heap_cap * 2 : 256;
        rt_timer_t **nh = realloc(heap, cap * sizeof *nh);
        if (!nh)
            return false;
        heap = nh;
        heap_cap = cap;
    }
    if (heap_n + 1 > hash_cap) {
        uint32_t cap = hash_cap ? hash_cap * 2 : 256;
        rt_timer_t **nt = calloc(cap, sizeof *nt);
        if (!nt)
            return false;
        rt_timer_t **old = hash;
        uint32_t oldcap = hash_cap;
        hash = nt;
        hash_cap = cap;
        for (uint32_t i = 0; i < oldcap; i++) {
            for (rt_timer_t *t = old[i], *n; t; t = n) {
                n = t->hnext;
                uint32_t h = hslot(t->id);
                t->hnext = hash[h];
                hash[h] = t;
            }
        }
        free(old);
    }
    return true;
}

/* Unlinks t from heap, hash and owner list (lock held). */
static void detach(rt_timer_t *t)
{
    heap_remove(t);
    hash_del(t);
    if (t->oprev)
        t->oprev->onext = t->onext;
    else
        t->owner->timers = t->onext;
    if (t->onext)
        t->onext->oprev = t->oprev;
}

static uint64_t insert(int ms, rt_pid_t to, rt_msg_t *m, uint64_t id)
{
    rt_timer_t *t = malloc(sizeof *t);
    if (!t) {
        rt_msg_free(m);
        return 0;
    }
    if (ms < 0)
        ms = 0;
    t->deadline = rt_now_ns() + (uint64_t)ms * 1000000u;
    t->id = id;
    t->to = to;
    t->msg = m;
    m->to = to;
    pthread_mutex_lock(&tmu);
    /* Checked under the lock: a process's exit clears its pid before it
     * takes this lock to cancel its timers, so no timer is left behind. */
    rt_proc_t *p = rt__lookup(to);
    if (!p || !grow()) {
        pthread_mutex_unlock(&tmu);
        free(t);
        rt_msg_free(m);
        return 0;
    }
    t->seq = seq++;
    t->owner = p;
    t->oprev = NULL;
    t->onext = p->timers;
    if (p->timers)
        p->timers->oprev = t;
    p->timers = t;
    uint32_t h = hslot(t->id);
    t->hnext = hash[h];
    hash[h] = t;
    t->heap_idx = heap_n;
    heap[heap_n++] = t;
    sift_up(t->heap_idx);
    if (t->deadline < sleeping_until)
        pthread_cond_signal(&tcond);
    pthread_mutex_unlock(&tmu);
    return id; /* not t->id: a due timer may already be fired and freed */
}

uint64_t rt__send_after_raw(int ms, rt_pid_t to, rt_msg_t *m)
{
    return insert(ms, to, m, rt_make_ref());
}

uint64_t rt_send_after(int ms, rt_pid_t to, rt_msg_t *m)
{
    uint64_t id = rt_make_ref();
    m->kind = RT_MSG_TIMER;
    m->from = rt_self();
    m->ref = id;
    return insert(ms, to, m, id);
}

uint64_t rt_send_after_ref(int ms, rt_pid_t to, rt_msg_t *m, uint64_t ref)
{
    m->kind = RT_MSG_TIMER;
    m->from = rt_self();
    m->ref = ref;
    return insert(ms, to, m, rt_make_ref());
}

int rt_cancel_timer(uint64_t id)
{
    pthread_mutex_lock(&tmu);
    rt_timer_t *t = hash_find(id);
    if (!t) {
        pthread_mutex_unlock(&tmu);
        return RT_ENOTFOUND;
    }
    detach(t);
    pthread_mutex_unlock(&tmu);
    rt_msg_free(t->msg);
    free(t);
    return RT_OK;
}

void rt__timers_cancel_proc(rt_proc_t *p)
{
    rt_timer_t *list = NULL;
    pthread_mutex_lock(&tmu);
    while (p->timers) {
        rt_timer_t *t = p->timers;
        detach(t);
        t->onext = list;
        list = t;
    }
    pthread_mutex_unlock(&tmu);
    while (list) {
        rt_timer_t *n = list->onext;
        rt_msg_free(list->msg);
        free(list);
        list = n;
    }
}

static void *timer_main(void *arg)
{
    (void)arg;
    enum { MAXFIRE = 256 };
    rt_timer_t *fire[MAXFIRE];
    pthread_mutex_lock(&tmu);
    while (!tstop) {
        uint64_t now = rt_now_ns();
        int nf = 0;
        while (heap_n && heap[0]->deadline <= now && nf < MAXFIRE) {
            rt_timer_t *t = heap[0];
            detach(t);
            fire[nf++] = t;
        }
        if (nf) {
            pthread_mutex_unlock(&tmu);
            for (int i = 0; i < nf; i++) {
                rt__deliver(fire[i]->to, fire[i]->msg);
                free(fire[i]);
            }
            pthread_mutex_lock(&tmu);
            continue;
        }
        uint64_t d = now + IDLE_POLL_NS;
        if (heap_n && heap[0]->deadline < d)
            d = heap[0]->deadline;
        sleeping_until = d;
        struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
        pthread_cond_timedwait(&tcond, &tmu, &ts);
        sleeping_until = 0; /* awake: inserts need not signal */
    }
    pthread_mutex_unlock(&tmu);
    return NULL;
}

int rt__timers_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&tcond, &ca);
    pthread_condattr_destroy(&ca);
    tstop = false;
    seq = 0;
    sleeping_until = 0;
    if (pthread_create(&tthread, NULL, timer_main, NULL) != 0)
        return RT_ENOMEM;
    return RT_OK;
}

void rt__timers_stop(void)
{
    pthread_mutex_lock(&tmu);
    tstop = true;
    pthread_cond_signal(&tcond);
    pthread_mutex_unlock(&tmu);
    pthread_join(tthread, NULL);
    while (heap_n) {
        rt_timer_t *t = heap[0];
        detach(t);
        rt_msg_free(t->msg);
        free(t);
    }
    free(heap);
    free(hash);
    heap = NULL;
    hash = NULL;
    heap_cap = hash_cap = 0;
    pthread_cond_destroy(&tcond);
}
