/*
 * web/channel.c — what every socket shares: broadcasts (encode once per
 * serializer version, write everywhere), the topic router, the web
 * layer's counters and error strings. The per-channel functions are in
 * socket.c, next to the socket state they act on (see web/channel.h).
 */
#include "web/channel.h"

#include <stdlib.h>
#include <string.h>

#include "net/ws.h"

_Atomic uint64_t web__stat[WEB__STAT_N];

const char *web_strerror(int err)
{
    switch (err) {
    case WEB_OK: return "ok";
    case WEB_E_NOMEM: return "out of memory";
    case WEB_E_ARG: return "invalid argument";
    case WEB_E_STATE: return "wrong channel state";
    case WEB_E_NOTFOUND: return "not found";
    case WEB_E_LIMIT: return "limit reached";
    case WEB_E_CLOSED: return "socket closing";
    default: return rt_strerror(err);
    }
}

const char *web_ch_exit_name(web_ch_exit_t why)
{
    switch (why) {
    case WEB_CH_LEFT: return "left";
    case WEB_CH_JOIN_FAILED: return "join_failed";
    case WEB_CH_CLOSED: return "closed";
    case WEB_CH_CRASHED: return "crashed";
    case WEB_CH_REPLACED: return "replaced";
    case WEB_CH_SOCKET_CLOSED: return "socket_closed";
    }
    return "unknown";
}

/* ---- broadcasts ------------------------------------------------------------ */

static void broadcast_free(rt_rc_t *rc)
{
    web_broadcast_t *b = RT_CONTAINER_OF(rc, web_broadcast_t, rc);
    /* Last reference: no other thread can be installing a frame. */
    for (int i = 0; i < 2; i++) {
        rt_buf_t *f = atomic_load_explicit(&b->frame[i], memory_order_acquire);
        if (f)
            rt_buf_release(f);
    }
    free(b);
}

web_broadcast_t *web_broadcast_new(const char *topic, const char *event,
                                   const char *payload_json, size_t payload_len)
{
    if (!topic || !event || !payload_json)
        return NULL;
    size_t tl = strlen(topic), el = strlen(event);
    if (!ws_utf8_valid(topic, tl) || !ws_utf8_valid(event, el) ||
        !ws_utf8_valid(payload_json, payload_len) ||
        payload_len > SIZE_MAX - sizeof(web_broadcast_t) - tl - el - 3)
        return NULL;
    /* One block: the header, then topic, event and payload, each with a NUL. */
    web_broadcast_t *b = malloc(sizeof *b + tl + el + payload_len + 3);
    if (!b)
        return NULL;
    char *p = (char *)(b + 1);
    memcpy(p, topic, tl + 1);
    b->topic = p;
    p += tl + 1;
    memcpy(p, event, el + 1);
    b->event = p;
    p += el + 1;
    memcpy(p, payload_json, payload_len);
    p[payload_len] = '\0';
    b->payload = p;
    b->payload_len = payload_len;
    b->exclude = RT_NOPID;
    atomic_init(&b->frame[0], NULL);
    atomic_init(&b->frame[1], NULL);
    rt_rc_init(&b->rc, broadcast_free);
    return b;
}

web_broadcast_t *web_broadcast_new_json(const char *topic, const char *event,
                                        const json_t *payload)
{
    if (!payload)
        return web_broadcast_new(topic, event, "{}", 2);
    char *js = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!js)
        return NULL;
    web_broadcast_t *b = web_broadcast_new(topic, event, js, strlen(js));
    free(js);
    return b;
}

static void frame_free(rt_rc_t *rc)
{
    free(RT_CONTAINER_OF(rc, rt_buf_t, rc));
}

/* Encodes the broadcast frame into one block that is also its rt_buf_t:
 * phx_encode_raw leaves `headroom` bytes free at the start of its block
 * and writes the frame a few bytes later (its header length depends on
 * the payload size); moving the frame down by those few bytes puts it
 * right after an rt_buf_t header at the block's start. One allocation. */
