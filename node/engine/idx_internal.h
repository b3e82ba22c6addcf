/*
 * idx_internal — the index's data structures, shared by idx.c (registry,
 * symbols, postings, series.log) and idx_match.c (matchers, label names and
 * values). Not part of the public API; tests may include it for hooks.
 *
 * Every table is an open-addressing, linear-probing array of idx_slot_t:
 * `tag` is the high 32 bits of the 64-bit key hash and the home slot is
 * `tag & mask`, so a table can be rehashed from its slots alone. `ref` is
 * the entry id + 1 (0 = empty). Tables grow at 70 % load.
 */
#ifndef IDX_INTERNAL_H
#define IDX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "idx.h"

typedef struct idx_slot {
    uint32_t tag;
    uint32_t ref;
} idx_slot_t;

typedef struct idx_table {
    idx_slot_t *s;
    uint32_t mask; /* capacity - 1 (capacity is a power of two; 0 slots when s == NULL) */
    uint32_t n;    /* entries */
} idx_table_t;

/* An interned string; p is NUL-terminated and lives in the arena until idx_close. */
typedef struct idx_sym {
    const char *p;
    uint32_t len;
    uint32_t name; /* index in x->names + 1 when this symbol is a label name, else 0 */
} idx_sym_t;

/*
 * Postings of one (name, value) pair: ascending series ids. The strings are
 * repeated here (np/vp) so that comparing a series' labels costs one memory
 * access less per label than going through x->syms.
 */
typedef struct idx_plist {
    const char *np, *vp;
    uint32_t nlen, vlen;
    uint32_t name;  /* symbol id of the label name */
    uint32_t value; /* symbol id of the value */
    uint32_t n, cap;
    uint32_t *ids;
} idx_plist_t;

/* A label name and its values (plist ids, in creation order). */
typedef struct idx_name {
    uint32_t sym;
    uint32_t nvals, cap;
    uint32_t *vals;
} idx_name_t;

typedef struct idx_chunk idx_chunk_t;

struct idx {
    /* series.log */
    char *path;
    char *dir;
    int fd; /* -1 until the file exists */
    uint64_t disk_size;
    uint32_t persisted;      /* series [0, persisted) are in series.log */
    uint32_t persisted_syms; /* symbols [0, persisted_syms) are in series.log */
    int dir_synced;          /* the directory entry of series.log is durable */

    /* strings */
    idx_chunk_t *chunks;
    uint64_t arena_bytes;
    idx_sym_t *syms;
    uint32_t nsyms;
    size_t syms_cap;
    idx_table_t symtab;

    /* names and postings */
    idx_name_t *names;
    uint32_t nnames;
    size_t names_cap;
    idx_plist_t *pl;
    uint32_t npl;
    size_t pl_cap;
    idx_table_t pairtab;
    uint64_t postings_bytes; /* ids arrays of every plist + vals arrays of every name */

    /*
     * series: series i is the run at offset soff[i] of the run space: its
     * id, its label count n, then n plist ids in label-name order. The run
     * space is cut in chunks of 2^IDX_RUN_CHUNK_BITS words that never move
     * or grow (a run never straddles two), so adding series never copies
     * them. sertab refs are offsets + 1, so a lookup goes straight to the run.
     */
    uint32_t count;
    uint32_t *soff;
    size_t soff_cap;
    uint32_t **runs;    /* chunks */
    size_t nruns_cap;   /* entries in runs[] */
    uint64_t run_tail;  /* next free offset */
    uint64_t run_bytes; /* allocated chunks */
    idx_table_t sertab;

    int regex_opt; /* 1 (default): plain literal regexes skip PCRE2 */
};

#define IDX_RUN_CHUNK_BITS 16 /* 256 KiB chunks */
#define IDX_RUN_CHUNK ((uint32_t)1 << IDX_RUN_CHUNK_BITS)

/* The run at offset `off`. */
static inline uint32_t *idx__run(const idx_t *x, uint32_t off)
{
    return x->runs[off >> IDX_RUN_CHUNK_BITS] + (off & (IDX_RUN_CHUNK - 1));
}

/* The labels (plist ids) of series `id` and their count. */
static inline const uint32_t *idx__series(const idx_t *x, uint32_t id, uint32_t *n)
{
    const uint32_t *p = idx__run(x, x->soff[id]);
    *n = p[1];
    return p + 2;
}

/* Symbol id of [p, p+len), or -1 when the string was never interned. */
int64_t idx__sym_find(const idx_t *x, const char *p, size_t len);
/* Plist id of (name symbol, value symbol), or -1. */
int64_t idx__pair_find(const idx_t *x, uint32_t name, uint32_t value);
/* Index in x->names of a name given as a string, or -1. */
int64_t idx__name_find(const idx_t *x, const char *name, size_t len);

/* Test hook: 0 forces every regex through PCRE2 (to compare with the fast paths). */
void idx__set_regex_opt(idx_t *x, int on);

#endif
