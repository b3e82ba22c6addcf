/*
 * router_write — POST /write and /api/v2/write.
 *
 *   loop:    decode the body (gzip), check params, queue a job; a body
 *            that still starts with the gzip magic was sent without
 *            Content-Encoding: gzip and is refused (400) rather than parsed
 *   worker:  parse line protocol, group samples by series, place each
 *            series on its shard (topo_shard_of_labels) and encode one
 *            NodeWrite entry per shard, cut into pieces of about
 *            ROUTER_WRITE_PIECE bytes: wbatch.h; a line older than
 *            now - [storage] retention or newer than now + max_future is
 *            rejected like a malformed one (never acknowledge what is not
 *            kept; never open a partition decades away)
 *   loop:    each piece goes to its shard's first replica that is up (the
 *            coordinator, which replicates it: node_repl.h), in RPC_WRITEs
 *            of about ROUTER_WRITE_PIECE bytes, at most ROUTER_WRITE_WINDOW
 *            of them in flight per node: no callback of the loop copies or
 *            compresses more than a few MB, so heartbeats (PING/PONG on the
 *            same loop and connection) are never stuck behind a huge frame;
 *            a piece whose coordinator cannot be reached (down, timed out,
 *            connection lost) moves on to its next replica; a piece whose
 *            node does not know some series references (ST_ENOREF: series
 *            the router sent with labels before go as their reference
 *            alone, wbatch.h) goes again to the same node with labels
 *            (wbatch_piece_labels); nothing is sent
 *            after request_timeout; when every piece is decided: 204, 400
 *            (per-line errors, or samples a node's cardinality limit refused;
 *            the rest was written) or 503 (the shards that missed their
 *            consistency or that a node refused as busy, with Retry-After)
 *
 * Other formats (router_promrw.c) drive the same pipeline with
 * router_write_submit(): their build step fills the wbatch instead of the
 * line-protocol parser, the delivery and the answers are these.
 *
 * Retrying a body is safe: the same (series, timestamp) rewrites the same
 * sample (last write wins). A 503 means some shards were not written as
 * asked (some pieces of them may have been): retry the same body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "lp.h"
#include "repl.h"
#include "router.h"
#include "st_err.h"
#include "st_time.h"
#include "st_text.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "wbatch.h"

#define WRITE_WHY_MAX 1000      /* bytes of failure reasons kept per shard */
#define WRITE_NODE_TEXT_MAX 250 /* bytes of a node's error text quoted */
#define WRITE_REASON_MAX 300    /* bytes of one failure reason */
#define WRITE_LIMIT_MAX 64      /* bytes of a limit's name */
#define WRITE_RETRY_AFTER_S 1   /* Retry-After when a busy node gave none */

enum { P_PENDING, P_SENT, P_OK, P_FAILED };

/* A piece of a shard's batch (wbatch_shards() entry) and its delivery:
 * tried holds the replica ranks already asked (each at most once). */
typedef struct piece {
    uint32_t shard;
    size_t off, len; /* in wbatch_data() */
    uint8_t state;
    uint32_t tried;
    uint32_t node;        /* last node asked */
    uint8_t handoff;      /* stored, but the coordinator's own copy failed: sent on
                             to the next replica, which hints the failed one; the
                             outcome of that does not change the answer */
    uint8_t labels;       /* sent again with labels: the bytes below */
    const uint8_t *ldata; /* wbatch_piece_labels (lives with the batch) */
    size_t llen;
} piece_t;

/* What a shard's pieces came to. */
typedef struct shard {
    uint8_t failed, busy;
    uint32_t node; /* last node asked */
    char *why;     /* failures so far, "n1: reason; n2: reason" */
    /* samples a node's cardinality limit refused (first limit named) */
    uint64_t refused, limit_value;
    uint32_t refused_node;
    char limit[WRITE_LIMIT_MAX];
    char *refused_why;
} shard_t;

/* The batch, kept while a call may still send from its bytes
 * (rpc_client_call_pieces: until the transport releases them, which can
 * be after the job is answered): the job holds one reference, each call
 * in flight one. Loop thread only. */
typedef struct batch_ref {
    wbatch_t *b;
    unsigned refs;
} batch_ref_t;

