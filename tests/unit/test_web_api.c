/*
 * test_web_api.c — REST routing, API-key auth, error shapes, tokens,
 * notify, metrics and the WebSocket upgrade's authentication
 * (web/api.h), without sockets: requests are parsed from raw HTTP text by
 * net/http.h and handed to web_api_handle / web_api_ws_auth.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/http.h"
#include "rt/rt.h"
#include "web/api.h"
#include "web/channel.h"
#include "web/jwt.h"

#define SECRET "test-secret"
#define KEY "test-key"

/* Not const: the token tests run again with the secret prepared
 * (api.jwt_key), as the endpoint has it. */
static web_api_t api = {
    .secret = SECRET, .secret_len = sizeof SECRET - 1, .api_key = KEY, .version = "t",
};

static net_http_parser_t parser;
static web_api_response_t res;
static json_t *body;

static void setup(void)
{
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
}

static void teardown(void)
{
    web_api_response_free(&res);
    json_decref(body);
    body = NULL;
    net_http_parser_free(&parser);
    rt_runtime_stop();
}

TestSuite(web_api, .init = setup, .fini = teardown, .timeout = 20);

static const net_http_request_t *parse(const char *raw)
{
    net_http_parser_free(&parser);
    net_http_parser_init(&parser, NULL);
    size_t used;
    int rc = net_http_parser_feed(&parser, raw, strlen(raw), &used);
    cr_assert_eq(rc, NET_HTTP_REQUEST, "request did not parse: %d", rc);
    return net_http_parser_request(&parser);
}

/* Sends a request (method, path, extra header lines, body) and returns the
 * status; the response is in res, its JSON (if any) in body. */
static int call(const char *method, const char *path, const char *headers, const char *b)
{
    char raw[8192];
    snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n%s",
             method, path, headers ? headers : "", b ? strlen(b) : 0, b ? b : "");
    web_api_response_free(&res);
    json_decref(body);
    body = NULL;
    cr_assert_eq(web_api_handle(&api, NULL, parse(raw), &res), WEB_API_DONE);
    if (res.content_type && strcmp(res.content_type, "application/json") == 0) {
        body = json_loadb(res.body, res.len, 0, NULL);
        cr_assert_not_null(body, "response is not JSON: %.*s", (int)res.len, res.body);
    }
    return res.status;
}

#define AUTH "Authorization: Bearer " KEY "\r\n"

static void assert_error(int status, const char *code)
{
    cr_assert_eq(res.status, status, "status %d, wanted %d: %.*s", res.status, status,
                 (int)res.len, res.body);
    json_t *e = json_object_get(body, "error");
    cr_assert(json_is_object(e), "no error object in %.*s", (int)res.len, res.body);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
    cr_assert(json_is_string(json_object_get(e, "message")));
}

Test(web_api, healthz)
{
    cr_assert_eq(call("GET", "/healthz", NULL, NULL), 200);
    cr_assert_str_eq(json_string_value(json_object_get(body, "status")), "ok");
    cr_assert_eq(call("HEAD", "/healthz", NULL, NULL), 200);
    call("POST", "/healthz", NULL, "{}");
    assert_error(405, "method_not_allowed");
    cr_assert(strstr(res.headers, "Allow: GET, HEAD\r\n"));
}

Test(web_api, metrics_prometheus_text)
{
    cr_assert_eq(call("GET", "/metrics", NULL, NULL), 200);
    cr_assert_str_eq(res.content_type, "text/plain; version=0.0.4");
    const char *want[] = {"# TYPE roost_connections gauge\nroost_connections 0\n",
                          "roost_websockets ", "roost_ws_frames_in_total ",
                          "roost_bytes_out_total ", "roost_ws_closes_total{code=\"1012\"} ",
                          "roost_channels ", "roost_channel_joins_total ", "roost_processes ",
                          "roost_process_restarts_total ", "roost_messages_dropped_total ",
                          "roost_messages_total "};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(res.body, want[i]), "metrics lack %s", want[i]);
}

Test(web_api, unknown_route_404)
{
    call("GET", "/nope", NULL, NULL);
    assert_error(404, "not_found");
    call("GET", "/api/nope", AUTH, NULL);
    assert_error(404, "not_found");
}

Test(web_api, api_needs_key)
{
    call("POST", "/api/tokens", NULL, "{\"sub\":\"a\"}");
    assert_error(401, "unauthorized");
    cr_assert(strstr(res.headers, "WWW-Authenticate: Bearer"));
    call("POST", "/api/tokens", "Authorization: Bearer wrong\r\n", "{\"sub\":\"a\"}");
    assert_error(401, "unauthorized");
    call("POST", "/api/tokens", "Authorization: Basic " KEY "\r\n", "{\"sub\":\"a\"}");
    assert_error(401, "unauthorized");
    call("POST", "/api/tokens", "Authorization: Bearer " KEY "x\r\n", "{\"sub\":\"a\"}");
    assert_error(401, "unauthorized");
    /* Auth comes before routing under /api/. */
    call("GET", "/api/nope", NULL, NULL);
    assert_error(401, "unauthorized");
    cr_assert_eq(call("POST", "/api/tokens", "authorization: bearer " KEY "\r\n",
                      "{\"sub\":\"a\"}"), 200);
}

