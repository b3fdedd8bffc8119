/*
 * net/ws.c — RFC 6455 WebSocket for the server side (see net/ws.h).
 *
 * The frame reader is written here rather than taken from wslay, which
 * design §7 lists. wslay's frame API pulls bytes through a recv callback
 * and its event API owns the socket's send queue and copies every
 * outgoing message per connection. roost's endpoint is the other way
 * round: libuv pushes read chunks at us, and outgoing broadcast frames are
 * encoded once and shared by all subscribers (design §1), so neither API
 * fits without adapters that would buffer twice. Framing itself is small;
 * writing it lets us report each protocol error with its own close code
 * and reason, fail UTF-8 at the first bad byte across fragments, and
 * refuse an oversized message from its frame header, before buffering it.
 *
 * Reader rules:
 *  1. One event per ws_reader_feed() call; the caller loops. Event data
 *     lives in the reader (message buffer or control buffer) until the
 *     next feed, which is when a delivered message buffer is reset.
 *  2. Control frames use their own 125-byte buffer, so they can arrive
 *     between fragments without disturbing the message being assembled.
 *  3. The message buffer grows as payload bytes arrive, never from what a
 *     header announces, so a peer cannot make us allocate max_message by
 *     sending a header alone. A large buffer is released after use.
 */
#include "net/ws.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>

enum { ST_HEADER = 0, ST_PAYLOAD, ST_CLOSED };

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* A message buffer larger than this is freed once its message is read. */
#define MSG_KEEP_MAX (64u * 1024u)

static const uint8_t empty_payload[1] = {0};

/* ---- errors ----------------------------------------------------------- */

int ws_error_close_code(int err)
{
    switch (err) {
    case WS_E_RSV:
    case WS_E_OPCODE:
    case WS_E_UNMASKED:
    case WS_E_CONTROL_FRAGMENTED:
    case WS_E_CONTROL_TOO_LONG:
    case WS_E_CONTINUATION:
    case WS_E_INTERLEAVED:
    case WS_E_LENGTH:
    case WS_E_CLOSE_PAYLOAD:
    case WS_E_CLOSE_CODE:
        return WS_CLOSE_PROTOCOL;
    case WS_E_UTF8:
    case WS_E_CLOSE_UTF8:
        return WS_CLOSE_INVALID_DATA;
    case WS_E_TOO_BIG:
        return WS_CLOSE_TOO_BIG;
    case WS_E_NOMEM:
        return WS_CLOSE_INTERNAL;
    default:
        return 0;
    }
}

const char *ws_strerror(int err)
{
    switch (err) {
    case WS_NEED_MORE: return "need more bytes";
    case WS_EVENT: return "event";
    case WS_E_NOMEM: return "out of memory";
    case WS_E_ARG: return "invalid argument";
    case WS_E_RSV: return "reserved bits set";
    case WS_E_OPCODE: return "unknown opcode";
    case WS_E_UNMASKED: return "client frame not masked";
    case WS_E_CONTROL_FRAGMENTED: return "fragmented control frame";
    case WS_E_CONTROL_TOO_LONG: return "control frame payload over 125 bytes";
    case WS_E_CONTINUATION: return "continuation frame outside a message";
    case WS_E_INTERLEAVED: return "new message before the previous one ended";
    case WS_E_LENGTH: return "invalid payload length";
    case WS_E_CLOSE_PAYLOAD: return "close payload of one byte";
    case WS_E_CLOSE_CODE: return "invalid close code";
    case WS_E_UTF8: return "text message is not valid UTF-8";
    case WS_E_CLOSE_UTF8: return "close reason is not valid UTF-8";
    case WS_E_TOO_BIG: return "message too big";
    case WS_E_CLOSED: return "data after close";
    case WS_E_HS_METHOD: return "WebSocket upgrade must use GET";
    case WS_E_HS_HTTP: return "WebSocket upgrade needs HTTP/1.1";
    case WS_E_HS_UPGRADE: return "missing Upgrade: websocket";
    case WS_E_HS_CONNECTION: return "missing Connection: upgrade";
    case WS_E_HS_VERSION: return "unsupported Sec-WebSocket-Version (need 13)";
    case WS_E_HS_KEY: return "missing or invalid Sec-WebSocket-Key";
    case WS_E_HS_PROTOCOL: return "invalid bearer token subprotocol";
    default: return "unknown error";
    }
}

