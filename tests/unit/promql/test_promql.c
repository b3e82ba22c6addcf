/*
 * test_promql — table-driven tests for the PromQL parser: each case is an
 * input and either its expected canonical print or an expected error
 * substring (with the expected return code). Every successful case is also
 * checked for print -> parse -> print being a fixed point.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promql.h"
#include "st_err.h"
#include "st_text.h"

typedef struct pcase {
    const char *in;
    const char *out; /* expected canonical print (NULL: same as input) */
} pcase_t;

typedef struct ecase {
    const char *in;
    const char *err; /* expected substring of the error message */
    int rc;          /* 0 means ST_EPARSE */
} ecase_t;

static const pcase_t ok_cases[] = {
    /* numbers */
    {"1", NULL},
    {"1.5", NULL},
    {".5", "0.5"},
    {"1e3", "1000"},
    {"1.5E-3", "0.0015"},
    {"0x1f", "31"},
    {"0X1F", "31"},
    {"Inf", NULL},
    {"inf", "Inf"},
    {"-Inf", NULL},
    {"NaN", NULL},
    {"nAn", "NaN"},
    {"+5", "5"},
    {"-5", "-5"},
    {"- 5", "-5"},
    {"--5", "5"},
    {"1e100", "1e+100"},
    {"123456789012", NULL},
    /* strings */
    {"\"foo\"", NULL},
    {"'foo'", "\"foo\""},
    {"`fo\\o`", "\"fo\\\\o\""},
    {"\"a\\nb\\tc\"", NULL},
    {"\"\\x41\\u00e9\"", "\"A\xc3\xa9\""},
    {"\"\\101\"", "\"A\""},
    {"'it\\'s'", "\"it's\""},
    {"\"q\\\"q\"", NULL},
    {"\"\"", NULL},
    /* selectors */
    {"foo", NULL},
    {"foo:bar_baz", NULL},
    {":a", NULL},
    {"foo{}", "foo"},
    {"foo{job=\"a\"}", NULL},
    {"foo{job!=\"a\"}", NULL},
    {"foo{job=~\"a.*\"}", NULL},
    {"foo{job!~\"a.*\"}", NULL},
    {"foo{ job = 'a' , env=\"p\", }", "foo{job=\"a\", env=\"p\"}"},
    {"{job=\"a\"}", NULL},
    {"{__name__=\"foo\"}", NULL},
    {"{\"quoted.metric\"}", "{__name__=\"quoted.metric\"}"},
    {"{\"quoted.metric\", \"my.label\"=\"v\"}", "{__name__=\"quoted.metric\", \"my.label\"=\"v\"}"},
    {"foo{\"my.label\"=\"v\"}", NULL},
    {"{job=~\".+\"}", NULL},
    {"{job=\"a\", x=\"\"}", NULL},
    {"foo{on=\"1\", by=\"2\", offset=\"3\"}", NULL},
    {"offset", NULL},
    {"bool", NULL},
    {"rate", NULL},
    {"foo # a comment\n", "foo"},
    {"# leading comment\nfoo", "foo"},
    /* MetricsQL or-groups */
    {"{job=\"a\", env=\"p\" or job=\"b\"}", NULL},
    {"foo{a=\"1\" or b=\"2\" or c=\"3\"}", NULL},
    {"{or=\"x\"}", NULL},
    {"{a=\"1\" or or=\"x\"}", NULL},
    {"{\"m1\" or \"m2\"}", "{__name__=\"m1\" or __name__=\"m2\"}"},
    /* ranges, offsets, @ */
    {"foo[5m]", NULL},
    {"foo[1ms]", NULL},
    {"foo[30s]", NULL},
    {"foo[90m]", "foo[1h30m]"},
    {"foo[1h30m]", NULL},
    {"foo[2d]", NULL},
    {"foo[1w]", NULL},
    {"foo[1y]", NULL},
    {"foo[1y2w3d4h5m6s7ms]", NULL},
    {"foo[300]", "foo[5m]"},
    {"foo[1.5]", "foo[1s500ms]"},
    {"foo{a=\"b\"}[5m]", NULL},
    {"foo offset 5m", NULL},
    {"foo offset -5m", NULL},
    {"foo offset 10", "foo offset 10s"},
    {"foo[5m] offset 1h", NULL},
    {"foo @ 1609746000", NULL},
    {"foo @ 1609746000.5", NULL},
    {"foo @ -100", NULL},
    {"foo @ start()", NULL},
    {"foo @ end()", NULL},
    {"foo offset 5m @ 100", "foo @ 100 offset 5m"},
    {"foo @ 100 offset 5m", NULL},
    {"foo[5m] @ end() offset 1m", NULL},
    {"foo OFFSET 5m", "foo offset 5m"},
    /* subqueries */
    {"foo[1h:5m]", NULL},
    {"foo[1h:]", NULL},
    {"rate(foo[5m])[1h:1m]", NULL},
    {"(a + b)[1h:]", NULL},
    {"foo[1h:5m] offset 10m", NULL},
    {"foo[1h:5m] @ 100", NULL},
    {"max_over_time(rate(foo[5m])[1h:])", NULL},
    {"sum(foo)[10m:1m]", NULL},
    /* binary operator precedence */
    {"1 + 2 * 3", "1 + (2 * 3)"},
    {"1 * 2 + 3", "(1 * 2) + 3"},
    {"1 - 2 - 3", "(1 - 2) - 3"},
    {"2 ^ 3 ^ 2", "2 ^ (3 ^ 2)"},
    {"-2 ^ 2", "-(2 ^ 2)"},
    {"-a ^ 2", "-(a ^ 2)"},
    {"-a * b", "-a * b"},
    {"2 ^ -1", NULL},
    {"a * b ^ c", "a * (b ^ c)"},
    {"a + b > c", "(a + b) > c"},
    {"a > b and c", "(a > b) and c"},
    {"a and b or c and d", "(a and b) or (c and d)"},
    {"a or b unless c", "a or (b unless c)"},
    {"a unless b and c", "(a unless b) and c"},
    {"a / b % c", "(a / b) % c"},
    {"a atan2 b * c", "(a atan2 b) * c"},
    {"a + b atan2 c", "a + (b atan2 c)"},
    {"(1 + 2) * 3", NULL},
    {"((a))", NULL},
    {"a == b", NULL},
    {"a != b", NULL},
    {"a <= b", NULL},
    {"a < b", NULL},
    {"a >= b", NULL},
    {"a > b", NULL},
    {"1 == bool 2", "1 == bool 2"},
    {"a > bool 1", NULL},
    {"a - -b", NULL},
    {"a+b", "a + b"},
    {"a AND b", "a and b"},
    {"a - 1", NULL},
    {"a-1", "a - 1"},
    {"a * on(x, y) b", NULL},
    {"a * on() b", NULL},
    {"a * ignoring(x) b", NULL},
    {"a * on(x) group_left b", "a * on(x) group_left() b"},
    {"a * on(x) group_left(y, z) b", NULL},
    {"a / ignoring(x) group_right(y) b", NULL},
    {"a > bool on(x) group_left(y) b", NULL},
    {"a and on(x) b", NULL},
    {"a or ignoring(x) b", NULL},
    {"a + on(\"x.y\") b", NULL},
    /* aggregations */
    {"sum(foo)", NULL},
    {"sum by (job) (foo)", NULL},
    {"sum(foo) by (job)", "sum by (job) (foo)"},
    {"sum without (job, env) (foo)", NULL},
    {"sum(foo) without (job)", "sum without (job) (foo)"},
    {"sum by () (foo)", NULL},
    {"SUM BY (job) (foo)", "sum by (job) (foo)"},
    {"avg(foo)", NULL},
    {"min(foo)", NULL},
    {"max(foo)", NULL},
    {"count(foo)", NULL},
    {"group(foo)", NULL},
    {"stddev(foo)", NULL},
    {"stdvar(foo)", NULL},
    {"topk(5, foo)", NULL},
    {"bottomk(5, foo)", NULL},
    {"quantile(0.9, foo)", NULL},
    {"count_values(\"label\", foo)", NULL},
    {"limitk(2, foo)", NULL},
    {"topk by (job) (3, rate(foo[5m]))", NULL},
    {"sum by (job, \"a.b\") (foo)", NULL},
    {"sum(rate(foo[5m])) by (job) / sum(rate(bar[5m])) by (job)",
     "sum by (job) (rate(foo[5m])) / sum by (job) (rate(bar[5m]))"},
    {"sum by (on, by) (foo)", NULL},
    {"sum(a + b)", NULL},
    {"-sum(foo)", NULL},
    /* functions */
    {"rate(foo[5m])", NULL},
    {"irate(foo[5m])", NULL},
    {"increase(foo[1h])", NULL},
    {"delta(foo[5m])", NULL},
    {"idelta(foo[5m])", NULL},
    {"deriv(foo[5m])", NULL},
    {"predict_linear(foo[1h], 3600)", NULL},
    {"resets(foo[5m])", NULL},
    {"changes(foo[5m])", NULL},
    {"avg_over_time(foo[5m])", NULL},
    {"min_over_time(foo[5m])", NULL},
    {"max_over_time(foo[5m])", NULL},
    {"sum_over_time(foo[5m])", NULL},
    {"count_over_time(foo[5m])", NULL},
    {"quantile_over_time(0.5, foo[5m])", NULL},
    {"stddev_over_time(foo[5m])", NULL},
    {"stdvar_over_time(foo[5m])", NULL},
    {"last_over_time(foo[5m])", NULL},
    {"present_over_time(foo[5m])", NULL},
    {"absent_over_time(foo[5m])", NULL},
    {"histogram_quantile(0.9, sum by (le) (rate(foo_bucket[5m])))", NULL},
    {"abs(foo)", NULL},
    {"ceil(foo)", NULL},
    {"floor(foo)", NULL},
    {"round(foo)", NULL},
    {"round(foo, 0.5)", NULL},
    {"clamp(foo, 0, 1)", NULL},
    {"clamp_min(foo, 0)", NULL},
    {"clamp_max(foo, 1)", NULL},
    {"exp(foo)", NULL},
    {"ln(foo)", NULL},
    {"log2(foo)", NULL},
    {"log10(foo)", NULL},
    {"sqrt(foo)", NULL},
    {"sgn(foo)", NULL},
    {"label_replace(foo, \"dst\", \"$1\", \"src\", \"(.*)\")", NULL},
    {"label_join(foo, \"dst\", \",\", \"a\", \"b\", \"c\")", NULL},
    {"label_join(foo, \"dst\", \",\")", NULL},
    {"time()", NULL},
    {"timestamp(foo)", NULL},
    {"vector(1)", NULL},
    {"scalar(foo)", NULL},
    {"sort(foo)", NULL},
    {"sort_desc(foo)", NULL},
    {"absent(foo)", NULL},
    {"day_of_month()", NULL},
    {"day_of_week(foo)", NULL},
    {"day_of_year()", NULL},
    {"days_in_month()", NULL},
    {"hour()", NULL},
    {"minute(foo)", NULL},
    {"month()", NULL},
    {"year(foo)", NULL},
    {"time() - timestamp(foo)", NULL},
    {"scalar(foo) * 2", NULL},
    {"vector(time()) > bool 1", NULL},
    {"abs(-foo)", NULL},
    /* MetricsQL: window omitted, keep_metric_names */
    {"rate(foo)", NULL},
    {"rate(foo{a=\"b\"} offset 5m)", NULL},
    {"quantile_over_time(0.9, foo)", NULL},
    {"rate(foo[5m]) keep_metric_names", NULL},
    {"abs(foo) keep_metric_names + 1", NULL},
    /* multi-line */
    {"sum(\n  rate(foo[5m])\n)", "sum(rate(foo[5m]))"},
};

