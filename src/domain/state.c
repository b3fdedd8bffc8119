/*
 * domain/state.c — a room's state as JSON: building, changing, checking,
 * dumping and migrating it (see domain/state.h). Everything here is a
 * plain function of its arguments; the RoomServer decides when to call
 * what and keeps the counters that make each change O(1).
 */
#include "domain/state.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain/rjson.h"
#include "domain/room.h"

int64_t room_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- building ------------------------------------------------------------------ */

json_t *room_state_new(const char *id, int64_t now_ms, int64_t max_participants,
                       int64_t empty_timeout_s)
{
    return json_pack("{ss ss sI sI sI sI sn sI s{}}", "id", id, "status", "waiting", "version",
                     (json_int_t)1, "created_at", (json_int_t)now_ms, "max_participants",
                     (json_int_t)(max_participants > 0 ? max_participants : 0),
                     "empty_timeout", (json_int_t)empty_timeout_s, "started_at", "viewers",
                     (json_int_t)0, "participants");
}

/* ---- migration ------------------------------------------------------------------ */

/* v1 -> v2: participants array -> map; the fields v1 did not have. */
static json_t *migrate_1(json_t *st)
{
    json_t *old = json_object_get(st, "participants");
    json_t *map = json_object(), *seen = json_object();
    if (!map || !seen)
        goto fail;
    if (old && !json_is_array(old))
        goto fail;
    size_t i;
    json_t *p;
    json_array_foreach(old, i, p) {
        const char *user = json_string_value(json_object_get(p, "user"));
        if (!user || !room_id_valid(user, strlen(user)))
            goto fail;
        json_t *status = json_object_get(p, "status");
        json_t *joined = json_object_get(p, "joined_at");
        json_int_t at = json_is_integer(joined) ? json_integer_value(joined) : 0;
        json_t *e = json_pack("{sbsIsO}", "connected",
                              json_is_true(json_object_get(p, "connected")), "joined_at", at,
                              "status", json_is_object(status) ? status : json_object());
        if (!e || json_object_set_new(map, user, e) != 0 ||
            json_object_set_new(seen, user, json_integer(at)) != 0)
            goto fail;
    }
    const char *status = json_string_value(json_object_get(st, "status"));
    json_t *created = json_object_get(st, "created_at");
    /* v1 did not record when the call started: an active room is taken
     * to have started when it was created, the earliest it could have. */
    json_t *started = status && strcmp(status, "active") == 0 && json_is_integer(created)
                          ? json_integer(json_integer_value(created))
                          : json_null();
    int empty_s = room_config()->empty_timeout_ms / 1000;
    if (json_object_set_new(st, "participants", map) != 0 ||
        json_object_set_new(st, "seen", seen) != 0 ||
        json_object_set_new(st, "started_at", started) != 0 ||
        json_object_set_new(st, "max_participants", json_integer(0)) != 0 ||
        json_object_set_new(st, "empty_timeout", json_integer(empty_s)) != 0 ||
        json_object_set_new(st, "viewers", json_integer(0)) != 0)
        return json_decref(st), NULL; /* map and seen were taken */
    return st;
fail:
    json_decref(map);
    json_decref(seen);
    json_decref(st);
    return NULL;
}

json_t *room_state_migrate(json_t *st, uint32_t from_version)
{
    if (!json_is_object(st)) {
        json_decref(st);
        return NULL;
    }
    if (from_version < 1) {
        json_decref(st);
        return NULL;
    }
    if (from_version == 1) {
        st = migrate_1(st);
        from_version = 2;
    }
    /* Future versions: one step each, in order. */
    if (st && room_state_check(st) != ROOM_OK) {
        json_decref(st);
        return NULL;
    }
    return st;
}

const store_schema_t room_state_schema = {
    .version = ROOM_STATE_SCHEMA,
    .migrate = room_state_migrate,
};

/* ---- checking -------------------------------------------------------------------- */

static bool is_int(const json_t *o, const char *k)
{
    return json_is_integer(json_object_get(o, k));
}

