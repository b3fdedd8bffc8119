/*
 * web/endpoint.c — the endpoint process and the net_app_t that joins the
 * transport to Phoenix sockets and the REST routes (see web/endpoint.h).
 */
#include "web/endpoint.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/ws.h"
#include "web/jwt.h"
#include "web/socket.h"

#define START_PENDING 1 /* start_rc while nobody knows yet */
#define EP_START_FAILED 0x57450001u

struct web_endpoint {
    web_endpoint_config_t cfg;
    char *secret, *api_key;
    unsigned char api_key_sha256[32]; /* api_key's digest, made once */
    jwt_key_t *jwt_key;     /* the secret, prepared once for every upgrade */
    web_api_t api;
    web_channel_router_t router;

    pthread_mutex_t mu;     /* guards what follows */
    pthread_cond_t cv;
    net_server_t *srv;      /* the running server, or NULL */
    int start_rc;           /* START_PENDING, RT_OK or the start error */
    int port;
    bool draining;          /* web_endpoint_drain is at work */
    bool drained;
};

void web_endpoint_config_default(web_endpoint_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    net_config_default(&cfg->net);
    cfg->drain_code = WS_CLOSE_RESTART;
    cfg->drain_batch = 500;
    cfg->drain_interval_ms = 100;
    cfg->drain_timeout_ms = 10000;
}

web_endpoint_t *web_endpoint_new(const web_endpoint_config_t *cfg)
{
    if (!cfg || !cfg->secret || !cfg->secret[0] || !cfg->api_key || !cfg->api_key[0])
        return NULL;
    web_endpoint_t *ep = calloc(1, sizeof *ep);
    if (!ep)
        return NULL;
    ep->cfg = *cfg;
    ep->secret = strdup(cfg->secret);
    ep->api_key = strdup(cfg->api_key);
    if (!ep->secret || !ep->api_key ||
        jwt_key_new(ep->secret, strlen(ep->secret), &ep->jwt_key) != JWT_OK) {
        free(ep->secret);
        free(ep->api_key);
        free(ep);
        return NULL;
    }
    ep->cfg.secret = ep->secret;
    ep->cfg.api_key = ep->api_key;
    web_api_key_digest(ep->api_key, ep->api_key_sha256);
    ep->api = (web_api_t){.secret = ep->secret, .secret_len = strlen(ep->secret),
                          .jwt_key = ep->jwt_key, .api_key = ep->api_key,
                          .api_key_sha256 = ep->api_key_sha256,
                          .version = cfg->version, .dev = cfg->dev, .started_ms = rt_now_ms()};
    web_channel_router_add(&ep->router, &web_user_channel);
    pthread_mutex_init(&ep->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ep->cv, &ca);
    pthread_condattr_destroy(&ca);
    ep->start_rc = START_PENDING;
    return ep;
}

void web_endpoint_free(web_endpoint_t *ep)
{
    if (!ep)
        return;
    pthread_mutex_destroy(&ep->mu);
    pthread_cond_destroy(&ep->cv);
    jwt_key_free(ep->jwt_key);
    free(ep->secret);
    free(ep->api_key);
    free(ep);
}

int web_endpoint_add_handler(web_endpoint_t *ep, const web_channel_handler_t *h)
{
    return web_channel_router_add(&ep->router, h);
}

/* ---- the net_app_t -------------------------------------------------------------- */

static web_endpoint_t *ep_of(net_conn_t *c)
{
    return net_server_app_data(net_conn_server(c));
}

static int out_text(void *ctx, const char *data, size_t len)
{
    return net_ws_send(ctx, true, data, len);
}

static int out_frame(void *ctx, rt_buf_t *frame)
{
    return net_ws_send_frame(ctx, frame);
}

static void out_close(void *ctx, int code, const char *reason)
{
    net_ws_close(ctx, code, reason);
}

static void respond(net_conn_t *c, web_api_response_t *res)
{
    int rc = net_respond(c, res->status, res->content_type,
                         res->headers[0] ? res->headers : NULL, res->body, res->len);
    if (rc != RT_OK && rc != NET_E_CLOSED)
        fprintf(stderr, "roost: cannot answer %s: %d\n", net_conn_peer(c), rc);
    web_api_response_free(res);
}

static void app_request(net_conn_t *c, const net_http_request_t *req)
{
    web_api_response_t res;
    if (web_api_handle(&ep_of(c)->api, net_conn_server(c), req, &res) == WEB_API_DONE)
        respond(c, &res);
}

static int app_ws_open(net_conn_t *c, const net_http_request_t *req, void **state,
                       const char **subprotocol, const char **message)
{
    web_endpoint_t *ep = ep_of(c);
    web_ws_auth_t a;
    int status = web_api_ws_auth(&ep->api, req, &a, message);
    if (status)
        return status;
    web_socket_config_t sc = {
        .vsn = a.vsn, .router = &ep->router, .user = a.user, .claims = a.claims,
        .out = {.send_text = out_text, .send_frame = out_frame, .close = out_close, .ctx = c},
    };
    web_socket_t *s = web_socket_new(&sc);
    *subprotocol = a.subprotocol; /* static */
    web_ws_auth_free(&a);
    if (!s) {
        *message = "out of memory";
        return 503;
    }
    *state = s;
    return 0;
}

static void app_ws_message(net_conn_t *c, void *state, bool text, const char *data, size_t len)
{
    web_socket_handle_message(state, text, data, len);
}

static void app_ws_closed(net_conn_t *c, void *state, int code)
{
    web_socket_free(state);
}

