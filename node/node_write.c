/*
 * node_write — a shard's batch into its engine (see node_write.h).
 *
 * A WriteRequest is decoded zero-copy (wire.h): the timestamps and values
 * of all its series go into scratch arrays (reused across the entries of
 * one NodeWrite), and each series' label fields, as bytes, are its key:
 * the engine gives back the ids of the keys it knows (engine_keys_resolve)
 * and only the other series' labels are decoded. A series with a
 * reference (a router's or a coordinator's, docs/protocol.md) is resolved
 * by it first (engine_keys_resolve_refs: its key and id); one that came
 * as its reference alone and is not known refuses the entry (ST_ENOREF,
 * before anything is written). The shard's batch is then one
 * engine_write_keyed with the WriteRequest's version (set by the
 * coordinator; 0: none), all entries of the NodeWrite sharing one engine_write_result_t (so that
 * max_new_series_per_write applies to the RPC). What the engine refused
 * comes back per entry: ST_EBUSY (head over head_max_mb; nothing written)
 * as the entry's code with a Retry-After, a cardinality refusal (the rest
 * written) as code 0 with the refused samples and the limit named.
 */
#include "node_write.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl.h"
#include "st_err.h"
#include "st_log.h"
#include "st_time.h"
#include "strata.pb-c.h"
#include "wire.h"

#define NODE_WRITE_LOG_EVERY_MS 1000 /* at most one "shard write failed" line per second */

typedef struct write_scratch {
    engine_series_batch_t *b;
    engine_series_key_t *k, *rk;
    const uint8_t **refs; /* references of the series that came with one */
    size_t *ri;           /* ... and their places in b */
    uint32_t *ids;
    st_label_t *labels;
    int64_t *ts;
    double *v;
    size_t bcap, kcap, lcap, scap, rcap, rkcap;
} write_scratch_t;

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap && p)
        return p;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *np = realloc(p, c * elem);
    if (!np)
        return NULL;
    *cap = c;
    return np;
}

#define NO_LABELS UINTPTR_MAX /* an entry's labels offset until they are decoded */

/*
 * The series of one shard write: the labels of a series whose label fields
 * lie together are its key (wire_series_scan), decoded only if the engine
 * does not know the key yet (engine_keys_resolve); the others are decoded
 * as they come.
 */
