/*
 * http — the HTTP/1.1 server's libuv glue (see http.h): accept, read,
 * write, timers, keep-alive, pipelining, backpressure and close, around one
 * request parser (http_parse.c) per connection. Listening sockets come from
 * net_listen.c.
 *
 * TLS (http_server_set_tls): a connection gets a tls_conn_t at accept;
 * on_read feeds it the ciphertext and the plaintext it yields takes the
 * plain path (conn_rx), and conn_write3 encrypts before it queues. The
 * handshake's own bytes go out the same way (conn_tls_flush). A client
 * that speaks plain HTTP to the TLS port gets a plaintext 400 saying so.
 * The handshake has the header timeout (it is the time to the first
 * request); a timeout before it completed is counted as a TLS failure.
 *
 * Connection (conn_t) states, with the function behind each transition:
 *
 *    accept ──> READING ──conn_feed: HTTP_RX_REQUEST──> HANDLING
 *                 ^   │                                   │ http_respond / _end
 *                 │   └─conn_feed: HTTP_RX_ERROR─┐        v (finish_response)
 *                 │                              │     FLUSHING (writes in flight)
 *                 └──── conn_resume (keep-alive) ┼───────┘ on_write, nwrites == 0
 *                                                v
 *                  LINGERING (conn_linger: shutdown, read and discard, timer)
 *                                                │
 *                 timeouts, errors, EOF ────> CLOSING (conn_close: uv_close x2)
 *                                                │ on_close (both handles)
 *                                                v
 *                                              freed
 *
 * Invariants:
 *   1. Bytes are fed to the receiver only when no request is in the
 *      handler's hands and no response is in flight (conn_can_feed), so
 *      pipelined requests are answered in order; bytes read meanwhile wait
 *      in c->pend (reading stops when it exceeds pend_cap).
 *   2. A request is owned by the handler from dispatch to its final
 *      http_respond*(). If the connection closes first, conn_close detaches
 *      it (req->conn = NULL) and the final call frees it, returning
 *      ST_ECLOSED. The notify callback runs only from loop callbacks, never
 *      from inside an http_respond*() call.
 *   3. A conn is freed only in its close callback, so a conn pointer stays
 *      valid for the whole of any callback that uses it.
 *   4. One timer per connection; conn_arm() derives its deadline from the
 *      state (head, body, write, keep-alive, linger).
 *
 * Reads land in one buffer per server (a second one is malloc'ed while it
 * is busy), except while a plain (not TLS) connection with nothing pending
 * receives a body of known length: then on_alloc hands libuv the free rest
 * of that body's own buffer (http_rx_body_window) and the parser finds the
 * bytes already in place, so a large write is not copied on its way in.
 */
#include "http.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "http_parse.h"
#include "net_listen.h"
#include "st_err.h"
#include "st_list.h"
#include "st_text.h"
#include "tls.h"

typedef struct conn conn_t;

static req_priv_t *priv(http_req_t *req)
{
    return http_req_priv(req);
}

/* ---- server and connections --------------------------------------------- */

enum { T_NONE, T_HEAD, T_BODY, T_WRITE, T_IDLE, T_LINGER };

#define LINGER_MS 2000
#define READ_BUF 65536

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    http_server_t *srv;
    conn_t *prev, *next;
    http_rx_t rx;
    req_priv_t *cur; /* request in the handler's hands (or streaming) */
    st_buf_t pend;   /* bytes read but not yet fed */
    char *direct;    /* the read buffer on_alloc gave is the body's (not to free) */
    size_t pend_off;
    size_t wq;       /* bytes in uv_write requests not yet completed */
    int nwrites;     /* uv_write requests in flight */
    int flushing;    /* a final response is queued: resume when nwrites == 0 */
    int close_after; /* close (linger) once flushed */
    int closing;     /* no more requests or responses (lingering or closing) */
    int uv_closing;  /* uv_close called */
    int handles;     /* open uv handles (tcp, timer) */
    int reading;
    int peer_eof;
    int tkind;
    uint64_t nreq;
    uint64_t acct; /* body bytes of the request being received, in st.inflight_bytes */
    uint64_t accepted, head_start, body_progress, write_progress, idle_since, deadline;
    tls_conn_t *tls; /* NULL: plaintext */
    char remote[64];
};

typedef struct wreq {
    uv_write_t w;
    conn_t *c;
    size_t len;
    char data[];
} wreq_t;

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t grace;
    http_limits_t lim;
    size_t pend_cap;
    http_handler_fn handler;
    void *arg;
    int port;
    conn_t *conns;
    size_t nconns;
    int closing;
    int listener_open, grace_open, grace_started;
    void (*close_cb)(void *);
    void *close_arg;
    http_stats_t st;
    struct {
        metric_counter_t *req, *resp[6], *bad, *big, *tmo, *rej, *closed[HTTP_CLOSE_NREASONS];
        metric_gauge_t *open, *inflight;
        metric_hist_t *dur;
    } m;
    tls_ctx_t *tls;  /* not owned; NULL: plaintext listener */
    st_buf_t tplain; /* plaintext of the read being handled (TLS), shared: reads
                        are handled one at a time and conn_rx copies what it keeps */
    int rbuf_busy;
    char rbuf[READ_BUF];
};

static void conn_close(conn_t *c, int notify);
static void conn_arm(conn_t *c);
static void on_timer(uv_timer_t *t);
static void conn_resume(conn_t *c);
static void srv_maybe_done(http_server_t *srv);
static int conn_tls_flush(conn_t *c);

static uint64_t now_ms(conn_t *c)
{
    return uv_now(c->srv->loop);
}

static int conn_can_feed(const conn_t *c)
{
    return !c->closing && !c->cur && !c->flushing && !c->close_after;
}

static void count_response(http_server_t *srv, int status)
{
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 0;
    srv->st.responses[cls]++;
    metric_counter_inc(srv->m.resp[cls]);
}

static const char *const close_reason_names[HTTP_CLOSE_NREASONS] = {
    "header_timeout", "body_timeout", "write_timeout", "idle", "inflight"};

const char *http_close_reason_name(http_close_reason_t r)
{
    return r < HTTP_CLOSE_NREASONS ? close_reason_names[r] : "unknown";
}

