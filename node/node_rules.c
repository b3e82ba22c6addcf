/*
 * node_rules — compaction rules on the node (see node_rules.h).
 *
 * One mutex guards the set, its compiled rules, the open buckets and the
 * closed buckets waiting to be written: evaluation runs on the thread pool
 * (after the coordinator's local write), installs run on the pool (they
 * write the file), the writer of closed buckets runs on the loop (woken by
 * a uv_async). With no rules the evaluation costs one atomic load.
 *
 * Candidate rules of a series: those whose source has __name__="X" for the
 * series' name X (binary search in a name index), plus those without a
 * name. A series named as some rule's destination is never evaluated (no
 * chains, even through a selector). Open buckets live in a hash table by
 * (rule id, series hash); a rule set change drops them all (they are
 * rebuilt from storage on the next sample).
 *
 * Retention entries of the set (rules.h) are not evaluated: each install
 * hands them to every local shard engine (engine_set_metric_retention),
 * which honours them on reads and in its retention pass.
 *
 * The file <data_dir>/rules holds the encoded set (rules.h: CRC
 * included), written to rules.tmp, fsynced, renamed, directory fsynced.
 */
#include "node_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node_repl.h"
#include "rules.h"
#include "st_err.h"
#include "st_file.h"
#include "st_log.h"
#include "st_time.h"
#include "strata.pb-c.h"
#include "wire.h"

#define STATE_BUCKETS (1u << 16)
#define PEER_RULES_TIMEOUT_MS 10000
#define EMIT_LOG_EVERY_MS 5000

typedef struct rstate {
    struct rstate *next;
    uint64_t rule_id, series;
    rule_acc_t acc;
    int reread; /* a sample came out of order: recompute the bucket from storage */
} rstate_t;

typedef struct byname {
    const char *name;
    uint32_t idx;
} byname_t;

struct node_rules {
    node_t *n;
    pthread_mutex_t mu;
    uint8_t *blob; /* the set, encoded */
    size_t blob_len;
    rules_t set;
    rule_compiled_t **c; /* [set.n] */
    byname_t *names;     /* sorted by name: rules whose source names a metric */
    size_t nnames;
    uint32_t *noname; /* the other rules */
    size_t nnoname;
    byname_t *dests; /* sorted: destination metric names */
    size_t ndests;
    atomic_size_t nrules;
    rstate_t **states; /* [STATE_BUCKETS] */
    size_t nstates;
    st_buf_t *pend; /* [shards]: SeriesSamples fields of closed buckets */
    uint64_t *pend_n;
    size_t pend_bytes;
    int64_t *ts_scratch;
    double *v_scratch;
    size_t scratch_cap;
    uv_async_t async;
    int async_open;
    int64_t last_log_ms;
    metric_counter_t *buckets, *emitted, *recomputed, *err_write, *err_late, *err_state, *err_read,
        *err_pending, *installs;
    metric_gauge_t *g_rules, *g_states, *g_retentions;
};

/* ---- the set: compile, index, install, persist ---- */

static int byname_cmp(const void *a, const void *b)
{
    return strcmp(((const byname_t *)a)->name, ((const byname_t *)b)->name);
}

static void states_clear(node_rules_t *r)
{
    for (size_t i = 0; i < STATE_BUCKETS; i++) {
        rstate_t *s = r->states[i];
        while (s) {
            rstate_t *nx = s->next;
            free(s);
            s = nx;
        }
        r->states[i] = NULL;
    }
    r->nstates = 0;
}

static void compiled_free(rule_compiled_t **c, size_t n)
{
    for (size_t i = 0; c && i < n; i++)
        rule_compiled_free(c[i]);
    free(c);
}

/* Hand the set's nret retention entries to every local shard engine as
 * its dynamic per-metric retentions (they replace the previous ones). */
