/*
 * rules — compaction rules: codec, validation, matching, aggregator (see
 * rules.h for the format and the semantics).
 *
 * Matching compiles each regex matcher once (PCRE2, fully anchored) and
 * checks a sorted label set matcher by matcher with Prometheus' rule that
 * a missing label reads as "". The aggregator keeps count, sum, min, max,
 * first, last, Welford's mean and M2 (variance without cancellation) and
 * the twa area so far; every aggregator's value comes from these.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rules.h"

#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "st_crc32c.h"
#include "st_err.h"

#define RULES_MAGIC "STRR"
#define RULES_FORMAT 1u
#define RULES_HEAD 20u        /* magic, format, version, count */
#define RULES_ENTRY_FIXED 46u /* id agg flags bucket align created + 2 lengths */

static const char *const agg_names[RULE_AGG_N] = {
    "avg",  "sum",   "min",   "max",   "range", "count", "first",
    "last", "std.p", "std.s", "var.p", "var.s", "twa",
};

int rule_agg_parse(const char *s, size_t len)
{
    for (int i = 0; i < RULE_AGG_N; i++)
        if (strlen(agg_names[i]) == len && strncasecmp(agg_names[i], s, len) == 0)
            return i;
    return -1;
}

const char *rule_agg_name(rule_agg_t a)
{
    return (unsigned)a < RULE_AGG_N ? agg_names[a] : "?";
}

static const st_matcher_t *find_eq(const selector_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->m[i].type == ST_MATCH_EQ && strcmp(s->m[i].name, name) == 0)
            return &s->m[i];
    return NULL;
}

int rule_is_retention(const rule_t *r)
{
    return (r->flags & RULE_FLAG_RETENTION) != 0;
}

/* A retention entry: a metric name (no selector), no dest, a duration. */
static int retention_validate(const rule_t *r, char *err, size_t errlen)
{
    size_t sl = r->source ? strlen(r->source) : 0;
    if (!sl || sl > RULE_TEXT_MAX) {
        snprintf(err, errlen, "a retention needs a metric name of at most %d bytes", RULE_TEXT_MAX);
        return ST_EINVAL;
    }
    if (r->flags != RULE_FLAG_RETENTION || (r->dest && r->dest[0]) || r->agg != 0 ||
        r->align_ms != 0) {
        snprintf(err, errlen, "a retention has no dest, aggregation or alignment");
        return ST_EINVAL;
    }
    if (r->bucket_ms <= 0 || r->bucket_ms > RULE_RETENTION_MAX_MS) {
        snprintf(err, errlen, "retention must be between 1ms and 100 years");
        return ST_EINVAL;
    }
    return 0;
}

int rule_validate(const rule_t *r, char *err, size_t errlen)
{
    if (rule_is_retention(r))
        return retention_validate(r, err, errlen);
    if (!r->source || !r->dest || !r->source[0] || !r->dest[0]) {
        snprintf(err, errlen, "a rule needs a source and a dest");
        return ST_EINVAL;
    }
    if (strlen(r->source) > RULE_TEXT_MAX || strlen(r->dest) > RULE_TEXT_MAX) {
        snprintf(err, errlen, "source and dest are at most %d bytes", RULE_TEXT_MAX);
        return ST_EINVAL;
    }
    if ((unsigned)r->agg >= RULE_AGG_N) {
        snprintf(err, errlen, "unknown aggregation");
        return ST_EINVAL;
    }
    if (r->bucket_ms <= 0 || r->bucket_ms > RULE_BUCKET_MAX_MS) {
        snprintf(err, errlen, "bucket must be between 1ms and 366d");
        return ST_EINVAL;
    }
    if (r->flags & ~RULE_FLAG_EXACT) {
        snprintf(err, errlen, "unknown rule flags");
        return ST_EINVAL;
    }
    selector_t s, d;
    char e[160];
    if (selector_parse(r->source, strlen(r->source), &s, e, sizeof e)) {
        snprintf(err, errlen, "source: %s", e);
        return ST_EINVAL;
    }
    int rc = 0;
    if (selector_parse(r->dest, strlen(r->dest), &d, e, sizeof e)) {
        snprintf(err, errlen, "dest: %s", e);
        selector_free(&s);
        return ST_EINVAL;
    }
    int nonempty = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.m[i].type != ST_MATCH_EQ && (r->flags & RULE_FLAG_EXACT)) {
            snprintf(err, errlen, "source: an exact series key has only = matchers");
            rc = ST_EINVAL;
        }
        if (s.m[i].type == ST_MATCH_EQ && s.m[i].value[0])
            nonempty = 1;
        if (s.m[i].type == ST_MATCH_RE || s.m[i].type == ST_MATCH_NRE) {
            int ec;
            PCRE2_SIZE eo;
            pcre2_code *re =
                pcre2_compile((PCRE2_SPTR)s.m[i].value, PCRE2_ZERO_TERMINATED,
                              PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &ec, &eo, NULL);
            if (!re) {
                snprintf(err, errlen, "source: invalid regex for %s", s.m[i].name);
                rc = ST_EINVAL;
            }
            pcre2_code_free(re);
            nonempty = 1;
        }
    }
    if (!rc && !nonempty) {
        snprintf(err, errlen, "source: needs a matcher with a non-empty value");
        rc = ST_EINVAL;
    }
    for (size_t i = 0; !rc && i < d.n; i++)
        if (d.m[i].type != ST_MATCH_EQ || !d.m[i].value[0]) {
            snprintf(err, errlen, "dest: only label=\"value\" pairs (non-empty values)");
            rc = ST_EINVAL;
        }
    if (!rc && !find_eq(&d, ST_METRIC_LABEL)) {
        snprintf(err, errlen, "dest: needs a metric name");
        rc = ST_EINVAL;
    }
    selector_free(&s);
    selector_free(&d);
    return rc;
}

