/*
 * resp_cmd — TS.* argument parsing and the range pipeline (see resp_cmd.h).
 *
 * Errors are "TSDB: ..." texts (what valkey-timeseries and RedisTimeSeries
 * clients match on); the caller sends them as "-ERR <text>".
 */
#include "resp_cmd.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "st_err.h"
#include "st_text.h"

#define ERR(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -1;                                                                                 \
    } while (0)

static const char *const dup_names[] = {"block", "first", "last", "min", "max", "sum"};

const char *resp_dup_name(int dup)
{
    return dup >= 0 && dup <= DUP_SUM ? dup_names[dup] : "block";
}

int resp_dup_parse(const resp_arg_t *a)
{
    for (int i = 0; i <= DUP_SUM; i++)
        if (resp_arg_is(a, dup_names[i]))
            return i;
    return DUP_UNSET;
}

static const char *const agg_names[AGG__COUNT] = {
    "",      "avg",  "sum",   "min",   "max",   "range", "count",
    "first", "last", "std.p", "std.s", "var.p", "var.s", "twa",
};

const char *resp_agg_name(int agg)
{
    return agg > 0 && agg < AGG__COUNT ? agg_names[agg] : "";
}

int resp_agg_parse(const resp_arg_t *a)
{
    for (int i = 1; i < AGG__COUNT; i++)
        if (resp_arg_is(a, agg_names[i]))
            return i;
    return -1;
}

int resp_parse_int(const resp_arg_t *a, int64_t *v)
{
    char t[32];
    if (a->len == 0 || a->len >= sizeof t)
        return -1;
    memcpy(t, a->p, a->len);
    t[a->len] = 0;
    char *end;
    errno = 0;
    long long x = strtoll(t, &end, 10);
    if (errno || *end)
        return -1;
    *v = x;
    return 0;
}

int resp_parse_double(const resp_arg_t *a, double *v)
{
    char t[64];
    if (a->len == 0 || a->len >= sizeof t)
        return -1;
    memcpy(t, a->p, a->len);
    t[a->len] = 0;
    char *end;
    errno = 0;
    double x = strtod(t, &end);
    if (*end || (errno && x != 0 && isinf(x) == 0) || isnan(x))
        return -1;
    *v = x;
    return 0;
}

int resp_parse_ts(const resp_arg_t *a, int64_t *ts, int *now)
{
    *now = 0;
    if (a->len == 1 && a->p[0] == '*') {
        *now = 1;
        *ts = 0;
        return 0;
    }
    if (resp_parse_int(a, ts) || *ts < 0)
        return -1;
    return 0;
}

/* ---- TS.CREATE / ALTER / ADD / INCRBY options ---------------------------- */

