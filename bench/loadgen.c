/*
 * loadgen.c — a load generator for roost's WebSocket endpoint: many
 * Phoenix (V2) clients over plain TCP, one epoll loop, no threads. The
 * client (connections, WebSocket, HTTP, tokens, histograms, options,
 * report) is bench/phx_client.h, shared with rooms_bench; this file is
 * the two scenarios.
 *
 * Usage:
 *   loadgen --scenario idle|fanout --port P --secret S [options]
 *
 *   --host H           server address (127.0.0.1)
 *   --port P           server port (required)
 *   --secret S         JWT secret of the server (required): tokens are
 *                      minted here, HS256, with src/web/jwt.c
 *   --api-key K        the server's API key (fanout: required)
 *   --conns N          connections (idle 1000, fanout 100)
 *   --concurrency C    connections being set up at once (256)
 *   --server-pid PID   read the server's VmRSS before and after (idle)
 *   --rss-cold-kib K   idle: the server's VmRSS before any connection at all
 *                      (the caller read it before a warm-up run): also
 *                      report the growth from there per connection
 *   --settle-ms T      after the last join, keep serving for T ms before
 *                      reading the server's memory (1000)
 *   --hold-s T         idle: keep the connections open T s more (0)
 *   --messages M       fanout: messages to publish (1000)
 *   --size S           fanout: payload bytes per message (256)
 *   --rate R           fanout: messages per second (200)
 *   --publishers P     fanout: HTTP connections publishing (4)
 *   --user U           fanout: the user whose topic everyone joins
 *                      ("bench-fanout")
 *   --drain-s T        fanout: wait at most T s after the last publish
 *                      for deliveries (10)
 *   --src-ips K        spread client sockets over source addresses
 *                      127.0.0.1 .. 127.0.0.K (1): each source address has
 *                      its own ephemeral port range. With one address and
 *                      thousands of connections to one port, every
 *                      connect() searches the ephemeral range for a free
 *                      port (~200 us of kernel time at 15,000 open, and
 *                      the loadgen becomes the bottleneck); 16 is plenty
 *   --timeout-s T      give up after T s in all (180)
 *
 * Scenarios
 *   idle    N connections, each with its own user (bench-<i>), each joined
 *           to its own user:<id> topic. Reports the connect+join rate, the
 *           time to set up one connection (p50/p99/max) and, with
 *           --server-pid, the growth of the server's resident memory per
 *           connection (VmRSS of /proc/<pid>/status, before the first
 *           connection and --settle-ms after the last join).
 *   fanout  N subscribers — N connections of the same user joined to
 *           user:<U> (room viewers: rooms_bench --scenario viewers) —
 *           and a publisher sending M messages of S bytes at R per
 *           second through POST /api/users/<U>/notify (event "bench",
 *           payload {"seq", "t", "pad"}; t is CLOCK_MONOTONIC in ns, the
 *           same clock as the receivers'). Reports deliveries/s, latency
 *           from the publish to each delivery (p50/p99/max) and losses.
 *
 * Output: a table, then one line
 *   RESULT {"workloads": {"endpoint_<scenario>": {"<metric>": {"median": v, "runs": [v]}}}}
 * in the shape of the runtime benchmarks' RESULT (one run). Times in us
 * come from a log-linear histogram (pc_hist_t, ~1.6 % resolution);
 * message and phase times are taken when epoll_wait returned the event.
 *
 * Every loop is bounded (by --conns, --messages and the deadlines); the
 * program stops by itself. Exit status 0 when every connection joined and
 * (fanout) nothing was lost, 1 otherwise, 2 on bad usage. Run with no
 * argument at all it prints its usage and exits 0.
 */
#include "phx_client.h"

/* ---- Options ------------------------------------------------------------ */

typedef enum { SC_IDLE, SC_FANOUT, SC_COUNT } scenario_t;
static const char *const scenario_names[] = {"idle", "fanout"};

