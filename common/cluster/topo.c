/*
 * topo — cluster.ini -> an immutable, validated topology; see topo.h and
 * docs/configuration.md (the user-facing reference for everything here).
 *
 * How a file is read
 * ------------------
 * inih drives the parse (ini_parse_stream) through our own line reader,
 * which gives three things inih alone does not:
 *   - the exact line number of the line being handled (one reader call =
 *     one physical line), kept for every key so that checks made after the
 *     whole file is read can still blame a line;
 *   - uniform comments: ';' or '#' at the start of a line, or after
 *     whitespace anywhere in it, starts a comment (the Debian inih build only
 *     knows inline ';');
 *   - strictness inih does not have: leading whitespace is dropped, so an
 *     indented key is a key and never a multi-line continuation; section
 *     headers are parsed here in full (inih truncates them at 50 bytes and
 *     accepts trailing junk), so empty sections are seen too; lines are
 *     "key = value" (inih's "key: value" is refused); a line too long for
 *     inih's buffer is an error, never silently split.
 * The reader hands inih "key = value" lines and blank lines for everything
 * else, so the handler (on_key) only ever sees keys. The first error wins;
 * the reader then reports end-of-input to stop the parse.
 *
 * Keys
 * ----
 * One table (keys[]) describes every key: section, name, type, plain-number
 * unit, range, enum names, default (as it would be written in the file; NULL
 * = required or no default) and whether the fingerprint covers it. Adding a
 * key is one enum id, one table row and an accessor; adding a section is one
 * row in sections[].
 *
 * After the parse, finish() checks what needs the whole file (required keys,
 * nodes, RF <= nodes, explicit placement), computes the replica lists, each
 * node's shard list and the fingerprint.
 */
#include "topo.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "st_err.h"
#include "st_text.h"

/* ------------------------------------------------------------------------ */
/* Sections and keys                                                         */

enum sect {
    SECT_NONE,
    SECT_CLUSTER,
    SECT_STORAGE,
    SECT_ROUTER,
    SECT_REPLICATION,
    SECT_DOWNSAMPLING, /* tiers (parsed by parse_tiers) */
    SECT_RETENTION,    /* METRIC = DURATION (any metric name) */
    SECT_SECURITY,
    SECT_NODE,
    SECT__COUNT
};

/* Sections without an argument; [node "ID"] is parsed separately. */
static const char *const sect_names[SECT__COUNT] = {
    [SECT_NONE] = "",
    [SECT_CLUSTER] = "cluster",
    [SECT_STORAGE] = "storage",
    [SECT_ROUTER] = "router",
    [SECT_REPLICATION] = "replication",
    [SECT_NODE] = "node",
    [SECT_DOWNSAMPLING] = "downsampling",
    [SECT_RETENTION] = "retention",
    [SECT_SECURITY] = "security",
};

enum ktype {
    KT_NAME,      /* 1..TOPO_ID_MAX of [A-Za-z0-9._-] */
    KT_UINT,      /* decimal integer */
    KT_ENUM,      /* one of enums[] */
    KT_DURATION,  /* 100ms, 60s, 5m, 2h, 1d, 1w, 1h30m; plain number * unit ms */
    KT_SIZE,      /* 512KiB, 64MiB, 1GiB; plain number * unit bytes */
    KT_ADDR,      /* host:port or [v6]:port (node rpc/http, [router] listen) */
    KT_SHARDLIST, /* 0-3,8,10-11 (node keys only) */
    KT_PATH,      /* a file name, kept as written ([security]) */
};

enum key_id {
    /* [cluster] */
    K_NAME,
    K_SHARDS,
    K_RF,
    K_WRITE_CONSISTENCY,
    K_READ_CONSISTENCY,
    K_SHARDING,
    /* [storage] */
    K_WAL_DURABILITY,
    K_WAL_SYNC_INTERVAL,
    K_PARTITION,
    K_RETENTION,
    K_MEMTABLE_MAX,
    K_MEMTABLE_MAX_AGE,
    K_MAX_FUTURE,
    K_HEAD_MAX,
    K_HEAD_MAX_PARTITIONS,
    K_MAX_OPEN_FILES,
    K_MAX_SERIES,
    K_MAX_NEW_SERIES_HOUR,
    K_MAX_NEW_SERIES_WRITE,
    K_QUERY_TOTAL_MAX,
    /* [router] */
    K_MAX_BODY_BYTES,
    K_REQUEST_TIMEOUT,
    K_QUERY_MAX_SAMPLES,
    K_QUERY_MAX_SERIES,
    K_ROUTER_LISTEN,
    K_QUERY_MAX_BYTES,
    K_IDLE_TIMEOUT,
    K_MAX_INFLIGHT,
    K_RESP_LISTEN,
    K_RESP_FLUSHALL,
    K_PG_LISTEN,
    /* [replication] */
    K_HINT_MAX_BYTES,
    K_HINT_MAX_AGE,
    K_REPLICA_TIMEOUT,
    K_HEARTBEAT_INTERVAL,
    K_RPC_INFLIGHT_MAX,
    K_RPC_FRAME_TIMEOUT,
    K_REPAIR_INTERVAL,
    K_REPAIR_MAX_MB_PER_S,
    K_READ_REPAIR,
    /* [security] */
    K_USERS_FILE,
    K_METRICS_AUTH,
    /* [node "ID"] */
    K_RPC,
    K_HTTP,
    K_NODE_SHARDS,
    K_NODE_REPLICA_SHARDS,
    /* [security] (TLS) */
    K_TLS_CERT,
    K_TLS_KEY,
    K_TLS_CLIENT_CA,
    K_RPC_TLS,
    K_RPC_CA,
    K_RPC_CERT,
    K_RPC_KEY,
    K__COUNT
};

#define KF_REQUIRED 1u    /* no default: the file must set it */
#define KF_FINGERPRINT 2u /* part of the fingerprint (all [cluster] keys) */

struct key_desc {
    enum sect sect;
    const char *name;
    enum ktype type;
    int64_t unit;     /* KT_DURATION: ms per plain number; KT_SIZE: bytes per plain number */
    int64_t min, max; /* inclusive range of the stored value (count, ms or bytes) */
    const char *const *enums; /* KT_ENUM: NULL-terminated, index = stored value */
    const char *def;          /* default as written in cluster.ini, or NULL */
    unsigned flags;
};

#define MS_S 1000LL
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define MS_D (24 * MS_H)
#define KIB 1024LL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define TIB (1024 * GIB)

static const char *const write_cons_names[] = {"sync", "quorum", "async", NULL};
static const char *const read_cons_names[] = {"one", "quorum", NULL};
static const char *const sharding_names[] = {"series", "metric", NULL};
static const char *const onoff_names[] = {"off", "on", NULL};
static const char *const wal_names[] = {"every_write", "periodic", "os_default", "none", NULL};