static void batch_unref(void *arg)
{
    batch_ref_t *h = arg;
    if (--h->refs == 0) {
        wbatch_destroy(h->b);
        free(h);
    }
}

typedef struct wjob {
    uv_work_t w;
    router_t *r;
    http_req_t *req;
    router_write_src_t src; /* fills the batch on the worker */
    uint64_t deadline;      /* uv_now: nothing is sent after it */
    wbatch_t *batch;        /* parsed, grouped, placed and encoded (wbatch.h) */
    batch_ref_t *hold;      /* owns batch */
    shard_t *sh;            /* [shards] */
    piece_t *pc;            /* [npc] */
    size_t npc;
    uint32_t *inflight; /* [node]: RPCs out */
    int consistency;    /* NodeWrite field 2 (0 = cluster default) */
    /* RPC phase */
    int pending;
    unsigned retry_after_s; /* the largest a busy node asked for */
    int parse_err;
    char msg[ROUTER_WRITE_MSG_MAX]; /* the build step's answer to a bad body */
} wjob_t;

static __thread lp_parser_t *tl_parser;

/* The line-protocol source: its precision and default timestamp. */
typedef struct lp_src {
    lp_precision_t prec;
    int64_t now_ms;
} lp_src_t;

static int lp_build(void *arg, http_req_t *req, wbatch_t *b, char *msg, size_t msglen)
{
    lp_src_t *ls = arg;
    (void)msg;
    (void)msglen;
    if (!tl_parser) {
        lp_opts_t o = {.series = 1, .names_only = 1};
        if (lp_parser_create(&o, &tl_parser))
            return ST_ENOMEM;
    }
    lp_parser_set_precision(tl_parser, ls->prec);
    lp_parser_set_default_ts(tl_parser, ls->now_ms);
    return wbatch_parse(b, tl_parser, (const char *)req->body, req->body_len);
}

static void lp_done(void *arg, router_t *r, const wbatch_t *b)
{
    if (b) {
        metric_counter_add(r->lines_ok, wbatch_lines_ok(b));
        metric_counter_add(r->lines_bad, wbatch_lines_bad(b));
        metric_counter_add(r->lines_too_old, wbatch_lines_too_old(b));
        metric_counter_add(r->lines_too_far_future, wbatch_lines_too_far_future(b));
    }
    free(arg);
}

static void write_work(uv_work_t *w)
{
    wjob_t *j = w->data;
    j->parse_err = j->src.build(j->src.arg, j->req, j->batch, j->msg, sizeof j->msg);
    if (j->parse_err)
        return;
    size_t n;
    const wbatch_shard_t *ws = wbatch_shards(j->batch, &n);
    j->pc = calloc(n ? n : 1, sizeof *j->pc);
    if (!j->pc) {
        j->parse_err = ST_ENOMEM;
        return;
    }
    for (size_t i = 0; i < n; i++)
        j->pc[i] = (piece_t){.shard = ws[i].shard, .off = ws[i].off, .len = ws[i].len};
    j->npc = n;
}

static void free_job(wjob_t *j, int counted)
{
    if (j->src.done)
        j->src.done(j->src.arg, j->r, counted ? j->batch : NULL);
    for (uint32_t s = 0; s < topo_shards(j->r->topo); s++) {
        free(j->sh[s].why);
        free(j->sh[s].refused_why);
    }
    free(j->sh);
    free(j->pc);
    free(j->inflight);
    batch_unref(j->hold);
    free(j);
}

static void put_rejected(wjob_t *j, st_buf_t *b)
{
    size_t nrej;
    const wbatch_rejected_t *rej = wbatch_rejected(j->batch, &nrej);
    ST_BUF_LIT(b, "\"rejected\":[");
    for (size_t i = 0; i < nrej; i++) {
        char tmp[64];
        int k = snprintf(tmp, sizeof tmp, "%s{\"%s\":%llu,\"reason\":", i ? "," : "", j->src.item,
                         (unsigned long long)rej[i].line);
        st_buf_append(b, tmp, (size_t)k);
        st_json_str(b, rej[i].reason, strlen(rej[i].reason));
        st_buf_put_u8(b, '}');
    }
    st_buf_put_u8(b, ']');
}

