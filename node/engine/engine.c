/*
 * engine — open/close, the write path, WAL replay and the background thread.
 *
 * Write path (engine_write):
 *   1. resolve each series' labels to an id under the idx read lock (one
 *      XXH3 + one probe per series); unknown series are validated and added
 *      under the write lock, and logged as one WAL_REC_SERIES record;
 *   2. under head_mu: append one WAL_REC_CHAIN record (columnar: per
 *      series id, count, delta-coded timestamps, raw float64 values) and
 *      append the samples to the active head;
 *   3. outside every lock: wal_sync() to the LSN per the durability mode
 *      (EVERY_WRITE: concurrent writers share one fsync).
 * Before step 1 the node budget may refuse the whole write (head bytes over
 * head_max_bytes: ST_EBUSY, nothing written), samples outside the accepted
 * window are dropped (drop_outside), and in step 1 new series beyond a
 * cardinality limit are left out (ST_ELIMIT, the rest written).
 * Freezing the head and rotating the WAL happen together under head_mu, so
 * WAL files before the rotation hold exactly the frozen head's records and
 * can be dropped once it is flushed (engine_flush.c).
 *
 * Recovery: idx_open loads series.log, the partitions' segments are opened
 * (leftover *.tmp files and segments superseded by a compaction are
 * removed), then the WAL is replayed into the head: SERIES records re-add
 * series with their logged ids (ids already in series.log are checked to be
 * the same labels), SAMPLES records go to the head.
 *
 * Record payloads (little-endian varints, see docs/storage-format.md):
 *   SERIES:  count, then per series: id, nlabels, then per label:
 *            name_len, name, value_len, value
 *   SAMPLES: nseries, then per series: id, n, ts[0] (zigzag), n-1 zigzag
 *            deltas, n raw float64 (8 bytes LE each)
 *   SAMPLES_V: the version of every sample in it (uvarint), then a SAMPLES
 *            payload (written for engine_write_v with a version != 0)
 *   CHAIN, CHAIN_V: as SAMPLES, SAMPLES_V, but a series' first timestamp
 *            is a delta from the previous series' last (the first series'
 *            from 0): what writes log now (a write's series share nearby
 *            timestamps: ~3 bytes a series less than a full 6-byte one);
 *            SAMPLES records of older WAL files still replay
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine_internal.h"
#include "st_err.h"
#include "st_time.h"
#include "st_file.h"
#include "st_mem.h"
#include "st_varint.h"

void engine_opts_default(engine_opts_t *o)
{
    memset(o, 0, sizeof *o); /* fields added later stay off for older callers */
    o->wal_durability = ENGINE_WAL_PERIODIC;
    o->wal_sync_interval_ms = 100;
    o->partition_ms = 86400000;
    o->retention_ms = 0;
    o->memtable_max_bytes = 64u << 20;
    o->memtable_max_age_ms = 60000;
    o->background = 1;
    o->budget = NULL;
    o->max_future_ms = 0;
    o->head_max_partitions = 64;
    o->close_max_ms = 5000;
    o->log = NULL;
    o->log_arg = NULL;
    o->metric_retention = NULL;
    o->n_metric_retention = 0;
    o->key_labels = NULL;
}

/* The public durability modes are the WAL's own, value for value (engine.h
 * stays free of internal headers), and engine_str_cb is idx's callback type. */
_Static_assert(ENGINE_WAL_EVERY_WRITE == (int)WAL_EVERY_WRITE, "WAL mode values differ");
_Static_assert(ENGINE_WAL_PERIODIC == (int)WAL_PERIODIC, "WAL mode values differ");
_Static_assert(ENGINE_WAL_OS_DEFAULT == (int)WAL_OS_DEFAULT, "WAL mode values differ");
_Static_assert(ENGINE_WAL_NONE == (int)WAL_NONE, "WAL mode values differ");
_Static_assert(_Generic((engine_str_cb)0, idx_str_cb : 1, default : 0),
               "engine_str_cb and idx_str_cb differ");

/* ---- WAL record encoding ---- */

static int encode_series_rec(st_buf_t *b, const engine_series_batch_t *batch, const uint32_t *ids,
                             const uint8_t *is_new, size_t n, size_t nnew)
{
    int rc = st_buf_put_uvarint(b, nnew);
    for (size_t i = 0; i < n && !rc; i++) {
        if (is_new[i] != 1) /* 2: refused by a cardinality limit */
            continue;
        const engine_series_batch_t *s = &batch[i];
        rc |= st_buf_put_uvarint(b, ids[i]);
        rc |= st_buf_put_uvarint(b, s->nlabels);
        for (size_t j = 0; j < s->nlabels; j++) {
            rc |= st_buf_put_uvarint(b, s->labels[j].name_len);
            rc |= st_buf_append(b, s->labels[j].name, s->labels[j].name_len);
            rc |= st_buf_put_uvarint(b, s->labels[j].value_len);
            rc |= st_buf_append(b, s->labels[j].value, s->labels[j].value_len);
        }
    }
    return rc ? ST_ENOMEM : 0;
}

/* A CHAIN payload (header comment). */
static int encode_samples_rec(st_buf_t *b, const engine_series_batch_t *batch, const uint32_t *ids,
                              size_t n)
{
    size_t need = ST_UVARINT_MAX;
    for (size_t i = 0; i < n; i++)
        need += 2 * ST_UVARINT_MAX + batch[i].n * (ST_UVARINT_MAX + 8);
    if (st_buf_reserve(b, need))
        return ST_ENOMEM;
    uint8_t *p = b->data + b->len;
    p += st_uvarint_put(p, n);
    int64_t prev = 0; /* CHAIN: a series' first delta is from the series before */
    for (size_t i = 0; i < n; i++) {
        const engine_series_batch_t *s = &batch[i];
        p += st_uvarint_put(p, ids[i]);
        p += st_uvarint_put(p, s->n);
        for (size_t k = 0; k < s->n; k++) {
            p += st_uvarint_put(p, st_zigzag((int64_t)((uint64_t)s->ts[k] - (uint64_t)prev)));
            prev = s->ts[k];
        }
        for (size_t k = 0; k < s->n; k++) {
            st_store_u64le(p, st_f64_bits(s->values[k]));
            p += 8;
        }
    }
    b->len = (size_t)(p - b->data);
    return 0;
}

/* ---- replay ---- */

typedef struct replay_ctx {
    engine_t *e;
    int64_t *ts;
    double *v;
    size_t cap;
    uint64_t series, samples;
} replay_ctx_t;

