/*
 * st_text — text helpers every library shares: JSON string escaping (more
 * text helpers join here: number formatting, unescaping, durations).
 * Pure functions on st_buf_t; no allocation beyond the buffer.
 */
#ifndef ST_TEXT_H
#define ST_TEXT_H

#include <stddef.h>

#include <stdint.h>

#include "st_buf.h"

/* Length of the valid UTF-8 sequence at s (1..4) with its code point in
 * *cp, or 0 if the bytes there are not valid UTF-8. */
size_t st_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

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

#endif