/* "shards":[{"shard":3,"node":"n1","error":"..."},...] of the failed
 * shards; returns how many. */
static int put_failed(wjob_t *j, st_buf_t *b)
{
    const topo_t *t = j->r->topo;
    int n = 0;
    ST_BUF_LIT(b, "\"shards\":[");
    for (uint32_t s = 0; s < topo_shards(t); s++) {
        shard_t *sh = &j->sh[s];
        if (!sh->failed)
            continue;
        char tmp[96];
        int k = snprintf(tmp, sizeof tmp, "%s{\"shard\":%u,\"node\":", n ? "," : "", s);
        st_buf_append(b, tmp, (size_t)k);
        const char *id = topo_node_id(t, sh->node);
        st_json_str(b, id, strlen(id));
        ST_BUF_LIT(b, ",\"error\":");
        const char *why = sh->why ? sh->why : "no replica reachable";
        st_json_str(b, why, strlen(why));
        st_buf_put_u8(b, '}');
        n++;
    }
    st_buf_put_u8(b, ']');
    return n;
}

/* "refused":[{"shard":3,"node":"n1","limit":"max_series","value":1000,
 * "samples_dropped":12,"reason":"..."},...]; returns the samples refused
 * and the first limit in *first (NULL when none). */
static uint64_t put_refused(wjob_t *j, st_buf_t *b, const shard_t **first)
{
    const topo_t *t = j->r->topo;
    uint64_t total = 0;
    *first = NULL;
    ST_BUF_LIT(b, "\"refused\":[");
    for (uint32_t s = 0; s < topo_shards(t); s++) {
        const shard_t *sh = &j->sh[s];
        if (!sh->refused)
            continue;
        char tmp[160];
        int k = snprintf(tmp, sizeof tmp, "%s{\"shard\":%u,\"node\":", total ? "," : "", s);
        st_buf_append(b, tmp, (size_t)k);
        const char *id = topo_node_id(t, sh->refused_node);
        st_json_str(b, id, strlen(id));
        ST_BUF_LIT(b, ",\"limit\":");
        st_json_str(b, sh->limit, strlen(sh->limit));
        k = snprintf(tmp, sizeof tmp, ",\"value\":%llu,\"samples_dropped\":%llu,\"reason\":",
                     (unsigned long long)sh->limit_value, (unsigned long long)sh->refused);
        st_buf_append(b, tmp, (size_t)k);
        const char *why = sh->refused_why ? sh->refused_why : "";
        st_json_str(b, why, strlen(why));
        st_buf_put_u8(b, '}');
        if (!*first)
            *first = sh;
        total += sh->refused;
    }
    st_buf_put_u8(b, ']');
    return total;
}

/* A confined user writes only series its selector matches (auth.h). */
#define CONFINE_WHY "forbidden: series outside the user's selector"
static int confine_filter(void *arg, const st_label_t *l, size_t n)
{
    return auth_user_allows(arg, l, n);
}

