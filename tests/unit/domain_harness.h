/*
 * domain_harness.h — the harness shared by the rooms tests
 * (test_domain_*.c). Included by exactly one .c file per test binary.
 *
 * Each test gets a fresh store directory under /tmp, the runtime, and the
 * part of the supervision tree rooms live in (store, history, rooms,
 * room_dir, in design §1's order) under a root supervisor started with
 * rt_sup_start_sync. The test thread talks to the processes with
 * rt_call_sync; a "connection" is an inbox (its pid is a member's
 * address, member-directed messages arrive in it, and closing it is a
 * dropped connection). The publisher the domain is given records every
 * publish (topic, event, payload, time) so tests can count announcements.
 * Every wait has a timeout.
 */
#ifndef ROOST_TESTS_DOMAIN_HARNESS_H
#define ROOST_TESTS_DOMAIN_HARNESS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "domain/history.h"
#include "domain/room.h"
#include "domain/state.h"
#include "rt/rt.h"
#include "rt/rt_sup.h"
#include "store/store.h"

#define H static __attribute__((unused))
#define WAIT_MS 10000
#define DELIVER_TAG 0x54455354u /* member-directed messages to test inboxes */

H char dir[64];
H store_t *st;
H rt_pid_t root;
H bool rt_up;

/* ---- the recording publisher --------------------------------------------------- */

typedef struct pub {
    char *topic, *event, *payload;
    uint64_t at_ms;
} pub_t;

H pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
H pub_t *pubs;
H size_t npubs, cappubs;

H int record_publish(void *ctx, const char *topic, const char *event, const char *payload,
                     size_t len, rt_pid_t exclude)
{
    pthread_mutex_lock(&pub_mu);
    if (npubs == cappubs) {
        cappubs = cappubs ? cappubs * 2 : 256;
        pubs = realloc(pubs, cappubs * sizeof *pubs);
    }
    pub_t *p = &pubs[npubs++];
    p->topic = strdup(topic);
    p->event = strdup(event);
    p->payload = strndup(payload, len);
    p->at_ms = rt_now_ms();
    pthread_mutex_unlock(&pub_mu);
    return 1;
}

H void pubs_clear(void)
{
    pthread_mutex_lock(&pub_mu);
    for (size_t i = 0; i < npubs; i++) {
        free(pubs[i].topic);
        free(pubs[i].event);
        free(pubs[i].payload);
    }
    free(pubs);
    pubs = NULL;
    npubs = cappubs = 0;
    pthread_mutex_unlock(&pub_mu);
}

/* Publishes of event on room id's topic, copied into out (caller frees
 * each payload and the array); returns how many. */
H size_t pubs_of(const char *id, const char *event, pub_t **out)
{
    char topic[300];
    snprintf(topic, sizeof topic, "room:%s", id);
    pthread_mutex_lock(&pub_mu);
    pub_t *o = calloc(npubs + 1, sizeof *o);
    size_t n = 0;
    for (size_t i = 0; i < npubs; i++)
        if (strcmp(pubs[i].topic, topic) == 0 && strcmp(pubs[i].event, event) == 0) {
            o[n] = pubs[i];
            o[n].payload = strdup(pubs[i].payload);
            o[n].topic = o[n].event = NULL;
            n++;
        }
    pthread_mutex_unlock(&pub_mu);
    *out = o;
    return n;
}

H void pubs_free(pub_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].payload);
    free(p);
}

H size_t pubs_count(const char *id, const char *event)
{
    pub_t *p;
    size_t n = pubs_of(id, event, &p);
    pubs_free(p, n);
    return n;
}

/* ---- set-up ---------------------------------------------------------------------- */

H int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

H void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Opens the store (in dir) and registers the state schema. */
H void open_store(void)
{
    store_config_t cfg = {.data_dir = dir, .schema = &room_state_schema};
    int err = store_open(&cfg, &st);
    cr_assert_eq(err, STORE_OK, "store_open: %s", store_strerror(err));
}

