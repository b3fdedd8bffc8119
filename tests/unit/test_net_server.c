/*
 * test_net_server.c — the transport (net/server.h) as a black box: the
 * runtime and a server on 127.0.0.1, port 0, with a small test app, and
 * raw blocking sockets from the test thread acting as clients.
 *
 * The app: HTTP requests are answered with a body saying what came
 * ("GET /a len=0"); /later is answered from on_info after an
 * rt_send_after to itself; WebSocket messages are echoed, except a few
 * commands ("flood", "frame", "close:<code>", "stop", "peer", "burst...",
 * "turns:<n>", "overflow"). Its
 * callbacks run on I/O threads, where Criterion's assertions must not be
 * used, so they record failures with CHECK() and report events (open,
 * closed with code) to the test's inbox. Every wait is a receive or a
 * poll() with a timeout: an event, not a sleep.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/server.h"
#include "net/ws.h"
#include "rt/rt.h"

#define WAIT_MS 5000 /* an event that has not come in 5 s is not coming */

static net_server_t *srv;
static rt_inbox_t *ib;
static rt_pid_t me;
static int port;

static atomic_int bad;      /* failed CHECKs inside callbacks */
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
    cr_assert_eq(atomic_load(&bad), 0, "a check inside a callback failed (line %d)", \
                 atomic_load(&bad_line))

/* ---- the test app ------------------------------------------------------- */

enum {
    T_LATER = 0x7e570100, /* to a connection: answer the pending /later */
    T_FLOOD,              /* to a connection: send another burst */
    EV_OPEN,              /* to the test: a = the connection's pid */
    EV_CLOSED,            /* to the test: a = close code */
    EV_FLOOD_RC,          /* to the test: a = the net_ws_send result that stopped the flood */
    EV_BURST,             /* to the test: a = bytes queued right after a burst */
    T_TURN,               /* to a connection: send numbered frame a, then the next */
};

typedef struct wsst {
    int flooding;
} wsst_t;

static rt_buf_t *g_frame;          /* shared frame for "frame" */
static atomic_int g_frame_dtor;    /* its destructor ran this many times */
static atomic_int g_closed_calls;  /* on_ws_closed calls */
static atomic_int g_opened;        /* accepted WebSockets */
static atomic_int g_frame_queued;  /* "frame" sends that had to queue */
static atomic_int g_frames_handled; /* "frames" requests handled */
static char g_big[16384];          /* flood payload */

/* Numbered frames for the batching tests: frame i is text of
 * burst_size(i, max) bytes, "%07d:" then one letter repeated, so a
 * client can tell a lost, repeated, reordered or torn frame. Every
 * tenth is the shared g_frame instead, when the test made one. */
static size_t burst_size(int i, int max)
{
    return 8 + (size_t)((unsigned)i * 7919u % (unsigned)max);
}

static char *burst_payload(int i, size_t len)
{
    char *p = malloc(len + 1);
    if (!p)
        return NULL;
    snprintf(p, 9, "%07d:", i);
    memset(p + 8, 'a' + i % 26, len - 8);
    p[len] = '\0';
    return p;
}

static int burst_one(net_conn_t *c, int i, int max)
{
    if (g_frame && i % 10 == 9)
        return net_ws_send_frame(c, g_frame);
    size_t len = burst_size(i, max);
    char *p = burst_payload(i, len);
    CHECK(p != NULL);
    int rc = p ? net_ws_send(c, true, p, len) : RT_ENOMEM;
    free(p);
    return rc;
}

static void flood_step(net_conn_t *c)
{
    for (int i = 0; i < 8; i++) {
        int rc = net_ws_send(c, false, g_big, sizeof g_big);
        if (rc != RT_OK) {
            rt_send(me, EV_FLOOD_RC, (uint64_t)(int64_t)rc, 0);
            return;
        }
    }
    /* Another burst after the others on this loop had their turn. */
    rt_send(rt_self(), T_FLOOD, 0, 0);
}

static void app_request(net_conn_t *c, const net_http_request_t *req)
{
    CHECK(rt_self() == net_conn_pid(c));
    if (strcmp(req->path, "/later") == 0) {
        rt_msg_t *m = rt_msg_new(T_LATER);
        CHECK(rt_send_after(100, rt_self(), m) != 0);
        return;
    }
    if (strcmp(req->path, "/nocontent") == 0) {
        CHECK(net_respond(c, 204, NULL, NULL, NULL, 0) == RT_OK);
        return;
    }
    char body[256];
    int n = snprintf(body, sizeof body, "%s %s len=%zu", req->method_name, req->path,
                     req->body_len);
    CHECK(net_respond(c, 200, "text/plain", "X-Test: yes\r\n", body, (size_t)n) == RT_OK);
    /* Exactly one answer per request. */
    CHECK(net_respond(c, 200, "text/plain", NULL, "x", 1) != RT_OK);
}

static int app_ws_open(net_conn_t *c, const net_http_request_t *req, void **state,
                       const char **subprotocol, const char **message)
{
    CHECK(rt_self() == net_conn_pid(c));
    if (strcmp(req->path, "/forbidden") == 0) {
        *message = "go away";
        return 403;
    }
    const char *proto = NULL;
    char *token = NULL;
    if (ws_phoenix_protocol(req, &proto, &token, NULL) == 0) {
        free(token);
        *subprotocol = proto;
    }
    /* Not a WebSocket until this returns, nor an HTTP request to answer. */
    CHECK(net_ws_send(c, true, "x", 1) == NET_E_STATE);
    CHECK(net_respond(c, 200, NULL, NULL, "", 0) == NET_E_STATE);
    wsst_t *st = calloc(1, sizeof *st);
    CHECK(st != NULL);
    *state = st;
    atomic_fetch_add(&g_opened, 1);
    rt_send(me, EV_OPEN, rt_self(), 0);
    return 0;
}