static const struct key_desc keys[K__COUNT] = {
    [K_NAME] = {SECT_CLUSTER, "name", KT_NAME, 0, 0, 0, NULL, "strata", KF_FINGERPRINT},
    [K_SHARDS] = {SECT_CLUSTER, "shards", KT_UINT, 0, 1, TOPO_MAX_SHARDS, NULL, NULL,
                  KF_REQUIRED | KF_FINGERPRINT},
    [K_RF] = {SECT_CLUSTER, "replication_factor", KT_UINT, 0, 1, TOPO_MAX_RF, NULL, NULL,
              KF_REQUIRED | KF_FINGERPRINT},
    [K_WRITE_CONSISTENCY] = {SECT_CLUSTER, "write_consistency", KT_ENUM, 0, 0, 0, write_cons_names,
                             "quorum", KF_FINGERPRINT},
    [K_READ_CONSISTENCY] = {SECT_CLUSTER, "read_consistency", KT_ENUM, 0, 0, 0, read_cons_names,
                            "one", KF_FINGERPRINT},
    [K_SHARDING] = {SECT_CLUSTER, "sharding", KT_ENUM, 0, 0, 0, sharding_names, "series",
                    KF_FINGERPRINT},

    [K_WAL_DURABILITY] = {SECT_STORAGE, "wal_durability", KT_ENUM, 0, 0, 0, wal_names, "periodic",
                          0},
    [K_WAL_SYNC_INTERVAL] = {SECT_STORAGE, "wal_sync_interval_ms", KT_DURATION, 1, 1, MS_H, NULL,
                             "100", 0},
    [K_PARTITION] = {SECT_STORAGE, "partition", KT_DURATION, MS_S, MS_M, 366 * MS_D, NULL, "1d", 0},
    [K_RETENTION] = {SECT_STORAGE, "retention", KT_DURATION, MS_S, 0, 100 * 366 * MS_D, NULL, "30d",
                     0},
    [K_MEMTABLE_MAX] = {SECT_STORAGE, "memtable_max_mb", KT_SIZE, MIB, 64 * KIB, 64 * GIB, NULL,
                        "64", 0},
    [K_MEMTABLE_MAX_AGE] = {SECT_STORAGE, "memtable_max_age", KT_DURATION, MS_S, 1, MS_D, NULL,
                            "60s", 0},
    [K_MAX_FUTURE] = {SECT_STORAGE, "max_future", KT_DURATION, MS_S, MS_M, 100 * 366 * MS_D, NULL,
                      "1d", 0},
    [K_HEAD_MAX] = {SECT_STORAGE, "head_max_mb", KT_SIZE, MIB, 16 * MIB, 1024 * GIB, NULL, "1024",
                    0},
    [K_HEAD_MAX_PARTITIONS] = {SECT_STORAGE, "head_max_partitions", KT_UINT, 0, 1, 100000, NULL,
                               "64", 0},
    [K_MAX_OPEN_FILES] = {SECT_STORAGE, "max_open_files", KT_UINT, 0, 16, 10000000, NULL, "1024",
                          0},
    [K_MAX_SERIES] = {SECT_STORAGE, "max_series", KT_UINT, 0, 0, 10000000000LL, NULL, "20000000",
                      0},
    [K_MAX_NEW_SERIES_HOUR] = {SECT_STORAGE, "max_new_series_per_hour", KT_UINT, 0, 0,
                               10000000000LL, NULL, "5000000", 0},
    [K_MAX_NEW_SERIES_WRITE] = {SECT_STORAGE, "max_new_series_per_write", KT_UINT, 0, 0,
                                10000000000LL, NULL, "2000000", 0},
    [K_QUERY_TOTAL_MAX] = {SECT_STORAGE, "query_total_max_mb", KT_SIZE, MIB, 16 * MIB, 1024 * GIB,
                           NULL, "4096", 0},

    [K_MAX_BODY_BYTES] = {SECT_ROUTER, "max_body_bytes", KT_SIZE, 1, KIB, 4 * GIB, NULL, "33554432",
                          0},
    [K_REQUEST_TIMEOUT] = {SECT_ROUTER, "request_timeout", KT_DURATION, MS_S, 1, MS_H, NULL, "30s",
                           0},
    [K_QUERY_MAX_SAMPLES] = {SECT_ROUTER, "query_max_samples", KT_UINT, 0, 1000, 1000000000, NULL,
                             "50000000", 0},
    [K_QUERY_MAX_SERIES] = {SECT_ROUTER, "query_max_series", KT_UINT, 0, 1, 100000000, NULL,
                            "1000000", 0},
    [K_ROUTER_LISTEN] = {SECT_ROUTER, "listen", KT_ADDR, 0, 0, 0, NULL, "127.0.0.1:8086", 0},
    [K_QUERY_MAX_BYTES] = {SECT_ROUTER, "query_max_mb", KT_SIZE, MIB, MIB, 1024 * GIB, NULL, "1024",
                           0},
    [K_IDLE_TIMEOUT] = {SECT_ROUTER, "idle_timeout", KT_DURATION, MS_S, MS_S, 24 * MS_H, NULL,
                        "300s", 0},
    [K_MAX_INFLIGHT] = {SECT_ROUTER, "max_inflight_mb", KT_SIZE, MIB, 16 * MIB, 1024 * GIB, NULL,
                        "2048", 0},
    [K_RESP_LISTEN] = {SECT_ROUTER, "resp_listen", KT_ADDR, 0, 0, 0, NULL, NULL, 0},
    [K_RESP_FLUSHALL] = {SECT_ROUTER, "resp_flushall", KT_ENUM, 0, 0, 0, onoff_names, "off", 0},
    [K_PG_LISTEN] = {SECT_ROUTER, "pg_listen", KT_ADDR, 0, 0, 0, NULL, NULL, 0},

    [K_HINT_MAX_BYTES] = {SECT_REPLICATION, "hint_max_bytes", KT_SIZE, 1, MIB, 16 * TIB, NULL,
                          "1GiB", 0},
    [K_HINT_MAX_AGE] = {SECT_REPLICATION, "hint_max_age", KT_DURATION, MS_S, MS_M, 366 * MS_D, NULL,
                        "24h", 0},
    [K_REPLICA_TIMEOUT] = {SECT_REPLICATION, "replica_timeout", KT_DURATION, MS_S, 50, 10 * MS_M,
                           NULL, "5s", 0},
    [K_HEARTBEAT_INTERVAL] = {SECT_REPLICATION, "heartbeat_interval", KT_DURATION, MS_S, 50, MS_M,
                              NULL, "1s", 0},
    [K_RPC_INFLIGHT_MAX] = {SECT_REPLICATION, "rpc_inflight_max_mb", KT_SIZE, MIB, 16 * MIB,
                            1024 * GIB, NULL, "2048", 0},
    [K_RPC_FRAME_TIMEOUT] = {SECT_REPLICATION, "rpc_frame_timeout", KT_DURATION, MS_S, 100, MS_H,
                             NULL, "30s", 0},
    [K_REPAIR_INTERVAL] = {SECT_REPLICATION, "repair_interval", KT_DURATION, MS_S, 0, 7 * MS_D,
                           NULL, "10m", 0},
    [K_REPAIR_MAX_MB_PER_S] = {SECT_REPLICATION, "repair_max_mb_per_s", KT_SIZE, MIB, MIB, 64 * GIB,
                               NULL, "32", 0},
    [K_READ_REPAIR] = {SECT_REPLICATION, "read_repair", KT_ENUM, 0, 0, 0, onoff_names, "on", 0},

    [K_USERS_FILE] = {SECT_SECURITY, "users_file", KT_PATH, 0, 0, 0, NULL, NULL, 0},
    [K_METRICS_AUTH] = {SECT_SECURITY, "metrics_auth", KT_ENUM, 0, 0, 0, onoff_names, "on", 0},

    [K_RPC] = {SECT_NODE, "rpc", KT_ADDR, 0, 0, 0, NULL, NULL, KF_REQUIRED},
    [K_HTTP] = {SECT_NODE, "http", KT_ADDR, 0, 0, 0, NULL, NULL, KF_REQUIRED},
    [K_NODE_SHARDS] = {SECT_NODE, "shards", KT_SHARDLIST, 0, 0, 0, NULL, NULL, 0},
    [K_NODE_REPLICA_SHARDS] = {SECT_NODE, "replica_shards", KT_SHARDLIST, 0, 0, 0, NULL, NULL, 0},

    [K_TLS_CERT] = {SECT_SECURITY, "tls_cert", KT_PATH, 0, 0, 0, NULL, NULL, 0},
    [K_TLS_KEY] = {SECT_SECURITY, "tls_key", KT_PATH, 0, 0, 0, NULL, NULL, 0},
    [K_TLS_CLIENT_CA] = {SECT_SECURITY, "tls_client_ca", KT_PATH, 0, 0, 0, NULL, NULL, 0},
    /* in the fingerprint only when on, so clusters without it keep theirs */
    [K_RPC_TLS] = {SECT_SECURITY, "rpc_tls", KT_ENUM, 0, 0, 0, onoff_names, "off", KF_FINGERPRINT},
    [K_RPC_CA] = {SECT_SECURITY, "rpc_ca", KT_PATH, 0, 0, 0, NULL, NULL, 0},
    [K_RPC_CERT] = {SECT_SECURITY, "rpc_cert", KT_PATH, 0, 0, 0, NULL, NULL, 0},
    [K_RPC_KEY] = {SECT_SECURITY, "rpc_key", KT_PATH, 0, 0, 0, NULL, NULL, 0},
};

/* ------------------------------------------------------------------------ */
/* The object                                                                */

struct range {
    uint32_t lo, hi;
};

struct node {
    char *id;
    uint32_t line;               /* of the [node "ID"] header */
    uint32_t key_line[K__COUNT]; /* line of each node key, 0 = not set */
    topo_addr_t addr[2];         /* [0] rpc, [1] http; addr == NULL until set */
    struct range *list[2];       /* [0] shards (leads), [1] replica_shards (follows) */
    uint32_t nlist[2];
    uint32_t *held; /* ascending shards held, into topo.held */
    uint32_t nheld;
};

struct topo {
    char name[TOPO_ID_MAX + 1];
    int64_t val[K__COUNT]; /* numeric and enum settings */
    uint32_t shards, rf;
    topo_storage_t storage;
    topo_router_t router;
    topo_replication_t repl;
    topo_security_t sec;
    char *path[K__COUNT]; /* KT_PATH values */
    struct node *nodes;
    uint32_t nnodes, cap;
    int explicit_placement;
    uint32_t *replicas; /* shards * rf: replica list of shard s at s * rf */
    uint32_t *held;     /* shards * rf: every node's shard list, back to back */
    uint64_t fp;
    char fp_hex[17];
    topo_tier_t tiers[TOPO_TIERS_MAX]; /* [downsampling] */
    size_t ntiers;
    struct ret_override { /* [retention], sorted by name after parsing */
        char *name;
        int64_t ms;
    } * ret;
    size_t nret;
};

struct parse {
    topo_t *t;
    const char *file;      /* name for messages */
    const char *pos, *end; /* reader position in the text */
    uint32_t lineno;
    enum sect sect; /* current section */
    uint32_t node;  /* current node when sect == SECT_NODE */
    uint32_t sect_line[SECT__COUNT];
    uint32_t key_line[K__COUNT]; /* non-node keys */
    uint32_t tiers_line;         /* [downsampling] tiers */
    char *err;
    size_t errlen;
    int rc; /* 0 until the first error */
};

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

