/*
 * selector — match[] selectors through the PromQL parser (see selector.h).
 *
 * promql_parse_selector() parses the text with the PromQL lexer and the
 * parser's vector-selector grammar in its match[] mode (selector.c's error
 * wording, no query-time checks); this file only copies the metric name and
 * the matchers out of the AST into one arena the selector owns, so callers
 * keep a plain array of matchers.
 */
#include "selector.h"

#include <stdlib.h>
#include <string.h>

#include "promql.h"
#include "st_err.h"
#include "st_labels.h"

/* Room for s (with its NUL) in the arena at *used. */
static const char *put(char *arena, size_t *used, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = memcpy(arena + *used, s, n);
    *used += n;
    return d;
}

int selector_parse(const char *s, size_t len, selector_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    promql_expr_t *e;
    int rc = promql_parse_selector(s, len, SELECTOR_MAX_MATCHERS, &e, err, errlen);
    if (rc)
        return rc;
    const promql_node_t *vs = promql_root(e);
    const promql_matcher_set_t *set = vs->u.vs.nsets ? &vs->u.vs.sets[0] : NULL;
    size_t room = vs->u.vs.name ? sizeof ST_METRIC_LABEL + strlen(vs->u.vs.name) + 1 : 0;
    for (size_t i = 0; set && i < set->n; i++)
        room += strlen(set->m[i].name) + strlen(set->m[i].value) + 2;
    size_t used = 0;
    if (!(out->arena = malloc(room + 1))) {
        promql_free(e);
        return ST_ENOMEM;
    }
    if (vs->u.vs.name)
        out->m[out->n++] = (st_matcher_t){ST_MATCH_EQ, put(out->arena, &used, ST_METRIC_LABEL),
                                          put(out->arena, &used, vs->u.vs.name)};
    for (size_t i = 0; set && i < set->n; i++)
        out->m[out->n++] = (st_matcher_t){set->m[i].type, put(out->arena, &used, set->m[i].name),
                                          put(out->arena, &used, set->m[i].value)};
    promql_free(e);
    return 0;
}

void selector_free(selector_t *sel)
{
    free(sel->arena);
    sel->arena = NULL;
    sel->n = 0;
}