/* ---- UTF-8 ------------------------------------------------------------ */

void ws_utf8_init(ws_utf8_t *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xBF;
}

/* The lead byte fixes how many continuation bytes follow and, for E0, ED,
 * F0 and F4, a narrower range for the first of them: that is what rules
 * out overlong forms, UTF-16 surrogates and code points past U+10FFFF
 * (RFC 3629 §4). */
bool ws_utf8_feed(ws_utf8_t *u, const void *data, size_t len)
{
    const uint8_t *s = data;
    size_t i = 0;
    while (i < len) {
        if (u->need == 0) {
            /* ASCII runs are the common case: skip them 8 bytes at a time. */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == len)
                break;
            uint8_t c = s[i++];
            if (c < 0x80)
                continue;
            u->lo = 0x80;
            u->hi = 0xBF;
            if (c >= 0xC2 && c <= 0xDF) {
                u->need = 1;
            } else if (c >= 0xE0 && c <= 0xEF) {
                u->need = 2;
                if (c == 0xE0)
                    u->lo = 0xA0;
                else if (c == 0xED)
                    u->hi = 0x9F;
            } else if (c >= 0xF0 && c <= 0xF4) {
                u->need = 3;
                if (c == 0xF0)
                    u->lo = 0x90;
                else if (c == 0xF4)
                    u->hi = 0x8F;
            } else {
                return false;
            }
        } else {
            uint8_t c = s[i++];
            if (c < u->lo || c > u->hi)
                return false;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
        }
    }
    return true;
}

bool ws_utf8_complete(const ws_utf8_t *u)
{
    return u->need == 0;
}

bool ws_utf8_valid(const void *data, size_t len)
{
    ws_utf8_t u;
    ws_utf8_init(&u);
    return ws_utf8_feed(&u, data, len) && ws_utf8_complete(&u);
}

/* ---- base64 ----------------------------------------------------------- */

/* Value of a base64 digit in either alphabet (standard or URL-safe), or
 * -1. Small and local: libcrypto's decoder accepts whitespace and cannot
 * tell the exact length of unpadded input. */
static int b64val(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

/* Decode len digits (no padding) of one alphabet into out, which has room
 * for len * 3 / 4 bytes. Returns the byte count or -1. */
static ptrdiff_t b64_decode(const char *s, size_t len, bool url, uint8_t *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i], url);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (ptrdiff_t)o;
}

/* Strip up to two '=' and decode, trying the standard alphabet, then the
 * URL-safe one. */
static ptrdiff_t b64_decode_any(const char *s, size_t len, uint8_t *out)
{
    if (len >= 1 && s[len - 1] == '=') {
        if (len % 4 != 0)
            return -1;
        len--;
        if (len >= 1 && s[len - 1] == '=')
            len--;
    }
    ptrdiff_t n = b64_decode(s, len, false, out);
    if (n < 0)
        n = b64_decode(s, len, true, out);
    return n;
}

/* ---- handshake -------------------------------------------------------- */

int ws_accept_key(const char *key, size_t key_len, char accept[WS_ACCEPT_LEN + 1])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(ctx, key, key_len) &&
             EVP_DigestUpdate(ctx, WS_GUID, sizeof WS_GUID - 1) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 20;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* The failure is reported as our code; leave no stale entries on
         * this thread's libcrypto error queue for its next user. */
        ERR_clear_error();
        return WS_E_NOMEM;
    }
    EVP_EncodeBlock((unsigned char *)accept, md, 20); /* 28 chars + NUL */
    return 0;
}

static size_t count_headers(const net_http_request_t *req, const char *name)
{
    size_t n = 0, nl = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++) {
        const net_http_header_t *h = &req->headers[i];
        if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0)
            n++;
    }
    return n;
}

int ws_handshake_check(const net_http_request_t *req, char accept[WS_ACCEPT_LEN + 1])
{
    if (req->method != NET_HTTP_GET)
        return WS_E_HS_METHOD;
    if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1))
        return WS_E_HS_HTTP;
    if (!net_http_header_has_token(req, "Upgrade", "websocket"))
        return WS_E_HS_UPGRADE;
    if (!net_http_header_has_token(req, "Connection", "upgrade"))
        return WS_E_HS_CONNECTION;
    const char *ver = net_http_header_get(req, "Sec-WebSocket-Version");
    if (!ver || strcmp(ver, "13") != 0)
        return WS_E_HS_VERSION;
    const char *key = net_http_header_get(req, "Sec-WebSocket-Key");
    if (!key || count_headers(req, "Sec-WebSocket-Key") != 1)
        return WS_E_HS_KEY;
    /* RFC 6455 §4.2.1: base64 of 16 bytes is exactly 22 digits + "==". */
    size_t kl = strlen(key);
    uint8_t raw[24];
    if (kl != 24 || key[22] != '=' || key[23] != '=' ||
        b64_decode(key, 22, false, raw) != 16)
        return WS_E_HS_KEY;
    return ws_accept_key(key, kl, accept);
}

