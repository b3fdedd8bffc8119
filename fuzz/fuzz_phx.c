/*
 * libFuzzer target for web/phx: decode client text as V1 and as V2.
 *
 * Oracle beyond "no crash, no leak, no UB": whatever decodes re-encodes
 * (phx_encode, into a frame) and decodes back to the same message, in the
 * same version; and the frame header in front matches the JSON length.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"
#include "web/phx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void round_trip(phx_vsn_t v, const phx_msg_t *m, size_t headroom)
{
    phx_out_t o = {.headroom = headroom};
    int rc = phx_encode(v, m->join_ref, m->ref, m->topic, m->event, m->payload, &o);
    if (rc == PHX_E_NOMEM)
        return;
    if (rc != 0)
        abort(); /* decoded strings are valid UTF-8: encoding must work */
    size_t hl = ws_frame_header_len(o.json_len);
    if (o.frame + hl != (uint8_t *)o.json || o.frame_len != hl + o.json_len ||
        o.frame < o.base + headroom || o.frame[0] != 0x81 || o.json[o.json_len] != 0)
        abort();
    phx_msg_t b;
    rc = phx_decode(v, o.json, o.json_len, &b);
    if (rc == PHX_E_NOMEM) {
        phx_out_free(&o);
        return;
    }
    if (rc != 0 || !same(b.join_ref, m->join_ref) || !same(b.ref, m->ref) ||
        !same(b.topic, m->topic) || !same(b.event, m->event) ||
        !json_equal(b.payload, m->payload))
        abort();
    phx_msg_free(&b);
    phx_out_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    phx_vsn_t vs[2] = {PHX_V1, PHX_V2};
    for (int i = 0; i < 2; i++) {
        phx_msg_t m;
        int rc = phx_decode(vs[i], (const char *)data, size, &m);
        if (rc == 0) {
            if (!m.topic || !m.event || !m.payload || !m.root)
                abort();
            round_trip(vs[i], &m, size % 17);
            phx_msg_free(&m);
        } else if (m.root || m.payload || strlen(phx_strerror(rc)) > WS_CLOSE_REASON_MAX) {
            abort();
        }
    }
    /* vsn strings come from the query too */
    if (size < 32) {
        char vsn[32];
        memcpy(vsn, data, size);
        vsn[size] = '\0';
        phx_vsn_t v;
        (void)phx_vsn_parse(vsn, &v);
    }
    return 0;
}
