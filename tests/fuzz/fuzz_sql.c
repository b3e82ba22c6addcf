/*
 * fuzz_sql — the SQL parser, planner and executor on arbitrary statements.
 *
 * Each input is parsed; a statement that parses is planned and, when it is
 * a SELECT, executed over two small fixed series (so WHERE, GROUP BY,
 * aggregates, ORDER BY and every function run on real rows) and rendered
 * as JSON and CSV. Errors must carry a message; nothing may crash, leak or
 * read out of bounds (ASan/UBSan builds).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static int one(const uint8_t *data, size_t size);

/* Statements that reach the executor, run once before the first input (the
 * random inputs of the smoke driver rarely parse). */
static const char *const seeds[] = {
    "SELECT count(*), sum(usage_user), avg(value), min(time), max(time) FROM cpu",
    "SELECT hostname, time_bucket('10 seconds', time) AS b, max(usage_user), first(value), "
    "last(value), stddev(value), percentile_cont(0.3) WITHIN GROUP (ORDER BY value) FROM cpu "
    "GROUP BY hostname, b HAVING count(*) > 0 ORDER BY 1, b DESC LIMIT 3 OFFSET 1",
    "SELECT * FROM cpu WHERE hostname = $1 AND usage_user > $2 OR region ~* 'E.' ORDER BY time",
    "SELECT upper(hostname) || '-' || region, abs(value) * 2 / 3 % 5, round(value, 1), "
    "coalesce(region, 'none'), value::int, CAST(time AS text), date_trunc('minute', time) FROM "
    "cpu WHERE time BETWEEN now() - interval '1 day' AND now() AND hostname LIKE 'host\\_%' AND "
    "region IS NULL AND hostname NOT IN ('x', 'y')",
    "SELECT approx_percentile(value, 0.5), date_bin('1m', time, '2026-01-01T00:00:00Z') AS t FROM "
    "cpu GROUP BY t",
    "SELECT hostname, time_bucket_gapfill('1 minute', time) AS b, locf(avg(value)), "
    "interpolate(max(usage_user)), count(*) FROM cpu GROUP BY hostname, b ORDER BY 3 DESC LIMIT 4",
    "SELECT time_bucket_gapfill('10s', time, now() - interval '1 hour', now()) AS b, "
    "interpolate(count(*)) AS i, locf(last(value)) FROM cpu GROUP BY 1 HAVING count(*) >= 0 "
    "ORDER BY i",
    "SELECT 1 / 0",
    "SELECT 9223372036854775807 + 1",
    "SELECT count(*) FROM cpu WHERE time >= '2026-01-01' AND time < '2026-01-02 00:00:00+02'",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int seeded;
    if (!seeded) {
        seeded = 1;
        for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
            one((const uint8_t *)seeds[i], strlen(seeds[i]));
    }
    return one(data, size);
}

static int one(const uint8_t *data, size_t size)
{
    char err[SQL_ERR_MAX];
    sql_stmt_t *s = NULL;
    err[0] = 0;
    int rc = sql_parse((const char *)data, size, &s, err, sizeof err);
    if (rc) {
        check(s == NULL && err[0] != 0);
        return 0;
    }
    if (sql_stmt_kind(s) == SQL_SELECT) {
        sql_plan_t p;
        const char *params[2] = {"host_1", "5"};
        if (!sql_plan(s, 1767225600000, 1767225000000, 1767226200000, params, 2, &p, err,
                      sizeof err)) {
            st_buf_t sel;
            st_buf_init(&sel);
            sql_plan_selector(s, &p, &sel);
            st_buf_deinit(&sel);
            sql_exec_opts_t o = {.max_rows = 10000, .max_bytes = 1 << 24};
            sql_exec_t *x;
            if (!sql_exec_create(s, &p, &o, &x)) {
                static const int64_t ts[4] = {1767225600000, 1767225610000, 1767225620000,
                                              1767225630000};
                static const double v[4] = {1.5, -2, 0, 1e300};
                st_label_t a[2] = {{"__name__", "cpu_usage_user", 8, 14},
                                   {"hostname", "host_1", 8, 6}};
                st_label_t b[3] = {{"__name__", "cpu", 8, 3},
                                   {"hostname", "host_2", 8, 6},
                                   {"region", "eu", 6, 2}};
                sql_exec_set_params(x, 1767225700000, params, 2);
                sql_exec_series(x, a, 2, ts, v, 4);
                sql_exec_series(x, b, 3, ts, v, 3);
                sql_result_t *r = NULL;
                if (!sql_exec_finish(x, &r, err, sizeof err)) {
                    st_buf_t j;
                    st_buf_init(&j);
                    sql_result_json(r, &j);
                    sql_result_csv(r, &j);
                    st_buf_deinit(&j);
                    sql_result_free(r);
                } else {
                    check(err[0] != 0);
                }
                sql_exec_destroy(x);
            }
        }
    }
    sql_stmt_free(s);
    return 0;
}
