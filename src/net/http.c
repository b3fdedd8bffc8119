/*
 * net/http.c — HTTP/1.1 requests in, responses out (see net/http.h).
 *
 * http-parser does the byte-level work; it reports the URL, header names
 * and values and the body in pieces that may be split anywhere. This file
 * collects those pieces into one arena per request, applies roost's
 * limits, and hands out one request at a time.
 *
 * Rules this file relies on:
 *  1. The parser is paused in on_headers_complete and in
 *     on_message_complete. A pause makes http_parser_execute() return at
 *     that exact byte, which is how we learn the exact size of the header
 *     block (the LF that ends it is at offset `ret`, not yet consumed) and
 *     where one pipelined request ends and the next begins.
 *  2. While in the header block, execute() is never given more than
 *     max_header + 1 - head_bytes bytes, so an oversized head is refused
 *     after at most limit + 1 bytes, without depending on http-parser's
 *     own (larger, process-wide) limit.
 *  3. Pieces of one element (URL, a header name, a header value) arrive
 *     consecutively, so appending them to the arena keeps each element
 *     contiguous; a NUL is appended when the element ends. Offsets are
 *     kept while the arena may still grow and turned into pointers once
 *     the header block is complete (nothing is appended after that;
 *     trailer fields of a chunked body are not stored).
 *  4. Trailers of a chunked body are limited like the head, by wire bytes:
 *     the parser is paused at the last chunk's size line, and from there
 *     to the end of the message execute() gets at most max_header + 1 -
 *     trailer_bytes bytes. Counting wire bytes rather than callback bytes
 *     keeps the outcome the same however the input is split (http-parser
 *     reports a value's bytes only at its end or at the end of a buffer).
 */
#include "net/http.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

enum { CB_NONE = 0, CB_URL, CB_FIELD, CB_VALUE };

/* A body buffer larger than this is released after its request, so an idle
 * keep-alive connection does not keep a megabyte it once needed. */
#define BODY_KEEP_MAX (64u * 1024u)

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static net_http_parser_t *from_hp(http_parser *hp)
{
    return container_of(hp, net_http_parser_t, hp);
}

/* ---- small helpers ---------------------------------------------------- */

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 7230 §3.2: a field name is a token; a value is visible characters,
 * spaces, tabs and obs-text. Debian's http-parser is built non-strict and
 * lets through e.g. "Bad Name: x"; a proxy in front might read such a
 * header differently from us (request smuggling), so refuse it. */
static bool field_ok(const char *name, size_t nl, const char *value, size_t vl)
{
    if (nl == 0)
        return false;
    for (size_t i = 0; i < nl; i++)
        if (!is_tchar((unsigned char)name[i]))
            return false;
    for (size_t i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return false;
    }
    return true;
}

/* Grow *buf so it holds at least `need` bytes. Geometric, so appending n
 * pieces costs O(total) copies. */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return NET_HTTP_E_NOMEM;
        ncap *= 2;
    }
    char *n = realloc(*buf, ncap);
    if (!n)
        return NET_HTTP_E_NOMEM;
    *buf = n;
    *cap = ncap;
    return 0;
}

static int arena_append(net_http_parser_t *p, const char *at, size_t n)
{
    if (n > SIZE_MAX - p->arena_len - 1)
        return NET_HTTP_E_NOMEM;
    int rc = reserve(&p->arena, &p->arena_cap, p->arena_len + n + 1);
    if (rc)
        return rc;
    memcpy(p->arena + p->arena_len, at, n);
    p->arena_len += n;
    return 0;
}

/* End the element being collected: record its length, add its NUL. */
static int close_element(net_http_parser_t *p)
{
    size_t end = p->arena_len;
    switch (p->last_cb) {
    case CB_URL:
        p->url_len = end - p->url_off;
        break;
    case CB_FIELD:
        p->hdr_offs[p->n_hdrs - 1].name_len = end - p->hdr_offs[p->n_hdrs - 1].name_off;
        break;
    case CB_VALUE:
        p->hdr_offs[p->n_hdrs - 1].value_len = end - p->hdr_offs[p->n_hdrs - 1].value_off;
        break;
    default:
        return 0;
    }
    p->last_cb = CB_NONE;
    return arena_append(p, "", 1);
}