static void count_close(http_server_t *srv, http_close_reason_t r)
{
    srv->st.closed[r]++;
    metric_counter_inc(srv->m.closed[r]);
}

/* Set what one holder (a connection or a request) counts against
 * max_inflight_bytes to v. */
static void inflight_set(http_server_t *srv, uint64_t *acct, uint64_t v)
{
    srv->st.inflight_bytes += v - *acct; /* modular: v may be smaller */
    *acct = v;
    metric_gauge_set(srv->m.inflight, (double)srv->st.inflight_bytes);
}

/* A request's body stops counting against max_inflight_bytes (it leaves
 * its connection: the server may be freed before the handler lets go). */
static void req_uncount(http_server_t *srv, req_priv_t *rp)
{
    if (rp->inflight) {
        inflight_set(srv, &rp->inflight_bytes, 0);
        rp->inflight = NULL;
    }
}

void http_req_drop_body(http_req_t *req)
{
    req_priv_t *rp = priv(req);
    st_buf_deinit(&rp->body);
    req->body = (const uint8_t *)"";
    req->body_len = 0;
    if (rp->inflight && rp->conn)
        inflight_set(rp->conn->srv, &rp->inflight_bytes, 0);
}

/* Detach the request the handler holds; tell it (notify) if asked. */
static void conn_detach(conn_t *c, int notify)
{
    req_priv_t *rp = c->cur;
    if (!rp)
        return;
    c->cur = NULL;
    rp->conn = NULL;
    req_uncount(c->srv, rp);
    if (notify && rp->notify)
        rp->notify(&rp->pub, ST_ECLOSED, rp->notify_arg);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles > 0)
        return;
    http_server_t *srv = c->srv;
    inflight_set(srv, &c->acct, 0);
    http_rx_deinit(&c->rx);
    st_buf_deinit(&c->pend);
    tls_conn_destroy(c->tls);
    ST_LIST_REMOVE(srv->conns, c);
    srv->nconns--;
    srv->st.open_connections = srv->nconns;
    metric_gauge_set(srv->m.open, (double)srv->nconns);
    free(c);
    srv_maybe_done(srv);
}

static void conn_close(conn_t *c, int notify)
{
    if (c->uv_closing)
        return;
    c->closing = 1;
    c->uv_closing = 1;
    conn_detach(c, notify);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    conn_t *c = sr->data;
    if (status < 0 || c->peer_eof)
        conn_close(c, 1);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Graceful close: FIN after the queued writes, then read and discard what
 * the client still sends (so it is not answered with RST before it read
 * our response), for at most LINGER_MS. */
static void conn_linger(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    conn_detach(c, 1);
    c->deadline = now_ms(c) + LINGER_MS;
    if (c->tls && tls_conn_established(c->tls)) {
        tls_conn_close_notify(c->tls);
        conn_tls_flush(c);
        if (c->uv_closing)
            return;
    }
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c, 1);
        return;
    }
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    conn_arm(c);
}

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    conn_t *c = wr->c;
    c->nwrites--;
    c->wq -= wr->len;
    free(wr);
    if (c->uv_closing)
        return;
    if (status < 0) {
        conn_close(c, 1);
        return;
    }
    c->write_progress = now_ms(c);
    req_priv_t *rp = c->cur;
    if (rp && rp->drain_wanted && c->wq <= c->srv->lim.write_high_water / 2) {
        rp->drain_wanted = 0;
        if (rp->notify)
            rp->notify(&rp->pub, HTTP_NOTIFY_DRAIN, rp->notify_arg);
    }
    if (c->uv_closing)
        return;
    if (c->nwrites == 0 && c->flushing) {
        c->flushing = 0;
        if (c->close_after)
            conn_linger(c);
        else
            conn_resume(c);
        return;
    }
    conn_arm(c);
}

/* Queue len bytes (copied from up to three pieces) as they are. Returns 0
 * or ST_ECLOSED/ST_ENOMEM; on ST_ECLOSED the connection is being closed
 * (without notify: we are inside an API call). */
static int conn_write_raw3(conn_t *c, const void *a, size_t al, const void *b, size_t bl,
                           const void *d, size_t dl)
{
    size_t len = al + bl + dl;
    wreq_t *wr = malloc(sizeof *wr + (len ? len : 1));
    if (!wr)
        return ST_ENOMEM;
    wr->c = c;
    wr->len = len;
    if (al)
        memcpy(wr->data, a, al);
    if (bl)
        memcpy(wr->data + al, b, bl);
    if (dl)
        memcpy(wr->data + al + bl, d, dl);
    uv_buf_t buf = uv_buf_init(wr->data, (unsigned)len);
    if (c->nwrites == 0)
        c->write_progress = now_ms(c);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(wr);
        conn_close(c, 0);
        return ST_ECLOSED;
    }
    c->nwrites++;
    c->wq += len;
    return 0;
}

/* Send the ciphertext the TLS session has ready (handshake, records, alerts). */
static int conn_tls_flush(conn_t *c)
{
    if (!c->tls || tls_conn_out_pending(c->tls) == 0)
        return 0;
    st_buf_t out;
    st_buf_init(&out);
    int rc = tls_conn_take(c->tls, &out);
    if (rc == 0)
        rc = conn_write_raw3(c, out.data, out.len, NULL, 0, NULL, 0);
    st_buf_deinit(&out);
    return rc;
}

/* Queue len bytes of response (encrypted on a TLS connection); as conn_write_raw3. */
static int conn_write3(conn_t *c, const void *a, size_t al, const void *b, size_t bl, const void *d,
                       size_t dl)
{
    if (!c->tls)
        return conn_write_raw3(c, a, al, b, bl, d, dl);
    if (tls_conn_write(c->tls, a, al) || tls_conn_write(c->tls, b, bl) ||
        tls_conn_write(c->tls, d, dl)) {
        conn_close(c, 0);
        return ST_ECLOSED;
    }
    return conn_tls_flush(c);
}

static int valid_header_text(const char *s, int name)
{
    if (!s || (name && !*s))
        return 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\r' || ch == '\n' || (name && (ch <= ' ' || ch == ':' || ch >= 0x7f)))
            return 0;
    }
    return 1;
}

