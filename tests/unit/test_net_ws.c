/*
 * Unit tests for net/ws: handshake (RFC 6455 example), phoenix.js token
 * subprotocol, frame reader (masking, fragmentation with interleaved
 * control frames, size limit at the exact boundary, UTF-8 including
 * sequences split across fragments, close codes, every protocol error)
 * and the frame writer.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"
#include "net/ws.h"

#include "fault_harness.h"

/* ---- helpers -------------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static void put(bytes_t *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* Append a client frame: first byte as given (FIN/RSV/opcode), masked
 * with a fixed key unless masked is false. */
static void client_frame_raw(bytes_t *b, uint8_t b0, bool masked, const void *payload,
                             uint64_t len)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = b0;
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        h[hl++] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        h[hl++] = m | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = m | 127;
        for (int i = 0; i < 8; i++)
            h[hl++] = (uint8_t)(len >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    put(b, h, hl);
    const uint8_t *s = payload;
    uint8_t tmp[4096];
    for (uint64_t off = 0; off < len;) {
        size_t n = (size_t)(len - off) < sizeof tmp ? (size_t)(len - off) : sizeof tmp;
        for (size_t i = 0; i < n; i++)
            tmp[i] = (uint8_t)(s[off + i] ^ (masked ? key[(off + i) & 3] : 0));
        put(b, tmp, n);
        off += n;
    }
}

static void client_frame(bytes_t *b, ws_opcode_t op, bool fin, const void *payload,
                         size_t len)
{
    client_frame_raw(b, (uint8_t)((fin ? 0x80 : 0) | op), true, payload, len);
}

/* Events collected from a reader, deep-copied. */
typedef struct ev_copy {
    ws_event_type_t type;
    uint8_t *data;
    size_t len;
    uint16_t code;
} ev_copy_t;

typedef struct run {
    ev_copy_t ev[32];
    int n;
    int err;          /* 0 or the error that ended the run */
    size_t consumed;  /* total bytes consumed */
} run_t;

/* Feed b to a fresh reader in chunks of `step` bytes (0 = all at once). */
static run_t run_reader(const bytes_t *b, size_t step, size_t max_message)
{
    run_t r;
    memset(&r, 0, sizeof r);
    ws_reader_t rd;
    ws_reader_config_t cfg = {.max_message = max_message};
    ws_reader_init(&rd, &cfg);
    size_t off = 0;
    while (off < b->len) {
        size_t n = step ? step : b->len;
        if (n > b->len - off)
            n = b->len - off;
        size_t coff = 0;
        while (coff < n) {
            size_t used = 0;
            ws_event_t ev;
            int rc = ws_reader_feed(&rd, b->p + off + coff, n - coff, &used, &ev);
            coff += used;
            r.consumed += used;
            if (rc < 0) {
                r.err = rc;
                ws_reader_free(&rd);
                return r;
            }
            if (rc == WS_EVENT) {
                cr_assert_lt(r.n, 32);
                ev_copy_t *c = &r.ev[r.n++];
                c->type = ev.type;
                c->len = ev.len;
                c->code = ev.close_code;
                cr_assert_not_null(ev.data);
                cr_assert_eq(ev.data[ev.len], 0, "event data NUL-terminated");
                c->data = malloc(ev.len + 1);
                memcpy(c->data, ev.data, ev.len + 1);
                if (ev.type == WS_EV_CLOSE) {
                    /* Nothing after a close is processed. */
                    if (coff < n || off + n < b->len) {
                        int again = ws_reader_feed(&rd, "\x81", 1, &used, &ev);
                        cr_assert_eq(again, WS_E_CLOSED);
                        cr_assert_eq(used, 0);
                    }
                    ws_reader_free(&rd);
                    return r;
                }
            } else {
                cr_assert_eq(coff, n); /* NEED_MORE consumes everything */
                break;
            }
        }
        off += n;
    }
    ws_reader_free(&rd);
    return r;
}

static void run_free(run_t *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->ev[i].data);
}

/* Same events whether fed at once, byte by byte, or in 3-byte chunks. */
static run_t run_all_splits(const bytes_t *b, size_t max_message)
{
    run_t whole = run_reader(b, 0, max_message);
    size_t steps[] = {1, 3, 7};
    for (size_t s = 0; s < 3; s++) {
        run_t part = run_reader(b, steps[s], max_message);
        cr_assert_eq(part.err, whole.err, "step %zu: err %d vs %d", steps[s], part.err, whole.err);
        cr_assert_eq(part.n, whole.n, "step %zu: %d events vs %d", steps[s], part.n, whole.n);
        for (int i = 0; i < whole.n; i++) {
            cr_assert_eq(part.ev[i].type, whole.ev[i].type);
            cr_assert_eq(part.ev[i].len, whole.ev[i].len);
            cr_assert_eq(part.ev[i].code, whole.ev[i].code);
            cr_assert_eq(memcmp(part.ev[i].data, whole.ev[i].data, whole.ev[i].len), 0);
        }
        run_free(&part);
    }
    return whole;
}

static void expect_error(const bytes_t *b, int err, int close_code, size_t max_message)
{
    run_t r = run_all_splits(b, max_message);
    cr_assert_eq(r.err, err, "got %d (%s), want %d (%s)", r.err, ws_strerror(r.err), err,
                 ws_strerror(err));
    cr_assert_eq(ws_error_close_code(r.err), close_code);
    run_free(&r);
}

/* ---- handshake ------------------------------------------------------ */

