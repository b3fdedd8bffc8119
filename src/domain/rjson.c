/*
 * domain/rjson.c — compact JSON out of and into jansson values (see
 * domain/rjson.h for why and for the contracts).
 */
#include "domain/rjson.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Writing ------------------------------------------------------------------ */

static void buf_free(rt_rc_t *rc)
{
    free(RT_CONTAINER_OF(rc, rt_buf_t, rc));
}

bool room_json_out_init(room_json_out_t *o, size_t hint)
{
    o->failed = false;
    o->cap = hint < 256 ? 256 : hint;
    o->b = malloc(sizeof *o->b + o->cap + 1);
    if (!o->b) {
        o->failed = true;
        return false;
    }
    rt_rc_init(&o->b->rc, buf_free);
    o->b->len = 0;
    return true;
}

void room_json_out_raw(room_json_out_t *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->b->len + n > o->cap) {
        size_t cap = o->cap * 2;
        while (cap < o->b->len + n)
            cap *= 2;
        rt_buf_t *nb = realloc(o->b, sizeof *nb + cap + 1);
        if (!nb) {
            o->failed = true;
            return;
        }
        o->b = nb;
        o->cap = cap;
    }
    memcpy(o->b->data + o->b->len, s, n);
    o->b->len += n;
}

static inline void put_c(room_json_out_t *o, char c)
{
    if (!o->failed && o->b->len < o->cap)
        o->b->data[o->b->len++] = c;
    else
        room_json_out_raw(o, &c, 1);
}

void room_json_out_unput(room_json_out_t *o, size_t n)
{
    if (!o->failed)
        o->b->len -= n <= o->b->len ? n : o->b->len;
}

size_t room_json_out_len(const room_json_out_t *o)
{
    return o->failed ? 0 : o->b->len;
}

rt_buf_t *room_json_out_done(room_json_out_t *o)
{
    if (o->failed) {
        free(o->b);
        o->b = NULL;
        return NULL;
    }
    if (o->cap > o->b->len + 64) {
        rt_buf_t *nb = realloc(o->b, sizeof *nb + o->b->len + 1);
        if (nb)
            o->b = nb;
    }
    o->b->data[o->b->len] = '\0';
    rt_buf_t *b = o->b;
    o->b = NULL;
    return b;
}

/* jansson escapes '"', '\\' and every byte below 0x20 (the usual
 * two-character forms, else \u00XX in upper case) and copies the rest of
 * a string, which it has already checked to be UTF-8. */
static void put_str(room_json_out_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    put_c(o, '"');
    const char *run = s, *end = s + n;
    for (; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        room_json_out_raw(o, run, (size_t)(s - run));
        run = s + 1;
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            el = 6;
        }
        room_json_out_raw(o, e, el);
    }
    room_json_out_raw(o, run, (size_t)(s - run));
    put_c(o, '"');
}

static void put_int(room_json_out_t *o, json_int_t v)
{
    char buf[24], *p = buf + sizeof buf;
    /* Negated as unsigned: -INT64_MIN does not fit in a signed one. */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    room_json_out_raw(o, p, (size_t)(buf + sizeof buf - p));
}

static int put_cb(const char *s, size_t n, void *ctx)
{
    room_json_out_raw(ctx, s, n);
    return ((room_json_out_t *)ctx)->failed ? -1 : 0;
}

void room_json_out_value(room_json_out_t *o, const json_t *j)
{
    if (o->failed)
        return;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        put_c(o, '{');
        bool first = true;
        for (void *it = json_object_iter((json_t *)j); it && !o->failed;
             it = json_object_iter_next((json_t *)j, it)) {
            if (!first)
                put_c(o, ',');
            put_str(o, json_object_iter_key(it), json_object_iter_key_len(it));
            put_c(o, ':');
            room_json_out_value(o, json_object_iter_value(it));
            first = false;
        }
        put_c(o, '}');
        return;
    }
    case JSON_ARRAY: {
        put_c(o, '[');
        size_t n = json_array_size(j);
        for (size_t i = 0; i < n && !o->failed; i++) {
            if (i)
                put_c(o, ',');
            room_json_out_value(o, json_array_get(j, i));
        }
        put_c(o, ']');
        return;
    }
    case JSON_STRING:
        put_str(o, json_string_value(j), json_string_length(j));
        return;
    case JSON_INTEGER:
        put_int(o, json_integer_value(j));
        return;
    case JSON_REAL:
        /* Rare (a client's status may carry one): jansson's own format. */
        if (json_dump_callback(j, put_cb, o, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
            o->failed = true;
        return;
    case JSON_TRUE:
        room_json_out_raw(o, "true", 4);
        return;
    case JSON_FALSE:
        room_json_out_raw(o, "false", 5);
        return;
    case JSON_NULL:
        room_json_out_raw(o, "null", 4);
        return;
    }
    o->failed = true;
}

rt_buf_t *room_json_dump(const json_t *j, size_t hint)
{
    room_json_out_t o;
    if (!j || !room_json_out_init(&o, hint))
        return NULL;
    room_json_out_value(&o, j);
    return room_json_out_done(&o);
}