static int fail(struct parse *p, uint32_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error as "FILE:LINE: reason" (or "FILE: reason"); returns 0 for inih. */
static int fail(struct parse *p, uint32_t line, const char *fmt, ...)
{
    if (p->rc)
        return 0;
    p->rc = ST_ECONFIG;
    if (!p->err || !p->errlen)
        return 0;
    int n = line ? snprintf(p->err, p->errlen, "%s:%" PRIu32 ": ", p->file, line)
                 : snprintf(p->err, p->errlen, "%s: ", p->file);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    for (char *c = p->err; *c; c++) /* one line, printable */
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return 0;
}

static int fail_nomem(struct parse *p)
{
    fail(p, 0, "out of memory");
    p->rc = ST_ENOMEM;
    return 0;
}

/* A user string made safe to quote in a message: printable ASCII, at most ~60 bytes. */
static const char *clean(char *buf, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 4 < cap && i < 60; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                    */

static int is_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int valid_id(const char *s, size_t n)
{
    if (n == 0 || n > TOPO_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_id_char(s[i]))
            return 0;
    return 1;
}

/* Parse leading decimal digits (at least one) up to `cap`; returns the end or NULL. */
static const char *parse_digits(const char *s, int64_t cap, int64_t *out)
{
    int64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (cap - (*p - '0')) / 10)
            return NULL;
        v = v * 10 + (*p - '0');
    }
    if (p == s)
        return NULL;
    *out = v;
    return p;
}

#define DURATION_CAP (1000LL * 366 * MS_D) /* nothing longer than ~1000 years parses */

/* "100ms", "60s", "5m", "2h", "1d", "1w", "1h30m" (units in any order, no
 * years), or a plain number times unit_ms. */
static int parse_duration(const char *s, int64_t unit_ms, int64_t *out)
{
    int64_t n;
    const char *p = parse_digits(s, DURATION_CAP, &n);
    if (!p)
        return -1;
    if (*p == '\0') {
        if (n > DURATION_CAP / unit_ms)
            return -1;
        *out = n * unit_ms;
        return 0;
    }
    size_t len = strlen(s), used;
    if (st_duration_parse(s, len, 0, DURATION_CAP, out, &used) || used != len)
        return -1;
    return 0;
}

/* "33554432" (a plain number times unit bytes), "512KiB", "64MiB", "1GiB", "1TiB", "100B". */
static int parse_size(const char *s, int64_t unit, int64_t *out)
{
    static const struct {
        const char *suffix;
        int64_t bytes;
    } units[] = {{"", 0}, {"B", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", GIB}, {"TiB", TIB}};
    int64_t n;
    const char *p = parse_digits(s, INT64_MAX / 2, &n);
    if (!p)
        return -1;
    while (*p == ' ' || *p == '\t') /* "64 MiB" */
        p++;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        if (strcmp(p, units[u].suffix) == 0) {
            int64_t mult = units[u].bytes ? units[u].bytes : unit;
            if (n > (INT64_MAX / 2) / mult)
                return -1;
            *out = n * mult;
            return 0;
        }
    }
    return -1;
}

static const char *fmt_size(char *buf, size_t cap, int64_t bytes)
{
    static const struct {
        const char *suffix;
        int64_t bytes;
    } units[] = {{"TiB", TIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}, {"B", 1}};
    size_t u = 0;
    while (bytes == 0 ? units[u].bytes != 1 : bytes % units[u].bytes != 0)
        u++;
    snprintf(buf, cap, "%" PRId64 "%s", bytes / units[u].bytes, units[u].suffix);
    return buf;
}

/* What a key accepts, for "bad value" messages. */
static const char *describe(char *buf, size_t cap, const struct key_desc *k)
{
    char a[32], b[32];
    size_t n = 0;
    switch (k->type) {
    case KT_NAME:
        snprintf(buf, cap, "1 to %d characters of A-Z a-z 0-9 . _ -", TOPO_ID_MAX);
        break;
    case KT_UINT:
        snprintf(buf, cap, "an integer from %" PRId64 " to %" PRId64, k->min, k->max);
        break;
    case KT_ENUM:
        buf[0] = '\0';
        for (size_t i = 0; k->enums[i] && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? " | " : "one of ", k->enums[i]);
        break;
    case KT_DURATION:
        snprintf(buf, cap,
                 "a duration from %s to %s such as 100ms, 60s, 5m, 2h, 1d, 1w (a plain number is "
                 "in %s)",
                 st_fmt_duration_one(a, sizeof a, k->min), st_fmt_duration_one(b, sizeof b, k->max),
                 k->unit == 1 ? "milliseconds" : "seconds");
        break;
    case KT_SIZE:
        snprintf(buf, cap,
                 "a size from %s to %s: a plain number (in %s) or one with B, KiB, MiB, GiB, TiB",
                 fmt_size(a, sizeof a, k->min), fmt_size(b, sizeof b, k->max),
                 k->unit == 1 ? "bytes" : "MiB");
        break;
    case KT_ADDR:
        snprintf(buf, cap, "host:port (a DNS name, an IPv4 address or [IPv6]; port 1-65535)");
        break;
    case KT_SHARDLIST:
        snprintf(buf, cap, "a list of shards and ranges such as 0-3,8,10-11");
        break;
    case KT_PATH:
        snprintf(buf, cap, "a file name (at most %d bytes)", TOPO_PATH_MAX);
        break;
    }
    return buf;
}

static int valid_host(const char *h, size_t n, int bracketed)
{
    if (n == 0 || n > TOPO_HOST_MAX)
        return 0;
    int colon = 0, zone = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!bracketed) {
            if (!is_id_char(c))
                return 0;
        } else if (zone) {
            if (!is_id_char(c))
                return 0;
        } else if (c == '%' && i > 0) {
            zone = 1;
            if (i + 1 == n)
                return 0;
        } else if (c == ':') {
            colon = 1;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                     c == '.')) {
            return 0;
        }
    }
    return bracketed ? colon : 1;
}

/* host:port or [v6]:port into a (the strings are allocated); -1 bad, ST_ENOMEM. */
static int parse_addr(const char *s, topo_addr_t *a)
{
    const char *h = s, *hend, *port;
    int bracketed = s[0] == '[';
    if (bracketed) {
        h = s + 1;
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            return -1;
        port = hend + 2;
    } else {
        hend = strrchr(s, ':');
        if (!hend)
            return -1;
        port = hend + 1;
    }
    int64_t p;
    const char *pe = parse_digits(port, 65535, &p);
    if (!pe || *pe || p == 0 || !valid_host(h, (size_t)(hend - h), bracketed))
        return -1;
    a->addr = strdup(s);
    a->host = strndup(h, (size_t)(hend - h));
    if (!a->addr || !a->host)
        return ST_ENOMEM;
    a->port = (uint16_t)p;
    return 0;
}

static void free_addr(topo_addr_t *a)
{
    free((char *)a->addr);
    free((char *)a->host);
    a->addr = a->host = NULL;
}

static int same_addr(const topo_addr_t *a, const topo_addr_t *b)
{
    return a->addr && b->addr && a->port == b->port && strcasecmp(a->host, b->host) == 0;
}

/* "0-3, 8,10-11" into ranges (allocated); -1 bad, ST_ENOMEM. Bounds are checked later. */
static int parse_shardlist(const char *s, struct range **out, uint32_t *nout)
{
    size_t n = 1;
    for (const char *c = s; *c; c++)
        n += *c == ',';
    struct range *r = calloc(n, sizeof *r);
    if (!r)
        return ST_ENOMEM;
    size_t i = 0;
    const char *p = s;
    for (;;) {
        int64_t lo, hi;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!(p = parse_digits(p, UINT32_MAX, &lo)))
            goto bad;
        while (*p == ' ' || *p == '\t')
            p++;
        hi = lo;
        if (*p == '-') {
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            if (!(p = parse_digits(p, UINT32_MAX, &hi)) || hi < lo)
                goto bad;
            while (*p == ' ' || *p == '\t')
                p++;
        }
        r[i].lo = (uint32_t)lo;
        r[i].hi = (uint32_t)hi;
        i++;
        if (*p == '\0')
            break;
        if (*p++ != ',')
            goto bad;
    }
    *out = r;
    *nout = (uint32_t)i;
    return 0;
bad:
    free(r);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Sections and keys from the file                                           */

static struct node *cur_node(struct parse *p)
{
    return &p->t->nodes[p->node];
}

static int add_node(struct parse *p, const char *id, size_t len)
{
    topo_t *t = p->t;
    char qid[80];
    for (uint32_t i = 0; i < t->nnodes; i++)
        if (strlen(t->nodes[i].id) == len && memcmp(t->nodes[i].id, id, len) == 0)
            return fail(p, p->lineno, "duplicate node id '%s' (first at line %" PRIu32 ")",
                        clean(qid, sizeof qid, t->nodes[i].id), t->nodes[i].line);
    if (t->nnodes == TOPO_MAX_NODES)
        return fail(p, p->lineno, "too many nodes (at most %d)", TOPO_MAX_NODES);
    if (t->nnodes == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 8;
        struct node *nn = realloc(t->nodes, cap * sizeof *nn);
        if (!nn)
            return fail_nomem(p);
        t->nodes = nn;
        t->cap = cap;
    }
    struct node *nd = &t->nodes[t->nnodes];
    memset(nd, 0, sizeof *nd);
    if (!(nd->id = strndup(id, len)))
        return fail_nomem(p);
    nd->line = p->lineno;
    p->node = t->nnodes++;
    p->sect = SECT_NODE;
    return 1;
}

