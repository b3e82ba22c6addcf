/*
 * router_write — POST /write and /api/v2/write.
 *
 *   loop:    decode the body (gzip), check params, queue a job; a body
 *            that still starts with the gzip magic was sent without
 *            Content-Encoding: gzip and is refused (400) rather than parsed
 *   worker:  parse line protocol, group samples by series, place each
 *            series on its shard (topo_shard_of_labels) and encode one
 *            NodeWrite entry per shard: wbatch.h; a line older than
 *            now - [storage] retention is rejected like a malformed one
 *            (the nodes would drop it: never acknowledge what is not kept)
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

enum { SH_NONE, SH_PENDING, SH_SENT, SH_OK, SH_FAILED };

/* A shard's batch and its delivery: tried holds the replica ranks already
 * asked (each at most once per request). */
typedef struct shard {
    size_t off, len; /* its entry in wbatch_data() */
    uint8_t state;
    uint32_t tried;
    uint32_t node; /* last node asked */
    char *why;     /* failures so far, "n1: reason; n2: reason" */
} shard_t;

typedef struct wjob {
    uv_work_t w;
    router_t *r;
    http_req_t *req;
    lp_precision_t prec;
    int64_t now_ms;
    wbatch_t *batch;  /* parsed, grouped, placed and encoded (wbatch.h) */
    shard_t *sh;      /* [shards] */
    uint32_t *active; /* shards with data */
    uint32_t nactive;
    int consistency; /* NodeWrite field 2 (0 = cluster default) */
    /* RPC phase */
    int pending;
    int failed_shards;
    st_buf_t fail; /* JSON fragments of failed shards */
    int parse_err;
    const router_decoder_t *dec; /* another body format (router_write_decoded); NULL: lp */
    void *dec_arg;
} wjob_t;

static __thread lp_parser_t *tl_parser;

static void write_work(uv_work_t *w)
{
    wjob_t *j = w->data;
    if (j->dec) {
        j->parse_err = j->dec->decode(j->dec_arg, j->batch, (const char *)j->req->body,
                                      j->req->body_len, j->now_ms);
        if (!j->parse_err)
            j->parse_err = wbatch_finish(j->batch);
    } else if (!tl_parser) {
        lp_opts_t o = {.series = 1};
        if (lp_parser_create(&o, &tl_parser)) {
            j->parse_err = ST_ENOMEM;
            return;
        }
    }
    if (!j->dec) {
        lp_parser_set_precision(tl_parser, j->prec);
        lp_parser_set_default_ts(tl_parser, j->now_ms);
        j->parse_err =
            wbatch_parse(j->batch, tl_parser, (const char *)j->req->body, j->req->body_len);
    }
    if (j->parse_err)
        return;
    size_t n;
    const wbatch_shard_t *ws = wbatch_shards(j->batch, &n);
    for (size_t i = 0; i < n; i++) {
        shard_t *sh = &j->sh[ws[i].shard];
        sh->off = ws[i].off;
        sh->len = ws[i].len;
        sh->state = SH_PENDING;
        j->active[j->nactive++] = ws[i].shard;
    }
}

static void free_job(wjob_t *j)
{
    for (uint32_t i = 0; i < j->nactive; i++)
        free(j->sh[j->active[i]].why);
    free(j->sh);
    free(j->active);
    wbatch_destroy(j->batch);
    st_buf_deinit(&j->fail);
    if (j->dec && j->dec->free_arg)
        j->dec->free_arg(j->dec_arg);
    free(j);
}

static void put_rejected(wjob_t *j, st_buf_t *b)
{
    size_t nrej;
    const wbatch_rejected_t *rej = wbatch_rejected(j->batch, &nrej);
    ST_BUF_LIT(b, "\"rejected\":[");
    for (size_t i = 0; i < nrej; i++) {
        char tmp[64];
        int k = snprintf(tmp, sizeof tmp, "%s{\"line\":%llu,\"reason\":", i ? "," : "",
                         (unsigned long long)rej[i].line);
        st_buf_append(b, tmp, (size_t)k);
        st_json_str(b, rej[i].reason, strlen(rej[i].reason));
        st_buf_put_u8(b, '}');
    }
    st_buf_put_u8(b, ']');
}

