/*
 * phx_client.h — a small non-blocking client toolkit for roost's
 * benchmarks: one epoll loop, HTTP/1.1 keep-alive connections (REST
 * calls, pipelined, answered in order) and Phoenix V2 WebSocket
 * connections (upgrade, masked text frames, ping/pong, close), plus
 * latency samples and HS256 tokens (web/jwt.h).
 *
 * Header-only on purpose: the Makefile builds every .c file in bench/ as its own
 * program with a main, so shared code cannot be a .c file there. Every
 * function is static and marked unused, so a program includes it and
 * uses what it needs without a -Wunused-function error.
 *
 * Threads: none. Everything runs on the thread that calls pc_loop_run.
 * Memory: a pc_conn_t is owned by its loop; pc_conn_free closes it.
 * Callbacks may send on any connection, and may close *other*
 * connections only through pc_conn_close (deferred free).
 *
 * Bounds: input is buffered up to PC_MAX_MSG per message; a server
 * message over it closes the connection (the benchmarks never expect
 * one).
 */
#ifndef ROOST_BENCH_PHX_CLIENT_H
#define ROOST_BENCH_PHX_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "web/jwt.h"

#define PC_FN static __attribute__((unused))
#define PC_MAX_MSG (8u << 20)

/* ---- Time and samples ---------------------------------------------------- */

PC_FN uint64_t pc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

PC_FN double pc_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* Latencies (ns), all kept; percentiles sort a copy. */
typedef struct pc_samples {
    uint64_t *v;
    size_t n, cap;
} pc_samples_t;

PC_FN void pc_samples_add(pc_samples_t *s, uint64_t x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
}

static int pc_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* p in [0, 100]; 0 when empty. Sorts the samples in place. */
PC_FN uint64_t pc_samples_pct(pc_samples_t *s, double p)
{
    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof *s->v, pc_cmp_u64);
    size_t i = (size_t)((p / 100.0) * (double)(s->n - 1) + 0.5);
    return s->v[i < s->n ? i : s->n - 1];
}

