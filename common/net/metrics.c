/*
 * metrics — registry and Prometheus text rendering; see metrics.h.
 *
 * Threads: registration, rendering and destruction take the registry mutex;
 * updates to a series touch only its atomics. A series is allocated once and
 * never moves, so the pointers handed out stay valid until metrics_destroy().
 * The label set is escaped and formatted once at registration
 * ("a=\"x\",b=\"y\""), so rendering is string concatenation.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_text.h"

enum { KIND_COUNTER, KIND_GAUGE, KIND_HIST, KIND_CALLBACK };

struct metric_counter {
    _Atomic uint64_t v;
};

struct metric_gauge {
    _Atomic uint64_t bits; /* a double */
};

struct metric_hist {
    size_t nb;
    double *bounds;
    _Atomic uint64_t *counts; /* nb + 1 buckets (the last is +Inf) */
    _Atomic uint64_t sum_bits;
};

typedef struct series {
    struct series *next;
    char *labels; /* formatted, "" for none */
    int kind;
    union {
        struct metric_counter c;
        struct metric_gauge g;
        struct metric_hist h;
        struct {
            double (*fn)(void *);
            void *arg;
        } cb;
    } u;
} series_t;

typedef struct family {
    struct family *next;
    char *name;
    char *help;
    metric_type_t type;
    series_t *head, *tail;
} family_t;

typedef struct collector {
    struct collector *next;
    int (*fn)(void *, st_buf_t *);
    void *arg;
} collector_t;

struct metrics {
    pthread_mutex_t mu;
    family_t *head, *tail;
    collector_t *cols, *cols_tail;
};

const double metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5,   1,      2.5,   5,    10,    30,   60};
const size_t metrics_latency_nbuckets = sizeof metrics_latency_buckets / sizeof(double);

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

int metrics_create(metrics_t **out)
{
    metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return ST_ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return 0;
}

static void series_free(series_t *s)
{
    if (s->kind == KIND_HIST) {
        free(s->u.h.bounds);
        free((void *)s->u.h.counts);
    }
    free(s->labels);
    free(s);
}

