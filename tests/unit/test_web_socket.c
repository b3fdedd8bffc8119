/*
 * test_web_socket.c — the Phoenix socket's protocol semantics (web/socket.h,
 * web/channel.h) without a network: heartbeat, join and leave, duplicate
 * joins, stale join_refs, the channel limit, unmatched topics, crashes
 * (phx_error), async joins and replies, the exactly-one-reply rule, 1007
 * on bad messages, and the broadcast fast lane (one encoding shared by
 * every socket).
 *
 * Harness: a "host" process pinned to an executor that the test thread
 * drives (rt_exec_run / rt_exec_call), as the transport's I/O threads do,
 * owns one web_socket_t whose output goes to a capturing fake. So every
 * socket call runs in process context, on the test thread, in order.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"
#include "rt/rt.h"
#include "web/channel.h"
#include "web/socket.h"

#include "web_harness.h"

/* ---- A test channel ------------------------------------------------------------
 * topic "test:<anything>". Join payload {"mode": "ok" | "error" | "crash"
 * | "async" | "async_error"}. Events: "echo" replies ok with the payload,
 * "error" replies error, "noreply" answers nothing, "crash"/"stop" return
 * WEB_CH_CRASH/WEB_CH_STOP, "defer" answers later (a WEB_MSG_CHANNEL the
 * channel sends itself), "push" pushes {"n":1} to the client first. */
enum { TEST_JOIN_LATER = 1, TEST_REPLY_LATER };

static int terminated[8];
static int joins_called;
static uint64_t last_chan_id;

static void send_self(web_channel_t *ch, uint64_t what, uint64_t token)
{
    rt_msg_t *m = rt_msg_new(WEB_MSG_CHANNEL);
    m->a = web_channel_id(ch);
    m->b = what << 56 | token;
    rt_send_msg(rt_self(), m);
}

static web_ch_result_t t_join(web_channel_t *ch, const char *topic, json_t *payload,
                              void **state)
{
    joins_called++;
    last_chan_id = web_channel_id(ch);
    const char *mode = json_string_value(json_object_get(payload, "mode"));
    if (!mode || !strcmp(mode, "ok")) {
        json_t *r = json_pack("{ss}", "hello", web_channel_user(ch));
        web_channel_join_ok(ch, r);
        json_decref(r);
        return WEB_CH_OK;
    }
    if (!strcmp(mode, "error")) {
        web_channel_join_refuse(ch, "nope");
        return WEB_CH_OK;
    }
    if (!strcmp(mode, "raw")) {
        /* The response as text, written as it is. */
        static const char text[] = "{\"state\":{\"v\":7,\"s\":\"\\u00e9\"}}";
        cr_assert_eq(web_channel_join_ok_raw(ch, text, sizeof text - 1), WEB_OK);
        cr_assert_eq(web_channel_join_ok_raw(ch, "{}", 2), WEB_E_STATE, "answered once");
        return WEB_CH_OK;
    }
    if (!strcmp(mode, "raw_bad")) {
        /* Not UTF-8: refused, and the join is still unanswered. */
        cr_assert_eq(web_channel_join_ok_raw(ch, "{\"s\":\"\xff\"}", 8), WEB_E_ARG);
        web_channel_join_refuse(ch, "not utf-8");
        return WEB_CH_OK;
    }
    if (!strcmp(mode, "crash"))
        return WEB_CH_CRASH;
    if (!strcmp(mode, "async") || !strcmp(mode, "async_error")) {
        *state = strdup(mode);
        send_self(ch, TEST_JOIN_LATER, 0);
        return WEB_CH_OK;
    }
    return WEB_CH_CRASH;
}