PC_FN void pc_samples_free(pc_samples_t *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---- Buffers ------------------------------------------------------------- */

typedef struct pc_buf {
    char *data;
    size_t off, len, cap; /* live bytes are data[off, len) */
} pc_buf_t;

PC_FN void pc_buf_reserve(pc_buf_t *b, size_t more)
{
    if (b->off > 0 && (b->off == b->len || b->off > b->cap / 2)) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    b->data = d;
    b->cap = cap;
}

PC_FN void pc_buf_put(pc_buf_t *b, const void *p, size_t n)
{
    pc_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

PC_FN size_t pc_buf_size(const pc_buf_t *b)
{
    return b->len - b->off;
}

PC_FN void pc_buf_free(pc_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- Tokens ---------------------------------------------------------------- */

/* An HS256 token {sub, room, exp = now + ttl}; free() it. Exits on failure. */
PC_FN char *pc_mint(const char *secret, const char *sub, const char *room, long ttl)
{
    json_t *claims = json_pack("{s:s, s:s, s:I}", "sub", sub, "room", room ? room : "*", "exp",
                               (json_int_t)time(NULL) + ttl);
    char *tok = NULL;
    if (!claims || jwt_sign(secret, strlen(secret), claims, &tok) != 0) {
        fprintf(stderr, "bench: cannot sign a token\n");
        exit(1);
    }
    json_decref(claims);
    return tok;
}

/* ---- Connections ----------------------------------------------------------- */

typedef enum { PC_HTTP, PC_WS } pc_kind_t;
typedef enum { PC_CONNECTING, PC_UPGRADING, PC_OPEN, PC_CLOSED } pc_state_t;
typedef enum { PC_EV_OPEN, PC_EV_CLOSE } pc_event_t;

typedef struct pc_conn pc_conn_t;
typedef struct pc_loop pc_loop_t;

/* An HTTP answer: status -1 when the connection failed before it. */
typedef void (*pc_http_cb)(pc_conn_t *c, void *ctx, int status, const char *body, size_t len);
/* A WebSocket text message (not NUL-terminated). */
typedef void (*pc_text_cb)(pc_conn_t *c, const char *text, size_t len);
/* The WebSocket opened (upgrade done) or closed (c->close_code says why:
 * the server's close code, 1006 for a dropped connection, -status for a
 * refused upgrade). */
typedef void (*pc_event_cb)(pc_conn_t *c, pc_event_t ev);

typedef struct pc_pending {
    pc_http_cb cb;
    void *ctx;
} pc_pending_t;

struct pc_conn {
    pc_loop_t *loop;
    pc_kind_t kind;
    pc_state_t state;
    int fd;
    pc_buf_t in, out;
    bool writable_armed;
    /* HTTP: answers expected, in order (a ring) */
    pc_pending_t *pend;
    size_t pend_head, pend_n, pend_cap;
    /* WebSocket */
    pc_text_cb on_text;
    pc_event_cb on_event;
    int close_code;
    /* for the program */
    void *user;
    long idx;
    /* deferred free */
    bool dead;
    pc_conn_t *next_dead;
};

struct pc_loop {
    int epfd;
    long conns;        /* open connections */
    pc_conn_t *dead;   /* closed, freed after the current dispatch */
    const char *host;
    int port;
    uint32_t rng;
};

PC_FN int pc_loop_init(pc_loop_t *l, const char *host, int port)
{
    memset(l, 0, sizeof *l);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->host = host;
    l->port = port;
    l->rng = 0x9e3779b9u ^ (uint32_t)pc_now_ns();
    return l->epfd < 0 ? -1 : 0;
}

static uint32_t pc_rand(pc_loop_t *l)
{
    uint32_t x = l->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return l->rng = x;
}

static void pc_arm(pc_conn_t *c)
{
    bool want = pc_buf_size(&c->out) > 0 || c->state == PC_CONNECTING;
    if (want == c->writable_armed || c->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->writable_armed = want;
}

static void pc_flush(pc_conn_t *c)
{
    while (c->state != PC_CONNECTING && c->fd >= 0 && pc_buf_size(&c->out) > 0) {
        ssize_t n = send(c->fd, c->out.data + c->out.off, pc_buf_size(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            c->out.off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break; /* EAGAIN, or an error the read side will see */
    }
    if (pc_buf_size(&c->out) == 0)
        c->out.off = c->out.len = 0;
    pc_arm(c);
}

/* Closes the connection now (the struct is freed later). HTTP answers
 * still expected get status -1; a WebSocket gets PC_EV_CLOSE. */
PC_FN void pc_conn_close(pc_conn_t *c, int code)
{
    if (c->dead)
        return;
    pc_state_t was = c->state;
    c->state = PC_CLOSED;
    if (c->fd >= 0) {
        epoll_ctl(c->loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        c->loop->conns--;
    }
    c->dead = true;
    c->next_dead = c->loop->dead;
    c->loop->dead = c;
    if (c->kind == PC_HTTP) {
        while (c->pend_n > 0) {
            pc_pending_t p = c->pend[c->pend_head];
            c->pend_head = (c->pend_head + 1) % c->pend_cap;
            c->pend_n--;
            if (p.cb)
                p.cb(c, p.ctx, -1, NULL, 0);
        }
    } else if (was != PC_CLOSED) {
        c->close_code = c->close_code ? c->close_code : code;
        if (c->on_event)
            c->on_event(c, PC_EV_CLOSE);
    }
}

static pc_conn_t *pc_connect(pc_loop_t *l, pc_kind_t kind)
{
    pc_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    c->loop = l;
    c->kind = kind;
    c->state = PC_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = PC_CLOSED;
        c->close_code = 1006;
        return c;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)l->port)};
    inet_pton(AF_INET, l->host, &sa.sin_addr);
    int rc = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    if (rc < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        c->state = PC_CLOSED;
        c->close_code = 1006;
        return c;
    }
    l->conns++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->writable_armed = true;
    return c;
}

/* ---- HTTP -------------------------------------------------------------------- */

/* A keep-alive HTTP connection to the loop's host and port. Requests may
 * be queued at once; they are written when the connection is up. A
 * failed connect shows as status -1 answers. */
PC_FN pc_conn_t *pc_http_connect(pc_loop_t *l)
{
    return pc_connect(l, PC_HTTP);
}

/* Queues a request (body may be NULL: no body); cb gets the answer. */
PC_FN void pc_http_request(pc_conn_t *c, const char *method, const char *path, const char *api_key,
                           const char *body, pc_http_cb cb, void *ctx)
{
    if (c->state == PC_CLOSED) {
        if (cb)
            cb(c, ctx, -1, NULL, 0);
        return;
    }
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s%s%sContent-Length: %zu\r\n\r\n",
                     method, path, c->loop->host, c->loop->port, api_key ? "Authorization: Bearer " : "",
                     api_key ? api_key : "", api_key ? "\r\n" : "",
                     body ? "Content-Type: application/json" : "", body ? "\r\n" : "", blen);
    if (n < 0 || (size_t)n >= sizeof head) {
        fprintf(stderr, "bench: request line too long\n");
        exit(1);
    }
    pc_buf_put(&c->out, head, (size_t)n);
    if (blen)
        pc_buf_put(&c->out, body, blen);
    if (c->pend_n == c->pend_cap) {
        size_t cap = c->pend_cap ? c->pend_cap * 2 : 16;
        pc_pending_t *p = malloc(cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < c->pend_n; i++)
            p[i] = c->pend[(c->pend_head + i) % c->pend_cap];
        free(c->pend);
        c->pend = p;
        c->pend_head = 0;
        c->pend_cap = cap;
    }
    c->pend[(c->pend_head + c->pend_n) % c->pend_cap] = (pc_pending_t){cb, ctx};
    c->pend_n++;
    pc_flush(c);
}

PC_FN size_t pc_http_pending(const pc_conn_t *c)
{
    return c->pend_n;
}

/* Case-insensitive search for a header's value in a header block. */
static bool pc_header(const char *h, size_t hlen, const char *name, const char **val, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = h, *end = h + hlen;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *val = v;
            *vlen = (size_t)(ve - v);
            return true;
        }
        p = eol + 1;
    }
    return false;
}

/* Consumes complete HTTP responses; false if the connection must close. */
static bool pc_http_consume(pc_conn_t *c)
{
    for (;;) {
        const char *d = c->in.data + c->in.off;
        size_t n = pc_buf_size(&c->in);
        if (n == 0)
            return true;
        const char *eoh = memmem(d, n, "\r\n\r\n", 4);
        if (!eoh)
            return n < 65536;
        size_t hlen = (size_t)(eoh - d) + 4;
        int status = 0;
        if (sscanf(d, "HTTP/1.%*d %d", &status) != 1)
            return false;
        const char *v;
        size_t vl;
        size_t clen = 0;
        if (pc_header(d, hlen, "Content-Length", &v, &vl)) {
            char tmp[32];
            if (vl >= sizeof tmp)
                return false;
            memcpy(tmp, v, vl);
            tmp[vl] = '\0';
            clen = (size_t)strtoull(tmp, NULL, 10);
        } else if (pc_header(d, hlen, "Transfer-Encoding", &v, &vl)) {
            fprintf(stderr, "bench: chunked responses are not supported\n");
            return false;
        }
        if (clen > PC_MAX_MSG)
            return false;
        if (n < hlen + clen)
            return true;
        bool close_after = pc_header(d, hlen, "Connection", &v, &vl) && vl == 5 &&
                           strncasecmp(v, "close", 5) == 0;
        c->in.off += hlen + clen;
        if (c->pend_n == 0)
            return false; /* an answer nobody asked for */
        pc_pending_t p = c->pend[c->pend_head];
        c->pend_head = (c->pend_head + 1) % c->pend_cap;
        c->pend_n--;
        if (p.cb)
            p.cb(c, p.ctx, status, d + hlen, clen);
        if (close_after || c->dead)
            return false;
    }
}

/* ---- WebSocket --------------------------------------------------------------- */

static void pc_ws_frame(pc_conn_t *c, int opcode, const void *payload, size_t len)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t key = pc_rand(c->loop);
    uint8_t k[4] = {(uint8_t)key, (uint8_t)(key >> 8), (uint8_t)(key >> 16), (uint8_t)(key >> 24)};
    memcpy(h + hl, k, 4);
    hl += 4;
    pc_buf_put(&c->out, h, hl);
    pc_buf_reserve(&c->out, len);
    uint8_t *dst = (uint8_t *)c->out.data + c->out.len;
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i] ^ k[i & 3];
    c->out.len += len;
}

