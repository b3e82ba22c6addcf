/*
 * Fuzz target: the remote-read response path of `strata migrate` — snappy
 * block decompression and the hand-written ReadResponse decoder (cli/rread.h)
 * must never crash, read out of bounds or hand out a series over the limits.
 * The input is tried both as a snappy block and as the raw protobuf.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "rread.h"
#include "st_buf.h"

static int check(void *ud, const rread_series_t *s)
{
    (void)ud;
    if (s->nlabels > RREAD_MAX_LABELS || s->nsamples > RREAD_MAX_SAMPLES)
        abort();
    size_t sum = 0;
    for (size_t i = 0; i < s->nlabels; i++)
        sum += s->labels[i].name_len + s->labels[i].value_len;
    for (size_t i = 0; i < s->nsamples; i++)
        sum += (size_t)s->samples[i].t_ms & 1;
    return sum == (size_t)-1 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[200];
    rread_decode_response(data, size, check, NULL, err, sizeof err);
    st_buf_t raw;
    st_buf_init(&raw);
    if (rread_snappy_uncompress(&raw, data, size, 1 << 20) == 0)
        rread_decode_response(raw.data, raw.len, check, NULL, err, sizeof err);
    st_buf_deinit(&raw);
    return 0;
}