Test(ws_handshake, rfc6455_accept_example)
{
    char acc[WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    cr_assert_eq(ws_accept_key(key, strlen(key), acc), 0);
    cr_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* Parse an HTTP request into p and return it. */
static const net_http_request_t *parse(net_http_parser_t *p, const char *req)
{
    net_http_parser_init(p, NULL);
    size_t used;
    int rc = net_http_parser_feed(p, req, strlen(req), &used);
    cr_assert_eq(rc, NET_HTTP_REQUEST, "%s", net_http_strerror(rc));
    return net_http_parser_request(p);
}

static int check_req(const char *method, const char *extra_headers, char *acc)
{
    char req[1024];
    snprintf(req, sizeof req, "%s /socket/websocket HTTP/1.1\r\nHost: h\r\n%s\r\n", method,
             extra_headers);
    net_http_parser_t p;
    const net_http_request_t *r = parse(&p, req);
    int rc = ws_handshake_check(r, acc);
    net_http_parser_free(&p);
    return rc;
}

#define GOOD_UPGRADE "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define GOOD_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define GOOD_VER "Sec-WebSocket-Version: 13\r\n"

Test(ws_handshake, valid_request)
{
    char acc[WS_ACCEPT_LEN + 1] = "";
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_KEY GOOD_VER, acc), 0);
    cr_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* case and list forms browsers send */
    cr_assert_eq(check_req("GET", "Upgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n"
                                  GOOD_KEY GOOD_VER, acc), 0);
}

Test(ws_handshake, each_failure)
{
    char acc[WS_ACCEPT_LEN + 1] = "unchanged";
    cr_assert_eq(check_req("POST", GOOD_UPGRADE GOOD_KEY GOOD_VER "Content-Length: 0\r\n", acc),
                 WS_E_HS_METHOD);
    cr_assert_eq(check_req("GET", "Connection: Upgrade\r\n" GOOD_KEY GOOD_VER, acc),
                 WS_E_HS_UPGRADE);
    cr_assert_eq(check_req("GET", "Upgrade: h2c\r\nConnection: Upgrade\r\n" GOOD_KEY GOOD_VER, acc),
                 WS_E_HS_UPGRADE);
    cr_assert_eq(check_req("GET", "Upgrade: websocket\r\nConnection: keep-alive\r\n" GOOD_KEY
                                  GOOD_VER, acc),
                 WS_E_HS_CONNECTION);
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_KEY, acc), WS_E_HS_VERSION);
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_KEY "Sec-WebSocket-Version: 8\r\n", acc),
                 WS_E_HS_VERSION);
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_VER, acc), WS_E_HS_KEY);
    /* not padded as 16 bytes encode */
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n", acc),
                 WS_E_HS_KEY);
    /* 17 bytes */
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQE=\r\n", acc),
                 WS_E_HS_KEY);
    /* not base64 */
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2*jZQ==\r\n", acc),
                 WS_E_HS_KEY);
    /* two keys */
    cr_assert_eq(check_req("GET", GOOD_UPGRADE GOOD_VER GOOD_KEY GOOD_KEY, acc), WS_E_HS_KEY);
    cr_assert_str_eq(acc, "unchanged");

    cr_assert_eq(ws_handshake_status(WS_E_HS_METHOD), 405);
    cr_assert_eq(ws_handshake_status(WS_E_HS_VERSION), 426);
    cr_assert_eq(ws_handshake_status(WS_E_HS_KEY), 400);
    cr_assert_eq(ws_handshake_status(WS_E_HS_UPGRADE), 400);
}

Test(ws_handshake, http10_refused)
{
    net_http_parser_t p;
    const net_http_request_t *r =
        parse(&p, "GET / HTTP/1.0\r\nHost: h\r\n" GOOD_UPGRADE GOOD_KEY GOOD_VER "\r\n");
    char acc[WS_ACCEPT_LEN + 1];
    cr_assert_eq(ws_handshake_check(r, acc), WS_E_HS_HTTP);
    net_http_parser_free(&p);
}

