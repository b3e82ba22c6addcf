/*
 * fuzz_import_prom — the Prometheus text-format import decoder
 * (router/import.h) on arbitrary bodies.
 *
 * The first byte picks the body: the input as is, or spliced after a metric
 * name and an open label set, so the label grammar is reached often. Checks:
 * every delivered series has valid sorted labels with a metric name made
 * of [a-zA-Z0-9_:] and exactly one sample; reasons are printable ASCII;
 * line numbers never go down; the return value counts the bad lines; the
 * same body decodes the same way twice.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "st_err.h"

typedef struct fz {
    uint64_t last_line;
    int bad;
    unsigned sink;
} fz_t;

static void check(int ok)
{
    if (!ok)
        abort();
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
    int ni = st_labels_find(l, nl, ST_METRIC_LABEL);
    check(ni >= 0 && l[ni].value_len > 0);
    for (uint32_t i = 0; i < l[ni].value_len; i++) {
        char c = l[ni].value[i];
        check((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':');
    }
    z->sink += (unsigned)ts[0] + (unsigned)nl + (v[0] == v[0]);
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
    static const char *pre[] = {"", "m{a=\"", "m_total{le=\"0.5\",", "x "};
    unsigned mode = data[0] & 3;
    size_t pl = strlen(pre[mode]), n = size - 1 + pl;
    char *buf = malloc(n ? n : 1);
    if (!buf)
        return 0;
    memcpy(buf, pre[mode], pl);
    memcpy(buf + pl, data + 1, size - 1);
    imp_t *d;
    if (imp_create(&d)) {
        free(buf);
        return 0;
    }
    fz_t z = {0}, z2 = {0};
    int rc = imp_prom(d, buf, n, 123, on_series, on_error, &z);
    check(rc >= 0 && rc == z.bad);
    check(imp_prom(d, buf, n, 123, on_series, on_error, &z2) == rc && z2.sink == z.sink);
    imp_destroy(d);
    free(buf);
    return 0;
}
