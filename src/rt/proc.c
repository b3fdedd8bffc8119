/*
 * proc.c — processes: the table, spawning, sending, the per-turn run loop
 * and everything that happens when a process exits (links, monitors,
 * pending calls, names, subscriptions, timers).
 *
 * Rules this file keeps (see rt_internal.h for the invariants):
 *  1. Only the runner touches a process's state, ext and pflags.
 *  2. A message is delivered only if its `to` equals the slot's live pid
 *     at the moment the runner pops it; anything else is stale and is
 *     bounced (calls answered noproc, link/monitor requests refused).
 *  3. Exit order: mark dead (new sends fail), terminate, timers, names,
 *     subscriptions, link signals, DOWNs, demonitors, pending calls,
 *     postponed and queued messages answered with the reason, then the
 *     slot goes back to the allocator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/rt_internal.h"

rt_global_t rt__g = { .stats_mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- slot allocator ------------------------------------------------------ */

static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t *free_stack;
static uint32_t free_n, free_cap;

static int grow_chunk(void)
{
    uint32_t c = atomic_load_explicit(&rt__g.nchunks, memory_order_relaxed);
    if (c >= RT_MAX_CHUNKS || (uint64_t)(c + 1) * RT_CHUNK_SIZE > (uint64_t)rt__g.max_procs + RT_CHUNK_SIZE)
        return RT_ELIMIT;
    rt_proc_t *chunk = calloc(RT_CHUNK_SIZE, sizeof *chunk);
    if (!chunk)
        return RT_ENOMEM;
    /* The stack must hold every index that exists: slots taken by one
     * thread come back through another's cache. */
    uint32_t total = (c + 1) * RT_CHUNK_SIZE;
    if (total > free_cap) {
        uint32_t cap = free_cap ? free_cap * 2 : RT_CHUNK_SIZE * 4;
        while (cap < total)
            cap *= 2;
        uint32_t *ns = realloc(free_stack, cap * sizeof *ns);
        if (!ns) {
            free(chunk);
            return RT_ENOMEM;
        }
        free_stack = ns;
        free_cap = cap;
    }
    for (uint32_t i = 0; i < RT_CHUNK_SIZE; i++) {
        rt_proc_t *p = &chunk[i];
        p->mb_tail = &p->stub;
        atomic_init(&p->stub.next, NULL);
        atomic_init(&p->mb_head, (uintptr_t)&p->stub | 1u);
    }
    /* Slot 0 of chunk 0 stays unused so that pid 0 is never valid. */
    for (uint32_t i = RT_CHUNK_SIZE; i-- > 0;) {
        uint32_t idx = c * RT_CHUNK_SIZE + i;
        if (idx != 0)
            free_stack[free_n++] = idx;
    }
    atomic_store_explicit(&rt__g.chunks[c], chunk, memory_order_release);
    atomic_store_explicit(&rt__g.nchunks, c + 1, memory_order_release);
    return RT_OK;
}

static int alloc_slot(uint32_t *idx)
{
    rt__tls_check_epoch();
    if (rt__tls.nfree == 0) {
        pthread_mutex_lock(&slot_mu);
        if (free_n == 0) {
            int rc = grow_chunk();
            if (rc != RT_OK) {
                pthread_mutex_unlock(&slot_mu);
                return rc;
            }
        }
        /* Take up to half our cache size; low indices first keeps the
         * table dense. */
        while (rt__tls.nfree < 32 && free_n > 0)
            rt__tls.free_idx[rt__tls.nfree++] = free_stack[--free_n];
        pthread_mutex_unlock(&slot_mu);
    }
    *idx = rt__tls.free_idx[--rt__tls.nfree];
    return RT_OK;
}

static void free_slot(uint32_t idx)
{
    rt__tls_check_epoch();
    if (rt__tls.nfree == 64) {
        pthread_mutex_lock(&slot_mu);
        for (int i = 0; i < 32; i++)
            free_stack[free_n++] = rt__tls.free_idx[--rt__tls.nfree];
        pthread_mutex_unlock(&slot_mu);
    }
    rt__tls.free_idx[rt__tls.nfree++] = idx;
}

void rt__procs_init(void)
{
    free_n = 0;
    atomic_store(&rt__g.nchunks, 0);
}

void rt__procs_fini(void)
{
    uint32_t n = atomic_load(&rt__g.nchunks);
    for (uint32_t c = 0; c < n; c++) {
        rt_proc_t *chunk = atomic_load(&rt__g.chunks[c]);
        /* Stale tails (invariant 4) and anything queued after the end. */
        for (uint32_t i = 0; i < RT_CHUNK_SIZE; i++) {
            rt_proc_t *p = &chunk[i];
            rt_mnode_t *t = p->mb_tail;
            while (t) {
                rt_mnode_t *nx = atomic_load(&t->next);
                if (t != &p->stub)
                    rt_msg_free(RT_CONTAINER_OF(t, rt_msg_t, node));
                t = nx;
            }
        }
        free(chunk);
        atomic_store(&rt__g.chunks[c], NULL);
    }
    atomic_store(&rt__g.nchunks, 0);
    free(free_stack);
    free_stack = NULL;
    free_n = free_cap = 0;
}

rt_ext_t *rt__ext(rt_proc_t *p)
{
    if (!p->ext) {
        p->ext = calloc(1, sizeof *p->ext);
        if (!p->ext)
            rt__panic("out of memory for process extension");
    }
    return p->ext;
}

/* ---- mailbox ---------------------------------------------------------------
 * Pony's intrusive MPSC queue: one atomic exchange enqueues and tells the
 * sender whether the process was idle (bit 0), so exactly one sender
 * schedules it. */

static inline bool mb_push(rt_proc_t *p, rt_msg_t *m)
{
    /* Counted before it can be popped, so sent - received never goes
     * below zero for an observer. */
    atomic_fetch_add_explicit(&p->mb_sent, 1, memory_order_relaxed);
    atomic_store_explicit(&m->node.next, NULL, memory_order_relaxed);
    /* acq_rel: release publishes m's fields to the runner; acquire pairs
     * with the runner's mark-empty CAS so we see the node it left. */
    uintptr_t prev = atomic_exchange_explicit(&p->mb_head, (uintptr_t)&m->node,
                                              memory_order_acq_rel);
    /* release: the runner's acquire load of next sees a complete message. */
    atomic_store_explicit(&((rt_mnode_t *)(prev & ~(uintptr_t)1))->next, &m->node,
                          memory_order_release);
    return (prev & 1u) != 0;
}

