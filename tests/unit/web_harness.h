/*
 * web_harness.h — the fake connection that hosts Phoenix sockets in the
 * web layer's unit tests: a client whose outbound frames are captured,
 * pumped through the runtime, parsed back as JSON. Included by exactly one
 * .c per test binary (test_web_socket.c, test_web_presence.c,
 * test_web_presence_table.c); every helper is static and marked unused.
 */
#ifndef ROOST_TEST_WEB_HARNESS_H
#define ROOST_TEST_WEB_HARNESS_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "rt/rt.h"
#include "web/channel.h"
#include "web/socket.h"

/* ---- Harness ----------------------------------------------------------------
 * Shared by the test_web_*.c files that host sockets. */
#define HARNESS static __attribute__((unused))

typedef struct out_item {
    char *text;
    bool frame;        /* came through send_frame (the shared lane) */
    const rt_buf_t *buf;
} out_item_t;

#define OUT_MAX 512
typedef struct host {
    phx_vsn_t vsn;
    const char *user;
    web_socket_t *s;
    rt_pid_t pid;
    out_item_t out[OUT_MAX];
    size_t n, rd;
    int close_code;
    char close_reason[128];
    json_t *claims;    /* NULL: {"sub": user} */
    web_socket_out_t output; /* send_text etc.; zero: the capturing ones */
    const web_channel_router_t *router; /* NULL: the file's */
} host_t;

static rt_exec_t ex;
static web_channel_router_t router;

static void ex_wake(rt_exec_t *e) { (void)e; }

static int cap_text(void *ctx, const char *data, size_t len)
{
    host_t *h = ctx;
    if (h->n < OUT_MAX)
        h->out[h->n++] = (out_item_t){.text = strndup(data, len)};
    return 0;
}

static int cap_frame(void *ctx, rt_buf_t *f)
{
    host_t *h = ctx;
    const uint8_t *p = (const uint8_t *)f->data;
    size_t hl = (p[1] & 0x7f) < 126 ? 2 : (p[1] & 0x7f) == 126 ? 4 : 10;
    if (h->n < OUT_MAX)
        h->out[h->n++] = (out_item_t){.text = strndup(f->data + hl, f->len - hl),
                                      .frame = true, .buf = f};
    return 0;
}

static void cap_close(void *ctx, int code, const char *reason)
{
    host_t *h = ctx;
    h->close_code = code;
    snprintf(h->close_reason, sizeof h->close_reason, "%s", reason ? reason : "");
}

static rt_reason_t *host_init(void *arg, void **state)
{
    host_t *h = arg;
    json_t *claims = h->claims ? json_incref(h->claims) : json_pack("{ss}", "sub", h->user);
    web_socket_config_t cfg = {
        .vsn = h->vsn, .router = h->router ? h->router : &router, .user = h->user,
        .claims = claims,
        .out = {.send_text = cap_text, .send_frame = cap_frame, .close = cap_close, .ctx = h},
    };
    if (h->output.send_text) {
        cfg.out = h->output;
        cfg.out.ctx = h;
    }
    h->s = web_socket_new(&cfg);
    json_decref(claims);
    *state = h;
    return h->s ? NULL : rt_reason_new("no socket");
}

static void host_info(void *state, rt_msg_t *m)
{
    host_t *h = state;
    if (h->s)
        web_socket_handle_info(h->s, m);
}

static void host_terminate(void *state, rt_reason_t *r)
{
    host_t *h = state;
    web_socket_free(h->s);
    h->s = NULL;
}

static const rt_behaviour_t host_beh = RT_BEHAVIOUR(
    .name = "test_host", .init = host_init, .handle_info = host_info,
    .terminate = host_terminate);

/* Runs the executor until nothing is queued for a few rounds. */
HARNESS void pump(void)
{
    for (int idle = 0; idle < 20;) {
        if (rt_exec_run(&ex, 1000) == 0) {
            idle++;
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        } else {
            idle = 0;
        }
    }
}

/* A host with its own claims (borrowed until the socket is made), router
 * and output functions (ctx is set to the host); NULL: the defaults. */
HARNESS host_t *host_new_with(phx_vsn_t vsn, const char *user, json_t *claims,
                              const web_channel_router_t *r, const web_socket_out_t *out)
{
    host_t *h = calloc(1, sizeof *h);
    h->vsn = vsn;
    h->user = user;
    h->claims = claims;
    h->router = r;
    if (out)
        h->output = *out;
    rt_spawn_opts_t o = {.exec = &ex};
    cr_assert_eq(rt_spawn(&host_beh, h, &o, &h->pid), RT_OK);
    pump();
    cr_assert_not_null(h->s);
    return h;
}