static int replay_series(replay_ctx_t *c, const uint8_t *p, const uint8_t *end)
{
    uint64_t count;
    int k = st_uvarint_get(p, end, &count);
    if (k <= 0)
        return ST_ECORRUPT;
    p += k;
    st_label_t labels[ST_LABELS_MAX];
    for (uint64_t i = 0; i < count; i++) {
        uint64_t id, nl;
        if ((k = st_uvarint_get(p, end, &id)) <= 0)
            return ST_ECORRUPT;
        p += k;
        if ((k = st_uvarint_get(p, end, &nl)) <= 0 || nl > ST_LABELS_MAX)
            return ST_ECORRUPT;
        p += k;
        for (uint64_t j = 0; j < nl; j++) {
            uint64_t len;
            if ((k = st_uvarint_get(p, end, &len)) <= 0 || len > (uint64_t)(end - p - k))
                return ST_ECORRUPT;
            p += k;
            labels[j].name = (const char *)p;
            labels[j].name_len = (uint32_t)len;
            p += len;
            if ((k = st_uvarint_get(p, end, &len)) <= 0 || len > (uint64_t)(end - p - k))
                return ST_ECORRUPT;
            p += k;
            labels[j].value = (const char *)p;
            labels[j].value_len = (uint32_t)len;
            p += len;
        }
        const char *why;
        if (st_labels_validate(labels, nl, &why))
            return ST_ECORRUPT;
        uint64_t h = st_labels_hash(labels, nl);
        uint32_t have;
        uint32_t cnt = idx_count(c->e->idx);
        if (id < cnt) {
            if (idx_lookup(c->e->idx, labels, nl, h, &have) || have != id) {
                engine_set_error("WAL series record id %llu does not match series.log",
                                 (unsigned long long)id);
                return ST_ECORRUPT;
            }
            continue;
        }
        if (id != cnt) {
            engine_set_error("WAL series record id %llu skips ids (next is %u)",
                             (unsigned long long)id, cnt);
            return ST_ECORRUPT;
        }
        int rc = idx_add(c->e->idx, labels, nl, h, &have);
        if (rc)
            return rc;
        c->series++;
    }
    return 0;
}

static int head_note_parts(engine_t *e, head_t *h, const int64_t *ts, size_t n);

static int replay_samples(replay_ctx_t *c, const uint8_t *p, const uint8_t *end, int versioned,
                          int chained)
{
    int64_t prev = 0;
    uint64_t ns, version = 0;
    int k;
    if (versioned) {
        if ((k = st_uvarint_get(p, end, &version)) <= 0)
            return ST_ECORRUPT;
        p += k;
    }
    k = st_uvarint_get(p, end, &ns);
    if (k <= 0)
        return ST_ECORRUPT;
    p += k;
    for (uint64_t i = 0; i < ns; i++) {
        uint64_t id, n;
        if ((k = st_uvarint_get(p, end, &id)) <= 0)
            return ST_ECORRUPT;
        p += k;
        if ((k = st_uvarint_get(p, end, &n)) <= 0 || n > (uint64_t)(end - p))
            return ST_ECORRUPT;
        p += k;
        if (id >= idx_count(c->e->idx)) {
            engine_set_error("WAL samples for unknown series id %llu", (unsigned long long)id);
            return ST_ECORRUPT;
        }
        if (n > c->cap) {
            size_t cap = n;
            int64_t *ts = realloc(c->ts, cap * sizeof *ts);
            if (!ts)
                return ST_ENOMEM;
            c->ts = ts;
            double *v = realloc(c->v, cap * sizeof *v);
            if (!v)
                return ST_ENOMEM;
            c->v = v;
            c->cap = cap;
        }
        if (!chained)
            prev = 0;
        for (uint64_t j = 0; j < n; j++) {
            int64_t d;
            if ((k = st_svarint_get(p, end, &d)) <= 0)
                return ST_ECORRUPT;
            p += k;
            prev = (int64_t)((uint64_t)prev + (uint64_t)d);
            c->ts[j] = prev;
        }
        if ((uint64_t)(end - p) < n * 8)
            return ST_ECORRUPT;
        for (uint64_t j = 0; j < n; j++, p += 8)
            c->v[j] = st_bits_f64(st_load_u64le(p));
        uint64_t ooo = 0;
        const int64_t *ts = c->ts;
        const double *vals = c->v;
        size_t cnt = (size_t)n;
        void *own = NULL;
        int rc = 0;
        if (engine_tomb_may_hide(c->e, version)) { /* as engine_write_v does */
            st_label_t l[ST_LABELS_MAX];
            int nl = idx_labels(c->e->idx, (uint32_t)id, l);
            rc = nl < 0 ? nl
                        : engine_tomb_filter(c->e, l, (size_t)nl, version, &ts, &vals, &cnt, &own);
        }
        if (!rc && cnt)
            rc = head_append(c->e->head, (uint32_t)id, ts, vals, cnt, version, &ooo);
        if (!rc && cnt) /* the replayed head knows its partitions as the one written did */
            rc = head_note_parts(c->e, c->e->head, ts, cnt);
        free(own);
        if (rc)
            return rc;
        c->samples += n;
    }
    return 0;
}

static int replay_cb(void *arg, uint8_t type, const uint8_t *payload, size_t len)
{
    replay_ctx_t *c = arg;
    const uint8_t *end = payload + len;
    int rc;
    switch (type) {
    case WAL_REC_SERIES:
        rc = replay_series(c, payload, end);
        break;
    case WAL_REC_SAMPLES:
    case WAL_REC_SAMPLES_V:
    case WAL_REC_CHAIN:
    case WAL_REC_CHAIN_V:
        rc = replay_samples(c, payload, end, type == WAL_REC_SAMPLES_V || type == WAL_REC_CHAIN_V,
                            type >= WAL_REC_CHAIN);
        break;
    case WAL_REC_TOMB:
        rc = engine_tomb_replay(c->e, payload, len);
        break;
    default:
        engine_set_error("unknown WAL record type %u", type);
        return ST_ECORRUPT;
    }
    if (rc == ST_ECORRUPT && engine_last_error()[0] == '\0')
        engine_set_error("malformed WAL record of type %u", type);
    return rc;
}

/* ---- background thread ---- */

/*
 * The head bytes a flush frees for good: all but its series index (one
 * pointer per series id of the engine, sized by the id space, not by what
 * was written: a fresh head grows it again at its first write). The
 * per-engine flush trigger and backpressure use this; the node budget
 * charges every byte.
 */
static uint64_t head_data_bytes(const head_t *h)
{
    uint64_t index = (uint64_t)(h->ns / HEAD_CHUNK) * sizeof *h->chunk;
    return h->bytes > index ? h->bytes - index : 0;
}

/* Writes stopped this long after a burst (the head holds 1/8 of its
 * budget or more, or the last flush was of a full head: not a trickle)
 * make the head go to disk now rather than at memtable_max_age, and its
 * partitions compacted: data just bulk-loaded reads from one segment a
 * partition within seconds, not minutes. */
