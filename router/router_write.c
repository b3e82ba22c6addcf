/*
 * router_write — POST /write and /api/v2/write.
 *
 *   loop:    decode the body (gzip), check params, queue a job
 *   worker:  parse line protocol (lp.h, series mode); group samples by
 *            series (one columnar SeriesSamples per series per request);
 *            shard each series; encode one NodeWrite per node (wire.h)
 *   loop:    each shard goes to its first replica that is up (the
 *            coordinator, which replicates it: node_repl.h), one RPC_WRITE
 *            per node, in parallel; a shard whose coordinator cannot be
 *            reached (down, timed out, connection lost) moves on to its next
 *            replica; when every shard is decided: 204, 400 (per-line
 *            errors; the valid lines were written) or 503 (the shards that
 *            missed their consistency, and why)
 *
 * Retrying a body is safe: the same (series, timestamp) rewrites the same
 * sample (last write wins).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_util.h"
#include "lp.h"
#include "repl.h"
#include "router.h"
#include "st_err.h"
#include "st_text.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "wire.h"

typedef struct entry {
    uint64_t hash; /* st_series_hash */
    size_t label_off;
    uint32_t nlabels;
    uint32_t shard;
    uint32_t count;
    uint32_t first;      /* offset of its samples after grouping */
    uint32_t tagset;     /* index into tagsets */
    uint32_t name_label; /* index of __name__ within its labels */
} entry_t;

/* The tags of a line-protocol point: shared by the series of its fields. */
typedef struct tagset {
    uint64_t hash; /* st_labels_hash_noname */
    size_t label_off;
    uint32_t ntags;
} tagset_t;

enum { SH_NONE, SH_PENDING, SH_SENT, SH_OK, SH_FAILED };

/* A shard's batch and its delivery: tried holds the replica ranks already
 * asked (each at most once per request). */
typedef struct shard {
    size_t off, len; /* its entry in wjob.all */
    uint8_t state;
    uint32_t tried;
    uint32_t node; /* last node asked */
    char *why;     /* failures so far, "n1: reason; n2: reason" */
} shard_t;

typedef struct rejected {
    uint64_t line;
    char reason[200];
} rejected_t;

typedef struct wjob {
    uv_work_t w;
    router_t *r;
    http_req_t *req;
    lp_precision_t prec;
    int64_t now_ms;
    /* grouping */
    entry_t *e;
    size_t ne, ecap;
    uint32_t *table;
    size_t tcap;
    tagset_t *ts;
    size_t nts, tscap;
    uint32_t *tstable;
    size_t tstcap;
    st_label_t *labels;
    size_t nl, lcap;
    char *str;
    size_t sl, scap;
    uint32_t *s_entry;
    int64_t *s_ts;
    double *s_v;
    size_t ns, s_cap;
    int oom;
    /* results of parsing */
    uint64_t lines_ok, lines_bad;
    rejected_t rej[ROUTER_MAX_REJECTED];
    size_t nrej;
    /* encoded shard batches: NodeWrite field-1 entries back to back */
    st_buf_t all;
    shard_t *sh;      /* [shards] */
    uint32_t *active; /* shards with data */
    uint32_t nactive;
    int consistency; /* NodeWrite field 2 (0 = cluster default) */
    /* RPC phase */
    int pending;
    int failed_shards;
    st_buf_t fail; /* JSON fragments of failed shards */
    int parse_err;
} wjob_t;

static void *grow(void *p, size_t *cap, size_t need, size_t elem, int *oom)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *np = realloc(p, c * elem);
    if (!np) {
        *oom = 1;
        return p;
    }
    *cap = c;
    return np;
}

static int slice_eq(const wjob_t *j, const st_label_t *stored, const st_label_t *y)
{
    return stored->name_len == y->name_len && stored->value_len == y->value_len &&
           memcmp(j->str + (uintptr_t)stored->name, y->name, y->name_len) == 0 &&
           memcmp(j->str + (uintptr_t)stored->value, y->value, y->value_len) == 0;
}

