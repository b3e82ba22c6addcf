/*
 * strata-engine-bench — ingest a line-protocol file into the engine and
 * print what it costs.
 *
 *   strata-engine-bench --file h1000_3h.lp [--dir DIR] [--wal MODE]
 *                       [--batch LINES] [--keep] [--versioned]
 *
 * The file is streamed in 4 MiB chunks (so the file itself does not count in
 * RSS), parsed with the line-protocol parser (lp.h) and written with
 * engine_write() in batches of --batch lines, as a node receives them from
 * routers (--versioned: with engine_write_v and a new hybrid-logical-clock
 * version per batch, as a replicated node writes). Prints: samples/s end to end (parse + append)
 * and append alone (time inside engine_write), flush + compaction time, bytes/sample on disk
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
#include "st_hlc.h"
#include "st_time.h"

static int versioned; /* --versioned: engine_write_v, one version per batch */
static st_hlc_t hlc;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * A batch groups the samples of one request by series, as the router does
 * before it sends a node one columnar entry per series. It
 * owns copies of the labels; the samples are (entry, ts, value) triples
 * that flush_batch() turns into per-series columns with a counting sort.
 */
typedef struct entry {
    uint64_t hash;
    size_t label_off; /* into batch.labels */
    uint32_t nlabels;
    uint32_t count;
} entry_t;

