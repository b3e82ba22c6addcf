/* Unit tests for node/engine/seg: immutable segment files. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "seg.h"
#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"

/* Per-test state: a fresh temporary directory, removed (with its files) after. */
typedef struct tstate {
    char dir[64];
    char path[128];
} tstate_t;

static int setup(void **state)
{
    tstate_t *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    strcpy(t->dir, "/tmp/test_seg.XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/seg0", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tstate_t *t = *state;
    DIR *d = opendir(t->dir);
    if (d) {
        struct dirent *de;
        char p[512];
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", t->dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    int rc = rmdir(t->dir);
    free(t);
    return rc;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Deterministic block contents for (id, k). */
static void fill_block(uint8_t *b, size_t len, uint32_t id, uint32_t k)
{
    uint64_t x = ((uint64_t)id << 32 | k) * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)x;
    }
}

static size_t block_len_for(uint32_t id, uint32_t k)
{
    return 1 + (id * 37u + k * 11u) % 300;
}

static const seg_meta_t META = {
    .part_start = 1700000000000, .part_end = 1700007200000, .seq = 42, .level = 1};

/* Write nser series (ids 3*i+1), `per` blocks each; return 0 or an error. */
static int write_segment(const char *path, uint32_t nser, uint32_t per)
{
    seg_writer_t *w;
    int rc = seg_writer_create(path, &META, &w);
    if (rc)
        return rc;
    uint8_t buf[512];
    for (uint32_t i = 0; i < nser; i++) {
        uint32_t id = 3 * i + 1;
        for (uint32_t k = 0; k < per; k++) {
            size_t len = block_len_for(id, k);
            fill_block(buf, len, id, k);
            int64_t mint = META.part_start + (int64_t)k * 600000 + (int64_t)(i % 7);
            rc = seg_writer_add(w, id, 40 + k, mint, mint + 590000, buf, len);
            if (rc) {
                seg_writer_abort(w);
                return rc;
            }
        }
    }
    return seg_writer_finish(w);
}

/* Check every entry of a segment written by write_segment. */
static void check_segment(const seg_t *s, uint32_t nser, uint32_t per)
{
    assert_int_equal(seg_entry_count(s), (size_t)nser * per);
    uint8_t buf[512];
    for (uint32_t i = 0; i < nser; i++) {
        uint32_t id = 3 * i + 1;
        size_t first = 999, cnt = 999;
        assert_int_equal(seg_find(s, id, &first, &cnt), 0);
        assert_int_equal(first, (size_t)i * per);
        assert_int_equal(cnt, per);
        for (uint32_t k = 0; k < per; k++) {
            seg_entry_t e;
            assert_int_equal(seg_entry(s, first + k, &e), 0);
            int64_t mint = META.part_start + (int64_t)k * 600000 + (int64_t)(i % 7);
            assert_int_equal(e.series_id, id);
            assert_int_equal(e.count, 40 + k);
            assert_true(e.mint == mint);
            assert_true(e.maxt == mint + 590000);
            size_t len = block_len_for(id, k);
            assert_int_equal(e.block_len, len);
            fill_block(buf, len, id, k);
            assert_memory_equal(e.block, buf, len);
        }
    }
}

static void test_roundtrip(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 500, 5), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    check_segment(s, 500, 5);
    /* Second pass uses the cached "verified" bits. */
    check_segment(s, 500, 5);
    struct stat sb;
    assert_int_equal(stat(t->path, &sb), 0);
    assert_true(seg_file_size(s) == (uint64_t)sb.st_size);
    seg_entry_t e;
    assert_int_equal(seg_entry(s, 2500, &e), ST_EINVAL);
    seg_close(s);
}

static void test_find_hits_and_misses(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 100, 3), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    size_t first, cnt;
    /* ids are 1, 4, 7, ..., 298 */
    assert_int_equal(seg_find(s, 0, &first, &cnt), ST_ENOENT);
    assert_int_equal(seg_find(s, 2, &first, &cnt), ST_ENOENT);
    assert_int_equal(seg_find(s, 3, &first, &cnt), ST_ENOENT);
    assert_int_equal(seg_find(s, 299, &first, &cnt), ST_ENOENT);
    assert_int_equal(seg_find(s, UINT32_MAX, &first, &cnt), ST_ENOENT);
    assert_int_equal(seg_find(s, 1, &first, &cnt), 0);
    assert_int_equal(first, 0);
    assert_int_equal(cnt, 3);
    assert_int_equal(seg_find(s, 298, &first, &cnt), 0);
    assert_int_equal(first, 297);
    assert_int_equal(cnt, 3);
    for (uint32_t id = 0; id < 310; id++) {
        int rc = seg_find(s, id, &first, &cnt);
        if (id % 3 == 1 && id <= 298) {
            assert_int_equal(rc, 0);
            assert_int_equal(first, (size_t)(id / 3) * 3);
        } else {
            assert_int_equal(rc, ST_ENOENT);
        }
    }
    seg_close(s);
}

