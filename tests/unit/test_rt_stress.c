/*
 * test_rt_stress.c — the runtime under churn (also run under
 * ThreadSanitizer by `make check-tsan`, and meant for ASan/LSan:
 *   make BUILD=build/asan SAN=asan build/asan/tests/test_rt_stress &&
 *   ASAN_OPTIONS=detect_leaks=1 ./build/asan/tests/test_rt_stress).
 *
 * 1. External threads and processes send to 200 processes while those die
 *    and are replaced; every message carries the pid it was meant for and
 *    no process ever handles one meant for another incarnation.
 * 2. 100,000 crash/restart cycles of a process that holds memory, a name,
 *    a subscription, a timer and a link: exact counts, nothing left over.
 *
 * Callbacks record failures with CHECK(), never with Criterion's
 * assertions. Loops are bounded; waits are receives with a timeout.
 */
#include <pthread.h>

#include "rt_harness.h"

enum {
    T_WORK = 0x100, /* a = the pid it is meant for */
    T_DIE,          /* a = the pid it is meant for; the worker fails */
    T_FLUSH,        /* from the manager: answer T_FLUSHED */
    T_FLUSHED,
    T_STOP,         /* to the manager: stop restarting, report when quiet */
    T_QUIET,        /* result: a = DOWNs seen, b = restarts */
    T_GO,
    T_DONE,
    T_CRASH,
};

/* ---- Churn: messages to processes that die and are replaced -------------------------------- */

#define NW 200
#define EXT_SENDERS 4
#define PROC_SENDERS 4
#define PER_SENDER (60000 / SCALE)

static _Atomic rt_pid_t slots[NW];   /* the current worker of each slot */
static atomic_long n_wrong;          /* messages handled by a process they were not for */
static atomic_long n_work, n_die;    /* handled by workers */
static atomic_long n_sent_ok, n_sent_noproc;

static rt_reason_t *worker_init(void *arg, void **state)
{
    *state = arg; /* the slot index */
    return NULL;
}

static void worker_info(void *state, rt_msg_t *m)
{
    if (m->a != rt_self())
        atomic_fetch_add(&n_wrong, 1);
    switch (m->tag) {
    case T_WORK:
        atomic_fetch_add(&n_work, 1);
        break;
    case T_DIE:
        atomic_fetch_add(&n_die, 1);
        rt_fail(rt_reason_new("churn"));
    case T_FLUSH:
        CHECK(rt_send(m->from, T_FLUSHED, (uint64_t)(uintptr_t)state, 0) == RT_OK);
        break;
    default:
        CHECK(!"unexpected message");
    }
}

static const rt_behaviour_t worker_beh = RT_BEHAVIOUR(
    .name = "worker", .init = worker_init, .handle_info = worker_info, .handle_cast = worker_info);

typedef struct manager {
    rt_pid_t pids[NW];
    uint64_t refs[NW];
    uint8_t pending[NW]; /* after T_STOP: a FLUSHED or a DOWN is due */
    bool restarting, stopping;
    uint32_t outstanding;
    uint64_t downs, restarts;
} manager_t;

static int start_worker(manager_t *s, uint32_t i)
{
    rt_spawn_opts_t o = {.flags = RT_SPAWN_MONITOR};
    rt_pid_t pid = RT_NOPID;
    int rc = rt_spawn(&worker_beh, (void *)(uintptr_t)i, &o, &pid);
    if (rc != RT_OK)
        return rc;
    s->pids[i] = pid;
    s->refs[i] = o.monitor_ref;
    atomic_store(&slots[i], pid);
    return RT_OK;
}

static rt_reason_t *manager_init(void *arg, void **state)
{
    manager_t *s = calloc(1, sizeof *s);
    if (!s)
        return rt_reason_new("enomem");
    *state = s;
    s->restarting = true;
    for (uint32_t i = 0; i < NW; i++)
        if (start_worker(s, i) != RT_OK)
            return rt_reason_new("spawn failed"); /* the runtime's stop kills the rest */
    return NULL;
}

