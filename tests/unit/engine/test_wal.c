/* Unit tests for node/engine/wal: format, replay, torn tails, modes, group commit, crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"
#include "wal.h"

#define FHDR 20
#define RHDR 9

/* ---------- helpers ---------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct tdir {
    char root[64];
    char wal[96];
} tdir_t;

/* A fresh /tmp dir; the WAL lives in root/wal (not created: wal_open must). */
static void tdir_make(tdir_t *t)
{
    strcpy(t->root, "/tmp/wal_test_XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->wal, sizeof t->wal, "%s/wal", t->root);
}

static void path_of(char *p, size_t n, const tdir_t *t, uint32_t seq)
{
    snprintf(p, n, "%s/%08u.wal", t->wal, seq);
}

static int file_exists(const tdir_t *t, uint32_t seq)
{
    char p[160];
    struct stat st;
    path_of(p, sizeof p, t, seq);
    return stat(p, &st) == 0;
}

static long file_size(const tdir_t *t, uint32_t seq)
{
    char p[160];
    struct stat st;
    path_of(p, sizeof p, t, seq);
    if (stat(p, &st) != 0)
        return -1;
    return (long)st.st_size;
}

static uint8_t *read_whole(const tdir_t *t, uint32_t seq, size_t *len)
{
    char p[160];
    path_of(p, sizeof p, t, seq);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_whole(const tdir_t *t, uint32_t seq, const uint8_t *b, size_t len)
{
    char p[160];
    path_of(p, sizeof p, t, seq);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* Remove every file in the WAL dir. */
static void clear_wal_dir(const tdir_t *t)
{
    rm_rf(t->wal);
    assert_int_equal(mkdir(t->wal, 0755), 0);
}

/* Deterministic record i: type, length (some zero), bytes. */
static size_t gen_rec(uint64_t i, uint8_t *type, uint8_t *buf)
{
    size_t len = (size_t)((i * 37) % 301);
    *type = (uint8_t)(i % 251);
    for (size_t j = 0; j < len; j++)
        buf[j] = (uint8_t)(i * 13 + j * 7);
    return len;
}

typedef struct gen_ctx {
    uint64_t n;   /* generator records seen (the next expected index) */
    uint64_t bad; /* mismatches */
    int big_mode; /* records over 1000 bytes are big ones (pattern j ^ 0x5a) */
    uint64_t big; /* big records seen */
} gen_ctx_t;

static int gen_cb(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    gen_ctx_t *c = arg;
    uint8_t et, eb[512];
    if (c->big_mode && len > 1000) {
        for (size_t j = 0; j < len; j += 4099)
            if (p[j] != (uint8_t)(j ^ 0x5a))
                c->bad++;
        if (p[len - 1] != (uint8_t)((len - 1) ^ 0x5a))
            c->bad++;
        c->big++;
        return 0;
    }
    size_t el = gen_rec(c->n, &et, eb);
    if (el != len || et != type || memcmp(eb, p, len) != 0)
        c->bad++;
    c->n++;
    return 0;
}

static void append_gen(wal_t *w, uint64_t from, uint64_t to, uint64_t *last_lsn)
{
    uint8_t t, b[512];
    for (uint64_t i = from; i < to; i++) {
        size_t len = gen_rec(i, &t, b);
        uint64_t lsn = 0;
        assert_int_equal(wal_append(w, t, b, len, &lsn), 0);
        if (last_lsn) {
            assert_true(lsn > *last_lsn);
            *last_lsn = lsn;
        }
    }
}

static wal_opts_t opts(int mode, uint64_t file_max)
{
    wal_opts_t o = {.mode = mode, .sync_interval_ms = 20, .file_max_bytes = file_max};
    return o;
}

/* Offsets of the records in a WAL file image (test-side parser). */
static size_t rec_offsets(const uint8_t *b, size_t n, size_t *offs, size_t max)
{
    size_t k = 0, off = FHDR;
    while (off + RHDR <= n && k < max) {
        uint32_t len = st_load_u32le(b + off);
        if (len > n - off - RHDR)
            break;
        offs[k++] = off;
        off += RHDR + len;
    }
    return k;
}

static uint64_t sum_file_sizes(const tdir_t *t, uint32_t first, uint32_t last)
{
    uint64_t s = 0;
    for (uint32_t q = first; q <= last; q++) {
        long z = file_size(t, q);
        if (z > 0)
            s += (uint64_t)z;
    }
    return s;
}

/* ---------- tests ---------- */

static void test_roundtrip_rotate_reopen(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_OS_DEFAULT, 8192);
    wal_t *w;
    wal_replay_info_t info;
    gen_ctx_t c = {0};
    assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
    assert_int_equal(info.records, 0);
    assert_int_equal(info.truncated, 0);
    uint64_t lsn = 0;
    append_gen(w, 0, 1000, &lsn);
    uint32_t seq = 0;
    assert_int_equal(wal_rotate(w, &seq), 0);
    assert_true(seq > 1);
    append_gen(w, 1000, 2000, &lsn);
    assert_int_equal(wal_sync(w, lsn), 0);
    wal_stats_t s;
    wal_get_stats(w, &s);
    assert_int_equal(s.records, 2000);
    assert_true(s.files > 10);
    assert_int_equal(wal_close(w), 0);
    /* files stay within file_max (every record is far smaller) */
    for (uint32_t q = 1; q <= s.files; q++)
        assert_true(file_size(&t, q) <= 8192);
    assert_int_equal(s.disk_bytes, sum_file_sizes(&t, 1, s.files));

    memset(&c, 0, sizeof c);
    assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
    assert_int_equal(c.n, 2000);
    assert_int_equal(c.bad, 0);
    assert_int_equal(info.records, 2000);
    assert_int_equal(info.files, s.files);
    assert_int_equal(info.truncated, 0);
    lsn = 0;
    append_gen(w, 2000, 2500, &lsn);
    wal_get_stats(w, &s);
    assert_int_equal(wal_close(w), 0);

    memset(&c, 0, sizeof c);
    assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
    assert_int_equal(c.n, 2500);
    assert_int_equal(c.bad, 0);
    wal_get_stats(w, &s);
    assert_int_equal(s.disk_bytes, sum_file_sizes(&t, 1, s.files));
    assert_int_equal(wal_close(w), 0);
    rm_rf(t.root);
}

/* Records bigger than the 1 MiB flush threshold and than file_max, and the limit. */
static void test_big_records_and_limit(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_EVERY_WRITE, 1 << 20);
    wal_t *w;
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
    size_t big = WAL_MAX_RECORD;
    uint8_t *p = malloc(big);
    assert_non_null(p);
    for (size_t j = 0; j < big; j++)
        p[j] = (uint8_t)(j ^ 0x5a);
    uint64_t lsn;
    assert_int_equal(wal_append(w, 1, p, big + 1, &lsn), ST_ELIMIT);
    append_gen(w, 0, 10, NULL);
    assert_int_equal(wal_append(w, 9, p, 3u << 20, &lsn), 0);
    append_gen(w, 10, 20, NULL);
    assert_int_equal(wal_append(w, 9, p, big, &lsn), 0);
    append_gen(w, 20, 30, NULL);
    assert_int_equal(wal_sync(w, lsn + 100), 0); /* beyond the last LSN: clamps */
    assert_int_equal(wal_close(w), 0);

    /* the big ones are checked by content, the rest by generator index */
    wal_replay_info_t info;
    gen_ctx_t g = {.big_mode = 1};
    assert_int_equal(wal_open(t.wal, &o, gen_cb, &g, &info, &w), 0);
    assert_int_equal(info.records, 32);
    assert_int_equal(g.n, 30);
    assert_int_equal(g.big, 2);
    assert_int_equal(g.bad, 0);
    uint64_t small = 0;
    uint8_t tt, tb[512];
    for (uint64_t i = 0; i < 30; i++)
        small += gen_rec(i, &tt, tb);
    assert_int_equal(info.bytes, small + (3u << 20) + big);
    assert_int_equal(info.truncated, 0);
    assert_int_equal(info.files, 5); /* each big record alone in its file, smalls between */
    assert_int_equal(wal_close(w), 0);
    free(p);
    rm_rf(t.root);
}

static void test_remove_before(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_EVERY_WRITE, 0);
    wal_t *w;
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
    uint32_t seqs[5];
    for (int f = 0; f < 5; f++) {
        append_gen(w, (uint64_t)f * 100, (uint64_t)f * 100 + 100, NULL);
        assert_int_equal(wal_rotate(w, &seqs[f]), 0);
        assert_int_equal(seqs[f], (uint32_t)f + 2);
    }
    /* records 0..99 in file 1, 100..199 in file 2, ... file 6 empty */
    assert_int_equal(wal_remove_before(w, 3), 0);
    assert_false(file_exists(&t, 1));
    assert_false(file_exists(&t, 2));
    assert_true(file_exists(&t, 3));
    wal_stats_t s;
    wal_get_stats(w, &s);
    assert_int_equal(s.files, 4);
    assert_int_equal(s.disk_bytes, sum_file_sizes(&t, 3, 6));
    /* never removes the file being written */
    assert_int_equal(wal_remove_before(w, 1000), 0);
    assert_true(file_exists(&t, 6));
    assert_false(file_exists(&t, 5));
    wal_get_stats(w, &s);
    assert_int_equal(s.files, 1);
    append_gen(w, 500, 510, NULL);
    assert_int_equal(wal_close(w), 0);

    /* only file 6's records remain; generator index 500.. */
    gen_ctx_t c = {.n = 500};
    wal_replay_info_t info;
    assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
    assert_int_equal(info.records, 10);
    assert_int_equal(c.bad, 0);
    assert_int_equal(info.files, 1);
    assert_int_equal(wal_close(w), 0);
    rm_rf(t.root);
}

