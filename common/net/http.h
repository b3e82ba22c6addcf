/*
 * http — an HTTP/1.1 server on libuv (http-parser for the wire format),
 * used by strata-router (port 8086) and strata-node's HTTP port.
 *
 * Two layers, two files:
 *   - http_rx_* (http_parse.c): the request receiver, a pure state machine
 *     that turns bytes into complete requests (with every limit applied)
 *     and knows nothing of sockets; the fuzz target and unit tests drive it
 *     directly.
 *   - http_server_* and http_respond* (http.c): the libuv glue (accept,
 *     read, timers, writes, keep-alive, pipelining, backpressure) around
 *     one http_rx per connection, calling a handler once per complete
 *     request.
 *
 * Request lifetime: the handler is called with a request it owns until it
 * answers with http_respond*() (now or later, from the loop thread). The
 * final call (http_respond, http_respond_headers, http_respond_end) always
 * releases the request, whatever it returns; if the client went away in the
 * meantime it returns ST_ECLOSED. Requests are answered in order: while one
 * is being handled, later pipelined bytes wait in a buffer.
 *
 * Threads: everything runs on the loop thread, including http_respond*().
 * Another thread that finishes work hands the result to the loop (uv_async)
 * and responds from there.
 *
 * Errors the server answers by itself (JSON body, then close): 400
 * malformed request, 413 body over max_body_bytes (decided on
 * Content-Length before reading the body; chunked bodies as they arrive),
 * 414 URL too long, 431 headers too large, 505 an HTTP version other than
 * 1.0/1.1. Timeouts close without a response.
 *
 * Bounds on every connection: the head must arrive within header_timeout,
 * the whole request (head and body) within request_timeout of its first
 * byte, with no gap longer than body_timeout inside the body; an idle
 * keep-alive connection closes after keepalive_timeout. Request bodies
 * buffered by the server (being read, or held by a request the handler has
 * not answered yet) count against max_inflight_bytes: a request whose body
 * would go over it is answered 503 with Retry-After and its connection is
 * closed (the body is not read: reading it would spend the very memory the
 * limit protects, and a client that retries later has lost nothing); 413
 * when its body alone is over the limit, since no retry could pass. Each
 * connection the server cuts is counted by reason (http_server_metrics).
 */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "http_util.h"
#include "metrics.h"
#include "tls.h"

/* ---- limits ------------------------------------------------------------- */

typedef struct http_limits {
    size_t max_header_bytes;       /* request line + headers (16 KiB) */
    size_t max_url_bytes;          /* request target (8 KiB) */
    size_t max_headers;            /* header count (100) */
    size_t max_body_bytes;         /* body (32 MiB) */
    uint32_t header_timeout_ms;    /* whole head must arrive within (10 s) */
    uint32_t body_timeout_ms;      /* body idle: no byte for this long (30 s) */
    uint32_t request_timeout_ms;   /* whole request, head + body, from its first byte (60 s) */
    uint32_t keepalive_timeout_ms; /* idle between requests (60 s) */
    uint32_t write_timeout_ms;     /* queued response bytes make no progress (60 s) */
    uint32_t max_connections;      /* more are accepted and closed (4096) */
    size_t write_high_water;       /* streaming: pause above this many queued bytes (1 MiB) */
    size_t max_inflight_bytes;     /* request bodies buffered by the whole server (2 GiB) */
} http_limits_t;

/* Fill *lim with the defaults above. A zero field given to the server or
 * receiver also means "default". */
void http_limits_default(http_limits_t *lim);

/* ---- requests ----------------------------------------------------------- */

enum {
    HTTP_METHOD_OTHER = 0, /* see method_name */
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_POST,
    HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE,
    HTTP_METHOD_OPTIONS,
    HTTP_METHOD_PATCH,
};

/* A complete request. Everything is read-only for the handler except
 * `data`; the strings are NUL-terminated. */
