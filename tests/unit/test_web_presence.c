/*
 * test_web_presence.c — Phoenix Presence (web/presence.h) through the
 * user:<id> topic (web/user_channel.c): presence_state after the join
 * reply, presence_diff joins and leaves, several devices of one user,
 * a connection that dies without leaving (its DOWN), a tracker that ends
 * when empty and a new one for the next join, and notifications to every
 * connection of a user through the fast lane.
 *
 * Same harness as test_web_socket.c: host processes pinned to an
 * executor driven by the test thread own real sockets with a capturing
 * output; the trackers run on the schedulers.
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

static void setup(void)
{
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    rt_exec_init(&ex, ex_wake, NULL);
    memset(&router, 0, sizeof router);
    cr_assert_eq(web_channel_router_add(&router, &web_user_channel), WEB_OK);
}

static void teardown(void)
{
    pump();
    rt_runtime_stop();
    rt_exec_destroy(&ex);
}

TestSuite(web_presence, .init = setup, .fini = teardown, .timeout = 30);

/* The next message must be event on topic; returns its payload (decref). */
static json_t *next_event(host_t *h, const char *topic, const char *event)
{
    json_t *j = next_json(h, NULL);
    cr_assert(json_is_array(j), "V2 expected");
    cr_assert_str_eq(json_string_value(json_array_get(j, 2)), topic);
    cr_assert_str_eq(json_string_value(json_array_get(j, 3)), event,
                     "wanted %s, got %s", event, json_dumps(j, JSON_COMPACT));
    json_t *p = json_incref(json_array_get(j, 4));
    json_decref(j);
    return p;
}

/* metas of key in a presence_state or in a diff's joins/leaves. */
static json_t *metas(json_t *group, const char *key)
{
    return json_object_get(json_object_get(group, key), "metas");
}

static const char *ref_of(json_t *meta)
{
    return json_string_value(json_object_get(meta, "phx_ref"));
}

