/*
 * Unit tests for net/http: incremental parsing (any split, pipelining),
 * limits (431/413 at the exact boundary), malformed input (400),
 * keep-alive and upgrade, header lookup, query parameters, responses.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"

#include "fault_harness.h"

/* Feed all of s to p, returning the first non-NEED_MORE result (request
 * or error) and the bytes consumed up to it. */
static int feed_all(net_http_parser_t *p, const char *s, size_t len, size_t *used)
{
    size_t c = 0;
    int rc = net_http_parser_feed(p, s, len, &c);
    if (used)
        *used = c;
    return rc;
}

/* Feed one byte at a time until something other than NEED_MORE. */
static int feed_bytewise(net_http_parser_t *p, const char *s, size_t len, size_t *used)
{
    for (size_t i = 0; i < len; i++) {
        size_t c = 0;
        int rc = net_http_parser_feed(p, s + i, 1, &c);
        if (rc != NET_HTTP_NEED_MORE) {
            if (used)
                *used = i + c;
            return rc;
        }
        cr_assert_eq(c, 1);
    }
    if (used)
        *used = len;
    return NET_HTTP_NEED_MORE;
}

static const char simple_get[] =
    "GET /socket/websocket?vsn=2.0.0&token=abc HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "X-Thing:   spaced value  \r\n"
    "Accept: */*\r\n"
    "\r\n";

Test(http, simple_get)
{
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(feed_all(&p, simple_get, strlen(simple_get), &used), NET_HTTP_REQUEST);
    cr_assert_eq(used, strlen(simple_get));
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_not_null(r);
    cr_assert_eq(r->method, NET_HTTP_GET);
    cr_assert_str_eq(r->method_name, "GET");
    cr_assert_str_eq(r->url, "/socket/websocket?vsn=2.0.0&token=abc");
    cr_assert_str_eq(r->path, "/socket/websocket");
    cr_assert_eq(r->path_len, strlen("/socket/websocket"));
    cr_assert_str_eq(r->query, "vsn=2.0.0&token=abc");
    cr_assert_eq(r->query_len, strlen("vsn=2.0.0&token=abc"));
    cr_assert_eq(r->n_headers, 3);
    cr_assert_str_eq(r->headers[0].name, "Host");
    cr_assert_str_eq(net_http_header_get(r, "host"), "example.com");
    cr_assert_str_eq(net_http_header_get(r, "X-THING"), "spaced value");
    cr_assert_null(net_http_header_get(r, "Content-Type"));
    cr_assert_eq(r->body_len, 0);
    cr_assert_str_eq(r->body, "");
    cr_assert(r->keep_alive);
    cr_assert_not(r->upgrade);
    cr_assert_eq(r->http_major, 1);
    cr_assert_eq(r->http_minor, 1);
    net_http_parser_free(&p);
}

static const char post_req[] =
    "POST /api/rooms HTTP/1.1\r\n"
    "Host: h\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "{\"id\":\"r1\"}\r\n";

Test(http, post_body_one_byte_at_a_time)
{
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(feed_bytewise(&p, post_req, strlen(post_req), &used), NET_HTTP_REQUEST);
    cr_assert_eq(used, strlen(post_req));
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_eq(r->method, NET_HTTP_POST);
    cr_assert_str_eq(r->path, "/api/rooms");
    cr_assert_str_eq(r->query, "");
    cr_assert_str_eq(net_http_header_get(r, "content-type"), "application/json");
    cr_assert_eq(r->body_len, 13);
    cr_assert_eq(memcmp(r->body, "{\"id\":\"r1\"}\r\n", 13), 0);
    net_http_parser_free(&p);
}

/* Three pipelined requests in one buffer come out in order, each with
 * consumed pointing at the start of the next. */
Test(http, pipelined_in_one_chunk)
{
    char buf[1024];
    const char *a = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    const char *c = "DELETE /c?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    snprintf(buf, sizeof buf, "%s%s%s", a, post_req, c);
    size_t len = strlen(buf);

    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t off = 0, used;
    const char *paths[] = {"/a", "/api/rooms", "/c"};
    net_http_method_t methods[] = {NET_HTTP_GET, NET_HTTP_POST, NET_HTTP_DELETE};
    size_t ends[] = {strlen(a), strlen(a) + strlen(post_req), len};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(feed_all(&p, buf + off, len - off, &used), NET_HTTP_REQUEST, "req %d", i);
        off += used;
        cr_assert_eq(off, ends[i], "req %d ends at %zu", i, off);
        const net_http_request_t *r = net_http_parser_request(&p);
        cr_assert_str_eq(r->path, paths[i]);
        cr_assert_eq(r->method, methods[i]);
        if (i == 1)
            cr_assert_eq(r->body_len, 13);
        else
            cr_assert_eq(r->body_len, 0);
    }
    cr_assert_eq(net_http_parser_feed(&p, buf + off, 0, &used), NET_HTTP_NEED_MORE);
    net_http_parser_free(&p);
}

