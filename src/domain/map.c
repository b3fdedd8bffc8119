/*
 * domain/map.c — the chained hash map of domain/map.h.
 */
#include "domain/map.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x)
{
    /* splitmix64's finaliser: pids and refs differ in few bits. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_s(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return mix(h);
}

static int grow(room_map_t *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    room_map_ent_t **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        room_map_ent_t *e = m->b[i];
        while (e) {
            room_map_ent_t *next = e->next;
            size_t j = e->hash & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

static room_map_ent_t **find(const room_map_t *m, uint64_t h, uint64_t uk, const char *sk)
{
    if (!m->nb)
        return NULL;
    room_map_ent_t **pp = &m->b[h & (m->nb - 1)];
    for (; *pp; pp = &(*pp)->next) {
        room_map_ent_t *e = *pp;
        if (e->hash != h)
            continue;
        if (sk ? (e->skey && strcmp(e->skey, sk) == 0) : (!e->skey && e->ukey == uk))
            return pp;
    }
    return NULL;
}

static int put(room_map_t *m, uint64_t h, uint64_t uk, const char *sk, void *val)
{
    room_map_ent_t **pp = find(m, h, uk, sk);
    if (pp) {
        (*pp)->val = val;
        (*pp)->skey = sk; /* the new value's copy of the key */
        return 0;
    }
    if ((m->n + 1) * 4 > m->nb * 3 && grow(m) != 0)
        return -1;
    room_map_ent_t *e = malloc(sizeof *e);
    if (!e)
        return -1;
    e->hash = h;
    e->ukey = uk;
    e->skey = sk;
    e->val = val;
    size_t j = h & (m->nb - 1);
    e->next = m->b[j];
    m->b[j] = e;
    m->n++;
    return 0;
}

static void *del(room_map_t *m, uint64_t h, uint64_t uk, const char *sk)
{
    room_map_ent_t **pp = find(m, h, uk, sk);
    if (!pp)
        return NULL;
    room_map_ent_t *e = *pp;
    *pp = e->next;
    void *v = e->val;
    free(e);
    m->n--;
    return v;
}

void *room_map_get_u(const room_map_t *m, uint64_t k)
{
    room_map_ent_t **pp = find(m, mix(k), k, NULL);
    return pp ? (*pp)->val : NULL;
}

int room_map_put_u(room_map_t *m, uint64_t k, void *val)
{
    return put(m, mix(k), k, NULL, val);
}

void *room_map_del_u(room_map_t *m, uint64_t k)
{
    return del(m, mix(k), k, NULL);
}

void *room_map_get_s(const room_map_t *m, const char *k)
{
    room_map_ent_t **pp = find(m, hash_s(k), 0, k);
    return pp ? (*pp)->val : NULL;
}

int room_map_put_s(room_map_t *m, const char *k, void *val)
{
    return put(m, hash_s(k), 0, k, val);
}

void *room_map_del_s(room_map_t *m, const char *k)
{
    return del(m, hash_s(k), 0, k);
}

room_map_ent_t *room_map_next(const room_map_t *m, room_map_it_t *it)
{
    if (it->e && it->e->next) {
        it->e = it->e->next;
        return it->e;
    }
    size_t i = it->e ? it->i + 1 : 0;
    for (; i < m->nb; i++)
        if (m->b[i]) {
            it->i = i;
            it->e = m->b[i];
            return it->e;
        }
    it->i = m->nb;
    it->e = NULL;
    return NULL;
}

void room_map_clear(room_map_t *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        room_map_ent_t *e = m->b[i];
        while (e) {
            room_map_ent_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}
