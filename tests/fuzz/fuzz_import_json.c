/*
 * fuzz_import_json — the JSON-lines import decoder (router/import.h) on
 * arbitrary bodies, and export -> import on whatever it accepts.
 *
 * The first byte picks the body: the input as is, or the input spliced into
 * a valid line (as a label value, as the values, as the timestamps) so the
 * random inputs reach deep into the grammar. Checks: every series it
 * delivers has valid sorted labels with a metric name and at least one
 * sample; reasons are printable ASCII; line numbers never go down; the
 * count of bad lines is what it returns; a delivered series written back
 * with export_json_line() decodes to the same labels and the same bits.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "export_json.h"
#include "import.h"
#include "st_err.h"

typedef struct fz {
    uint64_t last_line;
    int bad;
    int depth;
    const st_label_t *l;
    size_t nl;
    const int64_t *ts;
    const double *v;
    size_t n;
    int matched;
} fz_t;

static void check(int ok)
{
    if (!ok)
        abort();
}

static int same_bits(double a, double b)
{
    if (a != a)
        a = 0, b = b != b ? 0 : 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

static int again(void *arg, uint64_t line, const st_label_t *l, size_t nl, const int64_t *ts,
                 const double *v, size_t n)
{
    fz_t *z = arg;
    (void)line;
    check(nl == z->nl && n == z->n);
    check(st_labels_cmp(l, nl, z->l, z->nl) == 0);
    for (size_t i = 0; i < n; i++)
        check(ts[i] == z->ts[i] && same_bits(v[i], z->v[i]));
    z->matched = 1;
    return 0;
}

static int on_series(void *arg, uint64_t line, const st_label_t *l, size_t nl, const int64_t *ts,
                     const double *v, size_t n)
{
    fz_t *z = arg;
    const char *why;
    check(line >= z->last_line);
    z->last_line = line;
    check(n >= 1);
    check(st_labels_validate(l, nl, &why) == 0);
    check(st_labels_find(l, nl, ST_METRIC_LABEL) >= 0);
    if (z->depth)
        return 0;
    st_buf_t b;
    st_buf_init(&b);
    check(export_json_line(&b, l, nl, ts, v, n) == 0);
    imp_t *d;
    check(imp_create(&d) == 0);
    fz_t z2 = {.depth = 1, .l = l, .nl = nl, .ts = ts, .v = v, .n = n};
    check(imp_json(d, (const char *)b.data, b.len, again, NULL, &z2) == 0);
    check(z2.matched);
    imp_destroy(d);
    st_buf_deinit(&b);
    return 0;
}

static void on_error(void *arg, uint64_t line, const char *reason)
{
    fz_t *z = arg;
    check(line >= z->last_line);
    z->last_line = line;
    z->bad++;
    check(reason && reason[0]);
    for (const char *r = reason; *r; r++)
        check(*r >= 0x20 && *r < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const char *pre[] = {
        "",
        "{\"metric\":{\"__name__\":\"m\",\"a\":\"",
        "{\"metric\":{\"__name__\":\"m\"},\"timestamps\":[1,2],\"values\":[",
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[1,2],\"timestamps\":[",
    };
    static const char *post[] = {"", "\"},\"values\":[1],\"timestamps\":[5]}", "]}", "]}"};
    unsigned mode = data[0] & 3;
    size_t pl = strlen(pre[mode]), sl = strlen(post[mode]), n = size - 1 + pl + sl;
    char *buf = malloc(n ? n : 1); /* exact size: reads past the end are caught */
    if (!buf)
        return 0;
    memcpy(buf, pre[mode], pl);
    memcpy(buf + pl, data + 1, size - 1);
    memcpy(buf + pl + size - 1, post[mode], sl);
    imp_t *d;
    if (imp_create(&d)) {
        free(buf);
        return 0;
    }
    fz_t z = {0};
    int rc = imp_json(d, buf, n, on_series, on_error, &z);
    check(rc >= 0 && rc == z.bad);
    fz_t z2 = {0};
    check(imp_json(d, buf, n, on_series, on_error, &z2) == rc);
    imp_destroy(d);
    free(buf);
    return 0;
}
