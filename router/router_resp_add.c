/*
 * router_resp_add — the RESP door's sample writes (router_resp_int.h
 * lists the files): TS.ADD (one key: settings, duplicate probe, write),
 * TS.MADD and the write batches that gather the TS.ADD/TS.MADD commands of
 * one pipelined read into one write (replies in command order), and
 * TS.INCRBY/TS.DECRBY (one at a time per router: read newest, write).
 */
#include "router_resp_int.h"

/* ---- TS.ADD ----------------------------------------------------------------------- */

static void add_written(job_t *j)
{
    if (j->status != 204 && j->status != 200) {
        rresp_reply_write_failed(j);
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
    rresp_job_end(j);
}

static void add_write(job_t *j)
{
    ent_t *e = j->e;
    int rc = 0;
    if (!j->plain && !e->exists) { /* auto-create with the options of this TS.ADD */
        resp_meta_default(&e->meta);
        resp_meta_apply(&e->meta, &j->o);
        rc = rresp_ent_set_labels(e, &j->o);
        int64_t now = st_now_ms();
        if (!rc)
            rc = rresp_job_meta_row(j, 0, e, now);
        e->exists = 1;
        e->meta_ts = now;
    } else if (!j->plain && rresp_meta_stale(j->s, e)) {
        int64_t now = st_now_ms();
        rc = rresp_job_meta_row(j, 0, e, now);
        e->meta_ts = now;
    }
    if (!rc)
        rc = rresp_job_sample(j, 0, j->key, j->klen, j->plain, j->ts, j->v);
    if (rc) {
        rresp_fatal_oom(j->c);
        rresp_job_end(j);
        return;
    }
    rresp_job_write(j, add_written);
}

/* The probe answered: is there a sample at ts, and which is the newest? */
static void add_probed(job_t *j)
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
    xset_t x = {0};
    char err[256];
    if (rresp_parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        rresp_xset_free(&x);
        rresp_job_end(j);
        return;
    }
    ent_t *e = j->e;
    int have = 0;
    double old = 0;
    int64_t hi = INT64_MIN;
    double hv = 0;
    for (size_t i = 0; i < x.n; i++) {
        if (!rresp_exact_key(&x.v[i], j->key, j->plain))
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
    rresp_xset_free(&x);
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
            rresp_job_end(j);
            return;
        case DUP_FIRST:
            resp_int(&j->c->out, j->ts);
            rresp_job_end(j);
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
        rresp_job_end(j);
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
            rresp_job_end(j);
            return;
        }
        add_write(j);
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
    int64_t lo = j->ts;
    if (ignore)
        lo = j->ts > e->meta.ignore_max_time ? j->ts - e->meta.ignore_max_time : 0;
    j->partial = 1;
    rresp_job_export(j, sels, 1, lo, INT64_MAX, add_probed);
    st_buf_deinit(&sel);
}

void rresp_cmd_add(rconn_t *c)
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
    int now;
    if (resp_parse_ts(&c->argv[2], &j->ts, &now)) {
        resp_error(&c->out, "ERR TSDB: invalid timestamp");
        rresp_job_end(j);
        return;
    }
    if (now)
        j->ts = st_now_ms();
    if (resp_parse_double(&c->argv[3], &j->v)) {
        resp_error(&c->out, "ERR TSDB: invalid value");
        rresp_job_end(j);
        return;
    }
    char err[200];
    if (resp_tsopts_parse(c->argv + 4, c->argc - 4, RESP_OPTS_ADD, &j->o, err, sizeof err)) {
        resp_errorf(&c->out, "ERR %s", err);
        rresp_job_end(j);
        return;
    }
    rresp_job_meta(j, add_step);
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

/* The error reply of a write that failed as a whole: the text
 * reply_http_error would send, without the "-" and CRLF, into msg. */
