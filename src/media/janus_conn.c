/*
 * media/janus_conn.c — one connection attempt to Janus, plain or TLS, with
 * its own I/O thread (media/janus_conn.h has the contract).
 *
 * The thread: resolve and connect, TLS handshake (wss://), WebSocket
 * upgrade — all blocking, with a 10 s limit on each read and write — then
 * the socket turns non-blocking and one poll() loop waits on it and on an
 * eventfd the process signals when it has queued frames or wants the
 * connection closed. Reads go until the socket (or TLS) would block, so
 * nothing stays buffered inside OpenSSL while poll() sleeps; writes take
 * the whole queue at once and keep what the socket would not take.
 */
#include "media/janus_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "media/janus.h"
#include "net/ws.h"

#define HANDSHAKE_TIMEOUT_S 10
#define IN_CAP (256u * 1024)      /* one read buffer; a message may span several */
#define MSG_MAX (64u << 20)       /* one Janus message at most */

struct janus_conn {
    rt_pid_t owner;
    uint64_t gen;
    char host[256], port[16], path[512];
    SSL_CTX *tls;
    SSL *ssl;                    /* thread's; freed by janus_conn_free */
    _Atomic int fd;              /* set by the thread once connected, -1 before;
                                    closed only by janus_conn_free */
    int wake;                    /* eventfd */
    pthread_t thread;
    _Atomic bool stop;
    pthread_mutex_t mu;          /* guards out */
    uint8_t *out;                /* frames queued by the process */
    size_t out_len, out_cap;
    _Atomic size_t queued;       /* out + what the thread holds unwritten */
};

static void io_send(janus_conn_t *c, uint32_t tag, char *text)
{
    rt_msg_t *m = rt_msg_new(tag);
    if (!m) {
        free(text);
        return;
    }
    m->a = c->gen;
    if (text)
        rt_msg_set_data(m, text, RT_OWN_FREE);
    rt_send_msg(c->owner, m);
}

static void wake(janus_conn_t *c)
{
    uint64_t one = 1;
    ssize_t n = write(c->wake, &one, sizeof one);
    (void)n; /* a full counter is awake anyway */
}

/* Queues a masked client frame. */
static bool queue_frame(janus_conn_t *c, ws_opcode_t op, const void *payload, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80u | (unsigned)op);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80u | len);
    } else if (len <= 0xffff) {
        hdr[h++] = 0x80u | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80u | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t r = (uint32_t)random() ^ (uint32_t)rt_now_ns();
    uint8_t mask[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24)};
    memcpy(hdr + h, mask, 4);
    h += 4;
    size_t total = h + len;
    bool ok = false;
    pthread_mutex_lock(&c->mu);
    if (atomic_load(&c->queued) + total <= JANUS_CONN_OUT_MAX) {
        if (c->out_len + total > c->out_cap) {
            size_t ncap = c->out_cap ? c->out_cap : 4096;
            while (ncap < c->out_len + total)
                ncap *= 2;
            uint8_t *nb = realloc(c->out, ncap);
            if (nb) {
                c->out = nb;
                c->out_cap = ncap;
            }
        }
        if (c->out_len + total <= c->out_cap) {
            uint8_t *dst = c->out + c->out_len;
            memcpy(dst, hdr, h);
            const uint8_t *p = payload;
            for (size_t i = 0; i < len; i++)
                dst[h + i] = p[i] ^ mask[i & 3];
            c->out_len += total;
            atomic_fetch_add(&c->queued, total);
            ok = true;
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (!ok)
        atomic_store(&c->stop, true); /* Janus stopped reading (or no memory) */
    wake(c);
    return ok;
}

/* ---- I/O, plain or TLS ---------------------------------------------------- */

enum { IO_AGAIN = -2, IO_FAIL = -1 };

/* What an SSL_read/SSL_write result r <= 0 means: 0 the peer closed the
 * TLS session; IO_AGAIN with what to wait for (TLS may need to write to
 * read, and the reverse); IO_FAIL. */
static ssize_t ssl_result(janus_conn_t *c, int r, short *want)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        return IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return IO_FAIL;
    }
}

/* > 0 bytes; 0 the peer closed; IO_AGAIN with *want = POLLIN/POLLOUT;
 * IO_FAIL. */
static ssize_t io_read(janus_conn_t *c, void *buf, size_t n, short *want)
{
    if (!c->ssl) {
        ssize_t r;
        do
            r = recv(c->fd, buf, n, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            *want = POLLIN;
            return IO_AGAIN;
        }
        return r < 0 ? IO_FAIL : r;
    }
    int r = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    return r > 0 ? r : ssl_result(c, r, want);
}

