/*
 * topo — the cluster topology: cluster.ini parsed, validated and frozen.
 *
 * A topo_t is immutable once loaded, so any number of threads may read it
 * without locks. It holds the [cluster] settings, the per-host [storage] and
 * [router] settings, the node list in file order and the shard placement:
 * for every shard an ordered replica list of exactly replication_factor
 * node indices (index 0 coordinates writes, reads try them in order).
 *
 * Loading never prints: a bad file returns ST_ECONFIG with one line
 * "FILE:LINE: reason" (or "FILE: reason" when no single line is to blame) in
 * the caller's err buffer. docs/configuration.md is the reference for every
 * key, the default placement rule, the explicit placement rules and what the
 * fingerprint covers.
 *
 * Fingerprint: XXH3-64 of a normalized text (see topo_canonical()) made of
 * the effective [cluster] values, the node list (id, rpc address) and every
 * shard's replica list. Comments, whitespace, key order and the [storage] /
 * [router] / http settings do not change it.
 */
#ifndef TOPO_H
#define TOPO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "st_labels.h"

#define TOPO_MAX_SHARDS 65536 /* shards = 1..65536 */
#define TOPO_MAX_RF 16        /* replication_factor = 1..16 (and <= nodes) */
#define TOPO_MAX_NODES 1024
#define TOPO_ID_MAX 64          /* node ids and the cluster name: 1..64 of [A-Za-z0-9._-] */
#define TOPO_HOST_MAX 253       /* a DNS name or an IP literal */
#define TOPO_FILE_MAX (1 << 20) /* cluster.ini is at most 1 MiB */

typedef struct topo topo_t;

/* Enum values index the names accepted in cluster.ini (see topo_*_name()). */
typedef enum topo_write_consistency {
    TOPO_WRITE_SYNC = 0,   /* all RF replicas */
    TOPO_WRITE_QUORUM = 1, /* floor(RF/2)+1, the coordinator included */
    TOPO_WRITE_ASYNC = 2,  /* the coordinator alone */
} topo_write_consistency_t;

typedef enum topo_read_consistency {
    TOPO_READ_ONE = 0,    /* first healthy replica in order */
    TOPO_READ_QUORUM = 1, /* floor(RF/2)+1 replicas, merged */
} topo_read_consistency_t;

typedef enum topo_sharding {
    TOPO_SHARDING_SERIES = 0, /* XXH3-64 of the canonical series key */
    TOPO_SHARDING_METRIC = 1, /* XXH3-64 of the __name__ value */
} topo_sharding_t;

typedef enum topo_wal_durability {
    TOPO_WAL_EVERY_WRITE = 0, /* fsync before every ack (group commit) */
    TOPO_WAL_PERIODIC = 1,    /* fsync every wal_sync_interval_ms */
    TOPO_WAL_OS_DEFAULT = 2,  /* write(2), let the kernel flush */
    TOPO_WAL_NONE = 3,        /* no WAL */
} topo_wal_durability_t;

/* [storage]: per host, not part of the fingerprint. */
typedef struct topo_storage {
    topo_wal_durability_t wal_durability;
    int64_t wal_sync_interval_ms;
    int64_t partition_ms;
    int64_t retention_ms; /* 0 = keep forever */
    uint64_t memtable_max_bytes;
    int64_t memtable_max_age_ms;
    /* limits that keep one request from hurting a node (docs/operations.md) */
    int64_t max_future_ms;             /* samples further ahead of the clock are refused */
    uint64_t head_max_bytes;           /* per node: over it writes get 503 + Retry-After */
    uint64_t head_max_partitions;      /* per shard head: beyond it the oldest flush early */
    uint64_t max_open_files;           /* per node: segment files kept open (LRU) */
    uint64_t max_series;               /* per node total; 0 = no limit */
    uint64_t max_new_series_per_hour;  /* per node; 0 = no limit */
    uint64_t max_new_series_per_write; /* per node per write RPC; 0 = no limit */
    uint64_t query_total_max_bytes;    /* per node: all running queries together */
} topo_storage_t;

