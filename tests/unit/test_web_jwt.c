/*
 * Unit tests for web/jwt: known-answer tokens (RFC 7515 A.1 and one made
 * with an independent implementation), round trip, tampering, algorithm
 * confusion ("none", other algs), expiry, malformed tokens, base64url;
 * prepared keys (jwt_key_t): the same answers as the plain secret for
 * every key length HMAC treats differently, a changed secret, the
 * standard-header shortcut, many threads sharing one key.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "web/jwt.h"

#include "fault_harness.h"

static const char secret[] = "secret";
#define S secret, strlen(secret)

/* A token with any header and payload text, signed HS256 with key (or
 * with an empty signature if key is NULL). Caller frees. */
static char *make_token(const char *header, const char *payload, const char *key)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *t = malloc(hl * 2 + pl * 2 + 64);
    size_t o = jwt_b64url_encode(header, hl, t);
    t[o++] = '.';
    o += jwt_b64url_encode(payload, pl, t + o);
    t[o] = '\0';
    if (key) {
        unsigned char mac[32];
        unsigned int ml;
        HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)t, o, mac, &ml);
        t[o++] = '.';
        jwt_b64url_encode(mac, 32, t + o);
    } else {
        t[o++] = '.';
        t[o] = '\0';
    }
    return t;
}

static int verify(const char *tok, int64_t now, json_t **claims)
{
    return jwt_verify(S, tok, strlen(tok), now, claims);
}

Test(jwt, rfc7515_a1_vector)
{
    /* RFC 7515 Appendix A.1: HS256 with a 64-byte key (JWK "k"). */
    static const char k64[] =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    uint8_t key[64];
    cr_assert_eq(jwt_b64url_decode(k64, strlen(k64), key), 64);
    const char *tok =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    json_t *c = NULL;
    cr_assert_eq(jwt_verify(key, 64, tok, strlen(tok), 1300819379, &c), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), "joe");
    cr_assert(json_is_true(json_object_get(c, "http://example.com/is_root")));
    json_decref(c);
    /* one second later it has expired */
    cr_assert_eq(jwt_verify(key, 64, tok, strlen(tok), 1300819380, &c), JWT_E_EXPIRED);
}

Test(jwt, sign_known_answer)
{
    /* Made with Python's hmac/base64 from the same header and claims. */
    json_t *claims = json_pack("{s:s,s:s,s:I}", "sub", "alice", "room", "r1", "exp",
                               (json_int_t)1700000000);
    char *tok = NULL;
    cr_assert_eq(jwt_sign(S, claims, &tok), 0);
    cr_assert_str_eq(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                          "eyJzdWIiOiJhbGljZSIsInJvb20iOiJyMSIsImV4cCI6MTcwMDAwMDAwMH0."
                          "75klosxeSyyH6kx22kq_9xJOf1LvSDxYdpJT7bxbGqM");
    free(tok);
    json_decref(claims);
}

Test(jwt, round_trip)
{
    json_t *claims = json_pack("{s:s,s:s,s:I}", "sub", "bob", "room", "*", "exp",
                               (json_int_t)2000);
    char *tok;
    cr_assert_eq(jwt_sign(S, claims, &tok), 0);
    json_t *back = NULL;
    cr_assert_eq(verify(tok, 1999, &back), 0);
    cr_assert(json_equal(back, claims));
    cr_assert_eq(back->refcount, 1); /* ours alone */
    json_decref(back);
    free(tok);
    json_decref(claims);
}

