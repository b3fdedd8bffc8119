/*
 * test_media_janus.c — the Janus media client (media/janus.h) against a
 * real Janus: session creation on connect, attach videoroom, create and
 * destroy a room, detach, events routed to the handle's owner, handles
 * owned by a registered name (they survive the owner's death, follow the
 * name to its next holder and go with JANUS_RELEASE), named requests and
 * messages parked for an absent owner, wss:// (TLS, certificate checked),
 * and reconnection
 * after Janus is killed (kill -9) and started again.
 *
 * Needs a Janus to talk to, which only tests/media/run.sh provides (in a
 * private network namespace): it sets ROOST_JANUS_URL, ROOST_JANUS_CTL and
 * ROOST_JANUS_DIR. Without them every test is skipped with a message, so
 * a plain `make unit` stays green on a machine without Janus:
 *
 *   bash tests/media/run.sh build/tests/test_media_janus
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media/janus.h"
#include "rt/rt.h"

static rt_inbox_t *ib;
static rt_pid_t media;

static const char *url(void) { return getenv("ROOST_JANUS_URL"); }

static void need_janus(void)
{
    if (!url() || !getenv("ROOST_JANUS_CTL") || !getenv("ROOST_JANUS_DIR"))
        cr_skip_test("no Janus here: run `bash tests/media/run.sh %s` to test the media client",
                     "build/tests/test_media_janus");
}

static int janus_ctl(const char *what)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s' %s '%s' >/dev/null 2>&1", getenv("ROOST_JANUS_CTL"),
             what, getenv("ROOST_JANUS_DIR"));
    return system(cmd);
}

/* The next info message with this tag (others are dropped), or NULL. */
static rt_msg_t *wait_tag(uint32_t tag, int ms)
{
    uint64_t end = rt_now_ms() + (uint64_t)ms;
    while (rt_now_ms() < end) {
        rt_msg_t *m = rt_inbox_recv(ib, (int)(end - rt_now_ms()));
        if (!m)
            return NULL;
        if (m->tag == tag)
            return m;
        rt_msg_free(m);
    }
    return NULL;
}

static void setup(void)
{
    need_janus();
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    ib = rt_inbox_open(0);
    cr_assert_not_null(ib);
    janus_config_t cfg = {.url = url(), .notify = rt_inbox_pid(ib), .keepalive_ms = 1000,
                          .backoff_min_ms = 100, .backoff_max_ms = 1000, .holdover_ms = 200};
    cr_assert_eq(rt_spawn(&janus_behaviour, &cfg, NULL, &media), RT_OK);
    rt_msg_t *up = wait_tag(JANUS_UP, 5000);
    cr_assert_not_null(up, "no JANUS_UP: the client did not create a session");
    cr_assert_neq(up->a, 0);
    rt_msg_free(up);
}

static void teardown(void)
{
    if (!ib)
        return;
    rt_inbox_close(ib);
    ib = NULL;
    rt_runtime_stop();
}

/* A request through the client; returns Janus's answer (decref it). */
static json_t *request(const char *json)
{
    rt_msg_t *reply = NULL;
    rt_msg_t *req = janus_req_new(json);
    req->a = rt_inbox_pid(ib); /* the inbox owns the handles it attaches */
    int rc = rt_call_sync(media, req, 5000, &reply);
    cr_assert_eq(rc, RT_OK, "request %s: %s", json, rt_strerror(rc));
    cr_assert_eq(reply->tag, JANUS_REPLY);
    json_t *o = json_loads(reply->data, 0, NULL);
    cr_assert_not_null(o);
    rt_msg_free(reply);
    return o;
}

static uint64_t attach(void)
{
    json_t *a = request("{\"janus\":\"attach\",\"plugin\":\"janus.plugin.videoroom\"}");
    cr_assert_str_eq(json_string_value(json_object_get(a, "janus")), "success");
    uint64_t h = (uint64_t)json_integer_value(json_object_get(json_object_get(a, "data"), "id"));
    cr_assert_neq(h, 0);
    json_decref(a);
    return h;
}

