/*
 * wbatch — one write request's line protocol turned into per-shard batches,
 * free of sockets so it can be unit-tested.
 *
 * wbatch_parse() runs the line-protocol parser (lp.h, series mode) over a
 * body, groups the samples by series (one columnar SeriesSamples per series
 * per request, samples in body order), places every series on its shard
 * with the topology's one placement rule (topo_shard_of_hash(), i.e.
 * topo_shard_of_labels() with the tags of a point hashed once for all its
 * fields) and encodes, per shard with data, one NodeWrite `shards` entry
 * (WriteRequest{shard, series[]}, wire.h) into one buffer. Lines the parser
 * rejects are counted and the first WBATCH_MAX_REJECTED kept with their
 * reason; so are lines whose timestamp is older than the retention
 * (wbatch_set_retention(): the nodes would drop their samples, so they are
 * refused rather than acknowledged) and lines whose timestamp is further
 * ahead of the clock than [storage] max_future (wbatch_set_max_future():
 * a typo in a timestamp must not open a partition decades away). The
 * router sends each entry to a replica of its shard; a shard's series may
 * be cut into several entries of a bounded size (wbatch_set_piece_max())
 * so that no single RPC carries a huge frame.
 *
 * Other write formats (Prometheus remote write, imports) hand their series
 * over one by one instead of parsing: wbatch_add_series() for each,
 * wbatch_reject() for the ones they refused, then wbatch_finish(). Their
 * "lines" are then items (series, rows), counted the same way (rejections
 * keep the item's position).
 */
#ifndef WBATCH_H
#define WBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "lp.h"
#include "topo.h"

#define WBATCH_MAX_REJECTED 100 /* per-line errors kept (reported in a 400) */
#define WBATCH_REASON_MAX 200   /* bytes of one rejection reason, NUL included */

typedef struct wbatch wbatch_t;

typedef struct wbatch_rejected {
    uint64_t line;
    char reason[WBATCH_REASON_MAX];
} wbatch_rejected_t;

/* One shard's encoded entry (or one piece of it, see wbatch_set_piece_max):
 * bytes [off, off + len) of wbatch_data(). */
typedef struct wbatch_shard {
    uint32_t shard;
    size_t off, len;
} wbatch_shard_t;

/* Returns 0 or ST_ENOMEM. */
int wbatch_create(const topo_t *t, wbatch_t **out);
void wbatch_destroy(wbatch_t *b);
/*
 * Reject (per line, reason "timestamp ... is older than the retention (30d)")
 * every point with a timestamp before now_ms - retention_ms. retention_ms
 * 0 (the default) keeps everything. Call before wbatch_parse().
 */
void wbatch_set_retention(wbatch_t *b, int64_t now_ms, int64_t retention_ms);
/*
 * Reject (per line, reason "timestamp ... is more than 1d ahead of the server
 * clock (max_future)") every point with a timestamp after now_ms +
 * max_future_ms. 0 (the default) accepts any. Call before wbatch_parse().
 */
void wbatch_set_max_future(wbatch_t *b, int64_t now_ms, int64_t max_future_ms);
/*
 * Cut each shard's series into entries of about `bytes` of encoded series
 * (an entry closes once it holds at least that much; a single series is
 * never split; a series sent as its reference alone counts with its
 * labels, so a piece holds as many samples either way). 0 (the default): one entry per shard. Call
 * before wbatch_parse().
 */
void wbatch_set_piece_max(wbatch_t *b, size_t bytes);
/*
 * Only series fn(arg, labels, n) accepts may be written: a line (or an
 * item of wbatch_add_series) with a series it refuses is rejected whole
 * with reason `why` (a static string), like a bad line. NULL: no filter.
 * fn runs on the thread that builds the batch. Call before wbatch_parse().
 */
typedef int (*wbatch_filter_fn)(void *arg, const st_label_t *l, size_t n);
void wbatch_set_filter(wbatch_t *b, wbatch_filter_fn fn, void *arg, const char *why);
/*
 * Parse `body` with `p` (created with lp_opts_t.series set; its precision
 * and default timestamp are the caller's) and build the batches. Call once
 * per wbatch. Returns 0, ST_ENOMEM, or lp_parse()'s error.
 */
int wbatch_parse(wbatch_t *b, lp_parser_t *p, const char *body, size_t len);

/*
 * Add one series (labels sorted and validated by the caller, __name__
 * among them) with its samples. Samples older than the retention are
 * dropped and the series counted rejected as too old (item: its position,
 * reported as the "line"); the others are kept. Returns 0 or ST_ENOMEM.
 */
int wbatch_add_series(wbatch_t *b, uint64_t item, const st_label_t *l, uint32_t n,
                      const int64_t *ts, const double *v, size_t count);
/* Count item as rejected with this reason (kept among the first ones). */
void wbatch_reject(wbatch_t *b, uint64_t item, const char *reason);
/* After the last wbatch_add_series(): build the per-shard entries. Returns
 * 0 or ST_ENOMEM. */
int wbatch_finish(wbatch_t *b);

uint64_t wbatch_lines_ok(const wbatch_t *b);
/* All rejected lines, the too old and too far future ones included. */
uint64_t wbatch_lines_bad(const wbatch_t *b);
/* Of those, the lines rejected as older than the retention. */
uint64_t wbatch_lines_too_old(const wbatch_t *b);
/* Of those, the lines rejected as further ahead than max_future. */
uint64_t wbatch_lines_too_far_future(const wbatch_t *b);
/* Of those, the lines (items) the filter refused (wbatch_set_filter). */
uint64_t wbatch_lines_forbidden(const wbatch_t *b);
/* The first rejected lines (at most WBATCH_MAX_REJECTED). */
const wbatch_rejected_t *wbatch_rejected(const wbatch_t *b, size_t *n);
/* Entries of shards with data, by shard ascending (one per shard unless
 * wbatch_set_piece_max), and the buffer they live in. */
const wbatch_shard_t *wbatch_shards(const wbatch_t *b, size_t *n);
const uint8_t *wbatch_data(const wbatch_t *b);

/*
 * Series references (docs/protocol.md, "Series references"): a router's
 * set of the references it sent with labels, and its secret seed. With
 * wbatch_set_refs (before parsing), every series is encoded with its
 * reference (a seeded 128-bit hash of its label bytes: of the hashes of
 * its tag set and of its name) and, when the set holds it, as that
 * reference alone; the ones it lacked are added once encoded.
 * At most `max` references: then the set is cleared (series go with
 * labels again). Thread-safe (a rwlock).
 */
typedef struct wbatch_refs wbatch_refs_t;
int wbatch_refs_create(uint64_t seed, size_t max, wbatch_refs_t **out);
void wbatch_refs_destroy(wbatch_refs_t *r);
size_t wbatch_refs_count(wbatch_refs_t *r);
void wbatch_set_refs(wbatch_t *b, wbatch_refs_t *r);
/*
 * Entry k of wbatch_shards() again with every series' labels and
 * reference, for a node that did not know some reference (ST_ENOREF).
 * Made once, valid as long as b. 0, ST_EINVAL (no references), ST_ENOMEM.
 */
int wbatch_piece_labels(wbatch_t *b, size_t k, const uint8_t **data, size_t *len);

#endif
