/*
 * registry.c — unique names for processes (Erlang's register/whereis).
 *
 * Two chained hashes under one read-write lock: name -> entry for
 * whereis (the hot path, readers in parallel) and pid -> entries so
 * introspection can show a process's name without a scan. A process
 * remembers its own names and drops them when it exits (proc.c).
 */
#include <stdlib.h>
#include <string.h>

#include "rt/rt_internal.h"

typedef struct reg_entry {
    char *name;
    rt_pid_t pid;
    uint64_t seq;                /* registration order: the first name wins */
    struct reg_entry *next_name, *next_pid;
} reg_entry_t;

static pthread_rwlock_t reg_lock = PTHREAD_RWLOCK_INITIALIZER;
static reg_entry_t **by_name, **by_pid;
static uint32_t reg_cap, reg_n;
static uint64_t reg_seq;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

static uint32_t hash_pid(rt_pid_t pid)
{
    return (uint32_t)((pid * 0x9E3779B97F4A7C15ull) >> 32);
}

void rt__registry_init(void)
{
    reg_n = 0;
}

void rt__registry_fini(void)
{
    pthread_rwlock_wrlock(&reg_lock);
    for (uint32_t i = 0; i < reg_cap; i++) {
        for (reg_entry_t *e = by_name[i], *n; e; e = n) {
            n = e->next_name;
            free(e->name);
            free(e);
        }
    }
    free(by_name);
    free(by_pid);
    by_name = by_pid = NULL;
    reg_cap = reg_n = 0;
    pthread_rwlock_unlock(&reg_lock);
}

static bool grow(void)
{
    if (reg_n + 1 <= reg_cap)
        return true;
    uint32_t cap = reg_cap ? reg_cap * 2 : 64;
    reg_entry_t **nn = calloc(cap, sizeof *nn), **np = calloc(cap, sizeof *np);
    if (!nn || !np) {
        free(nn);
        free(np);
        return false;
    }
    for (uint32_t i = 0; i < reg_cap; i++) {
        for (reg_entry_t *e = by_name[i], *n; e; e = n) {
            n = e->next_name;
            uint32_t h = (uint32_t)hash_str(e->name) & (cap - 1);
            e->next_name = nn[h];
            nn[h] = e;
            uint32_t k = hash_pid(e->pid) & (cap - 1);
            e->next_pid = np[k];
            np[k] = e;
        }
    }
    free(by_name);
    free(by_pid);
    by_name = nn;
    by_pid = np;
    reg_cap = cap;
    return true;
}

static reg_entry_t *find(const char *name)
{
    if (!reg_cap)
        return NULL;
    for (reg_entry_t *e = by_name[(uint32_t)hash_str(name) & (reg_cap - 1)]; e; e = e->next_name)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int rt__registry_add(const char *name, rt_pid_t pid, rt_pid_t *holder)
{
    pthread_rwlock_wrlock(&reg_lock);
    reg_entry_t *e = find(name);
    if (e) {
        if (holder)
            *holder = e->pid;
        pthread_rwlock_unlock(&reg_lock);
        return RT_ETAKEN;
    }
    e = malloc(sizeof *e);
    if (!e || !(e->name = strdup(name)) || !grow()) {
        if (e)
            free(e->name);
        free(e);
        pthread_rwlock_unlock(&reg_lock);
        return RT_ENOMEM;
    }
    e->pid = pid;
    e->seq = reg_seq++;
    uint32_t h = (uint32_t)hash_str(name) & (reg_cap - 1);
    e->next_name = by_name[h];
    by_name[h] = e;
    uint32_t k = hash_pid(pid) & (reg_cap - 1);
    e->next_pid = by_pid[k];
    by_pid[k] = e;
    reg_n++;
    pthread_rwlock_unlock(&reg_lock);
    return RT_OK;
}

void rt__registry_drop(rt_pid_t pid, const char *name)
{
    pthread_rwlock_wrlock(&reg_lock);
    reg_entry_t *e = find(name);
    if (e && e->pid == pid) {
        for (reg_entry_t **pp = &by_name[(uint32_t)hash_str(name) & (reg_cap - 1)]; *pp;
             pp = &(*pp)->next_name)
            if (*pp == e) {
                *pp = e->next_name;
                break;
            }
        for (reg_entry_t **pp = &by_pid[hash_pid(pid) & (reg_cap - 1)]; *pp; pp = &(*pp)->next_pid)
            if (*pp == e) {
                *pp = e->next_pid;
                break;
            }
        free(e->name);
        free(e);
        reg_n--;
    }
    pthread_rwlock_unlock(&reg_lock);
}

size_t rt__registry_first_name(rt_pid_t pid, char *buf, size_t cap)
{
    buf[0] = 0;
    pthread_rwlock_rdlock(&reg_lock);
    if (reg_cap) {
        const reg_entry_t *first = NULL;
        for (reg_entry_t *e = by_pid[hash_pid(pid) & (reg_cap - 1)]; e; e = e->next_pid)
            if (e->pid == pid && (!first || e->seq < first->seq))
                first = e;
        if (first) {
            strncpy(buf, first->name, cap - 1);
            buf[cap - 1] = 0;
        }
    }
    pthread_rwlock_unlock(&reg_lock);
    return strlen(buf);
}

int rt_register(const char *name, rt_pid_t *holder)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return RT_ECONTEXT;
    if (!name || !*name)
        return RT_EINVAL;
    rt_ext_t *x = rt__ext(self);
    char *copy = strdup(name);
    char **nn = copy ? realloc(x->names, (x->nnames + 1) * sizeof *nn) : NULL;
    if (!nn) {
        free(copy);
        return RT_ENOMEM;
    }
    x->names = nn;
    int rc = rt__registry_add(name, rt_self(), holder);
    if (rc != RT_OK) {
        free(copy);
        return rc;
    }
    x->names[x->nnames++] = copy;
    return RT_OK;
}

int rt_unregister(const char *name)
{
    rt_proc_t *self = rt__tls.self;
    if (!self)
        return RT_ECONTEXT;
    rt_ext_t *x = self->ext;
    for (uint32_t i = 0; x && i < x->nnames; i++) {
        if (strcmp(x->names[i], name) == 0) {
            rt__registry_drop(rt_self(), name);
            free(x->names[i]);
            x->names[i] = x->names[--x->nnames];
            return RT_OK;
        }
    }
    return RT_ENOTFOUND;
}

rt_pid_t rt_whereis(const char *name)
{
    pthread_rwlock_rdlock(&reg_lock);
    reg_entry_t *e = find(name);
    rt_pid_t pid = e ? e->pid : RT_NOPID;
    pthread_rwlock_unlock(&reg_lock);
    return pid;
}
