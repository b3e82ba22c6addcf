/*
 * strata migrate --from URL --match SELECTOR --start T [--end T] — copy a
 * Prometheus or VictoriaMetrics server's samples into Strata.
 *
 * The range [start, end] is cut into --slice long slices (the last one
 * shorter); --parallel workers take slices in order. Per slice a worker
 *
 *   1. reads the source: Prometheus by remote read (POST URL/api/v1/read,
 *      a snappy ReadRequest for [slice start, slice end - 1 ms], the sampled
 *      ReadResponse decoded by rread.c and written as export-format JSON lines
 *      by export_json_line), VictoriaMetrics by GET URL/api/v1/export (JSON
 *      lines as they come); at most 256 MiB per slice (else: a smaller --slice).
 *      Prometheus' staleness markers (a NaN with a payload JSON cannot carry)
 *      are left out and counted: through JSON they would turn into NaN
 *      samples; without them a series that ended stays visible for the
 *      lookback, as it does for any data loaded without markers;
 *   2. posts those lines to the Strata router's POST /api/v1/import through
 *      cli_load (batches, 429/5xx retries with Retry-After, 400s reported).
 *
 * Slices end 1 ms before the next starts; the last one includes --end. A
 * failed slice does not stop the others; the ranges not copied (failed,
 * or not reached after an interrupt; adjacent ones merged) are listed at the
 * end as "--start A --end B" to run again (writes are idempotent). --kind is found out when absent:
 * a source whose /api/v1/export answers 200 is VictoriaMetrics, else one whose
 * /api/v1/status/buildinfo answers 200 is Prometheus.
 *
 * --verify: once every slice is in, the workers go over the slices again
 * and count samples per series (labels, sorted) in the source and in Strata
 * (GET /api/v1/export); the summary lists the series whose counts differ.
 *
 * Exit codes: 0 ok (and verified), 1 a failure, a slice not migrated,
 * rejected lines or a verify mismatch, 2 usage, 130 interrupted.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_load.h"
#include "export_json.h"
#include "rread.h"
#include "selector.h"
#include "st_err.h"

static const char *CMD = "migrate";

#define PROM_STALE_NAN 0x7ff0000000000002ULL /* Prometheus' staleness marker */
#define MAX_MISMATCHES_SHOWN 50
#define SLICE_TOO_BIG "the answer is over 256 MiB (use a shorter --slice)"

typedef struct migrate_opts {
    cli_common_t common;
    const char *from, *kind, *match;
    double start, end, slice, progress_every;
    bool has_start, has_end;
    uint64_t parallel, batch_lines, retries;
    bool verify, quiet;
} migrate_opts_t;

typedef enum { KIND_PROM, KIND_VM } kind_t;

typedef struct slice {
    int64_t start_ms, end_ms; /* inclusive */
    bool done;                /* copied (migrate pass) */
    bool verify_fail;         /* could not be counted (verify pass) */
} slice_t;

typedef struct mctx {
    const migrate_opts_t *o;
    kind_t kind;
    httpc_url_t src_url, dst_url;
    selector_t sel;
    slice_t *slices;
    size_t nslices;
    atomic_size_t next; /* next slice to take */
    bool verifying;
    /* counters (under mu) */
    pthread_mutex_t mu;
    size_t slices_done;
    uint64_t series, samples, rejected, retries; /* series: export lines (a series per slice) */
    uint64_t stale;                  /* Prometheus staleness markers left out (migrate pass) */
    json_t *src_counts, *dst_counts; /* verify: series key -> samples */
    double t0;
    /* progress */
    pthread_mutex_t out_mu;
    pthread_cond_t stop_cv;
    bool stop, tty, shown;
} mctx_t;

/* ---- output ---------------------------------------------------------------------------------- */

static void say(mctx_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(mctx_t *m, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&m->out_mu);
    if (m->tty && m->shown) {
        fputs("\r\033[K", stderr);
        m->shown = false;
    }
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    pthread_mutex_unlock(&m->out_mu);
}

