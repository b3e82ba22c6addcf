/*
 * wal — write-ahead log; API and durability modes in wal.h.
 *
 * ON-DISK FORMAT (version 1; all integers little-endian)
 *
 *   A WAL is a directory of files named "%08u.wal" (00000001.wal, ...), each
 *   holding a file header and then back-to-back records. Numbers only grow;
 *   the log is the concatenation of the files in ascending order. Files are
 *   never reopened for appending: every wal_open() starts a new file.
 *
 *   File header (20 bytes):
 *     offset size field
 *          0    8 magic    "STRWAL01" (ASCII, no NUL)
 *          8    4 version  u32, 1
 *         12    4 seq      u32, the file's own number (must match its name)
 *         16    4 hcrc     u32, CRC-32C of bytes 0..15
 *
 *   Record (9 + len bytes), starting at offset 20:
 *     offset size field
 *          0    4 len      u32, payload bytes, 0..WAL_MAX_RECORD (64 MiB)
 *          4    4 crc      u32, CRC-32C over type byte followed by payload
 *          8    1 type     u8, chosen by the caller
 *          9  len payload
 *
 *   CRC-32C is the Castagnoli CRC (common/st_crc32c.h: reflected polynomial
 *   0x82f63b78, initial value and final xor 0xffffffff). The length is not
 *   covered by the CRC: a damaged length makes the CRC span wrong, which
 *   the CRC then catches (or the length check below does).
 *
 * RECOVERY (wal_open)
 *
 *   1. Files are listed and sorted by number. A gap in the numbers (a file
 *      missing in the middle) cannot be produced by this code, so it is
 *      reported as ST_ECORRUPT and nothing is touched.
 *   2. Each file is mmap'd and walked. A file shorter than the 20-byte header
 *      (a crash between create and the header's fdatasync) holds no records
 *      and replay goes on with the next file.
 *   3. The log ends at the first of: a header with bad magic, hcrc or seq
 *      (cut at offset 0); a record whose 9-byte header does not fit before
 *      EOF, whose len > WAL_MAX_RECORD, whose payload runs past EOF, or whose
 *      crc does not match (cut at the record's first byte). A header with a
 *      good hcrc but an unknown version fails with ST_EVERSION instead.
 *   4. At a cut: later files are unlinked, highest number first, then the
 *      directory is fsynced, then the file is ftruncated at the cut and
 *      fsynced. That order makes a crash during recovery safe: until the
 *      truncate lands, the next open finds the same cut again, and the
 *      numbers stay contiguous. wal_replay_info_t reports what was cut.
 *   5. A new file numbered last + 1 is created (O_EXCL), its header written
 *      and fdatasynced, then the directory fsynced.
 *
 * RUNTIME
 *
 *   Invariants (everything in struct wal below `mu` is guarded by it):
 *     I1  LSNs are assigned 1, 2, 3, ... in append order, per process; they
 *         are not stored on disk. synced_lsn <= written_lsn <= next_lsn.
 *     I2  `buf` holds, in LSN order, exactly the records written_lsn+1 ..
 *         next_lsn that no I/O owner has taken yet.
 *     I3  At most one thread, the I/O owner (busy == 1), does write(2),
 *         fdatasync or rotation on the WAL files; it works without `mu`.
 *         So writes and fsyncs of a file never overlap on two threads.
 *     I4  `marks` are offsets in `buf` where a new file must begin (decided
 *         at append time so that files stay <= file_max_bytes unless one
 *         record is bigger).
 *     I5  After an I/O error `failed` is set: every later append, sync and
 *         rotate returns ST_EIO (with errno restored). An fsync failure is
 *         never retried as if the data were safe; only wal_restart, called
 *         once the owner has put every record somewhere durable, clears it
 *         (fresh file, buffered records dropped, LSNs all marked synced).
 *
 *   Becoming the owner (lead_locked): set busy, swap `buf` with the spare
 *   `obuf`, note target = next_lsn, unlock, write obuf (rotating at marks),
 *   optionally fdatasync, relock, advance written_lsn/synced_lsn to target,
 *   clear busy, broadcast `cv`.
 *
 *   wal_sync(lsn), EVERY_WRITE: group commit. While synced_lsn < lsn: if an
 *   owner is busy, wait on `cv` (its fsync may cover us); otherwise lead
 *   with an fsync. PERIODIC/OS_DEFAULT: same loop on written_lsn without
 *   the fsync. PERIODIC also runs bg_main, which every sync_interval_ms
 *   leads with an fsync when synced_lsn < next_lsn. wal_append leads a
 *   write-only flush when `buf` passes 1 MiB (waiting for a busy owner
 *   first), which bounds memory to about two buffers.
 *
 *   Rotation (automatic at a mark, or wal_rotate): fdatasync the old file,
 *   create the next one as in recovery step 5, close the old one.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_file.h"
#include "st_varint.h"

#define WAL_MAGIC "STRWAL01"
#define WAL_VERSION 1u
#define WAL_FHDR 20u               /* file header bytes */
#define WAL_RHDR 9u                /* record header bytes */
#define WAL_FLUSH_BYTES (1u << 20) /* write(2) the buffer past this */
#define WAL_KEEP_BUF (4u << 20)    /* free a spare buffer bigger than this */
#define WAL_DEFAULT_FILE_MAX (128ull << 20)
#define WAL_DEFAULT_INTERVAL_MS 100u