static web_ch_result_t t_in(web_channel_t *ch, void *state, const char *event, json_t *payload)
{
    if (!strcmp(event, "echo"))
        web_channel_reply(ch, "ok", payload);
    else if (!strcmp(event, "error"))
        web_channel_reply(ch, "error", payload);
    else if (!strcmp(event, "crash"))
        return WEB_CH_CRASH;
    else if (!strcmp(event, "stop"))
        return WEB_CH_STOP;
    else if (!strcmp(event, "defer")) {
        uint64_t token = rt_make_ref() & 0xffffffffffffull;
        cr_assert_eq(web_channel_defer(ch, token), WEB_OK);
        send_self(ch, TEST_REPLY_LATER, token);
    } else if (!strcmp(event, "hold")) {
        /* Deferred with the token the client chose ({"t": n}). */
        uint64_t t = (uint64_t)json_integer_value(json_object_get(payload, "t"));
        cr_assert_eq(web_channel_defer(ch, t), WEB_OK);
    } else if (!strcmp(event, "release")) {
        /* Answers hold {"t": n} (as text when "raw"), then this push with
         * what reply_later returned. */
        uint64_t t = (uint64_t)json_integer_value(json_object_get(payload, "t"));
        char r[64];
        int n = snprintf(r, sizeof r, "{\"released\":%llu}", (unsigned long long)t);
        int rc;
        if (json_is_true(json_object_get(payload, "raw"))) {
            rc = web_channel_reply_later_raw(ch, t, "ok", r, (size_t)n);
        } else {
            json_t *p = json_loads(r, 0, NULL);
            rc = web_channel_reply_later(ch, t, "ok", p);
            json_decref(p);
        }
        json_t *p = json_pack("{si}", "rc", rc);
        web_channel_reply(ch, "ok", p);
        json_decref(p);
    } else if (!strcmp(event, "defer_forever")) {
        cr_assert_eq(web_channel_defer(ch, rt_make_ref()), WEB_OK);
    } else if (!strcmp(event, "sub")) {
        cr_assert_eq(web_channel_subscribe(ch, "extra:t"), WEB_OK);
        cr_assert_eq(web_channel_subscribe(ch, "extra:t"), WEB_OK); /* twice = once */
    } else if (!strcmp(event, "unsub")) {
        cr_assert_eq(web_channel_unsubscribe(ch, "extra:t"), WEB_OK);
        cr_assert_eq(web_channel_unsubscribe(ch, "extra:t"), WEB_E_NOTFOUND);
    } else if (!strcmp(event, "timer")) {
        uint64_t t = rt_send_after(1, rt_self(), rt_msg_new(0x7e57));
        cr_assert_eq(web_channel_watch(ch, t), WEB_OK);
    } else if (!strcmp(event, "push")) {
        json_t *p = json_pack("{si}", "n", 1);
        web_channel_push(ch, "pushed", p);
        json_decref(p);
        web_channel_reply(ch, "ok", NULL);
    }
    return WEB_CH_OK; /* "noreply": the socket answers ok {} */
}

static web_ch_result_t t_info(web_channel_t *ch, void *state, rt_msg_t *m)
{
    if (m->kind == RT_MSG_PUB) {
        json_t *p = json_pack("{sI}", "tag", (json_int_t)m->tag);
        web_channel_push(ch, "got_pub", p);
        json_decref(p);
        return WEB_CH_OK;
    }
    if (m->kind == RT_MSG_TIMER) {
        web_channel_unwatch(ch, m->ref);
        web_channel_push(ch, "tick", NULL);
        return WEB_CH_OK;
    }
    if (m->tag != WEB_MSG_CHANNEL)
        return WEB_CH_OK;
    uint64_t what = m->b >> 56, token = m->b & 0xffffffffffffffull;
    if (what == TEST_JOIN_LATER) {
        if (!strcmp(state, "async"))
            web_channel_join_ok(ch, NULL);
        else
            web_channel_join_refuse(ch, "later nope");
    } else if (what == TEST_REPLY_LATER) {
        json_t *p = json_pack("{ss}", "later", "yes");
        cr_assert_eq(web_channel_reply_later(ch, token, "ok", p), WEB_OK);
        json_decref(p);
    }
    return WEB_CH_OK;
}

static void t_terminate(web_channel_t *ch, void *state, web_ch_exit_t why)
{
    terminated[why]++;
    free(state);
}

static const web_channel_handler_t test_handler = WEB_CHANNEL_HANDLER(
    .prefix = "test:", .join = t_join, .handle_in = t_in, .handle_info = t_info,
    .terminate = t_terminate);

/* A handler with only join: pushes get "unknown event". */
static web_ch_result_t bare_join(web_channel_t *ch, const char *topic, json_t *payload,
                                 void **state)
{
    web_channel_join_ok(ch, NULL);
    return WEB_CH_OK;
}
static const web_channel_handler_t bare_handler = WEB_CHANNEL_HANDLER(
    .prefix = "bare:", .join = bare_join);

