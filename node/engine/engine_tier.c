/*
 * engine_tier — downsampling tiers (engine_tier.h): bucket math, the tier
 * series encoding, the pass that moves old data into tiers and the reader
 * that answers a query at one resolution from tiers and raw data.
 *
 * Everything is built on the public engine API: a tier is an engine of its
 * own, so this file needs no access to segments or partitions beyond
 * engine_oldest_partition / engine_drop_before.
 */
#include "engine_tier.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "st_err.h"
#include "st_file.h"
#include "st_time.h"

void engine_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- bucket math ---- */

int64_t tier_bucket_end(int64_t ts, int64_t res)
{
    int64_t q = ts / res;
    if (ts % res > 0)
        q++;
    return q * res;
}

/* The fold of PromQL's min/max_over_time: a NaN accumulator is replaced. */
static double fold_min(double acc, double v)
{
    return (v < acc || isnan(acc)) ? v : acc;
}

static double fold_max(double acc, double v)
{
    return (v > acc || isnan(acc)) ? v : acc;
}

/* What a counter adds back between prev and cur (-0.0: nothing, which
 * leaves any sum unchanged bit for bit). */
static double reset_add(double prev, double cur)
{
    return cur < prev ? prev : -0.0;
}

static void bucket_init(tier_bucket_t *b, int64_t end, int64_t ts, double v)
{
    *b = (tier_bucket_t){.end = end,
                         .first_ts = ts,
                         .last_ts = ts,
                         .count = 1,
                         .sum = v,
                         .min = v,
                         .max = v,
                         .first = v,
                         .last = v,
                         .rsum = -0.0};
}

/* Prometheus' staleness marker: range selections skip it, so buckets do too. */
static int is_stale(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u == 0x7ff0000000000002ULL;
}

size_t tier_aggregate(const int64_t *ts, const double *v, size_t n, int64_t res, tier_bucket_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_stale(v[i]))
            continue;
        int64_t end = tier_bucket_end(ts[i], res);
        if (k == 0 || out[k - 1].end != end) {
            bucket_init(&out[k++], end, ts[i], v[i]);
            continue;
        }
        tier_bucket_t *b = &out[k - 1];
        b->count += 1;
        b->sum += v[i];
        b->min = fold_min(b->min, v[i]);
        b->max = fold_max(b->max, v[i]);
        b->rsum += reset_add(b->last, v[i]);
        b->last = v[i];
        b->last_ts = ts[i];
    }
    return k;
}

void tier_merge(tier_bucket_t *a, const tier_bucket_t *b)
{
    a->count += b->count;
    a->sum += b->sum;
    a->min = fold_min(a->min, b->min);
    a->max = fold_max(a->max, b->max);
    a->rsum += reset_add(a->last, b->first);
    a->rsum += b->rsum;
    a->last = b->last;
    a->last_ts = b->last_ts;
}

size_t tier_rebucket(tier_bucket_t *b, size_t n, int64_t res)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t end = tier_bucket_end(b[i].end, res);
        if (k && b[k - 1].end == end) {
            tier_merge(&b[k - 1], &b[i]);
            continue;
        }
        b[k] = b[i];
        b[k++].end = end;
    }
    return k;
}

int64_t tier_field_ts(int64_t end, int64_t res, int field)
{
    return end - res + 1 + field;
}

void tier_encode(const tier_bucket_t *b, size_t n, int64_t res, int64_t *ts, double *v)
{
    for (size_t i = 0; i < n; i++) {
        const tier_bucket_t *x = &b[i];
        double f[TIER_FIELDS] = {x->count, x->sum,
                                 x->min,   x->max,
                                 x->first, (double)(x->end - x->first_ts),
                                 x->last,  (double)(x->end - x->last_ts),
                                 x->rsum};
        for (int c = 0; c < TIER_FIELDS; c++) {
            ts[i * TIER_FIELDS + (size_t)c] = tier_field_ts(x->end, res, c);
            v[i * TIER_FIELDS + (size_t)c] = f[c];
        }
    }
}

/* An offset field: a whole number of ms in [0, res). */
static int offset_ok(double d, int64_t res)
{
    return d >= 0 && d < (double)res && d == floor(d);
}