static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_OS_DEFAULT, 0);
    wal_t *w;
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
    append_gen(w, 0, 19, NULL);
    uint8_t last[100];
    memset(last, 0xab, sizeof last);
    assert_int_equal(wal_append(w, 77, last, sizeof last, NULL), 0);
    assert_int_equal(wal_close(w), 0);
    size_t n;
    uint8_t *img = read_whole(&t, 1, &n);
    size_t start = n - RHDR - sizeof last;
    int cuts = 0;
    for (size_t cut = start; cut < n; cut++) {
        clear_wal_dir(&t);
        write_whole(&t, 1, img, cut);
        gen_ctx_t c = {0};
        wal_replay_info_t info;
        assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
        assert_int_equal(c.n, 19);
        assert_int_equal(c.bad, 0);
        assert_int_equal(info.records, 19);
        assert_int_equal(info.files, 1);
        assert_int_equal(info.files_dropped, 0);
        if (cut == start) {
            assert_int_equal(info.truncated, 0);
        } else {
            assert_int_equal(info.truncated, 1);
            assert_int_equal(info.trunc_file, 1);
            assert_int_equal(info.trunc_offset, start);
            assert_int_equal(info.trunc_bytes, cut - start);
        }
        assert_int_equal(file_size(&t, 1), (long)start);
        assert_true(file_exists(&t, 2)); /* appends go to a new file */
        assert_int_equal(wal_close(w), 0);
        /* the cut is durable: a second open finds a clean log */
        memset(&c, 0, sizeof c);
        assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
        assert_int_equal(c.n, 19);
        assert_int_equal(info.truncated, 0);
        assert_int_equal(wal_close(w), 0);
        cuts++;
    }
    assert_int_equal(cuts, RHDR + sizeof last);
    free(img);
    rm_rf(t.root);
}

