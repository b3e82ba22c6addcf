/*
 * engine_head — the in-memory head: per-series arrays of (ts, value).
 *
 * Appends are usually in time order and land at the end of the series'
 * arrays. An append older than the series' newest sample only sets the
 * `unsorted` flag; the series is sorted (stable, so the later of two writes
 * of one timestamp stays later) and deduplicated (last write wins) when it
 * is read or flushed. `bytes` counts allocated capacity, which is what the
 * flush threshold (memtable_max_bytes) bounds.
 *
 * Versions (engine.h, VERSIONS): a series keeps versions only once a
 * sample with a version != 0 arrives, exact, as runs (one per append call
 * whose version differs from the last: a write's samples of a series share
 * its version) while the series stays in time order, else one per sample
 * (8 bytes a sample); both counted in `bytes`. Deduplication keeps, of
 * equal timestamps, the highest version and, on a tie, the later write.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "st_err.h"

#define HEAD_INIT_CAP 16

head_t *head_create(void)
{
    head_t *h = calloc(1, sizeof *h);
    if (h) {
        h->mint = INT64_MAX;
        h->maxt = INT64_MIN;
        h->done_before = INT64_MIN;
    }
    return h;
}

void head_destroy(head_t *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->ns; i++) {
        if (h->s[i]) {
            free(h->s[i]->ts);
            free(h->s[i]->v);
            free(h->s[i]->ver);
            free(h->s[i]->vr_start);
            free(h->s[i]->vr_ver);
            free(h->s[i]);
        }
    }
    free(h->s);
    free(h->pset);
    free(h);
}

#define PSET_EMPTY INT64_MIN /* never a partition start: timestamps are clamped */

static uint32_t pset_slot(int64_t start, uint32_t cap)
{
    uint64_t x = (uint64_t)start * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32) & (cap - 1);
}

int head_add_part(head_t *h, int64_t start)
{
    if (h->pcap) {
        for (uint32_t i = pset_slot(start, h->pcap);; i = (i + 1) & (h->pcap - 1)) {
            if (h->pset[i] == start)
                return 0;
            if (h->pset[i] == PSET_EMPTY)
                break;
        }
    }
    if ((h->npart + 1) * 2 > h->pcap) {
        uint32_t cap = h->pcap ? h->pcap * 2 : 16;
        int64_t *n = malloc((size_t)cap * sizeof *n);
        if (!n)
            return ST_ENOMEM;
        for (uint32_t i = 0; i < cap; i++)
            n[i] = PSET_EMPTY;
        for (uint32_t k = 0; k < h->pcap; k++) {
            if (h->pset[k] == PSET_EMPTY)
                continue;
            uint32_t i = pset_slot(h->pset[k], cap);
            while (n[i] != PSET_EMPTY)
                i = (i + 1) & (cap - 1);
            n[i] = h->pset[k];
        }
        h->bytes += (uint64_t)(cap - h->pcap) * sizeof *n;
        free(h->pset);
        h->pset = n;
        h->pcap = cap;
    }
    uint32_t i = pset_slot(start, h->pcap);
    while (h->pset[i] != PSET_EMPTY)
        i = (i + 1) & (h->pcap - 1);
    h->pset[i] = start;
    h->npart++;
    return 0;
}

int head_has_part(const head_t *h, int64_t start)
{
    if (!h || !h->pcap)
        return 0;
    for (uint32_t i = pset_slot(start, h->pcap);; i = (i + 1) & (h->pcap - 1)) {
        if (h->pset[i] == start)
            return 1;
        if (h->pset[i] == PSET_EMPTY)
            return 0;
    }
}

static int head_grow_index(head_t *h, uint32_t id)
{
    uint32_t n = h->ns ? h->ns : 1024;
    while (n <= id)
        n *= 2;
    head_series_t **s = realloc(h->s, (size_t)n * sizeof *s);
    if (!s)
        return ST_ENOMEM;
    memset(s + h->ns, 0, (size_t)(n - h->ns) * sizeof *s);
    h->bytes += (uint64_t)(n - h->ns) * sizeof *s;
    h->s = s;
    h->ns = n;
    return 0;
}

int head_series_versioned(const head_series_t *s)
{
    return s->ver || s->nvr;
}

void head_series_versions(const head_series_t *s, uint32_t from, uint32_t n, uint64_t *out)
{
    if (s->ver) {
        memcpy(out, s->ver + from, (size_t)n * sizeof *out);
        return;
    }
    /* the run holding `from`: the last whose start is <= from (none: 0) */
    uint32_t lo = 0, hi = s->nvr;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->vr_start[mid] <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t k = lo; /* runs [0, k) start at or before from */
    uint32_t i = from, end = from + n;
    while (i < end) {
        uint32_t stop = k < s->nvr && s->vr_start[k] < end ? s->vr_start[k] : end;
        uint64_t v = k ? s->vr_ver[k - 1] : 0;
        for (; i < stop; i++)
            out[i - from] = v;
        k++;
    }
}

