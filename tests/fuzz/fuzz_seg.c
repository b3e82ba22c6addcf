/*
 * fuzz_seg — segment files (node/engine/seg) from untrusted bytes.
 *
 * The first input byte picks a mode (low 2 bits):
 *   0, 1  the rest of the input is the file: seg_open it and walk every
 *         entry with seg_entry and seg_find.
 *   2     the rest is the content of a file that gets valid header, footer
 *         and directory CRCs (layout as documented in seg.c), so the fuzzer
 *         reaches the directory decoder; bit 2 of byte 0 LZ4-compresses the
 *         fuzzer's raw directory first; bit 3 writes format version 2 (block
 *         versions in the directory) instead of 1.
 *   3     the rest is a list of seg_writer_add calls; the segment is written,
 *         reopened and must return exactly what was accepted.
 * Nothing may crash, leak, or read outside the file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <lz4.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seg.h"
#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char path[96];

static void cleanup(void)
{
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    unlink(path);
    rmdir(dir);
}

static void init(void)
{
    if (dir[0])
        return;
    /* tmpfs when available: the writer's fsyncs cost nothing there. */
    strcpy(dir, "/dev/shm/fuzz_seg.XXXXXX");
    if (!mkdtemp(dir)) {
        strcpy(dir, "/tmp/fuzz_seg.XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(path, sizeof path, "%s/seg", dir);
    atexit(cleanup);
}

static void write_file(const uint8_t *p, size_t n)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k <= 0)
            abort();
        p += k;
        n -= (size_t)k;
    }
    close(fd);
}

/* Open `path` and touch everything a reader can reach. */
static void walk(void)
{
    seg_t *s;
    int rc = seg_open(path, &s);
    if (rc) {
        if (rc != ST_ECORRUPT && rc != ST_EVERSION)
            abort();
        return;
    }
    const seg_meta_t *m = seg_get_meta(s);
    volatile uint64_t sink = (uint64_t)m->part_start ^ m->seq ^ seg_file_size(s);
    size_t n = seg_entry_count(s);
    for (size_t i = 0; i < n; i++) {
        seg_entry_t e;
        if (seg_entry(s, i, &e) != 0)
            continue;
        if (e.mint > e.maxt || e.count == 0)
            abort();
        for (uint32_t j = 0; j < e.block_len; j++)
            sink += e.block[j];
        size_t first, cnt;
        if (seg_find(s, e.series_id, &first, &cnt) != 0 || i < first || i >= first + cnt)
            abort();
    }
    (void)sink;
    seg_close(s);
}

static void mode_framed(const uint8_t *p, size_t n, int lz4, int v2)
{
    /* part_start i64 | entry count u8 | data length u16 | data | raw dir */
    if (n < 11)
        return;
    int64_t part_start = (int64_t)st_load_u64le(p);
    uint64_t count = p[8];
    size_t dlen = (size_t)p[9] | (size_t)p[10] << 8;
    p += 11;
    n -= 11;
    if (dlen > n)
        dlen = n;
    const uint8_t *raw = p + dlen;
    size_t raw_len = n - dlen;

    const uint8_t *d = raw;
    size_t d_len = raw_len;
    uint32_t flags = 0;
    uint8_t *z = NULL;
    if (lz4 && raw_len > 0) {
        int bound = LZ4_compressBound((int)raw_len);
        z = malloc((size_t)bound);
        if (!z)
            return;
        int k = LZ4_compress_default((const char *)raw, (char *)z, (int)raw_len, bound);
        if (k > 0 && (size_t)k < raw_len) {
            d = z;
            d_len = (size_t)k;
            flags = 1;
        }
    }

    st_buf_t f;
    st_buf_init(&f);
    st_buf_append(&f, "STRSEG01", 8);
    st_buf_put_u32le(&f, v2 ? 2 : 1);
    st_buf_put_u32le(&f, 0);
    st_buf_put_u64le(&f, (uint64_t)part_start);
    st_buf_put_u64le(&f, 0);
    st_buf_put_u64le(&f, 1);
    st_buf_put_u64le(&f, 0);
    st_buf_put_u32le(&f, st_crc32c(0, f.data, 48));
    st_buf_append(&f, p, dlen);
    st_buf_append(&f, d, d_len);
    size_t at = f.len;
    st_buf_put_u64le(&f, 52 + dlen);
    st_buf_put_u64le(&f, d_len);
    st_buf_put_u64le(&f, raw_len);
    st_buf_put_u64le(&f, count);
    st_buf_put_u32le(&f, flags);
    st_buf_put_u32le(&f, st_crc32c(0, d, d_len));
    if (f.data) {
        st_buf_put_u32le(&f, st_crc32c(0, f.data + at, 40));
        st_buf_append(&f, "STRSEGFT", 8);
        write_file(f.data, f.len);
        walk();
    }
    st_buf_deinit(&f);
    free(z);
}