Test(ws_handshake, response_bytes)
{
    net_http_buf_t b = {0};
    cr_assert_eq(ws_handshake_response(&b, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "phoenix"), 0);
    cr_assert_str_eq(b.data, "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                             "Sec-WebSocket-Protocol: phoenix\r\n"
                             "\r\n");
    net_http_buf_free(&b);
    cr_assert_eq(ws_handshake_response(&b, "abc", NULL), 0);
    cr_assert_null(strstr(b.data, "Sec-WebSocket-Protocol"));
    net_http_buf_free(&b);

    cr_assert_eq(ws_handshake_reject(&b, WS_E_HS_VERSION), 0);
    cr_assert(strncmp(b.data, "HTTP/1.1 426 Upgrade Required\r\n", 31) == 0);
    cr_assert_not_null(strstr(b.data, "\r\nSec-WebSocket-Version: 13\r\n"));
    cr_assert_not_null(strstr(b.data, "\r\nConnection: close\r\n"));
    cr_assert_not_null(strstr(b.data, "{\"error\":{\"code\":\"bad_request\""));
    net_http_buf_free(&b);
    cr_assert_eq(ws_handshake_reject(&b, WS_E_HS_METHOD), 0);
    cr_assert(strncmp(b.data, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    cr_assert_not_null(strstr(b.data, "\r\nAllow: GET\r\n"));
    net_http_buf_free(&b);
}

static int proto_req(const char *header_value, const char **proto, char **token, size_t *tl)
{
    char req[1024];
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
             header_value);
    net_http_parser_t p;
    const net_http_request_t *r = parse(&p, req);
    int rc = ws_phoenix_protocol(r, proto, token, tl);
    net_http_parser_free(&p);
    return rc;
}

Test(ws_handshake, phoenix_subprotocol_token)
{
    const char *proto;
    char *tok;
    size_t tl;
    /* phoenix.js: btoa("1234") without '=' (its own test vector) */
    cr_assert_eq(proto_req("phoenix, base64url.bearer.phx.MTIzNA", &proto, &tok, &tl), 0);
    cr_assert_str_eq(proto, "phoenix");
    cr_assert_str_eq(tok, "1234");
    cr_assert_eq(tl, 4);
    free(tok);
    /* padded, and in the other order */
    cr_assert_eq(proto_req("base64url.bearer.phx.MTIzNA==,phoenix", &proto, &tok, &tl), 0);
    cr_assert_str_eq(proto, "phoenix");
    cr_assert_str_eq(tok, "1234");
    free(tok);
    /* bytes fb ff bf: standard "+/+/", URL-safe "-_-_" */
    cr_assert_eq(proto_req("phoenix, base64url.bearer.phx.-_-_", &proto, &tok, &tl), 0);
    cr_assert_eq(tl, 3);
    cr_assert_eq(memcmp(tok, "\xfb\xff\xbf", 3), 0);
    free(tok);
    cr_assert_eq(proto_req("phoenix, base64url.bearer.phx.+/+/", &proto, &tok, &tl), 0);
    cr_assert_eq(memcmp(tok, "\xfb\xff\xbf", 3), 0);
    free(tok);
    /* only phoenix */
    cr_assert_eq(proto_req("phoenix", &proto, &tok, &tl), 0);
    cr_assert_str_eq(proto, "phoenix");
    cr_assert_null(tok);
    /* a bearer but no phoenix offered: answer none */
    cr_assert_eq(proto_req("base64url.bearer.phx.MTIzNA", &proto, &tok, &tl), 0);
    cr_assert_null(proto);
    cr_assert_str_eq(tok, "1234");
    free(tok);
    /* names are case-sensitive */
    cr_assert_eq(proto_req("Phoenix", &proto, &tok, &tl), 0);
    cr_assert_null(proto);
    /* undecodable bearer */
    tok = (char *)"untouched";
    cr_assert_eq(proto_req("phoenix, base64url.bearer.phx.M*Iz", &proto, &tok, &tl), WS_E_HS_PROTOCOL);
    cr_assert_eq(proto_req("phoenix, base64url.bearer.phx.", &proto, &tok, &tl), WS_E_HS_PROTOCOL);
    cr_assert_eq(proto_req("phoenix, base64url.bearer.phx.AA", &proto, &tok, &tl), WS_E_HS_PROTOCOL);
    cr_assert_str_eq(tok, "untouched");
}

Test(ws_handshake, no_protocol_header)
{
    net_http_parser_t p;
    const net_http_request_t *r = parse(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    const char *proto = "x";
    char *tok = (char *)"x";
    cr_assert_eq(ws_phoenix_protocol(r, &proto, &tok, NULL), 0);
    cr_assert_null(proto);
    cr_assert_null(tok);
    net_http_parser_free(&p);
}

/* ---- reader: basics ------------------------------------------------- */

Test(ws_reader, rfc_masked_hello)
{
    /* RFC 6455 §5.7: a single-frame masked text message "Hello". */
    bytes_t b = {0};
    put(&b, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    run_t r = run_all_splits(&b, 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.ev[0].type, WS_EV_TEXT);
    cr_assert_eq(r.ev[0].len, 5);
    cr_assert_str_eq((char *)r.ev[0].data, "Hello");
    cr_assert_eq(r.consumed, 11);
    run_free(&r);
    free(b.p);
}

Test(ws_reader, unmasked_refused_1002)
{
    /* RFC 6455 §5.7's unmasked example is a server frame: from a client
     * it is a protocol error. */
    bytes_t b = {0};
    put(&b, "\x81\x05Hello", 7);
    expect_error(&b, WS_E_UNMASKED, 1002, 0);
    free(b.p);
}

Test(ws_reader, several_frames_one_chunk_and_lengths)
{
    bytes_t b = {0};
    uint8_t *big = malloc(70000);
    for (size_t i = 0; i < 70000; i++)
        big[i] = (uint8_t)(i * 7);
    client_frame(&b, WS_OP_BINARY, true, big, 125);
    client_frame(&b, WS_OP_BINARY, true, big, 126);
    client_frame(&b, WS_OP_BINARY, true, big, 65535);
    client_frame(&b, WS_OP_BINARY, true, big, 65536);
    client_frame(&b, WS_OP_BINARY, true, big, 70000);
    client_frame(&b, WS_OP_TEXT, true, "", 0);
    run_t r = run_all_splits(&b, 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 6);
    size_t lens[] = {125, 126, 65535, 65536, 70000};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(r.ev[i].type, WS_EV_BINARY);
        cr_assert_eq(r.ev[i].len, lens[i]);
        cr_assert_eq(memcmp(r.ev[i].data, big, lens[i]), 0, "frame %d", i);
    }
    cr_assert_eq(r.ev[5].type, WS_EV_TEXT);
    cr_assert_eq(r.ev[5].len, 0);
    cr_assert_eq(r.consumed, b.len);
    run_free(&r);
    free(big);
    free(b.p);
}

Test(ws_reader, fragmented_with_interleaved_ping)
{
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, false, "Hel", 3);
    client_frame(&b, WS_OP_PING, true, "are you there", 13);
    client_frame(&b, WS_OP_CONT, false, "l", 1);
    client_frame(&b, WS_OP_PONG, true, "", 0);
    client_frame(&b, WS_OP_CONT, true, "o", 1);
    client_frame(&b, WS_OP_BINARY, true, "\x00\x01", 2);
    run_t r = run_all_splits(&b, 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 4);
    cr_assert_eq(r.ev[0].type, WS_EV_PING);
    cr_assert_eq(r.ev[0].len, 13);
    cr_assert_eq(memcmp(r.ev[0].data, "are you there", 13), 0);
    cr_assert_eq(r.ev[1].type, WS_EV_PONG);
    cr_assert_eq(r.ev[1].len, 0);
    cr_assert_eq(r.ev[2].type, WS_EV_TEXT);
    cr_assert_str_eq((char *)r.ev[2].data, "Hello");
    cr_assert_eq(r.ev[3].type, WS_EV_BINARY);
    cr_assert_eq(r.ev[3].len, 2);
    cr_assert_eq(memcmp(r.ev[3].data, "\x00\x01", 2), 0);
    run_free(&r);
    free(b.p);
}

Test(ws_reader, ping_answered_with_pong_frame)
{
    bytes_t b = {0};
    client_frame(&b, WS_OP_PING, true, "abc", 3);
    ws_reader_t rd;
    ws_reader_init(&rd, NULL);
    ws_event_t ev;
    size_t used;
    cr_assert_eq(ws_reader_feed(&rd, b.p, b.len, &used, &ev), WS_EVENT);
    cr_assert_eq(ev.type, WS_EV_PING);
    ws_frame_t pong;
    cr_assert_eq(ws_frame_encode(WS_OP_PONG, ev.data, ev.len, &pong), 0);
    cr_assert_eq(pong.len, 5);
    cr_assert_eq(memcmp(pong.data, "\x8a\x03" "abc", 5), 0);
    ws_frame_free(&pong);
    ws_reader_free(&rd);
    free(b.p);
}

/* ---- reader: size limit -------------------------------------------- */

Test(ws_reader, max_message_exact_and_plus_one)
{
    size_t max = 1000;
    uint8_t *pl = malloc(max + 1);
    memset(pl, 'x', max + 1);

    bytes_t ok = {0};
    client_frame(&ok, WS_OP_TEXT, true, pl, max);
    run_t r = run_all_splits(&ok, max);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.ev[0].len, max);
    run_free(&r);

    bytes_t big = {0};
    client_frame(&big, WS_OP_TEXT, true, pl, max + 1);
    expect_error(&big, WS_E_TOO_BIG, 1009, max);
    /* refused from the header alone, before the payload arrives */
    r = run_reader(&(bytes_t){.p = big.p, .len = 4 + 4}, 0, max);
    cr_assert_eq(r.err, WS_E_TOO_BIG);
    run_free(&r);

    /* across fragments: 500 + 500 fits, 500 + 501 does not */
    bytes_t fr = {0};
    client_frame(&fr, WS_OP_BINARY, false, pl, 500);
    client_frame(&fr, WS_OP_CONT, true, pl, 500);
    r = run_all_splits(&fr, max);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.ev[0].len, 1000);
    run_free(&r);
    bytes_t fr2 = {0};
    client_frame(&fr2, WS_OP_BINARY, false, pl, 500);
    client_frame(&fr2, WS_OP_PING, true, "p", 1);
    client_frame(&fr2, WS_OP_CONT, true, pl, 501);
    expect_error(&fr2, WS_E_TOO_BIG, 1009, max);

    /* the limit is per message: two max-sized messages in a row are fine */
    bytes_t two = {0};
    client_frame(&two, WS_OP_TEXT, true, pl, max);
    client_frame(&two, WS_OP_TEXT, true, pl, max);
    r = run_all_splits(&two, max);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 2);
    run_free(&r);

    free(ok.p);
    free(big.p);
    free(fr.p);
    free(fr2.p);
    free(two.p);
    free(pl);
}

