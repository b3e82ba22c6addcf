/*
 * idx — series registry, symbol table, postings and series.log.
 * Matchers, label names and values live in idx_match.c.
 *
 * MEMORY
 *
 *   Strings: every distinct label name or value is copied once into a
 *   chunked arena (64 KiB chunks) and NUL-terminated. Chunks never move,
 *   so the st_label_t slices handed out by idx_labels() stay valid until
 *   idx_close(). x->syms[id] points at the string; x->symtab maps
 *   XXH3(string) -> symbol id. A new string is checked for UTF-8 once,
 *   when interned (idx_add otherwise trusts the caller's validation).
 *
 *   Postings: one idx_plist_t per distinct (name symbol, value symbol)
 *   pair, found through x->pairtab; it holds the ascending ids of the
 *   series carrying that pair (ids are assigned in increasing order, so an
 *   append keeps the order). Each label name (x->names) lists its plists.
 *
 *   Series: series i is the run at offset soff[i]: [id, n, n plist ids in
 *   label-name order], kept in fixed 256 KiB chunks (never moved or
 *   copied). x->sertab maps the caller's 64-bit label hash (st_labels_hash)
 *   to the offset of that run, and a hit is confirmed by comparing every
 *   label, so colliding hashes are handled. A lookup touches the slot, the
 *   run, and the plists/strings of its labels.
 *
 *   Invariants:
 *    1. Symbols, plists and names are only ever added, never removed.
 *    2. A symbol is created only by idx_add/replay, in order of first use,
 *       so the symbols first used by series [a, b) are a contiguous id
 *       range that ends at 1 + the largest symbol id those series use
 *       (orphans of a failed add just ride along in the next record).
 *    3. idx_add reserves everything it needs before changing any series
 *       state; a failure can leave unused symbols/plists, never a half
 *       series. Empty plists are skipped by every reader.
 *
 * ON-DISK FORMAT: <dir>/series.log (version 1)
 *
 *   The file is a sequence of records, no file header:
 *
 *     offset size
 *     0      4    payload length L, u32 little-endian (6 <= L <= 256 MiB)
 *     4      4    CRC-32C (Castagnoli) of the L payload bytes, u32le
 *     8      L    payload
 *
 *   payload:
 *     0      1    format version = 1
 *     1      4    R = length of the decompressed block, u32le
 *                 (1 <= R <= 256 MiB and R <= 256 * (L - 5) + 64, above LZ4's
 *                 maximum expansion of ~255:1)
 *     5      L-5  the block, compressed as one LZ4 block (LZ4_compress_default);
 *                 LZ4_decompress_safe must yield exactly R bytes
 *
 *   block (all integers unsigned LEB128 varints, "uv"):
 *     uv first_id     id of the first series in the record; must equal the
 *                     number of series loaded so far (ids are consecutive)
 *     uv count        number of series in the record (>= 1)
 *     uv first_sym    id of the first new symbol; must equal the number of
 *                     symbols loaded so far
 *     uv nsyms        number of new symbols
 *     nsyms times:    uv len (<= 4096), len bytes of valid UTF-8: symbol
 *                     first_sym + k; every symbol is distinct from all earlier
 *     count times, one series each:
 *       uv n          number of labels, 1..64
 *       ceil(n/8) bytes "same" bitmap, LSB first: bit i set = label i is the
 *                     same (name, value) as label i of the previous series of
 *                     this record (never set in the first series of a record,
 *                     nor for i >= the previous series' label count; unused
 *                     high bits are 0)
 *       for each label whose bit is clear:
 *         uv name_sym, uv value_sym   symbol ids (< symbols loaded so far,
 *                     including this record's new ones)
 *     The block ends exactly after the last series.
 *
 *   Label names are 1..256 bytes and strictly ascending (bytewise, shorter
 *   first on a common prefix) within a series; no label set appears twice.
 *   A devops host (10 series sharing 10 tags) costs ~6-7 bytes per series
 *   before LZ4: only __name__ differs from the previous series.
 *
 * RECOVERY (idx_open)
 *
 *   Records are replayed in order. A header that does not fit in the rest
 *   of the file, a length out of range, a payload running past the end of
 *   the file or a CRC mismatch marks a torn or corrupt tail: the file is
 *   truncated at the start of that record (and fsynced) and the index holds
 *   the series before it. A record whose CRC is right but whose content is
 *   wrong (bad version -> ST_EVERSION; ids not consecutive, bad symbol or
 *   label, duplicate series, LZ4 error -> ST_ECORRUPT) fails the open and
 *   leaves the file alone: that is not a crash artifact, and dropping it
 *   (and all after it) would silently lose series that other files refer
 *   to by id.
 *
 * WRITING (idx_persist)
 *
 *   Series [persisted, count) are encoded into records of at most ~8 MiB
 *   of block each, appended with pwrite at the known end of the file, then
 *   fdatasync'ed (plus an fsync of the directory the first time, when the
 *   file was created). On any failure the file is truncated back to its
 *   previous size and nothing counts as persisted, so a retry rewrites the
 *   same records.
 */
