/* Unit tests for st_hlc: versions increase strictly, follow the wall clock,
 * survive a clock step back and a counter wrap, and exceed observed ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "st_hlc.h"

static void test_follows_wall_clock(void **state)
{
    (void)state;
    st_hlc_t c;
    st_hlc_init(&c);
    uint64_t a = st_hlc_next(&c, 1000);
    assert_int_equal(a, st_hlc_make(1000, 0));
    assert_int_equal(st_hlc_ms(a), 1000);
    uint64_t b = st_hlc_next(&c, 1000); /* same ms: the counter orders them */
    assert_int_equal(b, st_hlc_make(1000, 1));
    uint64_t d = st_hlc_next(&c, 2000);
    assert_int_equal(d, st_hlc_make(2000, 0));
}

static void test_clock_step_back(void **state)
{
    (void)state;
    st_hlc_t c;
    st_hlc_init(&c);
    uint64_t a = st_hlc_next(&c, 5000);
    uint64_t b = st_hlc_next(&c, 4000); /* the wall clock went back */
    assert_true(b > a);
    assert_int_equal(st_hlc_ms(b), 5000);
}

static void test_counter_wrap(void **state)
{
    (void)state;
    st_hlc_t c;
    st_hlc_init(&c);
    uint64_t prev = 0;
    for (int i = 0; i < 70000; i++) { /* more than 2^16 in one ms */
        uint64_t v = st_hlc_next(&c, 7);
        assert_true(v > prev);
        prev = v;
    }
    assert_true(st_hlc_ms(prev) > 7);
}

static void test_observe(void **state)
{
    (void)state;
    st_hlc_t c;
    st_hlc_init(&c);
    uint64_t remote = st_hlc_make(90000, 5); /* a peer whose clock is ahead */
    st_hlc_observe(&c, remote);
    uint64_t v = st_hlc_next(&c, 1000);
    assert_true(v > remote);
    st_hlc_observe(&c, 1); /* lower: no effect */
    assert_true(st_hlc_next(&c, 1000) > v);
    assert_true(st_hlc_next(&c, 0) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follows_wall_clock),
        cmocka_unit_test(test_clock_step_back),
        cmocka_unit_test(test_counter_wrap),
        cmocka_unit_test(test_observe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