static int retentions_install(node_rules_t *r, const rules_t *s, size_t nret)
{
    engine_metric_retention_t *v = calloc(nret ? nret : 1, sizeof *v);
    if (!v)
        return ST_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (rule_is_retention(&s->v[i]))
            v[k++] = (engine_metric_retention_t){s->v[i].source, s->v[i].bucket_ms};
    int rc = 0;
    uint32_t nsh = topo_shards(r->n->topo);
    for (uint32_t sh = 0; sh < nsh && !rc; sh++)
        if (r->n->engines && r->n->engines[sh])
            rc = engine_set_metric_retention(r->n->engines[sh], v, k);
    free(v);
    return rc;
}

/* Replace the set with the encoded one (r->mu held). */
static int install_locked(node_rules_t *r, const uint8_t *p, size_t len, char *err, size_t errlen)
{
    rules_t s;
    int rc = rules_decode(p, len, &s, err, errlen);
    rule_compiled_t **c = calloc(s.n ? s.n : 1, sizeof *c);
    byname_t *names = calloc(s.n ? s.n : 1, sizeof *names);
    byname_t *dests = calloc(s.n ? s.n : 1, sizeof *dests);
    uint32_t *noname = calloc(s.n ? s.n : 1, sizeof *noname);
    uint8_t *blob = malloc(len ? len : 1);
    if (!rc && (!c || !names || !dests || !noname || !blob))
        rc = ST_ENOMEM;
    size_t nn = 0, nx = 0, nd = 0, nret = 0;
    for (size_t i = 0; !rc && i < s.n; i++) {
        if (rule_is_retention(&s.v[i])) { /* for the engines, not evaluated here */
            nret++;
            continue;
        }
        if ((rc = rule_compile(&s.v[i], &c[i], err, errlen)))
            break;
        const char *sn = rule_compiled_source_name(c[i]);
        if (sn)
            names[nn++] = (byname_t){sn, (uint32_t)i};
        else
            noname[nx++] = (uint32_t)i;
        dests[nd++] = (byname_t){rule_compiled_dest_name(c[i]), (uint32_t)i};
    }
    if (!rc)
        rc = retentions_install(r, &s, nret);
    if (rc) {
        compiled_free(c, s.n);
        free(names);
        free(dests);
        free(noname);
        free(blob);
        rules_free(&s);
        return rc;
    }
    qsort(names, nn, sizeof *names, byname_cmp);
    qsort(dests, nd, sizeof *dests, byname_cmp);
    memcpy(blob, p, len);
    compiled_free(r->c, r->set.n);
    free(r->names);
    free(r->dests);
    free(r->noname);
    free(r->blob);
    rules_free(&r->set);
    r->set = s;
    r->c = c;
    r->names = names;
    r->nnames = nn;
    r->noname = noname;
    r->nnoname = nx;
    r->dests = dests;
    r->ndests = nd;
    r->blob = blob;
    r->blob_len = len;
    states_clear(r);
    atomic_store(&r->nrules, s.n - nret);
    metric_gauge_set(r->g_rules, (double)(s.n - nret));
    metric_gauge_set(r->g_retentions, (double)nret);
    metric_gauge_set(r->g_states, 0);
    return 0;
}

static int persist(node_rules_t *r, const uint8_t *p, size_t len)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/rules", r->n->data_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ST_EIO;
    int rc = st_write_all(fd, p, len) || fsync(fd) != 0 ? ST_EIO : 0;
    if (close(fd) != 0)
        rc = ST_EIO;
    if (!rc && rename(tmp, path) != 0)
        rc = ST_EIO;
    if (!rc && st_fsync_dir(r->n->data_dir) != 0)
        rc = ST_EIO;
    if (rc)
        unlink(tmp);
    return rc;
}

/* Install p when it is newer than the set held, and persist it (thread
 * pool: disk). 1 when installed, 0 when not newer, or ST_E*. */
