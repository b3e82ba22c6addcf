/*
 * tomb — tombstone records, the tombstones file and masking (see tomb.h).
 *
 * Decoding trusts nothing: every length is checked against the bytes left
 * and the limits of tomb.h before anything is allocated for it, so a
 * damaged file or WAL record is refused (ST_ECORRUPT), never over-read.
 */
#include "tomb.h"

#include <stdlib.h>
#include <string.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"

#define TOMB_FORMAT 1   /* an unversioned tombstone */
#define TOMB_FORMAT_V 2 /* a versioned one */
#define TOMB_HDR 16     /* magic + body_len + crc */
/* the label index's limits for a regex matcher (idx_match.c) */
#define TOMB_RE_MATCH_LIMIT 1000000u
#define TOMB_RE_DEPTH_LIMIT 10000u

/* tomb_match's compiled regexes: re[i] for matcher i (NULL: not a regex) */
struct tomb_re {
    size_t n;
    pcre2_code **re;
    pcre2_match_data *md;
    pcre2_match_context *mc;
};

static void tomb_re_free(tomb_re_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->re && i < r->n; i++)
        pcre2_code_free(r->re[i]);
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mc);
    free(r->re);
    free(r);
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void tomb_free(tomb_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nm; i++) {
        free((char *)t->m[i].name);
        free((char *)t->m[i].value);
    }
    free(t->m);
    free(t->ids);
    tomb_re_free(t->re);
    free(t);
}

/* A tombstone with room for nm matchers (strings still NULL). */
static tomb_t *tomb_alloc(size_t nm)
{
    tomb_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->m = calloc(nm ? nm : 1, sizeof *t->m);
    if (!t->m) {
        free(t);
        return NULL;
    }
    return t;
}

int tomb_new(const st_matcher_t *m, size_t nm, int64_t start, int64_t end, uint64_t id,
             uint64_t seq, int64_t created_ms, tomb_t **out)
{
    if (nm > TOMB_MATCHERS_MAX)
        return ST_EINVAL;
    tomb_t *t = tomb_alloc(nm);
    if (!t)
        return ST_ENOMEM;
    t->id = id;
    t->seq = seq;
    t->start = start;
    t->end = end;
    t->created_ms = created_ms;
    for (size_t i = 0; i < nm; i++) {
        t->m[i].type = m[i].type;
        t->m[i].name = dupn(m[i].name, strlen(m[i].name));
        t->m[i].value = dupn(m[i].value, strlen(m[i].value));
        t->nm = i + 1;
        if (!t->m[i].name || !t->m[i].value) {
            tomb_free(t);
            return ST_ENOMEM;
        }
    }
    *out = t;
    return 0;
}

int tomb_encode(st_buf_t *b, const tomb_t *t)
{
    int rc = st_buf_put_u8(b, t->version ? TOMB_FORMAT_V : TOMB_FORMAT);
    rc = rc ? rc : st_buf_put_uvarint(b, t->id);
    rc = rc ? rc : st_buf_put_uvarint(b, t->seq);
    if (t->version)
        rc = rc ? rc : st_buf_put_uvarint(b, t->version);
    rc = rc ? rc : st_buf_put_svarint(b, t->start);
    rc = rc ? rc : st_buf_put_svarint(b, t->end);
    rc = rc ? rc : st_buf_put_svarint(b, t->created_ms);
    rc = rc ? rc : st_buf_put_uvarint(b, t->nm);
    for (size_t i = 0; i < t->nm && !rc; i++) {
        size_t nl = strlen(t->m[i].name), vl = strlen(t->m[i].value);
        rc = st_buf_put_u8(b, (uint8_t)t->m[i].type);
        rc = rc ? rc : st_buf_put_uvarint(b, nl);
        rc = rc ? rc : st_buf_append(b, t->m[i].name, nl);
        rc = rc ? rc : st_buf_put_uvarint(b, vl);
        rc = rc ? rc : st_buf_append(b, t->m[i].value, vl);
    }
    return rc;
}

/* A length-prefixed string of at most TOMB_STR_MAX bytes, no NUL inside. */
static int get_str(const uint8_t **p, const uint8_t *end, char **out)
{
    uint64_t n;
    int k = st_uvarint_get(*p, end, &n);
    if (k <= 0)
        return ST_ECORRUPT;
    *p += k;
    if (n > TOMB_STR_MAX || n > (uint64_t)(end - *p) || memchr(*p, 0, (size_t)n))
        return ST_ECORRUPT;
    if (!(*out = dupn((const char *)*p, (size_t)n)))
        return ST_ENOMEM;
    *p += n;
    return 0;
}

