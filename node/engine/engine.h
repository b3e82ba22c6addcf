/*
 * engine — Strata's storage engine, and the one public header of the
 * embeddable library libstrata_engine (docs/embedding.md): a C program keeps
 * a local time-series store in a directory, no cluster and no event loop.
 *
 * A plain C library: open / write / query / flush / close. Writes go to a
 * write-ahead log and then into an in-memory head; the head is frozen and
 * flushed to immutable per-partition segment files of compressed blocks; a
 * background thread (optional) flushes, compacts and applies retention.
 * Series are identified by their label sets, found through a label index.
 *
 * Semantics:
 *  - samples are (int64 ms timestamp, float64 value), kept bit-exact;
 *  - a second write of the same (series, timestamp) replaces the value
 *    (last write wins); reads never return duplicates; with versions (below)
 *    the write with the higher version wins, whatever the arrival order;
 *  - out-of-order writes are accepted anywhere in time;
 *  - a write acknowledged in `every_write` mode survives a crash.
 *
 * Errors: functions return 0 (or a count) on success and a negative ST_E*
 * code from st_err.h on failure; st_strerror() names the code and
 * engine_last_error() gives this thread's detail (file, offset, reason).
 *
 * Thread safety: every function may be called from any thread; writes and
 * queries run concurrently (internal locking). engine_close() must not race
 * with other calls. One process at a time may open a directory (flock).
 *
 * VERSIONS (replication: last write wins by version)
 *
 * Every sample has a version, a uint64 (a hybrid logical clock, st_hlc.h:
 * 48-bit wall ms << 16 | 16-bit counter, assigned once per RPC_WRITE by the
 * coordinating node and carried unchanged to every replica, into the WAL
 * and into hints). 0 = unversioned: engine_write without a version, and all
 * data written before versions existed (WAL and segment format 1) reads as
 * version 0. Rule, applied by every replica the same way: of two samples of
 * one (series, timestamp) the one with the HIGHER version is kept; equal
 * versions: the later arrival (a redelivery of the same write).
 *
 * Where versions live (data written once grows by one varint per segment
 * block, well under 1%):
 *  - head and WAL: exact per sample (WAL: one per SAMPLES_V record, a
 *    record is one write; head: each distinct version once per head, and
 *    a versioned series a 4-byte index into that table per sample);
 *  - segment files (format 2): one version per block, `vmax`, the highest
 *    version of the samples flushed into the block (a varint in the block's
 *    directory entry). A flushed sample competes with its block's vmax, an
 *    upper bound of its own version. So a write arriving after the flush
 *    replaces a flushed sample iff its version is > that block's vmax, and
 *    a late older write (hint replay, repair) never puts an older value
 *    back. The one imprecision: a delayed NEWER write (version v, arriving
 *    after the flush) loses against a flushed block of the same series that
 *    also holds a sample written with a version >= v; in the head it wins.
 *  - compaction: a merged sample takes its input block's vmax; an output
 *    block's vmax is the max over its samples.
 *  - deletes: engine_delete_v gives a tombstone a version V (the
 *    coordinator's, like a write's). It hides the samples of its series and
 *    range whose version is LOWER than V and never one with a higher
 *    version, whatever the arrival order: head samples of versions >= V
 *    stay when the delete is applied, a later write of a version < V is
 *    left out as it enters the head (matched on its labels, so also for a
 *    series this replica creates only after the delete; counted in
 *    samples_hidden_late), a later write of a version >= V is kept, and a
 *    segment flushed before the delete arrived is masked in the range (a
 *    block with vmax < V holds only older versions: exact). The one
 *    imprecision, leaning to never bringing deleted data back: a write of
 *    a version >= V that reached this replica BEFORE the delete and was
 *    flushed to a segment before the delete arrived is hidden with its
 *    block (vmax cannot tell it from the older samples beside it); the
 *    replicas that applied the delete first keep it, and repair writes it
 *    back here (a versioned write, which the tombstone does not hide).
 *    engine_delete (version 0, and every tombstone written before versions
 *    existed) keeps the arrival rule: it hides what this replica stored
 *    before it. Unversioned writes (version 0) are never left out: they
 *    arrive after any tombstone already applied.
 * Readers that compare or move data between replicas (anti-entropy,
 * repair) read each sample's version (as above) with engine_iter_versions
 * and write them back with engine_write_v (one version per call).
 */
