/* test_lp — line protocol parser (common/lp.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lp.h"
#include "st_err.h"
#include "st_labels.h"

/* ---- a collector that deep-copies what the parser delivers ---------------- */

#define MAXP 64
#define MAXT 130
#define MAXF 40

typedef struct cpoint {
    char *m;
    int ntags;
    char *tk[MAXT], *tv[MAXT];
    int nf;
    char *fk[MAXF];
    lp_ftype_t ft[MAXF];
    double fv[MAXF];
    int64_t fi[MAXF];
    uint64_t fu[MAXF];
    char *fs[MAXF];
    int64_t ts;
    uint64_t line;
    int nseries;
    int snl[MAXF];
    char *sname[MAXF]; /* "n1=v1,n2=v2,..." */
    double sval[MAXF];
} cpoint_t;

typedef struct coll {
    cpoint_t p[MAXP];
    int np;
    uint64_t eline[MAXP];
    int ecode[MAXP];
    char ereason[MAXP][400];
    int ne;
    int rc;
    int abort_code;
    lp_stats_t st;
} coll_t;

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int on_point(void *arg, const lp_point_t *pt)
{
    coll_t *c = arg;
    if (c->abort_code)
        return c->abort_code;
    assert_true(c->np < MAXP);
    cpoint_t *p = &c->p[c->np++];
    p->m = dupn(pt->measurement, pt->measurement_len);
    assert_true(pt->ntags <= MAXT);
    p->ntags = (int)pt->ntags;
    for (uint32_t i = 0; i < pt->ntags; i++) {
        p->tk[i] = dupn(pt->tags[i].name, pt->tags[i].name_len);
        p->tv[i] = dupn(pt->tags[i].value, pt->tags[i].value_len);
    }
    p->nf = (int)pt->nfields;
    for (uint32_t i = 0; i < pt->nfields && i < MAXF; i++) {
        const lp_field_t *f = &pt->fields[i];
        p->fk[i] = dupn(f->name, f->name_len);
        p->ft[i] = f->type;
        p->fv[i] = f->value;
        p->fi[i] = f->i;
        p->fu[i] = f->u;
        p->fs[i] = f->type == LP_STRING ? dupn(f->str, f->str_len) : NULL;
    }
    p->ts = pt->ts_ms;
    p->line = pt->line;
    p->nseries = (int)pt->nseries;
    for (uint32_t i = 0; i < pt->nseries && i < MAXF; i++) {
        const lp_series_t *s = &pt->series[i];
        size_t len = 0;
        for (uint32_t j = 0; j < s->nlabels; j++)
            len += s->labels[j].name_len + s->labels[j].value_len + 2;
        char *b = malloc(len + 1), *o = b;
        for (uint32_t j = 0; j < s->nlabels; j++) {
            if (j)
                *o++ = ',';
            memcpy(o, s->labels[j].name, s->labels[j].name_len);
            o += s->labels[j].name_len;
            *o++ = '=';
            memcpy(o, s->labels[j].value, s->labels[j].value_len);
            o += s->labels[j].value_len;
        }
        *o = '\0';
        p->sname[i] = b;
        p->snl[i] = (int)s->nlabels;
        p->sval[i] = s->value;
        /* the label set is canonical */
        const char *why = NULL;
        assert_int_equal(st_labels_validate(s->labels, s->nlabels, &why), 0);
        assert_true(s->field < pt->nfields);
    }
    return 0;
}

static void on_error(void *arg, uint64_t line, int code, const char *reason)
{
    coll_t *c = arg;
    assert_true(c->ne < MAXP);
    c->eline[c->ne] = line;
    c->ecode[c->ne] = code;
    snprintf(c->ereason[c->ne], sizeof c->ereason[0], "%s", reason);
    c->ne++;
}

static void coll_free(coll_t *c)
{
    for (int i = 0; i < c->np; i++) {
        cpoint_t *p = &c->p[i];
        free(p->m);
        for (int j = 0; j < p->ntags; j++) {
            free(p->tk[j]);
            free(p->tv[j]);
        }
        for (int j = 0; j < p->nf && j < MAXF; j++) {
            free(p->fk[j]);
            free(p->fs[j]);
        }
        for (int j = 0; j < p->nseries && j < MAXF; j++)
            free(p->sname[j]);
    }
    free(c);
}

static coll_t *run_n(const char *body, size_t len, const lp_opts_t *o)
{
    coll_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    lp_parser_t *p = NULL;
    assert_int_equal(lp_parser_create(o, &p), 0);
    /* a private copy, so ASan catches reads past the end */
    char *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    c->rc = lp_parse(p, copy, len, on_point, on_error, c);
    lp_parser_stats(p, &c->st);
    free(copy);
    lp_parser_destroy(p);
    return c;
}

static coll_t *run(const char *body)
{
    return run_n(body, strlen(body), NULL);
}

static coll_t *run_series(const char *body)
{
    lp_opts_t o = {.series = 1};
    return run_n(body, strlen(body), &o);
}

/* One good line; returns its point. */
static cpoint_t *one(coll_t *c)
{
    if (c->ne)
        fail_msg("unexpected error at line %llu: %s", (unsigned long long)c->eline[0],
                 c->ereason[0]);
    assert_int_equal(c->np, 1);
    return &c->p[0];
}

/* One bad line with this reason and code. */
static void expect_error(const char *body, int code, const char *reason)
{
    coll_t *c = run(body);
    if (c->np || c->ne != 1)
        fail_msg("'%s': %d points, %d errors", body, c->np, c->ne);
    if (strcmp(c->ereason[0], reason) != 0)
        fail_msg("'%s': reason '%s', want '%s'", body, c->ereason[0], reason);
    assert_int_equal(c->ecode[0], code);
    assert_int_equal(c->eline[0], 1);
    assert_int_equal(c->rc, 1);
    coll_free(c);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_basic(void **state)
{
    (void)state;
    coll_t *c = run("cpu,host=a,region=b f1=1,f2=2i,f3=true,f4=\"str\",f5=7u 1000000000\n");
    cpoint_t *p = one(c);
    assert_string_equal(p->m, "cpu");
    assert_int_equal(p->ntags, 2);
    assert_string_equal(p->tk[0], "host");
    assert_string_equal(p->tv[0], "a");
    assert_string_equal(p->tk[1], "region");
    assert_string_equal(p->tv[1], "b");
    assert_int_equal(p->nf, 5);
    assert_string_equal(p->fk[0], "f1");
    assert_int_equal(p->ft[0], LP_FLOAT);
    assert_true(p->fv[0] == 1.0);
    assert_int_equal(p->ft[1], LP_INT);
    assert_int_equal(p->fi[1], 2);
    assert_true(p->fv[1] == 2.0);
    assert_int_equal(p->ft[2], LP_BOOL);
    assert_true(p->fv[2] == 1.0);
    assert_int_equal(p->ft[3], LP_STRING);
    assert_string_equal(p->fs[3], "str");
    assert_int_equal(p->ft[4], LP_UINT);
    assert_int_equal(p->fu[4], 7);
    assert_int_equal(p->ts, 1000);
    assert_int_equal(p->line, 1);
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->st.lines_ok, 1);
    assert_int_equal(c->st.fields, 5);
    assert_int_equal(c->st.samples, 4);
    assert_int_equal(c->st.strings_skipped, 1);
    coll_free(c);
}

