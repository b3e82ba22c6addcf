/* json — recursive-descent DOM parser over an arena. See json.h. */
#include "json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 128

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    _Alignas(16) char data[];
} arena_blk_t;

struct json_doc {
    arena_blk_t *blk;
    json_t *root;
};

typedef struct parser {
    const char *s, *p, *end;
    json_doc_t *doc;
    char *err;
    size_t errlen;
    int depth;
} parser_t;

static void *arena_alloc(json_doc_t *d, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    arena_blk_t *b = d->blk;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > 60000 ? n : 60000;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = d->blk;
        d->blk = b;
    }
    void *r = b->data + b->used;
    b->used += n;
    return r;
}

static json_t *fail(parser_t *ps, const char *what)
{
    if (ps->err && ps->errlen) {
        int line = 1, col = 1;
        for (const char *q = ps->s; q < ps->p && q < ps->end; q++) {
            if (*q == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(ps->err, ps->errlen, "line %d col %d: %s", line, col, what);
    }
    return NULL;
}

static void skip_ws(parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static json_t *new_node(parser_t *ps, json_type_t t)
{
    json_t *v = arena_alloc(ps->doc, sizeof(*v));
    if (v == NULL)
        return fail(ps, "out of memory");
    memset(v, 0, sizeof(*v));
    v->type = t;
    return v;
}

static int hex4(const char *p, const char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            x |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = x;
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parse a string at ps->p (the opening quote); decoded text goes to *out. */
static int parse_string(parser_t *ps, const char **out, size_t *outlen)
{
    const char *p = ps->p + 1;
    /* the decoded string is never longer than the source */
    const char *q = p;
    while (q < ps->end && *q != '"') {
        if (*q == '\\')
            q++;
        q++;
    }
    if (q >= ps->end) {
        fail(ps, "unterminated string");
        return -1;
    }
    char *o = arena_alloc(ps->doc, (size_t)(q - p) + 1);
    if (o == NULL) {
        fail(ps, "out of memory");
        return -1;
    }
    size_t n = 0;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) {
            ps->p = p;
            fail(ps, "control character in string");
            return -1;
        }
        if (c != '\\') {
            o[n++] = (char)c;
            p++;
            continue;
        }
        p++;
        switch (*p) {
        case '"':
        case '\\':
        case '/':
            o[n++] = *p++;
            break;
        case 'b':
            o[n++] = '\b';
            p++;
            break;
        case 'f':
            o[n++] = '\f';
            p++;
            break;
        case 'n':
            o[n++] = '\n';
            p++;
            break;
        case 'r':
            o[n++] = '\r';
            p++;
            break;
        case 't':
            o[n++] = '\t';
            p++;
            break;
        case 'u': {
            uint32_t cp, lo;
            if (hex4(p + 1, ps->end, &cp) < 0) {
                ps->p = p;
                fail(ps, "bad \\u escape");
                return -1;
            }
            p += 5;
            if (cp >= 0xD800 && cp <= 0xDBFF && ps->end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                hex4(p + 2, ps->end, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD; /* lone surrogate */
            }
            n += put_utf8(o + n, cp);
            break;
        }
        default:
            ps->p = p;
            fail(ps, "bad escape");
            return -1;
        }
    }
    o[n] = '\0';
    *out = o;
    *outlen = n;
    ps->p = p + 1;
    return 0;
}

static json_t *parse_value(parser_t *ps);

static json_t *parse_container(parser_t *ps, bool obj)
{
    json_t *v = new_node(ps, obj ? JSON_OBJ : JSON_ARR);
    if (v == NULL)
        return NULL;
    if (++ps->depth > MAX_DEPTH)
        return fail(ps, "nesting too deep");
    ps->p++;
    skip_ws(ps);
    json_t **tail = &v->child;
    char close = obj ? '}' : ']';
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return v;
    }
    for (;;) {
        const char *key = NULL;
        size_t klen = 0;
        skip_ws(ps);
        if (obj) {
            if (ps->p >= ps->end || *ps->p != '"')
                return fail(ps, "expected a member name");
            if (parse_string(ps, &key, &klen) < 0)
                return NULL;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return fail(ps, "expected ':'");
            ps->p++;
        }
        json_t *c = parse_value(ps);
        if (c == NULL)
            return NULL;
        c->key = key;
        c->key_len = klen;
        *tail = c;
        tail = &c->next;
        v->len++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        return fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    ps->depth--;
    return v;
}

static bool match_word(parser_t *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, w, n) == 0) {
        ps->p += n;
        return true;
    }
    return false;
}

static json_t *parse_number(parser_t *ps)
{
    const char *st = ps->p, *p = ps->p;
    json_t *v = new_node(ps, JSON_NUM);
    if (v == NULL)
        return NULL;
    if (p < ps->end && (*p == '-' || *p == '+'))
        p++;
    ps->p = p;
    if (match_word(ps, "NaN") || match_word(ps, "Inf")) {
        p = ps->p;
    } else {
        if (st[0] == '+')
            return fail(ps, "bad number");
        const char *digits = p;
        while (p < ps->end && *p >= '0' && *p <= '9')
            p++;
        if (p == digits || (digits[0] == '0' && p - digits > 1))
            return fail(ps, "bad number");
        if (p < ps->end && *p == '.') {
            p++;
            const char *f = p;
            while (p < ps->end && *p >= '0' && *p <= '9')
                p++;
            if (p == f) {
                ps->p = p;
                return fail(ps, "bad number");
            }
        }
        if (p < ps->end && (*p == 'e' || *p == 'E')) {
            p++;
            if (p < ps->end && (*p == '+' || *p == '-'))
                p++;
            const char *e = p;
            while (p < ps->end && *p >= '0' && *p <= '9')
                p++;
            if (p == e) {
                ps->p = p;
                return fail(ps, "bad number");
            }
        }
    }
    size_t n = (size_t)(p - st);
    char *txt = arena_alloc(ps->doc, n + 1);
    if (txt == NULL)
        return fail(ps, "out of memory");
    memcpy(txt, st, n);
    txt[n] = '\0';
    v->str = txt;
    v->len = n;
    v->num = strtod(txt, NULL);
    ps->p = p;
    return v;
}

static json_t *parse_value(parser_t *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "unexpected end of input");
    json_t *v;
    switch (*ps->p) {
    case '{':
        return parse_container(ps, true);
    case '[':
        return parse_container(ps, false);
    case '"':
        if ((v = new_node(ps, JSON_STR)) == NULL)
            return NULL;
        if (parse_string(ps, &v->str, &v->len) < 0)
            return NULL;
        return v;
    case 't':
    case 'f':
        if ((v = new_node(ps, JSON_BOOL)) == NULL)
            return NULL;
        if (match_word(ps, "true"))
            v->num = 1;
        else if (!match_word(ps, "false"))
            return fail(ps, "unexpected token");
        return v;
    case 'n':
        if ((v = new_node(ps, JSON_NULL)) == NULL)
            return NULL;
        if (!match_word(ps, "null"))
            return fail(ps, "unexpected token");
        return v;
    default:
        if ((*ps->p >= '0' && *ps->p <= '9') || *ps->p == '-' || *ps->p == '+' || *ps->p == 'N' ||
            *ps->p == 'I')
            return parse_number(ps);
        return fail(ps, "unexpected character");
    }
}

