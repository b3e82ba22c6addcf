/* Unit tests for node/engine/hints: order, rotation, reopen, bounds, damage, threads, crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hints.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"

#define SHDR 20u
#define RHDR 20u

/* ---------- helpers ---------- */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

typedef struct tdir {
    char root[64];
    char q[96]; /* the queue dir: root/peer (hints_open creates it) */
} tdir_t;

static int setup(void **state)
{
    tdir_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    strcpy(t->root, "/tmp/strata-test-hints-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->q, sizeof t->q, "%s/peer", t->root);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tdir_t *t = *state;
    nftw(t->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Batch i: 8 bytes of i, then (i % 41) pattern bytes. */
static size_t mk_batch(uint64_t i, uint8_t *b)
{
    st_store_u64le(b, i);
    size_t n = 8 + (size_t)(i % 41);
    for (size_t k = 8; k < n; k++)
        b[k] = (uint8_t)(i * 7 + k);
    return n;
}

static uint64_t rec_bytes(uint64_t i)
{
    return RHDR + 8 + i % 41;
}

/* Check a peeked hint is batch i (shard i % 5) and return i. */
static uint64_t check_batch(const uint8_t *p, size_t len, uint32_t shard)
{
    assert_true(len >= 8);
    uint64_t i = st_load_u64le(p);
    uint8_t b[64];
    assert_int_equal(len, mk_batch(i, b));
    assert_memory_equal(p, b, len);
    assert_int_equal(shard, (uint32_t)(i % 5));
    return i;
}

static void append_range(hints_t *h, uint64_t from, uint64_t to, int64_t ts)
{
    uint8_t b[64];
    for (uint64_t i = from; i < to; i++) {
        size_t n = mk_batch(i, b);
        assert_int_equal(hints_append(h, (uint32_t)(i % 5), ts, b, n), 0);
    }
}

/* Peek/ack up to `max` hints; they must be expect, expect+1, ...; returns how many. */
static uint64_t drain(hints_t *h, int64_t now, uint64_t expect, uint64_t max)
{
    uint64_t got = 0;
    while (got < max) {
        uint32_t shard;
        int64_t ts;
        const uint8_t *p;
        size_t len;
        int rc = hints_peek(h, now, &shard, &ts, &p, &len);
        if (rc == ST_ENOENT)
            break;
        assert_int_equal(rc, 0);
        assert_int_equal(check_batch(p, len, shard), expect + got);
        assert_int_equal(hints_ack(h), 0);
        got++;
    }
    return got;
}

static uint64_t first_pending(hints_t *h)
{
    uint32_t shard;
    int64_t ts;
    const uint8_t *p;
    size_t len;
    assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), 0);
    return check_batch(p, len, shard);
}

static uint64_t dir_bytes(const char *dir, int *nfiles)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    uint64_t sum = 0;
    *nfiles = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".hint"))
            continue;
        char p[512];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        assert_int_equal(stat(p, &sb), 0);
        sum += (uint64_t)sb.st_size;
        (*nfiles)++;
    }
    closedir(d);
    return sum;
}

static void seg_path(const tdir_t *t, uint32_t seq, char *p, size_t n)
{
    snprintf(p, n, "%s/%08u.hint", t->q, seq);
}

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static const hints_opts_t base_opts = {
    .max_bytes = 1ull << 30,
    .max_age_ms = -1,
    .segment_bytes = 1024,
    .sync_mode = HINTS_SYNC_CALLER,
    .cursor_every = 16,
};

/* ---------- tests ---------- */

