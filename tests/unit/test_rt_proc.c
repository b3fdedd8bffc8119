/*
 * test_rt_proc.c — processes and messages (rt.h: spawning, behaviours,
 * message ownership, exits from inside a process, migrate, introspection,
 * runtime lifecycle).
 *
 * The test thread acts as a process through an inbox. Callbacks run on
 * scheduler threads, where Criterion's assertions must not be used (they
 * unwind the test thread), so a callback records a failed check with
 * CHECK() and the test asserts afterwards that no check failed. Every wait
 * is a receive with a timeout, never a sleep.
 */
#include <malloc.h>

#include "rt_harness.h"

/* ---- A behaviour that counts its lifecycle ---------------------------------- */

enum {
    T_ECHO = 0x100, /* -> result T_ECHO a = init arg, b = m->a */
    T_STOP,         /* rt_stop("bye") */
    T_STOP_NORMAL,  /* rt_stop(normal) */
    T_FAIL,         /* rt_fail("failed_here") */
    T_ASSERT,       /* RT_ASSERT(m->a == 0) */
    T_BUMP,         /* x++ */
    T_WHO,          /* -> result T_WHO: a = behaviour version, b = x */
    T_NOP,
    T_BLOCK,
};

static atomic_int n_inits, n_terms, n_live_states, n_after_stop, n_after_fail;
static char term_reason[160];
static atomic_int term_code = -1;

typedef struct counted {
    uint64_t magic;
    uint64_t arg;
    uint64_t x;
} counted_t;

static rt_reason_t *counted_init(void *arg, void **state)
{
    atomic_fetch_add(&n_inits, 1);
    int v = arg ? *(const int *)arg : 0;
    if (v < 0) {
        /* Build something and free it again: a failed init cleans up. */
        void *scratch = malloc(100);
        free(scratch);
        return rt_reason_new("init_refused");
    }
    counted_t *c = calloc(1, sizeof *c);
    if (!c)
        return rt_reason_new("enomem");
    c->magic = 0xC0FFEE;
    c->arg = (uint64_t)v;
    *state = c;
    atomic_fetch_add(&n_live_states, 1);
    return NULL;
}

static void counted_info(void *state, rt_msg_t *m)
{
    counted_t *c = state;
    CHECK(c->magic == 0xC0FFEE);
    switch (m->tag) {
    case T_ECHO:
        result(T_ECHO, c->arg, m->a);
        break;
    case T_STOP:
        rt_stop(rt_reason_new("bye"));
        atomic_fetch_add(&n_after_stop, 1); /* rt_stop returns: the callback goes on */
        break;
    case T_STOP_NORMAL:
        rt_stop(RT_NORMAL);
        break;
    case T_FAIL:
        rt_fail(rt_reason_new("failed_here"));
        atomic_fetch_add(&n_after_fail, 1); /* never reached */
        break;
    case T_ASSERT:
        RT_ASSERT(m->a == 0);
        atomic_fetch_add(&n_after_fail, 1);
        break;
    case T_BUMP:
        c->x++;
        break;
    case T_WHO:
        result(T_WHO, 1, c->x);
        break;
    default:
        break;
    }
}

static void counted_terminate(void *state, rt_reason_t *reason)
{
    counted_t *c = state;
    CHECK(c != NULL && c->magic == 0xC0FFEE);
    snprintf(term_reason, sizeof term_reason, "%s", reason ? reason->text : "(null)");
    atomic_store(&term_code, reason ? (int)reason->code : -2);
    c->magic = 0;
    free(c);
    atomic_fetch_sub(&n_live_states, 1);
    atomic_fetch_add(&n_terms, 1);
}

static size_t counted_memory(const void *state) { return 4096; }

static const rt_behaviour_t counted_beh = RT_BEHAVIOUR(
    .name = "counted", .version = 1, .init = counted_init, .handle_info = counted_info,
    .terminate = counted_terminate, .memory = counted_memory);

static rt_pid_t spawn_counted(int *arg, uint32_t flags, rt_spawn_opts_t *o)
{
    rt_spawn_opts_t local = {0};
    if (!o)
        o = &local;
    o->flags |= flags;
    rt_pid_t pid = RT_NOPID;
    cr_assert_eq(rt_inbox_spawn(ib, &counted_beh, arg, o, &pid), RT_OK);
    cr_assert_neq(pid, RT_NOPID);
    return pid;
}

/* ---- Spawn, init, terminate --------------------------------------------------- */