static void finish(wjob_t *j)
{
    router_t *r = j->r;
    uint64_t lines_ok = wbatch_lines_ok(j->batch), lines_bad = wbatch_lines_bad(j->batch);
    metric_counter_add(r->lines_ok, lines_ok);
    metric_counter_add(r->lines_bad, lines_bad);
    metric_counter_add(r->lines_too_old, wbatch_lines_too_old(j->batch));
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
    } else if (lines_bad) {
        int k =
            snprintf(tmp, sizeof tmp, "{\"error\":\"partial write: %llu of %llu lines rejected\",",
                     (unsigned long long)lines_bad, (unsigned long long)(lines_bad + lines_ok));
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
    if (old > WRITE_WHY_MAX)
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
        char why[WRITE_REASON_MAX];
        if (type == RPC_ERROR && len)
            snprintf(why, sizeof why, "%.*s",
                     (int)(len < WRITE_NODE_TEXT_MAX ? len : WRITE_NODE_TEXT_MAX),
                     (const char *)payload);
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
            rc = st_buf_append(&b, wbatch_data(j->batch) + sh->off, sh->len);
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

static void start_write(router_t *r, http_req_t *req, lp_precision_t prec,
                        const router_decoder_t *dec, void *dec_arg);

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
        char msg[160];
        snprintf(msg, sizeof msg, "invalid precision '%.32s' (%s)", pv, lp_precision_names());
        http_respond_error(req, 400, msg);
        return;
    }
    start_write(r, req, prec, NULL, NULL);
}

void router_write_decoded(router_t *r, http_req_t *req, const router_decoder_t *dec, void *arg)
{
    start_write(r, req, LP_PREC_NS, dec, arg);
}

/* The body of a write in any format: checked, decoded on the thread pool,
 * sent. dec_arg is the job's from here (freed with it). */
static void start_write(router_t *r, http_req_t *req, lp_precision_t prec,
                        const router_decoder_t *dec, void *dec_arg)
{
    int consistency = repl_consistency_param(http_req_param(req, "consistency"));
    if (consistency < 0) {
        if (dec && dec->free_arg)
            dec->free_arg(dec_arg);
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
        if (dec && dec->free_arg)
            dec->free_arg(dec_arg);
        http_respond_error(req, code, msg);
        return;
    }
    if (req->body_len >= 2 && req->body[0] == 0x1f && req->body[1] == 0x8b) {
        /* the gzip magic, not inflated: no line of line protocol starts so */
        if (dec && dec->free_arg)
            dec->free_arg(dec_arg);
        http_respond_error(req, 400, "body is gzip-compressed: set Content-Encoding: gzip");
        return;
    }
    wjob_t *j = calloc(1, sizeof *j);
    uint32_t nshards = topo_shards(r->topo);
    if (j) {
        j->sh = calloc(nshards, sizeof *j->sh);
        j->active = calloc(nshards, sizeof *j->active);
        if (wbatch_create(r->topo, &j->batch))
            j->batch = NULL;
    }
    if (!j || !j->sh || !j->active || !j->batch) {
        if (j) {
            free(j->sh);
            free(j->active);
            wbatch_destroy(j->batch);
        }
        free(j);
        if (dec && dec->free_arg)
            dec->free_arg(dec_arg);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->dec = dec;
    j->dec_arg = dec_arg;
    j->consistency = consistency;
    j->r = r;
    j->req = req;
    j->prec = prec;
    j->now_ms = st_now_ms();
    wbatch_set_retention(j->batch, j->now_ms, topo_storage(r->topo)->retention_ms);
    st_buf_init(&j->fail);
    j->w.data = j;
    if (uv_queue_work(r->loop, &j->w, write_work, write_after) != 0) {
        free_job(j);
        http_respond_error(req, 503, "cannot queue work");
    }
}