#define PHX_BEARER_PREFIX "base64url.bearer.phx."

int ws_phoenix_protocol(const net_http_request_t *req, const char **protocol,
                        char **token, size_t *token_len)
{
    const char *proto = NULL;
    const char *enc = NULL;
    size_t enc_len = 0;
    static const char hname[] = "Sec-WebSocket-Protocol";

    for (size_t i = 0; i < req->n_headers; i++) {
        const net_http_header_t *h = &req->headers[i];
        if (h->name_len != sizeof hname - 1 || strncasecmp(h->name, hname, h->name_len) != 0)
            continue;
        const char *s = h->value, *end = h->value + h->value_len;
        while (s < end) {
            const char *comma = memchr(s, ',', (size_t)(end - s));
            const char *a = s, *b = comma ? comma : end;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            size_t n = (size_t)(b - a);
            /* Subprotocol names are case-sensitive (RFC 6455 §4.1). */
            if (n == 7 && memcmp(a, "phoenix", 7) == 0)
                proto = "phoenix";
            else if (!enc && n >= sizeof PHX_BEARER_PREFIX - 1 &&
                     memcmp(a, PHX_BEARER_PREFIX, sizeof PHX_BEARER_PREFIX - 1) == 0) {
                enc = a + sizeof PHX_BEARER_PREFIX - 1;
                enc_len = n - (sizeof PHX_BEARER_PREFIX - 1);
            }
            s = comma ? comma + 1 : end;
        }
    }
    char *tok = NULL;
    ptrdiff_t tl = 0;
    if (enc) {
        if (enc_len == 0)
            return WS_E_HS_PROTOCOL;
        tok = malloc(enc_len * 3 / 4 + 2);
        if (!tok)
            return WS_E_NOMEM;
        tl = b64_decode_any(enc, enc_len, (uint8_t *)tok);
        if (tl <= 0 || memchr(tok, '\0', (size_t)tl)) {
            free(tok);
            return WS_E_HS_PROTOCOL;
        }
        tok[tl] = '\0';
    }
    *protocol = proto;
    *token = tok;
    if (token_len)
        *token_len = tok ? (size_t)tl : 0;
    return 0;
}

static void buf_truncate(net_http_buf_t *b, size_t mark)
{
    b->len = mark;
    if (b->data)
        b->data[mark] = '\0';
}

int ws_handshake_response(net_http_buf_t *out, const char *accept, const char *protocol)
{
    size_t mark = out->len;
    int rc = net_http_response_start(out, 101);
    if (!rc)
        rc = net_http_response_header(out, "Upgrade", "websocket");
    if (!rc)
        rc = net_http_response_header(out, "Connection", "Upgrade");
    if (!rc)
        rc = net_http_response_header(out, "Sec-WebSocket-Accept", accept);
    if (!rc && protocol)
        rc = net_http_response_header(out, "Sec-WebSocket-Protocol", protocol);
    if (!rc)
        rc = net_http_response_end_headers(out);
    if (rc) {
        buf_truncate(out, mark);
        return rc == NET_HTTP_E_NOMEM ? WS_E_NOMEM : WS_E_ARG;
    }
    return 0;
}

int ws_handshake_status(int err)
{
    switch (err) {
    case WS_E_HS_METHOD: return 405;
    case WS_E_HS_VERSION: return 426;
    case WS_E_NOMEM: return 500;
    default: return 400;
    }
}

