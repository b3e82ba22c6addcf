/*
 * http_parse — the HTTP/1.1 request parser: bytes in, complete requests
 * (or one error with its status) out; no sockets, no loop. See http.h
 * (http_rx_*); the fuzz target fuzz_http_req and unit_http drive it
 * directly, and http.c feeds it from each connection.
 *
 * How: http-parser callbacks collect the request
 * line and headers into one string buffer and the body into another. The
 * parser is paused at two points so the caller regains control: after the
 * headers (HTTP_RX_HEAD: 100-continue, timers) and after the message
 * (HTTP_RX_REQUEST). While in the head, at most max_header_bytes are ever
 * given to the parser, so the head limit is exact; the body is checked
 * against max_body_bytes on Content-Length before any body byte, and as it
 * arrives for chunked bodies.
 *
 * Every limit (head, URL, header count, body) is applied here, and every
 * error a client can cause is a status (400, 413, 414, 431, 505; 503 when
 * out of memory) with a fixed reason text that the server sends as JSON.
 */
#include "http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"

/* ---- limits ------------------------------------------------------------- */

void http_limits_default(http_limits_t *lim)
{
    lim->max_header_bytes = 16 * 1024;
    lim->max_url_bytes = 8 * 1024;
    lim->max_headers = 100;
    lim->max_body_bytes = 32 * 1024 * 1024;
    lim->header_timeout_ms = 10000;
    lim->body_timeout_ms = 30000;
    lim->request_timeout_ms = 60000;
    lim->keepalive_timeout_ms = 60000;
    lim->write_timeout_ms = 60000;
    lim->max_connections = 4096;
    lim->write_high_water = 1024 * 1024;
    lim->max_inflight_bytes = (size_t)2 << 30;
}

void http_limits_fill(http_limits_t *dst, const http_limits_t *src)
{
    http_limits_t d;
    http_limits_default(&d);
    if (!src) {
        *dst = d;
        return;
    }
    *dst = *src;
#define DEF(f)                                                                                     \
    if (dst->f == 0)                                                                               \
    dst->f = d.f
    DEF(max_header_bytes);
    DEF(max_url_bytes);
    DEF(max_headers);
    DEF(max_body_bytes);
    DEF(header_timeout_ms);
    DEF(body_timeout_ms);
    DEF(request_timeout_ms);
    DEF(keepalive_timeout_ms);
    DEF(write_timeout_ms);
    DEF(max_connections);
    DEF(write_high_water);
    DEF(max_inflight_bytes);
#undef DEF
}

/* ---- request ------------------------------------------------------------ */

void http_req_destroy(http_req_t *req)
{
    if (!req)
        return;
    req_priv_t *rp = http_req_priv(req);
    if (rp->inflight)
        *rp->inflight -= rp->inflight_bytes;
    st_buf_deinit(&rp->strs);
    st_buf_deinit(&rp->body);
    free(rp->hoff);
    free(rp->hdrs);
    free(rp->pathq);
    free(rp->sink_ctype);
    http_params_deinit(&rp->pub.params);
    free(rp);
}

const char *http_req_header(const http_req_t *req, const char *name)
{
    return http_header_find(req->headers, req->nheaders, name);
}

const char *http_req_param(const http_req_t *req, const char *name)
{
    return http_params_get(&req->params, name);
}

int http_req_params_all(const http_req_t *req, http_params_t *out)
{
    http_params_init(out);
    if (req->method == HTTP_METHOD_POST &&
        http_has_token(http_req_header(req, "Content-Type"), "application/x-www-form-urlencoded")) {
        int rc = http_params_parse(out, (const char *)req->body, req->body_len);
        if (rc)
            return rc;
    }
    /* the raw query string was already decoded once into req->params */
    return http_params_parse(out, req->query, strlen(req->query));
}