/* ---- http-parser callbacks -------------------------------------------- */

static int fail_cb(net_http_parser_t *p, int err)
{
    p->pending_err = err;
    /* -1, not 1: for on_headers_complete 1 and 2 mean "skip body". */
    return -1;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    net_http_parser_t *p = from_hp(hp);
    if (p->last_cb != CB_URL) {
        p->url_off = p->arena_len;
        p->last_cb = CB_URL;
    }
    int rc = arena_append(p, at, n);
    return rc ? fail_cb(p, rc) : 0;
}

/* Trailer fields after a chunked body come through the same callbacks as
 * headers, but the head is final by then (rule 3). They are dropped, as
 * RFC 7230 §4.1.2 allows; their size is limited in feed() (rule 4). */
static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    net_http_parser_t *p = from_hp(hp);
    if (!p->in_head)
        return 0;
    if (p->last_cb != CB_FIELD) {
        int rc = close_element(p);
        if (rc)
            return fail_cb(p, rc);
        if (p->n_hdrs == p->hdrs_cap) {
            size_t ncap = p->hdrs_cap ? p->hdrs_cap * 2 : 16;
            struct net_http__hdr *h = realloc(p->hdr_offs, ncap * sizeof *h);
            if (!h)
                return fail_cb(p, NET_HTTP_E_NOMEM);
            p->hdr_offs = h;
            p->hdrs_cap = ncap;
        }
        struct net_http__hdr *h = &p->hdr_offs[p->n_hdrs++];
        h->name_off = p->arena_len;
        h->name_len = 0;
        h->value_off = SIZE_MAX; /* no value seen yet */
        h->value_len = 0;
        p->last_cb = CB_FIELD;
    }
    int rc = arena_append(p, at, n);
    return rc ? fail_cb(p, rc) : 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    net_http_parser_t *p = from_hp(hp);
    if (!p->in_head)
        return 0;
    if (p->n_hdrs == 0)
        return fail_cb(p, NET_HTTP_E_MALFORMED); /* cannot happen: value before field */
    if (p->last_cb != CB_VALUE) {
        int rc = close_element(p);
        if (rc)
            return fail_cb(p, rc);
        p->hdr_offs[p->n_hdrs - 1].value_off = p->arena_len;
        p->last_cb = CB_VALUE;
    }
    int rc = arena_append(p, at, n);
    return rc ? fail_cb(p, rc) : 0;
}

static net_http_method_t map_method(unsigned m)
{
    switch (m) {
    case HTTP_GET: return NET_HTTP_GET;
    case HTTP_HEAD: return NET_HTTP_HEAD;
    case HTTP_POST: return NET_HTTP_POST;
    case HTTP_PUT: return NET_HTTP_PUT;
    case HTTP_DELETE: return NET_HTTP_DELETE;
    case HTTP_PATCH: return NET_HTTP_PATCH;
    case HTTP_OPTIONS: return NET_HTTP_OPTIONS;
    default: return NET_HTTP_OTHER;
    }
}