Test(proc, init_runs_with_arg_and_terminate_gets_the_exit_reason, .init = setup,
     .fini = teardown, .timeout = 60)
{
    int arg = 42;
    rt_spawn_opts_t o = {0};
    rt_pid_t pid = spawn_counted(&arg, RT_SPAWN_MONITOR, &o);

    cr_assert_eq(rt_send(pid, T_ECHO, 7, 0), RT_OK);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_ECHO, .by = pid}, &r);
    cr_assert_eq(r.a, 42);
    cr_assert_eq(r.b, 7);
    cr_assert(rt_is_alive(pid));
    cr_assert_eq(atomic_load(&n_terms), 0);

    cr_assert_eq(rt_send(pid, T_STOP, 0, 0), RT_OK);
    char why[160];
    want_down(o.monitor_ref, why, sizeof why);
    cr_assert_str_eq(why, "bye");
    cr_assert_eq(atomic_load(&n_inits), 1);
    cr_assert_eq(atomic_load(&n_terms), 1, "terminate runs once, before the DOWN");
    cr_assert_str_eq(term_reason, "bye");
    cr_assert_eq(atomic_load(&n_live_states), 0);
    cr_assert_not(rt_is_alive(pid));
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, init_success_acks_with_the_child_pid, .init = setup, .fini = teardown,
     .timeout = 60)
{
    int arg = 1;
    rt_spawn_opts_t o = {0};
    rt_pid_t pid = spawn_counted(&arg, RT_SPAWN_ACK, &o);
    cr_assert_neq(o.ack_ref, 0);
    rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK, .ref = o.ack_ref}, WAIT_MS);
    cr_assert_not_null(ack, "no ACK");
    cr_assert_eq(ack->flags & RT_MF_ERROR, 0);
    cr_assert_eq(ack->from, pid);
    cr_assert_null(rt_msg_reason(ack));
    rt_msg_free(ack);
    cr_assert(rt_is_alive(pid));
}

Test(proc, init_failure_acks_the_reason_and_skips_terminate, .init = setup,
     .fini = teardown, .timeout = 60)
{
    int arg = -1;
    rt_spawn_opts_t o = {0};
    rt_pid_t pid = spawn_counted(&arg, RT_SPAWN_ACK | RT_SPAWN_MONITOR, &o);

    rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK, .ref = o.ack_ref}, WAIT_MS);
    cr_assert_not_null(ack, "no ACK");
    cr_assert(ack->flags & RT_MF_ERROR);
    rt_reason_t *why = rt_msg_reason(ack);
    cr_assert_not_null(why);
    cr_assert_str_eq(why->text, "init_refused");
    cr_assert_eq(why->code, RT_R_OTHER);
    rt_msg_free(ack);

    char down[160];
    want_down(o.monitor_ref, down, sizeof down);
    cr_assert_str_eq(down, "init_refused");
    cr_assert_not(rt_is_alive(pid));
    cr_assert_eq(atomic_load(&n_inits), 1);
    cr_assert_eq(atomic_load(&n_terms), 0, "terminate must not run after a failed init");
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, spawn_with_a_taken_name_fails_already_registered, .init = setup,
     .fini = teardown, .timeout = 60)
{
    int arg = 1;
    rt_spawn_opts_t o1 = {.name = "the_one"};
    rt_pid_t holder = spawn_counted(&arg, RT_SPAWN_ACK, &o1);
    rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK, .ref = o1.ack_ref}, WAIT_MS);
    cr_assert_not_null(ack);
    cr_assert_eq(ack->flags & RT_MF_ERROR, 0);
    rt_msg_free(ack);
    cr_assert_eq(rt_whereis("the_one"), holder);

    rt_spawn_opts_t o2 = {.name = "the_one"};
    rt_pid_t second = spawn_counted(&arg, RT_SPAWN_ACK | RT_SPAWN_MONITOR, &o2);
    ack = take((want_t){.kind = RT_MSG_ACK, .ref = o2.ack_ref}, WAIT_MS);
    cr_assert_not_null(ack);
    cr_assert(ack->flags & RT_MF_ERROR);
    cr_assert_not_null(rt_msg_reason(ack));
    cr_assert_str_eq(rt_msg_reason(ack)->text, "already_registered");
    cr_assert_eq(ack->a, holder, "the ACK names the holder");
    rt_msg_free(ack);

    char down[160];
    want_down(o2.monitor_ref, down, sizeof down);
    cr_assert_str_eq(down, "already_registered");
    cr_assert_not(rt_is_alive(second));
    cr_assert(rt_is_alive(holder));
    cr_assert_eq(rt_whereis("the_one"), holder);
    cr_assert_eq(atomic_load(&n_terms), 0);
}

/* ---- Pids and generations ------------------------------------------------------ */

static atomic_int slot_hits; /* messages a successor received that were not for it */

static rt_reason_t *slotted_init(void *arg, void **state)
{
    *state = NULL;
    return NULL;
}

static void slotted_info(void *state, rt_msg_t *m)
{
    if (m->tag == T_PING) {
        result(T_PING, m->a, 0);
        return;
    }
    if (m->a != rt_self())
        atomic_fetch_add(&slot_hits, 1);
}

static const rt_behaviour_t slotted_beh =
    RT_BEHAVIOUR(.name = "slotted", .init = slotted_init, .handle_info = slotted_info,
                 .handle_cast = slotted_info);

#define SLOT(pid) ((uint32_t)((pid) & 0xffffffffu))
#define GEN(pid) ((uint32_t)((pid) >> 32))

/* From inside a process: spawn (and keep alive) until a child gets the
 * slot of pid `old`; result T_HEIR a = that child or 0, b = spawns. */
enum { T_HEIR = 0x150 };
static void fn_spawn_until_slot(puppet_t *p, uint64_t old)
{
    rt_pid_t heir = RT_NOPID;
    uint64_t n = 0;
    while (n < 20000 && heir == RT_NOPID) {
        rt_pid_t c = RT_NOPID;
        CHECK(rt_spawn(&slotted_beh, NULL, NULL, &c) == RT_OK);
        CHECK(c != old);
        n++;
        if ((uint32_t)c == (uint32_t)old)
            heir = c;
    }
    result(T_HEIR, heir, n);
}