#include "idx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef XXH_STATIC_LINKING_ONLY
#define XXH_STATIC_LINKING_ONLY
#endif
#include <xxhash.h>

#include "idx_internal.h"
#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_text.h"
#include "st_file.h"
#include "st_varint.h"

#define IDX_CHUNK_SIZE (64u * 1024)
#define IDX_FORMAT_VERSION 1
#define IDX_REC_HDR 8
#define IDX_PAYLOAD_HDR 5
#define IDX_REC_MAX (256u << 20)
#define IDX_RAW_MAX (256u << 20)
#define IDX_REC_TARGET (8u << 20)
#define IDX_SERIES_MAX (UINT32_MAX - 1)
#define IDX_ALLOC_OVERHEAD 16 /* what we charge per malloc'd block in idx_mem_bytes */

struct idx_chunk {
    idx_chunk_t *next;
    size_t used, cap;
    char data[];
};

/* ---- small helpers ---------------------------------------------------- */

static int grow_array(void **p, size_t *cap, size_t need, size_t elsz)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 4 / elsz)
            return ST_ENOMEM;
        nc *= 2;
    }
    void *np = realloc(*p, nc * elsz);
    if (!np)
        return ST_ENOMEM;
    *p = np;
    *cap = nc;
    return 0;
}

static int grow_u32(uint32_t **p, uint32_t *cap, uint32_t need, uint64_t *mem)
{
    if (need <= *cap)
        return 0;
    uint64_t nc = *cap ? *cap : 2;
    while (nc < need)
        nc += nc < 4096 ? nc : nc / 2;
    if (nc > UINT32_MAX)
        nc = UINT32_MAX;
    uint32_t *np = realloc(*p, (size_t)nc * sizeof *np);
    if (!np)
        return ST_ENOMEM;
    if (*cap == 0)
        *mem += IDX_ALLOC_OVERHEAD;
    *mem += (nc - *cap) * sizeof *np;
    *p = np;
    *cap = (uint32_t)nc;
    return 0;
}

static inline uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static inline int slice_cmp(const char *a, uint32_t na, const char *b, uint32_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c)
        return c;
    return na < nb ? -1 : na > nb;
}

/* ---- hash tables -------------------------------------------------------- */

static size_t table_cap(const idx_table_t *t)
{
    return t->s ? (size_t)t->mask + 1 : 0;
}

/* Make room for one more entry (rehashing from the stored tags). */
static int table_reserve(idx_table_t *t)
{
    size_t cap = table_cap(t);
    if ((uint64_t)(t->n + 1) * 10 <= (uint64_t)cap * 7)
        return 0;
    size_t ncap = cap ? cap * 2 : 16;
    if (ncap > ((size_t)1 << 32))
        return ST_ELIMIT;
    idx_slot_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return ST_ENOMEM;
    uint32_t nmask = (uint32_t)(ncap - 1);
    for (size_t i = 0; i < cap; i++) {
        if (!t->s[i].ref)
            continue;
        uint32_t j = t->s[i].tag & nmask;
        while (ns[j].ref)
            j = (j + 1) & nmask;
        ns[j] = t->s[i];
    }
    free(t->s);
    t->s = ns;
    t->mask = nmask;
    return 0;
}

/* Insert a key known to be absent; table_reserve must have succeeded. */
static void table_insert(idx_table_t *t, uint32_t tag, uint32_t ref)
{
    uint32_t j = tag & t->mask;
    while (t->s[j].ref)
        j = (j + 1) & t->mask;
    t->s[j].tag = tag;
    t->s[j].ref = ref;
    t->n++;
}

/* ---- arena and symbols ---------------------------------------------------- */

