/*
 * inbox.c — a thread that is not a scheduler (main, a test, an I/O
 * thread) acting as a process.
 *
 * An inbox is a real process whose callbacks hand each message to a
 * mutex-protected queue that its owning thread reads, blocking. Links,
 * monitors and spawns "on the inbox's behalf" are requests the inbox's
 * process carries out in its own context, in order, so the runtime's
 * rule that only the runner touches a process still holds. The struct is
 * shared by the thread and the process: two references, one each.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt/rt_internal.h"

#define INBOX_REQ_TAG 0x1b0c5e00u

enum req_op { REQ_LINK = 1, REQ_MONITOR, REQ_SPAWN, REQ_CLOSE };

struct rt_inbox;
typedef struct inbox_req {
    struct rt_inbox *ib;        /* proves the request came from the owner */
    enum req_op op;
    rt_pid_t pid;
    uint64_t ref;
    const rt_behaviour_t *b;
    void *arg;
    rt_spawn_opts_t *opts;
    int rc;
    bool done;
} inbox_req_t;

struct rt_inbox {
    rt_rc_t rc;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    rt_msg_t *head, *tail;
    size_t n;
    rt_pid_t pid;
    bool dead;
};

static void inbox_dtor(rt_rc_t *rc)
{
    rt_inbox_t *ib = RT_CONTAINER_OF(rc, rt_inbox_t, rc);
    while (ib->head) {
        rt_msg_t *m = ib->head;
        rt_mnode_t *n = atomic_load_explicit(&m->node.next, memory_order_relaxed);
        ib->head = n ? RT_CONTAINER_OF(n, rt_msg_t, node) : NULL;
        rt_msg_free(m);
    }
    pthread_mutex_destroy(&ib->mu);
    pthread_cond_destroy(&ib->cond);
    free(ib);
}

static rt_reason_t *ib_init(void *arg, void **state)
{
    rt__tls.self->pflags |= RT_PF_RAW;
    *state = arg;
    return NULL;
}

static void ib_terminate(void *state, rt_reason_t *reason)
{
    rt_inbox_t *ib = state;
    pthread_mutex_lock(&ib->mu);
    ib->dead = true;
    pthread_cond_broadcast(&ib->cond);
    pthread_mutex_unlock(&ib->mu);
    rt_rc_release(&ib->rc);
}

static void ib_enqueue(rt_inbox_t *ib, rt_msg_t *m)
{
    rt_msg_t *c = rt__msg_clone(m);
    if (!c)
        rt_fail(rt_reason_new("enomem"));
    pthread_mutex_lock(&ib->mu);
    if (ib->tail)
        atomic_store_explicit(&ib->tail->node.next, &c->node, memory_order_relaxed);
    else
        ib->head = c;
    ib->tail = c;
    ib->n++;
    pthread_cond_broadcast(&ib->cond);
    pthread_mutex_unlock(&ib->mu);
}

static void ib_request(rt_inbox_t *ib, inbox_req_t *r)
{
    switch (r->op) {
    case REQ_LINK:
        r->rc = rt_link(r->pid);
        break;
    case REQ_MONITOR: {
        /* Use the ref the owner chose, so it can return it at once. */
        rt_proc_t *self = rt__tls.self;
        rt__vec_add(&rt__ext(self)->mon_out, r->ref, r->pid);
        rt_msg_t *m = rt__msg_alloc();
        if (!m)
            rt_fail(rt_reason_new("enomem"));
        m->kind = RT_MSG__MONITOR;
        m->from = rt_self();
        m->ref = r->ref;
        rt__deliver(r->pid, m);
        r->rc = RT_OK;
        break;
    }
    case REQ_SPAWN:
        r->rc = rt_spawn(r->b, r->arg, r->opts, &r->pid);
        break;
    case REQ_CLOSE:
        rt_stop(RT_NORMAL);
        r->rc = RT_OK;
        break;
    }
    pthread_mutex_lock(&ib->mu);
    r->done = true;
    pthread_cond_broadcast(&ib->cond);
    pthread_mutex_unlock(&ib->mu);
}

static void ib_info(void *state, rt_msg_t *m)
{
    rt_inbox_t *ib = state;
    if (m->kind == RT_MSG_INFO && m->tag == INBOX_REQ_TAG && m->from == RT_NOPID && m->data &&
        ((inbox_req_t *)m->data)->ib == ib) {
        ib_request(ib, rt_msg_take(m));
        return;
    }
    ib_enqueue(ib, m);
}

static int ib_call(void *state, rt_msg_t *req, rt_from_t from)
{
    ib_enqueue(state, req);  /* the owner answers with rt_reply */
    return RT_NOREPLY;
}

static const rt_behaviour_t inbox_behaviour = RT_BEHAVIOUR(
    .name = "inbox",
    .init = ib_init,
    .handle_call = ib_call,
    .handle_cast = ib_info,
    .handle_info = ib_info,
    .terminate = ib_terminate);

rt_inbox_t *rt_inbox_open(uint32_t flags)
{
    rt_inbox_t *ib = calloc(1, sizeof *ib);
    if (!ib)
        return NULL;
    rt_rc_init(&ib->rc, inbox_dtor);
    atomic_store(&ib->rc.refs, 2);   /* the owner's and the process's */
    pthread_mutex_init(&ib->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ib->cond, &ca);
    pthread_condattr_destroy(&ca);
    rt_spawn_opts_t o = { .flags = (flags & RT_INBOX_TRAP_EXIT) ? RT_SPAWN_TRAP_EXIT : 0 };
    if (rt_spawn(&inbox_behaviour, ib, &o, &ib->pid) != RT_OK) {
        pthread_mutex_destroy(&ib->mu);
        pthread_cond_destroy(&ib->cond);
        free(ib);
        return NULL;
    }
    return ib;
}

