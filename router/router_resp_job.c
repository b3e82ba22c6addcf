/*
 * router_resp_job — the bottom of the RESP door's files (router_resp_int.h
 * lists them): small helpers, the per-key cache and jobs. A job is one
 * command's run through the cluster: each step an in-process HTTP request
 * (job_http) or a direct write (job_write) whose answer is collected (at
 * most [router] query_max_mb) and handed to the next step from a zero
 * timer; job_end frees it and gives the connection back (s->job_done, set
 * by router_resp.c, runs the connection's next command), so nothing here
 * calls upward into the connection code.
 */
#include "router_resp_int.h"

char *rresp_dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

void rresp_fatal_oom(rconn_t *c)
{
    resp_error(&c->out, "ERR out of memory");
}

/* %XX-encode s for a URL query or form value. */
int rresp_pct(st_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            rc = st_buf_put_u8(b, ch);
        } else {
            char t[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            rc = st_buf_append(b, t, 3);
        }
    }
    return rc;
}

/* Append matcher m as PromQL selector text: "name"<op>"value". */
int rresp_sel_matcher(st_buf_t *b, const char *name, st_match_type_t t, const char *value)
{
    static const char *const ops[] = {"=", "!=", "=~", "!~"};
    int rc = st_json_str(b, name, strlen(name));
    if (!rc)
        rc = st_buf_append(b, ops[t], strlen(ops[t]));
    if (!rc)
        rc = st_json_str(b, value, strlen(value));
    return rc;
}

