/*
 * sql_topn — the router's merge of the nodes' TOPN answers for
 * `ORDER BY time DESC|ASC LIMIT n [OFFSET m]` (sql.h). A row of a table is
 * a (tag set, time) pair; each node answers the newest (oldest) keys of
 * its shards, the tag set as a 64-bit hash. Replicas and the fields of one
 * row give the same key more than once: the merge keeps distinct keys and
 * reports the time of the n-th newest (oldest) one, the edge of a window
 * that holds at least n rows (when the keys are rows WHERE keeps; the
 * caller checks and reads more when not).
 *
 * Keys are kept until the end (at most n per node and call), then sorted
 * once: the newest first (oldest first), ties by tag-set hash.
 */
#include <stdlib.h>
#include <string.h>

#include "sql_int.h"
#include "st_err.h"

typedef struct key {
    uint64_t tagset;
    int64_t ts;
} key_t_;

struct sql_topn {
    size_t n;
    int oldest;
    key_t_ *k;
    size_t nk, cap;
};

int sql_topn_create(size_t n, int oldest, sql_topn_t **out)
{
    *out = NULL;
    if (!n)
        return ST_EINVAL;
    sql_topn_t *t = calloc(1, sizeof *t);
    if (!t)
        return ST_ENOMEM;
    t->n = n;
    t->oldest = oldest;
    *out = t;
    return 0;
}

int sql_topn_add(sql_topn_t *t, const uint64_t *tagsets, const int64_t *ts, size_t k)
{
    if (k > t->n)
        k = t->n; /* a node's keys past the n-th cannot be among the first n */
    if (t->nk + k > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->nk + k)
            cap *= 2;
        key_t_ *nk = realloc(t->k, cap * sizeof *nk);
        if (!nk)
            return ST_ENOMEM;
        t->k = nk;
        t->cap = cap;
    }
    for (size_t i = 0; i < k; i++)
        t->k[t->nk++] = (key_t_){tagsets[i], ts[i]};
    return 0;
}

static int cmp_newest(const void *pa, const void *pb)
{
    const key_t_ *a = pa, *b = pb;
    if (a->ts != b->ts)
        return a->ts > b->ts ? -1 : 1;
    return a->tagset < b->tagset ? -1 : a->tagset > b->tagset;
}

static int cmp_oldest(const void *pa, const void *pb)
{
    const key_t_ *a = pa, *b = pb;
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    return a->tagset < b->tagset ? -1 : a->tagset > b->tagset;
}

size_t sql_topn_finish(sql_topn_t *t, int64_t *edge)
{
    if (!t->nk)
        return 0;
    qsort(t->k, t->nk, sizeof *t->k, t->oldest ? cmp_oldest : cmp_newest);
    size_t d = 0;
    for (size_t i = 0; i < t->nk && d < t->n; i++)
        if (!d || t->k[i].ts != t->k[d - 1].ts || t->k[i].tagset != t->k[d - 1].tagset)
            t->k[d++] = t->k[i];
    t->nk = d;
    *edge = t->k[d - 1].ts;
    return d;
}

void sql_topn_destroy(sql_topn_t *t)
{
    if (!t)
        return;
    free(t->k);
    free(t);
}

int64_t sql_stmt_offset(const sql_stmt_t *s)
{
    return s->offset > 0 ? s->offset : 0;
}
