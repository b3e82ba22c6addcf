/*
 * import — JSON lines, Prometheus text and CSV decoders, and the CSV column
 * spec. See import.h.
 *
 * How: each decoder cuts the body into lines and parses a line into the
 * decoder's scratch: label names and values are unescaped into one arena
 * (kept as offsets while it grows, turned into pointers once the line is
 * read), samples into two growing columns. finish_labels() drops empty
 * values, sorts, validates and checks the metric name, the same way for
 * every format; numbers go through lp_parse_float (correctly rounded, what
 * line protocol uses), so no format rounds differently from another.
 */
#include "import.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_json.h"
#include "lp.h"
#include "st_err.h"
#include "st_text.h"
#include "st_time.h"

#define IMP_TOKEN_QUOTE 40 /* bytes of a token quoted in a reason */
#define IMP_GROW_MIN 256   /* first capacity of the sample columns */

enum { TF_UNIX_S, TF_UNIX_MS, TF_UNIX_NS, TF_RFC3339 };
enum { COL_METRIC, COL_LABEL, COL_TIME, COL_NAME, COL_VALUE };

typedef struct col {
    uint32_t col; /* 1-based (import syntax); output position (export syntax) */
    int kind;
    int tfmt;
    char *name;
    size_t name_len;
} col_t;

struct imp_csv_spec {
    col_t c[IMPORT_CSV_MAX_COLS];
    size_t n;
    int import_syntax;
    uint32_t maxcol;
    int time_idx; /* -1: none */
};

/* A field of a CSV row: bytes [off, off + len) of the arena. */
typedef struct cell {
    size_t off, len;
} cell_t;

struct imp {
    st_label_t lab[ST_LABELS_MAX + 1]; /* name/value as arena offsets until fixed */
    size_t nlab;
    st_label_t out[ST_LABELS_MAX + 1];
    st_buf_t str; /* arena */
    int64_t *ts;
    double *v;
    size_t ns, cap;
    cell_t cells[IMPORT_CSV_MAX_COL];
    size_t ncells;
    char why[IMPORT_REASON_MAX];
};

int imp_create(imp_t **out)
{
    imp_t *d = calloc(1, sizeof *d);
    *out = d;
    if (!d)
        return ST_ENOMEM;
    st_buf_init(&d->str);
    return 0;
}

void imp_destroy(imp_t *d)
{
    if (!d)
        return;
    st_buf_deinit(&d->str);
    free(d->ts);
    free(d->v);
    free(d);
}

/* ---- shared pieces ------------------------------------------------------ */

/* A token for a reason: printable ASCII, others as \xNN, truncated. */
static const char *quote_tok(char *dst, size_t cap, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == IMP_TOKEN_QUOTE) {
            memcpy(dst + k, "...", 3);
            k += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f)
            dst[k++] = (char)c;
        else
            k += (size_t)snprintf(dst + k, cap - k, "\\x%02x", c);
    }
    dst[k] = '\0';
    return dst;
}

__attribute__((format(printf, 2, 3))) static int fail(imp_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
    return -1;
}

static int push_sample(imp_t *d, int64_t ts, double v)
{
    if (d->ns == d->cap) {
        size_t c = d->cap ? d->cap * 2 : IMP_GROW_MIN;
        int64_t *nt = realloc(d->ts, c * sizeof *nt);
        if (!nt)
            return ST_ENOMEM;
        d->ts = nt;
        double *nv = realloc(d->v, c * sizeof *nv);
        if (!nv)
            return ST_ENOMEM;
        d->v = nv;
        d->cap = c;
    }
    d->ts[d->ns] = ts;
    d->v[d->ns++] = v;
    return 0;
}

/* Start a label: its name bytes [s, s+n) copied to the arena. -1 when full. */
static int label_begin(imp_t *d, const char *s, size_t n)
{
    if (d->nlab == ST_LABELS_MAX + 1)
        return fail(d, "too many labels (max %d)", ST_LABELS_MAX);
    st_label_t *l = &d->lab[d->nlab];
    l->name = (const char *)(uintptr_t)d->str.len;
    l->name_len = (uint32_t)n;
    if (n > ST_LABEL_NAME_MAX)
        return fail(d, "label name longer than %d bytes", ST_LABEL_NAME_MAX);
    if (st_buf_append(&d->str, s, n))
        return ST_ENOMEM;
    l->value = (const char *)(uintptr_t)d->str.len;
    l->value_len = 0;
    return 0;
}

/* The value of the label begun last ends at the arena's end. */
static int label_end(imp_t *d)
{
    st_label_t *l = &d->lab[d->nlab];
    size_t len = d->str.len - (uintptr_t)l->value;
    if (len > ST_LABEL_VALUE_MAX)
        return fail(d, "label value longer than %d bytes", ST_LABEL_VALUE_MAX);
    l->value_len = (uint32_t)len;
    d->nlab++;
    return 0;
}

/* Labels of the line into d->out: pointers, empty values dropped, sorted,
 * valid, with a metric name. Returns the count, or -1 with d->why. */