uint64_t rresp_hash_str(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

void rresp_ent_free_labels(ent_t *e)
{
    for (size_t i = 0; i < 2 * e->nl; i++)
        free(e->kv[i]);
    free(e->kv);
    e->kv = NULL;
    e->nl = 0;
}

/* Free every entry but those a job holds (the cache is full). */
void rresp_cache_clear(router_resp_t *s)
{
    s->nent = 0;
    for (size_t b = 0; b < RESP_CACHE_BUCKETS; b++) {
        ent_t *e = s->buckets[b], **keep = &s->buckets[b];
        while (e) {
            ent_t *n = e->next;
            if (e->pins) {
                *keep = e;
                keep = &e->next;
                s->nent++;
            } else {
                rresp_ent_free_labels(e);
                free(e->key);
                free(e);
            }
            e = n;
        }
        *keep = NULL;
    }
}

/* Forget what the cache knows of one entry (only) or of all (only NULL):
 * settings and newest sample are read again on next use. The entries stay
 * (jobs in flight may point to them). */
void rresp_cache_forget(router_resp_t *s, const ent_t *only)
{
    for (size_t i = 0; i < RESP_CACHE_BUCKETS; i++)
        for (ent_t *e = s->buckets[i]; e; e = e->next) {
            if (only && e != only)
                continue;
            e->loaded_ms = 0;
            e->hi_known = 0;
            e->last_known = 0;
        }
}

ent_t *rresp_cache_get(router_resp_t *s, const char *key, size_t n, int create)
{
    size_t b = rresp_hash_str(key, n) % RESP_CACHE_BUCKETS;
    for (ent_t *e = s->buckets[b]; e; e = e->next)
        if (strlen(e->key) == n && memcmp(e->key, key, n) == 0)
            return e;
    if (!create)
        return NULL;
    if (s->nent >= RESP_CACHE_MAX)
        rresp_cache_clear(s);
    ent_t *e = calloc(1, sizeof *e);
    if (!e || !(e->key = rresp_dupn(key, n))) {
        free(e);
        return NULL;
    }
    resp_meta_default(&e->meta);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->nent++;
    return e;
}

/* Drop the connection's credential (wiped: it holds a password or token). */
void rresp_conn_forget_auth(rconn_t *c)
{
    if (c->authz) {
        volatile char *p = c->authz;
        while (*p)
            *p++ = 0;
        free(c->authz);
    }
    c->authz = NULL;
    c->authed = 0;
    c->user[0] = 0;
}

void rresp_job_free_timer(uv_handle_t *h)
{
    free(h->data);
}

/* The job has written its reply: free it, run the connection's next command. */
void rresp_job_end(job_t *j)
{
    rconn_t *c = j->c;
    st_buf_deinit(&j->body);
    resp_write_destroy(j->wr);
    resp_range_free(&j->rg);
    free(j->key);
    if (j->e)
        j->e->pins--;
    if (j->ctx_free)
        j->ctx_free(j->ctx);
    uv_close((uv_handle_t *)&j->timer, rresp_job_free_timer);
    c->busy = 0;
    c->in_off += c->cmd_used;
    c->cmd_used = 0;
    c->s->job_done(c);
}

job_t *rresp_job_new(rconn_t *c)
{
    job_t *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->c = c;
    j->s = c->s;
    j->argv = c->argv;
    j->argc = c->argc;
    uv_timer_init(c->s->r->loop, &j->timer);
    j->timer.data = j;
    c->busy = 1;
    return j;
}

void rresp_on_job_timer(uv_timer_t *t)
{
    job_t *j = t->data;
    j->next(j);
}

static int job_sink(void *arg, int status, const char *ctype, const http_header_t *hdrs,
                    size_t nhdrs, const void *data, size_t len, int final)
{
    job_t *j = arg;
    (void)ctype;
    for (size_t i = 0; i < nhdrs; i++)
        if (strcasecmp(hdrs[i].name, "X-Strata-Missing-Shards") == 0)
            snprintf(j->missing, sizeof j->missing, "%s", hdrs[i].value);
    if (len && !j->over) {
        if (j->body.len + len > topo_router(j->s->r->topo)->query_max_bytes) {
            j->over = 1;
        } else if (st_buf_append(&j->body, data, len)) {
            j->over = 1;
        }
    }
    if (final) {
        j->status = j->over ? 413 : status;
        uv_timer_start(&j->timer, rresp_on_job_timer, 0, 0);
        return 0;
    }
    return j->over ? -1 : 0;
}

/* A step whose request could not be made: answered as a 413/500. */
static void job_unsent(job_t *j, int rc)
{
    j->status = rc == ST_ELIMIT ? 413 : 500;
    st_buf_t *b = &j->body;
    ST_BUF_LIT(b, "{\"status\":\"error\",\"error\":\"request too large\"}");
    uv_timer_start(&j->timer, rresp_on_job_timer, 0, 0);
}

/* One step: an in-process HTTP request; next(j) runs with j->status and
 * j->body. */
void rresp_job_http(job_t *j, const char *method, const char *target, const char *ctype,
                    const void *body, size_t len, job_fn next)
{
    j->next = next;
    j->body.len = 0;
    j->over = 0;
    j->missing[0] = 0;
    http_req_t *req;
    int rc = http_req_local_as(&j->s->hl, method, target, ctype, j->c->authz, j->c->peer, body, len,
                               job_sink, j, &req);
    if (rc) {
        job_unsent(j, rc);
        return;
    }
    j->s->route(req, j->s->route_arg);
}

/* One write step: j->wr through the direct write path (resp_write.h);
 * next(j) runs with j->status and j->body like after job_http. */
void rresp_job_write(job_t *j, job_fn next)
{
    j->next = next;
    j->body.len = 0;
    j->over = 0;
    j->missing[0] = 0;
    int rc =
        j->wr ? resp_write_submit(j->s->r, &j->s->hl, j->wr, j->c->authz, j->c->peer, job_sink, j)
              : ST_ENOMEM;
    if (rc)
        job_unsent(j, rc);
}

/* The "error" text of a JSON error body, or the body itself. */
void rresp_reply_http_error(job_t *j, const char *what)
{
    st_buf_t *o = &j->c->out;
    char msg[400];
    const char *text = NULL;
    json_t *doc = NULL;
    if (j->status == 413)
        text = "reply over [router] query_max_mb";
    else if (j->body.len) {
        doc = json_loadb((const char *)j->body.data, j->body.len, 0, NULL);
        json_t *e = doc ? json_object_get(doc, "error") : NULL;
        text = e && json_is_string(e) ? json_string_value(e) : NULL;
    }
    /* a write the cluster could not take now (a node busy over head_max_mb,
     * shards short of their consistency): TRYAGAIN, as Redis answers what
     * may succeed when retried unchanged */
    const char *code = j->status == 503 && strcmp(what, "write") == 0 ? "TRYAGAIN" : "ERR";
    if (!text) {
        size_t n = j->body.len < 200 ? j->body.len : 200;
        snprintf(msg, sizeof msg, "%s %s failed (HTTP %d): %.*s", code, what, j->status, (int)n,
                 j->body.data ? (const char *)j->body.data : "");
    } else {
        snprintf(msg, sizeof msg, "%s %s failed: %s", code, what, text);
    }
    json_decref(doc);
    metric_counter_inc(j->s->m_errors);
    resp_error(o, msg);
}

void rresp_wrong_args(rconn_t *c, const char *name)
{
    resp_errorf(&c->out, "ERR wrong number of arguments for '%s' command", name);
}

/* A 400 of the write pipeline that only rejected items (no sample refused
 * by a cardinality limit) whose reasons are all known: each command can
 * then be answered on its own. */
int rresp_rejects_only(const job_t *j)
{
    if (j->status != 400 || !j->wr || !resp_write_rejected_all(j->wr))
        return 0;
    return !j->body.len || !memmem(j->body.data, j->body.len, "\"refused\":[{", 12);
}
