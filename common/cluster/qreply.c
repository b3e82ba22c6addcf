/* qreply — QueryResponse encoding (node) and decoding (router); see qreply.h. */
#include "qreply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "wire.h"

int qreply_encode(const promql_result_t *res, int64_t start, int64_t step, uint32_t steps,
                  size_t max_bytes, st_buf_t *out, uint64_t *points, char *msg, size_t msglen)
{
    size_t nbytes = ((size_t)steps + 7) / 8;
    uint8_t *present = calloc(nbytes ? nbytes : 1, 1);
    if (!present)
        return ST_ENOMEM;
    int rc = 0;
    *points = 0;
    for (size_t i = 0; i < res->nseries && !rc; i++) {
        const promql_series_t *s = &res->series[i];
        memset(present, 0, nbytes);
        size_t k = 0;
        for (size_t x = 0; x < s->n; x++) {
            int64_t off = (res->type == PROMQL_RES_VECTOR ? res->ts_ms : s->ts[x]) - start;
            if (off < 0 || off % step || (uint64_t)(off / step) >= steps) {
                rc = ST_EINVAL;
                snprintf(msg, msglen, "result point off the grid");
                break;
            }
            uint64_t at = (uint64_t)(off / step);
            present[at >> 3] |= (uint8_t)(1u << (at & 7));
            k++;
        }
        /* every step present: leave the bitmap out */
        size_t plen = k == steps ? 0 : nbytes;
        if (!rc)
            rc = wire_put_step_series(out, WIRE_QUERY_RESPONSE_SERIES, s->labels, s->nlabels,
                                      present, plen, s->v, s->n);
        *points += s->n;
        if (!rc && out->len > max_bytes) {
            rc = ST_ELIMIT;
            snprintf(msg, msglen,
                     "pushed-down result larger than %zu MiB (%zu of %zu series); narrow the "
                     "selector or use a larger step",
                     max_bytes >> 20, i + 1, res->nseries);
        }
    }
    free(present);
    return rc;
}

void qreply_counts(const uint8_t *p, size_t len, qreply_counts_t *out)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    memset(out, 0, sizeof *out);
    while (wire_next(&p, end, &f) == 1) {
        if (f.type != WIRE_VARINT)
            continue;
        if (f.num == WIRE_QUERY_RESPONSE_SAMPLES)
            out->samples = f.u;
        else if (f.num == WIRE_QUERY_RESPONSE_POINTS)
            out->points = f.u;
        else if (f.num == WIRE_QUERY_RESPONSE_SELECTED_SERIES)
            out->series = f.u;
        else if (f.num == WIRE_QUERY_RESPONSE_RESOLUTION_MS)
            out->resolution_ms = f.u;
        else if (f.num == WIRE_QUERY_RESPONSE_AVG_SUMS) {
            out->avg = 1;
            out->avg_sums = f.u;
        }
    }
}

int qreply_put_counts(st_buf_t *out, const qreply_counts_t *c)
{
    int rc = wire_put_varint_field(out, WIRE_QUERY_RESPONSE_SAMPLES, c->samples);
    rc |= wire_put_varint_field(out, WIRE_QUERY_RESPONSE_POINTS, c->points);
    rc |= wire_put_varint_field(out, WIRE_QUERY_RESPONSE_SELECTED_SERIES, c->series);
    if (c->resolution_ms)
        rc |= wire_put_varint_field(out, WIRE_QUERY_RESPONSE_RESOLUTION_MS, c->resolution_ms);
    if (c->avg)
        rc |= wire_put_varint_field(out, WIRE_QUERY_RESPONSE_AVG_SUMS, c->avg_sums);
    return rc ? ST_ENOMEM : 0;
}

static size_t popcount_bits(const uint8_t *b, size_t nbits)
{
    size_t n = 0;
    for (size_t i = 0; i < nbits; i++)
        n += (b[i >> 3] >> (i & 7)) & 1;
    return n;
}

/* The series [from, to) of a reply into sink. */
static int decode_range(const uint8_t *p, size_t len, size_t nsteps, uint64_t from, uint64_t to,
                        promql_vsink_t *sink)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    size_t plen = (nsteps + 7) / 8;
    double *vals = NULL;
    size_t vcap = 0;
    uint64_t at = 0;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num != WIRE_QUERY_RESPONSE_SERIES || f.type != WIRE_LEN)
            continue;
        if (at++ < from)
            continue;
        if (at > to)
            break;
        wire_series_t s; /* a StepSeries: ts/ts_len hold the bitmap */
        if ((rc = wire_series_decode(f.data, f.len, &s)) < 0)
            break;
        size_t want = s.ts ? popcount_bits(s.ts, s.ts_len == plen ? nsteps : 0) : nsteps;
        if ((s.ts && s.ts_len != plen) || s.nvals != want) {
            rc = ST_ECORRUPT;
            break;
        }
        if (s.nvals > vcap) {
            double *nv = realloc(vals, s.nvals * sizeof *nv);
            if (!nv) {
                rc = ST_ENOMEM;
                break;
            }
            vals = nv;
            vcap = s.nvals;
        }
        for (size_t i = 0; i < s.nvals; i++)
            memcpy(&vals[i], s.vals + 8 * i, 8); /* little-endian hosts only (wire.h) */
        if ((rc = promql_vsink_add(sink, s.labels, s.nlabels, s.ts, vals, s.nvals)))
            break;
    }
    free(vals);
    return rc < 0 ? rc : 0;
}

int qreply_decode(const uint8_t *p, size_t len, size_t nsteps, promql_vsink_t *sink)
{
    return decode_range(p, len, nsteps, 0, UINT64_MAX, sink);
}

int qreply_decode_avg(const uint8_t *p, size_t len, size_t nsteps, int part, promql_vsink_t *sink)
{
    qreply_counts_t c;
    qreply_counts(p, len, &c);
    const uint8_t *q = p, *end = p + len;
    wire_field_t f;
    uint64_t n = 0;
    int rc;
    while ((rc = wire_next(&q, end, &f)) == 1)
        n += f.num == WIRE_QUERY_RESPONSE_SERIES && f.type == WIRE_LEN;
    if (rc < 0 || !c.avg || c.avg_sums > n || n - c.avg_sums != c.avg_sums)
        return ST_ECORRUPT;
    return decode_range(p, len, nsteps, part ? c.avg_sums : 0, part ? n : c.avg_sums, sink);
}