typedef struct http_req {
    int method;              /* HTTP_METHOD_* */
    const char *method_name; /* "GET", "PROPFIND", ... */
    const char *url;         /* raw request target */
    const char *path;        /* percent-decoded path, no query ("*" for OPTIONS *) */
    const char *query;       /* raw query without '?', "" if none */
    http_params_t params;    /* decoded query parameters, in order */
    const http_header_t *headers;
    size_t nheaders;
    const uint8_t *body; /* complete body, NUL-terminated (not counted) */
    size_t body_len;
    int http_major, http_minor;
    int keep_alive;     /* the connection stays open after the response */
    const char *remote; /* "ip:port" of the client, "" if unknown */
    void *data;         /* free for the handler */
} http_req_t;

/* Header value by name (case-insensitive), or NULL. */
const char *http_req_header(const http_req_t *req, const char *name);
/* First query parameter value by name, or NULL. */
const char *http_req_param(const http_req_t *req, const char *name);
/*
 * Every parameter of a request, read one way by every read endpoint: for a
 * POST whose Content-Type is application/x-www-form-urlencoded, the form
 * body's pairs first, then the query string's. So a single-valued key given
 * in both takes the body's value (http_params_get returns the first), and a
 * repeated key such as match[] keeps the values of both (Prometheus reads
 * its r.Form the same way). out is initialised here; the caller deinits it
 * whatever the result. Returns 0, ST_EPARSE (a bad percent escape in the
 * body) or ST_ENOMEM.
 */
int http_req_params_all(const http_req_t *req, http_params_t *out);
/*
 * Decode the body per Content-Encoding: gzip is inflated in place (the body
 * then points to the inflated bytes, at most max_out of them); identity or
 * no header: nothing to do. Returns 0, ST_ELIMIT (-> 413), ST_ECORRUPT
 * (-> 400), ST_EPROTO for an unsupported encoding (-> 415), ST_ENOMEM.
 */
int http_req_decode_body(http_req_t *req, size_t max_out);
/*
 * Free the body once the handler has what it needs from it (e.g. parsed
 * it): body becomes "" (length 0) and its bytes stop counting against
 * max_inflight_bytes. Loop thread only; nothing may point into the old
 * body afterwards.
 */
void http_req_drop_body(http_req_t *req);

/*
 * An in-process request: another door of the same process (the router's
 * RESP listener) reuses the HTTP handlers without a socket. The request is
 * built from method, target (path and query), content type and body like a
 * received one (same parser, same limits), handed to the caller in *out for
 * its handler, and its response goes to sink instead of a connection: the
 * response's extra headers once (a stream's when it starts, with no data;
 * else with the final call), once per http_respond_chunk() with final 0,
 * and once with final 1 (the whole body of http_respond*(), or nothing
 * after a stream). After the final call
 * the request is gone. A sink returning nonzero stops a stream (the handler
 * sees ST_ECLOSED). Returns 0, ST_EPARSE (target or type not valid in a
 * request), ST_ELIMIT (over lim) or ST_ENOMEM.
 */
typedef int (*http_sink_fn)(void *arg, int status, const char *content_type,
                            const http_header_t *hdrs, size_t nhdrs, const void *data, size_t len,
                            int final);
int http_req_local(const http_limits_t *lim, const char *method, const char *target,
                   const char *content_type, const void *body, size_t len, http_sink_fn sink,
                   void *arg, http_req_t **out);
/* The same on behalf of a client of that door: authorization (NULL: none)
 * becomes the request's Authorization header (the auth gate checks it as
 * on a socket; CR or LF in it: ST_EPARSE), remote (NULL: "local") its
 * client address. */
int http_req_local_as(const http_limits_t *lim, const char *method, const char *target,
                      const char *content_type, const char *authorization, const char *remote,
                      const void *body, size_t len, http_sink_fn sink, void *arg, http_req_t **out);

/* ---- responses ---------------------------------------------------------- */

/*
 * Send a complete response (body copied) and release req. content_type may
 * be NULL (no Content-Type). Content-Length is always sent; for HEAD
 * requests the body is not. Returns 0, ST_ECLOSED (client gone; req
 * released anyway), ST_EINVAL (status outside 100..999 or a response was
 * already started), ST_ENOMEM.
 */
int http_respond(http_req_t *req, int status, const char *content_type, const void *body,
                 size_t len);