Test(jwt, tampered_or_wrong_key)
{
    json_t *claims = json_pack("{s:s,s:s}", "sub", "alice", "room", "r1");
    char *tok;
    cr_assert_eq(jwt_sign(S, claims, &tok), 0);
    size_t len = strlen(tok);
    json_t *out = (json_t *)0x1;

    /* flip the last signature character (keeps it canonical base64url) */
    char *t = strdup(tok);
    t[len - 2] = t[len - 2] == 'A' ? 'B' : 'A';
    cr_assert_eq(verify(t, 0, &out), JWT_E_SIGNATURE);
    free(t);

    /* swap the claims for other, validly encoded claims */
    char *forged = make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                              "{\"sub\":\"mallory\",\"room\":\"*\"}", "secret");
    char *mixed = malloc(len + 64);
    const char *d2 = strrchr(tok, '.');
    const char *f2 = strrchr(forged, '.');
    snprintf(mixed, len + 64, "%.*s%s", (int)(f2 - forged), forged, d2);
    cr_assert_eq(verify(mixed, 0, &out), JWT_E_SIGNATURE);
    free(mixed);
    free(forged);

    cr_assert_eq(jwt_verify("other", 5, tok, len, 0, &out), JWT_E_SIGNATURE);
    /* truncated signature: 40 digits decode to 30 bytes, not 32 */
    cr_assert_eq(jwt_verify(S, tok, len - 3, 0, &out), JWT_E_SIGNATURE);
    cr_assert_eq(out, (json_t *)0x1); /* untouched on error */
    free(tok);
    json_decref(claims);
}

Test(jwt, alg_none_and_others_refused)
{
    json_t *out = NULL;
    char *t = make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"x\"}", NULL);
    cr_assert_eq(verify(t, 0, &out), JWT_E_ALG);
    free(t);
    /* "none" even with a signature attached */
    t = make_token("{\"alg\":\"none\"}", "{\"sub\":\"x\"}", "secret");
    cr_assert_eq(verify(t, 0, &out), JWT_E_ALG);
    free(t);
    /* correctly HMAC-SHA256-signed, but claiming another alg */
    const char *algs[] = {"{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"RS256\"}",
                          "{\"alg\":\"HS256 \"}", "{\"alg\":null}", "{\"alg\":256}",
                          "{\"typ\":\"JWT\"}",
                          "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}"};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        t = make_token(algs[i], "{\"sub\":\"x\"}", "secret");
        cr_assert_eq(verify(t, 0, &out), JWT_E_ALG, "%s", algs[i]);
        free(t);
    }
    /* the control: the same with HS256 passes */
    t = make_token("{\"alg\":\"HS256\"}", "{\"sub\":\"x\"}", "secret");
    cr_assert_eq(verify(t, 0, &out), 0);
    json_decref(out);
    free(t);
    cr_assert_eq(strlen(jwt_strerror(JWT_E_ALG)) > 0, 1);
}

Test(jwt, expiry_and_not_before)
{
    json_t *out = NULL;
    const char *h = "{\"alg\":\"HS256\"}";
    char *t = make_token(h, "{\"exp\":100}", "secret");
    cr_assert_eq(verify(t, 99, &out), 0);
    json_decref(out);
    cr_assert_eq(verify(t, 100, &out), JWT_E_EXPIRED);
    cr_assert_eq(verify(t, 101, &out), JWT_E_EXPIRED);
    free(t);
    /* fractional NumericDate */
    t = make_token(h, "{\"exp\":100.5}", "secret");
    cr_assert_eq(verify(t, 100, &out), 0);
    json_decref(out);
    cr_assert_eq(verify(t, 101, &out), JWT_E_EXPIRED);
    free(t);
    /* exp optional */
    t = make_token(h, "{\"sub\":\"a\"}", "secret");
    cr_assert_eq(verify(t, INT64_MAX / 2, &out), 0);
    json_decref(out);
    free(t);
    /* exp of the wrong type */
    t = make_token(h, "{\"exp\":\"100\"}", "secret");
    cr_assert_eq(verify(t, 0, &out), JWT_E_MALFORMED);
    free(t);
    t = make_token(h, "{\"nbf\":50,\"exp\":100}", "secret");
    cr_assert_eq(verify(t, 49, &out), JWT_E_NOT_YET_VALID);
    cr_assert_eq(verify(t, 50, &out), 0);
    json_decref(out);
    free(t);
}

