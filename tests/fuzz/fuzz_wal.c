/*
 * fuzz_wal — WAL recovery on hostile files.
 *
 * The input becomes one or two WAL files in a private temp dir, then
 * wal_open() replays them. An independent reference parser (below) decides
 * which records are valid; the callback checks that exactly those are
 * replayed, in order, each with a good CRC, and afterwards that the cut file
 * was truncated where it should and later files were removed.
 *
 * Input: byte 0 flags, byte 1 CRC-fix mask, bytes 2..3 split point, rest data.
 *   flags bit 0  two files (data split at the split point)
 *         bit 1  prepend a valid file header to each file (so records get fuzzed)
 *         bit 2  fix the CRC of record i when mask bit (i % 8) is set
 *         bit 3  name the second file 3, not 2 (a gap: must be refused)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"
#include "wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FHDR 20u
#define RHDR 9u
#define MAXREC (1 << 17) /* > (max input) / 9 */

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_wal: check failed: %s (line %d)\n", #c, __LINE__);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char g_dir[64];

static void cleanup_dir(void)
{
    char p[96];
    for (uint32_t q = 1; q <= 5; q++) {
        snprintf(p, sizeof p, "%s/%08u.wal", g_dir, q);
        unlink(p);
    }
}

static void remove_dir(void)
{
    cleanup_dir();
    rmdir(g_dir);
}

static void setup_dir(void)
{
    if (g_dir[0])
        return;
    const char *bases[] = {"/dev/shm", "/tmp"};
    for (int i = 0; i < 2 && !g_dir[0]; i++) {
        snprintf(g_dir, sizeof g_dir, "%s/fuzz_wal_XXXXXX", bases[i]);
        if (!mkdtemp(g_dir))
            g_dir[0] = '\0';
    }
    CHECK(g_dir[0]);
    atexit(remove_dir);
}

typedef struct file_img {
    uint8_t *b;
    size_t n;
    uint32_t seq;
} file_img_t;

typedef struct expect {
    size_t nrec;
    struct {
        int file;
        size_t off;
    } rec[MAXREC];
    int rc;       /* expected wal_open result */
    int cut_file; /* -1: no cut */
    size_t cut_off;
    int files_after; /* files that must be gone */
} expect_t;

typedef struct ctx {
    const file_img_t *img;
    const expect_t *ex;
    size_t seen;
} ctx_t;

/* The reference parser: an independent statement of wal.c's recovery rules. */
static void reference(const file_img_t *img, int nimg, int gap, expect_t *ex)
{
    memset(ex, 0, sizeof *ex);
    ex->cut_file = -1;
    if (gap) {
        ex->rc = ST_ECORRUPT;
        return;
    }
    for (int f = 0; f < nimg; f++) {
        const uint8_t *b = img[f].b;
        size_t n = img[f].n;
        if (n < FHDR)
            continue; /* torn header: empty */
        int hdr_ok = memcmp(b, "STRWAL01", 8) == 0 && st_load_u32le(b + 16) == st_crc32c(0, b, 16);
        if (hdr_ok && st_load_u32le(b + 8) != 1) {
            ex->rc = ST_EVERSION;
            return;
        }
        if (!hdr_ok || st_load_u32le(b + 12) != img[f].seq) {
            ex->cut_file = f;
            ex->cut_off = 0;
            ex->files_after = nimg - f - 1;
            return;
        }
        size_t off = FHDR;
        while (off < n) {
            if (n - off < RHDR)
                break;
            uint32_t len = st_load_u32le(b + off);
            if ((uint64_t)len + RHDR > n - off || len > WAL_MAX_RECORD)
                break;
            uint32_t crc = st_crc32c(0, b + off + 8, (size_t)len + 1);
            if (crc != st_load_u32le(b + off + 4))
                break;
            CHECK(ex->nrec < MAXREC);
            ex->rec[ex->nrec].file = f;
            ex->rec[ex->nrec].off = off;
            ex->nrec++;
            off += RHDR + len;
        }
        if (off < n) {
            ex->cut_file = f;
            ex->cut_off = off;
            ex->files_after = nimg - f - 1;
            return;
        }
    }
}

static int replay_cb(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    ctx_t *c = arg;
    CHECK(c->seen < c->ex->nrec);
    const file_img_t *im = &c->img[c->ex->rec[c->seen].file];
    const uint8_t *r = im->b + c->ex->rec[c->seen].off;
    CHECK(st_load_u32le(r) == len);
    CHECK(r[8] == type);
    CHECK(len == 0 || memcmp(r + RHDR, p, len) == 0);
    /* the record's CRC is valid, recomputed from what we were handed */
    uint32_t crc = st_crc32c(st_crc32c(0, &type, 1), p, len);
    CHECK(crc == st_load_u32le(r + 4));
    c->seen++;
    return 0;
}