/* Build a 4+ file log; returns number of files, images in imgs[]. */
static uint32_t build_multi(tdir_t *t, uint8_t **imgs, size_t *lens, size_t maxf, uint64_t nrec)
{
    wal_opts_t o = opts(WAL_OS_DEFAULT, 4096);
    wal_t *w;
    assert_int_equal(wal_open(t->wal, &o, NULL, NULL, NULL, &w), 0);
    append_gen(w, 0, nrec, NULL);
    assert_int_equal(wal_sync(w, UINT64_MAX), 0); /* files are created as data is written */
    wal_stats_t s;
    wal_get_stats(w, &s);
    assert_int_equal(wal_close(w), 0);
    assert_true(s.files >= 4 && s.files <= maxf);
    for (uint32_t q = 1; q <= s.files; q++)
        imgs[q - 1] = read_whole(t, q, &lens[q - 1]);
    return s.files;
}

static void restore_multi(tdir_t *t, uint8_t **imgs, size_t *lens, uint32_t nf)
{
    clear_wal_dir(t);
    for (uint32_t q = 1; q <= nf; q++)
        write_whole(t, q, imgs[q - 1], lens[q - 1]);
}

static uint64_t count_recs(const uint8_t *b, size_t n)
{
    size_t offs[4096];
    return rec_offsets(b, n, offs, 4096);
}