/* Build the status line and headers. body_len < 0: chunked (or, for
 * HTTP/1.0, no length and close). */
static int build_head(st_buf_t *h, const req_priv_t *rp, int status, const char *ctype,
                      const http_header_t *extra, size_t nextra, long long body_len, int keep_alive)
{
    char line[128];
    const char *reason = http_status_str((enum http_status)status);
    if (!reason || reason[0] == '<')
        reason = "Unknown";
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason);
    int rc = st_buf_append(h, line, (size_t)n);
    if (!rc && ctype) {
        rc = st_buf_append(h, "Content-Type: ", 14);
        if (!rc)
            rc = st_buf_append(h, ctype, strlen(ctype));
        if (!rc)
            rc = st_buf_append(h, "\r\n", 2);
    }
    if (!rc && body_len >= 0) {
        n = snprintf(line, sizeof line, "Content-Length: %lld\r\n", body_len);
        rc = st_buf_append(h, line, (size_t)n);
    } else if (!rc && rp->chunked) {
        rc = st_buf_append(h, "Transfer-Encoding: chunked\r\n", 28);
    }
    if (!rc && !keep_alive)
        rc = st_buf_append(h, "Connection: close\r\n", 19);
    else if (!rc && rp->pub.http_minor == 0 && rp->pub.http_major == 1)
        rc = st_buf_append(h, "Connection: keep-alive\r\n", 24);
    for (size_t i = 0; i < nextra && !rc; i++) {
        rc = st_buf_append(h, extra[i].name, strlen(extra[i].name));
        if (!rc)
            rc = st_buf_append(h, ": ", 2);
        if (!rc)
            rc = st_buf_append(h, extra[i].value, strlen(extra[i].value));
        if (!rc)
            rc = st_buf_append(h, "\r\n", 2);
    }
    if (!rc)
        rc = st_buf_append(h, "\r\n", 2);
    return rc;
}

/* The response is complete (queued): account, release, wait for the flush. */
static void finish_response(conn_t *c, req_priv_t *rp)
{
    http_server_t *srv = c->srv;
    count_response(srv, rp->status);
    metric_hist_observe(srv->m.dur, (double)(uv_hrtime() - rp->t_start) / 1e9);
    c->cur = NULL;
    rp->conn = NULL;
    req_uncount(srv, rp);
    if (!rp->pub.keep_alive || srv->closing)
        c->close_after = 1;
    c->flushing = 1;
    c->idle_since = now_ms(c);
    http_req_destroy(&rp->pub);
    if (c->nwrites == 0) {
        /* Nothing in flight (HEAD of an empty stream...): resume now would
         * re-enter the handler from inside its own call; defer to the
         * timer instead (fires on the next loop iteration). */
        c->deadline = now_ms(c);
        c->tkind = T_NONE;
        uv_timer_start(&c->timer, on_timer, 0, 0);
    }
    conn_arm(c);
}

static int keep_alive_for(const conn_t *c, const req_priv_t *rp)
{
    return rp->pub.keep_alive && !c->srv->closing;
}

/* Take the request off its connection (if still on one). */
static void req_detach(req_priv_t *rp)
{
    if (rp->conn) {
        req_uncount(rp->conn->srv, rp);
        rp->conn->cur = NULL;
        rp->conn = NULL;
    }
}

/* The final word on a request: off its connection, freed. */
static void req_release(http_req_t *req)
{
    req_detach(priv(req));
    http_req_destroy(req);
}

/* {"status":"error","error":"<msg>"}: every error body the server sends
 * (with "errorType" after "status" when type is not NULL). */
static int error_body(st_buf_t *b, const char *type, const char *msg)
{
    static const char head[] = "{\"status\":\"error\",";
    int rc = st_buf_append(b, head, sizeof head - 1);
    if (!rc && type) {
        rc = st_buf_append(b, "\"errorType\":", 12);
        if (!rc)
            rc = st_json_str(b, type, strlen(type));
        if (!rc)
            rc = st_buf_put_u8(b, ',');
    }
    if (!rc)
        rc = st_buf_append(b, "\"error\":", 8);
    if (!rc)
        rc = st_json_str(b, msg, strlen(msg));
    if (!rc)
        rc = st_buf_put_u8(b, '}');
    return rc;
}

int http_respond_headers(http_req_t *req, int status, const char *content_type,
                         const http_header_t *extra, size_t nextra, const void *body, size_t len)
{
    req_priv_t *rp = priv(req);
    conn_t *c = rp->conn;
    int rc = 0;
    if (rp->sink) {
        rc = rp->streaming ? ST_EINVAL : 0;
        rp->sink(rp->sink_arg, rp->streaming ? 500 : status, content_type,
                 rp->streaming ? NULL : extra, rp->streaming ? 0 : nextra, body,
                 rp->streaming ? 0 : len, 1);
        http_req_destroy(req);
        return rc;
    }
    if (!c) {
        rc = ST_ECLOSED;
        goto release;
    }
    if (status < 100 || status > 999 || rp->streaming ||
        (content_type && !valid_header_text(content_type, 0))) {
        rc = ST_EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < nextra; i++)
        if (!valid_header_text(extra[i].name, 1) || !valid_header_text(extra[i].value, 0)) {
            rc = ST_EINVAL;
            goto fail;
        }
    st_buf_t h;
    st_buf_init(&h);
    int ka = keep_alive_for(c, rp);
    rc = build_head(&h, rp, status, content_type, extra, nextra, (long long)len, ka);
    if (!rc) {
        if (!ka)
            rp->pub.keep_alive = 0;
        rp->status = status;
        rc = conn_write3(c, h.data, h.len, body, rp->head_only ? 0 : len, NULL, 0);
    }
    st_buf_deinit(&h);
    if (rc == ST_ECLOSED)
        goto release;
    if (rc)
        goto fail;
    finish_response(c, rp);
    return 0;
fail:
    /* The handler gave up on this request: answer 500 so the client and the
     * connection are not left hanging, then release. */
    if (!c->closing && !rp->streaming) {
        static const char msg[] = "{\"status\":\"error\",\"error\":\"internal error\"}";
        st_buf_t h2;
        st_buf_init(&h2);
        rp->pub.keep_alive = 0;
        rp->status = 500;
        if (build_head(&h2, rp, 500, "application/json", NULL, 0, (long long)sizeof msg - 1, 0) ==
                0 &&
            conn_write3(c, h2.data, h2.len, msg, sizeof msg - 1, NULL, 0) == 0) {
            st_buf_deinit(&h2);
            finish_response(c, rp);
            return rc;
        }
        st_buf_deinit(&h2);
    }
    conn_close(c, 0);
release:
    req_release(req);
    return rc;
}