int resp_tsopts_parse(const resp_arg_t *argv, size_t argc, int kind, resp_tsopts_t *o, char *err,
                      size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->dup = o->on_dup = DUP_UNSET;
    o->compressed = 1;
    size_t i = 0;
    while (i < argc) {
        const resp_arg_t *a = &argv[i];
        int last = i + 1 >= argc;
        if (resp_arg_is(a, "RETENTION")) {
            if (last || resp_parse_int(&argv[i + 1], &o->retention_ms) || o->retention_ms < 0)
                ERR("TSDB: invalid retention value");
            o->has_retention = 1;
            i += 2;
        } else if (resp_arg_is(a, "ENCODING") && kind != RESP_OPTS_INCR) {
            if (last)
                ERR("TSDB: missing ENCODING value");
            if (resp_arg_is(&argv[i + 1], "COMPRESSED"))
                o->compressed = 1;
            else if (resp_arg_is(&argv[i + 1], "UNCOMPRESSED"))
                o->compressed = 0;
            else
                ERR("TSDB: unknown ENCODING parameter");
            o->has_encoding = 1;
            i += 2;
        } else if (resp_arg_is(a, "CHUNK_SIZE")) {
            if (last || resp_parse_int(&argv[i + 1], &o->chunk_size) || o->chunk_size < 48 ||
                o->chunk_size > 1048576 || o->chunk_size % 8)
                ERR("TSDB: invalid chunk size");
            o->has_chunk = 1;
            i += 2;
        } else if (resp_arg_is(a, "DUPLICATE_POLICY") && kind != RESP_OPTS_INCR) {
            if (last || (o->dup = resp_dup_parse(&argv[i + 1])) == DUP_UNSET)
                ERR("TSDB: invalid duplicate policy");
            i += 2;
        } else if (resp_arg_is(a, "ON_DUPLICATE") && kind == RESP_OPTS_ADD) {
            if (last || (o->on_dup = resp_dup_parse(&argv[i + 1])) == DUP_UNSET)
                ERR("TSDB: invalid duplicate policy");
            i += 2;
        } else if (resp_arg_is(a, "IGNORE")) {
            if (i + 2 >= argc || resp_parse_int(&argv[i + 1], &o->ignore_max_time) ||
                o->ignore_max_time < 0 || resp_parse_double(&argv[i + 2], &o->ignore_max_val) ||
                o->ignore_max_val < 0)
                ERR("TSDB: invalid IGNORE parameters");
            o->has_ignore = 1;
            i += 3;
        } else if (resp_arg_is(a, "TIMESTAMP") && kind == RESP_OPTS_INCR) {
            if (last || resp_parse_ts(&argv[i + 1], &o->ts, &o->ts_now))
                ERR("TSDB: invalid timestamp");
            o->has_ts = 1;
            i += 2;
        } else if (resp_arg_is(a, "UNCOMPRESSED") && kind == RESP_OPTS_INCR) {
            o->has_encoding = 1;
            o->compressed = 0;
            i++;
        } else if (resp_arg_is(a, "LABELS")) {
            size_t n = argc - i - 1;
            if (n % 2)
                ERR("TSDB: wrong number of LABELS arguments");
            if (n / 2 > RESP_TS_MAX_LABELS)
                ERR("TSDB: too many labels (at most %d)", RESP_TS_MAX_LABELS);
            o->labels = argv + i + 1;
            o->nlabels = n / 2;
            o->has_labels = 1;
            for (size_t k = 0; k < o->nlabels; k++) {
                const resp_arg_t *ln = &o->labels[2 * k], *lv = &o->labels[2 * k + 1];
                if (ln->len == 0 || ln->len > 256 || lv->len > 4096)
                    ERR("TSDB: invalid label");
                if (ln->len >= 5 && strncmp(ln->p, "__ts_", 5) == 0)
                    ERR("TSDB: label names starting with __ts_ are reserved");
                if (ln->len == 8 && memcmp(ln->p, "__name__", 8) == 0)
                    ERR("TSDB: the label __name__ is the key");
                if (memchr(ln->p, 0, ln->len) || memchr(lv->p, 0, lv->len))
                    ERR("TSDB: invalid label");
            }
            i = argc;
        } else {
            ERR("TSDB: unknown argument '%.*s'", (int)(a->len > 64 ? 64 : a->len), a->p);
        }
    }
    return 0;
}

/* ---- FILTER ---------------------------------------------------------------- */

static char *dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* a|b|c with each value regex-escaped. */
static char *alt_regex(const char *p, size_t n)
{
    st_buf_t b;
    st_buf_init(&b);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char c = p[i];
        if (c == ',')
            rc = st_buf_put_u8(&b, '|');
        else if (strchr("\\.^$|?*+()[]{}", c))
            rc = st_buf_put_u8(&b, '\\') || st_buf_put_u8(&b, (uint8_t)c);
        else
            rc = st_buf_put_u8(&b, (uint8_t)c);
    }
    if (!rc)
        rc = st_buf_put_u8(&b, 0);
    if (rc) {
        st_buf_deinit(&b);
        return NULL;
    }
    return (char *)b.data;
}