Test(jwt, malformed_tokens)
{
    json_t *out = NULL;
    const char *bad[] = {
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJIUzI1NiJ9.e30.",                /* no sig: wrong size */
        "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA",           /* padding */
        "eyJhbGciOiJIUzI1NiJ9.e30=.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e3*.AAAA",            /* bad character */
        "eyJhbGciOiJIUzI1NiJ9.e30.AA+A",
        "bm90IGpzb24.e30.AAAA",                     /* header not JSON */
        "WzFd.e30.AAAA",                            /* header an array */
        "eyJhbGciOiJIUzI1NiJ9.e30.A",               /* impossible length */
        "eyJhbGciOiJIUzI1NiJ9.e30.AB",              /* non-canonical bits */
    };
    int want[] = {JWT_E_MALFORMED, JWT_E_MALFORMED, JWT_E_MALFORMED, JWT_E_MALFORMED,
                  JWT_E_SIGNATURE, JWT_E_MALFORMED, JWT_E_MALFORMED, JWT_E_MALFORMED,
                  JWT_E_MALFORMED, JWT_E_MALFORMED, JWT_E_MALFORMED, JWT_E_MALFORMED,
                  JWT_E_MALFORMED};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(verify(bad[i], 0, &out), want[i], "%s", bad[i]);

    /* claims: signed correctly but not a JSON object / duplicate names */
    const char *h = "{\"alg\":\"HS256\"}";
    const char *claims[] = {"[1,2]", "\"str\"", "not json",
                            "{\"sub\":\"alice\",\"sub\":\"admin\"}"};
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        char *t = make_token(h, claims[i], "secret");
        cr_assert_eq(verify(t, 0, &out), JWT_E_MALFORMED, "%s", claims[i]);
        free(t);
    }
    /* duplicate header member */
    char *t = make_token("{\"alg\":\"none\",\"alg\":\"HS256\"}", "{}", "secret");
    cr_assert_eq(verify(t, 0, &out), JWT_E_MALFORMED);
    free(t);

    /* over the length limit */
    char *huge = malloc(JWT_MAX_TOKEN + 2);
    memset(huge, 'A', JWT_MAX_TOKEN + 1);
    huge[10] = '.';
    huge[20] = '.';
    huge[JWT_MAX_TOKEN + 1] = '\0';
    cr_assert_eq(verify(huge, 0, &out), JWT_E_MALFORMED);
    free(huge);
    cr_assert_null(out);
}

Test(jwt, bad_arguments)
{
    json_t *claims = json_object();
    json_t *arr = json_array();
    char *tok = (char *)"untouched";
    cr_assert_eq(jwt_sign("", 0, claims, &tok), JWT_E_ARG);
    cr_assert_eq(jwt_sign(NULL, 5, claims, &tok), JWT_E_ARG);
    cr_assert_eq(jwt_sign(S, arr, &tok), JWT_E_ARG);
    cr_assert_eq(jwt_sign(S, NULL, &tok), JWT_E_ARG);
    cr_assert_str_eq(tok, "untouched");
    json_t *out = NULL;
    cr_assert_eq(jwt_verify("", 0, "a.b.c", 5, 0, &out), JWT_E_ARG);
    json_decref(claims);
    json_decref(arr);
}

