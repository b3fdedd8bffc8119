/*
 * loadgen.c — a load generator for roost's WebSocket endpoint: many
 * Phoenix (V2) clients over plain TCP, one epoll loop, no threads.
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
 *   fanout  N subscribers — today N connections of the same user joined
 *           to user:<U>, the only topic there is; room viewers once rooms
 *           exist — and a publisher sending M messages of S bytes at R per
 *           second through POST /api/users/<U>/notify (event "bench",
 *           payload {"seq", "t", "pad"}; t is CLOCK_MONOTONIC in ns, the
 *           same clock as the receivers'). Reports deliveries/s, latency
 *           from the publish to each delivery (p50/p99/max) and losses.
 *
 * Output: a table, then one line
 *   RESULT {"workloads": {"endpoint_<scenario>": {"<metric>": {"median": v, "runs": [v]}}}}
 * in the shape of the runtime benchmarks' RESULT (one run).
 *
 * Every loop is bounded (by --conns, --messages and the deadlines); the
 * program stops by itself. Exit status 0 when every connection joined and
 * (fanout) nothing was lost, 1 otherwise, 2 on bad usage. Run with no
 * argument at all it prints its usage and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "web/jwt.h"

/* ---- Options ------------------------------------------------------------ */

typedef enum { SC_IDLE, SC_FANOUT } scenario_t;

static struct {
    scenario_t scenario;
    const char *host;
    int port;
    const char *secret;
    const char *api_key;
    int conns;
    int concurrency;
    long server_pid;
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
    .host = "127.0.0.1",
    .port = 0,
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

/* ---- Time ---------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Latency histogram: log-linear, ~1.6 % resolution, values in us ------ */

#define HIST_LINEAR 128
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_LINEAR + 58 * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint32_t b[HIST_BUCKETS];
} hist_t;

static int hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int sub = (int)((v >> (msb - 6)) & (HIST_SUB - 1));
    int i = HIST_LINEAR + (msb - 7) * HIST_SUB + sub;
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

static uint64_t hist_value(int i)
{
    if (i < HIST_LINEAR)
        return (uint64_t)i;
    int k = i - HIST_LINEAR;
    int msb = k / HIST_SUB + 7;
    uint64_t sub = (uint64_t)(k % HIST_SUB);
    uint64_t lo = (1ull << msb) | (sub << (msb - 6));
    return lo + (1ull << (msb - 6)) / 2; /* middle of the bucket */
}

static void hist_add(hist_t *h, uint64_t v)
{
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
    h->b[hist_index(v)]++;
}