enum { LEAD_FSYNC = 1, LEAD_ROTATE = 2 };

typedef struct wal_file {
    uint32_t seq;
    uint64_t size;
} wal_file_t;

struct wal {
    wal_mode_t mode;
    uint32_t interval_ms;
    uint64_t file_max;
    int dirfd;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* an I/O owner finished */
    /* --- guarded by mu --- */
    st_buf_t buf;
    size_t *marks;
    size_t nmarks, cap_marks;
    uint64_t tail_bytes; /* bytes of the file the next appended record goes to */
    uint64_t next_lsn;   /* last LSN assigned */
    uint64_t written_lsn;
    uint64_t synced_lsn;
    int busy;
    int failed;
    int fail_errno;
    uint32_t seq; /* current file */
    wal_file_t *files;
    size_t nfiles, cap_files;
    uint64_t bytes_written, syncs, records;
    int stop;
    /* --- owned by the I/O owner (busy) --- */
    int fd;
    st_buf_t obuf;
    size_t *omarks;
    size_t nomarks, cap_omarks;
    /* --- background fsync (PERIODIC) --- */
    pthread_t bg;
    int bg_started;
    pthread_cond_t bg_cv;
};

/* ---------- helpers ---------- */

static void file_name(char *name, size_t n, uint32_t seq)
{
    snprintf(name, n, "%08u.wal", seq);
}

static void encode_file_header(uint8_t *h, uint32_t seq)
{
    memcpy(h, WAL_MAGIC, 8);
    st_store_u32le(h + 8, WAL_VERSION);
    st_store_u32le(h + 12, seq);
    st_store_u32le(h + 16, st_crc32c(0, h, 16));
}

static int files_push(wal_t *w, uint32_t seq, uint64_t size)
{
    if (w->nfiles == w->cap_files) {
        size_t cap = w->cap_files ? w->cap_files * 2 : 16;
        wal_file_t *f = realloc(w->files, cap * sizeof *f);
        if (!f)
            return ST_ENOMEM;
        w->files = f;
        w->cap_files = cap;
    }
    w->files[w->nfiles].seq = seq;
    w->files[w->nfiles].size = size;
    w->nfiles++;
    return 0;
}

/* Create file `seq` with its header, fdatasync it and fsync the directory. */
static int file_create(wal_t *w, uint32_t seq, int *fd_out)
{
    char name[32];
    uint8_t h[WAL_FHDR];
    file_name(name, sizeof name, seq);
    int fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return ST_EIO;
    encode_file_header(h, seq);
    if (st_write_all(fd, h, sizeof h) || fdatasync(fd) || fsync(w->dirfd)) {
        int e = errno;
        close(fd);
        unlinkat(w->dirfd, name, 0); /* holds no record: a retry creates it again */
        errno = e;
        return ST_EIO;
    }
    *fd_out = fd;
    return 0;
}

