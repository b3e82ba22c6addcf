/* cli_load — batched, retried, resumable POST of a line-oriented file. See cli_load.h. */
#include "cli_load.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gz.h"
#include "st_err.h"

typedef struct batch {
    char *data;
    size_t len;
    uint64_t first_line; /* 1-based file line of the first line */
    uint32_t nlines;
    uint64_t samples;
    uint64_t seq;    /* cut order, from 0 */
    load_mark_t end; /* offset and line after the batch */
} batch_t;

/* A batch answered before the mark reached it. */
typedef struct acked {
    bool done;
    load_mark_t end;
    uint64_t samples;
} acked_t;

typedef struct lctx {
    const load_cfg_t *cfg;
    /* queue */
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    batch_t **q;
    size_t qcap, qhead, qlen;
    bool eof;
    /* the acknowledged mark */
    uint64_t next_seq, mark_seq; /* next batch to cut; first batch not under the mark */
    acked_t *ring;               /* answered batches in [mark_seq, next_seq), by seq % window */
    size_t window;
    load_mark_t mark;
    /* state (under mu unless atomic) */
    atomic_bool abort;
    char fatal[512];
    uint64_t lines_done, samples_done, bytes_done, rejected, rejected_printed, retries_done;
    double t0;
    /* progress */
    bool tty;
    pthread_mutex_t out_mu; /* stderr lines vs the progress line */
    bool progress_shown;
    pthread_cond_t stop_cv;
    bool stop;
} lctx_t;

static bool stopping(lctx_t *w)
{
    return atomic_load(&w->abort) || (w->cfg->interrupt && atomic_load(w->cfg->interrupt));
}

/* ---- output ------------------------------------------------------------------------------ */

static void clear_progress_unsafe(lctx_t *w)
{
    if (w->tty && w->progress_shown) {
        fputs("\r\033[K", stderr);
        w->progress_shown = false;
    }
}

static void emit_err(lctx_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit_err(lctx_t *w, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&w->out_mu);
    clear_progress_unsafe(w);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    pthread_mutex_unlock(&w->out_mu);
}

static void show_progress(lctx_t *w)
{
    cli_progress_t p;
    pthread_mutex_lock(&w->mu);
    p.bytes_done = w->bytes_done;
    p.bytes_total = w->cfg->bytes_total;
    p.lines = w->lines_done;
    p.samples = w->samples_done;
    p.rejected = w->rejected;
    pthread_mutex_unlock(&w->mu);
    p.elapsed_s = httpc_now() - w->t0;
    int width = 80;
    struct winsize ws;
    if (w->tty && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        width = ws.ws_col;
    char line[512];
    cli_progress_format(line, sizeof(line), &p, w->tty, width);
    pthread_mutex_lock(&w->out_mu);
    if (w->tty) {
        fprintf(stderr, "\r%s\033[K", line);
        w->progress_shown = true;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
    pthread_mutex_unlock(&w->out_mu);
}

static void *progress_main(void *arg)
{
    lctx_t *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double every = w->tty ? 0.2 : w->cfg->progress_every;
        double t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + every;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&w->stop_cv, &w->mu, &ts);
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->mu);
        show_progress(w);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- queue and mark ------------------------------------------------------------------------ */

/* Queue b (numbering it); waits while the queue is full or the mark is a window behind. */
static void q_push(lctx_t *w, batch_t *b)
{
    pthread_mutex_lock(&w->mu);
    while ((w->qlen == w->qcap || w->next_seq - w->mark_seq >= w->window) && !stopping(w)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1; /* wake up now and then to see an interrupt */
        pthread_cond_timedwait(&w->not_full, &w->mu, &ts);
    }
    if (stopping(w)) {
        pthread_mutex_unlock(&w->mu);
        free(b->data);
        free(b);
        return;
    }
    b->seq = w->next_seq++;
    w->ring[b->seq % w->window] = (acked_t){.done = false};
    w->q[(w->qhead + w->qlen) % w->qcap] = b;
    w->qlen++;
    pthread_cond_signal(&w->not_empty);
    pthread_mutex_unlock(&w->mu);
}

static batch_t *q_pop(lctx_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->qlen == 0 && !w->eof)
        pthread_cond_wait(&w->not_empty, &w->mu);
    batch_t *b = NULL;
    if (w->qlen > 0) {
        b = w->q[w->qhead];
        w->qhead = (w->qhead + 1) % w->qcap;
        w->qlen--;
        pthread_cond_signal(&w->not_full);
    }
    pthread_mutex_unlock(&w->mu);
    return b;
}

