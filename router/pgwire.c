/*
 * pgwire — PostgreSQL protocol v3 framing, message bodies and backend
 * messages (see pgwire.h). Every read is bounds-checked through pgw_rd_t;
 * a length field is validated before anything is buffered for it.
 */
#include <string.h>

#include "pgwire.h"
#include "st_err.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int pgw_next(const uint8_t *buf, size_t len, int startup, pgw_msg_t *m, size_t *used)
{
    size_t hdr = startup ? 4 : 5;
    if (len < hdr)
        return ST_EAGAIN;
    uint32_t l = be32(buf + hdr - 4);
    if (l < (startup ? 8u : 4u))
        return ST_EPROTO;
    if (l > PGW_MAX_MSG)
        return ST_ELIMIT;
    size_t total = (size_t)l + hdr - 4;
    if (len < total)
        return ST_EAGAIN;
    if (startup) {
        m->type = 0;
        m->code = be32(buf + 4);
        m->body = buf + 8;
        m->len = l - 8;
    } else {
        m->type = buf[0];
        m->code = 0;
        m->body = buf + 5;
        m->len = l - 4;
    }
    *used = total;
    return 0;
}

void pgw_rd_init(pgw_rd_t *r, const pgw_msg_t *m)
{
    r->p = m->body;
    r->len = m->len;
    r->at = 0;
    r->bad = 0;
}

static int need(pgw_rd_t *r, size_t n)
{
    if (r->bad || r->len - r->at < n) {
        r->bad = 1;
        return ST_EPROTO;
    }
    return 0;
}

int pgw_get_u8(pgw_rd_t *r, uint8_t *v)
{
    if (need(r, 1))
        return ST_EPROTO;
    *v = r->p[r->at++];
    return 0;
}

int pgw_get_i16(pgw_rd_t *r, int16_t *v)
{
    if (need(r, 2))
        return ST_EPROTO;
    *v = (int16_t)((uint16_t)r->p[r->at] << 8 | r->p[r->at + 1]);
    r->at += 2;
    return 0;
}

int pgw_get_i32(pgw_rd_t *r, int32_t *v)
{
    if (need(r, 4))
        return ST_EPROTO;
    *v = (int32_t)be32(r->p + r->at);
    r->at += 4;
    return 0;
}

int pgw_get_str(pgw_rd_t *r, const char **s, size_t *n)
{
    if (need(r, 1))
        return ST_EPROTO;
    const uint8_t *z = memchr(r->p + r->at, 0, r->len - r->at);
    if (!z) {
        r->bad = 1;
        return ST_EPROTO;
    }
    *s = (const char *)r->p + r->at;
    if (n)
        *n = (size_t)(z - (r->p + r->at));
    r->at = (size_t)(z - r->p) + 1;
    return 0;
}

int pgw_get_bytes(pgw_rd_t *r, size_t n, const uint8_t **p)
{
    if (need(r, n))
        return ST_EPROTO;
    *p = r->p + r->at;
    r->at += n;
    return 0;
}

int pgw_parse_startup(const pgw_msg_t *m, pgw_startup_t *s)
{
    pgw_rd_t r;
    pgw_rd_init(&r, m);
    s->n = 0;
    for (;;) {
        const char *k, *v;
        size_t kl;
        if (pgw_get_str(&r, &k, &kl))
            return ST_EPROTO;
        if (!kl)
            return r.at == r.len ? 0 : ST_EPROTO;
        if (pgw_get_str(&r, &v, NULL))
            return ST_EPROTO;
        if (s->n == PGW_MAX_STARTUP_PARAMS)
            return ST_ELIMIT;
        s->key[s->n] = k;
        s->val[s->n++] = v;
    }
}

int pgw_parse_parse(const pgw_msg_t *m, pgw_parse_t *p)
{
    pgw_rd_t r;
    pgw_rd_init(&r, m);
    int16_t n;
    if (pgw_get_str(&r, &p->name, NULL) || pgw_get_str(&r, &p->query, &p->qlen) ||
        pgw_get_i16(&r, &n))
        return ST_EPROTO;
    if (n < 0 || n > PGW_MAX_PARAMS)
        return ST_ELIMIT;
    p->noid = (size_t)n;
    for (size_t i = 0; i < p->noid; i++) {
        int32_t o;
        if (pgw_get_i32(&r, &o))
            return ST_EPROTO;
        p->oid[i] = (uint32_t)o;
    }
    return r.at == r.len ? 0 : ST_EPROTO;
}

int pgw_parse_bind(const pgw_msg_t *m, pgw_bind_t *b)
{
    pgw_rd_t r;
    pgw_rd_init(&r, m);
    int16_t n;
    if (pgw_get_str(&r, &b->portal, NULL) || pgw_get_str(&r, &b->stmt, NULL) || pgw_get_i16(&r, &n))
        return ST_EPROTO;
    if (n < 0 || n > PGW_MAX_PARAMS)
        return ST_ELIMIT;
    b->npfmt = (size_t)n;
    for (size_t i = 0; i < b->npfmt; i++)
        if (pgw_get_i16(&r, &b->pfmt[i]))
            return ST_EPROTO;
    if (pgw_get_i16(&r, &n))
        return ST_EPROTO;
    if (n < 0 || n > PGW_MAX_PARAMS)
        return ST_ELIMIT;
    if (b->npfmt > 1 && b->npfmt != (size_t)n)
        return ST_EPROTO;
    b->nparams = (size_t)n;
    for (size_t i = 0; i < b->nparams; i++) {
        int32_t l;
        if (pgw_get_i32(&r, &l))
            return ST_EPROTO;
        b->plen[i] = l;
        b->pval[i] = NULL;
        if (l == -1)
            continue;
        if (l < 0 || pgw_get_bytes(&r, (size_t)l, &b->pval[i]))
            return ST_EPROTO;
    }
    if (pgw_get_i16(&r, &n))
        return ST_EPROTO;
    if (n < 0 || (size_t)n > sizeof b->rfmt / sizeof b->rfmt[0])
        return ST_ELIMIT;
    b->nrfmt = (size_t)n;
    for (size_t i = 0; i < b->nrfmt; i++)
        if (pgw_get_i16(&r, &b->rfmt[i]))
            return ST_EPROTO;
    return r.at == r.len ? 0 : ST_EPROTO;
}

