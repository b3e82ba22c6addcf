/*
 * rrepair — read repair bookkeeping: stale replicas per read and the
 * bounded repair queue. See rrepair.h.
 *
 * The queue is a ring of at most queue_max items; the state of each
 * (shard, node) pair (idle, queued, running) and when it last started are
 * in flat arrays, so every check is O(1) except widening a queued pair's
 * range (a scan of the ring, at most queue_max).
 */
#include "rrepair.h"

#include <stdlib.h>
#include <string.h>

#include "st_err.h"

/* ---- what one read found ---- */

int rrepair_answers_init(rrepair_answers_t *a, uint32_t nshards)
{
    a->nshards = nshards;
    a->n = calloc(nshards ? nshards : 1, 1);
    a->node = malloc((nshards ? nshards : 1) * RREPAIR_REPLICAS_MAX * sizeof *a->node);
    if (!a->n || !a->node) {
        rrepair_answers_free(a);
        return ST_ENOMEM;
    }
    return 0;
}

void rrepair_answers_add(rrepair_answers_t *a, uint32_t shard, uint32_t node)
{
    if (shard >= a->nshards)
        return;
    uint32_t *nodes = a->node + (size_t)shard * RREPAIR_REPLICAS_MAX;
    for (uint8_t i = 0; i < a->n[shard]; i++)
        if (nodes[i] == node)
            return;
    if (a->n[shard] < RREPAIR_REPLICAS_MAX)
        nodes[a->n[shard]++] = node;
}

void rrepair_answers_free(rrepair_answers_t *a)
{
    free(a->n);
    free(a->node);
    a->n = NULL;
    a->node = NULL;
    a->nshards = 0;
}

static void found_add(rrepair_found_t *f, uint32_t shard, uint32_t node, int32_t source,
                      int64_t start, int64_t end)
{
    for (size_t i = 0; i < f->n; i++) {
        rrepair_item_t *p = &f->pair[i];
        if (p->shard == shard && p->node == node) {
            if (p->source < 0)
                p->source = source;
            p->start = start < p->start ? start : p->start;
            p->end = end > p->end ? end : p->end;
            return;
        }
    }
    if (f->n == RREPAIR_FOUND_MAX) {
        f->dropped++;
        return;
    }
    f->pair[f->n++] = (rrepair_item_t){shard, node, source, start, end};
}

void rrepair_judge(rrepair_found_t *f, const rrepair_answers_t *a, uint32_t shard, int has_old,
                   const uint32_t *origin, const uint8_t *stale, size_t n, int64_t start,
                   int64_t end)
{
    if (shard >= a->nshards)
        return;
    const uint32_t *nodes = a->node + (size_t)shard * RREPAIR_REPLICAS_MAX;
    uint32_t bad[RREPAIR_REPLICAS_MAX];
    size_t nbad = 0;
    int32_t source = -1;
    for (uint8_t k = 0; k < a->n[shard]; k++) {
        size_t i = 0;
        while (i < n && origin[i] != nodes[k])
            i++;
        int is_stale = i < n ? stale[i] != 0 : has_old;
        if (is_stale)
            bad[nbad++] = nodes[k];
        else if (i < n && source < 0)
            source = (int32_t)nodes[k];
    }
    if (!nbad)
        return;
    f->series++;
    for (size_t i = 0; i < nbad; i++)
        found_add(f, shard, bad[i], source, start, end);
}

/* ---- the queue ---- */

enum { P_IDLE = 0, P_QUEUED = 1, P_RUNNING = 2 };

struct rrepair {
    rrepair_cfg_t cfg;
    uint32_t nshards, nnodes;
    uint8_t *state;    /* [shard * nnodes + node] */
    int64_t *started;  /* [shard * nnodes + node]: last start, 0 never */
    rrepair_item_t *q; /* ring of cfg.queue_max */
    size_t head, n;
    size_t running;
    int64_t tokens_m; /* tokens x 1000 */
    int64_t refilled_ms;
};

