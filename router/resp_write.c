/*
 * resp_write — the RESP door's direct write path (see resp_write.h).
 *
 * Items live in one growing array and their strings in one arena: a
 * sample keeps (key offset, key length, ts, v); a metadata row keeps its
 * labels packed as (u32 length, bytes) pairs. The build step (thread pool)
 * makes each item's label set in a reused scratch array, drops empty
 * values, sorts and validates it like the JSON import, and hands it to
 * wbatch_add_series(), which merges the samples of one series.
 */
#include "resp_write.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "auth_gate.h"
#include "import.h"
#include "selector.h"
#include "st_err.h"
#include "st_labels.h"
#include "st_text.h"
#include "st_time.h"
#include "wbatch.h"

enum { IT_NAME, IT_SERIES, IT_META };

typedef struct item {
    uint32_t off, len; /* in str: the key (samples) or the packed labels (meta) */
    uint32_t tag;
    uint8_t kind;
    int64_t ts;
    double v;
} item_t;

typedef struct rej {
    uint32_t tag;
    char reason[WBATCH_REASON_MAX];
} rej_t;

struct resp_write {
    item_t *it;
    size_t n, cap;
    st_buf_t str;
    rej_t *rej; /* after the write: the rejected items kept by the batch */
    size_t nrej;
    int rej_all; /* every rejection is among rej */
    http_req_t *req;
    router_t *r;
};

int resp_write_create(resp_write_t **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return ST_ENOMEM;
    st_buf_init(&(*out)->str);
    (*out)->rej_all = 1;
    return 0;
}

void resp_write_destroy(resp_write_t *w)
{
    if (!w)
        return;
    free(w->it);
    free(w->rej);
    st_buf_deinit(&w->str);
    free(w);
}

size_t resp_write_count(const resp_write_t *w)
{
    return w->n;
}

size_t resp_write_bytes(const resp_write_t *w)
{
    return w->str.len + w->n * sizeof(item_t);
}

void resp_write_truncate(resp_write_t *w, size_t count)
{
    if (count < w->n) {
        w->str.len = w->it[count].off;
        w->n = count;
    }
}

static item_t *item_new(resp_write_t *w)
{
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 256;
        item_t *ni = realloc(w->it, nc * sizeof *ni);
        if (!ni)
            return NULL;
        w->it = ni;
        w->cap = nc;
    }
    return &w->it[w->n];
}

int resp_write_sample(resp_write_t *w, uint32_t tag, const char *key, size_t klen, int series,
                      int64_t ts, double v)
{
    item_t *it = item_new(w);
    if (!it || klen > UINT32_MAX || w->str.len > UINT32_MAX - klen)
        return ST_ENOMEM;
    *it = (item_t){.off = (uint32_t)w->str.len,
                   .len = (uint32_t)klen,
                   .tag = tag,
                   .kind = series ? IT_SERIES : IT_NAME,
                   .ts = ts,
                   .v = v};
    if (st_buf_append(&w->str, key, klen))
        return ST_ENOMEM;
    w->n++;
    return 0;
}

static int put_str(st_buf_t *b, const char *s, size_t n)
{
    uint32_t l = (uint32_t)n;
    int rc = st_buf_append(b, &l, sizeof l);
    return rc ? rc : st_buf_append(b, s, n);
}

static int put_kv(void *arg, const char *name, const char *value)
{
    int rc = put_str(arg, name, strlen(name));
    return rc ? rc : put_str(arg, value, strlen(value));
}

int resp_write_meta(resp_write_t *w, uint32_t tag, const char *key, const resp_meta_t *m,
                    char *const *kv, size_t nl, int64_t ts)
{
    item_t *it = item_new(w);
    if (!it)
        return ST_ENOMEM;
    size_t off = w->str.len;
    int rc = put_kv(&w->str, ST_METRIC_LABEL, RESP_TS_META_NAME);
    if (!rc)
        rc = put_kv(&w->str, RESP_TS_KEY_LABEL, key);
    for (size_t i = 0; i < nl && !rc; i++)
        rc = put_kv(&w->str, kv[2 * i], kv[2 * i + 1]);
    if (!rc)
        rc = resp_meta_each(m, put_kv, &w->str);
    if (rc || w->str.len > UINT32_MAX) {
        w->str.len = off;
        return ST_ENOMEM;
    }
    *it = (item_t){.off = (uint32_t)off,
                   .len = (uint32_t)(w->str.len - off),
                   .tag = tag,
                   .kind = IT_META,
                   .ts = ts,
                   .v = 1};
    w->n++;
    return 0;
}

/* ---- build (thread pool) ---------------------------------------------------- */

/* Sort, validate and check the name of l[0..n) like the JSON import; 0 or
 * a reason. */
static const char *labels_check(st_label_t *l, size_t n)
{
    if (n > ST_LABELS_MAX)
        return "too many labels";
    st_labels_sort(l, n);
    const char *why = NULL;
    if (st_labels_validate(l, n, &why))
        return why;
    int ni = st_labels_find(l, n, ST_METRIC_LABEL);
    if (ni < 0)
        return "no metric name (__name__)";
    if (l[ni].value_len > ST_LABEL_NAME_MAX)
        return "metric name longer than 256 bytes";
    return NULL;
}

