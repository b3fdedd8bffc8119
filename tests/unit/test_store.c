/*
 * test_store.c — the durable store (src/store/store.h) with its SQLite
 * back end: opening and reopening, acknowledged writes and loads, group
 * commit under many concurrent writers, coalescing, live rooms and the
 * ended flag, events paged with `after`, call records by user, state
 * migration on load, injected faults (error replies, nothing
 * acknowledged, previous state intact) and crash safety with kill -9.
 *
 * Every test gets a fresh directory under /tmp (removed afterwards).
 * Tests that need processes start the runtime and a store process; the
 * others drive the store from the test thread (store_exec) or with
 * store_submit callbacks. Callbacks on other threads record failures in
 * counters, never with Criterion's assertions.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "rt/rt.h"
#include "store/store.h"

#define WAIT_MS 10000

/* ---- Harness ----------------------------------------------------------------- */

static char dir[64];
static store_t *st;
static bool rt_up;
static rt_inbox_t *ib;
static rt_pid_t me;

static atomic_int bad;      /* failed CHECKs on other threads */
static atomic_int bad_line; /* the first one's line */
#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            int zero_ = 0;                                                    \
            atomic_fetch_add(&bad, 1);                                        \
            atomic_compare_exchange_strong(&bad_line, &zero_, __LINE__);      \
        }                                                                     \
    } while (0)
#define ASSERT_NO_BAD_CHECKS()                                                \
    cr_assert_eq(atomic_load(&bad), 0, "a check on another thread failed (line %d)", \
                 atomic_load(&bad_line))

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/roost-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    if (ib)
        rt_inbox_close(ib);
    ib = NULL;
    if (rt_up)
        rt_runtime_stop();  /* every store process is gone before the store closes */
    rt_up = false;
    store_close(st);
    st = NULL;
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}

static store_t *open_with(store_config_t cfg)
{
    cfg.data_dir = cfg.data_dir ? cfg.data_dir : dir;
    store_t *s = NULL;
    int err = store_open(&cfg, &s);
    cr_assert_eq(err, STORE_OK, "store_open: %s", store_strerror(err));
    return s;
}

static void open_store(void)
{
    st = open_with((store_config_t){ 0 });
}

static void reopen_store(void)
{
    store_close(st);
    st = NULL;
    open_store();
}

/* A state {"id": room, "version": v, "note": note} as text. */
static void state_text(char *buf, size_t cap, const char *room, uint64_t v, const char *note)
{
    snprintf(buf, cap, "{\"id\":\"%s\",\"version\":%llu,\"note\":\"%s\"}", room,
             (unsigned long long)v, note ? note : "");
}

static store_req_t *put_req(const char *room, uint64_t v, uint32_t sv, bool ended)
{
    char buf[256];
    state_text(buf, sizeof buf, room, v, NULL);
    store_req_t *r = NULL;
    cr_assert_eq(store_req_put_state(&r, room, buf, strlen(buf), sv, v, ended), STORE_OK);
    return r;
}

/* Writes and waits for the acknowledgement; returns the result. */
static int put(const char *room, uint64_t v)
{
    store_req_t *r = put_req(room, v, 1, false);
    int err = store_exec(st, r);
    store_req_free(r);
    return err;
}

/* Loads a room; the caller frees the request. *room_out is borrowed from it. */
static store_req_t *load(const char *room, int *err, const store_room_t **room_out)
{
    store_req_t *r = NULL;
    cr_assert_eq(store_req_load_state(&r, room), STORE_OK);
    *err = store_exec(st, r);
    size_t n;
    const store_room_t *rows = store_req_rooms(r, &n);
    *room_out = n ? &rows[0] : NULL;
    return r;
}

/* The room's stored version, asserting it loads. */
static uint64_t stored_version(const char *room)
{
    int err;
    const store_room_t *row;
    store_req_t *r = load(room, &err, &row);
    cr_assert_eq(err, STORE_OK, "load %s: %s", room, store_strerror(err));
    uint64_t v = row->version;
    cr_assert_eq(json_integer_value(json_object_get(row->state, "version")), (json_int_t)v,
                 "the state's own version matches the row");
    store_req_free(r);
    return v;
}

/* ---- Submissions with completion tracking (store_submit) ---------------------- */

typedef struct tracker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} tracker_t;

static tracker_t trk = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

static void tracked_done(store_req_t *req, void *ctx)
{
    tracker_t *t = ctx;
    store_req_free(req);  /* the test keeps its own reference */
    pthread_mutex_lock(&t->mu);
    t->done++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* Submits r keeping a reference for the test; completion counted in trk. */
static void submit_tracked(store_req_t *r)
{
    rt_rc_retain(&r->rc);
    int err = store_submit(st, r, tracked_done, &trk);
    cr_assert_eq(err, STORE_OK, "store_submit: %s", store_strerror(err));
}

static void wait_tracked(int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&trk.mu);
    while (trk.done < n) {
        if (pthread_cond_timedwait(&trk.cv, &trk.mu, &until) == ETIMEDOUT)
            break;
    }
    int done = trk.done;
    pthread_mutex_unlock(&trk.mu);
    cr_assert_geq(done, n, "only %d of %d requests completed", done, n);
}

/* A gate: a fault hook that holds the writer at one point until opened,
 * so a test can queue requests that will all be in the next batch. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    store_fault_point_t point;
    bool open;
    int arrived;
    const char *fail_room;  /* a write to this room fails with STORE_EIO */
} gate_t;

static gate_t gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, STORE_FP_BATCH,
                       false, 0, NULL };

