/*
 * hints — durable per-peer hint queue; API, bounds and delivery guarantees
 * in hints.h.
 *
 * ON-DISK FORMAT (version 1; all integers little-endian)
 *
 *   A queue is a directory (one per peer) holding segment files named
 *   "%08u.hint" (00000001.hint, ...) and one cursor file "cursor". The queue
 *   is the concatenation of the segments' records in ascending number order.
 *   Numbers only grow and are never reused; a segment is only ever appended
 *   to by the process that created it (hints_open never reopens a segment for
 *   writing: the first append after an open starts a new one). Segments are
 *   deleted from the front (consumed, or dropped by max_bytes), so the
 *   numbers on disk may have gaps only at the front; gaps are tolerated
 *   anywhere because segments are self-describing.
 *
 *   Segment header (20 bytes):
 *     offset size field
 *          0    8 magic    "STRHINT1" (ASCII, no NUL)
 *          8    4 version  u32, 1
 *         12    4 seq      u32, the segment's own number (must match its name)
 *         16    4 hcrc     u32, CRC-32C of bytes 0..15
 *
 *   Record (20 + len bytes), back to back from offset 20:
 *     offset size field
 *          0    4 len      u32, batch bytes, 0..HINTS_MAX_RECORD (64 MiB)
 *          4    4 crc      u32, CRC-32C of bytes 8 .. 20+len (shard, ts, batch)
 *          8    4 shard    u32
 *         12    8 ts       i64 (two's complement), the caller's now_ms at append
 *         20  len batch    opaque (the protobuf bytes as received)
 *
 *   Cursor file "cursor" (28 bytes), replaced atomically (write "cursor.tmp",
 *   fdatasync, rename, fsync the directory):
 *     offset size field
 *          0    8 magic    "STRHCUR1"
 *          8    4 version  u32, 1
 *         12    4 seq      u32, segment of the next unconsumed record
 *         16    8 off      u64, its byte offset in that segment; UINT64_MAX
 *                          means "all of segment seq is consumed"
 *         24    4 crc      u32, CRC-32C of bytes 0..23
 *   Meaning: every record in segments numbered below seq, and every record
 *   of segment seq starting below off, has been consumed (acked, skipped by
 *   age or dropped). (0, 0) means nothing consumed. A missing or invalid
 *   cursor file means (0, 0): replay everything (safe, see hints.h).
 *
 *   CRC-32C is common/st_crc32c.h (Castagnoli, as in wal.c).
 *
 * RECOVERY (hints_open)
 *
 *   1. "cursor.tmp" is removed (a crash mid-replacement); the cursor (cseq,
 *      coff) is loaded as above.
 *   2. Segment files are listed and sorted by number. Other names are ignored.
 *   3. Segments numbered below cseq are fully consumed: unlinked.
 *   4. Each other segment is mmap'd and walked. A file shorter than 20 bytes
 *      or with a bad magic/version/seq/hcrc holds nothing: it is unlinked and
 *      its size counted in dropped_corrupt_bytes (a crash between create and
 *      header write leaves an empty file, which counts 0). The walk ends at
 *      the first record whose header does not fit, whose len >
 *      HINTS_MAX_RECORD, whose batch runs past EOF, or whose crc mismatches:
 *      the segment is ftruncated there and fsynced, the cut bytes counted
 *      (dropped_corrupt_bytes, corrupt_cuts), and the records lost with
 *      them (dropped_corrupt_records): the damaged one plus every intact
 *      record after it not yet consumed, found by resynchronising byte by
 *      byte on a plausible header whose CRC matches (count_lost). BEHAVIOUR ON CORRUPTION: the
 *      rest of THAT segment is lost (its framing cannot be trusted) but later
 *      segments are kept — hints are independent idempotent batches, so
 *      keeping the later ones is strictly better than dropping them. A torn
 *      tail (crash mid-append) is the same cut on the last segment.
 *   5. A segment left with no records is unlinked.
 *   6. The cursor is placed: in segment cseq at coff if coff is a record
 *      boundary; at the segment's valid end if coff is at or past it; at the
 *      segment's first record if coff is inside a record (replays more,
 *      never less). If segment cseq is gone, at the first record of the
 *      first remaining segment.
 *   7. Fully consumed front segments are unlinked, then the cursor is saved
 *      (a crash in between is harmless: a cursor naming a missing segment
 *      means "start at the next one"), then the directory is fsynced. The next segment number is
 * max(highest listed, cseq) + 1, so a cursor never points into a segment created later. Every step
 * only deletes data that is consumed or unreadable and is idempotent, so a crash during recovery is
 * recovered by the next open.
 *
 * RUNTIME
 *
 *   Invariants (everything in struct hints below `mu` is guarded by it):
 *     I1  segs[0..nsegs) are the segment files on disk, ascending; size is
 *         the valid length (header + whole records), nrec the record count.
 *     I2  The cursor (cur_off, cur_rec) is always in segs[0]: the byte
 *         offset and index of the next unconsumed record. Segments before
 *         it are deleted at once (settle()).
 *     I3  wfd, when >= 0, is open on segs[nsegs-1], the only segment
 *         written; records are written with pwritev at its size, so the
 *         file never holds a partial record except during a failed write,
 *         which is truncated away (or marks `failed`: ST_EIO for good).
 *     I4  disk_bytes = sum of sizes; total_rec = sum of nrec;
 *         disk_bytes <= max_bytes after every append (when max_bytes >= 2
 *         headers + one record), because appends drop front segments first.
 *     I5  A segment being appended to is never deleted by settle() (a
 *         consumed write segment waits for the next rotation).
 *
 *   hints_append: rotate if the write segment is full (fdatasync the old,
 *   create the next: header, fdatasync, fsync dir); while over max_bytes,
 *   drop segs[0] (count its pending records); if the write segment alone is
 *   over, rotate and drop it; pwritev the record; fdatasync per mode.
 *   hints_peek: settle, pread the record at the cursor, re-check its CRC (a
 *   mismatch cuts the rest of the segment like recovery does), skip by age.
 *   hints_ack: if the peeked record is still at the cursor, advance; every
 *   cursor_every advances save the cursor file.
 */
