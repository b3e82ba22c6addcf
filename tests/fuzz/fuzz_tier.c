/*
 * fuzz_tier — the downsampling tier decoder (engine_tier.h) under hostile
 * input.
 *
 * 1. The input as a codec block holding a tier series: decode the block,
 *    then tier_decode its samples; it must not crash, and the buckets it
 *    accepts must be consistent (ends ascending and in range, count >= 1,
 *    first_ts <= last_ts inside the bucket).
 * 2. The input as samples: aggregate, encode, decode, compare bit for bit
 *    (and re-aggregate to a coarser width: the count is kept); the tier
 *    samples also through the block codec, whose columnar form (version 1,
 *    codec.c) they take, and back bit for bit.
 * Hostile columnar blocks reach codec_decode through 1 as well.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "engine_tier.h"
#include "st_buf.h"
#include "st_err.h"

#define FUZZ_MAX_N 4096

static int64_t ts[FUZZ_MAX_N], ts2[FUZZ_MAX_N * TIER_FIELDS];
static double v[FUZZ_MAX_N], v2[FUZZ_MAX_N * TIER_FIELDS];
static tier_bucket_t b[FUZZ_MAX_N + 1], b2[FUZZ_MAX_N + 1];
static int64_t ts3[FUZZ_MAX_N * TIER_FIELDS];
static double v3[FUZZ_MAX_N * TIER_FIELDS];

static void check_at(int cond, int line)
{
    if (!cond) {
        fprintf(stderr, "fuzz_tier: check failed at line %d\n", line);
        abort();
    }
}
#define check(cond) check_at((cond), __LINE__)

static void decode_block(const uint8_t *data, size_t size, int64_t res)
{
    size_t n = 0;
    if (codec_decode(data, size, ts, v, FUZZ_MAX_N, &n) != 0)
        return;
    size_t nb = 0;
    int rc = tier_decode(ts, v, n, res, INT64_MIN / 2, INT64_MAX / 2, b, &nb);
    check(rc == 0 || rc == ST_ECORRUPT);
    if (rc)
        return;
    check(nb <= n / TIER_FIELDS);
    for (size_t i = 0; i < nb; i++) {
        check(b[i].count >= 1);
        check(b[i].first_ts <= b[i].last_ts && b[i].last_ts <= b[i].end);
        check(b[i].first_ts > b[i].end - res);
        check(i == 0 || b[i].end > b[i - 1].end);
    }
}

static void round_trip(const uint8_t *data, size_t size, int64_t res)
{
    size_t n = 0;
    int64_t t = 0;
    for (size_t i = 0; i + 3 <= size && n < FUZZ_MAX_N; i += 3) {
        t += 1 + data[i] * 97;
        ts[n] = t;
        v[n++] = (double)(int8_t)data[i + 1] * (data[i + 2] & 1 ? 0.25 : 1);
    }
    if (!n)
        return;
    size_t nb = tier_aggregate(ts, v, n, res, b);
    double cnt = 0;
    for (size_t i = 0; i < nb; i++)
        cnt += b[i].count;
    check(cnt == (double)n);
    tier_encode(b, nb, res, ts2, v2);
    size_t nb2 = 0;
    check(tier_decode(ts2, v2, nb * TIER_FIELDS, res, INT64_MIN / 2, INT64_MAX / 2, b2, &nb2) == 0);
    check(nb2 == nb && memcmp(b, b2, nb * sizeof *b) == 0);
    st_buf_t blk;
    st_buf_init(&blk);
    size_t ns = nb * TIER_FIELDS, n3 = 0;
    check(codec_encode(ts2, v2, ns, &blk) == 0);
    check(codec_decode(blk.data, blk.len, ts3, v3, ns, &n3) == 0 && n3 == ns);
    check(!memcmp(ts3, ts2, ns * sizeof *ts3) && !memcmp(v3, v2, ns * sizeof *v3));
    st_buf_deinit(&blk);
    size_t nc = tier_rebucket(b2, nb2, res * 7);
    double cnt2 = 0;
    for (size_t i = 0; i < nc; i++)
        cnt2 += b2[i].count;
    check(nc <= nb && cnt2 == cnt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int64_t res = 9 + (int64_t)data[0] * 1000;
    decode_block(data + 1, size - 1, res);
    round_trip(data + 1, size - 1, res);
    return 0;
}