static void setup(void)
{
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    rt_exec_init(&ex, ex_wake, NULL);
    memset(&router, 0, sizeof router);
    cr_assert_eq(web_channel_router_add(&router, &test_handler), WEB_OK);
    cr_assert_eq(web_channel_router_add(&router, &bare_handler), WEB_OK);
    memset(terminated, 0, sizeof terminated);
    joins_called = 0;
}

static void teardown(void)
{
    pump();
    rt_runtime_stop();
    rt_exec_destroy(&ex);
}

TestSuite(web_socket, .init = setup, .fini = teardown, .timeout = 30);

/* ---- Tests ----------------------------------------------------------------------- */

Test(web_socket, heartbeat_v2)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[null,\"1\",\"phoenix\",\"heartbeat\",{}]");
    expect(h, NULL, "1", "phoenix", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    expect_none(h);
    host_free(h);
}

Test(web_socket, heartbeat_v1_object_form)
{
    host_t *h = host_new(PHX_V1, "alice");
    client(h, "{\"topic\":\"phoenix\",\"event\":\"heartbeat\",\"payload\":{},\"ref\":\"7\"}");
    expect(h, NULL, "7", "phoenix", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    host_free(h);
}

Test(web_socket, join_push_leave)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"hello\":\"alice\"}}");
    cr_assert_eq(web_socket_channel_count(h->s), 1);

    client(h, "[\"1\",\"2\",\"test:a\",\"echo\",{\"x\":1}]");
    expect(h, "1", "2", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{\"x\":1}}");
    client(h, "[\"1\",\"3\",\"test:a\",\"error\",{\"why\":\"b\"}]");
    expect(h, "1", "3", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"why\":\"b\"}}");
    client(h, "[\"1\",\"4\",\"test:a\",\"push\",{}]");
    expect(h, "1", NULL, "test:a", "pushed", "{\"n\":1}");
    expect(h, "1", "4", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");

    client(h, "[\"1\",\"5\",\"test:a\",\"phx_leave\",{}]");
    expect(h, "1", "5", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    expect(h, "1", "1", "test:a", "phx_close", "{}");
    expect_none(h);
    cr_assert_eq(web_socket_channel_count(h->s), 0);
    cr_assert_eq(terminated[WEB_CH_LEFT], 1);

    /* After the leave the topic is not joined. */
    client(h, "[\"1\",\"6\",\"test:a\",\"echo\",{}]");
    expect(h, NULL, "6", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}");
    host_free(h);
}

Test(web_socket, v1_join_and_reply)
{
    host_t *h = host_new(PHX_V1, "bob");
    client(h, "{\"topic\":\"test:a\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"1\","
              "\"join_ref\":\"1\"}");
    expect(h, "1", "1", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"hello\":\"bob\"}}");
    client(h, "{\"topic\":\"test:a\",\"event\":\"echo\",\"payload\":{\"y\":2},\"ref\":\"2\","
              "\"join_ref\":\"1\"}");
    expect(h, "1", "2", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{\"y\":2}}");
    host_free(h);
}

Test(web_socket, unmatched_topic)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"nosuch:1\",\"phx_join\",{}]");
    expect(h, NULL, "1", "nosuch:1", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}");
    /* A push to a topic never joined: Phoenix's answer. */
    client(h, "[\"1\",\"2\",\"test:zz\",\"echo\",{}]");
    expect(h, NULL, "2", "test:zz", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}");
    /* A leave of a topic not joined: ok, as Phoenix. */
    client(h, "[\"1\",\"3\",\"test:zz\",\"phx_leave\",{}]");
    expect(h, "1", "3", "test:zz", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    expect_none(h);
    cr_assert_eq(web_socket_channel_count(h->s), 0);
    host_free(h);
}

Test(web_socket, join_errors)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{\"mode\":\"error\"}]");
    expect(h, "1", "1", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"nope\"}}");
    cr_assert_eq(terminated[WEB_CH_JOIN_FAILED], 1);
    client(h, "[\"2\",\"2\",\"test:a\",\"phx_join\",{\"mode\":\"crash\"}]");
    expect(h, "2", "2", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"join crashed\"}}");
    cr_assert_eq(terminated[WEB_CH_CRASHED], 1);
    cr_assert_eq(web_socket_channel_count(h->s), 0);
    expect_none(h);
    host_free(h);
}

Test(web_socket, duplicate_join_closes_old_channel_first)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply", NULL);
    client(h, "[\"3\",\"3\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_close", "{}");
    expect(h, "3", "3", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"hello\":\"alice\"}}");
    expect_none(h);
    cr_assert_eq(terminated[WEB_CH_REPLACED], 1);
    cr_assert_eq(web_socket_channel_count(h->s), 1);

    /* The old join_ref is now stale: ignored, no reply. */
    client(h, "[\"1\",\"4\",\"test:a\",\"echo\",{}]");
    expect_none(h);
    client(h, "[\"1\",\"5\",\"test:a\",\"phx_leave\",{}]");
    expect_none(h);
    cr_assert_eq(web_socket_channel_count(h->s), 1);
    /* The current one works. */
    client(h, "[\"3\",\"6\",\"test:a\",\"echo\",{}]");
    expect(h, "3", "6", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    host_free(h);
}

Test(web_socket, stale_and_null_join_ref_ignored)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"5\",\"5\",\"test:a\",\"phx_join\",{}]");
    expect(h, "5", "5", "test:a", "phx_reply", NULL);
    client(h, "[\"4\",\"6\",\"test:a\",\"echo\",{}]");
    client(h, "[null,\"7\",\"test:a\",\"echo\",{}]");
    expect_none(h);
    host_free(h);
}

