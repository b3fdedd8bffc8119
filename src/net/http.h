/*
 * net/http.h — incremental HTTP/1.1 request parser and response builder.
 *
 * The wire layer under the endpoint (design §1, §5): no event loop, no
 * runtime, no I/O. The endpoint feeds whatever bytes a read returned into
 * a net_http_parser_t and gets back complete requests, one at a time, in
 * the order they were sent (pipelining). It answers with a response built
 * by net_http_response_*() into a growable net_http_buf_t, which it then
 * writes to the socket.
 *
 * Parsing is done by Debian's http-parser (linked, not copied); this
 * module adds what a server needs on top: buffering of the URL, headers
 * and body across reads, the header-block and body limits of the
 * configuration, a request value with case-insensitive header lookup, and
 * the mapping of every failure to the HTTP status to answer. It is
 * stricter than Debian's (non-strict) http-parser build where leniency
 * could let a proxy and roost read one request two ways: header names
 * must be tokens, values free of control characters, an HTTP/1.1 request
 * must have exactly one Host, and only HTTP/1.0 and 1.1 are accepted.
 *
 * Ownership and lifetime:
 *   - The caller allocates net_http_parser_t (embed it in the connection),
 *     calls net_http_parser_init() once and net_http_parser_free() once;
 *     free releases every buffer; the struct may then be re-initialised.
 *   - A request returned by net_http_parser_request() borrows the parser's
 *     memory: every pointer in it is valid until the next call of
 *     net_http_parser_feed() or net_http_parser_free() on that parser.
 *     Copy what must live longer.
 *   - net_http_buf_t owns its bytes; net_http_buf_free() releases them.
 *
 * Threads: no global state. A parser or buffer is used by one thread at a
 * time (the connection's owner); different parsers may be used on
 * different threads concurrently.
 */
#ifndef ROOST_NET_HTTP_H
#define ROOST_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

/* Default limits (design §4, §5). */
#define NET_HTTP_MAX_HEADER_DEFAULT (16u * 1024u)   /* -> 431 when exceeded */
#define NET_HTTP_MAX_BODY_DEFAULT   (1024u * 1024u) /* -> 413 when exceeded */

/* Results of net_http_parser_feed() (>= 0) and errors of this module (< 0). */
enum {
    NET_HTTP_NEED_MORE = 0,  /* every byte consumed, no complete request yet */
    NET_HTTP_REQUEST = 1,    /* a complete request is ready */

    NET_HTTP_E_NOMEM = -1,          /* allocation failed (answer 500) */
    NET_HTTP_E_MALFORMED = -2,      /* not valid HTTP/1.x (400) */
    NET_HTTP_E_HEADER_TOO_LARGE = -3, /* header block over the limit (431) */
    NET_HTTP_E_BODY_TOO_LARGE = -4, /* body over the limit (413) */
    NET_HTTP_E_CLOSED = -5,         /* bytes after a request that closes the
                                       connection (keep_alive false) (400) */
    NET_HTTP_E_INVALID = -6,        /* bad argument to a builder function */
    NET_HTTP_E_NOT_FOUND = -7,      /* query parameter absent */
    NET_HTTP_E_BAD_ESCAPE = -8,     /* bad %-escape or %00 in a query value */
};

typedef enum net_http_method {
    NET_HTTP_OTHER = 0, /* any method not listed; see method_name */
    NET_HTTP_GET,
    NET_HTTP_HEAD,
    NET_HTTP_POST,
    NET_HTTP_PUT,
    NET_HTTP_DELETE,
    NET_HTTP_PATCH,
    NET_HTTP_OPTIONS,
} net_http_method_t;

typedef struct net_http_config {
    /* Largest accepted header block in bytes: the request line, every
     * header line and the blank line that ends them, CRLFs included. The
     * trailer section of a chunked body (read and dropped) has the same
     * limit. http-parser has its own compile-time ceiling (80 KiB in
     * Debian's build); past it a request is refused with 431 whatever
     * this says. */
    size_t max_header;
    /* Largest accepted body in bytes (after chunked decoding). A request
     * whose Content-Length is larger is refused as soon as its headers are
     * read, a chunk that would pass it as soon as its size line is read:
     * never after buffering the excess. */
    size_t max_body;
} net_http_config_t;

/* One header as sent; name and value are NUL-terminated, the value with
 * leading and trailing spaces and tabs removed. */
typedef struct net_http_header {
    const char *name;
    const char *value;
    size_t name_len;
    size_t value_len;
} net_http_header_t;

