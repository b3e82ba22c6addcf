/* cli_util — pure helpers and plumbing shared by the subcommands. See cli.h. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "st_err.h"
#include "st_text.h"
#include "topo.h"

/* ---- durations and times ---------------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A plain decimal number [s, s+n) -> *out; false if anything else is there. */
static bool parse_plain_number(const char *s, double *out)
{
    if (*s == '\0')
        return false;
    const char *p = s;
    bool digits = false, dot = false;
    for (; *p; p++) {
        if (is_digit(*p))
            digits = true;
        else if (*p == '.' && !dot)
            dot = true;
        else
            return false;
    }
    if (!digits)
        return false;
    *out = strtod(s, NULL);
    return true;
}

int cli_parse_duration(const char *s, double *out_s)
{
    if (s == NULL || *s == '\0')
        return ST_EINVAL;
    if (parse_plain_number(s, out_s))
        return 0;
    double total = 0;
    const char *p = s;
    while (*p) {
        if (!is_digit(*p))
            return ST_EINVAL;
        char *end;
        double v = strtod(p, &end);
        p = end;
        double unit;
        if (strncmp(p, "ms", 2) == 0) {
            unit = 0.001;
            p += 2;
        } else {
            switch (*p) {
            case 's':
                unit = 1;
                break;
            case 'm':
                unit = 60;
                break;
            case 'h':
                unit = 3600;
                break;
            case 'd':
                unit = 86400;
                break;
            case 'w':
                unit = 7 * 86400;
                break;
            case 'y':
                unit = 365 * 86400;
                break;
            default:
                return ST_EINVAL;
            }
            p++;
        }
        total += v * unit;
    }
    *out_s = total;
    return 0;
}

/* Read exactly n digits. */
static bool digits_n(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static int parse_rfc3339(const char *s, double *out)
{
    const char *p = s;
    int Y, M, D, h = 0, m = 0, sec = 0;
    double frac = 0;
    if (!digits_n(&p, 4, &Y) || *p++ != '-' || !digits_n(&p, 2, &M) || *p++ != '-' ||
        !digits_n(&p, 2, &D))
        return ST_EINVAL;
    int offset = 0;
    if (*p != '\0') {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return ST_EINVAL;
        p++;
        if (!digits_n(&p, 2, &h) || *p++ != ':' || !digits_n(&p, 2, &m) || *p++ != ':' ||
            !digits_n(&p, 2, &sec))
            return ST_EINVAL;
        if (*p == '.') {
            const char *f = p;
            p++;
            if (!is_digit(*p))
                return ST_EINVAL;
            while (is_digit(*p))
                p++;
            frac = strtod(f, NULL);
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1, oh, om;
            p++;
            if (!digits_n(&p, 2, &oh) || *p++ != ':' || !digits_n(&p, 2, &om))
                return ST_EINVAL;
            offset = sign * (oh * 3600 + om * 60);
        } else {
            return ST_EINVAL;
        }
        if (*p != '\0')
            return ST_EINVAL;
    }
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return ST_EINVAL;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *out = (double)t - offset + frac;
    return 0;
}

int cli_parse_time(const char *s, double now, double *out)
{
    if (s == NULL || *s == '\0')
        return ST_EINVAL;
    if (strcmp(s, "now") == 0) {
        *out = now;
        return 0;
    }
    const char *rel = NULL;
    if (strncmp(s, "now", 3) == 0)
        rel = s + 3;
    else if (s[0] == '-' && strpbrk(s, "smhdwy") != NULL)
        rel = s;
    if (rel) {
        double d;
        if ((rel[0] != '-' && rel[0] != '+') || cli_parse_duration(rel + 1, &d) < 0)
            return ST_EINVAL;
        *out = rel[0] == '-' ? now - d : now + d;
        return 0;
    }
    if (parse_plain_number(s, out))
        return 0;
    return parse_rfc3339(s, out);
}

/* ---- numbers ------------------------------------------------------------------------------ */

double cli_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return sorted[0];
    if (p >= 100)
        return sorted[n - 1];
    double rank = ceil(p / 100.0 * (double)n - 1e-9);
    size_t i = rank < 1 ? 0 : (size_t)rank - 1;
    if (i >= n)
        i = n - 1;
    return sorted[i];
}

static void fmt_si(char *out, size_t cap, double v, const char *const *units, const char *sep)
{
    if (!isfinite(v) || v < 0) {
        snprintf(out, cap, "?");
        return;
    }
    int u = 0;
    while (v >= 999.5 && units[u + 1] != NULL) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%.0f%s%s", v, sep, units[0]);
    else if (v >= 99.95)
        snprintf(out, cap, "%.0f%s%s", v, sep, units[u]);
    else if (v >= 9.995)
        snprintf(out, cap, "%.1f%s%s", v, sep, units[u]);
    else
        snprintf(out, cap, "%.2f%s%s", v, sep, units[u]);
}