Test(web_socket, channel_limit)
{
    host_t *h = host_new(PHX_V2, "alice");
    char buf[128];
    for (int i = 0; i < WEB_SOCKET_MAX_CHANNELS; i++) {
        snprintf(buf, sizeof buf, "[\"%d\",\"%d\",\"test:%d\",\"phx_join\",{}]", i, i, i);
        client(h, buf);
        char topic[32], ref[16];
        snprintf(topic, sizeof topic, "test:%d", i);
        snprintf(ref, sizeof ref, "%d", i);
        expect(h, ref, ref, topic, "phx_reply", "{\"status\":\"ok\",\"response\":{\"hello\":\"alice\"}}");
    }
    cr_assert_eq(web_socket_channel_count(h->s), WEB_SOCKET_MAX_CHANNELS);
    client(h, "[\"x\",\"x\",\"test:x\",\"phx_join\",{}]");
    expect(h, "x", "x", "test:x", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"too many channels\",\"limit\":100}}");
    cr_assert_eq(joins_called, WEB_SOCKET_MAX_CHANNELS);
    /* Rejoining a joined topic at the limit is fine: the old one goes first. */
    client(h, "[\"y\",\"y\",\"test:7\",\"phx_join\",{}]");
    expect(h, "7", "7", "test:7", "phx_close", "{}");
    expect(h, "y", "y", "test:7", "phx_reply", NULL);
    /* After a leave there is room again. */
    client(h, "[\"0\",\"z\",\"test:0\",\"phx_leave\",{}]");
    expect(h, "0", "z", "test:0", "phx_reply", NULL);
    expect(h, "0", "0", "test:0", "phx_close", NULL);
    client(h, "[\"x\",\"x2\",\"test:x\",\"phx_join\",{}]");
    expect(h, "x", "x2", "test:x", "phx_reply", "{\"status\":\"ok\",\"response\":{\"hello\":\"alice\"}}");
    host_free(h);
    cr_assert_eq(terminated[WEB_CH_SOCKET_CLOSED], WEB_SOCKET_MAX_CHANNELS);
}

Test(web_socket, crash_sends_phx_error)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply", NULL);
    client(h, "[\"1\",\"2\",\"test:a\",\"crash\",{}]");
    /* The push still gets its one reply, then the channel errors. */
    expect(h, "1", "2", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"channel_crash\"}}");
    expect(h, "1", "1", "test:a", "phx_error", "{\"reason\":\"channel_crash\"}");
    expect_none(h);
    cr_assert_eq(terminated[WEB_CH_CRASHED], 1);
    cr_assert_eq(web_socket_channel_count(h->s), 0);
    /* The client rejoins (phoenix.js does) and all is well. */
    client(h, "[\"3\",\"3\",\"test:a\",\"phx_join\",{}]");
    expect(h, "3", "3", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{\"hello\":\"alice\"}}");
    host_free(h);
}

