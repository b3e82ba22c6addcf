/*
 * strata bench — generate the devops cpu workload (devops.h) in memory, cut
 * it into bodies of --batch lines, then, with the clock started only after
 * all bodies exist (and are gzipped, with --gzip), let --conns threads with
 * one keep-alive connection each POST the bodies taken from a shared atomic
 * index. Each request's latency and status is recorded per body; no retries
 * (errors are counted by status). Requests stop being issued after
 * --duration-max seconds.
 *
 * Steps of run_bench(): bench_config() (options -> generator config),
 * bench_generate() (all bodies), bench_send() (--conns workers, progress),
 * bench_report() (throughput, statuses, latency percentiles); bench_print()
 * is --print.
 */
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "devops.h"
#include "gz.h"
#include "st_err.h"

static const char *CMD = "bench";

#define MAX_MEMORY ((uint64_t)12 << 30)

typedef struct bbody {
    size_t off, len; /* slice of the generated buffer */
    uint32_t lines;
    st_buf_t gz; /* --gzip: compressed copy */
} bbody_t;

typedef struct bctx {
    httpc_url_t url;
    char target[256];
    const uint8_t *data;
    uint64_t total_bytes; /* of all bodies, before gzip */
    bbody_t *bodies;
    size_t nbodies;
    bool gzip;
    int io_timeout_ms;
    double t0, deadline;
    atomic_size_t next;
    atomic_size_t done_reqs;
    atomic_uint_fast64_t bytes_done, lines_done;
    int running;  /* under mu */
    double t_end; /* when the last worker finished, under mu */
    pthread_cond_t done_cv;
    /* per body, written by the thread that sent it */
    double *lat;
    int *status; /* HTTP status, or a negative ST_E* for transport errors, 0 = not sent */
    char errmsg[256];
    pthread_mutex_t mu;
} bctx_t;

static void *bench_worker(void *arg)
{
    bctx_t *b = arg;
    httpc_conn_t *conn = httpc_conn_create(&b->url, CLI_CONNECT_TIMEOUT_MS, b->io_timeout_ms);
    const char *hdr = b->gzip ? "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Encoding: gzip\r\n"
                              : "Content-Type: text/plain; charset=utf-8\r\n";
    while (conn != NULL) {
        if (httpc_now() >= b->deadline)
            break;
        size_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->nbodies)
            break;
        bbody_t *bd = &b->bodies[i];
        const void *body = b->gzip ? (const void *)bd->gz.data : (const void *)(b->data + bd->off);
        size_t blen = b->gzip ? bd->gz.len : bd->len;
        httpc_resp_t resp;
        double t0 = httpc_now();
        int rc = httpc_request(conn, "POST", b->target, hdr, body, blen, &resp, NULL, NULL);
        b->lat[i] = httpc_now() - t0;
        b->status[i] = rc < 0 ? rc : resp.status;
        if (rc < 0) {
            pthread_mutex_lock(&b->mu);
            if (b->errmsg[0] == '\0')
                snprintf(b->errmsg, sizeof(b->errmsg), "%s",
                         *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn) : st_strerror(rc));
            pthread_mutex_unlock(&b->mu);
        } else if (resp.status == 204 || resp.status == 200) {
            atomic_fetch_add(&b->bytes_done, bd->len);
            atomic_fetch_add(&b->lines_done, bd->lines);
        }
        atomic_fetch_add(&b->done_reqs, 1);
    }
    httpc_conn_destroy(conn);
    pthread_mutex_lock(&b->mu);
    b->t_end = httpc_now();
    if (--b->running == 0)
        pthread_cond_signal(&b->done_cv);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bench_opts {
    cli_common_t common;
    uint64_t hosts, points, interval, seed, decimals, batch, conns;
    double hours, start, duration_max;
    const char *consistency;
    bool has_hours, has_points, has_start, gzip, print;
} bench_opts_t;

/*
 * The first timestamp: --start, else the run ends now: the last interval
 * boundary at or before now, minus the points' span (so the default run is
 * within any retention, and queryable at once).
 */
