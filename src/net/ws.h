/*
 * net/ws.h — RFC 6455 WebSocket, server side: handshake, frame reader,
 * frame writer.
 *
 * The wire layer under the endpoint (design §1, §4): no event loop, no
 * runtime, no I/O.
 *   - Handshake: ws_handshake_check() validates an upgrade request parsed
 *     by net/http.h and computes Sec-WebSocket-Accept;
 *     ws_phoenix_protocol() reads phoenix.js's token subprotocol;
 *     ws_handshake_response() / ws_handshake_reject() write the answer.
 *   - Reader: a ws_reader_t is fed whatever bytes a read returned and
 *     hands out complete events (text/binary message, ping, pong, close),
 *     pull-style, one per call; see ws_reader_feed().
 *   - Writer: server frames are unmasked, so an encoded frame is a plain
 *     self-contained byte string that can be written unchanged to any
 *     number of connections (the broadcast fast lane of design §1).
 *
 * Ownership and lifetime:
 *   - ws_reader_t is caller-allocated; ws_reader_init() once,
 *     ws_reader_free() when done (it may also drop the buffer of an idle
 *     reader between messages; see there). An event's data borrows the
 *     reader's buffer and is valid until the next ws_reader_feed() or
 *     ws_reader_free().
 *   - ws_frame_t returned by the encoders owns one malloc'd block; release
 *     it with ws_frame_free() (or free(frame.data)), or take it over.
 *
 * Threads: no global state. A reader is used by one thread at a time;
 * every other function is reentrant. A finished frame is immutable and
 * may be read by many threads at once.
 */
#ifndef ROOST_NET_WS_H
#define ROOST_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http.h"

#define WS_MAX_MESSAGE_DEFAULT (1024u * 1024u) /* design §6 --max-frame */
#define WS_FRAME_HEADER_MAX 10                /* largest server frame header */
#define WS_CONTROL_MAX 125                    /* RFC 6455 §5.5 */
#define WS_CLOSE_REASON_MAX 123               /* 125 minus the 2-byte code */
#define WS_ACCEPT_LEN 28                      /* base64 of a SHA-1 digest */

typedef enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
} ws_opcode_t;

/* Close codes roost sends or reports (RFC 6455 §7.4, design §4). */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,    /* server going away, clients come back */
    WS_CLOSE_PROTOCOL = 1002,      /* framing error */
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,     /* reported only: close frame had no code */
    WS_CLOSE_INVALID_DATA = 1007,  /* bad UTF-8, bad JSON, bad message */
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,       /* message over the limit */
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_RESTART = 1012,       /* drain on shutdown (design §4) */
    WS_CLOSE_SLOW_CONSUMER = 3008, /* outbound queue over its bound */
};

/* Results of ws_reader_feed() (>= 0) and errors of this module (< 0). */
enum {
    WS_NEED_MORE = 0,
    WS_EVENT = 1,

    WS_E_NOMEM = -1,
    WS_E_ARG = -2,
    /* Reader errors; ws_error_close_code() gives the code to close with. */
    WS_E_RSV = -3,                /* 1002: RSV1-3 set, no extension agreed */
    WS_E_OPCODE = -4,             /* 1002: reserved opcode */
    WS_E_UNMASKED = -5,           /* 1002: client frame without mask */
    WS_E_CONTROL_FRAGMENTED = -6, /* 1002: control frame without FIN */
    WS_E_CONTROL_TOO_LONG = -7,   /* 1002: control payload > 125 bytes */
    WS_E_CONTINUATION = -8,       /* 1002: continuation with no message open */
    WS_E_INTERLEAVED = -9,        /* 1002: new message inside a fragmented one */
    WS_E_LENGTH = -10,            /* 1002: 64-bit length with the top bit set */
    WS_E_CLOSE_PAYLOAD = -11,     /* 1002: close payload of exactly 1 byte */
    WS_E_CLOSE_CODE = -12,        /* 1002: close code not allowed on the wire */
    WS_E_UTF8 = -13,              /* 1007: text message not valid UTF-8 */
    WS_E_CLOSE_UTF8 = -14,        /* 1007: close reason not valid UTF-8 */
    WS_E_TOO_BIG = -15,           /* 1009: message over max_message */
    WS_E_CLOSED = -16,            /* fed after the close event: nothing to send */
    /* Handshake errors; ws_handshake_status() gives the HTTP status. */
    WS_E_HS_METHOD = -20,   /* 405: not GET */
    WS_E_HS_HTTP = -21,     /* 400: HTTP version below 1.1 */
    WS_E_HS_UPGRADE = -22,  /* 400: no "Upgrade: websocket" */
    WS_E_HS_CONNECTION = -23, /* 400: Connection lacks "upgrade" */
    WS_E_HS_VERSION = -24,  /* 426: Sec-WebSocket-Version is not 13 */
    WS_E_HS_KEY = -25,      /* 400: Sec-WebSocket-Key missing, repeated or
                               not base64 of 16 bytes */
    WS_E_HS_PROTOCOL = -26, /* 400: bearer subprotocol not decodable */
};

