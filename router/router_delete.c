/*
 * router_delete — deletes through the cluster (see router_delete.h).
 *
 *   loop: parse match[], start, end (Prometheus' rules: both optional,
 *         meaning all time), consistency, dry_run
 *   loop: one task per (match[], shard): a NodeWrite whose only
 *         WriteRequest carries `delete` (a DeleteRequest: matchers, range,
 *         delete_id), sent as RPC_WRITE to the shard's first replica that
 *         is up; that node coordinates it like a write (node_delete.c). A
 *         failed or refused task moves on to the next replica of the shard.
 *         Dry runs send RPC_DELETE{dry_run} instead (no coordination).
 *   done: 204 (dry run: 200 with the counts), or 503 naming the shards that
 *         no replica accepted (retrying the same request is safe).
 *
 * clean_tombstones: RPC_DELETE{purge} to every node that is up; each
 * compacts the partitions holding deleted samples now; 204.
 */
#include "router_delete.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_util.h"
#include "repl.h"
#include "st_err.h"
#include "st_log.h"
#include "st_time.h"
#include "strata.pb-c.h"
#include "wire.h"

#define DELETE_PURGE_TIMEOUT_MS 600000 /* a purge rewrites partitions: allow minutes */

static struct {
    metric_counter_t *ok, *failed, *dry, *refused, *purges, *samples;
} dm;

int router_delete_metrics(router_t *r)
{
    const char *h = "Deletes (POST /api/v1/admin/tsdb/delete_series and router_delete_submit) "
                    "by result.";
    dm.ok = metrics_counter(r->metrics, "strata_router_deletes_total", h, "result", "ok", NULL);
    dm.failed =
        metrics_counter(r->metrics, "strata_router_deletes_total", h, "result", "failed", NULL);
    dm.dry =
        metrics_counter(r->metrics, "strata_router_deletes_total", h, "result", "dry_run", NULL);
    dm.refused =
        metrics_counter(r->metrics, "strata_router_deletes_total", h, "result", "refused", NULL);
    dm.samples = metrics_counter(r->metrics, "strata_router_deleted_samples_total",
                                 "Samples the nodes reported deleted.", NULL);
    dm.purges = metrics_counter(r->metrics, "strata_router_purges_total",
                                "POST /api/v1/admin/tsdb/clean_tombstones requests.", NULL);
    return dm.ok && dm.failed && dm.dry && dm.refused && dm.samples && dm.purges ? 0 : ST_ENOMEM;
}

typedef struct task {
    uint32_t sel, shard;
    uint32_t tried; /* replica ranks asked */
    uint8_t done, failed;
} task_t;

typedef struct djob {
    router_t *r;
    selector_t *sel;
    size_t nsel;
    int64_t start, end;
    int dry_run, consistency;
    uint64_t *ids; /* [sel]: the delete's id on every shard */
    task_t *t;
    size_t nt, pending;
    router_delete_result_t res;
    router_delete_cb cb;
    void *arg;
} djob_t;

typedef struct dcall {
    djob_t *j;
    size_t task;
    uint32_t node;
} dcall_t;

static uint64_t new_id(void)
{
    static uint64_t x;
    if (!x)
        x = (uint64_t)st_now_ms() * 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 32) ^ 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x ? x : 1;
}

static void job_free(djob_t *j)
{
    for (size_t i = 0; i < j->nsel; i++)
        selector_free(&j->sel[i]);
    free(j->sel);
    free(j->ids);
    free(j->t);
    free(j);
}

static void note(djob_t *j, uint32_t shard, uint32_t node, const char *why)
{
    size_t len = strlen(j->res.why);
    if (len + 8 < sizeof j->res.why)
        snprintf(j->res.why + len, sizeof j->res.why - len, "%sshard %u: %s: %s", len ? "; " : "",
                 shard, topo_node_id(j->r->topo, node), why);
}

