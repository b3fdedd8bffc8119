/*
 * domain/rjson.h — JSON text to and from jansson values, for the room
 * state and the other JSON the rooms make and read themselves: faster
 * than jansson's own json_dumps / json_loadb, same bytes, same verdicts.
 *
 * Why: jansson's serialiser checks every object and array for cycles
 * (an snprintf("%p") and a hash-table insert per container) and formats
 * every integer with snprintf; its parser reads through a character
 * stream one call per byte. For a room state of a few hundred bytes that
 * was ~60,000 instructions to write and ~40,000-70,000 to read: the
 * largest costs of a status change and of a RoomServer restart. These
 * functions build and walk the same jansson values (json_t), so the rest
 * of the code is unchanged.
 *
 * Contracts (tests compare both against jansson on generated and
 * mutated inputs, test_domain_state):
 *   - room_json_dump writes exactly json_dumps(j, JSON_COMPACT |
 *     JSON_ENCODE_ANY): keys in the object's order, '"', '\\' and control
 *     characters escaped as jansson does (\uXXXX in upper case), other
 *     UTF-8 copied. j must be a tree (no value inside itself: jansson
 *     would refuse it, this would not end).
 *   - room_json_load accepts what json_loadb(text, len, flags) accepts
 *     for flags 0 or JSON_DECODE_ANY, and gives equal values: RFC 8259,
 *     UTF-8 checked, no \u0000, no lone surrogates, integers that fit
 *     json_int_t (larger ones are refused, as jansson refuses them),
 *     reals through strtod, nesting at most 2048 deep, duplicate keys
 *     keep the last. It does not say why it refused (NULL). One
 *     difference, on purpose: jansson skips a NUL byte that directly
 *     follows a number or true/false/null ("[1\0]" reads as [1]); here a
 *     NUL byte outside a string is refused like any other stray byte (in
 *     a string both refuse it).
 *
 * Any thread; nothing shared. Ownership: room_json_dump returns a new
 * buffer (refs = 1), room_json_load a new reference; both NULL on
 * ENOMEM or, for load, on invalid text. The reader's input may come from
 * anywhere (it is fuzzed: fuzz/fuzz_rjson.c).
 */
#ifndef ROOST_DOMAIN_RJSON_H
#define ROOST_DOMAIN_RJSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "rt/rt.h"

/* j as compact text in a refcounted buffer (NUL after len), written once
 * straight into it; hint: a guess at the size. */
rt_buf_t *room_json_dump(const json_t *j, size_t hint);

/* len bytes of text parsed; flags 0 (an object or an array) or
 * JSON_DECODE_ANY (any value). NULL: refused, or out of memory (then
 * *nomem, if given, is true). In domain/rjson_read.c, which needs only
 * jansson (no runtime): the web layer reads client frames with it too. */
json_t *room_json_load(const char *text, size_t len, size_t flags, bool *nomem);

/* Building a buffer from pieces (room_state_dump appends ,"seen":{...}
 * to the state). An out that failed stays failed; done gives NULL then. */
typedef struct room_json_out {
    rt_buf_t *b;   /* not shared yet: grown with realloc */
    size_t cap;    /* bytes of b->data, the NUL excluded */
    bool failed;
} room_json_out_t;

bool room_json_out_init(room_json_out_t *o, size_t hint);
void room_json_out_value(room_json_out_t *o, const json_t *j);
void room_json_out_raw(room_json_out_t *o, const char *s, size_t n);
/* Drops the last n bytes written (n at most what was written). */
void room_json_out_unput(room_json_out_t *o, size_t n);
size_t room_json_out_len(const room_json_out_t *o);
/* The buffer (trimmed, NUL-terminated), or NULL if anything failed. */
rt_buf_t *room_json_out_done(room_json_out_t *o);

#endif /* ROOST_DOMAIN_RJSON_H */
