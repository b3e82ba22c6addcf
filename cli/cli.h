/*
 * cli — shared helpers of the `strata` command-line client: router and
 * connection plumbing common to every subcommand (options: cli_opts.h),
 * time and duration parsing, number formatting,
 * the progress line and latency percentiles (pure functions, unit-tested in
 * tests/unit/cli/), and the subcommand descriptors.
 *
 * Exit codes of every subcommand: 0 ok, 1 failure (one line on stderr),
 * 2 usage error; import and migrate also 130 when interrupted (SIGINT, SIGTERM).
 */
#ifndef CLI_H
#define CLI_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_json.h"
#include "cli_opts.h"
#include "httpc.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INTERRUPTED 130

/* ---- pure helpers ----------------------------------------------------------------------- */

/*
 * A time for the API as unix seconds: RFC 3339 ("2016-01-01T00:00:00Z",
 * "2016-01-01T02:00:00.5+02:00", "2016-01-01"), unix seconds ("1451606400",
 * "1451606400.25"), "now", or relative to `now`: "-1h", "now-30m", "now+5m".
 * Returns 0 or ST_EINVAL.
 */
int cli_parse_time(const char *s, double now, double *out /* OUT */);

/* A duration: "15s", "1m30s", "500ms", "2h", "1d", "1w", "1y" or plain seconds ("15", "0.5"). */
int cli_parse_duration(const char *s, double *out_s /* OUT */);

/* Nearest-rank percentile (0 <= p <= 100) of an ascending array; 0 when n == 0. */
double cli_percentile(const double *sorted, size_t n, double p);

/* "999", "1.20k", "3.40M", "1.05G" (SI, three significant digits). */
void cli_fmt_count(char *out, size_t cap, double v);
/* "512 B", "1.5 kB", "120.3 MB", "2.10 GB" (SI). */
void cli_fmt_bytes(char *out, size_t cap, double bytes);
/* "0:42", "12:05", "1:02:03"; "--:--" when negative or not finite. */
void cli_fmt_eta(char *out, size_t cap, double secs);

typedef struct cli_progress {
    uint64_t bytes_done;
    uint64_t bytes_total; /* 0 = unknown (a pipe) */
    uint64_t lines;
    uint64_t samples;
    uint64_t rejected;
    double elapsed_s;
} cli_progress_t;

/*
 * The progress line. tty: "[#####-----]  45.2%  120.3 MB/266.0 MB  1.20M lines
 * 2.40M samples/s  ETA 0:42" cut to `width` - 1 columns (no newline); not a
 * tty: a plain "progress: ..." key=value line. Returns the length written.
 */
size_t cli_progress_format(char *out, size_t cap, const cli_progress_t *p, bool tty, int width);

/* Numeric fields of one line-protocol line (string fields excluded); 0 for blank/comment. */
uint32_t cli_lp_count_fields(const char *line, size_t n);

/*
 * Samples of one line of the export format ({"metric":..,"values":[..],
 * "timestamps":[..]}): the entries of its "timestamps" array, counted
 * without parsing the line; 0 when there is none.
 */
uint64_t cli_json_line_samples(const char *line, size_t n);

/*
 * Append a series in PromQL notation: name{a="b",c="d"} from a Prometheus
 * "metric" object; names outside [a-zA-Z_:][a-zA-Z0-9_:]* use the quoted
 * form {"my.name","a.b"="c"}. Values are escaped (\\ \" \n).
 */
int cli_fmt_series(st_buf_t *b, json_t *metric);
/* Append s as a CSV field (quoted when it holds , " CR or LF). */
int cli_csv_field(st_buf_t *b, const char *s, size_t n);
/* "2016-01-01T00:00:00.000Z" for unix seconds. */
void cli_fmt_time(char *out, size_t cap, double unix_s);

/* ---- plumbing ----------------------------------------------------------------------------- */

/* Print "strata CMD: message" to stderr; returns CLI_EXIT_FAIL. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "strata CMD: message" and "Try 'strata CMD --help'." to stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * stdout for data (bench --print, export): 0, CLI_STDOUT_CLOSED when the
 * reader is gone (EPIPE: `| head` closed the pipe; the command stops
 * quietly with exit 0, as Unix filters do), or ST_EIO (errno says why).
 */
#define CLI_STDOUT_CLOSED 1
int cli_stdout_write(const void *p, size_t n);
int cli_stdout_flush(void);

/*
 * Ctrl-C for long commands (import, migrate): SIGINT and SIGTERM set
 * cli_interrupted (the command stops at a safe point and says where) and
 * restore the default action, so a second one ends the process at once.
 */
extern atomic_bool cli_interrupted;
void cli_catch_interrupt(void);

/* --router value, else $STRATA_ROUTER, else the default; ST_EINVAL if it does not parse. */
int cli_router(const char *opt, httpc_url_t *out /* OUT */, const char **shown /* OUT */);

/* Parse an unsigned integer option in [min, max]; ST_EINVAL otherwise. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out /* OUT */);

/* --consistency values the router takes (sync|quorum|async are the documented ones). */
#define CLI_CONSISTENCY_CHOICES "sync|quorum|async|one|all|any"

/* Connect timeout and the default --timeout (CLI_IO_TIMEOUT_S, cli_opts.h). */
#define CLI_CONNECT_TIMEOUT_MS 5000
#define CLI_IO_TIMEOUT_MS (CLI_IO_TIMEOUT_S * 1000)

/*
 * The router `c` names: 0, or CLI_EXIT_USAGE after printing "bad router
 * URL" for command `cmd`. --router wins; else with --config the file is
 * loaded and checked (CLI_EXIT_FAIL with topo's "FILE:LINE: reason") and its
 * [router] listen (default 127.0.0.1:8086; a wildcard host becomes loopback)
 * is the router; else cli_router() ($STRATA_ROUTER, then the default).
 * *shown stays valid until the next call.
 */
int cli_common_router(const char *cmd, const cli_common_t *c, httpc_url_t *url /* OUT */,
                      const char **shown /* OUT */);
/* A connection to `url` with the connect timeout and c's --timeout; NULL when out of memory. */
httpc_conn_t *cli_common_conn(const cli_common_t *c, const httpc_url_t *url);

/* GET target and collect the body (at most 256 MiB). */
int cli_get(httpc_conn_t *c, const char *target, httpc_resp_t *resp, st_buf_t *body);

/* The subcommands (cmd_*.c), dispatched by strata.c. */
extern const cli_cmd_t cli_cmd_status, cli_cmd_write, cli_cmd_import, cli_cmd_migrate,
    cli_cmd_export, cli_cmd_query, cli_cmd_bench, cli_cmd_delete, cli_cmd_user, cli_cmd_rule,
    cli_cmd_repair;

#endif
