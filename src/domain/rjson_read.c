/*
 * domain/rjson_read.c — the reader of domain/rjson.h (room_json_load),
 * in a file of its own because it needs nothing but jansson: the fuzz
 * targets and any layer can link it without the runtime.
 */
#include "domain/rjson.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Reading -------------------------------------------------------------------
 * Recursive descent over the bytes, building jansson values with the
 * *_nocheck constructors (the text was checked here). Every error path
 * releases what was built so far and returns NULL. */

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

typedef struct rd {
    const unsigned char *p, *end;
    unsigned depth;
    bool nomem;   /* an allocation failed (else the text was refused) */
} rd_t;

static void skip_ws(rd_t *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

/* The length of the UTF-8 sequence at s that jansson accepts (no
 * overlong forms, no surrogates, at most U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0], cp, min;
    size_t n;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        n = 2, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - s) < n)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        int d = c >= '0' && c <= '9' ? (int)(c - '0')
                : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10)
                : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10)
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decodes the escapes of a string body (checked by scan_str) into out,
 * which has room for len bytes; returns the decoded length, or -1 on an
 * escape jansson refuses (\u0000, a lone surrogate). */
static long unescape(const unsigned char *s, size_t len, char *out)
{
    const unsigned char *end = s + len;
    char *w = out;
    while (s < end) {
        if (*s != '\\') {
            *w++ = (char)*s++;
            continue;
        }
        s++;
        switch (*s++) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            long cp = hex4(s);
            s += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* A high surrogate must be followed by a low one. */
                if (end - s < 6 || s[0] != '\\' || s[1] != 'u')
                    return -1;
                long lo = hex4(s + 2);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                s += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
                return -1;
            }
            if (cp < 0x80) {
                *w++ = (char)cp;
            } else if (cp < 0x800) {
                *w++ = (char)(0xc0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *w++ = (char)(0xe0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *w++ = (char)(0xf0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            return -1; /* scan_str let nothing else through */
        }
    }
    return (long)(w - out);
}

/* Scans a string at r->p (its opening quote): checks it and leaves r->p
 * after the closing quote. *body and *len: the raw bytes between the quotes;
 * *esc: whether they hold escapes. */
static bool scan_str(rd_t *r, const unsigned char **body, size_t *len, bool *esc)
{
    const unsigned char *p = r->p + 1, *end = r->end;
    *body = p;
    *esc = false;
    while (p < end) {
        unsigned c = *p;
        if (c == '"') {
            *len = (size_t)(p - *body);
            r->p = p + 1;
            return true;
        }
        if (c == '\\') {
            if (end - p < 2)
                return false;
            unsigned e = p[1];
            if (e == 'u') {
                if (end - p < 6 || hex4(p + 2) < 0)
                    return false;
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return false;
            }
            *esc = true;
            continue;
        }
        if (c < 0x20)
            return false; /* a control character must be escaped */
        size_t n = c < 0x80 ? 1 : utf8_len(p, end);
        if (!n)
            return false;
        p += n;
    }
    return false;
}

/* A string at r->p as bytes in *out (*tmp: a buffer to free afterwards,
 * or NULL when *out points into the text). */
static bool read_str(rd_t *r, const char **out, size_t *len, char **tmp)
{
    const unsigned char *body;
    bool esc;
    *tmp = NULL;
    if (!scan_str(r, &body, len, &esc))
        return false;
    if (!esc) {
        *out = (const char *)body;
        return true;
    }
    char *b = malloc(*len ? *len : 1); /* decoding never makes it longer */
    if (!b) {
        r->nomem = true;
        return false;
    }
    long n = unescape(body, *len, b);
    if (n < 0) {
        free(b);
        return false;
    }
    *out = b;
    *len = (size_t)n;
    *tmp = b;
    return true;
}

static json_t *read_value(rd_t *r);

static json_t *read_number(rd_t *r)
{
    const unsigned char *s = r->p, *p = s, *end = r->end;
    bool neg = false, real = false;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p == end || *p < '0' || *p > '9')
        return NULL;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && *p == '.') {
        real = true;
        p++;
        if (p == end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    r->p = p;
    if (!real) {
        /* As strtoll does for jansson: anything beyond json_int_t is an
         * error, not a real. */
        unsigned long long u = 0, lim = neg ? (unsigned long long)INT64_MAX + 1 : INT64_MAX;
        for (const unsigned char *d = s + neg; d < p; d++) {
            unsigned digit = *d - '0';
            if (u > (lim - digit) / 10)
                return NULL;
            u = u * 10 + digit;
        }
        json_int_t v = neg ? (json_int_t)(0 - u) : (json_int_t)u;
        json_t *j = json_integer(v);
        r->nomem |= !j;
        return j;
    }
    /* strtod wants a NUL-terminated string in the locale's decimal
     * point, as jansson gives it. */
    size_t n = (size_t)(p - s);
    char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) {
        r->nomem = true;
        return NULL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    const char *point = localeconv()->decimal_point;
    if (point && point[0] && point[0] != '.') {
        char *dot = strchr(buf, '.');
        if (dot)
            *dot = point[0];
    }
    errno = 0;
    char *stop;
    double v = strtod(buf, &stop);
    bool ok = stop == buf + n && !((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE);
    if (buf != small)
        free(buf);
    json_t *j = ok ? json_real(v) : NULL;
    r->nomem |= ok && !j;
    return j;
}

static json_t *read_object(rd_t *r)
{
    r->p++; /* { */
    json_t *o = json_object();
    if (!o) {
        r->nomem = true;
        return NULL;
    }
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return o;
    }
    for (;;) {
        if (r->p == r->end || *r->p != '"')
            goto fail;
        const char *key;
        size_t klen;
        char *tmp;
        if (!read_str(r, &key, &klen, &tmp))
            goto fail;
        skip_ws(r);
        json_t *v = NULL;
        if (r->p < r->end && *r->p == ':') {
            r->p++;
            skip_ws(r);
            v = read_value(r);
        }
        /* setn_new takes v even when it fails */
        int rc = v ? json_object_setn_new_nocheck(o, key, klen, v) : -1;
        free(tmp);
        if (rc != 0) {
            r->nomem |= v != NULL;
            goto fail;
        }
        skip_ws(r);
        if (r->p == r->end)
            goto fail;
        if (*r->p == '}') {
            r->p++;
            return o;
        }
        if (*r->p != ',')
            goto fail;
        r->p++;
        skip_ws(r);
    }
fail:
    json_decref(o);
    return NULL;
}

static json_t *read_array(rd_t *r)
{
    r->p++; /* [ */
    json_t *a = json_array();
    if (!a) {
        r->nomem = true;
        return NULL;
    }
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return a;
    }
    for (;;) {
        json_t *v = read_value(r);
        if (!v)
            goto fail;
        if (json_array_append_new(a, v) != 0) {
            r->nomem = true;
            goto fail;
        }
        skip_ws(r);
        if (r->p == r->end)
            goto fail;
        if (*r->p == ']') {
            r->p++;
            return a;
        }
        if (*r->p != ',')
            goto fail;
        r->p++;
        skip_ws(r);
    }
fail:
    json_decref(a);
    return NULL;
}

static bool literal(rd_t *r, const char *word, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return false;
    r->p += n;
    return true;
}

static json_t *read_value(rd_t *r)
{
    if (r->p == r->end)
        return NULL;
    switch (*r->p) {
    case '{':
    case '[': {
        if (++r->depth > MAX_DEPTH)
            return NULL;
        json_t *v = *r->p == '{' ? read_object(r) : read_array(r);
        r->depth--;
        return v;
    }
    case '"': {
        const char *s;
        size_t n;
        char *tmp;
        if (!read_str(r, &s, &n, &tmp))
            return NULL;
        json_t *v = json_stringn_nocheck(s, n);
        free(tmp);
        r->nomem |= !v;
        return v;
    }
    case 't':
        return literal(r, "true", 4) ? json_true() : NULL;
    case 'f':
        return literal(r, "false", 5) ? json_false() : NULL;
    case 'n':
        return literal(r, "null", 4) ? json_null() : NULL;
    default:
        return read_number(r);
    }
}

json_t *room_json_load(const char *text, size_t len, size_t flags, bool *nomem)
{
    if (nomem)
        *nomem = false;
    if (!text)
        return NULL;
    rd_t r = {.p = (const unsigned char *)text, .end = (const unsigned char *)text + len};
    skip_ws(&r);
    if (!(flags & JSON_DECODE_ANY) && (r.p == r.end || (*r.p != '{' && *r.p != '[')))
        return NULL;
    json_t *v = read_value(&r);
    if (!v) {
        if (nomem)
            *nomem = r.nomem;
        return NULL;
    }
    skip_ws(&r);
    if (r.p != r.end) {
        json_decref(v);
        return NULL;
    }
    return v;
}
