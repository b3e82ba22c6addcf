/*
 * strata bench — generate the devops cpu workload (devops.h) in memory, cut
 * it into bodies of --batch lines, then, with the clock started only after
 * all bodies exist (and are gzipped, with --gzip), let --conns threads with
 * one keep-alive connection each POST the bodies taken from a shared atomic
 * index. Each request's latency and status is recorded per body; no retries
 * (errors are counted by status). Requests stop being issued after
 * --duration-max seconds.
 */
#include <getopt.h>
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

static void help(void)
{
    printf("usage: strata bench [options]\n"
           "\n"
           "Generate the TSBS-like devops cpu workload in memory (the model and bytes of\n"
           "gen_devops.py) and load it through POST /write, then print samples/s, MB/s,\n"
           "requests, errors by status and per-request latency percentiles.\n"
           "  --router URL         router address (default %s, env STRATA_ROUTER)\n"
           "  --hosts N            hosts (default 1000)\n"
           "  --hours H            hours of data (default 3), or\n"
           "  --points N           points per host\n"
           "  --interval S         seconds between points (default 10)\n"
           "  --start T            first timestamp (default 2016-01-01T00:00:00Z)\n"
           "  --seed N             generator seed (default 1)\n"
           "  --decimals N         0 = integer-valued floats (default), N = N decimals\n"
           "  --batch LINES        lines per request (default 10000)\n"
           "  --conns N            parallel connections (default 4)\n"
           "  --consistency C      sync|quorum|async for every request\n"
           "  --gzip               gzip the bodies (before the clock starts)\n"
           "  --duration-max S     stop issuing requests after S seconds (default 600)\n"
           "  --timeout SECS       per-request inactivity timeout (default %d)\n"
           "  --print              write the generated line protocol to stdout and exit\n"
           "                       (no router needed; same bytes as gen_devops.py)\n",
           CLI_DEFAULT_ROUTER, CLI_IO_TIMEOUT_MS / 1000);
}

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