/* A header line "[...]" (comment and outer whitespace already removed). */
static int on_section(struct parse *p, const char *s, size_t n)
{
    char q[80], tmp[128];
    const char *close = memchr(s, ']', n);
    if (!close)
        return fail(p, p->lineno, "section header without a closing ']'");
    if (close != s + n - 1)
        return fail(p, p->lineno, "unexpected text after ']' in a section header");
    const char *in = s + 1, *ie = close;
    while (in < ie && (*in == ' ' || *in == '\t'))
        in++;
    while (ie > in && (ie[-1] == ' ' || ie[-1] == '\t'))
        ie--;
    size_t len = (size_t)(ie - in);
    snprintf(tmp, sizeof tmp, "%.*s", (int)(len < 100 ? len : 100), in);
    if (len >= 4 && memcmp(in, "node", 4) == 0 && (len == 4 || in[4] == ' ' || in[4] == '\t')) {
        const char *id = in + 4;
        while (id < ie && (*id == ' ' || *id == '\t'))
            id++;
        size_t idlen = (size_t)(ie - id);
        if (idlen < 2 || id[0] != '"' || id[idlen - 1] != '"')
            return fail(p, p->lineno, "bad section [%s]: expected [node \"ID\"] with a quoted id",
                        clean(q, sizeof q, tmp));
        if (!valid_id(id + 1, idlen - 2))
            return fail(p, p->lineno,
                        "bad node id in [%s]: expected 1 to %d characters of A-Z a-z 0-9 . _ -",
                        clean(q, sizeof q, tmp), TOPO_ID_MAX);
        return add_node(p, id + 1, idlen - 2);
    }
    for (int sc = SECT_CLUSTER; sc < SECT_NODE; sc++) {
        if (strlen(sect_names[sc]) == len && memcmp(sect_names[sc], in, len) == 0) {
            if (p->sect_line[sc])
                return fail(p, p->lineno, "duplicate section [%s] (first at line %" PRIu32 ")",
                            sect_names[sc], p->sect_line[sc]);
            p->sect_line[sc] = p->lineno;
            p->sect = (enum sect)sc;
            return 1;
        }
    }
    return fail(p, p->lineno,
                "unknown section [%s] (expected [cluster], [storage], [router], [replication], "
                "[security], [downsampling], [retention] or [node \"ID\"])",
                clean(q, sizeof q, tmp));
}

/* Store `value` for key k (current section); also used for the defaults. */
static int set_value(struct parse *p, enum key_id k, const char *value)
{
    topo_t *t = p->t;
    const struct key_desc *d = &keys[k];
    char qv[80], exp[256], qa[80], qb[80];
    int64_t v = 0;
    int rc = 0;
    switch (d->type) {
    case KT_NAME:
        if (!valid_id(value, strlen(value)))
            goto bad;
        strcpy(t->name, value);
        return 1;
    case KT_UINT: {
        const char *e = parse_digits(value, INT64_MAX, &v);
        if (!e || *e || v < d->min || v > d->max)
            goto bad;
        break;
    }
    case KT_ENUM:
        for (v = 0; d->enums[v]; v++)
            if (strcmp(d->enums[v], value) == 0)
                break;
        if (!d->enums[v])
            goto bad;
        break;
    case KT_DURATION:
        if (parse_duration(value, d->unit, &v) || v < d->min || v > d->max)
            goto bad;
        break;
    case KT_SIZE:
        if (parse_size(value, d->unit, &v) || v < d->min || v > d->max)
            goto bad;
        break;
    case KT_ADDR: {
        if (k == K_ROUTER_LISTEN || k == K_RESP_LISTEN ||
            k == K_PG_LISTEN) { /* one per file: replaces the default */
            topo_addr_t *dst = k == K_RESP_LISTEN ? &t->router.resp_listen
                               : k == K_PG_LISTEN ? &t->router.pg_listen
                                                  : &t->router.listen;
            topo_addr_t a = {0};
            if ((rc = parse_addr(value, &a)) != 0) {
                free_addr(&a);
                if (rc == ST_ENOMEM)
                    return fail_nomem(p);
                goto bad;
            }
            free_addr(dst);
            *dst = a;
            return 1;
        }
        struct node *nd = cur_node(p);
        int which = k == K_HTTP;
        topo_addr_t *a = &nd->addr[which];
        if ((rc = parse_addr(value, a)) == ST_ENOMEM)
            return fail_nomem(p);
        if (rc)
            goto bad;
        if (same_addr(a, &nd->addr[!which]))
            return fail(p, p->lineno, "node '%s': rpc and http are the same address '%s'",
                        clean(qa, sizeof qa, nd->id), clean(qv, sizeof qv, value));
        for (uint32_t i = 0; i + 1 < t->nnodes; i++)
            for (int w = 0; w < 2; w++)
                if (same_addr(a, &t->nodes[i].addr[w]))
                    return fail(p, p->lineno,
                                "duplicate address '%s': %s of node '%s' is already the %s "
                                "address of node '%s' (line %" PRIu32 ")",
                                clean(qv, sizeof qv, value), keys[k].name,
                                clean(qa, sizeof qa, nd->id), w ? "http" : "rpc",
                                clean(qb, sizeof qb, t->nodes[i].id),
                                t->nodes[i].key_line[w ? K_HTTP : K_RPC]);
        return 1;
    }
    case KT_PATH:
        if (!value[0] || strlen(value) > TOPO_PATH_MAX)
            goto bad;
        free(t->path[k]);
        if (!(t->path[k] = strdup(value)))
            return fail_nomem(p);
        return 1;
    case KT_SHARDLIST: {
        struct node *nd = cur_node(p);
        int which = k == K_NODE_REPLICA_SHARDS;
        if ((rc = parse_shardlist(value, &nd->list[which], &nd->nlist[which])) == ST_ENOMEM)
            return fail_nomem(p);
        if (rc)
            goto bad;
        return 1;
    }
    }
    t->val[k] = v;
    return 1;
bad:
    return fail(p, p->lineno, "bad value '%s' for %s: expected %s", clean(qv, sizeof qv, value),
                d->name, describe(exp, sizeof exp, d));
}

/* One duration of [downsampling] / [retention] at s[0..n), whole. */
static int lifecycle_duration(struct parse *p, const char *s, size_t n, const char *what,
                              int64_t *ms)
{
    char q[80], tmp[100];
    size_t used = 0;
    if (n == 1 && s[0] == '0') {
        *ms = 0;
        return 0;
    }
    int rc = st_duration_parse(s, n, 0, 100 * 366 * MS_D, ms, &used);
    if (rc == 0 && used == n)
        return 0;
    snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 90 ? n : 90), s);
    fail(p, p->lineno, "bad %s '%s': expected a duration such as 90s, 1m, 1h, 7d", what,
         clean(q, sizeof q, tmp));
    return -1;
}

/* tiers = AGE:RES, AGE:RES, ... */
static int parse_tiers(struct parse *p, const char *v)
{
    topo_t *t = p->t;
    t->ntiers = 0;
    const char *s = v;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        const char *e = strchr(s, ',');
        if (!e)
            e = s + strlen(s);
        const char *c = memchr(s, ':', (size_t)(e - s));
        const char *te = e;
        while (te > s && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if (!c || c == s || c + 1 >= te)
            return fail(p, p->lineno, "bad tier '%.*s': expected AGE:RESOLUTION such as 7d:1m",
                        (int)((te - s) < 60 ? (te - s) : 60), s);
        if (t->ntiers == TOPO_TIERS_MAX)
            return fail(p, p->lineno, "more than %d tiers", TOPO_TIERS_MAX);
        topo_tier_t *ti = &t->tiers[t->ntiers];
        if (lifecycle_duration(p, s, (size_t)(c - s), "tier age", &ti->age_ms) ||
            lifecycle_duration(p, c + 1, (size_t)(te - c - 1), "tier resolution", &ti->res_ms))
            return 0;
        if (ti->res_ms < 1000 || ti->res_ms >= ti->age_ms)
            return fail(p, p->lineno,
                        "tier %zu: resolution must be at least 1s and shorter than its age",
                        t->ntiers + 1);
        if (t->ntiers) {
            const topo_tier_t *pv = ti - 1;
            if (ti->age_ms <= pv->age_ms || ti->res_ms <= pv->res_ms)
                return fail(p, p->lineno, "tier %zu: ages and resolutions must ascend",
                            t->ntiers + 1);
            if (ti->res_ms % pv->res_ms)
                return fail(p, p->lineno,
                            "tier %zu: resolution must be a multiple of the previous tier's",
                            t->ntiers + 1);
        }
        t->ntiers++;
        s = *e ? e + 1 : e;
    }
    if (t->ntiers == 0)
        return fail(p, p->lineno, "tiers is empty (remove it, or list AGE:RESOLUTION pairs)");
    return 1;
}

