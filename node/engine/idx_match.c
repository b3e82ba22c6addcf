/*
 * idx_match — label matchers, label names and label values over the index
 * built by idx.c (see the top of idx.c for the data structures).
 *
 * MATCHER SEMANTICS (Prometheus)
 *
 *   Each matcher is a predicate p(v) on the value of its label, where a
 *   series without the label has v = "". =~ and !~ are fully anchored PCRE2
 *   regexes (compiled with PCRE2_ANCHORED | PCRE2_ENDANCHORED, so a pattern
 *   cannot escape the anchoring with ")|(", plus PCRE2_UTF and PCRE2_DOTALL:
 *   "." also matches "\n", as in Prometheus 3). A series is selected when
 *   every p holds. At least one matcher must reject "" (ST_EINVAL
 *   otherwise), so a selection never has to start from "all series".
 *
 * RESOLUTION
 *
 *   A matcher with me = p("") false is "positive": its series are the union
 *   of the postings of the values v with p(v). One with me true is
 *   "negative": it removes the postings of the values with !p(v). In both
 *   cases the postings needed are those of the values where p(v) != me.
 *
 *   Regexes that are plain literals or alternations of literals ("a|b\.c")
 *   become sorted literal sets (K_LIT, like = and !=), "lit.*", ".*lit",
 *   ".*lit.*", ".*" and ".+" become string tests; only the rest runs PCRE2
 *   (JIT when available, on its own bounded stack), with a match limit and
 *   a depth limit: a value whose test runs into them ends the selection
 *   with ST_ELIMIT and ERR_REGEX_LIMIT, so a pattern with nested
 *   quantifiers fails in milliseconds instead of backtracking for minutes. When "" is not in a
 * literal set, the postings needed are found by direct (name, literal) lookups ("direct");
 * otherwise every value of the label is tested once.
 *
 *   Order: direct positives by ascending size (intersected, galloping when
 *   sizes differ a lot); if there is none, the cheapest other positive;
 *   then direct negatives; then the remaining matchers, cheapest first. A
 *   remaining non-direct matcher is applied by testing the candidates' own
 *   labels when its label has 16x more values than there are candidates,
 *   else through postings (probing each candidate in the matching postings
 *   when they are much larger than the candidates, else merging their
 *   union). Nothing ever scans all series.
 */
#include <stdlib.h>
#include <string.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "idx.h"
#include "idx_internal.h"
#include "st_err.h"
#include "st_text.h"

#define ERR_ALL_EMPTY "vector selector must contain at least one non-empty matcher"
#define ERR_BAD_REGEX "invalid regular expression"
#define ERR_REGEX_LIMIT                                                                            \
    "regex exceeded its match limit (nested quantifiers such as (a+)+ backtrack exponentially; "   \
    "simplify the pattern)"

/* PCRE2 limits of a label matcher: a value is tested in bounded steps
 * (match limit: backtracking calls; depth: nested backtracking frames;
 * JIT stack: the JIT's own), so a pathological pattern fails fast with
 * ERR_REGEX_LIMIT instead of running for minutes. */
#define RE_MATCH_LIMIT 1000000u
#define RE_DEPTH_LIMIT 10000u
#define RE_JIT_STACK_MIN (32u << 10)
#define RE_JIT_STACK_MAX (1u << 20)

enum { K_LIT, K_PREFIX, K_SUFFIX, K_CONTAINS, K_ANY, K_NONEMPTY, K_RE };

typedef struct lit {
    const char *p;
    uint32_t len;
} lit_t;

typedef struct mstate {
    int64_t name; /* x->names index, -1 when no series has the label */
    int neg;      /* != and !~: p(v) = !raw(v) */
    int kind;
    lit_t *lits; /* K_LIT: sorted, distinct; K_PREFIX/SUFFIX/CONTAINS: lits[0] */
    size_t nlits;
    char *buf;
    pcre2_code *re;
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
    int limit;  /* a match ran into a PCRE2 limit */
    int me;     /* p("") */
    int direct; /* the postings needed come from literal lookups */
    uint32_t *pids;
    size_t npids;
    uint64_t size; /* series in pids */
    int done;
} mstate_t;

static int slice_cmp(const char *a, uint32_t na, const char *b, uint32_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c)
        return c;
    return na < nb ? -1 : na > nb;
}

