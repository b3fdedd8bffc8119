/*
 * libFuzzer target for the net/ws frame reader (client bytes in) and the
 * pieces of the writer the endpoint calls on what it read (pong, close
 * reply).
 *
 * Oracles beyond "no crash, no leak, no UB":
 *  - the same bytes fed whole and in pieces give the same events and the
 *    same error;
 *  - every text message and close reason delivered is valid UTF-8
 *    according to a separate, deliberately naive decoder written here;
 *  - every error maps to a close code the writer accepts.
 * The first byte sets a small max_message so 1009 is reachable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVS 256

typedef struct summary {
    int n;
    int err;
    uint64_t hash[MAX_EVS];
} summary_t;

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return (h ^ n) * 0x100000001b3ull;
}

/* Reference UTF-8 check: decode each code point, then judge it. */
static int naive_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static void use_event(const ws_event_t *ev)
{
    ws_frame_t f;
    if (ev->data[ev->len] != 0)
        abort();
    switch (ev->type) {
    case WS_EV_TEXT:
        if (!naive_utf8(ev->data, ev->len))
            abort();
        break;
    case WS_EV_PING:
        if (ws_frame_encode(WS_OP_PONG, ev->data, ev->len, &f) != 0)
            abort();
        ws_frame_free(&f);
        break;
    case WS_EV_CLOSE:
        if (!naive_utf8(ev->data, ev->len))
            abort();
        if (ws_close_reply(ev, &f) != 0)
            abort();
        ws_frame_free(&f);
        /* echoing the reason as well must work too */
        if (ev->close_code != WS_CLOSE_NO_STATUS &&
            ws_close_encode(ev->close_code, (const char *)ev->data, ev->len, &f) != 0)
            abort();
        if (ev->close_code != WS_CLOSE_NO_STATUS)
            ws_frame_free(&f);
        break;
    default:
        break;
    }
}

static summary_t run(size_t max, const uint8_t *data, size_t size, size_t step, int use)
{
    summary_t s = {0};
    ws_reader_t r;
    ws_reader_config_t cfg = {.max_message = max};
    ws_reader_init(&r, &cfg);
    size_t off = 0;
    while (off < size && !s.err) {
        size_t n = step ? step : size;
        if (n > size - off)
            n = size - off;
        size_t c = 0;
        while (c < n) {
            size_t used = 0;
            ws_event_t ev;
            int rc = ws_reader_feed(&r, data + off + c, n - c, &used, &ev);
            c += used;
            if (rc < 0) {
                s.err = rc;
                break;
            }
            if (rc == WS_NEED_MORE) {
                if (c != n)
                    abort();
                break;
            }
            uint64_t h = mix(0xcbf29ce484222325ull, ev.data, ev.len);
            uint8_t meta[3] = {(uint8_t)ev.type, (uint8_t)(ev.close_code >> 8),
                               (uint8_t)ev.close_code};
            if (s.n < MAX_EVS)
                s.hash[s.n] = mix(h, meta, 3);
            s.n++;
            if (use)
                use_event(&ev);
            if (ev.type == WS_EV_CLOSE) {
                s.err = 1; /* finished: nothing after close is read */
                break;
            }
        }
        off += n;
    }
    if (s.err < 0) {
        int code = ws_error_close_code(s.err);
        ws_frame_t f;
        if (code == 0 || ws_close_encode((uint16_t)code, ws_strerror(s.err),
                                         strlen(ws_strerror(s.err)), &f) != 0)
            abort();
        ws_frame_free(&f);
    }
    ws_reader_free(&r);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = data[0] & 0x80 ? WS_MAX_MESSAGE_DEFAULT : 1 + (size_t)data[0] * 3;
    size_t step = 1 + data[1] % 13;
    data += 2;
    size -= 2;
    summary_t whole = run(max, data, size, 0, 1);
    summary_t split = run(max, data, size, step, 0);
    if (whole.n != split.n || whole.err != split.err)
        abort();
    for (int i = 0; i < whole.n && i < MAX_EVS; i++)
        if (whole.hash[i] != split.hash[i])
            abort();
    if (ws_utf8_valid(data, size) != naive_utf8(data, size))
        abort();
    return 0;
}