/* A key of [downsampling] or [retention]. */
static int on_lifecycle_key(struct parse *p, const char *name, const char *value)
{
    topo_t *t = p->t;
    char qn[80];
    if (p->sect == SECT_DOWNSAMPLING) {
        if (strcmp(name, "tiers") != 0)
            return fail(p, p->lineno, "unknown key '%s' in [downsampling] (expected tiers)",
                        clean(qn, sizeof qn, name));
        if (p->tiers_line)
            return fail(p, p->lineno, "duplicate key 'tiers' in [downsampling]");
        p->tiers_line = p->lineno;
        return parse_tiers(p, value);
    }
    size_t nl = strlen(name);
    if (!st_prom_metric_name_ok(name, nl))
        return fail(p, p->lineno, "bad metric name '%s' in [retention]",
                    clean(qn, sizeof qn, name));
    for (size_t i = 0; i < t->nret; i++)
        if (strcmp(t->ret[i].name, name) == 0)
            return fail(p, p->lineno, "duplicate key '%s' in [retention]",
                        clean(qn, sizeof qn, name));
    if (t->nret == TOPO_RETENTION_MAX)
        return fail(p, p->lineno, "more than %d keys in [retention]", TOPO_RETENTION_MAX);
    int64_t ms;
    if (lifecycle_duration(p, value, strlen(value), "retention", &ms))
        return 0;
    struct ret_override *r = realloc(t->ret, (t->nret + 1) * sizeof *r);
    if (!r)
        return fail(p, p->lineno, "out of memory");
    t->ret = r;
    if (!(r[t->nret].name = strdup(name)))
        return fail(p, p->lineno, "out of memory");
    r[t->nret++].ms = ms;
    return 1;
}

/* inih handler: one "key = value" line of the current section. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    char qn[80], qs[80];
    (void)section; /* ours (p->sect) is exact; inih's is truncated at 50 bytes */
    if (p->rc)
        return 0;
    if (p->sect == SECT_NONE)
        return fail(p, p->lineno,
                    "key '%s' is outside any section (put it under [cluster], [storage], "
                    "[router] or [node \"ID\"])",
                    clean(qn, sizeof qn, name));
    if (p->sect == SECT_DOWNSAMPLING || p->sect == SECT_RETENTION)
        return on_lifecycle_key(p, name, value);
    int k = 0;
    for (; k < K__COUNT; k++)
        if (keys[k].sect == p->sect && strcmp(keys[k].name, name) == 0)
            break;
    if (p->sect == SECT_NODE)
        snprintf(qs, sizeof qs, "[node \"%s\"]", cur_node(p)->id);
    else
        snprintf(qs, sizeof qs, "[%s]", sect_names[p->sect]);
    if (k == K__COUNT)
        return fail(p, p->lineno, "unknown key '%s' in %s", clean(qn, sizeof qn, name), qs);
    uint32_t *line = p->sect == SECT_NODE ? &cur_node(p)->key_line[k] : &p->key_line[k];
    if (*line)
        return fail(p, p->lineno, "duplicate key '%s' in %s (first set at line %" PRIu32 ")",
                    keys[k].name, qs, *line);
    *line = p->lineno;
    return set_value(p, (enum key_id)k, value);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * inih line reader: one physical line per call (so p->lineno is the line
 * being handled). Section headers, comments and blank lines are consumed
 * here and passed on as empty lines; key lines are passed on cleaned.
 */