/* Copy labels into the job's arena (as offsets: str may move until encoding). */
static long copy_labels(wjob_t *j, const st_label_t *l, size_t n)
{
    size_t bytes = 0;
    for (size_t k = 0; k < n; k++)
        bytes += l[k].name_len + l[k].value_len;
    j->labels = grow(j->labels, &j->lcap, j->nl + n, sizeof *j->labels, &j->oom);
    j->str = grow(j->str, &j->scap, j->sl + bytes, 1, &j->oom);
    if (j->oom)
        return ST_ENOMEM;
    size_t off = j->nl;
    for (size_t k = 0; k < n; k++) {
        st_label_t *d = &j->labels[j->nl + k];
        memcpy(j->str + j->sl, l[k].name, l[k].name_len);
        d->name = (const char *)(uintptr_t)j->sl;
        d->name_len = l[k].name_len;
        j->sl += l[k].name_len;
        memcpy(j->str + j->sl, l[k].value, l[k].value_len);
        d->value = (const char *)(uintptr_t)j->sl;
        d->value_len = l[k].value_len;
        j->sl += l[k].value_len;
    }
    j->nl += n;
    return (long)off;
}

/* Open-addressing tables of uint32 (index + 1, 0 = empty) keyed by a hash. */
static int table_grow(uint32_t **tab, size_t *cap, size_t n, const void *items, size_t stride)
{
    size_t c = *cap ? *cap * 2 : 4096;
    uint32_t *t = calloc(c, sizeof *t);
    if (!t)
        return ST_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = *(const uint64_t *)((const char *)items + i * stride);
        size_t k = h & (c - 1);
        while (t[k])
            k = (k + 1) & (c - 1);
        t[k] = (uint32_t)i + 1;
    }
    free(*tab);
    *tab = t;
    *cap = c;
    return 0;
}

static long tagset_of(wjob_t *j, const lp_point_t *pt, uint64_t hash)
{
    if ((j->nts + 1) * 2 > j->tstcap &&
        table_grow(&j->tstable, &j->tstcap, j->nts, j->ts, sizeof *j->ts))
        return ST_ENOMEM;
    size_t h = hash & (j->tstcap - 1);
    while (j->tstable[h]) {
        tagset_t *t = &j->ts[j->tstable[h] - 1];
        if (t->hash == hash && t->ntags == pt->ntags) {
            uint32_t k = 0;
            while (k < pt->ntags && slice_eq(j, &j->labels[t->label_off + k], &pt->tags[k]))
                k++;
            if (k == pt->ntags)
                return j->tstable[h] - 1;
        }
        h = (h + 1) & (j->tstcap - 1);
    }
    j->ts = grow(j->ts, &j->tscap, j->nts + 1, sizeof *j->ts, &j->oom);
    if (j->oom)
        return ST_ENOMEM;
    long off = copy_labels(j, pt->tags, pt->ntags);
    if (off < 0)
        return off;
    j->ts[j->nts] = (tagset_t){hash, (size_t)off, pt->ntags};
    j->tstable[h] = (uint32_t)++j->nts;
    return (long)(j->nts - 1);
}

static uint32_t name_index(const lp_series_t *ls)
{
    for (uint32_t k = 0; k < ls->nlabels; k++)
        if (ls->labels[k].name_len == 8 && memcmp(ls->labels[k].name, ST_METRIC_LABEL, 8) == 0)
            return k;
    return 0; /* the parser always adds __name__ */
}