static int64_t idle_ms(const engine_t *e)
{
    return e->o.memtable_max_age_ms / 2 < 10000 ? e->o.memtable_max_age_ms / 2 : 10000;
}

static int head_needs_flush(engine_t *e)
{
    head_t *h = e->head;
    int idle = st_now_ms() - e->last_write_ms >= idle_ms(e);
    if (idle && e->bulk && h->samples == 0) { /* a burst ended with a full head's flush */
        e->bulk = 0;
        atomic_store(&e->settling, 1);
        return 0;
    }
    if (h->samples == 0)
        return 0;
    if (idle && (e->bulk || head_data_bytes(h) >= e->o.memtable_max_bytes / 8)) {
        atomic_fetch_add(&e->idle_flushes, 1);
        atomic_store(&e->settling, 1);
        e->bulk = 0;
        return 1;
    }
    if (head_data_bytes(h) >= e->o.memtable_max_bytes) {
        e->bulk = 1;
        return 1;
    }
    if (e->o.head_max_partitions && h->npart > e->o.head_max_partitions) {
        atomic_fetch_add(&e->early_flushes, 1);
        return 1;
    }
    /* the node is over its head budget: every engine with a head helps */
    if (budget_head_over(e->bud)) {
        e->bulk = 1;
        return 1;
    }
    if (st_now_ms() - h->created_ms < e->o.memtable_max_age_ms)
        return 0;
    e->bulk = 0; /* flushed by age: writes trickle */
    return 1;
}

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000

/*
 * One flush decision of the background thread. A failed flush (or a failed
 * WAL) is retried with a doubling back-off (0.5 s .. 30 s) and never given
 * up; the first success clears the failure (engine_health) and the back-off.
 */
static void bg_flush(engine_t *e)
{
    int64_t now = st_now_ms();
    pthread_mutex_lock(&e->head_mu);
    int need = head_needs_flush(e);
    int retry = e->frozen != NULL;
    pthread_mutex_unlock(&e->head_mu);
    int wal_bad = e->o.wal_durability != ENGINE_WAL_NONE && wal_failed(e->wal, NULL);
    if (!need && !retry && !wal_bad)
        return;
    if ((retry || wal_bad) && now < e->retry_at_ms)
        return;
    int rc = engine_flush(e);
    if (rc) {
        e->backoff_ms = e->backoff_ms ? e->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (e->backoff_ms > BACKOFF_MAX_MS)
            e->backoff_ms = BACKOFF_MAX_MS;
        e->retry_at_ms = st_now_ms() + e->backoff_ms;
    } else {
        e->backoff_ms = 0;
        e->retry_at_ms = 0;
    }
}

/* The CLOCK_REALTIME time `ms` from now, for pthread_cond_timedwait. */
static struct timespec engine_deadline_in(long ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    return dl;
}

/* Several segments, and the flushed ones (never compacted: one sequence
 * each) hold a quarter of its bytes or more: compacting it after a burst
 * rewrites at most about four times what the burst wrote. */
static int part_fresh(const part_t *p)
{
    if (p->nsegs < 2)
        return 0;
    uint64_t fresh = 0, all = 0;
    for (size_t i = 0; i < p->nsegs; i++) {
        all += p->segs[i]->size;
        if (p->segs[i]->seq_min == p->segs[i]->seq_max)
            fresh += p->segs[i]->size;
    }
    return fresh >= all / 4;
}

static void *bg_main(void *arg)
{
    engine_t *e = arg;
    int64_t last_retention = 0;
    pthread_mutex_lock(&e->bg_mu);
    while (!e->bg_stop) {
        if (!e->bg_kick) {
            struct timespec dl = engine_deadline_in(250);
            pthread_cond_timedwait(&e->bg_cv, &e->bg_mu, &dl);
        }
        e->bg_kick = 0;
        if (e->bg_stop)
            break;
        pthread_mutex_unlock(&e->bg_mu);

        bg_flush(e);
        /* compact partitions with several segments once they are quiet, or
         * once a burst that made them ended (an idle flush) */
        int64_t now = st_now_ms();
        int64_t quiet = 2 * e->o.memtable_max_age_ms;
        int64_t target = INT64_MIN;
        int settling = atomic_load(&e->settling);
        pthread_mutex_lock(&e->parts_mu);
        for (size_t i = 0; i < e->nparts && target == INT64_MIN; i++) {
            part_t *p = e->parts[i];
            if (p->nsegs >= 8 || (p->nsegs >= 2 && now - p->last_flush_ms >= quiet) ||
                (settling && part_fresh(p)) ||
                (now - p->last_flush_ms >= quiet && engine_tomb_part_pending(e, p)))
                target = p->start; /* the last: a partition holding deleted samples */
        }
        pthread_mutex_unlock(&e->parts_mu);
        if (settling && target == INT64_MIN) { /* the burst is flushed and compacted */
            atomic_store(&e->settling, 0);
            st_mem_release(); /* its heads' memory back to the OS (a daemon only) */
        }
        if (target != INT64_MIN && now >= e->retry_at_ms) {
            pthread_mutex_lock(&e->flush_mu);
            int rc = engine_compact_part(e, target);
            pthread_mutex_unlock(&e->flush_mu);
            if (rc) /* the same back-off as flushes: a full disk fails both */
                e->retry_at_ms = st_now_ms() + (e->backoff_ms ? e->backoff_ms : BACKOFF_MIN_MS);
        }
        if ((e->o.retention_ms > 0 || e->nmret) && now - last_retention >= 60000) {
            engine_apply_retention(e, now);
            last_retention = now;
        }
        pthread_mutex_lock(&e->bg_mu);
    }
    pthread_mutex_unlock(&e->bg_mu);
    return NULL;
}

static void bg_kick(engine_t *e)
{
    pthread_mutex_lock(&e->bg_mu);
    e->bg_kick = 1;
    pthread_cond_signal(&e->bg_cv);
    pthread_mutex_unlock(&e->bg_mu);
}

/* ---- open / close ---- */