rt_pid_t rt_inbox_pid(const rt_inbox_t *ib)
{
    return ib->pid;
}

static bool deadline_wait(rt_inbox_t *ib, int timeout_ms, const struct timespec *until)
{
    if (timeout_ms < 0) {
        pthread_cond_wait(&ib->cond, &ib->mu);
        return true;
    }
    return pthread_cond_timedwait(&ib->cond, &ib->mu, until) != ETIMEDOUT;
}

static struct timespec deadline(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (timeout_ms > 0) {
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    return ts;
}

rt_msg_t *rt_inbox_recv_match(rt_inbox_t *ib, uint16_t kind, uint64_t ref, int timeout_ms)
{
    struct timespec until = deadline(timeout_ms);
    pthread_mutex_lock(&ib->mu);
    for (;;) {
        rt_msg_t *prev = NULL;
        for (rt_msg_t *m = ib->head; m;) {
            rt_mnode_t *n = atomic_load_explicit(&m->node.next, memory_order_relaxed);
            rt_msg_t *next = n ? RT_CONTAINER_OF(n, rt_msg_t, node) : NULL;
            if ((!kind || m->kind == kind) && (!ref || m->ref == ref)) {
                if (prev)
                    atomic_store_explicit(&prev->node.next, n, memory_order_relaxed);
                else
                    ib->head = next;
                if (ib->tail == m)
                    ib->tail = prev;
                ib->n--;
                pthread_mutex_unlock(&ib->mu);
                atomic_store_explicit(&m->node.next, NULL, memory_order_relaxed);
                return m;
            }
            prev = m;
            m = next;
        }
        if (timeout_ms == 0 || !deadline_wait(ib, timeout_ms, &until)) {
            pthread_mutex_unlock(&ib->mu);
            return NULL;
        }
    }
}

rt_msg_t *rt_inbox_recv(rt_inbox_t *ib, int timeout_ms)
{
    return rt_inbox_recv_match(ib, 0, 0, timeout_ms);
}

size_t rt_inbox_pending(rt_inbox_t *ib)
{
    pthread_mutex_lock(&ib->mu);
    size_t n = ib->n;
    pthread_mutex_unlock(&ib->mu);
    return n;
}

/* Sends a request to the inbox's process and waits until it is done.
 * Returns RT_ENOPROC if the inbox's process is gone. */
static int request(rt_inbox_t *ib, inbox_req_t *r)
{
    r->ib = ib;
    r->done = false;
    rt_msg_t *m = rt_msg_new(INBOX_REQ_TAG);
    if (!m)
        return RT_ENOMEM;
    m->data = r;
    m->own = RT_OWN_NONE;
    m->from = RT_NOPID;
    m->kind = RT_MSG_INFO;
    if (rt__deliver(ib->pid, m) != RT_OK)
        return RT_ENOPROC;
    pthread_mutex_lock(&ib->mu);
    while (!r->done && !ib->dead)
        pthread_cond_wait(&ib->cond, &ib->mu);
    bool done = r->done;
    pthread_mutex_unlock(&ib->mu);
    return done ? r->rc : RT_ENOPROC;
}

int rt_inbox_link(rt_inbox_t *ib, rt_pid_t pid)
{
    inbox_req_t r = { .op = REQ_LINK, .pid = pid };
    return request(ib, &r);
}

uint64_t rt_inbox_monitor(rt_inbox_t *ib, rt_pid_t pid)
{
    inbox_req_t r = { .op = REQ_MONITOR, .pid = pid, .ref = rt_make_ref() };
    return request(ib, &r) == RT_OK ? r.ref : 0;
}

int rt_inbox_spawn(rt_inbox_t *ib, const rt_behaviour_t *b, void *arg, rt_spawn_opts_t *opts,
                   rt_pid_t *pid)
{
    inbox_req_t r = { .op = REQ_SPAWN, .b = b, .arg = arg, .opts = opts };
    int rc = request(ib, &r);
    if (rc == RT_OK && pid)
        *pid = r.pid;
    return rc;
}

void rt_inbox_close(rt_inbox_t *ib)
{
    if (!ib)
        return;
    inbox_req_t r = { .op = REQ_CLOSE };
    request(ib, &r);
    rt_rc_release(&ib->rc);
}

/* ---- blocking calls from external threads ---- */

int rt_call_sync(rt_pid_t to, rt_msg_t *req, int timeout_ms, rt_msg_t **reply)
{
    *reply = NULL;
    if (rt__on_scheduler()) {
        rt_msg_free(req);
        return RT_ECONTEXT;
    }
    rt_inbox_t *ib = rt_inbox_open(0);
    if (!ib) {
        rt_msg_free(req);
        return RT_ENOMEM;
    }
    uint64_t ref = rt_make_ref();
    req->kind = RT_MSG_CALL;
    req->from = ib->pid;
    req->ref = ref;
    if (rt__deliver(to, req) != RT_OK) {
        rt_inbox_close(ib);
        return RT_ENOPROC;
    }
    rt_msg_t *m = rt_inbox_recv_match(ib, RT_MSG_REPLY, ref, timeout_ms);
    rt_inbox_close(ib);
    if (!m)
        return RT_ETIMEOUT;
    if (m->flags & RT_MF_ERROR) {
        rt_reason_t *r = m->data;
        if (r && r->code == RT_R_NOPROC) {
            rt_msg_free(m);
            return RT_ENOPROC;
        }
        *reply = m;
        return RT_EEXIT;
    }
    *reply = m;
    return RT_OK;
}
