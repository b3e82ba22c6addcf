/* test_topo_security — cluster.ini [security] users_file and metrics_auth:
 * parsed, defaulted, checked, and kept out of the fingerprint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "st_err.h"
#include "topo.h"

#define BASE                                                                                       \
    "[cluster]\nshards = 2\nreplication_factor = 1\n"                                              \
    "[node \"a\"]\nrpc = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n"

static void test_security(void **state)
{
    (void)state;
    char err[300];
    topo_t *open, *t;
    assert_int_equal(topo_load_string(BASE, "t.ini", &open, err, sizeof err), 0);
    assert_null(topo_security(open)->users_file);
    assert_int_equal(topo_security(open)->metrics_auth, 1);
    assert_int_equal(topo_load_string(BASE "[security]\nusers_file = /etc/strata/users\n"
                                           "metrics_auth = off\n",
                                      "t.ini", &t, err, sizeof err),
                     0);
    assert_string_equal(topo_security(t)->users_file, "/etc/strata/users");
    assert_int_equal(topo_security(t)->metrics_auth, 0);
    assert_int_equal(topo_fingerprint(t), topo_fingerprint(open));
    topo_destroy(t);
    topo_destroy(open);
    assert_int_equal(
        topo_load_string(BASE "[security]\nmetrics_auth = maybe\n", "t.ini", &t, err, sizeof err),
        ST_ECONFIG);
    assert_non_null(strstr(err, "t.ini:8: bad value 'maybe' for metrics_auth"));
    assert_int_equal(
        topo_load_string(BASE "[security]\nusers_file =\n", "t.ini", &t, err, sizeof err),
        ST_ECONFIG);
    assert_int_equal(topo_load_string(BASE "[security]\nusers = x\n", "t.ini", &t, err, sizeof err),
                     ST_ECONFIG);
    assert_non_null(strstr(err, "unknown key 'users' in [security]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_security)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
