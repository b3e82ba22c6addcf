/*
 * selector — a small recursive-descent parser for series selectors; see
 * selector.h. The output strings are copied into one arena sized from the
 * input (unescaping never makes a string longer, so 2 * len + 64 bytes
 * always suffice for names, values and NULs).
 */
#include "selector.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_labels.h"

typedef struct parser {
    const char *s;
    size_t len, pos;
    char *arena;
    size_t used, cap;
    char *err;
    size_t errlen;
} parser_t;

static int fail(parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser_t *p, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        int k = snprintf(p->err, p->errlen, "1:%zu: ", p->pos + 1);
        if (k >= 0 && (size_t)k < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return ST_EPARSE;
}

static void skip_ws(parser_t *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int is_name_start(char c, int metric)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
}

static int is_name_char(char c, int metric)
{
    return is_name_start(c, metric) || (c >= '0' && c <= '9');
}

static char *arena_put(parser_t *p, const char *s, size_t n)
{
    char *d = p->arena + p->used;
    memcpy(d, s, n);
    d[n] = '\0';
    p->used += n + 1;
    return d;
}

/* Parse a quoted string at p->pos into the arena; *out = NUL-terminated copy. */
static int parse_string(parser_t *p, const char **out)
{
    char q = p->s[p->pos];
    size_t start = p->pos++;
    char *d = p->arena + p->used, *d0 = d;
    while (p->pos < p->len && p->s[p->pos] != q) {
        char c = p->s[p->pos];
        if (q != '`' && c == '\n')
            return fail(p, "unterminated quoted string");
        if (q == '`' || c != '\\') {
            *d++ = c;
            p->pos++;
            continue;
        }
        if (++p->pos >= p->len)
            break;
        c = p->s[p->pos++];
        switch (c) {
        case 'a':
            *d++ = '\a';
            break;
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
        case 'v':
            *d++ = '\v';
            break;
        case '\\':
        case '"':
        case '\'':
            *d++ = c;
            break;
        case 'x': {
            int h1 = p->pos + 1 < p->len ? st_hexval(p->s[p->pos]) : -1;
            int h2 = h1 >= 0 ? st_hexval(p->s[p->pos + 1]) : -1;
            if (h2 < 0)
                return fail(p, "invalid \\x escape in quoted string");
            *d++ = (char)(h1 * 16 + h2);
            p->pos += 2;
            break;
        }
        case 'u':
        case 'U': {
            size_t nd = c == 'u' ? 4 : 8;
            unsigned cp = 0;
            if (p->pos + nd > p->len)
                return fail(p, "invalid \\%c escape in quoted string", c);
            for (size_t i = 0; i < nd; i++) {
                int h = st_hexval(p->s[p->pos + i]);
                if (h < 0)
                    return fail(p, "invalid \\%c escape in quoted string", c);
                cp = cp * 16 + (unsigned)h;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return fail(p, "escape \\%c is not a valid code point", c);
            p->pos += nd;
            d += st_utf8_put(d, cp);
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                if (p->pos + 2 > p->len || p->s[p->pos] < '0' || p->s[p->pos] > '7' ||
                    p->s[p->pos + 1] < '0' || p->s[p->pos + 1] > '7')
                    return fail(p, "invalid octal escape in quoted string");
                unsigned v = (unsigned)(c - '0') * 64 + (unsigned)(p->s[p->pos] - '0') * 8 +
                             (unsigned)(p->s[p->pos + 1] - '0');
                if (v > 255)
                    return fail(p, "invalid octal escape in quoted string");
                *d++ = (char)v;
                p->pos += 2;
                break;
            }
            return fail(p, "unknown escape sequence '\\%c'", c);
        }
    }
    if (p->pos >= p->len) {
        p->pos = start;
        return fail(p, "unterminated quoted string");
    }
    p->pos++; /* closing quote */
    *d = '\0';
    if (!st_utf8_valid(d0, (size_t)(d - d0)))
        return fail(p, "quoted string is not valid UTF-8");
    *out = d0;
    p->used += (size_t)(d - d0) + 1;
    return 0;
}

static int add(parser_t *p, selector_t *out, st_match_type_t t, const char *name, const char *v)
{
    if (out->n >= SELECTOR_MAX_MATCHERS) {
        fail(p, "too many label matchers (max %d)", SELECTOR_MAX_MATCHERS);
        return ST_ELIMIT;
    }
    out->m[out->n++] = (st_matcher_t){t, name, v};
    return 0;
}

static int parse_matchers(parser_t *p, selector_t *out)
{
    p->pos++; /* '{' */
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len)
            return fail(p, "unexpected end of input inside braces");
        char c = p->s[p->pos];
        if (c == '}') {
            p->pos++;
            return 0;
        }
        const char *name;
        int quoted = 0;
        if (c == '"' || c == '\'' || c == '`') {
            int rc = parse_string(p, &name);
            if (rc)
                return rc;
            quoted = 1;
        } else if (is_name_start(c, 0)) {
            size_t b = p->pos;
            while (p->pos < p->len && is_name_char(p->s[p->pos], 0))
                p->pos++;
            name = arena_put(p, p->s + b, p->pos - b);
        } else {
            return fail(p, "unexpected character '%c' in label matcher", c);
        }
        skip_ws(p);
        if (p->pos >= p->len)
            return fail(p, "unexpected end of input inside braces");
        c = p->s[p->pos];
        st_match_type_t t;
        if (quoted && (c == ',' || c == '}')) {
            /* {"metric.name"}: a quoted metric name on its own */
            int rc = add(p, out, ST_MATCH_EQ, ST_METRIC_LABEL, name);
            if (rc)
                return rc;
            goto next;
        }
        if (c == '=' && p->pos + 1 < p->len && p->s[p->pos + 1] == '~') {
            t = ST_MATCH_RE;
            p->pos += 2;
        } else if (c == '=') {
            t = ST_MATCH_EQ;
            p->pos += 1;
        } else if (c == '!' && p->pos + 1 < p->len && p->s[p->pos + 1] == '=') {
            t = ST_MATCH_NE;
            p->pos += 2;
        } else if (c == '!' && p->pos + 1 < p->len && p->s[p->pos + 1] == '~') {
            t = ST_MATCH_NRE;
            p->pos += 2;
        } else {
            return fail(p, "expected a matcher operator (=, !=, =~, !~) after label name");
        }
        skip_ws(p);
        if (p->pos >= p->len ||
            (p->s[p->pos] != '"' && p->s[p->pos] != '\'' && p->s[p->pos] != '`'))
            return fail(p, "expected a quoted string as label matcher value");
        const char *value;
        int rc = parse_string(p, &value);
        if (rc)
            return rc;
        if ((rc = add(p, out, t, name, value)))
            return rc;
    next:
        skip_ws(p);
        if (p->pos >= p->len)
            return fail(p, "unexpected end of input inside braces");
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->s[p->pos] == '}')
            continue;
        return fail(p, "expected ',' or '}' in label matchers");
    }
}