static char *reader(char *str, int num, void *stream)
{
    struct parse *p = stream;
    if (p->rc || p->pos >= p->end)
        return NULL;
    const char *s = p->pos, *nl = memchr(s, '\n', (size_t)(p->end - s));
    const char *e = nl ? nl : p->end;
    p->pos = nl ? nl + 1 : p->end;
    p->lineno++;
    if (p->lineno == 1 && e - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        s += 3; /* UTF-8 byte order mark */
    while (s < e && is_blank(*s))
        s++;
    for (const char *c = s; c < e; c++) {
        if ((*c == ';' || *c == '#') && (c == s || is_blank(c[-1]))) {
            e = c;
            break;
        }
    }
    while (e > s && is_blank(e[-1]))
        e--;
    size_t len = (size_t)(e - s);
    if (len && *s == '[') {
        on_section(p, s, len);
        len = 0;
    } else if (len) {
        const char *eq = memchr(s, '=', len), *colon = memchr(s, ':', len);
        if (!eq)
            fail(p, p->lineno, "expected 'key = value' or a [section] header");
        else if (colon && colon < eq)
            fail(p, p->lineno, "expected 'key = value' (a ':' comes before the '=')");
        else if (eq == s)
            fail(p, p->lineno, "missing key name before '='");
        else if (num < 3 || len + 2 > (size_t)num)
            fail(p, p->lineno, "line too long (at most %d bytes, comments not counted)", num - 2);
    }
    if (p->rc)
        return NULL;
    memcpy(str, s, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

/* ------------------------------------------------------------------------ */
/* Whole-file checks, placement, fingerprint                                 */

static const char *node_id(const topo_t *t, uint32_t i)
{
    return t->nodes[i].id;
}

static int explicit_placement(struct parse *p)
{
    topo_t *t = p->t;
    const uint32_t none = UINT32_MAX;
    uint32_t S = t->shards, R = t->rf;
    uint32_t *stamp = calloc(S, sizeof *stamp), *total = calloc(S, sizeof *total);
    uint32_t *leader = malloc((size_t)S * sizeof *leader);
    uint32_t *fol = malloc((size_t)S * R * sizeof *fol);
    char qa[80], qb[80], list[256];
    if (!stamp || !total || !leader || !fol) {
        fail_nomem(p);
        goto out;
    }
    for (uint32_t s = 0; s < S; s++)
        leader[s] = none;
    for (uint32_t i = 0; i < t->nnodes && !p->rc; i++) {
        struct node *nd = &t->nodes[i];
        for (int w = 0; w < 2 && !p->rc; w++) {
            uint32_t line = nd->key_line[w ? K_NODE_REPLICA_SHARDS : K_NODE_SHARDS];
            for (uint32_t r = 0; r < nd->nlist[w] && !p->rc; r++) {
                struct range g = nd->list[w][r];
                if (g.hi >= S) {
                    if (g.lo == g.hi)
                        fail(p, line, "shard %" PRIu32 " is out of range: shards are 0-%" PRIu32,
                             g.lo, S - 1);
                    else
                        fail(p, line,
                             "shard range %" PRIu32 "-%" PRIu32
                             " is out of range: shards are 0-%" PRIu32,
                             g.lo, g.hi, S - 1);
                    break;
                }
                for (uint32_t s = g.lo; s <= g.hi && !p->rc; s++) {
                    if (stamp[s] == i + 1) {
                        fail(p, line,
                             "node '%s' lists shard %" PRIu32
                             " more than once (in shards / replica_shards)",
                             clean(qa, sizeof qa, nd->id), s);
                        break;
                    }
                    stamp[s] = i + 1;
                    if (w == 0 && leader[s] != none) {
                        fail(p, line,
                             "shard %" PRIu32 " is led by both '%s' and '%s' (a shard has exactly "
                             "one node listing it in shards)",
                             s, clean(qa, sizeof qa, node_id(t, leader[s])),
                             clean(qb, sizeof qb, nd->id));
                        break;
                    }
                    uint32_t nf = total[s] - (leader[s] != none);
                    if (total[s] == R) {
                        size_t n = 0;
                        list[0] = '\0';
                        if (leader[s] != none)
                            n += (size_t)snprintf(list, sizeof list, "%s", node_id(t, leader[s]));
                        for (uint32_t j = 0; j < nf && n < sizeof list; j++)
                            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "",
                                                  node_id(t, fol[(size_t)s * R + j]));
                        fail(p, line,
                             "shard %" PRIu32 " has more than replication_factor (%" PRIu32
                             ") replicas: %s and %s",
                             s, R, clean(qb, sizeof qb, list), clean(qa, sizeof qa, nd->id));
                        break;
                    }
                    if (w == 0)
                        leader[s] = i;
                    else
                        fol[(size_t)s * R + nf] = i;
                    total[s]++;
                }
            }
        }
    }
    for (uint32_t s = 0; s < S && !p->rc; s++) {
        if (leader[s] == none) {
            fail(p, 0, "shard %" PRIu32 " has no leader: no node lists it in shards", s);
        } else if (total[s] != R) {
            size_t n = (size_t)snprintf(list, sizeof list, "%s", node_id(t, leader[s]));
            for (uint32_t j = 0; j + 1 < total[s] && n < sizeof list; j++)
                n += (size_t)snprintf(list + n, sizeof list - n, ", %s",
                                      node_id(t, fol[(size_t)s * R + j]));
            fail(p, 0,
                 "shard %" PRIu32 " has %" PRIu32
                 " replica%s (%s) but replication_factor is %" PRIu32,
                 s, total[s], total[s] == 1 ? "" : "s", clean(qa, sizeof qa, list), R);
        } else {
            t->replicas[(size_t)s * R] = leader[s];
            memcpy(&t->replicas[(size_t)s * R + 1], &fol[(size_t)s * R], (R - 1) * sizeof *fol);
        }
    }
out:
    free(stamp);
    free(total);
    free(leader);
    free(fol);
    return p->rc ? 0 : 1;
}

/* Where the canonical text goes: a hash state and/or a buffer. */
struct sink {
    XXH3_state_t *st;
    char *buf;
    size_t cap, len;
};

static void emit(struct sink *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct sink *k, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1; /* cannot happen: ids <= 64, hosts <= 253 */
    if (k->st)
        XXH3_64bits_update(k->st, line, (size_t)n);
    if (k->len < k->cap)
        memcpy(k->buf + k->len, line, (size_t)n < k->cap - k->len ? (size_t)n : k->cap - k->len);
    k->len += (size_t)n;
}

/* The effective value of a non-node key, as it would be written in the file. */
static const char *fmt_value(const topo_t *t, enum key_id k, char *buf, size_t cap)
{
    const struct key_desc *d = &keys[k];
    switch (d->type) {
    case KT_NAME:
        return t->name;
    case KT_ENUM:
        return d->enums[t->val[k]];
    case KT_DURATION:
        return st_fmt_duration_one(buf, cap, t->val[k]);
    case KT_SIZE:
        return fmt_size(buf, cap, t->val[k]);
    case KT_PATH:
        return t->sec.users_file ? t->sec.users_file : "";
    default:
        snprintf(buf, cap, "%" PRId64, t->val[k]);
        return buf;
    }
}

static void canonical(const topo_t *t, struct sink *k)
{
    char b[64], host[TOPO_HOST_MAX + 1];
    emit(k, "strata-topology 1\n");
    for (int i = 0; i < K__COUNT; i++)
        if ((keys[i].flags & KF_FINGERPRINT) && !(i == K_RPC_TLS && !t->val[i]))
            emit(k, "%s.%s=%s\n", sect_names[keys[i].sect], keys[i].name,
                 fmt_value(t, (enum key_id)i, b, sizeof b));
    for (uint32_t i = 0; i < t->nnodes; i++) {
        const topo_addr_t *a = &t->nodes[i].addr[0];
        size_t j = 0;
        for (; a->host[j]; j++)
            host[j] =
                (a->host[j] >= 'A' && a->host[j] <= 'Z') ? (char)(a->host[j] + 32) : a->host[j];
        host[j] = '\0';
        int v6 = strchr(host, ':') != NULL;
        emit(k, "node %s rpc=%s%s%s:%u\n", t->nodes[i].id, v6 ? "[" : "", host, v6 ? "]" : "",
             (unsigned)a->port);
    }
    for (uint32_t s = 0; s < t->shards; s++) {
        emit(k, "shard %" PRIu32, s);
        for (uint32_t r = 0; r < t->rf; r++)
            emit(k, " %s", t->nodes[t->replicas[(size_t)s * t->rf + r]].id);
        emit(k, "\n");
    }
}

static int ret_cmp(const void *a, const void *b);
/* [security]: TLS keys that only make sense together. */
static int security_check(struct parse *p)
{
    topo_t *t = p->t;
    topo_security_t *sec = &t->sec;
    sec->users_file = t->path[K_USERS_FILE];
    sec->tls_cert = t->path[K_TLS_CERT];
    sec->tls_key = t->path[K_TLS_KEY];
    sec->tls_client_ca = t->path[K_TLS_CLIENT_CA];
    sec->rpc_tls = t->val[K_RPC_TLS] != 0;
    sec->rpc_ca = t->path[K_RPC_CA];
    sec->rpc_cert = t->path[K_RPC_CERT];
    sec->rpc_key = t->path[K_RPC_KEY];
    if (!sec->tls_cert != !sec->tls_key)
        return fail(p, p->key_line[sec->tls_cert ? K_TLS_CERT : K_TLS_KEY],
                    "[security] tls_cert and tls_key go together (set both or neither)");
    if (sec->tls_client_ca && !sec->tls_cert)
        return fail(p, p->key_line[K_TLS_CLIENT_CA],
                    "[security] tls_client_ca needs tls_cert and tls_key (client certificates "
                    "are checked on a TLS listener)");
    static const enum key_id rpc_keys[] = {K_RPC_CA, K_RPC_CERT, K_RPC_KEY};
    for (size_t i = 0; i < 3; i++) {
        enum key_id k = rpc_keys[i];
        if (sec->rpc_tls && !t->path[k])
            return fail(p, p->key_line[K_RPC_TLS],
                        "[security] rpc_tls = on needs rpc_ca, rpc_cert and rpc_key (missing %s)",
                        keys[k].name);
        if (!sec->rpc_tls && t->path[k])
            return fail(p, p->key_line[k], "[security] %s is set but rpc_tls is off", keys[k].name);
    }
    /* under mutual TLS a router's RPC certificate names "router": no node may be called so */
    for (uint32_t i = 0; sec->rpc_tls && i < t->nnodes; i++)
        if (strcmp(t->nodes[i].id, "router") == 0)
            return fail(p, p->key_line[K_RPC_TLS],
                        "[security] rpc_tls = on reserves the node id 'router' (the name a "
                        "router's RPC certificate carries); rename [node \"router\"]");
    return 1;
}

static int finish(struct parse *p)
{
    topo_t *t = p->t;
    char q[80];
    for (int k = 0; k < K__COUNT; k++) {
        if (!(keys[k].flags & KF_REQUIRED) || keys[k].sect == SECT_NODE || p->key_line[k])
            continue;
        if (p->sect_line[keys[k].sect])
            return fail(p, p->sect_line[keys[k].sect], "[%s] is missing the required key '%s'",
                        sect_names[keys[k].sect], keys[k].name);
        return fail(p, 0, "missing [%s] section (it must set at least '%s')",
                    sect_names[keys[k].sect], keys[k].name);
    }
    if (t->nnodes == 0)
        return fail(p, 0, "no nodes: add at least one [node \"ID\"] section with rpc and http");
    for (uint32_t i = 0; i < t->nnodes; i++)
        for (int w = 0; w < 2; w++)
            if (!t->nodes[i].addr[w].addr)
                return fail(p, t->nodes[i].line, "node '%s' has no %s address (%s = host:port)",
                            clean(q, sizeof q, t->nodes[i].id), w ? "http" : "rpc",
                            w ? "http" : "rpc");
    t->shards = (uint32_t)t->val[K_SHARDS];
    t->rf = (uint32_t)t->val[K_RF];
    if (t->rf > t->nnodes)
        return fail(p, p->key_line[K_RF],
                    "replication_factor %" PRIu32 " is larger than the number of nodes (%" PRIu32
                    ")",
                    t->rf, t->nnodes);

    size_t cells = (size_t)t->shards * t->rf;
    t->replicas = malloc(cells * sizeof *t->replicas);
    t->held = malloc(cells * sizeof *t->held);
    if (!t->replicas || !t->held)
        return fail_nomem(p);
    for (uint32_t i = 0; i < t->nnodes; i++)
        if (t->nodes[i].key_line[K_NODE_SHARDS] || t->nodes[i].key_line[K_NODE_REPLICA_SHARDS])
            t->explicit_placement = 1;
    if (t->explicit_placement) {
        if (!explicit_placement(p))
            return 0;
    } else {
        for (uint32_t s = 0; s < t->shards; s++)
            for (uint32_t r = 0; r < t->rf; r++)
                t->replicas[(size_t)s * t->rf + r] = (s + r) % t->nnodes;
    }

    /* every node's shard list, ascending, back to back in t->held */
    for (size_t c = 0; c < cells; c++)
        t->nodes[t->replicas[c]].nheld++;
    size_t off = 0;
    for (uint32_t i = 0; i < t->nnodes; i++) {
        t->nodes[i].held = t->held + off;
        off += t->nodes[i].nheld;
        t->nodes[i].nheld = 0;
    }
    for (size_t c = 0; c < cells; c++) {
        struct node *nd = &t->nodes[t->replicas[c]];
        nd->held[nd->nheld++] = (uint32_t)(c / t->rf);
    }

    t->storage.wal_durability = (topo_wal_durability_t)t->val[K_WAL_DURABILITY];
    t->storage.wal_sync_interval_ms = t->val[K_WAL_SYNC_INTERVAL];
    t->storage.partition_ms = t->val[K_PARTITION];
    t->storage.retention_ms = t->val[K_RETENTION];
    if (t->nret)
        qsort(t->ret, t->nret, sizeof *t->ret, ret_cmp);
    for (size_t i = 0; i < t->ntiers; i++) {
        if (t->storage.partition_ms % t->tiers[i].res_ms)
            return fail(p, p->tiers_line,
                        "tier %zu: its resolution must divide [storage] partition", i + 1);
        if (t->storage.retention_ms && t->tiers[i].age_ms >= t->storage.retention_ms)
            return fail(p, p->tiers_line,
                        "tier %zu: its age must be shorter than [storage] retention", i + 1);
    }
    for (size_t i = 0; i < t->nret && t->storage.retention_ms; i++)
        if (!t->ret[i].ms || t->ret[i].ms > t->storage.retention_ms)
            return fail(p, p->sect_line[SECT_RETENTION],
                        "[retention] %s: an override may only shorten [storage] retention",
                        t->ret[i].name);
    t->storage.memtable_max_bytes = (uint64_t)t->val[K_MEMTABLE_MAX];
    t->storage.memtable_max_age_ms = t->val[K_MEMTABLE_MAX_AGE];
    t->router.max_body_bytes = (uint64_t)t->val[K_MAX_BODY_BYTES];
    t->router.request_timeout_ms = t->val[K_REQUEST_TIMEOUT];
    t->router.query_max_samples = (uint64_t)t->val[K_QUERY_MAX_SAMPLES];
    t->router.query_max_series = (uint64_t)t->val[K_QUERY_MAX_SERIES];
    t->repl.hint_max_bytes = (uint64_t)t->val[K_HINT_MAX_BYTES];
    t->repl.hint_max_age_ms = t->val[K_HINT_MAX_AGE];
    t->repl.replica_timeout_ms = t->val[K_REPLICA_TIMEOUT];
    t->repl.heartbeat_interval_ms = t->val[K_HEARTBEAT_INTERVAL];
    t->repl.rpc_inflight_max_bytes = (uint64_t)t->val[K_RPC_INFLIGHT_MAX];
    t->repl.rpc_frame_timeout_ms = t->val[K_RPC_FRAME_TIMEOUT];
    t->repl.repair_interval_ms = t->val[K_REPAIR_INTERVAL];
    t->repl.repair_max_bytes_per_s = (uint64_t)t->val[K_REPAIR_MAX_MB_PER_S];
    t->repl.read_repair = (int)t->val[K_READ_REPAIR];
    t->storage.max_future_ms = t->val[K_MAX_FUTURE];
    t->storage.head_max_bytes = (uint64_t)t->val[K_HEAD_MAX];
    t->storage.head_max_partitions = (uint64_t)t->val[K_HEAD_MAX_PARTITIONS];
    t->storage.max_open_files = (uint64_t)t->val[K_MAX_OPEN_FILES];
    t->storage.max_series = (uint64_t)t->val[K_MAX_SERIES];
    t->storage.max_new_series_per_hour = (uint64_t)t->val[K_MAX_NEW_SERIES_HOUR];
    t->storage.max_new_series_per_write = (uint64_t)t->val[K_MAX_NEW_SERIES_WRITE];
    t->storage.query_total_max_bytes = (uint64_t)t->val[K_QUERY_TOTAL_MAX];
    t->router.query_max_bytes = (uint64_t)t->val[K_QUERY_MAX_BYTES];
    t->router.idle_timeout_ms = t->val[K_IDLE_TIMEOUT];
    t->router.max_inflight_bytes = (uint64_t)t->val[K_MAX_INFLIGHT];
    t->router.resp_flushall = (int)t->val[K_RESP_FLUSHALL];
    t->sec.metrics_auth = (int)t->val[K_METRICS_AUTH];
    if (!security_check(p))
        return 0;

    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return fail_nomem(p);
    XXH3_64bits_reset(st);
    struct sink k = {st, NULL, 0, 0};
    canonical(t, &k);
    t->fp = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    snprintf(t->fp_hex, sizeof t->fp_hex, "%016" PRIx64, t->fp);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

int topo_load_string(const char *text, const char *name_for_errors, topo_t **out, char *err,
                     size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!text || !out)
        return ST_EINVAL;
    struct parse p = {0};
    p.file = name_for_errors ? name_for_errors : "<string>";
    p.err = err;
    p.errlen = errlen;
    p.pos = text;
    p.end = text + strlen(text);
    if (!(p.t = calloc(1, sizeof *p.t))) {
        fail_nomem(&p);
        return p.rc;
    }
    for (int k = 0; k < K__COUNT; k++) /* defaults, through the same parser */
        if (keys[k].def && !set_value(&p, (enum key_id)k, keys[k].def))
            goto out; /* a broken table: the message names the key */
    int r = ini_parse_stream(reader, &p, on_key, &p);
    if (!p.rc && r > 0)
        fail(&p, (uint32_t)r, "cannot parse this line");
    else if (!p.rc && r < 0)
        fail_nomem(&p);
    if (!p.rc)
        finish(&p);
out:
    if (p.rc) {
        topo_destroy(p.t);
        return p.rc;
    }
    *out = p.t;
    return 0;
}

int topo_load_file(const char *path, topo_t **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!path || !out)
        return ST_EINVAL;
    struct parse p = {0};
    p.file = path;
    p.err = err;
    p.errlen = errlen;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(&p, 0, "cannot open: %s", strerror(errno));
        return ST_EIO;
    }
    char *buf = malloc(TOPO_FILE_MAX + 2);
    if (!buf) {
        fclose(f);
        fail_nomem(&p);
        return p.rc;
    }
    size_t n = fread(buf, 1, TOPO_FILE_MAX + 1, f);
    int rc = 0;
    if (ferror(f)) {
        fail(&p, 0, "cannot read: %s", strerror(errno));
        rc = ST_EIO;
    } else if (n > TOPO_FILE_MAX) {
        fail(&p, 0, "file is larger than %d bytes", TOPO_FILE_MAX);
        rc = ST_ECONFIG;
    } else if (memchr(buf, '\0', n)) {
        const char *z = memchr(buf, '\0', n);
        uint32_t line = 1;
        for (const char *c = buf; c < z; c++)
            line += *c == '\n';
        fail(&p, line, "NUL byte in the file (not a text file?)");
        rc = ST_ECONFIG;
    }
    fclose(f);
    if (!rc) {
        buf[n] = '\0';
        rc = topo_load_string(buf, path, out, err, errlen);
    }
    free(buf);
    return rc;
}

