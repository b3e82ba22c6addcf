/*
 * wbatch — line protocol -> per-shard NodeWrite entries. See wbatch.h.
 *
 * Grouping: the tags of a point (a tagset) are encoded once, as the Label
 * fields of the wire format (wire_put_labels), and interned per request by
 * st_labels_hash_noname() and the encoded bytes (one memcmp); a metric name
 * is interned as its encoded __name__ Label. A series is then (tagset,
 * name): each numeric field adds a sample to the entry of its series,
 * keyed by st_series_hash_from(tagset hash, metric name), so the tags are
 * hashed, compared and encoded once per point whatever its number of
 * fields, and no label is copied per series. Series handed over whole
 * (wbatch_add_series) are a tagset of all their labels and no name.
 * Samples are kept in body order, each with its series' entry; encoding
 * sorts the series by shard (counting sort), gathers every series' samples
 * into one array in that order (one pass over the samples, each series'
 * in body order: reads in sequence, not a chain of cache misses per
 * series) and writes one WriteRequest per shard, each series
 * as its tagset's bytes before the name, the name, the bytes after (the
 * labels stay sorted). Once encoded, the grouping state is freed: only the
 * encoded entries live while the pieces are sent.
 *
 * Series references (wbatch_set_refs): each series is written with its
 * reference (series_ref: a seeded 128-bit hash) and, when the
 * router's set holds it (this process sent it with labels before), without
 * its labels. The set is read-locked once for an encoding; the references
 * it lacked are added after (optimistically: a node that does not know one
 * says so, ST_ENOREF, and gets the piece again with labels). For that, the
 * entries, their labels and each piece's first series stay until the
 * batch goes (wbatch_piece_labels).
 */
#include "wbatch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "st_buf.h"
#include "st_err.h"
#include "st_labels.h"
#include "st_text.h"
#include "wire.h"

#define WBATCH_GROW_MIN 256   /* first size of a growing array (elements) */
#define WBATCH_TABLE_MIN 4096 /* first size of a hash table (slots, power of 2) */

#define NO_NAME UINT32_MAX /* an entry whose tagset holds all its labels */
#define NAME_CACHE 64      /* fields of a point whose name index is remembered */
/* Encoded-entry buffers of finished batches kept for the next ones: a
 * fresh multi-MB buffer is a fresh mmap whose every page faults on first
 * write (the largest cost of encoding before). Bounded in count and bytes. */
#define WBATCH_POOL_N 4
#define WBATCH_POOL_BYTES (64u << 20)
#define SERIES_SAMPLE_ROOM 20 /* encoded bytes of a sample, at most (varint ts + double) */

typedef struct entry {
    uint64_t hash;   /* st_series_hash */
    uint32_t tagset; /* index into tags */
    uint32_t name;   /* index into names, or NO_NAME */
    uint32_t shard;
    uint32_t count; /* samples */
} entry_t;

/* Encoded Label fields interned by hash and bytes (bytes in wbatch.enc):
 * a tagset (its __name__ label goes at byte `split`) or a metric name's
 * __name__ label (split: the length of the name, its last bytes). */
typedef struct blob {
    uint64_t hash;
    size_t off;
    uint32_t len, split;
    /* a tagset's series made by its first point, field by field: entries
     * [e_first, e_first + e_n) (later points with the same fields find
     * theirs there, without hashing or probing) */
    uint32_t e_first, e_n;
    uint64_t ref[2]; /* seeded 128-bit hash of the bytes (series references), ref_set */
    int ref_set;
} blob_t;

/* A sample and the entry of its series. */
typedef struct sample {
    int64_t ts;
    double v;
    uint32_t entry;
} sample_t;

typedef struct blobs {
    blob_t *v;
    size_t n, cap;
    uint32_t *tab; /* index + 1, 0 = empty */
    size_t tcap;
} blobs_t;

struct wbatch {
    const topo_t *t;
    /* grouping */
    entry_t *e;
    size_t ne, ecap;
    uint32_t *table;
    size_t tcap;
    blobs_t tags, names;
    uint8_t *enc; /* the blobs' bytes */
    size_t encl, enccap;
    st_buf_t scratch;                /* a point's tags being encoded */
    uint32_t name_cache[NAME_CACHE]; /* names index + 1 of the last point's fields */
    sample_t *s;                     /* in body order */
    size_t ns, s_cap;
    int oom;
    /* retention: points before min_ts are rejected (INT64_MIN: none);
     * max_future: points after max_ts are (INT64_MAX: none) */
    int64_t min_ts, retention_ms;
    int64_t now_ms; /* for the per-metric retention overrides ([retention]) */
    int64_t max_ts, max_future_ms;
    size_t piece_max;        /* bytes of series per entry; 0: one entry per shard */
    wbatch_filter_fn filter; /* NULL: every series may be written */
    void *filter_arg;
    const char *filter_why;
    uint64_t lines_forbidden; /* of lines_bad: refused by the filter */
    /* results of parsing */
    uint64_t lines_ok, lines_bad, lines_too_old, lines_too_far_future;
    uint64_t last_item; /* wbatch_add_series: item + 1 last counted (several series, one line) */
    wbatch_rejected_t rej[WBATCH_MAX_REJECTED];
    size_t nrej;
    /* encoded shard batches: NodeWrite field-1 entries back to back */
    st_buf_t all;
    wbatch_shard_t *sh; /* entries, by shard ascending */
    size_t nsh, shcap;
    /* series references (wbatch_set_refs; NULL: none) */
    wbatch_refs_t *refs;
    uint8_t (*newrefs)[WIRE_REF_LEN]; /* the set lacked them: added after encoding */
    size_t nnew, newcap;
    uint32_t *order; /* entries in the order encoded (kept with refs) */
    size_t *pk;      /* [piece]: its first series in order */
    st_buf_t *lab;   /* [piece]: the piece again with labels (wbatch_piece_labels) */
};