static long entry_of(wjob_t *j, uint32_t tagset, uint64_t tags_hash, const lp_series_t *ls)
{
    if ((j->ne + 1) * 2 > j->tcap && table_grow(&j->table, &j->tcap, j->ne, j->e, sizeof *j->e))
        return ST_ENOMEM;
    uint32_t ni = name_index(ls);
    const st_label_t *name = &ls->labels[ni];
    uint64_t hash = st_series_hash_from(tags_hash, name->value, name->value_len);
    size_t h = hash & (j->tcap - 1);
    while (j->table[h]) {
        entry_t *en = &j->e[j->table[h] - 1];
        if (en->hash == hash && en->tagset == tagset &&
            slice_eq(j, &j->labels[en->label_off + en->name_label], name))
            return j->table[h] - 1;
        h = (h + 1) & (j->tcap - 1);
    }
    j->e = grow(j->e, &j->ecap, j->ne + 1, sizeof *j->e, &j->oom);
    if (j->oom)
        return ST_ENOMEM;
    long off = copy_labels(j, ls->labels, ls->nlabels);
    if (off < 0)
        return off;
    entry_t *en = &j->e[j->ne];
    en->hash = hash;
    en->label_off = (size_t)off;
    en->nlabels = ls->nlabels;
    en->count = 0;
    en->tagset = tagset;
    en->name_label = ni;
    const topo_t *t = j->r->topo;
    en->shard = topo_sharding(t) == TOPO_SHARDING_SERIES
                    ? (uint32_t)(hash % topo_shards(t))
                    : topo_shard_of_metric(t, name->value, name->value_len);
    j->table[h] = (uint32_t)++j->ne;
    return (long)(j->ne - 1);
}

static int on_point(void *arg, const lp_point_t *pt)
{
    wjob_t *j = arg;
    if (pt->nseries == 0) {
        j->lines_ok++;
        return 0;
    }
    uint64_t tags_hash = st_labels_hash_noname(pt->tags, pt->ntags);
    long tsi = tagset_of(j, pt, tags_hash);
    if (tsi < 0)
        return (int)tsi;
    for (uint32_t i = 0; i < pt->nseries; i++) {
        long ei = entry_of(j, (uint32_t)tsi, tags_hash, &pt->series[i]);
        if (ei < 0)
            return (int)ei;
        size_t c0 = j->s_cap;
        j->s_entry = grow(j->s_entry, &j->s_cap, j->ns + 1, sizeof *j->s_entry, &j->oom);
        if (j->s_cap != c0) {
            size_t c1 = c0;
            j->s_ts = grow(j->s_ts, &c1, j->s_cap, sizeof *j->s_ts, &j->oom);
            c1 = c0;
            j->s_v = grow(j->s_v, &c1, j->s_cap, sizeof *j->s_v, &j->oom);
        }
        if (j->oom)
            return ST_ENOMEM;
        j->s_entry[j->ns] = (uint32_t)ei;
        j->s_ts[j->ns] = pt->ts_ms;
        j->s_v[j->ns] = pt->series[i].value;
        j->ns++;
        j->e[ei].count++;
    }
    j->lines_ok++;
    return 0;
}

static void on_error(void *arg, uint64_t line, int code, const char *reason)
{
    wjob_t *j = arg;
    j->lines_bad++;
    if (j->nrej < ROUTER_MAX_REJECTED) {
        j->rej[j->nrej].line = line;
        snprintf(j->rej[j->nrej].reason, sizeof j->rej[j->nrej].reason, "%s", reason);
        j->nrej++;
    }
}

static __thread lp_parser_t *tl_parser;