/* Close code to send for a reader error (1002, 1007, 1009, 1011), or 0
 * when nothing should be sent (WS_E_CLOSED, non-reader errors). */
int ws_error_close_code(int err);

/* Short English description, at most WS_CLOSE_REASON_MAX bytes, fit to be
 * the reason of a close frame. Static storage. */
const char *ws_strerror(int err);

/* ---- UTF-8 ------------------------------------------------------------ */

/* Incremental UTF-8 validator (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). A sequence may be split across calls. */
typedef struct ws_utf8 {
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* allowed range of the next continuation byte */
} ws_utf8_t;

void ws_utf8_init(ws_utf8_t *u);
/* False as soon as the bytes so far cannot begin valid UTF-8. */
bool ws_utf8_feed(ws_utf8_t *u, const void *data, size_t len);
/* True if the bytes fed so far end on a character boundary. */
bool ws_utf8_complete(const ws_utf8_t *u);
/* Whole-buffer check. */
bool ws_utf8_valid(const void *data, size_t len);

/* ---- Handshake -------------------------------------------------------- */

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)),
 * written NUL-terminated to accept. The key is used as given (not
 * validated here). Returns 0 or WS_E_NOMEM (libcrypto failure). */
int ws_accept_key(const char *key, size_t key_len, char accept[WS_ACCEPT_LEN + 1]);

/* Validate a WebSocket upgrade request (RFC 6455 §4.2.1): GET, HTTP/1.1+,
 * Upgrade holds "websocket", Connection holds "upgrade",
 * Sec-WebSocket-Version is 13, exactly one Sec-WebSocket-Key that is
 * base64 of 16 bytes. On success writes the accept value and returns 0;
 * else a WS_E_HS_* error (accept untouched). Borrows req. */
int ws_handshake_check(const net_http_request_t *req, char accept[WS_ACCEPT_LEN + 1]);

/* phoenix.js subprotocols (design §4): "Sec-WebSocket-Protocol: phoenix,
 * base64url.bearer.phx.<base64 of the token>". Sets *protocol to "phoenix"
 * (static) if the client offered it, else NULL; then the server must
 * answer with that subprotocol, or with none. If a bearer entry is
 * present, *token receives the decoded token as a new NUL-terminated
 * string (free() it) and *token_len its length; else *token is NULL. The
 * encoded part may use the standard or the URL-safe base64 alphabet, with
 * or without padding (phoenix.js sends btoa() output without '='). Returns
 * 0, WS_E_HS_PROTOCOL (bearer not decodable, empty, or holding a NUL) or
 * WS_E_NOMEM; on error nothing is allocated. token_len may be NULL. */
int ws_phoenix_protocol(const net_http_request_t *req, const char **protocol,
                        char **token, size_t *token_len);

/* "101 Switching Protocols" with Upgrade, Connection, Sec-WebSocket-Accept
 * and, if protocol is not NULL, Sec-WebSocket-Protocol. Appends to out;
 * on error out is unchanged. */
int ws_handshake_response(net_http_buf_t *out, const char *accept, const char *protocol);

/* HTTP status for a handshake error: 400, 405 or 426 (500 for NOMEM). */
int ws_handshake_status(int err);

/* A complete JSON error response for a handshake error, with
 * "Sec-WebSocket-Version: 13" on 426 and "Allow: GET" on 405, and
 * Connection: close. Appends to out; on error out is unchanged. */
int ws_handshake_reject(net_http_buf_t *out, int err);

/* ---- Reader ----------------------------------------------------------- */

typedef struct ws_reader_config {
    /* Largest message (sum of its fragments' payloads) accepted, in bytes;
     * one byte more closes with 1009. 0 means the default. */
    size_t max_message;
} ws_reader_config_t;

typedef enum ws_event_type {
    WS_EV_TEXT = 1, /* complete text message, valid UTF-8 */
    WS_EV_BINARY,   /* complete binary message */
    WS_EV_PING,     /* answer with a pong carrying the same payload */
    WS_EV_PONG,
    WS_EV_CLOSE,    /* peer closed; answer with ws_close_reply() */
} ws_event_type_t;

typedef struct ws_event {
    ws_event_type_t type;
    /* Message or control payload (for CLOSE: the reason, valid UTF-8).
     * Never NULL; NUL-terminated (not counted in len). Borrowed from the
     * reader until its next feed. */
    const uint8_t *data;
    size_t len;
    /* CLOSE only: the peer's code, or WS_CLOSE_NO_STATUS if it sent none. */
    uint16_t close_code;
} ws_event_t;

