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
    return RT_OK;
}

/* O(n): these sets are small for almost every process; a process with
 * thousands of links or monitors pays linear removal. */
int rt__vec_find_ref(const rt_vec_t *v, uint64_t ref)
{
    for (uint32_t i = 0; i < v->n; i++)
        if (v->v[i].ref == ref)
            return (int)i;
    return -1;
}

int rt__vec_find_pid(const rt_vec_t *v, rt_pid_t pid)
{
    for (uint32_t i = 0; i < v->n; i++)
        if (v->v[i].pid == pid)
            return (int)i;
    return -1;
}

void rt__vec_del(rt_vec_t *v, int i)
{
    v->v[i] = v->v[--v->n];
}

void rt__vec_free(rt_vec_t *v)
{
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}
