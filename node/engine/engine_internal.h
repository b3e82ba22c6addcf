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
#include "idx.h"
#include "seg.h"
#include "st_buf.h"
#include "wal.h"

#define ENGINE_BLOCK_MAX 4096 /* samples per segment block */
#define ENGINE_DEFAULT_MAX_OPEN_FILES 1024

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
};

enum { WAL_REC_SERIES = 1, WAL_REC_SAMPLES = 2 };

/* ---- head: in-memory samples per series (engine_head.c) ---- */

typedef struct head_series {
    int64_t *ts;
    double *v;
    uint32_t n, cap;
    int64_t mint, maxt;
    uint8_t unsorted; /* an append went backwards: sort + dedup before reading */
} head_series_t;

typedef struct head {
    head_series_t **s; /* indexed by series id; NULL = no samples */
    uint32_t ns;       /* length of s[] */
    uint64_t samples;
    uint64_t bytes;
    int64_t created_ms; /* wall clock of the first append */
    uint32_t wal_seq;   /* frozen: the WAL file begun when it froze (older files are its) */
    int64_t mint, maxt;
} head_t;

head_t *head_create(void);
void head_destroy(head_t *h);
/* Append n samples of series `id`; counts out-of-order appends in *ooo. */
int head_append(head_t *h, uint32_t id, const int64_t *ts, const double *v, size_t n,
                uint64_t *ooo);
/* Sort + dedup (last write wins) a series in place if needed. */
void head_series_normalize(head_series_t *s);

/* Stable sort by timestamp, then keep the last of each run of equal timestamps. */
size_t samples_sort_dedup(int64_t *ts, double *v, size_t n);

/* ---- segments and partitions (engine_flush.c) ---- */

typedef struct seg_ref {
    seg_t *seg;
    char *path;
    uint64_t seq_min, seq_max;
    atomic_int refs;     /* the partition's list holds one */
    atomic_int obsolete; /* unlink on last release */
} seg_ref_t;

typedef struct part {
    int64_t start, end;
    seg_ref_t **segs; /* ascending seq_max */
    size_t nsegs, cap;
    int64_t last_flush_ms;
} part_t;

void seg_ref_release(seg_ref_t *r);

struct engine {
    char *dir;
    engine_opts_t o;
    int lock_fd;
    wal_t *wal;
    idx_t *idx;

    pthread_mutex_t flush_mu;
    pthread_mutex_t head_mu;
    pthread_cond_t head_cv; /* signalled when a frozen head is gone */
    head_t *head;
    head_t *frozen;
    int flush_err; /* last flush's error (0 after a success), under head_mu */
    pthread_rwlock_t idx_lock;
    pthread_mutex_t parts_mu;
    part_t **parts; /* ascending start */
    size_t nparts, parts_cap;
    uint64_t next_seq;

    pthread_t bg;
    int bg_running;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    int bg_stop;
    int bg_kick;

    atomic_uint_least64_t samples_written, samples_ooo, flushes, compactions, flush_errors,
        samples_too_old;
};

/* ---- leaf helpers (engine_util.c; they call nothing of the engine back) ---- */

/* Set / clear this thread's engine_last_error() text. */
void engine_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void engine_clear_error(void);
/* Start of the partition holding `ts` (floor to a multiple of partition_ms). */
int64_t engine_part_start(const engine_t *e, int64_t ts);

/* ---- partitions, flush, compaction, retention (engine_flush.c) ----
 * engine.c calls these; engine_flush.c never calls into engine.c. */

int engine_parts_load(engine_t *e);
void engine_parts_free(engine_t *e);
int engine_flush_frozen(engine_t *e);
int engine_freeze_head(engine_t *e, int wait);
int engine_compact_part(engine_t *e, int64_t part_start);
/* Collect referenced segments overlapping [mint, maxt], ascending seq. */
int engine_collect_segs(engine_t *e, int64_t mint, int64_t maxt, seg_ref_t ***out, size_t *n);

#endif
