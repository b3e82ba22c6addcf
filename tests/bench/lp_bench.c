/*
 * lp_bench — line protocol parser throughput.
 *
 *   strata-lp-bench FILE [--iter N] [--no-series] [--hash] [--chunk BYTES]
 *
 * Reads FILE into memory, then parses it N times (default 3) on one core with
 * one parser, in bodies of --chunk bytes cut at line boundaries (default
 * 1 MiB, like HTTP requests). By default the parser builds the per-field
 * series label sets (what the router does); --no-series measures the bare
 * parser, --hash also hashes every series (st_labels_hash). Prints the best
 * run: lines/s, MB/s, samples/s, by wall clock and by the process's CPU time
 * (the latter is the figure to trust on a shared, busy machine).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lp.h"
#include "st_err.h"
#include "st_labels.h"

typedef struct sink {
    int hash;
    uint64_t points, series, labels, bad;
    uint64_t acc;
    double sum;
} sink_t;

static int on_point(void *arg, const lp_point_t *pt)
{
    sink_t *s = arg;
    s->points++;
    s->series += pt->nseries;
    for (uint32_t i = 0; i < pt->nseries; i++) {
        const lp_series_t *se = &pt->series[i];
        s->labels += se->nlabels;
        s->sum += se->value;
        if (s->hash)
            s->acc ^= st_labels_hash(se->labels, se->nlabels);
    }
    s->acc += (uint64_t)pt->ts_ms;
    return 0;
}

static void on_error(void *arg, uint64_t line, int code, const char *reason)
{
    sink_t *s = arg;
    if (s->bad++ < 5)
        fprintf(stderr, "line %llu: %s (%s)\n", (unsigned long long)line, reason, st_errname(code));
}

static double now(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int iters = 3, series = 1, hash = 0;
    size_t chunk = 1u << 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iter") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-series"))
            series = 0;
        else if (!strcmp(argv[i], "--hash"))
            hash = 1;
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
            chunk = (size_t)strtoull(argv[++i], NULL, 10);
        else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: %s FILE [--iter N] [--no-series] [--hash] [--chunk BYTES]\n",
                argv[0]);
        return 2;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    if (!buf || fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        fprintf(stderr, "read failed\n");
        return 1;
    }
    fclose(f);

    lp_opts_t o = {.precision = LP_PREC_NS, .series = series};
    lp_parser_t *p;
    int rc = lp_parser_create(&o, &p);
    if (rc) {
        fprintf(stderr, "lp_parser_create: %s\n", st_strerror(rc));
        return 1;
    }
    double best = 1e30, best_cpu = 1e30;
    sink_t s = {0};
    for (int it = 0; it < iters; it++) {
        memset(&s, 0, sizeof s);
        s.hash = hash;
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        size_t off = 0;
        while (off < (size_t)sz) {
            size_t n = (size_t)sz - off;
            if (n > chunk) {
                n = chunk;
                const char *nl = memchr(buf + off + n, '\n', (size_t)sz - off - n);
                n = nl ? (size_t)(nl - (buf + off)) + 1 : (size_t)sz - off;
            }
            rc = lp_parse(p, buf + off, n, on_point, on_error, &s);
            if (rc < 0) {
                fprintf(stderr, "lp_parse: %s\n", st_strerror(rc));
                return 1;
            }
            off += n;
        }
        double dt = now(CLOCK_MONOTONIC) - t0, dc = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (dt < best)
            best = dt;
        if (dc < best_cpu)
            best_cpu = dc;
    }
    printf("file %s: %.1f MB, %llu lines (%llu bad), %llu samples, %.1f labels/series\n", path,
           (double)sz / 1e6, (unsigned long long)s.points, (unsigned long long)s.bad,
           (unsigned long long)s.series, s.series ? (double)s.labels / (double)s.series : 0.0);
    printf("mode: %s%s, best of %d: %.3f s wall, %.3f s cpu (checksum %llx %.0f)\n",
           series ? "parse+series" : "parse only", hash ? "+hash" : "", iters, best, best_cpu,
           (unsigned long long)s.acc, s.sum);
    double samples = (double)(series ? s.series : s.points * 10);
    printf("wall: %.2f M lines/s  %.0f MB/s  %.2f M samples/s\n", (double)s.points / best / 1e6,
           (double)sz / best / 1e6, samples / best / 1e6);
    printf("cpu:  %.2f M lines/s  %.0f MB/s  %.2f M samples/s\n", (double)s.points / best_cpu / 1e6,
           (double)sz / best_cpu / 1e6, samples / best_cpu / 1e6);
    lp_parser_destroy(p);
    free(buf);
    return 0;
}