/* Opens a Phoenix V2 WebSocket with token; on_event(PC_EV_OPEN) once
 * upgraded, on_text per message. */
PC_FN pc_conn_t *pc_ws_connect(pc_loop_t *l, const char *token, pc_text_cb on_text,
                               pc_event_cb on_event, void *user, long idx)
{
    pc_conn_t *c = pc_connect(l, PC_WS);
    c->on_text = on_text;
    c->on_event = on_event;
    c->user = user;
    c->idx = idx;
    if (c->state == PC_CLOSED)
        return c;
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET /socket/websocket?vsn=2.0.0&token=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: cm9vc3QtYmVuY2gta2V5IQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     token, l->host, l->port);
    if (n < 0 || (size_t)n >= sizeof req) {
        fprintf(stderr, "bench: token too long\n");
        exit(1);
    }
    pc_buf_put(&c->out, req, (size_t)n);
    return c;
}

/* Sends one text message (no-op on a closed connection). */
PC_FN void pc_ws_send(pc_conn_t *c, const char *text, size_t len)
{
    if (c->state == PC_CLOSED || c->dead)
        return;
    pc_ws_frame(c, 0x1, text, len);
    if (c->state == PC_OPEN)
        pc_flush(c);
}

/* Sends a close frame with code, then stops reading. */
PC_FN void pc_ws_close(pc_conn_t *c, int code)
{
    if (c->state == PC_OPEN) {
        uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        pc_ws_frame(c, 0x8, p, 2);
        pc_flush(c);
    }
    pc_conn_close(c, code);
}