static int write_shard(node_t *n, const uint8_t *p, size_t len, write_scratch_t *ws,
                       engine_write_result_t *wr, node_shard_result_t *res)
{
    size_t nr = 0; /* series by reference alone */
    const uint8_t *end = p + len, *q = p;
    wire_field_t f;
    int rc;
    uint32_t shard = UINT32_MAX;
    size_t bi = 0, li = 0, si = 0;
    const uint8_t *del = NULL; /* WriteRequest.delete (node_delete.c) */
    size_t del_len = 0;
    uint64_t version = 0; /* WriteRequest.version: the coordinator's (engine.h, VERSIONS) */
    /* one pass: arrays may move while growing, so entries hold offsets
     * (in the pointer fields) until the pass is over */
    while ((rc = wire_next(&q, end, &f)) == 1) {
        if (f.num == WIRE_WRITE_REQUEST_SHARD && f.type == WIRE_VARINT) {
            shard = (uint32_t)f.u;
            continue;
        }
        if (f.num == WIRE_WRITE_REQUEST_VERSION && f.type == WIRE_VARINT) {
            version = f.u;
            continue;
        }
        if (f.num == WIRE_WRITE_REQUEST_DELETE && f.type == WIRE_LEN) {
            del = f.data;
            del_len = f.len;
            continue;
        }
        if (!(f.num == WIRE_WRITE_REQUEST_SERIES && f.type == WIRE_LEN))
            continue;
        wire_series_t s;
        if ((rc = wire_series_scan(f.data, f.len, &s)) < 0)
            break;
        if (s.lab_split && (rc = wire_series_decode(f.data, f.len, &s)) < 0)
            break;
        size_t c0 = ws->scap, c1 = ws->kcap;
        if (!(ws->b = grow(ws->b, &ws->bcap, bi + 1, sizeof *ws->b)) ||
            !(ws->k = grow(ws->k, &c1, bi + 1, sizeof *ws->k)) ||
            !(ws->ids = grow(ws->ids, &ws->kcap, bi + 1, sizeof *ws->ids)) ||
            !(ws->labels = grow(ws->labels, &ws->lcap, li + s.nlabels, sizeof *ws->labels)) ||
            !(ws->ts = grow(ws->ts, &c0, si + s.nvals, sizeof *ws->ts)) ||
            !(ws->v = grow(ws->v, &ws->scap, si + s.nvals, sizeof *ws->v)))
            return ST_ENOMEM;
        size_t got;
        if ((rc = wire_series_samples(&s, ws->ts + si, ws->v + si, s.nvals, &got)) < 0)
            break;
        if (s.nlabels)
            memcpy(ws->labels + li, s.labels, s.nlabels * sizeof *s.labels);
        const uint8_t *ref = s.ref;
        int by_ref = ref && !s.lab && !s.nlabels;
        if (ref) { /* resolved by it first, labels or not */
            size_t c2 = ws->rcap;
            if (!(ws->refs = grow(ws->refs, &c2, nr + 1, sizeof *ws->refs)) ||
                !(ws->ri = grow(ws->ri, &ws->rcap, nr + 1, sizeof *ws->ri)))
                return ST_ENOMEM;
            ws->refs[nr] = ref;
            ws->ri[nr++] = bi;
        }
        ws->b[bi] = (engine_series_batch_t){(const st_label_t *)(s.lab || by_ref ? NO_LABELS : li),
                                            s.nlabels, (const int64_t *)(uintptr_t)si,
                                            (const double *)(uintptr_t)si, got};
        /* with labels, a reference not known yet is learnt (below) */
        ws->k[bi] = (engine_series_key_t){s.lab, (uint32_t)s.lab_len, 0, by_ref ? NULL : ref};
        li += s.nlabels;
        si += got;
        bi++;
    }
    res->shard = shard;
    if (rc < 0) {
        snprintf(res->msg, sizeof res->msg, "malformed ShardWrite: %s", st_strerror(rc));
        return rc;
    }
    if (shard >= (uint32_t)topo_shards(n->topo) || !n->engines[shard]) {
        snprintf(res->msg, sizeof res->msg, "shard %u is not placed on node %s", shard,
                 topo_node_id(n->topo, n->self));
        return ST_EINVAL;
    }
    if (version) /* versions this node issues later exceed it (deletes too) */
        st_hlc_observe(&n->hlc, version);
    if (del) { /* a delete, in its place among the shard's writes, with its version */
        uint64_t gone = 0;
        rc = node_delete_shard(n, shard, del, del_len, version, &gone, res->msg, sizeof res->msg);
        if (!rc)
            metric_counter_inc(n->deletes_served);
        res->samples = gone;
        return rc;
    }
    engine_t *e = n->engines[shard];
    if (nr) { /* the series with a reference: their keys and ids, or a refusal */
        if (!(ws->rk = grow(ws->rk, &ws->rkcap, nr, sizeof *ws->rk)))
            return ST_ENOMEM;
        engine_keys_resolve_refs(e, ws->refs, nr, ws->rk);
        size_t unknown = 0, alone = 0;
        for (size_t j = 0; j < nr; j++) {
            engine_series_key_t *k = &ws->k[ws->ri[j]];
            int labels = k->key || (uintptr_t)ws->b[ws->ri[j]].labels != NO_LABELS;
            alone += !labels;
            if (ws->rk[j].id1)
                k->key = NULL; /* known: not looked up by key below */
            else if (!labels)
                unknown++;
        }
        if (unknown) {
            snprintf(res->msg, sizeof res->msg,
                     "%zu of %zu series references unknown on node %s; send their labels", unknown,
                     alone, topo_node_id(n->topo, n->self));
            return ST_ENOREF;
        }
    }
    if (bi)
        engine_keys_resolve(e, ws->k, bi, ws->ids);
    for (size_t j = 0; j < nr; j++) {
        if (!ws->rk[j].id1)
            continue; /* came with labels: by key or labels, its reference learnt */
        ws->k[ws->ri[j]] = ws->rk[j];
        ws->ids[ws->ri[j]] = ws->rk[j].id1 - 1;
    }
    for (size_t i = 0; i < bi; i++) {
        if ((uintptr_t)ws->b[i].labels != NO_LABELS)
            continue;
        if (ws->ids[i] != UINT32_MAX) { /* a known key: its id, no labels */
            ws->k[i].id1 = ws->ids[i] + 1;
            continue;
        }
        size_t nl;
        if (!(ws->labels = grow(ws->labels, &ws->lcap, li + ST_LABELS_MAX, sizeof *ws->labels)))
            return ST_ENOMEM;
        if ((rc = wire_labels_decode(ws->k[i].key, ws->k[i].len, ws->labels + li, ST_LABELS_MAX,
                                     &nl)) < 0) {
            snprintf(res->msg, sizeof res->msg, "malformed ShardWrite: %s", st_strerror(rc));
            return rc;
        }
        ws->b[i].labels = (const st_label_t *)(uintptr_t)li;
        ws->b[i].nlabels = nl;
        li += nl;
    }
    for (size_t i = 0; i < bi; i++) {
        ws->b[i].labels = ws->k[i].id1 ? NULL : ws->labels + (uintptr_t)ws->b[i].labels;
        ws->b[i].ts = ws->ts + (uintptr_t)ws->b[i].ts;
        ws->b[i].values = ws->v + (uintptr_t)ws->b[i].values;
    }
    uint64_t written0 = wr->written, refused0 = wr->samples_refused, sref0 = wr->series_refused;
    rc = engine_write_keyed(e, ws->b, ws->k, bi, version, wr);
    uint64_t written = wr->written - written0;
    res->samples = written;
    metric_counter_add(n->samples_written, written);
    const char *id = topo_node_id(n->topo, n->self);
    if (rc == ST_EBUSY) {
        res->retry_after_s = wr->retry_after_s ? wr->retry_after_s : 1;
        snprintf(res->msg, sizeof res->msg, "node %s busy: %s", id,
                 wr->reason[0] ? wr->reason : "head over head_max_mb; retry later");
        return rc;
    }
    if (rc == ST_ELIMIT || wr->samples_refused > refused0) {
        res->refused_samples = wr->samples_refused - refused0;
        snprintf(res->limit, sizeof res->limit, "%s", wr->limit ? wr->limit : "limit");
        res->limit_value = wr->limit_value;
        snprintf(res->msg, sizeof res->msg, "node %s: %s", id,
                 wr->reason[0] ? wr->reason : "a cardinality limit refused new series");
        node_count_series_refused(n, res->limit, wr->series_refused - sref0);
        return 0;
    }
    if (rc) {
        snprintf(res->msg, sizeof res->msg, "shard %u: %s%s%s", shard, st_strerror(rc),
                 engine_last_error()[0] ? ": " : "", engine_last_error());
        return rc;
    }
    return 0;
}