/* seg_find_from agrees with seg_find for ids read ascending (the hint moves
 * forward), descending and jumping (the hint is past them: searched from
 * the start), hits and misses alike. */
static void test_find_from_hint(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 300, 2), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    for (int order = 0; order < 3; order++) {
        size_t hint = 0;
        for (uint32_t i = 0; i < 905; i++) {
            uint32_t id = order == 0 ? i : order == 1 ? 904 - i : (i * 337) % 905;
            size_t f1 = 7, c1 = 7, f2 = 7, c2 = 7;
            int rc1 = seg_find(s, id, &f1, &c1);
            int rc2 = seg_find_from(s, id, &hint, &f2, &c2);
            assert_int_equal(rc1, rc2);
            if (!rc1) {
                assert_int_equal(f1, f2);
                assert_int_equal(c1, c2);
                assert_int_equal(c1, 2);
            }
            assert_true(hint <= seg_entry_count(s));
        }
    }
    size_t hint = 12345, first, cnt; /* a hint past the end: from the start */
    assert_int_equal(seg_find_from(s, 1, &hint, &first, &cnt), 0);
    assert_int_equal(first, 0);
    seg_close(s);
}

static void test_empty_segment(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 0, 0), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    assert_int_equal(seg_entry_count(s), 0);
    size_t first, cnt;
    assert_int_equal(seg_find(s, 0, &first, &cnt), ST_ENOENT);
    assert_int_equal(seg_find(s, 5, &first, &cnt), ST_ENOENT);
    seg_entry_t e;
    assert_int_equal(seg_entry(s, 0, &e), ST_EINVAL);
    assert_true(seg_get_meta(s)->seq == META.seq);
    seg_close(s);
}

static void test_out_of_order_rejected(void **state)
{
    tstate_t *t = *state;
    seg_writer_t *w;
    uint8_t b[4] = {1, 2, 3, 4};
    assert_int_equal(seg_writer_create(t->path, &META, &w), 0);
    assert_int_equal(seg_writer_add(w, 5, 1, 100, 200, b, 4), 0);
    assert_int_equal(seg_writer_add(w, 5, 1, 100, 150, b, 4), 0); /* equal mint: ok */
    assert_int_equal(seg_writer_add(w, 5, 1, 99, 200, b, 4), ST_EINVAL);
    assert_int_equal(seg_writer_add(w, 4, 1, 500, 600, b, 4), ST_EINVAL);
    assert_int_equal(seg_writer_add(w, 6, 0, 500, 600, b, 4), ST_EINVAL);    /* count 0 */
    assert_int_equal(seg_writer_add(w, 6, 1, 600, 500, b, 4), ST_EINVAL);    /* mint > maxt */
    assert_int_equal(seg_writer_add(w, 6, 1, 500, 600, NULL, 4), ST_EINVAL); /* no block */
    assert_int_equal(seg_writer_add(w, 6, 1, 0, 10, b, 4), 0); /* new series: any mint */
    assert_int_equal(seg_writer_finish(w), 0);
    /* The rejected adds left nothing behind. */
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    assert_int_equal(seg_entry_count(s), 3);
    seg_entry_t e;
    assert_int_equal(seg_entry(s, 1, &e), 0);
    assert_true(e.series_id == 5 && e.mint == 100 && e.maxt == 150);
    assert_int_equal(seg_entry(s, 2, &e), 0);
    assert_true(e.series_id == 6 && e.mint == 0 && e.maxt == 10);
    seg_close(s);
}

static void test_abort_leaves_no_files(void **state)
{
    tstate_t *t = *state;
    seg_writer_t *w;
    uint8_t b[100] = {0};
    assert_int_equal(seg_writer_create(t->path, &META, &w), 0);
    assert_int_equal(count_files(t->dir), 1); /* the .tmp */
    assert_int_equal(seg_writer_add(w, 1, 10, 0, 100, b, sizeof b), 0);
    seg_writer_abort(w);
    assert_int_equal(count_files(t->dir), 0);
    seg_writer_abort(NULL);
}

