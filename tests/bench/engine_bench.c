/*
 * strata-engine-bench — ingest a line-protocol file into the engine and
 * print what it costs.
 *
 *   strata-engine-bench --file h1000_3h.lp [--dir DIR] [--wal MODE]
 *                       [--batch LINES] [--keep]
 *
 * The file is streamed in 4 MiB chunks (so the file itself does not count in
 * RSS), parsed with the line-protocol parser (lp.h) and written with
 * engine_write() in batches of --batch lines, as a node receives them from
 * routers. Prints: samples/s end to end (parse + append) and append alone
 * (time inside engine_write), flush + compaction time, bytes/sample on disk
 * (segments + series.log + WAL after flush and compaction), peak RSS, and
 * the time to scan all samples of one series and of all series.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "lp.h"
#include "st_err.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A batch owns copies of everything its entries point at. */
typedef struct batch {
    engine_series_batch_t *s;
    int64_t *ts;
    double *v;
    st_label_t *labels;
    char *str;
    size_t n, cap, nl, lcap, sl, scap;
} batch_t;

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    p = realloc(p, c * elem);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    *cap = c;
    return p;
}

static int on_point(void *arg, const lp_point_t *pt)
{
    batch_t *b = arg;
    for (uint32_t i = 0; i < pt->nseries; i++) {
        const lp_series_t *ls = &pt->series[i];
        size_t c0 = b->cap;
        b->s = grow(b->s, &b->cap, b->n + 1, sizeof *b->s);
        if (b->cap != c0) {
            size_t c1 = c0;
            b->ts = grow(b->ts, &c1, b->cap, sizeof *b->ts);
            c1 = c0;
            b->v = grow(b->v, &c1, b->cap, sizeof *b->v);
        }
        b->labels = grow(b->labels, &b->lcap, b->nl + ls->nlabels, sizeof *b->labels);
        size_t bytes = 0;
        for (uint32_t k = 0; k < ls->nlabels; k++)
            bytes += ls->labels[k].name_len + ls->labels[k].value_len;
        b->str = grow(b->str, &b->scap, b->sl + bytes, 1);
        b->ts[b->n] = pt->ts_ms;
        b->v[b->n] = ls->value;
        /* labels are stored as offsets for now; fixed up before the write */
        for (uint32_t k = 0; k < ls->nlabels; k++) {
            st_label_t *d = &b->labels[b->nl + k];
            const st_label_t *src = &ls->labels[k];
            memcpy(b->str + b->sl, src->name, src->name_len);
            d->name = (const char *)(uintptr_t)b->sl;
            d->name_len = src->name_len;
            b->sl += src->name_len;
            memcpy(b->str + b->sl, src->value, src->value_len);
            d->value = (const char *)(uintptr_t)b->sl;
            d->value_len = src->value_len;
            b->sl += src->value_len;
        }
        b->s[b->n].labels = (const st_label_t *)(uintptr_t)b->nl;
        b->s[b->n].nlabels = ls->nlabels;
        b->s[b->n].n = 1;
        b->nl += ls->nlabels;
        b->n++;
    }
    return 0;
}

static void on_error(void *arg, uint64_t line, int code, const char *reason)
{
    fprintf(stderr, "line %llu: %s\n", (unsigned long long)line, reason);
}

static double write_time;

static void flush_batch(engine_t *e, batch_t *b)
{
    if (b->n == 0)
        return;
    for (size_t i = 0; i < b->nl; i++) {
        b->labels[i].name = b->str + (uintptr_t)b->labels[i].name;
        b->labels[i].value = b->str + (uintptr_t)b->labels[i].value;
    }
    for (size_t i = 0; i < b->n; i++) {
        b->s[i].labels = b->labels + (uintptr_t)b->s[i].labels;
        b->s[i].ts = &b->ts[i];
        b->s[i].values = &b->v[i];
    }
    double t0 = now_s();
    size_t bad;
    int rc = engine_write(e, b->s, b->n, &bad);
    write_time += now_s() - t0;
    if (rc) {
        fprintf(stderr, "engine_write: %s (%s)\n", st_strerror(rc), engine_last_error());
        exit(1);
    }
    b->n = b->nl = b->sl = 0;
}

static uint64_t du(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return 0;
    if (!S_ISDIR(sb.st_mode))
        return (uint64_t)sb.st_size;
    uint64_t total = 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", path, de->d_name) < (int)sizeof p)
            total += du(p);
    }
    closedir(d);
    return total;
}

