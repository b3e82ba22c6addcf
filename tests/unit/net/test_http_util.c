/* Unit tests for common/net/http_util: query strings, headers, times, gzip
 * (JSON escaping is base's st_text: tests/unit/base/test_text.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "http_util.h"
#include "st_buf.h"
#include "st_err.h"

static void test_pct_decode(void **state)
{
    (void)state;
    char out[64];
    long n = http_pct_decode(out, "a%20b+c%2Bd%7e", 14, 1);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a b c+d~", 8);
    n = http_pct_decode(out, "a+b", 3, 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "a+b", 3);
    assert_int_equal(http_pct_decode(out, "%", 1, 1), ST_EPARSE);
    assert_int_equal(http_pct_decode(out, "%4", 2, 1), ST_EPARSE);
    assert_int_equal(http_pct_decode(out, "%zz", 3, 1), ST_EPARSE);
    assert_int_equal(http_pct_decode(out, "ab%G1", 5, 1), ST_EPARSE);
    n = http_pct_decode(out, "%00", 3, 1);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0);
    /* in place */
    char buf[] = "x%41y";
    n = http_pct_decode(buf, buf, 5, 0);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "xAy", 3);
}

static void test_params(void **state)
{
    (void)state;
    http_params_t p;
    http_params_init(&p);
    const char *q =
        "match[]=up&query=rate(x%5B5m%5D)+*+2&&empty=&flag&match%5B%5D=%7Bjob%3D%22a%22%7D";
    assert_int_equal(http_params_parse(&p, q, strlen(q)), 0);
    assert_int_equal(p.n, 5);
    assert_string_equal(http_params_get(&p, "query"), "rate(x[5m]) * 2");
    assert_string_equal(http_params_get(&p, "empty"), "");
    assert_string_equal(http_params_get(&p, "flag"), "");
    assert_null(http_params_get(&p, "nope"));
    assert_int_equal(http_params_count(&p, "match[]"), 2);
    size_t it = 0;
    const http_param_t *m = http_params_next(&p, "match[]", &it);
    assert_non_null(m);
    assert_string_equal(m->value, "up");
    m = http_params_next(&p, "match[]", &it);
    assert_non_null(m);
    assert_string_equal(m->value, "{job=\"a\"}");
    assert_int_equal(m->value_len, 9);
    assert_null(http_params_next(&p, "match[]", &it));
    /* A bad escape leaves the list unchanged. */
    assert_int_equal(http_params_parse(&p, "a=1&b=%x1", 9), ST_EPARSE);
    assert_int_equal(p.n, 5);
    /* Appending (query + form body) keeps the earlier pointers valid. */
    const char *v = http_params_get(&p, "query");
    assert_int_equal(http_params_parse(&p, "start=1&end=2", 13), 0);
    assert_int_equal(p.n, 7);
    assert_ptr_equal(http_params_get(&p, "query"), v);
    assert_string_equal(http_params_get(&p, "end"), "2");
    assert_int_equal(http_params_parse(&p, "", 0), 0);
    assert_int_equal(http_params_parse(&p, "&&&", 3), 0);
    assert_int_equal(p.n, 7);
    /* '=' inside the value is kept. */
    assert_int_equal(http_params_parse(&p, "z=ab=c", 6), 0);
    it = 0;
    m = http_params_next(&p, "z", &it);
    assert_int_equal(m->value_len, 4);
    assert_memory_equal(m->value, "ab=c", 4);
    http_params_deinit(&p);
}

/* A NUL byte, escaped or raw, in a key or value is refused with the
 * parameter and the 0-based position in the decoded text: never a
 * silently shorter C string. */
static void test_params_nul(void **state)
{
    (void)state;
    http_params_t p;
    http_params_init(&p);
    const char *q = "a=1&query=count(cv_v)%00%20and%20on()%20vector(0)";
    assert_int_equal(http_params_parse(&p, q, strlen(q)), ST_EPARSE);
    assert_int_equal(p.n, 0);
    assert_string_equal(p.err, "parameter \"query\": NUL byte at position 11");
    q = "match[]=cv_v{i=\"1%00x\"}";
    assert_int_equal(http_params_parse(&p, q, strlen(q)), ST_EPARSE);
    assert_string_equal(p.err, "parameter \"match[]\": NUL byte at position 9");
    static const char raw[] = "x=ab\0c";
    assert_int_equal(http_params_parse(&p, raw, sizeof raw - 1), ST_EPARSE);
    assert_string_equal(p.err, "parameter \"x\": NUL byte at position 2");
    assert_int_equal(http_params_parse(&p, "ke%00y=1", 8), ST_EPARSE);
    assert_string_equal(p.err, "parameter name: NUL byte at position 2");
    assert_int_equal(http_params_parse(&p, "k=%zz", 5), ST_EPARSE);
    assert_string_equal(p.err, "parameter \"k\": invalid percent escape");
    /* a good parse clears the message; pairs before a refusal are not kept */
    assert_int_equal(http_params_parse(&p, "k=v", 3), 0);
    assert_string_equal(p.err, "");
    assert_int_equal(p.n, 1);
    http_params_deinit(&p);
}

