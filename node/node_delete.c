/*
 * node_delete — deletion on the node.
 *
 * A delete reaches a shard as WriteRequest.delete inside an ordinary
 * NodeWrite (RPC_WRITE): the coordinator forwards it, counts acks for the
 * consistency mode and hints the replicas that did not ack, exactly as a
 * write, in order with the writes in each peer's hint queue. So a replica
 * that was down receives the delete after the writes it missed from before
 * it (and before later ones): nothing deleted comes back, later writes
 * stay. Each delete carries the router's delete_id; the engine ignores a
 * second delivery of the same id (hint replays are at-least-once).
 *
 * RPC_DELETE answers what does not change data: a dry run (series and
 * samples that would go) and a purge (compact now). Both run on the
 * thread pool like every engine call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "st_err.h"
#include "strata.pb-c.h"

static int apply(node_t *n, engine_t *e, const Strata__DeleteRequest *d, int dry,
                 engine_delete_result_t *r, char *msg, size_t msglen)
{
    matchers_t m;
    int rc = node_matchers_from(d->matchers, d->n_matchers, &m, msg, msglen);
    if (!rc && m.n == 0) {
        snprintf(msg, msglen, "a delete needs at least one matcher");
        rc = ST_EINVAL;
    }
    if (!rc) {
        rc = engine_delete(e, m.m, m.n, d->start_ms, d->end_ms, d->delete_id, dry, r);
        if (rc)
            snprintf(msg, msglen, "%s", engine_last_error());
    }
    free(m.arena);
    (void)n;
    return rc;
}

int node_delete_shard(node_t *n, uint32_t shard, const uint8_t *p, size_t len, uint64_t *samples,
                      char *msg, size_t msglen)
{
    *samples = 0;
    Strata__DeleteRequest *d = strata__delete_request__unpack(NULL, len, p);
    if (!d) {
        snprintf(msg, msglen, "malformed DeleteRequest");
        return ST_EPROTO;
    }
    engine_delete_result_t r;
    int rc = apply(n, n->engines[shard], d, 0, &r, msg, msglen);
    strata__delete_request__free_unpacked(d, NULL);
    if (!rc)
        *samples = r.samples;
    return rc;
}

int node_delete_rpc(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
                    size_t msglen)
{
    Strata__DeleteRequest *d = strata__delete_request__unpack(NULL, len, payload);
    if (!d) {
        snprintf(msg, msglen, "malformed DeleteRequest");
        return ST_EPROTO;
    }
    Strata__DeleteResponse resp = STRATA__DELETE_RESPONSE__INIT;
    int rc = 0;
    uint32_t ns = (uint32_t)topo_shards(n->topo);
    size_t count = d->n_shards ? d->n_shards : ns;
    for (size_t i = 0; i < count && !rc; i++) {
        uint32_t s = d->n_shards ? d->shards[i] : (uint32_t)i;
        if (s >= ns || !n->engines[s]) {
            if (!d->n_shards)
                continue;
            snprintf(msg, msglen, "shard %u is not placed on node %s", s,
                     topo_node_id(n->topo, n->self));
            rc = ST_EINVAL;
            break;
        }
        engine_t *e = n->engines[s];
        if (d->purge) {
            uint64_t bytes = 0;
            if ((rc = engine_purge(e, &bytes)) != 0)
                snprintf(msg, msglen, "shard %u: purge: %s", s, engine_last_error());
            resp.bytes_reclaimed += bytes;
        } else {
            engine_delete_result_t r;
            rc = apply(n, e, d, 1, &r, msg, msglen);
            resp.series += r.series;
            resp.samples += r.samples;
        }
        if (!rc) {
            engine_stats_t st;
            engine_get_stats(e, &st);
            resp.tombstones_pending += st.tombstones_pending;
            if (st.purge_eta_ms > resp.purge_eta_ms)
                resp.purge_eta_ms = st.purge_eta_ms;
        }
    }
    strata__delete_request__free_unpacked(d, NULL);
    if (rc)
        return rc;
    size_t sz = strata__delete_response__get_packed_size(&resp);
    if (st_buf_reserve(out, sz))
        return ST_ENOMEM;
    out->len += strata__delete_response__pack(&resp, out->data + out->len);
    return 0;
}
