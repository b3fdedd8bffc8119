/*
 * test_rt_registry.c — the name registry and pub/sub (rt.h): register,
 * whereis, unregister, taken names, names and subscriptions released when
 * their process dies; publish to every live subscriber exactly once with
 * one shared, refcounted payload.
 *
 * The test thread acts as a process through an inbox; "puppets" run the
 * functions the test sends them and report every other message. Callbacks
 * record failures with CHECK(), never with Criterion's assertions.
 */
#include "rt_harness.h"

/* ---- Helpers ------------------------------------------------------------------------------ */

enum {
    T_REG = 0x100, /* result: a = rt_register's return, b = holder */
    T_UNREG,       /* result: a = rt_unregister's return */
    T_SUB,         /* result: a = rt_subscribe's return */
    T_UNSUB,
    T_PUB,
    T_RELEASE,
    T_ALL,
    T_DTOR,
    T_WAKE, /* the awaited timer */
};

static const char *names[] = {"alpha", "beta", "gamma", "delta", "svc.one", "room:42"};

static void fn_register(puppet_t *p, uint64_t i)
{
    rt_pid_t holder = RT_NOPID;
    int rc = rt_register(names[i], &holder);
    result(T_REG, (uint64_t)(int64_t)rc, holder);
}

static void fn_register_null_holder(puppet_t *p, uint64_t i)
{
    result(T_REG, (uint64_t)(int64_t)rt_register(names[i], NULL), 0);
}

static void fn_unregister(puppet_t *p, uint64_t i)
{
    result(T_UNREG, (uint64_t)(int64_t)rt_unregister(names[i]), 0);
}

static int do_reg(rt_pid_t pid, pfn_t fn, uint64_t i, rt_pid_t *holder)
{
    report_t r;
    run_in(pid, fn, i);
    want_report((want_t){.kind = K_RESULT, .tag = fn == fn_unregister ? T_UNREG : T_REG, .by = pid},
                &r);
    if (holder)
        *holder = (rt_pid_t)r.b;
    return (int)(int64_t)r.a;
}

static void fn_fail_now(puppet_t *p, uint64_t arg) { rt_fail(rt_reason_new("boom")); }

/* Nothing was queued for pid before a sentinel timer it sets itself. */
static void expect_nothing_from(rt_pid_t pid) { expect_sentinel_next(pid, 20); }

/* Awaits a timer of `ms`; result T_ALL a = its ref. */
static void fn_await_timer(puppet_t *p, uint64_t ms)
{
    uint64_t ref = rt_send_after((int)ms, rt_self(), rt_msg_new(T_WAKE));
    CHECK(ref != 0);
    rt_await(ref);
    result(T_ALL, ref, 0);
}

/* ---- Registry ----------------------------------------------------------------------------- */

Test(registry, register_whereis_unregister, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t p = spawn_puppet(0, NULL);
    cr_assert_eq(rt_whereis("alpha"), RT_NOPID);
    cr_assert_eq(do_reg(p, fn_register, 0, NULL), RT_OK);
    cr_assert_eq(rt_whereis("alpha"), p);
    cr_assert_eq(do_reg(p, fn_register, 4, NULL), RT_OK); /* a second name */
    cr_assert_eq(rt_whereis("svc.one"), p);
    rt_proc_info_t info;
    cr_assert_eq(rt_process_info(p, &info), RT_OK);
    cr_assert_str_eq(info.name, "alpha", "the first registered name");

    cr_assert_eq(do_reg(p, fn_unregister, 0, NULL), RT_OK);
    cr_assert_eq(rt_whereis("alpha"), RT_NOPID);
    cr_assert_eq(rt_whereis("svc.one"), p, "unregister removed the other name too");
    cr_assert_eq(do_reg(p, fn_unregister, 0, NULL), RT_ENOTFOUND);
    cr_assert_eq(rt_whereis("beta"), RT_NOPID);
    ASSERT_NO_BAD_CHECKS();
}

Test(registry, rt_register_outside_a_process_is_econtext, .init = setup, .fini = teardown,
     .timeout = 60)
{
    cr_assert_eq(rt_register("outside", NULL), RT_ECONTEXT);
    cr_assert_eq(rt_whereis("outside"), RT_NOPID);
}