static void app_info(net_conn_t *c, void *state, rt_msg_t *m)
{
    if (state) {
        web_socket_handle_info(state, m);
        return;
    }
    web_api_response_t res;
    if (web_api_handle_info(m, &res))
        respond(c, &res);
}

static const net_app_t app = {
    .on_request = app_request,
    .on_ws_open = app_ws_open,
    .on_ws_message = app_ws_message,
    .on_ws_closed = app_ws_closed,
    .on_info = app_info,
};

/* ---- the endpoint process ------------------------------------------------------- */

typedef struct ep_proc {
    web_endpoint_t *ep;
    rt_pid_t self;
    pthread_t th;
} ep_proc_t;

static void *start_main(void *arg)
{
    ep_proc_t *st = arg;
    web_endpoint_t *ep = st->ep;
    net_config_t nc = ep->cfg.net;
    nc.app = &app;
    nc.app_data = ep;
    net_server_t *srv = NULL;
    int rc = net_server_start(&nc, &srv);
    pthread_mutex_lock(&ep->mu);
    ep->start_rc = rc;
    if (rc == RT_OK) {
        ep->srv = srv;
        ep->port = net_server_port(srv);
    }
    pthread_cond_broadcast(&ep->cv);
    pthread_mutex_unlock(&ep->mu);
    if (rc != RT_OK)
        rt_send(st->self, EP_START_FAILED, (uint64_t)(int64_t)rc, 0);
    return NULL;
}

static rt_reason_t *ep_init(void *arg, void **state)
{
    ep_proc_t *st = calloc(1, sizeof *st);
    if (!st)
        return rt_reason_new("enomem");
    st->ep = arg;
    st->self = rt_self();
    pthread_mutex_lock(&st->ep->mu);
    st->ep->start_rc = START_PENDING;
    st->ep->drained = false;
    pthread_mutex_unlock(&st->ep->mu);
    if (pthread_create(&st->th, NULL, start_main, st) != 0) {
        free(st);
        return rt_reason_new("cannot start the endpoint thread");
    }
    *state = st;
    return NULL;
}

static void ep_info(void *state, rt_msg_t *m)
{
    ep_proc_t *st = state;
    if (m->kind == RT_MSG_INFO && m->tag == EP_START_FAILED) {
        int rc = (int)(int64_t)m->a;
        rt_stop(rt_reason_fmt("cannot listen on %s:%d (%s)",
                              st->ep->cfg.net.host ? st->ep->cfg.net.host : "127.0.0.1",
                              st->ep->cfg.net.port,
                              rc == NET_E_BIND ? "address in use or not available"
                                               : rt_strerror(rc)));
    }
}

typedef struct stop_job {
    net_server_t *srv;
    bool drain;
    const web_endpoint_config_t *cfg;
} stop_job_t;

static void *stop_main(void *arg)
{
    stop_job_t *j = arg;
    if (j->drain) {
        net_server_stop_accepting(j->srv);
        net_server_drain(j->srv, j->cfg->drain_code, j->cfg->drain_batch,
                         j->cfg->drain_interval_ms, j->cfg->drain_timeout_ms);
    }
    net_server_free(j->srv);
    return NULL;
}

static void ep_terminate(void *state, rt_reason_t *reason)
{
    ep_proc_t *st = state;
    web_endpoint_t *ep = st->ep;
    pthread_join(st->th, NULL);
    pthread_mutex_lock(&ep->mu);
    while (ep->draining)
        pthread_cond_wait(&ep->cv, &ep->mu);
    stop_job_t j = {.srv = ep->srv, .drain = !ep->drained, .cfg = &ep->cfg};
    ep->srv = NULL;
    pthread_mutex_unlock(&ep->mu);
    if (j.srv) {
        /* net_server_* want a thread that is not a scheduler. */
        pthread_t th;
        if (pthread_create(&th, NULL, stop_main, &j) == 0)
            pthread_join(th, NULL);
        else
            stop_main(&j); /* no thread to be had: do it here */
    }
    free(st);
}

const rt_behaviour_t web_endpoint_behaviour = RT_BEHAVIOUR(
    .name = "endpoint", .init = ep_init, .handle_info = ep_info, .terminate = ep_terminate);

/* ---- main's side ---------------------------------------------------------------- */

int web_endpoint_wait_ready(web_endpoint_t *ep, int timeout_ms, int *port)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ep->mu);
    int rc = 0;
    while (ep->start_rc == START_PENDING && rc == 0)
        rc = pthread_cond_timedwait(&ep->cv, &ep->mu, &dl);
    int out = ep->start_rc == START_PENDING ? RT_ETIMEOUT : ep->start_rc;
    if (out == RT_OK && port)
        *port = ep->port;
    pthread_mutex_unlock(&ep->mu);
    return out;
}

void web_endpoint_drain(web_endpoint_t *ep)
{
    pthread_mutex_lock(&ep->mu);
    net_server_t *srv = ep->srv;
    if (!srv || ep->drained || ep->draining) {
        pthread_mutex_unlock(&ep->mu);
        return;
    }
    ep->draining = true;
    pthread_mutex_unlock(&ep->mu);

    net_server_stop_accepting(srv);
    net_server_drain(srv, ep->cfg.drain_code, ep->cfg.drain_batch, ep->cfg.drain_interval_ms,
                     ep->cfg.drain_timeout_ms);

    pthread_mutex_lock(&ep->mu);
    ep->draining = false;
    ep->drained = true;
    pthread_cond_broadcast(&ep->cv);
    pthread_mutex_unlock(&ep->mu);
}
