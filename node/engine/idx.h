/*
 * idx — series identity and the inverted label index.
 *
 * Every distinct label set gets a dense uint32 series id (0, 1, 2, ...) in
 * order of creation. Label names and values are interned once (a symbol
 * table), so a million series over a few thousand distinct strings cost
 * little memory. Postings map (name, value) to the sorted ids that carry it,
 * and matchers (=, !=, =~, !~ with fully anchored PCRE2 regexes) are
 * resolved through them, not by scanning every series.
 *
 * Persistence: idx_persist() appends the series created since the last call
 * to "<dir>/series.log" as one CRC'd, LZ4-compressed record and fsyncs it;
 * idx_open() loads that log (tolerating a torn tail). Ids in the log are
 * consecutive, so replay gives every series back its id.
 *
 * Not thread-safe: the engine serializes access (a rwlock: lookups and
 * selects under the read side, adds under the write side).
 */
#ifndef IDX_H
#define IDX_H

#include <stddef.h>
#include <stdint.h>

#include "st_labels.h"
#include "st_matcher.h"

typedef struct idx idx_t;

/* Open (or create) the index of `dir`, loading series.log if present. */
int idx_open(const char *dir, idx_t **out);
void idx_close(idx_t *x);

/* Number of series (= the next id to be assigned). */
uint32_t idx_count(const idx_t *x);

/*
 * Find the id of a sorted, validated label set; `hash` is st_labels_hash().
 * Returns 0 and *id, or ST_ENOENT.
 */
int idx_lookup(const idx_t *x, const st_label_t *l, size_t n, uint64_t hash, uint32_t *id);

/*
 * idx_lookup for `count` label sets at once (the ingest path): ids[i] = id
 * or UINT32_MAX; returns how many were found. Prefetching the hash slots
 * and series runs ahead overlaps the cache misses that dominate single
 * lookups in a large index.
 */
int idx_lookup_many(const idx_t *x, const st_label_t *const *l, const size_t *n,
                    const uint64_t *hash, size_t count, uint32_t *ids);
/* Add a new label set (must not exist): *id = idx_count() before the call. */
int idx_add(idx_t *x, const st_label_t *l, size_t n, uint64_t hash, uint32_t *id);
/*
 * The labels of series `id`, written to `out` (capacity ST_LABELS_MAX);
 * pointers stay valid until idx_close. Returns the label count or ST_ENOENT.
 */
int idx_labels(const idx_t *x, uint32_t id, st_label_t *out);

/*
 * Series ids matching all matchers, ascending, in a malloc'd array (*ids,
 * caller frees; NULL when *n == 0). ST_EINVAL when every matcher matches
 * the empty string or a regex does not compile (*err, if non-NULL, gets a
 * static reason).
 */
int idx_select(const idx_t *x, const st_matcher_t *m, size_t nm, uint32_t **ids, size_t *n,
               const char **err);

/*
 * Receives one label name or value (not NUL-terminated); a non-zero return
 * stops the walk and is returned. The same function type as engine.h's
 * engine_str_cb (engine.c checks that at compile time), so the engine hands
 * its caller's callback straight through.
 */
typedef int (*idx_str_cb)(void *arg, const char *s, size_t len);

/* Distinct label names / values of `name` over `ids` (all series if ids == NULL). */
int idx_label_names(const idx_t *x, const uint32_t *ids, size_t n, idx_str_cb cb, void *arg);
int idx_label_values(const idx_t *x, const char *name, const uint32_t *ids, size_t n, idx_str_cb cb,
                     void *arg);

/* Append series added since the last persist to series.log and fsync it. */
int idx_persist(idx_t *x);
/* Bytes of series.log on disk and bytes of memory in use. */
uint64_t idx_disk_bytes(const idx_t *x);
uint64_t idx_mem_bytes(const idx_t *x);

#endif