static void test_no_tmp_after_finish(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 10, 2), 0);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", t->path);
    assert_false(file_exists(tmp));
    assert_true(file_exists(t->path));
    assert_int_equal(count_files(t->dir), 1);
}

static void test_create_failure(void **state)
{
    tstate_t *t = *state;
    char bad[160];
    snprintf(bad, sizeof bad, "%s/missing/seg", t->dir);
    seg_writer_t *w = (seg_writer_t *)1;
    assert_int_equal(seg_writer_create(bad, &META, &w), ST_EIO);
    assert_null(w);
    assert_int_equal(seg_writer_create(t->path, NULL, &w), ST_EINVAL);
    seg_t *s = (seg_t *)1;
    assert_int_equal(seg_open(bad, &s), ST_ENOENT);
    assert_null(s);
    assert_int_equal(count_files(t->dir), 0);
}

static void test_meta_roundtrip(void **state)
{
    tstate_t *t = *state;
    const seg_meta_t metas[] = {
        {.part_start = INT64_MIN, .part_end = INT64_MAX, .seq = UINT64_MAX, .level = 0},
        {.part_start = -7200000, .part_end = 0, .seq = 0, .level = UINT64_MAX},
        {.part_start = 1700000000000, .part_end = 1700007200000, .seq = 12345, .level = 3},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        seg_writer_t *w;
        assert_int_equal(seg_writer_create(t->path, &metas[i], &w), 0);
        uint8_t b[3] = {9, 8, 7};
        /* extreme ids and times must round-trip through the deltas */
        assert_int_equal(seg_writer_add(w, 0, 1, INT64_MIN, INT64_MAX, b, 3), 0);
        assert_int_equal(seg_writer_add(w, 0, UINT32_MAX, INT64_MAX, INT64_MAX, b, 0), 0);
        assert_int_equal(seg_writer_add(w, UINT32_MAX, 1, INT64_MIN, INT64_MIN, b, 3), 0);
        assert_int_equal(seg_writer_add(w, UINT32_MAX, 2, -1, 1, b, 1), 0);
        assert_int_equal(seg_writer_finish(w), 0);
        seg_t *s;
        assert_int_equal(seg_open(t->path, &s), 0);
        const seg_meta_t *m = seg_get_meta(s);
        assert_true(m->part_start == metas[i].part_start);
        assert_true(m->part_end == metas[i].part_end);
        assert_true(m->seq == metas[i].seq);
        assert_true(m->level == metas[i].level);
        seg_entry_t e;
        assert_int_equal(seg_entry(s, 0, &e), 0);
        assert_true(e.series_id == 0 && e.count == 1 && e.mint == INT64_MIN &&
                    e.maxt == INT64_MAX && e.block_len == 3);
        assert_int_equal(seg_entry(s, 1, &e), 0);
        assert_true(e.series_id == 0 && e.count == UINT32_MAX && e.mint == INT64_MAX &&
                    e.maxt == INT64_MAX && e.block_len == 0);
        assert_int_equal(seg_entry(s, 2, &e), 0);
        assert_true(e.series_id == UINT32_MAX && e.count == 1 && e.mint == INT64_MIN &&
                    e.maxt == INT64_MIN);
        assert_int_equal(seg_entry(s, 3, &e), 0);
        assert_true(e.series_id == UINT32_MAX && e.count == 2 && e.mint == -1 && e.maxt == 1);
        assert_memory_equal(e.block, b, 1);
        size_t first, cnt;
        assert_int_equal(seg_find(s, UINT32_MAX, &first, &cnt), 0);
        assert_true(first == 2 && cnt == 2);
        seg_close(s);
    }
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_file(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(p, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Snapshot of a good segment's entries, to compare a corrupted copy against. */
typedef struct snap {
    size_t n;
    seg_entry_t *e;
    uint8_t **blocks;
} snap_t;

static void snap_take(const char *path, snap_t *sn)
{
    seg_t *s;
    assert_int_equal(seg_open(path, &s), 0);
    sn->n = seg_entry_count(s);
    sn->e = calloc(sn->n + 1, sizeof *sn->e);
    sn->blocks = calloc(sn->n + 1, sizeof *sn->blocks);
    for (size_t i = 0; i < sn->n; i++) {
        assert_int_equal(seg_entry(s, i, &sn->e[i]), 0);
        sn->blocks[i] = malloc(sn->e[i].block_len + 1);
        memcpy(sn->blocks[i], sn->e[i].block, sn->e[i].block_len);
        sn->e[i].block = NULL;
    }
    seg_close(s);
}

static void snap_free(snap_t *sn)
{
    for (size_t i = 0; i < sn->n; i++)
        free(sn->blocks[i]);
    free(sn->blocks);
    free(sn->e);
}

/*
 * Open `path` and read every entry. Returns 1 if the corruption was detected
 * (open or some seg_entry failed); fails the test if anything that was
 * returned differs from the snapshot.
 */
static int detect(const char *path, const snap_t *sn)
{
    seg_t *s;
    int rc = seg_open(path, &s);
    if (rc) {
        assert_true(rc == ST_ECORRUPT || rc == ST_EVERSION);
        return 1;
    }
    int detected = 0;
    if (seg_entry_count(s) != sn->n) {
        seg_close(s);
        fail_msg("corrupt file opened with a different entry count");
    }
    for (size_t i = 0; i < sn->n; i++) {
        seg_entry_t e;
        rc = seg_entry(s, i, &e);
        if (rc) {
            assert_int_equal(rc, ST_ECORRUPT);
            detected = 1;
            continue;
        }
        assert_int_equal(e.series_id, sn->e[i].series_id);
        assert_int_equal(e.count, sn->e[i].count);
        assert_true(e.mint == sn->e[i].mint && e.maxt == sn->e[i].maxt);
        assert_int_equal(e.block_len, sn->e[i].block_len);
        assert_memory_equal(e.block, sn->blocks[i], e.block_len);
    }
    seg_close(s);
    return detected;
}

/*
 * Hand-built files, straight from the layout documented at the top of
 * seg.c, with valid CRCs everywhere: they check that the documentation
 * matches the code and that the directory decoder rejects inconsistent
 * contents that no checksum would catch.
 */
#define HB_PART_START 1000

static void put_ent(st_buf_t *d, uint64_t idd, int64_t mintd, int64_t spand, int64_t countd,
                    uint64_t len, const uint8_t *block)
{
    assert_int_equal(st_buf_put_uvarint(d, idd), 0);
    assert_int_equal(st_buf_put_uvarint(d, st_zigzag(mintd)), 0);
    assert_int_equal(st_buf_put_uvarint(d, st_zigzag(spand)), 0);
    assert_int_equal(st_buf_put_uvarint(d, st_zigzag(countd)), 0);
    assert_int_equal(st_buf_put_uvarint(d, len), 0);
    assert_int_equal(st_buf_put_u32le(d, st_crc32c(0, block, (size_t)len)), 0);
}

typedef struct hb_footer {
    uint64_t dir_off, dir_len, raw_len, n;
    uint32_t flags;
} hb_footer_t;

static void put_footer(st_buf_t *f, const hb_footer_t *ft, const uint8_t *dir, size_t dir_len)
{
    size_t at = f->len;
    st_buf_put_u64le(f, ft->dir_off);
    st_buf_put_u64le(f, ft->dir_len);
    st_buf_put_u64le(f, ft->raw_len);
    st_buf_put_u64le(f, ft->n);
    st_buf_put_u32le(f, ft->flags);
    st_buf_put_u32le(f, st_crc32c(0, dir, dir_len));
    st_buf_put_u32le(f, st_crc32c(0, f->data + at, 40));
    assert_int_equal(st_buf_append(f, "STRSEGFT", 8), 0);
}

/* Write header + data + dir + footer; ft == NULL means a consistent footer. */
static void hb_write(const char *path, const uint8_t *data, size_t dlen, const st_buf_t *dir,
                     uint64_t n, const hb_footer_t *ft)
{
    st_buf_t f;
    st_buf_init(&f);
    assert_int_equal(st_buf_append(&f, "STRSEG01", 8), 0);
    st_buf_put_u32le(&f, 1);
    st_buf_put_u32le(&f, 0);
    st_buf_put_u64le(&f, HB_PART_START);
    st_buf_put_u64le(&f, 2000);
    st_buf_put_u64le(&f, 7);
    st_buf_put_u64le(&f, 0);
    st_buf_put_u32le(&f, st_crc32c(0, f.data, 48));
    assert_int_equal(f.len, 52);
    assert_int_equal(st_buf_append(&f, data, dlen), 0);
    assert_int_equal(st_buf_append(&f, dir->data, dir->len), 0);
    hb_footer_t def = {52 + dlen, dir->len, dir->len, n, 0};
    put_footer(&f, ft ? ft : &def, dir->data, dir->len);
    write_file(path, f.data, f.len);
    st_buf_deinit(&f);
}

static int hb_open(const char *path)
{
    seg_t *s = (seg_t *)1;
    int rc = seg_open(path, &s);
    if (rc == 0)
        seg_close(s);
    else
        assert_null(s);
    return rc;
}

static void test_hand_built_valid(void **state)
{
    tstate_t *t = *state;
    const uint8_t data[6] = {1, 2, 3, 4, 5, 6};
    st_buf_t d;
    st_buf_init(&d);
    put_ent(&d, 5, 10, 100, 3, 4, data);      /* id 5, [1010, 1110], 3 samples */
    put_ent(&d, 0, 5, -50, 1, 2, data + 4);   /* id 5, [1115, 1165], 4 (mint from prev maxt) */
    put_ent(&d, 2, -1015, 0, 0, 0, data + 6); /* id 7, [100, 150], 4 (mint from prev mint) */
    hb_write(t->path, data, 6, &d, 3, NULL);
    st_buf_deinit(&d);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    assert_true(seg_get_meta(s)->part_start == HB_PART_START && seg_get_meta(s)->seq == 7);
    seg_entry_t e;
    assert_int_equal(seg_entry(s, 0, &e), 0);
    assert_true(e.series_id == 5 && e.mint == 1010 && e.maxt == 1110 && e.count == 3);
    assert_true(e.block_len == 4 && memcmp(e.block, data, 4) == 0);
    assert_int_equal(seg_entry(s, 1, &e), 0);
    assert_true(e.series_id == 5 && e.mint == 1115 && e.maxt == 1165 && e.count == 4);
    assert_true(e.block_len == 2 && memcmp(e.block, data + 4, 2) == 0);
    assert_int_equal(seg_entry(s, 2, &e), 0);
    assert_true(e.series_id == 7 && e.mint == 100 && e.maxt == 150 && e.count == 4);
    assert_int_equal(e.block_len, 0);
    seg_close(s);
}

static void test_hand_built_inconsistent(void **state)
{
    tstate_t *t = *state;
    const uint8_t data[16] = {1, 2, 3, 4, 5, 6, 7, 8}; /* 8 used; slack for case 5's CRC */
    st_buf_t d;
    st_buf_init(&d);
    /* Each case: two entries over 8 bytes of data, one of them wrong. */
    enum { N_CASES = 9 };
    for (int c = 0; c < N_CASES; c++) {
        st_buf_reset(&d);
        put_ent(&d, 5, 10, 100, 3, 4, data);
        switch (c) {
        case 0: /* id overflows u32 */
            put_ent(&d, (uint64_t)UINT32_MAX, 0, 0, 0, 4, data + 4);
            break;
        case 1: /* mint decreases within a series */
            put_ent(&d, 0, -200, 0, 0, 4, data + 4);
            break;
        case 2: /* count 0 */
            put_ent(&d, 0, 1, 0, -3, 4, data + 4);
            break;
        case 3: /* count > u32 */
            put_ent(&d, 1, 0, 0, (int64_t)UINT32_MAX, 4, data + 4);
            break;
        case 4: /* maxt wraps past INT64_MAX */
            put_ent(&d, 1, 0, INT64_MAX, 0, 4, data + 4);
            break;
        case 5: /* block runs past the data section */
            put_ent(&d, 1, 0, 0, 0, 5, data + 4);
            break;
        case 6: /* blocks don't cover the data section */
            put_ent(&d, 1, 0, 0, 0, 3, data + 4);
            break;
        case 7: /* trailing bytes in the directory */
            put_ent(&d, 1, 0, 0, 0, 4, data + 4);
            st_buf_put_u8(&d, 0);
            break;
        case 8: /* truncated varint */
            st_buf_put_u8(&d, 0x81);
            break;
        }
        hb_write(t->path, data, 8, &d, 2, NULL);
        if (hb_open(t->path) != ST_ECORRUPT)
            fail_msg("inconsistent directory case %d accepted", c);
    }
    /* Sanity: the same two entries done right open fine. */
    st_buf_reset(&d);
    put_ent(&d, 5, 10, 100, 3, 4, data);
    put_ent(&d, 1, 0, 0, 0, 4, data + 4);
    hb_write(t->path, data, 8, &d, 2, NULL);
    assert_int_equal(hb_open(t->path), 0);

    /* Footers whose sizes and counts don't add up (valid footer CRC). */
    const hb_footer_t bad[] = {
        {59, d.len, d.len, 2, 0},            /* dir_off wrong */
        {51, d.len + 9, d.len + 9, 2, 0},    /* dir_off inside the header */
        {60, d.len - 8, d.len - 8, 2, 0},    /* dir_len wrong */
        {60, d.len, d.len + 1, 2, 0},        /* raw_len != dir_len, uncompressed */
        {60, d.len, d.len, 3, 0},            /* one entry too many */
        {60, d.len, d.len, 1, 0},            /* one entry too few */
        {60, d.len, d.len, 1ull << 60, 0},   /* absurd count: no allocation */
        {60, d.len, d.len, 0, 0},            /* zero count, non-empty dir */
        {60, d.len, d.len, 2, 2},            /* unknown flag */
        {60, d.len, d.len, 2, 1},            /* "LZ4" but raw_len == dir_len */
        {60, d.len, 1ull << 40, 2, 1},       /* LZ4 with absurd raw_len */
        {60, d.len, 255 * d.len + 16, 2, 1}, /* LZ4 garbage input */
        {60, 1u << 20, 1u << 20, 2, 0},      /* directory past the end of the file */
        {UINT64_MAX, d.len, d.len, 2, 0},    /* offsets that overflow */
        {60, UINT64_MAX - 59, d.len, 2, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_write(t->path, data, 8, &d, 2, &bad[i]);
        if (hb_open(t->path) != ST_ECORRUPT)
            fail_msg("inconsistent footer %zu accepted", i);
    }
    st_buf_deinit(&d);
}

static void test_every_bit_flip_detected(void **state)
{
    tstate_t *t = *state;
    /* Small enough to flip every bit; large enough for LZ4 to try. */
    assert_int_equal(write_segment(t->path, 6, 2), 0);
    snap_t sn;
    snap_take(t->path, &sn);
    size_t len;
    uint8_t *orig = read_file(t->path, &len);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad", t->dir);
    for (size_t off = 0; off < len; off++) {
        for (int bit = 0; bit < 8; bit++) {
            orig[off] ^= (uint8_t)(1u << bit);
            write_file(bad, orig, len);
            orig[off] ^= (uint8_t)(1u << bit);
            if (!detect(bad, &sn))
                fail_msg("flip of bit %d at offset %zu went undetected", bit, off);
        }
    }
    /* Whole-byte garbage too. */
    for (size_t off = 0; off < len; off++) {
        uint8_t old = orig[off];
        orig[off] = (uint8_t)~old;
        write_file(bad, orig, len);
        orig[off] = old;
        assert_true(detect(bad, &sn));
    }
    write_file(bad, orig, len);
    assert_int_equal(detect(bad, &sn), 0); /* the unmodified copy is fine */
    free(orig);
    snap_free(&sn);
}

static void test_bit_flip_compressed_directory(void **state)
{
    tstate_t *t = *state;
    /* Many entries with identical deltas: the directory compresses. */
    seg_writer_t *w;
    assert_int_equal(seg_writer_create(t->path, &META, &w), 0);
    uint8_t b[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (uint32_t i = 0; i < 64; i++)
        assert_int_equal(seg_writer_add(w, i, 120, META.part_start, META.part_start + 1000, b, 8),
                         0);
    assert_int_equal(seg_writer_finish(w), 0);
    size_t len;
    uint8_t *orig = read_file(t->path, &len);
    /* 52 + 64*8 data + 52 footer; raw dir would be 64*10 = 640 bytes */
    size_t dir_len = len - 52 - 64 * 8 - 52;
    assert_true(dir_len < 64 * 10);
    snap_t sn;
    snap_take(t->path, &sn);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad", t->dir);
    for (size_t off = 0; off < len; off++) {
        orig[off] ^= (uint8_t)(1u << (off % 8));
        write_file(bad, orig, len);
        orig[off] ^= (uint8_t)(1u << (off % 8));
        assert_true(detect(bad, &sn));
    }
    free(orig);
    snap_free(&sn);
}

static void test_truncated_and_extended(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 8, 3), 0);
    size_t len;
    uint8_t *orig = read_file(t->path, &len);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad", t->dir);
    for (size_t n = 0; n < len; n++) {
        write_file(bad, orig, n);
        seg_t *s = (seg_t *)1;
        assert_int_equal(seg_open(bad, &s), ST_ECORRUPT);
        assert_null(s);
    }
    /* Trailing garbage after the footer is rejected too. */
    uint8_t *ext = malloc(len + 16);
    memcpy(ext, orig, len);
    memset(ext + len, 0, 16);
    for (size_t k = 1; k <= 16; k++) {
        write_file(bad, ext, len + k);
        seg_t *s;
        assert_int_equal(seg_open(bad, &s), ST_ECORRUPT);
    }
    free(ext);
    free(orig);
}

static void test_version_rejected(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 2, 1), 0);
    size_t len;
    uint8_t *p = read_file(t->path, &len);
    p[8] = 3; /* header: magic[8], u32 version (2 is current, 1 still read) */
    write_file(t->path, p, len);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), ST_EVERSION);
    free(p);
}

