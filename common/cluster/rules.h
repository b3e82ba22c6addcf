/*
 * rules — compaction rules (TS.CREATERULE-style downsampling of one series
 * or of every series a selector matches into a destination series), the
 * versioned rule set every node and router agree on, its byte codec, and
 * the bucket aggregator the nodes evaluate with.
 *
 * A rule: source (a selector; `exact` = it names exactly one series, the
 * label set of its = matchers, as a RESP key does), aggregator, bucket
 * duration and alignment (buckets start at align + k * bucket), dest (a
 * selector of = matchers only: the destination metric name and labels).
 * Not exact: each matched series gets its own destination, its labels
 * without __name__, overridden by dest's labels, named by dest's name.
 *
 * The rule set carries a cluster-wide version; a newer set replaces an
 * older one whole (rules_newer: higher version, ties broken by CRC so
 * every node picks the same set). Encoding (file <data_dir>/rules and the
 * RPC_RULES payloads), little-endian:
 *   "STRR" u32 format(1) u64 version u32 count
 *   count x { u64 id u8 agg u8 flags i64 bucket_ms i64 align_ms
 *             i64 created_ms u32 len source  u32 len dest }
 *   u32 crc32c of everything before it
 * rules_decode checks everything (lengths, counts, CRC, aggregator, and
 * each rule with rule_validate), so a damaged file or frame is refused.
 *
 * A retention entry (flags RULE_FLAG_RETENTION) is no compaction rule: it
 * keeps the series of metric `source` (a plain metric name, a RESP key)
 * for bucket_ms only (TS.CREATE/TS.ALTER ... RETENTION); dest is empty,
 * agg and align are 0. At most one per metric. It rides in the same
 * versioned set so it converges the same way; nodes hand these to their
 * engines as per-metric retentions.
 *
 * Pure (no sockets, no disk): the codec, validation, matching of a label
 * set against a compiled rule, and the aggregator.
 */
#ifndef RULES_H
#define RULES_H

#include <stddef.h>
#include <stdint.h>

#include "selector.h"
#include "st_buf.h"
#include "st_labels.h"

#define RULES_MAX 10000                  /* rules in a cluster */
#define RULE_TEXT_MAX 4096               /* bytes of a source or dest selector */
#define RULE_BUCKET_MAX_MS 31622400000LL /* 366 days */
#define RULE_FLAG_EXACT 1u
#define RULE_FLAG_RETENTION 2u                /* a retention entry, not a rule */
#define RULE_RETENTION_MAX_MS 3155760000000LL /* 100 years */

typedef enum {
    RULE_AGG_AVG,
    RULE_AGG_SUM,
    RULE_AGG_MIN,
    RULE_AGG_MAX,
    RULE_AGG_RANGE,
    RULE_AGG_COUNT,
    RULE_AGG_FIRST,
    RULE_AGG_LAST,
    RULE_AGG_STD_P,
    RULE_AGG_STD_S,
    RULE_AGG_VAR_P,
    RULE_AGG_VAR_S,
    RULE_AGG_TWA,
    RULE_AGG_N
} rule_agg_t;

typedef struct rule {
    uint64_t id;
    rule_agg_t agg;
    uint32_t flags; /* RULE_FLAG_EXACT */
    int64_t bucket_ms;
    int64_t align_ms;
    int64_t created_ms;
    char *source; /* owned, NUL-terminated */
    char *dest;   /* owned */
} rule_t;

typedef struct rules {
    uint64_t version;
    rule_t *v;
    size_t n, cap;
} rules_t;

/* "avg", ... "twa" (lower case) -> rule_agg_t, or -1 (case-insensitive). */
int rule_agg_parse(const char *s, size_t len);
const char *rule_agg_name(rule_agg_t a);

/* Check one rule (selectors parse, dest has only = matchers and a name,
 * exact sources have only = matchers, bucket in (0, RULE_BUCKET_MAX_MS]).
 * Returns 0 or ST_EINVAL with a sentence in err. */
int rule_validate(const rule_t *r, char *err, size_t errlen);

