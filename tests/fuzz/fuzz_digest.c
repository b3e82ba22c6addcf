/*
 * fuzz_digest — the repair decoders on hostile bytes: engine_digest_decode
 * (node/engine/engine_digest.c), which a node runs on every DIGEST reply
 * from a peer, with the magic prepended when byte 0 is odd so the body is
 * what gets fuzzed; and the protobuf messages of the repair and copy RPCs
 * (a COPY_LIST answer also through engine_copy_parts, whose partitions
 * must come out sorted and distinct). Whatever
 * decodes must encode again, decode to an equal digest (no differing cell
 * against itself) and stay within the documented bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "st_err.h"
#include "strata.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_digest: check failed: %s (line %d)\n", #c, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void digest(const uint8_t *p, size_t n)
{
    engine_digest_t *d;
    int rc = engine_digest_decode(p, n, &d);
    if (rc) {
        CHECK(rc == ST_ECORRUPT);
        return;
    }
    CHECK(d->nbuckets >= 1 && d->nbuckets <= ENGINE_DIGEST_BUCKETS_MAX);
    CHECK(d->n <= ENGINE_DIGEST_WINDOWS_MAX && d->window_ms >= 1);
    for (size_t i = 1; i < d->n; i++)
        CHECK(d->start[i - 1] < d->start[i]);
    uint8_t *e;
    size_t el;
    CHECK(engine_digest_encode(d, &e, &el) == 0);
    engine_digest_t *d2;
    CHECK(engine_digest_decode(e, el, &d2) == 0);
    CHECK(engine_digest_diff(d, d2, NULL, NULL) == 0);
    free(e);
    engine_digest_destroy(d2);
    engine_digest_destroy(d);
}

static void copy_messages(const uint8_t *data, size_t size)
{
    Strata__CopyListRequest *lq = strata__copy_list_request__unpack(NULL, size, data);
    if (lq)
        strata__copy_list_request__free_unpacked(lq, NULL);
    Strata__CopyFetchRequest *fq = strata__copy_fetch_request__unpack(NULL, size, data);
    if (fq)
        strata__copy_fetch_request__free_unpacked(fq, NULL);
    Strata__CopyFetchResponse *fr = strata__copy_fetch_response__unpack(NULL, size, data);
    if (fr)
        strata__copy_fetch_response__free_unpacked(fr, NULL);
    Strata__CopyListResponse *lr = strata__copy_list_response__unpack(NULL, size, data);
    if (!lr)
        return;
    engine_seg_file_t *f = malloc((lr->n_files ? lr->n_files : 1) * sizeof *f);
    if (f) {
        for (size_t i = 0; i < lr->n_files; i++) {
            memset(&f[i], 0, sizeof f[i]);
            f[i].part_start = lr->files[i]->part_start;
            f[i].seq_min = lr->files[i]->seq_min;
            f[i].seq_max = lr->files[i]->seq_max;
            f[i].size = lr->files[i]->size;
            f[i].sealed = lr->files[i]->sealed;
        }
        engine_part_token_t *v;
        size_t n;
        if (engine_copy_parts(f, lr->n_files, &v, &n) == 0) {
            CHECK(n <= lr->n_files);
            for (size_t i = 1; i < n; i++)
                CHECK(v[i - 1].start < v[i].start);
            free(v);
        }
        free(f);
    }
    strata__copy_list_response__free_unpacked(lr, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (mode % 4 == 1) {
        uint8_t *b = malloc(size + 4);
        if (!b)
            return 0;
        memcpy(b, "SDG1", 4);
        memcpy(b + 4, data, size);
        digest(b, size + 4);
        free(b);
    } else if (mode % 4 == 2) {
        Strata__RepairPullRequest *q = strata__repair_pull_request__unpack(NULL, size, data);
        if (q)
            strata__repair_pull_request__free_unpacked(q, NULL);
        Strata__DigestResponse *r = strata__digest_response__unpack(NULL, size, data);
        if (r) {
            digest(r->digest.data, r->digest.len);
            strata__digest_response__free_unpacked(r, NULL);
        }
    } else if (mode % 4 == 3) {
        Strata__RepairResponse *r = strata__repair_response__unpack(NULL, size, data);
        if (r)
            strata__repair_response__free_unpacked(r, NULL);
        Strata__RepairRequest *q = strata__repair_request__unpack(NULL, size, data);
        if (q)
            strata__repair_request__free_unpacked(q, NULL);
        copy_messages(data, size);
    } else {
        digest(data, size);
    }
    return 0;
}
