/*
 * node_metrics — the node's metrics: its counters (RPC requests, writes,
 * exports, queries) and, at each scrape, the engines' gauges and counters
 * summed over the shards open here. node_engine_totals is the same sum for
 * the STATS RPC.
 */
#include <stdio.h>

#include "node.h"
#include "node_write.h"
#include "st_err.h"

/* The engine stats one node sums (ENGINE_SUM(field) for each). */
/* clang-format off */
#define ENGINE_SUMMED(X) \
    X(series) X(head_samples) X(head_bytes) X(segments) X(partitions) X(disk_bytes) \
    X(samples_written) X(samples_out_of_order) X(flushes) X(compactions) X(flush_errors) \
    X(samples_too_old) X(wal_bytes) X(wal_syncs) X(samples_too_far_future) \
    X(series_refused) X(samples_refused) X(writes_refused_busy) X(open_files) \
    X(head_partitions) X(early_flushes) X(idle_flushes) X(wal_errors) X(compaction_errors) \
    X(retention_errors) X(degraded) X(tombstones) X(tombstones_pending) X(deletes) \
    X(samples_deleted) X(purge_bytes_reclaimed) X(purges) X(segment_opens) \
    X(segment_reads_skipped) X(writes_backpressure_cut) X(metric_retention_drops) \
    X(metric_retention_rewrites) X(samples_hidden_late) X(series_key_bytes)
/* clang-format on */

size_t node_engine_totals(node_t *n, engine_stats_t *t, uint32_t *shards, size_t cap)
{
    size_t ns = 0;
    *t = (engine_stats_t){0};
    for (uint32_t s = 0; s < topo_shards(n->topo); s++) {
        if (!n->engines[s])
            continue;
        engine_stats_t es;
        engine_get_stats(n->engines[s], &es);
#define ENGINE_SUM(f) t->f += es.f;
        ENGINE_SUMMED(ENGINE_SUM)
#undef ENGINE_SUM
        if (es.purge_eta_ms > t->purge_eta_ms) /* the longest wait, not a sum */
            t->purge_eta_ms = es.purge_eta_ms;
        if (shards && ns < cap)
            shards[ns++] = s;
    }
    return ns;
}

int node_degraded(node_t *n, char *why, size_t cap)
{
    if (cap)
        why[0] = '\0';
    for (uint32_t s = 0; s < topo_shards(n->topo); s++) {
        char r[NODE_DEGRADED_REASON_MAX];
        if (n->engines[s] && engine_health(n->engines[s], r, sizeof r)) {
            snprintf(why, cap, "shard %u: %s", s, r);
            return 1;
        }
    }
    return 0;
}

/* The engines' sums as metrics: name, type, help, value. */
typedef struct gauge {
    const char *name, *type, *help;
    uint64_t v;
} gauge_t;

