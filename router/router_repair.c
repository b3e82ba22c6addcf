/*
 * router_repair — POST /api/v1/admin/repair (admin role): run anti-entropy
 * repair now on the nodes (node_repair.h on the node side).
 *
 * Parameters (query string): shard=N (default: every shard), node=ID (run
 * only on that node; default: every node holding the shard, so the shard
 * is repaired in both directions), from=ID (pull only from that replica:
 * with node and shard, "copy shard N from `from` to `node`"), dry_run=1
 * (compare and count, write nothing). Each selected node gets one
 * RPC_REPAIR and answers when its passes are done; the reply is JSON:
 *
 *   {"status":"success","data":{"dry_run":false,"nodes":[{"node":"n1",
 *    "error":"","shards":[{"shard":0,"cells_differing":3,"series":2,
 *    "samples":40,"conflicts":0,"resolved":0,"bytes":1234,"files":0,
 *    "skipped":0,"duration_ms":5,"error":""}]}],"series":2,"samples":40,
 *    "conflicts":0,"resolved":0,"bytes":1234,"files":0,"skipped":0}}
 * (conflicts: same timestamp, another value; resolved: those of them
 * replaced because the peer's version was higher; files: segment files
 * copied as files, their samples counted in samples; skipped: sealed
 * partitions not compared, unchanged since last found equal).
 *
 * A node that cannot be reached or refuses shows its error in its entry;
 * the status is still 200 (the summary says what happened where). A bad
 * parameter is 400 with the reason.
 *
 * /cluster shows what the nodes report in STATS (router_repair_note): per
 * node "rebuilding", per shard "repair" (the latest pass among its
 * replicas: last_ms, divergent cells, samples pulled, conflicts, error).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "router_repair.h"
#include "st_err.h"
#include "st_text.h"
#include "strata.pb-c.h"

#define REPAIR_RPC_TIMEOUT_MS (30u * 60 * 1000) /* a node's whole repair */

typedef struct rjob {
    http_req_t *req;
    router_t *r;
    size_t pending;
    int dry_run;
    uint32_t nnodes;
    st_buf_t *node_json; /* [nodes]: each node's entry ("" = not asked) */
    uint64_t series, samples, conflicts, resolved, bytes, files, skipped;
} rjob_t;

typedef struct rcall {
    rjob_t *j;
    uint32_t node;
} rcall_t;

static void finish(rjob_t *j)
{
    if (--j->pending)
        return;
    st_buf_t b;
    st_buf_init(&b);
    char head[128];
    int k =
        snprintf(head, sizeof head, "{\"status\":\"success\",\"data\":{\"dry_run\":%s,\"nodes\":[",
                 j->dry_run ? "true" : "false");
    int rc = st_buf_append(&b, head, (size_t)k);
    int first = 1;
    for (uint32_t n = 0; n < j->nnodes; n++) {
        if (!j->node_json[n].len)
            continue;
        if (!first)
            rc |= st_buf_append(&b, ",", 1);
        first = 0;
        rc |= st_buf_append(&b, j->node_json[n].data, j->node_json[n].len);
    }
    char tail[320];
    k = snprintf(tail, sizeof tail,
                 "],\"series\":%llu,\"samples\":%llu,\"conflicts\":%llu,\"resolved\":%llu,"
                 "\"bytes\":%llu,\"files\":%llu,\"skipped\":%llu}}",
                 (unsigned long long)j->series, (unsigned long long)j->samples,
                 (unsigned long long)j->conflicts, (unsigned long long)j->resolved,
                 (unsigned long long)j->bytes, (unsigned long long)j->files,
                 (unsigned long long)j->skipped);
    rc |= st_buf_append(&b, tail, (size_t)k);
    if (rc)
        http_respond_error(j->req, 503, "out of memory");
    else
        http_respond(j->req, 200, "application/json", (const char *)b.data, b.len);
    st_buf_deinit(&b);
    for (uint32_t n = 0; n < j->nnodes; n++)
        st_buf_deinit(&j->node_json[n]);
    free(j->node_json);
    free(j);
}

