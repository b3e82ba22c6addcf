/*
 * node_rpc — the node's RPC request handlers.
 *
 * A request's payload is copied into a job (a WRITE takes the receive
 * buffer instead when rpc_uv can give it up: rpc_conn_take_payload) and
 * handled in a uv_queue_work callback (off the loop); the after-work
 * callback replies on the loop.
 *   WRITE        NodeWrite: coordinated by node_repl.c when RF > 1 and it
 *                was not forwarded; else per shard into the engines (node_write.c)
 *   EXPORT       ReadRequest -> ReadResponse pages of SeriesSamples; a range
 *                reaching before a shard's first downsampling watermark
 *                reads through its tiers (tread_series: the buckets' last
 *                samples there)
 *   SERIES       same, without samples
 *   LABEL_NAMES  ReadRequest -> StringList
 *   LABEL_VALUES ReadRequest (label_name) -> StringList
 *   STATS        -> NodeStats (engine totals, hints, peers, degraded + reason)
 *   TSDB_STATUS  ReadRequest -> TsdbStatusResponse (node_status.c)
 *   ROW_STATS    ReadRequest -> RowStatsResponse (node_query.c): SQL count(*)
 *   QUERY        QueryRequest -> QueryResponse (node_query.c)
 *   RULES        RulesRequest -> RulesResponse (node_rules.c): the compaction rule set
 *   CANCEL       CancelRequest -> CANCEL_RESP (empty), on the loop: flags the
 *                running QUERYs of that id (node_query.c); unknown ids ignored
 * QUERY, EXPORT and SERIES are first tried on the loop (run_on_loop): a
 * small one is answered there without the pool hop; one past the loop's
 * budget (node.h: NODE_INLINE_SERIES series, NODE_INLINE_SAMPLES samples,
 * no regex matcher; no tiers; node_query.c adds its own for QUERY) stops at once and
 * is queued like the rest, its answer started over.
 * Reads (EXPORT, SERIES, LABEL_*) stop at the router's deadline
 * (ReadRequest.timeout_ms, checked between shards, series and label
 * strings) and answer ETIMEDOUT "read timed out (request_timeout)",
 * counted in strata_node_reads_timed_out_total.
 */
#include <stdlib.h>
#include <string.h>

#include "st_time.h"

#include "node.h"
#include "node_copy.h"
#include "node_repair.h"
#include "node_repl.h"
#include "node_rules.h"
#include "node_write.h"
#include "st_err.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "wire.h"

typedef struct job {
    uv_work_t req;
    node_t *n;
    rpc_conn_t *conn;
    uint64_t reqid;
    uint8_t type, out_type;
    uint8_t *block; /* what to free: the payload's copy, or the receive buffer it is in */
    const uint8_t *payload;
    size_t len;
    st_buf_t out;
    int err;
    int on_loop; /* tried on the loop under its budget (run_on_loop) */
    int later;   /* ... which it exceeds: queue it */
    char msg[512];
} job_t;

/* ---- WRITE ---- */

/* A write this node does not coordinate: forwarded by a coordinator, or
 * RF = 1. */
static void do_write(job_t *j)
{
    repl_envelope_t env;
    repl_entry_t stack_e[32], *e = stack_e; /* a NodeWrite has one entry per shard */
    node_shard_result_t *res = NULL;
    int rc = repl_scan(j->payload, j->len, e, 32, &env);
    if (!rc && env.n > 32) { /* more entries than room: scan again into the heap */
        e = calloc(env.n, sizeof *e);
        rc = e ? repl_scan(j->payload, j->len, e, env.n, &env) : ST_ENOMEM;
    }
    if (!rc && !(res = calloc(env.n ? env.n : 1, sizeof *res)))
        rc = ST_ENOMEM;
    if (!rc)
        rc = node_write_local(j->n, e, env.n, res);
    if (!rc && !env.forwarded) /* RF = 1: this node is the coordinator */
        node_rules_observe(j->n, e, env.n, res);
    if (!rc)
        rc = node_pack_write_result(res, env.n, &j->out);
    if (rc) {
        j->err = rc;
        snprintf(j->msg, sizeof j->msg, "%s",
                 rc == ST_ENOMEM ? "out of memory" : "malformed NodeWrite");
    } else {
        j->out_type = RPC_WRITE_RESP;
    }
    if (e != stack_e)
        free(e);
    free(res);
}

/* ---- reads ---- */

