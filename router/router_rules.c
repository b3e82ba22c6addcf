/*
 * router_rules — compaction rules through the router (see router_rules.h).
 *
 *   job: ASK every node that is up (RulesRequest, empty) -> the newest set
 *        GET: answer it; POST/DELETE: change it (rules_add / rules_remove,
 *        version + 1), then PUT: offer it to every node that is up; 200
 *        when at least one took it, else 503.
 *   heartbeat: RulesRequest{have_version, have_crc} to each node that is
 *        up; a node that answers with a newer set updates the cache, one
 *        that is behind gets the cached set.
 * Parameters (form, query or a JSON object body): source (a selector),
 * aggregation, bucket (a duration: 1m, 90s, 500ms, or float seconds),
 * align (ms, default 0), dest (metric name or selector of = labels),
 * labels (JSON object, or form "k=v,k2=v2": added to dest), exact
 * (1/true: the source is exactly one series).
 * A retention entry instead (the RESP door's TS.CREATE/TS.ALTER RETENTION):
 * POST source=METRIC&retention=DURATION sets or replaces the retention of
 * metric METRIC (retention=0 removes it; no change: 200 without a push).
 */
#include "router_rules.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_gate.h"
#include "http_util.h"
#include "readopt.h"
#include "st_err.h"
#include "st_log.h"
#include "st_text.h"
#include "st_time.h"
#include "strata.pb-c.h"

struct router_rules {
    uint8_t *blob; /* the newest set known */
    size_t len;
    uint8_t *asking; /* [node]: a heartbeat call is out */
    metric_counter_t *ok, *failed, *refused, *pushes;
};

enum { OP_LIST, OP_ADD, OP_DEL, OP_RET };

typedef struct rjob {
    router_t *r;
    http_req_t *req;
    int op, phase; /* 0 ask, 1 put */
    rule_t nr;     /* OP_ADD (owned strings) */
    uint64_t del_id;
    char *del_src, *del_dst;
    uint8_t *best;
    size_t best_len;
    uint8_t *put;
    size_t put_len;
    uint64_t new_id;
    uint32_t pending, answered, acked, asked;
    char why[400];
} rjob_t;

typedef struct rcall {
    rjob_t *j;
    uint32_t node;
} rcall_t;

/* ---- cache ---- */

static void cache_offer(router_t *r, const uint8_t *p, size_t len)
{
    router_rules_t *rr = r->rules;
    if (!len || (rr->blob && !rules_blob_newer(p, len, rr->blob, rr->len)))
        return;
    rules_t s;
    char err[64];
    int ok = rules_decode(p, len, &s, err, sizeof err) == 0;
    rules_free(&s);
    uint8_t *c = ok ? malloc(len) : NULL;
    if (!c)
        return;
    memcpy(c, p, len);
    free(rr->blob);
    rr->blob = c;
    rr->len = len;
}

int router_rules_snapshot(router_t *r, rules_t *out)
{
    router_rules_t *rr = r->rules;
    char err[64];
    if (!rr || !rr->blob) {
        rules_init(out);
        return 0;
    }
    int rc = rules_decode(rr->blob, rr->len, out, err, sizeof err);
    if (rc) {
        rules_free(out);
        return rc == ST_ENOMEM ? rc : 0;
    }
    return 0;
}

/* ---- the job ---- */

static void job_free(rjob_t *j)
{
    free(j->nr.source);
    free(j->nr.dest);
    free(j->del_src);
    free(j->del_dst);
    free(j->best);
    free(j->put);
    free(j);
}

static void note(rjob_t *j, uint32_t node, const char *why)
{
    size_t l = strlen(j->why);
    snprintf(j->why + l, sizeof j->why - l, "%s%s: %s", l ? "; " : "",
             topo_node_id(j->r->topo, node), why);
}

