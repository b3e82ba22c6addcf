/* test_idx — series registry, label index, matchers and series.log (node/engine/idx.h). */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "idx.h"
#include "idx_internal.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_labels.h"

/* ---- helpers ------------------------------------------------------------------ */

typedef struct lset {
    st_label_t l[ST_LABELS_MAX];
    size_t n;
    char buf[8192];
} lset_t;

/* Parse "a=1,b=2" (no escapes; empty values allowed) into a sorted label set. */
static void lset_parse(lset_t *s, const char *text)
{
    size_t len = strlen(text);
    assert_true(len < sizeof s->buf);
    memcpy(s->buf, text, len + 1);
    s->n = 0;
    char *p = s->buf;
    while (*p) {
        char *eq = strchr(p, '=');
        assert_non_null(eq);
        char *end = strchr(eq, ',');
        if (!end)
            end = eq + strlen(eq);
        int last = *end == '\0';
        *eq = '\0';
        *end = '\0';
        s->l[s->n++] = (st_label_t){p, eq + 1, (uint32_t)(eq - p), (uint32_t)(end - eq - 1)};
        p = last ? end : end + 1;
    }
    st_labels_sort(s->l, s->n);
}

static int add_text(idx_t *x, const char *text, uint32_t *id)
{
    lset_t s;
    lset_parse(&s, text);
    return idx_add(x, s.l, s.n, st_labels_hash(s.l, s.n), id);
}

static int lookup_text(idx_t *x, const char *text, uint32_t *id)
{
    lset_t s;
    lset_parse(&s, text);
    return idx_lookup(x, s.l, s.n, st_labels_hash(s.l, s.n), id);
}

static char *make_tmpdir(void)
{
    char *d = strdup("/tmp/test_idx_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_tmpdir(char *d)
{
    DIR *dh = opendir(d);
    if (dh) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(dh))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", d, e->d_name);
            unlink(p);
        }
        closedir(dh);
    }
    rmdir(d);
    free(d);
}

static char *log_path(const char *d)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/series.log", d);
    return p;
}

static off_t file_size(const char *p)
{
    struct stat st;
    if (stat(p, &st))
        return -1;
    return st.st_size;
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static int select_m(idx_t *x, const st_matcher_t *m, size_t nm, uint32_t **ids, size_t *n)
{
    const char *err = NULL;
    return idx_select(x, m, nm, ids, n, &err);
}

/* Assert that the selection equals the -1 terminated list `want`. */
static void expect_sel(idx_t *x, const st_matcher_t *m, size_t nm, const int *want)
{
    uint32_t *ids;
    size_t n;
    assert_int_equal(select_m(x, m, nm, &ids, &n), 0);
    size_t k = 0;
    while (want[k] >= 0)
        k++;
    if (n != k) {
        fprintf(stderr, "selection of %zu matchers: got %zu ids, want %zu\n", nm, n, k);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %u", ids[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n, k);
    for (size_t i = 0; i < k; i++)
        assert_int_equal(ids[i], want[i]);
    if (n == 0)
        assert_null(ids);
    free(ids);
}

#define M(t, nm, v) ((st_matcher_t){ST_MATCH_##t, nm, v})
#define SEL(x, ...)                                                                                \
    do {                                                                                           \
        const st_matcher_t ms_[] = {__VA_ARGS__};                                                  \
        expect_sel(x, ms_, sizeof ms_ / sizeof ms_[0], want_);                                     \
    } while (0)

/* ---- registry ------------------------------------------------------------------- */

static void test_add_lookup_many(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    char t[256];
    const uint32_t N = 20000;
    uint32_t id0;
    assert_int_equal(idx_add(x, NULL, 0, 0, &id0), ST_EINVAL);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t id;
        snprintf(t, sizeof t, "__name__=m%u,host=h%u,region=r%u", i % 10, i / 10, i % 7);
        assert_int_equal(add_text(x, t, &id), 0);
        assert_int_equal(id, i);
    }
    assert_int_equal(idx_count(x), N);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t id = 0;
        snprintf(t, sizeof t, "__name__=m%u,host=h%u,region=r%u", i % 10, i / 10, i % 7);
        assert_int_equal(lookup_text(x, t, &id), 0);
        assert_int_equal(id, i);
        uint32_t id2;
        assert_int_equal(add_text(x, t, &id2), ST_EEXIST);
    }
    uint32_t id;
    assert_int_equal(lookup_text(x, "__name__=m1,host=h0,region=r0", &id), ST_ENOENT);
    assert_int_equal(lookup_text(x, "__name__=m1,host=h0", &id), ST_ENOENT);
    assert_int_equal(lookup_text(x, "__name__=m1,host=h0,region=r1,zone=z", &id), ST_ENOENT);
    assert_int_equal(idx_count(x), N);
    /* a validation failure leaves no trace */
    lset_t s;
    lset_parse(&s, "a=1,a=2");
    assert_int_equal(idx_add(x, s.l, s.n, st_labels_hash(s.l, s.n), &id), ST_EINVAL);
    assert_int_equal(idx_count(x), N);
    assert_true(idx_mem_bytes(x) > N * 20);
    idx_close(x);
    rm_tmpdir(d);
}

