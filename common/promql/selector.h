/*
 * selector — parse a Prometheus series selector into label matchers.
 *
 *   metric_name
 *   metric_name{label="v", other=~"re", x!="y", z!~"w"}
 *   {__name__="m", job="api"}
 *   {"my.metric", "quoted.label"="v"}      (Prometheus 3 / MetricsQL quoted names)
 *
 * Parsed by the PromQL lexer and parser (promql_parse_selector in
 * promql_parse.c), so strings, names and escapes follow exactly the PromQL
 * rules: "", '' or `` (raw, no escapes); "" and '' take Go-style escapes
 * (\a \b \f \n \r \t \v \\ \" \' \xNN \NNN \uNNNN \UNNNNNNNN). The
 * matchers' strings are NUL-terminated copies owned by the selector. Errors
 * carry the byte position: "1:7: unexpected character '}' in label matcher".
 * At least one matcher must not match the empty string (checked by the
 * index at query time, where regexes are compiled).
 */
#ifndef SELECTOR_H
#define SELECTOR_H

#include <stddef.h>

#include "st_matcher.h"

#define SELECTOR_MAX_LEN 65536
#define SELECTOR_MAX_MATCHERS 64

typedef struct selector {
    st_matcher_t m[SELECTOR_MAX_MATCHERS];
    size_t n;
    char *arena; /* owns every string the matchers point to */
} selector_t;

/* Parse [s, s+len). Returns 0, or ST_EPARSE / ST_ELIMIT with a reason in err. */
int selector_parse(const char *s, size_t len, selector_t *out, char *err, size_t errlen);
void selector_free(selector_t *sel);

#endif