static int rule_json(st_buf_t *b, const rule_t *ru)
{
    char num[200];
    if (rule_is_retention(ru)) {
        snprintf(num, sizeof num, "{\"id\":%llu,\"source\":", (unsigned long long)ru->id);
        int rc =
            st_buf_append(b, num, strlen(num)) || st_json_str(b, ru->source, strlen(ru->source));
        snprintf(num, sizeof num, ",\"retention_ms\":%lld,\"created_ms\":%lld}",
                 (long long)ru->bucket_ms, (long long)ru->created_ms);
        return rc || st_buf_append(b, num, strlen(num));
    }
    int rc = st_buf_append(b, "{\"id\":", 6);
    snprintf(num, sizeof num, "%llu,\"source\":", (unsigned long long)ru->id);
    rc = rc || st_buf_append(b, num, strlen(num)) || st_json_str(b, ru->source, strlen(ru->source));
    snprintf(num, sizeof num,
             ",\"exact\":%s,\"aggregation\":\"%s\",\"bucket_ms\":%lld,\"align_ms\":%lld,"
             "\"created_ms\":%lld,\"dest\":",
             ru->flags & RULE_FLAG_EXACT ? "true" : "false", rule_agg_name(ru->agg),
             (long long)ru->bucket_ms, (long long)ru->align_ms, (long long)ru->created_ms);
    rc = rc || st_buf_append(b, num, strlen(num)) || st_json_str(b, ru->dest, strlen(ru->dest)) ||
         st_buf_append(b, "}", 1);
    return rc;
}

static void respond_list(rjob_t *j)
{
    rules_t s;
    char err[200];
    rules_init(&s);
    if (j->best && rules_decode(j->best, j->best_len, &s, err, sizeof err) != 0) {
        rules_free(&s);
        http_respond_error(j->req, 500, err);
        return;
    }
    st_buf_t b;
    st_buf_init(&b);
    char head[120];
    snprintf(head, sizeof head, "{\"status\":\"success\",\"data\":{\"version\":%llu,\"rules\":[",
             (unsigned long long)s.version);
    int rc = st_buf_append(&b, head, strlen(head));
    for (size_t i = 0; !rc && i < s.n; i++)
        rc = (i && st_buf_append(&b, ",", 1)) || rule_json(&b, &s.v[i]);
    rc = rc || st_buf_append(&b, "]}}", 3);
    if (rc)
        http_respond_error(j->req, 503, "out of memory");
    else
        http_respond(j->req, 200, "application/json", b.data, b.len);
    st_buf_deinit(&b);
    rules_free(&s);
}

static void push(rjob_t *j);

static void ask_done(rjob_t *j)
{
    router_rules_t *rr = j->r->rules;
    if (j->answered == 0) {
        metric_counter_inc(rr->failed);
        char msg[500];
        snprintf(msg, sizeof msg, "no node answered for the rule set%s%s", j->why[0] ? ": " : "",
                 j->why);
        http_respond_error(j->req, 503, msg);
        job_free(j);
        return;
    }
    if (j->op == OP_LIST) {
        respond_list(j);
        job_free(j);
        return;
    }
    rules_t s;
    char err[300] = "";
    int rc = 0;
    rules_init(&s);
    if (j->best)
        rc = rules_decode(j->best, j->best_len, &s, err, sizeof err);
    if (!rc && j->op == OP_RET) {
        long k = rules_find_retention(&s, j->nr.source);
        if (k >= 0 ? s.v[k].bucket_ms == j->nr.bucket_ms : j->nr.bucket_ms == 0) {
            char body[200]; /* nothing to change */
            snprintf(body, sizeof body,
                     "{\"status\":\"success\",\"data\":{\"id\":%llu,\"version\":%llu,"
                     "\"unchanged\":true}}",
                     (unsigned long long)(k >= 0 ? s.v[k].id : 0), (unsigned long long)s.version);
            rules_free(&s);
            http_respond(j->req, 200, "application/json", body, strlen(body));
            job_free(j);
            return;
        }
        if (k >= 0)
            rc = rules_remove(&s, s.v[k].id);
        if (!rc && j->nr.bucket_ms > 0)
            rc = rules_add(&s, &j->nr, &j->new_id, err, sizeof err);
    } else if (!rc && j->op == OP_ADD) {
        rc = rules_add(&s, &j->nr, &j->new_id, err, sizeof err);
    } else if (!rc) {
        uint64_t id = j->del_id;
        if (j->del_src) {
            long k = rules_find(&s, j->del_src, j->del_dst);
            id = k >= 0 ? s.v[k].id : 0;
        }
        rc = id ? rules_remove(&s, id) : ST_ENOENT;
        if (rc)
            snprintf(err, sizeof err, "compaction rule does not exist");
        j->new_id = id;
    }
    st_buf_t b;
    st_buf_init(&b);
    if (!rc) {
        s.version++;
        rc = rules_encode(&s, &b);
    }
    rules_free(&s);
    if (rc) {
        metric_counter_inc(rr->refused);
        http_respond_error(j->req,
                           rc == ST_EEXIST   ? 409
                           : rc == ST_ENOENT ? 404
                           : rc == ST_ENOMEM ? 503
                                             : 400,
                           err[0] ? err : st_strerror(rc));
        st_buf_deinit(&b);
        job_free(j);
        return;
    }
    j->put = b.data; /* owned now */
    j->put_len = b.len;
    push(j);
}

