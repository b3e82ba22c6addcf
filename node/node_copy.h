/*
 * node_copy — "copy shard S from A to B" as files: the sealed segment
 * files of A's copy of a shard are streamed to B (RPC_COPY_LIST,
 * RPC_COPY_FETCH, 1 MiB chunks) and installed into B's engine wherever B
 * has no segment of that partition (engine.h, "Copying sealed segment
 * files"). The rest -- the head, partitions B already holds data in,
 * partitions with a pending delete -- is left to the digest pull repair
 * (node_repair.c), which runs right after.
 *
 * The transport is the caller's (node_copy_io_t): node_repair passes its
 * synchronous RPC call on a private loop and its rate limit, so the same
 * function serves rebuilding a replica, `strata repair --from`, and later
 * moving a shard to a new node.
 */
#ifndef NODE_COPY_H
#define NODE_COPY_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "strata.pb-c.h"

#define NODE_COPY_CHUNK (1u << 20)  /* bytes per COPY_FETCH (also the most one may ask) */
#define NODE_COPY_LIST_MAX 1000000u /* files in one COPY_LIST answer */

typedef struct node_copy_io {
    /* One request to the source node, synchronously: 0 with the reply in
     * (*reply, *rlen), valid until the next call; or ST_E* with err set. */
    int (*call)(void *arg, uint8_t type, const void *p, size_t len, const uint8_t **reply,
                size_t *rlen, char *err, size_t errlen);
    /* After each chunk received (bytes so far in this copy): rate limit and
     * progress; non-zero stops the copy with that code. */
    int (*progress)(void *arg, uint64_t bytes);
    void *arg;
} node_copy_io_t;

typedef struct node_copy_result {
    uint64_t partitions; /* partitions installed */
    uint64_t files;      /* segment files installed */
    uint64_t bytes;      /* file bytes received (series.log included) */
    uint64_t samples;    /* samples the installed files hold */
    uint64_t refused;    /* partitions received but not installed (see the log) */
} node_copy_result_t;

/*
 * Copy the segment files of `shard` from the source behind io into the
 * local engine where the local engine has no segment of the partition.
 * files (n) is the source's list (COPY_LIST without checksums) when the
 * caller has it already, else NULL. Returns 0 (res says what moved;
 * nothing to copy is 0 too), or the first error with err set: a failed
 * partition is logged and counted in res->refused, not an error.
 */
int node_copy_shard(node_t *n, uint32_t shard, const node_copy_io_t *io,
                    const struct Strata__CopyListResponse *files, node_copy_result_t *res,
                    char *err, size_t errlen);

/* The partitions of a COPY_LIST answer with their tokens (engine_copy_parts). */
int node_copy_parts_msg(const struct Strata__CopyListResponse *r, engine_part_token_t **out,
                        size_t *nout);

/* RPC handlers (thread-pool thread): append the reply to out, or return
 * ST_E* with msg set. */
int node_copy_list_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                       size_t msglen);
int node_copy_fetch_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                        size_t msglen);

#endif
