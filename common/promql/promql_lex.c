/*
 * promql_lex — the PromQL tokenizer and the text helpers the printer shares.
 *
 * The whole query is tokenized up front (the parser needs two tokens of
 * lookahead in places). Context rules, as in Prometheus' lexer:
 *   - identifiers are [A-Za-z_:][A-Za-z0-9_:]*, but ':' is not part of an
 *     identifier inside {} (label names) or [] (where it separates range
 *     and step: foo[1h:5m]);
 *   - keywords (and, or, offset, by, inf, nan, ...) are lexed as identifiers;
 *     the parser interprets them by position;
 *   - "5m", "1h30m" are durations (units y w d h m s ms, each at most once,
 *     largest first); other digit runs are numbers (decimal, exponent, hex);
 *   - strings use Go escapes in "" and '' (st_unquote_go from base, the
 *     tree's one unescaping; selector.c included); `` is raw;
 *   - '#' starts a comment running to the end of the line.
 * Selector mode (PROMQL_LEX_SELECTOR, for selector.c) has no comments and
 * words string errors as selector.c always did. Durations are parsed by
 * st_duration_parse and printed by st_fmt_duration (base, one unit table).
 */
#include "promql.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_text.h"
#include "st_labels.h"

typedef struct lexer {
    const char *s;
    size_t len, pos;
    int sel;  /* PROMQL_LEX_SELECTOR: selector.c's wording and positions */
    char *sb; /* string buffer */
    size_t sbused;
    size_t *errpos, *errtok;
    size_t tok; /* start of the token being lexed */
    char *err;
    size_t errlen;
} lexer_t;

static long lex_fail(lexer_t *l, size_t pos, const char *msg)
{
    *l->errpos = pos;
    if (l->errtok)
        *l->errtok = l->tok;
    if (l->err && l->errlen)
        snprintf(l->err, l->errlen, "%s", msg);
    return -1;
}

/* An error inside a quoted string: the PromQL wording at pos, or (selector
 * mode) selector.c's wording at spos; %c in sel_msg is ch. Returns -2. */
