/* Unit tests for common/base: st_err, st_buf, st_varint, st_crc32c, st_labels (st_text and st_time:
 * test_text.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_labels.h"
#include "st_mem.h"
#include "st_text.h"
#include "st_varint.h"

static void test_strerror(void **state)
{
    assert_string_equal(st_strerror(ST_ECORRUPT), "data is corrupt (bad checksum or format)");
    assert_string_equal(st_errname(ST_EAGAIN), "EAGAIN");
    assert_string_equal(st_strerror(-9999), "unknown error");
}

static void test_varint_roundtrip(void **state)
{
    const uint64_t vals[] = {0,         1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX - 1,
                             UINT64_MAX};
    st_buf_t b;
    st_buf_init(&b);
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        assert_int_equal(st_buf_put_uvarint(&b, vals[i]), 0);
    const uint8_t *p = b.data, *end = b.data + b.len;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        uint64_t v;
        int n = st_uvarint_get(p, end, &v);
        assert_true(n > 0);
        assert_true(v == vals[i]);
        p += n;
    }
    assert_ptr_equal(p, end);
    st_buf_deinit(&b);
    const int64_t svals[] = {0, -1, 1, INT64_MIN, INT64_MAX, -64, 64};
    for (size_t i = 0; i < sizeof svals / sizeof svals[0]; i++)
        assert_true(st_unzigzag(st_zigzag(svals[i])) == svals[i]);
}

static void test_varint_truncated_and_overlong(void **state)
{
    uint8_t t[11];
    memset(t, 0xff, sizeof t);
    uint64_t v;
    assert_int_equal(st_uvarint_get(t, t + 3, &v), 0);   /* need more */
    assert_int_equal(st_uvarint_get(t, t + 11, &v), -1); /* overlong */
    uint8_t e[1];
    assert_int_equal(st_uvarint_get(e, e, &v), 0);
}

static void test_crc32c_known(void **state)
{
    /* RFC 3720 test vectors */
    uint8_t zeros[32] = {0};
    assert_int_equal(st_crc32c(0, zeros, 32), 0x8a9136aa);
    assert_int_equal(st_crc32c(0, "123456789", 9), 0xe3069283);
    /* incremental == one shot */
    uint32_t c = st_crc32c(0, "1234", 4);
    assert_int_equal(st_crc32c(c, "56789", 5), 0xe3069283);
}

static void test_labels(void **state)
{
    st_label_t l[3] = {{"zone", "a", 4, 1}, {"__name__", "cpu", 8, 3}, {"host", "h1", 4, 2}};
    st_labels_sort(l, 3);
    assert_memory_equal(l[0].name, "__name__", 8);
    assert_memory_equal(l[2].name, "zone", 4);
    const char *why = NULL;
    assert_int_equal(st_labels_validate(l, 3, &why), 0);
    st_label_t m[3] = {l[0], l[1], l[2]};
    assert_int_equal(st_labels_cmp(l, 3, m, 3), 0);
    assert_true(st_labels_hash(l, 3) == st_labels_hash(m, 3));
    m[1].value = "h2";
    assert_true(st_labels_cmp(l, 3, m, 3) < 0);
    assert_true(st_labels_hash(l, 3) != st_labels_hash(m, 3));
    assert_int_equal(st_labels_find(l, 3, "host"), 1);
    /* the series hash splits into the name and the rest */
    assert_true(st_series_hash(l, 3) == st_series_hash_from(st_labels_hash_noname(l, 3), "cpu", 3));
    assert_true(st_series_hash(l, 3) != st_series_hash(m, 3));
    assert_int_equal(st_labels_find(l, 3, "nope"), -1);
    st_label_t bad = {"a", "\xc3\x28", 1, 2};
    assert_int_equal(st_labels_validate(&bad, 1, &why), ST_EINVAL);
    assert_string_equal(why, "label value is not valid UTF-8");
    st_label_t dup[2] = {{"a", "1", 1, 1}, {"a", "2", 1, 1}};
    assert_int_equal(st_labels_validate(dup, 2, &why), ST_EINVAL);
}

static void test_utf8(void **state)
{
    assert_true(st_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert_false(st_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(st_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(st_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(st_utf8_valid("\xe2\x82", 2));         /* truncated */
}

static void test_grow(void **state)
{
    uint64_t *a = NULL;
    size_t n = 0, cap = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        if (n == cap)
            assert_int_equal(st_grow(&a, &cap, sizeof *a, 4), 0);
        assert_true(n < cap);
        a[n++] = i * 7;
    }
    assert_int_equal(cap, 1024); /* 4, 8, ... doubling */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(a[i], i * 7);
    /* an impossible size fails and leaves the array as it was */
    size_t big = SIZE_MAX / 2 + 1;
    assert_int_equal(st_grow(&a, &big, sizeof *a, 4), ST_ENOMEM);
    assert_int_equal(a[999], 999 * 7);
    free(a);
}

static long rss_kib(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* st_mem_release (in a process that ran st_mem_tune) gives memory the
 * allocator keeps back to the OS: 64 MiB of small blocks freed below a
 * block still in use stay resident until then. */
static void test_mem_release(void **state)
{
    (void)state;
#ifdef __SANITIZE_ADDRESS__
    skip(); /* ASan's allocator is not glibc's: nothing of this applies */
#endif
    st_mem_tune();
    enum { N = 16384, SZ = 4000 };
    void **p = malloc(N * sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < N; i++) {
        p[i] = malloc(SZ);
        assert_non_null(p[i]);
        memset(p[i], 1, SZ);
    }
    void *pin = malloc(64); /* above them: the freed blocks are no heap top */
    assert_non_null(pin);
    long used = rss_kib(); /* (also keeps the writes above: the blocks are read) */
    for (int i = 0; i < N; i++)
        free(p[i]);
    long kept = rss_kib();
    assert_true(kept > used - 8 * 1024); /* freed, still resident */
    st_mem_release();
    long after = rss_kib();
    assert_true(after < kept - 32 * 1024);
    free(pin);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_varint_roundtrip),
        cmocka_unit_test(test_varint_truncated_and_overlong),
        cmocka_unit_test(test_crc32c_known),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_mem_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