static void test_headers(void **state)
{
    (void)state;
    http_header_t h[] = {{"Content-Type", "text/plain"}, {"content-encoding", "gzip"}};
    assert_string_equal(http_header_find(h, 2, "CONTENT-ENCODING"), "gzip");
    assert_string_equal(http_header_find(h, 2, "content-type"), "text/plain");
    assert_null(http_header_find(h, 2, "Content-Length"));
    assert_true(http_has_token("keep-alive, Upgrade", "upgrade"));
    assert_true(http_has_token(" close ", "close"));
    assert_true(http_has_token("gzip;q=1.0, br", "gzip"));
    assert_false(http_has_token("closed", "close"));
    assert_false(http_has_token("", "close"));
    assert_false(http_has_token(NULL, "close"));
    assert_true(http_has_token("100-Continue", "100-continue"));
    assert_true(http_str_ieq("AbC", "aBc"));
    assert_false(http_str_ieq("AbC", "aBcd"));
}

static void check_time(const char *s, int want_rc, int64_t want)
{
    int64_t ms = 12345;
    int rc = http_parse_time_ms(s, strlen(s), &ms);
    if (rc != want_rc)
        fail_msg("%s: rc %d want %d", s, rc, want_rc);
    if (rc == 0 && ms != want)
        fail_msg("%s: %lld want %lld", s, (long long)ms, (long long)want);
}

static void test_time(void **state)
{
    (void)state;
    check_time("1970-01-01T00:00:00Z", 0, 0);
    check_time("2026-11-21T19:50:45Z", 0, 1795290645000LL);
    check_time("2026-11-21T19:50:45.123Z", 0, 1795290645123LL);
    check_time("2026-11-21T19:50:45.1Z", 0, 1795290645100LL);
    check_time("2026-11-21T19:50:45.123999999Z", 0, 1795290645123LL);
    check_time("2026-11-21t19:50:45z", 0, 1795290645000LL);
    check_time("2026-11-21 19:50:45Z", 0, 1795290645000LL);
    check_time("2026-11-21T21:50:45+02:00", 0, 1795290645000LL);
    check_time("2026-11-21T14:20:45.5-05:30", 0, 1795290645500LL);
    check_time("2024-02-29T00:00:00Z", 0, 1709164800000LL);
    check_time("1969-12-31T23:59:59Z", 0, -1000);
    check_time("2023-02-29T00:00:00Z", ST_EPARSE, 0);
    check_time("2026-13-01T00:00:00Z", ST_EPARSE, 0);
    check_time("2026-11-21T24:00:00Z", ST_EPARSE, 0);
    check_time("2026-11-21T19:50:60Z", ST_EPARSE, 0);
    check_time("2026-11-21T19:50:45", ST_EPARSE, 0);
    check_time("2026-11-21T19:50:45.Z", ST_EPARSE, 0);
    check_time("2026-11-21T19:50:45+0200", ST_EPARSE, 0);
    check_time("2026-11-21T19:50:45Zjunk", ST_EPARSE, 0);
    check_time("1700000000", 0, 1700000000000LL);
    check_time("1700000000.123", 0, 1700000000123LL);
    check_time("1700000000.1234", 0, 1700000000123LL);
    check_time("1700000000.1235", 0, 1700000000124LL);
    check_time("1700000000.9999", 0, 1700000001000LL);
    check_time("-1.5", 0, -1500);
    check_time("+2", 0, 2000);
    check_time(".5", 0, 500);
    check_time("5.", 0, 5000);
    check_time("1.7e9", 0, 1700000000000LL);
    check_time("1e-3", 0, 1);
    check_time("", ST_EPARSE, 0);
    check_time(".", ST_EPARSE, 0);
    check_time("-", ST_EPARSE, 0);
    check_time("NaN", ST_EPARSE, 0);
    check_time("Inf", ST_EPARSE, 0);
    check_time("0x10", ST_EPARSE, 0);
    check_time("12abc", ST_EPARSE, 0);
    check_time("1e400", ST_ELIMIT, 0);
    check_time("99999999999999999999", ST_ELIMIT, 0);
    check_time("9223372036854775", ST_ELIMIT, 0);
    check_time("9223372036854774", 0, 9223372036854774000LL);
}