int http_req_decode_body(http_req_t *req, size_t max_out)
{
    req_priv_t *rp = http_req_priv(req);
    const char *ce = http_req_header(req, "Content-Encoding");
    if (!ce || !*ce || http_str_ieq(ce, "identity"))
        return 0;
    if (!http_str_ieq(ce, "gzip") && !http_str_ieq(ce, "x-gzip"))
        return ST_EPROTO;
    st_buf_t out;
    st_buf_init(&out);
    int rc = http_gunzip(rp->body.data, rp->body.len, max_out, &out);
    if (!rc)
        rc = st_buf_put_u8(&out, 0);
    if (rc) {
        st_buf_deinit(&out);
        return rc;
    }
    out.len--;
    st_buf_deinit(&rp->body);
    rp->body = out;
    req->body = rp->body.data;
    req->body_len = rp->body.len;
    return 0;
}

/* ---- request receiver --------------------------------------------------- */

static int rx_fail(http_rx_t *rx, int status, const char *reason)
{
    if (!rx->err_status) {
        rx->err_status = status;
        rx->err_reason = reason;
    }
    return -1;
}

static int method_code(unsigned m)
{
    switch (m) {
    case HTTP_GET:
        return HTTP_METHOD_GET;
    case HTTP_HEAD:
        return HTTP_METHOD_HEAD;
    case HTTP_POST:
        return HTTP_METHOD_POST;
    case HTTP_PUT:
        return HTTP_METHOD_PUT;
    case HTTP_DELETE:
        return HTTP_METHOD_DELETE;
    case HTTP_OPTIONS:
        return HTTP_METHOD_OPTIONS;
    case HTTP_PATCH:
        return HTTP_METHOD_PATCH;
    default:
        return HTTP_METHOD_OTHER;
    }
}

static int on_message_begin(http_parser *p)
{
    http_rx_t *rx = p->data;
    if (rx->req)
        return rx_fail(rx, 500, "internal error: request not taken");
    req_priv_t *rp = calloc(1, sizeof *rp);
    if (!rp)
        return rx_fail(rx, 503, "out of memory");
    st_buf_init(&rp->strs);
    st_buf_init(&rp->body);
    http_params_init(&rp->pub.params);
    rx->req = rp;
    rx->phase = HTTP_RX_IN_HEAD;
    rx->last = LAST_NONE;
    rx->expect_continue = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_rx_t *rx = p->data;
    req_priv_t *rp = rx->req;
    if (rp->url_len + len > rx->lim.max_url_bytes)
        return rx_fail(rx, 414, "request URL too long");
    if (st_buf_append(&rp->strs, at, len))
        return rx_fail(rx, 503, "out of memory");
    rp->url_len += len;
    return 0;
}

/* Close the current value: trim trailing whitespace, add the NUL. */
static int end_value(req_priv_t *rp)
{
    size_t voff = rp->hoff[2 * (rp->nh - 1) + 1];
    while (rp->strs.len > voff &&
           (rp->strs.data[rp->strs.len - 1] == ' ' || rp->strs.data[rp->strs.len - 1] == '\t'))
        rp->strs.len--;
    return st_buf_put_u8(&rp->strs, 0);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_rx_t *rx = p->data;
    req_priv_t *rp = rx->req;
    if (rx->phase == HTTP_RX_IN_BODY)
        return 0; /* trailers are ignored */
    if (rx->last != LAST_FIELD) {
        int rc = 0;
        if (rx->last == LAST_NONE)
            rc = st_buf_put_u8(&rp->strs, 0); /* end of the URL */
        else
            rc = end_value(rp);
        if (rc)
            return rx_fail(rx, 503, "out of memory");
        if (rp->nh >= rx->lim.max_headers)
            return rx_fail(rx, 431, "too many header fields");
        if (rp->nh == rp->hcap) {
            size_t cap = rp->hcap ? rp->hcap * 2 : 16;
            size_t *h = realloc(rp->hoff, cap * 2 * sizeof *h);
            if (!h)
                return rx_fail(rx, 503, "out of memory");
            rp->hoff = h;
            rp->hcap = cap;
        }
        rp->hoff[2 * rp->nh] = rp->strs.len;
        rp->hoff[2 * rp->nh + 1] = 0;
        rp->nh++;
        rx->last = LAST_FIELD;
    }
    if (memchr(at, 0, len) || st_buf_append(&rp->strs, at, len))
        return rx_fail(rx, 400, "invalid header name");
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_rx_t *rx = p->data;
    req_priv_t *rp = rx->req;
    if (rx->phase == HTTP_RX_IN_BODY)
        return 0;
    if (rx->last != LAST_VALUE) {
        if (st_buf_put_u8(&rp->strs, 0))
            return rx_fail(rx, 503, "out of memory");
        rp->hoff[2 * (rp->nh - 1) + 1] = rp->strs.len;
        rx->last = LAST_VALUE;
    }
    if (memchr(at, 0, len))
        return rx_fail(rx, 400, "invalid header value");
    if (st_buf_append(&rp->strs, at, len))
        return rx_fail(rx, 503, "out of memory");
    return 0;
}