static struct {
    scenario_t scenario;
    pc_server_t srv;
    int conns;
    int concurrency;
    long rss_cold_kib;
    int settle_ms;
    int hold_s;
    long messages;
    int size;
    double rate;
    int publishers;
    const char *user;
    int drain_s;
    int src_ips;
    int timeout_s;
} opt = {
    .scenario = SC_IDLE,
    .srv = {.host = "127.0.0.1"},
    .conns = -1,
    .rss_cold_kib = -1,
    .concurrency = 256,
    .settle_ms = 1000,
    .messages = 1000,
    .size = 256,
    .rate = 200,
    .publishers = 4,
    .user = "bench-fanout",
    .drain_s = 10,
    .src_ips = 1,
    .timeout_s = 180,
};

static pc_loop_t L;

/* ---- Subscribers and publishers ------------------------------------------- */

typedef enum {
    S_NEW = 0, /* not started */
    S_SETUP,   /* TCP connect and WebSocket upgrade */
    S_JOINING, /* phx_join sent */
    S_JOINED,
    S_CLOSED,  /* closed, failed or not */
} sub_state_t;

/* An idle connection or a fanout subscriber. */
typedef struct sub {
    pc_conn_t *c;       /* NULL before the start and once closed (the loop frees it) */
    sub_state_t state;
    char *token;        /* minted before the clock starts; owned */
    uint64_t t_last_hb;
    uint64_t received;  /* fanout: messages received */
    int64_t next_seq;   /* fanout: next seq expected */
    uint8_t *seen;      /* fanout: one bit per seq; owned */
} sub_t;

/* A keep-alive HTTP connection publishing, one request at a time. */
typedef struct pub {
    pc_conn_t *c;       /* watched: NULL once freed */
    bool busy;          /* a request is outstanding */
    uint64_t t_sent;
} pub_t;

static sub_t *subs;         /* opt.conns */
static pub_t *pubs;         /* opt.publishers */
static pc_window_t setup;   /* at most --concurrency connecting, upgrading or joining */

static struct {
    int started, joined, failed;
    int refused_http;       /* upgrade answered with something else than 101 */
    int join_errors;
    int closed_3008;        /* joined, then closed by the server as a slow consumer */
    pc_hist_t setup;        /* connect -> join reply, us */
    pc_hist_t ph_connect;   /* connect() -> writable (TCP handshake done), us */
    pc_hist_t ph_upgrade;   /* upgrade request written -> 101 parsed, us */
    pc_hist_t ph_join;      /* phx_join sent -> its reply, us */
    uint64_t t_first_start, t_last_join;
    /* fanout */
    pc_hist_t lat;          /* publish -> delivery, us */
    pc_hist_t pub_rtt;      /* notify request -> its response, us */
    uint64_t deliveries;
    uint64_t t_last_delivery;
    long published, pub_acked, pub_errors;
    uint64_t reorders;
    uint64_t dups;
} st;

/* Microseconds from a to b (0 if b is earlier: the clocks are taken at
 * different places). */
static uint64_t us_between(uint64_t a, uint64_t b)
{
    return b > a ? (b - a) / 1000 : 0;
}

static const char *user_of(long i, char *buf, size_t len)
{
    if (opt.scenario == SC_FANOUT)
        return opt.user;
    snprintf(buf, len, "bench-%ld", i);
    return buf;
}

static bool starts(const char *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len >= n && memcmp(p, s, n) == 0;
}

static void sub_text(pc_conn_t *c, const char *s, size_t len)
{
    sub_t *sb = &subs[c->idx];
    uint64_t now = L.now;
    if (sb->state == S_JOINING) {
        /* ["1","1","user:..","phx_reply",{"status":"ok",...}] */
        if (starts(s, len, "[\"1\",\"1\",") && memmem(s, len, "\"phx_reply\"", 11)) {
            if (memmem(s, len, "\"status\":\"ok\"", 13)) {
                sb->state = S_JOINED;
                sb->t_last_hb = now;
                pc_window_done(&setup);
                st.joined++;
                st.t_last_join = now;
                pc_hist_add(&st.setup, us_between(c->t_start, now));
                pc_hist_add(&st.ph_join, us_between(c->t_open, now));
            } else {
                st.join_errors++;
                if (st.join_errors <= 3)
                    fprintf(stderr, "loadgen: join refused: %.*s\n", (int)(len > 300 ? 300 : len), s);
                pc_ws_close(c, 1000); /* sub_event counts it failed */
            }
        }
        return;
    }
    if (sb->state != S_JOINED)
        return;
    /* [null,null,"user:U","bench",{"seq":N,"t":T,...}] or with a join_ref */
    const char *ev = memmem(s, len, "\"bench\",{", 9);
    if (!ev)
        return;
    size_t rest = len - (size_t)(ev - s);
    uint64_t seq = 0, t = 0;
    if (!pc_find_u64(ev, rest, "\"seq\":", &seq) || !pc_find_u64(ev, rest, "\"t\":", &t))
        return;
    if ((int64_t)seq != sb->next_seq)
        st.reorders++;
    sb->next_seq = (int64_t)seq + 1;
    if (sb->seen && seq < (uint64_t)opt.messages) {
        uint8_t bit = (uint8_t)(1u << (seq & 7));
        if (sb->seen[seq >> 3] & bit) {
            st.dups++;
            return;
        }
        sb->seen[seq >> 3] |= bit;
    }
    sb->received++;
    st.deliveries++;
    st.t_last_delivery = now;
    pc_hist_add(&st.lat, us_between(t, now));
}