static void test_tags_sorted(void **state)
{
    (void)state;
    coll_t *c = run("m,z=1,a=2,m=3,B=4 f=1");
    cpoint_t *p = one(c);
    assert_int_equal(p->ntags, 4);
    assert_string_equal(p->tk[0], "B");
    assert_string_equal(p->tk[1], "a");
    assert_string_equal(p->tk[2], "m");
    assert_string_equal(p->tk[3], "z");
    assert_string_equal(p->tv[3], "1");
    coll_free(c);
    /* same layout signature, different order: the cached permutation must not lie */
    c = run("m,ba=1,bb=2,bc=3 f=1\nm,bc=1,bb=2,ba=3 f=1\nm,bb=1,bc=2,ba=3 f=1\n");
    assert_int_equal(c->np, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(c->p[i].tk[0], "ba");
        assert_string_equal(c->p[i].tk[1], "bb");
        assert_string_equal(c->p[i].tk[2], "bc");
    }
    assert_string_equal(c->p[1].tv[0], "3");
    assert_string_equal(c->p[2].tv[0], "3");
    assert_string_equal(c->p[2].tv[1], "1");
    coll_free(c);
}

static void test_many_tags_qsort(void **state)
{
    (void)state;
    char body[4096];
    size_t o = (size_t)snprintf(body, sizeof body, "m");
    for (int i = 99; i >= 0; i--)
        o += (size_t)snprintf(body + o, sizeof body - o, ",t%03d=v%d", i, i);
    snprintf(body + o, sizeof body - o, " f=1");
    coll_t *c = run(body);
    cpoint_t *p = one(c);
    assert_int_equal(p->ntags, 100);
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "t%03d", i);
        assert_string_equal(p->tk[i], k);
    }
    coll_free(c);
    /* duplicate among many */
    o = (size_t)snprintf(body, sizeof body, "m");
    for (int i = 0; i < 80; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, ",t%03d=v", i);
    snprintf(body + o, sizeof body - o, ",t042=x f=1");
    expect_error(body, ST_EPARSE, "duplicate tag key 't042'");
}

static void test_escape_measurement(void **state)
{
    (void)state;
    coll_t *c = run("my\\ m\\,x f=1");
    assert_string_equal(one(c)->m, "my m,x");
    coll_free(c);
    c = run("a\\=b f=1"); /* '=' is not escapable in a measurement */
    assert_string_equal(one(c)->m, "a\\=b");
    coll_free(c);
    c = run("a=b f=1");
    assert_string_equal(one(c)->m, "a=b");
    coll_free(c);
    c = run("a\\b\\\\c f=1"); /* other backslashes are literal */
    assert_string_equal(one(c)->m, "a\\b\\\\c");
    coll_free(c);
    c = run("\"q'uo\"te f=1");
    assert_string_equal(one(c)->m, "\"q'uo\"te");
    coll_free(c);
}

static void test_escape_tags(void **state)
{
    (void)state;
    coll_t *c = run("m,k\\ 1=v\\,2,k\\=2=v\\=3,k3=v\\ 4 f=1");
    cpoint_t *p = one(c);
    assert_int_equal(p->ntags, 3);
    assert_string_equal(p->tk[0], "k 1");
    assert_string_equal(p->tv[0], "v,2");
    assert_string_equal(p->tk[1], "k3");
    assert_string_equal(p->tv[1], "v 4");
    assert_string_equal(p->tk[2], "k=2");
    assert_string_equal(p->tv[2], "v=3");
    coll_free(c);
    /* literal backslashes */
    c = run("m,t=a\\b,u=c\\\\d f=1");
    p = one(c);
    assert_string_equal(p->tv[0], "a\\b");
    assert_string_equal(p->tv[1], "c\\\\d");
    coll_free(c);
    /* \\, = literal backslash + escaped comma */
    c = run("m,t=a\\\\,b f=1");
    assert_string_equal(one(c)->tv[0], "a\\,b");
    coll_free(c);
    /* quotes are ordinary in tags */
    c = run("m,t=\"x\" f=1");
    assert_string_equal(one(c)->tv[0], "\"x\"");
    coll_free(c);
    /* UTF-8 */
    c = run("m,tag=\xf0\x9f\x8d\xad f=\"Launch \xf0\x9f\x9a\x80\"");
    p = one(c);
    assert_string_equal(p->tv[0], "\xf0\x9f\x8d\xad");
    assert_string_equal(p->fs[0], "Launch \xf0\x9f\x9a\x80");
    coll_free(c);
}

static void test_escape_field_keys(void **state)
{
    (void)state;
    coll_t *c = run("m f\\ 1=1,f\\,2=2,f\\=3=3,f\\x=4");
    cpoint_t *p = one(c);
    assert_int_equal(p->nf, 4);
    assert_string_equal(p->fk[0], "f 1");
    assert_string_equal(p->fk[1], "f,2");
    assert_string_equal(p->fk[2], "f=3");
    assert_string_equal(p->fk[3], "f\\x");
    assert_true(p->fv[2] == 3.0);
    coll_free(c);
}

/*
 * An escape as the LAST character of a name token, followed at once by the
 * separator that ends the token. The unescape step must drop the backslash
 * even when the escaped character is the token's final byte; the mutation
 * check found nothing covered that position.
 */
