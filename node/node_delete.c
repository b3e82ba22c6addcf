/*
 * node_delete — deletion on the node.
 *
 * A delete reaches a shard as WriteRequest.delete inside an ordinary
 * NodeWrite (RPC_WRITE): the coordinator stamps it with its version (the
 * hybrid logical clock, like every write) and forwards it, counts acks for
 * the consistency mode and hints the replicas that did not ack, exactly as
 * a write. Every replica applies it with that version (engine_delete_v):
 * it hides the samples written before it (lower versions) and never those
 * written after it, in whatever order the delete, late hints and repair
 * reach the replica. Each delete carries the router's delete_id; the
 * engine ignores a second delivery of the same id (hint replays are
 * at-least-once).
 *
 * RPC_DELETE answers what does not change data: a dry run (series and
 * samples that would go) and a purge (compact now). RPC_TOMBS hands a
 * shard's versioned tombstones to a repairing peer (paged, skipped when
 * both sides hold the same ones: count and hash), which applies those it
 * lacks as it would the delete itself. All run on the thread pool like
 * every engine call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "st_err.h"
#include "strata.pb-c.h"

static int apply(node_t *n, engine_t *e, const Strata__DeleteRequest *d, uint64_t version, int dry,
                 engine_delete_result_t *r, char *msg, size_t msglen)
{
    matchers_t m;
    int rc = node_matchers_from(d->matchers, d->n_matchers, &m, msg, msglen);
    if (!rc && m.n == 0) {
        snprintf(msg, msglen, "a delete needs at least one matcher");
        rc = ST_EINVAL;
    }
    if (!rc) {
        rc = engine_delete_v(e, m.m, m.n, d->start_ms, d->end_ms, d->delete_id, version, dry, r);
        if (rc)
            snprintf(msg, msglen, "%s", engine_last_error());
    }
    free(m.arena);
    (void)n;
    return rc;
}

int node_delete_shard(node_t *n, uint32_t shard, const uint8_t *p, size_t len, uint64_t version,
                      uint64_t *samples, char *msg, size_t msglen)
{
    *samples = 0;
    Strata__DeleteRequest *d = strata__delete_request__unpack(NULL, len, p);
    if (!d) {
        snprintf(msg, msglen, "malformed DeleteRequest");
        return ST_EPROTO;
    }
    engine_delete_result_t r;
    int rc = apply(n, n->engines[shard], d, version, 0, &r, msg, msglen);
    strata__delete_request__free_unpacked(d, NULL);
    if (!rc)
        *samples = r.samples;
    return rc;
}

int node_delete_rpc(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
                    size_t msglen)
{
    Strata__DeleteRequest *d = strata__delete_request__unpack(NULL, len, payload);
    if (!d) {
        snprintf(msg, msglen, "malformed DeleteRequest");
        return ST_EPROTO;
    }
    Strata__DeleteResponse resp = STRATA__DELETE_RESPONSE__INIT;
    int rc = 0;
    uint32_t ns = (uint32_t)topo_shards(n->topo);
    size_t count = d->n_shards ? d->n_shards : ns;
    for (size_t i = 0; i < count && !rc; i++) {
        uint32_t s = d->n_shards ? d->shards[i] : (uint32_t)i;
        if (s >= ns || !n->engines[s]) {
            if (!d->n_shards)
                continue;
            snprintf(msg, msglen, "shard %u is not placed on node %s", s,
                     topo_node_id(n->topo, n->self));
            rc = ST_EINVAL;
            break;
        }
        engine_t *e = n->engines[s];
        if (d->purge) {
            uint64_t bytes = 0;
            if ((rc = engine_purge(e, &bytes)) != 0)
                snprintf(msg, msglen, "shard %u: purge: %s", s, engine_last_error());
            resp.bytes_reclaimed += bytes;
        } else {
            engine_delete_result_t r;
            rc = apply(n, e, d, 0, 1, &r, msg, msglen);
            resp.series += r.series;
            resp.samples += r.samples;
        }
        if (!rc) {
            engine_stats_t st;
            engine_get_stats(e, &st);
            resp.tombstones_pending += st.tombstones_pending;
            if (st.purge_eta_ms > resp.purge_eta_ms)
                resp.purge_eta_ms = st.purge_eta_ms;
        }
    }
    strata__delete_request__free_unpacked(d, NULL);
    if (rc)
        return rc;
    size_t sz = strata__delete_response__get_packed_size(&resp);
    if (st_buf_reserve(out, sz))
        return ST_ENOMEM;
    out->len += strata__delete_response__pack(&resp, out->data + out->len);
    return 0;
}

/* ---- tombstones in repair ---- */