static void app_ws_message(net_conn_t *c, void *state, bool text, const char *data, size_t len)
{
    wsst_t *st = state;
    CHECK(st != NULL);
    CHECK(rt_self() == net_conn_pid(c));
    if (text && len == 5 && memcmp(data, "flood", 5) == 0) {
        st->flooding = 1;
        flood_step(c);
        return;
    }
    if (text && len == 5 && memcmp(data, "frame", 5) == 0) {
        CHECK(net_ws_send_frame(c, g_frame) == RT_OK);
        return;
    }
    if (text && len == 6 && memcmp(data, "frames", 6) == 0) {
        /* More than the kernel takes at once: the rest waits, retained. */
        for (int i = 0; i < 32; i++)
            CHECK(net_ws_send_frame(c, g_frame) == RT_OK);
        if (net_conn_outbound(c) > 0)
            atomic_fetch_add(&g_frame_queued, 1);
        atomic_fetch_add(&g_frames_handled, 1);
        return;
    }
    /* burst:<n>:<max>, burstclose:..., burststop:...: n numbered frames
     * in this one callback, then a close 4002 or the process stopping. */
    int n = 0, max = 0;
    char cmd[16];
    if (text && len < 64 && sscanf(data, "%15[a-z]:%d:%d", cmd, &n, &max) == 3 &&
        strncmp(cmd, "burst", 5) == 0) {
        for (int i = 0; i < n; i++)
            CHECK(burst_one(c, i, max) == RT_OK);
        rt_send(me, EV_BURST, net_conn_outbound(c), 0);
        if (strcmp(cmd, "burstclose") == 0)
            net_ws_close(c, 4002, "done");
        else if (strcmp(cmd, "burststop") == 0)
            rt_stop(rt_reason_new("stopped after a burst"));
        return;
    }
    if (text && len > 6 && memcmp(data, "turns:", 6) == 0) {
        /* One frame per process turn: several turns may share an
         * iteration, and so one writev. */
        CHECK(burst_one(c, 0, 100) == RT_OK);
        if (atoi(data + 6) > 1)
            rt_send(rt_self(), T_TURN, 1, (uint64_t)atoi(data + 6));
        return;
    }
    if (text && len == 8 && memcmp(data, "overflow", 8) == 0) {
        /* Past max_outbound within one callback: nothing of it has been
         * flushed at the end of an iteration yet. */
        int rc = RT_OK;
        for (int i = 0; i < 100000 && rc == RT_OK; i++)
            rc = net_ws_send_frame(c, g_frame);
        rt_send(me, EV_FLOOD_RC, (uint64_t)(int64_t)rc, 0);
        return;
    }
    if (text && len > 6 && memcmp(data, "close:", 6) == 0) {
        net_ws_close(c, atoi(data + 6), "bye");
        net_ws_close(c, 1000, "again"); /* idempotent */
        CHECK(net_ws_send(c, true, "late", 4) == NET_E_CLOSED);
        return;
    }
    if (text && len == 4 && memcmp(data, "stop", 4) == 0) {
        rt_stop(rt_reason_new("stopped by the app"));
        return;
    }
    if (text && len == 4 && memcmp(data, "peer", 4) == 0) {
        const char *p = net_conn_peer(c);
        CHECK(net_ws_send(c, true, p, strlen(p)) == RT_OK);
        return;
    }
    CHECK(net_respond(c, 200, NULL, NULL, "", 0) == NET_E_STATE);
    CHECK(net_ws_send(c, text, data, len) == RT_OK);
}

static void app_ws_closed(net_conn_t *c, void *state, int code)
{
    (void)c;
    atomic_fetch_add(&g_closed_calls, 1);
    rt_send(me, EV_CLOSED, (uint64_t)code, 0);
    free(state);
}

static void app_info(net_conn_t *c, void *state, rt_msg_t *m)
{
    if (m->kind == RT_MSG_TIMER && m->tag == T_LATER) {
        CHECK(state == NULL);
        CHECK(net_respond(c, 200, "text/plain", NULL, "later", 5) == RT_OK);
        return;
    }
    if (m->tag == T_FLOOD && state && ((wsst_t *)state)->flooding) {
        flood_step(c);
        return;
    }
    if (m->tag == T_TURN && state) {
        CHECK(burst_one(c, (int)m->a, 100) == RT_OK);
        if (m->a + 1 < m->b)
            rt_send(rt_self(), T_TURN, m->a + 1, m->b);
        return;
    }
}

static const net_app_t test_app = {
    .on_request = app_request,
    .on_ws_open = app_ws_open,
    .on_ws_message = app_ws_message,
    .on_ws_closed = app_ws_closed,
    .on_info = app_info,
};

/* ---- harness ------------------------------------------------------------- */

static net_config_t base_cfg(void)
{
    net_config_t cfg;
    net_config_default(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.io_threads = 2;
    cfg.app = &test_app;
    /* Every close the tests wait for must come from the server's
     * shutdown once its last bytes are out (or the client's close), not
     * from the linger deadline: a minute is longer than any wait here,
     * so a close that only the deadline would make fails the test. */
    cfg.linger_ms = 60000;
    return cfg;
}

static void start_cfg(const net_config_t *cfg)
{
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    ib = rt_inbox_open(0);
    cr_assert_not_null(ib);
    me = rt_inbox_pid(ib);
    cr_assert_eq(net_server_start(cfg, &srv), RT_OK);
    port = net_server_port(srv);
    cr_assert_gt(port, 0);
}

static void start_default(void)
{
    net_config_t cfg = base_cfg();
    start_cfg(&cfg);
}

#define STASH_MAX 1024
static rt_msg_t *stash[STASH_MAX];
static size_t nstash;

static void teardown(void)
{
    if (srv)
        net_server_free(srv);
    srv = NULL;
    for (size_t i = 0; i < nstash; i++)
        rt_msg_free(stash[i]);
    nstash = 0;
    if (g_frame)
        rt_buf_release(g_frame);
    g_frame = NULL;
    if (ib)
        rt_inbox_close(ib);
    ib = NULL;
    rt_runtime_stop();
}

/* The first message with this tag (stash first), or NULL after timeout. */
static rt_msg_t *take(uint32_t tag, int timeout_ms)
{
    for (size_t i = 0; i < nstash; i++) {
        if (stash[i]->tag == tag) {
            rt_msg_t *m = stash[i];
            memmove(&stash[i], &stash[i + 1], (nstash - i - 1) * sizeof stash[0]);
            nstash--;
            return m;
        }
    }
    uint64_t until = rt_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = rt_now_ms();
        if (now >= until)
            return NULL;
        rt_msg_t *m = rt_inbox_recv(ib, (int)(until - now));
        if (!m)
            return NULL;
        if (m->tag == tag)
            return m;
        if (nstash < STASH_MAX)
            stash[nstash++] = m;
        else
            rt_msg_free(m);
    }
}

/* The `a` of the next event with this tag; fails the test on timeout. */
static uint64_t expect_event(uint32_t tag)
{
    rt_msg_t *m = take(tag, WAIT_MS);
    cr_assert_not_null(m, "event %#x did not come", tag);
    uint64_t a = m->a;
    rt_msg_free(m);
    return a;
}

/* ---- raw client ----------------------------------------------------------- */

typedef struct cli {
    int fd;
    char *buf;
    size_t len, cap;
} cli_t;

static cli_t cli_open_buf(int rcvbuf)
{
    cli_t c = {.fd = socket(AF_INET, SOCK_STREAM, 0), .cap = 1u << 20};
    cr_assert_geq(c.fd, 0);
    if (rcvbuf)
        setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(c.fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s",
                 strerror(errno));
    c.buf = malloc(c.cap);
    cr_assert_not_null(c.buf);
    return c;
}

static cli_t cli_open(void)
{
    return cli_open_buf(0);
}

