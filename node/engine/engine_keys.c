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

struct engine_keys {
    pthread_rwlock_t lock;
    keyslot_t *slot;
    uint32_t cap, n; /* cap: a power of two, or 0 */
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

/* Keep key -> id (no-op when known, too long, or the table is full). */
static void keys_add(engine_keys_t *k, const uint8_t *key, size_t len, uint32_t id)
{
    if (!len || len > ENGINE_KEY_MAX || k->total + 2 + len > ENGINE_KEYS_MAX_BYTES)
        return;
    if (keys_grow(k))
        return;
    uint64_t h = key_hash(key, len);
    uint32_t mask = k->cap - 1, j = (uint32_t)h & mask;
    for (; k->slot[j].hash; j = (j + 1) & mask)
        if (k->slot[j].hash == h && key_eq(k, &k->slot[j], key, len))
            return;                                   /* another writer learnt it first */
    if (!k->nchunk || k->used + 2 + len > k->csize) { /* the rest of a chunk stays unused */
        size_t cs = k->nchunk ? k->csize * 2 : 16 * 1024;
        cs = cs > KEYS_CHUNK ? KEYS_CHUNK : cs;
        while (cs < 2 + len)
            cs *= 2; /* a key is at most ENGINE_KEY_MAX: within KEYS_CHUNK */
        uint8_t **nc = realloc(k->chunk, (k->nchunk + 1) * sizeof *nc);
        if (!nc)
            return;
        k->chunk = nc;
        if (!(nc[k->nchunk] = malloc(cs)))
            return;
        k->nchunk++;
        k->used = 0;
        k->csize = cs;
    }
    uint8_t *p = k->chunk[k->nchunk - 1] + k->used;
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    memcpy(p + 2, key, len);
    k->slot[j] = (keyslot_t){h, id, (uint32_t)((k->nchunk - 1) << KEYS_CHUNK_BITS | k->used)};
    k->used += 2 + len;
    k->total += 2 + len;
    k->n++;
}

void engine_keys_learn(engine_t *e, const engine_series_key_t *b, const uint32_t *ids,
                       const uint8_t *state, size_t n)
{
    engine_keys_t *k = e->keys;
    size_t any = 0;
    for (size_t i = 0; i < n && !any; i++)
        any = b[i].key && !b[i].id1 && state[i] != 2 && ids[i] != UINT32_MAX;
    if (!any)
        return;
    pthread_rwlock_wrlock(&k->lock);
    for (size_t i = 0; i < n; i++)
        if (b[i].key && !b[i].id1 && state[i] != 2 && ids[i] != UINT32_MAX)
            keys_add(k, b[i].key, b[i].len, ids[i]);
    pthread_rwlock_unlock(&k->lock);
}

size_t engine_keys_bytes(engine_t *e)
{
    engine_keys_t *k = e->keys;
    pthread_rwlock_rdlock(&k->lock);
    size_t b = k->total + (size_t)k->cap * sizeof(keyslot_t);
    pthread_rwlock_unlock(&k->lock);
    return b;
}
