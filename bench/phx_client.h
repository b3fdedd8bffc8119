/*
 * phx_client.h — the client toolkit of roost's server benchmarks
 * (bench/loadgen.c, bench/rooms_bench.c): one epoll loop, HTTP/1.1
 * keep-alive connections (REST calls, pipelined, answered in order) and
 * Phoenix V2 WebSocket connections (upgrade, masked text frames,
 * ping/pong, close), and what both programs need around them: run
 * control (signals, deadline, open-file limit), a set-up window, latency
 * samples and histograms, HS256 tokens (web/jwt.h), option parsing, the
 * table and `RESULT {json}` report, the server's VmRSS.
 *
 * Header-only on purpose: the Makefile builds every .c file in bench/ as
 * its own program with a main, so shared code cannot be a .c file there.
 * Every function is static and marked unused, so a program includes it
 * and uses what it needs without a -Wunused-function error; the few
 * globals (pc_interrupted) are per program for the same reason.
 *
 * Threads: none. Everything runs on the thread that calls pc_loop_run,
 * which must not be called from a callback.
 *
 * Memory: a pc_conn_t is owned by its loop. It is closed by the peer, by
 * an error or by pc_conn_close/pc_ws_close, and freed at the end of the
 * pc_loop_run in which it closed (or the next one, when it closed
 * outside the loop): after its PC_EV_CLOSE callback (WebSocket) or its
 * last status -1 answer (HTTP) a program must not touch it, unless it
 * registered the place it keeps the pointer with pc_conn_watch (the loop
 * sets it to NULL when it frees the connection; pc_conn_gone tests both).
 * Callbacks may send on any connection and close any connection.
 * Connecting never calls back: a connection that cannot even start (no
 * socket, connect() refused at once) is closed by the next pc_loop_run,
 * as libuv reports a connect error it saw at once on the next turn.
 *
 * Costs, per connection (loadgen holds 15,000 of them): one calloc'd
 * pc_conn_t, an output buffer of 512 bytes that grows as needed, and no
 * input buffer while it has no partial message: reads go to the loop's
 * one 64 KiB buffer and only a partial frame or response is kept. On
 * loopback the TCP handshake has usually completed when connect()
 * returns, so a WebSocket's upgrade request is written at once: no
 * EPOLLOUT round and no epoll_ctl MOD per connection (a failed connect
 * shows as EPOLLERR: no getsockopt either).
 *
 * Bounds: input is buffered up to PC_MAX_MSG per message; a server
 * message over it closes the connection (the benchmarks never expect
 * one). Every allocation failure exits(1) with "bench: out of memory".
 */
#ifndef ROOST_BENCH_PHX_CLIENT_H
#define ROOST_BENCH_PHX_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "web/jwt.h"

#define PC_FN static __attribute__((unused))
#define PC_MAX_MSG (8u << 20)
#define PC_READ_CHUNK 65536u

/* ---- Memory ------------------------------------------------------------- */

/* The benchmarks cannot do anything useful without memory: exit. */
static void pc_oom(void)
{
    fprintf(stderr, "bench: out of memory\n");
    exit(1);
}

PC_FN void *pc_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        pc_oom();
    return p;
}

PC_FN void *pc_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        pc_oom();
    return q;
}

/* snprintf that exits ("bench: <what> too long") instead of truncating:
 * a cut request or message would make a benchmark measure something
 * else. Returns the length written. */
static size_t pc_fmt(char *buf, size_t cap, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t pc_fmt(char *buf, size_t cap, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "bench: %s too long\n", what);
        exit(1);
    }
    return (size_t)n;
}

/* ---- Time ---------------------------------------------------------------- */

/* CLOCK_MONOTONIC: the send times carried in messages use it too, so
 * that sender and receiver (one process) compare like with like. */
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

PC_FN double pc_secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* ---- Run control ---------------------------------------------------------- */

/* Set by SIGINT/SIGTERM (pc_process_init): every loop of the programs
 * also ends on it, so an interrupted run still reports and cleans up. */
static volatile sig_atomic_t pc_interrupted;

static void pc_on_signal(int sig)
{
    (void)sig;
    pc_interrupted = 1;
}

/* SIGPIPE ignored (a peer's close shows as an error of send), SIGINT and
 * SIGTERM set pc_interrupted. Raises the soft limit of open files to the
 * hard one, since every connection is one; returns the soft limit now
 * (RLIM_INFINITY if unknown). */
