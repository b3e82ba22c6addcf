/*
 * import — decoders for the import formats of the router's /api/v1/import*
 * endpoints, and the CSV column spec shared by CSV import and export. Pure
 * functions over a body in memory (no sockets, no libuv), so they are
 * unit-tested and fuzzed on their own.
 *
 * Every decoder walks the body line by line. A good line becomes one or
 * more series (labels sorted by name, __name__ included, validated with
 * st_labels_validate; labels with an empty value are dropped, as in
 * Prometheus) handed to on_series with their samples; a bad line goes to
 * on_error with its 1-based number and a reason, and decoding goes on
 * (partial writes, like line protocol). Nothing is printed.
 *
 *   JSON lines (VictoriaMetrics' export format, what /api/v1/export writes):
 *     {"metric":{"__name__":"m","a":"b"},"values":[1.5,2],"timestamps":[1000,2000]}
 *     keys in any order, JSON whitespace allowed; values are JSON numbers or
 *     the tokens NaN, Infinity, -Infinity (export_json.h writes them so);
 *     timestamps are integers (ms). Numbers are correctly rounded, so an
 *     export read back is bit-identical (NaN is stored as IMPORT_NAN_BITS,
 *     the one NaN export_json's "NaN" stands for).
 *   Prometheus text exposition format 0.0.4:
 *     name{label="value",...} value [timestamp_ms]   (# lines skipped)
 *     values as Go's ParseFloat reads them in decimal (NaN, +Inf, -Inf,
 *     Inf, Infinity in any case, an optional sign); label values with
 *     \\ \" \n escapes; lines without a timestamp get default_ts_ms.
 *   CSV (RFC 4180 fields; quoted fields may not span lines), described by a
 *     VictoriaMetrics column spec (imp_csv_spec_parse): each row gives one
 *     sample per non-empty metric column, labelled by the label columns,
 *     at the time column (default_ts_ms without one).
 *
 * Limits: IMPORT_MAX_LINE bytes per line (JSON lines may be long: one
 * series' samples), ST_LABELS_MAX labels and the label size limits of
 * st_labels.h; a CSV spec has at most IMPORT_CSV_MAX_COLS entries and column
 * numbers up to IMPORT_CSV_MAX_COL.
 *
 * Threads: an imp_t is single-threaded (scratch buffers); use one per worker.
 */
#ifndef IMPORT_H
#define IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_labels.h"

#define IMPORT_MAX_LINE (64u << 20)           /* bytes of one line */
#define IMPORT_CSV_MAX_COLS 128               /* entries of a column spec */
#define IMPORT_CSV_MAX_COL 1024               /* highest column number */
#define IMPORT_REASON_MAX 200                 /* bytes of a reason, NUL included */
#define IMPORT_NAN_BITS 0x7ff8000000000001ull /* Prometheus' "normal" NaN */

typedef struct imp imp_t;
typedef struct imp_csv_spec imp_csv_spec_t;

/* One series of a good line: labels sorted, valid; n >= 1 samples. Valid only
 * during the call. Return 0 to go on; a negative ST_E* code stops decoding. */
typedef int (*imp_series_fn)(void *arg, uint64_t line, const st_label_t *labels, size_t nlabels,
                             const int64_t *ts, const double *v, size_t n);
/* A bad line: 1-based number, a printable NUL-terminated reason. */
typedef void (*imp_error_fn)(void *arg, uint64_t line, const char *reason);

/* Returns 0 or ST_ENOMEM. */
int imp_create(imp_t **out);
void imp_destroy(imp_t *d);

/* Decoders: the number of bad lines (>= 0), or a negative code (ST_ENOMEM,
 * or what on_series returned). A line that yields no series (blank,
 * comment, a CSV row whose metric cells are all empty) is neither. */
int imp_json(imp_t *d, const char *body, size_t len, imp_series_fn on_series, imp_error_fn on_error,
             void *arg);
int imp_prom(imp_t *d, const char *body, size_t len, int64_t default_ts_ms, imp_series_fn on_series,
             imp_error_fn on_error, void *arg);
int imp_csv(imp_t *d, const imp_csv_spec_t *spec, const char *body, size_t len,
            int64_t default_ts_ms, imp_series_fn on_series, imp_error_fn on_error, void *arg);

/*
 * Parse a column spec. Import syntax (VictoriaMetrics' import/csv):
 *   <col>:metric:<name> | <col>:label:<name> | <col>:time:<fmt>, comma-separated,
 *   col 1-based; fmt unix_s, unix_ms, unix_ns or rfc3339; at least one metric
 *   column, at most one time column, each column used once.
 * With for_export set, VictoriaMetrics' export/csv syntax is accepted too:
 *   __name__, __value__, __timestamp__[:fmt] (default unix_ms) and label
 *   names, one per output column in order.
 * Returns 0 with *out, or ST_EINVAL with a reason in err, or ST_ENOMEM.
 */
int imp_csv_spec_parse(const char *s, size_t n, int for_export, imp_csv_spec_t **out, char *err,
                       size_t errlen);
void imp_csv_spec_free(imp_csv_spec_t *spec);

/*
 * Append the CSV rows of one series (one row per sample, "\n"-terminated).
 * Import-syntax spec: the metric column named like the series' __name__
 * holds the value, other metric columns stay empty (the import skips them),
 * so an export read back with the same spec is the same data. Returns 0, or
 * ST_ENOMEM.
 */
int imp_csv_rows(st_buf_t *b, const imp_csv_spec_t *spec, const st_label_t *labels, size_t nlabels,
                 const int64_t *ts, const double *v, size_t n);

/* Parse a float as Prometheus' text format and the CSV import read it (see
 * above): 0, or ST_EPARSE. NaN gives IMPORT_NAN_BITS. */
int imp_parse_value(const char *s, size_t n, double *out);

#endif