static uint64_t hist_pct(const hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want) {
            uint64_t v = hist_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- Connections --------------------------------------------------------- */

enum {
    ST_FREE = 0,
    ST_CONNECTING, /* TCP connect in progress */
    ST_UPGRADING,  /* request sent, waiting for 101 */
    ST_JOINING,    /* phx_join sent */
    ST_JOINED,
    ST_HTTP,       /* publisher: keep-alive HTTP connection */
    ST_CLOSED,
};

typedef struct conn {
    int fd;
    int state;
    int idx;
    bool publisher;
    bool want_out;     /* EPOLLOUT registered */
    bool busy;         /* publisher: a request is outstanding */
    uint64_t t_start;  /* connect started; publisher: request sent */
    uint64_t t_phase;  /* idle/fanout: when the current phase began */
    uint64_t t_last_hb;
    uint64_t received; /* fanout: messages received */
    int64_t next_seq;  /* fanout: next seq expected */
    uint8_t *seen;     /* fanout: one bit per seq */
    uint64_t dups;
    int close_code;    /* from the server's close frame, 1006 if none */
    char *out;         /* bytes not yet written */
    size_t out_len, out_off, out_cap;
    uint8_t *in;       /* bytes read but not yet a whole frame/response */
    size_t in_len, in_cap;
    char *token;
} conn_t;

static conn_t *conns;      /* subscribers/idle connections, opt.conns */
static conn_t *pubs;       /* publishers */
static int epfd = -1;
static uint8_t rbuf[1 << 16];
static uint32_t rng = 0x9e3779b9u;

static struct {
    int started, connecting, upgraded, joined, failed, closed_after_join;
    int refused_http;       /* upgrade answered with something else than 101 */
    int join_errors;
    uint64_t frames_in, bytes_in;
    hist_t setup;           /* connect -> join reply, us */
    hist_t ph_connect;      /* connect() -> writable (TCP handshake done), us */
    hist_t ph_upgrade;      /* upgrade request written -> 101 parsed, us */
    hist_t ph_join;         /* phx_join sent -> its reply, us */
    uint64_t t_first_start, t_last_join;
    int close_codes[8];     /* 1000,1001,1006,1007,1009,1012,3008,other */
    /* fanout */
    hist_t lat;             /* publish -> delivery, us */
    hist_t pub_rtt;         /* notify request -> its response, us */
    uint64_t deliveries;
    uint64_t t_first_pub, t_last_pub_done, t_last_delivery;
    long published, pub_acked, pub_errors;
    uint64_t reorders;
    uint64_t dups;
    uint64_t other_msgs;
} st;

static uint32_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void ep_update(conn_t *c)
{
    struct epoll_event ev = { .events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl mod");
}

static void count_close(int code)
{
    static const int codes[] = { 1000, 1001, 1006, 1007, 1009, 1012, 3008 };
    for (int i = 0; i < 7; i++)
        if (codes[i] == code) {
            st.close_codes[i]++;
            return;
        }
    st.close_codes[7]++;
}

static void conn_close(conn_t *c, int code)
{
    if (c->fd < 0)
        return;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    if (c->state == ST_JOINED && !c->publisher) {
        st.closed_after_join++;
        count_close(code);
    } else if (!c->publisher && c->state != ST_CLOSED) {
        st.failed++;    /* closed while connecting, upgrading or joining */
        st.connecting--;
    }
    if (c->publisher && c->busy)
        st.pub_errors++; /* the request in flight is lost */
    c->close_code = code;
    c->state = c->publisher ? ST_FREE : ST_CLOSED;
    c->busy = false;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = c->out_cap = 0;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

/* Writes what is pending; keeps EPOLLOUT registered while something is. */
static void conn_flush(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        conn_close(c, 1006);
        return;
    }
    bool pending = c->out_off < c->out_len;
    if (!pending)
        c->out_len = c->out_off = 0;
    if (pending != c->want_out) {
        c->want_out = pending;
        ep_update(c);
    }
}

static void conn_send(conn_t *c, const void *data, size_t len)
{
    if (c->fd < 0)
        return;
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 512;
        while (cap < c->out_len + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p)
            die("realloc");
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    if (c->state != ST_CONNECTING)
        conn_flush(c);
}

/* A masked client frame. */
static void ws_send(conn_t *c, int opcode, const void *payload, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t key = xorshift();
    uint8_t k[4];
    memcpy(k, &key, 4);
    memcpy(hdr + h, k, 4);
    h += 4;
    uint8_t stackbuf[512];
    uint8_t *m = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!m)
        die("malloc");
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        m[i] = p[i] ^ k[i & 3];
    conn_send(c, hdr, h);
    conn_send(c, m, len);
    if (m != stackbuf)
        free(m);
}

static void ws_text(conn_t *c, const char *s)
{
    ws_send(c, 0x1, s, strlen(s));
}

static char *mint(const char *sub)
{
    json_t *claims = json_pack("{s:s, s:s, s:I}", "sub", sub, "room", "*", "exp",
                               (json_int_t)time(NULL) + 3600);
    char *tok = NULL;
    if (!claims || jwt_sign(opt.secret, strlen(opt.secret), claims, &tok) != 0) {
        fprintf(stderr, "loadgen: cannot sign a token\n");
        exit(1);
    }
    json_decref(claims);
    return tok;
}

static const char *user_of(const conn_t *c, char *buf, size_t len)
{
    if (opt.scenario == SC_FANOUT)
        return opt.user;
    snprintf(buf, len, "bench-%d", c->idx);
    return buf;
}

static void conn_start(conn_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.src_ips > 1) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(c->idx % opt.src_ips));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
            die("bind");
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port) };
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad --host %s\n", opt.host);
        exit(2);
    }
    c->fd = fd;
    c->t_start = now_ns();
    c->state = ST_CONNECTING;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        if (!c->publisher)
            st.connecting++;
        conn_close(c, 1006);
        return;
    }
    char req[4096];
    int n;
    if (c->publisher) {
        c->state = ST_CONNECTING;
        c->want_out = true;
        n = 0;
    } else {
        st.connecting++;
        char ub[64];
        const char *user = user_of(c, ub, sizeof ub);
        if (!c->token)
            c->token = mint(user);
        n = snprintf(req, sizeof req,
                     "GET /socket/websocket?vsn=2.0.0&token=%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     c->token, opt.host, opt.port);
        conn_send(c, req, (size_t)n); /* queued: the state is ST_CONNECTING */
        /* On loopback the handshake has usually completed by the time
         * connect() returns (the listener's half runs inside the call):
         * then the request goes out now and the socket only ever waits
         * for input, which saves an epoll round, a getsockopt and an
         * epoll_ctl per connection. A socket still connecting answers
         * EAGAIN, and waits for EPOLLOUT as before. */
        ssize_t w = write(fd, c->out, c->out_len);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN) {
            conn_close(c, 1006);
            return;
        }
        if (w >= 0) {
            uint64_t now = now_ns();
            hist_add(&st.ph_connect, (now - c->t_start) / 1000);
            c->t_phase = now;
            c->state = ST_UPGRADING;
            c->out_off = (size_t)w;
            if (c->out_off == c->out_len)
                c->out_len = c->out_off = 0;
        }
        c->want_out = c->state == ST_CONNECTING || c->out_len > 0;
    }
    struct epoll_event ev = { .events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl add");
}

