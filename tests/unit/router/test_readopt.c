/* Unit tests for router/readopt: read_consistency / partial_response and
 * durations, as every read front door parses them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "readopt.h"
#include "topo.h"

#define NODES3                                                                                     \
    "[node \"n1\"]\nrpc = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n"                                 \
    "[node \"n2\"]\nrpc = 127.0.0.1:7002\nhttp = 127.0.0.1:8002\n"                                 \
    "[node \"n3\"]\nrpc = 127.0.0.1:7003\nhttp = 127.0.0.1:8003\n"

static topo_t *load(const char *ini)
{
    topo_t *t;
    char err[256];
    assert_int_equal(topo_load_string(ini, NULL, &t, err, sizeof err), 0);
    return t;
}

static void test_consistency(void **state)
{
    (void)state;
    topo_t *t = load("[cluster]\nshards = 4\nreplication_factor = 3\n" NODES3);
    int need = -1, partial = -1;
    char msg[200] = "";
    assert_int_equal(readopt_parse(t, NULL, NULL, &need, &partial, msg, sizeof msg), 0);
    assert_int_equal(need, 1); /* cluster default: one */
    assert_int_equal(partial, 0);
    assert_int_equal(readopt_parse(t, "", "", &need, &partial, msg, sizeof msg), 0);
    assert_int_equal(need, 1);
    assert_int_equal(readopt_parse(t, "quorum", "1", &need, &partial, msg, sizeof msg), 0);
    assert_int_equal(need, 2);
    assert_int_equal(partial, 1);
    assert_int_equal(readopt_parse(t, "one", "true", &need, &partial, msg, sizeof msg), 0);
    assert_int_equal(need, 1);
    assert_int_equal(partial, 1);
    assert_int_equal(readopt_parse(t, "one", "yes", &need, &partial, msg, sizeof msg), 0);
    assert_int_equal(partial, 0);
    assert_int_equal(readopt_parse(t, "all", NULL, &need, &partial, msg, sizeof msg), -1);
    assert_string_equal(msg, "invalid parameter \"read_consistency\": \"all\" (one, quorum)");
    topo_destroy(t);

    /* the cluster's default read_consistency applies when none is given */
    t = load("[cluster]\nshards = 4\nreplication_factor = 3\nread_consistency = quorum\n" NODES3);
    assert_int_equal(readopt_parse(t, NULL, NULL, &need, &partial, msg, sizeof msg), 0);
    assert_int_equal(need, 2);
    assert_int_equal(readopt_parse(t, "one", NULL, &need, &partial, msg, sizeof msg), 0);
    assert_int_equal(need, 1);
    topo_destroy(t);
}

static void test_duration(void **state)
{
    (void)state;
    assert_int_equal(readopt_duration_ms("15"), 15000);
    assert_int_equal(readopt_duration_ms("0.25"), 250);
    assert_int_equal(readopt_duration_ms("15s"), 15000);
    assert_int_equal(readopt_duration_ms("250ms"), 250);
    assert_int_equal(readopt_duration_ms("1m30s"), 90000);
    assert_int_equal(readopt_duration_ms("2h"), 7200000);
    assert_int_equal(readopt_duration_ms("1d"), 86400000);
    assert_int_equal(readopt_duration_ms("1w"), 604800000);
    assert_int_equal(readopt_duration_ms("1y"), 31536000000LL);
    assert_int_equal(readopt_duration_ms(""), -1);
    assert_int_equal(readopt_duration_ms("s"), -1);
    assert_int_equal(readopt_duration_ms("5x"), -1);
    assert_int_equal(readopt_duration_ms("-5s"), -1);
    assert_int_equal(readopt_duration_ms("inf"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consistency),
        cmocka_unit_test(test_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