static int encode(wjob_t *j)
{
    router_t *r = j->r;
    uint32_t nshards = topo_shards(r->topo);
    /* fix up label pointers */
    for (size_t i = 0; i < j->nl; i++) {
        j->labels[i].name = j->str + (uintptr_t)j->labels[i].name;
        j->labels[i].value = j->str + (uintptr_t)j->labels[i].value;
    }
    /* columns: entries' samples contiguous */
    int64_t *cts = malloc((j->ns ? j->ns : 1) * sizeof *cts);
    double *cv = malloc((j->ns ? j->ns : 1) * sizeof *cv);
    size_t *bystart = calloc((size_t)nshards + 1, sizeof *bystart);
    uint32_t *order = malloc((j->ne ? j->ne : 1) * sizeof *order);
    if (!cts || !cv || !bystart || !order) {
        free(cts);
        free(cv);
        free(bystart);
        free(order);
        return ST_ENOMEM;
    }
    uint32_t off = 0;
    for (size_t i = 0; i < j->ne; i++) {
        j->e[i].first = off;
        off += j->e[i].count;
        j->e[i].count = 0;
    }
    for (size_t k = 0; k < j->ns; k++) {
        entry_t *en = &j->e[j->s_entry[k]];
        cts[en->first + en->count] = j->s_ts[k];
        cv[en->first + en->count] = j->s_v[k];
        en->count++;
    }
    /* entries by shard (counting sort) */
    for (size_t i = 0; i < j->ne; i++)
        bystart[j->e[i].shard + 1]++;
    for (uint32_t s = 0; s < nshards; s++)
        bystart[s + 1] += bystart[s];
    size_t *fill = malloc(((size_t)nshards + 1) * sizeof *fill);
    if (!fill) {
        free(cts);
        free(cv);
        free(bystart);
        free(order);
        return ST_ENOMEM;
    }
    memcpy(fill, bystart, ((size_t)nshards + 1) * sizeof *fill);
    for (size_t i = 0; i < j->ne; i++)
        order[fill[j->e[i].shard]++] = (uint32_t)i;
    free(fill);
    int rc = 0;
    for (uint32_t s = 0; s < nshards && !rc; s++) {
        if (bystart[s] == bystart[s + 1])
            continue;
        st_buf_t *b = &j->all;
        size_t mark, start = b->len;
        rc = wire_begin(b, 1, &mark);
        rc |= wire_put_varint_field(b, 1, s);
        for (size_t k = bystart[s]; k < bystart[s + 1] && !rc; k++) {
            entry_t *en = &j->e[order[k]];
            rc = wire_put_series(b, 2, j->labels + en->label_off, en->nlabels, cts + en->first,
                                 cv + en->first, en->count);
        }
        wire_end(b, mark);
        j->sh[s].off = start;
        j->sh[s].len = b->len - start;
        j->sh[s].state = SH_PENDING;
        j->active[j->nactive++] = s;
    }
    free(cts);
    free(cv);
    free(bystart);
    free(order);
    return rc ? ST_ENOMEM : 0;
}

static void write_work(uv_work_t *w)
{
    wjob_t *j = w->data;
    if (!tl_parser) {
        lp_opts_t o = {.series = 1};
        if (lp_parser_create(&o, &tl_parser)) {
            j->parse_err = ST_ENOMEM;
            return;
        }
    }
    lp_parser_set_precision(tl_parser, j->prec);
    lp_parser_set_default_ts(tl_parser, j->now_ms);
    int rc =
        lp_parse(tl_parser, (const char *)j->req->body, j->req->body_len, on_point, on_error, j);
    if (rc < 0) {
        j->parse_err = rc;
        return;
    }
    j->parse_err = encode(j);
}

static void free_job(wjob_t *j)
{
    for (uint32_t i = 0; i < j->nactive; i++)
        free(j->sh[j->active[i]].why);
    free(j->sh);
    free(j->active);
    st_buf_deinit(&j->all);
    free(j->e);
    free(j->table);
    free(j->ts);
    free(j->tstable);
    free(j->labels);
    free(j->str);
    free(j->s_entry);
    free(j->s_ts);
    free(j->s_v);
    st_buf_deinit(&j->fail);
    free(j);
}

static void put_rejected(wjob_t *j, st_buf_t *b)
{
    ST_BUF_LIT(b, "\"rejected\":[");
    for (size_t i = 0; i < j->nrej; i++) {
        char tmp[64];
        int k = snprintf(tmp, sizeof tmp, "%s{\"line\":%llu,\"reason\":", i ? "," : "",
                         (unsigned long long)j->rej[i].line);
        st_buf_append(b, tmp, (size_t)k);
        st_json_str(b, j->rej[i].reason, strlen(j->rej[i].reason));
        st_buf_put_u8(b, '}');
    }
    st_buf_put_u8(b, ']');
}