/* Everything about the request that is known once its head is complete. */
static int finish_head(net_http_parser_t *p)
{
    http_parser *hp = &p->hp;
    int rc = close_element(p);
    if (rc)
        return rc;
    if (p->url_len == 0 || hp->http_major != 1)
        return NET_HTTP_E_MALFORMED; /* HTTP/1.0 and 1.1 only */

    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(p->arena + p->url_off, p->url_len,
                              hp->method == HTTP_CONNECT, &u) != 0)
        return NET_HTTP_E_MALFORMED;

    /* Copy path and query out of the URL so each is NUL-terminated. */
    size_t path_src = 0, path_len = 0, query_src = 0, query_len = 0;
    bool has_path = u.field_set & (1u << UF_PATH);
    if (has_path) {
        path_src = p->url_off + u.field_data[UF_PATH].off;
        path_len = u.field_data[UF_PATH].len;
    }
    if (u.field_set & (1u << UF_QUERY)) {
        query_src = p->url_off + u.field_data[UF_QUERY].off;
        query_len = u.field_data[UF_QUERY].len;
    }
    if (!has_path)
        path_len = 1;
    /* One reserve, then plain copies by offset: the sources lie inside the
     * URL, the destinations after arena_len, so they never overlap. */
    if (path_len > SIZE_MAX / 2 || query_len > SIZE_MAX / 2 ||
        reserve(&p->arena, &p->arena_cap, p->arena_len + path_len + query_len + 3))
        return NET_HTTP_E_NOMEM;
    size_t path_off = p->arena_len;
    if (has_path)
        memcpy(p->arena + path_off, p->arena + path_src, path_len);
    else
        p->arena[path_off] = '/';
    p->arena[path_off + path_len] = '\0';
    size_t query_off = path_off + path_len + 1;
    memcpy(p->arena + query_off, p->arena + query_src, query_len);
    p->arena[query_off + query_len] = '\0';
    p->arena_len = query_off + query_len + 1;

    /* The arena is final for this request: offsets become pointers. */
    if (p->n_hdrs > p->hdrs_ptr_cap) {
        net_http_header_t *hs = realloc(p->hdrs, p->hdrs_cap * sizeof *hs);
        if (!hs)
            return NET_HTTP_E_NOMEM;
        p->hdrs = hs;
        p->hdrs_ptr_cap = p->hdrs_cap;
    }
    size_t n_host = 0;
    for (size_t i = 0; i < p->n_hdrs; i++) {
        struct net_http__hdr *o = &p->hdr_offs[i];
        net_http_header_t *h = &p->hdrs[i];
        h->name = p->arena + o->name_off;
        h->name_len = o->name_len;
        if (o->value_off == SIZE_MAX) {
            h->value = "";
            h->value_len = 0;
        } else {
            /* http-parser skips leading whitespace but keeps trailing. */
            char *v = p->arena + o->value_off;
            size_t vl = o->value_len;
            while (vl && is_ows(v[0])) {
                v++;
                vl--;
            }
            while (vl && is_ows(v[vl - 1]))
                vl--;
            v[vl] = '\0';
            h->value = v;
            h->value_len = vl;
        }
        if (!field_ok(h->name, h->name_len, h->value, h->value_len))
            return NET_HTTP_E_MALFORMED;
        if (ieq(h->name, h->name_len, "host", 4))
            n_host++;
    }
    /* RFC 7230 §5.4: a server MUST answer 400 to an HTTP/1.1 request
     * without exactly one Host. */
    if (n_host > 1 || (n_host == 0 && hp->http_major == 1 && hp->http_minor >= 1))
        return NET_HTTP_E_MALFORMED;

    if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > p->cfg.max_body)
        return NET_HTTP_E_BODY_TOO_LARGE;

    net_http_request_t *r = &p->req;
    r->method = map_method(hp->method);
    r->method_name = http_method_str((enum http_method)hp->method);
    r->url = p->arena + p->url_off;
    r->url_len = p->url_len;
    r->path = p->arena + path_off;
    r->path_len = path_len;
    r->query = p->arena + query_off;
    r->query_len = query_len;
    r->headers = p->n_hdrs ? p->hdrs : NULL;
    r->n_headers = p->n_hdrs;
    r->http_major = hp->http_major;
    r->http_minor = hp->http_minor;
    p->expect_continue = hp->http_minor >= 1 &&
                         net_http_header_has_token(r, "Expect", "100-continue");
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    net_http_parser_t *p = from_hp(hp);
    int rc = finish_head(p);
    if (rc)
        return fail_cb(p, rc);
    p->in_head = false;
    http_parser_pause(hp, 1); /* rule 1 */
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    net_http_parser_t *p = from_hp(hp);
    if (n > p->cfg.max_body - p->body_len)
        return fail_cb(p, NET_HTTP_E_BODY_TOO_LARGE);
    if (reserve(&p->body, &p->body_cap, p->body_len + n + 1))
        return fail_cb(p, NET_HTTP_E_NOMEM);
    memcpy(p->body + p->body_len, at, n);
    p->body_len += n;
    return 0;
}