/* Same with extra headers (names and values must not hold CR or LF:
 * ST_EINVAL, and req is still released). */
int http_respond_headers(http_req_t *req, int status, const char *content_type,
                         const http_header_t *extra, size_t nextra, const void *body, size_t len);
/* A JSON error: {"status":"error","error":"<msg>"} with status. */
int http_respond_error(http_req_t *req, int status, const char *msg);
/* GET /metrics: m rendered in the Prometheus text format (500 if it cannot be). */
int http_respond_metrics(http_req_t *req, metrics_t *m);

/*
 * Streaming: http_respond_start sends the head with Transfer-Encoding:
 * chunked (HTTP/1.0 clients: no length, the connection closes at the end),
 * then http_respond_chunk queues each piece (copied; len 0 is a no-op) and
 * http_respond_end finishes and releases req.
 *
 * http_respond_chunk returns 0, or 1 when more than write_high_water bytes
 * are queued: the data was accepted, but the producer should pause until
 * its notify callback reports HTTP_NOTIFY_DRAIN. ST_ECLOSED: the client is
 * gone, stop producing and call http_respond_end (returns ST_ECLOSED).
 */
int http_respond_start(http_req_t *req, int status, const char *content_type);
/* Same with extra headers (as http_respond_headers). */
int http_respond_start_headers(http_req_t *req, int status, const char *content_type,
                               const http_header_t *extra, size_t nextra);
/* (http_respond_start: 0, or an error after which req is already released
 * like http_respond: ST_ECLOSED (client gone), ST_EINVAL (bad status or
 * content type: a 500 was sent instead; or a second start: closed).) */
int http_respond_chunk(http_req_t *req, const void *data, size_t len);
int http_respond_end(http_req_t *req);

enum { HTTP_NOTIFY_DRAIN = 0 }; /* or ST_ECLOSED */
/*
 * Register fn to hear about req while the handler owns it: HTTP_NOTIFY_DRAIN
 * when the queued bytes of a streaming response fall to half the high-water
 * mark after http_respond_chunk returned 1; ST_ECLOSED once, when the
 * connection closes before the response is complete (fn may call
 * http_respond_end/http_respond from inside). Replaces any earlier fn.
 */
typedef void (*http_notify_fn)(http_req_t *req, int event, void *arg);
void http_req_notify(http_req_t *req, http_notify_fn fn, void *arg);

/* ---- server ------------------------------------------------------------- */

typedef struct http_server http_server_t;

/* Called on the loop thread once per complete request. */
typedef void (*http_handler_fn)(http_req_t *req, void *arg);

/*
 * Bind host:port (numeric IPv4/IPv6 or a name resolved once, blocking, at
 * startup; port 0 picks a free port, see http_server_port) and listen.
 * lim may be NULL (defaults). Returns 0, ST_EINVAL (bad host), ST_EBUSY
 * (address in use), ST_EIO (other bind/listen errors), ST_ENOMEM. After a
 * bind/listen failure the half-made handles close on the next uv_run of
 * the loop (libuv needs it), so run the loop before uv_loop_close.
 */
int http_server_create(uv_loop_t *loop, const char *host, int port, const http_limits_t *lim,
                       http_handler_fn handler, void *arg, http_server_t **out);
/* Serve HTTPS: connections accepted from now on speak TLS with tls (a
 * server-side context, not owned; it must outlive the server; reload it
 * with tls_ctx_reload). NULL: plaintext again. */
void http_server_set_tls(http_server_t *srv, tls_ctx_t *tls);
/* The bound port. */
int http_server_port(const http_server_t *srv);
/*
 * Register the server's metrics in reg with the label server="<name>":
 * strata_http_requests_total, strata_http_responses_total{code="2xx"...},
 * strata_http_bad_requests_total, strata_http_body_too_large_total,
 * strata_http_timeouts_total, strata_http_rejected_connections_total,
 * strata_http_open_connections, strata_http_request_duration_seconds,
 * strata_http_connections_closed_total{reason=...} (one per
 * http_close_reason_t: header_timeout, body_timeout, write_timeout, idle,
 * inflight) and strata_http_inflight_bytes (request bytes buffered now).
 * reg must outlive the server. Returns 0 or ST_ENOMEM/ST_EINVAL.
 */