int tier_decode(const int64_t *ts, const double *v, size_t n, int64_t res, int64_t lo, int64_t hi,
                tier_bucket_t *out, size_t *nout)
{
    size_t k = 0, i = 0;
    *nout = 0;
    if (res < TIER_FIELDS)
        return ST_EINVAL;
    while (i < n) {
        int64_t end = tier_bucket_end(ts[i], res);
        size_t j = i;
        while (j < n && tier_bucket_end(ts[j], res) == end)
            j++;
        if (end < lo || end > hi) { /* cut by the range: not ours */
            i = j;
            continue;
        }
        if (j - i != TIER_FIELDS)
            return ST_ECORRUPT;
        /* the fields open the bucket, or (layout 1) close it */
        int64_t f0 = ts[i] == tier_field_ts(end, res, 0) ? ts[i] : end - (TIER_FIELDS - 1);
        for (size_t c = 0; c < TIER_FIELDS; c++)
            if (ts[i + c] != f0 + (int64_t)c)
                return ST_ECORRUPT;
        const double *f = v + i;
        if (!(f[0] >= 1 && f[0] <= 9.0e15 && f[0] == floor(f[0])) || !offset_ok(f[5], res) ||
            !offset_ok(f[7], res) || f[5] < f[7])
            return ST_ECORRUPT;
        out[k++] = (tier_bucket_t){.end = end,
                                   .count = f[0],
                                   .sum = f[1],
                                   .min = f[2],
                                   .max = f[3],
                                   .first = f[4],
                                   .first_ts = end - (int64_t)f[5],
                                   .last = f[6],
                                   .last_ts = end - (int64_t)f[7],
                                   .rsum = f[8]};
        i = j;
    }
    *nout = k;
    return 0;
}

/* ---- the tiers of one engine ---- */

struct engine_tiers {
    engine_t *raw;
    size_t n;
    engine_tier_spec_t spec[TIER_MAX];
    engine_t *eng[TIER_MAX];
    char *dir[TIER_MAX];
    _Atomic int64_t wm[TIER_MAX];
    int64_t part_ms;
    pthread_mutex_t pass_mu;  /* one pass at a time */
    pthread_rwlock_t move_mu; /* write: a watermark moves and sources drop */
    atomic_uint_least64_t buckets[TIER_MAX], chunks[TIER_MAX], errors;
    pthread_t thr;
    int thr_running;
    pthread_mutex_t thr_mu;
    pthread_cond_t thr_cv;
    int stop;
    atomic_int stopping; /* engine_tiers_close: a pass stops between chunks */
    int64_t interval_ms;
    int64_t quiet_ms; /* a chunk moves once its source partitions had no flush for this */
    engine_log_cb log;
    void *log_arg;
};

static int wm_load(const char *dir, int64_t *wm)
{
    char path[4096], buf[64];
    if (snprintf(path, sizeof path, "%s/WATERMARK", dir) >= (int)sizeof path)
        return ST_EINVAL;
    *wm = INT64_MIN;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : ST_EIO;
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    char *end;
    errno = 0;
    long long x = ok ? strtoll(buf, &end, 10) : 0;
    if (!ok || errno || end == buf || (*end && *end != '\n')) {
        engine_set_error("%s: bad watermark file", path);
        return ST_ECORRUPT;
    }
    *wm = (int64_t)x;
    return 0;
}