Test(registry, a_taken_name_fails_with_the_holder, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t p = spawn_puppet(0, NULL);
    rt_pid_t q = spawn_puppet(0, NULL);
    cr_assert_eq(do_reg(p, fn_register, 1, NULL), RT_OK);
    rt_pid_t holder = RT_NOPID;
    cr_assert_eq(do_reg(q, fn_register, 1, &holder), RT_ETAKEN);
    cr_assert_eq(holder, p);
    cr_assert_eq(do_reg(q, fn_register_null_holder, 1, NULL), RT_ETAKEN);
    cr_assert_eq(rt_whereis("beta"), p);
    /* Someone else's name cannot be unregistered. */
    cr_assert_neq(do_reg(q, fn_unregister, 1, NULL), RT_OK);
    cr_assert_eq(rt_whereis("beta"), p);
    ASSERT_NO_BAD_CHECKS();
}

Test(registry, a_name_vanishes_with_its_process_and_can_be_retaken, .init = setup,
     .fini = teardown, .timeout = 60)
{
    uint64_t mref;
    rt_pid_t p = spawn_puppet(0, &mref);
    cr_assert_eq(do_reg(p, fn_register, 2, NULL), RT_OK);
    cr_assert_eq(do_reg(p, fn_register, 5, NULL), RT_OK);
    cr_assert_eq(rt_whereis("gamma"), p);
    kill_and_wait(p, mref);
    cr_assert_eq(rt_whereis("gamma"), RT_NOPID, "the name outlived its process");
    cr_assert_eq(rt_whereis("room:42"), RT_NOPID);

    rt_pid_t q = spawn_puppet(0, NULL);
    cr_assert_eq(do_reg(q, fn_register, 2, NULL), RT_OK);
    cr_assert_eq(rt_whereis("gamma"), q);
    ASSERT_NO_BAD_CHECKS();
}

Test(registry, names_set_at_spawn_vanish_with_the_process, .init = setup, .fini = teardown,
     .timeout = 60)
{
    for (int i = 0; i < 100; i++) {
        rt_spawn_opts_t o = {.flags = RT_SPAWN_MONITOR | RT_SPAWN_ACK, .name = "delta"};
        rt_pid_t p = RT_NOPID;
        cr_assert_eq(rt_inbox_spawn(ib, &puppet_beh, NULL, &o, &p), RT_OK);
        rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK, .ref = o.ack_ref}, WAIT_MS);
        cr_assert_not_null(ack);
        cr_assert_eq(ack->flags & RT_MF_ERROR, 0, "round %d: the name was still taken", i);
        rt_msg_free(ack);
        cr_assert_eq(rt_whereis("delta"), p);
        if (i % 2)
            kill_and_wait(p, o.monitor_ref);
        else {
            run_in(p, fn_fail_now, 0);
            char why[200];
            want_down(o.monitor_ref, why, sizeof why);
        }
        cr_assert_eq(rt_whereis("delta"), RT_NOPID);
    }
}

/* ---- Pub/sub ------------------------------------------------------------------------------ */

typedef struct payload {
    rt_rc_t rc;
    uint64_t magic;
} payload_t;

static rt_pid_t dtor_notify = RT_NOPID;

/* Counts itself in n_dtor (rt_harness.h) and tells dtor_notify. */

static void payload_dtor(rt_rc_t *rc)
{
    payload_t *o = RT_CONTAINER_OF(rc, payload_t, rc);
    CHECK(o->magic == 0xFA17);
    o->magic = 0;
    free(o);
    atomic_fetch_add(&n_dtor, 1);
    if (dtor_notify)
        rt_send(dtor_notify, T_DTOR, 0, 0);
}

static payload_t *payload_new(void)
{
    payload_t *o = calloc(1, sizeof *o);
    cr_assert_not_null(o);
    rt_rc_init(&o->rc, payload_dtor);
    o->magic = 0xFA17;
    return o;
}

static const char *topics[] = {"news", "room:1", "other"};

static void fn_subscribe(puppet_t *p, uint64_t i)
{
    result(T_SUB, (uint64_t)(int64_t)rt_subscribe(topics[i]), 0);
}

static void fn_unsubscribe(puppet_t *p, uint64_t i)
{
    result(T_UNSUB, (uint64_t)(int64_t)rt_unsubscribe(topics[i]), 0);
}

