/*
 * libFuzzer target for web/jwt: tokens arrive from clients (query string
 * or subprotocol), so jwt_verify parses attacker bytes.
 *
 * Oracles: nothing verifies without the right signature unless the input
 * is a token we signed; a token re-signed from verified claims verifies
 * again to equal claims.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key[] = "fuzz-secret";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *c = NULL;
    int rc = jwt_verify(key, sizeof key - 1, (const char *)data, size, 1000, &c);
    if (rc == 0) {
        /* The fuzzer cannot forge HMAC-SHA256 under our key; reaching here
         * would mean verification is broken. */
        abort();
    }
    if (c)
        abort();

    /* Sign whatever JSON object the input holds, then verify it. */
    json_error_t e;
    json_t *obj = json_loadb((const char *)data, size, 0, &e);
    if (json_is_object(obj)) {
        json_object_del(obj, "exp");
        json_object_del(obj, "nbf");
        char *tok = NULL;
        rc = jwt_sign(key, sizeof key - 1, obj, &tok);
        if (rc == 0) {
            json_t *back = NULL;
            int vr = jwt_verify(key, sizeof key - 1, tok, strlen(tok), 1000, &back);
            if (vr == 0) {
                if (!json_equal(back, obj))
                    abort();
                json_decref(back);
            } else if (vr != JWT_E_MALFORMED || strlen(tok) <= JWT_MAX_TOKEN) {
                abort(); /* only an over-long token may fail */
            }
            free(tok);
        } else if (rc != JWT_E_NOMEM) {
            abort();
        }
    }
    json_decref(obj);
    return 0;
}