static int finish_labels(imp_t *d)
{
    size_t k = 0;
    for (size_t i = 0; i < d->nlab; i++) {
        if (d->lab[i].value_len == 0)
            continue;
        d->out[k].name = (const char *)d->str.data + (uintptr_t)d->lab[i].name;
        d->out[k].name_len = d->lab[i].name_len;
        d->out[k].value = (const char *)d->str.data + (uintptr_t)d->lab[i].value;
        d->out[k++].value_len = d->lab[i].value_len;
    }
    if (k > ST_LABELS_MAX)
        return fail(d, "too many labels (max %d)", ST_LABELS_MAX);
    st_labels_sort(d->out, k);
    const char *why = NULL;
    if (st_labels_validate(d->out, k, &why))
        return fail(d, "%s", why);
    int ni = st_labels_find(d->out, k, ST_METRIC_LABEL);
    if (ni < 0)
        return fail(d, "no metric name (__name__)");
    if (d->out[ni].value_len > ST_LABEL_NAME_MAX)
        return fail(d, "metric name longer than %d bytes", ST_LABEL_NAME_MAX);
    return (int)k;
}

static void line_reset(imp_t *d)
{
    d->nlab = 0;
    d->ns = 0;
    d->ncells = 0;
    st_buf_reset(&d->str);
    d->why[0] = '\0';
}

static double nan_bits(void)
{
    uint64_t u = IMPORT_NAN_BITS;
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static int ieq(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != lit[i])
            return 0;
    }
    return 1;
}

int imp_parse_value(const char *s, size_t n, double *out)
{
    if (n == 0)
        return ST_EPARSE;
    int neg = 0;
    const char *p = s;
    size_t m = n;
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
        m--;
    }
    if (ieq(p, m, "nan")) {
        *out = nan_bits();
        return 0;
    }
    if (ieq(p, m, "inf") || ieq(p, m, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return 0;
    }
    if (m == 0 || *p == '+' || *p == '-')
        return ST_EPARSE;
    if (lp_parse_float(p, m, out) != 0)
        return ST_EPARSE;
    if (neg)
        *out = -*out;
    return 0;
}

/* [-]digits as int64: 0, or -1. */
static int parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == n)
        return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned dg = (unsigned)(s[i] - '0');
        if (v > (lim - dg) / 10)
            return -1;
        v = v * 10 + dg;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* The next line of body from *pos: [*s, *s + *n) without "\n" or "\r\n". */
static int next_line(const char *body, size_t len, size_t *pos, const char **s, size_t *n)
{
    if (*pos >= len)
        return 0;
    const char *p = body + *pos;
    const char *nl = memchr(p, '\n', len - *pos);
    size_t l = nl ? (size_t)(nl - p) : len - *pos;
    *pos += l + (nl ? 1 : 0);
    if (l && p[l - 1] == '\r')
        l--;
    *s = p;
    *n = l;
    return 1;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return 0;
    return 1;
}

typedef int (*line_fn)(imp_t *d, const void *ctx, const char *s, size_t n, uint64_t line,
                       imp_series_fn on_series, void *arg);

/* The walk every format shares: a line's parser returns 0 (good or empty),
 * -1 (bad: d->why) or a negative ST_E* code that stops the walk. */
static int walk(imp_t *d, const void *ctx, const char *body, size_t len, line_fn fn,
                imp_series_fn on_series, imp_error_fn on_error, void *arg)
{
    size_t pos = 0;
    uint64_t line = 0;
    int bad = 0;
    const char *s;
    size_t n;
    while (next_line(body, len, &pos, &s, &n)) {
        line++;
        line_reset(d);
        int rc;
        if (n > IMPORT_MAX_LINE)
            rc = fail(d, "line longer than %u bytes", IMPORT_MAX_LINE);
        else if (blank(s, n))
            continue;
        else
            rc = fn(d, ctx, s, n, line, on_series, arg);
        if (rc < -1)
            return rc;
        if (rc == -1) {
            bad++;
            if (on_error)
                on_error(arg, line, d->why[0] ? d->why : "invalid line");
        }
    }
    return bad;
}

/* ---- JSON lines --------------------------------------------------------- */

static void jws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\r' || **p == '\n'))
        (*p)++;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = st_hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

/* A JSON string at *p, unescaped onto the arena. 0, -1 or ST_ENOMEM. */
static int jstring(imp_t *d, const char **p, const char *end)
{
    if (*p >= end || **p != '"')
        return fail(d, "expected a string");
    const char *q = *p + 1;
    for (;;) {
        const char *run = q;
        while (q < end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        if (q > run && st_buf_append(&d->str, run, (size_t)(q - run)))
            return ST_ENOMEM;
        if (q >= end)
            return fail(d, "unterminated string");
        if (*q == '"')
            break;
        if ((unsigned char)*q < 0x20)
            return fail(d, "control character in a string");
        q++; /* backslash */
        if (q >= end)
            return fail(d, "unterminated string");
        char c = *q++, o;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            o = c;
            break;
        case 'b':
            o = '\b';
            break;
        case 'f':
            o = '\f';
            break;
        case 'n':
            o = '\n';
            break;
        case 'r':
            o = '\r';
            break;
        case 't':
            o = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(q, end, &cp))
                return fail(d, "invalid \\u escape in a string");
            q += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, end, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return fail(d, "unpaired surrogate in a string");
                q += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return fail(d, "unpaired surrogate in a string");
            }
            char u[4];
            size_t k = st_utf8_put(u, cp);
            if (st_buf_append(&d->str, u, k))
                return ST_ENOMEM;
            continue;
        }
        default:
            return fail(d, "invalid escape '\\%c' in a string", c >= 0x20 && c < 0x7f ? c : '?');
        }
        if (st_buf_put_u8(&d->str, (uint8_t)o))
            return ST_ENOMEM;
    }
    *p = q + 1;
    return 0;
}