/* A complete request. Every string is NUL-terminated and borrowed from the
 * parser (see the lifetime rule at the top). */
typedef struct net_http_request {
    net_http_method_t method;
    const char *method_name;   /* "GET", "POST", ... (static storage) */
    const char *url;           /* request-target as sent */
    size_t url_len;
    const char *path;          /* path part, not %-decoded; "/" if absent */
    size_t path_len;
    const char *query;         /* after '?', not decoded; "" if absent */
    size_t query_len;
    const net_http_header_t *headers;
    size_t n_headers;
    const char *body;          /* "" when there is none */
    size_t body_len;
    unsigned short http_major, http_minor;
    /* false: answer with "Connection: close" and close after the response. */
    bool keep_alive;
    /* true: the request asks to switch protocols (Upgrade + Connection:
     * upgrade, e.g. a WebSocket handshake). If the caller accepts, the
     * bytes after this request belong to the new protocol: stop feeding
     * this parser and hand them on (see `consumed`). If it declines, it may
     * go on feeding. */
    bool upgrade;
} net_http_request_t;

/* The parser. Caller-allocated; fields after `data` are private. */
typedef struct net_http_parser {
    void *data; /* for the caller */

    http_parser hp;
    net_http_config_t cfg;
    int err;               /* sticky error, 0 if none */
    int pending_err;       /* error found inside an http-parser callback */
    bool have_request;     /* previous feed returned a request: reset first */
    bool in_head;          /* before the end of the header block */
    bool done;             /* message complete seen in this execute() */
    bool closed;           /* previous request said Connection: close */
    bool expect_continue;  /* head asked for 100-continue, not yet answered */
    int last_cb;           /* 0 none, 1 url, 2 field, 3 value */
    size_t head_bytes;     /* header-block bytes consumed so far */
    size_t trailer_bytes;  /* chunked trailer bytes consumed (not stored) */
    bool in_trailer;       /* after the last chunk, before message end */
    /* Arena: url, header names and values, path and query, NUL-separated.
     * Entries are offsets while the arena may still grow. */
    char *arena;
    size_t arena_len, arena_cap;
    size_t url_off, url_len;
    struct net_http__hdr {
        size_t name_off, name_len, value_off, value_len;
    } *hdr_offs;
    net_http_header_t *hdrs;
    size_t n_hdrs, hdrs_cap, hdrs_ptr_cap;
    char *body;
    size_t body_len, body_cap;
    net_http_request_t req;
} net_http_parser_t;

/* Fill *cfg with the defaults (16 KiB header block, 1 MiB body). */
void net_http_config_default(net_http_config_t *cfg);

/* Initialise a parser. cfg is copied; NULL means the defaults. Does not
 * allocate (buffers are allocated on first use), so it cannot fail. */
void net_http_parser_init(net_http_parser_t *p, const net_http_config_t *cfg);

/* Release every buffer of the parser. The request last returned becomes
 * invalid. Safe to call twice. */
void net_http_parser_free(net_http_parser_t *p);

/* Feed bytes. Parses until a request is complete, an error is found or the
 * bytes run out, and sets *consumed to the number of bytes used:
 *   NET_HTTP_REQUEST    a request is ready (net_http_parser_request());
 *                       bytes after *consumed were not looked at: feed them
 *                       again (pipelining), or hand them to the new
 *                       protocol after an accepted upgrade.
 *   NET_HTTP_NEED_MORE  *consumed == len; wait for more bytes.
 *   < 0                 an error; answer with net_http_error_status() (or
 *                       net_http_response_for_error()) and close. Errors
 *                       are sticky: every later feed returns the same one.
 * Any split of the input gives the same requests (one byte at a time
 * works). consumed may be NULL when the caller does not need it. */
int net_http_parser_feed(net_http_parser_t *p, const char *data, size_t len,
                         size_t *consumed);

/* The request completed by the last feed that returned NET_HTTP_REQUEST,
 * or NULL if there is none. Borrowed; see the lifetime rule. */
const net_http_request_t *net_http_parser_request(const net_http_parser_t *p);

/* True once per request when its head asked for "Expect: 100-continue"
 * (HTTP/1.1) and the body has not all arrived yet: the caller should then
 * write "HTTP/1.1 100 Continue\r\n\r\n" so the client sends the body.
 * Check it after a feed that returned NET_HTTP_NEED_MORE; later calls
 * return false. A body over the limit is refused with 413 instead, from
 * the head, so the client never sends it. */