static void test_corrupt_middle_record(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    uint8_t *imgs[64];
    size_t lens[64];
    uint32_t nf = build_multi(&t, imgs, lens, 64, 300);
    wal_opts_t o = opts(WAL_OS_DEFAULT, 4096);
    size_t offs[4096];
    size_t k = rec_offsets(imgs[1], lens[1], offs, 4096);
    assert_true(k >= 3);
    size_t victim = k / 2;
    uint64_t before = count_recs(imgs[0], lens[0]) + victim;
    uint32_t rlen = st_load_u32le(imgs[1] + offs[victim]);
    /* byte positions inside the victim: length, crc, type, payload */
    size_t where[4] = {0, 5, 8, RHDR + rlen / 2};
    for (int v = 0; v < 4; v++) {
        if (where[v] >= RHDR + rlen)
            continue;
        restore_multi(&t, imgs, lens, nf);
        uint8_t *b = malloc(lens[1]);
        memcpy(b, imgs[1], lens[1]);
        b[offs[victim] + where[v]] ^= 0x01;
        write_whole(&t, 2, b, lens[1]);
        free(b);
        gen_ctx_t c = {0};
        wal_replay_info_t info;
        wal_t *w;
        assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
        assert_int_equal(c.n, before);
        assert_int_equal(c.bad, 0);
        assert_int_equal(info.records, before);
        assert_int_equal(info.truncated, 1);
        assert_int_equal(info.trunc_file, 2);
        assert_int_equal(info.trunc_offset, offs[victim]);
        assert_int_equal(info.trunc_bytes, lens[1] - offs[victim]);
        assert_int_equal(info.files_dropped, nf - 2);
        assert_int_equal(info.files, 2);
        assert_int_equal(file_size(&t, 2), (long)offs[victim]);
        assert_true(file_exists(&t, 3)); /* the new file */
        for (uint32_t q = 4; q <= nf + 1; q++)
            assert_false(file_exists(&t, q));
        /* appends after recovery continue the log */
        append_gen(w, before, before + 5, NULL);
        assert_int_equal(wal_close(w), 0);
        memset(&c, 0, sizeof c);
        assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
        assert_int_equal(c.n, before + 5);
        assert_int_equal(c.bad, 0);
        assert_int_equal(info.truncated, 0);
        assert_int_equal(wal_close(w), 0);
    }
    for (uint32_t q = 0; q < nf; q++)
        free(imgs[q]);
    rm_rf(t.root);
}

static void test_bad_header(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    uint8_t *imgs[64];
    size_t lens[64];
    uint32_t nf = build_multi(&t, imgs, lens, 64, 300);
    wal_opts_t o = opts(WAL_OS_DEFAULT, 4096);
    uint64_t in1 = count_recs(imgs[0], lens[0]);
    uint64_t total = 0;
    for (uint32_t q = 0; q < nf; q++)
        total += count_recs(imgs[q], lens[q]);
    assert_int_equal(total, 300);
    wal_t *w;
    wal_replay_info_t info;
    gen_ctx_t c;

    /* 1. bad magic in file 2: the log ends at file 2 offset 0 */
    for (int variant = 0; variant < 3; variant++) {
        restore_multi(&t, imgs, lens, nf);
        uint8_t *b = malloc(lens[1]);
        memcpy(b, imgs[1], lens[1]);
        if (variant == 0) {
            b[3] ^= 0x20; /* magic */
        } else if (variant == 1) {
            b[17] ^= 0x01; /* header CRC */
        } else {
            st_store_u32le(b + 12, 7); /* wrong seq, CRC made valid */
            st_store_u32le(b + 16, st_crc32c(0, b, 16));
        }
        write_whole(&t, 2, b, lens[1]);
        free(b);
        memset(&c, 0, sizeof c);
        assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
        assert_int_equal(c.n, in1);
        assert_int_equal(info.truncated, 1);
        assert_int_equal(info.trunc_file, 2);
        assert_int_equal(info.trunc_offset, 0);
        assert_int_equal(info.trunc_bytes, lens[1]);
        assert_int_equal(info.files_dropped, nf - 2);
        assert_int_equal(file_size(&t, 2), 0);
        assert_int_equal(wal_close(w), 0);
        /* a 0-byte file counts as empty from now on */
        memset(&c, 0, sizeof c);
        assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
        assert_int_equal(c.n, in1);
        assert_int_equal(info.truncated, 0);
        assert_int_equal(wal_close(w), 0);
    }

    /* 2. torn header (crash right after create) in file 2: empty, replay goes on */
    restore_multi(&t, imgs, lens, nf);
    write_whole(&t, 2, imgs[1], 10);
    memset(&c, 0, sizeof c);
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, &info, &w), 0);
    assert_int_equal(info.records, total - count_recs(imgs[1], lens[1]));
    assert_int_equal(info.truncated, 0);
    assert_int_equal(info.files, nf);
    assert_true(file_exists(&t, nf + 1));
    assert_int_equal(wal_close(w), 0);

    /* 3. unknown version with a valid CRC: refused, nothing touched */
    restore_multi(&t, imgs, lens, nf);
    uint8_t *b = malloc(lens[2]);
    memcpy(b, imgs[2], lens[2]);
    st_store_u32le(b + 8, 2);
    st_store_u32le(b + 16, st_crc32c(0, b, 16));
    write_whole(&t, 3, b, lens[2]);
    free(b);
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, &info, &w), ST_EVERSION);
    assert_null(w);
    for (uint32_t q = 1; q <= nf; q++)
        assert_int_equal(file_size(&t, q), (long)lens[q - 1]);
    assert_false(file_exists(&t, nf + 1));

    /* 4. a missing file in the middle: refused */
    restore_multi(&t, imgs, lens, nf);
    char p[160];
    path_of(p, sizeof p, &t, 2);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, &info, &w), ST_ECORRUPT);
    assert_true(file_exists(&t, 3));

    /* 5. a stray non-WAL file is ignored */
    restore_multi(&t, imgs, lens, nf);
    snprintf(p, sizeof p, "%s/1.wal", t.wal);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("junk", f);
    fclose(f);
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, &info, &w), 0);
    assert_int_equal(info.records, total);
    assert_int_equal(wal_close(w), 0);

    for (uint32_t q = 0; q < nf; q++)
        free(imgs[q]);
    rm_rf(t.root);
}