static void put_done(rjob_t *j)
{
    router_rules_t *rr = j->r->rules;
    if (j->acked == 0) {
        metric_counter_inc(rr->failed);
        char msg[500];
        snprintf(msg, sizeof msg, "no node took the new rule set%s%s", j->why[0] ? ": " : "",
                 j->why);
        http_respond_error(j->req, 503, msg);
        job_free(j);
        return;
    }
    metric_counter_inc(rr->ok);
    cache_offer(j->r, j->put, j->put_len);
    char body[300];
    snprintf(body, sizeof body,
             "{\"status\":\"success\",\"data\":{\"id\":%llu,\"version\":%llu,\"nodes_acked\":%u,"
             "\"nodes\":%u}}",
             (unsigned long long)j->new_id,
             (unsigned long long)rules_blob_version(j->put, j->put_len), j->acked,
             topo_node_count(j->r->topo));
    http_respond(j->req, 200, "application/json", body, strlen(body));
    job_free(j);
}

static void on_reply(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    rcall_t *c = arg;
    rjob_t *j = c->j;
    Strata__RulesResponse *o = NULL;
    if (status || type != RPC_RULES_RESP ||
        !(o = strata__rules_response__unpack(NULL, len, payload))) {
        note(j, c->node,
             status && type == RPC_ERROR && len ? "refused"
             : status                           ? st_strerror(status)
                                                : "malformed reply");
    } else if (j->phase == 0) {
        j->answered++;
        if (o->rules.len &&
            (!j->best || rules_blob_newer(o->rules.data, o->rules.len, j->best, j->best_len))) {
            uint8_t *cp = malloc(o->rules.len);
            if (cp) {
                memcpy(cp, o->rules.data, o->rules.len);
                free(j->best);
                j->best = cp;
                j->best_len = o->rules.len;
            }
        }
        cache_offer(j->r, o->rules.data, o->rules.len);
    } else {
        if (o->version == rules_blob_version(j->put, j->put_len) &&
            o->crc == rules_blob_crc(j->put, j->put_len))
            j->acked++;
        else
            note(j, c->node, "holds a newer rule set (another change won)");
    }
    if (o)
        strata__rules_response__free_unpacked(o, NULL);
    free(c);
    if (--j->pending == 0)
        j->phase == 0 ? ask_done(j) : put_done(j);
}

/* Send RulesRequest{rules} to every node that is up; done when all answered. */
static void send_all(rjob_t *j, const uint8_t *rules, size_t len)
{
    router_t *r = j->r;
    Strata__RulesRequest q = STRATA__RULES_REQUEST__INIT;
    q.rules.data = (uint8_t *)rules;
    q.rules.len = len;
    st_buf_t b;
    st_buf_init(&b);
    int rc = router_pack(&b, &q.base);
    j->pending = 1;
    for (uint32_t n = 0; !rc && n < topo_node_count(r->topo); n++) {
        if (!router_node_up(r, n)) {
            note(j, n, "down");
            continue;
        }
        rcall_t *c = malloc(sizeof *c);
        if (!c)
            break;
        *c = (rcall_t){j, n};
        j->pending++;
        if (rpc_client_call(r->clients[n], RPC_RULES, b.data, b.len, ROUTER_RULES_TIMEOUT_MS,
                            on_reply, c) != 0) {
            free(c);
            j->pending--;
            note(j, n, "not sent");
        }
    }
    st_buf_deinit(&b);
    if (--j->pending == 0)
        j->phase == 0 ? ask_done(j) : put_done(j);
}

static void push(rjob_t *j)
{
    j->phase = 1;
    j->why[0] = '\0';
    send_all(j, j->put, j->put_len);
}

/* ---- parameters ---- */

/* A decimal int64 (optional sign), the whole string. */
static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static char *json_or_param(json_t *o, const http_params_t *p, const char *key, char *num,
                           size_t numlen)
{
    if (o) {
        json_t *v = json_object_get(o, key);
        if (json_is_string(v))
            return strdup(json_string_value(v));
        if (json_is_integer(v)) {
            snprintf(num, numlen, "%lld", (long long)json_integer_value(v));
            return strdup(num);
        }
        if (json_is_real(v)) {
            snprintf(num, numlen, "%.17g", json_real_value(v));
            return strdup(num);
        }
        if (json_is_boolean(v))
            return strdup(json_is_true(v) ? "true" : "false");
        return NULL;
    }
    const char *v = http_params_get(p, key);
    return v ? strdup(v) : NULL;
}