/* The router's set of references sent with labels: open addressing of
 * their first 8 bytes (| 1; 0 = empty), cleared whole when it reaches max.
 * Only a hint (a node checks every reference it gets: one it does not
 * know is sent again with labels), so 8 bytes of the 16 do: half the
 * table, whose probe is a cache miss a series. */
struct wbatch_refs {
    pthread_rwlock_t lock;
    uint64_t seed;
    uint64_t *slot;
    size_t cap, n, max;
};

int wbatch_refs_create(uint64_t seed, size_t max, wbatch_refs_t **out)
{
    wbatch_refs_t *r = calloc(1, sizeof *r);
    if (!r)
        return ST_ENOMEM;
    pthread_rwlock_init(&r->lock, NULL);
    r->seed = seed;
    r->max = max ? max : 1;
    *out = r;
    return 0;
}

void wbatch_refs_destroy(wbatch_refs_t *r)
{
    if (!r)
        return;
    pthread_rwlock_destroy(&r->lock);
    free(r->slot);
    free(r);
}

static uint64_t ref_word(const uint8_t *ref)
{
    uint64_t w;
    memcpy(&w, ref, 8);
    return w | 1;
}

/* Under the lock (read or write). */
static int refs_has(const wbatch_refs_t *r, uint64_t w)
{
    if (!r->cap)
        return 0;
    size_t mask = r->cap - 1;
    for (size_t j = (size_t)w & mask; r->slot[j]; j = (j + 1) & mask)
        if (r->slot[j] == w)
            return 1;
    return 0;
}

static void refs_prefetch(const wbatch_refs_t *r, uint64_t w)
{
    if (r->cap)
        __builtin_prefetch(&r->slot[(size_t)w & (r->cap - 1)]);
}

/* Under the write lock. */
static void refs_add(wbatch_refs_t *r, const uint8_t *ref)
{
    if (r->n >= r->max) { /* forget them all: they are sent with labels again */
        memset(r->slot, 0, r->cap * sizeof *r->slot);
        r->n = 0;
    }
    if ((r->n + 1) * 2 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4096;
        uint64_t *ns = calloc(cap, sizeof *ns);
        if (!ns)
            return;
        for (size_t i = 0; i < r->cap; i++) {
            if (!r->slot[i])
                continue;
            size_t j = (size_t)r->slot[i] & (cap - 1);
            while (ns[j])
                j = (j + 1) & (cap - 1);
            ns[j] = r->slot[i];
        }
        free(r->slot);
        r->slot = ns;
        r->cap = cap;
    }
    uint64_t w = ref_word(ref);
    size_t mask = r->cap - 1, j = (size_t)w & mask;
    for (; r->slot[j]; j = (j + 1) & mask)
        if (r->slot[j] == w)
            return;
    r->slot[j] = w;
    r->n++;
}

size_t wbatch_refs_count(wbatch_refs_t *r)
{
    pthread_rwlock_rdlock(&r->lock);
    size_t n = r->n;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

/* A blob's seeded 128-bit hash, made once. */
static const uint64_t *blob_ref(const wbatch_t *j, blob_t *x)
{
    if (!x->ref_set) {
        XXH128_hash_t h = XXH3_128bits_withSeed(j->enc + x->off, x->len, j->refs->seed);
        x->ref[0] = h.low64;
        x->ref[1] = h.high64;
        x->ref_set = 1;
    }
    return x->ref;
}

/* Entry en's reference: a seeded hash of its tagset's and its name's
 * hashes (its label bytes are a function of the two: the name goes where
 * it sorts), so a tag set is hashed once a batch, not once a field. */
static void series_ref(wbatch_t *j, const entry_t *en, uint8_t out[WIRE_REF_LEN])
{
    uint64_t in[4] = {0, 0, 0, 0};
    memcpy(in, blob_ref(j, &j->tags.v[en->tagset]), 16);
    if (en->name != NO_NAME)
        memcpy(in + 2, blob_ref(j, &j->names.v[en->name]), 16);
    XXH128_hash_t h = XXH3_128bits_withSeed(in, sizeof in, j->refs->seed);
    memcpy(out, &h.low64, 8);
    memcpy(out + 8, &h.high64, 8);
}

/* 1 (labels left out) when the set holds ref, else 0, noted to be added. */
static int series_known(wbatch_t *j, const uint8_t *ref)
{
    if (refs_has(j->refs, ref_word(ref)))
        return 1;
    if (j->nnew == j->newcap) {
        size_t c = j->newcap ? 2 * j->newcap : 256;
        void *n = realloc(j->newrefs, c * sizeof *j->newrefs);
        if (!n)
            return 0; /* not added: sent with labels again next time */
        j->newrefs = n;
        j->newcap = c;
    }
    memcpy(j->newrefs[j->nnew++], ref, WIRE_REF_LEN);
    return 0;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem, int *oom)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : WBATCH_GROW_MIN;
    while (c < need)
        c *= 2;
    void *np = realloc(p, c * elem);
    if (!np) {
        *oom = 1;
        return p;
    }
    *cap = c;
    return np;
}