static void test_escape_last(void **state)
{
    (void)state;
    /* the example from the mutation report */
    coll_t *c = run_series("cpu\\ ,host=web\\,,dc=a\\  value=1 1000000");
    cpoint_t *p = one(c);
    assert_string_equal(p->m, "cpu ");
    assert_int_equal(p->ntags, 2);
    assert_string_equal(p->tk[0], "dc");
    assert_string_equal(p->tv[0], "a ");
    assert_string_equal(p->tk[1], "host");
    assert_string_equal(p->tv[1], "web,");
    assert_int_equal(p->nseries, 1);
    assert_string_equal(p->sname[0], "__name__=cpu _value,dc=a ,host=web,");
    assert_int_equal(p->ts, 1);
    coll_free(c);

    /* measurement: `\,` last, then the tag separator; `\ ` last, then the space */
    c = run("cpu\\,,t=v f=1");
    p = one(c);
    assert_string_equal(p->m, "cpu,");
    assert_string_equal(p->tv[0], "v");
    coll_free(c);
    c = run("cpu\\  f=1");
    assert_string_equal(one(c)->m, "cpu ");
    coll_free(c);
    c = run("\\  f=1"); /* the escape is the whole measurement */
    assert_string_equal(one(c)->m, " ");
    coll_free(c);

    /* tag keys: every escapable character last, then '=' */
    c = run("m,k\\ =1,k\\,=2,k\\==3 f=1");
    p = one(c);
    assert_int_equal(p->ntags, 3);
    assert_string_equal(p->tk[0], "k ");
    assert_string_equal(p->tv[0], "1");
    assert_string_equal(p->tk[1], "k,");
    assert_string_equal(p->tv[1], "2");
    assert_string_equal(p->tk[2], "k=");
    assert_string_equal(p->tv[2], "3");
    coll_free(c);

    /* tag values: every escapable character last, then ',' or ' ' */
    c = run("m,a=x\\ ,b=x\\,,c=x\\=,d=x\\= f=1");
    p = one(c);
    assert_int_equal(p->ntags, 4);
    assert_string_equal(p->tv[0], "x ");
    assert_string_equal(p->tv[1], "x,");
    assert_string_equal(p->tv[2], "x=");
    assert_string_equal(p->tv[3], "x=");
    coll_free(c);
    c = run("m,a=x\\  f=1");
    assert_string_equal(one(c)->tv[0], "x ");
    coll_free(c);
    c = run("m,a=x\\, f=1");
    assert_string_equal(one(c)->tv[0], "x,");
    coll_free(c);

    /* field keys: every escapable character last, then '=' */
    c = run_series("m f\\ =1,g\\,=2,h\\==3 4");
    p = one(c);
    assert_int_equal(p->nf, 3);
    assert_string_equal(p->fk[0], "f ");
    assert_string_equal(p->fk[1], "g,");
    assert_string_equal(p->fk[2], "h=");
    assert_true(p->fv[2] == 3.0);
    assert_int_equal(p->nseries, 3);
    assert_string_equal(p->sname[0], "__name__=m_f ");
    assert_string_equal(p->sname[1], "__name__=m_g,");
    assert_string_equal(p->sname[2], "__name__=m_h=");
    coll_free(c);

    /* string field values: `\"` and `\\` last, then ',' / ' ' / end of body */
    c = run("m s=\"a\\\"\",t=\"b\\\\\",u=\"\\\\\",v=\"\\\"\" 5");
    p = one(c);
    assert_int_equal(p->nf, 4);
    assert_string_equal(p->fs[0], "a\"");
    assert_string_equal(p->fs[1], "b\\");
    assert_string_equal(p->fs[2], "\\");
    assert_string_equal(p->fs[3], "\"");
    assert_int_equal(p->ts, 0);
    coll_free(c);
    c = run("m s=\"x\\\\\"");
    assert_string_equal(one(c)->fs[0], "x\\");
    coll_free(c);

    /* escape of the escape: `\\` followed by a character that needs no
     * escape is two literal backslashes; `\\` followed by an escapable
     * character is a literal backslash plus an escaped character. So a name
     * can never end in a backslash right before its terminator. */
    c = run("m,k\\\\x=v\\\\x f\\\\x=1");
    p = one(c);
    assert_string_equal(p->tk[0], "k\\\\x");
    assert_string_equal(p->tv[0], "v\\\\x");
    assert_string_equal(p->fk[0], "f\\\\x");
    coll_free(c);
    expect_error("m,k\\\\=v f=1", ST_EPARSE, "missing '=' after tag key 'k\\\\=v'");
    expect_error("m,k\\=v f=1", ST_EPARSE, "missing '=' after tag key 'k\\=v'");
    expect_error("m f\\\\=1", ST_EPARSE, "missing '=' after field key 'f\\\\=1'");
    c = run("m,t=a\\\\\\, f=1"); /* a\\\, -> "a\\," */
    assert_string_equal(one(c)->tv[0], "a\\\\,");
    coll_free(c);
    c = run("m\\\\\\  f=1"); /* m\\\<space> -> "m\\ " */
    assert_string_equal(one(c)->m, "m\\\\ ");
    coll_free(c);
    /* a backslash before the separator escapes it, so the token runs on */
    expect_error("m,t=a\\\\ f=1", ST_EPARSE, "unescaped '=' in value of tag 't'");
    expect_error("m,t=a\\ f=1", ST_EPARSE, "unescaped '=' in value of tag 't'");

    /* the escape is the very last byte of the line / body */
    expect_error("cpu\\", ST_EPARSE, "missing field set");
    expect_error("cpu\\ ", ST_EPARSE, "missing field set");
    expect_error("m,t=v\\", ST_EPARSE, "missing field set");
    expect_error("m,t=v\\,", ST_EPARSE, "missing field set");
    expect_error("m,t\\", ST_EPARSE, "missing '=' after tag key 't\\'");
    expect_error("m f\\", ST_EPARSE, "missing '=' after field key 'f\\'");
    expect_error("m f\\=", ST_EPARSE, "missing '=' after field key 'f\\='");
    expect_error("m f=\"x\\\"", ST_EPARSE, "unterminated string value for field 'f'");
    c = run("m,t=v\\\nm2 f=1\n"); /* the LF ends the line: it cannot be escaped */
    assert_int_equal(c->ne, 1);
    assert_int_equal(c->eline[0], 1);
    assert_string_equal(c->ereason[0], "missing field set");
    assert_int_equal(c->np, 1);
    assert_string_equal(c->p[0].m, "m2");
    coll_free(c);

    /* every length around the 16-byte scan blocks: "x"*n + escape, last */
    static const char esck[] = {',', ' ', '='}; /* the first two: measurement too */
    for (int n = 0; n < 40; n++) {
        char body[256], want[64];
        memset(want, 'x', (size_t)n);
        for (size_t e = 0; e < sizeof esck; e++) {
            want[n] = esck[e];
            want[n + 1] = '\0';
            char ex[64];
            memset(ex, 'x', (size_t)n);
            ex[n] = '\\';
            ex[n + 1] = esck[e];
            ex[n + 2] = '\0';
            if (e < 2) {
                snprintf(body, sizeof body, "%s%s f=1", ex, esck[e] == ' ' ? " " : ",t=v");
                c = run(body);
                if (c->np != 1 || strcmp(c->p[0].m, want))
                    fail_msg("measurement '%s': got '%s'", body, c->np ? c->p[0].m : "(error)");
                coll_free(c);
            }
            snprintf(body, sizeof body, "m,%s=%s,z=1 %s=2", ex, ex, ex);
            c = run(body);
            p = one(c);
            if (strcmp(p->tk[0], want) || strcmp(p->tv[0], want) || strcmp(p->fk[0], want))
                fail_msg("'%s': key '%s' value '%s' field '%s'", body, p->tk[0], p->tv[0],
                         p->fk[0]);
            coll_free(c);
        }
    }
}