static const ecase_t err_cases[] = {
    {"", "no expression found", 0},
    {"   # only a comment", "no expression found", 0},
    {"1 +", "1:4: parse error: unexpected end of input", 0},
    {"foo * * bar", "1:7: parse error: unexpected <op:*>", 0},
    {"foo{", "unexpected end of input inside braces", 0},
    {"foo{a=}", "expected string", 0},
    {"foo{a=\"b\" c=\"d\"}", "expected \",\" or \"}\"", 0},
    {"foo{a}", "expected label matching operator", 0},
    {"foo{a:b=\"x\"}", "unexpected \":\"", 0},
    {"{}", "vector selector must contain at least one non-empty matcher", 0},
    {"{a=\"\"}", "vector selector must contain at least one non-empty matcher", 0},
    {"{a=~\".*\"}", "vector selector must contain at least one non-empty matcher", 0},
    {"{a!=\"x\"}", "vector selector must contain at least one non-empty matcher", 0},
    {"{a=\"b\" or c=\"\"}", "at least one non-empty matcher", 0},
    {"{a=\"b\" or}", "empty matcher set", 0},
    {"foo{__name__=\"bar\"}", "metric name must not be set twice", 0},
    {"\"abc", "unterminated quoted string", 0},
    {"\"a\\qb\"", "unknown escape sequence", 0},
    {"\"\\xZZ\"", "invalid \\x escape", 0},
    {"1.5h", "bad number or duration syntax", 0},
    {"0x", "bad number or duration syntax", 0},
    {"1e", "bad number or duration syntax", 0},
    {"12abc", "bad number or duration syntax", 0},
    {"5m", "unexpected duration 5m", 0},
    {"foo[5m", "expected \"]\"", 0},
    {"foo[]", "unexpected \"]\" in range", 0},
    {"foo[0s]", "range must be greater than 0", 0},
    {"foo[5m:0s]", "subquery step must be greater than 0", 0},
    {"foo[1m1h]", "bad number or duration syntax", 0},
    {"foo[5x]", "bad number or duration syntax", 0},
    {"(foo)[5m]", "ranges only allowed for vector selectors", 0},
    {"rate(foo[5m])[5m]", "ranges only allowed for vector selectors", 0},
    {"foo offset 5m[5m]", "no offset modifiers allowed before range", 0},
    {"foo @ 1[5m]", "no @ modifiers allowed before range", 0},
    {"foo offset 5m offset 1m", "offset may not be set multiple times", 0},
    {"foo @ 1 @ 2", "may not be set multiple times", 0},
    {"sum(foo) offset 5m", "offset modifier must be preceded by", 0},
    {"1 @ 5", "@ modifier must be preceded by", 0},
    {"foo @ bar", "in @ modifier", 0},
    {"foo @ Inf", "timestamp out of bounds", 0},
    {"foo offset", "in offset, expected duration", 0},
    {"foo[5m][10m:]", "subquery is only allowed on instant vector, got range vector", 0},
    {"\"a\"[5m:]", "subquery is only allowed on instant vector, got string", 0},
    {"abs(foo[5m])",
     "1:5: parse error: expected type instant vector in call to function \"abs\", got range "
     "vector",
     0},
    {"rate(1)", "expected type range vector in call to function \"rate\", got scalar", 0},
    {"rate((foo))", "expected type range vector in call to function \"rate\", got instant vector",
     0},
    {"abs(\"x\")", "expected type instant vector in call to function \"abs\", got string", 0},
    {"label_replace(foo, 1, \"a\", \"b\", \"c\")",
     "expected type string in call to function \"label_replace\", got scalar", 0},
    {"abs()", "expected 1 argument(s) in call to \"abs\", got 0", 0},
    {"abs(a, b)", "expected 1 argument(s) in call to \"abs\", got 2", 0},
    {"round(a, 1, 2)", "expected at most 2 argument(s) in call to \"round\", got 3", 0},
    {"label_join(foo, \"a\")", "expected at least 3 argument(s) in call to \"label_join\"", 0},
    {"time(1)", "expected 0 argument(s) in call to \"time\", got 1", 0},
    {"nosuchfunc(foo)", "unknown function with name \"nosuchfunc\"", 0},
    {"abs(foo", "unexpected end of input in function call", 0},
    {"sum(foo[5m])", "expected type instant vector in aggregation expression, got range vector", 0},
    {"topk(foo)", "wrong number of arguments for aggregate expression provided, expected 2, got 1",
     0},
    {"sum(1, foo)", "expected 1, got 2", 0},
    {"topk(\"a\", foo)", "expected type scalar in aggregation parameter, got string", 0},
    {"count_values(1, foo)", "expected type string in aggregation parameter, got scalar", 0},
    {"sum by (a) (foo) by (b)", "unexpected identifier by", 0},
    {"sum by foo", "in grouping opts, expected \"(\"", 0},
    {"sum by (a b) (foo)", "expected \",\" or \")\"", 0},
    {"sum", "unexpected end of input in aggregation", 0},
    {"1 > 2", "comparisons between scalars must use BOOL modifier", 0},
    {"a + bool b", "bool modifier can only be used on comparison operators", 0},
    {"\"a\" + \"b\"", "binary expression must contain only scalar and instant vector types", 0},
    {"foo[5m] + 1", "binary expression must contain only scalar and instant vector types", 0},
    {"1 + on(x) foo", "vector matching only allowed between instant vectors", 0},
    {"1 and foo", "set operator \"and\" not allowed in binary scalar expression", 0},
    {"a and on(x) group_left b", "no grouping allowed for \"and\" operation", 0},
    {"a * on(x) group_left(x) b", "label \"x\" must not occur in ON and GROUP clause at once", 0},
    {"a * group_left b", "unexpected identifier b", 0},
    {"a * on b", "in vector matching, expected \"(\"", 0},
    {"-\"a\"", "unary expression only allowed on expressions of type scalar or instant vector", 0},
    {"-foo[5m]", "unary expression only allowed", 0},
    {"(1 + 2", "unexpected end of input in paren expression", 0},
    {"1 + 2)", "unexpected \")\"", 0},
    {"and", "unexpected identifier and", 0},
    {"foo bar", "1:5: parse error: unexpected identifier bar", 0},
    {"a !b", "unexpected character after '!'", 0},
    {"foo $", "unexpected character: '$'", 0},
    {"foo\n  + * 2", "2:5: parse error: unexpected <op:*>", 0},
    {"rate(foo[5m]) keep_metric_names keep_metric_names", "unexpected identifier", 0},
};