int engine_open(const char *dir, const engine_opts_t *opts, engine_t **out)
{
    engine_clear_error();
    if (strlen(dir) > 3000) {
        engine_set_error("data dir path too long");
        return ST_ELIMIT;
    }
    engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return ST_ENOMEM;
    int rc = ST_ENOMEM;
    e->lock_fd = -1;
    if (opts)
        e->o = *opts;
    else
        engine_opts_default(&e->o);
    if (e->o.partition_ms <= 0 || e->o.memtable_max_bytes == 0 ||
        (unsigned)e->o.wal_durability > ENGINE_WAL_NONE) {
        engine_set_error("invalid engine options");
        free(e);
        return ST_EINVAL;
    }
    if (e->o.memtable_max_age_ms <= 0)
        e->o.memtable_max_age_ms = 60000;
    if (e->o.budget) {
        e->bud = e->o.budget;
    } else {
        if (engine_budget_create(NULL, &e->bud)) {
            free(e);
            return ST_ENOMEM;
        }
        e->own_bud = 1;
    }
    pthread_mutex_init(&e->health_mu, NULL);
    pthread_mutex_init(&e->flush_mu, NULL);
    pthread_mutex_init(&e->head_mu, NULL);
    pthread_cond_init(&e->head_cv, NULL);
    pthread_rwlock_init(&e->idx_lock, NULL);
    pthread_rwlock_init(&e->mret_lock, NULL);
    pthread_mutex_init(&e->parts_mu, NULL);
    pthread_mutex_init(&e->tomb_mu, NULL);
    pthread_mutex_init(&e->bg_mu, NULL);
    pthread_cond_init(&e->bg_cv, NULL);
    e->dir = strdup(dir);
    if (!e->dir || engine_mret_init(e) || engine_keys_create(e))
        goto fail;
    if (st_mkdir(dir)) {
        engine_set_error("cannot create data dir %s: %s", dir, strerror(errno));
        rc = ST_EIO;
        goto fail;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    e->lock_fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (e->lock_fd < 0) {
        engine_set_error("cannot open %s: %s", path, strerror(errno));
        rc = ST_EIO;
        goto fail;
    }
    if (flock(e->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        engine_set_error("data dir %s is in use by another process", dir);
        rc = ST_EBUSY;
        goto fail;
    }
    e->head = head_create();
    if (!e->head)
        goto fail;
    rc = idx_open(dir, &e->idx);
    if (rc) {
        if (!engine_last_error()[0])
            engine_set_error("cannot load %s/series.log: %s", dir, st_strerror(rc));
        goto fail;
    }
    rc = engine_parts_load(e);
    if (!rc)
        rc = engine_tomb_load(e);
    if (rc)
        goto fail;
    replay_ctx_t rctx = {.e = e};
    wal_opts_t wo = {.mode = (wal_mode_t)e->o.wal_durability,
                     .sync_interval_ms = e->o.wal_sync_interval_ms,
                     .file_max_bytes = 0};
    wal_replay_info_t info;
    memset(&info, 0, sizeof info);
    snprintf(path, sizeof path, "%s/wal", dir);
    rc = wal_open(path, &wo, replay_cb, &rctx, &info, &e->wal);
    free(rctx.ts);
    free(rctx.v);
    if (rc) {
        if (!engine_last_error()[0])
            engine_set_error("cannot open WAL %s: %s", path, st_strerror(rc));
        goto fail;
    }
    if (info.truncated)
        engine_set_error("WAL torn tail cut: file %u offset %llu (%llu bytes), %u later files "
                         "dropped",
                         info.trunc_file, (unsigned long long)info.trunc_offset,
                         (unsigned long long)info.trunc_bytes, info.files_dropped);
    rc = engine_tomb_ready(e);
    if (rc)
        goto fail;
    e->head->created_ms = st_now_ms();
    /* the replayed head and the series count against the node's budget */
    pthread_mutex_lock(&e->head_mu);
    engine_head_account(e);
    pthread_mutex_unlock(&e->head_mu);
    e->series_charged = idx_count(e->idx);
    budget_series_charge(e->bud, 0, e->series_charged);
    if (e->o.background) {
        if (pthread_create(&e->bg, NULL, bg_main, e) != 0) {
            rc = ST_ENOMEM;
            goto fail;
        }
        e->bg_running = 1;
    }
    *out = e;
    return 0;
fail:
    if (e->wal)
        wal_close(e->wal);
    engine_parts_free(e);
    if (e->idx)
        idx_close(e->idx);
    if (e->head) {
        budget_head_charge(e->bud, e->charged, 0);
        budget_series_charge(e->bud, e->series_charged, 0);
    }
    head_destroy(e->head);
    if (e->lock_fd >= 0)
        close(e->lock_fd);
    if (e->own_bud)
        engine_budget_destroy(e->bud);
    engine_tomb_free(e);
    pthread_mutex_destroy(&e->health_mu);
    free(e->mret);
    free(e->mret_strs);
    free(e->mret_st);
    free(e->mret_st_strs);
    pthread_rwlock_destroy(&e->mret_lock);
    engine_keys_destroy(e);
    free(e->dir);
    free(e);
    return rc;
}

/*
 * engine_close's flush, bounded by close_max_ms: partitions are written one
 * at a time until the deadline; what is left stays in the WAL (its files are
 * kept) and is replayed at the next open. Without a WAL everything is
 * flushed, however long it takes.
 */
static int close_flush(engine_t *e)
{
    if (e->o.wal_durability == ENGINE_WAL_NONE || e->o.close_max_ms <= 0)
        return engine_flush(e);
    int64_t dl = st_now_ms() + e->o.close_max_ms;
    pthread_mutex_lock(&e->flush_mu);
    if (wal_failed(e->wal, NULL)) { /* the heads hold records the WAL may not */
        int rc = engine_wal_recover(e);
        pthread_mutex_unlock(&e->flush_mu);
        return rc;
    }
    int rc = engine_flush_frozen(e, dl);
    if (!rc)
        rc = engine_freeze_head(e, 0);
    if (!rc)
        rc = engine_flush_frozen(e, dl);
    if (!rc)
        rc = engine_tomb_save_dirty(e);
    pthread_mutex_unlock(&e->flush_mu);
    if (rc && e->o.log) {
        char line[512];
        snprintf(line, sizeof line,
                 "close: head left in the WAL, replayed at the next open (%s) [%s]",
                 rc == ST_ETIMEDOUT ? "flush longer than close_max_ms" : st_strerror(rc), e->dir);
        e->o.log(e->o.log_arg, ENGINE_LOG_WARN, line);
    }
    return rc == ST_ETIMEDOUT ? 0 : rc;
}

int engine_close(engine_t *e)
{
    if (!e)
        return 0;
    if (e->bg_running) {
        atomic_store(&e->stopping, 1); /* a long background flush yields to close_flush */
        pthread_mutex_lock(&e->bg_mu);
        e->bg_stop = 1;
        pthread_cond_signal(&e->bg_cv);
        pthread_mutex_unlock(&e->bg_mu);
        pthread_join(e->bg, NULL);
    }
    atomic_store(&e->stopping, 0);
    int rc = close_flush(e);
    int rc2 = wal_close(e->wal);
    if (!rc)
        rc = rc2;
    engine_parts_free(e);
    idx_close(e->idx);
    budget_head_charge(e->bud, e->charged, 0);
    budget_series_charge(e->bud, e->series_charged, 0);
    head_destroy(e->head);
    head_destroy(e->frozen);
    close(e->lock_fd);
    if (e->own_bud)
        engine_budget_destroy(e->bud);
    pthread_mutex_destroy(&e->health_mu);
    pthread_mutex_destroy(&e->flush_mu);
    pthread_mutex_destroy(&e->head_mu);
    pthread_cond_destroy(&e->head_cv);
    pthread_rwlock_destroy(&e->idx_lock);
    pthread_mutex_destroy(&e->parts_mu);
    pthread_mutex_destroy(&e->bg_mu);
    pthread_cond_destroy(&e->bg_cv);
    engine_tomb_free(e);
    pthread_mutex_destroy(&e->tomb_mu);
    free(e->mret);
    free(e->mret_strs);
    free(e->mret_st);
    free(e->mret_st_strs);
    pthread_rwlock_destroy(&e->mret_lock);
    engine_keys_destroy(e);
    free(e->dir);
    free(e);
    return rc;
}

/* ---- write ---- */

typedef struct write_scratch {
    st_buf_t rec;
    uint32_t *ids;
    uint8_t *is_new;
    uint64_t *hashes;
    const st_label_t **lp; /* the batch's label sets and sizes, for idx_lookup_many */
    size_t *nl;
    uint64_t *uh;               /* ... their hashes (the series without an id, compacted) */
    uint32_t *uid;              /* ... what idx_lookup_many found */
    size_t *umap;               /* lp[j] is series umap[j] of the batch */
    engine_series_key_t *fkeys; /* the keys of a filtered or compacted batch */
    size_t cap;
    engine_series_batch_t *filtered; /* drop_too_old() output */
    size_t *fmap;                    /* filtered[j] is the caller's series fmap[j] */
    int64_t *fts;
    double *fv;
    size_t fcap, fscap;
    int registered; /* ws_key holds &ws: freed when the thread exits */
} write_scratch_t;

static __thread write_scratch_t ws;

/* Threads that write and then exit (the downsampling threads, embedders'
 * threads) give their scratch back through a key destructor. */
static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

static void ws_free(void *p)
{
    write_scratch_t *w = p;
    st_buf_deinit(&w->rec);
    free(w->ids);
    free(w->is_new);
    free(w->hashes);
    free(w->lp);
    free(w->nl);
    free(w->uh);
    free(w->uid);
    free(w->umap);
    free(w->fkeys);
    free(w->filtered);
    free(w->fmap);
    free(w->fts);
    free(w->fv);
    memset(w, 0, sizeof *w);
}

static void ws_key_make(void)
{
    (void)pthread_key_create(&ws_key, ws_free);
}

static void ws_register(void)
{
    if (!ws.registered) {
        pthread_once(&ws_once, ws_key_make);
        (void)pthread_setspecific(ws_key, &ws);
        ws.registered = 1;
    }
}

static int scratch_filtered(size_t nseries, size_t nsamples)
{
    ws_register();
    if (nseries > ws.fcap) {
        engine_series_batch_t *f = realloc(ws.filtered, nseries * sizeof *f);
        if (!f)
            return ST_ENOMEM;
        ws.filtered = f;
        size_t *fm = realloc(ws.fmap, nseries * sizeof *fm);
        if (!fm)
            return ST_ENOMEM;
        ws.fmap = fm;
        ws.fcap = nseries;
    }
    if (nsamples > ws.fscap) {
        int64_t *t = realloc(ws.fts, (nsamples ? nsamples : 1) * sizeof *t);
        if (!t)
            return ST_ENOMEM;
        ws.fts = t;
        double *v = realloc(ws.fv, (nsamples ? nsamples : 1) * sizeof *v);
        if (!v)
            return ST_ENOMEM;
        ws.fv = v;
        ws.fscap = nsamples;
    }
    return 0;
}

static int scratch_reserve(size_t n)
{
    ws_register();
    if (n <= ws.cap)
        return 0;
    size_t cap = ws.cap ? ws.cap : 256;
    while (cap < n)
        cap *= 2;
        /* each array to cap elements (ws.cap only once all are) */
#define WS_GROW(a)                                                                                 \
    do {                                                                                           \
        void *np_ = realloc(ws.a, cap * sizeof *ws.a);                                             \
        if (!np_)                                                                                  \
            return ST_ENOMEM;                                                                      \
        ws.a = np_;                                                                                \
    } while (0)
    WS_GROW(ids);
    WS_GROW(is_new);
    WS_GROW(hashes);
    WS_GROW(lp);
    WS_GROW(nl);
    WS_GROW(uh);
    WS_GROW(uid);
    WS_GROW(umap);
    WS_GROW(fkeys);
#undef WS_GROW
    ws.cap = cap;
    return 0;
}

/*
 * The accepted-time window: samples in partitions that retention has
 * already dropped would vanish at the next retention pass, and samples more
 * than max_future_ms ahead of the clock (or outside ENGINE_TS_MIN..MAX,
 * always) would open partitions nobody asked for; drop them now and count
 * them (too_old / too_far_future) instead of pretending to store them. A
 * series whose every sample is dropped is left out of the batch altogether,
 * so it is neither added to the index nor logged as a SERIES record: its
 * labels would otherwise be listed by the label endpoints while no sample of
 * it exists. Its labels are still validated (a bad series fails the write as
 * before). On return *out is the original batch when nothing is dropped,
 * else ws.filtered (*nout series, ws.fmap[j] the index in `b` of filtered
 * series j). Returns 0, ST_ENOMEM or a validation error (with *bad set).
 */
static int drop_outside(engine_t *e, const engine_series_batch_t *b,
                        const engine_series_key_t *keys, size_t n,
                        const engine_series_batch_t **out, size_t *nout, uint64_t *old_out,
                        uint64_t *future_out, size_t *bad)
{
    *old_out = *future_out = 0;
    *out = b;
    *nout = n;
    int64_t now = st_now_ms();
    int64_t lo = ENGINE_TS_MIN, hi = ENGINE_TS_MAX;
    if (e->o.retention_ms > 0 && e->o.retention_ms < ENGINE_TS_MAX)
        lo = engine_part_start(e, now - e->o.retention_ms);
    if (e->o.max_future_ms > 0 && e->o.max_future_ms < ENGINE_TS_MAX - now)
        hi = now + e->o.max_future_ms;
    size_t old = 0, future = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < b[i].n; k++) {
            old += b[i].ts[k] < lo;
            future += b[i].ts[k] > hi;
        }
    }
    if (old + future == 0)
        return 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += b[i].n;
    if (scratch_filtered(n, total - old - future))
        return ST_ENOMEM;
    size_t off = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        engine_series_batch_t *d = &ws.filtered[nf];
        *d = b[i];
        d->ts = ws.fts + off;
        d->values = ws.fv + off;
        size_t m = 0;
        for (size_t k = 0; k < b[i].n; k++) {
            if (b[i].ts[k] < lo || b[i].ts[k] > hi)
                continue;
            ws.fts[off + m] = b[i].ts[k];
            ws.fv[off + m] = b[i].values[k];
            m++;
        }
        if (m == 0 && b[i].n > 0) {
            const char *why;
            int rc = keys && keys[i].id1 ? 0 : st_labels_validate(b[i].labels, b[i].nlabels, &why);
            if (rc) {
                engine_set_error("series %zu: %s", i, why);
                if (bad)
                    *bad = i;
                return rc;
            }
            continue; /* nothing of it is kept: not indexed */
        }
        d->n = m;
        off += m;
        ws.fmap[nf++] = i;
    }
    *old_out = old;
    *future_out = future;
    *out = ws.filtered;
    *nout = nf;
    return 0;
}

