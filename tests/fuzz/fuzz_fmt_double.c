/*
 * fuzz_fmt_double — the shortest-digits number formatter (st_text) on
 * arbitrary doubles: each 8 bytes of the first 16 are one double's bits (and a
 * few derived values: the neighbours, a 2-decimal reading, a ratio). For
 * each finite v the fast path st_shortest_digits must read back as v
 * (strtod of the digits), have no more digits than the snprintf/strtod
 * reference st_shortest_digits_ref and equal it except at exact powers of
 * two (where Go may print a shorter string); st_fmt_double's text must
 * read back as v too.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_buf.h"
#include "st_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_fmt_double: check failed: %s (line %d)\n", #c, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void one(double v)
{
    if (!isfinite(v) || v == 0)
        return;
    double a = fabs(v);
    char dig[40], ref[40], txt[64];
    int e, er;
    int nd = st_shortest_digits(a, dig, &e);
    int nr = st_shortest_digits_ref(a, ref, &er);
    CHECK(nd >= 1 && nd <= 17 && (int)strlen(dig) == nd);
    CHECK(nd == 1 || dig[nd - 1] != '0');
    snprintf(txt, sizeof txt, "%.1s.%se%d", dig, dig + 1, e);
    CHECK(strtod(txt, NULL) == a);
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    if ((bits & ((1ull << 52) - 1)) != 0 || a < 2.2250738585072014e-308) {
        CHECK(nd == nr && e == er && strcmp(dig, ref) == 0);
    } else {
        CHECK(nd <= nr);
        if (nd == nr)
            CHECK(e == er && strcmp(dig, ref) == 0);
    }
    st_buf_t b;
    st_buf_init(&b);
    CHECK(st_fmt_double(&b, v) == 0 && st_buf_put_u8(&b, 0) == 0);
    CHECK(strtod((const char *)b.data, NULL) == v);
    st_buf_deinit(&b);
}

#define FMT_MAX_VALUES 2 /* doubles per input: the reference path is slow */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8 * FMT_MAX_VALUES)
        size = 8 * FMT_MAX_VALUES;
    for (size_t off = 0; off + 8 <= size || (off == 0 && size); off += 8) {
        uint64_t bits = 0;
        memcpy(&bits, data + off, size - off < 8 ? size - off : 8);
        double v;
        memcpy(&v, &bits, sizeof v);
        one(v);
        one(nextafter(v, INFINITY));
        one(nextafter(v, 0));
        one((double)(bits % 10000000) / 100.0);
        one((double)(bits % 100003) / (double)((bits >> 32) % 997 + 1));
        if (size - off < 8)
            break;
    }
    return 0;
}
