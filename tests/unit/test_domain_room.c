/*
 * test_domain_room.c — rooms as processes (src/domain): the RoomServer
 * with its BackupServer, RoomSupervisor, RoomsSupervisor, directory and
 * HistoryServer, over a real store in a temporary directory.
 *
 *   - joins, statuses and versions; viewers; full; ended; signals;
 *   - room_status and presence_diff coalesced per tick;
 *   - store fault injection: a refused change gets an error reply and is
 *     not applied (the state and the store stay as before);
 *   - a crash of the RoomServer: restarted from the backup, state and
 *     members intact, room_restarted recorded with the reason;
 *   - the reconnect grace and phx_leave, with short timeouts;
 *   - the empty timeout; DELETE; call records;
 *   - restore of every live room after a restart of the tree, and a
 *     version-1 state migrated on load;
 *   - 50 rooms crashing (one of them past its restart intensity) while
 *     50 others carry on without an error.
 * The test thread is the client: rt_call_sync, and inboxes as member
 * connections (closing one is a dropped connection).
 */
#include "domain_harness.h"

TestSuite(domain_room, .fini = teardown_all, .timeout = 120);

static bool connected_is(json_t *s, const void *arg)
{
    const char *const *uv = arg; /* {user, "true"/"false"/"gone"} */
    json_t *p = participant(s, uv[0]);
    if (strcmp(uv[1], "gone") == 0)
        return p == NULL;
    return p && json_is_true(json_object_get(p, "connected")) == (strcmp(uv[1], "true") == 0);
}

static json_t *wait_connected(const char *id, const char *user, const char *what, int ms)
{
    const char *uv[2] = {user, what};
    return wait_state(id, connected_is, uv, ms);
}

Test(domain_room, create_join_status_versions, .init = setup_default)
{
    json_t *c = create_room("r1", 4, -1);
    cr_assert_str_eq(json_string_value(json_object_get(c, "id")), "r1");
    cr_assert_str_eq(json_string_value(json_object_get(c, "status")), "waiting");
    cr_assert_eq(jint(c, "max_participants"), 4);
    int64_t v0 = jint(c, "version");

    /* Creating it again: exists. */
    cr_assert_eq(call(rt_whereis(ROOM_DIR_NAME),
                      room_req_ensure("r1", ROOM_ENSURE_CREATE | ROOM_ENSURE_EXCLUSIVE, -1, -1),
                      NULL),
                 ROOM_EEXIST);

    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0), *x = rt_inbox_open(0);
    json_t *s1 = NULL, *s2 = NULL;
    cr_assert_eq(join_as("r1", "alice", ROOM_PARTICIPANT, a, &s1), ROOM_OK);
    cr_assert_eq(jint(s1, "version"), v0 + 1, "a join is one change");
    cr_assert_str_eq(json_string_value(json_object_get(s1, "status")), "waiting");
    cr_assert(json_is_true(json_object_get(participant(s1, "alice"), "connected")));
    cr_assert_eq(join_as("r1", "bob", ROOM_PARTICIPANT, b, &s2), ROOM_OK);
    cr_assert_eq(jint(s2, "version"), v0 + 2);
    cr_assert_str_eq(json_string_value(json_object_get(s2, "status")), "active");
    cr_assert(jint(s2, "started_at") > 0, "started when it became active");

    uint64_t v = 0;
    cr_assert_eq(status("r1", "alice", a, "{\"muted\":true}", &v), ROOM_OK);
    cr_assert_eq(v, (uint64_t)v0 + 3);
    cr_assert_eq(status("r1", "alice", a, "{\"camera\":\"off\"}", &v), ROOM_OK);
    cr_assert_eq(v, (uint64_t)v0 + 4);
    /* Only through one of one's own connections, as a participant. */
    cr_assert_eq(status("r1", "alice", b, "{\"muted\":false}", NULL), ROOM_ENOTMEMBER);
    cr_assert_eq(status("r1", "mallory", x, "{\"muted\":false}", NULL), ROOM_ENOTMEMBER);
    cr_assert_eq(status("r1", "alice", a, "[1]", NULL), ROOM_EINVAL);

    json_t *g = get_room("r1");
    json_t *want = json_pack("{sbss}", "muted", 1, "camera", "off");
    cr_assert(json_equal(json_object_get(participant(g, "alice"), "status"), want),
              "merged: %s", json_dumps(g, 0));
    cr_assert_eq(jint(g, "version"), v0 + 4, "refused pushes changed nothing");
    cr_assert_eq(json_object_size(json_object_get(participant(g, "bob"), "status")), 0);

    /* The store has exactly the acknowledged state. */
    json_t *row = stored_room("r1");
    cr_assert_not_null(row);
    cr_assert_eq(jint(row, "version"), v0 + 4);
    json_t *sst = json_object_get(row, "state");
    cr_assert(json_equal(json_object_get(participant(sst, "alice"), "status"), want));
    cr_assert_not_null(json_object_get(sst, "seen"), "the stored form keeps seen");

    json_decref(row);
    json_decref(want);
    json_decref(g);
    json_decref(s1);
    json_decref(s2);
    json_decref(c);
    rt_inbox_close(a);
    rt_inbox_close(b);
    rt_inbox_close(x);
}