void cli_fmt_count(char *out, size_t cap, double v)
{
    static const char *const units[] = {"", "k", "M", "G", "T", "P", NULL};
    fmt_si(out, cap, v, units, "");
}

void cli_fmt_bytes(char *out, size_t cap, double bytes)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", NULL};
    fmt_si(out, cap, bytes, units, " ");
}

void cli_fmt_eta(char *out, size_t cap, double secs)
{
    if (!isfinite(secs) || secs < 0 || secs > 360000.0 * 24) {
        snprintf(out, cap, "--:--");
        return;
    }
    unsigned long t = (unsigned long)(secs + 0.5);
    if (t >= 3600)
        snprintf(out, cap, "%lu:%02lu:%02lu", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(out, cap, "%lu:%02lu", t / 60, t % 60);
}

/* ---- progress ----------------------------------------------------------------------------- */

size_t cli_progress_format(char *out, size_t cap, const cli_progress_t *p, bool tty, int width)
{
    if (cap == 0)
        return 0;
    double el = p->elapsed_s > 0 ? p->elapsed_s : 0;
    double rate = el > 0 ? (double)p->samples / el : 0;
    double frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total : 0;
    if (frac > 1)
        frac = 1;
    double eta = -1;
    if (p->bytes_total && p->bytes_done > 0 && el > 0)
        eta = (double)(p->bytes_total -
                       (p->bytes_done < p->bytes_total ? p->bytes_done : p->bytes_total)) *
              el / (double)p->bytes_done;
    int n;
    if (!tty) {
        if (p->bytes_total)
            n = snprintf(out, cap,
                         "progress: bytes=%llu/%llu (%.1f%%) lines=%llu samples=%llu "
                         "rate=%.0f samples/s rejected=%llu elapsed=%.1fs eta=%.0fs",
                         (unsigned long long)p->bytes_done, (unsigned long long)p->bytes_total,
                         frac * 100.0, (unsigned long long)p->lines, (unsigned long long)p->samples,
                         rate, (unsigned long long)p->rejected, el, eta < 0 ? 0 : eta);
        else
            n = snprintf(out, cap,
                         "progress: bytes=%llu lines=%llu samples=%llu rate=%.0f samples/s "
                         "rejected=%llu elapsed=%.1fs",
                         (unsigned long long)p->bytes_done, (unsigned long long)p->lines,
                         (unsigned long long)p->samples, rate, (unsigned long long)p->rejected, el);
        if (n < 0)
            n = 0;
        return (size_t)n < cap ? (size_t)n : cap - 1;
    }
    char done[32], total[32], lines[32], rt[32], tm[32];
    cli_fmt_bytes(done, sizeof(done), (double)p->bytes_done);
    cli_fmt_count(lines, sizeof(lines), (double)p->lines);
    cli_fmt_count(rt, sizeof(rt), rate);
    if (p->bytes_total) {
        enum { BAR = 12 };
        char bar[BAR + 1];
        int fill = (int)(frac * BAR);
        for (int i = 0; i < BAR; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[BAR] = '\0';
        cli_fmt_bytes(total, sizeof(total), (double)p->bytes_total);
        cli_fmt_eta(tm, sizeof(tm), eta);
        n = snprintf(out, cap, "[%s] %5.1f%%  %s/%s  %s lines  %s samples/s  ETA %s", bar,
                     frac * 100.0, done, total, lines, rt, tm);
    } else {
        cli_fmt_eta(tm, sizeof(tm), el);
        n = snprintf(out, cap, "%s  %s lines  %s samples/s  %s", done, lines, rt, tm);
    }
    if (n < 0)
        n = 0;
    size_t len = (size_t)n < cap ? (size_t)n : cap - 1;
    if (p->rejected && len + 1 < cap) {
        int m = snprintf(out + len, cap - len, "  %llu rejected", (unsigned long long)p->rejected);
        if (m > 0)
            len = len + (size_t)m < cap ? len + (size_t)m : cap - 1;
    }
    if (width > 1 && len > (size_t)(width - 1)) {
        len = (size_t)(width - 1);
        out[len] = '\0';
    }
    return len;
}

/* ---- line protocol ------------------------------------------------------------------------- */

uint32_t cli_lp_count_fields(const char *s, size_t n)
{
    size_t i = 0;
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == n || s[i] == '#')
        return 0;
    /* measurement and tags: up to the first unescaped space */
    for (; i < n && s[i] != ' '; i++)
        if (s[i] == '\\')
            i++;
    while (i < n && s[i] == ' ')
        i++;
    uint32_t count = 0;
    while (i < n) {
        for (; i < n && s[i] != '='; i++) /* key */
            if (s[i] == '\\')
                i++;
        if (i >= n)
            break;
        i++;
        if (i < n && s[i] == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            i++;
        } else {
            count++;
            while (i < n && s[i] != ',' && s[i] != ' ')
                i++;
        }
        if (i >= n || s[i] != ',')
            break;
        i++;
    }
    return count;
}

/* ---- JSON lines ----------------------------------------------------------------------------- */

uint64_t cli_json_line_samples(const char *s, size_t n)
{
    static const char key[] = "\"timestamps\"";
    const char *end = s + n;
    for (const char *p = s; p + sizeof(key) - 1 < end; p++) {
        p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1);
        if (p == NULL)
            return 0;
        const char *q = p + sizeof(key) - 1;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (q >= end || *q != ':')
            continue;
        for (q++; q < end && (*q == ' ' || *q == '\t');)
            q++;
        if (q >= end || *q != '[')
            continue;
        uint64_t c = 0;
        bool any = false;
        for (q++; q < end && *q != ']'; q++) {
            if (*q == ',')
                c++;
            else if (*q != ' ' && *q != '\t')
                any = true;
        }
        return any ? c + 1 : 0;
    }
    return 0;
}

