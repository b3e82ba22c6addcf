/*
 * engine_head — the in-memory head: per-series arrays of (ts, value).
 *
 * Appends are usually in time order and land at the end of the series'
 * arrays. An append older than the series' newest sample only sets the
 * `unsorted` flag; the series is sorted (stable, so the later of two writes
 * of one timestamp stays later) and deduplicated (last write wins) when it
 * is read or flushed. `bytes` counts allocated capacity, which is what the
 * flush threshold (memtable_max_bytes) bounds.
 */
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

int head_append(head_t *h, uint32_t id, const int64_t *ts, const double *v, size_t n, uint64_t *ooo)
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
        h->bytes += (uint64_t)(cap - s->cap) * 16;
        s->cap = cap;
    }
    int64_t prev = s->n ? s->ts[s->n - 1] : INT64_MIN;
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
    memcpy(s->ts + s->n, ts, n * sizeof *ts);
    memcpy(s->v + s->n, v, n * sizeof *v);
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
    s->n = (uint32_t)samples_sort_dedup(s->ts, s->v, s->n);
    s->unsorted = 0;
}

/* The end of the ascending (non-decreasing) run of ts that starts at lo. */
static size_t run_end(const int64_t *ts, size_t lo, size_t n)
{
    size_t i = lo + 1;
    while (i < n && ts[i] >= ts[i - 1])
        i++;
    return i < n ? i : n;
}

/* Natural stable merge sort of (ts, v) pairs by ts, using scratch arrays:
 * each pass merges neighbouring ascending runs, so a series read from a few
 * sorted sources (segments, head) takes a pass or two, not log2(n). */
static void merge_sort(int64_t *ts, double *v, int64_t *tts, double *tv, size_t n)
{
    int64_t *a_ts = ts, *b_ts = tts;
    double *a_v = v, *b_v = tv;
    for (size_t runs = 2; runs > 1;) {
        runs = 0;
        for (size_t lo = 0; lo < n; runs++) {
            size_t mid = run_end(a_ts, lo, n);
            size_t hi = mid < n ? run_end(a_ts, mid, n) : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                if (a_ts[j] < a_ts[i]) {
                    b_ts[k] = a_ts[j];
                    b_v[k++] = a_v[j++];
                } else {
                    b_ts[k] = a_ts[i];
                    b_v[k++] = a_v[i++];
                }
            }
            while (i < mid) {
                b_ts[k] = a_ts[i];
                b_v[k++] = a_v[i++];
            }
            while (j < hi) {
                b_ts[k] = a_ts[j];
                b_v[k++] = a_v[j++];
            }
            lo = hi;
        }
        int64_t *t1 = a_ts;
        a_ts = b_ts;
        b_ts = t1;
        double *t2 = a_v;
        a_v = b_v;
        b_v = t2;
    }
    if (a_ts != ts) {
        memcpy(ts, a_ts, n * sizeof *ts);
        memcpy(v, a_v, n * sizeof *v);
    }
}

/* Stable insertion sort of (ts, v) pairs by ts: for short or nearly sorted runs. */
static void insertion_sort(int64_t *ts, double *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        int64_t t = ts[i];
        double x = v[i];
        size_t j = i;
        while (j > 0 && ts[j - 1] > t) {
            ts[j] = ts[j - 1];
            v[j] = v[j - 1];
            j--;
        }
        ts[j] = t;
        v[j] = x;
    }
}

size_t samples_sort_dedup(int64_t *ts, double *v, size_t n)
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
    int64_t *tts = n > 32 ? malloc(n * sizeof *tts) : NULL;
    double *tv = tts ? malloc(n * sizeof *tv) : NULL;
    if (tts && tv)
        merge_sort(ts, v, tts, tv, n);
    else
        insertion_sort(ts, v, n);
    free(tts);
    free(tv);
    /* dedup: keep the last of each equal-timestamp run */
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && ts[i + 1] == ts[i])
            continue;
        ts[w] = ts[i];
        v[w++] = v[i];
    }
    return w;
}
