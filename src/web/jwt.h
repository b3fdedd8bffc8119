/*
 * web/jwt.h — HS256 JSON Web Tokens (RFC 7519), for the socket's token.
 *
 * roost authenticates WebSocket clients with a JWT signed by the server
 * secret (design §4): claims `sub` (user id), `room` (room id or "*") and
 * `exp` (expiry, seconds since the epoch; optional, always present in
 * tokens roost mints). Minted by `roost token` and POST /api/tokens,
 * checked at the upgrade (a bad or expired token gets HTTP 403).
 *
 * Only HS256 exists here. A token whose header names any other algorithm,
 * "none" included, is refused before its signature is looked at: the
 * algorithm is the server's choice, never the token's. Signatures are
 * compared in constant time. Base64url is unpadded and canonical (RFC
 * 7515 §2): padding, foreign characters or stray low bits are malformed.
 * JSON objects with duplicate member names are malformed too, so no two
 * readers can see different claims in one token.
 *
 * This module does not interpret sub and room; the endpoint does.
 *
 * A server checks every connection's token against one secret, so the
 * secret can be prepared once (jwt_key_new): HMAC's key schedule, the
 * SHA-256 states after absorbing the padded key XOR ipad and XOR opad
 * (RFC 2104), is then computed once per secret instead of once per
 * token, and no digest is looked up per token either. jwt_sign and
 * jwt_verify with a plain secret do all of that each time.
 *
 * Ownership: jwt_sign borrows claims and returns a new string the caller
 * free()s; jwt_verify returns a new reference the caller json_decref()s.
 * A jwt_key_t is owned by whoever made it (jwt_key_free); the functions
 * that take one borrow it.
 * Threads: every function is reentrant. A jwt_key_t is never changed
 * after jwt_key_new returns, so any number of threads may sign and
 * verify with one key at the same time; free it only when none does.
 */
#ifndef ROOST_WEB_JWT_H
#define ROOST_WEB_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Longest token jwt_verify looks at; longer ones are malformed. Tokens
 * travel in a query string or a header, both under the 16 KiB head. */
#define JWT_MAX_TOKEN 8192

enum {
    JWT_OK = 0,
    JWT_E_NOMEM = -1,
    JWT_E_ARG = -2,           /* NULL or empty secret, claims not an object */
    JWT_E_MALFORMED = -3,     /* not three base64url parts of JSON objects,
                                 too long, or exp/nbf not a number */
    JWT_E_ALG = -4,           /* header alg is not "HS256" (e.g. "none"), or
                                 the header has "crit" (no extension known) */
    JWT_E_SIGNATURE = -5,     /* signature does not match */
    JWT_E_EXPIRED = -6,       /* now >= exp */
    JWT_E_NOT_YET_VALID = -7, /* now < nbf */
};

/* Sign claims (a JSON object, borrowed) with HMAC-SHA256 under secret.
 * Header {"alg":"HS256","typ":"JWT"}. On success *token is a new
 * NUL-terminated string (free() it). Returns 0, JWT_E_ARG or JWT_E_NOMEM;
 * on error *token is untouched. */
int jwt_sign(const void *secret, size_t secret_len, const json_t *claims, char **token);

/* Verify token (token_len bytes, need not be NUL-terminated) at time now
 * (seconds since the epoch; pass now - leeway to allow clock skew). Checks
 * in this order: shape, alg, signature, claims JSON, exp, nbf. On success
 * *claims receives a new reference to the claims object (json_decref()
 * it); on error *claims is untouched. Out of memory gives JWT_E_NOMEM, or
 * JWT_E_MALFORMED when it strikes inside jansson's parser (jansson 2.14
 * reports it as a syntax error): the token is refused either way. */
int jwt_verify(const void *secret, size_t secret_len, const char *token,
               size_t token_len, int64_t now, json_t **claims);

/* A secret prepared for many tokens (see above). */
typedef struct jwt_key jwt_key_t;

/* Prepares secret (borrowed; the key keeps only the two HMAC states
 * derived from it, not the secret). Returns JWT_OK and *key,
 * JWT_E_ARG (NULL or empty secret) or JWT_E_NOMEM; on error *key is
 * untouched. */
int jwt_key_new(const void *secret, size_t secret_len, jwt_key_t **key);
/* Frees key (NULL is fine). No thread may be using it. */
void jwt_key_free(jwt_key_t *key);

/* jwt_sign and jwt_verify with a prepared secret: the same results,
 * tokens and errors as with the secret key was made from. key is
 * borrowed; any thread. */
int jwt_sign_key(const jwt_key_t *key, const json_t *claims, char **token);
int jwt_verify_key(const jwt_key_t *key, const char *token, size_t token_len, int64_t now,
                   json_t **claims);

/* Short description of an error. Static storage. */
const char *jwt_strerror(int err);

/* Unpadded base64url (RFC 4648 §5), as JWTs use it. encode writes
 * ((len * 4) + 2) / 3 chars and a NUL to out and returns the char count.
 * decode writes at most len * 3 / 4 bytes to out and returns the count,
 * or -1 if s is not canonical unpadded base64url. */
size_t jwt_b64url_encode(const void *data, size_t len, char *out);
ptrdiff_t jwt_b64url_decode(const char *s, size_t len, void *out);

#endif /* ROOST_WEB_JWT_H */