/* The same checks with the configured key's digest made once, as the
 * endpoint does (web_api_t.api_key_sha256). */
Test(web_api, api_key_checked_against_its_digest)
{
    unsigned char digest[32];
    web_api_key_digest(KEY, digest);
    api.api_key_sha256 = digest;
    call("POST", "/api/tokens", "Authorization: Bearer wrong\r\n", "{\"sub\":\"a\"}");
    assert_error(401, "unauthorized");
    call("POST", "/api/tokens", "Authorization: Bearer " KEY "x\r\n", "{\"sub\":\"a\"}");
    assert_error(401, "unauthorized");
    char shorter[sizeof KEY];
    memcpy(shorter, KEY, sizeof KEY - 2);
    shorter[sizeof KEY - 2] = '\0';
    char hdr[sizeof KEY + 64];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", shorter);
    call("POST", "/api/tokens", hdr, "{\"sub\":\"a\"}");
    assert_error(401, "unauthorized");
    cr_assert_eq(call("POST", "/api/tokens", AUTH, "{\"sub\":\"a\"}"), 200);
    api.api_key_sha256 = NULL;
}

Test(web_api, tokens)
{
    int64_t now = (int64_t)time(NULL);
    cr_assert_eq(call("POST", "/api/tokens", AUTH, "{\"sub\":\"alice\",\"ttl\":60}"), 200);
    cr_assert(strstr(res.headers, "Cache-Control: no-store"));
    const char *t = json_string_value(json_object_get(body, "token"));
    cr_assert_not_null(t);
    json_t *claims = NULL;
    cr_assert_eq(jwt_verify(SECRET, strlen(SECRET), t, strlen(t), now, &claims), JWT_OK);
    cr_assert_str_eq(json_string_value(json_object_get(claims, "sub")), "alice");
    cr_assert_str_eq(json_string_value(json_object_get(claims, "room")), "*");
    json_int_t exp = json_integer_value(json_object_get(claims, "exp"));
    cr_assert(exp >= now + 60 && exp <= now + 62, "exp %lld", (long long)exp);
    json_decref(claims);

    cr_assert_eq(call("POST", "/api/tokens", AUTH, "{\"sub\":\"bob\",\"room\":\"r1\"}"), 200);
    t = json_string_value(json_object_get(body, "token"));
    cr_assert_eq(jwt_verify(SECRET, strlen(SECRET), t, strlen(t), now, &claims), JWT_OK);
    cr_assert_str_eq(json_string_value(json_object_get(claims, "room")), "r1");
    exp = json_integer_value(json_object_get(claims, "exp"));
    cr_assert(exp >= now + WEB_TOKEN_TTL_DEFAULT && exp <= now + WEB_TOKEN_TTL_DEFAULT + 2);
    json_decref(claims);

    call("GET", "/api/tokens", AUTH, NULL);
    assert_error(405, "method_not_allowed");
    cr_assert(strstr(res.headers, "Allow: POST\r\n"));
}

Test(web_api, tokens_bad_bodies)
{
    call("POST", "/api/tokens", AUTH, "{\"sub\":");
    assert_error(400, "invalid_json");
    call("POST", "/api/tokens", AUTH, "");
    assert_error(400, "invalid_json");
    call("POST", "/api/tokens", AUTH, "[1]");
    assert_error(422, "invalid_body");
    const char *bad[] = {"{}", "{\"sub\":\"\"}", "{\"sub\":7}", "{\"sub\":\"a\",\"ttl\":0}",
                         "{\"sub\":\"a\",\"ttl\":\"60\"}", "{\"sub\":\"a\",\"ttl\":1.5}",
                         "{\"sub\":\"a\",\"ttl\":99999999999}", "{\"sub\":\"a\",\"room\":5}",
                         "{\"sub\":\"a\\u0001\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call("POST", "/api/tokens", AUTH, bad[i]);
        assert_error(422, "invalid_field");
    }
}

/* A process subscribed to user:alice, recording what it receives. */
static char got[512];
static rt_reason_t *sub_init(void *arg, void **state)
{
    rt_subscribe("user:alice");
    return NULL;
}
static void sub_info(void *state, rt_msg_t *m)
{
    if (m->kind == RT_MSG_PUB && m->tag == WEB_MSG_BROADCAST) {
        web_broadcast_t *b = (web_broadcast_t *)m->data;
        snprintf(got, sizeof got, "%s|%s|%s", b->topic, b->event, b->payload);
    }
}
static const rt_behaviour_t sub_beh = RT_BEHAVIOUR(.name = "sub", .init = sub_init,
                                                   .handle_info = sub_info);