/* A chunk size line was read; content_length holds the size. */
static int on_chunk_header(http_parser *hp)
{
    net_http_parser_t *p = from_hp(hp);
    if (hp->content_length == 0) {
        /* Last chunk: what follows is the trailer section (rule 4). */
        p->in_trailer = true;
        http_parser_pause(hp, 1);
        return 0;
    }
    /* Refuse from the size line, before buffering any of the chunk. */
    if (hp->content_length > p->cfg.max_body - p->body_len)
        return fail_cb(p, NET_HTTP_E_BODY_TOO_LARGE);
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    net_http_parser_t *p = from_hp(hp);
    net_http_request_t *r = &p->req;
    if (p->body_len) {
        p->body[p->body_len] = '\0';
        r->body = p->body;
    } else {
        r->body = "";
    }
    r->body_len = p->body_len;
    r->keep_alive = http_should_keep_alive(hp) != 0;
    r->upgrade = hp->upgrade != 0;
    p->done = true;
    http_parser_pause(hp, 1); /* rule 1 */
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* ---- parser API ------------------------------------------------------- */

void net_http_config_default(net_http_config_t *cfg)
{
    cfg->max_header = NET_HTTP_MAX_HEADER_DEFAULT;
    cfg->max_body = NET_HTTP_MAX_BODY_DEFAULT;
}

static void reset_request(net_http_parser_t *p)
{
    p->arena_len = 0;
    p->url_off = p->url_len = 0;
    p->n_hdrs = 0;
    p->body_len = 0;
    if (p->body_cap > BODY_KEEP_MAX) {
        free(p->body);
        p->body = NULL;
        p->body_cap = 0;
    }
    p->last_cb = CB_NONE;
    p->head_bytes = 0;
    p->trailer_bytes = 0;
    p->in_head = true;
    p->in_trailer = false;
    p->done = false;
    p->have_request = false;
    p->expect_continue = false;
    memset(&p->req, 0, sizeof p->req);
}

void net_http_parser_init(net_http_parser_t *p, const net_http_config_t *cfg)
{
    void *data = p->data;
    memset(p, 0, sizeof *p);
    p->data = data;
    if (cfg)
        p->cfg = *cfg;
    else
        net_http_config_default(&p->cfg);
    /* Keep max_header + 1 and the size arithmetic below from wrapping. */
    if (p->cfg.max_header > SIZE_MAX / 4)
        p->cfg.max_header = SIZE_MAX / 4;
    if (p->cfg.max_body > SIZE_MAX / 4)
        p->cfg.max_body = SIZE_MAX / 4;
    http_parser_init(&p->hp, HTTP_REQUEST);
    reset_request(p);
}

void net_http_parser_free(net_http_parser_t *p)
{
    free(p->arena);
    free(p->hdr_offs);
    free(p->hdrs);
    free(p->body);
    p->arena = NULL;
    p->hdr_offs = NULL;
    p->hdrs = NULL;
    p->body = NULL;
    p->arena_cap = p->hdrs_cap = p->hdrs_ptr_cap = p->body_cap = 0;
    p->arena_len = p->n_hdrs = p->body_len = 0;
    p->have_request = false;
    memset(&p->req, 0, sizeof p->req);
}

static int fail(net_http_parser_t *p, int err)
{
    p->err = err;
    return err;
}

int net_http_parser_feed(net_http_parser_t *p, const char *data, size_t len,
                         size_t *consumed)
{
    size_t off = 0;
    int rc = NET_HTTP_NEED_MORE;

    if (consumed)
        *consumed = 0;
    if (p->err)
        return p->err;
    if (p->have_request)
        reset_request(p);
    if (len == 0)
        return NET_HTTP_NEED_MORE;
    if (p->closed)
        return fail(p, NET_HTTP_E_CLOSED);

    while (off < len) {
        size_t n = len - off;
        if (p->in_head || p->in_trailer) { /* rules 2 and 4 */
            size_t seen = p->in_head ? p->head_bytes : p->trailer_bytes;
            size_t room = p->cfg.max_header + 1 - seen;
            if (n > room)
                n = room;
        }
        bool was_in_head = p->in_head, was_in_trailer = p->in_trailer;
        size_t ret = http_parser_execute(&p->hp, &settings, data + off, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);

        if (e == HPE_PAUSED) {
            http_parser_pause(&p->hp, 0);
            if (was_in_head && !p->in_head) {
                /* Paused at the LF that ends the head (rule 1). */
                size_t head = p->head_bytes + ret + 1;
                if (head > p->cfg.max_header) {
                    rc = fail(p, NET_HTTP_E_HEADER_TOO_LARGE);
                    break;
                }
                p->head_bytes = head;
                off += ret;
                continue;
            }
            off += ret;
            if (!was_in_trailer && p->in_trailer)
                continue; /* paused at the last chunk: trailers start here */
            if (was_in_trailer) {
                p->trailer_bytes += ret;
                if (p->trailer_bytes > p->cfg.max_header) {
                    rc = fail(p, NET_HTTP_E_HEADER_TOO_LARGE);
                    break;
                }
            }
            if (p->done) {
                p->have_request = true;
                if (!p->req.keep_alive)
                    p->closed = true;
                rc = NET_HTTP_REQUEST;
                break;
            }
            continue; /* not ours; cannot happen */
        }
        if (e != HPE_OK) {
            if (p->pending_err)
                rc = fail(p, p->pending_err);
            else if (e == HPE_HEADER_OVERFLOW)
                rc = fail(p, NET_HTTP_E_HEADER_TOO_LARGE);
            else if (e == HPE_CLOSED_CONNECTION)
                rc = fail(p, NET_HTTP_E_CLOSED);
            else
                rc = fail(p, NET_HTTP_E_MALFORMED);
            off += ret;
            break;
        }
        if (ret != n) { /* http-parser stopped without saying why */
            rc = fail(p, NET_HTTP_E_MALFORMED);
            off += ret;
            break;
        }
        off += ret;
        if (p->in_head || p->in_trailer) {
            size_t *seen = p->in_head ? &p->head_bytes : &p->trailer_bytes;
            *seen += ret;
            if (*seen > p->cfg.max_header) {
                rc = fail(p, NET_HTTP_E_HEADER_TOO_LARGE);
                break;
            }
        }
    }
    if (consumed)
        *consumed = off;
    return rc;
}

bool net_http_parser_continue_due(net_http_parser_t *p)
{
    if (!p->expect_continue || p->in_head || p->done || p->err)
        return false;
    p->expect_continue = false;
    return true;
}

const net_http_request_t *net_http_parser_request(const net_http_parser_t *p)
{
    return p->have_request ? &p->req : NULL;
}

const char *net_http_header_get(const net_http_request_t *req, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++)
        if (ieq(req->headers[i].name, req->headers[i].name_len, name, nl))
            return req->headers[i].value;
    return NULL;
}