/* Consumes the upgrade answer and frames; false if the connection ends. */
static bool pc_ws_consume(pc_conn_t *c)
{
    if (c->state == PC_UPGRADING || c->state == PC_CONNECTING) {
        const char *d = c->in.data + c->in.off;
        size_t n = pc_buf_size(&c->in);
        const char *eoh = memmem(d, n, "\r\n\r\n", 4);
        if (!eoh)
            return n < 65536;
        int status = 0;
        if (sscanf(d, "HTTP/1.%*d %d", &status) != 1 || status != 101) {
            c->close_code = status > 0 ? -status : 1006;
            return false;
        }
        c->in.off += (size_t)(eoh - d) + 4;
        c->state = PC_OPEN;
        if (c->on_event)
            c->on_event(c, PC_EV_OPEN);
        if (c->dead)
            return false;
        pc_flush(c); /* messages queued before the upgrade */
    }
    for (;;) {
        const uint8_t *d = (const uint8_t *)c->in.data + c->in.off;
        size_t n = pc_buf_size(&c->in);
        if (n < 2)
            return true;
        int opcode = d[0] & 0x0f;
        bool fin = (d[0] & 0x80) != 0;
        uint64_t len = d[1] & 0x7f;
        size_t off = 2;
        if (d[1] & 0x80)
            return false; /* a server frame must not be masked */
        if (len == 126) {
            if (n < 4)
                return true;
            len = ((uint64_t)d[2] << 8) | d[3];
            off = 4;
        } else if (len == 127) {
            if (n < 10)
                return true;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | d[2 + i];
            off = 10;
        }
        if (len > PC_MAX_MSG || !fin)
            return false;
        if (n < off + len)
            return true;
        const char *p = (const char *)d + off;
        c->in.off += off + (size_t)len;
        switch (opcode) {
        case 0x1:
        case 0x2:
            if (c->on_text)
                c->on_text(c, p, (size_t)len);
            if (c->dead)
                return false;
            break;
        case 0x8:
            c->close_code = len >= 2 ? (((uint8_t)p[0] << 8) | (uint8_t)p[1]) : 1005;
            pc_ws_frame(c, 0x8, p, len >= 2 ? 2 : 0);
            pc_flush(c);
            return false;
        case 0x9:
            pc_ws_frame(c, 0xA, p, (size_t)len);
            pc_flush(c);
            break;
        default:
            break;
        }
    }
}

