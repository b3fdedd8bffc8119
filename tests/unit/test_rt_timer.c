/*
 * test_rt_timer.c — timers (rt.h: rt_send_after, rt_send_after_ref,
 * rt_cancel_timer): delay, kind and ref, cancellation before and after
 * firing, deadline order (equal deadlines in creation order), and a
 * process's timers dying with it.
 *
 * The test thread acts as a process through an inbox. Callbacks record
 * failures with CHECK(), never with Criterion's assertions. Waits are
 * receives with a timeout; "nothing else arrived" is shown by a later
 * sentinel timer arriving first.
 */
#include "rt_harness.h"

/* ---- Helpers ---------------------------------------------------------------------------- */

enum { T_A = 0x100, T_TICK, T_ARMED, T_ORDER };

/* Any thread: a message carrying a counted payload (n_dtor), or NULL. */
static rt_msg_t *counted_msg(uint32_t tag)
{
    rcobj_t *o = rcobj_try_new();
    if (!o)
        return NULL;
    rt_msg_t *m = rt_msg_new(tag);
    if (!m) {
        rt_rc_release(&o->rc);
        return NULL;
    }
    rt_msg_set_data(m, &o->rc, RT_OWN_RC);
    return m;
}

static uint64_t timer_to_me(int ms, uint32_t tag, uint64_t a)
{
    rt_msg_t *m = rt_msg_new(tag);
    cr_assert_not_null(m);
    m->a = a;
    uint64_t ref = rt_send_after(ms, me, m);
    cr_assert_neq(ref, 0);
    return ref;
}

/* ---- Delivery ------------------------------------------------------------------------------ */

Test(timer, send_after_delivers_after_the_delay_as_a_timer_message, .init = setup,
     .fini = teardown, .timeout = 60)
{
    uint64_t t0 = rt_now_ms();
    uint64_t ref = timer_to_me(100, T_A, 5);
    rt_msg_t *m = take((want_t){.kind = RT_MSG_TIMER, .ref = ref}, WAIT_MS);
    uint64_t dt = rt_now_ms() - t0;
    cr_assert_not_null(m, "the timer never fired");
    cr_assert_geq(dt, 100, "fired after %llu ms", (unsigned long long)dt);
    cr_assert_lt(dt, 2000);
    cr_assert_eq(m->kind, RT_MSG_TIMER);
    cr_assert_eq(m->ref, ref);
    cr_assert_eq(m->tag, T_A);
    cr_assert_eq(m->a, 5);
    rt_msg_free(m);

    /* To a process: handle_info sees the same. */
    rt_pid_t p = spawn_puppet(0, NULL);
    rt_msg_t *pm = counted_msg(T_A);
    pm->b = 9;
    t0 = rt_now_ms();
    uint64_t pref = rt_send_after(50, p, pm);
    cr_assert_neq(pref, 0);
    cr_assert_neq(pref, ref);
    report_t r;
    want_report((want_t){.by = p}, &r);
    cr_assert_eq(r.kind, RT_MSG_TIMER);
    cr_assert_eq(r.ref, pref);
    cr_assert_eq(r.tag, T_A);
    cr_assert_eq(r.b, 9);
    cr_assert_geq(r.t_ms - t0, 50);
    ping(p);
    cr_assert_eq(atomic_load(&n_dtor), 1, "the timer message's payload was released");
    ASSERT_NO_BAD_CHECKS();
}

Test(timer, a_zero_delay_fires_at_once, .init = setup, .fini = teardown, .timeout = 60)
{
    uint64_t t0 = rt_now_ms();
    uint64_t ref = timer_to_me(0, T_A, 0);
    rt_msg_t *m = take((want_t){.kind = RT_MSG_TIMER, .ref = ref}, WAIT_MS);
    cr_assert_not_null(m);
    cr_assert_lt(rt_now_ms() - t0, 500);
    rt_msg_free(m);
}

Test(timer, cancel_before_firing_stops_the_message, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_msg_t *m = counted_msg(T_A);
    uint64_t t1 = rt_send_after(200, me, m);
    cr_assert_neq(t1, 0);
    uint64_t t2 = timer_to_me(400, T_SENTINEL, 0);
    cr_assert_eq(rt_cancel_timer(t1), RT_OK);
    cr_assert_eq(rt_cancel_timer(t1), RT_ENOTFOUND, "cancelled twice");

    rt_msg_t *first = next_msg(WAIT_MS);
    cr_assert_not_null(first);
    cr_assert_eq(first->ref, t2, "got tag %#x before the sentinel", first->tag);
    cr_assert_eq(first->tag, T_SENTINEL);
    rt_msg_free(first);
    cr_assert_eq(rt_inbox_pending(ib), 0);
    cr_assert_eq(atomic_load(&n_dtor), 1, "the cancelled message was freed");
    ASSERT_NO_BAD_CHECKS();
}