/* A key: compared against the literals without touching the arena. */
static int jkey(imp_t *d, const char **p, const char *end, const char **k, size_t *kn)
{
    size_t mark = d->str.len;
    int rc = jstring(d, p, end);
    if (rc)
        return rc;
    *k = d->str.data ? (const char *)d->str.data + mark : "";
    *kn = d->str.len - mark;
    d->str.len = mark; /* the caller compares at once */
    return 0;
}

static int jexpect(imp_t *d, const char **p, const char *end, char c, const char *what)
{
    jws(p, end);
    if (*p >= end || **p != c)
        return fail(d, "expected '%c' %s", c, what);
    (*p)++;
    return 0;
}

static int jmetric(imp_t *d, const char **p, const char *end)
{
    int rc;
    if ((rc = jexpect(d, p, end, '{', "to open \"metric\"")))
        return rc;
    jws(p, end);
    if (*p < end && **p == '}') {
        (*p)++;
        return 0;
    }
    for (;;) {
        jws(p, end);
        size_t mark = d->str.len;
        if ((rc = jstring(d, p, end)))
            return rc;
        size_t nlen = d->str.len - mark;
        if (nlen > ST_LABEL_NAME_MAX)
            return fail(d, "label name longer than %d bytes", ST_LABEL_NAME_MAX);
        if (d->nlab == ST_LABELS_MAX + 1)
            return fail(d, "too many labels (max %d)", ST_LABELS_MAX);
        st_label_t *l = &d->lab[d->nlab];
        l->name = (const char *)(uintptr_t)mark;
        l->name_len = (uint32_t)nlen;
        l->value = (const char *)(uintptr_t)d->str.len;
        if ((rc = jexpect(d, p, end, ':', "after a label name")))
            return rc;
        jws(p, end);
        if (*p < end && **p != '"')
            return fail(d, "label values must be strings");
        if ((rc = jstring(d, p, end)) || (rc = label_end(d)))
            return rc;
        jws(p, end);
        if (*p < end && **p == ',') {
            (*p)++;
            continue;
        }
        return jexpect(d, p, end, '}', "to close \"metric\"");
    }
}

/* The end of a number or literal token. */
static const char *jtok_end(const char *p, const char *end)
{
    while (p < end && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\t' &&
           *p != '\r' && *p != '\n')
        p++;
    return p;
}

/* "values" (ts == 0) or "timestamps" (ts == 1) into the sample columns:
 * values fill d->v from index 0, timestamps d->ts; *cnt gets the count. */
static int jarray(imp_t *d, const char **p, const char *end, int ts, size_t *cnt)
{
    int rc;
    char q[IMP_TOKEN_QUOTE * 4 + 8];
    const char *what = ts ? "\"timestamps\"" : "\"values\"";
    if ((rc = jexpect(d, p, end, '[', ts ? "to open \"timestamps\"" : "to open \"values\"")))
        return rc;
    size_t n = 0;
    jws(p, end);
    if (*p < end && **p == ']') {
        (*p)++;
        *cnt = 0;
        return 0;
    }
    for (;;) {
        jws(p, end);
        const char *t = *p, *te = jtok_end(t, end);
        if (te == t)
            return fail(d, "expected a number in %s", what);
        /* both columns grow together; the other array may be shorter */
        if (n >= d->ns && (rc = push_sample(d, 0, 0)))
            return rc;
        if (ts) {
            int64_t x;
            if (parse_i64(t, (size_t)(te - t), &x))
                return fail(d, "invalid timestamp '%s' in \"timestamps\"",
                            quote_tok(q, sizeof q, t, (size_t)(te - t)));
            d->ts[n] = x;
        } else {
            double x;
            size_t tl = (size_t)(te - t);
            if (tl == 3 && memcmp(t, "NaN", 3) == 0)
                x = nan_bits();
            else if ((tl == 8 && memcmp(t, "Infinity", 8) == 0) ||
                     (tl == 4 && memcmp(t, "+Inf", 4) == 0) ||
                     (tl == 3 && memcmp(t, "Inf", 3) == 0))
                x = INFINITY; /* Strata's export spelling, and VictoriaMetrics' */
            else if ((tl == 9 && memcmp(t, "-Infinity", 9) == 0) ||
                     (tl == 4 && memcmp(t, "-Inf", 4) == 0))
                x = -INFINITY;
            else if (*t == '+' || lp_parse_float(t, tl, &x) != 0)
                return fail(d, "invalid value '%s' in \"values\"", quote_tok(q, sizeof q, t, tl));
            d->v[n] = x;
        }
        n++;
        *p = te;
        jws(p, end);
        if (*p < end && **p == ',') {
            (*p)++;
            continue;
        }
        if ((rc = jexpect(d, p, end, ']', ts ? "to close \"timestamps\"" : "to close \"values\"")))
            return rc;
        *cnt = n;
        return 0;
    }
}