static void sub_event(pc_conn_t *c, pc_event_t ev)
{
    sub_t *sb = &subs[c->idx];
    if (ev == PC_EV_OPEN) {
        /* Where the setup time goes, in phases (see run_idle). */
        pc_hist_add(&st.ph_connect, us_between(c->t_start, c->t_connected));
        pc_hist_add(&st.ph_upgrade, us_between(c->t_connected, c->t_open));
        char ub[64], topic[96];
        snprintf(topic, sizeof topic, "user:%s", user_of(c->idx, ub, sizeof ub));
        pc_phx_send(c, "1", "1", topic, "phx_join", "{}");
        sb->state = S_JOINING;
        return;
    }
    sb->c = NULL; /* freed by the loop after this callback */
    if (sb->state == S_JOINED) {
        if (c->close_code == 3008)
            st.closed_3008++;
    } else if (sb->state == S_SETUP || sb->state == S_JOINING) {
        /* closed while connecting, upgrading or joining */
        st.failed++;
        pc_window_done(&setup);
        if (c->close_code < 0 && ++st.refused_http <= 3)
            fprintf(stderr, "loadgen: upgrade refused: HTTP %d\n", -c->close_code);
    }
    sb->state = S_CLOSED;
}

static void sub_start(long i)
{
    sub_t *sb = &subs[i];
    if (st.started == 0)
        st.t_first_start = pc_now_ns();
    st.started++;
    sb->state = S_SETUP;
    sb->c = pc_ws_connect(&L, sb->token, sub_text, sub_event, NULL, i);
}

static void pub_answer(pc_conn_t *c, void *ctx, int status, const char *body, size_t len)
{
    pub_t *p = ctx;
    p->busy = false;
    if (status < 0) {
        st.pub_errors++; /* the connection dropped: the request in flight is lost */
        return;
    }
    if (status >= 200 && status < 300) {
        st.pub_acked++;
    } else {
        st.pub_errors++;
        if (st.pub_errors <= 3)
            fprintf(stderr, "loadgen: notify answered %d: %.*s\n", status, (int)len, body);
    }
    pc_hist_add(&st.pub_rtt, us_between(p->t_sent, L.now));
}

/* ---- The loop ---------------------------------------------------------------- */

/* One pass: wait for events at most wait_ms, handle them, open new
 * connections while fewer than --concurrency are being set up, send
 * heartbeats (every 30 s per connection, a bounded slice per pass). */
static void pump(int wait_ms)
{
    pc_loop_run(&L, wait_ms);
    long i;
    while (pc_window_next(&setup, &i))
        sub_start(i);

    static long hb_idx;
    const uint64_t hb_every = 30ull * 1000000000u;
    for (int k = 0; k < 256 && opt.conns > 0; k++) {
        sub_t *sb = &subs[hb_idx];
        hb_idx = (hb_idx + 1) % opt.conns;
        if (sb->state == S_JOINED && L.now - sb->t_last_hb > hb_every) {
            sb->t_last_hb = L.now;
            pc_phx_heartbeat(sb->c);
        }
    }
}

static int setup_all(const char *what)
{
    while (st.joined + st.failed < opt.conns) {
        if (pc_loop_expired(&L)) {
            fprintf(stderr, "loadgen: %s: gave up with %d of %d joined (%d failed)\n", what,
                    st.joined, opt.conns, st.failed);
            return -1;
        }
        pump(10);
    }
    return 0;
}