/* One scheduler, and the new processes are spawned by a process: the slot
 * freed by the dead one is then certainly handed out again (slots freed
 * on a thread are reused first by that thread). */
Test(proc, a_dead_pid_never_reaches_the_next_process_in_its_slot, .init = setup_one_sched,
     .fini = teardown, .timeout = 60)
{
    rt_pid_t spawner = spawn_puppet(0, NULL);
    ping(spawner);
    rt_spawn_opts_t o = {.flags = RT_SPAWN_MONITOR};
    rt_pid_t old = RT_NOPID;
    cr_assert_eq(rt_inbox_spawn(ib, &slotted_beh, NULL, &o, &old), RT_OK);
    cr_assert_eq(rt_exit(old, RT_KILL), RT_OK);
    char why[64];
    want_down(o.monitor_ref, why, sizeof why);
    cr_assert_str_eq(why, "killed");

    run_in(spawner, fn_spawn_until_slot, old);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_HEIR, .by = spawner}, &r);
    rt_pid_t heir = (rt_pid_t)r.a;
    cr_assert_neq(heir, RT_NOPID, "the dead process's slot was never reused (%llu spawns)",
                  (unsigned long long)r.b);
    cr_assert_eq(SLOT(heir), SLOT(old));
    cr_assert_neq(GEN(heir), GEN(old));
    cr_assert_not(rt_is_alive(old));
    cr_assert(rt_is_alive(heir));

    rt_stats_t s0, s1;
    rt_get_stats(&s0);
    cr_assert_eq(rt_send(old, 1, old, 0), RT_ENOPROC);
    cr_assert_eq(rt_cast(old, 2, old, 0), RT_ENOPROC);
    rt_msg_t *m = rt_msg_new(3);
    cr_assert_not_null(m);
    m->a = old;
    rt_msg_set_data(m, &rcobj_new()->rc, RT_OWN_RC);
    cr_assert_eq(rt_send_msg(old, m), RT_ENOPROC);
    rt_get_stats(&s1);
    cr_assert_eq(s1.dropped - s0.dropped, 3, "every message to a dead pid is counted");
    cr_assert_eq(atomic_load(&n_dtor), 1, "a dropped message's payload is released");

    /* The heir handles a ping sent after those sends: had any of them
     * reached it, it would have counted it by then. */
    ping(heir);
    cr_assert_eq(atomic_load(&slot_hits), 0, "a message for the dead pid reached the heir");
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Dispatch -------------------------------------------------------------------- */

static void fn_cast_to(puppet_t *p, uint64_t target)
{
    CHECK(rt_cast((rt_pid_t)target, 0x55, 5, 6) == RT_OK);
    CHECK(rt_send((rt_pid_t)target, 0x56, 7, 8) == RT_OK);
}

Test(proc, cast_goes_to_handle_cast_and_send_to_handle_info, .init = setup,
     .fini = teardown, .timeout = 60)
{
    rt_pid_t p = spawn_puppet(0, NULL);
    rt_pid_t q = spawn_puppet(0, NULL);

    cr_assert_eq(rt_cast(p, 0x77, 1, 2), RT_OK);
    cr_assert_eq(rt_send(p, 0x78, 3, 4), RT_OK);
    report_t r;
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_CAST);
    cr_assert_eq(r.tag, 0x77);
    cr_assert_eq(r.a, 1);
    cr_assert_eq(r.b, 2);
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_INFO);
    cr_assert_eq(r.tag, 0x78);
    cr_assert_eq(r.a, 3);
    cr_assert_eq(r.b, 4);

    /* From a process, `from` is the sender. */
    run_in(q, fn_cast_to, p);
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_CAST);
    cr_assert_eq(r.tag, 0x55);
    cr_assert_eq(r.from, q);
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_INFO);
    cr_assert_eq(r.tag, 0x56);
    cr_assert_eq(r.a, 7);
    cr_assert_eq(r.b, 8);
    cr_assert_eq(r.from, q);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Message data ownership ------------------------------------------------------ */

enum { T_DATA = 0x200, T_TAKE_RC, T_TAKE_FREE, T_RELEASE };

static atomic_int data_seen;