static void test_strings(void **state)
{
    (void)state;
    coll_t *c = run("m s=\"a \\\"q\\\" \\\\ b, c=d e\",t=\"x\\ny\",u=\"\",v=\"end\\\\\"");
    cpoint_t *p = one(c);
    assert_string_equal(p->fs[0], "a \"q\" \\ b, c=d e");
    assert_string_equal(p->fs[1], "x\\ny"); /* \n is not an escape */
    assert_string_equal(p->fs[2], "");
    assert_string_equal(p->fs[3], "end\\");
    assert_int_equal(c->st.strings_skipped, 4);
    assert_int_equal(c->st.samples, 0);
    coll_free(c);
    /* raw newlines inside a string: one point, line numbers keep counting */
    c = run("m s=\"l1\nl2\n\",f=1 5\nm f=2\n");
    assert_int_equal(c->ne, 0);
    assert_int_equal(c->np, 2);
    assert_string_equal(c->p[0].fs[0], "l1\nl2\n");
    assert_int_equal(c->p[0].line, 1);
    assert_int_equal(c->p[1].line, 4);
    coll_free(c);
    /* series mode: strings are not series */
    c = run_series("m s=\"x\",f=1");
    p = one(c);
    assert_int_equal(p->nseries, 1);
    assert_string_equal(p->sname[0], "__name__=m_f");
    coll_free(c);
}

static void test_booleans(void **state)
{
    (void)state;
    static const char *t[] = {"t", "T", "true", "True", "TRUE"};
    static const char *f[] = {"f", "F", "false", "False", "FALSE"};
    char body[64];
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof body, "m b=%s", t[i]);
        coll_t *c = run(body);
        cpoint_t *p = one(c);
        assert_int_equal(p->ft[0], LP_BOOL);
        assert_true(p->fv[0] == 1.0);
        coll_free(c);
        snprintf(body, sizeof body, "m b=%s", f[i]);
        c = run(body);
        p = one(c);
        assert_int_equal(p->ft[0], LP_BOOL);
        assert_true(p->fv[0] == 0.0);
        assert_int_equal(p->fu[0], 0);
        coll_free(c);
    }
    expect_error("m up=tru", ST_EPARSE, "invalid boolean 'tru' for field 'up'");
    expect_error("m up=tRUE", ST_EPARSE, "invalid boolean 'tRUE' for field 'up'");
    expect_error("m up=falsey", ST_EPARSE, "invalid boolean 'falsey' for field 'up'");
    expect_error("m up=yes", ST_EPARSE, "invalid value 'yes' for field 'up'");
    expect_error("m up=\"true\"x", ST_EPARSE, "unexpected character 'x' after value of field 'up'");
}

static void test_integers(void **state)
{
    (void)state;
    coll_t *c = run("m a=0i,b=-0i,c=9223372036854775807i,d=-9223372036854775808i,e=007i");
    cpoint_t *p = one(c);
    assert_int_equal(p->fi[0], 0);
    assert_int_equal(p->fi[1], 0);
    assert_true(p->fi[2] == INT64_MAX);
    assert_true(p->fi[3] == INT64_MIN);
    assert_int_equal(p->fi[4], 7);
    assert_true(p->fv[2] == 9223372036854775807.0);
    coll_free(c);
    c = run("m a=0u,b=18446744073709551615u");
    p = one(c);
    assert_int_equal(p->ft[1], LP_UINT);
    assert_true(p->fu[1] == UINT64_MAX);
    assert_true(p->fv[1] == 18446744073709551615.0);
    coll_free(c);
    expect_error("m f=9223372036854775808i", ST_EPARSE,
                 "integer 9223372036854775808i out of range for field 'f'");
    expect_error("m f=-9223372036854775809i", ST_EPARSE,
                 "integer -9223372036854775809i out of range for field 'f'");
    expect_error("m f=99999999999999999999i", ST_EPARSE,
                 "integer 99999999999999999999i out of range for field 'f'");
    expect_error("m f=18446744073709551616u", ST_EPARSE,
                 "unsigned integer 18446744073709551616u out of range for field 'f'");
    expect_error("m f=-1u", ST_EPARSE, "invalid unsigned integer '-1u' for field 'f'");
    expect_error("m f=1.5i", ST_EPARSE, "invalid integer '1.5i' for field 'f'");
    expect_error("m f=-i", ST_EPARSE, "invalid integer '-i' for field 'f'");
    expect_error("m f=i", ST_EPARSE, "invalid value 'i' for field 'f'");
    expect_error("m f=1e3i", ST_EPARSE, "invalid integer '1e3i' for field 'f'");
}

static void test_floats(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        double v;
    } ok[] = {
        {"1", 1},
        {"1.0", 1},
        {"-1.5", -1.5},
        {"1e3", 1000},
        {"-1.5E-3", -1.5e-3},
        {".5", 0.5},
        {"-.5", -0.5},
        {"1.", 1},
        {"1.e5", 1e5},
        {"1E+5", 1e5},
        {"0.000001", 1e-6},
        {"-1.234456e+78", -1.234456e+78},
        {"00012.5", 12.5},
        {"0", 0},
        {"1e-400", 0},
    };
    char body[128];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(body, sizeof body, "m f=%s", ok[i].s);
        coll_t *c = run(body);
        cpoint_t *p = one(c);
        assert_int_equal(p->ft[0], LP_FLOAT);
        if (p->fv[0] != ok[i].v)
            fail_msg("%s -> %.17g", ok[i].s, p->fv[0]);
        coll_free(c);
    }
    static const char *bad[] = {"+1",   "1e",    "1.5.5", ".",   "-",     "1e+", "1e-",
                                "0x10", "1_000", "1,5",   "--1", "1e5.5", "-e5", "1ee5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "m f=%s", bad[i]);
        coll_t *c = run(body);
        if (c->np != 0 || c->ne != 1)
            fail_msg("'%s' accepted", bad[i]);
        coll_free(c);
    }
    expect_error("m f=1.5.5", ST_EPARSE, "invalid number '1.5.5' for field 'f'");
    expect_error("m f=+1", ST_EPARSE, "invalid value '+1' for field 'f'");
    expect_error("m f=inf", ST_EPARSE, "invalid value 'inf' for field 'f'");
    expect_error("m f=nan", ST_EPARSE, "invalid value 'nan' for field 'f'");
    expect_error("m f=1e400", ST_EPARSE, "float 1e400 out of range for field 'f'");
    expect_error("m f=-1e400", ST_EPARSE, "float -1e400 out of range for field 'f'");
    /* negative zero keeps its sign */
    double d = 1;
    assert_int_equal(lp_parse_float("-0.0", 4, &d), 0);
    assert_true(d == 0 && 1 / d < 0);
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void check_float(const char *s)
{
    double want = strtod(s, NULL), got = 0;
    int rc = lp_parse_float(s, strlen(s), &got);
    if (want == HUGE_VAL || want == -HUGE_VAL) {
        if (rc != ST_ELIMIT)
            fail_msg("%s: rc %d, want ELIMIT", s, rc);
        return;
    }
    if (rc != 0)
        fail_msg("%s: rc %d", s, rc);
    uint64_t a, b;
    memcpy(&a, &want, 8);
    memcpy(&b, &got, 8);
    if (a != b)
        fail_msg("%s: got %.17g (%016llx), strtod %.17g (%016llx)", s, got, (unsigned long long)b,
                 want, (unsigned long long)a);
}