static int64_t bench_start(const bench_opts_t *o, uint64_t points)
{
    if (o->has_start)
        return (int64_t)floor(o->start);
    int64_t iv = (int64_t)o->interval, now = (int64_t)floor(o->common.now);
    return now - now % iv - (int64_t)points * iv;
}

/* Step 1: the options as a generator config; 0 or a usage error's exit code. */
static int bench_config(const bench_opts_t *o, devops_cfg_t *cfg, double *est)
{
    if (o->has_hours && o->has_points)
        return cli_usage_error(CMD, "--hours and --points are exclusive");
    uint64_t points = o->points;
    if (!o->has_points)
        points = devops_points_for_hours(o->hours, (uint32_t)o->interval);
    if (points == 0)
        return cli_usage_error(CMD, "no points: --hours shorter than --interval");
    *cfg = (devops_cfg_t){.hosts = (uint32_t)o->hosts,
                          .points = points,
                          .interval_s = (uint32_t)o->interval,
                          .start_s = bench_start(o, points),
                          .seed = o->seed,
                          .decimals = (int)o->decimals};
    double lines = (double)(o->hosts * points);
    *est = lines * (o->decimals ? 320.0 + 10.0 * (double)o->decimals : 300.0);
    if (!o->print && *est > (double)MAX_MEMORY)
        return cli_usage_error(CMD,
                               "about %.1f GB of line protocol would not fit in memory "
                               "(max %.0f GB); use fewer --hosts or --hours",
                               *est / 1e9, (double)MAX_MEMORY / 1e9);
    return 0;
}

/* --print: the generated line protocol to stdout; a closed pipe ends it quietly (exit 0). */
static int bench_print(devops_t *g)
{
    st_buf_t buf;
    st_buf_init(&buf);
    int rc, out = 0;
    while ((rc = devops_next_line(g, &buf)) > 0) {
        if (buf.len >= (1 << 20)) {
            if ((out = cli_stdout_write(buf.data, buf.len)) != 0)
                break;
            st_buf_reset(&buf);
        }
    }
    int ret = CLI_EXIT_OK;
    if (out == 0 && rc < 0)
        ret = cli_fail(CMD, "out of memory");
    if (out == 0 && rc >= 0)
        out = cli_stdout_write(buf.data, buf.len);
    if (out == 0)
        out = cli_stdout_flush();
    if (out < 0 && ret == CLI_EXIT_OK)
        ret = cli_fail(CMD, "writing stdout failed");
    st_buf_deinit(&buf);
    return ret;
}

/*
 * Step 2: every body, before the clock starts: the workload into buf, cut
 * into b->bodies of --batch lines, gzipped with --gzip. 0 or an exit code.
 */
static int bench_generate(bctx_t *b, devops_t *g, const devops_cfg_t *cfg, const bench_opts_t *o,
                          st_buf_t *buf, double est)
{
    double tg = httpc_now();
    uint64_t total_lines = o->hosts * cfg->points;
    size_t nb = (size_t)((total_lines + o->batch - 1) / o->batch);
    b->bodies = calloc(nb, sizeof(*b->bodies));
    b->lat = calloc(nb, sizeof(double));
    b->status = calloc(nb, sizeof(int));
    if (b->bodies == NULL || b->lat == NULL || b->status == NULL ||
        st_buf_reserve(buf, (size_t)est) < 0)
        return cli_fail(CMD, "out of memory");
    b->nbodies = nb;
    int rc = 0;
    for (size_t i = 0; i < nb; i++) {
        b->bodies[i].off = buf->len;
        uint32_t k = 0;
        while (k < o->batch && (rc = devops_next_line(g, buf)) > 0)
            k++;
        if (rc < 0)
            return cli_fail(CMD, "out of memory generating the workload");
        b->bodies[i].len = buf->len - b->bodies[i].off;
        b->bodies[i].lines = k;
    }
    b->data = buf->data;
    b->total_bytes = buf->len;
    uint64_t wire_bytes = buf->len; /* what goes on the wire */
    if (o->gzip) {
        wire_bytes = 0;
        for (size_t i = 0; i < nb; i++) {
            if (gz_compress(&b->bodies[i].gz, buf->data + b->bodies[i].off, b->bodies[i].len, 1) <
                0)
                return cli_fail(CMD, "gzip failed");
            wire_bytes += b->bodies[i].gz.len;
        }
    }
    double gen_s = httpc_now() - tg;
    char sz[32], avg[32], wire[48] = "";
    cli_fmt_bytes(sz, sizeof(sz), (double)buf->len);
    cli_fmt_bytes(avg, sizeof(avg), (double)buf->len / (double)nb);
    if (o->gzip) {
        char gzs[32];
        cli_fmt_bytes(gzs, sizeof(gzs), (double)wire_bytes);
        snprintf(wire, sizeof(wire), ", %s gzipped", gzs);
    }
    fprintf(stderr,
            "strata bench: generated %llu hosts x %llu points = %llu lines, %llu samples, %s in "
            "%zu bodies (avg %s%s) in %.1f s\n",
            (unsigned long long)o->hosts, (unsigned long long)cfg->points,
            (unsigned long long)total_lines, (unsigned long long)(total_lines * DEVOPS_FIELDS), sz,
            nb, avg, wire, gen_s);
    return 0;
}

