/*
 * engine_keys — series keys: the writer's encoding of a label set -> id.
 *
 * A node receives each series' labels as the protobuf bytes the router
 * wrote; decoding them, hashing the labels and finding them in the index
 * (idx.c: a probe, then a comparison label by label through the symbol
 * table) is most of the cost of a write that brings a sample or two per
 * series. The key table maps those bytes to the id directly: one hash of
 * the bytes, one probe, one memcmp against the kept copy. A key is learnt
 * by engine_write_v once the labels it came with resolved to an id (found
 * or added), and kept for the engine's life: ids never change (idx.c only
 * adds), and a deleted series keeps its id. The same labels in another
 * encoding are just another key of the same id.
 *
 * Layout: an open-addressing table of (hash, id, where) slots, the bytes
 * of each key (a u16 length, then the key) in chunks filled in turn and
 * never moved (16 KiB, doubling up to 256 KiB: a small shard holds
 * little, a large one wastes no doubling slack); at most
 * ENGINE_KEYS_MAX_BYTES of keys (past that no key is added: lookups of
 * the others still work, the rest resolve by labels). A rwlock: lookups
 * share it, learning takes it alone (once per series).
 *
 * References (engine_keys_resolve_refs): a second open-addressing table,
 * 16-byte reference -> (id, where its key lies), so a reference gives the
 * key bytes too (a write that a delete may hide decodes its labels from
 * them). Learnt with a kept key, from the write that brought both.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "engine_internal.h"
#include "st_err.h"

typedef struct keyslot {
    uint64_t hash; /* 0: empty (a key's hash is made odd) */
    uint32_t id;
    uint32_t at; /* its u16 length: chunk at >> KEYS_CHUNK_BITS, offset the rest */
} keyslot_t;

#define KEYS_CHUNK_BITS 18 /* 256 KiB chunks */
#define KEYS_CHUNK ((size_t)1 << KEYS_CHUNK_BITS)

typedef struct refslot {
    uint64_t lo, hi;   /* the reference; lo made odd (0: empty) */
    uint32_t id, at;   /* at as keyslot_t's */
    uint32_t len, pad; /* the key's (not read from the chunk: one cache line less) */
} refslot_t;

struct engine_keys {
    pthread_rwlock_t lock;
    keyslot_t *slot;
    uint32_t cap, n; /* cap: a power of two, or 0 */
    refslot_t *rslot;
    uint32_t rcap, rn;
    uint8_t **chunk;
    size_t nchunk, used, csize; /* used of csize bytes of the last chunk */
    size_t total;               /* bytes of keys kept */
};

static uint64_t key_hash(const uint8_t *k, size_t len)
{
    return XXH3_64bits(k, len) | 1;
}

int engine_keys_create(engine_t *e)
{
    engine_keys_t *k = calloc(1, sizeof *k);
    if (!k)
        return ST_ENOMEM;
    pthread_rwlock_init(&k->lock, NULL);
    e->keys = k;
    return 0;
}

void engine_keys_destroy(engine_t *e)
{
    engine_keys_t *k = e->keys;
    if (!k)
        return;
    pthread_rwlock_destroy(&k->lock);
    free(k->slot);
    free(k->rslot);
    for (size_t i = 0; i < k->nchunk; i++)
        free(k->chunk[i]);
    free(k->chunk);
    free(k);
    e->keys = NULL;
}

static int key_eq(const engine_keys_t *k, const keyslot_t *s, const uint8_t *key, size_t len)
{
    const uint8_t *p = k->chunk[s->at >> KEYS_CHUNK_BITS] + (s->at & (KEYS_CHUNK - 1));
    return (size_t)(p[0] | p[1] << 8) == len && memcmp(p + 2, key, len) == 0;
}

size_t engine_keys_resolve(engine_t *e, const engine_series_key_t *key, size_t n, uint32_t *ids)
{
    enum { CHUNK = 64 }; /* hashed (and their slots prefetched) a chunk ahead of the probes */
    engine_keys_t *k = e->keys;
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        ids[i] = UINT32_MAX;
    pthread_rwlock_rdlock(&k->lock);
    if (!k->cap) {
        pthread_rwlock_unlock(&k->lock);
        return 0;
    }
    uint32_t mask = k->cap - 1;
    uint64_t h[CHUNK];
    for (size_t c = 0; c < n; c += CHUNK) {
        size_t m = n - c < CHUNK ? n - c : CHUNK;
        for (size_t i = 0; i < m; i++) {
            size_t x = c + i;
            h[i] = 0;
            if (key[x].key && key[x].len && key[x].len <= ENGINE_KEY_MAX) {
                h[i] = key_hash(key[x].key, key[x].len);
                __builtin_prefetch(&k->slot[(uint32_t)h[i] & mask]);
            }
        }
        for (size_t i = 0; i < m; i++) {
            if (!h[i])
                continue;
            size_t x = c + i;
            for (uint32_t j = (uint32_t)h[i] & mask;; j = (j + 1) & mask) {
                const keyslot_t *s = &k->slot[j];
                if (!s->hash)
                    break;
                if (s->hash == h[i] && key_eq(k, s, key[x].key, key[x].len)) {
                    ids[x] = s->id;
                    found++;
                    break;
                }
            }
        }
    }
    pthread_rwlock_unlock(&k->lock);
    return found;
}