static const char *arena_put(idx_t *x, const char *p, uint32_t len)
{
    size_t need = (size_t)len + 1;
    idx_chunk_t *c = x->chunks;
    if (!c || c->cap - c->used < need) {
        /* strings are <= 4 KiB, so a chunk wastes at most ~6 % at its end */
        size_t cap = need > IDX_CHUNK_SIZE / 2 ? need : IDX_CHUNK_SIZE - sizeof *c;
        idx_chunk_t *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->used = 0;
        nc->cap = cap;
        nc->next = c;
        x->chunks = nc;
        x->arena_bytes += sizeof *nc + cap + IDX_ALLOC_OVERHEAD;
        c = nc;
    }
    char *d = c->data + c->used;
    memcpy(d, p, len);
    d[len] = '\0';
    c->used += need;
    return d;
}

static int64_t sym_probe(const idx_t *x, const char *p, uint32_t len, uint32_t tag)
{
    if (!x->symtab.s)
        return -1;
    uint32_t j = tag & x->symtab.mask;
    for (;;) {
        idx_slot_t s = x->symtab.s[j];
        if (!s.ref)
            return -1;
        if (s.tag == tag) {
            const idx_sym_t *y = &x->syms[s.ref - 1];
            if (y->len == len && memcmp(y->p, p, len) == 0)
                return s.ref - 1;
        }
        j = (j + 1) & x->symtab.mask;
    }
}

int64_t idx__sym_find(const idx_t *x, const char *p, size_t len)
{
    if (len > UINT32_MAX)
        return -1;
    uint32_t tag = (uint32_t)(XXH3_64bits(p, len) >> 32);
    return sym_probe(x, p, (uint32_t)len, tag);
}

static int sym_intern(idx_t *x, const char *p, uint32_t len, uint32_t *out)
{
    uint32_t tag = (uint32_t)(XXH3_64bits(p, len) >> 32);
    int64_t f = sym_probe(x, p, len, tag);
    if (f >= 0) {
        *out = (uint32_t)f;
        return 0;
    }
    if (x->nsyms >= UINT32_MAX - 1)
        return ST_ELIMIT;
    if (!st_utf8_valid(p, len))
        return ST_EINVAL;
    int rc = grow_array((void **)&x->syms, &x->syms_cap, (size_t)x->nsyms + 1, sizeof *x->syms);
    if (rc)
        return rc;
    if ((rc = table_reserve(&x->symtab)))
        return rc;
    const char *s = arena_put(x, p, len);
    if (!s)
        return ST_ENOMEM;
    x->syms[x->nsyms] = (idx_sym_t){.p = s, .len = len, .name = 0};
    table_insert(&x->symtab, tag, x->nsyms + 1);
    *out = x->nsyms++;
    return 0;
}

/* ---- names and postings ------------------------------------------------------- */

int64_t idx__pair_find(const idx_t *x, uint32_t name, uint32_t value)
{
    if (!x->pairtab.s)
        return -1;
    uint32_t tag = (uint32_t)(mix64((uint64_t)name << 32 | value) >> 32);
    uint32_t j = tag & x->pairtab.mask;
    for (;;) {
        idx_slot_t s = x->pairtab.s[j];
        if (!s.ref)
            return -1;
        if (s.tag == tag) {
            const idx_plist_t *pl = &x->pl[s.ref - 1];
            if (pl->name == name && pl->value == value)
                return s.ref - 1;
        }
        j = (j + 1) & x->pairtab.mask;
    }
}

int64_t idx__name_find(const idx_t *x, const char *name, size_t len)
{
    int64_t s = idx__sym_find(x, name, len);
    if (s < 0 || !x->syms[s].name)
        return -1;
    return (int64_t)x->syms[s].name - 1;
}

static int pair_get(idx_t *x, uint32_t name, uint32_t value, uint32_t *out)
{
    int64_t f = idx__pair_find(x, name, value);
    if (f >= 0) {
        *out = (uint32_t)f;
        return 0;
    }
    int rc;
    uint32_t ni = x->syms[name].name;
    if (!ni) {
        if (x->nnames >= UINT32_MAX - 1)
            return ST_ELIMIT;
        rc = grow_array((void **)&x->names, &x->names_cap, (size_t)x->nnames + 1, sizeof *x->names);
        if (rc)
            return rc;
        x->names[x->nnames] = (idx_name_t){.sym = name, .nvals = 0, .cap = 0, .vals = NULL};
        ni = x->syms[name].name = ++x->nnames;
    }
    idx_name_t *nm = &x->names[ni - 1];
    if (x->npl >= UINT32_MAX - 1)
        return ST_ELIMIT;
    if ((rc = grow_array((void **)&x->pl, &x->pl_cap, (size_t)x->npl + 1, sizeof *x->pl)))
        return rc;
    if ((rc = grow_u32(&nm->vals, &nm->cap, nm->nvals + 1, &x->postings_bytes)))
        return rc;
    if ((rc = table_reserve(&x->pairtab)))
        return rc;
    const idx_sym_t *a = &x->syms[name], *b = &x->syms[value];
    x->pl[x->npl] = (idx_plist_t){.np = a->p,
                                  .vp = b->p,
                                  .nlen = a->len,
                                  .vlen = b->len,
                                  .name = name,
                                  .value = value,
                                  .n = 0,
                                  .cap = 0,
                                  .ids = NULL};
    nm->vals[nm->nvals++] = x->npl;
    uint32_t tag = (uint32_t)(mix64((uint64_t)name << 32 | value) >> 32);
    table_insert(&x->pairtab, tag, x->npl + 1);
    *out = x->npl++;
    return 0;
}