/* A node's entry: {"node":ID,"error":E,"shards":[...]}. */
static int node_entry(rjob_t *j, uint32_t node, const char *err, size_t errlen,
                      const Strata__RepairResponse *resp)
{
    st_buf_t *b = &j->node_json[node];
    const char *id = topo_node_id(j->r->topo, node);
    int rc = st_buf_append(b, "{\"node\":", 8);
    rc |= st_json_str(b, id, strlen(id));
    rc |= st_buf_append(b, ",\"error\":", 9);
    rc |= st_json_str(b, err, errlen);
    rc |= st_buf_append(b, ",\"shards\":[", 11);
    for (size_t i = 0; resp && i < resp->n_shards; i++) {
        const Strata__RepairState *s = resp->shards[i];
        char line[480];
        int k = snprintf(
            line, sizeof line,
            "%s{\"shard\":%u,\"cells_differing\":%llu,\"series\":%llu,\"samples\":%llu,"
            "\"conflicts\":%llu,\"resolved\":%llu,\"bytes\":%llu,\"files\":%llu,"
            "\"skipped\":%llu,\"duration_ms\":%llu,\"error\":",
            i ? "," : "", s->shard, (unsigned long long)s->cells_differing,
            (unsigned long long)s->series_pulled, (unsigned long long)s->samples_pulled,
            (unsigned long long)s->samples_conflicting, (unsigned long long)s->samples_resolved,
            (unsigned long long)s->bytes, (unsigned long long)s->files_copied,
            (unsigned long long)s->partitions_skipped, (unsigned long long)s->duration_ms);
        rc |= st_buf_append(b, line, (size_t)k);
        rc |= st_json_str(b, s->error ? s->error : "", s->error ? strlen(s->error) : 0);
        rc |= st_buf_append(b, "}", 1);
        j->series += s->series_pulled;
        j->samples += s->samples_pulled;
        j->conflicts += s->samples_conflicting;
        j->resolved += s->samples_resolved;
        j->bytes += s->bytes;
        j->files += s->files_copied;
        j->skipped += s->partitions_skipped;
    }
    rc |= st_buf_append(b, "]}", 2);
    return rc;
}

static void on_reply(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    rcall_t *c = arg;
    rjob_t *j = c->j;
    if (status == 0 && type == RPC_REPAIR_RESP) {
        Strata__RepairResponse *resp = strata__repair_response__unpack(NULL, len, payload);
        if (resp) {
            node_entry(j, c->node, "", 0, resp);
            strata__repair_response__free_unpacked(resp, NULL);
        } else {
            node_entry(j, c->node, "malformed RepairResponse", 24, NULL);
        }
    } else if (type == RPC_ERROR) {
        node_entry(j, c->node, (const char *)payload, len, NULL);
    } else {
        const char *e = st_strerror(status ? status : ST_EPROTO);
        node_entry(j, c->node, e, strlen(e), NULL);
    }
    free(c);
    finish(j);
}

void router_handle_repair(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_POST && req->method != HTTP_METHOD_PUT) {
        http_respond_error(req, 405, "use POST or PUT");
        return;
    }
    const char *sv = http_req_param(req, "shard"), *nv = http_req_param(req, "node");
    const char *fv = http_req_param(req, "from"), *dv = http_req_param(req, "dry_run");
    char err[200];
    long shard = -1;
    int node = -1, from = -1;
    if (sv && *sv) {
        char *end;
        shard = strtol(sv, &end, 10);
        if (*end || shard < 0 || shard >= (long)topo_shards(r->topo)) {
            snprintf(err, sizeof err, "invalid parameter \"shard\": \"%.32s\" (0..%u)", sv,
                     topo_shards(r->topo) - 1);
            http_respond_error(req, 400, err);
            return;
        }
    }
    if (nv && *nv && (node = topo_node_index(r->topo, nv)) < 0) {
        snprintf(err, sizeof err, "invalid parameter \"node\": unknown node \"%.64s\"", nv);
        http_respond_error(req, 400, err);
        return;
    }
    if (fv && *fv && (from = topo_node_index(r->topo, fv)) < 0) {
        snprintf(err, sizeof err, "invalid parameter \"from\": unknown node \"%.64s\"", fv);
        http_respond_error(req, 400, err);
        return;
    }
    int dry = dv && (!strcmp(dv, "1") || !strcmp(dv, "true"));
    uint32_t nn = topo_node_count(r->topo);
    rjob_t *j = calloc(1, sizeof *j);
    if (!j || !(j->node_json = calloc(nn, sizeof *j->node_json))) {
        free(j);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->req = req;
    j->r = r;
    j->dry_run = dry;
    j->nnodes = nn;
    j->pending = 1;
    uint32_t sh = (uint32_t)shard;
    Strata__RepairRequest q = STRATA__REPAIR_REQUEST__INIT;
    q.dry_run = dry;
    q.peer = from >= 0 ? (char *)topo_node_id(r->topo, (uint32_t)from) : "";
    if (shard >= 0) {
        q.n_shards = 1;
        q.shards = &sh;
    }
    st_buf_t b;
    st_buf_init(&b);
    int rc = router_pack(&b, &q.base);
    for (uint32_t n = 0; !rc && n < nn; n++) {
        if (node >= 0 && n != (uint32_t)node)
            continue;
        if (shard >= 0 && topo_replica_rank(r->topo, sh, n) < 0)
            continue; /* not a replica of the shard */
        if (from >= 0 && n == (uint32_t)from)
            continue;
        rcall_t *c = malloc(sizeof *c);
        if (!c)
            break;
        *c = (rcall_t){j, n};
        j->pending++;
        if (rpc_client_call(r->clients[n], RPC_REPAIR, b.data, b.len, REPAIR_RPC_TIMEOUT_MS,
                            on_reply, c) != 0) {
            free(c);
            j->pending--;
            node_entry(j, n, "not sent (node unreachable or busy)", 35, NULL);
        }
    }
    st_buf_deinit(&b);
    finish(j);
}