#define TOMBS_PAGE_BYTES (1u << 20) /* default and most a TOMBS page holds */

/* engine_tomb_list callback: one tombstone into the page (arrays grown as
 * needed; the strings are the engine's, valid until close). */
typedef struct tombs_page {
    Strata__TombsResponse resp;
    Strata__Tombstone *tb;
    Strata__DeleteRequest *del;
    Strata__Matcher *mt;
    Strata__Matcher **mtp;
    Strata__Tombstone **tbp;
    size_t cap, nm, mcap;
    size_t bytes, max_bytes;
} tombs_page_t;

static int page_add(void *arg, const engine_tomb_info_t *t)
{
    tombs_page_t *pg = arg;
    size_t sz = 32;
    for (size_t i = 0; i < t->nm; i++)
        sz += strlen(t->m[i].name) + strlen(t->m[i].value) + 8;
    if (pg->resp.n_tombs && pg->bytes + sz > pg->max_bytes)
        return 1; /* page full: the next one starts here */
    /* grow: pointers into the arrays are set when the page is packed */
    if (pg->resp.n_tombs == pg->cap) {
        size_t cap = pg->cap ? pg->cap * 2 : 16;
        Strata__Tombstone *tb = realloc(pg->tb, cap * sizeof *tb);
        if (!tb)
            return ST_ENOMEM;
        pg->tb = tb;
        Strata__DeleteRequest *del = realloc(pg->del, cap * sizeof *del);
        if (!del)
            return ST_ENOMEM;
        pg->del = del;
        pg->cap = cap;
    }
    if (pg->nm + t->nm > pg->mcap) {
        size_t cap = pg->mcap ? pg->mcap * 2 : 64;
        while (cap < pg->nm + t->nm)
            cap *= 2;
        Strata__Matcher *mt = realloc(pg->mt, cap * sizeof *mt);
        if (!mt)
            return ST_ENOMEM;
        pg->mt = mt;
        pg->mcap = cap;
    }
    size_t k = pg->resp.n_tombs++;
    Strata__DeleteRequest *d = &pg->del[k];
    strata__delete_request__init(d);
    d->start_ms = t->start;
    d->end_ms = t->end;
    d->delete_id = t->id;
    d->n_matchers = t->nm;
    d->matchers = (Strata__Matcher **)(uintptr_t)pg->nm; /* an offset until packed */
    for (size_t i = 0; i < t->nm; i++) {
        Strata__Matcher *m = &pg->mt[pg->nm++];
        strata__matcher__init(m);
        m->type = (Strata__Matcher__Type)t->m[i].type;
        m->name.data = (uint8_t *)(uintptr_t)t->m[i].name;
        m->name.len = strlen(t->m[i].name);
        m->value.data = (uint8_t *)(uintptr_t)t->m[i].value;
        m->value.len = strlen(t->m[i].value);
    }
    Strata__Tombstone *tb = &pg->tb[k];
    strata__tombstone__init(tb);
    tb->version = t->version;
    pg->bytes += sz;
    return 0;
}