static void pc_readable(pc_conn_t *c)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        pc_buf_reserve(&c->in, 65536);
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            bool ok = c->kind == PC_HTTP ? pc_http_consume(c) : pc_ws_consume(c);
            if (!ok || c->dead) {
                pc_conn_close(c, 1006);
                return;
            }
            if ((size_t)n < 65536)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        pc_conn_close(c, 1006); /* EOF or error */
        return;
    }
}

static void pc_dispatch(pc_conn_t *c, uint32_t events)
{
    if (c->dead)
        return;
    if (c->state == PC_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            pc_conn_close(c, 1006);
            return;
        }
        c->state = c->kind == PC_WS ? PC_UPGRADING : PC_OPEN;
        c->writable_armed = true; /* still armed for EPOLLOUT */
        pc_flush(c);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        pc_readable(c);
    if (!c->dead && (events & EPOLLOUT))
        pc_flush(c);
}

/* Frees the connections closed since the last call. */
static void pc_reap(pc_loop_t *l)
{
    while (l->dead) {
        pc_conn_t *c = l->dead;
        l->dead = c->next_dead;
        pc_buf_free(&c->in);
        pc_buf_free(&c->out);
        free(c->pend);
        free(c);
    }
}

/* Waits at most timeout_ms for events and handles them. Returns the
 * number of events handled. */
PC_FN int pc_loop_run(pc_loop_t *l, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(l->epfd, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++)
        pc_dispatch(evs[i].data.ptr, evs[i].events);
    pc_reap(l);
    return n < 0 ? 0 : n;
}

/* ---- Phoenix V2 messages ---------------------------------------------------- */

typedef struct pc_msg {
    json_t *root;          /* owns everything below */
    const char *join_ref;  /* NULL for null */
    const char *ref;
    const char *topic;
    const char *event;
    json_t *payload;
} pc_msg_t;

/* Parses [join_ref, ref, topic, event, payload]; false if it is not one. */
PC_FN bool pc_msg_parse(const char *text, size_t len, pc_msg_t *m)
{
    memset(m, 0, sizeof *m);
    m->root = json_loadb(text, len, 0, NULL);
    if (!json_is_array(m->root) || json_array_size(m->root) != 5) {
        json_decref(m->root);
        m->root = NULL;
        return false;
    }
    m->join_ref = json_string_value(json_array_get(m->root, 0));
    m->ref = json_string_value(json_array_get(m->root, 1));
    m->topic = json_string_value(json_array_get(m->root, 2));
    m->event = json_string_value(json_array_get(m->root, 3));
    m->payload = json_array_get(m->root, 4);
    if (!m->topic || !m->event) {
        json_decref(m->root);
        m->root = NULL;
        return false;
    }
    return true;
}

PC_FN void pc_msg_free(pc_msg_t *m)
{
    json_decref(m->root);
    m->root = NULL;
}

/* A phx_reply's status is "ok". */
PC_FN bool pc_reply_ok(const pc_msg_t *m)
{
    const char *st = json_string_value(json_object_get(m->payload, "status"));
    return st && strcmp(st, "ok") == 0;
}

/* Sends [join_ref, ref, topic, event, payload_json] (payload_json is raw
 * JSON text; join_ref/ref NULL for null). */
PC_FN void pc_phx_send(pc_conn_t *c, const char *join_ref, const char *ref, const char *topic,
                       const char *event, const char *payload_json)
{
    char buf[4096];
    char jr[80], rf[80];
    snprintf(jr, sizeof jr, join_ref ? "\"%s\"" : "null", join_ref ? join_ref : "");
    snprintf(rf, sizeof rf, ref ? "\"%s\"" : "null", ref ? ref : "");
    int n = snprintf(buf, sizeof buf, "[%s,%s,\"%s\",\"%s\",%s]", jr, rf, topic, event, payload_json);
    if (n < 0 || (size_t)n >= sizeof buf) {
        fprintf(stderr, "bench: message too long\n");
        exit(1);
    }
    pc_ws_send(c, buf, (size_t)n);
}

#endif /* ROOST_BENCH_PHX_CLIENT_H */