#include "hints.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_file.h"
#include "st_varint.h"

#define SEG_MAGIC "STRHINT1"
#define CUR_MAGIC "STRHCUR1"
#define HINTS_VERSION 1u
#define SHDR 20u /* segment header bytes */
#define RHDR 20u /* record header bytes */
#define CUR_BYTES 28u
#define CUR_NAME "cursor"
#define CUR_TMP "cursor.tmp"
#define DEF_MAX_BYTES (1ull << 30)
#define DEF_MAX_AGE_MS (24ll * 3600 * 1000)
#define DEF_SEG_BYTES (64ull << 20)
#define DEF_CURSOR_EVERY 64u

typedef struct hseg {
    uint32_t seq;
    uint64_t size; /* valid bytes: header + whole records */
    uint64_t nrec;
} hseg_t;

struct hints {
    uint64_t max_bytes;
    uint64_t seg_bytes;
    int64_t max_age_ms; /* < 0: none */
    int sync_mode;
    uint32_t cursor_every;
    int dirfd;

    pthread_mutex_t mu;
    /* --- guarded by mu --- */
    hseg_t *segs;
    size_t nsegs, cap;
    int wfd;       /* append fd of segs[nsegs-1], or -1 */
    int rfd;       /* read fd of segment rseq, or -1 */
    uint32_t rseq; /* valid when rfd >= 0 */
    uint64_t next_seq;
    uint64_t cur_off, cur_rec; /* cursor in segs[0] */
    uint64_t disk_bytes, total_rec;
    uint32_t since_save; /* cursor advances since the cursor file was written */
    int peeked;
    uint32_t peek_seq;
    uint64_t peek_off, peek_end;
    uint64_t peek_ends[HINTS_PEEK_MAX]; /* hints_peek_many: end of each record handed out */
    size_t peek_count;
    st_buf_t pbuf; /* the peeked record's batch */
    int failed;
    hints_stats_t st; /* counters only; pending fields computed on demand */
};

static void seg_name(char *buf, size_t n, uint32_t seq)
{
    snprintf(buf, n, "%08u.hint", seq);
}

