/*
 * resp_rules — the RESP door's compaction rule pieces (TS.CREATERULE,
 * TS.DELETERULE, the rules/sourceKey fields of TS.INFO), socket-free.
 *
 * A TS key's rule is a rule whose source and dest are the keys' series
 * selectors (the router's key mapping: K -> {"__name__"="K"}, a series
 * key -> its = matchers) with the exact flag: it aggregates that one
 * series into that one series. The commands go through the router's
 * /api/v1/admin/rules (so the door's credential and roles apply); this
 * module builds the request, turns its errors into valkey-timeseries'
 * words, and writes the TS.INFO fields from the router's rule set.
 */
#ifndef RESP_RULES_H
#define RESP_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "rules.h"
#include "st_buf.h"

/* The form body of POST /api/v1/admin/rules for a key rule. 0 or ST_ENOMEM. */
int resp_rules_create_form(st_buf_t *b, const char *src_sel, const char *dst_sel, int agg,
                           int64_t bucket_ms, int64_t align_ms);
/* The query of DELETE /api/v1/admin/rules for the key rule src -> dst. */
/* The form that sets the retention of key K (a metric name) to ms (0:
 * removes it) through POST /api/v1/admin/rules, NUL-terminated (not
 * counted in b->len). 0 or ST_ENOMEM. */
int resp_rules_retention_form(st_buf_t *b, const char *key, int64_t retention_ms);
int resp_rules_delete_target(st_buf_t *b, const char *src_sel, const char *dst_sel);
/* The valkey-timeseries error for the router's answer (HTTP status and its
 * "error" text), or NULL when it has none (then say the HTTP error). */
const char *resp_rules_error(int status, const char *http_error);
/* The key a selector names: the value of a lone __name__ matcher, else
 * the selector text itself (a series key). Into out[cap]. */
void resp_rules_key_of(const char *sel, char *out, size_t cap);
/* TS.INFO's "sourceKey" and "rules" (two map pairs) for the key whose
 * series selector is key_sel: rules array items are [destKey,
 * bucketDuration, AGGREGATOR, alignTimestamp]. */
int resp_rules_info(st_buf_t *o, int proto, const rules_t *set, const char *key_sel);

#endif