static void finish(wjob_t *j)
{
    router_t *r = j->r;
    uint64_t lines_ok = wbatch_lines_ok(j->batch), lines_bad = wbatch_lines_bad(j->batch);
    int failed = 0, busy = 0;
    for (uint32_t s = 0; s < topo_shards(r->topo); s++) {
        failed += j->sh[s].failed;
        busy += j->sh[s].busy;
    }
    st_buf_t b;
    st_buf_init(&b);
    char tmp[400];
    if (failed) {
        metric_counter_inc(r->write_503);
        if (busy)
            metric_counter_inc(r->write_busy);
        int k = snprintf(tmp, sizeof tmp,
                         "{\"error\":\"%d shard(s) did not meet write consistency%s; retrying the "
                         "same body is safe\",",
                         failed, busy ? " (node busy: over head_max_mb, retry later)" : "");
        st_buf_append(&b, tmp, (size_t)k);
        put_failed(j, &b);
        st_buf_put_u8(&b, ',');
        const shard_t *first;
        put_refused(j, &b, &first);
        st_buf_put_u8(&b, ',');
        put_rejected(j, &b);
        st_buf_put_u8(&b, '}');
        char ra[16];
        snprintf(ra, sizeof ra, "%u", j->retry_after_s ? j->retry_after_s : WRITE_RETRY_AFTER_S);
        http_header_t h = {"Retry-After", ra};
        http_respond_headers(j->req, 503, "application/json", &h, busy ? 1 : 0, b.data, b.len);
        st_buf_deinit(&b);
        free_job(j, 1);
        return;
    }
    st_buf_t refused;
    st_buf_init(&refused);
    const shard_t *first;
    uint64_t nref = put_refused(j, &refused, &first);
    if (nref) {
        metric_counter_inc(r->write_refused);
        int k =
            snprintf(tmp, sizeof tmp,
                     "{\"error\":\"partial write: %llu sample(s) refused by %s (%llu) on "
                     "node %s; %llu of %llu lines rejected\",",
                     (unsigned long long)nref, first->limit, (unsigned long long)first->limit_value,
                     topo_node_id(r->topo, first->refused_node), (unsigned long long)lines_bad,
                     (unsigned long long)(lines_bad + lines_ok));
        st_buf_append(&b, tmp, (size_t)k);
        st_buf_append(&b, refused.data, refused.len);
        st_buf_put_u8(&b, ',');
        put_rejected(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 400, "application/json", b.data, b.len);
    } else if (lines_bad && !lines_ok && wbatch_lines_forbidden(j->batch) == lines_bad) {
        int k = snprintf(tmp, sizeof tmp,
                         "{\"error\":\"forbidden: every one of %llu %s is outside the series "
                         "user '%s' may write\",",
                         (unsigned long long)lines_bad, j->src.items,
                         auth_user_name(auth_gate_user(j->req)));
        st_buf_append(&b, tmp, (size_t)k);
        put_rejected(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 403, "application/json", b.data, b.len);
    } else if (lines_bad) {
        int k = snprintf(tmp, sizeof tmp, "{\"error\":\"partial write: %llu of %llu %s rejected\",",
                         (unsigned long long)lines_bad, (unsigned long long)(lines_bad + lines_ok),
                         j->src.items);
        st_buf_append(&b, tmp, (size_t)k);
        put_rejected(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 400, "application/json", b.data, b.len);
    } else {
        http_respond(j->req, 204, NULL, NULL, 0);
    }
    st_buf_deinit(&refused);
    st_buf_deinit(&b);
    free_job(j, 1);
}

static void shard_note(wjob_t *j, uint32_t s, uint32_t node, const char *why)
{
    shard_t *sh = &j->sh[s];
    const char *id = topo_node_id(j->r->topo, node);
    size_t old = sh->why ? strlen(sh->why) : 0, add = strlen(id) + strlen(why) + 4;
    if (old > WRITE_WHY_MAX)
        return;
    if (sh->why && strstr(sh->why, why) && strstr(sh->why, id))
        return; /* the pieces of a shard often fail alike: say it once */
    char *n = realloc(sh->why, old + add + 1);
    if (!n)
        return;
    snprintf(n + old, add + 1, "%s%s: %s", old ? "; " : "", id, why);
    sh->why = n;
}

static void piece_failed(wjob_t *j, piece_t *p)
{
    if (p->handoff) { /* already stored by quorum: the handoff was best effort */
        p->state = P_OK;
        return;
    }
    p->state = P_FAILED;
    j->sh[p->shard].failed = 1;
    j->sh[p->shard].node = p->node;
}

/* A node took the piece but a cardinality limit refused some samples. */
static void piece_refused(wjob_t *j, const piece_t *p, const Strata__ShardResult *sr)
{
    shard_t *sh = &j->sh[p->shard];
    if (!sh->refused) {
        sh->refused_node = p->node;
        snprintf(sh->limit, sizeof sh->limit, "%s",
                 sr->refused_limit && *sr->refused_limit ? sr->refused_limit : "limit");
        sh->limit_value = sr->refused_limit_value;
        if (sr->refused_reason && *sr->refused_reason)
            sh->refused_why = strdup(sr->refused_reason);
    }
    sh->refused += sr->refused_samples;
    router_count_refused(j->r, sh->limit, sr->refused_samples);
}