static long str_fail(lexer_t *l, size_t pos, const char *msg, size_t spos, const char *sel_msg,
                     char ch)
{
    char tmp[96];
    if (l->sel) {
        snprintf(tmp, sizeof tmp, sel_msg, ch);
        lex_fail(l, spos, tmp);
    } else {
        lex_fail(l, pos, msg);
    }
    return -2;
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * A quoted string at l->pos, unescaped as Go does (st_unquote_go in base:
 * the one unescaping in the tree; selector.c goes through here too). Fills
 * t->str/slen from the lexer's string buffer; errors return -2 with the
 * PromQL wording, or in selector mode selector.c's wording and column.
 */
static long lex_string(lexer_t *l, promql_token_t *t)
{
    static const char *const sel_msg[] = {
        [ST_UNQ_UNTERMINATED] = "unterminated quoted string",
        [ST_UNQ_BAD_X] = "invalid \\x escape in quoted string",
        [ST_UNQ_BAD_U] = "invalid \\%c escape in quoted string",
        [ST_UNQ_BAD_CODEPOINT] = "escape \\%c is not a valid code point",
        [ST_UNQ_BAD_OCTAL] = "invalid octal escape in quoted string",
        [ST_UNQ_UNKNOWN_ESCAPE] = "unknown escape sequence '\\%c'",
        [ST_UNQ_BAD_UTF8] = "quoted string is not valid UTF-8",
    };
    char *d0 = l->sb + l->sbused;
    st_unquote_t r;
    st_unquote_err_t e = st_unquote_go(l->s, l->len, l->pos, d0, &r);
    if (e != ST_UNQ_OK)
        return str_fail(l, r.errpos, st_unquote_strerror(e), r.end, sel_msg[e], r.esc);
    l->pos = r.end;
    t->str = d0;
    t->slen = r.len;
    l->sbused += t->slen + 1;
    return 0;
}

/* Try a duration at l->pos. Returns 1 (token filled), 0 (not a duration), -1 error. */
static int try_duration(lexer_t *l, promql_token_t *t)
{
    int64_t ms;
    size_t used;
    int rc = st_duration_parse(l->s + l->pos, l->len - l->pos, ST_DUR_ORDERED | ST_DUR_YEARS,
                               INT64_MAX, &ms, &used);
    if (rc == ST_ELIMIT)
        return (int)lex_fail(l, l->pos, "duration out of range");
    size_t p = l->pos + used;
    if (rc || (p < l->len && (is_alpha(l->s[p]) || is_digit(l->s[p]) || l->s[p] == '.')))
        return 0;
    t->type = PQ_DURATION;
    t->ms = ms;
    l->pos = p;
    return 1;
}

static long lex_number(lexer_t *l, promql_token_t *t)
{
    const char *s = l->s;
    size_t p = l->pos, b = p;
    int ok = 0;
    if (p + 1 < l->len && s[p] == '0' && (s[p + 1] == 'x' || s[p + 1] == 'X')) {
        p += 2;
        double v = 0;
        while (p < l->len && st_hexval(s[p]) >= 0) {
            v = v * 16 + st_hexval(s[p]);
            p++;
            ok = 1;
        }
        t->num = v;
    } else {
        while (p < l->len && is_digit(s[p]))
            p++, ok = 1;
        if (p < l->len && s[p] == '.') {
            p++;
            while (p < l->len && is_digit(s[p]))
                p++, ok = 1;
        }
        if (ok && p < l->len && (s[p] == 'e' || s[p] == 'E')) {
            size_t e = p + 1;
            if (e < l->len && (s[e] == '+' || s[e] == '-'))
                e++;
            if (e < l->len && is_digit(s[e])) {
                while (e < l->len && is_digit(s[e]))
                    e++;
                p = e;
            } else {
                ok = 0;
            }
        }
        if (ok) {
            char tmp[128], *buf = tmp;
            size_t n = p - b;
            if (n >= sizeof tmp && !(buf = malloc(n + 1)))
                return lex_fail(l, b, "out of memory");
            memcpy(buf, s + b, n);
            buf[n] = '\0';
            t->num = strtod(buf, NULL);
            if (buf != tmp)
                free(buf);
        }
    }
    if (!ok || (p < l->len && (is_alpha(s[p]) || is_digit(s[p]) || s[p] == '.')))
        return lex_fail(l, b, "bad number or duration syntax");
    t->type = PQ_NUMBER;
    l->pos = p;
    return 0;
}

long promql_lex_ex(const char *q, size_t len, unsigned flags, promql_token_t *toks, char *strbuf,
                   size_t *errpos, size_t *errtok, char *err, size_t errlen)
{
    lexer_t l = {.s = q,
                 .len = len,
                 .sel = (flags & PROMQL_LEX_SELECTOR) != 0,
                 .sb = strbuf,
                 .errpos = errpos,
                 .errtok = errtok,
                 .err = err,
                 .errlen = errlen};
    long n = 0;
    int braces = 0, brackets = 0;
    for (;;) {
        while (l.pos < len) {
            char c = q[l.pos];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                l.pos++;
            } else if (c == '#' && !l.sel) {
                while (l.pos < len && q[l.pos] != '\n')
                    l.pos++;
            } else {
                break;
            }
        }
        promql_token_t *t = &toks[n];
        memset(t, 0, sizeof *t);
        t->pos = (uint32_t)l.pos;
        l.tok = l.pos;
        if (l.pos >= len) {
            t->type = PQ_EOF;
            return n + 1;
        }
        char c = q[l.pos];
        char c2 = l.pos + 1 < len ? q[l.pos + 1] : '\0';
        int two = 0;
        switch (c) {
        case '{':
            t->type = PQ_LBRACE;
            braces++;
            break;
        case '}':
            t->type = PQ_RBRACE;
            if (braces)
                braces--;
            break;
        case '(':
            t->type = PQ_LPAREN;
            break;
        case ')':
            t->type = PQ_RPAREN;
            break;
        case '[':
            t->type = PQ_LBRACKET;
            brackets++;
            break;
        case ']':
            t->type = PQ_RBRACKET;
            if (brackets)
                brackets--;
            break;
        case ',':
            t->type = PQ_COMMA;
            break;
        case '@':
            t->type = PQ_AT;
            break;
        case '+':
            t->type = PQ_ADD;
            break;
        case '-':
            t->type = PQ_SUB;
            break;
        case '*':
            t->type = PQ_MUL;
            break;
        case '/':
            t->type = PQ_DIV;
            break;
        case '%':
            t->type = PQ_MOD;
            break;
        case '^':
            t->type = PQ_POW;
            break;
        case '=':
            if (c2 == '=')
                t->type = PQ_EQLC, two = 1;
            else if (c2 == '~')
                t->type = PQ_EQ_REGEX, two = 1;
            else
                t->type = PQ_ASSIGN;
            break;
        case '!':
            if (c2 == '=')
                t->type = PQ_NEQ, two = 1;
            else if (c2 == '~')
                t->type = PQ_NEQ_REGEX, two = 1;
            else
                return lex_fail(&l, l.pos, "unexpected character after '!'");
            break;
        case '<':
            if (c2 == '=')
                t->type = PQ_LTE, two = 1;
            else
                t->type = PQ_LSS;
            break;
        case '>':
            if (c2 == '=')
                t->type = PQ_GTE, two = 1;
            else
                t->type = PQ_GTR;
            break;
        case '"':
        case '\'':
        case '`':
            if (lex_string(&l, t) < 0)
                return -2;
            t->type = PQ_STRING;
            t->len = (uint32_t)(l.pos - t->pos);
            n++;
            continue;
        default:
            if (c == ':' && (braces || brackets)) {
                t->type = PQ_COLON;
                break;
            }
            if (is_digit(c) || (c == '.' && is_digit(c2))) {
                int r = try_duration(&l, t);
                if (r < 0)
                    return -1;
                if (r == 0 && lex_number(&l, t) < 0)
                    return -1;
                t->len = (uint32_t)(l.pos - t->pos);
                n++;
                continue;
            }
            if (is_alpha(c) || c == ':') {
                int colon = !(braces || brackets);
                while (l.pos < len &&
                       (is_alpha(q[l.pos]) || is_digit(q[l.pos]) || (colon && q[l.pos] == ':')))
                    l.pos++;
                t->type = PQ_IDENT;
                t->len = (uint32_t)(l.pos - t->pos);
                n++;
                continue;
            }
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected character: '%c'", c);
                return lex_fail(&l, l.pos, msg);
            }
            return lex_fail(&l, l.pos, "unexpected character");
        }
        l.pos += two ? 2 : 1;
        t->len = (uint32_t)(l.pos - t->pos);
        n++;
    }
}