static int seg_push(hints_t *h, uint32_t seq, uint64_t size, uint64_t nrec)
{
    if (h->nsegs == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 16;
        hseg_t *p = realloc(h->segs, nc * sizeof *p);
        if (!p)
            return ST_ENOMEM;
        h->segs = p;
        h->cap = nc;
    }
    h->segs[h->nsegs++] = (hseg_t){.seq = seq, .size = size, .nrec = nrec};
    h->disk_bytes += size;
    h->total_rec += nrec;
    return 0;
}

/* Write the cursor file atomically (temp, fdatasync, rename, fsync dir). */
static int cursor_save(hints_t *h)
{
    uint8_t b[CUR_BYTES];
    uint32_t seq;
    uint64_t off;
    if (h->nsegs > 0) {
        seq = h->segs[0].seq;
        off = h->cur_off;
    } else if (h->next_seq > 1) {
        seq = (uint32_t)(h->next_seq - 1);
        off = UINT64_MAX;
    } else {
        seq = 0;
        off = 0;
    }
    memcpy(b, CUR_MAGIC, 8);
    st_store_u32le(b + 8, HINTS_VERSION);
    st_store_u32le(b + 12, seq);
    st_store_u64le(b + 16, off);
    st_store_u32le(b + 24, st_crc32c(0, b, 24));
    int fd = openat(h->dirfd, CUR_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ST_EIO;
    int ok = write(fd, b, CUR_BYTES) == (ssize_t)CUR_BYTES && fdatasync(fd) == 0;
    close(fd);
    if (!ok || renameat(h->dirfd, CUR_TMP, h->dirfd, CUR_NAME) != 0 || fsync(h->dirfd) != 0)
        return ST_EIO;
    h->since_save = 0;
    return 0;
}

static void cursor_load(hints_t *h, uint32_t *seq, uint64_t *off)
{
    uint8_t b[CUR_BYTES + 1];
    *seq = 0;
    *off = 0;
    int fd = openat(h->dirfd, CUR_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != (ssize_t)CUR_BYTES || memcmp(b, CUR_MAGIC, 8) != 0 ||
        st_load_u32le(b + 8) != HINTS_VERSION || st_load_u32le(b + 24) != st_crc32c(0, b, 24))
        return;
    *seq = st_load_u32le(b + 12);
    *off = st_load_u64le(b + 16);
}

/* Remove segs[0] from disk and memory; the cursor moves to the next one. */
static void seg_pop_front(hints_t *h)
{
    char name[32];
    hseg_t s = h->segs[0];
    if (h->rfd >= 0 && h->rseq == s.seq) {
        close(h->rfd);
        h->rfd = -1;
    }
    if (h->wfd >= 0 && h->nsegs == 1) {
        close(h->wfd);
        h->wfd = -1;
    }
    seg_name(name, sizeof name, s.seq);
    unlinkat(h->dirfd, name, 0);
    memmove(h->segs, h->segs + 1, (h->nsegs - 1) * sizeof *h->segs);
    h->nsegs--;
    h->disk_bytes -= s.size;
    h->total_rec -= s.nrec;
    h->cur_off = SHDR;
    h->cur_rec = 0;
}

/* Delete consumed front segments (never the write segment, I5). */
static int settle(hints_t *h)
{
    int popped = 0;
    while (h->nsegs > 0 && h->cur_off >= h->segs[0].size && !(h->wfd >= 0 && h->nsegs == 1)) {
        seg_pop_front(h);
        popped = 1;
    }
    return popped ? cursor_save(h) : 0;
}

/* Move the cursor past the record ending at `end`. */
static int advance(hints_t *h, uint64_t end)
{
    h->cur_off = end;
    h->cur_rec++;
    int rc = 0;
    if (++h->since_save >= h->cursor_every)
        rc = cursor_save(h);
    int rc2 = settle(h);
    return rc ? rc : rc2;
}

/* Drop segs[0] (by max_bytes), counting its pending records. */
static void drop_front(hints_t *h)
{
    h->st.dropped_size_records += h->segs[0].nrec - h->cur_rec;
    h->st.dropped_size_bytes += h->segs[0].size - h->cur_off;
    seg_pop_front(h);
}

/* Cut segs[0] at the cursor: the record there failed its CRC on read. */
static int cut_front(hints_t *h)
{
    char name[32];
    hseg_t *s = &h->segs[0];
    h->st.dropped_corrupt_records += s->nrec - h->cur_rec;
    h->st.dropped_corrupt_bytes += s->size - h->cur_off;
    h->st.corrupt_cuts++;
    h->disk_bytes -= s->size - h->cur_off;
    h->total_rec -= s->nrec - h->cur_rec;
    s->size = h->cur_off;
    s->nrec = h->cur_rec;
    seg_name(name, sizeof name, s->seq);
    int fd = openat(h->dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)s->size) != 0 || fdatasync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        if (h->wfd >= 0 && h->nsegs == 1)
            h->failed = 1; /* the write segment's tail is unknown */
        return ST_EIO;
    }
    close(fd);
    return settle(h);
}