/*
 * Step 3: --conns workers POST the bodies until all are sent or
 * --duration-max passes; a progress line meanwhile. Returns the seconds
 * from the first request to the last worker's end.
 */
static double bench_send(bctx_t *b, const bench_opts_t *o, pthread_t *thr)
{
    b->t0 = httpc_now();
    b->deadline = b->t0 + o->duration_max;
    size_t started = 0;
    pthread_mutex_lock(&b->mu);
    b->running = (int)o->conns;
    for (; started < o->conns; started++)
        if (pthread_create(&thr[started], NULL, bench_worker, b) != 0)
            break;
    b->running -= (int)(o->conns - started);
    bool tty = isatty(STDERR_FILENO);
    double every = tty ? 0.5 : 10.0, next = b->t0 + every;
    while (b->running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double wait = next - httpc_now(), t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        t += wait > 0 ? wait : 0;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&b->done_cv, &b->mu, &ts);
        double now = httpc_now();
        if (b->running > 0 && now >= next) {
            next = now + every;
            cli_progress_t p = {.bytes_done = atomic_load(&b->bytes_done),
                                .bytes_total = b->total_bytes,
                                .lines = atomic_load(&b->lines_done),
                                .samples = atomic_load(&b->lines_done) * DEVOPS_FIELDS,
                                .elapsed_s = now - b->t0};
            char line[512];
            cli_progress_format(line, sizeof(line), &p, tty, 80);
            fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", line);
        }
    }
    double el = (started ? b->t_end : httpc_now()) - b->t0;
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < started; i++)
        pthread_join(thr[i], NULL);
    if (tty)
        fputs("\r\033[K", stderr);
    return el > 0 ? el : 1e-9;
}