static rt_reason_t *sink_init(void *arg, void **state)
{
    *state = calloc(1, sizeof(puppet_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static void sink_info(void *state, rt_msg_t *m)
{
    puppet_t *p = state;
    switch (m->tag) {
    case T_DATA:
        /* RT_OWN_FREE payloads carry their index in the first word. */
        if (m->own == RT_OWN_FREE)
            CHECK(m->data && *(uint64_t *)m->data == m->a);
        if (m->own == RT_OWN_RC)
            CHECK(m->data && RT_CONTAINER_OF(m->data, rcobj_t, rc)->magic == 0xABCD);
        atomic_fetch_add(&data_seen, 1);
        break;
    case T_TAKE_RC:
        CHECK(m->own == RT_OWN_RC);
        p->held = rt_msg_take(m);
        CHECK(p->held != NULL);
        result(T_TAKE_RC, (uint64_t)atomic_load(&n_dtor), 0);
        break;
    case T_TAKE_FREE:
        p->held = rt_msg_take(m);
        CHECK(p->held != NULL);
        result(T_TAKE_FREE, 0, 0);
        break;
    case T_RELEASE:
        if (m->a)
            rt_rc_release(p->held);
        else
            free(p->held); /* taken RT_OWN_FREE data: ours to free */
        p->held = NULL;
        result(T_RELEASE, (uint64_t)atomic_load(&n_dtor), 0);
        break;
    case T_PING:
        result(T_PING, m->a, 0);
        break;
    default:
        break;
    }
}

static void sink_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t sink_beh = RT_BEHAVIOUR(
    .name = "sink", .init = sink_init, .handle_info = sink_info, .terminate = sink_terminate);

static rt_pid_t spawn_sink(void)
{
    rt_pid_t pid = RT_NOPID;
    cr_assert_eq(rt_spawn(&sink_beh, NULL, NULL, &pid), RT_OK);
    return pid;
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

Test(proc, own_free_payloads_are_freed, .init = setup, .fini = teardown, .timeout = 60)
{
    enum { N = 200, SZ = 1 << 20 };
    rt_pid_t sink = spawn_sink();
    ping(sink);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    size_t before = heap_in_use();
#endif
    for (uint64_t i = 0; i < N; i++) {
        uint64_t *buf = malloc(SZ);
        cr_assert_not_null(buf);
        memset(buf, 0x5a, 4096);
        buf[0] = i;
        rt_msg_t *m = rt_msg_new(T_DATA);
        cr_assert_not_null(m);
        m->a = i;
        rt_msg_set_data(m, buf, RT_OWN_FREE);
        cr_assert_eq(m->own, RT_OWN_FREE);
        cr_assert_eq(m->data, buf);
        cr_assert_eq(rt_send_msg(sink, m), RT_OK);
    }
    /* Replaced, unsent and dropped payloads are freed too. */
    for (int i = 0; i < N; i++) {
        rt_msg_t *m = rt_msg_new(T_DATA);
        rt_msg_set_data(m, malloc(SZ), RT_OWN_FREE);
        rt_msg_set_data(m, malloc(SZ), RT_OWN_FREE);
        rt_msg_free(m);
    }
    ping(sink);
    cr_assert_eq(atomic_load(&data_seen), N);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* 600 MiB went through; far less than one tenth of it may remain. */
    size_t after = heap_in_use();
    cr_assert_lt(after, before + (size_t)40 * SZ, "RT_OWN_FREE payloads were not freed: %zu -> %zu",
                 before, after);
#endif
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, own_rc_payloads_are_released_once_each, .init = setup, .fini = teardown,
     .timeout = 60)
{
    enum { N = 100 };
    rt_pid_t sink = spawn_sink();
    for (uint64_t i = 0; i < N; i++) {
        rt_msg_t *m = rt_msg_new(T_DATA);
        cr_assert_not_null(m);
        m->a = i;
        rt_msg_set_data(m, &rcobj_new()->rc, RT_OWN_RC);
        cr_assert_eq(rt_send_msg(sink, m), RT_OK);
    }
    ping(sink);
    cr_assert_eq(atomic_load(&data_seen), N);
    cr_assert_eq(atomic_load(&n_dtor), N, "each handled message releases its payload once");

    /* One object shared by 10 messages (retained once per message): the
     * destructor runs once, when the last message is freed. */
    rcobj_t *shared = rcobj_new();
    for (int i = 0; i < 10; i++) {
        rt_rc_retain(&shared->rc);
        rt_msg_t *m = rt_msg_new(T_DATA);
        rt_msg_set_data(m, &shared->rc, RT_OWN_RC);
        cr_assert_eq(rt_send_msg(sink, m), RT_OK);
    }
    ping(sink);
    cr_assert_eq(atomic_load(&n_dtor), N, "released early while the test still holds a ref");
    rt_rc_release(&shared->rc);
    cr_assert_eq(atomic_load(&n_dtor), N + 1);

    /* An unsent message, a replaced payload. */
    rt_msg_t *m = rt_msg_new(T_DATA);
    rt_msg_set_data(m, &rcobj_new()->rc, RT_OWN_RC);
    cr_assert_eq(atomic_load(&n_dtor), N + 1);
    rt_msg_set_data(m, &rcobj_new()->rc, RT_OWN_RC);
    cr_assert_eq(atomic_load(&n_dtor), N + 2, "set_data frees the previous payload");
    rt_msg_free(m);
    cr_assert_eq(atomic_load(&n_dtor), N + 3);
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, msg_take_moves_the_payload_to_the_receiver, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t sink = spawn_sink();
    rt_msg_t *m = rt_msg_new(T_TAKE_RC);
    rt_msg_set_data(m, &rcobj_new()->rc, RT_OWN_RC);
    cr_assert_eq(rt_send_msg(sink, m), RT_OK);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_TAKE_RC}, &r);
    cr_assert_eq(r.a, 0);
    ping(sink); /* the TAKE message has been freed by now */
    cr_assert_eq(atomic_load(&n_dtor), 0, "a taken payload was released with its message");
    cr_assert_eq(rt_send(sink, T_RELEASE, 1, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_RELEASE}, &r);
    cr_assert_eq(r.a, 1);
    cr_assert_eq(atomic_load(&n_dtor), 1);

    /* RT_OWN_FREE data taken is freed by the taker only (ASan would see a
     * double free otherwise). */
    m = rt_msg_new(T_TAKE_FREE);
    rt_msg_set_data(m, malloc(64), RT_OWN_FREE);
    cr_assert_eq(rt_send_msg(sink, m), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_TAKE_FREE}, &r);
    cr_assert_eq(rt_send(sink, T_RELEASE, 0, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_RELEASE}, &r);

    /* Taken by the test from a received message. */
    m = rt_msg_new(7);
    rt_msg_set_data(m, &rcobj_new()->rc, RT_OWN_RC);
    cr_assert_eq(rt_send_msg(me, m), RT_OK);
    m = take((want_t){.tag = 7}, WAIT_MS);
    cr_assert_not_null(m);
    rt_rc_t *rc = rt_msg_take(m);
    cr_assert_not_null(rc);
    rt_msg_free(m);
    cr_assert_eq(atomic_load(&n_dtor), 1);
    rt_rc_release(rc);
    cr_assert_eq(atomic_load(&n_dtor), 2);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Fairness ------------------------------------------------------------------------ */

enum { T_SPIN = 0x300 };
#define FAIR_GOAL 1000
#define FAIR_GIVE_UP 2000000

static atomic_long spins[2];

static void spinner_info(void *state, rt_msg_t *m)
{
    int me_i = (int)m->a;
    long mine = atomic_fetch_add(&spins[me_i], 1) + 1;
    long other = atomic_load(&spins[1 - me_i]);
    if (mine >= FAIR_GOAL && other >= FAIR_GOAL) {
        result(T_SPIN, 1, (uint64_t)me_i);
        return;
    }
    if (mine >= FAIR_GIVE_UP) { /* the other never ran while we spun */
        result(T_SPIN, 0, (uint64_t)me_i);
        return;
    }
    CHECK(rt_send(rt_self(), T_SPIN, m->a, 0) == RT_OK);
}

static const rt_behaviour_t spinner_beh =
    RT_BEHAVIOUR(.name = "spinner", .init = slotted_init, .handle_info = spinner_info);

Test(proc, two_busy_processes_share_one_scheduler, .init = setup_one_sched, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t a, b;
    cr_assert_eq(rt_spawn(&spinner_beh, NULL, NULL, &a), RT_OK);
    cr_assert_eq(rt_spawn(&spinner_beh, NULL, NULL, &b), RT_OK);
    cr_assert_eq(rt_send(a, T_SPIN, 0, 0), RT_OK);
    cr_assert_eq(rt_send(b, T_SPIN, 1, 0), RT_OK);
    for (int i = 0; i < 2; i++) {
        report_t r;
        want_report((want_t){.kind = K_RESULT, .tag = T_SPIN}, &r);
        cr_assert_eq(r.a, 1, "process %llu spun %d times while the other starved",
                     (unsigned long long)r.b, FAIR_GIVE_UP);
    }
    cr_assert_geq(atomic_load(&spins[0]), FAIR_GOAL);
    cr_assert_geq(atomic_load(&spins[1]), FAIR_GOAL);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Exits from inside a process ------------------------------------------------------- */

static void exit_case(uint32_t tag, uint64_t a, char *why, size_t cap)
{
    int arg = 1;
    rt_spawn_opts_t o = {0};
    rt_pid_t pid = spawn_counted(&arg, RT_SPAWN_MONITOR, &o);
    cr_assert_eq(rt_send(pid, tag, a, 0), RT_OK);
    /* Must never be handled (the process may already be gone). */
    int rc = rt_send(pid, T_ECHO, 99, 0);
    cr_assert(rc == RT_OK || rc == RT_ENOPROC);
    want_down(o.monitor_ref, why, cap);
    cr_assert_not(rt_is_alive(pid));
    cr_assert_eq(atomic_load(&n_terms), 1, "terminate runs whatever the reason");
    cr_assert_eq(atomic_load(&n_live_states), 0, "terminate freed the state");
    cr_assert_str_eq(term_reason, why, "terminate saw the exit reason");
    /* Everything the process sent came before its DOWN. */
    cr_assert_eq(nstash, 0);
    cr_assert_eq(rt_inbox_pending(ib), 0, "a message after the stopping one was handled");
}

Test(proc, rt_stop_exits_after_the_callback_with_its_reason, .init = setup, .fini = teardown,
     .timeout = 60)
{
    char why[160];
    exit_case(T_STOP, 0, why, sizeof why);
    cr_assert_str_eq(why, "bye");
    cr_assert_eq(atomic_load(&n_after_stop), 1, "rt_stop returns; the callback finishes");
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, rt_stop_normal_is_a_normal_exit, .init = setup, .fini = teardown, .timeout = 60)
{
    char why[160];
    exit_case(T_STOP_NORMAL, 0, why, sizeof why);
    cr_assert_str_eq(why, "normal");
    cr_assert_eq(atomic_load(&term_code), RT_R_NORMAL);
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, rt_fail_unwinds_and_exits_with_its_reason, .init = setup, .fini = teardown,
     .timeout = 60)
{
    char why[160];
    exit_case(T_FAIL, 0, why, sizeof why);
    cr_assert_str_eq(why, "failed_here");
    cr_assert_eq(atomic_load(&term_code), RT_R_OTHER);
    cr_assert_eq(atomic_load(&n_after_fail), 0, "code after rt_fail ran");
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, rt_assert_fails_with_the_condition_text, .init = setup, .fini = teardown,
     .timeout = 60)
{
    char why[160];
    exit_case(T_ASSERT, 1, why, sizeof why);
    cr_assert(strncmp(why, "assertion failed: ", 18) == 0, "reason: %s", why);
    cr_assert_not_null(strstr(why, "m->a == 0"), "reason: %s", why);
    cr_assert_not_null(strstr(why, "test_rt_proc.c"), "reason: %s", why);
    cr_assert_eq(atomic_load(&n_after_fail), 0);
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, rt_assert_that_holds_does_nothing, .init = setup, .fini = teardown, .timeout = 60)
{
    int arg = 1;
    rt_pid_t pid = spawn_counted(&arg, 0, NULL);
    cr_assert_eq(rt_send(pid, T_ASSERT, 0, 0), RT_OK);
    cr_assert_eq(rt_send(pid, T_ECHO, 5, 0), RT_OK);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_ECHO, .by = pid}, &r);
    cr_assert_eq(r.b, 5);
    cr_assert_eq(atomic_load(&n_after_fail), 1);
    cr_assert(rt_is_alive(pid));
}

/* ---- Migrate ---------------------------------------------------------------------------- */

typedef struct counted_v2 {
    counted_t v1;
    uint32_t from_version;
} counted_v2_t;

static rt_reason_t *v2_migrate(void **state, uint32_t old_version)
{
    counted_v2_t *n = realloc(*state, sizeof *n);
    if (!n)
        return rt_reason_new("enomem");
    n->from_version = old_version;
    *state = n;
    return NULL;
}

static void v2_info(void *state, rt_msg_t *m)
{
    counted_v2_t *c = state;
    CHECK(c->v1.magic == 0xC0FFEE);
    if (m->tag == T_WHO)
        result(T_WHO, 2, c->v1.x | ((uint64_t)c->from_version << 32));
}

static const rt_behaviour_t counted_v2_beh =
    RT_BEHAVIOUR(.name = "counted_v2", .version = 2, .init = counted_init,
                 .handle_info = v2_info, .terminate = counted_terminate, .migrate = v2_migrate);

static rt_reason_t *bad_migrate(void **state, uint32_t old_version)
{
    return rt_reason_new("cannot_migrate");
}

static const rt_behaviour_t counted_bad_beh =
    RT_BEHAVIOUR(.name = "counted_bad", .version = 3, .init = counted_init,
                 .handle_info = v2_info, .terminate = counted_terminate, .migrate = bad_migrate);

Test(proc, migrate_switches_behaviour_and_converts_state, .init = setup, .fini = teardown,
     .timeout = 60)
{
    int arg = 1;
    rt_pid_t pid = spawn_counted(&arg, 0, NULL);
    cr_assert_eq(rt_send(pid, T_BUMP, 0, 0), RT_OK);
    cr_assert_eq(rt_send(pid, T_BUMP, 0, 0), RT_OK);
    cr_assert_eq(rt_send(pid, T_WHO, 0, 0), RT_OK);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_WHO, .by = pid}, &r);
    cr_assert_eq(r.a, 1);
    cr_assert_eq(r.b, 2);

    cr_assert_eq(rt_migrate(pid, &counted_v2_beh), RT_OK);
    cr_assert_eq(rt_send(pid, T_WHO, 0, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_WHO, .by = pid}, &r);
    cr_assert_eq(r.a, 2, "the new behaviour's handle_info runs");
    cr_assert_eq(r.b & 0xffffffffu, 2, "the state was kept");
    cr_assert_eq(r.b >> 32, 1, "migrate got the old version");

    rt_proc_info_t info;
    cr_assert_eq(rt_process_info(pid, &info), RT_OK);
    cr_assert_str_eq(info.behaviour, "counted_v2");
    cr_assert(rt_is_alive(pid));
    ASSERT_NO_BAD_CHECKS();
}

