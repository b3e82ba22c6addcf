/*
 * engine_budget — the limits one node's engines share (engine.h): head
 * memory, open segment files and series cardinality.
 *
 * Why shared: a node runs one engine per local shard; a limit per engine
 * would let N shards use N times the node's memory or descriptors. The
 * budget is a small thread-safe accountant; each engine charges and credits
 * it, and the engines never call each other.
 *
 * How: head bytes are one atomic sum (charged by engine_write, credited when
 * a flushed head is dropped); series counts and the fixed one-hour window of
 * new series live under one mutex (taken once per write that creates
 * series). Open segment files are an LRU list under lru_mu: seg_ref_pin
 * opens a closed file outside the lock, links it first and closes the least
 * recently used unpinned files beyond max_open_files (munmap outside the
 * lock too); a pinned file is never closed, so the bound can be passed
 * while more files than it are being read at the same moment. The first
 * open of a file without a summary (startup) gives it one, which outlives
 * the mapping, so readers can skip it later without opening it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_internal.h"
#include "st_err.h"
#include "st_time.h"

void engine_budget_opts_default(engine_budget_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_open_files = ENGINE_DEFAULT_MAX_OPEN_FILES;
}

int engine_budget_create(const engine_budget_opts_t *o, engine_budget_t **out)
{
    engine_budget_t *b = calloc(1, sizeof *b);
    if (!b)
        return ST_ENOMEM;
    if (o)
        b->o = *o;
    else
        engine_budget_opts_default(&b->o);
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->lru_mu, NULL);
    pthread_mutex_init(&b->flush_mu, NULL);
    pthread_cond_init(&b->flush_cv, NULL);
    /* flushes at once: half the CPUs, at least one. Every engine's head
     * fills at about the same rate, so without a bound all of a node's
     * shards flushed together (12 threads compressing on 2 CPUs, next to
     * the writers; at 4000 hosts, RF=3 on 2 CPUs, one at a time took 0-5%
     * less node CPU in A/B runs, at the same peak RSS). Each engine freezes
     * its head at once and writes go on into a fresh one; only the writing
     * out waits its turn. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    b->flush_max = cpus > 1 ? (int)(cpus / 2) : 1;
    *out = b;
    return 0;
}

void engine_budget_destroy(engine_budget_t *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->lru_mu);
    pthread_mutex_destroy(&b->flush_mu);
    pthread_cond_destroy(&b->flush_cv);
    free(b);
}

void budget_flush_begin(engine_budget_t *b)
{
    pthread_mutex_lock(&b->flush_mu);
    while (b->flushing >= b->flush_max)
        pthread_cond_wait(&b->flush_cv, &b->flush_mu);
    b->flushing++;
    pthread_mutex_unlock(&b->flush_mu);
}

void budget_flush_end(engine_budget_t *b)
{
    pthread_mutex_lock(&b->flush_mu);
    b->flushing--;
    pthread_cond_signal(&b->flush_cv);
    pthread_mutex_unlock(&b->flush_mu);
}

void engine_budget_get_stats(engine_budget_t *b, engine_budget_stats_t *s)
{
    memset(s, 0, sizeof *s);
    s->head_bytes = atomic_load(&b->head_bytes);
    s->open_files = atomic_load(&b->open_files);
    s->files_opened = atomic_load(&b->files_opened);
    s->files_closed = atomic_load(&b->files_closed);
    pthread_mutex_lock(&b->mu);
    s->series = b->series;
    s->new_series_hour = b->hour_start == st_now_ms() / 3600000 * 3600000 ? b->hour_new : 0;
    pthread_mutex_unlock(&b->mu);
}

/* ---- the LRU of open segment files (lru_mu held) ---- */

static void lru_unlink(engine_budget_t *b, seg_ref_t *r)
{
    if (r->lru_prev)
        r->lru_prev->lru_next = r->lru_next;
    else
        b->lru_first = r->lru_next;
    if (r->lru_next)
        r->lru_next->lru_prev = r->lru_prev;
    else
        b->lru_last = r->lru_prev;
    r->lru_prev = r->lru_next = NULL;
    r->in_lru = 0;
}

static void lru_push_front(engine_budget_t *b, seg_ref_t *r)
{
    r->lru_prev = NULL;
    r->lru_next = b->lru_first;
    if (b->lru_first)
        b->lru_first->lru_prev = r;
    else
        b->lru_last = r;
    b->lru_first = r;
    r->in_lru = 1;
}

/* Take the open segment out of r (it is unpinned); the caller closes it. */
static seg_t *lru_evict(engine_budget_t *b, seg_ref_t *r)
{
    seg_t *s = r->seg;
    lru_unlink(b, r);
    r->seg = NULL;
    atomic_fetch_sub(&b->open_files, 1);
    atomic_fetch_sub(r->eng_open, 1);
    atomic_fetch_add(&b->files_closed, 1);
    return s;
}

/* Give r its summary from the open file if it has none yet (the first open
 * after startup); a failure only leaves it unknown. */
