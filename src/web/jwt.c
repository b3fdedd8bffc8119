/*
 * web/jwt.c — HS256 JWT signing and verification (see web/jwt.h).
 *
 * The MAC: with a plain secret, OpenSSL's one-shot HMAC(), which looks
 * the digest up, keys a fresh context (two SHA-256 blocks of padded key)
 * and frees it, every time: ~22,600 instructions a token, more than the
 * MAC itself. A jwt_key_t does the keying once: it holds two SHA-256
 * contexts that have absorbed (key XOR ipad) and (key XOR opad), and a
 * MAC copies them (EVP_MD_CTX_copy_ex) and hashes only the message
 * (RFC 2104 computed by hand; same bytes as HMAC()). The templates are
 * only ever read after jwt_key_new: EVP_MD_CTX_copy_ex takes its source
 * as const and does not change it (its digest's reference count is
 * atomic), which openssl-threads(7) makes the condition for sharing an
 * object between threads; so each thread copies into its own context
 * and none locks. CRYPTO_memcmp() compares MACs in constant time.
 *
 * jansson parses and prints the JSON parts. The header roost mints is
 * always the same text, so a token carrying exactly its encoding skips
 * decoding and parsing it (its content is known); any other header is
 * parsed and checked as before. Base64url is done here because
 * libcrypto only has the padded standard alphabet and is lenient about
 * what it decodes.
 */
#include "web/jwt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIG_LEN 32   /* SHA-256 */
#define HMAC_BLOCK 64 /* SHA-256's block: HMAC pads the key to it */

/* The only header jwt_sign writes, {"alg":"HS256","typ":"JWT"}, in
 * base64url (test_web_jwt checks the two agree): a token that starts with
 * exactly these characters has alg HS256, no crit and no duplicate
 * names. */
static const char std_header64[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

struct jwt_key {
    EVP_MD_CTX *inner; /* SHA-256 after (K0 XOR ipad); read-only */
    EVP_MD_CTX *outer; /* SHA-256 after (K0 XOR opad); read-only */
};

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

/* The MAC of data under key if key is not NULL, else under secret. */
static int hs256(const jwt_key_t *key, const void *secret, size_t secret_len, const char *data,
                 size_t len, uint8_t mac[SIG_LEN])
{
    unsigned int mlen = 0;
    if (key) {
        /* HMAC = H((K0 ^ opad) || H((K0 ^ ipad) || data)), the two
         * prefixes already absorbed by the key's contexts. */
        uint8_t inner[SIG_LEN];
        unsigned int ilen = 0;
        EVP_MD_CTX *x = EVP_MD_CTX_new();
        bool ok = x && EVP_MD_CTX_copy_ex(x, key->inner) && EVP_DigestUpdate(x, data, len) &&
                  EVP_DigestFinal_ex(x, inner, &ilen) && ilen == SIG_LEN &&
                  EVP_MD_CTX_copy_ex(x, key->outer) && EVP_DigestUpdate(x, inner, SIG_LEN) &&
                  EVP_DigestFinal_ex(x, mac, &mlen) && mlen == SIG_LEN;
        EVP_MD_CTX_free(x);
        if (!ok) {
            ERR_clear_error(); /* reported as our code; leave the queue clean */
            return JWT_E_NOMEM;
        }
        return 0;
    }
    if (secret_len > INT32_MAX)
        return JWT_E_ARG;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, len,
              mac, &mlen) || mlen != SIG_LEN) {
        ERR_clear_error();
        return JWT_E_NOMEM;
    }
    return 0;
}

/* A SHA-256 context that has absorbed K0 XOR pad (K0: the key padded to
 * the block, RFC 2104 step 1), or NULL on failure. */
static EVP_MD_CTX *keyed_half(const uint8_t k0[HMAC_BLOCK], uint8_t pad)
{
    uint8_t block[HMAC_BLOCK];
    for (int i = 0; i < HMAC_BLOCK; i++)
        block[i] = k0[i] ^ pad;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    if (x && !(EVP_DigestInit_ex(x, EVP_sha256(), NULL) &&
               EVP_DigestUpdate(x, block, HMAC_BLOCK))) {
        EVP_MD_CTX_free(x);
        x = NULL;
    }
    OPENSSL_cleanse(block, sizeof block);
    return x;
}