static int json_line(imp_t *d, const void *ctx, const char *s, size_t n, uint64_t line,
                     imp_series_fn on_series, void *arg)
{
    (void)ctx;
    const char *p = s, *end = s + n;
    int rc, seen_m = 0, seen_v = 0, seen_t = 0;
    size_t nv = 0, nt = 0;
    if ((rc = jexpect(d, &p, end, '{', "at the start of the line")))
        return rc;
    for (;;) {
        jws(&p, end);
        const char *k;
        size_t kn;
        if ((rc = jkey(d, &p, end, &k, &kn)))
            return rc;
        if ((rc = jexpect(d, &p, end, ':', "after a key")))
            return rc;
        if (kn == 6 && memcmp(k, "metric", 6) == 0 && !seen_m) {
            seen_m = 1;
            rc = jmetric(d, &p, end);
        } else if (kn == 6 && memcmp(k, "values", 6) == 0 && !seen_v) {
            seen_v = 1;
            rc = jarray(d, &p, end, 0, &nv);
        } else if (kn == 10 && memcmp(k, "timestamps", 10) == 0 && !seen_t) {
            seen_t = 1;
            rc = jarray(d, &p, end, 1, &nt);
        } else {
            char q[IMP_TOKEN_QUOTE * 4 + 8];
            return fail(d, "unknown or repeated key \"%s\" (want metric, values, timestamps)",
                        quote_tok(q, sizeof q, k, kn));
        }
        if (rc)
            return rc;
        jws(&p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if ((rc = jexpect(d, &p, end, '}', "at the end of the object")))
            return rc;
        break;
    }
    jws(&p, end);
    if (p != end)
        return fail(d, "unexpected bytes after the object");
    if (!seen_m || !seen_v || !seen_t)
        return fail(d, "missing \"%s\"", !seen_m ? "metric" : !seen_v ? "values" : "timestamps");
    if (nv != nt)
        return fail(d, "\"values\" has %zu items but \"timestamps\" has %zu", nv, nt);
    int nl = finish_labels(d);
    if (nl < 0)
        return nl;
    if (nv == 0)
        return 0;
    return on_series(arg, line, d->out, (size_t)nl, d->ts, d->v, nv);
}

int imp_json(imp_t *d, const char *body, size_t len, imp_series_fn on_series, imp_error_fn on_error,
             void *arg)
{
    return walk(d, NULL, body, len, json_line, on_series, on_error, arg);
}

/* ---- Prometheus text ---------------------------------------------------- */

static int name_start(char c, int metric)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
}

static int name_char(char c, int metric)
{
    return name_start(c, metric) || (c >= '0' && c <= '9');
}

static void pws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
}

static int prom_labels(imp_t *d, const char **p, const char *end)
{
    int rc;
    for (;;) {
        pws(p, end);
        if (*p < end && **p == '}') {
            (*p)++;
            return 0;
        }
        const char *ns = *p;
        if (*p >= end || !name_start(**p, 0))
            return fail(d, "expected a label name or '}'");
        while (*p < end && name_char(**p, 0))
            (*p)++;
        if ((rc = label_begin(d, ns, (size_t)(*p - ns))))
            return rc;
        pws(p, end);
        if (*p >= end || **p != '=')
            return fail(d, "expected '=' after label name");
        (*p)++;
        pws(p, end);
        if (*p >= end || **p != '"')
            return fail(d, "expected '\"' to open a label value");
        const char *q = *p + 1;
        for (;;) {
            const char *run = q;
            while (q < end && *q != '"' && *q != '\\')
                q++;
            if (q > run && st_buf_append(&d->str, run, (size_t)(q - run)))
                return ST_ENOMEM;
            if (q >= end)
                return fail(d, "unterminated label value");
            if (*q == '"')
                break;
            if (q + 1 >= end)
                return fail(d, "unterminated label value");
            char c = q[1], o = c == 'n' ? '\n' : c;
            if (c != 'n' && c != '\\' && c != '"')
                return fail(d, "invalid escape '\\%c' in a label value (want \\\\, \\\" or \\n)",
                            c >= 0x20 && c < 0x7f ? c : '?');
            if (st_buf_put_u8(&d->str, (uint8_t)o))
                return ST_ENOMEM;
            q += 2;
        }
        *p = q + 1;
        if ((rc = label_end(d)))
            return rc;
        pws(p, end);
        if (*p < end && **p == ',') {
            (*p)++;
            continue;
        }
        if (*p < end && **p == '}') {
            (*p)++;
            return 0;
        }
        return fail(d, "expected ',' or '}' after a label value");
    }
}