Test(proc, a_failing_migrate_kills_the_process_with_its_reason, .init = setup,
     .fini = teardown, .timeout = 60)
{
    int arg = 1;
    rt_spawn_opts_t o = {0};
    rt_pid_t pid = spawn_counted(&arg, RT_SPAWN_MONITOR, &o);
    cr_assert_eq(rt_migrate(pid, &counted_bad_beh), RT_OK);
    char why[160];
    want_down(o.monitor_ref, why, sizeof why);
    cr_assert_str_eq(why, "cannot_migrate");
    cr_assert_not(rt_is_alive(pid));
    cr_assert_eq(atomic_load(&n_terms), 1);
    cr_assert_eq(atomic_load(&n_live_states), 0, "the state was freed");
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Introspection --------------------------------------------------------------------- */

/* A server that holds calls until told to answer. */
static rt_reason_t *holder_init(void *arg, void **state)
{
    *state = calloc(1, sizeof(rt_from_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static int holder_call(void *state, rt_msg_t *req, rt_from_t from)
{
    *(rt_from_t *)state = from;
    result(0x401, 0, 0);
    return RT_NOREPLY;
}

static void holder_info(void *state, rt_msg_t *m)
{
    CHECK(rt_reply_val(*(rt_from_t *)state, 0x402, 0, 0) == RT_OK);
}

static void holder_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t holder_beh =
    RT_BEHAVIOUR(.name = "holder", .init = holder_init, .handle_call = holder_call,
                 .handle_info = holder_info, .terminate = holder_terminate);

static void fn_block_on_call(puppet_t *p, uint64_t server)
{
    uint64_t ref = 0;
    CHECK(rt_call((rt_pid_t)server, rt_msg_new(0x400), RT_INFINITY, &ref) == RT_OK);
    p->v[0] = ref;
    rt_await(ref);
    result(T_BLOCK, ref, 0);
}

Test(proc, process_info_shows_what_a_process_is_doing, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t server;
    cr_assert_eq(rt_spawn(&holder_beh, NULL, NULL, &server), RT_OK);
    rt_spawn_opts_t o = {.flags = RT_SPAWN_TRAP_EXIT, .parent = server, .name = "intro_p",
                         .restarts = 3};
    rt_pid_t pid;
    cr_assert_eq(rt_spawn(&puppet_beh, NULL, &o, &pid), RT_OK);

    ping(pid);
    rt_proc_info_t info;
    cr_assert_eq(rt_process_info(pid, &info), RT_OK);
    cr_assert_eq(info.pid, pid);
    cr_assert_eq(info.parent, server);
    cr_assert_str_eq(info.behaviour, "puppet");
    cr_assert_str_eq(info.name, "intro_p");
    cr_assert_eq(info.restarts, 3);
    cr_assert(info.trap_exit);
    cr_assert_gt(info.memory, 0);
    cr_assert_eq(info.mailbox_len, 0);
    uint64_t h0 = info.handled;

    /* Blocked in rt_await: five messages wait in the mailbox. */
    run_in(pid, fn_block_on_call, server);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = 0x401}, &r); /* the server holds the call */
    want_report((want_t){.kind = K_RESULT, .tag = T_BLOCK}, &r);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rt_send(pid, T_NOP, (uint64_t)i, 0), RT_OK);
    cr_assert_eq(rt_process_info(pid, &info), RT_OK);
    cr_assert_eq(info.mailbox_len, 5, "mailbox_len while blocked: %u", info.mailbox_len);

    cr_assert_eq(rt_send(server, 0x403, 0, 0), RT_OK); /* answer */
    want_report((want_t){.kind = RT_MSG_REPLY, .by = pid}, &r);
    for (int i = 0; i < 5; i++) {
        want_report((want_t){.by = pid}, &r);
        cr_assert_eq(r.tag, T_NOP);
        cr_assert_eq(r.a, (uint64_t)i);
    }
    ping(pid);
    cr_assert_eq(rt_process_info(pid, &info), RT_OK);
    cr_assert_eq(info.mailbox_len, 0);
    /* Handled since h0: ping, T_RUN, the reply, 5 T_NOP (+ the last ping
     * depending on when the counter moves). */
    uint64_t d = info.handled - h0;
    cr_assert(d >= 7 && d <= 9, "handled moved by %llu", (unsigned long long)d);

    /* The memory callback's bytes are included. */
    int arg = 1;
    rt_pid_t c = spawn_counted(&arg, 0, NULL);
    ping(pid); /* settle */
    cr_assert_eq(rt_send(c, T_ECHO, 0, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_ECHO}, &r);
    cr_assert_eq(rt_process_info(c, &info), RT_OK);
    cr_assert_geq(info.memory, 4096);
    cr_assert_str_eq(info.behaviour, "counted");
    cr_assert_str_eq(info.name, "");
    cr_assert_not(info.trap_exit);

    cr_assert_eq(rt_exit(c, RT_KILL), RT_OK);
    uint64_t mref = rt_inbox_monitor(ib, c);
    char why[64];
    want_down(mref, why, sizeof why);
    cr_assert_eq(rt_process_info(c, &info), RT_ENOPROC);
    ASSERT_NO_BAD_CHECKS();
}

static bool listed(const rt_proc_info_t *v, size_t n, rt_pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].pid == pid)
            return true;
    return false;
}