/* b got its answer: move the mark over every answered batch at its front. */
static void ack(lctx_t *w, const batch_t *b, uint64_t samples)
{
    pthread_mutex_lock(&w->mu);
    w->ring[b->seq % w->window] = (acked_t){.done = true, .end = b->end, .samples = samples};
    bool moved = false;
    while (w->mark_seq < w->next_seq && w->ring[w->mark_seq % w->window].done) {
        acked_t *a = &w->ring[w->mark_seq % w->window];
        w->mark.offset = a->end.offset;
        w->mark.line = a->end.line;
        w->mark.samples += a->samples;
        a->done = false;
        w->mark_seq++;
        moved = true;
    }
    if (moved) {
        if (w->cfg->on_mark)
            w->cfg->on_mark(w->cfg->mark_ud, &w->mark);
        pthread_cond_broadcast(&w->not_full);
    }
    pthread_mutex_unlock(&w->mu);
}

static void set_fatal(lctx_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fatal(lctx_t *w, const char *fmt, ...)
{
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->abort)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->fatal, sizeof(w->fatal), fmt, ap);
        va_end(ap);
        atomic_store(&w->abort, true);
        pthread_cond_broadcast(&w->not_full);
    }
    pthread_mutex_unlock(&w->mu);
}

/* ---- sending ------------------------------------------------------------------------------- */