int http_respond(http_req_t *req, int status, const char *content_type, const void *body,
                 size_t len)
{
    return http_respond_headers(req, status, content_type, NULL, 0, body, len);
}

int http_respond_error(http_req_t *req, int status, const char *msg)
{
    st_buf_t b;
    st_buf_init(&b);
    int rc = error_body(&b, NULL, msg);
    if (rc) {
        st_buf_deinit(&b);
        static const char oom[] = "{\"status\":\"error\",\"error\":\"out of memory\"}";
        return http_respond(req, 503, "application/json", oom, sizeof oom - 1);
    }
    rc = http_respond(req, status, "application/json", b.data, b.len);
    st_buf_deinit(&b);
    return rc;
}

int http_respond_metrics(http_req_t *req, metrics_t *m)
{
    st_buf_t b;
    st_buf_init(&b);
    int rc = metrics_render(m, &b) == 0
                 ? http_respond(req, 200, METRICS_CONTENT_TYPE, b.data, b.len)
                 : http_respond_error(req, 500, "cannot render metrics");
    st_buf_deinit(&b);
    return rc;
}

int http_respond_start(http_req_t *req, int status, const char *content_type)
{
    return http_respond_start_headers(req, status, content_type, NULL, 0);
}

int http_respond_start_headers(http_req_t *req, int status, const char *content_type,
                               const http_header_t *extra, size_t nextra)
{
    req_priv_t *rp = priv(req);
    conn_t *c = rp->conn;
    if (rp->sink && !rp->streaming) {
        rp->streaming = 1;
        rp->status = status;
        free(rp->sink_ctype);
        rp->sink_ctype = content_type ? strdup(content_type) : NULL;
        if (nextra)
            rp->sink(rp->sink_arg, status, content_type, extra, nextra, NULL, 0, 0);
        return 0;
    }
    if (!c) {
        http_req_destroy(req);
        return ST_ECLOSED;
    }
    if (rp->streaming) {
        conn_close(c, 0); /* the head is out: nothing sane left to send */
        goto release;
    }
    int bad = status < 100 || status > 999 || (content_type && !valid_header_text(content_type, 0));
    for (size_t i = 0; i < nextra && !bad; i++)
        bad = !valid_header_text(extra[i].name, 1) || !valid_header_text(extra[i].value, 0);
    if (bad) {
        http_respond_error(req, 500, "invalid response");
        return ST_EINVAL;
    }
    int ka = keep_alive_for(c, rp);
    rp->chunked = rp->pub.http_major > 1 || rp->pub.http_minor >= 1;
    if (!rp->chunked)
        ka = 0; /* HTTP/1.0: the end of the body is the end of the connection */
    rp->pub.keep_alive = ka;
    rp->streaming = 1;
    rp->status = status;
    st_buf_t h;
    st_buf_init(&h);
    int rc = build_head(&h, rp, status, content_type, extra, nextra, -1, ka);
    if (!rc)
        rc = conn_write3(c, h.data, h.len, NULL, 0, NULL, 0);
    st_buf_deinit(&h);
    if (rc == 0)
        return 0;
    if (rc == ST_ENOMEM)
        conn_close(c, 0);
release:
    req_release(req);
    return ST_ECLOSED;
}

int http_respond_chunk(http_req_t *req, const void *data, size_t len)
{
    req_priv_t *rp = priv(req);
    conn_t *c = rp->conn;
    if (rp->sink) {
        if (!rp->streaming)
            return ST_EINVAL;
        if (rp->sink_stopped)
            return ST_ECLOSED;
        if (len && rp->sink(rp->sink_arg, rp->status, rp->sink_ctype, NULL, 0, data, len, 0) != 0) {
            rp->sink_stopped = 1;
            return ST_ECLOSED;
        }
        return 0;
    }
    if (!c)
        return ST_ECLOSED;
    if (!rp->streaming)
        return ST_EINVAL;
    if (len == 0 || rp->head_only)
        return 0;
    int rc;
    if (rp->chunked) {
        char hex[24];
        int n = snprintf(hex, sizeof hex, "%zx\r\n", len);
        rc = conn_write3(c, hex, (size_t)n, data, len, "\r\n", 2);
    } else {
        rc = conn_write3(c, data, len, NULL, 0, NULL, 0);
    }
    if (rc) {
        if (rc == ST_ENOMEM)
            conn_close(c, 0);
        req_detach(rp);
        return ST_ECLOSED;
    }
    if (c->wq > c->srv->lim.write_high_water) {
        rp->drain_wanted = 1;
        return 1;
    }
    return 0;
}

