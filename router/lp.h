/*
 * lp — a zero-copy InfluxDB line protocol parser.
 *
 * lp_parse() walks a request body line by line. For each good line it calls
 * on_point with an lp_point_t whose slices point into the body (or, for a
 * token that contained escapes, into a per-parser scratch arena that is reset
 * at the start of every line). For each bad line it calls on_error with the
 * 1-based line number and a reason, then continues with the next line
 * (InfluxDB's partial-write behaviour). Nothing is printed.
 *
 * Grammar (influxdata/line-protocol EBNF; InfluxDB 1.x/2.x behaviour):
 *
 *   line   = {" "} [ point | "#" comment ] ( "\n" | "\r\n" | end-of-body )
 *   point  = measurement {"," key "=" tagval} " "{" "} field {"," field}
 *            [ " "{" "} timestamp ] {" "}
 *   field  = key "=" ( float | int "i" | uint "u" | bool | '"' string '"' )
 *
 * - Escapes: in the measurement `\,` and `\ `; in tag keys, tag values and
 *   field keys `\,` `\=` `\ `. A backslash before any other character is a
 *   literal backslash (so `\\,` is a literal backslash followed by an escaped
 *   comma, as in influxdata/line-protocol). A newline can never be escaped.
 * - Control characters (0x00-0x1f, 0x7f) are rejected outside string values;
 *   the only separator is the space (tabs are not whitespace). An unescaped
 *   '=' in a tag value is an error.
 * - Strings: `\"` -> `"`, `\\` -> `\`, any other backslash is literal. A
 *   string may contain raw newlines (InfluxDB 1.x and the Go decoder accept
 *   them); the line counter still counts them, and the point's line is the
 *   line where it starts. String fields are reported (type LP_STRING, value
 *   not converted) but are not turned into series.
 * - Floats: [-] digits [. [digits]] [e|E [+|-] digits], or [-] . digits [exp].
 *   No leading '+', no inf/nan, no hex. Values are correctly rounded
 *   (bit-identical to strtod in the "C" locale); results that overflow to
 *   infinity are rejected.
 * - Integers: [-] digits "i", int64 range. Unsigned: digits "u", uint64
 *   range. Booleans: t T true True TRUE f F false False FALSE (stored 1/0).
 * - Timestamp: optional [-] digits (int64) in the parser's precision,
 *   converted to milliseconds with floor division (-1 ns -> -1 ms, so a
 *   point always lands in the millisecond that contains it). Precision s,
 *   m or h that overflows int64 ms is rejected. A line without a timestamp gets
 *   the parser's default timestamp (already in ms).
 * - At least one field; measurement, tag keys, tag values and field keys
 *   must not be empty; all of them and string values must be valid UTF-8.
 * - Duplicate tag keys reject the line (InfluxDB 1.x: "duplicate tags").
 *   Duplicate field keys: the last value wins (InfluxDB 1.x: fields are
 *   collected into a map), the field keeps its first position.
 * - Tags are delivered sorted by key (bytewise), unescaped.
 *
 * Series mode (opts.series): for every numeric field f the parser builds the
 * label set tags + {__name__ = measurement "_" f}, sorted by name, and checks
 * the data-model limits (docs/api.md) once per line: at most 64 labels (tags + __name__),
 * tag keys 1..256 bytes, tag values <= 4096 bytes, metric names 1..256 bytes,
 * no tag called "__name__". A violation rejects the whole line with a reason.
 * With opts.names_only the label sets are not built (a series is its
 * point's tags with its __name__ label inserted before tag name_pos): the
 * router's write path encodes the tags once per point, not once per field.
 *
 * Threads: a parser is single-threaded; use one per connection/worker.
 */
#ifndef LP_H
#define LP_H

#include <stddef.h>
#include <stdint.h>

#include "st_labels.h"

#define LP_DEFAULT_MAX_LINE (1u << 20)
#define LP_DEFAULT_MAX_FIELDS 1024u

typedef enum lp_precision {
    LP_PREC_NS = 0, /* default */
    LP_PREC_US,
    LP_PREC_MS,
    LP_PREC_S,
    LP_PREC_M, /* minutes */
    LP_PREC_H, /* hours */
} lp_precision_t;

typedef enum lp_ftype {
    LP_FLOAT = 0,
    LP_INT,
    LP_UINT,
    LP_BOOL,
    LP_STRING,
} lp_ftype_t;

typedef struct lp_field {
    const char *name; /* unescaped key */
    uint32_t name_len;
    lp_ftype_t type;
    /* FLOAT/INT/UINT/BOOL: the value as float64 (bool: 1 or 0); STRING: 0. */
    double value;
    /* INT: exact value in i; UINT: exact value in u; BOOL: 0/1 in u. */
    int64_t i;
    uint64_t u;
    /* STRING: unescaped contents (not NUL-terminated). */
    const char *str;
    uint32_t str_len;
} lp_field_t;

