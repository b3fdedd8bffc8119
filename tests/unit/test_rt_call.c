/*
 * test_rt_call.c — call and reply (rt.h: rt_call, rt_reply, rt_await,
 * rt_call_sync): refs, errors, timeouts and late replies, deferred
 * replies, callees dying before they answer.
 *
 * The test thread acts as a process through an inbox. Callers are
 * "puppets": processes that run a function the test sends them and
 * report every other message they handle to the test. Callbacks run on
 * scheduler threads, where Criterion's assertions must not be used, so
 * they record failures with CHECK(). Waits are receives with a timeout.
 */
#include "rt_harness.h"

/* ---- The server -------------------------------------------------------------------- */

enum {
    C_ECHO = 0x100,  /* reply C_ECHO_R, a + 1, b */
    C_ECHO_R,
    C_DEFER,         /* NOREPLY; after a ms (timer to itself) reply C_DEFER_R 1 2 */
    C_DEFER_R,
    C_HOLD,          /* NOREPLY until T_RELEASE; result T_HELD */
    C_HOLD_R,
    C_HOLD_DIE,      /* NOREPLY, then fail with "callee_crashed" */
    C_STOP_IN_CALL,  /* NOREPLY and rt_stop("stopped_in_call") */
    T_LATER,         /* the server's own timer */
    T_LATE_SENT,     /* result: a = rt_reply's return */
    T_HELD,
    T_RELEASE,
    T_RELEASED,      /* result: a = rt_reply's return */
    T_DIE,
    T_BUSY,          /* the server awaits a ref that never comes */
    T_CALLED,        /* result of fn_call: a = ref, b = rc, c = time before the call */
    T_SEQ,
};

static atomic_int n_req_dtor;

typedef struct srv {
    rt_from_t saved;
} srv_t;

