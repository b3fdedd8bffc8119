/*
 * web/api.c — REST routes, health, metrics and upgrade authentication
 * (see web/api.h). Every route builds a web_api_response_t; nothing here
 * writes to a socket.
 */
#include "web/api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "domain/room.h"
#include "media/janus.h"
#include "net/ws.h"
#include "web/channel.h"
#include "web/jwt.h"
#include "web/room_web.h"
#include "web/static.h"

/* ---- responses ---------------------------------------------------------------- */

void web_api_response_free(web_api_response_t *res)
{
    free(res->body);
    res->body = NULL;
    res->len = 0;
}

static void set_headers(web_api_response_t *res, const char *h)
{
    snprintf(res->headers, sizeof res->headers, "%s", h ? h : "");
}

void web_api_error(web_api_response_t *res, int status, const char *code,
                   const char *message, const char *extra_headers)
{
    res->status = status;
    res->content_type = "application/json";
    set_headers(res, extra_headers);
    res->body = net_http_json_error_body(code, message, &res->len);
    if (!res->body) { /* out of memory, or a message that is not UTF-8 */
        res->body = net_http_json_error_body(code, "error", &res->len);
        if (!res->body)
            res->len = 0;
    }
}

void web_api_json(web_api_response_t *res, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) {
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
        return;
    }
    res->status = status;
    res->content_type = "application/json";
    set_headers(res, NULL);
    res->body = s;
    res->len = strlen(s);
}

/* ---- helpers -------------------------------------------------------------------- */

bool web_secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)a, alen, da);
    SHA256((const unsigned char *)b, blen, db);
    return CRYPTO_memcmp(da, db, sizeof da) == 0;
}

void web_api_key_digest(const char *key, unsigned char out[32])
{
    SHA256((const unsigned char *)key, strlen(key), out);
}

static int64_t wall_s(void)
{
    return (int64_t)time(NULL);
}

/* "Bearer <key>" with the right key. */
static bool authorized(const web_api_t *api, const net_http_request_t *req, const char **why)
{
    const char *h = net_http_header_get(req, "Authorization");
    if (!h) {
        *why = "missing Authorization: Bearer <api key>";
        return false;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "Authorization must be Bearer <api key>";
        return false;
    }
    const char *k = h + 7;
    while (*k == ' ')
        k++;
    bool ok = false;
    if (api->api_key_sha256) {
        /* The configured key's digest was made once: hash only this one
         * (every REST request comes through here). */
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)k, strlen(k), d);
        ok = CRYPTO_memcmp(d, api->api_key_sha256, sizeof d) == 0;
    } else if (api->api_key) {
        ok = web_secret_equal(k, strlen(k), api->api_key, strlen(api->api_key));
    }
    if (!ok) {
        *why = "invalid API key";
        return false;
    }
    return true;
}

/* Parses the body as a JSON object. On failure fills res and returns NULL. */
static json_t *json_body(const net_http_request_t *req, web_api_response_t *res)
{
    json_error_t err;
    json_t *j = json_loadb(req->body, req->body_len, 0, &err);
    if (!j) {
        char msg[200];
        snprintf(msg, sizeof msg, "request body is not valid JSON: %s", err.text);
        web_api_error(res, 400, "invalid_json", ws_utf8_valid(msg, strlen(msg)) ? msg
                                                    : "request body is not valid JSON", NULL);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        web_api_error(res, 422, "invalid_body", "request body must be a JSON object", NULL);
        return NULL;
    }
    return j;
}

