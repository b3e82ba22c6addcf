/*
 * rowstats — tag sets with the fingerprint their series agree on (see
 * rowstats.h). Two open-addressing tables of indices, keyed by hash: the
 * tag sets (st_labels_hash_noname, so a series' labels find their set
 * with or without __name__) and the metric names. A set's labels and
 * strings live in one allocation; a differing set collects the timestamps
 * it is given until rowstats_resolve counts the distinct ones.
 */
#include "rowstats.h"

#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_varint.h"
#include "wire.h"

typedef struct rset {
    uint64_t h;
    st_label_t *l; /* and the strings after the array */
    uint32_t nl;
    int differ;
    rowstat_t st;
    uint64_t rows;
    int64_t *ts; /* differing: timestamps given */
    size_t nts, tscap;
} rset_t;

typedef struct rtab {
    size_t *slot; /* index + 1; 0: free */
    size_t cap;   /* power of two */
} rtab_t;

typedef struct rname {
    uint64_t h;
    char *s;
    size_t len;
} rname_t;

struct rowstats {
    size_t max;
    rset_t *sets;
    size_t n, cap;
    rtab_t st;
    rname_t *names;
    size_t nnames, namecap;
    rtab_t nt;
    int raw;
};

int rowstats_create(size_t max_sets, rowstats_t **out)
{
    rowstats_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return ST_ENOMEM;
    rs->max = max_sets;
    *out = rs;
    return 0;
}

void rowstats_destroy(rowstats_t *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->sets[i].l);
        free(rs->sets[i].ts);
    }
    for (size_t i = 0; i < rs->nnames; i++)
        free(rs->names[i].s);
    free(rs->sets);
    free(rs->names);
    free(rs->st.slot);
    free(rs->nt.slot);
    free(rs);
}

/* Make room for one more entry (n entries now): grow at half full,
 * reinserting with hash_of(i). */
