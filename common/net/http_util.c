/* http_util — pure HTTP helpers; see http_util.h. */
#include "http_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "st_err.h"
#include "st_labels.h"
#include "st_text.h"
#include "st_time.h"

/* ---- query strings ------------------------------------------------------ */

/* Decoded strings of one http_params_parse() call, in one allocation. */
typedef struct chunk {
    struct chunk *next;
    char data[];
} chunk_t;

void http_params_init(http_params_t *p)
{
    p->items = NULL;
    p->n = 0;
    p->cap = 0;
    p->chunks = NULL;
    p->err[0] = '\0';
}

void http_params_deinit(http_params_t *p)
{
    chunk_t *c = p->chunks;
    while (c) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    free(p->items);
    http_params_init(p);
}

long http_pct_decode(char *dst, const char *src, size_t len, int plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (len - i < 3)
                return ST_EPARSE;
            int hi = st_hexval((unsigned char)src[i + 1]);
            int lo = st_hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return ST_EPARSE;
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = (char)c;
        }
    }
    return (long)o;
}

/* Record why a pair was refused: which parameter, what, where. key/kl is
 * the decoded key, or NULL when the key itself is at fault. */
static void params_fail(http_params_t *p, const char *key, size_t kl, const char *what, long pos)
{
    char who[96] = "parameter name";
    if (key) {
        char name[72];
        size_t n = 0;
        for (size_t i = 0; i < kl && n < 64; i++) {
            unsigned char ch = (unsigned char)key[i];
            name[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        name[n] = '\0';
        snprintf(who, sizeof who, "parameter \"%s%s\"", name, kl > n ? "..." : "");
    }
    if (pos < 0)
        snprintf(p->err, sizeof p->err, "%s: %s", who, what);
    else
        snprintf(p->err, sizeof p->err, "%s: %s at position %ld", who, what, pos);
}

/* Decode one key or value into out; ST_EPARSE (with p->err) on a bad
 * escape or a NUL byte. key/kl name the parameter for the message (NULL
 * while decoding the key). */
static long decode_part(http_params_t *p, char *out, const char *src, size_t len, const char *key,
                        size_t kl)
{
    long dl = http_pct_decode(out, src, len, 1);
    if (dl < 0) {
        params_fail(p, key, kl, "invalid percent escape", -1);
        return ST_EPARSE;
    }
    const char *nul = memchr(out, 0, (size_t)dl);
    if (nul) {
        params_fail(p, key, kl, "NUL byte", (long)(nul - out));
        return ST_EPARSE;
    }
    return dl;
}

int http_params_parse(http_params_t *p, const char *s, size_t len)
{
    p->err[0] = '\0';
    if (len == 0)
        return 0;
    /* Count the pairs to size both allocations once. */
    size_t npairs = 1;
    for (size_t i = 0; i < len; i++)
        npairs += s[i] == '&';
    if (len > SIZE_MAX / 2 - sizeof(chunk_t) - 2 * npairs)
        return ST_ENOMEM;
    chunk_t *c = malloc(sizeof *c + len + 2 * npairs);
    if (!c)
        return ST_ENOMEM;
    size_t need = p->n + npairs;
    if (need > p->cap) {
        size_t cap = p->cap ? p->cap : 8;
        while (cap < need)
            cap *= 2;
        http_param_t *it = realloc(p->items, cap * sizeof *it);
        if (!it) {
            free(c);
            return ST_ENOMEM;
        }
        p->items = it;
        p->cap = cap;
    }
    size_t n0 = p->n, n = n0;
    char *out = c->data;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '&')
            j++;
        if (j > i) {
            size_t eq = i;
            while (eq < j && s[eq] != '=')
                eq++;
            long kl = decode_part(p, out, s + i, eq - i, NULL, 0);
            if (kl < 0)
                goto bad;
            http_param_t *pa = &p->items[n];
            pa->key = out;
            pa->key_len = (size_t)kl;
            out[kl] = '\0';
            out += kl + 1;
            long vl = 0;
            if (eq < j) {
                vl = decode_part(p, out, s + eq + 1, j - eq - 1, pa->key, pa->key_len);
                if (vl < 0)
                    goto bad;
            }
            pa->value = out;
            pa->value_len = (size_t)vl;
            out[vl] = '\0';
            out += vl + 1;
            n++;
        }
        i = j + 1;
    }
    if (n == n0) {
        free(c);
        return 0;
    }
    c->next = p->chunks;
    p->chunks = c;
    p->n = n;
    return 0;
bad:
    free(c);
    return ST_EPARSE;
}

