/*
 * router_pg — PostgreSQL wire protocol v3 sessions on the router's loop.
 *
 * Session states (one connection):
 *
 *   STARTUP --SSLRequest--> 'S' and TLS on the same stream when [security]
 *             tls_cert is set (router_pg_set_tls; every later byte goes through
 *             the tls_conn_t), else 'N'; GSSENCRequest --> 'N'; STARTUP
 *   STARTUP --CancelRequest--> mark the named session cancelled, close
 *   STARTUP --StartupMessage 3.0-->
 *       no users file: AuthenticationOk (trust)
 *       users file, TLS: AuthenticationCleartextPassword --> PASSWORD: a token
 *             (st_..., of that user) or the password (PBKDF2 on the thread pool)
 *       users file, plaintext: AuthenticationSASL SCRAM-SHA-256 --> SASL1
 *             --SASLInitialResponse--> SASLContinue --> SASL2 --SASLResponse-->
 *             SASLFinal (scram.h: the stored PBKDF2 key is SaltedPassword)
 *       a failure: FATAL 28P01 password authentication failed for user "x",
 *             counted (strata_router_pg_auth_total{result="failed"}), logged
 *             without secrets, closed; unknown users go through the same steps;
 *             past AUTH_GATE_FREE_FAILS failures from an address the FATAL is
 *             sent late (a timer; strata_router_pg_auth_delayed_total)
 *   then ParameterStatus..., BackendKeyData, ReadyForQuery: READY. Each
 *   statement runs as the user (router_sql_run checks the role it needs).
 *   READY --Query--> run each ';'-separated statement (run_next) --> READY
 *   READY --Parse/Bind/Describe/Execute/Close/Flush--> extended protocol;
 *         an error skips messages until Sync; Sync --> ReadyForQuery
 *   any --Terminate or a protocol error--> close
 *
 * Statements run one at a time (router_sql_run): while one runs, bytes that
 * arrive are buffered (bounded by PGW_MAX_MSG + a message) and handled when
 * it answers. A portal's rows are encoded into DataRow messages when its
 * statement answers (Describe or Execute, whichever comes first); Execute
 * with a row limit sends that many and PortalSuspended, the next Execute
 * goes on.
 *
 * psql's catalog queries (\dt, \d NAME) are recognised by their text and
 * answered from SHOW TABLES / SHOW COLUMNS in the shapes psql reads; other
 * pg_catalog queries get an empty result (docs/sql.md lists them).
 *
 * Limits: ROUTER_PG_MAX_CONNS sessions (FATAL 53300 beyond), PGW_MAX_MSG
 * bytes per message, ROUTER_PG_MAX_STMTS prepared statements and portals per
 * session. Counters: strata_router_pg_connections_total,
 * strata_router_pg_refused_total, strata_router_pg_protocol_errors_total.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "net_listen.h"
#include "pgwire.h"
#include "router_pg.h"
#include "auth_gate.h"
#include "router_sql.h"
#include "scram.h"
#include "tls.h"
#include "st_err.h"
#include "st_list.h"
#include "st_log.h"
#include "st_time.h"

#define ROUTER_PG_MAX_CONNS 1024
#define ROUTER_PG_MAX_STMTS 256
#define ROUTER_PG_READ 65536
#define PG_EPOCH_MS 946684800000LL /* 2000-01-01T00:00:00Z */

typedef struct pgstmt {
    char *name, *text;
    uint32_t oid[PGW_MAX_PARAMS];
    size_t noid;
} pgstmt_t;

typedef struct pgportal {
    char *name;
    char *text;
    char *params[PGW_MAX_PARAMS];
    size_t nparams;
    int16_t rfmt[256];
    size_t nrfmt;
    int done;      /* the statement answered */
    int failed;    /* ... with an error (sent already) */
    st_buf_t desc; /* RowDescription or NoData */
    st_buf_t rows; /* DataRow messages */
    size_t *off;   /* start of each row in rows */
    size_t nrows, cursor;
    char tag[64];
} pgportal_t;

/* PG_SASL1/PG_SASL2: waiting for SASLInitialResponse / SASLResponse. */
/* PG_PASSWORD: waiting for a cleartext PasswordMessage (TLS sessions). */
typedef enum { PG_STARTUP, PG_SASL1, PG_SASL2, PG_PASSWORD, PG_READY, PG_CLOSED } pgstate_t;

/* What the session waits for when a statement answers. */
typedef enum { W_NONE, W_SIMPLE, W_DESCRIBE, W_EXECUTE, W_DESCRIBE_STMT } pgwait_t;

typedef enum { C_NONE, C_DT, C_LOOKUP, C_CLASS, C_ATTR, C_EMPTY } pgcompat_t;

typedef struct pgconn pgconn_t;
struct pgconn {
    uv_tcp_t tcp;
    router_pg_t *srv;
    pgconn_t *next, *prev;
    pgstate_t state;
    int handles; /* open libuv handles */
    int busy;    /* a statement is running */
    int gone;    /* closed while busy: freed when it answers */
    int cancelled;
    int in_process;  /* process() is on the stack: an answer does not re-enter it */
    char uname[128]; /* the startup packet's user */
    int auth_on;     /* a users file: uname was authenticated */
    char app[128];
    char peer[64];
    scram_server_t *scram; /* the exchange under way */
    int scram_known;       /* the user exists and has a password */
    tls_conn_t *tls;       /* after SSLRequest answered 'S'; NULL: plaintext */
    int tls_fresh;         /* the bytes after SSLRequest are ciphertext */
    char *raw;             /* ciphertext read buffer (TLS) */
    uv_timer_t delay;      /* a failed login answered late (per-address slowdown) */
    char fatal[200];       /* ... with this 28P01 message */
    int skip_to_sync;
    char txn; /* 'I' or 'T' */
    int32_t pid, key;
    uint8_t *in;
    size_t inlen, incap;
    st_buf_t out;
    /* simple query: the statements left */
    char *sq;
    size_t sqlen, sqat;
    int sq_any;
    /* extended */
    pgstmt_t *stmts[ROUTER_PG_MAX_STMTS];
    pgportal_t *portals[ROUTER_PG_MAX_STMTS];
    pgwait_t wait;
    pgportal_t *wp; /* the portal a statement runs for */
    int32_t wlimit; /* Execute's row limit */
    pgcompat_t compat;
    char dtables[16][256]; /* \d lookups: oid 16384 + i */
    size_t ndtables;
    uint32_t wdesc_oids[PGW_MAX_PARAMS];
    size_t wdesc_n;
};

struct router_pg {
    router_t *r;
    uv_tcp_t listener;
    pgconn_t *conns;
    size_t nconns;
    int closing;
    int32_t next_pid;
    metric_counter_t *c_conns, *c_refused, *c_proto, *c_authfail, *c_authok;
    tls_ctx_t *tls; /* not owned; NULL: SSLRequest answered 'N' */
    metric_counter_t *c_delayed;
};

static void process(pgconn_t *c);
static void conn_close(pgconn_t *c);

