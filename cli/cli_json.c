/* cli_json — the CLI's thin layer over jansson. See cli_json.h. */
#include "cli_json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_buf.h"

/* Token characters of a bare literal (numbers, NaN, Infinity, true, ...). */
static bool lit_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '+' || c == '-';
}

/* A bare literal jansson cannot take or cannot hold exactly (see cli_json.h). */
static bool needs_quotes(const char *t, size_t n)
{
    size_t i = (t[0] == '-' || t[0] == '+') ? 1 : 0;
    if (i < n && (t[i] == 'N' || t[i] == 'I'))
        return true;
    if (n == 2 && t[0] == '-' && t[1] == '0')
        return true;
    size_t digits = 0;
    for (; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return false; /* a real or something invalid: jansson decides */
        digits++;
    }
    return digits >= 19;
}

/*
 * Copy [s, s+n) to out with quotes around the literals needs_quotes() picks;
 * the copy's offsets of the inserted quotes go to `at` (size_t each).
 * Returns 1 if anything was quoted, 0 if not (out is unused), or ST_ENOMEM.
 */
static int quote_literals(const char *s, size_t n, st_buf_t *out, st_buf_t *at)
{
    bool in_str = false, quoted = false;
    size_t copied = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
            continue;
        }
        if (!lit_char(c))
            continue;
        size_t e = i;
        while (e < n && lit_char(s[e]))
            e++;
        if (needs_quotes(s + i, e - i)) {
            size_t q1 = out->len + (i - copied), q2 = q1 + 1 + (e - i);
            if (st_buf_append(out, s + copied, i - copied) < 0 || st_buf_put_u8(out, '"') < 0 ||
                st_buf_append(out, s + i, e - i) < 0 || st_buf_put_u8(out, '"') < 0 ||
                st_buf_append(at, &q1, sizeof(q1)) < 0 || st_buf_append(at, &q2, sizeof(q2)) < 0)
                return -1;
            copied = e;
            quoted = true;
        }
        i = e - 1;
    }
    if (quoted && st_buf_append(out, s + copied, n - copied) < 0)
        return -1;
    return quoted;
}

json_t *cli_json_parse(const char *s, size_t n, char *err, size_t errlen)
{
    st_buf_t copy, at;
    st_buf_init(&copy);
    st_buf_init(&at);
    int q = quote_literals(s, n, &copy, &at);
    if (q < 0) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        st_buf_deinit(&copy);
        st_buf_deinit(&at);
        return NULL;
    }
    json_error_t je;
    json_t *v =
        q ? json_loadb((const char *)copy.data, copy.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je)
          : json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (v == NULL && err && errlen) {
        /* jansson's position is just past the offending token: its last byte, back in the
           caller's bytes, as line and column */
        size_t pos = je.position > 0 ? (size_t)je.position - 1 : 0;
        const size_t *ins = (const size_t *)at.data;
        size_t back = 0;
        for (size_t i = 0; i < at.len / sizeof(size_t) && ins[i] < pos; i++)
            back++;
        pos = pos - back < n ? pos - back : n;
        int line = 1, col = 1;
        for (size_t i = 0; i < pos; i++) {
            if (s[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(err, errlen, "line %d col %d: %s", line, col, je.text);
    }
    st_buf_deinit(&copy);
    st_buf_deinit(&at);
    return v;
}

const char *cli_json_text(const json_t *v, char *buf, size_t *len)
{
    const char *s = buf;
    buf[0] = '\0';
    switch (v ? json_typeof(v) : JSON_ARRAY) {
    case JSON_STRING:
        s = json_string_value(v);
        if (len)
            *len = json_string_length(v);
        return s;
    case JSON_INTEGER:
        snprintf(buf, CLI_JSON_NUMBUF, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, CLI_JSON_NUMBUF, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        break;
    }
    case JSON_TRUE:
        s = "true";
        break;
    case JSON_FALSE:
        s = "false";
        break;
    case JSON_NULL:
        s = "null";
        break;
    default:
        break;
    }
    if (len)
        *len = strlen(s);
    return s;
}

double cli_json_num(const json_t *v, double dflt)
{
    if (json_is_number(v))
        return json_number_value(v);
    if (json_is_boolean(v))
        return json_is_true(v) ? 1 : 0;
    const char *s = json_string_value(v);
    if (s != NULL) {
        char *end;
        double x = strtod(s, &end);
        if (end != s && *end == '\0')
            return x;
    }
    return dflt;
}