static ssize_t io_write(janus_conn_t *c, const void *buf, size_t n, short *want)
{
    if (!c->ssl) {
        ssize_t r;
        do
            r = send(c->fd, buf, n, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            *want = POLLOUT;
            return IO_AGAIN;
        }
        return r <= 0 ? IO_FAIL : r;
    }
    int r = SSL_write(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    return r > 0 ? r : ssl_result(c, r, want);
}

/* Blocking (handshake) helpers: the socket has send/receive timeouts. */
static bool write_all(janus_conn_t *c, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        short want;
        ssize_t r = io_write(c, p, n, &want);
        if (r <= 0)
            return false; /* IO_AGAIN here is the timeout */
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static void report(janus_conn_t *c, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    fprintf(stderr, "roost: janus %s:%s: %s%s%s\n", c->host, c->port, what, e ? ": " : "", buf);
}

static int dial(janus_conn_t *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(c->host, c->port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        struct timeval tv = {.tv_sec = HANDSHAKE_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    return fd;
}

static bool tls_start(janus_conn_t *c)
{
    c->ssl = SSL_new(c->tls);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return false;
    /* Verify the name we dialled: an IP literal against the certificate's
     * IP addresses, a host name against its DNS names (and send it as SNI). */
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, c->host, ip) == 1 || inet_pton(AF_INET6, c->host, ip) == 1;
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1)
            return false;
    } else if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1 ||
               SSL_set1_host(c->ssl, c->host) != 1) {
        return false;
    }
    if (SSL_connect(c->ssl) != 1) {
        report(c, "TLS handshake failed");
        return false;
    }
    return true;
}

/* Client handshake; leftover bytes after the response go to *rest. */
static bool handshake(janus_conn_t *c, uint8_t *buf, size_t cap, size_t *rest_off, size_t *rest_len)
{
    uint8_t raw[16];
    for (int i = 0; i < 16; i++)
        raw[i] = (uint8_t)(random() ^ (long)rt_now_ns());
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    size_t k = 0;
    for (int i = 0; i < 16; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (i + 1 < 16 ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < 16 ? raw[i + 2] : 0);
        key[k++] = b64[(v >> 18) & 63];
        key[k++] = b64[(v >> 12) & 63];
        key[k++] = i + 1 < 16 ? b64[(v >> 6) & 63] : '=';
        key[k++] = i + 2 < 16 ? b64[v & 63] : '=';
    }
    key[k] = 0;
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: janus-protocol\r\n\r\n",
                     c->path, c->host, c->port, key);
    if (n <= 0 || (size_t)n >= sizeof req || !write_all(c, req, (size_t)n))
        return false;
    size_t have = 0;
    for (;;) {
        if (have + 1 >= cap)
            return false;
        short want;
        ssize_t r = io_read(c, buf + have, cap - 1 - have, &want);
        if (r <= 0)
            return false;
        have += (size_t)r;
        buf[have] = 0;
        char *end = strstr((char *)buf, "\r\n\r\n");
        if (!end)
            continue;
        size_t hlen = (size_t)(end - (char *)buf) + 4;
        *end = 0;
        char accept[WS_ACCEPT_LEN + 1];
        if (ws_accept_key(key, strlen(key), accept) != 0)
            return false;
        if (strncmp((char *)buf, "HTTP/1.1 101", 12) != 0 || !strstr((char *)buf, accept) ||
            !strcasestr((char *)buf, "janus-protocol"))
            return false;
        *rest_off = hlen;
        *rest_len = have - hlen;
        return true;
    }
}

/* Parses server (unmasked) frames in buf[0..*len); delivers messages and
 * answers pings; keeps an incomplete frame at the front. false = close. */
static bool parse_frames(janus_conn_t *c, uint8_t *buf, size_t *len, uint8_t **msg, size_t *msg_len)
{
    size_t off = 0;
    for (;;) {
        size_t avail = *len - off;
        uint8_t *p = buf + off;
        if (avail < 2)
            break;
        bool fin = p[0] & 0x80;
        unsigned op = p[0] & 0x0f;
        if (p[1] & 0x80)
            return false; /* servers never mask */
        uint64_t plen = p[1] & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | p[2 + i];
            h = 10;
        }
        if (plen > MSG_MAX || *msg_len + plen > MSG_MAX)
            return false;
        if (h + plen > IN_CAP)
            return false; /* a frame that can never fit the read buffer */
        if (avail < h + plen)
            break;
        const uint8_t *pl = p + h;
        if (op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CONT) {
            uint8_t *nm = realloc(*msg, *msg_len + plen + 1);
            if (!nm)
                return false;
            *msg = nm;
            memcpy(nm + *msg_len, pl, plen);
            *msg_len += plen;
            if (fin) {
                nm[*msg_len] = 0;
                io_send(c, JANUS_IO_MSG, (char *)nm);
                *msg = NULL;
                *msg_len = 0;
            }
        } else if (op == WS_OP_PING) {
            if (!queue_frame(c, WS_OP_PONG, pl, plen))
                return false;
        } else if (op == WS_OP_CLOSE) {
            return false;
        }
        off += h + plen;
    }
    memmove(buf, buf + off, *len - off);
    *len -= off;
    return true;
}

/* The connected loop: read until it would block, write what is queued,
 * sleep in poll() on the socket and the eventfd. */