static void write_error_text(job_t *j, char *msg, size_t cap)
{
    st_buf_t tmp = j->c->out;
    st_buf_init(&j->c->out);
    rresp_reply_http_error(j, "write");
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
    int each = !ok && rresp_rejects_only(j);
    if (!ok) {
        /* one write for the whole batch: every sample shares its fate,
         * unless the pipeline rejected single items (those answer alone) */
        if (!each)
            write_error_text(j, msg, sizeof msg);
        rresp_cache_forget(j->s, NULL); /* what the cache assumed of these keys may be wrong */
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
    rresp_job_end(j);
}

/* The connection's open batch (made on first use). */
static job_t *batch_get(rconn_t *c)
{
    if (c->batch)
        return c->batch;
    int was = c->busy;
    job_t *j = rresp_job_new(c);
    c->busy = was;
    if (!j)
        return NULL;
    bctx_t *b = calloc(1, sizeof *b);
    if (!b) {
        uv_close((uv_handle_t *)&j->timer, rresp_job_free_timer);
        return NULL;
    }
    j->ctx = b;
    j->ctx_free = bctx_free;
    c->batch = j;
    return j;
}

/* Send the open batch; the connection waits for its replies. */
void rresp_batch_submit(rconn_t *c)
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
    rresp_job_write(j, batch_written);
}

static int batch_full(const job_t *j)
{
    const bctx_t *b = j->ctx;
    return (j->wr && resp_write_bytes(j->wr) >= RESP_BATCH_MAX_BYTES) ||
           b->nc >= RESP_BATCH_MAX_CMDS;
}

/* Is the key spelled as a series (cpu{host="a"})? */
int rresp_key_is_series(const resp_arg_t *k)
{
    return k->len > 1 && k->p[k->len - 1] == '}' && memchr(k->p, '{', k->len);
}

/* TS.MADD key ts value ...: its samples into the open batch. Returns 0, or
 * -1 when out of memory (answered). */
static int batch_madd(rconn_t *c)
{
    job_t *j = batch_get(c);
    if (!j || !rresp_job_wr(j)) {
        rresp_fatal_oom(c);
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
            int plain = rresp_key_is_series(k);
            if (resp_write_sample(j->wr, slot, k->p, k->len, plain, ts, v))
                goto oom;
            rep = ts;
            ent_t *e = rresp_cache_get(c->s, k->p, k->len, 0);
            if (e && e->hi_known && ts >= e->hi) {
                e->hi = ts;
                e->last_v = v;
            }
            if (e && !plain && rresp_meta_stale(c->s, e)) {
                if (rresp_job_meta_row(j, slot, e, now_ms))
                    goto oom;
                e->meta_ts = now_ms;
            }
        }
        if (bctx_push(b, rep))
            goto oom;
    }
    return 0;
oom:
    rresp_fatal_oom(c);
    return -1;
}

void rresp_cmd_madd(rconn_t *c)
{
    if ((c->argc - 1) % 3)
        return rresp_wrong_args(c, "ts.madd");
    if (batch_madd(c) == 0)
        rresp_batch_submit(c);
}

