/*
 * node_status — TSDB_STATUS: the cardinality of this node's shards for the
 * router's /api/v1/status/tsdb.
 *
 * For every shard asked (the router asks one replica per shard, so each
 * series is counted once cluster-wide) the engine counts the label pairs of
 * the selected series (engine_label_pairs); the pairs are written straight
 * into a TsdbStatusResponse (proto/strata.proto), shard after shard
 * without merging (the router sums equal pairs), num_series last.
 */
#include <stdio.h>

#include "node.h"
#include "st_err.h"
#include "wire.h"

/* TsdbStatusResponse / LabelPairCount field numbers (proto/strata.proto) */
#define TSDB_NUM_SERIES 1
#define TSDB_PAIRS 2
#define PAIR_NAME 1
#define PAIR_VALUE 2
#define PAIR_SERIES 3

static int put_pair(void *arg, const st_label_t *l, uint64_t series)
{
    st_buf_t *out = arg;
    size_t mark;
    int rc = wire_begin(out, TSDB_PAIRS, &mark);
    rc |= wire_put_bytes_field(out, PAIR_NAME, l->name, l->name_len);
    rc |= wire_put_bytes_field(out, PAIR_VALUE, l->value, l->value_len);
    rc |= wire_put_varint_field(out, PAIR_SERIES, series);
    wire_end(out, mark);
    return rc ? ST_ENOMEM : 0;
}

int node_tsdb_status(node_t *n, const uint32_t *shards, size_t nshards, const st_matcher_t *m,
                     size_t nm, st_buf_t *out, char *msg, size_t msglen)
{
    uint64_t total = 0;
    for (size_t i = 0; i < nshards; i++) {
        if (shards[i] >= (uint32_t)topo_shards(n->topo) || !n->engines[shards[i]]) {
            snprintf(msg, msglen, "shard %u is not placed on node %s", shards[i],
                     topo_node_id(n->topo, n->self));
            return ST_EINVAL;
        }
        uint64_t series;
        int rc = engine_label_pairs(n->engines[shards[i]], m, nm, &series, put_pair, out);
        if (rc) {
            snprintf(msg, msglen, "shard %u: %s", shards[i],
                     rc == ST_ENOMEM ? "out of memory" : engine_last_error());
            return rc;
        }
        total += series;
    }
    return wire_put_varint_field(out, TSDB_NUM_SERIES, total) ? ST_ENOMEM : 0;
}
