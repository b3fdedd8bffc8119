/*
 * rooms_bench.c — benchmarks of roost's rooms (design §1 "Let it fail",
 * "Durable backups"; §4; §5) against a running server, through its
 * public interfaces only: the REST API and Phoenix V2 WebSockets
 * (bench/phx_client.h), everything on one epoll loop, no threads.
 *
 * Usage:
 *   rooms_bench --scenario churn|crash|durable|restart|viewers --port P --secret S --api-key K [options]
 *
 * Scenarios
 *   churn    --rooms N (2000) rooms run through --concurrency C (32) at
 *            once: each is created (POST /api/rooms), joined by two
 *            members, gets --statuses (10) acknowledged status changes
 *            (the members in turn) and is ended (DELETE; both members see
 *            phx_close). Reports rooms/s and the time per room.
 *   crash    --rooms N (10000) live rooms created through REST; the first
 *            --crash K (1000) get a member each (100 channels per
 *            socket) whose acknowledged status {"v": i} is the state to
 *            find again. Then K POST /api/rooms/:id/crash requests go out
 *            at once (--http-conns connections, pipelined); each member
 *            rejoins as soon as it sees phx_error. Reports the time until
 *            every crash was accepted, every phx_error seen, and every
 *            room rejoined with its state (from the first crash request).
 *   durable  --rooms N (1000) rooms, one member each, on --sockets S
 *            (100) connections. Closed loop: each member keeps one status
 *            push in flight, for --warmup-s (1) then --duration-s (5):
 *            the most acknowledged status changes/s. Then open loop:
 *            --rate R (20000; 0 skips it) pushes/s in all, spread evenly
 *            over the rooms and sent on schedule: the acknowledgement
 *            latency (p50/p99/max) at that load (RESULT workload
 *            rooms_durable_rate).
 *   viewers  --viewers V (10000) viewers (one WebSocket each) join one
 *            room with {"role":"viewer"}, --window W (256) connecting or
 *            joining at once; one participant publishes --messages M
 *            (1000) `data` pushes of --size S (100) bytes at --rate R
 *            (200; messages/s for this scenario) carrying their send time
 *            and sequence number. Reports deliveries/s, latency
 *            p50/p99/max (receive - send, both in this process), exact
 *            losses (per viewer, total of V x M) and duplicates, and the
 *            server's VmRSS per viewer (/proc/<--server-pid>/status before
 *            and after the joins). M = 0 only joins (RESULT workload
 *            rooms_viewers_join). Sockets heartbeat every 25 s.
 *   restart  --rooms N (10000) rooms created through REST, --with-status
 *            M (1000) of them with an acknowledged status; then kill -9
 *            of --server-pid, and the bench starts --roost serve again on
 *            the same --port and --data (log in <data>/restart.log).
 *            Reports the time from the exec until /healthz answers, until
 *            a sample of 100 rooms answers GET /api/rooms/:id (statuses
 *            checked), and until GET /api/rooms lists all N. It stops the
 *            server it started (SIGTERM, then SIGKILL after 30 s).
 *
 * Options: --host H (127.0.0.1), --http-conns H (32, REST connections),
 * --timeout-s T (180: the whole run gives up after T s), --tag T (room
 * id prefix, default from the pid).
 *
 * Output: a table, then one line
 *   RESULT {"workloads": {"rooms_<scenario>": {"<metric>": {"median": v, "runs": [v]}}}}
 * (one run). Every loop is bounded by counts and the deadline. Exit
 * status 0 when the scenario completed without a failure (an error
 * reply, a lost state, a timeout), 1 otherwise, 2 on bad usage. Run with
 * no argument it prints its usage and exits 0. Targets (docs, never
 * checked here): durable >= 20,000 acks/s with p99 <= 10 ms; 1,000
 * crashes restored within 100 ms; restart with 10,000 rooms serving
 * within 2 s; viewers >= 1,000,000 deliveries/s, no loss, p99 <= 20 ms,
 * and <= 1.5 KB of server memory per viewer with 15,000.
 */
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "phx_client.h"

/* ---- Options ------------------------------------------------------------ */

typedef enum { SC_CHURN, SC_CRASH, SC_DURABLE, SC_RESTART, SC_VIEWERS, SC_COUNT } scenario_t;
static const char *const scenario_names[] = {"churn", "crash", "durable", "restart", "viewers"};

static struct {
    scenario_t scenario;
    pc_server_t srv;
    long rooms;
    long crash;
    int concurrency;
    int sockets;
    int statuses;
    int http_conns;
    double duration_s;
    double warmup_s;
    double rate;
    bool rate_set;
    long viewers;
    long messages;
    int size;
    int window;
    long with_status;
    const char *roost;
    const char *data;
    int timeout_s;
    char tag[32];
} opt = {
    .srv = {.host = "127.0.0.1"},
    .rooms = -1,
    .crash = 1000,
    .concurrency = 32,
    .sockets = 100,
    .statuses = 10,
    .http_conns = 32,
    .duration_s = 5,
    .warmup_s = 1,
    .rate = 20000,
    .viewers = 10000,
    .messages = 1000,
    .size = 100,
    .window = 256,
    .with_status = 1000,
    .timeout_s = 180,
};

static pc_loop_t L;
static long failures;

static bool expired(void)
{
    return pc_loop_expired(&L);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    failures++;
    if (failures > 10)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rooms_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (failures == 10)
        fprintf(stderr, "rooms_bench: (further failures not shown)\n");
}

static void room_id(long i, char *out, size_t cap)
{
    snprintf(out, cap, "%s-%s-%ld", opt.tag, scenario_names[opt.scenario], i);
}

/* ---- Report --------------------------------------------------------------- */

/* The table and RESULT line of workload rooms_<scenario> (pc_report). */
static void report(const char *title, const pc_metric_t *m, int n)
{
    char w[64];
    snprintf(w, sizeof w, "rooms_%s", scenario_names[opt.scenario]);
    pc_report(w, title, m, n);
}

/* ---- REST in bulk ----------------------------------------------------------- */

/* Builds request i: method, path, body ("" for none). */
typedef void (*rest_make_fn)(long i, const char **method, char *path, size_t pcap, char *body,
                             size_t bcap);

static struct {
    long n, next, done, failed;
    int lo, hi; /* accepted statuses */
    rest_make_fn make;
    uint64_t *sent;
    pc_samples_t lat;
    uint64_t last_done_ns;
    int depth;
    pc_conn_t **conns;
    int nconns;
} rb;

static void rest_send_next(pc_conn_t *c);

static void rest_answer(pc_conn_t *c, void *ctx, int status, const char *body, size_t len)
{
    long i = (long)(intptr_t)ctx;
    uint64_t now = pc_now_ns();
    rb.done++;
    rb.last_done_ns = now;
    pc_samples_add(&rb.lat, now - rb.sent[i]);
    if (status < rb.lo || status > rb.hi) {
        rb.failed++;
        fail("REST request %ld answered %d: %.*s", i, status, (int)(len > 200 ? 200 : len),
             body ? body : "");
    }
    if (status > 0 && !c->dead)
        rest_send_next(c);
}

static void rest_send_next(pc_conn_t *c)
{
    while (rb.next < rb.n && pc_http_pending(c) < (size_t)rb.depth && !c->dead) {
        long i = rb.next++;
        const char *method = "GET";
        char path[512], body[1024];
        body[0] = '\0';
        rb.make(i, &method, path, sizeof path, body, sizeof body);
        rb.sent[i] = pc_now_ns();
        pc_http_request(c, method, path, opt.srv.api_key, body[0] ? body : NULL, rest_answer,
                        (void *)(intptr_t)i);
    }
}

/* Runs requests 0..n-1 over nconns connections, depth in flight on each.
 * Returns the number that failed (a status outside [lo, hi], a dropped
 * connection, or not done by the deadline). *elapsed_ns is from the first
 * send to the last answer. */
static long rest_many(long n, rest_make_fn make, int lo, int hi, int nconns, int depth,
                      uint64_t *elapsed_ns, pc_samples_t *lat_out)
{
    memset(&rb, 0, sizeof rb);
    rb.n = n;
    rb.lo = lo;
    rb.hi = hi;
    rb.make = make;
    rb.depth = depth;
    rb.sent = pc_xcalloc((size_t)n, sizeof *rb.sent);
    rb.nconns = nconns;
    rb.conns = pc_xcalloc((size_t)nconns, sizeof *rb.conns);
    uint64_t t0 = pc_now_ns();
    rb.last_done_ns = t0;
    for (int k = 0; k < nconns; k++) {
        rb.conns[k] = pc_http_connect(&L);
        pc_conn_watch(rb.conns[k], &rb.conns[k]);
        rest_send_next(rb.conns[k]);
    }
    while (rb.done < rb.n && !expired()) {
        pc_loop_run(&L, 10);
        /* A connection that dropped: its requests were answered -1; go on
         * with a new one. */
        for (int k = 0; k < nconns; k++) {
            if (pc_conn_gone(rb.conns[k]) && rb.next < rb.n) {
                rb.conns[k] = pc_http_connect(&L);
                pc_conn_watch(rb.conns[k], &rb.conns[k]);
                rest_send_next(rb.conns[k]);
            }
        }
    }
    if (rb.done < rb.n)
        fail("REST: %ld of %ld requests unanswered at the deadline", rb.n - rb.done, rb.n);
    for (int k = 0; k < nconns; k++)
        if (!pc_conn_gone(rb.conns[k]))
            pc_conn_close(rb.conns[k], 0);
    pc_loop_run(&L, 0);
    if (elapsed_ns)
        *elapsed_ns = rb.last_done_ns - t0;
    if (lat_out)
        *lat_out = rb.lat;
    else
        pc_samples_free(&rb.lat);
    free(rb.sent);
    free(rb.conns);
    return rb.failed + (rb.n - rb.done);
}