static uint64_t create_room(uint64_t h)
{
    char req[256];
    snprintf(req, sizeof req,
             "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"create\",\"publishers\":6}}",
             (unsigned long long)h);
    json_t *r = request(req);
    json_t *data = json_object_get(json_object_get(r, "plugindata"), "data");
    cr_assert_str_eq(json_string_value(json_object_get(data, "videoroom")), "created");
    uint64_t room = (uint64_t)json_integer_value(json_object_get(data, "room"));
    cr_assert_neq(room, 0);
    json_decref(r);
    return room;
}

/* Destroys a VideoRoom through handle h; Janus's answer must say so. */
static void destroy_room(uint64_t h, uint64_t room)
{
    char req[256];
    snprintf(req, sizeof req,
             "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"destroy\",\"room\":%llu}}",
             (unsigned long long)h, (unsigned long long)room);
    json_t *d = request(req);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(d, "plugindata"), "data"), "videoroom")),
                     "destroyed");
    json_decref(d);
}

static void status(bool *up, uint64_t *session)
{
    rt_msg_t *reply = NULL;
    rt_msg_t *q = rt_msg_new(JANUS_STATUS);
    cr_assert_eq(rt_call_sync(media, q, 5000, &reply), RT_OK);
    *up = reply->a;
    *session = reply->b;
    rt_msg_free(reply);
}

static void create_attach_room_destroy(void)
{
    bool up;
    uint64_t s;
    status(&up, &s);
    cr_assert(up);
    uint64_t h = attach();
    uint64_t room = create_room(h);

    char req[256];
    snprintf(req, sizeof req,
             "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"exists\",\"room\":%llu}}",
             (unsigned long long)h, (unsigned long long)room);
    json_t *e = request(req);
    cr_assert(json_is_true(json_object_get(json_object_get(json_object_get(e, "plugindata"), "data"),
                                           "exists")));
    json_decref(e);

    destroy_room(h, room);

    /* Janus's own errors come back as answers, not as failures. */
    snprintf(req, sizeof req,
             "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"destroy\",\"room\":%llu}}",
             (unsigned long long)h, (unsigned long long)room);
    json_t *d2 = request(req);
    cr_assert_not_null(json_object_get(json_object_get(json_object_get(d2, "plugindata"), "data"),
                                       "error_code"));
    json_decref(d2);

    snprintf(req, sizeof req, "{\"janus\":\"detach\",\"handle_id\":%llu}", (unsigned long long)h);
    json_t *x = request(req);
    cr_assert_str_eq(json_string_value(json_object_get(x, "janus")), "success");
    json_decref(x);

    /* Keepalives (every second here) keep the session; it is still there. */
    rt_msg_t *down = wait_tag(JANUS_DOWN, 2500);
    cr_assert_null(down, "session lost while idle");
    status(&up, &s);
    cr_assert(up);
}

/* A process registered under a name (spawn option) that forwards what
 * the media client sends it to the test's inbox. */
static rt_reason_t *fwd_init(void *arg, void **state)
{
    *state = arg;
    return NULL;
}

static void fwd_info(void *state, rt_msg_t *m)
{
    rt_msg_t *out = rt_msg_new(m->tag);
    if (!out)
        return;
    out->a = m->a;
    out->flags = m->flags & RT_MF_ERROR;
    if (m->data && (m->tag == JANUS_EVENT || m->tag == JANUS_ANSWER)) {
        const char *text = m->flags & RT_MF_ERROR ? ((rt_reason_t *)m->data)->text : m->data;
        rt_msg_set_data(out, strdup(text), RT_OWN_FREE);
    }
    rt_send_msg((rt_pid_t)(uintptr_t)state, out);
}