static int engine_gauges(void *arg, st_buf_t *out)
{
    engine_stats_t t;
    node_engine_totals(arg, &t, NULL, 0);
    const gauge_t g[] = {
        {"strata_node_series", "gauge", "Series stored on this node.", t.series},
        {"strata_node_head_samples", "gauge", "Samples in memory not yet in segments.",
         t.head_samples},
        {"strata_node_head_bytes", "gauge", "Memory held by the heads.", t.head_bytes},
        {"strata_node_series_key_bytes", "gauge",
         "Memory held by the series keys (label bytes of a write -> series id).",
         t.series_key_bytes},
        {"strata_node_segments", "gauge", "Segment files.", t.segments},
        {"strata_node_disk_bytes", "gauge", "Bytes on disk (segments, series logs, WAL).",
         t.disk_bytes},
        {"strata_node_wal_bytes", "gauge", "Bytes in WAL files.", t.wal_bytes},
        {"strata_node_engine_samples_written_total", "counter", "Samples written to the engines.",
         t.samples_written},
        {"strata_node_samples_out_of_order_total", "counter",
         "Samples older than their series' newest.", t.samples_out_of_order},
        {"strata_node_flushes_total", "counter", "Head flushes.", t.flushes},
        {"strata_node_compactions_total", "counter", "Partition compactions.", t.compactions},
        {"strata_node_flush_errors_total", "counter", "Failed flush attempts (retried).",
         t.flush_errors},
        {"strata_node_wal_syncs_total", "counter", "WAL fsyncs.", t.wal_syncs},
        {"strata_node_samples_too_old_total", "counter", "Samples dropped: older than retention.",
         t.samples_too_old},
        {"strata_node_samples_too_far_future_total", "counter",
         "Samples dropped: further ahead of the clock than max_future.", t.samples_too_far_future},
        {"strata_node_samples_refused_total", "counter",
         "Samples refused: their series over a cardinality limit, or a write refused busy.",
         t.samples_refused},
        {"strata_node_writes_refused_busy_total", "counter",
         "Shard writes refused with 503 + Retry-After: the node's head was over head_max_mb.",
         t.writes_refused_busy},
        {"strata_node_open_files", "gauge", "Segment files open now (bounded by max_open_files).",
         t.open_files},
        {"strata_node_head_partitions", "gauge", "Partitions the in-memory heads span.",
         t.head_partitions},
        {"strata_node_early_flushes_total", "counter",
         "Flushes started because a head spanned more than head_max_partitions.", t.early_flushes},
        {"strata_node_idle_flushes_total", "counter",
         "Flushes started because writes stopped after a burst (the partitions are compacted "
         "next).",
         t.idle_flushes},
        {"strata_node_wal_errors_total", "counter", "Failed WAL appends, syncs or rotations.",
         t.wal_errors},
        {"strata_node_compaction_errors_total", "counter", "Failed compactions (retried).",
         t.compaction_errors},
        {"strata_node_retention_errors_total", "counter", "Failed retention passes (retried).",
         t.retention_errors},
        {"strata_node_tombstones", "gauge", "Tombstones kept (deletes; done ones included).",
         t.tombstones},
        {"strata_node_tombstones_pending", "gauge",
         "Tombstones whose deleted samples are still on disk (until the next compaction of "
         "their partitions, or POST /api/v1/admin/purge).",
         t.tombstones_pending},
        {"strata_node_purge_eta_seconds", "gauge",
         "Seconds until the background compaction removes the pending deleted samples "
         "(0: none pending).",
         (uint64_t)((t.purge_eta_ms + 999) / 1000)},
        {"strata_node_deletes_total", "counter", "Deletes applied to a shard.", t.deletes},
        {"strata_node_samples_deleted_total", "counter", "Samples removed by deletes.",
         t.samples_deleted},
        {"strata_node_purge_bytes_reclaimed_total", "counter",
         "Bytes freed by compactions that dropped deleted samples.", t.purge_bytes_reclaimed},
        {"strata_node_purges_total", "counter", "Compactions that dropped deleted samples.",
         t.purges},
        {"strata_node_samples_hidden_late_total", "counter",
         "Samples of writes made before a delete that arrived after it (hints, repair) and "
         "were left out: the delete's version is higher.",
         t.samples_hidden_late},
        {"strata_node_metric_retention_drops_total", "counter",
         "Partitions dropped whole by the [retention] per-metric overrides.",
         t.metric_retention_drops},
        {"strata_node_metric_retention_rewrites_total", "counter",
         "Partitions compacted to drop samples past a [retention] per-metric override.",
         t.metric_retention_rewrites},
        {"strata_node_segment_opens_total", "counter",
         "Segment files opened (mapped) to read them; closed ones reopen through the LRU.",
         t.segment_opens},
        {"strata_node_segment_reads_skipped_total", "counter",
         "Segment reads skipped unopened: the segment's in-memory summary shows no sample of "
         "the series in the range.",
         t.segment_reads_skipped},
        {"strata_node_writes_backpressure_timeouts_total", "counter",
         "Shard writes acknowledged after waiting 250 ms for a flush behind (backpressure).",
         t.writes_backpressure_cut},
        {"strata_node_degraded", "gauge",
         "1 while an engine reports itself degraded (/ready answers 503 with the reason).",
         t.degraded ? 1 : 0},
    };
    char tmp[512];
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        int k = snprintf(tmp, sizeof tmp, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", g[i].name,
                         g[i].help, g[i].name, g[i].type, g[i].name, (unsigned long long)g[i].v);
        if (st_buf_append(out, tmp, (size_t)k))
            return ST_ENOMEM;
    }
    return 0;
}

