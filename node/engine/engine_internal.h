/*
 * engine_internal.h — what the engine's own files share (not a public API).
 *
 * Data dir layout:
 *   <dir>/LOCK                       flock'd while open (one process per dir)
 *   <dir>/series.log                 series definitions (idx.h)
 *   <dir>/wal/%08u.wal               write-ahead log (wal.h)
 *   <dir>/parts/<start_ms>/<max>-<min>.seg
 *                                    segments of the partition starting at
 *                                    start_ms; <max>/<min> are the 16-hex-digit
 *                                    flush sequence numbers the file covers
 *                                    (min == max for a flushed segment; a
 *                                    compacted one covers its inputs' range)
 *
 * Locks (always taken in this order, never held across disk I/O except
 * where noted):
 *   flush_mu   one flush / compaction / retention pass at a time
 *   head_mu    the active and frozen heads; WAL appends happen under it so
 *              that freezing the head and rotating the WAL are one step
 *   idx_lock   rwlock over idx_t (read: lookups, selects, labels; write: add,
 *              persist — persist fsyncs series.log under it, a small file)
 *   parts_mu   the partition list and segment references
 */
#ifndef ENGINE_INTERNAL_H
#define ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "engine.h"
#include "engine_head.h"
#include "idx.h"
#include "seg.h"
#include "st_buf.h"
#include "wal.h"

#define ENGINE_BLOCK_MAX 4096 /* samples per segment block */
#define ENGINE_DEFAULT_MAX_OPEN_FILES 1024
/* longest a write waits for a flush behind (backpressure) before it is
 * acknowledged anyway (it is in the WAL and head already) */
#define ENGINE_BACKPRESSURE_MAX_MS 250

/* ---- the node budget (engine_budget.c) ---- */

struct engine_budget {
    engine_budget_opts_t o;
    atomic_uint_least64_t head_bytes; /* summed over the engines */
    atomic_uint_least64_t open_files;
    atomic_uint_least64_t files_opened, files_closed;
    pthread_mutex_t mu; /* series, hour window */
    uint64_t series;
    int64_t hour_start; /* ms, aligned to the hour */
    uint64_t hour_new;
    pthread_mutex_t lru_mu; /* the open-file LRU: most recent first */
    struct seg_ref *lru_first, *lru_last;
    pthread_mutex_t flush_mu; /* flushes running at once: at most flush_max */
    pthread_cond_t flush_cv;
    int flushing, flush_max;
};

/* Map the segment (opening it if closed, closing least recently used ones
 * beyond max_open_files); r->seg is valid until seg_ref_unpin. */
int seg_ref_pin(struct seg_ref *r);
void seg_ref_unpin(struct seg_ref *r);
/* Last reference gone: take it out of the LRU and close it. */
void seg_ref_lru_drop(struct seg_ref *r);
/* Wait for a turn to write a frozen head out (flushes at once across the
 * node's engines: half the CPUs, at least one), then give it back. */
void budget_flush_begin(engine_budget_t *b);
void budget_flush_end(engine_budget_t *b);
/* Is the node's head at or over head_max_bytes? */
int budget_head_over(engine_budget_t *b);
/* An engine's head (or series count) went from `before` to `after`. */
void budget_head_charge(engine_budget_t *b, uint64_t before, uint64_t after);
void budget_series_charge(engine_budget_t *b, uint64_t before, uint64_t after);
/* Count one new series against the limits: NULL when admitted, else the
 * name of the limit that refuses it (*limit_value its value). this_write:
 * series already created by the same write. */
const char *budget_admit_series(engine_budget_t *b, uint64_t this_write, uint64_t *limit_value);

enum {
    WAL_REC_SERIES = 1,
    WAL_REC_SAMPLES = 2,
    WAL_REC_TOMB = 3,      /* tomb.h record */
    WAL_REC_SAMPLES_V = 4, /* a version, then a SAMPLES payload */
    WAL_REC_CHAIN = 5,     /* SAMPLES, timestamp deltas running on across series */
    WAL_REC_CHAIN_V = 6    /* a version, then a CHAIN payload (what writes log now) */
};

/* ---- head: in-memory samples per series (engine_head.h) ---- */

/* The ids the index selects for m, under idx_lock (engine_query.c); free
 * *ids. On an error the index's reason is the engine's last error. */
int engine_select_ids(engine_t *e, const st_matcher_t *m, size_t nm, uint32_t **ids, size_t *n);
/* ---- segments and partitions (engine_flush.c) ---- */

