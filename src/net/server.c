/*
 * net/server.c — the transport behind net/server.h: libuv I/O threads,
 * SO_REUSEPORT listeners, and one runtime process per TCP connection that
 * speaks HTTP/1.1 and then, after an upgrade, WebSocket.
 *
 * Shape
 *   Each I/O thread ("loop") owns a uv_loop_t, a listener on the shared
 *   port, an rt_exec_t whose wake is a uv_async_t, one 64 KiB read buffer,
 *   one WebSocket reader (the "scratch" reader), one uv_timer ticking the
 *   connection deadlines, and a small pool of uv_write_t. A connection
 *   (net_conn_t) is a uv_tcp_t plus the state of its protocol: the HTTP
 *   parser (freed at the upgrade) or, for a WebSocket left inside a frame
 *   by its last read, its own reader; the outbound queue and a deadline.
 *   Its process's state is the net_conn_t itself; the process is pinned to
 *   the loop's executor, so its callbacks, its exit and its terminate all
 *   run on the loop thread.
 *
 *   Writing: a send only queues (a copy, or a reference to a shared
 *   frame) and puts the connection on its loop's flush list; once per
 *   loop iteration, after the I/O callbacks and again before the loop
 *   blocks, every listed connection writes what it queued in one writev
 *   (see "batching"). What the socket does not take is written by one
 *   uv_write at a time as it drains. The uv_write_t comes from a
 *   per-loop pool rather than being embedded: 192 bytes that an idle
 *   connection does not need.
 *
 *   Closing: the last bytes (a response with Connection: close, a close
 *   frame we start) are queued, the write side is shut down once they
 *   are out, and the socket is closed at the peer's EOF or after
 *   cfg.linger_ms ("lingering close": closing with unread input would
 *   send a reset that can destroy what the client has not read yet).
 *   When the peer started the WebSocket close, its close frame is echoed
 *   and the socket closed as soon as the echo is written. A client over
 *   max_outbound is cut at once (3008).
 *
 *   Memory per idle WebSocket: sizeof(net_conn_t) (328, a 336-byte heap
 *   block) plus the process's 128-byte slot in the runtime's table; the
 *   HTTP parser, the read buffer, the outbound queue (and its counters),
 *   the WebSocket reader and its message buffer are all gone while it is
 *   idle.
 *
 * Invariants (the code below relies on them)
 *  1. A net_conn_t is touched only by its loop's thread. The exceptions
 *     are `pid` and `ws_pub`, which net_server_drain() reads under
 *     loop->mu; they are written under loop->mu too.
 *  2. A net_conn_t has two owners, the uv handle and the process, and is
 *     freed by whichever lets go last: the close callback frees it if
 *     the process is gone (F_ALIVE clear), terminate frees it if the
 *     handle is closed (F_HCLOSED). The close callback of a connection
 *     whose process is alive asks it to end (cast TAG_CLOSED: the last
 *     callback, then exit with reason normal); so a closed socket always
 *     means an exiting process, and an exited process a closed socket.
 *  3. on_ws_closed is called exactly once per accepted WebSocket
 *     (F_REPORTED), right before the process exits; after it no app
 *     callback is made for that connection.
 *  4. The outbound queue holds whole frames or responses, each an rt_buf_t
 *     reference and an offset; the first `inflight` entries belong to the
 *     one uv_write in progress and are released only in its callback
 *     (libuv calls it, with UV_ECANCELED, before the close callback).
 *     `outbound` is the sum of what is left of every entry and never
 *     exceeds max_outbound: passing it closes the connection (3008).
 *     The queue's block exists while it holds an entry or the peer's
 *     address.
 *  5. A connection is in at most one deadline list. Each list has one
 *     fixed duration and entries are appended with now + duration, so
 *     every list is sorted by deadline and a tick only looks at heads.
 *  6. HTTP reading is stopped (F_READ_OFF) exactly while bytes are
 *     stashed behind a request the application has not answered yet.
 *  7. Every loop is bounded: executor turns per wake (EXEC_BATCH, also
 *     for the turns run at the end of an I/O callback), expired deadlines
 *     per tick (TICK_MAX_EXPIRE), bytes per feed (one read).
 *  8. The loop's scratch reader is used by one ws_feed at a time (feeds
 *     are never nested) and owns no buffer outside one (ws_reader_park).
 *  9. A connection with queued entries and no write in flight is on its
 *     loop's flush list (F_FLUSHQ), so the list's next walk writes them;
 *     one with a write in flight need not be (on_write goes on). A
 *     listed connection leaves the list at the walk or, if freed first,
 *     in conn_free. Bytes reach the socket in the order they were sent:
 *     queued bytes are written only by flush_now() and start_write(),
 *     both from the head of the queue, and the direct "last words"
 *     writes (overflow_close, conn_terminate, begin_shutdown) are made
 *     only when nothing is queued.
 */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "net/ws.h"

#define READ_BUF_SIZE (64u * 1024u)
#define WRITE_MAX_BUFS 64      /* entries per writev (IOV_MAX is 1024) */
#define FLUSH_ROUNDS 4         /* writevs per connection per flush while the
                                  socket takes everything */
#define FLUSH_EARLY (64u * 1024u) /* queued bytes that are written at once,
                                     not at the end of the iteration */
#define EXEC_BATCH 64          /* process turns per async callback */
#define TICK_MAX_EXPIRE 4096   /* expirations per list per tick */
#define WREQ_POOL_MAX 64       /* idle uv_write_t kept per loop */
#define LISTEN_BACKLOG 1024
#define MAX_IO_THREADS 256

/* Casts the transport sends to its own connection processes. Anything
 * else arriving as a cast goes to the application's on_info. */
#define TAG_RESUME 0x6e657401u /* "net" 1: parse bytes stashed behind a response */
#define TAG_DRAIN 0x6e657402u  /* "net" 2: a = close code */
#define TAG_CLOSED 0x6e657403u /* "net" 3: the socket is closed, exit */
#define TAG_MAGIC 0x726f6f73746e6574ull /* in b, so an app tag cannot collide */

/* Loop commands from external threads (loop->cmd bits). */
#define CMD_STOP_ACCEPT 0x1u
#define CMD_SHUTDOWN 0x2u

enum { TMO_NONE = 0, TMO_HEADER, TMO_KEEPALIVE, TMO_WS_IDLE, TMO_LINGER, TMO_N };

/* net_conn_t.flags (loop thread only) */
enum {
    F_SPAWNED = 1u << 0,    /* rt_spawn succeeded: in loop->conns */
    F_STARTED = 1u << 1,    /* init ran */
    F_ALIVE = 1u << 2,      /* the process is alive (init ran, terminate not yet) */
    F_CLOSING = 1u << 3,    /* uv_close called */
    F_HCLOSED = 1u << 4,    /* the close callback ran */
    F_WS = 1u << 5,         /* upgraded: u.ws is live, u.http is gone */
    F_REQ = 1u << 6,        /* an HTTP request waits for net_respond */
    F_REQ_KA = 1u << 7,     /* ... and the connection stays open after it */
    F_REQ_HEAD = 1u << 8,   /* ... and it is a HEAD */
    F_REQ_10 = 1u << 9,     /* ... and it is HTTP/1.0 */
    F_IN_FEED = 1u << 10,   /* parsing: net_respond need not resume */
    F_READ_OFF = 1u << 11,  /* reading stopped while bytes are stashed */
    F_LINGER = 1u << 12,    /* last bytes queued: shut down, wait for EOF */
    F_SHUT = 1u << 13,      /* uv_shutdown issued */
    F_CLOSE_SENT = 1u << 14, /* WebSocket close frame queued (or given up) */
    F_REPORTED = 1u << 15,  /* on_ws_closed called */
    F_DRAIN = 1u << 16,     /* HTTP: close after the current response */
    F_CLOSE_FLUSH = 1u << 17, /* close the socket once the queue is written */
    F_FLUSHQ = 1u << 18,    /* on loop->flushq (rule 9) */
};

typedef struct net_loop net_loop_t;

typedef struct qent {
    rt_buf_t *buf; /* one reference, released once written or dropped */
    size_t off;    /* bytes of buf already written */
} qent_t;

/* The outbound queue: a ring of cap (a power of two) entries, allocated
 * with the first byte that could not be written at once and freed when
 * it empties, counters included (an idle connection holds none of it). */
typedef struct outq {
    uint32_t head, len, cap, inflight;
    size_t outbound;            /* bytes queued, in flight included */
    char *peer;                 /* "ip:port", made on first net_conn_peer();
                                   kept here, not in net_conn_t, as rarely
                                   used: a block with it stays when empty */
    qent_t e[];
} outq_t;

/* What only an HTTP connection needs; freed at the upgrade. */
typedef struct http_side {
    net_http_parser_t parser;
    char *stash;                /* bytes behind an unanswered request */
    size_t stash_len;
    size_t req_bytes;           /* bytes of the request being read */
} http_side_t;

struct net_conn {
    uv_tcp_t tcp;               /* first; container of every handle callback;
                                   tcp.loop is the net_loop's (loop_of) */
    rt_pid_t pid;               /* rule 1: written under loop->mu */
    net_conn_t *prev, *next;    /* loop->conns, changed under loop->mu */
    net_conn_t *tprev, *tnext;  /* the deadline list `tmo` */
    uint32_t deadline;          /* loop ms (now_ms), compared wrap-safe */
    uint32_t flags;             /* F_* */
    uint16_t ws_code;           /* close code sent or received first, 0 = none */
    uint8_t tmo;                /* TMO_*: which list */
    uint8_t ws_pub;             /* rule 1: F_WS as seen by drain */
    outq_t *q;                  /* NULL while nothing is queued (nor the
                                   peer's address asked for) */
    union {
        http_side_t *http;      /* HTTP: freed at the upgrade */
        struct {
            /* NULL between messages: the loop's scratch reader parses
             * reads that end on a message boundary (most of them), and
             * only a connection left inside a frame keeps one (ws_feed). */
            ws_reader_t *reader;
            void *state;        /* the application's, until on_ws_closed */
        } ws;
    } u;
};