Test(jwt, b64url)
{
    char out[16];
    uint8_t raw[16];
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(jwt_b64url_encode(in[i], strlen(in[i]), out), strlen(enc[i]));
        cr_assert_str_eq(out, enc[i]);
        cr_assert_eq(jwt_b64url_decode(enc[i], strlen(enc[i]), raw), (ptrdiff_t)strlen(in[i]));
        cr_assert_eq(memcmp(raw, in[i], strlen(in[i])), 0);
    }
    cr_assert_eq(jwt_b64url_encode("\xfb\xff\xbf", 3, out), 4);
    cr_assert_str_eq(out, "-_-_");
    cr_assert_eq(jwt_b64url_decode("+/+/", 4, raw), -1);
    cr_assert_eq(jwt_b64url_decode("Zh", 2, raw), -1);  /* stray low bits */
    cr_assert_eq(jwt_b64url_decode("Zm9", 3, raw), -1); /* stray low bits */
    cr_assert_eq(jwt_b64url_decode("Zm-", 3, raw), -1); /* stray low bits */
    cr_assert_eq(jwt_b64url_decode("Zg==", 4, raw), -1);
    cr_assert_eq(jwt_b64url_decode("Z", 1, raw), -1);
}


/* ---- prepared keys ------------------------------------------------------- */

static jwt_key_t *key_of(const void *sec, size_t len)
{
    jwt_key_t *k = NULL;
    cr_assert_eq(jwt_key_new(sec, len, &k), JWT_OK);
    cr_assert_not_null(k);
    return k;
}

/* HMAC pads keys up to its 64-byte block and hashes longer ones first:
 * every case gives the same token as the plain secret (OpenSSL's HMAC). */
Test(jwt_key, same_tokens_as_the_plain_secret)
{
    uint8_t secrets[5][200];
    size_t lens[5] = {1, 6, 64, 65, 200};
    for (int i = 0; i < 5; i++)
        for (size_t j = 0; j < lens[i]; j++)
            secrets[i][j] = (uint8_t)(j * 37 + (size_t)i); /* zero bytes included */
    json_t *claims = json_pack("{s:s,s:s,s:I}", "sub", "carol", "room", "r9", "exp",
                               (json_int_t)5000);
    for (int i = 0; i < 5; i++) {
        jwt_key_t *k = key_of(secrets[i], lens[i]);
        char *a = NULL, *b = NULL;
        cr_assert_eq(jwt_sign(secrets[i], lens[i], claims, &a), 0);
        cr_assert_eq(jwt_sign_key(k, claims, &b), 0);
        cr_assert_str_eq(a, b, "key of %zu bytes", lens[i]);
        json_t *back = NULL;
        cr_assert_eq(jwt_verify_key(k, a, strlen(a), 4999, &back), 0);
        cr_assert(json_equal(back, claims));
        json_decref(back);
        cr_assert_eq(jwt_verify_key(k, a, strlen(a), 5000, &back), JWT_E_EXPIRED);
        free(a);
        free(b);
        jwt_key_free(k);
    }
    json_decref(claims);

    /* The known answers: the Python-made token, RFC 7515 A.1 (whose
     * header is not roost's, so it is parsed). */
    jwt_key_t *k = key_of(S);
    const char *py = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                     "eyJzdWIiOiJhbGljZSIsInJvb20iOiJyMSIsImV4cCI6MTcwMDAwMDAwMH0."
                     "75klosxeSyyH6kx22kq_9xJOf1LvSDxYdpJT7bxbGqM";
    json_t *c = NULL;
    cr_assert_eq(jwt_verify_key(k, py, strlen(py), 1600000000, &c), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "sub")), "alice");
    json_decref(c);
    jwt_key_free(k);
    static const char k64[] =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    uint8_t raw[64];
    cr_assert_eq(jwt_b64url_decode(k64, strlen(k64), raw), 64);
    k = key_of(raw, 64);
    const char *tok =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    cr_assert_eq(jwt_verify_key(k, tok, strlen(tok), 1300819379, &c), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), "joe");
    json_decref(c);
    jwt_key_free(k);
}

/* Tampering, a wrong key, other algorithms and bad shapes are refused by
 * a key exactly as by the plain secret. */