#ifndef ENGINE_H
#define ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus /* C linkage for the engine and the base headers it brings */
extern "C" {
#endif

#include "st_err.h"
#include "st_labels.h"
#include "st_matcher.h"

typedef struct engine engine_t;
typedef struct engine_iter engine_iter_t;

typedef enum {
    ENGINE_WAL_EVERY_WRITE = 0, /* fsync before a write returns (group commit) */
    ENGINE_WAL_PERIODIC = 1,    /* fsync every wal_sync_interval_ms */
    ENGINE_WAL_OS_DEFAULT = 2,  /* write(2) only; the OS decides when */
    ENGINE_WAL_NONE = 3,        /* no WAL: unflushed data is lost on crash */
} engine_wal_mode_t;

/*
 * A node-wide budget shared by the engines of one process (one per shard):
 * head memory, open segment files and series cardinality are limited per
 * node, not per engine. Thread-safe; create it before the engines that use
 * it and destroy it after the last of them is closed. Every limit is 0 = no
 * limit.
 *
 *   head_max_bytes           head (in-memory, unflushed) bytes summed over
 *                            the engines; above it engine_write refuses
 *                            whole writes with ST_EBUSY (nothing written,
 *                            nothing logged) and wakes the flushers; writes
 *                            are accepted again once flushing brings the
 *                            sum back under it.
 *   max_open_files           segment files held open (descriptor + mmap)
 *                            over the engines: an LRU, files are opened on
 *                            first read and the least recently used closed.
 *                            Segments being read stay open while read, so
 *                            the bound may be passed briefly by readers.
 *   max_series               series summed over the engines (new series
 *                            beyond it are refused; existing ones written).
 *   max_new_series_per_hour  series created per node in a fixed window of
 *                            one hour (wall clock, aligned to the hour).
 *   max_new_series_per_write series created by one write: one
 *                            engine_write_ex call, or several calls that
 *                            share one engine_write_result_t (see below).
 */
typedef struct engine_budget engine_budget_t;

typedef struct engine_budget_opts {
    uint64_t head_max_bytes;
    uint64_t max_open_files;
    uint64_t max_series;
    uint64_t max_new_series_per_hour;
    uint64_t max_new_series_per_write;
} engine_budget_opts_t;

/* Fill `o` with no limits except max_open_files = 1024. */
void engine_budget_opts_default(engine_budget_opts_t *o);
int engine_budget_create(const engine_budget_opts_t *o, engine_budget_t **out);
/* After every engine using it is closed. NULL is a no-op. */
void engine_budget_destroy(engine_budget_t *b);

typedef struct engine_budget_stats {
    uint64_t head_bytes;      /* summed over the engines */
    uint64_t open_files;      /* segment files open now */
    uint64_t series;          /* summed over the engines */
    uint64_t new_series_hour; /* created in the current hour window */
    uint64_t files_opened;    /* lazy opens (LRU misses) */
    uint64_t files_closed;    /* LRU evictions */
} engine_budget_stats_t;
void engine_budget_get_stats(engine_budget_t *b, engine_budget_stats_t *s);

/* Levels of the log callback (same order as st_log's). */
enum { ENGINE_LOG_INFO = 1, ENGINE_LOG_WARN = 2, ENGINE_LOG_ERROR = 3 };
/* One line, no newline, e.g. "flush failed: partition 1700000000000: No
 * space left on device". Called from engine threads (never with a lock that
 * engine calls need); it must not call back into the engine. */
typedef void (*engine_log_cb)(void *arg, int level, const char *msg);

/* A per-metric retention: the series whose __name__ is `metric` keep
 * samples for `ms` (> 0) only. */
typedef struct engine_metric_retention {
    const char *metric;
    int64_t ms;
} engine_metric_retention_t;

typedef struct engine_opts {
    engine_wal_mode_t wal_durability;
    uint32_t wal_sync_interval_ms; /* PERIODIC: interval (default 100) */
    int64_t partition_ms;          /* time partition length (default 1 day) */
    int64_t retention_ms;          /* 0 = keep forever */
    size_t memtable_max_bytes;     /* flush the head past this (default 64 MiB) */
    int64_t memtable_max_age_ms;   /* flush the head when older (default 60 s) */
    int background;                /* 1 (default): flush/compact on an engine thread;
                                      0: only when engine_flush/engine_compact are called */
    /* --- limits (issue 11) --- */
    engine_budget_t *budget;      /* shared node limits; NULL (default): the engine
                                     makes a private one from engine_budget_opts_default */
    int64_t max_future_ms;        /* samples with ts > now + this are refused and counted
                                     (too_far_future); 0 (default) = no limit */
    uint32_t head_max_partitions; /* a head spanning more partitions flushes its oldest
                                     ones early (default 64; 0 = no limit) */
    int64_t close_max_ms;         /* engine_close flushes the head only if it can within
                                     about this; else the head stays in the WAL and is
                                     replayed at the next open (default 5000; 0 = always
                                     flush; with ENGINE_WAL_NONE it always flushes) */
    engine_log_cb log;            /* failures and recoveries, one line each (NULL: none) */
    void *log_arg;
    /* per-metric retentions (copied by engine_open; NULL/0 (default): none):
     * a series' samples older than now - its metric's ms are never read
     * (engine_query), and the retention pass (every minute, or
     * engine_apply_retention) drops a partition they all cover whole, or
     * compacts one where some series is covered whole */
    const engine_metric_retention_t *metric_retention;
    size_t n_metric_retention;
    /* series keys (engine_keys_resolve): the labels a key encodes, into
     * out[0, *n) (at most cap; 0 or a negative ST_E* code). Needed by a
     * writer that passes a series by key and id without its labels (NULL:
     * such writes are refused with ST_EINVAL) */
    int (*key_labels)(const uint8_t *key, size_t len, st_label_t *out, size_t cap, size_t *n);
} engine_opts_t;

/* Fill `o` with the defaults above. */
void engine_opts_default(engine_opts_t *o);

/*
 * Open (creating if needed) the engine in `dir`; replays the WAL. On failure
 * engine_last_error() says why in one line (file, offset, reason).
 */
int engine_open(const char *dir, const engine_opts_t *opts, engine_t **out);
/*
 * Detail of the last failure on this thread ("" if none), or a warning from
 * the last successful engine_open (e.g. a torn WAL tail that was cut).
 */
const char *engine_last_error(void);
/*
 * Stop background work, flush the head to segments, release everything.
 * Bounded in time (opts.close_max_ms): a head too large to flush in time, or
 * a flush that fails, is left in the WAL (replayed at the next open) instead.
 */
int engine_close(engine_t *e);

/* One series' samples in a write: labels sorted by name (st_labels_sort). */
typedef struct engine_series_batch {
    const st_label_t *labels;
    size_t nlabels;
    const int64_t *ts;
    const double *values;
    size_t n;
} engine_series_batch_t;

/*
 * A series' key in a write (engine_write_keyed): its labels in the
 * writer's own canonical encoding (the same labels always give the same
 * bytes, as a protobuf encoder does). The engine remembers key -> series id
 * once a write resolved the series by its labels, and engine_keys_resolve
 * gives the id of a known key back: a later write passes that id
 * (id1 = id + 1) with the key and may leave the labels out (NULL, 0): no
 * decoding, hashing and index lookup of labels for a series written before.
 */
typedef struct engine_series_key {
    const uint8_t *key; /* NULL: none */
    uint32_t len;
    uint32_t id1; /* 0: resolve by labels; else engine_keys_resolve's id + 1 */
    /* ENGINE_REF_LEN bytes the writer names this key by from now on
     * (engine_keys_resolve_refs), kept with the key once the write
     * resolved it; NULL: none */
    const uint8_t *ref;
} engine_series_key_t;

/*
 * Series ids of known keys: ids[i] for k[i] (its key and len; id1 is not
 * read), UINT32_MAX for a key not seen (yet), not kept, or NULL. Returns how many were found. Keys
 * are kept for the engine's life (ids never change; deleted series keep
 * theirs), up to ENGINE_KEYS_MAX_BYTES of keys per engine, each at most
 * ENGINE_KEY_MAX bytes.
 */
#define ENGINE_KEYS_MAX_BYTES (32u << 20)
#define ENGINE_KEY_MAX 4096u
size_t engine_keys_resolve(engine_t *e, const engine_series_key_t *k, size_t n, uint32_t *ids);
/*
 * Keys by reference: a writer that names its keys by references (16
 * bytes it chose, e.g. a seeded 128-bit hash of the key: equal references
 * are taken to be the same key) passes engine_series_key_t.ref with a key
 * once; after that write, out[i] for refs[i] is that key (in the engine's
 * own copy: valid for the engine's life) with id1 set, ready for
 * engine_write_keyed without labels; {0} for a reference not known (then
 * the writer sends the key again). Only a kept key gets references; the
 * references are forgotten all at once when they outnumber the keys four
 * to one (a writer that restarts with new ones). Returns how many were
 * found.
 */
#define ENGINE_REF_LEN 16
size_t engine_keys_resolve_refs(engine_t *e, const uint8_t *const *refs, size_t n,
                                engine_series_key_t *out);

/*
 * Write samples for `n` series. Samples in partitions already past the
 * retention period are dropped and counted (samples_too_old), and so are
 * samples more than max_future_ms ahead of the clock (too_far_future); a
 * series all of whose samples are dropped is not added to the index. The
 * batch is validated first (labels against the limits of st_labels.h); on a
 * validation error nothing is written and *bad (if non-NULL) is set to the
 * index of the offending series. Returns 0 once the batch is durable per the
 * WAL mode; ST_EBUSY / ST_ELIMIT as engine_write_ex (engine_last_error()
 * holds the reason).
 */
int engine_write(engine_t *e, const engine_series_batch_t *b, size_t n, size_t *bad);

/*
 * What a write did and what it refused. Counts are ADDED to (zero the struct
 * with engine_write_result_init once per client request): one result passed
 * to the calls of one request (e.g. one per shard, in sequence — never
 * shared by concurrent calls) sums them, and max_new_series_per_write then
 * applies to the whole request (new_series counts the series created so
 * far). code/limit/reason keep the FIRST refusal.
 */
typedef struct engine_write_result {
    uint64_t written;         /* samples accepted (durable when the call returned 0
                                 or ST_ELIMIT) */
    uint64_t too_old;         /* samples dropped: before the retention period */
    uint64_t too_far_future;  /* samples dropped: after now + max_future_ms */
    uint64_t new_series;      /* series created */
    uint64_t series_refused;  /* new series refused by a cardinality limit */
    uint64_t samples_refused; /* their samples, plus everything of an ST_EBUSY write */
    int code;                 /* 0, ST_EBUSY or ST_ELIMIT (first refusal) */
    const char *limit;        /* its limit's name: "head_max_bytes", "max_series",
                                 "max_new_series_per_hour", "max_new_series_per_write";
                                 NULL if none */
    uint64_t limit_value;     /* that limit's configured value */
    uint32_t retry_after_s;   /* ST_EBUSY: suggested Retry-After (seconds, >= 1) */
    size_t bad;               /* validation error: index of the offending series */
    char reason[192];         /* one line naming the limit, e.g. "max_series limit
                                 20000000 reached on this node" ("" if none) */
} engine_write_result_t;

void engine_write_result_init(engine_write_result_t *r);

/*
 * engine_write with a result. Returns:
 *   0          everything not dropped (too old / too far in the future) was
 *              written and is durable;
 *   ST_EBUSY   the node's head is over head_max_bytes: NOTHING was written
 *              (nor logged); retry after r->retry_after_s (HTTP: 503 +
 *              Retry-After);
 *   ST_ELIMIT  a cardinality limit refused the new series counted in
 *              r->series_refused; every other series was written and is
 *              durable (HTTP: partial write, the reason names the limit);
 *   another negative ST_E* code: as engine_write (r->bad on validation).
 */
int engine_write_ex(engine_t *e, const engine_series_batch_t *b, size_t n,
                    engine_write_result_t *r);

/*
 * engine_write_ex with a version for every sample of the call (see
 * VERSIONS; 0 = unversioned, what engine_write_ex writes). A sample whose
 * (series, timestamp) already holds a higher version is accepted (counted
 * in r->written) but hidden by the newer value.
 */
int engine_write_v(engine_t *e, const engine_series_batch_t *b, size_t n, uint64_t version,
                   engine_write_result_t *r);
/*
 * engine_write_v with keys: k[i] (k may be NULL: none) for b[i]. A series
 * with k[i].id1 set is that id; its labels may then be NULL (0), and
 * opts.key_labels must be set (a write that a newer delete may hide needs
 * them). A series without an id is resolved by its labels, and its key
 * (if any) kept. ST_EINVAL (r->bad) for an id the engine never gave.
 */
int engine_write_keyed(engine_t *e, const engine_series_batch_t *b, const engine_series_key_t *k,
                       size_t n, uint64_t version, engine_write_result_t *r);

/*
 * Select series matching all `m` and iterate their samples in [mint, maxt]
 * (inclusive). Prometheus semantics: a matcher that matches "" also selects
 * series that lack the label; at least one matcher must not match "".
 */
int engine_query(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                 engine_iter_t **out);
/*
 * Next series with at least one sample in range: returns 1 and sets the
 * outputs (valid until the next call), 0 at the end, or a negative error.
 * Samples are sorted by timestamp, no duplicates.
 */
int engine_iter_next(engine_iter_t *it, const st_label_t **labels, size_t *nlabels,
                     const int64_t **ts, const double **values, size_t *n);
void engine_iter_destroy(engine_iter_t *it);
/*
 * The versions of the samples the last engine_iter_next returned (same
 * length and order as its ts/values, valid as long as they are): exact for
 * samples in the head, the block's vmax for flushed ones (see VERSIONS).
 */
const uint64_t *engine_iter_versions(const engine_iter_t *it);
/*
 * Drop from ts/v/ver (n samples of the series with these sorted labels;
 * ver may be NULL: all 0) the samples a local tombstone covers: the series
 * was selected by a delete whose range holds them and, for a versioned
 * delete, the sample's version is lower than the delete's. For data arriving from
 * another replica by repair, which must not bring back what this replica
 * deleted while the peer has not heard of the delete yet. Returns the
 * number kept (compacted in place, order kept).
 */
size_t engine_tomb_drop_masked(engine_t *e, const st_label_t *l, size_t nl, int64_t *ts, double *v,
                               uint64_t *ver, size_t n);
/*
 * Samples per series matching `m` in [mint, maxt] (inclusive), the number
 * engine_query would return, read mostly from segment block headers: a
 * block wholly in range that no tombstone masks adds its stored count; the
 * blocks the range cuts, masked blocks and the heads are decoded; a series
 * whose sources overlap in time (possible duplicates) is read in full.
 * cb runs once per series with a nonzero count; a nonzero return stops the
 * scan and is returned. stats (may be NULL) gets the figures.
 */
typedef struct engine_count_stats {
    uint64_t series;       /* series with samples in range */
    uint64_t samples;      /* their total */
    uint64_t from_headers; /* samples counted from block headers, not decoded */
    uint64_t decoded;      /* samples decoded */
    uint64_t slow_series;  /* series read in full (overlapping sources) */
    uint64_t ts_cached;    /* engine_tstats: samples of whole blocks fingerprinted from
                              the cache (their timestamps decoded once per segment) */
} engine_count_stats_t;
#define ENGINE_COUNT_NO_STALE                                                                      \
    1 /* leave out Prometheus staleness markers (as range                                          \
       * selections do): only blocks with a decimal value                                          \
       * coding (no NaN) count from headers */
typedef int (*engine_count_cb)(void *arg, const st_label_t *labels, size_t nlabels, uint64_t count);
int engine_count(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                 int flags, engine_count_cb cb, void *arg, engine_count_stats_t *stats);

/*
 * The same walk, fingerprinting each series' set of timestamps in [mint,
 * maxt] (what engine_query returns; staleness markers left out with
 * ENGINE_COUNT_NO_STALE): their number, the sum of engine_ts_mix() over
 * them (mod 2^64: the same set gives the same sum however it is stored),
 * the first and the last. Two series with equal fingerprints hold the same
 * timestamps unless two different sets collide in the 64-bit sum. Whole
 * blocks in range decode only their timestamps, once: the segment keeps
 * each block's sum (9 bytes per block of a segment fingerprinted once, for
 * its life). cb as for engine_count; stats->from_headers counts the samples
 * of such blocks, stats->ts_cached those whose sum was kept.
 */
typedef struct engine_tstats {
    uint64_t count;
    uint64_t hash;
    int64_t mint, maxt;
} engine_tstats_t;
typedef int (*engine_tstats_cb)(void *arg, const st_label_t *labels, size_t nlabels,
                                const engine_tstats_t *s);
int engine_tstats(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                  int flags, engine_tstats_cb cb, void *arg, engine_count_stats_t *stats);
/* The 64-bit word a timestamp adds to a fingerprint (a bijection). */
uint64_t engine_ts_mix(int64_t t);

/*
 * Each series matching `m` with a sample in [mint, maxt]: its newest
 * timestamp there (oldest: its oldest), read from segment block headers
 * where a block lies wholly in range (engine_topn.c). A hint on one side:
 * tombstones are not applied, so a deleted sample may be the edge. cb
 * runs once per such series; a nonzero return stops the scan and is
 * returned.
 */
typedef int (*engine_edge_cb)(void *arg, const st_label_t *labels, size_t nlabels, int64_t ts);
int engine_edge(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                int oldest, engine_edge_cb cb, void *arg);

/*
 * Position of the iterator among the selected series (0 = before the first),
 * and a jump to such a position: a paged export resumes where the previous
 * page stopped. Positions are stable for one query, not across queries that
 * see newly created series.
 */
size_t engine_iter_pos(const engine_iter_t *it);
void engine_iter_seek(engine_iter_t *it, size_t pos);
/* How many series the index selects for m, whatever their samples (no
 * segment is looked at): a bound on what engine_query would return. */
int engine_select_count(engine_t *e, const st_matcher_t *m, size_t nm, size_t *count);

/*
 * Label names, or values of one label, over series matching `m` (nm may be
 * 0: all series). `cb` gets each distinct string once, sorted, not
 * NUL-terminated; a non-zero return stops the walk and is returned.
 */
typedef int (*engine_str_cb)(void *arg, const char *s, size_t len);
int engine_label_names(engine_t *e, const st_matcher_t *m, size_t nm, engine_str_cb cb, void *arg);
int engine_label_values(engine_t *e, const char *name, const st_matcher_t *m, size_t nm,
                        engine_str_cb cb, void *arg);

/*
 * Delete (engine_delete.c): the samples in [start, end] (inclusive) of the
 * series matching all `m` (at least one matcher; Prometheus' selection
 * rules), written before this call. Reads stop returning them at once;
 * later writes (any timestamp) are kept. Durable on return (WAL record +
 * <dir>/tombstones). The bytes go when compaction next rewrites each
 * partition concerned (engine_get_stats: purge_eta_ms), or at once with
 * engine_purge. A series left with no sample disappears from label names /
 * values and engine_label_pairs until it is written again.
 * id: the delete's identity across deliveries (non-zero: a second call with
 * the same id does nothing and sets r->duplicate). dry_run: only count.
 * r: series with samples in range and those samples (before the delete).
 */
typedef struct engine_delete_result {
    uint64_t series;
    uint64_t samples;
    int duplicate;
} engine_delete_result_t;
int engine_delete(engine_t *e, const st_matcher_t *m, size_t nm, int64_t start, int64_t end,
                  uint64_t id, int dry_run, engine_delete_result_t *r);
/*
 * engine_delete with a version (see VERSIONS; 0 = engine_delete): the
 * samples in range of the selected series with a LOWER version are hidden,
 * now and when they arrive later; higher versions stay, whenever they
 * arrive. Kept (durably) even when it selects nothing yet.
 */
int engine_delete_v(engine_t *e, const st_matcher_t *m, size_t nm, int64_t start, int64_t end,
                    uint64_t id, uint64_t version, int dry_run, engine_delete_result_t *r);
/*
 * The tombstones that travel between replicas (repair): versioned, with a
 * non-zero id, so that applying one again elsewhere (engine_delete_v with
 * its id and version) has the same outcome and a repeat is a no-op.
 * engine_tomb_list calls cb for each from position `from` (positions are
 * stable while the engine is open); a non-zero return stops the walk and
 * is returned, and *next (may be NULL) gets the position to resume at (the
 * stopping tombstone's own). The info's strings are valid until close.
 * engine_tomb_summary: their count and an order-independent hash of their
 * (id, version), equal on two replicas holding the same ones.
 */
typedef struct engine_tomb_info {
    uint64_t id, version;
    int64_t start, end; /* inclusive, ms */
    const st_matcher_t *m;
    size_t nm;
} engine_tomb_info_t;
typedef int (*engine_tomb_cb)(void *arg, const engine_tomb_info_t *t);
int engine_tomb_list(engine_t *e, size_t from, engine_tomb_cb cb, void *arg, size_t *next);
void engine_tomb_summary(engine_t *e, uint64_t *count, uint64_t *hash);
/* Compact now every partition holding deleted samples; *bytes (may be NULL)
 * gets the bytes this freed. */
int engine_purge(engine_t *e, uint64_t *bytes);

/* Flush the whole head to segments now (synchronously). */
int engine_flush(engine_t *e);
/* Compact every partition that has more than one segment (synchronously). */
int engine_compact(engine_t *e);
/* Replace the dynamic per-metric retentions (copied; n 0 clears them; an
 * entry with ms <= 0 is ignored). They join opts.metric_retention, the
 * shorter winning for a metric named in both, and are honoured like it
 * (reads at once, the retention pass at its next run). Thread-safe.
 * 0 or ST_ENOMEM (the retentions held stay). */
int engine_set_metric_retention(engine_t *e, const engine_metric_retention_t *r, size_t n);
/* Drop partitions that end before now - retention, and apply the
 * per-metric retentions (synchronously). */
int engine_apply_retention(engine_t *e, int64_t now_ms);
/* Drop every partition (its segments) that ends at or before `cutoff` (ms);
 * the head is untouched. Used by downsampling (engine_tier.h). */
int engine_drop_before(engine_t *e, int64_t cutoff);
/* Start of the oldest partition with segments starting at or after
 * `after`, or ST_ENOENT if none. */
int engine_partition_after(engine_t *e, int64_t after, int64_t *start);
/* Wall-clock ms of the last segment written to the partition starting at
 * `start` in this process (0: none since open, or no such partition). */
int64_t engine_partition_flushed_ms(engine_t *e, int64_t start);

typedef struct engine_stats {
    uint64_t series;
    uint64_t head_samples;
    uint64_t head_bytes;
    uint64_t segments;
    uint64_t partitions;
    uint64_t disk_bytes; /* segments + index + WAL */
    uint64_t samples_written;
    uint64_t samples_out_of_order;
    uint64_t flushes;
    uint64_t compactions;
    uint64_t flush_errors;    /* failed flush attempts (retried; see engine_last_error) */
    uint64_t samples_too_old; /* dropped: older than the retention period */
    uint64_t wal_bytes;
    uint64_t wal_syncs;
    /* --- limits and failures (issue 11) --- */
    uint64_t samples_too_far_future; /* dropped: after now + max_future_ms */
    uint64_t series_refused;         /* new series refused by a cardinality limit */
    uint64_t samples_refused;        /* samples of refused series and of busy writes */
    uint64_t writes_refused_busy;    /* writes refused: node head over head_max_bytes */
    uint64_t open_files;             /* segment files of this engine open now */
    uint64_t head_partitions;        /* partitions the in-memory head spans */
    uint64_t early_flushes;          /* flushes started by head_max_partitions */
    uint64_t idle_flushes;           /* flushes started by writes stopping after a burst */
    uint64_t wal_errors;             /* failed WAL appends / syncs / rotations */
    uint64_t compaction_errors;
    uint64_t retention_errors;
    uint32_t degraded; /* 1 while engine_health() reports degraded */
    /* --- deletion (issue 14) --- */
    uint64_t tombstones;            /* kept (done ones too: idempotence) */
    uint64_t tombstones_pending;    /* older data still on disk in their range */
    int64_t purge_eta_ms;           /* until the background compaction purges them (0: none) */
    uint64_t deletes;               /* deletes applied */
    uint64_t samples_deleted;       /* samples they removed */
    uint64_t purge_bytes_reclaimed; /* bytes compaction freed while applying tombstones */
    uint64_t purges;                /* such compactions */
    uint64_t segment_opens;         /* segment files opened (mmap) by readers */
    uint64_t segment_reads_skipped; /* segment reads avoided by in-memory summaries */
    uint64_t
        writes_backpressure_cut; /* writes acknowledged after waiting the longest for a flush */
    /* --- per-metric retentions (opts.metric_retention) --- */
    uint64_t metric_retention_drops;    /* partitions dropped: every series past its cut */
    uint64_t metric_retention_rewrites; /* partitions compacted: some series past its cut */
    /* --- copies between replicas (engine_copy.c) --- */
    uint64_t segments_installed; /* segment files received from a replica and installed */
    /* --- versioned deletes --- */
    uint64_t samples_hidden_late; /* samples of writes older than a delete that arrived
                                     after it (left out: engine_delete_v) */
    uint64_t series_key_bytes;    /* memory of the series keys (engine_write_keyed) */
} engine_stats_t;
void engine_get_stats(engine_t *e, engine_stats_t *s);

/*
 * Cardinality (engine_status.c): over the series matching m (every series
 * when nm == 0), *series gets their count and cb every distinct label pair
 * they carry (__name__ included) with the number of those series carrying
 * it, in no particular order; the label's bytes are valid during the call.
 * A non-zero return from cb stops the walk and is returned. Returns 0,
 * ST_EINVAL (matchers that select nothing by themselves, a bad regex:
 * engine_last_error) or ST_ENOMEM.
 */
typedef int (*engine_pair_cb)(void *arg, const st_label_t *pair, uint64_t series);
int engine_label_pairs(engine_t *e, const st_matcher_t *m, size_t nm, uint64_t *series,
                       engine_pair_cb cb, void *arg);

/*
 * Health: 0 = healthy; 1 = degraded, with a one-line reason in `reason`
 * (cap bytes, NUL-terminated), e.g. "flush failing: No space left on device
 * (partition 1764892800000)" or "WAL write failing: ...". Degraded lasts
 * from a failed flush / WAL write / compaction / retention pass until the
 * same operation next succeeds; the engine retries by itself (with back-off,
 * never giving up) and needs no restart.
 */
int engine_health(engine_t *e, char *reason, size_t cap);

/*
 * Digests (engine_digest.c): a compact summary of what the engine holds, so
 * that two replicas of a shard find what differs between them without
 * exchanging the data (anti-entropy, docs/operations.md "Repair").
 *
 * Samples are grouped by time window (window_ms, by default the partition
 * length) and by series bucket (a hash of the label set modulo nbuckets).
 * Each (window, bucket) cell holds the sample count and the wrapping sum of
 * a 64-bit hash of every sample (series key, timestamp, value bits): the sum
 * does not depend on the order samples are visited in, so two engines
 * holding the same samples have equal cells, and a cell that differs names
 * the only series (bucket) and time range (window) worth streaming. A later
 * per-sample version enters the sample hash (engine_digest_sample).
 *
 * Size: nbuckets * (8 + count varint) bytes per window with data, encoded
 * sparsely (empty cells cost nothing).
 */
#define ENGINE_DIGEST_BUCKETS_MAX 65536u
#define ENGINE_DIGEST_WINDOWS_MAX 1000000u
#define ENGINE_DIGEST_CELLS_MAX (4u << 20) /* windows * nbuckets */

typedef struct engine_digest {
    int64_t window_ms;
    uint32_t nbuckets;
    size_t n;        /* windows with at least one sample, ascending start */
    size_t cap;      /* windows the arrays have room for */
    int64_t *start;  /* [n] */
    uint64_t *hash;  /* [n * nbuckets]: cell (w, b) at w * nbuckets + b */
    uint64_t *count; /* [n * nbuckets]: samples in the cell */
} engine_digest_t;

/* The bucket of a series (labels sorted), for nbuckets >= 1. */
uint32_t engine_digest_bucket(const st_label_t *l, size_t nl, uint32_t nbuckets);
/* The hash one sample adds to its cell; key = st_labels_hash of its series. */
uint64_t engine_digest_sample(uint64_t key, int64_t ts, double v);
/* An empty digest (ST_EINVAL: nbuckets 0 or over the maximum, window_ms < 1). */
int engine_digest_create(uint32_t nbuckets, int64_t window_ms, engine_digest_t **out);
/* Add one series' samples (ts ascending or not). ST_ELIMIT past
 * ENGINE_DIGEST_WINDOWS_MAX windows or ENGINE_DIGEST_CELLS_MAX cells, ST_ENOMEM. */
int engine_digest_add(engine_digest_t *d, const st_label_t *l, size_t nl, const int64_t *ts,
                      const double *v, size_t n);
/* The digest of everything the engine holds now (window_ms 0: the
 * partition length). Reads like a query of all series over all time, one
 * series at a time. */
int engine_digest(engine_t *e, uint32_t nbuckets, int64_t window_ms, engine_digest_t **out);
/* Add the samples in [mint, maxt] to d (the same read, over that range). */
int engine_digest_range(engine_t *e, engine_digest_t *d, int64_t mint, int64_t maxt);
/* Add from's cells into into (same shape, else ST_EINVAL): the digest of
 * the union of two disjoint sample sets. */
int engine_digest_merge(engine_digest_t *into, const engine_digest_t *from);
void engine_digest_destroy(engine_digest_t *d);
/* Encode into a malloc'd buffer (*out, *len); decode (ST_ECORRUPT on any
 * malformed or out-of-limit input, never reading past p + len). */
int engine_digest_encode(const engine_digest_t *d, uint8_t **out, size_t *len);
int engine_digest_decode(const uint8_t *p, size_t len, engine_digest_t **out);
/*
 * Compare two digests of the same shape (nbuckets, window_ms; else
 * ST_EINVAL): cb(arg, start, bucket, count_a, count_b) for every cell that
 * differs, windows ascending, buckets ascending within a window (a window
 * only one side has counts as all-zero on the other). A non-zero return
 * from cb stops the walk and is returned; else the number of differing
 * cells is returned.
 */
typedef int (*engine_digest_diff_cb)(void *arg, int64_t start, uint32_t bucket, uint64_t count_a,
                                     uint64_t count_b);
int64_t engine_digest_diff(const engine_digest_t *a, const engine_digest_t *b,
                           engine_digest_diff_cb cb, void *arg);
/* The engine's partition length (ms). */
int64_t engine_partition_ms(const engine_t *e);

/*
 * Copying sealed segment files between replicas (engine_copy.c): "copy
 * shard S from A to B" moves A's segment files as files where B has no
 * segment of a partition, instead of streaming their samples.
 *
 * Segments name series by ids local to one engine (series.log), so a file
 * is never installed as it is: the receiver loads the sender's series.log
 * (a prefix of it that covers every id the listed files use), verifies the
 * file (segment format, every block CRC), maps each id to its own id
 * through the labels (creating series as a write would, under the same
 * limits) and writes the blocks, unchanged, into a segment of its own with
 * a new flush sequence number (tmp + fsync + rename + directory fsync),
 * then publishes it as if it had been flushed locally.
 *
 * Partitions with a delete still pending over them are not listed (their
 * files hold samples the sender's reads hide); a partition the receiver
 * holds anything of (a segment, samples in a head) or has a delete over
 * is not installed into (the pull repair handles those). Installed blocks
 * keep their versions (vmax), so a later write of an older version still
 * loses to them on read, as it would after a local flush.
 */
typedef struct engine_seg_file {
    int64_t part_start;
    uint64_t seq_min, seq_max;
    uint64_t size;
    uint32_t crc; /* CRC-32C of the whole file (0 when not asked for) */
    int sealed;   /* neither head holds samples of the partition */
} engine_seg_file_t;

/* The listable segment files, ascending (partition, seq_max): of every
 * partition (nparts 0) or of those starting at parts[]; with_crc reads each
 * file once for its CRC. *series_log: the bytes of series.log that define
 * every series those files use. *out malloc'd (NULL when *n is 0). */
int engine_copy_list(engine_t *e, const int64_t *parts, size_t nparts, int with_crc,
                     engine_seg_file_t **out, size_t *n, uint64_t *series_log);
/* Read up to cap bytes at off of the listed file f (its part_start,
 * seq_min, seq_max; ST_ENOENT once compaction or retention replaced it) or,
 * with f NULL, of series.log below limit bytes. *got 0: end of file. */
int engine_copy_read(engine_t *e, const engine_seg_file_t *f, uint64_t limit, uint64_t off,
                     uint8_t *buf, size_t cap, size_t *got);

typedef struct engine_copy engine_copy_t;
/* Start receiving files into e: a scratch directory under e's directory
 * (a leftover one is removed first). */
int engine_copy_begin(engine_t *e, engine_copy_t **out);
/* Path of a scratch file named name (a segment being received, the
 * sender's series.log as "series.log"). */
const char *engine_copy_path(engine_copy_t *c, const char *name, char *buf, size_t cap);
/* Load the sender's series.log received at engine_copy_path("series.log"). */
int engine_copy_load_series(engine_copy_t *c);
/* 1 when e holds nothing of the partition starting at start (no segment,
 * no sample in either head) and no delete over it (a file may be
 * installed), else 0. */
int engine_copy_part_empty(engine_t *e, int64_t start);
/* Verify the received segments at paths[0..n) (scratch paths, removed
 * after; ascending sequence, the files of one partition of the sender)
 * and install them into partition start with their series mapped, all or
 * none: 0, ST_ECORRUPT (bad file, unknown series id), ST_EEXIST (the
 * partition has data here, or got some meanwhile), ST_ELIMIT (a series
 * limit refused a series), ST_EINVAL (the partition length differs).
 * *samples: how many samples they hold. */
int engine_copy_install(engine_copy_t *c, int64_t start, const char *const *paths, size_t n,
                        uint64_t *samples);
/* Remove the scratch directory and free. NULL is a no-op. */
void engine_copy_end(engine_copy_t *c);

/*
 * Sealed partitions found equal (anti-entropy skips them): a partition's
 * token is a hash of its listed files (sequence range and size of each),
 * so a flush, compaction, retention rewrite or installed copy changes it;
 * a late write makes it unsealed (a head holds samples of it) and a
 * pending delete unlisted until its purge rewrites the files. A partition
 * sealed on both replicas whose two tokens are those recorded when the two
 * were last found equal need not be compared again.
 */
typedef struct engine_part_token {
    int64_t start;
    uint64_t token;
    int sealed; /* every file of it listed sealed */
} engine_part_token_t;

/* The partitions of a file list (any order), sorted by start (*out
 * malloc'd, NULL when *nout is 0). */
int engine_copy_parts(const engine_seg_file_t *f, size_t n, engine_part_token_t **out,
                      size_t *nout);

typedef struct engine_part_equal {
    int64_t start;
    uint64_t mine, theirs; /* the two tokens when last found equal */
} engine_part_equal_t;

/* The partitions not to compare (written to skip[], capacity nmine, in
 * ascending order; returns how many): sealed in mine and in theirs (both
 * sorted by start) with the tokens recorded in eq (any order). */
size_t engine_copy_skip(const engine_part_token_t *mine, size_t nmine,
                        const engine_part_token_t *theirs, size_t ntheirs,
                        const engine_part_equal_t *eq, size_t neq, int64_t *skip);
/* Its partition in a sorted list (NULL when absent). */
const engine_part_token_t *engine_copy_part_find(const engine_part_token_t *v, size_t n,
                                                 int64_t start);

#ifdef __cplusplus
}
#endif

#endif