Test(domain_room, viewers_full_and_signal, .init = setup_default)
{
    json_decref(create_room("v", 1, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0), *v1 = rt_inbox_open(0),
               *v2 = rt_inbox_open(0);
    cr_assert_eq(join("v", "alice", a), ROOM_OK);
    cr_assert_eq(join("v", "bob", b), ROOM_EFULL, "max_participants 1");
    json_t *vs = NULL;
    cr_assert_eq(join_as("v", "watcher1", ROOM_VIEWER, v1, &vs), ROOM_OK, "viewers do not count");
    cr_assert_null(participant(vs, "watcher1"), "a viewer has no entry");
    cr_assert_eq(join_as("v", "watcher2", ROOM_VIEWER, v2, NULL), ROOM_OK);
    json_t *g = get_room("v");
    cr_assert_eq(jint(g, "viewers"), 2);
    cr_assert_eq(json_object_size(json_object_get(g, "participants")), 1);
    cr_assert_eq(status("v", "watcher1", v1, "{\"x\":1}", NULL), ROOM_ENOTMEMBER);

    /* A viewer leaving lowers the count; nothing durable changed. */
    int64_t version = jint(g, "version");
    rt_cast(server_of("v"), ROOM_MSG_LEAVE, rt_inbox_pid(v2), 7);
    json_decref(g);
    for (int i = 0; i < 200; i++) {
        g = get_room("v");
        if (jint(g, "viewers") == 1)
            break;
        json_decref(g);
        g = NULL;
        sleep_ms(5);
    }
    cr_assert_not_null(g, "viewers back to 1");
    cr_assert_eq(jint(g, "version"), version, "viewers are not a versioned change");
    json_decref(g);

    /* signal: alice to herself on another connection, and to nobody. */
    rt_inbox_t *a2 = rt_inbox_open(0);
    cr_assert_eq(join("v", "alice", a2), ROOM_OK, "a second device of alice");
    const char *sdp = "{\"from\":\"alice\",\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\"}}";
    rt_msg_t *reply = NULL;
    cr_assert_eq(call(server_of("v"),
                      room_req_signal("alice", rt_inbox_pid(a), "alice", sdp, strlen(sdp)), &reply),
                 ROOM_OK);
    cr_assert_eq(reply->a, 2, "both connections of alice");
    rt_msg_free(reply);
    rt_inbox_t *both[2] = {a, a2};
    for (int k = 0; k < 2; k++) {
        rt_msg_t *m = rt_inbox_recv(both[k], WAIT_MS);
        cr_assert_not_null(m);
        cr_assert_eq(m->tag, DELIVER_TAG);
        cr_assert_eq(m->a, 7);
        cr_assert_eq(m->b, ROOM_DELIVER_SIGNAL);
        cr_assert_str_eq(m->data, sdp);
        rt_msg_free(m);
    }
    cr_assert_eq(call(server_of("v"),
                      room_req_signal("alice", rt_inbox_pid(a), "nobody", sdp, strlen(sdp)), NULL),
                 ROOM_ENOPEER);
    cr_assert_eq(call(server_of("v"),
                      room_req_signal("watcher1", rt_inbox_pid(v1), "alice", sdp, strlen(sdp)),
                      NULL),
                 ROOM_ENOTMEMBER, "viewers do not signal");
    json_decref(vs);
    rt_inbox_close(a);
    rt_inbox_close(a2);
    rt_inbox_close(b);
    rt_inbox_close(v1);
    rt_inbox_close(v2);
}

static size_t count_in(const char *payload, const char *needle)
{
    size_t n = 0;
    for (const char *p = payload; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

struct burst {
    const char *id, *user;
    rt_inbox_t *ib;
    int from, n;
    _Atomic int errors;
};

static void *pusher(void *arg)
{
    struct burst *b = arg;
    for (int i = b->from; i < b->from + b->n; i++) {
        char patch[64];
        snprintf(patch, sizeof patch, "{\"k%d\":%d}", i, i);
        if (status(b->id, b->user, b->ib, patch, NULL) != ROOM_OK)
            atomic_fetch_add(&b->errors, 1);
    }
    return NULL;
}

Test(domain_room, announcements_are_coalesced_per_tick)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 100});
    json_decref(create_room("co", 0, -1));
    rt_inbox_t *ib[10];
    char users[10][16];
    for (int i = 0; i < 10; i++) {
        ib[i] = rt_inbox_open(0);
        snprintf(users[i], sizeof users[i], "u%d", i);
        cr_assert_eq(join("co", users[i], ib[i]), ROOM_OK);
    }
    json_t *g = get_room("co");
    int64_t v0 = jint(g, "version");
    json_decref(g);
    sleep_ms(250); /* the joins' announcements are out */
    size_t before = pubs_count("co", "room_status");

    /* 10 threads x 20 status pushes, all at once. */
    pthread_t th[10];
    struct burst bs[10];
    for (int i = 0; i < 10; i++) {
        bs[i] = (struct burst){.id = "co", .user = users[i], .ib = ib[i], .from = 0, .n = 20};
        pthread_create(&th[i], NULL, pusher, &bs[i]);
    }
    for (int i = 0; i < 10; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(atomic_load(&bs[i].errors), 0);
    }
    sleep_ms(250); /* the last tick */
    pub_t *p;
    size_t n = pubs_of("co", "room_status", &p);
    cr_assert_gt(n, before);
    /* At most one per tick: consecutive announcements a tick apart. */
    for (size_t i = before + 1; i < n; i++)
        cr_assert_geq(p[i].at_ms - p[i - 1].at_ms, 95, "room_status %zu and %zu are %" PRIu64
                      " ms apart", i - 1, i, p[i].at_ms - p[i - 1].at_ms);
    cr_assert_lt(n - before, 200 / 2, "%zu room_status for 200 changes", n - before);
    /* The last one carries everything. */
    json_t *last = json_loads(p[n - 1].payload, 0, NULL);
    cr_assert_eq(jint(last, "version"), v0 + 200);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(json_object_size(json_object_get(participant(last, users[i]), "status")), 20);
    json_decref(last);
    pubs_free(p, n);

    /* presence: the ten joins were announced in few diffs, one meta each. */
    n = pubs_of("co", "presence_diff", &p);
    size_t joins = 0;
    for (size_t i = 0; i < n; i++)
        joins += count_in(p[i].payload, "phx_ref");
    cr_assert_eq(joins, 10, "every join announced once");
    cr_assert_lt(n, 10, "%zu presence_diff for 10 joins", n);
    pubs_free(p, n);
    for (int i = 0; i < 10; i++)
        rt_inbox_close(ib[i]);
}

/* The first room_status of room id with a payload pred accepts, after
 * the first `skip` ones; waits (polling the recorded publishes) up to
 * WAIT_MS. Returns its index or -1. */
static long wait_status_pub(const char *id, size_t skip, bool (*pred)(json_t *s, const void *arg),
                            const void *arg)
{
    for (int waited = 0; waited <= WAIT_MS; waited += 5) {
        pub_t *p;
        size_t n = pubs_of(id, "room_status", &p);
        long found = -1;
        for (size_t i = skip; i < n && found < 0; i++) {
            json_t *s = json_loads(p[i].payload, 0, NULL);
            if (s && pred(s, arg))
                found = (long)i;
            json_decref(s);
        }
        pubs_free(p, n);
        if (found >= 0)
            return found;
        sleep_ms(5);
    }
    return -1;
}

static bool viewers_are(json_t *s, const void *arg)
{
    return jint(s, "viewers") == *(const int64_t *)arg;
}

static bool version_is(json_t *s, const void *arg)
{
    return jint(s, "version") == *(const int64_t *)arg;
}