static char *fmt_node(const promql_node_t *n)
{
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(promql_format(n, &b), 0);
    assert_int_equal(st_buf_put_u8(&b, 0), 0);
    return (char *)b.data;
}

static int check_ok(const pcase_t *c)
{
    char err[256];
    promql_expr_t *e = NULL;
    int rc = promql_parse(c->in, strlen(c->in), &e, err, sizeof err);
    if (rc != 0) {
        print_error("parse of '%s' failed: %s\n", c->in, err);
        return 1;
    }
    char *out = fmt_node(promql_root(e));
    const char *want = c->out ? c->out : c->in;
    if (strcmp(out, want) != 0) {
        print_error("'%s': printed '%s', want '%s'\n", c->in, out, want);
        return 1;
    }
    promql_expr_t *e2 = NULL;
    rc = promql_parse(out, strlen(out), &e2, err, sizeof err);
    if (rc != 0) {
        print_error("reparse of '%s' failed: %s\n", out, err);
        return 1;
    }
    char *out2 = fmt_node(promql_root(e2));
    if (strcmp(out, out2) != 0) {
        print_error("'%s': not a fixed point: '%s' -> '%s'\n", c->in, out, out2);
        return 1;
    }
    free(out);
    free(out2);
    promql_free(e);
    promql_free(e2);
    return 0;
}