/* ---- output -------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    size_t len;
    uint8_t data[];
} wreq_t;

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void raw_write(pgconn_t *c, const void *data, size_t len)
{
    wreq_t *wr = malloc(sizeof *wr + len);
    if (!wr) {
        conn_close(c);
        return;
    }
    memcpy(wr->data, data, len);
    wr->len = len;
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)wr->len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
        free(wr);
        conn_close(c);
    }
}

/* Send the TLS session's pending ciphertext (handshake, records, alerts). */
static void tls_flush(pgconn_t *c)
{
    if (!c->tls || !tls_conn_out_pending(c->tls))
        return;
    st_buf_t b;
    st_buf_init(&b);
    if (tls_conn_take(c->tls, &b) == 0 && b.len)
        raw_write(c, b.data, b.len);
    else if (!b.data)
        conn_close(c);
    st_buf_deinit(&b);
}

static void flush_out(pgconn_t *c)
{
    if (!c->out.len || c->state == PG_CLOSED) {
        c->out.len = 0;
        return;
    }
    if (c->tls) {
        int rc = tls_conn_write(c->tls, c->out.data, c->out.len);
        c->out.len = 0;
        if (rc)
            conn_close(c);
        else
            tls_flush(c);
        return;
    }
    raw_write(c, c->out.data, c->out.len);
    c->out.len = 0;
}

/* ---- connection life ------------------------------------------------------ */

static void portal_free(pgportal_t *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->text);
    for (size_t i = 0; i < p->nparams; i++)
        free(p->params[i]);
    st_buf_deinit(&p->desc);
    st_buf_deinit(&p->rows);
    free(p->off);
    free(p);
}

static void stmt_free(pgstmt_t *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->text);
    free(s);
}

static void conn_free(pgconn_t *c)
{
    for (size_t i = 0; i < ROUTER_PG_MAX_STMTS; i++) {
        stmt_free(c->stmts[i]);
        portal_free(c->portals[i]);
    }
    free(c->in);
    free(c->sq);
    free(c->scram);
    free(c->raw);
    tls_conn_destroy(c->tls);
    st_buf_deinit(&c->out);
    free(c);
}

static void on_closed(uv_handle_t *h)
{
    pgconn_t *c = h->data;
    if (--c->handles > 0)
        return;
    if (c->busy) {
        c->gone = 1; /* the statement's answer frees it */
        return;
    }
    conn_free(c);
}

static void conn_close(pgconn_t *c)
{
    if (c->state == PG_CLOSED)
        return;
    c->state = PG_CLOSED;
    router_pg_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    pgconn_t *c = h->data;
    if (c->tls) { /* ciphertext: decrypted into c->in by on_read */
        if (!c->raw)
            c->raw = malloc(ROUTER_PG_READ);
        *buf = uv_buf_init(c->raw, c->raw ? ROUTER_PG_READ : 0);
        return;
    }
    /* the buffer grows with what is pending, up to one whole message and a read */
    size_t want = c->inlen + ROUTER_PG_READ;
    if (want > PGW_MAX_MSG + ROUTER_PG_READ)
        want = PGW_MAX_MSG + ROUTER_PG_READ;
    if (want > c->incap) {
        size_t cap = c->incap ? c->incap : ROUTER_PG_READ;
        while (cap < want)
            cap *= 2;
        if (cap > PGW_MAX_MSG + ROUTER_PG_READ)
            cap = PGW_MAX_MSG + ROUTER_PG_READ;
        uint8_t *n = realloc(c->in, cap);
        if (n) {
            c->in = n;
            c->incap = cap;
        }
    }
    size_t room = c->in ? c->incap - c->inlen : 0;
    if (room > ROUTER_PG_READ)
        room = ROUTER_PG_READ;
    *buf = uv_buf_init(room ? (char *)c->in + c->inlen : NULL, (unsigned)room);
}

/* Ciphertext from the peer: its plaintext appended to c->in. 0, or -1
 * when the session failed (closed). */
static int tls_in(pgconn_t *c, const char *data, size_t n)
{
    st_buf_t plain;
    st_buf_init(&plain);
    int rc = tls_conn_feed(c->tls, data, n, &plain);
    tls_flush(c);
    if (!rc && plain.len) {
        size_t want = c->inlen + plain.len;
        if (want > c->incap) {
            uint8_t *b = realloc(c->in, want);
            if (!b)
                rc = ST_ENOMEM;
            else
                c->in = b, c->incap = want;
        }
        if (!rc) {
            memcpy(c->in + c->inlen, plain.data, plain.len);
            c->inlen += plain.len;
        }
    }
    st_buf_deinit(&plain);
    if (rc) {
        if (c->state != PG_CLOSED)
            st_warn("tls session failed", "remote=%s door=postgres err=\"%s\"", c->peer,
                    tls_conn_error(c->tls));
        conn_close(c);
        return -1;
    }
    return 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    pgconn_t *c = st->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (c->tls) {
        if (tls_in(c, buf->base, (size_t)n))
            return;
    } else {
        c->inlen += (size_t)n;
    }
    if (c->inlen >= PGW_MAX_MSG + ROUTER_PG_READ) { /* a message too long is refused in process */
        uv_read_stop(st);
    }
    if (!c->busy)
        process(c);
}

/* ---- helpers ------------------------------------------------------------ */

static void send_error(pgconn_t *c, const char *code, const char *msg)
{
    size_t pos = 0;
    const char *p = strstr(msg, "at position ");
    if (p)
        pos = (size_t)strtoul(p + strlen("at position "), NULL, 10);
    pgw_error(&c->out, "ERROR", code, msg, pos);
}

static uint32_t oid_of(sql_type_t t, int16_t *len)
{
    switch (t) {
    case SQL_BOOL:
        *len = 1;
        return PGW_BOOL;
    case SQL_INT:
        *len = 8;
        return PGW_INT8;
    case SQL_FLOAT:
        *len = 8;
        return PGW_FLOAT8;
    case SQL_TIME:
        *len = 8;
        return PGW_TIMESTAMPTZ;
    case SQL_INTERVAL:
        *len = 16;
        return PGW_INTERVAL;
    default:
        *len = -1;
        return PGW_TEXT;
    }
}

static int16_t fmt_of(const pgportal_t *p, size_t col)
{
    if (!p || !p->nrfmt)
        return 0;
    return p->nrfmt == 1 ? p->rfmt[0] : col < p->nrfmt ? p->rfmt[col] : 0;
}

static int row_desc(st_buf_t *b, const sql_result_t *res, const pgportal_t *p)
{
    size_t n = sql_result_ncols(res);
    pgw_col_t *cols = calloc(n ? n : 1, sizeof *cols);
    if (!cols)
        return ST_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cols[i].name = sql_result_colname(res, i);
        cols[i].oid = oid_of(sql_result_coltype(res, i), &cols[i].typlen);
        cols[i].format = fmt_of(p, i);
    }
    int rc = pgw_row_desc(b, cols, n);
    free(cols);
    return rc;
}

