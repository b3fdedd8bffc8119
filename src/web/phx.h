/*
 * web/phx.h — Phoenix Channels message codec (design §4).
 *
 * Turns a WebSocket text message into a phx_msg_t and server messages into
 * text payloads, in the two serializer versions phoenix.js and the mobile
 * Phoenix clients speak:
 *   V2 (vsn=2.0.0):          [join_ref, ref, topic, event, payload]
 *   V1 (vsn=1.0.0 or none):  {"topic", "event", "payload", "ref", "join_ref"}
 * The version is fixed per connection by the vsn query parameter.
 *
 * Decoding is strict about the envelope and says what is wrong, so the
 * endpoint can close with 1007 and a reason that fits a close frame
 * (phx_strerror()):
 * join_ref and ref are strings or null (V1: ref and join_ref may be
 * absent, meaning null); topic and event are strings; the payload may be
 * any JSON value, as in Phoenix — whether an event needs an object (a
 * join, a status) is for the channel to decide, not the codec. A string
 * holding \u0000 or a number too large for int64 is not accepted by
 * jansson and reported as invalid JSON. So is, regrettably, a message
 * that jansson could not parse for lack of memory: jansson 2.14 reports
 * that as a syntax error (the connection closes; nothing is misread).
 *
 * Encoding writes the envelope by hand around the payload dumped by
 * jansson, straight into one block that also has room for the WebSocket
 * frame header in front: the result is both the text payload and a ready
 * frame (net/ws.h) that can be written to many connections. Optional
 * headroom before it lets the caller put its own header (a reference
 * count, a message header) in the same allocation. With a pre-serialised
 * payload (phx_encode_raw) the block is sized exactly: one allocation.
 * With a json_t payload it starts at an estimate and grows geometrically
 * if the payload is larger (a few reallocs for large payloads).
 *
 * Ownership: phx_decode() gives the message a reference to the parsed
 * JSON; every pointer in phx_msg_t borrows from it until phx_msg_free()
 * (json_incref the payload to keep it longer). Encoders borrow their
 * arguments; phx_out_t owns its block until phx_out_free() or until the
 * caller takes `base` over (then free(base) it).
 * Threads: no state; every function is reentrant.
 */
#ifndef ROOST_WEB_PHX_H
#define ROOST_WEB_PHX_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum phx_vsn {
    PHX_V1 = 1,
    PHX_V2 = 2,
} phx_vsn_t;

enum {
    PHX_OK = 0,
    PHX_E_NOMEM = -1,
    PHX_E_ARG = -2,        /* encoder: NULL topic/event, string not UTF-8 */
    PHX_E_JSON = -3,       /* not valid JSON */
    PHX_E_NOT_ARRAY = -4,  /* V2: not a JSON array */
    PHX_E_ARITY = -5,      /* V2: array without exactly 5 elements */
    PHX_E_NOT_OBJECT = -6, /* V1: not a JSON object */
    PHX_E_JOIN_REF = -7,   /* join_ref neither string nor null */
    PHX_E_REF = -8,        /* ref neither string nor null */
    PHX_E_TOPIC = -9,      /* topic missing or not a string */
    PHX_E_EVENT = -10,     /* event missing or not a string */
    PHX_E_PAYLOAD = -11,   /* V1: payload missing */
    PHX_E_VSN = -12,       /* vsn not 1.x.y or 2.0.x */
};

/* A decoded client message. Strings are NUL-terminated UTF-8. */
typedef struct phx_msg {
    const char *join_ref; /* NULL when null */
    const char *ref;      /* NULL when null: the client wants no reply */
    const char *topic;
    const char *event;
    json_t *payload;      /* any JSON value, never NULL; borrowed */
    json_t *root;         /* private: owns everything above */
} phx_msg_t;

/* The serializer for a vsn query value: NULL or "" -> V1 (Phoenix's
 * default), "1.x.y" -> V1, "2.0.x" -> V2, anything else PHX_E_VSN. */
int phx_vsn_parse(const char *vsn, phx_vsn_t *out);

/* Decode one text message. Returns 0 and fills *msg, or an error with
 * *msg zeroed (phx_msg_free on it is harmless). */
int phx_decode(phx_vsn_t vsn, const char *data, size_t len, phx_msg_t *msg);

/* Drop the message's reference; zeroes *msg. Safe to call twice. */
void phx_msg_free(phx_msg_t *msg);

/* Close reason for a decode error, at most 123 bytes (a close frame's
 * reason). Static storage. */
const char *phx_strerror(int err);

/* An encoded message. Set headroom (or zero-initialise) before calling an
 * encoder; the encoder fills the rest. Block layout:
 *   base: [headroom][unused][frame header][json][NUL]
 *                            ^frame       ^json
 */
typedef struct phx_out {
    size_t headroom;  /* in: bytes left free at base for the caller */
    uint8_t *base;    /* out: the malloc'd block */
    char *json;       /* out: the text payload, NUL-terminated */
    size_t json_len;
    uint8_t *frame;   /* out: a complete unmasked WebSocket text frame */
    size_t frame_len;
} phx_out_t;

/* A message: V2 [join_ref, ref, topic, event, payload], V1 the object.
 * join_ref and ref may be NULL (null); topic and event may not; payload
 * NULL means {}. Returns 0, PHX_E_ARG or PHX_E_NOMEM; on error out keeps
 * only its headroom. */
int phx_encode(phx_vsn_t vsn, const char *join_ref, const char *ref, const char *topic,
               const char *event, const json_t *payload, phx_out_t *out);

/* The same with the payload already serialised (payload_json, payload_len
 * bytes of JSON, copied as is; it must be valid UTF-8, else PHX_E_ARG;
 * its JSON syntax is the caller's promise). Exactly one allocation. */
int phx_encode_raw(phx_vsn_t vsn, const char *join_ref, const char *ref,
                   const char *topic, const char *event, const char *payload_json,
                   size_t payload_len, phx_out_t *out);

/* A reply: event "phx_reply", payload {"status": status, "response":
 * response} with status "ok" or "error" (any string is written as is);
 * response NULL means {}. */
int phx_reply(phx_vsn_t vsn, const char *join_ref, const char *ref, const char *topic,
              const char *status, const json_t *response, phx_out_t *out);

/* The same with the response already serialised (response_json,
 * response_len bytes of JSON, copied as is, as for phx_encode_raw). */
int phx_reply_raw(phx_vsn_t vsn, const char *join_ref, const char *ref, const char *topic,
                  const char *status, const char *response_json, size_t response_len,
                  phx_out_t *out);

/* Release the block (unless the caller took base over and set it NULL). */
void phx_out_free(phx_out_t *out);

#endif /* ROOST_WEB_PHX_H */