int resp_filter_parse(const resp_arg_t *argv, size_t argc, st_matcher_t *m, size_t cap, size_t *n,
                      char *err, size_t errlen)
{
    *n = 0;
    int selecting = 0;
    for (size_t i = 0; i < argc; i++) {
        const char *p = argv[i].p;
        size_t len = argv[i].len;
        const char *eq = memchr(p, '=', len);
        if (!eq || eq == p || memchr(p, 0, len))
            goto bad;
        if (*n >= cap) {
            snprintf(err, errlen, "TSDB: too many filters (at most %zu)", cap);
            goto fail;
        }
        int neg = eq[-1] == '!';
        size_t nl = (size_t)(eq - p) - (size_t)neg;
        if (nl == 0)
            goto bad;
        const char *v = eq + 1;
        size_t vl = len - (size_t)(v - p);
        st_matcher_t *mm = &m[*n];
        mm->name = dupn(p, nl);
        if (vl >= 2 && v[0] == '(' && v[vl - 1] == ')') {
            mm->type = neg ? ST_MATCH_NRE : ST_MATCH_RE;
            mm->value = alt_regex(v + 1, vl - 2);
            if (!neg && vl > 2)
                selecting = 1;
        } else {
            mm->type = neg ? ST_MATCH_NE : ST_MATCH_EQ;
            mm->value = dupn(v, vl);
            if (!neg && vl > 0)
                selecting = 1;
        }
        (*n)++;
        if (!mm->name || !mm->value) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (!selecting) {
        snprintf(err, errlen, "TSDB: please provide at least one matcher");
        goto fail;
    }
    return 0;
bad:
    snprintf(err, errlen, "TSDB: failed parsing labels");
fail: /* every error: the matchers parsed so far are freed */
    resp_matchers_free(m, *n);
    *n = 0;
    return -1;
}

void resp_matchers_free(st_matcher_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)m[i].name);
        free((char *)m[i].value);
        m[i].name = m[i].value = NULL;
    }
}

/* value in "a|b|c" (the alternatives alt_regex built, unescaped compare). */
static int in_alt(const char *re, const char *v)
{
    size_t vl = strlen(v);
    const char *p = re;
    for (;;) {
        size_t k = 0, j = 0;
        int ok = 1;
        for (; p[j] && p[j] != '|'; j++) {
            char c = p[j];
            if (c == '\\' && p[j + 1])
                c = p[++j];
            if (k >= vl || v[k] != c)
                ok = 0;
            k++;
        }
        if (ok && k == vl)
            return 1;
        if (!p[j])
            return 0;
        p += j + 1;
    }
}

int resp_labels_match(const st_matcher_t *m, size_t nm, const char *const *kv, size_t npairs)
{
    for (size_t i = 0; i < nm; i++) {
        const char *v = "";
        for (size_t k = 0; k < npairs; k++)
            if (strcmp(kv[2 * k], m[i].name) == 0) {
                v = kv[2 * k + 1];
                break;
            }
        int hit;
        switch (m[i].type) {
        case ST_MATCH_EQ:
            hit = strcmp(v, m[i].value) == 0;
            break;
        case ST_MATCH_NE:
            hit = strcmp(v, m[i].value) != 0;
            break;
        case ST_MATCH_RE:
            hit = in_alt(m[i].value, v);
            break;
        default:
            hit = !in_alt(m[i].value, v);
            break;
        }
        if (!hit)
            return 0;
    }
    return 1;
}

/* ---- range options ------------------------------------------------------------ */