static int check_err(const ecase_t *c)
{
    char err[256];
    promql_expr_t *e = NULL;
    int rc = promql_parse(c->in, strlen(c->in), &e, err, sizeof err);
    if (rc == 0) {
        char *out = fmt_node(promql_root(e));
        promql_free(e);
        {
            print_error("'%s' parsed as '%s', want error '%s'\n", c->in, out, c->err);
            return 1;
        }
    }
    assert_null(e);
    if (rc != (c->rc ? c->rc : ST_EPARSE)) {
        print_error("'%s': rc %d (%s), want %d\n", c->in, rc, err, c->rc ? c->rc : ST_EPARSE);
        return 1;
    }
    if (!strstr(err, c->err)) {
        print_error("'%s': error '%s' does not contain '%s'\n", c->in, err, c->err);
        return 1;
    }
    return 0;
}

static void test_ok_cases(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++)
        bad += check_ok(&ok_cases[i]);
    assert_int_equal(bad, 0);
}

static void test_err_cases(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++)
        bad += check_err(&err_cases[i]);
    assert_int_equal(bad, 0);
}

static const promql_node_t *parse_root(const char *q, promql_expr_t **e)
{
    char err[256];
    int rc = promql_parse(q, strlen(q), e, err, sizeof err);
    if (rc)
        fail_msg("parse of '%s' failed: %s", q, err);
    return promql_root(*e);
}