/* Every split point of a pipelined pair gives the same two requests. */
Test(http, pipelined_every_split)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s", post_req, simple_get);
    size_t len = strlen(buf);
    for (size_t split = 0; split <= len; split++) {
        net_http_parser_t p;
        net_http_parser_init(&p, NULL);
        int got = 0;
        const char *chunks[2] = {buf, buf + split};
        size_t lens[2] = {split, len - split};
        for (int k = 0; k < 2; k++) {
            size_t off = 0;
            while (off < lens[k]) {
                size_t used;
                int rc = net_http_parser_feed(&p, chunks[k] + off, lens[k] - off, &used);
                off += used;
                cr_assert_geq(rc, 0, "split %zu: %s", split, net_http_strerror(rc));
                if (rc == NET_HTTP_REQUEST) {
                    const net_http_request_t *r = net_http_parser_request(&p);
                    cr_assert_str_eq(r->path, got == 0 ? "/api/rooms" : "/socket/websocket");
                    if (got == 0)
                        cr_assert_eq(memcmp(r->body, "{\"id\":\"r1\"}\r\n", 13), 0);
                    got++;
                }
            }
        }
        cr_assert_eq(got, 2, "split %zu", split);
        net_http_parser_free(&p);
    }
}

/* A request whose header block (request line through the blank line) is
 * exactly `total` bytes. */
static char *head_of_size(size_t total)
{
    const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    const char *post = "\r\n\r\n";
    size_t fixed = strlen(pre) + strlen(post);
    cr_assert_gt(total, fixed);
    char *s = malloc(total + 1);
    strcpy(s, pre);
    memset(s + strlen(pre), 'a', total - fixed);
    strcpy(s + total - strlen(post), post);
    cr_assert_eq(strlen(s), total);
    return s;
}

Test(http, header_block_exactly_16k_accepted)
{
    char *s = head_of_size(16384);
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(feed_all(&p, s, 16384, &used), NET_HTTP_REQUEST);
    cr_assert_eq(used, 16384);
    cr_assert_eq(net_http_parser_request(&p)->headers[1].value_len, 16384 - 36);
    net_http_parser_free(&p);

    net_http_parser_init(&p, NULL);
    cr_assert_eq(feed_bytewise(&p, s, 16384, &used), NET_HTTP_REQUEST);
    net_http_parser_free(&p);
    free(s);
}

Test(http, header_block_16k_plus_one_refused_431)
{
    char *s = head_of_size(16385);
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    int rc = feed_all(&p, s, 16385, NULL);
    cr_assert_eq(rc, NET_HTTP_E_HEADER_TOO_LARGE);
    cr_assert_eq(net_http_error_status(rc), 431);
    /* sticky */
    cr_assert_eq(net_http_parser_feed(&p, "x", 1, NULL), NET_HTTP_E_HEADER_TOO_LARGE);
    net_http_parser_free(&p);

    net_http_parser_init(&p, NULL);
    cr_assert_eq(feed_bytewise(&p, s, 16385, NULL), NET_HTTP_E_HEADER_TOO_LARGE);
    net_http_parser_free(&p);
    free(s);
}

/* An endless header stream is refused after limit + 1 bytes, without
 * waiting for the end of the head or reading the whole chunk. */
Test(http, endless_header_refused_early)
{
    size_t n = 100000;
    char *s = malloc(n);
    const char *pre = "GET / HTTP/1.1\r\nX: ";
    memcpy(s, pre, strlen(pre));
    memset(s + strlen(pre), 'b', n - strlen(pre));
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(feed_all(&p, s, n, &used), NET_HTTP_E_HEADER_TOO_LARGE);
    cr_assert_eq(used, 16385);
    net_http_parser_free(&p);
    free(s);
}

