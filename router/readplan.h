/*
 * readplan — which replica answers for which shard in a read,
 * free of sockets so it can be unit-tested.
 *
 * A read needs `need` replicas per shard: 1 for read_consistency=one (the
 * first healthy replica in placement order, those the up function prefers
 * first), floor(RF/2)+1 for quorum (the first healthy ones, merged by the
 * caller). The plan groups the
 * assignments by node — one request per group carries all its shards —
 * in the order groups must be fetched. When a group's request fails
 * before any of its data was used, readplan_failover() gives each of its
 * shards the next untried healthy replica (new groups appended at the
 * end). A shard left without enough replicas is marked missing: the caller
 * fails the read naming it, or leaves it out when partial results were
 * asked for.
 */
#ifndef READPLAN_H
#define READPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "topo.h"

/* 0: the node is down; 1: up; READPLAN_PREFERRED: up and preferred (not
 * degraded, not known to be behind): preferred replicas are asked first. */
#define READPLAN_PREFERRED 2
typedef int (*readplan_up_fn)(void *arg, uint32_t node);

typedef struct readplan_group {
    uint32_t node;
    uint32_t *shards;
    uint32_t n;
} readplan_group_t;

typedef struct readplan {
    const topo_t *t;
    uint32_t need;
    uint32_t *tried;  /* [shards] bitmask of replica ranks asked */
    uint8_t *missing; /* [shards] fewer than `need` replicas */
    uint32_t nmissing;
    uint8_t *have; /* [shards] replicas assigned whose group has not failed */
    readplan_group_t *g;
    size_t ng, cap;
} readplan_t;

/* Plan a read of every shard with `need` replicas each (clamped to RF).
 * Returns 0 or ST_ENOMEM. */
int readplan_init(readplan_t *p, const topo_t *t, uint32_t need, readplan_up_fn up, void *arg);
/* Group gi failed: re-assign its shards (new groups at the end; the
 * pointer from readplan_group() may move). Returns 0 or ST_ENOMEM. */
int readplan_failover(readplan_t *p, size_t gi, readplan_up_fn up, void *arg);
/* Missing shards as "3,7,11" into buf (truncated with "..." if needed). */
void readplan_missing_str(const readplan_t *p, char *buf, size_t cap);
/* The missing shards that no replica serves at all (every one assigned
 * failed, or none was up), and those that some replica serves but fewer
 * than `need` (a quorum read short of replicas), in the same form. Once
 * every request of the plan is answered, these are the shards no replica
 * answered for, and those answered by too few. */
void readplan_unserved_str(const readplan_t *p, char *buf, size_t cap);
void readplan_short_str(const readplan_t *p, char *buf, size_t cap);
void readplan_free(readplan_t *p);

#endif