/* Open-addressing tables of uint32 (index + 1, 0 = empty) keyed by a hash. */
static int table_grow(uint32_t **tab, size_t *cap, size_t n, const void *items, size_t stride)
{
    size_t c = *cap ? *cap * 2 : WBATCH_TABLE_MIN;
    uint32_t *t = calloc(c, sizeof *t);
    if (!t)
        return ST_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = *(const uint64_t *)((const char *)items + i * stride);
        size_t k = h & (c - 1);
        while (t[k])
            k = (k + 1) & (c - 1);
        t[k] = (uint32_t)i + 1;
    }
    free(*tab);
    *tab = t;
    *cap = c;
    return 0;
}

/* The index of bytes [p, p + len) in s (added if new; p must not point
 * into j->enc), or ST_ENOMEM. */
static long blob_intern(wbatch_t *j, blobs_t *s, uint64_t hash, const uint8_t *p, size_t len,
                        uint32_t split)
{
    if ((s->n + 1) * 2 > s->tcap && table_grow(&s->tab, &s->tcap, s->n, s->v, sizeof *s->v))
        return ST_ENOMEM;
    size_t h = hash & (s->tcap - 1);
    while (s->tab[h]) {
        const blob_t *x = &s->v[s->tab[h] - 1];
        if (x->hash == hash && x->len == len && (!len || memcmp(j->enc + x->off, p, len) == 0))
            return s->tab[h] - 1;
        h = (h + 1) & (s->tcap - 1);
    }
    s->v = grow(s->v, &s->cap, s->n + 1, sizeof *s->v, &j->oom);
    j->enc = grow(j->enc, &j->enccap, j->encl + len, 1, &j->oom);
    if (j->oom)
        return ST_ENOMEM;
    if (len) /* an empty blob may leave enc unallocated */
        memcpy(j->enc + j->encl, p, len);
    s->v[s->n] = (blob_t){.hash = hash, .off = j->encl, .len = (uint32_t)len, .split = split};
    j->encl += len;
    s->tab[h] = (uint32_t)++s->n;
    return (long)(s->n - 1);
}

/* Intern labels l[0, n) encoded, the __name__ label to go before l[pos]. */
static long tagset_of(wbatch_t *j, const st_label_t *l, uint32_t n, uint32_t pos, uint64_t hash)
{
    st_buf_reset(&j->scratch);
    if (wire_put_labels(&j->scratch, l, pos))
        return ST_ENOMEM;
    uint32_t split = (uint32_t)j->scratch.len;
    if (wire_put_labels(&j->scratch, l + pos, n - pos))
        return ST_ENOMEM;
    return blob_intern(j, &j->tags, hash, j->scratch.data, j->scratch.len, split);
}

/* The names index of metric name `name` (a __name__ label), field `field`
 * of its point: the same field of the previous point usually has it. */
static long name_of(wbatch_t *j, const st_label_t *name, uint32_t field)
{
    uint32_t c = field < NAME_CACHE ? j->name_cache[field] : 0;
    if (c) {
        const blob_t *x = &j->names.v[c - 1];
        if (x->split == name->value_len &&
            memcmp(j->enc + x->off + x->len - x->split, name->value, name->value_len) == 0)
            return c - 1;
    }
    st_buf_reset(&j->scratch);
    if (wire_put_labels(&j->scratch, name, 1))
        return ST_ENOMEM;
    long ni = blob_intern(j, &j->names, st_series_hash_from(0, name->value, name->value_len),
                          j->scratch.data, j->scratch.len, name->value_len);
    if (ni >= 0 && field < NAME_CACHE)
        j->name_cache[field] = (uint32_t)ni + 1;
    return ni;
}

/* The entry of series (tagset, name) of sharding hash `hash` (metric name
 * mname), added if new. */
static long entry_of(wbatch_t *j, uint32_t tagset, uint32_t name, uint64_t hash, const char *mname,
                     size_t mlen)
{
    if ((j->ne + 1) * 2 > j->tcap && table_grow(&j->table, &j->tcap, j->ne, j->e, sizeof *j->e))
        return ST_ENOMEM;
    size_t h = hash & (j->tcap - 1);
    while (j->table[h]) {
        const entry_t *en = &j->e[j->table[h] - 1];
        if (en->hash == hash && en->tagset == tagset && en->name == name)
            return j->table[h] - 1;
        h = (h + 1) & (j->tcap - 1);
    }
    j->e = grow(j->e, &j->ecap, j->ne + 1, sizeof *j->e, &j->oom);
    if (j->oom)
        return ST_ENOMEM;
    /* the placement rule of topo.h: topo_shard_of_labels(labels), with the
     * series hash already at hand */
    j->e[j->ne] = (entry_t){.hash = hash,
                            .tagset = tagset,
                            .name = name,
                            .shard = topo_shard_of_hash(j->t, hash, mname, mlen)};
    j->table[h] = (uint32_t)++j->ne;
    return (long)(j->ne - 1);
}