static void test_order_rotation(void **state)
{
    tdir_t *t = *state;
    hints_t *h;
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    uint32_t shard;
    int64_t ts;
    const uint8_t *p;
    size_t len;
    assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), ST_ENOENT);
    assert_int_equal(hints_ack(h), ST_EINVAL);

    const uint64_t N = 3000;
    uint64_t next_in = 0, next_out = 0, bytes = 0;
    hints_stats_t s;
    while (next_in < N) {
        append_range(h, next_in, next_in + 7 > N ? N : next_in + 7, 1000 + (int64_t)next_in);
        for (uint64_t i = next_in; i < next_in + 7 && i < N; i++)
            bytes += rec_bytes(i);
        next_in = next_in + 7 > N ? N : next_in + 7;
        /* peek twice without ack: the same hint */
        assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), 0);
        assert_int_equal(check_batch(p, len, shard), next_out);
        assert_int_equal(ts, 1000 + (int64_t)(next_out / 7 * 7));
        assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), 0);
        assert_int_equal(check_batch(p, len, shard), next_out);
        assert_int_equal(hints_ack(h), 0);
        assert_int_equal(hints_ack(h), ST_EINVAL); /* one ack per peek */
        bytes -= rec_bytes(next_out);
        next_out++;
        uint64_t got = drain(h, 0, next_out, 4);
        for (uint64_t i = next_out; i < next_out + got; i++)
            bytes -= rec_bytes(i);
        next_out += got;
        hints_stats(h, &s);
        assert_int_equal(s.pending_records, next_in - next_out);
        assert_int_equal(s.pending_bytes, bytes);
        assert_int_equal(s.oldest_ts, 1000 + (int64_t)(next_out / 7 * 7));
    }
    hints_stats(h, &s);
    assert_true(s.segments > 10); /* backlog spans many segments */
    next_out += drain(h, 0, next_out, UINT64_MAX);
    assert_int_equal(next_out, N);
    hints_stats(h, &s);
    assert_int_equal(s.appended, N);
    assert_int_equal(s.acked, N);
    assert_int_equal(s.pending_records, 0);
    assert_int_equal(s.pending_bytes, 0);
    assert_int_equal(s.oldest_ts, 0);
    assert_true(s.segments <= 1); /* consumed segments are deleted */
    assert_int_equal(s.dropped_size_records + s.dropped_age_records + s.dropped_corrupt_bytes, 0);
    assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), ST_ENOENT);
    /* bad arguments */
    assert_int_equal(hints_append(h, 0, 0, NULL, HINTS_MAX_RECORD + 1u), ST_ELIMIT);
    assert_int_equal(hints_append(h, 0, 0, NULL, 5), ST_EINVAL);
    assert_int_equal(hints_append(h, 3, 7, NULL, 0), 0); /* empty batch is fine */
    assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(shard, 3);
    assert_int_equal(ts, 7);
    assert_int_equal(hints_ack(h), 0);
    assert_int_equal(hints_close(h), 0);
    /* reopen: nothing pending, no files left but at most an empty-ish one */
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), ST_ENOENT);
    hints_stats(h, &s);
    assert_int_equal(s.segments, 0);
    assert_int_equal(hints_close(h), 0);
}

static void test_reopen_cursor(void **state)
{
    tdir_t *t = *state;
    hints_t *h;
    hints_stats_t s;
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    append_range(h, 0, 1000, 5);
    assert_int_equal(hints_sync(h), 0);
    assert_int_equal(drain(h, 0, 0, 300), 300);
    assert_int_equal(hints_close(h), 0);

    /* clean close: the cursor is exact */
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    hints_stats(h, &s);
    assert_int_equal(s.pending_records, 700);
    assert_int_equal(first_pending(h), 300);
    assert_int_equal(hints_close(h), 0);

    /* crash (no close) after acks: at most cursor_every acked hints come back */
    for (int round = 0; round < 20; round++) {
        uint64_t start;
        assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
        start = first_pending(h);
        assert_int_equal(hints_close(h), 0);
        uint64_t k = 1 + rnd() % 40;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            hints_t *c;
            if (hints_open(t->q, &base_opts, &c) != 0)
                _exit(2);
            uint32_t shard;
            int64_t ts;
            const uint8_t *p;
            size_t len;
            for (uint64_t i = 0; i < k; i++) {
                if (hints_peek(c, 0, &shard, &ts, &p, &len) != 0 || st_load_u64le(p) != start + i ||
                    hints_ack(c) != 0)
                    _exit(3);
            }
            _exit(0); /* no hints_close: the cursor file is what was persisted */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
        uint64_t now_first = first_pending(h);
        assert_true(now_first <= start + k);
        assert_true(start + k - now_first < base_opts.cursor_every); /* documented bound */
        hints_stats(h, &s);
        assert_int_equal(s.pending_records, 1000 - now_first);
        /* ack exactly up to start + k so the next round starts there */
        assert_int_equal(drain(h, 0, now_first, start + k - now_first), start + k - now_first);
        assert_int_equal(hints_close(h), 0);
    }
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    uint64_t f = first_pending(h);
    assert_int_equal(drain(h, 0, f, UINT64_MAX), 1000 - f);
    assert_int_equal(hints_close(h), 0);
}

