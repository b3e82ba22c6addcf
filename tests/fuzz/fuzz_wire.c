/* Fuzz target: decoding SeriesSamples / walking messages never crashes or
 * over-reads; the key path (wire_series_scan + wire_labels_decode) reads the
 * same labels and samples as wire_series_decode. */
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
    wire_series_t k;
    int rk = wire_series_scan(data, size, &k);
    if (rk == 0 && k.lab) {
        if (k.lab < data || k.lab + k.lab_len > end)
            abort();
        st_label_t l[ST_LABELS_MAX];
        size_t nl;
        int rl = wire_labels_decode(k.lab, k.lab_len, l, ST_LABELS_MAX, &nl);
        /* what the long way reads, when it reads it */
        if (rl == 0 && wire_series_decode(data, size, &s) == 0) {
            if (nl != s.nlabels || k.ts != s.ts || k.vals != s.vals || k.nvals != s.nvals)
                abort();
            for (size_t i = 0; i < nl; i++)
                if (l[i].name != s.labels[i].name || l[i].value != s.labels[i].value ||
                    l[i].name_len != s.labels[i].name_len ||
                    l[i].value_len != s.labels[i].value_len)
                    abort();
        }
    }
    /* no labels at all, as scan tells it (lab NULL, not split): none the long way either */
    if (rk == 0 && !k.lab && !k.lab_split && wire_series_decode(data, size, &s) == 0 && s.nlabels)
        abort();
    return 0;
}
