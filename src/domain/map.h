/*
 * domain/map.h — a small chained hash map for the room processes:
 * members by pid and by monitor ref, participants' runtime by user id.
 * Keys are either 64-bit words or strings; a map uses one kind only.
 * String keys are borrowed: the key must live as long as its entry
 * (callers point it into the value they store).
 *
 * O(1) expected per operation; the table doubles past 3/4 load and is
 * never shrunk (a room's peak is what it will see again). Not
 * thread-safe: each map belongs to one process. Allocation failures are
 * returned, never hidden.
 */
#ifndef ROOST_DOMAIN_MAP_H
#define ROOST_DOMAIN_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct room_map_ent {
    struct room_map_ent *next;
    uint64_t hash;
    uint64_t ukey;
    const char *skey;
    void *val;
} room_map_ent_t;

typedef struct room_map {
    room_map_ent_t **b;
    size_t nb, n;
} room_map_t;   /* zero-initialised is an empty map */

void *room_map_get_u(const room_map_t *m, uint64_t k);
/* Adds or replaces. Returns 0 or -1 on ENOMEM (nothing changed). */
int room_map_put_u(room_map_t *m, uint64_t k, void *val);
/* Removes; returns the value or NULL. */
void *room_map_del_u(room_map_t *m, uint64_t k);

void *room_map_get_s(const room_map_t *m, const char *k);
int room_map_put_s(room_map_t *m, const char *k, void *val);
void *room_map_del_s(room_map_t *m, const char *k);

/* Iteration: start with *it = NULL; returns each entry once, NULL at the
 * end. The map must not change while iterating, except room_map_clear
 * after it. */
typedef struct room_map_it {
    size_t i;
    room_map_ent_t *e;
} room_map_it_t;
room_map_ent_t *room_map_next(const room_map_t *m, room_map_it_t *it);

/* Frees the table and entries (not the values). */
void room_map_clear(room_map_t *m);

#endif /* ROOST_DOMAIN_MAP_H */