static int lit_cmp(const void *a, const void *b)
{
    const lit_t *x = a, *y = b;
    return slice_cmp(x->p, x->len, y->p, y->len);
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- predicates ----------------------------------------------------------------- */

static int raw_match(mstate_t *ms, const char *p, uint32_t len)
{
    const lit_t *l = ms->lits;
    switch (ms->kind) {
    case K_LIT: {
        size_t lo = 0, hi = ms->nlits;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = slice_cmp(l[mid].p, l[mid].len, p, len);
            if (c == 0)
                return 1;
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        return 0;
    }
    case K_PREFIX:
        return len >= l->len && memcmp(p, l->p, l->len) == 0;
    case K_SUFFIX:
        return len >= l->len && memcmp(p + len - l->len, l->p, l->len) == 0;
    case K_CONTAINS:
        return l->len == 0 || memmem(p, len, l->p, l->len) != NULL;
    case K_ANY:
        return 1;
    case K_NONEMPTY:
        return len > 0;
    default: {
        int rc = pcre2_match(ms->re, (PCRE2_SPTR)p, len, 0, 0, ms->md, ms->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(ms->re, (PCRE2_SPTR)p, len, 0, PCRE2_NO_JIT, ms->md, ms->mc);
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
            rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
            ms->limit = 1;
        return rc >= 0;
    }
    }
}

static int pred(mstate_t *ms, const char *p, uint32_t len)
{
    return raw_match(ms, p, len) ^ ms->neg;
}

/* ---- matcher preparation ----------------------------------------------------------- */

static int is_meta(unsigned char c)
{
    return c && strchr("^$.?*+()[]{}|\\", c) != NULL;
}

static int is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * Parse [s, s+n) as literal text (escaped ASCII punctuation allowed) or,
 * with `alt`, literals separated by '|'. Unescaped text goes to `buf`
 * (>= n bytes), the pieces to `lits`. Returns 1 if it is all literal.
 */
static int parse_literals(const char *s, size_t n, int alt, char *buf, lit_t *lits, size_t *nlits)
{
    size_t o = 0, start = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            if (i + 1 >= n)
                return 0;
            unsigned char d = (unsigned char)s[++i];
            if (d >= 0x80 || is_alnum(d))
                return 0;
            buf[o++] = (char)d;
        } else if (c == '|') {
            if (!alt)
                return 0;
            lits[k++] = (lit_t){buf + start, (uint32_t)(o - start)};
            start = o;
        } else if (is_meta(c)) {
            return 0;
        } else {
            buf[o++] = (char)c;
        }
    }
    lits[k++] = (lit_t){buf + start, (uint32_t)(o - start)};
    *nlits = k;
    return 1;
}

/* Try the fast forms of a regex; 1 if one applies (ms->kind set). */
static int analyze_regex(mstate_t *ms, const char *v, size_t n)
{
    size_t bars = 1;
    for (size_t i = 0; i < n; i++)
        bars += v[i] == '|';
    ms->buf = malloc(n + 1);
    ms->lits = malloc(bars * sizeof *ms->lits);
    if (!ms->buf || !ms->lits)
        return ST_ENOMEM;
    if (parse_literals(v, n, 1, ms->buf, ms->lits, &ms->nlits)) {
        ms->kind = K_LIT;
        return 1;
    }
    if (n == 2 && v[0] == '.' && (v[1] == '*' || v[1] == '+')) {
        ms->kind = v[1] == '*' ? K_ANY : K_NONEMPTY;
        return 1;
    }
    int pre = n >= 2 && v[0] == '.' && v[1] == '*';
    int suf = n >= 2 && v[n - 2] == '.' && v[n - 1] == '*';
    size_t b = pre ? 2 : 0, e = suf ? n - 2 : n;
    if ((pre || suf) && b <= e && parse_literals(v + b, e - b, 0, ms->buf, ms->lits, &ms->nlits)) {
        ms->kind = pre && suf ? K_CONTAINS : pre ? K_SUFFIX : K_PREFIX;
        return 1;
    }
    return 0;
}

