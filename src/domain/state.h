/*
 * domain/state.h — a room's state as JSON (design §4 "Room state"): how
 * it is built, changed, checked, written and migrated. Pure functions on
 * jansson values: no processes, no I/O, so the unit tests drive them
 * directly and the RoomServer stays about ordering and durability.
 *
 * The public form (join reply, room_status, GET /api/rooms/:id):
 *   {"id", "status": "waiting"|"active"|"ended", "version", "created_at",
 *    "max_participants", "empty_timeout" (s), "started_at" (ms or null),
 *    "viewers", "participants": {user: {"connected", "joined_at", "status"}}}
 * The stored form is the public one plus "seen": {user: first joined_at},
 * everyone who ever took part (the call record's participants). viewers
 * is stored but means nothing after a load (it is a live count).
 *
 * Schema versions (the store keeps each state's version; the store calls
 * room_state_migrate on load for older ones, as OTP code_change):
 *   1  the prototype: "participants" was an array of
 *      {"user", "connected", "joined_at", "status"}; no max_participants,
 *      empty_timeout, started_at, viewers or seen.
 *   2  the form above (ROOM_STATE_SCHEMA).
 *
 * Ownership: functions borrow their json_t arguments unless they say
 * otherwise; returned json_t and text are the caller's. Any thread.
 */
#ifndef ROOST_DOMAIN_STATE_H
#define ROOST_DOMAIN_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rt/rt.h"
#include "store/store.h"

#define ROOM_STATE_SCHEMA 2u

/* For store_set_schema: version ROOM_STATE_SCHEMA, migrate below. */
extern const store_schema_t room_state_schema;

/* A new room: waiting, version 1, no participants. NULL on ENOMEM. */
json_t *room_state_new(const char *id, int64_t now_ms, int64_t max_participants,
                       int64_t empty_timeout_s);

/* Migrates st (taken) from from_version to ROOM_STATE_SCHEMA; returns the
 * new state or NULL (st released) if it cannot be read. */
json_t *room_state_migrate(json_t *st, uint32_t from_version);

/* ROOM_OK if st has the current schema's shape, else ROOM_EINVAL. */
int room_state_check(const json_t *st);

/* Splits a stored state: takes "seen" out of st into *seen (a new object
 * if st had none, built from its participants). Returns ROOM_OK or
 * ROOM_ENOMEM. */
int room_state_split_seen(json_t *st, json_t **seen);

/* The public text (dump of st) and the stored text (public + "seen"), as
 * refcounted buffers, from one serialisation of st (room_json_dump's
 * writer, domain/rjson.h): the stored form is the public one with its
 * closing brace replaced by ,"seen":<seen>}. Either out pointer may be
 * NULL when that form is not wanted (seen is then not needed for a NULL
 * stored). Returns ROOM_OK or ROOM_ENOMEM (nothing made). */
int room_state_dump(const json_t *st, const json_t *seen, rt_buf_t **pub, rt_buf_t **stored);

/* ---- Reading ---------------------------------------------------------------- */
const char *room_state_id(const json_t *st);
const char *room_state_status(const json_t *st);     /* "waiting", "active", "ended" */
bool room_state_ended(const json_t *st);
uint64_t room_state_version(const json_t *st);
int64_t room_state_int(const json_t *st, const char *key); /* 0 if absent or null */
/* The participant object of user, or NULL. */
json_t *room_state_participant(const json_t *st, const char *user);
size_t room_state_count(const json_t *st);           /* participants */
size_t room_state_count_connected(const json_t *st); /* O(participants) */

/* ---- Changing (each one is "a change": the caller bumps the version) --------- */

/* version += 1. */
void room_state_bump(json_t *st);
/* Adds user as a connected participant joined at now. ROOM_OK, ROOM_EFULL
 * (max_participants reached), ROOM_ENOMEM. Records user in seen. */
int room_state_add(json_t *st, json_t *seen, const char *user, int64_t now_ms);
/* Sets user's connected flag. ROOM_OK or ROOM_ENOTFOUND. */
int room_state_set_connected(json_t *st, const char *user, bool connected);
/* Removes user. ROOM_OK or ROOM_ENOTFOUND. */
int room_state_remove(json_t *st, const char *user);
/* Merges the object patch into user's status (shallow: each key
 * replaces). ROOM_OK, ROOM_ENOTMEMBER (no such participant),
 * ROOM_EINVAL (patch not an object), ROOM_ETOOLARGE (the merged status
 * would exceed ROOM_STATUS_MAX bytes: nothing is changed), ROOM_ENOMEM. */
int room_state_merge_status(json_t *st, const char *user, const json_t *patch);
/* The same, and on ROOM_OK *text (free()) is the merged status as
 * compact JSON, *len its length (len may be NULL): the serialisation the
 * size bound needs anyway, so a caller that records the new status does
 * not dump it again. */
int room_state_merge_status_text(json_t *st, const char *user, const json_t *patch,
                                 char **text, size_t *len);
/* Sets "status" from the number of connected participants (waiting
 * below two, active from two; ended stays ended) and "started_at" the
 * first time it becomes active. Returns true if "status" changed. */
bool room_state_settle(json_t *st, size_t connected, int64_t now_ms);
/* Marks the room ended. */
void room_state_end(json_t *st);
void room_state_set_viewers(json_t *st, uint64_t viewers);

/* The participants of a call (everyone in seen) as a JSON array text
 * (free()), or NULL on ENOMEM. */
char *room_state_seen_array(const json_t *seen);

/* Wall clock, ms since the epoch. */
int64_t room_wall_ms(void);

#endif /* ROOST_DOMAIN_STATE_H */