/*
 * A segment file of a partition. The file is opened (mmap) lazily, on
 * seg_ref_pin, and kept in the node budget's LRU of open files; `seg` is
 * valid only between seg_ref_pin and seg_ref_unpin. `refs` keeps the
 * reference itself alive (partition list, iterators), `pins` the mapping.
 */
typedef struct seg_ref {
    seg_t *seg; /* NULL while closed; guarded by the budget's lru_mu */
    char *path;
    uint64_t seq_min, seq_max;
    uint64_t size;       /* file bytes */
    atomic_int refs;     /* the partition's list holds one */
    atomic_int obsolete; /* unlink on last release */
    engine_budget_t *bud;
    atomic_uint_least64_t *eng_open;  /* the owning engine's open-file gauge */
    atomic_uint_least64_t *eng_opens; /* ... and its count of files opened */
    /* what the file holds (time, series ids), kept while it is closed so a
     * reader can skip it unopened; set once (by the writer or the first
     * open), NULL until then */
    _Atomic(seg_summary_t *) sum;
    /* engine_tstats (engine_count.c): per directory entry, the fingerprint
     * of its block's timestamps, computed the first time it is asked for
     * (the file never changes); NULL until then, freed with the ref */
    _Atomic(struct seg_tshash *) tsh;
    /* guarded by bud->lru_mu */
    int pins;
    int in_lru;
    struct seg_ref *lru_prev, *lru_next;
} seg_ref_t;

typedef struct part {
    int64_t start, end;
    seg_ref_t **segs; /* ascending seq_max */
    size_t nsegs, cap;
    int64_t last_flush_ms;
    int64_t mret_checked; /* per-metric retention: last check that left it as it was */
    uint64_t mret_seq;    /* ... and the newest segment's seq_max then */
} part_t;

void seg_ref_release(seg_ref_t *r);
/* 0 when r surely holds no sample of `id` in [mint, maxt] (its summary
 * says so; unknown: 1). */
int seg_ref_may_hold(seg_ref_t *r, uint32_t id, int64_t mint, int64_t maxt);
/* The file's time range, if known (1; 0: not summarised yet). */
int seg_ref_range(seg_ref_t *r, int64_t *mint, int64_t *maxt);

/* Kinds of failure engine_health reports (one reason each). */
enum { FAIL_FLUSH, FAIL_WAL, FAIL_COMPACT, FAIL_RETENTION, FAIL_KINDS };

struct engine {
    char *dir;
    engine_opts_t o;
    engine_budget_t *bud;
    int own_bud;             /* bud was made by engine_open (opts.budget NULL) */
    uint64_t charged;        /* head bytes charged to bud; under head_mu */
    uint64_t series_charged; /* series counted in bud */
    pthread_mutex_t health_mu;
    char fail[FAIL_KINDS][224]; /* "" = fine */
    int64_t retry_at_ms;        /* bg: next flush retry after a failure */
    int64_t backoff_ms;
    atomic_uint_least64_t open_files;
    int lock_fd;
    wal_t *wal;
    idx_t *idx;

    pthread_mutex_t flush_mu;
    pthread_mutex_t head_mu;
    pthread_cond_t head_cv; /* signalled when a frozen head is gone */
    head_t *head;
    head_t *frozen;
    int flush_err;         /* last flush's error (0 after a success), under head_mu */
    int64_t last_write_ms; /* wall clock of the last write into the head, under head_mu */
    int bulk;              /* the last flush was of a full head (a burst going on), under head_mu */
    atomic_int settling;   /* an idle flush ended a burst: its partitions get compacted (bg_main) */
    pthread_rwlock_t idx_lock;
    struct engine_keys *keys; /* engine_keys.c */
    pthread_mutex_t parts_mu;
    part_t **parts; /* ascending start */
    size_t nparts, parts_cap;
    uint64_t next_seq;

    pthread_t bg;
    int bg_running;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    int bg_stop;
    atomic_int stopping; /* engine_close: the background flush stops between batches */
    int bg_kick;

    atomic_uint_least64_t samples_written, samples_ooo, flushes, compactions, flush_errors,
        samples_too_old, samples_too_far_future, series_refused, samples_refused, writes_busy,
        early_flushes, wal_errors, compaction_errors, retention_errors, idle_flushes;