/* One DataRow. */
static int data_row(st_buf_t *b, const sql_result_t *res, size_t row, const pgportal_t *p)
{
    size_t n = sql_result_ncols(res);
    size_t at = pgw_begin(b, 'D');
    pgw_put_i16(b, (int16_t)n);
    for (size_t c = 0; c < n; c++) {
        const sql_val_t *v = sql_result_cell(res, row, c);
        if (v->type == SQL_NULL) {
            pgw_put_i32(b, -1);
            continue;
        }
        if (fmt_of(p, c) == 1) {
            switch (v->type) {
            case SQL_INT:
                pgw_put_i32(b, 8);
                pgw_put_i64(b, v->u.i);
                continue;
            case SQL_FLOAT: {
                int64_t bits;
                memcpy(&bits, &v->u.f, 8);
                pgw_put_i32(b, 8);
                pgw_put_i64(b, bits);
                continue;
            }
            case SQL_TIME:
                pgw_put_i32(b, 8);
                pgw_put_i64(b, (v->u.i - PG_EPOCH_MS) * 1000);
                continue;
            case SQL_BOOL:
                pgw_put_i32(b, 1);
                st_buf_put_u8(b, v->u.i ? 1 : 0);
                continue;
            case SQL_INTERVAL:
                pgw_put_i32(b, 16);
                pgw_put_i64(b, v->u.i * 1000);
                pgw_put_i32(b, 0);
                pgw_put_i32(b, 0);
                continue;
            default:
                break; /* text: the same bytes */
            }
        }
        /* text written in place, its length put in front after */
        size_t lat = b->len;
        pgw_put_i32(b, 0);
        sql_val_text(b, v);
        if (b->len >= lat + 4)
            pgw_patch_i32(b, lat, (uint32_t)(b->len - lat - 4));
    }
    return pgw_end(b, at);
}

/* Encode a whole answer into portal p (desc, rows, tag). */
static int encode_answer(pgportal_t *p, const router_sql_answer_t *a)
{
    p->done = 1;
    p->desc.len = p->rows.len = 0;
    p->nrows = p->cursor = 0;
    if (!a->res) {
        pgw_simple(&p->desc, 'n');
        router_sql_tag(a, p->tag, sizeof p->tag);
        return 0;
    }
    const sql_result_t *res = a->res;
    int rc = row_desc(&p->desc, res, p);
    size_t n = sql_result_nrows(res);
    free(p->off);
    p->off = malloc((n + 1) * sizeof *p->off);
    if (!p->off)
        return ST_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        p->off[i] = p->rows.len;
        rc = data_row(&p->rows, res, i, p);
    }
    p->off[n] = p->rows.len;
    p->nrows = n;
    sql_result_tag(res, a->stmt, p->tag, sizeof p->tag);
    if (!p->rows.data && n)
        rc = ST_ENOMEM;
    return rc;
}

/* Send rows from the cursor: all (limit <= 0) or limit; then CommandComplete
 * or PortalSuspended. */
static void send_rows(pgconn_t *c, pgportal_t *p, int32_t limit)
{
    size_t end = p->nrows;
    if (limit > 0 && p->cursor + (size_t)limit < end)
        end = p->cursor + (size_t)limit;
    if (end > p->cursor)
        st_buf_append(&c->out, p->rows.data + p->off[p->cursor], p->off[end] - p->off[p->cursor]);
    p->cursor = end;
    if (p->cursor < p->nrows) {
        pgw_simple(&c->out, 's');
        return;
    }
    if (!strncmp(p->tag, "SELECT", 6))
        snprintf(p->tag, sizeof p->tag, "SELECT %zu", p->nrows);
    pgw_command_complete(&c->out, p->tag);
}

/* ---- psql's catalog queries ------------------------------------------------ */

static int has(const char *t, const char *s)
{
    return strstr(t, s) != NULL;
}

/* The quoted value after `key` ("c.oid = '16385'"). */
static long quoted_after(const char *t, const char *key)
{
    const char *p = strstr(t, key);
    if (!p)
        return -1;
    p += strlen(key);
    while (*p == ' ' || *p == '=' || *p == '\'')
        p++;
    return strtol(p, NULL, 10);
}

static const char *compat_table(pgconn_t *c, const char *text, const char *key)
{
    long oid = quoted_after(text, key);
    if (oid < 16384 || (size_t)(oid - 16384) >= c->ndtables)
        return NULL;
    return c->dtables[oid - 16384];
}

/* Recognise a catalog query; write the statement to run in out. */
static pgcompat_t compat_of(pgconn_t *c, const char *text, char *out, size_t cap)
{
    if (!has(text, "pg_catalog.") && !has(text, "pg_class") && !has(text, "pg_type") &&
        !has(text, "pg_namespace") && !has(text, "pg_attribute") && !has(text, "pg_database") &&
        !has(text, "pg_settings") && !has(text, "pg_proc"))
        return C_NONE;
    if (has(text, "pg_catalog.pg_class c") && has(text, "relkind IN") &&
        has(text, "AS \"Name\"") + has(text, "as \"Name\"")) {
        snprintf(out, cap, "SHOW TABLES");
        return C_DT;
    }
    const char *re = strstr(text, "c.relname OPERATOR(pg_catalog.~) '");
    if (re) {
        re += strlen("c.relname OPERATOR(pg_catalog.~) '");
        const char *e = strchr(re, '\'');
        if (e && (size_t)(e - re) < 200) {
            snprintf(out, cap,
                     "SELECT table_name FROM information_schema.tables WHERE table_name ~ '%.*s' "
                     "ORDER BY table_name",
                     (int)(e - re), re);
            return C_LOOKUP;
        }
    }
    if (has(text, "c.relchecks") && compat_table(c, text, "c.oid =")) {
        snprintf(out, cap, "SELECT 1");
        return C_CLASS;
    }
    const char *t;
    if (has(text, "pg_catalog.pg_attribute a") && has(text, "a.attname") &&
        (t = compat_table(c, text, "a.attrelid ="))) {
        snprintf(out, cap, "SHOW COLUMNS FROM \"%s\"", t);
        return C_ATTR;
    }
    snprintf(out, cap, "SELECT 1");
    return C_EMPTY;
}

static sql_val_t tv(const char *s)
{
    sql_val_t v = {.type = SQL_TEXT};
    v.u.t.s = s;
    v.u.t.len = strlen(s);
    return v;
}