static bool tracker_gone(const char *topic)
{
    char name[128];
    snprintf(name, sizeof name, "presence:%s", topic);
    for (int i = 0; i < 3000; i++) {
        if (rt_whereis(name) == RT_NOPID)
            return true;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Joins user:<user> and checks reply, presence_state (returned) and the
 * diff of its own join. */
static json_t *join_user(host_t *h, const char *jref)
{
    char msg[256], topic[64];
    snprintf(topic, sizeof topic, "user:%s", h->user);
    snprintf(msg, sizeof msg, "[\"%s\",\"%s\",\"%s\",\"phx_join\",{}]", jref, jref, topic);
    client(h, msg);
    await_msgs(h, 3);
    expect(h, jref, jref, topic, "phx_reply", "{\"status\":\"ok\",\"response\":{}}");
    json_t *state = next_event(h, topic, "presence_state");
    json_t *diff = next_event(h, topic, "presence_diff");
    json_t *mine = json_array_get(metas(json_object_get(diff, "joins"), h->user), 0);
    cr_assert_not_null(mine);
    cr_assert(json_is_integer(json_object_get(mine, "online_at")));
    cr_assert(ref_of(mine) && ref_of(mine)[0]);
    /* My own meta is in the state I got. */
    bool found = false;
    json_t *m;
    size_t i;
    json_array_foreach(metas(state, h->user), i, m)
        found |= strcmp(ref_of(m), ref_of(mine)) == 0;
    cr_assert(found, "own meta missing from presence_state");
    json_decref(diff);
    return state;
}

Test(web_presence, join_gets_state_then_diff)
{
    host_t *a = host_new(PHX_V2, "alice");
    json_t *st = join_user(a, "1");
    cr_assert_eq(json_object_size(st), 1);
    cr_assert_eq(json_array_size(metas(st, "alice")), 1);
    json_decref(st);
    expect_none(a);

    char *js = NULL;
    cr_assert_eq(web_presence_list_sync("user:alice", &js), WEB_OK);
    json_t *l = json_loads(js, 0, NULL);
    cr_assert_eq(json_array_size(metas(l, "alice")), 1);
    json_decref(l);
    free(js);
    host_free(a);
    cr_assert(tracker_gone("user:alice"), "the tracker ends once empty");
    cr_assert_eq(web_presence_list_sync("user:alice", &js), WEB_OK);
    cr_assert_str_eq(js, "{}");
    free(js);
}

Test(web_presence, only_own_topic)
{
    host_t *b = host_new(PHX_V2, "bob");
    client(b, "[\"1\",\"1\",\"user:alice\",\"phx_join\",{}]");
    expect(b, "1", "1", "user:alice", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"unauthorized\"}}");
    client(b, "[\"2\",\"2\",\"user:\",\"phx_join\",{}]");
    expect(b, "2", "2", "user:", "phx_reply",
           "{\"status\":\"error\",\"response\":{\"reason\":\"unauthorized\"}}");
    expect_none(b);
    host_free(b);
}

Test(web_presence, devices_join_and_leave)
{
    host_t *d1 = host_new(PHX_V2, "alice"), *d2 = host_new(PHX_V2, "alice");
    json_decref(join_user(d1, "1"));
    json_t *st = join_user(d2, "5");
    cr_assert_eq(json_array_size(metas(st, "alice")), 2, "both devices in the state");
    json_decref(st);
    /* d1 sees d2 arrive. */
    await_msgs(d1, 1);
    json_t *diff = next_event(d1, "user:alice", "presence_diff");
    json_t *d2meta = json_array_get(metas(json_object_get(diff, "joins"), "alice"), 0);
    char d2ref[64];
    snprintf(d2ref, sizeof d2ref, "%s", ref_of(d2meta));
    cr_assert_eq(json_object_size(json_object_get(diff, "leaves")), 0);
    json_decref(diff);

    /* d2 leaves: d1 sees exactly d2's meta leave. */
    client(d2, "[\"5\",\"9\",\"user:alice\",\"phx_leave\",{}]");
    expect(d2, "5", "9", "user:alice", "phx_reply", NULL);
    expect(d2, "5", "5", "user:alice", "phx_close", NULL);
    await_msgs(d1, 1);
    diff = next_event(d1, "user:alice", "presence_diff");
    json_t *left = metas(json_object_get(diff, "leaves"), "alice");
    cr_assert_eq(json_array_size(left), 1);
    cr_assert_str_eq(ref_of(json_array_get(left, 0)), d2ref);
    cr_assert_eq(json_object_size(json_object_get(diff, "joins")), 0);
    json_decref(diff);
    pump();
    expect_none(d2); /* it left: no more presence for it */
    host_free(d2);
    host_free(d1);
    cr_assert(tracker_gone("user:alice"));
}

/* A connection whose process is killed, so that it never leaves: its
 * channel's terminate still runs (channel.h rule 6) and its meta leaves.
 * (This case used to drive the per-topic tracker process's TRACK call
 * from a bare process; presence is a shared table now, tracked only from
 * channels, so the dying tracker is a real connection.) */
Test(web_presence, dead_connection_leaves)
{
    host_t *a = host_new(PHX_V2, "alice");
    json_decref(join_user(a, "1"));
    host_t *g = host_new(PHX_V2, "alice");
    json_decref(join_user(g, "1"));
    await_msgs(a, 1);
    json_t *diff = next_event(a, "user:alice", "presence_diff");
    json_t *gm = json_array_get(metas(json_object_get(diff, "joins"), "alice"), 0);
    cr_assert(json_is_integer(json_object_get(gm, "online_at")));
    char gref[64];
    snprintf(gref, sizeof gref, "%s", ref_of(gm));
    json_decref(diff);

    rt_exit(g->pid, RT_KILL);
    await_msgs(a, 1);
    diff = next_event(a, "user:alice", "presence_diff");
    json_t *left = metas(json_object_get(diff, "leaves"), "alice");
    cr_assert_eq(json_array_size(left), 1);
    cr_assert_str_eq(ref_of(json_array_get(left, 0)), gref);
    cr_assert_eq(json_object_size(json_object_get(diff, "joins")), 0);
    json_decref(diff);
    cr_assert_null(g->s, "the killed connection's socket was freed");
    for (size_t i = 0; i < g->n; i++)
        free(g->out[i].text);
    free(g);
    host_free(a);
}

Test(web_presence, reconnect_gets_fresh_state)
{
    host_t *a = host_new(PHX_V2, "alice"), *b = host_new(PHX_V2, "alice");
    json_decref(join_user(a, "1"));
    json_decref(join_user(b, "1"));
    await_msgs(a, 1);
    json_decref(next_event(a, "user:alice", "presence_diff"));
    /* b drops and comes back (a new connection, a new meta). */
    host_free(b);
    await_msgs(a, 1);
    json_t *diff = next_event(a, "user:alice", "presence_diff");
    cr_assert_eq(json_array_size(metas(json_object_get(diff, "leaves"), "alice")), 1);
    json_decref(diff);
    b = host_new(PHX_V2, "alice");
    json_t *st = join_user(b, "3");
    cr_assert_eq(json_array_size(metas(st, "alice")), 2);
    json_decref(st);
    host_free(b);
    host_free(a);
}

Test(web_presence, notify_reaches_every_device)
{
    host_t *d1 = host_new(PHX_V2, "alice"), *d2 = host_new(PHX_V1, "alice");
    host_t *other = host_new(PHX_V2, "bob");
    json_decref(join_user(d1, "1"));
    client(d2, "{\"topic\":\"user:alice\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"1\","
               "\"join_ref\":\"1\"}");
    await_msgs(d2, 3);
    d2->rd = d2->n; /* reply, state, diff: checked in the V2 tests */
    await_msgs(d1, 1);
    d1->rd = d1->n;
    json_decref(join_user(other, "1"));

    int n = web_user_notify("alice", "ring", "{\"from\":\"bob\"}", 14);
    cr_assert_eq(n, 2);
    await_msgs(d1, 1);
    await_msgs(d2, 1);
    out_item_t it;
    json_decref(next_json(d1, &it));
    cr_assert(it.frame);
    cr_assert_str_eq(it.text, "[null,null,\"user:alice\",\"ring\",{\"from\":\"bob\"}]");
    json_decref(next_json(d2, &it));
    cr_assert_str_eq(it.text, "{\"topic\":\"user:alice\",\"event\":\"ring\",\"payload\":"
                              "{\"from\":\"bob\"},\"ref\":null,\"join_ref\":null}");
    pump();
    expect_none(other);
    host_free(d1);
    host_free(d2);
    host_free(other);
}