static int wm_store(const char *dir, int64_t wm)
{
    char path[4096], tmp[4100], buf[32];
    if (snprintf(path, sizeof path, "%s/WATERMARK", dir) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ST_EINVAL;
    int len = snprintf(buf, sizeof buf, "%" PRId64 "\n", wm);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ST_EIO;
    int rc = st_write_all(fd, buf, (size_t)len);
    if (!rc && fsync(fd) != 0)
        rc = ST_EIO;
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = ST_EIO;
    if (!rc)
        rc = st_fsync_dir(dir);
    if (rc)
        engine_set_error("%s: %s", path, strerror(errno));
    return rc;
}

static void *tiers_thread(void *arg);

int engine_tiers_open(engine_t *raw, const char *dir, const engine_tier_spec_t *spec, size_t n,
                      const engine_opts_t *base, int64_t interval_ms, engine_tiers_t **out)
{
    *out = NULL;
    if (n == 0 || n > TIER_MAX)
        return ST_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (spec[i].res_ms < TIER_FIELDS || base->partition_ms % spec[i].res_ms ||
            (i && spec[i].res_ms % spec[i - 1].res_ms))
            return ST_EINVAL;
    engine_tiers_t *t = calloc(1, sizeof *t);
    if (!t)
        return ST_ENOMEM;
    t->raw = raw;
    t->n = n;
    t->part_ms = base->partition_ms;
    t->interval_ms = interval_ms;
    t->quiet_ms = interval_ms > 0 ? 2 * interval_ms : 0;
    t->log = base->log;
    t->log_arg = base->log_arg;
    pthread_mutex_init(&t->pass_mu, NULL);
    pthread_rwlock_init(&t->move_mu, NULL);
    pthread_mutex_init(&t->thr_mu, NULL);
    pthread_cond_init(&t->thr_cv, NULL);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        t->spec[i] = spec[i];
        char path[4000];
        if (snprintf(path, sizeof path, "%s/tier-%" PRId64, dir, spec[i].res_ms) >=
            (int)sizeof path) {
            rc = ST_EINVAL;
            break;
        }
        if (!(t->dir[i] = strdup(path))) {
            rc = ST_ENOMEM;
            break;
        }
        int64_t wm;
        if ((rc = st_mkdir_p(path)) != 0) {
            engine_set_error("%s: %s", path, strerror(errno));
            break;
        }
        if ((rc = wm_load(path, &wm)) != 0)
            break;
        atomic_store(&t->wm[i], wm);
        if ((rc = engine_open(path, base, &t->eng[i])) != 0)
            break;
    }
    if (!rc && interval_ms > 0) {
        if (pthread_create(&t->thr, NULL, tiers_thread, t) != 0)
            rc = ST_ENOMEM;
        else
            t->thr_running = 1;
    }
    if (rc) {
        engine_tiers_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

void engine_tiers_close(engine_tiers_t *t)
{
    if (!t)
        return;
    atomic_store(&t->stopping, 1);
    if (t->thr_running) {
        pthread_mutex_lock(&t->thr_mu);
        t->stop = 1;
        pthread_cond_signal(&t->thr_cv);
        pthread_mutex_unlock(&t->thr_mu);
        pthread_join(t->thr, NULL);
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->eng[i])
            engine_close(t->eng[i]);
        free(t->dir[i]);
    }
    pthread_mutex_destroy(&t->pass_mu);
    pthread_rwlock_destroy(&t->move_mu);
    pthread_mutex_destroy(&t->thr_mu);
    pthread_cond_destroy(&t->thr_cv);
    free(t);
}

static void *tiers_thread(void *arg)
{
    engine_tiers_t *t = arg;
    pthread_mutex_lock(&t->thr_mu);
    while (!t->stop) {
        pthread_mutex_unlock(&t->thr_mu);
        int rc = engine_tiers_run(t, st_now_ms(), 64);
        if (rc < 0 && t->log) {
            char msg[320];
            snprintf(msg, sizeof msg, "downsampling pass failed: %s", engine_last_error());
            t->log(t->log_arg, ENGINE_LOG_ERROR, msg);
        }
        pthread_mutex_lock(&t->thr_mu);
        if (t->stop || (rc > 0)) /* more may be due: go on at once */
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (t->interval_ms % 1000) * 1000000;
        ts.tv_sec += (time_t)(t->interval_ms / 1000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&t->thr_cv, &t->thr_mu, &ts);
    }
    pthread_mutex_unlock(&t->thr_mu);
    return NULL;
}

/* ---- the pass ---- */

/* Series waiting to be written to a tier: labels + buckets, as samples. */
typedef struct wbatch {
    engine_series_batch_t *b;
    st_label_t *labels; /* every series' labels, back to back */
    int64_t *ts;
    double *v;
    size_t ns, cap_s, nlab, cap_lab, nsamp, cap_samp;
    char *strs;
    size_t nstr, cap_str;
} wbatch_t;

#define WB_MAX_SAMPLES (1u << 18)
#define WB_MAX_SERIES 1024u

static void wb_free(wbatch_t *w)
{
    free(w->b);
    free(w->labels);
    free(w->ts);
    free(w->v);
    free(w->strs);
    memset(w, 0, sizeof *w);
}

static int wb_grow(void **p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q)
        return ST_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int wb_flush(engine_t *dst, wbatch_t *w)
{
    if (!w->ns)
        return 0;
    /* pointers into the growable arrays are fixed up only now */
    size_t off = 0, soff = 0;
    for (size_t i = 0; i < w->ns; i++) {
        engine_series_batch_t *b = &w->b[i];
        b->labels = w->labels + (size_t)(uintptr_t)b->labels;
        size_t cnt = b->n;
        b->ts = w->ts + off;
        b->values = w->v + off;
        off += cnt;
        for (size_t j = 0; j < b->nlabels; j++) {
            st_label_t *l = (st_label_t *)&b->labels[j];
            l->name = w->strs + soff;
            soff += l->name_len + 1;
            l->value = w->strs + soff;
            soff += l->value_len + 1;
        }
    }
    engine_write_result_t r;
    engine_write_result_init(&r);
    int rc = engine_write_ex(dst, w->b, w->ns, &r);
    w->ns = w->nsamp = w->nstr = w->nlab = 0;
    if (rc == 0 && (r.too_old || r.series_refused)) {
        engine_set_error("tier write dropped samples (too old %" PRIu64 ", refused %" PRIu64 ")",
                         r.too_old, r.samples_refused);
        rc = ST_ELIMIT;
    }
    return rc;
}

/* Queue one series' buckets for dst: labels (sorted) plus __tier__ if add_tier. */
static int wb_add(engine_t *dst, wbatch_t *w, const st_label_t *l, size_t nl, int add_tier,
                  const tier_bucket_t *bk, size_t nb, int64_t res)
{
    if (!nb)
        return 0;
    if (nl + (size_t)add_tier > ST_LABELS_MAX) {
        engine_set_error("a series with %zu labels has no room for the %s label", nl, TIER_LABEL);
        return ST_ELIMIT;
    }
    int rc;
    size_t lab = w->nlab;
    if ((rc = wb_grow((void **)&w->b, &w->cap_s, w->ns + 1, sizeof *w->b)) ||
        (rc = wb_grow((void **)&w->labels, &w->cap_lab, lab + nl + 1, sizeof *w->labels)))
        return rc;
    size_t nsm = nb * TIER_FIELDS;
    size_t cs = w->cap_samp;
    if ((rc = wb_grow((void **)&w->ts, &cs, w->nsamp + nsm, sizeof *w->ts)))
        return rc;
    cs = w->cap_samp;
    if ((rc = wb_grow((void **)&w->v, &cs, w->nsamp + nsm, sizeof *w->v)))
        return rc;
    w->cap_samp = cs;
    /* labels: copy, insert __tier__ in order */
    st_label_t *dl = w->labels + lab;
    size_t k = 0;
    int added = !add_tier;
    static const st_label_t tl = {TIER_LABEL, TIER_SERIES_VALUE, sizeof TIER_LABEL - 1,
                                  sizeof TIER_SERIES_VALUE - 1};
    for (size_t i = 0; i <= nl; i++) {
        if (!added && (i == nl || st_labels_cmp(&tl, 1, &l[i], 1) < 0)) {
            dl[k++] = tl;
            added = 1;
        }
        if (i < nl)
            dl[k++] = l[i];
    }
    for (size_t i = 0; i < k; i++) {
        size_t need = w->nstr + dl[i].name_len + dl[i].value_len + 2;
        if ((rc = wb_grow((void **)&w->strs, &w->cap_str, need, 1)))
            return rc;
        memcpy(w->strs + w->nstr, dl[i].name, dl[i].name_len);
        w->strs[w->nstr + dl[i].name_len] = 0;
        w->nstr += dl[i].name_len + 1;
        memcpy(w->strs + w->nstr, dl[i].value, dl[i].value_len);
        w->strs[w->nstr + dl[i].value_len] = 0;
        w->nstr += dl[i].value_len + 1;
    }
    tier_encode(bk, nb, res, w->ts + w->nsamp, w->v + w->nsamp);
    w->b[w->ns++] = (engine_series_batch_t){
        .labels = (const st_label_t *)(uintptr_t)lab, .nlabels = k, .n = nsm};
    w->nlab += k;
    w->nsamp += nsm;
    if (w->nsamp >= WB_MAX_SAMPLES || w->ns >= WB_MAX_SERIES)
        return wb_flush(dst, w);
    return 0;
}

/* Move the chunk (w, w + part] of tier k's source into tier k. */
static int move_chunk(engine_tiers_t *t, size_t k, int64_t w, wbatch_t *wb, tier_bucket_t **bk,
                      size_t *bcap)
{
    engine_t *src = k ? t->eng[k - 1] : t->raw;
    int64_t res = t->spec[k].res_ms;
    st_matcher_t m = k ? (st_matcher_t){ST_MATCH_EQ, TIER_LABEL, TIER_SERIES_VALUE}
                       : (st_matcher_t){ST_MATCH_RE, ST_METRIC_LABEL, ".+"};
    engine_iter_t *it;
    int rc = engine_query(src, &m, 1, w + 1, w + t->part_ms, &it);
    if (rc)
        return rc;
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    uint64_t written = 0;
    while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &n)) == 1) {
        if (n + 1 > *bcap) {
            tier_bucket_t *nb = realloc(*bk, (n + 1) * sizeof *nb);
            if (!nb) {
                rc = ST_ENOMEM;
                break;
            }
            *bk = nb;
            *bcap = n + 1;
        }
        size_t nb;
        if (k) {
            int64_t pres = t->spec[k - 1].res_ms;
            if ((rc = tier_decode(ts, v, n, pres, w + 1, w + t->part_ms, *bk, &nb))) {
                engine_set_error("tier %" PRId64 " ms: corrupt bucket in chunk after %" PRId64,
                                 pres, w);
                break;
            }
            nb = tier_rebucket(*bk, nb, res);
        } else {
            nb = tier_aggregate(ts, v, n, res, *bk);
        }
        written += nb;
        if ((rc = wb_add(t->eng[k], wb, l, nl, k == 0, *bk, nb, res)))
            break;
    }
    engine_iter_destroy(it);
    if (rc < 0)
        return rc;
    if ((rc = wb_flush(t->eng[k], wb)))
        return rc;
    atomic_fetch_add(&t->buckets[k], written);
    return 0;
}