/* Finish the write segment (fdatasync) and start segment next_seq. */
static int rotate(hints_t *h)
{
    char name[32];
    uint8_t b[SHDR];
    if (h->next_seq > UINT32_MAX)
        return ST_ELIMIT;
    if (h->wfd >= 0) {
        if (fdatasync(h->wfd) != 0) {
            h->failed = 1;
            return ST_EIO;
        }
        close(h->wfd);
        h->wfd = -1;
    }
    uint32_t seq = (uint32_t)h->next_seq;
    seg_name(name, sizeof name, seq);
    int fd = openat(h->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return ST_EIO;
    memcpy(b, SEG_MAGIC, 8);
    st_store_u32le(b + 8, HINTS_VERSION);
    st_store_u32le(b + 12, seq);
    st_store_u32le(b + 16, st_crc32c(0, b, 16));
    if (st_pwrite_all(fd, b, SHDR, 0) != 0 || fdatasync(fd) != 0 || fsync(h->dirfd) != 0)
        goto fail;
    if (seg_push(h, seq, SHDR, 0) != 0)
        goto fail;
    h->next_seq++;
    h->wfd = fd;
    if (h->nsegs == 1) {
        h->cur_off = SHDR;
        h->cur_rec = 0;
    }
    return 0;
fail:
    close(fd);
    unlinkat(h->dirfd, name, 0);
    return ST_EIO;
}

/* Plausibility of a record header found while resynchronising past damage:
 * a shard number below this and a timestamp within this of the last good
 * record's, before its CRC is computed (random bytes almost never pass). */
#define RESYNC_MAX_SHARD (1u << 24)
#define RESYNC_MAX_SKEW_MS (INT64_C(366) * 24 * 3600 * 1000)

/*
 * The records lost when segment m[0..fsz) is cut at `off` (the first record
 * there is damaged): that one, plus every intact record after it, found by
 * resynchronising byte by byte on a record whose header is plausible and
 * whose CRC matches (then skipping it whole). Records starting before
 * `consumed` were acked already and are not lost. ref_ts: the timestamp of
 * the last good record (have_ref 0: none).
 */
static uint64_t count_lost(const uint8_t *m, uint64_t off, uint64_t fsz, uint64_t consumed,
                           int64_t ref_ts, int have_ref)
{
    uint64_t lost = off >= consumed ? 1 : 0;
    for (uint64_t p = off + 1; fsz - p >= RHDR && p < fsz;) {
        uint32_t len = st_load_u32le(m + p);
        uint32_t shard = st_load_u32le(m + p + 8);
        int64_t ts = (int64_t)st_load_u64le(m + p + 12);
        int ok = len <= HINTS_MAX_RECORD && len <= fsz - p - RHDR && shard < RESYNC_MAX_SHARD;
        if (ok && have_ref)
            ok = ts > ref_ts - RESYNC_MAX_SKEW_MS && ts < ref_ts + RESYNC_MAX_SKEW_MS;
        if (ok && st_crc32c(0, m + p + 8, (size_t)len + 12) == st_load_u32le(m + p + 4)) {
            lost += p >= consumed;
            p += RHDR + len;
        } else {
            p++;
        }
    }
    return lost;
}

/*
 * Recovery step 4: validate segment `seq`, cut what is bad. *size and *nrec
 * get the valid length and record count (0 if the header is bad). If
 * want_off is a record boundary, *at_rec is the index of the record there.
 */
static int seg_scan(hints_t *h, uint32_t seq, uint64_t want_off, uint64_t *size, uint64_t *nrec,
                    uint64_t *at_off, uint64_t *at_rec)
{
    char name[32];
    seg_name(name, sizeof name, seq);
    *size = 0;
    *nrec = 0;
    *at_off = SHDR; /* cursor inside a record: replay the segment */
    *at_rec = 0;
    int fd = openat(h->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ST_EIO;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return ST_EIO;
    }
    uint64_t fsz = (uint64_t)sb.st_size;
    const uint8_t *m = NULL;
    if (fsz >= SHDR) {
        m = mmap(NULL, (size_t)fsz, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return ST_EIO;
        }
    }
    uint64_t off = 0, n = 0, lost = 0;
    int64_t ref_ts = 0;
    if (m && memcmp(m, SEG_MAGIC, 8) == 0 && st_load_u32le(m + 8) == HINTS_VERSION &&
        st_load_u32le(m + 12) == seq && st_load_u32le(m + 16) == st_crc32c(0, m, 16)) {
        off = SHDR;
        for (;;) {
            if (off == want_off) {
                *at_off = off;
                *at_rec = n;
            }
            if (fsz - off < RHDR)
                break;
            uint32_t len = st_load_u32le(m + off);
            if (len > HINTS_MAX_RECORD || len > fsz - off - RHDR)
                break;
            if (st_crc32c(0, m + off + 8, (size_t)len + 12) != st_load_u32le(m + off + 4))
                break;
            ref_ts = (int64_t)st_load_u64le(m + off + 12);
            off += RHDR + len;
            n++;
        }
        if (off < fsz && want_off != UINT64_MAX) /* damaged or torn: count what is lost */
            lost = count_lost(m, off, fsz, want_off > off ? want_off : 0, ref_ts, n > 0);
        if (want_off != UINT64_MAX && want_off >= off && want_off > SHDR) {
            *at_off = off; /* at or past the valid end: all consumed */
            *at_rec = n;
        } else if (want_off == UINT64_MAX) {
            *at_off = off;
            *at_rec = n;
        }
    }
    if (m)
        munmap((void *)m, (size_t)fsz);
    int rc = 0;
    if (off < fsz) {
        h->st.dropped_corrupt_bytes += fsz - off;
        h->st.dropped_corrupt_records += lost;
        h->st.corrupt_cuts++;
        if (off > 0 && (ftruncate(fd, (off_t)off) != 0 || fdatasync(fd) != 0))
            rc = ST_EIO;
    }
    close(fd);
    *size = off;
    *nrec = n;
    return rc;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Recovery steps 2..7. */
static int recover(hints_t *h)
{
    uint32_t cseq;
    uint64_t coff;
    unlinkat(h->dirfd, CUR_TMP, 0);
    cursor_load(h, &cseq, &coff);

    int dfd = dup(h->dirfd);
    if (dfd < 0)
        return ST_EIO;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return ST_EIO;
    }
    uint32_t *seqs = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned v;
        char tail[8], canon[32];
        if (sscanf(de->d_name, "%8u%7s", &v, tail) != 2 || strcmp(tail, ".hint") != 0)
            continue;
        seg_name(canon, sizeof canon, v);
        if (strcmp(canon, de->d_name) != 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint32_t *p = realloc(seqs, nc * sizeof *p);
            if (!p) {
                rc = ST_ENOMEM;
                break;
            }
            seqs = p;
            cap = nc;
        }
        seqs[n++] = v;
    }
    closedir(d);
    if (rc)
        goto out;
    if (n)
        qsort(seqs, n, sizeof *seqs, cmp_u32);

    uint64_t last = cseq;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        seg_name(name, sizeof name, seqs[i]);
        if (seqs[i] > last)
            last = seqs[i];
        if (seqs[i] < cseq) { /* step 3 */
            unlinkat(h->dirfd, name, 0);
            continue;
        }
        uint64_t size, nrec, at_off, at_rec;
        rc = seg_scan(h, seqs[i], seqs[i] == cseq ? coff : SHDR, &size, &nrec, &at_off, &at_rec);
        if (rc)
            goto out;
        if (nrec == 0) { /* step 5 */
            unlinkat(h->dirfd, name, 0);
            continue;
        }
        if ((rc = seg_push(h, seqs[i], size, nrec)) != 0)
            goto out;
        if (h->nsegs == 1) { /* step 6 */
            h->cur_off = seqs[i] == cseq ? at_off : SHDR;
            h->cur_rec = seqs[i] == cseq ? at_rec : 0;
        }
    }
    h->next_seq = last + 1;
    rc = settle(h); /* step 7 */
    if (rc == 0 && fsync(h->dirfd) != 0)
        rc = ST_EIO;
