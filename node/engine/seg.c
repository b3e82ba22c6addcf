/*
 * seg — immutable segment files; API in seg.h.
 *
 * FILE LAYOUT (format version 2; all integers little-endian)
 *
 *   +-----------+------------------------------+-----------+----------+
 *   | header 52 | block data (concatenated)    | directory | footer 52|
 *   +-----------+------------------------------+-----------+----------+
 *   0           52                             dir_off     size-52    size
 *
 * Header (52 bytes, offset 0):
 *    0  u8[8]  magic "STRSEG01"
 *    8  u32    format version (2; 1 is read too, see below)
 *   12  u32    header flags (0; any other value is rejected)
 *   16  i64    meta.part_start   (ms, partition [start, end))
 *   24  i64    meta.part_end
 *   32  u64    meta.seq
 *   40  u64    meta.level
 *   48  u32    CRC-32C of bytes 0..47
 *   The version is checked right after the magic and before the CRC, so a
 *   file written by a newer format (whose header may differ) reports
 *   ST_EVERSION rather than ST_ECORRUPT.
 *
 * Block data (offset 52 .. dir_off): the opaque block bytes given to
 *   seg_writer_add, back to back, in directory order, with no framing. The
 *   directory's block lengths must cover this section exactly: block i
 *   starts at 52 + sum(len[0..i-1]) and the last block ends at dir_off.
 *
 * Directory (dir_off .. dir_off + dir_len): a "raw directory" of
 *   entry_count entries, optionally LZ4-block-compressed (footer flag bit
 *   0; the writer compresses only when that makes it smaller). Entries are
 *   sorted by (series id, mint), non-decreasing. Each raw entry is five
 *   LEB128 varints followed by a fixed u32; the delta state starts as
 *   prev_id = 0, prev_mint = prev_maxt = part_start, prev_span = 0,
 *   prev_count = 0, and "zz" is zigzag of the 64-bit two's-complement
 *   (wrapping) difference:
 *     uvarint  id - prev_id
 *     uvarint  zz(mint - prev_maxt)  if this entry has the previous entry's
 *                                    series id (not for entry 0),
 *              zz(mint - prev_mint)  otherwise
 *     uvarint  zz(span - prev_span)  where span = maxt - mint (>= 0)
 *     uvarint  zz(count - prev_count)
 *     uvarint  block length in bytes
 *     uvarint  zz(vmax - prev_vmax)  format 2 only: the block's version, the
 *                                    highest version of its samples
 *                                    (engine.h, VERSIONS); prev_vmax starts 0
 *     u32      CRC-32C of the block bytes
 *   then prev_* := this entry's values. A format 1 file has no vmax field:
 *   every block reads as version 0. Offsets are not stored: they follow
 *   from the cumulative lengths. A raw entry is 9..54 bytes; typically ~10.
 *
 * Footer (52 bytes, at size - 52):
 *    0  u64    dir_off         (== 52 + total block bytes)
 *    8  u64    dir_len         bytes of the directory as stored
 *   16  u64    dir_raw_len     bytes of the raw directory (== dir_len when
 *                              not compressed)
 *   24  u64    entry_count
 *   32  u32    directory flags: bit 0 = LZ4 block compressed; others 0
 *   36  u32    CRC-32C of the stored directory bytes
 *   40  u32    CRC-32C of footer bytes 0..39
 *   44  u8[8]  magic "STRSEGFT"
 *
 * VALIDATION AT OPEN (any failure: ST_ECORRUPT, except ST_EVERSION above)
 *   1. size >= 104; header magic, version, flags, CRC; footer magic, CRC.
 *   2. dir_off >= 52 and dir_off + dir_len == size - 52 (sizes add up).
 *   3. Before allocating: uncompressed => dir_raw_len == dir_len;
 *      compressed => dir_len < dir_raw_len <= 255 * dir_len + 16 and
 *      dir_raw_len <= LZ4_MAX_INPUT_SIZE; entry_count <= dir_raw_len / 9
 *      (the smallest raw entry) and entry_count == 0 iff dir_raw_len == 0.
 *   4. Directory CRC; LZ4 output is exactly dir_raw_len bytes.
 *   5. Decode every entry once into an array: ids fit in u32 and do not
 *      decrease, mint does not decrease within a series, mint <= maxt,
 *      1 <= count <= UINT32_MAX, each block lies inside the data section,
 *      the raw directory is consumed exactly and the blocks end at dir_off.
 *   Block CRCs are checked lazily by seg_entry.
 *
 * THREADS
 *   A seg_t is immutable after seg_open except for the "verified" bitmap:
 *   seg_entry may be called from many threads at once. The first successful
 *   CRC check of block i sets bit i with a relaxed atomic OR; later calls
 *   skip the checksum. Relaxed ordering suffices: the bit only says that the
 *   (read-only, already mapped) bytes matched, it publishes no other data.
 *   A writer is used by one thread at a time.
 *
 * SUMMARY (seg_summary_t; in memory only, the file format is unchanged)
 *   The time range of the entries and their distinct series ids, as the
 *   smallest exact form within SEG_SUMMARY_MAX_BYTES: an ascending list
 *   (8 bytes an id) or a bitmap over [id_min, id_max]; else a Bloom filter
 *   of ~10 bits an id (3 probes, capped at that size). The writer collects
 *   the ids it is given; an open segment rebuilds it from its directory.
 *
 * DURABILITY
 *   The writer streams to "<path>.tmp" through a 1 MiB buffer, then writes
 *   the directory and footer, fdatasync()s, closes, renames to <path> and
 *   fsync()s the parent directory. If any step fails, the temporary (or,
 *   when only the final directory fsync fails, the renamed file) is
 *   unlinked and the error returned: a failed finish leaves no segment.
 */
