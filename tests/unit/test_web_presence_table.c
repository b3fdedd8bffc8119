/*
 * test_web_presence_table.c — the shared presence table (web/presence.c)
 * and the compact socket and channel state (web/socket.c) that replaced a
 * tracker process per topic and per-socket JSON objects: what the other
 * web tests do not reach. Presence through a test handler ("pres:") that
 * tracks any key with any meta: keys grouped in the order they came and
 * metas in tracking order, a client's own phx_ref replaced, keys that
 * need escaping, the table growing under many topics without reordering
 * a topic, every meta gone once its channel is; claims kept as text and
 * parsed when a handler asks; sockets whose output functions cannot all
 * be interned.
 *
 * The web tests' harness (web_harness.h: hosts pinned to an executor
 * driven by the test thread), with per-host claims, router and output.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"
#include "rt/rt.h"
#include "web/channel.h"
#include "web/presence.h"
#include "web/socket.h"

#include "web_harness.h"

/* ---- the "pres:" handler ------------------------------------------------------
 * join payload {"key": K, "meta": M}: tracks K with M (web_presence_track,
 * the json_t path); {"claims": true}: answers the join with the token's
 * claims instead (no presence). The channel's state is the presence
 * handle, as in user_channel.c. */

static web_ch_result_t pres_join(web_channel_t *ch, const char *topic, json_t *payload,
                                 void **state)
{
    if (json_is_true(json_object_get(payload, "claims"))) {
        web_channel_join_ok(ch, web_channel_claims(ch));
        return WEB_CH_OK;
    }
    web_channel_join_ok(ch, NULL);
    web_presence_t p = {0};
    const char *key = json_string_value(json_object_get(payload, "key"));
    json_t *meta = json_object_get(payload, "meta");
    int rc = web_presence_track(&p, ch, key ? key : "k", meta);
    cr_assert_eq(rc, WEB_OK, "track: %s", web_strerror(rc));
    *state = p.entry;
    return WEB_CH_OK;
}

static void pres_terminate(web_channel_t *ch, void *state, web_ch_exit_t why)
{
    web_presence_t p = {.entry = state};
    web_presence_untrack(&p, ch);
    web_presence_untrack(&p, ch); /* a second untrack of a handle is a no-op */
}

static const web_channel_handler_t pres_channel = WEB_CHANNEL_HANDLER(
    .prefix = "pres:", .join = pres_join, .terminate = pres_terminate);

static void setup(void)
{
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    rt_exec_init(&ex, ex_wake, NULL);
    memset(&router, 0, sizeof router);
    cr_assert_eq(web_channel_router_add(&router, &pres_channel), WEB_OK);
    cr_assert_eq(web_presence_metas(), 0);
}

static void teardown(void)
{
    pump();
    rt_runtime_stop();
    rt_exec_destroy(&ex);
}

TestSuite(web_presence_table, .init = setup, .fini = teardown, .timeout = 60);

/* The next message must be event on topic; returns its payload (decref). */
static json_t *next_event(host_t *h, const char *topic, const char *event)
{
    json_t *j = next_json(h, NULL);
    cr_assert(json_is_array(j), "V2 expected");
    cr_assert_str_eq(json_string_value(json_array_get(j, 2)), topic);
    cr_assert_str_eq(json_string_value(json_array_get(j, 3)), event, "wanted %s, got %s", event,
                     json_string_value(json_array_get(j, 3)));
    json_t *p = json_incref(json_array_get(j, 4));
    json_decref(j);
    return p;
}

static const char *ref_of(json_t *meta)
{
    return json_string_value(json_object_get(meta, "phx_ref"));
}

/* h joins topic tracking key with meta_json; returns presence_state
 * (decref) after checking the reply and the diff of its own join. */