static void test_ast_shape(void **state)
{
    (void)state;
    promql_expr_t *e;
    const promql_node_t *n =
        parse_root("sum by (job) (rate(http{code=~\"5..\", \"a.b\"=\"v\"}[5m] offset -1m))", &e);
    assert_int_equal(n->kind, PROMQL_AGGREGATE);
    assert_int_equal(n->type, PROMQL_TYPE_VECTOR);
    assert_int_equal(n->u.agg.op, PROMQL_AGG_SUM);
    assert_int_equal(n->u.agg.grouping, PROMQL_GROUP_BY);
    assert_int_equal(n->u.agg.labels.n, 1);
    assert_string_equal(n->u.agg.labels.names[0], "job");
    const promql_node_t *c = n->u.agg.expr;
    assert_int_equal(c->kind, PROMQL_CALL);
    assert_string_equal(c->u.call.name, "rate");
    assert_non_null(c->u.call.func);
    assert_int_equal(c->u.call.nargs, 1);
    const promql_node_t *m = c->u.call.args[0];
    assert_int_equal(m->kind, PROMQL_MATRIX_SELECTOR);
    assert_int_equal(m->u.ms.range_ms, 300000);
    assert_int_equal(m->u.ms.window_omitted, 0);
    const promql_node_t *vs = m->u.ms.vs;
    assert_string_equal(vs->u.vs.name, "http");
    assert_int_equal(vs->u.vs.nsets, 1);
    assert_int_equal(vs->u.vs.sets[0].n, 2);
    assert_int_equal(vs->u.vs.sets[0].m[0].type, ST_MATCH_RE);
    assert_string_equal(vs->u.vs.sets[0].m[0].name, "code");
    assert_string_equal(vs->u.vs.sets[0].m[0].value, "5..");
    assert_string_equal(vs->u.vs.sets[0].m[1].name, "a.b");
    assert_int_equal(vs->u.vs.has_offset, 1);
    assert_int_equal(vs->u.vs.offset_ms, -60000);
    promql_free(e);

    n = parse_root("a / on(x) group_left(y) b @ start()", &e);
    assert_int_equal(n->kind, PROMQL_BINARY);
    assert_int_equal(n->u.bin.op, PROMQL_OP_DIV);
    assert_int_equal(n->u.bin.card, PROMQL_CARD_MANY_TO_ONE);
    assert_int_equal(n->u.bin.on, 1);
    assert_string_equal(n->u.bin.include.names[0], "y");
    assert_int_equal(n->u.bin.rhs->u.vs.at.kind, PROMQL_AT_START);
    promql_free(e);

    n = parse_root("a or b", &e);
    assert_int_equal(n->u.bin.card, PROMQL_CARD_MANY_TO_MANY);
    promql_free(e);

    n = parse_root("rate(m) keep_metric_names", &e);
    assert_int_equal(n->u.call.keep_metric_names, 1);
    assert_int_equal(n->u.call.args[0]->kind, PROMQL_MATRIX_SELECTOR);
    assert_int_equal(n->u.call.args[0]->u.ms.window_omitted, 1);
    promql_free(e);

    n = parse_root("foo[1h:] @ 5", &e);
    assert_int_equal(n->kind, PROMQL_SUBQUERY);
    assert_int_equal(n->u.sq.range_ms, 3600000);
    assert_int_equal(n->u.sq.step_ms, 0);
    assert_int_equal(n->u.sq.at.kind, PROMQL_AT_TS);
    assert_true(n->u.sq.at.ts == 5.0);
    promql_free(e);

    n = parse_root("\"a\\x00b\"", &e);
    assert_int_equal(n->kind, PROMQL_STRING);
    assert_int_equal(n->u.str.len, 3);
    assert_memory_equal(n->u.str.s, "a\0b", 3);
    promql_free(e);

    n = parse_root("{a=\"1\" or b=\"2\"}", &e);
    assert_null(n->u.vs.name);
    assert_int_equal(n->u.vs.nsets, 2);
    promql_free(e);
}