void engine_write_result_init(engine_write_result_t *r)
{
    memset(r, 0, sizeof *r);
}

int engine_write(engine_t *e, const engine_series_batch_t *b, size_t n, size_t *bad)
{
    engine_write_result_t r;
    engine_write_result_init(&r);
    int rc = engine_write_ex(e, b, n, &r);
    if (rc && rc != ST_ELIMIT && bad)
        *bad = r.bad;
    return rc;
}

/* Note the first refusal of a write in r (code, limit, reason). */
static void refuse(engine_write_result_t *r, int code, const char *limit, uint64_t value,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void refuse(engine_write_result_t *r, int code, const char *limit, uint64_t value,
                   const char *fmt, ...)
{
    if (r->code)
        return;
    r->code = code;
    r->limit = limit;
    r->limit_value = value;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

/* Note the partitions the samples of one series fall in (head_mu held). */
static int head_note_parts(engine_t *e, head_t *h, const int64_t *ts, size_t n)
{
    int64_t start = 0, end = 0;
    for (size_t k = 0; k < n; k++) {
        if (k == 0 || ts[k] < start || ts[k] >= end) {
            start = engine_part_start(e, ts[k]);
            end = start + e->o.partition_ms;
            if (head_add_part(h, start))
                return ST_ENOMEM;
        }
    }
    return 0;
}

static void wal_failure(engine_t *e, int rc, int en, const char *what)
{
    atomic_fetch_add(&e->wal_errors, 1);
    const char *why = rc == ST_EIO ? strerror(en) : st_strerror(rc);
    engine_set_error("WAL write failing: %s (%s); the engine retries by itself", why, what);
    engine_fail(e, FAIL_WAL, "%s (%s)", why, what);
}

int engine_write_ex(engine_t *e, const engine_series_batch_t *b, size_t n, engine_write_result_t *r)
{
    return engine_write_v(e, b, n, 0, r);
}

int engine_write_v(engine_t *e, const engine_series_batch_t *b, size_t n, uint64_t version,
                   engine_write_result_t *r)
{
    return engine_write_keyed(e, b, NULL, n, version, r);
}

int engine_write_keyed(engine_t *e, const engine_series_batch_t *b, const engine_series_key_t *k,
                       size_t n, uint64_t version, engine_write_result_t *r)
{
    size_t *bad = &r->bad;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if ((b[i].n > 0 && (!b[i].ts || !b[i].values)) || (!b[i].labels && b[i].nlabels) ||
            (!b[i].labels && (!k || !k[i].id1 || !k[i].key || !e->o.key_labels))) {
            *bad = i;
            return ST_EINVAL;
        }
    }
    /* 0. the node's head memory: refuse the whole write, before anything */
    if (budget_head_over(e->bud)) {
        uint64_t all = 0;
        for (size_t i = 0; i < n; i++)
            all += b[i].n;
        atomic_fetch_add(&e->writes_busy, 1);
        atomic_fetch_add(&e->samples_refused, all);
        r->samples_refused += all;
        r->retry_after_s = 1;
        refuse(r, ST_EBUSY, "head_max_bytes", e->bud->o.head_max_bytes,
               "head_max_bytes limit %llu reached on this node (unflushed data); retry later",
               (unsigned long long)e->bud->o.head_max_bytes);
        engine_set_error("%s", r->reason);
        if (e->bg_running)
            bg_kick(e);
        return ST_EBUSY;
    }
    uint64_t too_old, too_future;
    const engine_series_batch_t *kept;
    int rc = drop_outside(e, b, k, n, &kept, &n, &too_old, &too_future, bad);
    if (rc)
        return rc;
    int filtered = kept != b;
    b = kept;
    if (too_old)
        atomic_fetch_add(&e->samples_too_old, too_old);
    if (too_future)
        atomic_fetch_add(&e->samples_too_far_future, too_future);
    r->too_old += too_old;
    r->too_far_future += too_future;
    if (n == 0)
        return 0;
    rc = scratch_reserve(n);
    if (rc)
        return rc;
    if (k && filtered) { /* the keys follow the series kept */
        for (size_t i = 0; i < n; i++)
            ws.fkeys[i] = k[ws.fmap[i]];
        k = ws.fkeys;
    }
    size_t nnew = 0;
    /* 1. resolve ids (hashes outside the lock, lookups batched with
     * prefetching); validate only series we have not seen */
    size_t nu = 0; /* series without an id (engine_keys_resolve): looked up by labels */
    for (size_t i = 0; i < n; i++) {
        if (k && k[i].id1) {
            ws.ids[i] = k[i].id1 - 1;
            continue;
        }
        ws.hashes[i] = st_labels_hash(b[i].labels, b[i].nlabels);
        ws.lp[nu] = b[i].labels;
        ws.nl[nu] = b[i].nlabels;
        ws.uh[nu] = ws.hashes[i];
        ws.umap[nu++] = i;
    }
    pthread_rwlock_rdlock(&e->idx_lock);
    uint32_t nids = idx_count(e->idx);
    for (size_t i = 0; i < n; i++) {
        if (k && k[i].id1 && ws.ids[i] >= nids) { /* not an id of this engine */
            pthread_rwlock_unlock(&e->idx_lock);
            size_t orig = filtered ? ws.fmap[i] : i;
            engine_set_error("series %zu: unknown series id %u", orig, ws.ids[i]);
            *bad = orig;
            return ST_EINVAL;
        }
    }
    if (nu)
        nnew = nu - (size_t)idx_lookup_many(e->idx, ws.lp, ws.nl, ws.uh, nu, ws.uid);
    pthread_rwlock_unlock(&e->idx_lock);
    for (size_t j = 0; j < nu; j++)
        ws.ids[ws.umap[j]] = ws.uid[j];
    for (size_t i = 0; i < n; i++)
        ws.is_new[i] = ws.ids[i] == UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        const char *why;
        if (ws.is_new[i] && (rc = st_labels_validate(b[i].labels, b[i].nlabels, &why)) != 0) {
            size_t orig = filtered ? ws.fmap[i] : i;
            engine_set_error("series %zu: %s", orig, why);
            *bad = orig;
            return rc;
        }
    }
    uint64_t lsn = 0;
    size_t nrefused = 0;
    if (nnew) {
        pthread_rwlock_wrlock(&e->idx_lock);
        size_t really = 0;
        for (size_t i = 0; i < n; i++) {
            if (!ws.is_new[i])
                continue;
            /* another writer (or an earlier duplicate in this batch) may have added it */
            if (idx_lookup(e->idx, b[i].labels, b[i].nlabels, ws.hashes[i], &ws.ids[i]) == 0) {
                ws.is_new[i] = 0;
                continue;
            }
            uint64_t lv = 0;
            const char *limit = budget_admit_series(e->bud, r->new_series, &lv);
            if (limit) {
                ws.is_new[i] = 2; /* refused: neither indexed, logged nor written */
                nrefused++;
                r->series_refused++;
                r->samples_refused += b[i].n;
                atomic_fetch_add(&e->series_refused, 1);
                atomic_fetch_add(&e->samples_refused, b[i].n);
                refuse(r, ST_ELIMIT, limit, lv, "%s limit %llu reached on this node", limit,
                       (unsigned long long)lv);
                continue;
            }
            rc = idx_add(e->idx, b[i].labels, b[i].nlabels, ws.hashes[i], &ws.ids[i]);
            if (rc) {
                budget_series_charge(e->bud, 1, 0);
                pthread_rwlock_unlock(&e->idx_lock);
                return rc;
            }
            e->series_charged++;
            r->new_series++;
            really++;
        }
        if (really && e->o.wal_durability != ENGINE_WAL_NONE) {
            st_buf_reset(&ws.rec);
            rc = encode_series_rec(&ws.rec, b, ws.ids, ws.is_new, n, really);
            if (!rc && (rc = wal_append(e->wal, WAL_REC_SERIES, ws.rec.data, ws.rec.len, &lsn)))
                wal_failure(e, rc, errno, "append");
        }
        pthread_rwlock_unlock(&e->idx_lock);
        if (rc)
            return rc;
    }
    if (k) /* the next write of these series skips the above */
        engine_keys_learn(e, k, ws.ids, ws.is_new, n);
    /* refused series leave the batch (compacted in place in the scratch ids) */
    if (nrefused) {
        if (scratch_filtered(n, 0))
            return ST_ENOMEM;
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (ws.is_new[i] == 2)
                continue;
            ws.filtered[w] = b[i]; /* safe in place: w <= i when b is ws.filtered */
            ws.ids[w] = ws.ids[i];
            if (k)
                ws.fkeys[w] = k[i]; /* likewise */
            w++;
        }
        b = ws.filtered;
        if (k)
            k = ws.fkeys;
        n = w;
    }
    int refused_rc = nrefused ? ST_ELIMIT : 0;
    if (refused_rc)
        engine_set_error("%s", r->reason);
    if (n == 0)
        return refused_rc;
    /* 2. WAL record + head, atomically with respect to freezing */
    st_buf_reset(&ws.rec);
    if (e->o.wal_durability != ENGINE_WAL_NONE && version && st_buf_put_uvarint(&ws.rec, version))
        return ST_ENOMEM;
    if (e->o.wal_durability != ENGINE_WAL_NONE && (rc = encode_samples_rec(&ws.rec, b, ws.ids, n)))
        return rc;
    uint64_t total = 0, ooo = 0;
    pthread_mutex_lock(&e->head_mu);
    if (e->o.wal_durability != ENGINE_WAL_NONE) {
        rc = wal_append(e->wal, version ? WAL_REC_CHAIN_V : WAL_REC_CHAIN, ws.rec.data, ws.rec.len,
                        &lsn);
        if (rc) {
            int en = errno;
            pthread_mutex_unlock(&e->head_mu);
            wal_failure(e, rc, en, "append");
            if (e->bg_running)
                bg_kick(e);
            return rc;
        }
    }
    head_t *h = e->head;
    e->last_write_ms = st_now_ms();
    if (h->samples == 0)
        h->created_ms = e->last_write_ms;
    uint64_t data0 = head_data_bytes(h);
    size_t nlive = 0; /* series that got samples: ws.ids[0, nlive) */
    st_label_t kl[ST_LABELS_MAX];
    /* prefetch distances (series ahead): struct, then arrays. A series
     * gets a sample or two per write, so an iteration is short: at 16/8
     * the struct loads of the array stage still missed (perf annotate);
     * 32/16 gave +4% samples/s at RF=3 and -6% node CPU (ingest_ab.py,
     * 4000x1 and 1000x3; 48/24 was no better) */
    enum { PF1 = 32, PF2 = 16 };
    for (size_t i = 0; i < n && i < PF1; i++)
        head_prefetch_series(h, ws.ids[i]);
    for (size_t i = 0; i < n && !rc; i++) {
        if (i + PF1 < n)
            head_prefetch_series(h, ws.ids[i + PF1]);
        if (i + PF2 < n)
            head_prefetch_tail(h, ws.ids[i + PF2]);
        /* a newer delete hides what an older write brings late (engine_tomb.c) */
        const int64_t *ts = b[i].ts;
        const double *vals = b[i].values;
        size_t cnt = b[i].n;
        void *own = NULL;
        const st_label_t *l = b[i].labels;
        size_t nl = b[i].nlabels;
        if (engine_tomb_may_hide(e, version)) {
            if (!l) { /* passed by key: its labels, to match */
                rc = e->o.key_labels(k[i].key, k[i].len, kl, ST_LABELS_MAX, &nl);
                l = kl;
            }
            if (!rc)
                rc = engine_tomb_filter(e, l, nl, version, &ts, &vals, &cnt, &own);
        }
        if (!rc && cnt)
            rc = head_append(h, ws.ids[i], ts, vals, cnt, version, &ooo);
        if (!rc && cnt)
            rc = head_note_parts(e, h, ts, cnt);
        free(own);
        if (cnt)
            ws.ids[nlive++] = ws.ids[i];
        total += b[i].n;
    }
    if (!rc && engine_tomb_any_dead(e))
        engine_tomb_note_write(e, ws.ids, nlive); /* written again: listed again */
    engine_head_account(e);
    int over = head_data_bytes(h) >= e->o.memtable_max_bytes ||
               (e->o.head_max_partitions && h->npart > e->o.head_max_partitions) ||
               budget_head_over(e->bud);
    /* backpressure: while a frozen head is still being written and the active
     * one is twice over its budget, wait for the flush to finish (or fail:
     * then this write is in the WAL and head but reported as not durable,
     * and a retry is harmless) -- at most ENGINE_BACKPRESSURE_MAX_MS: the
     * write is already in the WAL and head, and a flush of a head spanning
     * thousands of partitions can take minutes, during which a waiting
     * writer would hold a thread every other request shares; the node's
     * head_max_bytes stays the hard bound (refused before writing). Only a
     * write that grew the head by 1/64 of its budget or more waits: the
     * writers filling the head are slowed, not the small ones behind them */
    struct timespec bp_until = engine_deadline_in(ENGINE_BACKPRESSURE_MAX_MS);
    int big = head_data_bytes(h) - data0 >= e->o.memtable_max_bytes / 64;
    while (!rc && big && e->frozen && head_data_bytes(e->head) >= 2 * e->o.memtable_max_bytes &&
           e->bg_running) {
        if (e->flush_err) {
            rc = e->flush_err;
            engine_set_error("flush failing, write not acknowledged: %s", st_strerror(rc));
            break;
        }
        if (pthread_cond_timedwait(&e->head_cv, &e->head_mu, &bp_until) == ETIMEDOUT) {
            atomic_fetch_add(&e->writes_backpressure_cut, 1);
            break;
        }
    }
    pthread_mutex_unlock(&e->head_mu);
    if (rc)
        return rc;
    atomic_fetch_add(&e->samples_written, total);
    r->written += total;
    if (ooo)
        atomic_fetch_add(&e->samples_ooo, ooo);
    if (over && e->bg_running)
        bg_kick(e);
    /* 3. durability */
    if (e->o.wal_durability != ENGINE_WAL_NONE && (rc = wal_sync(e->wal, lsn)) != 0) {
        wal_failure(e, rc, errno, "sync");
        if (e->bg_running)
            bg_kick(e);
        return rc;
    }
    return refused_rc;
}

