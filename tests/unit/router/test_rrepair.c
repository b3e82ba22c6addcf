/* Unit tests for read repair's pure parts: sset_merge_check (which
 * replicas' copies of a series disagree), rrepair_judge (stale replicas of
 * a shard among those that answered) and the bounded repair queue
 * (one pending per pair, queue limit, cooldown, token bucket). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rrepair.h"
#include "sset.h"
#include "st_buf.h"
#include "st_err.h"
#include "wire.h"

/* ---- sset_merge_check ---- */

static void add(sset_t *ss, uint32_t origin, const char *host, const int64_t *ts, const double *v,
                size_t n)
{
    st_buf_t b;
    st_buf_init(&b);
    st_label_t l[2] = {{"__name__", "m", 8, 1}, {"host", host, 4, strlen(host)}};
    assert_int_equal(wire_put_series(&b, 1, l, 2, ts, v, n), 0);
    assert_int_equal(wire_put_varint_field(&b, 2, 1), 0);
    int done;
    uint32_t ns = 0;
    uint64_t np = 0;
    ss->origin = origin;
    assert_int_equal(sset_add_page(ss, b.data, b.len, &done, &ns, &np), 0);
    st_buf_deinit(&b);
}

typedef struct seen {
    char host[8][8];
    uint32_t origin[8][SSET_COPIES_MAX];
    uint8_t stale[8][SSET_COPIES_MAX];
    size_t ncopies[8];
    size_t n;
} seen_t;

static void note(void *arg, const sset_series_t *m, const uint32_t *origin, const uint8_t *stale,
                 size_t n)
{
    seen_t *s = arg;
    assert_true(s->n < 8);
    snprintf(s->host[s->n], sizeof s->host[s->n], "%s", m->labels[1].value);
    memcpy(s->origin[s->n], origin, n * sizeof *origin);
    memcpy(s->stale[s->n], stale, n);
    s->ncopies[s->n++] = n;
}

static void test_merge_check(void **state)
{
    (void)state;
    int64_t t3[3] = {1000, 2000, 3000}, t2[2] = {1000, 3000}, t4[4] = {1000, 2000, 3000, 9000};
    double v3[3] = {1, 2, 3}, w3[3] = {1, 5, 3}, v2[2] = {1, 3}, v4[4] = {1, 2, 3, 4};
    sset_t ss;
    sset_init(&ss, 0);
    add(&ss, 0, "same", t3, v3, 3); /* both agree: not reported */
    add(&ss, 1, "same", t3, v3, 3);
    add(&ss, 0, "hole", t3, v3, 3); /* node 1 lacks t=2000 */
    add(&ss, 1, "hole", t2, v2, 2);
    add(&ss, 0, "conf", t3, v3, 3); /* same timestamps, another value: both stale */
    add(&ss, 1, "conf", t3, w3, 3);
    add(&ss, 1, "only", t3, v3, 3); /* only node 1 sent it */
    add(&ss, 0, "late", t3, v3, 3); /* node 1 lacks only t=9000, after the cutoff */
    add(&ss, 1, "late", t4, v4, 4);
    add(&ss, 0, "dup", t3, v3, 3); /* node 0 twice (two selectors), node 1 once */
    add(&ss, 0, "dup", t3, v3, 3);
    add(&ss, 1, "dup", t3, v3, 3);
    seen_t s = {0};
    assert_int_equal(sset_merge_check(&ss, 2, 5000, note, &s), 0);
    /* the fold is sset_merge's */
    assert_int_equal(ss.n, 6);
    assert_int_equal(s.n, 3);
    /* label order: conf, dup, hole, late, only, same */
    assert_string_equal(s.host[0], "conf");
    assert_int_equal(s.ncopies[0], 2);
    assert_true(s.stale[0][0] && s.stale[0][1]);
    assert_string_equal(s.host[1], "hole");
    assert_int_equal(s.ncopies[1], 2);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(s.stale[1][i], s.origin[1][i] == 1);
    assert_string_equal(s.host[2], "only");
    assert_int_equal(s.ncopies[2], 1);
    assert_int_equal(s.origin[2][0], 1);
    assert_int_equal(s.stale[2][0], 0);
    for (size_t i = 0; i < ss.n; i++)
        if (!strcmp(ss.s[i].labels[1].value, "hole"))
            assert_int_equal(ss.s[i].n, 3);
    sset_free(&ss);
    /* without a callback it is sset_merge */
    sset_init(&ss, 0);
    add(&ss, 0, "hole", t3, v3, 3);
    add(&ss, 1, "hole", t2, v2, 2);
    assert_int_equal(sset_merge_check(&ss, 2, 5000, NULL, NULL), 0);
    assert_int_equal(ss.n, 1);
    assert_int_equal(ss.s[0].n, 3);
    sset_free(&ss);
}