/* Reshape the answer of the statement a catalog query ran. */
static sql_result_t *compat_result(pgconn_t *c, const router_sql_answer_t *a)
{
    sql_result_t *r = sql_result_create();
    if (!r)
        return NULL;
    const sql_result_t *in = a->res;
    size_t n = in ? sql_result_nrows(in) : 0;
    sql_val_t nul = {.type = SQL_NULL}, f = {.type = SQL_BOOL}, zero = {.type = SQL_INT};
    int rc = 0;
    switch (c->compat) {
    case C_DT:
        rc = sql_result_col(r, "Schema", SQL_TEXT) || sql_result_col(r, "Name", SQL_TEXT) ||
             sql_result_col(r, "Type", SQL_TEXT) || sql_result_col(r, "Owner", SQL_TEXT);
        for (size_t i = 0; i < n && !rc; i++) {
            const sql_val_t *name = sql_result_cell(in, i, 0);
            sql_val_t row[4] = {tv("public"), *name, tv("table"), tv("strata")};
            rc = sql_result_row(r, row);
        }
        break;
    case C_LOOKUP:
        rc = sql_result_col(r, "oid", SQL_INT) || sql_result_col(r, "nspname", SQL_TEXT) ||
             sql_result_col(r, "relname", SQL_TEXT);
        c->ndtables = 0;
        for (size_t i = 0; i < n && !rc && c->ndtables < 16; i++) {
            const sql_val_t *name = sql_result_cell(in, i, 0);
            if (name->u.t.len >= sizeof c->dtables[0])
                continue;
            memcpy(c->dtables[c->ndtables], name->u.t.s, name->u.t.len);
            c->dtables[c->ndtables][name->u.t.len] = 0;
            sql_val_t oid = {.type = SQL_INT};
            oid.u.i = 16384 + (int64_t)c->ndtables++;
            sql_val_t row[3] = {oid, tv("public"), *name};
            rc = sql_result_row(r, row);
        }
        break;
    case C_CLASS: {
        static const char *const names[] = {
            "relchecks",           "relkind",        "relhasindex",
            "relhasrules",         "relhastriggers", "relrowsecurity",
            "relforcerowsecurity", "relhasoids",     "relispartition",
            "reloptions",          "reltablespace",  "reloftype",
            "relpersistence",      "relreplident",   "amname"};
        sql_val_t row[15] = {zero, tv("r"), f,    f,      f,       f,       f,         f,
                             f,    tv(""),  zero, tv(""), tv("p"), tv("d"), tv("heap")};
        for (size_t i = 0; i < 15 && !rc; i++)
            rc = sql_result_col(r, names[i], row[i].type);
        if (!rc)
            rc = sql_result_row(r, row);
        break;
    }
    case C_ATTR:
        rc = sql_result_col(r, "attname", SQL_TEXT) || sql_result_col(r, "format_type", SQL_TEXT) ||
             sql_result_col(r, "pg_get_expr", SQL_TEXT) ||
             sql_result_col(r, "attnotnull", SQL_BOOL) ||
             sql_result_col(r, "attcollation", SQL_TEXT) ||
             sql_result_col(r, "attidentity", SQL_TEXT) ||
             sql_result_col(r, "attgenerated", SQL_TEXT);
        for (size_t i = 0; i < n && !rc; i++) {
            sql_val_t nn = f;
            nn.u.i = i == 0; /* time is never NULL */
            sql_val_t row[7] = {*sql_result_cell(in, i, 0),
                                *sql_result_cell(in, i, 1),
                                nul,
                                nn,
                                nul,
                                tv(""),
                                tv("")};
            rc = sql_result_row(r, row);
        }
        break;
    default:
        break; /* C_EMPTY: no columns, no rows */
    }
    if (rc) {
        sql_result_free(r);
        return NULL;
    }
    return r;
}

/* ---- statements ------------------------------------------------------------- */

static void on_answer(void *arg, const router_sql_answer_t *a0);

static void run(pgconn_t *c, const char *text, size_t len, char **params, size_t np)
{
    char rewritten[512];
    char *tmp = NULL;
    c->compat = C_NONE;
    if (len < 65536) {
        tmp = malloc(len + 1);
        if (tmp) {
            memcpy(tmp, text, len);
            tmp[len] = 0;
            c->compat = compat_of(c, tmp, rewritten, sizeof rewritten);
        }
    }
    free(tmp);
    c->busy = 1;
    c->cancelled = 0;
    /* the user by name, now: a users file reloaded since the login counts */
    const auth_user_t *user = NULL;
    if (c->auth_on) {
        const auth_db_t *db = auth_gate_db(c->srv->r->auth);
        user = db ? auth_db_find(db, c->uname) : NULL;
        if (!user) {
            router_sql_answer_t a = {403, "28000", "this user no longer exists", NULL, NULL, 0};
            on_answer(c, &a);
            return;
        }
    }
    if (c->compat != C_NONE)
        router_sql_run(c->srv->r, user, rewritten, strlen(rewritten), NULL, 0, on_answer, c);
    else
        router_sql_run(c->srv->r, user, text, len, (const char *const *)params, np, on_answer, c);
}

/* The next statement of a simple Query; ReadyForQuery after the last. */
static void run_next(pgconn_t *c)
{
    while (c->sqat < c->sqlen) {
        /* split at a ';' outside quotes and comments */
        size_t i = c->sqat, st = i;
        char q = 0;
        for (; i < c->sqlen; i++) {
            char ch = c->sq[i];
            if (q) {
                if (ch == q)
                    q = 0;
            } else if (ch == '\'' || ch == '"') {
                q = ch;
            } else if (ch == '-' && i + 1 < c->sqlen && c->sq[i + 1] == '-') {
                while (i < c->sqlen && c->sq[i] != '\n')
                    i++;
            } else if (ch == ';') {
                break;
            }
        }
        c->sqat = i < c->sqlen ? i + 1 : i;
        size_t a = st, b = i;
        while (a < b &&
               (c->sq[a] == ' ' || c->sq[a] == '\n' || c->sq[a] == '\t' || c->sq[a] == '\r'))
            a++;
        if (a == b)
            continue;
        c->sq_any = 1;
        c->wait = W_SIMPLE;
        run(c, c->sq + a, b - a, NULL, 0);
        return;
    }
    if (!c->sq_any)
        pgw_simple(&c->out, 'I'); /* EmptyQueryResponse */
    free(c->sq);
    c->sq = NULL;
    pgw_ready(&c->out, c->txn);
    flush_out(c);
}

static void on_answer(void *arg, const router_sql_answer_t *a0)
{
    pgconn_t *c = arg;
    c->busy = 0;
    if (c->gone) {
        conn_free(c);
        return;
    }
    if (c->state == PG_CLOSED)
        return;
    router_sql_answer_t a = *a0;
    sql_result_t *made = NULL;
    if (c->cancelled) {
        a.status = 400;
        a.sqlstate = "57014";
        a.msg = "canceling statement due to user request";
    } else if (!a.status && c->compat != C_NONE) {
        made = compat_result(c, &a);
        a.res = made;
    }
    if (!a.status && a.stmt) {
        const char *tag = sql_stmt_tag(a.stmt);
        if (!strcmp(tag, "BEGIN"))
            c->txn = 'T';
        else if (!strcmp(tag, "COMMIT") || !strcmp(tag, "ROLLBACK"))
            c->txn = 'I';
    }
    pgportal_t tmp = {0};
    pgportal_t *p = c->wait == W_SIMPLE || c->wait == W_DESCRIBE_STMT ? &tmp : c->wp;
    if (a.status) {
        send_error(c, a.sqlstate ? a.sqlstate : "XX000", a.msg ? a.msg : "error");
        if (c->wait == W_SIMPLE) {
            free(c->sq);
            c->sq = NULL;
            pgw_ready(&c->out, c->txn);
        } else {
            c->skip_to_sync = 1;
            if (p)
                p->failed = 1;
        }
    } else if (encode_answer(p, &a)) {
        send_error(c, "53200", "out of memory");
        if (c->wait != W_SIMPLE)
            c->skip_to_sync = 1;
    } else {
        switch (c->wait) {
        case W_SIMPLE:
            if (a.res)
                st_buf_append(&c->out, p->desc.data, p->desc.len);
            send_rows(c, p, 0);
            break;
        case W_DESCRIBE_STMT:
            pgw_param_desc(&c->out, c->wdesc_oids, c->wdesc_n);
            st_buf_append(&c->out, p->desc.data, p->desc.len);
            break;
        case W_DESCRIBE:
            st_buf_append(&c->out, p->desc.data, p->desc.len);
            break;
        case W_EXECUTE:
            send_rows(c, p, c->wlimit);
            break;
        default:
            break;
        }
    }
    sql_result_free(made);
    if (p == &tmp) {
        st_buf_deinit(&tmp.desc);
        st_buf_deinit(&tmp.rows);
        free(tmp.off);
    }
    pgwait_t w = c->wait;
    c->wait = W_NONE;
    if (w == W_SIMPLE && c->sq && !a.status) {
        run_next(c);
        if (c->busy)
            return;
    } else {
        flush_out(c);
    }
    if (!c->in_process)
        process(c);
}

