/*
 * web/api.h — the HTTP side of the endpoint (design §5): REST routes,
 * health and metrics, and the authentication of WebSocket upgrades.
 *
 * Routing is a pure function from a parsed request to a response value
 * (web_api_response_t), so it is tested without sockets; the endpoint
 * (web/endpoint.c) writes the response with net_respond. A route that
 * needs another process's answer registers the ref it waits for with
 * web_api_defer and answers from the connection's on_info through
 * web_api_handle_info.
 *
 * Routes (docs/api.md has the details and curl examples)
 *   GET  /healthz                   200 {"status":"ok",...}
 *   GET  /metrics                   Prometheus text
 *   POST /api/tokens                {"sub","room"?,"ttl"?} -> 200 {"token"}
 *   POST /api/users/:id/notify      {"event","payload"?} -> 202 {"delivered":n}
 *   GET  /socket/websocket[/]       WebSocket upgrade (web_api_ws_auth);
 *                                   without an upgrade: 400
 *   POST /dev/token                 as /api/tokens, without the API key, only
 *                                   when api->dev (else 404), for the demo page
 *   GET  /, /static/...             the demo page (web/static.h)
 * Every /api/ route needs "Authorization: Bearer <api key>" (401
 * otherwise, checked before the route). Errors use the JSON shape of
 * design §5: unknown path 404, wrong method 405 with Allow, malformed
 * JSON 400, a body that is JSON but not what the route wants 422.
 *
 * Threads: web_api_handle and web_api_ws_auth are reentrant (any thread;
 * the endpoint calls them on I/O threads). web_api_defer and
 * web_api_handle_info are for the connection process. The web_api_t is
 * read-only once built and outlives every request.
 */
#ifndef ROOST_WEB_API_H
#define ROOST_WEB_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "net/http.h"
#include "net/server.h"
#include "rt/rt.h"
#include "web/phx.h"

#define WEB_TOKEN_TTL_DEFAULT 3600      /* seconds */
#define WEB_TOKEN_TTL_MAX (366 * 86400) /* a year */
#define WEB_ID_MAX 256                  /* bytes in a user or room id */

struct jwt_key;

typedef struct web_api {
    const void *secret;        /* JWT HS256 secret (borrowed) */
    size_t secret_len;
    /* The same secret prepared once (web/jwt.h), borrowed: tokens are
     * signed and checked with it, not re-keyed per token. NULL: the
     * plain secret is used (same results, slower). */
    const struct jwt_key *jwt_key;
    const char *api_key;       /* for /api/ (borrowed) */
    /* SHA-256 of api_key, made once (web_api_key_digest), borrowed; NULL:
     * every request hashes api_key too (same results, twice the work). */
    const unsigned char *api_key_sha256;
    const char *version;       /* shown by /healthz */
    uint64_t started_ms;       /* rt_now_ms() at start, for uptime */
    bool dev;                  /* development credentials: POST /dev/token exists */
} web_api_t;

/* A response to write. body is malloc'd (free with web_api_response_free);
 * headers is "" or CRLF-ended header lines. */
typedef struct web_api_response {
    int status;
    const char *content_type;  /* static */
    char headers[256];
    char *body;
    size_t len;
} web_api_response_t;

enum {
    WEB_API_DONE = 0,  /* res is filled: write it */
    WEB_API_LATER = 1, /* the route deferred; nothing to write now */
};

/* Routes req. srv (may be NULL) feeds /metrics with the transport's
 * counters. Returns WEB_API_DONE with *res filled, or WEB_API_LATER. */
int web_api_handle(const web_api_t *api, const net_server_t *srv,
                   const net_http_request_t *req, web_api_response_t *res);
void web_api_response_free(web_api_response_t *res);

/* The JSON error response of design §5 (extra_headers may be NULL). */
void web_api_error(web_api_response_t *res, int status, const char *code,
                   const char *message, const char *extra_headers);
/* A JSON response: takes body (a json_t, decref'd here). */
void web_api_json(web_api_response_t *res, int status, json_t *body);

/* ---- WebSocket upgrade ---------------------------------------------------- */

typedef struct web_ws_auth {
    phx_vsn_t vsn;
    char *user;                /* JWT sub (free()) */
    json_t *claims;            /* json_decref() */
    const char *subprotocol;   /* "phoenix" if offered, else NULL (static) */
} web_ws_auth_t;

/* Checks an upgrade request: the path (/socket/websocket, with or
 * without a trailing slash), vsn, and the token from the `token` query
 * parameter or from phoenix.js's Sec-WebSocket-Protocol bearer entry.
 * Returns 0 with *out filled (free with web_ws_auth_free), or an HTTP
 * status (404 wrong path, 400 bad vsn or bearer, 403 bad, expired or
 * missing token) with *message a static text. */
int web_api_ws_auth(const web_api_t *api, const net_http_request_t *req, web_ws_auth_t *out,
                    const char **message);
void web_ws_auth_free(web_ws_auth_t *a);

/* Constant-time comparison of two secrets of any lengths (digests are
 * compared, so neither length nor content leaks through timing). */
bool web_secret_equal(const char *a, size_t alen, const char *b, size_t blen);
/* SHA-256 of key into out[32] (for web_api_t.api_key_sha256). */
void web_api_key_digest(const char *key, unsigned char out[32]);

/* ---- Answers that come later --------------------------------------------------- */

/* Called with the message carrying the awaited ref; fills res. */
typedef void (*web_api_later_fn)(void *ctx, rt_msg_t *m, web_api_response_t *res);

/* Process context (the connection answering the request). The request
 * will be answered when a message with ref arrives (an rt_call reply:
 * it always comes, as the callee's answer, its exit reason or a
 * timeout). ctx is freed with ctx_free (may be NULL) after fn runs, or
 * when the connection turns out dead. Returns WEB_OK or WEB_E_NOMEM
 * (then nothing was kept: answer now). */
int web_api_defer(uint64_t ref, web_api_later_fn fn, void *ctx, void (*ctx_free)(void *));
/* Process context. True if m answers a deferred request of this
 * connection: *res is filled, write it. */
bool web_api_handle_info(rt_msg_t *m, web_api_response_t *res);

#endif /* ROOST_WEB_API_H */
