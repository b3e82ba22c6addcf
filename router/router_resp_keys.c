/*
 * router_resp_keys — keys, metadata and key-changing commands of the
 * RESP door (router_resp_int.h lists the files). A key is a series name or
 * a series selector; its settings live in a metadata series read through
 * an export (parse_export) and cached per key (router_resp.c). DEL, TS.DEL
 * and FLUSHALL go through the router's delete path, TS.CREATERULE/
 * DELETERULE through the compaction rules, TS.CREATE/TS.ALTER write a new
 * metadata row (and a retention entry when RETENTION changes).
 */
#include "router_resp_int.h"

/* ---- reading exports --------------------------------------------------------- */

static void xser_free(xser_t *x)
{
    for (size_t i = 0; i < 2 * x->nl; i++)
        free(x->kv[i]);
    free(x->kv);
    free(x->key);
    resp_samples_free(&x->s);
}

void rresp_xset_free(xset_t *x)
{
    for (size_t i = 0; i < x->n; i++)
        xser_free(&x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

const char *rresp_kv_get(char *const *kv, size_t nl, const char *name)
{
    for (size_t i = 0; i < nl; i++)
        if (strcmp(kv[2 * i], name) == 0)
            return kv[2 * i + 1];
    return NULL;
}

/* Parse an export body (JSON lines) into x. Returns 0, or -1 with an error
 * line's text in err (a stream that failed half-way). */
int rresp_parse_export(const st_buf_t *body, xset_t *x, char *err, size_t errlen)
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
            rc = rresp_pct(t, sels[i], strlen(sels[i]));
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

void rresp_job_export(job_t *j, const char *const *sels, size_t nsel, int64_t from, int64_t to,
                      job_fn next)
{
    st_buf_t t;
    st_buf_init(&t);
    int partial = j->partial;
    j->partial = 0;
    if (export_form(&t, sels, nsel, from, to) ||
        (partial && ST_BUF_LIT(&t, "&partial_response=1"))) {
        st_buf_deinit(&t);
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    rresp_job_http(j, "POST", "/api/v1/export", "application/x-www-form-urlencoded", t.data, t.len,
                   next);
    st_buf_deinit(&t);
}

/* ---- keys ------------------------------------------------------------------- */

/* The data selector of a key into b (NUL-terminated): {__name__="K"}, or
 * the key itself when it is spelled as a series (*plain = 1). Returns 0,
 * or -1 with err for a key spelled as a bad selector. */
int rresp_key_selector(st_buf_t *b, const char *key, size_t klen, int *plain, char *err,
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
                    rc = rresp_sel_matcher(b, sel.m[i].name, ST_MATCH_EQ, sel.m[i].value);
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
char *rresp_series_key(char *const *kv, size_t nl)
{
    const char *name = rresp_kv_get(kv, nl, "__name__");
    st_buf_t b;
    st_buf_init(&b);
    int rc = name ? st_buf_append(&b, name, strlen(name)) : 0;
    size_t other = 0;
    for (size_t i = 0; i < nl && !rc; i++) {
        if (strcmp(kv[2 * i], "__name__") == 0)
            continue;
        rc = st_buf_put_u8(&b, other++ ? ',' : '{');
        if (!rc)
            rc = rresp_sel_matcher(&b, kv[2 * i], ST_MATCH_EQ, kv[2 * i + 1]);
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
int rresp_exact_key(const xser_t *x, const char *key, int plain)
{
    if (!plain)
        return x->nl == 1 && strcmp(x->kv[0], "__name__") == 0 && strcmp(x->kv[1], key) == 0;
    char *k = rresp_series_key(x->kv, x->nl);
    int same = 0;
    if (k) {
        char err[64];
        selector_t sel;
        if (selector_parse(key, strlen(key), &sel, err, sizeof err) == 0) {
            same = sel.n == x->nl;
            for (size_t i = 0; i < sel.n && same; i++) {
                const char *v = rresp_kv_get(x->kv, x->nl, sel.m[i].name);
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
int rresp_key_unavailable(job_t *j, int meta_found)
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
void rresp_meta_fill(ent_t *e, const xser_t *best, int64_t bt)
{
    rresp_ent_free_labels(e);
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
void rresp_meta_from(ent_t *e, xset_t *x, const char *key)
{
    xser_t *best = NULL;
    int64_t bt = INT64_MIN;
    for (size_t i = 0; i < x->n; i++) {
        const char *k = rresp_kv_get(x->v[i].kv, x->v[i].nl, RESP_TS_KEY_LABEL);
        if (!k || strcmp(k, key) != 0 || x->v[i].s.n == 0)
            continue;
        int64_t t = x->v[i].s.ts[x->v[i].s.n - 1];
        if (t >= bt) {
            bt = t;
            best = &x->v[i];
        }
    }
    rresp_meta_fill(e, best, bt);
}

static int meta_selector(st_buf_t *b, const char *key)
{
    int rc = ST_BUF_LIT(b, "{");
    if (!rc)
        rc = rresp_sel_matcher(b, "__name__", ST_MATCH_EQ, RESP_TS_META_NAME);
    if (!rc)
        rc = st_buf_put_u8(b, ',');
    if (!rc)
        rc = rresp_sel_matcher(b, RESP_TS_KEY_LABEL, ST_MATCH_EQ, key);
    if (!rc)
        rc = ST_BUF_LIT(b, "}");
    if (!rc)
        rc = st_buf_put_u8(b, 0);
    return rc;
}

static void meta_loaded(job_t *j);

/* Make j->e the key's cache entry with fresh metadata, then call next. */
void rresp_job_meta(job_t *j, job_fn next)
{
    ent_t *e = rresp_cache_get(j->s, j->key, j->klen, 1);
    if (j->e)
        j->e->pins--;
    if ((j->e = e))
        e->pins++;
    if (!j->e) {
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    /* settings due to be re-asserted (meta_stale) are read again first: a
     * re-assert must not bring back what another router's TS.ALTER replaced */
    if (j->plain ||
        (j->e->loaded_ms && (uint64_t)st_now_ms() - j->e->loaded_ms < RESP_META_TTL_MS &&
         !rresp_meta_stale(j->s, j->e))) {
        next(j);
        return;
    }
    st_buf_t sel;
    st_buf_init(&sel);
    if (meta_selector(&sel, j->key)) {
        st_buf_deinit(&sel);
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    j->after_meta = next;
    j->partial = 1;
    rresp_job_export(j, sels, 1, 0, INT64_MAX, meta_loaded);
    st_buf_deinit(&sel);
}

static void meta_loaded(job_t *j)
{
    job_fn next = j->after_meta;
    if (j->status != 200) {
        rresp_reply_http_error(j, "metadata read");
        rresp_job_end(j);
        return;
    }
    xset_t x = {0};
    char err[256];
    if (rresp_parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR metadata read failed: %s", err);
        rresp_xset_free(&x);
        rresp_job_end(j);
        return;
    }
    rresp_meta_from(j->e, &x, j->e->key);
    rresp_xset_free(&x);
    if (j->missing[0]) { /* read without some shards: not cached */
        j->e->loaded_ms = 0;
        if (rresp_key_unavailable(j, j->e->exists)) {
            rresp_job_end(j);
            return;
        }
    }
    next(j);
}

/* The job's write items (made on first use); NULL when out of memory. */
resp_write_t *rresp_job_wr(job_t *j)
{
    if (!j->wr && resp_write_create(&j->wr))
        return NULL;
    return j->wr;
}

/* A metadata row of e (its settings and labels at ts) into j's write. */
int rresp_job_meta_row(job_t *j, uint32_t tag, const ent_t *e, int64_t ts)
{
    resp_write_t *w = rresp_job_wr(j);
    return w ? resp_write_meta(w, tag, e->key, &e->meta, e->kv, e->nl, ts) : ST_ENOMEM;
}

/* A sample of the key (spelled as a series when plain) into j's write. */
int rresp_job_sample(job_t *j, uint32_t tag, const char *key, size_t klen, int plain, int64_t ts,
                     double v)
{
    resp_write_t *w = rresp_job_wr(j);
    return w ? resp_write_sample(w, tag, key, klen, plain, ts, v) : ST_ENOMEM;
}

/* A one-command write that failed: the reason its item was rejected for
 * when the pipeline rejected it alone, else the write's error. */
void rresp_reply_write_failed(job_t *j)
{
    const char *why = rresp_rejects_only(j) ? resp_write_rejected(j->wr, 0) : NULL;
    if (!why) {
        rresp_reply_http_error(j, "write");
        return;
    }
    metric_counter_inc(j->s->m_errors);
    resp_errorf(&j->c->out, "ERR write failed: %s", why);
}

/* Is the key's metadata sample older than half the cluster's retention?
 * Then the next write re-asserts it (same settings, a new sample), so the
 * settings never age out of the store while the key is written to. */
int rresp_meta_stale(const router_resp_t *s, const ent_t *e)
{
    int64_t ret = topo_storage(s->r->topo)->retention_ms;
    return e->exists && ret > 0 && e->meta_ts < st_now_ms() - ret / 2;
}

/* Set e's labels from TS.CREATE/ALTER LABELS. */
int rresp_ent_set_labels(ent_t *e, const resp_tsopts_t *o)
{
    rresp_ent_free_labels(e);
    e->kv = calloc(2 * o->nlabels + 1, sizeof *e->kv);
    if (!e->kv)
        return ST_ENOMEM;
    for (size_t i = 0; i < o->nlabels; i++) {
        e->kv[2 * i] = rresp_dupn(o->labels[2 * i].p, o->labels[2 * i].len);
        e->kv[2 * i + 1] = rresp_dupn(o->labels[2 * i + 1].p, o->labels[2 * i + 1].len);
        e->nl++;
        if (!e->kv[2 * i] || !e->kv[2 * i + 1])
            return ST_ENOMEM;
    }
    return 0;
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
        rresp_conn_forget_auth(c);
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

/* ---- deletion: DEL, TS.DEL, FLUSHALL ----------------------------------------
 * All three go through router_delete_submit(), the path of the HTTP
 * delete_series endpoint (tombstones replicated like writes). A key's data
 * series and, for DEL, its metadata series are deleted; the key's cache
 * entry is forgotten so the next command reads the metadata again. */

#define RESP_DEL_MAX_KEYS (ROUTER_DELETE_MAX_SELECTORS / 2)

/* Parse the selector text of key i's data series (and, if meta, its
 * metadata series) into sel[*n...]. 0 or -1 (reply written). */
static int del_key_selectors(rconn_t *c, const resp_arg_t *a, selector_t *sel, size_t *n, int meta)
{
    char err[200];
    int plain;
    st_buf_t t;
    st_buf_init(&t);
    int rc = memchr(a->p, 0, a->len) || a->len == 0 ||
             rresp_key_selector(&t, a->p, a->len, &plain, err, sizeof err);
    if (!rc)
        rc = selector_parse((const char *)t.data, strlen((const char *)t.data), &sel[*n], err,
                            sizeof err);
    if (!rc)
        (*n)++;
    if (!rc && meta && !plain) {
        char *key = rresp_dupn(a->p, a->len);
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
        rresp_cache_forget(j->s, j->kind == 'D' ? j->e : NULL);
    rresp_job_end(j);
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
    uv_timer_start(&j->timer, rresp_on_job_timer, 0, 0);
}

/* Submit sel[0..n) for [from, to]; the reply comes from del_reply. */
static void del_submit(job_t *j, selector_t *sel, size_t n, int64_t from, int64_t to, int dry_run)
{
    int rc = router_delete_submit(j->s->r, sel, n, from, to, dry_run, 0, del_done, j);
    for (size_t i = 0; i < n; i++)
        selector_free(&sel[i]);
    if (rc) {
        resp_error(&j->c->out, rc == ST_ENOMEM ? "ERR out of memory" : "ERR delete refused");
        rresp_job_end(j);
    }
}

/* DEL: a dry run first (its series count is the reply: keys with data),
 * then the delete of the keys' data and metadata series. */
static void del_keys_submit(job_t *j, int dry_run)
{
    size_t nkeys = j->argc - 1;
    selector_t *sel = calloc(2 * nkeys, sizeof *sel);
    if (!sel) {
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < nkeys; i++)
        if (del_key_selectors(j->c, &j->argv[1 + i], sel, &n, !dry_run)) {
            for (size_t k = 0; k < n; k++)
                selector_free(&sel[k]);
            free(sel);
            rresp_job_end(j);
            return;
        }
    del_submit(j, sel, n, INT64_MIN, INT64_MAX, dry_run);
    free(sel);
}

void rresp_cmd_del(rconn_t *c)
{
    size_t nkeys = c->argc - 1;
    if (deny_delete(c, "DEL"))
        return;
    if (nkeys > RESP_DEL_MAX_KEYS) {
        resp_errorf(&c->out, "ERR DEL: at most %d keys per command", RESP_DEL_MAX_KEYS);
        return;
    }
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
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
        rresp_job_end(j);
        return;
    }
    del_submit(j, sel, n, j->rg.from, j->rg.to, 0);
}

void rresp_cmd_ts_del(rconn_t *c)
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
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    if (rresp_job_key(j, 1) != 0) {
        rresp_job_end(j);
        return;
    }
    j->kind = 'D';
    j->rg.from = a;
    j->rg.to = b;
    rresp_job_meta(j, ts_del_step);
}

void rresp_cmd_flushall(rconn_t *c)
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
    job_t *j = rresp_job_new(c);
    if (!j) {
        selector_free(&sel[0]);
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = 'F';
    del_submit(j, sel, 1, INT64_MIN, INT64_MAX, 0);
}

/* ---- TS.CREATERULE / TS.DELETERULE (resp_rules.h) ------------------------------- */

/* The series selector of key argv[i] (owned, NUL-terminated), or NULL. */
char *rresp_arg_selector(job_t *j, size_t i)
{
    st_buf_t t;
    st_buf_init(&t);
    int plain;
    char err[200];
    if (rresp_key_selector(&t, j->argv[i].p, j->argv[i].len, &plain, err, sizeof err) != 0) {
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
            rresp_reply_http_error(j, j->kind == 'r' ? "TS.CREATERULE" : "TS.DELETERULE");
        json_decref(doc);
    }
    rresp_job_end(j);
}

static void createrule_dst(job_t *j)
{
    rule_ctx_t *x = j->ctx;
    if (!j->e->exists && !j->plain) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        rresp_job_end(j);
        return;
    }
    st_buf_t b;
    st_buf_init(&b);
    if (resp_rules_create_form(&b, x->src, x->dst, x->agg, x->bucket, x->align)) {
        st_buf_deinit(&b);
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    rresp_job_http(j, "POST", "/api/v1/admin/rules", "application/x-www-form-urlencoded", b.data,
                   b.len, rule_done);
    st_buf_deinit(&b);
}

static void createrule_src(job_t *j)
{
    if (!j->e->exists && !j->plain) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        rresp_job_end(j);
        return;
    }
    free(j->key);
    j->key = NULL;
    if (rresp_job_key(j, 2) != 0) {
        rresp_job_end(j);
        return;
    }
    rresp_job_meta(j, createrule_dst);
}

void rresp_cmd_createrule(rconn_t *c)
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
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    rule_ctx_t *x = calloc(1, sizeof *x);
    if (!x) {
        rresp_fatal_oom(c);
        rresp_job_end(j);
        return;
    }
    j->ctx = x;
    j->ctx_free = rule_ctx_free;
    j->kind = 'r';
    x->agg = rule_agg_parse(c->argv[4].p, c->argv[4].len);
    x->bucket = b;
    x->align = a;
    x->src = rresp_arg_selector(j, 1);
    x->dst = rresp_arg_selector(j, 2);
    if (!x->src || !x->dst) {
        resp_error(&c->out, "ERR TSDB: invalid key");
        rresp_job_end(j);
        return;
    }
    if (rresp_job_key(j, 1) != 0) {
        rresp_job_end(j);
        return;
    }
    rresp_job_meta(j, createrule_src);
}

void rresp_cmd_deleterule(rconn_t *c)
{
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = 'd';
    char *src = rresp_arg_selector(j, 1), *dst = rresp_arg_selector(j, 2);
    st_buf_t t;
    st_buf_init(&t);
    if (!src || !dst) {
        resp_error(&c->out, "ERR TSDB: invalid key");
        free(src);
        free(dst);
        rresp_job_end(j);
        return;
    }
    if (resp_rules_delete_target(&t, src, dst)) {
        rresp_fatal_oom(c);
        free(src);
        free(dst);
        st_buf_deinit(&t);
        rresp_job_end(j);
        return;
    }
    free(src);
    free(dst);
    rresp_job_http(j, "DELETE", (const char *)t.data, NULL, NULL, 0, rule_done);
    st_buf_deinit(&t);
}

/* ---- TS.CREATE / TS.ALTER ------------------------------------------------------ */

int rresp_job_key(job_t *j, size_t i)
{
    j->key = rresp_dupn(j->argv[i].p, j->argv[i].len);
    j->klen = j->argv[i].len;
    char err[200];
    st_buf_t t;
    st_buf_init(&t);
    if (!j->key || memchr(j->key, 0, j->klen) || j->klen == 0 ||
        rresp_key_selector(&t, j->key, j->klen, &j->plain, err, sizeof err)) {
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
        rresp_reply_write_failed(j);
        j->e->loaded_ms = 0;
    } else {
        resp_simple(&j->c->out, "OK");
    }
    rresp_job_end(j);
}

static int64_t retention_entry_ms(int64_t ms);

static void retention_done(job_t *j)
{
    if (j->status == 200)
        resp_simple(&j->c->out, "OK");
    else
        rresp_reply_http_error(j, "setting the key's retention");
    rresp_job_end(j);
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
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    rresp_job_http(j, "POST", "/api/v1/admin/rules", "application/x-www-form-urlencoded", b.data,
                   b.len, retention_done);
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
        rresp_job_end(j);
        return;
    }
    resp_meta_default(&e->meta);
    resp_meta_apply(&e->meta, &j->o);
    int64_t now = st_now_ms();
    if (rresp_ent_set_labels(e, &j->o) || rresp_job_meta_row(j, 0, e, now)) {
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    e->exists = 1;
    e->meta_ts = now;
    j->set_ret = retention_changes(j, e->meta.retention_ms);
    rresp_job_write(j, j->set_ret ? written_set_retention : reply_ok_written);
}

static void alter_step(job_t *j)
{
    ent_t *e = j->e;
    if (!e->exists) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        rresp_job_end(j);
        return;
    }
    resp_meta_apply(&e->meta, &j->o);
    int64_t now = st_now_ms();
    if (now <= e->meta_ts)
        now = e->meta_ts + 1;
    if ((j->o.has_labels && rresp_ent_set_labels(e, &j->o)) || rresp_job_meta_row(j, 0, e, now)) {
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    e->meta_ts = now;
    j->set_ret = j->o.has_retention && retention_changes(j, e->meta.retention_ms);
    rresp_job_write(j, j->set_ret ? written_set_retention : reply_ok_written);
}

static void cmd_create_alter(rconn_t *c, int alter)
{
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    char err[200];
    if (rresp_job_key(j, 1) != 0) {
        rresp_job_end(j);
        return;
    }
    if (j->plain) {
        resp_error(&c->out, "ERR TSDB: a key spelled as a series has no settings or labels");
        rresp_job_end(j);
        return;
    }
    if (resp_tsopts_parse(c->argv + 2, c->argc - 2, alter ? RESP_OPTS_ALTER : RESP_OPTS_CREATE,
                          &j->o, err, sizeof err)) {
        resp_errorf(&c->out, "ERR %s", err);
        rresp_job_end(j);
        return;
    }
    j->e = NULL;
    /* always re-read: CREATE must not race another router's CREATE by a stale cache */
    ent_t *e = rresp_cache_get(c->s, j->key, j->klen, 1);
    if (e)
        e->loaded_ms = 0;
    rresp_job_meta(j, alter ? alter_step : create_step);
}

void rresp_cmd_create(rconn_t *c)
{
    cmd_create_alter(c, 0);
}

void rresp_cmd_alter(rconn_t *c)
{
    cmd_create_alter(c, 1);
}
