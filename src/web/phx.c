/*
 * web/phx.c — Phoenix Channels V1/V2 messages (see web/phx.h).
 *
 * Decoding reads JSON with domain/rjson's reader (jansson's values,
 * jansson's verdicts, a fraction of json_loadb's cost) and checks the
 * envelope. Encoding
 * does not build a json_t envelope: it writes the brackets, commas and
 * escaped strings itself and lets jansson dump only the payload, into a
 * block with WS_FRAME_HEADER_MAX spare bytes in front, so the frame
 * header can be written right before the JSON once its length is known.
 */
#include "web/phx.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "domain/rjson.h"

#include "net/ws.h"

/* ---- decoding --------------------------------------------------------- */

int phx_vsn_parse(const char *vsn, phx_vsn_t *out)
{
    if (!vsn || !vsn[0]) {
        *out = PHX_V1;
        return 0;
    }
    unsigned long part[3];
    const char *s = vsn;
    for (int i = 0; i < 3; i++) {
        if (*s < '0' || *s > '9')
            return PHX_E_VSN;
        char *end;
        part[i] = strtoul(s, &end, 10);
        s = end;
        if (i < 2) {
            if (*s != '.')
                return PHX_E_VSN;
            s++;
        }
    }
    if (*s)
        return PHX_E_VSN;
    if (part[0] == 1) {
        *out = PHX_V1;
        return 0;
    }
    if (part[0] == 2 && part[1] == 0) {
        *out = PHX_V2;
        return 0;
    }
    return PHX_E_VSN;
}

/* A ref: string -> its value, null (or absent, x NULL) -> NULL. */
static bool opt_string(const json_t *x, const char **out)
{
    if (!x || json_is_null(x)) {
        *out = NULL;
        return true;
    }
    if (!json_is_string(x))
        return false;
    *out = json_string_value(x);
    return true;
}

static int decode_v2(json_t *root, phx_msg_t *m)
{
    if (!json_is_array(root))
        return PHX_E_NOT_ARRAY;
    if (json_array_size(root) != 5)
        return PHX_E_ARITY;
    if (!opt_string(json_array_get(root, 0), &m->join_ref))
        return PHX_E_JOIN_REF;
    if (!opt_string(json_array_get(root, 1), &m->ref))
        return PHX_E_REF;
    json_t *t = json_array_get(root, 2), *e = json_array_get(root, 3);
    if (!json_is_string(t))
        return PHX_E_TOPIC;
    if (!json_is_string(e))
        return PHX_E_EVENT;
    m->topic = json_string_value(t);
    m->event = json_string_value(e);
    m->payload = json_array_get(root, 4);
    return 0;
}

static int decode_v1(json_t *root, phx_msg_t *m)
{
    if (!json_is_object(root))
        return PHX_E_NOT_OBJECT;
    json_t *t = json_object_get(root, "topic"), *e = json_object_get(root, "event");
    if (!json_is_string(t))
        return PHX_E_TOPIC;
    if (!json_is_string(e))
        return PHX_E_EVENT;
    if (!opt_string(json_object_get(root, "join_ref"), &m->join_ref))
        return PHX_E_JOIN_REF;
    if (!opt_string(json_object_get(root, "ref"), &m->ref))
        return PHX_E_REF;
    m->payload = json_object_get(root, "payload");
    if (!m->payload)
        return PHX_E_PAYLOAD;
    m->topic = json_string_value(t);
    m->event = json_string_value(e);
    return 0;
}

int phx_decode(phx_vsn_t vsn, const char *data, size_t len, phx_msg_t *msg)
{
    memset(msg, 0, sizeof *msg);
    if (!data || (vsn != PHX_V1 && vsn != PHX_V2))
        return PHX_E_ARG;
    /* DECODE_ANY: a bare scalar is valid JSON, just not a message.
     * rjson's reader accepts what json_loadb accepts (fuzzed against it)
     * at a fraction of the cost: jansson's was ~18,000 instructions for a
     * 60-byte status push, the largest cost on the I/O thread. */
    bool nomem = false;
    json_t *root = room_json_load(data, len, JSON_DECODE_ANY, &nomem);
    if (!root)
        return nomem ? PHX_E_NOMEM : PHX_E_JSON;
    phx_msg_t m = {0};
    int rc = vsn == PHX_V2 ? decode_v2(root, &m) : decode_v1(root, &m);
    if (rc) {
        json_decref(root);
        return rc;
    }
    m.root = root;
    *msg = m;
    return 0;
}

