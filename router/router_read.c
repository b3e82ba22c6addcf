/*
 * router_read — /api/v1/export, /api/v1/series, /api/v1/labels and
 * /api/v1/label/<name>/values, fanned out to one replica per shard.
 *
 * A read is a small state machine driven by RPC replies: for each group of
 * the read plan (readplan.h: a node and the shards it answers for), for
 * each match[] selector, request pages (EXPORT / SERIES with a cursor)
 * until the node says done. A replica that fails before its group streamed
 * anything is replaced by the shards' next replicas. With
 * read_consistency=quorum, floor(RF/2)+1 replicas answer per shard: series
 * and labels are de-duplicated as usual, exports are collected (sset.h),
 * folded and sent at the end. Export pages are turned
 * into JSON lines on the thread pool and streamed to the client with
 * chunked encoding; when the client reads slowly the next page is not
 * requested until the HTTP layer reports the buffer drained, so memory
 * stays bounded by one page. Series and label answers are collected,
 * de-duplicated and sent at the end. A shard whose replica cannot answer
 * fails the read with 503 naming it (never a silent partial result).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_json.h"
#include "http_util.h"
#include "readplan.h"
#include "router.h"
#include "selector.h"
#include "sset.h"
#include "st_err.h"
#include "st_text.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "wire.h"

enum { K_EXPORT, K_SERIES, K_LABELS, K_VALUES };

#define MAX_SEL 16

typedef struct rjob {
    router_t *r;
    http_req_t *req;
    int kind;
    selector_t sel[MAX_SEL];
    size_t nsel, cur_sel;
    int64_t start, end;
    char *label_name;
    /* which replica answers for which shard: groups outer, selectors inner */
    readplan_t plan;
    int planned, need, partial, buffered;
    size_t cur_group;
    int group_emitted; /* the current group streamed something: no failover */
    char missing[256];
    sset_t set; /* buffered export (read_consistency=quorum): merged at the end */
    uint32_t cursor_shard;
    uint64_t cursor_pos;
    int started, paused, closed, busy; /* busy: an RPC or work job is in flight */
    /* de-duplication of series across selectors (hash set) */
    uint64_t *seen;
    size_t nseen, seencap;
    /* collected answers */
    st_buf_t acc;
    size_t nacc;
    char **strs;
    size_t nstrs, strcap;
    /* page conversion */
    uv_work_t w;
    uint8_t *page;
    size_t page_len;
    st_buf_t json;
    int page_done;
    uint32_t next_shard;
    uint64_t next_pos;
    int page_err;
} rjob_t;

static void next_request(rjob_t *j);

static void free_job(rjob_t *j)
{
    for (size_t i = 0; i < j->nsel; i++)
        selector_free(&j->sel[i]);
    if (j->planned)
        readplan_free(&j->plan);
    sset_free(&j->set);
    free(j->label_name);
    free(j->seen);
    st_buf_deinit(&j->acc);
    st_buf_deinit(&j->json);
    for (size_t i = 0; i < j->nstrs; i++)
        free(j->strs[i]);
    free(j->strs);
    free(j->page);
    free(j);
}

/* 1 if h was new (and is now in the set), 0 if seen, <0 on OOM. */
static int seen_add(rjob_t *j, uint64_t h)
{
    if ((j->nseen + 1) * 2 > j->seencap) {
        size_t cap = j->seencap ? j->seencap * 2 : 1024;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t)
            return ST_ENOMEM;
        for (size_t i = 0; i < j->seencap; i++) {
            if (!j->seen[i])
                continue;
            size_t k = j->seen[i] & (cap - 1);
            while (t[k])
                k = (k + 1) & (cap - 1);
            t[k] = j->seen[i];
        }
        free(j->seen);
        j->seen = t;
        j->seencap = cap;
    }
    if (h == 0)
        h = 1; /* 0 marks an empty slot */
    size_t k = h & (j->seencap - 1);
    while (j->seen[k]) {
        if (j->seen[k] == h)
            return 0;
        k = (k + 1) & (j->seencap - 1);
    }
    j->seen[k] = h;
    j->nseen++;
    return 1;
}