static void test_oversized_length(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_OS_DEFAULT, 0);
    wal_t *w;
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
    append_gen(w, 0, 50, NULL);
    assert_int_equal(wal_close(w), 0);
    size_t n;
    uint8_t *img = read_whole(&t, 1, &n);
    size_t offs[64];
    assert_int_equal(rec_offsets(img, n, offs, 64), 50);
    const uint32_t bad_lens[3] = {WAL_MAX_RECORD + 1, UINT32_MAX, (uint32_t)n}; /* last: past EOF */
    for (int v = 0; v < 3; v++) {
        clear_wal_dir(&t);
        uint8_t *b = malloc(n);
        memcpy(b, img, n);
        st_store_u32le(b + offs[30], bad_lens[v]);
        write_whole(&t, 1, b, n);
        free(b);
        gen_ctx_t c = {0};
        wal_replay_info_t info;
        assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
        assert_int_equal(c.n, 30);
        assert_int_equal(c.bad, 0);
        assert_int_equal(info.truncated, 1);
        assert_int_equal(info.trunc_offset, offs[30]);
        assert_int_equal(info.trunc_bytes, n - offs[30]);
        assert_int_equal(wal_close(w), 0);
    }
    free(img);
    rm_rf(t.root);
}

static int abort_cb(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    (void)type;
    (void)p;
    (void)len;
    int *n = arg;
    return ++*n == 3 ? 42 : 0;
}

static void test_callback_abort_and_args(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_OS_DEFAULT, 0);
    wal_t *w;
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
    append_gen(w, 0, 10, NULL);
    assert_int_equal(wal_append(w, 1, NULL, 5, NULL), ST_EINVAL);
    assert_int_equal(wal_close(w), 0);
    int n = 0;
    assert_int_equal(wal_open(t.wal, &o, abort_cb, &n, NULL, &w), 42);
    assert_null(w);
    assert_false(file_exists(&t, 2)); /* nothing created on failure */
    wal_opts_t bad = opts(7, 0);
    assert_int_equal(wal_open(t.wal, &bad, NULL, NULL, NULL, &w), ST_EINVAL);
    assert_int_equal(wal_close(NULL), 0);
    rm_rf(t.root);
}