void topo_destroy(topo_t *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->nnodes; i++) {
        struct node *nd = &t->nodes[i];
        free(nd->id);
        for (int w = 0; w < 2; w++) {
            free_addr(&nd->addr[w]);
            free(nd->list[w]);
        }
    }
    free_addr(&t->router.listen);
    free_addr(&t->router.resp_listen);
    for (size_t i = 0; i < t->nret; i++)
        free(t->ret[i].name);
    free(t->ret);
    for (int k = 0; k < K__COUNT; k++)
        free(t->path[k]);
    free_addr(&t->router.pg_listen);
    free(t->nodes);
    free(t->replicas);
    free(t->held);
    free(t);
}

const char *topo_cluster_name(const topo_t *t)
{
    return t->name;
}

uint32_t topo_shards(const topo_t *t)
{
    return t->shards;
}

uint32_t topo_replication_factor(const topo_t *t)
{
    return t->rf;
}

topo_write_consistency_t topo_write_consistency(const topo_t *t)
{
    return (topo_write_consistency_t)t->val[K_WRITE_CONSISTENCY];
}

topo_read_consistency_t topo_read_consistency(const topo_t *t)
{
    return (topo_read_consistency_t)t->val[K_READ_CONSISTENCY];
}

topo_sharding_t topo_sharding(const topo_t *t)
{
    return (topo_sharding_t)t->val[K_SHARDING];
}

const topo_storage_t *topo_storage(const topo_t *t)
{
    return &t->storage;
}

const topo_router_t *topo_router(const topo_t *t)
{
    return &t->router;
}

const topo_replication_t *topo_replication(const topo_t *t)
{
    return &t->repl;
}

const topo_security_t *topo_security(const topo_t *t)
{
    return &t->sec;
}

int topo_security_path(const char *tmpl, const char *id, char *buf, size_t cap)
{
    const char *at = tmpl ? strstr(tmpl, "{id}") : NULL;
    int n = at ? snprintf(buf, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, id ? id : "", at + 4)
               : snprintf(buf, cap, "%s", tmpl ? tmpl : "");
    return n >= 0 && (size_t)n < cap ? 0 : ST_ELIMIT;
}

uint32_t topo_node_count(const topo_t *t)
{
    return t->nnodes;
}

const char *topo_node_id(const topo_t *t, uint32_t i)
{
    return t->nodes[i].id;
}

const topo_addr_t *topo_node_rpc(const topo_t *t, uint32_t i)
{
    return &t->nodes[i].addr[0];
}

const topo_addr_t *topo_node_http(const topo_t *t, uint32_t i)
{
    return &t->nodes[i].addr[1];
}

int topo_node_index(const topo_t *t, const char *id)
{
    for (uint32_t i = 0; i < t->nnodes; i++)
        if (strcmp(t->nodes[i].id, id) == 0)
            return (int)i;
    return ST_ENOENT;
}

int topo_placement_explicit(const topo_t *t)
{
    return t->explicit_placement;
}

const uint32_t *topo_shard_replicas(const topo_t *t, uint32_t shard)
{
    return &t->replicas[(size_t)shard * t->rf];
}

int topo_replica_rank(const topo_t *t, uint32_t shard, uint32_t node)
{
    const uint32_t *r = topo_shard_replicas(t, shard);
    for (uint32_t i = 0; i < t->rf; i++)
        if (r[i] == node)
            return (int)i;
    return ST_ENOENT;
}