static void gz(const void *in, size_t len, st_buf_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, (uLong)len) + 64;
    assert_int_equal(st_buf_reserve(out, cap), 0);
    z.next_in = (unsigned char *)(uintptr_t)in;
    z.avail_in = (unsigned)len;
    z.next_out = out->data + out->len;
    z.avail_out = (unsigned)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    out->len += cap - z.avail_out;
    deflateEnd(&z);
}

static void test_gzip(void **state)
{
    (void)state;
    size_t n = 300000;
    char *plain = malloc(n);
    for (size_t i = 0; i < n; i++)
        plain[i] = (char)("cpu,host=h%zu usage=1\n"[i % 22] + (i / 1000) % 3);
    st_buf_t z, out;
    st_buf_init(&z);
    st_buf_init(&out);
    gz(plain, n, &z);
    assert_int_equal(http_gunzip(z.data, z.len, n, &out), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, plain, n);
    /* One byte less than needed: the limit. */
    st_buf_reset(&out);
    assert_int_equal(http_gunzip(z.data, z.len, n - 1, &out), ST_ELIMIT);
    assert_int_equal(out.len, 0);
    /* Truncated. */
    for (size_t cut = 0; cut < z.len; cut += z.len / 7 + 1) {
        st_buf_reset(&out);
        assert_int_equal(http_gunzip(z.data, cut, n, &out), ST_ECORRUPT);
    }
    st_buf_reset(&out);
    assert_int_equal(http_gunzip(z.data, z.len - 1, n, &out), ST_ECORRUPT);
    /* Corrupt CRC. */
    z.data[z.len - 6] ^= 1;
    st_buf_reset(&out);
    assert_int_equal(http_gunzip(z.data, z.len, n, &out), ST_ECORRUPT);
    z.data[z.len - 6] ^= 1;
    /* Two members, appended after existing content. */
    size_t one = z.len;
    assert_int_equal(st_buf_reserve(&z, one), 0);
    memcpy(z.data + one, z.data, one);
    z.len = 2 * one;
    st_buf_reset(&out);
    assert_int_equal(st_buf_append(&out, "xy", 2), 0);
    assert_int_equal(http_gunzip(z.data, z.len, 2 * n, &out), 0);
    assert_int_equal(out.len, 2 * n + 2);
    assert_memory_equal(out.data + 2 + n, plain, n);
    /* Trailing garbage. */
    z.len = one;
    assert_int_equal(st_buf_append(&z, "junk", 4), 0);
    st_buf_reset(&out);
    assert_int_equal(http_gunzip(z.data, z.len, 2 * n, &out), ST_ECORRUPT);
    /* Not gzip at all. */
    st_buf_reset(&out);
    assert_int_equal(http_gunzip("hello world", 11, 100, &out), ST_ECORRUPT);
    assert_int_equal(http_gunzip("", 0, 100, &out), ST_ECORRUPT);
    /* Empty payload. */
    st_buf_reset(&z);
    gz("", 0, &z);
    st_buf_reset(&out);
    assert_int_equal(http_gunzip(z.data, z.len, 0, &out), 0);
    assert_int_equal(out.len, 0);
    st_buf_deinit(&z);
    st_buf_deinit(&out);
    free(plain);
}

static void test_gzip_bomb(void **state)
{
    (void)state;
    /* 64 MiB of zeros compress to ~64 KiB; the cap is 1 MiB. */
    size_t n = 64u << 20;
    char *zeros = calloc(1, n);
    st_buf_t z, out;
    st_buf_init(&z);
    st_buf_init(&out);
    gz(zeros, n, &z);
    free(zeros);
    assert_true(z.len < n / 500);
    assert_int_equal(http_gunzip(z.data, z.len, 1u << 20, &out), ST_ELIMIT);
    assert_int_equal(out.len, 0);
    assert_true(out.cap <= (2u << 20) + 64); /* never allocated much past the cap */
    st_buf_deinit(&z);
    st_buf_deinit(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_decode), cmocka_unit_test(test_params),
        cmocka_unit_test(test_params_nul), cmocka_unit_test(test_headers),
        cmocka_unit_test(test_time),       cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_gzip_bomb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