/* Starts store, history, rooms and room_dir under a root supervisor. */
H void start_tree(void)
{
    rt_child_spec_t children[] = {
        {.id = "store", .behaviour = &store_server, .arg = st, .restart = RT_PERMANENT,
         .shutdown_ms = 5000, .name = "store"},
        {.id = "history", .behaviour = &history_server, .restart = RT_PERMANENT,
         .shutdown_ms = 5000, .name = HISTORY_NAME},
        {.id = "rooms", .behaviour = &rt_sup_behaviour, .arg = (void *)room_rooms_spec(),
         .restart = RT_PERMANENT, .is_supervisor = true, .name = ROOM_ROOMS_NAME},
        {.id = "room_dir", .behaviour = &room_directory, .restart = RT_PERMANENT,
         .shutdown_ms = 5000, .name = ROOM_DIR_NAME},
    };
    rt_sup_spec_t spec = {.strategy = RT_ONE_FOR_ONE, .intensity = 3, .period_ms = 5000,
                          .children = children, .nchildren = 4};
    rt_reason_t *why = NULL;
    int rc = rt_sup_start_sync(&spec, &root, &why);
    cr_assert_eq(rc, RT_OK, "tree: %s", why ? why->text : rt_strerror(rc));
}

H void stop_tree(void)
{
    if (root)
        rt_sup_stop_sync(root, 20000);
    root = RT_NOPID;
}

/* The whole set-up with cfg's timings (publisher filled in). The rooms
 * and the HistoryServer get the store itself (room_config()->store), as
 * main gives it, unless via_process: then they reach it only through the
 * store process. */
H void setup_with_store(room_config_t cfg, bool via_process)
{
    snprintf(dir, sizeof dir, "/tmp/roost-rooms-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    cfg.publisher.publish = record_publish;
    open_store();
    cfg.store = via_process ? NULL : st;
    room_configure(&cfg);
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    rt_up = true;
    start_tree();
}

H void setup_with(room_config_t cfg)
{
    setup_with_store(cfg, false);
}

H void setup_default(void)
{
    setup_with((room_config_t){.auto_create = true, .tick_ms = 20,
                               .reconnect_grace_ms = 30000});
}

H void teardown_all(void)
{
    stop_tree();
    /* The store's writer thread answers through the runtime: close the
     * store (joining that thread) before the runtime stops. */
    store_close(st);
    st = NULL;
    if (rt_up)
        rt_runtime_stop();
    rt_up = false;
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
    pubs_clear();
}

/* ---- calls ---------------------------------------------------------------------------- */

/* A call from the test thread; returns the room error of the answer, and
 * the answer itself in *out if asked (caller frees). */
H int call(rt_pid_t to, rt_msg_t *req, rt_msg_t **out)
{
    rt_msg_t *reply = NULL;
    int rc = rt_call_sync(to, req, WAIT_MS, &reply);
    int err = rc == RT_OK || rc == RT_EEXIT ? room_reply_err(reply) : ROOM_EUNAVAIL;
    if (out)
        *out = reply;
    else
        rt_msg_free(reply);
    return err;
}

/* JSON of a buffer answer (NULL if none). */
H json_t *buf_json(rt_msg_t *reply)
{
    rt_buf_t *b = room_reply_buf(reply);
    return b ? json_loadb(b->data, b->len, 0, NULL) : NULL;
}

/* Creates room id (POST /api/rooms); returns its state. */
H json_t *create_room(const char *id, int64_t max, int64_t empty_ms)
{
    rt_msg_t *reply = NULL;
    int err = call(rt_whereis(ROOM_DIR_NAME),
                   room_req_ensure(id, ROOM_ENSURE_CREATE | ROOM_ENSURE_EXCLUSIVE, max, empty_ms),
                   &reply);
    cr_assert_eq(err, ROOM_OK, "create %s: %s", id, room_strerror(err));
    json_t *j = buf_json(reply);
    rt_msg_free(reply);
    cr_assert_not_null(j);
    return j;
}

/* The RoomServer of id, waiting up to WAIT_MS for one (restarts). */
H rt_pid_t server_of(const char *id)
{
    for (int i = 0; i < WAIT_MS / 5; i++) {
        rt_pid_t p = room_whereis(id);
        if (p)
            return p;
        sleep_ms(5);
    }
    return RT_NOPID;
}

/* GET of a running room; NULL if there is none. */
H json_t *get_room(const char *id)
{
    rt_pid_t p = room_whereis(id);
    if (!p)
        return NULL;
    rt_msg_t *reply = NULL;
    int err = call(p, room_req_get(), &reply);
    json_t *j = err == ROOM_OK ? buf_json(reply) : NULL;
    rt_msg_free(reply);
    return j;
}

/* Joins user through the connection ib (its pid is the member). Returns
 * the room error; *state (if asked) the join answer's state. */
H int join_as(const char *id, const char *user, room_role_t role, rt_inbox_t *ib,
              json_t **state)
{
    rt_pid_t p = server_of(id);
    if (!p)
        return ROOM_ENOTFOUND;
    room_addr_t a = {.pid = rt_inbox_pid(ib), .tag = DELIVER_TAG, .word = 7};
    rt_msg_t *reply = NULL;
    int err = call(p, room_req_join(user, role, a), &reply);
    if (state) {
        const room_view_t *v = room_reply_view(reply);
        *state = v ? json_loadb(v->state->data, v->state->len, 0, NULL) : NULL;
    }
    rt_msg_free(reply);
    return err;
}

H int join(const char *id, const char *user, rt_inbox_t *ib)
{
    return join_as(id, user, ROOM_PARTICIPANT, ib, NULL);
}

/* Status push from user through connection ib; *version (if asked). */
H int status(const char *id, const char *user, rt_inbox_t *ib, const char *patch,
             uint64_t *version)
{
    rt_pid_t p = server_of(id);
    rt_msg_t *reply = NULL;
    int err = call(p, room_req_status(user, rt_inbox_pid(ib), patch, strlen(patch)), &reply);
    if (version)
        *version = reply ? reply->a : 0;
    rt_msg_free(reply);
    return err;
}

H json_t *participant(json_t *state, const char *user)
{
    return json_object_get(json_object_get(state, "participants"), user);
}

H int64_t jint(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* Waits until pred(GET state) holds; returns that state (caller frees) or NULL. */
H json_t *wait_state(const char *id, bool (*pred)(json_t *st, const void *arg), const void *arg,
                     int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        json_t *s = get_room(id);
        if (s && pred(s, arg))
            return s;
        json_decref(s);
        sleep_ms(5);
    }
    return NULL;
}

/* The room's recorded events, read straight from the store. */
H json_t *events_of(const char *id)
{
    json_t *a = json_array();
    uint64_t after = 0;
    for (;;) {
        store_req_t *r = NULL;
        cr_assert_eq(store_req_read_events(&r, id, after, 1000), STORE_OK);
        cr_assert_eq(store_exec(st, r), STORE_OK);
        size_t n = 0;
        uint64_t next = 0;
        const store_event_t *ev = store_req_events(r, &n, &next);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_pack("{sIss}", "seq", (json_int_t)ev[i].seq, "type", ev[i].type);
            if (ev[i].user)
                json_object_set_new(e, "user", json_string(ev[i].user));
            if (ev[i].data)
                json_object_set(e, "data", ev[i].data);
            json_array_append_new(a, e);
        }
        store_req_free(r);
        if (!next)
            break;
        after = next;
    }
    return a;
}