static void test_none_mode(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_NONE, 0);
    wal_t *w;
    wal_replay_info_t info;
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, &info, &w), 0);
    uint64_t lsn, prev = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(wal_append(w, 1, "abc", 3, &lsn), 0);
        assert_true(lsn > prev);
        prev = lsn;
    }
    assert_int_equal(wal_append(w, 1, "abc", (size_t)WAL_MAX_RECORD + 1, &lsn), ST_ELIMIT);
    assert_int_equal(wal_sync(w, lsn), 0);
    uint32_t seq;
    assert_int_equal(wal_rotate(w, &seq), 0);
    assert_int_equal(wal_remove_before(w, seq), 0);
    wal_stats_t s;
    wal_get_stats(w, &s);
    assert_int_equal(s.records, 100);
    assert_int_equal(s.files, 0);
    assert_int_equal(s.disk_bytes, 0);
    assert_int_equal(wal_close(w), 0);
    struct stat st;
    assert_int_equal(stat(t.wal, &st), -1); /* no directory, no files */

    /* an existing log is not replayed in NONE mode */
    wal_opts_t od = opts(WAL_OS_DEFAULT, 0);
    assert_int_equal(wal_open(t.wal, &od, NULL, NULL, NULL, &w), 0);
    append_gen(w, 0, 10, NULL);
    assert_int_equal(wal_close(w), 0);
    gen_ctx_t c = {0};
    assert_int_equal(wal_open(t.wal, &o, gen_cb, &c, &info, &w), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(info.records, 0);
    assert_int_equal(wal_close(w), 0);
    assert_false(file_exists(&t, 2));
    rm_rf(t.root);
}

/* PERIODIC and OS_DEFAULT: after wal_sync the bytes are in the file (seen from another fd). */
static void test_periodic_and_os_default(void **state)
{
    (void)state;
    for (int mode = WAL_PERIODIC; mode <= WAL_OS_DEFAULT; mode++) {
        tdir_t t;
        tdir_make(&t);
        wal_opts_t o = opts(mode, 0);
        wal_t *w;
        assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
        wal_stats_t s0, s;
        wal_get_stats(w, &s0);
        uint64_t lsn;
        assert_int_equal(wal_append(w, 5, "hello", 5, &lsn), 0);
        if (mode == WAL_OS_DEFAULT)
            assert_int_equal(file_size(&t, 1), FHDR); /* buffered, not yet written */
        assert_int_equal(wal_sync(w, lsn), 0);
        size_t n;
        uint8_t *b = read_whole(&t, 1, &n);
        assert_int_equal(n, FHDR + RHDR + 5);
        assert_memory_equal(b, "STRWAL01", 8);
        assert_int_equal(st_load_u32le(b + FHDR), 5);
        assert_int_equal(b[FHDR + 8], 5);
        assert_memory_equal(b + FHDR + RHDR, "hello", 5);
        free(b);
        wal_get_stats(w, &s);
        if (mode == WAL_OS_DEFAULT)
            assert_int_equal(s.syncs, s0.syncs); /* wal_sync did not fsync */
        if (mode == WAL_PERIODIC) {
            /* the background thread fsyncs, and writes what was only appended */
            assert_int_equal(wal_append(w, 6, "world", 5, &lsn), 0);
            double t0 = now_s();
            while (now_s() - t0 < 5.0) {
                wal_get_stats(w, &s);
                if (s.syncs > s0.syncs && file_size(&t, 1) == FHDR + 2 * (RHDR + 5))
                    break;
                usleep(5000);
            }
            assert_true(s.syncs > s0.syncs);
            assert_int_equal(file_size(&t, 1), FHDR + 2 * (RHDR + 5));
            printf("periodic: background fsync after %.0f ms\n", (now_s() - t0) * 1e3);
        }
        assert_int_equal(wal_close(w), 0);
        rm_rf(t.root);
    }
}

typedef struct gc_arg {
    wal_t *w;
    int id;
    int n;
    int err;
} gc_arg_t;

static void *gc_thread(void *p)
{
    gc_arg_t *a = p;
    uint8_t rec[64];
    memset(rec, 0, sizeof rec);
    for (int i = 0; i < a->n; i++) {
        rec[0] = (uint8_t)a->id;
        st_store_u32le(rec + 1, (uint32_t)i);
        uint64_t lsn;
        size_t len = 5 + (size_t)(i % 50);
        if (wal_append(a->w, 3, rec, len, &lsn) || wal_sync(a->w, lsn)) {
            a->err = 1;
            break;
        }
    }
    return NULL;
}

typedef struct gc_check {
    uint32_t next[16];
    uint64_t n, bad;
} gc_check_t;