/* A change of the viewer count alone is announced on the viewers tick,
 * not the room's tick; a versioned change is not held back by it, and
 * carries the count. The viewers tick here is ten minutes: with it, no
 * room_status may carry a new count before the status change, however
 * long the test takes. */
Test(domain_room, viewer_count_alone_waits_for_the_viewers_tick)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 10, .viewers_tick_ms = 600000});
    json_decref(create_room("vt", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0), *v[5];
    json_t *js = NULL;
    cr_assert_eq(join_as("vt", "alice", ROOM_PARTICIPANT, a, &js), ROOM_OK);
    int64_t want = jint(js, "version");
    json_decref(js);
    /* Alice's join is announced first: no tick of hers is pending. */
    long at = wait_status_pub("vt", 0, version_is, &want);
    cr_assert_geq(at, 0, "the join was announced");
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "watcher%d", i);
        v[i] = rt_inbox_open(0);
        cr_assert_eq(join_as("vt", name, ROOM_VIEWER, v[i], NULL), ROOM_OK);
    }
    json_t *g = get_room("vt");
    cr_assert_eq(jint(g, "viewers"), 5, "GET shows the count at once");
    json_decref(g);
    /* Not synchronisation: nothing may be announced in this pause. It is
     * what lets the room's own 10 ms tick announce the count, should the
     * count be announced on it (the bug this test is for). */
    sleep_ms(100);
    uint64_t ver = 0;
    cr_assert_eq(status("vt", "alice", a, "{\"muted\":true}", &ver), ROOM_OK);
    want = (int64_t)ver;
    long sp = wait_status_pub("vt", (size_t)at + 1, version_is, &want);
    cr_assert_geq(sp, 0, "the status change was announced");
    cr_assert_eq(sp, at + 1, "room_status between the join and the status change");
    pub_t *p;
    size_t n = pubs_of("vt", "room_status", &p);
    json_t *s = json_loads(p[sp].payload, 0, NULL);
    cr_assert_eq(jint(s, "viewers"), 5, "the versioned change carries the count");
    json_decref(s);
    pubs_free(p, n);
    rt_inbox_close(a);
    for (int i = 0; i < 5; i++)
        rt_inbox_close(v[i]);
}

/* ... and with nothing else changing, viewers still see the count. */
Test(domain_room, viewer_count_is_announced_on_its_own)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 10, .viewers_tick_ms = 50});
    json_decref(create_room("vc", 0, -1));
    rt_inbox_t *v[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "watcher%d", i);
        v[i] = rt_inbox_open(0);
        cr_assert_eq(join_as("vc", name, ROOM_VIEWER, v[i], NULL), ROOM_OK);
    }
    int64_t three = 3, two = 2;
    long at = wait_status_pub("vc", 0, viewers_are, &three);
    cr_assert_geq(at, 0, "viewers: 3 was announced");
    rt_cast(server_of("vc"), ROOM_MSG_LEAVE, rt_inbox_pid(v[2]), 7);
    cr_assert_geq(wait_status_pub("vc", (size_t)at + 1, viewers_are, &two), 0,
                  "viewers: 2 was announced");
    for (int i = 0; i < 3; i++)
        rt_inbox_close(v[i]);
}

Test(domain_room, join_and_leave_in_one_tick_cancel_in_presence)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 300});
    json_decref(create_room("pc", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0);
    cr_assert_eq(join("pc", "alice", a), ROOM_OK); /* announced at once (leading edge) */
    cr_assert_eq(join("pc", "bob", b), ROOM_OK);   /* waits for the tick ... */
    rt_cast(server_of("pc"), ROOM_MSG_LEAVE, rt_inbox_pid(b), 7); /* ... and leaves in it */
    json_t *gone = wait_connected("pc", "bob", "gone", WAIT_MS);
    cr_assert_not_null(gone);
    json_decref(gone);
    sleep_ms(500);
    pub_t *p;
    size_t n = pubs_of("pc", "presence_diff", &p);
    for (size_t i = 0; i < n; i++)
        cr_assert_null(strstr(p[i].payload, "bob"), "bob came and went within a tick: %s",
                       p[i].payload);
    pubs_free(p, n);
    rt_inbox_close(a);
    rt_inbox_close(b);
}

Test(domain_room, store_failure_refuses_the_change_and_keeps_the_state, .init = setup_default)
{
    json_decref(create_room("f", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0);
    cr_assert_eq(join("f", "alice", a), ROOM_OK);
    cr_assert_eq(status("f", "alice", a, "{\"muted\":true}", NULL), ROOM_OK);
    json_t *before = get_room("f");
    json_t *row0 = stored_room("f");

    store_fail_next(st, STORE_FP_COMMIT, 1, STORE_EFULL);
    cr_assert_eq(status("f", "alice", a, "{\"muted\":false,\"x\":1}", NULL), ROOM_ESTORE,
                 "a refused commit is an error reply");
    json_t *after = get_room("f");
    cr_assert(json_equal(before, after), "not applied:\n%s\n%s", json_dumps(before, 0),
              json_dumps(after, 0));
    json_t *row1 = stored_room("f");
    cr_assert(json_equal(row0, row1), "the store holds the previous state");

    /* A join refused by the store leaves no entry. */
    store_fail_next(st, STORE_FP_WRITE, 1, STORE_EIO);
    cr_assert_eq(join("f", "bob", b), ROOM_ESTORE);
    json_t *after2 = get_room("f");
    cr_assert_null(participant(after2, "bob"));
    cr_assert_eq(jint(after2, "version"), jint(before, "version"));

    /* The store is back: the next change goes through (after the back-off). */
    uint64_t v = 0;
    cr_assert_eq(status("f", "alice", a, "{\"x\":2}", &v), ROOM_OK);
    cr_assert_eq(v, (uint64_t)jint(before, "version") + 1, "one version per applied change");
    cr_assert_eq(join("f", "bob", b), ROOM_OK);
    json_t *now = get_room("f");
    json_t *want = json_pack("{sbsi}", "muted", 1, "x", 2);
    cr_assert(json_equal(json_object_get(participant(now, "alice"), "status"), want));

    /* No event recorded for what was refused. */
    json_t *ev = wait_events("f", "participant_joined:bob", WAIT_MS);
    char *t = event_types(ev);
    cr_assert_str_eq(t, "room_created participant_joined:alice status_changed:alice "
                        "status_changed:alice participant_joined:bob");
    free(t);
    json_decref(ev);
    json_decref(want);
    json_decref(now);
    json_decref(before);
    json_decref(after);
    json_decref(after2);
    json_decref(row0);
    json_decref(row1);
    rt_inbox_close(a);
    rt_inbox_close(b);
}

/* A write the store never answers (the writer is held inside the batch
 * past store_timeout_ms) is like a timed-out call: the state is unknown,
 * so the RoomServer fails and restarts from its backup; the push is
 * answered "unavailable", never "ok". Once the store moves again the
 * restarted room takes changes. */
typedef struct hold {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool armed, held, open;
} hold_t;

static hold_t hold = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false};