Test(ws_reader, default_limit_is_1mib)
{
    size_t max = 1024 * 1024;
    uint8_t *pl = malloc(max + 1);
    memset(pl, 'y', max + 1);
    bytes_t ok = {0};
    client_frame(&ok, WS_OP_BINARY, true, pl, max);
    run_t r = run_reader(&ok, 0, 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.ev[0].len, max);
    run_free(&r);
    bytes_t big = {0};
    client_frame(&big, WS_OP_BINARY, true, pl, max + 1);
    r = run_reader(&big, 0, 0);
    cr_assert_eq(r.err, WS_E_TOO_BIG);
    cr_assert_eq(ws_error_close_code(r.err), 1009);
    run_free(&r);
    free(ok.p);
    free(big.p);
    free(pl);
}

/* ---- reader: UTF-8 -------------------------------------------------- */

Test(ws_reader, invalid_utf8_1007)
{
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, true, "ab\xc0\xaf", 4); /* overlong '/' */
    expect_error(&b, WS_E_UTF8, 1007, 0);
    free(b.p);
    /* truncated at the end of the message */
    bytes_t t = {0};
    client_frame(&t, WS_OP_TEXT, true, "ab\xe2\x82", 4);
    expect_error(&t, WS_E_UTF8, 1007, 0);
    free(t.p);
    /* binary messages are not checked */
    bytes_t bin = {0};
    client_frame(&bin, WS_OP_BINARY, true, "\xc0\xaf", 2);
    run_t r = run_all_splits(&bin, 0);
    cr_assert_eq(r.err, 0);
    run_free(&r);
    free(bin.p);
}

Test(ws_reader, utf8_split_across_fragments)
{
    /* "€" (E2 82 AC) and "😀" (F0 9F 98 80) cut inside the sequence, with
     * a ping between the pieces. */
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, false, "a\xe2", 2);
    client_frame(&b, WS_OP_CONT, false, "\x82", 1);
    client_frame(&b, WS_OP_PING, true, "", 0);
    client_frame(&b, WS_OP_CONT, false, "\xac\xf0\x9f", 3);
    client_frame(&b, WS_OP_CONT, true, "\x98\x80", 2);
    run_t r = run_all_splits(&b, 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.ev[1].type, WS_EV_TEXT);
    cr_assert_str_eq((char *)r.ev[1].data, "a\xe2\x82\xac\xf0\x9f\x98\x80");
    run_free(&r);
    free(b.p);

    /* the same cut, but the continuation byte is wrong */
    bytes_t bad = {0};
    client_frame(&bad, WS_OP_TEXT, false, "a\xe2", 2);
    client_frame(&bad, WS_OP_CONT, true, "\x41\xac", 2);
    expect_error(&bad, WS_E_UTF8, 1007, 0);
    free(bad.p);

    /* a message ending inside a sequence split across fragments */
    bytes_t cut = {0};
    client_frame(&cut, WS_OP_TEXT, false, "\xf0\x9f", 2);
    client_frame(&cut, WS_OP_CONT, true, "\x98", 1);
    expect_error(&cut, WS_E_UTF8, 1007, 0);
    free(cut.p);
}

