/* Unit tests for common/cluster/rules: the aggregators over a worked
 * bucket (values computed by hand), bucket alignment (negative offsets
 * too), validation and the set's checks (limits, duplicates, chains),
 * the codec round trip, a damaged or cut set refused, the newer-set rule,
 * and matching / destination labels for exact keys and selectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rules.h"
#include "st_err.h"

#define assert_double_equal(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

static void test_aggregators(void **state)
{
    (void)state;
    /* bucket [1000, 2000): samples 1 @1000, 3 @1200, 2 @1600 */
    rule_acc_t a;
    rule_acc_reset(&a, 1000);
    rule_acc_add(&a, 1000, 1);
    rule_acc_add(&a, 1200, 3);
    rule_acc_add(&a, 1600, 2);
    const int64_t B = 1000;
    assert_double_equal(rule_acc_value(&a, RULE_AGG_AVG, B), 2.0, 1e-12);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_SUM, B), 6.0, 1e-12);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_MIN, B), 1.0, 0);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_MAX, B), 3.0, 0);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_RANGE, B), 2.0, 0);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_COUNT, B), 3.0, 0);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_FIRST, B), 1.0, 0);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_LAST, B), 2.0, 0);
    /* deviations -1, 1, 0: sum of squares 2 */
    assert_double_equal(rule_acc_value(&a, RULE_AGG_VAR_P, B), 2.0 / 3, 1e-12);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_VAR_S, B), 1.0, 1e-12);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_STD_P, B), sqrt(2.0 / 3), 1e-12);
    assert_double_equal(rule_acc_value(&a, RULE_AGG_STD_S, B), 1.0, 1e-12);
    /* twa: trapezoids 0..200: (1+3)/2*200 = 400; 200..600: (3+2)/2*400 = 1000;
     * last value 2 over 600..1000: 800 -> 2200 / 1000 */
    assert_double_equal(rule_acc_value(&a, RULE_AGG_TWA, B), 2.2, 1e-12);
    /* one sample: sample variance undefined, twa = the value */
    rule_acc_reset(&a, 0);
    rule_acc_add(&a, 500, 4);
    assert_true(isnan(rule_acc_value(&a, RULE_AGG_STD_S, B)));
    assert_double_equal(rule_acc_value(&a, RULE_AGG_TWA, B), 4.0, 1e-12);
}

static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(rule_bucket_start(0, 60000, 0), 0);
    assert_int_equal(rule_bucket_start(59999, 60000, 0), 0);
    assert_int_equal(rule_bucket_start(60000, 60000, 0), 60000);
    assert_int_equal(rule_bucket_start(-1, 60000, 0), -60000);
    assert_int_equal(rule_bucket_start(1000, 60000, 500), 500);
    assert_int_equal(rule_bucket_start(400, 60000, 500), 500 - 60000);
}

static rule_t mk(const char *src, const char *dst, int agg, int64_t b, uint32_t flags)
{
    rule_t r = {0};
    r.source = (char *)src;
    r.dest = (char *)dst;
    r.agg = (rule_agg_t)agg;
    r.bucket_ms = b;
    r.flags = flags;
    return r;
}