static inline rt_msg_t *mb_pop(rt_proc_t *p)
{
    rt_mnode_t *tail = p->mb_tail;
    /* acquire: pairs with the release store in mb_push. */
    rt_mnode_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (!next)
        return NULL;
    p->mb_tail = next;
    if (tail != &p->stub)
        rt__msg_dealloc(RT_CONTAINER_OF(tail, rt_msg_t, node));
    return RT_CONTAINER_OF(next, rt_msg_t, node);
}

/* One message left the mailbox for good (handled or dropped); a message
 * postponed by rt_await still counts as queued until it is handled. */
static inline void count_recv(rt_proc_t *p)
{
    atomic_store_explicit(&p->mb_recv, atomic_load_explicit(&p->mb_recv, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Marks the mailbox idle if nothing arrived since the last pop. False
 * means a sender is mid-push or pushed: keep the process scheduled. */
static inline bool mb_mark_empty(rt_proc_t *p)
{
    uintptr_t tail = (uintptr_t)p->mb_tail;
    uintptr_t head = atomic_load_explicit(&p->mb_head, memory_order_acquire);
    if (head != tail)
        return false;
    return atomic_compare_exchange_strong_explicit(&p->mb_head, &tail, tail | 1u,
                                                   memory_order_acq_rel,
                                                   memory_order_relaxed);
}

static inline uint32_t mb_len(rt_proc_t *p)
{
    /* Two relaxed loads from another thread may still see them out of
     * step: never report a negative length. */
    int32_t n = (int32_t)(atomic_load_explicit(&p->mb_sent, memory_order_relaxed) -
                          atomic_load_explicit(&p->mb_recv, memory_order_relaxed));
    return n > 0 ? (uint32_t)n : 0;
}

/* ---- delivery ------------------------------------------------------------ */

static void bounce(rt_msg_t *m, rt_reason_t *reason);

int rt__deliver(rt_pid_t to, rt_msg_t *m)
{
    rt_tstats_t *st = rt__stats();
    m->to = to;
    rt_proc_t *p = rt__lookup(to);
    if (!p) {
        rt__count(&st->dropped, 1);
        bounce(m, RT_NOPROC_REASON);
        return RT_ENOPROC;
    }
    rt__count(&st->sent, 1);
    if (mb_push(p, m))
        rt__schedule(p);
    /* Backpressure: a process flooding an overloaded mailbox is paused
     * after its callback (see park_muted in rt__run). */
    rt_proc_t *self = rt__tls.self;
    if (self && self != p && mb_len(p) > rt__g.mailbox_high &&
        atomic_load_explicit(&self->pid, memory_order_relaxed) &&
        !(atomic_load_explicit(&p->pflags_pub, memory_order_relaxed) & RT_PF_MUTED)) {
        self->pflags |= RT_PF_MUTED;
        rt__ext(self)->muted_on = to;
    }
    return RT_OK;
}

static rt_msg_t *sys_msg(uint16_t kind, rt_pid_t from, uint64_t ref)
{
    rt_msg_t *m = rt__msg_alloc();
    if (!m)
        rt__panic("out of memory for a system message");
    m->kind = kind;
    m->from = from;
    m->ref = ref;
    return m;
}

static void send_exitsig(rt_pid_t to, rt_pid_t from, rt_reason_t *reason, bool link)
{
    rt_msg_t *m = sys_msg(RT_MSG__EXITSIG, from, 0);
    m->flags = link ? RT_MF_LINK : 0;
    m->data = rt_reason_retain(reason);
    m->own = RT_OWN_RC;
    rt__deliver(to, m);
}

static void send_down(rt_pid_t to, rt_pid_t from, uint64_t ref, rt_reason_t *reason)
{
    rt_msg_t *m = sys_msg(RT_MSG_DOWN, from, ref);
    m->data = rt_reason_retain(reason);
    m->own = RT_OWN_RC;
    rt__deliver(to, m);
}

static void send_error_reply(rt_pid_t to, uint64_t ref, rt_reason_t *reason)
{
    rt_msg_t *m = sys_msg(RT_MSG_REPLY, RT_NOPID, ref);
    m->flags = RT_MF_ERROR;
    m->data = rt_reason_retain(reason);
    m->own = RT_OWN_RC;
    rt__deliver(to, m);
}

/* Answers a message that will never be handled because its target is
 * gone, so whoever waits for an answer gets one. Borrows m. */
static void answer_dead(const rt_msg_t *m, rt_reason_t *reason)
{
    switch (m->kind) {
    case RT_MSG_CALL:
        if (m->from)
            send_error_reply(m->from, m->ref, reason);
        break;
    case RT_MSG__LINK:
        send_exitsig(m->from, m->to, RT_NOPROC_REASON, true);
        break;
    case RT_MSG__MONITOR:
        send_down(m->from, m->to, m->ref, RT_NOPROC_REASON);
        break;
    default:
        /* INIT can only be stale when the runtime stops before the child
         * ran: its arg is the spawner's to free (documented). */
        break;
    }
}

static void bounce(rt_msg_t *m, rt_reason_t *reason)
{
    answer_dead(m, reason);
    rt_msg_free(m);
}

/* ---- spawning ------------------------------------------------------------ */

int rt_spawn(const rt_behaviour_t *b, void *arg, rt_spawn_opts_t *opts, rt_pid_t *pid)
{
    if (!atomic_load_explicit(&rt__g.running, memory_order_acquire))
        return RT_ESTATE;
    if (!b || b->abi != RT_BEHAVIOUR_ABI || !b->init)
        return RT_EINVAL;
    uint32_t flags = opts ? opts->flags : 0;
    rt_proc_t *caller = rt__tls.self;
    if ((flags & (RT_SPAWN_LINK | RT_SPAWN_MONITOR | RT_SPAWN_ACK)) && !caller)
        return RT_ECONTEXT;
    rt_msg_t *m = rt__msg_alloc();
    if (!m)
        return RT_ENOMEM;
    char *name = NULL;
    if (opts && opts->name && !(name = strdup(opts->name))) {
        rt__msg_dealloc(m);
        return RT_ENOMEM;
    }
    uint32_t idx;
    int rc = alloc_slot(&idx);
    if (rc != RT_OK) {
        free(name);
        rt__msg_dealloc(m);
        return rc;
    }
    rt_proc_t *p = rt__slot(idx);
    if (++p->gen == 0)
        p->gen = 1;
    rt_pid_t child = ((rt_pid_t)p->gen << 32) | idx;
    rt_pid_t me = caller ? rt_self() : RT_NOPID;

    m->kind = RT_MSG__INIT;
    m->from = me;
    m->a = (uint64_t)(uintptr_t)arg;
    m->tag = flags;
    m->data = name;
    m->own = RT_OWN_FREE;
    if (flags & RT_SPAWN_LINK)
        rt__vec_add(&rt__ext(caller)->links, 0, child);
    if (flags & RT_SPAWN_MONITOR) {
        opts->monitor_ref = rt_make_ref();
        m->b = opts->monitor_ref;
        rt__vec_add(&rt__ext(caller)->mon_out, opts->monitor_ref, child);
    }
    if (flags & RT_SPAWN_ACK) {
        opts->ack_ref = rt_make_ref();
        m->ref = opts->ack_ref;
    }
    atomic_store_explicit(&p->beh, b, memory_order_relaxed);
    atomic_store_explicit(&p->exec, opts ? opts->exec : NULL, memory_order_relaxed);
    atomic_store_explicit(&p->parent, (opts && opts->parent) ? opts->parent : me,
                          memory_order_relaxed);
    atomic_store_explicit(&p->restarts, opts ? opts->restarts : 0, memory_order_relaxed);
    atomic_store_explicit(&p->handled, 0, memory_order_relaxed);
    atomic_store_explicit(&p->state_mem, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt__g.live_procs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt__g.spawned, 1, memory_order_relaxed);
    /* release: a runner that sees this pid sees beh/parent above. */
    atomic_store_explicit(&p->pid, child, memory_order_release);
    m->to = child;
    if (mb_push(p, m))
        rt__schedule(p);
    if (pid)
        *pid = child;
    return RT_OK;
}

/* ---- sending --------------------------------------------------------------- */

int rt_send_msg(rt_pid_t to, rt_msg_t *m)
{
    m->from = rt_self();
    if (m->kind != RT_MSG_CAST)
        m->kind = RT_MSG_INFO;
    return rt__deliver(to, m);
}

int rt_send(rt_pid_t to, uint32_t tag, uint64_t a, uint64_t b)
{
    rt_msg_t *m = rt_msg_new(tag);
    if (!m)
        return RT_ENOMEM;
    m->a = a;
    m->b = b;
    return rt_send_msg(to, m);
}

int rt_cast_msg(rt_pid_t to, rt_msg_t *m)
{
    m->kind = RT_MSG_CAST;
    return rt_send_msg(to, m);
}

int rt_cast(rt_pid_t to, uint32_t tag, uint64_t a, uint64_t b)
{
    rt_msg_t *m = rt_msg_new(tag);
    if (!m)
        return RT_ENOMEM;
    m->a = a;
    m->b = b;
    return rt_cast_msg(to, m);
}

rt_pid_t rt_self(void)
{
    /* Not p->pid: that is cleared before terminate runs, and terminate
     * still acts as the process. */
    return rt__tls.self ? rt__tls.self_pid : RT_NOPID;
}

bool rt_is_alive(rt_pid_t pid)
{
    return rt__lookup(pid) != NULL;
}

/* ---- calls ------------------------------------------------------------------ */

int rt_call(rt_pid_t to, rt_msg_t *req, int timeout_ms, uint64_t *ref)
{
    rt_proc_t *self = rt__tls.self;
    if (!self) {
        rt_msg_free(req);
        return RT_ECONTEXT;
    }
    rt_pid_t me = rt_self();
    if (to == me) {
        rt_msg_free(req);
        return RT_ECALLSELF;
    }
    uint64_t r = rt_make_ref();
    req->kind = RT_MSG_CALL;
    req->from = me;
    req->ref = r;
    if (rt__deliver(to, req) != RT_OK)
        return RT_ENOPROC;
    uint64_t timer = 0;
    if (timeout_ms >= 0) {
        rt_msg_t *t = sys_msg(RT_MSG_REPLY, RT_NOPID, r);
        t->flags = RT_MF_ERROR;
        t->data = RT_TIMEOUT_REASON;
        t->own = RT_OWN_RC;
        timer = rt__send_after_raw(timeout_ms, me, t);
    }
    if (!(self->pflags & RT_PF_RAW))
        rt__vec_add(&rt__ext(self)->calls, r, timer);
    if (ref)
        *ref = r;
    return RT_OK;
}

void rt_await(uint64_t ref)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        rt__panic("rt_await outside a process");
    rt__ext(self)->await_ref = ref;
    self->pflags |= RT_PF_AWAIT;
}

int rt_reply(rt_from_t from, rt_msg_t *reply)
{
    rt_proc_t *self = rt__tls.self;
    rt_pid_t me = rt_self();
    reply->kind = RT_MSG_REPLY;
    reply->ref = from.ref;
    reply->from = me;
    if (self && me == from.via) {
        if (rt__tls.cur_call_ref == from.ref && rt__tls.cur_call_pid == from.pid)
            rt__tls.replied = true;
        else if (self->ext && self->ext->pending.n) {
            int i = rt__vec_find_ref(&self->ext->pending, from.ref);
            if (i >= 0)
                rt__vec_del(&self->ext->pending, i);
        }
    } else if (from.via) {
        /* Answered on the callee's behalf: the callee must forget the
         * call, or it would keep it and answer it again when it exits. */
        rt__deliver(from.via, sys_msg(RT_MSG__REPLIED, me, from.ref));
    }
    return rt__deliver(from.pid, reply);
}

int rt_reply_val(rt_from_t from, uint32_t tag, uint64_t a, uint64_t b)
{
    rt_msg_t *m = rt_msg_new(tag);
    if (!m)
        return RT_ENOMEM;
    m->a = a;
    m->b = b;
    return rt_reply(from, m);
}

/* ---- exits, links, monitors --------------------------------------------- */

int rt_exit(rt_pid_t pid, rt_reason_t *reason)
{
    rt_msg_t *m = sys_msg(RT_MSG__EXITSIG, rt_self(), 0);
    m->data = rt_reason_retain(reason);
    m->own = RT_OWN_RC;
    return rt__deliver(pid, m);
}

void rt_stop(rt_reason_t *reason)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        rt__panic("rt_stop outside a process");
    rt_ext_t *x = rt__ext(self);
    if (x->stop_reason)
        rt_reason_release(x->stop_reason);
    x->stop_reason = reason;
    self->pflags |= RT_PF_STOP;
}

void rt_fail(rt_reason_t *reason)
{
    if (!rt__tls.self || !rt__tls.fail_jb)
        rt__panic("rt_fail outside a process callback: %s", reason->text);
    rt__tls.fail_reason = reason;
    _longjmp(*rt__tls.fail_jb, 1);
}

int rt_link(rt_pid_t pid)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return RT_ECONTEXT;
    rt_pid_t me = rt_self();
    if (pid == me)
        return RT_OK;
    rt_ext_t *x = rt__ext(self);
    if (rt__vec_find_pid(&x->links, pid) >= 0)
        return RT_OK;
    rt__vec_add(&x->links, 0, pid);
    if (rt__deliver(pid, sys_msg(RT_MSG__LINK, me, 0)) != RT_OK) {
        /* bounce() already queued the noproc link signal to us. */
        return RT_ENOPROC;
    }
    return RT_OK;
}

