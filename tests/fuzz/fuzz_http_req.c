/*
 * fuzz_http_req — raw bytes through the HTTP request receiver (http_rx,
 * common/net/http_parse.c).
 *
 * The first byte picks small limits (so 413/414/431 are reachable) and the
 * second the piece size the input is cut into, as a socket would deliver
 * it. Every request that comes out is checked: NUL-terminated strings,
 * header names and values readable, body within max_body_bytes, query
 * parameters readable; the body is also run through gzip decoding. After an
 * error the receiver must stay in error and report a 4xx/5xx status.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "st_err.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static unsigned sink;

static void touch(const char *s)
{
    check(s != NULL);
    sink += (unsigned)strlen(s);
}

static void check_req(http_req_t *req, const http_limits_t *lim)
{
    touch(req->method_name);
    touch(req->url);
    touch(req->path);
    touch(req->query);
    touch(req->remote);
    check(strlen(req->url) <= lim->max_url_bytes);
    check(req->nheaders <= lim->max_headers);
    for (size_t i = 0; i < req->nheaders; i++) {
        touch(req->headers[i].name);
        touch(req->headers[i].value);
        check(http_req_header(req, req->headers[i].name) != NULL);
    }
    check(req->body != NULL && req->body_len <= lim->max_body_bytes);
    check(req->body[req->body_len] == 0);
    for (size_t i = 0; i < req->body_len; i++)
        sink += req->body[i];
    for (size_t i = 0; i < req->params.n; i++) {
        touch(req->params.items[i].key);
        touch(req->params.items[i].value);
    }
    int rc = http_req_decode_body(req, 4096);
    check(rc == 0 || rc == ST_EPROTO || rc == ST_ECORRUPT || rc == ST_ELIMIT);
    check(req->body[req->body_len] == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    http_limits_t lim;
    http_limits_default(&lim);
    if (data[0] & 1) {
        lim.max_header_bytes = 64 + (data[0] >> 1);
        lim.max_url_bytes = 16 + (data[0] >> 3);
        lim.max_headers = 1 + (data[0] >> 5);
        lim.max_body_bytes = 1 + (data[0] >> 2);
    }
    size_t step = 1 + data[1] % 64;
    if (data[1] >= 192)
        step = size; /* all at once */
    const char *s = (const char *)data + 2;
    size_t n = size - 2, off = 0;
    http_rx_t *rx;
    if (http_rx_create(&lim, &rx) != 0)
        return 0;
    int reqs = 0;
    while (off < n) {
        size_t piece = n - off < step ? n - off : step;
        size_t used;
        http_rx_event_t ev = http_rx_feed(rx, s + off, piece, &used);
        check(used <= piece);
        off += used;
        if (ev == HTTP_RX_REQUEST) {
            http_req_t *req = http_rx_take(rx);
            check(req != NULL);
            check_req(req, &lim);
            int ka = req->keep_alive;
            http_req_destroy(req);
            reqs++;
            if (!ka)
                break; /* a server would close here */
        } else if (ev == HTTP_RX_ERROR) {
            const char *reason;
            int st = http_rx_error(rx, &reason);
            check(st >= 400 && st <= 599);
            touch(reason);
            size_t u2;
            check(http_rx_feed(rx, "x", 1, &u2) == HTTP_RX_ERROR && u2 == 0);
            break;
        } else if (ev == HTTP_RX_MORE) {
            check(used == piece);
        }
    }
    http_rx_destroy(rx);
    (void)reqs;
    return 0;
}
