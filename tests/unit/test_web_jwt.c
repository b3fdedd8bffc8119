/*
 * Unit tests for web/jwt: known-answer tokens (RFC 7515 A.1 and one made
 * with an independent implementation), round trip, tampering, algorithm
 * confusion ("none", other algs), expiry, malformed tokens, base64url.
 */
#include <criterion/criterion.h>

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