void phx_msg_free(phx_msg_t *msg)
{
    json_decref(msg->root);
    memset(msg, 0, sizeof *msg);
}

const char *phx_strerror(int err)
{
    switch (err) {
    case PHX_OK: return "ok";
    case PHX_E_NOMEM: return "out of memory";
    case PHX_E_ARG: return "invalid argument";
    case PHX_E_JSON: return "message is not valid JSON";
    case PHX_E_NOT_ARRAY: return "message must be a JSON array [join_ref, ref, topic, event, payload]";
    case PHX_E_ARITY: return "message array must have exactly 5 elements";
    case PHX_E_NOT_OBJECT: return "message must be a JSON object";
    case PHX_E_JOIN_REF: return "join_ref must be a string or null";
    case PHX_E_REF: return "ref must be a string or null";
    case PHX_E_TOPIC: return "topic must be a string";
    case PHX_E_EVENT: return "event must be a string";
    case PHX_E_PAYLOAD: return "payload is missing";
    case PHX_E_VSN: return "unsupported vsn";
    default: return "unknown error";
    }
}

/* ---- encoding --------------------------------------------------------- */

typedef struct obuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} obuf_t;

static bool ob_grow(obuf_t *b, size_t n)
{
    if (b->oom)
        return false;
    if (n <= b->cap - b->len)
        return true;
    size_t ncap = b->cap;
    while (n > ncap - b->len) {
        if (ncap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        ncap *= 2;
    }
    uint8_t *np = realloc(b->p, ncap);
    if (!np) {
        b->oom = true;
        return false;
    }
    b->p = np;
    b->cap = ncap;
    return true;
}

static void ob_put(obuf_t *b, const void *s, size_t n)
{
    if (!ob_grow(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void ob_lit(obuf_t *b, const char *s)
{
    ob_put(b, s, strlen(s));
}

static int dump_cb(const char *s, size_t n, void *data)
{
    obuf_t *b = data;
    ob_put(b, s, n);
    return b->oom ? -1 : 0;
}

static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* Length of s as a JSON string literal, quotes included; "null" for NULL. */
static size_t json_str_len(const char *s)
{
    if (!s)
        return 4;
    size_t n = 2;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!needs_escape(c))
            n += 1;
        else if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' ||
                 c == '\b' || c == '\f')
            n += 2;
        else
            n += 6;
    }
    return n;
}

static void ob_json_str(obuf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s) {
        ob_lit(b, "null");
        return;
    }
    ob_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!needs_escape(c))
            continue;
        ob_put(b, run, (size_t)(s - run));
        run = s + 1;
        char e[6] = {'\\', 0};
        size_t el = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            el = 6;
        }
        ob_put(b, e, el);
    }
    ob_put(b, run, (size_t)(s - run));
    ob_put(b, "\"", 1);
}

static bool str_ok(const char *s, bool nullable)
{
    if (!s)
        return nullable;
    return ws_utf8_valid(s, strlen(s));
}

/* How the payload is written: a json_t, raw JSON text, or a reply. */
typedef struct payload_src {
    const json_t *json;     /* dumped; NULL means {} */
    const char *raw;        /* copied as is when not NULL */
    size_t raw_len;
    const char *status;     /* when not NULL: {"status":..,"response":json} */
} payload_src_t;