/* Drop source partitions whose data all lies at or before tier k's watermark. */
static void drop_moved(engine_tiers_t *t, size_t k, int64_t w)
{
    engine_t *src = k ? t->eng[k - 1] : t->raw;
    if (w != INT64_MIN)
        engine_drop_before(src, w + 1);
}

/* Where the next chunk of tier k starts: the watermark, or just before
 * the first source partition after it (gaps are skipped). ST_ENOENT: the
 * source has no partition after the watermark. */
static int next_chunk(engine_tiers_t *t, size_t k, int64_t w, int64_t *cur)
{
    engine_t *src = k ? t->eng[k - 1] : t->raw;
    int64_t start;
    int rc = engine_partition_after(src, w, &start);
    if (rc)
        return rc;
    *cur = w == INT64_MIN || start - t->part_ms > w ? start - t->part_ms : w;
    return 0;
}

static int run_tier(engine_tiers_t *t, size_t k, int64_t now_ms, unsigned max_chunks, wbatch_t *wb,
                    tier_bucket_t **bk, size_t *bcap)
{
    engine_t *src = k ? t->eng[k - 1] : t->raw;
    int64_t P = t->part_ms;
    int64_t cut = now_ms - t->spec[k].age_ms;
    /* the finer tier holds buckets up to its own watermark only */
    int64_t limit = k ? atomic_load(&t->wm[k - 1]) : INT64_MAX;
    int64_t w = atomic_load(&t->wm[k]), cur;
    int rc = next_chunk(t, k, w, &cur);
    if (rc == ST_ENOENT || (!rc && (cur > cut - P || cur + P > limit))) {
        if (w != INT64_MIN) { /* backfill that landed after its chunk moved */
            pthread_rwlock_wrlock(&t->move_mu);
            drop_moved(t, k, w);
            pthread_rwlock_unlock(&t->move_mu);
        }
        return 0;
    }
    if (rc)
        return rc;
    /* a chunk is due: the source's head goes to segments first, so that no
     * unflushed sample is skipped with a gap */
    if ((rc = engine_flush(src)) || (rc = next_chunk(t, k, w, &cur)))
        return rc == ST_ENOENT ? 0 : rc;
    unsigned done = 0;
    while (done < max_chunks && cur <= cut - P && cur + P <= limit && !atomic_load(&t->stopping)) {
        /* raw data still arriving (a load, a backfill) waits: the chunk reads
         * the partitions starting at cur and cur + P (its last bucket's end) */
        if (!k && t->quiet_ms > 0 &&
            (now_ms - engine_partition_flushed_ms(src, cur) < t->quiet_ms ||
             now_ms - engine_partition_flushed_ms(src, cur + P) < t->quiet_ms))
            break;
        if ((rc = move_chunk(t, k, cur, wb, bk, bcap)))
            return rc;
        cur += P;
        done++;
        int64_t nx;
        rc = next_chunk(t, k, cur, &nx);
        if (rc == ST_ENOENT)
            break;
        if (rc)
            return rc;
        cur = nx;
    }
    if (!done)
        return 0;
    if ((rc = engine_flush(t->eng[k])))
        return rc;
    if ((rc = wm_store(t->dir[k], cur)))
        return rc;
    pthread_rwlock_wrlock(&t->move_mu);
    atomic_store(&t->wm[k], cur);
    drop_moved(t, k, cur);
    pthread_rwlock_unlock(&t->move_mu);
    atomic_fetch_add(&t->chunks[k], done);
    return (int)done;
}

