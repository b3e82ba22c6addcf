/*
 * st_matcher — a label matcher, shared by the selector parser, the router
 * and the engine's label index. Semantics are Prometheus': regexes are
 * fully anchored, and a matcher that matches the empty string also selects
 * series that do not have the label.
 */
#ifndef ST_MATCHER_H
#define ST_MATCHER_H

typedef enum {
    ST_MATCH_EQ = 0, /* =  */
    ST_MATCH_NE = 1, /* != */
    ST_MATCH_RE = 2, /* =~ (fully anchored PCRE2) */
    ST_MATCH_NRE = 3 /* !~ */
} st_match_type_t;

typedef struct st_matcher {
    st_match_type_t type;
    const char *name; /* NUL-terminated */
    const char *value;
} st_matcher_t;

#endif