Test(proc, rt_processes_lists_live_processes, .init = setup, .fini = teardown, .timeout = 60)
{
    enum { CAP = 4096 };
    static rt_proc_info_t v[CAP];
    rt_pid_t p[3];
    uint64_t mref[3];
    for (int i = 0; i < 3; i++) {
        p[i] = spawn_puppet(0, &mref[i]);
        ping(p[i]);
    }
    size_t n = 0;
    cr_assert_eq(rt_processes(v, CAP, &n), RT_OK);
    cr_assert_geq(n, 4); /* the inbox and three puppets */
    cr_assert_leq(n, CAP);
    for (int i = 0; i < 3; i++) {
        cr_assert(listed(v, n, p[i]));
        for (size_t j = 0; j < n; j++)
            if (v[j].pid == p[i])
                cr_assert_str_eq(v[j].behaviour, "puppet");
    }
    cr_assert(listed(v, n, me));

    size_t n1 = 0;
    memset(v, 0, sizeof v);
    cr_assert_eq(rt_processes(v, 1, &n1), RT_OK);
    cr_assert_eq(n1, n, "*n counts every live process, not just those that fit");
    cr_assert_neq(v[0].pid, RT_NOPID);
    cr_assert_eq(v[1].pid, RT_NOPID, "wrote past cap");

    cr_assert_eq(rt_exit(p[1], RT_KILL), RT_OK);
    char why[64];
    want_down(mref[1], why, sizeof why);
    size_t n2 = 0;
    cr_assert_eq(rt_processes(v, CAP, &n2), RT_OK);
    cr_assert_eq(n2, n - 1);
    cr_assert_not(listed(v, n2, p[1]));
    cr_assert(listed(v, n2, p[0]));
    cr_assert(listed(v, n2, p[2]));
}