static int prom_line(imp_t *d, const void *ctx, const char *s, size_t n, uint64_t line,
                     imp_series_fn on_series, void *arg)
{
    const char *p = s, *end = s + n;
    char q[IMP_TOKEN_QUOTE * 4 + 8];
    int rc;
    pws(&p, end);
    if (p < end && *p == '#')
        return 0;
    const char *ns = p;
    if (!name_start(*p, 1))
        return fail(d, "invalid metric name '%s'", quote_tok(q, sizeof q, p, (size_t)(end - p)));
    while (p < end && name_char(*p, 1))
        p++;
    if ((rc = label_begin(d, ST_METRIC_LABEL, 8)) || st_buf_append(&d->str, ns, (size_t)(p - ns)) ||
        (rc = label_end(d)))
        return rc ? rc : ST_ENOMEM;
    const char *b = p; /* a space must follow the name or the labels */
    pws(&p, end);
    if (p < end && *p == '{') {
        p++;
        if ((rc = prom_labels(d, &p, end)))
            return rc;
        b = p;
        pws(&p, end);
    }
    if (p == end)
        return fail(d, "no value");
    if (p == b)
        return fail(d, "expected a space before the value");
    const char *vs = p;
    while (p < end && *p != ' ' && *p != '\t')
        p++;
    double v;
    if (imp_parse_value(vs, (size_t)(p - vs), &v))
        return fail(d, "invalid value '%s'", quote_tok(q, sizeof q, vs, (size_t)(p - vs)));
    int64_t ts = *(const int64_t *)ctx;
    pws(&p, end);
    if (p < end) {
        const char *t = p;
        while (p < end && *p != ' ' && *p != '\t')
            p++;
        if (parse_i64(t, (size_t)(p - t), &ts))
            return fail(d, "invalid timestamp '%s' (want integer milliseconds)",
                        quote_tok(q, sizeof q, t, (size_t)(p - t)));
        pws(&p, end);
        if (p < end)
            return fail(d, "unexpected '%s' after the timestamp",
                        quote_tok(q, sizeof q, p, (size_t)(end - p)));
    }
    int nl = finish_labels(d);
    if (nl < 0)
        return nl;
    return on_series(arg, line, d->out, (size_t)nl, &ts, &v, 1);
}

int imp_prom(imp_t *d, const char *body, size_t len, int64_t default_ts_ms, imp_series_fn on_series,
             imp_error_fn on_error, void *arg)
{
    return walk(d, &default_ts_ms, body, len, prom_line, on_series, on_error, arg);
}

/* ---- time formats ------------------------------------------------------- */

static const struct {
    const char *name;
    int tf;
} time_formats[] = {
    {"unix_s", TF_UNIX_S},
    {"unix_ms", TF_UNIX_MS},
    {"unix_ns", TF_UNIX_NS},
    {"rfc3339", TF_RFC3339},
};

static int time_format(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof time_formats / sizeof time_formats[0]; i++)
        if (strlen(time_formats[i].name) == n && memcmp(time_formats[i].name, s, n) == 0)
            return time_formats[i].tf;
    return -1;
}

static int digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), fraction truncated to ms. */
static int parse_rfc3339(const char *s, size_t n, int64_t *out)
{
    unsigned y, mo, dd, h, mi, se, oh = 0, om = 0;
    if (n < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &dd) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || dd < 1 || dd > 31 || h > 23 || mi > 59 || se > 59)
        return -1;
    size_t i = 19;
    int64_t ms = 0;
    if (s[i] == '.') {
        i++;
        size_t f0 = i;
        int k = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (k < 3) {
                ms = ms * 10 + (s[i] - '0');
                k++;
            }
            i++;
        }
        if (i == f0)
            return -1;
        while (k++ < 3)
            ms *= 10;
    }
    int sign = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        sign = s[i] == '-' ? -1 : 1;
        if (n - i != 6 || digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        i += 6;
    } else {
        return -1;
    }
    if (i != n)
        return -1;
    int64_t days = st_days_from_civil((int64_t)y, mo, dd);
    int64_t sec = days * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + se;
    sec -= sign * ((int64_t)oh * 3600 + (int64_t)om * 60);
    *out = sec * 1000 + ms;
    return 0;
}

/* A time cell in format tf to ms: 0, or -1. */
static int parse_time(int tf, const char *s, size_t n, int64_t *out)
{
    int64_t x;
    switch (tf) {
    case TF_UNIX_S: {
        const char *dot = memchr(s, '.', n);
        size_t il = dot ? (size_t)(dot - s) : n;
        if (parse_i64(s, il, &x) || x > INT64_MAX / 1000 || x < INT64_MIN / 1000)
            return -1;
        int64_t frac = 0;
        if (dot) {
            size_t fl = n - il - 1;
            if (fl == 0)
                return -1;
            for (size_t i = 0; i < fl; i++) {
                char c = dot[1 + i];
                if (c < '0' || c > '9')
                    return -1;
                if (i < 3)
                    frac = frac * 10 + (c - '0');
            }
            for (size_t i = fl; i < 3; i++)
                frac *= 10;
        }
        *out = x * 1000 + (s[0] == '-' ? -frac : frac);
        return 0;
    }
    case TF_UNIX_MS:
        return parse_i64(s, n, out);
    case TF_UNIX_NS:
        if (parse_i64(s, n, &x))
            return -1;
        *out = x / 1000000 - (x % 1000000 < 0); /* floor */
        return 0;
    default:
        return parse_rfc3339(s, n, out);
    }
}