    /* tombstones (engine_delete.c); tomb_mu is a leaf lock */
    pthread_mutex_t tomb_mu;
    struct tomb **tombs; /* never freed before close: iterators keep pointers */
    size_t ntombs, tombs_cap;
    atomic_size_t ntombs_live; /* not yet done (something older may still hold data) */
    uint8_t *dead;             /* [series id]: emptied by a delete, not written since */
    size_t dead_cap;
    atomic_size_t ndead;
    int tomb_dirty;                  /* open: a WAL tombstone not in the file yet */
    atomic_uint_least64_t tomb_vmax; /* highest tombstone version (0: none versioned) */
    atomic_uint_least64_t deletes, samples_deleted, purge_bytes, purges;
    atomic_uint_least64_t samples_hidden_late;          /* versioned writes a newer delete hid */
    atomic_uint_least64_t seg_opens, seg_reads_skipped; /* segment files opened; reads skipped */
    atomic_uint_least64_t writes_backpressure_cut; /* writes that stopped waiting for a flush */

    /* per-metric retentions (o.metric_retention points here): sorted by
     * name, names in mret_strs; mret_min the shortest */
    engine_metric_retention_t *mret;
    atomic_size_t nmret;
    char *mret_strs;
    int64_t mret_min;
    /* the table above is the static ones (mret_st*, from the options)
     * merged with the dynamic ones (engine_set_metric_retention), the
     * shorter winning; mret_lock guards it (a leaf lock) */
    pthread_rwlock_t mret_lock;
    engine_metric_retention_t *mret_st;
    size_t nmret_st;
    char *mret_st_strs;
    uint64_t mret_gen; /* parts_mu: bumped by each engine_set_metric_retention */
    atomic_uint_least64_t mret_drops, mret_rewrites; /* partitions dropped / compacted */
    atomic_uint_least64_t segments_installed;        /* engine_copy_install */
};

/* Oldest / newest timestamp the engine stores (+-2^62 ms, about 146 million
 * years): partition arithmetic on them never overflows. */
#define ENGINE_TS_MIN (-(INT64_C(1) << 62))
#define ENGINE_TS_MAX (INT64_C(1) << 62)

/* ---- leaf helpers (engine_util.c; they call nothing of the engine back) ---- */

/* Set / clear this thread's engine_last_error() text. */
void engine_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void engine_clear_error(void);
/* Start of the partition holding `ts` (floor to a multiple of partition_ms). */
int64_t engine_part_start(const engine_t *e, int64_t ts);
/* Record (err != 0) or clear (err == 0) a failure of `kind`; a failure is
 * counted by the caller, logged through opts.log with its cause, and shown
 * by engine_health until cleared; the recovery is logged too. */
