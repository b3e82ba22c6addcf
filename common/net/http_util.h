/*
 * http_util — pure helpers for the HTTP layer (no sockets, no libuv).
 *
 *   - query strings (application/x-www-form-urlencoded): percent-decoding,
 *     '+' as space, repeated keys kept in order (match[]=a&match[]=b);
 *   - header lookup (case-insensitive names, comma-separated token lists);
 *   - time parameters: RFC 3339 or unix seconds (with a fraction) -> ms;
 *   - gzip inflate with a hard cap on the output (zip bombs -> ST_ELIMIT).
 *
 * (JSON escaping lives in base: st_text.h.)
 *
 * Everything here takes (pointer, length) input that need not be
 * NUL-terminated, returns 0 or a negative ST_E* code, and is safe on
 * hostile input (each function has a fuzz target in tests/fuzz).
 */
#ifndef HTTP_UTIL_H
#define HTTP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"

/* ---- query strings ------------------------------------------------------ */

/* One decoded parameter. key and value are NUL-terminated and hold no other
 * NUL (http_params_parse refuses "%00" and raw NUL bytes), so the C string
 * is always the whole value. */
typedef struct http_param {
    const char *key;
    const char *value;
    size_t key_len;
    size_t value_len;
} http_param_t;

/* A list of parameters in the order they appeared. Value type: _init/_deinit.
 * The strings live in memory owned by the list and stay valid (and at the
 * same address) until http_params_deinit(). */
typedef struct http_params {
    http_param_t *items;
    size_t n;
    size_t cap;
    void *chunks;  /* private: the decoded strings */
    char err[160]; /* why the last http_params_parse failed, "" if it did not */
} http_params_t;

void http_params_init(http_params_t *p);
void http_params_deinit(http_params_t *p);
/*
 * Parse a query string or form body "a=1&b=x+y&match[]=%7Bj%3D%22a%22%7D"
 * and append its pairs to p. Pairs are split on '&'; empty pairs are
 * skipped; a pair without '=' has the value "". Returns 0, ST_EPARSE on an
 * invalid percent escape or on a NUL byte ("%00" or raw) in a decoded key
 * or value (p's pairs are left unchanged and p->err says which parameter
 * and where: `parameter "query": NUL byte at position 11`, the position
 * being the 0-based byte offset in the decoded value), or ST_ENOMEM.
 */
int http_params_parse(http_params_t *p, const char *s, size_t len);
/* The first value of key, or NULL. */
const char *http_params_get(const http_params_t *p, const char *key);
/* Number of pairs named key. */
size_t http_params_count(const http_params_t *p, const char *key);
/*
 * Iterate over the pairs named key, in order:
 *     size_t it = 0; const http_param_t *m;
 *     while ((m = http_params_next(p, "match[]", &it)) != NULL) ...
 */
const http_param_t *http_params_next(const http_params_t *p, const char *key, size_t *iter);

/*
 * Percent-decode [src, src+len) into dst (at least len bytes; dst == src is
 * allowed). With plus_space, '+' becomes ' ' (query strings, not paths).
 * Returns the decoded length, or ST_EPARSE on '%' not followed by two hex
 * digits. dst is not NUL-terminated.
 */
long http_pct_decode(char *dst, const char *src, size_t len, int plus_space);

/* ---- headers ------------------------------------------------------------ */

/* A header: NUL-terminated name and value (value without surrounding
 * whitespace). */
typedef struct http_header {
    const char *name;
    const char *value;
} http_header_t;

/* The value of the first header called name (ASCII case-insensitive), or
 * NULL. */
const char *http_header_find(const http_header_t *h, size_t n, const char *name);
/* 1 if the comma-separated list `value` contains `token` (case-insensitive,
 * whitespace and ";params" around each item ignored), else 0. NULL -> 0. */
int http_has_token(const char *value, const char *token);
/* ASCII case-insensitive equality of two NUL-terminated strings. */
int http_str_ieq(const char *a, const char *b);

/* ---- time --------------------------------------------------------------- */

/*
 * Parse a Prometheus API time into milliseconds since the epoch:
 *   - RFC 3339: "2026-11-21T19:50:45Z", "2026-11-21T19:50:45.123456+02:00"
 *     ('t'/'z' in lower case and a space for 'T' are accepted; fractions of
 *     any length are truncated to the millisecond; second 60 is refused);
 *   - unix seconds: "1700000000", "-1.5", "1700000000.1234" (rounded to the
 *     nearest ms, halves away from zero), "1.7e9".
 * Returns 0, ST_EPARSE for anything else (empty, NaN, Inf, garbage), or
 * ST_ELIMIT when the value does not fit in int64 milliseconds.
 */
int http_parse_time_ms(const char *s, size_t len, int64_t *out_ms);

/* ---- gzip --------------------------------------------------------------- */

/*
 * Inflate a gzip body (RFC 1952; several concatenated members are accepted,
 * as gzip(1) writes them) and append the result to out. At most max_out
 * bytes are produced: more -> ST_ELIMIT, whatever the ratio (zip bomb).
 * Returns 0, ST_ECORRUPT (bad header, bad data, CRC mismatch, truncated
 * input, trailing garbage), ST_ELIMIT or ST_ENOMEM. On error out->len is
 * restored to its value on entry.
 */
int http_gunzip(const void *in, size_t len, size_t max_out, st_buf_t *out);

#endif
