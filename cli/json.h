/*
 * json — a small DOM JSON parser for the CLI (router responses).
 *
 * json_parse() builds a read-only tree in one arena owned by the returned
 * document; json_doc_destroy() frees it all. Strings are decoded (escapes,
 * \u surrogate pairs -> UTF-8) and NUL-terminated (an embedded \u0000 is kept,
 * json_len() gives the true length). Numbers keep their source text as well
 * as a double, so values are printed exactly as the server sent them.
 * Lenient only where Prometheus-style servers are: bare NaN, Inf, +Inf,
 * -Inf are accepted as numbers. Depth is limited to 128.
 */
#ifndef JSON_H
#define JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } json_type_t;

typedef struct json json_t;
struct json {
    json_type_t type;
    const char *key; /* member name inside an object, else NULL */
    size_t key_len;
    const char *str; /* JSON_STR: decoded text; JSON_NUM: source text */
    size_t len;      /* string length, or number of children for ARR/OBJ */
    double num;      /* JSON_NUM value, JSON_BOOL 0/1 */
    json_t *child;   /* first element / member */
    json_t *next;    /* next sibling */
};

typedef struct json_doc json_doc_t;

/*
 * Parse [s, s+n). Returns NULL on error with a reason ("line 1 col 7:
 * expected ':'") in err (may be NULL). The whole input must be one value
 * (surrounding whitespace allowed).
 */
json_doc_t *json_parse(const char *s, size_t n, char *err, size_t errlen);
const json_t *json_root(const json_doc_t *d);
void json_doc_destroy(json_doc_t *d);

/* Member `key` of an object (first match), NULL if absent or v is not an object. */
const json_t *json_get(const json_t *v, const char *key);
/* Element i of an array, NULL if out of range. */
const json_t *json_at(const json_t *v, size_t i);
/* The string, or NULL when v is not a string. */
const char *json_str(const json_t *v);
/* A number (or a numeric string, as Prometheus sends sample values) or dflt. */
double json_num(const json_t *v, double dflt);
/* Text of a scalar for display: string, number source, true/false/null. "" otherwise. */
const char *json_text(const json_t *v);

#endif
