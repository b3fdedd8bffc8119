/*
 * web/jwt.c — HS256 JWT signing and verification (see web/jwt.h).
 *
 * OpenSSL's one-shot HMAC() computes the MAC and CRYPTO_memcmp() compares
 * it in constant time; jansson parses and prints the JSON parts. Base64url
 * is done here because libcrypto only has the padded standard alphabet
 * and is lenient about what it decodes.
 */
#include "web/jwt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIG_LEN 32 /* SHA-256 */

static const char b64url_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t jwt_b64url_encode(const void *data, size_t len, char *out)
{
    const uint8_t *s = data;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        out[o++] = b64url_digits[(v >> 18) & 63];
        out[o++] = b64url_digits[(v >> 12) & 63];
        out[o++] = b64url_digits[(v >> 6) & 63];
        out[o++] = b64url_digits[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        out[o++] = b64url_digits[(v >> 18) & 63];
        out[o++] = b64url_digits[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        out[o++] = b64url_digits[(v >> 18) & 63];
        out[o++] = b64url_digits[(v >> 12) & 63];
        out[o++] = b64url_digits[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

ptrdiff_t jwt_b64url_decode(const char *s, size_t len, void *out)
{
    uint8_t *d = out;
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be zero: one byte string, one encoding. */
    if (acc & ((1u << bits) - 1))
        return -1;
    return (ptrdiff_t)o;
}

static int hs256(const void *secret, size_t secret_len, const char *data, size_t len,
                 uint8_t mac[SIG_LEN])
{
    unsigned int mlen = 0;
    if (secret_len > INT32_MAX)
        return JWT_E_ARG;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, len,
              mac, &mlen) || mlen != SIG_LEN) {
        ERR_clear_error(); /* reported as our code; leave the queue clean */
        return JWT_E_NOMEM;
    }
    return 0;
}

/* json_dumps() cannot be trusted when memory runs out: jansson 2.14
 * ignores a failed write of an object key and carries on, returning JSON
 * with the key missing (found by the allocation-failure tests). This
 * callback is sticky: after one failure it refuses everything, and the
 * caller checks the flag. */
typedef struct dumpbuf {
    char *p;
    size_t len, cap;
    bool failed;
} dumpbuf_t;

static int dump_cb(const char *s, size_t n, void *data)
{
    dumpbuf_t *b = data;
    if (b->failed)
        return -1;
    if (n >= b->cap - b->len) {
        size_t ncap = b->cap ? b->cap : 128;
        while (n >= ncap - b->len && ncap <= SIZE_MAX / 2)
            ncap *= 2;
        char *np = n < ncap - b->len ? realloc(b->p, ncap) : NULL;
        if (!np) {
            b->failed = true;
            return -1;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Compact JSON of j as a new NUL-terminated string, or NULL. */
static char *dump_compact(const json_t *j, size_t *len)
{
    dumpbuf_t b = {0};
    if (json_dump_callback(j, dump_cb, &b, JSON_COMPACT) != 0 || b.failed ||
        dump_cb("", 1, &b) != 0) {
        free(b.p);
        return NULL;
    }
    *len = b.len - 1;
    return b.p;
}

int jwt_sign(const void *secret, size_t secret_len, const json_t *claims, char **token)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    if (!secret || !secret_len || !json_is_object(claims))
        return JWT_E_ARG;
    size_t bl;
    char *body = dump_compact(claims, &bl);
    if (!body)
        return JWT_E_NOMEM;
    size_t hl = sizeof header - 1;
    size_t h64 = (hl * 4 + 2) / 3, b64 = (bl * 4 + 2) / 3, s64 = (SIG_LEN * 4 + 2) / 3;
    char *t = malloc(h64 + 1 + b64 + 1 + s64 + 1);
    if (!t) {
        free(body);
        return JWT_E_NOMEM;
    }
    size_t o = jwt_b64url_encode(header, hl, t);
    t[o++] = '.';
    o += jwt_b64url_encode(body, bl, t + o);
    free(body);
    uint8_t mac[SIG_LEN];
    int rc = hs256(secret, secret_len, t, o, mac);
    if (rc) {
        free(t);
        return rc;
    }
    t[o++] = '.';
    jwt_b64url_encode(mac, SIG_LEN, t + o);
    *token = t;
    return 0;
}

/* Decode one base64url part into a new buffer (*raw, *n bytes). */
static int part_decode(const char *s, size_t len, uint8_t **raw, size_t *n)
{
    uint8_t *r = malloc(len * 3 / 4 + 1);
    if (!r)
        return JWT_E_NOMEM;
    ptrdiff_t d = jwt_b64url_decode(s, len, r);
    if (d < 0) {
        free(r);
        return JWT_E_MALFORMED;
    }
    *raw = r;
    *n = (size_t)d;
    return 0;
}

/* Parse decoded bytes as a JSON object; duplicate names are malformed. */
static int parse_object(const uint8_t *raw, size_t n, json_t **obj)
{
    json_error_t e;
    json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, &e);
    if (!j)
        return json_error_code(&e) == json_error_out_of_memory ? JWT_E_NOMEM
                                                               : JWT_E_MALFORMED;
    if (!json_is_object(j)) {
        json_decref(j);
        return JWT_E_MALFORMED;
    }
    *obj = j;
    return 0;
}

/* A NumericDate claim: absent (0), a number (1, *v set), or wrong (-1). */
static int numeric_date(const json_t *claims, const char *name, double *v)
{
    json_t *x = json_object_get(claims, name);
    if (!x)
        return 0;
    if (!json_is_number(x))
        return -1;
    *v = json_number_value(x);
    return 1;
}

int jwt_verify(const void *secret, size_t secret_len, const char *token,
               size_t token_len, int64_t now, json_t **claims)
{
    if (!secret || !secret_len || !token)
        return JWT_E_ARG;
    if (token_len > JWT_MAX_TOKEN)
        return JWT_E_MALFORMED;
    const char *d1 = memchr(token, '.', token_len);
    if (!d1)
        return JWT_E_MALFORMED;
    const char *end = token + token_len;
    const char *d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1));
    if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)))
        return JWT_E_MALFORMED;

    /* Shape first: all three parts must be canonical base64url. */
    uint8_t *hraw = NULL, *craw = NULL;
    size_t hn, cn;
    uint8_t sig[SIG_LEN + 3], mac[SIG_LEN];
    size_t sl = (size_t)(end - d2 - 1);
    ptrdiff_t n = sl <= (SIG_LEN * 4 + 2) / 3 ? jwt_b64url_decode(d2 + 1, sl, sig) : -2;
    if (n == -1)
        return JWT_E_MALFORMED;
    int rc = part_decode(token, (size_t)(d1 - token), &hraw, &hn);
    if (!rc)
        rc = part_decode(d1 + 1, (size_t)(d2 - d1 - 1), &craw, &cn);
    if (rc)
        goto out;

    /* The algorithm is ours to choose: anything but HS256 is refused
     * before the signature is even looked at. */
    json_t *hdr = NULL;
    rc = parse_object(hraw, hn, &hdr);
    if (rc)
        goto out;
    json_t *alg = json_object_get(hdr, "alg");
    bool alg_ok = json_is_string(alg) && json_string_length(alg) == 5 &&
                  strcmp(json_string_value(alg), "HS256") == 0 &&
                  !json_object_get(hdr, "crit");
    json_decref(hdr);
    if (!alg_ok) {
        rc = JWT_E_ALG;
        goto out;
    }

    if (n != SIG_LEN) {
        rc = JWT_E_SIGNATURE;
        goto out;
    }
    rc = hs256(secret, secret_len, token, (size_t)(d2 - token), mac);
    if (rc)
        goto out;
    if (CRYPTO_memcmp(sig, mac, SIG_LEN) != 0) {
        rc = JWT_E_SIGNATURE;
        goto out;
    }

    json_t *c = NULL;
    rc = parse_object(craw, cn, &c);
    if (rc)
        goto out;
    double exp, nbf;
    int has_exp = numeric_date(c, "exp", &exp);
    int has_nbf = numeric_date(c, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0)
        rc = JWT_E_MALFORMED;
    else if (has_exp && (double)now >= exp)
        rc = JWT_E_EXPIRED;
    else if (has_nbf && (double)now < nbf)
        rc = JWT_E_NOT_YET_VALID;
    if (rc)
        json_decref(c);
    else
        *claims = c;
out:
    free(hraw);
    free(craw);
    return rc;
}

const char *jwt_strerror(int err)
{
    switch (err) {
    case JWT_OK: return "ok";
    case JWT_E_NOMEM: return "out of memory";
    case JWT_E_ARG: return "invalid argument";
    case JWT_E_MALFORMED: return "malformed token";
    case JWT_E_ALG: return "unsupported token algorithm";
    case JWT_E_SIGNATURE: return "bad token signature";
    case JWT_E_EXPIRED: return "token expired";
    case JWT_E_NOT_YET_VALID: return "token not yet valid";
    default: return "unknown error";
    }
}