int http_respond_end(http_req_t *req)
{
    req_priv_t *rp = priv(req);
    conn_t *c = rp->conn;
    int rc = 0;
    if (rp->sink && rp->streaming) {
        rp->sink(rp->sink_arg, rp->sink_stopped ? 500 : rp->status, rp->sink_ctype, NULL, 0, NULL,
                 0, 1);
        http_req_destroy(req);
        return 0;
    }
    if (!c && !rp->sink) {
        rc = ST_ECLOSED;
    } else if (!rp->streaming) {
        /* Not started: finish with an empty 200-less error rather than leak. */
        return http_respond_error(req, 500, "response ended before it started");
    } else if (rp->chunked && !rp->head_only) {
        rc = conn_write3(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
        if (rc == ST_ENOMEM)
            conn_close(c, 0);
    }
    if (rp->conn && !rc) {
        finish_response(c, rp);
        return 0;
    }
    req_release(req);
    return rc ? ST_ECLOSED : 0;
}

int http_req_local(const http_limits_t *lim, const char *method, const char *target,
                   const char *content_type, const void *body, size_t len, http_sink_fn sink,
                   void *arg, http_req_t **out)
{
    return http_req_local_as(lim, method, target, content_type, NULL, NULL, body, len, sink, arg,
                             out);
}

int http_req_local_as(const http_limits_t *lim, const char *method, const char *target,
                      const char *content_type, const char *authorization, const char *remote,
                      const void *body, size_t len, http_sink_fn sink, void *arg, http_req_t **out)
{
    *out = NULL;
    st_buf_t raw;
    st_buf_init(&raw);
    char head[96];
    int n = snprintf(head, sizeof head, "\r\nHost: local\r\nContent-Length: %zu\r\n", len);
    int rc = st_buf_append(&raw, method, strlen(method));
    if (!rc)
        rc = st_buf_put_u8(&raw, ' ');
    if (!rc)
        rc = st_buf_append(&raw, target, strlen(target));
    if (!rc)
        rc = st_buf_append(&raw, " HTTP/1.1", 9);
    if (!rc)
        rc = st_buf_append(&raw, head, (size_t)n);
    if (!rc && content_type) {
        rc = st_buf_append(&raw, "Content-Type: ", 14);
        if (!rc)
            rc = st_buf_append(&raw, content_type, strlen(content_type));
        if (!rc)
            rc = st_buf_append(&raw, "\r\n", 2);
    }
    if (!rc && authorization) {
        if (strpbrk(authorization, "\r\n")) {
            st_buf_deinit(&raw);
            return ST_EPARSE;
        }
        rc = st_buf_append(&raw, "Authorization: ", 15);
        if (!rc)
            rc = st_buf_append(&raw, authorization, strlen(authorization));
        if (!rc)
            rc = st_buf_append(&raw, "\r\n", 2);
    }
    if (!rc)
        rc = st_buf_append(&raw, "\r\n", 2);
    if (!rc && len)
        rc = st_buf_append(&raw, body, len);
    if (rc) {
        st_buf_deinit(&raw);
        return ST_ENOMEM;
    }
    http_rx_t rx;
    http_rx_init(&rx, lim);
    size_t used = 0;
    http_rx_event_t ev = HTTP_RX_MORE;
    size_t off = 0;
    do {
        ev = http_rx_feed(&rx, (const char *)raw.data + off, raw.len - off, &used);
        off += used;
    } while (ev == HTTP_RX_HEAD);
    http_req_t *req = ev == HTTP_RX_REQUEST ? http_rx_take(&rx) : NULL;
    if (!req) {
        const char *why = NULL;
        int st = ev == HTTP_RX_ERROR ? http_rx_error(&rx, &why) : 400;
        rc = st == 503 ? ST_ENOMEM : st == 400 ? ST_EPARSE : ST_ELIMIT;
    }
    http_rx_deinit(&rx);
    st_buf_deinit(&raw);
    if (!req)
        return rc;
    req_priv_t *rp = priv(req);
    rp->sink = sink;
    rp->sink_arg = arg;
    rp->t_start = uv_hrtime();
    snprintf(rp->remote, sizeof rp->remote, "%s", remote && *remote ? remote : "local");
    rp->pub.remote = rp->remote;
    *out = req;
    return 0;
}

void http_req_notify(http_req_t *req, http_notify_fn fn, void *arg)
{
    req_priv_t *rp = priv(req);
    rp->notify = fn;
    rp->notify_arg = arg;
}

/* ---- reading ------------------------------------------------------------ */

/* Answer an error the server decides by itself (no request reaches the
 * handler), then close: the rest of the connection's input is discarded. */
static void send_error_close(conn_t *c, int status, const char *type, const char *reason,
                             const http_header_t *extra, size_t nextra)
{
    count_response(c->srv, status);
    st_buf_t b, h;
    st_buf_init(&b);
    st_buf_init(&h);
    req_priv_t dummy;
    memset(&dummy, 0, sizeof dummy);
    dummy.pub.http_major = 1;
    dummy.pub.http_minor = 1;
    int rc = error_body(&b, type, reason);
    if (!rc)
        rc = build_head(&h, &dummy, status, "application/json", extra, nextra, (long long)b.len, 0);
    if (!rc)
        rc = conn_write3(c, h.data, h.len, b.data, b.len, NULL, 0);
    st_buf_deinit(&b);
    st_buf_deinit(&h);
    if (rc == ST_ENOMEM)
        conn_close(c, 0);
    if (rc)
        return;
    c->close_after = 1;
    c->flushing = 1;
}

static void send_rx_error(conn_t *c)
{
    http_server_t *srv = c->srv;
    const char *reason;
    int status = http_rx_error(&c->rx, &reason);
    if (status == 413) {
        srv->st.too_large++;
        metric_counter_inc(srv->m.big);
    } else {
        srv->st.bad_requests++;
        metric_counter_inc(srv->m.bad);
    }
    inflight_set(srv, &c->acct, 0);
    send_error_close(c, status, status == 400 ? "bad_data" : NULL, reason, NULL, 0);
}

#define RETRY_AFTER_S "5"

/* The body of the request being received (want bytes) would take the
 * server over max_inflight_bytes: 503 + Retry-After, and close without
 * reading it; or 413 when that body alone is over the limit (a retry could
 * never succeed). */
static void refuse_inflight(conn_t *c, uint64_t want)
{
    http_server_t *srv = c->srv;
    char msg[160];
    inflight_set(srv, &c->acct, 0);
    count_close(srv, HTTP_CLOSE_INFLIGHT);
    if (want > (uint64_t)srv->lim.max_inflight_bytes) {
        snprintf(msg, sizeof msg,
                 "request body too large: over the %zu MiB this server buffers at once",
                 srv->lim.max_inflight_bytes >> 20);
        srv->st.too_large++;
        metric_counter_inc(srv->m.big);
        send_error_close(c, 413, NULL, msg, NULL, 0);
        return;
    }
    snprintf(msg, sizeof msg,
             "server busy: request bodies buffered at once are over the limit of %zu MiB; retry "
             "after " RETRY_AFTER_S " s",
             srv->lim.max_inflight_bytes >> 20);
    static const http_header_t ra = {"Retry-After", RETRY_AFTER_S};
    send_error_close(c, 503, "unavailable", msg, &ra, 1);
}

static void dispatch(conn_t *c, req_priv_t *rp)
{
    http_server_t *srv = c->srv;
    memcpy(rp->remote, c->remote, sizeof rp->remote);
    rp->pub.remote = rp->remote;
    rp->conn = c;
    rp->t_start = uv_hrtime();
    c->cur = rp;
    c->nreq++;
    srv->st.requests++;
    metric_counter_inc(srv->m.req);
    if (srv->closing)
        rp->pub.keep_alive = 0;
    conn_arm(c);
    srv->handler(&rp->pub, srv->arg);
}

/* Feed bytes to the receiver while allowed (invariant 1). Returns the
 * number of bytes consumed; the caller keeps the rest. */
static size_t conn_feed(conn_t *c, const char *data, size_t len)
{
    http_server_t *srv = c->srv;
    size_t off = 0;
    int want_continue = 0;
    while (off < len && conn_can_feed(c)) {
        http_rx_phase_t before = http_rx_phase(&c->rx);
        size_t used;
        http_rx_event_t ev = http_rx_feed(&c->rx, data + off, len - off, &used);
        off += used;
        http_rx_phase_t after = http_rx_phase(&c->rx);
        uint64_t now = now_ms(c);
        if (before == HTTP_RX_IDLE && after != HTTP_RX_IDLE)
            c->head_start = c->nreq == 0 ? c->accepted : now;
        if (after == HTTP_RX_IN_BODY || ev == HTTP_RX_HEAD)
            c->body_progress = now;
        if (ev != HTTP_RX_ERROR) {
            /* what the body being read holds or announced, against the
             * server's max_inflight_bytes */
            uint64_t had = c->acct, want = http_rx_body_bytes(&c->rx);
            if (want > had &&
                srv->st.inflight_bytes - had + want > (uint64_t)srv->lim.max_inflight_bytes) {
                refuse_inflight(c, want);
                return len;
            }
            inflight_set(srv, &c->acct, want);
        }
        switch (ev) {
        case HTTP_RX_MORE:
            break;
        case HTTP_RX_HEAD:
            want_continue = http_rx_expect_continue(&c->rx);
            break;
        case HTTP_RX_REQUEST: {
            want_continue = 0;
            http_req_t *req = http_rx_take(&c->rx);
            if (req) {
                /* the body's count moves from the connection to the request */
                req_priv_t *rp = priv(req);
                rp->inflight = &srv->st.inflight_bytes;
                rp->inflight_bytes = c->acct;
                c->acct = 0;
                dispatch(c, rp);
            }
            break;
        }
        case HTTP_RX_ERROR:
            send_rx_error(c);
            return len; /* the rest is discarded */
        }
    }
    /* The client waits for "100 Continue" before sending the body; if the
     * body was not already complete in this input, tell it to go on. */
    if (want_continue && !c->closing && http_rx_phase(&c->rx) == HTTP_RX_IN_BODY) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write3(c, cont, sizeof cont - 1, NULL, 0, NULL, 0);
    }
    return off;
}