static void test_validate_and_set(void **state)
{
    (void)state;
    char err[256];
    rule_t r = mk("cpu{host=\"a\"}", "cpu_1m", RULE_AGG_AVG, 60000, 0);
    assert_int_equal(rule_validate(&r, err, sizeof err), 0);
    r.bucket_ms = 0;
    assert_int_equal(rule_validate(&r, err, sizeof err), ST_EINVAL);
    r = mk("cpu{", "x", 0, 1000, 0);
    assert_int_equal(rule_validate(&r, err, sizeof err), ST_EINVAL);
    r = mk("cpu", "x{a=~\"b\"}", 0, 1000, 0);
    assert_int_equal(rule_validate(&r, err, sizeof err), ST_EINVAL);
    r = mk("{host!=\"a\"}", "x", 0, 1000, 0);
    assert_int_equal(rule_validate(&r, err, sizeof err), ST_EINVAL);
    r = mk("cpu{host=~\"a\"}", "x", 0, 1000, RULE_FLAG_EXACT);
    assert_int_equal(rule_validate(&r, err, sizeof err), ST_EINVAL);
    r = mk("cpu{host=~\"(\"}", "x", 0, 1000, 0);
    assert_int_equal(rule_validate(&r, err, sizeof err), ST_EINVAL);
    assert_int_equal(rule_agg_parse("STD.P", 5), RULE_AGG_STD_P);
    assert_int_equal(rule_agg_parse("median", 6), -1);

    rules_t s;
    rules_init(&s);
    uint64_t id;
    r = mk("cpu", "cpu_1m", RULE_AGG_MAX, 60000, 0);
    assert_int_equal(rules_add(&s, &r, &id, err, sizeof err), 0);
    assert_int_equal(id, 1);
    assert_int_equal(rules_add(&s, &r, &id, err, sizeof err), ST_EEXIST);
    r = mk("cpu_1m", "cpu_1h", RULE_AGG_MAX, 60000, 0); /* chain onto a dest */
    assert_int_equal(rules_add(&s, &r, &id, err, sizeof err), ST_EINVAL);
    r = mk("mem", "cpu", RULE_AGG_MAX, 60000, 0); /* dest is a source */
    assert_int_equal(rules_add(&s, &r, &id, err, sizeof err), ST_EINVAL);
    r = mk("mem", "mem_1m", RULE_AGG_MIN, 1000, 0);
    assert_int_equal(rules_add(&s, &r, &id, err, sizeof err), 0);
    assert_int_equal(id, 2);
    assert_int_equal(rules_remove(&s, 1), 0);
    assert_int_equal(rules_remove(&s, 1), ST_ENOENT);
    assert_int_equal(s.n, 1);
    rules_free(&s);

    /* the limit */
    rules_init(&s);
    char src[64], dst[64];
    for (int i = 0; i < RULES_MAX; i++) {
        snprintf(src, sizeof src, "m%d", i);
        snprintf(dst, sizeof dst, "d%d", i);
        r = mk(src, dst, 0, 1000, 0);
        assert_int_equal(rules_add(&s, &r, &id, err, sizeof err), 0);
    }
    r = mk("extra", "extra_d", 0, 1000, 0);
    assert_int_equal(rules_add(&s, &r, &id, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "too many rules"));
    rules_free(&s);
}

static void test_codec(void **state)
{
    (void)state;
    char err[256];
    rules_t s, u;
    rules_init(&s);
    s.version = 42;
    rule_t r = mk("cpu{host=\"a\"}", "cpu_1m{host=\"a\"}", RULE_AGG_TWA, 60000, RULE_FLAG_EXACT);
    r.align_ms = 5000;
    r.created_ms = 123;
    assert_int_equal(rules_add(&s, &r, NULL, err, sizeof err), 0);
    r = mk("{__name__=~\"disk_.*\"}", "disk_5m{tier=\"5m\"}", RULE_AGG_SUM, 300000, 0);
    assert_int_equal(rules_add(&s, &r, NULL, err, sizeof err), 0);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(rules_encode(&s, &b), 0);
    assert_int_equal(rules_decode(b.data, b.len, &u, err, sizeof err), 0);
    assert_int_equal(u.version, 42);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.v[0].source, "cpu{host=\"a\"}");
    assert_int_equal(u.v[0].align_ms, 5000);
    assert_int_equal(u.v[0].created_ms, 123);
    assert_int_equal(u.v[0].agg, RULE_AGG_TWA);
    assert_int_equal(u.v[0].flags, RULE_FLAG_EXACT);
    assert_int_equal(u.v[1].id, 2);
    rules_free(&u);
    assert_int_equal(rules_blob_version(b.data, b.len), 42);
    /* every cut and every flipped byte is refused */
    for (size_t cut = 0; cut < b.len; cut++) {
        assert_int_not_equal(rules_decode(b.data, cut, &u, err, sizeof err), 0);
        rules_free(&u);
    }
    for (size_t i = 0; i < b.len; i++) {
        b.data[i] ^= 0x40;
        assert_int_not_equal(rules_decode(b.data, b.len, &u, err, sizeof err), 0);
        rules_free(&u);
        b.data[i] ^= 0x40;
    }
    /* newer: version first, then CRC */
    st_buf_t c;
    st_buf_init(&c);
    s.version = 43;
    assert_int_equal(rules_encode(&s, &c), 0);
    assert_true(rules_blob_newer(c.data, c.len, b.data, b.len));
    assert_false(rules_blob_newer(b.data, b.len, c.data, c.len));
    assert_false(rules_blob_newer(b.data, b.len, b.data, b.len));
    st_buf_deinit(&b);
    st_buf_deinit(&c);
    rules_free(&s);
}

/* Retention entries: validated apart, one per metric, beside rules of
 * the same name, round trip through the codec, never compiled. */
