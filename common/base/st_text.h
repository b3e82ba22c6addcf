/*
 * st_text — the one text module every library shares, so each rule is
 * written once:
 *   - UTF-8: decoding one sequence (st_utf8_seq);
 *   - JSON string escaping (st_json_escape, st_json_str);
 *   - numbers: the shortest decimal that reads back as the same double, in
 *     Go's FormatFloat(v, 'f', -1) layout (st_fmt_double, what Prometheus'
 *     JSON API prints) or in C's %g layout at 15..17 digits
 *     (st_fmt_double_g, the metrics exposition and export JSON);
 *   - Go-style quoted strings ("..." '...' `...`) with every Go escape
 *     (st_unquote_go), as PromQL and label selectors spell strings;
 *   - Prometheus metric and label names (st_prom_metric_name_ok,
 *     st_prom_label_name_ok);
 *   - durations: "1h30m"-style parsing (st_duration_parse) and the two
 *     spellings in use (st_fmt_duration: "1h30m"; st_fmt_duration_one: one
 *     number and the largest unit that divides it, "90s", "2h").
 * Pure functions; output goes to an st_buf_t or a caller's buffer.
 */
#ifndef ST_TEXT_H
#define ST_TEXT_H

#include <stddef.h>

#include <stdint.h>

#include "st_buf.h"

/* Length of the valid UTF-8 sequence at s (1..4) with its code point in
 * *cp, or 0 if the bytes there are not valid UTF-8. */
size_t st_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);
/* Encode code point cp (<= U+10FFFF, not a surrogate) as UTF-8 at d; returns 1..4 bytes. */
size_t st_utf8_put(char *d, unsigned cp);
/* Value of a hex digit, or -1. */
int st_hexval(int c);
/* 1 if [p, p+n) is valid UTF-8 (no overlongs, no surrogates), else 0: ASCII
 * runs are skipped 8 bytes at a time, the rest goes through st_utf8_seq(). */
int st_utf8_valid(const char *p, size_t n);

/*
 * Append s as the inside of a JSON string (no quotes): '"', '\\' and control
 * characters are escaped (\n \r \t \b \f or \u00XX), U+2028/U+2029 become
 * \u2028/\u2029, and each byte that is not part of valid UTF-8 (overlong
 * forms, surrogates, > U+10FFFF, truncated sequences) becomes U+FFFD, so the
 * output is always valid JSON and valid UTF-8. Returns 0 or ST_ENOMEM.
 */
int st_json_escape(st_buf_t *b, const void *s, size_t len);
/* Same with the surrounding double quotes. */
int st_json_str(st_buf_t *b, const void *s, size_t len);

/* ---- numbers -------------------------------------------------------------- */

/*
 * Shortest round-trip digits of a finite v > 0: fills dig (room for 18,
 * NUL-terminated) with the fewest significant digits d1 d2 ... that parse
 * back to v (the closest such string when several exist, as Go picks), no
 * trailing zeros, and *exp10 with v ~= d1.d2d3... * 10^exp10. Returns the
 * digit count (1..17). An exact integer path (Ryu-style digit removal on
 * 128-bit bounds) covers [1e-10, 1e16), what query results mostly hold; a
 * Clinger fast path and then snprintf/strtod decide the rest.
 */
int st_shortest_digits(double v, char *dig, int *exp10);
/* The snprintf/strtod reference for st_shortest_digits (tests, fuzzing):
 * the closest decimal at the first of 15, 16, 17 digits that reads back as
 * v. Equal to st_shortest_digits except for exact powers of two, whose
 * lower neighbour is nearer (there Go may print a shorter string). */
int st_shortest_digits_ref(double v, char *dig, int *exp10);
/*
 * Append v as Go's strconv.FormatFloat(v, 'f', -1, 64) prints it (no
 * exponent: 1e+20 -> "100000000000000000000", 1e-7 -> "0.0000001"), with
 * NaN, +Inf, -Inf and -0 spelled so. This is Prometheus' JSON sample value.
 * Returns 0 or ST_ENOMEM.
 */
int st_fmt_double(st_buf_t *b, double v);
/* The longest st_fmt_double text: "-0." 323 zeros and 17 digits. */
#define ST_FMT_DOUBLE_MAX 344
/* The same text written at out (room for ST_FMT_DOUBLE_MAX bytes, no NUL);
 * returns its length. For writers that reserve once for several fields. */