static int prepare(const idx_t *x, const st_matcher_t *m, mstate_t *ms, const char **why)
{
    if (!m->name || !m->value) {
        *why = "matcher without a name or value";
        return ST_EINVAL;
    }
    size_t vl = strlen(m->value);
    ms->name = idx__name_find(x, m->name, strlen(m->name));
    ms->kind = K_RE;
    switch (m->type) {
    case ST_MATCH_EQ:
    case ST_MATCH_NE:
        ms->neg = m->type == ST_MATCH_NE;
        if (vl > UINT32_MAX)
            return ST_ELIMIT;
        if (!(ms->lits = malloc(sizeof *ms->lits)))
            return ST_ENOMEM;
        ms->lits[0] = (lit_t){m->value, (uint32_t)vl};
        ms->nlits = 1;
        ms->kind = K_LIT;
        break;
    case ST_MATCH_RE:
    case ST_MATCH_NRE: {
        ms->neg = m->type == ST_MATCH_NRE;
        if (vl > UINT32_MAX)
            return ST_ELIMIT;
        if (x->regex_opt && st_utf8_valid(m->value, vl)) {
            int rc = analyze_regex(ms, m->value, vl);
            if (rc < 0)
                return rc;
        }
        if (ms->kind != K_RE)
            break;
        int ec;
        PCRE2_SIZE eo;
        ms->re = pcre2_compile((PCRE2_SPTR)m->value, vl,
                               PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOTALL, &ec,
                               &eo, NULL);
        if (!ms->re) {
            *why = ERR_BAD_REGEX;
            return ST_EINVAL;
        }
        if (!(ms->md = pcre2_match_data_create(1, NULL)) ||
            !(ms->mc = pcre2_match_context_create(NULL)))
            return ST_ENOMEM;
        pcre2_set_match_limit(ms->mc, RE_MATCH_LIMIT);
        pcre2_set_depth_limit(ms->mc, RE_DEPTH_LIMIT);
        /* JIT when available (the interpreter if it fails), on its own stack */
        if (pcre2_jit_compile(ms->re, PCRE2_JIT_COMPLETE) == 0 &&
            (ms->js = pcre2_jit_stack_create(RE_JIT_STACK_MIN, RE_JIT_STACK_MAX, NULL)))
            pcre2_jit_stack_assign(ms->mc, NULL, ms->js);
        break;
    }
    default:
        *why = "unknown matcher type";
        return ST_EINVAL;
    }
    if (ms->kind == K_LIT && ms->nlits > 1) {
        qsort(ms->lits, ms->nlits, sizeof *ms->lits, lit_cmp);
        size_t o = 1;
        for (size_t i = 1; i < ms->nlits; i++)
            if (lit_cmp(&ms->lits[i], &ms->lits[o - 1]))
                ms->lits[o++] = ms->lits[i];
        ms->nlits = o;
    }
    ms->me = pred(ms, "", 0);
    if (ms->limit) {
        *why = ERR_REGEX_LIMIT;
        return ST_ELIMIT;
    }
    ms->direct = ms->kind == K_LIT && ms->lits[0].len > 0;
    return 0;
}

static void mstate_free(mstate_t *ms)
{
    free(ms->lits);
    free(ms->buf);
    free(ms->pids);
    pcre2_match_data_free(ms->md);
    pcre2_match_context_free(ms->mc);
    pcre2_jit_stack_free(ms->js);
    pcre2_code_free(ms->re);
}

/* Gather the non-empty plists of the values v of the label with p(v) != me. */
static int collect(const idx_t *x, mstate_t *ms)
{
    ms->npids = 0;
    ms->size = 0;
    if (ms->name < 0)
        return 0;
    const idx_name_t *nm = &x->names[ms->name];
    size_t max = ms->direct ? ms->nlits : nm->nvals;
    if (max && !(ms->pids = malloc(max * sizeof *ms->pids)))
        return ST_ENOMEM;
    for (size_t i = 0; i < max; i++) {
        int64_t pid;
        if (ms->direct) {
            int64_t s = idx__sym_find(x, ms->lits[i].p, ms->lits[i].len);
            if (s < 0 || (pid = idx__pair_find(x, nm->sym, (uint32_t)s)) < 0)
                continue;
        } else {
            pid = nm->vals[i];
            const idx_sym_t *v = &x->syms[x->pl[pid].value];
            if (x->pl[pid].n == 0 || pred(ms, v->p, v->len) == ms->me) {
                if (ms->limit)
                    break; /* refused: the first value over the limit ends it */
                continue;
            }
        }
        if (x->pl[pid].n == 0)
            continue;
        ms->pids[ms->npids++] = (uint32_t)pid;
        ms->size += x->pl[pid].n;
    }
    return ms->limit ? ST_ELIMIT : 0;
}