static int put_time(st_buf_t *b, int tf, int64_t ms)
{
    char tmp[64];
    int k;
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    switch (tf) {
    case TF_UNIX_S:
        if (frac == 0)
            k = snprintf(tmp, sizeof tmp, "%" PRId64, sec);
        else if (sec < 0 && sec + 1 == 0)
            k = snprintf(tmp, sizeof tmp, "-0.%03d", (int)(1000 - frac));
        else if (sec < 0)
            k = snprintf(tmp, sizeof tmp, "%" PRId64 ".%03d", sec + 1, (int)(1000 - frac));
        else
            k = snprintf(tmp, sizeof tmp, "%" PRId64 ".%03d", sec, (int)frac);
        break;
    case TF_UNIX_MS:
        k = snprintf(tmp, sizeof tmp, "%" PRId64, ms);
        break;
    case TF_UNIX_NS:
        if (ms > INT64_MAX / 1000000 || ms < INT64_MIN / 1000000)
            k = snprintf(tmp, sizeof tmp, "%" PRId64 "000000", ms);
        else
            k = snprintf(tmp, sizeof tmp, "%" PRId64, ms * 1000000);
        break;
    default: {
        int64_t days = sec / 86400, rem = sec % 86400, y;
        if (rem < 0) {
            rem += 86400;
            days--;
        }
        unsigned m, dd;
        st_civil_from_days(days, &y, &m, &dd);
        k = snprintf(tmp, sizeof tmp, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, dd,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)frac);
    }
    }
    return st_buf_append(b, tmp, (size_t)k);
}

/* ---- CSV ---------------------------------------------------------------- */

void imp_csv_spec_free(imp_csv_spec_t *spec)
{
    if (!spec)
        return;
    for (size_t i = 0; i < spec->n; i++)
        free(spec->c[i].name);
    free(spec);
}

