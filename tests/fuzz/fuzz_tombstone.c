/*
 * fuzz_tombstone — the tombstone decoders (node/engine/tomb.c) on hostile
 * bytes: one WAL record (byte 0 even) or a whole tombstones file (odd;
 * with bit 1 set the header's length and CRC are fixed up so the body is
 * fuzzed). Whatever decodes must encode again and decode to the same bytes;
 * a decoded tombstone's matchers are run on a few label sets (tomb_match).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"
#include "tomb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_tombstone: check failed: %s (line %d)\n", #c, __LINE__);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void one_record(const uint8_t *p, size_t n)
{
    tomb_t *t;
    if (tomb_decode(p, n, &t) != 0)
        return;
    CHECK(t->nm <= TOMB_MATCHERS_MAX && t->start <= t->end);
    st_buf_t b;
    st_buf_init(&b);
    CHECK(tomb_encode(&b, t) == 0);
    tomb_t *u;
    CHECK(tomb_decode(b.data, b.len, &u) == 0);
    CHECK(u->id == t->id && u->seq == t->seq && u->nm == t->nm && u->start == t->start);
    CHECK(u->version == t->version);
    /* label-set matching (the write filter of versioned deletes) on a few sets */
    st_label_t ls[2] = {{"__name__", "cpu", 8, 3}, {"host", "a", 4, 1}};
    for (size_t k = 0; k <= 2; k++) {
        int m = tomb_match(t, ls, k);
        CHECK(m == 0 || m == 1 || m == ST_ENOMEM);
    }
    for (size_t i = 0; i < t->nm; i++)
        CHECK(strcmp(u->m[i].name, t->m[i].name) == 0 &&
              strcmp(u->m[i].value, t->m[i].value) == 0 && u->m[i].type == t->m[i].type);
    /* masking never grows and keeps order */
    int64_t ts[8] = {t->start, t->end, 0, 1, -1, INT64_MIN, INT64_MAX, t->start + 1};
    double v[8] = {0};
    uint32_t id = 3;
    t->ids = &id;
    t->nids = 1;
    size_t k = tomb_mask(&t, 1, 3, 0, ts, v, 8);
    CHECK(k <= 8);
    for (size_t i = 0; i < k && t->seq > 0; i++)
        CHECK(ts[i] < t->start || ts[i] > t->end);
    t->ids = NULL;
    tomb_free(t);
    tomb_free(u);
    st_buf_deinit(&b);
}

static void one_file(uint8_t *p, size_t n)
{
    tomb_t **t;
    size_t nt, nd;
    uint32_t *dead;
    if (tomb_file_decode(p, n, &t, &nt, &dead, &nd) != 0)
        return;
    st_buf_t b;
    st_buf_init(&b);
    CHECK(tomb_file_encode(&b, t, nt, dead, nd) == 0);
    tomb_t **t2;
    size_t nt2, nd2;
    uint32_t *dead2;
    CHECK(tomb_file_decode(b.data, b.len, &t2, &nt2, &dead2, &nd2) == 0);
    CHECK(nt2 == nt && nd2 == nd);
    CHECK(nd == 0 || memcmp(dead, dead2, nd * sizeof *dead) == 0);
    for (size_t i = 0; i < nt; i++) {
        tomb_free(t[i]);
        tomb_free(t2[i]);
    }
    free(t);
    free(t2);
    free(dead);
    free(dead2);
    st_buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    uint8_t mode = data[0];
    if (!(mode & 1)) {
        one_record(data + 1, size - 1);
        return 0;
    }
    size_t n = size - 1 + ((mode & 2) ? 16 : 0);
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return 0;
    if (mode & 2) { /* a valid header around the fuzzed body */
        memcpy(p, TOMB_FILE_MAGIC, 8);
        memcpy(p + 16, data + 1, size - 1);
        st_store_u32le(p + 8, (uint32_t)(size - 1));
        st_store_u32le(p + 12, st_crc32c(0, p + 16, size - 1));
    } else {
        memcpy(p, data + 1, size - 1);
    }
    one_file(p, n);
    free(p);
    return 0;
}
