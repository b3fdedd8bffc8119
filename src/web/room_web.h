/*
 * web/room_web.h — the web side of rooms (design §4, §5): the room:<id>
 * channel handler, the publisher the domain uses to broadcast, and the
 * REST routes under /api/rooms and /api/calls. The domain (domain/room.h)
 * knows nothing of this file; main wires the two together:
 *
 *     room_config_t rc = {.publisher = web_room_publisher, ...};
 *     room_configure(&rc);
 *     web_endpoint_add_handler(ep, &web_room_channel);
 *
 * and web_api_handle hands every /api/rooms* and /api/calls request to
 * web_api_rooms_route after the API key was checked.
 *
 * Threads: as web/channel.h (channel callbacks run in the connection
 * process) and web/api.h (routes run in the connection process that
 * answers the request; deferred answers come back to it).
 */
#ifndef ROOST_WEB_ROOM_WEB_H
#define ROOST_WEB_ROOM_WEB_H

#include <stdbool.h>

#include "domain/room.h"
#include "net/http.h"
#include "web/api.h"
#include "web/channel.h"

/* room:<id>: join checks the token's `room` claim (the id or "*", else
 * "unauthorized"); {"role":"viewer"} joins as a viewer. Events in:
 * status, data, signal. Events out: room_status, presence_state,
 * presence_diff, data, signal, room_ended (then phx_close). */
extern const web_channel_handler_t web_room_channel;

/* Publishes through the fast lane: web_broadcast_new + exclude +
 * web_broadcast_publish (encoded once, one shared frame per subscriber).
 * Any thread. */
extern const room_publisher_t web_room_publisher;

/* True if req is a rooms route; then *rc is WEB_API_DONE (res filled) or
 * WEB_API_LATER (deferred). The caller has checked the API key. */
bool web_api_rooms_route(const web_api_t *api, const net_http_request_t *req,
                         web_api_response_t *res, int *rc);

/* Appends the rooms, history and store metrics (Prometheus text). */
void web_api_rooms_metrics(net_http_buf_t *b);

#endif /* ROOST_WEB_ROOM_WEB_H */