static rt_reason_t *srv_init(void *arg, void **state)
{
    *state = calloc(1, sizeof(srv_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static int srv_call(void *state, rt_msg_t *req, rt_from_t from)
{
    srv_t *s = state;
    CHECK(req->kind == RT_MSG_CALL);
    CHECK(from.pid == req->from);
    switch (req->tag) {
    case C_ECHO:
        CHECK(rt_reply_val(from, C_ECHO_R, req->a + 1, req->b) == RT_OK);
        return RT_REPLIED;
    case C_DEFER:
        s->saved = from;
        CHECK(rt_send_after((int)req->a, rt_self(), rt_msg_new(T_LATER)) != 0);
        return RT_NOREPLY;
    case C_HOLD:
        s->saved = from;
        result(T_HELD, from.ref, 0);
        return RT_NOREPLY;
    case C_HOLD_DIE:
        s->saved = from;
        CHECK(rt_send(rt_self(), T_DIE, 0, 0) == RT_OK);
        return RT_NOREPLY;
    case C_STOP_IN_CALL:
        rt_stop(rt_reason_new("stopped_in_call"));
        return RT_NOREPLY;
    default:
        CHECK(!"unknown call");
        return RT_NOREPLY;
    }
}

static void srv_info(void *state, rt_msg_t *m)
{
    srv_t *s = state;
    switch (m->tag) {
    case T_LATER: {
        CHECK(m->kind == RT_MSG_TIMER);
        int rc = rt_reply_val(s->saved, C_DEFER_R, 1, 2);
        result(T_LATE_SENT, (uint64_t)(int64_t)rc, 0);
        break;
    }
    case T_RELEASE: {
        rt_msg_t *r = rt_msg_new(C_HOLD_R);
        r->a = m->a;
        int rc = rt_reply(s->saved, r);
        result(T_RELEASED, (uint64_t)(int64_t)rc, 0);
        break;
    }
    case T_DIE:
        rt_fail(rt_reason_new("callee_crashed"));
    case T_BUSY:
        rt_await(rt_make_ref());
        result(T_BUSY, 0, 0);
        break;
    case T_PING:
        result(T_PING, m->a, 0);
        break;
    default:
        break;
    }
}

static void srv_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t srv_beh =
    RT_BEHAVIOUR(.name = "srv", .init = srv_init, .handle_call = srv_call,
                 .handle_info = srv_info, .terminate = srv_terminate);

static rt_pid_t spawn_srv(uint64_t *mref)
{
    rt_spawn_opts_t o = {.flags = mref ? RT_SPAWN_MONITOR : 0};
    rt_pid_t pid = RT_NOPID;
    cr_assert_eq(rt_inbox_spawn(ib, &srv_beh, NULL, &o, &pid), RT_OK);
    if (mref)
        *mref = o.monitor_ref;
    return pid;
}

/* ---- The client: a puppet that calls as the test says -------------------------------- */

typedef struct call_spec {
    rt_pid_t to;      /* RT_NOPID: the caller itself */
    uint32_t tag;
    uint64_t a;
    int timeout_ms;
    bool await;
    bool rc_payload;  /* attach a counted RT_OWN_RC payload to the request */
} call_spec_t;

static call_spec_t specs[8];

typedef struct reqobj {
    rt_rc_t rc;
} reqobj_t;

static void reqobj_dtor(rt_rc_t *rc)
{
    free(RT_CONTAINER_OF(rc, reqobj_t, rc));
    atomic_fetch_add(&n_req_dtor, 1);
}

static rt_msg_t *make_req(const call_spec_t *s)
{
    rt_msg_t *req = rt_msg_new(s->tag);
    if (!req)
        return NULL;
    req->a = s->a;
    if (s->rc_payload) {
        reqobj_t *o = calloc(1, sizeof *o);
        rt_rc_init(&o->rc, reqobj_dtor);
        rt_msg_set_data(req, &o->rc, RT_OWN_RC);
    }
    return req;
}

static void fn_call(puppet_t *p, uint64_t i)
{
    const call_spec_t *s = &specs[i];
    uint64_t ref = 0;
    uint64_t t0 = rt_now_ms();
    int rc = rt_call(s->to ? s->to : rt_self(), make_req(s), s->timeout_ms, &ref);
    result3(T_CALLED, ref, (uint64_t)(int64_t)rc, t0);
    if (s->await && rc == RT_OK)
        rt_await(ref);
}

/* Runs specs[i] in the client and returns the T_CALLED report. */
static void call_from(rt_pid_t client, int i, report_t *called)
{
    run_in(client, fn_call, (uint64_t)i);
    want_report((want_t){.kind = K_RESULT, .tag = T_CALLED, .by = client}, called);
}

/* The next report from pid, whatever it is. */
static void next_from(rt_pid_t pid, report_t *r)
{
    want_report((want_t){.by = pid}, r);
}

/* ---- Calls from processes ------------------------------------------------------------------ */

Test(call, a_reply_arrives_with_the_calls_ref, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = srv, .tag = C_ECHO, .a = 41, .timeout_ms = WAIT_MS};
    specs[1] = (call_spec_t){.to = srv, .tag = C_ECHO, .a = 99, .timeout_ms = WAIT_MS,
                             .rc_payload = true};
    report_t c0, c1, r;
    call_from(cl, 0, &c0);
    call_from(cl, 1, &c1);
    cr_assert_eq((int)(int64_t)c0.b, RT_OK);
    cr_assert_eq((int)(int64_t)c1.b, RT_OK);
    cr_assert_neq(c0.a, 0);
    cr_assert_neq(c0.a, c1.a, "two calls share a ref");

    want_report((want_t){.kind = RT_MSG_REPLY, .ref = c1.a, .by = cl}, &r);
    cr_assert_eq(r.flags & RT_MF_ERROR, 0);
    cr_assert_eq(r.tag, C_ECHO_R);
    cr_assert_eq(r.a, 100);
    want_report((want_t){.kind = RT_MSG_REPLY, .ref = c0.a, .by = cl}, &r);
    cr_assert_eq(r.flags & RT_MF_ERROR, 0);
    cr_assert_eq(r.tag, C_ECHO_R);
    cr_assert_eq(r.a, 42);
    cr_assert_eq(r.rcode, -1, "a good reply carries no reason");
    cr_assert_eq(atomic_load(&n_req_dtor), 1, "the request's payload was released");
    ASSERT_NO_BAD_CHECKS();
}

Test(call, calling_self_is_ecallself, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = RT_NOPID, .tag = C_ECHO, .timeout_ms = 100,
                             .rc_payload = true};
    report_t c;
    call_from(cl, 0, &c);
    cr_assert_eq((int)(int64_t)c.b, RT_ECALLSELF);
    cr_assert_eq(atomic_load(&n_req_dtor), 1, "the request is taken whatever the result");
    /* No reply and no timeout reply follow. */
    expect_sentinel_next(cl, 300);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, calling_a_dead_pid_is_enoproc_at_once, .init = setup, .fini = teardown,
     .timeout = 60)
{
    uint64_t mref;
    rt_pid_t srv = spawn_srv(&mref);
    kill_and_wait(srv, mref);
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = srv, .tag = C_ECHO, .timeout_ms = 100, .rc_payload = true};
    report_t c;
    call_from(cl, 0, &c);
    cr_assert_eq((int)(int64_t)c.b, RT_ENOPROC);
    cr_assert_eq(atomic_load(&n_req_dtor), 1);
    expect_sentinel_next(cl, 300);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, rt_call_outside_a_process_is_econtext, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    uint64_t ref = 0;
    cr_assert_eq(rt_call(srv, rt_msg_new(C_ECHO), 100, &ref), RT_ECONTEXT);
}