static const rt_behaviour_t fwd_behaviour = RT_BEHAVIOUR(.name = "fwd", .init = fwd_init,
                                                         .handle_info = fwd_info);

#define OWNER_NAME "room:test-owner"

/* Waits for the owner's init through its ack alone: what it forwards
 * meanwhile (parked answers, the moment it holds the name) stays queued. */
static rt_pid_t spawn_owner(void)
{
    rt_spawn_opts_t o = {.name = OWNER_NAME, .flags = RT_SPAWN_ACK};
    rt_pid_t pid;
    cr_assert_eq(rt_inbox_spawn(ib, &fwd_behaviour, (void *)(uintptr_t)rt_inbox_pid(ib), &o, &pid),
                 RT_OK);
    rt_msg_t *ack = rt_inbox_recv_match(ib, RT_MSG_ACK, o.ack_ref, 2000);
    cr_assert_not_null(ack);
    cr_assert_not(ack->flags & RT_MF_ERROR);
    rt_msg_free(ack);
    cr_assert_eq(rt_whereis(OWNER_NAME), pid);
    return pid;
}

static const char *janus_kind(json_t *o) { return json_string_value(json_object_get(o, "janus")); }

static void handles_owned_by_name(void)
{
    rt_pid_t first = spawn_owner();
    json_t *a = request("{\"janus\":\"attach\",\"plugin\":\"janus.plugin.videoroom\",\"owner\":\""
                        OWNER_NAME "\"}");
    cr_assert_str_eq(janus_kind(a), "success");
    uint64_t h = (uint64_t)json_integer_value(json_object_get(json_object_get(a, "data"), "id"));
    json_decref(a);
    cr_assert_neq(h, 0);

    /* The owner crashes: the handle stays (a monitored owner's would be
     * detached). */
    cr_assert_eq(rt_exit(first, RT_KILL), RT_OK);
    uint64_t end = rt_now_ms() + 2000;
    while (rt_whereis(OWNER_NAME) && rt_now_ms() < end)
        rt_inbox_recv(ib, 5);
    cr_assert_eq(rt_whereis(OWNER_NAME), RT_NOPID);
    char req[256];
    snprintf(req, sizeof req, "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"list\"}}",
             (unsigned long long)h);
    json_t *l = request(req);
    cr_assert_str_eq(janus_kind(l), "success", "the handle was detached with its owner");
    json_decref(l);

    /* JANUS_RELEASE detaches every handle of the name (the next holder
     * of the name is a restarted owner; a room that ended has none). */
    rt_pid_t second = spawn_owner();
    rt_msg_t *rel = janus_release_new(OWNER_NAME, 0);
    cr_assert_not_null(rel);
    cr_assert_eq(rt_send_msg(media, rel), RT_OK);
    const char *kind = NULL;
    end = rt_now_ms() + 3000;
    do {
        rt_msg_free(rt_inbox_recv(ib, 20));
        json_t *x = request(req);
        kind = strcmp(janus_kind(x), "error") == 0 ? "error" : "success";
        json_decref(x);
    } while (strcmp(kind, "error") != 0 && rt_now_ms() < end);
    cr_assert_str_eq(kind, "error", "the handle survived JANUS_RELEASE");
    rt_exit(second, RT_KILL);
}

