/*
 * lp — InfluxDB line protocol parser; the grammar and the rule decisions are
 * documented in lp.h.
 *
 * How a body is walked (lp_parse):
 *   1. Skip leading spaces; blank lines, CR/LF and '#' comments are consumed.
 *   2. parse_line() reads one point with one forward pass. Every scan is
 *      bounded by `lim` = line start + max_line, so a hostile line costs at
 *      most max_line bytes of work and scratch. Tokens are slices of the body;
 *      a token that contains escapes is unescaped into the scratch arena.
 *   3. On success the point is delivered. On error, skip_line() finds the end
 *      of the bad line (quote-aware, like InfluxDB 1.x scanLine, so a string
 *      with a raw newline does not produce a second error) and on_error gets
 *      the reason; if the bad line is longer than max_line the reason becomes
 *      "line too long".
 *
 * Scratch: a chain of blocks; reset per line. After a line needed more than
 * the first block, the chain is replaced by one block of the total size, so
 * steady state is one block and no malloc per line.
 *
 * Numbers: floats use an exact fast path (mantissa < 2^53 and |exp| <= 22:
 * one IEEE multiply or divide of exact values is correctly rounded) and fall
 * back to strtod_l() in the "C" locale. Integers are accumulated in uint64
 * with explicit overflow checks (no UB).
 */
#include "lp.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_text.h"

/* ---- character classes ------------------------------------------------- */

enum {
    C_MSTOP = 1,  /* ends a measurement run: , space \ controls */
    C_KSTOP = 2,  /* ends a key/tag-value run: , = space \ controls */
    C_VSTOP = 4,  /* ends an unquoted field value / timestamp: , space CR LF */
    C_MESC = 8,   /* escapable in a measurement: , space */
    C_KESC = 16,  /* escapable in keys and tag values: , = space */
    C_CTRL = 32,  /* 0x00-0x1f, 0x7f */
    C_DIGIT = 64, /* 0-9 */
    C_SESC = 128, /* escapable in a string field value: " \ */
};

static uint8_t cls[256];
static locale_t c_locale;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void lp_init(void)
{
    for (int c = 0; c < 256; c++) {
        uint8_t v = 0;
        if (c < 0x20 || c == 0x7f)
            v |= C_CTRL | C_MSTOP | C_KSTOP;
        if (c == ',' || c == ' ' || c == '\\')
            v |= C_MSTOP | C_KSTOP;
        if (c == '=')
            v |= C_KSTOP;
        if (c == ',' || c == ' ' || c == '\r' || c == '\n')
            v |= C_VSTOP;
        if (c == ',' || c == ' ')
            v |= C_MESC | C_KESC;
        if (c == '=')
            v |= C_KESC;
        if (c >= '0' && c <= '9')
            v |= C_DIGIT;
        if (c == '"' || c == '\\')
            v |= C_SESC;
        cls[c] = v;
    }
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

#define CL(c) cls[(unsigned char)(c)]

/* ---- parser state ------------------------------------------------------- */

typedef struct blk {
    struct blk *next;
    size_t cap;
    size_t used;
    /* data follows; the header is 24 bytes, so data is 8-byte aligned */
} blk_t;

#define BLK_DATA(b) ((char *)((b) + 1))
#define ARENA_FIRST (64u * 1024u)
#define DEDUP_LINEAR 16u
#define SORT_CACHE_MAX 64u
#define DEDUP_BITS 12u /* hash table slots: 4096 >= 2 * max_fields default */

struct lp_parser {
    lp_precision_t prec;
    int64_t default_ts;
    size_t max_line;
    uint32_t max_fields;
    int series;
    int names_only; /* series mode without label arrays (lp_opts_t) */
    lp_stats_t st;

    blk_t *head, *cur;
    size_t arena_total;

    st_label_t *tags;
    uint32_t tags_cap;
    lp_field_t *fields;
    uint32_t fields_cap;
    lp_series_t *ser;
    uint32_t ser_cap;
    uint32_t *dedup; /* open-addressing table of field index + 1 */
    uint32_t dedup_size;
    int dedup_ready;           /* the table holds this line's fields */
    uint32_t sort_sig, sort_n; /* tag layout of the last sorted line */
    uint8_t sort_perm[SORT_CACHE_MAX];

    /* error of the current line */
    const char *err_pos;
    int err_fields;
    int err_quoted;
    char qbuf[2][112];
    char reason[384];
};

/* ---- scratch arena ------------------------------------------------------- */

static void *arena_alloc(lp_parser_t *P, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    blk_t *b = P->cur;
    if (b->cap - b->used >= n) {
        void *r = BLK_DATA(b) + b->used;
        b->used += n;
        return r;
    }
    size_t cap = P->arena_total;
    if (cap < n)
        cap = n;
    blk_t *nb = malloc(sizeof *nb + cap);
    if (!nb)
        return NULL;
    nb->next = NULL;
    nb->cap = cap;
    nb->used = n;
    b->next = nb;
    P->cur = nb;
    P->arena_total += cap;
    return BLK_DATA(nb);
}

static void arena_reset(lp_parser_t *P)
{
    blk_t *h = P->head;
    if (h->next) {
        blk_t *b = h->next;
        while (b) {
            blk_t *n = b->next;
            free(b);
            b = n;
        }
        h->next = NULL;
        /* one block big enough for what the last line needed */
        blk_t *nh = malloc(sizeof *nh + P->arena_total);
        if (nh) {
            free(h);
            nh->next = NULL;
            nh->cap = P->arena_total;
            h = P->head = nh;
        } else {
            P->arena_total = h->cap;
        }
    }
    h->used = 0;
    P->cur = h;
}

/* ---- errors -------------------------------------------------------------- */

/* A printable, truncated copy of a token for reasons. */
static const char *qt(lp_parser_t *P, int slot, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *d = P->qbuf[slot];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o >= 80) {
            memcpy(d + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) {
            d[o++] = (char)c;
        } else {
            d[o++] = '\\';
            d[o++] = 'x';
            d[o++] = hex[c >> 4];
            d[o++] = hex[c & 15];
        }
    }
    d[o] = '\0';
    return d;
}