static void fail_unavailable(rjob_t *j, const char *why)
{
    char msg[600];
    size_t off = 0;
    off += (size_t)snprintf(msg, sizeof msg, "no replica answered for shard(s) ");
    const readplan_group_t *g = &j->plan.g[j->cur_group];
    for (size_t i = 0; i < g->n && off < 300; i++)
        off += (size_t)snprintf(msg + off, sizeof msg - off, "%s%u", i ? "," : "", g->shards[i]);
    snprintf(msg + off, sizeof msg - off, " (node %s: %s)", topo_node_id(j->r->topo, g->node), why);
    metric_counter_inc(j->r->rpc_fail);
    if (!j->started) {
        router_prom_error(j->req, 503, "unavailable", msg);
    } else {
        /* too late for a status code: end the stream with an error line */
        st_buf_t b;
        st_buf_init(&b);
        ST_BUF_LIT(&b, "{\"error\":");
        st_json_str(&b, msg, strlen(msg));
        ST_BUF_LIT(&b, "}\n");
        http_respond_chunk(j->req, b.data, b.len);
        http_respond_end(j->req);
        st_buf_deinit(&b);
    }
    free_job(j);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void put_warnings(rjob_t *j, st_buf_t *b)
{
    if (!j->missing[0])
        return;
    char w[400];
    int k = snprintf(w, sizeof w,
                     ",\"warnings\":[\"partial response: no replica answered for shard(s) %s\"]",
                     j->missing);
    st_buf_append(b, w, (size_t)k);
}

/* Worker: fold a buffered (quorum) export and render it. */
static void render_work(uv_work_t *w)
{
    rjob_t *j = w->data;
    st_buf_reset(&j->json);
    j->page_err = sset_merge(&j->set);
    for (size_t i = 0; i < j->set.n && !j->page_err; i++) {
        const sset_series_t *fs = &j->set.s[i];
        if (export_json_line(&j->json, fs->labels, fs->nlabels, fs->ts, fs->v, fs->n) < 0)
            j->page_err = ST_ENOMEM;
    }
}

static void export_headers(rjob_t *j, http_header_t *h, size_t *nh)
{
    *nh = 0;
    if (j->missing[0]) {
        h[0].name = "X-Strata-Missing-Shards";
        h[0].value = j->missing;
        *nh = 1;
    }
}

static void render_after(uv_work_t *w, int status)
{
    rjob_t *j = w->data;
    (void)status;
    j->busy = 0;
    if (j->closed) {
        free_job(j);
        return;
    }
    if (j->page_err) {
        router_prom_error(j->req, 503, "internal", st_strerror(j->page_err));
    } else {
        http_header_t h[1];
        size_t nh;
        export_headers(j, h, &nh);
        http_respond_headers(j->req, 200, "application/stream+json", h, nh, j->json.data,
                             j->json.len);
    }
    free_job(j);
}

static void finish(rjob_t *j)
{
    st_buf_t b;
    st_buf_init(&b);
    switch (j->kind) {
    case K_EXPORT:
        if (j->buffered) {
            j->w.data = j;
            j->busy = 1;
            if (uv_queue_work(j->r->loop, &j->w, render_work, render_after) != 0) {
                j->busy = 0;
                router_prom_error(j->req, 503, "internal", "cannot queue work");
                free_job(j);
            }
            st_buf_deinit(&b);
            return;
        }
        if (j->started) {
            http_respond_end(j->req);
        } else {
            http_header_t h[1];
            size_t nh;
            export_headers(j, h, &nh);
            http_respond_headers(j->req, 200, "application/stream+json", h, nh, "", 0);
        }
        break;
    case K_SERIES:
        ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":[");
        st_buf_append(&b, j->acc.data, j->acc.len);
        ST_BUF_LIT(&b, "]");
        put_warnings(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 200, "application/json", b.data, b.len);
        break;
    default:
        if (j->nstrs)
            qsort(j->strs, j->nstrs, sizeof *j->strs, cmp_str);
        ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":[");
        for (size_t i = 0, k = 0; i < j->nstrs; i++) {
            if (i && strcmp(j->strs[i], j->strs[i - 1]) == 0)
                continue;
            if (k++)
                st_buf_put_u8(&b, ',');
            st_json_str(&b, j->strs[i], strlen(j->strs[i]));
        }
        ST_BUF_LIT(&b, "]");
        put_warnings(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 200, "application/json", b.data, b.len);
    }
    st_buf_deinit(&b);
    free_job(j);
}