#include "seg.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_file.h"
#include "st_varint.h"

#define SEG_MAGIC "STRSEG01"
#define SEG_FOOT_MAGIC "STRSEGFT"
#define SEG_VERSION 2u    /* written */
#define SEG_VERSION_V1 1u /* read: no block versions */
#define SEG_HDR_SIZE 52u
#define SEG_FTR_SIZE 52u
#define SEG_DIR_LZ4 1u
#define SEG_MIN_ENTRY 9u /* five 1-byte varints + u32 crc */
#define SEG_WBUF_SIZE (1u << 20)

/* One decoded directory entry (48 bytes). */
typedef struct seg_ent {
    int64_t mint;
    int64_t maxt;
    uint64_t off;
    uint64_t vmax;
    uint32_t id;
    uint32_t count;
    uint32_t len;
    uint32_t crc;
} seg_ent_t;

struct seg {
    seg_meta_t meta;
    const uint8_t *map;
    size_t map_len;
    size_t n;
    seg_ent_t *ents;
    _Atomic uint64_t *verified; /* one bit per entry */
};

/* Delta state shared by the directory encoder and decoder. */
typedef struct dir_state {
    uint64_t n;
    uint32_t id;
    int64_t mint;
    int64_t maxt;
    uint64_t span;
    uint64_t count;
    uint64_t vmax;
} dir_state_t;

