/*
 * strata write FILE — stream line protocol to POST /write in batches.
 *
 * Threads: the main thread reads FILE and cuts batches of --batch lines
 * (also capped at --batch-bytes) into a bounded queue; --conns workers each
 * own one keep-alive connection and POST batches from the queue; a progress
 * thread prints the progress line. Batches may complete out of order; every
 * batch remembers its first file line, so the router's batch-relative line
 * numbers in a 400 body become file line numbers.
 *
 * Per response: 204/200 ok; 400 partial write (print the rejected lines, go
 * on); 413 split the batch in two and send the halves; 429/5xx and connection
 * errors retry the same body with exponential backoff (the contract makes
 * retries safe) up to --retries attempts; anything else stops the load.
 */
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gz.h"
#include "st_err.h"

static const char *CMD = "write";

typedef struct batch {
    char *data;
    size_t len;
    uint64_t first_line; /* 1-based file line of the first line */
    uint32_t nlines;
    uint64_t samples;
} batch_t;

typedef struct wctx {
    /* options */
    const char *file;
    const char *shown_router;
    httpc_url_t url;
    char target[512];
    int retries;
    int max_errors;
    int io_timeout_ms;
    bool gzip;
    /* queue */
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    batch_t **q;
    size_t qcap, qhead, qlen;
    bool eof;
    /* state (under mu unless atomic) */
    atomic_bool abort;
    char fatal[512];
    uint64_t lines_done, samples_done, bytes_done, rejected, rejected_printed, retries_done;
    uint64_t bytes_total;
    double t0;
    /* progress */
    bool tty, quiet;
    double progress_every;
    pthread_mutex_t out_mu; /* stderr lines vs the progress line */
    bool progress_shown;
    pthread_cond_t stop_cv;
    bool stop;
} wctx_t;

/* ---- output ------------------------------------------------------------------------------ */

static void clear_progress_unsafe(wctx_t *w)
{
    if (w->tty && w->progress_shown) {
        fputs("\r\033[K", stderr);
        w->progress_shown = false;
    }
}