static void finish(wjob_t *j)
{
    router_t *r = j->r;
    metric_counter_add(r->lines_ok, j->lines_ok);
    metric_counter_add(r->lines_bad, j->lines_bad);
    st_buf_t b;
    st_buf_init(&b);
    char tmp[256];
    if (j->failed_shards) {
        metric_counter_inc(r->write_503);
        int k = snprintf(tmp, sizeof tmp,
                         "{\"error\":\"%d shard(s) did not meet write consistency; retrying the "
                         "same body is safe\",\"shards\":[",
                         j->failed_shards);
        st_buf_append(&b, tmp, (size_t)k);
        st_buf_append(&b, j->fail.data, j->fail.len);
        ST_BUF_LIT(&b, "],");
        put_rejected(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 503, "application/json", b.data, b.len);
    } else if (j->lines_bad) {
        int k = snprintf(
            tmp, sizeof tmp, "{\"error\":\"partial write: %llu of %llu lines rejected\",",
            (unsigned long long)j->lines_bad, (unsigned long long)(j->lines_bad + j->lines_ok));
        st_buf_append(&b, tmp, (size_t)k);
        put_rejected(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 400, "application/json", b.data, b.len);
    } else {
        http_respond(j->req, 204, NULL, NULL, 0);
    }
    st_buf_deinit(&b);
    free_job(j);
}

static void shard_note(wjob_t *j, uint32_t s, uint32_t node, const char *why)
{
    shard_t *sh = &j->sh[s];
    const char *id = topo_node_id(j->r->topo, node);
    size_t old = sh->why ? strlen(sh->why) : 0, add = strlen(id) + strlen(why) + 4;
    if (old > 1000)
        return;
    char *n = realloc(sh->why, old + add + 1);
    if (!n)
        return;
    snprintf(n + old, add + 1, "%s%s: %s", old ? "; " : "", id, why);
    sh->why = n;
}

static void shard_failed(wjob_t *j, uint32_t s)
{
    shard_t *sh = &j->sh[s];
    sh->state = SH_FAILED;
    char tmp[96];
    int k = snprintf(tmp, sizeof tmp, "%s{\"shard\":%u,\"node\":", j->fail.len ? "," : "", s);
    st_buf_append(&j->fail, tmp, (size_t)k);
    const char *id = topo_node_id(j->r->topo, sh->node);
    st_json_str(&j->fail, id, strlen(id));
    ST_BUF_LIT(&j->fail, ",\"error\":");
    const char *why = sh->why ? sh->why : "no replica reachable";
    st_json_str(&j->fail, why, strlen(why));
    st_buf_put_u8(&j->fail, '}');
    j->failed_shards++;
}

typedef struct call_ctx {
    wjob_t *j;
    uint32_t node;
    uint32_t n;
    uint32_t shards[];
} call_ctx_t;

static void send_round(wjob_t *j);

/* Transport failures move the shards on to their next replica, and so does
 * "consistency not met" (the next coordinator may reach replicas this one
 * could not); other answers are final. */
static int retryable(int status, uint8_t type)
{
    if (type == RPC_ERROR && status != ST_EBUSY && status != ST_ECLOSED && status != ST_ETIMEDOUT &&
        status != ST_EUNAVAIL)
        return 0;
    return status == ST_ETIMEDOUT || status == ST_EUNAVAIL || status == ST_ECLOSED ||
           status == ST_EBUSY;
}