static void field_error(web_api_response_t *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void field_error(web_api_response_t *res, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    web_api_error(res, 422, "invalid_field", msg, NULL);
}

/* An id: a non-empty UTF-8 string of at most WEB_ID_MAX bytes without
 * control characters. */
static bool valid_id(const char *s, size_t n)
{
    if (n == 0 || n > WEB_ID_MAX || !ws_utf8_valid(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* ---- routes ---------------------------------------------------------------------- */

static void healthz(const web_api_t *api, web_api_response_t *res)
{
    rt_stats_t st;
    rt_get_stats(&st);
    web_channel_stats_t ws;
    web_channel_get_stats(&ws);
    bool janus = room_config()->media == ROOM_MEDIA_JANUS;
    /* "janus" only in janus mode: "connected" once the media client has a
     * session (calls through Janus work), else "connecting". */
    web_api_json(res, 200,
                 json_pack("{ssssss*sssIsIsI}", "status", "ok", "media", janus ? "janus" : "none",
                           "janus", janus ? (janus_connected() ? "connected" : "connecting") : NULL,
                           "version", api->version ? api->version : "?", "uptime_ms",
                           (json_int_t)(rt_now_ms() - api->started_ms), "processes",
                           (json_int_t)st.processes, "sockets", (json_int_t)ws.sockets));
}

static void put(net_http_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(net_http_buf_t *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        net_http_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void metric(net_http_buf_t *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

static void metrics(const net_server_t *srv, web_api_response_t *res)
{
    net_stats_t ns;
    memset(&ns, 0, sizeof ns);
    if (srv)
        net_server_stats(srv, &ns);
    rt_stats_t rs;
    rt_get_stats(&rs);
    web_channel_stats_t ws;
    web_channel_get_stats(&ws);

    net_http_buf_t b;
    net_http_buf_init(&b);
    metric(&b, "roost_connections", "gauge", "Open TCP connections.", ns.connections);
    metric(&b, "roost_websockets", "gauge", "Open WebSocket connections.", ns.websockets);
    metric(&b, "roost_connections_accepted_total", "counter", "TCP connections accepted.",
           ns.accepted);
    metric(&b, "roost_http_requests_total", "counter", "HTTP requests handled.",
           ns.http_requests);
    metric(&b, "roost_ws_frames_in_total", "counter", "WebSocket frames received.",
           ns.frames_in);
    metric(&b, "roost_ws_frames_out_total", "counter", "WebSocket frames sent.", ns.frames_out);
    metric(&b, "roost_bytes_in_total", "counter", "Bytes read from clients.", ns.bytes_in);
    metric(&b, "roost_bytes_out_total", "counter", "Bytes written to clients.", ns.bytes_out);
    put(&b, "# HELP roost_ws_closes_total WebSocket closes by close code.\n"
            "# TYPE roost_ws_closes_total counter\n");
    for (int i = 0; net_close_codes[i] && i < 16; i++)
        put(&b, "roost_ws_closes_total{code=\"%d\"} %" PRIu64 "\n", net_close_codes[i],
            ns.closes[i]);
    metric(&b, "roost_sockets", "gauge", "Phoenix sockets open.", ws.sockets);
    metric(&b, "roost_channels", "gauge", "Channels joined or joining.", ws.channels);
    metric(&b, "roost_channel_joins_total", "counter", "Channel joins routed to a handler.",
           ws.joins);
    metric(&b, "roost_channel_join_errors_total", "counter", "Channel joins refused or failed.",
           ws.join_errors);
    metric(&b, "roost_channel_crashes_total", "counter", "phx_error sent to clients.",
           ws.crashes);
    metric(&b, "roost_channel_pushes_total", "counter", "Client pushes handled by channels.",
           ws.pushes_in);
    metric(&b, "roost_broadcast_frames_sent_total", "counter",
           "Shared broadcast frames written to clients.", ws.broadcasts_out);
    metric(&b, "roost_broadcast_frames_encoded_total", "counter",
           "Broadcast frames encoded (one per serializer version per broadcast).",
           ws.frames_encoded);
    metric(&b, "roost_protocol_errors_total", "counter",
           "Connections closed for invalid messages (1007/1003).", ws.bad_messages);
    metric(&b, "roost_processes", "gauge", "Runtime processes alive.", rs.processes);
    metric(&b, "roost_processes_spawned_total", "counter", "Runtime processes started.",
           rs.spawned);
    metric(&b, "roost_process_restarts_total", "counter", "Restarts by supervisors.",
           rs.restarts);
    metric(&b, "roost_messages_total", "counter", "Runtime messages sent.", rs.messages);
    metric(&b, "roost_messages_dropped_total", "counter", "Messages to dead processes.",
           rs.dropped);
    web_api_rooms_metrics(&b); /* rooms, history, store */
    res->status = 200;
    res->content_type = "text/plain; version=0.0.4";
    set_headers(res, NULL);
    res->body = b.data; /* taken over from the buffer */
    res->len = b.len;
    if (!res->body)
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
}

static void tokens(const web_api_t *api, const net_http_request_t *req, web_api_response_t *res)
{
    json_t *body = json_body(req, res);
    if (!body)
        return;
    json_t *sub = json_object_get(body, "sub"), *room = json_object_get(body, "room"),
           *ttl = json_object_get(body, "ttl");
    json_int_t t = WEB_TOKEN_TTL_DEFAULT;
    if (!json_is_string(sub) || !valid_id(json_string_value(sub), json_string_length(sub)))
        field_error(res, "sub must be a non-empty string of at most %d bytes", WEB_ID_MAX);
    else if (room && !json_is_null(room) &&
             (!json_is_string(room) ||
              !valid_id(json_string_value(room), json_string_length(room))))
        field_error(res, "room must be a non-empty string of at most %d bytes (or \"*\")",
                    WEB_ID_MAX);
    else if (ttl && !json_is_null(ttl) &&
             (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
              json_integer_value(ttl) > WEB_TOKEN_TTL_MAX))
        field_error(res, "ttl must be an integer number of seconds from 1 to %d",
                    WEB_TOKEN_TTL_MAX);
    else {
        if (json_is_integer(ttl))
            t = json_integer_value(ttl);
        int64_t now = wall_s();
        json_t *claims = json_pack("{sOsssIsI}", "sub", sub, "room",
                                   json_is_string(room) ? json_string_value(room) : "*",
                                   "iat", (json_int_t)now, "exp", (json_int_t)(now + t));
        char *token = NULL;
        int rc = !claims       ? JWT_E_NOMEM
                 : api->jwt_key ? jwt_sign_key(api->jwt_key, claims, &token)
                                : jwt_sign(api->secret, api->secret_len, claims, &token);
        json_decref(claims);
        if (rc != JWT_OK) {
            web_api_error(res, 500, "internal_error", jwt_strerror(rc), NULL);
        } else {
            web_api_json(res, 200, json_pack("{ss}", "token", token));
            set_headers(res, "Cache-Control: no-store\r\n");
        }
        free(token);
    }
    json_decref(body);
}

static void notify(const char *user, const net_http_request_t *req, web_api_response_t *res)
{
    json_t *body = json_body(req, res);
    if (!body)
        return;
    json_t *event = json_object_get(body, "event"), *payload = json_object_get(body, "payload");
    const char *ev = json_string_value(event);
    if (!ev || !valid_id(ev, json_string_length(event))) {
        field_error(res, "event must be a non-empty string of at most %d bytes", WEB_ID_MAX);
    } else if (strncmp(ev, "phx_", 4) == 0 || strncmp(ev, "presence_", 9) == 0) {
        field_error(res, "event \"%.64s\" is reserved by the protocol", ev);
    } else {
        char *js = payload ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        int n = js || !payload ? web_user_notify(user, ev, js ? js : "{}", js ? strlen(js) : 2)
                               : WEB_E_NOMEM;
        free(js);
        if (n < 0)
            web_api_error(res, 500, "internal_error", web_strerror(n), NULL);
        else
            web_api_json(res, 202, json_pack("{si}", "delivered", n));
    }
    json_decref(body);
}

static bool path_is(const net_http_request_t *req, const char *p)
{
    return req->path_len == strlen(p) && memcmp(req->path, p, req->path_len) == 0;
}

static bool method_ok(const net_http_request_t *req, const char *allow, web_api_response_t *res)
{
    bool get = strcmp(allow, "GET") == 0;
    if (strcmp(req->method_name, allow) == 0 || (get && req->method == NET_HTTP_HEAD))
        return true;
    char h[64], msg[96];
    snprintf(h, sizeof h, "Allow: %s\r\n", get ? "GET, HEAD" : allow);
    snprintf(msg, sizeof msg, "use %s", allow);
    web_api_error(res, 405, "method_not_allowed", msg, h);
    return false;
}

int web_api_handle(const web_api_t *api, const net_server_t *srv,
                   const net_http_request_t *req, web_api_response_t *res)
{
    memset(res, 0, sizeof *res);
    if (path_is(req, "/healthz")) {
        if (method_ok(req, "GET", res))
            healthz(api, res);
        return WEB_API_DONE;
    }
    if (path_is(req, "/metrics")) {
        if (method_ok(req, "GET", res))
            metrics(srv, res);
        return WEB_API_DONE;
    }
    if (path_is(req, "/socket/websocket") || path_is(req, "/socket/websocket/")) {
        if (method_ok(req, "GET", res))
            web_api_error(res, 400, "upgrade_required",
                          "this path takes a WebSocket upgrade (Phoenix socket)",
                          "Connection: Upgrade\r\nUpgrade: websocket\r\n");
        return WEB_API_DONE;
    }
    if (req->path_len >= 5 && memcmp(req->path, "/api/", 5) == 0) {
        const char *why;
        if (!authorized(api, req, &why)) {
            web_api_error(res, 401, "unauthorized", why, "WWW-Authenticate: Bearer\r\n");
            return WEB_API_DONE;
        }
        int rooms_rc; /* /api/rooms..., /api/calls: web/api_rooms.c */
        if (web_api_rooms_route(api, req, res, &rooms_rc))
            return rooms_rc;
        if (path_is(req, "/api/tokens")) {
            if (method_ok(req, "POST", res))
                tokens(api, req, res);
            return WEB_API_DONE;
        }
        static const char users[] = "/api/users/", tail[] = "/notify";
        size_t ul = sizeof users - 1, tl = sizeof tail - 1;
        if (req->path_len > ul + tl && memcmp(req->path, users, ul) == 0 &&
            memcmp(req->path + req->path_len - tl, tail, tl) == 0) {
            const char *seg = req->path + ul;
            size_t seglen = req->path_len - ul - tl;
            char id[WEB_ID_MAX + 1];
            size_t idlen;
            if (memchr(seg, '/', seglen) || !net_http_pct_decode(seg, seglen, id, sizeof id, &idlen) ||
                !valid_id(id, idlen)) {
                web_api_error(res, 404, "not_found", "no such user id", NULL);
                return WEB_API_DONE;
            }
            if (method_ok(req, "POST", res))
                notify(id, req, res);
            return WEB_API_DONE;
        }
    }
    /* Development credentials only: the demo page mints its own token. */
    if (api->dev && path_is(req, "/dev/token")) {
        if (method_ok(req, "POST", res))
            tokens(api, req, res);
        return WEB_API_DONE;
    }
    if (web_static_route(req, res)) /* /, /static/...: web/static.h */
        return WEB_API_DONE;
    char msg[160];
    snprintf(msg, sizeof msg, "no route for %s %.*s", req->method_name,
             (int)(req->path_len > 100 ? 100 : req->path_len), req->path);
    web_api_error(res, 404, "not_found", ws_utf8_valid(msg, strlen(msg)) ? msg : "no route",
                  NULL);
    return WEB_API_DONE;
}

/* ---- WebSocket upgrade ------------------------------------------------------------- */

void web_ws_auth_free(web_ws_auth_t *a)
{
    free(a->user);
    json_decref(a->claims);
    memset(a, 0, sizeof *a);
}

int web_api_ws_auth(const web_api_t *api, const net_http_request_t *req, web_ws_auth_t *out,
                    const char **message)
{
    memset(out, 0, sizeof *out);
    if (!path_is(req, "/socket/websocket") && !path_is(req, "/socket/websocket/")) {
        *message = "no WebSocket endpoint here (use /socket/websocket)";
        return 404;
    }
    char *vsn = NULL;
    int rc = net_http_query_get(req->query, req->query_len, "vsn", &vsn, NULL);
    if (rc != 0 && rc != NET_HTTP_E_NOT_FOUND) {
        *message = "bad vsn parameter";
        return 400;
    }
    rc = phx_vsn_parse(vsn, &out->vsn);
    free(vsn);
    if (rc != 0) {
        *message = "unsupported vsn (use 1.0.0 or 2.0.0)";
        return 400;
    }

    char *token = NULL, *bearer = NULL;
    size_t token_len = 0, bearer_len = 0;
    rc = net_http_query_get(req->query, req->query_len, "token", &token, &token_len);
    if (rc != 0 && rc != NET_HTTP_E_NOT_FOUND) {
        *message = "bad token parameter";
        return 403;
    }
    rc = ws_phoenix_protocol(req, &out->subprotocol, &bearer, &bearer_len);
    if (rc != 0) {
        free(token);
        *message = "bad bearer token in Sec-WebSocket-Protocol";
        return 400;
    }
    /* The query parameter wins when both are there. */
    if (!token) {
        token = bearer;
        token_len = bearer_len;
        bearer = NULL;
    }
    free(bearer);
    if (!token || !token_len) {
        free(token);
        *message = "missing token";
        return 403;
    }
    json_t *claims = NULL;
    rc = api->jwt_key
             ? jwt_verify_key(api->jwt_key, token, token_len, wall_s(), &claims)
             : jwt_verify(api->secret, api->secret_len, token, token_len, wall_s(), &claims);
    free(token);
    if (rc != JWT_OK) {
        *message = rc == JWT_E_EXPIRED ? "token expired" : "invalid token";
        return 403;
    }
    json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(sub) || !valid_id(json_string_value(sub), json_string_length(sub))) {
        json_decref(claims);
        *message = "token has no valid sub";
        return 403;
    }
    out->user = strdup(json_string_value(sub));
    if (!out->user) {
        json_decref(claims);
        *message = "out of memory";
        return 500;
    }
    out->claims = claims;
    return 0;
}

/* ---- answers that come later --------------------------------------------------------
 * Connection processes of one I/O thread all run on that thread, so the
 * pending answers are kept per thread, keyed by the connection's pid. A
 * connection that dies while waiting leaves an entry behind; the next
 * defer on that thread sweeps such entries (rt_is_alive), so the list
 * stays bounded by the requests actually waiting. */

typedef struct later {
    struct later *next;
    rt_pid_t pid;
    uint64_t ref;
    web_api_later_fn fn;
    void *ctx;
    void (*ctx_free)(void *);
} later_t;

static __thread later_t *pending_later;

static void later_free(later_t *l)
{
    if (l->ctx_free)
        l->ctx_free(l->ctx);
    free(l);
}

int web_api_defer(uint64_t ref, web_api_later_fn fn, void *ctx, void (*ctx_free)(void *))
{
    for (later_t **pp = &pending_later; *pp;) {
        later_t *l = *pp;
        if (!rt_is_alive(l->pid)) {
            *pp = l->next;
            later_free(l);
        } else {
            pp = &l->next;
        }
    }
    later_t *l = malloc(sizeof *l);
    if (!l)
        return WEB_E_NOMEM;
    *l = (later_t){.next = pending_later, .pid = rt_self(), .ref = ref, .fn = fn,
                   .ctx = ctx, .ctx_free = ctx_free};
    pending_later = l;
    return WEB_OK;
}

bool web_api_handle_info(rt_msg_t *m, web_api_response_t *res)
{
    if (!m->ref)
        return false;
    rt_pid_t me = rt_self();
    for (later_t **pp = &pending_later; *pp; pp = &(*pp)->next) {
        later_t *l = *pp;
        if (l->pid != me || l->ref != m->ref)
            continue;
        *pp = l->next;
        memset(res, 0, sizeof *res);
        l->fn(l->ctx, m, res);
        later_free(l);
        return true;
    }
    return false;
}