static int spec_err(char *err, size_t errlen, imp_csv_spec_t *sp, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int spec_err(char *err, size_t errlen, imp_csv_spec_t *sp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    imp_csv_spec_free(sp);
    return ST_EINVAL;
}

int imp_csv_spec_parse(const char *s, size_t n, int for_export, imp_csv_spec_t **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    imp_csv_spec_t *sp = calloc(1, sizeof *sp);
    if (!sp)
        return ST_ENOMEM;
    sp->time_idx = -1;
    char q[IMP_TOKEN_QUOTE * 4 + 8];
    if (n == 0)
        return spec_err(err, errlen, sp, "empty format");
    sp->import_syntax = s[0] >= '0' && s[0] <= '9';
    if (!sp->import_syntax && !for_export)
        return spec_err(err, errlen, sp,
                        "format entries are <column>:<type>:<context>, e.g. "
                        "1:metric:price,2:label:ticker,3:time:unix_s");
    size_t pos = 0, nmetric = 0;
    while (pos <= n) {
        const char *e = s + pos, *comma = memchr(e, ',', n - pos);
        size_t el = comma ? (size_t)(comma - e) : n - pos;
        pos += el + 1;
        if (sp->n == IMPORT_CSV_MAX_COLS)
            return spec_err(err, errlen, sp, "too many format entries (max %d)",
                            IMPORT_CSV_MAX_COLS);
        col_t *c = &sp->c[sp->n];
        const char *ctx;
        size_t cl;
        if (sp->import_syntax) {
            const char *c1 = memchr(e, ':', el),
                       *c2 = c1 ? memchr(c1 + 1, ':', el - (size_t)(c1 + 1 - e)) : NULL;
            unsigned col;
            if (!c1 || !c2 || c1 == e || c1 - e > 5 || digits(e, (size_t)(c1 - e), &col) ||
                col < 1 || col > IMPORT_CSV_MAX_COL)
                return spec_err(err, errlen, sp,
                                "invalid entry '%s': want <column>:<type>:<context> with "
                                "column 1..%d",
                                quote_tok(q, sizeof q, e, el), IMPORT_CSV_MAX_COL);
            const char *ty = c1 + 1;
            size_t tl = (size_t)(c2 - ty);
            ctx = c2 + 1;
            cl = el - (size_t)(ctx - e);
            c->col = col;
            if (tl == 6 && memcmp(ty, "metric", 6) == 0) {
                c->kind = COL_METRIC;
                nmetric++;
            } else if (tl == 5 && memcmp(ty, "label", 5) == 0) {
                c->kind = COL_LABEL;
            } else if (tl == 4 && memcmp(ty, "time", 4) == 0) {
                c->kind = COL_TIME;
                if ((c->tfmt = time_format(ctx, cl)) < 0)
                    return spec_err(err, errlen, sp,
                                    "invalid time format '%s' (unix_s, unix_ms, unix_ns, rfc3339)",
                                    quote_tok(q, sizeof q, ctx, cl));
                if (sp->time_idx >= 0)
                    return spec_err(err, errlen, sp, "more than one time column");
                sp->time_idx = (int)sp->n;
            } else {
                char q2[IMP_TOKEN_QUOTE * 4 + 8];
                return spec_err(err, errlen, sp,
                                "invalid column type '%s' in '%s' (metric, label, time)",
                                quote_tok(q, sizeof q, ty, tl), quote_tok(q2, sizeof q2, e, el));
            }
            for (size_t i = 0; i < sp->n; i++)
                if (sp->c[i].col == col)
                    return spec_err(err, errlen, sp, "column %u is used twice", col);
            if (col > sp->maxcol)
                sp->maxcol = col;
        } else {
            c->col = (uint32_t)sp->n + 1;
            ctx = e;
            cl = el;
            const char *colon = memchr(e, ':', el);
            if (el == 8 && memcmp(e, "__name__", 8) == 0) {
                c->kind = COL_NAME;
            } else if (el == 9 && memcmp(e, "__value__", 9) == 0) {
                c->kind = COL_VALUE;
            } else if (el >= 13 && memcmp(e, "__timestamp__", 13) == 0 &&
                       (el == 13 || e[13] == ':')) {
                c->kind = COL_TIME;
                c->tfmt = el == 13 ? TF_UNIX_MS : time_format(e + 14, el - 14);
                if (c->tfmt < 0)
                    return spec_err(err, errlen, sp,
                                    "invalid time format in '%s' (unix_s, unix_ms, unix_ns, "
                                    "rfc3339)",
                                    quote_tok(q, sizeof q, e, el));
            } else if (colon) {
                return spec_err(err, errlen, sp, "invalid entry '%s'",
                                quote_tok(q, sizeof q, e, el));
            } else {
                c->kind = COL_LABEL;
            }
        }
        if (c->kind == COL_METRIC || c->kind == COL_LABEL) {
            if (cl == 0 || cl > ST_LABEL_NAME_MAX)
                return spec_err(err, errlen, sp, "entry '%s' needs a name of 1..%d bytes",
                                quote_tok(q, sizeof q, e, el), ST_LABEL_NAME_MAX);
            if (!st_utf8_valid(ctx, cl))
                return spec_err(err, errlen, sp, "entry '%s' is not valid UTF-8",
                                quote_tok(q, sizeof q, e, el));
            if (c->kind == COL_LABEL && cl == 8 && memcmp(ctx, ST_METRIC_LABEL, 8) == 0)
                return spec_err(err, errlen, sp, "a label column cannot be __name__");
            if (!(c->name = malloc(cl)))
                return spec_err(err, errlen, sp, "out of memory");
            memcpy(c->name, ctx, cl);
            c->name_len = cl;
        }
        sp->n++;
        if (!comma)
            break;
    }
    if (sp->import_syntax && nmetric == 0)
        return spec_err(err, errlen, sp, "the format has no metric column");
    *out = sp;
    return 0;
}

/* Cut one CSV line into cells (copied, unquoted, onto the arena). */
static int csv_cells(imp_t *d, const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    for (;;) {
        size_t off = d->str.len;
        if (p < end && *p == '"') {
            p++;
            for (;;) {
                const char *run = p;
                while (p < end && *p != '"')
                    p++;
                if (p >= end)
                    return fail(d, "unterminated quoted field");
                if (st_buf_append(&d->str, run, (size_t)(p - run)))
                    return ST_ENOMEM;
                if (p + 1 < end && p[1] == '"') {
                    if (st_buf_put_u8(&d->str, '"'))
                        return ST_ENOMEM;
                    p += 2;
                    continue;
                }
                p++;
                break;
            }
            if (p < end && *p != ',')
                return fail(d, "unexpected bytes after a quoted field");
        } else {
            const char *run = p;
            while (p < end && *p != ',')
                p++;
            if (st_buf_append(&d->str, run, (size_t)(p - run)))
                return ST_ENOMEM;
        }
        if (d->ncells < IMPORT_CSV_MAX_COL)
            d->cells[d->ncells++] = (cell_t){off, d->str.len - off};
        if (p >= end)
            return 0;
        p++; /* comma */
    }
}

static int csv_line(imp_t *d, const void *ctx, const char *s, size_t n, uint64_t line,
                    imp_series_fn on_series, void *arg)
{
    const struct {
        const imp_csv_spec_t *sp;
        int64_t dflt;
    } *cx = ctx;
    const imp_csv_spec_t *sp = cx->sp;
    char q[IMP_TOKEN_QUOTE * 4 + 8];
    int rc = csv_cells(d, s, n);
    if (rc)
        return rc;
    if (d->ncells < sp->maxcol)
        return fail(d, "row has %zu columns; the format uses column %u", d->ncells, sp->maxcol);
    const char *base = d->str.data ? (const char *)d->str.data : "";
    int64_t ts = cx->dflt;
    if (sp->time_idx >= 0) {
        const col_t *c = &sp->c[sp->time_idx];
        const cell_t *cl = &d->cells[c->col - 1];
        if (parse_time(c->tfmt, base + cl->off, cl->len, &ts))
            return fail(d, "invalid %s time '%s' in column %u", time_formats[c->tfmt].name,
                        quote_tok(q, sizeof q, base + cl->off, cl->len), c->col);
    }
    /* labels: the label columns (offsets into the arena) */
    for (size_t i = 0; i < sp->n; i++) {
        const col_t *c = &sp->c[i];
        if (c->kind != COL_LABEL)
            continue;
        const cell_t *cl = &d->cells[c->col - 1];
        if (cl->len > ST_LABEL_VALUE_MAX)
            return fail(d, "label value longer than %d bytes in column %u", ST_LABEL_VALUE_MAX,
                        c->col);
        if (d->nlab == ST_LABELS_MAX + 1)
            return fail(d, "too many labels (max %d)", ST_LABELS_MAX);
        d->lab[d->nlab++] = (st_label_t){.name = c->name,
                                         .name_len = (uint32_t)c->name_len,
                                         .value = (const char *)(uintptr_t)cl->off,
                                         .value_len = (uint32_t)cl->len};
    }
    /* every value first: a bad one rejects the whole row */
    size_t nm = 0;
    for (size_t i = 0; i < sp->n; i++) {
        const col_t *c = &sp->c[i];
        if (c->kind != COL_METRIC)
            continue;
        const cell_t *cl = &d->cells[c->col - 1];
        if (cl->len == 0)
            continue;
        double v;
        if (imp_parse_value(base + cl->off, cl->len, &v))
            return fail(d, "invalid value '%s' in column %u",
                        quote_tok(q, sizeof q, base + cl->off, cl->len), c->col);
        if ((rc = push_sample(d, ts, v)))
            return rc;
        nm++;
    }
    if (nm == 0)
        return 0;
    /* label names live in the spec, values in the arena: make pointers */
    size_t k = 0;
    for (size_t i = 0; i < d->nlab; i++) {
        if (d->lab[i].value_len == 0)
            continue;
        d->out[k] = d->lab[i];
        d->out[k++].value = base + (uintptr_t)d->lab[i].value;
    }
    size_t nbase = k, si = 0;
    st_label_t set[ST_LABELS_MAX + 1];
    for (size_t i = 0; i < sp->n; i++) {
        const col_t *c = &sp->c[i];
        if (c->kind != COL_METRIC || d->cells[c->col - 1].len == 0)
            continue;
        if (nbase + 1 > ST_LABELS_MAX)
            return fail(d, "too many labels (max %d)", ST_LABELS_MAX);
        memcpy(set, d->out, nbase * sizeof *set);
        set[nbase] = (st_label_t){.name = ST_METRIC_LABEL,
                                  .name_len = 8,
                                  .value = c->name,
                                  .value_len = (uint32_t)c->name_len};
        st_labels_sort(set, nbase + 1);
        const char *why = NULL;
        if (st_labels_validate(set, nbase + 1, &why))
            return fail(d, "%s", why);
        if ((rc = on_series(arg, line, set, nbase + 1, &d->ts[si], &d->v[si], 1)))
            return rc;
        si++;
    }
    return 0;
}

int imp_csv(imp_t *d, const imp_csv_spec_t *spec, const char *body, size_t len,
            int64_t default_ts_ms, imp_series_fn on_series, imp_error_fn on_error, void *arg)
{
    struct {
        const imp_csv_spec_t *sp;
        int64_t dflt;
    } cx = {spec, default_ts_ms};
    if (!spec->import_syntax)
        return ST_EINVAL;
    return walk(d, &cx, body, len, csv_line, on_series, on_error, arg);
}

static int put_cell(st_buf_t *b, const char *s, size_t n)
{
    int q = 0;
    for (size_t i = 0; i < n && !q; i++)
        q = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!q)
        return st_buf_append(b, s, n);
    int rc = st_buf_put_u8(b, '"');
    for (size_t i = 0; i < n && !rc; i++) {
        if (s[i] == '"')
            rc = st_buf_put_u8(b, '"');
        rc |= st_buf_put_u8(b, (uint8_t)s[i]);
    }
    return rc | st_buf_put_u8(b, '"');
}