json_doc_t *json_parse(const char *s, size_t n, char *err, size_t errlen)
{
    json_doc_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    parser_t ps = {.s = s, .p = s, .end = s + n, .doc = d, .err = err, .errlen = errlen};
    d->root = parse_value(&ps);
    if (d->root != NULL) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            d->root = fail(&ps, "trailing characters after the value");
    }
    if (d->root == NULL) {
        json_doc_destroy(d);
        return NULL;
    }
    return d;
}

const json_t *json_root(const json_doc_t *d)
{
    return d->root;
}

void json_doc_destroy(json_doc_t *d)
{
    if (d == NULL)
        return;
    arena_blk_t *b = d->blk;
    while (b) {
        arena_blk_t *nx = b->next;
        free(b);
        b = nx;
    }
    free(d);
}

const json_t *json_get(const json_t *v, const char *key)
{
    if (v == NULL || v->type != JSON_OBJ)
        return NULL;
    size_t kl = strlen(key);
    for (const json_t *c = v->child; c; c = c->next)
        if (c->key_len == kl && memcmp(c->key, key, kl) == 0)
            return c;
    return NULL;
}

const json_t *json_at(const json_t *v, size_t i)
{
    if (v == NULL || v->type != JSON_ARR)
        return NULL;
    const json_t *c = v->child;
    while (c && i--)
        c = c->next;
    return c;
}

const char *json_str(const json_t *v)
{
    return v && v->type == JSON_STR ? v->str : NULL;
}

double json_num(const json_t *v, double dflt)
{
    if (v == NULL)
        return dflt;
    if (v->type == JSON_NUM || v->type == JSON_BOOL)
        return v->num;
    if (v->type == JSON_STR) {
        char *end;
        double x = strtod(v->str, &end);
        if (end != v->str && *end == '\0')
            return x;
    }
    return dflt;
}

const char *json_text(const json_t *v)
{
    if (v == NULL)
        return "";
    switch (v->type) {
    case JSON_STR:
    case JSON_NUM:
        return v->str;
    case JSON_BOOL:
        return v->num != 0 ? "true" : "false";
    case JSON_NULL:
        return "null";
    default:
        return "";
    }
}