void metrics_destroy(metrics_t *m)
{
    if (!m)
        return;
    family_t *f = m->head;
    while (f) {
        family_t *fn = f->next;
        series_t *s = f->head;
        while (s) {
            series_t *sn = s->next;
            series_free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    collector_t *c = m->cols;
    while (c) {
        collector_t *cn = c->next;
        free(c);
        c = cn;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- formatting --------------------------------------------------------- */

/* A NUL-terminated metric name (colons allowed) or label name. */
static int valid_name(const char *s, int allow_colon)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    return allow_colon ? st_prom_metric_name_ok(s, n) : st_prom_label_name_ok(s, n);
}

static int escape(st_buf_t *out, const char *s, size_t len, int quote)
{
    for (size_t i = 0; i < len; i++) {
        const char *e = NULL;
        if (s[i] == '\\')
            e = "\\\\";
        else if (s[i] == '\n')
            e = "\\n";
        else if (s[i] == '"' && quote)
            e = "\\\"";
        int rc = e ? st_buf_append(out, e, 2) : st_buf_put_u8(out, (uint8_t)s[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int metrics_write_label_value(st_buf_t *out, const char *s, size_t len)
{
    return escape(out, s, len, 1);
}

int metrics_write_value(st_buf_t *out, double v)
{
    return st_fmt_double_g(out, v);
}

static int write_u64(st_buf_t *out, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    return st_buf_append(out, tmp, (size_t)n);
}

/* Format the NULL-terminated name/value list into "a=\"x\",b=\"y\"". */
static int format_labels(va_list ap, char **out)
{
    st_buf_t b;
    st_buf_init(&b);
    int rc = 0;
    const char *ln;
    while ((ln = va_arg(ap, const char *)) != NULL) {
        const char *lv = va_arg(ap, const char *);
        if (!lv || !valid_name(ln, 0) || strcmp(ln, "le") == 0) {
            rc = ST_EINVAL;
            goto out;
        }
        if (b.len)
            rc = st_buf_put_u8(&b, ',');
        if (!rc)
            rc = st_buf_append(&b, ln, strlen(ln));
        if (!rc)
            rc = st_buf_append(&b, "=\"", 2);
        if (!rc)
            rc = escape(&b, lv, strlen(lv), 1);
        if (!rc)
            rc = st_buf_put_u8(&b, '"');
        if (rc)
            goto out;
    }
    rc = st_buf_put_u8(&b, '\0');
out:
    if (rc) {
        st_buf_deinit(&b);
        return rc;
    }
    *out = (char *)b.data;
    return 0;
}

/* ---- registration ------------------------------------------------------- */

static int kind_type(int kind, metric_type_t cbtype)
{
    switch (kind) {
    case KIND_COUNTER:
        return METRIC_COUNTER;
    case KIND_GAUGE:
        return METRIC_GAUGE;
    case KIND_HIST:
        return METRIC_HISTOGRAM;
    default:
        return (int)cbtype;
    }
}

/*
 * Find or add the series (name, labels). *found is set when it existed.
 * Takes ownership of labels. Caller holds m->mu.
 */
static series_t *lookup_unsafe(metrics_t *m, const char *name, const char *help, int kind,
                               metric_type_t cbtype, char *labels, int *found)
{
    metric_type_t type = (metric_type_t)kind_type(kind, cbtype);
    family_t *f = m->head;
    while (f && strcmp(f->name, name) != 0)
        f = f->next;
    if (f) {
        if (f->type != type)
            goto fail;
        for (series_t *s = f->head; s; s = s->next) {
            if (strcmp(s->labels, labels) == 0) {
                free(labels);
                if (s->kind != kind)
                    return NULL;
                *found = 1;
                return s;
            }
        }
    } else {
        f = calloc(1, sizeof *f);
        if (!f)
            goto fail;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        f->type = type;
        if (!f->name || !f->help) {
            free(f->name);
            free(f->help);
            free(f);
            goto fail;
        }
        if (m->tail)
            m->tail->next = f;
        else
            m->head = f;
        m->tail = f;
    }
    series_t *s = calloc(1, sizeof *s);
    if (!s)
        goto fail;
    s->labels = labels;
    s->kind = kind;
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    *found = 0;
    return s;
fail:
    free(labels);
    return NULL;
}

static series_t *reg_va(metrics_t *m, const char *name, const char *help, int kind,
                        metric_type_t cbtype, va_list ap, int *found)
{
    char *labels;
    if (!m || !valid_name(name, 1) || format_labels(ap, &labels))
        return NULL;
    pthread_mutex_lock(&m->mu);
    series_t *s = lookup_unsafe(m, name, help, kind, cbtype, labels, found);
    pthread_mutex_unlock(&m->mu);
    return s;
}

metric_counter_t *metrics_counter(metrics_t *m, const char *name, const char *help, ...)
{
    va_list ap;
    va_start(ap, help);
    int found;
    series_t *s = reg_va(m, name, help, KIND_COUNTER, METRIC_COUNTER, ap, &found);
    va_end(ap);
    return s ? &s->u.c : NULL;
}

metric_gauge_t *metrics_gauge(metrics_t *m, const char *name, const char *help, ...)
{
    va_list ap;
    va_start(ap, help);
    int found;
    series_t *s = reg_va(m, name, help, KIND_GAUGE, METRIC_GAUGE, ap, &found);
    va_end(ap);
    return s ? &s->u.g : NULL;
}

metric_hist_t *metrics_histogram(metrics_t *m, const char *name, const char *help,
                                 const double *bounds, size_t nbounds, ...)
{
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return NULL;
    /* Allocate before taking the lock; dropped if the series exists. */
    double *b = malloc((nbounds ? nbounds : 1) * sizeof *b);
    _Atomic uint64_t *counts = calloc(nbounds + 1, sizeof *counts);
    if (!b || !counts) {
        free(b);
        free((void *)counts);
        return NULL;
    }
    if (nbounds)
        memcpy(b, bounds, nbounds * sizeof *b);
    char *labels;
    va_list ap;
    va_start(ap, nbounds);
    int bad = !m || !valid_name(name, 1) || format_labels(ap, &labels);
    va_end(ap);
    if (bad) {
        free(b);
        free((void *)counts);
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    int found = 0;
    series_t *s = lookup_unsafe(m, name, help, KIND_HIST, METRIC_HISTOGRAM, labels, &found);
    if (s && !found) {
        s->u.h.nb = nbounds;
        s->u.h.bounds = b;
        s->u.h.counts = counts;
        b = NULL;
        counts = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    free(b);
    free((void *)counts);
    return s ? &s->u.h : NULL;
}

int metrics_callback(metrics_t *m, const char *name, const char *help, metric_type_t type,
                     double (*fn)(void *arg), void *arg, ...)
{
    if (!fn || (type != METRIC_COUNTER && type != METRIC_GAUGE))
        return ST_EINVAL;
    va_list ap;
    va_start(ap, arg);
    char *labels;
    int bad = !m || !valid_name(name, 1) || format_labels(ap, &labels);
    va_end(ap);
    if (bad)
        return ST_EINVAL;
    pthread_mutex_lock(&m->mu);
    int found = 0, rc = 0;
    series_t *s = lookup_unsafe(m, name, help, KIND_CALLBACK, type, labels, &found);
    if (!s)
        rc = ST_EINVAL;
    else if (found)
        rc = ST_EEXIST;
    else {
        s->u.cb.fn = fn;
        s->u.cb.arg = arg;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int metrics_collector(metrics_t *m, int (*fn)(void *arg, st_buf_t *out), void *arg)
{
    if (!m || !fn)
        return ST_EINVAL;
    collector_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&m->mu);
    if (m->cols_tail)
        m->cols_tail->next = c;
    else
        m->cols = c;
    m->cols_tail = c;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

/* ---- updates ------------------------------------------------------------ */

void metric_counter_add(metric_counter_t *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void metric_counter_inc(metric_counter_t *c)
{
    metric_counter_add(c, 1);
}

uint64_t metric_counter_get(const metric_counter_t *c)
{
    return c ? atomic_load_explicit(&((metric_counter_t *)c)->v, memory_order_relaxed) : 0;
}

void metric_gauge_set(metric_gauge_t *g, double v)
{
    if (g)
        atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

static void add_double(_Atomic uint64_t *a, double d)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + d),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void metric_gauge_add(metric_gauge_t *g, double d)
{
    if (g)
        add_double(&g->bits, d);
}

double metric_gauge_get(const metric_gauge_t *g)
{
    return g ? bitsd(atomic_load_explicit(&((metric_gauge_t *)g)->bits, memory_order_relaxed)) : 0;
}

void metric_hist_observe(metric_hist_t *h, double v)
{
    if (!h)
        return;
    /* Binary search for the first bound >= v (NaN lands in +Inf). */
    size_t lo = 0, hi = h->nb;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&h->counts[lo], 1, memory_order_relaxed);
    add_double(&h->sum_bits, v);
}

uint64_t metric_hist_count(const metric_hist_t *h)
{
    uint64_t n = 0;
    if (h)
        for (size_t i = 0; i <= h->nb; i++)
            n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    return n;
}

double metric_hist_sum(const metric_hist_t *h)
{
    return h ? bitsd(atomic_load_explicit(&((metric_hist_t *)h)->sum_bits, memory_order_relaxed))
             : 0;
}

/* ---- rendering ---------------------------------------------------------- */

static const char *type_name(metric_type_t t)
{
    switch (t) {
    case METRIC_COUNTER:
        return "counter";
    case METRIC_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}

/* name[suffix]{labels[,extra]} — braces omitted when there are none. */
static int put_series(st_buf_t *out, const char *name, const char *suffix, const char *labels,
                      const char *extra)
{
    int rc = st_buf_append(out, name, strlen(name));
    if (!rc && suffix)
        rc = st_buf_append(out, suffix, strlen(suffix));
    int has = labels[0] || (extra && extra[0]);
    if (!rc && has) {
        rc = st_buf_put_u8(out, '{');
        if (!rc)
            rc = st_buf_append(out, labels, strlen(labels));
        if (!rc && extra && extra[0]) {
            if (labels[0])
                rc = st_buf_put_u8(out, ',');
            if (!rc)
                rc = st_buf_append(out, extra, strlen(extra));
        }
        if (!rc)
            rc = st_buf_put_u8(out, '}');
    }
    if (!rc)
        rc = st_buf_put_u8(out, ' ');
    return rc;
}

static int render_hist(st_buf_t *out, const char *name, const series_t *s)
{
    const struct metric_hist *h = &s->u.h;
    uint64_t cum = 0;
    int rc = 0;
    for (size_t i = 0; i <= h->nb && !rc; i++) {
        cum += atomic_load_explicit(&((struct metric_hist *)h)->counts[i], memory_order_relaxed);
        st_buf_t le;
        st_buf_init(&le);
        rc = st_buf_append(&le, "le=\"", 4);
        if (!rc)
            rc = i < h->nb ? metrics_write_value(&le, h->bounds[i]) : st_buf_append(&le, "+Inf", 4);
        if (!rc)
            rc = st_buf_append(&le, "\"", 2); /* with the NUL */
        if (!rc)
            rc = put_series(out, name, "_bucket", s->labels, (const char *)le.data);
        if (!rc)
            rc = write_u64(out, cum);
        if (!rc)
            rc = st_buf_put_u8(out, '\n');
        st_buf_deinit(&le);
    }
    if (!rc)
        rc = put_series(out, name, "_sum", s->labels, NULL);
    if (!rc)
        rc = metrics_write_value(out, metric_hist_sum(h));
    if (!rc)
        rc = st_buf_put_u8(out, '\n');
    if (!rc)
        rc = put_series(out, name, "_count", s->labels, NULL);
    if (!rc)
        rc = write_u64(out, cum);
    if (!rc)
        rc = st_buf_put_u8(out, '\n');
    return rc;
}

static int render_family(st_buf_t *out, const family_t *f)
{
    int rc = st_buf_append(out, "# HELP ", 7);
    if (!rc)
        rc = st_buf_append(out, f->name, strlen(f->name));
    if (!rc)
        rc = st_buf_put_u8(out, ' ');
    if (!rc)
        rc = escape(out, f->help, strlen(f->help), 0);
    if (!rc)
        rc = st_buf_append(out, "\n# TYPE ", 8);
    if (!rc)
        rc = st_buf_append(out, f->name, strlen(f->name));
    if (!rc)
        rc = st_buf_put_u8(out, ' ');
    if (!rc)
        rc = st_buf_append(out, type_name(f->type), strlen(type_name(f->type)));
    if (!rc)
        rc = st_buf_put_u8(out, '\n');
    for (const series_t *s = f->head; s && !rc; s = s->next) {
        if (s->kind == KIND_HIST) {
            rc = render_hist(out, f->name, s);
            continue;
        }
        rc = put_series(out, f->name, NULL, s->labels, NULL);
        if (rc)
            break;
        switch (s->kind) {
        case KIND_COUNTER:
            rc = write_u64(out, metric_counter_get(&s->u.c));
            break;
        case KIND_GAUGE:
            rc = metrics_write_value(out, metric_gauge_get(&s->u.g));
            break;
        default:
            rc = metrics_write_value(out, s->u.cb.fn(s->u.cb.arg));
        }
        if (!rc)
            rc = st_buf_put_u8(out, '\n');
    }
    return rc;
}

int metrics_render(metrics_t *m, st_buf_t *out)
{
    size_t len0 = out->len;
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    for (const family_t *f = m->head; f && !rc; f = f->next)
        rc = render_family(out, f);
    for (const collector_t *c = m->cols; c && !rc; c = c->next)
        rc = c->fn(c->arg, out);
    pthread_mutex_unlock(&m->mu);
    if (rc)
        out->len = len0;
    return rc;
}