int head_series_expand(head_t *h, head_series_t *s)
{
    if (!s->nvr)
        return 0;
    uint64_t *ver = malloc((size_t)(s->cap ? s->cap : 1) * sizeof *ver);
    if (!ver)
        return ST_ENOMEM;
    head_series_versions(s, 0, s->n, ver);
    h->bytes += (uint64_t)s->cap * sizeof *ver;
    h->bytes -= (uint64_t)s->vrcap * (sizeof *s->vr_start + sizeof *s->vr_ver);
    free(s->vr_start);
    free(s->vr_ver);
    s->vr_start = NULL;
    s->vr_ver = NULL;
    s->nvr = s->vrcap = 0;
    s->ver = ver;
    return 0;
}

/* Runs form: samples from s->n on have `version` (a new run unless the
 * last one has it already). */
static int vr_push(head_t *h, head_series_t *s, uint64_t version)
{
    if (s->nvr && s->vr_ver[s->nvr - 1] == version)
        return 0;
    if (s->nvr && s->vr_start[s->nvr - 1] == s->n) { /* an empty run: replace it */
        s->vr_ver[s->nvr - 1] = version;
        if (s->nvr > 1 && s->vr_ver[s->nvr - 2] == version)
            s->nvr--;
        return 0;
    }
    if (s->nvr == s->vrcap) {
        uint32_t cap = s->vrcap ? s->vrcap * 2 : 4;
        uint32_t *st = realloc(s->vr_start, (size_t)cap * sizeof *st);
        if (!st)
            return ST_ENOMEM;
        s->vr_start = st;
        uint64_t *vv = realloc(s->vr_ver, (size_t)cap * sizeof *vv);
        if (!vv)
            return ST_ENOMEM;
        s->vr_ver = vv;
        h->bytes += (uint64_t)(cap - s->vrcap) * (sizeof *st + sizeof *vv);
        s->vrcap = cap;
    }
    s->vr_start[s->nvr] = s->n;
    s->vr_ver[s->nvr] = version;
    s->nvr++;
    return 0;
}

int head_append(head_t *h, uint32_t id, const int64_t *ts, const double *v, size_t n,
                uint64_t version, uint64_t *ooo)
{
    if (n == 0)
        return 0;
    if (id >= h->ns && head_grow_index(h, id))
        return ST_ENOMEM;
    head_series_t *s = h->s[id];
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return ST_ENOMEM;
        s->mint = INT64_MAX;
        s->maxt = INT64_MIN;
        h->s[id] = s;
        h->bytes += sizeof *s;
    }
    if (s->cap - s->n < n) {
        uint32_t cap = s->cap ? s->cap : HEAD_INIT_CAP;
        while (cap - s->n < n)
            cap *= 2;
        int64_t *nts = realloc(s->ts, (size_t)cap * sizeof *nts);
        if (!nts)
            return ST_ENOMEM;
        s->ts = nts;
        double *nv = realloc(s->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return ST_ENOMEM;
        s->v = nv;
        if (s->ver) {
            uint64_t *nver = realloc(s->ver, (size_t)cap * sizeof *nver);
            if (!nver)
                return ST_ENOMEM;
            s->ver = nver;
            h->bytes += (uint64_t)(cap - s->cap) * sizeof *nver;
        }
        h->bytes += (uint64_t)(cap - s->cap) * 16;
        s->cap = cap;
    }
    int64_t prev = s->n ? s->ts[s->n - 1] : INT64_MIN;
    uint8_t was_unsorted = s->unsorted;
    for (size_t i = 0; i < n; i++) {
        int64_t t = ts[i];
        if (t <= prev && (s->n + i > 0)) {
            s->unsorted = 1;
            (*ooo)++;
        }
        prev = t;
        if (t < s->mint)
            s->mint = t;
        if (t > s->maxt)
            s->maxt = t;
    }
    /* versions: runs while in order and cheaper than one a sample */
    if (!s->ver && (version || s->nvr)) {
        int rc = vr_push(h, s, version);
        if (!rc && (s->unsorted || (s->n + n >= 16 && s->nvr * 3 > (s->n + n) * 2)))
            rc = head_series_expand(h, s); /* sorting moves samples; dense runs cost more */
        if (rc) {
            s->unsorted = was_unsorted; /* nothing appended */
            return rc;
        }
    }
    memcpy(s->ts + s->n, ts, n * sizeof *ts);
    memcpy(s->v + s->n, v, n * sizeof *v);
    if (s->ver)
        for (size_t i = 0; i < n; i++)
            s->ver[s->n + i] = version;
    s->n += (uint32_t)n;
    h->samples += n;
    if (s->mint < h->mint)
        h->mint = s->mint;
    if (s->maxt > h->maxt)
        h->maxt = s->maxt;
    return 0;
}

void head_series_normalize(head_series_t *s)
{
    if (!s->unsorted)
        return;
    s->n = (uint32_t)samples_sort_dedup(s->ts, s->v, s->ver, s->n);
    s->unsorted = 0;
}

/* The (ts, value, version) triples being sorted; ver may be NULL. */
typedef struct triples {
    int64_t *ts;
    double *v;
    uint64_t *ver;
} triples_t;