/* A failed shard write is logged (a full disk fails every write: at most
 * one line per NODE_WRITE_LOG_EVERY_MS, with the count of the others). */
static void log_failure(const node_shard_result_t *res)
{
    static atomic_llong last_ms;
    static atomic_ullong quiet;
    int64_t now = st_now_ms(), last = atomic_load(&last_ms);
    if (now - last < NODE_WRITE_LOG_EVERY_MS ||
        !atomic_compare_exchange_strong(&last_ms, &last, now)) {
        atomic_fetch_add(&quiet, 1);
        return;
    }
    st_warn("shard write failed", "shard=%u err=%s detail=\"%s\" similar_since_last=%llu",
            res->shard, st_errname(res->code), res->msg,
            (unsigned long long)atomic_exchange(&quiet, 0));
}

int node_write_local(node_t *n, const repl_entry_t *e, size_t ne, node_shard_result_t *res)
{
    write_scratch_t ws = {0};
    engine_write_result_t wr;
    engine_write_result_init(&wr);
    int rc = 0;
    for (size_t i = 0; i < ne && !rc; i++) {
        memset(&res[i], 0, sizeof res[i]);
        res[i].code = write_shard(n, e[i].msg, e[i].msg_len, &ws, &wr, &res[i]);
        if (res[i].code == ST_ENOMEM)
            rc = ST_ENOMEM;
        else if (res[i].code && res[i].code != ST_ENOREF) /* ENOREF: sent again with labels */
            metric_counter_inc(n->write_rejected);
        if (res[i].code && res[i].code != ST_EBUSY && res[i].code != ST_ENOREF)
            log_failure(&res[i]);
    }
    free(ws.b);
    free(ws.k);
    free(ws.rk);
    free(ws.refs);
    free(ws.ri);
    free(ws.ids);
    free(ws.labels);
    free(ws.ts);
    free(ws.v);
    return rc;
}

/* 1 when the SeriesSamples [p, p + len) comes as its reference alone (s
 * scanned: its samples). */
static int series_by_ref(const uint8_t *p, size_t len, wire_series_t *s)
{
    return wire_series_scan(p, len, s) == 0 && s->ref && !s->lab && !s->lab_split;
}