/* Types of the events as "t1 t2(user) ..." (caller frees). */
H char *event_types(json_t *events)
{
    size_t cap = 4096, len = 0;
    char *s = calloc(1, cap);
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        const char *u = json_string_value(json_object_get(e, "user"));
        char one[600];
        int n = snprintf(one, sizeof one, "%s%s%s%s", len ? " " : "",
                         json_string_value(json_object_get(e, "type")), u ? ":" : "", u ? u : "");
        if (len + (size_t)n + 1 > cap) {
            cap = (cap + (size_t)n) * 2;
            s = realloc(s, cap);
        }
        memcpy(s + len, one, (size_t)n + 1);
        len += (size_t)n;
    }
    return s;
}

/* Waits until the room has at least n events whose types string contains
 * `needle` (NULL: any). Returns the events (caller frees). */
H json_t *wait_events(const char *id, const char *needle, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        json_t *ev = events_of(id);
        char *t = event_types(ev);
        bool ok = !needle || strstr(t, needle);
        free(t);
        if (ok || waited >= timeout_ms)
            return ev;
        json_decref(ev);
        sleep_ms(10);
    }
}

/* The stored row of a room (NULL if none): {"ended", "state"}. */
H json_t *stored_room(const char *id)
{
    store_req_t *r = NULL;
    cr_assert_eq(store_req_load_state(&r, id), STORE_OK);
    int err = store_exec(st, r);
    json_t *out = NULL;
    if (err == STORE_OK) {
        size_t n = 0;
        const store_room_t *rm = store_req_rooms(r, &n);
        if (n == 1 && rm->state)
            out = json_pack("{sbsOsIsI}", "ended", rm->ended, "state", rm->state, "version",
                            (json_int_t)rm->version, "stored_version",
                            (json_int_t)rm->stored_version);
    }
    store_req_free(r);
    return out;
}

#endif /* ROOST_TESTS_DOMAIN_HARNESS_H */
