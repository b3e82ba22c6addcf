/*
 * router_resp_read — the RESP door's reads (router_resp_int.h lists the
 * files): one-key reads (TS.GET, TS.RANGE/REVRANGE with aggregation,
 * TS.INFO, EXISTS, TYPE) and many-key reads (TS.MGET, TS.MRANGE/MREVRANGE
 * with GROUPBY/REDUCE, TS.QUERYINDEX, TS.CARD, TS.LABELNAMES/LABELVALUES,
 * KEYS, SCAN), TS.JOIN and TS.STATS. Each is one or more exports through
 * the router's route table; filters on metadata select keys first.
 */
#include "router_resp_int.h"

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
    if (rresp_parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        rresp_xset_free(&x);
        return -1;
    }
    for (size_t i = 0; i < x.n; i++)
        if (rresp_exact_key(&x.v[i], j->key, j->plain)) {
            *found = 1;
            resp_samples_free(out);
            *out = x.v[i].s;
            memset(&x.v[i].s, 0, sizeof x.v[i].s);
            break;
        }
    rresp_xset_free(&x);
    return 0;
}

static void range_read(job_t *j)
{
    if (j->status != 200) {
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
        return;
    }
    if (rresp_key_unavailable(j, 1)) {
        rresp_job_end(j);
        return;
    }
    resp_samples_t s = {0};
    int found;
    if (key_samples(j, &s, &found)) {
        rresp_job_end(j);
        return;
    }
    if (!found && !j->e->exists) {
        resp_error(&j->c->out, "ERR TSDB: the key does not exist");
        resp_samples_free(&s);
        rresp_job_end(j);
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
        char *ksel = rresp_arg_selector(j, 1);
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
            rresp_fatal_oom(j->c);
        else
            reply_samples(j->c, &s);
    }
    resp_samples_free(&s);
    rresp_job_end(j);
}

static void exists_read(job_t *j);