Test(timer, cancel_after_firing_is_enotfound, .init = setup, .fini = teardown, .timeout = 60)
{
    uint64_t t = timer_to_me(10, T_A, 0);
    rt_msg_t *m = take((want_t){.kind = RT_MSG_TIMER, .ref = t}, WAIT_MS);
    cr_assert_not_null(m);
    rt_msg_free(m);
    cr_assert_eq(rt_cancel_timer(t), RT_ENOTFOUND);
    cr_assert_eq(rt_cancel_timer(rt_make_ref()), RT_ENOTFOUND);
    cr_assert_eq(rt_cancel_timer(0), RT_ENOTFOUND);
}

Test(timer, timers_fire_in_deadline_order, .init = setup, .fini = teardown, .timeout = 60)
{
    static const int delays[] = {250, 50, 200, 0, 100, 300, 150, 10};
    enum { N = sizeof delays / sizeof delays[0] };
    for (int i = 0; i < N; i++)
        timer_to_me(delays[i], T_ORDER, (uint64_t)delays[i]);
    int last = -1;
    for (int i = 0; i < N; i++) {
        rt_msg_t *m = next_msg(WAIT_MS);
        cr_assert_not_null(m, "only %d of %d timers fired", i, N);
        cr_assert_eq(m->kind, RT_MSG_TIMER);
        cr_assert_gt((int)m->a, last, "%llu ms fired after %d ms", (unsigned long long)m->a, last);
        last = (int)m->a;
        rt_msg_free(m);
    }
}

Test(timer, equal_deadlines_fire_in_creation_order, .init = setup, .fini = teardown,
     .timeout = 60)
{
    enum { N = 200 };
    /* Created within a millisecond or two: most share their deadline. */
    for (uint64_t i = 0; i < N; i++)
        timer_to_me(100, T_ORDER, i);
    for (uint64_t i = 0; i < N; i++) {
        rt_msg_t *m = next_msg(WAIT_MS);
        cr_assert_not_null(m);
        cr_assert_eq(m->a, i, "timer %llu fired in place %llu", (unsigned long long)m->a,
                     (unsigned long long)i);
        rt_msg_free(m);
    }
}

Test(timer, send_after_ref_carries_the_given_ref, .init = setup, .fini = teardown,
     .timeout = 60)
{
    uint64_t ref = rt_make_ref();
    rt_msg_t *m = rt_msg_new(T_A);
    uint64_t h = rt_send_after_ref(30, me, m, ref);
    cr_assert_neq(h, 0);
    rt_msg_t *got = take((want_t){.kind = RT_MSG_TIMER, .ref = ref}, WAIT_MS);
    cr_assert_not_null(got, "no timer message with the given ref");
    cr_assert_eq(got->tag, T_A);
    rt_msg_free(got);
    cr_assert_eq(rt_cancel_timer(h), RT_ENOTFOUND);

    /* The handle, not the carried ref, cancels it. */
    uint64_t ref2 = rt_make_ref();
    uint64_t h2 = rt_send_after_ref(200, me, counted_msg(T_A), ref2);
    cr_assert_neq(h2, 0);
    cr_assert_eq(rt_cancel_timer(h2), RT_OK);
    timer_to_me(300, T_SENTINEL, 0);
    rt_msg_t *first = next_msg(WAIT_MS);
    cr_assert_not_null(first);
    cr_assert_eq(first->tag, T_SENTINEL, "a cancelled timer fired");
    rt_msg_free(first);
    cr_assert_eq(atomic_load(&n_dtor), 1);
    ASSERT_NO_BAD_CHECKS();
}