#if defined(__GNUC__)
__attribute__((format(printf, 6, 7)))
#endif
static int
fail(lp_parser_t *P, const char *pos, int in_fields, int quoted, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->reason, sizeof P->reason, fmt, ap);
    va_end(ap);
    P->err_pos = pos;
    P->err_fields = in_fields;
    P->err_quoted = quoted;
    return code;
}

/* ---- numbers ------------------------------------------------------------- */

/*
 * The decimal digits at s[*i..] of a float: up to 19 significant digits go
 * into *mant (*nd of them); in the integer part (frac 0) each digit beyond
 * those raises *exp10, in the fraction (frac 1) each kept digit lowers it;
 * a dropped nonzero digit sets *truncated. Returns how many digits it read.
 */
static inline int take_digits(const char *s, size_t n, size_t *i, int frac, uint64_t *mant, int *nd,
                              long *exp10, int *truncated)
{
    int digits = 0;
    for (; *i < n && (CL(s[*i]) & C_DIGIT); (*i)++, digits++) {
        unsigned d = (unsigned)(s[*i] - '0');
        if (*nd < 19) {
            if (*mant || d) {
                *mant = *mant * 10 + d;
                (*nd)++;
            }
            *exp10 -= frac;
        } else {
            *exp10 += !frac;
            *truncated |= d != 0;
        }
    }
    return digits;
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

int lp_parse_float(const char *s, size_t n, double *out)
{
    pthread_once(&init_once, lp_init); /* the character classes below */
    size_t i = 0;
    int neg = 0;
    if (i < n && s[i] == '-') {
        neg = 1;
        i++;
    }
    uint64_t mant = 0;
    int nd = 0;        /* significant digits kept in mant */
    int truncated = 0; /* nonzero digits dropped beyond 19 */
    long exp10 = 0;
    int digits = take_digits(s, n, &i, 0, &mant, &nd, &exp10, &truncated);
    if (i < n && s[i] == '.') {
        i++;
        digits += take_digits(s, n, &i, 1, &mant, &nd, &exp10, &truncated);
    }
    if (digits == 0)
        return ST_EPARSE;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            eneg = s[i] == '-';
            i++;
        }
        if (i >= n || !(CL(s[i]) & C_DIGIT))
            return ST_EPARSE;
        long e = 0;
        for (; i < n && (CL(s[i]) & C_DIGIT); i++)
            if (e < 100000)
                e = e * 10 + (s[i] - '0');
        exp10 += eneg ? -e : e;
    }
    if (i != n)
        return ST_EPARSE;

    if (mant == 0 && !truncated) {
        *out = neg ? -0.0 : 0.0;
        return 0;
    }
    if (!truncated && mant <= (1ull << 53)) {
        double v = (double)mant;
        if (exp10 >= 0 && exp10 <= 22) {
            v *= pow10_exact[exp10];
            *out = neg ? -v : v;
            return 0;
        }
        if (exp10 < 0 && exp10 >= -22) {
            v /= pow10_exact[-exp10];
            *out = neg ? -v : v;
            return 0;
        }
        if (exp10 > 22 && exp10 <= 22 + 15) {
            /* mant * 10^(exp10-22) may still be an exact integer < 2^53 */
            uint64_t m = mant;
            long k = exp10 - 22;
            while (k > 0 && m <= (1ull << 53) / 10) {
                m *= 10;
                k--;
            }
            if (k == 0) {
                v = (double)m * 1e22;
                *out = neg ? -v : v;
                return 0;
            }
        }
    }
    /* slow path: the token is known to be valid */
    char stackbuf[128];
    char *tmp = n < sizeof stackbuf ? stackbuf : malloc(n + 1);
    if (!tmp)
        return ST_ENOMEM;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double v = c_locale ? strtod_l(tmp, NULL, c_locale) : strtod(tmp, NULL);
    if (tmp != stackbuf)
        free(tmp);
    if (isinf(v))
        return ST_ELIMIT;
    *out = v;
    return 0;
}

/*
 * Decimal digits s[0..n) (n >= 1) as an integer <= lim: ST_EPARSE on a
 * non-digit, ST_ELIMIT when the value is over lim (after checking every
 * byte, so a bad character wins). The one digit loop for i and u fields.
 */
static int parse_digits(const char *s, size_t n, uint64_t lim, uint64_t *out)
{
    uint64_t acc = 0;
    int over = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(CL(s[i]) & C_DIGIT))
            return ST_EPARSE;
        unsigned d = (unsigned)(s[i] - '0');
        if (acc > (lim - d) / 10)
            over = 1;
        else
            acc = acc * 10 + d;
    }
    if (over)
        return ST_ELIMIT;
    *out = acc;
    return 0;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    return n == 0 ? ST_EPARSE : parse_digits(s, n, UINT64_MAX, out);
}

/* [-]digits -> int64. 0, ST_EPARSE, ST_ELIMIT. */
static int parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n)
        return ST_EPARSE;
    uint64_t acc;
    int rc = parse_digits(s + i, n - i, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &acc);
    if (rc)
        return rc;
    if (neg)
        *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    else
        *out = (int64_t)acc;
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && a < 0)
        q--;
    return q;
}

/* The precisions: one table for the names, the units and the list in error
 * messages. ns_per_unit is how many nanoseconds one unit of it is. */