static int matchers_from(const Strata__ReadRequest *r, matchers_t *out, char *msg, size_t msglen)
{
    return node_matchers_from(r->matchers, r->n_matchers, out, msg, msglen);
}

/* The deadline of a ReadRequest (0: none), from when the job starts. */
static int64_t read_deadline(const Strata__ReadRequest *r)
{
    return r->timeout_ms ? st_mono_ms() + r->timeout_ms : 0;
}

/* ST_ETIMEDOUT with the job's message once the deadline passed, else 0. */
static int read_late(job_t *j, int64_t deadline)
{
    if (!deadline || st_mono_ms() <= deadline)
        return 0;
    snprintf(j->msg, sizeof j->msg, "read timed out (request_timeout)");
    metric_counter_inc(j->n->reads_timed_out);
    return ST_ETIMEDOUT;
}

static engine_t *shard_engine(job_t *j, uint32_t shard)
{
    node_t *n = j->n;
    if (shard >= (uint32_t)topo_shards(n->topo) || !n->engines[shard]) {
        snprintf(j->msg, sizeof j->msg, "shard %u is not placed on node %s", shard,
                 topo_node_id(n->topo, n->self));
        return NULL;
    }
    return n->engines[shard];
}

/* The job's ReadRequest, with its matchers in m and matchers_from's
 * result in *rc (free m->arena); NULL with j->err set when malformed. */
static Strata__ReadRequest *read_request(job_t *j, matchers_t *m, int *rc)
{
    Strata__ReadRequest *r = strata__read_request__unpack(NULL, j->len, j->payload);
    if (!r) {
        j->err = ST_EPROTO;
        snprintf(j->msg, sizeof j->msg, "malformed ReadRequest");
        return NULL;
    }
    *rc = matchers_from(r, m, j->msg, sizeof j->msg);
    return r;
}

/* A page of an export or series read over a shard whose older data is in
 * downsampling tiers (engine_tiers_select at resolution 0): raw samples
 * after the first tier's watermark, each bucket's last sample (its own
 * timestamp and value) before it, the rule PromQL's raw selections follow
 * (node_query.c). Series come sorted by labels; a page resumes at its
 * position in that order. */
typedef struct tread {
    job_t *j;
    int with_samples;
    int64_t deadline;
    uint64_t skip, pos; /* series to pass over (the cursor), series seen */
    uint64_t *samples, *series, max_samples, max_series;
    int full; /* the page is full: pos is where the next one starts */
} tread_t;

static int tread_series(void *arg, const st_label_t *l, size_t nl, const int64_t *ts,
                        const double *v, size_t n)
{
    tread_t *t = arg;
    if (t->pos++ < t->skip)
        return 0;
    int rc = wire_put_series(&t->j->out, WIRE_READ_RESPONSE_SERIES, l, nl, ts, v,
                             t->with_samples ? n : 0);
    if (rc || (rc = read_late(t->j, t->deadline)))
        return rc;
    *t->samples += n;
    (*t->series)++;
    if ((t->with_samples && *t->samples >= t->max_samples) || *t->series >= t->max_series) {
        t->full = 1;
        return 1; /* stops the selection */
    }
    return 0;
}

