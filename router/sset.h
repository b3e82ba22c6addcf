/*
 * sset — a set of series with their samples, collected from EXPORT pages
 * (ReadResponse) in memory, and merged when several replicas answered for
 * the same shard (read_consistency=quorum, or a failover mid-read).
 *
 * Merging sorts the series by label set and folds identical label sets
 * into one: the union of their samples by timestamp, one sample per
 * timestamp (the first one added wins when replicas disagree; they only
 * disagree while hints are being replayed). Pure code, no sockets.
 *
 * Read repair: each series remembers the node it came from (ss->origin
 * when its page was added), and sset_merge_check() reports the label sets
 * whose copies disagree, at no cost when they agree (a copy is compared
 * with the first one by memcmp before folding; only a disagreeing run is
 * looked at sample by sample).
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
    uint32_t origin; /* the node it came from (sset_t.origin when added) */
} sset_series_t;

typedef struct sset {
    sset_series_t *s;
    size_t n, cap;
    uint64_t samples, max_samples; /* ST_ELIMIT past max_samples (0 = no limit) */
    uint32_t origin;               /* set by the caller before sset_add_page */
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

/*
 * One label set whose copies disagree (see sset_merge_check): `merged` is
 * the folded series; origin[i] / stale[i] for each distinct node that sent
 * a copy: stale when its copy lacks samples of the merged series at or
 * before the cutoff, or when copies hold other values for the same
 * timestamps (then every copy is stale: the node with the newer version
 * is not known here).
 */
typedef void (*sset_diverged_fn)(void *arg, const sset_series_t *merged, const uint32_t *origin,
                                 const uint8_t *stale, size_t n);
#define SSET_COPIES_MAX 16 /* distinct origins judged per label set */
/*
 * sset_merge() that also reports divergence: fn is called for each label
 * set whose distinct origins are not `expect` in number, or whose copies
 * differ in the samples at or before `cutoff` (later samples may still be
 * on their way to a replica, they are not compared). Copies of one origin
 * (a series matched by two selectors) count once. Returns as sset_merge.
 */
int sset_merge_check(sset_t *ss, size_t expect, int64_t cutoff, sset_diverged_fn fn, void *arg);

#endif