/* The DeleteRequest of task k, packed. */
static int pack_delete(const djob_t *j, const task_t *k, int for_rpc, st_buf_t *out)
{
    const selector_t *s = &j->sel[k->sel];
    Strata__Matcher mm[SELECTOR_MAX_MATCHERS], *mp[SELECTOR_MAX_MATCHERS];
    for (size_t i = 0; i < s->n; i++) {
        strata__matcher__init(&mm[i]);
        mm[i].type = (Strata__Matcher__Type)s->m[i].type;
        mm[i].name.data = (uint8_t *)s->m[i].name;
        mm[i].name.len = strlen(s->m[i].name);
        mm[i].value.data = (uint8_t *)s->m[i].value;
        mm[i].value.len = strlen(s->m[i].value);
        mp[i] = &mm[i];
    }
    Strata__DeleteRequest d = STRATA__DELETE_REQUEST__INIT;
    uint32_t shard = k->shard;
    if (for_rpc) {
        d.n_shards = 1;
        d.shards = &shard;
        d.dry_run = 1;
    }
    d.n_matchers = s->n;
    d.matchers = mp;
    d.start_ms = j->start;
    d.end_ms = j->end;
    d.delete_id = j->ids[k->sel];
    if (for_rpc)
        return router_pack(out, &d.base);
    /* WriteRequest{shard, delete} by hand: protobuf-c would leave out shard 0 */
    st_buf_t db, wb;
    st_buf_init(&db);
    st_buf_init(&wb);
    int rc = router_pack(&db, &d.base);
    if (!rc)
        rc = wire_put_varint_field(&wb, WIRE_WRITE_REQUEST_SHARD, shard);
    if (!rc)
        rc = wire_put_bytes_field(&wb, WIRE_WRITE_REQUEST_DELETE, db.data, db.len);
    st_buf_deinit(&db);
    if (!rc)
        rc = repl_put_envelope(out, (uint32_t)j->consistency, 0);
    if (!rc)
        rc = repl_put_entry(out, wb.data, wb.len);
    st_buf_deinit(&wb);
    return rc;
}

static void send_task(djob_t *j, size_t ti);

static void finish_task(djob_t *j)
{
    if (--j->pending)
        return;
    int status = j->res.shards_failed ? ST_EUNAVAIL : 0;
    if (j->dry_run)
        metric_counter_inc(dm.dry);
    else
        metric_counter_inc(status ? dm.failed : dm.ok);
    if (!j->dry_run)
        metric_counter_add(dm.samples, j->res.samples);
    j->cb(j->arg, status, &j->res);
    job_free(j);
}

static void on_reply(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    dcall_t *c = arg;
    djob_t *j = c->j;
    task_t *k = &j->t[c->task];
    char why[300] = "";
    if (status == 0 && type == RPC_DELETE_RESP) {
        Strata__DeleteResponse *d = strata__delete_response__unpack(NULL, len, payload);
        if (d) {
            j->res.series += d->series;
            j->res.samples += d->samples;
            strata__delete_response__free_unpacked(d, NULL);
            k->done = 1;
        } else {
            snprintf(why, sizeof why, "malformed DeleteResponse");
        }
    } else if (status == 0 && type == RPC_WRITE_RESP) {
        Strata__NodeWriteResult *w = strata__node_write_result__unpack(NULL, len, payload);
        if (w && w->n_results == 1 && w->results[0]->code == 0) {
            j->res.samples += w->results[0]->samples;
            k->done = 1;
        } else {
            snprintf(why, sizeof why, "%s",
                     !w || w->n_results != 1 ? "malformed NodeWriteResult"
                     : w->results[0]->error && *w->results[0]->error
                         ? w->results[0]->error
                         : st_strerror(w->results[0]->code));
        }
        if (w)
            strata__node_write_result__free_unpacked(w, NULL);
    } else if (status == 0) {
        snprintf(why, sizeof why, "unexpected reply type %u", type);
    } else if (type == RPC_ERROR) {
        snprintf(why, sizeof why, "%.*s", (int)(len < 250 ? len : 250), (const char *)payload);
    } else {
        snprintf(why, sizeof why, "%s", st_strerror(status));
    }
    if (!k->done)
        note(j, k->shard, c->node, why);
    size_t ti = c->task;
    free(c);
    if (k->done)
        finish_task(j);
    else
        send_task(j, ti); /* the next replica, or give up */
}

/* Send task ti to its next untried replica that is up (any untried one if
 * none is up); give up when every replica was tried. */
static void send_task(djob_t *j, size_t ti)
{
    router_t *r = j->r;
    task_t *k = &j->t[ti];
    uint32_t rf = (uint32_t)topo_replication_factor(r->topo);
    const uint32_t *reps = topo_shard_replicas(r->topo, k->shard);
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t rank = 0; rank < rf; rank++) {
            uint32_t node = reps[rank];
            if (k->tried & (1u << rank))
                continue;
            if (pass == 0 && !router_up_fn(r, node))
                continue;
            k->tried |= 1u << rank;
            st_buf_t b;
            st_buf_init(&b);
            dcall_t *c = malloc(sizeof *c);
            int rc = c ? pack_delete(j, k, j->dry_run, &b) : ST_ENOMEM;
            if (!rc) {
                *c = (dcall_t){j, ti, node};
                rc = rpc_client_call(r->clients[node], j->dry_run ? RPC_DELETE : RPC_WRITE, b.data,
                                     b.len, (unsigned)r->timeout_ms, on_reply, c);
            }
            st_buf_deinit(&b);
            if (!rc)
                return;
            free(c);
            metric_counter_inc(r->rpc_fail);
            note(j, k->shard, node, st_strerror(rc));
        }
    }
    k->failed = 1;
    j->res.shards_failed++;
    finish_task(j);
}