static int hold_commit(void *ctx, store_fault_point_t p, const store_req_t *req)
{
    hold_t *h = ctx;
    if (p != STORE_FP_COMMIT)
        return 0;
    pthread_mutex_lock(&h->mu);
    if (h->armed) {
        h->armed = false;
        h->held = true;
        pthread_cond_broadcast(&h->cv);
        while (!h->open)
            pthread_cond_wait(&h->cv, &h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static void setup_short_store_timeout(void)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 20, .store_timeout_ms = 200});
}

Test(domain_room, an_unanswered_write_restarts_the_room, .init = setup_short_store_timeout)
{
    cr_assert_not_null(room_config()->store, "the rooms write to the store directly");
    json_decref(create_room("t", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0);
    cr_assert_eq(join("t", "alice", a), ROOM_OK);
    uint64_t v = 0;
    cr_assert_eq(status("t", "alice", a, "{\"n\":1}", &v), ROOM_OK);
    rt_pid_t before = room_whereis("t");

    hold.armed = true;
    store_set_fault_hook(st, hold_commit, &hold);
    /* Answered by the room's exit, once its timeout fired. */
    cr_assert_eq(status("t", "alice", a, "{\"n\":2}", NULL), ROOM_EUNAVAIL);
    pthread_mutex_lock(&hold.mu);
    cr_assert(hold.held, "the write was held in the store");
    hold.open = true;
    pthread_cond_broadcast(&hold.cv);
    pthread_mutex_unlock(&hold.mu);
    store_set_fault_hook(st, NULL, NULL);

    rt_pid_t after = server_of("t");
    cr_assert(after && after != before, "a new RoomServer");
    uint64_t v2 = 0;
    cr_assert_eq(status("t", "alice", a, "{\"n\":3}", &v2), ROOM_OK);
    cr_assert_gt(v2, v);
    json_t *g = get_room("t");
    cr_assert_eq(jint(json_object_get(participant(g, "alice"), "status"), "n"), 3);
    json_decref(g);
    json_t *ev = wait_events("t", "room_restarted", WAIT_MS);
    char *types = event_types(ev);
    cr_assert(strstr(types, "room_restarted"), "%s", types);
    free(types);
    json_decref(ev);
    rt_inbox_close(a);
}

/* Without the store in the configuration, RoomServers write through the
 * store process (store_call): the same acknowledgements, refusals and
 * stored state. */
static void setup_via_store_process(void)
{
    setup_with_store((room_config_t){.auto_create = true, .tick_ms = 20}, true);
}

/* Fails the next write of a state of room `ctx` (not a history event
 * that happens to be committed first). */
static atomic_int fail_state_writes;

static int fail_state_of(void *ctx, store_fault_point_t p, const store_req_t *req)
{
    if (p != STORE_FP_WRITE || store_req_op(req) != STORE_OP_PUT_STATE ||
        strcmp(store_req_room(req), ctx) != 0)
        return 0;
    int n = atomic_load(&fail_state_writes);
    while (n > 0)
        if (atomic_compare_exchange_weak(&fail_state_writes, &n, n - 1))
            return STORE_EIO;
    return 0;
}

Test(domain_room, writes_through_the_store_process, .init = setup_via_store_process)
{
    cr_assert_null(room_config()->store);
    json_decref(create_room("sp", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0);
    cr_assert_eq(join("sp", "alice", a), ROOM_OK);
    uint64_t v1 = 0, v2 = 0;
    cr_assert_eq(status("sp", "alice", a, "{\"n\":1}", &v1), ROOM_OK);
    atomic_store(&fail_state_writes, 1);
    store_set_fault_hook(st, fail_state_of, "sp");
    cr_assert_eq(status("sp", "alice", a, "{\"n\":2}", NULL), ROOM_ESTORE);
    store_set_fault_hook(st, NULL, NULL);
    cr_assert_eq(status("sp", "alice", a, "{\"n\":3}", &v2), ROOM_OK);
    cr_assert_eq(v2, v1 + 1);
    json_t *row = stored_room("sp");
    cr_assert_eq(jint(row, "version"), (json_int_t)v2);
    cr_assert_eq(jint(json_object_get(participant(json_object_get(row, "state"), "alice"),
                                      "status"),
                      "n"),
                 3);
    json_decref(row);
    rt_inbox_close(a);
}

Test(domain_room, a_disconnect_refused_by_the_store_is_retried, .init = setup_default)
{
    json_decref(create_room("fr", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0);
    cr_assert_eq(join("fr", "alice", a), ROOM_OK);
    cr_assert_eq(join("fr", "bob", b), ROOM_OK);
    store_fail_next(st, STORE_FP_COMMIT, 2, STORE_EIO);
    rt_inbox_close(b);
    json_t *s = wait_connected("fr", "bob", "false", WAIT_MS);
    cr_assert_not_null(s, "bob is disconnected once the store takes it");
    cr_assert_str_eq(json_string_value(json_object_get(s, "status")), "waiting");
    json_decref(s);
    json_t *row = stored_room("fr");
    cr_assert(json_is_false(json_object_get(participant(json_object_get(row, "state"), "bob"),
                                            "connected")));
    json_decref(row);
    rt_inbox_close(a);
}

Test(domain_room, crash_restarts_from_the_backup_with_members, .init = setup_default)
{
    json_decref(create_room("c", 3, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0);
    cr_assert_eq(join("c", "alice", a), ROOM_OK);
    cr_assert_eq(join("c", "bob", b), ROOM_OK);
    cr_assert_eq(status("c", "bob", b, "{\"hand\":\"up\"}", NULL), ROOM_OK);
    json_t *before = get_room("c");
    rt_pid_t old = room_whereis("c");

    rt_reason_t *why = rt_reason_new("boom-42");
    rt_exit(old, why);
    rt_reason_release(why);
    rt_pid_t fresh = RT_NOPID;
    for (int i = 0; i < 2000 && (!fresh || fresh == old); i++) {
        fresh = room_whereis("c");
        sleep_ms(2);
    }
    cr_assert(fresh && fresh != old, "a new RoomServer");
    json_t *after = get_room("c");
    cr_assert(json_equal(json_object_get(before, "participants"),
                         json_object_get(after, "participants")),
              "nobody's entry changed:\n%s\n%s", json_dumps(before, 0), json_dumps(after, 0));
    cr_assert_eq(jint(after, "version"), jint(before, "version"));
    cr_assert_eq(jint(after, "created_at"), jint(before, "created_at"));

    /* The members were handed over: bob still pushes through his
     * connection, and its loss is still noticed. */
    cr_assert_eq(status("c", "bob", b, "{\"hand\":\"down\"}", NULL), ROOM_OK);
    rt_inbox_close(b);
    json_t *s = wait_connected("c", "bob", "false", WAIT_MS);
    cr_assert_not_null(s);
    json_decref(s);

    json_t *ev = wait_events("c", "participant_disconnected", WAIT_MS);
    char *t = event_types(ev);
    cr_assert_str_eq(t, "room_created participant_joined:alice participant_joined:bob "
                        "status_changed:bob room_restarted status_changed:bob "
                        "participant_disconnected:bob");
    free(t);
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "type")), "room_restarted") == 0)
            cr_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "data"),
                                                               "reason")),
                             "boom-42");
    }
    json_decref(ev);
    json_decref(before);
    json_decref(after);
    rt_inbox_close(a);
}