out:
    free(seqs);
    return rc;
}

int hints_open(const char *dir, const hints_opts_t *o, hints_t **out)
{
    *out = NULL;
    if (!dir)
        return ST_EINVAL;
    hints_opts_t z = {0};
    if (!o)
        o = &z;
    hints_t *h = calloc(1, sizeof *h);
    if (!h)
        return ST_ENOMEM;
    h->max_bytes = o->max_bytes ? o->max_bytes : DEF_MAX_BYTES;
    h->seg_bytes = o->segment_bytes ? o->segment_bytes : DEF_SEG_BYTES;
    if (h->seg_bytes > h->max_bytes / 4)
        h->seg_bytes = h->max_bytes / 4;
    h->max_age_ms = o->max_age_ms ? o->max_age_ms : DEF_MAX_AGE_MS;
    h->sync_mode = o->sync_mode;
    h->cursor_every = o->cursor_every ? o->cursor_every : DEF_CURSOR_EVERY;
    h->wfd = h->rfd = h->dirfd = -1;
    h->cur_off = SHDR;
    st_buf_init(&h->pbuf);
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h);
        return ST_ENOMEM;
    }
    int rc;
    if (st_mkdir(dir) != 0) {
        rc = ST_EIO;
        goto fail;
    }
    h->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (h->dirfd < 0) {
        rc = ST_EIO;
        goto fail;
    }
    if ((rc = recover(h)) != 0)
        goto fail;
    *out = h;
    return 0;
