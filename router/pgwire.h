/*
 * pgwire — the PostgreSQL frontend/backend protocol v3 as bytes: a decoder
 * of what clients send (startup packets, then typed messages) that works on
 * a buffer and returns complete / ST_EAGAIN / error in bounded memory, the
 * parsers of each message's body, and encoders of the backend messages
 * into a growable buffer. No sockets (router_pg.c moves the bytes), no SQL
 * (router_pg.c maps results to rows).
 *
 * Framing: a startup-phase packet is int32 length (itself included) +
 * int32 code + body; every later message is a type byte + int32 length
 * (itself included) + body. Integers are big-endian. A message longer than
 * PGW_MAX_MSG is refused (ST_ELIMIT) before it is buffered.
 */
#ifndef PGWIRE_H
#define PGWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"

#define PGW_MAX_MSG ((1u << 20) + 65536) /* bytes of one client message */
#define PGW_MAX_PARAMS 64                /* $n parameters of a statement */
#define PGW_MAX_STARTUP_PARAMS 64

#define PGW_PROTO_V3 196608u      /* 3.0 */
#define PGW_SSL_REQUEST 80877103u /* 1234.5679 */
#define PGW_CANCEL_REQUEST 80877102u
#define PGW_GSSENC_REQUEST 80877104u

/* type OIDs */
#define PGW_BOOL 16
#define PGW_INT8 20
#define PGW_TEXT 25
#define PGW_FLOAT8 701
#define PGW_TIMESTAMPTZ 1184
#define PGW_INTERVAL 1186
#define PGW_UNKNOWN 705

typedef struct pgw_msg {
    uint8_t type;        /* 0: a startup-phase packet (code set) */
    uint32_t code;       /* startup: PGW_PROTO_V3, PGW_SSL_REQUEST, ... */
    const uint8_t *body; /* inside the caller's buffer */
    size_t len;
} pgw_msg_t;

/* One message at buf[0..len): 0 with *m and *used, ST_EAGAIN (need more
 * bytes), ST_ELIMIT (over PGW_MAX_MSG) or ST_EPROTO (a bad length). */
int pgw_next(const uint8_t *buf, size_t len, int startup, pgw_msg_t *m, size_t *used);

/* A cursor over a message body; every getter fails (returns ST_EPROTO) past
 * the end, once and for all. */
typedef struct pgw_rd {
    const uint8_t *p;
    size_t len, at;
    int bad;
} pgw_rd_t;
void pgw_rd_init(pgw_rd_t *r, const pgw_msg_t *m);
int pgw_get_u8(pgw_rd_t *r, uint8_t *v);
int pgw_get_i16(pgw_rd_t *r, int16_t *v);
int pgw_get_i32(pgw_rd_t *r, int32_t *v);
/* A NUL-terminated string (points into the body). */
int pgw_get_str(pgw_rd_t *r, const char **s, size_t *n);
int pgw_get_bytes(pgw_rd_t *r, size_t n, const uint8_t **p);

/* Startup parameters (user, database, application_name, options...). */
typedef struct pgw_startup {
    const char *key[PGW_MAX_STARTUP_PARAMS], *val[PGW_MAX_STARTUP_PARAMS];
    size_t n;
} pgw_startup_t;
int pgw_parse_startup(const pgw_msg_t *m, pgw_startup_t *s);

/* Bind: portal, statement, parameter formats and values, result formats. */
typedef struct pgw_bind {
    const char *portal, *stmt;
    int16_t pfmt[PGW_MAX_PARAMS];
    size_t npfmt;
    const uint8_t *pval[PGW_MAX_PARAMS]; /* NULL: SQL NULL */
    int32_t plen[PGW_MAX_PARAMS];
    size_t nparams;
    int16_t rfmt[256];
    size_t nrfmt;
} pgw_bind_t;
int pgw_parse_bind(const pgw_msg_t *m, pgw_bind_t *b);

/* Parse: statement name, query text, parameter type OIDs. */
typedef struct pgw_parse {
    const char *name, *query;
    size_t qlen;
    uint32_t oid[PGW_MAX_PARAMS];
    size_t noid;
} pgw_parse_t;
int pgw_parse_parse(const pgw_msg_t *m, pgw_parse_t *p);

/* ---- backend messages --------------------------------------------------- */

/* Start a message of type t; pgw_end patches its length. */
size_t pgw_begin(st_buf_t *b, uint8_t t);
int pgw_end(st_buf_t *b, size_t at);
/* Write v big-endian over the 4 bytes at offset at (a length put in front
 * of what followed it). */
int pgw_patch_i32(st_buf_t *b, size_t at, uint32_t v);
int pgw_put_i16(st_buf_t *b, int16_t v);
int pgw_put_i32(st_buf_t *b, int32_t v);
int pgw_put_i64(st_buf_t *b, int64_t v);
int pgw_put_str(st_buf_t *b, const char *s); /* with its NUL */

int pgw_auth_ok(st_buf_t *b);
int pgw_param_status(st_buf_t *b, const char *k, const char *v);
int pgw_backend_key(st_buf_t *b, int32_t pid, int32_t key);
int pgw_ready(st_buf_t *b, char status);   /* 'I' idle, 'T' in a block, 'E' failed block */
int pgw_simple(st_buf_t *b, uint8_t type); /* '1' ParseComplete, '2' BindComplete,
                                            * '3' CloseComplete, 'n' NoData, 'I' Empty,
                                            * 's' PortalSuspended */
int pgw_command_complete(st_buf_t *b, const char *tag);
/* ErrorResponse: severity ERROR/FATAL, SQLSTATE, message, position (0: none). */
int pgw_error(st_buf_t *b, const char *severity, const char *code, const char *msg,
              size_t position);
int pgw_notice(st_buf_t *b, const char *msg);

/* RowDescription: n columns, each name, type oid, type length, format. */
typedef struct pgw_col {
    const char *name;
    uint32_t oid;
    int16_t typlen;
    int16_t format;
} pgw_col_t;
int pgw_row_desc(st_buf_t *b, const pgw_col_t *c, size_t n);
int pgw_param_desc(st_buf_t *b, const uint32_t *oid, size_t n);

#endif