typedef struct added {
    uint32_t id, count;
    int64_t mint, maxt;
    size_t off, len;
} added_t;

static void mode_writer(const uint8_t *p, size_t n)
{
    /* ops of 8 bytes: id delta u8 | count u8 | mint delta i16 | span u16 | len u8 | flags u8 */
    enum { MAX_OPS = 128 };
    added_t ops[MAX_OPS];
    size_t nops = 0;
    seg_meta_t meta = {.part_start = (int64_t)(n * 1000), .part_end = 1, .seq = n, .level = 2};
    seg_writer_t *w;
    if (seg_writer_create(path, &meta, &w) != 0)
        abort();
    uint32_t id = 0;
    int64_t t = meta.part_start;
    for (size_t i = 0; i + 8 <= n && nops < MAX_OPS; i += 8) {
        const uint8_t *o = p + i;
        id += o[0] & 0x0f;
        if (o[7] & 1)
            id = UINT32_MAX - (o[0] >> 4);
        uint32_t count = o[1];
        int64_t mint = t + (int16_t)(o[2] | o[3] << 8);
        int64_t maxt = mint + (o[4] | o[5] << 8);
        int extreme = o[7] & 2;
        if (extreme) {
            mint = o[7] & 4 ? INT64_MIN : INT64_MAX - (o[4] | o[5] << 8);
            maxt = INT64_MAX;
        }
        size_t len = o[6];
        if (len > n)
            len = n;
        int rc = seg_writer_add(w, id, count, mint, maxt, p, len);
        if (rc == 0) {
            ops[nops++] = (added_t){id, count, mint, maxt, 0, len};
            if (!extreme)
                t = mint;
        } else if (rc != ST_EINVAL) {
            abort();
        } else if (count != 0 && mint <= maxt &&
                   (nops == 0 || id > ops[nops - 1].id ||
                    (id == ops[nops - 1].id && mint >= ops[nops - 1].mint))) {
            abort(); /* rejected a valid add */
        }
    }
    if (n % 7 == 3) {
        seg_writer_abort(w);
        if (access(path, F_OK) == 0)
            abort();
        return;
    }
    if (seg_writer_finish(w) != 0)
        abort();
    seg_t *s;
    if (seg_open(path, &s) != 0)
        abort();
    const seg_meta_t *m = seg_get_meta(s);
    if (m->part_start != meta.part_start || m->seq != meta.seq || m->level != 2 ||
        seg_entry_count(s) != nops)
        abort();
    for (size_t i = 0; i < nops; i++) {
        seg_entry_t e;
        if (seg_entry(s, i, &e) != 0 || e.series_id != ops[i].id || e.count != ops[i].count ||
            e.mint != ops[i].mint || e.maxt != ops[i].maxt || e.block_len != ops[i].len ||
            (e.block_len && memcmp(e.block, p, e.block_len) != 0))
            abort();
        size_t first, cnt;
        if (seg_find(s, e.series_id, &first, &cnt) != 0 || i < first || i >= first + cnt)
            abort();
    }
    seg_close(s);
    walk();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size == 0)
        return 0;
    switch (data[0] & 3) {
    case 0:
    case 1:
        write_file(data + 1, size - 1);
        walk();
        break;
    case 2:
        mode_framed(data + 1, size - 1, data[0] & 4, data[0] & 8);
        break;
    case 3:
        mode_writer(data + 1, size - 1);
        break;
    }
    unlink(path);
    return 0;
}