/* ---- messages ---------------------------------------------------------------- */

static pgstmt_t **find_stmt(pgconn_t *c, const char *name, int create)
{
    pgstmt_t **fr = NULL;
    for (size_t i = 0; i < ROUTER_PG_MAX_STMTS; i++) {
        if (c->stmts[i] && !strcmp(c->stmts[i]->name, name))
            return &c->stmts[i];
        if (!c->stmts[i] && !fr)
            fr = &c->stmts[i];
    }
    return create ? fr : NULL;
}

static pgportal_t **find_portal(pgconn_t *c, const char *name, int create)
{
    pgportal_t **fr = NULL;
    for (size_t i = 0; i < ROUTER_PG_MAX_STMTS; i++) {
        if (c->portals[i] && !strcmp(c->portals[i]->name, name))
            return &c->portals[i];
        if (!c->portals[i] && !fr)
            fr = &c->portals[i];
    }
    return create ? fr : NULL;
}

/* A binary parameter of type oid as the text the SQL layer takes. */
static char *param_text(uint32_t oid, int16_t fmt, const uint8_t *p, int32_t len)
{
    char buf[64];
    if (fmt == 0 || oid == PGW_TEXT || oid == 1043 || oid == 0 || oid == PGW_UNKNOWN) {
        char *s = malloc((size_t)len + 1);
        if (s) {
            memcpy(s, p, (size_t)len);
            s[len] = 0;
        }
        return s;
    }
    uint64_t u = 0;
    for (int32_t i = 0; i < len && i < 8; i++)
        u = u << 8 | p[i];
    if ((oid == PGW_INT8 && len == 8) || (oid == 23 && len == 4) || (oid == 21 && len == 2)) {
        int64_t v = len == 8 ? (int64_t)u : len == 4 ? (int32_t)(uint32_t)u : (int16_t)(uint16_t)u;
        snprintf(buf, sizeof buf, "%lld", (long long)v);
    } else if (oid == PGW_FLOAT8 && len == 8) {
        double d;
        memcpy(&d, &u, 8);
        snprintf(buf, sizeof buf, "%.17g", d);
    } else if (oid == PGW_BOOL && len == 1) {
        snprintf(buf, sizeof buf, "%s", p[0] ? "true" : "false");
    } else if (oid == PGW_TIMESTAMPTZ && len == 8) {
        int64_t ms = (int64_t)u / 1000 + PG_EPOCH_MS;
        sql_val_t v = {.type = SQL_TIME};
        v.u.i = ms;
        st_buf_t b;
        st_buf_init(&b);
        sql_val_text(&b, &v);
        snprintf(buf, sizeof buf, "%.*s", (int)b.len, b.data ? (char *)b.data : "");
        st_buf_deinit(&b);
    } else {
        return NULL;
    }
    return strdup(buf);
}

/* AuthenticationOk, the ParameterStatus values drivers check,
 * BackendKeyData, ReadyForQuery: the session is READY. */
static int startup_done(pgconn_t *c)
{
    pgw_auth_ok(&c->out);
    static const char *const ps[][2] = {{"server_version", "14.0"},
                                        {"server_encoding", "UTF8"},
                                        {"client_encoding", "UTF8"},
                                        {"DateStyle", "ISO, MDY"},
                                        {"TimeZone", "UTC"},
                                        {"integer_datetimes", "on"},
                                        {"IntervalStyle", "postgres"},
                                        {"is_superuser", "off"},
                                        {"standard_conforming_strings", "on"}};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        pgw_param_status(&c->out, ps[i][0], ps[i][1]);
    pgw_param_status(&c->out, "application_name", c->app);
    pgw_param_status(&c->out, "session_authorization", c->uname);
    pgw_backend_key(&c->out, c->pid, c->key);
    pgw_ready(&c->out, 'I');
    c->state = PG_READY;
    c->txn = 'I';
    return 0;
}

static void on_delay(uv_timer_t *t)
{
    pgconn_t *c = t->data;
    c->busy = 0;
    uv_close((uv_handle_t *)t, on_closed);
    if (c->state != PG_CLOSED) {
        pgw_error(&c->out, "FATAL", "28P01", c->fatal, 0);
        flush_out(c);
        conn_close(c);
    }
}

/* FATAL 28P01 (or 08P01 for a malformed exchange), counted and logged
 * without secrets; the connection closes — late, for an address with
 * recent failures (the session is held busy until the timer). */
static int auth_failed(pgconn_t *c, const char *why, int proto)
{
    metric_counter_inc(c->srv->c_authfail);
    uint64_t delay =
        proto || c->srv->closing ? 0 : auth_gate_note_failure(c->srv->r->auth, c->peer);
    st_warn("authentication failed", "reason=\"%s\" remote=%s door=postgres user=%s delay_ms=%llu",
            why, c->peer, auth_name_ok(c->uname, strlen(c->uname)) ? c->uname : "-",
            (unsigned long long)delay);
    snprintf(c->fatal, sizeof c->fatal, "password authentication failed for user \"%.100s\"",
             c->uname);
    if (delay && uv_timer_init(c->srv->r->loop, &c->delay) == 0) {
        metric_counter_inc(c->srv->c_delayed);
        c->handles++;
        c->delay.data = c;
        c->busy = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_timer_start(&c->delay, on_delay, delay, 0);
        return 0;
    }
    pgw_error(&c->out, "FATAL", proto ? "08P01" : "28P01", proto ? why : c->fatal, 0);
    return -1;
}