Test(call, a_timeout_is_an_error_reply_and_the_late_reply_is_dropped, .init = setup,
     .fini = teardown, .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = srv, .tag = C_DEFER, .a = 400, .timeout_ms = 100};
    report_t c, r;
    call_from(cl, 0, &c);
    cr_assert_eq((int)(int64_t)c.b, RT_OK);

    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY);
    cr_assert_eq(r.ref, c.a);
    cr_assert(r.flags & RT_MF_ERROR);
    cr_assert_eq(r.rcode, RT_R_TIMEOUT);
    cr_assert_str_eq(r.reason, "timeout");
    cr_assert_geq(r.t_ms - c.c, 100, "timed out after %llu ms", (unsigned long long)(r.t_ms - c.c));
    cr_assert_lt(r.t_ms - c.c, 380, "the timeout did not fire: the late reply came");

    /* The server answers at 400 ms; the client sees nothing more. */
    report_t late;
    want_report((want_t){.kind = K_RESULT, .tag = T_LATE_SENT, .by = srv}, &late);
    expect_sentinel_next(cl, 50);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, a_deferred_reply_arrives, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = srv, .tag = C_DEFER, .a = 50, .timeout_ms = WAIT_MS};
    report_t c, r, sent;
    call_from(cl, 0, &c);
    cr_assert_eq((int)(int64_t)c.b, RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_LATE_SENT, .by = srv}, &sent);
    cr_assert_eq((int)(int64_t)sent.a, RT_OK);
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY);
    cr_assert_eq(r.ref, c.a);
    cr_assert_eq(r.flags & RT_MF_ERROR, 0);
    cr_assert_eq(r.tag, C_DEFER_R);
    cr_assert_eq(r.a, 1);
    cr_assert_eq(r.b, 2);
    cr_assert_geq(r.t_ms - c.c, 50);
    /* Exactly one reply: the call's timeout timer was cancelled. */
    expect_sentinel_next(cl, 200);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, a_reply_to_a_dead_caller_is_enoproc, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    uint64_t cl_mref;
    rt_pid_t cl = spawn_puppet(0, &cl_mref);
    specs[0] = (call_spec_t){.to = srv, .tag = C_HOLD, .timeout_ms = WAIT_MS};
    report_t c, r;
    call_from(cl, 0, &c);
    want_report((want_t){.kind = K_RESULT, .tag = T_HELD, .by = srv}, &r);
    cr_assert_eq(r.a, c.a, "from.ref is the call's ref");
    kill_and_wait(cl, cl_mref);
    cr_assert_eq(rt_send(srv, T_RELEASE, 0, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_RELEASED, .by = srv}, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_ENOPROC);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, a_callee_dying_with_a_pending_call_sends_its_exit_reason, .init = setup,
     .fini = teardown, .timeout = 60)
{
    uint64_t mref;
    rt_pid_t srv = spawn_srv(&mref);
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = srv, .tag = C_HOLD_DIE, .timeout_ms = WAIT_MS};
    report_t c, r;
    call_from(cl, 0, &c);
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY);
    cr_assert_eq(r.ref, c.a);
    cr_assert(r.flags & RT_MF_ERROR);
    cr_assert_str_eq(r.reason, "callee_crashed");
    cr_assert_eq(r.rcode, RT_R_OTHER);
    cr_assert_lt(r.t_ms - c.c, WAIT_MS - 500, "the error came from the timeout, not the exit");
    char why[64];
    want_down(mref, why, sizeof why);
    cr_assert_str_eq(why, "callee_crashed");
    expect_sentinel_next(cl, 100);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, a_callee_stopping_inside_handle_call_sends_its_reason, .init = setup,
     .fini = teardown, .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = srv, .tag = C_STOP_IN_CALL, .timeout_ms = WAIT_MS};
    report_t c, r;
    call_from(cl, 0, &c);
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY);
    cr_assert_eq(r.ref, c.a);
    cr_assert(r.flags & RT_MF_ERROR);
    cr_assert_str_eq(r.reason, "stopped_in_call");
    ASSERT_NO_BAD_CHECKS();
}

