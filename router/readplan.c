/*
 * readplan — replica choice per shard for reads, with failover. See
 * readplan.h.
 */
#include "readplan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_buf.h"
#include "st_err.h"

/* Append shard s to the group of `node` among groups [from, ng). */
static int add(readplan_t *p, size_t from, uint32_t node, uint32_t s)
{
    size_t gi;
    for (gi = from; gi < p->ng; gi++)
        if (p->g[gi].node == node)
            break;
    if (gi == p->ng) {
        if (p->ng == p->cap && st_grow(&p->g, &p->cap, sizeof *p->g, 8))
            return ST_ENOMEM;
        p->g[gi].node = node;
        p->g[gi].n = 0;
        p->g[gi].shards = malloc(topo_shards(p->t) * sizeof *p->g[gi].shards);
        if (!p->g[gi].shards)
            return ST_ENOMEM;
        p->ng++;
    }
    p->g[gi].shards[p->g[gi].n++] = s;
    return 0;
}

/* Give shard s `count` more untried healthy replicas: those up() prefers
 * (READPLAN_PREFERRED) first, then the others that are up, each pass in
 * placement order. */
static int assign(readplan_t *p, size_t from, uint32_t s, uint32_t count, readplan_up_fn up,
                  void *arg)
{
    uint32_t rf = topo_replication_factor(p->t);
    const uint32_t *rep = topo_shard_replicas(p->t, s);
    for (int pass = READPLAN_PREFERRED; pass >= 1 && count; pass--) {
        for (uint32_t k = 0; k < rf && count; k++) {
            if (p->tried[s] & (1u << k) || up(arg, rep[k]) < pass)
                continue;
            p->tried[s] |= 1u << k;
            int rc = add(p, from, rep[k], s);
            if (rc)
                return rc;
            p->have[s]++;
            count--;
        }
    }
    if (count && !p->missing[s]) {
        p->missing[s] = 1;
        p->nmissing++;
    }
    return 0;
}

int readplan_init(readplan_t *p, const topo_t *t, uint32_t need, readplan_up_fn up, void *arg)
{
    memset(p, 0, sizeof *p);
    p->t = t;
    uint32_t rf = topo_replication_factor(t), ns = topo_shards(t);
    p->need = need < 1 ? 1 : need > rf ? rf : need;
    p->tried = calloc(ns, sizeof *p->tried);
    p->missing = calloc(ns, 1);
    p->have = calloc(ns, 1);
    if (!p->tried || !p->missing || !p->have)
        return ST_ENOMEM;
    for (uint32_t s = 0; s < ns; s++) {
        int rc = assign(p, 0, s, p->need, up, arg);
        if (rc)
            return rc;
    }
    return 0;
}

int readplan_failover(readplan_t *p, size_t gi, readplan_up_fn up, void *arg)
{
    if (gi >= p->ng)
        return ST_EINVAL;
    size_t from = p->ng; /* only new groups take the re-assigned shards */
    uint32_t n = p->g[gi].n;
    uint32_t *shards = malloc((n ? n : 1) * sizeof *shards);
    if (!shards)
        return ST_ENOMEM;
    memcpy(shards, p->g[gi].shards, n * sizeof *shards);
    for (uint32_t i = 0; i < n; i++)
        if (p->have[shards[i]])
            p->have[shards[i]]--;
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++)
        rc = assign(p, from, shards[i], 1, up, arg);
    free(shards);
    return rc;
}

enum { ALL_MISSING, UNSERVED, SHORT };

/* The missing shards of one kind as "3,7,11". */
static void shards_str(const readplan_t *p, int kind, char *buf, size_t cap)
{
    size_t off = 0;
    if (cap)
        buf[0] = '\0';
    for (uint32_t s = 0; s < topo_shards(p->t) && cap; s++) {
        if (!p->missing[s] || (kind == UNSERVED && p->have[s]) || (kind == SHORT && !p->have[s]))
            continue;
        if (off + 16 >= cap) {
            snprintf(buf + off, cap - off, "...");
            return;
        }
        off += (size_t)snprintf(buf + off, cap - off, "%s%u", off ? "," : "", s);
    }
}

void readplan_missing_str(const readplan_t *p, char *buf, size_t cap)
{
    shards_str(p, ALL_MISSING, buf, cap);
}

void readplan_unserved_str(const readplan_t *p, char *buf, size_t cap)
{
    shards_str(p, UNSERVED, buf, cap);
}

void readplan_short_str(const readplan_t *p, char *buf, size_t cap)
{
    shards_str(p, SHORT, buf, cap);
}

void readplan_free(readplan_t *p)
{
    for (size_t i = 0; i < p->ng; i++)
        free(p->g[i].shards);
    free(p->g);
    free(p->tried);
    free(p->missing);
    free(p->have);
    memset(p, 0, sizeof *p);
}
