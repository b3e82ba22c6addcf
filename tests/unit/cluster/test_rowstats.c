/* Unit tests for common/cluster/rowstats (SQL count(*) from timestamp
 * fingerprints): series of one tag set that agree give the set's rows as
 * their count; any disagreement (within a node, or between the nodes'
 * answers merged on the router) marks the set, whose rows then come from
 * the distinct timestamps given; encode -> decode keeps every tag set,
 * fingerprint, mark and metric name, and protobuf-c reads the encoding as
 * a RowStatsResponse; limits (tag sets, bytes) and malformed replies are
 * errors, never crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rowstats.h"
#include "st_err.h"
#include "strata.pb-c.h"

/* Series labels: __name__, host (sorted). */
static void series(st_label_t *l, const char *name, const char *host)
{
    l[0] = (st_label_t){ST_METRIC_LABEL, name, 8, (uint32_t)strlen(name)};
    l[1] = (st_label_t){"host", host, 4, (uint32_t)strlen(host)};
}

static const rowstat_t A = {100, 0x1234, 1000, 99000}, B = {100, 0x9999, 1000, 99000},
                       C = {3, 77, 5, 9};

static long find_host(const rowstats_t *rs, const char *host)
{
    st_label_t l = {"host", host, 4, (uint32_t)strlen(host)};
    return rowstats_find(rs, &l, 1);
}

static void test_agree_and_differ(void **state)
{
    (void)state;
    rowstats_t *rs;
    assert_int_equal(rowstats_create(10, &rs), 0);
    st_label_t l[2];
    series(l, "cpu_user", "h1");
    assert_int_equal(rowstats_add_series(rs, l, 2, &A), 0);
    series(l, "cpu_sys", "h1");
    assert_int_equal(rowstats_add_series(rs, l, 2, &A), 0);
    series(l, "cpu_user", "h2");
    assert_int_equal(rowstats_add_series(rs, l, 2, &A), 0);
    series(l, "cpu_sys", "h2");
    assert_int_equal(rowstats_add_series(rs, l, 2, &B), 0); /* same count, other set */
    series(l, "cpu_idle", "h3");
    assert_int_equal(rowstats_add_series(rs, l, 2, &C), 0);
    assert_int_equal(rowstats_nsets(rs), 3);
    assert_int_equal(rowstats_nmetrics(rs), 3);
    assert_int_equal(rowstats_ndiffer(rs), 1);
    long h1 = find_host(rs, "h1"), h2 = find_host(rs, "h2"), h3 = find_host(rs, "h3");
    assert_true(h1 >= 0 && h2 >= 0 && h3 >= 0);
    assert_int_equal(find_host(rs, "h4"), -1);
    /* found with __name__ too */
    series(l, "cpu_whatever", "h2");
    assert_int_equal(rowstats_find(rs, l, 2), h2);
    assert_false(rowstats_differ(rs, (size_t)h1));
    assert_true(rowstats_differ(rs, (size_t)h2));
    assert_int_equal(rowstats_rows(rs, (size_t)h1), 100);
    assert_int_equal(rowstats_rows(rs, (size_t)h3), 3);
    size_t nl;
    const st_label_t *tl = rowstats_labels(rs, (size_t)h1, &nl);
    assert_int_equal(nl, 1);
    assert_string_equal(tl[0].name, "host");
    assert_string_equal(tl[0].value, "h1");
    /* h2's rows: the union of its series' timestamps */
    int64_t a[] = {5, 1, 3}, b[] = {3, 4, 5, 5};
    assert_int_equal(rowstats_samples(rs, (size_t)h2, a, 3), 0);
    assert_int_equal(rowstats_samples(rs, (size_t)h2, b, 4), 0);
    assert_int_equal(rowstats_samples(rs, (size_t)h1, b, 4), 0); /* agrees: ignored */
    assert_int_equal(rowstats_resolve(rs), 0);
    assert_int_equal(rowstats_rows(rs, (size_t)h2), 4); /* 1 3 4 5 */
    assert_int_equal(rowstats_rows(rs, (size_t)h1), 100);
    rowstats_destroy(rs);
}