static void make_create(long i, const char **method, char *path, size_t pcap, char *body,
                        size_t bcap)
{
    char id[128];
    room_id(i, id, sizeof id);
    *method = "POST";
    snprintf(path, pcap, "/api/rooms");
    snprintf(body, bcap, "{\"id\":\"%s\"}", id);
}

static void make_crash(long i, const char **method, char *path, size_t pcap, char *body,
                       size_t bcap)
{
    char id[128];
    room_id(i, id, sizeof id);
    *method = "POST";
    snprintf(path, pcap, "/api/rooms/%s/crash", id);
    snprintf(body, bcap, "{\"reason\":\"bench\"}");
}

/* Creates rooms 0..n-1; returns false (after reporting) on a failure. */
static bool create_rooms(long n, double *rate)
{
    uint64_t el = 0;
    long bad = rest_many(n, make_create, 201, 201, opt.http_conns, 4, &el, NULL);
    if (rate)
        *rate = el ? (double)n / ((double)el / 1e9) : 0;
    printf("  created %ld rooms in %.3f s (%ld failed)\n", n, (double)el / 1e9, bad);
    fflush(stdout);
    return bad == 0;
}

/* A blocking request on a fresh connection; returns the status (-1 when
 * the connection failed) and copies the body (NUL-terminated, truncated
 * to cap) into out if given. */
static struct {
    bool done;
    int status;
    char *out;
    size_t cap;
} sync_req;

static void sync_answer(pc_conn_t *c, void *ctx, int status, const char *body, size_t len)
{
    (void)c;
    (void)ctx;
    sync_req.done = true;
    sync_req.status = status;
    if (sync_req.out && sync_req.cap) {
        size_t n = len < sync_req.cap - 1 ? len : sync_req.cap - 1;
        if (body && n)
            memcpy(sync_req.out, body, n);
        sync_req.out[n] = '\0';
    }
}

static int http_sync(const char *method, const char *path, const char *body, char *out,
                     size_t cap, int timeout_ms)
{
    pc_conn_t *c = pc_http_connect(&L);
    pc_conn_watch(c, &c); /* reaped before this returns */
    sync_req.done = false;
    sync_req.status = -1;
    sync_req.out = out;
    sync_req.cap = cap;
    pc_http_request(c, method, path, opt.srv.api_key, body, sync_answer, NULL);
    uint64_t end = pc_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!sync_req.done && pc_now_ns() < end && !pc_interrupted)
        pc_loop_run(&L, 5);
    if (!pc_conn_gone(c))
        pc_conn_close(c, 0);
    pc_loop_run(&L, 0);
    return sync_req.done ? sync_req.status : -1;
}

/* ---- Members: sockets and channels ----------------------------------------- */

typedef enum { CH_IDLE, CH_JOINING, CH_JOINED, CH_ERRORED, CH_CLOSED } chan_state_t;

typedef struct chan {
    long id;         /* index in chans[] */
    long room;       /* room index */
    int sock;        /* index in socks[] */
    char topic[160];
    chan_state_t state;
    unsigned serial; /* last ref sent */
    char join_ref[32];
    char pending[32];  /* ref of the push awaiting a reply ("" none) */
    uint64_t sent_ns;  /* when it was sent */
    long n;            /* scenario counter */
    long value;        /* scenario value */
    int attempts;
    bool flag;
} chan_t;

typedef struct sock {
    pc_conn_t *c;    /* watched: NULL once the loop freed it */
    char user[64];
    bool open;
    bool closed;     /* it closed (refused, dropped or ended) */
    int close_code;  /* then: pc_conn_t's close_code */
    long *chans; /* channel ids on it */
    int nchans, cap;
} sock_t;

static chan_t *chans;
static long nchans;
static sock_t *socks;
static int nsocks;
static long socks_open;

/* The scenario's handler of a message for a channel (ch may be NULL). */
static void (*on_chan_msg)(chan_t *ch, pc_msg_t *m);
static void (*on_sock_close)(sock_t *s);

static chan_t *chan_of_ref(const char *ref)
{
    if (!ref)
        return NULL;
    char *end;
    long id = strtol(ref, &end, 10);
    if (end == ref || *end != '.' || id < 0 || id >= nchans)
        return NULL;
    return &chans[id];
}

static void sock_text(pc_conn_t *c, const char *text, size_t len)
{
    sock_t *s = &socks[c->idx];
    /* No scenario reads announcements: skip them unparsed (the event is
     * the 4th element, before the payload, so within the first bytes). */
    size_t head = len < 320 ? len : 320;
    if (memmem(text, head, ",\"room_status\",", 15) || memmem(text, head, ",\"presence_diff\",", 17) ||
        memmem(text, head, ",\"presence_state\",", 18))
        return;
    pc_msg_t m;
    if (!pc_msg_parse(text, len, &m)) {
        fail("%s: a message that is not a Phoenix V2 array: %.*s", s->user, (int)(len > 200 ? 200 : len), text);
        return;
    }
    chan_t *ch = NULL;
    if (strcmp(m.event, "phx_reply") == 0)
        ch = chan_of_ref(m.ref);
    if (!ch)
        ch = chan_of_ref(m.join_ref);
    if (!ch) {
        for (int i = 0; i < s->nchans; i++) {
            chan_t *x = &chans[s->chans[i]];
            if (strcmp(x->topic, m.topic) == 0) {
                ch = x;
                break;
            }
        }
    }
    if (ch && ch->sock != (int)c->idx)
        ch = NULL;
    on_chan_msg(ch, &m);
    pc_msg_free(&m);
}

static void sock_event(pc_conn_t *c, pc_event_t ev)
{
    sock_t *s = &socks[c->idx];
    if (ev == PC_EV_OPEN) {
        s->open = true;
        socks_open++;
    } else {
        if (s->open)
            socks_open--;
        s->open = false;
        s->closed = true;
        s->close_code = c->close_code;
        if (on_sock_close)
            on_sock_close(s);
    }
}

static void socks_init(int n, const char *prefix)
{
    nsocks = n;
    socks = pc_xcalloc((size_t)n, sizeof *socks);
    for (int i = 0; i < n; i++)
        snprintf(socks[i].user, sizeof socks[i].user, "%s-%s-%d", opt.tag, prefix, i);
}

static void chans_init(long n)
{
    nchans = n;
    chans = pc_xcalloc((size_t)n, sizeof *chans);
    for (long i = 0; i < n; i++)
        chans[i].id = i;
}

static void chan_attach(long id, int sock, long room)
{
    chan_t *ch = &chans[id];
    ch->sock = sock;
    ch->room = room;
    char rid[128];
    room_id(room, rid, sizeof rid);
    snprintf(ch->topic, sizeof ch->topic, "room:%s", rid);
    sock_t *s = &socks[sock];
    if (s->nchans == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->chans = pc_xrealloc(s->chans, (size_t)s->cap * sizeof *s->chans);
    }
    s->chans[s->nchans++] = id;
}

/* Opens every socket and waits until all are up. */
static bool socks_connect(void)
{
    socks_open = 0;
    for (int i = 0; i < nsocks; i++) {
        char *tok = pc_mint(opt.srv.secret, socks[i].user, "*", 3600);
        socks[i].c = pc_ws_connect(&L, tok, sock_text, sock_event, NULL, i);
        pc_conn_watch(socks[i].c, &socks[i].c);
        free(tok);
    }
    while (socks_open < nsocks) {
        if (expired()) {
            fail("only %ld of %d WebSockets opened", socks_open, nsocks);
            return false;
        }
        pc_loop_run(&L, 10);
        for (int i = 0; i < nsocks; i++) {
            if (socks[i].closed) {
                fail("WebSocket %d refused or dropped (close %d)", i, socks[i].close_code);
                return false;
            }
        }
    }
    return true;
}

static void socks_close(void)
{
    for (int i = 0; i < nsocks; i++)
        if (!pc_conn_gone(socks[i].c))
            pc_ws_close(socks[i].c, 1000);
    pc_loop_run(&L, 0);
    for (int i = 0; i < nsocks; i++)
        free(socks[i].chans);
    free(socks);
    socks = NULL;
    nsocks = 0;
}

