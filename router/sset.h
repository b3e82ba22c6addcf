/*
 * sset — a set of series with their samples, collected from EXPORT pages
 * (ReadResponse) in memory, and merged when several replicas answered for
 * the same shard (read_consistency=quorum, or a failover mid-read).
 *
 * Merging sorts the series by label set and folds identical label sets
 * into one: the union of their samples by timestamp, one sample per
 * timestamp (the first one added wins when replicas disagree; they only
 * disagree while hints are being replayed). Pure code, no sockets.
 */
#ifndef SSET_H
#define SSET_H

#include <stddef.h>
#include <stdint.h>

#include "st_labels.h"

typedef struct sset_series {
    st_label_t *labels; /* owned copies, NUL-terminated */
    size_t nlabels;
    int64_t *ts; /* ascending */
    double *v;
    size_t n;
} sset_series_t;

typedef struct sset {
    sset_series_t *s;
    size_t n, cap;
    uint64_t samples, max_samples; /* ST_ELIMIT past max_samples (0 = no limit) */
} sset_t;

void sset_init(sset_t *ss, uint64_t max_samples);
void sset_free(sset_t *ss);
/*
 * Add the series of one ReadResponse page. OUT: *done (the node has no
 * more pages), *next_shard / *next_pos (the cursor to ask for next).
 * Returns 0, ST_ECORRUPT, ST_ELIMIT (max_samples), ST_ENOMEM.
 */
int sset_add_page(sset_t *ss, const uint8_t *p, size_t len, int *done, uint32_t *next_shard,
                  uint64_t *next_pos);
/* Fold duplicates (see above); the order of series becomes label order.
 * Returns 0 or ST_ENOMEM. */
int sset_merge(sset_t *ss);

#endif