int room_state_check(const json_t *st)
{
    if (!json_is_object(st))
        return ROOM_EINVAL;
    const char *id = json_string_value(json_object_get(st, "id"));
    const char *status = json_string_value(json_object_get(st, "status"));
    if (!id || !room_id_valid(id, strlen(id)) || !status ||
        (strcmp(status, "waiting") != 0 && strcmp(status, "active") != 0 &&
         strcmp(status, "ended") != 0))
        return ROOM_EINVAL;
    if (!is_int(st, "version") || !is_int(st, "created_at") || !is_int(st, "max_participants") ||
        !is_int(st, "empty_timeout"))
        return ROOM_EINVAL;
    json_t *started = json_object_get(st, "started_at");
    if (started && !json_is_null(started) && !json_is_integer(started))
        return ROOM_EINVAL;
    json_t *ps = json_object_get(st, "participants");
    if (!json_is_object(ps))
        return ROOM_EINVAL;
    const char *user;
    json_t *p;
    json_object_foreach(ps, user, p) {
        if (!room_id_valid(user, strlen(user)) || !json_is_object(p) ||
            !json_is_boolean(json_object_get(p, "connected")) || !is_int(p, "joined_at") ||
            !json_is_object(json_object_get(p, "status")))
            return ROOM_EINVAL;
    }
    json_t *seen = json_object_get(st, "seen");
    if (seen && !json_is_object(seen))
        return ROOM_EINVAL;
    return ROOM_OK;
}

int room_state_split_seen(json_t *st, json_t **seen)
{
    json_t *s = json_object_get(st, "seen");
    if (json_is_object(s)) {
        json_incref(s);
        json_object_del(st, "seen");
        *seen = s;
        return ROOM_OK;
    }
    json_object_del(st, "seen");
    s = json_object();
    if (!s)
        return ROOM_ENOMEM;
    const char *user;
    json_t *p;
    json_object_foreach(json_object_get(st, "participants"), user, p) {
        if (json_object_set_new(s, user, json_integer(room_state_int(p, "joined_at"))) != 0) {
            json_decref(s);
            return ROOM_ENOMEM;
        }
    }
    *seen = s;
    return ROOM_OK;
}

/* ---- dumping --------------------------------------------------------------------- */

/* Both forms come from one serialisation of st: the stored form is the
 * public one with its closing brace replaced by ,"seen":<seen>}, and the
 * public form is a copy of its first part. (The sizes used to be
 * measured with a dry run of json_dumpb first, and st and seen dumped
 * separately: four passes over the state per change.) */
int room_state_dump(const json_t *st, const json_t *seen, rt_buf_t **pub, rt_buf_t **stored)
{
    static const char key[] = ",\"seen\":";
    room_json_out_t o;
    if (!json_is_object(st) || !room_json_out_init(&o, 512))
        return ROOM_ENOMEM;
    room_json_out_value(&o, st);
    size_t plen = room_json_out_len(&o);
    rt_buf_t *p = NULL;
    if (pub && plen && !(p = rt_buf_new(o.b->data, plen)))
        o.failed = true;
    if (stored) {
        room_json_out_unput(&o, 1); /* the closing brace */
        room_json_out_raw(&o, key, sizeof key - 1);
        if (seen)
            room_json_out_value(&o, seen);
        else
            o.failed = true;
        room_json_out_raw(&o, "}", 1);
    }
    rt_buf_t *s = room_json_out_done(&o);
    if (!s || (pub && !p)) {
        if (p)
            rt_buf_release(p);
        if (s)
            rt_buf_release(s);
        return ROOM_ENOMEM;
    }
    if (stored)
        *stored = s;
    else
        rt_buf_release(s);
    if (pub)
        *pub = p;
    return ROOM_OK;
}

/* ---- reading ---------------------------------------------------------------------- */

const char *room_state_id(const json_t *st)
{
    return json_string_value(json_object_get(st, "id"));
}

const char *room_state_status(const json_t *st)
{
    const char *s = json_string_value(json_object_get(st, "status"));
    return s ? s : "waiting";
}

bool room_state_ended(const json_t *st)
{
    return strcmp(room_state_status(st), "ended") == 0;
}

uint64_t room_state_version(const json_t *st)
{
    return (uint64_t)room_state_int(st, "version");
}