static void send_join(conn_t *c)
{
    char ub[64], msg[256];
    snprintf(msg, sizeof msg, "[\"1\",\"1\",\"user:%s\",\"phx_join\",{}]", user_of(c, ub, sizeof ub));
    ws_text(c, msg);
    c->state = ST_JOINING;
}

static bool starts(const uint8_t *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len >= n && memcmp(p, s, n) == 0;
}

/* The value of the integer member "name": in a compact JSON text. */
static bool find_int(const char *p, size_t len, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    const char *end = p + len;
    for (const char *q = p; q + kl < end; q++) {
        q = memchr(q, key[0], (size_t)(end - q - (ptrdiff_t)kl));
        if (!q)
            return false;
        if (memcmp(q, key, kl) == 0) {
            uint64_t v = 0;
            const char *d = q + kl;
            if (d >= end || *d < '0' || *d > '9')
                continue;
            while (d < end && *d >= '0' && *d <= '9')
                v = v * 10 + (uint64_t)(*d++ - '0');
            *out = v;
            return true;
        }
    }
    return false;
}

static void on_text(conn_t *c, const uint8_t *p, size_t len, uint64_t now)
{
    const char *s = (const char *)p;
    if (c->state == ST_JOINING) {
        /* ["1","1","user:..","phx_reply",{"status":"ok",...}] */
        if (starts(p, len, "[\"1\",\"1\",") && memmem(s, len, "\"phx_reply\"", 11)) {
            if (memmem(s, len, "\"status\":\"ok\"", 13)) {
                c->state = ST_JOINED;
                c->t_last_hb = now;
                st.connecting--;
                st.joined++;
                st.t_last_join = now;
                hist_add(&st.setup, (now - c->t_start) / 1000);
                hist_add(&st.ph_join, (now - c->t_phase) / 1000);
            } else {
                st.join_errors++;
                if (st.join_errors <= 3)
                    fprintf(stderr, "loadgen: join refused: %.*s\n", (int)(len > 300 ? 300 : len), s);
                conn_close(c, 1000);
            }
        }
        return;
    }
    if (c->state != ST_JOINED)
        return;
    /* [null,null,"user:U","bench",{"seq":N,"t":T,...}] or with a join_ref */
    const char *ev = memmem(s, len, "\"bench\",{", 9);
    if (!ev) {
        st.other_msgs++;
        return;
    }
    size_t rest = len - (size_t)(ev - s);
    uint64_t seq = 0, t = 0;
    if (!find_int(ev, rest, "\"seq\":", &seq) || !find_int(ev, rest, "\"t\":", &t)) {
        st.other_msgs++;
        return;
    }
    if ((int64_t)seq != c->next_seq)
        st.reorders++;
    c->next_seq = (int64_t)seq + 1;
    if (c->seen && seq < (uint64_t)opt.messages) {
        uint8_t bit = (uint8_t)(1u << (seq & 7));
        if (c->seen[seq >> 3] & bit) {
            c->dups++;
            st.dups++;
            return;
        }
        c->seen[seq >> 3] |= bit;
    }
    c->received++;
    st.deliveries++;
    st.t_last_delivery = now;
    hist_add(&st.lat, now > t ? (now - t) / 1000 : 0);
}

/* Parses server frames from buf; returns bytes consumed. */
static size_t on_frames(conn_t *c, const uint8_t *buf, size_t len, uint64_t now)
{
    size_t off = 0;
    while (c->fd >= 0 && len - off >= 2) {
        const uint8_t *b = buf + off;
        size_t avail = len - off;
        int opcode = b[0] & 0x0f;
        uint64_t plen = b[1] & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = ((uint64_t)b[2] << 8) | b[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | b[2 + i];
            h = 10;
        }
        if (b[1] & 0x80)
            h += 4; /* servers do not mask; tolerate it anyway */
        if (avail - h < plen || avail < h)
            break;
        const uint8_t *payload = b + h;
        st.frames_in++;
        switch (opcode) {
        case 0x1:
            on_text(c, payload, (size_t)plen, now);
            break;
        case 0x8: {
            int code = plen >= 2 ? (payload[0] << 8) | payload[1] : 1005;
            off += h + (size_t)plen;
            conn_close(c, code);
            return off;
        }
        case 0x9:
            ws_send(c, 0xA, payload, (size_t)plen);
            break;
        default:
            break;
        }
        off += h + (size_t)plen;
    }
    return off;
}