static void pend_keep(conn_t *c, const char *data, size_t len)
{
    if (len == 0)
        return;
    if (c->pend_off > 0 && c->pend_off == c->pend.len) {
        c->pend.len = 0;
        c->pend_off = 0;
    }
    if (st_buf_append(&c->pend, data, len) != 0) {
        conn_close(c, 1);
        return;
    }
    if (c->reading && c->pend.len - c->pend_off > c->srv->pend_cap) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* Feed what waits in pend, then read again if there is room. */
static void conn_resume(conn_t *c)
{
    if (c->closing)
        return;
    c->idle_since = now_ms(c);
    if (c->pend.len > c->pend_off) {
        size_t used =
            conn_feed(c, (const char *)c->pend.data + c->pend_off, c->pend.len - c->pend_off);
        c->pend_off += used;
        if (c->pend_off == c->pend.len) {
            c->pend.len = 0;
            c->pend_off = 0;
        } else if (c->pend_off > c->pend.len / 2) {
            memmove(c->pend.data, c->pend.data + c->pend_off, c->pend.len - c->pend_off);
            c->pend.len -= c->pend_off;
            c->pend_off = 0;
        }
    }
    if (c->closing)
        return;
    if (!c->reading && c->pend.len - c->pend_off <= c->srv->pend_cap &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    conn_arm(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    conn_t *c = h->data;
    http_server_t *srv = c->srv;
    char *win;
    size_t wn;
    /* a body being read with nothing queued before it: straight into its
     * buffer (no copy on the way in; large writes are most of the bytes) */
    if (!c->tls && c->pend.len == c->pend_off && conn_can_feed(c) &&
        http_rx_body_window(&c->rx, &win, &wn)) {
        c->direct = win;
        *buf = uv_buf_init(win, wn > UINT_MAX ? UINT_MAX : (unsigned)wn);
        return;
    }
    if (!srv->rbuf_busy) {
        srv->rbuf_busy = 1;
        *buf = uv_buf_init(srv->rbuf, READ_BUF);
        return;
    }
    char *p = malloc(READ_BUF);
    *buf = uv_buf_init(p, p ? READ_BUF : 0);
}

static void release_buf(conn_t *c, const uv_buf_t *buf)
{
    http_server_t *srv = c->srv;
    if (buf->base && buf->base == c->direct) /* the body's own buffer */
        c->direct = NULL;
    else if (buf->base == srv->rbuf)
        srv->rbuf_busy = 0;
    else
        free(buf->base);
}

/* The peer closed its side (EOF, or a TLS close_notify), or reading failed. */
static void conn_peer_eof(conn_t *c, int eof)
{
    if (eof) {
        c->peer_eof = 1;
        c->reading = 0;
        if (!c->closing && !c->cur && c->flushing) {
            c->close_after = 1; /* let the queued response go out */
            return;
        }
    }
    conn_close(c, 1);
}

/* Plaintext from the peer. */
static void conn_rx(conn_t *c, const char *data, size_t n)
{
    if (n == 0)
        return;
    if (c->pend.len == c->pend_off && conn_can_feed(c)) {
        size_t used = conn_feed(c, data, n);
        if (!c->closing)
            pend_keep(c, data + used, n - used);
    } else {
        pend_keep(c, data, n);
        if (conn_can_feed(c))
            conn_resume(c);
    }
}

/* Ciphertext from the peer: decrypt, answer the handshake, pass plaintext on. */
static void conn_tls_rx(conn_t *c, const char *data, size_t n)
{
    st_buf_t *plain = &c->srv->tplain;
    plain->len = 0;
    int rc = tls_conn_feed(c->tls, data, n, plain);
    if (conn_tls_flush(c) != 0 || c->uv_closing)
        return;
    if (rc == ST_EPROTO && tls_conn_failure(c->tls) == TLS_FAIL_NOT_TLS && c->nreq == 0) {
        /* plain HTTP on the TLS port: say so in plain HTTP, then close */
        tls_conn_destroy(c->tls);
        c->tls = NULL;
        c->srv->st.bad_requests++;
        metric_counter_inc(c->srv->m.bad);
        send_error_close(c, 400, "bad_data",
                         "this port speaks HTTPS (TLS): use https:// with this address", NULL, 0);
        return;
    }
    if (rc == ST_EPROTO) {
        conn_linger(c); /* the alert, if any, is queued: let it go out */
        return;
    }
    conn_rx(c, (const char *)plain->data, plain->len);
    if (rc == ST_ECLOSED && !c->uv_closing)
        conn_peer_eof(c, 1);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread < 0) {
        release_buf(c, buf);
        conn_peer_eof(c, nread == UV_EOF);
        return;
    }
    if (nread == 0 || c->closing || c->close_after) { /* closing: discard */
        release_buf(c, buf);
        return;
    }
    if (c->tls)
        conn_tls_rx(c, buf->base, (size_t)nread);
    else
        conn_rx(c, buf->base, (size_t)nread);
    release_buf(c, buf);
    conn_arm(c);
}

/* ---- timers ------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->uv_closing)
        return;
    if (c->tkind == T_NONE) {
        /* Deferred resume after a response with nothing left in flight. */
        if (!c->closing && c->flushing && c->nwrites == 0) {
            c->flushing = 0;
            if (c->close_after)
                conn_linger(c);
            else
                conn_resume(c);
        } else {
            conn_arm(c);
        }
        return;
    }
    if (now_ms(c) < c->deadline) {
        conn_arm(c);
        return;
    }
    if (c->tls && c->nreq == 0 && !tls_conn_established(c->tls) && !tls_conn_failure(c->tls))
        tls_ctx_count_failure(c->srv->tls, TLS_FAIL_TIMEOUT);
    if (c->tkind != T_IDLE && c->tkind != T_LINGER) {
        c->srv->st.timeouts++;
        metric_counter_inc(c->srv->m.tmo);
    }
    switch (c->tkind) {
    case T_HEAD:
        count_close(c->srv, HTTP_CLOSE_HEADER_TIMEOUT);
        break;
    case T_BODY:
        count_close(c->srv, HTTP_CLOSE_BODY_TIMEOUT);
        break;
    case T_WRITE:
        count_close(c->srv, HTTP_CLOSE_WRITE_TIMEOUT);
        break;
    case T_IDLE:
        count_close(c->srv, HTTP_CLOSE_IDLE);
        break;
    default:
        break;
    }
    conn_close(c, 1);
}