size_t st_fmt_double_to(char *out, double v);
/*
 * Append v as the first of printf("%.15g"), "%.16g", "%.17g" that parses
 * back to v (byte-identical to that loop, without the snprintf calls for
 * normal doubles): 0.1, 1e+20, 1e-05, 0.30000000000000004. NaN, +Inf, -Inf.
 * This is the metrics exposition and export JSON number.
 */
int st_fmt_double_g(st_buf_t *b, double v);

/* ---- Go quoted strings ---------------------------------------------------- */

typedef enum st_unquote_err {
    ST_UNQ_OK = 0,
    ST_UNQ_UNTERMINATED,   /* no closing quote (or a newline inside "" / '') */
    ST_UNQ_BAD_X,          /* \x not followed by two hex digits */
    ST_UNQ_BAD_U,          /* \u / \U not followed by 4 / 8 hex digits */
    ST_UNQ_BAD_CODEPOINT,  /* \u / \U names a surrogate or a value > U+10FFFF */
    ST_UNQ_BAD_OCTAL,      /* \NNN not three octal digits, or > 255 */
    ST_UNQ_UNKNOWN_ESCAPE, /* \ followed by anything else */
    ST_UNQ_BAD_UTF8,       /* the unescaped bytes are not valid UTF-8 */
} st_unquote_err_t;

typedef struct st_unquote {
    size_t len;    /* bytes written to dst (without the NUL) */
    size_t end;    /* after the closing quote; on error where scanning stopped */
    size_t errpos; /* on error: the backslash of the bad escape, or the opening quote */
    char esc;      /* on an escape error: the letter after the backslash */
} st_unquote_t;

/*
 * Read the quoted string whose opening quote (" ' or `) is s[start], with
 * Go's rules: `raw` strings take every byte as is (newlines too); in "" and
 * '' a newline ends the string unterminated, and the escapes are \a \b \f
 * \n \r \t \v \\ \" \' \xHH \NNN (octal) \uHHHH \UHHHHHHHH (as UTF-8).
 * The result must be valid UTF-8. dst needs room for the quoted text plus a
 * NUL (unescaping never lengthens). Returns ST_UNQ_OK with res->len and
 * res->end set, or the error with res->end, res->errpos and res->esc.
 */
st_unquote_err_t st_unquote_go(const char *s, size_t n, size_t start, char *dst, st_unquote_t *res);
/* The PromQL lexer's message for e ("unterminated quoted string", ...). */
const char *st_unquote_strerror(st_unquote_err_t e);

/* ---- Prometheus names ----------------------------------------------------- */

/* 1 if s[0..n) is a label name: [A-Za-z_][A-Za-z0-9_]*. */
int st_prom_label_name_ok(const char *s, size_t n);
/* 1 if s[0..n) is a metric name: [A-Za-z_:][A-Za-z0-9_:]*. */
int st_prom_metric_name_ok(const char *s, size_t n);

/* ---- durations ------------------------------------------------------------ */

enum {
    ST_DUR_ORDERED = 1, /* units largest first, each at most once (PromQL) */
    ST_DUR_YEARS = 2,   /* accept "y" (365 days) */
};

/*
 * Parse groups of decimal digits and a unit (ms s m h d w, y with
 * ST_DUR_YEARS; "ms" wins over "m") at s[0..n): "100ms", "1h30m". Stops
 * before the first byte that does not start another group and sets *used.
 * No number and no total may exceed cap. Returns 0 with *ms, ST_EPARSE (no
 * group at s, digits without a unit, or a unit out of order with
 * ST_DUR_ORDERED) or ST_ELIMIT (over cap).
 */
int st_duration_parse(const char *s, size_t n, unsigned flags, int64_t cap, int64_t *ms,
                      size_t *used);
/* Append ms as PromQL spells a duration: "1h30m", "1y2w3d", "-5m", "0s". */
int st_fmt_duration(st_buf_t *b, int64_t ms);
/* One number and the largest of d h m s ms that divides ms exactly:
 * "0", "100ms", "90s", "2h", "30d". Writes into buf and returns it. */
const char *st_fmt_duration_one(char *buf, size_t cap, int64_t ms);

#endif