Test(ws_reader, utf8_fails_fast_before_message_ends)
{
    /* The bad byte is in the first fragment; the last fragment never
     * comes. The error must not wait for it. */
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, false, "ok\xff", 3);
    run_t r = run_reader(&b, 0, 0);
    cr_assert_eq(r.err, WS_E_UTF8);
    run_free(&r);
    free(b.p);
}

Test(ws_utf8, validator_cases)
{
    cr_assert(ws_utf8_valid("", 0));
    cr_assert(ws_utf8_valid("plain ascii, long enough for the word loop", 42));
    cr_assert(ws_utf8_valid("\xc2\x80", 2));          /* U+0080 */
    cr_assert(ws_utf8_valid("\xdf\xbf", 2));          /* U+07FF */
    cr_assert(ws_utf8_valid("\xe0\xa0\x80", 3));      /* U+0800 */
    cr_assert(ws_utf8_valid("\xed\x9f\xbf", 3));      /* U+D7FF */
    cr_assert(ws_utf8_valid("\xee\x80\x80", 3));      /* U+E000 */
    cr_assert(ws_utf8_valid("\xef\xbf\xbf", 3));      /* U+FFFF */
    cr_assert(ws_utf8_valid("\xf0\x90\x80\x80", 4));  /* U+10000 */
    cr_assert(ws_utf8_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    cr_assert(ws_utf8_valid("a\0b", 3));              /* NUL is valid UTF-8 */

    cr_assert_not(ws_utf8_valid("\x80", 1));          /* lone continuation */
    cr_assert_not(ws_utf8_valid("\xc0\x80", 2));      /* overlong NUL */
    cr_assert_not(ws_utf8_valid("\xc1\xbf", 2));      /* overlong */
    cr_assert_not(ws_utf8_valid("\xe0\x9f\xbf", 3));  /* overlong 3-byte */
    cr_assert_not(ws_utf8_valid("\xed\xa0\x80", 3));  /* surrogate D800 */
    cr_assert_not(ws_utf8_valid("\xed\xbf\xbf", 3));  /* surrogate DFFF */
    cr_assert_not(ws_utf8_valid("\xf0\x8f\xbf\xbf", 4)); /* overlong 4-byte */
    cr_assert_not(ws_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    cr_assert_not(ws_utf8_valid("\xf5\x80\x80\x80", 4));
    cr_assert_not(ws_utf8_valid("\xff", 1));
    cr_assert_not(ws_utf8_valid("\xe2\x82", 2));      /* truncated */
    cr_assert_not(ws_utf8_valid("abcdefgh\xe2\x82", 10));
    cr_assert_not(ws_utf8_valid("abcdefghijklmnop\xc3", 17));

    ws_utf8_t u;
    ws_utf8_init(&u);
    cr_assert(ws_utf8_feed(&u, "\xf0", 1));
    cr_assert_not(ws_utf8_complete(&u));
    cr_assert(ws_utf8_feed(&u, "\x9f\x98", 2));
    cr_assert(ws_utf8_feed(&u, "\x80", 1));
    cr_assert(ws_utf8_complete(&u));
}

/* ---- reader: close -------------------------------------------------- */

static run_t close_with(const void *payload, size_t len)
{
    bytes_t b = {0};
    client_frame(&b, WS_OP_CLOSE, true, payload, len);
    client_frame(&b, WS_OP_TEXT, true, "after", 5); /* never read */
    run_t r = run_all_splits(&b, 0);
    free(b.p);
    return r;
}

Test(ws_reader, close_with_code_and_reason)
{
    run_t r = close_with("\x03\xe8" "bye", 5);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.ev[0].type, WS_EV_CLOSE);
    cr_assert_eq(r.ev[0].code, 1000);
    cr_assert_eq(r.ev[0].len, 3);
    cr_assert_str_eq((char *)r.ev[0].data, "bye");
    run_free(&r);

    ws_event_t ev = {.type = WS_EV_CLOSE, .close_code = 1001};
    ws_frame_t f;
    cr_assert_eq(ws_close_reply(&ev, &f), 0);
    cr_assert_eq(f.len, 4);
    cr_assert_eq(memcmp(f.data, "\x88\x02\x03\xe9", 4), 0); /* 1001 echoed */
    ws_frame_free(&f);
}

Test(ws_reader, close_empty_reports_1005)
{
    run_t r = close_with("", 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.ev[0].type, WS_EV_CLOSE);
    cr_assert_eq(r.ev[0].code, WS_CLOSE_NO_STATUS);
    cr_assert_eq(r.ev[0].len, 0);
    run_free(&r);
    ws_event_t ev = {.type = WS_EV_CLOSE, .close_code = WS_CLOSE_NO_STATUS};
    ws_frame_t f;
    cr_assert_eq(ws_close_reply(&ev, &f), 0);
    cr_assert_eq(f.len, 2);
    cr_assert_eq(memcmp(f.data, "\x88\x00", 2), 0);
    ws_frame_free(&f);
}

Test(ws_reader, close_codes_accepted)
{
    unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                     1014, 3000, 3008, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint8_t p[2] = {(uint8_t)(ok[i] >> 8), (uint8_t)ok[i]};
        run_t r = close_with(p, 2);
        cr_assert_eq(r.err, 0, "code %u", ok[i]);
        cr_assert_eq(r.ev[0].code, ok[i]);
        run_free(&r);
    }
}