/* Two nodes' answers merged on the router. */
static void test_merge_nodes(void **state)
{
    (void)state;
    rowstats_t *n1, *n2, *r;
    assert_int_equal(rowstats_create(10, &n1), 0);
    assert_int_equal(rowstats_create(10, &n2), 0);
    assert_int_equal(rowstats_create(10, &r), 0);
    st_label_t l[2];
    series(l, "cpu_user", "h1");
    rowstats_add_series(n1, l, 2, &A);
    series(l, "cpu_sys", "h1");
    rowstats_add_series(n2, l, 2, &A); /* h1: agrees across nodes */
    series(l, "cpu_user", "h2");
    rowstats_add_series(n1, l, 2, &A);
    series(l, "cpu_sys", "h2");
    rowstats_add_series(n2, l, 2, &B); /* h2: each node agrees, the nodes do not */
    series(l, "cpu_user", "h3");
    rowstats_add_series(n1, l, 2, &A);
    series(l, "cpu_sys", "h3");
    rowstats_add_series(n1, l, 2, &C); /* h3: differs within node 1 */
    series(l, "cpu_idle", "h3");
    rowstats_add_series(n2, l, 2, &A);
    series(l, "cpu_idle", "h4");
    rowstats_add_series(n2, l, 2, &C); /* h4: one series only */
    rowstats_set_raw(n2);
    st_buf_t b1, b2;
    st_buf_init(&b1);
    st_buf_init(&b2);
    assert_int_equal(rowstats_encode(n1, 1 << 20, &b1), 0);
    assert_int_equal(rowstats_encode(n2, 1 << 20, &b2), 0);
    assert_false(rowstats_raw(r));
    assert_int_equal(rowstats_decode(r, b1.data, b1.len), 0);
    assert_false(rowstats_raw(r));
    assert_int_equal(rowstats_decode(r, b2.data, b2.len), 0);
    assert_true(rowstats_raw(r));
    assert_int_equal(rowstats_nsets(r), 4);
    assert_int_equal(rowstats_nmetrics(r), 3);
    assert_false(rowstats_differ(r, (size_t)find_host(r, "h1")));
    assert_true(rowstats_differ(r, (size_t)find_host(r, "h2")));
    assert_true(rowstats_differ(r, (size_t)find_host(r, "h3")));
    assert_false(rowstats_differ(r, (size_t)find_host(r, "h4")));
    assert_int_equal(rowstats_rows(r, (size_t)find_host(r, "h1")), 100);
    assert_int_equal(rowstats_rows(r, (size_t)find_host(r, "h4")), 3);
    /* protobuf-c reads the same message */
    Strata__RowStatsResponse *m = strata__row_stats_response__unpack(NULL, b1.len, b1.data);
    assert_non_null(m);
    assert_int_equal(m->n_sets, 3);
    assert_int_equal(m->n_metrics, 2);
    assert_false(m->raw);
    int seen = 0;
    for (size_t i = 0; i < m->n_sets; i++) {
        const Strata__TagSetStats *s = m->sets[i];
        assert_int_equal(s->n_labels, 1);
        if (s->labels[0]->value.len == 2 && !memcmp(s->labels[0]->value.data, "h1", 2)) {
            assert_false(s->differ);
            assert_int_equal(s->count, A.count);
            assert_true(s->hash == A.hash);
            assert_int_equal(s->min_ms, A.mint);
            assert_int_equal(s->max_ms, A.maxt);
            seen++;
        }
        if (s->labels[0]->value.len == 2 && !memcmp(s->labels[0]->value.data, "h3", 2)) {
            assert_true(s->differ);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    strata__row_stats_response__free_unpacked(m, NULL);
    st_buf_deinit(&b1);
    st_buf_deinit(&b2);
    rowstats_destroy(n1);
    rowstats_destroy(n2);
    rowstats_destroy(r);
}

static void test_limits_and_garbage(void **state)
{
    (void)state;
    rowstats_t *rs;
    assert_int_equal(rowstats_create(2, &rs), 0);
    st_label_t l[2];
    series(l, "m", "h1");
    assert_int_equal(rowstats_add_series(rs, l, 2, &A), 0);
    series(l, "m", "h2");
    assert_int_equal(rowstats_add_series(rs, l, 2, &A), 0);
    series(l, "m", "h3");
    assert_int_equal(rowstats_add_series(rs, l, 2, &A), ST_ELIMIT);
    series(l, "m", "h1");
    assert_int_equal(rowstats_add_series(rs, l, 2, &A), 0); /* an existing set: fine */
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(rowstats_encode(rs, 10, &b), ST_ELIMIT);
    st_buf_reset(&b);
    assert_int_equal(rowstats_encode(rs, 1 << 20, &b), 0);
    /* every cut of a valid reply decodes or fails cleanly */
    for (size_t cut = 0; cut < b.len; cut++) {
        rowstats_t *r;
        assert_int_equal(rowstats_create(10, &r), 0);
        int rc = rowstats_decode(r, b.data, cut);
        assert_true(rc == 0 || rc == ST_ECORRUPT);
        rowstats_destroy(r);
    }
    /* a NUL inside a label value is refused */
    uint8_t bad[] = {0x0a, 0x0b, 0x0a, 0x09, 0x0a, 0x01, 'h', 0x12, 0x04, 'a', 0, 'b', 'c'};
    rowstats_t *r;
    assert_int_equal(rowstats_create(10, &r), 0);
    assert_int_equal(rowstats_decode(r, bad, sizeof bad), ST_ECORRUPT);
    rowstats_destroy(r);
    st_buf_deinit(&b);
    rowstats_destroy(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agree_and_differ),
        cmocka_unit_test(test_merge_nodes),
        cmocka_unit_test(test_limits_and_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