/* ---- series ------------------------------------------------------------------ */

/* Does the run at pairs + off hold exactly the labels l? */
static int series_eq(const idx_t *x, uint32_t off, const st_label_t *l, size_t n)
{
    const uint32_t *p = idx__run(x, off);
    if (p[1] != n)
        return 0;
    p += 2;
    for (size_t i = 0; i < n; i++) {
        const idx_plist_t *pl = &x->pl[p[i]];
        if (pl->nlen != l[i].name_len || pl->vlen != l[i].value_len)
            return 0;
        if (memcmp(pl->vp, l[i].value, pl->vlen) || memcmp(pl->np, l[i].name, pl->nlen))
            return 0;
    }
    return 1;
}

int idx_lookup(const idx_t *x, const st_label_t *l, size_t n, uint64_t hash, uint32_t *id)
{
    if (!x->sertab.s)
        return ST_ENOENT;
    uint32_t tag = (uint32_t)(hash >> 32);
    uint32_t mask = x->sertab.mask;
    const idx_slot_t *s = x->sertab.s;
    for (uint32_t j = tag & mask;; j = (j + 1) & mask) {
        if (!s[j].ref)
            return ST_ENOENT;
        if (s[j].tag == tag && series_eq(x, s[j].ref - 1, l, n)) {
            *id = idx__run(x, s[j].ref - 1)[0];
            return 0;
        }
    }
}

int idx_lookup_many(const idx_t *x, const st_label_t *const *l, const size_t *n,
                    const uint64_t *hash, size_t count, uint32_t *ids)
{
    enum { D1 = 16, D2 = 8 }; /* prefetch distances: slot, then the run it points to */
    int found = 0;
    if (!x->sertab.s) {
        for (size_t i = 0; i < count; i++)
            ids[i] = UINT32_MAX;
        return 0;
    }
    const idx_slot_t *s = x->sertab.s;
    uint32_t mask = x->sertab.mask;
    for (size_t i = 0; i < count && i < D1; i++)
        __builtin_prefetch(&s[(uint32_t)(hash[i] >> 32) & mask]);
    for (size_t i = 0; i < count; i++) {
        if (i + D1 < count)
            __builtin_prefetch(&s[(uint32_t)(hash[i + D1] >> 32) & mask]);
        if (i + D2 < count) {
            uint32_t tag = (uint32_t)(hash[i + D2] >> 32);
            idx_slot_t y = s[tag & mask];
            if (y.ref && y.tag == tag)
                __builtin_prefetch(idx__run(x, y.ref - 1));
        }
        ids[i] = UINT32_MAX;
        found += idx_lookup(x, l[i], n[i], hash[i], &ids[i]) == 0;
    }
    return found;
}