static json_t *track(host_t *h, const char *topic, const char *key, const char *meta_json)
{
    json_t *msg = json_pack("[ssss{s:s,s:o}]", "1", "1", topic, "phx_join", "key", key, "meta",
                            json_loads(meta_json, 0, NULL));
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    size_t before = pending(h);
    client(h, text);
    free(text);
    await_msgs(h, before + 3);
    expect(h, "1", "1", topic, "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    json_t *state = next_event(h, topic, "presence_state");
    json_t *diff = next_event(h, topic, "presence_diff");
    cr_assert_not_null(json_object_get(json_object_get(diff, "joins"), key));
    json_decref(diff);
    return state;
}

static void drain(host_t *h)
{
    pump();
    h->rd = h->n;
}

/* Keys in the order they first came; each key's metas in tracking order;
 * the state's keys are an object whose member order jansson keeps. */
Test(web_presence_table, keys_grouped_in_tracking_order)
{
    host_t *h1 = host_new(PHX_V2, "u1"), *h2 = host_new(PHX_V2, "u2"),
           *h3 = host_new(PHX_V2, "u3"), *h4 = host_new(PHX_V2, "u4");
    json_decref(track(h1, "pres:t", "a", "{\"n\":1}"));
    json_decref(track(h2, "pres:t", "b", "{\"n\":2}"));
    json_decref(track(h3, "pres:t", "a", "{\"n\":3}"));
    json_t *st = track(h4, "pres:t", "c", "{\"n\":4}");
    char *js = json_dumps(st, JSON_COMPACT | JSON_PRESERVE_ORDER);
    /* phx_refs aside, exactly this text: a(1,3), b(2), c(4). */
    const char *want[] = {"\"a\":{\"metas\":[{\"n\":1,", "{\"n\":3,", "\"b\":{\"metas\":[{\"n\":2,",
                          "\"c\":{\"metas\":[{\"n\":4,"};
    const char *at = js;
    for (size_t i = 0; i < 4; i++) {
        const char *f = strstr(at, want[i]);
        cr_assert_not_null(f, "%s not after position %td in %s", want[i], at - js, js);
        at = f + 1;
    }
    free(js);
    json_decref(st);
    char *l = NULL;
    cr_assert_eq(web_presence_list_sync("pres:t", &l), WEB_OK);
    json_t *lj = json_loads(l, 0, NULL);
    cr_assert_eq(json_object_size(lj), 3);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(lj, "a"), "metas")), 2);
    json_decref(lj);
    free(l);
    cr_assert_eq(web_presence_metas(), 4);
    host_free(h1);
    host_free(h2);
    host_free(h3);
    host_free(h4);
    cr_assert_eq(web_presence_metas(), 0);
    cr_assert_eq(web_presence_list_sync("pres:t", &l), WEB_OK);
    cr_assert_str_eq(l, "{}");
    free(l);
}

Test(web_presence_table, own_phx_ref_is_replaced_and_empty_meta_works)
{
    host_t *h = host_new(PHX_V2, "u1"), *g = host_new(PHX_V2, "u2");
    json_t *st = track(h, "pres:r", "k", "{\"phx_ref\":\"mine\",\"x\":1}");
    json_t *m = json_array_get(json_object_get(json_object_get(st, "k"), "metas"), 0);
    cr_assert_eq(json_integer_value(json_object_get(m, "x")), 1);
    cr_assert(ref_of(m) && strcmp(ref_of(m), "mine") != 0 && ref_of(m)[0] == 'F');
    cr_assert_eq(json_object_size(m), 2);
    char first[64];
    snprintf(first, sizeof first, "%s", ref_of(m));
    json_decref(st);
    st = track(g, "pres:r", "k", "{}");
    json_t *ms = json_object_get(json_object_get(st, "k"), "metas");
    cr_assert_eq(json_array_size(ms), 2);
    cr_assert_str_eq(ref_of(json_array_get(ms, 0)), first);
    cr_assert_eq(json_object_size(json_array_get(ms, 1)), 1, "{} gets only its phx_ref");
    cr_assert_str_neq(ref_of(json_array_get(ms, 1)), first);
    json_decref(st);
    host_free(g);
    host_free(h);
}

Test(web_presence_table, keys_that_need_escaping)
{
    host_t *h = host_new(PHX_V2, "u1");
    const char *key = "q\"uote\\back\nline\x01 é";
    json_t *st = track(h, "pres:e", key, "{}");
    cr_assert_not_null(json_object_get(st, key), "the key round-trips through JSON");
    json_decref(st);
    host_free(h);
}

/* Many topics: the stripes' tables grow (and rehash) while a topic holds
 * metas; its order survives, and every meta goes with its channel. */