bool net_http_header_has_token(const net_http_request_t *req, const char *name,
                               const char *token)
{
    size_t nl = strlen(name), tl = strlen(token);
    for (size_t i = 0; i < req->n_headers; i++) {
        const net_http_header_t *h = &req->headers[i];
        if (!ieq(h->name, h->name_len, name, nl))
            continue;
        const char *s = h->value, *end = h->value + h->value_len;
        while (s < end) {
            const char *comma = memchr(s, ',', (size_t)(end - s));
            const char *e = comma ? comma : end;
            const char *a = s, *b = e;
            while (a < b && is_ows(*a))
                a++;
            while (b > a && is_ows(b[-1]))
                b--;
            if (ieq(a, (size_t)(b - a), token, tl))
                return true;
            s = comma ? comma + 1 : end;
        }
    }
    return false;
}

/* ---- query strings ---------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode one %-escaped, '+'-for-space component into out (which has room
 * for len bytes). Returns the decoded length, or -1 on a bad escape or a
 * %00. */
static ptrdiff_t form_decode(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (len - i < 3)
                return -1;
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        out[o++] = c;
    }
    return (ptrdiff_t)o;
}

bool net_http_pct_decode(const char *s, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3)
                return false;
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return false;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = (char)c;
    }
    if (cap == 0)
        return false;
    out[o] = '\0';
    *outlen = o;
    return true;
}

