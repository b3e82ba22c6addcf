/*
 * httpc — a small blocking HTTP/1.1 client for the `strata` CLI.
 *
 * Two layers, kept apart so the first can be unit-tested without sockets:
 *
 *  1. Pure parsing (no I/O):
 *     - httpc_url_parse()   "http://host:port/prefix" -> host, port, path prefix
 *       (http_parser_parse_url() with the CLI's rules on top).
 *     - httpc_resp_feed()   an incremental HTTP/1.1 response parser: http-parser
 *       (HTTP_RESPONSE mode) with the CLI's limits on top. It takes bytes as
 *       they arrive (any split), hands body bytes to a callback (de-chunked),
 *       and says "need more bytes" (0), "message complete" (1) or an ST_E*
 *       error. Content-Length, Transfer-Encoding: chunked (sizes, extensions,
 *       trailers), read-until-close bodies, 1xx interim responses, and
 *       bodiless statuses (204, 304, responses to HEAD) are handled.
 *
 *  2. A connection (httpc_conn_t): one IPv4 TCP socket with keep-alive,
 *     TCP_NODELAY, a connect timeout and a per-read/write inactivity timeout;
 *     for https:// URLs a TLS session (OpenSSL over the same non-blocking
 *     socket, TLS 1.2+, the server certificate checked against url.cacert or
 *     the system's trust store, and its name against the URL's host).
 *     httpc_request() sends one request and streams the response body to a
 *     callback. A request on a reused keep-alive connection that fails before
 *     any response byte arrived (the server closed an idle connection) is
 *     retried once on a fresh connection; callers retry anything else.
 *
 * Not thread-safe per connection: one connection per thread.
 */
#ifndef HTTPC_H
#define HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include "st_buf.h"

/* ---- URLs ------------------------------------------------------------------------------ */

typedef struct httpc_url {
    char host[256];
    uint16_t port;
    char prefix[512];   /* path prefix without a trailing '/', "" for the root */
    bool tls;           /* https:// */
    const char *cacert; /* PEM file of CAs to trust for https (NULL: the system's), not owned */
} httpc_url_t;

/*
 * Parse "http[s]://HOST[:PORT][/PREFIX]" (also "HOST:PORT" without the
 * scheme: http). HOST is an IPv4 address or a name resolved to IPv4; PORT
 * defaults to 80 (443 for https). Returns 0 or ST_EINVAL (other schemes,
 * IPv6 literals, userinfo, bad port).
 */
int httpc_url_parse(const char *s, httpc_url_t *out /* OUT */);

/*
 * Percent-encode `s` for a query-string value into `b` (RFC 3986 unreserved
 * characters pass through). Returns 0 or ST_ENOMEM.
 */
int httpc_query_escape(st_buf_t *b, const char *s);

/* ---- response parser -------------------------------------------------------------------- */

#define HTTPC_MAX_HEAD (64 * 1024) /* status line + headers */

/* Receives de-chunked body bytes. Return 0 to go on, a negative ST_E* to abort. */
typedef int (*httpc_body_fn)(void *ud, const char *p, size_t n);

typedef struct httpc_resp {
    /* filled in once the head is parsed */
    int status;             /* 200, 204, ... */
    int minor;              /* HTTP/1.<minor> */
    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool keep_alive; /* the connection may be reused after this response */
    bool head_done;  /* status line and headers are parsed */
    bool done;       /* the whole message is parsed */
    char reason[64]; /* reason phrase, truncated */
    char content_type[128];
    char retry_after[32]; /* raw Retry-After value, "" if none */
    uint64_t body_bytes;  /* de-chunked body bytes delivered so far */
    /* internal: the parser and what its callbacks collect */
    struct httpc_resp_priv {
        http_parser parser;
        bool head_request;
        bool interim; /* the current head is a 1xx */
        bool in_value;
        int phase, next_phase; /* framing phase (httpc.c) and the one a callback switched to */
        uint64_t phase_bytes;  /* framing bytes consumed in this phase */
        size_t fed_body;       /* body bytes of the current execute step */
        int cb_rc;             /* the error a callback stopped the parser with */
        httpc_body_fn fn;
        void *ud;
        size_t reason_len, name_len, value_len;
        char name[32];
        char value[160];
    } priv;
} httpc_resp_t;

/* Reset for a new response; `head_request` = the request method was HEAD. */
void httpc_resp_init(httpc_resp_t *r, bool head_request);

/*
 * Feed bytes [buf, buf+len). Sets *consumed to the bytes used: all of them
 * until the message is complete, then none past its end (the caller keeps
 * the rest). Body bytes go to `fn` (may be NULL to discard).
 * Returns 1 when the message is complete (r->done), 0 when more bytes are
 * needed, or ST_EPROTO (malformed, or a chunk-size line over 1 KiB),
 * ST_ELIMIT (head or trailer over HTTPC_MAX_HEAD), or what `fn` returned.
 */
int httpc_resp_feed(httpc_resp_t *r, const char *buf, size_t len, size_t *consumed /* OUT */,
                    httpc_body_fn fn, void *ud);

/*
 * The peer closed the connection. Returns 1 if that completes the message
 * (a read-until-close body), otherwise ST_ECLOSED (truncated response).
 */
int httpc_resp_eof(httpc_resp_t *r);

/* httpc_body_fn that appends to the st_buf_t in `ud`, bounded to 256 MiB. */
int httpc_collect(void *ud, const char *p, size_t n);

/* ---- connections ------------------------------------------------------------------------ */

typedef struct httpc_conn httpc_conn_t;

/* No I/O happens here: the socket is opened by the first request. */
httpc_conn_t *httpc_conn_create(const httpc_url_t *url, int connect_timeout_ms, int io_timeout_ms);
void httpc_conn_destroy(httpc_conn_t *c);
/* Close the socket (the next request reconnects). */
void httpc_conn_close(httpc_conn_t *c);

/* The last system-level error as a sentence ("connection refused"), "" if none. */
const char *httpc_conn_errmsg(const httpc_conn_t *c);

/* Send "Authorization: value" on every request from now on (NULL: none);
 * value must stay valid (cli_auth.c sets it from --token / --user). */
void httpc_set_authorization(const char *value);

/*
 * Send `method target` (target = path + query, appended to the URL prefix),
 * `extra_headers` ("Name: value\r\n..." or NULL) and `body` (may be NULL).
 * On return 0 `resp` holds the status and headers and the body went to `fn`.
 * Errors: ST_EUNAVAIL (cannot connect), ST_ETIMEDOUT, ST_EIO, ST_ECLOSED,
 * ST_EPROTO, or what `fn` returned; httpc_conn_errmsg() says more.
 */
int httpc_request(httpc_conn_t *c, const char *method, const char *target,
                  const char *extra_headers, const void *body, size_t body_len,
                  httpc_resp_t *resp /* OUT */, httpc_body_fn fn, void *ud);

/* Monotonic clock in seconds. */
double httpc_now(void);

#endif