void engine_fail(engine_t *e, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void engine_recovered(engine_t *e, int kind);
/* Charge the budget with the heads' current size (head_mu held). */
void engine_head_account(engine_t *e);

/* ---- partitions, flush, compaction, retention (engine_flush.c) ----
 * engine.c calls these; engine_flush.c never calls into engine.c. */

int engine_parts_load(engine_t *e);
/* Add the durable segment file at path to partition start (created when
 * missing); takes *sum (the file's summary or NULL) on success. */
int engine_publish_seg(engine_t *e, const char *path, int64_t start, uint64_t smin, uint64_t smax,
                       seg_summary_t **sum);
void engine_parts_free(engine_t *e);
/* Flush the frozen head; deadline_ms (monotonic-free wall clock, 0 = none)
 * stops between partitions with ST_ETIMEDOUT (not a failure). */
int engine_flush_frozen(engine_t *e, int64_t deadline_ms);
int engine_freeze_head(engine_t *e, int wait);
/* After a WAL failure: flush both heads, then start a fresh WAL. */
int engine_wal_recover(engine_t *e);
int engine_compact_part(engine_t *e, int64_t part_start);
/* The same, also for one segment that holds nothing to purge (force), with
 * the per-metric cuts at now_ms. */
int engine_compact_part_ex(engine_t *e, int64_t part_start, int force, int64_t now_ms);
/* The oldest timestamp series `l` keeps under the per-metric retentions at
 * now_ms (ENGINE_TS_MIN: no rule for it). */
int64_t engine_metric_cut(engine_t *e, const st_label_t *l, size_t nl, int64_t now_ms);
/* Copy opts' per-metric retentions into e (engine_open); freed by close. */
int engine_mret_init(engine_t *e);
/* Collect referenced segments overlapping [mint, maxt], ascending seq. */
int engine_collect_segs(engine_t *e, int64_t mint, int64_t maxt, seg_ref_t ***out, size_t *n);

/* ---- tombstones: state and persistence (engine_tomb.c); engine_delete,
 * engine_purge and engine_tomb_ready (engine_delete.c) sit above ---- */

struct tomb;
/* Resolve tombstone t's matchers to its series ids. */
int engine_tomb_select(engine_t *e, struct tomb *t);
/* Keep t (taken over on success). */
int engine_tomb_push(engine_t *e, struct tomb *t);
/* Mark series id emptied by a delete (on) or written again (off). */
void engine_tomb_dead_set(engine_t *e, uint32_t id, int on);
/* Rewrite <dir>/tombstones atomically. */
int engine_tomb_save(engine_t *e);
/* The same if a tombstone is only in the WAL yet (flush_mu held): before
 * WAL files are removed. */
int engine_tomb_save_dirty(engine_t *e);
/* Remove ids' samples in [start, end] from head h -- with version > 0 only
 * those of a lower version (head_mu held); the count removed. */
uint64_t engine_tomb_head_prune(head_t *h, const uint32_t *ids, size_t n, int64_t start,
                                int64_t end, uint64_t version);
/*
 * The write filter (head_mu held), for n samples of the series with sorted
 * labels l written at `version`, before they enter the head: the samples a
 * versioned tombstone with a HIGHER version selects (labels, time range)
 * are left out. Fast (one atomic load) unless version is below the highest
 * tombstone version. When some are left out, *ts / *v point to malloc'd
 * copies of the kept ones (*owned: free it after use), *n is their count
 * and the others are counted (samples_hidden_late). 0 or ST_ENOMEM.
 */
int engine_tomb_filter(engine_t *e, const st_label_t *l, size_t nl, uint64_t version,
                       const int64_t **ts, const double **v, size_t *n, void **owned);
/* Could engine_tomb_filter leave out something written at `version`? */
int engine_tomb_may_hide(engine_t *e, uint64_t version);
/* Does head h hold a sample of id? */
int engine_tomb_head_has(const head_t *h, uint32_t id);
/* Mark done the tombstones nothing older overlaps; the count still pending. */
uint64_t engine_tomb_refresh(engine_t *e);
/* Open: load <dir>/tombstones (after engine_parts_load, before the WAL). */
int engine_tomb_load(engine_t *e);
/* WAL replay of a WAL_REC_TOMB record: prune the replayed head, keep it. */
int engine_tomb_replay(engine_t *e, const uint8_t *p, size_t len);
/* Open, after the WAL: select the tombstones' series, re-check the dead list. */
int engine_tomb_ready(engine_t *e);
void engine_tomb_free(engine_t *e);

/* ---- series keys (engine_keys.c) ---- */
typedef struct engine_keys engine_keys_t;
int engine_keys_create(engine_t *e);
void engine_keys_destroy(engine_t *e);
/* Keep the keys k[i] that came without an id, resolved to ids[i]
 * (state[i] == 2: refused by a limit, not kept). */
void engine_keys_learn(engine_t *e, const engine_series_key_t *k, const uint32_t *ids,
                       const uint8_t *state, size_t n);
/* Memory the key table holds. */
size_t engine_keys_bytes(engine_t *e);
/* Series written again (head_mu held): no longer dead. */
void engine_tomb_note_write(engine_t *e, const uint32_t *ids, size_t n);
int engine_tomb_any_dead(engine_t *e);
/* Drop the dead series from ids[0..n); returns the count kept. */
size_t engine_tomb_filter_ids(engine_t *e, uint32_t *ids, size_t n);
/* Tombstones not done overlapping [mint, maxt] (*out malloc'd, NULL when 0;
 * SIZE_MAX: no memory). */
size_t engine_tomb_snapshot(engine_t *e, int64_t mint, int64_t maxt, struct tomb ***out);
/* Has partition p a segment older than a tombstone over it? (parts_mu held) */
int engine_tomb_part_pending(engine_t *e, const part_t *p);
/* A compaction applied tombstones: in/out bytes of the partition. */
void engine_tomb_compacted(engine_t *e, uint64_t in_bytes, uint64_t out_bytes);
/* Tombstones still pending, and *eta_ms until the background purges them. */
uint64_t engine_tomb_pending(engine_t *e, int64_t *eta_ms);
/* Flush: drop the samples of frozen head f that a higher version already
 * hides (segments, active head), counted in *dropped (engine_query.c). */
int engine_frozen_resolve(engine_t *e, head_t *f, uint64_t *dropped);
/* An iterator over these series ids (taken over, freed on failure too). */
int engine_iter_ids(engine_t *e, uint32_t *ids, size_t n, int64_t mint, int64_t maxt,
                    engine_iter_t **out);

#endif