static void test_max_bytes(void **state)
{
    tdir_t *t = *state;
    hints_opts_t o = base_opts;
    o.max_bytes = 64 * 1024;
    o.segment_bytes = 8 * 1024;
    hints_t *h;
    hints_stats_t s;
    assert_int_equal(hints_open(t->q, &o, &h), 0);
    /* a peeked hint dropped before its ack: the ack is a no-op */
    append_range(h, 0, 10, 1);
    assert_int_equal(first_pending(h), 0);
    const uint64_t N = 5000;
    uint64_t dropped_bytes = 0;
    append_range(h, 10, N, 1);
    assert_int_equal(hints_ack(h), 0);
    hints_stats(h, &s);
    assert_int_equal(s.acked, 0);
    assert_int_equal(s.appended, N);
    assert_true(s.dropped_size_records > 0);
    assert_int_equal(s.dropped_size_records + s.pending_records, N);
    for (uint64_t i = 0; i < s.dropped_size_records; i++)
        dropped_bytes += rec_bytes(i);
    assert_int_equal(s.dropped_size_bytes, dropped_bytes);
    assert_true(s.disk_bytes <= o.max_bytes);
    assert_true(s.disk_bytes > o.max_bytes / 2); /* whole segments: drops are bounded */
    int nf;
    assert_int_equal(dir_bytes(t->q, &nf), s.disk_bytes);
    assert_int_equal(nf, s.segments);
    /* the newest hints survive, in order */
    uint64_t first = s.dropped_size_records;
    assert_int_equal(drain(h, 0, first, UINT64_MAX), N - first);

    /* a record that can never fit is dropped and counted, not an error */
    uint8_t *big = calloc(1, o.max_bytes);
    assert_non_null(big);
    assert_int_equal(hints_append(h, 0, 0, big, o.max_bytes), 0);
    free(big);
    hints_stats(h, &s);
    assert_int_equal(s.dropped_size_records, first + 1);
    assert_int_equal(s.dropped_size_bytes, dropped_bytes + RHDR + o.max_bytes);

    /* appended + dropped with a consumer in between: counts add up */
    uint64_t acked = 0;
    for (uint64_t i = N; i < 3 * N; i += 100) {
        append_range(h, i, i + 100, 1);
        uint32_t shard;
        int64_t ts;
        const uint8_t *p;
        size_t len;
        for (int k = 0; k < 10; k++) {
            assert_int_equal(hints_peek(h, 0, &shard, &ts, &p, &len), 0);
            check_batch(p, len, shard);
            assert_int_equal(hints_ack(h), 0);
            acked++;
        }
        hints_stats(h, &s);
        assert_true(s.disk_bytes <= o.max_bytes);
        assert_int_equal(s.appended, i + 100 + 1);
        assert_int_equal(s.acked, acked + (N - first));
        assert_int_equal(s.appended, s.acked + s.pending_records + s.dropped_size_records);
    }
    assert_int_equal(hints_close(h), 0);
    /* reopen: pending survives and is the newest suffix */
    assert_int_equal(hints_open(t->q, &o, &h), 0);
    hints_stats(h, &s);
    uint64_t pend = s.pending_records;
    uint64_t f = first_pending(h);
    assert_int_equal(f + pend, 3 * N);
    assert_int_equal(drain(h, 0, f, UINT64_MAX), pend);
    assert_int_equal(hints_close(h), 0);
}