static void serve_for(int ms)
{
    uint64_t end = pc_now_ns() + (uint64_t)ms * 1000000u;
    for (;;) {
        uint64_t now = pc_now_ns();
        if (now >= end || pc_loop_expired(&L))
            return;
        int left = (int)((end - now) / 1000000u);
        pump(left < 10 ? (left < 1 ? 1 : left) : 10);
    }
}

/* After the report: a close frame for the joined, then everything freed. */
static void close_all(void)
{
    for (int i = 0; i < opt.conns; i++) {
        sub_t *sb = &subs[i];
        sb->state = S_CLOSED; /* counted already: sub_event counts nothing more */
        if (sb->c)
            pc_ws_close(sb->c, 1000);
        free(sb->token);
        free(sb->seen);
    }
    for (int i = 0; i < opt.publishers; i++)
        if (!pc_conn_gone(pubs[i].c))
            pc_conn_close(pubs[i].c, 1000);
    pc_loop_run(&L, 0);
}

/* ---- Scenarios ------------------------------------------------------------------ */

static void report(const char *scenario, const pc_metric_t *m, int n)
{
    char workload[64], title[64];
    snprintf(workload, sizeof workload, "endpoint_%s", scenario);
    snprintf(title, sizeof title, "endpoint %s", scenario);
    pc_report(workload, title, m, n);
}

static int run_idle(void)
{
    long rss0 = pc_vmrss_kib(opt.srv.pid);
    int rc = setup_all("idle");
    double setup_s = st.t_last_join > st.t_first_start ? pc_secs(st.t_last_join - st.t_first_start) : 0;
    serve_for(opt.settle_ms);
    long rss1 = pc_vmrss_kib(opt.srv.pid);
    if (opt.hold_s > 0)
        serve_for(opt.hold_s * 1000);
    int still = 0;
    for (int i = 0; i < opt.conns; i++)
        still += subs[i].state == S_JOINED;

    pc_metric_t m[24];
    int k = 0;
    m[k++] = (pc_metric_t){ "conns", opt.conns, "%.0f" };
    m[k++] = (pc_metric_t){ "joined", st.joined, "%.0f" };
    m[k++] = (pc_metric_t){ "failed", st.failed, "%.0f" };
    m[k++] = (pc_metric_t){ "join_errors", st.join_errors, "%.0f" };
    m[k++] = (pc_metric_t){ "upgrade_refused", st.refused_http, "%.0f" };
    m[k++] = (pc_metric_t){ "open_at_end", still, "%.0f" };
    m[k++] = (pc_metric_t){ "ms_setup_all", setup_s * 1000, "%.1f" };
    m[k++] = (pc_metric_t){ "conn_join_per_s", setup_s > 0 ? st.joined / setup_s : 0, "%.0f" };
    m[k++] = (pc_metric_t){ "us_setup_p50", (double)pc_hist_pct(&st.setup, 50), "%.0f" };
    m[k++] = (pc_metric_t){ "us_setup_p99", (double)pc_hist_pct(&st.setup, 99), "%.0f" };
    m[k++] = (pc_metric_t){ "us_setup_max", (double)st.setup.max, "%.0f" };
    /* Where the setup time goes: TCP handshake (the kernel and the
     * server's accept), the upgrade (HTTP parse, token check, 101), the
     * join (decode, presence, reply). */
    m[k++] = (pc_metric_t){ "us_connect_p50", (double)pc_hist_pct(&st.ph_connect, 50), "%.0f" };
    m[k++] = (pc_metric_t){ "us_connect_p99", (double)pc_hist_pct(&st.ph_connect, 99), "%.0f" };
    m[k++] = (pc_metric_t){ "us_upgrade_p50", (double)pc_hist_pct(&st.ph_upgrade, 50), "%.0f" };
    m[k++] = (pc_metric_t){ "us_upgrade_p99", (double)pc_hist_pct(&st.ph_upgrade, 99), "%.0f" };
    m[k++] = (pc_metric_t){ "us_join_p50", (double)pc_hist_pct(&st.ph_join, 50), "%.0f" };
    m[k++] = (pc_metric_t){ "us_join_p99", (double)pc_hist_pct(&st.ph_join, 99), "%.0f" };
    if (rss0 >= 0 && rss1 >= 0) {
        m[k++] = (pc_metric_t){ "kib_server_rss_before", rss0, "%.0f" };
        m[k++] = (pc_metric_t){ "kib_server_rss_after", rss1, "%.0f" };
        m[k++] = (pc_metric_t){ "bytes_server_rss_per_conn",
                                st.joined ? (double)(rss1 - rss0) * 1024.0 / st.joined : 0, "%.0f" };
        /* From a server that never had a connection: includes what the
         * first connections cost once (library code paged in, thread
         * arenas, pools), which the warm figure above leaves out. */
        if (opt.rss_cold_kib > 0) {
            m[k++] = (pc_metric_t){ "kib_server_rss_cold", (double)opt.rss_cold_kib, "%.0f" };
            m[k++] = (pc_metric_t){ "bytes_server_rss_per_conn_cold",
                                    st.joined ? (double)(rss1 - opt.rss_cold_kib) * 1024.0 / st.joined
                                              : 0,
                                    "%.0f" };
        }
    }
    report("idle", m, k);
    close_all();
    return rc == 0 && st.joined == opt.conns && still == opt.conns ? 0 : 1;
}