static double scan(engine_t *e, const st_matcher_t *m, size_t nm, uint64_t *samples,
                   uint64_t *series)
{
    double t0 = now_s();
    engine_iter_t *it;
    if (engine_query(e, m, nm, INT64_MIN, INT64_MAX, &it)) {
        fprintf(stderr, "query failed: %s\n", engine_last_error());
        exit(1);
    }
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    double sink = 0;
    *samples = *series = 0;
    while (engine_iter_next(it, &l, &nl, &ts, &v, &n) == 1) {
        *samples += n;
        (*series)++;
        sink += v[n - 1];
    }
    engine_iter_destroy(it);
    if (sink == 12345.678)
        printf(" ");
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    const char *file = NULL, *dir = NULL, *wal = "periodic";
    size_t batch_lines = 10000;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--file") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--wal") && i + 1 < argc)
            wal = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch_lines = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else {
            fprintf(stderr,
                    "usage: %s --file LP [--dir DIR] [--wal every_write|periodic|"
                    "os_default|none] [--batch LINES] [--keep]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "--file is required (make one with shared/bench/gen_devops.py)\n");
        return 2;
    }
    char tmpl[] = "/tmp/strata-engine-bench-XXXXXX";
    if (!dir && !(dir = mkdtemp(tmpl))) {
        perror("mkdtemp");
        return 1;
    }
    engine_opts_t o;
    engine_opts_default(&o);
    if (!strcmp(wal, "every_write"))
        o.wal_durability = ENGINE_WAL_EVERY_WRITE;
    else if (!strcmp(wal, "os_default"))
        o.wal_durability = ENGINE_WAL_OS_DEFAULT;
    else if (!strcmp(wal, "none"))
        o.wal_durability = ENGINE_WAL_NONE;
    engine_t *e;
    int rc = engine_open(dir, &o, &e);
    if (rc) {
        fprintf(stderr, "engine_open: %s: %s\n", st_strerror(rc), engine_last_error());
        return 1;
    }
    lp_opts_t lo = {.precision = LP_PREC_NS, .series = 1};
    lp_parser_t *lp;
    if (lp_parser_create(&lo, &lp))
        return 1;
    int fd = open(file, O_RDONLY);
    if (fd < 0) {
        perror(file);
        return 1;
    }
    size_t cap = 4u << 20, have = 0;
    char *buf = malloc(cap);
    batch_t b = {0};
    uint64_t lines = 0, bytes_in = 0;
    size_t pending_lines = 0;
    double t0 = now_s();
    for (;;) {
        ssize_t r = read(fd, buf + have, cap - have);
        if (r < 0) {
            perror("read");
            return 1;
        }
        have += (size_t)r;
        bytes_in += (size_t)r;
        /* parse whole lines, batch_lines at a time */
        size_t off = 0;
        while (off < have) {
            size_t end = off, k = 0;
            while (k < batch_lines - pending_lines) {
                char *nl = memchr(buf + end, '\n', have - end);
                if (!nl)
                    break;
                end = (size_t)(nl - buf) + 1;
                k++;
            }
            if (r == 0 && k < batch_lines - pending_lines && end < have) {
                end = have; /* last line without newline */
                k++;
            }
            if (k == 0)
                break;
            if (lp_parse(lp, buf + off, end - off, on_point, on_error, &b) < 0)
                return 1;
            lines += k;
            pending_lines += k;
            off = end;
            if (pending_lines >= batch_lines) {
                flush_batch(e, &b);
                pending_lines = 0;
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (r == 0)
            break;
    }
    flush_batch(e, &b);
    double ingest = now_s() - t0;
    close(fd);
    engine_stats_t st;
    engine_get_stats(e, &st);
    uint64_t samples = st.samples_written;
    double t1 = now_s();
    if ((rc = engine_flush(e)) || (rc = engine_compact(e))) {
        fprintf(stderr, "flush/compact: %s (%s)\n", st_strerror(rc), engine_last_error());
        return 1;
    }
    double fc = now_s() - t1;
    engine_get_stats(e, &st);
    uint64_t disk = du(dir);
    char lockp[4200];
    snprintf(lockp, sizeof lockp, "%s/LOCK", dir);

    st_matcher_t one[2] = {{ST_MATCH_EQ, "__name__", "cpu_usage_user"},
                           {ST_MATCH_EQ, "hostname", "host_0"}};
    st_matcher_t all = {ST_MATCH_RE, "__name__", "cpu_.*"};
    uint64_t s1, n1, s2, n2;
    double q1 = scan(e, one, 2, &s1, &n1);
    double q2 = scan(e, &all, 1, &s2, &n2);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    printf("file                 %s (%.1f MB, %llu lines)\n", file, (double)bytes_in / 1e6,
           (unsigned long long)lines);
    printf("wal                  %s, batch %zu lines\n", wal, batch_lines);
    printf("samples              %llu in %llu series\n", (unsigned long long)samples,
           (unsigned long long)st.series);
    printf("ingest (parse+write) %.2f s  %.2f M samples/s\n", ingest, samples / ingest / 1e6);
    printf("append (engine only) %.2f s  %.2f M samples/s\n", write_time,
           samples / write_time / 1e6);
    printf("flush+compact        %.2f s  (%llu flushes, %llu compactions)\n", fc,
           (unsigned long long)st.flushes, (unsigned long long)st.compactions);
    printf("disk                 %llu bytes  %.3f bytes/sample  (%llu segments, %llu "
           "partitions)\n",
           (unsigned long long)disk, (double)disk / (double)samples,
           (unsigned long long)st.segments, (unsigned long long)st.partitions);
    printf("peak RSS             %.1f MiB\n", ru.ru_maxrss / 1024.0);
    printf("scan one series      %.3f ms  (%llu samples)\n", q1 * 1e3, (unsigned long long)s1);
    printf("scan all series      %.3f s   (%llu series, %llu samples, %.1f M samples/s)\n", q2,
           (unsigned long long)n2, (unsigned long long)s2, s2 / q2 / 1e6);
    lp_parser_destroy(lp);
    free(buf);
    free(b.s);
    free(b.ts);
    free(b.v);
    free(b.labels);
    free(b.str);
    engine_close(e);
    if (!keep) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return 0;
}