static void range_step(job_t *j)
{
    st_buf_t sel;
    st_buf_init(&sel);
    char err[200];
    int plain;
    if (rresp_key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
        st_buf_deinit(&sel);
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    int64_t from = j->kind == 'R' ? j->rg.from : 0;
    int64_t to =
        j->kind == 'R' && !(j->e->exists && j->e->meta.retention_ms > 0) ? j->rg.to : INT64_MAX;
    j->partial = 1;
    rresp_job_export(j, sels, 1, from, to,
                     j->kind == 'E' || j->kind == 'T' ? exists_read : range_read);
    st_buf_deinit(&sel);
}

static void cmd_range_common(rconn_t *c, int rev)
{
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
    char err[200];
    if (resp_range_parse(c->argv + 2, c->argc - 2, RESP_RANGE_ONE, &j->rg, err, sizeof err)) {
        resp_errorf(&c->out, "%s%s", strncmp(err, "ERR", 3) ? "ERR " : "", err);
        rresp_job_end(j);
        return;
    }
    j->rg.rev = rev;
    j->kind = 'R';
    rresp_job_meta(j, range_step);
}

void rresp_cmd_range(rconn_t *c)
{
    cmd_range_common(c, 0);
}

void rresp_cmd_revrange(rconn_t *c)
{
    cmd_range_common(c, 1);
}

static void cmd_get_info(rconn_t *c, int kind)
{
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
    for (size_t i = 2; i < c->argc; i++)
        if (!resp_arg_is(&c->argv[i], "LATEST") && !resp_arg_is(&c->argv[i], "DEBUG")) {
            resp_errorf(&c->out, "ERR TSDB: unknown argument '%.*s'",
                        (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len), c->argv[i].p);
            rresp_job_end(j);
            return;
        }
    j->kind = kind;
    rresp_job_meta(j, range_step);
}

void rresp_cmd_get(rconn_t *c)
{
    cmd_get_info(c, 'G');
}

void rresp_cmd_tsinfo(rconn_t *c)
{
    cmd_get_info(c, 'I');
}

/* EXISTS / TYPE: a key exists when it has metadata or samples. */
static void exists_read(job_t *j)
{
    int found = 0;
    if (j->status == 200 && rresp_key_unavailable(j, 1)) {
        rresp_job_end(j);
        return;
    }
    if (j->status == 200) {
        resp_samples_t s = {0};
        if (key_samples(j, &s, &found)) {
            rresp_job_end(j);
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
        rresp_job_end(j);
        return;
    }
    /* EXISTS k1 k2 ...: the next key */
    size_t i = (size_t)j->dup + 1;
    if (i >= j->argc) {
        resp_int(&j->c->out, *(int64_t *)j->ctx);
        rresp_job_end(j);
        return;
    }
    j->dup = (int)i;
    free(j->key);
    j->key = NULL;
    if (rresp_job_key(j, i) != 0) {
        rresp_job_end(j);
        return;
    }
    rresp_job_meta(j, range_step);
}

static void cmd_exists_type(rconn_t *c, int kind)
{
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    j->kind = kind;
    j->dup = 1;
    j->ctx = calloc(1, sizeof(int64_t));
    j->ctx_free = free;
    if (!j->ctx || rresp_job_key(j, 1) != 0) {
        rresp_job_end(j);
        return;
    }
    /* range_step reads the whole series; exists_read takes the answer */
    j->rg.from = 0;
    j->rg.to = INT64_MAX;
    j->kind = kind;
    rresp_job_meta(j, range_step);
}

void rresp_cmd_exists(rconn_t *c)
{
    cmd_exists_type(c, 'E');
}

void rresp_cmd_type(rconn_t *c)
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
    rresp_xset_free(&m->meta);
    rresp_xset_free(&m->data);
    for (size_t i = 0; i < m->nkeys; i++) {
        free(m->keys[i]);
        rresp_ent_free_labels(&m->ents[i]);
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
        rc = rresp_sel_matcher(b, "__name__", ST_MATCH_EQ, RESP_TS_META_NAME);
    for (size_t i = 0; i < nf && !rc; i++) {
        if (strcmp(f[i].name, "__name__") == 0)
            continue;
        if (!((f[i].type == ST_MATCH_EQ && f[i].value[0]) || f[i].type == ST_MATCH_RE))
            continue;
        rc = st_buf_put_u8(b, ',');
        if (!rc)
            rc = rresp_sel_matcher(b, f[i].name, f[i].type, f[i].value);
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

/* Selectors that together match label =~ one of keys[0..nk) (each key
 * regex-escaped), with the matcher pname="pval" in front when pname is set:
 * NUL-terminated texts in bufs[0..*n), which the caller frees. Returns 0,
 * ST_ELIMIT (more than max selectors needed) or ST_ENOMEM. */
int rresp_key_selectors(st_buf_t *bufs, size_t max, size_t *n, const char *pname, const char *pval,
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
            rc = rresp_sel_matcher(b, pname, ST_MATCH_EQ, pval);
            if (!rc)
                rc = st_buf_put_u8(b, ',');
        }
        if (!rc)
            rc = rresp_sel_matcher(b, label, ST_MATCH_RE, (const char *)re.data);
        if (!rc)
            rc = ST_BUF_LIT(b, "}");
        if (!rc)
            rc = st_buf_put_u8(b, 0);
        st_buf_deinit(&re);
    }
    return rc;
}

void rresp_bufs_free(st_buf_t *b, size_t n)
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
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    rresp_job_export(j, sels, 1, 0, INT64_MAX, mfilter_meta2);
    st_buf_deinit(&sel);
}

/* Step 2: every version of the candidate keys (an older version may have
 * matched while the newest does not). */
static void mfilter_meta2(job_t *j)
{
    msel_t *m = j->ctx;
    if (j->status != 200) {
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
        return;
    }
    char err[256];
    xset_t x = {0};
    if (rresp_parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        rresp_xset_free(&x);
        rresp_job_end(j);
        return;
    }
    /* the distinct candidate keys */
    char **keys = calloc(x.n + 1, sizeof *keys);
    size_t nc = 0;
    for (size_t i = 0; i < x.n && keys; i++) {
        const char *k = rresp_kv_get(x.v[i].kv, x.v[i].nl, RESP_TS_KEY_LABEL);
        int seen = 0;
        for (size_t q = 0; k && q < nc && !seen; q++)
            seen = strcmp(keys[q], k) == 0;
        if (k && !seen)
            keys[nc++] = (char *)k;
    }
    if (!keys) {
        rresp_xset_free(&x);
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    if (nc == 0) {
        free(keys);
        rresp_xset_free(&x);
        m->stage = 1;
        mfilter_data(j);
        return;
    }
    st_buf_t bufs[RESP_SEL_MAX];
    size_t ns;
    int rc = rresp_key_selectors(bufs, RESP_SEL_MAX, &ns, "__name__", RESP_TS_META_NAME,
                                 RESP_TS_KEY_LABEL, keys, nc);
    free(keys);
    rresp_xset_free(&x);
    if (rc) {
        rresp_bufs_free(bufs, ns);
        if (rc == ST_ELIMIT)
            resp_error(&j->c->out, "ERR TSDB: the filter matches too many keys");
        else
            rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    const char *sels[RESP_SEL_MAX] = {0};
    for (size_t i = 0; i < ns; i++)
        sels[i] = (const char *)bufs[i].data;
    m->stage = 1;
    rresp_job_export(j, sels, ns, 0, INT64_MAX, mfilter_data);
    rresp_bufs_free(bufs, ns);
}

/* Step 3: the newest version of each key decides; then the samples of the
 * selected keys and of the other series the filters match. */
static void mfilter_data(job_t *j)
{
    msel_t *m = j->ctx;
    char err[256];
    if (j->status != 200 && j->body.len) {
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
        return;
    }
    xset_t x = {0};
    if (j->body.len && rresp_parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        rresp_xset_free(&x);
        rresp_job_end(j);
        return;
    }
    j->body.len = 0;
    /* distinct keys */
    char **keys = calloc(x.n + 1, sizeof *keys);
    size_t nk = 0;
    for (size_t i = 0; i < x.n && keys; i++) {
        const char *k = rresp_kv_get(x.v[i].kv, x.v[i].nl, RESP_TS_KEY_LABEL);
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
        rresp_xset_free(&x);
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    for (size_t q = 0; q < nk; q++) {
        ent_t e = {0};
        rresp_meta_from(&e, &x, keys[q]);
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
            rresp_ent_free_labels(&e);
        }
        free(kv);
        free(keys[q]);
    }
    free(keys);
    rresp_xset_free(&x);
    /* sel 1: the series of the selected keys; sel 2: other series matching
     * the filters directly (not metadata) */
    st_buf_t bufs[RESP_SEL_MAX + 1];
    size_t ns = 0;
    int rc = m->nkeys ? rresp_key_selectors(bufs, RESP_SEL_MAX, &ns, NULL, NULL, "__name__",
                                            m->keys, m->nkeys)
                      : 0;
    st_buf_t *s2 = &bufs[ns];
    st_buf_init(s2);
    if (!rc)
        rc = ST_BUF_LIT(s2, "{");
    for (size_t i = 0; i < j->rg.nfilters && !rc; i++) {
        rc = rresp_sel_matcher(s2, j->rg.filters[i].name, j->rg.filters[i].type,
                               j->rg.filters[i].value);
        if (!rc)
            rc = st_buf_put_u8(s2, ',');
    }
    if (!rc)
        rc = rresp_sel_matcher(s2, "__name__", ST_MATCH_NE, RESP_TS_META_NAME);
    if (!rc)
        rc = ST_BUF_LIT(s2, "}");
    if (!rc)
        rc = st_buf_put_u8(s2, 0);
    ns++;
    if (rc) {
        rresp_bufs_free(bufs, ns);
        if (rc == ST_ELIMIT)
            resp_error(&j->c->out, "ERR TSDB: the filter matches too many keys");
        else
            rresp_fatal_oom(j->c);
        rresp_job_end(j);
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
    rresp_job_export(j, sels, ns, from, to, mfilter_done);
    rresp_bufs_free(bufs, ns);
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
            const char *v = rresp_kv_get(kv, nl, name);
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
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
        return;
    }
    if (rresp_parse_export(&j->body, &m->data, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        rresp_job_end(j);
        return;
    }
    mrow_t *rows = calloc(m->data.n + 1, sizeof *rows);
    if (!rows) {
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < m->data.n; i++) {
        xser_t *x = &m->data.v[i];
        const char *name = rresp_kv_get(x->kv, x->nl, "__name__");
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
            if (x->nl == 1 && name && rresp_cache_get(j->s, name, strlen(name), 0) &&
                rresp_cache_get(j->s, name, strlen(name), 0)->exists)
                continue;
            x->key = rresp_series_key(x->kv, x->nl);
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
    rresp_job_end(j);
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
        const char *v = rresp_kv_get(rows[i].kv, rows[i].nl, lab);
        int seen = 0;
        for (size_t q = 0; v && q < nv && !seen; q++)
            seen = strcmp(vals[q], v) == 0;
        if (v && !seen)
            vals[nv++] = v;
    }
    if (!vals) {
        rresp_fatal_oom(j->c);
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
            const char *v = rresp_kv_get(rows[i].kv, rows[i].nl, lab);
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
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    char err[200];
    if (resp_range_parse(c->argv + 1, c->argc - 1, RESP_RANGE_MULTI, &j->rg, err, sizeof err)) {
        resp_errorf(&c->out, "%s%s", strncmp(err, "ERR", 3) ? "ERR " : "", err);
        rresp_job_end(j);
        return;
    }
    j->rg.rev = rev;
    j->kind = 'R';
    mfilter_start(j);
}

void rresp_cmd_mrange(rconn_t *c)
{
    cmd_mrange_common(c, 0);
}

void rresp_cmd_mrevrange(rconn_t *c)
{
    cmd_mrange_common(c, 1);
}

void rresp_cmd_mget(rconn_t *c)
{
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    char err[200];
    if (resp_range_parse(c->argv + 1, c->argc - 1, RESP_RANGE_MGET, &j->rg, err, sizeof err)) {
        resp_errorf(&c->out, "%s%s", strncmp(err, "ERR", 3) ? "ERR " : "", err);
        rresp_job_end(j);
        return;
    }
    j->kind = 'M';
    mfilter_start(j);
}

/* TS.QUERYINDEX f..., TS.CARD [FILTER f...], TS.LABELNAMES [FILTER f...],
 * TS.LABELVALUES label [FILTER f...] */
static void cmd_index(rconn_t *c, int kind, size_t first)
{
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
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
                rresp_fatal_oom(c);
                rresp_job_end(j);
                return;
            }
            goto run;
        }
        if (!resp_arg_is(&c->argv[i], "FILTER")) {
            resp_error(&c->out, "ERR TSDB: expected FILTER");
            rresp_job_end(j);
            return;
        }
        i++;
    }
    if (i >= c->argc || resp_filter_parse(c->argv + i, c->argc - i, j->rg.filters,
                                          RESP_TS_MAX_FILTERS, &j->rg.nfilters, err, sizeof err)) {
        if (i >= c->argc)
            snprintf(err, sizeof err, "TSDB: missing FILTER argument");
        resp_errorf(&c->out, "ERR %s", err);
        rresp_job_end(j);
        return;
    }
run:
    j->rg.from = 0;
    j->rg.to = INT64_MAX;
    j->rg.count = -1;
    j->kind = kind;
    mfilter_start(j);
}

void rresp_cmd_queryindex(rconn_t *c)
{
    cmd_index(c, 'Q', 1);
}

void rresp_cmd_card(rconn_t *c)
{
    cmd_index(c, 'C', 1);
}

void rresp_cmd_labelnames(rconn_t *c)
{
    cmd_index(c, 'N', 1);
}

void rresp_cmd_labelvalues(rconn_t *c)
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
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
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
            key = kv ? rresp_series_key(kv, q) : NULL;
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
    rresp_job_end(j);
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
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
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
        rc = rresp_pct(&t, "{__name__=~\".+\"}", 16);
    if (!rc)
        rc = st_buf_append(&t, tail, (size_t)n);
    if (rc) {
        st_buf_deinit(&t);
        rresp_fatal_oom(c);
        rresp_job_end(j);
        return;
    }
    rresp_job_http(j, "POST", "/api/v1/series", "application/x-www-form-urlencoded", t.data, t.len,
                   keys_done);
    st_buf_deinit(&t);
}

void rresp_cmd_keys(rconn_t *c)
{
    cmd_keys_scan(c, 'K');
}

void rresp_cmd_scan(rconn_t *c)
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
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
        return;
    }
    int found;
    if (rresp_key_unavailable(j, 1) || key_samples(j, &o->left, &found)) {
        rresp_job_end(j);
        return;
    }
    apply_retention(j->e, &o->left);
    o->have_left = 1;
    /* the right key next */
    free(j->key);
    j->key = NULL;
    if (rresp_job_key(j, 2) != 0) {
        rresp_job_end(j);
        return;
    }
    rresp_job_meta(j, join_right);
}