/* ---------- the I/O owner (no mutex held) ---------- */

static void set_failed_locked(wal_t *w, int err)
{
    if (!w->failed) {
        w->failed = 1;
        w->fail_errno = err ? err : EIO;
    }
}

static void account_write(wal_t *w, size_t n)
{
    pthread_mutex_lock(&w->mu);
    w->bytes_written += n;
    w->files[w->nfiles - 1].size += n;
    pthread_mutex_unlock(&w->mu);
}

/* fdatasync the current file, start the next one, close the old. */
static int rotate_file(wal_t *w)
{
    int fd;
    if (fdatasync(w->fd))
        return ST_EIO;
    pthread_mutex_lock(&w->mu);
    w->syncs++;
    uint32_t seq = w->seq;
    pthread_mutex_unlock(&w->mu);
    if (seq == UINT32_MAX) {
        errno = EOVERFLOW;
        return ST_EIO;
    }
    int rc = file_create(w, seq + 1, &fd);
    if (rc)
        return rc;
    pthread_mutex_lock(&w->mu);
    rc = files_push(w, seq + 1, WAL_FHDR);
    if (rc == 0) {
        w->seq = seq + 1;
        w->syncs++;
        w->bytes_written += WAL_FHDR;
    }
    pthread_mutex_unlock(&w->mu);
    if (rc) {
        close(fd);
        errno = ENOMEM;
        return ST_EIO;
    }
    close(w->fd); /* data already fdatasynced */
    w->fd = fd;
    return 0;
}

/* Write obuf to the files, starting a new file at each mark. */
static int write_out(wal_t *w)
{
    size_t pos = 0;
    for (size_t i = 0; i < w->nomarks; i++) {
        size_t m = w->omarks[i];
        if (m > pos) {
            if (st_write_all(w->fd, w->obuf.data + pos, m - pos))
                return ST_EIO;
            account_write(w, m - pos);
            pos = m;
        }
        int rc = rotate_file(w);
        if (rc)
            return rc;
    }
    if (w->obuf.len > pos) {
        if (st_write_all(w->fd, w->obuf.data + pos, w->obuf.len - pos))
            return ST_EIO;
        account_write(w, w->obuf.len - pos);
    }
    return 0;
}

/*
 * Called with mu held, busy clear: become the owner, write everything
 * buffered so far, then fsync (LEAD_FSYNC) or rotate (LEAD_ROTATE).
 * Returns with mu held.
 */
static int lead_locked(wal_t *w, int what)
{
    st_buf_t tb = w->buf;
    size_t *tm = w->marks, tcap = w->cap_marks;

    w->busy = 1;
    w->buf = w->obuf;
    w->obuf = tb;
    w->marks = w->omarks;
    w->cap_marks = w->cap_omarks;
    w->omarks = tm;
    w->cap_omarks = tcap;
    w->nomarks = w->nmarks;
    w->nmarks = 0;
    if (what & LEAD_ROTATE)
        w->tail_bytes = WAL_FHDR; /* later appends land in the new file */
    uint64_t target = w->next_lsn;
    pthread_mutex_unlock(&w->mu);

    int synced = 0, fsyncs = 0;
    int rc = write_out(w);
    if (rc == 0 && (what & LEAD_ROTATE)) {
        rc = rotate_file(w);
        synced = 1;
    } else if (rc == 0 && (what & LEAD_FSYNC)) {
        if (fdatasync(w->fd))
            rc = ST_EIO;
        synced = 1;
        fsyncs = 1;
    }
    int err = errno;
    if (w->obuf.cap > WAL_KEEP_BUF)
        st_buf_deinit(&w->obuf);
    st_buf_reset(&w->obuf);
    w->nomarks = 0;

    pthread_mutex_lock(&w->mu);
    if (rc) {
        set_failed_locked(w, err);
    } else {
        w->written_lsn = target;
        if (synced)
            w->synced_lsn = target;
        w->syncs += (uint64_t)fsyncs;
    }
    w->busy = 0;
    pthread_cond_broadcast(&w->cv);
    if (rc)
        errno = err;
    return rc ? ST_EIO : 0;
}