static void reconnects_after_janus_is_killed(void)
{
    bool up;
    uint64_t s1, s2;
    status(&up, &s1);
    uint64_t h = attach();
    create_room(h);

    cr_assert_eq(janus_ctl("stop"), 0);
    /* The handle's owner and the notify pid (both the inbox) hear of it. */
    rt_msg_t *down = wait_tag(JANUS_DOWN, 5000);
    cr_assert_not_null(down, "no JANUS_DOWN after Janus was killed");
    rt_msg_free(down);
    down = wait_tag(JANUS_DOWN, 1000);
    cr_assert_not_null(down, "only one JANUS_DOWN (want handle owner + notify)");
    rt_msg_free(down);

    /* While Janus is away requests fail at once, they do not hang. */
    rt_msg_t *reply = NULL;
    int rc = rt_call_sync(media, janus_req_new("{\"janus\":\"attach\",\"plugin\":\"janus.plugin.videoroom\"}"),
                          5000, &reply);
    cr_assert_eq(rc, RT_EEXIT, "request while down: %s", rt_strerror(rc));
    cr_assert_str_eq(rt_msg_reason(reply)->text, "janus_unavailable");
    rt_msg_free(reply);
    status(&up, &s2);
    cr_assert_not(up);

    cr_assert_eq(janus_ctl("start"), 0);
    rt_msg_t *again = wait_tag(JANUS_UP, 10000);
    cr_assert_not_null(again, "no JANUS_UP after Janus came back");
    rt_msg_free(again);
    status(&up, &s2);
    cr_assert(up);
    cr_assert_neq(s1, s2, "a new Janus gives a new session");

    uint64_t h2 = attach();
    create_room(h2);
}


/* A named request's answer (JANUS_ANSWER) goes to whoever holds the name
 * when it arrives; while nobody does, it and the events of the name's
 * handles wait (in order) and reach the next holder. */
static void send_named_req(const char *json, uint64_t rid, int timeout_ms)
{
    rt_msg_t *m = janus_req_named(json, rid, timeout_ms);
    cr_assert_not_null(m);
    cr_assert_eq(rt_send_msg(media, m), RT_OK);
}

static json_t *status_json(void)
{
    rt_msg_t *reply = NULL;
    cr_assert_eq(rt_call_sync(media, rt_msg_new(JANUS_STATUS), 5000, &reply), RT_OK);
    cr_assert_not_null(reply->data);
    json_t *o = json_loads(reply->data, 0, NULL);
    cr_assert_not_null(o);
    rt_msg_free(reply);
    return o;
}

static json_int_t status_int(const char *key)
{
    json_t *o = status_json();
    json_int_t v = json_integer_value(json_object_get(o, key));
    json_decref(o);
    return v;
}