/* The presence_state a join would get, through a viewer (who adds
 * nobody to presence): the participants' metas with their refs. */
static json_t *presence_via_viewer(const char *id, rt_inbox_t *v)
{
    rt_pid_t p = server_of(id);
    room_addr_t a = {.pid = rt_inbox_pid(v), .tag = DELIVER_TAG, .word = 9};
    rt_msg_t *reply = NULL;
    cr_assert_eq(call(p, room_req_join("watcher", ROOM_VIEWER, a), &reply), ROOM_OK);
    const room_view_t *view = room_reply_view(reply);
    json_t *j = json_loadb(view->presence->data, view->presence->len, 0, NULL);
    rt_msg_free(reply);
    cr_assert_not_null(j);
    return j;
}

static rt_pid_t crash_and_wait(const char *id, const char *reason)
{
    rt_pid_t old = room_whereis(id);
    rt_reason_t *why = rt_reason_new(reason);
    rt_exit(old, why);
    rt_reason_release(why);
    rt_pid_t fresh = RT_NOPID;
    for (int i = 0; i < 2000 && (!fresh || fresh == old); i++) {
        fresh = room_whereis(id);
        sleep_ms(2);
    }
    cr_assert(fresh && fresh != old, "a new RoomServer");
    return fresh;
}

/* A restarted RoomServer takes the runtime (members, presence refs) from
 * its backup and, when nothing in it changed, does not hand it back: a
 * second crash right after the first must still find everything. */
Test(domain_room, crashes_in_a_row_keep_members_and_presence, .init = setup_default)
{
    json_decref(create_room("cc", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0), *v = rt_inbox_open(0);
    cr_assert_eq(join("cc", "alice", a), ROOM_OK);
    cr_assert_eq(join("cc", "bob", b), ROOM_OK);
    json_t *p0 = presence_via_viewer("cc", v);
    cr_assert_eq(json_object_size(p0), 2);
    json_t *before = get_room("cc");

    crash_and_wait("cc", "first");
    crash_and_wait("cc", "second");
    json_t *p2 = presence_via_viewer("cc", v);
    cr_assert(json_equal(p0, p2), "the same metas and refs:\n%s\n%s", json_dumps(p0, 0),
              json_dumps(p2, 0));
    json_t *after = get_room("cc");
    cr_assert(json_equal(json_object_get(before, "participants"),
                         json_object_get(after, "participants")));

    /* Both connections are still members: alice pushes, bob's loss is seen. */
    cr_assert_eq(status("cc", "alice", a, "{\"k\":1}", NULL), ROOM_OK);
    rt_inbox_close(b);
    json_t *s = wait_connected("cc", "bob", "false", WAIT_MS);
    cr_assert_not_null(s, "bob's connection was still monitored after two restarts");
    json_decref(s);
    json_decref(p0);
    json_decref(p2);
    json_decref(before);
    json_decref(after);
    rt_inbox_close(a);
    rt_inbox_close(v);
}

Test(domain_room, grace_then_leave_and_phx_leave_at_once)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 10, .reconnect_grace_ms = 300});
    json_decref(create_room("g", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0);
    cr_assert_eq(join("g", "alice", a), ROOM_OK);
    cr_assert_eq(join("g", "bob", b), ROOM_OK);
    cr_assert_eq(status("g", "bob", b, "{\"muted\":true}", NULL), ROOM_OK);
    json_t *s0 = get_room("g");
    int64_t joined = jint(participant(s0, "bob"), "joined_at");

    /* Dropped, then back within the grace: the same entry. */
    rt_inbox_close(b);
    json_t *s1 = wait_connected("g", "bob", "false", WAIT_MS);
    cr_assert_not_null(s1);
    cr_assert_str_eq(json_string_value(json_object_get(s1, "status")), "waiting");
    b = rt_inbox_open(0);
    json_t *s2 = NULL;
    cr_assert_eq(join_as("g", "bob", ROOM_PARTICIPANT, b, &s2), ROOM_OK);
    cr_assert(json_is_true(json_object_get(participant(s2, "bob"), "connected")));
    cr_assert_eq(jint(participant(s2, "bob"), "joined_at"), joined);
    cr_assert(json_is_true(json_object_get(json_object_get(participant(s2, "bob"), "status"),
                                           "muted")));
    sleep_ms(500);
    json_t *s3 = get_room("g");
    cr_assert_not_null(participant(s3, "bob"), "the grace timer was cancelled");

    /* Dropped for longer than the grace: gone. */
    rt_inbox_close(b);
    json_t *s4 = wait_connected("g", "bob", "gone", 3000);
    cr_assert_not_null(s4, "bob left after the grace");

    /* phx_leave: at once. */
    rt_cast(server_of("g"), ROOM_MSG_LEAVE, rt_inbox_pid(a), 7);
    json_t *s5 = wait_connected("g", "alice", "gone", 200);
    cr_assert_not_null(s5, "alice left at once");

    json_t *ev = wait_events("g", "participant_left:alice", WAIT_MS);
    char *t = event_types(ev);
    cr_assert_str_eq(t, "room_created participant_joined:alice participant_joined:bob "
                        "status_changed:bob participant_disconnected:bob "
                        "participant_reconnected:bob participant_disconnected:bob "
                        "participant_left:bob participant_left:alice");
    free(t);
    json_decref(ev);
    json_decref(s0);
    json_decref(s1);
    json_decref(s2);
    json_decref(s3);
    json_decref(s4);
    json_decref(s5);
    rt_inbox_close(a);
}

