/*
 * http_parse — what the HTTP request parser (http_parse.c) and the libuv
 * server (http.c) share inside common/net, and nobody else uses: the full
 * layout of a request (the public http_req_t plus the strings it points
 * into and the server's per-response state) and of the receiver, so the
 * server can embed a receiver in each connection and keep its state on the
 * request it dispatched. Everything callable is declared in http.h.
 */
#ifndef HTTP_PARSE_H
#define HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include "http.h"
#include "st_buf.h"

struct conn; /* http.c's connection */

/* A request: the public part first (http_req_t * <-> req_priv_t *). The
 * receiver fills everything up to `remote`; the rest is the server's. */
typedef struct req_priv {
    http_req_t pub;
    struct conn *conn; /* NULL when not (or no longer) on a connection */
    st_buf_t strs;     /* url NUL, then name NUL value NUL ... */
    size_t url_len;
    size_t *hoff; /* name/value offsets into strs, 2 per header */
    size_t nh, hcap;
    http_header_t *hdrs;
    char *pathq; /* decoded path NUL raw query NUL */
    st_buf_t body;
    uint64_t expect_len; /* Content-Length, or 0 */
    char remote[64];
    int streaming; /* http_respond_start was called */
    int chunked;   /* streaming with chunked encoding */
    int head_only; /* HEAD: no body bytes on the wire */
    int status;
    int drain_wanted;
    uint64_t t_start; /* uv_hrtime at dispatch */
    http_notify_fn notify;
    void *notify_arg;
    uint64_t *inflight; /* the server's buffered-bytes count this request adds to */
    uint64_t inflight_bytes;
    http_sink_fn sink; /* an in-process request (http_req_local): its response goes here */
    void *sink_arg;
    char *sink_ctype; /* a stream's content type */
    int sink_stopped; /* the sink refused a chunk */
} req_priv_t;

static inline req_priv_t *http_req_priv(http_req_t *req)
{
    return (req_priv_t *)req;
}

enum { LAST_NONE, LAST_FIELD, LAST_VALUE };

struct http_rx {
    http_parser p;
    http_limits_t lim;
    req_priv_t *req; /* being parsed, or complete and not yet taken */
    size_t head_bytes;
    http_rx_phase_t phase;
    int last;
    int ev;
    int ready; /* req complete, waiting for http_rx_take */
    int dead;
    int err_status;
    const char *err_reason; /* static text, or err_buf */
    char err_buf[160];
    int expect_continue;
};

/* Copy src (NULL: all defaults) into dst, zero fields taking the default. */
void http_limits_fill(http_limits_t *dst, const http_limits_t *src);
/* Set up / tear down a receiver embedded in a larger struct. */
void http_rx_init(http_rx_t *rx, const http_limits_t *lim);
void http_rx_deinit(http_rx_t *rx);
/* Bytes the request being received holds or announced for its body (the
 * larger of Content-Length and the buffer): what the server counts
 * against max_inflight_bytes. 0 outside a body. */
size_t http_rx_body_bytes(const http_rx_t *rx);
/* While a body with a Content-Length is being received: the free rest of
 * its buffer (sized to the whole announced body on the first call), so
 * the next read can land there and be fed without a copy (on_body sees
 * the bytes already in place). 0 and nothing set otherwise (no body, a
 * chunked one, or out of memory: reads go through the usual buffer). */
int http_rx_body_window(http_rx_t *rx, char **p, size_t *n);

#endif