static char *post_of_body(size_t body, size_t *total)
{
    char head[128];
    int hl = snprintf(head, sizeof head,
                      "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", body);
    char *s = malloc((size_t)hl + body);
    memcpy(s, head, (size_t)hl);
    for (size_t i = 0; i < body; i++)
        s[hl + i] = (char)('a' + i % 26);
    *total = (size_t)hl + body;
    return s;
}

Test(http, body_exactly_1mib_accepted)
{
    size_t total;
    char *s = post_of_body(1024 * 1024, &total);
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(feed_all(&p, s, total, &used), NET_HTTP_REQUEST);
    cr_assert_eq(used, total);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_eq(r->body_len, 1024 * 1024);
    cr_assert_eq(r->body[1024 * 1024 - 1], (char)('a' + (1024 * 1024 - 1) % 26));
    /* The next request on the same parser still works after the big
     * body buffer was released. */
    cr_assert_eq(feed_all(&p, simple_get, strlen(simple_get), NULL), NET_HTTP_REQUEST);
    cr_assert_str_eq(net_http_parser_request(&p)->path, "/socket/websocket");
    net_http_parser_free(&p);
    free(s);
}

Test(http, body_1mib_plus_one_refused_413_before_body)
{
    size_t total;
    char *s = post_of_body(1024 * 1024 + 1, &total);
    size_t head = total - (1024 * 1024 + 1);
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    /* Only the head is sent: the refusal must not wait for the body. */
    int rc = feed_all(&p, s, head, NULL);
    cr_assert_eq(rc, NET_HTTP_E_BODY_TOO_LARGE);
    cr_assert_eq(net_http_error_status(rc), 413);
    net_http_parser_free(&p);
    free(s);
}

Test(http, chunked_body_decoded_and_limited)
{
    const char *ok = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    net_http_config_t cfg;
    net_http_config_default(&cfg);
    cfg.max_body = 11;
    net_http_parser_t p;
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_bytewise(&p, ok, strlen(ok), NULL), NET_HTTP_REQUEST);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_eq(r->body_len, 11);
    cr_assert_str_eq(r->body, "hello world");
    net_http_parser_free(&p);

    const char *big = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n7\r\n world!\r\n0\r\n\r\n";
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, big, strlen(big), NULL), NET_HTTP_E_BODY_TOO_LARGE);
    net_http_parser_free(&p);
}

Test(http, limits_are_configurable)
{
    net_http_config_t cfg = {.max_header = 40, .max_body = 3};
    const char *h40 = "GET / HTTP/1.1\r\nHost: h\r\nX: 12345678\r\n\r\n"; /* 40 bytes */
    cr_assert_eq(strlen(h40), 40);
    net_http_parser_t p;
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, h40, 40, NULL), NET_HTTP_REQUEST);
    net_http_parser_free(&p);

    const char *h41 = "GET / HTTP/1.1\r\nHost: h\r\nX: 123456789\r\n\r\n";
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, h41, 41, NULL), NET_HTTP_E_HEADER_TOO_LARGE);
    net_http_parser_free(&p);

    cfg.max_header = 1000;
    const char *b3 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, b3, strlen(b3), NULL), NET_HTTP_REQUEST);
    net_http_parser_free(&p);
    const char *b4 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd";
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, b4, strlen(b4), NULL), NET_HTTP_E_BODY_TOO_LARGE);
    net_http_parser_free(&p);
}

static void expect_400(const char *req)
{
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    int rc = feed_all(&p, req, strlen(req), NULL);
    cr_assert_eq(rc, NET_HTTP_E_MALFORMED, "%s -> %d", req, rc);
    cr_assert_eq(net_http_error_status(rc), 400);
    net_http_parser_free(&p);
    net_http_parser_init(&p, NULL);
    rc = feed_bytewise(&p, req, strlen(req), NULL);
    cr_assert_eq(rc, NET_HTTP_E_MALFORMED, "bytewise %s -> %d", req, rc);
    net_http_parser_free(&p);
}