/* Are the key's settings cached and fresh enough for a batched write? */
int rresp_ent_fresh(const router_resp_t *s, const ent_t *e)
{
    return e && e->loaded_ms && (uint64_t)st_now_ms() - e->loaded_ms < RESP_META_TTL_MS &&
           !rresp_meta_stale(s, e);
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
    if (k->len == 0 || memchr(k->p, 0, k->len) || rresp_key_is_series(k))
        return 0;
    ent_t *e = rresp_cache_get(c->s, k->p, k->len, 0);
    if (!rresp_ent_fresh(c->s, e))
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
    if (!j || !rresp_job_wr(j))
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
        if (rresp_ent_set_labels(&tmp, &o) || rresp_job_meta_row(j, slot, &tmp, now_ms)) {
            rresp_ent_free_labels(&tmp);
            resp_write_truncate(j->wr, mark);
            return 0;
        }
        rresp_ent_free_labels(e);
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
int rresp_batch_try(rconn_t *c, const cmd_t *k, metric_counter_t *m)
{
    if (!k || (k->fn != rresp_cmd_madd && k->fn != rresp_cmd_add))
        return 0;
    if (k->fn == rresp_cmd_madd) {
        if (c->argc < 4 || (c->argc - 1) % 3)
            return 0;
        if (batch_madd(c))
            return 0;
    } else {
        int rc = batch_add(c);
        if (rc != 1)
            return rc;
    }
    metric_counter_inc(m);
    if (batch_full(c->batch))
        rresp_batch_submit(c);
    return 1;
}

/* ---- TS.INCRBY / TS.DECRBY ------------------------------------------------------- */

static void incr_next(router_resp_t *s);

static void incr_done(job_t *j)
{
    router_resp_t *s = j->s;
    s->incr_busy = 0;
    rresp_job_end(j);
    incr_next(s);
}

static void incr_written(job_t *j)
{
    if (j->status != 204 && j->status != 200) {
        rresp_reply_write_failed(j);
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
        rresp_reply_http_error(j, "read");
        incr_done(j);
        return;
    }
    if (rresp_key_unavailable(j, 1)) {
        incr_done(j);
        return;
    }
    xset_t x = {0};
    char err[256];
    if (rresp_parse_export(&j->body, &x, err, sizeof err)) {
        resp_errorf(&j->c->out, "ERR read failed: %s", err);
        rresp_xset_free(&x);
        incr_done(j);
        return;
    }
    int64_t hi = INT64_MIN;
    double hv = 0;
    for (size_t i = 0; i < x.n; i++)
        if (rresp_exact_key(&x.v[i], j->key, j->plain))
            for (size_t k = 0; k < x.v[i].s.n; k++)
                if (x.v[i].s.ts[k] >= hi) {
                    hi = x.v[i].s.ts[k];
                    hv = x.v[i].s.v[k];
                }
    rresp_xset_free(&x);
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
        rc = rresp_ent_set_labels(e, &j->o);
        int64_t now = st_now_ms();
        if (!rc)
            rc = rresp_job_meta_row(j, 0, e, now);
        e->exists = 1;
        e->meta_ts = now;
    }
    if (!rc)
        rc = rresp_job_sample(j, 0, j->key, j->klen, j->plain, j->ts, j->v);
    if (rc) {
        rresp_fatal_oom(j->c);
        incr_done(j);
        return;
    }
    rresp_job_write(j, incr_written);
}

static void incr_step(job_t *j)
{
    st_buf_t sel;
    st_buf_init(&sel);
    char err[200];
    int plain;
    if (rresp_key_selector(&sel, j->key, j->klen, &plain, err, sizeof err)) {
        st_buf_deinit(&sel);
        rresp_fatal_oom(j->c);
        incr_done(j);
        return;
    }
    const char *sels[1] = {(const char *)sel.data};
    /* from the newest sample this router knows of (samples written by
     * others after it are found too), else the whole series */
    int64_t lo = j->e->hi_known && j->e->last_known ? j->e->hi : 0;
    j->partial = 1;
    rresp_job_export(j, sels, 1, lo, INT64_MAX, incr_probed);
    st_buf_deinit(&sel);
}

static void incr_start(job_t *j)
{
    rresp_job_meta(j, incr_step);
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
    if (resp_parse_double(&c->argv[2], &j->v)) {
        resp_error(&c->out, "ERR TSDB: invalid value");
        rresp_job_end(j);
        return;
    }
    j->v *= sign;
    char err[200];
    if (resp_tsopts_parse(c->argv + 3, c->argc - 3, RESP_OPTS_INCR, &j->o, err, sizeof err)) {
        resp_errorf(&c->out, "ERR %s", err);
        rresp_job_end(j);
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

void rresp_cmd_incrby(rconn_t *c)
{
    cmd_incr(c, 1);
}

void rresp_cmd_decrby(rconn_t *c)
{
    cmd_incr(c, -1);
}