static void next_ref(chan_t *ch, char *out, size_t cap)
{
    ch->serial++;
    snprintf(out, cap, "%ld.%u", ch->id, ch->serial);
}

static void chan_join(chan_t *ch, const char *payload)
{
    next_ref(ch, ch->join_ref, sizeof ch->join_ref);
    snprintf(ch->pending, sizeof ch->pending, "%s", ch->join_ref);
    ch->state = CH_JOINING;
    ch->sent_ns = pc_now_ns();
    pc_phx_send(socks[ch->sock].c, ch->join_ref, ch->join_ref, ch->topic, "phx_join",
                payload ? payload : "{}");
}

static void chan_push(chan_t *ch, const char *event, const char *payload)
{
    next_ref(ch, ch->pending, sizeof ch->pending);
    ch->sent_ns = pc_now_ns();
    pc_phx_send(socks[ch->sock].c, ch->join_ref, ch->pending, ch->topic, event, payload);
}

/* True if m answers ch's pending push (and clears it). */
static bool is_reply(chan_t *ch, const pc_msg_t *m)
{
    if (!ch || strcmp(m->event, "phx_reply") != 0 || !m->ref || strcmp(m->ref, ch->pending) != 0)
        return false;
    ch->pending[0] = '\0';
    return true;
}

static const char *reply_reason(const pc_msg_t *m)
{
    const char *r = json_string_value(json_object_get(json_object_get(m->payload, "response"), "reason"));
    return r ? r : "?";
}

/* Joins every channel (in order) and waits for every reply ok. */
static long joins_ok;
static void join_all_msg(chan_t *ch, pc_msg_t *m)
{
    if (is_reply(ch, m)) {
        if (pc_reply_ok(m)) {
            ch->state = CH_JOINED;
            joins_ok++;
        } else {
            ch->state = CH_ERRORED;
            fail("join of %s refused: %s", ch->topic, reply_reason(m));
        }
    }
}

static bool join_all(void)
{
    on_chan_msg = join_all_msg;
    joins_ok = 0;
    long before = failures;
    for (long i = 0; i < nchans; i++)
        chan_join(&chans[i], NULL);
    while (joins_ok < nchans && failures == before) {
        if (expired()) {
            fail("%ld of %ld joins answered ok", joins_ok, nchans);
            return false;
        }
        pc_loop_run(&L, 10);
    }
    return failures == before;
}

/* Every channel pushes status {"v": <value>} once; waits for every ack. */
static long acks_ok;
static void status_once_msg(chan_t *ch, pc_msg_t *m)
{
    if (is_reply(ch, m)) {
        if (pc_reply_ok(m))
            acks_ok++;
        else
            fail("status on %s refused: %s", ch->topic, reply_reason(m));
    }
}

static bool status_all(void)
{
    on_chan_msg = status_once_msg;
    acks_ok = 0;
    long before = failures;
    char payload[64];
    for (long i = 0; i < nchans; i++) {
        snprintf(payload, sizeof payload, "{\"v\":%ld}", chans[i].value);
        chan_push(&chans[i], "status", payload);
    }
    while (acks_ok < nchans && failures == before) {
        if (expired()) {
            fail("%ld of %ld status pushes acknowledged", acks_ok, nchans);
            return false;
        }
        pc_loop_run(&L, 10);
    }
    return failures == before;
}

/* The participant entry of `user` in a room state, or NULL. */
static json_t *participant(json_t *state, const char *user)
{
    return json_object_get(json_object_get(state, "participants"), user);
}