/* The labels of a metadata item (empty values dropped, as the import does). */
static size_t meta_labels(const uint8_t *p, size_t len, st_label_t *l, size_t max)
{
    size_t n = 0, o = 0;
    while (o + 4 <= len) {
        uint32_t a, b;
        memcpy(&a, p + o, 4);
        const char *name = (const char *)p + o + 4;
        o += 4 + a;
        if (o + 4 > len)
            break;
        memcpy(&b, p + o, 4);
        const char *value = (const char *)p + o + 4;
        o += 4 + b;
        if (b == 0)
            continue;
        if (n == max)
            return max + 1;
        l[n++] = (st_label_t){name, value, a, b};
    }
    return n;
}

static double norm_nan(double v)
{
    if (!isnan(v))
        return v;
    uint64_t u = IMPORT_NAN_BITS;
    memcpy(&v, &u, sizeof v);
    return v;
}

int resp_write_build(resp_write_t *w, wbatch_t *b)
{
    st_label_t l[ST_LABELS_MAX + 1];
    const uint8_t *base = w->str.data;
    for (size_t i = 0; i < w->n; i++) {
        const item_t *it = &w->it[i];
        const char *p = (const char *)base + it->off;
        size_t n = 0;
        const char *why = NULL;
        selector_t sel;
        int have_sel = 0;
        switch (it->kind) {
        case IT_NAME:
            l[0] = (st_label_t){ST_METRIC_LABEL, p, 8, it->len};
            n = 1;
            break;
        case IT_SERIES: {
            char err[128];
            if (selector_parse(p, it->len, &sel, err, sizeof err) != 0) {
                why = "not a series selector";
                break;
            }
            have_sel = 1;
            for (size_t k = 0; k < sel.n && n <= ST_LABELS_MAX; k++)
                if (sel.m[k].value[0])
                    l[n++] =
                        (st_label_t){sel.m[k].name, sel.m[k].value, (uint32_t)strlen(sel.m[k].name),
                                     (uint32_t)strlen(sel.m[k].value)};
            break;
        }
        default:
            n = meta_labels((const uint8_t *)p, it->len, l, ST_LABELS_MAX);
            break;
        }
        if (!why)
            why = labels_check(l, n);
        int rc = 0;
        if (why) {
            wbatch_reject(b, i + 1, why);
        } else {
            double v = norm_nan(it->v);
            rc = wbatch_add_series(b, i + 1, l, (uint32_t)n, &it->ts, &v, 1);
        }
        if (have_sel)
            selector_free(&sel);
        if (rc)
            return rc;
    }
    return wbatch_finish(b);
}

/* ---- after the write ------------------------------------------------------------ */

const char *resp_write_rejected(const resp_write_t *w, uint32_t tag)
{
    for (size_t i = 0; i < w->nrej; i++)
        if (w->rej[i].tag == tag)
            return w->rej[i].reason;
    return NULL;
}

int resp_write_rejected_all(const resp_write_t *w)
{
    return w->rej_all;
}

static int src_build(void *arg, http_req_t *req, wbatch_t *b, char *msg, size_t msglen)
{
    (void)req;
    (void)msg;
    (void)msglen;
    return resp_write_build(arg, b);
}

static void src_done(void *arg, router_t *r, const wbatch_t *b)
{
    resp_write_t *w = arg;
    free(w->rej);
    w->rej = NULL;
    w->nrej = 0;
    w->rej_all = 1;
    if (!b)
        return;
    metric_counter_add(r->lines_ok, wbatch_lines_ok(b));
    metric_counter_add(r->lines_bad, wbatch_lines_bad(b));
    metric_counter_add(r->lines_too_old, wbatch_lines_too_old(b));
    metric_counter_add(r->lines_too_far_future, wbatch_lines_too_far_future(b));
    size_t n;
    const wbatch_rejected_t *rj = wbatch_rejected(b, &n);
    w->rej_all = wbatch_lines_bad(b) == n;
    if (!n)
        return;
    w->rej = calloc(n, sizeof *w->rej);
    if (!w->rej) {
        w->rej_all = 0;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (rj[i].line < 1 || rj[i].line > w->n)
            continue;
        rej_t *x = &w->rej[w->nrej++];
        x->tag = w->it[rj[i].line - 1].tag;
        memcpy(x->reason, rj[i].reason, sizeof x->reason);
    }
}

static void gate_next(void *ctx, const void *route, http_req_t *req)
{
    resp_write_t *w = ctx;
    (void)route;
    router_write_src_t src = {src_build, src_done, "sample", "samples", w, 0};
    router_write_submit(w->r, req, 0, st_now_ms(), &src);
}

int resp_write_submit(router_t *r, const http_limits_t *hl, resp_write_t *w, const char *authz,
                      const char *peer, http_sink_fn sink, void *sink_arg)
{
    /* the target names the HTTP endpoint these writes stand for (same role,
     * same confinement): the gate's 401/403 texts read as they did */
    http_req_t *req;
    int rc = http_req_local_as(hl, "POST", "/api/v1/import", NULL, authz, peer, NULL, 0, sink,
                               sink_arg, &req);
    if (rc)
        return rc;
    w->r = r;
    w->req = req;
    if (auth_gate_check(r->auth, req, AUTH_ROLE_WRITE, gate_next, w, NULL))
        gate_next(w, NULL, req);
    return 0;
}