static void cli_close(cli_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static void send_all(cli_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static void send_str(cli_t *c, const char *s)
{
    send_all(c, s, strlen(s));
}

/* Reads more into c->buf: > 0 bytes, 0 at EOF or reset, -1 on timeout. */
static ssize_t fill(cli_t *c, int timeout_ms)
{
    if (c->len == c->cap) {
        c->cap *= 2;
        c->buf = realloc(c->buf, c->cap);
        cr_assert_not_null(c->buf);
    }
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n < 0)
        return errno == ECONNRESET ? 0 : -1;
    c->len += (size_t)n;
    return n;
}

static void consume(cli_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* True once the server has closed the connection (EOF or reset); what
 * arrives before is dropped. */
static bool wait_eof(cli_t *c, int timeout_ms)
{
    uint64_t until = rt_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = rt_now_ms();
        if (now >= until)
            return false;
        c->len = 0;
        ssize_t n = fill(c, (int)(until - now));
        if (n == 0)
            return true;
        if (n < 0)
            return false;
    }
}

typedef struct resp {
    int status;
    char head[20000];
    char *body;
    size_t body_len;
} resp_t;

/* A header's value in a response head (case-insensitive name), or NULL. */
static const char *resp_header(const resp_t *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

/* Reads one response; no_body for HEAD. Returns false on timeout/EOF. */
static bool read_response(cli_t *c, resp_t *r, bool no_body)
{
    memset(r, 0, sizeof *r);
    char *end;
    uint64_t until = rt_now_ms() + WAIT_MS;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        uint64_t now = rt_now_ms();
        if (now >= until || fill(c, (int)(until - now)) <= 0)
            return false;
    }
    size_t hl = (size_t)(end - c->buf) + 4;
    cr_assert_lt(hl, sizeof r->head);
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    consume(c, hl);
    r->status = atoi(r->head + 9);
    char v[64];
    size_t clen = 0;
    if (!no_body && resp_header(r, "Content-Length", v, sizeof v))
        clen = strtoul(v, NULL, 10);
    while (c->len < clen) {
        uint64_t now = rt_now_ms();
        if (now >= until || fill(c, (int)(until - now)) <= 0)
            return false;
    }
    r->body = malloc(clen + 1);
    memcpy(r->body, c->buf, clen);
    r->body[clen] = '\0';
    r->body_len = clen;
    consume(c, clen);
    return true;
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Expects a response with this status and, if body is not NULL, body. */
static void expect_response(cli_t *c, int status, const char *body)
{
    resp_t r;
    cr_assert(read_response(c, &r, false), "no response");
    cr_assert_eq(r.status, status, "status %d, head:\n%s", r.status, r.head);
    if (body)
        cr_assert_str_eq(r.body, body);
    resp_free(&r);
}

/* The body is {"error":{"code":"...","message":"..."}}. */
static void expect_json_error(const resp_t *r, const char *code)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);
    cr_assert_not_null(j, "not JSON: %s", r->body);
    json_t *e = json_object_get(j, "error");
    cr_assert(json_is_object(e));
    cr_assert(json_is_string(json_object_get(e, "code")));
    cr_assert(json_is_string(json_object_get(e, "message")));
    if (code)
        cr_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
    json_decref(j);
}

/* ---- WebSocket client ------------------------------------------------------- */

#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 §1.3 */

static void ws_request(cli_t *c, const char *path, const char *extra)
{
    char req[1024];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
             "Sec-WebSocket-Version: 13\r\n%s\r\n",
             path, extra ? extra : "");
    send_str(c, req);
}

/* A connected, upgraded client (checked), and the connection's pid. */
static cli_t ws_open_buf(const char *path, int rcvbuf, rt_pid_t *pid)
{
    cli_t c = cli_open_buf(rcvbuf);
    ws_request(&c, path, NULL);
    resp_t r;
    cr_assert(read_response(&c, &r, true));
    cr_assert_eq(r.status, 101, "head:\n%s", r.head);
    char v[64];
    cr_assert_not_null(resp_header(&r, "Sec-WebSocket-Accept", v, sizeof v));
    cr_assert_str_eq(v, WS_ACCEPT);
    resp_free(&r);
    rt_pid_t p = (rt_pid_t)expect_event(EV_OPEN);
    if (pid)
        *pid = p;
    return c;
}

static cli_t ws_open(void)
{
    return ws_open_buf("/socket/websocket", 0, NULL);
}