/* SASLInitialResponse (PG_SASL1), then SASLResponse (PG_SASL2). */
static int sasl_step(pgconn_t *c, const pgw_msg_t *m)
{
    if (m->type != 'p')
        return auth_failed(c, "expected a SASL response", 1);
    pgw_rd_t r;
    pgw_rd_init(&r, m);
    const char *data;
    size_t dlen;
    if (c->state == PG_SASL1) {
        const char *mech;
        size_t ml;
        int32_t n;
        const uint8_t *d = NULL;
        if (pgw_get_str(&r, &mech, &ml) || pgw_get_i32(&r, &n) || n < 0 ||
            pgw_get_bytes(&r, (size_t)n, &d))
            return auth_failed(c, "malformed SASLInitialResponse", 1);
        if (strcmp(mech, SCRAM_MECH))
            return auth_failed(c, "unsupported SASL mechanism", 1);
        data = (const char *)d;
        dlen = (size_t)n;
        const auth_db_t *db = auth_gate_db(c->srv->r->auth);
        const auth_user_t *u = db ? auth_db_find(db, c->uname) : NULL;
        const uint8_t *salt = NULL, *key = NULL;
        size_t sl = 0;
        uint32_t iter = 4096;
        uint8_t fake[16], rnd[SCRAM_NONCE_BYTES];
        c->scram_known = u && !auth_user_scram(u, &salt, &sl, &iter, &key);
        if (!c->scram_known) { /* go on as if it existed: the answer tells nothing */
            salt = fake;
            sl = sizeof fake;
            iter = 4096;
            if (RAND_bytes(fake, sizeof fake) != 1)
                return auth_failed(c, "no random bytes", 1);
        }
        if (RAND_bytes(rnd, sizeof rnd) != 1)
            return auth_failed(c, "no random bytes", 1);
        if (!c->scram && !(c->scram = malloc(sizeof *c->scram)))
            return -1;
        if (scram_server_first(c->scram, data, dlen, salt, sl, iter, rnd))
            return auth_failed(c, "malformed SCRAM client-first-message", 1);
        size_t at = pgw_begin(&c->out, 'R');
        pgw_put_i32(&c->out, 11);
        st_buf_append(&c->out, c->scram->first, c->scram->first_len);
        pgw_end(&c->out, at);
        c->state = PG_SASL2;
        return 0;
    }
    data = (const char *)m->body;
    dlen = m->len;
    const auth_db_t *db = auth_gate_db(c->srv->r->auth);
    const auth_user_t *u = db ? auth_db_find(db, c->uname) : NULL;
    const uint8_t *salt, *key = NULL;
    size_t sl;
    uint32_t iter;
    if (!c->scram_known || !u || auth_user_scram(u, &salt, &sl, &iter, &key))
        key = NULL;
    char v[128];
    int rc = scram_server_final(c->scram, data, dlen, key, v, sizeof v);
    free(c->scram);
    c->scram = NULL;
    if (rc == ST_EPROTO || rc == ST_ELIMIT)
        return auth_failed(c, "malformed SCRAM client-final-message", 1);
    if (rc)
        return auth_failed(c, c->scram_known ? "wrong password" : "unknown user", 0);
    size_t at = pgw_begin(&c->out, 'R');
    pgw_put_i32(&c->out, 12);
    st_buf_append(&c->out, v, strlen(v));
    pgw_end(&c->out, at);
    metric_counter_inc(c->srv->c_authok);
    return startup_done(c);
}

/* A password checked on the thread pool (PBKDF2 is slow on purpose). */
typedef struct pwcheck {
    uv_work_t w;
    pgconn_t *c;
    const auth_user_t *u;
    int ok;
    size_t len;
    char pw[];
} pwcheck_t;

static void pw_work(uv_work_t *w)
{
    pwcheck_t *k = w->data;
    k->ok = auth_password_slow(k->u, k->pw, k->len);
}

static void pw_after(uv_work_t *w, int status)
{
    pwcheck_t *k = w->data;
    pgconn_t *c = k->c;
    c->busy = 0;
    if (c->gone) {
        conn_free(c);
    } else if (c->state == PG_PASSWORD) {
        int rc;
        if (status == 0 && k->ok && k->u) {
            auth_password_remember(k->u, k->pw, k->len);
            metric_counter_inc(c->srv->c_authok);
            rc = startup_done(c);
        } else {
            rc = auth_failed(c, k->u ? "wrong password" : "unknown user", 0);
        }
        flush_out(c);
        if (rc < 0)
            conn_close(c);
        else
            process(c);
    }
    OPENSSL_cleanse(k->pw, k->len);
    free(k);
}

/* PasswordMessage on a TLS session: a token (st_...) of this user, or its
 * password. Returns 1 while the password is checked off the loop. */
static int password_step(pgconn_t *c, const pgw_msg_t *m)
{
    pgw_rd_t r;
    const char *pw;
    size_t len;
    pgw_rd_init(&r, m);
    if (m->type != 'p' || pgw_get_str(&r, &pw, &len))
        return auth_failed(c, "expected a PasswordMessage", 1);
    auth_db_t *db = (auth_db_t *)auth_gate_db(c->srv->r->auth);
    const auth_user_t *u = NULL;
    if (len > 3 && !strncmp(pw, "st_", 3)) {
        if (!db || auth_check_token(db, pw, len, &u) != AUTH_OK ||
            strcmp(auth_user_name(u), c->uname))
            return auth_failed(c, "bad token", 0);
        metric_counter_inc(c->srv->c_authok);
        return startup_done(c);
    }
    int rc = db ? auth_password_begin(db, c->uname, pw, len, &u) : AUTH_BAD_CREDENTIALS;
    if (rc == AUTH_OK) {
        metric_counter_inc(c->srv->c_authok);
        return startup_done(c);
    }
    if (rc != AUTH_SLOW)
        return auth_failed(c, "wrong password", 0);
    pwcheck_t *k = malloc(sizeof *k + len + 1);
    if (!k)
        return -1;
    k->c = c;
    k->u = u;
    k->ok = 0;
    k->len = len;
    memcpy(k->pw, pw, len + 1);
    k->w.data = k;
    if (uv_queue_work(c->srv->r->loop, &k->w, pw_work, pw_after)) {
        free(k);
        return -1;
    }
    c->busy = 1;
    return 1;
}

/* Handle one message: 0 to go on, 1 when a statement now runs, -1 to close. */
/* May the statement answer rows? 0 for those that change data or
 * settings (a Describe of them must not run them); 1 when it may, or does
 * not parse (running it reports the error). */
static int returns_rows(const char *text)
{
    sql_stmt_t *st;
    char err[SQL_ERR_MAX];
    if (sql_parse(text, strlen(text), &st, err, sizeof err))
        return 1;
    sql_kind_t k = sql_stmt_kind(st);
    sql_stmt_free(st);
    return k == SQL_SELECT || k == SQL_SHOW_TABLES || k == SQL_SHOW_COLUMNS || k == SQL_SHOW_VAR;
}