static void test_max_age(void **state)
{
    tdir_t *t = *state;
    hints_opts_t o = base_opts;
    o.max_age_ms = 100;
    hints_t *h;
    hints_stats_t s;
    assert_int_equal(hints_open(t->q, &o, &h), 0);
    uint8_t b[64];
    uint64_t old_bytes = 0;
    for (uint64_t i = 0; i < 100; i++) {
        size_t n = mk_batch(i, b);
        assert_int_equal(hints_append(h, (uint32_t)(i % 5), (int64_t)i, b, n), 0);
        if (i < 50)
            old_bytes += rec_bytes(i);
    }
    hints_stats(h, &s);
    assert_int_equal(s.oldest_ts, 0);
    /* now = 150: ts < 50 are older than 100 ms; ts 50 is exactly 100 ms: kept */
    uint32_t shard;
    int64_t ts;
    const uint8_t *p;
    size_t len;
    assert_int_equal(hints_peek(h, 150, &shard, &ts, &p, &len), 0);
    assert_int_equal(ts, 50);
    assert_int_equal(check_batch(p, len, shard), 50);
    hints_stats(h, &s);
    assert_int_equal(s.dropped_age_records, 50);
    assert_int_equal(s.dropped_age_bytes, old_bytes);
    assert_int_equal(s.pending_records, 50);
    assert_int_equal(s.oldest_ts, 50);
    assert_int_equal(s.acked, 0);
    assert_int_equal(drain(h, 150, 50, UINT64_MAX), 50);
    /* everything too old: the queue ends up empty */
    append_range(h, 100, 120, 0);
    assert_int_equal(hints_peek(h, 1000, &shard, &ts, &p, &len), ST_ENOENT);
    hints_stats(h, &s);
    assert_int_equal(s.dropped_age_records, 70);
    assert_int_equal(s.pending_records, 0);
    assert_int_equal(hints_close(h), 0);
}

/* Write records 0..k-1 into one fresh segment (seq 1); return the file's bytes. */
static uint8_t *one_segment(tdir_t *t, uint64_t k, long *size)
{
    hints_t *h;
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    append_range(h, 0, k, 9);
    assert_int_equal(hints_close(h), 0);
    char path[128];
    seg_path(t, 1, path, sizeof path);
    *size = file_size(path);
    assert_true(*size > 0);
    uint8_t *img = malloc((size_t)*size);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(img, 1, (size_t)*size, f), (size_t)*size);
    fclose(f);
    return img;
}

static void put_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void test_torn_tail(void **state)
{
    tdir_t *t = *state;
    const uint64_t K = 12; /* fits one 1 KiB segment */
    long size;
    uint8_t *img = one_segment(t, K, &size);
    long last = size - (long)rec_bytes(K - 1);
    char path[128], cur[128];
    seg_path(t, 1, path, sizeof path);
    snprintf(cur, sizeof cur, "%s/cursor", t->q);
    for (long cut = last; cut < size; cut++) {
        unlink(cur);
        put_file(path, img, (size_t)cut);
        hints_t *h;
        hints_stats_t s;
        assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
        hints_stats(h, &s);
        assert_int_equal(s.dropped_corrupt_bytes, (uint64_t)(cut - last));
        assert_int_equal(s.corrupt_cuts, cut > last ? 1 : 0);
        assert_int_equal(s.pending_records, K - 1);
        assert_int_equal(file_size(path), last); /* the torn bytes are gone */
        /* appends go after the survivors */
        append_range(h, K - 1, K + 1, 9);
        assert_int_equal(hints_close(h), 0);
        assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
        hints_stats(h, &s);
        assert_int_equal(s.dropped_corrupt_bytes, 0);
        assert_int_equal(drain(h, 0, 0, UINT64_MAX), K + 1);
        assert_int_equal(hints_close(h), 0);
        /* everything consumed: reset for the next cut */
        assert_int_equal(file_size(path), -1);
    }
    free(img);
}

