/*
 * router_resp — the RESP door of strata-router (see router_resp.h and
 * docs/resp.md): connections, the command table, and the TS.* commands.
 *
 * Connections: one libuv TCP handle each, an input buffer parsed with
 * resp_parse() and an output buffer flushed after each batch of pipelined
 * commands. A command that needs the cluster (a "job") makes the
 * connection busy: reading stops (the client's further commands wait in
 * the socket: backpressure, and the parsed arguments, which point into the
 * input buffer, stay valid), and the next command runs when the job has
 * written its reply. Replies are therefore in command order.
 *
 * Jobs: each step is one in-process HTTP request (http_req_local) given to
 * the router's route table; its response body is collected (at most
 * [router] query_max_mb) and the next step runs from a zero timer, never
 * from inside the handler's respond call. Writes skip the route table's
 * text formats: their samples and metadata rows go to the write pipeline
 * as binary items (resp_write.h), answered like an HTTP write.
 *
 * Write batches: the TS.ADD/TS.MADD commands of one pipelined read become
 * one write (replies in command order when it completes; a sample the
 * pipeline rejected answers alone). TS.ADD keys whose settings are not
 * cached are read for the whole pipeline in one export first (prefetch).
 *
 * Keys and series (docs/resp.md): a TS key K is the series
 * {__name__="K"}; its labels and settings live in a metadata series
 * {__name__="__ts_meta__", __ts_key__="K", <labels>, __ts_retention__=...}
 * with one sample (value 1) at the time of the TS.CREATE/ALTER: the newest
 * such series of a key is its current settings. A key spelled as a series
 * (cpu{host="a"}) names that exact series (line protocol, remote write),
 * with no metadata.
 *
 * Security ([security] users_file, tls_cert/tls_key; docs/security.md):
 * AUTH/HELLO AUTH check the users file (the slow hash on the thread
 * pool); the connection's credential then rides on every in-process
 * request as its Authorization header, so the auth gate applies roles and
 * confinement as on HTTP. TLS: a tls_conn_t per connection over memory
 * BIOs, the router's HTTP context, a handshake deadline.
 *
 * Caches: per key, the router remembers the metadata for RESP_META_TTL_MS
 * and the highest timestamp it knows of (to skip the duplicate probe of a
 * TS.ADD past it). TS.CREATE/ALTER/DEL/TS.DEL/FLUSHALL through this router
 * update or forget it at once; another router's changes are seen within
 * RESP_META_TTL_MS. A job pins the entry it holds. TS.INCRBY/DECRBY run
 * one at a time per router.
 */
#include "router_resp.h"
#include "router_delete.h"
#include "router_rules.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net_listen.h"
#include "resp.h"
#include "resp_cmd.h"
#include "resp_rules.h"
#include "resp_write.h"
#include "selector.h"
#include "st_err.h"
#include "st_labels.h"
#include "st_log.h"
#include "st_text.h"
#include "st_time.h"
#include "tls.h"

#define RESP_READ_BUF 65536
#define RESP_OUT_HIGH (16u << 20) /* queued reply bytes above which a connection stops reading */
#define RESP_MAX_CONNS 10000
#define RESP_META_TTL_MS 5000
#define RESP_CACHE_MAX 200000
#define RESP_CACHE_BUCKETS 65536
#define RESP_FAR_MS (2 * 86400000LL) /* "until the end of time" of a read: now + 2 days */
#define RESP_NAME_MAX 128
#define RESP_TLS_HANDSHAKE_MS 10000 /* a TLS client must finish its handshake within */

typedef struct rconn rconn_t;
typedef struct job job_t;

/* The per-key cache entry. */
typedef struct ent {
    struct ent *next;
    char *key;
    int exists; /* a metadata series was found */
    resp_meta_t meta;
    char **kv; /* user labels: name, value, ... (owned) */
    size_t nl;
    int64_t meta_ts;    /* sample time of the current metadata series */
    uint64_t loaded_ms; /* when the metadata was read */
    int hi_known;       /* every sample of the key is at or before hi */
    int64_t hi;
    int last_known; /* (hi, last_v) is the newest sample */
    double last_v;
    uint64_t pf_gen; /* the metadata prefetch that asked for it last */
    unsigned pins;   /* jobs holding it (j->e): a full cache keeps it */
} ent_t;

struct router_resp {
    router_t *r;
    router_route_fn route;
    void *route_arg;
    uv_tcp_t listener;
    int listener_open;
    int port;
    rconn_t *conns;
    size_t nconns;
    uint64_t next_id;
    int closing;
    http_limits_t hl;
    ent_t **buckets;
    size_t nent;
    job_t *incr_head, *incr_tail; /* INCRBY/DECRBY waiting their turn */
    uint64_t pf_gen;              /* metadata prefetches so far */
    int incr_busy;
    metric_counter_t *m_conns, *m_errors, *m_proto, *m_cmds_other, *m_auth_fail, *m_auth_delayed;
    metric_counter_t *m_prefetch, *m_batches; /* metadata prefetches, pipelined write batches */
    tls_ctx_t *tls;                           /* not owned; NULL: plaintext */
    int auth_slow;                            /* password checks on the thread pool now */
    metric_gauge_t *m_open;
    metric_counter_t **m_cmd; /* [command table index] */
    char rbuf[RESP_READ_BUF];
    int rbuf_busy;
};

struct rconn {
    uv_tcp_t tcp;
    router_resp_t *s;
    rconn_t *prev, *next;
    st_buf_t in;
    size_t in_off;
    st_buf_t out;
    resp_arg_t *argv;
    size_t argcap, argc, cmd_used;
    int proto;
    char name[RESP_NAME_MAX];
    uint64_t id;
    int busy, closing, dead, reading, uv_closing;
    job_t *batch;  /* pipelined writes being gathered (router_resp write batches) */
    size_t pf_end; /* input before this offset was scanned by a metadata prefetch */
    size_t wq;
    int nwrites;
    char peer[64];
    tls_conn_t *tls;      /* NULL: plaintext */
    uv_timer_t *hs_timer; /* the TLS handshake's deadline (NULL: none running) */
    int authed;           /* AUTH succeeded (only meaningful with a users file) */
    char *authz;          /* the Authorization header its commands carry (NULL: none) */
    char user[AUTH_NAME_MAX + 1];
    job_t *auth_delay; /* a -WRONGPASS held back (per-address slowdown), NULL: none */
};

typedef void (*job_fn)(job_t *j);

struct job {
    uv_timer_t timer;
    rconn_t *c;
    router_resp_t *s;
    job_fn next;
    st_buf_t body;
    int status;
    int over; /* the response went over the collect limit */
    job_t *qnext;
    /* what commands keep between steps */
    const resp_arg_t *argv;
    size_t argc;
    int kind;
    char *key;
    size_t klen;
    int plain; /* key spelled as a series selector */
    ent_t *e;
    resp_tsopts_t o;
    resp_range_t rg;
    int64_t ts;
    double v;
    int dup;
    resp_write_t *wr; /* the samples and metadata rows of a write (resp_write.h) */
    void *ctx;
    void (*ctx_free)(void *);
    job_fn after_meta; /* job_meta's next step */
    int partial;       /* the next export may answer without some shards */
    int set_ret;       /* TS.CREATE/TS.ALTER: the key's retention entry changes */
    char missing[256]; /* X-Strata-Missing-Shards of the last answer ("" none) */
};

/* ---- small helpers ------------------------------------------------------ */

static char *dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static void fatal_oom(rconn_t *c)
{
    resp_error(&c->out, "ERR out of memory");
}

/* %XX-encode s for a URL query or form value. */
static int pct(st_buf_t *b, const char *s, size_t n)
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
static int sel_matcher(st_buf_t *b, const char *name, st_match_type_t t, const char *value)
{
    static const char *const ops[] = {"=", "!=", "=~", "!~"};
    int rc = st_json_str(b, name, strlen(name));
    if (!rc)
        rc = st_buf_append(b, ops[t], strlen(ops[t]));
    if (!rc)
        rc = st_json_str(b, value, strlen(value));
    return rc;
}

/* ---- the key cache ---------------------------------------------------------- */

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void ent_free_labels(ent_t *e)
{
    for (size_t i = 0; i < 2 * e->nl; i++)
        free(e->kv[i]);
    free(e->kv);
    e->kv = NULL;
    e->nl = 0;
}

/* Free every entry but those a job holds (the cache is full). */
static void cache_clear(router_resp_t *s)
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
                ent_free_labels(e);
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
static void cache_forget(router_resp_t *s, const ent_t *only)
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

static ent_t *cache_get(router_resp_t *s, const char *key, size_t n, int create)
{
    size_t b = hash_str(key, n) % RESP_CACHE_BUCKETS;
    for (ent_t *e = s->buckets[b]; e; e = e->next)
        if (strlen(e->key) == n && memcmp(e->key, key, n) == 0)
            return e;
    if (!create)
        return NULL;
    if (s->nent >= RESP_CACHE_MAX)
        cache_clear(s);
    ent_t *e = calloc(1, sizeof *e);
    if (!e || !(e->key = dupn(key, n))) {
        free(e);
        return NULL;
    }
    resp_meta_default(&e->meta);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->nent++;
    return e;
}

/* ---- connections: output -------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    rconn_t *c;
    size_t len;
    char data[];
} wreq_t;

static void conn_run(rconn_t *c);
static void conn_close(rconn_t *c);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* Drop the connection's credential (wiped: it holds a password or token). */
static void conn_forget_auth(rconn_t *c)
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

static void on_conn_closed(uv_handle_t *h)
{
    rconn_t *c = h->data;
    router_resp_t *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    metric_gauge_set(s->m_open, (double)s->nconns);
    st_buf_deinit(&c->in);
    st_buf_deinit(&c->out);
    free(c->argv);
    conn_forget_auth(c);
    tls_conn_destroy(c->tls);
    free(c);
}

static void hs_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void hs_timer_stop(rconn_t *c)
{
    if (c->hs_timer) {
        uv_close((uv_handle_t *)c->hs_timer, hs_timer_closed);
        c->hs_timer = NULL;
    }
}

/* Free the connection once nothing refers to it (no job, no write). */
static void conn_maybe_free(rconn_t *c)
{
    if (c->dead && !c->busy && c->nwrites == 0 && !c->uv_closing) {
        c->uv_closing = 1;
        hs_timer_stop(c);
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    }
}

static void batch_submit(rconn_t *c);

static void conn_close(rconn_t *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (c->batch)
        batch_submit(c); /* its job ends the usual way, then the connection goes */
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    conn_maybe_free(c);
}

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    rconn_t *c = wr->c;
    c->wq -= wr->len;
    c->nwrites--;
    free(wr);
    if (status < 0) {
        conn_close(c);
        conn_maybe_free(c);
        return;
    }
    if (c->dead) {
        conn_maybe_free(c);
        return;
    }
    if (c->closing && c->nwrites == 0) {
        conn_close(c);
        return;
    }
    if (c->wq < RESP_OUT_HIGH / 2)
        conn_run(c);
}

/* Queue bytes for the socket as they are (ciphertext on a TLS connection). */
static void conn_write_raw(rconn_t *c, const void *data, size_t len)
{
    if (len == 0 || c->dead)
        return;
    wreq_t *wr = malloc(sizeof *wr + len);
    if (!wr) {
        conn_close(c);
        return;
    }
    memcpy(wr->data, data, len);
    wr->c = c;
    wr->len = len;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(wr);
        conn_close(c);
        return;
    }
    c->wq += wr->len;
    c->nwrites++;
}

/* Send what the TLS session has for the peer (handshake, records, alerts). */
static void conn_tls_send(rconn_t *c)
{
    if (!c->tls || tls_conn_out_pending(c->tls) == 0)
        return;
    st_buf_t t;
    st_buf_init(&t);
    if (tls_conn_take(c->tls, &t) == 0)
        conn_write_raw(c, t.data, t.len);
    else
        conn_close(c);
    st_buf_deinit(&t);
}

static void conn_flush(rconn_t *c)
{
    if (c->out.len == 0 || c->dead)
        return;
    if (c->tls) {
        int rc = tls_conn_write(c->tls, c->out.data, c->out.len);
        c->out.len = 0;
        if (rc) {
            conn_close(c);
            return;
        }
        conn_tls_send(c);
        return;
    }
    conn_write_raw(c, c->out.data, c->out.len);
    c->out.len = 0;
}

/* ---- jobs ---------------------------------------------------------------------- */

static void job_free_timer(uv_handle_t *h)
{
    free(h->data);
}

/* The job has written its reply: free it, run the connection's next command. */
static void job_end(job_t *j)
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
    uv_close((uv_handle_t *)&j->timer, job_free_timer);
    c->busy = 0;
    c->in_off += c->cmd_used;
    c->cmd_used = 0;
    if (c->dead)
        conn_maybe_free(c);
    else
        conn_run(c);
}

static job_t *job_new(rconn_t *c)
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

static void on_job_timer(uv_timer_t *t)
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
        uv_timer_start(&j->timer, on_job_timer, 0, 0);
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
    uv_timer_start(&j->timer, on_job_timer, 0, 0);
}

/* One step: an in-process HTTP request; next(j) runs with j->status and
 * j->body. */