/* Room for one more slot (load <= 1/2); 0 or ST_ENOMEM. */
static int keys_grow(engine_keys_t *k)
{
    if ((k->n + 1) * 2 <= k->cap)
        return 0;
    uint32_t cap = k->cap ? k->cap * 2 : 1024;
    keyslot_t *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return ST_ENOMEM;
    for (uint32_t i = 0; i < k->cap; i++) {
        if (!k->slot[i].hash)
            continue;
        uint32_t j = (uint32_t)k->slot[i].hash & (cap - 1);
        while (ns[j].hash)
            j = (j + 1) & (cap - 1);
        ns[j] = k->slot[i];
    }
    free(k->slot);
    k->slot = ns;
    k->cap = cap;
    return 0;
}

/* Where the key lies (keyslot_t.at), or UINT32_MAX when not kept. */
static uint32_t keys_find(const engine_keys_t *k, const uint8_t *key, size_t len)
{
    if (!k->cap || !len || len > ENGINE_KEY_MAX)
        return UINT32_MAX;
    uint64_t h = key_hash(key, len);
    uint32_t mask = k->cap - 1;
    for (uint32_t j = (uint32_t)h & mask; k->slot[j].hash; j = (j + 1) & mask)
        if (k->slot[j].hash == h && key_eq(k, &k->slot[j], key, len))
            return k->slot[j].at;
    return UINT32_MAX;
}

/* Keep key -> id (no-op when known, too long, or the table is full);
 * returns where the key lies (keyslot_t.at), UINT32_MAX when not kept. */
static uint32_t keys_add(engine_keys_t *k, const uint8_t *key, size_t len, uint32_t id)
{
    if (!len || len > ENGINE_KEY_MAX)
        return UINT32_MAX;
    uint32_t known = keys_find(k, key, len);
    if (known != UINT32_MAX || k->total + 2 + len > ENGINE_KEYS_MAX_BYTES)
        return known; /* another writer learnt it first, or no room */
    if (keys_grow(k))
        return UINT32_MAX;
    uint64_t h = key_hash(key, len);
    uint32_t mask = k->cap - 1, j = (uint32_t)h & mask;
    while (k->slot[j].hash)
        j = (j + 1) & mask;
    if (!k->nchunk || k->used + 2 + len > k->csize) { /* the rest of a chunk stays unused */
        size_t cs = k->nchunk ? k->csize * 2 : 16 * 1024;
        cs = cs > KEYS_CHUNK ? KEYS_CHUNK : cs;
        while (cs < 2 + len)
            cs *= 2; /* a key is at most ENGINE_KEY_MAX: within KEYS_CHUNK */
        uint8_t **nc = realloc(k->chunk, (k->nchunk + 1) * sizeof *nc);
        if (!nc)
            return UINT32_MAX;
        k->chunk = nc;
        if (!(nc[k->nchunk] = malloc(cs)))
            return UINT32_MAX;
        k->nchunk++;
        k->used = 0;
        k->csize = cs;
    }
    uint8_t *p = k->chunk[k->nchunk - 1] + k->used;
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    memcpy(p + 2, key, len);
    uint32_t at = (uint32_t)((k->nchunk - 1) << KEYS_CHUNK_BITS | k->used);
    k->slot[j] = (keyslot_t){h, id, at};
    k->used += 2 + len;
    k->total += 2 + len;
    k->n++;
    return at;
}

static void ref_read(const uint8_t *ref, uint64_t *lo, uint64_t *hi)
{
    memcpy(lo, ref, 8);
    memcpy(hi, ref + 8, 8);
    *lo |= 1;
}

/* Keep ref -> (id, at); forget every reference first when they outnumber
 * the keys four to one (bounded by the keys: ENGINE_KEYS_MAX_BYTES). */