Test(proc, stats_counters_move_as_expected, .init = setup, .fini = teardown, .timeout = 60)
{
    enum { N = 5, M = 10 };
    /* Settle: the inbox's own start-up is over once a round trip is. */
    rt_pid_t warm = spawn_sink();
    ping(warm);

    rt_stats_t s0, s1, s2;
    rt_get_stats(&s0);
    cr_assert_geq(s0.processes, 2);
    rt_pid_t p[N];
    uint64_t mref[N];
    for (int i = 0; i < N; i++)
        p[i] = spawn_puppet(0, &mref[i]);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < M; j++)
            cr_assert_eq(rt_send(p[i], 0x600, 0, 0), RT_OK);
        ping(p[i]);
    }
    rt_get_stats(&s1);
    cr_assert_eq(s1.spawned - s0.spawned, N);
    cr_assert_eq(s1.processes - s0.processes, N);
    cr_assert_eq(s1.exited, s0.exited);
    cr_assert_geq(s1.messages - s0.messages, (uint64_t)N * (2 * M + 2),
                  "sends, reports and pings are all messages");
    cr_assert_eq(s1.dropped, s0.dropped);

    rt_reason_t *bye = rt_reason_new("bye");
    for (int i = 0; i < N; i++)
        cr_assert_eq(rt_exit(p[i], bye), RT_OK);
    rt_reason_release(bye);
    for (int i = 0; i < N; i++) {
        char why[64];
        want_down(mref[i], why, sizeof why);
        cr_assert_str_eq(why, "bye");
    }
    /* Drain what the puppets reported. */
    stash_clear();
    rt_msg_t *m;
    while ((m = rt_inbox_recv(ib, 0)))
        rt_msg_free(m);

    cr_assert_eq(rt_send(p[0], 1, 0, 0), RT_ENOPROC);
    rt_get_stats(&s2);
    cr_assert_eq(s2.exited - s0.exited, N);
    cr_assert_eq(s2.processes, s0.processes);
    cr_assert_eq(s2.dropped - s0.dropped, 1);
    cr_assert_eq(s2.msgs_live, s0.msgs_live, "messages leaked: %lld -> %lld",
                 (long long)s0.msgs_live, (long long)s2.msgs_live);
    cr_assert_eq(s2.restarts, s0.restarts);
}