static void test_float_exact(void **state)
{
    (void)state;
    static const char *edge[] = {
        "9007199254740993",
        "9007199254740992",
        "9007199254740995",
        "0.1",
        "0.3",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "4.9e-324",
        "5e-324",
        "2.4e-324",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "123456789012345678901234567890",
        "1e22",
        "1e23",
        "9.5e22",
        "8.98846567431158e307",
        "0.000000000000000000000000001",
        "3.14159265358979323846264338327950288",
        "100000000000000000000000",
        "1.00000000000000011102230246251565404236316680908203125", /* halfway 1 + 2^-53 */
        "1.00000000000000011102230246251565404236316680908203124",
        "1.00000000000000011102230246251565404236316680908203126",
        "123456789012345e20",
        "999999999999999e22",
        "4503599627370497.5",
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        check_float(edge[i]);
    char s[96];
    for (int it = 0; it < 300000; it++) {
        size_t o = 0;
        if (rnd() & 1)
            s[o++] = '-';
        int nd = 1 + (int)(rnd() % (it % 3 == 0 ? 25 : 17));
        int dot = (int)(rnd() % (unsigned)(nd + 2)) - 1; /* -1: no dot */
        if (dot == 0 && (rnd() & 1)) {
            s[o++] = '.';
            dot = -1;
        }
        for (int i = 0; i < nd; i++) {
            if (i == dot && i > 0)
                s[o++] = '.';
            s[o++] = (char)('0' + rnd() % 10);
        }
        unsigned form = (unsigned)(rnd() % 4);
        if (form != 0) {
            long e = form == 1 ? (long)(rnd() % 45) - 22
                               : (form == 2 ? (long)(rnd() % 700) - 350 : (long)(rnd() % 80) - 40);
            o += (size_t)snprintf(s + o, sizeof s - o, "%c%s%ld", (rnd() & 1) ? 'e' : 'E',
                                  (e >= 0 && (rnd() & 1)) ? "+" : "", e);
        }
        s[o] = '\0';
        check_float(s);
    }
    /* shortest round-trip representations of random doubles */
    for (int it = 0; it < 100000; it++) {
        uint64_t bits = rnd();
        double v;
        memcpy(&v, &bits, 8);
        if (v != v || v == HUGE_VAL || v == -HUGE_VAL)
            continue;
        snprintf(s, sizeof s, "%.*g", 1 + (int)(rnd() % 17), v);
        if (strchr(s, 'n') || strchr(s, 'i'))
            continue;
        check_float(s);
    }
}

static void test_precision(void **state)
{
    (void)state;
    static const struct {
        lp_precision_t prec;
        const char *ts;
        int64_t ms;
    } cases[] = {
        {LP_PREC_NS, "1451606400000000000", 1451606400000},
        {LP_PREC_NS, "1451606400123999999", 1451606400123},
        {LP_PREC_NS, "-1", -1},
        {LP_PREC_NS, "-1000000", -1},
        {LP_PREC_NS, "-1000001", -2},
        {LP_PREC_NS, "0", 0},
        {LP_PREC_NS, "-9223372036854775808", -9223372036855},
        {LP_PREC_US, "1451606400000000", 1451606400000},
        {LP_PREC_US, "1999", 1},
        {LP_PREC_US, "-1", -1},
        {LP_PREC_MS, "1451606400000", 1451606400000},
        {LP_PREC_MS, "-5", -5},
        {LP_PREC_S, "1451606400", 1451606400000},
        {LP_PREC_S, "-2", -2000},
        {LP_PREC_S, "9223372036854775", 9223372036854775000},
        {LP_PREC_M, "24193440", 1451606400000},
        {LP_PREC_M, "-1", -60000},
        {LP_PREC_M, "153722867280912", 9223372036854720000},
        {LP_PREC_H, "403224", 1451606400000},
        {LP_PREC_H, "-2", -7200000},
    };
    char body[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lp_opts_t o = {.precision = cases[i].prec};
        snprintf(body, sizeof body, "m f=1 %s", cases[i].ts);
        coll_t *c = run_n(body, strlen(body), &o);
        cpoint_t *p = one(c);
        if (p->ts != cases[i].ms)
            fail_msg("%s prec %d -> %lld", cases[i].ts, cases[i].prec, (long long)p->ts);
        coll_free(c);
    }
    lp_opts_t o = {.precision = LP_PREC_S};
    coll_t *c = run_n("m f=1 9223372036854776", 22, &o);
    assert_int_equal(c->ne, 1);
    assert_string_equal(c->ereason[0], "timestamp 9223372036854776 out of range for precision");
    coll_free(c);

    lp_precision_t pr;
    assert_int_equal(lp_precision_parse("ns", 2, &pr), 0);
    assert_int_equal(pr, LP_PREC_NS);
    assert_int_equal(lp_precision_parse("n", 1, &pr), 0);
    assert_int_equal(pr, LP_PREC_NS);
    assert_int_equal(lp_precision_parse("", 0, &pr), 0);
    assert_int_equal(pr, LP_PREC_NS);
    assert_int_equal(lp_precision_parse("us", 2, &pr), 0);
    assert_int_equal(pr, LP_PREC_US);
    assert_int_equal(lp_precision_parse("u", 1, &pr), 0);
    assert_int_equal(pr, LP_PREC_US);
    assert_int_equal(lp_precision_parse("ms", 2, &pr), 0);
    assert_int_equal(pr, LP_PREC_MS);
    assert_int_equal(lp_precision_parse("s", 1, &pr), 0);
    assert_int_equal(pr, LP_PREC_S);
    /* InfluxDB 1.x's m and h (issue 12) */
    assert_int_equal(lp_precision_parse("m", 1, &pr), 0);
    assert_int_equal(pr, LP_PREC_M);
    assert_int_equal(lp_precision_parse("h", 1, &pr), 0);
    assert_int_equal(pr, LP_PREC_H);
    assert_int_equal(lp_precision_parse("nss", 3, &pr), ST_EINVAL);
    assert_int_equal(lp_precision_parse("d", 1, &pr), ST_EINVAL);
    assert_int_equal(lp_precision_parse("M", 1, &pr), ST_EINVAL);
    assert_int_equal(lp_precision_parse("hh", 2, &pr), ST_EINVAL);
    assert_string_equal(lp_precision_names(), "ns, n, us, u, ms, s, m, h");
    int64_t ms;
    assert_int_equal(lp_ts_to_ms(INT64_MIN, LP_PREC_S, &ms), ST_ELIMIT);
    assert_int_equal(lp_ts_to_ms(153722867280913, LP_PREC_M, &ms), ST_ELIMIT);
    assert_int_equal(lp_ts_to_ms(2562047788016, LP_PREC_H, &ms), ST_ELIMIT);
    assert_int_equal(lp_ts_to_ms(-2562047788016, LP_PREC_H, &ms), ST_ELIMIT);
    assert_int_equal(lp_ts_to_ms(2562047788015, LP_PREC_H, &ms), 0);
    assert_int_equal(ms, 2562047788015LL * 3600000);

    /* the setter applies to the next parse */
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(NULL, &p), 0);
    c = calloc(1, sizeof *c);
    lp_parser_set_precision(p, LP_PREC_MS);
    assert_int_equal(lp_parse(p, "m f=1 42", 8, on_point, on_error, c), 0);
    assert_int_equal(c->p[0].ts, 42);
    lp_parser_destroy(p);
    coll_free(c);
    assert_int_equal(lp_parser_create(&(lp_opts_t){.precision = (lp_precision_t)9}, &p), ST_EINVAL);
}

