/*
 * fuzz_import_csv — the CSV column spec and the CSV import decoder
 * (router/import.h), and CSV export -> import on what they accept.
 *
 * The input up to its first newline is the format= spec (or, when the
 * first byte is '!', a fixed valid spec and the whole rest is the body);
 * the rest is the body. Checks: a spec either parses or fails with a
 * printable reason (both syntaxes); delivered series have valid labels with
 * a metric name and one sample; reasons are printable; the return value
 * counts the bad lines; every delivered sample written with imp_csv_rows()
 * and the same spec decodes to the same labels, timestamp and bits (the
 * export of what the import accepted always reads back).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "st_err.h"

typedef struct fz {
    const imp_csv_spec_t *sp;
    uint64_t last_line;
    int bad;
    int depth;
    const st_label_t *l;
    size_t nl;
    int64_t ts;
    double v;
    int matched;
} fz_t;

static void check(int ok)
{
    if (!ok)
        abort();
}

static void printable(const char *r)
{
    check(r && r[0]);
    for (; *r; r++)
        check(*r >= 0x20 && *r < 0x7f);
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
    if (st_labels_cmp(l, nl, z->l, z->nl) == 0 && n == 1 && ts[0] == z->ts && same_bits(v[0], z->v))
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
    check(n == 1);
    check(st_labels_validate(l, nl, &why) == 0);
    check(st_labels_find(l, nl, ST_METRIC_LABEL) >= 0);
    if (z->depth)
        return 0;
    st_buf_t b;
    st_buf_init(&b);
    check(imp_csv_rows(&b, z->sp, l, nl, ts, v, 1) == 0);
    imp_t *d;
    check(imp_create(&d) == 0);
    fz_t z2 = {.sp = z->sp, .depth = 1, .l = l, .nl = nl, .ts = ts[0], .v = v[0]};
    check(imp_csv(d, z->sp, (const char *)b.data, b.len, ts[0], again, NULL, &z2) == 0);
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
    printable(reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    const char *spec = s, *body;
    size_t speclen, bodylen;
    static const char fixed[] = "2:metric:ask,3:metric:bid,1:label:ticker,4:time:unix_s";
    if (size && s[0] == '!') {
        spec = fixed;
        speclen = sizeof fixed - 1;
        body = s + 1;
        bodylen = size - 1;
    } else {
        speclen = nl ? (size_t)(nl - s) : size;
        body = nl ? nl + 1 : s + size;
        bodylen = nl ? size - speclen - 1 : 0;
    }
    char *b = malloc(bodylen ? bodylen : 1);
    if (!b)
        return 0;
    memcpy(b, body, bodylen);
    char err[300];
    imp_csv_spec_t *sp = NULL;
    int rc = imp_csv_spec_parse(spec, speclen, 1, &sp, err, sizeof err);
    if (rc == ST_EINVAL)
        printable(err);
    imp_csv_spec_free(sp);
    sp = NULL;
    rc = imp_csv_spec_parse(spec, speclen, 0, &sp, err, sizeof err);
    if (rc == ST_EINVAL)
        printable(err);
    if (rc == 0) {
        imp_t *d;
        if (imp_create(&d) == 0) {
            fz_t z = {.sp = sp};
            int bad = imp_csv(d, sp, b, bodylen, 77, on_series, on_error, &z);
            check(bad >= 0 && bad == z.bad);
            imp_destroy(d);
        }
    }
    imp_csv_spec_free(sp);
    free(b);
    return 0;
}