static inline void tr_copy(triples_t *d, size_t k, const triples_t *s, size_t j)
{
    d->ts[k] = s->ts[j];
    d->v[k] = s->v[j];
    if (d->ver)
        d->ver[k] = s->ver[j];
}

/* The end of the ascending (non-decreasing) run of ts that starts at lo. */
static size_t run_end(const int64_t *ts, size_t lo, size_t n)
{
    size_t i = lo + 1;
    while (i < n && ts[i] >= ts[i - 1])
        i++;
    return i < n ? i : n;
}

/* Natural stable merge sort of a by ts, using scratch b (same shape): each
 * pass merges neighbouring ascending runs, so a series read from a few
 * sorted sources (segments, head) takes a pass or two, not log2(n). */
static void merge_sort(triples_t a, triples_t b, size_t n)
{
    triples_t orig = a;
    for (size_t runs = 2; runs > 1;) {
        runs = 0;
        for (size_t lo = 0; lo < n; runs++) {
            size_t mid = run_end(a.ts, lo, n);
            size_t hi = mid < n ? run_end(a.ts, mid, n) : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                if (a.ts[j] < a.ts[i])
                    tr_copy(&b, k++, &a, j++);
                else
                    tr_copy(&b, k++, &a, i++);
            }
            while (i < mid)
                tr_copy(&b, k++, &a, i++);
            while (j < hi)
                tr_copy(&b, k++, &a, j++);
            lo = hi;
        }
        triples_t t = a;
        a = b;
        b = t;
    }
    if (a.ts != orig.ts) {
        memcpy(orig.ts, a.ts, n * sizeof *a.ts);
        memcpy(orig.v, a.v, n * sizeof *a.v);
        if (orig.ver)
            memcpy(orig.ver, a.ver, n * sizeof *a.ver);
    }
}

/* Stable insertion sort by ts: for short or nearly sorted runs. */
static void insertion_sort(triples_t a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        int64_t t = a.ts[i];
        double x = a.v[i];
        uint64_t ver = a.ver ? a.ver[i] : 0;
        size_t j = i;
        while (j > 0 && a.ts[j - 1] > t) {
            tr_copy(&a, j, &a, j - 1);
            j--;
        }
        a.ts[j] = t;
        a.v[j] = x;
        if (a.ver)
            a.ver[j] = ver;
    }
}

#define SORT_SCRATCH_MAX 65536 /* samples: 1.5 MiB of scratch kept per thread at most */

/* samples_sort_dedup's merge scratch, per thread: a flush sorts thousands
 * of series in a row; given back by the key's destructor when a thread
 * ends (downsampling threads, an embedder's threads) */
static __thread struct {
    void *p;
    size_t cap;
} scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    free(p);
    scratch.p = NULL;
    scratch.cap = 0;
}

static void scratch_key_make(void)
{
    (void)pthread_key_create(&scratch_key, scratch_free);
}

size_t samples_sort_dedup(int64_t *ts, double *v, uint64_t *ver, size_t n)
{
    if (n < 2)
        return n;
    int sorted = 1;
    for (size_t i = 1; i < n; i++) {
        if (ts[i] <= ts[i - 1]) {
            sorted = 0;
            break;
        }
    }
    if (sorted)
        return n;
    /* insertion sort for short runs, merge sort otherwise (both stable); without
     * memory for the merge, insertion sort: slow but allocation-free */
    triples_t a = {ts, v, ver};
    triples_t b = {NULL, NULL, NULL};
    /* the merge scratch: this thread's (kept, up to SORT_SCRATCH_MAX
     * samples: a flush sorts thousands of series in a row), else its own */
    void *own = NULL;
    if (n > 32) {
        size_t need = n * (sizeof *b.ts + sizeof *b.v + sizeof *b.ver);
        if (n <= SORT_SCRATCH_MAX && scratch.cap < need) {
            pthread_once(&scratch_once, scratch_key_make);
            void *np = realloc(scratch.p, need);
            if (np) {
                scratch.p = np;
                scratch.cap = need;
                (void)pthread_setspecific(scratch_key, scratch.p); /* freed when the thread ends */
            }
        }
        void *mem = n <= SORT_SCRATCH_MAX && scratch.cap >= need ? scratch.p : (own = malloc(need));
        if (mem) {
            b.ts = mem;
            b.v = (double *)(b.ts + n);
            b.ver = ver ? (uint64_t *)(b.v + n) : NULL;
        }
    }
    if (b.ts)
        merge_sort(a, b, n);
    else
        insertion_sort(a, n);
    free(own);
    /* dedup: of each equal-timestamp run keep the highest version, the last
     * of those (stable sort: later writes come later) */
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t best = i, j = i + 1;
        for (; j < n && ts[j] == ts[i]; j++)
            if (!ver || ver[j] >= ver[best])
                best = j;
        ts[w] = ts[best];
        v[w] = v[best];
        if (ver)
            ver[w] = ver[best];
        w++;
        i = j;
    }
    return w;
}