static void on_error(void *arg, uint64_t line, int code, const char *reason)
{
    wbatch_t *j = arg;
    j->lines_bad++;
    (void)code;
    if (j->nrej < WBATCH_MAX_REJECTED) {
        j->rej[j->nrej].line = line;
        snprintf(j->rej[j->nrej].reason, sizeof j->rej[j->nrej].reason, "%s", reason);
        j->nrej++;
    }
}

/* "2016-01-01T00:00:00Z" (".123" before the Z when ms are not 0). */
static void fmt_rfc3339(char *buf, size_t cap, int64_t ms)
{
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    time_t tt = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(buf, cap, "%lldms", (long long)ms);
        return;
    }
    int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, frac ? ".%03dZ" : "Z", (int)frac);
}

/* A [retention] override of the series' metric that ts is older than: its
 * value (the series' name in *name), or 0 (none, or ts is recent enough). */
static int64_t metric_too_old(const wbatch_t *b, const st_label_t *l, size_t n, int64_t ts,
                              const st_label_t **name)
{
    if (!b->now_ms || !topo_retention_overrides(b->t))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (l[i].name_len == 8 && !memcmp(l[i].name, ST_METRIC_LABEL, 8)) {
            int64_t r = topo_retention_of(b->t, l[i].value, l[i].value_len);
            *name = &l[i];
            return r > 0 && b->now_ms > INT64_MIN + r && ts < b->now_ms - r ? r : 0;
        }
    return 0;
}

/* A line of which series `name` is older than its metric's retention. */
static void reject_metric_too_old(wbatch_t *j, uint64_t line, const st_label_t *name, int64_t ts,
                                  int64_t ret_ms, size_t count)
{
    char when[48], ret[32], why[WBATCH_REASON_MAX];
    fmt_rfc3339(when, sizeof when, ts);
    st_fmt_duration_one(ret, sizeof ret, ret_ms);
    if (count)
        snprintf(why, sizeof why, "%zu sample(s) from %s are older than the retention of %.*s (%s)",
                 count, when, (int)name->value_len, name->value, ret);
    else
        snprintf(why, sizeof why, "timestamp %s is older than the retention of %.*s (%s)", when,
                 (int)name->value_len, name->value, ret);
    j->lines_too_old++;
    on_error(j, line, 0, why);
}

static void reject_too_old(wbatch_t *j, const lp_point_t *pt)
{
    char when[48], ret[32], why[WBATCH_REASON_MAX];
    fmt_rfc3339(when, sizeof when, pt->ts_ms);
    snprintf(why, sizeof why, "timestamp %s is older than the retention (%s)", when,
             st_fmt_duration_one(ret, sizeof ret, j->retention_ms));
    j->lines_too_old++;
    on_error(j, pt->line, 0, why);
}

static void reject_too_far_future(wbatch_t *j, const lp_point_t *pt)
{
    char when[48], ahead[32], why[WBATCH_REASON_MAX];
    fmt_rfc3339(when, sizeof when, pt->ts_ms);
    snprintf(why, sizeof why, "timestamp %s is more than %s ahead of the server clock (max_future)",
             when, st_fmt_duration_one(ahead, sizeof ahead, j->max_future_ms));
    j->lines_too_far_future++;
    on_error(j, pt->line, 0, why);
}

static int encode(wbatch_t *j);
static void grouping_free(wbatch_t *b);
static void pool_take(st_buf_t *b, size_t need);

/* A series handed over whole (wbatch_add_series): a tagset of all its
 * labels, keyed by its series hash, and no name. */
static long entry_of_series(wbatch_t *j, const st_label_t *l, uint32_t n)
{
    uint64_t hash = st_series_hash(l, n);
    long ti = tagset_of(j, l, n, n, hash);
    if (ti < 0)
        return ti;
    int ni = st_labels_find(l, n, ST_METRIC_LABEL);
    const st_label_t *name = ni >= 0 ? &l[ni] : NULL;
    return entry_of(j, (uint32_t)ti, NO_NAME, hash, name ? name->value : "",
                    name ? name->value_len : 0);
}

/* Room for `more` samples. */
static int reserve_samples(wbatch_t *j, size_t more)
{
    j->s = grow(j->s, &j->s_cap, j->ns + more, sizeof *j->s, &j->oom);
    return j->oom ? ST_ENOMEM : 0;
}

/* Append a sample to entry ei (room reserved). */
static void add_sample(wbatch_t *j, uint32_t ei, int64_t ts, double v)
{
    j->e[ei].count++;
    j->s[j->ns++] = (sample_t){ts, v, ei};
}

void wbatch_set_filter(wbatch_t *b, wbatch_filter_fn fn, void *arg, const char *why)
{
    b->filter = fn;
    b->filter_arg = arg;
    b->filter_why = why;
}