static void do_read(job_t *j, int with_samples)
{
    matchers_t m;
    int rc;
    Strata__ReadRequest *r = read_request(j, &m, &rc);
    if (!r)
        return;
    if (j->on_loop && !rc)
        j->later = node_has_regex(m.m, m.n);
    for (size_t si = r->cursor_shard; j->on_loop && !rc && si < r->n_shards && !j->later; si++)
        j->later = r->shards[si] >= (uint32_t)topo_shards(j->n->topo) ||
                   !j->n->engines[r->shards[si]] || j->n->tiers[r->shards[si]];
    if (!rc && !j->later && j->on_loop && r->cursor_shard < r->n_shards)
        j->later = !node_select_small(j->n, r->shards + r->cursor_shard,
                                      r->n_shards - r->cursor_shard, m.m, m.n, NODE_INLINE_SERIES);
    if (j->later)
        rc = ST_EBUSY; /* a regex (the index may take long), tiers, many series: the pool */
    uint64_t max_samples = r->max_samples ? r->max_samples : NODE_EXPORT_PAGE_SAMPLES;
    uint64_t max_series = r->max_series ? r->max_series : NODE_EXPORT_PAGE_SERIES;
    uint64_t samples = 0, series = 0;
    int done = 1;
    uint32_t next_shard = 0;
    uint64_t next_pos = 0;
    int64_t deadline = read_deadline(r);
    for (size_t si = r->cursor_shard; !rc && si < r->n_shards; si++) {
        engine_t *e = shard_engine(j, r->shards[si]);
        if (!e) {
            rc = ST_EINVAL;
            break;
        }
        if ((rc = read_late(j, deadline)))
            break;
        engine_tiers_t *tiers = j->n->tiers[r->shards[si]];
        if (tiers && engine_tiers_raw_after(tiers) != INT64_MIN &&
            r->start_ms <= engine_tiers_raw_after(tiers)) {
            if (j->on_loop) {
                j->later = 1;
                rc = ST_EBUSY;
                break;
            }
            tread_t t = {j,          with_samples,
                         deadline,   si == r->cursor_shard ? r->cursor_pos : 0,
                         0,          &samples,
                         &series,    max_samples,
                         max_series, 0};
            uint64_t read = 0;
            rc = engine_tiers_select_samples(tiers, m.m, m.n, r->start_ms, r->end_ms, tread_series,
                                             &t, &read);
            if (rc == 1)
                rc = 0;
            if (rc == ST_ETIMEDOUT)
                break;
            if (rc < 0) {
                snprintf(j->msg, sizeof j->msg, "shard %u: %s", r->shards[si], engine_last_error());
                break;
            }
            if (t.full) {
                done = 0;
                next_shard = (uint32_t)si;
                next_pos = t.pos;
                break;
            }
            continue;
        }
        engine_iter_t *it;
        if ((rc = engine_query(e, m.m, m.n, r->start_ms, r->end_ms, &it))) {
            snprintf(j->msg, sizeof j->msg, "%s", engine_last_error());
            break;
        }
        if (si == r->cursor_shard)
            engine_iter_seek(it, r->cursor_pos);
        const st_label_t *l;
        size_t nl, cnt;
        const int64_t *ts;
        const double *v;
        while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &cnt)) == 1) {
            if (j->on_loop && (series >= NODE_INLINE_SERIES ||
                               (with_samples && samples + cnt > NODE_INLINE_SAMPLES))) {
                j->later = 1;
                rc = ST_EBUSY;
                break;
            }
            rc = wire_put_series(&j->out, WIRE_READ_RESPONSE_SERIES, l, nl, ts, v,
                                 with_samples ? cnt : 0);
            if (rc || (rc = read_late(j, deadline)))
                break;
            samples += cnt;
            series++;
            if ((with_samples && samples >= max_samples) || series >= max_series) {
                done = 0;
                next_shard = (uint32_t)si;
                next_pos = engine_iter_pos(it);
                break;
            }
        }
        engine_iter_destroy(it);
        if (rc == ST_ETIMEDOUT)
            break; /* read_late's message */
        if (rc < 0)
            snprintf(j->msg, sizeof j->msg, "shard %u: %s", r->shards[si], engine_last_error());
        else
            rc = 0;
        if (!done)
            break;
    }
    if (!rc) {
        rc = wire_put_varint_field(&j->out, WIRE_READ_RESPONSE_DONE, (uint64_t)done);
        if (!done) {
            rc |= wire_put_varint_field(&j->out, WIRE_READ_RESPONSE_NEXT_SHARD, next_shard);
            rc |= wire_put_varint_field(&j->out, WIRE_READ_RESPONSE_NEXT_POS, next_pos);
        }
        j->out_type = with_samples ? RPC_EXPORT_RESP : RPC_SERIES_RESP;
    }
    j->err = rc;
    free(m.arena);
    strata__read_request__free_unpacked(r, NULL);
}

typedef struct strset {
    char **s;
    size_t *len;
    size_t n, cap;
    job_t *j;
    int64_t deadline; /* 0: none */
} strset_t;

static int strset_add(void *arg, const char *s, size_t len)
{
    strset_t *set = arg;
    int rc = read_late(set->j, set->deadline);
    if (rc)
        return rc;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        char **ns = realloc(set->s, cap * sizeof *ns);
        if (!ns)
            return ST_ENOMEM;
        set->s = ns;
        size_t *nl = realloc(set->len, cap * sizeof *nl);
        if (!nl)
            return ST_ENOMEM;
        set->len = nl;
        set->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c)
        return ST_ENOMEM;
    if (len)
        memcpy(c, s, len);
    c[len] = '\0';
    set->s[set->n] = c;
    set->len[set->n++] = len;
    return 0;
}