static int offer(node_rules_t *r, const uint8_t *p, size_t len, char *err, size_t errlen)
{
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    if (rules_blob_newer(p, len, r->blob, r->blob_len)) {
        rc = install_locked(r, p, len, err, errlen);
        if (!rc && persist(r, p, len) != 0) {
            snprintf(err, errlen, "cannot write %s/rules: %s", r->n->data_dir, strerror(errno));
            st_error("cannot persist the compaction rules", "err=\"%s\"", err);
            rc = ST_EIO; /* installed in memory; a restart asks the peers again */
        }
        if (!rc) {
            rc = 1;
            metric_counter_inc(r->installs);
            st_info("compaction rules installed", "version=%llu rules=%zu",
                    (unsigned long long)r->set.version, r->set.n);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- evaluation ---- */

/* Queue a closed bucket for the destination (mu held). */
static void emit(node_rules_t *r, const rule_compiled_t *c, const st_label_t *l, size_t nl,
                 int64_t ts, double v)
{
    st_label_t d[ST_LABELS_MAX];
    size_t nd = rule_compiled_dest(c, l, nl, d, ST_LABELS_MAX);
    if (!nd) {
        metric_counter_inc(r->err_write);
        return;
    }
    if (r->pend_bytes > NODE_RULES_PENDING_MAX) {
        metric_counter_inc(r->err_pending);
        return;
    }
    uint32_t shard = topo_shard_of_labels(r->n->topo, d, nd);
    st_buf_t *b = &r->pend[shard];
    size_t before = b->len;
    if (wire_put_series(b, WIRE_WRITE_REQUEST_SERIES, d, nd, &ts, &v, 1) != 0) {
        b->len = before;
        metric_counter_inc(r->err_pending);
        return;
    }
    r->pend_bytes += b->len - before;
    r->pend_n[shard]++;
}

/* Copies of the label set as = matchers (NUL-terminated, in arena). */
static int exact_matchers(const st_label_t *l, size_t nl, st_matcher_t *m, char **arena)
{
    size_t need = 0;
    for (size_t i = 0; i < nl; i++)
        need += l[i].name_len + l[i].value_len + 2;
    char *a = malloc(need ? need : 1), *p = a;
    if (!a)
        return ST_ENOMEM;
    for (size_t i = 0; i < nl; i++) {
        m[i].type = ST_MATCH_EQ;
        m[i].name = p;
        memcpy(p, l[i].name, l[i].name_len);
        p += l[i].name_len;
        *p++ = '\0';
        m[i].value = p;
        memcpy(p, l[i].value, l[i].value_len);
        p += l[i].value_len;
        *p++ = '\0';
    }
    *arena = a;
    return 0;
}

/* The stored samples of exactly series l in [from, to] into acc (split at
 * `split`: samples before it go to prev, if given). 0 or ST_E*. */
static int read_stored(node_rules_t *r, uint32_t shard, const st_label_t *l, size_t nl,
                       int64_t from, int64_t to, int64_t split, rule_acc_t *prev, rule_acc_t *acc)
{
    engine_t *e = shard < topo_shards(r->n->topo) ? r->n->engines[shard] : NULL;
    if (!e || to < from)
        return e ? 0 : ST_EINVAL;
    st_matcher_t m[ST_LABELS_MAX];
    char *arena = NULL;
    int rc = exact_matchers(l, nl, m, &arena);
    engine_iter_t *it = NULL;
    if (!rc)
        rc = engine_query(e, m, nl, from, to, &it);
    const st_label_t *gl;
    size_t gn, ns;
    const int64_t *ts;
    const double *v;
    while (!rc && (rc = engine_iter_next(it, &gl, &gn, &ts, &v, &ns)) == 1) {
        rc = 0;
        if (st_labels_cmp(gl, gn, l, nl) != 0)
            continue;
        for (size_t i = 0; i < ns; i++)
            rule_acc_add(prev && ts[i] < split ? prev : acc, ts[i], v[i]);
        break;
    }
    if (rc == 1)
        rc = 0;
    if (it)
        engine_iter_destroy(it);
    free(arena);
    return rc < 0 ? rc : 0;
}

static rstate_t *state_get(node_rules_t *r, uint64_t rule_id, uint64_t series, int *created)
{
    size_t h = (size_t)((series ^ (rule_id * 0x9E3779B97F4A7C15ull)) & (STATE_BUCKETS - 1));
    for (rstate_t *s = r->states[h]; s; s = s->next)
        if (s->rule_id == rule_id && s->series == series) {
            *created = 0;
            return s;
        }
    if (r->nstates >= NODE_RULES_STATES_MAX) {
        metric_counter_inc(r->err_state);
        return NULL;
    }
    rstate_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->rule_id = rule_id;
    s->series = series;
    s->next = r->states[h];
    r->states[h] = s;
    r->nstates++;
    *created = 1;
    return s;
}

/* Close the open bucket of s: its value to the destination. */
static void close_bucket(node_rules_t *r, rule_compiled_t *c, uint32_t shard, const st_label_t *l,
                         size_t nl, rstate_t *s)
{
    const rule_t *ru = rule_compiled_rule(c);
    if (s->reread) {
        rule_acc_t a;
        rule_acc_reset(&a, s->acc.start_ms);
        if (read_stored(r, shard, l, nl, a.start_ms, a.start_ms + ru->bucket_ms - 1, 0, NULL, &a) ==
            0)
            s->acc = a;
        else
            metric_counter_inc(r->err_read);
        s->reread = 0;
    }
    if (s->acc.n)
        emit(r, c, l, nl, s->acc.start_ms, rule_acc_value(&s->acc, ru->agg, ru->bucket_ms));
}

/* Closed bucket b again from the stored samples: written again. */
static int recompute(node_rules_t *r, rule_compiled_t *c, uint32_t shard, const st_label_t *l,
                     size_t nl, int64_t b)
{
    const rule_t *ru = rule_compiled_rule(c);
    rule_acc_t a;
    rule_acc_reset(&a, b);
    if (read_stored(r, shard, l, nl, b, b + ru->bucket_ms - 1, 0, NULL, &a) != 0) {
        metric_counter_inc(r->err_late);
        return -1;
    }
    metric_counter_inc(r->recomputed);
    if (a.n)
        emit(r, c, l, nl, b, rule_acc_value(&a, ru->agg, ru->bucket_ms));
    return 0;
}

static void eval_series(node_rules_t *r, rule_compiled_t *c, uint32_t shard, const st_label_t *l,
                        size_t nl, uint64_t series, const int64_t *ts, const double *v, size_t ns)
{
    const rule_t *ru = rule_compiled_rule(c);
    int created;
    rstate_t *s = state_get(r, ru->id, series, &created);
    if (!s || !ns)
        return;
    if (created) { /* rebuild: the previous bucket again, the open one so far */
        int64_t b = rule_bucket_start(ts[0], ru->bucket_ms, ru->align_ms);
        rule_acc_t prev;
        rule_acc_reset(&prev, b - ru->bucket_ms);
        rule_acc_reset(&s->acc, b);
        if (read_stored(r, shard, l, nl, b - ru->bucket_ms, ts[0] - 1, b, &prev, &s->acc) != 0)
            metric_counter_inc(r->err_read);
        if (prev.n)
            emit(r, c, l, nl, prev.start_ms, rule_acc_value(&prev, ru->agg, ru->bucket_ms));
    }
    int64_t redone = INT64_MIN; /* the closed bucket last recomputed for this batch */
    for (size_t i = 0; i < ns; i++) {
        int64_t b = rule_bucket_start(ts[i], ru->bucket_ms, ru->align_ms);
        if (b < s->acc.start_ms) {
            /* a late sample (stored already): its closed bucket is
             * recomputed from storage and written again */
            if (b != redone && recompute(r, c, shard, l, nl, b) == 0)
                redone = b;
            continue;
        }
        if (b > s->acc.start_ms) {
            close_bucket(r, c, shard, l, nl, s);
            rule_acc_reset(&s->acc, b);
        }
        if (s->acc.n && ts[i] <= s->acc.last_ts) {
            s->reread = 1; /* a duplicate or an earlier sample inside the open bucket */
            continue;
        }
        rule_acc_add(&s->acc, ts[i], v[i]);
    }
}

static int name_of(const st_label_t *l, size_t nl, const char **name, size_t *len)
{
    int i = st_labels_find(l, nl, ST_METRIC_LABEL);
    if (i < 0)
        return 0;
    *name = l[i].value;
    *len = l[i].value_len;
    return 1;
}

/* strcmp of NUL-terminated s with the bytes (name, len). */
static int cmp_name(const char *s, const char *name, size_t len)
{
    int c = strncmp(s, name, len);
    return c ? c : s[len] != '\0';
}

/* First index in a sorted byname array whose name is >= (name, len). */
static size_t lower(const byname_t *a, size_t n, const char *name, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_name(a[mid].name, name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int name_eq(const char *s, const char *name, size_t len)
{
    return cmp_name(s, name, len) == 0;
}

static int grow_scratch(node_rules_t *r, size_t n)
{
    if (n <= r->scratch_cap)
        return 0;
    int64_t *t = realloc(r->ts_scratch, n * sizeof *t);
    if (t)
        r->ts_scratch = t;
    double *v = realloc(r->v_scratch, n * sizeof *v);
    if (v)
        r->v_scratch = v;
    if (!t || !v)
        return ST_ENOMEM;
    r->scratch_cap = n;
    return 0;
}

/* Every rule that matches series s (shard) sees its samples. */
static void eval_wire_series(node_rules_t *r, uint32_t shard, const wire_series_t *s)
{
    const char *name = "";
    size_t len = 0;
    int named = name_of(s->labels, s->nlabels, &name, &len);
    if (named) { /* a destination is never a source */
        size_t k = lower(r->dests, r->ndests, name, len);
        if (k < r->ndests && name_eq(r->dests[k].name, name, len))
            return;
    }
    size_t k = named ? lower(r->names, r->nnames, name, len) : r->nnames;
    int have = 0;
    size_t ns = 0;
    uint64_t h = 0;
    for (size_t pass = 0; pass < 2; pass++) {
        size_t cnt = pass ? r->nnoname : r->nnames - k;
        for (size_t j = 0; j < cnt; j++) {
            uint32_t idx;
            if (pass) {
                idx = r->noname[j];
            } else {
                if (!name_eq(r->names[k + j].name, name, len))
                    break;
                idx = r->names[k + j].idx;
            }
            rule_compiled_t *c = r->c[idx];
            if (!rule_compiled_match(c, s->labels, s->nlabels))
                continue;
            if (!have) {
                if (grow_scratch(r, s->nvals) ||
                    wire_series_samples(s, r->ts_scratch, r->v_scratch, r->scratch_cap, &ns))
                    return;
                h = st_labels_hash(s->labels, s->nlabels);
                have = 1;
            }
            eval_series(r, c, shard, s->labels, s->nlabels, h, r->ts_scratch, r->v_scratch, ns);
        }
    }
}

void node_rules_observe(node_t *n, const repl_entry_t *e, size_t ne, const node_shard_result_t *res)
{
    node_rules_t *r = n->rules;
    if (!r || atomic_load(&r->nrules) == 0)
        return;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < ne; i++) {
        if (res[i].code)
            continue;
        const uint8_t *q = e[i].msg, *end = e[i].msg + e[i].msg_len;
        wire_field_t f;
        uint32_t shard = e[i].shard;
        while (wire_next(&q, end, &f) == 1) {
            if (f.num == WIRE_WRITE_REQUEST_DELETE)
                break; /* a delete: nothing to aggregate */
            if (f.num != WIRE_WRITE_REQUEST_SERIES || f.type != WIRE_LEN)
                continue;
            wire_series_t s;
            if (wire_series_decode(f.data, f.len, &s) != 0)
                continue;
            if (!s.nlabels && s.ref && shard < topo_shards(n->topo) && n->engines[shard]) {
                /* a router's series by reference: the labels its key holds */
                engine_series_key_t k;
                if (engine_keys_resolve_refs(n->engines[shard], &s.ref, 1, &k) != 1 ||
                    wire_labels_decode(k.key, k.len, s.labels, ST_LABELS_MAX, &s.nlabels) < 0)
                    continue;
            }
            eval_wire_series(r, shard, &s);
        }
    }
    int wake_up = r->pend_bytes > 0 && r->async_open;
    metric_gauge_set(r->g_states, (double)r->nstates);
    pthread_mutex_unlock(&r->mu);
    if (wake_up)
        uv_async_send(&r->async);
}

/* ---- writing closed buckets (loop) ---- */

typedef struct emit_job {
    node_rules_t *r;
    uint64_t buckets;
} emit_job_t;

static void on_emitted(void *arg, int code, const char *msg)
{
    emit_job_t *j = arg;
    node_rules_t *r = j->r;
    if (code == 0) {
        metric_counter_add(r->buckets, j->buckets);
    } else {
        metric_counter_add(r->err_write, j->buckets);
        int64_t now = st_mono_ms();
        if (now - r->last_log_ms >= EMIT_LOG_EVERY_MS) {
            r->last_log_ms = now;
            st_warn("compaction rule buckets not written", "buckets=%llu err=%s detail=\"%s\"",
                    (unsigned long long)j->buckets, st_errname(code), msg ? msg : "");
        }
    }
    free(j);
}

static void wake(uv_async_t *a)
{
    node_rules_t *r = a->data;
    uint32_t nsh = topo_shards(r->n->topo);
    for (uint32_t sh = 0; sh < nsh; sh++) {
        pthread_mutex_lock(&r->mu);
        st_buf_t series = r->pend[sh];
        uint64_t nb = r->pend_n[sh];
        st_buf_init(&r->pend[sh]);
        r->pend_n[sh] = 0;
        r->pend_bytes -= series.len;
        pthread_mutex_unlock(&r->mu);
        if (!nb) {
            st_buf_deinit(&series);
            continue;
        }
        st_buf_t wr, nw;
        st_buf_init(&wr);
        st_buf_init(&nw);
        emit_job_t *j = malloc(sizeof *j);
        int rc = !j || wire_put_varint_field(&wr, WIRE_WRITE_REQUEST_SHARD, sh) ||
                 st_buf_append(&wr, series.data, series.len) ||
                 repl_put_envelope(&nw, 0 /* cluster consistency */, 0) ||
                 repl_put_entry(&nw, wr.data, wr.len);
        if (rc) {
            free(j);
            metric_counter_add(r->err_write, nb);
        } else {
            *j = (emit_job_t){r, nb};
            metric_counter_add(r->emitted, nb);
            node_repl_submit(r->n->repl, sh, nw.data, nw.len, on_emitted, j);
        }
        st_buf_deinit(&wr);
        st_buf_deinit(&nw);
        st_buf_deinit(&series);
    }
}

/* ---- RPC_RULES and peers ---- */

static int pack_response(node_rules_t *r, const Strata__RulesRequest *q, st_buf_t *out)
{
    pthread_mutex_lock(&r->mu);
    Strata__RulesResponse o = STRATA__RULES_RESPONSE__INIT;
    o.version = r->set.version;
    o.crc = rules_blob_crc(r->blob, r->blob_len);
    if (q->rules.len || q->have_version != o.version || q->have_crc != o.crc) {
        o.rules.data = r->blob;
        o.rules.len = r->blob_len;
    }
    size_t sz = strata__rules_response__get_packed_size(&o);
    int rc = st_buf_reserve(out, sz) ? ST_ENOMEM : 0;
    if (!rc)
        out->len = strata__rules_response__pack(&o, out->data);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int node_rules_rpc(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
                   size_t msglen)
{
    node_rules_t *r = n->rules;
    Strata__RulesRequest *q = strata__rules_request__unpack(NULL, len, payload);
    if (!q) {
        snprintf(msg, msglen, "malformed RulesRequest");
        return ST_EPROTO;
    }
    int rc = 0;
    if (q->rules.len) {
        rc = offer(r, q->rules.data, q->rules.len, msg, msglen);
        if (rc > 0)
            rc = 0;
    }
    if (!rc)
        rc = pack_response(r, q, out);
    strata__rules_request__free_unpacked(q, NULL);
    return rc;
}

typedef struct install_job {
    uv_work_t w;
    node_rules_t *r;
    uint8_t *blob;
    size_t len;
} install_job_t;

static void install_work(uv_work_t *w)
{
    install_job_t *j = w->data;
    char err[256];
    int rc = offer(j->r, j->blob, j->len, err, sizeof err);
    if (rc < 0)
        st_warn("a peer's compaction rules were refused", "err=\"%s\"", err);
}

static void install_after(uv_work_t *w, int status)
{
    install_job_t *j = w->data;
    (void)status;
    atomic_fetch_sub(&j->r->n->jobs, 1);
    free(j->blob);
    free(j);
}

static void on_peer_rules(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    node_rules_t *r = arg;
    if (status || type != RPC_RULES_RESP)
        return; /* the next connection tries again */
    Strata__RulesResponse *o = strata__rules_response__unpack(NULL, len, payload);
    if (!o)
        return;
    pthread_mutex_lock(&r->mu);
    int newer = rules_blob_newer(o->rules.data, o->rules.len, r->blob, r->blob_len);
    pthread_mutex_unlock(&r->mu);
    install_job_t *j = newer ? calloc(1, sizeof *j) : NULL;
    if (j && (j->blob = malloc(o->rules.len ? o->rules.len : 1))) {
        memcpy(j->blob, o->rules.data, o->rules.len);
        j->len = o->rules.len;
        j->r = r;
        j->w.data = j;
        atomic_fetch_add(&r->n->jobs, 1);
        if (uv_queue_work(r->n->loop, &j->w, install_work, install_after) != 0) {
            atomic_fetch_sub(&r->n->jobs, 1);
            free(j->blob);
            free(j);
        }
    } else {
        free(j);
    }
    strata__rules_response__free_unpacked(o, NULL);
}

void node_rules_peer_up(node_t *n, rpc_client_t *cli)
{
    node_rules_t *r = n->rules;
    if (!r || !r->async_open)
        return;
    st_buf_t b;
    st_buf_init(&b);
    pthread_mutex_lock(&r->mu);
    Strata__RulesRequest q = STRATA__RULES_REQUEST__INIT;
    q.rules.data = r->blob;
    q.rules.len = r->blob_len;
    size_t sz = strata__rules_request__get_packed_size(&q);
    int rc = st_buf_reserve(&b, sz) ? ST_ENOMEM : 0;
    if (!rc)
        b.len = strata__rules_request__pack(&q, b.data);
    pthread_mutex_unlock(&r->mu);
    if (!rc)
        rpc_client_call(cli, RPC_RULES, b.data, b.len, PEER_RULES_TIMEOUT_MS, on_peer_rules, r);
    st_buf_deinit(&b);
}

/* ---- lifecycle ---- */

static int load_file(node_rules_t *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/rules", r->n->data_dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0 : ST_EIO;
    st_buf_t b;
    st_buf_init(&b);
    char chunk[65536];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = st_buf_append(&b, chunk, got);
    fclose(f);
    char err[256] = "";
    if (!rc) {
        pthread_mutex_lock(&r->mu);
        rc = install_locked(r, b.data, b.len, err, sizeof err);
        pthread_mutex_unlock(&r->mu);
    }
    if (rc)
        st_error("the compaction rules file is damaged; waiting for a peer's copy",
                 "path=%s err=\"%s\"", path, err[0] ? err : st_strerror(rc));
    else if (r->set.n)
        st_info("compaction rules loaded", "version=%llu rules=%zu",
                (unsigned long long)r->set.version, r->set.n);
    st_buf_deinit(&b);
    return 0;
}

int node_rules_create(node_t *n, node_rules_t **out)
{
    *out = NULL;
    node_rules_t *r = calloc(1, sizeof *r);
    if (!r)
        return ST_ENOMEM;
    r->n = n;
    pthread_mutex_init(&r->mu, NULL);
    uint32_t nsh = topo_shards(n->topo);
    r->states = calloc(STATE_BUCKETS, sizeof *r->states);
    r->pend = calloc(nsh ? nsh : 1, sizeof *r->pend);
    r->pend_n = calloc(nsh ? nsh : 1, sizeof *r->pend_n);
    const char *eh = "Compaction rule problems: bucket writes that failed (write), samples "
                     "older than the open bucket whose bucket could not be recomputed (late), "
                     "open buckets over the limit (state), "
                     "reads of stored samples that failed (read), closed buckets dropped "
                     "because too many wait (pending).";
    metrics_t *m = n->metrics;
    r->buckets =
        metrics_counter(m, "strata_node_rule_buckets_written_total",
                        "Closed compaction rule buckets written to their destination.", NULL);
    r->emitted = metrics_counter(m, "strata_node_rule_buckets_closed_total",
                                 "Compaction rule buckets closed and sent to be written.", NULL);
    r->recomputed = metrics_counter(
        m, "strata_node_rule_buckets_recomputed_total",
        "Closed compaction rule buckets recomputed from storage for a late sample.", NULL);
    r->err_write = metrics_counter(m, "strata_node_rule_errors_total", eh, "reason", "write", NULL);
    r->err_late = metrics_counter(m, "strata_node_rule_errors_total", eh, "reason", "late", NULL);
    r->err_state = metrics_counter(m, "strata_node_rule_errors_total", eh, "reason", "state", NULL);
    r->err_read = metrics_counter(m, "strata_node_rule_errors_total", eh, "reason", "read", NULL);
    r->err_pending =
        metrics_counter(m, "strata_node_rule_errors_total", eh, "reason", "pending", NULL);
    r->installs = metrics_counter(m, "strata_node_rule_set_installs_total",
                                  "Newer compaction rule sets installed (router or peer).", NULL);
    r->g_rules = metrics_gauge(m, "strata_node_rules", "Compaction rules in the set held.", NULL);
    r->g_retentions = metrics_gauge(
        m, "strata_node_rule_retentions",
        "Per-key retentions (TS.CREATE/TS.ALTER RETENTION) in the rule set held.", NULL);
    r->g_states = metrics_gauge(m, "strata_node_rule_open_buckets",
                                "Open compaction rule buckets (rule x series) in memory.", NULL);
    rules_t empty;
    rules_init(&empty);
    st_buf_t b;
    st_buf_init(&b);
    char err[64];
    int rc = !r->states || !r->pend || !r->pend_n || !r->buckets || !r->err_pending ||
                     !r->g_states || !r->g_retentions || rules_encode(&empty, &b)
                 ? ST_ENOMEM
                 : 0;
    if (!rc) {
        pthread_mutex_lock(&r->mu);
        rc = install_locked(r, b.data, b.len, err, sizeof err);
        pthread_mutex_unlock(&r->mu);
    }
    st_buf_deinit(&b);
    if (!rc)
        rc = load_file(r);
    if (!rc && (rc = uv_async_init(n->loop, &r->async, wake)) == 0) {
        r->async.data = r;
        r->async_open = 1;
    }
    if (rc) {
        node_rules_destroy(r);
        return rc < 0 ? rc : ST_ENOMEM;
    }
    *out = r;
    return 0;
}

void node_rules_shutdown(node_rules_t *r)
{
    if (!r || !r->async_open)
        return;
    pthread_mutex_lock(&r->mu);
    r->async_open = 0;
    pthread_mutex_unlock(&r->mu);
    uv_close((uv_handle_t *)&r->async, NULL);
}

void node_rules_destroy(node_rules_t *r)
{
    if (!r)
        return;
    if (r->states)
        states_clear(r);
    free(r->states);
    for (uint32_t s = 0; r->pend && s < topo_shards(r->n->topo); s++)
        st_buf_deinit(&r->pend[s]);
    free(r->pend);
    free(r->pend_n);
    compiled_free(r->c, r->set.n);
    free(r->names);
    free(r->dests);
    free(r->noname);
    free(r->blob);
    free(r->ts_scratch);
    free(r->v_scratch);
    rules_free(&r->set);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