/* One numeric field as a series sample (series mode only). */
typedef struct lp_series {
    const st_label_t *labels; /* sorted by name, includes __name__ (NULL: names_only) */
    uint32_t nlabels;
    const st_label_t *name; /* its __name__ label (measurement "_" field) */
    uint32_t field;         /* index into lp_point_t.fields */
    double value;
} lp_series_t;

typedef struct lp_point {
    const char *measurement; /* unescaped */
    uint32_t measurement_len;
    uint32_t ntags;
    const st_label_t *tags; /* sorted by name, unique names */
    const lp_field_t *fields;
    uint32_t nfields; /* unique keys, input order (first occurrence) */
    uint32_t nseries; /* series mode: one per numeric field */
    const lp_series_t *series;
    uint32_t name_pos; /* series mode: the tags sorting before __name__ */
    int64_t ts_ms;
    uint64_t line; /* 1-based line number where the point starts */
} lp_point_t;

typedef struct lp_opts {
    lp_precision_t precision;
    int64_t default_ts_ms; /* timestamp for lines without one */
    size_t max_line;       /* bytes, excluding the newline; 0 = LP_DEFAULT_MAX_LINE */
    uint32_t max_fields;   /* per line; 0 = LP_DEFAULT_MAX_FIELDS */
    int series;            /* nonzero: build and validate lp_point_t.series */
    int names_only;        /* series mode without label arrays: a series' labels
                              are the tags with its name at name_pos (the
                              caller builds them if it needs them) */
} lp_opts_t;

typedef struct lp_stats {
    uint64_t lines_ok;        /* points delivered */
    uint64_t lines_bad;       /* lines rejected */
    uint64_t fields;          /* fields in delivered points (after dedup) */
    uint64_t samples;         /* numeric fields in delivered points */
    uint64_t strings_skipped; /* string fields in delivered points */
} lp_stats_t;

typedef struct lp_parser lp_parser_t;

/*
 * Called for each good line. The point and every slice in it are valid only
 * during the call. Return 0 to go on; a negative ST_E* code stops lp_parse(),
 * which returns that code.
 */
typedef int (*lp_point_fn)(void *arg, const lp_point_t *pt);
/*
 * Called for each bad line: `line` is 1-based, `code` is ST_EPARSE (syntax),
 * ST_EINVAL (invalid UTF-8, reserved name) or ST_ELIMIT (a limit), `reason`
 * a NUL-terminated sentence without the line prefix, e.g. "invalid boolean
 * 'tru' for field 'up'". Tokens quoted in reasons are truncated and
 * non-printable/non-ASCII bytes appear as \xNN. Valid only during the call.
 */
typedef void (*lp_error_fn)(void *arg, uint64_t line, int code, const char *reason);

/* Create a parser; opts may be NULL (all defaults). ST_EINVAL, ST_ENOMEM. */
int lp_parser_create(const lp_opts_t *opts, lp_parser_t **out);
void lp_parser_destroy(lp_parser_t *p);
/* Per-request settings (e.g. the ?precision= parameter and the clock). */
void lp_parser_set_precision(lp_parser_t *p, lp_precision_t prec);
void lp_parser_set_default_ts(lp_parser_t *p, int64_t ts_ms);

/*
 * Parse a whole body. on_point and on_error may be NULL. Returns the number
 * of bad lines (>= 0), or a negative code: ST_ENOMEM, or what on_point
 * returned. Line numbers restart at 1 for every call.
 */
int lp_parse(lp_parser_t *p, const char *buf, size_t len, lp_point_fn on_point,
             lp_error_fn on_error, void *arg);

/* Cumulative counters since create (or the last reset). */
void lp_parser_stats(const lp_parser_t *p, lp_stats_t *out);
void lp_parser_stats_reset(lp_parser_t *p);

/*
 * Parse a precision name, from one table: "ns" or "n", "us" or "u", "ms",
 * "s", "m", "h" (InfluxDB 1.x's names, plus "ns" and "us"); an empty string
 * means ns. Returns 0 or ST_EINVAL.
 */
int lp_precision_parse(const char *s, size_t n, lp_precision_t *out);
/* The accepted names, "ns, n, us, u, ms, s, m, h", for error messages. */
const char *lp_precision_names(void);

/*
 * Convert a timestamp in `prec` to milliseconds (floor division). Returns 0,
 * or ST_ELIMIT if the result does not fit in int64.
 */
int lp_ts_to_ms(int64_t ts, lp_precision_t prec, int64_t *out);

/*
 * Parse a line-protocol float token [s, s+n) (grammar above) into *out,
 * correctly rounded. Returns 0, ST_EPARSE (syntax) or ST_ELIMIT (overflows
 * to infinity). Exposed for tests and for other text parsers.
 */
int lp_parse_float(const char *s, size_t n, double *out);

#endif