struct seg_writer {
    int fd;
    int err; /* sticky: first I/O or allocation failure */
    char *path;
    char *tmp;
    seg_meta_t meta;
    uint8_t *wbuf;
    size_t wlen;
    uint64_t data_end; /* file offset after the last block */
    dir_state_t st;
    st_buf_t dir; /* raw directory */
    /* for seg_writer_summary: the distinct ids added, the time covered */
    uint32_t *ids;
    size_t nids, idcap;
    int ids_lost; /* an allocation failed: no summary from the writer */
    int64_t mint, maxt;
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t zz(uint64_t d)
{
    return (d << 1) ^ (0 - (d >> 63));
}

static uint64_t unzz(uint64_t u)
{
    return (u >> 1) ^ (0 - (u & 1));
}

/* Two's-complement reinterpretation without implementation-defined casts. */
static int64_t u2i(uint64_t v)
{
    return v <= (uint64_t)INT64_MAX ? (int64_t)v : -(int64_t)(~v) - 1;
}

static void dir_state_init(dir_state_t *st, int64_t part_start)
{
    memset(st, 0, sizeof *st);
    st->mint = part_start;
    st->maxt = part_start;
}

static void encode_header(uint8_t h[SEG_HDR_SIZE], const seg_meta_t *m)
{
    memcpy(h, SEG_MAGIC, 8);
    st_store_u32le(h + 8, SEG_VERSION);
    st_store_u32le(h + 12, 0);
    st_store_u64le(h + 16, (uint64_t)m->part_start);
    st_store_u64le(h + 24, (uint64_t)m->part_end);
    st_store_u64le(h + 32, m->seq);
    st_store_u64le(h + 40, m->level);
    st_store_u32le(h + 48, st_crc32c(0, h, 48));
}

/* ---- writer ----------------------------------------------------------- */

static int wflush(seg_writer_t *w)
{
    int rc = st_write_all(w->fd, w->wbuf, w->wlen);
    w->wlen = 0;
    return rc;
}

static int wput(seg_writer_t *w, const uint8_t *p, size_t n)
{
    if (n > SEG_WBUF_SIZE - w->wlen) {
        int rc = wflush(w);
        if (rc)
            return rc;
        if (n >= SEG_WBUF_SIZE)
            return st_write_all(w->fd, p, n);
    }
    if (n)
        memcpy(w->wbuf + w->wlen, p, n);
    w->wlen += n;
    return 0;
}

static void writer_free(seg_writer_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    st_buf_deinit(&w->dir);
    free(w->ids);
    free(w->wbuf);
    free(w->path);
    free(w->tmp);
    free(w);
}

/* Remember the id and time of an added block for the summary (a failed
 * allocation only costs the writer's summary). */
static void writer_note(seg_writer_t *w, uint32_t id, int64_t mint, int64_t maxt)
{
    if (w->st.n == 0 || mint < w->mint)
        w->mint = mint;
    if (w->st.n == 0 || maxt > w->maxt)
        w->maxt = maxt;
    if (w->ids_lost || (w->nids && w->ids[w->nids - 1] == id))
        return;
    if (w->nids == w->idcap) {
        size_t cap = w->idcap ? 2 * w->idcap : 64;
        uint32_t *ids = realloc(w->ids, cap * sizeof *ids);
        if (!ids) {
            w->ids_lost = 1;
            return;
        }
        w->ids = ids;
        w->idcap = cap;
    }
    w->ids[w->nids++] = id;
}

int seg_writer_create(const char *path, const seg_meta_t *meta, seg_writer_t **out)
{
    if (!path || !*path || !meta || !out)
        return ST_EINVAL;
    *out = NULL;
    seg_writer_t *w = calloc(1, sizeof *w);
    if (!w)
        return ST_ENOMEM;
    w->fd = -1;
    st_buf_init(&w->dir);
    size_t plen = strlen(path);
    w->path = malloc(plen + 1);
    w->tmp = malloc(plen + 5);
    w->wbuf = malloc(SEG_WBUF_SIZE);
    if (!w->path || !w->tmp || !w->wbuf) {
        writer_free(w);
        return ST_ENOMEM;
    }
    memcpy(w->path, path, plen + 1);
    memcpy(w->tmp, path, plen);
    memcpy(w->tmp + plen, ".tmp", 5);
    w->meta = *meta;
    dir_state_init(&w->st, meta->part_start);
    w->fd = open(w->tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        writer_free(w);
        return ST_EIO;
    }
    encode_header(w->wbuf, meta);
    w->wlen = SEG_HDR_SIZE;
    w->data_end = SEG_HDR_SIZE;
    *out = w;
    return 0;
}

int seg_writer_add(seg_writer_t *w, uint32_t series_id, uint32_t count, int64_t mint, int64_t maxt,
                   const uint8_t *block, size_t len)
{
    return seg_writer_add_v(w, series_id, count, mint, maxt, 0, block, len);
}

int seg_writer_add_v(seg_writer_t *w, uint32_t series_id, uint32_t count, int64_t mint,
                     int64_t maxt, uint64_t vmax, const uint8_t *block, size_t len)
{
    if (!w || count == 0 || mint > maxt || (len > 0 && !block) || len > UINT32_MAX)
        return ST_EINVAL;
    if (w->err)
        return w->err;
    dir_state_t *st = &w->st;
    if (st->n > 0 && (series_id < st->id || (series_id == st->id && mint < st->mint)))
        return ST_EINVAL;
    if (len > UINT64_MAX - w->data_end)
        return ST_ELIMIT;

    bool same = st->n > 0 && series_id == st->id;
    uint64_t span = (uint64_t)maxt - (uint64_t)mint;
    uint8_t ent[6 * ST_UVARINT_MAX + 4];
    size_t k = 0;
    k += st_uvarint_put(ent + k, (uint64_t)(series_id - st->id));
    k += st_uvarint_put(ent + k, zz((uint64_t)mint - (uint64_t)(same ? st->maxt : st->mint)));
    k += st_uvarint_put(ent + k, zz(span - st->span));
    k += st_uvarint_put(ent + k, zz((uint64_t)count - st->count));
    k += st_uvarint_put(ent + k, (uint64_t)len);
    k += st_uvarint_put(ent + k, zz(vmax - st->vmax));
    st_store_u32le(ent + k, st_crc32c(0, block, len));
    k += 4;

    int rc = st_buf_reserve(&w->dir, k);
    if (rc) {
        w->err = rc;
        return rc;
    }
    rc = wput(w, block, len);
    if (rc) {
        w->err = rc;
        return rc;
    }
    st_buf_append(&w->dir, ent, k); /* cannot fail: reserved above */
    writer_note(w, series_id, mint, maxt);
    w->data_end += len;
    st->n++;
    st->id = series_id;
    st->mint = mint;
    st->maxt = maxt;
    st->span = span;
    st->count = count;
    st->vmax = vmax;
    return 0;
}

/* fsync the directory containing `path`. */
static int sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = strdup(".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = strndup(path, n);
    }
    if (!dir)
        return ST_ENOMEM;
    int rc = st_fsync_dir(dir);
    free(dir);
    return rc;
}