static int range_ts(const resp_arg_t *a, int64_t *v, int64_t dash, int64_t plus)
{
    if (a->len == 1 && a->p[0] == '-') {
        *v = dash;
        return 0;
    }
    if (a->len == 1 && a->p[0] == '+') {
        *v = plus;
        return 0;
    }
    return resp_parse_int(a, v);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int resp_range_parse(const resp_arg_t *argv, size_t argc, int kind, resp_range_t *o, char *err,
                     size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->count = -1;
    o->from = INT64_MIN;
    o->to = INT64_MAX;
    size_t i = 0;
    int rc = -1;
    int align_start = 0, align_end = 0;
    if (kind != RESP_RANGE_MGET) {
        if (argc < 2) {
            snprintf(err, errlen, "ERR wrong number of arguments");
            return -1;
        }
        if (range_ts(&argv[0], &o->from, 0, INT64_MAX) || o->from < 0) {
            snprintf(err, errlen, "TSDB: invalid fromTimestamp");
            return -1;
        }
        if (range_ts(&argv[1], &o->to, 0, INT64_MAX) || o->to < 0) {
            snprintf(err, errlen, "TSDB: invalid toTimestamp");
            return -1;
        }
        i = 2;
    }
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        goto out;                                                                                  \
    } while (0)
    while (i < argc) {
        const resp_arg_t *a = &argv[i];
        if (resp_arg_is(a, "LATEST")) {
            o->latest = 1;
            i++;
        } else if (resp_arg_is(a, "FILTER_BY_TS") && kind != RESP_RANGE_MGET) {
            i++;
            size_t s = i;
            int64_t t;
            while (i < argc && resp_parse_int(&argv[i], &t) == 0 && t >= 0)
                i++;
            size_t n = i - s;
            if (n == 0)
                BAD("TSDB: FILTER_BY_TS one or more arguments are missing");
            if (n > RESP_TS_MAX_FILTER_TS)
                BAD("TSDB: too many FILTER_BY_TS timestamps (at most %d)", RESP_TS_MAX_FILTER_TS);
            free(o->filter_ts);
            o->filter_ts = malloc(n * sizeof *o->filter_ts);
            if (!o->filter_ts)
                BAD("out of memory");
            for (size_t k = 0; k < n; k++)
                resp_parse_int(&argv[s + k], &o->filter_ts[k]);
            if (n > 1)
                qsort(o->filter_ts, n, sizeof *o->filter_ts, cmp_i64);
            o->nfilter_ts = n;
        } else if (resp_arg_is(a, "FILTER_BY_VALUE") && kind != RESP_RANGE_MGET) {
            if (i + 2 >= argc || resp_parse_double(&argv[i + 1], &o->vmin) ||
                resp_parse_double(&argv[i + 2], &o->vmax))
                BAD("TSDB: wrong value for FILTER_BY_VALUE");
            o->has_fbv = 1;
            i += 3;
        } else if (resp_arg_is(a, "COUNT") && kind != RESP_RANGE_MGET) {
            if (i + 1 >= argc || resp_parse_int(&argv[i + 1], &o->count) || o->count <= 0)
                BAD("TSDB: Invalid COUNT value");
            i += 2;
        } else if (resp_arg_is(a, "ALIGN") && kind != RESP_RANGE_MGET) {
            if (i + 1 >= argc)
                BAD("TSDB: ALIGN parameter is missing");
            const resp_arg_t *v = &argv[i + 1];
            if (resp_arg_is(v, "start") || (v->len == 1 && v->p[0] == '-'))
                align_start = 1;
            else if (resp_arg_is(v, "end") || (v->len == 1 && v->p[0] == '+'))
                align_end = 1;
            else if (resp_parse_int(v, &o->align))
                BAD("TSDB: unknown ALIGN parameter");
            o->has_align = 1;
            i += 2;
        } else if (resp_arg_is(a, "AGGREGATION") && kind != RESP_RANGE_MGET) {
            if (i + 2 >= argc)
                BAD("TSDB: missing AGGREGATION arguments");
            if ((o->agg = resp_agg_parse(&argv[i + 1])) < 0) {
                o->agg = 0;
                BAD("TSDB: unknown aggregation type");
            }
            if (resp_parse_int(&argv[i + 2], &o->bucket) || o->bucket <= 0)
                BAD("TSDB: bucketDuration must be greater than zero");
            i += 3;
        } else if (resp_arg_is(a, "BUCKETTIMESTAMP") && kind != RESP_RANGE_MGET) {
            if (i + 1 >= argc)
                BAD("TSDB: missing BUCKETTIMESTAMP argument");
            const resp_arg_t *v = &argv[i + 1];
            if (resp_arg_is(v, "start") || (v->len == 1 && v->p[0] == '-'))
                o->bt = BT_START;
            else if (resp_arg_is(v, "end") || (v->len == 1 && v->p[0] == '+'))
                o->bt = BT_END;
            else if (resp_arg_is(v, "mid") || (v->len == 1 && v->p[0] == '~'))
                o->bt = BT_MID;
            else
                BAD("TSDB: unknown BUCKETTIMESTAMP parameter");
            i += 2;
        } else if (resp_arg_is(a, "EMPTY") && kind != RESP_RANGE_MGET) {
            o->empty = 1;
            i++;
        } else if (resp_arg_is(a, "WITHLABELS") && kind != RESP_RANGE_ONE) {
            if (o->nselected)
                BAD("TSDB: cannot accept WITHLABELS and SELECT_LABELS together");
            o->withlabels = 1;
            i++;
        } else if (resp_arg_is(a, "SELECTED_LABELS") && kind != RESP_RANGE_ONE) {
            if (o->withlabels)
                BAD("TSDB: cannot accept WITHLABELS and SELECT_LABELS together");
            i++;
            size_t s = i;
            while (i < argc && !resp_arg_is(&argv[i], "FILTER") &&
                   !resp_arg_is(&argv[i], "GROUPBY") && !resp_arg_is(&argv[i], "COUNT") &&
                   !resp_arg_is(&argv[i], "AGGREGATION") && !resp_arg_is(&argv[i], "LATEST"))
                i++;
            if (i == s)
                BAD("TSDB: SELECTED_LABELS requires at least one label");
            o->selected = argv + s;
            o->nselected = i - s;
        } else if (resp_arg_is(a, "FILTER") && kind != RESP_RANGE_ONE) {
            i++;
            size_t s = i;
            while (i < argc && !resp_arg_is(&argv[i], "GROUPBY"))
                i++;
            if (i == s)
                BAD("TSDB: missing FILTER arguments");
            resp_matchers_free(o->filters, o->nfilters);
            if (resp_filter_parse(argv + s, i - s, o->filters, RESP_TS_MAX_FILTERS, &o->nfilters,
                                  err, errlen))
                goto out;
        } else if (resp_arg_is(a, "GROUPBY") && kind == RESP_RANGE_MULTI) {
            if (i + 3 >= argc || !resp_arg_is(&argv[i + 2], "REDUCE"))
                BAD("TSDB: missing REDUCE");
            o->groupby = &argv[i + 1];
            if ((o->reducer = resp_agg_parse(&argv[i + 3])) < 0 || o->reducer == AGG_TWA) {
                o->reducer = 0;
                BAD("TSDB: failed parsing reducer");
            }
            i += 4;
        } else {
            BAD("TSDB: unknown argument '%.*s'", (int)(a->len > 64 ? 64 : a->len), a->p);
        }
    }
    if (kind != RESP_RANGE_ONE && o->nfilters == 0)
        BAD("TSDB: missing FILTER argument");
    if ((o->has_align || o->bt != BT_START || o->empty) && !o->agg)
        BAD("TSDB: ALIGN, BUCKETTIMESTAMP and EMPTY need AGGREGATION");
    if (align_start)
        o->align = o->from == INT64_MIN ? 0 : o->from;
    if (align_end)
        o->align = o->to == INT64_MAX ? 0 : o->to;
    rc = 0;
out:
    if (rc)
        resp_range_free(o);
    return rc;
#undef BAD
}