uint32_t topo_node_shards(const topo_t *t, uint32_t node, const uint32_t **OUT_shards)
{
    *OUT_shards = t->nodes[node].held;
    return t->nodes[node].nheld;
}

uint64_t topo_fingerprint(const topo_t *t)
{
    return t->fp;
}

const char *topo_fingerprint_hex(const topo_t *t)
{
    return t->fp_hex;
}

size_t topo_canonical(const topo_t *t, char *buf, size_t cap)
{
    struct sink k = {NULL, buf, cap ? cap - 1 : 0, 0};
    canonical(t, &k);
    if (cap)
        buf[k.len < cap - 1 ? k.len : cap - 1] = '\0';
    return k.len;
}

uint32_t topo_shard_of_metric(const topo_t *t, const char *name, size_t len)
{
    return (uint32_t)(XXH3_64bits(name, len) % t->shards);
}

uint32_t topo_shard_of_hash(const topo_t *t, uint64_t series_hash, const char *name, size_t len)
{
    if (topo_sharding(t) == TOPO_SHARDING_METRIC)
        return topo_shard_of_metric(t, name, len);
    return (uint32_t)(series_hash % t->shards);
}

uint32_t topo_shard_of_labels(const topo_t *t, const st_label_t *labels, size_t n)
{
    if (topo_sharding(t) == TOPO_SHARDING_SERIES)
        return topo_shard_of_hash(t, st_series_hash(labels, n), NULL, 0); /* name unused */
    int i = st_labels_find(labels, n, ST_METRIC_LABEL);
    if (i < 0)
        return topo_shard_of_hash(t, 0, "", 0);
    return topo_shard_of_hash(t, 0, labels[i].value, labels[i].value_len);
}

const char *topo_write_consistency_name(topo_write_consistency_t v)
{
    return (unsigned)v < 3 ? write_cons_names[v] : "?";
}

const char *topo_read_consistency_name(topo_read_consistency_t v)
{
    return (unsigned)v < 2 ? read_cons_names[v] : "?";
}

const char *topo_sharding_name(topo_sharding_t v)
{
    return (unsigned)v < 2 ? sharding_names[v] : "?";
}

const char *topo_wal_durability_name(topo_wal_durability_t v)
{
    return (unsigned)v < 4 ? wal_names[v] : "?";
}

void topo_print(const topo_t *t, FILE *f)
{
    char b[64];
    fprintf(f,
            "cluster %s: %" PRIu32 " shards, replication_factor %" PRIu32
            ", write_consistency %s, read_consistency %s, sharding %s\n",
            t->name, t->shards, t->rf, topo_write_consistency_name(topo_write_consistency(t)),
            topo_read_consistency_name(topo_read_consistency(t)),
            topo_sharding_name(topo_sharding(t)));
    fprintf(f, "nodes (%" PRIu32 "):\n", t->nnodes);
    for (uint32_t i = 0; i < t->nnodes; i++) {
        const struct node *nd = &t->nodes[i];
        uint32_t leads = 0;
        for (uint32_t s = 0; s < t->shards; s++)
            leads += t->replicas[(size_t)s * t->rf] == i;
        fprintf(f, "  %-12s rpc %-22s http %-22s holds %" PRIu32 " shards, leads %" PRIu32 "\n",
                nd->id, nd->addr[0].addr, nd->addr[1].addr, nd->nheld, leads);
    }
    if (t->explicit_placement)
        fprintf(f, "placement: explicit (shards / replica_shards)\n");
    else
        fprintf(f, "placement: default (shard s -> nodes (s+k) mod %" PRIu32 ", k < %" PRIu32 ")\n",
                t->nnodes, t->rf);
    for (uint32_t s = 0; s < t->shards; s++) {
        fprintf(f, "  shard %" PRIu32 ":", s);
        for (uint32_t r = 0; r < t->rf; r++)
            fprintf(f, " %s", t->nodes[t->replicas[(size_t)s * t->rf + r]].id);
        fputc('\n', f);
    }
    fprintf(f, "storage: wal_durability %s, wal_sync_interval_ms %" PRId64,
            topo_wal_durability_name(t->storage.wal_durability), t->storage.wal_sync_interval_ms);
    fprintf(f, ", partition %s", st_fmt_duration_one(b, sizeof b, t->storage.partition_ms));
    fprintf(f, ", retention %s",
            t->storage.retention_ms ? st_fmt_duration_one(b, sizeof b, t->storage.retention_ms)
                                    : "forever");
    fprintf(f, ", memtable_max %s", fmt_size(b, sizeof b, (int64_t)t->storage.memtable_max_bytes));
    fprintf(f, ", memtable_max_age %s\n",
            st_fmt_duration_one(b, sizeof b, t->storage.memtable_max_age_ms));
    fprintf(f, "router: max_body_bytes %" PRIu64, t->router.max_body_bytes);
    fprintf(f, ", request_timeout %s",
            st_fmt_duration_one(b, sizeof b, t->router.request_timeout_ms));
    fprintf(f, ", query_max_samples %" PRIu64 ", query_max_series %" PRIu64 ", listen %s\n",
            t->router.query_max_samples, t->router.query_max_series, t->router.listen.addr);
    fprintf(f, "replication: hint_max_bytes %" PRIu64, t->repl.hint_max_bytes);
    fprintf(f, ", hint_max_age %s", st_fmt_duration_one(b, sizeof b, t->repl.hint_max_age_ms));
    fprintf(f, ", replica_timeout %s",
            st_fmt_duration_one(b, sizeof b, t->repl.replica_timeout_ms));
    fprintf(f, ", heartbeat_interval %s\n",
            st_fmt_duration_one(b, sizeof b, t->repl.heartbeat_interval_ms));
    fprintf(f, "limits: max_future %s", st_fmt_duration_one(b, sizeof b, t->storage.max_future_ms));
    fprintf(f, ", head_max %s", fmt_size(b, sizeof b, (int64_t)t->storage.head_max_bytes));
    fprintf(f, ", head_max_partitions %" PRIu64 ", max_open_files %" PRIu64,
            t->storage.head_max_partitions, t->storage.max_open_files);
    fprintf(f,
            ", max_series %" PRIu64 ", max_new_series_per_hour %" PRIu64
            ", max_new_series_per_write %" PRIu64,
            t->storage.max_series, t->storage.max_new_series_per_hour,
            t->storage.max_new_series_per_write);
    fprintf(f, ", query_total_max %s",
            fmt_size(b, sizeof b, (int64_t)t->storage.query_total_max_bytes));
    fprintf(f, ", query_max %s", fmt_size(b, sizeof b, (int64_t)t->router.query_max_bytes));
    fprintf(f, ", idle_timeout %s", st_fmt_duration_one(b, sizeof b, t->router.idle_timeout_ms));
    fprintf(f, ", max_inflight %s", fmt_size(b, sizeof b, (int64_t)t->router.max_inflight_bytes));
    fprintf(f, ", rpc_inflight_max %s",
            fmt_size(b, sizeof b, (int64_t)t->repl.rpc_inflight_max_bytes));
    fprintf(f, ", rpc_frame_timeout %s\n",
            st_fmt_duration_one(b, sizeof b, t->repl.rpc_frame_timeout_ms));
    fprintf(f, "downsampling: ");
    for (size_t i = 0; i < t->ntiers; i++) {
        fprintf(f, "%s%s", i ? ", " : "tiers ",
                st_fmt_duration_one(b, sizeof b, t->tiers[i].age_ms));
        fprintf(f, ":%s", st_fmt_duration_one(b, sizeof b, t->tiers[i].res_ms));
    }
    fprintf(f, "%s\n", t->ntiers ? "" : "none (raw data only)");
    fprintf(f, "retention overrides: %zu", t->nret);
    for (size_t i = 0; i < t->nret && i < 20; i++)
        fprintf(f, "%s%s %s", i ? ", " : " (", t->ret[i].name,
                t->ret[i].ms ? st_fmt_duration_one(b, sizeof b, t->ret[i].ms) : "forever");
    fprintf(f, "%s\n", t->nret > 20 ? ", ...)" : t->nret ? ")" : "");
    fprintf(f, "fingerprint %s\n", t->fp_hex);
}

size_t topo_tiers(const topo_t *t, const topo_tier_t **out)
{
    *out = t->tiers;
    return t->ntiers;
}

static int ret_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ret_override *)a)->name, ((const struct ret_override *)b)->name);
}

int64_t topo_retention_of(const topo_t *t, const char *name, size_t len)
{
    size_t lo = 0, hi = t->nret;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = t->ret[mid].name;
        int c = strncmp(m, name, len);
        if (c == 0)
            c = m[len] ? 1 : 0;
        if (c == 0)
            return t->ret[mid].ms;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return t->storage.retention_ms;
}

size_t topo_retention_overrides(const topo_t *t)
{
    return t->nret;
}

void topo_retention_override(const topo_t *t, size_t i, const char **metric, int64_t *ms)
{
    *metric = t->ret[i].name;
    *ms = t->ret[i].ms;
}
