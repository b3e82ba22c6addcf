/*
 * repl — the pure rules of replicated writes (docs/architecture.md,
 * "Replication"), free of sockets so they can be unit-tested: how many acks
 * a mode needs, when a shard's outcome is decided, and how a NodeWrite
 * envelope is read and re-made.
 *
 * A coordinator tracks each shard of a write with a repl_tally_t: it counts
 * acks (its own local write included) and failures among the RF replicas.
 * The shard is decided OK once acks reach the mode's requirement, FAILED
 * once so many replicas failed that the requirement can no longer be met.
 * Replicas that did not ack get hints whatever the outcome.
 *
 * Envelope: NodeWrite = repeated WriteRequest shards = 1 (each carrying
 * `uint32 shard = 1`), uint32 consistency = 2 (0 = cluster default, else
 * 1 + topo_write_consistency_t), bool forwarded = 3. repl_scan() finds the
 * shard entries without decoding the series in them, so a coordinator can
 * forward the exact bytes it received.
 */
#ifndef REPL_H
#define REPL_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "topo.h"
#include "wire.h"

/* Acks needed by `mode` (topo_write_consistency_t) with rf replicas. */
uint32_t repl_required(int mode, uint32_t rf);

typedef enum repl_state { REPL_PENDING = 0, REPL_OK = 1, REPL_FAILED = 2 } repl_state_t;

typedef struct repl_tally {
    uint32_t rf, required;
    uint32_t acks, fails;
} repl_tally_t;

void repl_tally_init(repl_tally_t *t, int mode, uint32_t rf);
/* Record one replica's outcome (ok = 1 ack, 0 failure). Returns the state. */
repl_state_t repl_tally_add(repl_tally_t *t, int ok);
repl_state_t repl_tally_state(const repl_tally_t *t);

/* One WriteRequest inside a NodeWrite: the whole field (tag and length
 * included, so entries concatenate into a new NodeWrite) and its shard. */
typedef struct repl_entry {
    const uint8_t *field; /* tag + length + WriteRequest bytes */
    size_t field_len;
    const uint8_t *msg; /* the WriteRequest bytes alone */
    size_t msg_len;
    uint32_t shard; /* UINT32_MAX when the message has no shard */
} repl_entry_t;

typedef struct repl_envelope {
    uint32_t consistency; /* as on the wire: 0 = default */
    int forwarded;
    size_t n; /* entries */
} repl_envelope_t;

/*
 * Scan a NodeWrite: fill up to `cap` entries (env->n counts all of them)
 * and the envelope fields. Returns 0 or ST_ECORRUPT. Entries point into
 * `p`.
 */
int repl_scan(const uint8_t *p, size_t len, repl_entry_t *entries, size_t cap,
              repl_envelope_t *env);

/* Append the envelope fields of a NodeWrite (consistency, forwarded) to b;
 * entries are appended by the caller as repl_entry_t.field bytes, or with
 * repl_put_entry() from a bare WriteRequest message. */
int repl_put_envelope(st_buf_t *b, uint32_t consistency, int forwarded);
int repl_put_entry(st_buf_t *b, const uint8_t *msg, size_t len);
/*
 * The NodeWrite p[0..len) again with `version` (WriteRequest.version) in
 * every WriteRequest that has none (one that carries a version keeps it),
 * appended to out, everything else as it is. The plain form of the
 * stamping repl_stamp_forward does in its one pass (test_repl holds the
 * two to the same entry bytes). Returns 0, ST_ECORRUPT
 * or ST_ENOMEM.
 */
int repl_stamp_version(const uint8_t *p, size_t len, uint64_t version, st_buf_t *out);
/*
 * What a coordinator does with a NodeWrite in one pass: appends to out the
 * message to forward (the envelope "forwarded, consistency 0", then every
 * entry as repl_stamp_version makes it, stamped with one copy; other fields
 * as they are), reads the received envelope into env and returns the
 * entries of out in *entries (malloc'd, NULL when there are none; they
 * point into out->data, so out must not change while they are used).
 * Returns 0, ST_ECORRUPT or ST_ENOMEM (then *entries is NULL).
 */
int repl_stamp_forward(const uint8_t *p, size_t len, uint64_t version, st_buf_t *out,
                       repl_entry_t **entries, repl_envelope_t *env);
/*
 * Series references (docs/protocol.md, "Forwarding"): a coordinator names
 * each series it forwards by 16 bytes, a hash of its label bytes with a
 * seed of its own (secret, so no writer can make two label sets collide),
 * in SeriesSamples field `ref`. A replica that wrote a series sent with
 * labels and a reference keeps reference -> series; a later forward may
 * carry the reference alone. repl_series_ref makes it; out gets 16 bytes.
 */
void repl_series_ref(const uint8_t *lab, size_t len, uint64_t seed, uint8_t out[WIRE_REF_LEN]);
/*
 * Append a forwarded NodeWrite (envelope "forwarded, consistency 0") of
 * the entries e[idx[0..k)] (idx NULL: e[0..k)), every series whose labels
 * lie together re-made as its reference (the one it came with, a
 * router's, else repl_series_ref with seed) and its samples, without
 * its labels; other series and fields as they are. Returns 0, ST_ECORRUPT
 * (a malformed entry) or ST_ENOMEM.
 */
int repl_put_forward_refs(st_buf_t *out, const repl_entry_t *e, const size_t *idx, size_t k,
                          uint64_t seed);
/* WriteRequest.version of msg[0..len) (0 when absent). */
uint64_t repl_entry_version(const uint8_t *msg, size_t len);

/* Parse the per-request consistency name (sync|quorum|async, and InfluxDB's
 * all = sync, any/one = async). Returns the wire value (1 + mode), or 0 for
 * NULL/"" (cluster default), or -1 for an unknown name. */
int repl_consistency_param(const char *s);

/* The cardinality limits a node names when it refuses new series
 * (ShardResult.limit): index 0..REPL_NLIMITS-2 are the [storage] keys,
 * the last one is "other" (any name not among them). Node and router count
 * refusals per limit with these. */
#define REPL_NLIMITS 4
const char *repl_limit_name(size_t i);
size_t repl_limit_index(const char *name);

#endif