/* Worker: a ReadResponse page -> JSON (export) or JSON objects (series). */
static void page_work(uv_work_t *w)
{
    rjob_t *j = w->data;
    const uint8_t *p = j->page, *end = p + j->page_len;
    wire_field_t f;
    int rc;
    j->page_done = 1;
    j->next_shard = 0;
    j->next_pos = 0;
    st_buf_reset(&j->json);
    if (j->buffered) {
        j->page_err = sset_add_page(&j->set, j->page, j->page_len, &j->page_done, &j->next_shard,
                                    &j->next_pos);
        return;
    }
    int64_t *ts = NULL;
    double *v = NULL;
    size_t cap = 0;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == 2 && f.type == WIRE_VARINT) {
            j->page_done = f.u != 0;
        } else if (f.num == 3 && f.type == WIRE_VARINT) {
            j->next_shard = (uint32_t)f.u;
        } else if (f.num == 4 && f.type == WIRE_VARINT) {
            j->next_pos = f.u;
        } else if (f.num == 1 && f.type == WIRE_LEN) {
            wire_series_t s;
            if ((rc = wire_series_decode(f.data, f.len, &s)) < 0)
                break;
            if (j->nsel > 1 || j->kind == K_SERIES) {
                int fresh = seen_add(j, st_labels_hash(s.labels, s.nlabels));
                if (fresh < 0) {
                    rc = fresh;
                    break;
                }
                if (!fresh)
                    continue;
            }
            if (j->kind == K_SERIES) {
                if (j->nacc++)
                    st_buf_put_u8(&j->acc, ',');
                rc = export_json_labels(&j->acc, s.labels, s.nlabels);
                if (j->nacc > ROUTER_MAX_SERIES)
                    rc = ST_ELIMIT;
                if (rc)
                    break;
                continue;
            }
            if (s.nvals > cap) {
                cap = s.nvals;
                int64_t *nts = realloc(ts, cap * sizeof *ts);
                double *nv = nts ? realloc(v, cap * sizeof *v) : NULL;
                if (!nts || !nv) {
                    ts = nts ? nts : ts;
                    rc = ST_ENOMEM;
                    break;
                }
                ts = nts;
                v = nv;
            }
            size_t n;
            if ((rc = wire_series_samples(&s, ts, v, cap, &n)) < 0)
                break;
            if ((rc = export_json_line(&j->json, s.labels, s.nlabels, ts, v, n)) < 0)
                break;
        }
    }
    free(ts);
    free(v);
    j->page_err = rc < 0 ? rc : 0;
}

static void on_notify(http_req_t *req, int event, void *arg)
{
    rjob_t *j = arg;
    if (event == HTTP_NOTIFY_DRAIN) {
        if (j->paused && !j->busy) {
            j->paused = 0;
            next_request(j);
        }
    } else {
        j->closed = 1;
        if (!j->busy) {
            if (j->started)
                http_respond_end(j->req);
            free_job(j);
        }
    }
}

static void advance(rjob_t *j)
{
    if (!j->page_done) {
        j->cursor_shard = j->next_shard;
        j->cursor_pos = j->next_pos;
    } else {
        j->cur_sel++;
        j->cursor_shard = 0;
        j->cursor_pos = 0;
    }
}

/* The current group's replica failed: move its shards on to their next
 * replica, unless part of its answer was already streamed (then the
 * stream ends with an error line). Returns 1 when the read goes on. */
static int failover(rjob_t *j, const char *why)
{
    if (j->group_emitted)
        return 0;
    const readplan_group_t *g = &j->plan.g[j->cur_group];
    st_warn("read failed over", "node=%s err=\"%s\"", topo_node_id(j->r->topo, g->node), why);
    metric_counter_inc(j->r->rpc_fail);
    uint32_t before = j->plan.nmissing;
    if (readplan_failover(&j->plan, j->cur_group, router_up_fn, j->r))
        return 0;
    if (j->plan.nmissing != before) {
        readplan_missing_str(&j->plan, j->missing, sizeof j->missing);
        if (!j->partial)
            return 0;
    }
    j->cur_group++;
    j->cur_sel = 0;
    j->cursor_shard = 0;
    j->cursor_pos = 0;
    j->group_emitted = 0;
    return 1;
}

static void page_after(uv_work_t *w, int status)
{
    rjob_t *j = w->data;
    j->busy = 0;
    free(j->page);
    j->page = NULL;
    if (j->closed) {
        if (j->started)
            http_respond_end(j->req);
        free_job(j);
        return;
    }
    if (j->page_err) {
        if (j->page_err == ST_ELIMIT) {
            http_respond_error(j->req, 422,
                               j->buffered ? "too many samples for a quorum export (limit "
                                             "50000000); narrow match[] or the time range, or "
                                             "use read_consistency=one"
                                           : "too many series; narrow match[] or the time range");
            free_job(j);
        } else {
            fail_unavailable(j, st_strerror(j->page_err));
        }
        return;
    }
    advance(j);
    if (j->kind == K_EXPORT && j->json.len) {
        j->group_emitted = 1;
        if (!j->started) {
            http_header_t h[1];
            size_t nh;
            export_headers(j, h, &nh);
            if (http_respond_start_headers(j->req, 200, "application/stream+json", h, nh)) {
                free_job(j);
                return;
            }
            http_req_notify(j->req, on_notify, j);
            j->started = 1;
        }
        int rc = http_respond_chunk(j->req, j->json.data, j->json.len);
        st_buf_reset(&j->json);
        if (rc < 0) {
            http_respond_end(j->req);
            free_job(j);
            return;
        }
        if (rc == 1) {
            j->paused = 1;
            return; /* on_notify(DRAIN) resumes */
        }
    }
    next_request(j);
}

