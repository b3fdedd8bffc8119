/*
 * media/janus_conn.h — one connection attempt of the media client
 * (media/janus.h) to Janus: a WebSocket client (subprotocol
 * janus-protocol) over plain TCP (ws://) or TLS (wss://), with a thread of
 * its own that does all of the socket's I/O.
 *
 * Why a thread that does everything: the connection is blocking work
 * (connect, TLS and WebSocket handshakes) that must not run on a scheduler,
 * and an OpenSSL connection may not be read and written from two threads
 * at once. So the media client's process only queues frames
 * (janus_conn_send, under a mutex, then a wake-up through an eventfd) and
 * the thread writes them, reads, answers pings, and hands every text
 * message to the process as a message:
 *   JANUS_IO_UP   {a = gen}              handshakes done, frames flow
 *   JANUS_IO_MSG  {a = gen, data = text} (RT_OWN_FREE) one text message
 *   JANUS_IO_DOWN {a = gen}              the attempt is over (failed or
 *                                        closed); sent exactly once, last
 * Internal to src/media: the media client is the only user.
 */
#ifndef ROOST_MEDIA_JANUS_CONN_H
#define ROOST_MEDIA_JANUS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "rt/rt.h"

typedef struct janus_conn janus_conn_t;

/* Frames the process has queued but the thread has not written yet may
 * add up to this much; past it Janus counts as gone (it stopped reading). */
#define JANUS_CONN_OUT_MAX (8u << 20)

typedef struct janus_conn_cfg {
    const char *host, *port, *path;  /* copied */
    SSL_CTX *tls;                    /* borrowed, must outlive the
                                        connection; NULL = plain ws:// */
    rt_pid_t owner;                  /* gets the JANUS_IO_* messages */
    uint64_t gen;                    /* their a */
} janus_conn_cfg_t;

/* Starts an attempt (its thread). NULL: out of memory or no thread. */
janus_conn_t *janus_conn_start(const janus_conn_cfg_t *cfg);
/* Queues one text frame (copied). false: over JANUS_CONN_OUT_MAX or out of
 * memory; the connection is then being closed (JANUS_IO_DOWN follows). */
bool janus_conn_send(janus_conn_t *c, const char *text, size_t len);
/* Closes it: the thread stops, JANUS_IO_DOWN follows. Any thread. */
void janus_conn_close(janus_conn_t *c);
/* Closes it, waits for the thread and frees everything. NULL ok. */
void janus_conn_free(janus_conn_t *c);
uint64_t janus_conn_gen(const janus_conn_t *c);

/* A TLS client context that verifies Janus's certificate against ca_file
 * (PEM; NULL = the system's trusted CAs). NULL on failure, with a reason
 * in err (err_len bytes). Free with SSL_CTX_free. */
SSL_CTX *janus_conn_tls_new(const char *ca_file, char *err, size_t err_len);

#endif