int wbatch_add_series(wbatch_t *b, uint64_t item, const st_label_t *l, uint32_t n,
                      const int64_t *ts, const double *v, size_t count)
{
    if (b->filter && !b->filter(b->filter_arg, l, n)) {
        b->last_item = item + 1;
        b->lines_forbidden++;
        on_error(b, item, 0, b->filter_why);
        return 0;
    }
    /* a [retention] override of the metric moves the bound (ts INT64_MIN:
     * always "too old", so mret is the override if there is one) */
    const st_label_t *name = NULL;
    int64_t mret = metric_too_old(b, l, n, INT64_MIN, &name), min_ts = b->min_ts;
    if (mret && b->now_ms - mret > min_ts)
        min_ts = b->now_ms - mret;
    else
        mret = 0;
    size_t keep = 0;
    for (size_t k = 0; k < count; k++)
        keep += ts[k] >= min_ts && ts[k] <= b->max_ts;
    long ei = 0;
    if (keep) { /* a series with nothing to keep gets no entry */
        ei = entry_of_series(b, l, n);
        if (ei < 0)
            return (int)ei;
        if (reserve_samples(b, keep))
            return ST_ENOMEM;
    }
    size_t old = 0, future = 0;
    int64_t oldest = 0, newest = 0;
    for (size_t k = 0; k < count; k++) {
        if (ts[k] < min_ts) {
            if (!old++ || ts[k] < oldest)
                oldest = ts[k];
            continue;
        }
        if (ts[k] > b->max_ts) {
            if (!future++ || ts[k] > newest)
                newest = ts[k];
            continue;
        }
        add_sample(b, (uint32_t)ei, ts[k], v[k]);
    }
    int first = b->last_item != item + 1;
    b->last_item = item + 1;
    if (!old && !future) {
        b->lines_ok += first;
        return 0;
    }
    char when[48], ret[32], why[WBATCH_REASON_MAX];
    if (!old) {
        fmt_rfc3339(when, sizeof when, newest);
        snprintf(why, sizeof why,
                 "%zu sample(s) up to %s are more than %s ahead of the server clock (max_future)",
                 future, when, st_fmt_duration_one(ret, sizeof ret, b->max_future_ms));
        b->lines_too_far_future += first;
        on_error(b, item, 0, why);
        return 0;
    }
    if (mret) {
        b->lines_too_old -= !first; /* counted once per item */
        reject_metric_too_old(b, item, name, oldest, mret, old);
        return 0;
    }
    fmt_rfc3339(when, sizeof when, oldest);
    snprintf(why, sizeof why, "%zu sample(s) from %s are older than the retention (%s)", old, when,
             st_fmt_duration_one(ret, sizeof ret, b->retention_ms));
    b->lines_too_old += first;
    on_error(b, item, 0, why);
    return 0;
}

void wbatch_reject(wbatch_t *b, uint64_t item, const char *reason)
{
    on_error(b, item, 0, reason);
}

uint64_t wbatch_lines_forbidden(const wbatch_t *b)
{
    return b->lines_forbidden;
}

int wbatch_finish(wbatch_t *b)
{
    return encode(b);
}

static int on_point(void *arg, const lp_point_t *pt)
{
    wbatch_t *j = arg;
    if (pt->ts_ms < j->min_ts) {
        reject_too_old(j, pt);
        return 0;
    }
    if (pt->ts_ms > j->max_ts) {
        reject_too_far_future(j, pt);
        return 0;
    }
    if (pt->nseries == 0) {
        j->lines_ok++;
        return 0;
    }
    for (uint32_t i = 0; j->filter && i < pt->nseries; i++) {
        const lp_series_t *ls = &pt->series[i];
        st_label_t built[ST_LABELS_MAX]; /* the parser's names_only mode */
        const st_label_t *l = ls->labels;
        if (!l && ls->nlabels <= ST_LABELS_MAX) {
            memcpy(built, pt->tags, pt->name_pos * sizeof *built);
            built[pt->name_pos] = *ls->name;
            memcpy(built + pt->name_pos + 1, pt->tags + pt->name_pos,
                   (pt->ntags - pt->name_pos) * sizeof *built);
            l = built;
        }
        if (!l || !j->filter(j->filter_arg, l, ls->nlabels)) {
            j->lines_forbidden++;
            on_error(j, pt->line, 0, j->filter_why); /* the whole line, like a bad line */
            return 0;
        }
    }
    for (uint32_t i = 0; i < pt->nseries; i++) { /* the whole line, like the global retention */
        const st_label_t *name = NULL;
        int64_t r = metric_too_old(j, pt->series[i].name, 1, pt->ts_ms, &name);
        if (r) {
            reject_metric_too_old(j, pt->line, name, pt->ts_ms, r, 0);
            return 0;
        }
    }
    uint64_t tags_hash = st_labels_hash_noname(pt->tags, pt->ntags);
    uint32_t pos = pt->name_pos;
    long tsi = tagset_of(j, pt->tags, pt->ntags, pos, tags_hash);
    if (tsi < 0)
        return (int)tsi;
    for (uint32_t i = 0; i < pt->nseries; i++) {
        const st_label_t *name = pt->series[i].name;
        long ni = name_of(j, name, i);
        if (ni < 0)
            return (int)ni;
        blob_t *tg = &j->tags.v[tsi];
        long ei = tg->e_first + i;
        if (i >= tg->e_n || j->e[ei].name != (uint32_t)ni) {
            ei = entry_of(j, (uint32_t)tsi, (uint32_t)ni,
                          st_series_hash_from(tags_hash, name->value, name->value_len), name->value,
                          name->value_len);
            if (ei < 0)
                return (int)ei;
            if (!tg->e_n)
                tg->e_first = (uint32_t)ei;
            if (tg->e_n == i && (size_t)ei == (size_t)tg->e_first + i)
                tg->e_n++;
        }
        if (reserve_samples(j, 1))
            return ST_ENOMEM;
        add_sample(j, (uint32_t)ei, pt->ts_ms, pt->series[i].value);
    }
    j->lines_ok++;
    return 0;
}