static void join_right_read(job_t *j)
{
    jopt_t *o = j->ctx;
    if (j->status != 200) {
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
        return;
    }
    resp_samples_t r = {0};
    int found;
    if (rresp_key_unavailable(j, 1) || key_samples(j, &r, &found)) {
        rresp_job_end(j);
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
    rresp_job_end(j);
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
        if (rresp_key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
            st_buf_deinit(&sel);
            rresp_fatal_oom(j->c);
            rresp_job_end(j);
            return;
        }
        const char *sels[1] = {(const char *)sel.data};
        j->partial = 1;
        rresp_job_export(j, sels, 1, o->rg.from, INT64_MAX, join_left);
        st_buf_deinit(&sel);
        return;
    }
    st_buf_t sel;
    st_buf_init(&sel);
    char err[200];
    int plain;
    if (rresp_key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
        st_buf_deinit(&sel);
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    j->partial = 1;
    rresp_job_export(j, sels, 1, o->rg.from, INT64_MAX, join_right_read);
    st_buf_deinit(&sel);
}

void rresp_cmd_join(rconn_t *c)
{
    job_t *j = rresp_job_new(c);
    jopt_t *o = calloc(1, sizeof *o);
    if (!j || !o) {
        free(o);
        rresp_fatal_oom(c);
        if (j)
            rresp_job_end(j);
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
        rresp_fatal_oom(c);
        rresp_job_end(j);
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
                    rresp_job_end(j);
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
                rresp_job_end(j);
                return;
            }
            int op = 0;
            for (int q = 1; join_ops[q]; q++)
                if (resp_arg_is(&c->argv[i + 1], join_ops[q]))
                    op = q;
            if (!op) {
                resp_error(&c->out, "ERR TSDB: unknown REDUCE operator");
                free(rest);
                rresp_job_end(j);
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
        rresp_job_end(j);
        return;
    }
    if (o->rg.agg) {
        resp_error(&c->out, "ERR TSDB: TS.JOIN takes no AGGREGATION");
        rresp_job_end(j);
        return;
    }
    if (rresp_job_key(j, 1) != 0) {
        rresp_job_end(j);
        return;
    }
    rresp_job_meta(j, join_right);
}

/* TS.STATS: what the cache and the index say about the keyspace. */
static void stats_done(job_t *j)
{
    if (j->status != 200) {
        rresp_reply_http_error(j, "read");
        rresp_job_end(j);
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
    rresp_job_end(j);
}

void rresp_cmd_stats(rconn_t *c)
{
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_fatal_oom(c);
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
        rc = rresp_pct(&t, "{__name__=~\".+\"}", 16);
    if (!rc)
        rc = st_buf_append(&t, tail, (size_t)n);
    if (rc) {
        st_buf_deinit(&t);
        rresp_fatal_oom(c);
        rresp_job_end(j);
        return;
    }
    rresp_job_http(j, "POST", "/api/v1/series", "application/x-www-form-urlencoded", t.data, t.len,
                   stats_done);
    st_buf_deinit(&t);
}