typedef struct call_ctx {
    wjob_t *j;
    uint32_t node;
    uint32_t n;
    uint32_t pieces[]; /* indexes into j->pc, in the order sent */
} call_ctx_t;

static void send_round(wjob_t *j);

/* Transport failures move the pieces on to their next replica; other
 * answers are final. */
static int retryable(int status, uint8_t type)
{
    if (type == RPC_ERROR && status != ST_EBUSY && status != ST_ECLOSED && status != ST_ETIMEDOUT &&
        status != ST_EUNAVAIL)
        return 0;
    return status == ST_ETIMEDOUT || status == ST_EUNAVAIL || status == ST_ECLOSED ||
           status == ST_EBUSY;
}

static int next_rank(const wjob_t *j, const piece_t *p);

/* The node answered piece p with sr. */
static void piece_result(wjob_t *j, piece_t *p, const Strata__ShardResult *sr)
{
    router_t *r = j->r;
    if (p->handoff) {
        p->state = P_OK;
        return;
    }
    if (sr->code == 0) {
        metric_counter_add(r->samples, sr->samples);
        if (sr->refused_samples)
            piece_refused(j, p, sr);
        p->state = P_OK;
        if (sr->coordinator_missed && next_rank(j, p) >= 0) {
            p->handoff = 1;
            p->state = P_PENDING;
        }
        return;
    }
    if (sr->code == ST_ENOREF && !p->labels) { /* again, same node, with labels */
        int rank = topo_replica_rank(r->topo, p->shard, p->node);
        if (rank >= 0 &&
            wbatch_piece_labels(j->batch, (size_t)(p - j->pc), &p->ldata, &p->llen) == 0) {
            metric_counter_inc(r->write_labels);
            p->labels = 1;
            p->tried &= ~(1u << rank);
            p->state = P_PENDING;
            return;
        }
    }
    shard_note(j, p->shard, p->node, sr->error && *sr->error ? sr->error : "failed");
    if (sr->code == ST_EBUSY) {
        /* over head_max_mb: the other replicas hold the same head load;
         * the sender retries after a while (503 + Retry-After) */
        j->sh[p->shard].busy = 1;
        if (sr->retry_after_s > j->retry_after_s)
            j->retry_after_s = sr->retry_after_s;
        piece_failed(j, p);
    } else if (sr->code == ST_EUNAVAIL) {
        p->state = P_PENDING; /* consistency not met from there: a coordinator on
                                 the other side of a partition may meet it
                                 (idempotent) */
    } else {
        piece_failed(j, p);
    }
}

static void on_write_resp(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    call_ctx_t *c = arg;
    wjob_t *j = c->j;
    router_t *r = j->r;
    j->inflight[c->node]--;
    Strata__NodeWriteResult *res = NULL;
    char why[WRITE_REASON_MAX];
    if (status == 0) {
        res = strata__node_write_result__unpack(NULL, len, payload);
        if (!res || res->n_results != c->n) {
            /* results come one per entry, in the order sent */
            snprintf(why, sizeof why, "%s",
                     res ? "no result for every shard in the node's reply"
                         : "malformed reply from node");
            status = ST_EPROTO;
            type = 0;
        }
    } else if (type == RPC_ERROR && len) {
        snprintf(why, sizeof why, "%.*s",
                 (int)(len < WRITE_NODE_TEXT_MAX ? len : WRITE_NODE_TEXT_MAX),
                 (const char *)payload);
    } else {
        snprintf(why, sizeof why, "%s", st_strerror(status));
    }
    if (status != 0) {
        metric_counter_inc(r->rpc_fail);
        int again = retryable(status, type);
        for (uint32_t i = 0; i < c->n; i++) {
            piece_t *p = &j->pc[c->pieces[i]];
            shard_note(j, p->shard, c->node, why);
            if (again)
                p->state = P_PENDING;
            else
                piece_failed(j, p);
        }
    } else {
        for (uint32_t i = 0; i < c->n; i++) {
            piece_t *p = &j->pc[c->pieces[i]];
            if (res->results[i]->shard != p->shard) {
                shard_note(j, p->shard, c->node, "reply out of order");
                piece_failed(j, p);
                continue;
            }
            piece_result(j, p, res->results[i]);
        }
    }
    if (res)
        strata__node_write_result__free_unpacked(res, NULL);
    free(c);
    j->pending--;
    send_round(j);
}