static void on_write_resp(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    call_ctx_t *c = arg;
    wjob_t *j = c->j;
    router_t *r = j->r;
    if (status != 0) {
        char why[300];
        if (type == RPC_ERROR && len)
            snprintf(why, sizeof why, "%.*s", (int)(len < 250 ? len : 250), (const char *)payload);
        else
            snprintf(why, sizeof why, "%s", st_strerror(status));
        metric_counter_inc(r->rpc_fail);
        int again = retryable(status, type);
        for (uint32_t i = 0; i < c->n; i++) {
            shard_note(j, c->shards[i], c->node, why);
            if (again)
                j->sh[c->shards[i]].state = SH_PENDING;
            else
                shard_failed(j, c->shards[i]);
        }
    } else {
        Strata__NodeWriteResult *res = strata__node_write_result__unpack(NULL, len, payload);
        if (!res) {
            for (uint32_t i = 0; i < c->n; i++) {
                shard_note(j, c->shards[i], c->node, "malformed reply from node");
                shard_failed(j, c->shards[i]);
            }
        } else {
            for (size_t i = 0; i < res->n_results; i++) {
                const Strata__ShardResult *sr = res->results[i];
                uint32_t s = sr->shard;
                if (s >= topo_shards(r->topo) || j->sh[s].state != SH_SENT)
                    continue;
                if (sr->code == 0) {
                    metric_counter_add(r->samples, sr->samples);
                    j->sh[s].state = SH_OK;
                    continue;
                }
                shard_note(j, s, c->node, sr->error && *sr->error ? sr->error : "failed");
                if (sr->code == ST_EUNAVAIL)
                    j->sh[s].state = SH_PENDING; /* consistency not met from there: a
                                                    coordinator on the other side of a
                                                    partition may meet it (idempotent) */
                else
                    shard_failed(j, s);
            }
            strata__node_write_result__free_unpacked(res, NULL);
            /* a shard the node did not mention failed */
            for (uint32_t i = 0; i < c->n; i++) {
                if (j->sh[c->shards[i]].state == SH_SENT) {
                    shard_note(j, c->shards[i], c->node, "no result in the node's reply");
                    shard_failed(j, c->shards[i]);
                }
            }
        }
    }
    free(c);
    j->pending--;
    send_round(j);
}

/* Rank of shard s's first untried replica that is up, or -1. */
static int next_rank(const wjob_t *j, uint32_t s)
{
    const uint32_t *rep = topo_shard_replicas(j->r->topo, s);
    uint32_t rf = topo_replication_factor(j->r->topo);
    for (uint32_t k = 0; k < rf; k++)
        if (!(j->sh[s].tried & (1u << k)) && router_node_up(j->r, rep[k]))
            return (int)k;
    return -1;
}

/* Send every PENDING shard to its first untried replica that is up, one
 * RPC per node; finish when nothing is pending or in flight. */
static void send_round(wjob_t *j)
{
    router_t *r = j->r;
    const topo_t *t = r->topo;
    uint32_t nn = topo_node_count(t), rf = topo_replication_factor(t);
    j->pending++; /* guard while sending */
    for (uint32_t node = 0; node < nn; node++) {
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < j->nactive; i++) {
            uint32_t s = j->active[i];
            shard_t *sh = &j->sh[s];
            if (sh->state != SH_PENDING)
                continue;
            const uint32_t *rep = topo_shard_replicas(t, s);
            int rank = next_rank(j, s);
            if (rank < 0) {
                /* no untried replica is up */
                for (uint32_t k = 0; k < rf; k++)
                    if (!(sh->tried & (1u << k))) {
                        shard_note(j, s, rep[k], "node is down");
                        sh->tried |= 1u << k;
                        sh->node = rep[k];
                    }
                metric_counter_inc(r->rpc_fail);
                shard_failed(j, s);
                continue;
            }
            if (rep[rank] == node)
                cnt++;
        }
        if (!cnt)
            continue;
        call_ctx_t *c = malloc(sizeof *c + cnt * sizeof c->shards[0]);
        st_buf_t b;
        st_buf_init(&b);
        int rc = c ? repl_put_envelope(&b, (uint32_t)j->consistency, 0) : ST_ENOMEM;
        uint32_t n = 0;
        for (uint32_t i = 0; i < j->nactive && !rc; i++) {
            uint32_t s = j->active[i];
            shard_t *sh = &j->sh[s];
            if (sh->state != SH_PENDING)
                continue;
            int rank = next_rank(j, s);
            if (rank < 0 || topo_shard_replicas(t, s)[rank] != node)
                continue;
            rc = st_buf_append(&b, j->all.data + sh->off, sh->len);
            sh->tried |= 1u << rank;
            sh->node = node;
            sh->state = SH_SENT;
            c->shards[n++] = s;
        }
        if (rc) {
            for (uint32_t i = 0; i < n; i++) {
                shard_note(j, c->shards[i], node, "out of memory");
                shard_failed(j, c->shards[i]);
            }
            free(c);
            st_buf_deinit(&b);
            continue;
        }
        c->j = j;
        c->node = node;
        c->n = n;
        rc = rpc_client_call(r->clients[node], RPC_WRITE, b.data, b.len, (unsigned)r->timeout_ms,
                             on_write_resp, c);
        st_buf_deinit(&b);
        if (rc) {
            const char *why = rc == ST_EBUSY ? "node queue full (overloaded)" : st_strerror(rc);
            metric_counter_inc(r->rpc_fail);
            for (uint32_t i = 0; i < n; i++) {
                shard_note(j, c->shards[i], node, why);
                j->sh[c->shards[i]].state = SH_PENDING; /* next round: the next replica */
            }
            free(c);
            continue;
        }
        j->pending++;
    }
    /* shards put back by a failed call go to their next replica now */
    int again = 0;
    for (uint32_t i = 0; i < j->nactive && !again; i++)
        again = j->sh[j->active[i]].state == SH_PENDING;
    if (--j->pending == 0) {
        if (again)
            send_round(j);
        else
            finish(j);
    }
}