void rules_init(rules_t *s)
{
    memset(s, 0, sizeof *s);
}

static void rule_free(rule_t *r)
{
    free(r->source);
    free(r->dest);
}

void rules_free(rules_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        rule_free(&s->v[i]);
    free(s->v);
    rules_init(s);
}

static int push(rules_t *s, const rule_t *r)
{
    if (s->n == s->cap && st_grow(&s->v, &s->cap, sizeof *s->v, 16))
        return ST_ENOMEM;
    rule_t *c = &s->v[s->n];
    *c = *r;
    c->source = strdup(r->source);
    c->dest = strdup(r->dest ? r->dest : "");
    if (!c->source || !c->dest) {
        rule_free(c);
        return ST_ENOMEM;
    }
    s->n++;
    return 0;
}

int rules_copy(rules_t *dst, const rules_t *src)
{
    rules_init(dst);
    dst->version = src->version;
    for (size_t i = 0; i < src->n; i++)
        if (push(dst, &src->v[i])) {
            rules_free(dst);
            return ST_ENOMEM;
        }
    return 0;
}

long rules_find_retention(const rules_t *s, const char *metric)
{
    for (size_t i = 0; i < s->n; i++)
        if (rule_is_retention(&s->v[i]) && strcmp(s->v[i].source, metric) == 0)
            return (long)i;
    return -1;
}

long rules_find(const rules_t *s, const char *source, const char *dest)
{
    for (size_t i = 0; i < s->n; i++)
        if (!rule_is_retention(&s->v[i]) && strcmp(s->v[i].source, source) == 0 &&
            strcmp(s->v[i].dest, dest) == 0)
            return (long)i;
    return -1;
}

int rules_add(rules_t *s, const rule_t *r, uint64_t *id, char *err, size_t errlen)
{
    int rc = rule_validate(r, err, errlen);
    if (rc)
        return rc;
    if (s->n >= RULES_MAX) {
        snprintf(err, errlen, "too many rules (at most %d)", RULES_MAX);
        return ST_ELIMIT;
    }
    if (rule_is_retention(r)) {
        if (rules_find_retention(s, r->source) >= 0) {
            snprintf(err, errlen, "a retention for this metric exists");
            return ST_EEXIST;
        }
    } else if (rules_find(s, r->source, r->dest) >= 0) {
        snprintf(err, errlen, "a rule from this source to this dest exists");
        return ST_EEXIST;
    } else if (strcmp(r->source, r->dest) == 0) {
        snprintf(err, errlen, "source and dest must differ");
        return ST_EINVAL;
    }
    for (size_t i = 0; i < s->n && !rule_is_retention(r); i++) {
        if (rule_is_retention(&s->v[i]))
            continue;
        if (strcmp(s->v[i].dest, r->dest) == 0) {
            snprintf(err, errlen, "the dest already receives rule %llu (one source per dest)",
                     (unsigned long long)s->v[i].id);
            return ST_EEXIST;
        }
        if (strcmp(s->v[i].source, r->dest) == 0) {
            snprintf(err, errlen, "the dest is the source of rule %llu (no chains)",
                     (unsigned long long)s->v[i].id);
            return ST_EINVAL;
        }
        if (strcmp(s->v[i].dest, r->source) == 0) {
            snprintf(err, errlen, "the source is the dest of rule %llu (no chains)",
                     (unsigned long long)s->v[i].id);
            return ST_EINVAL;
        }
    }
    rule_t c = *r;
    if (!c.id) {
        uint64_t max = 0;
        for (size_t i = 0; i < s->n; i++)
            if (s->v[i].id > max)
                max = s->v[i].id;
        c.id = max + 1;
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].id == c.id) {
            snprintf(err, errlen, "rule id %llu exists", (unsigned long long)c.id);
            return ST_EEXIST;
        }
    if ((rc = push(s, &c)))
        return rc;
    if (id)
        *id = c.id;
    return 0;
}