void resp_range_free(resp_range_t *o)
{
    free(o->filter_ts);
    o->filter_ts = NULL;
    o->nfilter_ts = 0;
    resp_matchers_free(o->filters, o->nfilters);
    o->nfilters = 0;
}

/* ---- samples and aggregation ------------------------------------------------- */

int resp_samples_push(resp_samples_t *s, int64_t ts, double v)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 16;
        int64_t *t = realloc(s->ts, nc * sizeof *t);
        if (!t)
            return ST_ENOMEM;
        s->ts = t;
        double *vv = realloc(s->v, nc * sizeof *vv);
        if (!vv)
            return ST_ENOMEM;
        s->v = vv;
        s->cap = nc;
    }
    s->ts[s->n] = ts;
    s->v[s->n] = v;
    s->n++;
    return 0;
}

void resp_samples_free(resp_samples_t *s)
{
    free(s->ts);
    free(s->v);
    memset(s, 0, sizeof *s);
}

double resp_agg_values(int agg, const int64_t *ts, const double *v, size_t n, int64_t bstart,
                       int64_t bend)
{
    if (n == 0)
        return agg == AGG_SUM || agg == AGG_COUNT ? 0 : NAN;
    double a = v[0], s = 0, mn = v[0], mx = v[0];
    for (size_t i = 0; i < n; i++) {
        s += v[i];
        if (v[i] < mn)
            mn = v[i];
        if (v[i] > mx)
            mx = v[i];
    }
    switch (agg) {
    case AGG_AVG:
        return s / (double)n;
    case AGG_SUM:
        return s;
    case AGG_MIN:
        return mn;
    case AGG_MAX:
        return mx;
    case AGG_RANGE:
        return mx - mn;
    case AGG_COUNT:
        return (double)n;
    case AGG_FIRST:
        return a;
    case AGG_LAST:
        return v[n - 1];
    case AGG_STD_P:
    case AGG_STD_S:
    case AGG_VAR_P:
    case AGG_VAR_S: {
        double mean = s / (double)n, q = 0;
        for (size_t i = 0; i < n; i++)
            q += (v[i] - mean) * (v[i] - mean);
        int sample = agg == AGG_STD_S || agg == AGG_VAR_S;
        if (sample && n < 2)
            return 0;
        double var = q / (double)(sample ? n - 1 : n);
        return agg == AGG_STD_P || agg == AGG_STD_S ? sqrt(var) : var;
    }
    case AGG_TWA: {
        /* step interpolation: each sample holds until the next one, the
         * last until the end of the bucket, the first from the start */
        if (!ts || n == 1)
            return v[0];
        double area = 0;
        int64_t span = bend - bstart;
        for (size_t i = 0; i < n; i++) {
            int64_t t0 = i == 0 ? bstart : ts[i];
            int64_t t1 = i + 1 < n ? ts[i + 1] : bend;
            area += v[i] * (double)(t1 - t0);
        }
        return span > 0 ? area / (double)span : v[n - 1];
    }
    default:
        return NAN;
    }
}