int node_delete_tombs_rpc(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
                          size_t msglen)
{
    Strata__TombsRequest *q = strata__tombs_request__unpack(NULL, len, payload);
    if (!q) {
        snprintf(msg, msglen, "malformed TombsRequest");
        return ST_EPROTO;
    }
    if (q->shard >= (uint32_t)topo_shards(n->topo) || !n->engines[q->shard]) {
        snprintf(msg, msglen, "shard %u is not placed on node %s", q->shard,
                 topo_node_id(n->topo, n->self));
        strata__tombs_request__free_unpacked(q, NULL);
        return ST_EINVAL;
    }
    engine_t *e = n->engines[q->shard];
    tombs_page_t pg = {0};
    strata__tombs_response__init(&pg.resp);
    pg.max_bytes =
        q->max_bytes && q->max_bytes < TOMBS_PAGE_BYTES ? q->max_bytes : TOMBS_PAGE_BYTES;
    uint64_t count, hash;
    engine_tomb_summary(e, &count, &hash);
    int rc = 0;
    if (count == q->count && hash == q->hash) {
        pg.resp.same = 1;
        pg.resp.done = 1;
    } else {
        size_t next = 0;
        size_t from = q->cursor > SIZE_MAX ? SIZE_MAX : (size_t)q->cursor;
        rc = engine_tomb_list(e, from, page_add, &pg, &next);
        pg.resp.done = rc == 0;
        pg.resp.next_cursor = next;
        if (rc == 1)
            rc = 0;
    }
    strata__tombs_request__free_unpacked(q, NULL);
    size_t nt = pg.resp.n_tombs;
    if (!rc && nt &&
        (!(pg.tbp = malloc(nt * sizeof *pg.tbp)) ||
         !(pg.mtp = malloc((pg.nm ? pg.nm : 1) * sizeof *pg.mtp))))
        rc = ST_ENOMEM;
    if (!rc) {
        for (size_t i = 0; i < pg.nm; i++)
            pg.mtp[i] = &pg.mt[i];
        for (size_t i = 0; i < nt; i++) {
            pg.del[i].matchers = pg.mtp + (uintptr_t)pg.del[i].matchers;
            pg.tb[i].delete_ = &pg.del[i];
            pg.tbp[i] = &pg.tb[i];
        }
        pg.resp.tombs = pg.tbp;
        size_t sz = strata__tombs_response__get_packed_size(&pg.resp);
        if (st_buf_reserve(out, sz))
            rc = ST_ENOMEM;
        else
            out->len += strata__tombs_response__pack(&pg.resp, out->data + out->len);
    }
    if (rc == ST_ENOMEM)
        snprintf(msg, msglen, "out of memory");
    free(pg.tb);
    free(pg.del);
    free(pg.mt);
    free(pg.mtp);
    free(pg.tbp);
    return rc;
}

int node_delete_tombs_apply(node_t *n, uint32_t shard, const uint8_t *page, size_t len, int dry_run,
                            uint64_t *applied, uint64_t *next_cursor, int *done, int *same,
                            char *msg, size_t msglen)
{
    *applied = 0;
    Strata__TombsResponse *r = strata__tombs_response__unpack(NULL, len, page);
    if (!r) {
        snprintf(msg, msglen, "malformed TombsResponse");
        return ST_EPROTO;
    }
    *next_cursor = r->next_cursor;
    *done = r->done;
    *same = r->same;
    int rc = 0;
    engine_t *e = n->engines[shard];
    for (size_t i = 0; i < r->n_tombs && !rc; i++) {
        const Strata__Tombstone *t = r->tombs[i];
        if (!t->delete_ || !t->version || !t->delete_->delete_id)
            continue; /* only versioned deletes with an id travel */
        engine_delete_result_t res;
        rc = apply(n, e, t->delete_, t->version, dry_run, &res, msg, msglen);
        if (!rc && !res.duplicate)
            (*applied)++;
    }
    strata__tombs_response__free_unpacked(r, NULL);
    return rc;
}