/*
 * Called with mu held: make records up to `lsn` written (and fsynced if
 * `fsync`), leading or following. Returns with mu held.
 */
static int sync_locked(wal_t *w, uint64_t lsn, int fsync)
{
    for (;;) {
        if (w->failed) {
            errno = w->fail_errno;
            return ST_EIO;
        }
        if ((fsync ? w->synced_lsn : w->written_lsn) >= lsn)
            return 0;
        if (w->busy) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        int rc = lead_locked(w, fsync ? LEAD_FSYNC : 0);
        if (rc)
            return rc;
    }
}

static void *bg_main(void *arg)
{
    wal_t *w = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        next.tv_sec += w->interval_ms / 1000;
        next.tv_nsec += (long)(w->interval_ms % 1000) * 1000000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        while (!w->stop && pthread_cond_timedwait(&w->bg_cv, &w->mu, &next) != ETIMEDOUT)
            ;
        if (w->stop)
            break;
        if (!w->failed && w->synced_lsn < w->next_lsn)
            (void)sync_locked(w, w->next_lsn, 1); /* errors leave w->failed set */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1)
            next = now; /* fell far behind (slow fsync): don't burst */
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---------- open / replay ---------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sorted numbers of the "%08u.wal" files in the directory. */
static int list_files(wal_t *w, uint32_t **out, size_t *n_out)
{
    int fd = dup(w->dirfd);
    if (fd < 0)
        return ST_EIO;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return ST_EIO;
    }
    rewinddir(d);
    uint32_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *s = de->d_name;
        size_t len = strlen(s);
        if (len < 12 || len > 14 || strcmp(s + len - 4, ".wal") != 0)
            continue;
        uint64_t x = 0;
        size_t i;
        for (i = 0; i < len - 4 && s[i] >= '0' && s[i] <= '9'; i++)
            x = x * 10 + (uint64_t)(s[i] - '0');
        if (i != len - 4 || x > UINT32_MAX)
            continue;
        char canon[32];
        file_name(canon, sizeof canon, (uint32_t)x);
        if (strcmp(canon, s) != 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint32_t *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = ST_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = (uint32_t)x;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = ST_EIO;
    int e = errno;
    closedir(d);
    if (rc) {
        free(v);
        errno = e;
        return rc;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_u32);
    *out = v;
    *n_out = n;
    return 0;
}

/*
 * Walk one mapped file: call cb per good record. *cut receives the offset
 * where the log ends (size if the file is clean). Returns 0, ST_EVERSION or
 * the callback's non-zero value.
 */
static int replay_buf(const uint8_t *p, uint64_t size, uint32_t seq, wal_replay_cb cb, void *arg,
                      wal_replay_info_t *info, uint64_t *cut)
{
    if (memcmp(p, WAL_MAGIC, 8) != 0 || st_load_u32le(p + 16) != st_crc32c(0, p, 16)) {
        *cut = 0;
        return 0;
    }
    if (st_load_u32le(p + 8) != WAL_VERSION)
        return ST_EVERSION;
    if (st_load_u32le(p + 12) != seq) {
        *cut = 0;
        return 0;
    }
    uint64_t off = WAL_FHDR;
    while (off < size) {
        if (size - off < WAL_RHDR)
            break;
        uint32_t len = st_load_u32le(p + off);
        if (len > WAL_MAX_RECORD || len > size - off - WAL_RHDR)
            break;
        const uint8_t *rec = p + off;
        if (st_crc32c(0, rec + 8, (size_t)len + 1) != st_load_u32le(rec + 4))
            break;
        if (cb) {
            int r = cb(arg, rec[8], rec + WAL_RHDR, len);
            if (r)
                return r;
        }
        info->records++;
        info->bytes += len;
        off += WAL_RHDR + (uint64_t)len;
    }
    *cut = off;
    return 0;
}