int node_write_expand(node_t *n, uint32_t shard, const uint8_t *msg, size_t len, st_buf_t *out)
{
    engine_t *e = shard < topo_shards(n->topo) ? n->engines[shard] : NULL;
    const uint8_t *q = msg, *end = msg + len;
    wire_field_t f;
    wire_series_t s;
    size_t nr = 0, cap = 0;
    const uint8_t **refs = NULL;
    engine_series_key_t *keys = NULL;
    int rc = 0;
    while (wire_next(&q, end, &f) == 1) { /* the references alone */
        if (f.num != WIRE_WRITE_REQUEST_SERIES || f.type != WIRE_LEN ||
            !series_by_ref(f.data, f.len, &s))
            continue;
        if (nr == cap) {
            size_t c = cap ? 2 * cap : 256;
            const uint8_t **r2 = realloc(refs, c * sizeof *r2);
            if (r2)
                refs = r2;
            engine_series_key_t *k2 = r2 ? realloc(keys, c * sizeof *k2) : NULL;
            if (!k2) {
                rc = ST_ENOMEM;
                break;
            }
            keys = k2;
            cap = c;
        }
        refs[nr++] = s.ref;
    }
    if (!rc && nr && (!e || engine_keys_resolve_refs(e, refs, nr, keys) < nr))
        rc = ST_ENOREF;
    if (!rc && !nr && st_buf_append(out, msg, len))
        rc = ST_ENOMEM;
    size_t k = 0, len0 = out->len;
    for (q = msg; !rc && nr;) {
        const uint8_t *start = q;
        if (wire_next(&q, end, &f) != 1)
            break;
        if (!(f.num == WIRE_WRITE_REQUEST_SERIES && f.type == WIRE_LEN &&
              series_by_ref(f.data, f.len, &s))) {
            rc = st_buf_append(out, start, (size_t)(q - start)) ? ST_ENOMEM : 0;
            continue;
        }
        /* the labels the engine kept, the reference, then the samples */
        const engine_series_key_t *key = &keys[k++];
        size_t sm;
        rc = wire_begin(out, WIRE_WRITE_REQUEST_SERIES, &sm);
        rc |= st_buf_append(out, key->key, key->len);
        rc |= wire_put_bytes_field(out, WIRE_SERIES_SAMPLES_REF, s.ref, WIRE_REF_LEN);
        if (s.ts)
            rc |= wire_put_bytes_field(out, WIRE_SERIES_SAMPLES_TIMESTAMPS, s.ts, s.ts_len);
        if (s.vals)
            rc |= wire_put_bytes_field(out, WIRE_SERIES_SAMPLES_VALUES, s.vals, s.nvals * 8);
        if (s.vers)
            rc |= wire_put_bytes_field(out, WIRE_SERIES_SAMPLES_VERSIONS, s.vers, s.vers_len);
        if (rc)
            rc = ST_ENOMEM;
        else
            wire_end(out, sm);
    }
    if (rc)
        out->len = len0;
    free(refs);
    free(keys);
    return rc;
}

int node_write_metrics(node_t *n)
{
    for (size_t i = 0; i < REPL_NLIMITS; i++)
        if (!(n->series_refused[i] = metrics_counter(
                  n->metrics, "strata_node_series_refused_total",
                  "New series refused by a cardinality limit (their samples were not stored).",
                  "limit", repl_limit_name(i), NULL)))
            return ST_ENOMEM;
    return 0;
}

void node_count_series_refused(node_t *n, const char *limit, uint64_t series)
{
    metric_counter_add(n->series_refused[repl_limit_index(limit)], series);
}

int node_pack_write_result(const node_shard_result_t *res, size_t n, st_buf_t *out)
{
    Strata__ShardResult *sr = calloc(n ? n : 1, sizeof *sr);
    Strata__ShardResult **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    int rc = 0;
    if (!sr || !ptrs) {
        rc = ST_ENOMEM;
    } else {
        for (size_t i = 0; i < n; i++) {
            strata__shard_result__init(&sr[i]);
            sr[i].shard = res[i].shard;
            sr[i].code = res[i].code;
            sr[i].samples = res[i].samples;
            sr[i].error = (char *)res[i].msg;
            sr[i].refused_samples = res[i].refused_samples;
            sr[i].refused_limit = (char *)res[i].limit;
            sr[i].refused_limit_value = res[i].limit_value;
            sr[i].refused_reason = res[i].refused_samples ? (char *)res[i].msg : (char *)"";
            sr[i].retry_after_s = res[i].retry_after_s;
            sr[i].coordinator_missed = res[i].coordinator_missed != 0;
            ptrs[i] = &sr[i];
        }
        Strata__NodeWriteResult o = STRATA__NODE_WRITE_RESULT__INIT;
        o.n_results = n;
        o.results = ptrs;
        size_t sz = strata__node_write_result__get_packed_size(&o);
        if (st_buf_reserve(out, sz))
            rc = ST_ENOMEM;
        else
            out->len = strata__node_write_result__pack(&o, out->data);
    }
    free(sr);
    free(ptrs);
    return rc;
}
