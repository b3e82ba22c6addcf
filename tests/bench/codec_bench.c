/*
 * codec_bench — bytes/sample and encode/decode speed of the block codec on
 * TSBS-devops-like data: per series a random walk (start U[0,100), steps
 * N(0,1), clamped to [0,100]), one sample every 10 s, one block per series.
 *
 *   (a) int:     values int(state)
 *   (b) 2dec:    values round(state, 2) as a parser reads them ("%.2f", strtod)
 *   (c) 2dec+jit: (b) with timestamps jittered by up to +-50 ms
 *   (d) random:  uniformly random bit patterns (the XOR fallback's worst case)
 *
 * Usage: strata-codec-bench [series] [samples-per-series]   (10000 1080)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "codec_internal.h"
#include "st_buf.h"
#include "st_err.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd64(void)
{
    /* splitmix64 */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd_unit(void)
{
    return (double)(rnd64() >> 11) * 0x1p-53;
}

static double rnd_normal(void)
{
    static int have;
    static double spare;
    if (have) {
        have = 0;
        return spare;
    }
    double u1, u2;
    do
        u1 = rnd_unit();
    while (u1 <= 0);
    u2 = rnd_unit();
    double r = sqrt(-2 * log(u1));
    spare = r * sin(2 * M_PI * u2);
    have = 1;
    return r * cos(2 * M_PI * u2);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); /* one core, robust to load */
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

enum { V_INT, V_DEC2, V_DEC2_JIT, V_RANDOM, NVAR };
static const char *var_name[NVAR] = {"(a) int", "(b) 2dec", "(c) 2dec+jit", "(d) random"};

static void gen(int var, size_t series, size_t per, int64_t *ts, double *v)
{
    const int64_t t0 = 1451606400000; /* 2016-01-01, like TSBS */
    for (size_t s = 0; s < series; s++) {
        double st = rnd_unit() * 100;
        for (size_t i = 0; i < per; i++) {
            size_t j = s * per + i;
            ts[j] = t0 + (int64_t)i * 10000;
            if (var == V_DEC2_JIT)
                ts[j] += (int64_t)(rnd64() % 101) - 50;
            if (i > 0) {
                st += rnd_normal();
                st = st < 0 ? 0 : st > 100 ? 100 : st;
            }
            if (var == V_INT) {
                v[j] = (double)(int)st;
            } else if (var == V_RANDOM) {
                uint64_t b = rnd64();
                memcpy(&v[j], &b, 8);
            } else {
                char txt[32];
                snprintf(txt, sizeof txt, "%.2f", st);
                v[j] = strtod(txt, NULL);
            }
        }
    }
}

int main(int argc, char **argv)
{
    size_t series = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t per = argc > 2 ? strtoul(argv[2], NULL, 10) : 1080;
    size_t total = series * per;
    int64_t *ts = malloc(total * sizeof *ts), *ts2 = malloc(per * sizeof *ts2);
    double *v = malloc(total * sizeof *v), *v2 = malloc(per * sizeof *v2);
    size_t *off = malloc((series + 1) * sizeof *off);
    if (!ts || !ts2 || !v || !v2 || !off) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    printf("codec bench: %zu series x %zu samples\n", series, per);
    printf("%-13s %10s %12s %12s  %s\n", "variant", "bytes/smp", "enc Msmp/s", "dec Msmp/s",
           "blocks by mode (ts: const/delta/dod; val: const/dec/decdod/xor)");
    for (int var = 0; var < NVAR; var++) {
        gen(var, series, per, ts, v);
        st_buf_t out;
        st_buf_init(&out);
        if (st_buf_reserve(&out, total * 9)) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        double best_enc = 1e9, best_dec = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            st_buf_reset(&out);
            double t = now();
            for (size_t s = 0; s < series; s++) {
                off[s] = out.len;
                int rc = codec_encode(ts + s * per, v + s * per, per, &out);
                if (rc) {
                    fprintf(stderr, "encode: %s\n", st_strerror(rc));
                    return 1;
                }
            }
            off[series] = out.len;
            t = now() - t;
            best_enc = t < best_enc ? t : best_enc;
            t = now();
            for (size_t s = 0; s < series; s++) {
                size_t n;
                int rc = codec_decode(out.data + off[s], off[s + 1] - off[s], ts2, v2, per, &n);
                if (rc || n != per) {
                    fprintf(stderr, "decode: %s\n", st_strerror(rc));
                    return 1;
                }
            }
            t = now() - t;
            best_dec = t < best_dec ? t : best_dec;
        }
        /* Verify (untimed) and count modes. */
        size_t tsm[CODEC_TS_MODES] = {0}, vm[CODEC_V_MODES] = {0};
        for (size_t s = 0; s < series; s++) {
            size_t n;
            int rc = codec_decode(out.data + off[s], off[s + 1] - off[s], ts2, v2, per, &n);
            if (rc || n != per || memcmp(ts2, ts + s * per, per * sizeof *ts) ||
                memcmp(v2, v + s * per, per * sizeof *v)) {
                fprintf(stderr, "%s: series %zu does not round-trip\n", var_name[var], s);
                return 1;
            }
            int a, b;
            codec_block_modes(out.data + off[s], off[s + 1] - off[s], &a, &b);
            tsm[a]++;
            vm[b]++;
        }
        printf("%-13s %10.4f %12.1f %12.1f  ts %zu/%zu/%zu  val %zu/%zu/%zu/%zu\n", var_name[var],
               (double)out.len / (double)total, total / best_enc / 1e6, total / best_dec / 1e6,
               tsm[0], tsm[1], tsm[2], vm[0], vm[1], vm[2], vm[3]);
        st_buf_deinit(&out);
    }
    free(ts);
    free(ts2);
    free(v);
    free(v2);
    free(off);
    return 0;
}