/* Unlink files[from..n) highest first, fsync the dir, truncate `fd` at `cut`. */
static int cut_log(wal_t *w, const uint32_t *seqs, size_t from, size_t n, int fd, uint64_t cut,
                   wal_replay_info_t *info)
{
    char name[32];
    for (size_t j = n; j > from; j--) {
        file_name(name, sizeof name, seqs[j - 1]);
        if (unlinkat(w->dirfd, name, 0) != 0 && errno != ENOENT)
            return ST_EIO;
        info->files_dropped++;
    }
    if (n > from && fsync(w->dirfd) != 0)
        return ST_EIO;
    if (ftruncate(fd, (off_t)cut) != 0 || fsync(fd) != 0)
        return ST_EIO;
    return 0;
}

static int replay(wal_t *w, const uint32_t *seqs, size_t n, wal_replay_cb cb, void *arg,
                  wal_replay_info_t *info)
{
    char name[32];
    for (size_t i = 0; i < n; i++) {
        file_name(name, sizeof name, seqs[i]);
        int fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return ST_EIO;
        struct stat st;
        if (fstat(fd, &st) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return ST_EIO;
        }
        uint64_t size = (uint64_t)st.st_size;
        info->files++;
        int rc = files_push(w, seqs[i], size);
        if (rc || size < WAL_FHDR) { /* a torn header: an empty file */
            close(fd);
            if (rc)
                return rc;
            continue;
        }
        if (size > SIZE_MAX) {
            close(fd);
            return ST_ELIMIT;
        }
        void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            errno = e;
            return ST_EIO;
        }
        (void)madvise(map, (size_t)size, MADV_SEQUENTIAL);
        uint64_t cut = size;
        rc = replay_buf(map, size, seqs[i], cb, arg, info, &cut);
        munmap(map, (size_t)size);
        if (rc == 0 && cut < size) {
            rc = cut_log(w, seqs, i + 1, n, fd, cut, info);
            if (rc == 0) {
                info->truncated = 1;
                info->trunc_file = seqs[i];
                info->trunc_offset = cut;
                info->trunc_bytes = size - cut;
                w->files[w->nfiles - 1].size = cut;
            }
            int e = errno;
            close(fd);
            errno = e;
            return rc;
        }
        close(fd);
        if (rc)
            return rc;
    }
    return 0;
}

static void wal_free(wal_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    st_buf_deinit(&w->buf);
    st_buf_deinit(&w->obuf);
    free(w->marks);
    free(w->omarks);
    free(w->files);
    pthread_cond_destroy(&w->bg_cv);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int wal_open(const char *dir, const wal_opts_t *o, wal_replay_cb cb, void *arg,
             wal_replay_info_t *info, wal_t **out)
{
    wal_replay_info_t dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof *info);
    if (!out)
        return ST_EINVAL;
    *out = NULL;
    if (!dir || !*dir || !o || (unsigned)o->mode > WAL_NONE)
        return ST_EINVAL;

    wal_t *w = calloc(1, sizeof *w);
    if (!w)
        return ST_ENOMEM;
    w->mode = o->mode;
    w->interval_ms = o->sync_interval_ms ? o->sync_interval_ms : WAL_DEFAULT_INTERVAL_MS;
    w->file_max = o->file_max_bytes ? o->file_max_bytes : WAL_DEFAULT_FILE_MAX;
    w->tail_bytes = WAL_FHDR;
    w->fd = -1;
    w->dirfd = -1;
    st_buf_init(&w->buf);
    st_buf_init(&w->obuf);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->bg_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (w->mode == WAL_NONE) {
        *out = w;
        return 0;
    }

    uint32_t *seqs = NULL;
    size_t n = 0;
    int rc = st_mkdir_p(dir);
    if (rc)
        goto fail;
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        rc = ST_EIO;
        goto fail;
    }
    rc = list_files(w, &seqs, &n);
    if (rc)
        goto fail;
    for (size_t i = 1; i < n; i++) {
        if (seqs[i] != seqs[i - 1] + 1) {
            rc = ST_ECORRUPT; /* a file is missing in the middle */
            goto fail;
        }
    }
    rc = replay(w, seqs, n, cb, arg, info);
    if (rc)
        goto fail;
    uint32_t last = w->nfiles ? w->files[w->nfiles - 1].seq : 0;
    if (last == UINT32_MAX) {
        rc = ST_ELIMIT;
        goto fail;
    }
    rc = file_create(w, last + 1, &w->fd);
    if (rc)
        goto fail;
    rc = files_push(w, last + 1, WAL_FHDR);
    if (rc)
        goto fail;
    w->seq = last + 1;
    w->syncs = 1;
    w->bytes_written = WAL_FHDR;
    if (w->mode == WAL_PERIODIC) {
        if (pthread_create(&w->bg, NULL, bg_main, w) != 0) {
            rc = ST_ENOMEM;
            goto fail;
        }
        w->bg_started = 1;
    }
    free(seqs);
    *out = w;
    return 0;