static void write_after(uv_work_t *w, int status)
{
    wjob_t *j = w->data;
    (void)status;
    if (j->parse_err) {
        http_respond_error(j->req, j->parse_err == ST_ENOMEM ? 503 : 500,
                           st_strerror(j->parse_err));
        free_job(j);
        return;
    }
    send_round(j);
}

static int parse_precision(const char *v, lp_precision_t *out)
{
    if (!v)
        return 0;
    return lp_precision_parse(v, strlen(v), out);
}

void router_handle_write(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_POST) {
        http_respond_error(req, 405, "use POST");
        return;
    }
    lp_precision_t prec = LP_PREC_NS;
    const char *pv = http_req_param(req, "precision");
    if (parse_precision(pv, &prec)) {
        char msg[128];
        snprintf(msg, sizeof msg, "invalid precision '%.32s' (ns, us, ms, s)", pv);
        http_respond_error(req, 400, msg);
        return;
    }
    int consistency = repl_consistency_param(http_req_param(req, "consistency"));
    if (consistency < 0) {
        http_respond_error(req, 400,
                           "invalid consistency (sync, quorum, async; InfluxDB's all, any, one)");
        return;
    }
    int rc = http_req_decode_body(req, r->max_body);
    if (rc) {
        int code = rc == ST_ELIMIT ? 413 : rc == ST_EPROTO ? 415 : rc == ST_ENOMEM ? 503 : 400;
        const char *msg = rc == ST_ELIMIT   ? "decoded body exceeds max_body_bytes"
                          : rc == ST_EPROTO ? "unsupported Content-Encoding (use gzip or none)"
                                            : "corrupt gzip body";
        http_respond_error(req, code, msg);
        return;
    }
    wjob_t *j = calloc(1, sizeof *j);
    uint32_t nshards = topo_shards(r->topo);
    if (j) {
        j->sh = calloc(nshards, sizeof *j->sh);
        j->active = calloc(nshards, sizeof *j->active);
    }
    if (!j || !j->sh || !j->active) {
        if (j) {
            free(j->sh);
            free(j->active);
        }
        free(j);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    st_buf_init(&j->all);
    j->consistency = consistency;
    j->r = r;
    j->req = req;
    j->prec = prec;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    j->now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    st_buf_init(&j->fail);
    j->w.data = j;
    if (uv_queue_work(r->loop, &j->w, write_work, write_after) != 0) {
        free_job(j);
        http_respond_error(req, 503, "cannot queue work");
    }
}