/* Append label `name`="value" (value escaped) to b. */
static int put_label(st_buf_t *b, const char *name, size_t nl, const char *value, size_t vl)
{
    int rc = (b->len && b->data[b->len - 1] != '{' && st_buf_append(b, ",", 1)) ||
             st_buf_append(b, name, nl) || st_buf_append(b, "=", 1);
    return rc || st_json_str(b, value, vl);
}

/* dest text: dest, with labels added inside its braces. */
static int build_dest(const char *dest, json_t *o, const char *form_labels, st_buf_t *b, char *err,
                      size_t errlen)
{
    json_t *jl = o ? json_object_get(o, "labels") : NULL;
    int have = (jl && json_object_size(jl)) || (form_labels && *form_labels);
    size_t dl = strlen(dest);
    if (!have)
        return st_buf_append(b, dest, dl) ? ST_ENOMEM : 0;
    int braced = dl && dest[dl - 1] == '}';
    if (st_buf_append(b, dest, braced ? dl - 1 : dl) || (!braced && st_buf_append(b, "{", 1)))
        return ST_ENOMEM;
    if (jl) {
        const char *k;
        json_t *v;
        json_object_foreach(jl, k, v)
        {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "labels: values must be strings");
                return ST_EINVAL;
            }
            if (put_label(b, k, strlen(k), json_string_value(v), strlen(json_string_value(v))))
                return ST_ENOMEM;
        }
    } else {
        const char *p = form_labels;
        while (*p) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            if (!eq || eq == p) {
                snprintf(err, errlen, "labels: expected k=v,k2=v2");
                return ST_EINVAL;
            }
            if (put_label(b, p, (size_t)(eq - p), eq + 1, len - (size_t)(eq - p) - 1))
                return ST_ENOMEM;
            p += len + (end ? 1 : 0);
        }
    }
    return st_buf_append(b, "}", 1) ? ST_ENOMEM : 0;
}

static int parse_add(rjob_t *j, json_t *o, const http_params_t *p, char *err, size_t errlen)
{
    char num[64];
    char *src = json_or_param(o, p, "source", num, sizeof num);
    char *agg = json_or_param(o, p, "aggregation", num, sizeof num);
    char *bucket = json_or_param(o, p, "bucket", num, sizeof num);
    char *align = json_or_param(o, p, "align", num, sizeof num);
    char *dest = json_or_param(o, p, "dest", num, sizeof num);
    char *labels = o ? NULL : json_or_param(o, p, "labels", num, sizeof num);
    char *exact = json_or_param(o, p, "exact", num, sizeof num);
    int rc = 0, a;
    int64_t b = 0, al = 0;
    st_buf_t d;
    st_buf_init(&d);
    if (!src || !*src || !dest || !*dest || !agg || !bucket) {
        snprintf(err, errlen, "source, aggregation, bucket and dest are required");
        rc = ST_EINVAL;
    } else if ((a = rule_agg_parse(agg, strlen(agg))) < 0) {
        snprintf(err, errlen,
                 "unknown aggregation \"%.32s\" (avg, sum, min, max, range, count, first, last, "
                 "std.p, std.s, var.p, var.s, twa)",
                 agg);
        rc = ST_EINVAL;
    } else if ((b = readopt_duration_ms(bucket)) <= 0) {
        snprintf(err, errlen, "invalid bucket \"%.32s\" (a duration such as 1m, or seconds)",
                 bucket);
        rc = ST_EINVAL;
    } else if (align && *align && parse_i64(align, &al) != 0) {
        snprintf(err, errlen, "invalid align \"%.32s\" (a timestamp in ms)", align);
        rc = ST_EINVAL;
    } else {
        rc = build_dest(dest, o, labels, &d, err, errlen);
        if (!rc && st_buf_append(&d, "", 1))
            rc = ST_ENOMEM;
    }
    if (!rc) {
        j->nr.source = src;
        src = NULL;
        j->nr.dest = strdup((char *)d.data);
        j->nr.agg = (rule_agg_t)a;
        j->nr.bucket_ms = b;
        j->nr.align_ms = al;
        j->nr.created_ms = st_now_ms();
        j->nr.flags =
            exact && (!strcmp(exact, "1") || !strcmp(exact, "true")) ? RULE_FLAG_EXACT : 0;
        if (!j->nr.dest)
            rc = ST_ENOMEM;
        else
            rc = rule_validate(&j->nr, err, errlen);
    }
    st_buf_deinit(&d);
    free(src);
    free(agg);
    free(bucket);
    free(align);
    free(dest);
    free(labels);
    free(exact);
    return rc;
}