int rt_unlink(rt_pid_t pid)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return RT_ECONTEXT;
    rt_ext_t *x = self->ext;
    int i = x ? rt__vec_find_pid(&x->links, pid) : -1;
    if (i < 0)
        return RT_OK;
    rt__vec_del(&x->links, i);
    rt__deliver(pid, sys_msg(RT_MSG__UNLINK, rt_self(), 0));
    return RT_OK;
}

uint64_t rt_monitor(rt_pid_t pid)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return 0;
    uint64_t ref = rt_make_ref();
    rt__vec_add(&rt__ext(self)->mon_out, ref, pid);
    /* A dead target answers through bounce(): DOWN noproc, in order. */
    rt__deliver(pid, sys_msg(RT_MSG__MONITOR, rt_self(), ref));
    return ref;
}

int rt_demonitor(uint64_t ref)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return RT_ECONTEXT;
    rt_ext_t *x = self->ext;
    int i = x ? rt__vec_find_ref(&x->mon_out, ref) : -1;
    if (i < 0)
        return RT_ENOTFOUND;
    rt_pid_t target = x->mon_out.v[i].pid;
    rt__vec_del(&x->mon_out, i);
    rt__deliver(target, sys_msg(RT_MSG__DEMONITOR, rt_self(), ref));
    return RT_OK;
}

