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
 *    (last write wins); reads never return duplicates;
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

typedef struct engine_opts {
    engine_wal_mode_t wal_durability;
    uint32_t wal_sync_interval_ms; /* PERIODIC: interval (default 100) */
    int64_t partition_ms;          /* time partition length (default 1 day) */
    int64_t retention_ms;          /* 0 = keep forever */
    size_t memtable_max_bytes;     /* flush the head past this (default 64 MiB) */
    int64_t memtable_max_age_ms;   /* flush the head when older (default 60 s) */
    int background;                /* 1 (default): flush/compact on an engine thread;
                                      0: only when engine_flush/engine_compact are called */
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
/* Flush the head to segments, stop background work, release everything. */
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
 * Write samples for `n` series. Samples in partitions already past the
 * retention period are dropped and counted (samples_too_old); a series all
 * of whose samples are dropped is not added to the index. The batch is
 * validated first (labels against
 * the limits of st_labels.h); on a validation error nothing is written and
 * *bad (if non-NULL) is set to the index of the offending series. Returns 0
 * once the batch is durable per the WAL mode.
 */
int engine_write(engine_t *e, const engine_series_batch_t *b, size_t n, size_t *bad);

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
 * Position of the iterator among the selected series (0 = before the first),
 * and a jump to such a position: a paged export resumes where the previous
 * page stopped. Positions are stable for one query, not across queries that
 * see newly created series.
 */
size_t engine_iter_pos(const engine_iter_t *it);
void engine_iter_seek(engine_iter_t *it, size_t pos);

/*
 * Label names, or values of one label, over series matching `m` (nm may be
 * 0: all series). `cb` gets each distinct string once, sorted, not
 * NUL-terminated; a non-zero return stops the walk and is returned.
 */
typedef int (*engine_str_cb)(void *arg, const char *s, size_t len);
int engine_label_names(engine_t *e, const st_matcher_t *m, size_t nm, engine_str_cb cb, void *arg);
int engine_label_values(engine_t *e, const char *name, const st_matcher_t *m, size_t nm,
                        engine_str_cb cb, void *arg);

/* Flush the whole head to segments now (synchronously). */
int engine_flush(engine_t *e);
/* Compact every partition that has more than one segment (synchronously). */
int engine_compact(engine_t *e);
/* Drop partitions that end before now - retention (synchronously). */
int engine_apply_retention(engine_t *e, int64_t now_ms);

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

#ifdef __cplusplus
}
#endif

#endif