/* source=METRIC&retention=DURATION (0: remove) into j->nr. */
static int parse_retention(rjob_t *j, json_t *o, const http_params_t *p, const char *ret, char *err,
                           size_t errlen)
{
    char num[64];
    int64_t ms = readopt_duration_ms(ret);
    j->nr.source = json_or_param(o, p, "source", num, sizeof num);
    j->nr.dest = strdup("");
    if (!j->nr.source || !j->nr.dest) {
        snprintf(err, errlen, "source (a metric name) is required with retention");
        return j->nr.dest ? ST_EINVAL : ST_ENOMEM;
    }
    if (ms < 0) {
        snprintf(err, errlen, "invalid retention \"%.32s\" (a duration such as 1d, or 0)", ret);
        return ST_EINVAL;
    }
    j->nr.flags = RULE_FLAG_RETENTION;
    j->nr.bucket_ms = ms;
    j->nr.created_ms = st_now_ms();
    if (ms == 0) { /* removal: only the name is checked */
        j->nr.bucket_ms = 1;
        int rc = rule_validate(&j->nr, err, errlen);
        j->nr.bucket_ms = 0;
        return rc;
    }
    return rule_validate(&j->nr, err, errlen);
}

static void start(router_t *r, http_req_t *req, int op)
{
    router_rules_t *rr = r->rules;
    rjob_t *j = calloc(1, sizeof *j);
    if (!j) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->r = r;
    j->req = req;
    j->op = op;
    char err[400] = "";
    int rc = 0;
    if (op != OP_LIST) {
        http_params_t params;
        http_params_init(&params);
        json_t *o = NULL;
        const char *ct = http_req_header(req, "Content-Type");
        if (req->body_len && ct && strstr(ct, "json")) {
            json_error_t je;
            o = json_loadb((const char *)req->body, req->body_len, 0, &je);
            if (!json_is_object(o)) {
                snprintf(err, sizeof err, "the body is not a JSON object: %s", je.text);
                rc = ST_EINVAL;
            }
        }
        if (!rc && router_read_load(req, &params, err, sizeof err))
            rc = ST_EINVAL;
        else if (!rc) {
            char num[64], *ret = op == OP_ADD
                                     ? json_or_param(o, &params, "retention", num, sizeof num)
                                     : NULL;
            if (ret) {
                j->op = OP_RET;
                rc = parse_retention(j, o, &params, ret, err, sizeof err);
                free(ret);
            } else if (op == OP_ADD) {
                rc = parse_add(j, o, &params, err, sizeof err);
            } else {
                const char *id = http_params_get(&params, "id");
                const char *s = http_params_get(&params, "source"),
                           *d = http_params_get(&params, "dest");
                int64_t v;
                if (id && parse_i64(id, &v) == 0 && v > 0) {
                    j->del_id = (uint64_t)v;
                } else if (!id && s && d) {
                    j->del_src = strdup(s);
                    j->del_dst = strdup(d);
                    rc = j->del_src && j->del_dst ? 0 : ST_ENOMEM;
                } else {
                    snprintf(err, sizeof err, "id=N (a rule id) is required");
                    rc = ST_EINVAL;
                }
            }
        }
        http_params_deinit(&params);
        json_decref(o);
    }
    if (rc) {
        metric_counter_inc(rr->refused);
        http_respond_error(req, rc == ST_ENOMEM ? 503 : 400, err[0] ? err : st_strerror(rc));
        job_free(j);
        return;
    }
    send_all(j, NULL, 0);
}

static void admin_next(void *ctx, const void *route, http_req_t *req)
{
    (void)route;
    router_t *r = ctx;
    start(r, req, req->method == HTTP_METHOD_DELETE ? OP_DEL : OP_ADD);
}