/* Rank of piece p's first untried replica that is up, or -1. */
static int next_rank(const wjob_t *j, const piece_t *p)
{
    const uint32_t *rep = topo_shard_replicas(j->r->topo, p->shard);
    uint32_t rf = topo_replication_factor(j->r->topo);
    for (uint32_t k = 0; k < rf; k++)
        if (!(p->tried & (1u << k)) && router_node_up(j->r, rep[k]))
            return (int)k;
    return -1;
}

/* A pending piece that cannot be sent: no untried replica is up, or the
 * request's time is over. */
static void piece_give_up(wjob_t *j, piece_t *p, const char *why_all)
{
    const topo_t *t = j->r->topo;
    const uint32_t *rep = topo_shard_replicas(t, p->shard);
    uint32_t rf = topo_replication_factor(t);
    if (why_all) {
        shard_note(j, p->shard, p->node, why_all);
    } else {
        for (uint32_t k = 0; k < rf; k++)
            if (!(p->tried & (1u << k))) {
                shard_note(j, p->shard, rep[k], "node is down");
                p->tried |= 1u << k;
                p->node = rep[k];
            }
    }
    metric_counter_inc(j->r->rpc_fail);
    piece_failed(j, p);
}

/* One RPC to `node` with its pending pieces, up to about ROUTER_WRITE_PIECE
 * bytes. Returns 1 when a call went out. */
static int send_one(wjob_t *j, uint32_t node, unsigned timeout_ms)
{
    router_t *r = j->r;
    const topo_t *t = r->topo;
    uint32_t cnt = 0;
    size_t bytes = 0;
    for (size_t i = 0; i < j->npc && bytes < ROUTER_WRITE_PIECE; i++) {
        piece_t *p = &j->pc[i];
        int rank = p->state == P_PENDING ? next_rank(j, p) : -1;
        if (rank >= 0 && topo_shard_replicas(t, p->shard)[rank] == node) {
            cnt++;
            bytes += p->labels ? p->llen : p->len;
        }
    }
    if (!cnt)
        return 0;
    call_ctx_t *c = malloc(sizeof *c + cnt * sizeof c->pieces[0]);
    rpc_piece_t *iov = malloc(cnt * sizeof *iov);
    st_buf_t env;
    st_buf_init(&env);
    if (!c || !iov || repl_put_envelope(&env, (uint32_t)j->consistency, 0)) {
        for (size_t i = 0; i < j->npc; i++) {
            piece_t *p = &j->pc[i];
            int rank = p->state == P_PENDING ? next_rank(j, p) : -1;
            if (rank >= 0 && topo_shard_replicas(t, p->shard)[rank] == node) {
                shard_note(j, p->shard, node, "out of memory");
                piece_failed(j, p);
            }
        }
        free(c);
        free(iov);
        st_buf_deinit(&env);
        return 0;
    }
    /* the envelope, then the pieces sent from the batch where they lie */
    uint32_t n = 0;
    for (size_t i = 0; i < j->npc && n < cnt; i++) {
        piece_t *p = &j->pc[i];
        int rank = p->state == P_PENDING ? next_rank(j, p) : -1;
        if (rank < 0 || topo_shard_replicas(t, p->shard)[rank] != node)
            continue;
        iov[n] = p->labels ? (rpc_piece_t){p->ldata, p->llen}
                           : (rpc_piece_t){wbatch_data(j->batch) + p->off, p->len};
        p->tried |= 1u << rank;
        p->node = node;
        p->state = P_SENT;
        c->pieces[n++] = (uint32_t)i;
    }
    c->j = j;
    c->node = node;
    c->n = n;
    j->hold->refs++; /* the call's, given back by the transport (batch_unref) */
    int rc = rpc_client_call_pieces(r->clients[node], RPC_WRITE, env.data, env.len, iov, n,
                                    batch_unref, j->hold, timeout_ms, on_write_resp, c);
    st_buf_deinit(&env);
    free(iov);
    if (rc) {
        j->hold->refs--;
        const char *why = rc == ST_EBUSY ? "node queue full (overloaded)" : st_strerror(rc);
        metric_counter_inc(r->rpc_fail);
        for (uint32_t i = 0; i < n; i++) {
            shard_note(j, j->pc[c->pieces[i]].shard, node, why);
            j->pc[c->pieces[i]].state = P_PENDING; /* next round: the next replica */
        }
        free(c);
        return 0;
    }
    j->inflight[node]++;
    j->pending++;
    return 1;
}

