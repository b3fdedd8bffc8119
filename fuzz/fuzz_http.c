/*
 * libFuzzer target for net/http: the request parser and what the endpoint
 * does next with a request (header lookups, query parameters, the
 * WebSocket handshake checks, the error response).
 *
 * Oracle beyond "no crash, no leak, no UB": the same bytes fed whole and
 * fed in pieces (split at offsets taken from the input) must give the
 * same requests and the same error. The first input byte picks small
 * limits so the 431/413 paths are reached quickly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"
#include "net/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQS 64

typedef struct summary {
    int n;
    int err;
    size_t consumed;
    uint64_t hash[MAX_REQS];
} summary_t;

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return (h ^ n) * 0x100000001b3ull;
}

static uint64_t hash_req(const net_http_request_t *r)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = mix(h, r->method_name, strlen(r->method_name));
    h = mix(h, r->url, r->url_len);
    h = mix(h, r->path, r->path_len);
    h = mix(h, r->query, r->query_len);
    for (size_t i = 0; i < r->n_headers; i++) {
        h = mix(h, r->headers[i].name, r->headers[i].name_len);
        h = mix(h, r->headers[i].value, r->headers[i].value_len);
    }
    h = mix(h, r->body, r->body_len);
    uint8_t flags[2] = {r->keep_alive, r->upgrade};
    return mix(h, flags, 2);
}

/* What the endpoint will do with each request; results are not checked,
 * only that nothing misbehaves. */
static void use_req(const net_http_request_t *r)
{
    if (strlen(r->path) != r->path_len || strlen(r->query) != r->query_len)
        abort();
    (void)net_http_header_get(r, "host");
    (void)net_http_header_has_token(r, "connection", "upgrade");
    char *v = NULL;
    if (net_http_query_get(r->query, r->query_len, "token", &v, NULL) == 0) {
        if (strlen(v) > r->query_len)
            abort();
        free(v);
    }
    char acc[WS_ACCEPT_LEN + 1];
    (void)ws_handshake_check(r, acc);
    const char *proto;
    char *tok = NULL;
    if (ws_phoenix_protocol(r, &proto, &tok, NULL) == 0)
        free(tok);
}

/* Feed data split at the given cut points (sorted offsets). */
static summary_t run(const net_http_config_t *cfg, const uint8_t *data, size_t size,
                     const size_t *cuts, size_t ncuts, int use)
{
    summary_t s = {0};
    net_http_parser_t p;
    net_http_parser_init(&p, cfg);
    size_t start = 0;
    for (size_t c = 0; c <= ncuts && !s.err; c++) {
        size_t end = c < ncuts ? cuts[c] : size;
        if (end < start)
            end = start;
        const char *chunk = (const char *)data + start;
        size_t len = end - start, off = 0;
        while (off < len || len == 0) {
            size_t used = 0;
            int rc = net_http_parser_feed(&p, chunk + off, len - off, &used);
            off += used;
            s.consumed += used;
            if (rc < 0) {
                s.err = rc;
                break;
            }
            if (rc == NET_HTTP_REQUEST) {
                const net_http_request_t *r = net_http_parser_request(&p);
                if (s.n < MAX_REQS)
                    s.hash[s.n] = hash_req(r);
                s.n++;
                if (use)
                    use_req(r);
                continue;
            }
            if (off != len)
                abort(); /* NEED_MORE must consume everything */
            (void)net_http_parser_continue_due(&p);
            break;
        }
        start = end;
    }
    if (s.err) {
        net_http_buf_t b = {0};
        if (net_http_response_for_error(&b, s.err) != 0)
            abort();
        net_http_buf_free(&b);
    }
    net_http_parser_free(&p);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    net_http_config_t cfg;
    net_http_config_default(&cfg);
    uint8_t sel = data[0];
    if (sel & 1) {
        cfg.max_header = 64 + (sel >> 1) * 8u;
        cfg.max_body = (sel >> 1) * 4u;
    }
    data++;
    size--;

    summary_t whole = run(&cfg, data, size, NULL, 0, 1);

    /* Cut points derived from the input itself, so the fuzzer steers them. */
    size_t cuts[16], n = 0;
    uint64_t h = mix(0x9e3779b97f4a7c15ull, data, size);
    for (size_t i = 0; i < 16 && size; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        cuts[n++] = (size_t)(h >> 33) % (size + 1);
    }
    for (size_t i = 1; i < n; i++) /* insertion sort */
        for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    summary_t split = run(&cfg, data, size, cuts, n, 0);

    if (whole.n != split.n || whole.err != split.err)
        abort();
    for (int i = 0; i < whole.n && i < MAX_REQS; i++)
        if (whole.hash[i] != split.hash[i])
            abort();
    if (!whole.err && whole.consumed != size)
        abort();
    return 0;
}