void router_handle_admin_rules(router_t *r, http_req_t *req)
{
    if (req->method == HTTP_METHOD_GET || req->method == HTTP_METHOD_HEAD) {
        start(r, req, OP_LIST);
        return;
    }
    if (req->method != HTTP_METHOD_POST && req->method != HTTP_METHOD_PUT &&
        req->method != HTTP_METHOD_DELETE) {
        http_respond_error(req, 405, "use GET, POST or DELETE");
        return;
    }
    /* changing the rules needs the admin role (the route lets read in) */
    if (auth_gate_check(r->auth, req, AUTH_ROLE_ADMIN, admin_next, r, NULL))
        admin_next(r, NULL, req);
}

/* ---- heartbeat ---- */

typedef struct tcall {
    router_t *r;
    uint32_t node;
} tcall_t;

static void on_pushed(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    (void)arg;
    (void)status;
    (void)type;
    (void)payload;
    (void)len;
}

static void on_tick_reply(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    tcall_t *c = arg;
    router_t *r = c->r;
    router_rules_t *rr = r->rules;
    rr->asking[c->node] = 0;
    Strata__RulesResponse *o = NULL;
    if (!status && type == RPC_RULES_RESP &&
        (o = strata__rules_response__unpack(NULL, len, payload))) {
        cache_offer(r, o->rules.data, o->rules.len);
        int behind = rr->blob && (o->version < rules_blob_version(rr->blob, rr->len) ||
                                  (o->version == rules_blob_version(rr->blob, rr->len) &&
                                   o->crc < rules_blob_crc(rr->blob, rr->len)));
        if (behind && router_node_up(r, c->node)) {
            Strata__RulesRequest q = STRATA__RULES_REQUEST__INIT;
            q.rules.data = rr->blob;
            q.rules.len = rr->len;
            st_buf_t b;
            st_buf_init(&b);
            if (router_pack(&b, &q.base) == 0 &&
                rpc_client_call(r->clients[c->node], RPC_RULES, b.data, b.len,
                                ROUTER_RULES_TIMEOUT_MS, on_pushed, NULL) == 0)
                metric_counter_inc(rr->pushes);
            st_buf_deinit(&b);
        }
        strata__rules_response__free_unpacked(o, NULL);
    }
    free(c);
}

void router_rules_tick(router_t *r)
{
    router_rules_t *rr = r->rules;
    if (!rr)
        return;
    Strata__RulesRequest q = STRATA__RULES_REQUEST__INIT;
    q.have_version = rr->blob ? rules_blob_version(rr->blob, rr->len) : 0;
    q.have_crc = rr->blob ? rules_blob_crc(rr->blob, rr->len) : 0;
    st_buf_t b;
    st_buf_init(&b);
    if (router_pack(&b, &q.base) == 0)
        for (uint32_t n = 0; n < topo_node_count(r->topo); n++) {
            if (rr->asking[n] || !router_node_up(r, n))
                continue;
            tcall_t *c = malloc(sizeof *c);
            if (!c)
                break;
            *c = (tcall_t){r, n};
            if (rpc_client_call(r->clients[n], RPC_RULES, b.data, b.len, ROUTER_RULES_TIMEOUT_MS,
                                on_tick_reply, c) == 0)
                rr->asking[n] = 1;
            else
                free(c);
        }
    st_buf_deinit(&b);
}

int router_rules_create(router_t *r)
{
    router_rules_t *rr = calloc(1, sizeof *rr);
    if (!rr)
        return ST_ENOMEM;
    r->rules = rr;
    rr->asking = calloc(topo_node_count(r->topo) ? topo_node_count(r->topo) : 1, 1);
    const char *h = "Compaction rule requests (/api/v1/admin/rules) by result.";
    rr->ok =
        metrics_counter(r->metrics, "strata_router_rule_requests_total", h, "result", "ok", NULL);
    rr->failed = metrics_counter(r->metrics, "strata_router_rule_requests_total", h, "result",
                                 "unavailable", NULL);
    rr->refused = metrics_counter(r->metrics, "strata_router_rule_requests_total", h, "result",
                                  "refused", NULL);
    rr->pushes = metrics_counter(r->metrics, "strata_router_rule_set_pushes_total",
                                 "Rule sets pushed to a node that was behind.", NULL);
    return rr->asking && rr->ok && rr->failed && rr->refused && rr->pushes ? 0 : ST_ENOMEM;
}

void router_rules_destroy(router_t *r)
{
    if (!r->rules)
        return;
    free(r->rules->blob);
    free(r->rules->asking);
    free(r->rules);
    r->rules = NULL;
}
