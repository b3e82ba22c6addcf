/*
 * test_idx_regex — label regexes under PCRE2 limits (idx_match.c, issue
 * 11): a nested quantifier such as (a+)+$ or ((a+)+)+$ against 40-character
 * values ends the selection with ST_ELIMIT and a message naming the match
 * limit (first value over it: no scan of the rest), for =~ and !~ and
 * whichever way the matcher is applied; sane patterns still select.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "idx.h"
#include "st_err.h"
#include "st_labels.h"

#define NSER 2000

static idx_t *build(char *dir)
{
    assert_non_null(mkdtemp(dir));
    idx_t *x;
    assert_int_equal(idx_open(dir, &x), 0);
    char v[64], h[16];
    for (int i = 0; i < NSER; i++) {
        snprintf(v, sizeof v, "%s%04d", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", i);
        snprintf(h, sizeof h, "h%d", i % 10);
        st_label_t l[3] = {{"__name__", "cv_v", 8, 4},
                           {"h", h, 1, (uint32_t)strlen(h)},
                           {"s", v, 1, (uint32_t)strlen(v)}};
        st_labels_sort(l, 3);
        uint32_t id;
        assert_int_equal(idx_add(x, l, 3, st_labels_hash(l, 3), &id), 0);
    }
    return x;
}

static void rm_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int sel(idx_t *x, st_match_type_t t, const char *re, const char *h, size_t *n,
               const char **why)
{
    st_matcher_t m[3] = {{ST_MATCH_EQ, "__name__", "cv_v"}, {t, "s", re}, {ST_MATCH_EQ, "h", h}};
    uint32_t *ids = NULL;
    int rc = idx_select(x, m, h ? 3 : 2, &ids, n, why);
    free(ids);
    return rc;
}

static void test_nested_quantifiers(void **state)
{
    (void)state;
    char dir[] = "/tmp/strata-idx-regex-XXXXXX";
    idx_t *x = build(dir);
    static const char *const bad[] = {"(a+)+$", "((a+)+)+$", "(a|aa)+$"};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
        for (int neg = 0; neg < 2; neg++)
            for (int narrow = 0; narrow < 2; narrow++) {
                size_t n = 0;
                const char *why = NULL;
                /* narrow: a candidate set small enough that the regex is
                 * tested on the candidates' own values */
                int rc = sel(x, neg ? ST_MATCH_NRE : ST_MATCH_RE, bad[b], narrow ? "h1" : NULL, &n,
                             &why);
                if (rc == 0) /* JIT may finish these fast: then nothing matches */
                    assert_int_equal(n, neg ? (narrow ? NSER / 10 : NSER) : 0);
                else {
                    assert_int_equal(rc, ST_ELIMIT);
                    assert_non_null(why);
                    assert_non_null(strstr(why, "exceeded its match limit"));
                }
            }
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(sel(x, ST_MATCH_RE, "a+00[0-9]+", NULL, &n, &why), 0);
    assert_int_equal(n, 100);
    assert_int_equal(sel(x, ST_MATCH_RE, "a{36}0001", NULL, &n, &why), 0);
    assert_int_equal(n, 1);
    idx_close(x);
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_nested_quantifiers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
