/*
 * node_metrics — the node's metrics: its counters (RPC requests, writes,
 * exports, queries) and, at each scrape, the engines' gauges and counters
 * summed over the shards open here. node_engine_totals is the same sum for
 * the STATS RPC.
 */
#include <stdio.h>

#include "node.h"
#include "st_err.h"
#include "st_log.h"

size_t node_engine_totals(node_t *n, engine_stats_t *t, uint32_t *shards, size_t cap)
{
    size_t ns = 0;
    *t = (engine_stats_t){0};
    for (uint32_t s = 0; s < topo_shards(n->topo); s++) {
        if (!n->engines[s])
            continue;
        engine_stats_t es;
        engine_get_stats(n->engines[s], &es);
        t->series += es.series;
        t->head_samples += es.head_samples;
        t->head_bytes += es.head_bytes;
        t->segments += es.segments;
        t->partitions += es.partitions;
        t->disk_bytes += es.disk_bytes;
        t->samples_written += es.samples_written;
        t->samples_out_of_order += es.samples_out_of_order;
        t->flushes += es.flushes;
        t->compactions += es.compactions;
        t->flush_errors += es.flush_errors;
        t->samples_too_old += es.samples_too_old;
        t->wal_bytes += es.wal_bytes;
        t->wal_syncs += es.wal_syncs;
        if (shards && ns < cap)
            shards[ns++] = s;
    }
    return ns;
}

/* DEBUG-STALL */
static uv_timer_t dbg_stall_t;
static uint64_t dbg_stall_last;
static void dbg_stall_cb(uv_timer_t *t)
{
    uint64_t now = uv_hrtime() / 1000000;
    if (dbg_stall_last && now - dbg_stall_last > 400)
        st_warn("DEBUG loop stall", "ms=%llu", (unsigned long long)(now - dbg_stall_last - 100));
    dbg_stall_last = now;
}

int node_degraded(node_t *n, char *why, size_t cap)
{
    (void)n;
    if (cap)
        why[0] = '\0';
    return 0;
}

static int engine_gauges(void *arg, st_buf_t *out)
{
    engine_stats_t t;
    node_engine_totals(arg, &t, NULL, 0);
    char tmp[4096];
    int k = snprintf(
        tmp, sizeof tmp,
        "# HELP strata_node_series Series stored on this node.\n# TYPE strata_node_series gauge\n"
        "strata_node_series %llu\n"
        "# HELP strata_node_head_samples Samples in memory not yet in segments.\n"
        "# TYPE strata_node_head_samples gauge\nstrata_node_head_samples %llu\n"
        "# HELP strata_node_head_bytes Memory held by the heads.\n"
        "# TYPE strata_node_head_bytes gauge\nstrata_node_head_bytes %llu\n"
        "# HELP strata_node_segments Segment files.\n"
        "# TYPE strata_node_segments gauge\nstrata_node_segments %llu\n"
        "# HELP strata_node_disk_bytes Bytes on disk (segments, series logs, WAL).\n"
        "# TYPE strata_node_disk_bytes gauge\nstrata_node_disk_bytes %llu\n"
        "# HELP strata_node_wal_bytes Bytes in WAL files.\n"
        "# TYPE strata_node_wal_bytes gauge\nstrata_node_wal_bytes %llu\n"
        "# HELP strata_node_engine_samples_written_total Samples written to the engines.\n"
        "# TYPE strata_node_engine_samples_written_total counter\n"
        "strata_node_engine_samples_written_total %llu\n"
        "# HELP strata_node_samples_out_of_order_total Samples older than their series' newest.\n"
        "# TYPE strata_node_samples_out_of_order_total counter\n"
        "strata_node_samples_out_of_order_total %llu\n"
        "# HELP strata_node_flushes_total Head flushes.\n"
        "# TYPE strata_node_flushes_total counter\nstrata_node_flushes_total %llu\n"
        "# HELP strata_node_compactions_total Partition compactions.\n"
        "# TYPE strata_node_compactions_total counter\nstrata_node_compactions_total %llu\n"
        "# HELP strata_node_flush_errors_total Failed flush attempts (retried).\n"
        "# TYPE strata_node_flush_errors_total counter\nstrata_node_flush_errors_total %llu\n"
        "# HELP strata_node_wal_syncs_total WAL fsyncs.\n"
        "# TYPE strata_node_wal_syncs_total counter\nstrata_node_wal_syncs_total %llu\n"
        "# HELP strata_node_samples_too_old_total Samples dropped: older than retention.\n"
        "# TYPE strata_node_samples_too_old_total counter\nstrata_node_samples_too_old_total "
        "%llu\n",
        (unsigned long long)t.series, (unsigned long long)t.head_samples,
        (unsigned long long)t.head_bytes, (unsigned long long)t.segments,
        (unsigned long long)t.disk_bytes, (unsigned long long)t.wal_bytes,
        (unsigned long long)t.samples_written, (unsigned long long)t.samples_out_of_order,
        (unsigned long long)t.flushes, (unsigned long long)t.compactions,
        (unsigned long long)t.flush_errors, (unsigned long long)t.wal_syncs,
        (unsigned long long)t.samples_too_old);
    return st_buf_append(out, tmp, (size_t)k);
}

int node_metrics_register(node_t *n)
{
    const struct {
        metric_counter_t **c;
        const char *name, *help;
    } counters[] = {
        {&n->rpc_requests, "strata_node_rpc_requests_total", "RPC requests."},
        {&n->rpc_errors, "strata_node_rpc_errors_total", "RPC requests answered with an error."},
        {&n->samples_written, "strata_node_samples_written_total", "Samples written through RPC."},
        {&n->write_rejected, "strata_node_shard_writes_rejected_total",
         "Shard writes that failed."},
        {&n->http_exports, "strata_node_http_exports_total", "Local /api/v1/export calls."},
        {&n->queries, "strata_node_queries_total",
         "Pushed-down query evaluations (QUERY RPCs) answered."},
        {&n->query_samples, "strata_node_query_samples_total",
         "Raw samples read by pushed-down query evaluations."},
        {&n->query_points, "strata_node_query_points_total",
         "Values returned by pushed-down query evaluations."},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (!(*counters[i].c =
                  metrics_counter(n->metrics, counters[i].name, counters[i].help, NULL)))
            return ST_ENOMEM;
    uv_timer_init(n->loop, &dbg_stall_t);
    uv_timer_start(&dbg_stall_t, dbg_stall_cb, 100, 100);
    uv_unref((uv_handle_t *)&dbg_stall_t);
    return metrics_collector(n->metrics, engine_gauges, n);
}