static void show_progress(mctx_t *m)
{
    pthread_mutex_lock(&m->mu);
    size_t done = m->slices_done;
    uint64_t series = m->series, samples = m->samples;
    bool verifying = m->verifying;
    pthread_mutex_unlock(&m->mu);
    double el = httpc_now() - m->t0;
    char line[256], sr[32], sm[32], rt[32], eta[32];
    cli_fmt_count(sr, sizeof(sr), (double)series);
    cli_fmt_count(sm, sizeof(sm), (double)samples);
    cli_fmt_count(rt, sizeof(rt), el > 0 ? (double)samples / el : 0);
    cli_fmt_eta(eta, sizeof(eta), done ? el * (double)(m->nslices - done) / (double)done : -1.0);
    if (m->tty)
        snprintf(line, sizeof(line),
                 "%s %zu/%zu slices  %s lines  %s samples  %s samples/s  ETA %s",
                 verifying ? "verify" : "migrate", done, m->nslices, sr, sm, rt, eta);
    else
        snprintf(line, sizeof(line),
                 "progress: %s slices=%zu/%zu lines=%" PRIu64 " samples=%" PRIu64
                 " rate=%.0f samples/s elapsed=%.1fs",
                 verifying ? "verify" : "migrate", done, m->nslices, series, samples,
                 el > 0 ? (double)samples / el : 0, el);
    pthread_mutex_lock(&m->out_mu);
    if (m->tty) {
        fprintf(stderr, "\r%s\033[K", line);
        m->shown = true;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
    pthread_mutex_unlock(&m->out_mu);
}

static void *progress_main(void *arg)
{
    mctx_t *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t =
            (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + (m->tty ? 0.2 : m->o->progress_every);
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&m->stop_cv, &m->mu, &ts);
        if (m->stop)
            break;
        pthread_mutex_unlock(&m->mu);
        show_progress(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ---- reading the source ---------------------------------------------------------------------- */

static void slice_name(const slice_t *s, char *out, size_t cap)
{
    char a[40], b[40];
    cli_fmt_time(a, sizeof(a), (double)s->start_ms / 1000.0);
    cli_fmt_time(b, sizeof(b), (double)s->end_ms / 1000.0);
    snprintf(out, cap, "slice %s..%s", a, b);
}

/* "PATH?match[]=SEL&start=S&end=E" (seconds with ms) into t. */
static int export_target(st_buf_t *t, const char *path, const char *match, const slice_t *s)
{
    char num[96];
    st_buf_reset(t);
    int rc = st_buf_append(t, path, strlen(path));
    rc = rc ? rc : ST_BUF_LIT(t, "?match%5B%5D=");
    rc = rc ? rc : httpc_query_escape(t, match);
    snprintf(num, sizeof(num), "&start=%.3f&end=%.3f", (double)s->start_ms / 1000.0,
             (double)s->end_ms / 1000.0);
    rc = rc ? rc : st_buf_append(t, num, strlen(num));
    return rc ? rc : st_buf_put_u8(t, '\0');
}

/* An error body, shortened for a message. */
static void body_msg(const st_buf_t *b, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len && n + 1 < cap && n < 300; i++)
        out[n++] = b->data[i] == '\n' || b->data[i] == '\r' ? ' ' : (char)b->data[i];
    out[n] = '\0';
}

/* GET an export (VictoriaMetrics or Strata) of slice s into lines. */
static int get_export(httpc_conn_t *c, const char *match, const slice_t *s, st_buf_t *lines,
                      char *err, size_t errlen)
{
    st_buf_t t;
    st_buf_init(&t);
    httpc_resp_t resp;
    int rc = export_target(&t, "/api/v1/export", match, s);
    if (rc == 0)
        rc = cli_get(c, (const char *)t.data, &resp, lines);
    st_buf_deinit(&t);
    if (rc < 0) {
        snprintf(err, errlen, "%s", *httpc_conn_errmsg(c) ? httpc_conn_errmsg(c) : st_strerror(rc));
        return rc;
    }
    if (resp.status != 200) {
        char msg[320];
        body_msg(lines, msg, sizeof(msg));
        snprintf(err, errlen, "export: HTTP %d %s: %s", resp.status, resp.reason, msg);
        return ST_EIO;
    }
    return 0;
}

typedef struct rrout {
    st_buf_t *lines;
    uint64_t stale; /* staleness markers left out */
    st_label_t *labels;
    size_t labels_cap;
    int64_t *ts;
    double *vs;
    size_t cap;
} rrout_t;

/* One remote-read series -> one export-format line. */
static int rr_series(void *ud, const rread_series_t *s)
{
    rrout_t *o = ud;
    if (s->nsamples == 0)
        return 0;
    if (s->nlabels > o->labels_cap) {
        st_label_t *nl = realloc(o->labels, s->nlabels * sizeof(*nl));
        if (nl == NULL)
            return ST_ENOMEM;
        o->labels = nl;
        o->labels_cap = s->nlabels;
    }
    for (size_t i = 0; i < s->nlabels; i++)
        o->labels[i] =
            (st_label_t){s->labels[i].name, s->labels[i].value, (uint32_t)s->labels[i].name_len,
                         (uint32_t)s->labels[i].value_len};
    if (s->nsamples > o->cap) {
        int64_t *nt = realloc(o->ts, s->nsamples * sizeof(*nt));
        if (nt)
            o->ts = nt;
        double *nv = realloc(o->vs, s->nsamples * sizeof(*nv));
        if (nv)
            o->vs = nv;
        if (nt == NULL || nv == NULL)
            return ST_ENOMEM;
        o->cap = s->nsamples;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nsamples; i++) {
        uint64_t bits;
        memcpy(&bits, &s->samples[i].v, sizeof(bits));
        if (bits == PROM_STALE_NAN) {
            o->stale++;
            continue;
        }
        o->ts[n] = s->samples[i].t_ms;
        o->vs[n++] = s->samples[i].v;
    }
    return n ? export_json_line(o->lines, o->labels, s->nlabels, o->ts, o->vs, n) : 0;
}

/* Prometheus remote read of slice s, as export-format lines. */
static int remote_read(mctx_t *m, httpc_conn_t *c, const slice_t *s, st_buf_t *lines, char *err,
                       size_t errlen)
{
    st_buf_t req, body, raw;
    st_buf_init(&req);
    st_buf_init(&body);
    st_buf_init(&raw);
    st_buf_reset(lines);
    httpc_resp_t resp;
    int rc = rread_encode_request(&raw, s->start_ms, s->end_ms, m->sel.m, m->sel.n);
    if (rc == 0)
        rc = rread_snappy_compress(&req, raw.data, raw.len);
    if (rc < 0) {
        snprintf(err, errlen, "%s", st_strerror(rc));
        goto out;
    }
    rc = httpc_request(c, "POST", "/api/v1/read",
                       "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                       "X-Prometheus-Remote-Read-Version: 0.1.0\r\n",
                       req.data, req.len, &resp, httpc_collect, &body);
    if (rc < 0) {
        snprintf(err, errlen, "remote read: %s",
                 rc == ST_ELIMIT         ? SLICE_TOO_BIG
                 : *httpc_conn_errmsg(c) ? httpc_conn_errmsg(c)
                                         : st_strerror(rc));
        goto out;
    }
    if (resp.status != 200) {
        char msg[320];
        body_msg(&body, msg, sizeof(msg));
        snprintf(err, errlen, "remote read: HTTP %d %s: %s", resp.status, resp.reason, msg);
        rc = ST_EIO;
        goto out;
    }
    rc = rread_snappy_uncompress(&raw, body.data, body.len, RREAD_MAX_BODY);
    if (rc < 0) {
        snprintf(err, errlen, "remote read: response is not a snappy block (%s)", st_strerror(rc));
        goto out;
    }
    rrout_t o = {.lines = lines};
    char derr[200];
    rc = rread_decode_response(raw.data, raw.len, rr_series, &o, derr, sizeof(derr));
    if (rc < 0)
        snprintf(err, errlen, "remote read: bad ReadResponse: %s", *derr ? derr : st_strerror(rc));
    if (!m->verifying) {
        pthread_mutex_lock(&m->mu);
        m->stale += o.stale;
        pthread_mutex_unlock(&m->mu);
    }
    free(o.labels);
    free(o.ts);
    free(o.vs);
out:
    st_buf_deinit(&req);
    st_buf_deinit(&body);
    st_buf_deinit(&raw);
    return rc;
}

/*
 * VictoriaMetrics exports infinities as +Inf and -Inf; Strata's import reads
 * the JSON5 spellings its own export writes. Rewrite them inside each line's
 * "values" array (numbers only there, so a token match is exact).
 */
static int vm_infinities(st_buf_t *lines, st_buf_t *tmp)
{
    static const char key[] = "\"values\":[";
    const char *p = (const char *)lines->data, *end = p + lines->len;
    if (lines->len == 0 || memmem(p, lines->len, "Inf", 3) == NULL)
        return 0;
    st_buf_reset(tmp);
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl + 1 : end;
        const char *v = memmem(p, (size_t)(le - p), key, sizeof(key) - 1);
        const char *ve = v ? memchr(v, ']', (size_t)(le - v)) : NULL;
        if (ve == NULL) {
            rc = st_buf_append(tmp, p, (size_t)(le - p));
            p = le;
            continue;
        }
        const char *q = v + sizeof(key) - 1;
        rc = st_buf_append(tmp, p, (size_t)(q - p));
        while (q < ve && rc == 0) {
            size_t n = strcspn(q, ",]");
            if (n == 4 && (memcmp(q, "+Inf", 4) == 0 || memcmp(q, "-Inf", 4) == 0))
                rc = q[0] == '+' ? ST_BUF_LIT(tmp, "Infinity") : ST_BUF_LIT(tmp, "-Infinity");
            else
                rc = st_buf_append(tmp, q, n);
            q += n;
            if (q < ve && rc == 0)
                rc = st_buf_put_u8(tmp, (uint8_t)*q++);
        }
        if (rc == 0)
            rc = st_buf_append(tmp, ve, (size_t)(le - ve));
        p = le;
    }
    if (rc == 0) {
        st_buf_t t = *lines;
        *lines = *tmp;
        *tmp = t;
    }
    return rc;
}

static int read_source(mctx_t *m, httpc_conn_t *c, const slice_t *s, st_buf_t *lines, char *err,
                       size_t errlen)
{
    if (m->kind == KIND_PROM)
        return remote_read(m, c, s, lines, err, errlen);
    int rc = get_export(c, m->o->match, s, lines, err, errlen);
    if (rc == 0) {
        st_buf_t tmp;
        st_buf_init(&tmp);
        if ((rc = vm_infinities(lines, &tmp)) < 0)
            snprintf(err, errlen, "%s", st_strerror(rc));
        st_buf_deinit(&tmp);
    }
    return rc;
}

/* ---- writing to Strata ------------------------------------------------------------------------
 */

typedef struct memsrc {
    const char *p, *end;
} memsrc_t;

static ssize_t mem_next(void *src, char **buf, size_t *cap)
{
    memsrc_t *ms = src;
    if (ms->p >= ms->end)
        return -1;
    const char *nl = memchr(ms->p, '\n', (size_t)(ms->end - ms->p));
    size_t n = nl ? (size_t)(nl - ms->p) + 1 : (size_t)(ms->end - ms->p);
    if (*buf == NULL || *cap < n + 1) {
        char *nb = realloc(*buf, n + 1);
        if (nb == NULL) {
            errno = ENOMEM;
            return -2;
        }
        *buf = nb;
        *cap = n + 1;
    }
    memcpy(*buf, ms->p, n);
    (*buf)[n] = '\0';
    ms->p += n;
    return (ssize_t)n;
}

static uint64_t count_json(const char *s, size_t n, const void *arg)
{
    (void)arg;
    return cli_json_line_samples(s, n);
}

static int import_lines(mctx_t *m, const char *name, const st_buf_t *lines, char *err,
                        size_t errlen)
{
    memsrc_t src = {(const char *)lines->data, (const char *)lines->data + lines->len};
    load_cfg_t cfg = {
        .file = name, /* "slice A..B:1-3: reason" */
        .url = m->dst_url,
        .target = "/api/v1/import",
        .headers = "Content-Type: application/json\r\n",
        .retries = (int)m->o->retries,
        .max_errors = 20,
        .io_timeout_ms = (int)(m->o->common.timeout * 1000),
        .conns = 1,
        .batch_lines = m->o->batch_lines,
        .batch_bytes = 8 << 20,
        .quiet = true,
        .count = count_json,
        .next = mem_next,
        .src = &src,
        .interrupt = &cli_interrupted,
    };
    load_result_t r;
    int rc = load_run(&cfg, &r);
    pthread_mutex_lock(&m->mu);
    m->series += r.lines;
    m->samples += r.samples;
    m->rejected += r.rejected;
    m->retries += r.retries;
    pthread_mutex_unlock(&m->mu);
    if (rc < 0 || r.aborted) {
        snprintf(err, errlen, "%s", r.fatal);
        return rc < 0 ? rc : ST_EIO;
    }
    return 0;
}

/* ---- verify -----------------------------------------------------------------------------------
 */

/* Add each line's samples to counts[series key]; returns the series seen or an error. */
static int count_lines(mctx_t *m, json_t *counts, const st_buf_t *lines, const char *what,
                       char *err, size_t errlen)
{
    const char *p = (const char *)lines->data, *end = p + lines->len;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0) {
            char jerr[160];
            json_t *doc = cli_json_parse(p, n, jerr, sizeof(jerr));
            json_t *metric = json_object_get(doc, "metric");
            char *key = metric ? json_dumps(metric, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
            if (key == NULL) {
                snprintf(err, errlen, "bad export line from %s: %s", what,
                         doc ? "no metric" : jerr);
                rc = ST_EPARSE;
            } else {
                json_int_t k = (json_int_t)json_array_size(json_object_get(doc, "timestamps"));
                pthread_mutex_lock(&m->mu);
                json_int_t had = json_integer_value(json_object_get(counts, key));
                json_object_set_new(counts, key, json_integer(had + k));
                if (counts == m->src_counts)
                    m->samples += (uint64_t)k;
                pthread_mutex_unlock(&m->mu);
            }
            free(key);
            json_decref(doc);
        }
        p += n + 1;
    }
    return rc;
}