static void test_large_blocks(void **state)
{
    tstate_t *t = *state;
    /* Blocks bigger than the writer's 1 MiB buffer, mixed with small ones. */
    size_t big = (3u << 20) + 17;
    uint8_t *b = malloc(big);
    assert_non_null(b);
    fill_block(b, big, 7, 7);
    seg_writer_t *w;
    assert_int_equal(seg_writer_create(t->path, &META, &w), 0);
    assert_int_equal(seg_writer_add(w, 1, 5, 0, 10, b, 100), 0);
    assert_int_equal(seg_writer_add(w, 2, 5, 0, 10, b, big), 0);
    assert_int_equal(seg_writer_add(w, 3, 5, 0, 10, b + 1, (1u << 20) - 1), 0);
    assert_int_equal(seg_writer_add(w, 4, 5, 0, 10, b + 2, 5), 0);
    assert_int_equal(seg_writer_finish(w), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    seg_entry_t e;
    assert_int_equal(seg_entry(s, 1, &e), 0);
    assert_int_equal(e.block_len, big);
    assert_memory_equal(e.block, b, big);
    assert_int_equal(seg_entry(s, 2, &e), 0);
    assert_memory_equal(e.block, b + 1, (1u << 20) - 1);
    assert_int_equal(seg_entry(s, 3, &e), 0);
    assert_memory_equal(e.block, b + 2, 5);
    seg_close(s);
    free(b);
}

typedef struct reader_arg {
    const seg_t *s;
    int errors;
} reader_arg_t;

static void *reader_thread(void *p)
{
    reader_arg_t *a = p;
    uint8_t buf[512];
    size_t n = seg_entry_count(a->s);
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < n; i++) {
            seg_entry_t e;
            if (seg_entry(a->s, i, &e) != 0) {
                a->errors++;
                continue;
            }
            uint32_t k = (uint32_t)(i % 4);
            fill_block(buf, e.block_len, e.series_id, k);
            if (e.block_len != block_len_for(e.series_id, k) ||
                memcmp(buf, e.block, e.block_len) != 0)
                a->errors++;
        }
    }
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    tstate_t *t = *state;
    assert_int_equal(write_segment(t->path, 300, 4), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    pthread_t th[4];
    reader_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i].s = s;
        args[i].errors = 0;
        assert_int_equal(pthread_create(&th[i], NULL, reader_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].errors, 0);
    }
    seg_close(s);
}