Test(http, malformed_400)
{
    expect_400("hello world\r\n\r\n");
    expect_400("GET / HTTP/9.9\r\nHost: h\r\n\r\n");
    expect_400("GET / FTP/1.1\r\nHost: h\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nBad Header: x\r\nHost: h\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    expect_400("GET / HTTP/1.1\r\n\r\n");                      /* no Host */
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"); /* two Hosts */
    expect_400("GET  HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_400("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"); /* TLS hello */
}

Test(http, malformed_is_sticky)
{
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    cr_assert_eq(feed_all(&p, "BOGUS\r\n", 7, NULL), NET_HTTP_E_MALFORMED);
    cr_assert_eq(feed_all(&p, simple_get, strlen(simple_get), NULL), NET_HTTP_E_MALFORMED);
    cr_assert_null(net_http_parser_request(&p));
    net_http_parser_free(&p);
}

Test(http, http10_without_host_and_keepalive_rules)
{
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    const char *r10 = "GET /old HTTP/1.0\r\n\r\n";
    cr_assert_eq(feed_all(&p, r10, strlen(r10), NULL), NET_HTTP_REQUEST);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_eq(r->http_minor, 0);
    cr_assert_not(r->keep_alive);
    /* Bytes after a closing request are refused. */
    cr_assert_eq(feed_all(&p, simple_get, strlen(simple_get), NULL), NET_HTTP_E_CLOSED);
    net_http_parser_free(&p);

    net_http_parser_init(&p, NULL);
    const char *close = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    cr_assert_eq(feed_all(&p, close, strlen(close), NULL), NET_HTTP_REQUEST);
    cr_assert_not(net_http_parser_request(&p)->keep_alive);
    net_http_parser_free(&p);

    net_http_parser_init(&p, NULL);
    const char *ka = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    cr_assert_eq(feed_all(&p, ka, strlen(ka), NULL), NET_HTTP_REQUEST);
    cr_assert(net_http_parser_request(&p)->keep_alive);
    net_http_parser_free(&p);
}

static const char ws_upgrade[] =
    "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

Test(http, upgrade_stops_before_new_protocol)
{
    char buf[512];
    size_t hl = strlen(ws_upgrade);
    memcpy(buf, ws_upgrade, hl);
    const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    memcpy(buf + hl, frame, 11);
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(feed_all(&p, buf, hl + 11, &used), NET_HTTP_REQUEST);
    cr_assert_eq(used, hl);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert(r->upgrade);
    cr_assert(net_http_header_has_token(r, "connection", "upgrade"));
    cr_assert(net_http_header_has_token(r, "Connection", "KEEP-ALIVE"));
    cr_assert_not(net_http_header_has_token(r, "Connection", "close"));
    cr_assert_not(net_http_header_has_token(r, "Connection", "upgrad"));
    cr_assert(net_http_header_has_token(r, "Upgrade", "websocket"));
    net_http_parser_free(&p);
}

Test(http, has_token_searches_every_header)
{
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
                      "Connection: Upgrade\r\n\r\n";
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    cr_assert_eq(feed_all(&p, req, strlen(req), NULL), NET_HTTP_REQUEST);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert(net_http_header_has_token(r, "connection", "upgrade"));
    cr_assert_str_eq(net_http_header_get(r, "connection"), "keep-alive");
    net_http_parser_free(&p);
}

Test(http, absolute_form_url)
{
    const char *req = "GET http://h:4000/api/rooms?x=1#frag HTTP/1.1\r\nHost: h\r\n\r\n";
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    cr_assert_eq(feed_all(&p, req, strlen(req), NULL), NET_HTTP_REQUEST);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_str_eq(r->path, "/api/rooms");
    cr_assert_str_eq(r->query, "x=1");
    net_http_parser_free(&p);
}

Test(http, empty_header_value_and_many_headers)
{
    char req[8192];
    int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: h\r\nEmpty:\r\n");
    for (int i = 0; i < 200; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "H%d: v%d\r\n", i, i);
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    cr_assert_eq(feed_bytewise(&p, req, (size_t)n, NULL), NET_HTTP_REQUEST);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_eq(r->n_headers, 202);
    cr_assert_str_eq(net_http_header_get(r, "empty"), "");
    cr_assert_str_eq(net_http_header_get(r, "h199"), "v199");
    cr_assert_str_eq(r->headers[201].name, "H199");
    net_http_parser_free(&p);
}

/* ---- query ---------------------------------------------------------- */

Test(http, query_get)
{
    const char *q = "vsn=2.0.0&token=a%2Bb%3D%3D&sp=a+b%20c&empty=&flag&dup=1&dup=2&k%65y=v";
    size_t ql = strlen(q);
    char *v;
    size_t vl;
    cr_assert_eq(net_http_query_get(q, ql, "vsn", &v, &vl), 0);
    cr_assert_str_eq(v, "2.0.0");
    cr_assert_eq(vl, 5);
    free(v);
    cr_assert_eq(net_http_query_get(q, ql, "token", &v, &vl), 0);
    cr_assert_str_eq(v, "a+b==");
    free(v);
    cr_assert_eq(net_http_query_get(q, ql, "sp", &v, NULL), 0);
    cr_assert_str_eq(v, "a b c");
    free(v);
    cr_assert_eq(net_http_query_get(q, ql, "empty", &v, &vl), 0);
    cr_assert_str_eq(v, "");
    cr_assert_eq(vl, 0);
    free(v);
    cr_assert_eq(net_http_query_get(q, ql, "flag", &v, NULL), 0);
    cr_assert_str_eq(v, "");
    free(v);
    cr_assert_eq(net_http_query_get(q, ql, "dup", &v, NULL), 0);
    cr_assert_str_eq(v, "1");
    free(v);
    cr_assert_eq(net_http_query_get(q, ql, "key", &v, NULL), 0);
    cr_assert_str_eq(v, "v");
    free(v);
    v = (char *)"untouched";
    cr_assert_eq(net_http_query_get(q, ql, "missing", &v, NULL), NET_HTTP_E_NOT_FOUND);
    cr_assert_eq(net_http_query_get(q, ql, "vs", &v, NULL), NET_HTTP_E_NOT_FOUND);
    cr_assert_str_eq(v, "untouched");
    /* the length bounds the string: "flag" past query_len is not seen */
    cr_assert_eq(net_http_query_get(q, 9, "token", &v, NULL), NET_HTTP_E_NOT_FOUND);
    cr_assert_eq(net_http_query_get("", 0, "a", &v, NULL), NET_HTTP_E_NOT_FOUND);
}

Test(http, query_bad_escapes)
{
    char *v = NULL;
    cr_assert_eq(net_http_query_get("a=%zz", 5, "a", &v, NULL), NET_HTTP_E_BAD_ESCAPE);
    cr_assert_eq(net_http_query_get("a=%4", 4, "a", &v, NULL), NET_HTTP_E_BAD_ESCAPE);
    cr_assert_eq(net_http_query_get("a=x%", 4, "a", &v, NULL), NET_HTTP_E_BAD_ESCAPE);
    cr_assert_eq(net_http_query_get("a=%00", 5, "a", &v, NULL), NET_HTTP_E_BAD_ESCAPE);
    cr_assert_null(v);
    cr_assert_eq(net_http_query_get("a=%4a%4A", 8, "a", &v, NULL), 0);
    cr_assert_str_eq(v, "JJ");
    free(v);
}

/* ---- responses ------------------------------------------------------ */

Test(http, response_exact_bytes)
{
    net_http_buf_t b;
    net_http_buf_init(&b);
    cr_assert_eq(net_http_response_start(&b, 201), 0);
    cr_assert_eq(net_http_response_header(&b, "Content-Type", "application/json"), 0);
    cr_assert_eq(net_http_response_end(&b, "{}", 2), 0);
    const char *want = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                       "Content-Length: 2\r\n\r\n{}";
    cr_assert_eq(b.len, strlen(want));
    cr_assert_eq(memcmp(b.data, want, b.len), 0);
    net_http_buf_free(&b);

    cr_assert_eq(net_http_response_start(&b, 204), 0);
    cr_assert_eq(net_http_response_end_headers(&b), 0);
    cr_assert_str_eq(b.data, "HTTP/1.1 204 No Content\r\n\r\n");
    net_http_buf_free(&b);
}

Test(http, response_refuses_injection_and_rolls_back)
{
    net_http_buf_t b = {0};
    cr_assert_eq(net_http_response_start(&b, 200), 0);
    size_t mark = b.len;
    cr_assert_eq(net_http_response_header(&b, "X", "a\r\nSet-Cookie: x"), NET_HTTP_E_INVALID);
    cr_assert_eq(net_http_response_header(&b, "X", "a\nb"), NET_HTTP_E_INVALID);
    cr_assert_eq(net_http_response_header(&b, "Bad Name", "v"), NET_HTTP_E_INVALID);
    cr_assert_eq(net_http_response_header(&b, "Bad:Name", "v"), NET_HTTP_E_INVALID);
    cr_assert_eq(net_http_response_header(&b, "", "v"), NET_HTTP_E_INVALID);
    cr_assert_eq(b.len, mark);
    cr_assert_eq(net_http_response_start(&b, 99), NET_HTTP_E_INVALID);
    cr_assert_eq(net_http_response_start(&b, 600), NET_HTTP_E_INVALID);
    cr_assert_eq(b.len, mark);
    net_http_buf_free(&b);
}

Test(http, json_error_body_and_response)
{
    size_t len;
    char *body = net_http_json_error_body("not_found", "no room \"r1\"", &len);
    cr_assert_str_eq(body, "{\"error\":{\"code\":\"not_found\",\"message\":\"no room \\\"r1\\\"\"}}");
    cr_assert_eq(len, strlen(body));
    free(body);
    cr_assert_null(net_http_json_error_body("x", "\xff", NULL));

    net_http_buf_t b = {0};
    cr_assert_eq(net_http_response_json_error(&b, 404, "not_found", "gone", true), 0);
    const char *want = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                       "Content-Length: 47\r\n\r\n"
                       "{\"error\":{\"code\":\"not_found\",\"message\":\"gone\"}}";
    cr_assert_str_eq(b.data, want);
    net_http_buf_free(&b);

    cr_assert_eq(net_http_response_for_error(&b, NET_HTTP_E_HEADER_TOO_LARGE), 0);
    cr_assert(strncmp(b.data, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);
    cr_assert_not_null(strstr(b.data, "Connection: close\r\n"));
    cr_assert_not_null(strstr(b.data, "\"code\":\"header_too_large\""));
    net_http_buf_free(&b);

    cr_assert_eq(net_http_response_for_error(&b, NET_HTTP_E_BODY_TOO_LARGE), 0);
    cr_assert(strncmp(b.data, "HTTP/1.1 413 Payload Too Large\r\n", 32) == 0);
    net_http_buf_free(&b);
    cr_assert_eq(net_http_response_for_error(&b, NET_HTTP_E_MALFORMED), 0);
    cr_assert(strncmp(b.data, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    net_http_buf_free(&b);
}

Test(http, status_reason)
{
    cr_assert_str_eq(net_http_status_reason(200), "OK");
    cr_assert_str_eq(net_http_status_reason(426), "Upgrade Required");
    cr_assert_str_eq(net_http_status_reason(599), "Unknown");
    cr_assert_str_eq(net_http_status_reason(42), "Unknown");
}

/* Limits near SIZE_MAX must not wrap into "no room" (an endless loop) or
 * into a tiny limit. */
Test(http, huge_limits_do_not_wrap, .timeout = 5)
{
    net_http_config_t cfg = {.max_header = SIZE_MAX, .max_body = SIZE_MAX};
    net_http_parser_t p;
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, post_req, strlen(post_req), NULL), NET_HTTP_REQUEST);
    cr_assert_eq(net_http_parser_request(&p)->body_len, 13);
    net_http_parser_free(&p);
}

/* Trailer fields after a chunked body are dropped (not stored: the head is
 * final by then) but still count against the header limit. Found by
 * fuzz_http: storing them moved the arena under the request's pointers. */
Test(http, chunked_trailers_dropped_and_limited)
{
    const char *req = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n0\r\nX-Trailer: t\r\nHost: evil\r\n\r\n"
                      "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(feed_bytewise(&p, req, strlen(req), &used), NET_HTTP_REQUEST);
    const net_http_request_t *r = net_http_parser_request(&p);
    cr_assert_str_eq(r->body, "abc");
    cr_assert_eq(r->n_headers, 2);
    cr_assert_str_eq(net_http_header_get(r, "host"), "h");
    cr_assert_null(net_http_header_get(r, "x-trailer"));
    cr_assert_eq(feed_all(&p, req + used, strlen(req) - used, NULL), NET_HTTP_REQUEST);
    cr_assert_str_eq(net_http_parser_request(&p)->path, "/next");
    net_http_parser_free(&p);

    net_http_config_t cfg = {.max_header = 100, .max_body = 100};
    char big[512];
    snprintf(big, sizeof big, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "0\r\nX-Trailer: %0100d\r\n\r\n", 0);
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, big, strlen(big), NULL), NET_HTTP_E_HEADER_TOO_LARGE);
    net_http_parser_free(&p);
}

/* ---- allocation failures -------------------------------------------- */

Test(http_fault, parse_under_allocation_failure)
{
#if !FAULTS
    cr_skip_test("allocation faults are injected in the plain build only");
#else
    /* Many headers and a body, so the arena, header tables and body
     * buffer all grow more than once. */
    char req[8192];
    int n = snprintf(req, sizeof req, "POST /a?b=c HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 100; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "X-H%d: %0*d\r\n", i, i, 0);
    n += snprintf(req + n, sizeof req - (size_t)n, "Content-Length: 600\r\n\r\n");
    memset(req + n, 'b', 600);
    size_t len = (size_t)n + 600;

    long i;
    for (i = 0; i < FAULT_SWEEP_MAX; i++) {
        long before = heap_in_use();
        net_http_parser_t p;
        net_http_parser_init(&p, NULL);
        size_t used = 0;
        fault_arm(i);
        int rc = net_http_parser_feed(&p, req, len, &used);
        bool hit = fault_disarm();
        if (rc == NET_HTTP_REQUEST) {
            const net_http_request_t *r = net_http_parser_request(&p);
            cr_assert_eq(r->n_headers, 102);
            cr_assert_eq(r->body_len, 600);
            cr_assert_str_eq(net_http_header_get(r, "x-h99"), r->headers[100].value);
        } else {
            cr_assert_eq(rc, NET_HTTP_E_NOMEM, "n=%ld rc=%d", i, rc);
            cr_assert_eq(net_http_error_status(rc), 500);
            cr_assert_eq(net_http_parser_feed(&p, "x", 1, NULL), NET_HTTP_E_NOMEM);
        }
        net_http_parser_free(&p);
        cr_assert_eq(heap_in_use(), before, "leak with allocation %ld failing", i);
        if (!hit) {
            cr_assert_eq(rc, NET_HTTP_REQUEST);
            break;
        }
    }
    cr_assert_gt(i, 3, "the sweep must have failed several allocations");
#endif
}

Test(http_fault, builders_under_allocation_failure)
{
#if !FAULTS
    cr_skip_test("allocation faults are injected in the plain build only");
#else
    char *warm = net_http_json_error_body("a", "b", NULL); /* jansson's one-time setup */
    free(warm);
    for (long i = 0; i < FAULT_SWEEP_MAX; i++) {
        net_http_buf_t b = {0};
        cr_assert_eq(net_http_buf_append(&b, "prefix", 6), 0);
        long before = heap_in_use();
        fault_arm(i);
        int rc = net_http_response_json_error(&b, 404, "not_found", "no such room", false);
        char *v = NULL;
        int qrc = net_http_query_get("token=abc%20d", 13, "token", &v, NULL);
        bool hit = fault_disarm();
        if (rc == 0)
            cr_assert(strncmp(b.data, "prefixHTTP/1.1 404 Not Found\r\n", 30) == 0);
        else {
            cr_assert_eq(rc, NET_HTTP_E_NOMEM);
            cr_assert_eq(b.len, 6, "buffer unchanged on error");
            cr_assert_str_eq(b.data, "prefix");
        }
        if (qrc == 0) {
            cr_assert_str_eq(v, "abc d");
            free(v);
        } else {
            cr_assert_eq(qrc, NET_HTTP_E_NOMEM);
        }
        net_http_buf_free(&b);
        cr_assert_leq(heap_in_use(), before, "leak at %ld", i);
        if (!hit)
            break;
    }
#endif
}

/* Trailers are limited by wire bytes, so the verdict does not depend on
 * how the input was split (found by fuzz_http: whole said 400, byte by
 * byte said 431). */
Test(http, trailer_verdict_independent_of_split)
{
    /* The head below is 57 bytes; the trailer section gets the same 60. */
    net_http_config_t cfg = {.max_header = 60, .max_body = 100};
    const char *pre = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    cr_assert_eq(strlen(pre), 57 + 3);
    /* A trailer longer than the limit, with a bad byte after the limit:
     * every split must stop at the limit (431), before seeing the byte. */
    char req[256];
    snprintf(req, sizeof req, "%sX: %070d\x01\r\n\r\n", pre, 0);
    net_http_parser_t p;
    net_http_parser_init(&p, &cfg);
    int whole = feed_all(&p, req, strlen(req), NULL);
    net_http_parser_free(&p);
    net_http_parser_init(&p, &cfg);
    int bytewise = feed_bytewise(&p, req, strlen(req), NULL);
    net_http_parser_free(&p);
    cr_assert_eq(whole, NET_HTTP_E_HEADER_TOO_LARGE);
    cr_assert_eq(bytewise, NET_HTTP_E_HEADER_TOO_LARGE);

    /* 60 bytes of trailer section (fields + final CRLF) pass, 61 do not */
    char ok[256], bad[256];
    snprintf(ok, sizeof ok, "%sX: %053d\r\n\r\n", pre, 0); /* 3 + 53 + 2 + 2 = 60 */
    snprintf(bad, sizeof bad, "%sX: %054d\r\n\r\n", pre, 0);
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_bytewise(&p, ok, strlen(ok), NULL), NET_HTTP_REQUEST);
    net_http_parser_free(&p);
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, ok, strlen(ok), NULL), NET_HTTP_REQUEST);
    net_http_parser_free(&p);
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, bad, strlen(bad), NULL), NET_HTTP_E_HEADER_TOO_LARGE);
    net_http_parser_free(&p);
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_bytewise(&p, bad, strlen(bad), NULL), NET_HTTP_E_HEADER_TOO_LARGE);
    net_http_parser_free(&p);
}