int ws_handshake_reject(net_http_buf_t *out, int err)
{
    int status = ws_handshake_status(err);
    size_t blen;
    char *body = net_http_json_error_body("bad_request", ws_strerror(err), &blen);
    if (!body)
        return WS_E_NOMEM;
    size_t mark = out->len;
    int rc = net_http_response_start(out, status);
    if (!rc && status == 426)
        rc = net_http_response_header(out, "Sec-WebSocket-Version", "13");
    if (!rc && status == 405)
        rc = net_http_response_header(out, "Allow", "GET");
    if (!rc)
        rc = net_http_response_header(out, "Content-Type", "application/json");
    if (!rc)
        rc = net_http_response_header(out, "Connection", "close");
    if (!rc)
        rc = net_http_response_end(out, body, blen);
    free(body);
    if (rc) {
        buf_truncate(out, mark);
        return WS_E_NOMEM;
    }
    return 0;
}

/* ---- reader ----------------------------------------------------------- */

void ws_reader_init(ws_reader_t *r, const ws_reader_config_t *cfg)
{
    void *data = r->data;
    memset(r, 0, sizeof *r);
    r->data = data;
    r->max_message = (cfg && cfg->max_message) ? cfg->max_message : WS_MAX_MESSAGE_DEFAULT;
    if (r->max_message > SIZE_MAX / 4) /* keep max_message + 1 from wrapping */
        r->max_message = SIZE_MAX / 4;
    r->state = ST_HEADER;
    r->hdr_need = 2;
    ws_utf8_init(&r->utf8);
}

void ws_reader_free(ws_reader_t *r)
{
    free(r->msg);
    r->msg = NULL;
    r->msg_len = r->msg_cap = 0;
    if (r->msg_opcode) /* fragments of an open message were dropped */
        r->state = ST_CLOSED;
}

static bool close_code_valid(unsigned code)
{
    /* RFC 6455 §7.4: 1004-1006 and 1015 are never sent on the wire;
     * 1012-1014 are registered with IANA since. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static int reader_fail(ws_reader_t *r, int err)
{
    r->err = err;
    return err;
}

/* First two header bytes are in: check everything they decide. */
static int check_first(ws_reader_t *r)
{
    uint8_t b0 = r->hdr[0], b1 = r->hdr[1];
    uint8_t op = b0 & 0x0F;
    bool fin = (b0 & 0x80) != 0;
    unsigned len7 = b1 & 0x7F;

    if (b0 & 0x70)
        return WS_E_RSV;
    if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY &&
        op != WS_OP_CLOSE && op != WS_OP_PING && op != WS_OP_PONG)
        return WS_E_OPCODE;
    if (!(b1 & 0x80))
        return WS_E_UNMASKED;
    if (op & 0x8) {
        if (!fin)
            return WS_E_CONTROL_FRAGMENTED;
        if (len7 > WS_CONTROL_MAX)
            return WS_E_CONTROL_TOO_LONG;
    } else if (op == WS_OP_CONT) {
        if (!r->msg_opcode)
            return WS_E_CONTINUATION;
    } else {
        if (r->msg_opcode)
            return WS_E_INTERLEAVED;
        r->msg_opcode = op;
        ws_utf8_init(&r->utf8);
    }
    r->opcode = op;
    r->fin = fin;
    r->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4);
    return 0;
}

/* The whole header is in: length, size limit, mask. */
static int finish_header(ws_reader_t *r)
{
    unsigned len7 = r->hdr[1] & 0x7F;
    uint64_t plen;
    size_t p = 2;
    if (len7 == 126) {
        plen = ((uint64_t)r->hdr[2] << 8) | r->hdr[3];
        p = 4;
    } else if (len7 == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | r->hdr[2 + i];
        if (plen >> 63)
            return WS_E_LENGTH;
        p = 10;
    } else {
        plen = len7;
    }
    if (!(r->opcode & 0x8) && plen > (uint64_t)(r->max_message - r->msg_len))
        return WS_E_TOO_BIG;
    memcpy(r->mask, r->hdr + p, 4);
    r->mask_pos = 0;
    r->remaining = plen;
    r->ctl_len = 0;
    r->hdr_have = 0;
    r->hdr_need = 2;
    r->state = ST_PAYLOAD;
    return 0;
}

/* Room for n more message bytes plus a NUL; growth capped at the limit. */
static int msg_reserve(ws_reader_t *r, size_t n)
{
    size_t need = r->msg_len + n + 1;
    if (need <= r->msg_cap)
        return 0;
    size_t ncap = r->msg_cap ? r->msg_cap * 2 : 1024;
    if (ncap > r->max_message + 1)
        ncap = r->max_message + 1;
    if (ncap < need)
        ncap = need;
    uint8_t *m = realloc(r->msg, ncap);
    if (!m)
        return WS_E_NOMEM;
    r->msg = m;
    r->msg_cap = ncap;
    return 0;
}