Test(ws_reader, close_codes_refused_1002)
{
    unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        run_t r = close_with(p, 2);
        cr_assert_eq(r.err, WS_E_CLOSE_CODE, "code %u", bad[i]);
        cr_assert_eq(ws_error_close_code(r.err), 1002);
        run_free(&r);
    }
}

Test(ws_reader, close_payload_errors)
{
    run_t r = close_with("\x03", 1);
    cr_assert_eq(r.err, WS_E_CLOSE_PAYLOAD);
    cr_assert_eq(ws_error_close_code(r.err), 1002);
    run_free(&r);
    r = close_with("\x03\xe8\xff\xfe", 4);
    cr_assert_eq(r.err, WS_E_CLOSE_UTF8);
    cr_assert_eq(ws_error_close_code(r.err), 1007);
    run_free(&r);
}

/* ---- reader: protocol errors --------------------------------------- */

Test(ws_reader, protocol_errors_1002)
{
    bytes_t b;

    for (int rsv = 1; rsv <= 4; rsv <<= 1) { /* RSV3, RSV2, RSV1 */
        b = (bytes_t){0};
        client_frame_raw(&b, (uint8_t)(0x81 | (rsv << 4)), true, "x", 1);
        expect_error(&b, WS_E_RSV, 1002, 0);
        free(b.p);
    }
    uint8_t ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof ops; i++) {
        b = (bytes_t){0};
        client_frame_raw(&b, (uint8_t)(0x80 | ops[i]), true, "x", 1);
        expect_error(&b, WS_E_OPCODE, 1002, 0);
        free(b.p);
    }

    b = (bytes_t){0};
    client_frame(&b, WS_OP_PING, false, "x", 1);
    expect_error(&b, WS_E_CONTROL_FRAGMENTED, 1002, 0);
    free(b.p);

    uint8_t big[200] = {0};
    b = (bytes_t){0};
    client_frame(&b, WS_OP_PING, true, big, 126);
    expect_error(&b, WS_E_CONTROL_TOO_LONG, 1002, 0);
    free(b.p);
    b = (bytes_t){0};
    client_frame(&b, WS_OP_CLOSE, true, big, 126);
    expect_error(&b, WS_E_CONTROL_TOO_LONG, 1002, 0);
    free(b.p);
    /* 125 is fine */
    b = (bytes_t){0};
    client_frame(&b, WS_OP_PONG, true, big, 125);
    run_t r = run_all_splits(&b, 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.ev[0].len, 125);
    run_free(&r);
    free(b.p);

    b = (bytes_t){0};
    client_frame(&b, WS_OP_CONT, true, "x", 1);
    expect_error(&b, WS_E_CONTINUATION, 1002, 0);
    free(b.p);
    /* a continuation after a finished message */
    b = (bytes_t){0};
    client_frame(&b, WS_OP_TEXT, true, "x", 1);
    client_frame(&b, WS_OP_CONT, true, "y", 1);
    expect_error(&b, WS_E_CONTINUATION, 1002, 0);
    free(b.p);

    b = (bytes_t){0};
    client_frame(&b, WS_OP_TEXT, false, "x", 1);
    client_frame(&b, WS_OP_TEXT, true, "y", 1);
    expect_error(&b, WS_E_INTERLEAVED, 1002, 0);
    free(b.p);
    b = (bytes_t){0};
    client_frame(&b, WS_OP_BINARY, false, "x", 1);
    client_frame(&b, WS_OP_TEXT, true, "y", 1);
    expect_error(&b, WS_E_INTERLEAVED, 1002, 0);
    free(b.p);

    b = (bytes_t){0};
    put(&b, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00" "abcd", 14);
    expect_error(&b, WS_E_LENGTH, 1002, 0);
    free(b.p);
}

Test(ws_reader, errors_are_sticky_and_events_in_order)
{
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, true, "one", 3);
    client_frame_raw(&b, 0x81, false, "two", 3);
    run_t r = run_all_splits(&b, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_str_eq((char *)r.ev[0].data, "one");
    cr_assert_eq(r.err, WS_E_UNMASKED);
    run_free(&r);

    ws_reader_t rd;
    ws_reader_init(&rd, NULL);
    ws_event_t ev;
    size_t used;
    cr_assert_eq(ws_reader_feed(&rd, b.p + 9, b.len - 9, &used, &ev), WS_E_UNMASKED);
    cr_assert_eq(ws_reader_feed(&rd, b.p, 9, &used, &ev), WS_E_UNMASKED);
    cr_assert_eq(used, 0);
    ws_reader_free(&rd);
    free(b.p);
}

Test(ws_reader, strerror_fits_close_reason)
{
    for (int e = -30; e <= 1; e++)
        cr_assert_leq(strlen(ws_strerror(e)), WS_CLOSE_REASON_MAX);
}

/* ---- writer --------------------------------------------------------- */

Test(ws_writer, header_sizes)
{
    uint8_t h[WS_FRAME_HEADER_MAX];
    cr_assert_eq(ws_frame_header_len(0), 2);
    cr_assert_eq(ws_frame_header_len(125), 2);
    cr_assert_eq(ws_frame_header_len(126), 4);
    cr_assert_eq(ws_frame_header_len(65535), 4);
    cr_assert_eq(ws_frame_header_len(65536), 10);

    cr_assert_eq(ws_frame_write_header(h, WS_OP_TEXT, true, 125), 2);
    cr_assert_eq(memcmp(h, "\x81\x7d", 2), 0);
    cr_assert_eq(ws_frame_write_header(h, WS_OP_BINARY, true, 126), 4);
    cr_assert_eq(memcmp(h, "\x82\x7e\x00\x7e", 4), 0);
    cr_assert_eq(ws_frame_write_header(h, WS_OP_TEXT, false, 65535), 4);
    cr_assert_eq(memcmp(h, "\x01\x7e\xff\xff", 4), 0);
    cr_assert_eq(ws_frame_write_header(h, WS_OP_TEXT, true, 65536), 10);
    cr_assert_eq(memcmp(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10), 0);
}

