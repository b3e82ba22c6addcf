/*
 * export_json — one series as a line of VictoriaMetrics' export format:
 *
 *   {"metric":{"__name__":"m","a":"b"},"values":[1.5,2],"timestamps":[1000,2000]}
 *
 * Values are printed with the fewest significant digits that parse back to
 * the same float64 (so a round trip through JSON is bit-exact for every
 * finite value); NaN, +Inf and -Inf are written as the tokens NaN, Infinity
 * and -Infinity (what Python's json, VictoriaMetrics and most JavaScript
 * JSON5 readers accept). Used by the node's local export and the router.
 */
#ifndef EXPORT_JSON_H
#define EXPORT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_labels.h"

/* Append a float64: integers below 2^53 in full ("1000000000000000"),
 * others as st_fmt_double_g() (shortest round-trip digits, %g layout). */
int export_json_number(st_buf_t *b, double v);
/* Append `{"k":"v",...}` for a label set (JSON-escaped). */
int export_json_labels(st_buf_t *b, const st_label_t *l, size_t n);
/* Append one export line (with the trailing newline). */
int export_json_line(st_buf_t *b, const st_label_t *l, size_t nl, const int64_t *ts,
                     const double *v, size_t n);

#endif
