/*
 * msg.c — message allocation and payload ownership.
 *
 * Messages are 64-byte blocks. Senders allocate on one thread and
 * receivers free on another, so the pool is a per-thread free list that
 * spills batches to (and refills from) a global stack of batches; a send
 * costs no lock in the steady state. With RT_NO_POOL (the sanitizer
 * builds) every message is a plain malloc/free, so AddressSanitizer sees
 * each use-after-free and LeakSanitizer each leak a pool would hide.
 * Slabs are freed only by rt_runtime_stop.
 */
#include <stdlib.h>
#include <string.h>

#include "rt/rt_internal.h"

__thread rt_tls_t rt__tls;

#define SLAB_MSGS 1024u
#define TL_MAX 2048u      /* a thread keeps at most this many free messages */
#define BATCH 512u

typedef struct slab {
    struct slab *next;
    rt_msg_t msgs[SLAB_MSGS];
} slab_t;

typedef struct batch {
    struct batch *next;  /* overlays a free message's first word */
} batch_t;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static slab_t *slabs;
static rt_msg_t *batches;     /* stack of batches: each message heads a list of BATCH,
                                 linked through node.next; batches through `from` */

/* A thread that used an earlier runtime drops its caches: they point
 * into slabs that rt_runtime_stop freed. */
void rt__tls_check_epoch(void)
{
    if (rt__tls.epoch != rt__g.epoch) {
        rt__tls.epoch = rt__g.epoch;
        rt__tls.pool = NULL;
        rt__tls.npool = 0;
        rt__tls.nfree = 0;
        rt__tls.stats = NULL;
    }
}

static inline rt_msg_t *next_of(rt_msg_t *m)
{
    rt_mnode_t *n = atomic_load_explicit(&m->node.next, memory_order_relaxed);
    return n ? RT_CONTAINER_OF(n, rt_msg_t, node) : NULL;
}

#ifndef RT_NO_POOL
static bool refill(void)
{
    pthread_mutex_lock(&pool_mu);
    if (batches) {
        rt_msg_t *b = batches;
        batches = (rt_msg_t *)(uintptr_t)b->from;
        pthread_mutex_unlock(&pool_mu);
        rt__tls.pool = b;
        rt__tls.npool = BATCH;
        return true;
    }
    slab_t *s = malloc(sizeof *s);
    if (!s) {
        pthread_mutex_unlock(&pool_mu);
        return false;
    }
    s->next = slabs;
    slabs = s;
    pthread_mutex_unlock(&pool_mu);
    for (uint32_t i = 0; i < SLAB_MSGS; i++) {
        atomic_store_explicit(&s->msgs[i].node.next,
                              i + 1 < SLAB_MSGS ? &s->msgs[i + 1].node : NULL,
                              memory_order_relaxed);
    }
    rt__tls.pool = &s->msgs[0];
    rt__tls.npool = SLAB_MSGS;
    return true;
}

static void spill(void)
{
    /* Hand BATCH messages from the head of our list to the global stack. */
    rt_msg_t *head = rt__tls.pool, *m = head;
    for (uint32_t i = 1; i < BATCH; i++)
        m = next_of(m);
    rt__tls.pool = next_of(m);
    rt__tls.npool -= BATCH;
    atomic_store_explicit(&m->node.next, NULL, memory_order_relaxed);
    pthread_mutex_lock(&pool_mu);
    head->from = (rt_pid_t)(uintptr_t)batches;
    batches = head;
    pthread_mutex_unlock(&pool_mu);
}
#endif

rt_msg_t *rt__msg_alloc(void)
{
    rt_tstats_t *st = rt__stats();
    rt_msg_t *m;
#ifdef RT_NO_POOL
    m = malloc(sizeof *m);
    if (!m)
        return NULL;
#else
    if (!rt__tls.npool && !refill())
        return NULL;
    m = rt__tls.pool;
    rt__tls.pool = next_of(m);
    rt__tls.npool--;
#endif
    rt__count(&st->msgs_alloc, 1);
    memset(m, 0, sizeof *m);
    return m;
}

void rt__msg_dealloc(rt_msg_t *m)
{
    rt_tstats_t *st = rt__stats();
    rt__count(&st->msgs_free, 1);
#ifdef RT_NO_POOL
    free(m);
#else
    atomic_store_explicit(&m->node.next, rt__tls.pool ? &rt__tls.pool->node : NULL,
                          memory_order_relaxed);
    rt__tls.pool = m;
    if (++rt__tls.npool > TL_MAX)
        spill();
#endif
}

void rt__pool_fini(void)
{
    pthread_mutex_lock(&pool_mu);
    while (slabs) {
        slab_t *n = slabs->next;
        free(slabs);
        slabs = n;
    }
    batches = NULL;
    pthread_mutex_unlock(&pool_mu);
}

void rt__msg_release_data(rt_msg_t *m)
{
    void *d = m->data;
    if (!d)
        return;
    m->data = NULL;
    switch ((rt_own_t)m->own) {
    case RT_OWN_FREE: free(d); break;
    case RT_OWN_RC: rt_rc_release(d); break;
    case RT_OWN_NONE: break;
    }
    m->own = RT_OWN_NONE;
}

rt_msg_t *rt__msg_clone(rt_msg_t *m)
{
    rt_msg_t *c = rt__msg_alloc();
    if (!c)
        return NULL;
    memcpy(c, m, sizeof *c);
    atomic_store_explicit(&c->node.next, NULL, memory_order_relaxed);
    m->data = NULL;
    m->own = RT_OWN_NONE;
    return c;
}

/* ---- public ---- */

rt_msg_t *rt_msg_new(uint32_t tag)
{
    rt_msg_t *m = rt__msg_alloc();
    if (m) {
        m->kind = RT_MSG_INFO;
        m->tag = tag;
    }
    return m;
}

void rt_msg_free(rt_msg_t *m)
{
    if (!m)
        return;
    rt__msg_release_data(m);
    rt__msg_dealloc(m);
}

void rt_msg_set_data(rt_msg_t *m, void *data, rt_own_t own)
{
    rt__msg_release_data(m);
    m->data = data;
    m->own = (uint8_t)own;
}

void *rt_msg_take(rt_msg_t *m)
{
    void *d = m->data;
    m->data = NULL;
    m->own = RT_OWN_NONE;
    return d;
}

rt_reason_t *rt_msg_reason(const rt_msg_t *m)
{
    switch (m->kind) {
    case RT_MSG_EXIT:
    case RT_MSG_DOWN:
    case RT_MSG__EXITSIG:
        return m->data;
    case RT_MSG_REPLY:
    case RT_MSG_ACK:
        return (m->flags & RT_MF_ERROR) ? m->data : NULL;
    }
    return NULL;
}