Test(web_api, notify)
{
    cr_assert_eq(call("POST", "/api/users/alice/notify", AUTH,
                      "{\"event\":\"ring\",\"payload\":{\"from\":\"bob\"}}"), 202);
    cr_assert_eq(json_integer_value(json_object_get(body, "delivered")), 0);

    rt_pid_t p;
    cr_assert_eq(rt_spawn(&sub_beh, NULL, NULL, &p), RT_OK);
    for (int i = 0; i < 200 && rt_subscriber_count("user:alice") == 0; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    /* %-encoded id, payload defaulting to {} */
    cr_assert_eq(call("POST", "/api/users/al%69ce/notify", AUTH, "{\"event\":\"ring\"}"), 202);
    cr_assert_eq(json_integer_value(json_object_get(body, "delivered")), 1);
    for (int i = 0; i < 200 && !got[0]; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_str_eq(got, "user:alice|ring|{}");

    call("POST", "/api/users/alice/notify", AUTH, "{\"payload\":{}}");
    assert_error(422, "invalid_field");
    call("POST", "/api/users/alice/notify", AUTH, "{\"event\":\"phx_close\"}");
    assert_error(422, "invalid_field");
    call("POST", "/api/users/alice/notify", AUTH, "{\"event\":");
    assert_error(400, "invalid_json");
    call("GET", "/api/users/alice/notify", AUTH, NULL);
    assert_error(405, "method_not_allowed");
    call("POST", "/api/users//notify", AUTH, "{\"event\":\"x\"}");
    assert_error(404, "not_found");
    call("POST", "/api/users/a%00b/notify", AUTH, "{\"event\":\"x\"}");
    assert_error(404, "not_found");
    call("POST", "/api/users/a/b/notify", AUTH, "{\"event\":\"x\"}");
    assert_error(404, "not_found");
    call("POST", "/api/users/a%zz/notify", AUTH, "{\"event\":\"x\"}");
    assert_error(404, "not_found");
}

Test(web_api, socket_path_without_upgrade)
{
    call("GET", "/socket/websocket", NULL, NULL);
    assert_error(400, "upgrade_required");
}

/* ---- WebSocket upgrade auth ---- */

static char *mint(const char *sub, int64_t exp, const char *secret)
{
    json_t *c = exp ? json_pack("{sssI}", "sub", sub, "exp", (json_int_t)exp)
                    : json_pack("{ss}", "sub", sub);
    char *t = NULL;
    cr_assert_eq(jwt_sign(secret, strlen(secret), c, &t), JWT_OK);
    json_decref(c);
    return t;
}

static int ws(const char *target, const char *headers, web_ws_auth_t *a, const char **msg)
{
    char raw[8192];
    snprintf(raw, sizeof raw,
             "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "%s\r\n",
             target, headers ? headers : "");
    net_http_parser_free(&parser);
    net_http_parser_init(&parser, NULL);
    size_t used;
    cr_assert_eq(net_http_parser_feed(&parser, raw, strlen(raw), &used), NET_HTTP_REQUEST);
    *msg = NULL;
    return web_api_ws_auth(&api, net_http_parser_request(&parser), a, msg);
}

static void ws_auth_checks(void)
{
    web_ws_auth_t a;
    const char *msg;
    int64_t now = (int64_t)time(NULL);
    char *good = mint("alice", now + 60, SECRET);
    char target[4096];

    snprintf(target, sizeof target, "/socket/websocket?token=%s&vsn=2.0.0", good);
    cr_assert_eq(ws(target, NULL, &a, &msg), 0, "%s", msg);
    cr_assert_str_eq(a.user, "alice");
    cr_assert_eq(a.vsn, PHX_V2);
    cr_assert_null(a.subprotocol);
    web_ws_auth_free(&a);

    /* No vsn: 1.0.0; trailing slash accepted; no exp is fine. */
    char *noexp = mint("bob", 0, SECRET);
    snprintf(target, sizeof target, "/socket/websocket/?token=%s", noexp);
    cr_assert_eq(ws(target, NULL, &a, &msg), 0, "%s", msg);
    cr_assert_eq(a.vsn, PHX_V1);
    cr_assert_str_eq(a.user, "bob");
    web_ws_auth_free(&a);

    /* phoenix.js authToken: the bearer subprotocol. */
    char b64[4096], hdr[4200];
    jwt_b64url_encode(good, strlen(good), b64);
    snprintf(hdr, sizeof hdr, "Sec-WebSocket-Protocol: phoenix, base64url.bearer.phx.%s\r\n",
             b64);
    cr_assert_eq(ws("/socket/websocket?vsn=2.0.0", hdr, &a, &msg), 0, "%s", msg);
    cr_assert_str_eq(a.user, "alice");
    cr_assert_str_eq(a.subprotocol, "phoenix");
    web_ws_auth_free(&a);

    cr_assert_eq(ws("/socket/websocket?vsn=2.0.0", NULL, &a, &msg), 403);
    cr_assert_str_eq(msg, "missing token");
    char *old = mint("alice", now - 10, SECRET);
    snprintf(target, sizeof target, "/socket/websocket?token=%s", old);
    cr_assert_eq(ws(target, NULL, &a, &msg), 403);
    cr_assert_str_eq(msg, "token expired");
    char *forged = mint("alice", now + 60, "other");
    snprintf(target, sizeof target, "/socket/websocket?token=%s", forged);
    cr_assert_eq(ws(target, NULL, &a, &msg), 403);
    cr_assert_eq(ws("/socket/websocket?token=garbage", NULL, &a, &msg), 403);
    snprintf(target, sizeof target, "/socket/websocket?token=%s&vsn=3.0.0", good);
    cr_assert_eq(ws(target, NULL, &a, &msg), 400);
    snprintf(target, sizeof target, "/socket/other?token=%s", good);
    cr_assert_eq(ws(target, NULL, &a, &msg), 404);
    char *nosub = mint("", now + 60, SECRET);
    snprintf(target, sizeof target, "/socket/websocket?token=%s", nosub);
    cr_assert_eq(ws(target, NULL, &a, &msg), 403);
    free(good);
    free(noexp);
    free(old);
    free(forged);
    free(nosub);
}

Test(web_api, ws_auth)
{
    ws_auth_checks();
}

/* The same answers with the secret prepared once, as the endpoint runs;
 * /api/tokens signs with it too. */
Test(web_api, ws_auth_prepared_key)
{
    jwt_key_t *k = NULL;
    cr_assert_eq(jwt_key_new(SECRET, strlen(SECRET), &k), JWT_OK);
    api.jwt_key = k;
    ws_auth_checks();
    int64_t now = (int64_t)time(NULL);
    cr_assert_eq(call("POST", "/api/tokens", AUTH, "{\"sub\":\"alice\",\"ttl\":60}"), 200);
    const char *t = json_string_value(json_object_get(body, "token"));
    cr_assert_not_null(t);
    json_t *claims = NULL;
    cr_assert_eq(jwt_verify(SECRET, strlen(SECRET), t, strlen(t), now, &claims), JWT_OK);
    cr_assert_str_eq(json_string_value(json_object_get(claims, "sub")), "alice");
    json_decref(claims);
    api.jwt_key = NULL;
    jwt_key_free(k);
}

Test(web_api, secret_equal)
{
    cr_assert(web_secret_equal("abc", 3, "abc", 3));
    cr_assert_not(web_secret_equal("abc", 3, "abd", 3));
    cr_assert_not(web_secret_equal("abc", 3, "abcd", 4));
    cr_assert_not(web_secret_equal("", 0, "a", 1));
}

/* ---- answers that come later ---- */

static int later_calls, later_frees;
static void later_fn(void *ctx, rt_msg_t *m, web_api_response_t *r)
{
    later_calls++;
    web_api_json(r, 200, json_pack("{sI}", "ref", (json_int_t)m->ref));
}
static void later_free(void *ctx)
{
    later_frees++;
}

Test(web_api, deferred_answer)
{
    /* The test thread is no process: its pid is RT_NOPID. */
    cr_assert_eq(web_api_defer(42, later_fn, NULL, later_free), WEB_OK);
    rt_msg_t *m = rt_msg_new(1);
    m->ref = 43;
    cr_assert_not(web_api_handle_info(m, &res));
    m->ref = 42;
    cr_assert(web_api_handle_info(m, &res));
    cr_assert_eq(res.status, 200);
    cr_assert_eq(later_calls, 1);
    cr_assert_eq(later_frees, 1);
    cr_assert_not(web_api_handle_info(m, &res), "answered once only");
    rt_msg_free(m);
    /* A waiting connection that died is swept by the next defer. */
    cr_assert_eq(web_api_defer(7, later_fn, NULL, later_free), WEB_OK);
    cr_assert_eq(web_api_defer(8, later_fn, NULL, later_free), WEB_OK);
    cr_assert_eq(later_frees, 2);
    m = rt_msg_new(1);
    m->ref = 8;
    web_api_response_free(&res);
    cr_assert(web_api_handle_info(m, &res));
    rt_msg_free(m);
    cr_assert_eq(later_frees, 3);
}
