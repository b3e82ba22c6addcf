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
 * series). Open segment files are counted here too; the LRU that closes
 * them lives in engine_files.c.
 */
#include <stdlib.h>
#include <string.h>

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
    *out = b;
    return 0;
}

void engine_budget_destroy(engine_budget_t *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
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