/* Step 4: the results (requests, throughput, statuses, latency); the exit code. */
static int bench_report(const bctx_t *b, bool gzip, double el)
{
    size_t nb = b->nbodies, sent = 0, ok = 0;
    double *lat = malloc((nb ? nb : 1) * sizeof(double));
    int codes[64], counts[64], ncodes = 0;
    uint64_t ok_bytes = 0, ok_wire = 0, ok_lines = 0;
    for (size_t i = 0; i < nb; i++) {
        if (b->status[i] == 0)
            continue;
        if (lat)
            lat[sent] = b->lat[i];
        sent++;
        if (b->status[i] == 204 || b->status[i] == 200) {
            ok++;
            ok_bytes += b->bodies[i].len;
            ok_wire += gzip ? b->bodies[i].gz.len : b->bodies[i].len;
            ok_lines += b->bodies[i].lines;
        }
        int k = 0;
        while (k < ncodes && codes[k] != b->status[i])
            k++;
        if (k == ncodes && ncodes < 64) {
            codes[ncodes] = b->status[i];
            counts[ncodes++] = 0;
        }
        if (k < ncodes)
            counts[k]++;
    }
    if (lat)
        qsort(lat, sent, sizeof(double), cmp_double);
    double p50 = lat ? cli_percentile(lat, sent, 50) * 1e3 : 0;
    double p90 = lat ? cli_percentile(lat, sent, 90) * 1e3 : 0;
    double p99 = lat ? cli_percentile(lat, sent, 99) * 1e3 : 0;
    double pmax = lat && sent ? lat[sent - 1] * 1e3 : 0;
    free(lat);
    uint64_t samples = ok_lines * DEVOPS_FIELDS;
    printf("requests      %zu sent, %zu ok, %zu failed, %zu not sent%s\n", sent, ok, sent - ok,
           nb - sent, nb - sent ? " (--duration-max reached)" : "");
    printf("samples       %llu in %.2f s\n", (unsigned long long)samples, el);
    printf("samples/s     %.0f\n", (double)samples / el);
    printf("MB/s          %.1f line protocol%s\n", (double)ok_bytes / el / 1e6, "");
    if (gzip)
        printf("MB/s wire     %.1f gzipped\n", (double)ok_wire / el / 1e6);
    for (int k = 0; k < ncodes; k++) {
        if (codes[k] > 0)
            printf("status %-6d %d\n", codes[k], counts[k]);
        else
            printf("status %-6s %d (%s)\n", "error", counts[k], st_strerror(codes[k]));
    }
    printf("latency ms    p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", p50, p90, p99, pmax);
    printf("result: samples=%llu seconds=%.3f samples_per_s=%.0f mb_per_s=%.2f requests=%zu "
           "errors=%zu p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
           (unsigned long long)samples, el, (double)samples / el, (double)ok_bytes / el / 1e6, sent,
           sent - ok, p50, p90, p99, pmax);
    fflush(stdout);
    if (sent == 0)
        return cli_fail(CMD, "no request was sent");
    if (ok < sent)
        return cli_fail(CMD, "%zu of %zu requests failed%s%s", sent - ok, sent,
                        b->errmsg[0] ? "; first transport error: " : "", b->errmsg);
    return CLI_EXIT_OK;
}

static void bctx_destroy(bctx_t *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; b->bodies && i < b->nbodies; i++)
        st_buf_deinit(&b->bodies[i].gz);
    free(b->bodies);
    free(b->lat);
    free(b->status);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->done_cv);
    free(b);
}

static int run_bench(void *opts, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const bench_opts_t *o = opts;
    devops_cfg_t cfg;
    double est = 0;
    int ret = bench_config(o, &cfg, &est);
    if (ret != 0)
        return ret;
    httpc_url_t url;
    const char *shown = NULL;
    if (!o->print && (ret = cli_common_router(CMD, &o->common, &url, &shown)) != 0)
        return ret;
    devops_t *g = devops_create(&cfg);
    if (g == NULL)
        return cli_fail(CMD, "cannot create the generator (out of memory?)");
    if (o->print) {
        ret = bench_print(g);
        devops_destroy(g);
        return ret;
    }
    bctx_t *b = calloc(1, sizeof(*b));
    pthread_t *thr = calloc(o->conns, sizeof(*thr));
    st_buf_t buf;
    st_buf_init(&buf);
    if (b == NULL || thr == NULL) {
        ret = cli_fail(CMD, "out of memory");
        goto out;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->done_cv, NULL);
    if ((ret = bench_generate(b, g, &cfg, o, &buf, est)) != 0)
        goto out;
    snprintf(b->target, sizeof(b->target), "/write?precision=ns%s%s",
             o->consistency ? "&consistency=" : "", o->consistency ? o->consistency : "");
    b->url = url;
    b->gzip = o->gzip;
    b->io_timeout_ms = (int)(o->common.timeout * 1000);
    fprintf(stderr, "strata bench: loading %s%s with %llu connection%s, %llu lines per request\n",
            shown, b->target, (unsigned long long)o->conns, o->conns == 1 ? "" : "s",
            (unsigned long long)o->batch);
    ret = bench_report(b, o->gzip, bench_send(b, o, thr));
out:
    bctx_destroy(b);
    free(thr);
    devops_destroy(g);
    st_buf_deinit(&buf);
    return ret;
}