int engine_tiers_run(engine_tiers_t *t, int64_t now_ms, unsigned max_chunks)
{
    pthread_mutex_lock(&t->pass_mu);
    wbatch_t wb = {0};
    tier_bucket_t *bk = NULL;
    size_t bcap = 0;
    int total = 0, rc = 0;
    for (size_t k = 0; k < t->n; k++) {
        rc = run_tier(t, k, now_ms, max_chunks, &wb, &bk, &bcap);
        if (rc < 0)
            break;
        total += rc;
        rc = 0;
    }
    wb_free(&wb);
    free(bk);
    if (rc < 0)
        atomic_fetch_add(&t->errors, 1);
    pthread_mutex_unlock(&t->pass_mu);
    return rc < 0 ? rc : total;
}

/* ---- reading ---- */

typedef struct sel_series {
    st_label_t *l;
    size_t nl;
    tier_bucket_t *b;
    size_t n;
    size_t src; /* 0 = the coarsest tier ... n = raw: ascending in time */
} sel_series_t;

typedef struct sel {
    sel_series_t *s;
    size_t n, cap;
} sel_t;

static void sel_free(sel_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->s[i].l);
        free(s->s[i].b);
    }
    free(s->s);
}

/* Keep a copy of one series' buckets, its labels without __tier__. */
static int sel_add(sel_t *s, const st_label_t *l, size_t nl, const tier_bucket_t *b, size_t n,
                   size_t src)
{
    if (!n)
        return 0;
    int rc = wb_grow((void **)&s->s, &s->cap, s->n + 1, sizeof *s->s);
    if (rc)
        return rc;
    size_t bytes = 0;
    for (size_t i = 0; i < nl; i++)
        bytes += l[i].name_len + l[i].value_len + 2;
    st_label_t *cl = malloc(nl * sizeof *cl + bytes + 1);
    tier_bucket_t *cb = malloc(n * sizeof *cb);
    if (!cl || !cb) {
        free(cl);
        free(cb);
        return ST_ENOMEM;
    }
    char *p = (char *)(cl + nl);
    size_t k = 0;
    for (size_t i = 0; i < nl; i++) {
        if (l[i].name_len == sizeof TIER_LABEL - 1 && !memcmp(l[i].name, TIER_LABEL, l[i].name_len))
            continue;
        cl[k] = l[i];
        memcpy(p, l[i].name, l[i].name_len);
        p[l[i].name_len] = 0;
        cl[k].name = p;
        p += l[i].name_len + 1;
        memcpy(p, l[i].value, l[i].value_len);
        p[l[i].value_len] = 0;
        cl[k].value = p;
        p += l[i].value_len + 1;
        k++;
    }
    memcpy(cb, b, n * sizeof *cb);
    s->s[s->n++] = (sel_series_t){cl, k, cb, n, src};
    return 0;
}