Test(ws_writer, encode_is_unmasked_and_self_contained)
{
    ws_frame_t f;
    cr_assert_eq(ws_frame_encode(WS_OP_TEXT, "Hello", 5, &f), 0);
    /* RFC 6455 §5.7: unmasked "Hello" */
    cr_assert_eq(f.len, 7);
    cr_assert_eq(memcmp(f.data, "\x81\x05Hello", 7), 0);
    ws_frame_free(&f);
    cr_assert_null(f.data);

    uint8_t *big = malloc(70000);
    memset(big, 'z', 70000);
    cr_assert_eq(ws_frame_encode(WS_OP_BINARY, big, 70000, &f), 0);
    cr_assert_eq(f.len, 70010);
    cr_assert_eq(f.data[1], 127);
    cr_assert_eq(memcmp(f.data + 10, big, 70000), 0);
    ws_frame_free(&f);
    free(big);

    cr_assert_eq(ws_frame_encode(WS_OP_TEXT, NULL, 0, &f), 0);
    cr_assert_eq(memcmp(f.data, "\x81\x00", 2), 0);
    ws_frame_free(&f);
}

Test(ws_writer, encode_refuses_bad_frames)
{
    ws_frame_t f = {0};
    uint8_t p[126] = {0};
    cr_assert_eq(ws_frame_encode(WS_OP_PING, p, 126, &f), WS_E_ARG);
    cr_assert_eq(ws_frame_encode(WS_OP_CONT, p, 1, &f), WS_E_ARG);
    cr_assert_eq(ws_frame_encode((ws_opcode_t)3, p, 1, &f), WS_E_ARG);
    cr_assert_eq(ws_frame_encode(WS_OP_TEXT, NULL, 3, &f), WS_E_ARG);
    cr_assert_null(f.data);
    cr_assert_eq(ws_frame_encode(WS_OP_PING, p, 125, &f), 0);
    ws_frame_free(&f);
}

Test(ws_writer, write_into_caller_memory)
{
    uint8_t buf[16];
    cr_assert_eq(ws_frame_write(buf, sizeof buf, WS_OP_TEXT, "hi", 2), 4);
    cr_assert_eq(memcmp(buf, "\x81\x02hi", 4), 0);
    cr_assert_eq(ws_frame_write(buf, 3, WS_OP_TEXT, "hi", 2), WS_E_ARG);
}

Test(ws_writer, close_frames)
{
    ws_frame_t f;
    cr_assert_eq(ws_close_encode(1009, "message too big", 15, &f), 0);
    cr_assert_eq(f.len, 2 + 2 + 15);
    cr_assert_eq(memcmp(f.data, "\x88\x11\x03\xf1message too big", 19), 0);
    ws_frame_free(&f);

    cr_assert_eq(ws_close_encode(0, NULL, 0, &f), 0);
    cr_assert_eq(f.len, 2);
    ws_frame_free(&f);

    /* A 200-byte reason of 2-byte characters is cut to 122 bytes: 123
     * would split a character. */
    char reason[200];
    for (int i = 0; i < 200; i += 2) {
        reason[i] = '\xc3';
        reason[i + 1] = '\xa9';
    }
    cr_assert_eq(ws_close_encode(1000, reason, 200, &f), 0);
    cr_assert_eq(f.len, 2 + 2 + 122);
    cr_assert_eq(f.data[1], 124);
    cr_assert(ws_utf8_valid(f.data + 4, 122));
    ws_frame_free(&f);
    /* 123 ASCII bytes are kept whole */
    memset(reason, 'r', 200);
    cr_assert_eq(ws_close_encode(1000, reason, 200, &f), 0);
    cr_assert_eq(f.len, 2 + 2 + 123);
    ws_frame_free(&f);

    f = (ws_frame_t){0};
    cr_assert_eq(ws_close_encode(1005, NULL, 0, &f), WS_E_ARG);
    cr_assert_eq(ws_close_encode(999, NULL, 0, &f), WS_E_ARG);
    cr_assert_eq(ws_close_encode(1000, "\xff", 1, &f), WS_E_ARG);
    cr_assert_eq(ws_close_encode(0, "x", 1, &f), WS_E_ARG);
    cr_assert_null(f.data);
    cr_assert_eq(ws_close_encode(WS_CLOSE_SLOW_CONSUMER, "slow", 4, &f), 0);
    cr_assert_eq(memcmp(f.data + 2, "\x0b\xc0", 2), 0);
    ws_frame_free(&f);
}

/* What the writer produces, once masked, the reader reads back. */
Test(ws_writer, round_trip_through_reader)
{
    const char *msg = "{\"topic\":\"room:1\"}";
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, true, msg, strlen(msg));
    ws_frame_t f;
    cr_assert_eq(ws_frame_encode(WS_OP_TEXT, msg, strlen(msg), &f), 0);
    /* same header apart from the mask bit and key */
    cr_assert_eq(f.data[0], b.p[0]);
    cr_assert_eq(f.data[1] | 0x80, b.p[1]);
    run_t r = run_reader(&b, 0, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(memcmp(r.ev[0].data, f.data + 2, strlen(msg)), 0);
    run_free(&r);
    ws_frame_free(&f);
    free(b.p);
}

Test(ws_reader, huge_limit_does_not_wrap, .timeout = 5)
{
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, true, "Hello", 5);
    run_t r = run_reader(&b, 0, SIZE_MAX);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_str_eq((char *)r.ev[0].data, "Hello");
    run_free(&r);
    free(b.p);
}

/* ---- allocation failures -------------------------------------------- */