void rt_trap_exit(bool on)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        rt__panic("rt_trap_exit outside a process");
    if (on)
        self->pflags |= RT_PF_TRAP;
    else
        self->pflags &= ~RT_PF_TRAP;
    atomic_store_explicit(&self->pflags_pub, self->pflags, memory_order_relaxed);
}

int rt_migrate(rt_pid_t pid, const rt_behaviour_t *b)
{
    if (!b || b->abi != RT_BEHAVIOUR_ABI || !b->init)
        return RT_EINVAL;
    rt_msg_t *m = sys_msg(RT_MSG__MIGRATE, rt_self(), 0);
    m->a = (uint64_t)(uintptr_t)b;
    return rt__deliver(pid, m);
}

/* ---- the run loop --------------------------------------------------------- */

/* Calls fn inside a failure guard. Returns NULL or the reason given to
 * rt_fail (taken by the caller). */
#define GUARDED(reason_out, call)                                             \
    do {                                                                      \
        jmp_buf jb_;                                                          \
        jmp_buf *saved_ = rt__tls.fail_jb;                                    \
        rt__tls.fail_jb = &jb_;                                               \
        if (_setjmp(jb_) == 0) {                                              \
            call;                                                             \
            (reason_out) = NULL;                                              \
        } else {                                                              \
            (reason_out) = rt__tls.fail_reason;                               \
            rt__tls.fail_reason = NULL;                                       \
        }                                                                     \
        rt__tls.fail_jb = saved_;                                             \
    } while (0)

static void proc_exit(rt_proc_t *p, rt_reason_t *reason);

/* Returns NULL or the reason init failed (taken): the caller exits the
 * process once it is done with m (the exit frees the queue's tail, which
 * is m). */
static rt_reason_t *do_init(rt_proc_t *p, rt_msg_t *m)
{
    rt_pid_t me = m->to;
    uint32_t flags = m->tag;
    const rt_behaviour_t *b = atomic_load_explicit(&p->beh, memory_order_relaxed);
    p->state = NULL;
    p->ext = NULL;
    p->pflags = (flags & RT_SPAWN_TRAP_EXIT) ? RT_PF_TRAP : 0;
    atomic_store_explicit(&p->pflags_pub, p->pflags, memory_order_relaxed);
    if (flags & RT_SPAWN_LINK)
        rt__vec_add(&rt__ext(p)->links, 0, m->from);
    if (flags & RT_SPAWN_MONITOR)
        rt__vec_add(&rt__ext(p)->mon_in, m->b, m->from);
    rt_reason_t *why = NULL;
    rt_pid_t holder = RT_NOPID;
    if (m->data) {
        if (rt__registry_add(m->data, me, &holder) == RT_OK) {
            rt_ext_t *x = rt__ext(p);
            char **nn = realloc(x->names, (x->nnames + 1) * sizeof *nn);
            if (!nn)
                rt__panic("out of memory for names");
            x->names = nn;
            x->names[x->nnames++] = rt_msg_take(m);
        } else {
            why = rt_reason_new("already_registered");
        }
    }
    if (!why) {
        void *state = NULL;
        rt_reason_t *volatile r = NULL;
        GUARDED(why, r = b->init((void *)(uintptr_t)m->a, &state));
        if (!why)
            why = r;
        if (!why) {
            p->state = state;
            p->pflags |= RT_PF_LIVE;
        }
    }
    if (flags & RT_SPAWN_ACK) {
        rt_msg_t *ack = sys_msg(RT_MSG_ACK, me, m->ref);
        if (why) {
            ack->flags = RT_MF_ERROR;
            ack->data = rt_reason_retain(why);
            ack->own = RT_OWN_RC;
            ack->a = holder;
        }
        rt__deliver(m->from, ack);
    }
    return why;
}