/* Write the directory and the footer, and flush the buffer (no sync). */
static int write_tail(seg_writer_t *w)
{
    int rc = w->err;
    uint8_t *zbuf = NULL;
    if (rc)
        return rc;

    const uint8_t *dir = w->dir.data;
    uint64_t raw_len = w->dir.len, dir_len = raw_len;
    uint32_t flags = 0;
    if (raw_len >= 64 && raw_len <= LZ4_MAX_INPUT_SIZE) {
        int bound = LZ4_compressBound((int)raw_len);
        zbuf = malloc((size_t)bound);
        if (zbuf) {
            int z = LZ4_compress_default((const char *)dir, (char *)zbuf, (int)raw_len, bound);
            if (z > 0 && (uint64_t)z < raw_len) {
                dir = zbuf;
                dir_len = (uint64_t)z;
                flags = SEG_DIR_LZ4;
            }
        }
    }

    uint8_t f[SEG_FTR_SIZE];
    st_store_u64le(f, w->data_end);
    st_store_u64le(f + 8, dir_len);
    st_store_u64le(f + 16, raw_len);
    st_store_u64le(f + 24, w->st.n);
    st_store_u32le(f + 32, flags);
    st_store_u32le(f + 36, st_crc32c(0, dir, (size_t)dir_len));
    st_store_u32le(f + 40, st_crc32c(0, f, 40));
    memcpy(f + 44, SEG_FOOT_MAGIC, 8);

    if (!(rc = wput(w, dir, (size_t)dir_len)) && !(rc = wput(w, f, sizeof f)))
        rc = wflush(w);
    free(zbuf);
    return rc;
}

int seg_writer_finish_deferred(seg_writer_t *w)
{
    if (!w)
        return ST_EINVAL;
    int rc = write_tail(w);
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0 && !rc)
        rc = ST_EIO;
    if (rc) {
        int en = errno;
        unlink(w->tmp);
        errno = en;
    }
    writer_free(w);
    return rc;
}

int seg_commit(const char *path)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (!tmp)
        return ST_ENOMEM;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int rc = rename(tmp, path) == 0 ? 0 : ST_EIO;
    free(tmp);
    return rc;
}