/* ---- what the nodes report (STATS) ---- */

typedef struct seen_state {
    int64_t last_ms;
    uint64_t cells, samples, conflicts;
    char node[72];
    char error[96];
} seen_state_t;

struct router_repair_seen {
    uint8_t *rebuilding; /* [nodes] */
    seen_state_t *s;     /* [nodes * shards] */
};

void router_repair_note(router_t *r, uint32_t node, const Strata__NodeStats *st)
{
    uint32_t nn = topo_node_count(r->topo), ns = topo_shards(r->topo);
    if (!r->repair_seen) {
        struct router_repair_seen *v = calloc(1, sizeof *v);
        if (!v || !(v->rebuilding = calloc(nn, 1)) ||
            !(v->s = calloc((size_t)nn * ns, sizeof *v->s))) {
            if (v)
                free(v->rebuilding);
            free(v);
            return;
        }
        r->repair_seen = v;
    }
    struct router_repair_seen *v = r->repair_seen;
    v->rebuilding[node] = st->rebuilding;
    for (size_t i = 0; i < st->n_repair; i++) {
        const Strata__RepairState *x = st->repair[i];
        if (x->shard >= ns)
            continue;
        seen_state_t *d = &v->s[(size_t)node * ns + x->shard];
        d->last_ms = x->last_ms;
        d->cells = x->cells_differing;
        d->samples = x->samples_pulled;
        d->conflicts = x->samples_conflicting;
        snprintf(d->node, sizeof d->node, "%s", topo_node_id(r->topo, node));
        snprintf(d->error, sizeof d->error, "%s", x->error ? x->error : "");
    }
}

int router_repair_node_json(router_t *r, uint32_t node, st_buf_t *b)
{
    int on = r->repair_seen && r->repair_seen->rebuilding[node];
    return on ? st_buf_append(b, ",\"rebuilding\":true", 18)
              : st_buf_append(b, ",\"rebuilding\":false", 19);
}

int router_repair_shard_json(router_t *r, uint32_t shard, st_buf_t *b)
{
    if (!r->repair_seen)
        return 0;
    uint32_t nn = topo_node_count(r->topo), ns = topo_shards(r->topo);
    const seen_state_t *best = NULL;
    for (uint32_t n = 0; n < nn; n++) {
        const seen_state_t *x = &r->repair_seen->s[(size_t)n * ns + shard];
        if (x->last_ms && (!best || x->last_ms > best->last_ms))
            best = x;
    }
    if (!best)
        return 0;
    char tmp[256];
    int k = snprintf(tmp, sizeof tmp,
                     ",\"repair\":{\"last_ms\":%lld,\"node\":\"%s\",\"divergent_cells\":%llu,"
                     "\"samples_pulled\":%llu,\"conflicts\":%llu,\"error\":",
                     (long long)best->last_ms, best->node, (unsigned long long)best->cells,
                     (unsigned long long)best->samples, (unsigned long long)best->conflicts);
    int rc = st_buf_append(b, tmp, (size_t)k);
    rc |= st_json_str(b, best->error, strlen(best->error));
    rc |= st_buf_append(b, "}", 1);
    return rc;
}

void router_repair_free(router_t *r)
{
    if (!r->repair_seen)
        return;
    free(r->repair_seen->rebuilding);
    free(r->repair_seen->s);
    free(r->repair_seen);
    r->repair_seen = NULL;
}