/* Does the form-encoded key s[0..len) decode to exactly name? */
static bool key_matches(const char *s, size_t len, const char *name, size_t nl)
{
    if (len < nl)
        return false; /* decoding never lengthens */
    char stackbuf[256];
    char *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!buf)
        return false;
    ptrdiff_t d = form_decode(s, len, buf);
    bool eq = d >= 0 && (size_t)d == nl && memcmp(buf, name, nl) == 0;
    if (buf != stackbuf)
        free(buf);
    return eq;
}

int net_http_query_get(const char *query, size_t query_len, const char *name,
                       char **value, size_t *value_len)
{
    size_t nl = strlen(name);
    const char *s = query, *end = query + query_len;
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(pe - s));
        const char *ke = eq ? eq : pe;
        if (key_matches(s, (size_t)(ke - s), name, nl)) {
            const char *v = eq ? eq + 1 : pe;
            size_t vl = (size_t)(pe - v);
            char *out = malloc(vl + 1);
            if (!out)
                return NET_HTTP_E_NOMEM;
            ptrdiff_t d = form_decode(v, vl, out);
            if (d < 0) {
                free(out);
                return NET_HTTP_E_BAD_ESCAPE;
            }
            out[d] = '\0';
            *value = out;
            if (value_len)
                *value_len = (size_t)d;
            return 0;
        }
        s = amp ? amp + 1 : end;
    }
    return NET_HTTP_E_NOT_FOUND;
}

/* ---- errors ----------------------------------------------------------- */

int net_http_error_status(int err)
{
    switch (err) {
    case NET_HTTP_E_HEADER_TOO_LARGE: return 431;
    case NET_HTTP_E_BODY_TOO_LARGE: return 413;
    case NET_HTTP_E_NOMEM: return 500;
    default: return 400;
    }
}

const char *net_http_error_code(int err)
{
    switch (err) {
    case NET_HTTP_E_HEADER_TOO_LARGE: return "header_too_large";
    case NET_HTTP_E_BODY_TOO_LARGE: return "body_too_large";
    case NET_HTTP_E_NOMEM: return "internal";
    default: return "bad_request";
    }
}

const char *net_http_strerror(int err)
{
    switch (err) {
    case NET_HTTP_NEED_MORE: return "need more bytes";
    case NET_HTTP_REQUEST: return "request complete";
    case NET_HTTP_E_NOMEM: return "out of memory";
    case NET_HTTP_E_MALFORMED: return "malformed HTTP request";
    case NET_HTTP_E_HEADER_TOO_LARGE: return "request header block too large";
    case NET_HTTP_E_BODY_TOO_LARGE: return "request body too large";
    case NET_HTTP_E_CLOSED: return "data after a request that closed the connection";
    case NET_HTTP_E_INVALID: return "invalid argument";
    case NET_HTTP_E_NOT_FOUND: return "not found";
    case NET_HTTP_E_BAD_ESCAPE: return "bad percent-escape";
    default: return "unknown error";
    }
}

const char *net_http_status_reason(int status)
{
    if (status < 100 || status > 599)
        return "Unknown";
    const char *s = http_status_str((enum http_status)status);
    return (s && s[0] != '<') ? s : "Unknown";
}

/* ---- response building ------------------------------------------------ */