/* ---- rrepair_judge ---- */

static void test_judge(void **state)
{
    (void)state;
    rrepair_answers_t a;
    assert_int_equal(rrepair_answers_init(&a, 4), 0);
    rrepair_answers_add(&a, 1, 0);
    rrepair_answers_add(&a, 1, 2);
    rrepair_answers_add(&a, 1, 2); /* once */
    rrepair_answers_add(&a, 9, 0); /* not a shard: ignored */
    rrepair_found_t f = {0};
    /* node 2 answered for shard 1 without the series: stale, from node 0 */
    uint32_t o1[1] = {0};
    uint8_t s1[1] = {0};
    rrepair_judge(&f, &a, 1, 1, o1, s1, 1, 100, 200);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.series, 1);
    assert_int_equal(f.pair[0].shard, 1);
    assert_int_equal(f.pair[0].node, 2);
    assert_int_equal(f.pair[0].source, 0);
    /* ... but not when the series holds only samples after the cutoff */
    rrepair_judge(&f, &a, 1, 0, o1, s1, 1, 100, 200);
    assert_int_equal(f.series, 1);
    /* the same pair again widens its range, no new pair */
    uint32_t o2[2] = {0, 2};
    uint8_t s2[2] = {0, 1};
    rrepair_judge(&f, &a, 1, 1, o2, s2, 2, 50, 150);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.pair[0].start, 50);
    assert_int_equal(f.pair[0].end, 200);
    /* a conflict: both stale, no full source */
    uint8_t s3[2] = {1, 1};
    rrepair_judge(&f, &a, 1, 1, o2, s3, 2, 100, 200);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.pair[1].node, 0);
    assert_int_equal(f.pair[1].source, -1);
    /* a copy from a node that did not answer for the shard (failed over) */
    uint32_t o4[2] = {0, 3};
    uint8_t s4[2] = {0, 1};
    size_t before = f.n;
    rrepair_judge(&f, &a, 1, 1, o4, s4, 2, 100, 200);
    assert_int_equal(f.n, before); /* node 2 again (no copy): merged; node 3 ignored */
    /* a shard nobody answered for: nothing */
    rrepair_judge(&f, &a, 3, 1, o1, s1, 1, 0, 1);
    assert_int_equal(f.n, before);
    /* bounded: pairs past RREPAIR_FOUND_MAX are counted, not kept */
    rrepair_answers_t big;
    assert_int_equal(rrepair_answers_init(&big, 2 * RREPAIR_FOUND_MAX), 0);
    rrepair_found_t g = {0};
    for (uint32_t sh = 0; sh < 2 * RREPAIR_FOUND_MAX; sh++) {
        rrepair_answers_add(&big, sh, 0);
        rrepair_answers_add(&big, sh, 1);
        rrepair_judge(&g, &big, sh, 1, o1, s1, 1, 0, 1);
    }
    assert_int_equal(g.n, RREPAIR_FOUND_MAX);
    assert_int_equal(g.dropped, RREPAIR_FOUND_MAX);
    rrepair_answers_free(&big);
    rrepair_answers_free(&a);
}