static int gc_cb(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    gc_check_t *c = arg;
    c->n++;
    if (type != 3 || len < 5 || p[0] >= 16 || st_load_u32le(p + 1) != c->next[p[0]]++)
        c->bad++;
    return 0;
}

static void test_group_commit(void **state)
{
    (void)state;
    enum { NT = 4, PER = 250 };
    tdir_t t;
    tdir_make(&t);
    wal_opts_t o = opts(WAL_EVERY_WRITE, 16384); /* small: auto-rotation under load */
    wal_t *w;
    assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
    wal_stats_t s0, s;
    wal_get_stats(w, &s0);
    pthread_t th[NT];
    gc_arg_t a[NT];
    double t0 = now_s();
    for (int i = 0; i < NT; i++) {
        a[i] = (gc_arg_t){.w = w, .id = i, .n = PER};
        assert_int_equal(pthread_create(&th[i], NULL, gc_thread, &a[i]), 0);
    }
    uint32_t seq;
    for (int r = 0; r < 3; r++) { /* explicit rotations race with the appenders */
        usleep(2000);
        assert_int_equal(wal_rotate(w, &seq), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].err, 0);
    }
    double dt = now_s() - t0;
    wal_get_stats(w, &s);
    uint64_t syncs = s.syncs - s0.syncs;
    printf("group commit: %d wal_sync calls, %llu fsyncs (incl. rotations), %.0f commits/s\n",
           NT * PER, (unsigned long long)syncs, NT * PER / dt);
    assert_true(syncs < (uint64_t)NT * PER);
    assert_int_equal(wal_close(w), 0);

    gc_check_t c;
    memset(&c, 0, sizeof c);
    wal_replay_info_t info;
    assert_int_equal(wal_open(t.wal, &o, gc_cb, &c, &info, &w), 0);
    assert_int_equal(c.n, NT * PER);
    assert_int_equal(c.bad, 0);
    for (int i = 0; i < NT; i++)
        assert_int_equal(c.next[i], PER);
    assert_int_equal(info.truncated, 0);
    assert_int_equal(wal_close(w), 0);
    rm_rf(t.root);
}

/* After a write error the WAL fails for good (RLIMIT_FSIZE makes write(2) fail, in a child). */
static void test_failed_state(void **state)
{
    (void)state;
    tdir_t t;
    tdir_make(&t);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        wal_opts_t o = opts(WAL_EVERY_WRITE, 0);
        wal_t *w;
        if (wal_open(t.wal, &o, NULL, NULL, NULL, &w))
            _exit(10);
        struct rlimit rl = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
        if (setrlimit(RLIMIT_FSIZE, &rl))
            _exit(11);
        uint8_t big[8192];
        memset(big, 1, sizeof big);
        uint64_t lsn;
        if (wal_append(w, 1, big, 100, &lsn) || wal_sync(w, lsn))
            _exit(12); /* small: fits */
        if (wal_append(w, 1, big, sizeof big, &lsn))
            _exit(13);
        if (wal_sync(w, lsn) != ST_EIO || errno != EFBIG)
            _exit(14);
        if (wal_append(w, 1, big, 10, &lsn) != ST_EIO)
            _exit(15);
        if (wal_sync(w, 1) != ST_EIO)
            _exit(16);
        uint32_t seq;
        if (wal_rotate(w, &seq) != ST_EIO)
            _exit(17);
        if (wal_close(w) != ST_EIO)
            _exit(18);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    rm_rf(t.root);
}

/* ---------- crash test ---------- */

typedef struct crash_ctx {
    uint64_t next;
    uint64_t bad;
} crash_ctx_t;

static int crash_cb(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    crash_ctx_t *c = arg;
    if (type != 7 || len < 8 || st_load_u64le(p) != c->next)
        c->bad++;
    c->next++;
    return 0;
}

static void crash_child(const char *dir, int mode, uint64_t start, int wfd, unsigned seed)
{
    wal_opts_t o = opts(mode, 1u << 16);
    wal_t *w;
    if (wal_open(dir, &o, NULL, NULL, NULL, &w))
        _exit(20);
    static uint8_t rec[1 << 20];
    memset(rec, 0xcd, sizeof rec);
    for (uint64_t s = start;; s++) {
        st_store_u64le(rec, s);
        seed = seed * 1103515245u + 12345u;
        /* mostly small, sometimes big, so kills also land inside long writes */
        size_t len = 8 + (seed >> 16) % ((seed & 3) == 0 ? sizeof rec - 8 : 200);
        uint64_t lsn;
        if (wal_append(w, 7, rec, len, &lsn) || wal_sync(w, lsn))
            _exit(21);
        if (write(wfd, &s, sizeof s) != (ssize_t)sizeof s)
            _exit(22);
    }
}

