/*
 * resp — RESP request parser and reply writer (see resp.h).
 *
 * The parser never trusts a length before checking it against the limits,
 * never reads past len, and restarts from the first byte of the command
 * each time it is called (a command is small next to the cost of running
 * it, and a restart keeps no state that could go stale between calls).
 */
#include "resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "st_err.h"
#include "st_text.h"

/* A decimal line "<digits>\r\n" at p (after the type byte): its value in
 * *v (-1 allowed when neg_ok), bytes through the LF in *n. 0 more, 1 ok,
 * -1 bad. */
static int read_num(const char *p, size_t len, long long max, int neg_ok, long long *v, size_t *n)
{
    size_t i = 0;
    int neg = 0;
    long long x = 0;
    if (i < len && p[i] == '-') {
        neg = 1;
        i++;
    }
    size_t d0 = i;
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        if (i - d0 >= 12)
            return -1;
        x = x * 10 + (p[i] - '0');
    }
    if (i == len)
        return i - d0 > 12 ? -1 : 0;
    if (i == d0 || p[i] != '\r')
        return -1;
    if (i + 1 == len)
        return 0;
    if (p[i + 1] != '\n')
        return -1;
    if (neg) {
        if (!neg_ok || x != 1)
            return -1;
        x = -1;
    } else if (x > max) {
        return -1;
    }
    *v = x;
    *n = i + 2;
    return 1;
}

static int parse_multibulk(const char *buf, size_t len, resp_arg_t *argv, size_t cap, size_t *argc,
                           size_t *used, const char **msg)
{
    long long n;
    size_t off = 1, k;
    int r = read_num(buf + off, len - off, RESP_MAX_ARGS, 1, &n, &k);
    if (r < 0) {
        *msg = "invalid multibulk length";
        return RESP_ERROR;
    }
    if (r == 0)
        return RESP_MORE;
    off += k;
    if (n > (long long)cap) {
        *msg = "too many arguments in one command";
        return RESP_ERROR;
    }
    if (n <= 0) { /* *-1 / *0: nothing to run */
        *argc = 0;
        *used = off;
        return RESP_CMD;
    }
    for (long long i = 0; i < n; i++) {
        if (off >= len)
            return RESP_MORE;
        if (buf[off] != '$') {
            *msg = "expected '$'";
            return RESP_ERROR;
        }
        long long bl;
        r = read_num(buf + off + 1, len - off - 1, RESP_MAX_BULK, 0, &bl, &k);
        if (r < 0) {
            *msg = "invalid bulk length";
            return RESP_ERROR;
        }
        if (r == 0)
            return RESP_MORE;
        off += 1 + k;
        if (off > RESP_MAX_COMMAND) {
            *msg = "command too large";
            return RESP_ERROR;
        }
        if (len - off < (size_t)bl + 2)
            return RESP_MORE;
        if (buf[off + (size_t)bl] != '\r' || buf[off + (size_t)bl + 1] != '\n') {
            *msg = "bulk string not terminated by CRLF";
            return RESP_ERROR;
        }
        argv[i].p = buf + off;
        argv[i].len = (size_t)bl;
        off += (size_t)bl + 2;
    }
    *argc = (size_t)n;
    *used = off;
    return RESP_CMD;
}

