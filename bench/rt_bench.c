/*
 * rt_bench.c — the seven runtime workloads of
 * shared/bench/runtime-workloads.md (spawn, ring, pingpong, cast, fanout,
 * restart, trees), measured on roost's runtime so they can be put side by
 * side with bench/erlang/rt_bench.erl on the same machine.
 *
 * Usage: rt_bench [workload...] [--scale F] [--reps N]
 *   environment, for diagnostics: RT_BENCH_TIMEOUT_S (a run's time limit,
 *   default 300 s), RT_BENCH_SCHEDULERS (default: one per core)
 *   workloads default to all seven, in the order above; --scale multiplies
 *   the sizes N, H, K, M (and the cast and fanout counts) so a smoke run is
 *   quick; --reps is BENCH_REPS (3).
 *
 * Translation of the Erlang notions
 *   process         rt_spawn of a behaviour; its init is its first message
 *   send (Pid ! M)  rt_send (tag + two words, no payload)
 *   gen_server call rt_call + rt_await from a *driver process*: the driver
 *                   is itself a process whose callbacks advance the
 *                   workload one step per message, because a callback may
 *                   not block
 *   gen_server cast rt_cast
 *   supervisor      rt_sup_behaviour, requests by rt_call (rt_sup.h)
 *
 * Method (runtime-workloads.md, "Common method")
 *   Every run of a workload is a fresh OS process (this program re-executes
 *   itself with --child), so no heap, pool or table carries over; the
 *   parent pauses 300 ms before each run (there is no GC to force). Each
 *   child prints "METRIC name value" lines on a pipe; the parent takes the
 *   median of the runs metric by metric, prints a table and one line
 *   `RESULT {json}`.
 *
 * Memory (each byte metric says which measure it is; see metric_note())
 *   resident   growth of the OS process's resident set (/proc/self/statm)
 *              divided by the count; arrays the driver keeps (its handle
 *              list) are allocated and touched before the first reading,
 *              so they are excluded, like the driver's growth on BEAM.
 *   runtime    the runtime's own accounting: the sum of
 *              rt_process_info(pid).memory over the processes created (the
 *              counterpart of erlang:memory(processes)).
 *
 * Benchmarks are never tests: nothing here asserts on time. Every loop is
 * bounded, and a run that does not finish within its time limit is
 * reported as a failure with the step it was at.
 */
#include "rt/rt.h"
#include "rt/rt_sup.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- Message tags ------------------------------------------------------ */

enum {
    T_START = 0x42000001u, /* driver -> itself: begin the workload */
    T_DONE,                /* driver -> main thread's inbox: results are in G */
    T_POLL,                /* driver -> itself (timer or yield): check again */
    T_STOP,                /* spawn: `stop` */
    T_ALL_READY,           /* a: time the last process finished its init */
    T_ALL_STOPPED,         /* spawn: `all_stopped` */
    T_NEXT,                /* ring: {next, Succ}, a = Succ */
    T_ACK,                 /* ring: the ack to {next, _} */
    T_TOKEN,               /* ring: {token, K}, a = K */
    T_RING_DONE,           /* ring: `ring_done` */
    T_PING,                /* pingpong: call `ping` */
    T_PONG,                /* pingpong: reply `pong` */
    T_INC,                 /* cast: cast `inc` */
    T_SENDER_READY,        /* cast: a sender is ready */
    T_GO,                  /* cast: `go` */
    T_CONTINUE,            /* cast: a sender's next chunk */
    T_SENDER_DONE,         /* cast: {sender_done, t}, a = t */
    T_COUNTED,             /* cast: {counted, t}, a = t */
    T_BCAST,               /* fanout: {bcast, Seq}, a = Seq */
    T_BACK,                /* fanout: {ack, Seq}, a = Seq */
    T_DELIVERED,           /* fanout: {delivered, Seq, t}, a = Seq, b = t */
    T_GET_STATE,           /* backup: call get_state -> reply data = map copy */
    T_PUT,                 /* backup: cast {put, K, V}, a = K, b = V */
    T_SET,                 /* room: call {set, K, V}, a = K, b = V */
    T_GET,                 /* room: call get -> reply data = map copy */
    T_OKR,                 /* room: reply `ok` */
    T_MAP,                 /* reply carrying a map */
    T_RESTORED,            /* room -> watcher: {restored, Pid, t}, a = Pid, b = t */
};

/* ---- Shared state of one run (one OS process runs one workload) -------- */

#define MAX_METRICS 24

static struct {
    const char *workload;
    double scale;
    rt_pid_t main_pid;           /* the main thread's inbox */
    rt_pid_t driver;             /* set by the driver's init */
    bool finished;               /* the driver has sent T_DONE */
    char fail[512];              /* non-empty: the run failed */
    const char *stage;           /* where the driver is, for timeouts */
    struct { const char *name; double v; } m[MAX_METRICS];
    int nm;
    uint64_t ref;                /* the call or ack the driver awaits */
} G;

static uint64_t scaled(double base)
{
    double v = base * G.scale;
    return v < 1 ? 1 : (uint64_t)(v + 0.5);
}

static void metric(const char *name, double v)
{
    if (G.nm < MAX_METRICS) {
        G.m[G.nm].name = name;
        G.m[G.nm].v = v;
        G.nm++;
    }
}

/* Resident set size in bytes (/proc/self/statm, second field). */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Allocates n zeroed pids and touches every page, so the array is resident
 * before a memory reading is taken (the driver's own handle list). */
static rt_pid_t *pid_array(uint64_t n)
{
    rt_pid_t *p = malloc((size_t)n * sizeof *p);
    if (p)
        memset(p, 0, (size_t)n * sizeof *p);
    return p;
}

static size_t proc_mem(rt_pid_t pid)
{
    rt_proc_info_t pi;
    if (rt_process_info(pid, &pi) != RT_OK)
        return 0;
    return pi.memory;
}

static void finish(void)
{
    if (G.finished)
        return;
    G.finished = true;
    G.stage = "finished";
    /* The message orders every write to G before the main thread's read. */
    rt_send(G.main_pid, T_DONE, 0, 0);
}

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
    va_list ap;
    if (G.finished)
        return;
    va_start(ap, fmt);
    vsnprintf(G.fail, sizeof G.fail, fmt, ap);
    va_end(ap);
    finish();
}

/* True if m is the reply to the call the driver awaits; fails the run on
 * an error reply. */
static bool is_reply(const rt_msg_t *m, const char *what)
{
    if ((m->kind != RT_MSG_REPLY && m->kind != RT_MSG_ACK) || m->ref != G.ref)
        return false;
    if (m->flags & RT_MF_ERROR) {
        rt_reason_t *r = rt_msg_reason(m);
        failf("%s failed: %s", what, r ? r->text : "?");
        return false;
    }
    return true;
}

/* Sends req as a call and awaits its reply (the next message the driver
 * handles with that ref). */
static bool call_await(rt_pid_t to, rt_msg_t *req, int timeout_ms, const char *what)
{
    int rc;
    if (!req) {
        failf("%s: out of memory building the request", what);
        return false;
    }
    rc = rt_call(to, req, timeout_ms, &G.ref);
    if (rc != RT_OK) {
        failf("%s: rt_call: %s", what, rt_strerror(rc));
        return false;
    }
    rt_await(G.ref);
    return true;
}

static rt_msg_t *msg3(uint32_t tag, uint64_t a, uint64_t b)
{
    rt_msg_t *m = rt_msg_new(tag);
    if (m) {
        m->a = a;
        m->b = b;
    }
    return m;
}

/* Sends the driver a T_POLL after ms milliseconds (0: at once, a yield). */
static void poll_later(int ms)
{
    if (ms == 0) {
        rt_send(G.driver, T_POLL, 0, 0);
        return;
    }
    rt_msg_t *m = rt_msg_new(T_POLL);
    if (!m || rt_send_after(ms, G.driver, m) == 0)
        failf("rt_send_after failed");
}