PC_FN rlim_t pc_process_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, pc_on_signal);
    signal(SIGTERM, pc_on_signal);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return RLIM_INFINITY;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

/* ---- Samples: every latency kept, exact percentiles ----------------------- */

/* Latencies (ns), all kept; percentiles sort in place. For up to a few
 * hundred thousand values; beyond that, pc_hist_t. */
typedef struct pc_samples {
    uint64_t *v;
    size_t n, cap;
} pc_samples_t;

PC_FN void pc_samples_add(pc_samples_t *s, uint64_t x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = pc_xrealloc(s->v, s->cap * sizeof *s->v);
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

/* ---- Histogram: log-linear, ~1.6 % resolution ----------------------------- */

/* Values in any unit (loadgen records us, rooms_bench ns): exact below
 * 128, then 64 buckets per power of two, so a percentile is within 0.8 %
 * of the true value; count, sum, min and max are exact. A fixed 15 KB,
 * for the millions of deliveries of a fan-out. Zeroed = empty. */
#define PC_HIST_LINEAR 128
#define PC_HIST_SUB 64
#define PC_HIST_BUCKETS (PC_HIST_LINEAR + 58 * PC_HIST_SUB)

typedef struct pc_hist {
    uint64_t count, sum, min, max;
    uint32_t b[PC_HIST_BUCKETS];
} pc_hist_t;

static int pc_hist_index(uint64_t v)
{
    if (v < PC_HIST_LINEAR)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int sub = (int)((v >> (msb - 6)) & (PC_HIST_SUB - 1));
    int i = PC_HIST_LINEAR + (msb - 7) * PC_HIST_SUB + sub;
    return i < PC_HIST_BUCKETS ? i : PC_HIST_BUCKETS - 1;
}

/* The middle of bucket i. */
static uint64_t pc_hist_value(int i)
{
    if (i < PC_HIST_LINEAR)
        return (uint64_t)i;
    int k = i - PC_HIST_LINEAR;
    int msb = k / PC_HIST_SUB + 7;
    uint64_t sub = (uint64_t)(k % PC_HIST_SUB);
    uint64_t lo = (1ull << msb) | (sub << (msb - 6));
    return lo + (1ull << (msb - 6)) / 2;
}

PC_FN void pc_hist_add(pc_hist_t *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
    h->b[pc_hist_index(v)]++;
}

/* The p-th percentile (p in [0, 100]): the value of rank floor(p% of the
 * count) counted from 0, as the middle of its bucket and never above the
 * max; 0 when empty. */
PC_FN uint64_t pc_hist_pct(const pc_hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < PC_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want) {
            uint64_t v = pc_hist_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- Report: a table, then one RESULT line ---------------------------------- */

typedef struct pc_metric {
    const char *name;
    double value;
    const char *fmt; /* for the table; NULL: "%.3f" */
} pc_metric_t;

/* Prints
 *   <title>
 *     metric  value          (one row per metric, value per its fmt)
 *   RESULT {"workloads": {"<workload>": {"<metric>": {"median": v, "runs": [v]}, ...}}}
 * in the shape of the runtime benchmarks' RESULT (one run): whole
 * numbers as integers, others with 3 decimals. Scripts and
 * docs/performance.md read the RESULT line: keep its keys. */
PC_FN void pc_report(const char *workload, const char *title, const pc_metric_t *m, int n)
{
    printf("\n%s\n", title);
    printf("  %-28s %16s\n", "metric", "value");
    for (int i = 0; i < n; i++) {
        char v[64];
        snprintf(v, sizeof v, m[i].fmt ? m[i].fmt : "%.3f", m[i].value);
        printf("  %-28s %16s\n", m[i].name, v);
    }
    printf("\nRESULT {\"workloads\": {\"%s\": {", workload);
    for (int i = 0; i < n; i++) {
        char v[64];
        double x = m[i].value;
        if (isfinite(x) && fabs(x) < 9e15 && x == (double)(int64_t)x)
            snprintf(v, sizeof v, "%" PRId64, (int64_t)x);
        else
            snprintf(v, sizeof v, "%.3f", x);
        printf("%s\"%s\": {\"median\": %s, \"runs\": [%s]}", i ? ", " : "", m[i].name, v, v);
    }
    printf("}}}\n");
    fflush(stdout);
}

/* ---- Options --------------------------------------------------------------- */

typedef enum { PC_OPT_STR, PC_OPT_INT, PC_OPT_LONG, PC_OPT_DOUBLE } pc_opt_type_t;

/* One `--name value` option: value stored into *dst (const char *, int,
 * long or double, converted as atoi/atol/atof do); *given set when
 * present (may be NULL). */
typedef struct pc_opt {
    const char *name;
    pc_opt_type_t type;
    void *dst;
    bool *given;
} pc_opt_t;

#define PC_MAX_OPTS 64

/* Parses argv (getopt_long, long options only, plus --help). Values are
 * not checked here: each program checks its own ranges afterwards.
 * Returns 0, or 2 after an unknown option (getopt says which) or --help,
 * having printed usage to stdout. */
PC_FN int pc_opts_parse(int argc, char **argv, const pc_opt_t *opts, int n, void (*usage)(FILE *))
{
    struct option lo[PC_MAX_OPTS + 2];
    if (n > PC_MAX_OPTS) {
        fprintf(stderr, "bench: more than %d options\n", PC_MAX_OPTS);
        exit(2);
    }
    for (int i = 0; i < n; i++)
        lo[i] = (struct option){opts[i].name, required_argument, NULL, 256 + i};
    lo[n] = (struct option){"help", no_argument, NULL, '?'};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (o < 256 || o >= 256 + n) {
            usage(stdout);
            return 2;
        }
        const pc_opt_t *p = &opts[o - 256];
        switch (p->type) {
        case PC_OPT_STR: *(const char **)p->dst = optarg; break;
        case PC_OPT_INT: *(int *)p->dst = atoi(optarg); break;
        case PC_OPT_LONG: *(long *)p->dst = atol(optarg); break;
        case PC_OPT_DOUBLE: *(double *)p->dst = atof(optarg); break;
        }
        if (p->given)
            *p->given = true;
    }
    return 0;
}

/* The server under test: the same options in every benchmark. */
typedef struct pc_server {
    const char *host;    /* --host: an IPv4 address (127.0.0.1) */
    int port;            /* --port, required */
    const char *secret;  /* --secret: its JWT secret (tokens are minted here), required */
    const char *api_key; /* --api-key: its REST API key */
    long pid;            /* --server-pid: its process, to read its memory; 0: none */
} pc_server_t;

/* The pc_opt_t entries of a pc_server_t's options. */
#define PC_SERVER_OPTS(s)                                                                    \
    {"host", PC_OPT_STR, &(s)->host, NULL}, {"port", PC_OPT_INT, &(s)->port, NULL},           \
        {"secret", PC_OPT_STR, &(s)->secret, NULL}, {"api-key", PC_OPT_STR, &(s)->api_key, NULL}, \
        {"server-pid", PC_OPT_LONG, &(s)->pid, NULL}

/* A run with no argument at all asks for help (scripts/run-bench.sh
 * runs every bench binary so, and these benchmarks need a server, which
 * their script starts): prints usage and `(<note>)` to stdout. True if
 * it did; the program then exits 0. */
PC_FN bool pc_bare_run(int argc, void (*usage)(FILE *), const char *note)
{
    if (argc != 1)
        return false;
    usage(stdout);
    printf("(%s)\n", note);
    return true;
}

/* The index of name in names[0, n), or -1. */
PC_FN int pc_pick(const char *name, const char *const *names, int n)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

/* ---- The server's memory ------------------------------------------------------ */

/* VmRSS of /proc/<pid>/status in KiB; -1 for pid <= 0 or if unreadable. */
PC_FN long pc_vmrss_kib(long pid)
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
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
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
    /* 512: an upgrade request with its token fits; thousands of idle
     * connections each keep one. */
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + more)
        cap *= 2;
    b->data = pc_xrealloc(b->data, cap);
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