static int sel_cmp(const void *a, const void *b)
{
    const sel_series_t *x = a, *y = b;
    int c = st_labels_cmp(x->l, x->nl, y->l, y->nl);
    if (c)
        return c;
    return x->src < y->src ? -1 : x->src > y->src;
}

/* Read one source into sel: tier k (k < t->n) or raw (k == t->n), bucket
 * ends in [lo, hi]. */
static int sel_source(engine_tiers_t *t, size_t k, const st_matcher_t *m, size_t nm, int64_t lo,
                      int64_t hi, int64_t res, sel_t *s, int64_t *used_res, uint64_t *read)
{
    int raw = k == t->n;
    engine_t *e = raw ? t->raw : t->eng[k];
    int64_t tres = raw ? res : t->spec[k].res_ms;
    int64_t out_res = tres > res ? tres : res;
    st_matcher_t mm[ST_LABELS_MAX + 2];
    if (nm > ST_LABELS_MAX)
        return ST_EINVAL;
    memcpy(mm, m, nm * sizeof *m);
    size_t n = nm;
    if (!raw)
        mm[n++] = (st_matcher_t){ST_MATCH_EQ, TIER_LABEL, TIER_SERIES_VALUE};
    /* raw: samples of the buckets ending in [lo, hi]; tier: their 9 samples
     * (either layout: all inside the bucket) */
    int64_t qlo = !raw ? lo - tres + 1 : res ? tier_bucket_end(lo, res) - res + 1 : lo;
    engine_iter_t *it;
    int rc = engine_query(e, mm, n, qlo, hi, &it);
    if (rc)
        return rc;
    const st_label_t *l;
    size_t nl, cnt;
    const int64_t *ts;
    const double *v;
    tier_bucket_t *bk = NULL;
    size_t bcap = 0;
    while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &cnt)) == 1) {
        if (cnt + 1 > bcap) {
            free(bk);
            bcap = cnt + 1;
            if (!(bk = malloc(bcap * sizeof *bk))) {
                rc = ST_ENOMEM;
                break;
            }
        }
        *read += raw ? cnt : cnt / TIER_FIELDS;
        size_t nb;
        if (raw) {
            if (res) {
                nb = tier_aggregate(ts, v, cnt, res, bk);
            } else { /* samples: one bucket each, ending at its timestamp */
                for (size_t i = 0; i < cnt; i++)
                    bk[i] =
                        (tier_bucket_t){ts[i], ts[i], ts[i], 1, v[i], v[i], v[i], v[i], v[i], -0.0};
                nb = cnt;
            }
        } else {
            if ((rc = tier_decode(ts, v, cnt, tres, lo, hi, bk, &nb))) {
                engine_set_error("tier %" PRId64 " ms: corrupt bucket", tres);
                break;
            }
            if (tres < res)
                nb = tier_rebucket(bk, nb, res);
        }
        size_t a = 0, z = nb; /* whole buckets in [lo, hi] only */
        while (a < z && bk[a].end < lo)
            a++;
        while (z > a && bk[z - 1].end > hi)
            z--;
        if (z > a && out_res > *used_res)
            *used_res = out_res;
        if ((rc = sel_add(s, l, nl, bk + a, z - a, raw ? t->n : t->n - 1 - k)))
            break;
    }
    free(bk);
    engine_iter_destroy(it);
    return rc < 0 ? rc : 0;
}

