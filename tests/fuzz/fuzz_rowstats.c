/* Fuzz target: a RowStatsResponse from a node (rowstats_decode: what the
 * router merges for SQL's count(*)) never crashes, over-reads or leaks,
 * whatever the bytes. The input is decoded twice into one table (two nodes'
 * answers), then the differing tag sets are resolved and the result
 * re-encoded and decoded again. */
#include <stddef.h>
#include <stdint.h>

#include "rowstats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rowstats_t *rs;
    if (rowstats_create(1000, &rs))
        return 0;
    if (rowstats_decode(rs, data, size) == 0)
        rowstats_decode(rs, data, size);
    int64_t ts[3] = {3, 1, 3};
    for (size_t i = 0; i < rowstats_nsets(rs); i++) {
        size_t nl;
        const st_label_t *l = rowstats_labels(rs, i, &nl);
        if (rowstats_find(rs, l, nl) == (long)i)
            rowstats_samples(rs, i, ts, 3);
    }
    rowstats_resolve(rs);
    st_buf_t b;
    st_buf_init(&b);
    rowstats_t *again;
    if (rowstats_encode(rs, 1u << 20, &b) == 0 && rowstats_create(1000, &again) == 0) {
        rowstats_decode(again, b.data, b.len);
        rowstats_destroy(again);
    }
    st_buf_deinit(&b);
    rowstats_destroy(rs);
    return 0;
}