static int handle(pgconn_t *c, const pgw_msg_t *m)
{
    router_pg_t *s = c->srv;
    if (c->state == PG_STARTUP) {
        if (m->code == PGW_SSL_REQUEST && s->tls && !c->tls) {
            /* 'S' in plaintext, then TLS on the same stream */
            st_buf_put_u8(&c->out, 'S');
            flush_out(c);
            if (tls_conn_create(s->tls, NULL, &c->tls))
                return -1;
            c->tls_fresh = 1;
            return 0;
        }
        if (m->code == PGW_SSL_REQUEST || m->code == PGW_GSSENC_REQUEST) {
            st_buf_put_u8(&c->out, 'N');
            return 0;
        }
        if (m->code == PGW_CANCEL_REQUEST) {
            pgw_rd_t r;
            int32_t pid, key;
            pgw_rd_init(&r, m);
            if (!pgw_get_i32(&r, &pid) && !pgw_get_i32(&r, &key))
                for (pgconn_t *o = s->conns; o; o = o->next)
                    if (o->pid == pid && o->key == key && o->busy)
                        o->cancelled = 1;
            return -1;
        }
        if (m->code != PGW_PROTO_V3) {
            pgw_error(&c->out, "FATAL", "0A000", "unsupported frontend protocol", 0);
            return -1;
        }
        if (s->tls && !c->tls && tls_ctx_wants_peer_cert(s->tls)) {
            /* [security] tls_client_ca: a client certificate is the door's
             * key, and plaintext would go around it */
            metric_counter_inc(s->c_refused);
            st_warn("connection refused",
                    "remote=%s door=postgres reason=\"plaintext while "
                    "client certificates are required\"",
                    c->peer);
            pgw_error(&c->out, "FATAL", "28000",
                      "this server requires SSL with a client certificate ([security] "
                      "tls_client_ca): connect with sslmode=require or stronger, sslcert and "
                      "sslkey",
                      0);
            return -1;
        }
        pgw_startup_t su;
        if (pgw_parse_startup(m, &su)) {
            pgw_error(&c->out, "FATAL", "08P01", "invalid startup packet", 0);
            return -1;
        }
        const char *user = "strata", *app = "";
        for (size_t i = 0; i < su.n; i++) {
            if (!strcmp(su.key[i], "user"))
                user = su.val[i];
            if (!strcmp(su.key[i], "application_name"))
                app = su.val[i];
        }
        snprintf(c->uname, sizeof c->uname, "%s", user);
        snprintf(c->app, sizeof c->app, "%s", app);
        c->auth_on = auth_gate_enabled(s->r->auth);
        if (c->auth_on && c->tls) {
            /* TLS: a cleartext password or token (AuthenticationCleartextPassword) */
            size_t at = pgw_begin(&c->out, 'R');
            pgw_put_i32(&c->out, 3);
            pgw_end(&c->out, at);
            c->state = PG_PASSWORD;
            return 0;
        }
        if (c->auth_on) {
            /* plaintext: SCRAM-SHA-256 (the only mechanism offered) */
            size_t at = pgw_begin(&c->out, 'R');
            pgw_put_i32(&c->out, 10);
            pgw_put_str(&c->out, SCRAM_MECH);
            st_buf_put_u8(&c->out, 0);
            pgw_end(&c->out, at);
            c->state = PG_SASL1;
            return 0;
        }
        return startup_done(c); /* trust: no users file */
    }
    if (c->state == PG_SASL1 || c->state == PG_SASL2)
        return sasl_step(c, m);
    if (c->state == PG_PASSWORD)
        return password_step(c, m);
    if (c->skip_to_sync && m->type != 'S') {
        return 0;
    }
    switch (m->type) {
    case 'Q': {
        pgw_rd_t r;
        const char *q;
        size_t qlen;
        pgw_rd_init(&r, m);
        if (pgw_get_str(&r, &q, &qlen))
            return -1;
        free(c->sq);
        c->sq = malloc(qlen + 1);
        if (!c->sq)
            return -1;
        memcpy(c->sq, q, qlen + 1);
        c->sqlen = qlen;
        c->sqat = 0;
        c->sq_any = 0;
        run_next(c);
        return c->busy;
    }
    case 'X':
        return -1;
    case 'S':
        c->skip_to_sync = 0;
        pgw_ready(&c->out, c->txn);
        return 0;
    case 'H':
        return 0;
    case 'P': {
        pgw_parse_t p;
        if (pgw_parse_parse(m, &p)) {
            send_error(c, "08P01", "malformed Parse message");
            c->skip_to_sync = 1;
            return 0;
        }
        pgstmt_t **slot = find_stmt(c, p.name, 1);
        if (!slot) {
            send_error(c, "54000", "too many prepared statements (max 256)");
            c->skip_to_sync = 1;
            return 0;
        }
        pgstmt_t *st = calloc(1, sizeof *st);
        if (!st || !(st->name = strdup(p.name)) || !(st->text = strdup(p.query))) {
            stmt_free(st);
            return -1;
        }
        memcpy(st->oid, p.oid, p.noid * sizeof *p.oid);
        st->noid = p.noid;
        /* the number of $n the text uses, for ParameterDescription */
        for (const char *d = st->text; (d = strchr(d, '$')) != NULL; d++) {
            long v = strtol(d + 1, NULL, 10);
            if (v > 0 && v <= PGW_MAX_PARAMS && (size_t)v > st->noid) {
                for (size_t k = st->noid; k < (size_t)v; k++)
                    st->oid[k] = 0;
                st->noid = (size_t)v;
            }
        }
        stmt_free(*slot);
        *slot = st;
        pgw_simple(&c->out, '1');
        return 0;
    }
    case 'B': {
        pgw_bind_t *b = malloc(sizeof *b);
        if (!b)
            return -1;
        if (pgw_parse_bind(m, b)) {
            free(b);
            send_error(c, "08P01", "malformed Bind message");
            c->skip_to_sync = 1;
            return 0;
        }
        pgstmt_t **st = find_stmt(c, b->stmt, 0);
        pgportal_t **slot = find_portal(c, b->portal, 1);
        if (!st || !slot) {
            send_error(c, st ? "54000" : "26000",
                       st ? "too many portals (max 256)" : "prepared statement does not exist");
            c->skip_to_sync = 1;
            free(b);
            return 0;
        }
        pgportal_t *p = calloc(1, sizeof *p);
        if (!p || !(p->name = strdup(b->portal)) || !(p->text = strdup((*st)->text))) {
            portal_free(p);
            free(b);
            return -1;
        }
        for (size_t i = 0; i < b->nparams; i++) {
            int16_t f = b->npfmt == 0 ? 0 : b->npfmt == 1 ? b->pfmt[0] : b->pfmt[i];
            uint32_t oid = i < (*st)->noid ? (*st)->oid[i] : 0;
            p->nparams = i + 1;
            if (!b->pval[i])
                continue;
            if (!(p->params[i] = param_text(oid, f, b->pval[i], b->plen[i]))) {
                send_error(c, "22P03",
                           "binary parameter of this type is not supported (int2/4/8, float8, "
                           "bool, text, timestamptz are)");
                c->skip_to_sync = 1;
                portal_free(p);
                free(b);
                return 0;
            }
        }
        memcpy(p->rfmt, b->rfmt, b->nrfmt * sizeof *b->rfmt);
        p->nrfmt = b->nrfmt;
        free(b);
        portal_free(*slot);
        *slot = p;
        pgw_simple(&c->out, '2');
        return 0;
    }
    case 'D':
    case 'E':
    case 'C': {
        pgw_rd_t r;
        uint8_t kind = 'P';
        const char *name;
        int32_t limit = 0;
        pgw_rd_init(&r, m);
        if ((m->type != 'E' && pgw_get_u8(&r, &kind)) || pgw_get_str(&r, &name, NULL) ||
            (m->type == 'E' && pgw_get_i32(&r, &limit))) {
            send_error(c, "08P01", "malformed message");
            c->skip_to_sync = 1;
            return 0;
        }
        if (m->type == 'C') {
            if (kind == 'S') {
                pgstmt_t **st = find_stmt(c, name, 0);
                if (st) {
                    stmt_free(*st);
                    *st = NULL;
                }
            } else {
                pgportal_t **p = find_portal(c, name, 0);
                if (p) {
                    portal_free(*p);
                    *p = NULL;
                }
            }
            pgw_simple(&c->out, '3');
            return 0;
        }
        if (kind == 'S') { /* Describe a statement: run it with NULL parameters for its columns */
            pgstmt_t **st = find_stmt(c, name, 0);
            if (!st) {
                send_error(c, "26000", "prepared statement does not exist");
                c->skip_to_sync = 1;
                return 0;
            }
            c->wdesc_n = (*st)->noid;
            for (size_t i = 0; i < c->wdesc_n; i++)
                c->wdesc_oids[i] = (*st)->oid[i] ? (*st)->oid[i] : PGW_TEXT;
            if (!returns_rows((*st)->text)) {
                /* INSERT, DELETE, SET...: described without running */
                pgw_param_desc(&c->out, c->wdesc_oids, c->wdesc_n);
                pgw_simple(&c->out, 'n');
                return 0;
            }
            char *nulls[PGW_MAX_PARAMS] = {0};
            c->wait = W_DESCRIBE_STMT;
            run(c, (*st)->text, strlen((*st)->text), nulls, c->wdesc_n);
            return 1;
        }
        pgportal_t **pp = find_portal(c, name, 0);
        if (!pp) {
            send_error(c, "34000", "portal does not exist");
            c->skip_to_sync = 1;
            return 0;
        }
        pgportal_t *p = *pp;
        if (p->done) {
            if (m->type == 'D')
                st_buf_append(&c->out, p->desc.data, p->desc.len);
            else
                send_rows(c, p, limit);
            return 0;
        }
        c->wait = m->type == 'D' ? W_DESCRIBE : W_EXECUTE;
        c->wp = p;
        c->wlimit = limit;
        run(c, p->text, strlen(p->text), p->params, p->nparams);
        return 1;
    }
    default:
        send_error(c, "08P01", "unsupported message type");
        metric_counter_inc(s->c_proto);
        c->skip_to_sync = 1;
        return 0;
    }
}

