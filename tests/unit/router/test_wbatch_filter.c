/* test_wbatch_filter — wbatch_set_filter: a line or an item with a series
 * the filter refuses is rejected whole and counted as forbidden (a
 * confined user's writes, router_write.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lp.h"
#include "st_labels.h"
#include "topo.h"
#include "wbatch.h"

/* Accept series whose team label is "a"; every label set the filter sees
 * is whole: sorted by name, __name__ among them. */
static int team_a(void *arg, const st_label_t *l, size_t n)
{
    (void)arg;
    for (size_t i = 1; i < n; i++) {
        size_t m = l[i - 1].name_len < l[i].name_len ? l[i - 1].name_len : l[i].name_len;
        int c = memcmp(l[i - 1].name, l[i].name, m);
        assert_true(c < 0 || (c == 0 && l[i - 1].name_len < l[i].name_len));
    }
    assert_true(st_labels_find(l, n, ST_METRIC_LABEL) >= 0);
    int k = st_labels_find(l, n, "team");
    return k >= 0 && l[k].value_len == 1 && l[k].value[0] == 'a';
}

static void check_filter(int names_only)
{
    char err[256];
    topo_t *t;
    assert_int_equal(topo_load_string("[cluster]\nshards = 2\nreplication_factor = 1\n"
                                      "[node \"a\"]\nrpc = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n",
                                      NULL, &t, err, sizeof err),
                     0);
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_filter(b, team_a, NULL, "outside");
    lp_opts_t o = {.series = 1, .names_only = names_only};
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(&o, &p), 0);
    const char *body =
        "m,team=a,A=x v=1 1000000000\nm,A=x,team=b v=2,w=3 1000000000\nm v=4 1000000000\n";
    assert_int_equal(wbatch_parse(b, p, body, strlen(body)), 0);
    lp_parser_destroy(p);
    assert_int_equal(wbatch_lines_ok(b), 1);
    assert_int_equal(wbatch_lines_bad(b), 2);
    assert_int_equal(wbatch_lines_forbidden(b), 2);
    size_t nr;
    const wbatch_rejected_t *rej = wbatch_rejected(b, &nr);
    assert_int_equal(nr, 2);
    assert_int_equal(rej[0].line, 2);
    assert_string_equal(rej[0].reason, "outside");
    wbatch_destroy(b);
    /* series handed over one by one (another format: no parse) */
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_filter(b, team_a, NULL, "outside");
    st_label_t ok[2] = {{"__name__", "x", 8, 1}, {"team", "a", 4, 1}};
    st_label_t no[2] = {{"__name__", "x", 8, 1}, {"team", "c", 4, 1}};
    int64_t ts = 1000;
    double v = 1;
    assert_int_equal(wbatch_add_series(b, 7, ok, 2, &ts, &v, 1), 0);
    assert_int_equal(wbatch_add_series(b, 8, no, 2, &ts, &v, 1), 0);
    assert_int_equal(wbatch_lines_ok(b), 1);
    assert_int_equal(wbatch_lines_forbidden(b), 1);
    assert_int_equal(wbatch_finish(b), 0);
    size_t ns;
    wbatch_shards(b, &ns);
    assert_true(ns >= 1);
    wbatch_destroy(b);
    topo_destroy(t);
}

static void test_filter(void **state)
{
    (void)state;
    check_filter(0);
}

/* The router's parser mode: the filter gets label sets built from the tags. */
static void test_filter_names_only(void **state)
{
    (void)state;
    check_filter(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_filter),
                                       cmocka_unit_test(test_filter_names_only)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