static void do_labels(job_t *j, int values)
{
    matchers_t m;
    int rc;
    Strata__ReadRequest *r = read_request(j, &m, &rc);
    if (!r)
        return;
    strset_t set = {0};
    set.j = j;
    set.deadline = read_deadline(r);
    char *name = NULL;
    if (!rc && values) {
        if (r->label_name.len && memchr(r->label_name.data, 0, r->label_name.len)) {
            snprintf(j->msg, sizeof j->msg, "NUL byte in label name"); /* strndup would cut it */
            rc = ST_EINVAL;
        } else if (!(name = strndup((const char *)r->label_name.data, r->label_name.len))) {
            rc = ST_ENOMEM;
        }
    }
    for (size_t si = 0; !rc && si < r->n_shards; si++) {
        engine_t *e = shard_engine(j, r->shards[si]);
        if (!e) {
            rc = ST_EINVAL;
            break;
        }
        if ((rc = read_late(j, set.deadline)))
            break;
        rc = values ? engine_label_values(e, name, m.m, m.n, strset_add, &set)
                    : engine_label_names(e, m.m, m.n, strset_add, &set);
        if (rc && rc != ST_ETIMEDOUT)
            snprintf(j->msg, sizeof j->msg, "%s", engine_last_error());
    }
    /* shards return sorted lists: the router merges; here just concatenate
     * distinct values per shard (sorted within each shard) */
    for (size_t i = 0; i < set.n && !rc; i++)
        rc = wire_put_bytes_field(&j->out, WIRE_STRING_LIST_VALUES, set.s[i], set.len[i]);
    for (size_t i = 0; i < set.n; i++)
        free(set.s[i]);
    free(set.s);
    free(set.len);
    free(name);
    free(m.arena);
    strata__read_request__free_unpacked(r, NULL);
    j->err = rc;
    j->out_type = values ? RPC_LABEL_VALUES_RESP : RPC_LABEL_NAMES_RESP;
}

static void do_stats(job_t *j)
{
    node_t *n = j->n;
    Strata__NodeStats st = STRATA__NODE_STATS__INIT;
    st.node_id = (char *)topo_node_id(n->topo, n->self);
    /* engines are open for this node's shards only: that many ids at most */
    const uint32_t *local;
    size_t cap = topo_node_shards(n->topo, (uint32_t)n->self, &local);
    uint32_t *shards = malloc((cap ? cap : 1) * sizeof *shards);
    if (!shards) {
        j->err = ST_ENOMEM;
        return;
    }
    engine_stats_t t;
    size_t ns = node_engine_totals(n, &t, shards, cap);
    st.series = t.series;
    st.head_samples = t.head_samples;
    st.disk_bytes = t.disk_bytes;
    st.samples_written = t.samples_written;
    st.n_shards = ns;
    st.shards = shards;
    char why[NODE_DEGRADED_REASON_MAX];
    st.degraded = node_degraded(n, why, sizeof why);
    if (!st.degraded) /* routers prefer other replicas while this one rebuilds */
        st.degraded = node_repair_rebuilding(n->repair, why, sizeof why);
    st.degraded_reason = why;
    if (node_repair_stats(n->repair, &st)) {
        j->err = ST_ENOMEM;
        free(shards);
        return;
    }
    if (n->repl && node_repl_stats(n->repl, &st)) {
        node_repair_stats_free(&st);
        j->err = ST_ENOMEM;
        free(shards);
        return;
    }
    size_t sz = strata__node_stats__get_packed_size(&st);
    if (st_buf_reserve(&j->out, sz)) {
        j->err = ST_ENOMEM;
    } else {
        j->out.len = strata__node_stats__pack(&st, j->out.data);
        j->out_type = RPC_STATS_RESP;
    }
    node_repl_stats_free(&st);
    node_repair_stats_free(&st);
    free(shards);
}

/* TSDB_STATUS (node_status.c) and ROW_STATS (node_query.c): a ReadRequest
 * answered by fn with one reply of type out_type. */
static void do_read_rpc(job_t *j, int row_stats, uint8_t out_type)
{
    matchers_t m;
    int rc;
    Strata__ReadRequest *r = read_request(j, &m, &rc);
    if (!r)
        return;
    if (!rc && row_stats)
        rc = node_row_stats(j->n, r, m.m, m.n, &j->out, j->msg, sizeof j->msg);
    else if (!rc)
        rc = node_tsdb_status(j->n, r->shards, r->n_shards, m.m, m.n, &j->out, j->msg,
                              sizeof j->msg);
    free(m.arena);
    strata__read_request__free_unpacked(r, NULL);
    j->err = rc;
    j->out_type = out_type;
}

