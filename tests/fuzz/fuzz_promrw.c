/*
 * fuzz_promrw — remote-write bodies (snappy block + prompb WriteRequest).
 *
 * The first input byte picks the mode: even, the rest is snappy-compressed
 * here first so the protobuf decoder sees arbitrary messages; odd, the rest
 * is the body as sent (arbitrary snappy framing). A small max_decoded limit
 * is used on some inputs. The callbacks check the invariants: labels lie in
 * the inflated buffer, are canonical (st_labels_validate), hold __name__;
 * bad-series reasons are short printable strings; the stats add up.
 */
#include <snappy-c.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promrw.h"
#include "st_err.h"
#include "st_labels.h"

typedef struct fz {
    const uint8_t *buf;
    size_t len;
    uint64_t good, bad, samples;
    unsigned sink;
} fz_t;

static void check(int ok)
{
    if (!ok)
        abort();
}

static void inside(fz_t *z, const char *s, size_t n)
{
    if (!n)
        return;
    check((const uint8_t *)s >= z->buf && (const uint8_t *)s + n <= z->buf + z->len);
    for (size_t i = 0; i < n; i++)
        z->sink += (unsigned char)s[i];
}

static int on_series(void *arg, const promrw_series_t *s)
{
    fz_t *z = arg;
    const char *why;
    check(st_labels_validate(s->labels, s->nlabels, &why) == 0);
    check(st_labels_find(s->labels, s->nlabels, ST_METRIC_LABEL) >= 0);
    for (uint32_t i = 0; i < s->nlabels; i++) {
        inside(z, s->labels[i].name, s->labels[i].name_len);
        inside(z, s->labels[i].value, s->labels[i].value_len);
        check(s->labels[i].value_len > 0);
    }
    check(s->n > 0);
    for (size_t i = 0; i < s->n; i++)
        z->sink += (unsigned)s->ts[i] + (s->v[i] == s->v[i]);
    z->good++;
    z->samples += s->n;
    return 0;
}

static void on_bad(void *arg, size_t index, const char *reason)
{
    fz_t *z = arg;
    (void)index;
    size_t n = strlen(reason);
    check(n > 0 && n < PROMRW_REASON_MAX);
    z->bad++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    promrw_t *d;
    if (promrw_create(mode & 2 ? 64 : 1 << 20, &d))
        return 0;
    uint8_t *comp = NULL;
    const uint8_t *body = data;
    size_t blen = size;
    if (!(mode & 1)) {
        size_t cap = snappy_max_compressed_length(size);
        comp = malloc(cap ? cap : 1);
        if (!comp || snappy_compress((const char *)data, size, (char *)comp, &cap) != SNAPPY_OK) {
            free(comp);
            promrw_destroy(d);
            return 0;
        }
        body = comp;
        blen = cap;
    }
    const uint8_t *pb;
    size_t pblen;
    int rc = promrw_uncompress(d, body, blen, &pb, &pblen);
    if (rc == 0) {
        check(pblen <= (mode & 2 ? 64u : 1u << 20));
        if (!(mode & 1))
            check(pblen == size && memcmp(pb, data, size) == 0);
        fz_t z = {pb, pblen, 0, 0, 0, 0};
        promrw_stats_t st;
        rc = promrw_decode(d, pb, pblen, on_series, on_bad, &z, &st);
        check(rc == 0 || rc == ST_ECORRUPT || rc == ST_ENOMEM);
        check(st.bad_series == z.bad);
        check(z.good + z.bad <= st.series);
        if (rc == 0)
            check(st.samples == z.samples);
    } else {
        check(rc == ST_ECORRUPT || rc == ST_ELIMIT || rc == ST_ENOMEM);
    }
    free(comp);
    promrw_destroy(d);
    return 0;
}