/* ---- Tokens and text ------------------------------------------------------------ */

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

/* The unsigned integer right after the first `key` (e.g. "\"seq\":")
 * in p[0, len) that is followed by a digit. For compact JSON that the
 * benchmarks wrote themselves: a fan-out receives millions of messages,
 * too many to parse each on one thread. */
PC_FN bool pc_find_u64(const char *p, size_t len, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    const char *end = p + len;
    for (const char *q = p; (q = memmem(q, (size_t)(end - q), key, kl)) != NULL; q++) {
        const char *d = q + kl;
        if (d >= end || *d < '0' || *d > '9')
            continue;
        uint64_t v = 0;
        while (d < end && *d >= '0' && *d <= '9')
            v = v * 10 + (uint64_t)(*d++ - '0');
        *out = v;
        return true;
    }
    return false;
}

/* ---- Set-up window ------------------------------------------------------------ */

/* Items 0..n-1 started in order, at most `limit` in set-up at once: a
 * listen backlog is finite, and thousands of SYNs at once would be
 * dropped and retried a second later. The program calls pc_window_done
 * once per started item when its set-up ends, well or not. */
typedef struct pc_window {
    long n, limit;
    long next, inflight;
} pc_window_t;

/* True, with the item in *i, if one may start now. */
PC_FN bool pc_window_next(pc_window_t *w, long *i)
{
    if (w->next >= w->n || w->inflight >= w->limit)
        return false;
    *i = w->next++;
    w->inflight++;
    return true;
}