Test(call, a_callee_dying_with_the_call_in_its_mailbox_sends_an_error, .init = setup,
     .fini = teardown, .timeout = 60)
{
    uint64_t mref;
    rt_pid_t srv = spawn_srv(&mref);
    rt_pid_t cl = spawn_puppet(0, NULL);
    report_t c, r;
    cr_assert_eq(rt_send(srv, T_BUSY, 0, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_BUSY, .by = srv}, &r);
    specs[0] = (call_spec_t){.to = srv, .tag = C_ECHO, .timeout_ms = WAIT_MS};
    call_from(cl, 0, &c);
    cr_assert_eq((int)(int64_t)c.b, RT_OK);
    /* The call is in the server's mailbox (rt_call returned RT_OK). */
    rt_reason_t *boom = rt_reason_new("boom");
    cr_assert_eq(rt_exit(srv, boom), RT_OK);
    rt_reason_release(boom);
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY);
    cr_assert_eq(r.ref, c.a);
    cr_assert(r.flags & RT_MF_ERROR);
    cr_assert_str_eq(r.reason, "boom");
    cr_assert_lt(r.t_ms - c.c, WAIT_MS - 500, "the error came from the timeout, not the exit");
    char why[64];
    want_down(mref, why, sizeof why);
    cr_assert_str_eq(why, "boom");
    ASSERT_NO_BAD_CHECKS();
}

Test(call, rt_await_postpones_other_messages_and_keeps_their_order, .init = setup,
     .fini = teardown, .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_pid_t cl = spawn_puppet(0, NULL);
    specs[0] = (call_spec_t){.to = srv, .tag = C_HOLD, .timeout_ms = WAIT_MS, .await = true};
    report_t c, r;
    call_from(cl, 0, &c);
    cr_assert_eq((int)(int64_t)c.b, RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_HELD, .by = srv}, &r);

    /* Sent while the client awaits: infos, a cast, more infos. */
    for (uint64_t i = 0; i < 3; i++)
        cr_assert_eq(rt_send(cl, T_SEQ, i, 0), RT_OK);
    cr_assert_eq(rt_cast(cl, T_SEQ, 3, 0), RT_OK);
    for (uint64_t i = 4; i < 8; i++)
        cr_assert_eq(rt_send(cl, T_SEQ, i, 0), RT_OK);

    cr_assert_eq(rt_send(srv, T_RELEASE, 77, 0), RT_OK);
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY, "handled kind %u tag %#x a %llu before the reply",
                 r.kind, r.tag, (unsigned long long)r.a);
    cr_assert_eq(r.ref, c.a);
    cr_assert_eq(r.tag, C_HOLD_R);
    cr_assert_eq(r.a, 77);
    for (uint64_t i = 0; i < 8; i++) {
        next_from(cl, &r);
        cr_assert_eq(r.tag, T_SEQ);
        cr_assert_eq(r.a, i, "postponed messages out of order: got %llu, expected %llu",
                     (unsigned long long)r.a, (unsigned long long)i);
    }
    ASSERT_NO_BAD_CHECKS();
}

/* A client that, when the reply to v[0] comes, awaits v[1] at once. */
static void chain_info(void *state, rt_msg_t *m)
{
    puppet_t *p = state;
    puppet_info(state, m); /* reports it (or runs it) */
    if (m->kind == RT_MSG_REPLY && p->v[0] && m->ref == p->v[0])
        rt_await(p->v[1]);
}

static const rt_behaviour_t chain_beh = RT_BEHAVIOUR(
    .name = "chain", .init = puppet_init, .handle_info = chain_info, .terminate = puppet_terminate);