/* RFC 9110 token: 1*tchar. */
static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return 0;
    }
    return 1;
}

/* Split the request target into the decoded path and the raw query. */
static int parse_target(http_rx_t *rx, req_priv_t *rp)
{
    const char *url = (const char *)rp->strs.data;
    size_t ulen = rp->url_len;
    const char *path = url, *query = "";
    size_t plen = ulen, qlen = 0;
    int decode = 1;
    if (rx->p.method == HTTP_CONNECT || (ulen == 1 && url[0] == '*')) {
        decode = 0;
    } else if (ulen > 0 && url[0] == '/') {
        const char *q = memchr(url, '?', ulen);
        const char *h = memchr(url, '#', ulen);
        const char *pend = q && (!h || q < h) ? q : h ? h : url + ulen;
        plen = (size_t)(pend - url);
        if (q && (!h || q < h)) {
            query = q + 1;
            qlen = (size_t)((h ? h : url + ulen) - query);
        }
    } else {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (ulen == 0 || http_parser_parse_url(url, ulen, 0, &u) != 0)
            return rx_fail(rx, 400, "invalid request target");
        if (u.field_set & (1 << UF_PATH)) {
            path = url + u.field_data[UF_PATH].off;
            plen = u.field_data[UF_PATH].len;
        } else {
            path = "/";
            plen = 1;
        }
        if (u.field_set & (1 << UF_QUERY)) {
            query = url + u.field_data[UF_QUERY].off;
            qlen = u.field_data[UF_QUERY].len;
        }
    }
    rp->pathq = malloc(plen + qlen + 2);
    if (!rp->pathq)
        return rx_fail(rx, 503, "out of memory");
    long dl = (long)plen;
    if (decode)
        dl = http_pct_decode(rp->pathq, path, plen, 0);
    else
        memcpy(rp->pathq, path, plen);
    if (dl < 0 || memchr(rp->pathq, 0, (size_t)dl))
        return rx_fail(rx, 400, "invalid escape in request path");
    rp->pathq[dl] = 0;
    char *qcopy = rp->pathq + dl + 1;
    memcpy(qcopy, query, qlen);
    qcopy[qlen] = 0;
    rp->pub.path = rp->pathq;
    rp->pub.query = qcopy;
    int rc = http_params_parse(&rp->pub.params, query, qlen);
    if (rc == ST_EPARSE) {
        /* which parameter and where, so the sender can find its bug */
        snprintf(rx->err_buf, sizeof rx->err_buf, "%s", rp->pub.params.err);
        return rx_fail(rx, 400, rx->err_buf);
    }
    if (rc)
        return rx_fail(rx, 503, "out of memory");
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_rx_t *rx = p->data;
    req_priv_t *rp = rx->req;
    int rc = 0;
    if (rx->last == LAST_NONE)
        rc = st_buf_put_u8(&rp->strs, 0);
    else if (rx->last == LAST_FIELD)
        return rx_fail(rx, 400, "header without value");
    else
        rc = end_value(rp);
    if (rc)
        return rx_fail(rx, 503, "out of memory");
    /* strs does not grow from here on: pointers into it are stable. */
    for (size_t i = 0; i < rp->nh; i++)
        if (!is_token((const char *)rp->strs.data + rp->hoff[2 * i]))
            return rx_fail(rx, 400, "invalid header name");
    if (rp->nh) {
        rp->hdrs = malloc(rp->nh * sizeof *rp->hdrs);
        if (!rp->hdrs)
            return rx_fail(rx, 503, "out of memory");
        for (size_t i = 0; i < rp->nh; i++) {
            rp->hdrs[i].name = (const char *)rp->strs.data + rp->hoff[2 * i];
            rp->hdrs[i].value = (const char *)rp->strs.data + rp->hoff[2 * i + 1];
        }
    }
    if (p->http_major != 1 || p->http_minor > 1)
        return rx_fail(rx, 505, "HTTP version not supported (use HTTP/1.0 or HTTP/1.1)");
    http_req_t *r = &rp->pub;
    r->headers = rp->hdrs;
    r->nheaders = rp->nh;
    r->url = (const char *)rp->strs.data;
    r->method = method_code(p->method);
    r->method_name = http_method_str((enum http_method)p->method);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->remote = rp->remote;
    rp->head_only = p->method == HTTP_HEAD;
    if (parse_target(rx, rp))
        return -1;
    int has_body =
        (p->flags & F_CHUNKED) ||
        ((p->flags & F_CONTENTLENGTH) && p->content_length > 0 && p->content_length != ULLONG_MAX);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length != ULLONG_MAX) {
        if (p->content_length > rx->lim.max_body_bytes)
            return rx_fail(rx, 413, "request body too large");
        rp->expect_len = p->content_length;
    }
    rx->expect_continue = has_body && (p->http_major > 1 || p->http_minor >= 1) &&
                          http_has_token(http_req_header(r, "Expect"), "100-continue");
    rx->phase = HTTP_RX_IN_BODY;
    rx->ev = HTTP_RX_HEAD;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_rx_t *rx = p->data;
    req_priv_t *rp = rx->req;
    st_buf_t *b = &rp->body;
    if (len > rx->lim.max_body_bytes - b->len)
        return rx_fail(rx, 413, "request body too large");
    if (len > b->cap - b->len) {
        /* Grow geometrically (x4: a 4 MiB write is copied about 1.3x, not
         * 2x, on its way in), but never past the announced length (so a
         * lying Content-Length costs nothing until the bytes arrive). */
        size_t need = b->len + len;
        size_t cap = b->cap ? b->cap * 4 : 4096;
        if (rp->expect_len && cap > rp->expect_len)
            cap = rp->expect_len;
        if (cap > rx->lim.max_body_bytes)
            cap = rx->lim.max_body_bytes;
        if (cap < need)
            cap = need;
        uint8_t *d = realloc(b->data, cap + 1); /* + NUL */
        if (!d)
            return rx_fail(rx, 503, "out of memory");
        b->data = d;
        b->cap = cap + 1;
    }
    if (at != (const char *)b->data + b->len) /* else read in place (http_rx_body_window) */
        memcpy(b->data + b->len, at, len);
    b->len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_rx_t *rx = p->data;
    req_priv_t *rp = rx->req;
    if (st_buf_put_u8(&rp->body, 0))
        return rx_fail(rx, 503, "out of memory");
    rp->body.len--;
    rp->pub.body = rp->body.data;
    rp->pub.body_len = rp->body.len;
    rp->pub.keep_alive = http_should_keep_alive(p) && !p->upgrade && p->method != HTTP_CONNECT;
    rx->ready = 1;
    rx->ev = HTTP_RX_REQUEST;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings rx_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_rx_init(http_rx_t *rx, const http_limits_t *lim)
{
    memset(rx, 0, sizeof *rx);
    http_limits_fill(&rx->lim, lim);
    http_parser_init(&rx->p, HTTP_REQUEST);
    rx->p.data = rx;
}