static void process(pgconn_t *c)
{
    size_t at = 0;
    c->in_process = 1;
    while (c->state != PG_CLOSED && !c->busy) {
        pgw_msg_t m;
        size_t used;
        int rc = pgw_next(c->in + at, c->inlen - at, c->state == PG_STARTUP, &m, &used);
        if (rc == ST_EAGAIN)
            break;
        if (rc) {
            metric_counter_inc(c->srv->c_proto);
            pgw_error(&c->out, "FATAL", rc == ST_ELIMIT ? "54000" : "08P01",
                      rc == ST_ELIMIT ? "message too long (max 1114112 bytes)"
                                      : "invalid message length",
                      0);
            flush_out(c);
            conn_close(c);
            break;
        }
        at += used;
        int h = handle(c, &m);
        if (h < 0) {
            flush_out(c);
            conn_close(c);
            break;
        }
        if (c->tls_fresh) { /* what came after SSLRequest is the TLS handshake */
            c->tls_fresh = 0;
            size_t rest = c->inlen - at;
            char *tmp = rest ? malloc(rest) : NULL;
            if (rest && !tmp) {
                conn_close(c);
                break;
            }
            if (rest)
                memcpy(tmp, c->in + at, rest);
            c->inlen = at;
            int bad = rest ? tls_in(c, tmp, rest) : 0;
            free(tmp);
            if (bad)
                break;
        }
    }
    c->in_process = 0;
    if (c->state == PG_CLOSED)
        return;
    if (at) {
        memmove(c->in, c->in + at, c->inlen - at);
        c->inlen -= at;
    }
    flush_out(c);
    if (c->inlen < PGW_MAX_MSG + ROUTER_PG_READ)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- server -------------------------------------------------------------- */

static void on_conn(uv_stream_t *ls, int status)
{
    router_pg_t *s = ls->data;
    if (status < 0 || s->closing)
        return;
    pgconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = s;
    uv_tcp_init(ls->loop, &c->tcp);
    c->tcp.data = c;
    c->handles = 1;
    st_buf_init(&c->out);
    if (net_accept(ls, &c->tcp, c->peer, sizeof c->peer)) {
        c->state = PG_CLOSED;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    c->pid = ++s->next_pid;
    c->key = (int32_t)(st_now_ms() ^ ((int64_t)c->pid << 20) ^ (int64_t)rand());
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    metric_counter_inc(s->c_conns);
    if (s->nconns > ROUTER_PG_MAX_CONNS) {
        metric_counter_inc(s->c_refused);
        pgw_error(&c->out, "FATAL", "53300", "sorry, too many clients already (max 1024)", 0);
        flush_out(c);
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void router_pg_set_tls(router_pg_t *s, tls_ctx_t *tls)
{
    s->tls = tls;
}

int router_pg_create(router_t *r, const char *host, int port, router_pg_t **out)
{
    router_pg_t *s = calloc(1, sizeof *s);
    if (!s)
        return ST_ENOMEM;
    s->r = r;
    s->next_pid = (int32_t)(getpid() & 0xffff) << 8;
    s->c_conns = metrics_counter(r->metrics, "strata_router_pg_connections_total",
                                 "PostgreSQL protocol connections accepted.", NULL);
    s->c_refused = metrics_counter(r->metrics, "strata_router_pg_refused_total",
                                   "PostgreSQL connections refused (too many clients, or plaintext "
                                   "while [security] tls_client_ca requires a certificate).",
                                   NULL);
    s->c_proto =
        metrics_counter(r->metrics, "strata_router_pg_protocol_errors_total",
                        "PostgreSQL messages refused (bad length, too long, unknown).", NULL);
    struct sockaddr_storage ss;
    int bound;
    s->c_authfail = metrics_counter(r->metrics, "strata_router_pg_auth_total",
                                    "PostgreSQL logins with a users file, by result.", "result",
                                    "failed", NULL);
    s->c_authok =
        metrics_counter(r->metrics, "strata_router_pg_auth_total",
                        "PostgreSQL logins with a users file, by result.", "result", "ok", NULL);
    s->c_delayed =
        metrics_counter(r->metrics, "strata_router_pg_auth_delayed_total",
                        "PostgreSQL failed logins answered late (per-address slowdown).", NULL);
    if (!s->c_conns || !s->c_refused || !s->c_proto || !s->c_authfail || !s->c_authok ||
        !s->c_delayed) {
        free(s);
        return ST_ENOMEM;
    }
    if (net_resolve(host, port, &ss)) {
        free(s);
        return ST_EINVAL;
    }
    uv_tcp_init(r->loop, &s->listener);
    s->listener.data = s;
    int rc = net_listen_tcp(&s->listener, &ss, on_conn, &bound);
    if (rc) {
        uv_close((uv_handle_t *)&s->listener, NULL); /* s leaks until exit: startup fails */
        return ST_EIO;
    }
    *out = s;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void router_pg_close(router_pg_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    while (s->conns)
        conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
