/*
 * fuzz_resp_cmd — the TS.* argument parsers (router/resp_cmd.h) on
 * arbitrary argument lists.
 *
 * The input is split on NUL bytes into arguments; the first byte picks the
 * parser (TS.CREATE/ALTER/ADD/INCRBY options, TS.RANGE/MRANGE/MGET
 * options, FILTER expressions). Invariants: a parser either succeeds or
 * returns -1 with a NUL-terminated message; what it fills points into the
 * arguments (labels, SELECTED_LABELS, GROUPBY); matchers are well formed;
 * a successful range parse runs the sample pipeline over a small series
 * made from the input without growing it past one sample per bucket or
 * input sample, and frees cleanly.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp_cmd.h"

#define MAXA 512

static void check(int ok)
{
    if (!ok)
        abort();
}

static int inside(const resp_arg_t *p, const resp_arg_t *argv, size_t argc)
{
    return p >= argv && p < argv + argc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int which = data[0] % 4;
    resp_arg_t argv[MAXA];
    size_t argc = 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (p < end && argc < MAXA) {
        const char *z = memchr(p, 0, (size_t)(end - p));
        size_t n = z ? (size_t)(z - p) : (size_t)(end - p);
        argv[argc].p = p;
        argv[argc].len = n;
        argc++;
        p += n + 1;
    }
    char err[256];
    err[0] = 1;
    if (which == 0) {
        resp_tsopts_t o;
        int kind = argc ? (int)(argv[0].len % 4) : 0;
        int rc = resp_tsopts_parse(argv, argc, kind, &o, err, sizeof err);
        if (rc) {
            check(memchr(err, 0, sizeof err) != NULL);
        } else if (o.has_labels) {
            check(o.nlabels <= RESP_TS_MAX_LABELS);
            check(o.nlabels == 0 || inside(o.labels, argv, argc));
            resp_meta_t m;
            resp_meta_default(&m);
            resp_meta_apply(&m, &o);
            st_buf_t b;
            st_buf_init(&b);
            check(resp_meta_to_json(&b, &m) == 0);
            st_buf_deinit(&b);
        }
    } else if (which == 1 || which == 2) {
        resp_range_t o;
        int kind = which == 1 ? RESP_RANGE_ONE
                              : (argc && argv[0].len % 2 ? RESP_RANGE_MULTI : RESP_RANGE_MGET);
        int rc = resp_range_parse(argv, argc, kind, &o, err, sizeof err);
        if (rc) {
            check(memchr(err, 0, sizeof err) != NULL);
            return 0;
        }
        check(o.nselected == 0 || inside(o.selected, argv, argc));
        check(o.groupby == NULL || inside(o.groupby, argv, argc));
        check(o.nfilters <= RESP_TS_MAX_FILTERS);
        for (size_t i = 0; i < o.nfilters; i++)
            check(o.filters[i].name && o.filters[i].value && o.filters[i].name[0]);
        /* the pipeline over a series made of the input bytes */
        resp_samples_t s = {0};
        for (size_t i = 1; i < size && i < 200; i++)
            check(resp_samples_push(&s, (int64_t)i * 37 * data[i], (double)data[i] - 100) == 0);
        /* time order, as the store answers */
        for (size_t i = 1; i < s.n; i++)
            for (size_t k = i; k > 0 && s.ts[k - 1] > s.ts[k]; k--) {
                int64_t t = s.ts[k];
                s.ts[k] = s.ts[k - 1];
                s.ts[k - 1] = t;
                double v = s.v[k];
                s.v[k] = s.v[k - 1];
                s.v[k - 1] = v;
            }
        size_t before = s.n;
        if (o.agg && o.bucket < 1000)
            o.empty = 0; /* EMPTY over a tiny bucket and a wide range is a lot of buckets */
        check(resp_range_apply(&o, &s) == 0);
        if (!o.empty)
            check(s.n <= before);
        if (o.count > 0)
            check(s.n <= (uint64_t)o.count);
        resp_samples_free(&s);
        resp_range_free(&o);
    } else {
        st_matcher_t m[RESP_TS_MAX_FILTERS];
        size_t n;
        if (resp_filter_parse(argv, argc, m, RESP_TS_MAX_FILTERS, &n, err, sizeof err) == 0) {
            const char *kv[4] = {"a", "b", "__name__", "x"};
            (void)resp_labels_match(m, n, kv, 2);
            resp_matchers_free(m, n);
        } else {
            check(memchr(err, 0, sizeof err) != NULL);
        }
    }
    return 0;
}