static void subscribe(rt_pid_t pid, uint64_t topic)
{
    report_t r;
    run_in(pid, fn_subscribe, topic);
    want_report((want_t){.kind = K_RESULT, .tag = T_SUB, .by = pid}, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
}

Test(pubsub, a_publish_reaches_every_subscriber_exactly_once, .init = setup,
     .fini = teardown, .timeout = 60)
{
    enum { N = 5 };
    rt_pid_t s[N];
    for (int i = 0; i < N; i++) {
        s[i] = spawn_puppet(0, NULL);
        subscribe(s[i], 0);
    }
    subscribe(s[0], 0); /* twice = once */
    rt_pid_t other = spawn_puppet(0, NULL);
    subscribe(other, 2);
    cr_assert_eq(rt_subscriber_count("news"), N);
    cr_assert_eq(rt_subscriber_count("other"), 1);
    cr_assert_eq(rt_subscriber_count("nobody"), 0);

    payload_t *pl = payload_new();
    cr_assert_eq(rt_publish("news", T_PUB, &pl->rc), N);
    cr_assert_eq(rt_publish("news", T_PUB + 1, NULL), N); /* marks the end */
    for (int i = 0; i < N; i++) {
        report_t r;
        want_report((want_t){.by = s[i]}, &r);
        cr_assert_eq(r.kind, RT_MSG_PUB);
        cr_assert_eq(r.tag, T_PUB);
        cr_assert_eq(r.a, rt_topic_hash("news"));
        cr_assert_eq(r.data, &pl->rc, "the payload is shared, not copied");
        want_report((want_t){.by = s[i]}, &r);
        cr_assert_eq(r.tag, T_PUB + 1, "subscriber %d got a second delivery", i);
        cr_assert_null(r.data);
    }
    expect_nothing_from(other);
    rt_rc_release(&pl->rc);
    ping(s[0]);
    cr_assert_eq(atomic_load(&n_dtor), 1);
    cr_assert_eq(rt_publish("nobody", T_PUB, NULL), 0);
    ASSERT_NO_BAD_CHECKS();
}

/* A subscriber that checks the payload, reads the destructor count and
 * may keep the payload (taken) until told to release it. */
static void holder_sub_info(void *state, rt_msg_t *m)
{
    puppet_t *p = state;
    if (m->kind == RT_MSG_PUB) {
        CHECK(m->data != NULL && RT_CONTAINER_OF(m->data, payload_t, rc)->magic == 0xFA17);
        CHECK(atomic_load(&n_dtor) == 0);
        if (p->v[0])
            p->held = rt_msg_take(m);
        result(T_PUB, 0, 0);
        return;
    }
    if (m->kind == RT_MSG_INFO && m->tag == T_RELEASE) {
        CHECK(atomic_load(&n_dtor) == 0);
        rt_rc_release(p->held);
        p->held = NULL;
        result(T_RELEASE, (uint64_t)atomic_load(&n_dtor), 0);
        return;
    }
    puppet_info(state, m);
}

static const rt_behaviour_t holder_sub_beh = RT_BEHAVIOUR(
    .name = "holder_sub", .init = puppet_init, .handle_info = holder_sub_info,
    .terminate = puppet_terminate);

static void fn_keep(puppet_t *p, uint64_t on) { p->v[0] = on; }

Test(pubsub, the_shared_payload_is_freed_once_after_the_last_subscriber, .init = setup,
     .fini = teardown, .timeout = 60)
{
    enum { N = 4 };
    rt_pid_t s[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rt_spawn(&holder_sub_beh, NULL, NULL, &s[i]), RT_OK);
        subscribe(s[i], 1);
    }
    run_in(s[2], fn_keep, 1); /* this one keeps the payload */
    payload_t *pl = payload_new();
    cr_assert_eq(rt_publish("room:1", T_PUB, &pl->rc), N);
    rt_rc_release(&pl->rc); /* the publisher's own reference */
    for (int i = 0; i < N; i++) {
        report_t r;
        want_report((want_t){.kind = K_RESULT, .tag = T_PUB, .by = s[i]}, &r);
        ping(s[i]); /* its message has been freed */
    }
    cr_assert_eq(atomic_load(&n_dtor), 0, "freed while a subscriber still holds it");
    cr_assert_eq(rt_send(s[2], T_RELEASE, 0, 0), RT_OK);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_RELEASE, .by = s[2]}, &r);
    cr_assert_eq(r.a, 1, "the last release runs the destructor");
    cr_assert_eq(atomic_load(&n_dtor), 1);
    ASSERT_NO_BAD_CHECKS();
}

Test(pubsub, the_payload_outlives_a_queued_delivery, .init = setup, .fini = teardown,
     .timeout = 60)
{
    /* A subscriber that has not handled its message yet (blocked in
     * rt_await) keeps the payload alive. */
    rt_pid_t s;
    cr_assert_eq(rt_spawn(&holder_sub_beh, NULL, NULL, &s), RT_OK);
    subscribe(s, 1);
    uint64_t tref = 0;
    run_in(s, fn_await_timer, 300);
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_ALL, .by = s}, &r);
    tref = r.a;
    payload_t *pl = payload_new();
    cr_assert_eq(rt_publish("room:1", T_PUB, &pl->rc), 1);
    rt_rc_release(&pl->rc);
    cr_assert_eq(atomic_load(&n_dtor), 0);
    want_report((want_t){.kind = RT_MSG_TIMER, .ref = tref, .by = s}, &r);
    want_report((want_t){.kind = K_RESULT, .tag = T_PUB, .by = s}, &r);
    ping(s);
    cr_assert_eq(atomic_load(&n_dtor), 1);
    ASSERT_NO_BAD_CHECKS();
}