static void named_requests_reach_the_next_holder(void)
{
    rt_pid_t first = spawn_owner();
    /* An attach by name: the handle belongs to the name (no "owner"). */
    send_named_req("{\"janus\":\"attach\",\"plugin\":\"janus.plugin.videoroom\",\"reply_to\":\""
                   OWNER_NAME "\"}", 41, 5000);
    rt_msg_t *a = wait_tag(JANUS_ANSWER, 5000);
    cr_assert_not_null(a, "no JANUS_ANSWER to the named requester");
    cr_assert_eq(a->a, 41);
    cr_assert_not(a->flags & RT_MF_ERROR, "attach failed: %s", (char *)a->data);
    json_t *aj = json_loads(a->data, 0, NULL);
    cr_assert_str_eq(janus_kind(aj), "success");
    uint64_t h = (uint64_t)json_integer_value(json_object_get(json_object_get(aj, "data"), "id"));
    json_decref(aj);
    rt_msg_free(a);
    cr_assert_neq(h, 0);

    /* The holder dies. A request asked now (as a crashed RoomServer's was
     * in flight) and the handle's own events wait for the name. */
    cr_assert_eq(rt_exit(first, RT_KILL), RT_OK);
    uint64_t end = rt_now_ms() + 2000;
    while (rt_whereis(OWNER_NAME) && rt_now_ms() < end)
        rt_msg_free(rt_inbox_recv(ib, 5));
    cr_assert_eq(rt_whereis(OWNER_NAME), RT_NOPID);
    char req[320];
    snprintf(req, sizeof req,
             "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"create\","
             "\"publishers\":4,\"description\":\"parked\"},\"reply_to\":\"" OWNER_NAME "\"}",
             (unsigned long long)h);
    send_named_req(req, 42, 5000);
    /* Bad requests are answered too (here: parked as well). */
    send_named_req("{\"reply_to\":\"" OWNER_NAME "\"}", 43, 5000);
    end = rt_now_ms() + 5000;
    while (status_int("parked") < 2 && rt_now_ms() < end)
        rt_msg_free(rt_inbox_recv(ib, 10)); /* bounded poll: parking has no event */
    cr_assert_eq(status_int("parked"), 2, "the answers were not kept for the absent owner");
    cr_assert_null(wait_tag(JANUS_ANSWER, 50), "an answer went nowhere useful");

    rt_pid_t second = spawn_owner();
    /* Both reach it (in the order they were answered: the bad one at once). */
    uint64_t room = 0;
    bool got_bad = false;
    for (int i = 0; i < 2; i++) {
        rt_msg_t *c = wait_tag(JANUS_ANSWER, 5000);
        cr_assert_not_null(c, "the next holder of the name did not get the parked answers");
        if (c->a == 43) {
            cr_assert(c->flags & RT_MF_ERROR);
            cr_assert_str_eq((char *)c->data, "janus_bad_request");
            got_bad = true;
        } else {
            cr_assert_eq(c->a, 42);
            json_t *cj = json_loads(c->data, 0, NULL);
            json_t *data = json_object_get(json_object_get(cj, "plugindata"), "data");
            cr_assert_str_eq(json_string_value(json_object_get(data, "videoroom")), "created");
            room = (uint64_t)json_integer_value(json_object_get(data, "room"));
            json_decref(cj);
        }
        rt_msg_free(c);
    }
    cr_assert(got_bad && room != 0);
    cr_assert_eq(status_int("parked"), 0);

    /* JANUS_RELEASE with the VideoRoom: it is destroyed, then the handles
     * go. Checked through a handle of the test's own. */
    uint64_t mine = attach();
    rt_msg_t *rel = janus_release_new(OWNER_NAME, room);
    cr_assert_not_null(rel);
    cr_assert_eq(rt_send_msg(media, rel), RT_OK);
    snprintf(req, sizeof req,
             "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"exists\",\"room\":%llu}}",
             (unsigned long long)mine, (unsigned long long)room);
    bool exists = true;
    end = rt_now_ms() + 5000;
    while (exists && rt_now_ms() < end) {
        rt_msg_free(rt_inbox_recv(ib, 10));
        json_t *e = request(req);
        exists = json_is_true(json_object_get(
            json_object_get(json_object_get(e, "plugindata"), "data"), "exists"));
        json_decref(e);
    }
    cr_assert_not(exists, "the VideoRoom outlived JANUS_RELEASE");
    /* ... and the name's handle was detached after it. */
    snprintf(req, sizeof req, "{\"janus\":\"message\",\"handle_id\":%llu,\"body\":{\"request\":\"list\"}}",
             (unsigned long long)h);
    const char *kind = "success";
    end = rt_now_ms() + 3000;
    while (strcmp(kind, "error") != 0 && rt_now_ms() < end) {
        rt_msg_free(rt_inbox_recv(ib, 10));
        json_t *x = request(req);
        kind = strcmp(janus_kind(x), "error") == 0 ? "error" : "success";
        json_decref(x);
    }
    cr_assert_str_eq(kind, "error", "the handle survived JANUS_RELEASE");
    rt_exit(second, RT_KILL);
}

/* Messages for a name nobody takes again are dropped after holdover_ms
 * (200 ms in this test's client) and counted. */
static void parked_messages_expire(void)
{
    send_named_req("{\"janus\":\"attach\",\"plugin\":\"janus.plugin.videoroom\",\"reply_to\":"
                   "\"room:nobody\"}", 7, 5000);
    json_int_t before = status_int("dropped");
    uint64_t end = rt_now_ms() + 5000;
    while (status_int("dropped") == before && rt_now_ms() < end)
        rt_msg_free(rt_inbox_recv(ib, 20));
    cr_assert_eq(status_int("dropped"), before + 1);
    cr_assert_eq(status_int("parked"), 0);
}


