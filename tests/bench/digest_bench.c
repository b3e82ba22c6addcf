/*
 * digest_bench — size and cost of repair digests (engine_digest.c).
 *
 *   strata-digest-bench [SERIES] [SAMPLES_PER_SERIES]   (default 1000000 10)
 *
 * Builds in memory the digest of SERIES series (one time window: their
 * samples fall in one day) with the bucket count a node uses for a shard
 * that size (about 64 series a bucket, at most 4096 buckets), and prints
 * the time to add the samples, the encoded size, the in-memory size and
 * the time to encode, decode and compare two such digests. A figure
 * printer, not a test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    unsigned long series = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    unsigned long per = argc > 2 ? strtoul(argv[2], NULL, 10) : 10;
    if (!series || !per || per > 100000) {
        fprintf(stderr, "usage: strata-digest-bench [SERIES] [SAMPLES_PER_SERIES]\n");
        return 2;
    }
    uint32_t nb = 64;
    while (nb < 4096 && (uint64_t)nb * 64 < series)
        nb <<= 1;
    engine_digest_t *a, *b;
    if (engine_digest_create(nb, 86400000, &a) || engine_digest_create(nb, 86400000, &b))
        return 1;
    int64_t *ts = malloc(per * sizeof *ts);
    double *v = malloc(per * sizeof *v);
    if (!ts || !v)
        return 1;
    for (unsigned long i = 0; i < per; i++) {
        ts[i] = 1700000000000 / 86400000 * 86400000 + (int64_t)i * 10000;
        v[i] = (double)i * 0.5;
    }
    char host[32];
    st_label_t l[2] = {{"__name__", "cpu", 8, 3}, {"host", host, 4, 0}};
    double t0 = now_s();
    for (unsigned long s = 0; s < series; s++) {
        l[1].value_len = (uint32_t)snprintf(host, sizeof host, "h%lu", s);
        engine_digest_add(a, l, 2, ts, v, per);
        engine_digest_add(b, l, 2, ts, v, s == 7 ? per - 1 : per); /* one sample missing */
    }
    double t_add = now_s() - t0;
    uint8_t *p;
    size_t len;
    t0 = now_s();
    if (engine_digest_encode(a, &p, &len))
        return 1;
    double t_enc = now_s() - t0;
    engine_digest_t *c;
    t0 = now_s();
    if (engine_digest_decode(p, len, &c))
        return 1;
    double t_dec = now_s() - t0;
    t0 = now_s();
    int64_t d = engine_digest_diff(c, b, NULL, NULL);
    double t_diff = now_s() - t0;
    printf("series %lu x %lu samples, %u buckets, 1 window\n", series, per, nb);
    printf("add: %.2f s (%.1f M samples/s, per digest)\n", t_add / 2,
           (double)series * (double)per / (t_add / 2) / 1e6);
    printf("encoded: %zu bytes (%.1f bytes per 1000 series), in memory %zu bytes\n", len,
           (double)len * 1000.0 / (double)series, (size_t)nb * 16);
    printf("encode %.3f ms, decode %.3f ms, diff %.3f ms: %lld differing cell(s)\n", t_enc * 1e3,
           t_dec * 1e3, t_diff * 1e3, (long long)d);
    free(p);
    free(ts);
    free(v);
    engine_digest_destroy(a);
    engine_digest_destroy(b);
    engine_digest_destroy(c);
    return 0;
}