/* ---- label metadata ---- */

/* Names (name == NULL) or values of `name` over the series matching m. */
static int label_meta(engine_t *e, const char *name, const st_matcher_t *m, size_t nm,
                      engine_str_cb cb, void *arg)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    pthread_rwlock_rdlock(&e->idx_lock);
    if (nm) {
        const char *why = NULL;
        rc = idx_select(e->idx, m, nm, &ids, &n, &why);
        if (rc && why)
            engine_set_error("%s", why);
    }
    if (!rc && engine_tomb_any_dead(e)) { /* series a delete emptied are not listed */
        if (!nm) {
            n = idx_count(e->idx);
            if (!(ids = malloc((n ? n : 1) * sizeof *ids)))
                rc = ST_ENOMEM;
            for (size_t i = 0; ids && i < n; i++)
                ids[i] = (uint32_t)i;
        }
        if (!rc)
            n = engine_tomb_filter_ids(e, ids, n);
    }
    int all = !ids && nm == 0; /* every series */
    if (!rc && (all || n > 0))
        rc = name ? idx_label_values(e->idx, name, all ? NULL : ids, n, cb, arg)
                  : idx_label_names(e->idx, all ? NULL : ids, n, cb, arg);
    pthread_rwlock_unlock(&e->idx_lock);
    free(ids);
    return rc;
}