/* [replication]: per host, not part of the fingerprint. */
typedef struct topo_replication {
    uint64_t hint_max_bytes;         /* per-peer hint queue budget */
    int64_t hint_max_age_ms;         /* older hints are dropped (counted) */
    int64_t replica_timeout_ms;      /* coordinator -> replica forward deadline */
    int64_t heartbeat_interval_ms;   /* RPC ping; silent for 2 intervals = down */
    uint64_t rpc_inflight_max_bytes; /* per process: RPC frame bytes buffered */
    int64_t rpc_frame_timeout_ms;    /* a started frame must complete within this */
    int64_t repair_interval_ms;      /* anti-entropy pass per local shard (0 = off) */
    uint64_t repair_max_bytes_per_s; /* repair streaming rate limit (bytes received) */
    int read_repair;                 /* 1: quorum reads repair the stale replicas they see */
} topo_replication_t;

/* [security]: users file and TLS settings, per host, file names as written (NULL = unset).
 * Only rpc_tls is part of the fingerprint (and only when on), so a cluster
 * whose processes disagree on it refuses to form. */
#define TOPO_PATH_MAX 1024
typedef struct topo_security {
    const char
        *users_file;  /* users, roles, password and token hashes; NULL: open (not fingerprinted) */
    int metrics_auth; /* 1: /metrics needs the read role (with a users file) */
    const char *tls_cert, *tls_key; /* TLS on every client-facing listener */
    const char *tls_client_ca;      /* clients must present a certificate it signed */
    int rpc_tls;                    /* mutual TLS on every RPC connection */
    const char *rpc_ca;             /* the cluster CA: peers' certificates must chain to it */
    const char *rpc_cert, *rpc_key; /* this process's RPC certificate; "{id}" = node id/"router" */
} topo_security_t;

/* A node (or router) address exactly as written ("host:port" or "[v6]:port"), never resolved. */
typedef struct topo_addr {
    const char *addr; /* as written */
    const char *host; /* without IPv6 brackets: what getaddrinfo() wants */
    uint16_t port;    /* 1..65535 */
} topo_addr_t;

/* [router]: per host, not part of the fingerprint. */
typedef struct topo_router {
    uint64_t max_body_bytes;
    int64_t request_timeout_ms;
    uint64_t query_max_samples;  /* samples + values one query may load */
    uint64_t query_max_series;   /* series one query may select (per node too) */
    topo_addr_t listen;          /* the router's HTTP API when it has no --listen */
    uint64_t query_max_bytes;    /* bytes one query may materialise (router and each node) */
    int64_t idle_timeout_ms;     /* an idle keep-alive connection is closed after this */
    uint64_t max_inflight_bytes; /* request bytes the router buffers at once */
    topo_addr_t resp_listen;     /* the RESP door (host NULL: off) */
    int resp_flushall;           /* resp_flushall = on: FLUSHALL deletes every series */
    topo_addr_t pg_listen;       /* PostgreSQL wire protocol; addr NULL: off (--pg-listen wins) */
} topo_router_t;

/*
 * Parse and validate cluster.ini. On success *out owns a new topology and 0
 * is returned. On failure *out is NULL, err (if errlen > 0) holds one line
 * "FILE:LINE: reason" and the result is ST_ECONFIG (bad content), ST_EIO
 * (cannot read the file), ST_ENOMEM or ST_EINVAL (NULL arguments).
 */
int topo_load_file(const char *path, topo_t **out, char *err, size_t errlen);
/* Same, from a NUL-terminated text; name_for_errors (NULL: "<string>") prefixes messages. */
int topo_load_string(const char *text, const char *name_for_errors, topo_t **out, char *err,
                     size_t errlen);
/* Free a topology (NULL is fine). */
void topo_destroy(topo_t *t);

/* [cluster] */
const char *topo_cluster_name(const topo_t *t);
uint32_t topo_shards(const topo_t *t);
uint32_t topo_replication_factor(const topo_t *t);
topo_write_consistency_t topo_write_consistency(const topo_t *t);
topo_read_consistency_t topo_read_consistency(const topo_t *t);
topo_sharding_t topo_sharding(const topo_t *t);

/* [storage] and [router] (defaults applied). */
const topo_storage_t *topo_storage(const topo_t *t);
const topo_router_t *topo_router(const topo_t *t);
const topo_replication_t *topo_replication(const topo_t *t);
const topo_security_t *topo_security(const topo_t *t);
/* tmpl with "{id}" replaced by id (rpc_cert = /etc/strata/tls/{id}.crt):
 * 0, or ST_ELIMIT when it does not fit in cap. */