fail:
    if (h->dirfd >= 0)
        close(h->dirfd);
    pthread_mutex_destroy(&h->mu);
    free(h->segs);
    free(h);
    return rc;
}

int hints_close(hints_t *h)
{
    if (!h)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (h->wfd >= 0) {
        if (!h->failed && fdatasync(h->wfd) != 0)
            rc = ST_EIO;
        close(h->wfd);
    }
    if (h->since_save > 0) {
        int r = cursor_save(h);
        if (!rc)
            rc = r;
    }
    if (h->rfd >= 0)
        close(h->rfd);
    close(h->dirfd);
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_destroy(&h->mu);
    st_buf_deinit(&h->pbuf);
    free(h->segs);
    free(h);
    return rc;
}

static int append_locked(hints_t *h, uint32_t shard, int64_t now_ms, const void *batch, size_t len)
{
    uint64_t rec = RHDR + (uint64_t)len;
    int rc;
    if (h->failed)
        return ST_EIO;
    if (rec + SHDR > h->max_bytes) { /* could never fit: drop it, counted */
        h->st.appended++;
        h->st.dropped_size_records++;
        h->st.dropped_size_bytes += rec;
        return 0;
    }
    hseg_t *w = h->wfd >= 0 ? &h->segs[h->nsegs - 1] : NULL;
    if (!w || (w->size > SHDR && w->size + rec > h->seg_bytes)) {
        if ((rc = rotate(h)) != 0)
            return rc;
    }
    while (h->disk_bytes + rec > h->max_bytes && h->nsegs > 1)
        drop_front(h);
    if (h->disk_bytes + rec > h->max_bytes) { /* the write segment alone is too big */
        if ((rc = rotate(h)) != 0)
            return rc;
        drop_front(h);
    }
    w = &h->segs[h->nsegs - 1];
    uint8_t hdr[RHDR];
    st_store_u32le(hdr, (uint32_t)len);
    st_store_u32le(hdr + 8, shard);
    st_store_u64le(hdr + 12, (uint64_t)now_ms);
    uint32_t crc = st_crc32c(st_crc32c(0, hdr + 8, 12), batch, len);
    st_store_u32le(hdr + 4, crc);
    struct iovec v[2] = {{hdr, RHDR}, {(void *)batch, len}};
    if (st_pwritev_all(h->wfd, v, len ? 2 : 1, w->size) != 0) {
        if (ftruncate(h->wfd, (off_t)w->size) != 0)
            h->failed = 1;
        return ST_EIO;
    }
    w->size += rec;
    w->nrec++;
    h->disk_bytes += rec;
    h->total_rec++;
    h->st.appended++;
    if (h->sync_mode == HINTS_SYNC_EVERY_APPEND && fdatasync(h->wfd) != 0) {
        h->failed = 1;
        return ST_EIO;
    }
    return 0;
}

