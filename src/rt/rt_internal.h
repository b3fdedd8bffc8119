/*
 * rt_internal.h — what the runtime's own files share and nobody else may
 * use: the process struct, the mailbox, per-thread context, the
 * scheduler hooks and the counters.
 *
 * Invariants (the rest of src/rt relies on them):
 *  1. A process struct is never freed while the runtime runs (type-stable
 *     slots), so a sender holding a stale pointer can always touch it; the
 *     pid stored in the slot and the `to` of every message decide what is
 *     delivered, never the pointer.
 *  2. A process is runnable iff bit 0 of mb_head is clear. Exactly one
 *     party clears it (the sender whose exchange saw it set) and that
 *     party schedules the process; only the runner sets it again. Hence a
 *     process is in at most one run queue, on at most one thread.
 *  3. Every field in the "runner" group is touched only by the thread
 *     currently running the process (or by nobody while it is idle).
 *     Fields read by introspection from other threads are atomics.
 *  4. mb_tail is the last message consumed: it stays allocated until the
 *     next pop (the queue needs a node to hang the next one on).
 */
#ifndef ROOST_RT_INTERNAL_H
#define ROOST_RT_INTERNAL_H

#include <pthread.h>
#include <setjmp.h>

#include "rt/rt.h"

#define RT_CHUNK_BITS 12u
#define RT_CHUNK_SIZE (1u << RT_CHUNK_BITS)
#define RT_MAX_CHUNKS 4096u            /* 16M processes */

/* proc->pflags (runner only) */
#define RT_PF_TRAP      0x01u
#define RT_PF_LIVE      0x02u   /* init succeeded: terminate must run */
#define RT_PF_AWAIT     0x04u
#define RT_PF_RAW       0x08u   /* inbox: replies are not matched to calls */
#define RT_PF_STOP      0x10u   /* rt_stop() asked for an exit */
#define RT_PF_MUTED     0x20u   /* sent to an overloaded mailbox this turn */

typedef struct rt_pair {
    uint64_t ref;
    rt_pid_t pid;
} rt_pair_t;

/* A small vector of (ref, pid) pairs: links, monitors, calls. Linear
 * while small; past RT_VEC_INDEX_MIN entries a hash index on the key it
 * is searched by (ref or pid) keeps lookups O(1), so a supervisor with
 * 100,000 linked children does not pay O(children) per exit. */
#define RT_VEC_INDEX_MIN 32u
typedef struct rt_vec {
    rt_pair_t *v;
    uint32_t n, cap;
    uint32_t *ix;            /* position + 1, 0 = empty; NULL until needed */
    uint32_t ixcap;          /* power of two, > 2 * n */
    uint8_t by_pid;          /* the index's key */
} rt_vec_t;

struct rt_sub;
struct rt_timer;

/* What only some processes need, allocated on first use. */
typedef struct rt_ext {
    rt_vec_t links;          /* pid in .pid, .ref unused */
    rt_vec_t mon_out;        /* monitors I hold: ref -> target */
    rt_vec_t mon_in;         /* monitors on me: ref -> watcher */
    rt_vec_t calls;          /* my outstanding calls: ref -> timer handle (in .pid) */
    rt_vec_t pending;        /* calls I answer later: ref -> caller */
    char **names;
    uint32_t nnames;
    struct rt_sub *subs;     /* my subscriptions (pubsub.c) */
    rt_msg_t *def_head, *def_tail;  /* postponed by rt_await, in order */
    uint32_t ndef;
    uint64_t await_ref;
    rt_reason_t *stop_reason;
    rt_pid_t muted_on;       /* overloaded target that paused us */
} rt_ext_t;

typedef struct rt_proc {
    /* -- any thread (senders) -- */
    _Atomic uintptr_t mb_head;      /* newest node | 1 when idle */
    _Atomic uint32_t mb_sent;       /* pushes, for mailbox length */
    _Atomic uint32_t mb_recv;       /* pops (written by the runner) */
    _Atomic rt_pid_t pid;           /* live incarnation, 0 = none */
    /* -- read by introspection, written by spawner/runner -- */
    _Atomic(const rt_behaviour_t *) beh;
    _Atomic rt_pid_t parent;
    _Atomic uint64_t handled;
    _Atomic uint32_t restarts;
    _Atomic uint32_t pflags_pub;    /* copy of pflags for introspection */
    _Atomic uint64_t state_mem;     /* behaviour's memory(), after each turn */
    /* -- runner only -- */
    rt_mnode_t *mb_tail;
    rt_mnode_t stub;
    void *state;
    rt_ext_t *ext;
    uint32_t pflags;
    uint32_t gen;                   /* slot allocator only */
    /* -- scheduler -- */
    struct rt_proc *rq_next;
    _Atomic(rt_exec_t *) exec;      /* pinned to this executor, or NULL */
    /* -- timer lock -- */
    struct rt_timer *timers;
} rt_proc_t;

/* ---- per-thread context ---- */

typedef struct rt_tstats {
    _Atomic int64_t msgs_alloc, msgs_free, sent, dropped;
    struct rt_tstats *next;
} rt_tstats_t;

