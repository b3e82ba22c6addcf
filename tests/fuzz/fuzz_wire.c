/* Fuzz target: decoding SeriesSamples / walking messages never crashes or over-reads. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    wire_field_t f;
    int guard = 0;
    while (wire_next(&p, end, &f) == 1 && guard++ < 100000) {
        if (f.type == WIRE_LEN && (f.data < data || f.data + f.len > end))
            abort();
    }
    wire_series_t s;
    if (wire_series_decode(data, size, &s) == 0) {
        size_t cap = s.nvals;
        int64_t *ts = malloc((cap ? cap : 1) * sizeof *ts);
        double *v = malloc((cap ? cap : 1) * sizeof *v);
        size_t n;
        uint64_t *ver = malloc((cap ? cap : 1) * sizeof *ver);
        if (wire_series_samples(&s, ts, v, cap, &n) == 0) {
            if (n != s.nvals)
                abort();
            (void)wire_series_versions(&s, ver, n);
        }
        free(ts);
        free(v);
        free(ver);
    }
    return 0;
}