static void test_default_ts(void **state)
{
    (void)state;
    lp_opts_t o = {.default_ts_ms = 777};
    const char *b = "m f=1\nm f=2   \nm f=3 5000000\n";
    coll_t *c = run_n(b, strlen(b), &o);
    assert_int_equal(c->np, 3);
    assert_int_equal(c->p[0].ts, 777);
    assert_int_equal(c->p[1].ts, 777);
    assert_int_equal(c->p[2].ts, 5);
    coll_free(c);
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(&o, &p), 0);
    lp_parser_set_default_ts(p, -12);
    c = calloc(1, sizeof *c);
    assert_int_equal(lp_parse(p, "m f=1", 5, on_point, on_error, c), 0);
    assert_int_equal(c->p[0].ts, -12);
    lp_parser_destroy(p);
    coll_free(c);
}

static void test_comments_blank_crlf(void **state)
{
    (void)state;
    const char *b =
        "# comment, with=stuff \"x\n\n   \nm f=1\r\nm f=2 3\r\n  # indented\r\n\r\nm f=3";
    coll_t *c = run(b);
    assert_int_equal(c->ne, 0);
    assert_int_equal(c->np, 3);
    assert_int_equal(c->p[0].line, 4);
    assert_int_equal(c->p[1].line, 5);
    assert_int_equal(c->p[1].ts, 0);
    assert_int_equal(c->p[2].line, 8);
    coll_free(c);
    /* CR at end of body, spaces everywhere they are allowed */
    c = run("  m,t=v   f=1,g=2   123   \r");
    cpoint_t *p = one(c);
    assert_int_equal(p->nf, 2);
    coll_free(c);
    /* a lone CR in the middle of a line is not a line end */
    expect_error("m f=1\rx", ST_EPARSE, "invalid character 0x0d in field set");
    /* tabs are not whitespace */
    expect_error("m\tf=1", ST_EPARSE, "invalid character 0x09 in measurement");
    expect_error("m,t=v\tf=1", ST_EPARSE, "invalid character 0x09 in tag value");
    expect_error("m f=1\t1", ST_EPARSE, "invalid number '1\\x091' for field 'f'");
    /* empty bodies */
    c = run("");
    assert_int_equal(c->np + c->ne, 0);
    assert_int_equal(c->rc, 0);
    coll_free(c);
    c = run("\n\n# only\n   ");
    assert_int_equal(c->np + c->ne, 0);
    coll_free(c);
}