void http_rx_deinit(http_rx_t *rx)
{
    http_req_destroy(rx->req ? &rx->req->pub : NULL);
    rx->req = NULL;
}

int http_rx_create(const http_limits_t *lim, http_rx_t **out)
{
    http_rx_t *rx = malloc(sizeof *rx);
    if (!rx)
        return ST_ENOMEM;
    http_rx_init(rx, lim);
    *out = rx;
    return 0;
}

void http_rx_destroy(http_rx_t *rx)
{
    if (!rx)
        return;
    http_rx_deinit(rx);
    free(rx);
}

http_rx_event_t http_rx_feed(http_rx_t *rx, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (rx->dead)
        return HTTP_RX_ERROR;
    if (rx->ready)
        return HTTP_RX_REQUEST;
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        int in_head = rx->phase != HTTP_RX_IN_BODY;
        if (in_head && rx->head_bytes >= rx->lim.max_header_bytes) {
            rx_fail(rx, 431, "request header fields too large");
            rx->dead = 1;
            *used = off;
            return HTTP_RX_ERROR;
        }
        if (in_head && n > rx->lim.max_header_bytes - rx->head_bytes)
            n = rx->lim.max_header_bytes - rx->head_bytes;
        rx->ev = HTTP_RX_MORE;
        size_t got = http_parser_execute(&rx->p, &rx_settings, data + off, n);
        if (got > n)
            got = n;
        off += got;
        if (in_head)
            rx->head_bytes += got;
        enum http_errno e = HTTP_PARSER_ERRNO(&rx->p);
        if (e == HPE_PAUSED) {
            http_parser_pause(&rx->p, 0);
            if (rx->ev != HTTP_RX_MORE) {
                *used = off;
                return (http_rx_event_t)rx->ev;
            }
        } else if (e != HPE_OK || got < n) {
            if (e == HPE_HEADER_OVERFLOW)
                rx_fail(rx, 431, "request header fields too large");
            else if (e == HPE_INVALID_METHOD)
                rx_fail(rx, 400, "invalid HTTP method");
            else
                rx_fail(rx, 400, "malformed HTTP request");
            rx->dead = 1;
            *used = off;
            return HTTP_RX_ERROR;
        }
    }
    *used = off;
    return HTTP_RX_MORE;
}