static void test_bitflip(void **state)
{
    tdir_t *t = *state;
    const uint64_t K = 12;
    long size;
    uint8_t *img = one_segment(t, K, &size);
    char path[128];
    seg_path(t, 1, path, sizeof path);
    /* a second segment after it */
    hints_t *h;
    hints_stats_t s;
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    append_range(h, 100, 110, 9);
    assert_int_equal(hints_close(h), 0);

    /* flip a bit in the batch of record 5 (of segment 1) */
    long off5 = SHDR;
    for (uint64_t i = 0; i < 5; i++)
        off5 += (long)rec_bytes(i);
    img[off5 + RHDR + 3] ^= 0x10;
    put_file(path, img, (size_t)size);
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    hints_stats(h, &s);
    /* defined behaviour: segment 1 is cut at record 5 (counted); segment 2 is kept */
    assert_int_equal(s.corrupt_cuts, 1);
    assert_int_equal(s.dropped_corrupt_bytes, (uint64_t)(size - off5));
    assert_int_equal(s.pending_records, 5 + 10);
    assert_int_equal(file_size(path), off5);
    assert_int_equal(drain(h, 0, 0, 5), 5);
    assert_int_equal(drain(h, 0, 100, UINT64_MAX), 10);
    assert_int_equal(hints_close(h), 0);

    /* damage after open is caught by peek's CRC check, cut and counted the same way */
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    append_range(h, 200, 210, 9);
    assert_int_equal(hints_sync(h), 0);
    assert_int_equal(drain(h, 0, 200, 3), 3);
    char path3[128];
    seg_path(t, 3, path3, sizeof path3);
    long off = SHDR + (long)(rec_bytes(200) + rec_bytes(201) + rec_bytes(202) + rec_bytes(203));
    int fd = open(path3, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, off + 9), 1); /* record 204's shard field */
    c ^= 1;
    assert_int_equal(pwrite(fd, &c, 1, off + 9), 1);
    close(fd);
    assert_int_equal(drain(h, 0, 203, UINT64_MAX), 1);
    hints_stats(h, &s);
    assert_int_equal(s.dropped_corrupt_records, 6);
    assert_int_equal(s.corrupt_cuts, 1);
    assert_int_equal(s.pending_records, 0);
    /* the write segment keeps working after the cut */
    append_range(h, 300, 302, 9);
    assert_int_equal(drain(h, 0, 300, UINT64_MAX), 2);
    assert_int_equal(hints_close(h), 0);
    free(img);
}

/* ---------- concurrency ---------- */

#define CONC_N 20000

typedef struct conc {
    hints_t *h;
    int err;
} conc_t;