static void test_no_trailing_newline(void **state)
{
    (void)state;
    coll_t *c = run("m f=1\nm g=2");
    assert_int_equal(c->np, 2);
    assert_string_equal(c->p[1].fk[0], "g");
    assert_int_equal(c->p[1].line, 2);
    coll_free(c);
    c = run("m f=1 123");
    assert_int_equal(one(c)->ts, 0);
    coll_free(c);
    c = run("m s=\"abc\"");
    assert_string_equal(one(c)->fs[0], "abc");
    coll_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int code;
        const char *reason;
    } cases[] = {
        {"m", ST_EPARSE, "missing field set"},
        {"m ", ST_EPARSE, "missing field set"},
        {"m,t=v", ST_EPARSE, "missing field set"},
        {"m,t=v  ", ST_EPARSE, "missing field set"},
        {",t=v f=1", ST_EPARSE, "missing measurement"},
        {"m,=v f=1", ST_EPARSE, "empty tag key"},
        {"m, f=1", ST_EPARSE, "empty tag key"},
        {"m,t=v, f=1", ST_EPARSE, "empty tag key"},
        {"m,t= f=1", ST_EPARSE, "empty value for tag 't'"},
        {"m,t=,u=1 f=1", ST_EPARSE, "empty value for tag 't'"},
        {"m,t f=1", ST_EPARSE, "missing '=' after tag key 't'"},
        {"m,t=a=b f=1", ST_EPARSE, "unescaped '=' in value of tag 't'"},
        {"m,t==b f=1", ST_EPARSE, "unescaped '=' in value of tag 't'"},
        {"m,t=1,t=2 f=1", ST_EPARSE, "duplicate tag key 't'"},
        {"m,b=1,a=2,b=3 f=1", ST_EPARSE, "duplicate tag key 'b'"},
        {"m f", ST_EPARSE, "missing '=' after field key 'f'"},
        {"m f 1", ST_EPARSE, "missing '=' after field key 'f'"},
        {"m f=", ST_EPARSE, "missing value for field 'f'"},
        {"m f= 1", ST_EPARSE, "missing value for field 'f'"},
        {"m f=,g=1", ST_EPARSE, "missing value for field 'f'"},
        {"m =1", ST_EPARSE, "empty field key"},
        {"m f=1,", ST_EPARSE, "empty field key"},
        {"m f=1, g=2", ST_EPARSE, "empty field key"},
        {"m f=abc", ST_EPARSE, "invalid value 'abc' for field 'f'"},
        {"m f=\"abc", ST_EPARSE, "unterminated string value for field 'f'"},
        {"m f=\"abc\\\"", ST_EPARSE, "unterminated string value for field 'f'"},
        {"m f=\"a\"x", ST_EPARSE, "unexpected character 'x' after value of field 'f'"},
        {"m f=\"a\"\xc3\xa9", ST_EPARSE, "unexpected character '\\xc3' after value of field 'f'"},
        {"m f=\rx", ST_EPARSE, "invalid character 0x0d in field value"},
        {"m f=1 \rx", ST_EPARSE, "invalid character 0x0d in timestamp"},
        {"m f=1 abc", ST_EPARSE, "invalid timestamp 'abc'"},
        {"m f=1 1.5", ST_EPARSE, "invalid timestamp '1.5'"},
        {"m f=1 -", ST_EPARSE, "invalid timestamp '-'"},
        {"m f=1 1 2", ST_EPARSE, "unexpected text after timestamp: '2'"},
        {"m f=1 1,2", ST_EPARSE, "unexpected text after timestamp: ',2'"},
        {"m f=1 99999999999999999999", ST_EPARSE, "timestamp 99999999999999999999 out of range"},
        {"m\x01 f=1", ST_EPARSE, "invalid character 0x01 in measurement"},
        {"m,t\x7f=1 f=1", ST_EPARSE, "invalid character 0x7f in tag key"},
        {"m f\x02=1", ST_EPARSE, "invalid character 0x02 in field key"},
        {"\xff f=1", ST_EINVAL, "measurement is not valid UTF-8"},
        {"m,\xc0\xaf=v f=1", ST_EINVAL, "tag key is not valid UTF-8"},
        {"m,t=\xed\xa0\x80 f=1", ST_EINVAL, "value of tag 't' is not valid UTF-8"},
        {"m f\xe2\x82=1", ST_EINVAL, "field key is not valid UTF-8"},
        {"m f=\"\xf8\"", ST_EINVAL, "string value of field 'f' is not valid UTF-8"},
        {"m\\ f=1", ST_EPARSE, "missing field set"},
        {"m f=1\\ 2", ST_EPARSE, "invalid number '1\\' for field 'f'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].body, cases[i].code, cases[i].reason);
}

static void test_error_line_numbers(void **state)
{
    (void)state;
    const char *b =
        "m f=1\n"
        "bad\n"
        "m f=2\n"
        "# c\n"
        "m up=tru\n"
        "m,t=1 s=\"multi\nline\",x=oops\n"
        "m f=3\n"
        "m,t=a=b f=\"q\nr\" 1\n" /* error in tags; a string in the field set spans 2 lines */
        "m f=4";
    coll_t *c = run(b);
    assert_int_equal(c->rc, 4);
    assert_int_equal(c->np, 4);
    assert_int_equal(c->ne, 4);
    assert_int_equal(c->p[0].line, 1);
    assert_int_equal(c->p[1].line, 3);
    assert_int_equal(c->p[2].line, 8);
    assert_int_equal(c->p[3].line, 11);
    assert_true(c->p[3].fv[0] == 4.0);
    assert_int_equal(c->eline[0], 2);
    assert_string_equal(c->ereason[0], "missing field set");
    assert_int_equal(c->eline[1], 5);
    assert_string_equal(c->ereason[1], "invalid boolean 'tru' for field 'up'");
    assert_int_equal(c->eline[2], 6);
    assert_string_equal(c->ereason[2], "invalid value 'oops' for field 'x'");
    assert_int_equal(c->eline[3], 9);
    assert_string_equal(c->ereason[3], "unescaped '=' in value of tag 't'");
    assert_int_equal(c->st.lines_ok, 4);
    assert_int_equal(c->st.lines_bad, 4);
    coll_free(c);
    /* a bad line whose string value holds a newline is one bad line */
    c = run("m,t=a=b s=\"x\ny\"\nm f=1\n");
    assert_int_equal(c->ne, 1);
    assert_int_equal(c->np, 1);
    assert_int_equal(c->p[0].line, 3);
    coll_free(c);
}

static void test_duplicate_fields(void **state)
{
    (void)state;
    coll_t *c = run("m a=1,b=2,a=3i");
    cpoint_t *p = one(c);
    assert_int_equal(p->nf, 2);
    assert_string_equal(p->fk[0], "a");
    assert_int_equal(p->ft[0], LP_INT);
    assert_true(p->fv[0] == 3.0);
    assert_true(p->fv[1] == 2.0);
    coll_free(c);
    /* more than 16 fields: the hash-table path */
    char body[1024];
    size_t o = (size_t)snprintf(body, sizeof body, "m ");
    for (int i = 0; i < 30; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%sfield_%02d=%d", i ? "," : "", i, i);
    o += (size_t)snprintf(body + o, sizeof body - o, ",field_03=100,field_29=200,field_17=300");
    c = run_series(body);
    p = one(c);
    assert_int_equal(p->nf, 30);
    assert_true(p->fv[3] == 100.0);
    assert_true(p->fv[29] == 200.0);
    assert_true(p->fv[17] == 300.0);
    assert_true(p->fv[4] == 4.0);
    assert_int_equal(p->nseries, 30);
    assert_true(p->sval[3] == 100.0);
    coll_free(c);
    /* dedup state does not leak into the next line */
    o = 0;
    for (int l = 0; l < 2; l++) {
        o += (size_t)snprintf(body + o, sizeof body - o, "m ");
        for (int i = 0; i < 20; i++)
            o += (size_t)snprintf(body + o, sizeof body - o, "%sk%d=%d", i ? "," : "", i + l * 20,
                                  i);
        body[o++] = '\n';
    }
    body[o] = '\0';
    c = run(body);
    assert_int_equal(c->np, 2);
    assert_int_equal(c->p[1].nf, 20);
    coll_free(c);
}

static void test_series(void **state)
{
    (void)state;
    coll_t *c = run_series("cpu,host=h1,A=x,zone=z usage_user=58,ok=true,n=5i,u=3u,s=\"x\" 0");
    cpoint_t *p = one(c);
    assert_int_equal(p->nseries, 4);
    assert_string_equal(p->sname[0], "A=x,__name__=cpu_usage_user,host=h1,zone=z");
    assert_string_equal(p->sname[1], "A=x,__name__=cpu_ok,host=h1,zone=z");
    assert_string_equal(p->sname[2], "A=x,__name__=cpu_n,host=h1,zone=z");
    assert_string_equal(p->sname[3], "A=x,__name__=cpu_u,host=h1,zone=z");
    assert_true(p->sval[0] == 58.0);
    assert_true(p->sval[1] == 1.0);
    assert_true(p->sval[2] == 5.0);
    assert_true(p->sval[3] == 3.0);
    assert_int_equal(p->snl[0], 4);
    coll_free(c);
    /* escaped names end up unescaped in labels */
    c = run_series("my\\ m,t\\,k=v\\=1 f\\ 1=1");
    p = one(c);
    assert_string_equal(p->sname[0], "__name__=my m_f 1,t,k=v=1");
    coll_free(c);
    /* only string fields: a good line without series */
    c = run_series("m s=\"a\"");
    p = one(c);
    assert_int_equal(p->nseries, 0);
    coll_free(c);
}

static char *big_line(int ntags, int key_len, int val_len, int meas_len, int field_len)
{
    size_t cap = (size_t)(ntags + 1) * (size_t)(key_len + val_len + 16) + (size_t)meas_len +
                 (size_t)field_len + 64;
    char *b = malloc(cap), *o = b;
    memset(o, 'm', (size_t)meas_len);
    o += meas_len;
    for (int i = 0; i < ntags; i++) {
        o += sprintf(o, ",k%02d", i);
        memset(o, 'k', (size_t)(key_len - 3));
        o += key_len - 3;
        *o++ = '=';
        memset(o, 'v', (size_t)val_len);
        o += val_len;
    }
    *o++ = ' ';
    memset(o, 'f', (size_t)field_len);
    o += field_len;
    strcpy(o, "=1");
    return b;
}

static void expect_series(char *body, int ok, int code, const char *reason)
{
    lp_opts_t o = {.series = 1};
    coll_t *c = run_n(body, strlen(body), &o);
    if (ok) {
        if (c->np != 1)
            fail_msg("rejected: %s", c->ne ? c->ereason[0] : "?");
    } else {
        assert_int_equal(c->np, 0);
        assert_int_equal(c->ne, 1);
        assert_int_equal(c->ecode[0], code);
        if (strcmp(c->ereason[0], reason))
            fail_msg("reason '%s', want '%s'", c->ereason[0], reason);
    }
    coll_free(c);
    free(body);
}

static void test_limits(void **state)
{
    (void)state;
    expect_series(big_line(63, 4, 1, 1, 1), 1, 0, NULL);
    expect_series(big_line(64, 4, 1, 1, 1), 0, ST_ELIMIT,
                  "too many labels: 64 tags + __name__ (max 64)");
    expect_series(big_line(2, 256, 1, 1, 1), 1, 0, NULL);
    expect_series(big_line(2, 257, 1, 1, 1), 0, ST_ELIMIT,
                  "tag key 'k00kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
                  "kkkkkkkkk...' longer than 256 bytes"); /* quoted tokens: 80 bytes + "..." */
    expect_series(big_line(2, 4, 4096, 1, 1), 1, 0, NULL);
    expect_series(big_line(2, 4, 4097, 1, 1), 0, ST_ELIMIT,
                  "value of tag 'k00k' longer than 4096 bytes");
    expect_series(big_line(1, 4, 1, 100, 155), 1, 0, NULL); /* 100 + 1 + 155 = 256 */
    char *b = big_line(1, 4, 1, 100, 156);
    lp_opts_t o = {.series = 1};
    coll_t *c = run_n(b, strlen(b), &o);
    assert_int_equal(c->ne, 1);
    assert_int_equal(c->ecode[0], ST_ELIMIT);
    assert_non_null(strstr(c->ereason[0], "longer than 256 bytes"));
    assert_non_null(strstr(c->ereason[0], "metric name 'mmmm"));
    coll_free(c);
    free(b);
    expect_series(strdup("m,__name__=x f=1"), 0, ST_EINVAL, "tag key '__name__' is reserved");
    /* without series mode the limits are not the parser's business */
    b = big_line(70, 4, 1, 1, 1);
    c = run(b);
    assert_int_equal(c->np, 1);
    coll_free(c);
    free(b);
    /* max_fields */
    lp_opts_t mf = {.max_fields = 3};
    c = run_n("m a=1,b=2,c=3\nm a=1,b=2,c=3,d=4\nm a=1,b=2,c=3,a=4", 49, &mf);
    assert_int_equal(c->np, 2);
    assert_int_equal(c->ne, 1);
    assert_int_equal(c->eline[0], 2);
    assert_string_equal(c->ereason[0], "too many fields (max 3)");
    assert_int_equal(c->ecode[0], ST_ELIMIT);
    coll_free(c);
}

static void test_max_line(void **state)
{
    (void)state;
    lp_opts_t o = {.max_line = 16};
    /* exactly 16 bytes: fine, also with CRLF */
    const char *b = "m f=123456789012\nm f=1234567890123\r\nm f=1\nm,t=vvvvvvvvvvvvvvvvvvvvvvv "
                    "f=1\nm f=\"a\nb\"\nm f=\"long\nstring, too long\"\nm f=2";
    coll_t *c = run_n(b, strlen(b), &o);
    assert_int_equal(c->np, 4);
    assert_int_equal(c->p[0].line, 1);
    assert_int_equal(c->p[1].line, 3);
    assert_int_equal(c->p[2].line, 5);
    assert_string_equal(c->p[2].fs[0], "a\nb");
    assert_int_equal(c->p[3].line, 9);
    assert_int_equal(c->ne, 3);
    assert_int_equal(c->eline[0], 2);
    assert_string_equal(c->ereason[0], "line too long (max 16 bytes)");
    assert_int_equal(c->ecode[0], ST_ELIMIT);
    assert_int_equal(c->eline[1], 4);
    assert_string_equal(c->ereason[1], "line too long (max 16 bytes)");
    assert_int_equal(c->eline[2], 7);
    assert_string_equal(c->ereason[2], "line too long (max 16 bytes)");
    coll_free(c);
    /* a huge line without newline */
    size_t n = 3u << 20;
    char *big = malloc(n);
    memset(big, 'x', n);
    memcpy(big, "m f=1\n", 6);
    c = run_n(big, n, NULL);
    assert_int_equal(c->np, 1);
    assert_int_equal(c->ne, 1);
    assert_int_equal(c->eline[0], 2);
    assert_string_equal(c->ereason[0], "line too long (max 1048576 bytes)");
    coll_free(c);
    free(big);
}

static int abort_cb(void *arg, const lp_point_t *pt)
{
    (void)pt;
    int *n = arg;
    return ++*n == 2 ? ST_EIO : 0;
}

static void test_callback_abort(void **state)
{
    (void)state;
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(NULL, &p), 0);
    int n = 0;
    assert_int_equal(lp_parse(p, "m f=1\nm f=2\nm f=3\n", 18, abort_cb, NULL, &n), ST_EIO);
    assert_int_equal(n, 2);
    /* NULL callbacks are fine; stats accumulate across calls and reset */
    assert_int_equal(lp_parse(p, "m f=1\nbad\n", 10, NULL, NULL, NULL), 1);
    lp_stats_t st;
    lp_parser_stats(p, &st);
    assert_int_equal(st.lines_ok, 3);
    assert_int_equal(st.lines_bad, 1);
    lp_parser_stats_reset(p);
    lp_parser_stats(p, &st);
    assert_int_equal(st.lines_ok, 0);
    lp_parser_destroy(p);
    lp_parser_destroy(NULL);
}

static void test_scratch_growth(void **state)
{
    (void)state;
    /* many escaped tokens: the arena must grow past its first block and the
     * slices from earlier tokens must stay valid */
    size_t n = 400000;
    char *b = malloc(n + 64), *o = b;
    o += sprintf(o, "m,a\\ =x\\ 1 ");
    int k = 0;
    while ((size_t)(o - b) < n - 64)
        o += sprintf(o, "%sf\\ %d=%d", k ? "," : "", k, k), k++;
    *o = '\0';
    lp_opts_t opt = {.max_fields = 100000};
    coll_t *c = run_n(b, strlen(b), &opt);
    assert_int_equal(c->ne, 0);
    assert_int_equal(c->np, 1);
    assert_string_equal(c->p[0].tv[0], "x 1");
    coll_free(c);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_tags_sorted),
        cmocka_unit_test(test_many_tags_qsort),
        cmocka_unit_test(test_escape_measurement),
        cmocka_unit_test(test_escape_tags),
        cmocka_unit_test(test_escape_field_keys),
        cmocka_unit_test(test_escape_last),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_float_exact),
        cmocka_unit_test(test_precision),
        cmocka_unit_test(test_default_ts),
        cmocka_unit_test(test_comments_blank_crlf),
        cmocka_unit_test(test_no_trailing_newline),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_error_line_numbers),
        cmocka_unit_test(test_duplicate_fields),
        cmocka_unit_test(test_series),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_max_line),
        cmocka_unit_test(test_callback_abort),
        cmocka_unit_test(test_scratch_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