#define NS_PER_MS 1000000LL
static const struct {
    const char *name;
    lp_precision_t prec;
    int64_t ns_per_unit;
} PRECISIONS[] = {
    {"ns", LP_PREC_NS, 1LL},
    {"n", LP_PREC_NS, 1LL},
    {"us", LP_PREC_US, 1000LL},
    {"u", LP_PREC_US, 1000LL},
    {"ms", LP_PREC_MS, NS_PER_MS},
    {"s", LP_PREC_S, 1000 * NS_PER_MS},
    {"m", LP_PREC_M, 60 * 1000 * NS_PER_MS},
    {"h", LP_PREC_H, 3600 * 1000 * NS_PER_MS},
};
#define NPRECISIONS (sizeof PRECISIONS / sizeof PRECISIONS[0])

int lp_ts_to_ms(int64_t ts, lp_precision_t prec, int64_t *out)
{
    for (size_t i = 0; i < NPRECISIONS; i++) {
        if (PRECISIONS[i].prec != prec)
            continue;
        int64_t u = PRECISIONS[i].ns_per_unit;
        if (u <= NS_PER_MS) {
            *out = floor_div(ts, NS_PER_MS / u);
            return 0;
        }
        int64_t mul = u / NS_PER_MS;
        if (ts > INT64_MAX / mul || ts < INT64_MIN / mul)
            return ST_ELIMIT;
        *out = ts * mul;
        return 0;
    }
    return ST_EINVAL;
}

int lp_precision_parse(const char *s, size_t n, lp_precision_t *out)
{
    if (n == 0) {
        *out = LP_PREC_NS;
        return 0;
    }
    for (size_t i = 0; i < NPRECISIONS; i++) {
        if (strlen(PRECISIONS[i].name) == n && memcmp(PRECISIONS[i].name, s, n) == 0) {
            *out = PRECISIONS[i].prec;
            return 0;
        }
    }
    return ST_EINVAL;
}

static char precision_names[64];

static void precision_names_init(void)
{
    size_t off = 0;
    for (size_t i = 0; i < NPRECISIONS; i++)
        off += (size_t)snprintf(precision_names + off, sizeof precision_names - off, "%s%s",
                                i ? ", " : "", PRECISIONS[i].name);
}

const char *lp_precision_names(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, precision_names_init);
    return precision_names;
}

/* ---- tokens --------------------------------------------------------------- */

/*
 * find_stop: the first byte at or after p (before lim) in the stop set of
 * `kind` (K_MEAS: , space \ controls; K_KEY: the same plus '='; K_VAL:
 * , space CR LF), or lim. ORs 0x80 into *hb if a skipped byte has the high
 * bit set. SSE2 looks at 16 bytes at a time and never reads past lim.
 */
enum { K_MEAS, K_KEY, K_VAL };

#if defined(__SSE2__)
#include <emmintrin.h>

static inline unsigned stop_mask(__m128i x, int kind)
{
    __m128i m;
    if (kind == K_VAL) {
        m = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(',')),
                         _mm_cmpeq_epi8(x, _mm_set1_epi8(' ')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('\n')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('\r')));
        return (unsigned)_mm_movemask_epi8(m);
    }
    m = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(',')), _mm_cmpeq_epi8(x, _mm_set1_epi8(' ')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('\\')));
    if (kind == K_KEY)
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('=')));
    /* controls: x <= 0x1f (unsigned) or x == 0x7f */
    m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f)));
    return (unsigned)_mm_movemask_epi8(m);
}
#endif

static inline const char *find_stop(const char *p, const char *lim, int kind, unsigned *hb)
{
    const uint8_t bit = kind == K_MEAS ? C_MSTOP : kind == K_KEY ? C_KSTOP : C_VSTOP;
#if defined(__SSE2__)
    while (lim - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m = stop_mask(x, kind);
        unsigned h = (unsigned)_mm_movemask_epi8(x);
        if (m) {
            unsigned i = (unsigned)__builtin_ctz(m);
            if (h & ((1u << i) - 1))
                *hb |= 0x80;
            return p + i;
        }
        if (h)
            *hb |= 0x80;
        p += 16;
    }
#endif
    unsigned h = 0;
    while (p < lim && !(CL(*p) & bit)) {
        h |= (unsigned char)*p;
        p++;
    }
    *hb |= h;
    return p;
}

/*
 * Scan a name run (measurement, key, tag value): stops at a stop character
 * that is not part of an escape. A backslash before an `escm` character
 * escapes it; any other backslash is literal.
 */
static inline const char *scan_name(const char *p, const char *lim, int kind, int *esc,
                                    unsigned *hb)
{
    const uint8_t escm = kind == K_MEAS ? C_MESC : C_KESC;
    for (;;) {
        p = find_stop(p, lim, kind, hb);
        if (p >= lim || *p != '\\')
            return p;
        if (p + 1 < lim && (CL(p[1]) & escm)) {
            *esc = 1;
            p += 2;
        } else {
            p++;
        }
    }
}

/* Unescape [s, s+n) into scratch; the result goes to out and outn. */
static int unescape(lp_parser_t *P, const char *s, size_t n, uint8_t escm, const char **out,
                    uint32_t *outn)
{
    char *d = arena_alloc(P, n ? n : 1);
    if (!d)
        return ST_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && (CL(s[i + 1]) & escm))
            i++;
        d[o++] = s[i];
    }
    *out = d;
    *outn = (uint32_t)o;
    return 0;
}

static inline int at_eol(const char *p, const char *lim, const char *end)
{
    return p >= lim || *p == '\n' || (*p == '\r' && (p + 1 >= end || p[1] == '\n'));
}

static int is_nl(const char *p, const char *end)
{
    return *p == '\n' || (*p == '\r' && (p + 1 >= end || p[1] == '\n'));
}