int tomb_decode(const uint8_t *p, size_t len, tomb_t **out)
{
    const uint8_t *end = p + len;
    uint64_t id, seq, nm, version = 0;
    int64_t start, end_ms, created;
    int k;
    if (len < 1 || (p[0] != TOMB_FORMAT && p[0] != TOMB_FORMAT_V))
        return ST_ECORRUPT;
    int versioned = p[0] == TOMB_FORMAT_V;
    p++;
    if ((k = st_uvarint_get(p, end, &id)) <= 0)
        return ST_ECORRUPT;
    p += k;
    if ((k = st_uvarint_get(p, end, &seq)) <= 0)
        return ST_ECORRUPT;
    p += k;
    if (versioned) { /* version 0 is written as format 1: one encoding each */
        if ((k = st_uvarint_get(p, end, &version)) <= 0 || version == 0)
            return ST_ECORRUPT;
        p += k;
    }
    if ((k = st_svarint_get(p, end, &start)) <= 0)
        return ST_ECORRUPT;
    p += k;
    if ((k = st_svarint_get(p, end, &end_ms)) <= 0)
        return ST_ECORRUPT;
    p += k;
    if ((k = st_svarint_get(p, end, &created)) <= 0)
        return ST_ECORRUPT;
    p += k;
    if ((k = st_uvarint_get(p, end, &nm)) <= 0 || nm > TOMB_MATCHERS_MAX ||
        nm * 3 > (uint64_t)(end - p - k))
        return ST_ECORRUPT;
    p += k;
    if (start > end_ms)
        return ST_ECORRUPT;
    tomb_t *t = tomb_alloc((size_t)nm);
    if (!t)
        return ST_ENOMEM;
    t->id = id;
    t->seq = seq;
    t->version = version;
    t->start = start;
    t->end = end_ms;
    t->created_ms = created;
    int rc = 0;
    for (uint64_t i = 0; i < nm && !rc; i++) {
        if (p >= end || *p > ST_MATCH_NRE) {
            rc = ST_ECORRUPT;
            break;
        }
        t->m[i].type = (st_match_type_t)*p++;
        t->nm = (size_t)i + 1;
        char *name = NULL, *value = NULL;
        rc = get_str(&p, end, &name);
        t->m[i].name = name;
        if (!rc)
            rc = get_str(&p, end, &value);
        t->m[i].value = value;
        if (!rc && (!t->m[i].name || !t->m[i].value))
            rc = ST_ECORRUPT;
    }
    if (!rc && p != end)
        rc = ST_ECORRUPT;
    if (rc) {
        tomb_free(t); /* frees the strings set so far (NULL for the rest) */
        return rc;
    }
    *out = t;
    return 0;
}

int tomb_file_encode(st_buf_t *b, tomb_t *const *t, size_t n, const uint32_t *dead, size_t ndead)
{
    size_t base = b->len;
    int rc = st_buf_append(b, TOMB_FILE_MAGIC, 8);
    rc = rc ? rc : st_buf_put_u32le(b, 0);
    rc = rc ? rc : st_buf_put_u32le(b, 0);
    rc = rc ? rc : st_buf_put_uvarint(b, n);
    st_buf_t rec;
    st_buf_init(&rec);
    for (size_t i = 0; i < n && !rc; i++) {
        st_buf_reset(&rec);
        rc = tomb_encode(&rec, t[i]);
        rc = rc ? rc : st_buf_put_uvarint(b, rec.len);
        rc = rc ? rc : st_buf_append(b, rec.data, rec.len);
    }
    st_buf_deinit(&rec);
    rc = rc ? rc : st_buf_put_uvarint(b, ndead);
    uint32_t prev = 0;
    for (size_t i = 0; i < ndead && !rc; i++) {
        rc = st_buf_put_uvarint(b, (uint64_t)(dead[i] - prev));
        prev = dead[i];
    }
    if (rc)
        return rc;
    size_t body = b->len - base - TOMB_HDR;
    if (body > UINT32_MAX)
        return ST_ELIMIT;
    st_store_u32le(b->data + base + 8, (uint32_t)body);
    st_store_u32le(b->data + base + 12, st_crc32c(0, b->data + base + TOMB_HDR, body));
    return 0;
}

