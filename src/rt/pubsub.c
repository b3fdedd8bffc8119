/*
 * pubsub.c — topics and their subscribers (Phoenix.PubSub, locally).
 *
 * A topic holds an array of subscriptions; each subscription is also on
 * its process's list so that the process's exit removes it. Removal swaps
 * the last element into the hole and fixes its index, so unsubscribing is
 * O(1) even for a topic with tens of thousands of viewers. A publish holds
 * the read lock while it delivers: one message per subscriber, all
 * pointing at the same refcounted payload (retained once each, never
 * copied). Subscribe and unsubscribe take the write lock.
 */
#include <stdlib.h>
#include <string.h>

#include "rt/rt_internal.h"

typedef struct topic topic_t;

typedef struct rt_sub {
    topic_t *topic;
    rt_pid_t pid;
    uint32_t idx;               /* position in topic->subs (write lock) */
    struct rt_sub *next;        /* the process's list (runner only) */
} rt_sub_t;

struct topic {
    char *name;
    uint64_t hash;
    rt_sub_t **subs;
    uint32_t n, cap;
    topic_t *next;
};

static pthread_rwlock_t ps_lock = PTHREAD_RWLOCK_INITIALIZER;
static topic_t **topics;
static uint32_t tcap, tn;

uint64_t rt_topic_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

void rt__pubsub_init(void)
{
    tn = 0;
}

void rt__pubsub_fini(void)
{
    pthread_rwlock_wrlock(&ps_lock);
    for (uint32_t i = 0; i < tcap; i++) {
        for (topic_t *t = topics[i], *n; t; t = n) {
            n = t->next;
            free(t->subs);
            free(t->name);
            free(t);
        }
    }
    free(topics);
    topics = NULL;
    tcap = tn = 0;
    pthread_rwlock_unlock(&ps_lock);
}

static topic_t *find(const char *name, uint64_t h)
{
    if (!tcap)
        return NULL;
    for (topic_t *t = topics[h & (tcap - 1)]; t; t = t->next)
        if (t->hash == h && strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static topic_t *create(const char *name, uint64_t h)
{
    if (tn + 1 > tcap) {
        uint32_t cap = tcap ? tcap * 2 : 64;
        topic_t **nt = calloc(cap, sizeof *nt);
        if (!nt)
            return NULL;
        for (uint32_t i = 0; i < tcap; i++) {
            for (topic_t *t = topics[i], *n; t; t = n) {
                n = t->next;
                t->next = nt[t->hash & (cap - 1)];
                nt[t->hash & (cap - 1)] = t;
            }
        }
        free(topics);
        topics = nt;
        tcap = cap;
    }
    topic_t *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    t->hash = h;
    t->next = topics[h & (tcap - 1)];
    topics[h & (tcap - 1)] = t;
    tn++;
    return t;
}

static void destroy_if_empty(topic_t *t)
{
    if (t->n)
        return;
    for (topic_t **pp = &topics[t->hash & (tcap - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    tn--;
    free(t->subs);
    free(t->name);
    free(t);
}

/* Write lock held. */
static void remove_sub(rt_sub_t *s)
{
    topic_t *t = s->topic;
    rt_sub_t *last = t->subs[--t->n];
    t->subs[s->idx] = last;
    last->idx = s->idx;
    destroy_if_empty(t);
}

int rt_subscribe(const char *topic)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return RT_ECONTEXT;
    rt_ext_t *x = rt__ext(self);
    uint64_t h = rt_topic_hash(topic);
    for (rt_sub_t *s = x->subs; s; s = s->next)
        if (s->topic->hash == h && strcmp(s->topic->name, topic) == 0)
            return RT_OK;
    rt_sub_t *s = malloc(sizeof *s);
    if (!s)
        return RT_ENOMEM;
    pthread_rwlock_wrlock(&ps_lock);
    topic_t *t = find(topic, h);
    if (!t)
        t = create(topic, h);
    if (t && t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 4;
        rt_sub_t **ns = realloc(t->subs, cap * sizeof *ns);
        if (ns) {
            t->subs = ns;
            t->cap = cap;
        }
    }
    if (!t || t->n == t->cap) {
        if (t)
            destroy_if_empty(t);
        pthread_rwlock_unlock(&ps_lock);
        free(s);
        return RT_ENOMEM;
    }
    s->topic = t;
    s->pid = rt_self();
    s->idx = t->n;
    t->subs[t->n++] = s;
    pthread_rwlock_unlock(&ps_lock);
    s->next = x->subs;
    x->subs = s;
    return RT_OK;
}

int rt_unsubscribe(const char *topic)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return RT_ECONTEXT;
    rt_ext_t *x = self->ext;
    uint64_t h = rt_topic_hash(topic);
    for (rt_sub_t **pp = x ? &x->subs : NULL; pp && *pp; pp = &(*pp)->next) {
        rt_sub_t *s = *pp;
        if (s->topic->hash == h && strcmp(s->topic->name, topic) == 0) {
            *pp = s->next;
            pthread_rwlock_wrlock(&ps_lock);
            remove_sub(s);
            pthread_rwlock_unlock(&ps_lock);
            free(s);
            return RT_OK;
        }
    }
    return RT_ENOTFOUND;
}

void rt__pubsub_drop_all(rt_proc_t *p)
{
    rt_sub_t *s = p->ext ? p->ext->subs : NULL;
    if (!s)
        return;
    p->ext->subs = NULL;
    pthread_rwlock_wrlock(&ps_lock);
    for (rt_sub_t *q = s; q; q = q->next)
        remove_sub(q);
    pthread_rwlock_unlock(&ps_lock);
    while (s) {
        rt_sub_t *n = s->next;
        free(s);
        s = n;
    }
}

int rt_publish(const char *topic, uint32_t tag, rt_rc_t *payload)
{
    uint64_t h = rt_topic_hash(topic);
    rt_pid_t from = rt_self();
    int n = 0;
    pthread_rwlock_rdlock(&ps_lock);
    topic_t *t = find(topic, h);
    for (uint32_t i = 0; t && i < t->n; i++) {
        rt_msg_t *m = rt__msg_alloc();
        if (!m) {
            pthread_rwlock_unlock(&ps_lock);
            return RT_ENOMEM;
        }
        m->kind = RT_MSG_PUB;
        m->tag = tag;
        m->a = h;
        m->from = from;
        if (payload) {
            rt_rc_retain(payload);
            m->data = payload;
            m->own = RT_OWN_RC;
        }
        if (rt__deliver(t->subs[i]->pid, m) == RT_OK)
            n++;
    }
    pthread_rwlock_unlock(&ps_lock);
    return n;
}

size_t rt_subscriber_count(const char *topic)
{
    pthread_rwlock_rdlock(&ps_lock);
    topic_t *t = find(topic, rt_topic_hash(topic));
    size_t n = t ? t->n : 0;
    pthread_rwlock_unlock(&ps_lock);
    return n;
}
