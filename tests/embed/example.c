/* example — a local time-series store: write, flush, close, reopen, read back. */
#include <stdio.h>
#include <strata/engine.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s (%s)\n", what, st_strerror(rc), engine_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data";
    engine_opts_t o;
    engine_opts_default(&o);
    o.wal_durability = ENGINE_WAL_EVERY_WRITE; /* acknowledged = on disk */
    engine_t *e;
    int rc;
    if ((rc = engine_open(dir, &o, &e)))
        return fail("open", rc);
    st_label_t l[2] = {{"__name__", "cpu", 8, 3}, {"host", "a", 4, 1}}; /* sorted by name */
    int64_t ts[3] = {1000, 2000, 3000};
    double v[3] = {0.5, 1.5, 2.5};
    engine_series_batch_t b = {.labels = l, .nlabels = 2, .ts = ts, .values = v, .n = 3};
    if ((rc = engine_write(e, &b, 1, NULL)) || (rc = engine_flush(e)) || (rc = engine_close(e)))
        return fail("write", rc);

    if ((rc = engine_open(dir, &o, &e)))
        return fail("reopen", rc);
    st_matcher_t m = {ST_MATCH_EQ, "__name__", "cpu"};
    engine_iter_t *it;
    if ((rc = engine_query(e, &m, 1, 0, 10000, &it)))
        return fail("query", rc);
    const st_label_t *sl;
    const int64_t *t;
    const double *x;
    size_t nl, n;
    while ((rc = engine_iter_next(it, &sl, &nl, &t, &x, &n)) > 0) {
        for (size_t i = 0; i < nl; i++)
            printf("%s%.*s=%.*s", i ? "," : "", (int)sl[i].name_len, sl[i].name,
                   (int)sl[i].value_len, sl[i].value);
        for (size_t i = 0; i < n; i++)
            printf(" %lld:%g", (long long)t[i], x[i]);
        printf("\n");
    }
    engine_iter_destroy(it);
    engine_stats_t s;
    engine_get_stats(e, &s);
    printf("series=%llu segments=%llu\n", (unsigned long long)s.series,
           (unsigned long long)s.segments);
    int rc2 = engine_close(e);
    return rc < 0 ? fail("iterate", rc) : rc2 ? fail("close", rc2) : 0;
}