int hints_append(hints_t *h, uint32_t shard, int64_t now_ms, const void *batch, size_t len)
{
    if (len > HINTS_MAX_RECORD)
        return ST_ELIMIT;
    if (len && !batch)
        return ST_EINVAL;
    pthread_mutex_lock(&h->mu);
    int rc = append_locked(h, shard, now_ms, batch, len);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

int hints_sync(hints_t *h)
{
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (h->failed)
        rc = ST_EIO;
    else if (h->wfd >= 0 && fdatasync(h->wfd) != 0) {
        h->failed = 1;
        rc = ST_EIO;
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

/* Read the record at `off` of segment sg (open as h->rfd) into hdr and
 * h->pbuf: 1 when intact, 0 when damaged (header or CRC), or ST_EIO /
 * ST_ENOMEM. *n: its batch length. */
static int read_record(hints_t *h, const hseg_t *sg, uint64_t off, uint8_t hdr[RHDR], uint32_t *n)
{
    *n = 0;
    if (sg->size - off < RHDR)
        return 0;
    if (st_pread_all(h->rfd, hdr, RHDR, off) != 0)
        return ST_EIO;
    uint32_t k = st_load_u32le(hdr);
    if (k > HINTS_MAX_RECORD || k > sg->size - off - RHDR)
        return 0;
    st_buf_reset(&h->pbuf);
    if (st_buf_reserve(&h->pbuf, k ? k : 1) != 0)
        return ST_ENOMEM;
    if (k && st_pread_all(h->rfd, h->pbuf.data, k, off + RHDR) != 0)
        return ST_EIO;
    h->pbuf.len = k;
    *n = k;
    return st_crc32c(st_crc32c(0, hdr + 8, 12), h->pbuf.data, k) == st_load_u32le(hdr + 4);
}

/* Is a record stamped t too old to hand out at now_ms? */
static int too_old(const hints_t *h, int64_t now_ms, int64_t t)
{
    return h->max_age_ms >= 0 && now_ms > t &&
           (uint64_t)now_ms - (uint64_t)t > (uint64_t)h->max_age_ms;
}

static int peek_locked(hints_t *h, int64_t now_ms, uint32_t *shard, int64_t *ts,
                       const uint8_t **batch, size_t *len)
{
    int rc;
    h->peeked = 0;
    if ((rc = settle(h)) != 0)
        return rc;
    for (;;) {
        if (h->nsegs == 0 || h->cur_off >= h->segs[0].size)
            return ST_ENOENT;
        hseg_t *s = &h->segs[0];
        if (h->rfd < 0 || h->rseq != s->seq) {
            char name[32];
            if (h->rfd >= 0)
                close(h->rfd);
            seg_name(name, sizeof name, s->seq);
            h->rfd = openat(h->dirfd, name, O_RDONLY | O_CLOEXEC);
            if (h->rfd < 0)
                return ST_EIO;
            h->rseq = s->seq;
        }
        uint8_t hdr[RHDR];
        uint32_t n;
        int ok = read_record(h, s, h->cur_off, hdr, &n);
        if (ok < 0)
            return ok;
        if (!ok) { /* damaged since recovery: cut like recovery would */
            if ((rc = cut_front(h)) != 0)
                return rc;
            continue;
        }
        int64_t t = (int64_t)st_load_u64le(hdr + 12);
        uint64_t end = h->cur_off + RHDR + n;
        if (too_old(h, now_ms, t)) {
            h->st.dropped_age_records++;
            h->st.dropped_age_bytes += RHDR + n;
            if ((rc = advance(h, end)) != 0)
                return rc;
            continue;
        }
        h->peeked = 1;
        h->peek_seq = s->seq;
        h->peek_off = h->cur_off;
        h->peek_end = end;
        h->peek_ends[0] = end;
        h->peek_count = 1;
        *shard = st_load_u32le(hdr + 8);
        *ts = t;
        *batch = h->pbuf.data;
        *len = n;
        return 0;
    }
}

int hints_peek(hints_t *h, int64_t now_ms, uint32_t *shard, int64_t *ts, const uint8_t **batch,
               size_t *len)
{
    pthread_mutex_lock(&h->mu);
    int rc = peek_locked(h, now_ms, shard, ts, batch, len);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

int hints_peek_many(hints_t *h, int64_t now_ms, size_t max_n, size_t max_bytes, hints_item_fn cb,
                    void *arg, size_t *n_out)
{
    uint32_t shard;
    int64_t ts;
    const uint8_t *batch;
    size_t len;
    *n_out = 0;
    if (max_n > HINTS_PEEK_MAX)
        max_n = HINTS_PEEK_MAX;
    pthread_mutex_lock(&h->mu);
    int rc = peek_locked(h, now_ms, &shard, &ts, &batch, &len);
    if (!rc)
        rc = cb(arg, shard, ts, batch, len);
    size_t n = 0, bytes = len;
    if (!rc) {
        h->peek_ends[n++] = h->peek_end;
        /* the following records of the same segment, while intact and young
         * (a damaged or too old one is left to the next peek, which cuts or
         * skips it) */
        const hseg_t *sg = &h->segs[0];
        uint64_t off = h->peek_end;
        while (n < max_n && bytes < max_bytes) {
            uint8_t hdr[RHDR];
            uint32_t k;
            if (read_record(h, sg, off, hdr, &k) != 1)
                break;
            int64_t t = (int64_t)st_load_u64le(hdr + 12);
            if (too_old(h, now_ms, t))
                break;
            if ((rc = cb(arg, st_load_u32le(hdr + 8), t, h->pbuf.data, k)) != 0)
                break;
            off += RHDR + k;
            bytes += k;
            h->peek_ends[n++] = off;
        }
        h->peek_count = n;
        h->peek_end = h->peek_ends[n - 1];
        rc = 0; /* a callback failure after the first: hand out what we have */
    } else {
        h->peeked = 0;
    }
    pthread_mutex_unlock(&h->mu);
    *n_out = n;
    return rc;
}

int hints_ack_many(hints_t *h, size_t k)
{
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (!h->peeked || k > h->peek_count) {
        rc = ST_EINVAL;
    } else {
        h->peeked = 0;
        if (h->nsegs > 0 && h->segs[0].seq == h->peek_seq && h->cur_off == h->peek_off) {
            for (size_t i = 0; i < k && !rc; i++) {
                h->st.acked++;
                rc = advance(h, h->peek_ends[i]);
            }
        }
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

int hints_ack(hints_t *h)
{
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (!h->peeked) {
        rc = ST_EINVAL;
    } else {
        h->peeked = 0;
        if (h->nsegs > 0 && h->segs[0].seq == h->peek_seq && h->cur_off == h->peek_off) {
            h->st.acked++;
            rc = advance(h, h->peek_end);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void hints_stats(hints_t *h, hints_stats_t *s)
{
    pthread_mutex_lock(&h->mu);
    *s = h->st;
    s->segments = (uint32_t)h->nsegs;
    s->disk_bytes = h->disk_bytes;
    s->pending_records = h->total_rec - (h->nsegs ? h->cur_rec : 0);
    s->pending_bytes = 0;
    s->oldest_ts = 0;
    if (h->nsegs) {
        s->pending_bytes = h->disk_bytes - h->nsegs * (uint64_t)SHDR - (h->cur_off - SHDR);
        uint8_t hdr[RHDR];
        char name[32];
        if (h->cur_off < h->segs[0].size) {
            int fd = h->rfd >= 0 && h->rseq == h->segs[0].seq ? h->rfd : -1;
            int own = fd < 0;
            if (own) {
                seg_name(name, sizeof name, h->segs[0].seq);
                fd = openat(h->dirfd, name, O_RDONLY | O_CLOEXEC);
            }
            if (fd >= 0 && st_pread_all(fd, hdr, RHDR, h->cur_off) == 0)
                s->oldest_ts = (int64_t)st_load_u64le(hdr + 12);
            if (own && fd >= 0)
                close(fd);
        }
    }
    pthread_mutex_unlock(&h->mu);
}