/* Publisher: one HTTP response per request. Returns bytes consumed. */
static size_t on_http(conn_t *c, const uint8_t *buf, size_t len, uint64_t now)
{
    const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    int status = 0;
    if (len >= 12)
        status = atoi((const char *)buf + 9);
    size_t clen = 0;
    const char *cl = memmem(buf, head, "ontent-Length:", 14);
    if (!cl)
        cl = memmem(buf, head, "ontent-length:", 14);
    if (cl)
        clen = (size_t)strtoul(cl + 14, NULL, 10);
    if (!cl && (memmem(buf, head, "chunked", 7))) {
        /* A chunked body: enough for small answers, up to the last chunk. */
        const uint8_t *last = memmem(buf + head - 2, len - head + 2, "\r\n0\r\n\r\n", 7);
        if (!last)
            return 0;
        clen = (size_t)(last + 7 - (buf + head));
    }
    if (len < head + clen)
        return 0;
    if (status >= 200 && status < 300) {
        st.pub_acked++;
    } else {
        st.pub_errors++;
        if (st.pub_errors <= 3)
            fprintf(stderr, "loadgen: notify answered %d: %.*s\n", status, (int)clen,
                    (const char *)buf + head);
    }
    c->busy = false;
    st.t_last_pub_done = now;
    hist_add(&st.pub_rtt, (now - c->t_start) / 1000);
    return head + clen;
}

static void on_upgrade(conn_t *c, const uint8_t *buf, size_t len, size_t *used)
{
    *used = 0;
    const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return;
    *used = (size_t)(end - buf) + 4;
    if (!starts(buf, len, "HTTP/1.1 101")) {
        st.refused_http++;
        if (st.refused_http <= 3)
            fprintf(stderr, "loadgen: upgrade refused: %.*s\n", (int)(len > 200 ? 200 : len),
                    (const char *)buf);
        conn_close(c, 1006);
        return;
    }
    st.upgraded++;
    uint64_t now = now_ns();
    hist_add(&st.ph_upgrade, (now - c->t_phase) / 1000);
    c->t_phase = now;
    send_join(c);
}

static void conn_consume(conn_t *c, const uint8_t *data, size_t len, uint64_t now)
{
    size_t off = 0;
    while (c->fd >= 0 && off < len) {
        size_t used = 0;
        if (c->publisher) {
            used = on_http(c, data + off, len - off, now);
        } else if (c->state == ST_UPGRADING) {
            on_upgrade(c, data + off, len - off, &used);
        } else {
            used = on_frames(c, data + off, len - off, now);
        }
        if (used == 0)
            break;
        off += used;
    }
    if (c->fd < 0)
        return;
    /* Keep what is left (a partial frame or response). */
    size_t left = len - off;
    if (left == 0) {
        c->in_len = 0;
        if (c->in_cap > 4096) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
        return;
    }
    if (data != c->in || off > 0) {
        if (left > c->in_cap) {
            size_t cap = c->in_cap ? c->in_cap : 1024;
            while (cap < left)
                cap *= 2;
            uint8_t *p = malloc(cap);
            if (!p)
                die("malloc");
            memcpy(p, data + off, left);
            free(c->in);
            c->in = p;
            c->in_cap = cap;
        } else {
            memmove(c->in, data + off, left);
        }
    }
    c->in_len = left;
}

static void conn_readable(conn_t *c, uint64_t now)
{
    for (int round = 0; round < 8 && c->fd >= 0; round++) {
        ssize_t n = read(c->fd, rbuf, sizeof rbuf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close(c, 1006);
            return;
        }
        st.bytes_in += (uint64_t)n;
        if (c->in_len == 0) {
            conn_consume(c, rbuf, (size_t)n, now);
        } else {
            if (c->in_len + (size_t)n > c->in_cap) {
                size_t cap = c->in_cap;
                while (cap < c->in_len + (size_t)n)
                    cap *= 2;
                uint8_t *p = realloc(c->in, cap);
                if (!p)
                    die("realloc");
                c->in = p;
                c->in_cap = cap;
            }
            memcpy(c->in + c->in_len, rbuf, (size_t)n);
            c->in_len += (size_t)n;
            conn_consume(c, c->in, c->in_len, now);
        }
        if ((size_t)n < sizeof rbuf)
            return;
    }
}