/* One client frame; masked unless told otherwise. */
static void ws_send(cli_t *c, bool fin, int op, const void *data, size_t len, bool masked)
{
    uint8_t *f = malloc(len + 14);
    size_t h = 0;
    f[h++] = (uint8_t)((fin ? 0x80 : 0) | op);
    uint8_t mbit = masked ? 0x80 : 0;
    if (len < 126) {
        f[h++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        f[h++] = mbit | 126;
        f[h++] = (uint8_t)(len >> 8);
        f[h++] = (uint8_t)len;
    } else {
        f[h++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            f[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    if (masked) {
        memcpy(f + h, key, 4);
        h += 4;
    }
    for (size_t i = 0; i < len; i++)
        f[h + i] = ((const uint8_t *)data)[i] ^ (masked ? key[i & 3] : 0);
    send_all(c, f, h + len);
    free(f);
}

static void ws_send_text(cli_t *c, const char *s)
{
    ws_send(c, true, WS_OP_TEXT, s, strlen(s), true);
}

typedef struct wsframe {
    int op;
    bool fin;
    char *data;
    size_t len;
    int code; /* close frames: the code, or 0 */
} wsframe_t;

/* Reads one server frame (unmasked). False on timeout or EOF. */
static bool ws_read(cli_t *c, wsframe_t *f, int timeout_ms)
{
    memset(f, 0, sizeof *f);
    uint64_t until = rt_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (c->len >= 2) {
            const uint8_t *b = (const uint8_t *)c->buf;
            cr_assert_eq(b[1] & 0x80, 0, "server frames are not masked");
            size_t h = 2, len = b[1] & 0x7f;
            if (len == 126) {
                h = 4;
                if (c->len >= 4)
                    len = ((size_t)b[2] << 8) | b[3];
            } else if (len == 127) {
                h = 10;
                if (c->len >= 10) {
                    len = 0;
                    for (int i = 0; i < 8; i++)
                        len = (len << 8) | b[2 + i];
                }
            }
            if (c->len >= h && c->len >= h + len) {
                f->op = b[0] & 0x0f;
                f->fin = b[0] & 0x80;
                f->data = malloc(len + 1);
                memcpy(f->data, c->buf + h, len);
                f->data[len] = '\0';
                f->len = len;
                if (f->op == WS_OP_CLOSE && len >= 2)
                    f->code = ((uint8_t)f->data[0] << 8) | (uint8_t)f->data[1];
                consume(c, h + len);
                return true;
            }
        }
        uint64_t now = rt_now_ms();
        if (now >= until || fill(c, (int)(until - now)) <= 0)
            return false;
    }
}

static void ws_expect(cli_t *c, int op, const char *data)
{
    wsframe_t f;
    cr_assert(ws_read(c, &f, WAIT_MS), "no frame");
    cr_assert_eq(f.op, op, "opcode %d, expected %d", f.op, op);
    cr_assert(f.fin);
    if (data) {
        cr_assert_eq(f.len, strlen(data));
        cr_assert_str_eq(f.data, data);
    }
    free(f.data);
}

/* Expects a close frame with this code; answers it; expects EOF. */
static void ws_expect_close(cli_t *c, int code)
{
    wsframe_t f;
    cr_assert(ws_read(c, &f, WAIT_MS), "no close frame");
    cr_assert_eq(f.op, WS_OP_CLOSE, "opcode %d", f.op);
    cr_assert_eq(f.code, code, "close code %d, expected %d", f.code, code);
    free(f.data);
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    ws_send(c, true, WS_OP_CLOSE, p, 2, true); /* may hit a closed socket: fine */
    cr_assert(wait_eof(c, WAIT_MS), "the server did not close");
}

/* Reads the numbered frames of a burst (see burst_one) in place, without
 * a copy per frame: frame i must be frame i as sent, whole and once.
 * Stops after n frames, or, with until_close, at the close frame that
 * must follow them (*close_code gets its code). Returns the frames seen;
 * fewer than n means EOF or 20 s without a byte. */
static int read_burst(cli_t *c, int n, int max, bool until_close, int *close_code)
{
    /* Checked with plain ifs, asserting only on a mismatch: thousands of
     * passing assertions would each be an event to Criterion's runner. */
    int got = 0;
    size_t at = 0;
    if (close_code)
        *close_code = 0;
    uint64_t until = rt_now_ms() + 20000;
    for (;;) {
        for (;;) {
            size_t avail = c->len - at;
            const uint8_t *b = (const uint8_t *)c->buf + at;
            if (avail < 2)
                break;
            size_t h = 2, len = b[1] & 0x7f;
            if (len == 126) {
                if (avail < 4)
                    break;
                h = 4;
                len = ((size_t)b[2] << 8) | b[3];
            } else if (len == 127) {
                if (avail < 10)
                    break;
                h = 10;
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = (len << 8) | b[2 + i];
            }
            if (avail < h + len)
                break;
            if (!(b[0] & 0x80))
                cr_assert_fail("frame %d is not final", got);
            int op = b[0] & 0x0f;
            const char *p = (const char *)b + h;
            at += h + len;
            if (op == WS_OP_CLOSE) {
                if (!until_close || len < 2)
                    cr_assert_fail("a close frame after %d frames", got);
                if (close_code)
                    *close_code = ((uint8_t)p[0] << 8) | (uint8_t)p[1];
                consume(c, at);
                return got;
            }
            if (got >= n)
                cr_assert_fail("more frames than were sent");
            if (g_frame && got % 10 == 9) {
                if (op != WS_OP_BINARY || h + len != g_frame->len ||
                    memcmp(b, g_frame->data, g_frame->len) != 0)
                    cr_assert_fail("frame %d: not the shared frame (opcode %d, %zu bytes)", got,
                                   op, h + len);
            } else {
                size_t want = burst_size(got, max);
                if (op != WS_OP_TEXT || len != want)
                    cr_assert_fail("frame %d: opcode %d, %zu bytes; sent text, %zu bytes", got,
                                   op, len, want);
                char *exp = burst_payload(got, want);
                bool same = exp && memcmp(p, exp, want) == 0;
                free(exp);
                if (!same)
                    cr_assert_fail("frame %d: not what was sent (%.8s)", got, p);
            }
            got++;
            if (got == n && !until_close) {
                consume(c, at);
                return got;
            }
        }
        consume(c, at);
        at = 0;
        uint64_t now = rt_now_ms();
        if (now >= until || fill(c, (int)(until - now)) <= 0)
            return got;
    }
}

/* A shared binary frame of plen bytes as g_frame (teardown releases it). */
static void make_shared_frame(size_t plen)
{
    char *payload = malloc(plen);
    cr_assert_not_null(payload);
    for (size_t i = 0; i < plen; i++)
        payload[i] = (char)('A' + i % 26);
    size_t flen = ws_frame_header_len(plen) + plen;
    rt_buf_t *b = rt_buf_new(NULL, flen);
    cr_assert_not_null(b);
    cr_assert_eq(ws_frame_write(b->data, flen, WS_OP_BINARY, payload, plen), (ptrdiff_t)flen);
    free(payload);
    g_frame = b;
}

/* ---- HTTP --------------------------------------------------------------------- */

Test(net_server, one_request, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    send_str(&c, "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    resp_t r;
    cr_assert(read_response(&c, &r, false));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "GET /hello len=0");
    char v[64];
    cr_assert_not_null(resp_header(&r, "X-Test", v, sizeof v));
    cr_assert_str_eq(v, "yes");
    cr_assert_not_null(resp_header(&r, "Content-Type", v, sizeof v));
    cr_assert_str_eq(v, "text/plain");
    cr_assert_null(resp_header(&r, "Connection", v, sizeof v));
    resp_free(&r);
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, keepalive_three_requests, .init = start_default, .fini = teardown,
     .timeout = 30)
{
    cli_t c = cli_open();
    send_str(&c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&c, 200, "GET /1 len=0");
    send_str(&c, "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    expect_response(&c, 200, "POST /2 len=3");
    send_str(&c, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&c, 200, "GET /3 len=0");
    net_stats_t st;
    net_server_stats(srv, &st);
    cr_assert_eq(st.accepted, 1, "one connection for three requests");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, pipelined_in_order, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    /* The second one is answered later, from on_info: the third waits. */
    send_str(&c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /later HTTP/1.1\r\nHost: a\r\n\r\n"
                 "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi");
    expect_response(&c, 200, "GET /a len=0");
    expect_response(&c, 200, "later");
    expect_response(&c, 200, "POST /b len=2");
    /* And the connection goes on. */
    send_str(&c, "GET /later HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&c, 200, "later");
    expect_response(&c, 200, "GET /c len=0");
    /* Many, in one write, with answers deferred here and there: what
     * waits behind an unanswered request is parsed when it is answered. */
    enum { N = 200 };
    size_t cap = N * 64, len = 0; /* each request is under 64 bytes */
    char *all = malloc(cap);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(all + len, cap - len, i % 50 == 7 ? "GET /later HTTP/1.1\r\nHost: a\r\n\r\n"
                                                                   : "GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n", i);
    send_all(&c, all, len);
    free(all);
    for (int i = 0; i < N; i++) {
        char want[32];
        if (i % 50 == 7)
            snprintf(want, sizeof want, "later");
        else
            snprintf(want, sizeof want, "GET /p%d len=0", i);
        expect_response(&c, 200, want);
    }
    cli_close(&c);

    /* A client that leaves before its deferred answer: nothing breaks. */
    c = cli_open();
    send_str(&c, "GET /later HTTP/1.1\r\nHost: a\r\n\r\n");
    cli_close(&c);
    c = cli_open();
    send_str(&c, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&c, 200, "GET /after len=0");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, one_byte_at_a_time, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    const char *req = "POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    for (size_t i = 0; req[i]; i++) {
        send_all(&c, req + i, 1);
        usleep(200); /* pacing only, so the bytes arrive in separate reads */
    }
    expect_response(&c, 200, "POST /slow len=5");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

/* A request whose header block is exactly `size` bytes. */
static char *request_with_head(size_t size)
{
    const char *pre = "GET /big HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const char *post = "\r\n\r\n";
    size_t fixed = strlen(pre) + strlen(post);
    cr_assert_gt(size, fixed);
    char *r = malloc(size + 1);
    strcpy(r, pre);
    memset(r + strlen(pre), 'p', size - fixed);
    strcpy(r + strlen(pre) + (size - fixed), post);
    cr_assert_eq(strlen(r), size);
    return r;
}

Test(net_server, header_block_limit, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    char *ok = request_with_head(16384);
    send_str(&c, ok);
    free(ok);
    expect_response(&c, 200, "GET /big len=0");
    cli_close(&c);

    c = cli_open();
    char *big = request_with_head(16385);
    send_str(&c, big);
    free(big);
    resp_t r;
    cr_assert(read_response(&c, &r, false));
    cr_assert_eq(r.status, 431);
    expect_json_error(&r, NULL);
    resp_free(&r);
    cr_assert(wait_eof(&c, WAIT_MS));
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

static void send_post_body(cli_t *c, size_t n)
{
    char head[128];
    snprintf(head, sizeof head, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", n);
    send_str(c, head);
    char *body = malloc(n);
    memset(body, 'b', n);
    send_all(c, body, n);
    free(body);
}

Test(net_server, body_limit, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    send_post_body(&c, 1024 * 1024);
    expect_response(&c, 200, "POST /up len=1048576");
    cli_close(&c);

    c = cli_open();
    send_post_body(&c, 1024 * 1024 + 1);
    resp_t r;
    cr_assert(read_response(&c, &r, false));
    cr_assert_eq(r.status, 413);
    expect_json_error(&r, NULL);
    resp_free(&r);
    cr_assert(wait_eof(&c, WAIT_MS));
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, garbage_is_400, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    send_str(&c, "\x01\x02 this is not http\r\n\r\n");
    resp_t r;
    cr_assert(read_response(&c, &r, false));
    cr_assert_eq(r.status, 400);
    char v[64];
    cr_assert_not_null(resp_header(&r, "Connection", v, sizeof v));
    cr_assert_str_eq(v, "close");
    expect_json_error(&r, NULL);
    resp_free(&r);
    cr_assert(wait_eof(&c, WAIT_MS));
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

static void start_short_timeouts(void)
{
    net_config_t cfg = base_cfg();
    cfg.header_timeout_ms = 300;
    cfg.keepalive_timeout_ms = 600;
    cfg.ws_idle_timeout_ms = 300;
    start_cfg(&cfg);
}

Test(net_server, header_timeout, .init = start_short_timeouts, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    uint64_t t0 = rt_now_ms();
    send_str(&c, "GET / HTTP/1.1\r\nHost: a\r\nX-Half: ");
    cr_assert(wait_eof(&c, WAIT_MS), "a half header block must not hold the connection");
    uint64_t dt = rt_now_ms() - t0;
    cr_assert_geq(dt, 250, "closed after %llu ms", (unsigned long long)dt);
    cli_close(&c);
}

Test(net_server, keepalive_timeout, .init = start_short_timeouts, .fini = teardown,
     .timeout = 30)
{
    cli_t c = cli_open();
    send_str(&c, "GET /k HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&c, 200, "GET /k len=0");
    uint64_t t0 = rt_now_ms();
    cr_assert(wait_eof(&c, WAIT_MS));
    cr_assert_geq(rt_now_ms() - t0, 500);
    cli_close(&c);
}

Test(net_server, connection_close, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    send_str(&c, "GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                 "GET /never HTTP/1.1\r\nHost: a\r\n\r\n");
    resp_t r;
    cr_assert(read_response(&c, &r, false));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "GET /bye len=0");
    char v[64];
    cr_assert_not_null(resp_header(&r, "Connection", v, sizeof v));
    cr_assert_str_eq(v, "close");
    resp_free(&r);
    cr_assert(wait_eof(&c, WAIT_MS));
    cr_assert_eq(c.len, 0, "nothing after the last response");
    cli_close(&c);

    /* HTTP/1.0 without keep-alive closes too. */
    c = cli_open();
    send_str(&c, "GET /old HTTP/1.0\r\n\r\n");
    expect_response(&c, 200, "GET /old len=0");
    cr_assert(wait_eof(&c, WAIT_MS));
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, head_has_no_body, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    send_str(&c, "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n");
    resp_t r;
    cr_assert(read_response(&c, &r, true));
    cr_assert_eq(r.status, 200);
    char v[64];
    cr_assert_not_null(resp_header(&r, "Content-Length", v, sizeof v));
    cr_assert_str_eq(v, "13"); /* strlen("HEAD /h len=0"): what a GET would get */
    resp_free(&r);
    /* No body bytes went out: the next response starts right here. */
    send_str(&c, "GET /nocontent HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert(read_response(&c, &r, true));
    cr_assert_eq(r.status, 204, "head:\n%s", r.head);
    resp_free(&r);
    send_str(&c, "GET /g HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&c, 200, "GET /g len=0");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- WebSocket ------------------------------------------------------------------ */

Test(net_server, ws_handshake_accepted, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = ws_open();
    cli_close(&c);
    cr_assert_eq(expect_event(EV_CLOSED), 1006);

    /* phoenix.js's subprotocol is echoed by the app through *subprotocol. */
    c = cli_open();
    ws_request(&c, "/socket/websocket", "Sec-WebSocket-Protocol: phoenix\r\n");
    resp_t r;
    cr_assert(read_response(&c, &r, true));
    cr_assert_eq(r.status, 101);
    char v[64];
    cr_assert_not_null(resp_header(&r, "Sec-WebSocket-Protocol", v, sizeof v));
    cr_assert_str_eq(v, "phoenix");
    cr_assert_not_null(resp_header(&r, "Sec-WebSocket-Accept", v, sizeof v));
    cr_assert_str_eq(v, WS_ACCEPT);
    resp_free(&r);
    expect_event(EV_OPEN);
    ws_send_text(&c, "peer");
    wsframe_t f;
    cr_assert(ws_read(&c, &f, WAIT_MS));
    cr_assert(strncmp(f.data, "127.0.0.1:", 10) == 0, "peer %s", f.data);
    free(f.data);
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_handshake_refused, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = cli_open();
    ws_request(&c, "/forbidden", NULL);
    resp_t r;
    cr_assert(read_response(&c, &r, false));
    cr_assert_eq(r.status, 403);
    expect_json_error(&r, "forbidden");
    cr_assert(strstr(r.body, "go away"));
    resp_free(&r);
    cr_assert(wait_eof(&c, WAIT_MS));
    cli_close(&c);

    /* A bad handshake is answered by the transport itself. */
    c = cli_open();
    send_str(&c, "GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n");
    cr_assert(read_response(&c, &r, false));
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    cli_close(&c);
    cr_assert_eq(atomic_load(&g_opened), 0);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_echo, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = ws_open();
    ws_send_text(&c, "hello");
    ws_expect(&c, WS_OP_TEXT, "hello");
    ws_send(&c, true, WS_OP_BINARY, "\x00\x01\x02", 3, true);
    wsframe_t f;
    cr_assert(ws_read(&c, &f, WAIT_MS));
    cr_assert_eq(f.op, WS_OP_BINARY);
    cr_assert_eq(f.len, 3);
    cr_assert(memcmp(f.data, "\x00\x01\x02", 3) == 0);
    free(f.data);
    /* 16-bit and 64-bit lengths, and several frames in one write. */
    char *m = malloc(70000);
    memset(m, 'm', 69999);
    m[69999] = '\0';
    ws_send_text(&c, m);
    ws_send_text(&c, "after");
    ws_expect(&c, WS_OP_TEXT, m);
    ws_expect(&c, WS_OP_TEXT, "after");
    free(m);
    cli_close(&c);
    cr_assert_eq(expect_event(EV_CLOSED), 1006);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_fragmented_with_ping, .init = start_default, .fini = teardown,
     .timeout = 30)
{
    cli_t c = ws_open();
    ws_send(&c, false, WS_OP_TEXT, "Hel", 3, true);
    ws_send(&c, true, WS_OP_PING, "p1", 2, true);
    ws_send(&c, false, WS_OP_CONT, "l", 1, true);
    ws_send(&c, true, WS_OP_CONT, "o", 1, true);
    ws_expect(&c, WS_OP_PONG, "p1");
    ws_expect(&c, WS_OP_TEXT, "Hello");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_ping_pong, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = ws_open();
    ws_send(&c, true, WS_OP_PING, "abc", 3, true);
    ws_expect(&c, WS_OP_PONG, "abc");
    ws_send(&c, true, WS_OP_PING, "", 0, true);
    ws_expect(&c, WS_OP_PONG, "");
    /* An unsolicited pong is ignored. */
    ws_send(&c, true, WS_OP_PONG, "x", 1, true);
    ws_send_text(&c, "still here");
    ws_expect(&c, WS_OP_TEXT, "still here");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_unmasked_is_1002, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = ws_open();
    ws_send(&c, true, WS_OP_TEXT, "naked", 5, false);
    ws_expect_close(&c, 1002);
    cli_close(&c);
    cr_assert_eq(expect_event(EV_CLOSED), 1002);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_bad_utf8_is_1007, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t c = ws_open();
    ws_send(&c, true, WS_OP_TEXT, "ab\xc3\x28", 4, true);
    ws_expect_close(&c, 1007);
    cli_close(&c);
    cr_assert_eq(expect_event(EV_CLOSED), 1007);
    ASSERT_NO_BAD_CHECKS();
}

static void start_small_frames(void)
{
    net_config_t cfg = base_cfg();
    cfg.max_frame = 1024;
    start_cfg(&cfg);
}

Test(net_server, ws_too_big_is_1009, .init = start_small_frames, .fini = teardown,
     .timeout = 30)
{
    cli_t c = ws_open();
    char m[1026];
    memset(m, 'x', sizeof m - 1);
    m[1024] = '\0';
    ws_send_text(&c, m); /* exactly the limit */
    ws_expect(&c, WS_OP_TEXT, m);
    m[1024] = 'x';
    m[1025] = '\0';
    ws_send_text(&c, m); /* one byte over */
    ws_expect_close(&c, 1009);
    cli_close(&c);
    cr_assert_eq(expect_event(EV_CLOSED), 1009);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_close_handshake, .init = start_default, .fini = teardown, .timeout = 30)
{
    rt_pid_t pid;
    cli_t c = ws_open_buf("/ws", 0, &pid);
    cr_assert(rt_is_alive(pid));
    uint8_t p[5] = {0x03, 0xe8, 'b', 'y', 'e'}; /* 1000 "bye" */
    ws_send(&c, true, WS_OP_CLOSE, p, sizeof p, true);
    wsframe_t f;
    cr_assert(ws_read(&c, &f, WAIT_MS));
    cr_assert_eq(f.op, WS_OP_CLOSE);
    cr_assert_eq(f.code, 1000, "the peer's code is echoed");
    free(f.data);
    cr_assert(wait_eof(&c, WAIT_MS));
    cr_assert_eq(expect_event(EV_CLOSED), 1000);
    /* The connection process is gone with its socket. */
    for (int i = 0; i < 500 && rt_is_alive(pid); i++)
        usleep(1000);
    cr_assert(!rt_is_alive(pid));
    cli_close(&c);

    /* Server-initiated: net_ws_close from the app. */
    c = ws_open();
    ws_send_text(&c, "close:4001");
    ws_expect_close(&c, 4001);
    cr_assert_eq(expect_event(EV_CLOSED), 4001);
    cli_close(&c);
    cr_assert_eq(atomic_load(&g_closed_calls), 2);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_idle_timeout_is_1001, .init = start_short_timeouts, .fini = teardown,
     .timeout = 30)
{
    cli_t c = ws_open();
    uint64_t t0 = rt_now_ms();
    ws_expect_close(&c, 1001);
    cr_assert_geq(rt_now_ms() - t0, 250);
    cr_assert_eq(expect_event(EV_CLOSED), 1001);
    cli_close(&c);

    /* Traffic keeps it open. */
    c = ws_open();
    for (int i = 0; i < 8; i++) {
        ws_send_text(&c, "tick");
        ws_expect(&c, WS_OP_TEXT, "tick");
        usleep(100 * 1000); /* pacing: 800 ms of traffic, longer than the timeout */
    }
    ws_expect_close(&c, 1001);
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

static void start_slow_consumer(void)
{
    net_config_t cfg = base_cfg();
    cfg.io_threads = 1; /* the flooded client and the other share a loop */
    cfg.max_outbound = 256 * 1024;
    start_cfg(&cfg);
}

Test(net_server, ws_slow_consumer_is_3008, .init = start_slow_consumer, .fini = teardown,
     .timeout = 30)
{
    cli_t slow = ws_open_buf("/ws", 4096, NULL);
    cli_t other = ws_open();
    ws_send_text(&slow, "flood"); /* and never read */
    /* The other client is served all along, on the same loop. */
    char msg[32];
    for (int i = 0; i < 50; i++) {
        snprintf(msg, sizeof msg, "echo %d", i);
        ws_send_text(&other, msg);
        ws_expect(&other, WS_OP_TEXT, msg);
    }
    cr_assert_eq(expect_event(EV_CLOSED), 3008);
    int64_t rc = (int64_t)expect_event(EV_FLOOD_RC);
    cr_assert(rc == NET_E_OVERFLOW, "flood stopped with %lld", (long long)rc);
    cr_assert(wait_eof(&slow, 10000), "the slow client was not disconnected");
    for (int i = 0; i < 5; i++) {
        ws_send_text(&other, "after");
        ws_expect(&other, WS_OP_TEXT, "after");
    }
    net_stats_t st;
    net_server_stats(srv, &st);
    cr_assert_eq(st.closes[net_close_code_index(3008)], 1);
    cli_close(&slow);
    cli_close(&other);
    ASSERT_NO_BAD_CHECKS();
}

static void counted_dtor(rt_rc_t *rc)
{
    atomic_fetch_add(&g_frame_dtor, 1);
    free(RT_CONTAINER_OF(rc, rt_buf_t, rc));
}

static void start_big_outbound(void)
{
    net_config_t cfg = base_cfg();
    cfg.max_outbound = 16 * 1024 * 1024;
    start_cfg(&cfg);
}

Test(net_server, ws_shared_frame_to_100, .init = start_big_outbound, .fini = teardown,
     .timeout = 30)
{
    /* A frame large enough that most sockets take it in several writes,
     * so it sits in many queues at once. */
    size_t plen = 200000;
    char *payload = malloc(plen);
    for (size_t i = 0; i < plen; i++)
        payload[i] = (char)('a' + i % 26);
    size_t flen = ws_frame_header_len(plen) + plen;
    rt_buf_t *b = malloc(sizeof *b + flen + 1);
    rt_rc_init(&b->rc, counted_dtor);
    b->len = flen;
    cr_assert_eq(ws_frame_write(b->data, flen, WS_OP_BINARY, payload, plen), (ptrdiff_t)flen);
    g_frame = b;

    enum { N = 100 };
    cli_t *cs = calloc(N, sizeof *cs);
    for (int i = 0; i < N; i++)
        cs[i] = ws_open_buf("/ws", 4096, NULL); /* small windows: writes queue */
    for (int i = 0; i < N; i++)
        ws_send_text(&cs[i], "frame");
    for (int i = 0; i < N; i++) {
        wsframe_t f;
        cr_assert(ws_read(&cs[i], &f, WAIT_MS));
        cr_assert_eq(f.op, WS_OP_BINARY);
        cr_assert_eq(f.len, plen);
        cr_assert(memcmp(f.data, payload, plen) == 0);
        free(f.data);
    }
    /* And 32 times to a few of them, more than their sockets take. */
    for (int i = 0; i < 3; i++)
        ws_send_text(&cs[i], "frames");
    /* Read nothing until the server has sent all three bursts: a reader
     * draining one socket meanwhile could let the kernel take a whole
     * burst (6.4 MB) and nothing would queue. */
    for (int i = 0; i < 5000 && atomic_load(&g_frames_handled) < 3; i++)
        usleep(1000);
    cr_assert_eq(atomic_load(&g_frames_handled), 3);
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 32; k++) {
            wsframe_t f;
            cr_assert(ws_read(&cs[i], &f, WAIT_MS));
            cr_assert_eq(f.len, plen);
            cr_assert(memcmp(f.data, payload, plen) == 0);
            free(f.data);
        }
    }
    cr_assert_eq(atomic_load(&g_frame_queued), 3, "the frame was queued (retained)");
    cr_assert_eq(atomic_load(&g_frame_dtor), 0, "the test still holds a reference");
    g_frame = NULL;
    rt_buf_release(b);
    /* The last queue lets go once its write completes. */
    for (int i = 0; i < 2000 && atomic_load(&g_frame_dtor) == 0; i++)
        usleep(1000);
    cr_assert_eq(atomic_load(&g_frame_dtor), 1);
    for (int i = 0; i < N; i++)
        cli_close(&cs[i]);
    free(cs);
    free(payload);
    cr_assert_eq(atomic_load(&g_frame_dtor), 1);
    ASSERT_NO_BAD_CHECKS();
}

/* ---- output batching: one writev per connection per loop iteration ---------- *
 * Every test in this file has the same .timeout: Criterion 2.4.1's runner
 * leaks a timeout record when a test with a shorter one starts while a
 * test with a longer one runs (-j2), which LeakSanitizer then reports. */

/* Many frames queued in one callback, more than the kernel takes (a 4 KB
 * receive window and at most 4 MB of send buffer against ~6 MB): they
 * are split over many writevs, short writes leave frames half written,
 * the rest waits for the socket to drain; every frame arrives whole,
 * once, in order, copies and shared frames interleaved. */
Test(net_server, ws_burst_in_one_callback_arrives_in_order, .init = start_big_outbound,
     .fini = teardown, .timeout = 30)
{
    make_shared_frame(3000);
    cli_t c = ws_open_buf("/ws", 4096, NULL);
    ws_send_text(&c, "burst:1500:8000");
    /* Nothing is read before the whole burst is queued. */
    cr_assert_gt(expect_event(EV_BURST), 0, "the burst was queued, not all written");
    cr_assert_eq(read_burst(&c, 1500, 8000, false, NULL), 1500);
    ws_send_text(&c, "after");
    ws_expect(&c, WS_OP_TEXT, "after");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

/* Small frames, far more than one writev's worth (WRITE_MAX_BUFS), from
 * one callback and then from a chain of process turns. */
Test(net_server, ws_many_small_frames_in_order, .init = start_default, .fini = teardown,
     .timeout = 30)
{
    cli_t c = ws_open();
    ws_send_text(&c, "burst:1000:40");
    cr_assert_eq(read_burst(&c, 1000, 40, false, NULL), 1000);
    ws_send_text(&c, "turns:300");
    cr_assert_eq(read_burst(&c, 300, 100, false, NULL), 300);
    ws_send_text(&c, "after");
    ws_expect(&c, WS_OP_TEXT, "after");
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

/* A close started right after a burst goes out after all of it, even when
 * most of the burst is still queued in the server. */
Test(net_server, ws_close_frame_after_queued_burst, .init = start_big_outbound,
     .fini = teardown, .timeout = 30)
{
    cli_t c = ws_open_buf("/ws", 4096, NULL);
    ws_send_text(&c, "burstclose:1500:8000");
    cr_assert_gt(expect_event(EV_BURST), 0);
    int code = 0;
    cr_assert_eq(read_burst(&c, 1500, 8000, true, &code), 1500);
    cr_assert_eq(code, 4002, "close code %d", code);
    uint8_t p[2] = {0x0f, 0xa2};
    ws_send(&c, true, WS_OP_CLOSE, p, 2, true);
    cr_assert(wait_eof(&c, WAIT_MS), "the server did not close");
    cr_assert_eq(expect_event(EV_CLOSED), 4002);
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

/* A process that stops right after sending: what it sent in that callback
 * goes out before its close frame (1011). */
Test(net_server, ws_stop_after_burst_sends_it_first, .init = start_default, .fini = teardown,
     .timeout = 30)
{
    cli_t c = ws_open();
    ws_send_text(&c, "burststop:20:100");
    int code = 0;
    cr_assert_eq(read_burst(&c, 20, 100, true, &code), 20);
    cr_assert_eq(code, 1011, "close code %d", code);
    cr_assert(wait_eof(&c, WAIT_MS));
    cr_assert_eq(expect_event(EV_CLOSED), 1011);
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

static void *drain_fast_thread(void *arg)
{
    (void)arg;
    net_server_drain(srv, 1012, 100, 0, 10000);
    return NULL;
}

/* Draining (1012) a connection with megabytes queued: the close frame
 * comes after them. */
Test(net_server, drain_close_after_queued_burst, .init = start_big_outbound, .fini = teardown,
     .timeout = 30)
{
    cli_t c = ws_open_buf("/ws", 4096, NULL);
    ws_send_text(&c, "burst:1500:8000");
    cr_assert_gt(expect_event(EV_BURST), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, drain_fast_thread, NULL), 0);
    int code = 0;
    cr_assert_eq(read_burst(&c, 1500, 8000, true, &code), 1500);
    cr_assert_eq(code, 1012, "close code %d", code);
    uint8_t p[2] = {0x03, 0xf4};
    ws_send(&c, true, WS_OP_CLOSE, p, 2, true);
    cr_assert(wait_eof(&c, WAIT_MS));
    pthread_join(t, NULL);
    cr_assert_eq(expect_event(EV_CLOSED), 1012);
    cli_close(&c);
    ASSERT_NO_BAD_CHECKS();
}

/* The bound holds for output that has not been flushed yet: a client
 * that does not read, sent more than max_outbound within one callback,
 * is closed with 3008 in the middle of it; the other client on the same
 * loop is served all along. */
Test(net_server, ws_slow_consumer_3008_within_one_callback, .init = start_slow_consumer,
     .fini = teardown, .timeout = 30)
{
    make_shared_frame(16000);
    cli_t slow = ws_open_buf("/ws", 4096, NULL);
    cli_t other = ws_open();
    ws_send_text(&slow, "overflow");
    cr_assert_eq((int64_t)expect_event(EV_FLOOD_RC), NET_E_OVERFLOW);
    cr_assert_eq(expect_event(EV_CLOSED), 3008);
    cr_assert(wait_eof(&slow, 10000), "the slow client was not disconnected");
    for (int i = 0; i < 5; i++) {
        ws_send_text(&other, "after");
        ws_expect(&other, WS_OP_TEXT, "after");
    }
    net_stats_t st;
    net_server_stats(srv, &st);
    cr_assert_eq(st.closes[net_close_code_index(3008)], 1);
    cli_close(&slow);
    cli_close(&other);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, ws_killed_process_closes_socket, .init = start_default, .fini = teardown,
     .timeout = 30)
{
    rt_pid_t pid;
    cli_t c = ws_open_buf("/ws", 0, &pid);
    ws_send_text(&c, "hi");
    ws_expect(&c, WS_OP_TEXT, "hi");
    cr_assert_eq(rt_exit(pid, RT_KILL), RT_OK);
    wsframe_t f;
    cr_assert(ws_read(&c, &f, WAIT_MS));
    cr_assert_eq(f.op, WS_OP_CLOSE);
    cr_assert_eq(f.code, 1011);
    free(f.data);
    cr_assert(wait_eof(&c, WAIT_MS));
    cr_assert_eq(expect_event(EV_CLOSED), 1011);
    cli_close(&c);

    /* The app stopping its own process: the same. */
    c = ws_open();
    ws_send_text(&c, "stop");
    cr_assert(ws_read(&c, &f, WAIT_MS));
    cr_assert_eq(f.code, 1011);
    free(f.data);
    cr_assert(wait_eof(&c, WAIT_MS));
    cr_assert_eq(expect_event(EV_CLOSED), 1011);
    cli_close(&c);
    cr_assert_eq(atomic_load(&g_closed_calls), 2);
    ASSERT_NO_BAD_CHECKS();
}

typedef struct drain_arg {
    uint64_t took_ms;
} drain_arg_t;

static void *drain_thread(void *arg)
{
    drain_arg_t *d = arg;
    uint64_t t0 = rt_now_ms();
    net_server_drain(srv, 1012, 2, 100, 10000);
    d->took_ms = rt_now_ms() - t0;
    return NULL;
}

Test(net_server, drain_closes_with_1012, .init = start_default, .fini = teardown,
     .timeout = 30)
{
    enum { N = 5 };
    cli_t ws[N];
    for (int i = 0; i < N; i++)
        ws[i] = ws_open();
    cli_t http = cli_open();
    send_str(&http, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&http, 200, "GET /x len=0");

    net_server_stop_accepting(srv);
    drain_arg_t d = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, drain_thread, &d), 0);
    for (int i = 0; i < N; i++)
        ws_expect_close(&ws[i], 1012);
    cr_assert(wait_eof(&http, WAIT_MS));
    cli_close(&http);
    pthread_join(t, NULL);
    /* Three batches of at most two, 100 ms apart. */
    cr_assert_geq(d.took_ms, 190, "drained in %llu ms", (unsigned long long)d.took_ms);
    for (int i = 0; i < N; i++)
        cr_assert_eq(expect_event(EV_CLOSED), 1012);
    net_stats_t st;
    net_server_stats(srv, &st);
    cr_assert_eq(st.connections, 0);
    cr_assert_eq(st.websockets, 0);
    cr_assert_eq(st.closes[net_close_code_index(1012)], N);
    for (int i = 0; i < N; i++)
        cli_close(&ws[i]);

    /* Not accepting any more. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_neq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
    ASSERT_NO_BAD_CHECKS();
}

Test(net_server, stats_count, .init = start_default, .fini = teardown, .timeout = 30)
{
    cli_t h = cli_open();
    send_str(&h, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&h, 200, NULL);
    send_str(&h, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_response(&h, 200, NULL);
    cli_t w = ws_open();
    ws_send_text(&w, "one");
    ws_expect(&w, WS_OP_TEXT, "one");

    /* Counters are bumped right after the bytes go out, so the client
     * may see the echo first: wait for them (lock-free snapshots). */
    net_stats_t st;
    for (int i = 0; i < 2000; i++) {
        net_server_stats(srv, &st);
        if (st.frames_out == 1)
            break;
        usleep(1000);
    }
    cr_assert_eq(st.accepted, 2);
    cr_assert_eq(st.connections, 2);
    cr_assert_eq(st.websockets, 1);
    cr_assert_eq(st.http_requests, 3, "two requests and one handshake");
    cr_assert_eq(st.frames_in, 1);
    cr_assert_eq(st.frames_out, 1);
    cr_assert_gt(st.bytes_in, 0);
    cr_assert_gt(st.bytes_out, 0);

    uint8_t p[2] = {0x03, 0xe8};
    ws_send(&w, true, WS_OP_CLOSE, p, 2, true);
    ws_expect(&w, WS_OP_CLOSE, NULL);
    cr_assert(wait_eof(&w, WAIT_MS));
    cr_assert_eq(expect_event(EV_CLOSED), 1000);
    cli_close(&h);
    cli_close(&w);
    for (int i = 0; i < 2000; i++) {
        net_server_stats(srv, &st);
        if (st.connections == 0)
            break;
        usleep(1000);
    }
    cr_assert_eq(st.connections, 0);
    cr_assert_eq(st.websockets, 0);
    cr_assert_eq(st.frames_in, 2);
    /* connections reached 0 after the close echo was counted */
    cr_assert_eq(st.frames_out, 2);
    cr_assert_eq(st.closes[net_close_code_index(1000)], 1);
    cr_assert_eq(net_close_code_index(4321), 15);
    cr_assert_eq(net_close_codes[15], 0);
    ASSERT_NO_BAD_CHECKS();
}