/* Directory bytes of a segment = file size - empty-segment size - block bytes. */
static double dir_bytes_per_entry(tstate_t *t, int jitter)
{
    char empty[160];
    snprintf(empty, sizeof empty, "%s/empty", t->dir);
    seg_writer_t *w;
    assert_int_equal(seg_writer_create(empty, &META, &w), 0);
    assert_int_equal(seg_writer_finish(w), 0);
    struct stat sb;
    assert_int_equal(stat(empty, &sb), 0);
    uint64_t overhead = (uint64_t)sb.st_size;
    unlink(empty);

    const uint32_t n = 10000;
    uint8_t buf[600];
    uint64_t data = 0;
    assert_int_equal(seg_writer_create(t->path, &META, &w), 0);
    for (uint32_t i = 0; i < n; i++) {
        /* realistic: ids dense with gaps, 15 s scrapes over ~2 h with jitter */
        uint32_t id = i + i / 10;
        int64_t j = jitter ? (int64_t)(rnd() % 15000) : 0;
        int64_t mint = META.part_start + j;
        int64_t maxt = META.part_start + 7185000 + (jitter ? (int64_t)(rnd() % 15000) : 0);
        uint32_t count = 480 - (jitter ? (uint32_t)(rnd() % 3) : 0);
        size_t len = 80 + rnd() % 400;
        fill_block(buf, len, id, 0);
        assert_int_equal(seg_writer_add(w, id, count, mint, maxt, buf, len), 0);
        data += len;
    }
    assert_int_equal(seg_writer_finish(w), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    assert_int_equal(seg_entry_count(s), n);
    uint64_t dir = seg_file_size(s) - overhead - data;
    seg_close(s);
    unlink(t->path);
    return (double)dir / n;
}

static void test_directory_size(void **state)
{
    tstate_t *t = *state;
    double aligned = dir_bytes_per_entry(t, 0);
    double jittered = dir_bytes_per_entry(t, 1);
    printf("directory, 10000 series x 1 block: %.2f bytes/entry aligned, %.2f jittered "
           "(incl. 4-byte CRC)\n",
           aligned, jittered);
    assert_true(aligned < 16.0);
    assert_true(jittered < 16.0);
}

/* Write a segment of the given ascending ids (one block each at [id*10,
 * id*10+5]), check the writer's summary and the one rebuilt from the file
 * agree: every id held is "may hold" (no false negative), ids outside
 * [min, max] and times outside the blocks are refused, and exact forms
 * refuse every id not held. */
static void check_summary(tstate_t *t, const uint32_t *ids, size_t n, int exact)
{
    seg_meta_t meta = {.part_start = 0, .part_end = 1 << 30, .seq = 1, .level = 0};
    seg_writer_t *w;
    assert_int_equal(seg_writer_create(t->path, &meta, &w), 0);
    uint8_t blk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seg_writer_add(w, ids[i], 2, (int64_t)ids[i] * 10,
                                        (int64_t)ids[i] * 10 + 5, blk, sizeof blk),
                         0);
    seg_summary_t *ms[2];
    assert_int_equal(seg_writer_summary(w, &ms[0]), 0);
    assert_int_equal(seg_writer_finish(w), 0);
    seg_t *s;
    assert_int_equal(seg_open(t->path, &s), 0);
    assert_int_equal(seg_summarize(s, &ms[1]), 0);
    seg_close(s);
    for (int k = 0; k < 2; k++) {
        seg_summary_t *m = ms[k];
        assert_true(seg_summary_bytes(m) <= SEG_SUMMARY_MAX_BYTES + 64);
        size_t j = 0, false_pos = 0, absent = 0;
        uint32_t hi = n ? ids[n - 1] : 0;
        for (uint32_t id = 0; id <= hi + 2; id++) {
            int held = j < n && ids[j] == id;
            if (held)
                j++;
            int may = seg_summary_may_hold(m, id, INT64_MIN, INT64_MAX);
            if (held) {
                assert_true(may);
                /* the right time only */
                assert_true(seg_summary_may_hold(m, id, (int64_t)id * 10 + 5, INT64_MAX));
                assert_false(seg_summary_may_hold(m, id, INT64_MIN, (int64_t)ids[0] * 10 - 1));
                assert_false(
                    seg_summary_may_hold(m, id, (int64_t)hi * 10 + 6, (int64_t)hi * 10 + 100));
            } else {
                absent++;
                false_pos += (size_t)may;
                if (exact || n == 0 || id < ids[0] || id > hi)
                    assert_false(may);
            }
        }
        if (n) {
            assert_true(seg_summary_may_overlap(m, 0, UINT32_MAX, INT64_MIN, INT64_MAX));
            assert_false(seg_summary_may_overlap(m, hi + 1, UINT32_MAX, INT64_MIN, INT64_MAX));
            assert_false(
                seg_summary_may_overlap(m, 0, UINT32_MAX, (int64_t)hi * 10 + 6, INT64_MAX));
        }
        if (!exact) /* the Bloom filter still refuses most absent ids */
            assert_true(false_pos * 4 < absent);
        seg_summary_free(m);
    }
    unlink(t->path);
}

static void test_summary(void **state)
{
    tstate_t *t = *state;
    uint32_t *ids = malloc(20000 * sizeof *ids);
    assert_non_null(ids);
    check_summary(t, ids, 0, 1);
    /* a few scattered ids: a sorted list */
    uint32_t few[] = {3, 17, 4000, 4001, 900000};
    check_summary(t, few, 5, 1);
    /* many dense ids: a bitmap */
    size_t n = 0;
    for (uint32_t id = 100; id < 6000; id++)
        if (id % 3)
            ids[n++] = id;
    check_summary(t, ids, n, 1);
    /* many scattered ids: a Bloom filter, still no false negative */
    n = 0;
    for (uint32_t id = 5; n < 700; id += 1 + (uint32_t)(rnd() % 200))
        ids[n++] = id;
    check_summary(t, ids, n, 0);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_hits_and_misses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_from_hint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_no_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_tmp_after_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_built_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_built_inconsistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_bit_flip_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bit_flip_compressed_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_extended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