/* Add a series given as symbol ids (names ascending); `hash` keys sertab. */
static int add_syms(idx_t *x, const uint32_t *ns, const uint32_t *vs, size_t n, uint64_t hash,
                    uint32_t *out)
{
    uint32_t pid[ST_LABELS_MAX];
    int rc;
    if (x->count >= IDX_SERIES_MAX)
        return ST_ELIMIT;
    uint64_t off = x->run_tail;
    if ((off & (IDX_RUN_CHUNK - 1)) + n + 2 > IDX_RUN_CHUNK) /* start the next chunk */
        off = (off | (IDX_RUN_CHUNK - 1)) + 1;
    if (off + n + 2 >= UINT32_MAX)
        return ST_ELIMIT;
    if ((rc = grow_array((void **)&x->soff, &x->soff_cap, (size_t)x->count + 1, sizeof *x->soff)))
        return rc;
    size_t ci = (size_t)(off >> IDX_RUN_CHUNK_BITS);
    if (ci >= x->nruns_cap) {
        size_t old = x->nruns_cap;
        if ((rc = grow_array((void **)&x->runs, &x->nruns_cap, ci + 1, sizeof *x->runs)))
            return rc;
        memset(x->runs + old, 0, (x->nruns_cap - old) * sizeof *x->runs);
    }
    if (!x->runs[ci] && !(x->runs[ci] = malloc(IDX_RUN_CHUNK * sizeof(uint32_t))))
        return ST_ENOMEM;
    if ((rc = table_reserve(&x->sertab)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = pair_get(x, ns[i], vs[i], &pid[i])))
            return rc;
        idx_plist_t *pl = &x->pl[pid[i]];
        if ((rc = grow_u32(&pl->ids, &pl->cap, pl->n + 1, &x->postings_bytes)))
            return rc;
    }
    /* commit: nothing below can fail */
    uint32_t id = x->count, *run = idx__run(x, (uint32_t)off);
    x->soff[id] = (uint32_t)off;
    run[0] = id;
    run[1] = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        idx_plist_t *pl = &x->pl[pid[i]];
        pl->ids[pl->n++] = id;
        run[2 + i] = pid[i];
    }
    x->run_tail = off + n + 2;
    x->count++;
    table_insert(&x->sertab, (uint32_t)(hash >> 32), (uint32_t)off + 1);
    *out = id;
    return 0;
}

int idx_add(idx_t *x, const st_label_t *l, size_t n, uint64_t hash, uint32_t *id)
{
    uint32_t ns[ST_LABELS_MAX], vs[ST_LABELS_MAX], dummy;
    int rc;
    /*
     * The caller validated the set (st_labels_validate); re-check what keeps
     * the index and series.log well-formed cheaply here, and UTF-8 only for
     * strings not seen before (in sym_intern).
     */
    if (n == 0 || n > ST_LABELS_MAX)
        return ST_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (l[i].name_len == 0 || l[i].name_len > ST_LABEL_NAME_MAX ||
            l[i].value_len > ST_LABEL_VALUE_MAX)
            return ST_EINVAL;
        if (i && slice_cmp(l[i - 1].name, l[i - 1].name_len, l[i].name, l[i].name_len) >= 0)
            return ST_EINVAL;
    }
    if (idx_lookup(x, l, n, hash, &dummy) == 0)
        return ST_EEXIST;
    for (size_t i = 0; i < n; i++) {
        if ((rc = sym_intern(x, l[i].name, l[i].name_len, &ns[i])))
            return rc;
        if ((rc = sym_intern(x, l[i].value, l[i].value_len, &vs[i])))
            return rc;
    }
    return add_syms(x, ns, vs, n, hash, id);
}

uint32_t idx_count(const idx_t *x)
{
    return x->count;
}

int idx_labels(const idx_t *x, uint32_t id, st_label_t *out)
{
    if (id >= x->count)
        return ST_ENOENT;
    uint32_t n;
    const uint32_t *p = idx__series(x, id, &n);
    for (uint32_t i = 0; i < n; i++) {
        const idx_plist_t *pl = &x->pl[p[i]];
        out[i] = (st_label_t){
            .name = pl->np, .value = pl->vp, .name_len = pl->nlen, .value_len = pl->vlen};
    }
    return (int)n;
}

void idx__set_regex_opt(idx_t *x, int on)
{
    x->regex_opt = on;
}

uint64_t idx_disk_bytes(const idx_t *x)
{
    return x->disk_size;
}

uint64_t idx_mem_bytes(const idx_t *x)
{
    uint64_t m = sizeof *x + x->arena_bytes + x->postings_bytes;
    m += (uint64_t)x->syms_cap * sizeof *x->syms;
    m += (uint64_t)x->names_cap * sizeof *x->names;
    m += (uint64_t)x->pl_cap * sizeof *x->pl;
    m += (uint64_t)x->soff_cap * sizeof *x->soff;
    m += (uint64_t)x->nruns_cap * sizeof *x->runs;
    if (x->count) /* chunks [0, last used] are allocated */
        m += ((x->run_tail - 1) / IDX_RUN_CHUNK + 1) *
             (IDX_RUN_CHUNK * sizeof(uint32_t) + IDX_ALLOC_OVERHEAD);
    m += (uint64_t)(table_cap(&x->symtab) + table_cap(&x->pairtab) + table_cap(&x->sertab)) *
         sizeof(idx_slot_t);
    return m;
}

/* ---- series.log: encoding -------------------------------------------------- */

/*
 * Encode series [first, ...) into `raw` (reset first), stopping after
 * IDX_REC_TARGET bytes; *next = first series not encoded, *sym_end = end of
 * the symbol range written. `tmp` is scratch.
 */