static int gate_hook(void *ctx, store_fault_point_t p, const store_req_t *r)
{
    gate_t *g = ctx;
    if (p == STORE_FP_WRITE && g->fail_room && strcmp(store_req_room(r), g->fail_room) == 0)
        return STORE_EIO;
    if (p != g->point)
        return 0;
    pthread_mutex_lock(&g->mu);
    g->arrived++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* Holds the writer inside a batch made of one read (the plug), so what is
 * queued next forms one batch when the gate opens. */
static void hold_writer(void)
{
    gate.open = false;
    gate.arrived = 0;
    gate.point = STORE_FP_BATCH;
    store_set_fault_hook(st, gate_hook, &gate);
    store_req_t *plug = NULL;
    cr_assert_eq(store_req_list_live(&plug), STORE_OK);
    cr_assert_eq(store_submit(st, plug, NULL, NULL), STORE_OK);
    pthread_mutex_lock(&gate.mu);
    while (gate.arrived == 0)
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
}

static void release_writer(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* ---- Runtime: a store process and client processes ------------------------------ */

enum { T_NEXT = 0x7e570001, T_DONE, T_RESULT };

static rt_pid_t start_runtime_and_server(void)
{
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    rt_up = true;
    ib = rt_inbox_open(0);
    cr_assert_not_null(ib);
    me = rt_inbox_pid(ib);
    rt_pid_t server;
    cr_assert_eq(rt_spawn(&store_server, st, NULL, &server), RT_OK);
    return server;
}

/* A client: writes `count` versions of its room one after another, each
 * through store_call + rt_await (as a RoomServer does: nothing else
 * happens in the room until the change is durable), then reports
 * T_DONE {a = acked | errors << 32, b = last error}. */
typedef struct client_arg {
    rt_pid_t server;
    char room[32];
    uint32_t count;
    uint64_t first;      /* first version written */
} client_arg_t;

typedef struct client {
    client_arg_t a;
    uint32_t sent, acked, errors;
    int last_err;
    uint64_t ref;
} client_t;

static rt_reason_t *client_init(void *arg, void **state)
{
    client_t *c = calloc(1, sizeof *c);
    if (!c)
        return rt_reason_new("enomem");
    c->a = *(client_arg_t *)arg;
    free(arg);  /* spawn_client's copy: init is the last to borrow it */
    *state = c;
    rt_send(rt_self(), T_NEXT, 0, 0);
    return NULL;
}

static void client_next(client_t *c)
{
    if (c->sent == c->a.count) {
        rt_send(me, T_DONE, c->acked | (uint64_t)c->errors << 32, (uint64_t)(int64_t)c->last_err);
        rt_stop(RT_NORMAL);
        return;
    }
    uint64_t v = c->a.first + c->sent;
    char buf[256];
    state_text(buf, sizeof buf, c->a.room, v, "client");
    store_req_t *r = NULL;
    CHECK(store_req_put_state(&r, c->a.room, buf, strlen(buf), 1, v, false) == STORE_OK);
    CHECK(store_call(c->a.server, r, WAIT_MS, &c->ref) == RT_OK);
    rt_await(c->ref);
    c->sent++;
}

static void client_info(void *state, rt_msg_t *m)
{
    client_t *c = state;
    if (m->kind == RT_MSG_INFO && m->tag == T_NEXT) {
        client_next(c);
    } else if (m->kind == RT_MSG_REPLY && m->ref == c->ref) {
        store_req_t *r;
        int err = store_reply(m, &r);
        if (err == STORE_OK) {
            CHECK(r != NULL && store_req_version(r) == c->a.first + c->sent - 1);
            c->acked++;
        } else {
            c->errors++;
            c->last_err = err;
        }
        client_next(c);
    }
}

static void client_free(void *state, rt_reason_t *why)
{
    free(state);
}

static const rt_behaviour_t client_b = RT_BEHAVIOUR(
    .name = "store_client", .init = client_init, .handle_info = client_info,
    .terminate = client_free);

static void spawn_client(rt_pid_t server, const char *room, uint32_t count, uint64_t first)
{
    /* init runs later, as the process's first message, and borrows its
     * arg until then: the arg cannot live on this stack. */
    client_arg_t *a = calloc(1, sizeof *a);
    cr_assert_not_null(a);
    *a = (client_arg_t){ .server = server, .count = count, .first = first };
    snprintf(a->room, sizeof a->room, "%s", room);
    rt_pid_t pid;
    cr_assert_eq(rt_spawn(&client_b, a, NULL, &pid), RT_OK);
}

/* Waits for one client's T_DONE; returns acked, sets *errors, *last_err. */
static uint32_t client_done(uint32_t *errors, int *last_err)
{
    rt_msg_t *m = rt_inbox_recv_match(ib, RT_MSG_INFO, 0, WAIT_MS);
    cr_assert_not_null(m, "a client did not finish");
    cr_assert_eq(m->tag, T_DONE);
    uint32_t acked = (uint32_t)m->a;
    *errors = (uint32_t)(m->a >> 32);
    *last_err = (int)(int64_t)m->b;
    rt_msg_free(m);
    return acked;
}

/* A blocking call to the store process from the test thread. */
static int call_sync(rt_pid_t server, store_req_t *req, rt_msg_t **reply, store_req_t **out)
{
    rt_msg_t *m = rt_msg_new(STORE_MSG_REQ);
    cr_assert_not_null(m);
    rt_msg_set_data(m, &req->rc, RT_OWN_RC);
    int rc = rt_call_sync(server, m, WAIT_MS, reply);
    cr_assert(rc == RT_OK || rc == RT_EEXIT, "rt_call_sync: %s", rt_strerror(rc));
    return store_reply(*reply, out);
}

/* ---- Opening, closing, reopening -------------------------------------------------- */

/* One value from the database file, read with a separate connection. */
static long long db_int(const char *query)
{
    char path[128];
    snprintf(path, sizeof path, "%s/roost.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    cr_assert_eq(sqlite3_prepare_v2(db, query, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

Test(store, open_close, .init = setup, .fini = teardown)
{
    /* A nested --data directory is created with its parents. */
    char nested[128];
    snprintf(nested, sizeof nested, "%s/a/b/data", dir);
    st = open_with((store_config_t){ .data_dir = nested });
    struct stat sb;
    char path[160];
    snprintf(path, sizeof path, "%s/roost.db", nested);
    cr_assert_eq(stat(path, &sb), 0, "roost.db created");
    store_close(st);
    st = NULL;

    open_store();
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.backlog, 0);
    cr_assert_eq(s.commits, 0);
    store_close(st);
    st = NULL;
    cr_assert_eq(db_int("SELECT version FROM store_schema"), 1, "database schema version 1");

    /* WAL mode is a property of the file: a fresh connection sees it. */
    snprintf(path, sizeof path, "%s/roost.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);

    /* close(NULL) is a no-op. */
    store_close(NULL);
}

Test(store, open_errors, .init = setup, .fini = teardown)
{
    /* --data names a file, not a directory. */
    char file[128];
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    store_t *s = NULL;
    cr_assert_eq(store_open(&(store_config_t){ .data_dir = file }, &s), STORE_EIO);
    cr_assert_null(s);

    /* A database whose schema is newer than this binary is refused, untouched. */
    open_store();
    store_close(st);
    st = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/roost.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "UPDATE store_schema SET version = 99", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(store_open(&(store_config_t){ .data_dir = dir }, &s), STORE_EVERSION);
    cr_assert_null(s);
    cr_assert_eq(db_int("SELECT version FROM store_schema"), 99);
}

Test(store, reopen_after_clean_close, .init = setup, .fini = teardown)
{
    open_store();
    cr_assert_eq(put("r1", 1), STORE_OK);
    cr_assert_eq(put("r1", 2), STORE_OK);
    cr_assert_eq(put("r2", 7), STORE_OK);
    store_req_t *r;
    cr_assert_eq(store_req_append_event(&r, "r1", 1000, "room_created", NULL, NULL), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);
    cr_assert_eq(store_req_put_call(&r, "r1", 1000, 1500, 9000, "[\"alice\"]", 7500), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);

    reopen_store();
    cr_assert_eq(stored_version("r1"), 2);
    cr_assert_eq(stored_version("r2"), 7);
    cr_assert_eq(store_req_read_events(&r, "r1", 0, 0), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    uint64_t next;
    const store_event_t *ev = store_req_events(r, &n, &next);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(ev[0].type, "room_created");
    store_req_free(r);
    cr_assert_eq(store_req_query_calls(&r, "alice", 0), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    const store_call_t *calls = store_req_calls(r, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(calls[0].duration_ms, 7500);
    store_req_free(r);

    /* Reopening ran no migration again and a new event continues the seq. */
    cr_assert_eq(store_req_append_event(&r, "r1", 0, "room_ended", NULL, NULL), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    cr_assert_eq(store_req_seq(r), 2);
    store_req_free(r);
    store_close(st);
    st = NULL;
    cr_assert_eq(db_int("SELECT version FROM store_schema"), 1);
}

/* ---- Writes, acknowledgements, loads ------------------------------------------------ */

Test(store, write_ack_load, .init = setup, .fini = teardown)
{
    open_store();
    int err;
    const store_room_t *row;
    store_req_t *r = load("r1", &err, &row);
    cr_assert_eq(err, STORE_ENOTFOUND);
    cr_assert_null(row);
    store_req_free(r);

    int64_t before = time(NULL) * 1000LL;
    cr_assert_eq(put("r1", 1), STORE_OK);
    r = load("r1", &err, &row);
    cr_assert_eq(err, STORE_OK);
    cr_assert_str_eq(row->id, "r1");
    cr_assert_eq(row->version, 1);
    cr_assert_eq(row->state_version, 1);
    cr_assert_eq(row->stored_version, 1);
    cr_assert_not(row->ended);
    cr_assert_geq(row->updated_at, before);
    cr_assert_str_eq(json_string_value(json_object_get(row->state, "id")), "r1");
    store_req_free(r);

    cr_assert_eq(put("r1", 2), STORE_OK);
    cr_assert_eq(stored_version("r1"), 2);

    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.writes, 2);
    cr_assert_eq(s.commits, 2);
    cr_assert_eq(s.failed, 0);
    cr_assert_eq(s.backlog, 0);
}

/* store_req_put_state_buf shares the caller's buffer (no copy, no
 * parse): what is stored is that text byte for byte, the caller's
 * reference stays valid, and text that cannot be a serialised object is
 * refused at once. */
Test(store, put_state_buf_shares_the_buffer, .init = setup, .fini = teardown)
{
    open_store();
    char text[256];
    state_text(text, sizeof text, "b", 3, "shared");
    rt_buf_t *buf = rt_buf_new(text, strlen(text));
    cr_assert_not_null(buf);
    store_req_t *r = NULL;
    cr_assert_eq(store_req_put_state_buf(&r, "b", buf, 1, 3, false), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    cr_assert_eq(store_req_version(r), 3);
    store_req_free(r);
    cr_assert_str_eq(buf->data, text, "the caller's buffer outlives the request, unchanged");
    rt_buf_release(buf);

    sqlite3 *db;
    char path[128];
    snprintf(path, sizeof path, "%s/roost.db", dir);
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT state FROM rooms WHERE id = 'b'", -1, &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), text, "stored byte for byte");
    sqlite3_finalize(q);
    sqlite3_close(db);
    cr_assert_eq(stored_version("b"), 3);

    static const char *const bad_texts[] = {"[1]", "\"x\"", "{\"a\":1", " {}", "{} "};
    for (size_t i = 0; i < sizeof bad_texts / sizeof bad_texts[0]; i++) {
        rt_buf_t *b = rt_buf_new(bad_texts[i], strlen(bad_texts[i]));
        r = NULL;
        cr_assert_eq(store_req_put_state_buf(&r, "b", b, 1, 4, false), STORE_EINVAL, "%s",
                     bad_texts[i]);
        cr_assert_null(r);
        rt_buf_release(b);
    }
    rt_buf_t *nul = rt_buf_new("{\"a\":\"\0\"}", 9);
    cr_assert_eq(store_req_put_state_buf(&r, "b", nul, 1, 4, false), STORE_EINVAL);
    rt_buf_release(nul);
    rt_buf_t *empty = rt_buf_new("", 0);
    cr_assert_eq(store_req_put_state_buf(&r, "b", empty, 1, 4, false), STORE_EINVAL);
    cr_assert_eq(store_req_put_state_buf(&r, "", empty, 1, 4, false), STORE_EINVAL);
    rt_buf_release(empty);
    cr_assert_eq(stored_version("b"), 3);
}

Test(store, invalid_requests, .init = setup, .fini = teardown)
{
    store_req_t *r = NULL;
    const char *ok = "{\"a\":1}";
    cr_assert_eq(store_req_put_state(&r, "r", "{\"a\":", 5, 1, 1, false), STORE_EINVAL);
    cr_assert_eq(store_req_put_state(&r, "r", "[1,2]", 5, 1, 1, false), STORE_EINVAL,
                 "a state is a JSON object");
    cr_assert_eq(store_req_put_state(&r, "", ok, strlen(ok), 1, 1, false), STORE_EINVAL);
    cr_assert_eq(store_req_put_state(&r, NULL, ok, strlen(ok), 1, 1, false), STORE_EINVAL);
    cr_assert_eq(store_req_put_state(&r, "r", ok, strlen(ok), 0, 1, false), STORE_EINVAL,
                 "state versions start at 1");
    cr_assert_eq(store_req_put_state(&r, "r", "{}\0{}", 5, 1, 1, false), STORE_EINVAL);
    cr_assert_eq(store_req_append_event(&r, "r", 0, "", NULL, NULL), STORE_EINVAL);
    cr_assert_eq(store_req_append_event(&r, "r", 0, "t", NULL, "{nope"), STORE_EINVAL);
    cr_assert_eq(store_req_put_call(&r, "c", 1, 0, 0, "{}", 0), STORE_EINVAL);
    cr_assert_eq(store_req_put_call(&r, "c", 1, 0, 0, "[1,2]", 0), STORE_EINVAL,
                 "participants are user id strings");
    cr_assert_eq(store_req_read_events(&r, "r", 0, 1001), STORE_EINVAL);
    cr_assert_eq(store_req_query_calls(&r, NULL, 5000), STORE_EINVAL);
    cr_assert_null(r, "no request was built");

    /* An event's data may be any JSON value. */
    cr_assert_eq(store_req_append_event(&r, "r", 0, "t", NULL, "42"), STORE_OK);
    store_req_free(r);
}

/* ---- Through the store process ------------------------------------------------------- */

/* A process that tries store_exec (forbidden in a process) and reports. */
static rt_reason_t *exec_probe_init(void *arg, void **state)
{
    store_req_t *r = NULL;
    store_req_list_live(&r);
    int err = store_exec(arg, r);
    store_req_free(r);
    rt_send(me, T_RESULT, (uint64_t)(int64_t)err, 0);
    return rt_reason_new("done");
}

static const rt_behaviour_t exec_probe = RT_BEHAVIOUR(.name = "exec_probe", .init = exec_probe_init);

Test(store, process_api, .init = setup, .fini = teardown)
{
    open_store();
    rt_pid_t server = start_runtime_and_server();

    /* A write through the store process, from a client process. */
    spawn_client(server, "p1", 3, 1);
    uint32_t errors;
    int last;
    cr_assert_eq(client_done(&errors, &last), 3);
    cr_assert_eq(errors, 0);

    /* Reads as calls: the reply carries the completed request. */
    store_req_t *r = NULL, *got;
    rt_msg_t *reply;
    cr_assert_eq(store_req_load_state(&r, "p1"), STORE_OK);
    cr_assert_eq(call_sync(server, r, &reply, &got), STORE_OK);
    size_t n;
    const store_room_t *rows = store_req_rooms(got, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(rows[0].version, 3);
    rt_msg_free(reply);

    cr_assert_eq(store_req_load_state(&r, "nope"), STORE_OK);
    cr_assert_eq(call_sync(server, r, &reply, &got), STORE_ENOTFOUND);
    cr_assert_not_null(got);
    rt_msg_free(reply);

    /* A cast is executed in order and answered to nobody. */
    cr_assert_eq(store_req_append_event(&r, "p1", 0, "room_created", NULL, NULL), STORE_OK);
    cr_assert_eq(store_cast(server, r), RT_OK);
    cr_assert_eq(store_req_read_events(&r, "p1", 0, 0), STORE_OK);
    cr_assert_eq(call_sync(server, r, &reply, &got), STORE_OK);
    store_req_events(got, &n, NULL);
    cr_assert_eq(n, 1, "the read queued after the cast sees it");
    rt_msg_free(reply);

    /* A call that is not a request is refused, not crashed on. */
    rt_msg_t *junk = rt_msg_new(STORE_MSG_REQ);
    cr_assert_eq(rt_call_sync(server, junk, WAIT_MS, &reply), RT_OK);
    cr_assert_eq(store_reply(reply, &got), STORE_EINVAL);
    cr_assert_null(got);
    rt_msg_free(reply);
    cr_assert(rt_is_alive(server));

    /* store_exec inside a process is refused: a scheduler must not wait
     * for an fsync. */
    rt_pid_t probe;
    cr_assert_eq(rt_spawn(&exec_probe, st, NULL, &probe), RT_OK);
    rt_msg_t *m = rt_inbox_recv_match(ib, RT_MSG_INFO, 0, WAIT_MS);
    cr_assert_not_null(m);
    cr_assert_eq(m->tag, T_RESULT);
    cr_assert_eq((int)(int64_t)m->a, STORE_ECONTEXT);
    rt_msg_free(m);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Group commit and coalescing ----------------------------------------------------- */

Test(store, group_commit, .init = setup, .fini = teardown)
{
    enum { CLIENTS = 64, EACH = 25 };
    open_store();
    rt_pid_t server = start_runtime_and_server();
    uint64_t t0 = rt_now_ns();
    for (int i = 0; i < CLIENTS; i++) {
        char room[32];
        snprintf(room, sizeof room, "g%02d", i);
        spawn_client(server, room, EACH, 1);
    }
    uint32_t acked = 0;
    for (int i = 0; i < CLIENTS; i++) {
        uint32_t errors;
        int last;
        acked += client_done(&errors, &last);
        cr_assert_eq(errors, 0, "a write failed: %s", store_strerror(last));
    }
    uint64_t ms = (rt_now_ns() - t0) / 1000000;
    cr_assert_eq(acked, CLIENTS * EACH, "every write acknowledged");
    ASSERT_NO_BAD_CHECKS();

    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.writes, CLIENTS * EACH);
    cr_assert_eq(s.failed, 0);
    cr_log_info("group commit: %llu writes from %d processes in %llu commits "
                "(%.1f writes per commit, largest batch %llu, %.2f ms per commit, %llu ms total)\n",
                (unsigned long long)s.writes, CLIENTS, (unsigned long long)s.commits,
                (double)s.writes / (double)s.commits, (unsigned long long)s.max_batch,
                (double)s.commit_ns / 1e6 / (double)s.commits, (unsigned long long)ms);
    fprintf(stderr,
            "group commit: %llu writes from %d processes in %llu commits (%.1f writes per "
            "commit, largest batch %llu, %.2f ms per commit, %llu ms total)\n",
            (unsigned long long)s.writes, CLIENTS, (unsigned long long)s.commits,
            (double)s.writes / (double)s.commits, (unsigned long long)s.max_batch,
            (double)s.commit_ns / 1e6 / (double)s.commits, (unsigned long long)ms);
    /* Each client waits for its ack before its next write, so at most
     * CLIENTS writes are ever queued; with a real fsync per commit most
     * of them share one. A quarter is a loose bound. */
    cr_assert_lt(s.commits * 4, s.writes, "%llu commits for %llu writes",
                 (unsigned long long)s.commits, (unsigned long long)s.writes);

    for (int i = 0; i < CLIENTS; i++) {
        char room[32];
        snprintf(room, sizeof room, "g%02d", i);
        cr_assert_eq(stored_version(room), EACH);
    }
}

Test(store, coalescing, .init = setup, .fini = teardown)
{
    open_store();
    hold_writer();
    enum { NC = 50, ND = 10 };
    store_req_t *c[NC], *d[ND], *e[3];
    for (int i = 0; i < NC; i++) {
        submit_tracked(c[i] = put_req("c", (uint64_t)i + 1, 1, false));
        if (i < ND)
            submit_tracked(d[i] = put_req("d", (uint64_t)i + 1, 1, false));
    }
    /* put, mark_ended, put: the mark is a barrier, nothing coalesces. */
    submit_tracked(e[0] = put_req("e", 1, 1, false));
    cr_assert_eq(store_req_mark_ended(&e[1], "e"), STORE_OK);
    submit_tracked(e[1]);
    submit_tracked(e[2] = put_req("e", 2, 1, false));
    cr_assert_eq(store_backlog(st), 1 + NC + ND + 3, "the plug and everything queued");
    release_writer();
    wait_tracked(NC + ND + 3);

    for (int i = 0; i < NC; i++) {
        cr_assert_eq(store_req_err(c[i]), STORE_OK, "every request is acknowledged");
        cr_assert_eq(store_req_coalesced(c[i]), i < NC - 1);
        cr_assert_eq(store_req_version(c[i]), (uint64_t)i + 1, "each with its own version");
        store_req_free(c[i]);
    }
    for (int i = 0; i < ND; i++) {
        cr_assert_eq(store_req_err(d[i]), STORE_OK);
        cr_assert_eq(store_req_coalesced(d[i]), i < ND - 1);
        store_req_free(d[i]);
    }
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(store_req_err(e[i]), STORE_OK);
        cr_assert_not(store_req_coalesced(e[i]));
        store_req_free(e[i]);
    }
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.commits, 1, "one batch, one commit");
    cr_assert_eq(s.max_batch, NC + ND + 3);
    cr_assert_eq(s.coalesced, (NC - 1) + (ND - 1));
    cr_assert_eq(s.written, 5, "c50, d10, e1, mark e, e2");
    cr_assert_eq(s.writes, NC + ND + 3);
    cr_assert_eq(stored_version("c"), NC);
    cr_assert_eq(stored_version("d"), ND);
    int err;
    const store_room_t *row;
    store_req_t *r = load("e", &err, &row);
    cr_assert_eq(row->version, 2);
    cr_assert_not(row->ended, "the put after mark_ended wrote ended = false");
    store_req_free(r);
}

/* ---- Live rooms and the ended flag --------------------------------------------------- */

/* Whether a room is live: put_state writes its ended flag whichever way
 * it goes (an update that keeps it, one that sets it, one that clears
 * it after a mark_ended), and list_live follows. */
static size_t live_count(void)
{
    store_req_t *r;
    cr_assert_eq(store_req_list_live(&r), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    store_req_rooms(r, &n);
    store_req_free(r);
    return n;
}

static void put_ended(const char *room, uint64_t v, bool ended)
{
    store_req_t *r = put_req(room, v, 1, ended);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);
}

Test(store, put_state_sets_and_clears_ended, .init = setup, .fini = teardown)
{
    open_store();
    put_ended("e", 1, false);
    put_ended("e", 2, false);
    cr_assert_eq(stored_version("e"), 2);
    cr_assert_eq(live_count(), 1);
    put_ended("e", 3, true);
    cr_assert_eq(stored_version("e"), 3);
    cr_assert_eq(live_count(), 0, "ended by its put");
    put_ended("e", 4, true);
    cr_assert_eq(stored_version("e"), 4, "an ended room's state is still written");
    cr_assert_eq(live_count(), 0);
    put_ended("e", 5, false);
    cr_assert_eq(live_count(), 1, "live again");
    store_req_t *r;
    cr_assert_eq(store_req_mark_ended(&r, "e"), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);
    cr_assert_eq(live_count(), 0);
    put_ended("e", 6, false);
    cr_assert_eq(live_count(), 1, "a put after mark_ended leaves its own flag");
    cr_assert_eq(stored_version("e"), 6);
}

/* Checkpoints run on the back end's own thread (sqlite.c "Checkpoints").
 * A writer that never pauses must still see its WAL restarted from the
 * beginning: with a tiny batch size every batch is queued before the
 * previous one commits, so only the checkpointer's pause lets the WAL
 * be fully checkpointed between two transactions. Without it, this run
 * leaves a WAL of ~16-20 MB; with a restart every 32 frames, 1-3 MB
 * (what is written while a checkpoint pass runs). Every acknowledged
 * state is there after a reopen. */
#define CK_ROOMS 100
#define CK_WRITES 2400

static void count_done(store_req_t *req, void *ctx)
{
    CHECK(store_req_err(req) == STORE_OK);
    store_req_free(req);
    tracked_done(NULL, ctx);
}

Test(store, background_checkpoints_bound_the_wal, .init = setup, .fini = teardown)
{
    st = open_with((store_config_t){ .max_batch = 4, .checkpoint_frames = 16 });
    char text[6200];
    for (int i = 0; i < CK_WRITES; i++) {
        char room[16];
        snprintf(room, sizeof room, "ck%d", i % CK_ROOMS);
        /* ~6 KB: an overflow page or two per row, so the WAL grows fast */
        int k = snprintf(text, sizeof text, "{\"id\":\"%s\",\"version\":%d,\"pad\":\"", room,
                         i + 1);
        memset(text + k, 'a' + i % 26, 6000);
        memcpy(text + k + 6000, "\"}", 3);
        store_req_t *r = NULL;
        cr_assert_eq(store_req_put_state(&r, room, text, (size_t)k + 6002, 1, (uint64_t)i + 1,
                                         false),
                     STORE_OK);
        cr_assert_eq(store_submit(st, r, count_done, &trk), STORE_OK);
    }
    wait_tracked(CK_WRITES);
    ASSERT_NO_BAD_CHECKS();
    store_stats_t stats;
    store_get_stats(st, &stats);
    cr_assert_geq(stats.commits, CK_WRITES / 4, "one commit per batch of 4");

    char wal[128];
    snprintf(wal, sizeof wal, "%s/roost.db-wal", dir);
    struct stat sb;
    cr_assert_eq(stat(wal, &sb), 0);
    cr_log_info("WAL after %d writes in %llu commits: %lld bytes\n", CK_WRITES,
                (unsigned long long)stats.commits, (long long)sb.st_size);
    cr_assert_lt(sb.st_size, 8 << 20, "the WAL was restarted while the writer kept writing");

    reopen_store();
    for (int i = 0; i < CK_ROOMS; i++) {
        char room[16];
        snprintf(room, sizeof room, "ck%d", i);
        cr_assert_eq(stored_version(room), (uint64_t)(CK_WRITES - CK_ROOMS + i + 1));
    }
}

Test(store, list_live_and_mark_ended, .init = setup, .fini = teardown)
{
    open_store();
    cr_assert_eq(put("b", 1), STORE_OK);
    cr_assert_eq(put("a", 1), STORE_OK);
    cr_assert_eq(put("c", 4), STORE_OK);
    store_req_t *r = put_req("d", 9, 1, true);  /* written as ended in one go */
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);

    cr_assert_eq(store_req_mark_ended(&r, "b"), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);
    cr_assert_eq(store_req_mark_ended(&r, "zz"), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_ENOTFOUND);
    store_req_free(r);

    cr_assert_eq(store_req_list_live(&r), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    const store_room_t *rows = store_req_rooms(r, &n);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(rows[0].id, "a");
    cr_assert_str_eq(rows[1].id, "c");
    cr_assert_eq(rows[1].version, 4);
    cr_assert_eq(json_integer_value(json_object_get(rows[1].state, "version")), 4);
    cr_assert_eq(rows[0].err, STORE_OK);
    store_req_free(r);

    /* An ended room's last state stays loadable. */
    int err;
    const store_room_t *row;
    r = load("b", &err, &row);
    cr_assert_eq(err, STORE_OK);
    cr_assert(row->ended);
    cr_assert_eq(row->version, 1);
    store_req_free(r);
    r = load("d", &err, &row);
    cr_assert(row->ended);
    store_req_free(r);

    /* It survives a restart too: what a restore after kill -9 reads. */
    reopen_store();
    cr_assert_eq(store_req_list_live(&r), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_rooms(r, &n);
    cr_assert_eq(n, 2);
    store_req_free(r);
}

/* ---- History: events and calls -------------------------------------------------------- */

static void append(const char *room, const char *type, const char *user, const char *data,
                   uint64_t want_seq)
{
    store_req_t *r;
    cr_assert_eq(store_req_append_event(&r, room, 0, type, user, data), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    cr_assert_eq(store_req_seq(r), want_seq);
    store_req_free(r);
}

/* Reads one page; checks its seqs are from..to and its next. */
static void page(const char *room, uint64_t after, uint32_t limit, uint64_t from, uint64_t to,
                 uint64_t want_next)
{
    store_req_t *r;
    cr_assert_eq(store_req_read_events(&r, room, after, limit), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    uint64_t next = 99;
    const store_event_t *ev = store_req_events(r, &n, &next);
    cr_assert_eq(n, from ? to - from + 1 : 0, "page after %llu", (unsigned long long)after);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ev[i].seq, from + i);
    cr_assert_eq(next, want_next);
    store_req_free(r);
}

Test(store, events_append_and_page, .init = setup, .fini = teardown)
{
    open_store();
    append("r1", "room_created", NULL, NULL, 1);
    append("r1", "participant_joined", "alice", NULL, 2);
    append("r2", "room_created", NULL, NULL, 1);
    append("r1", "status_changed", "alice", "{\"muted\":true}", 3);
    append("r1", "participant_left", "alice", NULL, 4);
    append("r2", "room_ended", NULL, NULL, 2);
    append("r1", "room_restarted", NULL, "{\"reason\":\"boom\"}", 5);

    page("r1", 0, 2, 1, 2, 2);
    page("r1", 2, 2, 3, 4, 4);
    page("r1", 4, 2, 5, 5, 0);
    page("r1", 5, 2, 0, 0, 0);
    page("r1", 0, 0, 1, 5, 0);  /* default limit */
    page("r1", 0, 5, 1, 5, 0);  /* exactly the rest: no next */
    page("r2", 0, 10, 1, 2, 0);
    page("nobody", 0, 10, 0, 0, 0);

    store_req_t *r;
    cr_assert_eq(store_req_read_events(&r, "r1", 2, 2), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    const store_event_t *ev = store_req_events(r, &n, NULL);
    cr_assert_str_eq(ev[0].type, "status_changed");
    cr_assert_str_eq(ev[0].user, "alice");
    cr_assert(json_is_true(json_object_get(ev[0].data, "muted")));
    cr_assert_str_eq(ev[1].type, "participant_left");
    cr_assert_null(ev[1].data);
    cr_assert_gt(ev[0].at, 1600000000000LL, "at defaults to now");
    store_req_free(r);
    cr_assert_eq(store_req_read_events(&r, "r1", 0, 1), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    ev = store_req_events(r, &n, NULL);
    cr_assert_null(ev[0].user);
    store_req_free(r);

    /* A given `at` is kept. */
    cr_assert_eq(store_req_append_event(&r, "r3", 1234, "room_created", NULL, NULL), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);
    cr_assert_eq(store_req_read_events(&r, "r3", 0, 0), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    ev = store_req_events(r, &n, NULL);
    cr_assert_eq(ev[0].at, 1234);
    store_req_free(r);
}

/* The writer counts each room's seqs in memory (sqlite.c "Event seqs"):
 * a batch that inserted events and then failed must not leave them
 * counted, and a reopened store must go on from what SQLite holds. */
Test(store, event_seqs_survive_rollback_and_reopen, .init = setup, .fini = teardown)
{
    open_store();
    append("r1", "room_created", NULL, NULL, 1);
    append("r2", "room_created", NULL, NULL, 1);

    /* The events are inserted, then the commit fails: rolled back. */
    store_fail_next(st, STORE_FP_COMMIT, 1, STORE_EIO);
    store_req_t *r;
    cr_assert_eq(store_req_append_event(&r, "r1", 0, "status_changed", "a", NULL), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_EIO);
    cr_assert_eq(store_req_seq(r), 0, "no seq for an event that was not stored");
    store_req_free(r);
    append("r1", "status_changed", "a", NULL, 2);
    append("r2", "status_changed", "a", NULL, 2);

    /* A write failing after an event of the same room was inserted in
     * the same batch (the fault hook fails the put of "y"). */
    gate.fail_room = "y";
    hold_writer();
    store_req_t *ev, *y = put_req("y", 1, 1, false);
    cr_assert_eq(store_req_append_event(&ev, "r1", 0, "status_changed", "a", NULL), STORE_OK);
    submit_tracked(ev);
    submit_tracked(y);
    release_writer();
    wait_tracked(2);
    store_set_fault_hook(st, NULL, NULL);
    gate.fail_room = NULL;
    cr_assert_eq(store_req_err(ev), STORE_EIO);
    store_req_free(ev);
    store_req_free(y);
    append("r1", "status_changed", "a", NULL, 3);
    page("r1", 0, 10, 1, 3, 0);

    /* A new store knows nothing but what SQLite holds. */
    reopen_store();
    append("r1", "status_changed", "a", NULL, 4);
    append("r3", "room_created", NULL, NULL, 1);
    page("r1", 0, 10, 1, 4, 0);
}

/* Events built by store_req_append_event_dumped (what the HistoryServer
 * sends) read back like the others; their strings share one block. */
Test(store, dumped_events_read_back, .init = setup, .fini = teardown)
{
    open_store();
    store_req_t *r;
    cr_assert_eq(store_req_append_event_dumped(&r, "d", 42, "status_changed", "alice",
                                               "{\"muted\":true,\"n\":[1,2]}"),
                 STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    cr_assert_eq(store_req_seq(r), 1);
    store_req_free(r);
    cr_assert_eq(store_req_append_event_dumped(&r, "d", 0, "room_ended", NULL, NULL), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    cr_assert_eq(store_req_seq(r), 2);
    store_req_free(r);
    append("d", "participant_left", "alice", NULL, 3);

    cr_assert_eq(store_req_read_events(&r, "d", 0, 0), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    const store_event_t *ev = store_req_events(r, &n, NULL);
    cr_assert_eq(n, 3);
    cr_assert_eq(ev[0].at, 42);
    cr_assert_str_eq(ev[0].type, "status_changed");
    cr_assert_str_eq(ev[0].user, "alice");
    cr_assert(json_is_true(json_object_get(ev[0].data, "muted")));
    cr_assert_eq(json_array_size(json_object_get(ev[0].data, "n")), 2);
    cr_assert_str_eq(ev[1].type, "room_ended");
    cr_assert_null(ev[1].user);
    cr_assert_null(ev[1].data);
    cr_assert_gt(ev[1].at, 1600000000000LL, "at defaults to now");
    store_req_free(r);

    /* Ids are still checked; the data only for being there at all. */
    r = NULL;
    cr_assert_eq(store_req_append_event_dumped(&r, "", 0, "t", NULL, NULL), STORE_EINVAL);
    cr_assert_eq(store_req_append_event_dumped(&r, "d", 0, "", NULL, NULL), STORE_EINVAL);
    cr_assert_eq(store_req_append_event_dumped(&r, "d", 0, "t", "", NULL), STORE_EINVAL);
    cr_assert_eq(store_req_append_event_dumped(&r, "d", 0, "t", NULL, ""), STORE_EINVAL);
    cr_assert_null(r);
}

static void put_call(const char *id, int64_t created, const char *participants)
{
    store_req_t *r;
    cr_assert_eq(store_req_put_call(&r, id, created, created ? created + 10 : 0, created + 100,
                                    participants, 90),
                 STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);
}

/* Queries calls and checks their ids, in order (a NULL-terminated list). */
static void want_calls(const char *user, uint32_t limit, const char *const *ids)
{
    store_req_t *r;
    cr_assert_eq(store_req_query_calls(&r, user, limit), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n, want = 0;
    while (ids[want])
        want++;
    const store_call_t *calls = store_req_calls(r, &n);
    cr_assert_eq(n, want, "calls of %s: %zu, want %zu", user ? user : "all", n, want);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(calls[i].id, ids[i], "calls of %s, #%zu", user ? user : "all", i);
    store_req_free(r);
}

#define IDS(...) ((const char *const[]){ __VA_ARGS__, NULL })

Test(store, calls_by_user, .init = setup, .fini = teardown)
{
    open_store();
    put_call("c1", 1000, "[\"alice\",\"bob\"]");
    put_call("c2", 2000, "[\"bob\",\"carol\"]");
    put_call("c3", 3000, "[\"alice\"]");
    put_call("c4", 4000, "[\"alice\",\"carol\",\"alice\"]");  /* a duplicate is one entry */
    put_call("c5", 0, "[]");                                  /* never started, nobody */

    want_calls("alice", 10, IDS("c4", "c3", "c1"));
    want_calls("alice", 2, IDS("c4", "c3"));
    want_calls("bob", 0, IDS("c2", "c1"));
    want_calls("carol", 10, IDS("c4", "c2"));
    want_calls(NULL, 10, IDS("c4", "c3", "c2", "c1", "c5"));
    want_calls(NULL, 1, IDS("c4"));
    want_calls("dave", 10, (const char *const[]){ NULL });

    store_req_t *r;
    cr_assert_eq(store_req_query_calls(&r, "bob", 1), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    const store_call_t *c = store_req_calls(r, &n);
    cr_assert_str_eq(c[0].id, "c2");
    cr_assert_eq(c[0].created_at, 2000);
    cr_assert_eq(c[0].started_at, 2010);
    cr_assert_eq(c[0].ended_at, 2100);
    cr_assert_eq(c[0].duration_ms, 90);
    cr_assert_eq(json_array_size(c[0].participants), 2);
    cr_assert_str_eq(json_string_value(json_array_get(c[0].participants, 1)), "carol");
    store_req_free(r);

    cr_assert_eq(store_req_query_calls(&r, NULL, 10), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    c = store_req_calls(r, &n);
    cr_assert_str_eq(c[4].id, "c5");
    cr_assert_eq(c[4].started_at, 0, "never started");
    store_req_free(r);

    /* Rewriting a record re-indexes it. */
    put_call("c1", 1000, "[\"carol\"]");
    want_calls("alice", 10, IDS("c4", "c3"));
    want_calls("carol", 10, IDS("c4", "c2", "c1"));
}

/* ---- State migration on load ---------------------------------------------------------- */

static atomic_int migrations_run;

/* The test's toy domain: version 1 kept members as an array of names,
 * version 2 keeps participants as an object keyed by name. A state with
 * no members cannot be migrated. */
static json_t *toy_migrate(json_t *state, uint32_t from)
{
    atomic_fetch_add(&migrations_run, 1);
    CHECK(from == 1);
    json_t *members = json_object_get(state, "members");
    if (!json_is_array(members)) {
        json_decref(state);
        return NULL;
    }
    json_t *parts = json_object();
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
        json_object_set_new(parts, json_string_value(m), json_pack("{s:b}", "connected", 1));
    json_object_set_new(state, "participants", parts);
    json_object_del(state, "members");
    return state;
}

static const store_schema_t toy_schema = { .version = 2, .migrate = toy_migrate };

static void put_text(const char *room, const char *text, uint32_t sv, uint64_t v)
{
    store_req_t *r;
    cr_assert_eq(store_req_put_state(&r, room, text, strlen(text), sv, v, false), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    store_req_free(r);
}

Test(store, migration_on_load, .init = setup, .fini = teardown)
{
    open_store();
    put_text("old", "{\"id\":\"old\",\"members\":[\"alice\",\"bob\"]}", 1, 5);
    put_text("broken", "{\"id\":\"broken\"}", 1, 1);
    put_text("future", "{\"id\":\"future\"}", 3, 1);
    put_text("new", "{\"id\":\"new\",\"participants\":{}}", 2, 1);

    /* Without a schema, states load as stored. */
    int err;
    const store_room_t *row;
    store_req_t *r = load("old", &err, &row);
    cr_assert_eq(err, STORE_OK);
    cr_assert_eq(row->state_version, 1);
    cr_assert(json_is_array(json_object_get(row->state, "members")));
    store_req_free(r);

    /* After a restart of a newer binary that registers version 2. */
    reopen_store();
    store_set_schema(st, &toy_schema);
    r = load("old", &err, &row);
    cr_assert_eq(err, STORE_OK);
    cr_assert_eq(row->state_version, 2);
    cr_assert_eq(row->stored_version, 1);
    cr_assert_eq(row->version, 5, "the room's version is not the schema's");
    cr_assert_null(json_object_get(row->state, "members"));
    json_t *parts = json_object_get(row->state, "participants");
    cr_assert(json_is_object(parts));
    cr_assert(json_is_true(json_object_get(json_object_get(parts, "bob"), "connected")));
    store_req_free(r);
    cr_assert_eq(atomic_load(&migrations_run), 1);

    /* A current state is not migrated. */
    r = load("new", &err, &row);
    cr_assert_eq(err, STORE_OK);
    cr_assert_eq(row->state_version, 2);
    store_req_free(r);
    cr_assert_eq(atomic_load(&migrations_run), 1);

    r = load("broken", &err, &row);
    cr_assert_eq(err, STORE_EMIGRATE);
    cr_assert_null(row->state);
    store_req_free(r);
    r = load("future", &err, &row);
    cr_assert_eq(err, STORE_EVERSION, "a state from a newer binary is not misread");
    store_req_free(r);

    /* Listing live rooms reports the bad ones and restores the others. */
    cr_assert_eq(store_req_list_live(&r), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    const store_room_t *rows = store_req_rooms(r, &n);
    cr_assert_eq(n, 4);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].id, "broken") == 0)
            cr_assert_eq(rows[i].err, STORE_EMIGRATE);
        else if (strcmp(rows[i].id, "future") == 0)
            cr_assert_eq(rows[i].err, STORE_EVERSION);
        else {
            cr_assert_eq(rows[i].err, STORE_OK);
            cr_assert_eq(rows[i].state_version, 2);
        }
    }
    store_req_free(r);

    /* The stored row is untouched until the room writes again. */
    store_set_schema(st, NULL);
    r = load("old", &err, &row);
    cr_assert_eq(row->stored_version, 1);
    store_req_free(r);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Fault injection ----------------------------------------------------------------- */

Test(store, fault_commit_error_reply, .init = setup, .fini = teardown)
{
    open_store();
    rt_pid_t server = start_runtime_and_server();
    spawn_client(server, "f", 1, 1);  /* writes v1: acknowledged */
    uint32_t errors;
    int last;
    cr_assert_eq(client_done(&errors, &last), 1);

    /* The disk is full at the next commit: v2 is answered with the error. */
    store_fail_next(st, STORE_FP_COMMIT, 1, STORE_EFULL);
    spawn_client(server, "f", 1, 2);
    cr_assert_eq(client_done(&errors, &last), 0, "nothing acknowledged");
    cr_assert_eq(errors, 1);
    cr_assert_eq(last, STORE_EFULL);
    cr_assert_eq(stored_version("f"), 1, "the stored state is still the previous one");
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.writes, 1);
    cr_assert_eq(s.commits, 1);
    cr_assert_eq(s.failed, 1);

    /* The fault is gone: the room's next write succeeds. */
    spawn_client(server, "f", 1, 2);
    cr_assert_eq(client_done(&errors, &last), 1);
    cr_assert_eq(stored_version("f"), 2);
    ASSERT_NO_BAD_CHECKS();
}

Test(store, fault_write_fails_whole_batch, .init = setup, .fini = teardown)
{
    open_store();
    cr_assert_eq(put("x", 1), STORE_OK);
    cr_assert_eq(put("y", 1), STORE_OK);
    append("x", "room_created", NULL, NULL, 1);

    /* One batch: x v2, y v2, an event nobody waits for, a read. The write
     * of y fails (as on an I/O error) after x's was executed in the same
     * transaction: x's must not survive either. */
    gate.fail_room = "y";
    hold_writer();
    store_req_t *x2 = put_req("x", 2, 1, false), *y2 = put_req("y", 2, 1, false), *ev, *rd;
    submit_tracked(x2);
    submit_tracked(y2);
    cr_assert_eq(store_req_append_event(&ev, "x", 0, "status_changed", "a", NULL), STORE_OK);
    cr_assert_eq(store_submit(st, ev, NULL, NULL), STORE_OK);
    cr_assert_eq(store_req_load_state(&rd, "x"), STORE_OK);
    submit_tracked(rd);
    release_writer();
    wait_tracked(3);
    store_set_fault_hook(st, NULL, NULL);
    gate.fail_room = NULL;

    cr_assert_eq(store_req_err(x2), STORE_EIO, "nothing of a failed batch is acknowledged");
    cr_assert_eq(store_req_err(y2), STORE_EIO);
    cr_assert_eq(store_req_err(rd), STORE_OK, "reads of the batch still run");
    size_t n;
    cr_assert_eq(store_req_rooms(rd, &n)[0].version, 1, "and see the rolled-back state");
    store_req_free(x2);
    store_req_free(y2);
    store_req_free(rd);

    cr_assert_eq(stored_version("x"), 1);
    cr_assert_eq(stored_version("y"), 1);
    page("x", 0, 10, 1, 1, 0);
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.writes, 3, "x1, y1, the first event");
    cr_assert_eq(s.lost, 1, "the unacknowledged event is counted as lost");
    cr_assert_eq(s.failed, 3);

    /* The next batch is fine, and the event seq did not move. */
    append("x", "status_changed", "a", NULL, 2);
    cr_assert_eq(put("y", 2), STORE_OK);
}

/* A write is answered only after a sync that began after its commit
 * (store.c rule 3): held at the sync, the write is committed but not
 * answered, and neither is a read queued after it (it could reveal the
 * write); both are answered once the sync returns. The hook holds the
 * syncer and counts the batches the writer takes, so the test knows the
 * writer is done with a batch when it takes the next one. */
typedef struct sync_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int at_sync, batches;
} sync_gate_t;

static sync_gate_t sg = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0 };

static int sync_gate_hook(void *ctx, store_fault_point_t p, const store_req_t *r)
{
    sync_gate_t *g = ctx;
    pthread_mutex_lock(&g->mu);
    if (p == STORE_FP_BATCH)
        g->batches++;
    if (p == STORE_FP_SYNC) {
        g->at_sync++;
        pthread_cond_broadcast(&g->cv);
        while (!g->open)
            pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static void sync_gate_wait(int *field, int n)
{
    pthread_mutex_lock(&sg.mu);
    while (*field < n)
        pthread_cond_wait(&sg.cv, &sg.mu);
    pthread_mutex_unlock(&sg.mu);
}

Test(store, answers_wait_for_the_sync, .init = setup, .fini = teardown)
{
    open_store();
    cr_assert_eq(put("s", 1), STORE_OK);
    store_set_fault_hook(st, sync_gate_hook, &sg);
    store_req_t *w = put_req("s", 2, 1, false), *rd = NULL, *w3 = put_req("t", 1, 1, false);
    submit_tracked(w);
    sync_gate_wait(&sg.at_sync, 1); /* w is committed; the syncer holds */
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.commits, 2, "w is committed");
    cr_assert_eq(store_req_load_state(&rd, "s"), STORE_OK);
    submit_tracked(rd);
    sync_gate_wait(&sg.batches, 2);
    submit_tracked(w3);
    sync_gate_wait(&sg.batches, 3); /* so the writer is done with rd's batch */
    pthread_mutex_lock(&trk.mu);
    int done = trk.done;
    pthread_mutex_unlock(&trk.mu);
    cr_assert_eq(done, 0, "nothing answered before the sync");
    pthread_mutex_lock(&sg.mu);
    sg.open = true;
    pthread_cond_broadcast(&sg.cv);
    pthread_mutex_unlock(&sg.mu);
    wait_tracked(3);
    store_set_fault_hook(st, NULL, NULL);
    cr_assert_eq(store_req_err(w), STORE_OK);
    cr_assert_eq(store_req_err(w3), STORE_OK);
    size_t n;
    cr_assert_eq(store_req_err(rd), STORE_OK);
    cr_assert_eq(store_req_rooms(rd, &n)[0].version, 2, "the read ran after the commit");
    store_get_stats(st, &s);
    cr_assert_geq(s.syncs, 2);
    cr_assert_leq(s.syncs, s.commits + 1, "at most one sync per commit (and the first one)");
    store_req_free(w);
    store_req_free(w3);
    store_req_free(rd);
}

/* A failed sync is final (store.c rule 5): what waited for it gets the
 * error, every later write is refused, reads go on; a store opened
 * again writes. */
Test(store, a_failed_sync_refuses_every_later_write, .init = setup, .fini = teardown)
{
    open_store();
    cr_assert_eq(put("z", 1), STORE_OK);
    store_fail_next(st, STORE_FP_SYNC, 1, STORE_EIO);
    cr_assert_eq(put("z", 2), STORE_EIO, "not confirmed by the disk: not acknowledged");
    cr_assert_eq(put("z", 3), STORE_EIO, "refused: the store stopped writing");
    store_req_t *ev;
    cr_assert_eq(store_req_append_event(&ev, "z", 0, "status_changed", NULL, NULL), STORE_OK);
    cr_assert_eq(store_exec(st, ev), STORE_EIO);
    store_req_free(ev);
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert(s.failed_stop);
    int err;
    const store_room_t *row;
    store_req_t *r = load("z", &err, &row);
    cr_assert_eq(err, STORE_OK, "reads still work");
    /* v2 was committed before its sync failed: it may be there (and is,
     * in this process); v3 was never written. */
    cr_assert_leq(row->version, 2);
    store_req_free(r);

    reopen_store();
    store_get_stats(st, &s);
    cr_assert_not(s.failed_stop);
    cr_assert_eq(put("z", 4), STORE_OK);
    cr_assert_eq(stored_version("z"), 4);
}

Test(store, fault_fail_next_counts, .init = setup, .fini = teardown)
{
    open_store();
    cr_assert_eq(put("k", 1), STORE_OK);
    store_fail_next(st, STORE_FP_COMMIT, 2, STORE_EIO);
    cr_assert_eq(put("k", 2), STORE_EIO);
    cr_assert_eq(put("k", 2), STORE_EIO);
    cr_assert_eq(stored_version("k"), 1);
    cr_assert_eq(put("k", 2), STORE_OK, "only the next two commits failed");
    store_fail_next(st, STORE_FP_WRITE, 1, STORE_EFULL);
    cr_assert_eq(put("k", 3), STORE_EFULL);
    cr_assert_eq(stored_version("k"), 2);
    cr_assert_eq(put("k", 3), STORE_OK);
}

/* ---- Backlog, refusal, close -------------------------------------------------------- */

Test(store, backlog, .init = setup, .fini = teardown)
{
    open_store();
    hold_writer();
    for (int i = 0; i < 10; i++) {
        store_req_t *r;
        cr_assert_eq(store_req_append_event(&r, "h", 0, "participant_joined", "u", NULL), STORE_OK);
        cr_assert_eq(store_submit(st, r, NULL, NULL), STORE_OK);  /* as the HistoryServer does */
    }
    store_req_t *c;
    cr_assert_eq(store_req_put_call(&c, "h", 1, 2, 3, "[\"u\"]", 1), STORE_OK);
    cr_assert_eq(store_submit(st, c, NULL, NULL), STORE_OK);
    store_req_t *state = put_req("h", 1, 1, false);
    submit_tracked(state);
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.backlog, 13, "the plug, 10 events, a call, a state");
    cr_assert_eq(s.backlog_history, 11);
    cr_assert_eq(store_backlog(st), 13);
    release_writer();
    wait_tracked(1);
    /* The tracked state is the batch's last request, answered last. */
    store_get_stats(st, &s);
    cr_assert_eq(s.backlog, 0);
    cr_assert_eq(s.backlog_history, 0);
    cr_assert_eq(s.lost, 0);
    cr_assert_eq(store_req_err(state), STORE_OK);
    store_req_free(state);
    page("h", 0, 100, 1, 10, 0);
}

Test(store, backlog_limit_refuses, .init = setup, .fini = teardown)
{
    st = open_with((store_config_t){ .max_backlog = 3 });
    hold_writer();  /* the plug is 1 */
    store_req_t *a = put_req("a", 1, 1, false), *b = put_req("b", 1, 1, false);
    store_req_t *c = put_req("c", 1, 1, false);
    submit_tracked(a);
    submit_tracked(b);
    cr_assert_eq(store_submit(st, c, tracked_done, &trk), STORE_EBUSY);
    cr_assert_eq(store_req_err(c), STORE_EBUSY, "refused: the room must refuse its change");
    store_stats_t s;
    store_get_stats(st, &s);
    cr_assert_eq(s.refused, 1);
    release_writer();
    wait_tracked(2);
    cr_assert_eq(store_req_err(a), STORE_OK);
    store_req_free(a);
    store_req_free(b);
    /* A refused request is still the caller's and can be retried. */
    cr_assert_eq(store_exec(st, c), STORE_OK);
    store_req_free(c);
    cr_assert_eq(stored_version("c"), 1);
}

Test(store, close_drains_queue, .init = setup, .fini = teardown)
{
    open_store();
    enum { N = 200 };
    store_req_t *r[N];
    for (int i = 0; i < N; i++) {
        char room[16];
        snprintf(room, sizeof room, "d%d", i % 20);
        submit_tracked(r[i] = put_req(room, (uint64_t)i + 1, 1, false));
    }
    store_close(st);  /* returns once everything queued is answered */
    st = NULL;
    pthread_mutex_lock(&trk.mu);
    cr_assert_eq(trk.done, N);
    pthread_mutex_unlock(&trk.mu);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(store_req_err(r[i]), STORE_OK);
        store_req_free(r[i]);
    }
    open_store();
    for (int i = 0; i < 20; i++) {
        char room[16];
        snprintf(room, sizeof room, "d%d", i);
        cr_assert_eq(stored_version(room), (uint64_t)(N - 20 + i + 1));
    }
}

/* ---- Crash safety: kill -9 -------------------------------------------------------------- */

#define ROOMS 4
#define PAD (100 * 1000)  /* a state spans many pages: a torn write would show */

static char pad_char(uint64_t v, size_t i)
{
    return (char)('a' + (v * 7 + i) % 26);
}

/* {"id": room, "version": v, "pad": "<PAD chars that depend on v>"} */
static char *big_state(const char *room, uint64_t v, size_t *len)
{
    size_t cap = PAD + 128;
    char *buf = malloc(cap);
    int k = snprintf(buf, cap, "{\"id\":\"%s\",\"version\":%llu,\"pad\":\"", room,
                     (unsigned long long)v);
    for (size_t i = 0; i < PAD; i++)
        buf[k + i] = pad_char(v, i);
    k += PAD;
    k += snprintf(buf + k, cap - (size_t)k, "\"}");
    *len = (size_t)k;
    return buf;
}

/* Checks a loaded state is exactly the one written for its version. */
static void check_big_state(const store_room_t *row)
{
    cr_assert_eq(row->err, STORE_OK, "room %s: %s", row->id, store_strerror(row->err));
    cr_assert_str_eq(json_string_value(json_object_get(row->state, "id")), row->id);
    cr_assert_eq(json_integer_value(json_object_get(row->state, "version")),
                 (json_int_t)row->version, "room %s: the state is the row's version", row->id);
    const char *pad = json_string_value(json_object_get(row->state, "pad"));
    cr_assert_not_null(pad);
    cr_assert_eq(strlen(pad), PAD);
    size_t i = 0;
    while (i < PAD && pad[i] == pad_char(row->version, i))
        i++;
    cr_assert_eq(i, PAD, "room %s v%llu: byte %zu of the state is wrong", row->id,
                 (unsigned long long)row->version, i);
}

typedef struct crash_writer {
    store_t *st;
    int fd;
    int room;
    uint64_t base;  /* the version stored before this round */
} crash_writer_t;

/* Child only: writes versions 1, 2, 3... of its room forever; after each
 * acknowledgement it reports "room version" on the pipe (one write of
 * less than PIPE_BUF: atomic), so whatever the parent reads was acked. */
static void *crash_writer_main(void *arg)
{
    crash_writer_t *w = arg;
    char room[8];
    snprintf(room, sizeof room, "k%d", w->room);
    for (uint64_t v = w->base + 1;; v++) {
        size_t len;
        char *text = big_state(room, v, &len);
        store_req_t *r = NULL;
        if (store_req_put_state(&r, room, text, len, 1, v, false) != STORE_OK)
            _exit(3);
        free(text);
        int err = store_exec(w->st, r);
        store_req_free(r);
        if (err != STORE_OK)
            _exit(4);
        char line[32];
        int n = snprintf(line, sizeof line, "%d %llu\n", w->room, (unsigned long long)v);
        if (write(w->fd, line, (size_t)n) != n)
            _exit(5);
    }
    return NULL;
}

/* Reads "room version" lines from fd into last[], until total acks reach
 * `until` (then returns true) or EOF. */
static bool read_acks(FILE *f, uint64_t last[ROOMS], uint64_t *total, uint64_t until)
{
    int room;
    unsigned long long v;
    while (*total < until && fscanf(f, "%d %llu\n", &room, &v) == 2) {
        cr_assert(room >= 0 && room < ROOMS);
        cr_assert_eq(v, last[room] + 1, "acks of a room come in order");
        last[room] = v;
        (*total)++;
    }
    return *total >= until;
}

Test(store, crash_kill9_keeps_acknowledged, .init = setup, .fini = teardown)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    /* Three rounds, each killing the writer at a random point and then
     * continuing from what the previous round left (stored[]). */
    uint64_t stored[ROOMS] = { 0 };
    for (int round = 0; round < 3; round++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t child = fork();
        cr_assert_geq(child, 0);
        if (child == 0) {
            close(fds[0]);
            store_t *cs;
            if (store_open(&(store_config_t){ .data_dir = dir }, &cs) != STORE_OK)
                _exit(2);
            pthread_t t[ROOMS];
            crash_writer_t w[ROOMS];
            for (int i = 0; i < ROOMS; i++) {
                w[i] = (crash_writer_t){ .st = cs, .fd = fds[1], .room = i, .base = stored[i] };
                pthread_create(&t[i], NULL, crash_writer_main, &w[i]);
            }
            pthread_join(t[0], NULL);  /* never returns: killed */
            _exit(0);
        }
        close(fds[1]);
        FILE *f = fdopen(fds[0], "r");
        cr_assert_not_null(f);
        uint64_t last[ROOMS], total = 0;
        memcpy(last, stored, sizeof last);
        uint64_t until = 20 + (uint64_t)(rand() % 200);
        cr_assert(read_acks(f, last, &total, until), "the child stopped after %llu acks",
                  (unsigned long long)total);
        /* A random extra delay so the kill lands anywhere: in a write, an
         * fsync, a checkpoint. */
        usleep((useconds_t)(rand() % 20000));
        cr_assert_eq(kill(child, SIGKILL), 0);
        int status;
        cr_assert_eq(waitpid(child, &status, 0), child);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the child was killed, not exited (status %#x)", status);
        /* Everything it reported before dying was acknowledged. */
        read_acks(f, last, &total, UINT64_MAX);
        fclose(f);

        open_store();
        store_req_t *r;
        cr_assert_eq(store_req_list_live(&r), STORE_OK);
        cr_assert_eq(store_exec(st, r), STORE_OK);
        size_t n;
        const store_room_t *rows = store_req_rooms(r, &n);
        uint64_t got[ROOMS] = { 0 };
        for (size_t i = 0; i < n; i++) {
            int k = rows[i].id[1] - '0';
            cr_assert(k >= 0 && k < ROOMS);
            check_big_state(&rows[i]);
            got[k] = rows[i].version;
        }
        for (int k = 0; k < ROOMS; k++) {
            cr_log_info("round %d room k%d: last acknowledged v%llu, stored v%llu\n", round, k,
                        (unsigned long long)last[k], (unsigned long long)got[k]);
            /* Acknowledged means stored; at most the one write in flight
             * may have committed without its ack being seen. */
            cr_assert_geq(got[k], last[k], "room k%d lost acknowledged v%llu (stored v%llu)", k,
                          (unsigned long long)last[k], (unsigned long long)got[k]);
            cr_assert_leq(got[k], last[k] + 1, "room k%d", k);
            stored[k] = got[k];
        }
        store_req_free(r);
        store_close(st);
        st = NULL;
    }
}

typedef struct stall {
    int fd;
    atomic_bool queued;  /* every write of the batch is queued */
    atomic_bool held;    /* the writer holds the plug's batch */
} stall_t;

/* Child only: holds the plug's batch until everything else is queued (so
 * that becomes one transaction), then at the commit point tells the
 * parent and waits to be killed. */
static int stall_before_commit(void *ctx, store_fault_point_t p, const store_req_t *r)
{
    stall_t *s = ctx;
    if (p == STORE_FP_BATCH && !atomic_load(&s->held)) {
        atomic_store(&s->held, true);
        while (!atomic_load(&s->queued))
            usleep(1000);
    } else if (p == STORE_FP_COMMIT) {
        if (write(s->fd, "C\n", 2) != 2)
            _exit(6);
        for (;;)
            pause();
    }
    return 0;
}

Test(store, crash_before_commit_keeps_previous, .init = setup, .fini = teardown)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        close(fds[0]);
        store_t *cs;
        /* SQLite's own default page cache (2 MiB): the transaction below
         * must not fit in it. */
        if (store_open(&(store_config_t){ .data_dir = dir, .cache_kib = 2048 }, &cs) != STORE_OK)
            _exit(2);
        size_t len;
        char *text = big_state("k0", 1, &len);
        store_req_t *r = NULL;
        store_req_put_state(&r, "k0", text, len, 1, 1, false);
        free(text);
        if (store_exec(cs, r) != STORE_OK)
            _exit(3);
        store_req_free(r);
        if (write(fds[1], "1\n", 2) != 2)
            _exit(5);
        /* Version 2 of k0 and many other rooms in one transaction, enough
         * to spill pages to the WAL before the commit that never comes. */
        static stall_t stall;
        stall.fd = fds[1];
        store_set_fault_hook(cs, stall_before_commit, &stall);
        store_req_list_live(&r);
        store_submit(cs, r, NULL, NULL);  /* the plug, alone in its batch */
        while (!atomic_load(&stall.held))
            usleep(1000);
        for (int i = 0; i < 60; i++) {
            char room[16];
            snprintf(room, sizeof room, i ? "s%d" : "k0", i);
            text = big_state(room, 2, &len);
            store_req_put_state(&r, room, text, len, 1, 2, false);
            free(text);
            store_submit(cs, r, NULL, NULL);
        }
        atomic_store(&stall.queued, true);
        for (;;)
            pause();
    }
    close(fds[1]);
    char buf[8] = { 0 };
    FILE *f = fdopen(fds[0], "r");
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    cr_assert_str_eq(buf, "1\n", "v1 acknowledged");
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    cr_assert_str_eq(buf, "C\n", "the writer reached the commit of v2");
    cr_assert_eq(kill(child, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFSIGNALED(status));
    fclose(f);

    char wal[128];
    snprintf(wal, sizeof wal, "%s/roost.db-wal", dir);
    struct stat sb;
    cr_assert_eq(stat(wal, &sb), 0);
    cr_log_info("WAL after the kill: %lld bytes (uncommitted frames included)\n",
                (long long)sb.st_size);
    /* 6 MB of dirty pages do not fit a 2 MB page cache: SQLite spilled
     * uncommitted frames into the WAL, which recovery must ignore. */
    cr_assert_gt(sb.st_size, 2 << 20, "the interrupted transaction reached the WAL file");

    open_store();
    int err;
    const store_room_t *row;
    store_req_t *r = load("k0", &err, &row);
    cr_assert_eq(err, STORE_OK);
    cr_assert_eq(row->version, 1, "the interrupted write left the previous state");
    check_big_state(row);
    store_req_free(r);
    cr_assert_eq(store_req_list_live(&r), STORE_OK);
    cr_assert_eq(store_exec(st, r), STORE_OK);
    size_t n;
    store_req_rooms(r, &n);
    cr_assert_eq(n, 1, "none of the uncommitted rooms exists");
    store_req_free(r);
}
