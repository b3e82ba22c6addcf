/*
 * wal — the write-ahead log: an ordered sequence of CRC'd records in
 * numbered files (wal/00000001.wal, ...). The engine logs series definitions
 * and sample batches here before they enter the in-memory head, and drops
 * whole files once their contents are in segments (checkpoint).
 *
 * Durability modes (wal_mode_t; engine.h's engine_wal_mode_t has the same
 * values, checked at compile time in engine.c):
 *   EVERY_WRITE  wal_sync() returns after fdatasync; concurrent callers share
 *                one fsync (group commit);
 *   PERIODIC     wal_sync() hands the bytes to the OS (write(2)); a background
 *                thread fdatasyncs every sync_interval_ms;
 *   OS_DEFAULT   wal_sync() hands the bytes to the OS, never fsyncs (except
 *                on rotate/close);
 *   NONE         nothing is written; wal_append only assigns LSNs.
 * A kill -9 loses nothing acknowledged in the first three modes; a power cut
 * loses nothing in EVERY_WRITE.
 *
 * Recovery: wal_open() replays every record in order through a callback and
 * stops at the first torn or corrupt record (short read, bad length, CRC
 * mismatch): that file is truncated there and later files are removed; what
 * was cut is reported in wal_replay_info_t, never silently.
 *
 * Thread safety: all functions are thread-safe.
 */
#ifndef WAL_H
#define WAL_H

#include <stddef.h>
#include <stdint.h>

#define WAL_MAX_RECORD (64u << 20) /* payload bytes; larger appends get ST_ELIMIT */

typedef struct wal wal_t;

typedef enum {
    WAL_EVERY_WRITE = 0,
    WAL_PERIODIC = 1,
    WAL_OS_DEFAULT = 2,
    WAL_NONE = 3,
} wal_mode_t;

typedef struct wal_opts {
    wal_mode_t mode;           /* see above */
    uint32_t sync_interval_ms; /* PERIODIC */
    uint64_t file_max_bytes;   /* rotate to a new file past this (default 128 MiB) */
} wal_opts_t;

typedef struct wal_replay_info {
    uint64_t records;       /* records replayed */
    uint64_t bytes;         /* payload bytes replayed */
    uint32_t files;         /* files read */
    int truncated;          /* 1 if a torn/corrupt tail was cut */
    uint32_t trunc_file;    /* file seq where it was cut */
    uint64_t trunc_offset;  /* byte offset of the cut */
    uint64_t trunc_bytes;   /* bytes discarded in that file */
    uint32_t files_dropped; /* later files removed */
} wal_replay_info_t;

/* Called for each record in order; a non-zero return aborts wal_open with it. */
typedef int (*wal_replay_cb)(void *arg, uint8_t type, const uint8_t *payload, size_t len);

/* Open or create the WAL in `dir` (created if missing), replaying first. */
int wal_open(const char *dir, const wal_opts_t *o, wal_replay_cb cb, void *arg,
             wal_replay_info_t *info, wal_t **out);
/* Flush, fsync and close. */
int wal_close(wal_t *w);

/*
 * Append one record (type is the caller's; payload up to WAL_MAX_RECORD).
 * Buffers in memory; *lsn receives the record's log sequence number.
 */
int wal_append(wal_t *w, uint8_t type, const void *payload, size_t len, uint64_t *lsn);
/* Make everything up to `lsn` durable per the mode (see above). */
int wal_sync(wal_t *w, uint64_t lsn);
/*
 * Finish the current file (written and fsynced) and start a new one.
 * *seq receives the new file's number: every record appended before the
 * call is in a file with a smaller number.
 */
int wal_rotate(wal_t *w, uint32_t *seq);
/*
 * After an I/O error the WAL refuses every append, sync and rotation (what
 * reached the file is unknown). wal_failed says so (and the errno). Once the
 * caller has made every record durable elsewhere (the engine flushes its
 * heads to segments), wal_restart forgets the buffered records, starts a
 * fresh file and accepts appends again; *seq receives the new file's number
 * (remove the older files with wal_remove_before). Fails, still failed, if
 * the new file cannot be created.
 */
int wal_failed(wal_t *w, int *err);
int wal_restart(wal_t *w, uint32_t *seq);
/* Delete the files numbered below `seq` (their records are checkpointed). */
int wal_remove_before(wal_t *w, uint32_t seq);

typedef struct wal_stats {
    uint64_t bytes_written;
    uint64_t syncs;
    uint64_t records;
    uint64_t disk_bytes; /* current size of all WAL files */
    uint32_t files;
} wal_stats_t;
void wal_get_stats(wal_t *w, wal_stats_t *s);

#endif