typedef struct batch {
    entry_t *e;
    size_t ne, ecap;
    uint32_t *table; /* open addressing: entry index + 1, 0 = empty */
    size_t tcap;
    st_label_t *labels;
    size_t nl, lcap;
    char *str;
    size_t sl, scap;
    uint32_t *s_entry;
    int64_t *s_ts;
    double *s_v;
    size_t ns, scap2;
    /* columns built at flush */
    engine_series_batch_t *out;
    int64_t *cts;
    double *cv;
    size_t ocap, ccap;
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

static int labels_eq_batch(const batch_t *b, const entry_t *en, const lp_series_t *ls)
{
    if (en->nlabels != ls->nlabels)
        return 0;
    for (uint32_t k = 0; k < ls->nlabels; k++) {
        const st_label_t *x = &b->labels[en->label_off + k], *y = &ls->labels[k];
        if (x->name_len != y->name_len || x->value_len != y->value_len ||
            memcmp(b->str + (uintptr_t)x->name, y->name, y->name_len) ||
            memcmp(b->str + (uintptr_t)x->value, y->value, y->value_len))
            return 0;
    }
    return 1;
}

static uint32_t batch_entry(batch_t *b, const lp_series_t *ls)
{
    if (b->tcap == 0 || b->ne * 2 >= b->tcap) {
        size_t cap = b->tcap ? b->tcap * 2 : 1 << 16;
        free(b->table);
        b->table = calloc(cap, sizeof *b->table);
        b->tcap = cap;
        for (size_t i = 0; i < b->ne; i++) {
            size_t h = b->e[i].hash & (cap - 1);
            while (b->table[h])
                h = (h + 1) & (cap - 1);
            b->table[h] = (uint32_t)i + 1;
        }
    }
    uint64_t hash = st_labels_hash(ls->labels, ls->nlabels);
    size_t h = hash & (b->tcap - 1);
    while (b->table[h]) {
        entry_t *en = &b->e[b->table[h] - 1];
        if (en->hash == hash && labels_eq_batch(b, en, ls))
            return b->table[h] - 1;
        h = (h + 1) & (b->tcap - 1);
    }
    b->e = grow(b->e, &b->ecap, b->ne + 1, sizeof *b->e);
    b->labels = grow(b->labels, &b->lcap, b->nl + ls->nlabels, sizeof *b->labels);
    size_t bytes = 0;
    for (uint32_t k = 0; k < ls->nlabels; k++)
        bytes += ls->labels[k].name_len + ls->labels[k].value_len;
    b->str = grow(b->str, &b->scap, b->sl + bytes, 1);
    /* labels hold offsets into str until flush_batch() fixes them up */
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
    entry_t *en = &b->e[b->ne];
    en->hash = hash;
    en->label_off = b->nl;
    en->nlabels = ls->nlabels;
    en->count = 0;
    b->nl += ls->nlabels;
    b->table[h] = (uint32_t)++b->ne;
    return (uint32_t)(b->ne - 1);
}

static int on_point(void *arg, const lp_point_t *pt)
{
    batch_t *b = arg;
    for (uint32_t i = 0; i < pt->nseries; i++) {
        uint32_t ei = batch_entry(b, &pt->series[i]);
        size_t c0 = b->scap2;
        b->s_entry = grow(b->s_entry, &b->scap2, b->ns + 1, sizeof *b->s_entry);
        if (b->scap2 != c0) {
            size_t c1 = c0;
            b->s_ts = grow(b->s_ts, &c1, b->scap2, sizeof *b->s_ts);
            c1 = c0;
            b->s_v = grow(b->s_v, &c1, b->scap2, sizeof *b->s_v);
        }
        b->s_entry[b->ns] = ei;
        b->s_ts[b->ns] = pt->ts_ms;
        b->s_v[b->ns] = pt->series[i].value;
        b->ns++;
        b->e[ei].count++;
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
    if (b->ne == 0)
        return;
    for (size_t i = 0; i < b->nl; i++) {
        b->labels[i].name = b->str + (uintptr_t)b->labels[i].name;
        b->labels[i].value = b->str + (uintptr_t)b->labels[i].value;
    }
    size_t c0 = b->ocap;
    b->out = grow(b->out, &b->ocap, b->ne, sizeof *b->out);
    (void)c0;
    size_t c1 = b->ccap;
    b->cts = grow(b->cts, &c1, b->ns, sizeof *b->cts);
    b->cv = grow(b->cv, &b->ccap, b->ns, sizeof *b->cv);
    size_t off = 0;
    for (size_t i = 0; i < b->ne; i++) {
        b->out[i].labels = b->labels + b->e[i].label_off;
        b->out[i].nlabels = b->e[i].nlabels;
        b->out[i].ts = b->cts + off;
        b->out[i].values = b->cv + off;
        b->out[i].n = 0;
        off += b->e[i].count;
    }
    for (size_t k = 0; k < b->ns; k++) {
        engine_series_batch_t *o = &b->out[b->s_entry[k]];
        ((int64_t *)o->ts)[o->n] = b->s_ts[k];
        ((double *)o->values)[o->n] = b->s_v[k];
        o->n++;
    }
    double t0 = now_s();
    size_t bad = 0;
    int rc;
    if (versioned) {
        engine_write_result_t r;
        engine_write_result_init(&r);
        rc = engine_write_v(e, b->out, b->ne, st_hlc_next(&hlc, st_now_ms()), &r);
        bad = r.bad;
    } else {
        rc = engine_write(e, b->out, b->ne, &bad);
    }
    write_time += now_s() - t0;
    if (rc) {
        fprintf(stderr, "engine_write: %s (%s)\n", st_strerror(rc), engine_last_error());
        exit(1);
    }
    b->ne = b->nl = b->sl = b->ns = 0;
    memset(b->table, 0, b->tcap * sizeof *b->table);
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
        else if (!strcmp(argv[i], "--versioned"))
            versioned = 1;
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else {
            fprintf(stderr,
                    "usage: %s --file LP [--dir DIR] [--wal every_write|periodic|"
                    "os_default|none] [--batch LINES] [--keep] [--versioned]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "--file is required (make one with: strata bench --print --hosts 1000 "
                        "--hours 3 > FILE)\n");
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
    free(b.e);
    free(b.table);
    free(b.labels);
    free(b.str);
    free(b.s_entry);
    free(b.s_ts);
    free(b.s_v);
    free(b.out);
    free(b.cts);
    free(b.cv);
    engine_close(e);
    if (!keep) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return 0;
}