static void body_excerpt(const st_buf_t *b, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len && n + 1 < cap && n < 200; i++) {
        char c = (char)b->data[i];
        out[n++] = (c == '\n' || c == '\r') ? ' ' : c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* Byte offsets of each line start in the batch (index 0 = line 1). */
static size_t *line_index(const batch_t *b)
{
    size_t *idx = malloc(((size_t)b->nlines + 1) * sizeof(size_t));
    if (idx == NULL)
        return NULL;
    size_t n = 0, off = 0;
    idx[n++] = 0;
    while (n <= b->nlines) {
        const char *nl = memchr(b->data + off, '\n', b->len - off);
        if (nl == NULL)
            break;
        off = (size_t)(nl - b->data) + 1;
        idx[n++] = off;
    }
    while (n <= b->nlines)
        idx[n++] = b->len;
    return idx;
}

/* A 400: count and print the rejected lines. Returns the samples they held. */
static uint64_t handle_rejected(lctx_t *w, const batch_t *b, const st_buf_t *body, uint64_t *nrej)
{
    const load_cfg_t *cfg = w->cfg;
    json_t *root = cli_json_parse((const char *)body->data, body->len, NULL, 0);
    json_t *rej = json_object_get(root, "rejected"), *r;
    uint64_t samples = 0;
    *nrej = 0;
    if (!json_is_array(rej) || json_array_size(rej) == 0) {
        const char *e = json_string_value(json_object_get(root, "error"));
        char ex[256];
        body_excerpt(body, ex, sizeof(ex));
        emit_err(w, "%s:%llu-%llu: batch rejected (HTTP 400): %s\n", cfg->file,
                 (unsigned long long)b->first_line,
                 (unsigned long long)(b->first_line + b->nlines - 1), e ? e : ex);
        *nrej = b->nlines;
        json_decref(root);
        return b->samples;
    }
    size_t *idx = line_index(b), k;
    json_array_foreach(rej, k, r)
    {
        double ln = cli_json_num(json_object_get(r, "line"), 0);
        const char *reason = json_string_value(json_object_get(r, "reason"));
        (*nrej)++;
        if (ln >= 1 && ln <= b->nlines && idx) {
            size_t i = (size_t)ln - 1;
            samples += cfg->count(b->data + idx[i], idx[i + 1] - idx[i], cfg->count_arg);
        }
        pthread_mutex_lock(&w->mu);
        bool print = w->rejected_printed < cfg->max_errors;
        w->rejected_printed++;
        bool last = w->rejected_printed == cfg->max_errors;
        pthread_mutex_unlock(&w->mu);
        if (print) {
            if (ln >= 1)
                emit_err(w, "%s:%llu: %s\n", cfg->file,
                         (unsigned long long)(b->first_line + (uint64_t)ln - 1),
                         reason ? reason : "rejected");
            else
                emit_err(w, "%s:%llu-%llu: %s\n", cfg->file, (unsigned long long)b->first_line,
                         (unsigned long long)(b->first_line + b->nlines - 1),
                         reason ? reason : "rejected");
            if (last)
                emit_err(w, "(further rejected lines are counted, not printed; see "
                            "--max-errors)\n");
        }
    }
    free(idx);
    json_decref(root);
    return samples > b->samples ? b->samples : samples;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

/*
 * Send one batch (split on 413). Returns the samples stored (>= 0), or -1
 * after set_fatal() / on an interrupt.
 */
static int64_t send_batch(lctx_t *w, httpc_conn_t *conn, const batch_t *b, st_buf_t *gz,
                          st_buf_t *resp_body)
{
    const load_cfg_t *cfg = w->cfg;
    const void *body = b->data;
    size_t blen = b->len;
    if (cfg->gzip) {
        if (gz_compress(gz, b->data, b->len, 1) < 0) {
            set_fatal(w, "gzip failed");
            return -1;
        }
        body = gz->data;
        blen = gz->len;
    }
    for (int attempt = 1;; attempt++) {
        if (stopping(w))
            return -1;
        httpc_resp_t resp;
        st_buf_reset(resp_body);
        int rc = httpc_request(conn, "POST", cfg->target, cfg->headers, body, blen, &resp,
                               httpc_collect, resp_body);
        char why[400];
        double retry_after = 0;
        if (rc < 0) {
            snprintf(why, sizeof(why), "%s",
                     *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn) : st_strerror(rc));
        } else if (resp.status == 204 || resp.status == 200) {
            pthread_mutex_lock(&w->mu);
            w->lines_done += b->nlines;
            w->samples_done += b->samples;
            w->bytes_done += b->len;
            pthread_mutex_unlock(&w->mu);
            return (int64_t)b->samples;
        } else if (resp.status == 400) {
            uint64_t nrej;
            uint64_t rs = handle_rejected(w, b, resp_body, &nrej);
            pthread_mutex_lock(&w->mu);
            w->lines_done += b->nlines;
            w->samples_done += b->samples - rs;
            w->bytes_done += b->len;
            w->rejected += nrej;
            pthread_mutex_unlock(&w->mu);
            return (int64_t)(b->samples - rs);
        } else if (resp.status == 413 && b->nlines > 1) {
            /* too large: send the two halves */
            size_t *idx = line_index(b);
            if (idx == NULL) {
                set_fatal(w, "out of memory");
                return -1;
            }
            uint32_t h = b->nlines / 2;
            batch_t lo = {.data = b->data, .len = idx[h], .first_line = b->first_line, .nlines = h};
            batch_t hi = {.data = b->data + idx[h],
                          .len = b->len - idx[h],
                          .first_line = b->first_line + h,
                          .nlines = b->nlines - h};
            for (uint32_t i = 0; i < b->nlines; i++)
                (i < h ? &lo : &hi)->samples +=
                    cfg->count(b->data + idx[i], idx[i + 1] - idx[i], cfg->count_arg);
            free(idx);
            int64_t s1 = send_batch(w, conn, &lo, gz, resp_body);
            if (s1 < 0)
                return -1;
            int64_t s2 = send_batch(w, conn, &hi, gz, resp_body);
            return s2 < 0 ? -1 : s1 + s2;
        } else {
            char ex[256];
            body_excerpt(resp_body, ex, sizeof(ex));
            snprintf(why, sizeof(why), "HTTP %d %s%s%s", resp.status, resp.reason, *ex ? ": " : "",
                     ex);
            bool retryable = resp.status == 429 || resp.status == 500 || resp.status == 502 ||
                             resp.status == 503 || resp.status == 504;
            if (!retryable) {
                set_fatal(w, "%s:%llu-%llu: %s", cfg->file, (unsigned long long)b->first_line,
                          (unsigned long long)(b->first_line + b->nlines - 1), why);
                return -1;
            }
            retry_after = atof(resp.retry_after);
        }
        if (attempt >= cfg->retries) {
            set_fatal(w, "%s:%llu-%llu: giving up after %d attempts: %s", cfg->file,
                      (unsigned long long)b->first_line,
                      (unsigned long long)(b->first_line + b->nlines - 1), attempt, why);
            return -1;
        }
        double backoff = 0.1 * pow(2, attempt - 1);
        if (backoff > 5)
            backoff = 5;
        if (retry_after > backoff && retry_after <= 30)
            backoff = retry_after;
        pthread_mutex_lock(&w->mu);
        w->retries_done++;
        pthread_mutex_unlock(&w->mu);
        emit_err(w, "retrying %s:%llu-%llu in %.1fs (attempt %d/%d): %s\n", cfg->file,
                 (unsigned long long)b->first_line,
                 (unsigned long long)(b->first_line + b->nlines - 1), backoff, attempt + 1,
                 cfg->retries, why);
        sleep_s(backoff);
    }
}

static void *worker_main(void *arg)
{
    lctx_t *w = arg;
    httpc_conn_t *conn =
        httpc_conn_create(&w->cfg->url, CLI_CONNECT_TIMEOUT_MS, w->cfg->io_timeout_ms);
    st_buf_t gz, rb;
    st_buf_init(&gz);
    st_buf_init(&rb);
    if (conn == NULL)
        set_fatal(w, "out of memory");
    batch_t *b;
    while ((b = q_pop(w)) != NULL) {
        if (!stopping(w)) {
            int64_t stored = send_batch(w, conn, b, &gz, &rb);
            if (stored >= 0)
                ack(w, b, (uint64_t)stored);
        }
        free(b->data);
        free(b);
    }
    st_buf_deinit(&gz);
    st_buf_deinit(&rb);
    httpc_conn_destroy(conn);
    return NULL;
}

/* ---- reading ------------------------------------------------------------------------------- */

/* Read the source and queue batches until EOF or a stop. Returns 0 or an errno. */
static int read_batches(lctx_t *w, uint64_t *lines_read)
{
    const load_cfg_t *cfg = w->cfg;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    uint64_t lineno = cfg->start.line, offset = cfg->start.offset;
    batch_t *cur = NULL;
    size_t cur_cap = 0;
    int read_err = 0;
    while (!stopping(w)) {
        errno = 0;
        n = cfg->next(cfg->src, &line, &lcap);
        if (n < 0) {
            if (n == -2)
                read_err = errno ? errno : EIO;
            break;
        }
        lineno++;
        (*lines_read)++;
        if (cur != NULL &&
            (cur->nlines >= cfg->batch_lines || cur->len + (size_t)n > cfg->batch_bytes)) {
            q_push(w, cur);
            cur = NULL;
        }
        if (cur == NULL) {
            cur = calloc(1, sizeof(*cur));
            cur_cap = cfg->batch_bytes < 65536 ? cfg->batch_bytes : 65536;
            if ((size_t)n > cur_cap)
                cur_cap = (size_t)n;
            if (cur)
                cur->data = malloc(cur_cap);
            if (cur == NULL || cur->data == NULL) {
                read_err = ENOMEM;
                break;
            }
            cur->first_line = lineno;
        }
        if (cur->len + (size_t)n > cur_cap) {
            size_t nc = cur_cap * 2;
            while (nc < cur->len + (size_t)n)
                nc *= 2;
            char *nd = realloc(cur->data, nc);
            if (nd == NULL) {
                read_err = ENOMEM;
                break;
            }
            cur->data = nd;
            cur_cap = nc;
        }
        memcpy(cur->data + cur->len, line, (size_t)n);
        cur->len += (size_t)n;
        cur->nlines++;
        cur->samples += cfg->count(line, (size_t)n, cfg->count_arg);
        offset += (uint64_t)n;
        cur->end = (load_mark_t){.offset = offset, .line = lineno};
    }
    if (cur && cur->len > 0 && !stopping(w) && read_err == 0)
        q_push(w, cur);
    else if (cur) {
        free(cur->data);
        free(cur);
    }
    free(line);
    return read_err;
}

int load_run(const load_cfg_t *cfg, load_result_t *res)
{
    memset(res, 0, sizeof(*res));
    lctx_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(res->fatal, sizeof(res->fatal), "out of memory");
        return ST_ENOMEM;
    }
    w->cfg = cfg;
    w->tty = isatty(STDERR_FILENO);
    w->qcap = cfg->conns * 2;
    w->window = LOAD_WINDOW(cfg->conns);
    w->q = calloc(w->qcap, sizeof(*w->q));
    w->ring = calloc(w->window, sizeof(*w->ring));
    w->mark = (load_mark_t){.offset = cfg->start.offset, .line = cfg->start.line};
    if (w->q == NULL || w->ring == NULL) {
        free(w->q);
        free(w->ring);
        free(w);
        snprintf(res->fatal, sizeof(res->fatal), "out of memory");
        return ST_ENOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->out_mu, NULL);
    pthread_cond_init(&w->not_empty, NULL);
    pthread_cond_init(&w->not_full, NULL);
    pthread_cond_init(&w->stop_cv, NULL);
    w->t0 = httpc_now();

    pthread_t *thr = calloc(cfg->conns, sizeof(*thr)), pthr;
    size_t started = 0;
    bool progress_started = false;
    for (; thr && started < cfg->conns; started++)
        if (pthread_create(&thr[started], NULL, worker_main, w) != 0)
            break;
    int ret = 0;
    if (started == 0) {
        snprintf(res->fatal, sizeof(res->fatal), "cannot start threads");
        ret = ST_EIO;
        goto out;
    }
    if (!cfg->quiet && pthread_create(&pthr, NULL, progress_main, w) == 0)
        progress_started = true;

    int read_err = read_batches(w, &res->lines_read);
    if (read_err)
        set_fatal(w, "reading %s: %s", cfg->file, strerror(read_err));
    pthread_mutex_lock(&w->mu);
    w->eof = true;
    pthread_cond_broadcast(&w->not_empty);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < started; i++)
        pthread_join(thr[i], NULL);
    if (progress_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->stop_cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(pthr, NULL);
        if (!w->tty && !stopping(w))
            show_progress(w);
        pthread_mutex_lock(&w->out_mu);
        clear_progress_unsafe(w);
        pthread_mutex_unlock(&w->out_mu);
    }
    res->lines = w->lines_done;
    res->samples = w->samples_done;
    res->bytes = w->bytes_done;
    res->rejected = w->rejected;
    res->retries = w->retries_done;
    res->mark = w->mark;
    res->interrupted = !atomic_load(&w->abort) && stopping(w);
    res->aborted = stopping(w);
    if (res->interrupted)
        snprintf(res->fatal, sizeof(res->fatal), "interrupted");
    else if (res->aborted)
        memcpy(res->fatal, w->fatal, sizeof(res->fatal));
out:
    /* drain anything left after an abort */
    for (size_t i = 0; i < w->qlen; i++) {
        batch_t *b = w->q[(w->qhead + i) % w->qcap];
        free(b->data);
        free(b);
    }
    free(thr);
    free(w->q);
    free(w->ring);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->out_mu);
    pthread_cond_destroy(&w->not_empty);
    pthread_cond_destroy(&w->not_full);
    pthread_cond_destroy(&w->stop_cv);
    free(w);
    return ret;
}