Test(jwt_key, refuses_what_the_plain_secret_refuses)
{
    jwt_key_t *k = key_of(S);
    json_t *claims = json_pack("{s:s,s:s}", "sub", "alice", "room", "r1");
    char *tok;
    cr_assert_eq(jwt_sign_key(k, claims, &tok), 0);
    size_t len = strlen(tok);
    json_t *out = (json_t *)0x1;
    char *t = strdup(tok);
    t[len - 2] = t[len - 2] == 'A' ? 'B' : 'A';
    cr_assert_eq(jwt_verify_key(k, t, len, 0, &out), JWT_E_SIGNATURE);
    /* a claims character changed (still canonical base64url) */
    strcpy(t, tok);
    char *mid = strchr(t, '.') + 3;
    *mid = *mid == 'A' ? 'B' : 'A';
    int rc = jwt_verify_key(k, t, len, 0, &out);
    cr_assert(rc == JWT_E_SIGNATURE || rc == JWT_E_MALFORMED, "tampered claims: %d", rc);
    free(t);
    cr_assert_eq(jwt_verify_key(k, tok, len - 3, 0, &out), JWT_E_SIGNATURE);
    jwt_key_t *other = key_of("other", 5);
    cr_assert_eq(jwt_verify_key(other, tok, len, 0, &out), JWT_E_SIGNATURE);
    jwt_key_free(other);

    const char *hdrs[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"HS512\"}",
                          "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
                          "{\"alg\":\"none\",\"alg\":\"HS256\"}"};
    int want[] = {JWT_E_ALG, JWT_E_ALG, JWT_E_ALG, JWT_E_MALFORMED};
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        t = make_token(hdrs[i], "{\"sub\":\"x\"}", "secret");
        cr_assert_eq(jwt_verify_key(k, t, strlen(t), 0, &out), want[i], "%s", hdrs[i]);
        free(t);
    }
    const char *bad[] = {"", "a.b", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9.e3*.AAAA",
                         "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30=.AAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(jwt_verify_key(k, bad[i], strlen(bad[i]), 0, &out), JWT_E_MALFORMED, "%s",
                     bad[i]);
    cr_assert_eq(out, (json_t *)0x1, "untouched on error");

    cr_assert_eq(jwt_verify_key(NULL, tok, len, 0, &out), JWT_E_ARG);
    cr_assert_eq(jwt_verify_key(k, NULL, 0, 0, &out), JWT_E_ARG);
    cr_assert_eq(jwt_sign_key(NULL, claims, &t), JWT_E_ARG);
    cr_assert_eq(jwt_sign_key(k, NULL, &t), JWT_E_ARG);
    jwt_key_t *none = (jwt_key_t *)0x1;
    cr_assert_eq(jwt_key_new("", 0, &none), JWT_E_ARG);
    cr_assert_eq(jwt_key_new(NULL, 4, &none), JWT_E_ARG);
    cr_assert_eq(none, (jwt_key_t *)0x1);
    jwt_key_free(NULL);
    free(tok);
    json_decref(claims);
    jwt_key_free(k);
}

/* A secret change is a new key: tokens of the old secret are refused by
 * it, its own are accepted, and the old key is not affected. */
Test(jwt_key, changed_secret)
{
    jwt_key_t *old = key_of("first secret", 12);
    json_t *claims = json_pack("{s:s}", "sub", "dave");
    char *t_old, *t_new;
    cr_assert_eq(jwt_sign_key(old, claims, &t_old), 0);
    jwt_key_t *new = key_of("second secret", 13);
    cr_assert_eq(jwt_sign_key(new, claims, &t_new), 0);
    json_t *out = NULL;
    cr_assert_eq(jwt_verify_key(new, t_old, strlen(t_old), 0, &out), JWT_E_SIGNATURE);
    cr_assert_eq(jwt_verify_key(new, t_new, strlen(t_new), 0, &out), 0);
    json_decref(out);
    cr_assert_eq(jwt_verify_key(old, t_new, strlen(t_new), 0, &out), JWT_E_SIGNATURE);
    cr_assert_eq(jwt_verify_key(old, t_old, strlen(t_old), 0, &out), 0);
    json_decref(out);
    jwt_key_free(old);
    jwt_key_free(new);
    free(t_old);
    free(t_new);
    json_decref(claims);
}