Test(domain_room, end_by_request_and_by_empty_timeout, .init = setup_default)
{
    json_decref(create_room("d", 0, -1));
    json_decref(create_room("e", 0, 1000)); /* empty_timeout 1 s */
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0);
    cr_assert_eq(join("d", "alice", a), ROOM_OK);
    cr_assert_eq(join("d", "bob", b), ROOM_OK);
    rt_pid_t d = room_whereis("d");
    rt_inbox_t *w = rt_inbox_open(0);
    uint64_t mref = rt_inbox_monitor(w, d);

    rt_msg_t *reply = NULL;
    cr_assert_eq(call(d, room_req_end("deleted"), &reply), ROOM_OK);
    json_t *fin = buf_json(reply);
    rt_msg_free(reply);
    cr_assert_str_eq(json_string_value(json_object_get(fin, "status")), "ended");
    rt_msg_t *down = rt_inbox_recv_match(w, RT_MSG_DOWN, mref, WAIT_MS);
    cr_assert_not_null(down);
    cr_assert(rt_reason_is(rt_msg_reason(down), RT_R_NORMAL), "an end is a normal exit");
    rt_msg_free(down);

    /* room_status (ended) then room_ended were published. */
    pub_t *p;
    size_t n = pubs_of("d", "room_ended", &p);
    cr_assert_eq(n, 1);
    pubs_free(p, n);

    /* Ended: joins, creates and gets all say so, and it is stored ended. */
    cr_assert_eq(call(rt_whereis(ROOM_DIR_NAME), room_req_ensure("d", ROOM_ENSURE_CREATE, -1, -1),
                      NULL),
                 ROOM_EENDED);
    cr_assert_eq(call(rt_whereis(ROOM_DIR_NAME),
                      room_req_ensure("d", ROOM_ENSURE_CREATE | ROOM_ENSURE_EXCLUSIVE, -1, -1),
                      NULL),
                 ROOM_EENDED);
    json_t *row = stored_room("d");
    cr_assert(json_is_true(json_object_get(row, "ended")));
    json_decref(row);

    /* The empty room ends by itself. */
    for (int i = 0; i < 1000 && room_whereis("e"); i++)
        sleep_ms(5);
    cr_assert_eq(room_whereis("e"), RT_NOPID, "ended after its empty timeout");

    /* Call records. */
    store_req_t *q = NULL;
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(store_req_query_calls(&q, NULL, 10), STORE_OK);
        cr_assert_eq(store_exec(st, q), STORE_OK);
        size_t nc = 0;
        store_req_calls(q, &nc);
        if (nc == 2)
            break;
        store_req_free(q);
        q = NULL;
        sleep_ms(10);
    }
    cr_assert_not_null(q, "two call records");
    size_t nc = 0;
    const store_call_t *c = store_req_calls(q, &nc);
    for (size_t i = 0; i < nc; i++) {
        if (strcmp(c[i].id, "d") == 0) {
            cr_assert_gt(c[i].started_at, 0);
            cr_assert_eq(json_array_size(c[i].participants), 2);
            cr_assert_geq(c[i].duration_ms, 0);
        } else {
            cr_assert_str_eq(c[i].id, "e");
            cr_assert_eq(c[i].started_at, 0, "never active");
            cr_assert_eq(json_array_size(c[i].participants), 0);
        }
    }
    store_req_free(q);
    json_t *ev = wait_events("e", "room_ended", WAIT_MS);
    char *t = event_types(ev);
    cr_assert_str_eq(t, "room_created room_ended");
    free(t);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(ev, 1), "data"), "reason")),
                     "empty_timeout");
    json_decref(ev);
    json_decref(fin);
    rt_inbox_close(a);
    rt_inbox_close(b);
    rt_inbox_close(w);
}

Test(domain_room, auto_create_on_join_and_not_found_when_off)
{
    setup_with((room_config_t){.auto_create = false, .tick_ms = 10});
    cr_assert_eq(call(rt_whereis(ROOM_DIR_NAME), room_req_ensure("nope", 0, -1, -1), NULL),
                 ROOM_ENOTFOUND);
    cr_assert_eq(room_whereis("nope"), RT_NOPID);
    cr_assert_eq(call(rt_whereis(ROOM_DIR_NAME),
                      room_req_ensure("yes", ROOM_ENSURE_CREATE, -1, -1), NULL),
                 ROOM_OK);
    rt_inbox_t *a = rt_inbox_open(0);
    cr_assert_eq(join("yes", "alice", a), ROOM_OK);
    rt_inbox_close(a);
}