/* Send pending pieces to their first untried replica that is up, at most
 * ROUTER_WRITE_WINDOW calls in flight per node; finish when nothing is
 * pending or in flight. */
static void send_round(wjob_t *j)
{
    router_t *r = j->r;
    uint32_t nn = topo_node_count(r->topo);
    uint64_t now = uv_now(r->loop);
    j->pending++; /* guard while sending */
    int again = 1;
    while (again) {
        again = 0;
        for (size_t i = 0; i < j->npc; i++) {
            piece_t *p = &j->pc[i];
            if (p->state != P_PENDING)
                continue;
            if (now >= j->deadline)
                piece_give_up(j, p, "request_timeout reached before it could be sent");
            else if (next_rank(j, p) < 0)
                piece_give_up(j, p, NULL);
        }
        unsigned left = now < j->deadline ? (unsigned)(j->deadline - now) : 1;
        for (uint32_t node = 0; node < nn; node++)
            while (j->inflight[node] < ROUTER_WRITE_WINDOW && send_one(j, node, left))
                ;
        /* a call that could not be queued put its pieces back: they go to
         * their next replica now, unless that node is busy with our calls */
        for (size_t i = 0; i < j->npc && !again; i++) {
            piece_t *p = &j->pc[i];
            int rank = p->state == P_PENDING ? next_rank(j, p) : -1;
            again = rank >= 0 &&
                    j->inflight[topo_shard_replicas(r->topo, p->shard)[rank]] < ROUTER_WRITE_WINDOW;
        }
    }
    if (--j->pending == 0)
        finish(j);
}

static void write_after(uv_work_t *w, int status)
{
    wjob_t *j = w->data;
    (void)status;
    if (j->parse_err && j->msg[0]) {
        int code = j->parse_err == ST_ELIMIT ? 413 : j->parse_err == ST_ENOMEM ? 503 : 400;
        http_respond_error(j->req, code, j->msg);
        free_job(j, 0);
        return;
    }
    if (j->parse_err) {
        http_respond_error(j->req, j->parse_err == ST_ENOMEM ? 503 : 500,
                           st_strerror(j->parse_err));
        free_job(j, 0);
        return;
    }
    if (j->src.drop_body)
        http_req_drop_body(j->req); /* parsed: only the batch is needed now */
    send_round(j);
}

static int parse_precision(const char *v, lp_precision_t *out)
{
    if (!v)
        return 0;
    return lp_precision_parse(v, strlen(v), out);
}

/* The checks every text write body gets before its job is queued:
 * consistency=, Content-Encoding (gzip inflated in place), a gzip body sent
 * without the header. Returns the consistency (>= 0), or -1 after answering. */
static int body_checks(router_t *r, http_req_t *req)
{
    int consistency = repl_consistency_param(http_req_param(req, "consistency"));
    if (consistency < 0) {
        http_respond_error(req, 400,
                           "invalid consistency (sync, quorum, async; InfluxDB's all, any, one)");
        return -1;
    }
    int rc = http_req_decode_body(req, r->max_body);
    if (rc) {
        int code = rc == ST_ELIMIT ? 413 : rc == ST_EPROTO ? 415 : rc == ST_ENOMEM ? 503 : 400;
        const char *msg = rc == ST_ELIMIT   ? "decoded body exceeds max_body_bytes"
                          : rc == ST_EPROTO ? "unsupported Content-Encoding (use gzip or none)"
                                            : "corrupt gzip body";
        http_respond_error(req, code, msg);
        return -1;
    }
    if (req->body_len >= 2 && req->body[0] == 0x1f && req->body[1] == 0x8b) {
        /* the gzip magic, not inflated: no text line starts so */
        http_respond_error(req, 400, "body is gzip-compressed: set Content-Encoding: gzip");
        return -1;
    }
    return consistency;
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
        char msg[160];
        snprintf(msg, sizeof msg, "invalid precision '%.32s' (%s)", pv, lp_precision_names());
        http_respond_error(req, 400, msg);
        return;
    }
    int consistency = body_checks(r, req);
    if (consistency < 0)
        return;
    lp_src_t *ls = malloc(sizeof *ls);
    if (!ls) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    ls->prec = prec;
    ls->now_ms = st_now_ms();
    router_write_src_t src = {lp_build, lp_done, "line", "lines", ls, 1};
    router_write_submit(r, req, consistency, ls->now_ms, &src);
}