int engine_tiers_select(engine_tiers_t *t, const st_matcher_t *m, size_t nm, int64_t mint,
                        int64_t maxt, int64_t res, engine_tier_cb cb, void *arg, int64_t *used_res,
                        uint64_t *read)
{
    sel_t s = {0};
    int rc = 0;
    *used_res = res;
    if (res < 0 || mint > maxt)
        return mint > maxt ? 0 : ST_EINVAL;
    pthread_rwlock_rdlock(&t->move_mu);
    int64_t after = INT64_MIN; /* W[k + 1] going from the coarsest tier up */
    for (size_t j = t->n; j-- > 0 && !rc;) {
        int64_t w = atomic_load(&t->wm[j]);
        int64_t lo = after == INT64_MIN ? mint : (after + 1 > mint ? after + 1 : mint);
        int64_t hi = w < maxt ? w : maxt;
        if (w != INT64_MIN && lo <= hi)
            rc = sel_source(t, j, m, nm, lo, hi, res, &s, used_res, read);
        if (w != INT64_MIN)
            after = w;
    }
    if (!rc) {
        int64_t lo = after == INT64_MIN ? mint : (after + 1 > mint ? after + 1 : mint);
        if (lo <= maxt)
            rc = sel_source(t, t->n, m, nm, lo, maxt, res, &s, used_res, read);
    }
    pthread_rwlock_unlock(&t->move_mu);
    if (!rc && s.n)
        qsort(s.s, s.n, sizeof *s.s, sel_cmp);
    /* join each series' runs (ascending in time); equal ends merge */
    tier_bucket_t *all = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < s.n && !rc;) {
        size_t j = i, tot = 0;
        while (j < s.n && !st_labels_cmp(s.s[i].l, s.s[i].nl, s.s[j].l, s.s[j].nl))
            tot += s.s[j++].n;
        if ((rc = wb_grow((void **)&all, &cap, tot, sizeof *all)))
            break;
        size_t k = 0;
        for (size_t x = i; x < j; x++)
            for (size_t y = 0; y < s.s[x].n; y++) {
                if (k && all[k - 1].end >= s.s[x].b[y].end)
                    tier_merge(&all[k - 1], &s.s[x].b[y]);
                else
                    all[k++] = s.s[x].b[y];
            }
        rc = cb(arg, s.s[i].l, s.s[i].nl, all, k);
        i = j;
    }
    free(all);
    sel_free(&s);
    return rc;
}