Test(timer, send_after_to_a_dead_pid_returns_0_and_frees_the_message, .init = setup,
     .fini = teardown, .timeout = 60)
{
    uint64_t mref;
    rt_pid_t p = spawn_puppet(0, &mref);
    cr_assert_eq(rt_exit(p, RT_KILL), RT_OK);
    char why[64];
    want_down(mref, why, sizeof why);
    cr_assert_eq(rt_send_after(10, p, counted_msg(T_A)), 0);
    cr_assert_eq(atomic_load(&n_dtor), 1);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- A process's timers die with it ---------------------------------------------------------- */

static atomic_int n_ticks;

static rt_reason_t *ticker_init(void *arg, void **state)
{
    *state = NULL;
    for (int i = 0; i < 3; i++)
        if (!rt_send_after(300, rt_self(), counted_msg(T_TICK)))
            return rt_reason_new("no timer");
    return NULL;
}

static void ticker_info(void *state, rt_msg_t *m)
{
    if (m->tag == T_TICK)
        atomic_fetch_add(&n_ticks, 1);
    else if (m->tag == T_A)
        result(T_ARMED, 0, 0);
}

static const rt_behaviour_t ticker_beh =
    RT_BEHAVIOUR(.name = "ticker", .init = ticker_init, .handle_info = ticker_info);

Test(timer, a_process_timers_die_with_it, .init = setup, .fini = teardown, .timeout = 60)
{
    /* Settle the inbox's own start-up before measuring. */
    rt_pid_t warm = spawn_puppet(0, NULL);
    ping(warm);
    rt_stats_t s0, s1;
    rt_get_stats(&s0);

    rt_spawn_opts_t o = {.flags = RT_SPAWN_ACK | RT_SPAWN_MONITOR};
    rt_pid_t t = RT_NOPID;
    cr_assert_eq(rt_inbox_spawn(ib, &ticker_beh, NULL, &o, &t), RT_OK);
    rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK, .ref = o.ack_ref}, WAIT_MS);
    cr_assert_not_null(ack);
    cr_assert_eq(ack->flags & RT_MF_ERROR, 0);
    rt_msg_free(ack);
    /* Two more aimed at it from outside. */
    cr_assert_neq(rt_send_after(300, t, counted_msg(T_TICK)), 0);
    cr_assert_neq(rt_send_after(300, t, counted_msg(T_TICK)), 0);
    cr_assert_eq(rt_send(t, T_A, 0, 0), RT_OK);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_ARMED, .by = t}, &r);

    cr_assert_eq(rt_exit(t, RT_KILL), RT_OK);
    char why[64];
    want_down(o.monitor_ref, why, sizeof why);
    cr_assert_str_eq(why, "killed");

    /* Past every deadline. */
    uint64_t s = timer_to_me(500, T_SENTINEL, 0);
    rt_msg_t *m = take((want_t){.kind = RT_MSG_TIMER, .ref = s}, WAIT_MS);
    cr_assert_not_null(m);
    rt_msg_free(m);
    cr_assert_eq(nstash, 0);
    cr_assert_eq(rt_inbox_pending(ib), 0);

    rt_get_stats(&s1);
    cr_assert_eq(atomic_load(&n_ticks), 0);
    cr_assert_eq(atomic_load(&n_dtor), 5, "the cancelled timers' messages were freed");
    cr_assert_eq(s1.dropped, s0.dropped, "a timer fired at the dead process (%llu dropped)",
                 (unsigned long long)(s1.dropped - s0.dropped));
    cr_assert_eq(s1.msgs_live, s0.msgs_live, "msgs_live %lld -> %lld", (long long)s0.msgs_live,
                 (long long)s1.msgs_live);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Many timers ------------------------------------------------------------------------------ */

static atomic_int n_fired, n_early;

static void counter_info(void *state, rt_msg_t *m)
{
    if (m->kind == RT_MSG_INFO && m->tag == T_PING)
        result(T_PING, m->a, 0);
    if (m->kind != RT_MSG_TIMER)
        return;
    if (rt_now_ms() < m->a) /* a = earliest allowed time */
        atomic_fetch_add(&n_early, 1);
    if (atomic_fetch_add(&n_fired, 1) + 1 == (int)m->b)
        result(T_SENTINEL, 0, 0);
}

static rt_reason_t *plain_init(void *arg, void **state)
{
    *state = NULL;
    return NULL;
}

static const rt_behaviour_t counter2_beh =
    RT_BEHAVIOUR(.name = "counter", .init = plain_init, .handle_info = counter_info);

Test(timer, ten_thousand_timers_each_fire_once_and_never_early, .init = setup,
     .fini = teardown, .timeout = 60)
{
    enum { N = 10000 };
    rt_pid_t p = RT_NOPID;
    cr_assert_eq(rt_spawn(&counter2_beh, NULL, NULL, &p), RT_OK);
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        int ms = (int)(rand_r(&seed) % 200);
        rt_msg_t *m = rt_msg_new(T_A);
        cr_assert_not_null(m);
        m->a = rt_now_ms() + (uint64_t)ms;
        m->b = N;
        cr_assert_neq(rt_send_after(ms, p, m), 0);
    }
    rt_msg_t *done = take((want_t){.rep = true, .kind = K_RESULT, .tag = T_SENTINEL, .by = p},
                          WAIT_MS);
    cr_assert_not_null(done, "%d of %d timers fired", atomic_load(&n_fired), N);
    rt_msg_free(done);
    /* A duplicate would have fired by the time a later timer has; then
     * the ping goes behind it in p's mailbox. */
    uint64_t s = timer_to_me(250, T_SENTINEL, 0);
    rt_msg_t *m = take((want_t){.kind = RT_MSG_TIMER, .ref = s}, WAIT_MS);
    cr_assert_not_null(m);
    rt_msg_free(m);
    ping(p);
    cr_assert_eq(atomic_load(&n_fired), N);
    cr_assert_eq(atomic_load(&n_early), 0, "%d timers fired before their delay",
                 atomic_load(&n_early));
    ASSERT_NO_BAD_CHECKS();
}