/* jwt_sign's header, which verify recognises without parsing it, is the
 * base64url of exactly {"alg":"HS256","typ":"JWT"}; the same header
 * written differently is parsed and accepted too. */
Test(jwt_key, standard_header)
{
    json_t *claims = json_pack("{s:s}", "sub", "erin");
    char *tok;
    cr_assert_eq(jwt_sign(S, claims, &tok), 0);
    char hdr[64];
    const char *dot = strchr(tok, '.');
    ptrdiff_t n = jwt_b64url_decode(tok, (size_t)(dot - tok), hdr);
    cr_assert_gt(n, 0);
    hdr[n] = '\0';
    cr_assert_str_eq(hdr, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    free(tok);
    jwt_key_t *k = key_of(S);
    char *t = make_token("{\"typ\":\"JWT\", \"alg\":\"HS256\"}", "{\"sub\":\"erin\"}", "secret");
    json_t *out = NULL;
    cr_assert_eq(jwt_verify_key(k, t, strlen(t), 0, &out), 0);
    cr_assert(json_equal(out, claims));
    json_decref(out);
    free(t);
    jwt_key_free(k);
    json_decref(claims);
}

/* Several threads verify with one key at once, as the I/O threads do:
 * every good token passes with its own claims, every forged one fails. */
enum { VT_THREADS = 8, VT_ROUNDS = 400 };

typedef struct vt_arg {
    const jwt_key_t *key;
    int idx;
    atomic_int *wrong;
} vt_arg_t;

static void *verify_thread(void *p)
{
    vt_arg_t *a = p;
    for (int i = 0; i < VT_ROUNDS; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "user-%d-%d", a->idx, i);
        json_t *claims = json_pack("{s:s,s:I}", "sub", sub, "exp", (json_int_t)1000 + i);
        char *tok = NULL;
        if (jwt_sign_key(a->key, claims, &tok) != 0) {
            atomic_fetch_add(a->wrong, 1);
            json_decref(claims);
            continue;
        }
        json_t *out = NULL;
        if (jwt_verify_key(a->key, tok, strlen(tok), 999, &out) != 0 || !json_equal(out, claims))
            atomic_fetch_add(a->wrong, 1);
        json_decref(out);
        size_t len = strlen(tok);
        tok[len - 3] = tok[len - 3] == 'A' ? 'B' : 'A';
        out = NULL;
        if (jwt_verify_key(a->key, tok, len, 999, &out) != JWT_E_SIGNATURE || out)
            atomic_fetch_add(a->wrong, 1);
        free(tok);
        json_decref(claims);
    }
    return NULL;
}

Test(jwt_key, shared_by_threads)
{
    jwt_key_t *k = key_of(S);
    atomic_int wrong = 0;
    pthread_t t[VT_THREADS];
    vt_arg_t args[VT_THREADS];
    for (int i = 0; i < VT_THREADS; i++) {
        args[i] = (vt_arg_t){.key = k, .idx = i, .wrong = &wrong};
        cr_assert_eq(pthread_create(&t[i], NULL, verify_thread, &args[i]), 0);
    }
    for (int i = 0; i < VT_THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&wrong), 0);
    jwt_key_free(k);
}

/* ---- allocation failures -------------------------------------------- */

/* jansson 2.14 reports an allocation failure inside its parser as a
 * syntax error, so under memory pressure verify may say MALFORMED: the
 * token is refused, never wrongly accepted. */