struct rt_sched;
typedef struct rt_tls {
    struct rt_sched *sched;         /* NULL on external threads */
    rt_proc_t *self;                /* process whose callback is running */
    rt_pid_t self_pid;              /* its pid (still valid in terminate) */
    rt_exec_t *exec;                /* executor being run on this thread, or NULL */
    bool postponed;                 /* the message just dispatched was postponed */
    jmp_buf *fail_jb;               /* armed around every callback */
    rt_reason_t *fail_reason;
    uint64_t cur_call_ref;          /* call being handled, to see rt_reply */
    rt_pid_t cur_call_pid;
    bool replied;
    rt_tstats_t *stats;
    unsigned epoch;
    /* message pool cache */
    rt_msg_t *pool;
    uint32_t npool;
    /* slot allocator cache */
    uint32_t free_idx[64];
    uint32_t nfree;
} rt_tls_t;

extern __thread rt_tls_t rt__tls;

typedef struct rt_global {
    _Atomic int running;
    unsigned epoch;
    unsigned nsched;
    unsigned batch;
    uint32_t mailbox_high;
    uint32_t max_procs;
    _Atomic(rt_proc_t *) chunks[RT_MAX_CHUNKS];
    _Atomic uint32_t nchunks;
    _Atomic uint64_t next_ref;
    _Atomic int64_t live_procs;
    _Atomic uint64_t spawned, exited, restarts;
    pthread_mutex_t stats_mu;
    rt_tstats_t *stats_list;
} rt_global_t;

extern rt_global_t rt__g;

rt_tstats_t *rt__stats(void);
static inline void rt__count(_Atomic int64_t *c, int64_t d)
{
    /* Each counter has one writer thread: a relaxed load+store is enough
     * and costs no locked instruction on the hot path. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

/* ---- process table (proc.c) ---- */
static inline rt_proc_t *rt__slot(uint32_t idx)
{
    rt_proc_t *c = atomic_load_explicit(&rt__g.chunks[idx >> RT_CHUNK_BITS],
                                        memory_order_acquire);
    return c ? &c[idx & (RT_CHUNK_SIZE - 1)] : NULL;
}
/* The live process for pid, or NULL. The pointer stays valid memory
 * forever (invariant 1) but the process may die right after. */
static inline rt_proc_t *rt__lookup(rt_pid_t pid)
{
    uint32_t idx = (uint32_t)pid;
    if (idx >= (uint32_t)atomic_load_explicit(&rt__g.nchunks, memory_order_acquire) * RT_CHUNK_SIZE)
        return NULL;
    rt_proc_t *p = rt__slot(idx);
    if (!p || atomic_load_explicit(&p->pid, memory_order_acquire) != pid || pid == 0)
        return NULL;
    return p;
}
void rt__procs_init(void);
void rt__procs_fini(void);
/* Runs p for one turn on the calling scheduler thread. */
void rt__run(rt_proc_t *p);
/* Pushes m into pid's mailbox (m->to is set here). Returns RT_OK or
 * RT_ENOPROC (m was bounced or freed). */
int rt__deliver(rt_pid_t to, rt_msg_t *m);
rt_ext_t *rt__ext(rt_proc_t *p);
void rt__kill_all(void);
/* Reschedules the processes paused by backpressure whose target is
 * itself paused (idle schedulers call it, so that processes flooding each
 * other cannot all stay paused). */
void rt__unmute_cycles(void);

/* ---- messages (msg.c) ---- */
rt_msg_t *rt__msg_alloc(void);
void rt__msg_release_data(rt_msg_t *m);
void rt__msg_dealloc(rt_msg_t *m);
rt_msg_t *rt__msg_clone(rt_msg_t *m);  /* moves data ownership to the clone */
void rt__pool_fini(void);
void rt__tls_check_epoch(void);

/* ---- scheduler (sched.c) ---- */
void rt__schedule(rt_proc_t *p);        /* p just became runnable */
void rt__reschedule(rt_proc_t *p);      /* p used its turn and has more */
int rt__sched_start(unsigned n);
void rt__sched_stop(void);
bool rt__on_scheduler(void);
/* What the run queues did since the runtime started, summed over the
 * schedulers: tests use it to show that a path was taken. A snapshot;
 * only while the runtime runs. */
typedef struct rt_sched_counts {
    uint64_t spills;   /* a full ring moved half of itself to its overflow */
    uint64_t steals;   /* a thief took half of another scheduler's ring */
    uint64_t stolen;   /* processes those steals moved */
    uint64_t grabs;    /* batches taken from a locked queue into a ring */
    unsigned sleeping; /* schedulers asleep (or about to be) right now */
    unsigned nscheds;
} rt_sched_counts_t;
void rt__sched_counts(rt_sched_counts_t *out);

/* ---- timers (timer.c) ---- */
int rt__timers_start(void);
void rt__timers_stop(void);
void rt__timers_cancel_proc(rt_proc_t *p);
uint64_t rt__send_after_raw(int ms, rt_pid_t to, rt_msg_t *m);

/* ---- registry and pubsub ---- */
void rt__registry_init(void);
void rt__registry_fini(void);
void rt__registry_drop(rt_pid_t pid, const char *name);
int rt__registry_add(const char *name, rt_pid_t pid, rt_pid_t *holder);
size_t rt__registry_first_name(rt_pid_t pid, char *buf, size_t cap);
void rt__pubsub_init(void);
void rt__pubsub_fini(void);
void rt__pubsub_drop_all(rt_proc_t *p);

/* ---- small vectors ---- */
int rt__vec_add(rt_vec_t *v, uint64_t ref, rt_pid_t pid);
int rt__vec_find_ref(rt_vec_t *v, uint64_t ref);
int rt__vec_find_pid(rt_vec_t *v, rt_pid_t pid);
void rt__vec_del(rt_vec_t *v, int i);
void rt__vec_free(rt_vec_t *v);

_Noreturn void rt__panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