static void unmask(ws_reader_t *r, uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    uint8_t pos = r->mask_pos;
    /* Word at a time once the mask is rotated to the current position. */
    if (n >= 16) {
        uint8_t rot[8];
        for (int k = 0; k < 8; k++)
            rot[k] = r->mask[(pos + k) & 3];
        uint64_t m;
        memcpy(&m, rot, 8);
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, src + i, 8);
            w ^= m;
            memcpy(dst + i, &w, 8);
        }
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ r->mask[(pos + i) & 3];
    r->mask_pos = (uint8_t)((pos + n) & 3);
}

static int control_event(ws_reader_t *r, ws_event_t *ev)
{
    r->ctl[r->ctl_len] = '\0';
    ev->data = r->ctl;
    ev->len = r->ctl_len;
    ev->close_code = 0;
    switch (r->opcode) {
    case WS_OP_PING:
        ev->type = WS_EV_PING;
        return WS_EVENT;
    case WS_OP_PONG:
        ev->type = WS_EV_PONG;
        return WS_EVENT;
    default: /* CLOSE */
        break;
    }
    if (r->ctl_len == 1)
        return WS_E_CLOSE_PAYLOAD;
    ev->type = WS_EV_CLOSE;
    if (r->ctl_len == 0) {
        ev->close_code = WS_CLOSE_NO_STATUS;
    } else {
        unsigned code = ((unsigned)r->ctl[0] << 8) | r->ctl[1];
        if (!close_code_valid(code))
            return WS_E_CLOSE_CODE;
        if (!ws_utf8_valid(r->ctl + 2, r->ctl_len - 2))
            return WS_E_CLOSE_UTF8;
        ev->close_code = (uint16_t)code;
        ev->data = r->ctl + 2;
        ev->len = r->ctl_len - 2;
    }
    r->state = ST_CLOSED;
    return WS_EVENT;
}

int ws_reader_feed(ws_reader_t *r, const void *data, size_t len, size_t *consumed,
                   ws_event_t *ev)
{
    const uint8_t *in = data;
    size_t off = 0;
    int rc;

    if (consumed)
        *consumed = 0;
    if (r->err)
        return r->err;
    if (r->state == ST_CLOSED)
        return WS_E_CLOSED;
    if (r->msg_delivered) { /* rule 1 */
        r->msg_delivered = false;
        r->msg_len = 0;
        if (r->msg_cap > MSG_KEEP_MAX) { /* rule 3 */
            free(r->msg);
            r->msg = NULL;
            r->msg_cap = 0;
        }
    }

    for (;;) {
        if (r->state == ST_HEADER) {
            while (r->hdr_have < r->hdr_need && off < len)
                r->hdr[r->hdr_have++] = in[off++];
            if (r->hdr_have < r->hdr_need)
                break;
            if (r->hdr_need == 2 && r->hdr_have == 2) {
                rc = check_first(r);
                if (rc)
                    goto failed;
                continue; /* now collect the extended length and mask */
            }
            rc = finish_header(r);
            if (rc)
                goto failed;
        }

        /* ST_PAYLOAD */
        size_t n = len - off;
        if (n > r->remaining)
            n = (size_t)r->remaining;
        if (n) {
            if (r->opcode & 0x8) { /* rule 2 */
                unmask(r, r->ctl + r->ctl_len, in + off, n);
                r->ctl_len += n;
            } else {
                if (msg_reserve(r, n)) {
                    rc = WS_E_NOMEM;
                    goto failed;
                }
                uint8_t *dst = r->msg + r->msg_len;
                unmask(r, dst, in + off, n);
                r->msg_len += n;
                if (r->msg_opcode == WS_OP_TEXT && !ws_utf8_feed(&r->utf8, dst, n)) {
                    rc = WS_E_UTF8;
                    off += n;
                    goto failed;
                }
            }
            off += n;
            r->remaining -= n;
        }
        if (r->remaining)
            break;

        /* A frame is complete. */
        r->state = ST_HEADER;
        if (r->opcode & 0x8) {
            rc = control_event(r, ev);
            if (rc < 0)
                goto failed;
            if (consumed)
                *consumed = off;
            return WS_EVENT;
        }
        if (r->fin) {
            if (r->msg_opcode == WS_OP_TEXT && !ws_utf8_complete(&r->utf8)) {
                rc = WS_E_UTF8;
                goto failed;
            }
            ev->type = r->msg_opcode == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY;
            if (r->msg) {
                r->msg[r->msg_len] = '\0';
                ev->data = r->msg;
            } else {
                ev->data = empty_payload;
            }
            ev->len = r->msg_len;
            ev->close_code = 0;
            r->msg_opcode = 0;
            r->msg_delivered = true;
            if (consumed)
                *consumed = off;
            return WS_EVENT;
        }
    }
    if (consumed)
        *consumed = off;
    return WS_NEED_MORE;

failed:
    if (consumed)
        *consumed = off;
    return reader_fail(r, rc);
}