static int encode_block(const idx_t *x, uint32_t first, uint32_t *next, uint32_t *sym_end,
                        st_buf_t *raw, st_buf_t *tmp)
{
    uint32_t se = x->persisted_syms, s = first;
    uint64_t symbytes = 0;
    const uint32_t *prev = NULL;
    uint32_t prev_n = 0;
    int rc = 0;
    st_buf_reset(raw);
    st_buf_reset(tmp);
    while (s < x->count) {
        uint32_t n;
        const uint32_t *p = idx__series(x, s, &n);
        uint8_t bm[ST_LABELS_MAX / 8] = {0};
        for (uint32_t i = 0; i < n; i++)
            if (prev && i < prev_n && prev[i] == p[i])
                bm[i / 8] |= (uint8_t)(1u << (i % 8));
        if ((rc = st_buf_put_uvarint(tmp, n)) || (rc = st_buf_append(tmp, bm, (n + 7) / 8)))
            return rc;
        for (uint32_t i = 0; i < n; i++) {
            if (bm[i / 8] & (1u << (i % 8)))
                continue;
            const idx_plist_t *pl = &x->pl[p[i]];
            uint32_t a = pl->name, b = pl->value;
            if ((rc = st_buf_put_uvarint(tmp, a)) || (rc = st_buf_put_uvarint(tmp, b)))
                return rc;
            uint32_t hi = a > b ? a : b;
            for (; se <= hi; se++)
                symbytes += x->syms[se].len + 2;
        }
        prev = p;
        prev_n = n;
        s++;
        if (tmp->len + symbytes >= IDX_REC_TARGET)
            break;
    }
    if ((rc = st_buf_put_uvarint(raw, first)) || (rc = st_buf_put_uvarint(raw, s - first)) ||
        (rc = st_buf_put_uvarint(raw, x->persisted_syms)) ||
        (rc = st_buf_put_uvarint(raw, se - x->persisted_syms)))
        return rc;
    for (uint32_t k = x->persisted_syms; k < se; k++)
        if ((rc = st_buf_put_uvarint(raw, x->syms[k].len)) ||
            (rc = st_buf_append(raw, x->syms[k].p, x->syms[k].len)))
            return rc;
    if ((rc = st_buf_append(raw, tmp->data, tmp->len)))
        return rc;
    *next = s;
    *sym_end = se;
    return 0;
}

/* Frame `raw` as a record (header + payload) in `rec` (reset first). */
static int frame_record(const st_buf_t *raw, st_buf_t *rec)
{
    if (raw->len > IDX_RAW_MAX || raw->len > (size_t)LZ4_MAX_INPUT_SIZE)
        return ST_ELIMIT;
    int bound = LZ4_compressBound((int)raw->len);
    st_buf_reset(rec);
    int rc = st_buf_reserve(rec, IDX_REC_HDR + IDX_PAYLOAD_HDR + (size_t)bound);
    if (rc)
        return rc;
    uint8_t *p = rec->data;
    p[IDX_REC_HDR] = IDX_FORMAT_VERSION;
    st_store_u32le(p + IDX_REC_HDR + 1, (uint32_t)raw->len);
    int c = LZ4_compress_default((const char *)raw->data, (char *)p + IDX_REC_HDR + IDX_PAYLOAD_HDR,
                                 (int)raw->len, bound);
    if (c <= 0)
        return ST_ENOMEM;
    uint32_t L = IDX_PAYLOAD_HDR + (uint32_t)c;
    if (L > IDX_REC_MAX)
        return ST_ELIMIT;
    st_store_u32le(p, L);
    st_store_u32le(p + 4, st_crc32c(0, p + IDX_REC_HDR, L));
    rec->len = IDX_REC_HDR + L;
    return 0;
}

