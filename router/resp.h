/*
 * resp — the RESP wire format of the router's Redis door: a request parser
 * (RESP multibulk arrays and inline commands, as clients and redis-cli send
 * them) and a reply writer for RESP2 and RESP3 shapes.
 *
 * Why its own module: the parser is the door's external input, so it is
 * pure (no sockets), bounded and fuzzed (tests/fuzz/fuzz_resp.c); the libuv
 * glue (router_resp.c) only feeds it bytes.
 *
 * How: resp_parse() looks at the buffered bytes and either finds one whole
 * command (its arguments point into the buffer; nothing is copied), says it
 * needs more bytes, or names a protocol error (the connection is answered
 * "-ERR Protocol error: ..." and closed, like Redis). Every count and length
 * is checked against resp_limits_t before anything is trusted. The writer
 * appends replies to an st_buf_t; the protocol version (2 or 3, HELLO)
 * decides the shapes of maps, nulls, doubles and sets.
 */
#ifndef RESP_H
#define RESP_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"

/* Bounds on one command (the door's limits, see docs/resp.md). */
#define RESP_MAX_ARGS 100000         /* arguments in one command (TS.MADD: 33333 samples) */
#define RESP_MAX_BULK (1u << 20)     /* bytes of one argument */
#define RESP_MAX_INLINE (64u << 10)  /* bytes of one inline command line */
#define RESP_MAX_COMMAND (64u << 20) /* bytes of one whole command */

typedef struct resp_arg {
    const char *p;
    size_t len;
} resp_arg_t;

enum {
    RESP_MORE = 0,  /* need more bytes */
    RESP_CMD = 1,   /* a command: *used bytes, argv/argc */
    RESP_ERROR = 2, /* protocol error: msg; close after replying */
};

/*
 * Parse one command from buf[0..len). argv has room for RESP_MAX_ARGS
 * entries (or cap, when smaller: more arguments are a protocol error).
 * Inline commands split on spaces and tabs, with "double" or 'single'
 * quoted arguments taken verbatim (no escapes); an empty line is skipped
 * (RESP_CMD with argc 0). Returns RESP_MORE, RESP_CMD (*used, *argc set) or
 * RESP_ERROR (*msg a static reason).
 */
int resp_parse(const char *buf, size_t len, resp_arg_t *argv, size_t cap, size_t *argc,
               size_t *used, const char **msg);

/* ---- replies ---------------------------------------------------------- */

/* Each appends one reply (or a header) to b for protocol proto (2 or 3)
 * and returns 0 or ST_ENOMEM. */
int resp_simple(st_buf_t *b, const char *s);
int resp_error(st_buf_t *b, const char *msg); /* "-" msg; CR/LF in msg become spaces */
int resp_errorf(st_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int resp_int(st_buf_t *b, int64_t v);
int resp_bulk(st_buf_t *b, const void *p, size_t len);
int resp_bulk_str(st_buf_t *b, const char *s);
int resp_null(st_buf_t *b, int proto);
int resp_array(st_buf_t *b, size_t n);
int resp_null_array(st_buf_t *b, int proto);    /* RESP2 *-1, RESP3 _ */
int resp_map(st_buf_t *b, int proto, size_t n); /* n pairs: %n, or *2n in RESP2 */
int resp_set(st_buf_t *b, int proto, size_t n); /* ~n, or *n in RESP2 */
/* A sample value as valkey-timeseries sends it: RESP3 double ",v"; RESP2 a
 * simple string. Digits: the shortest that read back as v, no exponent. */
int resp_double(st_buf_t *b, int proto, double v);
/* A double spelled as a bulk string (TS.INFO fields, ...). */
int resp_double_bulk(st_buf_t *b, double v);

/* Case-insensitive equality of an argument and a NUL-terminated word. */
int resp_arg_is(const resp_arg_t *a, const char *word);

#endif