/* floor((ts - align) / bucket) * bucket + align, for negative offsets too */
static int64_t bucket_start(int64_t ts, int64_t align, int64_t bucket)
{
    int64_t d = ts - align;
    int64_t q = d / bucket;
    if (d % bucket < 0)
        q--;
    return q * bucket + align;
}

int resp_range_apply(const resp_range_t *o, resp_samples_t *s)
{
    size_t w = 0, fi = 0;
    for (size_t i = 0; i < s->n; i++) {
        int64_t t = s->ts[i];
        double v = s->v[i];
        if (t < o->from || t > o->to)
            continue;
        if (o->nfilter_ts) {
            while (fi < o->nfilter_ts && o->filter_ts[fi] < t)
                fi++;
            if (fi >= o->nfilter_ts || o->filter_ts[fi] != t)
                continue;
        }
        if (o->has_fbv && (v < o->vmin || v > o->vmax))
            continue;
        s->ts[w] = t;
        s->v[w] = v;
        w++;
    }
    s->n = w;
    if (o->agg && s->n) {
        resp_samples_t out = {0};
        int64_t align = o->has_align ? o->align : 0;
        size_t i = 0;
        int64_t prev = 0;
        int have_prev = 0;
        while (i < s->n) {
            int64_t b0 = bucket_start(s->ts[i], align, o->bucket);
            size_t j = i;
            while (j < s->n && s->ts[j] < b0 + o->bucket)
                j++;
            if (o->empty && have_prev) {
                for (int64_t e = prev + o->bucket; e < b0; e += o->bucket) {
                    if (out.n >= RESP_TS_MAX_BUCKETS) {
                        resp_samples_free(&out);
                        return ST_ELIMIT;
                    }
                    double ev = resp_agg_values(o->agg, NULL, NULL, 0, e, e + o->bucket);
                    if (o->agg == AGG_LAST || o->agg == AGG_TWA)
                        ev = o->agg == AGG_LAST ? NAN : s->v[i - 1];
                    int64_t bt = o->bt == BT_END   ? e + o->bucket
                                 : o->bt == BT_MID ? e + o->bucket / 2
                                                   : e;
                    if (resp_samples_push(&out, bt, ev)) {
                        resp_samples_free(&out);
                        return ST_ENOMEM;
                    }
                }
            }
            int64_t lo = b0 > o->from ? b0 : o->from;
            double av = resp_agg_values(o->agg, s->ts + i, s->v + i, j - i, lo, b0 + o->bucket);
            int64_t bt = o->bt == BT_END   ? b0 + o->bucket
                         : o->bt == BT_MID ? b0 + o->bucket / 2
                                           : b0;
            if (b0 < o->from && o->bt == BT_START && o->has_align)
                bt = b0;
            if (resp_samples_push(&out, bt, av)) {
                resp_samples_free(&out);
                return ST_ENOMEM;
            }
            prev = b0;
            have_prev = 1;
            i = j;
        }
        resp_samples_free(s);
        *s = out;
    }
    if (o->rev)
        for (size_t i = 0; i < s->n / 2; i++) {
            size_t j = s->n - 1 - i;
            int64_t t = s->ts[i];
            s->ts[i] = s->ts[j];
            s->ts[j] = t;
            double v = s->v[i];
            s->v[i] = s->v[j];
            s->v[j] = v;
        }
    if (o->count > 0 && (uint64_t)o->count < s->n)
        s->n = (size_t)o->count;
    return 0;
}