/* Memory per idle WebSocket is a target (design: <= 1.5 KB per joined
 * connection, everything included); this is the transport's share: the
 * uv_tcp_t (248) and 80 bytes, a 336-byte heap block. */
_Static_assert(sizeof(net_conn_t) <= 328, "net_conn_t grew: check the memory budget");

/* Per-loop counters. Each is written by its loop thread only, so a relaxed
 * load + store is an increment (no locked RMW on the hot path); readers on
 * other threads see some recent value, which is all /metrics needs. */
typedef struct loop_stats {
    _Atomic uint64_t connections, websockets, accepted, http_requests;
    _Atomic uint64_t frames_in, frames_out, bytes_in, bytes_out;
    _Atomic uint64_t closes[16];
} loop_stats_t;

struct net_loop {
    net_server_t *srv;
    unsigned idx;
    uv_loop_t uv;
    uv_async_t async;           /* exec wake and commands */
    uv_timer_t tick;
    uv_tcp_t listener;
    rt_exec_t exec;
    pthread_t thread;
    bool inited, exec_inited, listening, thread_started, shutting, finished;
    char *rbuf;                 /* the one read buffer of this loop */
    ws_reader_t scratch;        /* parses reads for connections with no reader */
    net_conn_t *scratch_owner;  /* the connection whose ws_feed uses it */
    /* I/O callback batching (io_begin/io_end, loop thread only). */
    bool in_cb;                 /* inside a callback that ends with io_end */
    bool run_exec;              /* the executor was woken meanwhile */
    /* Output batching (rule 9, loop thread only): connections with
     * output queued this iteration, written by flush_all() from the
     * check handle (after the I/O callbacks) and the prepare handle
     * (before the loop blocks: sends made by timers and close callbacks). */
    net_conn_t **flushq;
    uint32_t nflush, flushcap;
    uv_check_t flush_check;
    uv_prepare_t flush_prepare;
    net_conn_t *tmo_head[TMO_N], *tmo_tail[TMO_N];
    uint64_t tmo_ms[TMO_N];
    uint64_t t0;                /* uv_now() at init: now_ms() counts from it */
    uint32_t nconns;            /* allocated net_conn_t */
    uint32_t nprocs;            /* spawned and not exited */
    uv_write_t *wfree;          /* pool, linked through data */
    unsigned nwfree;
    pthread_mutex_t mu;         /* conns list, pid, ws_pub (rule 1) */
    net_conn_t *conns;
    _Atomic uint32_t cmd;       /* CMD_* from external threads */
    loop_stats_t st;
};

static inline net_loop_t *loop_of(const net_conn_t *c)
{
    return RT_CONTAINER_OF(c->tcp.loop, net_loop_t, uv);
}

/* Milliseconds since the loop started, 32 bits: deadlines compare as
 * signed differences, right for spans under 24 days (timeouts are
 * minutes at most). */
static inline uint32_t now_ms(net_loop_t *l)
{
    return (uint32_t)(uv_now(&l->uv) - l->t0);
}

struct net_server {
    net_config_t cfg;           /* host points at host_copy */
    char *host_copy;
    int port;
    unsigned nloops;
    net_loop_t *loops;
    pthread_mutex_t mu;         /* acks, and drain's wait */
    pthread_cond_t cv;
    uint64_t acks;              /* stop-accepting acknowledgements */
    _Atomic bool draining;      /* loops signal cv when a connection goes */
};

const int net_close_codes[] = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008,
                               1009, 1010, 1011, 1012, 1013, 1014, 3008, 0};

_Static_assert(sizeof net_close_codes / sizeof net_close_codes[0] ==
                   sizeof(((net_stats_t *)0)->closes) / sizeof(uint64_t),
               "one counter per listed close code, the last for the others");

static void conn_close(net_conn_t *c);
static void ws_close_start(net_conn_t *c, int code, const char *reason);
static void http_process(net_conn_t *c, const char *data, size_t len);
static void ws_feed(net_conn_t *c, const char *data, size_t len);
static void start_write(net_conn_t *c);
static void read_start(net_conn_t *c);

/* ---- small helpers ------------------------------------------------------ */