static int tab_room(rtab_t *t, size_t n, const rowstats_t *rs,
                    uint64_t (*hash_of)(const rowstats_t *, size_t))
{
    if ((n + 1) * 2 <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : 64;
    size_t *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return ST_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)hash_of(rs, i) & (cap - 1);
        while (slot[k])
            k = (k + 1) & (cap - 1);
        slot[k] = i + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

static uint64_t set_hash(const rowstats_t *rs, size_t i)
{
    return rs->sets[i].h;
}

static uint64_t name_hash(const rowstats_t *rs, size_t i)
{
    return rs->names[i].h;
}

/* Does stored set s (no __name__) equal labels l without their __name__? */
static int same_tags(const rset_t *s, const st_label_t *l, size_t nl)
{
    size_t k = 0;
    for (size_t i = 0; i < nl; i++) {
        if (l[i].name_len == 8 && !memcmp(l[i].name, ST_METRIC_LABEL, 8))
            continue;
        if (k == s->nl || l[i].name_len != s->l[k].name_len ||
            l[i].value_len != s->l[k].value_len || memcmp(l[i].name, s->l[k].name, l[i].name_len) ||
            memcmp(l[i].value, s->l[k].value, l[i].value_len))
            return 0;
        k++;
    }
    return k == s->nl;
}

/* Slot of l's tag set in rs->st (its index + 1 there, or 0 at a free one). */
static size_t *set_slot(const rowstats_t *rs, uint64_t h, const st_label_t *l, size_t nl)
{
    if (!rs->st.cap)
        return NULL;
    size_t k = (size_t)h & (rs->st.cap - 1);
    while (rs->st.slot[k]) {
        const rset_t *s = &rs->sets[rs->st.slot[k] - 1];
        if (s->h == h && same_tags(s, l, nl))
            break;
        k = (k + 1) & (rs->st.cap - 1);
    }
    return &rs->st.slot[k];
}

long rowstats_find(const rowstats_t *rs, const st_label_t *l, size_t nl)
{
    size_t *slot = set_slot(rs, st_labels_hash_noname(l, nl), l, nl);
    return slot && *slot ? (long)(*slot - 1) : -1;
}

static int same_stat(const rowstat_t *a, const rowstat_t *b)
{
    return a->count == b->count && a->hash == b->hash && a->mint == b->mint && a->maxt == b->maxt;
}

int rowstats_add_set(rowstats_t *rs, const st_label_t *l, size_t nl, const rowstat_t *st,
                     int differ)
{
    uint64_t h = st_labels_hash_noname(l, nl);
    size_t *slot = set_slot(rs, h, l, nl);
    if (slot && *slot) {
        rset_t *s = &rs->sets[*slot - 1];
        if (differ || !same_stat(&s->st, st))
            s->differ = 1;
        return 0;
    }
    if (rs->n >= rs->max)
        return ST_ELIMIT;
    if (tab_room(&rs->st, rs->n, rs, set_hash))
        return ST_ENOMEM;
    if (rs->n == rs->cap && st_grow(&rs->sets, &rs->cap, sizeof *rs->sets, 64))
        return ST_ENOMEM;
    size_t bytes = 0, k = 0;
    for (size_t i = 0; i < nl; i++)
        bytes += (size_t)l[i].name_len + l[i].value_len + 2;
    st_label_t *cp = malloc(nl * sizeof *cp + bytes + 1);
    if (!cp)
        return ST_ENOMEM;
    char *p = (char *)(cp + nl);
    for (size_t i = 0; i < nl; i++) {
        if (l[i].name_len == 8 && !memcmp(l[i].name, ST_METRIC_LABEL, 8))
            continue;
        cp[k] = (st_label_t){p, NULL, l[i].name_len, l[i].value_len};
        memcpy(p, l[i].name, l[i].name_len);
        p += l[i].name_len;
        *p++ = '\0';
        cp[k].value = p;
        memcpy(p, l[i].value, l[i].value_len);
        p += l[i].value_len;
        *p++ = '\0';
        k++;
    }
    rset_t *s = &rs->sets[rs->n];
    *s = (rset_t){.h = h, .l = cp, .nl = (uint32_t)k, .differ = !!differ, .st = *st};
    s->rows = differ ? 0 : st->count;
    slot = set_slot(rs, h, l, nl); /* the table may have grown */
    *slot = ++rs->n;
    return 0;
}

int rowstats_add_metric(rowstats_t *rs, const char *name, size_t len)
{
    st_label_t one = {ST_METRIC_LABEL, name, 8, (uint32_t)len};
    uint64_t h = st_labels_hash(&one, 1);
    size_t k = 0;
    if (rs->nt.cap) {
        for (k = (size_t)h & (rs->nt.cap - 1); rs->nt.slot[k]; k = (k + 1) & (rs->nt.cap - 1)) {
            const rname_t *m = &rs->names[rs->nt.slot[k] - 1];
            if (m->h == h && m->len == len && !memcmp(m->s, name, len))
                return 0;
        }
    }
    if (rs->nnames >= rs->max)
        return ST_ELIMIT;
    if (rs->nnames == rs->namecap && st_grow(&rs->names, &rs->namecap, sizeof *rs->names, 16))
        return ST_ENOMEM;
    char *s = malloc(len + 1);
    if (!s)
        return ST_ENOMEM;
    memcpy(s, name, len);
    s[len] = '\0';
    if (tab_room(&rs->nt, rs->nnames, rs, name_hash)) {
        free(s);
        return ST_ENOMEM;
    }
    rs->names[rs->nnames] = (rname_t){h, s, len};
    for (k = (size_t)h & (rs->nt.cap - 1); rs->nt.slot[k]; k = (k + 1) & (rs->nt.cap - 1))
        ;
    rs->nt.slot[k] = ++rs->nnames;
    return 0;
}

int rowstats_add_series(rowstats_t *rs, const st_label_t *l, size_t nl, const rowstat_t *st)
{
    int i = st_labels_find(l, nl, ST_METRIC_LABEL);
    int rc = i >= 0 ? rowstats_add_metric(rs, l[i].value, l[i].value_len) : 0;
    return rc ? rc : rowstats_add_set(rs, l, nl, st, 0);
}

void rowstats_set_raw(rowstats_t *rs)
{
    rs->raw = 1;
}

int rowstats_raw(const rowstats_t *rs)
{
    return rs->raw;
}

size_t rowstats_nsets(const rowstats_t *rs)
{
    return rs->n;
}

const st_label_t *rowstats_labels(const rowstats_t *rs, size_t i, size_t *nl)
{
    *nl = rs->sets[i].nl;
    return rs->sets[i].l;
}

int rowstats_differ(const rowstats_t *rs, size_t i)
{
    return rs->sets[i].differ;
}

uint64_t rowstats_rows(const rowstats_t *rs, size_t i)
{
    return rs->sets[i].differ ? rs->sets[i].rows : rs->sets[i].st.count;
}

size_t rowstats_ndiffer(const rowstats_t *rs)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++)
        n += rs->sets[i].differ != 0;
    return n;
}

size_t rowstats_nmetrics(const rowstats_t *rs)
{
    return rs->nnames;
}

const char *rowstats_metric(const rowstats_t *rs, size_t i)
{
    return rs->names[i].s;
}