static int parse_inline(const char *buf, size_t len, resp_arg_t *argv, size_t cap, size_t *argc,
                        size_t *used, const char **msg)
{
    const char *nl = memchr(buf, '\n', len < RESP_MAX_INLINE ? len : RESP_MAX_INLINE);
    if (!nl) {
        if (len >= RESP_MAX_INLINE) {
            *msg = "too big inline request";
            return RESP_ERROR;
        }
        return RESP_MORE;
    }
    size_t end = (size_t)(nl - buf);
    size_t lend = end > 0 && buf[end - 1] == '\r' ? end - 1 : end;
    size_t n = 0, i = 0;
    while (i < lend) {
        while (i < lend && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        if (i >= lend)
            break;
        if (n >= cap) {
            *msg = "too many arguments in one command";
            return RESP_ERROR;
        }
        if (buf[i] == '"' || buf[i] == '\'') {
            char q = buf[i++];
            size_t s = i;
            while (i < lend && buf[i] != q)
                i++;
            if (i >= lend || (i + 1 < lend && buf[i + 1] != ' ' && buf[i + 1] != '\t')) {
                *msg = "unbalanced quotes in request";
                return RESP_ERROR;
            }
            argv[n].p = buf + s;
            argv[n].len = i - s;
            i++;
        } else {
            size_t s = i;
            while (i < lend && buf[i] != ' ' && buf[i] != '\t')
                i++;
            argv[n].p = buf + s;
            argv[n].len = i - s;
        }
        n++;
    }
    *argc = n;
    *used = end + 1;
    return RESP_CMD;
}

int resp_parse(const char *buf, size_t len, resp_arg_t *argv, size_t cap, size_t *argc,
               size_t *used, const char **msg)
{
    *argc = 0;
    *used = 0;
    *msg = NULL;
    if (cap > RESP_MAX_ARGS)
        cap = RESP_MAX_ARGS;
    if (len == 0)
        return RESP_MORE;
    if (buf[0] == '*')
        return parse_multibulk(buf, len, argv, cap, argc, used, msg);
    return parse_inline(buf, len, argv, cap, argc, used, msg);
}

/* ---- replies ---------------------------------------------------------- */

static int line(st_buf_t *b, char type, const char *s, size_t n)
{
    int rc = st_buf_reserve(b, n + 3);
    if (rc)
        return rc;
    b->data[b->len++] = (uint8_t)type;
    for (size_t i = 0; i < n; i++)
        b->data[b->len++] = (uint8_t)(s[i] == '\r' || s[i] == '\n' ? ' ' : s[i]);
    b->data[b->len++] = '\r';
    b->data[b->len++] = '\n';
    return 0;
}

/* type, the decimal n, CRLF (by hand: every reply of a pipeline has one,
 * and snprintf showed in the profile) */
static int head(st_buf_t *b, char type, long long n)
{
    char t[32];
    size_t k = sizeof t;
    t[--k] = '\n';
    t[--k] = '\r';
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do {
        t[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0)
        t[--k] = '-';
    t[--k] = type;
    return st_buf_append(b, t + k, sizeof t - k);
}

int resp_simple(st_buf_t *b, const char *s)
{
    return line(b, '+', s, strlen(s));
}

int resp_error(st_buf_t *b, const char *msg)
{
    return line(b, '-', msg, strlen(msg));
}

int resp_errorf(st_buf_t *b, const char *fmt, ...)
{
    char m[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return resp_error(b, m);
}

int resp_int(st_buf_t *b, int64_t v)
{
    return head(b, ':', (long long)v);
}

int resp_bulk(st_buf_t *b, const void *p, size_t len)
{
    int rc = head(b, '$', (long long)len);
    if (!rc)
        rc = st_buf_append(b, p, len);
    if (!rc)
        rc = st_buf_append(b, "\r\n", 2);
    return rc;
}

int resp_bulk_str(st_buf_t *b, const char *s)
{
    return resp_bulk(b, s, strlen(s));
}

int resp_null(st_buf_t *b, int proto)
{
    return proto >= 3 ? st_buf_append(b, "_\r\n", 3) : st_buf_append(b, "$-1\r\n", 5);
}

int resp_array(st_buf_t *b, size_t n)
{
    return head(b, '*', (long long)n);
}

int resp_null_array(st_buf_t *b, int proto)
{
    return proto >= 3 ? st_buf_append(b, "_\r\n", 3) : st_buf_append(b, "*-1\r\n", 5);
}

int resp_map(st_buf_t *b, int proto, size_t n)
{
    return proto >= 3 ? head(b, '%', (long long)n) : head(b, '*', (long long)(2 * n));
}

int resp_set(st_buf_t *b, int proto, size_t n)
{
    return head(b, proto >= 3 ? '~' : '*', (long long)n);
}

/* v in shortest round-trip digits, no exponent; RESP3 spells the
 * infinities inf/-inf and NaN nan. */
static int fmt_value(st_buf_t *b, double v, int proto)
{
    if (v != v)
        return ST_BUF_LIT(b, "nan");
    if (v > 1.7976931348623157e308)
        return proto >= 3 ? ST_BUF_LIT(b, "inf") : ST_BUF_LIT(b, "+inf");
    if (v < -1.7976931348623157e308)
        return ST_BUF_LIT(b, "-inf");
    if (v == 0)
        return v == 0 && 1 / v < 0 ? ST_BUF_LIT(b, "-0") : ST_BUF_LIT(b, "0");
    return st_fmt_double(b, v);
}

int resp_double(st_buf_t *b, int proto, double v)
{
    int rc = st_buf_put_u8(b, proto >= 3 ? ',' : '+');
    if (!rc)
        rc = fmt_value(b, v, proto);
    if (!rc)
        rc = st_buf_append(b, "\r\n", 2);
    return rc;
}

int resp_double_bulk(st_buf_t *b, double v)
{
    st_buf_t t;
    st_buf_init(&t);
    int rc = fmt_value(&t, v, 2);
    if (!rc)
        rc = resp_bulk(b, t.data, t.len);
    st_buf_deinit(&t);
    return rc;
}

int resp_arg_is(const resp_arg_t *a, const char *word)
{
    size_t n = strlen(word);
    return a->len == n && strncasecmp(a->p, word, n) == 0;
}
