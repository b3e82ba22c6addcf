/*
 * st_labels — a series' identity: a metric name plus labels.
 *
 * Labels point into caller memory (no copies, no NUL terminators), so a
 * parser can hand the engine slices of its input buffer. The metric name is
 * the label "__name__". A label set is canonical when sorted by name with no
 * duplicate names; the canonical key (name 0xFF value 0xFF ...) is what
 * st_labels_hash() hashes (XXH3-64) for series lookup and sharding.
 *
 * Limits: names 1..256 bytes of valid UTF-8, values up to 4 KiB of valid
 * UTF-8, at most 64 labels per series. The Prometheus spelling rules for
 * names ([A-Za-z_][A-Za-z0-9_]*) are st_text's st_prom_label_name_ok().
 */
#ifndef ST_LABELS_H
#define ST_LABELS_H

#include <stddef.h>
#include <stdint.h>

#define ST_LABEL_NAME_MAX 256
#define ST_LABEL_VALUE_MAX 4096
#define ST_LABELS_MAX 64
#define ST_METRIC_LABEL "__name__"

typedef struct st_label {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
} st_label_t;

/* Sort by name (stable). */
void st_labels_sort(st_label_t *l, size_t n);
/* Compare two label sets (canonical order): <0, 0, >0. */
int st_labels_cmp(const st_label_t *a, size_t na, const st_label_t *b, size_t nb);
/* XXH3-64 of the canonical key of a sorted label set. */
uint64_t st_labels_hash(const st_label_t *l, size_t n);
/* The same over every label except __name__. */
uint64_t st_labels_hash_noname(const st_label_t *l, size_t n);
/*
 * The sharding hash of a series: XXH3-64 of its metric name seeded with
 * st_labels_hash_noname() of its labels. A pure function of the label set,
 * built in two parts so that series sharing every label but the name (the
 * fields of one line-protocol point) pay for the long part once:
 *   st_series_hash(l, n) == st_series_hash_from(st_labels_hash_noname(l, n), name)
 */
uint64_t st_series_hash(const st_label_t *l, size_t n);
uint64_t st_series_hash_from(uint64_t noname_hash, const char *name, size_t len);
/*
 * Check a sorted label set against the limits: returns 0, or ST_ELIMIT /
 * ST_EINVAL with a static reason in *why (e.g. "label name is not valid UTF-8").
 */
int st_labels_validate(const st_label_t *l, size_t n, const char **why);
/* Index of the label called `name`, or -1. */
int st_labels_find(const st_label_t *l, size_t n, const char *name);

#endif