int rrepair_create(uint32_t nshards, uint32_t nnodes, const rrepair_cfg_t *cfg, rrepair_t **out)
{
    *out = NULL;
    rrepair_t *q = calloc(1, sizeof *q);
    if (!q)
        return ST_ENOMEM;
    if (cfg)
        q->cfg = *cfg;
    else
        q->cfg = (rrepair_cfg_t){RREPAIR_QUEUE_MAX, RREPAIR_INFLIGHT_MAX, RREPAIR_COOLDOWN_MS,
                                 RREPAIR_RATE_PER_S, RREPAIR_BURST};
    if (!q->cfg.queue_max)
        q->cfg.queue_max = 1;
    if (!q->cfg.inflight_max)
        q->cfg.inflight_max = 1;
    q->nshards = nshards;
    q->nnodes = nnodes;
    size_t pairs = (size_t)(nshards ? nshards : 1) * (nnodes ? nnodes : 1);
    q->state = calloc(pairs, 1);
    q->started = calloc(pairs, sizeof *q->started);
    q->q = malloc(q->cfg.queue_max * sizeof *q->q);
    if (!q->state || !q->started || !q->q) {
        rrepair_destroy(q);
        return ST_ENOMEM;
    }
    q->tokens_m = (int64_t)q->cfg.burst * 1000;
    *out = q;
    return 0;
}

void rrepair_destroy(rrepair_t *q)
{
    if (!q)
        return;
    free(q->state);
    free(q->started);
    free(q->q);
    free(q);
}

static void refill(rrepair_t *q, int64_t now_ms)
{
    if (!q->refilled_ms || now_ms < q->refilled_ms) {
        q->refilled_ms = now_ms;
        return;
    }
    int64_t cap = (int64_t)q->cfg.burst * 1000;
    q->tokens_m += (now_ms - q->refilled_ms) * (int64_t)q->cfg.rate_per_s;
    if (q->tokens_m > cap)
        q->tokens_m = cap;
    q->refilled_ms = now_ms;
}

rrepair_verdict_t rrepair_offer(rrepair_t *q, const rrepair_item_t *it, int64_t now_ms)
{
    if (it->shard >= q->nshards || it->node >= q->nnodes)
        return RREPAIR_FULL;
    size_t k = (size_t)it->shard * q->nnodes + it->node;
    if (q->state[k] == P_QUEUED) {
        for (size_t i = 0; i < q->n; i++) {
            rrepair_item_t *p = &q->q[(q->head + i) % q->cfg.queue_max];
            if (p->shard == it->shard && p->node == it->node) {
                p->start = it->start < p->start ? it->start : p->start;
                p->end = it->end > p->end ? it->end : p->end;
                if (p->source != it->source)
                    p->source = -1; /* sources disagree: pull from every replica */
                break;
            }
        }
        return RREPAIR_MERGED;
    }
    if (q->state[k] == P_RUNNING)
        return RREPAIR_PENDING;
    if (q->started[k] && now_ms - q->started[k] < q->cfg.cooldown_ms)
        return RREPAIR_RATE;
    if (q->n == q->cfg.queue_max)
        return RREPAIR_FULL;
    refill(q, now_ms);
    if (q->tokens_m < 1000)
        return RREPAIR_RATE;
    q->tokens_m -= 1000;
    q->q[(q->head + q->n++) % q->cfg.queue_max] = *it;
    q->state[k] = P_QUEUED;
    return RREPAIR_QUEUED;
}

int rrepair_next(rrepair_t *q, int64_t now_ms, rrepair_item_t *out)
{
    if (!q->n || q->running >= q->cfg.inflight_max)
        return 0;
    *out = q->q[q->head];
    q->head = (q->head + 1) % q->cfg.queue_max;
    q->n--;
    size_t k = (size_t)out->shard * q->nnodes + out->node;
    q->state[k] = P_RUNNING;
    q->started[k] = now_ms ? now_ms : 1;
    q->running++;
    return 1;
}

void rrepair_done(rrepair_t *q, uint32_t shard, uint32_t node)
{
    if (shard >= q->nshards || node >= q->nnodes)
        return;
    size_t k = (size_t)shard * q->nnodes + node;
    if (q->state[k] != P_RUNNING)
        return;
    q->state[k] = P_IDLE;
    q->running--;
}

size_t rrepair_queued(const rrepair_t *q)
{
    return q->n;
}

size_t rrepair_running(const rrepair_t *q)
{
    return q->running;
}