/* Returns true if the process is to exit with *reason (taken). */
static bool on_exit_signal(rt_proc_t *p, rt_msg_t *m, rt_reason_t **exit_reason,
                           bool *deliver)
{
    rt_reason_t *r = m->data;
    bool link = m->flags & RT_MF_LINK;
    *deliver = false;
    if (link) {
        /* Only a live link carries a signal: after unlink it is void. */
        int i = p->ext ? rt__vec_find_pid(&p->ext->links, m->from) : -1;
        if (i < 0)
            return false;
        rt__vec_del(&p->ext->links, i);
    }
    if (!link && r->code == RT_R_KILL) {
        *exit_reason = RT_KILLED;
        return true;
    }
    if (p->pflags & RT_PF_TRAP) {
        *deliver = true;
        return false;
    }
    if (r->code == RT_R_NORMAL) {
        if (!link && m->from == m->to) {
            *exit_reason = RT_NORMAL;
            return true;
        }
        return false;
    }
    *exit_reason = rt_reason_retain(r);
    return true;
}

/* Postpones m during rt_await. m stays the mailbox tail, so a copy is
 * kept (taking its data). */
static void postpone(rt_proc_t *p, rt_msg_t *m)
{
    rt_msg_t *c = rt__msg_clone(m);
    if (!c)
        rt__panic("out of memory postponing a message");
    rt_ext_t *x = p->ext;
    if (x->def_tail)
        atomic_store_explicit(&x->def_tail->node.next, &c->node, memory_order_relaxed);
    else
        x->def_head = c;
    x->def_tail = c;
    x->ndef++;
    rt__tls.postponed = true;
}

/* While awaiting: the awaited message may have been postponed by an
 * earlier await. Unlinks and returns it, or NULL. O(postponed). */
static rt_msg_t *find_postponed(rt_proc_t *p)
{
    rt_ext_t *x = p->ext;
    rt_msg_t *prev = NULL;
    for (rt_msg_t *c = x->def_head; c;) {
        rt_mnode_t *n = atomic_load_explicit(&c->node.next, memory_order_relaxed);
        rt_msg_t *next = n ? RT_CONTAINER_OF(n, rt_msg_t, node) : NULL;
        if (c->ref == x->await_ref &&
            (c->kind == RT_MSG_REPLY || c->kind == RT_MSG_ACK || c->kind == RT_MSG_DOWN ||
             c->kind == RT_MSG_TIMER)) {
            if (prev)
                atomic_store_explicit(&prev->node.next, n, memory_order_relaxed);
            else
                x->def_head = next;
            if (x->def_tail == c)
                x->def_tail = prev;
            x->ndef--;
            atomic_store_explicit(&c->node.next, NULL, memory_order_relaxed);
            return c;
        }
        prev = c;
        c = next;
    }
    return NULL;
}

static rt_msg_t *unpostpone(rt_proc_t *p)
{
    rt_ext_t *x = p->ext;
    rt_msg_t *c = x->def_head;
    rt_mnode_t *n = atomic_load_explicit(&c->node.next, memory_order_relaxed);
    x->def_head = n ? RT_CONTAINER_OF(n, rt_msg_t, node) : NULL;
    if (!x->def_head)
        x->def_tail = NULL;
    x->ndef--;
    return c;
}

/* Handles one message addressed to the live process p. Returns the exit
 * reason (taken) if the process must exit, else NULL. */