static void test_lax_funcs(void **state)
{
    (void)state;
    promql_expr_t *e;
    char err[128];
    assert_int_equal(
        promql_parse_ex("my_func(foo, 1)", 15, PROMQL_F_LAX_FUNCS, &e, err, sizeof err), 0);
    assert_null(promql_root(e)->u.call.func);
    promql_free(e);
    assert_int_equal(promql_parse("my_func(foo, 1)", 15, &e, err, sizeof err), ST_EPARSE);
}

static void test_limits(void **state)
{
    (void)state;
    char err[256];
    promql_expr_t *e = NULL;
    size_t n = PROMQL_MAX_LEN + 1;
    char *q = malloc(n);
    memset(q, ' ', n);
    q[0] = '1';
    assert_int_equal(promql_parse(q, n, &e, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "longer than"));

    /* 300 nested parens: recursion limit */
    size_t k = 0;
    for (int i = 0; i < 300; i++)
        q[k++] = '(';
    q[k++] = '1';
    for (int i = 0; i < 300; i++)
        q[k++] = ')';
    assert_int_equal(promql_parse(q, k, &e, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "nested too deeply"));

    /* 200 nested parens are fine */
    k = 0;
    for (int i = 0; i < 200; i++)
        q[k++] = '(';
    q[k++] = '1';
    for (int i = 0; i < 200; i++)
        q[k++] = ')';
    assert_int_equal(promql_parse(q, k, &e, err, sizeof err), 0);
    promql_free(e);

    /* a long left-associative chain: tree depth limit */
    k = 0;
    q[k++] = 'a';
    for (int i = 0; i < 2000; i++) {
        q[k++] = '+';
        q[k++] = 'a';
    }
    assert_int_equal(promql_parse(q, k, &e, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "nested too deeply"));

    /* unary chain */
    k = 0;
    for (int i = 0; i < 1000; i++)
        q[k++] = '-';
    q[k++] = 'a';
    assert_int_equal(promql_parse(q, k, &e, err, sizeof err), ST_ELIMIT);
    free(q);
}