void rules_init(rules_t *s);
void rules_free(rules_t *s);
/* Deep copy (dst is overwritten, not freed). 0 or ST_ENOMEM. */
int rules_copy(rules_t *dst, const rules_t *src);
/* Append a copy of r after checks: validation, RULES_MAX (ST_ELIMIT),
 * the same source and dest already ruled or the dest already receiving
 * a rule (ST_EEXIST), source == dest, chains: the new
 * dest is the source of a rule, or the new source is some rule's dest
 * (ST_EINVAL). r->id 0: the next free id is given (returned in *id). */
int rules_add(rules_t *s, const rule_t *r, uint64_t *id, char *err, size_t errlen);
/* Remove rule `id`: 0, or ST_ENOENT. */
int rules_remove(rules_t *s, uint64_t id);
/* Index of the rule with this source and dest text, or -1. */
long rules_find(const rules_t *s, const char *source, const char *dest);
/* Index of the retention entry of metric `metric`, or -1. */
long rules_find_retention(const rules_t *s, const char *metric);
/* 1 when r is a retention entry. */
int rule_is_retention(const rule_t *r);

int rules_encode(const rules_t *s, st_buf_t *out);
/* Decode into out (initialised here; free with rules_free whatever the
 * result). Returns 0, or ST_EPROTO / ST_ELIMIT / ST_EINVAL with err set. */
int rules_decode(const uint8_t *p, size_t len, rules_t *out, char *err, size_t errlen);
/* CRC of an encoded set (its last 4 bytes), 0 if too short. */
uint32_t rules_blob_crc(const uint8_t *p, size_t len);
/* 1 when set A (encoded) should replace set B (encoded): higher version,
 * or the same version and a higher CRC. */
int rules_blob_newer(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
/* The version of an encoded set (0 if malformed). */
uint64_t rules_blob_version(const uint8_t *p, size_t len);

/* ---- a rule ready to match and emit ---- */

typedef struct rule_compiled rule_compiled_t;
/* Compile r (copied). 0, or ST_EINVAL / ST_ENOMEM with err set (a
 * retention entry: ST_EINVAL). */
int rule_compile(const rule_t *r, rule_compiled_t **out, char *err, size_t errlen);
void rule_compiled_free(rule_compiled_t *c);
const rule_t *rule_compiled_rule(const rule_compiled_t *c);
/* The = value of __name__ in the source (NULL: the source has none). */
const char *rule_compiled_source_name(const rule_compiled_t *c);
const char *rule_compiled_dest_name(const rule_compiled_t *c);
/* 1 when the sorted label set l matches the rule's source. Thread-safe
 * only with one caller at a time per compiled rule (regex match data). */
int rule_compiled_match(rule_compiled_t *c, const st_label_t *l, size_t n);
/* The destination labels of source series l, sorted, into out[cap]
 * (pointing into l and into the compiled rule). Returns the count, or 0
 * when more than cap would be needed. */
size_t rule_compiled_dest(const rule_compiled_t *c, const st_label_t *l, size_t n, st_label_t *out,
                          size_t cap);

/* ---- buckets and the aggregator ---- */

/* Start of the bucket holding ts: align + k * bucket <= ts. */
int64_t rule_bucket_start(int64_t ts, int64_t bucket_ms, int64_t align_ms);

typedef struct rule_acc {
    uint64_t n;
    double sum, min, max, first, last;
    double mean, m2; /* Welford */
    double area;     /* twa: integral from the bucket start to last_ts */
    int64_t last_ts;
    int64_t start_ms; /* the bucket */
} rule_acc_t;

void rule_acc_reset(rule_acc_t *a, int64_t bucket_start);
/* Add a sample (timestamps increasing within a bucket). */
void rule_acc_add(rule_acc_t *a, int64_t ts, double v);
/* The bucket's value (n > 0): NaN where undefined (std.s of one sample). */
double rule_acc_value(const rule_acc_t *a, rule_agg_t agg, int64_t bucket_ms);

#endif
