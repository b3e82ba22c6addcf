/*
 * sql_val — SQL values: type names, text output as PostgreSQL prints it,
 * timestamp and interval literals. Timestamps are UTC milliseconds
 * (timestamptz); intervals milliseconds (months and years are not
 * intervals here: their length varies).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sql.h"
#include "sql_exec_int.h"
#include "st_err.h"
#include "st_text.h"
#include "st_time.h"

const char *sql_type_name(sql_type_t t)
{
    switch (t) {
    case SQL_BOOL:
        return "boolean";
    case SQL_INT:
        return "bigint";
    case SQL_FLOAT:
        return "double precision";
    case SQL_TEXT:
        return "text";
    case SQL_TIME:
        return "timestamp with time zone";
    case SQL_INTERVAL:
        return "interval";
    default:
        return "unknown";
    }
}

static int digits(const char *s, size_t n, size_t *i, int cnt, int *out)
{
    int v = 0;
    for (int k = 0; k < cnt; k++, (*i)++) {
        if (*i >= n || !isdigit((unsigned char)s[*i]))
            return -1;
        v = v * 10 + (s[*i] - '0');
    }
    *out = v;
    return 0;
}

int sql_parse_time(const char *s, size_t n, int64_t *ms)
{
    size_t i = 0;
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0;
    while (i < n && s[i] == ' ')
        i++;
    if (digits(s, n, &i, 4, &y) || i >= n || s[i++] != '-' || digits(s, n, &i, 2, &mo) || i >= n ||
        s[i++] != '-' || digits(s, n, &i, 2, &d))
        return ST_EPARSE;
    if (mo < 1 || mo > 12 || d < 1 || d > 31)
        return ST_EPARSE;
    int64_t off = 0;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        if (digits(s, n, &i, 2, &h) || i >= n || s[i++] != ':' || digits(s, n, &i, 2, &mi))
            return ST_EPARSE;
        if (i < n && s[i] == ':') {
            i++;
            if (digits(s, n, &i, 2, &se))
                return ST_EPARSE;
            if (i < n && s[i] == '.') {
                i++;
                int nd = 0;
                while (i < n && isdigit((unsigned char)s[i])) {
                    if (nd < 3)
                        frac = frac * 10 + (s[i] - '0');
                    nd++;
                    i++;
                }
                if (!nd)
                    return ST_EPARSE;
                for (; nd < 3; nd++)
                    frac *= 10;
            }
        }
        if (h > 23 || mi > 59 || se > 60)
            return ST_EPARSE;
        while (i < n && s[i] == ' ')
            i++;
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i++] == '-' ? -1 : 1, oh, om = 0;
            if (digits(s, n, &i, 2, &oh))
                return ST_EPARSE;
            if (i < n && s[i] == ':')
                i++;
            if (i < n && isdigit((unsigned char)s[i]) && digits(s, n, &i, 2, &om))
                return ST_EPARSE;
            off = sign * ((int64_t)oh * 3600 + om * 60) * 1000;
        } else if (i + 3 <= n && !strncasecmp(s + i, "UTC", 3)) {
            i += 3;
        }
    }
    while (i < n && s[i] == ' ')
        i++;
    if (i != n)
        return ST_EPARSE;
    int64_t days = st_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *ms = ((days * 86400 + h * 3600 + mi * 60 + se) * 1000 + frac) - off;
    return 0;
}

static const struct {
    const char *name;
    int64_t ms;
} units[] = {{"millisecond", 1}, {"milliseconds", 1}, {"ms", 1},           {"msec", 1},
             {"second", 1000},   {"seconds", 1000},   {"sec", 1000},       {"secs", 1000},
             {"s", 1000},        {"minute", 60000},   {"minutes", 60000},  {"min", 60000},
             {"mins", 60000},    {"m", 60000},        {"hour", 3600000},   {"hours", 3600000},
             {"h", 3600000},     {"hr", 3600000},     {"hrs", 3600000},    {"day", 86400000},
             {"days", 86400000}, {"d", 86400000},     {"week", 604800000}, {"weeks", 604800000},
             {"w", 604800000}};

int sql_parse_interval(const char *s, size_t n, int64_t *ms)
{
    size_t i = 0;
    int64_t total = 0;
    int any = 0;
    while (i < n && s[i] == ' ')
        i++;
    /* hh:mm:ss */
    if (i + 8 <= n && s[i + 2] == ':') {
        int h, m, sec;
        size_t j = i;
        if (!digits(s, n, &j, 2, &h) && s[j++] == ':' && !digits(s, n, &j, 2, &m) && j < n &&
            s[j++] == ':' && !digits(s, n, &j, 2, &sec) && j == n) {
            *ms = ((int64_t)h * 3600 + m * 60 + sec) * 1000;
            return 0;
        }
    }
    while (i < n) {
        double v = 0;
        size_t st = i;
        while (i < n && isdigit((unsigned char)s[i]))
            v = v * 10 + (s[i++] - '0');
        if (i < n && s[i] == '.') {
            double f = 0.1;
            i++;
            while (i < n && isdigit((unsigned char)s[i])) {
                v += (s[i++] - '0') * f;
                f /= 10;
            }
        }
        if (i == st || v > 1e12)
            return ST_EPARSE;
        while (i < n && s[i] == ' ')
            i++;
        size_t us = i;
        while (i < n && isalpha((unsigned char)s[i]))
            i++;
        size_t ul = i - us;
        int64_t unit = -1;
        for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
            if (strlen(units[k].name) == ul && !strncasecmp(units[k].name, s + us, ul))
                unit = units[k].ms;
        if (unit < 0)
            return ST_EPARSE;
        total += (int64_t)llround(v * (double)unit);
        any = 1;
        while (i < n && (s[i] == ' ' || s[i] == ','))
            i++;
    }
    if (!any)
        return ST_EPARSE;
    *ms = total;
    return 0;
}