fail:;
    int e = errno;
    free(seqs);
    wal_free(w);
    errno = e;
    return rc;
}

/* ---------- append / sync / rotate ---------- */

int wal_append(wal_t *w, uint8_t type, const void *payload, size_t len, uint64_t *lsn)
{
    if (!w || (len && !payload))
        return ST_EINVAL;
    if (len > WAL_MAX_RECORD)
        return ST_ELIMIT;
    if (w->mode == WAL_NONE) {
        pthread_mutex_lock(&w->mu);
        uint64_t l = ++w->next_lsn;
        w->records++;
        pthread_mutex_unlock(&w->mu);
        if (lsn)
            *lsn = l;
        return 0;
    }
    uint8_t h[WAL_RHDR];
    st_store_u32le(h, (uint32_t)len);
    h[8] = type;
    st_store_u32le(h + 4, st_crc32c(st_crc32c(0, &type, 1), payload, len));
    size_t rec = WAL_RHDR + len;

    pthread_mutex_lock(&w->mu);
    int rc = 0;
    if (w->failed) {
        errno = w->fail_errno;
        rc = ST_EIO;
        goto out;
    }
    int mark = w->tail_bytes > WAL_FHDR && w->tail_bytes + rec > w->file_max;
    if (mark && w->nmarks == w->cap_marks) {
        size_t cap = w->cap_marks ? w->cap_marks * 2 : 8;
        size_t *m = realloc(w->marks, cap * sizeof *m);
        if (!m) {
            rc = ST_ENOMEM;
            goto out;
        }
        w->marks = m;
        w->cap_marks = cap;
    }
    if ((rc = st_buf_reserve(&w->buf, rec)) != 0)
        goto out;
    if (mark) {
        w->marks[w->nmarks++] = w->buf.len;
        w->tail_bytes = WAL_FHDR;
    }
    st_buf_append(&w->buf, h, WAL_RHDR);
    st_buf_append(&w->buf, payload, len);
    w->tail_bytes += rec;
    uint64_t l = ++w->next_lsn;
    w->records++;
    if (lsn)
        *lsn = l;
    if (w->buf.len >= WAL_FLUSH_BYTES)
        rc = sync_locked(w, l, 0); /* bound memory: hand it to the OS */
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int wal_sync(wal_t *w, uint64_t lsn)
{
    if (!w)
        return ST_EINVAL;
    if (w->mode == WAL_NONE)
        return 0;
    pthread_mutex_lock(&w->mu);
    if (lsn > w->next_lsn)
        lsn = w->next_lsn;
    int rc = sync_locked(w, lsn, w->mode == WAL_EVERY_WRITE);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int wal_rotate(wal_t *w, uint32_t *seq)
{
    if (!w)
        return ST_EINVAL;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (w->mode == WAL_NONE) {
        w->seq++;
        goto out;
    }
    for (;;) {
        if (w->failed) {
            errno = w->fail_errno;
            rc = ST_EIO;
            goto out;
        }
        if (!w->busy)
            break;
        pthread_cond_wait(&w->cv, &w->mu);
    }
    rc = lead_locked(w, LEAD_ROTATE);
out:
    if (rc == 0 && seq)
        *seq = w->seq;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int wal_failed(wal_t *w, int *err)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    int f = w->failed;
    if (err)
        *err = w->fail_errno;
    pthread_mutex_unlock(&w->mu);
    return f;
}

int wal_restart(wal_t *w, uint32_t *seq)
{
    if (!w)
        return ST_EINVAL;
    pthread_mutex_lock(&w->mu);
    while (w->busy)
        pthread_cond_wait(&w->cv, &w->mu);
    if (!w->failed || w->mode == WAL_NONE) {
        if (seq)
            *seq = w->seq;
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    if (w->seq == UINT32_MAX) {
        pthread_mutex_unlock(&w->mu);
        errno = EOVERFLOW;
        return ST_EIO;
    }
    w->busy = 1; /* own the files while creating the new one */
    uint32_t next = w->seq + 1;
    pthread_mutex_unlock(&w->mu);
    int fd = -1;
    int rc = file_create(w, next, &fd);
    int err = errno;
    pthread_mutex_lock(&w->mu);
    if (!rc)
        rc = files_push(w, next, WAL_FHDR);
    if (!rc) {
        close(w->fd);
        w->fd = fd;
        w->seq = next;
        st_buf_reset(&w->buf);
        w->nmarks = 0;
        w->tail_bytes = WAL_FHDR;
        w->written_lsn = w->synced_lsn = w->next_lsn;
        w->failed = 0;
        w->fail_errno = 0;
        w->bytes_written += WAL_FHDR;
        if (seq)
            *seq = next;
    } else if (fd >= 0) { /* created, but no memory to list it */
        char name[32];
        file_name(name, sizeof name, next);
        close(fd);
        unlinkat(w->dirfd, name, 0);
    }
    w->busy = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    errno = err;
    return rc;
}

int wal_remove_before(wal_t *w, uint32_t seq)
{
    if (!w)
        return ST_EINVAL;
    if (w->mode == WAL_NONE)
        return 0;
    pthread_mutex_lock(&w->mu);
    if (seq > w->seq)
        seq = w->seq; /* never the file being written */
    size_t k = 0;
    while (k < w->nfiles && w->files[k].seq < seq)
        k++;
    uint32_t *del = NULL;
    if (k) {
        del = malloc(k * sizeof *del);
        if (!del) {
            pthread_mutex_unlock(&w->mu);
            return ST_ENOMEM;
        }
        for (size_t i = 0; i < k; i++)
            del[i] = w->files[i].seq;
        memmove(w->files, w->files + k, (w->nfiles - k) * sizeof *w->files);
        w->nfiles -= k;
    }
    pthread_mutex_unlock(&w->mu);

    int rc = 0;
    char name[32];
    for (size_t i = 0; i < k && rc == 0; i++) { /* lowest first: numbers stay contiguous */
        file_name(name, sizeof name, del[i]);
        if (unlinkat(w->dirfd, name, 0) != 0 && errno != ENOENT)
            rc = ST_EIO;
    }
    free(del);
    if (k && rc == 0 && fsync(w->dirfd) != 0)
        rc = ST_EIO;
    return rc;
}

void wal_get_stats(wal_t *w, wal_stats_t *s)
{
    memset(s, 0, sizeof *s);
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    s->bytes_written = w->bytes_written;
    s->syncs = w->syncs;
    s->records = w->records;
    for (size_t i = 0; i < w->nfiles; i++)
        s->disk_bytes += w->files[i].size;
    s->files = (uint32_t)w->nfiles;
    pthread_mutex_unlock(&w->mu);
}

int wal_close(wal_t *w)
{
    if (!w)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->bg_cv);
    pthread_mutex_unlock(&w->mu);
    if (w->bg_started)
        pthread_join(w->bg, NULL);
    if (w->mode != WAL_NONE) {
        pthread_mutex_lock(&w->mu);
        rc = sync_locked(w, w->next_lsn, 1);
        pthread_mutex_unlock(&w->mu);
        if (close(w->fd) != 0 && rc == 0)
            rc = ST_EIO;
        w->fd = -1;
    }
    int e = errno;
    wal_free(w);
    errno = e;
    return rc;
}