static int encode(wbatch_t *j)
{
    uint32_t nshards = topo_shards(j->t);
    /* every series' samples, gathered into dts/dv in the order the series
     * are encoded (shard, then first appearance), each in body order */
    int64_t *dts = malloc((j->ns ? j->ns : 1) * sizeof *dts);
    double *dv = malloc((j->ns ? j->ns : 1) * sizeof *dv);
    size_t *at = malloc((j->ne ? j->ne : 1) * sizeof *at);
    size_t *bystart = calloc((size_t)nshards + 1, sizeof *bystart);
    uint32_t *order = malloc((j->ne ? j->ne : 1) * sizeof *order);
    size_t *fill = malloc(((size_t)nshards + 1) * sizeof *fill);
    if (!dts || !dv || !at || !bystart || !order || !fill) {
        free(dts);
        free(dv);
        free(at);
        free(bystart);
        free(order);
        free(fill);
        return ST_ENOMEM;
    }
    /* entries by shard (counting sort) */
    for (size_t i = 0; i < j->ne; i++)
        bystart[j->e[i].shard + 1]++;
    for (uint32_t s = 0; s < nshards; s++)
        bystart[s + 1] += bystart[s];
    memcpy(fill, bystart, ((size_t)nshards + 1) * sizeof *fill);
    for (size_t i = 0; i < j->ne; i++)
        order[fill[j->e[i].shard]++] = (uint32_t)i;
    free(fill);
    size_t pos = 0;
    for (size_t k = 0; k < j->ne; k++) {
        at[order[k]] = pos;
        pos += j->e[order[k]].count;
    }
    for (size_t x = 0; x < j->ns; x++) { /* at[e] moves to the end of entry e's samples */
        size_t d = at[j->s[x].entry]++;
        dts[d] = j->s[x].ts;
        dv[d] = j->s[x].v;
    }
    /* room for everything at once: no copy while the buffer grows */
    size_t room = 0;
    for (size_t i = 0; i < j->ne; i++) {
        const entry_t *en = &j->e[i];
        room += 32 + j->tags.v[en->tagset].len + SERIES_SAMPLE_ROOM * en->count +
                (en->name != NO_NAME ? j->names.v[en->name].len : 0);
    }
    size_t npieces = j->piece_max ? room / j->piece_max + 1 : 0;
    room += (nshards + npieces) * 16 + (j->refs ? j->ne * (2 + WIRE_REF_LEN) : 0);
    if (!j->all.data)
        pool_take(&j->all, room);
    int rc = st_buf_reserve(&j->all, room);
    /* references in encoding order, made first: the set's probes (a cache
     * miss each) are prefetched a few series ahead */
    enum { REF_AHEAD = 8 };
    uint8_t(*rf)[WIRE_REF_LEN] = NULL;
    if (j->refs && !rc) {
        if (!(rf = malloc((j->ne ? j->ne : 1) * sizeof *rf)))
            rc = ST_ENOMEM;
        for (size_t k = 0; k < j->ne && !rc; k++)
            series_ref(j, &j->e[order[k]], rf[k]);
    }
    if (j->refs)
        pthread_rwlock_rdlock(&j->refs->lock);
    for (size_t k = 0; rf && k < REF_AHEAD && k < j->ne; k++)
        refs_prefetch(j->refs, ref_word(rf[k]));
    for (uint32_t s = 0; s < nshards && !rc; s++) {
        size_t k = bystart[s];
        /* one entry per shard, or several of at most piece_max bytes of
         * series each (a series alone over it is an entry of its own) */
        while (k < bystart[s + 1] && !rc) {
            st_buf_t *b = &j->all;
            size_t mark, start = b->len;
            size_t shcap = j->shcap;
            rc = j->nsh == j->shcap && st_grow(&j->sh, &j->shcap, sizeof *j->sh, 64);
            if (!rc && j->refs && j->shcap != shcap) {
                size_t *npk = realloc(j->pk, j->shcap * sizeof *npk);
                rc = !npk;
                if (npk)
                    j->pk = npk;
            }
            if (!rc && j->refs)
                j->pk[j->nsh] = k;
            rc |= wire_begin(b, WIRE_NODE_WRITE_SHARDS, &mark);
            rc |= wire_put_varint_field(b, WIRE_WRITE_REQUEST_SHARD, s);
            /* a piece's size counts every series with its labels, sent or
             * not: what a node holds decoded for it stays bounded */
            size_t size = 0;
            for (; k < bystart[s + 1] && !rc; k++) {
                if (j->piece_max && size && size >= j->piece_max)
                    break;
                const entry_t *en = &j->e[order[k]];
                const blob_t *tg = &j->tags.v[en->tagset];
                wire_bytes_t lab[3] = {{j->enc + tg->off, tg->split},
                                       {NULL, 0},
                                       {j->enc + tg->off + tg->split, tg->len - tg->split}};
                if (en->name != NO_NAME)
                    lab[1] =
                        (wire_bytes_t){j->enc + j->names.v[en->name].off, j->names.v[en->name].len};
                size_t first = at[order[k]] - en->count, len0 = b->len;
                int known = 0;
                if (rf && k + REF_AHEAD < j->ne)
                    refs_prefetch(j->refs, ref_word(rf[k + REF_AHEAD]));
                if (rf) /* known by its reference: the labels stay out */
                    rc = wire_put_series_enc_ref(b, WIRE_WRITE_REQUEST_SERIES, lab,
                                                 (known = series_known(j, rf[k])) ? 0 : 3, rf[k],
                                                 dts + first, dv + first, en->count);
                else
                    rc = wire_put_series_enc(b, WIRE_WRITE_REQUEST_SERIES, lab, 3, dts + first,
                                             dv + first, en->count);
                size += b->len - len0 + (known ? lab[0].len + lab[1].len + lab[2].len : 0);
            }
            wire_end(b, mark);
            if (!rc)
                j->sh[j->nsh++] = (wbatch_shard_t){s, start, b->len - start};
        }
    }
    free(rf);
    if (j->refs) {
        pthread_rwlock_unlock(&j->refs->lock);
        if (j->nnew) {
            pthread_rwlock_wrlock(&j->refs->lock);
            for (size_t i = 0; i < j->nnew; i++)
                refs_add(j->refs, j->newrefs[i]);
            pthread_rwlock_unlock(&j->refs->lock);
        }
        free(j->newrefs);
        j->newrefs = NULL;
        j->nnew = j->newcap = 0;
    }
    free(dts);
    free(dv);
    free(at);
    free(bystart);
    if (j->refs) { /* what wbatch_piece_labels needs stays */
        j->order = order;
        free(j->table);
        free(j->tags.tab);
        free(j->names.tab);
        st_buf_deinit(&j->scratch);
        free(j->s);
        j->table = j->tags.tab = j->names.tab = NULL;
        j->s = NULL;
    } else {
        free(order);
        grouping_free(j);
    }
    return rc ? ST_ENOMEM : 0;
}