static void pump(janus_conn_t *c, uint8_t *buf, size_t len)
{
    uint8_t *msg = NULL, *wbuf = NULL;
    size_t msg_len = 0, wlen = 0, woff = 0, wcap = 0;
    short rwant = POLLIN, wwant = 0;
    while (!atomic_load(&c->stop)) {
        if (!parse_frames(c, buf, &len, &msg, &msg_len))
            break;
        ssize_t r = io_read(c, buf + len, IN_CAP - len, &rwant);
        if (r == 0 || r == IO_FAIL)
            break;
        if (r > 0) {
            len += (size_t)r;
            continue; /* parse, then read more until it would block */
        }
        if (woff == wlen) { /* take everything the process queued since */
            pthread_mutex_lock(&c->mu);
            uint8_t *tb = c->out;
            size_t tc = c->out_cap;
            wlen = c->out_len;
            c->out = wbuf;
            c->out_cap = wcap;
            c->out_len = 0;
            pthread_mutex_unlock(&c->mu);
            wbuf = tb;
            wcap = tc;
            woff = 0;
        }
        wwant = 0;
        while (woff < wlen) {
            ssize_t w = io_write(c, wbuf + woff, wlen - woff, &wwant);
            if (w == IO_AGAIN)
                break;
            if (w <= 0)
                goto out; /* failed, or the peer closed the TLS session */
            woff += (size_t)w;
            atomic_fetch_sub(&c->queued, (size_t)w);
        }
        /* Anything queued from here on has signalled the eventfd: poll()
         * returns at once for it. */
        struct pollfd pf[2] = {{.fd = c->fd, .events = (short)(rwant | wwant)},
                               {.fd = c->wake, .events = POLLIN}};
        int pr = poll(pf, 2, -1);
        if (pr < 0 && errno != EINTR)
            break;
        if (pf[0].revents & (POLLERR | POLLNVAL))
            break;
        if (pf[1].revents & POLLIN) {
            uint64_t v;
            ssize_t n = read(c->wake, &v, sizeof v);
            (void)n;
        }
    }
out:
    free(msg);
    free(wbuf);
}

static void *conn_main(void *arg)
{
    janus_conn_t *c = arg;
    /* OpenSSL writes with write(), not send(MSG_NOSIGNAL): a peer that is
     * gone would raise SIGPIPE and kill the process that does not ignore
     * it. Blocked here, it stays pending on this thread (which ends) and
     * the write fails with EPIPE. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    uint8_t *buf = malloc(IN_CAP);
    c->fd = buf ? dial(c) : -1;
    size_t off = 0, len = 0;
    if (c->fd >= 0 && (!c->tls || tls_start(c)) && handshake(c, buf, IN_CAP, &off, &len) &&
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) == 0) {
        memmove(buf, buf + off, len);
        io_send(c, JANUS_IO_UP, NULL);
        pump(c, buf, len);
        if (c->ssl)
            SSL_shutdown(c->ssl); /* best effort close_notify */
    }
    ERR_clear_error();
    free(buf);
    io_send(c, JANUS_IO_DOWN, NULL); /* the process joins us and frees the rest */
    return NULL;
}

/* ---- The process's side ----------------------------------------------------- */

janus_conn_t *janus_conn_start(const janus_conn_cfg_t *cfg)
{
    janus_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->owner = cfg->owner;
    c->gen = cfg->gen;
    c->tls = cfg->tls;
    c->fd = -1;
    snprintf(c->host, sizeof c->host, "%s", cfg->host);
    snprintf(c->port, sizeof c->port, "%s", cfg->port);
    snprintf(c->path, sizeof c->path, "%s", cfg->path);
    c->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake < 0) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        close(c->wake);
        free(c);
        return NULL;
    }
    return c;
}

bool janus_conn_send(janus_conn_t *c, const char *text, size_t len)
{
    return queue_frame(c, WS_OP_TEXT, text, len);
}

void janus_conn_close(janus_conn_t *c)
{
    atomic_store(&c->stop, true);
    wake(c);
}

void janus_conn_free(janus_conn_t *c)
{
    if (!c)
        return;
    janus_conn_close(c);
    /* A thread still in connect() or a handshake read gives up within the
     * socket's timeouts; shutdown makes it give up now. The fd is the
     * thread's, but it is only ever closed here, after the join. */
    int fd = c->fd;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    pthread_join(c->thread, NULL);
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    close(c->wake);
    pthread_mutex_destroy(&c->mu);
    free(c->out);
    free(c);
}

uint64_t janus_conn_gen(const janus_conn_t *c)
{
    return c->gen;
}

SSL_CTX *janus_conn_tls_new(const char *ca_file, char *err, size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, err_len, "cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Writes may be retried with the rest of a buffer that moved. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        unsigned long e = ERR_get_error();
        char buf[256] = "";
        if (e)
            ERR_error_string_n(e, buf, sizeof buf);
        ERR_clear_error();
        snprintf(err, err_len, "cannot load CA certificates from %s%s%s",
                 ca_file ? ca_file : "the system store", e ? ": " : "", buf);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