int cmd_bench(int argc, char **argv)
{
    static const struct option opts[] = {{"router", required_argument, NULL, 'r'},
                                         {"hosts", required_argument, NULL, 'H'},
                                         {"hours", required_argument, NULL, 'o'},
                                         {"points", required_argument, NULL, 'p'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {"start", required_argument, NULL, 's'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"decimals", required_argument, NULL, 'd'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"conns", required_argument, NULL, 'c'},
                                         {"consistency", required_argument, NULL, 'C'},
                                         {"gzip", no_argument, NULL, 'z'},
                                         {"duration-max", required_argument, NULL, 'D'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"print", no_argument, NULL, 'P'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *router = NULL, *consistency = NULL;
    uint64_t hosts = 1000, points = 0, interval = 10, seed = 1, decimals = 0, batch = 10000,
             conns = 4;
    double hours = 3, duration_max = 600, timeout = CLI_IO_TIMEOUT_MS / 1000.0, start = 1451606400;
    bool have_hours = false, have_points = false, gzip = false, print = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            router = optarg;
            break;
        case 'H':
            if (cli_parse_u64(optarg, 1, 10000000, &hosts) < 0)
                return cli_usage_error(CMD, "bad --hosts '%s' (1..10000000)", optarg);
            break;
        case 'o': {
            char *end;
            hours = strtod(optarg, &end);
            if (*end != '\0' || !(hours > 0) || hours > 24 * 366)
                return cli_usage_error(CMD, "bad --hours '%s'", optarg);
            have_hours = true;
            break;
        }
        case 'p':
            if (cli_parse_u64(optarg, 1, 100000000, &points) < 0)
                return cli_usage_error(CMD, "bad --points '%s'", optarg);
            have_points = true;
            break;
        case 'i':
            if (cli_parse_u64(optarg, 1, 86400, &interval) < 0)
                return cli_usage_error(CMD, "bad --interval '%s' (1..86400 seconds)", optarg);
            break;
        case 's':
            if (cli_parse_time(optarg, (double)time(NULL), &start) < 0)
                return cli_usage_error(CMD, "bad --start '%s'", optarg);
            break;
        case 'S':
            if (cli_parse_u64(optarg, 0, UINT64_MAX, &seed) < 0)
                return cli_usage_error(CMD, "bad --seed '%s'", optarg);
            break;
        case 'd':
            if (cli_parse_u64(optarg, 0, 17, &decimals) < 0)
                return cli_usage_error(CMD, "bad --decimals '%s' (0..17)", optarg);
            break;
        case 'b':
            if (cli_parse_u64(optarg, 1, 10000000, &batch) < 0)
                return cli_usage_error(CMD, "bad --batch '%s'", optarg);
            break;
        case 'c':
            if (cli_parse_u64(optarg, 1, 256, &conns) < 0)
                return cli_usage_error(CMD, "bad --conns '%s' (1..256)", optarg);
            break;
        case 'C':
            if (strcmp(optarg, "sync") && strcmp(optarg, "quorum") && strcmp(optarg, "async") &&
                strcmp(optarg, "one") && strcmp(optarg, "all") && strcmp(optarg, "any"))
                return cli_usage_error(CMD, "bad --consistency '%s' (sync|quorum|async)", optarg);
            consistency = optarg;
            break;
        case 'z':
            gzip = true;
            break;
        case 'D':
            if (cli_parse_duration(optarg, &duration_max) < 0 || duration_max <= 0)
                return cli_usage_error(CMD, "bad --duration-max '%s'", optarg);
            break;
        case 't':
            if (cli_parse_duration(optarg, &timeout) < 0 || timeout <= 0)
                return cli_usage_error(CMD, "bad --timeout '%s'", optarg);
            break;
        case 'P':
            print = true;
            break;
        case 'h':
            help();
            return CLI_EXIT_OK;
        default:
            return cli_usage_error(CMD, "bad option");
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (have_hours && have_points)
        return cli_usage_error(CMD, "--hours and --points are exclusive");
    if (!have_points)
        points = devops_points_for_hours(hours, (uint32_t)interval);
    if (points == 0)
        return cli_usage_error(CMD, "no points: --hours shorter than --interval");
    devops_cfg_t cfg = {.hosts = (uint32_t)hosts,
                        .points = points,
                        .interval_s = (uint32_t)interval,
                        .start_s = (int64_t)floor(start),
                        .seed = seed,
                        .decimals = (int)decimals};
    uint64_t total_lines = hosts * points;
    double est = (double)total_lines * (decimals ? 320.0 + 10.0 * (double)decimals : 300.0);
    if (!print && est > (double)MAX_MEMORY)
        return cli_usage_error(CMD,
                               "about %.1f GB of line protocol would not fit in memory "
                               "(max %.0f GB); use fewer --hosts or --hours",
                               est / 1e9, (double)MAX_MEMORY / 1e9);
    httpc_url_t url;
    const char *shown;
    if (!print && cli_router(router, &url, &shown) < 0)
        return cli_usage_error(CMD, "bad router URL '%s' (want http://HOST:PORT)", shown);

    devops_t *g = devops_create(&cfg);
    if (g == NULL)
        return cli_fail(CMD, "cannot create the generator (out of memory?)");
    st_buf_t buf;
    st_buf_init(&buf);
    int rc = 0, ret = CLI_EXIT_FAIL;
    if (print) {
        ret = CLI_EXIT_OK;
        while ((rc = devops_next_line(g, &buf)) > 0) {
            if (buf.len >= (1 << 20)) {
                if (fwrite(buf.data, 1, buf.len, stdout) != buf.len) {
                    ret = cli_fail(CMD, "writing stdout failed");
                    break;
                }
                st_buf_reset(&buf);
            }
        }
        if (rc < 0)
            ret = cli_fail(CMD, "out of memory");
        if (ret == CLI_EXIT_OK && fwrite(buf.data, 1, buf.len, stdout) != buf.len)
            ret = cli_fail(CMD, "writing stdout failed");
        if (fflush(stdout) != 0 && ret == CLI_EXIT_OK)
            ret = cli_fail(CMD, "writing stdout failed");
        devops_destroy(g);
        st_buf_deinit(&buf);
        return ret;
    }

    /* generate every body before the clock starts */
    bctx_t *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        devops_destroy(g);
        return cli_fail(CMD, "out of memory");
    }
    double tg = httpc_now();
    size_t nb = (size_t)((total_lines + batch - 1) / batch);
    b->bodies = calloc(nb, sizeof(*b->bodies));
    b->lat = calloc(nb, sizeof(double));
    b->status = calloc(nb, sizeof(int));
    pthread_t *thr = calloc(conns, sizeof(*thr));
    if (b->bodies == NULL || b->lat == NULL || b->status == NULL || thr == NULL ||
        st_buf_reserve(&buf, (size_t)est) < 0) {
        ret = cli_fail(CMD, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nb; i++) {
        b->bodies[i].off = buf.len;
        uint32_t k = 0;
        while (k < batch && (rc = devops_next_line(g, &buf)) > 0)
            k++;
        if (rc < 0) {
            ret = cli_fail(CMD, "out of memory generating the workload");
            goto out;
        }
        b->bodies[i].len = buf.len - b->bodies[i].off;
        b->bodies[i].lines = k;
    }
    b->nbodies = nb;
    b->data = buf.data;
    uint64_t wire_bytes = buf.len; /* what goes on the wire */
    if (gzip) {
        wire_bytes = 0;
        for (size_t i = 0; i < nb; i++) {
            st_buf_init(&b->bodies[i].gz);
            if (gz_compress(&b->bodies[i].gz, buf.data + b->bodies[i].off, b->bodies[i].len, 1) <
                0) {
                ret = cli_fail(CMD, "gzip failed");
                goto out;
            }
            wire_bytes += b->bodies[i].gz.len;
        }
    }
    double gen_s = httpc_now() - tg;
    char sz[32], avg[32], wire[48] = "";
    cli_fmt_bytes(sz, sizeof(sz), (double)buf.len);
    cli_fmt_bytes(avg, sizeof(avg), (double)buf.len / (double)nb);
    if (gzip) {
        char gzs[32];
        cli_fmt_bytes(gzs, sizeof(gzs), (double)wire_bytes);
        snprintf(wire, sizeof(wire), ", %s gzipped", gzs);
    }
    fprintf(stderr,
            "strata bench: generated %llu hosts x %llu points = %llu lines, %llu samples, %s in "
            "%zu bodies (avg %s%s) in %.1f s\n",
            (unsigned long long)hosts, (unsigned long long)points, (unsigned long long)total_lines,
            (unsigned long long)(total_lines * DEVOPS_FIELDS), sz, nb, avg, wire, gen_s);

    snprintf(b->target, sizeof(b->target), "/write?precision=ns%s%s",
             consistency ? "&consistency=" : "", consistency ? consistency : "");
    b->url = url;
    b->gzip = gzip;
    b->io_timeout_ms = (int)(timeout * 1000);
    pthread_mutex_init(&b->mu, NULL);
    fprintf(stderr, "strata bench: loading %s%s with %llu connection%s, %llu lines per request\n",
            shown, b->target, (unsigned long long)conns, conns == 1 ? "" : "s",
            (unsigned long long)batch);

    pthread_cond_init(&b->done_cv, NULL);
    b->t0 = httpc_now();
    b->deadline = b->t0 + duration_max;
    size_t started = 0;
    pthread_mutex_lock(&b->mu);
    b->running = (int)conns;
    for (; started < conns; started++)
        if (pthread_create(&thr[started], NULL, bench_worker, b) != 0)
            break;
    b->running -= (int)(conns - started);
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
                                .bytes_total = buf.len,
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
    if (el <= 0)
        el = 1e-9;

    /* results */
    size_t sent = 0, ok = 0;
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
        ret = cli_fail(CMD, "no request was sent");
    else if (ok < sent)
        ret = cli_fail(CMD, "%zu of %zu requests failed%s%s", sent - ok, sent,
                       b->errmsg[0] ? "; first transport error: " : "", b->errmsg);
    else
        ret = CLI_EXIT_OK;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->done_cv);
out:
    if (b->bodies)
        for (size_t i = 0; i < nb; i++)
            st_buf_deinit(&b->bodies[i].gz);
    free(b->bodies);
    free(b->lat);
    free(b->status);
    free(b);
    free(thr);
    devops_destroy(g);
    st_buf_deinit(&buf);
    return ret;
}