static char *put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* "YYYY-MM-DD HH:MM:SS[.mmm]+00" into buf (>= 48 bytes): its length. Digits
 * are written directly (no snprintf): result sets print a time per row. */
size_t sql_time_chars(char *buf, int64_t ms)
{
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000;
    /* rows come in time order: the date of the last day, kept per thread */
    static _Thread_local int64_t last_day = INT64_MIN;
    static _Thread_local char last_date[32];
    static _Thread_local size_t last_len;
    char *p = buf;
    if (days != last_day) {
        int64_t y;
        unsigned mo, d;
        st_civil_from_days(days, &y, &mo, &d);
        char *q = last_date;
        if (y >= 0 && y <= 9999) {
            q = put2(q, (unsigned)(y / 100));
            q = put2(q, (unsigned)(y % 100));
        } else {
            q += snprintf(q, 24, "%04lld", (long long)y);
        }
        *q++ = '-';
        q = put2(q, mo);
        *q++ = '-';
        q = put2(q, d);
        *q++ = ' ';
        last_len = (size_t)(q - last_date);
        last_day = days;
    }
    memcpy(p, last_date, last_len);
    p += last_len;
    p = put2(p, (unsigned)(rem / 3600000));
    *p++ = ':';
    p = put2(p, (unsigned)(rem / 60000 % 60));
    *p++ = ':';
    p = put2(p, (unsigned)(rem / 1000 % 60));
    if (rem % 1000) {
        unsigned f = (unsigned)(rem % 1000);
        *p++ = '.';
        *p++ = (char)('0' + f / 100);
        p = put2(p, f % 100);
    }
    memcpy(p, "+00", 3);
    return (size_t)(p + 3 - buf);
}

static int fmt_time(st_buf_t *b, int64_t ms)
{
    char buf[64];
    return st_buf_append(b, buf, sql_time_chars(buf, ms));
}

size_t sql_fmt_integral(char *buf, double v)
{
    if (!(v > -1e15 && v < 1e15) || v == 0)
        return 0;
    int64_t i = (int64_t)v;
    if ((double)i != v)
        return 0;
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
    do
        tmp[n++] = (char)('0' + u % 10);
    while (u /= 10);
    if (i < 0)
        buf[k++] = '-';
    while (n)
        buf[k++] = tmp[--n];
    return k;
}

int sql_val_text(st_buf_t *b, const sql_val_t *v)
{
    char buf[64];
    int n;
    switch (v->type) {
    case SQL_NULL:
        return 0;
    case SQL_BOOL:
        return st_buf_append(b, v->u.i ? "t" : "f", 1);
    case SQL_INT:
        n = snprintf(buf, sizeof buf, "%lld", (long long)v->u.i);
        return st_buf_append(b, buf, (size_t)n);
    case SQL_FLOAT:
        if (isnan(v->u.f))
            return ST_BUF_LIT(b, "NaN");
        if (isinf(v->u.f))
            return v->u.f > 0 ? ST_BUF_LIT(b, "Infinity") : ST_BUF_LIT(b, "-Infinity");
        if ((n = (int)sql_fmt_integral(buf, v->u.f)) > 0)
            return st_buf_append(b, buf, (size_t)n);
        return st_fmt_double_g(b, v->u.f);
    case SQL_TEXT:
        return st_buf_append(b, v->u.t.s, v->u.t.len);
    case SQL_TIME:
        return fmt_time(b, v->u.i);
    case SQL_INTERVAL: {
        int64_t ms = v->u.i < 0 ? -v->u.i : v->u.i;
        int64_t days = ms / 86400000;
        ms %= 86400000;
        n = 0;
        if (v->u.i < 0)
            buf[n++] = '-';
        if (days)
            n += snprintf(buf + n, sizeof buf - (size_t)n, "%lld day%s ", (long long)days,
                          days == 1 ? "" : "s");
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%02d:%02d:%02d", (int)(ms / 3600000),
                      (int)(ms / 60000 % 60), (int)(ms / 1000 % 60));
        if (ms % 1000)
            n += snprintf(buf + n, sizeof buf - (size_t)n, ".%03d", (int)(ms % 1000));
        return st_buf_append(b, buf, (size_t)n);
    }
    }
    return 0;
}

/* Escape s for a PCRE2 pattern. */
void sql_re_escape(st_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strchr("\\.+*?()|[]{}^$", s[i]))
            st_buf_put_u8(b, '\\');
        st_buf_put_u8(b, (uint8_t)s[i]);
    }
}

/* LIKE pattern -> anchored regex ('%' any, '_' one, '\' escapes). */
void sql_like_regex(st_buf_t *b, const char *s, size_t n, int ci)
{
    if (ci)
        ST_BUF_LIT(b, "(?i)");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            sql_re_escape(b, s + ++i, 1);
        else if (s[i] == '%')
            ST_BUF_LIT(b, ".*");
        else if (s[i] == '_')
            st_buf_put_u8(b, '.');
        else
            sql_re_escape(b, s + i, 1);
    }
}