int rules_remove(rules_t *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].id == id) {
            rule_free(&s->v[i]);
            memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
            s->n--;
            return 0;
        }
    return ST_ENOENT;
}

/* ---- codec ---- */

int rules_encode(const rules_t *s, st_buf_t *out)
{
    size_t start = out->len;
    int rc = st_buf_append(out, RULES_MAGIC, 4) || st_buf_put_u32le(out, RULES_FORMAT) ||
             st_buf_put_u64le(out, s->version) || st_buf_put_u32le(out, (uint32_t)s->n);
    for (size_t i = 0; !rc && i < s->n; i++) {
        const rule_t *r = &s->v[i];
        size_t sl = strlen(r->source), dl = strlen(r->dest);
        rc = st_buf_put_u64le(out, r->id) || st_buf_put_u8(out, (uint8_t)r->agg) ||
             st_buf_put_u8(out, (uint8_t)r->flags) ||
             st_buf_put_u64le(out, (uint64_t)r->bucket_ms) ||
             st_buf_put_u64le(out, (uint64_t)r->align_ms) ||
             st_buf_put_u64le(out, (uint64_t)r->created_ms) ||
             st_buf_put_u32le(out, (uint32_t)sl) || st_buf_append(out, r->source, sl) ||
             st_buf_put_u32le(out, (uint32_t)dl) || st_buf_append(out, r->dest, dl);
    }
    if (!rc)
        rc = st_buf_put_u32le(out, st_crc32c(0, out->data + start, out->len - start));
    return rc ? ST_ENOMEM : 0;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static char *take_str(const uint8_t **p, const uint8_t *end)
{
    if (end - *p < 4)
        return NULL;
    uint32_t l = rd32(*p);
    *p += 4;
    if (l > RULE_TEXT_MAX || (size_t)(end - *p) < l)
        return NULL;
    char *s = malloc(l + 1);
    if (!s)
        return NULL;
    memcpy(s, *p, l);
    s[l] = '\0';
    *p += l;
    return strlen(s) == l ? s : (free(s), NULL);
}

int rules_decode(const uint8_t *p, size_t len, rules_t *out, char *err, size_t errlen)
{
    rules_init(out);
    if (len < RULES_HEAD + 4 || memcmp(p, RULES_MAGIC, 4) != 0) {
        snprintf(err, errlen, "not a rule set");
        return ST_EPROTO;
    }
    if (rd32(p + 4) != RULES_FORMAT) {
        snprintf(err, errlen, "rule set format %u is not supported", rd32(p + 4));
        return ST_EPROTO;
    }
    if (st_crc32c(0, p, len - 4) != rd32(p + len - 4)) {
        snprintf(err, errlen, "rule set checksum mismatch");
        return ST_EPROTO;
    }
    out->version = rd64(p + 8);
    uint32_t count = rd32(p + 16);
    if (count > RULES_MAX) {
        snprintf(err, errlen, "rule set holds %u rules (at most %d)", count, RULES_MAX);
        return ST_ELIMIT;
    }
    const uint8_t *q = p + RULES_HEAD, *end = p + len - 4;
    for (uint32_t i = 0; i < count; i++) {
        if ((size_t)(end - q) < RULES_ENTRY_FIXED - 8) {
            snprintf(err, errlen, "rule set truncated");
            return ST_EPROTO;
        }
        rule_t r = {0};
        r.id = rd64(q);
        r.agg = (rule_agg_t)q[8];
        r.flags = q[9];
        r.bucket_ms = (int64_t)rd64(q + 10);
        r.align_ms = (int64_t)rd64(q + 18);
        r.created_ms = (int64_t)rd64(q + 26);
        q += 34;
        r.source = take_str(&q, end);
        r.dest = r.source ? take_str(&q, end) : NULL;
        if (!r.source || !r.dest) {
            rule_free(&r);
            snprintf(err, errlen, "rule set truncated");
            return ST_EPROTO;
        }
        uint64_t got;
        int rc = rules_add(out, &r, &got, err, errlen);
        rule_free(&r);
        if (rc)
            return rc == ST_ENOMEM ? rc : ST_EINVAL;
    }
    if (q != end) {
        snprintf(err, errlen, "trailing bytes after the rule set");
        return ST_EPROTO;
    }
    return 0;
}

uint32_t rules_blob_crc(const uint8_t *p, size_t len)
{
    return len >= RULES_HEAD + 4 ? rd32(p + len - 4) : 0;
}

uint64_t rules_blob_version(const uint8_t *p, size_t len)
{
    return len >= RULES_HEAD + 4 && memcmp(p, RULES_MAGIC, 4) == 0 ? rd64(p + 8) : 0;
}

int rules_blob_newer(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    uint64_t va = rules_blob_version(a, alen), vb = rules_blob_version(b, blen);
    if (va != vb)
        return va > vb;
    return rules_blob_crc(a, alen) > rules_blob_crc(b, blen);
}

/* ---- compiled rules ---- */

struct rule_compiled {
    rule_t r;
    selector_t src, dst;
    pcre2_code *re[SELECTOR_MAX_MATCHERS];
    pcre2_match_data *md;
    const char *src_name, *dst_name;
    st_label_t dlab[SELECTOR_MAX_MATCHERS]; /* dest labels, sorted */
    size_t ndlab;
};

void rule_compiled_free(rule_compiled_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->src.n; i++)
        pcre2_code_free(c->re[i]);
    pcre2_match_data_free(c->md);
    selector_free(&c->src);
    selector_free(&c->dst);
    rule_free(&c->r);
    free(c);
}