static void refs_add(engine_keys_t *k, const uint8_t *ref, uint32_t id, uint32_t at, uint32_t len)
{
    uint64_t lo, hi;
    ref_read(ref, &lo, &hi);
    if (k->rn >= 4 * k->n + 1024) {
        memset(k->rslot, 0, (size_t)k->rcap * sizeof *k->rslot);
        k->rn = 0;
    }
    if ((k->rn + 1) * 2 > k->rcap) {
        uint32_t cap = k->rcap ? k->rcap * 2 : 1024;
        refslot_t *ns = calloc(cap, sizeof *ns);
        if (!ns)
            return;
        for (uint32_t i = 0; i < k->rcap; i++) {
            if (!k->rslot[i].lo)
                continue;
            uint32_t j = (uint32_t)k->rslot[i].lo & (cap - 1);
            while (ns[j].lo)
                j = (j + 1) & (cap - 1);
            ns[j] = k->rslot[i];
        }
        free(k->rslot);
        k->rslot = ns;
        k->rcap = cap;
    }
    uint32_t mask = k->rcap - 1, j = (uint32_t)lo & mask;
    for (; k->rslot[j].lo; j = (j + 1) & mask)
        if (k->rslot[j].lo == lo && k->rslot[j].hi == hi)
            return;
    k->rslot[j] = (refslot_t){lo, hi, id, at, len, 0};
    k->rn++;
}

static int learns(const engine_series_key_t *b, const uint32_t *ids, const uint8_t *state)
{
    return b->key && (!b->id1 || b->ref) && *state != 2 && *ids != UINT32_MAX;
}

void engine_keys_learn(engine_t *e, const engine_series_key_t *b, const uint32_t *ids,
                       const uint8_t *state, size_t n)
{
    engine_keys_t *k = e->keys;
    size_t any = 0;
    for (size_t i = 0; i < n && !any; i++)
        any = learns(&b[i], &ids[i], &state[i]);
    if (!any)
        return;
    pthread_rwlock_wrlock(&k->lock);
    for (size_t i = 0; i < n; i++) {
        if (!learns(&b[i], &ids[i], &state[i]))
            continue;
        uint32_t at =
            b[i].id1 ? keys_find(k, b[i].key, b[i].len) : keys_add(k, b[i].key, b[i].len, ids[i]);
        if (b[i].ref && at != UINT32_MAX)
            refs_add(k, b[i].ref, ids[i], at, b[i].len);
    }
    pthread_rwlock_unlock(&k->lock);
}

size_t engine_keys_resolve_refs(engine_t *e, const uint8_t *const *refs, size_t n,
                                engine_series_key_t *out)
{
    enum { CHUNK = 32 }; /* slots prefetched a chunk ahead of the probes */
    engine_keys_t *k = e->keys;
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        out[i] = (engine_series_key_t){0};
    pthread_rwlock_rdlock(&k->lock);
    if (!k->rcap) {
        pthread_rwlock_unlock(&k->lock);
        return 0;
    }
    uint32_t mask = k->rcap - 1;
    uint64_t lo[CHUNK], hi[CHUNK];
    for (size_t c = 0; c < n; c += CHUNK) {
        size_t m = n - c < CHUNK ? n - c : CHUNK;
        for (size_t i = 0; i < m; i++) {
            lo[i] = 0;
            if (refs[c + i]) {
                ref_read(refs[c + i], &lo[i], &hi[i]);
                __builtin_prefetch(&k->rslot[(uint32_t)lo[i] & mask]);
            }
        }
        for (size_t i = 0; i < m; i++) {
            if (!lo[i])
                continue;
            for (uint32_t j = (uint32_t)lo[i] & mask; k->rslot[j].lo; j = (j + 1) & mask) {
                const refslot_t *s = &k->rslot[j];
                if (s->lo != lo[i] || s->hi != hi[i])
                    continue;
                const uint8_t *p = k->chunk[s->at >> KEYS_CHUNK_BITS] + (s->at & (KEYS_CHUNK - 1));
                out[c + i] = (engine_series_key_t){p + 2, s->len, s->id + 1, NULL};
                found++;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&k->lock);
    return found;
}

size_t engine_keys_bytes(engine_t *e)
{
    engine_keys_t *k = e->keys;
    pthread_rwlock_rdlock(&k->lock);
    size_t b = k->total + (size_t)k->cap * sizeof(keyslot_t) + (size_t)k->rcap * sizeof(refslot_t);
    pthread_rwlock_unlock(&k->lock);
    return b;
}