int topo_security_path(const char *tmpl, const char *id, char *buf, size_t cap);

/* Nodes, in file order; i < topo_node_count(). */
uint32_t topo_node_count(const topo_t *t);
const char *topo_node_id(const topo_t *t, uint32_t i);
const topo_addr_t *topo_node_rpc(const topo_t *t, uint32_t i);
const topo_addr_t *topo_node_http(const topo_t *t, uint32_t i);
/* Index of the node called `id`, or ST_ENOENT. */
int topo_node_index(const topo_t *t, const char *id);

/* 1 if the file placed shards explicitly (shards / replica_shards keys), else 0. */
int topo_placement_explicit(const topo_t *t);
/* The ordered replica list of `shard` (< topo_shards()): RF node indices. */
const uint32_t *topo_shard_replicas(const topo_t *t, uint32_t shard);
/* Position of `node` in the replica list of `shard` (0 = first), or ST_ENOENT. */
int topo_replica_rank(const topo_t *t, uint32_t shard, uint32_t node);
/* The shards node i holds (leading or following), ascending; returns the count. */
uint32_t topo_node_shards(const topo_t *t, uint32_t node, const uint32_t **OUT_shards);

/* Fingerprint exchanged in the RPC handshake. */
uint64_t topo_fingerprint(const topo_t *t);
/* The same as 16 lowercase hex digits. */
const char *topo_fingerprint_hex(const topo_t *t);
/*
 * The normalized text the fingerprint hashes, snprintf-style: writes at most
 * cap bytes (NUL-terminated when cap > 0) and returns the full length. For
 * finding out why two fingerprints differ.
 */
size_t topo_canonical(const topo_t *t, char *buf, size_t cap);

/*
 * The shard of a series given its canonical (sorted) label set:
 * sharding=series: st_series_hash(labels, n) % shards;
 * sharding=metric: XXH3-64 of the __name__ value % shards (an empty name if
 * there is no __name__ label).
 */
uint32_t topo_shard_of_labels(const topo_t *t, const st_label_t *labels, size_t n);
/*
 * topo_shard_of_labels() for a caller that already holds the series hash:
 * series_hash = st_series_hash(labels) (st_series_hash_from() of the shared
 * part, so a line-protocol point's fields hash their tags once), name = the
 * __name__ value ("" if none). topo_shard_of_labels() is this function.
 */
uint32_t topo_shard_of_hash(const topo_t *t, uint64_t series_hash, const char *name, size_t len);
/* sharding=metric only: the shard that holds every series of metric `name`. */
uint32_t topo_shard_of_metric(const topo_t *t, const char *name, size_t len);

/* The cluster.ini spelling of an enum value ("quorum", "every_write", ...). */
const char *topo_write_consistency_name(topo_write_consistency_t v);
const char *topo_read_consistency_name(topo_read_consistency_t v);
const char *topo_sharding_name(topo_sharding_t v);
const char *topo_wal_durability_name(topo_wal_durability_t v);

/*
 * [downsampling] tiers = AGE:RESOLUTION, ... (e.g. "7d:1m, 90d:1h"): data
 * older than AGE is kept as RESOLUTION buckets. Ages and resolutions
 * ascend, each resolution is a multiple of the previous one, divides the
 * [storage] partition and is shorter than its age. Not in the fingerprint.
 */
#define TOPO_TIERS_MAX 8
typedef struct topo_tier {
    int64_t age_ms;
    int64_t res_ms;
} topo_tier_t;
/* The tiers, finest first; returns how many (0: no downsampling). */
size_t topo_tiers(const topo_t *t, const topo_tier_t **out);

/*
 * [retention] METRIC = DURATION: per-metric overrides of [storage]
 * retention (0 = keep forever). At most TOPO_RETENTION_MAX keys.
 */
#define TOPO_RETENTION_MAX 4096
/* The retention of metric `name` (the override, else [storage] retention). */
int64_t topo_retention_of(const topo_t *t, const char *name, size_t len);
/* Number of overrides. */
size_t topo_retention_overrides(const topo_t *t);
/* Override i < topo_retention_overrides (by name): its metric and duration. */
void topo_retention_override(const topo_t *t, size_t i, const char **metric, int64_t *ms);

/* Human summary for --check: cluster, nodes and addresses, replicas per shard, fingerprint. */
void topo_print(const topo_t *t, FILE *f);

#endif