int seg_writer_finish(seg_writer_t *w)
{
    if (!w)
        return ST_EINVAL;
    int rc = write_tail(w);
    if (rc)
        goto fail;
    if (fdatasync(w->fd) != 0) {
        rc = ST_EIO;
        goto fail;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        rc = ST_EIO;
        goto fail;
    }
    if (rename(w->tmp, w->path) != 0) {
        rc = ST_EIO;
        goto fail;
    }
    rc = sync_parent(w->path);
    if (rc) {
        unlink(w->path);
        goto out;
    }
    goto out;

fail:
    unlink(w->tmp);
out:
    writer_free(w);
    return rc;
}

void seg_writer_abort(seg_writer_t *w)
{
    if (!w)
        return;
    unlink(w->tmp);
    writer_free(w);
}

/* ---- reader ----------------------------------------------------------- */

/* Decode the raw directory [p, end) of n entries into s->ents. */
static int decode_dir(seg_t *s, const uint8_t *p, const uint8_t *end, uint64_t dir_off,
                      int versioned)
{
    dir_state_t st;
    dir_state_init(&st, s->meta.part_start);
    uint64_t off = SEG_HDR_SIZE;
    for (size_t i = 0; i < s->n; i++) {
        uint64_t v[6] = {0};
        for (int j = 0; j < 5 + versioned; j++) {
            int k = st_uvarint_get(p, end, &v[j]);
            if (k <= 0)
                return ST_ECORRUPT;
            p += k;
        }
        if (end - p < 4)
            return ST_ECORRUPT;
        uint32_t crc = st_load_u32le(p);
        p += 4;

        if (v[0] > (uint64_t)(UINT32_MAX - st.id))
            return ST_ECORRUPT;
        uint32_t id = st.id + (uint32_t)v[0];
        bool same = i > 0 && v[0] == 0;
        int64_t mint = u2i((uint64_t)(same ? st.maxt : st.mint) + unzz(v[1]));
        if (same && mint < st.mint)
            return ST_ECORRUPT;
        uint64_t span = st.span + unzz(v[2]);
        int64_t maxt = u2i((uint64_t)mint + span);
        if (maxt < mint) /* the addition wrapped: span too large */
            return ST_ECORRUPT;
        uint64_t count = st.count + unzz(v[3]);
        if (count == 0 || count > UINT32_MAX)
            return ST_ECORRUPT;
        if (v[4] > UINT32_MAX || v[4] > dir_off - off)
            return ST_ECORRUPT;

        seg_ent_t *e = &s->ents[i];
        e->mint = mint;
        e->maxt = maxt;
        e->off = off;
        e->id = id;
        e->count = (uint32_t)count;
        e->len = (uint32_t)v[4];
        e->vmax = st.vmax + unzz(v[5]);
        e->crc = crc;
        off += v[4];
        st.id = id;
        st.mint = mint;
        st.maxt = maxt;
        st.span = span;
        st.count = count;
        st.vmax = e->vmax;
    }
    if (p != end || off != dir_off)
        return ST_ECORRUPT;
    return 0;
}

