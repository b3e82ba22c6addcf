/*
 * resp_rules — compaction rule helpers of the RESP door (see resp_rules.h).
 */
#include "resp_rules.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "resp.h"
#include "selector.h"
#include "st_err.h"

/* %XX-encode s into b (a URL query or form value). */
static int pct_str(st_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (; *s && !rc; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            rc = st_buf_put_u8(b, ch);
        } else {
            char t[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            rc = st_buf_append(b, t, 3);
        }
    }
    return rc;
}

static int lit(st_buf_t *b, const char *s)
{
    return st_buf_append(b, s, strlen(s));
}

int resp_rules_create_form(st_buf_t *b, const char *src_sel, const char *dst_sel, int agg,
                           int64_t bucket_ms, int64_t align_ms)
{
    char num[96];
    snprintf(num, sizeof num,
             "&bucket=%lldms&align=%lld&exact=1&aggregation=", (long long)bucket_ms,
             (long long)align_ms);
    int rc = lit(b, "source=") || pct_str(b, src_sel) || lit(b, "&dest=") || pct_str(b, dst_sel) ||
             lit(b, num) || pct_str(b, rule_agg_name((rule_agg_t)agg)) || st_buf_put_u8(b, 0);
    if (!rc)
        b->len--; /* NUL-terminated, not counted */
    return rc ? ST_ENOMEM : 0;
}

int resp_rules_retention_form(st_buf_t *b, const char *key, int64_t retention_ms)
{
    char num[64];
    snprintf(num, sizeof num, "&retention=%lldms", (long long)retention_ms);
    int rc = lit(b, "source=") || pct_str(b, key) || lit(b, num) || st_buf_put_u8(b, 0);
    if (!rc)
        b->len--;
    return rc ? ST_ENOMEM : 0;
}

int resp_rules_delete_target(st_buf_t *b, const char *src_sel, const char *dst_sel)
{
    int rc = lit(b, "/api/v1/admin/rules?source=") || pct_str(b, src_sel) || lit(b, "&dest=") ||
             pct_str(b, dst_sel) || st_buf_put_u8(b, 0);
    return rc ? ST_ENOMEM : 0;
}

const char *resp_rules_error(int status, const char *e)
{
    if (status == 404)
        return "ERR TSDB: compaction rule does not exist";
    if (!e)
        return NULL;
    if (strstr(e, "already receives") || strstr(e, "from this source to this dest"))
        return "ERR TSDB: the destination key already has a src rule";
    if (strstr(e, "the dest is the source of rule"))
        return "ERR TSDB: the destination key already has a dst rule";
    if (strstr(e, "the source is the dest of rule"))
        return "ERR TSDB: the source key already has a source rule";
    if (strstr(e, "source and dest must differ"))
        return "ERR TSDB: the source key and destination key should be different";
    if (strstr(e, "too many rules"))
        return "ERR TSDB: too many compaction rules (at most 10000)";
    return NULL;
}

void resp_rules_key_of(const char *s, char *out, size_t cap)
{
    selector_t sel;
    char err[64];
    snprintf(out, cap, "%s", s);
    if (selector_parse(s, strlen(s), &sel, err, sizeof err) != 0)
        return;
    if (sel.n == 1 && sel.m[0].type == ST_MATCH_EQ && strcmp(sel.m[0].name, "__name__") == 0)
        snprintf(out, cap, "%s", sel.m[0].value);
    selector_free(&sel);
}

int resp_rules_info(st_buf_t *o, int proto, const rules_t *set, const char *key_sel)
{
    char key[RULE_TEXT_MAX + 1];
    const rule_t *src = NULL;
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (!(set->v[i].flags & RULE_FLAG_EXACT))
            continue;
        if (strcmp(set->v[i].source, key_sel) == 0)
            n++;
        if (strcmp(set->v[i].dest, key_sel) == 0)
            src = &set->v[i];
    }
    int rc = resp_bulk_str(o, "sourceKey");
    if (src) {
        resp_rules_key_of(src->source, key, sizeof key);
        rc = rc || resp_bulk_str(o, key);
    } else {
        rc = rc || resp_null(o, proto);
    }
    rc = rc || resp_bulk_str(o, "rules") || resp_array(o, n);
    for (size_t i = 0; !rc && i < set->n; i++) {
        const rule_t *r = &set->v[i];
        if (!(r->flags & RULE_FLAG_EXACT) || strcmp(r->source, key_sel) != 0)
            continue;
        char agg[16];
        snprintf(agg, sizeof agg, "%s", rule_agg_name(r->agg));
        for (char *p = agg; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        resp_rules_key_of(r->dest, key, sizeof key);
        rc = resp_array(o, 4) || resp_bulk_str(o, key) || resp_int(o, r->bucket_ms) ||
             resp_bulk_str(o, agg) || resp_int(o, r->align_ms);
    }
    return rc ? ST_ENOMEM : 0;
}