static long status_v(json_t *state, const char *user)
{
    json_t *v = json_object_get(json_object_get(participant(state, user), "status"), "v");
    return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

/* ---- Scenario: churn --------------------------------------------------------- */

/* Pipeline p: sockets 2p, 2p+1 and channels 2p, 2p+1 (member 0 and 1),
 * reused room after room. */
typedef enum { P_CREATE, P_JOIN, P_STATUS, P_END, P_IDLE } pstep_t;

typedef struct pipe {
    pstep_t step;
    long room;
    int joined, closed, k;
    bool deleted;
    uint64_t t0;
    pc_conn_t *http;
} pipe_t;

static pipe_t *pipes;
static long churn_next, churn_done;
static pc_samples_t churn_room_lat, churn_ack_lat;

static void churn_start(int p);

static void churn_http_answer(pc_conn_t *c, void *ctx, int status, const char *body, size_t len)
{
    (void)c;
    int p = (int)(intptr_t)ctx;
    pipe_t *pp = &pipes[p];
    if (pp->step == P_CREATE) {
        if (status != 201) {
            fail("churn: create of room %ld answered %d: %.*s", pp->room, status,
                 (int)(len > 200 ? 200 : len), body ? body : "");
            pp->step = P_IDLE;
            return;
        }
        pp->step = P_JOIN;
        pp->joined = 0;
        for (int m = 0; m < 2; m++) {
            chan_t *ch = &chans[2 * p + m];
            char rid[128];
            room_id(pp->room, rid, sizeof rid);
            snprintf(ch->topic, sizeof ch->topic, "room:%s", rid);
            chan_join(ch, NULL);
        }
    }
}

static void churn_finish_if_done(int p);

static void churn_delete_answer(pc_conn_t *c, void *ctx, int status, const char *body, size_t len)
{
    (void)c;
    int p = (int)(intptr_t)ctx;
    pipe_t *pp = &pipes[p];
    if (status < 200 || status > 299) {
        fail("churn: DELETE of room %ld answered %d: %.*s", pp->room, status,
             (int)(len > 200 ? 200 : len), body ? body : "");
        pp->step = P_IDLE;
        return;
    }
    pp->deleted = true;
    churn_finish_if_done(p);
}

static void churn_status(int p)
{
    pipe_t *pp = &pipes[p];
    chan_t *ch = &chans[2 * p + (pp->k & 1)];
    char payload[64];
    snprintf(payload, sizeof payload, "{\"k\":%d}", pp->k);
    chan_push(ch, "status", payload);
}

static void churn_end(int p)
{
    pipe_t *pp = &pipes[p];
    char rid[128], path[256];
    room_id(pp->room, rid, sizeof rid);
    snprintf(path, sizeof path, "/api/rooms/%s", rid);
    pp->step = P_END;
    pp->closed = 0;
    pp->deleted = false;
    pc_http_request(pp->http, "DELETE", path, opt.srv.api_key, NULL, churn_delete_answer, (void *)(intptr_t)p);
}

static void churn_msg(chan_t *ch, pc_msg_t *m)
{
    if (!ch)
        return;
    int p = (int)(ch->id / 2);
    pipe_t *pp = &pipes[p];
    if (strcmp(m->topic, ch->topic) != 0)
        return; /* an earlier room's leftovers */
    if (is_reply(ch, m)) {
        if (!pc_reply_ok(m)) {
            fail("churn: %s on %s refused: %s", pp->step == P_JOIN ? "join" : "status", ch->topic,
                 reply_reason(m));
            pp->step = P_IDLE;
            return;
        }
        if (pp->step == P_JOIN) {
            ch->state = CH_JOINED;
            if (++pp->joined == 2) {
                pp->step = P_STATUS;
                pp->k = 0;
                churn_status(p);
            }
        } else if (pp->step == P_STATUS) {
            pc_samples_add(&churn_ack_lat, pc_now_ns() - ch->sent_ns);
            if (++pp->k < opt.statuses)
                churn_status(p);
            else
                churn_end(p);
        }
        return;
    }
    if (strcmp(m->event, "phx_close") == 0 && pp->step == P_END && ch->state == CH_JOINED) {
        ch->state = CH_CLOSED;
        pp->closed++;
        churn_finish_if_done(p);
    } else if (strcmp(m->event, "phx_error") == 0) {
        fail("churn: phx_error on %s", ch->topic);
        pp->step = P_IDLE;
    }
}

/* A room is done once both members saw phx_close and DELETE answered. */
static void churn_finish_if_done(int p)
{
    pipe_t *pp = &pipes[p];
    if (pp->step != P_END || pp->closed < 2 || !pp->deleted)
        return;
    pc_samples_add(&churn_room_lat, pc_now_ns() - pp->t0);
    churn_done++;
    churn_start(p);
}

static void churn_start(int p)
{
    pipe_t *pp = &pipes[p];
    if (churn_next >= opt.rooms || expired()) {
        pp->step = P_IDLE;
        return;
    }
    pp->room = churn_next++;
    pp->step = P_CREATE;
    pp->t0 = pc_now_ns();
    char rid[128], body[256];
    room_id(pp->room, rid, sizeof rid);
    snprintf(body, sizeof body, "{\"id\":\"%s\"}", rid);
    pc_http_request(pp->http, "POST", "/api/rooms", opt.srv.api_key, body, churn_http_answer,
                    (void *)(intptr_t)p);
}

static int run_churn(void)
{
    int C = opt.concurrency;
    if (opt.rooms < 0)
        opt.rooms = 2000;
    printf("rooms churn: %ld rooms, %d at once, %d status changes each\n", opt.rooms, C, opt.statuses);
    socks_init(2 * C, "churn");
    chans_init(2 * C);
    for (int i = 0; i < 2 * C; i++)
        chan_attach(i, i, 0);
    if (!socks_connect())
        return 1;
    pipes = pc_xcalloc((size_t)C, sizeof *pipes);
    on_chan_msg = churn_msg;
    uint64_t t0 = pc_now_ns();
    for (int p = 0; p < C; p++) {
        pipes[p].http = pc_http_connect(&L);
        pc_conn_watch(pipes[p].http, &pipes[p].http);
        churn_start(p);
    }
    for (;;) {
        bool busy = false;
        for (int p = 0; p < C; p++)
            busy |= pipes[p].step != P_IDLE;
        if (!busy || expired())
            break;
        pc_loop_run(&L, 10);
        for (int p = 0; p < C; p++) {
            if (pc_conn_gone(pipes[p].http) && pipes[p].step != P_IDLE) {
                fail("churn: REST connection %d dropped", p);
                pipes[p].step = P_IDLE;
            }
        }
    }
    uint64_t el = pc_now_ns() - t0;
    if (churn_done < opt.rooms)
        fail("churn: %ld of %ld rooms completed", churn_done, opt.rooms);
    pc_metric_t m[] = {
        {"rooms_per_s", (double)churn_done / ((double)el / 1e9), "%.3f"},
        {"rooms_done", (double)churn_done, "%.3f"},
        {"ms_room_p50", pc_ms(pc_samples_pct(&churn_room_lat, 50)), "%.3f"},
        {"ms_room_p99", pc_ms(pc_samples_pct(&churn_room_lat, 99)), "%.3f"},
        {"ms_status_ack_p50", pc_ms(pc_samples_pct(&churn_ack_lat, 50)), "%.3f"},
        {"ms_status_ack_p99", pc_ms(pc_samples_pct(&churn_ack_lat, 99)), "%.3f"},
        {"failures", (double)failures, "%.3f"},
    };
    report("rooms churn", m, (int)(sizeof m / sizeof m[0]));
    for (int p = 0; p < C; p++)
        if (!pc_conn_gone(pipes[p].http))
            pc_conn_close(pipes[p].http, 0);
    socks_close();
    free(pipes);
    return failures ? 1 : 0;
}

/* ---- Scenario: crash ---------------------------------------------------------- */

static long crash_errors_seen, crash_back;
static uint64_t crash_t0, crash_last_error, crash_last_back;
static pc_samples_t crash_back_lat;
static bool crash_started;

static void crash_msg(chan_t *ch, pc_msg_t *m)
{
    if (!ch)
        return;
    if (strcmp(m->event, "phx_error") == 0) {
        if (!m->join_ref || strcmp(m->join_ref, ch->join_ref) != 0)
            return; /* an earlier join's */
        if (!ch->flag) {
            ch->flag = true; /* first phx_error of this room */
            crash_errors_seen++;
            crash_last_error = pc_now_ns();
        }
        ch->attempts = 0;
        chan_join(ch, NULL); /* rejoin at once */
        return;
    }
    if (!is_reply(ch, m))
        return;
    if (ch->state != CH_JOINING)
        return;
    if (!pc_reply_ok(m)) {
        /* The room may still be on its way back: try again 1 ms later
         * (run_crash's loop), at most 2000 times. */
        ch->state = CH_ERRORED;
        ch->sent_ns = pc_now_ns();
        if (++ch->attempts > 2000) {
            fail("crash: rejoin of %s refused 2000 times: %s", ch->topic, reply_reason(m));
            ch->state = CH_CLOSED;
        }
        return;
    }
    ch->state = CH_JOINED;
    long v = status_v(json_object_get(m->payload, "response"), socks[ch->sock].user);
    if (v != ch->value) {
        fail("crash: %s came back with status v=%ld, expected %ld", ch->topic, v, ch->value);
        return;
    }
    if (crash_started && ch->flag && !ch->n) {
        ch->n = 1;
        crash_back++;
        crash_last_back = pc_now_ns();
        pc_samples_add(&crash_back_lat, crash_last_back - crash_t0);
    }
}

static int run_crash(void)
{
    if (opt.rooms < 0)
        opt.rooms = 10000;
    long K = opt.crash < opt.rooms ? opt.crash : opt.rooms;
    printf("rooms crash: %ld live rooms, %ld crashed at once\n", opt.rooms, K);
    if (!create_rooms(opt.rooms, NULL))
        return 1;
    int S = (int)((K + 99) / 100);
    socks_init(S, "crash");
    chans_init(K);
    for (long i = 0; i < K; i++) {
        chan_attach(i, (int)(i / 100), i);
        chans[i].value = i;
    }
    if (!socks_connect() || !join_all() || !status_all())
        return 1;
    printf("  %ld rooms joined, each with an acknowledged status\n", K);
    fflush(stdout);

    on_chan_msg = crash_msg;
    crash_started = true;
    crash_t0 = pc_now_ns();
    uint64_t accept_el = 0;
    long bad = rest_many(K, make_crash, 202, 202, opt.http_conns, (int)((K + opt.http_conns - 1) / opt.http_conns),
                         &accept_el, NULL);
    if (bad)
        fail("crash: %ld crash requests not accepted with 202", bad);
    while ((crash_back < K || crash_errors_seen < K) && !expired()) {
        pc_loop_run(&L, 1);
        uint64_t now = pc_now_ns();
        for (long i = 0; i < nchans; i++)
            if (chans[i].state == CH_ERRORED && now - chans[i].sent_ns >= 1000000u)
                chan_join(&chans[i], NULL);
    }
    if (crash_errors_seen < K)
        fail("crash: %ld of %ld rooms sent phx_error", crash_errors_seen, K);
    if (crash_back < K)
        fail("crash: %ld of %ld rooms came back with their state", crash_back, K);
    pc_metric_t m[] = {
        {"ms_all_crashes_accepted", pc_ms(accept_el), "%.3f"},
        {"ms_all_phx_error", crash_errors_seen ? pc_ms(crash_last_error - crash_t0) : -1, "%.3f"},
        {"ms_all_restored", crash_back == K ? pc_ms(crash_last_back - crash_t0) : -1, "%.3f"},
        {"ms_restored_p50", pc_ms(pc_samples_pct(&crash_back_lat, 50)), "%.3f"},
        {"ms_restored_p99", pc_ms(pc_samples_pct(&crash_back_lat, 99)), "%.3f"},
        {"rooms_restored", (double)crash_back, "%.3f"},
        {"failures", (double)failures, "%.3f"},
    };
    report("rooms crash recovery (times from the first crash request)", m, (int)(sizeof m / sizeof m[0]));
    socks_close();
    return failures ? 1 : 0;
}

/* ---- Scenario: durable ----------------------------------------------------------- */

/* Two phases on the same rooms and members:
 *   closed loop  every member keeps one status push in flight: the most
 *                acknowledged changes per second the server gives (the
 *                latency is then queueing: in-flight / throughput);
 *   open loop    --rate R pushes per second in all, spread evenly over
 *                the rooms and sent on schedule whatever the answers:
 *                the acknowledgement latency at that load (the target
 *                is stated as R = 20,000/s with p99 <= 10 ms).
 * A push's ref is "<channel>.<serial>"; its send time sits in the
 * channel's ring at serial % DW_RING (at most DW_RING in flight per
 * room: beyond that the open loop counts the push as not sent). */
#define DW_RING 64

static uint64_t dw_measure_from, dw_measure_to;
static bool dw_sending, dw_closed_loop;
static long dw_acks, dw_inflight, dw_skipped;
static pc_samples_t dw_lat;
static uint64_t (*dw_ring)[DW_RING];
static unsigned *dw_out; /* in flight per channel */

static void dw_send(chan_t *ch)
{
    char payload[64], ref[32];
    if (dw_out[ch->id] >= DW_RING) {
        dw_skipped++;
        return;
    }
    ch->n++;
    ch->serial++;
    snprintf(ref, sizeof ref, "%ld.%u", ch->id, ch->serial);
    snprintf(payload, sizeof payload, "{\"n\":%ld}", ch->n);
    dw_ring[ch->id][ch->serial % DW_RING] = pc_now_ns();
    dw_out[ch->id]++;
    dw_inflight++;
    pc_phx_send(socks[ch->sock].c, ch->join_ref, ref, ch->topic, "status", payload);
}

static void dw_msg(chan_t *ch, pc_msg_t *m)
{
    if (!ch)
        return;
    if (strcmp(m->event, "phx_error") == 0 || strcmp(m->event, "phx_close") == 0) {
        fail("durable: %s on %s", m->event, ch->topic);
        return;
    }
    if (strcmp(m->event, "phx_reply") != 0 || !m->ref)
        return;
    const char *dot = strchr(m->ref, '.');
    if (!dot || dw_out[ch->id] == 0)
        return;
    unsigned serial = (unsigned)strtoul(dot + 1, NULL, 10);
    uint64_t sent = dw_ring[ch->id][serial % DW_RING];
    dw_out[ch->id]--;
    dw_inflight--;
    uint64_t now = pc_now_ns();
    if (!pc_reply_ok(m)) {
        fail("durable: status on %s refused: %s", ch->topic, reply_reason(m));
        return;
    }
    if (sent >= dw_measure_from && now <= dw_measure_to) {
        dw_acks++;
        pc_samples_add(&dw_lat, now - sent);
    }
    if (dw_sending && dw_closed_loop)
        dw_send(ch);
}

/* Runs one phase; false on a failure. */
static bool dw_phase(bool closed, double rate, double *acks_per_s)
{
    dw_closed_loop = closed;
    dw_acks = 0;
    dw_skipped = 0;
    pc_samples_free(&dw_lat);
    uint64_t t0 = pc_now_ns();
    dw_measure_from = t0 + (uint64_t)(opt.warmup_s * 1e9);
    dw_measure_to = dw_measure_from + (uint64_t)(opt.duration_s * 1e9);
    dw_sending = true;
    long before = failures, sent = 0, next = 0;
    if (closed) {
        for (long i = 0; i < nchans; i++)
            dw_send(&chans[i]);
    }
    while (pc_now_ns() < dw_measure_to && !expired() && failures == before) {
        pc_loop_run(&L, closed ? 5 : 1);
        if (!closed) {
            /* Pushes due by now, round robin over the rooms; at most one
             * second of backlog at once so a stall cannot build a burst
             * beyond that. */
            long due = (long)((double)(pc_now_ns() - t0) / 1e9 * rate);
            if (due - sent > (long)rate)
                sent = due - (long)rate;
            for (; sent < due; sent++) {
                dw_send(&chans[next]);
                next = (next + 1) % nchans;
            }
        }
    }
    dw_sending = false;
    uint64_t drain_end = pc_now_ns() + 10000000000ull;
    while (dw_inflight > 0 && pc_now_ns() < drain_end && !pc_interrupted)
        pc_loop_run(&L, 5);
    if (dw_inflight > 0)
        fail("durable: %ld status pushes unanswered 10 s after the end", dw_inflight);
    *acks_per_s = (double)dw_acks / opt.duration_s;
    return failures == before;
}

static int run_durable(void)
{
    if (opt.rooms < 0)
        opt.rooms = 1000;
    int S = opt.sockets < opt.rooms ? opt.sockets : (int)opt.rooms;
    printf("rooms durable writes: %ld rooms, one member each on %d sockets; closed loop, then "
           "open loop at %.0f/s; %.1f s each after %.1f s of warm-up\n",
           opt.rooms, S, opt.rate, opt.duration_s, opt.warmup_s);
    if (!create_rooms(opt.rooms, NULL))
        return 1;
    socks_init(S, "dw");
    chans_init(opt.rooms);
    for (long i = 0; i < opt.rooms; i++)
        chan_attach(i, (int)(i % S), i);
    if (!socks_connect() || !join_all())
        return 1;
    dw_ring = pc_xcalloc((size_t)nchans, sizeof *dw_ring);
    dw_out = pc_xcalloc((size_t)nchans, sizeof *dw_out);
    on_chan_msg = dw_msg;

    double tput = 0;
    dw_phase(true, 0, &tput);
    pc_metric_t m[] = {
        {"acked_status_per_s", tput, "%.3f"},
        {"ms_ack_p50", pc_ms(pc_samples_pct(&dw_lat, 50)), "%.3f"},
        {"ms_ack_p99", pc_ms(pc_samples_pct(&dw_lat, 99)), "%.3f"},
        {"ms_ack_max", pc_ms(pc_samples_pct(&dw_lat, 100)), "%.3f"},
        {"acks_measured", (double)dw_acks, "%.3f"},
        {"failures", (double)failures, "%.3f"},
    };
    report("rooms durable writes, closed loop (one push in flight per room)", m,
           (int)(sizeof m / sizeof m[0]));

    if (opt.rate > 0 && !failures) {
        double got = 0;
        dw_phase(false, opt.rate, &got);
        pc_metric_t r[] = {
            {"offered_per_s", opt.rate, "%.3f"},
            {"acked_status_per_s", got, "%.3f"},
            {"ms_ack_p50", pc_ms(pc_samples_pct(&dw_lat, 50)), "%.3f"},
            {"ms_ack_p99", pc_ms(pc_samples_pct(&dw_lat, 99)), "%.3f"},
            {"ms_ack_max", pc_ms(pc_samples_pct(&dw_lat, 100)), "%.3f"},
            {"not_sent_backlog", (double)dw_skipped, "%.3f"},
            {"failures", (double)failures, "%.3f"},
        };
        char title[128];
        snprintf(title, sizeof title, "rooms durable writes, open loop at %.0f/s", opt.rate);
        pc_report("rooms_durable_rate", title, r, (int)(sizeof r / sizeof r[0]));
    }
    free(dw_ring);
    free(dw_out);
    socks_close();
    return failures ? 1 : 0;
}

/* ---- Scenario: restart -------------------------------------------------------------- */

static bool port_open(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.srv.port)};
    inet_pton(AF_INET, opt.srv.host, &sa.sin_addr);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static pid_t start_server(void)
{
    char port[16], logp[4096];
    snprintf(port, sizeof port, "%d", opt.srv.port);
    snprintf(logp, sizeof logp, "%s/restart.log", opt.data);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int dn = open("/dev/null", O_RDONLY);
        if (dn >= 0)
            dup2(dn, 0);
        execl(opt.roost, opt.roost, "serve", "--port", port, "--data", opt.data, "--secret",
              opt.srv.secret, "--api-key", opt.srv.api_key, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int stop_server(pid_t pid)
{
    kill(pid, SIGTERM);
    uint64_t end = pc_now_ns() + 30000000000ull;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (pc_now_ns() > end) {
            fprintf(stderr, "rooms_bench: the restarted server did not exit 30 s after SIGTERM\n");
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return 1;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "rooms_bench: the restarted server ended with status %d\n", st);
        return 1;
    }
    return 0;
}

static int run_restart(void)
{
    if (opt.rooms < 0)
        opt.rooms = 10000;
    if (!opt.roost || !opt.data || opt.srv.pid <= 0) {
        fprintf(stderr, "rooms_bench: restart needs --roost, --data and --server-pid\n");
        return 2;
    }
    long M = opt.with_status < opt.rooms ? opt.with_status : opt.rooms;
    printf("rooms restart: %ld rooms (%ld with a status), kill -9, restart on the same data\n",
           opt.rooms, M);
    if (!create_rooms(opt.rooms, NULL))
        return 1;
    if (M > 0) {
        int S = (int)((M + 99) / 100);
        socks_init(S, "restart");
        chans_init(M);
        long stride = opt.rooms / M;
        for (long i = 0; i < M; i++) {
            chan_attach(i, (int)(i / 100), i * stride);
            chans[i].value = 1000000 + i;
        }
        if (!socks_connect() || !join_all() || !status_all())
            return 1;
        printf("  %ld statuses acknowledged\n", M);
    }

    /* kill -9, and wait until the port is closed (the process is gone). */
    if (kill((pid_t)opt.srv.pid, SIGKILL) != 0) {
        fail("restart: cannot kill %ld: %s", opt.srv.pid, strerror(errno));
        return 1;
    }
    if (nsocks) {
        for (int i = 0; i < nsocks; i++)
            socks[i].open = false;
        uint64_t end = pc_now_ns() + 5000000000ull;
        while (L.conns > 0 && pc_now_ns() < end)
            pc_loop_run(&L, 5);
    }
    uint64_t gone_by = pc_now_ns() + 10000000000ull;
    while (port_open()) {
        if (pc_now_ns() > gone_by) {
            fail("restart: port %d still open 10 s after kill -9", opt.srv.port);
            return 1;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }

    uint64_t t0 = pc_now_ns();
    pid_t pid = start_server();
    if (pid < 0) {
        fail("restart: fork: %s", strerror(errno));
        return 1;
    }
    uint64_t t_health = 0, t_sample = 0, t_listed = 0;
    char *buf = pc_xcalloc(PC_MAX_MSG + 1, 1);
    /* /healthz */
    while (!expired()) {
        int st = waitpid(pid, NULL, WNOHANG);
        if (st == pid) {
            fail("restart: the server exited (see %s/restart.log)", opt.data);
            free(buf);
            return 1;
        }
        if (port_open() && http_sync("GET", "/healthz", NULL, NULL, 0, 1000) == 200) {
            t_health = pc_now_ns();
            break;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    /* A sample of rooms, each answering with its state. */
    long sample = opt.rooms < 100 ? opt.rooms : 100, ok = 0;
    for (long k = 0; k < sample && !expired();) {
        long i = k * (opt.rooms / sample);
        char rid[128], path[256];
        room_id(i, rid, sizeof rid);
        snprintf(path, sizeof path, "/api/rooms/%s", rid);
        int st = http_sync("GET", path, NULL, buf, PC_MAX_MSG, 2000);
        if (st != 200) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue; /* not back yet: ask again */
        }
        k++;
        ok++;
    }
    if (ok == sample)
        t_sample = pc_now_ns();
    else
        fail("restart: %ld of %ld sampled rooms answered", ok, sample);
    /* The whole list. */
    long listed = 0;
    while (!expired()) {
        int st = http_sync("GET", "/api/rooms", NULL, buf, PC_MAX_MSG, 10000);
        if (st == 200) {
            json_t *j = json_loads(buf, 0, NULL);
            json_t *rooms = json_object_get(j, "rooms");
            listed = 0;
            size_t idx;
            json_t *r;
            json_array_foreach(rooms, idx, r) {
                const char *id = json_is_string(r) ? json_string_value(r)
                                                   : json_string_value(json_object_get(r, "id"));
                char pre[64];
                snprintf(pre, sizeof pre, "%s-%s-", opt.tag, scenario_names[opt.scenario]);
                if (id && strncmp(id, pre, strlen(pre)) == 0)
                    listed++;
            }
            json_decref(j);
            if (listed >= opt.rooms) {
                t_listed = pc_now_ns();
                break;
            }
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (!t_listed)
        fail("restart: GET /api/rooms listed %ld of %ld rooms", listed, opt.rooms);
    /* The statuses came back. */
    long kept = 0;
    for (long i = 0; i < nchans && !expired(); i++) {
        char rid[128], path[256];
        room_id(chans[i].room, rid, sizeof rid);
        snprintf(path, sizeof path, "/api/rooms/%s", rid);
        if (http_sync("GET", path, NULL, buf, PC_MAX_MSG, 2000) != 200)
            continue;
        json_t *j = json_loads(buf, 0, NULL);
        if (status_v(j, socks[chans[i].sock].user) == chans[i].value)
            kept++;
        json_decref(j);
    }
    if (kept < nchans)
        fail("restart: %ld of %ld acknowledged statuses restored", kept, nchans);
    free(buf);
    int rc = stop_server(pid);
    pc_metric_t m[] = {
        {"ms_to_healthz", t_health ? pc_ms(t_health - t0) : -1, "%.3f"},
        {"ms_to_rooms_sample", t_sample ? pc_ms(t_sample - t0) : -1, "%.3f"},
        {"ms_to_all_listed", t_listed ? pc_ms(t_listed - t0) : -1, "%.3f"},
        {"statuses_restored", (double)kept, "%.3f"},
        {"failures", (double)failures, "%.3f"},
    };
    report("rooms restart after kill -9 (times from the exec)", m, (int)(sizeof m / sizeof m[0]));
    if (nsocks) {
        for (int i = 0; i < nsocks; i++)
            free(socks[i].chans);
        free(socks);
    }
    return failures || rc ? 1 : 0;
}

/* ---- Scenario: viewers ------------------------------------------------------------- */

/* One room, --viewers V (10000) WebSockets joined as viewers ({"role":
 * "viewer"}, one channel each: a socket can join a topic once) and one
 * participant, the publisher, on its own socket. The server's resident
 * memory (VmRSS of --server-pid) is read before the viewers join and once
 * they all have, 300 ms later: bytes per viewer. Then the publisher sends
 * --messages M (1000) `data` pushes of --size S (100) bytes (the JSON
 * text of the data object) at --rate R (200) per second, on schedule;
 * each carries its send time and sequence number:
 *   {"rb_t": <CLOCK_MONOTONIC ns>, "rb_q": <0..M-1>, "p": "xxx..."}
 * Every viewer receives {"from", "data"} and the bench (the same process,
 * the same clock) records receive time - send time, and marks the
 * sequence number in the viewer's bitmap: losses and duplicates are
 * exact, per viewer and in total (expected V x M). The fan-out ends when
 * every delivery arrived, or 10 s after the last send without progress,
 * or at the deadline. M = 0 only joins (memory per viewer). Viewer
 * messages are matched with memmem, not parsed, so that the bench can
 * take millions per second on one thread; anything but data,
 * room_status and presence is parsed and checked. */

typedef enum { VW_IDLE, VW_CONNECTING, VW_JOINING, VW_JOINED, VW_GONE } vw_state_t;

typedef struct viewer {
    pc_conn_t *c;  /* NULL once closed (the loop frees it) */
    uint64_t last_hb;
    uint32_t got, dups;
    uint8_t state;
} viewer_t;

static viewer_t *vw;
static uint8_t *vw_seen; /* V bitmaps of M bits */
static size_t vw_stride;
static char vw_topic[160];
static long vw_joined, vw_gone, vw_bad, vw_errors, vw_closed_3008;
static pc_window_t vw_window; /* --window connecting or joining at once */
static uint64_t vw_delivered, vw_dups, vw_last_recv, vw_first_recv;

/* receive - send of every delivery, ns (pc_hist_t: ~1.6 % resolution,
 * min and max exact). */
static pc_hist_t vw_lat;

static double loadavg1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static void viewer_text(pc_conn_t *c, const char *text, size_t len)
{
    viewer_t *v = &vw[c->idx];
    size_t head = len < 240 ? len : 240;
    if (memmem(text, head, ",\"data\",{", 9)) {
        uint64_t now = pc_now_ns();
        uint64_t seq, sent;
        if (!pc_find_u64(text, len, "\"rb_q\":", &seq) || !pc_find_u64(text, len, "\"rb_t\":", &sent)) {
            if (vw_bad++ < 3)
                fail("viewers: a data message without rb_q/rb_t: %.*s", (int)(len > 200 ? 200 : len), text);
            return;
        }
        if (seq >= (uint64_t)opt.messages) {
            if (vw_bad++ < 3)
                fail("viewers: a data message with rb_q %" PRIu64 " out of range", seq);
            return;
        }
        uint8_t *bm = vw_seen + (size_t)c->idx * vw_stride;
        uint8_t bit = (uint8_t)(1u << (seq & 7));
        if (bm[seq >> 3] & bit) {
            v->dups++;
            vw_dups++;
            return;
        }
        bm[seq >> 3] |= bit;
        v->got++;
        if (!vw_delivered)
            vw_first_recv = now;
        vw_delivered++;
        vw_last_recv = now;
        pc_hist_add(&vw_lat, now >= sent ? now - sent : 0);
        return;
    }
    if (memmem(text, head, ",\"room_status\",", 15) || memmem(text, head, ",\"presence_diff\",", 17) ||
        memmem(text, head, ",\"presence_state\",", 18))
        return;
    pc_msg_t m;
    if (!pc_msg_parse(text, len, &m)) {
        fail("viewer %ld: a message that is not a Phoenix V2 array: %.*s", c->idx,
             (int)(len > 200 ? 200 : len), text);
        return;
    }
    if (strcmp(m.event, "phx_reply") == 0 && m.ref && strcmp(m.ref, "1") == 0 &&
        v->state == VW_JOINING) {
        if (pc_reply_ok(&m)) {
            v->state = VW_JOINED;
            vw_joined++;
        } else {
            v->state = VW_GONE;
            vw_gone++;
            fail("viewers: join of viewer %ld refused: %s", c->idx, reply_reason(&m));
        }
        pc_window_done(&vw_window);
    } else if (strcmp(m.event, "phx_error") == 0 || strcmp(m.event, "phx_close") == 0) {
        vw_errors++;
        fail("viewers: %s on viewer %ld", m.event, c->idx);
    }
    pc_msg_free(&m);
}

static void viewer_event(pc_conn_t *c, pc_event_t ev)
{
    viewer_t *v = &vw[c->idx];
    if (ev == PC_EV_OPEN) {
        v->state = VW_JOINING;
        pc_phx_send(c, "1", "1", vw_topic, "phx_join", "{\"role\":\"viewer\"}");
        return;
    }
    v->c = NULL; /* freed by the loop after this callback */
    if (v->state == VW_GONE)
        return;
    if (v->state != VW_JOINED)
        pc_window_done(&vw_window);
    if (c->close_code == 3008)
        vw_closed_3008++;
    fail("viewers: viewer %ld's WebSocket closed (code %d) %s", c->idx, c->close_code,
         v->state == VW_JOINED ? "while joined" : "before its join was answered");
    v->state = VW_GONE;
    vw_gone++;
}

/* The publisher: a participant on its own socket, replies counted. */
static struct {
    pc_conn_t *c;
    bool open, joined, dead;
    long acks, nacks;
    unsigned serial;
} pub;

static void pub_text(pc_conn_t *c, const char *text, size_t len)
{
    (void)c;
    size_t head = len < 240 ? len : 240;
    if (memmem(text, head, ",\"room_status\",", 15) || memmem(text, head, ",\"presence_diff\",", 17) ||
        memmem(text, head, ",\"presence_state\",", 18))
        return;
    pc_msg_t m;
    if (!pc_msg_parse(text, len, &m))
        return;
    if (strcmp(m.event, "phx_reply") == 0 && m.ref && strcmp(m.ref, "hb") != 0) {
        bool ok = pc_reply_ok(&m);
        if (strcmp(m.ref, "1") == 0) {
            pub.joined = ok;
            if (!ok) {
                pub.dead = true;
                fail("viewers: the publisher's join was refused: %s", reply_reason(&m));
            }
        } else if (ok) {
            pub.acks++;
        } else {
            pub.nacks++;
            fail("viewers: a data push was refused: %s", reply_reason(&m));
        }
    } else if (strcmp(m.event, "phx_error") == 0 || strcmp(m.event, "phx_close") == 0) {
        pub.dead = true;
        fail("viewers: %s on the publisher", m.event);
    }
    pc_msg_free(&m);
}

static void pub_event(pc_conn_t *c, pc_event_t ev)
{
    if (ev == PC_EV_OPEN) {
        pub.open = true;
        pub.serial = 1;
        pc_phx_send(c, "1", "1", vw_topic, "phx_join", "{}");
    } else {
        pub.open = false;
        pub.c = NULL; /* freed by the loop after this callback */
        if (pub.dead)
            return;
        pub.dead = true;
        fail("viewers: the publisher's WebSocket closed (code %d)", c->close_code);
    }
}

/* Sends data message seq; returns its size (the data object's JSON). */
static int pub_send(long seq)
{
    char payload[4096], ref[32];
    uint64_t now = pc_now_ns();
    int n = snprintf(payload, sizeof payload, "{\"rb_t\":%" PRIu64 ",\"rb_q\":%ld,\"p\":\"", now, seq);
    int pad = opt.size - n - 2;
    if (pad > 0) {
        memset(payload + n, 'x', (size_t)pad);
        n += pad;
    }
    payload[n++] = '"';
    payload[n++] = '}';
    payload[n] = '\0';
    snprintf(ref, sizeof ref, "%u", ++pub.serial);
    pc_phx_send(pub.c, "1", ref, vw_topic, "data", payload);
    return n;
}

/* The server closes a WebSocket that sent nothing for 60 s (1001, idle
 * timeout; phoenix.js heartbeats every 30 s), and joining 10,000 viewers
 * can take longer than that: every socket sends a heartbeat 25 s after
 * its connect or its last heartbeat. A circular cursor looks at no more
 * than 512 viewers per call, once per 20 ms, so the cost is bounded and
 * the heartbeats are spread out. */
#define VW_HB_NS 25000000000ull
static long vw_hb_cursor;
static uint64_t pub_last_hb;

static void vw_heartbeats(uint64_t now)
{
    static uint64_t next_look;
    if (now < next_look)
        return;
    next_look = now + 20000000u; /* every 20 ms: 512 x 50 = 25,600 viewers a second */
    if (pub.c && pub.open && now - pub_last_hb > VW_HB_NS) {
        pc_phx_heartbeat(pub.c);
        pub_last_hb = now;
    }
    for (int k = 0; k < 512 && opt.viewers > 0; k++) {
        viewer_t *v = &vw[vw_hb_cursor];
        vw_hb_cursor = (vw_hb_cursor + 1) % opt.viewers;
        if (v->c && (v->state == VW_JOINING || v->state == VW_JOINED) && now - v->last_hb > VW_HB_NS) {
            pc_phx_heartbeat(v->c);
            v->last_hb = now;
        }
    }
}

static int run_viewers(void)
{
    long V = opt.viewers, M = opt.messages;
    double R = opt.rate_set ? opt.rate : 200;
    if (opt.srv.pid <= 0) {
        fprintf(stderr, "rooms_bench: viewers needs --server-pid (the server's memory is read)\n");
        return 2;
    }
    if (M > 0)
        printf("rooms viewers: %ld viewers in one room, one publisher: %ld data messages of %d bytes "
               "at %.0f/s (%.0f deliveries/s offered)\n",
               V, M, opt.size, R, R * (double)V);
    else
        printf("rooms viewers: %ld viewers join one room (memory per viewer; no messages)\n", V);
    double load_start = loadavg1();
    if (!create_rooms(1, NULL))
        return 1;
    char rid[128];
    room_id(0, rid, sizeof rid);
    snprintf(vw_topic, sizeof vw_topic, "room:%s", rid);

    /* The publisher joins first (the room is live and has a participant). */
    char user[96];
    snprintf(user, sizeof user, "%s-pub", opt.tag);
    char *tok = pc_mint(opt.srv.secret, user, "*", 3600);
    pub.c = pc_ws_connect(&L, tok, pub_text, pub_event, NULL, 0);
    pub_last_hb = pc_now_ns();
    free(tok);
    while (!pub.joined && !pub.dead && !expired())
        pc_loop_run(&L, 10);
    if (!pub.joined) {
        fail("viewers: the publisher did not join");
        return 1;
    }
    /* Let the join's announcements go out, then read the baseline. */
    for (uint64_t end = pc_now_ns() + 300000000ull; pc_now_ns() < end && !expired();)
        pc_loop_run(&L, 10);
    long rss0 = pc_vmrss_kib(opt.srv.pid);

    vw = pc_xcalloc((size_t)V, sizeof *vw);
    vw_stride = (size_t)((M + 7) / 8);
    vw_seen = pc_xcalloc((size_t)V * (vw_stride ? vw_stride : 1), 1);

    /* Viewers connect and join, --window at a time (the listen backlog
     * is finite: 10,000 SYNs at once would be dropped and retried 1 s
     * later). */
    uint64_t tj0 = pc_now_ns();
    vw_window = (pc_window_t){.n = V, .limit = opt.window};
    long next;
    while (vw_joined + vw_gone < V && !expired()) {
        /* A socket that cannot even start closes in the next run
         * (viewer_event). */
        while (pc_window_next(&vw_window, &next)) {
            char vu[96];
            snprintf(vu, sizeof vu, "%s-v-%ld", opt.tag, next);
            tok = pc_mint(opt.srv.secret, vu, "*", 3600);
            vw[next].state = VW_CONNECTING;
            vw[next].last_hb = pc_now_ns();
            vw[next].c = pc_ws_connect(&L, tok, viewer_text, viewer_event, NULL, next);
            free(tok);
        }
        pc_loop_run(&L, 5);
        vw_heartbeats(pc_now_ns());
        if (failures > 0 && vw_gone > 0)
            break; /* a refused join or a dropped socket: no point going on */
    }
    uint64_t join_el = pc_now_ns() - tj0;
    if (vw_joined < V)
        fail("viewers: %ld of %ld viewers joined", vw_joined, V);
    printf("  %ld viewers joined in %.3f s (%.0f joins/s)\n", vw_joined, (double)join_el / 1e9,
           (double)vw_joined / ((double)join_el / 1e9));
    fflush(stdout);
    for (uint64_t end = pc_now_ns() + 300000000ull; pc_now_ns() < end && !expired();)
        pc_loop_run(&L, 10);
    vw_heartbeats(pc_now_ns());
    long rss1 = pc_vmrss_kib(opt.srv.pid);
    double bytes_per_viewer =
        rss0 > 0 && rss1 > 0 && vw_joined > 0 ? (double)(rss1 - rss0) * 1024.0 / (double)vw_joined : -1;
    printf("  server VmRSS %ld kB before, %ld kB with %ld viewers: %.0f bytes per viewer\n", rss0,
           rss1, vw_joined, bytes_per_viewer);
    fflush(stdout);

    long sent = 0;
    uint64_t t0 = 0, t_last_send = 0;
    long rss2 = -1;
    double load_pub = -1;
    if (M > 0 && vw_joined == V && !failures) {
        /* Open loop: message k goes out at t0 + k/R. At most one second
         * of backlog is sent at once after a stall. */
        t0 = pc_now_ns();
        uint64_t expect = (uint64_t)V * (uint64_t)M;
        uint64_t last_progress = t0, seen = 0;
        while (!expired() && !pub.dead) {
            uint64_t now = pc_now_ns();
            if (sent < M) {
                long due = (long)((double)(now - t0) / 1e9 * R) + 1;
                if (due > M)
                    due = M;
                for (int burst = 0; sent < due && burst < (int)R + 1; burst++) {
                    pub_send(sent++);
                    t_last_send = pc_now_ns();
                }
                if (sent == M / 2 && load_pub < 0)
                    load_pub = loadavg1();
            } else {
                if (vw_delivered >= expect && pub.acks + pub.nacks >= sent)
                    break;
                if (vw_delivered != seen) {
                    seen = vw_delivered;
                    last_progress = now;
                } else if (now - last_progress > 10000000000ull) {
                    break; /* 10 s without a delivery after the last send */
                }
            }
            pc_loop_run(&L, 1);
            vw_heartbeats(pc_now_ns());
        }
        if (load_pub < 0)
            load_pub = loadavg1();
        rss2 = pc_vmrss_kib(opt.srv.pid);
        if (sent < M)
            fail("viewers: %ld of %ld messages sent by the deadline", sent, M);
    }

    /* Per viewer: exact losses and duplicates. */
    uint64_t losses = 0;
    long viewers_lossy = 0, viewers_dup = 0;
    uint32_t worst = 0;
    if (M > 0) {
        for (long i = 0; i < V; i++) {
            uint32_t lost = (uint32_t)M - vw[i].got;
            losses += lost;
            if (lost) {
                viewers_lossy++;
                if (lost > worst)
                    worst = lost;
            }
            if (vw[i].dups)
                viewers_dup++;
        }
        if (losses || vw_dups)
            fail("viewers: %" PRIu64 " deliveries lost (%ld viewers), %" PRIu64 " duplicates", losses,
                 viewers_lossy, vw_dups);
    }
    double span_s = vw_delivered && t0 ? (double)(vw_last_recv - t0) / 1e9 : 0;
    pc_metric_t m_fan[] = {
        {"viewers", (double)V, "%.3f"},
        {"viewers_joined", (double)vw_joined, "%.3f"},
        {"s_to_join_all", (double)join_el / 1e9, "%.3f"},
        {"server_rss_kb_before", (double)rss0, "%.3f"},
        {"server_rss_kb_joined", (double)rss1, "%.3f"},
        {"server_bytes_per_viewer", bytes_per_viewer, "%.3f"},
        {"messages_sent", (double)sent, "%.3f"},
        {"publisher_acks", (double)pub.acks, "%.3f"},
        {"offered_deliveries_per_s", R * (double)V, "%.3f"},
        {"deliveries_expected", (double)V * (double)M, "%.3f"},
        {"deliveries", (double)vw_delivered, "%.3f"},
        {"deliveries_per_s", span_s > 0 ? (double)vw_delivered / span_s : 0, "%.3f"},
        {"s_first_send_to_last_delivery", span_s, "%.3f"},
        {"s_send_window", t_last_send > t0 ? (double)(t_last_send - t0) / 1e9 : 0, "%.3f"},
        {"losses", (double)losses, "%.3f"},
        {"viewers_with_loss", (double)viewers_lossy, "%.3f"},
        {"max_loss_one_viewer", (double)worst, "%.3f"},
        {"duplicates", (double)vw_dups, "%.3f"},
        {"viewers_with_duplicates", (double)viewers_dup, "%.3f"},
        {"ms_latency_min", pc_ms(vw_lat.min), "%.3f"},
        {"ms_latency_p50", pc_ms(pc_hist_pct(&vw_lat, 50)), "%.3f"},
        {"ms_latency_p99", pc_ms(pc_hist_pct(&vw_lat, 99)), "%.3f"},
        {"ms_latency_p999", pc_ms(pc_hist_pct(&vw_lat, 99.9)), "%.3f"},
        {"ms_latency_max", pc_ms(vw_lat.max), "%.3f"},
        {"server_rss_kb_after_fanout", (double)rss2, "%.3f"},
        {"closed_3008_slow_consumer", (double)vw_closed_3008, "%.3f"},
        {"load_avg_1m_start", load_start, "%.3f"},
        {"load_avg_1m_publishing", load_pub, "%.3f"},
        {"failures", (double)failures, "%.3f"},
    };
    if (M > 0) {
        report("rooms viewers fan-out (latency = receive - send, one clock)", m_fan,
               (int)(sizeof m_fan / sizeof m_fan[0]));
    } else {
        pc_metric_t m_join[] = {m_fan[0], m_fan[1], m_fan[2], m_fan[3], m_fan[4], m_fan[5],
                                {"load_avg_1m_start", load_start, "%.3f"},
                                {"failures", (double)failures, "%.3f"}};
        pc_report("rooms_viewers_join", "rooms viewers join (server memory per viewer)", m_join,
                  (int)(sizeof m_join / sizeof m_join[0]));
    }

    /* Close everything, a window at a time is not needed: the server
     * sees EOFs. */
    for (long i = 0; i < V; i++)
        if (vw[i].c && !vw[i].c->dead) {
            vw[i].state = VW_GONE;
            pc_ws_close(vw[i].c, 1000);
        }
    if (pub.c && !pub.c->dead) {
        pub.dead = true;
        pc_ws_close(pub.c, 1000);
    }
    pc_loop_run(&L, 0);
    free(vw);
    free(vw_seen);
    return failures ? 1 : 0;
}

/* ---- main --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rooms_bench --scenario churn|crash|durable|restart|viewers --port P --secret S --api-key K\n"
            "                   [--host H] [--rooms N] [--crash K] [--concurrency C] [--sockets S]\n"
            "                   [--statuses N] [--http-conns H] [--duration-s T] [--warmup-s T]\n"
            "                   [--with-status M] [--roost PATH --data DIR --server-pid PID]\n"
            "                   [--rate R] [--tag T] [--timeout-s T]\n"
            "                   [--viewers V] [--messages M] [--size S] [--window W] (viewers; --rate\n"
            "                   is then messages/s, default 200; needs --server-pid)\n");
}

int main(int argc, char **argv)
{
    if (pc_bare_run(argc, usage, "scripts/bench-rooms.sh starts a server and runs every scenario"))
        return 0;
    const char *scenario = NULL, *tag = NULL;
    const pc_opt_t opts[] = {
        PC_SERVER_OPTS(&opt.srv),
        {"scenario", PC_OPT_STR, &scenario, NULL},
        {"rooms", PC_OPT_LONG, &opt.rooms, NULL},
        {"crash", PC_OPT_LONG, &opt.crash, NULL},
        {"concurrency", PC_OPT_INT, &opt.concurrency, NULL},
        {"sockets", PC_OPT_INT, &opt.sockets, NULL},
        {"statuses", PC_OPT_INT, &opt.statuses, NULL},
        {"http-conns", PC_OPT_INT, &opt.http_conns, NULL},
        {"duration-s", PC_OPT_DOUBLE, &opt.duration_s, NULL},
        {"warmup-s", PC_OPT_DOUBLE, &opt.warmup_s, NULL},
        {"with-status", PC_OPT_LONG, &opt.with_status, NULL},
        {"roost", PC_OPT_STR, &opt.roost, NULL},
        {"data", PC_OPT_STR, &opt.data, NULL},
        {"tag", PC_OPT_STR, &tag, NULL},
        {"timeout-s", PC_OPT_INT, &opt.timeout_s, NULL},
        {"rate", PC_OPT_DOUBLE, &opt.rate, &opt.rate_set},
        {"viewers", PC_OPT_LONG, &opt.viewers, NULL},
        {"messages", PC_OPT_LONG, &opt.messages, NULL},
        {"size", PC_OPT_INT, &opt.size, NULL},
        {"window", PC_OPT_INT, &opt.window, NULL},
    };
    int rc = pc_opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), usage);
    if (rc != 0)
        return rc;
    int sc = pc_pick(scenario, scenario_names, SC_COUNT);
    if (sc < 0 || opt.srv.port <= 0 || !opt.srv.secret || !opt.srv.api_key || opt.concurrency < 1 ||
        opt.sockets < 1 || opt.statuses < 1 || opt.http_conns < 1 || opt.duration_s <= 0 ||
        opt.warmup_s < 0 || opt.rate < 0 || opt.crash < 1 || opt.rooms == 0 || opt.rooms < -1 || opt.with_status < 0 ||
        opt.timeout_s < 1 || opt.viewers < 1 || opt.messages < 0 || opt.messages > 100000000 ||
        opt.size < 0 || opt.size > 3500 || opt.window < 1 ||
        (sc == SC_VIEWERS && opt.rate_set && opt.rate <= 0)) {
        usage(stderr);
        return 2;
    }
    opt.scenario = (scenario_t)sc;
    if (tag)
        snprintf(opt.tag, sizeof opt.tag, "%s", tag);
    if (!opt.tag[0])
        snprintf(opt.tag, sizeof opt.tag, "b%ld", (long)getpid());

    pc_process_init();
    rc = pc_loop_init(&L, opt.srv.host, opt.srv.port);
    if (rc != 0) {
        fprintf(stderr, "rooms_bench: %s\n", rc == -2 ? "--host is not an IPv4 address" : strerror(errno));
        return rc == -2 ? 2 : 1;
    }
    pc_loop_timeout(&L, opt.timeout_s);
    switch (opt.scenario) {
    case SC_CHURN: rc = run_churn(); break;
    case SC_CRASH: rc = run_crash(); break;
    case SC_DURABLE: rc = run_durable(); break;
    case SC_VIEWERS: rc = run_viewers(); break;
    default: rc = run_restart(); break;
    }
    pc_loop_free(&L);
    return rc;
}