static inline void stat_add(_Atomic uint64_t *v, uint64_t n)
{
    /* Single writer (rule in loop_stats_t): relaxed load + store. */
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* uv_buf_init() takes an unsigned int; uv_buf_t.len is a size_t on Unix. */
static inline uv_buf_t mkbuf(const void *base, size_t len)
{
    uv_buf_t b;
    b.base = (char *)base;
    b.len = len;
    return b;
}

static inline const net_config_t *cfg_of(const net_conn_t *c)
{
    return &loop_of(c)->srv->cfg;
}

int net_close_code_index(int code)
{
    for (int i = 0; net_close_codes[i]; i++)
        if (net_close_codes[i] == code)
            return i;
    return 15; /* every other code */
}

void net_config_default(net_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 4000;
    cfg->io_threads = 0;
    cfg->max_header = NET_HTTP_MAX_HEADER_DEFAULT;
    cfg->max_body = NET_HTTP_MAX_BODY_DEFAULT;
    cfg->max_frame = WS_MAX_MESSAGE_DEFAULT;
    cfg->max_outbound = 1024 * 1024;
    cfg->header_timeout_ms = 10000;
    cfg->keepalive_timeout_ms = 15000;
    cfg->ws_idle_timeout_ms = 60000;
    cfg->linger_ms = 2000;
}

/* A transport cast (TAG_*) to a connection process. Any thread. A dead
 * pid (RT_ENOPROC) means the connection went by itself: nothing to do. */
static int cast_own(rt_pid_t pid, uint32_t tag, uint64_t a)
{
    rt_msg_t *m = rt_msg_new(tag);
    if (!m)
        return RT_ENOMEM;
    m->a = a;
    m->b = TAG_MAGIC;
    return rt_cast_msg(pid, m);
}

/* ---- deadlines (rule 5) -------------------------------------------------- */

static void tmo_unlink(net_conn_t *c)
{
    if (!c->tmo)
        return;
    net_loop_t *l = loop_of(c);
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        l->tmo_head[c->tmo] = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        l->tmo_tail[c->tmo] = c->tprev;
    c->tprev = c->tnext = NULL;
    c->tmo = TMO_NONE;
}

/* (Re)starts the deadline of `kind` from now: O(1), keeps the list sorted. */
static void tmo_set(net_conn_t *c, int kind)
{
    net_loop_t *l = loop_of(c);
    tmo_unlink(c);
    c->deadline = now_ms(l) + (uint32_t)l->tmo_ms[kind];
    c->tmo = (uint8_t)kind;
    c->tprev = l->tmo_tail[kind];
    c->tnext = NULL;
    if (c->tprev)
        c->tprev->tnext = c;
    else
        l->tmo_head[kind] = c;
    l->tmo_tail[kind] = c;
}

static void on_tick(uv_timer_t *t)
{
    net_loop_t *l = t->data;
    uint32_t now = now_ms(l);
    for (int kind = TMO_HEADER; kind < TMO_N; kind++) {
        for (unsigned n = 0; n < TICK_MAX_EXPIRE; n++) {
            net_conn_t *c = l->tmo_head[kind];
            if (!c || (int32_t)(c->deadline - now) > 0)
                break;
            tmo_unlink(c);
            if (kind == TMO_WS_IDLE)
                ws_close_start(c, WS_CLOSE_GOING_AWAY, "idle timeout");
            else
                conn_close(c); /* slowloris, idle keep-alive, or lingering peer */
        }
    }
}

/* ---- outbound queue (rule 4) --------------------------------------------- */

static uv_write_t *wreq_get(net_loop_t *l)
{
    uv_write_t *w = l->wfree;
    if (w) {
        l->wfree = w->data;
        l->nwfree--;
        return w;
    }
    return malloc(sizeof *w);
}

static void wreq_put(net_loop_t *l, uv_write_t *w)
{
    if (l->nwfree >= WREQ_POOL_MAX) {
        free(w);
        return;
    }
    w->data = l->wfree;
    l->wfree = w;
    l->nwfree++;
}

static inline uint32_t q_len(const net_conn_t *c)
{
    return c->q ? c->q->len : 0;
}

static inline uint32_t q_inflight(const net_conn_t *c)
{
    return c->q ? c->q->inflight : 0;
}

static inline size_t q_bytes(const net_conn_t *c)
{
    return c->q ? c->q->outbound : 0;
}

/* Entry i of a non-empty queue. */
static inline qent_t *q_at(net_conn_t *c, uint32_t i)
{
    return &c->q->e[(c->q->head + i) & (c->q->cap - 1)];
}

/* Appends (buf, off), taking the reference. RT_ENOMEM: buf released. */
static int q_push(net_conn_t *c, rt_buf_t *buf, size_t off)
{
    outq_t *q = c->q;
    if (!q || q->len == q->cap) {
        uint32_t ncap = q && q->cap ? q->cap * 2 : 8;
        outq_t *nq = (!q || ncap > q->cap) ? malloc(sizeof *nq + ncap * sizeof(qent_t)) : NULL;
        if (!nq) {
            rt_buf_release(buf);
            return RT_ENOMEM;
        }
        *nq = q ? *q : (outq_t){0};
        for (uint32_t i = 0; q && i < q->len; i++)
            nq->e[i] = *q_at(c, i);
        nq->head = 0;
        nq->cap = ncap;
        free(q);
        c->q = q = nq;
    }
    q->len++;
    *q_at(c, q->len - 1) = (qent_t){buf, off};
    q->outbound += buf->len - off;
    return RT_OK;
}

/* Releases the first n entries. Returns the bytes they still held. */
static size_t q_pop(net_conn_t *c, uint32_t n)
{
    outq_t *q = c->q;
    if (!q)
        return 0;
    size_t bytes = 0;
    for (uint32_t i = 0; i < n && q->len; i++) {
        qent_t *e = q_at(c, 0);
        bytes += e->buf->len - e->off;
        rt_buf_release(e->buf);
        q->head = (q->head + 1) & (q->cap - 1);
        q->len--;
    }
    q->outbound -= bytes;
    if (!q->len && !q->peer) {
        /* An idle connection holds no queue (memory per idle socket). */
        free(q);
        c->q = NULL;
    }
    return bytes;
}

/* Drops what is queued behind the write in flight. */
static void q_drop_pending(net_conn_t *c)
{
    outq_t *q = c->q;
    while (q && q->len > q->inflight) {
        qent_t *e = q_at(c, q->len - 1);
        q->outbound -= e->buf->len - e->off;
        rt_buf_release(e->buf);
        q->len--;
    }
    if (q && !q->len && !q->peer) {
        free(q);
        c->q = NULL;
    }
}

static void do_shutdown(net_conn_t *c);
static void flush_now(net_conn_t *c);

/* The queue has just emptied: do the close or shutdown that waited for
 * the last bytes. */
static void queue_drained(net_conn_t *c)
{
    if (c->flags & F_CLOSE_FLUSH)
        conn_close(c);
    else if (c->flags & F_LINGER)
        do_shutdown(c);
}

static void on_write(uv_write_t *w, int status)
{
    net_conn_t *c = w->data;
    net_loop_t *l = loop_of(c);
    wreq_put(l, w);
    uint32_t n = q_inflight(c);
    if (c->q)
        c->q->inflight = 0;
    size_t bytes = q_pop(c, n);
    if (status < 0) {
        conn_close(c); /* no-op when already closing (UV_ECANCELED) */
        return;
    }
    stat_add(&l->st.bytes_out, bytes);
    if (q_len(c)) {
        start_write(c);
        return;
    }
    queue_drained(c);
}

/* Starts one uv_write of up to WRITE_MAX_BUFS queued entries (writev),
 * for what the socket did not take at once: libuv writes it as the
 * socket drains. */
static void start_write(net_conn_t *c)
{
    if (q_inflight(c) || !q_len(c) || (c->flags & F_CLOSING))
        return;
    uv_buf_t bufs[WRITE_MAX_BUFS];
    uint32_t n = 0;
    for (; n < c->q->len && n < WRITE_MAX_BUFS; n++) {
        qent_t *e = q_at(c, n);
        bufs[n] = mkbuf(e->buf->data + e->off, e->buf->len - e->off);
    }
    uv_write_t *w = wreq_get(loop_of(c));
    if (!w) {
        conn_close(c);
        return;
    }
    w->data = c;
    /* uv_write copies bufs, so the array may live on the stack. */
    if (uv_write(w, (uv_stream_t *)&c->tcp, bufs, n, on_write) < 0) {
        wreq_put(loop_of(c), w);
        conn_close(c);
        return;
    }
    c->q->inflight = n;
}

/* The queue is over its bound: the client does not read. Close at once
 * without waiting for anyone (design §4): drop what is not being
 * written, send the close frame if the stream is at a frame boundary
 * (nothing in flight, and the head entry untouched: everything before
 * it reached the socket whole), close the socket. */
static void overflow_close(net_conn_t *c)
{
    bool boundary = q_inflight(c) == 0 && (q_len(c) == 0 || q_at(c, 0)->off == 0);
    q_drop_pending(c);
    if ((c->flags & F_WS) && !(c->flags & F_CLOSE_SENT)) {
        c->flags |= F_CLOSE_SENT;
        if (!c->ws_code)
            c->ws_code = WS_CLOSE_SLOW_CONSUMER;
        ws_frame_t f;
        if (boundary && ws_close_encode(WS_CLOSE_SLOW_CONSUMER, "slow consumer", 13, &f) == 0) {
            uv_buf_t b = mkbuf((char *)f.data, f.len);
            (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            ws_frame_free(&f);
        }
    }
    conn_close(c);
}

/* Makes sure n more bytes may be queued: the bound counts only what the
 * socket has refused, as if every send had been written at once, so
 * output still waiting for this iteration's flush is written first when
 * it is what stands in the way. Returns RT_OK, NET_E_CLOSED (the socket
 * failed meanwhile) or NET_E_OVERFLOW (closed with 3008). */
static int make_room(net_conn_t *c, size_t n)
{
    size_t max = cfg_of(c)->max_outbound;
    if (q_bytes(c) + n > max && q_len(c) && !q_inflight(c)) {
        flush_now(c);
        if (c->flags & F_CLOSING)
            return NET_E_CLOSED;
    }
    if (q_bytes(c) + n > max) {
        overflow_close(c);
        return NET_E_OVERFLOW;
    }
    return RT_OK;
}

/* Rule 9: puts c on its loop's flush list. If the list cannot grow, c is
 * written at once instead: correct, only not batched. */
static void flushq_add(net_conn_t *c)
{
    if (c->flags & F_FLUSHQ)
        return;
    net_loop_t *l = loop_of(c);
    if (l->nflush == l->flushcap) {
        uint32_t ncap = l->flushcap ? l->flushcap * 2 : 256;
        net_conn_t **nq = ncap > l->flushcap ? realloc(l->flushq, ncap * sizeof *nq) : NULL;
        if (!nq) {
            flush_now(c);
            return;
        }
        l->flushq = nq;
        l->flushcap = ncap;
    }
    l->flushq[l->nflush++] = c;
    c->flags |= F_FLUSHQ;
}

/* Takes c off the flush list (it is being freed before the walk). O(list),
 * and rare: the walk runs before the close callbacks of its iteration. */
static void flushq_forget(net_conn_t *c)
{
    if (!(c->flags & F_FLUSHQ))
        return;
    net_loop_t *l = loop_of(c);
    for (uint32_t i = 0; i < l->nflush; i++)
        if (l->flushq[i] == c)
            l->flushq[i] = NULL;
    c->flags &= ~F_FLUSHQ;
}

/* Appends buf (its reference is taken) and sees that it gets written:
 * by the flush list's walk, by the callback of the write in flight, or
 * now if FLUSH_EARLY bytes wait (a large response or a burst need not
 * sit in memory until the end of the iteration). The caller checked the
 * bound (make_room). Returns RT_OK or RT_ENOMEM (buf released, the
 * connection closed). */
static int q_send(net_conn_t *c, rt_buf_t *buf)
{
    if (q_push(c, buf, 0)) {
        conn_close(c);
        return RT_ENOMEM;
    }
    if (q_inflight(c))
        return RT_OK;
    if (q_bytes(c) >= FLUSH_EARLY)
        flush_now(c);
    else
        flushq_add(c);
    return RT_OK;
}

/* Queues a copy of the bytes of parts. Returns RT_OK, NET_E_CLOSED,
 * NET_E_OVERFLOW or RT_ENOMEM (the last two close the connection). */
static int send_copy(net_conn_t *c, const uv_buf_t *parts, unsigned n)
{
    if (c->flags & F_CLOSING)
        return NET_E_CLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += parts[i].len;
    int rc = make_room(c, total);
    if (rc != RT_OK)
        return rc;
    rt_buf_t *b = rt_buf_new(NULL, total);
    if (!b) {
        conn_close(c);
        return RT_ENOMEM;
    }
    size_t at = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(b->data + at, parts[i].base, parts[i].len);
        at += parts[i].len;
    }
    return q_send(c, b);
}

static int send_bytes(net_conn_t *c, const void *data, size_t len)
{
    uv_buf_t b = mkbuf((char *)data, len);
    return send_copy(c, &b, 1);
}

/* The broadcast lane: frame is queued as is (retained), never copied. */
static int send_shared(net_conn_t *c, rt_buf_t *frame)
{
    if (c->flags & F_CLOSING)
        return NET_E_CLOSED;
    int rc = make_room(c, frame->len);
    if (rc != RT_OK)
        return rc;
    rt_buf_retain(frame);
    return q_send(c, frame);
}

/* ---- batching: one writev per connection per iteration, the executor
 * run inline ------------------------------------------------------------------
 * A connection often sends several times within one loop iteration: a
 * join is answered with its reply and presence_state, and the presence
 * diff published to the topic comes straight back to the joiner; a
 * viewer of a busy room finds several broadcasts in its mailbox when its
 * turn comes. Written one by one these would be one write syscall and
 * one TCP segment each (and on loopback each write also runs the peer's
 * receive path): with 10,000 viewers that per-frame write was ~73% of
 * the server's time. So sends only queue (rule 9), and the loop's check
 * handle, which runs right after the iteration's I/O callbacks (reads,
 * the executor's wake-up), writes everything each listed connection
 * queued in one writev. The prepare handle does the same before the loop
 * blocks, for sends made outside the I/O callbacks (a timer's idle
 * close, a close callback). The more a connection has to send, the
 * larger its batch: under load the syscalls per frame fall instead of
 * the queues growing. Latency is unchanged in the common case (the flush
 * is in the same iteration, before the loop polls again); the order of
 * bytes is the order of the sends.
 *
 * Also, while a read is handled, the processes it woke on this loop run
 * right away instead of after an eventfd round trip (exec_wake notices
 * it is called from inside such a callback), so their output joins the
 * same flush. */

static __thread net_loop_t *tls_loop; /* the loop this thread runs */

/* Writes what the queue holds now: one writev of up to WRITE_MAX_BUFS
 * entries, again while the socket takes everything (FLUSH_ROUNDS at
 * most); what it does not take goes on through uv_write. Then what
 * on_write would do once the queue is empty. Nothing to do while a
 * write is in flight (its callback goes on) or the queue is empty. */
static void flush_now(net_conn_t *c)
{
    if (!q_len(c) || c->q->inflight || (c->flags & F_CLOSING))
        return;
    for (int round = 0; round < FLUSH_ROUNDS && q_len(c); round++) {
        uv_buf_t bufs[WRITE_MAX_BUFS];
        uint32_t n = 0;
        size_t total = 0;
        for (; n < c->q->len && n < WRITE_MAX_BUFS; n++) {
            qent_t *e = q_at(c, n);
            bufs[n] = mkbuf(e->buf->data + e->off, e->buf->len - e->off);
            total += bufs[n].len;
        }
        int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (r < 0 && r != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        size_t w = r > 0 ? (size_t)r : 0;
        stat_add(&loop_of(c)->st.bytes_out, w);
        bool whole = w == total;
        while (w > 0 && q_len(c)) {
            qent_t *e = q_at(c, 0);
            size_t left = e->buf->len - e->off;
            if (w >= left) {
                w -= left;
                q_pop(c, 1);
            } else {
                e->off += w;
                c->q->outbound -= w;
                w = 0;
            }
        }
        if (!whole)
            break; /* the socket is full: libuv waits for it to drain */
    }
    if (q_len(c))
        start_write(c);
    else
        queue_drained(c);
}

/* Rule 9: the walk. flush_now only writes, closes or shuts down (every
 * libuv callback it causes comes later), so the list does not change
 * under the walk. */
static void flush_all(net_loop_t *l)
{
    for (uint32_t i = 0; i < l->nflush; i++) {
        net_conn_t *c = l->flushq[i];
        if (!c)
            continue; /* freed before the walk (flushq_forget) */
        c->flags &= ~F_FLUSHQ;
        flush_now(c);
    }
    l->nflush = 0;
}

static void on_flush_check(uv_check_t *h)
{
    flush_all(h->data);
}

static void on_flush_prepare(uv_prepare_t *h)
{
    flush_all(h->data);
}

static void io_begin(net_loop_t *l)
{
    l->in_cb = true;
}

/* Runs what the callback woke on this loop (bounded: one batch; the rest
 * after the next poll, as on_async does). Their output, and the
 * callback's, is written by this iteration's flush. */
static void io_end(net_loop_t *l)
{
    if (l->run_exec) {
        l->run_exec = false;
        if (rt_exec_run(&l->exec, EXEC_BATCH) > 0 || l->run_exec)
            uv_async_send(&l->async);
        l->run_exec = false;
    }
    l->in_cb = false;
}

/* ---- closing ---------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *r, int status)
{
    net_conn_t *c = RT_CONTAINER_OF(r->handle, net_conn_t, tcp);
    free(r);
    if (status < 0)
        conn_close(c); /* no-op if closing already (UV_ECANCELED) */
    /* else: wait for the peer's EOF, or the linger deadline */
}

static void do_shutdown(net_conn_t *c)
{
    if (c->flags & (F_SHUT | F_CLOSING))
        return;
    c->flags |= F_SHUT;
    uv_shutdown_t *r = malloc(sizeof *r);
    if (!r || uv_shutdown(r, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(r);
        conn_close(c);
    }
}

/* Everything worth sending is queued: send it, then FIN, then wait (up to
 * cfg.linger_ms) for the peer to close, reading and dropping what it still
 * sends, so that our close never turns into a reset that could destroy
 * the last response or close frame before the client reads it. */
static void start_linger(net_conn_t *c)
{
    if (c->flags & (F_LINGER | F_CLOSING))
        return;
    c->flags |= F_LINGER;
    tmo_set(c, TMO_LINGER);
    if (!(c->flags & F_WS) && c->u.http && c->u.http->stash) {
        free(c->u.http->stash);
        c->u.http->stash = NULL;
        c->u.http->stash_len = 0;
    }
    if (c->flags & F_READ_OFF) {
        c->flags &= ~F_READ_OFF;
        read_start(c);
    }
    if (!q_len(c))
        do_shutdown(c);
}

static void http_side_free(http_side_t *h)
{
    if (!h)
        return;
    net_http_parser_free(&h->parser);
    free(h->stash);
    free(h);
}

static void conn_free(net_conn_t *c)
{
    net_loop_t *l = loop_of(c);
    net_server_t *s = l->srv;
    if (c->flags & F_SPAWNED) {
        pthread_mutex_lock(&l->mu);
        if (c->prev)
            c->prev->next = c->next;
        else
            l->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        pthread_mutex_unlock(&l->mu);
    }
    tmo_unlink(c);
    flushq_forget(c);
    q_pop(c, q_len(c));
    if (c->flags & F_WS) {
        if (c->u.ws.reader) {
            ws_reader_free(c->u.ws.reader);
            free(c->u.ws.reader);
        }
    } else {
        http_side_free(c->u.http);
    }
    if (c->q) { /* the peer's address kept it */
        free(c->q->peer);
        free(c->q);
        c->q = NULL;
    }
    free(c);
    l->nconns--;
    stat_add(&l->st.connections, (uint64_t)-1);
    if (atomic_load_explicit(&s->draining, memory_order_relaxed)) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    if (l->shutting)
        uv_async_send(&l->async); /* the async callback checks for the end */
}

/* Calls on_ws_closed once (rule 3) with the code sent or received first,
 * 1006 if none. Process context (or its terminate). */
static void report_ws_closed(net_conn_t *c)
{
    if (!(c->flags & F_WS) || (c->flags & F_REPORTED))
        return;
    c->flags |= F_REPORTED;
    net_loop_t *l = loop_of(c);
    int code = c->ws_code ? c->ws_code : 1006;
    stat_add(&l->st.closes[net_close_code_index(code)], 1);
    stat_add(&l->st.websockets, (uint64_t)-1);
    void *st = c->u.ws.state;
    c->u.ws.state = NULL;
    const net_app_t *app = cfg_of(c)->app;
    if (app && app->on_ws_closed)
        app->on_ws_closed(c, st, code);
}

/* Runs as the connection process once the socket is gone: the last
 * callback, then the process exits normally (rule 2). */
static void closed_fn(void *state, void *arg)
{
    (void)arg;
    report_ws_closed(state);
    rt_stop(RT_NORMAL);
}

static void on_close(uv_handle_t *h)
{
    net_conn_t *c = RT_CONTAINER_OF(h, net_conn_t, tcp);
    c->flags |= F_HCLOSED;
    q_pop(c, q_len(c)); /* write callbacks (ECANCELED) ran before this one */
    if (c->flags & F_ALIVE) {
        /* The process ends in one of its own turns (TAG_CLOSED), after
         * what is already in its mailbox: application callbacks until
         * then see NET_E_CLOSED. Exiting here inside rt_exec_call would
         * be quicker, but the runtime (as of f65897e) leaves the slot of
         * a process that exits in rt_exec_call marked busy, so the next
         * process spawned in it never runs; see the report. */
        if (cast_own(c->pid, TAG_CLOSED, 0) == RT_OK)
            return;
        int rc = rt_exec_call(&loop_of(c)->exec, c->pid, closed_fn, NULL);
        if (rc == RT_OK)
            return; /* the process exited; its terminate freed c */
        /* Not reachable while rule 2 holds: the process died unseen. */
        fprintf(stderr, "roost net: connection process %llx lost (%s)\n",
                (unsigned long long)c->pid, rt_strerror(rc));
        c->flags &= ~F_ALIVE;
        loop_of(c)->nprocs--;
    }
    if ((c->flags & F_SPAWNED) && !(c->flags & F_STARTED))
        return; /* init has not run yet: it frees c */
    conn_free(c);
}

/* Closes the socket now (uv_close). Idempotent. The process exits once
 * the close callback has run. */
static void conn_close(net_conn_t *c)
{
    if (c->flags & F_CLOSING)
        return;
    c->flags |= F_CLOSING;
    tmo_unlink(c);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* ---- WebSocket ---------------------------------------------------------- */

static int ws_send_control(net_conn_t *c, ws_opcode_t op, const void *data, size_t len)
{
    uint8_t frame[WS_FRAME_HEADER_MAX + WS_CONTROL_MAX];
    ptrdiff_t n = ws_frame_write(frame, sizeof frame, op, data, len);
    if (n < 0)
        return RT_EINVAL;
    int rc = send_bytes(c, frame, (size_t)n);
    if (rc == RT_OK)
        stat_add(&loop_of(c)->st.frames_out, 1);
    return rc;
}

/* Queues a close frame and lingers (or closes at once if it cannot be
 * encoded). Idempotent; does not call the application. */
static void ws_close_start(net_conn_t *c, int code, const char *reason)
{
    if (!(c->flags & F_WS) || (c->flags & (F_CLOSE_SENT | F_CLOSING)))
        return;
    c->flags |= F_CLOSE_SENT;
    ws_frame_t f;
    if (code < 0 || code > 0xffff ||
        ws_close_encode((uint16_t)code, reason, reason ? strlen(reason) : 0, &f) != 0) {
        conn_close(c);
        return;
    }
    if (!c->ws_code)
        c->ws_code = (uint16_t)code;
    int rc = send_bytes(c, f.data, f.len);
    ws_frame_free(&f);
    if (rc == RT_OK) {
        stat_add(&loop_of(c)->st.frames_out, 1);
        start_linger(c);
    }
}

static void ws_protocol_error(net_conn_t *c, int err)
{
    if (err == WS_E_CLOSED)
        return; /* bytes after the peer's close: ignored (RFC 6455 §5.5.1) */
    int code = ws_error_close_code(err);
    if (!code)
        code = WS_CLOSE_INTERNAL;
    if (c->flags & F_CLOSE_SENT)
        return; /* closing already: the linger deadline bounds the wait */
    ws_close_start(c, code, ws_strerror(err));
}

static void ws_on_close_frame(net_conn_t *c, const ws_event_t *ev)
{
    if (c->flags & F_CLOSE_SENT) {
        conn_close(c); /* the answer to our close: the handshake is done */
        return;
    }
    if (!c->ws_code)
        c->ws_code = ev->close_code;
    c->flags |= F_CLOSE_SENT;
    ws_frame_t f;
    if (ws_close_reply(ev, &f) != 0) {
        conn_close(c);
        return;
    }
    int rc = send_bytes(c, f.data, f.len);
    ws_frame_free(&f);
    if (rc != RT_OK)
        return;
    stat_add(&loop_of(c)->st.frames_out, 1);
    /* The handshake is complete and the peer sends nothing after its
     * close frame: the server closes TCP first (RFC 6455 §7.1.1) as soon
     * as the echo is written, bounded by the linger deadline. */
    if (!q_len(c)) {
        conn_close(c);
        return;
    }
    c->flags |= F_CLOSE_FLUSH;
    tmo_set(c, TMO_LINGER);
}

/* After a feed: a reader at a message boundary is dropped (a fresh one
 * reads the next message the same way, and an idle WebSocket then holds
 * no reader and no buffer); one left inside a frame, or closed, must
 * keep its state, so the scratch reader moves to the heap. */
static void ws_reader_park(net_conn_t *c, ws_reader_t *r, bool scratch, bool boundary)
{
    net_loop_t *l = loop_of(c);
    if (scratch)
        l->scratch_owner = NULL;
    if (boundary || (c->flags & F_CLOSING)) {
        /* (ws_reader_free leaves a reader usable again; ws.h frees the
         * buffer on its own only above 64 KiB.) */
        ws_reader_free(r);
        if (!scratch) {
            free(r);
            c->u.ws.reader = NULL;
        }
        return;
    }
    if (!scratch)
        return;
    ws_reader_t *h = malloc(sizeof *h);
    if (!h) {
        ws_reader_free(r);
        conn_close(c); /* the frame read so far cannot be kept */
        return;
    }
    memcpy(h, r, sizeof *h); /* no pointer into itself survives a feed */
    memset(r, 0, sizeof *r);  /* the buffer moved with it: not the scratch's */
    c->u.ws.reader = h;
}

/* Process context: one read's worth of bytes from the client. Feeds are
 * never nested (they run from on_read, a libuv callback), so one scratch
 * reader per loop serves every connection that has none. */
static void ws_feed(net_conn_t *c, const char *data, size_t len)
{
    net_loop_t *l = loop_of(c);
    const net_app_t *app = cfg_of(c)->app;
    ws_reader_t *r = c->u.ws.reader;
    bool scratch = !r;
    if (scratch) {
        /* An owner left over means a feed was unwound by rt_fail (the
         * application failed the process): reclaim its buffer. */
        if (l->scratch_owner)
            ws_reader_free(&l->scratch);
        r = &l->scratch;
        ws_reader_config_t rcfg = {.max_message = cfg_of(c)->max_frame};
        ws_reader_init(r, &rcfg);
        l->scratch_owner = c;
    }
    bool trim = false;
    if (!(c->flags & (F_CLOSE_SENT | F_CLOSING)))
        tmo_set(c, TMO_WS_IDLE);
    /* Each turn consumes bytes or returns an event that does. */
    for (size_t guard = len + 1; len > 0 && guard > 0; guard--) {
        if (c->flags & F_CLOSING)
            goto out;
        ws_event_t ev;
        size_t used = 0;
        int rc = ws_reader_feed(r, data, len, &used, &ev);
        data += used;
        len -= used;
        trim = false;
        if (rc == WS_NEED_MORE)
            break;
        if (rc < 0) {
            ws_protocol_error(c, rc);
            goto out;
        }
        stat_add(&l->st.frames_in, 1);
        switch (ev.type) {
        case WS_EV_TEXT:
        case WS_EV_BINARY:
            trim = true;
            if (!(c->flags & F_CLOSE_SENT) && app && app->on_ws_message)
                app->on_ws_message(c, c->u.ws.state, ev.type == WS_EV_TEXT,
                                   (const char *)ev.data, ev.len);
            break;
        case WS_EV_PING:
            if (!(c->flags & F_CLOSE_SENT))
                ws_send_control(c, WS_OP_PONG, ev.data, ev.len);
            break;
        case WS_EV_PONG:
            break;
        case WS_EV_CLOSE:
            ws_on_close_frame(c, &ev);
            goto out;
        }
    }
out:
    /* A boundary: the read ended exactly after a whole message, so no
     * frame is open. */
    ws_reader_park(c, r, scratch, trim && len == 0 && (c->flags & F_WS));
}

/* ---- HTTP -------------------------------------------------------------------- */

static void read_stop(net_conn_t *c)
{
    if (!(c->flags & F_READ_OFF)) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->flags |= F_READ_OFF;
    }
}

static void stash_append(net_conn_t *c, const char *data, size_t len)
{
    if (!len)
        return;
    char *n = realloc(c->u.http->stash, c->u.http->stash_len + len);
    if (!n) {
        conn_close(c);
        return;
    }
    memcpy(n + c->u.http->stash_len, data, len);
    c->u.http->stash = n;
    c->u.http->stash_len += len;
    read_stop(c); /* rule 6: at most one read's worth waits */
}

/* The deadline that applies to an HTTP connection between reads. */
static void http_timeouts(net_conn_t *c)
{
    if (c->flags & (F_REQ | F_WS | F_LINGER | F_CLOSING))
        return;
    size_t got = c->u.http->req_bytes;
    if (got == 0 || got > cfg_of(c)->max_header)
        /* Idle keep-alive, or a body arriving: the header block is done
         * (more bytes than it may have), so progress is what counts. */
        tmo_set(c, TMO_KEEPALIVE);
    else if (c->tmo != TMO_HEADER)
        tmo_set(c, TMO_HEADER); /* from the request's first byte, not refreshed */
}

static void respond_raw_and_linger(net_conn_t *c, net_http_buf_t *b)
{
    c->flags &= ~(F_REQ | F_REQ_KA | F_REQ_HEAD | F_REQ_10);
    if (b->len && send_bytes(c, b->data, b->len) != RT_OK) {
        net_http_buf_free(b);
        return;
    }
    net_http_buf_free(b);
    start_linger(c);
}

/* "Not Found" -> "not_found": the error code for a refused handshake. */
static void status_code_name(int status, char *out, size_t cap)
{
    const char *r = net_http_status_reason(status);
    size_t i = 0;
    for (; r[i] && i + 1 < cap; i++) {
        char ch = r[i];
        out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a')
                 : (ch == ' ' || ch == '-') ? '_' : ch;
    }
    out[i] = '\0';
}

static void ws_upgrade(net_conn_t *c, const net_http_request_t *req)
{
    net_loop_t *l = loop_of(c);
    const net_config_t *cfg = cfg_of(c);
    net_http_buf_t b;
    net_http_buf_init(&b);
    char accept[WS_ACCEPT_LEN + 1];
    int rc = ws_handshake_check(req, accept);
    if (rc) {
        ws_handshake_reject(&b, rc);
        respond_raw_and_linger(c, &b);
        return;
    }
    if (c->flags & F_DRAIN) {
        net_http_response_json_error(&b, 503, "unavailable", "server is restarting", false);
        respond_raw_and_linger(c, &b);
        return;
    }
    void *state = NULL;
    const char *proto = NULL, *message = NULL;
    int status = cfg->app && cfg->app->on_ws_open
                     ? cfg->app->on_ws_open(c, req, &state, &proto, &message)
                     : 404;
    if (status) {
        char code[48];
        if (status < 400 || status > 599)
            status = 500;
        status_code_name(status, code, sizeof code);
        if (!message)
            message = net_http_status_reason(status);
        if (net_http_response_json_error(&b, status, code, message, false))
            net_http_response_json_error(&b, status, code, "refused", false);
        respond_raw_and_linger(c, &b);
        return;
    }
    /* Accepted: from here the application owns state and gets exactly one
     * on_ws_closed, whatever fails below. */
    rc = ws_handshake_response(&b, accept, proto);
    /* Switch protocols: free everything HTTP-only first (memory per idle
     * WebSocket), then the 101 goes out ahead of any frame. */
    http_side_free(c->u.http);
    memset(&c->u, 0, sizeof c->u);
    c->u.ws.reader = NULL; /* made when a read ends inside a frame */
    c->u.ws.state = state;
    c->flags = (c->flags & ~(F_REQ | F_REQ_KA | F_REQ_HEAD | F_REQ_10 | F_READ_OFF)) | F_WS;
    pthread_mutex_lock(&l->mu);
    c->ws_pub = 1;
    pthread_mutex_unlock(&l->mu);
    stat_add(&l->st.websockets, 1);
    if (rc) {
        net_http_buf_free(&b);
        conn_close(c);
        return;
    }
    rc = send_bytes(c, b.data, b.len);
    net_http_buf_free(&b);
    if (rc == RT_OK)
        tmo_set(c, TMO_WS_IDLE);
}

static void http_dispatch(net_conn_t *c, const net_http_request_t *req)
{
    tmo_unlink(c); /* the application's time is not the client's */
    if (req->upgrade && net_http_header_has_token(req, "Upgrade", "websocket")) {
        /* Not a pending request: net_respond from on_ws_open is refused. */
        ws_upgrade(c, req);
        return;
    }
    c->flags |= F_REQ;
    if (req->keep_alive && !(c->flags & F_DRAIN))
        c->flags |= F_REQ_KA;
    if (req->method == NET_HTTP_HEAD)
        c->flags |= F_REQ_HEAD;
    if (req->http_major == 1 && req->http_minor == 0)
        c->flags |= F_REQ_10;
    const net_app_t *app = cfg_of(c)->app;
    if (app && app->on_request)
        app->on_request(c, req);
    else
        net_respond_error(c, 404, "not_found", "no such resource");
}

/* Process context: parses bytes until they run out, a request waits for
 * its answer (the rest is stashed), the connection upgrades or closes. */
static void http_process(net_conn_t *c, const char *data, size_t len)
{
    net_loop_t *l = loop_of(c);
    for (size_t guard = len + 1; len > 0 && guard > 0; guard--) {
        size_t used = 0;
        int r = net_http_parser_feed(&c->u.http->parser, data, len, &used);
        c->u.http->req_bytes += used;
        data += used;
        len -= used;
        if (r == NET_HTTP_NEED_MORE)
            break;
        if (r < 0) {
            net_http_buf_t b;
            net_http_buf_init(&b);
            net_http_response_for_error(&b, r);
            respond_raw_and_linger(c, &b);
            return;
        }
        c->u.http->req_bytes = 0;
        stat_add(&l->st.http_requests, 1);
        http_dispatch(c, net_http_parser_request(&c->u.http->parser));
        if (c->flags & F_CLOSING)
            return;
        if (c->flags & F_WS) {
            if (len)
                ws_feed(c, data, len);
            return;
        }
        if (c->flags & F_LINGER)
            return;
        if (c->flags & F_REQ) {
            if (c->flags & F_REQ_KA)
                stash_append(c, data, len); /* pipelined: waits its turn */
            return;
        }
    }
    http_timeouts(c);
}

static void http_feed(net_conn_t *c, const char *data, size_t len)
{
    if (c->flags & (F_CLOSING | F_LINGER))
        return;
    if (c->flags & F_REQ) {
        if (c->flags & F_REQ_KA)
            stash_append(c, data, len);
        return; /* else the connection closes after the response: dropped */
    }
    http_process(c, data, len);
}

/* Cast TAG_RESUME: the response is out, parse what waited behind it. */
static void http_resume(net_conn_t *c)
{
    if (c->flags & (F_WS | F_CLOSING | F_LINGER | F_REQ))
        return;
    char *stash = c->u.http->stash;
    size_t n = c->u.http->stash_len;
    c->u.http->stash = NULL;
    c->u.http->stash_len = 0;
    if (n) {
        c->flags |= F_IN_FEED;
        http_process(c, stash, n); /* may stash a new remainder */
        c->flags &= ~F_IN_FEED;
    }
    free(stash);
    if (!(c->flags & (F_WS | F_CLOSING)) && (c->flags & F_READ_OFF) &&
        c->u.http->stash_len == 0) {
        c->flags &= ~F_READ_OFF;
        read_start(c);
    }
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct chunk {
    const char *data;
    size_t len;
} chunk_t;

static void feed_fn(void *state, void *arg)
{
    net_conn_t *c = state;
    const chunk_t *ch = arg;
    c->flags |= F_IN_FEED;
    if (c->flags & F_WS)
        ws_feed(c, ch->data, ch->len);
    else
        http_feed(c, ch->data, ch->len);
    c->flags &= ~F_IN_FEED;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    net_conn_t *c = RT_CONTAINER_OF(h, net_conn_t, tcp);
    /* One buffer per loop: a read is parsed (or copied) before the next. */
    *buf = mkbuf(loop_of(c)->rbuf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    net_conn_t *c = RT_CONTAINER_OF(s, net_conn_t, tcp);
    if (n == 0)
        return;
    if (n < 0) {
        conn_close(c); /* EOF or error: a WebSocket without close is 1006 */
        return;
    }
    stat_add(&loop_of(c)->st.bytes_in, (uint64_t)n);
    if (!(c->flags & F_WS) && (c->flags & F_LINGER))
        return; /* HTTP after our last response: read only to find EOF */
    if (!(c->flags & F_ALIVE))
        return;
    chunk_t ch = {buf->base, (size_t)n};
    io_begin(loop_of(c));
    rt_exec_call(&loop_of(c)->exec, c->pid, feed_fn, &ch);
    io_end(loop_of(c));
}

static void read_start(net_conn_t *c)
{
    if (c->flags & F_CLOSING)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* ---- the connection process ----------------------------------------------- */

static rt_reason_t *conn_init(void *arg, void **state)
{
    net_conn_t *c = arg;
    net_loop_t *l = loop_of(c);
    *state = c;
    c->flags |= F_STARTED;
    if (c->flags & F_HCLOSED) { /* closed before we ran (server shutdown) */
        l->nprocs--;
        conn_free(c);
        return RT_NORMAL;
    }
    if (c->flags & F_CLOSING) { /* the close callback frees it */
        l->nprocs--;
        return RT_NORMAL;
    }
    c->flags |= F_ALIVE;
    read_start(c);
    if (!(c->flags & F_CLOSING))
        tmo_set(c, TMO_KEEPALIVE);
    return NULL;
}

static int reason_close_code(const rt_reason_t *r)
{
    if (rt_reason_is(r, RT_R_NORMAL))
        return WS_CLOSE_NORMAL;
    if (rt_reason_is(r, RT_R_SHUTDOWN))
        return WS_CLOSE_GOING_AWAY;
    return WS_CLOSE_INTERNAL;
}

/* The process exits. If the socket is still open (the process was killed,
 * failed or stopped itself) it is closed here; best-effort last words
 * (a close frame, or a 500 for a request left unanswered) go first if
 * the socket takes them at once. Note: the runtime has already cleared
 * the pid, so rt_self() is RT_NOPID inside an on_ws_closed called here. */
static void conn_terminate(void *state, rt_reason_t *reason)
{
    net_conn_t *c = state;
    net_loop_t *l = loop_of(c);
    c->flags &= ~F_ALIVE;
    l->nprocs--;
    flush_now(c); /* what it sent before exiting goes first, as unbatched */
    if (c->flags & F_HCLOSED) {
        conn_free(c);
        return;
    }
    if (!(c->flags & F_CLOSING) && !q_len(c)) {
        if ((c->flags & F_WS) && !(c->flags & F_CLOSE_SENT)) {
            int code = reason_close_code(reason);
            ws_frame_t f;
            if (ws_close_encode((uint16_t)code, NULL, 0, &f) == 0) {
                uv_buf_t b = mkbuf((char *)f.data, f.len);
                (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
                ws_frame_free(&f);
            }
            c->flags |= F_CLOSE_SENT;
            if (!c->ws_code)
                c->ws_code = (uint16_t)code;
        } else if (!(c->flags & F_WS) && (c->flags & F_REQ)) {
            net_http_buf_t b;
            net_http_buf_init(&b);
            if (net_http_response_json_error(&b, 500, "internal_error",
                                             "the request handler failed", false) == 0) {
                uv_buf_t ub = mkbuf(b.data, b.len);
                (void)uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
            }
            net_http_buf_free(&b);
        }
    }
    conn_close(c);
    report_ws_closed(c);
}

static void conn_info(void *state, rt_msg_t *m)
{
    net_conn_t *c = state;
    if (c->flags & F_REPORTED)
        return; /* rule 3: the application's state is gone */
    const net_app_t *app = cfg_of(c)->app;
    if (app && app->on_info)
        app->on_info(c, (c->flags & F_WS) ? c->u.ws.state : NULL, m);
}

static void conn_cast(void *state, rt_msg_t *m)
{
    net_conn_t *c = state;
    if (m->b != TAG_MAGIC || (m->tag != TAG_RESUME && m->tag != TAG_DRAIN &&
                              m->tag != TAG_CLOSED)) {
        conn_info(state, m);
        return;
    }
    if (m->tag == TAG_CLOSED) {
        closed_fn(c, NULL);
        return;
    }
    if (m->tag == TAG_RESUME) {
        http_resume(c);
        return;
    }
    /* TAG_DRAIN */
    if (c->flags & F_WS) {
        int code = (int)m->a;
        const char *why = code == WS_CLOSE_RESTART      ? "server restarting"
                          : code == WS_CLOSE_GOING_AWAY ? "server going away"
                                                        : NULL;
        ws_close_start(c, code, why);
        return;
    }
    c->flags |= F_DRAIN;
    if (!(c->flags & F_REQ) && c->u.http->req_bytes == 0)
        start_linger(c); /* idle: the last response (if any) is queued */
}

static size_t conn_memory(const void *state)
{
    const net_conn_t *c = state;
    size_t n = sizeof *c + (c->q ? sizeof *c->q + c->q->cap * sizeof(qent_t) : 0) + q_bytes(c);
    if (!(c->flags & F_WS) && c->u.http)
        n += sizeof *c->u.http + c->u.http->stash_len;
    else if ((c->flags & F_WS) && c->u.ws.reader)
        n += sizeof *c->u.ws.reader;
    return n;
}

static const rt_behaviour_t conn_behaviour = RT_BEHAVIOUR(
    .name = "conn", .init = conn_init, .handle_cast = conn_cast, .handle_info = conn_info,
    .terminate = conn_terminate, .memory = conn_memory);

/* ---- accepting ------------------------------------------------------------- */

static void free_on_close(uv_handle_t *h)
{
    free(RT_CONTAINER_OF(h, net_conn_t, tcp));
}

static void accept_one(net_loop_t *l, uv_stream_t *server);

/* The spawned process's init runs before this returns (io_end), not after
 * an eventfd round trip: reading starts at once. */
static void on_connection(uv_stream_t *server, int status)
{
    net_loop_t *l = server->data;
    if (status < 0 || l->shutting)
        return;
    io_begin(l);
    accept_one(l, server);
    io_end(l);
}

static void accept_one(net_loop_t *l, uv_stream_t *server)
{
    net_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return; /* libuv pauses this listener until the next accept */
    uv_tcp_init(&l->uv, &c->tcp); /* sets tcp.loop: loop_of(c) works from here */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, free_on_close);
        return;
    }
    l->nconns++;
    stat_add(&l->st.connections, 1);
    stat_add(&l->st.accepted, 1);
    /* TCP_NODELAY comes from the listener (Linux copies it into every
     * accepted socket): one setsockopt less per connection. */
    net_http_config_t hc = {.max_header = cfg_of(c)->max_header,
                            .max_body = cfg_of(c)->max_body};
    c->u.http = calloc(1, sizeof *c->u.http);
    if (!c->u.http) {
        conn_close(c);
        return;
    }
    net_http_parser_init(&c->u.http->parser, &hc);
    rt_spawn_opts_t o = {.exec = &l->exec, .parent = RT_NOPID};
    rt_pid_t pid;
    if (rt_spawn(&conn_behaviour, c, &o, &pid) != RT_OK) {
        conn_close(c); /* not spawned: the close callback frees it */
        return;
    }
    c->flags |= F_SPAWNED;
    l->nprocs++;
    pthread_mutex_lock(&l->mu);
    c->pid = pid;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    pthread_mutex_unlock(&l->mu);
}

/* ---- per connection API --------------------------------------------------- */

rt_pid_t net_conn_pid(const net_conn_t *c)
{
    return c->pid;
}

net_server_t *net_conn_server(const net_conn_t *c)
{
    return loop_of(c)->srv;
}

const char *net_conn_peer(const net_conn_t *c)
{
    net_conn_t *m = (net_conn_t *)c; /* the cache is not part of the value */
    if (m->q && m->q->peer)
        return m->q->peer;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "unknown", out[INET6_ADDRSTRLEN + 10];
    int port = 0;
    if (!(c->flags & F_CLOSING) &&
        uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof ip);
            port = ntohs(a->sin6_port);
            snprintf(out, sizeof out, "[%s]:%d", ip, port);
        } else {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof ip);
            port = ntohs(a->sin_port);
            snprintf(out, sizeof out, "%s:%d", ip, port);
        }
    } else {
        snprintf(out, sizeof out, "unknown");
    }
    /* Kept in the queue's block (an empty one if nothing is queued). */
    if (!m->q)
        m->q = calloc(1, sizeof *m->q);
    if (!m->q)
        return "unknown";
    m->q->peer = strdup(out);
    return m->q->peer ? m->q->peer : "unknown";
}

size_t net_conn_outbound(const net_conn_t *c)
{
    return q_bytes(c);
}

int net_respond(net_conn_t *c, int status, const char *content_type, const char *extra_headers,
                const void *body, size_t len)
{
    if (c->flags & F_CLOSING)
        return NET_E_CLOSED;
    if ((c->flags & F_WS) || !(c->flags & F_REQ))
        return NET_E_STATE;
    if (status < 200 || status > 599)
        return RT_EINVAL;
    bool ka = (c->flags & F_REQ_KA) && !(c->flags & F_DRAIN);
    net_http_buf_t b;
    net_http_buf_init(&b);
    int rc = net_http_response_start(&b, status);
    if (!rc && content_type)
        rc = net_http_response_header(&b, "Content-Type", content_type);
    if (!rc && !ka)
        rc = net_http_response_header(&b, "Connection", "close");
    else if (!rc && (c->flags & F_REQ_10))
        rc = net_http_response_header(&b, "Connection", "keep-alive");
    if (!rc && extra_headers)
        rc = net_http_buf_append(&b, extra_headers, strlen(extra_headers));
    if (!rc) {
        if (status == 204 || status == 304) {
            rc = net_http_response_end_headers(&b);
        } else if (c->flags & F_REQ_HEAD) {
            char n[24];
            snprintf(n, sizeof n, "%zu", len);
            rc = net_http_response_header(&b, "Content-Length", n);
            if (!rc)
                rc = net_http_response_end_headers(&b);
        } else {
            rc = net_http_response_end(&b, body, len);
        }
    }
    if (rc) {
        /* Nothing was sent: the request is still pending. */
        net_http_buf_free(&b);
        return rc == NET_HTTP_E_NOMEM ? RT_ENOMEM : RT_EINVAL;
    }
    c->flags &= ~(F_REQ | F_REQ_KA | F_REQ_HEAD | F_REQ_10);
    rc = send_bytes(c, b.data, b.len);
    net_http_buf_free(&b);
    if (rc != RT_OK)
        return rc;
    if (!ka) {
        start_linger(c);
        return RT_OK;
    }
    if (!(c->flags & F_IN_FEED)) {
        /* Answered later (from on_info): go on with what waited, as a
         * message to ourselves, so that the application's callback is not
         * re-entered from inside net_respond. */
        if (c->u.http->stash_len)
            cast_own(c->pid, TAG_RESUME, 0);
        else
            http_timeouts(c);
    }
    return RT_OK;
}

int net_respond_error(net_conn_t *c, int status, const char *code, const char *message)
{
    size_t len = 0;
    char *body = net_http_json_error_body(code, message, &len);
    if (!body)
        return RT_ENOMEM;
    int rc = net_respond(c, status, "application/json", NULL, body, len);
    free(body);
    return rc;
}

int net_ws_send(net_conn_t *c, bool text, const void *data, size_t len)
{
    if (c->flags & (F_CLOSING | F_CLOSE_SENT))
        return NET_E_CLOSED;
    if (!(c->flags & F_WS))
        return NET_E_STATE;
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t h = ws_frame_write_header(hdr, text ? WS_OP_TEXT : WS_OP_BINARY, true, len);
    uv_buf_t parts[2] = {mkbuf((char *)hdr, h),
                         mkbuf((char *)data, len)};
    int rc = send_copy(c, parts, len ? 2 : 1);
    if (rc == RT_OK)
        stat_add(&loop_of(c)->st.frames_out, 1);
    return rc;
}

int net_ws_send_frame(net_conn_t *c, rt_buf_t *frame)
{
    if (c->flags & (F_CLOSING | F_CLOSE_SENT))
        return NET_E_CLOSED;
    if (!(c->flags & F_WS))
        return NET_E_STATE;
    int rc = send_shared(c, frame);
    if (rc == RT_OK)
        stat_add(&loop_of(c)->st.frames_out, 1);
    return rc;
}

void net_ws_close(net_conn_t *c, int code, const char *reason)
{
    if (!(c->flags & F_WS) || (c->flags & F_REPORTED))
        return;
    ws_close_start(c, code, reason);
}

/* ---- loops ------------------------------------------------------------------ */

static void exec_wake(rt_exec_t *e)
{
    net_loop_t *l = e->data;
    if (tls_loop == l && l->in_cb) {
        l->run_exec = true; /* io_end runs the executor before returning */
        return;
    }
    uv_async_send(&l->async);
}

static void stop_listening(net_loop_t *l)
{
    if (l->listening) {
        l->listening = false;
        uv_close((uv_handle_t *)&l->listener, NULL);
    }
}

/* Closes every connection now (net_server_free): WebSockets get a best
 * effort close 1001 first. */
static void begin_shutdown(net_loop_t *l)
{
    l->shutting = true;
    stop_listening(l);
    /* Closing never frees synchronously, so the walk is safe. */
    for (net_conn_t *c = l->conns; c; c = c->next) {
        if (c->flags & F_CLOSING)
            continue;
        if ((c->flags & F_WS) && !(c->flags & F_CLOSE_SENT)) {
            c->flags |= F_CLOSE_SENT;
            if (!c->ws_code)
                c->ws_code = WS_CLOSE_GOING_AWAY;
            flush_now(c); /* what was sent before goes first */
            if (!q_len(c) && !(c->flags & F_CLOSING)) {
                ws_frame_t f;
                if (ws_close_encode(WS_CLOSE_GOING_AWAY, "server shutting down", 20, &f) == 0) {
                    uv_buf_t b = mkbuf((char *)f.data, f.len);
                    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
                    ws_frame_free(&f);
                }
            }
        }
        conn_close(c);
    }
}

static void on_async(uv_async_t *a)
{
    net_loop_t *l = a->data;
    net_server_t *s = l->srv;
    /* acquire: pairs with the release in post_cmd. */
    uint32_t cmd = atomic_exchange_explicit(&l->cmd, 0, memory_order_acquire);
    if (cmd & CMD_STOP_ACCEPT) {
        stop_listening(l);
        pthread_mutex_lock(&s->mu);
        s->acks++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    if ((cmd & CMD_SHUTDOWN) && !l->shutting)
        begin_shutdown(l);
    /* Bounded turns per wake; if more remain, come back after the loop
     * has polled I/O once, so sockets are served in between. Wakes from
     * the turns themselves are noted, not sent (exec_wake). */
    l->in_cb = true;
    size_t left = rt_exec_run(&l->exec, EXEC_BATCH);
    l->in_cb = false;
    if (left > 0 || l->run_exec) {
        l->run_exec = false;
        uv_async_send(a);
        return;
    }
    if (l->shutting && !l->finished && l->nconns == 0 && l->nprocs == 0) {
        l->finished = true;
        uv_close((uv_handle_t *)&l->tick, NULL);
        uv_close((uv_handle_t *)&l->async, NULL);
        uv_close((uv_handle_t *)&l->flush_check, NULL);
        uv_close((uv_handle_t *)&l->flush_prepare, NULL);
        /* uv_run returns once these are closed. */
    }
}

static void *loop_main(void *arg)
{
    net_loop_t *l = arg;
    char name[16];
    snprintf(name, sizeof name, "roost-io-%u", l->idx);
    pthread_setname_np(pthread_self(), name);
    tls_loop = l;
    uv_run(&l->uv, UV_RUN_DEFAULT);
    return NULL;
}

static void post_cmd(net_loop_t *l, uint32_t cmd)
{
    /* release: whatever the caller wrote before is seen by the loop. */
    atomic_fetch_or_explicit(&l->cmd, cmd, memory_order_release);
    uv_async_send(&l->async);
}

/* A listening socket on host:*port with SO_REUSEPORT; *port is set from
 * the first bind when it is 0. Returns the fd or -1. */
static int listen_socket(const char *host, int *port)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (uv_ip4_addr(host, *port, a4) == 0) {
        slen = sizeof *a4;
    } else if (uv_ip6_addr(host, *port, a6) == 0) {
        slen = sizeof *a6;
    } else {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    /* TCP_NODELAY here is inherited by accepted sockets (accept_one). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, slen) < 0) {
        close(fd);
        return -1;
    }
    if (*port == 0) {
        slen = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0) {
            close(fd);
            return -1;
        }
        *port = ntohs(ss.ss_family == AF_INET6 ? a6->sin6_port : a4->sin_port);
    }
    return fd;
}

/* Builds loop i on the calling thread (its thread is not running yet). */
static int loop_init(net_server_t *s, unsigned i)
{
    net_loop_t *l = &s->loops[i];
    l->srv = s;
    l->idx = i;
    pthread_mutex_init(&l->mu, NULL);
    if (uv_loop_init(&l->uv) < 0)
        return RT_ENOMEM;
    l->inited = true;
    rt_exec_init(&l->exec, exec_wake, l);
    l->exec_inited = true;
    uv_async_init(&l->uv, &l->async, on_async);
    l->async.data = l;
    uv_timer_init(&l->uv, &l->tick);
    l->t0 = uv_now(&l->uv);
    l->tick.data = l;
    /* The flush handles run every iteration but never keep the loop
     * alive by themselves (unref): the loop ends when tick and async are
     * closed, as before. */
    uv_check_init(&l->uv, &l->flush_check);
    l->flush_check.data = l;
    uv_check_start(&l->flush_check, on_flush_check);
    uv_unref((uv_handle_t *)&l->flush_check);
    uv_prepare_init(&l->uv, &l->flush_prepare);
    l->flush_prepare.data = l;
    uv_prepare_start(&l->flush_prepare, on_flush_prepare);
    uv_unref((uv_handle_t *)&l->flush_prepare);
    l->rbuf = malloc(READ_BUF_SIZE);
    if (!l->rbuf)
        return RT_ENOMEM;
    const net_config_t *cfg = &s->cfg;
    l->tmo_ms[TMO_HEADER] = (uint64_t)cfg->header_timeout_ms;
    l->tmo_ms[TMO_KEEPALIVE] = (uint64_t)cfg->keepalive_timeout_ms;
    l->tmo_ms[TMO_WS_IDLE] = (uint64_t)cfg->ws_idle_timeout_ms;
    l->tmo_ms[TMO_LINGER] = (uint64_t)cfg->linger_ms;
    /* One tick a second, or finer when a timeout is short (tests). */
    int shortest = cfg->header_timeout_ms;
    if (cfg->keepalive_timeout_ms < shortest)
        shortest = cfg->keepalive_timeout_ms;
    if (cfg->ws_idle_timeout_ms < shortest)
        shortest = cfg->ws_idle_timeout_ms;
    uint64_t period = (uint64_t)shortest / 4;
    if (period > 1000)
        period = 1000;
    if (period < 10)
        period = 10;
    uv_timer_start(&l->tick, on_tick, period, period);

    int fd = listen_socket(cfg->host, &s->port);
    if (fd < 0)
        return NET_E_BIND;
    uv_tcp_init(&l->uv, &l->listener);
    l->listener.data = l;
    l->listening = true;
    if (uv_tcp_open(&l->listener, fd) < 0) {
        close(fd);
        return NET_E_BIND;
    }
    if (uv_listen((uv_stream_t *)&l->listener, LISTEN_BACKLOG, on_connection) < 0)
        return NET_E_BIND;
    return RT_OK;
}

/* Frees loop i after its thread has ended (or never started). */
static void loop_fini(net_loop_t *l)
{
    if (l->inited) {
        if (!l->thread_started) {
            /* Built but never run: close the handles here. */
            stop_listening(l);
            uv_close((uv_handle_t *)&l->tick, NULL);
            uv_close((uv_handle_t *)&l->async, NULL);
            uv_close((uv_handle_t *)&l->flush_check, NULL);
            uv_close((uv_handle_t *)&l->flush_prepare, NULL);
            uv_run(&l->uv, UV_RUN_DEFAULT);
        }
        if (uv_loop_close(&l->uv) != 0)
            fprintf(stderr, "roost net: loop %u closed with handles open\n", l->idx);
    }
    if (l->exec_inited)
        rt_exec_destroy(&l->exec);
    while (l->wfree) {
        uv_write_t *w = l->wfree;
        l->wfree = w->data;
        free(w);
    }
    free(l->rbuf);
    free(l->flushq);
    ws_reader_free(&l->scratch); /* a buffer left by an unwound feed */
    pthread_mutex_destroy(&l->mu);
}

static void server_free_all(net_server_t *s)
{
    for (unsigned i = 0; i < s->nloops; i++)
        if (s->loops[i].thread_started)
            post_cmd(&s->loops[i], CMD_SHUTDOWN);
    for (unsigned i = 0; i < s->nloops; i++)
        if (s->loops[i].thread_started)
            pthread_join(s->loops[i].thread, NULL);
    for (unsigned i = 0; i < s->nloops; i++)
        loop_fini(&s->loops[i]);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->loops);
    free(s->host_copy);
    free(s);
}

int net_server_start(const net_config_t *cfg, net_server_t **out)
{
    net_config_t def;
    net_config_default(&def);
    net_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return RT_ENOMEM;
    s->cfg = *cfg;
    /* 0 in a limit means its default. */
    if (!s->cfg.host)
        s->cfg.host = def.host;
    if (!s->cfg.max_header)
        s->cfg.max_header = def.max_header;
    if (!s->cfg.max_body)
        s->cfg.max_body = def.max_body;
    if (!s->cfg.max_frame)
        s->cfg.max_frame = def.max_frame;
    if (!s->cfg.max_outbound)
        s->cfg.max_outbound = def.max_outbound;
    if (s->cfg.header_timeout_ms <= 0)
        s->cfg.header_timeout_ms = def.header_timeout_ms;
    if (s->cfg.keepalive_timeout_ms <= 0)
        s->cfg.keepalive_timeout_ms = def.keepalive_timeout_ms;
    if (s->cfg.ws_idle_timeout_ms <= 0)
        s->cfg.ws_idle_timeout_ms = def.ws_idle_timeout_ms;
    if (s->cfg.linger_ms <= 0)
        s->cfg.linger_ms = def.linger_ms;
    s->host_copy = strdup(s->cfg.host);
    unsigned n = s->cfg.io_threads;
    if (!n) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (unsigned)cores : 1;
    }
    if (n > MAX_IO_THREADS)
        n = MAX_IO_THREADS;
    s->loops = calloc(n, sizeof *s->loops);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!s->host_copy || !s->loops) {
        server_free_all(s);
        return RT_ENOMEM;
    }
    s->cfg.host = s->host_copy;
    s->port = s->cfg.port;
    s->nloops = n;
    for (unsigned i = 0; i < n; i++) {
        int rc = loop_init(s, i);
        if (rc) {
            server_free_all(s);
            return rc;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        net_loop_t *l = &s->loops[i];
        if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            server_free_all(s);
            return RT_ENOMEM;
        }
        l->thread_started = true;
    }
    *out = s;
    return RT_OK;
}