Test(http, chunk_over_limit_refused_from_size_line)
{
    net_http_config_t cfg = {.max_header = 1000, .max_body = 10};
    /* The 0x20-byte chunk is announced but none of its data is sent. */
    const char *req = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n20\r\n";
    net_http_parser_t p;
    net_http_parser_init(&p, &cfg);
    cr_assert_eq(feed_all(&p, req, strlen(req), NULL), NET_HTTP_E_BODY_TOO_LARGE);
    net_http_parser_free(&p);
}

Test(http, expect_100_continue)
{
    const char *head = "POST /api/rooms HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                       "Content-Length: 5\r\n\r\n";
    net_http_parser_t p;
    net_http_parser_init(&p, NULL);
    cr_assert_not(net_http_parser_continue_due(&p));
    cr_assert_eq(feed_all(&p, head, strlen(head) - 1, NULL), NET_HTTP_NEED_MORE);
    cr_assert_not(net_http_parser_continue_due(&p), "head not complete yet");
    cr_assert_eq(feed_all(&p, head + strlen(head) - 1, 1, NULL), NET_HTTP_NEED_MORE);
    cr_assert(net_http_parser_continue_due(&p));
    cr_assert_not(net_http_parser_continue_due(&p), "only once");
    cr_assert_eq(feed_all(&p, "hello", 5, NULL), NET_HTTP_REQUEST);
    cr_assert_str_eq(net_http_parser_request(&p)->body, "hello");
    cr_assert_not(net_http_parser_continue_due(&p));
    /* the next request without Expect */
    const char *plain = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n";
    cr_assert_eq(feed_all(&p, plain, strlen(plain), NULL), NET_HTTP_NEED_MORE);
    cr_assert_not(net_http_parser_continue_due(&p));
    cr_assert_eq(feed_all(&p, "ok", 2, NULL), NET_HTTP_REQUEST);
    net_http_parser_free(&p);

    /* everything in one chunk: nothing to answer */
    char all[256];
    snprintf(all, sizeof all, "%shello", head);
    net_http_parser_init(&p, NULL);
    cr_assert_eq(feed_all(&p, all, strlen(all), NULL), NET_HTTP_REQUEST);
    cr_assert_not(net_http_parser_continue_due(&p));
    net_http_parser_free(&p);
}