HARNESS host_t *host_new(phx_vsn_t vsn, const char *user)
{
    return host_new_with(vsn, user, NULL, NULL, NULL);
}

typedef struct msg_arg {
    host_t *h;
    const char *data;
    bool text;
} msg_arg_t;

static void run_msg(void *state, void *arg)
{
    msg_arg_t *a = arg;
    web_socket_handle_message(a->h->s, a->text, a->data, strlen(a->data));
}

/* The client sends one text message; then the runtime settles. */
HARNESS void client(host_t *h, const char *text)
{
    msg_arg_t a = {h, text, true};
    cr_assert_eq(rt_exec_call(&ex, h->pid, run_msg, &a), RT_OK);
    pump();
}

HARNESS void client_binary(host_t *h, const char *data)
{
    msg_arg_t a = {h, data, false};
    cr_assert_eq(rt_exec_call(&ex, h->pid, run_msg, &a), RT_OK);
    pump();
}

static void run_free(void *state, void *arg)
{
    host_t *h = arg;
    web_socket_free(h->s);
    h->s = NULL;
    rt_stop(RT_NORMAL);
}

/* Closes the socket as the transport does: on_ws_closed, then the
 * connection process ends, both inside rt_exec_call. */
HARNESS void host_free(host_t *h)
{
    rt_exec_call(&ex, h->pid, run_free, h);
    pump();
    for (size_t i = 0; i < h->n; i++)
        free(h->out[i].text);
    free(h);
}

HARNESS size_t pending(const host_t *h)
{
    return h->n - h->rd;
}

/* Pumps until the client has at least n unread messages (or 3 s pass):
 * for answers that come from processes on the schedulers. */
HARNESS void await_msgs(host_t *h, size_t n)
{
    for (int i = 0; i < 3000 && pending(h) < n; i++) {
        rt_exec_run(&ex, 1000);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_geq(pending(h), n, "waited for %zu messages, have %zu", n, pending(h));
}

/* The next message the client received, parsed (caller json_decref). */
HARNESS json_t *next_json(host_t *h, out_item_t *item)
{
    cr_assert(h->rd < h->n, "expected another message to the client");
    out_item_t *it = &h->out[h->rd++];
    if (item)
        *item = *it;
    json_error_t err;
    json_t *j = json_loads(it->text, 0, &err);
    cr_assert_not_null(j, "client got invalid JSON: %s", it->text);
    return j;
}

/* Asserts the next message is [join_ref, ref, topic, event, payload]
 * (V2 form; V1 messages are converted). payload NULL: not checked. */
HARNESS void expect(host_t *h, const char *join_ref, const char *ref, const char *topic,
                    const char *event, const char *payload)
{
    out_item_t it;
    json_t *j = next_json(h, &it);
    json_t *jr, *r, *t, *e, *p;
    if (h->vsn == PHX_V2) {
        cr_assert(json_is_array(j) && json_array_size(j) == 5, "not a V2 message: %s", it.text);
        jr = json_array_get(j, 0);
        r = json_array_get(j, 1);
        t = json_array_get(j, 2);
        e = json_array_get(j, 3);
        p = json_array_get(j, 4);
    } else {
        cr_assert(json_is_object(j), "not a V1 message: %s", it.text);
        jr = json_object_get(j, "join_ref");
        r = json_object_get(j, "ref");
        t = json_object_get(j, "topic");
        e = json_object_get(j, "event");
        p = json_object_get(j, "payload");
        cr_assert(jr && r, "V1 message without ref/join_ref: %s", it.text);
    }
    if (join_ref)
        cr_assert_str_eq(json_string_value(jr) ? json_string_value(jr) : "(null)", join_ref,
                         "join_ref in %s", it.text);
    else
        cr_assert(json_is_null(jr), "join_ref not null in %s", it.text);
    if (ref)
        cr_assert_str_eq(json_string_value(r) ? json_string_value(r) : "(null)", ref,
                         "ref in %s", it.text);
    else
        cr_assert(json_is_null(r), "ref not null in %s", it.text);
    cr_assert_str_eq(json_string_value(t), topic, "topic in %s", it.text);
    cr_assert_str_eq(json_string_value(e), event, "event in %s", it.text);
    if (payload) {
        json_t *want = json_loads(payload, 0, NULL);
        cr_assert_not_null(want, "bad expected payload %s", payload);
        cr_assert(json_equal(want, p), "payload %s, wanted %s (in %s)",
                  json_dumps(p, JSON_COMPACT), payload, it.text);
        json_decref(want);
    }
    json_decref(j);
}

HARNESS void expect_none(host_t *h)
{
    cr_assert_eq(pending(h), 0, "unexpected message to the client: %s",
                 pending(h) ? h->out[h->rd].text : "");
}

#endif /* ROOST_TEST_WEB_HARNESS_H */