Test(pubsub, subscriptions_vanish_when_the_process_dies, .init = setup, .fini = teardown,
     .timeout = 60)
{
    uint64_t mref[3];
    rt_pid_t s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = spawn_puppet(0, &mref[i]);
        subscribe(s[i], 0);
        subscribe(s[i], 1);
    }
    cr_assert_eq(rt_subscriber_count("news"), 3);
    kill_and_wait(s[1], mref[1]);
    cr_assert_eq(rt_subscriber_count("news"), 2);
    cr_assert_eq(rt_subscriber_count("room:1"), 2);
    cr_assert_eq(rt_publish("news", T_PUB, NULL), 2);
    run_in(s[2], fn_fail_now, 0);
    char why[64];
    want_down(mref[2], why, sizeof why);
    cr_assert_eq(rt_subscriber_count("news"), 1);
    cr_assert_eq(rt_publish("room:1", T_PUB, NULL), 1);
    ASSERT_NO_BAD_CHECKS();
}

Test(pubsub, unsubscribe_stops_deliveries, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t a = spawn_puppet(0, NULL), b = spawn_puppet(0, NULL);
    subscribe(a, 0);
    subscribe(b, 0);
    report_t r;
    run_in(a, fn_unsubscribe, 0);
    want_report((want_t){.kind = K_RESULT, .tag = T_UNSUB, .by = a}, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    cr_assert_eq(rt_subscriber_count("news"), 1);
    cr_assert_eq(rt_publish("news", T_PUB, NULL), 1);
    want_report((want_t){.kind = RT_MSG_PUB, .by = b}, &r);
    expect_nothing_from(a);
    run_in(a, fn_unsubscribe, 0);
    want_report((want_t){.kind = K_RESULT, .tag = T_UNSUB, .by = a}, &r);
    cr_assert_neq((int)(int64_t)r.a, RT_OK, "unsubscribed twice");
    ASSERT_NO_BAD_CHECKS();
}

/* 10,000 subscribers: each counts its deliveries; the payload's destructor
 * tells the test when every delivery has been handled and freed. */
static atomic_int n_delivered, n_dup;

static rt_reason_t *many_init(void *arg, void **state)
{
    *state = calloc(1, sizeof(int));
    if (!*state)
        return rt_reason_new("enomem");
    int rc = rt_subscribe("many");
    return rc == RT_OK ? NULL : rt_reason_new("subscribe failed");
}

static void many_info(void *state, rt_msg_t *m)
{
    int *seen = state;
    if (m->kind != RT_MSG_PUB)
        return;
    if (++*seen > 1)
        atomic_fetch_add(&n_dup, 1);
    atomic_fetch_add(&n_delivered, 1);
}

static void many_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t many_beh = RT_BEHAVIOUR(
    .name = "many", .init = many_init, .handle_info = many_info, .terminate = many_terminate);

Test(pubsub, ten_thousand_subscribers_each_get_one_delivery, .init = setup, .fini = teardown,
     .timeout = 60)
{
    enum { N = 10000 };
    for (int i = 0; i < N; i++) {
        rt_spawn_opts_t o = {.flags = RT_SPAWN_ACK};
        rt_pid_t p;
        cr_assert_eq(rt_inbox_spawn(ib, &many_beh, NULL, &o, &p), RT_OK);
    }
    for (int i = 0; i < N; i++) {
        rt_msg_t *ack = take((want_t){.kind = RT_MSG_ACK}, WAIT_MS);
        cr_assert_not_null(ack, "only %d of %d started", i, N);
        cr_assert_eq(ack->flags & RT_MF_ERROR, 0);
        rt_msg_free(ack);
    }
    cr_assert_eq(rt_subscriber_count("many"), N);

    dtor_notify = me;
    payload_t *pl = payload_new();
    cr_assert_eq(rt_publish("many", T_PUB, &pl->rc), N);
    rt_rc_release(&pl->rc);
    rt_msg_t *done = take((want_t){.tag = T_DTOR}, 20000);
    cr_assert_not_null(done, "%d of %d delivered, payload not freed", atomic_load(&n_delivered),
                       N);
    rt_msg_free(done);
    cr_assert_eq(atomic_load(&n_delivered), N);
    cr_assert_eq(atomic_load(&n_dup), 0);
    cr_assert_eq(atomic_load(&n_dtor), 1);
    ASSERT_NO_BAD_CHECKS();
}