static void emit_err(wctx_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit_err(wctx_t *w, const char *fmt, ...)
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

static void show_progress(wctx_t *w)
{
    cli_progress_t p;
    pthread_mutex_lock(&w->mu);
    p.bytes_done = w->bytes_done;
    p.bytes_total = w->bytes_total;
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
    wctx_t *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double every = w->tty ? 0.2 : w->progress_every;
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

/* ---- queue ------------------------------------------------------------------------------- */

static void q_push(wctx_t *w, batch_t *b)
{
    pthread_mutex_lock(&w->mu);
    while (w->qlen == w->qcap)
        pthread_cond_wait(&w->not_full, &w->mu);
    w->q[(w->qhead + w->qlen) % w->qcap] = b;
    w->qlen++;
    pthread_cond_signal(&w->not_empty);
    pthread_mutex_unlock(&w->mu);
}

static batch_t *q_pop(wctx_t *w)
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

static void set_fatal(wctx_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fatal(wctx_t *w, const char *fmt, ...)
{
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->abort)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->fatal, sizeof(w->fatal), fmt, ap);
        va_end(ap);
        atomic_store(&w->abort, true);
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
static uint64_t handle_rejected(wctx_t *w, const batch_t *b, const st_buf_t *body, uint64_t *nrej)
{
    json_t *root = cli_json_parse((const char *)body->data, body->len, NULL, 0);
    json_t *rej = json_object_get(root, "rejected"), *r;
    uint64_t samples = 0;
    *nrej = 0;
    if (!json_is_array(rej) || json_array_size(rej) == 0) {
        const char *e = json_string_value(json_object_get(root, "error"));
        char ex[256];
        body_excerpt(body, ex, sizeof(ex));
        emit_err(w, "%s:%llu-%llu: batch rejected (HTTP 400): %s\n", w->file,
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
            samples += cli_lp_count_fields(b->data + idx[i], idx[i + 1] - idx[i]);
        }
        pthread_mutex_lock(&w->mu);
        bool print = w->rejected_printed < (uint64_t)w->max_errors;
        w->rejected_printed++;
        bool last = w->rejected_printed == (uint64_t)w->max_errors;
        pthread_mutex_unlock(&w->mu);
        if (print) {
            if (ln >= 1)
                emit_err(w, "%s:%llu: %s\n", w->file,
                         (unsigned long long)(b->first_line + (uint64_t)ln - 1),
                         reason ? reason : "rejected");
            else
                emit_err(w, "%s:%llu-%llu: %s\n", w->file, (unsigned long long)b->first_line,
                         (unsigned long long)(b->first_line + b->nlines - 1),
                         reason ? reason : "rejected");
            if (last)
                emit_err(w, "(further rejected lines are counted, not printed; see "
                            "--max-errors)\n");
        }
    }
    free(idx);
    json_decref(root);
    return samples;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Send one batch (split on 413). Returns 0, or -1 after set_fatal(). */
static int send_batch(wctx_t *w, httpc_conn_t *conn, const batch_t *b, st_buf_t *gz,
                      st_buf_t *resp_body)
{
    const char *hdr = w->gzip ? "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Encoding: gzip\r\n"
                              : "Content-Type: text/plain; charset=utf-8\r\n";
    const void *body = b->data;
    size_t blen = b->len;
    if (w->gzip) {
        if (gz_compress(gz, b->data, b->len, 1) < 0) {
            set_fatal(w, "gzip failed");
            return -1;
        }
        body = gz->data;
        blen = gz->len;
    }
    for (int attempt = 1;; attempt++) {
        if (atomic_load(&w->abort))
            return -1;
        httpc_resp_t resp;
        st_buf_reset(resp_body);
        int rc = httpc_request(conn, "POST", w->target, hdr, body, blen, &resp, httpc_collect,
                               resp_body);
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
            return 0;
        } else if (resp.status == 400) {
            uint64_t nrej;
            uint64_t rs = handle_rejected(w, b, resp_body, &nrej);
            pthread_mutex_lock(&w->mu);
            w->lines_done += b->nlines;
            w->samples_done += b->samples >= rs ? b->samples - rs : 0;
            w->bytes_done += b->len;
            w->rejected += nrej;
            pthread_mutex_unlock(&w->mu);
            return 0;
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
                    cli_lp_count_fields(b->data + idx[i], idx[i + 1] - idx[i]);
            free(idx);
            if (send_batch(w, conn, &lo, gz, resp_body) < 0)
                return -1;
            return send_batch(w, conn, &hi, gz, resp_body);
        } else {
            char ex[256];
            body_excerpt(resp_body, ex, sizeof(ex));
            snprintf(why, sizeof(why), "HTTP %d %s%s%s", resp.status, resp.reason, *ex ? ": " : "",
                     ex);
            bool retryable = resp.status == 429 || resp.status == 500 || resp.status == 502 ||
                             resp.status == 503 || resp.status == 504;
            if (!retryable) {
                set_fatal(w, "%s:%llu-%llu: %s", w->file, (unsigned long long)b->first_line,
                          (unsigned long long)(b->first_line + b->nlines - 1), why);
                return -1;
            }
            retry_after = atof(resp.retry_after);
        }
        if (attempt >= w->retries) {
            set_fatal(w, "%s:%llu-%llu: giving up after %d attempts: %s", w->file,
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
        emit_err(w, "retrying %s:%llu-%llu in %.1fs (attempt %d/%d): %s\n", w->file,
                 (unsigned long long)b->first_line,
                 (unsigned long long)(b->first_line + b->nlines - 1), backoff, attempt + 1,
                 w->retries, why);
        sleep_s(backoff);
    }
}

static void *worker_main(void *arg)
{
    wctx_t *w = arg;
    httpc_conn_t *conn = httpc_conn_create(&w->url, CLI_CONNECT_TIMEOUT_MS, w->io_timeout_ms);
    st_buf_t gz, rb;
    st_buf_init(&gz);
    st_buf_init(&rb);
    if (conn == NULL)
        set_fatal(w, "out of memory");
    batch_t *b;
    while ((b = q_pop(w)) != NULL) {
        if (!atomic_load(&w->abort))
            send_batch(w, conn, b, &gz, &rb);
        free(b->data);
        free(b);
    }
    st_buf_deinit(&gz);
    st_buf_deinit(&rb);
    httpc_conn_destroy(conn);
    return NULL;
}

/* ---- main ------------------------------------------------------------------------------------ */

typedef struct write_opts {
    cli_common_t common;
    uint64_t batch_lines, batch_bytes, conns, retries, max_errors;
    const char *precision, *consistency, *db;
    double progress_every;
    bool gzip, quiet;
} write_opts_t;

/* "/write?precision=..&consistency=..&db=.." into w->target; 0 or a usage error's exit code. */
static int write_target(wctx_t *w, const write_opts_t *o)
{
    st_buf_t tb;
    st_buf_init(&tb);
    st_buf_append(&tb, "/write?precision=", 17);
    httpc_query_escape(&tb, o->precision);
    if (o->consistency) {
        st_buf_append(&tb, "&consistency=", 13);
        httpc_query_escape(&tb, o->consistency);
    }
    if (o->db) {
        st_buf_append(&tb, "&db=", 4);
        httpc_query_escape(&tb, o->db);
    }
    int rc = 0;
    if (tb.len >= sizeof(w->target)) {
        rc = cli_usage_error(CMD, "parameters too long");
    } else {
        memcpy(w->target, tb.data, tb.len);
        w->target[tb.len] = '\0';
    }
    st_buf_deinit(&tb);
    return rc;
}

/*
 * Read `in` and queue batches of at most o->batch_lines lines and
 * o->batch_bytes bytes until EOF or an abort. Returns 0 or an errno.
 */
static int read_batches(wctx_t *w, FILE *in, const write_opts_t *o, uint64_t *lines_read)
{
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    batch_t *cur = NULL;
    size_t cur_cap = 0;
    int read_err = 0;
    while (!atomic_load(&w->abort)) {
        n = getline(&line, &lcap, in);
        if (n < 0)
            break;
        lineno++;
        (*lines_read)++;
        if (cur != NULL &&
            (cur->nlines >= o->batch_lines || cur->len + (size_t)n > o->batch_bytes)) {
            q_push(w, cur);
            cur = NULL;
        }
        if (cur == NULL) {
            cur = calloc(1, sizeof(*cur));
            cur_cap = o->batch_bytes < 65536 ? o->batch_bytes : 65536;
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
        cur->samples += cli_lp_count_fields(line, (size_t)n);
    }
    if (ferror(in) && read_err == 0)
        read_err = errno ? errno : EIO;
    if (cur && cur->len > 0 && !atomic_load(&w->abort) && read_err == 0)
        q_push(w, cur);
    else if (cur) {
        free(cur->data);
        free(cur);
    }
    free(line);
    return read_err;
}

static int run_write(void *opts, int argc, char **argv)
{
    (void)argc;
    const write_opts_t *o = opts;
    uint64_t conns = o->conns;
    static wctx_t wc;
    wctx_t *w = &wc;
    memset(w, 0, sizeof(*w));
    w->file = argv[0];
    int rc = cli_common_router(CMD, &o->common, &w->url, &w->shown_router);
    if (rc == 0)
        rc = write_target(w, o);
    if (rc != 0)
        return rc;
    FILE *in = strcmp(w->file, "-") == 0 ? stdin : fopen(w->file, "rb");
    if (in == NULL)
        return cli_fail(CMD, "%s: %s", w->file, strerror(errno));
    if (in == stdin)
        w->file = "stdin";
    struct stat stt;
    if (fstat(fileno(in), &stt) == 0 && S_ISREG(stt.st_mode))
        w->bytes_total = (uint64_t)stt.st_size;
    w->retries = (int)o->retries;
    w->max_errors = (int)(o->max_errors > 1000000000 ? 1000000000 : o->max_errors);
    w->io_timeout_ms = (int)(o->common.timeout * 1000);
    w->gzip = o->gzip;
    w->quiet = o->quiet;
    w->tty = isatty(STDERR_FILENO);
    w->progress_every = o->progress_every;
    w->qcap = conns * 2;
    w->q = calloc(w->qcap, sizeof(*w->q));
    if (w->q == NULL)
        return cli_fail(CMD, "out of memory");
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->out_mu, NULL);
    pthread_cond_init(&w->not_empty, NULL);
    pthread_cond_init(&w->not_full, NULL);
    pthread_cond_init(&w->stop_cv, NULL);
    w->t0 = httpc_now();

    pthread_t *thr = calloc(conns, sizeof(*thr)), pthr;
    size_t started = 0;
    bool progress_started = false;
    for (; thr && started < conns; started++)
        if (pthread_create(&thr[started], NULL, worker_main, w) != 0)
            break;
    if (started == 0) {
        fclose(in);
        free(thr);
        return cli_fail(CMD, "cannot start threads");
    }
    if (!o->quiet && pthread_create(&pthr, NULL, progress_main, w) == 0)
        progress_started = true;

    uint64_t lines_read = 0;
    int read_err = read_batches(w, in, o, &lines_read);
    if (in != stdin)
        fclose(in);
    if (read_err)
        set_fatal(w, "reading %s: %s", w->file, strerror(read_err));
    pthread_mutex_lock(&w->mu);
    w->eof = true;
    pthread_cond_broadcast(&w->not_empty);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < started; i++)
        pthread_join(thr[i], NULL);
    free(thr);
    if (progress_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->stop_cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(pthr, NULL);
        if (!w->tty && !atomic_load(&w->abort))
            show_progress(w);
        pthread_mutex_lock(&w->out_mu);
        clear_progress_unsafe(w);
        pthread_mutex_unlock(&w->out_mu);
    }
    double el = httpc_now() - w->t0;
    if (el <= 0)
        el = 1e-9;
    printf("strata write: lines=%llu samples=%llu bytes=%llu seconds=%.2f samples_per_s=%.0f "
           "mb_per_s=%.1f rejected=%llu retries=%llu%s\n",
           (unsigned long long)w->lines_done, (unsigned long long)w->samples_done,
           (unsigned long long)w->bytes_done, el, (double)w->samples_done / el,
           (double)w->bytes_done / el / 1e6, (unsigned long long)w->rejected,
           (unsigned long long)w->retries_done, atomic_load(&w->abort) ? " (incomplete)" : "");
    fflush(stdout);
    int ret = CLI_EXIT_OK;
    if (atomic_load(&w->abort))
        ret = cli_fail(CMD, "%s (%llu of %llu lines written)", w->fatal,
                       (unsigned long long)w->lines_done, (unsigned long long)lines_read);
    else if (w->rejected)
        ret = cli_fail(CMD, "%llu line%s rejected by the router", (unsigned long long)w->rejected,
                       w->rejected == 1 ? "" : "s");
    /* drain anything left after an abort */
    for (size_t i = 0; i < w->qlen; i++) {
        batch_t *b = w->q[(w->qhead + i) % w->qcap];
        free(b->data);
        free(b);
    }
    free(w->q);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->out_mu);
    pthread_cond_destroy(&w->not_empty);
    pthread_cond_destroy(&w->not_full);
    pthread_cond_destroy(&w->stop_cv);
    return ret;
}

static const cli_opt_t WRITE_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    CLI_OPT_U64(write_opts_t, batch_lines, "batch", 1, 10000000, " (1..10000000 lines)",
                "--batch LINES", "lines per request (default 5000)"),
    CLI_OPT_U64(write_opts_t, batch_bytes, "batch-bytes", 1024, (uint64_t)1 << 32,
                " (1024..4294967296)", "--batch-bytes BYTES",
                "bytes per request at most (default 8388608)"),
    CLI_OPT_CHOICE(write_opts_t, precision, "precision", "ns|us|u|ms|s|m|h", " (ns|us|ms|s|m|h)",
                   "--precision P", "ns|us|ms|s|m|h timestamps in FILE (default ns)"),
    CLI_OPT_U64(write_opts_t, conns, "conns", 1, 256, " (1..256)", "--conns N",
                "parallel connections (default 2)"),
    CLI_OPT_CHOICE(write_opts_t, consistency, "consistency", CLI_CONSISTENCY_CHOICES,
                   " (sync|quorum|async)", "--consistency C",
                   "sync|quorum|async, overrides the cluster's write_consistency"),
    {.name = "db",
     .kind = CLI_STR,
     .off = offsetof(write_opts_t, db),
     .label = "--db NAME",
     .help = "db parameter (accepted, ignored by Strata)"},
    CLI_OPT_FLAG(write_opts_t, gzip, "gzip", "send Content-Encoding: gzip bodies"),
    CLI_OPT_U64(write_opts_t, retries, "retries", 1, 1000, " (1..1000)", "--retries N",
                "attempts per batch on 429/5xx/connection errors (default 8)"),
    CLI_OPT_U64(write_opts_t, max_errors, "max-errors", 0, 1000000000, NULL, "--max-errors N",
                "rejected lines to print (default 50; all are counted)"),
    CLI_OPT_DURATION(write_opts_t, progress_every, "progress-interval", 0.1, false,
                     "--progress-interval S",
                     "seconds between progress lines when stderr is not a TTY\n"
                     "(default 10; a TTY gets a live bar)"),
    {.name = "quiet",
     .kind = CLI_FLAG,
     .off = offsetof(write_opts_t, quiet),
     .short_name = 'q',
     .label = "--quiet",
     .help = "no progress output"},
    CLI_OPT_TIMEOUT("per-request inactivity timeout"),
    CLI_OPT_END,
};

static const write_opts_t WRITE_DEFAULTS = {.common = CLI_COMMON_DEFAULTS,
                                            .batch_lines = 5000,
                                            .batch_bytes = 8 << 20,
                                            .conns = 2,
                                            .retries = 8,
                                            .max_errors = 50,
                                            .precision = "ns",
                                            .progress_every = 10};

const cli_cmd_t cli_cmd_write = {
    .name = "write",
    .args = "FILE",
    .summary = "load a line-protocol file ('-' = stdin)",
    .synopsis = "write FILE [options]     (FILE '-' = stdin)",
    .about = "Load an InfluxDB line-protocol file through POST /write.\n",
    .footer = "\nPrints a summary line on stdout. Exit 1 if a batch could not be written\n"
              "or the router rejected any line.\n",
    .help_col = 26,
    .min_args = 1,
    .max_args = 1,
    .too_many = "too many arguments",
    .opts = WRITE_OPTS,
    .opts_size = sizeof(write_opts_t),
    .defaults = &WRITE_DEFAULTS,
    .run = run_write,
};