static void manager_quiet(manager_t *s)
{
    if (s->stopping && s->outstanding == 0) {
        result(T_QUIET, s->downs, s->restarts);
        s->stopping = false;
    }
}

static void manager_info(void *state, rt_msg_t *m)
{
    manager_t *s = state;
    if (m->kind == RT_MSG_DOWN) {
        uint32_t i = 0;
        while (i < NW && s->refs[i] != m->ref)
            i++;
        CHECK(i < NW);
        if (i == NW)
            return;
        rt_reason_t *why = rt_msg_reason(m);
        CHECK(why && strcmp(why->text, "churn") == 0);
        CHECK(m->from == s->pids[i]);
        s->downs++;
        s->refs[i] = 0;
        s->pids[i] = RT_NOPID;
        if (s->pending[i]) {
            s->pending[i] = 0;
            s->outstanding--;
        }
        if (s->restarting) {
            CHECK(start_worker(s, i) == RT_OK);
            s->restarts++;
        }
        manager_quiet(s);
    } else if (m->tag == T_FLUSHED) {
        uint64_t i = m->a;
        CHECK(i < NW && s->pids[i] == m->from);
        if (i < NW && s->pending[i]) {
            s->pending[i] = 0;
            s->outstanding--;
        }
        manager_quiet(s);
    } else if (m->tag == T_STOP) {
        /* No more restarts. Every worker either answers a flush (then all
         * it was sent has been handled) or dies (then its DOWN comes). */
        s->restarting = false;
        s->stopping = true;
        for (uint32_t i = 0; i < NW; i++) {
            if (!s->pids[i])
                continue;
            s->pending[i] = 1;
            s->outstanding++;
            rt_send(s->pids[i], T_FLUSH, s->pids[i], 0); /* RT_ENOPROC: its DOWN is due */
        }
        manager_quiet(s);
    }
}

static void manager_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t manager_beh =
    RT_BEHAVIOUR(.name = "manager", .init = manager_init, .handle_info = manager_info,
                 .terminate = manager_terminate);

/* One send to a random slot: a = the pid read from the slot. */
static void churn_send(unsigned *seed)
{
    uint32_t i = (uint32_t)rand_r(seed) % NW;
    rt_pid_t pid = atomic_load(&slots[i]);
    uint32_t tag = (rand_r(seed) % 200) == 0 ? T_DIE : T_WORK;
    int rc = (rand_r(seed) & 1) ? rt_send(pid, tag, pid, 0) : rt_cast(pid, tag, pid, 0);
    if (rc == RT_OK)
        atomic_fetch_add(&n_sent_ok, 1);
    else if (rc == RT_ENOPROC)
        atomic_fetch_add(&n_sent_noproc, 1);
    else
        CHECK(!"unexpected send result");
}

static void *churn_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int k = 0; k < PER_SENDER; k++)
        churn_send(&seed);
    return NULL;
}

typedef struct churner {
    unsigned seed;
    int sent;
} churner_t;

static rt_reason_t *churner_init(void *arg, void **state)
{
    churner_t *c = calloc(1, sizeof *c);
    if (!c)
        return rt_reason_new("enomem");
    c->seed = (unsigned)(uintptr_t)arg;
    *state = c;
    return NULL;
}

static void churner_info(void *state, rt_msg_t *m)
{
    churner_t *c = state;
    for (int k = 0; k < 500 && c->sent < PER_SENDER; k++, c->sent++)
        churn_send(&c->seed);
    if (c->sent < PER_SENDER)
        CHECK(rt_send(rt_self(), T_GO, 0, 0) == RT_OK);
    else
        result(T_DONE, 0, 0);
}

static void churner_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t churner_beh =
    RT_BEHAVIOUR(.name = "churner", .init = churner_init, .handle_info = churner_info,
                 .terminate = churner_terminate);

