/*
 * cli_json — the CLI's thin layer over jansson (router responses).
 *
 * The commands use jansson's own API (json_object_get, json_array_get,
 * json_string_value, json_object_foreach, ...) on the tree cli_json_parse()
 * returns; this module adds only what the CLI needs on top:
 *
 *  - cli_json_parse(): one JSON value from a byte range, errors as
 *    "line L col C: reason" (bytes from the start of the line, 1-based).
 *    Prometheus-style servers (and Strata's /api/v1/export) write NaN,
 *    Infinity, -Infinity, +Inf as bare values, which JSON and jansson do
 *    not allow; such literals, "-0" and integers of 19 or more digits (past
 *    what jansson's int64 holds exactly) reach jansson as strings, so their
 *    text is kept exactly as sent and cli_json_num() still reads them.
 *  - cli_json_text(): a scalar as text for display: strings as they are,
 *    integers exactly, reals in the shortest form that reads back to the
 *    same double (the rule the router uses to write them), true/false/null.
 *  - cli_json_num(): a number, or a numeric string (Prometheus sends sample
 *    values as strings).
 */
#ifndef CLI_JSON_H
#define CLI_JSON_H

#include <stddef.h>

#include <jansson.h>

/* Room for any number cli_json_text() formats. */
#define CLI_JSON_NUMBUF 40

/*
 * Parse [s, s+n): exactly one value, surrounding whitespace allowed; \u0000
 * is kept inside strings (json_string_length() gives the true length).
 * Returns a new reference (json_decref() it) or NULL with the reason in err
 * (may be NULL).
 */
json_t *cli_json_parse(const char *s, size_t n, char *err, size_t errlen);

/*
 * Text of a scalar: a string's bytes (owned by v), or a number, true, false
 * or null written into buf (CLI_JSON_NUMBUF bytes); "" for arrays, objects
 * and NULL. *len (may be NULL) gets the length, which counts embedded NULs.
 */
const char *cli_json_text(const json_t *v, char *buf, size_t *len /* OUT */);

/* A number (true = 1, false = 0) or a string that is wholly a number, else dflt. */
double cli_json_num(const json_t *v, double dflt);

#endif