/* Calls specs[0] and specs[1] (both held), awaits the first. */
static void fn_two_calls(puppet_t *p, uint64_t unused)
{
    uint64_t r1 = 0, r2 = 0;
    CHECK(rt_call(specs[0].to, make_req(&specs[0]), RT_INFINITY, &r1) == RT_OK);
    CHECK(rt_call(specs[1].to, make_req(&specs[1]), RT_INFINITY, &r2) == RT_OK);
    p->v[0] = r1;
    p->v[1] = r2;
    rt_await(r1);
    result3(T_CALLED, r1, r2, 0);
}

Test(call, an_awaited_reply_postponed_by_an_earlier_await_is_found, .init = setup,
     .fini = teardown, .timeout = 60)
{
    rt_pid_t s1 = spawn_srv(NULL), s2 = spawn_srv(NULL);
    rt_pid_t cl = RT_NOPID;
    cr_assert_eq(rt_spawn(&chain_beh, NULL, NULL, &cl), RT_OK);
    specs[0] = (call_spec_t){.to = s1, .tag = C_HOLD};
    specs[1] = (call_spec_t){.to = s2, .tag = C_HOLD};
    report_t c, r;
    run_in(cl, fn_two_calls, 0);
    want_report((want_t){.kind = K_RESULT, .tag = T_CALLED, .by = cl}, &c);
    want_report((want_t){.kind = K_RESULT, .tag = T_HELD, .by = s1}, &r);
    want_report((want_t){.kind = K_RESULT, .tag = T_HELD, .by = s2}, &r);

    /* While the client awaits the first reply: two messages, then the
     * second reply. All three wait, in that order. */
    cr_assert_eq(rt_send(cl, T_SEQ, 0, 0), RT_OK);
    cr_assert_eq(rt_send(cl, T_SEQ, 1, 0), RT_OK);
    cr_assert_eq(rt_send(s2, T_RELEASE, 2, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_RELEASED, .by = s2}, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    cr_assert_eq(rt_send(s1, T_RELEASE, 1, 0), RT_OK);

    /* The first reply, then (awaited next) the second, then the rest. */
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY);
    cr_assert_eq(r.ref, c.a);
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_REPLY, "the second awaited reply did not come first (got tag %#x)",
                 r.tag);
    cr_assert_eq(r.ref, c.b);
    cr_assert_eq(r.a, 2);
    for (uint64_t i = 0; i < 2; i++) {
        next_from(cl, &r);
        cr_assert_eq(r.tag, T_SEQ);
        cr_assert_eq(r.a, i);
    }
    ASSERT_NO_BAD_CHECKS();
}

static void fn_await_timer(puppet_t *p, uint64_t ms)
{
    rt_msg_t *m = rt_msg_new(T_SENTINEL);
    uint64_t ref = rt_send_after((int)ms, rt_self(), m);
    CHECK(ref != 0);
    rt_await(ref);
    result(T_CALLED, ref, 0);
}

Test(call, rt_await_works_on_a_timer_ref, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t cl = spawn_puppet(0, NULL);
    report_t r, awaiting;
    run_in(cl, fn_await_timer, 150);
    want_report((want_t){.kind = K_RESULT, .tag = T_CALLED, .by = cl}, &awaiting);
    cr_assert_eq(rt_send(cl, T_SEQ, 1, 0), RT_OK);
    next_from(cl, &r);
    cr_assert_eq(r.kind, RT_MSG_TIMER, "a message was handled before the awaited timer");
    cr_assert_eq(r.ref, awaiting.a);
    next_from(cl, &r);
    cr_assert_eq(r.tag, T_SEQ);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, rt_await_still_acts_on_exit_signals, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    uint64_t mref;
    rt_pid_t cl = spawn_puppet(0, &mref);
    specs[0] = (call_spec_t){.to = srv, .tag = C_HOLD, .timeout_ms = RT_INFINITY, .await = true};
    report_t c, r;
    call_from(cl, 0, &c);
    want_report((want_t){.kind = K_RESULT, .tag = T_HELD, .by = srv}, &r);
    rt_reason_t *why = rt_reason_new("stop_waiting");
    cr_assert_eq(rt_exit(cl, why), RT_OK);
    rt_reason_release(why);
    char down[64];
    want_down(mref, down, sizeof down);
    cr_assert_str_eq(down, "stop_waiting");
}

/* ---- rt_call_sync from an external thread ---------------------------------------------------- */