Test(jwt_fault, sign_and_verify_under_allocation_failure)
{
#if !FAULTS
    cr_skip_test("allocation faults are injected in the plain build only");
#else
    json_t *claims = json_pack("{s:s,s:s,s:I}", "sub", "alice", "room", "r1", "exp",
                               (json_int_t)1700000000);
    const char *want = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                       "eyJzdWIiOiJhbGljZSIsInJvb20iOiJyMSIsImV4cCI6MTcwMDAwMDAwMH0."
                       "75klosxeSyyH6kx22kq_9xJOf1LvSDxYdpJT7bxbGqM";
    char *warm = NULL;
    cr_assert_eq(jwt_sign(S, claims, &warm), 0); /* libcrypto's one-time setup */
    free(warm);
    long i;
    for (i = 0; i < FAULT_SWEEP_MAX; i++) {
        long before = heap_in_use();
        char *tok = NULL;
        json_t *back = NULL;
        fault_arm(i);
        int sr = jwt_sign(S, claims, &tok);
        int vr = jwt_verify(S, want, strlen(want), 1600000000, &back);
        bool hit = fault_disarm();
        if (sr == 0)
            cr_assert_str_eq(tok, want);
        else
            cr_assert_eq(sr, JWT_E_NOMEM, "n=%ld sign %d", i, sr);
        if (vr == 0)
            cr_assert(json_equal(back, claims));
        else
            cr_assert(vr == JWT_E_NOMEM || vr == JWT_E_MALFORMED, "n=%ld verify %d", i, vr);
        free(tok);
        json_decref(back);
        cr_assert_eq(heap_in_use(), before, "leak with allocation %ld failing", i);
        if (!hit) {
            cr_assert_eq(sr, 0);
            cr_assert_eq(vr, 0);
            break;
        }
    }
    cr_assert_gt(i, 5);
    json_decref(claims);
#endif
}

/* A key that cannot be made, or a MAC that cannot be computed, is an
 * error: never a token accepted or made wrongly, never a leak. */
Test(jwt_fault, key_under_allocation_failure)
{
#if !FAULTS
    cr_skip_test("allocation faults are injected in the plain build only");
#else
    json_t *claims = json_pack("{s:s,s:s,s:I}", "sub", "alice", "room", "r1", "exp",
                               (json_int_t)1700000000);
    const char *want = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                       "eyJzdWIiOiJhbGljZSIsInJvb20iOiJyMSIsImV4cCI6MTcwMDAwMDAwMH0."
                       "75klosxeSyyH6kx22kq_9xJOf1LvSDxYdpJT7bxbGqM";
    jwt_key_t *warm = NULL;
    cr_assert_eq(jwt_key_new(S, &warm), 0); /* libcrypto's one-time setup */
    jwt_key_free(warm);
    long i;
    for (i = 0; i < FAULT_SWEEP_MAX; i++) {
        long before = heap_in_use();
        jwt_key_t *k = NULL;
        char *tok = NULL;
        json_t *back = NULL;
        fault_arm(i);
        int kr = jwt_key_new(S, &k);
        int sr = kr ? kr : jwt_sign_key(k, claims, &tok);
        int vr = kr ? kr : jwt_verify_key(k, want, strlen(want), 1600000000, &back);
        bool hit = fault_disarm();
        cr_assert(kr == 0 || kr == JWT_E_NOMEM, "n=%ld key %d", i, kr);
        if (sr == 0)
            cr_assert_str_eq(tok, want);
        else
            cr_assert_eq(sr, JWT_E_NOMEM, "n=%ld sign %d", i, sr);
        if (vr == 0)
            cr_assert(json_equal(back, claims));
        else
            cr_assert(vr == JWT_E_NOMEM || vr == JWT_E_MALFORMED, "n=%ld verify %d", i, vr);
        free(tok);
        json_decref(back);
        jwt_key_free(k);
        cr_assert_eq(heap_in_use(), before, "leak with allocation %ld failing", i);
        if (!hit) {
            cr_assert_eq(kr, 0);
            cr_assert_eq(sr, 0);
            cr_assert_eq(vr, 0);
            break;
        }
    }
    cr_assert_gt(i, 5);
    json_decref(claims);
#endif
}