Test(stress, messages_never_reach_a_later_process_in_the_slot, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_stats_t s0, s1;
    rt_get_stats(&s0);
    rt_spawn_opts_t o = {.flags = RT_SPAWN_ACK};
    rt_pid_t mgr = RT_NOPID;
    cr_assert_eq(rt_inbox_spawn(ib, &manager_beh, NULL, &o, &mgr), RT_OK);
    rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK, .ref = o.ack_ref}, WAIT_MS);
    cr_assert_not_null(ack);
    cr_assert_eq(ack->flags & RT_MF_ERROR, 0);
    rt_msg_free(ack);

    pthread_t th[EXT_SENDERS];
    for (uintptr_t i = 0; i < EXT_SENDERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, churn_thread, (void *)(i + 1)), 0);
    for (uintptr_t i = 0; i < PROC_SENDERS; i++) {
        rt_pid_t p;
        cr_assert_eq(rt_spawn(&churner_beh, (void *)(i + 100), NULL, &p), RT_OK);
        cr_assert_eq(rt_send(p, T_GO, 0, 0), RT_OK);
    }
    for (int i = 0; i < EXT_SENDERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < PROC_SENDERS; i++) {
        rt_msg_t *d = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE}, 45000);
        cr_assert_not_null(d, "a sender process did not finish");
        rt_msg_free(d);
    }

    cr_assert_eq(rt_send(mgr, T_STOP, 0, 0), RT_OK);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_QUIET, .by = mgr}, &r);
    long ok = atomic_load(&n_sent_ok), noproc = atomic_load(&n_sent_noproc);
    long work = atomic_load(&n_work), die = atomic_load(&n_die);
    cr_log_info("sent %ld (noproc %ld), handled %ld work + %ld die, %llu restarts", ok + noproc,
                noproc, work, die, (unsigned long long)r.b);

    cr_assert_eq(atomic_load(&n_wrong), 0, "%ld messages reached a process they were not for",
                 atomic_load(&n_wrong));
    cr_assert_eq(ok + noproc, (long)(EXT_SENDERS + PROC_SENDERS) * PER_SENDER);
    cr_assert_gt(die, 0);
    cr_assert_eq((long)r.a, die, "every handled T_DIE is one DOWN");
    cr_assert_leq(r.b, r.a);
    cr_assert_leq(work + die, ok, "more handled than sent");
    rt_get_stats(&s1);
    cr_assert_geq((long)(s1.dropped - s0.dropped), noproc, "sends to dead pids are counted");
    ASSERT_NO_BAD_CHECKS();
}

/* ---- 100,000 crash/restart cycles ------------------------------------------------------------ */

#define CYCLES SIZED(100000, 2000)

static atomic_long n_inits, n_terms, n_exits_seen;

typedef struct crasher {
    char *buf;
    uint64_t magic;
} crasher_t;

static rt_reason_t *crasher_init(void *arg, void **state)
{
    crasher_t *c = calloc(1, sizeof *c);
    if (!c)
        return rt_reason_new("enomem");
    c->buf = malloc(256);
    if (!c->buf) {
        free(c);
        return rt_reason_new("enomem");
    }
    c->magic = 0xC4A5;
    *state = c;
    atomic_fetch_add(&n_inits, 1);
    /* Things the runtime must release when the process fails: a
     * subscription, a pending timer with an owned payload (the name was
     * registered at spawn). */
    if (rt_subscribe("crashers") != RT_OK)
        return rt_reason_new("subscribe failed"); /* terminate does not run: ... */
    rt_msg_t *t = rt_msg_new(T_WORK);
    if (!t)
        return rt_reason_new("enomem");
    rt_msg_set_data(t, malloc(100), RT_OWN_FREE);
    if (!rt_send_after(3600 * 1000, rt_self(), t))
        return rt_reason_new("timer failed");
    return NULL;
}

static void crasher_info(void *state, rt_msg_t *m)
{
    crasher_t *c = state;
    CHECK(c->magic == 0xC4A5);
    if (m->tag == T_CRASH) {
        CHECK(rt_link(m->from) == RT_OK);
        rt_fail(rt_reason_new("crash"));
    }
}

static void crasher_terminate(void *state, rt_reason_t *reason)
{
    crasher_t *c = state;
    CHECK(strcmp(reason->text, "crash") == 0);
    free(c->buf);
    free(c);
    atomic_fetch_add(&n_terms, 1);
}