Test(call, call_sync_ok, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_msg_t *req = rt_msg_new(C_ECHO), *reply = NULL;
    req->a = 10;
    req->b = 20;
    cr_assert_eq(rt_call_sync(srv, req, WAIT_MS, &reply), RT_OK);
    cr_assert_not_null(reply);
    cr_assert_eq(reply->kind, RT_MSG_REPLY);
    cr_assert_eq(reply->flags & RT_MF_ERROR, 0);
    cr_assert_eq(reply->tag, C_ECHO_R);
    cr_assert_eq(reply->a, 11);
    cr_assert_eq(reply->b, 20);
    cr_assert_null(rt_msg_reason(reply));
    rt_msg_free(reply);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, call_sync_to_a_dead_pid_is_enoproc, .init = setup, .fini = teardown, .timeout = 60)
{
    uint64_t mref;
    rt_pid_t srv = spawn_srv(&mref);
    kill_and_wait(srv, mref);
    specs[0] = (call_spec_t){.tag = C_ECHO, .rc_payload = true};
    rt_msg_t *reply = (rt_msg_t *)&reply;
    uint64_t t0 = rt_now_ms();
    cr_assert_eq(rt_call_sync(srv, make_req(&specs[0]), WAIT_MS, &reply), RT_ENOPROC);
    cr_assert_lt(rt_now_ms() - t0, 1000, "noproc must be immediate");
    cr_assert_null(reply);
    cr_assert_eq(atomic_load(&n_req_dtor), 1);
}

Test(call, call_sync_timeout, .init = setup, .fini = teardown, .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_msg_t *reply = (rt_msg_t *)&reply;
    uint64_t t0 = rt_now_ms();
    cr_assert_eq(rt_call_sync(srv, rt_msg_new(C_HOLD), 150, &reply), RT_ETIMEOUT);
    uint64_t dt = rt_now_ms() - t0;
    cr_assert_null(reply);
    cr_assert_geq(dt, 150, "returned after %llu ms", (unsigned long long)dt);
    cr_assert_lt(dt, 2000);

    /* The late answer to the timed-out call must not be taken for the
     * answer to the next one. */
    report_t r;
    want_report((want_t){.kind = K_RESULT, .tag = T_HELD, .by = srv}, &r);
    cr_assert_eq(rt_send(srv, T_RELEASE, 5, 0), RT_OK);
    want_report((want_t){.kind = K_RESULT, .tag = T_RELEASED, .by = srv}, &r);
    rt_msg_t *req = rt_msg_new(C_ECHO);
    req->a = 1;
    cr_assert_eq(rt_call_sync(srv, req, WAIT_MS, &reply), RT_OK);
    cr_assert_not_null(reply);
    cr_assert_eq(reply->tag, C_ECHO_R);
    cr_assert_eq(reply->a, 2);
    rt_msg_free(reply);
    ASSERT_NO_BAD_CHECKS();
}

Test(call, call_sync_gets_the_callees_exit_reason, .init = setup, .fini = teardown,
     .timeout = 60)
{
    rt_pid_t srv = spawn_srv(NULL);
    rt_msg_t *reply = NULL;
    cr_assert_eq(rt_call_sync(srv, rt_msg_new(C_HOLD_DIE), WAIT_MS, &reply), RT_EEXIT);
    cr_assert_not_null(reply);
    cr_assert(reply->flags & RT_MF_ERROR);
    rt_reason_t *why = rt_msg_reason(reply);
    cr_assert_not_null(why);
    cr_assert_str_eq(why->text, "callee_crashed");
    rt_msg_free(reply);
    cr_assert_not(rt_is_alive(srv));
}

Test(call, a_call_to_a_behaviour_without_handle_call_fails_the_callee, .init = setup,
     .fini = teardown, .timeout = 60)
{
    uint64_t mref;
    rt_pid_t p = spawn_puppet(0, &mref);
    rt_msg_t *reply = NULL;
    cr_assert_eq(rt_call_sync(p, rt_msg_new(C_ECHO), WAIT_MS, &reply), RT_EEXIT);
    cr_assert_not_null(reply);
    cr_assert_not_null(rt_msg_reason(reply));
    char why[160];
    want_down(mref, why, sizeof why);
    cr_assert_str_eq(why, rt_msg_reason(reply)->text);
    cr_assert_str_neq(why, "normal");
    rt_msg_free(reply);
}