static const char *op_text(promql_tok_t t)
{
    switch (t) {
    case PQ_ASSIGN:
        return "=";
    case PQ_EQ_REGEX:
        return "=~";
    case PQ_NEQ_REGEX:
        return "!~";
    case PQ_ADD:
        return "+";
    case PQ_SUB:
        return "-";
    case PQ_MUL:
        return "*";
    case PQ_DIV:
        return "/";
    case PQ_MOD:
        return "%";
    case PQ_POW:
        return "^";
    case PQ_EQLC:
        return "==";
    case PQ_NEQ:
        return "!=";
    case PQ_LSS:
        return "<";
    case PQ_LTE:
        return "<=";
    case PQ_GTR:
        return ">";
    case PQ_GTE:
        return ">=";
    default:
        return NULL;
    }
}

void promql_tok_describe(const char *q, const promql_token_t *t, char *out, size_t outlen)
{
    const char *op = op_text(t->type);
    int n = t->len > 40 ? 40 : (int)t->len;
    const char *kind = NULL;
    switch (t->type) {
    case PQ_EOF:
        snprintf(out, outlen, "end of input");
        return;
    case PQ_IDENT:
        kind = "identifier";
        break;
    case PQ_NUMBER:
        kind = "number";
        break;
    case PQ_DURATION:
        kind = "duration";
        break;
    case PQ_STRING:
        kind = "string";
        break;
    case PQ_AT:
        snprintf(out, outlen, "<@>");
        return;
    default:
        break;
    }
    if (kind) {
        /* raw text, with non-printable bytes shown as '?' */
        char tmp[48];
        for (int i = 0; i < n; i++) {
            char c = q[t->pos + i];
            tmp[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
        }
        tmp[n] = '\0';
        snprintf(out, outlen, "%s %s%s", kind, tmp, t->len > 40 ? "..." : "");
    } else if (op) {
        snprintf(out, outlen, "<op:%s>", op);
    } else {
        snprintf(out, outlen, "\"%c\"", q[t->pos]);
    }
}

int promql_fmt_number(st_buf_t *b, double v)
{
    char tmp[64];
    if (isnan(v))
        return ST_BUF_LIT(b, "NaN");
    if (isinf(v))
        return v > 0 ? ST_BUF_LIT(b, "Inf") : ST_BUF_LIT(b, "-Inf");
    int n = 0;
    if (v == trunc(v) && fabs(v) < 1e15) {
        n = snprintf(tmp, sizeof tmp, "%.0f", v);
        return st_buf_append(b, tmp, (size_t)n);
    }
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return st_buf_append(b, tmp, (size_t)n);
}

int promql_fmt_string(st_buf_t *b, const char *s, size_t len)
{
    int rc = ST_BUF_LIT(b, "\"");
    for (size_t i = 0; i < len && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            rc = st_buf_append(b, tmp, 2);
        } else if (c == '\n') {
            rc = ST_BUF_LIT(b, "\\n");
        } else if (c == '\t') {
            rc = ST_BUF_LIT(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            int n = snprintf(tmp, sizeof tmp, "\\x%02x", c);
            rc = st_buf_append(b, tmp, (size_t)n);
        } else {
            rc = st_buf_put_u8(b, c);
        }
    }
    return rc ? rc : ST_BUF_LIT(b, "\"");
}