int rule_compile(const rule_t *r, rule_compiled_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (rule_is_retention(r)) {
        snprintf(err, errlen, "a retention entry is not a compaction rule");
        return ST_EINVAL;
    }
    int rc = rule_validate(r, err, errlen);
    if (rc)
        return rc;
    rule_compiled_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    c->r = *r;
    c->r.source = strdup(r->source);
    c->r.dest = strdup(r->dest);
    char e[160];
    if (!c->r.source || !c->r.dest ||
        selector_parse(r->source, strlen(r->source), &c->src, e, sizeof e) ||
        selector_parse(r->dest, strlen(r->dest), &c->dst, e, sizeof e) ||
        !(c->md = pcre2_match_data_create(1, NULL))) {
        rule_compiled_free(c);
        snprintf(err, errlen, "out of memory");
        return ST_ENOMEM;
    }
    for (size_t i = 0; i < c->src.n; i++) {
        const st_matcher_t *m = &c->src.m[i];
        if (m->type != ST_MATCH_RE && m->type != ST_MATCH_NRE)
            continue;
        int ec;
        PCRE2_SIZE eo;
        c->re[i] = pcre2_compile((PCRE2_SPTR)m->value, PCRE2_ZERO_TERMINATED,
                                 PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &ec, &eo, NULL);
        if (!c->re[i]) {
            rule_compiled_free(c);
            snprintf(err, errlen, "source: invalid regex");
            return ST_EINVAL;
        }
    }
    const st_matcher_t *sn = find_eq(&c->src, ST_METRIC_LABEL);
    c->src_name = sn ? sn->value : NULL;
    c->dst_name = find_eq(&c->dst, ST_METRIC_LABEL)->value;
    for (size_t i = 0; i < c->dst.n; i++)
        c->dlab[c->ndlab++] =
            (st_label_t){c->dst.m[i].name, c->dst.m[i].value, (uint32_t)strlen(c->dst.m[i].name),
                         (uint32_t)strlen(c->dst.m[i].value)};
    st_labels_sort(c->dlab, c->ndlab);
    *out = c;
    return 0;
}

const rule_t *rule_compiled_rule(const rule_compiled_t *c)
{
    return &c->r;
}

const char *rule_compiled_source_name(const rule_compiled_t *c)
{
    return c->src_name;
}

const char *rule_compiled_dest_name(const rule_compiled_t *c)
{
    return c->dst_name;
}

static const st_label_t *label_get(const st_label_t *l, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (l[i].name_len == nl && memcmp(l[i].name, name, nl) == 0)
            return &l[i];
    return NULL;
}

