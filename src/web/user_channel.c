/*
 * web/user_channel.c — the topic user:<id> (see web/channel.h): a user's
 * own channel, one per connection of that user. Its presence lists the
 * user's devices; POST /api/users/:id/notify rings all of them.
 *
 * The topic carries no state of its own: join checks the token, tracks
 * presence (synchronously: web/presence.h) and is answered at once;
 * notifications are broadcasts on the topic, so they take the fast lane
 * like any other. Per idle channel this costs the presence table's entry
 * and nothing else: the channel's state is the presence handle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "web/channel.h"
#include "web/presence.h"

#define PREFIX "user:"

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static web_ch_result_t user_join(web_channel_t *ch, const char *topic, json_t *payload,
                                 void **state)
{
    const char *id = topic + strlen(PREFIX);
    const char *me = web_channel_user(ch);
    if (!id[0] || !me || strcmp(id, me) != 0) {
        web_channel_join_refuse(ch, "unauthorized");
        return WEB_CH_OK;
    }
    web_channel_join_ok(ch, NULL);
    /* After the join reply: presence_state must follow it (Phoenix pushes
     * it from after_join). The meta is written as text: no json_t to
     * build and dump on the join path. */
    char meta[48];
    int n = snprintf(meta, sizeof meta, "{\"online_at\":%lld}", (long long)wall_ms());
    /* The channel's state is the presence handle itself (a copyable
     * pointer, presence.h): no block of its own per channel. */
    web_presence_t pr = {0};
    int rc = web_presence_track_text(&pr, ch, id, meta, (size_t)n);
    *state = pr.entry;
    /* Presence is a view, not the channel's purpose: a failed track is
     * not worth failing the join, but it must be visible. */
    if (rc != WEB_OK)
        web_channel_push(ch, "presence_unavailable", NULL);
    return WEB_CH_OK;
}

static web_ch_result_t user_in(web_channel_t *ch, void *state, const char *event,
                               json_t *payload)
{
    /* Nothing to send on this topic yet: it is a receiving line. */
    json_t *r = json_pack("{ss}", "reason", "unknown event");
    web_channel_reply(ch, "error", r);
    json_decref(r);
    return WEB_CH_OK;
}

static void user_terminate(web_channel_t *ch, void *state, web_ch_exit_t why)
{
    web_presence_t pr = {.entry = state}; /* NULL if the track failed */
    web_presence_untrack(&pr, ch);
}

const web_channel_handler_t web_user_channel = WEB_CHANNEL_HANDLER(
    .prefix = PREFIX, .join = user_join, .handle_in = user_in,
    .terminate = user_terminate);

int web_user_notify(const char *user, const char *event, const char *payload_json,
                    size_t payload_len)
{
    if (!user || !user[0] || !event)
        return WEB_E_ARG;
    size_t n = strlen(PREFIX) + strlen(user) + 1;
    char *topic = malloc(n);
    if (!topic)
        return WEB_E_NOMEM;
    memcpy(topic, PREFIX, strlen(PREFIX));
    memcpy(topic + strlen(PREFIX), user, strlen(user) + 1);
    web_broadcast_t *b = web_broadcast_new(topic, event, payload_json, payload_len);
    free(topic);
    if (!b)
        return WEB_E_ARG;
    int r = web_broadcast_publish(b);
    web_broadcast_release(b);
    return r;
}