/* The downsampling tiers, per resolution, summed over the shards. */
static int tier_gauges(void *arg, st_buf_t *out)
{
    node_t *n = arg;
    engine_tier_stats_t sum[TIER_MAX] = {0}, st[TIER_MAX];
    size_t nt = 0;
    uint64_t errors = 0;
    for (uint32_t s = 0; s < topo_shards(n->topo); s++) {
        if (!n->tiers[s])
            continue;
        size_t k = engine_tiers_stats(n->tiers[s], st, TIER_MAX);
        errors += engine_tiers_errors(n->tiers[s]);
        for (size_t i = 0; i < k; i++) {
            if (i >= nt)
                sum[i] = (engine_tier_stats_t){.res_ms = st[i].res_ms, .watermark_ms = INT64_MAX};
            sum[i].buckets_written += st[i].buckets_written;
            sum[i].chunks += st[i].chunks;
            sum[i].disk_bytes += st[i].disk_bytes;
            sum[i].series += st[i].series;
            if (st[i].watermark_ms != INT64_MIN && st[i].watermark_ms < sum[i].watermark_ms)
                sum[i].watermark_ms = st[i].watermark_ms;
        }
        if (k > nt)
            nt = k;
    }
    if (!nt)
        return 0;
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"strata_node_tier_buckets_written_total", "counter",
         "Downsampled buckets written, by tier resolution (ms)."},
        {"strata_node_tier_chunks_total", "counter",
         "Partition-long chunks moved into a tier, by tier resolution (ms)."},
        {"strata_node_tier_disk_bytes", "gauge", "Bytes on disk of a tier, by resolution (ms)."},
        {"strata_node_tier_series", "gauge", "Series in a tier, by resolution (ms)."},
        {"strata_node_tier_watermark_seconds", "gauge",
         "Buckets ending at or before this are in the tier (oldest over the shards that have "
         "one)."},
    };
    char tmp[512];
    for (size_t g = 0; g < sizeof m / sizeof m[0]; g++) {
        int k = snprintf(tmp, sizeof tmp, "# HELP %s %s\n# TYPE %s %s\n", m[g].name, m[g].help,
                         m[g].name, m[g].type);
        if (st_buf_append(out, tmp, (size_t)k))
            return ST_ENOMEM;
        for (size_t i = 0; i < nt; i++) {
            const engine_tier_stats_t *x = &sum[i];
            if (g == 4 && (x->watermark_ms == INT64_MIN || x->watermark_ms == INT64_MAX))
                continue;
            uint64_t v = g == 0   ? x->buckets_written
                         : g == 1 ? x->chunks
                         : g == 2 ? x->disk_bytes
                         : g == 3 ? x->series
                                  : 0;
            k = g == 4 ? snprintf(tmp, sizeof tmp, "%s{resolution_ms=\"%lld\"} %.3f\n", m[g].name,
                                  (long long)x->res_ms, (double)x->watermark_ms / 1000.0)
                       : snprintf(tmp, sizeof tmp, "%s{resolution_ms=\"%lld\"} %llu\n", m[g].name,
                                  (long long)x->res_ms, (unsigned long long)v);
            if (st_buf_append(out, tmp, (size_t)k))
                return ST_ENOMEM;
        }
    }
    int k = snprintf(tmp, sizeof tmp,
                     "# HELP strata_node_tier_errors_total Failed downsampling passes (retried).\n"
                     "# TYPE strata_node_tier_errors_total counter\n"
                     "strata_node_tier_errors_total %llu\n",
                     (unsigned long long)errors);
    return st_buf_append(out, tmp, (size_t)k) ? ST_ENOMEM : 0;
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
        {&n->count_from_headers, "strata_node_query_samples_counted_unread_total",
         "Samples count_over_time counted from segment block headers without reading them."},
        {&n->row_stats, "strata_node_row_stats_total",
         "ROW_STATS requests answered (timestamp fingerprints per tag set for SQL count(*))."},
        {&n->row_stats_samples, "strata_node_row_stats_samples_total",
         "Timestamps fingerprinted by ROW_STATS requests."},
        {&n->query_points, "strata_node_query_points_total",
         "Values returned by pushed-down query evaluations."},
        {&n->queries_cancelled, "strata_node_queries_cancelled_total",
         "Pushed-down query evaluations stopped by the router's CANCEL."},
        {&n->reads_timed_out, "strata_node_reads_timed_out_total",
         "Series, label and export reads stopped at the router's deadline."},
        {&n->deletes_served, "strata_node_shard_deletes_total",
         "Deletes received for a shard (coordinated, forwarded or replayed from hints)."},
        {&n->queries_downsampled, "strata_node_queries_downsampled_total",
         "Pushed-down query evaluations answered from downsampled buckets only."},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (!(*counters[i].c =
                  metrics_counter(n->metrics, counters[i].name, counters[i].help, NULL)))
            return ST_ENOMEM;
    for (int l = PROMQL_LIMIT_NONE + 1; l < PROMQL_LIMIT_COUNT; l++)
        if (!(n->query_refused[l] = metrics_counter(
                  n->metrics, "strata_node_queries_refused_total",
                  "Pushed-down query evaluations refused, by the limit that refused them.", "limit",
                  promql_limit_name((promql_limit_t)l), NULL)))
            return ST_ENOMEM;
    if (node_write_metrics(n))
        return ST_ENOMEM;
    if (metrics_collector(n->metrics, tier_gauges, n))
        return ST_ENOMEM;
    return metrics_collector(n->metrics, engine_gauges, n);
}