/* ---- workers ----------------------------------------------------------------------------------
 */

static void *worker_main(void *arg)
{
    mctx_t *m = arg;
    httpc_conn_t *src = cli_common_conn(&m->o->common, &m->src_url);
    httpc_conn_t *dst = cli_common_conn(&m->o->common, &m->dst_url);
    st_buf_t lines;
    st_buf_init(&lines);
    size_t i;
    while (!atomic_load(&cli_interrupted) && (i = atomic_fetch_add(&m->next, 1)) < m->nslices) {
        slice_t *s = &m->slices[i];
        if (m->verifying && !s->done)
            continue;
        char name[128], err[700] = "";
        slice_name(s, name, sizeof(name));
        int rc = src && dst ? read_source(m, src, s, &lines, err, sizeof(err)) : ST_ENOMEM;
        bool named = false; /* err starts with the slice's name */
        if (rc == 0 && !m->verifying) {
            rc = import_lines(m, name, &lines, err, sizeof(err));
            named = rc < 0;
        }
        if (rc == 0 && m->verifying) {
            rc = count_lines(m, m->src_counts, &lines, "the source", err, sizeof(err));
            if (rc == 0)
                rc = get_export(dst, m->o->match, s, &lines, err, sizeof(err));
            if (rc == 0)
                rc = count_lines(m, m->dst_counts, &lines, "Strata", err, sizeof(err));
        }
        if (rc == 0 && !m->verifying)
            s->done = true;
        if (rc < 0 && m->verifying)
            s->verify_fail = true;
        if (rc < 0 && !atomic_load(&cli_interrupted)) {
            if (named && *err)
                say(m, "strata migrate: import: %s\n", err);
            else
                say(m, "strata migrate: %s: %s\n", name, *err ? err : st_strerror(rc));
        }
        pthread_mutex_lock(&m->mu);
        m->slices_done++;
        pthread_mutex_unlock(&m->mu);
    }
    st_buf_deinit(&lines);
    httpc_conn_destroy(src);
    httpc_conn_destroy(dst);
    return NULL;
}