static void ob_payload(obuf_t *b, const payload_src_t *p)
{
    if (p->status) {
        ob_lit(b, "{\"status\":");
        ob_json_str(b, p->status);
        ob_lit(b, ",\"response\":");
    }
    if (p->raw)
        ob_put(b, p->raw, p->raw_len);
    else if (!p->json)
        ob_lit(b, "{}");
    else if (!b->oom && json_dump_callback(p->json, dump_cb, b,
                                           JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        b->oom = true;
    if (p->status)
        ob_put(b, "}", 1);
}

static int encode(phx_vsn_t vsn, const char *join_ref, const char *ref, const char *topic,
                  const char *event, const payload_src_t *p, phx_out_t *out)
{
    if ((vsn != PHX_V1 && vsn != PHX_V2) || !str_ok(topic, false) ||
        !str_ok(event, false) || !str_ok(join_ref, true) || !str_ok(ref, true) ||
        (p->status && !str_ok(p->status, false)) ||
        (p->raw && !ws_utf8_valid(p->raw, p->raw_len)))
        return PHX_E_ARG;

    /* Envelope size is known exactly; only a json_t payload is guessed. */
    size_t env = json_str_len(join_ref) + json_str_len(ref) + json_str_len(topic) +
                 json_str_len(event) + 64;
    if (p->status)
        env += json_str_len(p->status) + 24;
    size_t pl = p->raw ? p->raw_len : 256;
    size_t head = out->headroom + WS_FRAME_HEADER_MAX;
    if (head < out->headroom || pl > SIZE_MAX - head - env - 1)
        return PHX_E_NOMEM;

    obuf_t b = {.cap = head + env + pl + 1};
    b.p = malloc(b.cap);
    if (!b.p)
        return PHX_E_NOMEM;
    b.len = head;

    if (vsn == PHX_V2) {
        ob_put(&b, "[", 1);
        ob_json_str(&b, join_ref);
        ob_put(&b, ",", 1);
        ob_json_str(&b, ref);
        ob_put(&b, ",", 1);
        ob_json_str(&b, topic);
        ob_put(&b, ",", 1);
        ob_json_str(&b, event);
        ob_put(&b, ",", 1);
        ob_payload(&b, p);
        ob_put(&b, "]", 1);
    } else {
        ob_lit(&b, "{\"topic\":");
        ob_json_str(&b, topic);
        ob_lit(&b, ",\"event\":");
        ob_json_str(&b, event);
        ob_lit(&b, ",\"payload\":");
        ob_payload(&b, p);
        ob_lit(&b, ",\"ref\":");
        ob_json_str(&b, ref);
        ob_lit(&b, ",\"join_ref\":");
        ob_json_str(&b, join_ref);
        ob_put(&b, "}", 1);
    }
    ob_put(&b, "", 1); /* the NUL after the JSON */
    if (b.oom) {
        free(b.p);
        return PHX_E_NOMEM;
    }
    size_t json_len = b.len - head - 1;
    size_t hl = ws_frame_header_len(json_len);
    uint8_t *frame = b.p + head - hl;
    ws_frame_write_header(frame, WS_OP_TEXT, true, json_len);

    out->base = b.p;
    out->json = (char *)b.p + head;
    out->json_len = json_len;
    out->frame = frame;
    out->frame_len = hl + json_len;
    return 0;
}

int phx_encode(phx_vsn_t vsn, const char *join_ref, const char *ref, const char *topic,
               const char *event, const json_t *payload, phx_out_t *out)
{
    payload_src_t p = {.json = payload};
    return encode(vsn, join_ref, ref, topic, event, &p, out);
}

int phx_encode_raw(phx_vsn_t vsn, const char *join_ref, const char *ref,
                   const char *topic, const char *event, const char *payload_json,
                   size_t payload_len, phx_out_t *out)
{
    if (!payload_json)
        return PHX_E_ARG;
    payload_src_t p = {.raw = payload_json, .raw_len = payload_len};
    return encode(vsn, join_ref, ref, topic, event, &p, out);
}

int phx_reply(phx_vsn_t vsn, const char *join_ref, const char *ref, const char *topic,
              const char *status, const json_t *response, phx_out_t *out)
{
    if (!status)
        return PHX_E_ARG;
    payload_src_t p = {.json = response, .status = status};
    return encode(vsn, join_ref, ref, topic, "phx_reply", &p, out);
}

int phx_reply_raw(phx_vsn_t vsn, const char *join_ref, const char *ref, const char *topic,
                  const char *status, const char *response_json, size_t response_len,
                  phx_out_t *out)
{
    if (!status || !response_json)
        return PHX_E_ARG;
    payload_src_t p = {.raw = response_json, .raw_len = response_len, .status = status};
    return encode(vsn, join_ref, ref, topic, "phx_reply", &p, out);
}

void phx_out_free(phx_out_t *out)
{
    free(out->base);
    size_t headroom = out->headroom;
    memset(out, 0, sizeof *out);
    out->headroom = headroom;
}
