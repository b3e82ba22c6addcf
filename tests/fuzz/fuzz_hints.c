/*
 * fuzz_hints — hint queue recovery on hostile files.
 *
 * The input becomes one or two segment files and optionally a cursor file
 * in a private temp dir; hints_open() recovers them and the queue is
 * drained. Must never crash; checks: every handed-out hint has a valid CRC
 * in the original bytes' sense (peek re-checks it), stats stay consistent,
 * and a second open after the first finds nothing left to cut.
 *
 * Input: byte 0 flags, bytes 1..2 split point, rest data.
 *   flags bit 0  two segments (data split at the split point)
 *         bit 1  prepend a valid segment header to each segment
 *         bit 2  fix every record CRC (so record contents get fuzzed)
 *         bit 3  the last 28 bytes of data are a cursor file
 *         bit 4  fix the cursor file's magic/version/CRC
 *         bit 5  name the second segment 5, not 2
 *         bit 6  age limit of 50 ms with now = 100
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hints.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_hints: check failed: %s (line %d)\n", #c, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char g_dir[64];

static void cleanup_dir(void)
{
    DIR *d = opendir(g_dir);
    CHECK(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[384];
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
        unlink(p);
    }
    closedir(d);
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
        snprintf(g_dir, sizeof g_dir, "%s/fuzz_hints_XXXXXX", bases[i]);
        if (!mkdtemp(g_dir))
            g_dir[0] = '\0';
    }
    CHECK(g_dir[0]);
    atexit(remove_dir);
}

static void write_file(const char *name, const uint8_t *b, size_t n)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(n == 0 || write(fd, b, n) == (ssize_t)n);
    close(fd);
}

static void write_seg(uint32_t seq, const uint8_t *d, size_t n, int hdr, int fix)
{
    size_t h = hdr ? 20 : 0;
    uint8_t *b = malloc(h + n + 1);
    CHECK(b);
    if (hdr) {
        memcpy(b, "STRHINT1", 8);
        st_store_u32le(b + 8, 1);
        st_store_u32le(b + 12, seq);
        st_store_u32le(b + 16, st_crc32c(0, b, 16));
    }
    if (n)
        memcpy(b + h, d, n);
    if (fix) {
        size_t off = 20;
        while (off + 20 <= h + n) {
            uint32_t len = st_load_u32le(b + off);
            if ((uint64_t)len > h + n - off - 20)
                break;
            st_store_u32le(b + off + 4, st_crc32c(0, b + off + 8, (size_t)len + 12));
            off += 20 + (size_t)len;
        }
    }
    char name[32];
    snprintf(name, sizeof name, "%08u.hint", seq);
    write_file(name, b, h + n);
    free(b);
}

static void drain(hints_t *h, int64_t now)
{
    hints_stats_t s0, s1;
    hints_stats(h, &s0);
    uint64_t n = 0;
    for (;;) {
        uint32_t shard;
        int64_t ts;
        const uint8_t *p;
        size_t len;
        int rc = hints_peek(h, now, &shard, &ts, &p, &len);
        if (rc == ST_ENOENT)
            break;
        CHECK(rc == 0);
        CHECK(len <= HINTS_MAX_RECORD);
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < len; i++) /* the bytes are readable */
            sink ^= p[i];
        (void)sink;
        CHECK(hints_ack(h) == 0);
        n++;
        CHECK(n <= s0.pending_records);
    }
    hints_stats(h, &s1);
    CHECK(s1.pending_records == 0);
    CHECK(s1.pending_bytes == 0);
    CHECK(s1.acked == n);
    CHECK(n + s1.dropped_age_records + s1.dropped_corrupt_records == s0.pending_records);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > (1u << 20))
        return 0;
    setup_dir();
    uint8_t flags = data[0];
    size_t split = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if ((flags & 8) && size >= 28) {
        uint8_t c[28];
        memcpy(c, data + size - 28, 28);
        if (flags & 16) {
            memcpy(c, "STRHCUR1", 8);
            st_store_u32le(c + 8, 1);
            st_store_u32le(c + 12, st_load_u32le(c + 12) % 8);
            st_store_u32le(c + 24, st_crc32c(0, c, 24));
        }
        write_file("cursor", c, 28);
        size -= 28;
    }
    if (split > size)
        split = size;
    int two = flags & 1;
    write_seg(1, data, two ? split : size, flags & 2, flags & 4);
    if (two)
        write_seg(flags & 32 ? 5 : 2, data + split, size - split, flags & 2, flags & 4);

    hints_opts_t o = {.max_bytes = 1 << 20,
                      .segment_bytes = 4096,
                      .sync_mode = HINTS_SYNC_CALLER,
                      .max_age_ms = (flags & 64) ? 50 : -1,
                      .cursor_every = 3};
    int64_t now = 100;
    hints_t *h = NULL;
    CHECK(hints_open(g_dir, &o, &h) == 0);
    hints_stats_t s;
    hints_stats(h, &s);
    CHECK(s.disk_bytes <= (uint64_t)size + 40);
    /* take half, close, reopen: nothing left to cut, the rest drains */
    for (uint64_t i = 0; i < s.pending_records / 2; i++) {
        uint32_t shard;
        int64_t ts;
        const uint8_t *p;
        size_t len;
        if (hints_peek(h, now, &shard, &ts, &p, &len) != 0)
            break;
        CHECK(hints_ack(h) == 0);
    }
    CHECK(hints_append(h, 7, now, "abc", 3) == 0);
    CHECK(hints_close(h) == 0);
    CHECK(hints_open(g_dir, &o, &h) == 0);
    hints_stats(h, &s);
    CHECK(s.dropped_corrupt_bytes == 0);
    CHECK(s.pending_records >= 1);
    drain(h, now);
    CHECK(hints_close(h) == 0);
    cleanup_dir();
    return 0;
}