/* ---- Runtime lifecycle ------------------------------------------------------------------ */

static void fn_await_forever(puppet_t *p, uint64_t arg)
{
    rt_await(rt_make_ref());
    result(T_BLOCK, 0, 0);
}

Test(proc, runtime_stop_terminates_live_processes_and_frees_every_message, .timeout = 60)
{
    enum { N = 20 };
    start_with(NULL);
    cr_assert_eq(rt_runtime_start(NULL), RT_ESTATE, "started twice");

    int arg = 1;
    rt_pid_t p[N];
    for (int i = 0; i < N; i++) {
        rt_spawn_opts_t o = {0};
        p[i] = spawn_counted(&arg, RT_SPAWN_ACK, &o);
        rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK, .ref = o.ack_ref}, WAIT_MS);
        cr_assert_not_null(ack);
        rt_msg_free(ack);
        /* Pending timers and queued messages with payloads. */
        rt_msg_t *t = rt_msg_new(T_NOP);
        rt_msg_set_data(t, &rcobj_new()->rc, RT_OWN_RC);
        cr_assert_neq(rt_send_after(60000, p[i], t), 0);
    }
    /* Puppets blocked in rt_await with messages queued behind. */
    for (int i = 0; i < 5; i++) {
        rt_pid_t q = spawn_puppet(0, NULL);
        run_in(q, fn_await_forever, 0);
        for (int j = 0; j < 10; j++) {
            rt_msg_t *m = rt_msg_new(T_NOP);
            rt_msg_set_data(m, &rcobj_new()->rc, RT_OWN_RC);
            cr_assert_eq(rt_send_msg(q, m), RT_OK);
        }
    }
    /* Messages left in the inbox. */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rt_send(me, 0x700, 0, 0), RT_OK);
    rt_inbox_close(ib);
    ib = NULL;

    rt_runtime_stop();
    cr_assert_eq(atomic_load(&n_terms), N, "terminate ran for %d of %d live processes",
                 atomic_load(&n_terms), N);
    cr_assert_eq(atomic_load(&n_live_states), 0);
    cr_assert_eq(atomic_load(&n_dtor), N + 50, "queued and timer payloads were released");
    rt_stats_t s;
    rt_get_stats(&s);
    cr_assert_eq(s.msgs_live, 0, "msgs_live after stop: %lld", (long long)s.msgs_live);

    /* And it starts again. */
    start_with(NULL);
    rt_pid_t q = spawn_puppet(0, NULL);
    ping(q);
    teardown();
    ASSERT_NO_BAD_CHECKS();
}