static void test_helpers(void **state)
{
    (void)state;
    assert_string_equal(promql_type_name(PROMQL_TYPE_MATRIX), "range vector");
    assert_string_equal(promql_binop_str(PROMQL_OP_UNLESS), "unless");
    assert_string_equal(promql_aggop_str(PROMQL_AGG_COUNT_VALUES), "count_values");
    const promql_func_t *f = promql_func_lookup("histogram_quantile", 18);
    assert_non_null(f);
    assert_int_equal(f->nargs, 2);
    assert_null(promql_func_lookup("histogram_quantil", 17));
    assert_null(promql_func_lookup("zzz", 3));
    /* every table entry is findable (table sorted) */
    const char *names[] = {"abs", "year", "rate", "label_join", "sort_desc", "vector", "time"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_non_null(promql_func_lookup(names[i], strlen(names[i])));
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(st_fmt_duration(&b, 93784005), 0);
    assert_memory_equal(b.data, "1d2h3m4s5ms", 11);
    st_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_cases),  cmocka_unit_test(test_err_cases),
        cmocka_unit_test(test_ast_shape), cmocka_unit_test(test_lax_funcs),
        cmocka_unit_test(test_limits),    cmocka_unit_test(test_helpers),
    };
    printf("promql: %zu parse cases, %zu error cases\n", sizeof ok_cases / sizeof ok_cases[0],
           sizeof err_cases / sizeof err_cases[0]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