static void work_cb(uv_work_t *w)
{
    job_t *j = w->data;
    switch (j->type) {
    case RPC_WRITE:
        do_write(j);
        break;
    case RPC_EXPORT:
        do_read(j, 1);
        break;
    case RPC_SERIES:
        do_read(j, 0);
        break;
    case RPC_LABEL_NAMES:
        do_labels(j, 0);
        break;
    case RPC_LABEL_VALUES:
        do_labels(j, 1);
        break;
    case RPC_STATS:
        do_stats(j);
        break;
    case RPC_TSDB_STATUS:
        do_read_rpc(j, 0, RPC_TSDB_STATUS_RESP);
        break;
    case RPC_ROW_STATS:
        do_read_rpc(j, 1, RPC_ROW_STATS_RESP);
        break;
    case RPC_DELETE:
        j->err = node_delete_rpc(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_DELETE_RESP;
        break;
    case RPC_RULES:
        j->err = node_rules_rpc(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_RULES_RESP;
        break;
    case RPC_TOMBS:
        j->err = node_delete_tombs_rpc(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_TOMBS_RESP;
        break;
    case RPC_DIGEST:
        j->err = node_repair_digest_rpc(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_DIGEST_RESP;
        break;
    case RPC_REPAIR_PULL:
        j->err = node_repair_pull_rpc(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_REPAIR_PULL_RESP;
        break;
    case RPC_COPY_LIST:
        j->err = node_copy_list_rpc(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_COPY_LIST_RESP;
        break;
    case RPC_COPY_FETCH:
        j->err = node_copy_fetch_rpc(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_COPY_FETCH_RESP;
        break;
    case RPC_QUERY:
        j->err =
            node_query_ex(j->n, j->payload, j->len, j->on_loop, &j->out, j->msg, sizeof j->msg);
        j->later = j->err == NODE_QUERY_LATER;
        j->out_type = RPC_QUERY_RESP;
        break;
    case RPC_TOPN:
        j->err = node_topn(j->n, j->payload, j->len, &j->out, j->msg, sizeof j->msg);
        j->out_type = RPC_TOPN_RESP;
        break;
    default:
        j->err = ST_EPROTO;
        snprintf(j->msg, sizeof j->msg, "unknown request type %u", j->type);
    }
}

/* An answer: the error err (with msg, if any) or the reply out of type. */
static void reply(node_t *n, rpc_conn_t *conn, uint64_t reqid, int err, const char *msg,
                  uint8_t type, const st_buf_t *out)
{
    if (err) {
        metric_counter_inc(n->rpc_errors);
        rpc_conn_reply_error(conn, reqid, err, msg[0] ? msg : st_strerror(err));
    } else {
        int rc = rpc_conn_reply(conn, reqid, type, out->data, out->len);
        if (rc == ST_ELIMIT)
            st_warn("reply larger than the maximum frame", "type=%u bytes=%zu", type, out->len);
    }
}

/* The job's answer: its error or its reply. */
static void job_reply(job_t *j)
{
    reply(j->n, j->conn, j->reqid, j->err, j->msg, j->out_type, &j->out);
}

static void after_cb(uv_work_t *w, int status)
{
    job_t *j = w->data;
    atomic_fetch_sub(&j->n->jobs, 1);
    if (status == UV_ECANCELED && !j->err) {
        j->err = ST_ECLOSED;
        snprintf(j->msg, sizeof j->msg, "node shutting down");
    }
    job_reply(j);
    rpc_conn_release(j->conn);
    st_buf_deinit(&j->out);
    free(j->block);
    free(j);
}

/* ---- REPAIR: on the repair thread ---- */

typedef struct repair_job {
    node_repair_job_t job; /* first: done() gets it back */
    node_t *n;
    rpc_conn_t *conn;
    uint64_t reqid;
    st_buf_t out;
    char msg[512];
    uint8_t payload[];
} repair_job_t;

static void repair_done(node_repair_job_t *job)
{
    repair_job_t *j = (repair_job_t *)job;
    reply(j->n, j->conn, j->reqid, job->err, j->msg, RPC_REPAIR_RESP, &j->out);
    rpc_conn_release(j->conn);
    st_buf_deinit(&j->out);
    free(j);
}

/* A pass waits on the peers: it must not hold a thread-pool thread that
 * their calls to this node (and writes) need. */
static void repair_queue(node_t *n, rpc_conn_t *conn, uint64_t reqid, const uint8_t *payload,
                         size_t len)
{
    repair_job_t *j = malloc(sizeof *j + (len ? len : 1));
    if (!j) {
        rpc_conn_reply_error(conn, reqid, ST_ENOMEM, "out of memory");
        return;
    }
    memcpy(j->payload, payload, len);
    j->n = n;
    j->conn = conn;
    j->reqid = reqid;
    j->msg[0] = 0;
    st_buf_init(&j->out);
    j->job = (node_repair_job_t){.payload = j->payload,
                                 .len = len,
                                 .out = &j->out,
                                 .msg = j->msg,
                                 .msglen = sizeof j->msg,
                                 .done = repair_done};
    rpc_conn_acquire(conn);
    int rc = node_repair_enqueue(n->repair, &j->job);
    if (rc) {
        j->job.err = rc;
        repair_done(&j->job);
    }
}

/* QUERY, EXPORT, SERIES on the loop when small (j->payload is the
 * caller's): 1 when answered, 0 when over the budget (j reset for the
 * pool). */
static int run_on_loop(job_t *j)
{
    if (j->type != RPC_QUERY && j->type != RPC_EXPORT && j->type != RPC_SERIES)
        return 0;
    j->on_loop = 1;
    work_cb(&j->req);
    j->on_loop = 0;
    if (j->later) {
        j->later = 0;
        j->err = 0;
        j->msg[0] = 0;
        j->out.len = 0;
        return 0;
    }
    job_reply(j);
    return 1;
}

void node_rpc_handler(void *arg, rpc_conn_t *conn, uint8_t type, uint64_t reqid,
                      const uint8_t *payload, size_t len)
{
    node_t *n = arg;
    metric_counter_inc(n->rpc_requests);
    if (type == RPC_CANCEL) { /* on the loop: it must not wait behind the work it stops */
        Strata__CancelRequest *c = strata__cancel_request__unpack(NULL, len, payload);
        if (!c) {
            metric_counter_inc(n->rpc_errors);
            rpc_conn_reply_error(conn, reqid, ST_EPROTO, "malformed CancelRequest");
            return;
        }
        node_query_cancel(n, c->query_id);
        strata__cancel_request__free_unpacked(c, NULL);
        rpc_conn_reply(conn, reqid, RPC_CANCEL_RESP, NULL, 0);
        return;
    }
    if (type == RPC_WRITE && n->repl && topo_replication_factor(n->topo) > 1) {
        repl_envelope_t env;
        if (repl_scan(payload, len, NULL, 0, &env) == 0 && !env.forwarded) {
            node_repl_write(n->repl, conn, reqid, payload, len);
            return;
        }
    }
    if (type == RPC_REPAIR) {
        repair_queue(n, conn, reqid, payload, len);
        return;
    }
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        rpc_conn_reply_error(conn, reqid, ST_ENOMEM, "out of memory");
        return;
    }
    j->n = n;
    j->conn = conn;
    j->reqid = reqid;
    j->type = type;
    j->payload = payload; /* the caller's, while on the loop */
    j->len = len;
    st_buf_init(&j->out);
    j->req.data = j;
    if (run_on_loop(j)) {
        st_buf_deinit(&j->out);
        free(j);
        return;
    }
    /* a forwarded write keeps the receive buffer it came in when the
     * transport can give it up: no copy of a large NodeWrite */
    uint8_t *block = type == RPC_WRITE ? rpc_conn_take_payload(conn, payload, len) : NULL;
    uint8_t *copy = block ? block : malloc(len ? len : 1);
    if (!copy) {
        st_buf_deinit(&j->out);
        free(j);
        rpc_conn_reply_error(conn, reqid, ST_ENOMEM, "out of memory");
        return;
    }
    if (!block && len)
        memcpy(copy, payload, len);
    j->block = copy;
    j->payload = block ? payload : copy;
    rpc_conn_acquire(conn);
    atomic_fetch_add(&n->jobs, 1);
    int rc = uv_queue_work(n->loop, &j->req, work_cb, after_cb);
    if (rc) {
        atomic_fetch_sub(&n->jobs, 1);
        rpc_conn_reply_error(conn, reqid, ST_EBUSY, "cannot queue work");
        rpc_conn_release(conn);
        st_buf_deinit(&j->out);
        free(copy);
        free(j);
    }
}