int idx_persist(idx_t *x)
{
    if (x->persisted == x->count && (x->fd < 0 || x->dir_synced))
        return 0;
    int rc = 0;
    if (x->fd < 0) {
        x->fd = open(x->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (x->fd < 0)
            return ST_EIO;
        x->dir_synced = 0;
    }
    if (!x->dir_synced) {
        if (st_fsync_dir(x->dir))
            return ST_EIO;
        x->dir_synced = 1;
    }
    if (x->persisted == x->count)
        return 0;
    st_buf_t raw, tmp, rec;
    st_buf_init(&raw);
    st_buf_init(&tmp);
    st_buf_init(&rec);
    uint64_t off = x->disk_size;
    uint32_t s = x->persisted, saved_syms = x->persisted_syms;
    while (s < x->count) {
        uint32_t next, se;
        if ((rc = encode_block(x, s, &next, &se, &raw, &tmp)) || (rc = frame_record(&raw, &rec)) ||
            (rc = st_pwrite_all(x->fd, rec.data, rec.len, off)))
            goto fail;
        off += rec.len;
        s = next;
        x->persisted_syms = se; /* the next block's symbols start here */
    }
    if (fdatasync(x->fd)) {
        rc = ST_EIO;
        goto fail;
    }
    x->disk_size = off;
    x->persisted = s;
    goto out;
fail:
    x->persisted_syms = saved_syms;
    if (ftruncate(x->fd, (off_t)x->disk_size) == 0)
        (void)fdatasync(x->fd);
out:
    st_buf_deinit(&raw);
    st_buf_deinit(&tmp);
    st_buf_deinit(&rec);
    return rc;
}

/* ---- series.log: replay ------------------------------------------------------ */

static int get_uv(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    int k = st_uvarint_get(*p, end, v);
    if (k <= 0)
        return ST_ECORRUPT;
    *p += k;
    return 0;
}

static int decode_block(idx_t *x, const uint8_t *p, const uint8_t *end)
{
    uint64_t first, count, first_sym, nsyms, v;
    uint32_t ns[ST_LABELS_MAX], vs[ST_LABELS_MAX], pns[ST_LABELS_MAX], pvs[ST_LABELS_MAX];
    st_label_t lab[ST_LABELS_MAX];
    uint32_t prev_n = 0;
    int rc;
    if (get_uv(&p, end, &first) || get_uv(&p, end, &count) || get_uv(&p, end, &first_sym) ||
        get_uv(&p, end, &nsyms))
        return ST_ECORRUPT;
    if (first != x->count || first_sym != x->nsyms || count == 0)
        return ST_ECORRUPT;
    if (count > (uint64_t)(end - p) / 2 || count > IDX_SERIES_MAX - x->count ||
        nsyms > (uint64_t)(end - p))
        return ST_ECORRUPT;
    for (uint64_t k = 0; k < nsyms; k++) {
        uint64_t len;
        uint32_t id;
        if (get_uv(&p, end, &len) || len > ST_LABEL_VALUE_MAX || len > (uint64_t)(end - p))
            return ST_ECORRUPT;
        if (!st_utf8_valid((const char *)p, len) || idx__sym_find(x, (const char *)p, len) >= 0)
            return ST_ECORRUPT;
        if ((rc = sym_intern(x, (const char *)p, (uint32_t)len, &id)))
            return rc;
        p += len;
    }
    for (uint64_t s = 0; s < count; s++) {
        uint64_t n;
        if (get_uv(&p, end, &n) || n == 0 || n > ST_LABELS_MAX)
            return ST_ECORRUPT;
        size_t nb = (size_t)(n + 7) / 8;
        if ((size_t)(end - p) < nb)
            return ST_ECORRUPT;
        const uint8_t *bm = p;
        p += nb;
        if (n % 8 && (bm[nb - 1] >> (n % 8)))
            return ST_ECORRUPT;
        for (uint32_t i = 0; i < n; i++) {
            if (bm[i / 8] & (1u << (i % 8))) {
                if (s == 0 || i >= prev_n)
                    return ST_ECORRUPT;
                ns[i] = pns[i];
                vs[i] = pvs[i];
                continue;
            }
            if (get_uv(&p, end, &v) || v >= x->nsyms)
                return ST_ECORRUPT;
            ns[i] = (uint32_t)v;
            if (get_uv(&p, end, &v) || v >= x->nsyms)
                return ST_ECORRUPT;
            vs[i] = (uint32_t)v;
        }
        for (uint32_t i = 0; i < n; i++) {
            const idx_sym_t *a = &x->syms[ns[i]], *b = &x->syms[vs[i]];
            if (a->len == 0 || a->len > ST_LABEL_NAME_MAX)
                return ST_ECORRUPT;
            if (i > 0 && slice_cmp(lab[i - 1].name, lab[i - 1].name_len, a->p, a->len) >= 0)
                return ST_ECORRUPT;
            lab[i] =
                (st_label_t){.name = a->p, .value = b->p, .name_len = a->len, .value_len = b->len};
        }
        uint64_t h = st_labels_hash(lab, n);
        uint32_t id;
        if (idx_lookup(x, lab, n, h, &id) == 0)
            return ST_ECORRUPT;
        if ((rc = add_syms(x, ns, vs, n, h, &id)))
            return rc;
        memcpy(pns, ns, n * sizeof *ns);
        memcpy(pvs, vs, n * sizeof *vs);
        prev_n = (uint32_t)n;
    }
    return p == end ? 0 : ST_ECORRUPT;
}

/* Replay series.log; *valid_end = end of the last good record. */
static int replay(idx_t *x, uint64_t size, uint64_t *valid_end)
{
    uint64_t off = 0;
    uint8_t *pay = NULL, *raw = NULL;
    size_t pay_cap = 0, raw_cap = 0;
    int rc = 0;
    while (size - off >= IDX_REC_HDR) {
        uint8_t hdr[IDX_REC_HDR];
        if ((rc = st_pread_all(x->fd, hdr, sizeof hdr, off)))
            goto out;
        uint32_t L = st_load_u32le(hdr), crc = st_load_u32le(hdr + 4);
        if (L <= IDX_PAYLOAD_HDR || L > IDX_REC_MAX || L > size - off - IDX_REC_HDR)
            break; /* torn or corrupt tail */
        if ((rc = grow_array((void **)&pay, &pay_cap, L, 1)))
            goto out;
        if ((rc = st_pread_all(x->fd, pay, L, off + IDX_REC_HDR)))
            goto out;
        if (st_crc32c(0, pay, L) != crc)
            break;
        if (pay[0] != IDX_FORMAT_VERSION) {
            rc = ST_EVERSION;
            goto out;
        }
        uint32_t R = st_load_u32le(pay + 1), C = L - IDX_PAYLOAD_HDR;
        if (R == 0 || R > IDX_RAW_MAX || R > 256ull * C + 64) {
            rc = ST_ECORRUPT;
            goto out;
        }
        if ((rc = grow_array((void **)&raw, &raw_cap, R, 1)))
            goto out;
        int d =
            LZ4_decompress_safe((const char *)pay + IDX_PAYLOAD_HDR, (char *)raw, (int)C, (int)R);
        if (d < 0 || (uint32_t)d != R) {
            rc = ST_ECORRUPT;
            goto out;
        }
        if ((rc = decode_block(x, raw, raw + R)))
            goto out;
        off += IDX_REC_HDR + L;
    }
    *valid_end = off;
out:
    if (rc == ST_EAGAIN)
        rc = ST_EIO;
    free(pay);
    free(raw);
    return rc;
}

/* ---- open / close --------------------------------------------------------------- */

int idx_open(const char *dir, idx_t **out)
{
    struct stat st;
    *out = NULL;
    if (stat(dir, &st))
        return errno == ENOENT ? ST_ENOENT : ST_EIO;
    if (!S_ISDIR(st.st_mode))
        return ST_EINVAL;
    idx_t *x = calloc(1, sizeof *x);
    if (!x)
        return ST_ENOMEM;
    x->fd = -1;
    x->regex_opt = 1;
    int rc = ST_ENOMEM;
    size_t dl = strlen(dir);
    x->dir = strdup(dir);
    x->path = malloc(dl + sizeof "/series.log");
    if (!x->dir || !x->path)
        goto fail;
    memcpy(x->path, dir, dl);
    memcpy(x->path + dl, "/series.log", sizeof "/series.log");
    x->fd = open(x->path, O_RDWR | O_CLOEXEC);
    if (x->fd < 0) {
        rc = ST_EIO;
        if (errno != ENOENT)
            goto fail;
        *out = x;
        return 0;
    }
    x->dir_synced = 1;
    if (fstat(x->fd, &st)) {
        rc = ST_EIO;
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size, end = 0;
    if ((rc = replay(x, size, &end)))
        goto fail;
    if (end < size) {
        if (ftruncate(x->fd, (off_t)end) || fdatasync(x->fd)) {
            rc = ST_EIO;
            goto fail;
        }
    }
    x->disk_size = end;
    x->persisted = x->count;
    x->persisted_syms = x->nsyms;
    *out = x;
    return 0;
fail:
    idx_close(x);
    return rc;
}

void idx_close(idx_t *x)
{
    if (!x)
        return;
    if (x->fd >= 0)
        close(x->fd);
    for (idx_chunk_t *c = x->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    for (uint32_t i = 0; i < x->npl; i++)
        free(x->pl[i].ids);
    for (uint32_t i = 0; i < x->nnames; i++)
        free(x->names[i].vals);
    free(x->syms);
    free(x->symtab.s);
    free(x->names);
    free(x->pl);
    free(x->pairtab.s);
    free(x->soff);
    for (size_t i = 0; i < x->nruns_cap; i++)
        free(x->runs[i]);
    free(x->runs);
    free(x->sertab.s);
    free(x->path);
    free(x->dir);
    free(x);
}
