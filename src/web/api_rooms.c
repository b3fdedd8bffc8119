/*
 * web/api_rooms.c — the REST routes of rooms (design §5; see
 * web/room_web.h and docs/api.md):
 *
 *   POST   /api/rooms                 create (201 with the state; 409; 422)
 *   GET    /api/rooms                 {"rooms": [state, ...]}
 *   GET    /api/rooms/:id             the state, from the RoomServer (404 once ended)
 *   DELETE /api/rooms/:id             end it (200 with the final state)
 *   POST   /api/rooms/:id/broadcast   {"event","payload"} -> 202 {"delivered": n}
 *   POST   /api/rooms/:id/crash       {"reason"?} -> 202: kills the RoomServer
 *   GET    /api/rooms/:id/events      ?after=&limit= -> {"events": [...], "next": seq|null}
 *   GET    /api/calls                 ?user=&limit= -> {"calls": [...]}, newest first
 *
 * Routes that need another process's answer (the directory, a
 * RoomServer, the store) send a call and answer from the connection's
 * on_info through web_api_defer: the I/O thread never waits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "domain/history.h"
#include "domain/rjson.h"
#include "domain/room.h"
#include "net/http.h"
#include "store/store.h"
#include "web/room_web.h"

#define CALL_TIMEOUT_MS 10000
#define EMPTY_TIMEOUT_MAX (30LL * 86400) /* seconds */
#define MAX_PARTICIPANTS_MAX 1000000

/* ---- helpers ------------------------------------------------------------------ */

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

/* The body as a JSON object; an empty body is {}. NULL with res filled
 * (400 not JSON, 422 not an object). */
static json_t *body_object(const net_http_request_t *req, web_api_response_t *res)
{
    size_t i = 0;
    while (i < req->body_len && strchr(" \t\r\n", req->body[i]))
        i++;
    if (i == req->body_len)
        return json_object();
    json_t *j = room_json_load(req->body, req->body_len, JSON_DECODE_ANY, NULL);
    if (!j) {
        web_api_error(res, 400, "invalid_json", "request body is not valid JSON", NULL);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        web_api_error(res, 422, "invalid_body", "request body must be a JSON object", NULL);
        return NULL;
    }
    return j;
}

/* %-decodes a path segment (no '/', no %00) into a valid room id. */
static bool segment_id(const char *s, size_t n, char out[ROOM_ID_MAX + 1])
{
    size_t o = 0;
    return !memchr(s, '/', n) && net_http_pct_decode(s, n, out, ROOM_ID_MAX + 1, &o) &&
           room_id_valid(out, o);
}