http_req_t *http_rx_take(http_rx_t *rx)
{
    if (!rx->ready)
        return NULL;
    req_priv_t *rp = rx->req;
    rx->req = NULL;
    rx->ready = 0;
    rx->phase = HTTP_RX_IDLE;
    rx->head_bytes = 0;
    return &rp->pub;
}

int http_rx_error(const http_rx_t *rx, const char **reason)
{
    if (reason)
        *reason = rx->err_reason ? rx->err_reason : "bad request";
    return rx->err_status ? rx->err_status : 400;
}

size_t http_rx_body_bytes(const http_rx_t *rx)
{
    const req_priv_t *rp = rx->req;
    if (!rp || rx->phase != HTTP_RX_IN_BODY || (rp->body.len == 0 && rp->expect_len == 0))
        return 0; /* no body (the empty buffer holding the final NUL is not one) */
    return rp->body.cap > rp->expect_len ? rp->body.cap : (size_t)rp->expect_len;
}

int http_rx_body_window(http_rx_t *rx, char **p, size_t *n)
{
    req_priv_t *rp = rx->req;
    if (!rp || rx->phase != HTTP_RX_IN_BODY || rx->ready || rx->dead || !rp->expect_len ||
        rp->body.len >= rp->expect_len)
        return 0;
    st_buf_t *b = &rp->body;
    if (b->cap < rp->expect_len + 1) { /* + NUL, as on_body keeps */
        uint8_t *d = realloc(b->data, rp->expect_len + 1);
        if (!d)
            return 0;
        b->data = d;
        b->cap = rp->expect_len + 1;
    }
    *p = (char *)b->data + b->len;
    *n = rp->expect_len - b->len;
    return 1;
}

http_rx_phase_t http_rx_phase(const http_rx_t *rx)
{
    return rx->phase;
}

int http_rx_expect_continue(const http_rx_t *rx)
{
    return rx->expect_continue;
}