/* The parent's clock (the runtime is not started there). */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least p of the sample at or
 * below it. v must be sorted. */
static uint64_t nearest_rank(const uint64_t *v, size_t n, double p)
{
    size_t k = (size_t)ceil(p * (double)n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

/* ======================================================================
 * 1. spawn — N processes that block until `stop`
 * ====================================================================== */

static struct {
    uint64_t n, procs_before, rss0, t0, t1, t_ready, t_stop0, polls;
    _Atomic uint64_t left;       /* C: decremented by each stopping process */
    _Atomic uint64_t ready;      /* processes that have finished their init */
    rt_pid_t *pids;
    int phase;
} SP;

/* The idle process. Its init counts itself, so the driver learns when
 * every new process has run as far as its blocking receive (on BEAM the
 * driver polls the run queues instead; roost has no run-queue query). */
static rt_reason_t *idle_init(void *arg, void **state)
{
    (void)arg;
    *state = NULL;
    /* relaxed: only the count matters; the message orders the rest */
    if (atomic_fetch_add_explicit(&SP.ready, 1, memory_order_relaxed) + 1 == SP.n)
        rt_send(G.driver, T_ALL_READY, rt_now_ns(), 0);
    return NULL;
}

static void idle_info(void *state, rt_msg_t *m)
{
    (void)state;
    if (m->tag != T_STOP)
        return;
    if (atomic_fetch_sub_explicit(&SP.left, 1, memory_order_acq_rel) == 1)
        rt_send(G.driver, T_ALL_STOPPED, 0, 0);
    rt_stop(RT_NORMAL);
}

static const rt_behaviour_t idle_b = RT_BEHAVIOUR(.name = "bench_idle",
                                                  .init = idle_init,
                                                  .handle_info = idle_info);

static void spawn_start(void)
{
    rt_stats_t st;
    SP.n = scaled(1e6);
    SP.pids = pid_array(SP.n);
    if (!SP.pids) {
        failf("out of memory");
        return;
    }
    rt_get_stats(&st);
    SP.procs_before = st.processes;
    atomic_store(&SP.left, SP.n);
    atomic_store(&SP.ready, 0);
    SP.rss0 = rss_bytes();
    G.stage = "spawn loop";
    SP.t0 = rt_now_ns();
    for (uint64_t i = 0; i < SP.n; i++) {
        int rc = rt_spawn(&idle_b, NULL, NULL, &SP.pids[i]);
        if (rc != RT_OK) {
            failf("rt_spawn #%llu: %s", (unsigned long long)i, rt_strerror(rc));
            return;
        }
    }
    SP.t1 = rt_now_ns();
    G.stage = "waiting for every new process to finish init";
    SP.phase = 1;
}

static void spawn_step(rt_msg_t *m)
{
    if (SP.phase == 1 && m->tag == T_ALL_READY) {
        /* If the other scheduler kept up, the last init ran before the
         * loop ended: then "ready" is the end of the loop. */
        SP.t_ready = m->a > SP.t1 ? m->a : SP.t1;
        uint64_t rss1 = rss_bytes();
        double sum = 0;
        G.stage = "memory (rt_process_info of every process)";
        for (uint64_t i = 0; i < SP.n; i++)
            sum += (double)proc_mem(SP.pids[i]);
        double n = (double)SP.n;
        metric("us_per_spawn", (double)(SP.t1 - SP.t0) / 1e3 / n);
        metric("us_per_spawn_ready", (double)(SP.t_ready - SP.t0) / 1e3 / n);
        metric("bytes_per_proc", sum / n);
        metric("bytes_per_proc_total", ((double)rss1 - (double)SP.rss0) / n);
        metric("bytes_process_info", (double)proc_mem(SP.pids[SP.n - 1]));

        G.stage = "stop: sending stop to every process";
        SP.t_stop0 = rt_now_ns();
        for (uint64_t i = 0; i < SP.n; i++)
            if (rt_send(SP.pids[i], T_STOP, 0, 0) != RT_OK) {
                failf("stop #%llu: process gone", (unsigned long long)i);
                return;
            }
        G.stage = "stop: waiting for all_stopped";
        SP.phase = 2;
        return;
    }
    if ((SP.phase == 2 && m->tag == T_ALL_STOPPED) || (SP.phase == 3 && m->tag == T_POLL)) {
        rt_stats_t st;
        rt_get_stats(&st);
        if (st.processes > SP.procs_before) {
            if (++SP.polls > 60000) { /* 60 s of 1 ms polls */
                failf("process count stuck at %llu (expected %llu)",
                      (unsigned long long)st.processes, (unsigned long long)SP.procs_before);
                return;
            }
            G.stage = "stop: polling the process count every 1 ms";
            SP.phase = 3;
            poll_later(1);
            return;
        }
        metric("us_per_stop", (double)(rt_now_ns() - SP.t_stop0) / 1e3 / (double)SP.n);
        finish();
    }
}

/* ======================================================================
 * 2. ring — 1,000 processes pass a token H times
 * ====================================================================== */

#define RING_SIZE 1000

typedef struct ring_st {
    rt_pid_t succ;
} ring_st_t;

static rt_reason_t *ring_init(void *arg, void **state)
{
    (void)arg;
    *state = calloc(1, sizeof(ring_st_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static void ring_info(void *state, rt_msg_t *m)
{
    ring_st_t *st = state;
    switch (m->tag) {
    case T_NEXT:
        st->succ = m->a;
        rt_send(G.driver, T_ACK, 0, 0);
        break;
    case T_TOKEN:
        if (m->a == 0)
            rt_send(G.driver, T_RING_DONE, 0, 0);
        else
            rt_send(st->succ, T_TOKEN, m->a - 1, 0);
        break;
    default:
        break;
    }
}

static void free_state(void *state, rt_reason_t *reason)
{
    (void)reason;
    free(state);
}

static const rt_behaviour_t ring_b = RT_BEHAVIOUR(.name = "bench_ring",
                                                  .init = ring_init,
                                                  .handle_info = ring_info,
                                                  .terminate = free_state);

static struct {
    uint64_t h, acks, t0;
    rt_pid_t pids[RING_SIZE];
} RG;

static void ring_start(void)
{
    RG.h = scaled(1e6);
    G.stage = "ring setup";
    for (int i = 0; i < RING_SIZE; i++) {
        int rc = rt_spawn(&ring_b, NULL, NULL, &RG.pids[i]);
        if (rc != RT_OK) {
            failf("rt_spawn: %s", rt_strerror(rc));
            return;
        }
    }
    for (int i = 0; i < RING_SIZE; i++)
        rt_send(RG.pids[i], T_NEXT, RG.pids[(i + 1) % RING_SIZE], 0);
}

static void ring_step(rt_msg_t *m)
{
    if (m->tag == T_ACK && ++RG.acks == RING_SIZE) {
        G.stage = "ring: token running";
        RG.t0 = rt_now_ns();
        rt_send(RG.pids[0], T_TOKEN, RG.h, 0);
    } else if (m->tag == T_RING_DONE) {
        double t = (double)(rt_now_ns() - RG.t0);
        metric("ns_per_hop", t / (double)RG.h);
        metric("hops_per_s", (double)RG.h / (t / 1e9));
        finish();
    }
}

/* ======================================================================
 * 3. pingpong — N sequential calls `ping` -> `pong`
 * ====================================================================== */

typedef struct pp_st {
    uint64_t calls;              /* the server keeps (and changes) state */
} pp_st_t;

static rt_reason_t *pp_init(void *arg, void **state)
{
    (void)arg;
    *state = calloc(1, sizeof(pp_st_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static int pp_call(void *state, rt_msg_t *req, rt_from_t from)
{
    pp_st_t *st = state;
    st->calls++;
    if (req->tag == T_PING)
        rt_reply_val(from, T_PONG, 0, 0);
    else
        rt_reply_val(from, 0, 0, 0);
    return RT_REPLIED;
}

static const rt_behaviour_t pp_b = RT_BEHAVIOUR(.name = "bench_pingpong",
                                                .init = pp_init,
                                                .handle_call = pp_call,
                                                .terminate = free_state);

static struct {
    uint64_t n, done, t0;
    rt_pid_t server;
} PP;

static void pp_next(void)
{
    call_await(PP.server, rt_msg_new(T_PING), RT_DEFAULT_TIMEOUT, "ping");
}

static void pp_start(void)
{
    int rc;
    PP.n = scaled(1e6);
    rc = rt_spawn(&pp_b, NULL, NULL, &PP.server); /* no link */
    if (rc != RT_OK) {
        failf("rt_spawn: %s", rt_strerror(rc));
        return;
    }
    G.stage = "pingpong: calls running";
    PP.t0 = rt_now_ns();
    pp_next();
}

static void pp_step(rt_msg_t *m)
{
    if (!is_reply(m, "ping"))
        return;
    if (m->tag != T_PONG) {
        failf("ping: unexpected reply tag %u", m->tag);
        return;
    }
    if (++PP.done < PP.n) {
        pp_next();
        return;
    }
    double t = (double)(rt_now_ns() - PP.t0);
    metric("us_per_call", t / 1e3 / (double)PP.n);
    metric("calls_per_s", (double)PP.n / (t / 1e9));
    finish();
}

/* ======================================================================
 * 4. cast — 2 senders x 5,000,000 casts to one counting server
 * ====================================================================== */

/* A roost callback cannot loop through 5,000,000 sends the way an Erlang
 * sender does: backpressure (rt.h: a sender over the receiver's high
 * watermark is paused *after its callback*) would only take effect at the
 * end, and the server's mailbox would grow without bound. So a sender
 * casts in chunks of CAST_CHUNK and sends itself T_CONTINUE for the next
 * chunk; the runtime can pause it between chunks. */
#define CAST_CHUNK 1000

static struct {
    uint64_t per_sender, total, t0, t_send_end, t_counted, backlog;
    rt_pid_t server, senders[2];
    int ready, done;
    bool counted;
} CA;

typedef struct count_st {
    uint64_t n;
} count_st_t;

static rt_reason_t *count_init(void *arg, void **state)
{
    (void)arg;
    *state = calloc(1, sizeof(count_st_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static void count_cast(void *state, rt_msg_t *m)
{
    count_st_t *st = state;
    if (m->tag == T_INC && ++st->n == CA.total)
        rt_send(G.driver, T_COUNTED, rt_now_ns(), 0);
}

static const rt_behaviour_t count_b = RT_BEHAVIOUR(.name = "bench_counter",
                                                   .init = count_init,
                                                   .handle_cast = count_cast,
                                                   .terminate = free_state);

typedef struct sender_st {
    uint64_t left;
} sender_st_t;

static rt_reason_t *sender_init(void *arg, void **state)
{
    (void)arg;
    sender_st_t *st = calloc(1, sizeof *st);
    if (!st)
        return rt_reason_new("enomem");
    st->left = CA.per_sender;
    *state = st;
    rt_send(G.driver, T_SENDER_READY, 0, 0);
    return NULL;
}

static void sender_info(void *state, rt_msg_t *m)
{
    sender_st_t *st = state;
    if (m->tag != T_GO && m->tag != T_CONTINUE)
        return;
    uint64_t k = st->left < CAST_CHUNK ? st->left : CAST_CHUNK;
    for (uint64_t i = 0; i < k; i++)
        if (rt_cast(CA.server, T_INC, 0, 0) != RT_OK)
            rt_fail(rt_reason_new("cast to a dead server"));
    st->left -= k;
    if (st->left == 0)
        rt_send(G.driver, T_SENDER_DONE, rt_now_ns(), 0);
    else
        rt_send(rt_self(), T_CONTINUE, 0, 0);
}

static const rt_behaviour_t sender_b = RT_BEHAVIOUR(.name = "bench_sender",
                                                    .init = sender_init,
                                                    .handle_info = sender_info,
                                                    .terminate = free_state);

static void cast_start(void)
{
    int rc;
    CA.per_sender = scaled(5e6);
    CA.total = 2 * CA.per_sender;
    /* The server is spawned first so the senders' init can see its pid.
     * roost cannot bind a process to a scheduler (BEAM's {scheduler, I}):
     * the senders are not bound. */
    rc = rt_spawn(&count_b, NULL, NULL, &CA.server);
    for (int i = 0; rc == RT_OK && i < 2; i++)
        rc = rt_spawn(&sender_b, NULL, NULL, &CA.senders[i]);
    if (rc != RT_OK) {
        failf("rt_spawn: %s", rt_strerror(rc));
        return;
    }
    G.stage = "cast: waiting for the senders";
}

static void cast_maybe_done(void)
{
    if (CA.done < 2 || !CA.counted)
        return;
    double t = (double)(CA.t_counted - CA.t0);
    metric("msgs_per_s", (double)CA.total / (t / 1e9));
    metric("ns_per_msg", t / (double)CA.total);
    metric("send_msgs_per_s", (double)CA.total / ((double)(CA.t_send_end - CA.t0) / 1e9));
    metric("backlog_at_send_end", (double)CA.backlog);
    finish();
}

static void cast_step(rt_msg_t *m)
{
    switch (m->tag) {
    case T_SENDER_READY:
        if (++CA.ready == 2) {
            G.stage = "cast: sending";
            CA.t0 = rt_now_ns();
            rt_send(CA.senders[0], T_GO, 0, 0);
            rt_send(CA.senders[1], T_GO, 0, 0);
        }
        break;
    case T_SENDER_DONE:
        if (m->a > CA.t_send_end)
            CA.t_send_end = m->a;
        if (++CA.done == 2) {
            rt_proc_info_t pi;
            CA.backlog = rt_process_info(CA.server, &pi) == RT_OK ? pi.mailbox_len : 0;
            G.stage = "cast: senders done, server counting";
        }
        cast_maybe_done();
        break;
    case T_COUNTED:
        CA.t_counted = m->a;
        CA.counted = true;
        cast_maybe_done();
        break;
    default:
        break;
    }
}

/* ======================================================================
 * 5. fanout — 100,000 subscribers, 20 broadcasts, one collector
 * ====================================================================== */

#define FANOUT_BCASTS 20

static struct {
    uint64_t subs, seq, t0, polls;
    _Atomic uint64_t ready;
    rt_pid_t collector, *pids;
    double ms[FANOUT_BCASTS];
} FO;

typedef struct coll_st {
    uint64_t count;
} coll_st_t;

static rt_reason_t *coll_init(void *arg, void **state)
{
    (void)arg;
    *state = calloc(1, sizeof(coll_st_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static void coll_info(void *state, rt_msg_t *m)
{
    coll_st_t *st = state;
    if (m->tag == T_BACK && ++st->count == FO.subs) {
        rt_send(G.driver, T_DELIVERED, m->a, rt_now_ns());
        st->count = 0;
    }
}

static const rt_behaviour_t coll_b = RT_BEHAVIOUR(.name = "bench_collector",
                                                  .init = coll_init,
                                                  .handle_info = coll_info,
                                                  .terminate = free_state);

/* Subscribers need no state: the collector's pid is in FO. Their init
 * counts them, so setup can wait until every one has run (not timed). */
static rt_reason_t *sub_init(void *arg, void **state)
{
    (void)arg;
    *state = NULL;
    if (atomic_fetch_add_explicit(&FO.ready, 1, memory_order_relaxed) + 1 == FO.subs)
        rt_send(G.driver, T_ALL_READY, 0, 0);
    return NULL;
}

static void sub_info(void *state, rt_msg_t *m)
{
    (void)state;
    if (m->tag == T_BCAST)
        rt_send(FO.collector, T_BACK, m->a, 0);
}

static const rt_behaviour_t sub_b = RT_BEHAVIOUR(.name = "bench_subscriber",
                                                 .init = sub_init,
                                                 .handle_info = sub_info);

static void fanout_start(void)
{
    int rc;
    FO.subs = scaled(1e5);
    FO.pids = pid_array(FO.subs);
    if (!FO.pids) {
        failf("out of memory");
        return;
    }
    G.stage = "fanout setup";
    rc = rt_spawn(&coll_b, NULL, NULL, &FO.collector);
    for (uint64_t i = 0; rc == RT_OK && i < FO.subs; i++)
        rc = rt_spawn(&sub_b, NULL, NULL, &FO.pids[i]);
    if (rc != RT_OK)
        failf("rt_spawn: %s", rt_strerror(rc));
}

static void fanout_broadcast(void)
{
    G.stage = "fanout: broadcasting";
    FO.t0 = rt_now_ns();
    for (uint64_t i = 0; i < FO.subs; i++)
        rt_send(FO.pids[i], T_BCAST, FO.seq, 0);
}

static void fanout_step(rt_msg_t *m)
{
    if (m->tag == T_ALL_READY) {
        FO.seq = 0;
        fanout_broadcast();
        return;
    }
    if (m->tag != T_DELIVERED || m->a != FO.seq)
        return;
    FO.ms[FO.seq] = (double)(m->b - FO.t0) / 1e6;
    if (++FO.seq < FANOUT_BCASTS) {
        fanout_broadcast();
        return;
    }
    double s[FANOUT_BCASTS];
    memcpy(s, FO.ms, sizeof s);
    qsort(s, FANOUT_BCASTS, sizeof s[0], cmp_double);
    double med = (s[FANOUT_BCASTS / 2 - 1] + s[FANOUT_BCASTS / 2]) / 2;
    metric("ms_per_broadcast", med);
    metric("deliveries_per_s", (double)FO.subs / (med / 1e3));
    metric("ms_min", s[0]);
    metric("ms_max", s[FANOUT_BCASTS - 1]);
    finish();
}

/* ======================================================================
 * The room tree (workloads 6 and 7)
 *
 *   room supervisor  one_for_one, intensity 1,000,000 per 1 s
 *   ├── backup       permanent, shutdown 5000: a 100-entry map {k => k}
 *   └── room         permanent, shutdown 5000, added with start_child once
 *                    the backup runs; its start argument holds the
 *                    backup's pid (no registry)
 *
 * The map is an array of (int64 key, int64 value) pairs sorted by key, the
 * C counterpart of a map of small integers (16 bytes an entry, as BEAM's
 * two words); get_state replies with a copy
 * (the reply owns it) and the room keeps that copy, as BEAM copies the map
 * into the reply message.
 * ====================================================================== */

#define MAP_SIZE 100

typedef struct bmap {
    uint32_t n, cap;
    struct { int64_t k, v; } e[];
} bmap_t;

static size_t bmap_bytes(const bmap_t *m)
{
    return m ? sizeof *m + m->cap * sizeof m->e[0] : 0;
}

static bmap_t *bmap_new(uint32_t cap)
{
    bmap_t *m = malloc(sizeof *m + cap * sizeof m->e[0]);
    if (m) {
        m->n = 0;
        m->cap = cap;
    }
    return m;
}

static bmap_t *bmap_copy(const bmap_t *m)
{
    bmap_t *c = malloc(bmap_bytes(m));
    if (c)
        memcpy(c, m, bmap_bytes(m));
    return c;
}

/* The index of the first entry with key >= k (entries are sorted by key,
 * like Erlang's small maps): binary search. */
static uint32_t bmap_lower(const bmap_t *m, int64_t k)
{
    uint32_t lo = 0, hi = m->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->e[mid].k < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Sets k => v: O(log n) to find, O(1) to append a key above all others
 * (how init builds the map), a memmove otherwise. Returns false on
 * ENOMEM, leaving the map as it was. */
static bool bmap_put(bmap_t **mp, int64_t k, int64_t v)
{
    bmap_t *m = *mp;
    uint32_t i = bmap_lower(m, k);
    if (i < m->n && m->e[i].k == k) {
        m->e[i].v = v;
        return true;
    }
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 8;
        bmap_t *g = realloc(m, sizeof *m + cap * sizeof m->e[0]);
        if (!g)
            return false;
        g->cap = cap;
        *mp = m = g;
    }
    memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof m->e[0]);
    m->e[i].k = k;
    m->e[i].v = v;
    m->n++;
    return true;
}

static bool bmap_get(const bmap_t *m, int64_t k, int64_t *v)
{
    uint32_t i = bmap_lower(m, k);
    if (i < m->n && m->e[i].k == k) {
        *v = m->e[i].v;
        return true;
    }
    return false;
}

/* Replies to `from` with a copy of the map. */
static void reply_map(rt_from_t from, const bmap_t *map)
{
    rt_msg_t *r = rt_msg_new(T_MAP);
    bmap_t *c = map ? bmap_copy(map) : NULL;
    if (!r || !c) {
        free(c);
        rt_msg_free(r);
        rt_fail(rt_reason_new("enomem"));
    }
    rt_msg_set_data(r, c, RT_OWN_FREE);
    rt_reply(from, r);
}

/* -- backup -- */

typedef struct backup_st {
    bmap_t *map;
} backup_st_t;

static rt_reason_t *backup_init(void *arg, void **state)
{
    (void)arg;
    backup_st_t *st = malloc(sizeof *st);
    bmap_t *m = bmap_new(MAP_SIZE);
    if (!st || !m) {
        free(st);
        free(m);
        return rt_reason_new("enomem");
    }
    for (int64_t k = 1; k <= MAP_SIZE; k++) /* built at run time */
        bmap_put(&m, k, k);
    st->map = m;
    *state = st;
    return NULL;
}

static int backup_call(void *state, rt_msg_t *req, rt_from_t from)
{
    backup_st_t *st = state;
    if (req->tag != T_GET_STATE)
        rt_fail(rt_reason_fmt("backup: unexpected call %u", req->tag));
    reply_map(from, st->map);
    return RT_REPLIED;
}

static void backup_cast(void *state, rt_msg_t *m)
{
    backup_st_t *st = state;
    if (m->tag == T_PUT && !bmap_put(&st->map, (int64_t)m->a, (int64_t)m->b))
        rt_fail(rt_reason_new("enomem"));
}

static void backup_terminate(void *state, rt_reason_t *reason)
{
    backup_st_t *st = state;
    (void)reason;
    free(st->map);
    free(st);
}

static size_t backup_memory(const void *state)
{
    const backup_st_t *st = state;
    return sizeof *st + bmap_bytes(st->map);
}

static const rt_behaviour_t backup_b = RT_BEHAVIOUR(.name = "bench_backup",
                                                    .init = backup_init,
                                                    .handle_call = backup_call,
                                                    .handle_cast = backup_cast,
                                                    .terminate = backup_terminate,
                                                    .memory = backup_memory);

/* -- room -- */

typedef struct room_arg {
    rt_pid_t backup;
    rt_pid_t watcher;            /* RT_NOPID: none (trees) */
} room_arg_t;

typedef struct room_st {
    bmap_t *map;
    rt_pid_t backup, watcher;
    uint64_t restore_ref;
} room_st_t;

/* Rooms that have their map (trees: the end of the timed build). */
static _Atomic uint64_t rooms_restored;
static uint64_t rooms_expected;

/* The room's init asks the backup for the state and awaits the answer:
 * init itself may not block, so the reply is the room's first message
 * after init, by which time the supervisor has had its acknowledgement
 * (OTP's handle_continue). There the room takes the copy, stamps
 * t_restored and tells the watcher. */
static rt_reason_t *room_init(void *arg, void **state)
{
    const room_arg_t *ra = arg;
    room_st_t *st = calloc(1, sizeof *st);
    int rc;
    if (!st)
        return rt_reason_new("enomem");
    st->backup = ra->backup;
    st->watcher = ra->watcher;
    rc = rt_call(st->backup, rt_msg_new(T_GET_STATE), RT_DEFAULT_TIMEOUT, &st->restore_ref);
    if (rc != RT_OK) {
        free(st);
        return rt_reason_fmt("get_state: %s", rt_strerror(rc));
    }
    rt_await(st->restore_ref);
    *state = st;
    return NULL;
}

static void room_info(void *state, rt_msg_t *m)
{
    room_st_t *st = state;
    if (m->kind != RT_MSG_REPLY || m->ref != st->restore_ref || st->restore_ref == 0)
        return;
    st->restore_ref = 0;
    if (m->flags & RT_MF_ERROR)
        rt_fail(rt_reason_fmt("get_state failed: %s", rt_msg_reason(m)->text));
    if (m->tag != T_MAP || !m->data)
        rt_fail(rt_reason_new("get_state: no map"));
    st->map = rt_msg_take(m);
    uint64_t t_restored = rt_now_ns();
    if (st->watcher != RT_NOPID)
        rt_send(st->watcher, T_RESTORED, rt_self(), t_restored);
    else if (atomic_fetch_add_explicit(&rooms_restored, 1, memory_order_relaxed) + 1 == rooms_expected)
        rt_send(G.driver, T_ALL_READY, 0, 0);
}

static int room_call(void *state, rt_msg_t *req, rt_from_t from)
{
    room_st_t *st = state;
    switch (req->tag) {
    case T_SET:
        if (!bmap_put(&st->map, (int64_t)req->a, (int64_t)req->b))
            rt_fail(rt_reason_new("enomem"));
        rt_cast(st->backup, T_PUT, req->a, req->b);
        rt_reply_val(from, T_OKR, 0, 0);
        return RT_REPLIED;
    case T_GET:
        reply_map(from, st->map);
        return RT_REPLIED;
    default:
        rt_fail(rt_reason_fmt("room: unexpected call %u", req->tag));
    }
}

static void room_terminate(void *state, rt_reason_t *reason)
{
    room_st_t *st = state;
    (void)reason;
    free(st->map);
    free(st);
}

static size_t room_memory(const void *state)
{
    const room_st_t *st = state;
    return sizeof *st + bmap_bytes(st->map);
}

static const rt_behaviour_t room_b = RT_BEHAVIOUR(.name = "bench_room",
                                                  .init = room_init,
                                                  .handle_call = room_call,
                                                  .handle_info = room_info,
                                                  .terminate = room_terminate,
                                                  .memory = room_memory);

static const rt_child_spec_t backup_spec = {
    .id = "backup", .behaviour = &backup_b, .restart = RT_PERMANENT, .shutdown_ms = 5000,
};

/* The room supervisor's spec: the backup only; the room is added with
 * start_child once the backup's pid is known. Static: the supervisor
 * copies it during init. */
static const rt_sup_spec_t room_sup_spec = {
    .strategy = RT_ONE_FOR_ONE, .intensity = 1000000, .period_ms = 1000,
    .children = &backup_spec, .nchildren = 1,
};

/* Builds the request adding the room child; ra (malloc'd) becomes the
 * child's start argument, freed by the supervisor when it forgets the
 * child. */
static rt_msg_t *room_child_req(rt_pid_t backup, rt_pid_t watcher)
{
    room_arg_t *ra = malloc(sizeof *ra);
    if (!ra)
        return NULL;
    ra->backup = backup;
    ra->watcher = watcher;
    rt_child_spec_t spec = {
        .id = "room", .behaviour = &room_b, .arg = ra, .arg_free = free,
        .restart = RT_PERMANENT, .shutdown_ms = 5000,
    };
    rt_msg_t *m = rt_sup_req_start_child(&spec);
    if (!m)
        free(ra);
    return m;
}

/* The backup's pid from a which_children reply, or RT_NOPID. */
static rt_pid_t backup_of(const rt_msg_t *m)
{
    const rt_sup_children_t *ch = m->data;
    if (!ch)
        return RT_NOPID;
    for (size_t i = 0; i < ch->n; i++)
        if (strcmp(ch->child[i].id, "backup") == 0)
            return ch->child[i].pid;
    return RT_NOPID;
}

static bool sup_reply_ok(const rt_msg_t *m, const char *what)
{
    if ((int32_t)m->tag != RT_OK) {
        rt_reason_t *r = rt_msg_reason(m);
        failf("%s: %s%s%s", what, rt_strerror((int32_t)m->tag), r ? ": " : "", r ? r->text : "");
        return false;
    }
    return true;
}

/* Checks a map reply against k => -k for k = 1..100. */
static bool map_is_negated(const rt_msg_t *m, char *why, size_t len)
{
    const bmap_t *map = m->data;
    if (m->tag != T_MAP || !map) {
        snprintf(why, len, "reply is not a map");
        return false;
    }
    if (map->n != MAP_SIZE) {
        snprintf(why, len, "map has %u entries, expected %d", map->n, MAP_SIZE);
        return false;
    }
    for (int64_t k = 1; k <= MAP_SIZE; k++) {
        int64_t v;
        if (!bmap_get(map, k, &v)) {
            snprintf(why, len, "key %lld missing", (long long)k);
            return false;
        }
        if (v != -k) {
            snprintf(why, len, "key %lld => %lld, expected %lld", (long long)k, (long long)v,
                     (long long)-k);
            return false;
        }
    }
    return true;
}

/* ======================================================================
 * 6. restart — K kills of the room, each restored from the backup
 * ====================================================================== */

enum { RS_SUP, RS_WHICH, RS_ROOM, RS_FIRST, RS_SET, RS_CHECK0, RS_LOOP, RS_CHECK };

static struct {
    int phase;
    uint64_t k, i, sets, t_kill, t_loop0, t_1k;
    rt_pid_t sup, backup, room;
    uint64_t *lat;
} RS;

static void restart_start(void)
{
    rt_spawn_opts_t o = { .flags = RT_SPAWN_ACK };
    int rc;
    RS.k = scaled(1e5);
    RS.lat = malloc(RS.k * sizeof *RS.lat);
    if (!RS.lat) {
        failf("out of memory");
        return;
    }
    memset(RS.lat, 0, RS.k * sizeof *RS.lat);
    G.stage = "restart setup: starting the room supervisor";
    rc = rt_spawn(&rt_sup_behaviour, (void *)&room_sup_spec, &o, &RS.sup);
    if (rc != RT_OK) {
        failf("rt_spawn(room supervisor): %s", rt_strerror(rc));
        return;
    }
    G.ref = o.ack_ref;
    rt_await(G.ref);
    RS.phase = RS_SUP;
}

static void restart_kill(void)
{
    RS.t_kill = rt_now_ns();
    rt_exit(RS.room, RT_KILL);
}

static void restart_step(rt_msg_t *m)
{
    char why[160];
    switch (RS.phase) {
    case RS_SUP:
        if (!is_reply(m, "start room supervisor"))
            return;
        G.stage = "restart setup: which_children";
        RS.phase = RS_WHICH;
        call_await(RS.sup, rt_msg_new(RT_SUP_WHICH_CHILDREN), RT_INFINITY, "which_children");
        return;
    case RS_WHICH:
        if (!is_reply(m, "which_children"))
            return;
        RS.backup = backup_of(m);
        if (RS.backup == RT_NOPID) {
            failf("which_children: no running backup");
            return;
        }
        G.stage = "restart setup: start_child(room)";
        RS.phase = RS_ROOM;
        call_await(RS.sup, room_child_req(RS.backup, G.driver), RT_INFINITY, "start_child(room)");
        return;
    case RS_ROOM:
        if (!is_reply(m, "start_child(room)") || !sup_reply_ok(m, "start_child(room)"))
            return;
        RS.room = m->a;
        G.stage = "restart setup: waiting for the first restored";
        RS.phase = RS_FIRST;
        return;
    case RS_FIRST:
        if (m->tag != T_RESTORED)
            return;
        RS.room = m->a;
        G.stage = "restart setup: 100 set calls";
        RS.phase = RS_SET;
        RS.sets = 1;
        call_await(RS.room, msg3(T_SET, 1, (uint64_t)-1), RT_DEFAULT_TIMEOUT, "set");
        return;
    case RS_SET:
        if (!is_reply(m, "set"))
            return;
        if (RS.sets < MAP_SIZE) {
            RS.sets++;
            call_await(RS.room, msg3(T_SET, RS.sets, (uint64_t)-(int64_t)RS.sets),
                       RT_DEFAULT_TIMEOUT, "set");
            return;
        }
        RS.phase = RS_CHECK0;
        call_await(RS.room, rt_msg_new(T_GET), RT_DEFAULT_TIMEOUT, "get");
        return;
    case RS_CHECK0:
        if (!is_reply(m, "get"))
            return;
        if (!map_is_negated(m, why, sizeof why)) {
            failf("STATE CHECK FAILED before the loop: %s", why);
            return;
        }
        G.stage = "restart: kill loop";
        RS.phase = RS_LOOP;
        RS.i = 0;
        RS.t_loop0 = rt_now_ns();
        restart_kill();
        return;
    case RS_LOOP:
        if (m->tag != T_RESTORED)
            return;
        if (m->a == RS.room) {
            failf("restart %llu: `restored` came from the killed room itself",
                  (unsigned long long)RS.i + 1);
            return;
        }
        RS.lat[RS.i] = m->b > RS.t_kill ? m->b - RS.t_kill : 0;
        RS.room = m->a;
        RS.i++;
        if (RS.i == 1000 || (RS.i == RS.k && RS.k < 1000))
            RS.t_1k = rt_now_ns();
        if (RS.i < RS.k) {
            restart_kill();
            return;
        }
        {
            double t = (double)(rt_now_ns() - RS.t_loop0);
            uint64_t n1k = RS.k < 1000 ? RS.k : 1000;
            double t1k = (double)(RS.t_1k - RS.t_loop0);
            uint64_t *first = malloc(n1k * sizeof *first);
            if (!first) {
                failf("out of memory");
                return;
            }
            memcpy(first, RS.lat, n1k * sizeof *first);
            qsort(first, n1k, sizeof *first, cmp_u64);
            qsort(RS.lat, RS.k, sizeof *RS.lat, cmp_u64);
            metric("restarts_per_s", (double)RS.k / (t / 1e9));
            metric("us_per_restart", t / 1e3 / (double)RS.k);
            metric("latency_us_median", (double)nearest_rank(RS.lat, RS.k, 0.5) / 1e3);
            metric("latency_us_p99", (double)nearest_rank(RS.lat, RS.k, 0.99) / 1e3);
            metric("latency_us_max", (double)RS.lat[RS.k - 1] / 1e3);
            metric("first1k_restarts_per_s", (double)n1k / (t1k / 1e9));
            metric("first1k_latency_us_median", (double)nearest_rank(first, n1k, 0.5) / 1e3);
            free(first);
        }
        G.stage = "restart: final state check";
        RS.phase = RS_CHECK;
        call_await(RS.room, rt_msg_new(T_GET), RT_DEFAULT_TIMEOUT, "final get");
        return;
    case RS_CHECK:
        if (!is_reply(m, "final get"))
            return;
        if (!map_is_negated(m, why, sizeof why)) {
            failf("STATE CHECK FAILED: the room's state did not survive %llu crashes: %s",
                  (unsigned long long)RS.k, why);
            return;
        }
        finish();
        return;
    default:
        return;
    }
}

/* ======================================================================
 * 7. trees — M room trees under one SIMPLE_ONE_FOR_ONE supervisor
 *
 * OTP's child spec starts a tree with a function, start_room_tree(Id,
 * Watcher), run by the top supervisor: start the room supervisor (with the
 * backup), which_children for the backup's pid, start_child(room). A roost
 * template is a behaviour, not a function, so the top supervisor starts
 * the room supervisor and the driver makes the two further calls itself:
 * the same three calls per tree, in the same order, inside the timed loop.
 * ====================================================================== */

static const rt_child_spec_t tree_template = {
    .id = "room_tree", .behaviour = &rt_sup_behaviour, .restart = RT_PERMANENT,
    .shutdown_ms = RT_SHUTDOWN_INFINITY, .is_supervisor = true,
};

static const rt_sup_spec_t top_spec = {
    .strategy = RT_SIMPLE_ONE_FOR_ONE, .intensity = 10, .period_ms = 1000,
    .children = &tree_template, .nchildren = 1,
};

enum { TR_TOP, TR_START, TR_WHICH, TR_ROOM, TR_WAIT, TR_DOWN };

static struct {
    int phase;
    uint64_t m, i, t0, t_build, rss0, top_mem0, mon;
    rt_pid_t top, *sup, *backup, *room;
} TR;

static void trees_next(void)
{
    TR.phase = TR_START;
    call_await(TR.top, rt_sup_req_start_dyn((void *)&room_sup_spec), RT_INFINITY,
               "start_child(top)");
}

static void trees_start(void)
{
    rt_spawn_opts_t o = { .flags = RT_SPAWN_ACK };
    int rc;
    TR.m = scaled(1e5);
    TR.sup = pid_array(TR.m);
    TR.backup = pid_array(TR.m);
    TR.room = pid_array(TR.m);
    if (!TR.sup || !TR.backup || !TR.room) {
        failf("out of memory");
        return;
    }
    rooms_expected = TR.m;
    atomic_store(&rooms_restored, 0);
    G.stage = "trees setup: starting the top supervisor";
    rc = rt_spawn(&rt_sup_behaviour, (void *)&top_spec, &o, &TR.top);
    if (rc != RT_OK) {
        failf("rt_spawn(top supervisor): %s", rt_strerror(rc));
        return;
    }
    G.ref = o.ack_ref;
    rt_await(G.ref);
    TR.phase = TR_TOP;
}

static void trees_built(void)
{
    uint64_t rss1 = rss_bytes();
    double sum = 0, m = (double)TR.m;
    G.stage = "trees: memory";
    for (uint64_t i = 0; i < TR.m; i++)
        sum += (double)(proc_mem(TR.sup[i]) + proc_mem(TR.backup[i]) + proc_mem(TR.room[i]));
    sum += (double)proc_mem(TR.top) - (double)TR.top_mem0; /* the top's bookkeeping */
    metric("us_per_tree", (double)(TR.t_build - TR.t0) / 1e3 / m);
    metric("bytes_per_tree", sum / m);
    metric("bytes_per_tree_total", ((double)rss1 - (double)TR.rss0) / m);
    metric("bytes_per_tree_after_gc", sum / m); /* no GC in roost: same figure */
    metric("bytes_room_sup", (double)proc_mem(TR.sup[0]));
    metric("bytes_backup", (double)proc_mem(TR.backup[0]));
    metric("bytes_room", (double)proc_mem(TR.room[0]));

    G.stage = "trees: shutdown of the top supervisor";
    TR.phase = TR_DOWN;
    TR.mon = rt_monitor(TR.top);
    TR.t0 = rt_now_ns();
    /* exit(Top, shutdown) from its starter: in roost the documented way is
     * RT_SUP_STOP. The reply is not awaited: the end is the DOWN. */
    uint64_t ref;
    int rc = rt_call(TR.top, rt_msg_new(RT_SUP_STOP), RT_INFINITY, &ref);
    if (rc != RT_OK)
        failf("RT_SUP_STOP: %s", rt_strerror(rc));
}

static void trees_step(rt_msg_t *m)
{
    switch (TR.phase) {
    case TR_TOP:
        if (!is_reply(m, "start top supervisor"))
            return;
        TR.top_mem0 = proc_mem(TR.top);
        TR.rss0 = rss_bytes();
        G.stage = "trees: building";
        TR.i = 0;
        TR.t0 = rt_now_ns();
        trees_next();
        return;
    case TR_START:
        if (!is_reply(m, "start_child(top)") || !sup_reply_ok(m, "start_child(top)"))
            return;
        TR.sup[TR.i] = m->a;
        TR.phase = TR_WHICH;
        call_await(TR.sup[TR.i], rt_msg_new(RT_SUP_WHICH_CHILDREN), RT_INFINITY, "which_children");
        return;
    case TR_WHICH:
        if (!is_reply(m, "which_children"))
            return;
        TR.backup[TR.i] = backup_of(m);
        if (TR.backup[TR.i] == RT_NOPID) {
            failf("which_children: no running backup in tree %llu", (unsigned long long)TR.i + 1);
            return;
        }
        TR.phase = TR_ROOM;
        call_await(TR.sup[TR.i], room_child_req(TR.backup[TR.i], RT_NOPID), RT_INFINITY,
                   "start_child(room)");
        return;
    case TR_ROOM:
        if (!is_reply(m, "start_child(room)") || !sup_reply_ok(m, "start_child(room)"))
            return;
        TR.room[TR.i] = m->a;
        if (++TR.i < TR.m) {
            trees_next();
            return;
        }
        /* A roost start_child returns when the room's init returns; the
         * map arrives just after. The build ends when every room has it. */
        TR.phase = TR_WAIT;
        G.stage = "trees: waiting for the last rooms' maps";
        if (atomic_load(&rooms_restored) == TR.m) {
            TR.t_build = rt_now_ns();
            trees_built();
        }
        return;
    case TR_WAIT:
        if (m->tag == T_ALL_READY) {
            TR.t_build = rt_now_ns();
            trees_built();
        }
        return;
    case TR_DOWN:
        if (m->kind == RT_MSG_DOWN && m->ref == TR.mon) {
            metric("us_per_tree_shutdown", (double)(rt_now_ns() - TR.t0) / 1e3 / (double)TR.m);
            finish();
        }
        return;
    default:
        return;
    }
}

/* ======================================================================
 * The driver process and the workload table
 * ====================================================================== */

typedef struct workload {
    const char *name;
    void (*start)(void);
    void (*step)(rt_msg_t *m);
    const char *metrics[12];
} workload_t;

static const workload_t WORKLOADS[] = {
    { "spawn", spawn_start, spawn_step,
      { "us_per_spawn", "us_per_spawn_ready", "bytes_per_proc", "bytes_per_proc_total",
        "bytes_process_info", "us_per_stop" } },
    { "ring", ring_start, ring_step, { "ns_per_hop", "hops_per_s" } },
    { "pingpong", pp_start, pp_step, { "us_per_call", "calls_per_s" } },
    { "cast", cast_start, cast_step,
      { "msgs_per_s", "ns_per_msg", "send_msgs_per_s", "backlog_at_send_end" } },
    { "fanout", fanout_start, fanout_step,
      { "ms_per_broadcast", "deliveries_per_s", "ms_min", "ms_max" } },
    { "restart", restart_start, restart_step,
      { "restarts_per_s", "us_per_restart", "latency_us_median", "latency_us_p99",
        "latency_us_max", "first1k_restarts_per_s", "first1k_latency_us_median" } },
    { "trees", trees_start, trees_step,
      { "us_per_tree", "bytes_per_tree", "bytes_per_tree_total", "bytes_per_tree_after_gc",
        "bytes_room_sup", "bytes_backup", "bytes_room", "us_per_tree_shutdown" } },
};
#define NWORKLOADS (sizeof WORKLOADS / sizeof WORKLOADS[0])

static const workload_t *CUR;

static rt_reason_t *driver_init(void *arg, void **state)
{
    (void)arg;
    *state = NULL;
    G.driver = rt_self();
    rt_send(G.driver, T_START, 0, 0);
    return NULL;
}

static void driver_info(void *state, rt_msg_t *m)
{
    (void)state;
    if (G.finished)
        return;
    if (m->tag == T_START && m->kind == RT_MSG_INFO && m->from == G.driver) {
        CUR->start();
        return;
    }
    CUR->step(m);
}

static const rt_behaviour_t driver_b = RT_BEHAVIOUR(.name = "bench_driver",
                                                    .init = driver_init,
                                                    .handle_info = driver_info);

static const char *metric_note(const char *name)
{
    if (!strcmp(name, "bytes_per_proc") || !strcmp(name, "bytes_per_tree"))
        return "runtime: sum of rt_process_info().memory / count";
    if (!strcmp(name, "bytes_per_tree_after_gc"))
        return "runtime, as bytes_per_tree (roost has no GC: same figure)";
    if (!strcmp(name, "bytes_per_proc_total") || !strcmp(name, "bytes_per_tree_total"))
        return "resident: RSS growth / count";
    if (!strncmp(name, "bytes_", 6))
        return "rt_process_info().memory of one process";
    return "";
}

/* ---- The child: one run of one workload -------------------------------- */

static int child_main(const workload_t *w, double scale)
{
    int rc;
    rt_pid_t driver;
    rt_inbox_t *ib;
    /* Generous: the slowest plausible run at scale 1 takes well under a
     * minute. A run past this is reported as hung, with its stage. */
    int limit_s = (int)(300 * (scale > 1 ? scale : 1));
    const char *env = getenv("RT_BENCH_TIMEOUT_S");
    if (env && atoi(env) > 0)
        limit_s = atoi(env);

    G.workload = w->name;
    G.scale = scale;
    G.stage = "starting the runtime";
    CUR = w;
    alarm((unsigned)limit_s + 30); /* backstop if even the main thread hangs */

    /* RT_BENCH_SCHEDULERS (diagnostics only): scheduler threads; default
     * one per core, as the workloads are defined. */
    rt_config_t cfg = { 0 };
    const char *ns = getenv("RT_BENCH_SCHEDULERS");
    if (ns && atoi(ns) > 0)
        cfg.schedulers = (unsigned)atoi(ns);
    rc = rt_runtime_start(&cfg);
    if (rc != RT_OK) {
        printf("ERROR rt_runtime_start: %s\n", rt_strerror(rc));
        return 2;
    }
    ib = rt_inbox_open(0);
    if (!ib) {
        printf("ERROR rt_inbox_open failed\n");
        return 2;
    }
    G.main_pid = rt_inbox_pid(ib);
    rc = rt_spawn(&driver_b, NULL, NULL, &driver);
    if (rc != RT_OK) {
        printf("ERROR rt_spawn(driver): %s\n", rt_strerror(rc));
        return 2;
    }
    uint64_t deadline = rt_now_ms() + (uint64_t)limit_s * 1000;
    for (;;) {
        rt_msg_t *m = rt_inbox_recv(ib, 1000);
        if (m) {
            bool done = m->tag == T_DONE;
            rt_msg_free(m);
            if (done)
                break;
        }
        if (rt_now_ms() > deadline) {
            rt_stats_t st;
            rt_get_stats(&st);
            printf("ERROR TIMEOUT after %d s at stage: %s (processes %llu, messages %llu, "
                   "dropped %llu, restarts %llu)\n",
                   limit_s, G.stage ? G.stage : "?", (unsigned long long)st.processes,
                   (unsigned long long)st.messages, (unsigned long long)st.dropped,
                   (unsigned long long)st.restarts);
            fflush(stdout);
            return 3;
        }
    }
    if (G.fail[0]) {
        printf("ERROR %s\n", G.fail);
        fflush(stdout);
        return 4;
    }
    for (int i = 0; i < G.nm; i++)
        printf("METRIC %s %.17g\n", G.m[i].name, G.m[i].v);
    fflush(stdout);
    return 0;
}

/* ---- The parent: runs, medians, table, RESULT ---------------------------- */

#define MAX_REPS 32

typedef struct series {
    double v[MAX_REPS];
    int n;
} series_t;

static series_t RES[NWORKLOADS][12];

static int metric_index(const workload_t *w, const char *name)
{
    for (int i = 0; i < 12 && w->metrics[i]; i++)
        if (!strcmp(w->metrics[i], name))
            return i;
    return -1;
}

/* Runs one workload once in a fresh process; records its metrics. Returns
 * 0 or the child's failure status. */
static int run_once(const char *exe, size_t wi, double scale, int run, int reps)
{
    const workload_t *w = &WORKLOADS[wi];
    int fds[2], status = 0;
    char sc[64];
    pid_t pid;
    FILE *in;
    char line[1024];
    uint64_t t0 = mono_ns();

    snprintf(sc, sizeof sc, "%.17g", scale);
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(exe, exe, "--child", w->name, "--scale", sc, (char *)NULL);
        perror("exec");
        _exit(127);
    }
    close(fds[1]);
    in = fdopen(fds[0], "r");
    int ok_metrics = 0;
    while (in && fgets(line, sizeof line, in)) {
        char name[128];
        double v;
        if (sscanf(line, "METRIC %127s %lf", name, &v) == 2) {
            int mi = metric_index(w, name);
            if (mi >= 0 && RES[wi][mi].n < MAX_REPS) {
                RES[wi][mi].v[RES[wi][mi].n++] = v;
                ok_metrics++;
            }
        } else {
            printf("    %s", line);
        }
    }
    if (in)
        fclose(in);
    waitpid(pid, &status, 0);
    printf("  %-8s run %d/%d: %s (%.1f s)\n", w->name, run, reps,
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok"
           : WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "FAILED",
           (double)(mono_ns() - t0) / 1e9);
    fflush(stdout);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok_metrics > 0)
        return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1;
}

static double median(const series_t *s)
{
    double v[MAX_REPS];
    memcpy(v, s->v, (size_t)s->n * sizeof v[0]);
    qsort(v, (size_t)s->n, sizeof v[0], cmp_double);
    if (s->n % 2)
        return v[s->n / 2];
    return (v[s->n / 2 - 1] + v[s->n / 2]) / 2;
}

/* A number for humans and for JSON: integers above 1000, else 4
 * significant digits. */
static void fmt_num(char *buf, size_t len, double v)
{
    if (fabs(v) >= 1000)
        snprintf(buf, len, "%.0f", v);
    else if (v == 0)
        snprintf(buf, len, "0");
    else
        snprintf(buf, len, "%.4g", v);
}

static void usage(void)
{
    fprintf(stderr, "usage: rt_bench [workload...] [--scale F] [--reps N]\nworkloads:");
    for (size_t i = 0; i < NWORKLOADS; i++)
        fprintf(stderr, " %s", WORKLOADS[i].name);
    fprintf(stderr, "\n");
}

static const workload_t *find_workload(const char *name, size_t *idx)
{
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (!strcmp(WORKLOADS[i].name, name)) {
            if (idx)
                *idx = i;
            return &WORKLOADS[i];
        }
    return NULL;
}

int main(int argc, char **argv)
{
    double scale = 1;
    int reps = 3;
    bool want[NWORKLOADS] = { false }, any = false;
    const char *child = NULL;
    char exe[4096];
    ssize_t n;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
            scale = strtod(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--child") && i + 1 < argc) {
            child = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            size_t wi;
            if (!find_workload(argv[i], &wi)) {
                fprintf(stderr, "rt_bench: unknown workload or option '%s'\n", argv[i]);
                usage();
                return 2;
            }
            want[wi] = any = true;
        }
    }
    if (!(scale > 0) || reps < 1 || reps > MAX_REPS) {
        usage();
        return 2;
    }
    if (child) {
        const workload_t *w = find_workload(child, NULL);
        int rc = w ? child_main(w, scale) : 2;
        fflush(stdout);
        _exit(rc); /* skip tearing down up to a million processes */
    }

    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    exe[n] = 0;

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("rt_bench: roost runtime workloads (runtime-workloads.md), scale %g, %d run%s each, "
           "%ld cores\n", scale, reps, reps == 1 ? "" : "s", ncpu);
    /* Other work on the machine skews every figure: say how busy it was. */
    double load = 0;
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf", &load) != 1)
            load = 0;
        fclose(lf);
    }
    printf("load average (1 min) at start: %.2f%s\n", load,
           load > 0.5 ? "  -- the machine is busy: figures will be noisy" : "");
    int failures = 0;
    for (size_t wi = 0; wi < NWORKLOADS; wi++) {
        if (any && !want[wi])
            continue;
        for (int r = 1; r <= reps; r++) {
            struct timespec ts = { 0, 300 * 1000 * 1000 }; /* the 300 ms pause */
            nanosleep(&ts, NULL);
            if (run_once(exe, wi, scale, r, reps) != 0)
                failures++;
        }
    }

    /* The table. */
    printf("\n%-9s %-26s %14s  %-40s %s\n", "workload", "metric", "median", "runs", "measure");
    for (size_t wi = 0; wi < NWORKLOADS; wi++) {
        const workload_t *w = &WORKLOADS[wi];
        if (any && !want[wi])
            continue;
        for (int mi = 0; mi < 12 && w->metrics[mi]; mi++) {
            const series_t *s = &RES[wi][mi];
            char med[64] = "-", runs[256] = "", num[64];
            if (s->n) {
                fmt_num(med, sizeof med, median(s));
                for (int j = 0; j < s->n; j++) {
                    fmt_num(num, sizeof num, s->v[j]);
                    snprintf(runs + strlen(runs), sizeof runs - strlen(runs), "%s%s",
                             j ? ", " : "", num);
                }
            }
            printf("%-9s %-26s %14s  %-40s %s\n", mi ? "" : w->name, w->metrics[mi], med, runs,
                   metric_note(w->metrics[mi]));
        }
    }

    /* The RESULT line. */
    printf("\nRESULT {\"workloads\": {");
    bool first_w = true;
    for (size_t wi = 0; wi < NWORKLOADS; wi++) {
        const workload_t *w = &WORKLOADS[wi];
        if (any && !want[wi])
            continue;
        printf("%s\"%s\": {", first_w ? "" : ", ", w->name);
        first_w = false;
        bool first_m = true;
        for (int mi = 0; mi < 12 && w->metrics[mi]; mi++) {
            const series_t *s = &RES[wi][mi];
            char num[64];
            if (!s->n)
                continue;
            fmt_num(num, sizeof num, median(s));
            printf("%s\"%s\": {\"median\": %s, \"runs\": [", first_m ? "" : ", ", w->metrics[mi],
                   num);
            first_m = false;
            for (int j = 0; j < s->n; j++) {
                fmt_num(num, sizeof num, s->v[j]);
                printf("%s%s", j ? ", " : "", num);
            }
            printf("]}");
        }
        printf("}");
    }
    printf("}}\n");
    if (failures) {
        printf("rt_bench: %d run%s FAILED (see the ERROR lines above)\n", failures,
               failures == 1 ? "" : "s");
        return 1;
    }
    return 0;
}