/* The notify body: {"event":"bench","payload":{"seq":..,"t":..,"pad":".."}}
 * with the payload object padded to --size bytes; t is the send time.
 * Returns a buffer reused by the next call. */
static const char *notify_body(long seq)
{
    static char *body;
    static size_t body_cap;
    size_t need = (size_t)opt.size + 256;
    if (body_cap < need) {
        free(body);
        body = pc_xcalloc(1, need);
        body_cap = need;
    }
    int n = snprintf(body, body_cap, "{\"event\":\"bench\",\"payload\":{\"seq\":%ld,\"t\":%" PRIu64 ",\"pad\":\"",
                     seq, pc_now_ns());
    int payload_so_far = n - (int)strlen("{\"event\":\"bench\",\"payload\":");
    int pad = opt.size - payload_so_far - 2;
    if (pad < 0)
        pad = 0;
    memset(body + n, 'x', (size_t)pad);
    n += pad;
    snprintf(body + n, body_cap - (size_t)n, "\"}}");
    return body;
}

static int run_fanout(void)
{
    long rss0 = pc_vmrss_kib(opt.srv.pid);
    int rc = setup_all("fanout subscribers");
    double setup_s = st.t_last_join > st.t_first_start ? pc_secs(st.t_last_join - st.t_first_start) : 0;
    serve_for(opt.settle_ms); /* presence traffic of the joins settles */
    long rss1 = pc_vmrss_kib(opt.srv.pid);
    int nsubs = st.joined;
    for (int i = 0; i < opt.conns; i++) {
        subs[i].received = 0;
        subs[i].next_seq = 0;
        subs[i].seen = pc_xcalloc((size_t)opt.messages / 8 + 1, 1);
    }

    /* Publish M messages at R/s over P keep-alive connections, at most one
     * request outstanding on each. */
    char path[512];
    snprintf(path, sizeof path, "/api/users/%s/notify", opt.user);
    uint64_t t0 = pc_now_ns();
    const double interval_ns = 1e9 / opt.rate;
    long seq = 0;
    int reconnects = 0;
    while ((seq < opt.messages || st.pub_acked + st.pub_errors < seq) && !pc_loop_expired(&L)) {
        uint64_t now = pc_now_ns();
        for (int i = 0; i < opt.publishers && seq < opt.messages; i++) {
            pub_t *p = &pubs[i];
            if (pc_conn_gone(p->c) && reconnects < opt.publishers * 8) {
                reconnects++;
                p->c = pc_http_connect(&L);
                pc_conn_watch(p->c, &p->c);
                continue;
            }
            if (pc_conn_gone(p->c) || p->c->state != PC_OPEN || p->busy)
                continue;
            uint64_t due = t0 + (uint64_t)(seq * interval_ns);
            if (now < due)
                break;
            const char *body = notify_body(seq);
            p->busy = true;
            p->t_sent = pc_now_ns();
            pc_http_request(p->c, "POST", path, opt.srv.api_key, body, pub_answer, p);
            seq++;
            st.published++;
        }
        uint64_t due = t0 + (uint64_t)(seq * interval_ns);
        int wait = 10;
        if (seq < opt.messages && due > now) {
            uint64_t d = (due - now) / 1000000u;
            wait = d < 10 ? (int)d : 10;
        } else if (seq < opt.messages) {
            wait = 0;
        }
        pump(wait);
        if (reconnects >= opt.publishers * 8 && st.published == 0)
            break;
    }
    uint64_t t_pub_end = pc_now_ns();

    /* Drain: every subscriber still open should get every message. */
    uint64_t drain_end = t_pub_end + (uint64_t)opt.drain_s * 1000000000u;
    for (;;) {
        bool done = true;
        for (int i = 0; i < opt.conns && done; i++)
            if (subs[i].state == S_JOINED && subs[i].received < (uint64_t)st.published)
                done = false;
        if (done || pc_now_ns() >= drain_end || pc_loop_expired(&L))
            break;
        pump(10);
    }

    int open_subs = 0;
    uint64_t lost = 0;
    for (int i = 0; i < opt.conns; i++) {
        sub_state_t s = subs[i].state;
        if (s == S_JOINED)
            open_subs++;
        if (subs[i].received < (uint64_t)st.published && (s == S_JOINED || s == S_CLOSED))
            lost += (uint64_t)st.published - subs[i].received;
    }
    long rss2 = pc_vmrss_kib(opt.srv.pid);
    double pub_s = pc_secs(t_pub_end - t0);
    double span = st.t_last_delivery > t0 ? pc_secs(st.t_last_delivery - t0) : 0;

    pc_metric_t m[24];
    int k = 0;
    m[k++] = (pc_metric_t){ "subscribers", nsubs, "%.0f" };
    m[k++] = (pc_metric_t){ "conn_join_per_s", setup_s > 0 ? nsubs / setup_s : 0, "%.0f" };
    m[k++] = (pc_metric_t){ "messages", (double)st.published, "%.0f" };
    m[k++] = (pc_metric_t){ "bytes_payload", opt.size, "%.0f" };
    m[k++] = (pc_metric_t){ "msgs_target_per_s", opt.rate, "%.0f" };
    m[k++] = (pc_metric_t){ "msgs_per_s", pub_s > 0 ? st.published / pub_s : 0, "%.0f" };
    m[k++] = (pc_metric_t){ "publish_errors", (double)st.pub_errors, "%.0f" };
    m[k++] = (pc_metric_t){ "us_publish_p50", (double)pc_hist_pct(&st.pub_rtt, 50), "%.0f" };
    m[k++] = (pc_metric_t){ "us_publish_p99", (double)pc_hist_pct(&st.pub_rtt, 99), "%.0f" };
    m[k++] = (pc_metric_t){ "deliveries", (double)st.deliveries, "%.0f" };
    m[k++] = (pc_metric_t){ "deliveries_per_s", span > 0 ? st.deliveries / span : 0, "%.0f" };
    m[k++] = (pc_metric_t){ "us_latency_p50", (double)pc_hist_pct(&st.lat, 50), "%.0f" };
    m[k++] = (pc_metric_t){ "us_latency_p99", (double)pc_hist_pct(&st.lat, 99), "%.0f" };
    m[k++] = (pc_metric_t){ "us_latency_max", (double)st.lat.max, "%.0f" };
    m[k++] = (pc_metric_t){ "lost", (double)lost, "%.0f" };
    m[k++] = (pc_metric_t){ "duplicates", (double)st.dups, "%.0f" };
    m[k++] = (pc_metric_t){ "out_of_order", (double)st.reorders, "%.0f" };
    m[k++] = (pc_metric_t){ "subscribers_closed", nsubs - open_subs, "%.0f" };
    m[k++] = (pc_metric_t){ "closed_3008", st.closed_3008, "%.0f" };
    if (rss0 >= 0 && rss1 >= 0 && rss2 >= 0) {
        m[k++] = (pc_metric_t){ "kib_server_rss_before", rss0, "%.0f" };
        m[k++] = (pc_metric_t){ "kib_server_rss_joined", rss1, "%.0f" };
        m[k++] = (pc_metric_t){ "kib_server_rss_after", rss2, "%.0f" };
    }
    report("fanout", m, k);
    close_all();
    return rc == 0 && lost == 0 && st.dups == 0 && st.pub_errors == 0 &&
                   st.published == opt.messages ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --scenario idle|fanout --port P --secret S [--api-key K]\n"
            "               [--host H] [--conns N] [--concurrency C] [--server-pid PID]\n"
            "               [--settle-ms T] [--hold-s T] [--messages M] [--size S]\n"
            "               [--rate R] [--publishers P] [--user U] [--drain-s T]\n"
            "               [--src-ips K] [--timeout-s T] [--rss-cold-kib K]\n");
}