PC_FN void pc_window_done(pc_window_t *w)
{
    w->inflight--;
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
    pc_buf_t in, out; /* in: only a partial message, between reads */
    bool writable_armed;
    /* HTTP: answers expected, in order (a ring) */
    pc_pending_t *pend;
    size_t pend_head, pend_n, pend_cap;
    /* WebSocket */
    pc_text_cb on_text;
    pc_event_cb on_event;
    int close_code;
    /* Set-up phases (CLOCK_MONOTONIC ns; 0 until reached): connect()
     * called, TCP connection up, WebSocket upgraded. */
    uint64_t t_start, t_connected, t_open;
    /* for the program */
    void *user;
    long idx;
    pc_conn_t **slot; /* pc_conn_watch: set to NULL when freed */
    /* closed, freed by the loop; could not start, closed by the loop */
    bool dead;
    pc_conn_t *next_dead, *next_failed;
};

struct pc_loop {
    int epfd;
    long conns;          /* open connections */
    pc_conn_t *dead;     /* closed, freed after the current dispatch */
    pc_conn_t *failed;   /* could not start: closed by the next run */
    const char *host;
    int port;
    struct sockaddr_in addr;
    int src_ips;         /* > 1: sockets bound to 127.0.0.1 .. 127.0.0.<src_ips> in turn */
    unsigned src_next;
    uint32_t rng;
    uint64_t now;        /* CLOCK_MONOTONIC when the last epoll_wait returned */
    uint64_t deadline;   /* pc_loop_expired after it; 0: none */
    char *rbuf;          /* every connection reads into it */
};

/* Returns 0; -1 (errno set) if epoll cannot be created, -2 if host is
 * not an IPv4 address. */
PC_FN int pc_loop_init(pc_loop_t *l, const char *host, int port)
{
    memset(l, 0, sizeof *l);
    l->host = host;
    l->port = port;
    l->src_ips = 1;
    l->addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &l->addr.sin_addr) != 1)
        return -2;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return -1;
    l->now = pc_now_ns();
    l->rng = 0x9e3779b9u ^ (uint32_t)l->now;
    l->rbuf = pc_xcalloc(1, PC_READ_CHUNK);
    return 0;
}

/* Spreads the sockets over source addresses 127.0.0.1 .. 127.0.0.k
 * (k <= 250), round robin: each has its own ephemeral port range. With
 * one address and thousands of connections to one port, every connect()
 * searches that range for a free port (~200 us of kernel time at 15,000
 * open) and the client, not the server, is what gets measured. */
PC_FN void pc_loop_src_ips(pc_loop_t *l, int k)
{
    l->src_ips = k < 1 ? 1 : k;
}

/* The run gives up timeout_s from now (pc_loop_expired). */
PC_FN void pc_loop_timeout(pc_loop_t *l, int timeout_s)
{
    l->deadline = pc_now_ns() + (uint64_t)timeout_s * 1000000000ull;
}

PC_FN bool pc_loop_expired(const pc_loop_t *l)
{
    return pc_interrupted || (l->deadline && pc_now_ns() >= l->deadline);
}

static uint32_t pc_rand(pc_loop_t *l)
{
    uint32_t x = l->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return l->rng = x;
}

/* The loop watches c for output only while something waits to be
 * written, or the TCP connection is not up yet. */
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

/* *slot (where the program keeps c) becomes NULL when the loop frees c,
 * so that the program can test it after pc_loop_run (pc_conn_gone). */