/* ---- the queue ---- */

static void test_queue(void **state)
{
    (void)state;
    rrepair_cfg_t cfg = {
        .queue_max = 3, .inflight_max = 1, .cooldown_ms = 1000, .rate_per_s = 2, .burst = 4};
    rrepair_t *q;
    assert_int_equal(rrepair_create(8, 3, &cfg, &q), 0);
    int64_t now = 10000;
    rrepair_item_t a = {1, 2, 0, 100, 200}, out;
    assert_int_equal(rrepair_offer(q, &a, now), RREPAIR_QUEUED);
    /* one pending per pair: a second offer widens the queued one */
    rrepair_item_t a2 = {1, 2, 1, 50, 150};
    assert_int_equal(rrepair_offer(q, &a2, now), RREPAIR_MERGED);
    assert_int_equal(rrepair_queued(q), 1);
    assert_int_equal(rrepair_next(q, now, &out), 1);
    assert_int_equal(out.shard, 1);
    assert_int_equal(out.node, 2);
    assert_int_equal(out.source, -1); /* the offers named other sources */
    assert_int_equal(out.start, 50);
    assert_int_equal(out.end, 200);
    /* running: nothing more for the pair, and inflight_max holds the rest */
    assert_int_equal(rrepair_offer(q, &a, now), RREPAIR_PENDING);
    rrepair_item_t b = {2, 0, 1, 0, 1}, c = {3, 0, 1, 0, 1}, d = {4, 0, 1, 0, 1},
                   e = {5, 0, 1, 0, 1};
    assert_int_equal(rrepair_offer(q, &b, now), RREPAIR_QUEUED);
    assert_int_equal(rrepair_offer(q, &c, now), RREPAIR_QUEUED);
    assert_int_equal(rrepair_offer(q, &d, now), RREPAIR_QUEUED); /* the 4th token */
    assert_int_equal(rrepair_offer(q, &e, now), RREPAIR_FULL);
    assert_int_equal(rrepair_next(q, now, &out), 0);
    assert_int_equal(rrepair_running(q), 1);
    /* done: the pair cools down, the queue moves on */
    rrepair_done(q, 1, 2);
    rrepair_done(q, 1, 2); /* twice: no effect */
    assert_int_equal(rrepair_running(q), 0);
    assert_int_equal(rrepair_offer(q, &a, now + 500), RREPAIR_RATE);
    assert_int_equal(rrepair_next(q, now, &out), 1);
    assert_int_equal(out.shard, 2);
    /* the bucket is empty: rate limited until it refills (2 per second) */
    rrepair_done(q, 2, 0);
    assert_int_equal(rrepair_offer(q, &e, now + 100), RREPAIR_RATE);
    assert_int_equal(rrepair_offer(q, &e, now + 600), RREPAIR_QUEUED);
    /* after the cooldown the pair is offered again */
    assert_int_equal(rrepair_next(q, now + 600, &out), 1);
    assert_int_equal(out.shard, 3);
    rrepair_done(q, 3, 0);
    assert_int_equal(rrepair_offer(q, &a, now + 2000), RREPAIR_QUEUED);
    /* out of range */
    rrepair_item_t bad = {8, 0, -1, 0, 1};
    assert_int_equal(rrepair_offer(q, &bad, now), RREPAIR_FULL);
    rrepair_destroy(q);
    rrepair_destroy(NULL);
    /* the defaults */
    assert_int_equal(rrepair_create(4, 3, NULL, &q), 0);
    int queued = 0;
    for (uint32_t s = 0; s < 4; s++)
        for (uint32_t n = 0; n < 3; n++) {
            rrepair_item_t it = {s, n, -1, 0, 1};
            queued += rrepair_offer(q, &it, 1) == RREPAIR_QUEUED;
        }
    assert_int_equal(queued, RREPAIR_BURST);
    rrepair_destroy(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_check),
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
