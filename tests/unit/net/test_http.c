/*
 * Unit tests for common/net/http: the request receiver (http_parse.c) fed directly (no
 * sockets), then the server on a real libuv loop on 127.0.0.1 with a
 * blocking-socket client in a thread. Every server test is bounded by a
 * watchdog timer and ends with uv_loop_close() == 0. The client thread never
 * calls cmocka asserts: it records the first failed check in fx->err and the
 * main thread asserts after joining it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>
#include <zlib.h>

#include "http.h"
#include "metrics.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_time.h"

/* ---- receiver (no sockets) ---------------------------------------------- */

/* Feed s in pieces of `step` bytes; return the last event, *req the request. */
static http_rx_event_t feed_all(http_rx_t *rx, const char *s, size_t len, size_t step,
                                http_req_t **req, size_t *consumed)
{
    size_t off = 0;
    http_rx_event_t ev = HTTP_RX_MORE;
    *req = NULL;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        size_t used;
        ev = http_rx_feed(rx, s + off, n, &used);
        off += used;
        if (ev == HTTP_RX_REQUEST) {
            *req = http_rx_take(rx);
            break;
        }
        if (ev == HTTP_RX_ERROR)
            break;
    }
    if (consumed)
        *consumed = off;
    return ev;
}

static void test_rx_basic(void **state)
{
    (void)state;
    const char *r = "POST /api/v1/label/a%2Fb/values?match%5B%5D=up&match[]=x+y&q=1 HTTP/1.1\r\n"
                    "Host: h\r\nX-Empty:\r\nX-Trim:  v  \r\nContent-Length: 5\r\n\r\nhello";
    for (size_t step = 1; step <= strlen(r); step += step < 8 ? 1 : 37) {
        http_rx_t *rx;
        assert_int_equal(http_rx_create(NULL, &rx), 0);
        http_req_t *req;
        assert_int_equal(feed_all(rx, r, strlen(r), step, &req, NULL), HTTP_RX_REQUEST);
        assert_non_null(req);
        assert_int_equal(req->method, HTTP_METHOD_POST);
        assert_string_equal(req->method_name, "POST");
        assert_string_equal(req->path, "/api/v1/label/a/b/values");
        assert_string_equal(req->query, "match%5B%5D=up&match[]=x+y&q=1");
        assert_int_equal(http_params_count(&req->params, "match[]"), 2);
        size_t it = 0;
        assert_string_equal(http_params_next(&req->params, "match[]", &it)->value, "up");
        assert_string_equal(http_params_next(&req->params, "match[]", &it)->value, "x y");
        assert_string_equal(http_req_param(req, "q"), "1");
        assert_string_equal(http_req_header(req, "host"), "h");
        assert_string_equal(http_req_header(req, "x-empty"), "");
        assert_string_equal(http_req_header(req, "X-TRIM"), "v");
        assert_int_equal(req->nheaders, 4);
        assert_int_equal(req->body_len, 5);
        assert_memory_equal(req->body, "hello", 6);
        assert_true(req->keep_alive);
        assert_int_equal(req->http_minor, 1);
        http_req_destroy(req);
        http_rx_destroy(rx);
    }
}

/* http_req_params_all: a POST form body's pairs, then the query string's;
 * only for a form Content-Type; a bad escape in the body is ST_EPARSE. */
static http_req_t *rx_one(const char *r)
{
    http_rx_t *rx;
    assert_int_equal(http_rx_create(NULL, &rx), 0);
    http_req_t *req;
    assert_int_equal(feed_all(rx, r, strlen(r), strlen(r), &req, NULL), HTTP_RX_REQUEST);
    http_rx_destroy(rx);
    return req;
}