Test(ws_fault, reader_under_allocation_failure)
{
#if !FAULTS
    cr_skip_test("allocation faults are injected in the plain build only");
#else
    uint8_t *pl = malloc(5000);
    memset(pl, 'q', 5000);
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, false, pl, 1500);
    client_frame(&b, WS_OP_PING, true, "p", 1);
    client_frame(&b, WS_OP_CONT, true, pl, 3500);
    long i;
    for (i = 0; i < FAULT_SWEEP_MAX; i++) {
        long before = heap_in_use();
        ws_reader_t rd;
        ws_reader_init(&rd, NULL);
        int got_ping = 0, got_text = 0, err = 0;
        size_t off = 0;
        fault_arm(i);
        while (off < b.len) {
            size_t used;
            ws_event_t ev;
            int rc = ws_reader_feed(&rd, b.p + off, b.len - off, &used, &ev);
            off += used;
            if (rc < 0) {
                err = rc;
                break;
            }
            if (rc == WS_EVENT && ev.type == WS_EV_PING)
                got_ping++;
            if (rc == WS_EVENT && ev.type == WS_EV_TEXT && ev.len == 5000)
                got_text++;
        }
        bool hit = fault_disarm();
        if (err) {
            cr_assert_eq(err, WS_E_NOMEM);
            cr_assert_eq(ws_error_close_code(err), 1011);
        } else {
            cr_assert_eq(got_ping, 1);
            cr_assert_eq(got_text, 1);
        }
        ws_reader_free(&rd);
        cr_assert_eq(heap_in_use(), before, "leak with allocation %ld failing", i);
        if (!hit) {
            cr_assert_eq(err, 0);
            break;
        }
    }
    cr_assert_gt(i, 0);
    free(b.p);
    free(pl);
#endif
}

Test(ws_fault, handshake_and_writer_under_allocation_failure)
{
#if !FAULTS
    cr_skip_test("allocation faults are injected in the plain build only");
#else
    net_http_parser_t p;
    const net_http_request_t *r =
        parse(&p, "GET / HTTP/1.1\r\nHost: h\r\n" GOOD_UPGRADE GOOD_KEY GOOD_VER
                  "Sec-WebSocket-Protocol: phoenix, base64url.bearer.phx.MTIzNA\r\n\r\n");
    char acc[WS_ACCEPT_LEN + 1];
    cr_assert_eq(ws_handshake_check(r, acc), 0); /* libcrypto's one-time setup */
    for (long i = 0; i < FAULT_SWEEP_MAX; i++) {
        long before = heap_in_use();
        net_http_buf_t out = {0};
        ws_frame_t f = {0}, c = {0};
        const char *proto = NULL;
        char *tok = NULL;
        fault_arm(i);
        int hs = ws_handshake_check(r, acc);
        int pr = ws_phoenix_protocol(r, &proto, &tok, NULL);
        int rs = ws_handshake_response(&out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "phoenix");
        int rj = ws_handshake_reject(&out, WS_E_HS_VERSION);
        int fe = ws_frame_encode(WS_OP_TEXT, "hi", 2, &f);
        int ce = ws_close_encode(1000, "bye", 3, &c);
        bool hit = fault_disarm();
        if (hs == 0)
            cr_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        else
            cr_assert_eq(hs, WS_E_NOMEM);
        if (pr == 0)
            cr_assert_str_eq(tok, "1234");
        else
            cr_assert_eq(pr, WS_E_NOMEM);
        cr_assert(rs == 0 || rs == WS_E_NOMEM);
        cr_assert(rj == 0 || rj == WS_E_NOMEM);
        if (rs == 0)
            cr_assert(strncmp(out.data, "HTTP/1.1 101 ", 13) == 0);
        if (rs != 0 && rj != 0)
            cr_assert_eq(out.len, 0, "nothing half-written");
        if (fe == 0)
            cr_assert_eq(memcmp(f.data, "\x81\x02hi", 4), 0);
        else
            cr_assert_eq(fe, WS_E_NOMEM);
        cr_assert(ce == 0 || ce == WS_E_NOMEM);
        free(tok);
        ws_frame_free(&f);
        ws_frame_free(&c);
        net_http_buf_free(&out);
        cr_assert_eq(heap_in_use(), before, "leak with allocation %ld failing", i);
        if (!hit)
            break;
    }
    net_http_parser_free(&p);
#endif
}

/* The endpoint frees the message buffer of idle connections between
 * messages and keeps using the reader. */
Test(ws_reader, free_between_messages_keeps_reader_usable)
{
    bytes_t b = {0};
    client_frame(&b, WS_OP_TEXT, true, "one", 3);
    size_t first = b.len;
    client_frame(&b, WS_OP_TEXT, false, "tw", 2);
    size_t second = b.len;
    client_frame(&b, WS_OP_CONT, true, "o", 1);

    ws_reader_t rd;
    ws_reader_init(&rd, NULL);
    ws_event_t ev;
    size_t used;
    cr_assert_eq(ws_reader_feed(&rd, b.p, first, &used, &ev), WS_EVENT);
    cr_assert_str_eq((char *)ev.data, "one");
    ws_reader_free(&rd);
    cr_assert_null(rd.msg);
    cr_assert_eq(ws_reader_feed(&rd, b.p + first, b.len - first, &used, &ev), WS_EVENT);
    cr_assert_eq(ev.type, WS_EV_TEXT);
    cr_assert_str_eq((char *)ev.data, "two");
    ws_reader_free(&rd);
    ws_reader_free(&rd);

    /* mid-message: finished, not a message with a hole */
    ws_reader_init(&rd, NULL);
    cr_assert_eq(ws_reader_feed(&rd, b.p + first, second - first, &used, &ev), WS_NEED_MORE);
    ws_reader_free(&rd);
    cr_assert_eq(ws_reader_feed(&rd, b.p + second, b.len - second, &used, &ev), WS_E_CLOSED);
    cr_assert_eq(used, 0);
    ws_reader_free(&rd);
    free(b.p);
}