static int slice_cmp(const char *a, uint32_t na, const char *b, uint32_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c)
        return c;
    return na < nb ? -1 : na > nb;
}

static int label_qcmp(const void *a, const void *b)
{
    const st_label_t *x = a, *y = b;
    return slice_cmp(x->name, x->name_len, y->name, y->name_len);
}

static int grow(void **arr, uint32_t *cap, size_t elem)
{
    uint32_t ncap = *cap ? *cap * 2 : 16;
    void *n = realloc(*arr, (size_t)ncap * elem);
    if (!n)
        return ST_ENOMEM;
    *arr = n;
    *cap = ncap;
    return 0;
}

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* a[0..n) == b[0..n), without a libc call for n <= 16 */
static inline int key_eq(const char *a, const char *b, uint32_t n)
{
    if (n >= 8) {
        if (load64(a) != load64(b) || load64(a + n - 8) != load64(b + n - 8))
            return 0;
        return n <= 16 || memcmp(a + 8, b + 8, n - 16) == 0;
    }
    for (uint32_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* Name order of two labels with non-empty names. */
static inline int name_cmp(const st_label_t *a, const st_label_t *b)
{
    unsigned char ca = (unsigned char)a->name[0], cb = (unsigned char)b->name[0];
    if (ca != cb)
        return ca < cb ? -1 : 1;
    return slice_cmp(a->name, a->name_len, b->name, b->name_len);
}

/*
 * Sort the line's tags by name. Lines of one body usually share one tag
 * layout, so the permutation of the previous line is tried first: insertion
 * sort then only verifies (n-1 compares). Returns the index of a duplicate
 * name in the sorted array, or -1.
 */
static long sort_tags(lp_parser_t *P, uint32_t nt)
{
    st_label_t *t = P->tags;
    if (nt > SORT_CACHE_MAX) {
        qsort(t, nt, sizeof *t, label_qcmp);
        for (uint32_t i = 1; i < nt; i++)
            if (t[i - 1].name_len == t[i].name_len &&
                memcmp(t[i - 1].name, t[i].name, t[i].name_len) == 0)
                return i;
        return -1;
    }
    uint32_t sig = nt;
    for (uint32_t i = 0; i < nt; i++)
        sig = sig * 131u + t[i].name_len * 7u + (unsigned char)t[i].name[0];
    uint8_t idx[SORT_CACHE_MAX];
    if (sig == P->sort_sig && nt == P->sort_n) {
        memcpy(idx, P->sort_perm, nt);
    } else {
        for (uint32_t i = 0; i < nt; i++)
            idx[i] = (uint8_t)i;
    }
    long dup = -1;
    for (uint32_t i = 1; i < nt; i++) {
        uint8_t x = idx[i];
        uint32_t j = i;
        int c = 1;
        while (j > 0 && (c = name_cmp(&t[idx[j - 1]], &t[x])) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        if (c == 0)
            dup = 0;
        idx[j] = x;
    }
    memcpy(P->sort_perm, idx, nt);
    P->sort_sig = sig;
    P->sort_n = nt;
    int identity = 1;
    for (uint32_t i = 0; i < nt; i++)
        identity &= idx[i] == i;
    if (!identity) {
        st_label_t tmp[SORT_CACHE_MAX];
        for (uint32_t i = 0; i < nt; i++)
            tmp[i] = t[idx[i]];
        memcpy(t, tmp, nt * sizeof *t);
    }
    if (dup >= 0) {
        for (uint32_t i = 1; i < nt; i++)
            if (name_cmp(&t[i - 1], &t[i]) == 0)
                return i;
    }
    return -1;
}

static uint32_t key_hash(const char *s, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h ^ (h >> 15);
}

/* Index of an earlier field called [s, n), or -1. Adds field `idx` if new. */
static long field_lookup(lp_parser_t *P, uint32_t nf, const char *s, uint32_t n)
{
    lp_field_t *f = P->fields;
    if (nf < DEDUP_LINEAR) {
        for (uint32_t i = 0; i < nf; i++)
            if (f[i].name_len == n && key_eq(f[i].name, s, n))
                return i;
        return -1;
    }
    uint32_t mask = P->dedup_size - 1;
    if (!P->dedup_ready) {
        /* switch to the hash table: insert the fields so far */
        P->dedup_ready = 1;
        memset(P->dedup, 0, P->dedup_size * sizeof *P->dedup);
        for (uint32_t i = 0; i < nf; i++) {
            uint32_t h = key_hash(f[i].name, f[i].name_len) & mask;
            while (P->dedup[h])
                h = (h + 1) & mask;
            P->dedup[h] = i + 1;
        }
    }
    uint32_t h = key_hash(s, n) & mask;
    while (P->dedup[h]) {
        uint32_t i = P->dedup[h] - 1;
        if (f[i].name_len == n && key_eq(f[i].name, s, n))
            return i;
        h = (h + 1) & mask;
    }
    P->dedup[h] = nf + 1; /* the caller appends field nf */
    return -1;
}

/* ---- one line -------------------------------------------------------------- */

static const char metric_label[] = ST_METRIC_LABEL;
#define METRIC_LABEL_LEN (sizeof metric_label - 1)

static int build_series(lp_parser_t *P, lp_point_t *pt, const char *eol)
{
    uint32_t nt = pt->ntags, nl = nt + 1, nnum = 0;
    if (nl > ST_LABELS_MAX)
        return fail(P, eol, 1, 0, ST_ELIMIT, "too many labels: %u tags + __name__ (max %d)", nt,
                    ST_LABELS_MAX);
    uint32_t pos = 0;
    for (uint32_t i = 0; i < nt; i++) {
        const st_label_t *t = &pt->tags[i];
        if (t->name_len > ST_LABEL_NAME_MAX)
            return fail(P, eol, 1, 0, ST_ELIMIT, "tag key '%s' longer than %d bytes",
                        qt(P, 0, t->name, t->name_len), ST_LABEL_NAME_MAX);
        if (t->value_len > ST_LABEL_VALUE_MAX)
            return fail(P, eol, 1, 0, ST_ELIMIT, "value of tag '%s' longer than %d bytes",
                        qt(P, 0, t->name, t->name_len), ST_LABEL_VALUE_MAX);
        int c = slice_cmp(t->name, t->name_len, metric_label, METRIC_LABEL_LEN);
        if (c == 0)
            return fail(P, eol, 1, 0, ST_EINVAL, "tag key '__name__' is reserved");
        if (c < 0)
            pos = i + 1;
    }
    size_t names = 0;
    for (uint32_t i = 0; i < pt->nfields; i++) {
        const lp_field_t *f = &pt->fields[i];
        if (f->type == LP_STRING)
            continue;
        size_t len = (size_t)pt->measurement_len + 1 + f->name_len;
        if (len > ST_LABEL_NAME_MAX)
            return fail(P, eol, 1, 0, ST_ELIMIT, "metric name '%s_%s' longer than %d bytes",
                        qt(P, 0, pt->measurement, pt->measurement_len),
                        qt(P, 1, f->name, f->name_len), ST_LABEL_NAME_MAX);
        names += len;
        nnum++;
    }
    pt->nseries = nnum;
    pt->series = NULL;
    if (nnum == 0)
        return 0;
    while (P->ser_cap < nnum)
        if (grow((void **)&P->ser, &P->ser_cap, sizeof *P->ser))
            return ST_ENOMEM;
    st_label_t *lab = P->names_only ? NULL : arena_alloc(P, (size_t)nnum * nl * sizeof *lab);
    st_label_t *nlab = arena_alloc(P, (size_t)nnum * sizeof *nlab);
    char *nb = arena_alloc(P, names);
    if ((!lab && !P->names_only) || !nlab || !nb)
        return ST_ENOMEM;
    pt->name_pos = pos;
    uint32_t k = 0;
    for (uint32_t i = 0; i < pt->nfields; i++) {
        const lp_field_t *f = &pt->fields[i];
        if (f->type == LP_STRING)
            continue;
        char *name = nb;
        memcpy(nb, pt->measurement, pt->measurement_len);
        nb += pt->measurement_len;
        *nb++ = '_';
        memcpy(nb, f->name, f->name_len);
        nb += f->name_len;
        st_label_t *nl1 = &nlab[k];
        nl1->name = metric_label;
        nl1->name_len = METRIC_LABEL_LEN;
        nl1->value = name;
        nl1->value_len = (uint32_t)(nb - name);
        P->ser[k].labels = NULL;
        if (lab) {
            st_label_t *l = lab + (size_t)k * nl;
            for (uint32_t j = 0; j < pos; j++)
                l[j] = pt->tags[j];
            l[pos] = *nl1;
            for (uint32_t j = pos; j < nt; j++)
                l[j + 1] = pt->tags[j];
            P->ser[k].labels = l;
        }
        P->ser[k].nlabels = nl;
        P->ser[k].name = nl1;
        P->ser[k].field = i;
        P->ser[k].value = f->value;
        k++;
    }
    pt->series = P->ser;
    return 0;
}

static int parse_value(lp_parser_t *P, const char *v, size_t n, lp_field_t *f, const char *after)
{
    unsigned char c = (unsigned char)v[0];
    char last = v[n - 1];
    int rc;
    switch (c) {
    case 't':
    case 'T':
    case 'f':
    case 'F': {
        int val = -1;
        if (n == 1)
            val = c == 't' || c == 'T';
        else if ((n == 4 &&
                  (!memcmp(v, "true", 4) || !memcmp(v, "True", 4) || !memcmp(v, "TRUE", 4))))
            val = 1;
        else if (n == 5 &&
                 (!memcmp(v, "false", 5) || !memcmp(v, "False", 5) || !memcmp(v, "FALSE", 5)))
            val = 0;
        if (val < 0)
            return fail(P, after, 1, 0, ST_EPARSE, "invalid boolean '%s' for field '%s'",
                        qt(P, 0, v, n), qt(P, 1, f->name, f->name_len));
        f->type = LP_BOOL;
        f->u = (uint64_t)val;
        f->value = val;
        return 0;
    }
    case '-':
    case '.':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        break;
    default:
        return fail(P, after, 1, 0, ST_EPARSE, "invalid value '%s' for field '%s'", qt(P, 0, v, n),
                    qt(P, 1, f->name, f->name_len));
    }
    if (last == 'i' || last == 'u') {
        const char *kind = last == 'i' ? "integer" : "unsigned integer";
        rc = last == 'i' ? parse_i64(v, n - 1, &f->i) : parse_u64(v, n - 1, &f->u);
        if (rc == ST_ELIMIT)
            return fail(P, after, 1, 0, ST_EPARSE, "%s %s out of range for field '%s'", kind,
                        qt(P, 0, v, n), qt(P, 1, f->name, f->name_len));
        if (rc)
            return fail(P, after, 1, 0, ST_EPARSE, "invalid %s '%s' for field '%s'", kind,
                        qt(P, 0, v, n), qt(P, 1, f->name, f->name_len));
        f->type = last == 'i' ? LP_INT : LP_UINT;
        f->value = last == 'i' ? (double)f->i : (double)f->u;
        return 0;
    }
    rc = lp_parse_float(v, n, &f->value);
    if (rc == ST_ENOMEM)
        return rc;
    if (rc == ST_ELIMIT)
        return fail(P, after, 1, 0, ST_EPARSE, "float %s out of range for field '%s'",
                    qt(P, 0, v, n), qt(P, 1, f->name, f->name_len));
    if (rc)
        return fail(P, after, 1, 0, ST_EPARSE, "invalid number '%s' for field '%s'", qt(P, 0, v, n),
                    qt(P, 1, f->name, f->name_len));
    f->type = LP_FLOAT;
    return 0;
}

static int bad_char(lp_parser_t *P, const char *p, int in_fields, const char *where)
{
    return fail(P, p, in_fields, 0, ST_EPARSE, "invalid character 0x%02x in %s", (unsigned char)*p,
                where);
}

/*
 * Parse one point starting at s (first non-space byte of the line). On
 * success *eolp is the end of the point (at LF, CR LF, or lim) and *nlp the
 * number of newlines inside string values.
 */
/*
 * A tag key (in_fields 0) or field key (1) at *pp, which must be followed by
 * '=': scanned, checked for UTF-8 and unescaped into (*name, *len). The one
 * place both keys are read, so their rules and messages cannot drift apart.
 * On success *pp points at the '='.
 */
static int parse_key(lp_parser_t *P, const char **pp, const char *lim, const char *end,
                     int in_fields, const char **name, uint32_t *len)
{
    const char *what = in_fields ? "field key" : "tag key";
    const char *k = *pp;
    int esc = 0, rc;
    unsigned hb = 0;
    const char *p = scan_name(k, lim, K_KEY, &esc, &hb);
    if (p == k || !(p < lim && *p == '=')) {
        if (p < lim && (CL(*p) & C_CTRL) && !at_eol(p, lim, end))
            return bad_char(P, p, in_fields, what);
        if (p == k)
            return fail(P, p, in_fields, 0, ST_EPARSE, "empty %s", what);
        return fail(P, p, in_fields, 0, ST_EPARSE, "missing '=' after %s '%s'", what,
                    qt(P, 0, k, (size_t)(p - k)));
    }
    *name = k;
    *len = (uint32_t)(p - k);
    if ((hb & 0x80) && !st_utf8_valid(k, *len))
        return fail(P, p, in_fields, 0, ST_EINVAL, "%s is not valid UTF-8", what);
    if (esc && (rc = unescape(P, k, *len, C_KESC, name, len)))
        return rc;
    *pp = p;
    return 0;
}

static int parse_line(lp_parser_t *P, const char *s, const char *lim, const char *end,
                      lp_point_t *pt, const char **eolp, uint64_t *nlp)
{
    const char *p = s;
    int esc = 0, rc;
    unsigned hb = 0;

    /* measurement */
    p = scan_name(p, lim, K_MEAS, &esc, &hb);
    if (p == s) {
        if (p < lim && *p == ',')
            return fail(P, p, 0, 0, ST_EPARSE, "missing measurement");
        return bad_char(P, p, 0, "measurement");
    }
    if ((hb & 0x80) && !st_utf8_valid(s, (size_t)(p - s)))
        return fail(P, p, 0, 0, ST_EINVAL, "measurement is not valid UTF-8");
    pt->measurement = s;
    pt->measurement_len = (uint32_t)(p - s);
    if (esc &&
        (rc = unescape(P, s, (size_t)(p - s), C_MESC, &pt->measurement, &pt->measurement_len)))
        return rc;

    /* tags */
    uint32_t nt = 0;
    while (p < lim && *p == ',') {
        p++;
        if (nt == P->tags_cap && grow((void **)&P->tags, &P->tags_cap, sizeof *P->tags))
            return ST_ENOMEM;
        st_label_t *t = &P->tags[nt];
        if ((rc = parse_key(P, &p, lim, end, 0, &t->name, &t->name_len)))
            return rc;
        const char *v = ++p;
        esc = 0;
        hb = 0;
        p = scan_name(p, lim, K_KEY, &esc, &hb);
        if (p == v) {
            if (p < lim && *p == '=')
                return fail(P, p, 0, 0, ST_EPARSE, "unescaped '=' in value of tag '%s'",
                            qt(P, 0, t->name, t->name_len));
            if (p < lim && (CL(*p) & C_CTRL) && !at_eol(p, lim, end))
                return bad_char(P, p, 0, "tag value");
            return fail(P, p, 0, 0, ST_EPARSE, "empty value for tag '%s'",
                        qt(P, 0, t->name, t->name_len));
        }
        if (p < lim && *p == '=')
            return fail(P, p, 0, 0, ST_EPARSE, "unescaped '=' in value of tag '%s'",
                        qt(P, 0, t->name, t->name_len));
        t->value = v;
        t->value_len = (uint32_t)(p - v);
        if ((hb & 0x80) && !st_utf8_valid(v, t->value_len))
            return fail(P, p, 0, 0, ST_EINVAL, "value of tag '%s' is not valid UTF-8",
                        qt(P, 0, t->name, t->name_len));
        if (esc && (rc = unescape(P, v, t->value_len, C_KESC, &t->value, &t->value_len)))
            return rc;
        nt++;
    }
    if (p < lim && *p != ' ' && !at_eol(p, lim, end))
        return bad_char(P, p, 0, nt ? "tag value" : "measurement");
    while (p < lim && *p == ' ')
        p++;
    if (at_eol(p, lim, end))
        return fail(P, p, 1, 0, ST_EPARSE, "missing field set");

    /* sort tags, reject duplicates */
    if (nt > 1) {
        long d = sort_tags(P, nt);
        if (d >= 0)
            return fail(P, p, 1, 0, ST_EPARSE, "duplicate tag key '%s'",
                        qt(P, 0, P->tags[d].name, P->tags[d].name_len));
    }

    /* fields */
    pt->ts_ms = P->default_ts;
    uint32_t nf = 0;
    P->dedup_ready = 0;
    uint64_t nl = 0;
    for (;;) {
        lp_field_t fld;
        fld.i = 0;
        fld.u = 0;
        fld.str = NULL;
        fld.str_len = 0;
        fld.value = 0;
        if ((rc = parse_key(P, &p, lim, end, 1, &fld.name, &fld.name_len)))
            return rc;
        p++;
        if (at_eol(p, lim, end) || *p == ',' || *p == ' ')
            return fail(P, p, 1, 0, ST_EPARSE, "missing value for field '%s'",
                        qt(P, 0, fld.name, fld.name_len));
        if (*p == '"') {
            const char *q = ++p;
            unsigned h = 0;
            int sesc = 0;
            while (q < lim && *q != '"') {
                unsigned char c = (unsigned char)*q;
                if (c == '\\' && q + 1 < lim) {
                    sesc |= q[1] == '"' || q[1] == '\\';
                    h |= (unsigned char)q[1];
                    nl += q[1] == '\n';
                    q += 2;
                    continue;
                }
                nl += c == '\n';
                h |= c;
                q++;
            }
            if (q >= lim)
                return fail(P, lim, 1, 1, ST_EPARSE, "unterminated string value for field '%s'",
                            qt(P, 0, fld.name, fld.name_len));
            if ((h & 0x80) && !st_utf8_valid(p, (size_t)(q - p)))
                return fail(P, q + 1, 1, 0, ST_EINVAL,
                            "string value of field '%s' is not valid UTF-8",
                            qt(P, 0, fld.name, fld.name_len));
            fld.type = LP_STRING;
            fld.str = p;
            fld.str_len = (uint32_t)(q - p);
            if (sesc && (rc = unescape(P, p, (size_t)(q - p), C_SESC, &fld.str, &fld.str_len)))
                return rc;
            p = q + 1;
        } else {
            const char *v = p;
            unsigned vh = 0;
            p = find_stop(p, lim, K_VAL, &vh);
            if (p == v) /* a lone CR */
                return bad_char(P, p, 1, "field value");
            if ((rc = parse_value(P, v, (size_t)(p - v), &fld, p)))
                return rc;
        }
        long dup = field_lookup(P, nf, fld.name, fld.name_len);
        if (dup >= 0) {
            P->fields[dup].type = fld.type; /* last value wins, first position kept */
            P->fields[dup].value = fld.value;
            P->fields[dup].i = fld.i;
            P->fields[dup].u = fld.u;
            P->fields[dup].str = fld.str;
            P->fields[dup].str_len = fld.str_len;
        } else {
            if (nf >= P->max_fields)
                return fail(P, p, 1, 0, ST_ELIMIT, "too many fields (max %u)", P->max_fields);
            if (nf == P->fields_cap && grow((void **)&P->fields, &P->fields_cap, sizeof *P->fields))
                return ST_ENOMEM;
            P->fields[nf++] = fld;
        }
        if (p < lim && *p == ',') {
            p++;
            continue;
        }
        if (at_eol(p, lim, end))
            goto done;
        if (*p != ' ') {
            if (CL(*p) & C_CTRL)
                return bad_char(P, p, 1, "field set");
            return fail(P, p, 1, 0, ST_EPARSE,
                        "unexpected character '%s' after value of field '%s'", qt(P, 1, p, 1),
                        qt(P, 0, fld.name, fld.name_len));
        }
        while (p < lim && *p == ' ')
            p++;
        break;
    }

    /* timestamp */
    if (!at_eol(p, lim, end)) {
        const char *t = p;
        unsigned th = 0;
        p = find_stop(p, lim, K_VAL, &th);
        if (p == t) /* a lone CR */
            return bad_char(P, p, 1, "timestamp");
        int64_t ts;
        rc = parse_i64(t, (size_t)(p - t), &ts);
        if (rc == ST_ELIMIT)
            return fail(P, p, 1, 0, ST_EPARSE, "timestamp %s out of range",
                        qt(P, 0, t, (size_t)(p - t)));
        if (rc)
            return fail(P, p, 1, 0, ST_EPARSE, "invalid timestamp '%s'",
                        qt(P, 0, t, (size_t)(p - t)));
        if (lp_ts_to_ms(ts, P->prec, &pt->ts_ms))
            return fail(P, p, 1, 0, ST_EPARSE, "timestamp %s out of range for precision",
                        qt(P, 0, t, (size_t)(p - t)));
        while (p < lim && *p == ' ')
            p++;
        if (!at_eol(p, lim, end)) {
            const char *x = p;
            while (x < lim && *x != '\n')
                x++;
            return fail(P, p, 1, 0, ST_EPARSE, "unexpected text after timestamp: '%s'",
                        qt(P, 0, p, (size_t)(x - p)));
        }
    }
done:
    pt->tags = P->tags;
    pt->ntags = nt;
    pt->fields = P->fields;
    pt->nfields = nf;
    pt->series = NULL;
    pt->nseries = 0;
    pt->name_pos = 0;
    *eolp = p;
    *nlp = nl;
    if (P->series)
        return build_series(P, pt, p);
    return 0;
}

/*
 * End of a bad line: the next LF that is not inside a string value. Outside
 * the field section, '"' is an ordinary character; inside it, '="' opens a
 * string, as in InfluxDB 1.x scanLine.
 */
static const char *skip_line(const char *p, const char *end, int in_fields, int quoted)
{
    if (!in_fields) {
        while (p < end) {
            char c = *p;
            if (c == '\n')
                return p;
            if (c == '\\' && p + 1 < end && p[1] != '\n') {
                p += 2;
                continue;
            }
            p++;
            if (c == ' ')
                break;
        }
    }
    while (p < end) {
        char c = *p;
        if (quoted) {
            if (c == '\\' && p + 1 < end)
                p += 2;
            else {
                quoted = c != '"';
                p++;
            }
            continue;
        }
        if (c == '\n')
            return p;
        if (c == '=' && p + 1 < end && p[1] == '"') {
            quoted = 1;
            p += 2;
            continue;
        }
        if (c == '\\' && p + 1 < end && p[1] != '\n')
            p += 2;
        else
            p++;
    }
    return end;
}

static uint64_t count_nl(const char *p, const char *e)
{
    uint64_t n = 0;
    while (p < e && (p = memchr(p, '\n', (size_t)(e - p)))) {
        n++;
        p++;
    }
    return n;
}

int lp_parse(lp_parser_t *P, const char *buf, size_t len, lp_point_fn on_point,
             lp_error_fn on_error, void *arg)
{
    const char *p = buf, *end = buf + len;
    uint64_t line = 1;
    int bad = 0;
    lp_point_t pt;

    while (p < end) {
        const char *ls = p;
        while (p < end && *p == ' ')
            p++;
        if (p == end)
            break;
        if (*p == '\n') {
            p++;
            line++;
            continue;
        }
        if (*p == '\r' && (p + 1 == end || p[1] == '\n')) {
            p += p + 1 == end ? 1 : 2;
            line++;
            continue;
        }
        if (*p == '#') {
            const char *nlp = memchr(p, '\n', (size_t)(end - p));
            if (!nlp)
                break;
            p = nlp + 1;
            line++;
            continue;
        }
        arena_reset(P);
        const char *lim = (size_t)(end - ls) > P->max_line ? ls + P->max_line : end;
        const char *e = NULL;
        uint64_t nl = 0;
        int rc = parse_line(P, p, lim, end, &pt, &e, &nl);
        if (rc == 0 && e >= lim && lim < end && !is_nl(lim, end))
            rc = fail(P, lim, 1, 0, ST_ELIMIT, "line too long (max %zu bytes)", P->max_line);
        if (rc == ST_ENOMEM)
            return rc;
        if (rc == 0) {
            pt.line = line;
            P->st.lines_ok++;
            uint32_t nstr = 0;
            for (uint32_t i = 0; i < pt.nfields; i++)
                nstr += pt.fields[i].type == LP_STRING;
            P->st.fields += pt.nfields;
            P->st.strings_skipped += nstr;
            P->st.samples += pt.nfields - nstr;
            if (on_point) {
                int r = on_point(arg, &pt);
                if (r < 0)
                    return r;
            }
            line += nl;
        } else {
            const char *r = skip_line(P->err_pos, end, P->err_fields, P->err_quoted);
            size_t ll = (size_t)(r - ls);
            if (ll && r[-1] == '\r')
                ll--;
            if (ll > P->max_line) {
                rc = ST_ELIMIT;
                snprintf(P->reason, sizeof P->reason, "line too long (max %zu bytes)", P->max_line);
            }
            if (bad < INT32_MAX)
                bad++;
            P->st.lines_bad++;
            if (on_error)
                on_error(arg, line, rc, P->reason);
            line += count_nl(ls, r);
            e = r;
        }
        if (e < end && *e == '\r')
            e++;
        if (e < end && *e == '\n') {
            e++;
            line++;
        }
        p = e;
    }
    return bad;
}

/* ---- lifecycle ------------------------------------------------------------- */

int lp_parser_create(const lp_opts_t *opts, lp_parser_t **out)
{
    static const lp_opts_t defaults = {0};
    if (!opts)
        opts = &defaults;
    if ((unsigned)opts->precision > LP_PREC_H)
        return ST_EINVAL;
    pthread_once(&init_once, lp_init);
    lp_parser_t *P = calloc(1, sizeof *P);
    if (!P)
        return ST_ENOMEM;
    P->prec = opts->precision;
    P->default_ts = opts->default_ts_ms;
    P->max_line = opts->max_line ? opts->max_line : LP_DEFAULT_MAX_LINE;
    P->max_fields = opts->max_fields ? opts->max_fields : LP_DEFAULT_MAX_FIELDS;
    P->series = opts->series != 0;
    P->names_only = opts->names_only != 0;
    P->dedup_size = 1u << DEDUP_BITS;
    while (P->dedup_size < 2 * P->max_fields)
        P->dedup_size *= 2;
    P->dedup = malloc(P->dedup_size * sizeof *P->dedup);
    P->head = malloc(sizeof *P->head + ARENA_FIRST);
    if (!P->dedup || !P->head) {
        lp_parser_destroy(P);
        return ST_ENOMEM;
    }
    P->head->next = NULL;
    P->head->cap = ARENA_FIRST;
    P->head->used = 0;
    P->cur = P->head;
    P->arena_total = ARENA_FIRST;
    *out = P;
    return 0;
}

void lp_parser_destroy(lp_parser_t *P)
{
    if (!P)
        return;
    blk_t *b = P->head;
    while (b) {
        blk_t *n = b->next;
        free(b);
        b = n;
    }
    free(P->tags);
    free(P->fields);
    free(P->ser);
    free(P->dedup);
    free(P);
}

void lp_parser_set_precision(lp_parser_t *P, lp_precision_t prec)
{
    P->prec = prec;
}

void lp_parser_set_default_ts(lp_parser_t *P, int64_t ts_ms)
{
    P->default_ts = ts_ms;
}

void lp_parser_stats(const lp_parser_t *P, lp_stats_t *out)
{
    *out = P->st;
}

void lp_parser_stats_reset(lp_parser_t *P)
{
    memset(&P->st, 0, sizeof P->st);
}