static rt_buf_t *encode_frame(const web_broadcast_t *b, phx_vsn_t vsn)
{
    phx_out_t o = {.headroom = offsetof(rt_buf_t, data)};
    if (phx_encode_raw(vsn, NULL, NULL, b->topic, b->event, b->payload, b->payload_len,
                       &o) != 0)
        return NULL;
    rt_buf_t *buf = (rt_buf_t *)(void *)o.base;
    size_t len = o.frame_len;
    memmove(buf->data, o.frame, len);
    buf->data[len] = '\0'; /* inside the block: the frame moved down */
    buf->len = len;
    rt_rc_init(&buf->rc, frame_free);
    atomic_fetch_add_explicit(&web__stat[WEB__STAT_FRAMES_ENCODED], 1, memory_order_relaxed);
    return buf;
}

rt_buf_t *web_broadcast_frame(web_broadcast_t *b, phx_vsn_t vsn)
{
    int i = vsn == PHX_V2 ? 1 : 0;
    /* Acquire pairs with the release of the CAS below: a frame seen here
     * is completely written. */
    rt_buf_t *f = atomic_load_explicit(&b->frame[i], memory_order_acquire);
    if (f)
        return f;
    f = encode_frame(b, i ? PHX_V2 : PHX_V1);
    if (!f)
        return NULL;
    rt_buf_t *expected = NULL;
    /* acq_rel: release publishes our frame's bytes; on failure acquire
     * makes the winner's bytes visible before we use them. */
    if (!atomic_compare_exchange_strong_explicit(&b->frame[i], &expected, f,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        rt_buf_release(f); /* another thread won the race: use its frame */
        f = expected;
    }
    return f;
}

int web_broadcast_publish(web_broadcast_t *b)
{
    return rt_publish(b->topic, WEB_MSG_BROADCAST, &b->rc);
}

int web_broadcast(const char *topic, const char *event, const json_t *payload)
{
    web_broadcast_t *b = web_broadcast_new_json(topic, event, payload);
    if (!b)
        return WEB_E_NOMEM;
    int n = web_broadcast_publish(b);
    web_broadcast_release(b);
    return n;
}

/* ---- router ---------------------------------------------------------------- */

int web_channel_router_add(web_channel_router_t *r, const web_channel_handler_t *h)
{
    if (!r || !h || h->abi != WEB_CHANNEL_HANDLER_ABI || !h->prefix || !h->prefix[0] || !h->join)
        return WEB_E_ARG;
    if (r->n >= WEB_ROUTER_MAX)
        return WEB_E_LIMIT;
    r->h[r->n++] = h;
    return WEB_OK;
}

const web_channel_handler_t *web_channel_route(const web_channel_router_t *r,
                                               const char *topic)
{
    for (size_t i = 0; r && i < r->n; i++) {
        size_t n = strlen(r->h[i]->prefix);
        if (strncmp(topic, r->h[i]->prefix, n) == 0)
            return r->h[i];
    }
    return NULL;
}

/* ---- JSON strings ------------------------------------------------------------ */

size_t web__json_quote_len(const char *s)
{
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += *p == '"' || *p == '\\' ? 2
             : *p >= 0x20                ? 1
             : strchr("\n\r\t\b\f", *p) ? 2
                                         : 6;
    return n;
}

void web__json_quote(const char *s, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            out[o++] = '\\';
            switch (c) {
            case '\n': out[o++] = 'n'; break;
            case '\r': out[o++] = 'r'; break;
            case '\t': out[o++] = 't'; break;
            case '\b': out[o++] = 'b'; break;
            case '\f': out[o++] = 'f'; break;
            default:
                out[o++] = 'u';
                out[o++] = '0';
                out[o++] = '0';
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 15];
            }
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '"';
}

/* ---- counters -------------------------------------------------------------- */

void web_channel_get_stats(web_channel_stats_t *out)
{
    memset(out, 0, sizeof *out);
#define LOAD(i) atomic_load_explicit(&web__stat[i], memory_order_relaxed)
    out->sockets = LOAD(WEB__STAT_SOCKETS);
    out->channels = LOAD(WEB__STAT_CHANNELS);
    out->joins = LOAD(WEB__STAT_JOINS);
    out->join_errors = LOAD(WEB__STAT_JOIN_ERRORS);
    out->crashes = LOAD(WEB__STAT_CRASHES);
    out->pushes_in = LOAD(WEB__STAT_PUSHES_IN);
    out->broadcasts_out = LOAD(WEB__STAT_BROADCASTS_OUT);
    out->frames_encoded = LOAD(WEB__STAT_FRAMES_ENCODED);
    out->bad_messages = LOAD(WEB__STAT_BAD_MESSAGES);
#undef LOAD
}