int wbatch_piece_labels(wbatch_t *b, size_t k, const uint8_t **data, size_t *len)
{
    if (!b->refs || !b->order || k >= b->nsh)
        return ST_EINVAL;
    if (!b->lab && !(b->lab = calloc(b->nsh, sizeof *b->lab)))
        return ST_ENOMEM;
    st_buf_t *o = &b->lab[k];
    if (!o->len) {
        const uint8_t *q = b->all.data + b->sh[k].off, *end = q + b->sh[k].len;
        wire_field_t f, g;
        if (wire_next(&q, end, &f) != 1 || f.type != WIRE_LEN)
            return ST_ECORRUPT;
        const uint8_t *m = f.data, *mend = f.data + f.len;
        size_t mark, x = b->pk[k];
        int rc = wire_begin(o, WIRE_NODE_WRITE_SHARDS, &mark);
        while (!rc && wire_next(&m, mend, &g) == 1) {
            if (g.num != WIRE_WRITE_REQUEST_SERIES) {
                rc = g.num == WIRE_WRITE_REQUEST_SHARD
                         ? wire_put_varint_field(o, WIRE_WRITE_REQUEST_SHARD, g.u)
                         : 0;
                continue;
            }
            wire_series_t s;
            if (wire_series_scan(g.data, g.len, &s) < 0 || !s.ref || x >= b->ne)
                return ST_ECORRUPT;
            const entry_t *en = &b->e[b->order[x++]];
            const blob_t *tg = &b->tags.v[en->tagset];
            size_t sm;
            rc = wire_begin(o, WIRE_WRITE_REQUEST_SERIES, &sm);
            rc |= st_buf_append(o, b->enc + tg->off, tg->split);
            if (en->name != NO_NAME)
                rc |= st_buf_append(o, b->enc + b->names.v[en->name].off, b->names.v[en->name].len);
            rc |= st_buf_append(o, b->enc + tg->off + tg->split, tg->len - tg->split);
            rc |= wire_put_bytes_field(o, WIRE_SERIES_SAMPLES_REF, s.ref, WIRE_REF_LEN);
            if (s.ts)
                rc |= wire_put_bytes_field(o, WIRE_SERIES_SAMPLES_TIMESTAMPS, s.ts, s.ts_len);
            if (s.vals)
                rc |= wire_put_bytes_field(o, WIRE_SERIES_SAMPLES_VALUES, s.vals, s.nvals * 8);
            if (!rc)
                wire_end(o, sm);
        }
        if (rc) {
            st_buf_reset(o);
            return ST_ENOMEM;
        }
        wire_end(o, mark);
    }
    *data = o->data;
    *len = o->len;
    return 0;
}

