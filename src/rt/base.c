/*
 * base.c — the runtime's small shared pieces: error names, reference
 * counts, shared buffers, exit reasons, the clock, refs, per-thread
 * counters and the little vectors that hold links and monitors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt/rt_internal.h"

const char *rt_strerror(int err)
{
    switch (err) {
    case RT_OK: return "ok";
    case RT_ENOMEM: return "out of memory";
    case RT_ENOPROC: return "no such process";
    case RT_ECALLSELF: return "process called itself";
    case RT_ETAKEN: return "name already registered";
    case RT_ENOTFOUND: return "not found";
    case RT_ETIMEOUT: return "timeout";
    case RT_ECONTEXT: return "wrong thread context";
    case RT_EINVAL: return "invalid argument";
    case RT_ELIMIT: return "limit reached";
    case RT_EEXIT: return "callee exited";
    case RT_ESTATE: return "runtime not running";
    }
    return "unknown error";
}

void rt__panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("roost runtime: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* ---- reference counts ---- */

#define RC_STATIC UINT32_MAX

void rt_rc_init(rt_rc_t *rc, void (*dtor)(rt_rc_t *))
{
    atomic_init(&rc->refs, 1);
    rc->dtor = dtor;
}

void rt_rc_retain(rt_rc_t *rc)
{
    if (atomic_load_explicit(&rc->refs, memory_order_relaxed) == RC_STATIC)
        return;
    /* relaxed: a new reference is made from an existing one, which keeps
     * the object alive meanwhile (the Boost/Rust Arc argument). */
    atomic_fetch_add_explicit(&rc->refs, 1, memory_order_relaxed);
}

void rt_rc_release(rt_rc_t *rc)
{
    if (atomic_load_explicit(&rc->refs, memory_order_relaxed) == RC_STATIC)
        return;
    /* acq_rel: release so our writes happen-before the free, acquire so
     * the freeing thread sees everyone's. (A release decrement plus an
     * acquire fence is the textbook form, but ThreadSanitizer does not
     * model fences; on x86 the locked decrement costs the same.) */
    if (atomic_fetch_sub_explicit(&rc->refs, 1, memory_order_acq_rel) == 1) {
        if (rc->dtor)
            rc->dtor(rc);
    }
}

static void buf_dtor(rt_rc_t *rc)
{
    free(RT_CONTAINER_OF(rc, rt_buf_t, rc));
}

rt_buf_t *rt_buf_new(const void *data, size_t len)
{
    rt_buf_t *b = malloc(sizeof *b + len + 1);
    if (!b)
        return NULL;
    rt_rc_init(&b->rc, buf_dtor);
    b->len = len;
    if (data)
        memcpy(b->data, data, len);
    b->data[len] = 0;
    return b;
}

/* ---- reasons ---- */

#define STATIC_REASON(var, c, txt)                                            \
    static struct { rt_rc_t rc; rt_reason_code_t code; char text[16]; } var = \
        { { RC_STATIC, NULL }, c, txt }

STATIC_REASON(r_normal, RT_R_NORMAL, "normal");
STATIC_REASON(r_shutdown, RT_R_SHUTDOWN, "shutdown");
STATIC_REASON(r_kill, RT_R_KILL, "kill");
STATIC_REASON(r_killed, RT_R_KILLED, "killed");
STATIC_REASON(r_noproc, RT_R_NOPROC, "noproc");
STATIC_REASON(r_timeout, RT_R_TIMEOUT, "timeout");
STATIC_REASON(r_callself, RT_R_CALLSELF, "calling_self");
STATIC_REASON(r_enomem, RT_R_OTHER, "enomem");

rt_reason_t *const RT_NORMAL = (rt_reason_t *)&r_normal;
rt_reason_t *const RT_SHUTDOWN = (rt_reason_t *)&r_shutdown;
rt_reason_t *const RT_KILL = (rt_reason_t *)&r_kill;
rt_reason_t *const RT_KILLED = (rt_reason_t *)&r_killed;
rt_reason_t *const RT_NOPROC_REASON = (rt_reason_t *)&r_noproc;
rt_reason_t *const RT_TIMEOUT_REASON = (rt_reason_t *)&r_timeout;
rt_reason_t *const RT_CALLSELF_REASON = (rt_reason_t *)&r_callself;

static void reason_dtor(rt_rc_t *rc)
{
    free(RT_CONTAINER_OF(rc, rt_reason_t, rc));
}

rt_reason_t *rt_reason_new(const char *text)
{
    rt_reason_t *const known[] = { RT_NORMAL, RT_SHUTDOWN, RT_KILL, RT_KILLED,
                                   RT_NOPROC_REASON, RT_TIMEOUT_REASON,
                                   RT_CALLSELF_REASON };
    if (!text)
        text = "";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i]->text, text) == 0)
            return known[i];
    size_t len = strlen(text);
    rt_reason_t *r = malloc(sizeof *r + len + 1);
    if (!r)
        return (rt_reason_t *)&r_enomem;
    rt_rc_init(&r->rc, reason_dtor);
    r->code = RT_R_OTHER;
    memcpy(r->text, text, len + 1);
    return r;
}

rt_reason_t *rt_reason_fmt(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return rt_reason_new(buf);
}