int selector_parse(const char *s, size_t len, selector_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    parser_t p = {.s = s, .len = len, .err = err, .errlen = errlen};
    if (len > SELECTOR_MAX_LEN) {
        fail(&p, "selector longer than %d bytes", SELECTOR_MAX_LEN);
        return ST_ELIMIT;
    }
    p.cap = 2 * len + 64;
    p.arena = malloc(p.cap);
    if (!p.arena)
        return ST_ENOMEM;
    out->arena = p.arena;
    int rc = 0;
    skip_ws(&p);
    if (p.pos < len && is_name_start(s[p.pos], 1)) {
        size_t b = p.pos;
        while (p.pos < len && is_name_char(s[p.pos], 1))
            p.pos++;
        const char *name = arena_put(&p, s + b, p.pos - b);
        rc = add(&p, out, ST_MATCH_EQ, ST_METRIC_LABEL, name);
        skip_ws(&p);
    }
    if (!rc && p.pos < len && s[p.pos] == '{')
        rc = parse_matchers(&p, out);
    if (!rc) {
        skip_ws(&p);
        if (p.pos < len)
            rc = fail(&p, "unexpected character '%c' after selector", s[p.pos]);
        else if (out->n == 0)
            rc = fail(&p, "empty selector");
    }
    if (rc) {
        selector_free(out);
        return rc;
    }
    return 0;
}

void selector_free(selector_t *sel)
{
    free(sel->arena);
    sel->arena = NULL;
    sel->n = 0;
}