int net_server_port(const net_server_t *s)
{
    return s->port;
}

void *net_server_app_data(const net_server_t *s)
{
    return s->cfg.app_data;
}

void net_server_stop_accepting(net_server_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t want = s->acks + s->nloops;
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->nloops; i++)
        post_cmd(&s->loops[i], CMD_STOP_ACCEPT);
    pthread_mutex_lock(&s->mu);
    while (s->acks < want)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static uint64_t open_connections(const net_server_t *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->nloops; i++)
        n += atomic_load_explicit(&s->loops[i].st.connections, memory_order_relaxed);
    return n;
}

/* Waits on s->cv until no connection is left or `until` (CLOCK_MONOTONIC
 * ns) passes. Returns true if none is left. */
static bool wait_gone(net_server_t *s, uint64_t until)
{
    pthread_mutex_lock(&s->mu);
    /* Bounded: every wake either ends the wait or re-checks a deadline. */
    while (open_connections(s) > 0 && rt_now_ns() < until) {
        uint64_t t = until;
        struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
                              .tv_nsec = (long)(t % 1000000000u)};
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    bool gone = open_connections(s) == 0;
    pthread_mutex_unlock(&s->mu);
    return gone;
}

static int cmp_pid(const void *a, const void *b)
{
    rt_pid_t x = *(const rt_pid_t *)a, y = *(const rt_pid_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct pidvec {
    rt_pid_t *v;
    size_t n, cap;
} pidvec_t;

static bool pv_add(pidvec_t *p, rt_pid_t pid)
{
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 256;
        rt_pid_t *nv = realloc(p->v, ncap * sizeof *nv);
        if (!nv)
            return false;
        p->v = nv;
        p->cap = ncap;
    }
    p->v[p->n++] = pid;
    return true;
}


void net_server_drain(net_server_t *s, int code, unsigned batch, int interval_ms, int timeout_ms)
{
    uint64_t deadline = rt_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    if (!batch)
        batch = UINT32_MAX;
    if (interval_ms < 0)
        interval_ms = 0;
    atomic_store_explicit(&s->draining, true, memory_order_relaxed);
    pidvec_t asked = {0}; /* sorted after each round */
    pidvec_t ws = {0};
    /* Rounds: take the connections not asked yet, ask HTTP ones at once
     * and WebSockets `batch` at a time. A new round only starts when the
     * previous one is exhausted, to catch connections that came since. */
    while (rt_now_ns() < deadline) {
        ws.n = 0;
        size_t before = asked.n;
        for (unsigned i = 0; i < s->nloops; i++) {
            net_loop_t *l = &s->loops[i];
            pthread_mutex_lock(&l->mu);
            for (net_conn_t *c = l->conns; c; c = c->next) {
                if (before && bsearch(&c->pid, asked.v, before, sizeof *asked.v, cmp_pid))
                    continue;
                if (c->ws_pub) {
                    pv_add(&ws, c->pid);
                } else if (pv_add(&asked, c->pid)) {
                    cast_own(c->pid, TAG_DRAIN, (uint64_t)code);
                }
            }
            pthread_mutex_unlock(&l->mu);
        }
        if (asked.n == before && ws.n == 0)
            break; /* everyone has been asked */
        for (size_t i = 0; i < ws.n && rt_now_ns() < deadline; i += batch) {
            if (i) {
                uint64_t t = rt_now_ns() + (uint64_t)interval_ms * 1000000u;
                if (wait_gone(s, t < deadline ? t : deadline))
                    break;
            }
            for (size_t j = i; j < ws.n && j < i + batch; j++) {
                cast_own(ws.v[j], TAG_DRAIN, (uint64_t)code);
                pv_add(&asked, ws.v[j]);
            }
        }
        qsort(asked.v, asked.n, sizeof *asked.v, cmp_pid);
        if (open_connections(s) == 0)
            break;
    }
    wait_gone(s, deadline);
    atomic_store_explicit(&s->draining, false, memory_order_relaxed);
    free(asked.v);
    free(ws.v);
}

void net_server_free(net_server_t *s)
{
    if (s)
        server_free_all(s);
}

void net_server_stats(const net_server_t *s, net_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < s->nloops; i++) {
        const loop_stats_t *st = &s->loops[i].st;
#define SUM(f) out->f += atomic_load_explicit(&st->f, memory_order_relaxed)
        SUM(connections);
        SUM(websockets);
        SUM(accepted);
        SUM(http_requests);
        SUM(frames_in);
        SUM(frames_out);
        SUM(bytes_in);
        SUM(bytes_out);
        for (int k = 0; k < 16; k++)
            SUM(closes[k]);
#undef SUM
    }
}