Test(web_socket, stop_sends_phx_close)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply", NULL);
    client(h, "[\"1\",\"2\",\"test:a\",\"stop\",{}]");
    expect(h, "1", "2", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    expect(h, "1", "1", "test:a", "phx_close", "{}");
    expect_none(h);
    cr_assert_eq(terminated[WEB_CH_CLOSED], 1);
    host_free(h);
}

Test(web_socket, every_push_with_ref_gets_one_reply)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply", NULL);
    /* The handler said nothing: the socket answers ok {}. */
    client(h, "[\"1\",\"2\",\"test:a\",\"noreply\",{}]");
    expect(h, "1", "2", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    /* A push without a ref wants no reply. */
    client(h, "[\"1\",null,\"test:a\",\"echo\",{}]");
    expect_none(h);
    /* Deferred: answered later, exactly once. */
    client(h, "[\"1\",\"3\",\"test:a\",\"defer\",{}]");
    expect(h, "1", "3", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"later\":\"yes\"}}");
    expect_none(h);
    /* Deferred and never answered: the leave answers it first. */
    client(h, "[\"1\",\"4\",\"test:a\",\"defer_forever\",{}]");
    expect_none(h);
    client(h, "[\"1\",\"5\",\"test:a\",\"phx_leave\",{}]");
    expect(h, "1", "4", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"channel closed\"}}");
    expect(h, "1", "5", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    expect(h, "1", "1", "test:a", "phx_close", "{}");
    expect_none(h);
    host_free(h);
}

/* Deferred pushes answered in any order, as JSON or as text; the ones
 * left are answered when the channel closes, in the order they came. */
Test(web_socket, deferred_pushes_in_any_order)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply", NULL);
    for (int t = 1; t <= 5; t++) {
        char m[128];
        snprintf(m, sizeof m, "[\"1\",\"h%d\",\"test:a\",\"hold\",{\"t\":%d}]", t, t);
        client(h, m);
    }
    expect_none(h);
    /* The middle one, as text. */
    client(h, "[\"1\",\"r1\",\"test:a\",\"release\",{\"t\":3,\"raw\":true}]");
    expect(h, "1", "h3", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"released\":3}}");
    expect(h, "1", "r1", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{\"rc\":0}}");
    /* The oldest, then the newest. */
    client(h, "[\"1\",\"r2\",\"test:a\",\"release\",{\"t\":1}]");
    expect(h, "1", "h1", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"released\":1}}");
    expect(h, "1", "r2", "test:a", "phx_reply", NULL);
    client(h, "[\"1\",\"r3\",\"test:a\",\"release\",{\"t\":5,\"raw\":true}]");
    expect(h, "1", "h5", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"released\":5}}");
    expect(h, "1", "r3", "test:a", "phx_reply", NULL);
    /* Answered already, or never deferred. */
    client(h, "[\"1\",\"r4\",\"test:a\",\"release\",{\"t\":5}]");
    char want[96];
    snprintf(want, sizeof want, "{\"status\":\"ok\",\"response\":{\"rc\":%d}}", WEB_E_NOTFOUND);
    expect(h, "1", "r4", "test:a", "phx_reply", want);
    /* A new one after the newest was answered goes behind the others. */
    client(h, "[\"1\",\"h6\",\"test:a\",\"hold\",{\"t\":6}]");
    expect_none(h);
    client(h, "[\"1\",\"9\",\"test:a\",\"phx_leave\",{}]");
    const char *closed = "{\"status\":\"error\",\"response\":{\"reason\":\"channel closed\"}}";
    expect(h, "1", "h2", "test:a", "phx_reply", closed);
    expect(h, "1", "h4", "test:a", "phx_reply", closed);
    expect(h, "1", "h6", "test:a", "phx_reply", closed);
    expect(h, "1", "9", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    expect(h, "1", "1", "test:a", "phx_close", "{}");
    expect_none(h);
    host_free(h);
}

/* A join answered with its response as text (what a room join does with
 * the room's state), and text that is not UTF-8 refused. */
Test(web_socket, join_ok_raw_writes_the_text)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{\"mode\":\"raw\"}]");
    expect(h, "1", "1", "test:a", "phx_reply",
           "{\"status\":\"ok\",\"response\":{\"state\":{\"v\":7,\"s\":\"\u00e9\"}}}");
    client(h, "[\"1\",\"2\",\"test:a\",\"echo\",{\"x\":1}]");
    expect(h, "1", "2", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{\"x\":1}}");
    client(h, "[\"3\",\"3\",\"test:b\",\"phx_join\",{\"mode\":\"raw_bad\"}]");
    expect(h, "3", "3", "test:b", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"not utf-8\"}}");
    expect_none(h);
    host_free(h);
}

Test(web_socket, handler_without_handle_in)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"bare:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "bare:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    client(h, "[\"1\",\"2\",\"bare:a\",\"anything\",{}]");
    expect(h, "1", "2", "bare:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"unknown event\"}}");
    host_free(h);
}

Test(web_socket, async_join_queues_pushes)
{
    host_t *h = host_new(PHX_V2, "alice");
    /* Join and a push in one go, before the join is answered. */
    msg_arg_t a1 = {h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{\"mode\":\"async\"}]", true};
    msg_arg_t a2 = {h, "[\"1\",\"2\",\"test:a\",\"echo\",{\"q\":1}]", true};
    cr_assert_eq(rt_exec_call(&ex, h->pid, run_msg, &a1), RT_OK);
    cr_assert_eq(rt_exec_call(&ex, h->pid, run_msg, &a2), RT_OK);
    expect_none(h);
    pump();
    expect(h, "1", "1", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    expect(h, "1", "2", "test:a", "phx_reply", "{\"status\":\"ok\",\"response\":{\"q\":1}}");
    expect_none(h);
    host_free(h);
}

Test(web_socket, async_join_error_answers_queued_pushes)
{
    host_t *h = host_new(PHX_V2, "alice");
    msg_arg_t a1 = {h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{\"mode\":\"async_error\"}]", true};
    msg_arg_t a2 = {h, "[\"1\",\"2\",\"test:a\",\"echo\",{}]", true};
    cr_assert_eq(rt_exec_call(&ex, h->pid, run_msg, &a1), RT_OK);
    cr_assert_eq(rt_exec_call(&ex, h->pid, run_msg, &a2), RT_OK);
    pump();
    expect(h, "1", "1", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"later nope\"}}");
    expect(h, NULL, "2", "test:a", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}");
    expect_none(h);
    cr_assert_eq(terminated[WEB_CH_JOIN_FAILED], 1);
    host_free(h);
}

Test(web_socket, bad_json_closes_1007)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply", NULL);
    client(h, "[\"1\",\"2\",\"test:a\"");
    cr_assert_eq(h->close_code, 1007);
    cr_assert_str_eq(h->close_reason, "message is not valid JSON");
    cr_assert(web_socket_closing(h->s));
    /* Nothing more is handled or sent. */
    client(h, "[null,\"3\",\"phoenix\",\"heartbeat\",{}]");
    expect_none(h);
    host_free(h);
    cr_assert_eq(terminated[WEB_CH_SOCKET_CLOSED], 1);
}

Test(web_socket, bad_shape_closes_1007)
{
    const char *bad[] = {
        "{\"topic\":\"x\"}",                         /* V2 wants an array */
        "[\"1\",\"1\",\"t\",\"e\"]",                 /* 4 elements */
        "[1,\"1\",\"t\",\"e\",{}]",                  /* join_ref a number */
        "[null,\"1\",null,\"e\",{}]",                /* topic null */
        "[null,\"1\",\"t\",7,{}]",                   /* event a number */
        "42",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        host_t *h = host_new(PHX_V2, "alice");
        client(h, bad[i]);
        cr_assert_eq(h->close_code, 1007, "%s", bad[i]);
        cr_assert(h->close_reason[0], "a reason for %s", bad[i]);
        expect_none(h);
        host_free(h);
    }
    host_t *h = host_new(PHX_V1, "alice");
    client(h, "[\"1\",\"1\",\"t\",\"e\",{}]"); /* V1 wants an object */
    cr_assert_eq(h->close_code, 1007);
    cr_assert_str_eq(h->close_reason, "message must be a JSON object");
    host_free(h);
}

Test(web_socket, binary_closes_1003)
{
    host_t *h = host_new(PHX_V2, "alice");
    client_binary(h, "[]");
    cr_assert_eq(h->close_code, 1003);
    host_free(h);
}

Test(web_socket, broadcast_fast_lane_shares_one_frame)
{
    host_t *a = host_new(PHX_V2, "a"), *b = host_new(PHX_V2, "b");
    host_t *c = host_new(PHX_V1, "c"), *d = host_new(PHX_V2, "d");
    client(a, "[\"1\",\"1\",\"test:room\",\"phx_join\",{}]");
    client(b, "[\"9\",\"9\",\"test:room\",\"phx_join\",{}]");
    client(c, "{\"topic\":\"test:room\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"1\",\"join_ref\":\"1\"}");
    expect(a, "1", "1", "test:room", "phx_reply", NULL);
    expect(b, "9", "9", "test:room", "phx_reply", NULL);
    expect(c, "1", "1", "test:room", "phx_reply", NULL);

    web_channel_stats_t st0;
    web_channel_get_stats(&st0);
    json_t *p = json_pack("{ss}", "x", "y");
    cr_assert_eq(web_broadcast("test:room", "news", p), 3); /* d is not subscribed */
    json_decref(p);
    pump();
    out_item_t ia, ib, ic;
    json_decref(next_json(a, &ia));
    json_decref(next_json(b, &ib));
    json_decref(next_json(c, &ic));
    cr_assert(ia.frame && ib.frame && ic.frame);
    cr_assert_eq(ia.buf, ib.buf, "V2 subscribers write the very same frame");
    cr_assert_neq(ia.buf, ic.buf, "V1 has its own frame");
    cr_assert_str_eq(ia.text, "[null,null,\"test:room\",\"news\",{\"x\":\"y\"}]");
    cr_assert_str_eq(ic.text, "{\"topic\":\"test:room\",\"event\":\"news\",\"payload\":"
                              "{\"x\":\"y\"},\"ref\":null,\"join_ref\":null}");
    web_channel_stats_t st1;
    web_channel_get_stats(&st1);
    cr_assert_eq(st1.frames_encoded - st0.frames_encoded, 2, "one encoding per version");
    expect_none(d);

    /* After a leave the socket is unsubscribed. */
    client(b, "[\"9\",\"2\",\"test:room\",\"phx_leave\",{}]");
    expect(b, "9", "2", "test:room", "phx_reply", NULL);
    expect(b, "9", "9", "test:room", "phx_close", NULL);
    cr_assert_eq(web_broadcast("test:room", "news", NULL), 2);
    pump();
    expect_none(b);
    expect(a, NULL, NULL, "test:room", "news", "{}");
    host_free(a);
    host_free(b);
    host_free(c);
    host_free(d);
}

Test(web_socket, broadcast_from_excludes_sender)
{
    host_t *a = host_new(PHX_V2, "a"), *b = host_new(PHX_V2, "b");
    client(a, "[\"1\",\"1\",\"test:r\",\"phx_join\",{}]");
    client(b, "[\"1\",\"1\",\"test:r\",\"phx_join\",{}]");
    expect(a, "1", "1", "test:r", "phx_reply", NULL);
    expect(b, "1", "1", "test:r", "phx_reply", NULL);
    web_broadcast_t *bc = web_broadcast_new("test:r", "data", "{\"d\":1}", 7);
    bc->exclude = a->pid;
    cr_assert_eq(web_broadcast_publish(bc), 2);
    web_broadcast_release(bc);
    pump();
    expect_none(a);
    expect(b, NULL, NULL, "test:r", "data", "{\"d\":1}");
    host_free(a);
    host_free(b);
}

Test(web_socket, push_message_to_one_channel)
{
    host_t *a = host_new(PHX_V2, "a");
    client(a, "[\"4\",\"4\",\"test:r\",\"phx_join\",{}]");
    expect(a, "4", "4", "test:r", "phx_reply", NULL);
    /* Another process pushes to this one channel (Phoenix push/3). */
    rt_msg_t *m = rt_msg_new(WEB_MSG_PUSH);
    m->a = last_chan_id;
    rt_msg_set_data(m, &web_broadcast_new("test:r", "signal", "{\"s\":1}", 7)->rc, RT_OWN_RC);
    rt_send_msg(a->pid, m);
    pump();
    expect(a, "4", NULL, "test:r", "signal", "{\"s\":1}");
    /* A wrong id (a channel that is gone) is dropped. */
    m = rt_msg_new(WEB_MSG_PUSH);
    m->a = last_chan_id + 1;
    rt_msg_set_data(m, &web_broadcast_new("test:r", "signal", "{}", 2)->rc, RT_OWN_RC);
    rt_send_msg(a->pid, m);
    pump();
    expect_none(a);
    host_free(a);
}

Test(web_socket, broadcast_frame_cached_and_released)
{
    web_broadcast_t *b = web_broadcast_new("t", "e", "[1,2]", 5);
    rt_buf_t *f1 = web_broadcast_frame(b, PHX_V2);
    rt_buf_t *f2 = web_broadcast_frame(b, PHX_V2);
    cr_assert_eq(f1, f2);
    cr_assert_eq((uint8_t)f1->data[0], 0x81);
    cr_assert_eq((size_t)(uint8_t)f1->data[1], f1->len - 2);
    cr_assert_str_eq(f1->data + 2, "[null,null,\"t\",\"e\",[1,2]]");
    /* A large payload gets a longer frame header and still fits. */
    size_t n = 70000;
    char *big = malloc(n + 3);
    big[0] = '"';
    memset(big + 1, 'a', n);
    big[n + 1] = '"';
    big[n + 2] = 0;
    web_broadcast_t *bb = web_broadcast_new("t", "e", big, n + 2);
    rt_buf_t *fb = web_broadcast_frame(bb, PHX_V1);
    cr_assert_eq((uint8_t)fb->data[1], 127);
    cr_assert_eq(fb->data[fb->len], '\0');
    cr_assert_eq(fb->data[fb->len - 1], '}');
    web_broadcast_release(bb);
    free(big);
    cr_assert_null(web_broadcast_new("t", "e", "\xff", 1), "payload must be UTF-8");
    web_broadcast_release(b);
}

Test(web_socket, extra_topics_and_watched_refs)
{
    host_t *h = host_new(PHX_V2, "alice");
    client(h, "[\"1\",\"1\",\"test:a\",\"phx_join\",{}]");
    client(h, "[\"2\",\"2\",\"test:b\",\"phx_join\",{}]");
    expect(h, "1", "1", "test:a", "phx_reply", NULL);
    expect(h, "2", "2", "test:b", "phx_reply", NULL);
    /* Two channels subscribe to one extra topic: one rt subscription,
     * each channel gets the deliveries. */
    client(h, "[\"1\",\"3\",\"test:a\",\"sub\",{}]");
    client(h, "[\"2\",\"4\",\"test:b\",\"sub\",{}]");
    expect(h, "1", "3", "test:a", "phx_reply", NULL);
    expect(h, "2", "4", "test:b", "phx_reply", NULL);
    cr_assert_eq(rt_subscriber_count("extra:t"), 1);
    cr_assert_eq(rt_publish("extra:t", 0x55, NULL), 1);
    pump();
    /* Newest channel first: the socket keeps its channels in a list. */
    out_item_t it1, it2;
    json_decref(next_json(h, &it1));
    json_decref(next_json(h, &it2));
    cr_assert(strstr(it1.text, "got_pub") && strstr(it2.text, "got_pub"));
    cr_assert(strstr(it1.text, "test:a") || strstr(it2.text, "test:a"));
    cr_assert(strstr(it1.text, "test:b") || strstr(it2.text, "test:b"));
    /* One lets go: the topic stays subscribed for the other. */
    client(h, "[\"1\",\"5\",\"test:a\",\"unsub\",{}]");
    expect(h, "1", "5", "test:a", "phx_reply", NULL);
    cr_assert_eq(rt_subscriber_count("extra:t"), 1);
    rt_publish("extra:t", 0x56, NULL);
    pump();
    expect(h, "2", NULL, "test:b", "got_pub", "{\"tag\":86}");
    expect_none(h);
    /* Leaving ends the channel's subscriptions too. */
    client(h, "[\"2\",\"6\",\"test:b\",\"phx_leave\",{}]");
    expect(h, "2", "6", "test:b", "phx_reply", NULL);
    expect(h, "2", "2", "test:b", "phx_close", NULL);
    cr_assert_eq(rt_subscriber_count("extra:t"), 0);

    /* A timer whose ref the channel watches reaches its handle_info. */
    client(h, "[\"1\",\"7\",\"test:a\",\"timer\",{}]");
    expect(h, "1", "7", "test:a", "phx_reply", NULL);
    for (int i = 0; i < 1000 && pending(h) == 0; i++) {
        rt_exec_run(&ex, 100);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    expect(h, "1", NULL, "test:a", "tick", "{}");
    host_free(h);
}