int rowstats_samples(rowstats_t *rs, size_t i, const int64_t *ts, size_t n)
{
    rset_t *s = &rs->sets[i];
    if (!s->differ || !n)
        return 0;
    while (s->nts + n > s->tscap)
        if (st_grow(&s->ts, &s->tscap, sizeof *s->ts, 256))
            return ST_ENOMEM;
    memcpy(s->ts + s->nts, ts, n * sizeof *ts);
    s->nts += n;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int rowstats_resolve(rowstats_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        rset_t *s = &rs->sets[i];
        if (!s->differ)
            continue;
        qsort(s->ts, s->nts, sizeof *s->ts, cmp_i64);
        uint64_t rows = 0;
        for (size_t k = 0; k < s->nts; k++)
            rows += k == 0 || s->ts[k] != s->ts[k - 1];
        s->rows = rows;
        free(s->ts);
        s->ts = NULL;
        s->nts = s->tscap = 0;
    }
    return 0;
}

/* ---- RowStatsResponse ------------------------------------------------------ */

int rowstats_encode(const rowstats_t *rs, size_t max_bytes, st_buf_t *out)
{
    size_t base = out->len;
    for (size_t i = 0; i < rs->n; i++) {
        const rset_t *s = &rs->sets[i];
        size_t mark;
        int rc = wire_begin(out, WIRE_ROW_STATS_RESPONSE_SETS, &mark);
        if (!rc)
            rc = wire_put_labels(out, s->l, s->nl);
        if (!rc && s->differ)
            rc = wire_put_varint_field(out, WIRE_TAG_SET_STATS_DIFFER, 1);
        if (!rc && !s->differ) {
            rc = wire_put_varint_field(out, WIRE_TAG_SET_STATS_COUNT, s->st.count);
            if (!rc)
                rc = wire_put_fixed64_field(out, WIRE_TAG_SET_STATS_HASH, s->st.hash);
            if (!rc)
                rc = wire_put_varint_field(out, WIRE_TAG_SET_STATS_MIN_MS, st_zigzag(s->st.mint));
            if (!rc)
                rc = wire_put_varint_field(out, WIRE_TAG_SET_STATS_MAX_MS, st_zigzag(s->st.maxt));
        }
        if (rc)
            return rc;
        wire_end(out, mark);
        if (out->len - base > max_bytes)
            return ST_ELIMIT;
    }
    for (size_t i = 0; i < rs->nnames; i++)
        if (wire_put_bytes_field(out, WIRE_ROW_STATS_RESPONSE_METRICS, rs->names[i].s,
                                 rs->names[i].len))
            return ST_ENOMEM;
    if (rs->raw && wire_put_varint_field(out, WIRE_ROW_STATS_RESPONSE_RAW, 1))
        return ST_ENOMEM;
    return out->len - base > max_bytes ? ST_ELIMIT : 0;
}

/* One TagSetStats message into rs. */
static int decode_set(rowstats_t *rs, const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    st_label_t l[ST_LABELS_MAX];
    size_t nl = 0;
    rowstat_t st = {0, 0, 0, 0};
    int differ = 0, rc;
    wire_field_t f;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == WIRE_TAG_SET_STATS_LABELS && f.type == WIRE_LEN) {
            if (nl == ST_LABELS_MAX)
                return ST_ELIMIT;
            if (wire_label_decode(f.data, f.len, &l[nl]))
                return ST_ECORRUPT;
            /* strings are kept as C strings: a NUL inside would cut them */
            if (memchr(l[nl].name, 0, l[nl].name_len) || memchr(l[nl].value, 0, l[nl].value_len))
                return ST_ECORRUPT;
            nl++;
        } else if (f.num == WIRE_TAG_SET_STATS_COUNT && f.type == WIRE_VARINT) {
            st.count = f.u;
        } else if (f.num == WIRE_TAG_SET_STATS_HASH && f.type == WIRE_I64) {
            st.hash = f.u;
        } else if (f.num == WIRE_TAG_SET_STATS_MIN_MS && f.type == WIRE_VARINT) {
            st.mint = st_unzigzag(f.u);
        } else if (f.num == WIRE_TAG_SET_STATS_MAX_MS && f.type == WIRE_VARINT) {
            st.maxt = st_unzigzag(f.u);
        } else if (f.num == WIRE_TAG_SET_STATS_DIFFER && f.type == WIRE_VARINT) {
            differ = f.u != 0;
        }
    }
    if (rc)
        return rc;
    st_labels_sort(l, nl);
    return rowstats_add_set(rs, l, nl, &st, differ);
}

int rowstats_decode(rowstats_t *rs, const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        rc = 0;
        if (f.num == WIRE_ROW_STATS_RESPONSE_SETS && f.type == WIRE_LEN)
            rc = decode_set(rs, f.data, f.len);
        else if (f.num == WIRE_ROW_STATS_RESPONSE_METRICS && f.type == WIRE_LEN)
            rc = rowstats_add_metric(rs, (const char *)f.data, f.len);
        else if (f.num == WIRE_ROW_STATS_RESPONSE_RAW && f.type == WIRE_VARINT && f.u)
            rs->raw = 1;
        if (rc)
            return rc;
    }
    return rc;
}
