/*
 * metrics — a small, thread-safe metrics registry rendered in the Prometheus
 * text exposition format (version 0.0.4), for /metrics on router and node.
 *
 *   metrics_t *reg;  metrics_create(&reg);
 *   metric_counter_t *ok = metrics_counter(reg, "strata_http_responses_total",
 *                                          "HTTP responses sent.", "code", "2xx", NULL);
 *   metric_counter_inc(ok);                       (any thread, lock-free)
 *   metrics_render(reg, &buf);                    (any thread)
 *
 * Series: a family (name, help, type) holds series that differ by a label
 * set fixed at registration, given as a NULL-terminated list of name, value
 * pairs. Registering the same name and labels again returns the same series
 * (so two servers can share a family, and registration is idempotent); the
 * same name with another type, an invalid metric or label name, or a
 * missing value returns NULL. Series live as long as the registry.
 *
 * Kinds:
 *   - counter: uint64 add (atomic, relaxed);
 *   - gauge: double set/add (atomic bits, CAS for add);
 *   - callback: a function evaluated at render time (typed counter or
 *     gauge), e.g. for engine stats; it runs with the registry lock held and
 *     must not call back into the registry;
 *   - histogram: fixed buckets (upper bounds given at registration),
 *     observe() is lock-free; rendered as _bucket{le=...}, _sum, _count;
 *   - collector: a function that appends raw exposition text (several
 *     series at once) after the registered families.
 *
 * Rendering order: families in registration order, series in registration
 * order inside a family; label values are escaped (\\, \", \n), help text
 * too (\\, \n). Values are st_fmt_double_g(): the first of %.15g, %.16g,
 * %.17g that reads back as the same double; +Inf, -Inf, NaN.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"

typedef struct metrics metrics_t;
typedef struct metric_counter metric_counter_t;
typedef struct metric_gauge metric_gauge_t;
typedef struct metric_hist metric_hist_t;

typedef enum metric_type {
    METRIC_COUNTER = 0,
    METRIC_GAUGE = 1,
    METRIC_HISTOGRAM = 2,
} metric_type_t;

/* Create an empty registry. Returns 0 or ST_ENOMEM. */
int metrics_create(metrics_t **out);
/* Free the registry and every series in it. Nobody may use them after. */
void metrics_destroy(metrics_t *m);

/* Register (or find) a counter. Trailing args: label name, value, ..., NULL. */
metric_counter_t *metrics_counter(metrics_t *m, const char *name, const char *help, ...)
    __attribute__((sentinel));
/* Register (or find) a gauge (starts at 0). */
metric_gauge_t *metrics_gauge(metrics_t *m, const char *name, const char *help, ...)
    __attribute__((sentinel));
/*
 * Register a histogram with `nbounds` strictly increasing finite upper
 * bounds (the +Inf bucket is implicit). bounds are copied. If the series
 * exists its bounds are kept.
 */
metric_hist_t *metrics_histogram(metrics_t *m, const char *name, const char *help,
                                 const double *bounds, size_t nbounds, ...)
    __attribute__((sentinel));
/*
 * Register a series whose value is fn(arg), evaluated at render time.
 * type is METRIC_COUNTER or METRIC_GAUGE. Returns 0, ST_EINVAL, ST_EEXIST
 * (same name and labels already registered) or ST_ENOMEM.
 */
int metrics_callback(metrics_t *m, const char *name, const char *help, metric_type_t type,
                     double (*fn)(void *arg), void *arg, ...) __attribute__((sentinel));
/*
 * Register a collector: fn appends complete exposition text (with its own
 * # HELP/# TYPE lines) to out at render time; a non-zero return aborts the
 * render with that code. Helpers: metrics_write_value, metrics_write_label_value.
 */
int metrics_collector(metrics_t *m, int (*fn)(void *arg, st_buf_t *out), void *arg);

void metric_counter_add(metric_counter_t *c, uint64_t n);
void metric_counter_inc(metric_counter_t *c);
uint64_t metric_counter_get(const metric_counter_t *c);

void metric_gauge_set(metric_gauge_t *g, double v);
void metric_gauge_add(metric_gauge_t *g, double d);
double metric_gauge_get(const metric_gauge_t *g);

void metric_hist_observe(metric_hist_t *h, double v);
/* Snapshot for tests: total count and sum. */
uint64_t metric_hist_count(const metric_hist_t *h);
double metric_hist_sum(const metric_hist_t *h);

/* All of the above accept NULL for the series and then do nothing (so code
 * runs unchanged without a registry); the getters return 0. */

/* Append the whole exposition to out. Returns 0 or a negative ST_E* code. */
int metrics_render(metrics_t *m, st_buf_t *out);

/* The content type to send with the rendered text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Helpers for collectors: a sample value, and an escaped label value
 * (without quotes). */
int metrics_write_value(st_buf_t *out, double v);
int metrics_write_label_value(st_buf_t *out, const char *s, size_t len);

/* Standard latency buckets in seconds (1 ms .. 60 s), for
 * strata_*_duration_seconds. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

#endif