static void conn_arm(conn_t *c)
{
    if (c->uv_closing)
        return;
    const http_limits_t *lim = &c->srv->lim;
    uint64_t now = now_ms(c), deadline;
    int kind;
    if (c->closing) {
        kind = T_LINGER; /* deadline set by conn_linger */
        deadline = c->deadline;
    } else if (c->flushing && c->nwrites == 0) {
        return; /* a deferred resume is pending on the timer */
    } else if (c->nwrites > 0) {
        kind = T_WRITE;
        deadline = c->write_progress + lim->write_timeout_ms;
    } else if (c->cur) {
        uv_timer_stop(&c->timer);
        c->tkind = T_NONE;
        return;
    } else {
        /* the whole request, head and body, within request_timeout */
        uint64_t whole = c->head_start + lim->request_timeout_ms;
        switch (http_rx_phase(&c->rx)) {
        case HTTP_RX_IN_HEAD:
            kind = T_HEAD;
            deadline = c->head_start + lim->header_timeout_ms;
            if (whole < deadline)
                deadline = whole;
            break;
        case HTTP_RX_IN_BODY:
            kind = T_BODY;
            deadline = c->body_progress + lim->body_timeout_ms;
            if (whole < deadline)
                deadline = whole;
            break;
        default:
            if (c->nreq == 0) {
                kind = T_HEAD;
                deadline = c->accepted + lim->header_timeout_ms;
            } else {
                kind = T_IDLE;
                deadline = c->idle_since + lim->keepalive_timeout_ms;
            }
        }
    }
    c->tkind = kind;
    c->deadline = deadline;
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

/* ---- accept ------------------------------------------------------------- */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *ls, int status)
{
    http_server_t *srv = ls->data;
    if (status < 0 || srv->closing)
        return;
    if (srv->nconns >= srv->lim.max_connections) {
        uv_tcp_t *t = malloc(sizeof *t);
        if (!t)
            return;
        uv_tcp_init(srv->loop, t);
        uv_accept(ls, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, free_handle);
        srv->st.rejected++;
        metric_counter_inc(srv->m.rej);
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = srv;
    http_rx_init(&c->rx, &srv->lim);
    st_buf_init(&c->pend);
    c->handles = net_conn_handles_init(srv->loop, &c->tcp, &c->timer, c);
    ST_LIST_PUSH(srv->conns, c);
    srv->nconns++;
    srv->st.open_connections = srv->nconns;
    metric_gauge_set(srv->m.open, (double)srv->nconns);
    c->accepted = now_ms(c);
    if (net_accept(ls, &c->tcp, c->remote, sizeof c->remote) != 0 ||
        (srv->tls && tls_conn_create(srv->tls, NULL, &c->tls) != 0)) {
        conn_close(c, 0);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c, 0);
        return;
    }
    c->reading = 1;
    conn_arm(c);
}