static void crash_run(int mode, int iters, double max_s)
{
    tdir_t t;
    tdir_make(&t);
    uint64_t have = 0; /* records in the log so far (seq 0 .. have-1) */
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    double t0 = now_s();
    int it, truncs = 0;
    for (it = 0; it < iters && now_s() - t0 < max_s; it++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(t.wal, mode, have, pfd[1], seed + (unsigned)it);
        }
        close(pfd[1]);
        seed = seed * 1103515245u + 12345u;
        int need = 1 + (int)((seed >> 16) % 40);
        int got = 0;
        uint64_t last = 0, s;
        /* wait for progress, not for time */
        while (got < need && now_s() - t0 < max_s + 10) {
            struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
            if (poll(&pf, 1, 1000) <= 0)
                continue;
            ssize_t r = read(pfd[0], &s, sizeof s);
            if (r != (ssize_t)sizeof s)
                break;
            assert_int_equal(s, have + (uint64_t)got);
            last = s;
            got++;
        }
        assert_true(got > 0);
        usleep((seed >> 8) % 3000);
        kill(pid, SIGKILL);
        while (read(pfd[0], &s, sizeof s) == (ssize_t)sizeof s) {
            assert_int_equal(s, last + 1);
            last = s;
        }
        close(pfd[0]);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

        crash_ctx_t c = {0};
        wal_replay_info_t info;
        wal_opts_t o = opts(mode, 1u << 16);
        wal_t *w;
        assert_int_equal(wal_open(t.wal, &o, crash_cb, &c, &info, &w), 0);
        assert_int_equal(c.bad, 0);
        assert_true(c.next > last); /* every acknowledged seq replayed, in order, no gaps */
        truncs += info.truncated;
        have = c.next;
        assert_int_equal(wal_close(w), 0);
    }
    printf("crash mode %d: %d kills in %.1f s, %llu records, %d torn tails cut\n", mode, it,
           now_s() - t0, (unsigned long long)have, truncs);
    assert_true(it >= iters || now_s() - t0 >= max_s);
    assert_true(it >= 10);
    rm_rf(t.root);
}

static void test_crash_every_write(void **state)
{
    (void)state;
    crash_run(WAL_EVERY_WRITE, 60, 40.0);
}

static void test_crash_os_default(void **state)
{
    (void)state;
    crash_run(WAL_OS_DEFAULT, 30, 15.0);
}

/* ---------- throughput (printed, not asserted) ---------- */

static void test_throughput(void **state)
{
    (void)state;
    const char *names[] = {"EVERY_WRITE", "PERIODIC", "OS_DEFAULT", "NONE"};
    for (int mode = 0; mode <= 3; mode++) {
        tdir_t t;
        tdir_make(&t);
        wal_opts_t o = opts(mode, 0);
        o.sync_interval_ms = 100;
        wal_t *w;
        assert_int_equal(wal_open(t.wal, &o, NULL, NULL, NULL, &w), 0);
        uint8_t rec[200];
        memset(rec, 0x11, sizeof rec);
        /* per-record sync for EVERY_WRITE is fsync-bound: fewer records */
        int n = mode == WAL_EVERY_WRITE ? 500 : 200000;
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            uint64_t lsn;
            assert_int_equal(wal_append(w, 1, rec, sizeof rec, &lsn), 0);
            assert_int_equal(wal_sync(w, lsn), 0);
        }
        double dt = now_s() - t0;
        assert_int_equal(wal_close(w), 0);
        printf("throughput %-11s: %d x (append 200 B + sync): %.0f rec/s, %.1f MB/s\n", names[mode],
               n, n / dt, n * (200.0 + RHDR) / dt / 1e6);
        rm_rf(t.root);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_rotate_reopen),
        cmocka_unit_test(test_big_records_and_limit),
        cmocka_unit_test(test_remove_before),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_corrupt_middle_record),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_oversized_length),
        cmocka_unit_test(test_callback_abort_and_args),
        cmocka_unit_test(test_none_mode),
        cmocka_unit_test(test_periodic_and_os_default),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_failed_state),
        cmocka_unit_test(test_crash_every_write),
        cmocka_unit_test(test_crash_os_default),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