int router_delete_submit(router_t *r, const selector_t *sel, size_t nsel, int64_t start,
                         int64_t end, int dry_run, int consistency, router_delete_cb cb, void *arg)
{
    if (nsel == 0 || nsel > ROUTER_DELETE_MAX_SELECTORS || start > end)
        return ST_EINVAL;
    uint32_t shards = (uint32_t)topo_shards(r->topo);
    djob_t *j = calloc(1, sizeof *j);
    if (!j)
        return ST_ENOMEM;
    j->r = r;
    j->start = start;
    j->end = end;
    j->dry_run = dry_run;
    j->consistency = consistency;
    j->cb = cb;
    j->arg = arg;
    j->sel = calloc(nsel, sizeof *j->sel);
    j->ids = calloc(nsel, sizeof *j->ids);
    j->nt = nsel * shards;
    j->t = calloc(j->nt ? j->nt : 1, sizeof *j->t);
    if (!j->sel || !j->ids || !j->t) {
        job_free(j);
        return ST_ENOMEM;
    }
    /* the selectors are copied: their strings into one arena each */
    for (size_t i = 0; i < nsel; i++) {
        size_t bytes = 0;
        for (size_t m = 0; m < sel[i].n; m++)
            bytes += strlen(sel[i].m[m].name) + strlen(sel[i].m[m].value) + 2;
        char *a = malloc(bytes + 1);
        if (!a) {
            job_free(j);
            return ST_ENOMEM;
        }
        j->sel[i].arena = a;
        j->nsel = i + 1;
        for (size_t m = 0; m < sel[i].n; m++) {
            j->sel[i].m[m].type = sel[i].m[m].type;
            size_t nl = strlen(sel[i].m[m].name) + 1, vl = strlen(sel[i].m[m].value) + 1;
            memcpy(a, sel[i].m[m].name, nl);
            j->sel[i].m[m].name = a;
            a += nl;
            memcpy(a, sel[i].m[m].value, vl);
            j->sel[i].m[m].value = a;
            a += vl;
        }
        j->sel[i].n = sel[i].n;
        j->ids[i] = new_id();
    }
    for (size_t i = 0; i < nsel; i++)
        for (uint32_t s = 0; s < shards; s++)
            j->t[i * shards + s] = (task_t){(uint32_t)i, s, 0, 0, 0};
    j->pending = j->nt + 1; /* +1: nothing finishes before every task was sent */
    for (size_t i = 0; i < j->nt; i++)
        send_task(j, i);
    finish_task(j);
    return 0;
}

/* ---- HTTP ---- */

typedef struct hreq {
    http_req_t *req;
    int dry_run;
} hreq_t;

static void on_done(void *arg, int status, const router_delete_result_t *res)
{
    hreq_t *h = arg;
    if (status) {
        char msg[600];
        snprintf(msg, sizeof msg, "delete failed on %u shard(s), retry the request: %s",
                 res->shards_failed, res->why);
        http_respond_error(h->req, 503, msg);
    } else if (h->dry_run) {
        char body[200];
        int n = snprintf(body, sizeof body,
                         "{\"status\":\"success\",\"data\":{\"series\":%llu,\"samples\":%llu}}",
                         (unsigned long long)res->series, (unsigned long long)res->samples);
        http_respond(h->req, 200, "application/json", body, (size_t)n);
    } else {
        http_respond(h->req, 204, NULL, NULL, 0);
    }
    free(h);
}

