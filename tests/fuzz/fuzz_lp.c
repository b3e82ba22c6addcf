/*
 * fuzz_lp — line protocol parser on arbitrary bodies.
 *
 * The first input byte picks options (precision, series mode, a small
 * max_line/max_fields, names_only); the rest is the body. The callbacks touch every byte
 * of every slice and check the invariants: each slice lies inside the body
 * or is scratch memory (then it must not overlap the body), names are not
 * empty, everything is valid UTF-8, tags are sorted and unique, series label
 * sets are canonical and within the limits, line numbers never go down,
 * reasons are printable ASCII.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lp.h"
#include "st_err.h"
#include "st_labels.h"
#include "st_text.h"

typedef struct fz {
    const char *buf;
    size_t len;
    uint64_t last_line;
    unsigned sink;
} fz_t;

static void check(int ok)
{
    if (!ok)
        abort();
}

static void touch(fz_t *z, const char *s, size_t n)
{
    if (n == 0)
        return;
    check(s != NULL);
    int inside = s >= z->buf && s + n <= z->buf + z->len;
    int outside = s + n <= z->buf || s >= z->buf + z->len;
    check(inside || outside);
    for (size_t i = 0; i < n; i++)
        z->sink += (unsigned char)s[i];
}

static int on_point(void *arg, const lp_point_t *pt)
{
    fz_t *z = arg;
    check(pt->line >= z->last_line);
    z->last_line = pt->line;
    check(pt->measurement_len > 0);
    touch(z, pt->measurement, pt->measurement_len);
    check(st_utf8_valid(pt->measurement, pt->measurement_len));
    for (uint32_t i = 0; i < pt->ntags; i++) {
        const st_label_t *t = &pt->tags[i];
        check(t->name_len > 0 && t->value_len > 0);
        touch(z, t->name, t->name_len);
        touch(z, t->value, t->value_len);
        check(st_utf8_valid(t->name, t->name_len));
        check(st_utf8_valid(t->value, t->value_len));
        if (i > 0) {
            const st_label_t *a = &pt->tags[i - 1];
            size_t n = a->name_len < t->name_len ? a->name_len : t->name_len;
            int c = memcmp(a->name, t->name, n);
            check(c < 0 || (c == 0 && a->name_len < t->name_len));
        }
    }
    check(pt->nfields > 0);
    for (uint32_t i = 0; i < pt->nfields; i++) {
        const lp_field_t *f = &pt->fields[i];
        check(f->name_len > 0);
        touch(z, f->name, f->name_len);
        check(st_utf8_valid(f->name, f->name_len));
        for (uint32_t j = 0; j < i; j++)
            check(pt->fields[j].name_len != f->name_len ||
                  memcmp(pt->fields[j].name, f->name, f->name_len) != 0);
        if (f->type == LP_STRING) {
            touch(z, f->str, f->str_len);
            check(st_utf8_valid(f->str, f->str_len));
        } else {
            check(f->value == f->value);     /* never NaN */
            check(f->value - f->value == 0); /* never infinite */
        }
    }
    for (uint32_t i = 0; i < pt->nseries; i++) {
        const lp_series_t *s = &pt->series[i];
        const char *why = NULL;
        check(s->nlabels == pt->ntags + 1 && s->nlabels <= ST_LABELS_MAX);
        check(pt->name_pos <= pt->ntags);
        check(s->name->name_len == 8 && memcmp(s->name->name, ST_METRIC_LABEL, 8) == 0);
        st_label_t built[ST_LABELS_MAX]; /* names_only: the tags, __name__ at name_pos */
        if (!s->labels) {
            memcpy(built, pt->tags, pt->name_pos * sizeof *built);
            built[pt->name_pos] = *s->name;
            memcpy(built + pt->name_pos + 1, pt->tags + pt->name_pos,
                   (pt->ntags - pt->name_pos) * sizeof *built);
        } else {
            check(s->labels[pt->name_pos].value == s->name->value);
        }
        const st_label_t *sl = s->labels ? s->labels : built;
        check(st_labels_validate(sl, s->nlabels, &why) == 0);
        check(s->field < pt->nfields && pt->fields[s->field].type != LP_STRING);
        check(s->value == pt->fields[s->field].value);
        for (uint32_t j = 0; j < s->nlabels; j++) {
            touch(z, sl[j].name, sl[j].name_len);
            touch(z, sl[j].value, sl[j].value_len);
        }
    }
    return 0;
}

static void on_error(void *arg, uint64_t line, int code, const char *reason)
{
    fz_t *z = arg;
    check(line >= z->last_line);
    z->last_line = line;
    check(code == ST_EPARSE || code == ST_EINVAL || code == ST_ELIMIT);
    check(reason && reason[0]);
    for (const char *r = reason; *r; r++)
        check(*r >= 0x20 && *r < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    lp_opts_t o = {
        .precision = (lp_precision_t)(mode & 3),
        .series = (mode >> 2) & 1,
        .max_line = (mode & 8) ? 40 : 0,
        .max_fields = (mode & 16) ? 4 : 0,
        .names_only = (mode >> 5) & 1,
        .default_ts_ms = 123,
    };
    lp_parser_t *p;
    if (lp_parser_create(&o, &p) != 0)
        return 0;
    /* an exact-size copy so reads past the end are caught */
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        lp_parser_destroy(p);
        return 0;
    }
    memcpy(buf, data + 1, n);
    fz_t z = {.buf = buf, .len = n};
    int rc = lp_parse(p, buf, n, on_point, on_error, &z);
    check(rc >= 0);
    lp_stats_t st;
    lp_parser_stats(p, &st);
    check(st.lines_bad == (uint64_t)rc);
    /* parsing the same body twice gives the same result */
    fz_t z2 = {.buf = buf, .len = n};
    check(lp_parse(p, buf, n, on_point, on_error, &z2) == rc);
    check(z2.sink == z.sink && z2.last_line == z.last_line);
    free(buf);
    lp_parser_destroy(p);
    return 0;
}