static rt_reason_t *dispatch(rt_proc_t *p, rt_msg_t *m)
{
    const rt_behaviour_t *b = atomic_load_explicit(&p->beh, memory_order_relaxed);
    rt_reason_t *fail = NULL;
    rt_ext_t *x = p->ext;

    switch (m->kind) {
    case RT_MSG__INIT:
        return do_init(p, m);
    case RT_MSG__LINK:
        if (rt__vec_find_pid(&rt__ext(p)->links, m->from) < 0)
            rt__vec_add(&p->ext->links, 0, m->from);
        return NULL;
    case RT_MSG__UNLINK:
        if (x) {
            int i = rt__vec_find_pid(&x->links, m->from);
            if (i >= 0)
                rt__vec_del(&x->links, i);
        }
        return NULL;
    case RT_MSG__MONITOR:
        rt__vec_add(&rt__ext(p)->mon_in, m->ref, m->from);
        return NULL;
    case RT_MSG__DEMONITOR:
        if (x) {
            int i = rt__vec_find_ref(&x->mon_in, m->ref);
            if (i >= 0)
                rt__vec_del(&x->mon_in, i);
        }
        return NULL;
    case RT_MSG__REPLIED:
        if (x) {
            int i = rt__vec_find_ref(&x->pending, m->ref);
            if (i >= 0)
                rt__vec_del(&x->pending, i);
        }
        return NULL;
    case RT_MSG__EXITSIG: {
        rt_reason_t *why = NULL;
        bool deliver;
        if (on_exit_signal(p, m, &why, &deliver))
            return why;
        if (!deliver)
            return NULL;
        m->kind = RT_MSG_EXIT;
        break; /* a trapped exit is an ordinary message from here on */
    }
    case RT_MSG__MIGRATE: {
        const rt_behaviour_t *nb = (const rt_behaviour_t *)(uintptr_t)m->a;
        rt_reason_t *volatile r = NULL;
        void *st = p->state;
        if (nb->migrate)
            GUARDED(fail, r = nb->migrate(&st, b->version));
        if (!fail)
            fail = r;
        if (fail)
            return fail;
        p->state = st;
        atomic_store_explicit(&p->beh, nb, memory_order_relaxed);
        return NULL;
    }
    default:
        break;
    }

    /* User-visible messages: postponed while awaiting another ref. */
    if ((p->pflags & RT_PF_AWAIT)) {
        if (m->ref != x->await_ref || m->ref == 0 ||
            !(m->kind == RT_MSG_REPLY || m->kind == RT_MSG_ACK || m->kind == RT_MSG_DOWN ||
              m->kind == RT_MSG_TIMER)) {
            postpone(p, m);
            return NULL;
        }
        p->pflags &= ~RT_PF_AWAIT;
    }

    switch (m->kind) {
    case RT_MSG_REPLY:
        if (!(p->pflags & RT_PF_RAW)) {
            int i = x ? rt__vec_find_ref(&x->calls, m->ref) : -1;
            if (i < 0)
                return NULL; /* late: the call already timed out */
            uint64_t timer = x->calls.v[i].pid;
            rt__vec_del(&x->calls, i);
            if (timer && !(m->flags & RT_MF_ERROR && m->data == RT_TIMEOUT_REASON))
                rt_cancel_timer(timer);
        }
        break;
    case RT_MSG_DOWN: {
        int i = x ? rt__vec_find_ref(&x->mon_out, m->ref) : -1;
        if (i < 0)
            return NULL; /* demonitored meanwhile */
        rt__vec_del(&x->mon_out, i);
        break;
    }
    default:
        break;
    }

    atomic_store_explicit(&p->handled, atomic_load_explicit(&p->handled, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (m->kind == RT_MSG_CALL) {
        rt_from_t from = { m->from, m->ref, m->to };
        if (!b->handle_call) {
            /* As in OTP the callee fails; the caller learns why. */
            rt__vec_add(&rt__ext(p)->pending, from.ref, from.pid);
            return rt_reason_new("undefined handle_call");
        }
        rt__tls.cur_call_ref = m->ref;
        rt__tls.cur_call_pid = m->from;
        rt__tls.replied = false;
        volatile int res = RT_REPLIED;
        GUARDED(fail, res = b->handle_call(p->state, m, from));
        rt__tls.cur_call_ref = 0;
        if (fail) {
            /* The caller learns the reason from the exit path: keep from. */
            rt__vec_add(&rt__ext(p)->pending, from.ref, from.pid);
            return fail;
        }
        if (res == RT_NOREPLY)
            rt__vec_add(&rt__ext(p)->pending, from.ref, from.pid);
        else if (!rt__tls.replied) {
            rt__vec_add(&rt__ext(p)->pending, from.ref, from.pid);
            return rt_reason_new("handle_call returned without a reply");
        }
    } else if (m->kind == RT_MSG_CAST) {
        if (b->handle_cast)
            GUARDED(fail, b->handle_cast(p->state, m));
    } else {
        if (b->handle_info)
            GUARDED(fail, b->handle_info(p->state, m));
    }
    if (fail)
        return fail;
    if (p->pflags & RT_PF_STOP) {
        p->pflags &= ~RT_PF_STOP;
        rt_reason_t *r = p->ext->stop_reason;
        p->ext->stop_reason = NULL;
        return r;
    }
    return NULL;
}

static pthread_mutex_t mute_mu = PTHREAD_MUTEX_INITIALIZER;
static rt_proc_t *muted;             /* linked through rq_next */
static _Atomic int nmuted;

/* Reschedules every paused process for which pick(q, target) holds. */
static void resume_paused(bool (*pick)(rt_proc_t *q, rt_pid_t target), rt_pid_t target)
{
    if (atomic_load_explicit(&nmuted, memory_order_seq_cst) == 0)
        return;
    rt_proc_t *wake = NULL;
    pthread_mutex_lock(&mute_mu);
    for (rt_proc_t **pp = &muted; *pp;) {
        rt_proc_t *q = *pp;
        if (pick(q, target)) {
            *pp = q->rq_next;
            q->rq_next = wake;
            wake = q;
            atomic_fetch_sub(&nmuted, 1);
        } else {
            pp = &q->rq_next;
        }
    }
    pthread_mutex_unlock(&mute_mu);
    while (wake) {
        rt_proc_t *q = wake;
        wake = q->rq_next;
        q->rq_next = NULL;
        rt__reschedule(q);
    }
}

static bool paused_on(rt_proc_t *q, rt_pid_t target)
{
    return q->ext->muted_on == target;
}

/* The only way paused senders can wait forever is a cycle: A paused on B
 * while B is paused (on A, or further round). A sender whose target is
 * running or runnable stays paused. */
static bool paused_in_cycle(rt_proc_t *q, rt_pid_t unused)
{
    (void)unused;
    rt_proc_t *t = rt__lookup(q->ext->muted_on);
    return !t || (atomic_load_explicit(&t->pflags_pub, memory_order_relaxed) & RT_PF_MUTED);
}

/* Reschedules every process paused on `target`. */
static void unmute(rt_pid_t target)
{
    resume_paused(paused_on, target);
}

void rt__unmute_cycles(void)
{
    resume_paused(paused_in_cycle, RT_NOPID);
}

static void park_muted(rt_proc_t *p)
{
    rt_pid_t target = p->ext->muted_on;
    p->pflags &= ~RT_PF_MUTED;
    atomic_store_explicit(&p->pflags_pub, p->pflags | RT_PF_MUTED, memory_order_relaxed);
    pthread_mutex_lock(&mute_mu);
    p->rq_next = muted;
    muted = p;
    atomic_fetch_add_explicit(&nmuted, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&mute_mu);
    /* The target may have drained before we parked: look again so a
     * wake-up cannot be lost (pairs with the check in rt__run). */
    rt_proc_t *t = rt__lookup(target);
    if (!t || mb_len(t) <= rt__g.mailbox_high / 2)
        unmute(target);
}

void rt__run(rt_proc_t *p)
{
    rt__tls.self = p;
    unsigned budget = rt__g.batch;
    rt_pid_t pid = atomic_load_explicit(&p->pid, memory_order_acquire);
    atomic_store_explicit(&p->pflags_pub, p->pflags, memory_order_relaxed);

    bool misplaced = false;
    for (unsigned n = 0; n < budget; n++) {
        rt_msg_t *m;
        bool from_def = false;
        /* A slot's run-queue entry can outlive the process that was
         * queued (it exited inside rt_exec_call): the next incarnation
         * must run where it belongs, not where the old entry was. */
        pid = atomic_load_explicit(&p->pid, memory_order_acquire);
        if (pid && atomic_load_explicit(&p->exec, memory_order_relaxed) != rt__tls.exec) {
            misplaced = true;
            break;
        }
        /* Introspection's mailbox length is sent - received: a message
         * counts as received when taken for handling, so one postponed by
         * rt_await stays "queued" until it is handled. */
        bool counted = false;
        if (p->ext && p->ext->def_head && !(p->pflags & RT_PF_AWAIT) && pid) {
            m = unpostpone(p);
            from_def = true;
        } else if (p->ext && p->ext->def_head && pid && (m = find_postponed(p))) {
            from_def = true;
        } else {
            m = mb_pop(p);
            if (!m)
                break;
        }
        if (from_def || !(p->pflags & RT_PF_AWAIT)) {
            count_recv(p);
            counted = true;
        }
        if (!from_def) {
            /* The slot may have a new incarnation since we started. */
            pid = atomic_load_explicit(&p->pid, memory_order_acquire);
            if (m->to != pid || pid == 0) {
                rt__count(&rt__stats()->dropped, 1);
                if (!counted)
                    count_recv(p);
                answer_dead(m, RT_NOPROC_REASON);
                rt__msg_release_data(m);
                continue;
            }
        }
        rt__tls.self_pid = pid;
        rt__tls.postponed = false;
        rt_reason_t *why = dispatch(p, m);
        if (!counted && !rt__tls.postponed)
            count_recv(p);
        if (from_def)
            rt_msg_free(m);
        else
            rt__msg_release_data(m);
        if (!why && (p->pflags & RT_PF_STOP)) {
            /* rt_stop() from init or a system path. */
            p->pflags &= ~RT_PF_STOP;
            why = p->ext->stop_reason;
            p->ext->stop_reason = NULL;
        }
        if (why) {
            proc_exit(p, why);
            pid = 0;
        }
        if (p->pflags & RT_PF_MUTED)
            break;
    }
    rt__tls.self = NULL;
    if (misplaced) {
        /* Still scheduled (idle bit clear): hand it to its own thread. */
        rt__reschedule(p);
        return;
    }
    atomic_store_explicit(&p->pflags_pub, p->pflags, memory_order_relaxed);
    if (pid && (p->pflags & RT_PF_LIVE)) {
        /* The state is the runner's alone, so its size is taken here and
         * published for introspection. */
        const rt_behaviour_t *b = atomic_load_explicit(&p->beh, memory_order_relaxed);
        if (b->memory)
            atomic_store_explicit(&p->state_mem, b->memory(p->state), memory_order_relaxed);
    }

    if (pid && (p->pflags & RT_PF_MUTED)) {
        park_muted(p);
        return;
    }
    /* Whoever we paused because our mailbox was long may go on. */
    if (pid && atomic_load_explicit(&nmuted, memory_order_seq_cst) &&
        mb_len(p) <= rt__g.mailbox_high / 2)
        unmute(pid);
    bool pending_def = pid && p->ext && p->ext->def_head && !(p->pflags & RT_PF_AWAIT);
    if (pending_def || !mb_mark_empty(p))
        rt__reschedule(p);
}

/* ---- exit ------------------------------------------------------------------ */

static void proc_exit(rt_proc_t *p, rt_reason_t *reason)
{
    rt_pid_t me = atomic_load_explicit(&p->pid, memory_order_relaxed);
    const rt_behaviour_t *b = atomic_load_explicit(&p->beh, memory_order_relaxed);
    /* 1. From here every new send fails with RT_ENOPROC. A stale sender's
     * wake-up goes to the schedulers, never to an executor that may be
     * gone by then. */
    atomic_store_explicit(&p->pid, 0, memory_order_release);
    atomic_store_explicit(&p->exec, NULL, memory_order_relaxed);

    if ((p->pflags & RT_PF_LIVE) && b->terminate) {
        rt_reason_t *f;
        GUARDED(f, b->terminate(p->state, reason));
        if (f) {
            fprintf(stderr, "roost runtime: terminate of %s failed: %s\n", b->name, f->text);
            rt_reason_release(f);
        }
    }
    p->state = NULL;
    p->pflags = 0;
    rt__timers_cancel_proc(p);

    rt_ext_t *x = p->ext;
    p->ext = NULL;
    if (x) {
        for (uint32_t i = 0; i < x->nnames; i++) {
            rt__registry_drop(me, x->names[i]);
            free(x->names[i]);
        }
        free(x->names);
        p->ext = x; /* pubsub reads subs through p */
        rt__pubsub_drop_all(p);
        p->ext = NULL;
        for (uint32_t i = 0; i < x->mon_out.n; i++)
            rt__deliver(x->mon_out.v[i].pid, sys_msg(RT_MSG__DEMONITOR, me, x->mon_out.v[i].ref));
        for (uint32_t i = 0; i < x->pending.n; i++)
            send_error_reply(x->pending.v[i].pid, x->pending.v[i].ref, reason);
        for (uint32_t i = 0; i < x->calls.n; i++)
            if (x->calls.v[i].pid)
                rt_cancel_timer(x->calls.v[i].pid);
        while (x->def_head) {
            rt_msg_t *m = x->def_head;
            rt_mnode_t *n = atomic_load_explicit(&m->node.next, memory_order_relaxed);
            x->def_head = n ? RT_CONTAINER_OF(n, rt_msg_t, node) : NULL;
            m->to = me;
            bounce(m, reason);
        }
        if (x->stop_reason)
            rt_reason_release(x->stop_reason);
        rt__vec_free(&x->mon_out);
        rt__vec_free(&x->pending);
        rt__vec_free(&x->calls);
    }
    /* Whatever is queued for this incarnation is answered now, with the
     * real reason; later arrivals are stale and get noproc. */
    for (;;) {
        rt_mnode_t *tail = p->mb_tail;
        rt_mnode_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
        if (!next)
            break;
        rt_msg_t *m = mb_pop(p);
        count_recv(p);
        answer_dead(m, m->to == me ? reason : RT_NOPROC_REASON);
        rt__msg_release_data(m);
    }
    /* The last message handled is still the queue's tail (invariant 4).
     * Put the stub back behind it and consume up to the stub, so the dead
     * slot keeps no message alive; anything a stale sender slipped in
     * meanwhile is answered as stale. */
    if (p->mb_tail != &p->stub) {
        atomic_store_explicit(&p->stub.next, NULL, memory_order_relaxed);
        /* Keep the idle bit as it is: outside a turn (rt_exec_call) the
         * process may be idle, and nobody would mark it idle again. */
        uintptr_t prev = atomic_load_explicit(&p->mb_head, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&p->mb_head, &prev,
                                                      (uintptr_t)&p->stub | (prev & 1u),
                                                      memory_order_acq_rel, memory_order_relaxed))
            ;
        atomic_store_explicit(&((rt_mnode_t *)(prev & ~(uintptr_t)1))->next, &p->stub,
                              memory_order_release);
        for (;;) {
            rt_mnode_t *tail = p->mb_tail;
            rt_mnode_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
            if (!next) {
                /* A sender between its exchange and its link: wait. */
                __builtin_ia32_pause();
                continue;
            }
            p->mb_tail = next;
            if (tail != &p->stub)
                rt__msg_dealloc(RT_CONTAINER_OF(tail, rt_msg_t, node));
            if (next == &p->stub)
                break;
            rt_msg_t *m = RT_CONTAINER_OF(next, rt_msg_t, node);
            count_recv(p);
            answer_dead(m, RT_NOPROC_REASON);
            rt__msg_release_data(m);
        }
    }
    atomic_fetch_sub_explicit(&rt__g.live_procs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt__g.exited, 1, memory_order_relaxed);
    /* Links and monitors hear of the exit last: whoever reacts to the
     * EXIT or DOWN finds the process fully gone (counters, mailbox). */
    if (x) {
        for (uint32_t i = 0; i < x->links.n; i++)
            send_exitsig(x->links.v[i].pid, me, reason, true);
        for (uint32_t i = 0; i < x->mon_in.n; i++)
            send_down(x->mon_in.v[i].pid, me, x->mon_in.v[i].ref, reason);
        rt__vec_free(&x->links);
        rt__vec_free(&x->mon_in);
        free(x);
    }
    rt_reason_release(reason);
    /* Senders paused on us must not wait for a mailbox nobody drains. */
    unmute(me);
    free_slot((uint32_t)me);
}

int rt_exec_call(rt_exec_t *e, rt_pid_t pid, void (*fn)(void *state, void *arg), void *arg)
{
    rt_proc_t *p = rt__lookup(pid);
    if (!p)
        return RT_ENOPROC;
    if (atomic_load_explicit(&p->exec, memory_order_relaxed) != e)
        return RT_EINVAL;
    if (!(p->pflags & RT_PF_LIVE))
        return RT_ENOPROC; /* init has not run yet */
    rt_proc_t *saved = rt__tls.self;
    rt_pid_t saved_pid = rt__tls.self_pid;
    rt__tls.self = p;
    rt__tls.self_pid = pid;
    rt_reason_t *why;
    GUARDED(why, fn(p->state, arg));
    if (!why && (p->pflags & RT_PF_STOP)) {
        p->pflags &= ~RT_PF_STOP;
        why = p->ext->stop_reason;
        p->ext->stop_reason = NULL;
    }
    if (why) {
        /* The process may sit in e's queue: its next turn finds it dead
         * and only drains stale messages. */
        proc_exit(p, why);
    } else if (p->pflags & RT_PF_MUTED) {
        /* Backpressure does not apply here: we are not in a turn. */
        p->pflags &= ~RT_PF_MUTED;
    }
    rt__tls.self = saved;
    rt__tls.self_pid = saved_pid;
    return RT_OK;
}

/* Used by rt_runtime_stop: a kill signal to every live process. */
void rt__kill_all(void)
{
    uint32_t n = atomic_load(&rt__g.nchunks);
    for (uint32_t i = 0; i < n * RT_CHUNK_SIZE; i++) {
        rt_proc_t *p = rt__slot(i);
        rt_pid_t pid = atomic_load_explicit(&p->pid, memory_order_acquire);
        if (pid)
            rt_exit(pid, RT_KILL);
    }
}

/* ---- introspection -------------------------------------------------------- */

static void fill_info(rt_proc_t *p, rt_pid_t pid, rt_proc_info_t *out)
{
    const rt_behaviour_t *b = atomic_load_explicit(&p->beh, memory_order_relaxed);
    memset(out, 0, sizeof *out);
    out->pid = pid;
    out->parent = atomic_load_explicit(&p->parent, memory_order_relaxed);
    out->behaviour = b ? b->name : "?";
    out->mailbox_len = mb_len(p);
    out->restarts = atomic_load_explicit(&p->restarts, memory_order_relaxed);
    out->handled = atomic_load_explicit(&p->handled, memory_order_relaxed);
    out->trap_exit = atomic_load_explicit(&p->pflags_pub, memory_order_relaxed) & RT_PF_TRAP;
    /* The state's own size is only known to the process; the struct and
     * queued messages are what the runtime itself spends. */
    out->memory = sizeof *p + (size_t)out->mailbox_len * sizeof(rt_msg_t) +
                  (size_t)atomic_load_explicit(&p->state_mem, memory_order_relaxed);
    rt__registry_first_name(pid, out->name, sizeof out->name);
}

int rt_process_info(rt_pid_t pid, rt_proc_info_t *out)
{
    rt_proc_t *p = rt__lookup(pid);
    if (!p)
        return RT_ENOPROC;
    fill_info(p, pid, out);
    return RT_OK;
}

int rt_processes(rt_proc_info_t *out, size_t cap, size_t *n)
{
    size_t k = 0;
    uint32_t nc = atomic_load_explicit(&rt__g.nchunks, memory_order_acquire);
    for (uint32_t i = 0; i < nc * RT_CHUNK_SIZE; i++) {
        rt_proc_t *p = rt__slot(i);
        rt_pid_t pid = atomic_load_explicit(&p->pid, memory_order_acquire);
        if (!pid)
            continue;
        if (k < cap)
            fill_info(p, pid, &out[k]);
        k++;
    }
    if (n)
        *n = k;
    return RT_OK;
}

void rt_note_restart(void)
{
    atomic_fetch_add_explicit(&rt__g.restarts, 1, memory_order_relaxed);
}

void rt_get_stats(rt_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->processes = (uint64_t)atomic_load(&rt__g.live_procs);
    out->spawned = atomic_load(&rt__g.spawned);
    out->exited = atomic_load(&rt__g.exited);
    out->restarts = atomic_load(&rt__g.restarts);
    pthread_mutex_lock(&rt__g.stats_mu);
    for (rt_tstats_t *s = rt__g.stats_list; s; s = s->next) {
        out->messages += (uint64_t)atomic_load_explicit(&s->sent, memory_order_relaxed);
        out->dropped += (uint64_t)atomic_load_explicit(&s->dropped, memory_order_relaxed);
        out->msgs_live += atomic_load_explicit(&s->msgs_alloc, memory_order_relaxed) -
                          atomic_load_explicit(&s->msgs_free, memory_order_relaxed);
    }
    pthread_mutex_unlock(&rt__g.stats_mu);
}