void net_http_buf_init(net_http_buf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void net_http_buf_free(net_http_buf_t *b)
{
    free(b->data);
    net_http_buf_init(b);
}

int net_http_buf_append(net_http_buf_t *b, const void *data, size_t len)
{
    if (len > SIZE_MAX - b->len - 1)
        return NET_HTTP_E_NOMEM;
    if (reserve(&b->data, &b->cap, b->len + len + 1))
        return NET_HTTP_E_NOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

/* Append several strings or roll back to where we started. */
static int append_all(net_http_buf_t *b, const char *const *parts, size_t n)
{
    size_t mark = b->len;
    for (size_t i = 0; i < n; i++) {
        if (net_http_buf_append(b, parts[i], strlen(parts[i]))) {
            b->len = mark;
            if (b->data)
                b->data[mark] = '\0';
            return NET_HTTP_E_NOMEM;
        }
    }
    return 0;
}

int net_http_response_start(net_http_buf_t *b, int status)
{
    if (status < 100 || status > 599)
        return NET_HTTP_E_INVALID;
    char num[8];
    snprintf(num, sizeof num, "%d", status);
    const char *parts[] = {"HTTP/1.1 ", num, " ", net_http_status_reason(status), "\r\n"};
    return append_all(b, parts, sizeof parts / sizeof parts[0]);
}

int net_http_response_header(net_http_buf_t *b, const char *name, const char *value)
{
    if (!name || !value || !name[0])
        return NET_HTTP_E_INVALID;
    for (const char *s = name; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return NET_HTTP_E_INVALID;
    for (const char *s = value; *s; s++)
        if (*s == '\r' || *s == '\n')
            return NET_HTTP_E_INVALID;
    const char *parts[] = {name, ": ", value, "\r\n"};
    return append_all(b, parts, 4);
}

int net_http_response_end(net_http_buf_t *b, const void *body, size_t len)
{
    if (len && !body)
        return NET_HTTP_E_INVALID;
    char num[32];
    snprintf(num, sizeof num, "%zu", len);
    size_t mark = b->len;
    const char *parts[] = {"Content-Length: ", num, "\r\n\r\n"};
    int rc = append_all(b, parts, 3);
    if (rc)
        return rc;
    if (len && net_http_buf_append(b, body, len)) {
        b->len = mark;
        b->data[mark] = '\0';
        return NET_HTTP_E_NOMEM;
    }
    return 0;
}

int net_http_response_end_headers(net_http_buf_t *b)
{
    return net_http_buf_append(b, "\r\n", 2);
}

/* json_dumps() cannot be trusted when memory runs out: jansson 2.14
 * ignores a failed write of an object key and carries on, returning JSON
 * with the key missing. Dump through net_http_buf_t instead and refuse
 * the result if any write failed (the callback is sticky). */
typedef struct sticky {
    net_http_buf_t b;
    bool failed;
} sticky_t;

static int sticky_cb(const char *s, size_t n, void *data)
{
    sticky_t *st = data;
    if (st->failed || net_http_buf_append(&st->b, s, n) != 0) {
        st->failed = true;
        return -1;
    }
    return 0;
}

char *net_http_json_error_body(const char *code, const char *message, size_t *len)
{
    if (!code || !message)
        return NULL;
    /* jansson escapes and refuses invalid UTF-8 (json_pack fails). */
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    if (!j)
        return NULL;
    sticky_t st = {.failed = false};
    net_http_buf_init(&st.b);
    int rc = json_dump_callback(j, sticky_cb, &st, JSON_COMPACT);
    json_decref(j);
    if (rc != 0 || st.failed || !st.b.data) {
        net_http_buf_free(&st.b);
        return NULL;
    }
    if (len)
        *len = st.b.len;
    return st.b.data; /* NUL-terminated by net_http_buf_append */
}

int net_http_response_json_error(net_http_buf_t *b, int status, const char *code,
                                 const char *message, bool keep_alive)
{
    size_t blen;
    char *body = net_http_json_error_body(code, message, &blen);
    if (!body)
        return (code && message) ? NET_HTTP_E_NOMEM : NET_HTTP_E_INVALID;
    size_t mark = b->len;
    int rc = net_http_response_start(b, status);
    if (!rc)
        rc = net_http_response_header(b, "Content-Type", "application/json");
    if (!rc && !keep_alive)
        rc = net_http_response_header(b, "Connection", "close");
    if (!rc)
        rc = net_http_response_end(b, body, blen);
    free(body);
    if (rc) {
        b->len = mark;
        if (b->data)
            b->data[mark] = '\0';
    }
    return rc;
}

int net_http_response_for_error(net_http_buf_t *b, int err)
{
    return net_http_response_json_error(b, net_http_error_status(err),
                                        net_http_error_code(err),
                                        net_http_strerror(err), false);
}