PC_FN void pc_conn_watch(pc_conn_t *c, pc_conn_t **slot)
{
    c->slot = slot;
}

/* Closed, or freed already (a watched pointer). */
PC_FN bool pc_conn_gone(const pc_conn_t *c)
{
    return !c || c->dead;
}

static pc_conn_t *pc_conn_new(pc_loop_t *l, pc_kind_t kind)
{
    pc_conn_t *c = pc_xcalloc(1, sizeof *c);
    c->loop = l;
    c->kind = kind;
    c->state = PC_CONNECTING;
    c->fd = -1;
    return c;
}

/* Opens the TCP connection; what c->out holds already is written at once
 * if the handshake is done by then (loopback). On failure c goes to the
 * loop's failed list: the next pc_loop_run closes it, so that a program
 * never gets a callback from inside a connect call. */
static void pc_conn_start(pc_conn_t *c)
{
    pc_loop_t *l = c->loop;
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto failed;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (l->src_ips > 1) {
        /* The port is chosen at connect(), per destination, not at bind(). */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + l->src_next++ % (unsigned)l->src_ips);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
            close(c->fd);
            c->fd = -1;
            goto failed;
        }
    }
    c->t_start = pc_now_ns();
    if (connect(c->fd, (struct sockaddr *)&l->addr, sizeof l->addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        goto failed;
    }
    l->conns++;
    if (pc_buf_size(&c->out) > 0) {
        /* A socket still connecting answers EAGAIN (or ENOTCONN) and
         * waits for EPOLLOUT as usual. */
        ssize_t w = send(c->fd, c->out.data + c->out.off, pc_buf_size(&c->out), MSG_NOSIGNAL);
        if (w >= 0) {
            c->t_connected = pc_now_ns();
            c->state = c->kind == PC_WS ? PC_UPGRADING : PC_OPEN;
            c->out.off += (size_t)w;
            if (pc_buf_size(&c->out) == 0)
                c->out.off = c->out.len = 0;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN && errno != EINTR) {
            goto failed; /* fd still open: pc_conn_close closes it */
        }
    }
    bool want = c->state == PC_CONNECTING || pc_buf_size(&c->out) > 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        goto failed;
    c->writable_armed = want;
    return;
failed:
    c->next_failed = l->failed;
    l->failed = c;
}

/* ---- HTTP -------------------------------------------------------------------- */

/* A keep-alive HTTP connection to the loop's host and port. Requests may
 * be queued at once; they are written when the connection is up. A
 * failed connect shows as status -1 answers. */