static void test_retention_entries(void **state)
{
    (void)state;
    char err[256];
    rules_t s, u;
    rules_init(&s);
    rule_t r = mk("kret", "", 0, 20000, RULE_FLAG_RETENTION);
    assert_int_equal(rules_add(&s, &r, NULL, err, sizeof err), 0);
    assert_int_equal(rules_add(&s, &r, NULL, err, sizeof err), ST_EEXIST);
    rule_t bad = mk("kret2", "", 0, 0, RULE_FLAG_RETENTION);
    assert_int_equal(rule_validate(&bad, err, sizeof err), ST_EINVAL);
    bad = mk("kret2", "x", 0, 1000, RULE_FLAG_RETENTION);
    assert_int_equal(rule_validate(&bad, err, sizeof err), ST_EINVAL);
    bad = mk("", "", 0, 1000, RULE_FLAG_RETENTION);
    assert_int_equal(rule_validate(&bad, err, sizeof err), ST_EINVAL);
    bad = mk("kret2", "", 0, 1000, RULE_FLAG_RETENTION | RULE_FLAG_EXACT);
    assert_int_equal(rule_validate(&bad, err, sizeof err), ST_EINVAL);
    /* a compaction rule from and to keys of the same names is fine */
    rule_t c = mk("{__name__=\"kret\"}", "kret_1m", RULE_AGG_AVG, 60000, RULE_FLAG_EXACT);
    assert_int_equal(rules_add(&s, &c, NULL, err, sizeof err), 0);
    assert_int_equal(rules_find_retention(&s, "kret"), 0);
    assert_int_equal(rules_find_retention(&s, "kret_1m"), -1);
    assert_int_equal(rules_find(&s, "kret", ""), -1);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(rules_encode(&s, &b), 0);
    assert_int_equal(rules_decode(b.data, b.len, &u, err, sizeof err), 0);
    assert_int_equal(u.n, 2);
    assert_true(rule_is_retention(&u.v[0]));
    assert_false(rule_is_retention(&u.v[1]));
    assert_int_equal(u.v[0].bucket_ms, 20000);
    assert_string_equal(u.v[0].dest, "");
    rule_compiled_t *cc;
    assert_int_equal(rule_compile(&u.v[0], &cc, err, sizeof err), ST_EINVAL);
    rules_free(&u);
    st_buf_deinit(&b);
    rules_free(&s);
}

static void test_match_dest(void **state)
{
    (void)state;
    char err[256];
    st_label_t l[3] = {{"__name__", "cpu", 8, 3}, {"dc", "x", 2, 1}, {"host", "a", 4, 1}};
    st_label_t d[8];
    rule_compiled_t *c;
    /* exact key: only the very label set */
    rule_t r = mk("cpu{host=\"a\"}", "cpu_1m{k=\"v\"}", 0, 1000, RULE_FLAG_EXACT);
    assert_int_equal(rule_compile(&r, &c, err, sizeof err), 0);
    assert_false(rule_compiled_match(c, l, 3));
    st_label_t l2[2] = {{"__name__", "cpu", 8, 3}, {"host", "a", 4, 1}};
    assert_true(rule_compiled_match(c, l2, 2));
    assert_string_equal(rule_compiled_source_name(c), "cpu");
    assert_int_equal(rule_compiled_dest(c, l2, 2, d, 8), 2);
    assert_memory_equal(d[0].value, "cpu_1m", 6);
    assert_memory_equal(d[1].name, "k", 1);
    rule_compiled_free(c);
    /* selector: every matching series, its labels kept, dest's override */
    r = mk("{__name__=~\"c.u\",host!=\"b\"}", "cpu_1m{dc=\"y\"}", 0, 1000, 0);
    assert_int_equal(rule_compile(&r, &c, err, sizeof err), 0);
    assert_null(rule_compiled_source_name(c));
    assert_string_equal(rule_compiled_dest_name(c), "cpu_1m");
    assert_true(rule_compiled_match(c, l, 3));
    l[2].value = "b";
    assert_false(rule_compiled_match(c, l, 3));
    l[2].value = "a";
    assert_int_equal(rule_compiled_dest(c, l, 3, d, 8), 3);
    assert_memory_equal(d[0].value, "cpu_1m", 6);
    assert_memory_equal(d[1].name, "dc", 2);
    assert_memory_equal(d[1].value, "y", 1);
    assert_memory_equal(d[2].name, "host", 4);
    assert_int_equal(rule_compiled_dest(c, l, 3, d, 2), 0);
    rule_compiled_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregators),      cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_validate_and_set), cmocka_unit_test(test_codec),
        cmocka_unit_test(test_match_dest),       cmocka_unit_test(test_retention_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