static void write_file(uint32_t seq, const uint8_t *b, size_t n)
{
    char p[96];
    snprintf(p, sizeof p, "%s/%08u.wal", g_dir, seq);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(n == 0 || write(fd, b, n) == (ssize_t)n);
    close(fd);
}

static long size_of(uint32_t seq)
{
    char p[96];
    struct stat st;
    snprintf(p, sizeof p, "%s/%08u.wal", g_dir, seq);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static void build(file_img_t *im, const uint8_t *d, size_t n, int add_hdr, int fix, uint8_t mask)
{
    size_t h = add_hdr ? FHDR : 0;
    im->n = h + n;
    im->b = malloc(im->n ? im->n : 1);
    CHECK(im->b);
    if (add_hdr) {
        memcpy(im->b, "STRWAL01", 8);
        st_store_u32le(im->b + 8, 1);
        st_store_u32le(im->b + 12, im->seq);
        st_store_u32le(im->b + 16, st_crc32c(0, im->b, 16));
    }
    if (n)
        memcpy(im->b + h, d, n);
    if (!fix)
        return;
    size_t off = FHDR;
    for (unsigned i = 0; off + RHDR <= im->n; i++) {
        uint32_t len = st_load_u32le(im->b + off);
        if ((uint64_t)len + RHDR > im->n - off)
            break;
        if (mask >> (i % 8) & 1)
            st_store_u32le(im->b + off + 4, st_crc32c(0, im->b + off + 8, (size_t)len + 1));
        off += RHDR + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static expect_t ex;
    if (size < 4 || size > (1u << 20))
        return 0;
    setup_dir();
    uint8_t flags = data[0], mask = data[1];
    size_t split = (size_t)data[2] | (size_t)data[3] << 8;
    data += 4;
    size -= 4;
    int two = flags & 1, gap = two && (flags & 8);
    if (split > size)
        split = size;
    file_img_t img[2];
    int nimg = two ? 2 : 1;
    img[0].seq = 1;
    img[1].seq = gap ? 3 : 2;
    build(&img[0], data, two ? split : size, flags & 2, flags & 4, mask);
    if (two)
        build(&img[1], data + split, size - split, flags & 2, flags & 4, mask);
    for (int f = 0; f < nimg; f++)
        write_file(img[f].seq, img[f].b, img[f].n);

    reference(img, nimg, gap, &ex);
    ctx_t c = {.img = img, .ex = &ex};
    wal_opts_t o = {.mode = WAL_OS_DEFAULT, .file_max_bytes = 1 << 16};
    wal_replay_info_t info;
    wal_t *w = NULL;
    int rc = wal_open(g_dir, &o, replay_cb, &c, &info, &w);
    CHECK(rc == ex.rc);
    if (rc == 0) {
        CHECK(c.seen == ex.nrec);
        CHECK(info.records == ex.nrec);
        CHECK(info.truncated == (ex.cut_file >= 0 && ex.cut_off < img[ex.cut_file].n));
        if (ex.cut_file >= 0) {
            const file_img_t *cf = &img[ex.cut_file];
            CHECK(info.trunc_file == cf->seq);
            CHECK(info.trunc_offset == ex.cut_off);
            CHECK(info.trunc_bytes == cf->n - ex.cut_off);
            CHECK(info.files_dropped == (uint32_t)ex.files_after);
            CHECK(size_of(cf->seq) == (long)ex.cut_off);
            for (int f = ex.cut_file + 1; f < nimg; f++) /* gone, or the new empty file */
                CHECK(size_of(img[f].seq) == (img[f].seq == cf->seq + 1 ? (long)FHDR : -1));
        }
        /* appends go to a fresh file after the last surviving one */
        uint64_t lsn;
        CHECK(wal_append(w, 1, "x", 1, &lsn) == 0);
        CHECK(wal_close(w) == 0);
    } else {
        CHECK(w == NULL);
        CHECK(c.seen == ex.nrec);
        for (int f = 0; f < nimg; f++) /* refused: nothing touched */
            CHECK(size_of(img[f].seq) == (long)img[f].n);
    }
    for (int f = 0; f < nimg; f++)
        free(img[f].b);
    cleanup_dir();
    return 0;
}