typedef struct last_cb {
    engine_tier_samples_cb cb;
    void *arg;
} last_cb_t;

/* engine_tier_cb: each bucket becomes its last sample (a raw sample read at
 * resolution 0 is a bucket of its own). */
static int last_samples(void *arg, const st_label_t *l, size_t nl, const tier_bucket_t *b, size_t n)
{
    last_cb_t *lc = arg;
    int64_t *ts = malloc((n + 1) * sizeof *ts);
    double *v = malloc((n + 1) * sizeof *v);
    int rc = ts && v ? 0 : ST_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        ts[i] = b[i].last_ts;
        v[i] = b[i].last;
    }
    if (!rc)
        rc = lc->cb(lc->arg, l, nl, ts, v, n);
    free(ts);
    free(v);
    return rc;
}

int engine_tiers_select_samples(engine_tiers_t *t, const st_matcher_t *m, size_t nm, int64_t mint,
                                int64_t maxt, engine_tier_samples_cb cb, void *arg, uint64_t *read)
{
    last_cb_t lc = {cb, arg};
    int64_t used = 0;
    return engine_tiers_select(t, m, nm, mint, maxt, 0, last_samples, &lc, &used, read);
}

int64_t engine_tiers_raw_after(engine_tiers_t *t)
{
    return atomic_load(&t->wm[0]);
}

size_t engine_tiers_stats(engine_tiers_t *t, engine_tier_stats_t *out, size_t cap)
{
    size_t n = t->n < cap ? t->n : cap;
    for (size_t i = 0; i < n; i++) {
        engine_stats_t es;
        engine_get_stats(t->eng[i], &es);
        out[i] = (engine_tier_stats_t){
            t->spec[i].res_ms,          atomic_load(&t->wm[i]), atomic_load(&t->buckets[i]),
            atomic_load(&t->chunks[i]), es.disk_bytes,          es.series};
    }
    return n;
}

uint64_t engine_tiers_errors(engine_tiers_t *t)
{
    return atomic_load(&t->errors);
}
