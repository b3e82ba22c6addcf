/*
 * fanout — the router's one scatter-gather core for reads: export, series,
 * labels and PromQL queries (and any later front door) use it.
 *
 * Given the read plan (readplan.h: per node the shards it answers for, with
 * `need` replicas per shard) and `nitems` things to fetch (selectors,
 * pushed-down parts), a fan-out sends one request per (plan group, item),
 * at most `max_inflight` at a time, in plan order (groups outer, items
 * inner; a call's next page goes out before anything else). The caller's
 * callbacks build each request, take each reply (done, next page, hold it
 * while the caller works on it, or stop) and judge each failure (fail the
 * group over or stop). A group that fails over gives its shards to their
 * next untried healthy replicas (new groups, fetched after the others);
 * replies still coming from a failed group are dropped. A shard left
 * without enough replicas is missing: the fan-out ends UNAVAILABLE, or,
 * with partial results allowed, goes on and names the missing shards for
 * the caller's warning.
 *
 * No sockets and no HTTP here: requests go out through a send function
 * (the router's wraps rpc_client_call(); tests fake it) whose completion
 * calls fanout_reply(); answers to clients are the caller's business, the
 * fan-out only gives the texts (fanout_unavailable_msg() and friends).
 *
 * Lifetime: the `end` callback comes once (COMPLETE when every call is
 * done, UNAVAILABLE / NOMEM when it cannot be); a call may still be in
 * flight then. `idle` comes once after `end` (or after a stop) when nothing
 * is in flight any more; it is the last thing the fan-out does, so the
 * caller may destroy it there. Callbacks run on the caller's thread, from
 * fanout_start(), fanout_reply(), fanout_resume() and fanout_stop().
 */
#ifndef FANOUT_H
#define FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "readplan.h"
#include "st_buf.h"
#include "topo.h"

#define FANOUT_MISSING_MAX 256 /* bytes of the missing-shard list ("3,7,...") */
#define FANOUT_WARNING_MAX (2 * FANOUT_MISSING_MAX + 128) /* bytes of a partial warning */

typedef struct fanout fanout_t;
typedef struct fanout_rpc fanout_rpc_t; /* one call in flight */

/* One request: item `item` for plan group `group`. The callbacks may move
 * the page cursor (reply: FANOUT_MORE); the rest is read-only. */
typedef struct fanout_call {
    size_t group;
    uint32_t node;
    const uint32_t *shards;
    uint32_t nshards;
    size_t item;
    uint32_t cursor_shard; /* 0/0: first page */
    uint64_t cursor_pos;
} fanout_call_t;

/* What a reply or failure callback decides. */
typedef enum fanout_verdict {
    FANOUT_DONE = 0,     /* the item is complete for this group */
    FANOUT_MORE = 1,     /* ask again with the cursor the callback set */
    FANOUT_HOLD = 2,     /* the caller decides later with fanout_resume() */
    FANOUT_STOP = 3,     /* stop the fan-out (the caller answers); no `end` */
    FANOUT_FAILOVER = 4, /* failures only: move the group's shards on */
} fanout_verdict_t;

typedef enum fanout_how {
    FANOUT_COMPLETE = 0,    /* every call done */
    FANOUT_UNAVAILABLE = 1, /* shards missing, partial results not allowed */
    FANOUT_NOMEM = 2,
} fanout_how_t;

/* A call that did not get an answer. */
typedef struct fanout_failure {
    int status;         /* ST_* */
    int node_said;      /* the node answered with an error: text in msg/len */
    int at_send;        /* the request could not be built or sent */
    const uint8_t *msg; /* the node's error text (not NUL-terminated) */
    size_t len;
} fanout_failure_t;

typedef struct fanout_ops {
    /* Encode the request for c into out (empty on entry), set its RPC type
     * and timeout. 0, or an ST_* code (then a failure with at_send). */
    int (*build)(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                 st_buf_t *out);
    /* A reply: a fanout_verdict_t (not FAILOVER). */
    int (*reply)(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len);
    /* A failure: FANOUT_FAILOVER or FANOUT_STOP. */
    int (*failed)(void *ctx, const fanout_call_t *c, const fanout_failure_t *why);
    /* The end (see above). c: the failed call that ended it, else NULL. */
    void (*end)(void *ctx, fanout_how_t how, const fanout_call_t *c);
    /* Nothing in flight any more after the end or a stop (see above). */
    void (*idle)(void *ctx);
} fanout_ops_t;