static void on_reply(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    rjob_t *j = arg;
    j->busy = 0;
    if (j->closed) {
        if (j->started)
            http_respond_end(j->req);
        free_job(j);
        return;
    }
    if (status != 0) {
        char why[300];
        if (type == RPC_ERROR && len)
            snprintf(why, sizeof why, "%.*s", (int)(len < 250 ? len : 250), (const char *)payload);
        else
            snprintf(why, sizeof why, "%s", st_strerror(status));
        if (status == ST_EINVAL && type == RPC_ERROR) {
            /* the node rejected the query itself (e.g. a bad regex) */
            if (j->started)
                http_respond_end(j->req);
            else
                router_prom_error(j->req, 400, "bad_data", why);
            free_job(j);
            return;
        }
        if (failover(j, why))
            next_request(j);
        else
            fail_unavailable(j, why);
        return;
    }
    if (j->kind == K_LABELS || j->kind == K_VALUES) {
        const uint8_t *p = payload, *end = payload + len;
        wire_field_t f;
        int rc;
        while ((rc = wire_next(&p, end, &f)) == 1) {
            if (f.num != 1 || f.type != WIRE_LEN)
                continue;
            if (j->nstrs == j->strcap) {
                size_t cap = j->strcap ? j->strcap * 2 : 64;
                char **ns = realloc(j->strs, cap * sizeof *ns);
                if (!ns) {
                    rc = ST_ENOMEM;
                    break;
                }
                j->strs = ns;
                j->strcap = cap;
            }
            char *s = strndup((const char *)f.data, f.len);
            if (!s) {
                rc = ST_ENOMEM;
                break;
            }
            j->strs[j->nstrs++] = s;
        }
        if (rc < 0) {
            fail_unavailable(j, "malformed reply");
            return;
        }
        j->page_done = 1;
        advance(j);
        next_request(j);
        return;
    }
    /* export / series page: convert off the loop */
    j->page = malloc(len ? len : 1);
    if (!j->page) {
        fail_unavailable(j, "out of memory");
        return;
    }
    if (len)
        memcpy(j->page, payload, len);
    j->page_len = len;
    j->w.data = j;
    j->busy = 1;
    if (uv_queue_work(j->r->loop, &j->w, page_work, page_after) != 0) {
        j->busy = 0;
        fail_unavailable(j, "cannot queue work");
    }
}

static void next_request(rjob_t *j)
{
    router_t *r = j->r;
    size_t nsel = j->nsel ? j->nsel : 1;
    for (;;) {
        if (j->cur_group >= j->plan.ng) {
            finish(j);
            return;
        }
        if (j->cur_sel >= nsel || j->plan.g[j->cur_group].n == 0) {
            j->cur_group++;
            j->cur_sel = 0;
            j->cursor_shard = 0;
            j->cursor_pos = 0;
            j->group_emitted = 0;
            continue;
        }
        break;
    }
    const readplan_group_t *g = &j->plan.g[j->cur_group];
    Strata__ReadRequest rq = STRATA__READ_REQUEST__INIT;
    Strata__Matcher mm[64], *mp[64];
    rq.n_shards = g->n;
    rq.shards = g->shards;
    if (j->nsel) {
        selector_t *s = &j->sel[j->cur_sel];
        for (size_t i = 0; i < s->n; i++) {
            strata__matcher__init(&mm[i]);
            mm[i].type = (Strata__Matcher__Type)s->m[i].type;
            mm[i].name = (ProtobufCBinaryData){strlen(s->m[i].name), (uint8_t *)s->m[i].name};
            mm[i].value = (ProtobufCBinaryData){strlen(s->m[i].value), (uint8_t *)s->m[i].value};
            mp[i] = &mm[i];
        }
        rq.n_matchers = s->n;
        rq.matchers = mp;
    }
    rq.start_ms = j->start;
    rq.end_ms = j->end;
    rq.max_samples = ROUTER_EXPORT_PAGE;
    rq.max_series = 50000;
    rq.cursor_shard = j->cursor_shard;
    rq.cursor_pos = j->cursor_pos;
    if (j->label_name)
        rq.label_name = (ProtobufCBinaryData){strlen(j->label_name), (uint8_t *)j->label_name};
    size_t len = strata__read_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fail_unavailable(j, "out of memory");
        return;
    }
    strata__read_request__pack(&rq, buf);
    uint8_t type = j->kind == K_EXPORT   ? RPC_EXPORT
                   : j->kind == K_SERIES ? RPC_SERIES
                   : j->kind == K_LABELS ? RPC_LABEL_NAMES
                                         : RPC_LABEL_VALUES;
    j->busy = 1;
    int rc =
        rpc_client_call(r->clients[g->node], type, buf, len, (unsigned)r->timeout_ms, on_reply, j);
    free(buf);
    if (rc) {
        j->busy = 0;
        const char *why = rc == ST_EBUSY ? "node queue full (overloaded)" : st_strerror(rc);
        if (failover(j, why))
            next_request(j);
        else
            fail_unavailable(j, why);
    }
}