Test(domain_room, live_rooms_are_restored_and_v1_states_migrated, .init = setup_default)
{
    json_decref(create_room("keep", 5, -1));
    json_decref(create_room("gone", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0);
    cr_assert_eq(join("keep", "alice", a), ROOM_OK);
    cr_assert_eq(status("keep", "alice", a, "{\"note\":\"keep me\"}", NULL), ROOM_OK);
    cr_assert_eq(call(server_of("gone"), room_req_end(NULL), NULL), ROOM_OK);
    json_t *before = get_room("keep");
    rt_inbox_close(a);
    json_t *s = wait_connected("keep", "alice", "false", WAIT_MS);
    json_decref(s);
    before = (json_decref(before), get_room("keep"));

    /* A whole restart: the tree goes, a state written by an older roost
     * (schema 1) appears, the tree comes back. */
    stop_tree();
    const char *v1 = "{\"id\":\"old\",\"status\":\"waiting\",\"version\":9,\"created_at\":5,"
                     "\"participants\":[{\"user\":\"zed\",\"connected\":false,"
                     "\"joined_at\":6,\"status\":{\"away\":true}}]}";
    store_req_t *put = NULL;
    cr_assert_eq(store_req_put_state(&put, "old", v1, strlen(v1), 1, 9, false), STORE_OK);
    cr_assert_eq(store_exec(st, put), STORE_OK);
    store_req_free(put);
    start_tree();

    rt_pid_t k = server_of("keep");
    cr_assert(k, "keep restored");
    json_t *after = get_room("keep");
    json_t *p0 = json_object_get(before, "participants"), *p1 = json_object_get(after, "participants");
    cr_assert(json_equal(p0, p1), "as it was:\n%s\n%s", json_dumps(before, 0), json_dumps(after, 0));
    cr_assert_eq(jint(after, "max_participants"), 5);
    cr_assert_eq(jint(after, "created_at"), jint(before, "created_at"));

    cr_assert(server_of("old"), "the v1 room is restored too");
    json_t *old = get_room("old");
    cr_assert_eq(jint(old, "version"), 9);
    json_t *zed = participant(old, "zed");
    cr_assert(json_is_object(zed), "participants became a map: %s", json_dumps(old, 0));
    cr_assert(json_is_true(json_object_get(json_object_get(zed, "status"), "away")));
    /* Served without a write (the store holds it), and written back in
     * the current schema with the room's first change. */
    json_t *row = stored_room("old");
    cr_assert_eq(jint(row, "stored_version"), 1);
    json_decref(row);
    rt_inbox_t *z = rt_inbox_open(0);
    cr_assert_eq(join("old", "zed", z), ROOM_OK, "zed comes back");
    row = stored_room("old");
    cr_assert_eq(jint(row, "stored_version"), ROOM_STATE_SCHEMA);
    cr_assert(json_is_object(json_object_get(json_object_get(row, "state"), "participants")));
    cr_assert_eq(jint(row, "version"), 10);
    rt_inbox_close(z);

    cr_assert_eq(room_whereis("gone"), RT_NOPID, "the ended room stays ended");
    rt_msg_t *list = NULL;
    cr_assert_eq(call(rt_whereis(ROOM_DIR_NAME), room_req_list(), &list), ROOM_OK);
    json_t *rooms = buf_json(list);
    rt_msg_free(list);
    cr_assert_eq(json_array_size(rooms), 2, "listed: %s", json_dumps(rooms, 0));
    json_decref(rooms);
    json_decref(row);
    json_decref(old);
    json_decref(before);
    json_decref(after);
}

Test(domain_room, presumed_participants_are_claimed_or_leave)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 10, .reconnect_grace_ms = 400});
    json_decref(create_room("p", 0, -1));
    rt_inbox_t *a = rt_inbox_open(0), *b = rt_inbox_open(0);
    cr_assert_eq(join("p", "alice", a), ROOM_OK);
    cr_assert_eq(join("p", "bob", b), ROOM_OK);
    /* kill -9 is a restart in which nobody says goodbye: kill the tree
     * and let the connections be new ones. */
    rt_exit(root, RT_KILL);
    for (int i = 0; i < 1000 && rt_is_alive(root); i++)
        sleep_ms(2);
    root = RT_NOPID;
    sleep_ms(50);
    start_tree();
    cr_assert(server_of("p"));
    json_t *s = get_room("p");
    cr_assert(json_is_true(json_object_get(participant(s, "alice"), "connected")),
              "shown as before the restart");
    cr_assert_str_eq(json_string_value(json_object_get(s, "status")), "active");
    json_decref(s);
    rt_inbox_t *a2 = rt_inbox_open(0);
    cr_assert_eq(join("p", "alice", a2), ROOM_OK, "alice comes back");
    json_t *g = wait_connected("p", "bob", "gone", 3000);
    cr_assert_not_null(g, "bob, who did not, leaves after the grace");
    cr_assert(json_is_true(json_object_get(participant(g, "alice"), "connected")));
    json_decref(g);
    rt_inbox_close(a);
    rt_inbox_close(a2);
    rt_inbox_close(b);
}

/* ---- 50 rooms crashing while 50 others carry on ----------------------------- */

struct steady {
    char id[16];
    rt_inbox_t *ib;
    _Atomic int *stop;
    int ok, errors;
};

static void *steady_main(void *arg)
{
    struct steady *s = arg;
    for (int i = 0; !atomic_load(s->stop); i++) {
        char patch[32];
        snprintf(patch, sizeof patch, "{\"n\":%d}", i);
        if (status(s->id, "u", s->ib, patch, NULL) == ROOM_OK)
            s->ok++;
        else
            s->errors++;
    }
    return NULL;
}