static void test_hash_collisions(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    char t[128];
    const uint64_t fake = 0x1234567890abcdefull;
    for (uint32_t i = 0; i < 300; i++) {
        lset_t s;
        uint32_t id;
        snprintf(t, sizeof t, "__name__=c,k=v%u", i);
        lset_parse(&s, t);
        /* odd ones collide on the full 64-bit hash, even ones only on the tag */
        uint64_t h = i % 2 ? fake : (fake & 0xffffffff00000000ull) | i;
        assert_int_equal(idx_lookup(x, s.l, s.n, h, &id), ST_ENOENT);
        assert_int_equal(idx_add(x, s.l, s.n, h, &id), 0);
        assert_int_equal(id, i);
        assert_int_equal(idx_add(x, s.l, s.n, h, &id), ST_EEXIST);
    }
    for (uint32_t i = 0; i < 300; i++) {
        lset_t s;
        uint32_t id = UINT32_MAX;
        snprintf(t, sizeof t, "__name__=c,k=v%u", i);
        lset_parse(&s, t);
        uint64_t h = i % 2 ? fake : (fake & 0xffffffff00000000ull) | i;
        assert_int_equal(idx_lookup(x, s.l, s.n, h, &id), 0);
        assert_int_equal(id, i);
    }
    lset_t s;
    uint32_t id;
    lset_parse(&s, "__name__=c,k=v300");
    assert_int_equal(idx_lookup(x, s.l, s.n, fake, &id), ST_ENOENT);
    lset_parse(&s, "__name__=c");
    assert_int_equal(idx_lookup(x, s.l, s.n, fake, &id), ST_ENOENT);
    idx_close(x);
    rm_tmpdir(d);
}

static void test_labels_roundtrip(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    lset_t s;
    uint32_t id;
    char big[ST_LABEL_VALUE_MAX + 1];
    memset(big, 'q', ST_LABEL_VALUE_MAX);
    big[ST_LABEL_VALUE_MAX] = '\0';
    lset_parse(&s, "__name__=up,env=,job=api,zone=eu-1");
    s.l[s.n++] = (st_label_t){"zzbig", big, 5, ST_LABEL_VALUE_MAX};
    assert_int_equal(idx_add(x, s.l, s.n, st_labels_hash(s.l, s.n), &id), 0);
    st_label_t first[ST_LABELS_MAX];
    assert_int_equal(idx_labels(x, id, first), (int)s.n);
    assert_int_equal(st_labels_cmp(first, s.n, s.l, s.n), 0);
    assert_int_equal(first[4].value[ST_LABEL_VALUE_MAX], '\0'); /* NUL-terminated */
    /* 64 labels */
    lset_t s64;
    s64.n = ST_LABELS_MAX;
    char *p = s64.buf;
    for (int i = 0; i < ST_LABELS_MAX; i++) {
        int k = sprintf(p, "l%02d", i);
        s64.l[i] = (st_label_t){p, p, (uint32_t)k, (uint32_t)k};
        p += k + 1;
    }
    assert_int_equal(idx_add(x, s64.l, s64.n, st_labels_hash(s64.l, s64.n), &id), 0);
    st_label_t out[ST_LABELS_MAX];
    assert_int_equal(idx_labels(x, id, out), ST_LABELS_MAX);
    assert_int_equal(st_labels_cmp(out, ST_LABELS_MAX, s64.l, ST_LABELS_MAX), 0);
    /* pointers stay valid while the index grows (over several chunks of series runs) */
    for (int i = 0; i < 50000; i++) {
        char t[128];
        snprintf(t, sizeof t, "__name__=grow,v=value-%d-%d", i, i * 7);
        assert_int_equal(add_text(x, t, &id), 0);
    }
    assert_int_equal(st_labels_cmp(first, s.n, s.l, s.n), 0);
    assert_memory_equal(first[4].value, big, ST_LABEL_VALUE_MAX);
    for (int i = 0; i < 50000; i += 7) {
        char t[128];
        snprintf(t, sizeof t, "__name__=grow,v=value-%d-%d", i, i * 7);
        assert_int_equal(lookup_text(x, t, &id), 0);
        assert_int_equal(id, (uint32_t)i + 2);
        lset_t g;
        lset_parse(&g, t);
        assert_int_equal(idx_labels(x, id, out), 2);
        assert_int_equal(st_labels_cmp(out, 2, g.l, 2), 0);
    }
    assert_int_equal(idx_labels(x, idx_count(x), out), ST_ENOENT);
    assert_int_equal(idx_labels(x, UINT32_MAX, out), ST_ENOENT);
    idx_close(x);
    rm_tmpdir(d);
}

