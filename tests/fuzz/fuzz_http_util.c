/*
 * fuzz_http_util — the pure HTTP helpers on arbitrary input.
 *
 * The first byte picks the function: query-string parsing (pairs are
 * checked to be NUL-terminated with no NUL inside, and no longer than the
 * input; a refusal leaves no pair and says why), time parsing
 * (a success must be reproducible and in range), gzip inflate with a small
 * cap (the output never exceeds it; on error the buffer is unchanged), JSON
 * escaping (the output is valid UTF-8 with no raw control characters or
 * unescaped quotes), and token lookup / percent-decoding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_text.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static void fz_query(const char *s, size_t n)
{
    http_params_t p;
    http_params_init(&p);
    int rc = http_params_parse(&p, s, n);
    check(rc == 0 || rc == ST_EPARSE || rc == ST_ENOMEM);
    if (rc == ST_EPARSE)
        check(p.n == 0 && p.err[0] != 0);
    size_t total = 0;
    for (size_t i = 0; i < p.n; i++) {
        const http_param_t *pa = &p.items[i];
        check(pa->key[pa->key_len] == 0 && pa->value[pa->value_len] == 0);
        /* no NUL inside: the C string is the whole key / value */
        check(strlen(pa->key) == pa->key_len && strlen(pa->value) == pa->value_len);
        total += pa->key_len + pa->value_len;
        size_t it = 0;
        check(http_params_next(&p, pa->key, &it) != NULL && it <= i + 1);
    }
    check(total <= n);
    /* Appending again doubles the list. */
    size_t n0 = p.n;
    if (rc == 0 && http_params_parse(&p, s, n) == 0)
        check(p.n == 2 * n0);
    http_params_deinit(&p);
}

static void fz_time(const char *s, size_t n)
{
    int64_t a = 0, b = 0;
    int rc = http_parse_time_ms(s, n, &a);
    check(rc == 0 || rc == ST_EPARSE || rc == ST_ELIMIT);
    if (rc == 0) {
        check(http_parse_time_ms(s, n, &b) == 0 && a == b);
    }
}

static void fz_gzip(const uint8_t *s, size_t n, size_t cap)
{
    st_buf_t out;
    st_buf_init(&out);
    st_buf_append(&out, "pre", 3);
    int rc = http_gunzip(s, n, cap, &out);
    check(rc == 0 || rc == ST_ECORRUPT || rc == ST_ELIMIT || rc == ST_ENOMEM);
    if (rc)
        check(out.len == 3);
    else
        check(out.len - 3 <= cap);
    check(memcmp(out.data, "pre", 3) == 0);
    st_buf_deinit(&out);
}

static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t need = c < 0x80                 ? 1
                  : c >= 0xc2 && c <= 0xdf ? 2
                  : c >= 0xe0 && c <= 0xef ? 3
                  : c >= 0xf0 && c <= 0xf4 ? 4
                                           : 0;
    if (need == 0 || need > n)
        return 0;
    for (size_t i = 1; i < need; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return need;
}

static void fz_json(const char *s, size_t n)
{
    st_buf_t b;
    st_buf_init(&b);
    check(st_json_str(&b, s, n) == 0);
    check(b.len >= 2 && b.data[0] == '"' && b.data[b.len - 1] == '"');
    for (size_t i = 1; i + 1 < b.len;) {
        uint8_t c = b.data[i];
        check(c >= 0x20);
        if (c == '\\') {
            check(i + 2 < b.len);
            i += b.data[i + 1] == 'u' ? 6 : 2;
            continue;
        }
        check(c != '"');
        size_t l = utf8_len(b.data + i, b.len - 1 - i);
        check(l > 0);
        i += l;
    }
    st_buf_deinit(&b);
}

static void fz_misc(const char *s, size_t n)
{
    char *z = malloc(n + 1);
    memcpy(z, s, n);
    z[n] = 0;
    (void)http_has_token(z, "close");
    (void)http_has_token(z, "");
    char *out = malloc(n + 1);
    long dl = http_pct_decode(out, s, n, 1);
    check(dl == ST_EPARSE || (dl >= 0 && (size_t)dl <= n));
    http_header_t h[2] = {{z, z}, {"a", "b"}};
    check(http_header_find(h, 2, z) == z);
    free(out);
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0:
        fz_query(s, n);
        break;
    case 1:
        fz_time(s, n);
        break;
    case 2:
        fz_gzip(data + 1, n, 1 << 16);
        break;
    case 3:
        fz_gzip(data + 1, n, data[0] >> 3);
        break;
    case 4:
        fz_json(s, n);
        break;
    default:
        fz_misc(s, n);
    }
    return 0;
}