/* Validate the mapped file and build s->ents. */
static int parse(seg_t *s)
{
    const uint8_t *m = s->map;
    uint64_t size = s->map_len;
    if (size < SEG_HDR_SIZE + SEG_FTR_SIZE || memcmp(m, SEG_MAGIC, 8) != 0)
        return ST_ECORRUPT;
    uint32_t version = st_load_u32le(m + 8);
    if (version != SEG_VERSION && version != SEG_VERSION_V1)
        return ST_EVERSION;
    if (st_load_u32le(m + 48) != st_crc32c(0, m, 48) || st_load_u32le(m + 12) != 0)
        return ST_ECORRUPT;
    s->meta.part_start = u2i(st_load_u64le(m + 16));
    s->meta.part_end = u2i(st_load_u64le(m + 24));
    s->meta.seq = st_load_u64le(m + 32);
    s->meta.level = st_load_u64le(m + 40);

    const uint8_t *f = m + size - SEG_FTR_SIZE;
    if (memcmp(f + 44, SEG_FOOT_MAGIC, 8) != 0 || st_load_u32le(f + 40) != st_crc32c(0, f, 40))
        return ST_ECORRUPT;
    uint64_t dir_off = st_load_u64le(f);
    uint64_t dir_len = st_load_u64le(f + 8);
    uint64_t raw_len = st_load_u64le(f + 16);
    uint64_t n = st_load_u64le(f + 24);
    uint32_t flags = st_load_u32le(f + 32);
    uint32_t dir_crc = st_load_u32le(f + 36);
    uint64_t data_max = size - SEG_FTR_SIZE;
    if (dir_off < SEG_HDR_SIZE || dir_off > data_max || dir_len != data_max - dir_off)
        return ST_ECORRUPT;
    if (flags & ~SEG_DIR_LZ4)
        return ST_ECORRUPT;
    /* The directory is read once, sequentially, right now. */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t dstart = ((uintptr_t)m + dir_off) & ~(page - 1);
    madvise((void *)dstart, (uintptr_t)m + data_max - dstart, MADV_WILLNEED);
    if (flags & SEG_DIR_LZ4) {
        if (raw_len <= dir_len || raw_len > LZ4_MAX_INPUT_SIZE || raw_len > 255 * dir_len + 16)
            return ST_ECORRUPT;
    } else if (raw_len != dir_len) {
        return ST_ECORRUPT;
    }
    if (n > raw_len / SEG_MIN_ENTRY || (n == 0) != (raw_len == 0) ||
        n > SIZE_MAX / sizeof(seg_ent_t))
        return ST_ECORRUPT;
    const uint8_t *dir = m + dir_off;
    if (st_crc32c(0, dir, (size_t)dir_len) != dir_crc)
        return ST_ECORRUPT;
    s->n = (size_t)n;
    if (n == 0)
        return dir_off == SEG_HDR_SIZE ? 0 : ST_ECORRUPT;

    /* Decompress first: a lying raw_len fails here, before the big allocation. */
    uint8_t *raw = NULL;
    if (flags & SEG_DIR_LZ4) {
        raw = malloc((size_t)raw_len);
        if (!raw)
            return ST_ENOMEM;
        int got = LZ4_decompress_safe((const char *)dir, (char *)raw, (int)dir_len, (int)raw_len);
        if (got < 0 || (uint64_t)got != raw_len) {
            free(raw);
            return ST_ECORRUPT;
        }
        dir = raw;
    }
    int rc = ST_ENOMEM;
    s->ents = malloc((size_t)n * sizeof(seg_ent_t));
    s->verified = calloc(((size_t)n + 63) / 64, sizeof(uint64_t));
    if (s->ents && s->verified)
        rc = decode_dir(s, dir, dir + raw_len, dir_off, version == SEG_VERSION);
    free(raw);
    return rc;
}