Test(web_presence_table, growth_keeps_order_and_everything_leaves)
{
    host_t *a = host_new(PHX_V2, "ua"), *b = host_new(PHX_V2, "ub");
    json_decref(track(a, "pres:big", "first", "{}"));
    json_decref(track(b, "pres:big", "second", "{}"));
    enum { HOSTS = 30, PER = 100 };
    host_t *hs[HOSTS];
    for (int i = 0; i < HOSTS; i++) {
        hs[i] = host_new(PHX_V2, "many");
        for (int k = 0; k < PER; k++) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "[\"1\",\"1\",\"pres:g%d\",\"phx_join\",{\"key\":\"k%d\",\"meta\":{}}]",
                     i * PER + k, k);
            msg_arg_t m = {hs[i], msg, true};
            cr_assert_eq(rt_exec_call(&ex, hs[i]->pid, run_msg, &m), RT_OK);
        }
        drain(hs[i]);
    }
    cr_assert_eq(web_presence_metas(), 2 + HOSTS * PER);
    char *l = NULL;
    cr_assert_eq(web_presence_list_sync("pres:big", &l), WEB_OK);
    cr_assert(strstr(l, "\"first\"") && strstr(l, "\"second\"") &&
              strstr(l, "\"first\"") < strstr(l, "\"second\""), "order kept: %s", l);
    free(l);
    cr_assert_eq(web_presence_list_sync("pres:g1234", &l), WEB_OK);
    cr_assert(strstr(l, "\"k34\""), "%s", l);
    free(l);
    for (int i = 0; i < HOSTS; i++)
        host_free(hs[i]);
    cr_assert_eq(web_presence_metas(), 2);
    host_free(a);
    host_free(b);
    cr_assert_eq(web_presence_metas(), 0);
}

/* The claims are kept as text and parsed when a handler asks: the value
 * it gets is the object the socket was given, whatever its members. */
Test(web_presence_table, claims_parsed_on_demand)
{
    json_t *flat = json_pack("{sssssIsbsn}", "sub", "alice", "room", "r\"1", "exp",
                             (json_int_t)1700000000, "admin", 1, "nothing");
    json_t *nested = json_pack("{sss{si}s[i]sf}", "sub", "bob", "obj", "a", 1, "arr", 2, "pi",
                               3.5);
    json_t *cases[] = {flat, nested};
    for (size_t i = 0; i < 2; i++) {
        host_t *h = host_new_with(PHX_V2, "x", cases[i], NULL, NULL);
        client(h, "[\"1\",\"1\",\"pres:c\",\"phx_join\",{\"claims\":true}]");
        json_t *j = next_json(h, NULL);
        json_t *resp = json_object_get(json_array_get(j, 4), "response");
        cr_assert(json_equal(resp, cases[i]), "claims %s came back as %s",
                  json_dumps(cases[i], JSON_COMPACT), json_dumps(resp, JSON_COMPACT));
        json_decref(j);
        host_free(h);
    }
    json_decref(flat);
    json_decref(nested);
}

/* More distinct (output, router) pairs than the intern table holds: the
 * sockets past it keep their own copy and work the same. */
static int other_text(void *ctx, const char *data, size_t len)
{
    host_t *h = ctx;
    if (h->n < OUT_MAX)
        h->out[h->n++] = (out_item_t){.text = strndup(data, len)};
    return 0;
}

Test(web_presence_table, output_tables_beyond_the_intern_table)
{
    enum { N = 40 };
    static web_channel_router_t routers[N];
    host_t *hs[N];
    web_socket_out_t out = {.send_text = other_text, .send_frame = cap_frame, .close = cap_close};
    for (int i = 0; i < N; i++) {
        memset(&routers[i], 0, sizeof routers[i]);
        cr_assert_eq(web_channel_router_add(&routers[i], &pres_channel), WEB_OK);
        hs[i] = host_new_with(PHX_V2, "u", NULL, &routers[i], &out);
        /* ctx is the host, as with the capturing output */
    }
    for (int i = 0; i < N; i++) {
        client(hs[i], "[null,\"7\",\"phoenix\",\"heartbeat\",{}]");
        expect(hs[i], NULL, "7", "phoenix", "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    }
    for (int i = 0; i < N; i++)
        host_free(hs[i]);
}