/* ---- encoders ----------------------------------------------------------- */

size_t pgw_begin(st_buf_t *b, uint8_t t)
{
    st_buf_put_u8(b, t);
    size_t at = b->len;
    pgw_put_i32(b, 0);
    return at;
}

int pgw_patch_i32(st_buf_t *b, size_t at, uint32_t v)
{
    if (!b->data || b->len < at + 4)
        return ST_ENOMEM;
    b->data[at] = (uint8_t)(v >> 24);
    b->data[at + 1] = (uint8_t)(v >> 16);
    b->data[at + 2] = (uint8_t)(v >> 8);
    b->data[at + 3] = (uint8_t)v;
    return 0;
}

int pgw_end(st_buf_t *b, size_t at)
{
    return pgw_patch_i32(b, at, (uint32_t)(b->len - at));
}

int pgw_put_i16(st_buf_t *b, int16_t v)
{
    uint8_t p[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
    return st_buf_append(b, p, 2);
}

int pgw_put_i32(st_buf_t *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t p[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
    return st_buf_append(b, p, 4);
}

int pgw_put_i64(st_buf_t *b, int64_t v)
{
    uint64_t u = (uint64_t)v;
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(u >> (56 - 8 * i));
    return st_buf_append(b, p, 8);
}

int pgw_put_str(st_buf_t *b, const char *s)
{
    return st_buf_append(b, s, strlen(s) + 1);
}

int pgw_auth_ok(st_buf_t *b)
{
    size_t at = pgw_begin(b, 'R');
    pgw_put_i32(b, 0);
    return pgw_end(b, at);
}

int pgw_param_status(st_buf_t *b, const char *k, const char *v)
{
    size_t at = pgw_begin(b, 'S');
    pgw_put_str(b, k);
    pgw_put_str(b, v);
    return pgw_end(b, at);
}

int pgw_backend_key(st_buf_t *b, int32_t pid, int32_t key)
{
    size_t at = pgw_begin(b, 'K');
    pgw_put_i32(b, pid);
    pgw_put_i32(b, key);
    return pgw_end(b, at);
}

int pgw_ready(st_buf_t *b, char status)
{
    size_t at = pgw_begin(b, 'Z');
    st_buf_put_u8(b, (uint8_t)status);
    return pgw_end(b, at);
}

int pgw_simple(st_buf_t *b, uint8_t type)
{
    return pgw_end(b, pgw_begin(b, type));
}

int pgw_command_complete(st_buf_t *b, const char *tag)
{
    size_t at = pgw_begin(b, 'C');
    pgw_put_str(b, tag);
    return pgw_end(b, at);
}

static void field(st_buf_t *b, uint8_t t, const char *s)
{
    st_buf_put_u8(b, t);
    /* a NUL inside would end the field early: the text is ours, C strings */
    pgw_put_str(b, s);
}

int pgw_error(st_buf_t *b, const char *severity, const char *code, const char *msg, size_t position)
{
    size_t at = pgw_begin(b, 'E');
    field(b, 'S', severity);
    field(b, 'V', severity);
    field(b, 'C', code);
    field(b, 'M', msg);
    if (position) {
        char p[24];
        int n = 0;
        char tmp[24];
        size_t v = position;
        do
            tmp[n++] = (char)('0' + v % 10);
        while ((v /= 10) && n < 23);
        for (int i = 0; i < n; i++)
            p[i] = tmp[n - 1 - i];
        p[n] = 0;
        field(b, 'P', p);
    }
    st_buf_put_u8(b, 0);
    return pgw_end(b, at);
}

int pgw_notice(st_buf_t *b, const char *msg)
{
    size_t at = pgw_begin(b, 'N');
    field(b, 'S', "NOTICE");
    field(b, 'V', "NOTICE");
    field(b, 'C', "00000");
    field(b, 'M', msg);
    st_buf_put_u8(b, 0);
    return pgw_end(b, at);
}

int pgw_row_desc(st_buf_t *b, const pgw_col_t *c, size_t n)
{
    size_t at = pgw_begin(b, 'T');
    pgw_put_i16(b, (int16_t)n);
    for (size_t i = 0; i < n; i++) {
        pgw_put_str(b, c[i].name);
        pgw_put_i32(b, 0); /* table oid */
        pgw_put_i16(b, 0); /* column number */
        pgw_put_i32(b, (int32_t)c[i].oid);
        pgw_put_i16(b, c[i].typlen);
        pgw_put_i32(b, -1); /* type modifier */
        pgw_put_i16(b, c[i].format);
    }
    return pgw_end(b, at);
}

int pgw_param_desc(st_buf_t *b, const uint32_t *oid, size_t n)
{
    size_t at = pgw_begin(b, 't');
    pgw_put_i16(b, (int16_t)n);
    for (size_t i = 0; i < n; i++)
        pgw_put_i32(b, (int32_t)oid[i]);
    return pgw_end(b, at);
}