int64_t room_state_int(const json_t *st, const char *key)
{
    json_t *v = json_object_get(st, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

json_t *room_state_participant(const json_t *st, const char *user)
{
    return json_object_get(json_object_get(st, "participants"), user);
}

size_t room_state_count(const json_t *st)
{
    return json_object_size(json_object_get(st, "participants"));
}

size_t room_state_count_connected(const json_t *st)
{
    size_t n = 0;
    const char *user;
    json_t *p;
    json_object_foreach(json_object_get(st, "participants"), user, p)
        n += json_is_true(json_object_get(p, "connected"));
    return n;
}

/* ---- changing ----------------------------------------------------------------------- */

void room_state_bump(json_t *st)
{
    json_object_set_new(st, "version", json_integer((json_int_t)room_state_version(st) + 1));
}

int room_state_add(json_t *st, json_t *seen, const char *user, int64_t now_ms)
{
    json_t *ps = json_object_get(st, "participants");
    int64_t max = room_state_int(st, "max_participants");
    if (max > 0 && (int64_t)json_object_size(ps) >= max)
        return ROOM_EFULL;
    json_t *p = json_pack("{sbsIs{}}", "connected", 1, "joined_at", (json_int_t)now_ms, "status");
    if (!p || json_object_set_new(ps, user, p) != 0)
        return ROOM_ENOMEM;
    if (seen && !json_object_get(seen, user) &&
        json_object_set_new(seen, user, json_integer(now_ms)) != 0) {
        json_object_del(ps, user);
        return ROOM_ENOMEM;
    }
    return ROOM_OK;
}

int room_state_set_connected(json_t *st, const char *user, bool connected)
{
    json_t *p = room_state_participant(st, user);
    if (!p)
        return ROOM_ENOTFOUND;
    return json_object_set_new(p, "connected", json_boolean(connected)) == 0 ? ROOM_OK
                                                                             : ROOM_ENOMEM;
}

int room_state_remove(json_t *st, const char *user)
{
    return json_object_del(json_object_get(st, "participants"), user) == 0 ? ROOM_OK
                                                                           : ROOM_ENOTFOUND;
}

int room_state_merge_status_text(json_t *st, const char *user, const json_t *patch,
                                 char **text, size_t *len)
{
    json_t *p = room_state_participant(st, user);
    if (!p)
        return ROOM_ENOTMEMBER;
    if (!json_is_object(patch))
        return ROOM_EINVAL;
    json_t *cur = json_object_get(p, "status");
    /* Merge into a copy, so a status that would grow too large leaves
     * the participant exactly as it was. */
    json_t *next = json_is_object(cur) ? json_copy(cur) : json_object();
    if (!next || json_object_update(next, (json_t *)patch) != 0) {
        json_decref(next);
        return ROOM_ENOMEM;
    }
    /* One serialisation both bounds the size and is the text the caller
     * records (json_dumpb counts past the end of a buffer that is too
     * small). */
    char buf[ROOM_STATUS_MAX + 1];
    size_t n = json_dumpb(next, buf, sizeof buf, JSON_COMPACT);
    if (n == 0 || n > ROOM_STATUS_MAX) {
        json_decref(next);
        return n ? ROOM_ETOOLARGE : ROOM_ENOMEM;
    }
    char *copy = text ? malloc(n + 1) : NULL;
    if ((text && !copy) || json_object_set_new(p, "status", next) != 0) {
        free(copy);
        return ROOM_ENOMEM;
    }
    if (text) {
        memcpy(copy, buf, n);
        copy[n] = '\0';
        *text = copy;
        if (len)
            *len = n;
    }
    return ROOM_OK;
}

int room_state_merge_status(json_t *st, const char *user, const json_t *patch)
{
    return room_state_merge_status_text(st, user, patch, NULL, NULL);
}

bool room_state_settle(json_t *st, size_t connected, int64_t now_ms)
{
    const char *cur = room_state_status(st);
    if (strcmp(cur, "ended") == 0)
        return false;
    const char *want = connected >= 2 ? "active" : "waiting";
    if (connected >= 2 && json_is_null(json_object_get(st, "started_at")))
        json_object_set_new(st, "started_at", json_integer(now_ms));
    if (strcmp(cur, want) == 0)
        return false;
    json_object_set_new(st, "status", json_string(want));
    return true;
}

void room_state_end(json_t *st)
{
    json_object_set_new(st, "status", json_string("ended"));
}

void room_state_set_viewers(json_t *st, uint64_t viewers)
{
    json_object_set_new(st, "viewers", json_integer((json_int_t)viewers));
}

char *room_state_seen_array(const json_t *seen)
{
    json_t *a = json_array();
    const char *user;
    json_t *v;
    json_object_foreach((json_t *)seen, user, v) {
        if (!a || json_array_append_new(a, json_string(user)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}