int engine_label_names(engine_t *e, const st_matcher_t *m, size_t nm, engine_str_cb cb, void *arg)
{
    return label_meta(e, NULL, m, nm, cb, arg);
}

int engine_label_values(engine_t *e, const char *name, const st_matcher_t *m, size_t nm,
                        engine_str_cb cb, void *arg)
{
    return label_meta(e, name, m, nm, cb, arg);
}

void engine_get_stats(engine_t *e, engine_stats_t *s)
{
    memset(s, 0, sizeof *s);
    pthread_rwlock_rdlock(&e->idx_lock);
    s->series = idx_count(e->idx);
    s->disk_bytes += idx_disk_bytes(e->idx);
    pthread_rwlock_unlock(&e->idx_lock);
    pthread_mutex_lock(&e->head_mu);
    s->head_samples = e->head->samples + (e->frozen ? e->frozen->samples : 0);
    s->head_bytes = e->head->bytes + (e->frozen ? e->frozen->bytes : 0);
    s->head_partitions = e->head->npart + (e->frozen ? e->frozen->npart : 0);
    pthread_mutex_unlock(&e->head_mu);
    pthread_mutex_lock(&e->parts_mu);
    s->partitions = e->nparts;
    for (size_t i = 0; i < e->nparts; i++) {
        s->segments += e->parts[i]->nsegs;
        for (size_t j = 0; j < e->parts[i]->nsegs; j++)
            s->disk_bytes += e->parts[i]->segs[j]->size;
    }
    pthread_mutex_unlock(&e->parts_mu);
    wal_stats_t w;
    wal_get_stats(e->wal, &w);
    s->wal_bytes = w.disk_bytes;
    s->wal_syncs = w.syncs;
    s->disk_bytes += w.disk_bytes;
    s->samples_written = atomic_load(&e->samples_written);
    s->samples_out_of_order = atomic_load(&e->samples_ooo);
    s->flushes = atomic_load(&e->flushes);
    s->compactions = atomic_load(&e->compactions);
    s->segments_installed = atomic_load(&e->segments_installed);
    s->flush_errors = atomic_load(&e->flush_errors);
    s->samples_too_old = atomic_load(&e->samples_too_old);
    s->samples_too_far_future = atomic_load(&e->samples_too_far_future);
    s->series_refused = atomic_load(&e->series_refused);
    s->samples_refused = atomic_load(&e->samples_refused);
    s->writes_refused_busy = atomic_load(&e->writes_busy);
    s->open_files = atomic_load(&e->open_files);
    s->early_flushes = atomic_load(&e->early_flushes);
    s->idle_flushes = atomic_load(&e->idle_flushes);
    s->segment_opens = atomic_load(&e->seg_opens);
    s->segment_reads_skipped = atomic_load(&e->seg_reads_skipped);
    s->writes_backpressure_cut = atomic_load(&e->writes_backpressure_cut);
    s->wal_errors = atomic_load(&e->wal_errors);
    s->compaction_errors = atomic_load(&e->compaction_errors);
    s->retention_errors = atomic_load(&e->retention_errors);
    s->tombstones_pending = engine_tomb_pending(e, &s->purge_eta_ms);
    pthread_mutex_lock(&e->tomb_mu);
    s->tombstones = e->ntombs;
    pthread_mutex_unlock(&e->tomb_mu);
    s->deletes = atomic_load(&e->deletes);
    s->samples_deleted = atomic_load(&e->samples_deleted);
    s->purge_bytes_reclaimed = atomic_load(&e->purge_bytes);
    s->purges = atomic_load(&e->purges);
    s->metric_retention_drops = atomic_load(&e->mret_drops);
    s->metric_retention_rewrites = atomic_load(&e->mret_rewrites);
    s->samples_hidden_late = atomic_load(&e->samples_hidden_late);
    s->series_key_bytes = engine_keys_bytes(e);
    char why[8];
    s->degraded = (uint32_t)engine_health(e, why, sizeof why);
}