static const rt_behaviour_t crasher_beh =
    RT_BEHAVIOUR(.name = "crasher", .init = crasher_init, .handle_info = crasher_info,
                 .terminate = crasher_terminate);

typedef struct watcher {
    uint64_t ref;
    long cycles;
} watcher_t;

static void watcher_start(watcher_t *w)
{
    rt_spawn_opts_t o = {.flags = RT_SPAWN_MONITOR, .name = "crasher"};
    rt_pid_t pid = RT_NOPID;
    CHECK(rt_spawn(&crasher_beh, NULL, &o, &pid) == RT_OK);
    w->ref = o.monitor_ref;
    CHECK(rt_send(pid, T_CRASH, 0, 0) == RT_OK);
}

static rt_reason_t *watcher_init(void *arg, void **state)
{
    watcher_t *w = calloc(1, sizeof *w);
    if (!w)
        return rt_reason_new("enomem");
    *state = w;
    watcher_start(w);
    return NULL;
}

static void watcher_info(void *state, rt_msg_t *m)
{
    watcher_t *w = state;
    if (m->kind == RT_MSG_EXIT) {
        atomic_fetch_add(&n_exits_seen, 1);
        return;
    }
    if (m->kind != RT_MSG_DOWN)
        return;
    CHECK(m->ref == w->ref);
    rt_reason_t *why = rt_msg_reason(m);
    CHECK(why && strcmp(why->text, "crash") == 0);
    if (++w->cycles < CYCLES)
        watcher_start(w);
    else
        result(T_DONE, (uint64_t)w->cycles, 0);
}

static void watcher_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t watcher_beh =
    RT_BEHAVIOUR(.name = "watcher", .init = watcher_init, .handle_info = watcher_info,
                 .terminate = watcher_terminate);

Test(stress, crash_and_restart_many_times_releases_everything, .init = setup,
     .fini = teardown, .timeout = 60)
{
    rt_pid_t warm = spawn_puppet(0, NULL);
    ping(warm);
    rt_stats_t s0, s1;
    rt_get_stats(&s0);

    rt_pid_t w = RT_NOPID;
    rt_spawn_opts_t o = {.flags = RT_SPAWN_TRAP_EXIT};
    cr_assert_eq(rt_spawn(&watcher_beh, NULL, &o, &w), RT_OK);
    rt_msg_t *m = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_DONE, .by = w}, 55000);
    cr_assert_not_null(m, "%ld of %d cycles done", atomic_load(&n_terms), CYCLES);
    cr_assert_eq(((const report_t *)m->data)->a, CYCLES);
    rt_msg_free(m);

    cr_assert_eq(atomic_load(&n_inits), CYCLES);
    cr_assert_eq(atomic_load(&n_terms), CYCLES, "terminate ran %ld times for %d crashes",
                 atomic_load(&n_terms), CYCLES);
    cr_assert_eq(atomic_load(&n_exits_seen), CYCLES, "the watcher saw %ld link exits",
                 atomic_load(&n_exits_seen));
    cr_assert_eq(rt_whereis("crasher"), RT_NOPID);
    cr_assert_eq(rt_subscriber_count("crashers"), 0);
    rt_get_stats(&s1);
    cr_assert_eq(s1.processes, s0.processes + 1, "only the watcher is left");

    /* A live process keeps the last message it handled (the queue's
     * tail); once the watcher is gone too, everything is back. */
    uint64_t mref = rt_inbox_monitor(ib, w);
    cr_assert_eq(rt_exit(w, RT_KILL), RT_OK);
    char why[64];
    want_down(mref, why, sizeof why);
    rt_get_stats(&s1);
    cr_assert_eq(s1.exited - s0.exited, CYCLES + 1);
    cr_assert_eq(s1.spawned - s0.spawned, CYCLES + 1);
    cr_assert_eq(s1.processes, s0.processes);
    cr_assert_eq(s1.msgs_live, s0.msgs_live, "messages leaked: %lld -> %lld",
                 (long long)s0.msgs_live, (long long)s1.msgs_live);
    ASSERT_NO_BAD_CHECKS();
}