static const st_label_t *find_label(const st_label_t *l, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].name_len == len && memcmp(l[i].name, name, len) == 0)
            return &l[i];
    return NULL;
}

int imp_csv_rows(st_buf_t *b, const imp_csv_spec_t *spec, const st_label_t *labels, size_t nlabels,
                 const int64_t *ts, const double *v, size_t n)
{
    const st_label_t *name = find_label(labels, nlabels, ST_METRIC_LABEL, 8);
    /* the column of each output position (import syntax: by column number) */
    size_t ncol = spec->import_syntax ? spec->maxcol : spec->n;
    int rc = 0;
    for (size_t s = 0; s < n && !rc; s++) {
        for (size_t col = 1; col <= ncol && !rc; col++) {
            if (col > 1)
                rc |= st_buf_put_u8(b, ',');
            const col_t *c = NULL;
            for (size_t i = 0; i < spec->n && !c; i++)
                if (spec->c[i].col == col)
                    c = &spec->c[i];
            if (!c)
                continue;
            const st_label_t *l;
            switch (c->kind) {
            case COL_METRIC:
                if (name && name->value_len == c->name_len &&
                    memcmp(name->value, c->name, c->name_len) == 0)
                    rc |= export_json_number(b, v[s]);
                break;
            case COL_VALUE:
                rc |= export_json_number(b, v[s]);
                break;
            case COL_NAME:
                if (name)
                    rc |= put_cell(b, name->value, name->value_len);
                break;
            case COL_TIME:
                rc |= put_time(b, c->tfmt, ts[s]);
                break;
            default:
                if ((l = find_label(labels, nlabels, c->name, c->name_len)))
                    rc |= put_cell(b, l->value, l->value_len);
            }
        }
        rc |= st_buf_put_u8(b, '\n');
    }
    return rc ? ST_ENOMEM : 0;
}