/* Run the workers over every slice once (a pass). */
static int run_pass(mctx_t *m)
{
    atomic_store(&m->next, 0);
    m->slices_done = 0;
    m->t0 = httpc_now();
    size_t n = (size_t)m->o->parallel;
    pthread_t *thr = calloc(n, sizeof(*thr)), pthr;
    size_t started = 0;
    for (; thr && started < n; started++)
        if (pthread_create(&thr[started], NULL, worker_main, m) != 0)
            break;
    if (started == 0) {
        free(thr);
        return cli_fail(CMD, "cannot start threads");
    }
    m->stop = false;
    bool progress = !m->o->quiet && pthread_create(&pthr, NULL, progress_main, m) == 0;
    for (size_t i = 0; i < started; i++)
        pthread_join(thr[i], NULL);
    free(thr);
    if (progress) {
        pthread_mutex_lock(&m->mu);
        m->stop = true;
        pthread_cond_signal(&m->stop_cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(pthr, NULL);
        if (!m->tty)
            show_progress(m);
        pthread_mutex_lock(&m->out_mu);
        if (m->tty && m->shown)
            fputs("\r\033[K", stderr);
        m->shown = false;
        pthread_mutex_unlock(&m->out_mu);
    }
    return 0;
}

/* ---- the command --------------------------------------------------------------------------------
 */

/* --kind absent: VictoriaMetrics answers its export, Prometheus its buildinfo. */
static int detect_kind(mctx_t *m, char *err, size_t errlen)
{
    httpc_conn_t *c = cli_common_conn(&m->o->common, &m->src_url);
    if (c == NULL)
        return ST_ENOMEM;
    st_buf_t body;
    st_buf_init(&body);
    httpc_resp_t resp;
    int rc = cli_get(c,
                     "/api/v1/export?match%5B%5D=%7B__name__%3D%22strata_migrate_probe%22%7D"
                     "&start=0&end=1",
                     &resp, &body);
    if (rc == 0 && resp.status == 200) {
        m->kind = KIND_VM;
    } else if (rc == 0 && (rc = cli_get(c, "/api/v1/status/buildinfo", &resp, &body)) == 0 &&
               resp.status == 200) {
        m->kind = KIND_PROM;
    } else if (rc == 0) {
        snprintf(err, errlen,
                 "%s is neither VictoriaMetrics (/api/v1/export) nor Prometheus "
                 "(/api/v1/status/buildinfo answers HTTP %d); pass --kind",
                 m->o->from, resp.status);
        rc = ST_EINVAL;
    } else {
        snprintf(err, errlen, "%s: %s", m->o->from,
                 *httpc_conn_errmsg(c) ? httpc_conn_errmsg(c) : st_strerror(rc));
    }
    st_buf_deinit(&body);
    httpc_conn_destroy(c);
    return rc;
}

/* Print the verify summary; returns the number of mismatching series. */
static uint64_t verify_report(mctx_t *m)
{
    uint64_t mism = 0, src_total = 0, dst_total = 0, nseries = 0;
    const char *key;
    json_t *v;
    json_object_foreach(m->src_counts, key, v)
    {
        json_int_t a = json_integer_value(v);
        json_int_t b = json_integer_value(json_object_get(m->dst_counts, key));
        src_total += (uint64_t)a;
        nseries++;
        if (a != b && ++mism <= MAX_MISMATCHES_SHOWN)
            printf("  mismatch %s: source=%" JSON_INTEGER_FORMAT " strata=%" JSON_INTEGER_FORMAT
                   "\n",
                   key, a, b);
    }
    json_object_foreach(m->dst_counts, key, v)
    {
        dst_total += (uint64_t)json_integer_value(v);
        if (json_object_get(m->src_counts, key) == NULL) {
            nseries++;
            if (++mism <= MAX_MISMATCHES_SHOWN)
                printf("  mismatch %s: source=0 strata=%" JSON_INTEGER_FORMAT "\n", key,
                       json_integer_value(v));
        }
    }
    if (mism > MAX_MISMATCHES_SHOWN)
        printf("  ... and %" PRIu64 " more\n", mism - MAX_MISMATCHES_SHOWN);
    printf("strata migrate: verify: series=%" PRIu64 " source_samples=%" PRIu64
           " strata_samples=%" PRIu64 " mismatches=%" PRIu64 "%s\n",
           nseries, src_total, dst_total, mism, mism ? "" : " (ok)");
    return mism;
}

static int run_migrate(void *opts, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const migrate_opts_t *o = opts;
    if (o->from == NULL)
        return cli_usage_error(CMD, "missing --from URL");
    if (o->match == NULL)
        return cli_usage_error(CMD, "missing --match SELECTOR");
    if (!o->has_start)
        return cli_usage_error(CMD, "missing --start T");
    double end = o->has_end ? o->end : o->common.now;
    if (!(end > o->start))
        return cli_usage_error(CMD, "--end must be after --start");
    mctx_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return cli_fail(CMD, "out of memory");
    m->o = o;
    const char *shown;
    char err[600];
    int ret = cli_common_router(CMD, &o->common, &m->dst_url, &shown);
    if (ret != 0)
        goto out_free;
    if (httpc_url_parse(o->from, &m->src_url) < 0) {
        ret = cli_usage_error(CMD, "bad --from '%s' (want http://HOST:PORT)", o->from);
        goto out_free;
    }
    if (selector_parse(o->match, strlen(o->match), &m->sel, err, sizeof(err)) < 0) {
        ret = cli_usage_error(CMD, "bad --match '%s': %s", o->match, err);
        goto out_free;
    }
    if (o->kind)
        m->kind = strcmp(o->kind, "prometheus") == 0 ? KIND_PROM : KIND_VM;
    else if (detect_kind(m, err, sizeof(err)) < 0) {
        ret = cli_fail(CMD, "%s", err);
        goto out_sel;
    }
    int64_t s_ms = (int64_t)llround(o->start * 1000), e_ms = (int64_t)llround(end * 1000);
    int64_t step = (int64_t)llround(o->slice * 1000);
    if (step < 1)
        step = 1;
    m->nslices = (size_t)((e_ms - s_ms + step - 1) / step);
    if (m->nslices == 0)
        m->nslices = 1;
    if (m->nslices > 10000000) {
        ret = cli_usage_error(CMD, "%zu slices: use a longer --slice", m->nslices);
        goto out_sel;
    }
    m->slices = calloc(m->nslices, sizeof(*m->slices));
    if (m->slices == NULL) {
        ret = cli_fail(CMD, "out of memory");
        goto out_sel;
    }
    for (size_t i = 0; i < m->nslices; i++) {
        m->slices[i].start_ms = s_ms + (int64_t)i * step;
        m->slices[i].end_ms = i + 1 == m->nslices ? e_ms : s_ms + (int64_t)(i + 1) * step - 1;
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->out_mu, NULL);
    pthread_cond_init(&m->stop_cv, NULL);
    m->tty = isatty(STDERR_FILENO);
    cli_catch_interrupt();

    const char *kind_name = m->kind == KIND_PROM ? "prometheus" : "victoriametrics";
    double t0 = httpc_now();
    if ((ret = run_pass(m)) != 0)
        goto out_sync;
    double el = httpc_now() - t0;
    size_t failed = 0;
    for (size_t i = 0; i < m->nslices; i++)
        failed += !m->slices[i].done;
    bool interrupted = atomic_load(&cli_interrupted);
    printf("strata migrate: kind=%s slices=%zu failed=%zu lines=%" PRIu64 " samples=%" PRIu64
           " seconds=%.2f samples_per_s=%.0f rejected=%" PRIu64 " retries=%" PRIu64
           " stale_markers_skipped=%" PRIu64 "%s\n",
           kind_name, m->nslices, failed, m->series, m->samples, el,
           el > 0 ? (double)m->samples / el : 0, m->rejected, m->retries, m->stale,
           interrupted ? " (interrupted)" : "");
    for (size_t i = 0, j; i < m->nslices; i = j) {
        for (j = i + 1; j < m->nslices && m->slices[j].done == m->slices[i].done; j++)
            ;
        if (m->slices[i].done)
            continue;
        char a[40], b[40]; /* a run of slices not copied, as one range */
        cli_fmt_time(a, sizeof(a), (double)m->slices[i].start_ms / 1000.0);
        cli_fmt_time(b, sizeof(b), (double)m->slices[j - 1].end_ms / 1000.0);
        printf("  not migrated: --start %s --end %s\n", a, b);
    }
    fflush(stdout);
    if (interrupted) {
        ret = CLI_EXIT_INTERRUPTED;
        fprintf(stderr,
                "strata migrate: interrupted; %zu of %zu slices copied, the ranges above are "
                "not\n",
                m->nslices - failed, m->nslices);
        goto out_sync;
    }
    if (o->verify) {
        m->verifying = true;
        m->samples = m->series = 0;
        m->src_counts = json_object();
        m->dst_counts = json_object();
        if ((ret = run_pass(m)) != 0)
            goto out_sync;
        size_t vfailed = 0;
        for (size_t i = 0; i < m->nslices; i++)
            vfailed += m->slices[i].verify_fail;
        uint64_t mism = verify_report(m);
        fflush(stdout);
        if (atomic_load(&cli_interrupted)) {
            ret = CLI_EXIT_INTERRUPTED;
            goto out_sync;
        }
        if (vfailed) {
            ret = cli_fail(CMD, "verify could not read %zu slice%s", vfailed,
                           vfailed == 1 ? "" : "s");
            goto out_sync;
        }
        if (mism) {
            ret = cli_fail(CMD, "verify: %" PRIu64 " series differ", mism);
            goto out_sync;
        }
    }
    if (failed)
        ret = cli_fail(CMD, "%zu of %zu slices not migrated (listed above)", failed, m->nslices);
    else if (m->rejected)
        ret = cli_fail(CMD, "%" PRIu64 " series lines rejected by the router", m->rejected);
out_sync:
    json_decref(m->src_counts);
    json_decref(m->dst_counts);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->out_mu);
    pthread_cond_destroy(&m->stop_cv);
    free(m->slices);
out_sel:
    selector_free(&m->sel);
out_free:
    free(m);
    return ret;
}