/* Parse params, plan which node serves which shards, start. */
static void start_read(router_t *r, http_req_t *req, int kind, const char *label_name)
{
    metric_counter_inc(r->reads);
    rjob_t *j = calloc(1, sizeof *j);
    if (!j) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->r = r;
    j->req = req;
    j->kind = kind;
    j->start = INT64_MIN;
    j->end = INT64_MAX;
    st_buf_init(&j->acc);
    st_buf_init(&j->json);
    char err[400];
    const char *v;
    if ((v = http_req_param(req, "start")) && *v &&
        http_parse_time_ms(v, strlen(v), &j->start) != 0) {
        snprintf(err, sizeof err, "invalid parameter \"start\": cannot parse \"%.64s\" as a time",
                 v);
        goto bad;
    }
    if ((v = http_req_param(req, "end")) && *v && http_parse_time_ms(v, strlen(v), &j->end) != 0) {
        snprintf(err, sizeof err, "invalid parameter \"end\": cannot parse \"%.64s\" as a time", v);
        goto bad;
    }
    if (j->end < j->start) {
        snprintf(err, sizeof err, "end timestamp must not be before start time");
        goto bad;
    }
    size_t it = 0;
    const http_param_t *p;
    while ((p = http_params_next(&req->params, "match[]", &it)) != NULL) {
        if (j->nsel == MAX_SEL) {
            snprintf(err, sizeof err, "too many match[] parameters (max %d)", MAX_SEL);
            goto bad;
        }
        char perr[300];
        if (selector_parse(p->value, p->value_len, &j->sel[j->nsel], perr, sizeof perr)) {
            snprintf(err, sizeof err, "invalid parameter \"match[]\": %s", perr);
            goto bad;
        }
        j->nsel++;
    }
    if (j->nsel == 0 && (kind == K_EXPORT || kind == K_SERIES)) {
        snprintf(err, sizeof err, "no match[] parameter provided");
        goto bad;
    }
    if (label_name && !(j->label_name = strdup(label_name))) {
        snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    if (router_read_params(r, req, NULL, &j->need, &j->partial, err, sizeof err))
        goto bad;
    j->buffered = kind == K_EXPORT && j->need > 1;
    sset_init(&j->set, 50000000);
    j->planned = 1;
    if (readplan_init(&j->plan, r->topo, (uint32_t)j->need, router_up_fn, r)) {
        snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    /* never a silent partial result: a shard without enough reachable
     * replicas fails the read now, naming it, unless partial_response=1 */
    if (j->plan.nmissing) {
        readplan_missing_str(&j->plan, j->missing, sizeof j->missing);
        if (!j->partial) {
            char msg[400];
            router_missing_msg(msg, sizeof msg, j->missing, j->need);
            metric_counter_inc(r->rpc_fail);
            router_prom_error(req, 503, "unavailable", msg);
            free_job(j);
            return;
        }
    }
    next_request(j);
    return;
bad:
    router_prom_error(req, 400, "bad_data", err);
    free_job(j);
}

void router_handle_export(router_t *r, http_req_t *req)
{
    start_read(r, req, K_EXPORT, NULL);
}

void router_handle_series(router_t *r, http_req_t *req)
{
    start_read(r, req, K_SERIES, NULL);
}

void router_handle_labels(router_t *r, http_req_t *req, const char *label_name)
{
    start_read(r, req, label_name ? K_VALUES : K_LABELS, label_name);
}