PC_FN pc_conn_t *pc_http_connect(pc_loop_t *l)
{
    pc_conn_t *c = pc_conn_new(l, PC_HTTP);
    pc_conn_start(c);
    return c;
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
    size_t n = pc_fmt(head, sizeof head, "request line",
                      "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s%s%sContent-Length: %zu\r\n\r\n",
                      method, path, c->loop->host, c->loop->port, api_key ? "Authorization: Bearer " : "",
                      api_key ? api_key : "", api_key ? "\r\n" : "",
                      body ? "Content-Type: application/json" : "", body ? "\r\n" : "", blen);
    pc_buf_put(&c->out, head, n);
    if (blen)
        pc_buf_put(&c->out, body, blen);
    if (c->pend_n == c->pend_cap) {
        size_t cap = c->pend_cap ? c->pend_cap * 2 : 16;
        pc_pending_t *p = pc_xcalloc(cap, sizeof *p);
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

/* Consumes the complete HTTP responses at the start of d[0, n): returns
 * the bytes used, or -1 if the connection must close. */
static ssize_t pc_http_consume(pc_conn_t *c, const char *buf, size_t n)
{
    size_t used = 0;
    for (;;) {
        const char *d = buf + used;
        size_t avail = n - used;
        if (avail == 0)
            return (ssize_t)used;
        const char *eoh = memmem(d, avail, "\r\n\r\n", 4);
        if (!eoh)
            return avail < 65536 ? (ssize_t)used : -1;
        size_t hlen = (size_t)(eoh - d) + 4;
        int status = 0;
        if (sscanf(d, "HTTP/1.%*d %d", &status) != 1)
            return -1;
        const char *v;
        size_t vl;
        size_t clen = 0;
        if (pc_header(d, hlen, "Content-Length", &v, &vl)) {
            char tmp[32];
            if (vl >= sizeof tmp)
                return -1;
            memcpy(tmp, v, vl);
            tmp[vl] = '\0';
            clen = (size_t)strtoull(tmp, NULL, 10);
        } else if (pc_header(d, hlen, "Transfer-Encoding", &v, &vl)) {
            fprintf(stderr, "bench: chunked responses are not supported\n");
            return -1;
        }
        if (clen > PC_MAX_MSG)
            return -1;
        if (avail < hlen + clen)
            return (ssize_t)used;
        bool close_after = pc_header(d, hlen, "Connection", &v, &vl) && vl == 5 &&
                           strncasecmp(v, "close", 5) == 0;
        used += hlen + clen;
        if (c->pend_n == 0)
            return -1; /* an answer nobody asked for */
        pc_pending_t p = c->pend[c->pend_head];
        c->pend_head = (c->pend_head + 1) % c->pend_cap;
        c->pend_n--;
        if (p.cb)
            p.cb(c, p.ctx, status, d + hlen, clen);
        if (close_after || c->dead)
            return -1;
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
 * upgraded, on_text per message, on_event(PC_EV_CLOSE) once at the end
 * (also when it could not even start). */
PC_FN pc_conn_t *pc_ws_connect(pc_loop_t *l, const char *token, pc_text_cb on_text,
                               pc_event_cb on_event, void *user, long idx)
{
    pc_conn_t *c = pc_conn_new(l, PC_WS);
    c->on_text = on_text;
    c->on_event = on_event;
    c->user = user;
    c->idx = idx;
    char req[2048];
    size_t n = pc_fmt(req, sizeof req, "token",
                      "GET /socket/websocket?vsn=2.0.0&token=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: cm9vc3QtYmVuY2gta2V5IQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n",
                      token, l->host, l->port);
    pc_buf_put(&c->out, req, n);
    pc_conn_start(c);
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

/* Consumes the upgrade answer and the complete frames at the start of
 * buf[0, n): returns the bytes used, or -1 if the connection ends. */
static ssize_t pc_ws_consume(pc_conn_t *c, const char *buf, size_t n)
{
    size_t used = 0;
    if (c->state == PC_UPGRADING || c->state == PC_CONNECTING) {
        const char *eoh = memmem(buf, n, "\r\n\r\n", 4);
        if (!eoh)
            return n < 65536 ? 0 : -1;
        int status = 0;
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status != 101) {
            c->close_code = status > 0 ? -status : 1006;
            return -1;
        }
        used = (size_t)(eoh - buf) + 4;
        c->state = PC_OPEN;
        c->t_open = c->loop->now;
        if (c->on_event)
            c->on_event(c, PC_EV_OPEN);
        if (c->dead)
            return -1;
        pc_flush(c); /* messages queued before the upgrade */
    }
    for (;;) {
        const uint8_t *d = (const uint8_t *)buf + used;
        size_t avail = n - used;
        if (avail < 2)
            return (ssize_t)used;
        int opcode = d[0] & 0x0f;
        bool fin = (d[0] & 0x80) != 0;
        uint64_t len = d[1] & 0x7f;
        size_t off = 2;
        if (d[1] & 0x80)
            return -1; /* a server frame must not be masked */
        if (len == 126) {
            if (avail < 4)
                return (ssize_t)used;
            len = ((uint64_t)d[2] << 8) | d[3];
            off = 4;
        } else if (len == 127) {
            if (avail < 10)
                return (ssize_t)used;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | d[2 + i];
            off = 10;
        }
        if (len > PC_MAX_MSG || !fin)
            return -1;
        if (avail < off + len)
            return (ssize_t)used;
        const char *p = (const char *)d + off;
        used += off + (size_t)len;
        switch (opcode) {
        case 0x1:
        case 0x2:
            if (c->on_text)
                c->on_text(c, p, (size_t)len);
            if (c->dead)
                return -1;
            break;
        case 0x8:
            c->close_code = len >= 2 ? (((uint8_t)p[0] << 8) | (uint8_t)p[1]) : 1005;
            pc_ws_frame(c, 0x8, p, len >= 2 ? 2 : 0);
            pc_flush(c);
            return -1;
        case 0x9:
            pc_ws_frame(c, 0xA, p, (size_t)len);
            pc_flush(c);
            break;
        default:
            break;
        }
    }
}

/* ---- The loop ------------------------------------------------------------------ */

/* Hands n bytes just read (in the loop's buffer) to the parser, after
 * the partial message the connection kept, if any; keeps what is left
 * of a message. False if the connection must close. */
static bool pc_consume(pc_conn_t *c, const char *data, size_t n)
{
    pc_buf_t *in = &c->in;
    bool direct = pc_buf_size(in) == 0;
    if (!direct) {
        pc_buf_put(in, data, n);
        data = in->data + in->off;
        n = pc_buf_size(in);
    }
    ssize_t used = c->kind == PC_HTTP ? pc_http_consume(c, data, n) : pc_ws_consume(c, data, n);
    if (used < 0 || c->dead)
        return false;
    if (direct) {
        if ((size_t)used < n)
            pc_buf_put(in, data + used, n - (size_t)used);
        return true;
    }
    in->off += (size_t)used;
    if (in->off == in->len) {
        /* A large message's buffer is not kept for an idle connection. */
        if (in->cap > 4096)
            pc_buf_free(in);
        else
            in->off = in->len = 0;
    }
    return true;
}

static void pc_readable(pc_conn_t *c)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        ssize_t n = recv(c->fd, c->loop->rbuf, PC_READ_CHUNK, 0);
        if (n > 0) {
            if (!pc_consume(c, c->loop->rbuf, (size_t)n)) {
                pc_conn_close(c, 1006);
                return;
            }
            if ((size_t)n < PC_READ_CHUNK)
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
    if (c->state == PC_CONNECTING) {
        /* A failed connect reports EPOLLERR or EPOLLHUP; why (SO_ERROR)
         * makes no difference here. */
        if (events & (EPOLLERR | EPOLLHUP)) {
            pc_conn_close(c, 1006);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->t_connected = c->loop->now;
        c->state = c->kind == PC_WS ? PC_UPGRADING : PC_OPEN;
        pc_flush(c);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        pc_readable(c);
    if (!c->dead && (events & EPOLLOUT))
        pc_flush(c);
}

/* Closes the connections that could not start. */
static void pc_close_failed(pc_loop_t *l)
{
    while (l->failed) {
        pc_conn_t *c = l->failed;
        l->failed = c->next_failed;
        if (!c->dead)
            pc_conn_close(c, 1006);
    }
}

/* Frees the connections closed since the last call (after the failed
 * ones are closed: a failed one may be on both lists). */
static void pc_reap(pc_loop_t *l)
{
    pc_close_failed(l);
    while (l->dead) {
        pc_conn_t *c = l->dead;
        l->dead = c->next_dead;
        if (c->slot && *c->slot == c)
            *c->slot = NULL;
        pc_buf_free(&c->in);
        pc_buf_free(&c->out);
        free(c->pend);
        free(c);
    }
}

/* Closes the connections that could not start, waits at most
 * timeout_ms for events and handles them, then frees the connections
 * closed meanwhile. Returns the number of events handled. */
PC_FN int pc_loop_run(pc_loop_t *l, int timeout_ms)
{
    struct epoll_event evs[1024];
    l->now = pc_now_ns();
    pc_close_failed(l);
    /* Connections just closed: their callbacks may have finished what
     * the caller waits for, so no wait. */
    int n = epoll_wait(l->epfd, evs, 1024, l->dead ? 0 : timeout_ms);
    l->now = pc_now_ns();
    for (int i = 0; i < n; i++)
        pc_dispatch(evs[i].data.ptr, evs[i].events);
    pc_reap(l);
    return n < 0 ? 0 : n;
}

/* Frees the closed connections and the loop. Connections still open
 * are left to the exit of the process (the server sees EOFs). */
PC_FN void pc_loop_free(pc_loop_t *l)
{
    pc_reap(l);
    close(l->epfd);
    l->epfd = -1;
    free(l->rbuf);
    l->rbuf = NULL;
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
    size_t n = pc_fmt(buf, sizeof buf, "message", "[%s,%s,\"%s\",\"%s\",%s]", jr, rf, topic, event,
                      payload_json);
    pc_ws_send(c, buf, n);
}

/* The server closes a WebSocket that sent nothing for 60 s (1001, idle
 * timeout; phoenix.js heartbeats every 30 s): a benchmark holding
 * sockets longer sends this. */
PC_FN void pc_phx_heartbeat(pc_conn_t *c)
{
    pc_phx_send(c, NULL, "hb", "phoenix", "heartbeat", "{}");
}

#endif /* ROOST_BENCH_PHX_CLIENT_H */