static const cli_opt_t MIGRATE_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    {.name = "from",
     .kind = CLI_STR,
     .off = offsetof(migrate_opts_t, from),
     .label = "--from URL",
     .help = "the source server, http://HOST:PORT[/PREFIX] (required)"},
    CLI_OPT_CHOICE(migrate_opts_t, kind, "kind", "prometheus|victoriametrics",
                   " (prometheus|victoriametrics)", "--kind K",
                   "prometheus (remote read) or victoriametrics\n"
                   "(/api/v1/export); default: asked from the source"),
    {.name = "match",
     .kind = CLI_STR,
     .off = offsetof(migrate_opts_t, match),
     .label = "--match SELECTOR",
     .help = "series to copy, e.g. '{job=\"node\"}' (required)"},
    {.name = "start",
     .kind = CLI_TIME,
     .off = offsetof(migrate_opts_t, start),
     .given = CLI_GIVEN(migrate_opts_t, has_start),
     .label = "--start T, --end T",
     .help = "the range (--start required, --end default now): RFC 3339,\n"
             "unix seconds, 'now' or relative ('-1h', 'now-30m')"},
    {.name = "end",
     .kind = CLI_TIME,
     .off = offsetof(migrate_opts_t, end),
     .given = CLI_GIVEN(migrate_opts_t, has_end)},
    CLI_OPT_DURATION(migrate_opts_t, slice, "slice", 0.001, false, "--slice D",
                     "time slice read and written at once (default 1h)"),
    CLI_OPT_U64(migrate_opts_t, parallel, "parallel", 1, 64, " (1..64)", "--parallel N",
                "slices in flight (default 2)"),
    CLI_OPT_U64(migrate_opts_t, batch_lines, "batch", 1, 10000000, " (1..10000000 lines)",
                "--batch LINES", "series lines per import request (default 1000)"),
    CLI_OPT_U64(migrate_opts_t, retries, "retries", 1, 1000, " (1..1000)", "--retries N",
                "attempts per request on 429/5xx/connection errors (default 8)"),
    CLI_OPT_FLAG(migrate_opts_t, verify, "verify",
                 "then compare samples per series, source vs Strata"),
    CLI_OPT_DURATION(migrate_opts_t, progress_every, "progress-interval", 0.1, false,
                     "--progress-interval S",
                     "seconds between progress lines when stderr is not a TTY\n"
                     "(default 10; a TTY gets a live line)"),
    {.name = "quiet",
     .kind = CLI_FLAG,
     .off = offsetof(migrate_opts_t, quiet),
     .short_name = 'q',
     .label = "--quiet",
     .help = "no progress output"},
    CLI_OPT_TIMEOUT("per-request inactivity timeout"),
    CLI_OPT_END,
};