/* wss://: the same client over TLS (Janus's certificate for 127.0.0.1,
 * verified against the CA run.sh hands over). A certificate that does not
 * chain to the trusted CAs never gives a session; a CA file that cannot be
 * read fails the start with a reason. */
static bool connected_now(rt_pid_t pid)
{
    rt_msg_t *reply = NULL;
    cr_assert_eq(rt_call_sync(pid, rt_msg_new(JANUS_STATUS), 5000, &reply), RT_OK);
    bool up = reply->a != 0;
    rt_msg_free(reply);
    return up;
}

/* Spawns a media client and waits for its init (cfg is borrowed until
 * then); returns its init's error reason text (strdup'd) or NULL. */
static char *spawn_client(const janus_config_t *cfg, rt_pid_t *pid)
{
    rt_spawn_opts_t o = {.flags = RT_SPAWN_ACK};
    cr_assert_eq(rt_inbox_spawn(ib, &janus_behaviour, (void *)cfg, &o, pid), RT_OK);
    rt_msg_t *ack = rt_inbox_recv_match(ib, RT_MSG_ACK, o.ack_ref, 5000);
    cr_assert_not_null(ack, "no ack of the client's init");
    char *why = NULL;
    if (ack->flags & RT_MF_ERROR)
        why = strdup(rt_msg_reason(ack) ? rt_msg_reason(ack)->text : "?");
    rt_msg_free(ack);
    return why;
}

static void over_tls(void)
{
    const char *wss = getenv("ROOST_JANUS_WSS_URL"), *ca = getenv("ROOST_JANUS_CA");
    cr_assert(wss && ca, "tests/media/run.sh sets ROOST_JANUS_WSS_URL and ROOST_JANUS_CA");
    janus_config_t cfg = {.url = wss, .ca_file = ca, .notify = RT_NOPID, .backoff_min_ms = 100,
                          .backoff_max_ms = 400};
    rt_pid_t tls;
    cr_assert_null(spawn_client(&cfg, &tls));
    uint64_t end = rt_now_ms() + 10000;
    while (!connected_now(tls) && rt_now_ms() < end)
        rt_msg_free(rt_inbox_recv(ib, 20)); /* bounded poll: no event for the test */
    cr_assert(connected_now(tls), "no Janus session over %s", wss);
    rt_pid_t plain = media;
    media = tls; /* request(), attach() and create_room() talk to it */
    uint64_t h = attach();
    uint64_t room = create_room(h);
    destroy_room(h, room);
    media = plain;
    cr_assert_eq(rt_exit(tls, RT_SHUTDOWN), RT_OK);

    /* Not signed by a trusted CA (the system's, here): it keeps trying and
     * never gets a session. */
    cfg.ca_file = NULL;
    cr_assert_null(spawn_client(&cfg, &tls));
    end = rt_now_ms() + 1500;
    while (rt_now_ms() < end) {
        cr_assert_not(connected_now(tls), "a session with an untrusted certificate");
        rt_msg_free(rt_inbox_recv(ib, 50));
    }
    cr_assert_eq(rt_exit(tls, RT_SHUTDOWN), RT_OK);

    cfg.ca_file = "/nonexistent/roost-ca.pem";
    char *why = spawn_client(&cfg, &tls);
    cr_assert_not_null(why, "started with a CA file that cannot be read");
    cr_assert(strstr(why, "/nonexistent/roost-ca.pem") != NULL, "reason: %s", why);
    free(why);
}

/* One test, in this order: Criterion runs tests in parallel processes and
 * the second part kills the one Janus both would share. */
Test(media_janus, session_rooms_and_reconnect, .init = setup, .fini = teardown)
{
    create_attach_room_destroy();
    handles_owned_by_name();
    named_requests_reach_the_next_holder();
    parked_messages_expire();
    over_tls();
    reconnects_after_janus_is_killed();
}
