/*
 * sset_bench — what read repair's divergence detection costs the fold of a
 * quorum read: sset_merge() against sset_merge_check() on the same pages
 * (two replicas' copies of SERIES series x SAMPLES samples), CPU only, no
 * sockets, interleaved rounds, the median per variant (thread CPU time,
 * so other processes on a shared box count less).
 *
 *   strata-sset-bench [series] [samples] [rounds] [divergent-percent]
 *
 * divergent-percent: that share of series lacks its last sample on the
 * second replica (the detection's closer look, and its callback, run for
 * them). Prints ms per fold and ns per sample for both variants.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sset.h"
#include "st_buf.h"
#include "wire.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* CPU time: the box is shared */
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One replica's page: every series, the divergent ones one sample short. */
static int make_page(st_buf_t *b, size_t series, size_t samples, int short_pct)
{
    int64_t *ts = malloc(samples * sizeof *ts);
    double *v = malloc(samples * sizeof *v);
    if (!ts || !v)
        return -1;
    for (size_t i = 0; i < series; i++) {
        char host[32];
        snprintf(host, sizeof host, "host_%06zu", i);
        st_label_t l[3] = {{"__name__", "cpu_usage_user", 8, 14},
                           {"hostname", host, 8, strlen(host)},
                           {"region", "eu-west-1", 6, 9}};
        for (size_t k = 0; k < samples; k++) {
            ts[k] = 1700000000000 + (int64_t)k * 10000;
            v[k] = (double)((i * 31 + k * 7) % 100);
        }
        size_t n = samples;
        if (short_pct && (i % 100) < (size_t)short_pct)
            n--;
        if (wire_put_series(b, 1, l, 3, ts, v, n))
            return -1;
    }
    free(ts);
    free(v);
    return wire_put_varint_field(b, 2, 1);
}

static size_t reported;

static void on_div(void *arg, const sset_series_t *m, const uint32_t *o, const uint8_t *s, size_t n)
{
    (void)arg, (void)m, (void)o, (void)s, (void)n;
    reported++;
}

static double one(const st_buf_t *a, const st_buf_t *b, int check)
{
    sset_t ss;
    sset_init(&ss, 0);
    int done;
    uint32_t ns;
    uint64_t np;
    ss.origin = 0;
    sset_add_page(&ss, a->data, a->len, &done, &ns, &np);
    ss.origin = 1;
    sset_add_page(&ss, b->data, b->len, &done, &ns, &np);
    double t = now_ms();
    if (check)
        sset_merge_check(&ss, 2, INT64_MAX, on_div, NULL);
    else
        sset_merge(&ss);
    t = now_ms() - t;
    sset_free(&ss);
    return t;
}

int main(int argc, char **argv)
{
    size_t series = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    size_t samples = argc > 2 ? strtoul(argv[2], NULL, 10) : 360;
    int rounds = argc > 3 ? atoi(argv[3]) : 11;
    int pct = argc > 4 ? atoi(argv[4]) : 0;
    if (!series || samples < 2 || rounds < 1 || pct < 0 || pct > 100) {
        fprintf(stderr, "usage: strata-sset-bench [series] [samples>=2] [rounds] [pct 0..100]\n");
        return 2;
    }
    st_buf_t a, b;
    st_buf_init(&a);
    st_buf_init(&b);
    if (make_page(&a, series, samples, 0) || make_page(&b, series, samples, pct)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    double *plain = malloc(rounds * sizeof *plain), *check = malloc(rounds * sizeof *check);
    if (!plain || !check)
        return 1;
    one(&a, &b, 0); /* warm-up */
    one(&a, &b, 1);
    for (int r = 0; r < rounds; r++) {
        if (r % 2) {
            plain[r] = one(&a, &b, 0);
            check[r] = one(&a, &b, 1);
        } else {
            check[r] = one(&a, &b, 1);
            plain[r] = one(&a, &b, 0);
        }
    }
    qsort(plain, rounds, sizeof *plain, cmp_d);
    qsort(check, rounds, sizeof *check, cmp_d);
    double p = plain[rounds / 2], c = check[rounds / 2];
    double total = 2.0 * (double)series * (double)samples;
    printf("fold of 2 copies x %zu series x %zu samples (%d%% divergent), median of %d rounds:\n"
           "  sset_merge        %8.2f ms  %6.2f ns/sample\n"
           "  sset_merge_check  %8.2f ms  %6.2f ns/sample  (%+.1f%%; %zu label sets reported)\n",
           series, samples, pct, rounds, p, p * 1e6 / total, c, c * 1e6 / total,
           (c - p) * 100.0 / p, reported / (size_t)(rounds + 1));
    free(plain);
    free(check);
    st_buf_deinit(&a);
    st_buf_deinit(&b);
    return 0;
}