/* ---- clock and refs ---- */

uint64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rt_now_ms(void)
{
    return rt_now_ns() / 1000000u;
}

uint64_t rt_make_ref(void)
{
    /* relaxed: uniqueness is all a ref needs. */
    return atomic_fetch_add_explicit(&rt__g.next_ref, 1, memory_order_relaxed) + 1;
}

/* ---- per-thread counters ---- */

rt_tstats_t *rt__stats(void)
{
    rt__tls_check_epoch();
    if (rt__tls.stats)
        return rt__tls.stats;
    rt_tstats_t *s = calloc(1, sizeof *s);
    if (!s)
        rt__panic("out of memory for thread counters");
    pthread_mutex_lock(&rt__g.stats_mu);
    s->next = rt__g.stats_list;
    rt__g.stats_list = s;
    pthread_mutex_unlock(&rt__g.stats_mu);
    rt__tls.stats = s;
    return s;
}

/* ---- vectors ---- */

static inline uint64_t vec_key(const rt_vec_t *v, const rt_pair_t *e)
{
    return v->by_pid ? e->pid : e->ref;
}

static inline uint32_t vec_slot(uint64_t key, uint32_t cap)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static void ix_put(rt_vec_t *v, uint32_t pos)
{
    uint32_t i = vec_slot(vec_key(v, &v->v[pos]), v->ixcap);
    while (v->ix[i])
        i = (i + 1) & (v->ixcap - 1);
    v->ix[i] = pos + 1;
}

/* Linear probing with backward-shift deletion (no tombstones). */
static void ix_remove_at(rt_vec_t *v, uint32_t i)
{
    uint32_t mask = v->ixcap - 1, j = i;
    v->ix[i] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!v->ix[j])
            return;
        uint32_t home = vec_slot(vec_key(v, &v->v[v->ix[j] - 1]), v->ixcap);
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        if ((i <= j) ? (home <= i || home > j) : (home <= i && home > j)) {
            v->ix[i] = v->ix[j];
            v->ix[j] = 0;
            i = j;
        }
    }
}

static uint32_t ix_find_slot(const rt_vec_t *v, uint64_t key)
{
    uint32_t i = vec_slot(key, v->ixcap);
    while (v->ix[i] && vec_key(v, &v->v[v->ix[i] - 1]) != key)
        i = (i + 1) & (v->ixcap - 1);
    return i;
}

static bool ix_build(rt_vec_t *v, bool by_pid)
{
    uint32_t cap = 64;
    while (cap < 2 * (v->n + 1))
        cap *= 2;
    uint32_t *ix = calloc(cap, sizeof *ix);
    if (!ix)
        return false;
    free(v->ix);
    v->ix = ix;
    v->ixcap = cap;
    v->by_pid = by_pid;
    for (uint32_t k = 0; k < v->n; k++)
        ix_put(v, k);
    return true;
}

int rt__vec_add(rt_vec_t *v, uint64_t ref, rt_pid_t pid)
{
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 2;
        rt_pair_t *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv)
            return RT_ENOMEM;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = (rt_pair_t){ ref, pid };
    if (v->ix) {
        if (2 * v->n > v->ixcap && !ix_build(v, v->by_pid)) {
            free(v->ix); /* fall back to linear search */
            v->ix = NULL;
        } else if (v->ix && 2 * v->n <= v->ixcap) {
            ix_put(v, v->n - 1);
        }
    }
    return RT_OK;
}

static int vec_find(rt_vec_t *v, uint64_t key, bool by_pid)
{
    if (v->n >= RT_VEC_INDEX_MIN && (!v->ix || v->by_pid != by_pid))
        ix_build(v, by_pid); /* on ENOMEM: linear search below */
    if (v->ix && v->by_pid == by_pid) {
        uint32_t i = ix_find_slot(v, key);
        return v->ix[i] ? (int)(v->ix[i] - 1) : -1;
    }
    for (uint32_t i = 0; i < v->n; i++)
        if ((by_pid ? v->v[i].pid : v->v[i].ref) == key)
            return (int)i;
    return -1;
}

/* Each vector is searched by one key only: links by pid (unique), the
 * others by ref (unique); the index is built for that key. */
int rt__vec_find_ref(rt_vec_t *v, uint64_t ref)
{
    return vec_find(v, ref, false);
}

int rt__vec_find_pid(rt_vec_t *v, rt_pid_t pid)
{
    return vec_find(v, pid, true);
}

void rt__vec_del(rt_vec_t *v, int i)
{
    uint32_t last = v->n - 1;
    if (v->ix) {
        ix_remove_at(v, ix_find_slot(v, vec_key(v, &v->v[i])));
        if ((uint32_t)i != last) {
            /* The last element moves into the hole: repoint its entry. */
            uint32_t j = ix_find_slot(v, vec_key(v, &v->v[last]));
            v->ix[j] = (uint32_t)i + 1;
        }
    }
    v->v[i] = v->v[last];
    v->n--;
}

void rt__vec_free(rt_vec_t *v)
{
    free(v->v);
    free(v->ix);
    v->v = NULL;
    v->ix = NULL;
    v->n = v->cap = v->ixcap = 0;
}