static const cli_opt_t BENCH_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    CLI_OPT_U64(bench_opts_t, hosts, "hosts", 1, 10000000, " (1..10000000)", "--hosts N",
                "hosts (default 1000)"),
    {.name = "hours",
     .kind = CLI_NUM,
     .off = offsetof(bench_opts_t, hours),
     .given = CLI_GIVEN(bench_opts_t, has_hours),
     .lo = 0,
     .lo_open = true,
     .hi = 24 * 366,
     .label = "--hours H",
     .help = "hours of data (default 3), or"},
    {.name = "points",
     .kind = CLI_U64,
     .off = offsetof(bench_opts_t, points),
     .given = CLI_GIVEN(bench_opts_t, has_points),
     .min = 1,
     .max = 100000000,
     .label = "--points N",
     .help = "points per host"},
    CLI_OPT_U64(bench_opts_t, interval, "interval", 1, 86400, " (1..86400 seconds)", "--interval S",
                "seconds between points (default 10)"),
    {.name = "start",
     .kind = CLI_TIME,
     .off = offsetof(bench_opts_t, start),
     .given = CLI_GIVEN(bench_opts_t, has_start),
     .label = "--start T",
     .help = "first timestamp (default: the points end now,\n"
             "start = now - hours, aligned to --interval)"},
    CLI_OPT_U64(bench_opts_t, seed, "seed", 0, UINT64_MAX, NULL, "--seed N",
                "generator seed (default 1)"),
    CLI_OPT_U64(bench_opts_t, decimals, "decimals", 0, 17, " (0..17)", "--decimals N",
                "0 = integer-valued floats (default), N = N decimals"),
    CLI_OPT_U64(bench_opts_t, batch, "batch", 1, 10000000, NULL, "--batch LINES",
                "lines per request (default 10000)"),
    CLI_OPT_U64(bench_opts_t, conns, "conns", 1, 256, " (1..256)", "--conns N",
                "parallel connections (default 4)"),
    CLI_OPT_CHOICE(bench_opts_t, consistency, "consistency", CLI_CONSISTENCY_CHOICES,
                   " (sync|quorum|async)", "--consistency C",
                   "sync|quorum|async for every request"),
    CLI_OPT_FLAG(bench_opts_t, gzip, "gzip", "gzip the bodies (before the clock starts)"),
    CLI_OPT_DURATION(bench_opts_t, duration_max, "duration-max", 0, true, "--duration-max S",
                     "stop issuing requests after S seconds (default 600)"),
    CLI_OPT_TIMEOUT("per-request inactivity timeout"),
    {.name = "print",
     .kind = CLI_FLAG,
     .off = offsetof(bench_opts_t, print),
     .label = "--print",
     .help = "write the generated line protocol to stdout and exit\n"
             "(no router needed; same bytes as gen_devops.py)"},
    CLI_OPT_END,
};

static const bench_opts_t BENCH_DEFAULTS = {.common = CLI_COMMON_DEFAULTS,
                                            .hosts = 1000,
                                            .interval = 10,
                                            .seed = 1,
                                            .batch = 10000,
                                            .conns = 4,
                                            .hours = 3,
                                            .duration_max = 600};

const cli_cmd_t cli_cmd_bench = {
    .name = "bench",
    .args = "",
    .summary = "generate the devops workload and load it",
    .synopsis = "bench [options]",
    .about = "Generate the TSBS-like devops cpu workload in memory (the model and bytes of\n"
             "gen_devops.py) and load it through POST /write, then print samples/s, MB/s,\n"
             "requests, errors by status and per-request latency percentiles.\n",
    .help_col = 23,
    .min_args = 0,
    .max_args = 0,
    .opts = BENCH_OPTS,
    .opts_size = sizeof(bench_opts_t),
    .defaults = &BENCH_DEFAULTS,
    .run = run_bench,
};
