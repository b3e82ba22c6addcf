/* Unit tests for router/resp_rules: the form and target the RESP door sends
 * to /api/v1/admin/rules, the valkey-timeseries error words for the
 * router's answers, key names from selectors, and TS.INFO's rules and
 * sourceKey fields (RESP2 bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "resp_rules.h"
#include "st_err.h"

static void test_form_and_target(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(resp_rules_create_form(&b, "{\"__name__\"=\"a b\"}", "{\"__name__\"=\"d\"}",
                                            RULE_AGG_STD_P, 60000, -5),
                     0);
    assert_string_equal((const char *)b.data,
                        "source=%7B%22__name__%22%3D%22a%20b%22%7D&dest=%7B%22__name__%22%3D%22d%22"
                        "%7D&bucket=60000ms&align=-5&exact=1&aggregation=std.p");
    st_buf_deinit(&b);
    st_buf_init(&b);
    assert_int_equal(resp_rules_delete_target(&b, "x", "y"), 0);
    assert_string_equal((const char *)b.data, "/api/v1/admin/rules?source=x&dest=y");
    st_buf_deinit(&b);
}

static void test_errors(void **state)
{
    (void)state;
    assert_string_equal(resp_rules_error(404, NULL), "ERR TSDB: compaction rule does not exist");
    assert_string_equal(resp_rules_error(409, "the dest already receives rule 3 (one source)"),
                        "ERR TSDB: the destination key already has a src rule");
    assert_string_equal(resp_rules_error(400, "the dest is the source of rule 1 (no chains)"),
                        "ERR TSDB: the destination key already has a dst rule");
    assert_string_equal(resp_rules_error(400, "the source is the dest of rule 1 (no chains)"),
                        "ERR TSDB: the source key already has a source rule");
    assert_null(resp_rules_error(503, "no node answered for the rule set"));
}

static void test_info(void **state)
{
    (void)state;
    char key[64];
    resp_rules_key_of("{\"__name__\"=\"temp\"}", key, sizeof key);
    assert_string_equal(key, "temp");
    resp_rules_key_of("{__name__=\"cpu\",host=\"a\"}", key, sizeof key);
    assert_string_equal(key, "{__name__=\"cpu\",host=\"a\"}");
    rules_t s;
    rules_init(&s);
    char err[200];
    rule_t r = {0};
    r.source = "{\"__name__\"=\"src\"}";
    r.dest = "{\"__name__\"=\"dst\"}";
    r.agg = RULE_AGG_AVG;
    r.bucket_ms = 1000;
    r.flags = RULE_FLAG_EXACT;
    assert_int_equal(rules_add(&s, &r, NULL, err, sizeof err), 0);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(resp_rules_info(&b, 2, &s, "{\"__name__\"=\"src\"}"), 0);
    const char *want = "$9\r\nsourceKey\r\n$-1\r\n$5\r\nrules\r\n*1\r\n*4\r\n$3\r\ndst\r\n"
                       ":1000\r\n$3\r\nAVG\r\n:0\r\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    b.len = 0;
    assert_int_equal(resp_rules_info(&b, 2, &s, "{\"__name__\"=\"dst\"}"), 0);
    want = "$9\r\nsourceKey\r\n$3\r\nsrc\r\n$5\r\nrules\r\n*0\r\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    st_buf_deinit(&b);
    rules_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_and_target),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