static void *producer(void *arg)
{
    conc_t *c = arg;
    uint8_t b[64];
    for (uint64_t i = 0; i < CONC_N; i++) {
        size_t n = mk_batch(i, b);
        if (hints_append(c->h, (uint32_t)(i % 5), (int64_t)i, b, n) != 0)
            c->err = 1;
        if (i % 1000 == 0 && hints_sync(c->h) != 0)
            c->err = 2;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    conc_t *c = arg;
    uint64_t next = 0;
    while (next < CONC_N && !c->err) {
        uint32_t shard;
        int64_t ts;
        const uint8_t *p;
        size_t len;
        int rc = hints_peek(c->h, 0, &shard, &ts, &p, &len);
        if (rc == ST_ENOENT) {
            sched_yield();
            continue;
        }
        uint8_t b[64];
        if (rc != 0 || len < 8 || st_load_u64le(p) != next || mk_batch(next, b) != len ||
            memcmp(b, p, len) != 0 || shard != next % 5 || ts != (int64_t)next) {
            c->err = 10;
            break;
        }
        if (hints_ack(c->h) != 0)
            c->err = 11;
        next++;
    }
    return NULL;
}

/* Damage found at open loses the damaged record and every later one of its
 * segment: all of them are counted (not just one per cut), the records
 * already consumed are not. */
static void test_damage_count(void **state)
{
    tdir_t *t = *state;
    const uint64_t K = 12;
    long size;
    uint8_t *img = one_segment(t, K, &size);
    char path[128], cur[128];
    seg_path(t, 1, path, sizeof path);
    snprintf(cur, sizeof cur, "%s/cursor", t->q);
    long off5 = SHDR;
    for (uint64_t i = 0; i < 5; i++)
        off5 += (long)rec_bytes(i);
    img[off5 + RHDR + 3] ^= 0x10; /* record 5's batch */
    unlink(cur);
    put_file(path, img, (size_t)size);
    hints_t *h;
    hints_stats_t s;
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    hints_stats(h, &s);
    assert_int_equal(s.corrupt_cuts, 1);
    assert_int_equal(s.dropped_corrupt_records, K - 5); /* records 5..11 */
    assert_int_equal(s.pending_records, 5);
    /* consume two, close (cursor saved), damage record 3: 3..11 lost,
     * 0..1 were consumed, 2 survives */
    assert_int_equal(drain(h, 0, 0, 2), 2);
    assert_int_equal(hints_close(h), 0);
    long off3 = SHDR;
    for (uint64_t i = 0; i < 3; i++)
        off3 += (long)rec_bytes(i);
    img[off5 + RHDR + 3] ^= 0x10; /* repair record 5 */
    img[off3 + 9] ^= 0x01;        /* record 3's shard */
    put_file(path, img, (size_t)size);
    assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
    hints_stats(h, &s);
    assert_int_equal(s.dropped_corrupt_records, K - 3);
    assert_int_equal(s.pending_records, 1);
    assert_int_equal(drain(h, 0, 2, UINT64_MAX), 1);
    assert_int_equal(hints_close(h), 0);
    free(img);
}

typedef struct win_ctx {
    uint64_t ids[HINTS_PEEK_MAX];
    size_t n;
} win_ctx_t;

static int win_take(void *arg, uint32_t shard, int64_t ts, const uint8_t *batch, size_t len)
{
    win_ctx_t *w = arg;
    (void)ts;
    w->ids[w->n++] = check_batch(batch, len, shard);
    return 0;
}

/* A replay window: consecutive hints from the cursor, acked by prefix; an
 * unacked rest comes back in the next window. */
static void test_peek_many(void **state)
{
    tdir_t *t = *state;
    hints_t *h;
    assert_int_equal(hints_open(t->q, NULL, &h), 0);
    append_range(h, 0, 20, 9);
    win_ctx_t w = {{0}, 0};
    size_t n;
    assert_int_equal(hints_peek_many(h, 0, 8, 1u << 20, win_take, &w, &n), 0);
    assert_int_equal(n, 8);
    assert_int_equal(w.n, 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(w.ids[i], i);
    assert_int_equal(hints_ack_many(h, 3), 0);
    hints_stats_t s;
    hints_stats(h, &s);
    assert_int_equal(s.pending_records, 17);
    assert_int_equal(s.acked, 3);
    assert_int_equal(hints_ack_many(h, 1), ST_EINVAL); /* no window peeked */
    w.n = 0;
    assert_int_equal(hints_peek_many(h, 0, 64, 1, win_take, &w, &n), 0); /* byte bound: one */
    assert_int_equal(n, 1);
    assert_int_equal(w.ids[0], 3);
    assert_int_equal(hints_ack_many(h, 0), 0);
    w.n = 0;
    assert_int_equal(hints_peek_many(h, 0, 64, 1u << 20, win_take, &w, &n), 0);
    assert_int_equal(n, 17);
    assert_int_equal(w.ids[16], 19);
    assert_int_equal(hints_ack_many(h, 17), 0);
    w.n = 0;
    assert_int_equal(hints_peek_many(h, 0, 8, 1u << 20, win_take, &w, &n), ST_ENOENT);
    assert_int_equal(n, 0);
    assert_int_equal(hints_close(h), 0);
}

static void test_concurrent(void **state)
{
    tdir_t *t = *state;
    hints_opts_t o = base_opts;
    o.segment_bytes = 4096;
    conc_t c = {0};
    assert_int_equal(hints_open(t->q, &o, &c.h), 0);
    pthread_t pt, ct;
    assert_int_equal(pthread_create(&ct, NULL, consumer, &c), 0);
    assert_int_equal(pthread_create(&pt, NULL, producer, &c), 0);
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    assert_int_equal(c.err, 0);
    hints_stats_t s;
    hints_stats(c.h, &s);
    assert_int_equal(s.appended, CONC_N);
    assert_int_equal(s.acked, CONC_N);
    assert_int_equal(s.pending_records, 0);
    uint32_t shard;
    int64_t ts;
    const uint8_t *p;
    size_t len;
    assert_int_equal(hints_peek(c.h, 0, &shard, &ts, &p, &len), ST_ENOENT);
    assert_int_equal(hints_close(c.h), 0);
}

/* ---------- crash (SIGKILL) ---------- */

static void crash_child(const char *dir, uint64_t base, int wfd)
{
    hints_opts_t o = base_opts;
    o.sync_mode = HINTS_SYNC_EVERY_APPEND;
    o.segment_bytes = 2048;
    hints_t *h;
    if (hints_open(dir, &o, &h) != 0)
        _exit(2);
    uint8_t b[64];
    for (uint64_t i = base;; i++) {
        size_t n = mk_batch(i, b);
        if (hints_append(h, (uint32_t)(i % 5), (int64_t)i, b, n) != 0)
            _exit(3);
        if (write(wfd, &i, sizeof i) != sizeof i)
            _exit(4);
    }
}

static void test_crash_kill(void **state)
{
    tdir_t *t = *state;
    uint64_t base = 0;
    const int iters = 60;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int it = 0; it < iters; it++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(t->q, base, p[1]);
        }
        close(p[1]);
        uint64_t want = rnd() % 150, got = 0, last = 0;
        struct timespec s0;
        clock_gettime(CLOCK_MONOTONIC, &s0);
        while (got < want) {
            struct pollfd pfd = {p[0], POLLIN, 0};
            int pr = poll(&pfd, 1, 100);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - s0.tv_sec > 10)
                break;
            if (pr <= 0)
                continue;
            uint64_t seq;
            if (read(p[0], &seq, sizeof seq) != sizeof seq)
                break;
            assert_int_equal(seq, base + got);
            last = seq;
            got++;
        }
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            fail_msg("child exited on its own (status %d) at iteration %d", status, it);
        uint64_t seq;
        while (read(p[0], &seq, sizeof seq) == sizeof seq) {
            assert_int_equal(seq, base + got);
            last = seq;
            got++;
        }
        close(p[0]);
        (void)last;

        /* every reported hint is there, in order, intact; at most one more */
        hints_t *h;
        hints_stats_t s;
        assert_int_equal(hints_open(t->q, &base_opts, &h), 0);
        hints_stats(h, &s);
        assert_int_equal(s.dropped_corrupt_bytes, 0);
        uint64_t n = drain(h, 0, base, UINT64_MAX);
        assert_true(n >= got);
        assert_true(n <= got + 1);
        assert_int_equal(hints_close(h), 0);
        base += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    assert_true(now.tv_sec - t0.tv_sec < 120);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bitflip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_kill, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
