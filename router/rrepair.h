/*
 * rrepair — the socket-free part of read repair: which replicas a quorum
 * read found stale, and the bounded queue of repairs to start.
 *
 * A read with read_consistency=quorum gets each shard from several
 * replicas and folds their answers (sset_merge_check reports the label
 * sets whose copies disagree). rrepair_judge() turns one such label set
 * into (shard, stale node, source) pairs, collected per read in an
 * rrepair_found_t (bounded, de-duplicated, windows widened). The router
 * (router_rrepair.c) offers them to the queue, which starts a targeted
 * RPC_REPAIR on the stale node (pull that shard, over the read's time
 * range, from the source replica) — the node's repair resolves conflicts
 * by version and keeps tombstones, which the router cannot.
 *
 * Bounds (rrepair_cfg_t): at most one repair pending per (shard, node)
 * (queued or running; a second one for a queued pair widens its time
 * range), at most queue_max queued, inflight_max running; a pair repaired
 * less than cooldown_ms ago and offers past the token bucket (rate_per_s,
 * burst) are dropped as rate limited, so a flapping replica cannot turn
 * every read into repair work. Time comes from the caller (now_ms).
 */
#ifndef RREPAIR_H
#define RREPAIR_H

#include <stddef.h>
#include <stdint.h>

#define RREPAIR_QUEUE_MAX 64     /* repairs waiting to start */
#define RREPAIR_INFLIGHT_MAX 2   /* repairs running at once (per router) */
#define RREPAIR_COOLDOWN_MS 1000 /* a (shard, node) repair starts at most this often */
#define RREPAIR_RATE_PER_S 4     /* repairs queued per second (token bucket) */
#define RREPAIR_BURST 8          /* ... and at once */
#define RREPAIR_FOUND_MAX 64     /* (shard, node) pairs one read collects */
#define RREPAIR_REPLICAS_MAX 8   /* answering replicas remembered per shard */

typedef struct rrepair_item {
    uint32_t shard, node; /* repair this shard on this node */
    int32_t source;       /* from this replica; -1: every other replica */
    int64_t start, end;   /* over this time range (ms) */
} rrepair_item_t;

/* ---- what one read found ---- */

/* The replicas whose answers a read folded, per shard. */
typedef struct rrepair_answers {
    uint32_t nshards;
    uint8_t *n;     /* [nshards] */
    uint32_t *node; /* [nshards * RREPAIR_REPLICAS_MAX] */
} rrepair_answers_t;

int rrepair_answers_init(rrepair_answers_t *a, uint32_t nshards); /* 0 or ST_ENOMEM */
void rrepair_answers_add(rrepair_answers_t *a, uint32_t shard, uint32_t node);
void rrepair_answers_free(rrepair_answers_t *a);

typedef struct rrepair_found {
    rrepair_item_t pair[RREPAIR_FOUND_MAX];
    size_t n;
    uint64_t series;  /* label sets with a stale replica */
    uint64_t dropped; /* pairs past RREPAIR_FOUND_MAX */
} rrepair_found_t;

/*
 * One label set of `shard` whose copies disagree: origin[i] / stale[i] as
 * sset_merge_check reports them, has_old: the merged series has samples at
 * or before the cutoff (so a replica that answered for the shard without
 * it lacks them). The stale replicas among those that answered for the
 * shard go into f with the read's range [start, end]; the source is one
 * that answered with a full copy (-1 when none did). Origins that did not
 * answer for the shard (a group that failed over) are ignored.
 */
void rrepair_judge(rrepair_found_t *f, const rrepair_answers_t *a, uint32_t shard, int has_old,
                   const uint32_t *origin, const uint8_t *stale, size_t n, int64_t start,
                   int64_t end);

/* ---- the queue ---- */

typedef struct rrepair_cfg {
    size_t queue_max;
    uint32_t inflight_max;
    int64_t cooldown_ms;
    uint32_t rate_per_s, burst;
} rrepair_cfg_t;

typedef enum rrepair_verdict {
    RREPAIR_QUEUED = 0,  /* queued */
    RREPAIR_MERGED = 1,  /* the pair was queued already: its range widened */
    RREPAIR_PENDING = 2, /* the pair is being repaired now: nothing to do */
    RREPAIR_FULL = 3,    /* dropped: the queue is full */
    RREPAIR_RATE = 4,    /* dropped: rate limited (pair cooldown or token bucket) */
} rrepair_verdict_t;

typedef struct rrepair rrepair_t;

/* cfg NULL: the RREPAIR_* defaults. Returns 0 or ST_ENOMEM. */
int rrepair_create(uint32_t nshards, uint32_t nnodes, const rrepair_cfg_t *cfg, rrepair_t **out);
void rrepair_destroy(rrepair_t *q);
rrepair_verdict_t rrepair_offer(rrepair_t *q, const rrepair_item_t *it, int64_t now_ms);
/* The next repair to start, if one is queued and fewer than inflight_max
 * run: 1 with *out (now running), else 0. */
int rrepair_next(rrepair_t *q, int64_t now_ms, rrepair_item_t *out);
/* A running repair of (shard, node) ended (whatever its outcome). */
void rrepair_done(rrepair_t *q, uint32_t shard, uint32_t node);
size_t rrepair_queued(const rrepair_t *q);
size_t rrepair_running(const rrepair_t *q);

#endif
