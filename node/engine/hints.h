/*
 * hints — the durable per-peer hint queue for hinted handoff.
 *
 * When a coordinator cannot deliver a write batch to a replica, it keeps the
 * batch (the exact protobuf bytes it received, plus the shard number) in the
 * queue for that peer, one directory per peer (<data>/hints/<peer-id>). When
 * the peer is back, the replay loop takes hints oldest first with
 * hints_peek(), sends the batch, and calls hints_ack() once the peer
 * acknowledged it.
 *
 * Bounds: the queue never blocks and never fails because it is full.
 *   max_bytes   appending past it DROPS THE OLDEST hints (whole segment files)
 *               and counts them (dropped_size_*);
 *   max_age_ms  hints_peek() skips hints older than that (relative to the
 *               caller's now_ms) and counts them (dropped_age_*).
 * Damaged data found on disk is cut and counted (dropped_corrupt_*).
 *
 * Delivery is at-least-once: the read cursor is persisted every
 * cursor_every advances (acks and age skips), when a consumed segment is
 * deleted, and on close. After a crash, at most cursor_every already-acked
 * (or age-skipped) hints are handed out again. That is safe because a
 * batch is idempotent on the replica (same series + timestamp = same sample).
 * Appends are durable on return with HINTS_SYNC_EVERY_APPEND; with
 * HINTS_SYNC_CALLER only after hints_sync() (a kill -9 loses nothing that
 * write(2) took; a power cut may lose unsynced appends).
 *
 * Thread safety: all functions are thread-safe (one mutex inside; I/O is
 * done under it). The intended use is one producer (the write path calling
 * hints_append) and one consumer (the replay loop calling peek/ack)
 * concurrently. peek/ack pairs must come from one consumer at a time.
 */
#ifndef HINTS_H
#define HINTS_H

#include <stddef.h>
#include <stdint.h>

#define HINTS_MAX_RECORD (64u << 20) /* batch bytes; larger appends get ST_ELIMIT */

typedef struct hints hints_t;

enum {
    HINTS_SYNC_EVERY_APPEND = 0, /* fdatasync before hints_append returns */
    HINTS_SYNC_CALLER = 1,       /* the caller calls hints_sync() when it wants */
};

/* Zero fields take the defaults. */
typedef struct hints_opts {
    uint64_t max_bytes;     /* disk budget for segment files (default 1 GiB) */
    int64_t max_age_ms;     /* 0: default 24 h; < 0: no age limit */
    uint64_t segment_bytes; /* rotate past this (default 64 MiB, capped at max_bytes/4) */
    int sync_mode;          /* HINTS_SYNC_* */
    uint32_t cursor_every;  /* persist the cursor every N advances (default 64) */
} hints_opts_t;

typedef struct hints_stats {
    uint64_t pending_records; /* hints not yet acked, skipped or dropped */
    uint64_t pending_bytes;   /* their on-disk size, record headers included */
    int64_t oldest_ts;        /* time of the oldest pending hint (0 if none) */
    uint64_t disk_bytes;      /* total size of the segment files */
    uint32_t segments;        /* segment files */
    /* counters below are since hints_open */
    uint64_t appended;
    uint64_t acked;
    uint64_t dropped_size_records, dropped_size_bytes; /* by max_bytes */
    uint64_t dropped_age_records, dropped_age_bytes;   /* by max_age_ms */
    uint64_t dropped_corrupt_records; /* known lost records (CRC failure on read) */
    uint64_t dropped_corrupt_bytes;   /* bytes cut from damaged/torn segments */
    uint32_t corrupt_cuts;            /* places where data was cut */
} hints_stats_t;

/*
 * Open (creating `dir` if missing, its parent must exist) and recover the
 * queue: validate every segment, cut torn/corrupt data (counted in stats),
 * load the cursor. `o` may be NULL. *out is NULL on failure.
 */
int hints_open(const char *dir, const hints_opts_t *o, hints_t **out);
/* Persist the cursor, fdatasync, free. Returns the first error seen. */
int hints_close(hints_t *h);

/*
 * Queue one batch (len <= HINTS_MAX_RECORD, else ST_ELIMIT) for `shard`,
 * stamped `now_ms`. Drops the oldest hints if needed to stay within
 * max_bytes; a single record bigger than max_bytes is itself dropped
 * (counted) and 0 returned. ST_EIO on I/O errors.
 */
int hints_append(hints_t *h, uint32_t shard, int64_t now_ms, const void *batch, size_t len);
/* fdatasync the segment being appended to (for HINTS_SYNC_CALLER). */
int hints_sync(hints_t *h);

/*
 * The oldest pending hint, skipping (and counting) those with
 * now_ms - ts > max_age_ms. OUT: *shard, *ts, *batch (valid until the next
 * peek/ack/close), *len. ST_ENOENT when the queue is empty. Peeking again
 * without an ack returns the same hint.
 */
int hints_peek(hints_t *h, int64_t now_ms, uint32_t *shard, int64_t *ts, const uint8_t **batch,
               size_t *len);
/*
 * The hint last peeked was delivered: advance past it. If it was dropped
 * meanwhile (max_bytes) this is a no-op returning 0. ST_EINVAL without a
 * preceding peek. A cursor-persist failure returns ST_EIO (the ack still
 * counts in memory).
 */
int hints_ack(hints_t *h);

/*
 * Pipelined replay: up to max_n (<= HINTS_PEEK_MAX) pending hints from the
 * cursor, consecutive records of one segment holding at most about
 * max_bytes of batches (always at least one). The first is found as
 * hints_peek finds it (age skips, damage cuts); a later one that is damaged
 * or too old ends the window (the next peek deals with it). cb gets each
 * (its batch is valid during the call only) and may stop the window by
 * returning non-zero (then the hints it got so far are the window; on the
 * first hint its return is returned). *n: the window's size.
 * ST_ENOENT when the queue is empty.
 */
#define HINTS_PEEK_MAX 64
typedef int (*hints_item_fn)(void *arg, uint32_t shard, int64_t ts, const uint8_t *batch,
                             size_t len);
int hints_peek_many(hints_t *h, int64_t now_ms, size_t max_n, size_t max_bytes, hints_item_fn cb,
                    void *arg, size_t *n);
/* The first k hints of the last window were delivered: advance past them
 * (k <= its size; 0 advances nothing). Like hints_ack otherwise. */
int hints_ack_many(hints_t *h, size_t k);

void hints_stats(hints_t *h, hints_stats_t *s);

#endif