int rule_compiled_match(rule_compiled_t *c, const st_label_t *l, size_t n)
{
    if (c->r.flags & RULE_FLAG_EXACT) {
        if (n != c->src.n)
            return 0;
        for (size_t i = 0; i < c->src.n; i++) {
            const st_label_t *x = label_get(l, n, c->src.m[i].name);
            size_t vl = strlen(c->src.m[i].value);
            if (!x || x->value_len != vl || memcmp(x->value, c->src.m[i].value, vl) != 0)
                return 0;
        }
        return 1;
    }
    for (size_t i = 0; i < c->src.n; i++) {
        const st_matcher_t *m = &c->src.m[i];
        const st_label_t *x = label_get(l, n, m->name);
        const char *v = x ? x->value : "";
        size_t vl = x ? x->value_len : 0;
        int hit;
        if (m->type == ST_MATCH_EQ || m->type == ST_MATCH_NE)
            hit = strlen(m->value) == vl && memcmp(m->value, v, vl) == 0;
        else
            hit = pcre2_match(c->re[i], (PCRE2_SPTR)v, vl, 0, 0, c->md, NULL) >= 0;
        if (hit != (m->type == ST_MATCH_EQ || m->type == ST_MATCH_RE))
            return 0;
    }
    return 1;
}

size_t rule_compiled_dest(const rule_compiled_t *c, const st_label_t *l, size_t n, st_label_t *out,
                          size_t cap)
{
    size_t k = 0;
    if (!(c->r.flags & RULE_FLAG_EXACT))
        for (size_t i = 0; i < n; i++) {
            if (l[i].name_len == sizeof ST_METRIC_LABEL - 1 &&
                memcmp(l[i].name, ST_METRIC_LABEL, l[i].name_len) == 0)
                continue;
            int over = 0;
            for (size_t j = 0; j < c->ndlab && !over; j++)
                over = c->dlab[j].name_len == l[i].name_len &&
                       memcmp(c->dlab[j].name, l[i].name, l[i].name_len) == 0;
            if (over)
                continue;
            if (k == cap)
                return 0;
            out[k++] = l[i];
        }
    for (size_t j = 0; j < c->ndlab; j++) {
        if (k == cap)
            return 0;
        out[k++] = c->dlab[j];
    }
    st_labels_sort(out, k);
    return k;
}

/* ---- aggregator ---- */

int64_t rule_bucket_start(int64_t ts, int64_t bucket_ms, int64_t align_ms)
{
    int64_t off = (ts - align_ms) % bucket_ms;
    if (off < 0)
        off += bucket_ms;
    return ts - off;
}

void rule_acc_reset(rule_acc_t *a, int64_t bucket_start)
{
    memset(a, 0, sizeof *a);
    a->start_ms = bucket_start;
}

void rule_acc_add(rule_acc_t *a, int64_t ts, double v)
{
    if (a->n == 0) {
        a->first = a->min = a->max = v;
        a->area = (double)(ts - a->start_ms) * v; /* the first value reaches back to the start */
    } else {
        if (v < a->min)
            a->min = v;
        if (v > a->max)
            a->max = v;
        a->area += (double)(ts - a->last_ts) * (a->last + v) / 2;
    }
    a->n++;
    a->sum += v;
    a->last = v;
    a->last_ts = ts;
    double d = v - a->mean;
    a->mean += d / (double)a->n;
    a->m2 += d * (v - a->mean);
}

double rule_acc_value(const rule_acc_t *a, rule_agg_t agg, int64_t bucket_ms)
{
    double n = (double)a->n;
    switch (agg) {
    case RULE_AGG_AVG:
        return a->sum / n;
    case RULE_AGG_SUM:
        return a->sum;
    case RULE_AGG_MIN:
        return a->min;
    case RULE_AGG_MAX:
        return a->max;
    case RULE_AGG_RANGE:
        return a->max - a->min;
    case RULE_AGG_COUNT:
        return n;
    case RULE_AGG_FIRST:
        return a->first;
    case RULE_AGG_LAST:
        return a->last;
    case RULE_AGG_VAR_P:
        return a->m2 / n;
    case RULE_AGG_VAR_S:
        return a->n > 1 ? a->m2 / (n - 1) : NAN;
    case RULE_AGG_STD_P:
        return sqrt(a->m2 / n);
    case RULE_AGG_STD_S:
        return a->n > 1 ? sqrt(a->m2 / (n - 1)) : NAN;
    case RULE_AGG_TWA: {
        /* the last value reaches forward to the bucket's end */
        double end = (double)(a->start_ms + bucket_ms - a->last_ts) * a->last;
        return (a->area + end) / (double)bucket_ms;
    }
    default:
        return NAN;
    }
}