static void seg_ref_summarize(seg_ref_t *r, const seg_t *s)
{
    seg_summary_t *m = NULL, *none = NULL;
    if (atomic_load(&r->sum) || seg_summarize(s, &m) != 0)
        return;
    if (!atomic_compare_exchange_strong(&r->sum, &none, m))
        seg_summary_free(m);
}

int seg_ref_may_hold(seg_ref_t *r, uint32_t id, int64_t mint, int64_t maxt)
{
    seg_summary_t *m = atomic_load(&r->sum);
    return !m || seg_summary_may_hold(m, id, mint, maxt);
}

int seg_ref_range(seg_ref_t *r, int64_t *mint, int64_t *maxt)
{
    seg_summary_t *m = atomic_load(&r->sum);
    if (!m)
        return 0;
    seg_summary_range(m, mint, maxt);
    return 1;
}

int seg_ref_pin(seg_ref_t *r)
{
    engine_budget_t *b = r->bud;
    pthread_mutex_lock(&b->lru_mu);
    if (r->seg) {
        r->pins++;
        lru_unlink(b, r);
        lru_push_front(b, r);
        pthread_mutex_unlock(&b->lru_mu);
        return 0;
    }
    pthread_mutex_unlock(&b->lru_mu);
    seg_t *s;
    int rc = seg_open(r->path, &s);
    if (rc)
        return rc;
    atomic_fetch_add(r->eng_opens, 1);
    seg_ref_summarize(r, s);
    seg_t *victims[8];
    size_t nv = 0;
    pthread_mutex_lock(&b->lru_mu);
    if (r->seg) { /* another reader opened it meanwhile */
        r->pins++;
        pthread_mutex_unlock(&b->lru_mu);
        seg_close(s);
        return 0;
    }
    r->seg = s;
    r->pins++;
    lru_push_front(b, r);
    atomic_fetch_add(&b->open_files, 1);
    atomic_fetch_add(r->eng_open, 1);
    atomic_fetch_add(&b->files_opened, 1);
    uint64_t max = b->o.max_open_files;
    for (seg_ref_t *v = b->lru_last; max && v && nv < 8 && atomic_load(&b->open_files) > max;) {
        seg_ref_t *prev = v->lru_prev;
        if (v->pins == 0)
            victims[nv++] = lru_evict(b, v);
        v = prev;
    }
    pthread_mutex_unlock(&b->lru_mu);
    for (size_t i = 0; i < nv; i++)
        seg_close(victims[i]);
    return 0;
}

void seg_ref_unpin(seg_ref_t *r)
{
    pthread_mutex_lock(&r->bud->lru_mu);
    r->pins--;
    pthread_mutex_unlock(&r->bud->lru_mu);
}

void seg_ref_lru_drop(seg_ref_t *r)
{
    seg_t *s = NULL;
    pthread_mutex_lock(&r->bud->lru_mu);
    if (r->seg)
        s = lru_evict(r->bud, r);
    pthread_mutex_unlock(&r->bud->lru_mu);
    seg_close(s);
}

/* ---- head memory and cardinality ---- */

int budget_head_over(engine_budget_t *b)
{
    return b->o.head_max_bytes && atomic_load(&b->head_bytes) >= b->o.head_max_bytes;
}

void budget_head_charge(engine_budget_t *b, uint64_t before, uint64_t after)
{
    if (after >= before)
        atomic_fetch_add(&b->head_bytes, after - before);
    else
        atomic_fetch_sub(&b->head_bytes, before - after);
}

void budget_series_charge(engine_budget_t *b, uint64_t before, uint64_t after)
{
    pthread_mutex_lock(&b->mu);
    b->series = b->series + after - before;
    pthread_mutex_unlock(&b->mu);
}

const char *budget_admit_series(engine_budget_t *b, uint64_t this_write, uint64_t *limit_value)
{
    const char *why = NULL;
    int64_t hour = st_now_ms() / 3600000 * 3600000;
    pthread_mutex_lock(&b->mu);
    if (hour != b->hour_start) {
        b->hour_start = hour;
        b->hour_new = 0;
    }
    if (b->o.max_series && b->series >= b->o.max_series) {
        why = "max_series";
        *limit_value = b->o.max_series;
    } else if (b->o.max_new_series_per_hour && b->hour_new >= b->o.max_new_series_per_hour) {
        why = "max_new_series_per_hour";
        *limit_value = b->o.max_new_series_per_hour;
    } else if (b->o.max_new_series_per_write && this_write >= b->o.max_new_series_per_write) {
        why = "max_new_series_per_write";
        *limit_value = b->o.max_new_series_per_write;
    } else {
        b->series++;
        b->hour_new++;
    }
    pthread_mutex_unlock(&b->mu);
    return why;
}

/* The engine's heads (active + frozen) charged to its node's budget: the
 * difference since the last call (head_mu held). */
void engine_head_account(engine_t *e)
{
    uint64_t now = e->head->bytes + (e->frozen ? e->frozen->bytes : 0);
    budget_head_charge(e->bud, e->charged, now);
    e->charged = now;
}