/* router_write_decoded's source: the decoder and its argument. */
typedef struct dec_src {
    router_decoder_t dec;
    void *arg;
    int64_t now_ms;
} dec_src_t;

static int dec_build(void *arg, http_req_t *req, wbatch_t *b, char *msg, size_t msglen)
{
    dec_src_t *ds = arg;
    (void)msg;
    (void)msglen;
    int rc = ds->dec.decode(ds->arg, b, (const char *)req->body, req->body_len, ds->now_ms);
    return rc ? rc : wbatch_finish(b);
}

static void dec_done(void *arg, router_t *r, const wbatch_t *b)
{
    dec_src_t *ds = arg;
    lp_done(NULL, r, b);
    if (ds->dec.free_arg)
        ds->dec.free_arg(ds->arg);
    free(ds);
}

void router_write_decoded(router_t *r, http_req_t *req, const router_decoder_t *dec, void *arg)
{
    int consistency = body_checks(r, req);
    dec_src_t *ds = consistency < 0 ? NULL : malloc(sizeof *ds);
    if (!ds) {
        if (dec->free_arg)
            dec->free_arg(arg);
        if (consistency >= 0)
            http_respond_error(req, 503, "out of memory");
        return;
    }
    ds->dec = *dec;
    ds->arg = arg;
    ds->now_ms = st_now_ms();
    router_write_src_t src = {dec_build, dec_done, "line", "lines", ds, 0};
    router_write_submit(r, req, consistency, ds->now_ms, &src);
}

void router_write_submit(router_t *r, http_req_t *req, int consistency, int64_t now_ms,
                         const router_write_src_t *src)
{
    wjob_t *j = calloc(1, sizeof *j);
    uint32_t nshards = topo_shards(r->topo);
    if (j) {
        j->sh = calloc(nshards, sizeof *j->sh);
        j->inflight = calloc(topo_node_count(r->topo), sizeof *j->inflight);
        j->hold = malloc(sizeof *j->hold);
        if (wbatch_create(r->topo, &j->batch))
            j->batch = NULL;
    }
    if (!j || !j->sh || !j->inflight || !j->batch || !j->hold) {
        if (j) {
            free(j->sh);
            free(j->inflight);
            free(j->hold);
            wbatch_destroy(j->batch);
        }
        free(j);
        if (src->done)
            src->done(src->arg, r, NULL);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    *j->hold = (batch_ref_t){j->batch, 1};
    j->src = *src;
    j->consistency = consistency;
    j->r = r;
    j->req = req;
    const topo_storage_t *st = topo_storage(r->topo);
    j->deadline = uv_now(r->loop) + (uint64_t)r->timeout_ms;
    wbatch_set_retention(j->batch, now_ms, st->retention_ms);
    wbatch_set_max_future(j->batch, now_ms, st->max_future_ms);
    wbatch_set_piece_max(j->batch, ROUTER_WRITE_PIECE);
    wbatch_set_refs(j->batch, r->wrefs);
    const auth_user_t *u = auth_gate_user(req);
    if (u && auth_user_selector(u))
        wbatch_set_filter(j->batch, confine_filter, (void *)u, CONFINE_WHY);
    j->w.data = j;
    if (uv_queue_work(r->loop, &j->w, write_work, write_after) != 0) {
        free_job(j, 0);
        http_respond_error(req, 503, "cannot queue work");
    }
}