static void job_http(job_t *j, const char *method, const char *target, const char *ctype,
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
static void job_write(job_t *j, job_fn next)
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
static void reply_http_error(job_t *j, const char *what)
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

/* ---- reading exports --------------------------------------------------------- */

/* One series of an export answer. */
typedef struct xser {
    char **kv; /* name, value, ... (owned) */
    size_t nl;
    resp_samples_t s;
    char *key; /* its RESP key (owned) */
    int is_ts; /* a TS key (labels from metadata) */
} xser_t;

typedef struct xset {
    xser_t *v;
    size_t n, cap;
} xset_t;

static void xser_free(xser_t *x)
{
    for (size_t i = 0; i < 2 * x->nl; i++)
        free(x->kv[i]);
    free(x->kv);
    free(x->key);
    resp_samples_free(&x->s);
}

static void xset_free(xset_t *x)
{
    for (size_t i = 0; i < x->n; i++)
        xser_free(&x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static const char *kv_get(char *const *kv, size_t nl, const char *name)
{
    for (size_t i = 0; i < nl; i++)
        if (strcmp(kv[2 * i], name) == 0)
            return kv[2 * i + 1];
    return NULL;
}

/* Parse an export body (JSON lines) into x. Returns 0, or -1 with an error
 * line's text in err (a stream that failed half-way). */
static int parse_export(const st_buf_t *body, xset_t *x, char *err, size_t errlen)
{
    const char *p = (const char *)body->data, *end = p + body->len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n == 0) {
            p = nl ? nl + 1 : NULL;
            continue;
        }
        json_t *doc = json_loadb(p, n, 0, NULL);
        p = nl ? nl + 1 : NULL;
        if (!doc)
            continue;
        json_t *e = json_object_get(doc, "error");
        if (e) {
            snprintf(err, errlen, "%s", json_is_string(e) ? json_string_value(e) : "read failed");
            json_decref(doc);
            return -1;
        }
        json_t *m = json_object_get(doc, "metric"), *vs = json_object_get(doc, "values"),
               *ts = json_object_get(doc, "timestamps");
        if (!json_is_object(m) || !json_is_array(vs) || !json_is_array(ts)) {
            json_decref(doc);
            continue;
        }
        if (x->n == x->cap) {
            size_t nc = x->cap ? 2 * x->cap : 8;
            xser_t *nv = realloc(x->v, nc * sizeof *nv);
            if (!nv) {
                json_decref(doc);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            x->v = nv;
            x->cap = nc;
        }
        xser_t *xs = &x->v[x->n++];
        memset(xs, 0, sizeof *xs);
        size_t nlab = json_object_size(m);
        xs->kv = calloc(2 * nlab + 1, sizeof *xs->kv);
        const char *k;
        json_t *val;
        json_object_foreach(m, k, val)
        {
            if (!json_is_string(val) || !xs->kv)
                continue;
            xs->kv[2 * xs->nl] = strdup(k);
            xs->kv[2 * xs->nl + 1] = strdup(json_string_value(val));
            xs->nl++;
        }
        size_t cnt =
            json_array_size(vs) < json_array_size(ts) ? json_array_size(vs) : json_array_size(ts);
        for (size_t i = 0; i < cnt; i++) {
            json_t *jv = json_array_get(vs, i), *jt = json_array_get(ts, i);
            double v = json_is_number(jv) ? json_number_value(jv) : NAN;
            if (json_is_string(jv)) {
                const char *sv = json_string_value(jv);
                v = strcmp(sv, "Infinity") == 0    ? INFINITY
                    : strcmp(sv, "-Infinity") == 0 ? -INFINITY
                                                   : NAN;
            }
            resp_samples_push(&xs->s, (int64_t)json_integer_value(jt), v);
        }
        json_decref(doc);
    }
    return 0;
}

/* GET /api/v1/export target for these selectors (already selector text). */
static int export_target(st_buf_t *t, const char *const *sels, size_t nsel, int64_t from,
                         int64_t to)
{
    int rc = ST_BUF_LIT(t, "/api/v1/export?");
    for (size_t i = 0; i < nsel && !rc; i++) {
        rc = ST_BUF_LIT(t, "match[]=");
        if (!rc)
            rc = pct(t, sels[i], strlen(sels[i]));
        if (!rc)
            rc = st_buf_put_u8(t, '&');
    }
    char tt[96];
    int64_t now = st_now_ms();
    if (from < 0)
        from = 0;
    if (to > now + RESP_FAR_MS)
        to = now + RESP_FAR_MS;
    int n = snprintf(tt, sizeof tt, "start=%lld.%03lld&end=%lld.%03lld", (long long)(from / 1000),
                     (long long)(from % 1000), (long long)(to / 1000), (long long)(to % 1000));
    if (!rc)
        rc = st_buf_append(t, tt, (size_t)n);
    if (!rc)
        rc = st_buf_put_u8(t, 0);
    return rc;
}

/* The form body of a POST export (long selectors do not fit a URL). */
static int export_form(st_buf_t *t, const char *const *sels, size_t nsel, int64_t from, int64_t to)
{
    int rc = export_target(t, sels, nsel, from, to);
    if (!rc) {
        size_t skip = strlen("/api/v1/export?");
        memmove(t->data, t->data + skip, t->len - skip);
        t->len -= skip + 1; /* and the NUL */
    }
    return rc;
}

static void job_export(job_t *j, const char *const *sels, size_t nsel, int64_t from, int64_t to,
                       job_fn next)
{
    st_buf_t t;
    st_buf_init(&t);
    int partial = j->partial;
    j->partial = 0;
    if (export_form(&t, sels, nsel, from, to) ||
        (partial && ST_BUF_LIT(&t, "&partial_response=1"))) {
        st_buf_deinit(&t);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    job_http(j, "POST", "/api/v1/export", "application/x-www-form-urlencoded", t.data, t.len, next);
    st_buf_deinit(&t);
}

/* ---- keys ------------------------------------------------------------------- */

/* The data selector of a key into b (NUL-terminated): {__name__="K"}, or
 * the key itself when it is spelled as a series (*plain = 1). Returns 0,
 * or -1 with err for a key spelled as a bad selector. */
static int key_selector(st_buf_t *b, const char *key, size_t klen, int *plain, char *err,
                        size_t errlen)
{
    *plain = 0;
    if (klen > 1 && key[klen - 1] == '}' && memchr(key, '{', klen)) {
        selector_t sel;
        if (selector_parse(key, klen, &sel, err, errlen) != 0)
            return -1;
        int ok = sel.n > 0;
        for (size_t i = 0; i < sel.n; i++)
            if (sel.m[i].type != ST_MATCH_EQ)
                ok = 0;
        int rc = 0;
        if (ok) {
            rc = st_buf_put_u8(b, '{');
            for (size_t i = 0; i < sel.n && !rc; i++) {
                if (i)
                    rc = st_buf_put_u8(b, ',');
                if (!rc)
                    rc = sel_matcher(b, sel.m[i].name, ST_MATCH_EQ, sel.m[i].value);
            }
            if (!rc)
                rc = ST_BUF_LIT(b, "}");
        }
        selector_free(&sel);
        if (!ok) {
            snprintf(err, errlen, "a series key takes only label=\"value\" pairs");
            return -1;
        }
        *plain = 1;
        return rc ? -1 : st_buf_put_u8(b, 0) ? -1 : 0;
    }
    int rc = st_buf_put_u8(b, '{');
    if (!rc)
        rc = st_json_str(b, "__name__", 8);
    if (!rc)
        rc = st_buf_put_u8(b, '=');
    if (!rc)
        rc = st_json_str(b, key, klen);
    if (!rc)
        rc = ST_BUF_LIT(b, "}");
    if (!rc)
        rc = st_buf_put_u8(b, 0);
    return rc ? -1 : 0;
}

/* The RESP key of a series: its name alone when it has no other label,
 * else name{a="x",...} (labels in the order given; export sorts them). */
static char *series_key(char *const *kv, size_t nl)
{
    const char *name = kv_get(kv, nl, "__name__");
    st_buf_t b;
    st_buf_init(&b);
    int rc = name ? st_buf_append(&b, name, strlen(name)) : 0;
    size_t other = 0;
    for (size_t i = 0; i < nl && !rc; i++) {
        if (strcmp(kv[2 * i], "__name__") == 0)
            continue;
        rc = st_buf_put_u8(&b, other++ ? ',' : '{');
        if (!rc)
            rc = sel_matcher(&b, kv[2 * i], ST_MATCH_EQ, kv[2 * i + 1]);
    }
    if (!rc && other)
        rc = st_buf_put_u8(&b, '}');
    if (!rc && b.len == 0)
        rc = ST_BUF_LIT(&b, "{}");
    if (!rc)
        rc = st_buf_put_u8(&b, 0);
    if (rc) {
        st_buf_deinit(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* Does series x have exactly the labels of selector text sel (a key's
 * series)? Used to keep {__name__="K"} from matching K{host="a"}. */
static int exact_key(const xser_t *x, const char *key, int plain)
{
    if (!plain)
        return x->nl == 1 && strcmp(x->kv[0], "__name__") == 0 && strcmp(x->kv[1], key) == 0;
    char *k = series_key(x->kv, x->nl);
    int same = 0;
    if (k) {
        char err[64];
        selector_t sel;
        if (selector_parse(key, strlen(key), &sel, err, sizeof err) == 0) {
            same = sel.n == x->nl;
            for (size_t i = 0; i < sel.n && same; i++) {
                const char *v = kv_get(x->kv, x->nl, sel.m[i].name);
                same = v && strcmp(v, sel.m[i].value) == 0;
            }
            selector_free(&sel);
        }
    }
    free(k);
    return same;
}

/* The answer left out shards (partial read of one key): is the key's own
 * shard among them? Then the read cannot be trusted: answer an error
 * naming the shards and return 1. */
static int key_unavailable(job_t *j, int meta_found)
{
    if (!j->missing[0])
        return 0;
    st_label_t l[SELECTOR_MAX_MATCHERS];
    size_t n = 0;
    selector_t sel;
    int have_sel = 0;
    char err[64];
    if (j->plain) {
        if (selector_parse(j->key, j->klen, &sel, err, sizeof err) != 0)
            return 0;
        have_sel = 1;
        for (size_t i = 0; i < sel.n; i++)
            l[n++] = (st_label_t){sel.m[i].name, sel.m[i].value, (uint32_t)strlen(sel.m[i].name),
                                  (uint32_t)strlen(sel.m[i].value)};
        st_labels_sort(l, n);
    } else {
        l[n++] = (st_label_t){"__name__", j->key, 8, (uint32_t)j->klen};
    }
    uint32_t shard = topo_shard_of_labels(j->s->r->topo, l, n);
    if (have_sel)
        selector_free(&sel);
    int hit = 0;
    for (const char *p = j->missing; *p && !hit;) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p)
            break;
        hit = v == shard;
        p = *end == ',' ? end + 1 : end;
    }
    /* without its metadata the key's settings are unknown, wherever its data is */
    if (!hit && meta_found)
        return 0;
    resp_errorf(&j->c->out,
                "ERR read failed: no replica answered for shard(s) %s (read_consistency); retry",
                j->missing);
    metric_counter_inc(j->s->m_errors);
    return 1;
}

/* ---- metadata ------------------------------------------------------------------ */

/* Fill e from one metadata series (best, whose newest sample is at bt;
 * NULL: the key has none). */
static void meta_fill(ent_t *e, const xser_t *best, int64_t bt)
{
    ent_free_labels(e);
    resp_meta_default(&e->meta);
    e->exists = best != NULL;
    e->meta_ts = best ? bt : 0;
    e->loaded_ms = (uint64_t)st_now_ms();
    if (!best)
        return;
    e->kv = calloc(2 * best->nl + 1, sizeof *e->kv);
    for (size_t i = 0; i < best->nl && e->kv; i++) {
        const char *n = best->kv[2 * i], *v = best->kv[2 * i + 1];
        if (strcmp(n, "__name__") == 0 || resp_meta_label(&e->meta, n, v))
            continue;
        e->kv[2 * e->nl] = strdup(n);
        e->kv[2 * e->nl + 1] = strdup(v);
        e->nl++;
    }
}

/* Fill e from the metadata series in x (every version of one key): the
 * newest wins. */
static void meta_from(ent_t *e, xset_t *x, const char *key)
{
    xser_t *best = NULL;
    int64_t bt = INT64_MIN;
    for (size_t i = 0; i < x->n; i++) {
        const char *k = kv_get(x->v[i].kv, x->v[i].nl, RESP_TS_KEY_LABEL);
        if (!k || strcmp(k, key) != 0 || x->v[i].s.n == 0)
            continue;
        int64_t t = x->v[i].s.ts[x->v[i].s.n - 1];
        if (t >= bt) {
            bt = t;
            best = &x->v[i];
        }
    }
    meta_fill(e, best, bt);
}

static int meta_selector(st_buf_t *b, const char *key)
{
    int rc = ST_BUF_LIT(b, "{");
    if (!rc)
        rc = sel_matcher(b, "__name__", ST_MATCH_EQ, RESP_TS_META_NAME);
    if (!rc)
        rc = st_buf_put_u8(b, ',');
    if (!rc)
        rc = sel_matcher(b, RESP_TS_KEY_LABEL, ST_MATCH_EQ, key);
    if (!rc)
        rc = ST_BUF_LIT(b, "}");
    if (!rc)
        rc = st_buf_put_u8(b, 0);
    return rc;
}

static void meta_loaded(job_t *j);
static int meta_stale(const router_resp_t *s, const ent_t *e);

/* Make j->e the key's cache entry with fresh metadata, then call next. */
static void job_meta(job_t *j, job_fn next)
{
    ent_t *e = cache_get(j->s, j->key, j->klen, 1);
    if (j->e)
        j->e->pins--;
    if ((j->e = e))
        e->pins++;
    if (!j->e) {
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    /* settings due to be re-asserted (meta_stale) are read again first: a
     * re-assert must not bring back what another router's TS.ALTER replaced */
    if (j->plain ||
        (j->e->loaded_ms && (uint64_t)st_now_ms() - j->e->loaded_ms < RESP_META_TTL_MS &&
         !meta_stale(j->s, j->e))) {
        next(j);
        return;
    }
    st_buf_t sel;
    st_buf_init(&sel);
    if (meta_selector(&sel, j->key)) {
        st_buf_deinit(&sel);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    j->after_meta = next;
    j->partial = 1;
    job_export(j, sels, 1, 0, INT64_MAX, meta_loaded);
    st_buf_deinit(&sel);
}

static void meta_loaded(job_t *j)
{
    job_fn next = j->after_meta;
    if (j->status != 200) {
        reply_http_error(j, "metadata read");
        job_end(j);
        return;
    }
    xset_t x = {0};
    char err[256];
    if (parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR metadata read failed: %s", err);
        xset_free(&x);
        job_end(j);
        return;
    }
    meta_from(j->e, &x, j->e->key);
    xset_free(&x);
    if (j->missing[0]) { /* read without some shards: not cached */
        j->e->loaded_ms = 0;
        if (key_unavailable(j, j->e->exists)) {
            job_end(j);
            return;
        }
    }
    next(j);
}

/* The job's write items (made on first use); NULL when out of memory. */
static resp_write_t *job_wr(job_t *j)
{
    if (!j->wr && resp_write_create(&j->wr))
        return NULL;
    return j->wr;
}

/* A metadata row of e (its settings and labels at ts) into j's write. */
static int job_meta_row(job_t *j, uint32_t tag, const ent_t *e, int64_t ts)
{
    resp_write_t *w = job_wr(j);
    return w ? resp_write_meta(w, tag, e->key, &e->meta, e->kv, e->nl, ts) : ST_ENOMEM;
}

/* A sample of the key (spelled as a series when plain) into j's write. */
static int job_sample(job_t *j, uint32_t tag, const char *key, size_t klen, int plain, int64_t ts,
                      double v)
{
    resp_write_t *w = job_wr(j);
    return w ? resp_write_sample(w, tag, key, klen, plain, ts, v) : ST_ENOMEM;
}

static int rejects_only(const job_t *j);

/* A one-command write that failed: the reason its item was rejected for
 * when the pipeline rejected it alone, else the write's error. */
static void reply_write_failed(job_t *j)
{
    const char *why = rejects_only(j) ? resp_write_rejected(j->wr, 0) : NULL;
    if (!why) {
        reply_http_error(j, "write");
        return;
    }
    metric_counter_inc(j->s->m_errors);
    resp_errorf(&j->c->out, "ERR write failed: %s", why);
}

/* Is the key's metadata sample older than half the cluster's retention?
 * Then the next write re-asserts it (same settings, a new sample), so the
 * settings never age out of the store while the key is written to. */
static int meta_stale(const router_resp_t *s, const ent_t *e)
{
    int64_t ret = topo_storage(s->r->topo)->retention_ms;
    return e->exists && ret > 0 && e->meta_ts < st_now_ms() - ret / 2;
}

/* Set e's labels from TS.CREATE/ALTER LABELS. */
static int ent_set_labels(ent_t *e, const resp_tsopts_t *o)
{
    ent_free_labels(e);
    e->kv = calloc(2 * o->nlabels + 1, sizeof *e->kv);
    if (!e->kv)
        return ST_ENOMEM;
    for (size_t i = 0; i < o->nlabels; i++) {
        e->kv[2 * i] = dupn(o->labels[2 * i].p, o->labels[2 * i].len);
        e->kv[2 * i + 1] = dupn(o->labels[2 * i + 1].p, o->labels[2 * i + 1].len);
        e->nl++;
        if (!e->kv[2 * i] || !e->kv[2 * i + 1])
            return ST_ENOMEM;
    }
    return 0;
}

/* ---- the command table ----------------------------------------------------------- */

typedef void (*cmd_fn)(rconn_t *c);

enum { CF_WRITE = 1, CF_READ = 2, CF_FAST = 4, CF_CONN = 8, CF_ADMIN = 16 };

typedef struct cmd {
    const char *name;
    int arity; /* Redis convention: n exact, -n at least n (the name counts) */
    int flags;
    cmd_fn fn;
    int first_key, last_key, step; /* key positions, for COMMAND */
    const char *summary;           /* COMMAND DOCS */
    const char *args;              /* COMMAND DOCS syntax hint */
} cmd_t;

static const cmd_t commands[];
static const size_t ncommands;
static const cmd_t *find_cmd(const resp_arg_t *a);

static void wrong_args(rconn_t *c, const char *name)
{
    resp_errorf(&c->out, "ERR wrong number of arguments for '%s' command", name);
}

/* ---- connection commands ----------------------------------------------------------- */

static void cmd_ping(rconn_t *c)
{
    if (c->argc > 2)
        return wrong_args(c, "ping");
    if (c->argc == 2)
        resp_bulk(&c->out, c->argv[1].p, c->argv[1].len);
    else
        resp_simple(&c->out, "PONG");
}

static void cmd_echo(rconn_t *c)
{
    resp_bulk(&c->out, c->argv[1].p, c->argv[1].len);
}

static void hello_reply(rconn_t *c)
{
    st_buf_t *o = &c->out;
    resp_map(o, c->proto, 7);
    resp_bulk_str(o, "server");
    resp_bulk_str(o, "strata");
    resp_bulk_str(o, "version");
    resp_bulk_str(o, STRATA_VERSION);
    resp_bulk_str(o, "proto");
    resp_int(o, c->proto);
    resp_bulk_str(o, "id");
    resp_int(o, (int64_t)c->id);
    resp_bulk_str(o, "mode");
    resp_bulk_str(o, "standalone");
    resp_bulk_str(o, "role");
    resp_bulk_str(o, "master");
    resp_bulk_str(o, "modules");
    resp_array(o, 1);
    resp_map(o, c->proto, 2);
    resp_bulk_str(o, "name");
    resp_bulk_str(o, "timeseries");
    resp_bulk_str(o, "ver");
    resp_int(o, 10000);
}

/* ---- AUTH ---------------------------------------------------------------
 * With [security] users_file, a connection runs nothing but AUTH, HELLO
 * ... AUTH, QUIT and RESET until it authenticates (-NOAUTH). AUTH checks
 * the password or token with the auth library (the slow hash on the
 * thread pool, never on the loop; at most AUTH_GATE_MAX_SLOW at once);
 * then every command's in-process HTTP requests carry the credential
 * (Bearer token, or Basic user:password: the gate has just cached the
 * password, so it is not hashed again), and the auth gate enforces roles
 * and selector confinement exactly as on HTTP. */

#define RESP_NOAUTH "NOAUTH Authentication required."
#define RESP_WRONGPASS "WRONGPASS invalid username-password pair or user is disabled."

typedef struct authwork {
    uv_work_t w;
    job_t *job;
    const auth_user_t *u;
    char user[AUTH_NAME_MAX + 1];
    char pw[AUTH_SECRET_MAX + 1];
    size_t len;
    int ok;
    int proto;      /* HELLO: the protocol asked for (0: plain AUTH) */
    size_t setname; /* HELLO: argv index of SETNAME's value (0: none) */
} authwork_t;

static void authwork_free(void *p)
{
    authwork_t *a = p;
    volatile char *q = a->pw;
    for (size_t i = 0; i < sizeof a->pw; i++)
        q[i] = 0;
    free(a);
}

static int conn_needs_auth(const rconn_t *c)
{
    return !c->authed && auth_gate_enabled(c->s->r->auth);
}

static int b64_put(st_buf_t *b, const unsigned char *p, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char q[4] = {al[v >> 18], al[(v >> 12) & 63], i + 1 < n ? al[(v >> 6) & 63] : '=',
                     i + 2 < n ? al[v & 63] : '='};
        if (st_buf_append(b, q, 4))
            return ST_ENOMEM;
    }
    return 0;
}

static void hello_reply(rconn_t *c);

static void auth_wrongpass_late(job_t *j)
{
    j->c->auth_delay = NULL;
    resp_error(&j->c->out, RESP_WRONGPASS);
    job_end(j);
}

/* -WRONGPASS, counted and logged without secrets. The failure goes into
 * the auth gate's per-address table (shared with HTTP and PostgreSQL): an
 * address with recent failures at any door gets its answer late, the
 * connection held busy on a job whose timer writes it. j: the command's
 * job if it has one (it ends here, now or after the delay), else NULL. */
static void auth_failed(rconn_t *c, job_t *j, const char *user, const char *why)
{
    metric_counter_inc(c->s->m_auth_fail);
    uint64_t delay = c->s->closing ? 0 : auth_gate_note_failure(c->s->r->auth, c->peer);
    st_warn("RESP authentication failed", "reason=%s remote=%s user=%s delay_ms=%llu", why, c->peer,
            user && *user ? user : "-", (unsigned long long)delay);
    if (delay && !j)
        j = job_new(c); /* NULL: answered at once */
    if (delay && j) {
        metric_counter_inc(c->s->m_auth_delayed);
        c->auth_delay = j;
        j->next = auth_wrongpass_late;
        uv_timer_start(&j->timer, on_job_timer, delay, 0);
        return;
    }
    resp_error(&c->out, RESP_WRONGPASS);
    if (j)
        job_end(j);
}

/* The credential passed: remember it for the connection's requests and
 * answer AUTH (+OK) or HELLO (its map). */
static void auth_passed(rconn_t *c, const auth_user_t *u, const authwork_t *a, int token)
{
    conn_forget_auth(c);
    st_buf_t h;
    st_buf_init(&h);
    int rc;
    if (token) {
        rc = st_buf_append(&h, "Bearer ", 7);
        if (!rc)
            rc = st_buf_append(&h, a->pw, a->len);
    } else {
        st_buf_t pair;
        st_buf_init(&pair);
        rc = st_buf_append(&h, "Basic ", 6);
        if (!rc)
            rc = st_buf_append(&pair, a->user, strlen(a->user));
        if (!rc)
            rc = st_buf_put_u8(&pair, ':');
        if (!rc)
            rc = st_buf_append(&pair, a->pw, a->len);
        if (!rc)
            rc = b64_put(&h, pair.data, pair.len);
        if (pair.data)
            memset(pair.data, 0, pair.cap);
        st_buf_deinit(&pair);
    }
    if (!rc)
        rc = st_buf_put_u8(&h, 0);
    if (rc) {
        if (h.data)
            memset(h.data, 0, h.cap);
        st_buf_deinit(&h);
        resp_error(&c->out, "ERR out of memory");
        return;
    }
    c->authz = (char *)h.data; /* handed over: freed by conn_forget_auth */
    c->authed = 1;
    snprintf(c->user, sizeof c->user, "%s", auth_user_name(u));
    if (!a->proto) {
        resp_simple(&c->out, "OK");
        return;
    }
    c->proto = a->proto;
    if (a->setname) {
        const resp_arg_t *n = &c->argv[a->setname];
        size_t l = n->len < RESP_NAME_MAX - 1 ? n->len : RESP_NAME_MAX - 1;
        memcpy(c->name, n->p, l);
        c->name[l] = 0;
    }
    hello_reply(c);
}

static void auth_slow_work(uv_work_t *w)
{
    authwork_t *a = w->data;
    a->ok = auth_password_slow(a->u, a->pw, a->len) == 1 && a->u != NULL;
}

static void auth_slow_after(uv_work_t *w, int status)
{
    authwork_t *a = w->data;
    job_t *job = a->job;
    rconn_t *c = job->c;
    c->s->auth_slow--;
    /* the users may have been reloaded meanwhile: check the name again */
    const auth_user_t *now = auth_db_find(auth_gate_db(c->s->r->auth), a->user);
    if (status == 0 && a->ok && now == a->u) {
        auth_password_remember(a->u, a->pw, a->len);
        auth_passed(c, a->u, a, 0);
        job_end(job);
    } else {
        auth_failed(c, job, a->user, "bad_credentials");
    }
}

/* AUTH [user] password, or HELLO proto AUTH user password [SETNAME n]. */
static void auth_start(rconn_t *c, const resp_arg_t *user, const resp_arg_t *pw, int proto,
                       size_t setname)
{
    auth_gate_t *g = c->s->r->auth;
    if (!auth_gate_enabled(g)) {
        resp_error(&c->out, "ERR AUTH <password> called without any password configured for the "
                            "default user. Are you sure your configuration is correct?");
        return;
    }
    authwork_t *a = calloc(1, sizeof *a);
    if (!a) {
        resp_error(&c->out, "ERR out of memory");
        return;
    }
    a->proto = proto;
    a->setname = setname;
    if (user && user->len > AUTH_NAME_MAX) {
        authwork_free(a);
        auth_failed(c, NULL, NULL, "malformed");
        return;
    }
    snprintf(a->user, sizeof a->user, "%.*s", user ? (int)user->len : 7,
             user ? user->p : "default");
    if (pw->len > AUTH_SECRET_MAX) {
        auth_failed(c, NULL, a->user, "malformed");
        authwork_free(a);
        return;
    }
    memcpy(a->pw, pw->p, pw->len);
    a->len = pw->len;
    auth_db_t *db = (auth_db_t *)auth_gate_db(g);
    const auth_user_t *u = NULL;
    if (a->len >= 3 && memcmp(a->pw, AUTH_TOKEN_PREFIX, 3) == 0) {
        if (auth_check_token(db, a->pw, a->len, &u) == AUTH_OK)
            auth_passed(c, u, a, 1);
        else
            auth_failed(c, NULL, a->user, "bad_token");
        authwork_free(a);
        return;
    }
    int r = auth_password_begin(db, a->user, a->pw, a->len, &u);
    if (r == AUTH_OK) {
        auth_passed(c, u, a, 0);
        authwork_free(a);
        return;
    }
    if (r != AUTH_SLOW) {
        auth_failed(c, NULL, a->user, auth_result_name((auth_result_t)r));
        authwork_free(a);
        return;
    }
    if (c->s->auth_slow >= AUTH_GATE_MAX_SLOW) {
        metric_counter_inc(c->s->m_errors);
        resp_error(&c->out, "ERR too many authentications in progress, try again");
        authwork_free(a);
        return;
    }
    job_t *j = job_new(c);
    if (!j) {
        authwork_free(a);
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    a->u = u; /* NULL (no such user) still does the same work, then fails */
    j->ctx = a;
    j->ctx_free = authwork_free;
    a->w.data = a;
    a->job = j;
    if (uv_queue_work(c->s->r->loop, &a->w, auth_slow_work, auth_slow_after) != 0) {
        resp_error(&c->out, "ERR cannot check the password now");
        job_end(j);
        return;
    }
    c->s->auth_slow++;
}

static void cmd_hello(rconn_t *c)
{
    size_t i = 1, setname = 0;
    const resp_arg_t *user = NULL, *pw = NULL;
    int proto = c->proto;
    if (c->argc >= 2) {
        int64_t v;
        if (resp_parse_int(&c->argv[1], &v) || (v != 2 && v != 3)) {
            resp_error(&c->out, "NOPROTO unsupported protocol version");
            return;
        }
        proto = (int)v;
        i = 2;
    }
    while (i < c->argc) {
        if (resp_arg_is(&c->argv[i], "AUTH") && i + 2 < c->argc) {
            user = &c->argv[i + 1];
            pw = &c->argv[i + 2];
            i += 3;
        } else if (resp_arg_is(&c->argv[i], "SETNAME") && i + 1 < c->argc) {
            setname = i + 1;
            i += 2;
        } else {
            resp_errorf(&c->out, "ERR Syntax error in HELLO option '%.*s'",
                        (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len), c->argv[i].p);
            return;
        }
    }
    if (pw) {
        auth_start(c, user, pw, proto, setname);
        return;
    }
    if (conn_needs_auth(c)) {
        resp_error(&c->out, "NOAUTH HELLO must be called with the client already authenticated, "
                            "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                            "authenticate the client and select the RESP protocol version at the "
                            "same time");
        return;
    }
    c->proto = proto;
    if (setname) {
        const resp_arg_t *n = &c->argv[setname];
        size_t l = n->len < RESP_NAME_MAX - 1 ? n->len : RESP_NAME_MAX - 1;
        memcpy(c->name, n->p, l);
        c->name[l] = 0;
    }
    hello_reply(c);
}

static void cmd_auth(rconn_t *c)
{
    if (c->argc > 3)
        return wrong_args(c, "auth");
    auth_start(c, c->argc == 3 ? &c->argv[1] : NULL, &c->argv[c->argc - 1], 0, 0);
}

/* DEL, TS.DEL, FLUSHALL delete as /api/v1/admin/tsdb/delete_series does:
 * admin role, not confined. 1 (and the error written) when c may not. */
static int deny_delete(rconn_t *c, const char *what)
{
    auth_gate_t *g = c->s->r->auth;
    if (!auth_gate_enabled(g))
        return 0;
    const auth_user_t *u = auth_db_find(auth_gate_db(g), c->user);
    if (u && c->authz && strncmp(c->authz, "Bearer ", 7) == 0) { /* a token rotated since AUTH */
        const auth_user_t *t = NULL;
        if (auth_check_token(auth_gate_db(g), c->authz + 7, strlen(c->authz + 7), &t) != AUTH_OK ||
            t != u)
            u = NULL;
    }
    if (!u) { /* removed (or its token rotated) by a reload since AUTH */
        conn_forget_auth(c);
        resp_error(&c->out, RESP_NOAUTH);
        return 1;
    }
    if (auth_user_role(u) < AUTH_ROLE_ADMIN)
        resp_errorf(&c->out, "ERR user '%s' has role %s; %s needs the admin role", c->user,
                    auth_role_name(auth_user_role(u)), what);
    else if (auth_user_selector(u))
        resp_errorf(&c->out, "ERR user '%s' is confined to a selector; %s cannot be", c->user,
                    what);
    else
        return 0;
    return 1;
}

static void cmd_client(rconn_t *c)
{
    const resp_arg_t *sub = &c->argv[1];
    if (resp_arg_is(sub, "SETNAME") && c->argc == 3) {
        for (size_t i = 0; i < c->argv[2].len; i++)
            if (c->argv[2].p[i] == ' ' || c->argv[2].p[i] == '\n') {
                resp_error(&c->out, "ERR Client names cannot contain spaces, newlines or special "
                                    "characters.");
                return;
            }
        size_t n = c->argv[2].len < RESP_NAME_MAX - 1 ? c->argv[2].len : RESP_NAME_MAX - 1;
        memcpy(c->name, c->argv[2].p, n);
        c->name[n] = 0;
        resp_simple(&c->out, "OK");
    } else if (resp_arg_is(sub, "GETNAME") && c->argc == 2) {
        if (c->name[0])
            resp_bulk_str(&c->out, c->name);
        else
            resp_null(&c->out, c->proto);
    } else if (resp_arg_is(sub, "ID") && c->argc == 2) {
        resp_int(&c->out, (int64_t)c->id);
    } else if (resp_arg_is(sub, "SETINFO") && c->argc == 4) {
        resp_simple(&c->out, "OK");
    } else {
        resp_errorf(&c->out, "ERR unknown subcommand or wrong number of arguments for '%.*s'",
                    (int)(sub->len > 32 ? 32 : sub->len), sub->p);
    }
}

static void cmd_select(rconn_t *c)
{
    int64_t db;
    if (resp_parse_int(&c->argv[1], &db))
        resp_error(&c->out, "ERR value is not an integer or out of range");
    else if (db != 0)
        resp_error(&c->out, "ERR DB index is out of range (Strata has one database: 0)");
    else
        resp_simple(&c->out, "OK");
}

static void cmd_quit(rconn_t *c)
{
    resp_simple(&c->out, "OK");
    c->closing = 1;
}

static void cmd_reset(rconn_t *c)
{
    conn_forget_auth(c);
    c->proto = 2;
    c->name[0] = 0;
    resp_simple(&c->out, "RESET");
}

static void command_entry(rconn_t *c, const cmd_t *k)
{
    st_buf_t *o = &c->out;
    char name[64];
    size_t n = strlen(k->name);
    for (size_t i = 0; i <= n && i < sizeof name; i++)
        name[i] = (char)((k->name[i] >= 'A' && k->name[i] <= 'Z') ? k->name[i] + 32 : k->name[i]);
    resp_array(o, 6);
    resp_bulk_str(o, name);
    resp_int(o, k->arity);
    int nf = !!(k->flags & CF_WRITE) + !!(k->flags & CF_READ) + !!(k->flags & CF_FAST);
    resp_set(o, c->proto, (size_t)nf);
    if (k->flags & CF_WRITE)
        resp_simple(o, "write");
    if (k->flags & CF_READ)
        resp_simple(o, "readonly");
    if (k->flags & CF_FAST)
        resp_simple(o, "fast");
    resp_int(o, k->first_key);
    resp_int(o, k->last_key);
    resp_int(o, k->step);
}

static const cmd_t *find_cmd(const resp_arg_t *a)
{
    for (size_t i = 0; i < ncommands; i++)
        if (resp_arg_is(a, commands[i].name))
            return &commands[i];
    return NULL;
}

static void cmd_command(rconn_t *c)
{
    st_buf_t *o = &c->out;
    if (c->argc == 1) {
        resp_array(o, ncommands);
        for (size_t i = 0; i < ncommands; i++)
            command_entry(c, &commands[i]);
        return;
    }
    const resp_arg_t *sub = &c->argv[1];
    if (resp_arg_is(sub, "COUNT")) {
        resp_int(o, (int64_t)ncommands);
    } else if (resp_arg_is(sub, "INFO")) {
        resp_array(o, c->argc - 2);
        for (size_t i = 2; i < c->argc; i++) {
            const cmd_t *k = find_cmd(&c->argv[i]);
            if (k)
                command_entry(c, k);
            else
                resp_null_array(o, c->proto);
        }
    } else if (resp_arg_is(sub, "DOCS")) {
        size_t n = 0;
        const cmd_t *sel[256];
        if (c->argc == 2)
            for (size_t i = 0; i < ncommands && n < 256; i++)
                sel[n++] = &commands[i];
        for (size_t i = 2; i < c->argc && n < 256; i++) {
            const cmd_t *k = find_cmd(&c->argv[i]);
            if (k)
                sel[n++] = k;
        }
        resp_map(o, c->proto, n);
        for (size_t i = 0; i < n; i++) {
            char name[64];
            size_t l = strlen(sel[i]->name);
            for (size_t q = 0; q <= l && q < sizeof name; q++)
                name[q] =
                    (char)((sel[i]->name[q] >= 'A' && sel[i]->name[q] <= 'Z') ? sel[i]->name[q] + 32
                                                                              : sel[i]->name[q]);
            resp_bulk_str(o, name);
            resp_map(o, c->proto, 4);
            resp_bulk_str(o, "summary");
            resp_bulk_str(o, sel[i]->summary);
            resp_bulk_str(o, "since");
            resp_bulk_str(o, "1.0.0");
            resp_bulk_str(o, "group");
            resp_bulk_str(o, strncmp(sel[i]->name, "TS.", 3) == 0 ? "module" : "connection");
            resp_bulk_str(o, "syntax");
            resp_bulk_str(o, sel[i]->args);
        }
    } else if (resp_arg_is(sub, "LIST")) {
        resp_array(o, ncommands);
        for (size_t i = 0; i < ncommands; i++)
            resp_bulk_str(o, commands[i].name);
    } else {
        resp_errorf(o, "ERR unknown subcommand '%.*s'", (int)(sub->len > 32 ? 32 : sub->len),
                    sub->p);
    }
}

static void cmd_info(rconn_t *c)
{
    router_resp_t *s = c->s;
    char t[1024];
    int n =
        snprintf(t, sizeof t,
                 "# Server\r\nredis_version:7.2.0\r\nstrata_version:%s\r\nredis_mode:standalone\r\n"
                 "tcp_port:%d\r\n\r\n# Clients\r\nconnected_clients:%zu\r\n\r\n"
                 "# Modules\r\nmodule:name=timeseries,ver=10000\r\n\r\n# Keyspace\r\n"
                 "db0:keys=%zu,expires=0\r\n",
                 STRATA_VERSION, s->port, s->nconns, s->nent);
    resp_bulk(&c->out, t, (size_t)n);
}

/* ---- deletion: DEL, TS.DEL, FLUSHALL ----------------------------------------
 * All three go through router_delete_submit(), the path of the HTTP
 * delete_series endpoint (tombstones replicated like writes). A key's data
 * series and, for DEL, its metadata series are deleted; the key's cache
 * entry is forgotten so the next command reads the metadata again. */

#define RESP_DEL_MAX_KEYS (ROUTER_DELETE_MAX_SELECTORS / 2)

static int job_key(job_t *j, size_t i);

/* Parse the selector text of key i's data series (and, if meta, its
 * metadata series) into sel[*n...]. 0 or -1 (reply written). */
static int del_key_selectors(rconn_t *c, const resp_arg_t *a, selector_t *sel, size_t *n, int meta)
{
    char err[200];
    int plain;
    st_buf_t t;
    st_buf_init(&t);
    int rc = memchr(a->p, 0, a->len) || a->len == 0 ||
             key_selector(&t, a->p, a->len, &plain, err, sizeof err);
    if (!rc)
        rc = selector_parse((const char *)t.data, strlen((const char *)t.data), &sel[*n], err,
                            sizeof err);
    if (!rc)
        (*n)++;
    if (!rc && meta && !plain) {
        char *key = dupn(a->p, a->len);
        t.len = 0;
        rc = !key || meta_selector(&t, key);
        free(key);
        if (!rc)
            rc = selector_parse((const char *)t.data, strlen((const char *)t.data), &sel[*n], err,
                                sizeof err);
        if (!rc)
            (*n)++;
    }
    st_buf_deinit(&t);
    if (rc)
        resp_error(&c->out, "ERR TSDB: invalid key");
    return rc ? -1 : 0;
}

static void del_reply(job_t *j)
{
    st_buf_t *o = &j->c->out;
    if (j->status != 0) {
        resp_errorf(o, "ERR delete failed: %s", j->missing[0] ? j->missing : "shards unavailable");
    } else if (j->kind == 'D') { /* TS.DEL: samples deleted */
        if (j->ts == 0 && !j->plain && !(j->e && j->e->exists))
            resp_error(o, "ERR TSDB: the key does not exist");
        else
            resp_int(o, j->ts);
    } else if (j->kind == 'k') { /* DEL: keys that had data (at most the keys named) */
        resp_int(o, j->dup < j->ts ? j->dup : j->ts);
    } else { /* FLUSHALL */
        resp_simple(o, "OK");
    }
    /* forget every cached key: deleted data must not be answered from cache */
    if (j->kind != 'D' || j->e)
        cache_forget(j->s, j->kind == 'D' ? j->e : NULL);
    job_end(j);
}

static void del_keys_submit(job_t *j, int dry_run);

static void del_done(void *arg, int status, const router_delete_result_t *res)
{
    job_t *j = arg;
    j->status = status;
    snprintf(j->missing, sizeof j->missing, "%.200s", res ? res->why : "");
    if (j->kind == 'K') { /* DEL's dry run: how many of the keys hold data */
        j->ts = res ? (int64_t)res->series : 0;
        j->kind = 'k';
        if (status == 0) {
            del_keys_submit(j, 0);
            return;
        }
    } else if (j->kind != 'k') {
        j->ts = res ? (int64_t)res->samples : 0;
    }
    j->next = del_reply;
    uv_timer_start(&j->timer, on_job_timer, 0, 0);
}

/* Submit sel[0..n) for [from, to]; the reply comes from del_reply. */
static void del_submit(job_t *j, selector_t *sel, size_t n, int64_t from, int64_t to, int dry_run)
{
    int rc = router_delete_submit(j->s->r, sel, n, from, to, dry_run, 0, del_done, j);
    for (size_t i = 0; i < n; i++)
        selector_free(&sel[i]);
    if (rc) {
        resp_error(&j->c->out, rc == ST_ENOMEM ? "ERR out of memory" : "ERR delete refused");
        job_end(j);
    }
}

/* DEL: a dry run first (its series count is the reply: keys with data),
 * then the delete of the keys' data and metadata series. */
static void del_keys_submit(job_t *j, int dry_run)
{
    size_t nkeys = j->argc - 1;
    selector_t *sel = calloc(2 * nkeys, sizeof *sel);
    if (!sel) {
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < nkeys; i++)
        if (del_key_selectors(j->c, &j->argv[1 + i], sel, &n, !dry_run)) {
            for (size_t k = 0; k < n; k++)
                selector_free(&sel[k]);
            free(sel);
            job_end(j);
            return;
        }
    del_submit(j, sel, n, INT64_MIN, INT64_MAX, dry_run);
    free(sel);
}

static void cmd_del(rconn_t *c)
{
    size_t nkeys = c->argc - 1;
    if (deny_delete(c, "DEL"))
        return;
    if (nkeys > RESP_DEL_MAX_KEYS) {
        resp_errorf(&c->out, "ERR DEL: at most %d keys per command", RESP_DEL_MAX_KEYS);
        return;
    }
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = 'K';
    j->dup = (int)nkeys;
    del_keys_submit(j, 1);
}

static void ts_del_step(job_t *j)
{
    selector_t sel[1];
    size_t n = 0;
    if (del_key_selectors(j->c, &j->argv[1], sel, &n, 0)) {
        job_end(j);
        return;
    }
    del_submit(j, sel, n, j->rg.from, j->rg.to, 0);
}

static void cmd_ts_del(rconn_t *c)
{
    int64_t a, b;
    if (deny_delete(c, "TS.DEL"))
        return;
    if (c->argv[2].len == 1 && c->argv[2].p[0] == '-')
        a = INT64_MIN;
    else if (resp_parse_int(&c->argv[2], &a)) {
        resp_error(&c->out, "ERR TSDB: invalid fromTimestamp");
        return;
    }
    if (c->argv[3].len == 1 && c->argv[3].p[0] == '+')
        b = INT64_MAX;
    else if (resp_parse_int(&c->argv[3], &b)) {
        resp_error(&c->out, "ERR TSDB: invalid toTimestamp");
        return;
    }
    if (b < a) {
        resp_error(&c->out, "ERR TSDB: fromTimestamp must not be after toTimestamp");
        return;
    }
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    j->kind = 'D';
    j->rg.from = a;
    j->rg.to = b;
    job_meta(j, ts_del_step);
}

static void cmd_flushall(rconn_t *c)
{
    if (!topo_router(c->s->r->topo)->resp_flushall) {
        resp_error(&c->out,
                   "ERR FLUSHALL is disabled (set [router] resp_flushall = on to allow it)");
        return;
    }
    if (deny_delete(c, "FLUSHALL"))
        return;
    selector_t sel[1];
    char err[200];
    if (selector_parse("{__name__=~\".+\"}", 16, &sel[0], err, sizeof err)) {
        resp_error(&c->out, "ERR out of memory");
        return;
    }
    job_t *j = job_new(c);
    if (!j) {
        selector_free(&sel[0]);
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = 'F';
    del_submit(j, sel, 1, INT64_MIN, INT64_MAX, 0);
}

/* ---- TS.CREATERULE / TS.DELETERULE (resp_rules.h) ------------------------------- */

static int job_key(job_t *j, size_t i);

/* The series selector of key argv[i] (owned, NUL-terminated), or NULL. */
static char *arg_selector(job_t *j, size_t i)
{
    st_buf_t t;
    st_buf_init(&t);
    int plain;
    char err[200];
    if (key_selector(&t, j->argv[i].p, j->argv[i].len, &plain, err, sizeof err) != 0) {
        st_buf_deinit(&t);
        return NULL;
    }
    return (char *)t.data;
}

typedef struct rule_ctx {
    char *src, *dst;
    int agg;
    int64_t bucket, align;
} rule_ctx_t;

static void rule_ctx_free(void *p)
{
    rule_ctx_t *x = p;
    free(x->src);
    free(x->dst);
    free(x);
}

static void rule_done(job_t *j)
{
    if (j->status == 200) {
        resp_simple(&j->c->out, "OK");
    } else {
        json_t *doc =
            j->body.len ? json_loadb((const char *)j->body.data, j->body.len, 0, NULL) : NULL;
        json_t *e = doc ? json_object_get(doc, "error") : NULL;
        const char *w =
            resp_rules_error(j->status, json_is_string(e) ? json_string_value(e) : NULL);
        if (w)
            resp_error(&j->c->out, w);
        else
            reply_http_error(j, j->kind == 'r' ? "TS.CREATERULE" : "TS.DELETERULE");
        json_decref(doc);
    }
    job_end(j);
}

static void createrule_dst(job_t *j)
{
    rule_ctx_t *x = j->ctx;
    if (!j->e->exists && !j->plain) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        job_end(j);
        return;
    }
    st_buf_t b;
    st_buf_init(&b);
    if (resp_rules_create_form(&b, x->src, x->dst, x->agg, x->bucket, x->align)) {
        st_buf_deinit(&b);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    job_http(j, "POST", "/api/v1/admin/rules", "application/x-www-form-urlencoded", b.data, b.len,
             rule_done);
    st_buf_deinit(&b);
}

static void createrule_src(job_t *j)
{
    if (!j->e->exists && !j->plain) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        job_end(j);
        return;
    }
    free(j->key);
    j->key = NULL;
    if (job_key(j, 2) != 0) {
        job_end(j);
        return;
    }
    job_meta(j, createrule_dst);
}

static void cmd_createrule(rconn_t *c)
{
    if (!resp_arg_is(&c->argv[3], "AGGREGATION") || resp_agg_parse(&c->argv[4]) < 0) {
        resp_error(&c->out, "ERR TSDB: wrong aggregation type");
        return;
    }
    int64_t b, a = 0;
    if (resp_parse_int(&c->argv[5], &b) || b <= 0) {
        resp_error(&c->out, "ERR TSDB: bucketDuration must be greater than zero");
        return;
    }
    if (c->argc == 7 && resp_parse_int(&c->argv[6], &a)) {
        resp_error(&c->out, "ERR TSDB: invalid alignTimestamp");
        return;
    }
    if (c->argc > 7) {
        resp_error(&c->out, "ERR TSDB: wrong number of arguments for 'TS.CREATERULE' command");
        return;
    }
    if (c->argv[1].len == c->argv[2].len && !memcmp(c->argv[1].p, c->argv[2].p, c->argv[1].len)) {
        resp_error(&c->out, "ERR TSDB: the source key and destination key should be different");
        return;
    }
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    rule_ctx_t *x = calloc(1, sizeof *x);
    if (!x) {
        fatal_oom(c);
        job_end(j);
        return;
    }
    j->ctx = x;
    j->ctx_free = rule_ctx_free;
    j->kind = 'r';
    x->agg = rule_agg_parse(c->argv[4].p, c->argv[4].len);
    x->bucket = b;
    x->align = a;
    x->src = arg_selector(j, 1);
    x->dst = arg_selector(j, 2);
    if (!x->src || !x->dst) {
        resp_error(&c->out, "ERR TSDB: invalid key");
        job_end(j);
        return;
    }
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    job_meta(j, createrule_src);
}

static void cmd_deleterule(rconn_t *c)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = 'd';
    char *src = arg_selector(j, 1), *dst = arg_selector(j, 2);
    st_buf_t t;
    st_buf_init(&t);
    if (!src || !dst) {
        resp_error(&c->out, "ERR TSDB: invalid key");
        free(src);
        free(dst);
        job_end(j);
        return;
    }
    if (resp_rules_delete_target(&t, src, dst)) {
        fatal_oom(c);
        free(src);
        free(dst);
        st_buf_deinit(&t);
        job_end(j);
        return;
    }
    free(src);
    free(dst);
    job_http(j, "DELETE", (const char *)t.data, NULL, NULL, 0, rule_done);
    st_buf_deinit(&t);
}

/* ---- TS.CREATE / TS.ALTER ------------------------------------------------------ */

static int job_key(job_t *j, size_t i)
{
    j->key = dupn(j->argv[i].p, j->argv[i].len);
    j->klen = j->argv[i].len;
    char err[200];
    st_buf_t t;
    st_buf_init(&t);
    if (!j->key || memchr(j->key, 0, j->klen) || j->klen == 0 ||
        key_selector(&t, j->key, j->klen, &j->plain, err, sizeof err)) {
        st_buf_deinit(&t);
        resp_error(&j->c->out, "ERR TSDB: invalid key");
        return -1;
    }
    st_buf_deinit(&t);
    return 0;
}

static void reply_ok_written(job_t *j)
{
    if (j->status != 204 && j->status != 200) {
        reply_write_failed(j);
        j->e->loaded_ms = 0;
    } else {
        resp_simple(&j->c->out, "OK");
    }
    job_end(j);
}

static int64_t retention_entry_ms(int64_t ms);

static void retention_done(job_t *j)
{
    if (j->status == 200)
        resp_simple(&j->c->out, "OK");
    else
        reply_http_error(j, "setting the key's retention");
    job_end(j);
}

/* After the metadata write: the key's retention entry in the cluster's
 * rule set (the engines then drop its samples older than now - retention;
 * reads still count back from the newest sample, valkey's way). */
static void written_set_retention(job_t *j)
{
    if (j->status != 204 && j->status != 200) {
        reply_ok_written(j);
        return;
    }
    st_buf_t b;
    st_buf_init(&b);
    if (resp_rules_retention_form(&b, j->key, retention_entry_ms(j->e->meta.retention_ms))) {
        st_buf_deinit(&b);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    job_http(j, "POST", "/api/v1/admin/rules", "application/x-www-form-urlencoded", b.data, b.len,
             retention_done);
    st_buf_deinit(&b);
}

/* The retention entry's duration for a key's RETENTION ms (0: none;
 * longer than the rule set takes: its longest, as good as forever). */
static int64_t retention_entry_ms(int64_t ms)
{
    return ms > RULE_RETENTION_MAX_MS ? RULE_RETENTION_MAX_MS : ms < 0 ? 0 : ms;
}

/* Does the key's retention entry need a change to hold ms (0: none)? */
static int retention_changes(job_t *j, int64_t ms)
{
    ms = retention_entry_ms(ms);
    rules_t set;
    if (router_rules_snapshot(j->s->r, &set) != 0)
        return 1;
    long k = rules_find_retention(&set, j->key);
    int change = k >= 0 ? set.v[k].bucket_ms != ms : ms > 0;
    rules_free(&set);
    return change;
}

static void create_step(job_t *j)
{
    ent_t *e = j->e;
    if (e->exists) {
        resp_error(&j->c->out, "ERR TSDB: key already exists");
        job_end(j);
        return;
    }
    resp_meta_default(&e->meta);
    resp_meta_apply(&e->meta, &j->o);
    int64_t now = st_now_ms();
    if (ent_set_labels(e, &j->o) || job_meta_row(j, 0, e, now)) {
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    e->exists = 1;
    e->meta_ts = now;
    j->set_ret = retention_changes(j, e->meta.retention_ms);
    job_write(j, j->set_ret ? written_set_retention : reply_ok_written);
}

static void alter_step(job_t *j)
{
    ent_t *e = j->e;
    if (!e->exists) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        job_end(j);
        return;
    }
    resp_meta_apply(&e->meta, &j->o);
    int64_t now = st_now_ms();
    if (now <= e->meta_ts)
        now = e->meta_ts + 1;
    if ((j->o.has_labels && ent_set_labels(e, &j->o)) || job_meta_row(j, 0, e, now)) {
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    e->meta_ts = now;
    j->set_ret = j->o.has_retention && retention_changes(j, e->meta.retention_ms);
    job_write(j, j->set_ret ? written_set_retention : reply_ok_written);
}

static void cmd_create_alter(rconn_t *c, int alter)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    char err[200];
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    if (j->plain) {
        resp_error(&c->out, "ERR TSDB: a key spelled as a series has no settings or labels");
        job_end(j);
        return;
    }
    if (resp_tsopts_parse(c->argv + 2, c->argc - 2, alter ? RESP_OPTS_ALTER : RESP_OPTS_CREATE,
                          &j->o, err, sizeof err)) {
        resp_errorf(&c->out, "ERR %s", err);
        job_end(j);
        return;
    }
    j->e = NULL;
    /* always re-read: CREATE must not race another router's CREATE by a stale cache */
    ent_t *e = cache_get(c->s, j->key, j->klen, 1);
    if (e)
        e->loaded_ms = 0;
    job_meta(j, alter ? alter_step : create_step);
}

static void cmd_create(rconn_t *c)
{
    cmd_create_alter(c, 0);
}

static void cmd_alter(rconn_t *c)
{
    cmd_create_alter(c, 1);
}

/* ---- TS.ADD ----------------------------------------------------------------------- */

static void add_written(job_t *j)
{
    if (j->status != 204 && j->status != 200) {
        reply_write_failed(j);
        j->e->loaded_ms = 0;
        j->e->hi_known = j->e->last_known = 0;
    } else {
        ent_t *e = j->e;
        if (e->hi_known && j->ts >= e->hi) {
            e->hi = j->ts;
            e->last_v = j->v;
            e->last_known = 1;
        }
        resp_int(&j->c->out, j->ts);
    }
    job_end(j);
}

static void add_write(job_t *j)
{
    ent_t *e = j->e;
    int rc = 0;
    if (!j->plain && !e->exists) { /* auto-create with the options of this TS.ADD */
        resp_meta_default(&e->meta);
        resp_meta_apply(&e->meta, &j->o);
        rc = ent_set_labels(e, &j->o);
        int64_t now = st_now_ms();
        if (!rc)
            rc = job_meta_row(j, 0, e, now);
        e->exists = 1;
        e->meta_ts = now;
    } else if (!j->plain && meta_stale(j->s, e)) {
        int64_t now = st_now_ms();
        rc = job_meta_row(j, 0, e, now);
        e->meta_ts = now;
    }
    if (!rc)
        rc = job_sample(j, 0, j->key, j->klen, j->plain, j->ts, j->v);
    if (rc) {
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    job_write(j, add_written);
}

/* The probe answered: is there a sample at ts, and which is the newest? */
static void add_probed(job_t *j)
{
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    if (key_unavailable(j, 1)) {
        job_end(j);
        return;
    }
    xset_t x = {0};
    char err[256];
    if (parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        xset_free(&x);
        job_end(j);
        return;
    }
    ent_t *e = j->e;
    int have = 0;
    double old = 0;
    int64_t hi = INT64_MIN;
    double hv = 0;
    for (size_t i = 0; i < x.n; i++) {
        if (!exact_key(&x.v[i], j->key, j->plain))
            continue;
        for (size_t k = 0; k < x.v[i].s.n; k++) {
            if (x.v[i].s.ts[k] == j->ts) {
                have = 1;
                old = x.v[i].s.v[k];
            }
            if (x.v[i].s.ts[k] >= hi) {
                hi = x.v[i].s.ts[k];
                hv = x.v[i].s.v[k];
            }
        }
    }
    xset_free(&x);
    /* what we know now: nothing after hi (or nothing at or after the probe start) */
    e->hi_known = 1;
    e->hi = hi == INT64_MIN ? j->ts - 1 : hi;
    e->last_known = hi != INT64_MIN;
    e->last_v = hv;
    int dup = j->dup;
    if (have) {
        switch (dup) {
        case DUP_BLOCK:
            resp_error(&j->c->out, "ERR TSDB: Error at upsert, update is not supported when "
                                   "DUPLICATE_POLICY is set to BLOCK mode");
            job_end(j);
            return;
        case DUP_FIRST:
            resp_int(&j->c->out, j->ts);
            job_end(j);
            return;
        case DUP_MIN:
            j->v = j->v < old ? j->v : old;
            break;
        case DUP_MAX:
            j->v = j->v > old ? j->v : old;
            break;
        case DUP_SUM:
            j->v += old;
            break;
        default:
            break;
        }
    }
    /* IGNORE: a sample close to the newest one in time and value is dropped
     * (LAST policy only, as in valkey-timeseries) */
    if (dup == DUP_LAST && e->exists && (e->meta.ignore_max_time || e->meta.ignore_max_val) &&
        e->last_known && j->ts >= e->hi && j->ts - e->hi <= e->meta.ignore_max_time &&
        fabs(j->v - e->last_v) <= e->meta.ignore_max_val) {
        resp_int(&j->c->out, e->hi);
        job_end(j);
        return;
    }
    add_write(j);
}

static void add_step(job_t *j)
{
    ent_t *e = j->e;
    int dup = j->o.on_dup != DUP_UNSET                ? j->o.on_dup
              : j->plain                              ? DUP_LAST
              : e->exists && e->meta.dup != DUP_UNSET ? e->meta.dup
              : j->o.dup != DUP_UNSET && !e->exists   ? j->o.dup
                                                      : DUP_BLOCK;
    j->dup = dup;
    int ignore =
        e->exists && (e->meta.ignore_max_time || e->meta.ignore_max_val) && dup == DUP_LAST;
    int need = (dup != DUP_LAST && (!e->hi_known || j->ts <= e->hi)) ||
               (ignore && !(e->hi_known && e->last_known));
    if (!need) {
        if (ignore && e->last_known && j->ts >= e->hi && j->ts - e->hi <= e->meta.ignore_max_time &&
            fabs(j->v - e->last_v) <= e->meta.ignore_max_val) {
            resp_int(&j->c->out, e->hi);
            job_end(j);
            return;
        }
        add_write(j);
        return;
    }
    st_buf_t sel;
    st_buf_init(&sel);
    char err[200];
    int plain;
    if (key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
        st_buf_deinit(&sel);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    int64_t lo = j->ts;
    if (ignore)
        lo = j->ts > e->meta.ignore_max_time ? j->ts - e->meta.ignore_max_time : 0;
    j->partial = 1;
    job_export(j, sels, 1, lo, INT64_MAX, add_probed);
    st_buf_deinit(&sel);
}

static void cmd_add(rconn_t *c)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    int now;
    if (resp_parse_ts(&c->argv[2], &j->ts, &now)) {
        resp_error(&c->out, "ERR TSDB: invalid timestamp");
        job_end(j);
        return;
    }
    if (now)
        j->ts = st_now_ms();
    if (resp_parse_double(&c->argv[3], &j->v)) {
        resp_error(&c->out, "ERR TSDB: invalid value");
        job_end(j);
        return;
    }
    char err[200];
    if (resp_tsopts_parse(c->argv + 4, c->argc - 4, RESP_OPTS_ADD, &j->o, err, sizeof err)) {
        resp_errorf(&c->out, "ERR %s", err);
        job_end(j);
        return;
    }
    job_meta(j, add_step);
}

/* ---- write batches: TS.MADD and pipelined TS.ADD ------------------------------------ */

/* The replies a batch owes, in command order: per command, cnt[i] == -1 is
 * a TS.ADD (one integer: v[k]), else a TS.MADD of cnt[i] samples (an array
 * of v[k..k+cnt)); INT64_MIN marks a sample refused before the write. */
typedef struct bctx {
    int64_t *v;
    size_t nv, capv;
    int32_t *cnt;
    size_t nc, capc;
    st_buf_t err; /* the refusal text of each bad sample, NUL-separated (MADD) */
} bctx_t;

#define RESP_BATCH_MAX_BYTES (8u << 20) /* write body of one batch */
#define RESP_BATCH_MAX_CMDS 1024        /* commands in one batch */

static void bctx_free(void *p)
{
    bctx_t *b = p;
    if (!b)
        return;
    free(b->v);
    free(b->cnt);
    st_buf_deinit(&b->err);
    free(b);
}

static int bctx_push(bctx_t *b, int64_t v)
{
    if (b->nv == b->capv) {
        size_t nc = b->capv ? 2 * b->capv : 256;
        int64_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv)
            return ST_ENOMEM;
        b->v = nv;
        b->capv = nc;
    }
    b->v[b->nv++] = v;
    return 0;
}

static int bctx_cmd(bctx_t *b, int32_t cnt)
{
    if (b->nc == b->capc) {
        size_t nc = b->capc ? 2 * b->capc : 64;
        int32_t *n = realloc(b->cnt, nc * sizeof *n);
        if (!n)
            return ST_ENOMEM;
        b->cnt = n;
        b->capc = nc;
    }
    b->cnt[b->nc++] = cnt;
    return 0;
}

/* A 400 of the write pipeline that only rejected items (no sample refused
 * by a cardinality limit) whose reasons are all known: each command can
 * then be answered on its own. */
static int rejects_only(const job_t *j)
{
    if (j->status != 400 || !j->wr || !resp_write_rejected_all(j->wr))
        return 0;
    return !j->body.len || !memmem(j->body.data, j->body.len, "\"refused\":[{", 12);
}

/* The error reply of a write that failed as a whole: the text
 * reply_http_error would send, without the "-" and CRLF, into msg. */
static void write_error_text(job_t *j, char *msg, size_t cap)
{
    st_buf_t tmp = j->c->out;
    st_buf_init(&j->c->out);
    reply_http_error(j, "write");
    size_t el = j->c->out.len;
    snprintf(msg, cap, "%.*s", (int)(el > 3 ? el - 3 : 0),
             el > 1 ? (const char *)j->c->out.data + 1 : "");
    st_buf_deinit(&j->c->out);
    j->c->out = tmp;
}

static void batch_written(job_t *j)
{
    bctx_t *b = j->ctx;
    st_buf_t *o = &j->c->out;
    char msg[400] = "";
    int ok = j->status == 204 || j->status == 200;
    int each = !ok && rejects_only(j);
    if (!ok) {
        /* one write for the whole batch: every sample shares its fate,
         * unless the pipeline rejected single items (those answer alone) */
        if (!each)
            write_error_text(j, msg, sizeof msg);
        cache_forget(j->s, NULL); /* what the cache assumed of these keys may be wrong */
    }
    size_t k = 0;
    for (size_t i = 0; i < b->nc; i++) {
        size_t cnt = b->cnt[i] < 0 ? 1 : (size_t)b->cnt[i];
        if (b->cnt[i] >= 0)
            resp_array(o, cnt);
        for (size_t q = 0; q < cnt; q++, k++) {
            const char *why = each ? resp_write_rejected(j->wr, (uint32_t)k) : NULL;
            if (!ok && !each) {
                resp_error(o, msg);
            } else if (b->v[k] == INT64_MIN) {
                resp_error(o, "ERR TSDB: invalid sample");
            } else if (why) {
                metric_counter_inc(j->s->m_errors);
                resp_errorf(o, "ERR write failed: %s", why);
            } else {
                resp_int(o, b->v[k]);
            }
        }
    }
    job_end(j);
}

/* The connection's open batch (made on first use). */
static job_t *batch_get(rconn_t *c)
{
    if (c->batch)
        return c->batch;
    int was = c->busy;
    job_t *j = job_new(c);
    c->busy = was;
    if (!j)
        return NULL;
    bctx_t *b = calloc(1, sizeof *b);
    if (!b) {
        uv_close((uv_handle_t *)&j->timer, job_free_timer);
        return NULL;
    }
    j->ctx = b;
    j->ctx_free = bctx_free;
    c->batch = j;
    return j;
}

/* Send the open batch; the connection waits for its replies. */
static void batch_submit(rconn_t *c)
{
    job_t *j = c->batch;
    if (!j)
        return;
    c->batch = NULL;
    c->busy = 1;
    c->cmd_used = 0;
    if (!j->wr || resp_write_count(j->wr) == 0) { /* nothing valid to write */
        j->status = 204;
        batch_written(j);
        return;
    }
    metric_counter_inc(c->s->m_batches);
    job_write(j, batch_written);
}

static int batch_full(const job_t *j)
{
    const bctx_t *b = j->ctx;
    return (j->wr && resp_write_bytes(j->wr) >= RESP_BATCH_MAX_BYTES) ||
           b->nc >= RESP_BATCH_MAX_CMDS;
}

/* Is the key spelled as a series (cpu{host="a"})? */
static int key_is_series(const resp_arg_t *k)
{
    return k->len > 1 && k->p[k->len - 1] == '}' && memchr(k->p, '{', k->len);
}

/* TS.MADD key ts value ...: its samples into the open batch. Returns 0, or
 * -1 when out of memory (answered). */
static int batch_madd(rconn_t *c)
{
    job_t *j = batch_get(c);
    if (!j || !job_wr(j)) {
        fatal_oom(c);
        return -1;
    }
    bctx_t *b = j->ctx;
    size_t n = (c->argc - 1) / 3;
    if (bctx_cmd(b, (int32_t)n))
        goto oom;
    int64_t now_ms = st_now_ms();
    for (size_t i = 0; i < n; i++) {
        const resp_arg_t *k = &c->argv[1 + 3 * i];
        int64_t ts;
        int now;
        double v;
        int64_t rep = INT64_MIN;
        uint32_t slot = (uint32_t)b->nv;
        if (k->len > 0 && !memchr(k->p, 0, k->len) &&
            !resp_parse_ts(&c->argv[2 + 3 * i], &ts, &now) &&
            !resp_parse_double(&c->argv[3 + 3 * i], &v)) {
            if (now)
                ts = now_ms;
            int plain = key_is_series(k);
            if (resp_write_sample(j->wr, slot, k->p, k->len, plain, ts, v))
                goto oom;
            rep = ts;
            ent_t *e = cache_get(c->s, k->p, k->len, 0);
            if (e && e->hi_known && ts >= e->hi) {
                e->hi = ts;
                e->last_v = v;
            }
            if (e && !plain && meta_stale(c->s, e)) {
                if (job_meta_row(j, slot, e, now_ms))
                    goto oom;
                e->meta_ts = now_ms;
            }
        }
        if (bctx_push(b, rep))
            goto oom;
    }
    return 0;
oom:
    fatal_oom(c);
    return -1;
}

static void cmd_madd(rconn_t *c)
{
    if ((c->argc - 1) % 3)
        return wrong_args(c, "ts.madd");
    if (batch_madd(c) == 0)
        batch_submit(c);
}

/* Are the key's settings cached and fresh enough for a batched write? */
static int ent_fresh(const router_resp_t *s, const ent_t *e)
{
    return e && e->loaded_ms && (uint64_t)st_now_ms() - e->loaded_ms < RESP_META_TTL_MS &&
           !meta_stale(s, e);
}

/* A TS.ADD that can join the batch: its key's settings are cached and
 * fresh, and the sample needs no read first (no duplicate possible under
 * its policy, no IGNORE); a key without settings is created with the
 * TS.ADD's options, as add_write does. Returns 1 when added, -1 when the
 * key's settings are not cached (a prefetch may help), else 0. */
static int batch_add(rconn_t *c)
{
    if (c->argc < 4)
        return 0;
    const resp_arg_t *k = &c->argv[1];
    if (k->len == 0 || memchr(k->p, 0, k->len) || key_is_series(k))
        return 0;
    ent_t *e = cache_get(c->s, k->p, k->len, 0);
    if (!ent_fresh(c->s, e))
        return -1;
    int64_t ts;
    int now;
    double v;
    if (resp_parse_ts(&c->argv[2], &ts, &now) || resp_parse_double(&c->argv[3], &v))
        return 0;
    resp_tsopts_t o;
    char err[200];
    if (resp_tsopts_parse(c->argv + 4, c->argc - 4, RESP_OPTS_ADD, &o, err, sizeof err))
        return 0;
    if (now)
        ts = st_now_ms();
    /* the policy add_step would choose */
    int dup = o.on_dup != DUP_UNSET                   ? o.on_dup
              : e->exists && e->meta.dup != DUP_UNSET ? e->meta.dup
              : o.dup != DUP_UNSET && !e->exists      ? o.dup
                                                      : DUP_BLOCK;
    int ignore = e->exists && (e->meta.ignore_max_time || e->meta.ignore_max_val);
    if (ignore && dup == DUP_LAST)
        return 0;
    if (dup != DUP_LAST && !(e->hi_known && ts > e->hi))
        return 0;
    job_t *j = batch_get(c);
    if (!j || !job_wr(j))
        return 0;
    bctx_t *b = j->ctx;
    size_t mark = resp_write_count(j->wr);
    uint32_t slot = (uint32_t)b->nv;
    int64_t now_ms = st_now_ms();
    if (!e->exists) { /* auto-create with the options of this TS.ADD */
        resp_meta_t m;
        resp_meta_default(&m);
        resp_meta_apply(&m, &o);
        ent_t tmp = {.key = e->key, .meta = m};
        if (ent_set_labels(&tmp, &o) || job_meta_row(j, slot, &tmp, now_ms)) {
            ent_free_labels(&tmp);
            resp_write_truncate(j->wr, mark);
            return 0;
        }
        ent_free_labels(e);
        e->meta = m;
        e->kv = tmp.kv;
        e->nl = tmp.nl;
        e->exists = 1;
        e->meta_ts = now_ms;
    }
    if (resp_write_sample(j->wr, slot, k->p, k->len, 0, ts, v) || bctx_cmd(b, -1)) {
        resp_write_truncate(j->wr, mark);
        return 0;
    }
    if (bctx_push(b, ts)) {
        resp_write_truncate(j->wr, mark);
        b->nc--;
        return 0;
    }
    if (e->hi_known && ts > e->hi) {
        e->hi = ts;
        e->last_v = v;
    }
    return 1;
}

/* Pipelined writes join one batch: called by conn_run for each command.
 * Returns 1 when the command went into the batch (answered later), -1 when
 * a TS.ADD could join once its key's settings are read, else 0. */
static int batch_try(rconn_t *c, const cmd_t *k)
{
    if (!k || (k->fn != cmd_madd && k->fn != cmd_add))
        return 0;
    if (k->fn == cmd_madd) {
        if (c->argc < 4 || (c->argc - 1) % 3)
            return 0;
        if (batch_madd(c))
            return 0;
    } else {
        int rc = batch_add(c);
        if (rc != 1)
            return rc;
    }
    metric_counter_inc(c->s->m_cmd[k - commands]);
    if (batch_full(c->batch))
        batch_submit(c);
    return 1;
}

/* ---- TS.INCRBY / TS.DECRBY ------------------------------------------------------- */

static void incr_next(router_resp_t *s);

static void incr_done(job_t *j)
{
    router_resp_t *s = j->s;
    s->incr_busy = 0;
    job_end(j);
    incr_next(s);
}

static void incr_written(job_t *j)
{
    if (j->status != 204 && j->status != 200) {
        reply_write_failed(j);
        j->e->hi_known = j->e->last_known = 0;
        j->e->loaded_ms = 0;
    } else {
        j->e->hi_known = j->e->last_known = 1;
        j->e->hi = j->ts;
        j->e->last_v = j->v;
        resp_int(&j->c->out, j->ts);
    }
    incr_done(j);
}

static void incr_probed(job_t *j)
{
    if (j->status != 200) {
        reply_http_error(j, "read");
        incr_done(j);
        return;
    }
    if (key_unavailable(j, 1)) {
        incr_done(j);
        return;
    }
    xset_t x = {0};
    char err[256];
    if (parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        xset_free(&x);
        incr_done(j);
        return;
    }
    int64_t hi = INT64_MIN;
    double hv = 0;
    for (size_t i = 0; i < x.n; i++)
        if (exact_key(&x.v[i], j->key, j->plain))
            for (size_t k = 0; k < x.v[i].s.n; k++)
                if (x.v[i].s.ts[k] >= hi) {
                    hi = x.v[i].s.ts[k];
                    hv = x.v[i].s.v[k];
                }
    xset_free(&x);
    if (hi == INT64_MIN && j->e->hi_known && j->e->last_known) {
        hi = j->e->hi; /* probed from the cached newest: nothing newer */
        hv = j->e->last_v;
    }
    if (hi != INT64_MIN && j->ts < hi) {
        resp_error(&j->c->out, "ERR TSDB: timestamp must be equal to or higher than the maximum "
                               "existing timestamp");
        incr_done(j);
        return;
    }
    double delta = j->v;
    j->v = (hi == INT64_MIN ? 0 : hv) + delta;
    ent_t *e = j->e;
    int rc = 0;
    if (!j->plain && !e->exists) {
        resp_meta_default(&e->meta);
        resp_meta_apply(&e->meta, &j->o);
        rc = ent_set_labels(e, &j->o);
        int64_t now = st_now_ms();
        if (!rc)
            rc = job_meta_row(j, 0, e, now);
        e->exists = 1;
        e->meta_ts = now;
    }
    if (!rc)
        rc = job_sample(j, 0, j->key, j->klen, j->plain, j->ts, j->v);
    if (rc) {
        fatal_oom(j->c);
        incr_done(j);
        return;
    }
    job_write(j, incr_written);
}

static void incr_step(job_t *j)
{
    st_buf_t sel;
    st_buf_init(&sel);
    char err[200];
    int plain;
    if (key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
        st_buf_deinit(&sel);
        fatal_oom(j->c);
        incr_done(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    /* from the newest sample this router knows of (samples written by
     * others after it are found too), else the whole series */
    int64_t lo = j->e->hi_known && j->e->last_known ? j->e->hi : 0;
    j->partial = 1;
    job_export(j, sels, 1, lo, INT64_MAX, incr_probed);
    st_buf_deinit(&sel);
}

static void incr_start(job_t *j)
{
    job_meta(j, incr_step);
}

static void incr_next(router_resp_t *s)
{
    if (s->incr_busy || !s->incr_head)
        return;
    job_t *j = s->incr_head;
    s->incr_head = j->qnext;
    if (!s->incr_head)
        s->incr_tail = NULL;
    s->incr_busy = 1;
    incr_start(j);
}

static void cmd_incr(rconn_t *c, int sign)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    if (resp_parse_double(&c->argv[2], &j->v)) {
        resp_error(&c->out, "ERR TSDB: invalid value");
        job_end(j);
        return;
    }
    j->v *= sign;
    char err[200];
    if (resp_tsopts_parse(c->argv + 3, c->argc - 3, RESP_OPTS_INCR, &j->o, err, sizeof err)) {
        resp_errorf(&c->out, "ERR %s", err);
        job_end(j);
        return;
    }
    j->ts = j->o.has_ts && !j->o.ts_now ? j->o.ts : st_now_ms();
    if (c->s->incr_tail)
        c->s->incr_tail->qnext = j;
    else
        c->s->incr_head = j;
    c->s->incr_tail = j;
    incr_next(c->s);
}

static void cmd_incrby(rconn_t *c)
{
    cmd_incr(c, 1);
}

static void cmd_decrby(rconn_t *c)
{
    cmd_incr(c, -1);
}

/* ---- reads: one key ------------------------------------------------------------------ */

/* Drop samples older than the key's retention, counted back from its newest. */
static void apply_retention(const ent_t *e, resp_samples_t *s)
{
    if (!e || !e->exists || e->meta.retention_ms <= 0 || s->n == 0)
        return;
    int64_t cut = s->ts[s->n - 1] - e->meta.retention_ms;
    size_t k = 0;
    while (k < s->n && s->ts[k] < cut)
        k++;
    if (k) {
        memmove(s->ts, s->ts + k, (s->n - k) * sizeof *s->ts);
        memmove(s->v, s->v + k, (s->n - k) * sizeof *s->v);
        s->n -= k;
    }
}

static void reply_samples(rconn_t *c, const resp_samples_t *s)
{
    resp_array(&c->out, s->n);
    for (size_t i = 0; i < s->n; i++) {
        resp_array(&c->out, 2);
        resp_int(&c->out, s->ts[i]);
        resp_double(&c->out, c->proto, s->v[i]);
    }
}

/* Take the key's own series out of an export answer (merged when the
 * answer has it twice). */
static int key_samples(job_t *j, resp_samples_t *out, int *found)
{
    xset_t x = {0};
    char err[256];
    *found = 0;
    if (parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        xset_free(&x);
        return -1;
    }
    for (size_t i = 0; i < x.n; i++)
        if (exact_key(&x.v[i], j->key, j->plain)) {
            *found = 1;
            resp_samples_free(out);
            *out = x.v[i].s;
            memset(&x.v[i].s, 0, sizeof x.v[i].s);
            break;
        }
    xset_free(&x);
    return 0;
}

static void range_read(job_t *j)
{
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    if (key_unavailable(j, 1)) {
        job_end(j);
        return;
    }
    resp_samples_t s = {0};
    int found;
    if (key_samples(j, &s, &found)) {
        job_end(j);
        return;
    }
    if (!found && !j->e->exists) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        resp_samples_free(&s);
        job_end(j);
        return;
    }
    apply_retention(j->e, &s);
    if (j->kind == 'G') { /* TS.GET */
        if (s.n == 0) {
            resp_array(&j->c->out, 0);
        } else {
            resp_array(&j->c->out, 2);
            resp_int(&j->c->out, s.ts[s.n - 1]);
            resp_double(&j->c->out, j->c->proto, s.v[s.n - 1]);
        }
    } else if (j->kind == 'I') { /* TS.INFO */
        ent_t *e = j->e;
        st_buf_t *o = &j->c->out;
        int p = j->c->proto;
        resp_map(o, p, 14);
        resp_bulk_str(o, "totalSamples");
        resp_int(o, (int64_t)s.n);
        resp_bulk_str(o, "memoryUsage");
        resp_int(o, (int64_t)(s.n * 16));
        resp_bulk_str(o, "firstTimestamp");
        resp_int(o, s.n ? s.ts[0] : 0);
        resp_bulk_str(o, "lastTimestamp");
        resp_int(o, s.n ? s.ts[s.n - 1] : 0);
        resp_bulk_str(o, "retentionTime");
        resp_int(o, e->meta.retention_ms);
        resp_bulk_str(o, "chunkCount");
        resp_int(o, (int64_t)(s.n ? 1 + s.n * 16 /
                                            (size_t)(e->meta.chunk_size ? e->meta.chunk_size : 4096)
                                  : 0));
        resp_bulk_str(o, "chunkSize");
        resp_int(o, e->meta.chunk_size);
        resp_bulk_str(o, "chunkType");
        resp_simple(o, e->meta.compressed ? "compressed" : "uncompressed");
        resp_bulk_str(o, "duplicatePolicy");
        if (e->meta.dup == DUP_UNSET)
            resp_null(o, p);
        else
            resp_simple(o, resp_dup_name(e->meta.dup));
        resp_bulk_str(o, "labels");
        if (j->plain) {
            char ebuf[64];
            selector_t sel;
            if (selector_parse(j->key, j->klen, &sel, ebuf, sizeof ebuf) == 0) {
                resp_array(o, sel.n);
                for (size_t i = 0; i < sel.n; i++) {
                    resp_array(o, 2);
                    resp_bulk_str(o, sel.m[i].name);
                    resp_bulk_str(o, sel.m[i].value);
                }
                selector_free(&sel);
            } else {
                resp_array(o, 0);
            }
        } else {
            resp_array(o, e->nl);
            for (size_t i = 0; i < e->nl; i++) {
                resp_array(o, 2);
                resp_bulk_str(o, e->kv[2 * i]);
                resp_bulk_str(o, e->kv[2 * i + 1]);
            }
        }
        rules_t set; /* the router's newest known rule set (its heartbeat refreshes it) */
        char *ksel = arg_selector(j, 1);
        if (router_rules_snapshot(j->s->r, &set) == 0 && ksel) {
            resp_rules_info(o, p, &set, ksel);
        } else {
            resp_bulk_str(o, "sourceKey");
            resp_null(o, p);
            resp_bulk_str(o, "rules");
            resp_array(o, 0);
        }
        rules_free(&set);
        free(ksel);
        resp_bulk_str(o, "ignoreMaxTimeDiff");
        resp_int(o, e->meta.ignore_max_time);
        resp_bulk_str(o, "ignoreMaxValDiff");
        resp_double_bulk(o, e->meta.ignore_max_val);
    } else {
        int rc = resp_range_apply(&j->rg, &s);
        if (rc == ST_ELIMIT)
            resp_error(&j->c->out, "ERR TSDB: too many buckets (at most 10000000)");
        else if (rc)
            fatal_oom(j->c);
        else
            reply_samples(j->c, &s);
    }
    resp_samples_free(&s);
    job_end(j);
}

static void exists_read(job_t *j);

static void range_step(job_t *j)
{
    st_buf_t sel;
    st_buf_init(&sel);
    char err[200];
    int plain;
    if (key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
        st_buf_deinit(&sel);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    int64_t from = j->kind == 'R' ? j->rg.from : 0;
    int64_t to =
        j->kind == 'R' && !(j->e->exists && j->e->meta.retention_ms > 0) ? j->rg.to : INT64_MAX;
    j->partial = 1;
    job_export(j, sels, 1, from, to, j->kind == 'E' || j->kind == 'T' ? exists_read : range_read);
    st_buf_deinit(&sel);
}

static void cmd_range_common(rconn_t *c, int rev)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    char err[200];
    if (resp_range_parse(c->argv + 2, c->argc - 2, RESP_RANGE_ONE, &j->rg, err, sizeof err)) {
        resp_errorf(&c->out, "%s%s", strncmp(err, "ERR", 3) ? "ERR " : "", err);
        job_end(j);
        return;
    }
    j->rg.rev = rev;
    j->kind = 'R';
    job_meta(j, range_step);
}

static void cmd_range(rconn_t *c)
{
    cmd_range_common(c, 0);
}

static void cmd_revrange(rconn_t *c)
{
    cmd_range_common(c, 1);
}

static void cmd_get_info(rconn_t *c, int kind)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    for (size_t i = 2; i < c->argc; i++)
        if (!resp_arg_is(&c->argv[i], "LATEST") && !resp_arg_is(&c->argv[i], "DEBUG")) {
            resp_errorf(&c->out, "ERR TSDB: unknown argument '%.*s'",
                        (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len), c->argv[i].p);
            job_end(j);
            return;
        }
    j->kind = kind;
    job_meta(j, range_step);
}

static void cmd_get(rconn_t *c)
{
    cmd_get_info(c, 'G');
}

static void cmd_tsinfo(rconn_t *c)
{
    cmd_get_info(c, 'I');
}

/* EXISTS / TYPE: a key exists when it has metadata or samples. */
static void exists_read(job_t *j)
{
    int found = 0;
    if (j->status == 200 && key_unavailable(j, 1)) {
        job_end(j);
        return;
    }
    if (j->status == 200) {
        resp_samples_t s = {0};
        if (key_samples(j, &s, &found)) {
            job_end(j);
            return;
        }
        resp_samples_free(&s);
    }
    int yes = found || (j->e && j->e->exists);
    if (j->kind == 'T')
        resp_simple(&j->c->out, yes ? "TSDB-TYPE" : "none");
    else {
        int64_t *count = j->ctx;
        *count += yes;
    }
    if (j->kind == 'T') {
        job_end(j);
        return;
    }
    /* EXISTS k1 k2 ...: the next key */
    size_t i = (size_t)j->dup + 1;
    if (i >= j->argc) {
        resp_int(&j->c->out, *(int64_t *)j->ctx);
        job_end(j);
        return;
    }
    j->dup = (int)i;
    free(j->key);
    j->key = NULL;
    if (job_key(j, i) != 0) {
        job_end(j);
        return;
    }
    job_meta(j, range_step);
}

static void cmd_exists_type(rconn_t *c, int kind)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = kind;
    j->dup = 1;
    j->ctx = calloc(1, sizeof(int64_t));
    j->ctx_free = free;
    if (!j->ctx || job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    /* range_step reads the whole series; exists_read takes the answer */
    j->rg.from = 0;
    j->rg.to = INT64_MAX;
    j->kind = kind;
    job_meta(j, range_step);
}

static void cmd_exists(rconn_t *c)
{
    cmd_exists_type(c, 'E');
}

static void cmd_type(rconn_t *c)
{
    cmd_exists_type(c, 'T');
}

/* ---- reads: many keys (FILTER) ------------------------------------------------------ */

/* What a FILTER selects: TS keys (from their newest metadata) and other
 * series (matching the filters on their own labels). */
typedef struct msel {
    xset_t meta; /* every version of the candidate keys */
    xset_t data; /* the samples */
    char **keys; /* TS keys selected (owned) */
    size_t nkeys;
    ent_t *ents; /* per selected key: settings and labels (owned, not cached) */
    int stage;
} msel_t;

static void msel_free(void *p)
{
    msel_t *m = p;
    if (!m)
        return;
    xset_free(&m->meta);
    xset_free(&m->data);
    for (size_t i = 0; i < m->nkeys; i++) {
        free(m->keys[i]);
        ent_free_labels(&m->ents[i]);
    }
    free(m->keys);
    free(m->ents);
    free(m);
}

/* selector text for the metadata series with the positive (selecting)
 * filters on user labels. */
static int meta_filter_selector(st_buf_t *b, const st_matcher_t *f, size_t nf)
{
    int rc = ST_BUF_LIT(b, "{");
    if (!rc)
        rc = sel_matcher(b, "__name__", ST_MATCH_EQ, RESP_TS_META_NAME);
    for (size_t i = 0; i < nf && !rc; i++) {
        if (strcmp(f[i].name, "__name__") == 0)
            continue;
        if (!((f[i].type == ST_MATCH_EQ && f[i].value[0]) || f[i].type == ST_MATCH_RE))
            continue;
        rc = st_buf_put_u8(b, ',');
        if (!rc)
            rc = sel_matcher(b, f[i].name, f[i].type, f[i].value);
    }
    if (!rc)
        rc = ST_BUF_LIT(b, "}");
    if (!rc)
        rc = st_buf_put_u8(b, 0);
    return rc;
}

static int regex_escape(st_buf_t *b, const char *s)
{
    int rc = 0;
    for (; *s && !rc; s++) {
        if (strchr("\\.^$|?*+()[]{}", *s))
            rc = st_buf_put_u8(b, '\\');
        if (!rc)
            rc = st_buf_put_u8(b, (uint8_t)*s);
    }
    return rc;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

#define RESP_SEL_CHUNK 48000 /* bytes of key alternatives in one selector */
#define RESP_SEL_MAX 15      /* selectors of one read (the router takes 16 match[]) */

/* Selectors that together match label =~ one of keys[0..nk) (each key
 * regex-escaped), with the matcher pname="pval" in front when pname is set:
 * NUL-terminated texts in bufs[0..*n), which the caller frees. Returns 0,
 * ST_ELIMIT (more than max selectors needed) or ST_ENOMEM. */
static int key_selectors(st_buf_t *bufs, size_t max, size_t *n, const char *pname, const char *pval,
                         const char *label, char *const *keys, size_t nk)
{
    *n = 0;
    size_t i = 0;
    int rc = 0;
    while (i < nk && !rc) {
        if (*n >= max)
            return ST_ELIMIT;
        st_buf_t re;
        st_buf_init(&re);
        size_t first = i;
        while (i < nk && !rc && (i == first || re.len < RESP_SEL_CHUNK)) {
            if (i > first)
                rc = st_buf_put_u8(&re, '|');
            if (!rc)
                rc = regex_escape(&re, keys[i]);
            i++;
        }
        if (!rc)
            rc = st_buf_put_u8(&re, 0);
        st_buf_t *b = &bufs[(*n)++];
        st_buf_init(b);
        if (!rc)
            rc = ST_BUF_LIT(b, "{");
        if (!rc && pname) {
            rc = sel_matcher(b, pname, ST_MATCH_EQ, pval);
            if (!rc)
                rc = st_buf_put_u8(b, ',');
        }
        if (!rc)
            rc = sel_matcher(b, label, ST_MATCH_RE, (const char *)re.data);
        if (!rc)
            rc = ST_BUF_LIT(b, "}");
        if (!rc)
            rc = st_buf_put_u8(b, 0);
        st_buf_deinit(&re);
    }
    return rc;
}

static void bufs_free(st_buf_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st_buf_deinit(&b[i]);
}

static void mfilter_done(job_t *j);
static void mfilter_meta2(job_t *j);
static void mfilter_data(job_t *j);

/* Step 1: metadata series matching the selecting filters. */
static void mfilter_start(job_t *j)
{
    msel_t *m = calloc(1, sizeof *m);
    j->ctx = m;
    j->ctx_free = msel_free;
    st_buf_t sel;
    st_buf_init(&sel);
    if (!m || meta_filter_selector(&sel, j->rg.filters, j->rg.nfilters)) {
        st_buf_deinit(&sel);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    job_export(j, sels, 1, 0, INT64_MAX, mfilter_meta2);
    st_buf_deinit(&sel);
}

/* Step 2: every version of the candidate keys (an older version may have
 * matched while the newest does not). */
static void mfilter_meta2(job_t *j)
{
    msel_t *m = j->ctx;
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    char err[256];
    xset_t x = {0};
    if (parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        xset_free(&x);
        job_end(j);
        return;
    }
    /* the distinct candidate keys */
    char **keys = calloc(x.n + 1, sizeof *keys);
    size_t nc = 0;
    for (size_t i = 0; i < x.n && keys; i++) {
        const char *k = kv_get(x.v[i].kv, x.v[i].nl, RESP_TS_KEY_LABEL);
        int seen = 0;
        for (size_t q = 0; k && q < nc && !seen; q++)
            seen = strcmp(keys[q], k) == 0;
        if (k && !seen)
            keys[nc++] = (char *)k;
    }
    if (!keys) {
        xset_free(&x);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    if (nc == 0) {
        free(keys);
        xset_free(&x);
        m->stage = 1;
        mfilter_data(j);
        return;
    }
    st_buf_t bufs[RESP_SEL_MAX];
    size_t ns;
    int rc = key_selectors(bufs, RESP_SEL_MAX, &ns, "__name__", RESP_TS_META_NAME,
                           RESP_TS_KEY_LABEL, keys, nc);
    free(keys);
    xset_free(&x);
    if (rc) {
        bufs_free(bufs, ns);
        if (rc == ST_ELIMIT)
            resp_error(&j->c->out, "ERR TSDB: the filter matches too many keys");
        else
            fatal_oom(j->c);
        job_end(j);
        return;
    }
    const char *sels[RESP_SEL_MAX] = {0};
    for (size_t i = 0; i < ns; i++)
        sels[i] = (const char *)bufs[i].data;
    m->stage = 1;
    job_export(j, sels, ns, 0, INT64_MAX, mfilter_data);
    bufs_free(bufs, ns);
}

/* Step 3: the newest version of each key decides; then the samples of the
 * selected keys and of the other series the filters match. */
static void mfilter_data(job_t *j)
{
    msel_t *m = j->ctx;
    char err[256];
    if (j->status != 200 && j->body.len) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    xset_t x = {0};
    if (j->body.len && parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        xset_free(&x);
        job_end(j);
        return;
    }
    j->body.len = 0;
    /* distinct keys */
    char **keys = calloc(x.n + 1, sizeof *keys);
    size_t nk = 0;
    for (size_t i = 0; i < x.n && keys; i++) {
        const char *k = kv_get(x.v[i].kv, x.v[i].nl, RESP_TS_KEY_LABEL);
        int seen = 0;
        for (size_t q = 0; k && q < nk && !seen; q++)
            seen = strcmp(keys[q], k) == 0;
        if (k && !seen)
            keys[nk++] = strdup(k);
    }
    m->ents = calloc(nk + 1, sizeof *m->ents);
    m->keys = calloc(nk + 1, sizeof *m->keys);
    if (!keys || !m->ents || !m->keys) {
        free(keys);
        xset_free(&x);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    for (size_t q = 0; q < nk; q++) {
        ent_t e = {0};
        meta_from(&e, &x, keys[q]);
        /* filters on the key's labels, __name__ standing for the key */
        const char **kv = calloc(2 * e.nl + 3, sizeof *kv);
        size_t np = 0;
        if (kv) {
            kv[0] = "__name__";
            kv[1] = keys[q];
            np = 1;
            for (size_t i = 0; i < e.nl; i++) {
                kv[2 * np] = e.kv[2 * i];
                kv[2 * np + 1] = e.kv[2 * i + 1];
                np++;
            }
        }
        if (e.exists && kv && resp_labels_match(j->rg.filters, j->rg.nfilters, kv, np)) {
            m->keys[m->nkeys] = keys[q];
            m->ents[m->nkeys] = e;
            m->nkeys++;
            keys[q] = NULL;
        } else {
            ent_free_labels(&e);
        }
        free(kv);
        free(keys[q]);
    }
    free(keys);
    xset_free(&x);
    /* sel 1: the series of the selected keys; sel 2: other series matching
     * the filters directly (not metadata) */
    st_buf_t bufs[RESP_SEL_MAX + 1];
    size_t ns = 0;
    int rc = m->nkeys
                 ? key_selectors(bufs, RESP_SEL_MAX, &ns, NULL, NULL, "__name__", m->keys, m->nkeys)
                 : 0;
    st_buf_t *s2 = &bufs[ns];
    st_buf_init(s2);
    if (!rc)
        rc = ST_BUF_LIT(s2, "{");
    for (size_t i = 0; i < j->rg.nfilters && !rc; i++) {
        rc = sel_matcher(s2, j->rg.filters[i].name, j->rg.filters[i].type, j->rg.filters[i].value);
        if (!rc)
            rc = st_buf_put_u8(s2, ',');
    }
    if (!rc)
        rc = sel_matcher(s2, "__name__", ST_MATCH_NE, RESP_TS_META_NAME);
    if (!rc)
        rc = ST_BUF_LIT(s2, "}");
    if (!rc)
        rc = st_buf_put_u8(s2, 0);
    ns++;
    if (rc) {
        bufs_free(bufs, ns);
        if (rc == ST_ELIMIT)
            resp_error(&j->c->out, "ERR TSDB: the filter matches too many keys");
        else
            fatal_oom(j->c);
        job_end(j);
        return;
    }
    const char *sels[RESP_SEL_MAX + 1] = {0};
    for (size_t i = 0; i < ns; i++)
        sels[i] = (const char *)bufs[i].data;
    int64_t from = j->kind == 'M' ? 0 : j->rg.from;
    int64_t to = INT64_MAX;
    int any_ret = 0;
    for (size_t i = 0; i < m->nkeys; i++)
        any_ret |= m->ents[i].meta.retention_ms > 0;
    if (j->kind == 'R' && !any_ret)
        to = j->rg.to;
    m->stage = 2;
    job_export(j, sels, ns, from, to, mfilter_done);
    bufs_free(bufs, ns);
}

/* One selected series: its key, labels, samples. */
typedef struct mrow {
    const char *key;
    char *const *kv; /* labels to show: name, value ... */
    size_t nl;
    resp_samples_t *s;
} mrow_t;

static int mrow_cmp(const void *a, const void *b)
{
    return strcmp(((const mrow_t *)a)->key, ((const mrow_t *)b)->key);
}

static ent_t *msel_ent(msel_t *m, const char *key)
{
    for (size_t i = 0; i < m->nkeys; i++)
        if (strcmp(m->keys[i], key) == 0)
            return &m->ents[i];
    return NULL;
}

/* n keyed entries: a RESP3 map, or a RESP2 array of n arrays. */
static void rows_head(rconn_t *c, size_t n)
{
    if (c->proto >= 3)
        resp_map(&c->out, 3, n);
    else
        resp_array(&c->out, n);
}

static void reply_labels(rconn_t *c, const resp_range_t *rg, char *const *kv, size_t nl, int force)
{
    st_buf_t *o = &c->out;
    int p = c->proto;
    if (rg->nselected) {
        rows_head(c, rg->nselected);
        for (size_t i = 0; i < rg->nselected; i++) {
            char name[300];
            size_t n =
                rg->selected[i].len < sizeof name - 1 ? rg->selected[i].len : sizeof name - 1;
            memcpy(name, rg->selected[i].p, n);
            name[n] = 0;
            const char *v = kv_get(kv, nl, name);
            if (p < 3)
                resp_array(o, 2);
            resp_bulk_str(o, name);
            if (v)
                resp_bulk_str(o, v);
            else
                resp_null(o, p);
        }
        return;
    }
    if (!rg->withlabels && !force) {
        rows_head(c, 0);
        return;
    }
    rows_head(c, nl);
    for (size_t i = 0; i < nl; i++) {
        if (p < 3)
            resp_array(o, 2);
        resp_bulk_str(o, kv[2 * i]);
        resp_bulk_str(o, kv[2 * i + 1]);
    }
}

/* A row's entry: RESP2 [key, labels, samples-or-sample]; RESP3 map entry
 * key => [labels, samples-or-sample]. */
static void reply_row_head(rconn_t *c, const char *key)
{
    if (c->proto >= 3) {
        resp_bulk_str(&c->out, key);
        resp_array(&c->out, 2);
    } else {
        resp_array(&c->out, 3);
        resp_bulk_str(&c->out, key);
    }
}

static void reply_groups(job_t *j, mrow_t *rows, size_t n);

static void mfilter_done(job_t *j)
{
    msel_t *m = j->ctx;
    char err[256];
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    if (parse_export(&j->body, &m->data, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        job_end(j);
        return;
    }
    mrow_t *rows = calloc(m->data.n + 1, sizeof *rows);
    if (!rows) {
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < m->data.n; i++) {
        xser_t *x = &m->data.v[i];
        const char *name = kv_get(x->kv, x->nl, "__name__");
        ent_t *e = NULL;
        if (x->nl == 1 && name)
            e = msel_ent(m, name);
        if (e) {
            rows[n].key = name;
            rows[n].kv = e->kv;
            rows[n].nl = e->nl;
            apply_retention(e, &x->s);
        } else {
            const char **kv = (const char **)x->kv;
            if (!resp_labels_match(j->rg.filters, j->rg.nfilters, kv, x->nl))
                continue;
            /* a TS key's own series is shown through its metadata only */
            if (x->nl == 1 && name && cache_get(j->s, name, strlen(name), 0) &&
                cache_get(j->s, name, strlen(name), 0)->exists)
                continue;
            x->key = series_key(x->kv, x->nl);
            if (!x->key)
                continue;
            rows[n].key = x->key;
            rows[n].kv = x->kv;
            rows[n].nl = x->nl;
        }
        rows[n].s = &x->s;
        n++;
    }
    /* a key whose series has no sample in the range still answers (MGET,
     * MRANGE list every selected key) */
    size_t extra = 0;
    for (size_t q = 0; q < m->nkeys; q++) {
        int seen = 0;
        for (size_t i = 0; i < n && !seen; i++)
            seen = strcmp(rows[i].key, m->keys[q]) == 0;
        extra += !seen;
    }
    static resp_samples_t none;
    if (extra) {
        mrow_t *nr = realloc(rows, (n + extra + 1) * sizeof *rows);
        if (nr) {
            rows = nr;
            for (size_t q = 0; q < m->nkeys; q++) {
                int seen = 0;
                for (size_t i = 0; i < n && !seen; i++)
                    seen = strcmp(rows[i].key, m->keys[q]) == 0;
                if (!seen)
                    rows[n++] = (mrow_t){m->keys[q], m->ents[q].kv, m->ents[q].nl, &none};
            }
        }
    }
    if (n > 1)
        qsort(rows, n, sizeof *rows, mrow_cmp);
    st_buf_t *o = &j->c->out;
    int p = j->c->proto;
    if (j->kind == 'M') { /* TS.MGET */
        rows_head(j->c, n);
        for (size_t i = 0; i < n; i++) {
            reply_row_head(j->c, rows[i].key);
            reply_labels(j->c, &j->rg, rows[i].kv, rows[i].nl, 0);
            resp_samples_t *s = rows[i].s;
            if (s->n) {
                resp_array(o, 2);
                resp_int(o, s->ts[s->n - 1]);
                resp_double(o, p, s->v[s->n - 1]);
            } else {
                resp_array(o, 0);
            }
        }
    } else if (j->kind == 'R') { /* TS.MRANGE / MREVRANGE */
        int bad = 0;
        for (size_t i = 0; i < n && !bad; i++)
            if (rows[i].s != &none)
                bad = resp_range_apply(&j->rg, rows[i].s);
        if (bad) {
            resp_error(o, bad == ST_ELIMIT ? "ERR TSDB: too many buckets (at most 10000000)"
                                           : "ERR out of memory");
        } else if (j->rg.groupby) {
            reply_groups(j, rows, n);
        } else {
            rows_head(j->c, n);
            for (size_t i = 0; i < n; i++) {
                reply_row_head(j->c, rows[i].key);
                reply_labels(j->c, &j->rg, rows[i].kv, rows[i].nl, 0);
                reply_samples(j->c, rows[i].s);
            }
        }
    } else if (j->kind == 'Q') { /* TS.QUERYINDEX */
        resp_array(o, n);
        for (size_t i = 0; i < n; i++)
            resp_bulk_str(o, rows[i].key);
    } else if (j->kind == 'C') { /* TS.CARD */
        resp_int(o, (int64_t)n);
    } else if (j->kind == 'N' || j->kind == 'V') { /* TS.LABELNAMES / LABELVALUES */
        char lname[300] = "";
        if (j->kind == 'V') {
            size_t l = j->argv[1].len < sizeof lname - 1 ? j->argv[1].len : sizeof lname - 1;
            memcpy(lname, j->argv[1].p, l);
            lname[l] = 0;
        }
        char **list = NULL;
        size_t nl = 0, cap = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < rows[i].nl; k++) {
                const char *s = j->kind == 'N' ? rows[i].kv[2 * k] : rows[i].kv[2 * k + 1];
                if (j->kind == 'V' && strcmp(rows[i].kv[2 * k], lname) != 0)
                    continue;
                int seen = 0;
                for (size_t q = 0; q < nl && !seen; q++)
                    seen = strcmp(list[q], s) == 0;
                if (seen)
                    continue;
                if (nl == cap) {
                    cap = cap ? 2 * cap : 16;
                    char **nlst = realloc(list, cap * sizeof *list);
                    if (!nlst)
                        break;
                    list = nlst;
                }
                list[nl++] = (char *)s;
            }
        if (nl > 1)
            qsort(list, nl, sizeof *list, str_cmp);
        resp_array(o, nl);
        for (size_t q = 0; q < nl; q++)
            resp_bulk_str(o, list[q]);
        free(list);
    }
    free(rows);
    job_end(j);
}

/* GROUPBY label REDUCE r: series grouped by their value of the label
 * (series without it are left out); per timestamp, the reducer over the
 * group's values at that timestamp. */
/* A sample of a GROUPBY group: its time, its place in the group, its value. */
typedef struct gsample {
    int64_t ts;
    size_t i;
    double v;
} gsample_t;

static int gsample_cmp(const void *a, const void *b)
{
    const gsample_t *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static void reply_groups(job_t *j, mrow_t *rows, size_t n)
{
    char lab[300];
    size_t ll = j->rg.groupby->len < sizeof lab - 1 ? j->rg.groupby->len : sizeof lab - 1;
    memcpy(lab, j->rg.groupby->p, ll);
    lab[ll] = 0;
    const char **vals = calloc(n + 1, sizeof *vals);
    size_t nv = 0;
    for (size_t i = 0; i < n && vals; i++) {
        const char *v = kv_get(rows[i].kv, rows[i].nl, lab);
        int seen = 0;
        for (size_t q = 0; v && q < nv && !seen; q++)
            seen = strcmp(vals[q], v) == 0;
        if (v && !seen)
            vals[nv++] = v;
    }
    if (!vals) {
        fatal_oom(j->c);
        return;
    }
    if (nv > 1)
        qsort(vals, nv, sizeof *vals, str_cmp);
    rows_head(j->c, nv);
    for (size_t g = 0; g < nv; g++) {
        /* timestamps of the group, merged */
        resp_samples_t all = {0};
        st_buf_t src;
        st_buf_init(&src);
        for (size_t i = 0; i < n; i++) {
            const char *v = kv_get(rows[i].kv, rows[i].nl, lab);
            if (!v || strcmp(v, vals[g]) != 0)
                continue;
            if (src.len)
                st_buf_put_u8(&src, ',');
            st_buf_append(&src, rows[i].key, strlen(rows[i].key));
            for (size_t k = 0; k < rows[i].s->n; k++)
                resp_samples_push(&all, rows[i].s->ts[k], rows[i].s->v[k]);
        }
        st_buf_put_u8(&src, 0);
        /* by timestamp, the group's series in order at equal times
         * (n log n: a group may hold millions of samples) */
        size_t m = all.n;
        gsample_t *gs = malloc((m + 1) * sizeof *gs);
        for (size_t i = 0; gs && i < m; i++)
            gs[i] = (gsample_t){all.ts[i], i, all.v[i]};
        if (gs && m > 1)
            qsort(gs, m, sizeof *gs, gsample_cmp);
        resp_samples_t red = {0};
        double *buf = malloc((m + 1) * sizeof *buf);
        for (size_t i = 0; gs && buf && i < m;) {
            size_t k = i, c = 0;
            while (k < m && gs[k].ts == gs[i].ts)
                buf[c++] = gs[k++].v;
            resp_samples_push(&red, gs[i].ts, resp_agg_values(j->rg.reducer, NULL, buf, c, 0, 0));
            i = k;
        }
        if (j->rg.rev)
            for (size_t i = 0; i < red.n / 2; i++) {
                size_t q = red.n - 1 - i;
                int64_t t = red.ts[i];
                red.ts[i] = red.ts[q];
                red.ts[q] = t;
                double v = red.v[i];
                red.v[i] = red.v[q];
                red.v[q] = v;
            }
        if (j->rg.count > 0 && (uint64_t)j->rg.count < red.n)
            red.n = (size_t)j->rg.count;
        char gk[700];
        snprintf(gk, sizeof gk, "%s=%s", lab, vals[g]);
        reply_row_head(j->c, gk);
        const char *gl[6] = {lab,           vals[g],
                             "__reducer__", resp_agg_name(j->rg.reducer),
                             "__source__",  (const char *)src.data};
        reply_labels(j->c, &j->rg, (char *const *)gl, 3, 1);
        reply_samples(j->c, &red);
        free(gs);
        free(buf);
        resp_samples_free(&all);
        resp_samples_free(&red);
        st_buf_deinit(&src);
    }
    free(vals);
}

static void cmd_mrange_common(rconn_t *c, int rev)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    char err[200];
    if (resp_range_parse(c->argv + 1, c->argc - 1, RESP_RANGE_MULTI, &j->rg, err, sizeof err)) {
        resp_errorf(&c->out, "%s%s", strncmp(err, "ERR", 3) ? "ERR " : "", err);
        job_end(j);
        return;
    }
    j->rg.rev = rev;
    j->kind = 'R';
    mfilter_start(j);
}

static void cmd_mrange(rconn_t *c)
{
    cmd_mrange_common(c, 0);
}

static void cmd_mrevrange(rconn_t *c)
{
    cmd_mrange_common(c, 1);
}

static void cmd_mget(rconn_t *c)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    char err[200];
    if (resp_range_parse(c->argv + 1, c->argc - 1, RESP_RANGE_MGET, &j->rg, err, sizeof err)) {
        resp_errorf(&c->out, "%s%s", strncmp(err, "ERR", 3) ? "ERR " : "", err);
        job_end(j);
        return;
    }
    j->kind = 'M';
    mfilter_start(j);
}

/* TS.QUERYINDEX f..., TS.CARD [FILTER f...], TS.LABELNAMES [FILTER f...],
 * TS.LABELVALUES label [FILTER f...] */
static void cmd_index(rconn_t *c, int kind, size_t first)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    char err[200];
    size_t i = first;
    if (kind != 'Q') {
        if (i >= c->argc) {
            /* no FILTER: every TS key and series, __name__ != "" */
            j->rg.filters[0].name = strdup("__name__");
            j->rg.filters[0].type = ST_MATCH_NE;
            j->rg.filters[0].value = strdup("");
            j->rg.nfilters = 1;
            if (!j->rg.filters[0].name || !j->rg.filters[0].value) {
                fatal_oom(c);
                job_end(j);
                return;
            }
            goto run;
        }
        if (!resp_arg_is(&c->argv[i], "FILTER")) {
            resp_error(&c->out, "ERR TSDB: expected FILTER");
            job_end(j);
            return;
        }
        i++;
    }
    if (i >= c->argc || resp_filter_parse(c->argv + i, c->argc - i, j->rg.filters,
                                          RESP_TS_MAX_FILTERS, &j->rg.nfilters, err, sizeof err)) {
        if (i >= c->argc)
            snprintf(err, sizeof err, "TSDB: missing FILTER argument");
        resp_errorf(&c->out, "ERR %s", err);
        job_end(j);
        return;
    }
run:
    j->rg.from = 0;
    j->rg.to = INT64_MAX;
    j->rg.count = -1;
    j->kind = kind;
    mfilter_start(j);
}

static void cmd_queryindex(rconn_t *c)
{
    cmd_index(c, 'Q', 1);
}

static void cmd_card(rconn_t *c)
{
    cmd_index(c, 'C', 1);
}

static void cmd_labelnames(rconn_t *c)
{
    cmd_index(c, 'N', 1);
}

static void cmd_labelvalues(rconn_t *c)
{
    cmd_index(c, 'V', 2);
}

/* KEYS pattern / SCAN cursor [MATCH p] [COUNT n]: every TS key and series
 * key (one pass: SCAN answers everything with cursor 0). */
static int glob_match(const char *p, const char *s)
{
    for (; *p; p++, s++) {
        if (*p == '*') {
            while (p[1] == '*')
                p++;
            if (!p[1])
                return 1;
            for (; *s; s++)
                if (glob_match(p + 1, s))
                    return 1;
            return glob_match(p + 1, s);
        }
        if (!*s)
            return 0;
        if (*p == '?')
            continue;
        if (*p == '\\' && p[1])
            p++;
        if (*p != *s)
            return 0;
    }
    return *s == 0;
}

static void keys_done(job_t *j)
{
    msel_t *m = j->ctx;
    (void)m;
    st_buf_t *o = &j->c->out;
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    json_t *doc = json_loadb((const char *)j->body.data, j->body.len, 0, NULL);
    json_t *data = doc ? json_object_get(doc, "data") : NULL;
    char pat[512] = "*";
    size_t pi = j->kind == 'K' ? 1 : 0;
    if (j->kind == 'S')
        for (size_t i = 2; i + 1 < j->argc; i += 2)
            if (resp_arg_is(&j->argv[i], "MATCH"))
                pi = i + 1;
    if (pi) {
        size_t l = j->argv[pi].len < sizeof pat - 1 ? j->argv[pi].len : sizeof pat - 1;
        memcpy(pat, j->argv[pi].p, l);
        pat[l] = 0;
    }
    char **list = NULL;
    size_t n = 0;
    size_t total = json_array_size(data);
    list = calloc(total + 1, sizeof *list);
    for (size_t i = 0; list && i < total; i++) {
        json_t *ser = json_array_get(data, i);
        const char *name = json_string_value(json_object_get(ser, "__name__"));
        char *key = NULL;
        if (name && strcmp(name, RESP_TS_META_NAME) == 0) {
            const char *k = json_string_value(json_object_get(ser, RESP_TS_KEY_LABEL));
            key = k ? strdup(k) : NULL;
        } else {
            size_t nl = json_object_size(ser), q = 0;
            char **kv = calloc(2 * nl + 1, sizeof *kv);
            const char *k;
            json_t *v;
            json_object_foreach(ser, k, v)
            {
                if (kv && json_is_string(v)) {
                    kv[2 * q] = (char *)k;
                    kv[2 * q + 1] = (char *)json_string_value(v);
                    q++;
                }
            }
            key = kv ? series_key(kv, q) : NULL;
            free(kv);
        }
        if (!key)
            continue;
        int seen = 0;
        for (size_t q = 0; q < n && !seen; q++)
            seen = strcmp(list[q], key) == 0;
        if (seen || !glob_match(pat, key)) {
            free(key);
            continue;
        }
        list[n++] = key;
    }
    json_decref(doc);
    if (list)
        qsort(list, n, sizeof *list, str_cmp);
    if (j->kind == 'S') {
        resp_array(o, 2);
        resp_bulk_str(o, "0");
    }
    resp_array(o, n);
    for (size_t i = 0; i < n; i++) {
        resp_bulk_str(o, list[i]);
        free(list[i]);
    }
    free(list);
    job_end(j);
}

static void cmd_keys_scan(rconn_t *c, int kind)
{
    if (kind == 'S') {
        int64_t cur;
        if (resp_parse_int(&c->argv[1], &cur) || cur < 0) {
            resp_error(&c->out, "ERR invalid cursor");
            return;
        }
        if (cur != 0) {
            resp_array(&c->out, 2);
            resp_bulk_str(&c->out, "0");
            resp_array(&c->out, 0);
            return;
        }
        for (size_t i = 2; i < c->argc; i += 2)
            if (i + 1 >= c->argc ||
                !(resp_arg_is(&c->argv[i], "MATCH") || resp_arg_is(&c->argv[i], "COUNT") ||
                  resp_arg_is(&c->argv[i], "TYPE"))) {
                resp_error(&c->out, "ERR syntax error");
                return;
            }
    }
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = kind;
    st_buf_t t;
    st_buf_init(&t);
    int64_t now = st_now_ms() + RESP_FAR_MS;
    char tail[64];
    int n = snprintf(tail, sizeof tail, "&start=0&end=%lld", (long long)(now / 1000));
    int rc = ST_BUF_LIT(&t, "match[]=");
    if (!rc)
        rc = pct(&t, "{__name__=~\".+\"}", 16);
    if (!rc)
        rc = st_buf_append(&t, tail, (size_t)n);
    if (rc) {
        st_buf_deinit(&t);
        fatal_oom(c);
        job_end(j);
        return;
    }
    job_http(j, "POST", "/api/v1/series", "application/x-www-form-urlencoded", t.data, t.len,
             keys_done);
    st_buf_deinit(&t);
}

static void cmd_keys(rconn_t *c)
{
    cmd_keys_scan(c, 'K');
}

static void cmd_scan(rconn_t *c)
{
    cmd_keys_scan(c, 'S');
}

/* ---- TS.JOIN ------------------------------------------------------------------------ */

enum { J_INNER, J_LEFT, J_RIGHT, J_FULL, J_ANTI, J_SEMI, J_ASOF };
enum { ASOF_PREV, ASOF_NEXT, ASOF_NEAREST };

typedef struct jopt {
    int type, excl, asof_dir, allow_exact;
    int64_t tolerance;
    int reduce; /* 0: none; else one of the transform ops */
    resp_range_t rg;
    resp_samples_t left;
    int have_left;
} jopt_t;

static const char *const join_ops[] = {"",    "add", "sub", "mul", "div",      "mod",      "pow",
                                       "min", "max", "avg", "eq",  "ne",       "gt",       "gte",
                                       "lt",  "lte", "and", "or",  "abs_diff", "sgn_diff", NULL};

static double join_apply(int op, double a, double b)
{
    switch (op) {
    case 1:
        return a + b;
    case 2:
        return a - b;
    case 3:
        return a * b;
    case 4:
        return a / b;
    case 5:
        return fmod(a, b);
    case 6:
        return pow(a, b);
    case 7:
        return a < b ? a : b;
    case 8:
        return a > b ? a : b;
    case 9:
        return (a + b) / 2;
    case 10:
        return a == b;
    case 11:
        return a != b;
    case 12:
        return a > b;
    case 13:
        return a >= b;
    case 14:
        return a < b;
    case 15:
        return a <= b;
    case 16:
        return !isnan(a) && !isnan(b) && a != 0 && b != 0;
    case 17:
        return (!isnan(a) && a != 0) || (!isnan(b) && b != 0);
    case 18:
        return fabs(a - b);
    case 19:
        return a > b ? 1 : a < b ? -1 : 0;
    default:
        return NAN;
    }
}

static void jopt_free(void *p)
{
    jopt_t *o = p;
    if (!o)
        return;
    resp_range_free(&o->rg);
    resp_samples_free(&o->left);
    free(o);
}

static void join_reply(job_t *j, const resp_samples_t *l, const resp_samples_t *r)
{
    jopt_t *o = j->ctx;
    st_buf_t *out = &j->c->out;
    int p = j->c->proto;
    /* rows: ts, left (or NaN: null), right (or NaN: null) */
    resp_samples_t rl = {0}, rr = {0};
    size_t i = 0, k = 0;
    while (i < l->n || k < r->n) {
        int64_t tl = i < l->n ? l->ts[i] : INT64_MAX, tr = k < r->n ? r->ts[k] : INT64_MAX;
        int both = tl == tr;
        int left_only = tl < tr, right_only = tr < tl;
        if (o->type == J_ASOF) {
            if (i >= l->n)
                break;
            /* match for left[i] in right */
            int64_t best = -1;
            int64_t bd = INT64_MAX;
            for (size_t q = 0; q < r->n; q++) {
                int64_t d = r->ts[q] - l->ts[i];
                int ok = o->asof_dir == ASOF_PREV ? d <= 0 : o->asof_dir == ASOF_NEXT ? d >= 0 : 1;
                if (d == 0 && !o->allow_exact)
                    ok = 0;
                int64_t ad = d < 0 ? -d : d;
                if (ok && ad <= o->tolerance && ad < bd) {
                    bd = ad;
                    best = (int64_t)q;
                }
            }
            resp_samples_push(&rl, l->ts[i], l->v[i]);
            resp_samples_push(&rr, best >= 0 ? r->ts[best] : INT64_MIN,
                              best >= 0 ? r->v[best] : NAN);
            i++;
            continue;
        }
        int emit = 0;
        double lv = NAN, rv = NAN;
        int64_t t = both ? tl : left_only ? tl : tr;
        if (both) {
            lv = l->v[i];
            rv = r->v[k];
            emit = o->type == J_INNER || o->type == J_FULL || o->type == J_SEMI ||
                   ((o->type == J_LEFT || o->type == J_RIGHT) && !o->excl);
            i++;
            k++;
        } else if (left_only) {
            lv = l->v[i];
            emit = o->type == J_LEFT || o->type == J_FULL || o->type == J_ANTI;
            i++;
        } else if (right_only) {
            rv = r->v[k];
            emit = o->type == J_RIGHT || o->type == J_FULL;
            k++;
        }
        if (emit) {
            resp_samples_push(&rl, t, lv);
            resp_samples_push(&rr, t, rv);
        }
    }
    size_t n = rl.n;
    if (o->rg.count > 0 && (uint64_t)o->rg.count < n)
        n = (size_t)o->rg.count;
    resp_array(out, n);
    for (size_t q = 0; q < n; q++) {
        if (o->reduce) {
            resp_array(out, 2);
            resp_int(out, rl.ts[q]);
            resp_double(out, p, join_apply(o->reduce, rl.v[q], rr.v[q]));
            continue;
        }
        int semi = o->type == J_SEMI || o->type == J_ANTI;
        if (o->type == J_ASOF) {
            resp_array(out, 4);
            resp_int(out, rl.ts[q]);
            resp_double(out, p, rl.v[q]);
            if (rr.ts[q] == INT64_MIN) {
                resp_null(out, p);
                resp_null(out, p);
            } else {
                resp_int(out, rr.ts[q]);
                resp_double(out, p, rr.v[q]);
            }
            continue;
        }
        resp_array(out, semi ? 2 : 3);
        resp_int(out, rl.ts[q]);
        if (isnan(rl.v[q]) && !(o->type == J_INNER))
            resp_null(out, p);
        else
            resp_double(out, p, rl.v[q]);
        if (!semi) {
            if (isnan(rr.v[q]) && !(o->type == J_INNER))
                resp_null(out, p);
            else
                resp_double(out, p, rr.v[q]);
        }
    }
    resp_samples_free(&rl);
    resp_samples_free(&rr);
}

static void join_right(job_t *j);

static void join_left(job_t *j)
{
    jopt_t *o = j->ctx;
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    int found;
    if (key_unavailable(j, 1) || key_samples(j, &o->left, &found)) {
        job_end(j);
        return;
    }
    apply_retention(j->e, &o->left);
    o->have_left = 1;
    /* the right key next */
    free(j->key);
    j->key = NULL;
    if (job_key(j, 2) != 0) {
        job_end(j);
        return;
    }
    job_meta(j, join_right);
}

static void join_right_read(job_t *j)
{
    jopt_t *o = j->ctx;
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    resp_samples_t r = {0};
    int found;
    if (key_unavailable(j, 1) || key_samples(j, &r, &found)) {
        job_end(j);
        return;
    }
    apply_retention(j->e, &r);
    resp_range_t f = o->rg;
    f.count = -1;
    f.agg = 0;
    f.rev = 0;
    resp_range_apply(&f, &o->left);
    resp_range_apply(&f, &r);
    join_reply(j, &o->left, &r);
    resp_samples_free(&r);
    job_end(j);
}

static void join_right(job_t *j)
{
    jopt_t *o = j->ctx;
    if (!o->have_left) {
        /* the left key's metadata is loaded: read its samples */
        st_buf_t sel;
        st_buf_init(&sel);
        char err[200];
        int plain;
        if (key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
            st_buf_deinit(&sel);
            fatal_oom(j->c);
            job_end(j);
            return;
        }
        const char *sels[1] = {(const char *)sel.data};
        j->partial = 1;
        job_export(j, sels, 1, o->rg.from, INT64_MAX, join_left);
        st_buf_deinit(&sel);
        return;
    }
    st_buf_t sel;
    st_buf_init(&sel);
    char err[200];
    int plain;
    if (key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
        st_buf_deinit(&sel);
        fatal_oom(j->c);
        job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    j->partial = 1;
    job_export(j, sels, 1, o->rg.from, INT64_MAX, join_right_read);
    st_buf_deinit(&sel);
}

static void cmd_join(rconn_t *c)
{
    job_t *j = job_new(c);
    jopt_t *o = calloc(1, sizeof *o);
    if (!j || !o) {
        free(o);
        fatal_oom(c);
        if (j)
            job_end(j);
        else
            c->busy = 0;
        return;
    }
    j->ctx = o;
    j->ctx_free = jopt_free;
    o->allow_exact = 1;
    o->tolerance = INT64_MAX;
    /* split: join words first, then range options for the rest */
    size_t i = 5, rest_from = 3;
    resp_arg_t *rest = calloc(c->argc + 2, sizeof *rest);
    if (!rest) {
        fatal_oom(c);
        job_end(j);
        return;
    }
    size_t nr = 0;
    rest[nr++] = c->argv[3];
    rest[nr++] = c->argv[4];
    (void)rest_from;
    while (i < c->argc) {
        const resp_arg_t *a = &c->argv[i];
        if (resp_arg_is(a, "INNER")) {
            o->type = J_INNER;
            i++;
        } else if (resp_arg_is(a, "FULL")) {
            o->type = J_FULL;
            i++;
        } else if (resp_arg_is(a, "LEFT") || resp_arg_is(a, "RIGHT")) {
            o->type = resp_arg_is(a, "LEFT") ? J_LEFT : J_RIGHT;
            i++;
            if (i < c->argc && resp_arg_is(&c->argv[i], "EXCLUSIVE")) {
                o->excl = 1;
                i++;
            }
        } else if (resp_arg_is(a, "ANTI")) {
            o->type = J_ANTI;
            i++;
        } else if (resp_arg_is(a, "SEMI")) {
            o->type = J_SEMI;
            i++;
        } else if (resp_arg_is(a, "ASOF")) {
            o->type = J_ASOF;
            o->asof_dir = ASOF_PREV;
            i++;
            if (i < c->argc && resp_arg_is(&c->argv[i], "PREVIOUS")) {
                o->asof_dir = ASOF_PREV;
                i++;
            } else if (i < c->argc && resp_arg_is(&c->argv[i], "NEXT")) {
                o->asof_dir = ASOF_NEXT;
                i++;
            } else if (i < c->argc && resp_arg_is(&c->argv[i], "NEAREST")) {
                o->asof_dir = ASOF_NEAREST;
                i++;
            }
            int64_t tol;
            if (i < c->argc && resp_parse_int(&c->argv[i], &tol) == 0) {
                if (tol < 0) {
                    resp_error(&c->out, "ERR TSDB: invalid ASOF tolerance");
                    free(rest);
                    job_end(j);
                    return;
                }
                o->tolerance = tol;
                i++;
            }
            if (i < c->argc && resp_arg_is(&c->argv[i], "ALLOW_EXACT_MATCH")) {
                i++;
                if (i < c->argc &&
                    (resp_arg_is(&c->argv[i], "true") || resp_arg_is(&c->argv[i], "false"))) {
                    o->allow_exact = resp_arg_is(&c->argv[i], "true");
                    i++;
                }
            }
        } else if (resp_arg_is(a, "REDUCE")) {
            if (i + 1 >= c->argc) {
                resp_error(&c->out, "ERR TSDB: missing REDUCE operator");
                free(rest);
                job_end(j);
                return;
            }
            int op = 0;
            for (int q = 1; join_ops[q]; q++)
                if (resp_arg_is(&c->argv[i + 1], join_ops[q]))
                    op = q;
            if (!op) {
                resp_error(&c->out, "ERR TSDB: unknown REDUCE operator");
                free(rest);
                job_end(j);
                return;
            }
            o->reduce = op;
            i += 2;
        } else {
            rest[nr++] = *a;
            i++;
        }
    }
    char err[200];
    int rc = resp_range_parse(rest, nr, RESP_RANGE_ONE, &o->rg, err, sizeof err);
    free(rest);
    if (rc) {
        resp_errorf(&c->out, "%s%s", strncmp(err, "ERR", 3) ? "ERR " : "", err);
        job_end(j);
        return;
    }
    if (o->rg.agg) {
        resp_error(&c->out, "ERR TSDB: TS.JOIN takes no AGGREGATION");
        job_end(j);
        return;
    }
    if (job_key(j, 1) != 0) {
        job_end(j);
        return;
    }
    job_meta(j, join_right);
}

/* TS.STATS: what the cache and the index say about the keyspace. */
static void stats_done(job_t *j)
{
    if (j->status != 200) {
        reply_http_error(j, "read");
        job_end(j);
        return;
    }
    json_t *doc = json_loadb((const char *)j->body.data, j->body.len, 0, NULL);
    json_t *data = doc ? json_object_get(doc, "data") : NULL;
    size_t n = json_array_size(data), keys = 0, series = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(data, i), "__name__"));
        if (name && strcmp(name, RESP_TS_META_NAME) == 0)
            keys++;
        else
            series++;
    }
    json_decref(doc);
    st_buf_t *o = &j->c->out;
    resp_map(o, j->c->proto, 3);
    resp_bulk_str(o, "totalSeries");
    resp_int(o, (int64_t)series);
    resp_bulk_str(o, "metadataVersions");
    resp_int(o, (int64_t)keys);
    resp_bulk_str(o, "cachedKeys");
    resp_int(o, (int64_t)j->s->nent);
    job_end(j);
}

static void cmd_stats(rconn_t *c)
{
    job_t *j = job_new(c);
    if (!j) {
        fatal_oom(c);
        c->busy = 0;
        return;
    }
    st_buf_t t;
    st_buf_init(&t);
    char tail[64];
    int n = snprintf(tail, sizeof tail, "&start=0&end=%lld",
                     (long long)((st_now_ms() + RESP_FAR_MS) / 1000));
    int rc = ST_BUF_LIT(&t, "match[]=");
    if (!rc)
        rc = pct(&t, "{__name__=~\".+\"}", 16);
    if (!rc)
        rc = st_buf_append(&t, tail, (size_t)n);
    if (rc) {
        st_buf_deinit(&t);
        fatal_oom(c);
        job_end(j);
        return;
    }
    job_http(j, "POST", "/api/v1/series", "application/x-www-form-urlencoded", t.data, t.len,
             stats_done);
    st_buf_deinit(&t);
}

/* ---- the table -------------------------------------------------------------------- */

static const cmd_t commands[] = {
    {"PING", -1, CF_FAST | CF_CONN, cmd_ping, 0, 0, 0, "Ping the server.", "PING [message]"},
    {"ECHO", 2, CF_FAST | CF_CONN, cmd_echo, 0, 0, 0, "Return the message.", "ECHO message"},
    {"HELLO", -1, CF_FAST | CF_CONN, cmd_hello, 0, 0, 0, "Handshake: protocol 2 or 3.",
     "HELLO [protover [AUTH username password] [SETNAME clientname]]"},
    {"AUTH", -2, CF_FAST | CF_CONN, cmd_auth, 0, 0, 0, "Authenticate the connection.",
     "AUTH [username] password"},
    {"CLIENT", -2, CF_CONN, cmd_client, 0, 0, 0, "Connection name and id.",
     "CLIENT SETNAME name | GETNAME | ID | SETINFO attr value"},
    {"SELECT", 2, CF_FAST | CF_CONN, cmd_select, 0, 0, 0, "Select database 0 (the only one).",
     "SELECT 0"},
    {"COMMAND", -1, CF_CONN, cmd_command, 0, 0, 0, "The command table.",
     "COMMAND [COUNT | INFO name... | DOCS [name...] | LIST]"},
    {"INFO", -1, CF_CONN, cmd_info, 0, 0, 0, "Server and keyspace information.", "INFO [section]"},
    {"QUIT", 1, CF_FAST | CF_CONN, cmd_quit, 0, 0, 0, "Close the connection.", "QUIT"},
    {"RESET", 1, CF_FAST | CF_CONN, cmd_reset, 0, 0, 0, "Reset the connection state.", "RESET"},
    {"DEL", -2, CF_WRITE, cmd_del, 1, -1, 1, "Delete series.", "DEL key [key ...]"},
    {"EXISTS", -2, CF_READ, cmd_exists, 1, -1, 1, "Count the keys that exist.",
     "EXISTS key [key ...]"},
    {"TYPE", 2, CF_READ, cmd_type, 1, 1, 1, "The type of a key.", "TYPE key"},
    {"KEYS", 2, CF_READ, cmd_keys, 0, 0, 0, "Keys matching a glob pattern.", "KEYS pattern"},
    {"SCAN", -2, CF_READ, cmd_scan, 0, 0, 0, "Keys matching a pattern, in one pass.",
     "SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]"},
    {"FLUSHALL", -1, CF_WRITE, cmd_flushall, 0, 0, 0, "Delete every series (when enabled).",
     "FLUSHALL [ASYNC | SYNC]"},
    {"TS.CREATE", -2, CF_WRITE, cmd_create, 1, 1, 1, "Create a time series.",
     "TS.CREATE key [RETENTION ms] [ENCODING COMPRESSED|UNCOMPRESSED] [CHUNK_SIZE size] "
     "[DUPLICATE_POLICY policy] [IGNORE maxTimeDiff maxValDiff] [LABELS label value ...]"},
    {"TS.ALTER", -2, CF_WRITE, cmd_alter, 1, 1, 1, "Change a time series' settings and labels.",
     "TS.ALTER key [RETENTION ms] [CHUNK_SIZE size] [DUPLICATE_POLICY policy] "
     "[IGNORE maxTimeDiff maxValDiff] [LABELS label value ...]"},
    {"TS.ADD", -4, CF_WRITE, cmd_add, 1, 1, 1, "Append a sample.",
     "TS.ADD key timestamp|* value [RETENTION ms] [ENCODING enc] [CHUNK_SIZE size] "
     "[DUPLICATE_POLICY policy] [ON_DUPLICATE policy] [IGNORE t v] [LABELS label value ...]"},
    {"TS.MADD", -4, CF_WRITE, cmd_madd, 1, -1, 3, "Append samples to several series.",
     "TS.MADD key timestamp value [key timestamp value ...]"},
    {"TS.INCRBY", -3, CF_WRITE, cmd_incrby, 1, 1, 1, "Add to the newest value.",
     "TS.INCRBY key addend [TIMESTAMP ts] [RETENTION ms] [UNCOMPRESSED] [CHUNK_SIZE size] "
     "[IGNORE t v] [LABELS label value ...]"},
    {"TS.DECRBY", -3, CF_WRITE, cmd_decrby, 1, 1, 1, "Subtract from the newest value.",
     "TS.DECRBY key subtrahend [TIMESTAMP ts] [RETENTION ms] [UNCOMPRESSED] [CHUNK_SIZE size] "
     "[IGNORE t v] [LABELS label value ...]"},
    {"TS.DEL", 4, CF_WRITE, cmd_ts_del, 1, 1, 1, "Delete samples in a range.",
     "TS.DEL key fromTimestamp toTimestamp"},
    {"TS.CREATERULE", -6, CF_WRITE, cmd_createrule, 1, 2, 1, "Create a compaction rule.",
     "TS.CREATERULE sourceKey destKey AGGREGATION aggregator bucketDuration [alignTimestamp]"},
    {"TS.DELETERULE", 3, CF_WRITE, cmd_deleterule, 1, 2, 1, "Delete a compaction rule.",
     "TS.DELETERULE sourceKey destKey"},
    {"TS.GET", -2, CF_READ, cmd_get, 1, 1, 1, "The newest sample.", "TS.GET key [LATEST]"},
    {"TS.MGET", -3, CF_READ, cmd_mget, 0, 0, 0, "The newest sample of each matching series.",
     "TS.MGET [LATEST] [WITHLABELS | SELECTED_LABELS label...] FILTER filterExpr..."},
    {"TS.RANGE", -4, CF_READ, cmd_range, 1, 1, 1, "Samples in a range.",
     "TS.RANGE key from to [LATEST] [FILTER_BY_TS ts...] [FILTER_BY_VALUE min max] [COUNT n] "
     "[[ALIGN align] AGGREGATION aggregator bucketDuration [BUCKETTIMESTAMP bt] [EMPTY]]"},
    {"TS.REVRANGE", -4, CF_READ, cmd_revrange, 1, 1, 1, "Samples in a range, newest first.",
     "TS.REVRANGE key from to [options as TS.RANGE]"},
    {"TS.MRANGE", -5, CF_READ, cmd_mrange, 0, 0, 0, "Samples in a range of matching series.",
     "TS.MRANGE from to [options as TS.RANGE] [WITHLABELS | SELECTED_LABELS label...] "
     "FILTER filterExpr... [GROUPBY label REDUCE reducer]"},
    {"TS.MREVRANGE", -5, CF_READ, cmd_mrevrange, 0, 0, 0,
     "Samples in a range of matching series, newest first.",
     "TS.MREVRANGE from to [options as TS.MRANGE]"},
    {"TS.JOIN", -5, CF_READ, cmd_join, 1, 2, 1, "Join two series on their timestamps.",
     "TS.JOIN left right from to [INNER | FULL | LEFT [EXCLUSIVE] | RIGHT [EXCLUSIVE] | ANTI | "
     "SEMI | ASOF [PREVIOUS | NEXT | NEAREST] [tolerance] [ALLOW_EXACT_MATCH bool]] "
     "[FILTER_BY_TS ts...] [FILTER_BY_VALUE min max] [COUNT n] [REDUCE op]"},
    {"TS.QUERYINDEX", -2, CF_READ, cmd_queryindex, 0, 0, 0, "Keys matching filters.",
     "TS.QUERYINDEX filterExpr..."},
    {"TS.CARD", -1, CF_READ, cmd_card, 0, 0, 0, "Number of matching series.",
     "TS.CARD [FILTER filterExpr...]"},
    {"TS.LABELNAMES", -1, CF_READ, cmd_labelnames, 0, 0, 0, "Label names of matching series.",
     "TS.LABELNAMES [FILTER filterExpr...]"},
    {"TS.LABELVALUES", -2, CF_READ, cmd_labelvalues, 0, 0, 0, "Values of a label.",
     "TS.LABELVALUES label [FILTER filterExpr...]"},
    {"TS.INFO", -2, CF_READ, cmd_tsinfo, 1, 1, 1, "A series' settings and statistics.",
     "TS.INFO key [DEBUG]"},
    {"TS.STATS", -1, CF_READ, cmd_stats, 0, 0, 0, "Keyspace statistics.", "TS.STATS"},
};
static const size_t ncommands = sizeof commands / sizeof commands[0];

/* ---- metadata prefetch for pipelined TS.ADD ------------------------------------ */

/* A pipelined TS.ADD whose key's settings are not cached would run alone
 * (a metadata read, then its write) and hold up the commands after it.
 * Instead, the TS.ADD keys without fresh settings in the connection's
 * buffered input (at most RESP_PREFETCH_KEYS) are read in one metadata
 * export; the commands then join write batches. A prefetch that fails
 * changes nothing: the commands take the one-by-one path, which answers
 * the errors. */
#define RESP_PREFETCH_KEYS 1024
#define RESP_PREFETCH_ARGS 64 /* commands with more arguments end the scan */

typedef struct pfetch {
    char **keys;
    size_t n;
    uint64_t gen;
} pfetch_t;

static void pfetch_free(void *p)
{
    pfetch_t *f = p;
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->keys[i]);
    free(f->keys);
    free(f);
}

static void prefetch_done(job_t *j)
{
    pfetch_t *f = j->ctx;
    xset_t x = {0};
    char err[256];
    if (j->status == 200 && !j->missing[0] && !parse_export(&j->body, &x, err, sizeof err)) {
        /* every key asked for: no settings, unless a series below says so */
        for (size_t i = 0; i < f->n; i++) {
            ent_t *e = cache_get(j->s, f->keys[i], strlen(f->keys[i]), 1);
            if (e) {
                meta_fill(e, NULL, 0);
                e->pf_gen = f->gen;
            }
        }
        for (size_t i = 0; i < x.n; i++) {
            const char *k = kv_get(x.v[i].kv, x.v[i].nl, RESP_TS_KEY_LABEL);
            ent_t *e = k ? cache_get(j->s, k, strlen(k), 0) : NULL;
            if (!e || e->pf_gen != f->gen || x.v[i].s.n == 0)
                continue;
            int64_t t = x.v[i].s.ts[x.v[i].s.n - 1];
            if (!e->exists || t >= e->meta_ts)
                meta_fill(e, &x.v[i], t);
        }
    }
    xset_free(&x);
    job_end(j);
}

/* The TS.ADD keys from the buffered input at c->in_off on whose settings
 * are not cached, read in one export (the connection waits). Returns 1
 * when started, 0 when there is nothing to read. */
static int prefetch_start(rconn_t *c)
{
    router_resp_t *s = c->s;
    resp_arg_t av[RESP_PREFETCH_ARGS];
    size_t off = c->in_off, argc, used;
    const char *msg;
    pfetch_t *f = calloc(1, sizeof *f);
    if (f)
        f->keys = calloc(RESP_PREFETCH_KEYS, sizeof *f->keys);
    if (!f || !f->keys) {
        pfetch_free(f);
        return 0;
    }
    f->gen = ++s->pf_gen;
    while (f->n < RESP_PREFETCH_KEYS &&
           resp_parse((const char *)c->in.data + off, c->in.len - off, av, RESP_PREFETCH_ARGS,
                      &argc, &used, &msg) == RESP_CMD) {
        off += used;
        if (argc < 4 || av[0].len != 6 || strncasecmp(av[0].p, "TS.ADD", 6) != 0)
            continue;
        const resp_arg_t *k = &av[1];
        if (k->len == 0 || memchr(k->p, 0, k->len) || key_is_series(k))
            continue;
        ent_t *e = cache_get(s, k->p, k->len, 1);
        if (!e || ent_fresh(s, e) || e->pf_gen == f->gen)
            continue;
        e->pf_gen = f->gen;
        if (!(f->keys[f->n] = dupn(k->p, k->len)))
            break;
        f->n++;
    }
    c->pf_end = off;
    st_buf_t bufs[RESP_SEL_MAX];
    size_t ns = 0;
    if (!f->n || key_selectors(bufs, RESP_SEL_MAX, &ns, "__name__", RESP_TS_META_NAME,
                               RESP_TS_KEY_LABEL, f->keys, f->n)) {
        bufs_free(bufs, ns);
        pfetch_free(f);
        return 0;
    }
    job_t *j = job_new(c);
    if (!j) {
        bufs_free(bufs, ns);
        pfetch_free(f);
        return 0;
    }
    j->ctx = f;
    j->ctx_free = pfetch_free;
    const char *sels[RESP_SEL_MAX] = {0};
    for (size_t i = 0; i < ns; i++)
        sels[i] = (const char *)bufs[i].data;
    j->partial = 1;
    metric_counter_inc(s->m_prefetch);
    job_export(j, sels, ns, 0, INT64_MAX, prefetch_done);
    bufs_free(bufs, ns);
    return 1;
}

/* ---- dispatch and input ---------------------------------------------------------- */

static void dispatch(rconn_t *c)
{
    router_resp_t *s = c->s;
    const cmd_t *k = find_cmd(&c->argv[0]);
    if (!k) {
        metric_counter_inc(s->m_cmds_other);
        metric_counter_inc(s->m_errors);
        resp_errorf(&c->out, "ERR unknown command '%.*s', with args beginning with: ",
                    (int)(c->argv[0].len > 64 ? 64 : c->argv[0].len), c->argv[0].p);
        return;
    }
    metric_counter_inc(s->m_cmd[k - commands]);
    if (conn_needs_auth(c) && k->fn != cmd_auth && k->fn != cmd_hello && k->fn != cmd_quit &&
        k->fn != cmd_reset) {
        metric_counter_inc(s->m_errors);
        resp_error(&c->out, RESP_NOAUTH);
        return;
    }
    if ((k->arity > 0 && c->argc != (size_t)k->arity) ||
        (k->arity < 0 && c->argc < (size_t)-k->arity)) {
        metric_counter_inc(s->m_errors);
        char low[64];
        size_t n = strlen(k->name);
        for (size_t i = 0; i <= n && i < sizeof low; i++)
            low[i] =
                (char)((k->name[i] >= 'A' && k->name[i] <= 'Z') ? k->name[i] + 32 : k->name[i]);
        wrong_args(c, low);
        return;
    }
    size_t before = c->out.len;
    k->fn(c);
    if (!c->busy && c->out.len > before && c->out.data[before] == '-')
        metric_counter_inc(s->m_errors);
}

static void conn_run(rconn_t *c)
{
    while (!c->busy && !c->closing && !c->dead && c->wq < RESP_OUT_HIGH) {
        if (!c->argv) {
            c->argcap = 1024;
            c->argv = malloc(c->argcap * sizeof *c->argv);
            if (!c->argv) {
                conn_close(c);
                return;
            }
        }
        size_t argc, used;
        const char *msg;
        int r = resp_parse((const char *)c->in.data + c->in_off, c->in.len - c->in_off, c->argv,
                           c->argcap, &argc, &used, &msg);
        if (r == RESP_ERROR && c->argcap < RESP_MAX_ARGS &&
            strcmp(msg, "too many arguments in one command") == 0) {
            resp_arg_t *na = realloc(c->argv, RESP_MAX_ARGS * sizeof *na);
            if (na) {
                c->argv = na;
                c->argcap = RESP_MAX_ARGS;
                continue;
            }
        }
        if (r == RESP_MORE) {
            if (c->batch)
                batch_submit(c);
            if (c->in.len - c->in_off > RESP_MAX_COMMAND) {
                metric_counter_inc(c->s->m_proto);
                resp_error(&c->out, "ERR Protocol error: command too large");
                c->closing = 1;
            }
            break;
        }
        if (r == RESP_ERROR && c->batch) { /* the batch's replies come first */
            batch_submit(c);
            break;
        }
        if (r == RESP_ERROR) {
            metric_counter_inc(c->s->m_proto);
            resp_errorf(&c->out, "ERR Protocol error: %s", msg);
            c->closing = 1;
            break;
        }
        c->argc = argc;
        c->cmd_used = used;
        int bt = argc && !conn_needs_auth(c) ? batch_try(c, find_cmd(&c->argv[0])) : 0;
        if (bt == 1) {
            c->in_off += used;
            c->cmd_used = 0;
            continue;
        }
        if (bt < 0 && c->in_off >= c->pf_end) { /* read the settings of the keys ahead */
            c->cmd_used = 0;
            if (c->batch) { /* the batch goes first; this command comes back here */
                batch_submit(c);
                break;
            }
            if (prefetch_start(c))
                break;
        }
        if (c->batch) { /* the batch goes first; this command waits for it */
            c->cmd_used = 0;
            batch_submit(c);
            break;
        }
        if (argc)
            dispatch(c);
        if (!c->busy) {
            c->in_off += c->cmd_used;
            c->cmd_used = 0;
        }
    }
    if (c->batch && !c->dead)
        batch_submit(c);
    if (c->dead)
        return;
    if (!c->busy) {
        if (c->in_off == c->in.len) {
            c->in.len = 0;
            c->in_off = 0;
            c->pf_end = 0;
        } else if (c->in_off > (1u << 16)) {
            memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
            c->in.len -= c->in_off;
            c->pf_end = c->pf_end > c->in_off ? c->pf_end - c->in_off : 0;
            c->in_off = 0;
        }
    }
    conn_flush(c);
    if (c->dead)
        return;
    if (c->closing) {
        if (c->nwrites == 0)
            conn_close(c);
        else if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        return;
    }
    int want = !c->busy && c->wq < RESP_OUT_HIGH;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    rconn_t *c = h->data;
    (void)hint;
    if (c->s->rbuf_busy) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    c->s->rbuf_busy = 1;
    buf->base = c->s->rbuf;
    buf->len = RESP_READ_BUF;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    rconn_t *c = st->data;
    if (buf->base == c->s->rbuf)
        c->s->rbuf_busy = 0;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    if (c->tls) {
        int rc = tls_conn_feed(c->tls, buf->base, (size_t)n, &c->in);
        conn_tls_send(c);
        if (rc == ST_EPROTO && !c->dead) {
            metric_counter_inc(c->s->m_proto);
            st_warn("RESP TLS handshake failed", "remote=%s reason=%s err=\"%s\"", c->peer,
                    tls_fail_name(tls_conn_failure(c->tls)), tls_conn_error(c->tls));
            if (tls_conn_failure(c->tls) == TLS_FAIL_NOT_TLS && !tls_conn_established(c->tls)) {
                static const char plain[] = "-ERR Protocol error: this port speaks TLS only\r\n";
                conn_write_raw(c, plain, sizeof plain - 1);
            }
            c->closing = 1;
            if (c->nwrites == 0)
                conn_close(c);
            else if (c->reading) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = 0;
            }
            return;
        }
        if (rc) {
            conn_close(c);
            return;
        }
        if (tls_conn_established(c->tls))
            hs_timer_stop(c);
    } else if (st_buf_append(&c->in, buf->base, (size_t)n)) {
        conn_close(c);
        return;
    }
    if (c->dead)
        return;
    conn_run(c);
}

static void on_hs_timeout(uv_timer_t *t)
{
    rconn_t *c = t->data;
    hs_timer_stop(c);
    if (c->dead || tls_conn_established(c->tls))
        return;
    tls_ctx_count_failure(c->s->tls, TLS_FAIL_TIMEOUT);
    metric_counter_inc(c->s->m_proto);
    st_warn("RESP TLS handshake timed out", "remote=%s", c->peer);
    conn_close(c);
}

/* A TLS connection gets RESP_TLS_HANDSHAKE_MS to finish its handshake. */
static void hs_timer_start(rconn_t *c)
{
    c->hs_timer = malloc(sizeof *c->hs_timer);
    if (!c->hs_timer)
        return; /* no deadline: the connection still works */
    uv_timer_init(c->s->r->loop, c->hs_timer);
    c->hs_timer->data = c;
    uv_timer_start(c->hs_timer, on_hs_timeout, RESP_TLS_HANDSHAKE_MS, 0);
}

static void on_connection(uv_stream_t *ls, int status)
{
    router_resp_t *s = ls->data;
    if (status < 0 || s->closing)
        return;
    rconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    c->proto = 2;
    uv_tcp_init(s->r->loop, &c->tcp);
    c->tcp.data = c;
    if (net_accept(ls, &c->tcp, c->peer, sizeof c->peer) != 0 || s->nconns >= RESP_MAX_CONNS ||
        (s->tls && tls_conn_create(s->tls, NULL, &c->tls) != 0)) {
        c->dead = 1;
        c->uv_closing = 1;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        if (s->nconns > RESP_MAX_CONNS) {
            static const char full[] = "-ERR max number of clients reached\r\n";
            uv_buf_t b = uv_buf_init((char *)full, sizeof full - 1);
            uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    c->id = ++s->next_id;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    metric_counter_inc(s->m_conns);
    metric_gauge_set(s->m_open, (double)s->nconns);
    if (c->tls)
        hs_timer_start(c);
    conn_run(c);
}

static int register_metrics(router_resp_t *s)
{
    metrics_t *m = s->r->metrics;
    s->m_conns =
        metrics_counter(m, "strata_resp_connections_total", "RESP connections accepted.", NULL);
    s->m_open = metrics_gauge(m, "strata_resp_connections", "RESP connections open.", NULL);
    s->m_errors = metrics_counter(m, "strata_resp_errors_total",
                                  "RESP commands answered with an error.", NULL);
    s->m_proto = metrics_counter(m, "strata_resp_protocol_errors_total",
                                 "RESP connections closed on a protocol error or a limit.", NULL);
    s->m_cmds_other = metrics_counter(m, "strata_resp_commands_total", "RESP commands, by name.",
                                      "command", "unknown", NULL);
    s->m_cmd = calloc(ncommands, sizeof *s->m_cmd);
    s->m_auth_fail = metrics_counter(m, "strata_resp_auth_failures_total",
                                     "RESP AUTH/HELLO AUTH attempts refused (WRONGPASS).", NULL);
    s->m_auth_delayed = metrics_counter(
        m, "strata_resp_auth_delayed_total",
        "RESP AUTH/HELLO AUTH refusals answered late: the client address had recent failed "
        "logins at any door (HTTP, RESP, PostgreSQL).",
        NULL);
    s->m_prefetch =
        metrics_counter(m, "strata_resp_meta_prefetches_total",
                        "Metadata reads for the TS.ADD keys of a pipeline at once.", NULL);
    s->m_batches =
        metrics_counter(m, "strata_resp_write_batches_total",
                        "Writes of pipelined TS.ADD/TS.MADD commands gathered into one.", NULL);
    if (!s->m_conns || !s->m_open || !s->m_errors || !s->m_proto || !s->m_cmds_other || !s->m_cmd ||
        !s->m_auth_fail || !s->m_auth_delayed || !s->m_prefetch || !s->m_batches)
        return ST_ENOMEM;
    for (size_t i = 0; i < ncommands; i++) {
        char low[64];
        size_t n = strlen(commands[i].name);
        for (size_t q = 0; q <= n && q < sizeof low; q++)
            low[q] = (char)((commands[i].name[q] >= 'A' && commands[i].name[q] <= 'Z')
                                ? commands[i].name[q] + 32
                                : commands[i].name[q]);
        if (!(s->m_cmd[i] = metrics_counter(m, "strata_resp_commands_total",
                                            "RESP commands, by name.", "command", low, NULL)))
            return ST_ENOMEM;
    }
    return 0;
}

int router_resp_start(router_t *r, const char *host, int port, router_route_fn route, void *arg,
                      router_resp_t **out)
{
    *out = NULL;
    router_resp_t *s = calloc(1, sizeof *s);
    if (!s)
        return ST_ENOMEM;
    s->r = r;
    s->route = route;
    s->route_arg = arg;
    s->buckets = calloc(RESP_CACHE_BUCKETS, sizeof *s->buckets);
    http_limits_default(&s->hl);
    s->hl.max_body_bytes = RESP_MAX_COMMAND * 4u;
    s->hl.max_url_bytes = 65536;
    if (!s->buckets || register_metrics(s)) {
        free(s->buckets);
        free(s->m_cmd);
        free(s);
        return ST_ENOMEM;
    }
    struct sockaddr_storage ss;
    int rc = net_resolve(host, port, &ss);
    if (!rc) {
        uv_tcp_init(r->loop, &s->listener);
        s->listener.data = s;
        s->listener_open = 1;
        rc = net_listen_tcp(&s->listener, &ss, on_connection, &s->port);
    }
    if (rc) {
        if (s->listener_open)
            uv_close((uv_handle_t *)&s->listener, NULL);
        /* the handle is closed on the next loop turn; s stays allocated
         * (the process exits on this error) */
        return rc < 0 && rc != ST_EINVAL ? ST_EIO : rc;
    }
    *out = s;
    return 0;
}

void router_resp_set_tls(router_resp_t *s, tls_ctx_t *tls)
{
    s->tls = tls;
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

void router_resp_close(router_resp_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    if (s->listener_open) {
        s->listener_open = 0;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    }
    for (rconn_t *c = s->conns; c; c = c->next) {
        if (c->auth_delay) /* answer a held -WRONGPASS now rather than hold the shutdown */
            uv_timer_start(&c->auth_delay->timer, on_job_timer, 0, 0);
        if (!c->dead)
            conn_close(c);
    }
}