/* Send a request; 0 means fanout_reply(rpc, ...) follows exactly once,
 * else an ST_* code (a failure with at_send). */
typedef int (*fanout_send_fn)(void *arg, uint32_t node, uint8_t type, const uint8_t *req,
                              size_t len, unsigned timeout_ms, fanout_rpc_t *rpc);

typedef struct fanout_cfg {
    const topo_t *topo;
    uint32_t need;       /* replicas per shard */
    int partial;         /* missing shards allowed (partial_response) */
    size_t nitems;       /* requests per group */
    size_t max_inflight; /* calls in flight (held ones count), >= 1 */
    readplan_up_fn up;   /* node health */
    void *up_arg;
    fanout_send_fn send;
    void *send_arg;
    const fanout_ops_t *ops;
    void *ctx; /* the callbacks' first argument */
} fanout_cfg_t;

/* Plan the read. Returns 0 or ST_ENOMEM (*out NULL). */
int fanout_create(const fanout_cfg_t *cfg, fanout_t **out);
/* Start sending (shards already missing and no partial results: `end`
 * UNAVAILABLE with c NULL, then `idle`, before this returns). */
void fanout_start(fanout_t *f);
/* The transport's completion of rpc: status 0 and the payload, or an ST_*
 * code (node_said: the payload is the node's error text). */
void fanout_reply(fanout_rpc_t *rpc, int status, int node_said, const uint8_t *payload, size_t len);
/* Decide a held call (verdict DONE, MORE or STOP). */
void fanout_resume(fanout_t *f, fanout_call_t *c, int verdict);
/* Stop: nothing more is sent, replies are dropped, `idle` follows. */
void fanout_stop(fanout_t *f);
void fanout_destroy(fanout_t *f);

/* Missing shards as "3,7,11" ("" when none). */
const char *fanout_missing(const fanout_t *f);
/* "no replica answered for shard(s) 3,7 (read_consistency=one); retry, or
 * pass partial_response=1 to accept a partial result" */
void fanout_unavailable_msg(const fanout_t *f, char *buf, size_t len);
/* "no replica answered for shard(s) <group's shards> (node <id>: <why>)" */
void fanout_group_msg(const fanout_t *f, size_t group, const char *why, char *buf, size_t len);
/* Once the fan-out completed: "partial response: no replica answered for
 * shard(s) 3,7" naming only the shards no replica answered for; shards a
 * quorum read got from too few replicas (but some) are named apart:
 * "partial response: fewer than 2 replicas (read_consistency=quorum)
 * answered for shard(s) 1,4" (both joined by "; " when both occur). 0 when
 * every shard was answered as asked (buf untouched), else the length. */
size_t fanout_partial_warning(const fanout_t *f, char *buf, size_t len);
/* Group gi failed over (its replies were dropped). */
int fanout_group_failed(const fanout_t *f, size_t gi);
/* Plan groups so far (failed-over ones included) and group gi: its node
 * and shards (NULL past the end). */
size_t fanout_groups(const fanout_t *f);
const readplan_group_t *fanout_group(const fanout_t *f, size_t gi);
/* Groups failed over so far. */
unsigned fanout_failovers(const fanout_t *f);
/* The nodes that still have a call of this fan-out to answer (sent, no
 * fanout_reply() yet: after a stop or an early answer, the ones to tell to
 * stop), at most cap of them into nodes[]. Returns how many. */
size_t fanout_busy_nodes(const fanout_t *f, uint32_t *nodes, size_t cap);
/* The time one call may take with `left` ms of the request's deadline to
 * go: all of it when no spare replica could take over (need >= rf) or
 * left <= min_ms; else half of it, min_ms at least, so that a replica
 * which never answers leaves the next one the other half. 0 when
 * left <= 0. */
int64_t fanout_try_ms(int64_t left, uint32_t need, uint32_t rf, int64_t min_ms);

#endif