void router_handle_delete_series(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_POST && req->method != HTTP_METHOD_PUT) {
        metric_counter_inc(dm.refused);
        http_respond_error(req, 405, "use POST or PUT");
        return;
    }
    char err[400];
    http_params_t params;
    selector_t sel[ROUTER_DELETE_MAX_SELECTORS];
    size_t nsel = 0;
    int64_t start = INT64_MIN, end = INT64_MAX;
    const char *v;
    int rc = router_read_load(req, &params, err, sizeof err);
    if (!rc && (v = http_params_get(&params, "start")) && *v &&
        http_parse_time_ms(v, strlen(v), &start) != 0) {
        snprintf(err, sizeof err, "invalid parameter \"start\": cannot parse \"%.64s\" as a time",
                 v);
        rc = -1;
    }
    if (!rc && (v = http_params_get(&params, "end")) && *v &&
        http_parse_time_ms(v, strlen(v), &end) != 0) {
        snprintf(err, sizeof err, "invalid parameter \"end\": cannot parse \"%.64s\" as a time", v);
        rc = -1;
    }
    if (!rc && end < start) {
        snprintf(err, sizeof err, "end timestamp must not be before start time");
        rc = -1;
    }
    if (!rc)
        rc = router_read_matches(&params, sel, ROUTER_DELETE_MAX_SELECTORS, &nsel, err, sizeof err);
    if (!rc && nsel == 0) {
        snprintf(err, sizeof err, "no match[] parameter provided");
        rc = -1;
    }
    int consistency = 0;
    if (!rc && (v = http_params_get(&params, "consistency")) &&
        (consistency = repl_consistency_param(v)) < 0) {
        snprintf(err, sizeof err, "invalid consistency \"%.32s\" (sync, quorum or async)", v);
        rc = -1;
    }
    int dry = (v = http_params_get(&params, "dry_run")) && (!strcmp(v, "1") || !strcmp(v, "true"));
    hreq_t *h = rc ? NULL : malloc(sizeof *h);
    if (!rc && !h) {
        snprintf(err, sizeof err, "out of memory");
        rc = -2;
    }
    if (!rc) {
        *h = (hreq_t){req, dry};
        rc = router_delete_submit(r, sel, nsel, start, end, dry, consistency, on_done, h);
        if (rc) {
            free(h);
            snprintf(err, sizeof err, "%s", st_strerror(rc));
            rc = rc == ST_ENOMEM ? -2 : -1;
        }
    }
    for (size_t i = 0; i < nsel; i++)
        selector_free(&sel[i]);
    http_params_deinit(&params);
    if (rc) {
        metric_counter_inc(dm.refused);
        http_respond_error(req, rc == -2 ? 503 : 400, err);
    }
}

typedef struct pjob {
    http_req_t *req;
    size_t pending;
    char why[400];
} pjob_t;

static void purge_done(pjob_t *p)
{
    if (--p->pending)
        return;
    if (p->why[0])
        http_respond_error(p->req, 503, p->why);
    else
        http_respond(p->req, 204, NULL, NULL, 0);
    free(p);
}

typedef struct pcall {
    pjob_t *p;
    const char *node;
} pcall_t;

static void on_purge(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    pcall_t *c = arg;
    if (status || type != RPC_DELETE_RESP) {
        size_t l = strlen(c->p->why);
        snprintf(c->p->why + l, sizeof c->p->why - l, "%spurge failed on %s: %.*s", l ? "; " : "",
                 c->node, type == RPC_ERROR ? (int)(len < 200 ? len : 200) : 0,
                 type == RPC_ERROR ? (const char *)payload : "");
    }
    pjob_t *p = c->p;
    free(c);
    purge_done(p);
}

void router_handle_clean_tombstones(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_POST && req->method != HTTP_METHOD_PUT) {
        http_respond_error(req, 405, "use POST or PUT");
        return;
    }
    metric_counter_inc(dm.purges);
    pjob_t *p = calloc(1, sizeof *p);
    if (!p) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    p->req = req;
    p->pending = 1;
    Strata__DeleteRequest d = STRATA__DELETE_REQUEST__INIT;
    d.purge = 1;
    st_buf_t b;
    st_buf_init(&b);
    int rc = router_pack(&b, &d.base);
    for (uint32_t n = 0; !rc && n < topo_node_count(r->topo); n++) {
        pcall_t *c = malloc(sizeof *c);
        if (!c)
            break;
        *c = (pcall_t){p, topo_node_id(r->topo, n)};
        p->pending++;
        if (rpc_client_call(r->clients[n], RPC_DELETE, b.data, b.len, DELETE_PURGE_TIMEOUT_MS,
                            on_purge, c) != 0) {
            free(c);
            p->pending--;
            size_t l = strlen(p->why);
            snprintf(p->why + l, sizeof p->why - l, "%spurge not sent to %s", l ? "; " : "",
                     topo_node_id(r->topo, n));
        }
    }
    st_buf_deinit(&b);
    purge_done(p);
}