int http_server_metrics(http_server_t *srv, metrics_t *reg, const char *name);

/* Why the server closed a connection by itself (not the client, not an
 * error answer of the receiver). */
typedef enum http_close_reason {
    HTTP_CLOSE_HEADER_TIMEOUT = 0, /* the head did not arrive in time */
    HTTP_CLOSE_BODY_TIMEOUT,       /* the body stalled or the whole request took too long */
    HTTP_CLOSE_WRITE_TIMEOUT,      /* the client did not read the response */
    HTTP_CLOSE_IDLE,               /* keep-alive connection idle too long */
    HTTP_CLOSE_INFLIGHT,           /* 503: the body would go over max_inflight_bytes */
    HTTP_CLOSE_NREASONS
} http_close_reason_t;
/* The metric label value of r ("body_timeout", ...). */
const char *http_close_reason_name(http_close_reason_t r);

/* Counters kept by the server itself (loop thread). */
typedef struct http_stats {
    uint64_t requests;
    uint64_t responses[6]; /* [1..5] by status class, [0] other */
    uint64_t bad_requests; /* 400/414/431 sent by the server */
    uint64_t too_large;    /* 413 sent by the server */
    uint64_t timeouts;
    uint64_t rejected; /* connections over max_connections */
    uint64_t open_connections;
    uint64_t closed[HTTP_CLOSE_NREASONS]; /* connections cut by the server, by reason */
    uint64_t inflight_bytes;              /* request body bytes buffered now */
} http_stats_t;
void http_server_stats(const http_server_t *srv, http_stats_t *out);

/*
 * Stop listening and close: idle and half-read connections now, connections
 * with a request in flight after their response (sent with Connection:
 * close) or after grace_ms, whichever comes first (then a pending handler
 * gets ST_ECLOSED). cb(arg) runs once every handle is closed; the server is
 * freed before cb. Call at most once.
 */
void http_server_close(http_server_t *srv, uint32_t grace_ms, void (*cb)(void *arg), void *arg);

/* ---- request receiver (no sockets) -------------------------------------- */

typedef struct http_rx http_rx_t;

typedef enum http_rx_event {
    HTTP_RX_MORE = 0,    /* all input consumed, need more bytes */
    HTTP_RX_HEAD = 1,    /* request line and headers complete (body may follow) */
    HTTP_RX_REQUEST = 2, /* a request is complete: take it with http_rx_take */
    HTTP_RX_ERROR = 3,   /* malformed or over a limit: see http_rx_error; rx is dead */
} http_rx_event_t;

typedef enum http_rx_phase {
    HTTP_RX_IDLE = 0, /* no byte of the next request seen yet */
    HTTP_RX_IN_HEAD,
    HTTP_RX_IN_BODY,
} http_rx_phase_t;

int http_rx_create(const http_limits_t *lim, http_rx_t **out);
void http_rx_destroy(http_rx_t *rx);
/*
 * Feed bytes. Stops after each event and sets *used to the bytes consumed;
 * feed the rest (data + *used) again after handling the event. After
 * HTTP_RX_REQUEST call http_rx_take before feeding more.
 */
http_rx_event_t http_rx_feed(http_rx_t *rx, const char *data, size_t len, size_t *used);
/* After HTTP_RX_REQUEST: the request, owned by the caller from now on
 * (release with http_req_destroy unless it goes to a server handler). */
http_req_t *http_rx_take(http_rx_t *rx);
/* Free a request that never reached a server connection. */
void http_req_destroy(http_req_t *req);
/* After HTTP_RX_ERROR: the status to send (400, 413, 414, 431; 503 when
 * out of memory) and a static reason. */
int http_rx_error(const http_rx_t *rx, const char **reason);
http_rx_phase_t http_rx_phase(const http_rx_t *rx);
/* After HTTP_RX_HEAD: 1 if the client sent "Expect: 100-continue" and a
 * body is expected. */
int http_rx_expect_continue(const http_rx_t *rx);

#endif