/* ---- server lifecycle --------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h)
{
    http_server_t *srv = h->data;
    srv->listener_open = 0;
    srv_maybe_done(srv);
}

static void on_grace_closed(uv_handle_t *h)
{
    http_server_t *srv = h->data;
    srv->grace_open = 0;
    srv_maybe_done(srv);
}

int http_server_create(uv_loop_t *loop, const char *host, int port, const http_limits_t *lim,
                       http_handler_fn handler, void *arg, http_server_t **out)
{
    if (!loop || !handler || port < 0 || port > 65535)
        return ST_EINVAL;
    if (!host || !*host || strcmp(host, "*") == 0)
        host = "0.0.0.0"; /* every IPv4 interface */
    struct sockaddr_storage ss;
    if (net_resolve(host, port, &ss) != 0)
        return ST_EINVAL;
    http_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return ST_ENOMEM;
    srv->loop = loop;
    http_limits_fill(&srv->lim, lim);
    srv->pend_cap = srv->lim.max_header_bytes + READ_BUF;
    srv->handler = handler;
    srv->arg = arg;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_open = 1;
    uv_timer_init(loop, &srv->grace);
    srv->grace.data = srv;
    srv->grace_open = 1;
    int rc = net_listen_tcp(&srv->listener, &ss, on_connection, &srv->port);
    if (rc != 0) {
        int err = rc == UV_EADDRINUSE                         ? ST_EBUSY
                  : rc == UV_EADDRNOTAVAIL || rc == UV_EINVAL ? ST_EINVAL
                                                              : ST_EIO;
        /* Closing needs the loop to run once; the caller's loop does it.
         * Free from the close callbacks. */
        srv->closing = 1;
        srv->grace_open = 2;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
        uv_close((uv_handle_t *)&srv->grace, on_grace_closed);
        return err;
    }
    *out = srv;
    return 0;
}

void http_server_set_tls(http_server_t *srv, tls_ctx_t *tls)
{
    srv->tls = tls;
}

int http_server_port(const http_server_t *srv)
{
    return srv->port;
}

int http_server_metrics(http_server_t *srv, metrics_t *reg, const char *name)
{
    static const char *const cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    if (!reg || !name)
        return ST_EINVAL;
    srv->m.req = metrics_counter(reg, "strata_http_requests_total", "HTTP requests received.",
                                 "server", name, NULL);
    for (int i = 0; i < 6; i++)
        srv->m.resp[i] = metrics_counter(reg, "strata_http_responses_total",
                                         "HTTP responses sent, by status class.", "server", name,
                                         "code", cls[i], NULL);
    srv->m.bad = metrics_counter(reg, "strata_http_bad_requests_total",
                                 "Malformed HTTP requests answered 400/414/431 by the server.",
                                 "server", name, NULL);
    srv->m.big = metrics_counter(reg, "strata_http_body_too_large_total",
                                 "HTTP requests refused with 413 (body over the limit).", "server",
                                 name, NULL);
    srv->m.tmo = metrics_counter(reg, "strata_http_timeouts_total",
                                 "HTTP connections closed by a header, body or write timeout.",
                                 "server", name, NULL);
    srv->m.rej = metrics_counter(reg, "strata_http_rejected_connections_total",
                                 "HTTP connections closed at once (over max_connections).",
                                 "server", name, NULL);
    srv->m.open = metrics_gauge(reg, "strata_http_open_connections", "Open HTTP connections.",
                                "server", name, NULL);
    for (int i = 0; i < HTTP_CLOSE_NREASONS; i++) {
        srv->m.closed[i] = metrics_counter(
            reg, "strata_http_connections_closed_total",
            "HTTP connections the server cut, by reason: header_timeout, body_timeout (body "
            "stalled or the whole request over request_timeout), write_timeout, idle (keep-alive "
            "idle timeout), inflight (503: request bodies buffered over the limit).",
            "server", name, "reason", close_reason_names[i], NULL);
        if (!srv->m.closed[i])
            return ST_ENOMEM;
        metric_counter_add(srv->m.closed[i], srv->st.closed[i]);
    }
    srv->m.inflight = metrics_gauge(reg, "strata_http_inflight_bytes",
                                    "Request body bytes the server buffers now (being read or "
                                    "held by a request being handled).",
                                    "server", name, NULL);
    srv->m.dur =
        metrics_histogram(reg, "strata_http_request_duration_seconds",
                          "Time from a complete request to its complete response.",
                          metrics_latency_buckets, metrics_latency_nbuckets, "server", name, NULL);
    int ok = srv->m.req && srv->m.bad && srv->m.big && srv->m.tmo && srv->m.rej && srv->m.open &&
             srv->m.dur && srv->m.inflight;
    for (int i = 0; i < 6; i++)
        ok = ok && srv->m.resp[i];
    if (!ok)
        return ST_ENOMEM;
    metric_counter_add(srv->m.req, srv->st.requests);
    metric_gauge_set(srv->m.open, (double)srv->nconns);
    return 0;
}

void http_server_stats(const http_server_t *srv, http_stats_t *out)
{
    *out = srv->st;
}

static void srv_maybe_done(http_server_t *srv)
{
    if (!srv->closing || srv->nconns > 0)
        return;
    if (srv->grace_open == 1) {
        srv->grace_open = 2; /* closing */
        uv_close((uv_handle_t *)&srv->grace, on_grace_closed);
        return;
    }
    if (srv->listener_open || srv->grace_open)
        return;
    void (*cb)(void *) = srv->close_cb;
    void *arg = srv->close_arg;
    st_buf_deinit(&srv->tplain);
    free(srv);
    if (cb)
        cb(arg);
}

static void on_grace(uv_timer_t *t)
{
    http_server_t *srv = t->data;
    for (conn_t *c = srv->conns; c; c = c->next)
        conn_close(c, 1);
    srv_maybe_done(srv);
}

void http_server_close(http_server_t *srv, uint32_t grace_ms, void (*cb)(void *arg), void *arg)
{
    srv->closing = 1;
    srv->close_cb = cb;
    srv->close_arg = arg;
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    /* Connections with a response to finish get the grace period; those
     * are force-closed (with notify) from the timer callback only. */
    int busy = 0;
    for (conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (c->cur || c->flushing) {
            c->close_after = 1;
            busy = 1;
        } else {
            conn_close(c, 0); /* idle or half-read: nobody holds a request */
        }
    }
    if (busy)
        uv_timer_start(&srv->grace, on_grace, grace_ms, 0);
    srv_maybe_done(srv);
}