static const migrate_opts_t MIGRATE_DEFAULTS = {.common = CLI_COMMON_DEFAULTS,
                                                .slice = 3600,
                                                .parallel = 2,
                                                .batch_lines = 1000,
                                                .retries = 8,
                                                .progress_every = 10};

const cli_cmd_t cli_cmd_migrate = {
    .name = "migrate",
    .args = "",
    .summary = "copy a Prometheus or VictoriaMetrics server's data in",
    .synopsis = "migrate --from URL --match SELECTOR --start T [--end T] [--kind K]\n"
                "                      [--slice D] [--parallel N] [--verify]",
    .about = "Copy the series matching SELECTOR in [--start, --end] from a Prometheus server\n"
             "(remote read, POST URL/api/v1/read) or a VictoriaMetrics server\n"
             "(GET URL/api/v1/export) into Strata (POST /api/v1/import), a time slice at\n"
             "a time, N slices in parallel.\n",
    .footer = "\nPrints a summary on stdout; slices that failed are listed with the --start and\n"
              "--end that copy them again (writes are idempotent). --verify prints the series\n"
              "whose sample counts differ. Exit codes: 0 ok, 1 failure, a slice not\n"
              "migrated, rejected lines or a verify mismatch, 2 usage error, 130 interrupted.\n",
    .help_col = 26,
    .min_args = 0,
    .max_args = 0,
    .opts = MIGRATE_OPTS,
    .opts_size = sizeof(migrate_opts_t),
    .defaults = &MIGRATE_DEFAULTS,
    .run = run_migrate,
};