static void test_req_params_all(void **state)
{
    (void)state;
    http_req_t *req = rx_one("POST /s?match[]=a&start=1 HTTP/1.1\r\nContent-Type: "
                             "Application/X-WWW-Form-Urlencoded; charset=utf-8\r\n"
                             "Content-Length: 26\r\n\r\nmatch%5B%5D=b+c&start=2&x=");
    http_params_t p;
    assert_int_equal(http_req_params_all(req, &p), 0);
    assert_int_equal(http_params_count(&p, "match[]"), 2);
    size_t it = 0;
    assert_string_equal(http_params_next(&p, "match[]", &it)->value, "b c");
    assert_string_equal(http_params_next(&p, "match[]", &it)->value, "a");
    assert_string_equal(http_params_get(&p, "start"), "2");
    assert_string_equal(http_params_get(&p, "x"), "");
    http_params_deinit(&p);
    http_req_destroy(req);
    /* not a form: the body is not parameters */
    req = rx_one("POST /s?q=1 HTTP/1.1\r\nContent-Type: text/plain\r\n"
                 "Content-Length: 3\r\n\r\nq=2");
    assert_int_equal(http_req_params_all(req, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(http_params_get(&p, "q"), "1");
    http_params_deinit(&p);
    http_req_destroy(req);
    /* GET: the query string only */
    req = rx_one("GET /s?q=1 HTTP/1.1\r\n\r\n");
    assert_int_equal(http_req_params_all(req, &p), 0);
    assert_string_equal(http_params_get(&p, "q"), "1");
    http_params_deinit(&p);
    http_req_destroy(req);
    req = rx_one("POST /s HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 "Content-Length: 4\r\n\r\nq=%z");
    assert_int_equal(http_req_params_all(req, &p), ST_EPARSE);
    http_params_deinit(&p);
    http_req_destroy(req);
}

static int local_sink(void *arg, int status, const char *ctype, const http_header_t *hdrs,
                      size_t nhdrs, const void *data, size_t len, int final)
{
    int *got = arg;
    (void)ctype;
    (void)hdrs;
    (void)nhdrs;
    if (final && len == 2 && memcmp(data, "ok", 2) == 0)
        *got = status;
    return 0;
}

/* An in-process request on behalf of a client: its Authorization header
 * and address are the caller's; a header value with CR or LF is refused. */
static void test_req_local_as(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    int got = 0;
    http_req_t *req = NULL;
    assert_int_equal(http_req_local_as(&lim, "GET", "/api/v1/export?match[]=x", NULL,
                                       "Bearer st_abc", "10.0.0.1:5000", NULL, 0, local_sink, &got,
                                       &req),
                     0);
    assert_non_null(req);
    assert_string_equal(http_req_header(req, "Authorization"), "Bearer st_abc");
    assert_string_equal(req->remote, "10.0.0.1:5000");
    assert_string_equal(req->path, "/api/v1/export");
    assert_int_equal(http_respond(req, 200, "text/plain", "ok", 2), 0);
    assert_int_equal(got, 200);
    /* no credential, no address: as http_req_local */
    assert_int_equal(
        http_req_local_as(&lim, "GET", "/x", NULL, NULL, NULL, NULL, 0, local_sink, &got, &req), 0);
    assert_null(http_req_header(req, "Authorization"));
    assert_string_equal(req->remote, "local");
    assert_int_equal(http_respond(req, 204, NULL, "ok", 2), 0);
    assert_int_equal(got, 204);
    req = NULL;
    assert_int_equal(http_req_local_as(&lim, "GET", "/x", NULL, "Bearer a\r\nX-Evil: 1", NULL, NULL,
                                       0, local_sink, &got, &req),
                     ST_EPARSE);
    assert_null(req);
}

static void test_rx_pipelined_and_events(void **state)
{
    (void)state;
    const char *r = "GET /a HTTP/1.1\r\n\r\nGET http://host:1/b?x=1 HTTP/1.1\r\nConnection: "
                    "close\r\n\r\n";
    http_rx_t *rx;
    assert_int_equal(http_rx_create(NULL, &rx), 0);
    size_t used, off = 0, len = strlen(r);
    assert_int_equal(http_rx_phase(rx), HTTP_RX_IDLE);
    assert_int_equal(http_rx_feed(rx, r, len, &used), HTTP_RX_HEAD);
    off += used;
    assert_int_equal(http_rx_feed(rx, r + off, len - off, &used), HTTP_RX_REQUEST);
    off += used;
    /* Not taken yet: refuses to go on. */
    size_t u2;
    assert_int_equal(http_rx_feed(rx, r + off, len - off, &u2), HTTP_RX_REQUEST);
    assert_int_equal(u2, 0);
    http_req_t *a = http_rx_take(rx);
    assert_string_equal(a->path, "/a");
    assert_string_equal(a->query, "");
    assert_int_equal(a->body_len, 0);
    assert_non_null(a->body);
    http_req_t *b;
    assert_int_equal(feed_all(rx, r + off, len - off, 1000, &b, NULL), HTTP_RX_REQUEST);
    assert_string_equal(b->path, "/b");
    assert_string_equal(http_req_param(b, "x"), "1");
    assert_false(b->keep_alive);
    http_req_destroy(a);
    http_req_destroy(b);
    http_rx_destroy(rx);
}

static void expect_rx_error(const http_limits_t *lim, const char *r, size_t len, int status)
{
    for (size_t step = 1; step <= len; step = step * 3 + 1) {
        http_rx_t *rx;
        assert_int_equal(http_rx_create(lim, &rx), 0);
        http_req_t *req;
        http_rx_event_t ev = feed_all(rx, r, len, step, &req, NULL);
        if (ev != HTTP_RX_ERROR)
            fail_msg("no error for %.40s (step %zu, ev %d)", r, step, ev);
        assert_int_equal(http_rx_error(rx, NULL), status);
        size_t used;
        assert_int_equal(http_rx_feed(rx, "x", 1, &used), HTTP_RX_ERROR);
        http_rx_destroy(rx);
    }
}

static void test_rx_errors(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_header_bytes = 256;
    lim.max_url_bytes = 64;
    lim.max_headers = 4;
    lim.max_body_bytes = 10;
#define E(s, st) expect_rx_error(&lim, s, sizeof s - 1, st)
    E("GARBAGE\r\n\r\n", 400);
    E("BREW /pot HTTP/1.1\r\n\r\n", 400);
    E("GET / HTTP/9.9.9\r\n\r\n", 400);
    E("GET /%zz HTTP/1.1\r\n\r\n", 400);
    E("GET /a%00b HTTP/1.1\r\n\r\n", 400);
    E("GET /?a=%z HTTP/1.1\r\n\r\n", 400);
    E("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400);
    E("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    E("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400);
    E("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400);
    E("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
      "HTTP/1.1\r\n\r\n",
      414);
    E("GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n", 431);
    E("GET / HTTP/1.1\r\nX: "
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r"
      "\n",
      431);
    E("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 413);
    E("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n", 413);
#undef E
    /* Exactly at the limits is fine. */
    http_rx_t *rx;
    assert_int_equal(http_rx_create(&lim, &rx), 0);
    http_req_t *req;
    const char *ok = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    assert_int_equal(feed_all(rx, ok, strlen(ok), 3, &req, NULL), HTTP_RX_REQUEST);
    assert_int_equal(req->body_len, 10);
    http_req_destroy(req);
    http_rx_destroy(rx);
}

static void test_rx_chunked_trailers_expect(void **state)
{
    (void)state;
    const char *r = "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer-X: t\r\n\r\n";
    http_rx_t *rx;
    assert_int_equal(http_rx_create(NULL, &rx), 0);
    size_t used;
    assert_int_equal(http_rx_feed(rx, r, strlen(r), &used), HTTP_RX_HEAD);
    assert_true(http_rx_expect_continue(rx));
    assert_int_equal(http_rx_phase(rx), HTTP_RX_IN_BODY);
    http_req_t *req;
    assert_int_equal(feed_all(rx, r + used, strlen(r) - used, 2, &req, NULL), HTTP_RX_REQUEST);
    assert_int_equal(req->method, HTTP_METHOD_PUT);
    assert_int_equal(req->body_len, 11);
    assert_memory_equal(req->body, "hello world", 11);
    assert_null(http_req_header(req, "Trailer-X"));
    http_req_destroy(req);
    /* HTTP/1.0: no keep-alive unless asked, no 100-continue. */
    const char *r10 = "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
    http_rx_destroy(rx);
    assert_int_equal(http_rx_create(NULL, &rx), 0);
    assert_int_equal(feed_all(rx, r10, strlen(r10), 100, &req, NULL), HTTP_RX_REQUEST);
    assert_false(req->keep_alive);
    assert_false(http_rx_expect_continue(rx));
    http_req_destroy(req);
    /* Unknown methods reach the handler. */
    http_rx_destroy(rx);
    assert_int_equal(http_rx_create(NULL, &rx), 0);
    const char *rp = "PROPFIND /x HTTP/1.1\r\n\r\n";
    assert_int_equal(feed_all(rx, rp, strlen(rp), 100, &req, NULL), HTTP_RX_REQUEST);
    assert_int_equal(req->method, HTTP_METHOD_OTHER);
    assert_string_equal(req->method_name, "PROPFIND");
    /* A request outside a server answers ST_ECLOSED and is freed. */
    assert_int_equal(http_respond(req, 200, NULL, "", 0), ST_ECLOSED);
    http_rx_destroy(rx);
}

/* ---- server fixture ----------------------------------------------------- */

typedef struct fx fx_t;
typedef void (*client_fn)(fx_t *fx);

struct fx {
    uv_loop_t loop;
    uv_async_t done;
    uv_async_t kick; /* close the server early (graceful close test) */
    int srv_closing;
    uv_timer_t watchdog;
    http_server_t *srv;
    metrics_t *reg;
    int port;
    pthread_t thr;
    client_fn client;
    const char *err; /* first failed check in the client thread */
    int err_line;
    int timed_out;
    int closed;
    http_stats_t stats;
    /* handler observations */
    int handled;
    int async_rc;
    int async_fired;
    int notified_closed;
    int stream_paused;
    int stream_done_rc;
};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (!fx->err) {                                                                        \
                fx->err = #cond;                                                                   \
                fx->err_line = __LINE__;                                                           \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Async response after a timer. */
typedef struct delayed {
    uv_timer_t t;
    http_req_t *req;
    fx_t *fx;
} delayed_t;

static void free_handle(uv_handle_t *h)
{
    free(h->data);
}

static void on_delayed(uv_timer_t *t)
{
    delayed_t *d = t->data;
    d->fx->async_fired = 1;
    d->fx->async_rc = http_respond(d->req, 200, "text/plain", "late", 4);
    uv_close((uv_handle_t *)t, free_handle);
}

static void on_req_notify(http_req_t *req, int ev, void *arg)
{
    (void)req;
    fx_t *fx = arg;
    if (ev == ST_ECLOSED)
        fx->notified_closed++;
}

/* Streaming: n chunks of size bytes, pausing on backpressure. */
typedef struct streamer {
    http_req_t *req;
    fx_t *fx;
    int left;
    size_t size;
    char *chunk;
    int seq;
} streamer_t;

static void stream_finish(streamer_t *s)
{
    s->fx->stream_done_rc = http_respond_end(s->req);
    free(s->chunk);
    free(s);
}

static void stream_pump(streamer_t *s)
{
    while (s->left > 0) {
        memset(s->chunk, 'a' + s->seq % 26, s->size);
        s->seq++;
        s->left--;
        int rc = http_respond_chunk(s->req, s->chunk, s->size);
        if (rc < 0) {
            stream_finish(s);
            return;
        }
        if (rc == 1) {
            s->fx->stream_paused++;
            return; /* resumed by the drain notification */
        }
    }
    stream_finish(s);
}

static void on_stream_notify(http_req_t *req, int ev, void *arg)
{
    (void)req;
    streamer_t *s = arg;
    if (ev == HTTP_NOTIFY_DRAIN)
        stream_pump(s);
    else
        stream_finish(s);
}

static void handler(http_req_t *req, void *arg)
{
    fx_t *fx = arg;
    fx->handled++;
    if (strcmp(req->path, "/echo") == 0) {
        int rc = http_req_decode_body(req, 1 << 20);
        if (rc) {
            http_respond_error(req, rc == ST_ELIMIT ? 413 : 400, st_strerror(rc));
            return;
        }
        st_buf_t b;
        st_buf_init(&b);
        char line[256];
        const char *q = http_req_param(req, "q");
        const char *xt = http_req_header(req, "x-test");
        int n = snprintf(line, sizeof line, "%s %s q=%s x=%s n=%zu len=%zu:", req->method_name,
                         req->path, q ? q : "-", xt ? xt : "-", req->params.n, req->body_len);
        st_buf_append(&b, line, (size_t)n);
        st_buf_append(&b, req->body, req->body_len);
        http_header_t extra[] = {{"X-Echo", "1"}};
        http_respond_headers(req, 200, "text/plain", extra, 1, b.data, b.len);
        st_buf_deinit(&b);
    } else if (strcmp(req->path, "/async") == 0) {
        const char *ms = http_req_param(req, "ms");
        if (http_req_param(req, "drop")) { /* done with the body: it stops counting */
            http_req_drop_body(req);
            if (req->body_len != 0 || req->body[0] != '\0')
                fx->async_rc = -1;
        }
        delayed_t *d = calloc(1, sizeof *d);
        d->req = req;
        d->fx = fx;
        http_req_notify(req, on_req_notify, fx);
        uv_timer_init(&fx->loop, &d->t);
        d->t.data = d;
        uv_timer_start(&d->t, on_delayed, ms ? (uint64_t)atoi(ms) : 50, 0);
    } else if (strcmp(req->path, "/stream") == 0) {
        streamer_t *s = calloc(1, sizeof *s);
        s->req = req;
        s->fx = fx;
        s->left = atoi(http_req_param(req, "n"));
        s->size = (size_t)atoi(http_req_param(req, "size"));
        s->chunk = malloc(s->size);
        http_req_notify(req, on_stream_notify, s);
        if (http_respond_start(req, 200, "application/x-ndjson") < 0) {
            free(s->chunk); /* req released by the failed start */
            free(s);
            return;
        }
        stream_pump(s);
    } else if (strcmp(req->path, "/bad") == 0) {
        http_header_t extra[] = {{"X-Evil", "a\r\nInjected: 1"}};
        fx->async_rc = http_respond_headers(req, 200, NULL, extra, 1, "x", 1);
    } else {
        http_respond_error(req, 404, "not found");
    }
}

static void *client_main(void *arg)
{
    fx_t *fx = arg;
    fx->client(fx);
    uv_async_send(&fx->done);
    return NULL;
}

static void on_srv_closed(void *arg)
{
    fx_t *fx = arg;
    fx->closed = 1;
}

static void close_server(fx_t *fx)
{
    if (fx->srv_closing)
        return;
    fx->srv_closing = 1;
    http_server_stats(fx->srv, &fx->stats);
    http_server_close(fx->srv, 1000, on_srv_closed, fx);
}

static void on_kick(uv_async_t *a)
{
    close_server(a->data);
}

static void on_done(uv_async_t *a)
{
    fx_t *fx = a->data;
    close_server(fx);
    uv_close((uv_handle_t *)&fx->done, NULL);
    uv_close((uv_handle_t *)&fx->kick, NULL);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    fx_t *fx = t->data;
    fx->timed_out = 1;
    uv_stop(&fx->loop);
}

static void run_fx(fx_t *fx, const http_limits_t *lim, client_fn client)
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(metrics_create(&fx->reg), 0);
    assert_int_equal(http_server_create(&fx->loop, "127.0.0.1", 0, lim, handler, fx, &fx->srv), 0);
    assert_int_equal(http_server_metrics(fx->srv, fx->reg, "test"), 0);
    fx->port = http_server_port(fx->srv);
    assert_true(fx->port > 0);
    uv_async_init(&fx->loop, &fx->done, on_done);
    fx->done.data = fx;
    uv_async_init(&fx->loop, &fx->kick, on_kick);
    fx->kick.data = fx;
    uv_timer_init(&fx->loop, &fx->watchdog);
    fx->watchdog.data = fx;
    uv_timer_start(&fx->watchdog, on_watchdog, 20000, 0);
    fx->client = client;
    assert_int_equal(pthread_create(&fx->thr, NULL, client_main, fx), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    pthread_join(fx->thr, NULL);
    if (fx->timed_out)
        fail_msg("watchdog fired");
    if (fx->err)
        fail_msg("client check failed at line %d: %s", fx->err_line, fx->err);
    assert_true(fx->closed);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void fx_teardown(fx_t *fx)
{
    metrics_destroy(fx->reg);
}

/* ---- blocking client ---------------------------------------------------- */

typedef struct cli {
    int fd;
    char buf[1 << 16];
    size_t len, off;
} cli_t;

static int cli_connect(cli_t *c, int port)
{
    c->len = c->off = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return connect(c->fd, (struct sockaddr *)&a, sizeof a);
}

static int cli_send(cli_t *c, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cli_sends(cli_t *c, const char *s)
{
    return cli_send(c, s, strlen(s));
}

/* Next byte, or -1 on EOF/error. */
static int cli_getc(cli_t *c)
{
    if (c->off == c->len) {
        ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (r <= 0)
            return -1;
        c->len = (size_t)r;
        c->off = 0;
    }
    return (unsigned char)c->buf[c->off++];
}

static int cli_line(cli_t *c, char *out, size_t cap)
{
    size_t n = 0;
    for (;;) {
        int ch = cli_getc(c);
        if (ch < 0)
            return -1;
        if (ch == '\n')
            break;
        if (ch != '\r' && n + 1 < cap)
            out[n++] = (char)ch;
    }
    out[n] = 0;
    return (int)n;
}

typedef struct resp {
    int status;
    int chunked;
    int close;
    long clen;
    char headers[2048];
    st_buf_t body;
} resp_t;

/* Read one response (head_only: HEAD request, no body). Returns 0 or -1. */
static int cli_response(cli_t *c, resp_t *r, int head_only)
{
    char line[4096];
    st_buf_init(&r->body);
    r->chunked = r->close = 0;
    r->clen = -1;
    r->headers[0] = 0;
    if (cli_line(c, line, sizeof line) < 0 || sscanf(line, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    for (;;) {
        int n = cli_line(c, line, sizeof line);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (strlen(r->headers) + (size_t)n + 2 < sizeof r->headers) {
            strcat(r->headers, line);
            strcat(r->headers, "\n");
        }
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            r->clen = atol(line + 15);
        if (strcasecmp(line, "Transfer-Encoding: chunked") == 0)
            r->chunked = 1;
        if (strcasecmp(line, "Connection: close") == 0)
            r->close = 1;
    }
    if (head_only || r->status == 100)
        return 0;
    if (r->chunked) {
        for (;;) {
            if (cli_line(c, line, sizeof line) < 0)
                return -1;
            long n = strtol(line, NULL, 16);
            for (long i = 0; i < n; i++) {
                int ch = cli_getc(c);
                if (ch < 0)
                    return -1;
                st_buf_put_u8(&r->body, (uint8_t)ch);
            }
            if (cli_line(c, line, sizeof line) != 0)
                return -1;
            if (n == 0)
                return 0;
        }
    }
    if (r->clen >= 0) {
        for (long i = 0; i < r->clen; i++) {
            int ch = cli_getc(c);
            if (ch < 0)
                return -1;
            st_buf_put_u8(&r->body, (uint8_t)ch);
        }
        return 0;
    }
    for (int ch; (ch = cli_getc(c)) >= 0;) /* until close */
        st_buf_put_u8(&r->body, (uint8_t)ch);
    return 0;
}

static int body_is(const resp_t *r, const char *s)
{
    return r->body.len == strlen(s) && memcmp(r->body.data, s, r->body.len) == 0;
}

/* 1 if the server closed the connection (EOF or reset) within ms. */
static int cli_closed_within(cli_t *c, int ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int64_t end = st_mono_ms() + ms;
    while (st_mono_ms() < end) {
        if (poll(&p, 1, 50) > 0) {
            char tmp[256];
            ssize_t r = recv(c->fd, tmp, sizeof tmp, MSG_DONTWAIT);
            if (r <= 0)
                return 1;
        }
    }
    return 0;
}

static void cli_close(cli_t *c)
{
    close(c->fd);
}

/* ---- server tests ------------------------------------------------------- */

static void client_get_post(fx_t *fx)
{
    cli_t *c = calloc(1, sizeof *c);
    resp_t r;
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /echo?q=a%20b&x=1 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200);
    CHECK(strstr(r.headers, "X-Echo: 1") != NULL);
    CHECK(strstr(r.headers, "Content-Type: text/plain") != NULL);
    CHECK(body_is(&r, "GET /echo q=a b x=yes n=2 len=0:"));
    st_buf_deinit(&r.body);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200);
    CHECK(body_is(&r, "POST /echo q=- x=- n=0 len=11:hello world"));
    st_buf_deinit(&r.body);
    /* HEAD: Content-Length, no body. */
    CHECK(cli_sends(c, "HEAD /echo HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 1) == 0);
    CHECK(r.status == 200 && r.clen == (long)strlen("HEAD /echo q=- x=- n=0 len=0:"));
    st_buf_deinit(&r.body);
    /* Unknown path and method reach the handler. */
    CHECK(cli_sends(c, "PATCH /pot HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 404 && body_is(&r, "{\"status\":\"error\",\"error\":\"not found\"}"));
    st_buf_deinit(&r.body);
    /* Header injection attempt by the handler -> 500, connection closed. */
    CHECK(cli_sends(c, "GET /bad HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 500 && r.close);
    CHECK(strstr(r.headers, "Injected") == NULL);
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 2000));
    cli_close(c);
    free(c);
}

static void test_server_get_post(void **state)
{
    (void)state;
    fx_t fx;
    run_fx(&fx, NULL, client_get_post);
    assert_int_equal(fx.handled, 5);
    assert_int_equal(fx.async_rc, ST_EINVAL);
    assert_int_equal(fx.stats.requests, 5);
    assert_int_equal(fx.stats.responses[2], 3);
    assert_int_equal(fx.stats.responses[4], 1);
    assert_int_equal(fx.stats.responses[5], 1);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(metrics_render(fx.reg, &b), 0);
    st_buf_put_u8(&b, 0);
    assert_non_null(strstr((char *)b.data, "strata_http_requests_total{server=\"test\"} 5\n"));
    assert_non_null(
        strstr((char *)b.data, "strata_http_responses_total{server=\"test\",code=\"2xx\"} 3\n"));
    assert_non_null(strstr((char *)b.data, "strata_http_request_duration_seconds_count{server="
                                           "\"test\"} 5\n"));
    assert_non_null(strstr((char *)b.data, "strata_http_open_connections{server=\"test\"} 0\n"));
    st_buf_deinit(&b);
    fx_teardown(&fx);
}

static void client_keepalive_pipeline(fx_t *fx)
{
    cli_t *c = calloc(1, sizeof *c);
    resp_t r;
    CHECK(cli_connect(c, fx->port) == 0);
    for (int i = 0; i < 5; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET /echo?q=%d HTTP/1.1\r\n\r\n", i);
        CHECK(cli_sends(c, req) == 0);
        CHECK(cli_response(c, &r, 0) == 0);
        char want[64];
        snprintf(want, sizeof want, "GET /echo q=%d x=- n=1 len=0:", i);
        CHECK(r.status == 200 && body_is(&r, want) && !r.close);
        st_buf_deinit(&r.body);
    }
    /* Three pipelined requests in one write, the middle one async: answered
     * in order. */
    CHECK(cli_sends(c, "GET /echo?q=A HTTP/1.1\r\n\r\nGET /async?ms=100 HTTP/1.1\r\n\r\n"
                       "POST /echo?q=C HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(body_is(&r, "GET /echo q=A x=- n=1 len=0:"));
    st_buf_deinit(&r.body);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(body_is(&r, "late"));
    st_buf_deinit(&r.body);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(body_is(&r, "POST /echo q=C x=- n=1 len=3:abc"));
    st_buf_deinit(&r.body);
    /* Connection: close is honoured. */
    CHECK(cli_sends(c, "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && r.close);
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 2000));
    cli_close(c);
    /* HTTP/1.0 without keep-alive: closed after the response. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /echo HTTP/1.0\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && r.close);
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 2000));
    cli_close(c);
    /* HTTP/1.0 with keep-alive. */
    CHECK(cli_connect(c, fx->port) == 0);
    for (int i = 0; i < 2; i++) {
        CHECK(cli_sends(c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0);
        CHECK(cli_response(c, &r, 0) == 0);
        CHECK(r.status == 200 && !r.close);
        CHECK(strstr(r.headers, "Connection: keep-alive") != NULL);
        st_buf_deinit(&r.body);
    }
    cli_close(c);
    free(c);
}

static void test_server_keepalive_pipeline(void **state)
{
    (void)state;
    fx_t fx;
    run_fx(&fx, NULL, client_keepalive_pipeline);
    assert_int_equal(fx.handled, 12);
    assert_int_equal(fx.async_rc, 0);
    fx_teardown(&fx);
}

static void client_limits(fx_t *fx)
{
    cli_t *c = calloc(1, sizeof *c);
    resp_t r;
    /* 413 on Content-Length before any body byte. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 413 && r.close);
    CHECK(strstr((char *)r.body.data, "\"error\":\"request body too large\"") != NULL);
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 3000));
    cli_close(c);
    /* 413 on a chunked body as it arrives, while the client keeps sending. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 0);
    char chunk[4096 + 16];
    snprintf(chunk, sizeof chunk, "1000\r\n");
    memset(chunk + 6, 'z', 4096);
    memcpy(chunk + 6 + 4096, "\r\n", 2);
    for (int i = 0; i < 40; i++)
        if (cli_send(c, chunk, 6 + 4096 + 2) != 0)
            break;
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 413);
    st_buf_deinit(&r.body);
    cli_close(c);
    /* Malformed -> 400 and close. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "THIS IS NOT HTTP\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 400 && r.close);
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 3000));
    cli_close(c);
    /* Headers too large -> 431. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /echo HTTP/1.1\r\n") == 0);
    for (int i = 0; i < 100; i++)
        if (cli_sends(c, "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n") != 0)
            break;
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 431);
    st_buf_deinit(&r.body);
    cli_close(c);
    /* Chunked body within the limit; gzip body. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && body_is(&r, "POST /echo q=- x=- n=0 len=11:hello world"));
    st_buf_deinit(&r.body);
    unsigned char gz[256];
    uLongf gzlen = sizeof gz;
    {
        z_stream z;
        memset(&z, 0, sizeof z);
        deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
        z.next_in = (unsigned char *)"compressed line\n";
        z.avail_in = 16;
        z.next_out = gz;
        z.avail_out = sizeof gz;
        deflate(&z, Z_FINISH);
        gzlen = sizeof gz - z.avail_out;
        deflateEnd(&z);
    }
    char head[256];
    snprintf(head, sizeof head,
             "POST /echo HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: %lu\r\n\r\n",
             (unsigned long)gzlen);
    CHECK(cli_sends(c, head) == 0 && cli_send(c, gz, gzlen) == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && body_is(&r, "POST /echo q=- x=- n=0 len=16:compressed line\n"));
    st_buf_deinit(&r.body);
    /* Expect: 100-continue. */
    CHECK(cli_sends(
              c, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 100);
    st_buf_deinit(&r.body);
    CHECK(cli_sends(c, "body") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && body_is(&r, "POST /echo q=- x=- n=0 len=4:body"));
    st_buf_deinit(&r.body);
    cli_close(c);
    free(c);
}

static void test_server_limits(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_body_bytes = 64 * 1024;
    lim.max_header_bytes = 2048;
    fx_t fx;
    run_fx(&fx, &lim, client_limits);
    assert_int_equal(fx.handled, 3);
    assert_int_equal(fx.stats.too_large, 2);
    assert_int_equal(fx.stats.bad_requests, 2);
    fx_teardown(&fx);
}

static void client_slowloris(fx_t *fx)
{
    cli_t *slow = calloc(1, sizeof *slow), *c = calloc(1, sizeof *c);
    resp_t r;
    int64_t t0 = st_mono_ms();
    CHECK(cli_connect(slow, fx->port) == 0);
    CHECK(cli_sends(slow, "GET /echo HTTP/1.1\r\n") == 0);
    /* Another client is served meanwhile. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /echo?q=fast HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200);
    st_buf_deinit(&r.body);
    /* Trickle a header line every 50 ms: the head deadline is total, not
     * idle, so the server cuts it at ~300 ms. */
    int closed = 0;
    while (st_mono_ms() - t0 < 3000) {
        if (cli_sends(slow, "X-A: b\r\n") != 0 || cli_closed_within(slow, 50)) {
            closed = 1;
            break;
        }
    }
    int64_t dt = st_mono_ms() - t0;
    CHECK(closed);
    CHECK(dt >= 250 && dt < 2000);
    /* Idle connection that never sends: closed by the same deadline. */
    cli_close(slow);
    t0 = st_mono_ms();
    CHECK(cli_connect(slow, fx->port) == 0);
    CHECK(cli_closed_within(slow, 3000));
    dt = st_mono_ms() - t0;
    CHECK(dt >= 250 && dt < 2000);
    /* Keep-alive idle after a request: closed by the keep-alive timeout. */
    cli_close(c);
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /echo HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    st_buf_deinit(&r.body);
    t0 = st_mono_ms();
    CHECK(cli_closed_within(c, 3000));
    dt = st_mono_ms() - t0;
    CHECK(dt >= 350 && dt < 2000);
    /* Body idle timeout. */
    cli_close(c);
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nab") == 0);
    t0 = st_mono_ms();
    CHECK(cli_closed_within(c, 3000));
    dt = st_mono_ms() - t0;
    CHECK(dt >= 150 && dt < 2000);
    cli_close(c);
    cli_close(slow);
    free(c);
    free(slow);
}

static void test_server_slowloris(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.header_timeout_ms = 300;
    lim.keepalive_timeout_ms = 400;
    lim.body_timeout_ms = 200;
    fx_t fx;
    run_fx(&fx, &lim, client_slowloris);
    assert_int_equal(fx.handled, 2);
    assert_int_equal(fx.stats.timeouts, 3);
    fx_teardown(&fx);
}

/* Connection bounds: a body trickled byte by byte is cut by
 * request_timeout although no gap reaches body_timeout; an idle keep-alive
 * connection is closed; a body that would take the server over
 * max_inflight_bytes gets 503 + Retry-After and a close, and the room comes
 * back once the request holding it is answered (a body over the budget by
 * itself is a 413); a NUL in a parameter is a
 * 400 naming it. Each cut is counted by reason. */
static void client_conn_bounds(fx_t *fx)
{
    cli_t *c = calloc(1, sizeof *c), *h = calloc(1, sizeof *h);
    resp_t r;
    /* slow body: one byte every 50 ms, never a 10 s gap */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n") == 0);
    int closed = 0;
    for (int i = 0; i < 100 && !closed; i++)
        closed = cli_sends(c, "x") != 0 || cli_closed_within(c, 50);
    CHECK(closed);
    cli_close(c);
    /* idle keep-alive */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /echo HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0 && r.status == 200 && !r.close);
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 5000));
    cli_close(c);
    /* inflight: h's body is held by a handler that answers later */
    static char body[60000];
    memset(body, 'b', sizeof body);
    CHECK(cli_connect(h, fx->port) == 0);
    CHECK(cli_sends(h, "POST /async?ms=1500 HTTP/1.1\r\nContent-Length: 60000\r\n\r\n") == 0);
    CHECK(cli_send(h, body, sizeof body) == 0);
    for (int i = 0; i < 200 && fx->handled < 2; i++) /* the GET, then the async POST */
        usleep(10 * 1000);
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 60000\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 503 && r.close && strstr(r.headers, "Retry-After: ") != NULL);
    CHECK(strstr((char *)r.body.data, "\"errorType\":\"unavailable\"") != NULL);
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 5000));
    cli_close(c);
    CHECK(cli_response(h, &r, 0) == 0 && r.status == 200);
    st_buf_deinit(&r.body);
    cli_close(h);
    /* the held body no longer counts: the same request now goes through */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 60000\r\n\r\n") == 0);
    CHECK(cli_send(c, body, sizeof body) == 0);
    CHECK(cli_response(c, &r, 0) == 0 && r.status == 200);
    st_buf_deinit(&r.body);
    /* NUL in a query parameter */
    CHECK(cli_sends(c, "GET /echo?q=a%00b HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0 && r.status == 400 && r.close);
    CHECK(body_is(&r, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":"
                      "\"parameter \\\"q\\\": NUL byte at position 1\"}"));
    st_buf_deinit(&r.body);
    cli_close(c);
    /* a held request whose handler dropped its body (http_req_drop_body)
     * counts no more: a second body fits while it is still unanswered */
    int before = fx->handled;
    CHECK(cli_connect(h, fx->port) == 0);
    CHECK(cli_sends(h, "POST /async?ms=1500&drop=1 HTTP/1.1\r\nContent-Length: 60000\r\n\r\n") ==
          0);
    CHECK(cli_send(h, body, sizeof body) == 0);
    for (int i = 0; i < 500 && fx->handled < before + 1; i++)
        usleep(10 * 1000);
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 60000\r\n\r\n") == 0);
    CHECK(cli_send(c, body, sizeof body) == 0);
    CHECK(cli_response(c, &r, 0) == 0 && r.status == 200);
    st_buf_deinit(&r.body);
    CHECK(cli_response(h, &r, 0) == 0 && r.status == 200);
    st_buf_deinit(&r.body);
    cli_close(h);
    cli_close(c);
    /* a body over the whole budget by itself: 413, no retry can pass */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 150000\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0 && r.status == 413 && r.close);
    st_buf_deinit(&r.body);
    cli_close(c);
    free(c);
    free(h);
}

static void test_server_conn_bounds(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.request_timeout_ms = 400;
    lim.body_timeout_ms = 10000;
    lim.keepalive_timeout_ms = 300;
    lim.max_inflight_bytes = 100000;
    fx_t fx;
    run_fx(&fx, &lim, client_conn_bounds);
    assert_int_equal(fx.stats.closed[HTTP_CLOSE_BODY_TIMEOUT], 1);
    assert_true(fx.stats.closed[HTTP_CLOSE_IDLE] >= 1);
    assert_int_equal(fx.stats.closed[HTTP_CLOSE_INFLIGHT], 2);
    assert_int_equal(fx.stats.too_large, 1);
    assert_int_equal(fx.stats.inflight_bytes, 0);
    st_buf_t m;
    st_buf_init(&m);
    assert_int_equal(metrics_render(fx.reg, &m), 0);
    assert_non_null(strstr((char *)m.data, "strata_http_connections_closed_total{server=\"test\","
                                           "reason=\"inflight\"} 2"));
    st_buf_deinit(&m);
    fx_teardown(&fx);
}

static void client_disconnect(fx_t *fx)
{
    cli_t *c = calloc(1, sizeof *c);
    resp_t r;
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /async?ms=300 HTTP/1.1\r\n\r\n") == 0);
    usleep(50 * 1000);
    cli_close(c);
    /* The handler responds later; wait past it. */
    for (int i = 0; i < 100 && !fx->async_fired; i++)
        usleep(20 * 1000);
    /* The server still works. */
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /async?ms=10 HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && body_is(&r, "late"));
    st_buf_deinit(&r.body);
    cli_close(c);
    free(c);
}

static void test_server_client_disconnects(void **state)
{
    (void)state;
    fx_t fx;
    run_fx(&fx, NULL, client_disconnect);
    assert_int_equal(fx.handled, 2);
    assert_int_equal(fx.notified_closed, 1);
    fx_teardown(&fx);
}

static void client_stream(fx_t *fx)
{
    cli_t *c = calloc(1, sizeof *c);
    resp_t r;
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /stream?n=400&size=10000 HTTP/1.1\r\n\r\n") == 0);
    usleep(300 * 1000); /* let the queue fill up: backpressure */
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && r.chunked);
    CHECK(r.body.len == 400 * 10000);
    int ok = 1;
    for (size_t i = 0; i < r.body.len; i++)
        ok &= r.body.data[i] == 'a' + (i / 10000) % 26;
    CHECK(ok);
    st_buf_deinit(&r.body);
    /* The connection stays usable. */
    CHECK(cli_sends(c, "GET /echo HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200);
    st_buf_deinit(&r.body);
    /* HTTP/1.0: no chunking, body until close. */
    cli_close(c);
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /stream?n=3&size=5 HTTP/1.0\r\n\r\n") == 0);
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && !r.chunked && r.close);
    CHECK(body_is(&r, "aaaaabbbbbccccc"));
    st_buf_deinit(&r.body);
    cli_close(c);
    /* A client that goes away mid-stream: the producer hears ST_ECLOSED. */
    CHECK(cli_connect(c, fx->port) == 0);
    int small = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK(cli_sends(c, "GET /stream?n=100000&size=10000 HTTP/1.1\r\n\r\n") == 0);
    usleep(200 * 1000);
    cli_close(c);
    for (int i = 0; i < 100 && fx->stream_done_rc != ST_ECLOSED; i++)
        usleep(20 * 1000);
    free(c);
}

static void test_server_stream(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.write_high_water = 64 * 1024;
    fx_t fx;
    run_fx(&fx, &lim, client_stream);
    assert_true(fx.stream_paused > 0);
    assert_int_equal(fx.stream_done_rc, ST_ECLOSED);
    fx_teardown(&fx);
}

static void client_maxconn(fx_t *fx)
{
    cli_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *x = calloc(1, sizeof *x);
    resp_t r;
    CHECK(cli_connect(a, fx->port) == 0);
    CHECK(cli_connect(b, fx->port) == 0);
    CHECK(cli_sends(a, "GET /echo HTTP/1.1\r\n\r\n") == 0); /* make sure both are accepted */
    CHECK(cli_response(a, &r, 0) == 0);
    st_buf_deinit(&r.body);
    CHECK(cli_sends(b, "GET /echo HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(b, &r, 0) == 0);
    st_buf_deinit(&r.body);
    CHECK(cli_connect(x, fx->port) == 0);
    CHECK(cli_closed_within(x, 2000));
    cli_close(x);
    cli_close(a);
    usleep(100 * 1000);
    /* A slot is free again. */
    CHECK(cli_connect(x, fx->port) == 0);
    CHECK(cli_sends(x, "GET /echo HTTP/1.1\r\n\r\n") == 0);
    CHECK(cli_response(x, &r, 0) == 0);
    CHECK(r.status == 200);
    st_buf_deinit(&r.body);
    cli_close(x);
    cli_close(b);
    free(a);
    free(b);
    free(x);
}

static void test_server_max_connections(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_connections = 2;
    fx_t fx;
    run_fx(&fx, &lim, client_maxconn);
    assert_int_equal(fx.stats.rejected, 1);
    fx_teardown(&fx);
}

/* Server close while a request is in the handler: the grace period lets it
 * answer (with Connection: close). */
static void client_graceful(fx_t *fx)
{
    cli_t *c = calloc(1, sizeof *c);
    resp_t r;
    CHECK(cli_connect(c, fx->port) == 0);
    CHECK(cli_sends(c, "GET /async?ms=200 HTTP/1.1\r\n\r\n") == 0);
    usleep(50 * 1000);
    uv_async_send(&fx->kick); /* closes the server now */
    CHECK(cli_response(c, &r, 0) == 0);
    CHECK(r.status == 200 && r.close && body_is(&r, "late"));
    st_buf_deinit(&r.body);
    CHECK(cli_closed_within(c, 2000));
    cli_close(c);
    free(c);
}

static void test_server_graceful_close(void **state)
{
    (void)state;
    fx_t fx;
    run_fx(&fx, NULL, client_graceful);
    assert_int_equal(fx.async_rc, 0);
    fx_teardown(&fx);
}

static void test_server_bind_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    http_server_t *a, *b;
    assert_int_equal(http_server_create(&loop, "127.0.0.1", 0, NULL, handler, NULL, &a), 0);
    assert_int_equal(
        http_server_create(&loop, "127.0.0.1", http_server_port(a), NULL, handler, NULL, &b),
        ST_EBUSY);
    assert_int_equal(http_server_create(&loop, "no such host.invalid", 0, NULL, handler, NULL, &b),
                     ST_EINVAL);
    http_server_close(a, 0, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rx_basic),
        cmocka_unit_test(test_req_params_all),
        cmocka_unit_test(test_req_local_as),
        cmocka_unit_test(test_rx_pipelined_and_events),
        cmocka_unit_test(test_rx_errors),
        cmocka_unit_test(test_rx_chunked_trailers_expect),
        cmocka_unit_test(test_server_get_post),
        cmocka_unit_test(test_server_keepalive_pipeline),
        cmocka_unit_test(test_server_limits),
        cmocka_unit_test(test_server_slowloris),
        cmocka_unit_test(test_server_conn_bounds),
        cmocka_unit_test(test_server_client_disconnects),
        cmocka_unit_test(test_server_stream),
        cmocka_unit_test(test_server_max_connections),
        cmocka_unit_test(test_server_graceful_close),
        cmocka_unit_test(test_server_bind_errors),
    };
    /* a test client may write into a connection the server has just
     * closed (a refused request): an error to check, not a signal */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