void wbatch_set_refs(wbatch_t *b, wbatch_refs_t *r)
{
    b->refs = r;
}

static struct {
    pthread_mutex_t mu;
    st_buf_t b[WBATCH_POOL_N];
    size_t n, bytes;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A pooled buffer into *b (empty, no data before), the smallest holding
 * `need` bytes, else the largest. */
static void pool_take(st_buf_t *b, size_t need)
{
    pthread_mutex_lock(&pool.mu);
    size_t best = pool.n;
    for (size_t i = 0; i < pool.n; i++) {
        size_t c = pool.b[i].cap, bc = best < pool.n ? pool.b[best].cap : 0;
        if (best == pool.n || (c >= need ? bc < need || c < bc : bc < need && c > bc))
            best = i;
    }
    if (best < pool.n) {
        *b = pool.b[best];
        b->len = 0;
        pool.bytes -= b->cap;
        pool.b[best] = pool.b[--pool.n];
    }
    pthread_mutex_unlock(&pool.mu);
}

/* Keep b's storage for a later batch, or free it. */
static void pool_put(st_buf_t *b)
{
    if (b->data) {
        pthread_mutex_lock(&pool.mu);
        if (pool.n < WBATCH_POOL_N && pool.bytes + b->cap <= WBATCH_POOL_BYTES) {
            pool.b[pool.n++] = *b;
            pool.bytes += b->cap;
            st_buf_init(b);
        }
        pthread_mutex_unlock(&pool.mu);
    }
    st_buf_deinit(b);
}

int wbatch_create(const topo_t *t, wbatch_t **out)
{
    wbatch_t *b = calloc(1, sizeof *b);
    if (!b) {
        *out = NULL;
        return ST_ENOMEM;
    }
    b->t = t;
    b->min_ts = INT64_MIN;
    b->max_ts = INT64_MAX;
    st_buf_init(&b->all);
    st_buf_init(&b->scratch);
    *out = b;
    return 0;
}

static void blobs_free(blobs_t *s)
{
    free(s->v);
    free(s->tab);
    *s = (blobs_t){0};
}

/* Free what grouping used (encoding is done, or the batch goes). */
static void grouping_free(wbatch_t *b)
{
    free(b->e);
    free(b->table);
    blobs_free(&b->tags);
    blobs_free(&b->names);
    free(b->enc);
    st_buf_deinit(&b->scratch);
    free(b->s);
    b->e = NULL;
    b->table = NULL;
    b->enc = NULL;
    b->s = NULL;
    b->ne = b->ecap = b->tcap = b->encl = b->enccap = b->ns = b->s_cap = 0;
    memset(b->name_cache, 0, sizeof b->name_cache);
}

void wbatch_destroy(wbatch_t *b)
{
    if (!b)
        return;
    free(b->sh);
    pool_put(&b->all);
    grouping_free(b);
    free(b->order);
    free(b->pk);
    if (b->lab)
        for (size_t i = 0; i < b->nsh; i++)
            st_buf_deinit(&b->lab[i]);
    free(b->lab);
    free(b->newrefs);
    free(b);
}

void wbatch_set_retention(wbatch_t *b, int64_t now_ms, int64_t retention_ms)
{
    b->now_ms = now_ms;
    b->retention_ms = retention_ms;
    b->min_ts =
        retention_ms > 0 && now_ms > INT64_MIN + retention_ms ? now_ms - retention_ms : INT64_MIN;
}

void wbatch_set_max_future(wbatch_t *b, int64_t now_ms, int64_t max_future_ms)
{
    b->max_future_ms = max_future_ms;
    b->max_ts = max_future_ms > 0 && now_ms < INT64_MAX - max_future_ms ? now_ms + max_future_ms
                                                                        : INT64_MAX;
}

void wbatch_set_piece_max(wbatch_t *b, size_t bytes)
{
    b->piece_max = bytes;
}

int wbatch_parse(wbatch_t *b, lp_parser_t *p, const char *body, size_t len)
{
    int rc = lp_parse(p, body, len, on_point, on_error, b);
    if (rc < 0)
        return rc;
    return encode(b);
}

uint64_t wbatch_lines_ok(const wbatch_t *b)
{
    return b->lines_ok;
}

uint64_t wbatch_lines_bad(const wbatch_t *b)
{
    return b->lines_bad;
}

uint64_t wbatch_lines_too_old(const wbatch_t *b)
{
    return b->lines_too_old;
}

uint64_t wbatch_lines_too_far_future(const wbatch_t *b)
{
    return b->lines_too_far_future;
}

const wbatch_rejected_t *wbatch_rejected(const wbatch_t *b, size_t *n)
{
    *n = b->nrej;
    return b->rej;
}

const wbatch_shard_t *wbatch_shards(const wbatch_t *b, size_t *n)
{
    *n = b->nsh;
    return b->sh;
}

const uint8_t *wbatch_data(const wbatch_t *b)
{
    return b->all.data;
}