static bool method_ok(const net_http_request_t *req, const char *allow, web_api_response_t *res)
{
    for (const char *p = allow; *p;) {
        size_t n = strcspn(p, ",");
        if (strlen(req->method_name) == n && strncmp(req->method_name, p, n) == 0)
            return true;
        if (n == 3 && strncmp(p, "GET", 3) == 0 && req->method == NET_HTTP_HEAD)
            return true;
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    char h[96], msg[96];
    snprintf(h, sizeof h, "Allow: %s\r\n", allow);
    snprintf(msg, sizeof msg, "use %s", allow);
    web_api_error(res, 405, "method_not_allowed", msg, h);
    return false;
}

static void not_found(web_api_response_t *res, const char *id)
{
    char msg[ROOM_ID_MAX + 64];
    snprintf(msg, sizeof msg, "no live room %s", id);
    web_api_error(res, 404, "not_found", msg, NULL);
}

/* A JSON response whose body is already text (copied). */
static void raw_json(web_api_response_t *res, int status, const char *json, size_t len)
{
    char *body = malloc(len + 1);
    if (!body) {
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
        return;
    }
    memcpy(body, json, len);
    body[len] = '\0';
    res->status = status;
    res->content_type = "application/json";
    res->headers[0] = '\0';
    res->body = body;
    res->len = len;
}

/* The error response for a room error. */
static void room_error(web_api_response_t *res, int err, const char *id)
{
    switch (err) {
    case ROOM_ENOTFOUND:
    case ROOM_EENDED:
        not_found(res, id);
        break;
    case ROOM_EEXIST:
        web_api_error(res, 409, "room_exists", "a room with this id exists", NULL);
        break;
    case ROOM_EINVAL:
        web_api_error(res, 422, "invalid_field", "invalid room request", NULL);
        break;
    default:
        web_api_error(res, 503, "unavailable", room_strerror(err), "Retry-After: 1\r\n");
        break;
    }
}

/* Deferred answers keep the room id (for messages) and what to do. */
typedef struct later {
    int kind;
    uint64_t after;     /* events */
    bool live;          /* events: the room runs */
    char id[ROOM_ID_MAX + 1];
} later_t;

enum { L_CREATE = 1, L_STATE, L_END, L_LIST, L_EVENTS, L_CALLS };

static void later_answer(void *ctx, rt_msg_t *m, web_api_response_t *res);

/* Sends req to `to` and answers later; false (res filled) if it could not. */
static bool call(rt_pid_t to, rt_msg_t *req, later_t *l, web_api_response_t *res)
{
    uint64_t ref = 0;
    if (!req || !l) {
        rt_msg_free(req);
        free(l);
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
        return false;
    }
    if (!to || rt_call(to, req, CALL_TIMEOUT_MS, &ref) != RT_OK) {
        if (!to)
            rt_msg_free(req); /* rt_call takes it whatever it returns */
        free(l);
        web_api_error(res, 503, "unavailable", "the service is restarting",
                      "Retry-After: 1\r\n");
        return false;
    }
    if (web_api_defer(ref, later_answer, l, free) != WEB_OK) {
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
        return false; /* the answer will find nobody: dropped */
    }
    return true;
}

static later_t *later_new(int kind, const char *id)
{
    later_t *l = calloc(1, sizeof *l);
    if (l) {
        l->kind = kind;
        if (id)
            snprintf(l->id, sizeof l->id, "%s", id);
    }
    return l;
}

static bool store_call_later(store_req_t *req, later_t *l, web_api_response_t *res)
{
    rt_pid_t store = rt_whereis("store");
    uint64_t ref = 0;
    if (!l || !store || store_call(store, req, CALL_TIMEOUT_MS, &ref) != RT_OK) {
        if (!l || !store)
            store_req_free(req); /* store_call takes it whatever it returns */
        free(l);
        web_api_error(res, 503, "unavailable", "the store is not available",
                      "Retry-After: 1\r\n");
        return false;
    }
    if (web_api_defer(ref, later_answer, l, free) != WEB_OK) {
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
        return false;
    }
    return true;
}

/* ---- answers that came back ------------------------------------------------------ */

static json_t *event_json(const store_event_t *e)
{
    json_t *o = json_pack("{sIsIss}", "seq", (json_int_t)e->seq, "at", (json_int_t)e->at,
                          "type", e->type);
    if (o && e->user)
        json_object_set_new(o, "user", json_string(e->user));
    if (o && e->data)
        json_object_set(o, "data", e->data);
    return o;
}

static json_t *call_json(const store_call_t *c)
{
    return json_pack("{sssIsosIsOsI}", "id", c->id, "created_at", (json_int_t)c->created_at,
                     "started_at",
                     c->started_at ? json_integer(c->started_at) : json_null(), "ended_at",
                     (json_int_t)c->ended_at, "participants", c->participants, "duration_ms",
                     (json_int_t)c->duration_ms);
}

static void store_answer(later_t *l, rt_msg_t *m, web_api_response_t *res)
{
    store_req_t *req = NULL;
    int rc = store_reply(m, &req);
    if (rc != STORE_OK) {
        web_api_error(res, 503, "unavailable", store_strerror(rc), "Retry-After: 1\r\n");
        return;
    }
    json_t *list = json_array();
    json_t *out = NULL;
    if (l->kind == L_EVENTS) {
        size_t n = 0;
        uint64_t next = 0;
        const store_event_t *ev = store_req_events(req, &n, &next);
        if (n == 0 && l->after == 0 && !l->live) {
            /* No event at all and not running: never existed. */
            json_decref(list);
            not_found(res, l->id);
            return;
        }
        for (size_t i = 0; list && i < n; i++)
            json_array_append_new(list, event_json(&ev[i]));
        out = json_pack("{soso}", "events", list,
                        "next", next ? json_integer((json_int_t)next) : json_null());
    } else {
        size_t n = 0;
        const store_call_t *c = store_req_calls(req, &n);
        for (size_t i = 0; list && i < n; i++)
            json_array_append_new(list, call_json(&c[i]));
        out = json_pack("{so}", "calls", list);
    }
    web_api_json(res, 200, out);
}

static void later_answer(void *ctx, rt_msg_t *m, web_api_response_t *res)
{
    later_t *l = ctx;
    if (l->kind == L_EVENTS || l->kind == L_CALLS) {
        store_answer(l, m, res);
        return;
    }
    int err = room_reply_err(m);
    rt_buf_t *b = room_reply_buf(m);
    if (err == ROOM_OK && !b && l->kind != L_LIST) {
        web_api_error(res, 500, "internal_error", "no state in the answer", NULL);
        return;
    }
    switch (l->kind) {
    case L_CREATE:
        if (err == ROOM_EENDED)
            web_api_error(res, 409, "room_ended",
                          "a room with this id existed and ended; ids are not reused", NULL);
        else if (err != ROOM_OK)
            room_error(res, err, l->id);
        else
            raw_json(res, 201, b->data, b->len);
        break;
    case L_STATE:
    case L_END:
        if (err != ROOM_OK)
            room_error(res, err, l->id);
        else
            raw_json(res, 200, b->data, b->len);
        break;
    case L_LIST: {
        if (err != ROOM_OK || !b) {
            room_error(res, err == ROOM_OK ? ROOM_ENOMEM : err, "");
            break;
        }
        /* {"rooms": <array>} around the gathered array. */
        static const char pre[] = "{\"rooms\":";
        char *body = malloc(sizeof pre - 1 + b->len + 2);
        if (!body) {
            web_api_error(res, 500, "internal_error", "out of memory", NULL);
            break;
        }
        memcpy(body, pre, sizeof pre - 1);
        memcpy(body + sizeof pre - 1, b->data, b->len);
        body[sizeof pre - 1 + b->len] = '}';
        body[sizeof pre + b->len] = '\0';
        res->status = 200;
        res->content_type = "application/json";
        res->headers[0] = '\0';
        res->body = body;
        res->len = sizeof pre + b->len;
        break;
    }
    }
}

/* ---- routes ------------------------------------------------------------------------ */

static bool int_field(json_t *body, const char *key, long long lo, long long hi, long long *out,
                      web_api_response_t *res)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        field_error(res, "%s must be an integer from %lld to %lld", key, lo, hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static int create(const net_http_request_t *req, web_api_response_t *res)
{
    json_t *body = body_object(req, res);
    if (!body)
        return WEB_API_DONE;
    char id[ROOM_ID_MAX + 1];
    long long maxp = 0, empty = -1;
    json_t *jid = json_object_get(body, "id");
    bool ok = int_field(body, "max_participants", 0, MAX_PARTICIPANTS_MAX, &maxp, res) &&
              int_field(body, "empty_timeout", 1, EMPTY_TIMEOUT_MAX, &empty, res);
    if (ok && jid && !json_is_null(jid)) {
        if (!json_is_string(jid) || !room_id_valid(json_string_value(jid), json_string_length(jid)) ||
            strlen(json_string_value(jid)) != json_string_length(jid)) {
            field_error(res, "id must be a non-empty string of at most %d bytes without "
                             "control characters", ROOM_ID_MAX);
            ok = false;
        } else {
            snprintf(id, sizeof id, "%s", json_string_value(jid));
        }
    } else if (ok) {
        unsigned char raw[9];
        if (RAND_bytes(raw, sizeof raw) != 1) {
            uint64_t r = rt_make_ref() ^ rt_now_ns();
            memcpy(raw, &r, 8);
            raw[8] = 0;
        }
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(id + 2 * i, 3, "%02x", raw[i]);
    }
    json_decref(body);
    if (!ok)
        return WEB_API_DONE;
    rt_msg_t *m = room_req_ensure(id, ROOM_ENSURE_CREATE | ROOM_ENSURE_EXCLUSIVE, maxp,
                                  empty < 0 ? -1 : empty * 1000);
    return call(rt_whereis(ROOM_DIR_NAME), m, later_new(L_CREATE, id), res) ? WEB_API_LATER
                                                                            : WEB_API_DONE;
}

static int get_room(const char *id, web_api_response_t *res)
{
    rt_pid_t pid = room_whereis(id);
    if (pid)
        return call(pid, room_req_get(), later_new(L_STATE, id), res) ? WEB_API_LATER
                                                                     : WEB_API_DONE;
    /* Not running (restarting, or live in the store but not started):
     * the directory knows, and never creates it from here. */
    rt_msg_t *m = room_req_ensure(id, ROOM_ENSURE_STATE, -1, -1);
    return call(rt_whereis(ROOM_DIR_NAME), m, later_new(L_STATE, id), res) ? WEB_API_LATER
                                                                           : WEB_API_DONE;
}

static int end_room(const char *id, web_api_response_t *res)
{
    rt_pid_t pid = room_whereis(id);
    if (!pid) {
        not_found(res, id);
        return WEB_API_DONE;
    }
    return call(pid, room_req_end("deleted"), later_new(L_END, id), res) ? WEB_API_LATER
                                                                        : WEB_API_DONE;
}

static int crash(const char *id, const net_http_request_t *req, web_api_response_t *res)
{
    json_t *body = body_object(req, res);
    if (!body)
        return WEB_API_DONE;
    json_t *r = json_object_get(body, "reason");
    char reason[ROOM_ID_MAX + 1] = "crash requested";
    if (r && !json_is_null(r)) {
        const char *s = json_string_value(r);
        if (!s || !s[0] || json_string_length(r) > ROOM_ID_MAX || strlen(s) != json_string_length(r)) {
            json_decref(body);
            field_error(res, "reason must be a non-empty string of at most %d bytes", ROOM_ID_MAX);
            return WEB_API_DONE;
        }
        snprintf(reason, sizeof reason, "%s", s);
    }
    json_decref(body);
    if (strcmp(reason, "normal") == 0 || strcmp(reason, "shutdown") == 0) {
        /* These are orderly exits, not crashes: the supervisor would not
         * restart the RoomServer (it is transient). */
        field_error(res, "reason \"%s\" is an orderly exit, not a crash", reason);
        return WEB_API_DONE;
    }
    rt_pid_t pid = room_whereis(id);
    if (!pid) {
        not_found(res, id);
        return WEB_API_DONE;
    }
    rt_reason_t *why = strcmp(reason, "kill") == 0 ? RT_KILL : rt_reason_new(reason);
    rt_exit(pid, why);
    rt_reason_release(why);
    web_api_json(res, 202, json_pack("{ssss}", "id", id, "reason", reason));
    return WEB_API_DONE;
}

static int broadcast(const char *id, const net_http_request_t *req, web_api_response_t *res)
{
    json_t *body = body_object(req, res);
    if (!body)
        return WEB_API_DONE;
    json_t *event = json_object_get(body, "event"), *payload = json_object_get(body, "payload");
    const char *ev = json_string_value(event);
    if (!ev || !room_id_valid(ev, json_string_length(event)) ||
        strlen(ev) != json_string_length(event)) {
        json_decref(body);
        field_error(res, "event must be a non-empty string of at most %d bytes", ROOM_ID_MAX);
        return WEB_API_DONE;
    }
    if (strncmp(ev, "phx_", 4) == 0 || strncmp(ev, "presence_", 9) == 0) {
        json_decref(body);
        field_error(res, "event \"%.64s\" is reserved by the protocol", ev);
        return WEB_API_DONE;
    }
    if (!room_whereis(id)) {
        json_decref(body);
        not_found(res, id);
        return WEB_API_DONE;
    }
    char *js = json_dumps(payload ? payload : json_object(), JSON_COMPACT | JSON_ENCODE_ANY);
    char topic[ROOM_ID_MAX + 16];
    int n = js && room_topic(id, topic, sizeof topic)
                ? web_room_publisher.publish(NULL, topic, ev, js, strlen(js), RT_NOPID)
                : WEB_E_NOMEM;
    free(js);
    json_decref(body);
    if (n < 0)
        web_api_error(res, 500, "internal_error", web_strerror(n), NULL);
    else
        web_api_json(res, 202, json_pack("{si}", "delivered", n));
    return WEB_API_DONE;
}

/* ?name=<whole number in [lo, hi]>; *out untouched when absent. */
static bool query_num(const net_http_request_t *req, const char *name, unsigned long long lo,
                      unsigned long long hi, unsigned long long *out, web_api_response_t *res)
{
    char *v = NULL;
    int rc = net_http_query_get(req->query, req->query_len, name, &v, NULL);
    if (rc == NET_HTTP_E_NOT_FOUND)
        return true;
    char *end = NULL;
    errno = 0;
    unsigned long long x = v && v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    bool ok = rc == 0 && v && end && !*end && !errno && x >= lo && x <= hi;
    free(v);
    if (!ok) {
        field_error(res, "?%s must be a whole number from %llu to %llu", name, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static int events(const char *id, const net_http_request_t *req, web_api_response_t *res)
{
    unsigned long long after = 0, limit = 0;
    if (!query_num(req, "after", 0, UINT64_MAX >> 1, &after, res) ||
        !query_num(req, "limit", 1, 1000, &limit, res))
        return WEB_API_DONE;
    store_req_t *sr = NULL;
    if (store_req_read_events(&sr, id, after, (uint32_t)limit) != STORE_OK) {
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
        return WEB_API_DONE;
    }
    later_t *l = later_new(L_EVENTS, id);
    if (l) {
        l->after = after;
        l->live = room_whereis(id) != RT_NOPID;
    }
    return store_call_later(sr, l, res) ? WEB_API_LATER : WEB_API_DONE;
}

static int calls(const net_http_request_t *req, web_api_response_t *res)
{
    unsigned long long limit = 0;
    if (!query_num(req, "limit", 1, 1000, &limit, res))
        return WEB_API_DONE;
    char *user = NULL;
    size_t ulen = 0;
    int rc = net_http_query_get(req->query, req->query_len, "user", &user, &ulen);
    if (rc != 0 && rc != NET_HTTP_E_NOT_FOUND) {
        web_api_error(res, 400, "bad_request", "bad ?user parameter", NULL);
        return WEB_API_DONE;
    }
    if (user && !room_id_valid(user, ulen)) {
        free(user);
        field_error(res, "?user must be a user id");
        return WEB_API_DONE;
    }
    store_req_t *sr = NULL;
    rc = store_req_query_calls(&sr, user, (uint32_t)limit);
    free(user);
    if (rc != STORE_OK) {
        web_api_error(res, 500, "internal_error", store_strerror(rc), NULL);
        return WEB_API_DONE;
    }
    return store_call_later(sr, later_new(L_CALLS, NULL), res) ? WEB_API_LATER : WEB_API_DONE;
}

static bool path_is(const net_http_request_t *req, const char *p)
{
    return req->path_len == strlen(p) && memcmp(req->path, p, req->path_len) == 0;
}

bool web_api_rooms_route(const web_api_t *api, const net_http_request_t *req,
                         web_api_response_t *res, int *rc)
{
    *rc = WEB_API_DONE;
    if (path_is(req, "/api/calls")) {
        if (method_ok(req, "GET", res))
            *rc = calls(req, res);
        return true;
    }
    if (path_is(req, "/api/rooms") || path_is(req, "/api/rooms/")) {
        if (!method_ok(req, "GET, POST", res))
            return true;
        if (strcmp(req->method_name, "POST") == 0)
            *rc = create(req, res);
        else
            *rc = call(rt_whereis(ROOM_DIR_NAME), room_req_list(), later_new(L_LIST, NULL), res)
                      ? WEB_API_LATER
                      : WEB_API_DONE;
        return true;
    }
    static const char pre[] = "/api/rooms/";
    size_t pl = sizeof pre - 1;
    if (req->path_len <= pl || memcmp(req->path, pre, pl) != 0)
        return false;
    const char *seg = req->path + pl, *end = req->path + req->path_len;
    const char *slash = memchr(seg, '/', (size_t)(end - seg));
    const char *tail = slash ? slash : end;
    char id[ROOM_ID_MAX + 1];
    if (!segment_id(seg, (size_t)(tail - seg), id)) {
        web_api_error(res, 404, "not_found", "no such room id", NULL);
        return true;
    }
    size_t tl = (size_t)(end - tail);
    if (tl == 0) {
        if (!method_ok(req, "GET, DELETE", res))
            return true;
        *rc = strcmp(req->method_name, "DELETE") == 0 ? end_room(id, res) : get_room(id, res);
    } else if (tl == 6 && memcmp(tail, "/crash", 6) == 0) {
        if (method_ok(req, "POST", res))
            *rc = crash(id, req, res);
    } else if (tl == 10 && memcmp(tail, "/broadcast", 10) == 0) {
        if (method_ok(req, "POST", res))
            *rc = broadcast(id, req, res);
    } else if (tl == 7 && memcmp(tail, "/events", 7) == 0) {
        if (method_ok(req, "GET", res))
            *rc = events(id, req, res);
    } else {
        return false; /* not ours: the router's 404 */
    }
    return true;
}

/* ---- metrics ------------------------------------------------------------------------- */

static void metric(net_http_buf_t *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name,
                     help, name, type, name, v);
    if (n > 0)
        net_http_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void web_api_rooms_metrics(net_http_buf_t *b)
{
    room_stats_t rs;
    room_get_stats(&rs);
    metric(b, "roost_rooms", "gauge", "Rooms running (RoomServers).", rs.live);
    metric(b, "roost_rooms_created_total", "counter", "Rooms created.", rs.created);
    metric(b, "roost_rooms_ended_total", "counter", "Rooms ended.", rs.ended);
    metric(b, "roost_rooms_gave_up_total", "counter",
           "Rooms ended because they crashed more often than their restart intensity.",
           rs.gave_up);
    metric(b, "roost_room_restarts_total", "counter", "RoomServer restarts from the backup.",
           rs.restarts);
    metric(b, "roost_room_store_refusals_total", "counter",
           "Groups of room changes refused because the store failed.", rs.store_refusals);
    metric(b, "roost_room_members", "gauge", "Connections joined to rooms.", rs.members);
    history_stats_t hs;
    history_get_stats(&hs);
    metric(b, "roost_history_backlog", "gauge",
           "Room events sent to the HistoryServer and not yet handed to the store.", hs.backlog);
    metric(b, "roost_history_events_total", "counter", "Room events handed to the store.",
           hs.recorded);
    metric(b, "roost_history_calls_total", "counter", "Call records handed to the store.",
           hs.calls);
    metric(b, "roost_history_dropped_total", "counter",
           "Room events dropped (history buffer full or no history process).", hs.dropped);
    metric(b, "roost_history_failed_total", "counter", "Room events the store could not take.",
           hs.failed);
    store_t *st = room_config()->store;
    if (st) {
        store_stats_t ss;
        store_get_stats(st, &ss);
        metric(b, "roost_store_commits_total", "counter", "Store commits (fsyncs).", ss.commits);
        metric(b, "roost_store_writes_total", "counter", "Store writes acknowledged.", ss.writes);
        metric(b, "roost_store_failed_total", "counter", "Store requests answered with an error.",
               ss.failed);
        metric(b, "roost_store_lost_total", "counter", "Unacknowledged store writes that failed.",
               ss.lost);
        metric(b, "roost_store_backlog", "gauge", "Store requests queued or executing.",
               ss.backlog);
        metric(b, "roost_store_backlog_history", "gauge",
               "Of which events and call records.", ss.backlog_history);
        metric(b, "roost_store_commit_milliseconds_total", "counter",
               "Time spent committing.", ss.commit_ns / 1000000ULL);
        metric(b, "roost_store_syncs_total", "counter",
               "Syncs of the WAL by the syncer thread (each covers every commit before it).",
               ss.syncs);
        metric(b, "roost_store_sync_milliseconds_total", "counter", "Time spent syncing.",
               ss.sync_ns / 1000000ULL);
        metric(b, "roost_store_stopped", "gauge",
               "1 once a sync failed: every write is refused until a restart.",
               ss.failed_stop ? 1 : 0);
    }
}
