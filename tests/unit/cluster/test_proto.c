/* Unit test for proto/: the generated protobuf-c code round-trips a write request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strata.pb-c.h"

static void test_write_request_roundtrip(void **state)
{
    Strata__Label l[2] = {STRATA__LABEL__INIT, STRATA__LABEL__INIT};
    l[0].name = (ProtobufCBinaryData){8, (uint8_t *)"__name__"};
    l[0].value = (ProtobufCBinaryData){3, (uint8_t *)"cpu"};
    l[1].name = (ProtobufCBinaryData){4, (uint8_t *)"host"};
    l[1].value = (ProtobufCBinaryData){2, (uint8_t *)"h1"};
    Strata__Label *lp[2] = {&l[0], &l[1]};
    int64_t ts[3] = {1000, 2000, -3000};
    double v[3] = {1.5, -0.0, 1e300};
    Strata__SeriesSamples s = STRATA__SERIES_SAMPLES__INIT;
    s.n_labels = 2;
    s.labels = lp;
    s.n_timestamps = 3;
    s.timestamps = ts;
    s.n_values = 3;
    s.values = v;
    Strata__SeriesSamples *sp = &s;
    Strata__WriteRequest req = STRATA__WRITE_REQUEST__INIT;
    req.shard = 7;
    req.n_series = 1;
    req.series = &sp;
    size_t len = strata__write_request__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    assert_int_equal(strata__write_request__pack(&req, buf), len);
    Strata__WriteRequest *out = strata__write_request__unpack(NULL, len, buf);
    assert_non_null(out);
    assert_int_equal(out->shard, 7);
    assert_int_equal(out->n_series, 1);
    assert_int_equal(out->series[0]->n_timestamps, 3);
    assert_memory_equal(out->series[0]->timestamps, ts, sizeof ts);
    assert_memory_equal(out->series[0]->values, v, sizeof v);
    assert_memory_equal(out->series[0]->labels[1]->value.data, "h1", 2);
    strata__write_request__free_unpacked(out, NULL);
    /* garbage does not decode */
    uint8_t junk[4] = {0x0a, 0xff, 0xff, 0xff};
    assert_null(strata__write_request__unpack(NULL, sizeof junk, junk));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_write_request_roundtrip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