/* ---- plumbing ----------------------------------------------------------------------------- */

/* "strata CMD: message" (and the --help hint for usage errors) on stderr. */
static void print_error(const char *cmd, bool usage, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    fprintf(stderr, "strata %s: %s\n", cmd, msg);
    if (usage)
        fprintf(stderr, "Try 'strata %s --help'.\n", cmd);
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_error(cmd, false, fmt, ap);
    va_end(ap);
    return CLI_EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_error(cmd, true, fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

static int stdout_error(void)
{
    return errno == EPIPE ? CLI_STDOUT_CLOSED : ST_EIO;
}

int cli_stdout_write(const void *p, size_t n)
{
    return n > 0 && fwrite(p, 1, n, stdout) != n ? stdout_error() : 0;
}

int cli_stdout_flush(void)
{
    return fflush(stdout) != 0 ? stdout_error() : 0;
}

atomic_bool cli_interrupted;

static void on_interrupt(int sig)
{
    atomic_store(&cli_interrupted, true);
    signal(sig, SIG_DFL);
}

void cli_catch_interrupt(void)
{
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_router(const char *opt, httpc_url_t *out, const char **shown)
{
    const char *r = opt;
    if (r == NULL || *r == '\0')
        r = getenv("STRATA_ROUTER");
    if (r == NULL || *r == '\0')
        r = CLI_DEFAULT_ROUTER;
    if (shown)
        *shown = r;
    return httpc_url_parse(r, out);
}

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || !is_digit(*s))
        return ST_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return ST_EINVAL;
    *out = v;
    return 0;
}

/*
 * --config FILE: the cluster.ini every process reads, loaded and checked by
 * topo (a bad file fails as strata-node --check does). The router to talk to
 * is the file's [router] listen (topo's default 127.0.0.1:8086 when absent,
 * which is where a router started with this file and no --listen listens),
 * as http://HOST:PORT; a wildcard host (0.0.0.0, ::) means this machine, so
 * it becomes the loopback address. The URL is written into `buf`.
 */
static int config_router(const char *cmd, const cli_common_t *c, char *buf, size_t cap)
{
    char err[1024];
    topo_t *t = NULL;
    if (topo_load_file(c->config, &t, err, sizeof err) != 0)
        return cli_fail(cmd, "%s", err);
    const topo_addr_t *a = &topo_router(t)->listen;
    const char *host = a->host;
    int v6 = strchr(host, ':') != NULL;
    if (*host == '\0' || strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    snprintf(buf, cap, "http://%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)a->port);
    topo_destroy(t);
    return 0;
}

static int common_router(const char *cmd, const cli_common_t *c, httpc_url_t *url,
                         const char **shown);

/* The CA file for https: --cacert, else $STRATA_CACERT, else none (the system's). */
static const char *common_cacert(const cli_common_t *c)
{
    const char *ca = c->cacert && *c->cacert ? c->cacert : getenv("STRATA_CACERT");
    return ca && *ca ? ca : NULL;
}

int cli_common_router(const char *cmd, const cli_common_t *c, httpc_url_t *url, const char **shown)
{
    int rc = common_router(cmd, c, url, shown);
    if (rc == 0)
        url->cacert = common_cacert(c);
    return rc;
}

static int common_router(const char *cmd, const cli_common_t *c, httpc_url_t *url,
                         const char **shown)
{
    static char from_file[TOPO_HOST_MAX + 32]; /* *shown may point here */
    int rc;
    if (c->config != NULL && (rc = config_router(cmd, c, from_file, sizeof from_file)) != 0)
        return rc;
    if (c->config != NULL && (c->router == NULL || *c->router == '\0')) {
        *shown = from_file; /* --router wins over --config, --config over $STRATA_ROUTER */
        if (httpc_url_parse(from_file, url) < 0)
            return cli_usage_error(cmd,
                                   "router URL '%s' from [router] listen in %s is not one the "
                                   "CLI can use (http://HOST:PORT, IPv4 or a name); pass "
                                   "--router URL",
                                   from_file, c->config);
        return 0;
    }
    if (cli_router(c->router, url, shown) < 0)
        return cli_usage_error(cmd, "bad router URL '%s' (want http[s]://HOST:PORT)", *shown);
    return 0;
}

httpc_conn_t *cli_common_conn(const cli_common_t *c, const httpc_url_t *url)
{
    return httpc_conn_create(url, CLI_CONNECT_TIMEOUT_MS, (int)(c->timeout * 1000));
}

int cli_get(httpc_conn_t *c, const char *target, httpc_resp_t *resp, st_buf_t *body)
{
    st_buf_reset(body);
    return httpc_request(c, "GET", target, NULL, NULL, 0, resp, httpc_collect, body);
}

/* ---- series, CSV, times ---------------------------------------------------------------------- */

static int put_quoted(st_buf_t *b, const char *s, size_t n)
{
    int rc = st_buf_put_u8(b, '"');
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (s[i] == '\\' || s[i] == '"')
            rc = st_buf_put_u8(b, '\\') < 0 ? ST_ENOMEM : st_buf_put_u8(b, (uint8_t)s[i]);
        else if (s[i] == '\n')
            rc = st_buf_append(b, "\\n", 2);
        else
            rc = st_buf_put_u8(b, (uint8_t)s[i]);
    }
    return rc < 0 ? rc : st_buf_put_u8(b, '"');
}

int cli_fmt_series(st_buf_t *b, json_t *metric)
{
    json_t *name = json_object_get(metric, "__name__");
    const char *nm = json_string_value(name);
    size_t nm_len = json_string_length(name);
    int rc = 0;
    bool name_inside = nm && !st_prom_metric_name_ok(nm, nm_len);
    if (nm && !name_inside)
        rc = st_buf_append(b, nm, nm_len);
    const char *key;
    json_t *l;
    size_t nl = 0;
    json_object_foreach(metric, key, l) nl += strcmp(key, "__name__") != 0;
    if (nl == 0 && !name_inside) {
        if (nm == NULL)
            rc = st_buf_append(b, "{}", 2);
        return rc;
    }
    if (rc == 0)
        rc = st_buf_put_u8(b, '{');
    bool first = true;
    if (name_inside && rc == 0) {
        rc = put_quoted(b, nm, nm_len);
        first = false;
    }
    json_object_foreach(metric, key, l)
    {
        if (rc < 0)
            break;
        if (strcmp(key, "__name__") == 0)
            continue;
        if (!first)
            rc = st_buf_put_u8(b, ',');
        first = false;
        size_t kl = strlen(key), vl;
        if (rc == 0)
            rc =
                st_prom_label_name_ok(key, kl) ? st_buf_append(b, key, kl) : put_quoted(b, key, kl);
        if (rc == 0)
            rc = st_buf_put_u8(b, '=');
        char nb[CLI_JSON_NUMBUF];
        const char *v = cli_json_text(l, nb, &vl);
        if (rc == 0)
            rc = put_quoted(b, v, vl);
    }
    return rc < 0 ? rc : st_buf_put_u8(b, '}');
}

int cli_csv_field(st_buf_t *b, const char *s, size_t n)
{
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote)
        return st_buf_append(b, s, n);
    int rc = st_buf_put_u8(b, '"');
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = s[i] == '"' ? st_buf_append(b, "\"\"", 2) : st_buf_put_u8(b, (uint8_t)s[i]);
    return rc < 0 ? rc : st_buf_put_u8(b, '"');
}

void cli_fmt_time(char *out, size_t cap, double unix_s)
{
    if (!isfinite(unix_s)) {
        snprintf(out, cap, "?");
        return;
    }
    double fl = floor(unix_s);
    time_t t = (time_t)fl;
    int ms = (int)((unix_s - fl) * 1000.0 + 0.5);
    if (ms >= 1000) {
        t++;
        ms -= 1000;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}