static uint64_t cost(const idx_t *x, const mstate_t *ms)
{
    if (ms->direct)
        return ms->size;
    return ms->name < 0 ? 0 : x->names[ms->name].nvals;
}

/* ---- sorted id sets --------------------------------------------------------------- */

/* First index >= lo with b[index] >= v (galloping, then binary search). */
static size_t gallop(const uint32_t *b, size_t lo, size_t nb, uint32_t v)
{
    size_t hi = lo, step = 1;
    while (hi < nb && b[hi] < v) {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    if (hi > nb)
        hi = nb;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * a = a ∩ b (keep 1) or a \ b (keep 0), in place, both sorted sets;
 * returns the new length. b is galloped through when a is much smaller,
 * else walked alongside a.
 */
static inline size_t set_filter(uint32_t *a, size_t na, const uint32_t *b, size_t nb, int keep)
{
    size_t o = 0, i = 0, j = 0;
    int gal = na * 16 < nb;
    for (; i < na; i++) {
        if (gal)
            j = gallop(b, j, nb, a[i]);
        else
            while (j < nb && b[j] < a[i])
                j++;
        if (j == nb)
            break;
        if ((b[j] == a[i]) == keep)
            a[o++] = a[i];
    }
    if (!keep) /* past the end of b: nothing more to take out */
        for (; i < na; i++)
            a[o++] = a[i];
    return o;
}

static size_t set_and(uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    return set_filter(a, na, b, nb, 1);
}

static size_t set_sub(uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    return set_filter(a, na, b, nb, 0);
}

/* Union of the (disjoint or not) plists `pids` as a new sorted array. */
static int set_union(const idx_t *x, const uint32_t *pids, size_t k, uint64_t total, uint32_t **out,
                     size_t *n)
{
    *out = NULL;
    *n = 0;
    if (total == 0)
        return 0;
    uint32_t *u = malloc(total * sizeof *u);
    if (!u)
        return ST_ENOMEM;
    size_t o = 0;
    if (k == 1) {
        memcpy(u, x->pl[pids[0]].ids, total * sizeof *u);
        o = total;
    } else if (total * 32 >= x->count) {
        size_t words = ((size_t)x->count + 63) / 64;
        uint64_t *bm = calloc(words, sizeof *bm);
        if (!bm) {
            free(u);
            return ST_ENOMEM;
        }
        for (size_t i = 0; i < k; i++) {
            const idx_plist_t *pl = &x->pl[pids[i]];
            for (uint32_t j = 0; j < pl->n; j++)
                bm[pl->ids[j] / 64] |= 1ull << (pl->ids[j] % 64);
        }
        for (size_t w = 0; w < words; w++)
            for (uint64_t b = bm[w]; b; b &= b - 1)
                u[o++] = (uint32_t)(w * 64 + (unsigned)__builtin_ctzll(b));
        free(bm);
    } else {
        for (size_t i = 0; i < k; i++) {
            const idx_plist_t *pl = &x->pl[pids[i]];
            memcpy(u + o, pl->ids, (size_t)pl->n * sizeof *u);
            o += pl->n;
        }
        qsort(u, o, sizeof *u, u32_cmp);
        size_t d = o ? 1 : 0;
        for (size_t i = 1; i < o; i++)
            if (u[i] != u[d - 1])
                u[d++] = u[i];
        o = d;
    }
    *out = u;
    *n = o;
    return 0;
}

static int contains(const uint32_t *b, size_t nb, uint32_t v)
{
    size_t j = gallop(b, 0, nb, v);
    return j < nb && b[j] == v;
}

/* r = r ∩ (union of ms->pids) */
static int and_union(const idx_t *x, const mstate_t *ms, uint32_t *r, size_t *nr)
{
    if (ms->npids == 0) {
        *nr = 0;
        return 0;
    }
    if (ms->npids == 1) {
        const idx_plist_t *pl = &x->pl[ms->pids[0]];
        *nr = set_and(r, *nr, pl->ids, pl->n);
        return 0;
    }
    if ((uint64_t)*nr * ms->npids * 4 < ms->size) {
        size_t o = 0;
        for (size_t i = 0; i < *nr; i++)
            for (size_t k = 0; k < ms->npids; k++) {
                const idx_plist_t *pl = &x->pl[ms->pids[k]];
                if (contains(pl->ids, pl->n, r[i])) {
                    r[o++] = r[i];
                    break;
                }
            }
        *nr = o;
        return 0;
    }
    uint32_t *u;
    size_t nu;
    int rc = set_union(x, ms->pids, ms->npids, ms->size, &u, &nu);
    if (rc)
        return rc;
    *nr = set_and(r, *nr, u, nu);
    free(u);
    return 0;
}

/* The value of label `name` (x->names index, or -1) in series `id`, "" if absent. */
static const idx_sym_t *series_value(const idx_t *x, uint32_t id, int64_t name)
{
    static const idx_sym_t empty = {"", 0, 0};
    if (name < 0)
        return &empty;
    uint32_t sym = x->names[name].sym, n;
    const uint32_t *p = idx__series(x, id, &n);
    for (uint32_t k = 0; k < n; k++) {
        const idx_plist_t *pl = &x->pl[p[k]];
        if (pl->name == sym)
            return &x->syms[pl->value];
    }
    return &empty;
}

/* ---- idx_select ------------------------------------------------------------------ */

int idx_select(const idx_t *x, const st_matcher_t *m, size_t nm, uint32_t **ids, size_t *n,
               const char **err)
{
    const char *why = NULL;
    mstate_t *ms = NULL;
    size_t *ord = NULL;
    uint32_t *r = NULL;
    size_t nr = 0;
    int rc = 0;
    *ids = NULL;
    *n = 0;
    if (nm == 0) {
        why = ERR_ALL_EMPTY;
        rc = ST_EINVAL;
        goto out;
    }
    ms = calloc(nm, sizeof *ms);
    ord = calloc(nm, sizeof *ord);
    if (!ms || !ord) {
        rc = ST_ENOMEM;
        goto out;
    }
    int any_pos = 0;
    for (size_t i = 0; i < nm; i++) {
        if ((rc = prepare(x, &m[i], &ms[i], &why)))
            goto out;
        any_pos |= !ms[i].me;
    }
    if (!any_pos) {
        why = ERR_ALL_EMPTY;
        rc = ST_EINVAL;
        goto out;
    }
    for (size_t i = 0; i < nm; i++)
        if (ms[i].direct && (rc = collect(x, &ms[i])))
            goto out;

    /* processing order: direct positives, direct negatives, the rest; each by cost */
    for (size_t i = 0; i < nm; i++)
        ord[i] = i;
    for (size_t i = 1; i < nm; i++) {
        size_t t = ord[i], j = i;
        const mstate_t *b = &ms[t];
        int rb = b->direct ? (b->me ? 1 : 0) : 2;
        while (j > 0) {
            const mstate_t *a = &ms[ord[j - 1]];
            int ra = a->direct ? (a->me ? 1 : 0) : 2;
            if (ra < rb || (ra == rb && cost(x, a) <= cost(x, b)))
                break;
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = t;
    }

    /* the starting set: the smallest direct positive, else the cheapest positive */
    mstate_t *s0 = NULL;
    for (size_t i = 0; i < nm && !s0; i++)
        if (!ms[ord[i]].me)
            s0 = &ms[ord[i]];
    if (!s0->direct && (rc = collect(x, s0)))
        goto out;
    if ((rc = set_union(x, s0->pids, s0->npids, s0->size, &r, &nr)))
        goto out;
    s0->done = 1;

    for (size_t i = 0; i < nm && nr > 0; i++) {
        mstate_t *c = &ms[ord[i]];
        if (c->done)
            continue;
        /* testing a candidate's own labels costs ~ a dozen value tests (random access) */
        if (!c->direct && (uint64_t)nr * 16 <= cost(x, c)) {
            size_t o = 0;
            for (size_t k = 0; k < nr && !c->limit; k++) {
                const idx_sym_t *v = series_value(x, r[k], c->name);
                if (pred(c, v->p, v->len))
                    r[o++] = r[k];
            }
            nr = o;
            if (c->limit) {
                rc = ST_ELIMIT;
                goto out;
            }
            continue;
        }
        if (!c->direct && (rc = collect(x, c)))
            goto out;
        if (!c->me) {
            if ((rc = and_union(x, c, r, &nr)))
                goto out;
        } else if (c->npids == 1) {
            const idx_plist_t *pl = &x->pl[c->pids[0]];
            nr = set_sub(r, nr, pl->ids, pl->n);
        } else if (c->npids > 1) {
            uint32_t *u;
            size_t nu;
            if ((rc = set_union(x, c->pids, c->npids, c->size, &u, &nu)))
                goto out;
            nr = set_sub(r, nr, u, nu);
            free(u);
        }
    }
    if (nr == 0) {
        free(r);
        r = NULL;
    }
    *ids = r;
    *n = nr;
    r = NULL;
out:
    free(r);
    if (ms)
        for (size_t i = 0; i < nm; i++) {
            if (ms[i].limit)
                why = ERR_REGEX_LIMIT;
            mstate_free(&ms[i]);
        }
    free(ms);
    free(ord);
    if (err)
        *err = why;
    return rc;
}

/* ---- label names and values ---------------------------------------------------------- */

static int emit_sorted(lit_t *v, size_t n, idx_str_cb cb, void *arg)
{
    qsort(v, n, sizeof *v, lit_cmp);
    for (size_t i = 0; i < n; i++) {
        int rc = cb(arg, v[i].p, v[i].len);
        if (rc)
            return rc;
    }
    return 0;
}

static int check_ids(const idx_t *x, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= x->count)
            return ST_EINVAL;
    return 0;
}

int idx_label_names(const idx_t *x, const uint32_t *ids, size_t n, idx_str_cb cb, void *arg)
{
    int rc = 0;
    if (ids && (rc = check_ids(x, ids, n)))
        return rc;
    if (x->nnames == 0 || (ids && n == 0))
        return 0;
    lit_t *v = malloc(x->nnames * sizeof *v);
    uint8_t *seen = ids ? calloc(x->nnames, 1) : NULL;
    if (!v || (ids && !seen)) {
        rc = ST_ENOMEM;
        goto out;
    }
    if (ids)
        for (size_t i = 0; i < n; i++) {
            uint32_t ns;
            const uint32_t *p = idx__series(x, ids[i], &ns);
            for (uint32_t k = 0; k < ns; k++)
                seen[x->syms[x->pl[p[k]].name].name - 1] = 1;
        }
    size_t o = 0;
    for (uint32_t i = 0; i < x->nnames; i++) {
        const idx_name_t *nm = &x->names[i];
        if (seen && !seen[i])
            continue;
        if (!seen) {
            uint32_t k = 0;
            while (k < nm->nvals && x->pl[nm->vals[k]].n == 0)
                k++;
            if (k == nm->nvals)
                continue;
        }
        v[o++] = (lit_t){x->syms[nm->sym].p, x->syms[nm->sym].len};
    }
    rc = emit_sorted(v, o, cb, arg);
out:
    free(v);
    free(seen);
    return rc;
}

int idx_label_values(const idx_t *x, const char *name, const uint32_t *ids, size_t n, idx_str_cb cb,
                     void *arg)
{
    int rc;
    if (ids && (rc = check_ids(x, ids, n)))
        return rc;
    int64_t ni = idx__name_find(x, name, strlen(name));
    if (ni < 0 || (ids && n == 0))
        return 0;
    const idx_name_t *nm = &x->names[ni];
    size_t cap = ids ? n : nm->nvals, o = 0;
    uint32_t *syms = malloc((cap ? cap : 1) * sizeof *syms);
    lit_t *v = malloc((cap ? cap : 1) * sizeof *v);
    if (!syms || !v) {
        rc = ST_ENOMEM;
        goto out;
    }
    if (ids) {
        for (size_t i = 0; i < n; i++) {
            uint32_t ns;
            const uint32_t *p = idx__series(x, ids[i], &ns);
            for (uint32_t k = 0; k < ns; k++) {
                const idx_plist_t *pl = &x->pl[p[k]];
                if (pl->name == nm->sym) {
                    syms[o++] = pl->value;
                    break;
                }
            }
        }
        qsort(syms, o, sizeof *syms, u32_cmp);
    } else {
        for (uint32_t i = 0; i < nm->nvals; i++)
            if (x->pl[nm->vals[i]].n)
                syms[o++] = x->pl[nm->vals[i]].value;
    }
    size_t d = 0;
    for (size_t i = 0; i < o; i++) {
        if (ids && i > 0 && syms[i] == syms[i - 1])
            continue;
        v[d++] = (lit_t){x->syms[syms[i]].p, x->syms[syms[i]].len};
    }
    rc = emit_sorted(v, d, cb, arg);
out:
    free(syms);
    free(v);
    return rc;
}