/* ---- writer ----------------------------------------------------------- */

size_t ws_frame_header_len(size_t payload_len)
{
    return payload_len < 126 ? 2 : payload_len <= 0xFFFF ? 4 : 10;
}

size_t ws_frame_write_header(uint8_t *dst, ws_opcode_t op, bool fin, size_t payload_len)
{
    dst[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0F));
    if (payload_len < 126) {
        dst[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        dst[1] = 126;
        dst[2] = (uint8_t)(payload_len >> 8);
        dst[3] = (uint8_t)payload_len;
        return 4;
    }
    dst[1] = 127;
    uint64_t l = payload_len;
    for (int i = 0; i < 8; i++)
        dst[2 + i] = (uint8_t)(l >> (56 - 8 * i));
    return 10;
}

static bool op_sendable(ws_opcode_t op, size_t len)
{
    switch (op) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        return true;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return len <= WS_CONTROL_MAX;
    default:
        return false;
    }
}

ptrdiff_t ws_frame_write(void *dst, size_t cap, ws_opcode_t op, const void *payload,
                         size_t len)
{
    if (!op_sendable(op, len) || (len && !payload))
        return WS_E_ARG;
    size_t h = ws_frame_header_len(len);
    if (len > SIZE_MAX - h || cap < h + len || len > PTRDIFF_MAX - h)
        return WS_E_ARG;
    uint8_t *d = dst;
    ws_frame_write_header(d, op, true, len);
    if (len)
        memcpy(d + h, payload, len);
    return (ptrdiff_t)(h + len);
}

int ws_frame_encode(ws_opcode_t op, const void *payload, size_t len, ws_frame_t *out)
{
    if (!op_sendable(op, len) || (len && !payload))
        return WS_E_ARG;
    size_t h = ws_frame_header_len(len);
    if (len > SIZE_MAX - h || len > PTRDIFF_MAX - h)
        return WS_E_ARG;
    uint8_t *d = malloc(h + len);
    if (!d)
        return WS_E_NOMEM;
    ws_frame_write(d, h + len, op, payload, len);
    out->data = d;
    out->len = h + len;
    return 0;
}

int ws_close_encode(uint16_t code, const char *reason, size_t reason_len, ws_frame_t *out)
{
    uint8_t payload[2 + WS_CLOSE_REASON_MAX];
    if (!reason)
        reason_len = 0;
    if (code == 0)
        return reason_len ? WS_E_ARG : ws_frame_encode(WS_OP_CLOSE, NULL, 0, out);
    if (!close_code_valid(code) || !ws_utf8_valid(reason, reason_len))
        return WS_E_ARG;
    if (reason_len > WS_CLOSE_REASON_MAX) {
        reason_len = WS_CLOSE_REASON_MAX;
        /* Back off continuation bytes so the cut is on a boundary. */
        while (reason_len && ((unsigned char)reason[reason_len] & 0xC0) == 0x80)
            reason_len--;
    }
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reason_len)
        memcpy(payload + 2, reason, reason_len);
    return ws_frame_encode(WS_OP_CLOSE, payload, 2 + reason_len, out);
}

int ws_close_reply(const ws_event_t *ev, ws_frame_t *out)
{
    if (ev->type != WS_EV_CLOSE)
        return WS_E_ARG;
    if (ev->close_code == WS_CLOSE_NO_STATUS)
        return ws_close_encode(0, NULL, 0, out);
    return ws_close_encode(ev->close_code, NULL, 0, out);
}

void ws_frame_free(ws_frame_t *f)
{
    free(f->data);
    f->data = NULL;
    f->len = 0;
}