Test(domain_room, fifty_rooms_crash_while_fifty_carry_on)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 20, .room_intensity = 3,
                               .room_period_ms = 5000});
    enum { R = 50 };
    static struct steady s[R];
    static pthread_t th[R];
    _Atomic int stop = 0;
    rt_inbox_t *cib[R];
    char cid[R][16];
    for (int i = 0; i < R; i++) {
        snprintf(s[i].id, sizeof s[i].id, "s%d", i);
        snprintf(cid[i], sizeof cid[i], "c%d", i);
        json_decref(create_room(s[i].id, 0, -1));
        json_decref(create_room(cid[i], 0, -1));
        s[i].ib = rt_inbox_open(0);
        s[i].stop = &stop;
        s[i].ok = s[i].errors = 0;
        cib[i] = rt_inbox_open(0);
        cr_assert_eq(join(s[i].id, "u", s[i].ib), ROOM_OK);
        cr_assert_eq(join(cid[i], "u", cib[i]), ROOM_OK);
        char patch[32];
        snprintf(patch, sizeof patch, "{\"room\":%d}", i);
        cr_assert_eq(status(cid[i], "u", cib[i], patch, NULL), ROOM_OK);
    }
    for (int i = 0; i < R; i++)
        pthread_create(&th[i], NULL, steady_main, &s[i]);

    /* Every crashy room crashes twice (within its intensity of 3 in 5 s). */
    for (int round = 0; round < 2; round++) {
        rt_pid_t old[R];
        for (int i = 0; i < R; i++) {
            old[i] = server_of(cid[i]);
            rt_reason_t *why = rt_reason_fmt("chaos-%d", round);
            rt_exit(old[i], why);
            rt_reason_release(why);
        }
        for (int i = 0; i < R; i++) {
            rt_pid_t now = RT_NOPID;
            for (int k = 0; k < 2000 && (!now || now == old[i]); k++) {
                now = room_whereis(cid[i]);
                sleep_ms(1);
            }
            cr_assert(now && now != old[i], "%s restarted", cid[i]);
        }
    }
    /* One of them keeps crashing, past its intensity: it is ended. */
    rt_pid_t last = RT_NOPID;
    for (int k = 0; k < 6; k++) {
        rt_pid_t now = RT_NOPID;
        for (int w = 0; w < 1000 && (!now || now == last); w++) {
            now = room_whereis("c0");
            sleep_ms(2);
        }
        if (!now || now == last)
            break; /* no new incarnation: it gave up */
        last = now;
        rt_reason_t *why = rt_reason_new("again");
        rt_exit(now, why);
        rt_reason_release(why);
    }
    json_t *row = NULL;
    for (int w = 0; w < 1000; w++) {
        row = stored_room("c0");
        if (row && json_is_true(json_object_get(row, "ended")))
            break;
        json_decref(row);
        row = NULL;
        sleep_ms(5);
    }
    cr_assert_not_null(row, "c0 was ended cleanly");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(row, "state"), "status")),
                     "ended");
    json_decref(row);
    cr_assert_eq(room_whereis("c0"), RT_NOPID);
    cr_assert_eq(call(rt_whereis(ROOM_DIR_NAME), room_req_ensure("c0", ROOM_ENSURE_CREATE, -1, -1),
                      NULL),
                 ROOM_EENDED);

    sleep_ms(100);
    atomic_store(&stop, 1);
    for (int i = 0; i < R; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < R; i++) {
        cr_assert_eq(s[i].errors, 0, "steady room %s saw %d errors", s[i].id, s[i].errors);
        cr_assert_gt(s[i].ok, 0, "steady room %s made progress", s[i].id);
        json_t *g = get_room(s[i].id);
        cr_assert_eq(jint(json_object_get(participant(g, "u"), "status"), "n"), s[i].ok - 1,
                     "every acknowledged change is there");
        json_decref(g);
    }
    /* The crashed ones are as they were. */
    for (int i = 1; i < R; i++) {
        json_t *g = get_room(cid[i]);
        json_t *u = participant(g, "u");
        cr_assert(json_is_true(json_object_get(u, "connected")), "%s: u still connected", cid[i]);
        cr_assert_eq(jint(json_object_get(u, "status"), "room"), i);
        json_decref(g);
    }
    json_t *ev = wait_events("c0", "room_ended", WAIT_MS);
    char *t = event_types(ev);
    cr_assert(strstr(t, "room_restarted") && strstr(t, "room_ended"), "%s", t);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(ev, json_array_size(ev) - 1), "data"),
                         "reason")),
                     "crashed");
    free(t);
    json_decref(ev);
    for (int i = 0; i < R; i++) {
        rt_inbox_close(s[i].ib);
        rt_inbox_close(cib[i]);
    }
}

/* ---- a burst of joins ---------------------------------------------------------- */

typedef struct joiner {
    rt_pid_t room, report;
    uint64_t ref;
    char user[24];
} joiner_t;

enum { JOINED_TAG = 0x4a4f494eu };

/* A member process: joins once (its pid is the member), reports the
 * result to the test, then idles (it stays a live connection). */
static rt_reason_t *joiner_init(void *arg, void **state)
{
    joiner_t *j = malloc(sizeof *j);
    *j = *(joiner_t *)arg;
    room_addr_t a = {.pid = rt_self(), .tag = DELIVER_TAG, .word = 1};
    if (rt_call(j->room, room_req_join(j->user, ROOM_PARTICIPANT, a), WAIT_MS, &j->ref) != RT_OK)
        j->ref = 0;
    *state = j;
    return NULL;
}

static void joiner_info(void *state, rt_msg_t *m)
{
    joiner_t *j = state;
    if (m->kind == RT_MSG_REPLY && m->ref == j->ref)
        rt_send(j->report, JOINED_TAG, (uint64_t)(int64_t)room_reply_err(m), 0);
}

static void joiner_free(void *state, rt_reason_t *why)
{
    free(state);
}

static const rt_behaviour_t joiner = RT_BEHAVIOUR(.name = "joiner", .init = joiner_init,
                                                  .handle_info = joiner_info,
                                                  .terminate = joiner_free);

Test(domain_room, a_burst_of_joins_is_announced_per_tick_not_per_join)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 50});
    enum { N = 3000 };
    json_decref(create_room("burst", 0, -1));
    rt_inbox_t *rep = rt_inbox_open(0);
    rt_pid_t room = server_of("burst");
    static rt_pid_t pids[N];
    static joiner_t args[N]; /* init borrows its arg while it runs */
    uint64_t t0 = rt_now_ms();
    for (int i = 0; i < N; i++) {
        args[i] = (joiner_t){.room = room, .report = rt_inbox_pid(rep)};
        snprintf(args[i].user, sizeof args[i].user, "m%d", i);
        cr_assert_eq(rt_spawn(&joiner, &args[i], NULL, &pids[i]), RT_OK);
    }
    for (int k = 0; k < N; k++) {
        rt_msg_t *m = rt_inbox_recv_match(rep, 0, 0, WAIT_MS * 3);
        cr_assert_not_null(m, "join %d of %d answered", k, N);
        cr_assert_eq((int)(int64_t)m->a, ROOM_OK);
        rt_msg_free(m);
    }
    uint64_t took = rt_now_ms() - t0;
    sleep_ms(200); /* the last tick */
    json_t *g = get_room("burst");
    cr_assert_eq(json_object_size(json_object_get(g, "participants")), N);
    cr_assert_eq(jint(g, "version"), 1 + N, "one version per join");
    json_decref(g);

    pub_t *p;
    size_t n = pubs_of("burst", "room_status", &p);
    cr_assert_leq(n, took / 50 + 6, "%zu room_status for %d joins in %" PRIu64 " ms", n, N, took);
    pubs_free(p, n);
    n = pubs_of("burst", "presence_diff", &p);
    size_t joins = 0;
    for (size_t i = 0; i < n; i++)
        joins += count_in(p[i].payload, "phx_ref");
    cr_assert_eq(joins, N, "every join in exactly one diff");
    cr_assert_leq(n, took / 50 + 6, "%zu presence_diff for %d joins in %" PRIu64 " ms", n, N, took);
    pubs_free(p, n);
    cr_log_info("%d joins in %" PRIu64 " ms", N, took);
    for (int i = 0; i < N; i++)
        rt_exit(pids[i], RT_KILL);
    rt_inbox_close(rep);
}