const http_param_t *http_params_next(const http_params_t *p, const char *key, size_t *iter)
{
    size_t kl = strlen(key);
    for (size_t i = *iter; i < p->n; i++) {
        const http_param_t *pa = &p->items[i];
        if (pa->key_len == kl && memcmp(pa->key, key, kl) == 0) {
            *iter = i + 1;
            return pa;
        }
    }
    *iter = p->n;
    return NULL;
}

const char *http_params_get(const http_params_t *p, const char *key)
{
    size_t it = 0;
    const http_param_t *pa = http_params_next(p, key, &it);
    return pa ? pa->value : NULL;
}

size_t http_params_count(const http_params_t *p, const char *key)
{
    size_t it = 0, n = 0;
    while (http_params_next(p, key, &it))
        n++;
    return n;
}

/* ---- headers ------------------------------------------------------------ */

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

int http_str_ieq(const char *a, const char *b)
{
    for (;; a++, b++) {
        if (lower((unsigned char)*a) != lower((unsigned char)*b))
            return 0;
        if (*a == '\0')
            return 1;
    }
}

const char *http_header_find(const http_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (http_str_ieq(h[i].name, name))
            return h[i].value;
    return NULL;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int http_has_token(const char *value, const char *token)
{
    if (!value)
        return 0;
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (is_ows(*p) || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ';')
            p++;
        const char *end = p;
        while (end > start && is_ows(end[-1]))
            end--;
        if ((size_t)(end - start) == tl) {
            size_t k = 0;
            while (k < tl && lower((unsigned char)start[k]) == lower((unsigned char)token[k]))
                k++;
            if (k == tl)
                return 1;
        }
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

/* ---- time --------------------------------------------------------------- */

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int parse_rfc3339(const char *s, size_t len, int64_t *out)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int Y, M, D, h, m, sec;
    if (len < 20 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':')
        return ST_EPARSE;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return ST_EPARSE;
    if (digits(s, 4, &Y) || digits(s + 5, 2, &M) || digits(s + 8, 2, &D) || digits(s + 11, 2, &h) ||
        digits(s + 14, 2, &m) || digits(s + 17, 2, &sec))
        return ST_EPARSE;
    if (M < 1 || M > 12 || h > 23 || m > 59 || sec > 59 || D < 1)
        return ST_EPARSE;
    int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (D > mdays[M - 1] + (M == 2 && leap))
        return ST_EPARSE;
    size_t i = 19;
    int64_t ms = 0;
    if (s[i] == '.') {
        i++;
        size_t nd = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nd < 3)
                ms = ms * 10 + (s[i] - '0');
            nd++;
            i++;
        }
        if (nd == 0)
            return ST_EPARSE;
        for (; nd < 3; nd++)
            ms *= 10;
    }
    if (i >= len)
        return ST_EPARSE;
    int64_t off = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (len - i != 6 || s[i + 3] != ':' || digits(s + i + 1, 2, &oh) ||
            digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return ST_EPARSE;
        off = (int64_t)(oh * 60 + om) * 60;
        if (s[i] == '-')
            off = -off;
        i += 6;
    } else {
        return ST_EPARSE;
    }
    if (i != len)
        return ST_EPARSE;
    int64_t secs =
        st_days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 + sec - off;
    *out = secs * 1000 + ms;
    return 0;
}

/* Unix seconds as a plain decimal, exactly: [+-]digits[.digits]. Returns
 * ST_EAGAIN when the text is not of that form (the caller tries strtod). */