/* A rejected add leaves interned strings behind; series.log must still replay. */
static void test_add_invalid_orphans(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    uint32_t id;
    assert_int_equal(add_text(x, "__name__=a,k=v", &id), 0);
    st_label_t bad[2] = {{"__name__", "orphan_value", 8, 12}, {"k", "\xc3(", 1, 2}};
    assert_int_equal(idx_add(x, bad, 2, st_labels_hash(bad, 2), &id), ST_EINVAL);
    st_label_t unsorted[2] = {{"k", "1", 1, 1}, {"a", "1", 1, 1}};
    assert_int_equal(idx_add(x, unsorted, 2, st_labels_hash(unsorted, 2), &id), ST_EINVAL);
    st_label_t noname[1] = {{"", "1", 0, 1}};
    assert_int_equal(idx_add(x, noname, 1, st_labels_hash(noname, 1), &id), ST_EINVAL);
    assert_int_equal(idx_count(x), 1);
    assert_int_equal(add_text(x, "__name__=b,k=new", &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(idx_persist(x), 0);
    assert_int_equal(add_text(x, "__name__=orphan_value", &id), 0);
    assert_int_equal(idx_persist(x), 0);
    idx_close(x);
    assert_int_equal(idx_open(d, &x), 0);
    assert_int_equal(idx_count(x), 3);
    assert_int_equal(lookup_text(x, "__name__=b,k=new", &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(lookup_text(x, "__name__=orphan_value", &id), 0);
    assert_int_equal(id, 2);
    idx_close(x);
    rm_tmpdir(d);
}

static void test_lookup_many(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    enum { N = 3000 };
    static lset_t sets[N];
    static const st_label_t *lp[N];
    static size_t ln[N];
    static uint64_t hs[N];
    static uint32_t ids[N];
    assert_int_equal(idx_lookup_many(x, lp, ln, hs, 0, ids), 0);
    for (int i = 0; i < N; i++) {
        char t[64];
        snprintf(t, sizeof t, "__name__=m%d,h=%d", i % 7, i);
        lset_parse(&sets[i], t);
        lp[i] = sets[i].l;
        ln[i] = sets[i].n;
        hs[i] = st_labels_hash(sets[i].l, sets[i].n);
        if (i % 3 != 2) {
            uint32_t id;
            assert_int_equal(idx_add(x, sets[i].l, sets[i].n, hs[i], &id), 0);
        }
    }
    assert_int_equal(idx_lookup_many(x, lp, ln, hs, N, ids), N - N / 3);
    uint32_t next = 0;
    for (int i = 0; i < N; i++)
        assert_int_equal(ids[i], i % 3 != 2 ? next++ : UINT32_MAX);
    idx_close(x);
    rm_tmpdir(d);
}

/* ---- matchers ------------------------------------------------------------------------- */

static idx_t *small_index(char **dir)
{
    static const char *const series[] = {
        "__name__=up,job=a,inst=h1",   /* 0 */
        "__name__=up,job=b,inst=h2",   /* 1 */
        "__name__=up,inst=h3",         /* 2: no job */
        "__name__=cpu,job=a,inst=xh1", /* 3 */
        "__name__=cpu,job=,inst=h1.x", /* 4: empty job value */
        "__name__=mem,job=a|b,inst=h2" /* 5: a value that looks like a regex */
    };
    *dir = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(*dir, &x), 0);
    for (size_t i = 0; i < sizeof series / sizeof series[0]; i++) {
        uint32_t id;
        assert_int_equal(add_text(x, series[i], &id), 0);
        assert_int_equal(id, i);
    }
    return x;
}

static void check_small(idx_t *x)
{
    {
        const int want_[] = {0, 1, 2, -1};
        SEL(x, M(EQ, "__name__", "up"));
    }
    {
        const int want_[] = {0, -1};
        SEL(x, M(EQ, "__name__", "up"), M(EQ, "job", "a"));
    }
    {
        const int want_[] = {1, 2, -1};
        SEL(x, M(EQ, "__name__", "up"), M(NE, "job", "a"));
    }
    {
        const int want_[] = {2, -1};
        SEL(x, M(EQ, "__name__", "up"), M(EQ, "job", ""));
    }
    {
        const int want_[] = {2, 4, -1};
        SEL(x, M(EQ, "job", ""), M(RE, "inst", "h.*"));
    }
    {
        const int want_[] = {0, 1, 3, 5, -1};
        SEL(x, M(NE, "job", ""));
    }
    {
        const int want_[] = {0, 2, -1};
        SEL(x, M(EQ, "__name__", "up"), M(RE, "job", "a|"));
    }
    {
        const int want_[] = {1, 2, -1};
        SEL(x, M(EQ, "__name__", "up"), M(NRE, "job", "a"));
    }
    {
        const int want_[] = {0, 1, -1};
        SEL(x, M(EQ, "__name__", "up"), M(NRE, "job", "|x"));
    }
    { /* anchoring */
        const int want_[] = {0, 1, 2, 4, 5, -1};
        SEL(x, M(RE, "inst", "h.*"));
    }
    {
        const int want_[] = {0, -1};
        SEL(x, M(RE, "inst", "h1"));
    }
    {
        const int want_[] = {0, 3, -1};
        SEL(x, M(RE, "inst", ".*h1"));
    }
    {
        const int want_[] = {0, 3, 4, -1};
        SEL(x, M(RE, "inst", ".*h1.*"));
    }
    {
        const int want_[] = {0, -1};
        SEL(x, M(RE, "inst", "h[1]"));
    }
    {
        const int want_[] = {4, -1};
        SEL(x, M(RE, "inst", "h1\\.x"));
    }
    {
        const int want_[] = {5, -1};
        SEL(x, M(RE, "job", "a\\|b"));
    }
    {
        const int want_[] = {5, -1};
        SEL(x, M(EQ, "job", "a|b"));
    }
    {
        const int want_[] = {0, 1, 3, 5, -1};
        SEL(x, M(RE, "job", ".+"));
    }
    {
        const int want_[] = {3, 4, -1};
        SEL(x, M(RE, "__name__", "cpu|nothing"), M(RE, "job", ".*"));
    }
    {
        const int want_[] = {0, 1, 2, -1};
        SEL(x, M(EQ, "__name__", "up"), M(RE, "nolabel", "x|"), M(NE, "nolabel", "y"),
            M(EQ, "nolabel", ""), M(NRE, "nolabel", "z.*"));
    }
    {
        const int want_[] = {-1};
        SEL(x, M(EQ, "__name__", "up"), M(RE, "nolabel", "x"));
    }
    {
        const int want_[] = {-1};
        SEL(x, M(EQ, "__name__", "nothing"));
    }
    {
        const int want_[] = {-1};
        SEL(x, M(EQ, "nolabel", "x"));
    }
    {
        const int want_[] = {0, 1, 3, 5, -1};
        SEL(x, M(NE, "__name__", "x"), M(RE, "job", "a|b|a\\|b"));
    }
    {
        const int want_[] = {1, 2, 3, 4, 5, -1};
        SEL(x, M(RE, "inst", ".+"), M(NE, "inst", "h1"));
    }
    {
        const int want_[] = {-1};
        SEL(x, M(EQ, "__name__", "up"), M(EQ, "__name__", "cpu"));
    }
}

static void test_matchers(void **state)
{
    (void)state;
    char *d;
    idx_t *x = small_index(&d);
    check_small(x);
    idx__set_regex_opt(x, 0);
    check_small(x);
    idx_close(x);
    rm_tmpdir(d);
}

static void test_matcher_errors(void **state)
{
    (void)state;
    char *d;
    idx_t *x = small_index(&d);
    for (int opt = 1; opt >= 0; opt--) {
        idx__set_regex_opt(x, opt);
        const st_matcher_t bad[][2] = {
            {M(EQ, "job", ""), M(EQ, "job", "")},
            {M(RE, "job", ".*"), M(NE, "job", "x")},
            {M(NRE, "job", ".+"), M(RE, "job", "a|")},
            {M(RE, "__name__", "("), M(EQ, "job", "a")},
            {M(EQ, "job", "a"), M(RE, "inst", "a)|(h1")},
            {M(EQ, "job", "a"), M(RE, "inst", "\xff")},
            {M(EQ, "job", "a"), M(RE, "inst", "x\\")},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            uint32_t *ids = (uint32_t *)1;
            size_t n = 99;
            const char *err = NULL;
            assert_int_equal(idx_select(x, bad[i], 2, &ids, &n, &err), ST_EINVAL);
            assert_non_null(err);
            assert_null(ids);
            assert_int_equal(n, 0);
            if (i < 3)
                assert_string_equal(err,
                                    "vector selector must contain at least one non-empty matcher");
        }
        uint32_t *ids;
        size_t n;
        const char *err = NULL;
        assert_int_equal(idx_select(x, NULL, 0, &ids, &n, &err), ST_EINVAL);
        assert_non_null(err);
        const st_matcher_t one = M(NE, "job", "a");
        assert_int_equal(idx_select(x, &one, 1, &ids, &n, NULL), ST_EINVAL);
    }
    idx_close(x);
    rm_tmpdir(d);
}

/* ---- randomized comparison against a brute-force evaluator --------------------------- */

static const char *const rnames[] = {"__name__", "a", "b", "c", "host"};
static const char *const rvals[] = {"", "x", "y", "xy", "yx", "z1", "z12", "h.1", "a|b", "é"};
static const char *const rpats[] = {
    "x.*",   "x|y",    ".*y",      "z1.*", "(x|z)1?", "",      ".+",  "[xy]+",    "x|",
    "xy|yx", ".*",     "z1|z12|q", "h.1",  "h\\.1",   ".*1.*", "é|x", "a\\|b",    "(?i)X",
    "z.",    "y|.*1$", "x(?=y).",  "\\w+", ".*.*",    "h1.*",  ".*7", "h(1|2)3?", "h3[0-9]"};

typedef struct rq {
    st_matcher_t m[4];
    size_t n;
} rq_t;

static int brute_pred(const st_matcher_t *m, const char *v, size_t len)
{
    if (m->type == ST_MATCH_EQ || m->type == ST_MATCH_NE) {
        int eq = strlen(m->value) == len && memcmp(m->value, v, len) == 0;
        return m->type == ST_MATCH_EQ ? eq : !eq;
    }
    char pat[256];
    snprintf(pat, sizeof pat, "^(?:%s)$", m->value);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_DOTALL | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
    assert_non_null(re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int r = pcre2_match(re, (PCRE2_SPTR)v, len, 0, 0, md, NULL) >= 0;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return m->type == ST_MATCH_RE ? r : !r;
}

static void test_random_vs_bruteforce(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    enum { NS = 1500, NQ = 1500, NN = sizeof rnames / sizeof rnames[0] };
    static int has[NS][NN];
    static const char *val[NS][NN];
    static char hostv[400][16]; /* label "host" has many values: exercises per-candidate tests */
    for (int i = 0; i < 400; i++)
        snprintf(hostv[i], sizeof hostv[i], "h%d", i);
    uint32_t n = 0;
    for (int i = 0; i < NS; i++) {
        st_label_t l[NN];
        size_t k = 0;
        for (int j = 0; j < NN; j++) {
            has[n][j] = rnd(4) != 0;
            val[n][j] = j == NN - 1 && rnd(4) ? hostv[rnd(400)]
                                              : rvals[rnd(sizeof rvals / sizeof rvals[0])];
            if (has[n][j])
                l[k++] = (st_label_t){rnames[j], val[n][j], (uint32_t)strlen(rnames[j]),
                                      (uint32_t)strlen(val[n][j])};
        }
        if (k == 0)
            continue;
        st_labels_sort(l, k);
        uint32_t id;
        int rc = idx_add(x, l, k, st_labels_hash(l, k), &id);
        if (rc == ST_EEXIST)
            continue;
        assert_int_equal(rc, 0);
        assert_int_equal(id, n);
        n++;
    }
    int selected = 0, invalid = 0;
    for (int q = 0; q < NQ; q++) {
        rq_t r;
        r.n = 1 + rnd(3);
        for (size_t i = 0; i < r.n; i++) {
            r.m[i].type = (st_match_type_t)rnd(4);
            r.m[i].name = rnd(8) ? rnames[rnd(NN)] : "missing";
            if (r.m[i].type >= ST_MATCH_RE)
                r.m[i].value = rpats[rnd(sizeof rpats / sizeof rpats[0])];
            else
                r.m[i].value = !strcmp(r.m[i].name, "host") && rnd(2)
                                   ? hostv[rnd(400)]
                                   : rvals[rnd(sizeof rvals / sizeof rvals[0])];
        }
        int all_empty = 1;
        for (size_t i = 0; i < r.n; i++)
            all_empty &= brute_pred(&r.m[i], "", 0);
        for (int opt = 0; opt < 2; opt++) {
            idx__set_regex_opt(x, opt);
            uint32_t *ids;
            size_t cnt;
            const char *err = NULL;
            int rc = idx_select(x, r.m, r.n, &ids, &cnt, &err);
            if (all_empty) {
                assert_int_equal(rc, ST_EINVAL);
                invalid++;
                continue;
            }
            assert_int_equal(rc, 0);
            size_t k = 0;
            for (uint32_t s = 0; s < n; s++) {
                int ok = 1;
                for (size_t i = 0; i < r.n && ok; i++) {
                    int j = -1;
                    for (int t = 0; t < NN; t++)
                        if (!strcmp(rnames[t], r.m[i].name))
                            j = t;
                    const char *v = j >= 0 && has[s][j] ? val[s][j] : "";
                    ok = brute_pred(&r.m[i], v, strlen(v));
                }
                if (!ok)
                    continue;
                assert_true(k < cnt);
                assert_int_equal(ids[k], s);
                k++;
            }
            assert_int_equal(k, cnt);
            selected += cnt > 0;
            free(ids);
        }
    }
    assert_true(selected > NQ / 4);
    assert_true(invalid > 0);
    /* label sets of varying shape survive series.log */
    assert_int_equal(idx_persist(x), 0);
    idx_t *y;
    assert_int_equal(idx_open(d, &y), 0);
    assert_int_equal(idx_count(y), n);
    for (uint32_t s = 0; s < n; s++) {
        st_label_t a[ST_LABELS_MAX], b[ST_LABELS_MAX];
        int na = idx_labels(x, s, a);
        assert_true(na > 0);
        assert_int_equal(idx_labels(y, s, b), na);
        assert_int_equal(st_labels_cmp(a, (size_t)na, b, (size_t)na), 0);
    }
    idx_close(y);
    idx_close(x);
    rm_tmpdir(d);
}

/* Literal-set / prefix fast paths give the same ids as PCRE2 on a larger index. */
static void test_literal_opt_equivalence(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    char t[256];
    for (int h = 0; h < 300; h++)
        for (int m = 0; m < 5; m++) {
            uint32_t id;
            snprintf(t, sizeof t, "__name__=metric_%d,hostname=host_%d,rack=%d,svc=s.%d", m, h,
                     h % 13, h % 4);
            assert_int_equal(add_text(x, t, &id), 0);
        }
    static const char *const pats[] = {"host_1|host_22|host_299|host_1000",
                                       "host_1.*",
                                       ".*_1",
                                       ".*st_2.*",
                                       "host_7",
                                       "s\\.1|s\\.3",
                                       "s.1",
                                       ".+",
                                       "|host_3",
                                       "metric_1|metric_4|"};
    static const char *const names[] = {"hostname", "hostname", "hostname", "hostname", "hostname",
                                        "svc",      "svc",      "rack",     "hostname", "__name__"};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        for (int neg = 0; neg < 2; neg++) {
            st_matcher_t ms[2] = {{neg ? ST_MATCH_NRE : ST_MATCH_RE, names[i], pats[i]},
                                  {ST_MATCH_RE, "__name__", "metric_[0-3]"}};
            uint32_t *a, *b;
            size_t na, nb;
            for (size_t nm = 1; nm <= 2; nm++) {
                idx__set_regex_opt(x, 1);
                int ra = select_m(x, ms, nm, &a, &na);
                idx__set_regex_opt(x, 0);
                int rb = select_m(x, ms, nm, &b, &nb);
                assert_int_equal(ra, rb);
                assert_int_equal(na, nb);
                if (na)
                    assert_memory_equal(a, b, na * sizeof *a);
                free(a);
                free(b);
            }
        }
    /* spot checks */
    uint32_t *ids;
    size_t n;
    st_matcher_t m1 = {ST_MATCH_RE, "hostname", "host_1|host_22|host_299|host_1000"};
    assert_int_equal(select_m(x, &m1, 1, &ids, &n), 0);
    assert_int_equal(n, 15);
    free(ids);
    st_matcher_t m2 = {ST_MATCH_RE, "hostname", "host_1.*"};
    assert_int_equal(select_m(x, &m2, 1, &ids, &n), 0);
    assert_int_equal(n, 5 * 111);
    free(ids);
    idx_close(x);
    rm_tmpdir(d);
}

/* ---- label names and values ----------------------------------------------------------- */

typedef struct strs {
    char s[64][32];
    int n;
    int stop_at;
} strs_t;

static int collect_cb(void *arg, const char *s, size_t len)
{
    strs_t *c = arg;
    if (c->n == c->stop_at)
        return -42;
    assert_true(len < 32);
    memcpy(c->s[c->n], s, len);
    c->s[c->n][len] = '\0';
    c->n++;
    return 0;
}

static void expect_strs(const strs_t *c, const char *const *want)
{
    int k = 0;
    while (want[k])
        k++;
    assert_int_equal(c->n, k);
    for (int i = 0; i < k; i++)
        assert_string_equal(c->s[i], want[i]);
}

static void test_label_names_values(void **state)
{
    (void)state;
    char *d;
    idx_t *x = small_index(&d);
    strs_t c = {.n = 0, .stop_at = -1};
    assert_int_equal(idx_label_names(x, NULL, 0, collect_cb, &c), 0);
    expect_strs(&c, (const char *const[]){"__name__", "inst", "job", NULL});
    c.n = 0;
    assert_int_equal(idx_label_values(x, "job", NULL, 0, collect_cb, &c), 0);
    expect_strs(&c, (const char *const[]){"", "a", "a|b", "b", NULL});
    c.n = 0;
    assert_int_equal(idx_label_values(x, "__name__", NULL, 0, collect_cb, &c), 0);
    expect_strs(&c, (const char *const[]){"cpu", "mem", "up", NULL});
    c.n = 0;
    uint32_t some[] = {2, 3};
    assert_int_equal(idx_label_values(x, "job", some, 2, collect_cb, &c), 0);
    expect_strs(&c, (const char *const[]){"a", NULL});
    c.n = 0;
    uint32_t dup[] = {0, 3, 5, 1, 0};
    assert_int_equal(idx_label_values(x, "job", dup, 5, collect_cb, &c), 0);
    expect_strs(&c, (const char *const[]){"a", "a|b", "b", NULL});
    c.n = 0;
    uint32_t two[] = {2};
    assert_int_equal(idx_label_names(x, two, 1, collect_cb, &c), 0);
    expect_strs(&c, (const char *const[]){"__name__", "inst", NULL});
    c.n = 0;
    assert_int_equal(idx_label_values(x, "nolabel", NULL, 0, collect_cb, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(idx_label_names(x, some, 0, collect_cb, &c), 0);
    assert_int_equal(c.n, 0);
    uint32_t bad[] = {99};
    assert_int_equal(idx_label_names(x, bad, 1, collect_cb, &c), ST_EINVAL);
    assert_int_equal(idx_label_values(x, "job", bad, 1, collect_cb, &c), ST_EINVAL);
    /* the callback's error stops the walk */
    c.n = 0;
    c.stop_at = 1;
    assert_int_equal(idx_label_values(x, "__name__", NULL, 0, collect_cb, &c), -42);
    assert_int_equal(c.n, 1);
    c.n = 0;
    assert_int_equal(idx_label_names(x, NULL, 0, collect_cb, &c), -42);
    idx_close(x);
    rm_tmpdir(d);
}

/* ---- persistence ------------------------------------------------------------------------ */

static void devops_text(char *t, size_t cap, uint32_t i)
{
    static const char *const metrics[] = {"usage_user", "usage_system", "usage_idle", "usage_nice",
                                          "usage_iowait"};
    uint32_t h = i / 5;
    snprintf(t, cap,
             "__name__=cpu_%s,hostname=host_%u,region=r%u,datacenter=dc%u,rack=%u,os=Ubuntu%u,"
             "arch=x%u,team=t%u,service=%u,service_version=%u,service_environment=env%u",
             metrics[i % 5], h, h % 3, h % 7, h % 17, h % 2, h % 2, h % 4, h % 19, h % 2, h % 3);
}

static void add_devops(idx_t *x, uint32_t from, uint32_t to)
{
    char t[512];
    for (uint32_t i = from; i < to; i++) {
        uint32_t id;
        devops_text(t, sizeof t, i);
        assert_int_equal(add_text(x, t, &id), 0);
        assert_int_equal(id, i);
    }
}

static void check_devops(idx_t *x, uint32_t n)
{
    char t[512];
    assert_int_equal(idx_count(x), n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = UINT32_MAX;
        devops_text(t, sizeof t, i);
        assert_int_equal(lookup_text(x, t, &id), 0);
        assert_int_equal(id, i);
        lset_t s;
        lset_parse(&s, t);
        st_label_t out[ST_LABELS_MAX];
        assert_int_equal(idx_labels(x, i, out), (int)s.n);
        assert_int_equal(st_labels_cmp(out, s.n, s.l, s.n), 0);
    }
    if (n >= 10) {
        st_matcher_t m = {ST_MATCH_EQ, "hostname", "host_1"};
        uint32_t *ids;
        size_t k;
        assert_int_equal(select_m(x, &m, 1, &ids, &k), 0);
        assert_int_equal(k, 5);
        assert_int_equal(ids[0], 5);
        free(ids);
    }
}

static void test_persist_reopen(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    assert_int_equal(idx_persist(x), 0); /* nothing to write: no file yet */
    assert_int_equal(file_size(log_path(d)), -1);
    add_devops(x, 0, 5000);
    assert_int_equal(idx_persist(x), 0);
    assert_int_equal(idx_disk_bytes(x), (uint64_t)file_size(log_path(d)));
    assert_true(idx_disk_bytes(x) < 5000 * 40);
    assert_int_equal(idx_persist(x), 0);
    assert_int_equal(idx_disk_bytes(x), (uint64_t)file_size(log_path(d)));
    idx_close(x);
    assert_int_equal(idx_open(d, &x), 0);
    check_devops(x, 5000);
    assert_int_equal(idx_disk_bytes(x), (uint64_t)file_size(log_path(d)));
    idx_close(x);
    rm_tmpdir(d);
}

static void test_persist_several(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    uint32_t n = 0;
    for (int round = 0; round < 6; round++) {
        uint32_t k = 1 + (uint32_t)round * 37;
        add_devops(x, n, n + k);
        n += k;
        assert_int_equal(idx_persist(x), 0);
        if (round % 2) { /* reopen in between: symbols must continue */
            idx_close(x);
            assert_int_equal(idx_open(d, &x), 0);
            check_devops(x, n);
        }
    }
    idx_close(x);
    assert_int_equal(idx_open(d, &x), 0);
    check_devops(x, n);
    /* lookups and adds continue after a reopen */
    add_devops(x, n, n + 10);
    assert_int_equal(idx_persist(x), 0);
    idx_close(x);
    assert_int_equal(idx_open(d, &x), 0);
    check_devops(x, n + 10);
    idx_close(x);
    rm_tmpdir(d);
}

static void test_persist_big_records(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    /* 40 series x 64 unique 4 KiB values = 10 MiB: more than one record */
    static char vals[ST_LABELS_MAX][ST_LABEL_VALUE_MAX];
    lset_t s;
    s.n = ST_LABELS_MAX;
    char *p = s.buf;
    for (int i = 0; i < ST_LABELS_MAX; i++) {
        int k = sprintf(p, "n%02d", i);
        s.l[i] = (st_label_t){p, vals[i], (uint32_t)k, ST_LABEL_VALUE_MAX};
        p += k + 1;
    }
    for (int j = 0; j < 40; j++) {
        for (int i = 0; i < ST_LABELS_MAX; i++)
            for (int b = 0; b < ST_LABEL_VALUE_MAX; b++)
                vals[i][b] = (char)('a' + rnd(26));
        uint32_t id;
        assert_int_equal(idx_add(x, s.l, s.n, st_labels_hash(s.l, s.n), &id), 0);
    }
    assert_int_equal(idx_persist(x), 0);
    st_label_t a[ST_LABELS_MAX], b[ST_LABELS_MAX];
    idx_t *y;
    assert_int_equal(idx_open(d, &y), 0);
    assert_int_equal(idx_count(y), 40);
    for (uint32_t j = 0; j < 40; j++) {
        assert_int_equal(idx_labels(x, j, a), ST_LABELS_MAX);
        assert_int_equal(idx_labels(y, j, b), ST_LABELS_MAX);
        assert_int_equal(st_labels_cmp(a, ST_LABELS_MAX, b, ST_LABELS_MAX), 0);
    }
    idx_close(y);
    idx_close(x);
    rm_tmpdir(d);
}

static void copy_file(const char *from, const char *to, off_t len)
{
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    assert_non_null(f);
    assert_non_null(g);
    char buf[4096];
    while (len > 0) {
        size_t k = fread(buf, 1, len < (off_t)sizeof buf ? (size_t)len : sizeof buf, f);
        assert_true(k > 0);
        assert_int_equal(fwrite(buf, 1, k, g), k);
        len -= (off_t)k;
    }
    fclose(f);
    fclose(g);
}

/* Two records: [0, s1) with n1 series and [s1, s2). */
static char *two_records(off_t *s1, off_t *s2, uint32_t *n1, uint32_t *n2)
{
    char *d = make_tmpdir();
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    *n1 = 30;
    *n2 = 55;
    add_devops(x, 0, *n1);
    assert_int_equal(idx_persist(x), 0);
    *s1 = file_size(log_path(d));
    add_devops(x, *n1, *n2);
    assert_int_equal(idx_persist(x), 0);
    *s2 = file_size(log_path(d));
    idx_close(x);
    return d;
}

static void test_torn_tail(void **state)
{
    (void)state;
    off_t s1, s2;
    uint32_t n1, n2;
    char *src = two_records(&s1, &s2, &n1, &n2);
    char *d = make_tmpdir();
    char from[512];
    snprintf(from, sizeof from, "%s", log_path(src));
    for (off_t cut = s1; cut <= s2; cut++) {
        copy_file(from, log_path(d), cut);
        idx_t *x;
        assert_int_equal(idx_open(d, &x), 0);
        uint32_t want = cut == s2 ? n2 : n1;
        assert_int_equal(idx_count(x), want);
        assert_int_equal(file_size(log_path(d)), cut == s2 ? s2 : s1);
        assert_int_equal(idx_disk_bytes(x), (uint64_t)(cut == s2 ? s2 : s1));
        if (cut == s1 + 7 || cut == s2 - 1) { /* and the log keeps working */
            check_devops(x, want);
            add_devops(x, want, n2);
            assert_int_equal(idx_persist(x), 0);
            idx_close(x);
            assert_int_equal(idx_open(d, &x), 0);
            check_devops(x, n2);
        }
        idx_close(x);
    }
    /* cuts inside the first record lose everything */
    for (off_t cut = 0; cut < s1; cut += 3) {
        copy_file(from, log_path(d), cut);
        idx_t *x;
        assert_int_equal(idx_open(d, &x), 0);
        assert_int_equal(idx_count(x), 0);
        assert_int_equal(file_size(log_path(d)), 0);
        idx_close(x);
    }
    rm_tmpdir(d);
    rm_tmpdir(src);
}

static void test_corrupt_byte(void **state)
{
    (void)state;
    off_t s1, s2;
    uint32_t n1, n2;
    char *d = two_records(&s1, &s2, &n1, &n2);
    char path[512], save[512];
    snprintf(path, sizeof path, "%s", log_path(d));
    snprintf(save, sizeof save, "%s/orig", d);
    copy_file(path, save, s2);
    for (off_t at = 0; at < s2; at++) {
        copy_file(save, path, s2);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        unsigned char c;
        assert_int_equal(pread(fd, &c, 1, at), 1);
        c ^= (unsigned char)(1u << (at % 8));
        assert_int_equal(pwrite(fd, &c, 1, at), 1);
        close(fd);
        idx_t *x;
        assert_int_equal(idx_open(d, &x), 0);
        assert_int_equal(idx_count(x), at < s1 ? 0 : n1);
        assert_int_equal(file_size(path), at < s1 ? 0 : s1);
        if (at == s1 + 9)
            check_devops(x, n1);
        idx_close(x);
    }
    /* zeros after the records (a crash after the size was extended): truncated */
    copy_file(save, path, s2);
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    for (int i = 0; i < 100; i++)
        fputc(0, f);
    fclose(f);
    idx_t *x;
    assert_int_equal(idx_open(d, &x), 0);
    assert_int_equal(idx_count(x), n2);
    assert_int_equal(file_size(path), s2);
    idx_close(x);
    rm_tmpdir(d);
}

/* A record with a valid CRC but wrong content is not a torn tail: the open fails. */
static void test_valid_crc_bad_content(void **state)
{
    (void)state;
    off_t s1, s2;
    uint32_t n1, n2;
    char *d = two_records(&s1, &s2, &n1, &n2);
    char path[512], first[512];
    snprintf(path, sizeof path, "%s", log_path(d));
    snprintf(first, sizeof first, "%s/first", d);
    copy_file(path, first, s1);
    /* append record 1 again: its first id (0) is not the next id */
    FILE *f = fopen(path, "ab"), *g = fopen(first, "rb");
    char buf[65536];
    size_t k = fread(buf, 1, sizeof buf, g);
    assert_int_equal(k, s1);
    assert_int_equal(fwrite(buf, 1, k, f), k);
    fclose(f);
    fclose(g);
    idx_t *x = NULL;
    assert_int_equal(idx_open(d, &x), ST_ECORRUPT);
    assert_null(x);
    assert_int_equal(file_size(path), s2 + s1); /* untouched */
    /* a future format version in a well-formed record */
    uint8_t *r = (uint8_t *)buf;
    r[8] = 2;
    uint32_t crc = st_crc32c(0, r + 8, (size_t)s1 - 8);
    r[4] = (uint8_t)crc;
    r[5] = (uint8_t)(crc >> 8);
    r[6] = (uint8_t)(crc >> 16);
    r[7] = (uint8_t)(crc >> 24);
    f = fopen(path, "wb");
    assert_int_equal(fwrite(buf, 1, k, f), k);
    fclose(f);
    assert_int_equal(idx_open(d, &x), ST_EVERSION);
    assert_int_equal(file_size(path), s1);
    rm_tmpdir(d);
}

static void test_open_errors(void **state)
{
    (void)state;
    idx_t *x = (idx_t *)1;
    assert_int_equal(idx_open("/nonexistent/dir/for/idx", &x), ST_ENOENT);
    assert_null(x);
    char *d = make_tmpdir();
    assert_int_equal(idx_open(log_path(d), &x), ST_ENOENT);
    char file[512];
    snprintf(file, sizeof file, "%s/plain", d);
    FILE *f = fopen(file, "w");
    fclose(f);
    assert_int_equal(idx_open(file, &x), ST_EINVAL);
    rm_tmpdir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_lookup_many),
        cmocka_unit_test(test_hash_collisions),
        cmocka_unit_test(test_labels_roundtrip),
        cmocka_unit_test(test_add_invalid_orphans),
        cmocka_unit_test(test_lookup_many),
        cmocka_unit_test(test_matchers),
        cmocka_unit_test(test_matcher_errors),
        cmocka_unit_test(test_random_vs_bruteforce),
        cmocka_unit_test(test_literal_opt_equivalence),
        cmocka_unit_test(test_label_names_values),
        cmocka_unit_test(test_persist_reopen),
        cmocka_unit_test(test_persist_several),
        cmocka_unit_test(test_persist_big_records),
        cmocka_unit_test(test_torn_tail),
        cmocka_unit_test(test_corrupt_byte),
        cmocka_unit_test(test_valid_crc_bad_content),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