/* ---- metadata -------------------------------------------------------------- */

void resp_meta_default(resp_meta_t *m)
{
    memset(m, 0, sizeof *m);
    m->dup = DUP_UNSET;
    m->chunk_size = 4096;
    m->compressed = 1;
}

void resp_meta_apply(resp_meta_t *m, const resp_tsopts_t *o)
{
    if (o->has_retention)
        m->retention_ms = o->retention_ms;
    if (o->dup != DUP_UNSET)
        m->dup = o->dup;
    if (o->has_chunk)
        m->chunk_size = o->chunk_size;
    if (o->has_encoding)
        m->compressed = o->compressed;
    if (o->has_ignore) {
        m->ignore_max_time = o->ignore_max_time;
        m->ignore_max_val = o->ignore_max_val;
    }
}

int resp_meta_reserved(const char *name)
{
    return strncmp(name, "__ts_", 5) == 0;
}

static int kv(void *arg, const char *k, const char *v)
{
    st_buf_t *b = arg;
    int rc = st_buf_put_u8(b, ',');
    if (!rc)
        rc = st_json_str(b, k, strlen(k));
    if (!rc)
        rc = st_buf_put_u8(b, ':');
    if (!rc)
        rc = st_json_str(b, v, strlen(v));
    return rc;
}

int resp_meta_each(const resp_meta_t *m, resp_meta_kv_fn fn, void *arg)
{
    char t[64];
    snprintf(t, sizeof t, "%lld", (long long)m->retention_ms);
    int rc = fn(arg, "__ts_retention__", t);
    if (!rc && m->dup != DUP_UNSET)
        rc = fn(arg, "__ts_dup__", resp_dup_name(m->dup));
    snprintf(t, sizeof t, "%lld", (long long)m->chunk_size);
    if (!rc)
        rc = fn(arg, "__ts_chunk__", t);
    if (!rc)
        rc = fn(arg, "__ts_enc__", m->compressed ? "compressed" : "uncompressed");
    if (!rc && (m->ignore_max_time || m->ignore_max_val)) {
        st_buf_t v;
        st_buf_init(&v);
        rc = st_buf_append(&v, t,
                           (size_t)snprintf(t, sizeof t, "%lld,", (long long)m->ignore_max_time));
        if (!rc)
            rc = st_fmt_double(&v, m->ignore_max_val);
        if (!rc)
            rc = st_buf_put_u8(&v, 0);
        if (!rc)
            rc = fn(arg, "__ts_ignore__", (const char *)v.data);
        st_buf_deinit(&v);
    }
    return rc;
}

int resp_meta_to_json(st_buf_t *b, const resp_meta_t *m)
{
    return resp_meta_each(m, kv, b);
}

int resp_meta_label(resp_meta_t *m, const char *name, const char *value)
{
    if (!resp_meta_reserved(name))
        return 0;
    if (strcmp(name, "__ts_retention__") == 0) {
        m->retention_ms = strtoll(value, NULL, 10);
    } else if (strcmp(name, "__ts_dup__") == 0) {
        resp_arg_t a = {value, strlen(value)};
        m->dup = resp_dup_parse(&a);
    } else if (strcmp(name, "__ts_chunk__") == 0) {
        m->chunk_size = strtoll(value, NULL, 10);
    } else if (strcmp(name, "__ts_enc__") == 0) {
        m->compressed = strcmp(value, "uncompressed") != 0;
    } else if (strcmp(name, "__ts_ignore__") == 0) {
        char *end;
        m->ignore_max_time = strtoll(value, &end, 10);
        m->ignore_max_val = *end == ',' ? strtod(end + 1, NULL) : 0;
    }
    return 1;
}
