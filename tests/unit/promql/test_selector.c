/* Unit tests for common/selector: series selector parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "selector.h"
#include "st_err.h"

static void expect(const char *s, size_t n, const st_match_type_t *t, const char **names,
                   const char **values)
{
    selector_t sel;
    char err[256];
    int rc = selector_parse(s, strlen(s), &sel, err, sizeof err);
    if (rc)
        fail_msg("%s: %s", s, err);
    assert_int_equal(sel.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sel.m[i].type, t[i]);
        assert_string_equal(sel.m[i].name, names[i]);
        assert_string_equal(sel.m[i].value, values[i]);
    }
    selector_free(&sel);
}

static void expect_err(const char *s, const char *want)
{
    selector_t sel;
    char err[256];
    assert_int_not_equal(selector_parse(s, strlen(s), &sel, err, sizeof err), 0);
    if (!strstr(err, want))
        fail_msg("%s: got '%s', want '%s'", s, err, want);
}

static void test_forms(void **state)
{
    st_match_type_t eq = ST_MATCH_EQ;
    expect("up", 1, &eq, (const char *[]){"__name__"}, (const char *[]){"up"});
    expect("  ns:rate_5m  ", 1, &eq, (const char *[]){"__name__"}, (const char *[]){"ns:rate_5m"});
    expect("cpu{host=\"h1\", dc=~\"eu.*\" ,x!=\"\", y!~'a|b',}", 5,
           (st_match_type_t[]){ST_MATCH_EQ, ST_MATCH_EQ, ST_MATCH_RE, ST_MATCH_NE, ST_MATCH_NRE},
           (const char *[]){"__name__", "host", "dc", "x", "y"},
           (const char *[]){"cpu", "h1", "eu.*", "", "a|b"});
    expect("{__name__=\"m\"}", 1, &eq, (const char *[]){"__name__"}, (const char *[]){"m"});
    expect("{\"my.metric\", \"a.b\"=\"c\"}", 2, (st_match_type_t[]){ST_MATCH_EQ, ST_MATCH_EQ},
           (const char *[]){"__name__", "a.b"}, (const char *[]){"my.metric", "c"});
    expect("m{}", 1, &eq, (const char *[]){"__name__"}, (const char *[]){"m"});
}

static void test_escapes(void **state)
{
    st_match_type_t eq = ST_MATCH_EQ;
    expect("{a=\"q\\\"t\\\\n\\n\\x41\\u00e9\\101\"}", 1, &eq, (const char *[]){"a"},
           (const char *[]){"q\"t\\n\nA\xc3\xa9"
                            "A"});
    expect("{a=`raw\\n`}", 1, &eq, (const char *[]){"a"}, (const char *[]){"raw\\n"});
    expect("{a='it\\'s'}", 1, &eq, (const char *[]){"a"}, (const char *[]){"it's"});
}

static void test_errors(void **state)
{
    expect_err("", "empty selector");
    expect_err("{}", "empty selector");
    expect_err("m{a=b}", "1:5: expected a quoted string");
    expect_err("m{a~\"b\"}", "operator");
    expect_err("m{a=\"b\"", "unexpected end");
    expect_err("m{a=\"b}", "unterminated");
    expect_err("m{a=\"\\q\"}", "unknown escape");
    expect_err("m{a=\"\\xZZ\"}", "\\x escape");
    expect_err("m{a=\"\\ud800\"}", "code point");
    expect_err("m{a=\"\xff\"}", "UTF-8");
    expect_err("m x", "after selector");
    expect_err("m{a=\"b\" c=\"d\"}", "expected ',' or '}'");
    expect_err("{1a=\"b\"}", "unexpected character '1'");
}

static void test_too_many_matchers(void **state)
{
    char buf[1024] = "m{";
    for (int i = 0; i < 70; i++) {
        char t[16];
        snprintf(t, sizeof t, "l%d=\"v\",", i);
        strcat(buf, t);
    }
    strcat(buf, "}");
    selector_t sel;
    char err[128];
    assert_int_equal(selector_parse(buf, strlen(buf), &sel, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "too many"));
}

/* match[] rules the PromQL parser follows in selector mode, with the exact
 * messages (and byte columns) selector.c always gave. */
static void test_match_mode(void **state)
{
    (void)state;
    st_match_type_t eq2[] = {ST_MATCH_EQ, ST_MATCH_EQ};
    /* `or` is a label name; no repeated-metric-name, empty-matcher, regex or
     * quoted-name checks (the index checks at query time) */
    expect("m{or=\"x\"}", 2, eq2, (const char *[]){"__name__", "or"}, (const char *[]){"m", "x"});
    expect("m{__name__=\"x\"}", 2, eq2, (const char *[]){"__name__", "__name__"},
           (const char *[]){"m", "x"});
    expect("{a=\"\"}", 1, eq2, (const char *[]){"a"}, (const char *[]){""});
    expect("{\"\"=\"x\"}", 1, eq2, (const char *[]){""}, (const char *[]){"x"});
    st_match_type_t re = ST_MATCH_RE;
    expect("{a=~\"(\"}", 1, &re, (const char *[]){"a"}, (const char *[]){"("});
    /* keywords are metric names */
    expect("sum", 1, eq2, (const char *[]){"__name__"}, (const char *[]){"sum"});
    expect("inf{a=\"b\"}", 2, eq2, (const char *[]){"__name__", "a"}, (const char *[]){"inf", "b"});
    expect_err("m{a==\"b\"}", "1:5: expected a quoted string as label matcher value");
    expect_err("m{a=\"b\" or c=\"d\"}", "1:9: expected ',' or '}' in label matchers");
    expect_err("m # c", "1:3: unexpected character '#' after selector");
    expect_err("m{a=\"b\"} !", "1:10: unexpected character '!' after selector");
    expect_err("m \"\\q\"", "1:3: unexpected character '\"' after selector");
    expect_err("m{a=\"\\q\"}", "1:8: unknown escape sequence '\\q'");
    expect_err("m{a=\"\\u12\"}", "1:8: invalid \\u escape in quoted string");
    expect_err("m{a=\"\\U00110000\"}", "1:8: escape \\U is not a valid code point");
    expect_err("1cpu", "1:1: unexpected character '1' after selector");
    expect_err("m[5m]", "1:2: unexpected character '[' after selector");
    expect_err("m\n{a=\"b\" c}", "1:10: expected ',' or '}' in label matchers");
    expect_err("  ", "1:3: empty selector");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),      cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_too_many_matchers),
        cmocka_unit_test(test_match_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