static int parse_unix_decimal(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    uint64_t ip = 0;
    size_t nint = 0, nfrac = 0;
    int over = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (ip > (UINT64_MAX - 9) / 10)
            over = 1;
        else
            ip = ip * 10 + (uint64_t)(s[i] - '0');
        nint++;
        i++;
    }
    uint64_t frac = 0;
    int round_up = 0;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nfrac < 3)
                frac = frac * 10 + (uint64_t)(s[i] - '0');
            else if (nfrac == 3)
                round_up = s[i] >= '5';
            nfrac++;
            i++;
        }
    }
    if (i != len || nint + nfrac == 0)
        return ST_EAGAIN;
    for (size_t k = nfrac; k < 3; k++)
        frac *= 10;
    if (over || ip > (uint64_t)INT64_MAX / 1000 - 1)
        return ST_ELIMIT;
    int64_t ms = (int64_t)(ip * 1000 + frac + (uint64_t)round_up);
    *out = neg ? -ms : ms;
    return 0;
}

int http_parse_time_ms(const char *s, size_t len, int64_t *out_ms)
{
    if (len == 0 || len > 64)
        return ST_EPARSE;
    if (len >= 20 && s[4] == '-')
        return parse_rfc3339(s, len, out_ms);
    int rc = parse_unix_decimal(s, len, out_ms);
    if (rc != ST_EAGAIN)
        return rc;
    /* Exponent forms ("1.7e9"): only digits, sign, '.', 'e' go to strtod, so
     * "nan", "inf" and hex floats are refused. */
    char tmp[65];
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E'))
            return ST_EPARSE;
        tmp[i] = c;
    }
    tmp[len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + len || end == tmp)
        return ST_EPARSE;
    if (!isfinite(v) || fabs(v) >= 9.2e15)
        return ST_ELIMIT;
    double ip;
    double fr = modf(v, &ip);
    *out_ms = (int64_t)ip * 1000 + (int64_t)round(fr * 1000);
    return 0;
}

/* ---- gzip --------------------------------------------------------------- */

int http_gunzip(const void *in, size_t len, size_t max_out, st_buf_t *out)
{
    size_t len0 = out->len;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return ST_ENOMEM;
    const unsigned char *p = in;
    size_t left = len, produced = 0;
    int rc = 0, zrc = Z_OK, members = 0;
    /* Start with a guess, grow geometrically; never reserve past the cap
     * (+1 byte, to see that the stream wants more than max_out). */
    size_t step = len < 16384 ? 65536 : len * 4;
    while (1) {
        if (zrc == Z_STREAM_END) {
            members++;
            if (left == 0)
                break;
            if (left < 2 || p[0] != 0x1f || p[1] != 0x8b) {
                rc = ST_ECORRUPT; /* trailing garbage */
                goto out;
            }
            inflateReset(&z);
        }
        if (out->cap - out->len == 0) {
            size_t room = max_out - produced;
            if (room < SIZE_MAX)
                room++;
            if (step > room)
                step = room;
            rc = st_buf_reserve(out, step);
            if (rc)
                goto out;
            if (step < (SIZE_MAX >> 2))
                step *= 2;
        }
        size_t avail_out = out->cap - out->len;
        if (avail_out - 1 > max_out - produced)
            avail_out = max_out - produced + 1;
        unsigned in_chunk = left > UINT32_MAX ? UINT32_MAX : (unsigned)left;
        unsigned out_chunk = avail_out > UINT32_MAX ? UINT32_MAX : (unsigned)avail_out;
        z.next_in = (unsigned char *)(uintptr_t)p;
        z.avail_in = in_chunk;
        z.next_out = out->data + out->len;
        z.avail_out = out_chunk;
        zrc = inflate(&z, Z_NO_FLUSH);
        size_t used_in = in_chunk - z.avail_in;
        size_t used_out = out_chunk - z.avail_out;
        p += used_in;
        left -= used_in;
        out->len += used_out;
        produced += used_out;
        if (produced > max_out) {
            rc = ST_ELIMIT;
            goto out;
        }
        if (zrc == Z_STREAM_END)
            continue;
        if (zrc == Z_MEM_ERROR) {
            rc = ST_ENOMEM;
            goto out;
        }
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = ST_ECORRUPT;
            goto out;
        }
        if (used_in == 0 && used_out == 0 && (left == 0 || z.avail_out > 0)) {
            rc = ST_ECORRUPT; /* truncated: no progress possible */
            goto out;
        }
    }
    if (members == 0)
        rc = ST_ECORRUPT;
out:
    inflateEnd(&z);
    if (rc)
        out->len = len0;
    return rc;
}
