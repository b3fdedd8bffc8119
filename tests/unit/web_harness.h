/*
 * web_harness.h — the fake connection that hosts Phoenix sockets in the
 * web layer's unit tests: a client whose outbound frames are captured,
 * pumped through the runtime, parsed back as JSON. Included by exactly one
 * .c per test binary (test_web_socket.c, test_web_presence.c); every
 * helper is static and marked unused.
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
    json_t *claims = json_pack("{ss}", "sub", h->user);
    web_socket_config_t cfg = {
        .vsn = h->vsn, .router = &router, .user = h->user, .claims = claims,
        .out = {.send_text = cap_text, .send_frame = cap_frame, .close = cap_close, .ctx = h},
    };
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

HARNESS host_t *host_new(phx_vsn_t vsn, const char *user)
{
    host_t *h = calloc(1, sizeof *h);
    h->vsn = vsn;
    h->user = user;
    rt_spawn_opts_t o = {.exec = &ex};
    cr_assert_eq(rt_spawn(&host_beh, h, &o, &h->pid), RT_OK);
    pump();
    cr_assert_not_null(h->s);
    return h;
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

#endif