/* The reader. Caller-allocated; fields after `data` are private. */
typedef struct ws_reader {
    void *data; /* for the caller */

    size_t max_message;
    int state;              /* header, payload, closed */
    int err;                /* sticky error */
    uint8_t hdr[14];        /* frame header being collected */
    uint8_t hdr_have, hdr_need;
    uint8_t opcode;         /* current frame */
    bool fin;
    uint8_t mask[4];
    uint8_t mask_pos;
    uint64_t remaining;     /* payload bytes of the current frame still due */
    uint8_t msg_opcode;     /* TEXT or BINARY while a message is open, else 0 */
    bool msg_delivered;     /* last event was a message: reset on next feed */
    ws_utf8_t utf8;         /* of the open text message */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    uint8_t ctl[WS_CONTROL_MAX + 1];
    size_t ctl_len;
} ws_reader_t;

/* Initialise. cfg is copied; NULL means defaults. Does not allocate. */
void ws_reader_init(ws_reader_t *r, const ws_reader_config_t *cfg);

/* Release the message buffer. Safe to call twice. Between messages (e.g.
 * right after a message event that ended the read) the reader stays
 * usable and allocates again on demand, so an idle connection can hold
 * no buffer at all. In the middle of a fragmented message the bytes so
 * far are gone: the reader is then finished (WS_E_CLOSED), never left to
 * deliver a message with a hole in it. */
void ws_reader_free(ws_reader_t *r);

/* Feed bytes from the client. Parses until one event is complete, an
 * error is found or the bytes run out, and sets *consumed (may be NULL)
 * to the bytes used:
 *   WS_EVENT      *ev is filled; call again with the bytes after
 *                 *consumed (there may be more frames in them).
 *   WS_NEED_MORE  *consumed == len; wait for more bytes.
 *   < 0           a protocol error: send
 *                 ws_close_encode(ws_error_close_code(err), ws_strerror(err))
 *                 and close. Errors are sticky.
 * After a WS_EV_CLOSE event the reader is finished: later calls return
 * WS_E_CLOSED and consume nothing (RFC 6455 §5.5.1: nothing after a close
 * frame is processed).
 * Rules enforced: client frames must be masked; RSV bits must be 0;
 * unknown opcodes are refused; control frames have FIN and at most 125
 * bytes and may arrive between the fragments of a message; continuation
 * frames only inside a message, data frames only outside one; a text
 * message must be valid UTF-8 (checked as bytes arrive, so a bad byte
 * fails at once, and a sequence split across fragments is fine); a close
 * payload is empty or a valid code plus a UTF-8 reason; a message larger
 * than max_message fails as soon as a frame header announces it. Any
 * split of the input yields the same events. */
int ws_reader_feed(ws_reader_t *r, const void *data, size_t len, size_t *consumed,
                   ws_event_t *ev);

/* ---- Writer ----------------------------------------------------------- */

/* One server frame, self-contained: `len` bytes at `data` go on the wire
 * unchanged to any connection. Owns data (one malloc'd block). */
typedef struct ws_frame {
    uint8_t *data;
    size_t len;
} ws_frame_t;

/* Size of the header of a server frame with this payload: 2, 4 or 10. */
size_t ws_frame_header_len(size_t payload_len);

/* Write a server frame header (unmasked) to dst, which has room for
 * WS_FRAME_HEADER_MAX bytes; returns its length. fin false is for a
 * caller that streams a message in fragments. No validation: see
 * ws_frame_write(). */
size_t ws_frame_write_header(uint8_t *dst, ws_opcode_t op, bool fin, size_t payload_len);

/* Write a complete FIN frame to dst (cap bytes): the header then the
 * payload. Returns the frame length, or WS_E_ARG (unknown opcode,
 * continuation, control payload over 125 bytes, cap too small). Lets a
 * caller place a frame inside an allocation of its own, e.g. after a
 * reference count, so a broadcast costs one allocation. */
ptrdiff_t ws_frame_write(void *dst, size_t cap, ws_opcode_t op, const void *payload,
                         size_t len);

/* Allocate and encode one FIN frame. Returns 0, WS_E_ARG (as above) or
 * WS_E_NOMEM; on error *out is untouched. payload may be NULL if len is 0. */
int ws_frame_encode(ws_opcode_t op, const void *payload, size_t len, ws_frame_t *out);

/* A close frame. code 0 sends an empty payload (reason must be empty);
 * otherwise code must be one a peer may send (1000-1003, 1007-1014,
 * 3000-4999) and the reason valid UTF-8; a reason longer than 123 bytes
 * is cut at a character boundary. reason may be NULL. Returns 0,
 * WS_E_ARG or WS_E_NOMEM. */
int ws_close_encode(uint16_t code, const char *reason, size_t reason_len,
                    ws_frame_t *out);

/* The close frame that answers a WS_EV_CLOSE event: the peer's code
 * echoed (RFC 6455 §5.5.1), or an empty payload if it sent none. */
int ws_close_reply(const ws_event_t *ev, ws_frame_t *out);

/* Release a frame's block; safe on a zeroed frame. */
void ws_frame_free(ws_frame_t *f);

#endif /* ROOST_NET_WS_H */