int jwt_key_new(const void *secret, size_t secret_len, jwt_key_t **key)
{
    if (!secret || !secret_len)
        return JWT_E_ARG;
    /* K0: a key longer than the block is hashed first, then every key is
     * padded with zeros to the block. */
    uint8_t k0[HMAC_BLOCK] = {0};
    if (secret_len > HMAC_BLOCK) {
        unsigned int n = 0;
        if (!EVP_Digest(secret, secret_len, k0, &n, EVP_sha256(), NULL)) {
            ERR_clear_error();
            return JWT_E_NOMEM;
        }
    } else {
        memcpy(k0, secret, secret_len);
    }
    jwt_key_t *k = calloc(1, sizeof *k);
    if (k) {
        k->inner = keyed_half(k0, 0x36);
        k->outer = keyed_half(k0, 0x5c);
    }
    OPENSSL_cleanse(k0, sizeof k0);
    if (!k || !k->inner || !k->outer) {
        jwt_key_free(k);
        ERR_clear_error();
        return JWT_E_NOMEM;
    }
    *key = k;
    return JWT_OK;
}

void jwt_key_free(jwt_key_t *key)
{
    if (!key)
        return;
    EVP_MD_CTX_free(key->inner);
    EVP_MD_CTX_free(key->outer);
    free(key);
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

static int sign(const jwt_key_t *key, const void *secret, size_t secret_len,
                const json_t *claims, char **token)
{
    if (!json_is_object(claims))
        return JWT_E_ARG;
    size_t bl;
    char *body = dump_compact(claims, &bl);
    if (!body)
        return JWT_E_NOMEM;
    size_t h64 = sizeof std_header64 - 1, b64 = (bl * 4 + 2) / 3, s64 = (SIG_LEN * 4 + 2) / 3;
    char *t = malloc(h64 + 1 + b64 + 1 + s64 + 1);
    if (!t) {
        free(body);
        return JWT_E_NOMEM;
    }
    memcpy(t, std_header64, h64);
    size_t o = h64;
    t[o++] = '.';
    o += jwt_b64url_encode(body, bl, t + o);
    free(body);
    uint8_t mac[SIG_LEN];
    int rc = hs256(key, secret, secret_len, t, o, mac);
    if (rc) {
        free(t);
        return rc;
    }
    t[o++] = '.';
    jwt_b64url_encode(mac, SIG_LEN, t + o);
    *token = t;
    return 0;
}

int jwt_sign(const void *secret, size_t secret_len, const json_t *claims, char **token)
{
    if (!secret || !secret_len)
        return JWT_E_ARG;
    return sign(NULL, secret, secret_len, claims, token);
}

int jwt_sign_key(const jwt_key_t *key, const json_t *claims, char **token)
{
    if (!key)
        return JWT_E_ARG;
    return sign(key, NULL, 0, claims, token);
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

static int verify(const jwt_key_t *key, const void *secret, size_t secret_len, const char *token,
                  size_t token_len, int64_t now, json_t **claims)
{
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
    size_t h64 = (size_t)(d1 - token);
    /* The header roost mints is canonical base64url of HS256 already. */
    bool std_hdr = h64 == sizeof std_header64 - 1 && memcmp(token, std_header64, h64) == 0;
    int rc = std_hdr ? 0 : part_decode(token, h64, &hraw, &hn);
    if (!rc)
        rc = part_decode(d1 + 1, (size_t)(d2 - d1 - 1), &craw, &cn);
    if (rc)
        goto out;

    /* The algorithm is ours to choose: anything but HS256 is refused
     * before the signature is even looked at. */
    if (!std_hdr) {
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
    }

    if (n != SIG_LEN) {
        rc = JWT_E_SIGNATURE;
        goto out;
    }
    rc = hs256(key, secret, secret_len, token, (size_t)(d2 - token), mac);
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

int jwt_verify(const void *secret, size_t secret_len, const char *token,
               size_t token_len, int64_t now, json_t **claims)
{
    if (!secret || !secret_len || !token)
        return JWT_E_ARG;
    return verify(NULL, secret, secret_len, token, token_len, now, claims);
}

int jwt_verify_key(const jwt_key_t *key, const char *token, size_t token_len, int64_t now,
                   json_t **claims)
{
    if (!key || !token)
        return JWT_E_ARG;
    return verify(key, NULL, 0, token, token_len, now, claims);
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