int main(int argc, char **argv)
{
    if (pc_bare_run(argc, usage, "scripts/bench-endpoint.sh starts a server and runs both scenarios"))
        return 0;
    const char *scenario = scenario_names[SC_IDLE];
    const pc_opt_t opts[] = {
        PC_SERVER_OPTS(&opt.srv),
        {"scenario", PC_OPT_STR, &scenario, NULL},
        {"conns", PC_OPT_INT, &opt.conns, NULL},
        {"concurrency", PC_OPT_INT, &opt.concurrency, NULL},
        {"settle-ms", PC_OPT_INT, &opt.settle_ms, NULL},
        {"hold-s", PC_OPT_INT, &opt.hold_s, NULL},
        {"messages", PC_OPT_LONG, &opt.messages, NULL},
        {"size", PC_OPT_INT, &opt.size, NULL},
        {"rate", PC_OPT_DOUBLE, &opt.rate, NULL},
        {"publishers", PC_OPT_INT, &opt.publishers, NULL},
        {"user", PC_OPT_STR, &opt.user, NULL},
        {"drain-s", PC_OPT_INT, &opt.drain_s, NULL},
        {"src-ips", PC_OPT_INT, &opt.src_ips, NULL},
        {"timeout-s", PC_OPT_INT, &opt.timeout_s, NULL},
        {"rss-cold-kib", PC_OPT_LONG, &opt.rss_cold_kib, NULL},
    };
    int rc = pc_opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), usage);
    if (rc != 0)
        return rc;
    int sc = pc_pick(scenario, scenario_names, SC_COUNT);
    if (sc < 0) {
        usage(stderr);
        return 2;
    }
    opt.scenario = (scenario_t)sc;
    if (opt.srv.port <= 0 || !opt.srv.secret || (opt.scenario == SC_FANOUT && !opt.srv.api_key)) {
        usage(stderr);
        return 2;
    }
    if (opt.conns < 0)
        opt.conns = opt.scenario == SC_IDLE ? 1000 : 100;
    if (opt.concurrency < 1 || opt.publishers < 1 || opt.rate <= 0 || opt.size < 64 ||
        opt.messages < 0 || opt.src_ips < 1 || opt.src_ips > 250) {
        fprintf(stderr, "loadgen: bad option value (size >= 64, rate > 0, ...)\n");
        return 2;
    }

    /* File descriptors: all connections plus a few, under the hard limit. */
    rlim_t nofile = pc_process_init();
    if ((rlim_t)opt.conns + (rlim_t)opt.publishers + 32 > nofile) {
        fprintf(stderr, "loadgen: --conns %d needs more than the %lu open files allowed\n",
                opt.conns, (unsigned long)nofile);
        return 2;
    }
    rc = pc_loop_init(&L, opt.srv.host, opt.srv.port);
    if (rc == -2) {
        fprintf(stderr, "loadgen: bad --host %s\n", opt.srv.host);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "loadgen: epoll_create1: %s\n", strerror(errno));
        return 1;
    }
    pc_loop_src_ips(&L, opt.src_ips);
    subs = pc_xcalloc((size_t)opt.conns, sizeof *subs);
    pubs = pc_xcalloc((size_t)opt.publishers, sizeof *pubs);
    setup = (pc_window_t){.n = opt.conns, .limit = opt.concurrency};
    /* Tokens are minted before the clock starts. */
    for (int i = 0; i < opt.conns; i++) {
        char ub[64];
        subs[i].token = pc_mint(opt.srv.secret, user_of(i, ub, sizeof ub), "*", 3600);
    }
    pc_loop_timeout(&L, opt.timeout_s);

    rc = opt.scenario == SC_IDLE ? run_idle() : run_fanout();
    free(subs);
    free(pubs);
    pc_loop_free(&L);
    return rc;
}