int tomb_file_decode(const uint8_t *p, size_t len, tomb_t ***out, size_t *nout, uint32_t **dead,
                     size_t *ndead)
{
    if (len < TOMB_HDR || memcmp(p, TOMB_FILE_MAGIC, 8) != 0)
        return ST_ECORRUPT;
    uint32_t body = st_load_u32le(p + 8);
    if (body != len - TOMB_HDR || st_crc32c(0, p + TOMB_HDR, body) != st_load_u32le(p + 12))
        return ST_ECORRUPT;
    const uint8_t *q = p + TOMB_HDR, *end = p + len;
    uint64_t n, nd;
    int k;
    if ((k = st_uvarint_get(q, end, &n)) <= 0 || n > TOMB_FILE_MAX_TOMBS || n > (uint64_t)(end - q))
        return ST_ECORRUPT;
    q += k;
    tomb_t **t = calloc(n ? n : 1, sizeof *t);
    uint32_t *d = NULL;
    if (!t)
        return ST_ENOMEM;
    size_t got = 0;
    int rc = 0;
    for (; got < n && !rc; got++) {
        uint64_t rl;
        if ((k = st_uvarint_get(q, end, &rl)) <= 0 || rl > (uint64_t)(end - q - k)) {
            rc = ST_ECORRUPT;
            break;
        }
        q += k;
        rc = tomb_decode(q, (size_t)rl, &t[got]);
        if (rc)
            break;
        q += rl;
    }
    if (!rc && ((k = st_uvarint_get(q, end, &nd)) <= 0 || nd > (uint64_t)(end - q)))
        rc = ST_ECORRUPT;
    if (!rc) {
        q += k;
        d = malloc((nd ? nd : 1) * sizeof *d);
        if (!d)
            rc = ST_ENOMEM;
        uint64_t prev = 0;
        for (uint64_t i = 0; i < nd && !rc; i++) {
            uint64_t delta;
            if ((k = st_uvarint_get(q, end, &delta)) <= 0 || prev + delta > UINT32_MAX ||
                (i > 0 && delta == 0)) {
                rc = ST_ECORRUPT;
                break;
            }
            q += k;
            prev += delta;
            d[i] = (uint32_t)prev;
        }
        if (!rc && q != end)
            rc = ST_ECORRUPT;
    }
    if (rc) {
        for (size_t i = 0; i < got; i++)
            tomb_free(t[i]);
        free(t);
        free(d);
        return rc;
    }
    *out = t;
    *nout = (size_t)n;
    *dead = d;
    *ndead = (size_t)nd;
    return 0;
}

int tomb_has_id(const tomb_t *t, uint32_t id)
{
    size_t lo = 0, hi = t->nids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ids[mid] < id)
            lo = mid + 1;
        else if (t->ids[mid] > id)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

size_t tomb_mask(tomb_t *const *t, size_t nt, uint32_t id, uint64_t src_seq, int64_t *ts, double *v,
                 size_t n)
{
    for (size_t j = 0; j < nt; j++) {
        const tomb_t *tb = t[j];
        if (tb->seq <= src_seq || !tomb_has_id(tb, id))
            continue;
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (ts[i] >= tb->start && ts[i] <= tb->end)
                continue;
            ts[w] = ts[i];
            v[w] = v[i];
            w++;
        }
        n = w;
    }
    return n;
}

/* Compile t's regexes (first use). */
static int tomb_re_make(tomb_t *t)
{
    tomb_re_t *r = calloc(1, sizeof *r);
    if (!r)
        return ST_ENOMEM;
    r->n = t->nm;
    r->re = calloc(t->nm ? t->nm : 1, sizeof *r->re);
    r->md = pcre2_match_data_create(1, NULL);
    r->mc = pcre2_match_context_create(NULL);
    if (!r->re || !r->md || !r->mc) {
        tomb_re_free(r);
        return ST_ENOMEM;
    }
    pcre2_set_match_limit(r->mc, TOMB_RE_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mc, TOMB_RE_DEPTH_LIMIT);
    for (size_t i = 0; i < t->nm; i++) {
        if (t->m[i].type != ST_MATCH_RE && t->m[i].type != ST_MATCH_NRE)
            continue;
        int ec;
        PCRE2_SIZE eo;
        /* a pattern that does not compile (it selected nothing when the
         * delete ran, or the delete failed) stays NULL: it matches nothing */
        r->re[i] = pcre2_compile((PCRE2_SPTR)t->m[i].value, strlen(t->m[i].value),
                                 PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOTALL, &ec,
                                 &eo, NULL);
    }
    t->re = r;
    return 0;
}

int tomb_match(tomb_t *t, const st_label_t *l, size_t nl)
{
    if (!t->re && tomb_re_make(t) != 0)
        return ST_ENOMEM;
    for (size_t i = 0; i < t->nm; i++) {
        const st_matcher_t *m = &t->m[i];
        int at = st_labels_find(l, nl, m->name);
        const char *v = at >= 0 ? l[at].value : "";
        size_t vl = at >= 0 ? l[at].value_len : 0;
        int hit;
        if (m->type == ST_MATCH_EQ || m->type == ST_MATCH_NE) {
            hit = strlen(m->value) == vl && memcmp(m->value, v, vl) == 0;
        } else if (!t->re->re[i]) {
            return 0;
        } else {
            int rc = pcre2_match(t->re->re[i], (PCRE2_SPTR)v, vl, 0, 0, t->re->md, t->re->mc);
            if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
                rc == PCRE2_ERROR_HEAPLIMIT)
                continue; /* undecided: selected */
            hit = rc >= 0;
        }
        if (m->type == ST_MATCH_NE || m->type == ST_MATCH_NRE)
            hit = !hit;
        if (!hit)
            return 0;
    }
    return 1;
}