static void conn_event(conn_t *c, uint32_t events, uint64_t now)
{
    if (c->state == ST_CONNECTING) {
        /* A failed connect reports EPOLLERR (SO_ERROR holds why, which
         * nobody here needs): no getsockopt on the way that succeeds. */
        if (events & (EPOLLERR | EPOLLHUP)) {
            conn_close(c, 1006);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->state = c->publisher ? ST_HTTP : ST_UPGRADING;
        if (!c->publisher) {
            hist_add(&st.ph_connect, (now - c->t_start) / 1000);
            c->t_phase = now;
        }
        conn_flush(c);
        if (c->fd < 0)
            return;
    }
    if (events & EPOLLOUT)
        conn_flush(c);
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        conn_readable(c, now);
}

/* ---- Server memory --------------------------------------------------------- */

static long vmrss_kib(long pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

/* ---- The loop ---------------------------------------------------------------- */

static uint64_t deadline_ns;
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool expired(uint64_t now)
{
    return interrupted || now >= deadline_ns;
}

/* One pass: wait for events at most wait_ms, handle them, open new
 * connections while fewer than --concurrency are being set up, send
 * heartbeats (every 30 s per connection, a bounded slice per pass). */
static void pump(int wait_ms, int *next_start)
{
    static struct epoll_event evs[1024];
    int n = epoll_wait(epfd, evs, 1024, wait_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait");
    uint64_t now = now_ns();
    for (int i = 0; i < n; i++)
        conn_event(evs[i].data.ptr, evs[i].events, now);

    while (*next_start < opt.conns && st.connecting < opt.concurrency) {
        conn_t *c = &conns[(*next_start)++];
        if (st.started == 0)
            st.t_first_start = now_ns();
        st.started++;
        conn_start(c);
    }

    static int hb_idx;
    const uint64_t hb_every = 30ull * 1000000000u;
    for (int k = 0; k < 256 && opt.conns > 0; k++) {
        conn_t *c = &conns[hb_idx];
        hb_idx = (hb_idx + 1) % opt.conns;
        if (c->state == ST_JOINED && now - c->t_last_hb > hb_every) {
            c->t_last_hb = now;
            ws_text(c, "[null,\"hb\",\"phoenix\",\"heartbeat\",{}]");
        }
    }
}

static int setup_all(int *next_start, const char *what)
{
    while (st.joined + st.failed < opt.conns) {
        uint64_t now = now_ns();
        if (expired(now)) {
            fprintf(stderr, "loadgen: %s: gave up with %d of %d joined (%d failed)\n", what,
                    st.joined, opt.conns, st.failed);
            return -1;
        }
        pump(10, next_start);
    }
    return 0;
}

static void serve_for(int ms, int *next_start)
{
    uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= end || expired(now))
            return;
        int left = (int)((end - now) / 1000000u);
        pump(left < 10 ? (left < 1 ? 1 : left) : 10, next_start);
    }
}

static void close_all(void)
{
    static const uint8_t close_frame_payload[2] = { 0x03, 0xE8 }; /* 1000 */
    for (int i = 0; i < opt.conns; i++) {
        conn_t *c = &conns[i];
        if (c->fd >= 0) {
            if (c->state == ST_JOINED)
                ws_send(c, 0x8, close_frame_payload, 2);
            c->state = ST_CLOSED;
            close(c->fd);
            c->fd = -1;
        }
        free(c->out);
        free(c->in);
        free(c->token);
        free(c->seen);
    }
    for (int i = 0; i < opt.publishers && pubs; i++)
        if (pubs[i].fd >= 0)
            conn_close(&pubs[i], 1000);
}

/* ---- Reporting ----------------------------------------------------------------- */

typedef struct metric {
    const char *name;
    double value;
    const char *fmt;
} metric_t;

static void report(const char *scenario, const metric_t *m, int n)
{
    printf("\nendpoint %s\n", scenario);
    printf("  %-28s %16s\n", "metric", "value");
    for (int i = 0; i < n; i++) {
        char v[64];
        snprintf(v, sizeof v, m[i].fmt, m[i].value);
        printf("  %-28s %16s\n", m[i].name, v);
    }
    printf("\nRESULT {\"workloads\": {\"endpoint_%s\": {", scenario);
    for (int i = 0; i < n; i++) {
        char v[64];
        double x = m[i].value;
        if (x == (double)(int64_t)x)
            snprintf(v, sizeof v, "%" PRId64, (int64_t)x);
        else
            snprintf(v, sizeof v, "%.3f", x);
        printf("%s\"%s\": {\"median\": %s, \"runs\": [%s]}", i ? ", " : "", m[i].name, v, v);
    }
    printf("}}}\n");
    fflush(stdout);
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

static int run_idle(void)
{
    long rss0 = vmrss_kib(opt.server_pid);
    int next = 0;
    int rc = setup_all(&next, "idle");
    double setup_s = st.t_last_join > st.t_first_start ? secs(st.t_last_join - st.t_first_start) : 0;
    serve_for(opt.settle_ms, &next);
    long rss1 = vmrss_kib(opt.server_pid);
    if (opt.hold_s > 0)
        serve_for(opt.hold_s * 1000, &next);
    int still = 0;
    for (int i = 0; i < opt.conns; i++)
        still += conns[i].state == ST_JOINED;

    metric_t m[24];
    int k = 0;
    m[k++] = (metric_t){ "conns", opt.conns, "%.0f" };
    m[k++] = (metric_t){ "joined", st.joined, "%.0f" };
    m[k++] = (metric_t){ "failed", st.failed, "%.0f" };
    m[k++] = (metric_t){ "join_errors", st.join_errors, "%.0f" };
    m[k++] = (metric_t){ "upgrade_refused", st.refused_http, "%.0f" };
    m[k++] = (metric_t){ "open_at_end", still, "%.0f" };
    m[k++] = (metric_t){ "ms_setup_all", setup_s * 1000, "%.1f" };
    m[k++] = (metric_t){ "conn_join_per_s", setup_s > 0 ? st.joined / setup_s : 0, "%.0f" };
    m[k++] = (metric_t){ "us_setup_p50", (double)hist_pct(&st.setup, 50), "%.0f" };
    m[k++] = (metric_t){ "us_setup_p99", (double)hist_pct(&st.setup, 99), "%.0f" };
    m[k++] = (metric_t){ "us_setup_max", (double)st.setup.max, "%.0f" };
    /* Where the setup time goes: TCP handshake (the kernel and the
     * server's accept), the upgrade (HTTP parse, token check, 101), the
     * join (decode, presence, reply). */
    m[k++] = (metric_t){ "us_connect_p50", (double)hist_pct(&st.ph_connect, 50), "%.0f" };
    m[k++] = (metric_t){ "us_connect_p99", (double)hist_pct(&st.ph_connect, 99), "%.0f" };
    m[k++] = (metric_t){ "us_upgrade_p50", (double)hist_pct(&st.ph_upgrade, 50), "%.0f" };
    m[k++] = (metric_t){ "us_upgrade_p99", (double)hist_pct(&st.ph_upgrade, 99), "%.0f" };
    m[k++] = (metric_t){ "us_join_p50", (double)hist_pct(&st.ph_join, 50), "%.0f" };
    m[k++] = (metric_t){ "us_join_p99", (double)hist_pct(&st.ph_join, 99), "%.0f" };
    if (rss0 >= 0 && rss1 >= 0) {
        m[k++] = (metric_t){ "kib_server_rss_before", rss0, "%.0f" };
        m[k++] = (metric_t){ "kib_server_rss_after", rss1, "%.0f" };
        m[k++] = (metric_t){ "bytes_server_rss_per_conn",
                             st.joined ? (double)(rss1 - rss0) * 1024.0 / st.joined : 0, "%.0f" };
        /* From a server that never had a connection: includes what the
         * first connections cost once (library code paged in, thread
         * arenas, pools), which the warm figure above leaves out. */
        if (opt.rss_cold_kib > 0) {
            m[k++] = (metric_t){ "kib_server_rss_cold", (double)opt.rss_cold_kib, "%.0f" };
            m[k++] = (metric_t){ "bytes_server_rss_per_conn_cold",
                                 st.joined ? (double)(rss1 - opt.rss_cold_kib) * 1024.0 / st.joined
                                           : 0,
                                 "%.0f" };
        }
    }
    report("idle", m, k);
    close_all();
    return rc == 0 && st.joined == opt.conns && still == opt.conns ? 0 : 1;
}

static char *notify_request(long seq, size_t *len_out)
{
    static char *body;
    static size_t body_cap;
    size_t need = (size_t)opt.size + 256;
    if (body_cap < need) {
        free(body);
        body = malloc(need);
        if (!body)
            die("malloc");
        body_cap = need;
    }
    uint64_t t = now_ns();
    int n = snprintf(body, body_cap, "{\"event\":\"bench\",\"payload\":{\"seq\":%ld,\"t\":%" PRIu64 ",\"pad\":\"",
                     seq, t);
    /* the payload object is {"seq":..,"t":..,"pad":".."}: pad it to --size */
    int payload_so_far = n - (int)strlen("{\"event\":\"bench\",\"payload\":");
    int pad = opt.size - payload_so_far - 2;
    if (pad < 0)
        pad = 0;
    memset(body + n, 'x', (size_t)pad);
    n += pad;
    n += snprintf(body + n, body_cap - (size_t)n, "\"}}");
    char *req = malloc((size_t)n + 512);
    if (!req)
        die("malloc");
    int h = snprintf(req, 512,
                     "POST /api/users/%s/notify HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n",
                     opt.user, opt.host, opt.port, opt.api_key, n);
    memcpy(req + h, body, (size_t)n);
    *len_out = (size_t)h + (size_t)n;
    return req;
}

static int run_fanout(void)
{
    long rss0 = vmrss_kib(opt.server_pid);
    int next = 0;
    int rc = setup_all(&next, "fanout subscribers");
    double setup_s = st.t_last_join > st.t_first_start ? secs(st.t_last_join - st.t_first_start) : 0;
    serve_for(opt.settle_ms, &next); /* presence traffic of the joins settles */
    long rss1 = vmrss_kib(opt.server_pid);
    int subs = st.joined;
    for (int i = 0; i < opt.conns; i++) {
        conns[i].received = 0;
        conns[i].next_seq = 0;
        conns[i].seen = calloc((size_t)opt.messages / 8 + 1, 1);
        if (!conns[i].seen)
            die("calloc");
    }
    st.other_msgs = 0;

    /* Publish M messages at R/s over P keep-alive connections, at most one
     * request outstanding on each. */
    uint64_t t0 = now_ns();
    st.t_first_pub = t0;
    const double interval_ns = 1e9 / opt.rate;
    long seq = 0;
    int reconnects = 0;
    while ((seq < opt.messages || st.pub_acked + st.pub_errors < seq) && !expired(now_ns())) {
        uint64_t now = now_ns();
        for (int i = 0; i < opt.publishers && seq < opt.messages; i++) {
            conn_t *p = &pubs[i];
            if (p->fd < 0 && reconnects < opt.publishers * 8) {
                reconnects++;
                conn_start(p);
                continue;
            }
            if (p->state != ST_HTTP || p->busy)
                continue;
            uint64_t due = t0 + (uint64_t)(seq * interval_ns);
            if (now < due)
                break;
            size_t len;
            char *req = notify_request(seq, &len);
            p->busy = true;
            p->t_start = now_ns();
            conn_send(p, req, len);
            free(req);
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
        pump(wait, &next);
        if (reconnects >= opt.publishers * 8 && st.published == 0)
            break;
    }
    uint64_t t_pub_end = now_ns();

    /* Drain: every subscriber still open should get every message. */
    uint64_t drain_end = t_pub_end + (uint64_t)opt.drain_s * 1000000000u;
    for (;;) {
        uint64_t now = now_ns();
        bool done = true;
        for (int i = 0; i < opt.conns && done; i++)
            if (conns[i].state == ST_JOINED && conns[i].received < (uint64_t)st.published)
                done = false;
        if (done || now >= drain_end || expired(now))
            break;
        pump(10, &next);
    }

    int open_subs = 0;
    uint64_t lost = 0;
    for (int i = 0; i < opt.conns; i++) {
        if (conns[i].state == ST_JOINED)
            open_subs++;
        if (conns[i].received < (uint64_t)st.published && (conns[i].state == ST_JOINED ||
                                                             conns[i].state == ST_CLOSED))
            lost += (uint64_t)st.published - conns[i].received;
    }
    long rss2 = vmrss_kib(opt.server_pid);
    double pub_s = secs(t_pub_end - t0);
    double span = st.t_last_delivery > t0 ? secs(st.t_last_delivery - t0) : 0;

    metric_t m[24];
    int k = 0;
    m[k++] = (metric_t){ "subscribers", subs, "%.0f" };
    m[k++] = (metric_t){ "conn_join_per_s", setup_s > 0 ? subs / setup_s : 0, "%.0f" };
    m[k++] = (metric_t){ "messages", (double)st.published, "%.0f" };
    m[k++] = (metric_t){ "bytes_payload", opt.size, "%.0f" };
    m[k++] = (metric_t){ "msgs_target_per_s", opt.rate, "%.0f" };
    m[k++] = (metric_t){ "msgs_per_s", pub_s > 0 ? st.published / pub_s : 0, "%.0f" };
    m[k++] = (metric_t){ "publish_errors", (double)st.pub_errors, "%.0f" };
    m[k++] = (metric_t){ "us_publish_p50", (double)hist_pct(&st.pub_rtt, 50), "%.0f" };
    m[k++] = (metric_t){ "us_publish_p99", (double)hist_pct(&st.pub_rtt, 99), "%.0f" };
    m[k++] = (metric_t){ "deliveries", (double)st.deliveries, "%.0f" };
    m[k++] = (metric_t){ "deliveries_per_s", span > 0 ? st.deliveries / span : 0, "%.0f" };
    m[k++] = (metric_t){ "us_latency_p50", (double)hist_pct(&st.lat, 50), "%.0f" };
    m[k++] = (metric_t){ "us_latency_p99", (double)hist_pct(&st.lat, 99), "%.0f" };
    m[k++] = (metric_t){ "us_latency_max", (double)st.lat.max, "%.0f" };
    m[k++] = (metric_t){ "lost", (double)lost, "%.0f" };
    m[k++] = (metric_t){ "duplicates", (double)st.dups, "%.0f" };
    m[k++] = (metric_t){ "out_of_order", (double)st.reorders, "%.0f" };
    m[k++] = (metric_t){ "subscribers_closed", subs - open_subs, "%.0f" };
    m[k++] = (metric_t){ "closed_3008", st.close_codes[6], "%.0f" };
    if (rss0 >= 0 && rss1 >= 0 && rss2 >= 0) {
        m[k++] = (metric_t){ "kib_server_rss_before", rss0, "%.0f" };
        m[k++] = (metric_t){ "kib_server_rss_joined", rss1, "%.0f" };
        m[k++] = (metric_t){ "kib_server_rss_after", rss2, "%.0f" };
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
    static const struct option lo[] = {
        { "scenario", required_argument, 0, 'S' },  { "host", required_argument, 0, 'h' },
        { "port", required_argument, 0, 'p' },      { "secret", required_argument, 0, 's' },
        { "api-key", required_argument, 0, 'k' },   { "conns", required_argument, 0, 'n' },
        { "concurrency", required_argument, 0, 'c' }, { "server-pid", required_argument, 0, 'P' },
        { "settle-ms", required_argument, 0, 'w' }, { "hold-s", required_argument, 0, 'H' },
        { "messages", required_argument, 0, 'm' }, { "size", required_argument, 0, 'z' },
        { "rate", required_argument, 0, 'r' },      { "publishers", required_argument, 0, 'b' },
        { "user", required_argument, 0, 'u' },      { "drain-s", required_argument, 0, 'd' },
        { "src-ips", required_argument, 0, 'i' },   { "timeout-s", required_argument, 0, 't' },
        { "rss-cold-kib", required_argument, 0, 'C' },
        { "help", no_argument, 0, '?' },            { 0, 0, 0, 0 },
    };
    if (argc == 1) {
        /* A bare run (e.g. from a loop over every bench binary) asks for
         * help: the endpoint benchmarks need a server, which
         * scripts/bench-endpoint.sh starts. */
        usage(stdout);
        printf("(scripts/bench-endpoint.sh starts a server and runs both scenarios)\n");
        return 0;
    }
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'S':
            if (strcmp(optarg, "idle") == 0)
                opt.scenario = SC_IDLE;
            else if (strcmp(optarg, "fanout") == 0)
                opt.scenario = SC_FANOUT;
            else {
                usage(stderr);
                return 2;
            }
            break;
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 's': opt.secret = optarg; break;
        case 'k': opt.api_key = optarg; break;
        case 'n': opt.conns = atoi(optarg); break;
        case 'c': opt.concurrency = atoi(optarg); break;
        case 'P': opt.server_pid = atol(optarg); break;
        case 'w': opt.settle_ms = atoi(optarg); break;
        case 'H': opt.hold_s = atoi(optarg); break;
        case 'm': opt.messages = atol(optarg); break;
        case 'z': opt.size = atoi(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'b': opt.publishers = atoi(optarg); break;
        case 'u': opt.user = optarg; break;
        case 'd': opt.drain_s = atoi(optarg); break;
        case 'i': opt.src_ips = atoi(optarg); break;
        case 't': opt.timeout_s = atoi(optarg); break;
        case 'C': opt.rss_cold_kib = atol(optarg); break;
        default:
            usage(o == '?' ? stdout : stderr);
            return 2;
        }
    }
    if (opt.port <= 0 || !opt.secret || (opt.scenario == SC_FANOUT && !opt.api_key)) {
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
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if ((rlim_t)opt.conns + (rlim_t)opt.publishers + 32 > rl.rlim_cur) {
            fprintf(stderr, "loadgen: --conns %d needs more than the %lu open files allowed\n",
                    opt.conns, (unsigned long)rl.rlim_cur);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    rng ^= (uint32_t)now_ns() | 1u;

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    conns = calloc((size_t)(opt.conns ? opt.conns : 1), sizeof *conns);
    pubs = calloc((size_t)opt.publishers, sizeof *pubs);
    if (!conns || !pubs)
        die("calloc");
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = -1;
        conns[i].idx = i;
    }
    for (int i = 0; i < opt.publishers; i++) {
        pubs[i].fd = -1;
        pubs[i].idx = i;
        pubs[i].publisher = true;
    }
    /* Tokens are minted before the clock starts. */
    for (int i = 0; i < opt.conns; i++) {
        char ub[64];
        conns[i].token = mint(user_of(&conns[i], ub, sizeof ub));
    }
    deadline_ns = now_ns() + (uint64_t)opt.timeout_s * 1000000000u;

    int rc = opt.scenario == SC_IDLE ? run_idle() : run_fanout();
    free(conns);
    free(pubs);
    close(epfd);
    return rc;
}
