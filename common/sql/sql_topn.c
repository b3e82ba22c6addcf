/*
 * sql_topn — the router's merge of the nodes' TOPN answers for
 * `ORDER BY time DESC|ASC LIMIT n [OFFSET m]` (sql.h). A row of a table is
 * a (tag set, time) pair; each node answers the newest (oldest) keys of
 * its shards, a tag set as "name\0value\0" per label but __name__ (labels
 * sorted by name). Replicas and the fields of one row give the same key
 * more than once: the merge keeps distinct keys, ordered as SQL orders rows
 * (time, then tag set: bytewise on those strings equals sql_exec's label
 * by label comparison), and reports the time of the n-th, the edge of a
 * window that holds at least n rows when the keys are rows WHERE keeps
 * (the caller checks and reads more when not). The kept keys' tag sets
 * also give matchers that select them (and maybe more): with a WHERE the
 * read applies exactly, the rows of those tag sets in the window are the
 * answer.
 *
 * Keys are kept until the end (at most n per node and call), then sorted
 * once.
 */
#include <stdlib.h>
#include <string.h>

#include "sql_exec_int.h"
#include "st_err.h"

typedef struct key {
    int64_t ts;
    size_t off; /* tag set bytes in lab */
    size_t len;
} key_t_;

struct sql_topn {
    size_t n;
    int oldest;
    key_t_ *k;
    size_t nk, cap;
    st_buf_t lab;
};

int sql_topn_create(size_t n, int oldest, sql_topn_t **out)
{
    *out = NULL;
    if (!n)
        return ST_EINVAL;
    sql_topn_t *t = calloc(1, sizeof *t);
    if (!t)
        return ST_ENOMEM;
    t->n = n;
    t->oldest = oldest;
    st_buf_init(&t->lab);
    *out = t;
    return 0;
}

int sql_topn_add(sql_topn_t *t, const int64_t *ts, const uint8_t *const *lab, const size_t *lablen,
                 size_t k)
{
    if (k > t->n)
        k = t->n; /* a node's keys past the n-th cannot be among the first n */
    if (t->nk + k > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->nk + k)
            cap *= 2;
        key_t_ *nk = realloc(t->k, cap * sizeof *nk);
        if (!nk)
            return ST_ENOMEM;
        t->k = nk;
        t->cap = cap;
    }
    for (size_t i = 0; i < k; i++) {
        size_t len = lab ? lablen[i] : 0;
        if (len && st_buf_append(&t->lab, lab[i], len))
            return ST_ENOMEM;
        t->k[t->nk++] = (key_t_){ts[i], t->lab.len - len, len};
    }
    return 0;
}

static int cmp_key(const void *pa, const void *pb, void *arg)
{
    const sql_topn_t *t = arg;
    const key_t_ *a = pa, *b = pb;
    if (a->ts != b->ts)
        return (a->ts > b->ts ? -1 : 1) * (t->oldest ? -1 : 1);
    size_t m = a->len < b->len ? a->len : b->len;
    int c = m ? memcmp(t->lab.data + a->off, t->lab.data + b->off, m) : 0;
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

size_t sql_topn_finish(sql_topn_t *t, int64_t *edge)
{
    if (!t->nk)
        return 0;
    qsort_r(t->k, t->nk, sizeof *t->k, cmp_key, t);
    size_t d = 0;
    for (size_t i = 0; i < t->nk && d < t->n; i++)
        if (!d || cmp_key(&t->k[i], &t->k[d - 1], t))
            t->k[d++] = t->k[i];
    t->nk = d;
    *edge = t->k[d - 1].ts;
    return d;
}

/* Does tag set [p, p+len) have label name (its value in *v, *vl)? */
static int tag_find(const char *p, size_t len, const char *name, const char **v, size_t *vl)
{
    const char *end = p + len;
    while (p < end) {
        const char *n = p;
        p += strlen(p) + 1;
        const char *val = p;
        p += strlen(p) + 1;
        if (!strcmp(n, name)) {
            *v = val;
            *vl = strlen(val);
            return 1;
        }
    }
    return 0;
}

int sql_topn_matchers(const sql_topn_t *t, st_matcher_t *m, size_t max, size_t *nm, char **mem)
{
    *nm = 0;
    *mem = NULL;
    st_buf_t names, b;
    st_buf_init(&names);
    st_buf_init(&b);
    int rc = 0;
    /* the label names, each once ("a\0b\0") */
    for (size_t i = 0; i < t->nk && !rc; i++) {
        const char *p = (const char *)t->lab.data + t->k[i].off, *end = p + t->k[i].len;
        while (p < end && !rc) {
            const char *v;
            size_t vl;
            int seen = names.len && tag_find((const char *)names.data, names.len, p, &v, &vl);
            if (!seen) {
                st_buf_append(&names, p, strlen(p) + 1);
                rc = st_buf_append(&names, "", 1); /* an empty "value" */
            }
            p += strlen(p) + 1;
            p += strlen(p) + 1;
        }
    }
    /* per name: name \0 (?:v1|v2|...) \0, values escaped, "" when a tag set lacks it */
    size_t count = 0;
    const char *np = names.len ? (const char *)names.data : "";
    const char *nend = np + names.len;
    for (const char *p = np; p < nend && !rc; p += strlen(p) + 2, count++) {
        if (count == max) {
            rc = ST_ELIMIT;
            break;
        }
        st_buf_append(&b, p, strlen(p) + 1);
        for (size_t i = 0; i < t->nk; i++) {
            const char *v;
            size_t vl;
            if (!tag_find((const char *)t->lab.data + t->k[i].off, t->k[i].len, p, &v, &vl))
                vl = 0, v = "";
            if (i)
                st_buf_put_u8(&b, '|');
            sql_re_escape(&b, v, vl);
        }
        rc = st_buf_put_u8(&b, 0);
    }
    st_buf_deinit(&names);
    if (rc || !count) {
        st_buf_deinit(&b);
        return rc;
    }
    char *q = (char *)b.data; /* the buffer is the matchers' strings now */
    for (size_t i = 0; i < count; i++) {
        m[i].type = ST_MATCH_RE;
        m[i].name = q;
        q += strlen(q) + 1;
        m[i].value = q;
        q += strlen(q) + 1;
    }
    *nm = count;
    *mem = (char *)b.data;
    return 0;
}

void sql_topn_destroy(sql_topn_t *t)
{
    if (!t)
        return;
    free(t->k);
    st_buf_deinit(&t->lab);
    free(t);
}

int64_t sql_stmt_offset(const sql_stmt_t *s)
{
    return s->offset > 0 ? s->offset : 0;
}