int seg_open(const char *path, seg_t **out)
{
    if (!path || !out)
        return ST_EINVAL;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ST_ENOENT : ST_EIO;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return ST_EIO;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size < (off_t)(SEG_HDR_SIZE + SEG_FTR_SIZE) ||
        (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return ST_ECORRUPT;
    }
    seg_t *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return ST_ENOMEM;
    }
    s->map_len = (size_t)sb.st_size;
    void *map = mmap(NULL, s->map_len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        free(s);
        return ST_EIO;
    }
    s->map = map;
    /* Queries fetch a few blocks per series: don't read ahead whole files. */
    madvise(map, s->map_len, MADV_RANDOM);
    int rc = parse(s);
    if (rc) {
        seg_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void seg_close(seg_t *s)
{
    if (!s)
        return;
    if (s->map)
        munmap((void *)s->map, s->map_len);
    free(s->ents);
    free(s->verified);
    free(s);
}

const seg_meta_t *seg_get_meta(const seg_t *s)
{
    return &s->meta;
}

size_t seg_entry_count(const seg_t *s)
{
    return s->n;
}

uint64_t seg_file_size(const seg_t *s)
{
    return s->map_len;
}

/* First index of [lo, hi) whose id is >= id (hi if none). */
static size_t lower_bound_in(const seg_t *s, uint64_t id, size_t lo, size_t hi)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ents[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First index whose id is >= id (n if none). */
static size_t lower_bound(const seg_t *s, uint64_t id)
{
    return lower_bound_in(s, id, 0, s->n);
}

/* The entries of series_id from lo (the first index whose id is >= it):
 * few per series, so counted one by one. */
static int found(const seg_t *s, uint32_t series_id, size_t lo, size_t *first, size_t *count)
{
    if (lo == s->n || s->ents[lo].id != series_id)
        return ST_ENOENT;
    size_t hi = lo + 1;
    while (hi < s->n && s->ents[hi].id == series_id)
        hi++;
    if (first)
        *first = lo;
    if (count)
        *count = hi - lo;
    return 0;
}

int seg_find(const seg_t *s, uint32_t series_id, size_t *first, size_t *count)
{
    if (!s)
        return ST_EINVAL;
    return found(s, series_id, lower_bound(s, series_id), first, count);
}

int seg_find_from(const seg_t *s, uint32_t series_id, size_t *hint, size_t *first, size_t *count)
{
    if (!s)
        return ST_EINVAL;
    size_t from = *hint, lo;
    if (from < s->n && s->ents[from].id <= series_id) {
        /* gallop forward from the hint, then search the last step */
        size_t step = 1, base = from;
        while (base + step < s->n && s->ents[base + step].id < series_id) {
            base += step;
            step *= 2;
        }
        lo = lower_bound_in(s, series_id, base, base + step < s->n ? base + step : s->n);
    } else {
        lo = lower_bound(s, series_id);
    }
    *hint = lo;
    return found(s, series_id, lo, first, count);
}

int seg_entry(const seg_t *s, size_t i, seg_entry_t *e)
{
    if (!s || !e || i >= s->n)
        return ST_EINVAL;
    const seg_ent_t *d = &s->ents[i];
    const uint8_t *block = s->map + d->off;
    _Atomic uint64_t *word = &s->verified[i / 64];
    uint64_t bit = (uint64_t)1 << (i % 64);
    if (!(atomic_load_explicit(word, memory_order_relaxed) & bit)) {
        if (st_crc32c(0, block, d->len) != d->crc)
            return ST_ECORRUPT;
        atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
    }
    e->series_id = d->id;
    e->count = d->count;
    e->mint = d->mint;
    e->maxt = d->maxt;
    e->block = block;
    e->block_len = d->len;
    e->vmax = d->vmax;
    return 0;
}

int seg_entry_id(const seg_t *s, size_t i, uint32_t *id)
{
    if (!s || i >= s->n)
        return ST_EINVAL;
    *id = s->ents[i].id;
    return 0;
}

/* ---- summary ------------------------------------------------------------ */

enum { SUM_EMPTY, SUM_LIST, SUM_BITMAP, SUM_BLOOM };
#define SUM_BLOOM_K 3

struct seg_summary {
    int64_t mint, maxt; /* over every entry */
    uint32_t id_min, id_max;
    uint32_t kind;
    uint32_t nw;  /* words in w[] */
    uint64_t w[]; /* list: one id per word, ascending; bitmap: bit i = id_min + i;
                     bloom: nw * 64 bits (a power of two) */
};

/* splitmix64's finalizer: spreads consecutive ids over the Bloom bits. */
static uint64_t sum_hash(uint32_t id)
{
    uint64_t h = (uint64_t)id + 0x9E3779B97F4A7C15ull;
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

static uint64_t bloom_bit(uint64_t h, unsigned i, uint64_t nbits)
{
    uint64_t h1 = h >> 32, h2 = (h & 0xffffffffu) | 1;
    return (h1 + i * h2) & (nbits - 1);
}

/* Build from ascending distinct ids: the smallest exact form that fits in
 * SEG_SUMMARY_MAX_BYTES, else a Bloom filter (~10 bits per id, capped). */
static int summary_build(const uint32_t *ids, size_t n, int64_t mint, int64_t maxt,
                         seg_summary_t **out)
{
    const uint64_t maxw = SEG_SUMMARY_MAX_BYTES / 8;
    uint32_t kind = SUM_EMPTY;
    uint64_t nw = 0;
    if (n) {
        uint64_t range = (uint64_t)ids[n - 1] - ids[0] + 1;
        uint64_t bmw = (range + 63) / 64;
        if (n <= bmw && n <= maxw) {
            kind = SUM_LIST;
            nw = n;
        } else if (bmw <= maxw) {
            kind = SUM_BITMAP;
            nw = bmw;
        } else {
            kind = SUM_BLOOM;
            nw = 1;
            while (nw < maxw && nw * 64 < (uint64_t)n * 10)
                nw *= 2;
        }
    }
    seg_summary_t *m = calloc(1, sizeof *m + nw * sizeof m->w[0]);
    if (!m)
        return ST_ENOMEM;
    m->mint = mint;
    m->maxt = maxt;
    m->kind = kind;
    m->nw = (uint32_t)nw;
    if (n) {
        m->id_min = ids[0];
        m->id_max = ids[n - 1];
    }
    for (size_t i = 0; i < n; i++) {
        if (kind == SUM_LIST) {
            m->w[i] = ids[i];
        } else if (kind == SUM_BITMAP) {
            uint64_t b = ids[i] - m->id_min;
            m->w[b / 64] |= (uint64_t)1 << (b % 64);
        } else {
            uint64_t h = sum_hash(ids[i]);
            for (unsigned k = 0; k < SUM_BLOOM_K; k++) {
                uint64_t b = bloom_bit(h, k, nw * 64);
                m->w[b / 64] |= (uint64_t)1 << (b % 64);
            }
        }
    }
    *out = m;
    return 0;
}

int seg_writer_summary(const seg_writer_t *w, seg_summary_t **out)
{
    if (!w || !out)
        return ST_EINVAL;
    if (w->ids_lost)
        return ST_ENOMEM;
    return summary_build(w->ids, w->nids, w->mint, w->maxt, out);
}

int seg_summarize(const seg_t *s, seg_summary_t **out)
{
    if (!s || !out)
        return ST_EINVAL;
    size_t nids = 0;
    uint32_t *ids = s->n ? malloc(s->n * sizeof *ids) : NULL;
    if (s->n && !ids)
        return ST_ENOMEM;
    int64_t mint = 0, maxt = 0;
    for (size_t i = 0; i < s->n; i++) {
        const seg_ent_t *d = &s->ents[i];
        if (i == 0 || d->mint < mint)
            mint = d->mint;
        if (i == 0 || d->maxt > maxt)
            maxt = d->maxt;
        if (nids == 0 || ids[nids - 1] != d->id)
            ids[nids++] = d->id;
    }
    int rc = summary_build(ids, nids, mint, maxt, out);
    free(ids);
    return rc;
}

void seg_summary_free(seg_summary_t *m)
{
    free(m);
}

size_t seg_summary_bytes(const seg_summary_t *m)
{
    return m ? sizeof *m + m->nw * sizeof m->w[0] : 0;
}

int seg_summary_may_overlap(const seg_summary_t *m, uint32_t id_lo, uint32_t id_hi, int64_t mint,
                            int64_t maxt)
{
    return m->kind != SUM_EMPTY && id_lo <= m->id_max && id_hi >= m->id_min && mint <= m->maxt &&
           maxt >= m->mint;
}

void seg_summary_range(const seg_summary_t *m, int64_t *mint, int64_t *maxt)
{
    *mint = m->mint;
    *maxt = m->maxt;
}

int seg_summary_may_hold(const seg_summary_t *m, uint32_t id, int64_t mint, int64_t maxt)
{
    if (!seg_summary_may_overlap(m, id, id, mint, maxt))
        return 0;
    if (m->kind == SUM_LIST) {
        size_t lo = 0, hi = m->nw;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (m->w[mid] < id)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo < m->nw && m->w[lo] == id;
    }
    if (m->kind == SUM_BITMAP) {
        uint64_t b = id - m->id_min;
        return (m->w[b / 64] >> (b % 64)) & 1;
    }
    uint64_t h = sum_hash(id);
    for (unsigned k = 0; k < SUM_BLOOM_K; k++) {
        uint64_t b = bloom_bit(h, k, (uint64_t)m->nw * 64);
        if (!((m->w[b / 64] >> (b % 64)) & 1))
            return 0;
    }
    return 1;
}