bool net_http_parser_continue_due(net_http_parser_t *p);

/* Value of the first header called `name` (ASCII case-insensitive), or
 * NULL. Borrowed from the request. */
const char *net_http_header_get(const net_http_request_t *req, const char *name);

/* True if some header called `name` holds `token` in its comma-separated
 * list, compared case-insensitively ("Connection: keep-alive, Upgrade"
 * holds "upgrade"). Every header of that name is searched. */
bool net_http_header_has_token(const net_http_request_t *req, const char *name,
                               const char *token);

/* Query parameter `name` of a raw query string (req->query), %-decoded,
 * '+' read as a space (HTML form encoding, as Plug does). Keys are decoded
 * before comparing; the first occurrence wins; "a&b" gives b = "".
 * On success *value is a new NUL-terminated string the caller frees with
 * free(), and *value_len (if not NULL) its length. Returns 0,
 * NET_HTTP_E_NOT_FOUND, NET_HTTP_E_BAD_ESCAPE (a malformed %-escape in the
 * value, or a %00, which C strings cannot carry) or NET_HTTP_E_NOMEM; on
 * error *value is left untouched. */
int net_http_query_get(const char *query, size_t query_len, const char *name,
                       char **value, size_t *value_len);

/* %-decodes a path segment s[0..n) into out (cap bytes, NUL-terminated;
 * '+' stays '+'). False on a malformed escape, a %00 (C strings cannot
 * carry it) or no room; out is then undefined. *outlen: the length. */
bool net_http_pct_decode(const char *s, size_t n, char *out, size_t cap, size_t *outlen);

/* The HTTP status to answer a parser error with (400, 413, 431, 500). */
int net_http_error_status(int err);

/* Short machine-readable code for an error ("bad_request",
 * "header_too_large", ...), for the JSON error body. Static storage. */
const char *net_http_error_code(int err);

/* Human-readable message for an error. Static storage. */
const char *net_http_strerror(int err);

/* Standard reason phrase of an HTTP status ("Not Found"), "Unknown" for
 * codes without one. Static storage. */
const char *net_http_status_reason(int status);

/* ---- Response building ------------------------------------------------ */

/* A growable byte buffer. Zero-initialised (or net_http_buf_init) is
 * empty; it owns data. */
typedef struct net_http_buf {
    char *data;
    size_t len;
    size_t cap;
} net_http_buf_t;

void net_http_buf_init(net_http_buf_t *b);
void net_http_buf_free(net_http_buf_t *b);
/* Append bytes. Returns 0 or NET_HTTP_E_NOMEM (buffer unchanged). The
 * buffer keeps a NUL after the last byte, not counted in len. */
int net_http_buf_append(net_http_buf_t *b, const void *data, size_t len);

/* Every net_http_response_* function appends to b and returns 0, or an
 * error with b left exactly as it was. A response is
 *   start, header*, then end (with a body) or end_headers (without). */

/* "HTTP/1.1 <status> <reason>\r\n". status must be 100..599
 * (else NET_HTTP_E_INVALID). */
int net_http_response_start(net_http_buf_t *b, int status);

/* "<name>: <value>\r\n". Refuses (NET_HTTP_E_INVALID) a name that is not an
 * HTTP token, or a value with CR, LF or NUL: no header injection. */
int net_http_response_header(net_http_buf_t *b, const char *name, const char *value);

/* "Content-Length: <len>\r\n\r\n<body>". body may be NULL when len is 0. */
int net_http_response_end(net_http_buf_t *b, const void *body, size_t len);

/* Just the blank line that ends the headers: for 101, 204 and 304, which
 * carry no Content-Length. */
int net_http_response_end_headers(net_http_buf_t *b);

/* The JSON error body of design §5, {"error":{"code":..,"message":..}},
 * correctly escaped. Returns a new NUL-terminated string (free() it) and
 * its length in *len (if not NULL), or NULL when out of memory or when
 * code or message is NULL or not valid UTF-8. */
char *net_http_json_error_body(const char *code, const char *message, size_t *len);

/* A complete JSON error response: status line, Content-Type
 * application/json, "Connection: close" when keep_alive is false, and the
 * body above. */
int net_http_response_json_error(net_http_buf_t *b, int status, const char *code,
                                 const char *message, bool keep_alive);

/* The complete response for a parser error (status, code and message from
 * the functions above, Connection: close). */
int net_http_response_for_error(net_http_buf_t *b, int err);

#endif /* ROOST_NET_HTTP_H */
