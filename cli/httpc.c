/*
 * httpc — blocking HTTP/1.1 client. See httpc.h.
 *
 * The response parser is http-parser (HTTP_RESPONSE mode) driven by
 * httpc_resp_feed(). The callbacks collect the status, the reason phrase and
 * the two headers the CLI reads (Content-Type, Retry-After); Content-Length,
 * chunked framing, keep-alive and read-until-close come from the parser.
 * The callbacks that end a framing phase (headers complete, chunk header,
 * chunk complete, message complete) pause the parser, so each
 * http_parser_execute() call stays inside one phase and the bytes it consumed
 * can be charged to that phase's limit:
 *
 *   HEAD  status line + headers       at most HTTPC_MAX_HEAD      (ST_ELIMIT)
 *   LINE  a chunk-size line           at most MAX_CHUNK_LINE      (ST_EPROTO)
 *   DATA  body bytes (to the callback)
 *   TRAIL the trailer after chunk 0   at most HTTPC_MAX_HEAD      (ST_ELIMIT)
 *
 * The message-complete pause also leaves any bytes after the message
 * unconsumed. Interim 1xx responses are skipped; HEAD responses, 204 and 304
 * have no body whatever their headers say.
 */
#include "httpc.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "st_err.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "dev"
#endif

#define MAX_CHUNK_LINE 1024

double httpc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- URLs ------------------------------------------------------------------------------ */

int httpc_url_parse(const char *s, httpc_url_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return ST_EINVAL;
    /* http-parser wants a scheme: add it to "HOST:PORT[/PREFIX]" */
    char buf[1024];
    bool has_scheme = strstr(s, "://") != NULL;
    int n = snprintf(buf, sizeof(buf), "%s%s", has_scheme ? "" : "http://", s);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return ST_EINVAL;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(buf, (size_t)n, 0, &u) != 0)
        return ST_EINVAL;
#define HAS(f) ((u.field_set & (1 << (f))) != 0)
#define OFF(f) (u.field_data[f].off)
#define LEN(f) (u.field_data[f].len)
    /* http or https; no userinfo, query, fragment or IPv6 literal */
    bool tls =
        HAS(UF_SCHEMA) && LEN(UF_SCHEMA) == 5 && strncasecmp(buf + OFF(UF_SCHEMA), "https", 5) == 0;
    if (!HAS(UF_SCHEMA) ||
        (!tls && (LEN(UF_SCHEMA) != 4 || strncasecmp(buf + OFF(UF_SCHEMA), "http", 4) != 0)) ||
        !HAS(UF_HOST) || LEN(UF_HOST) == 0 || HAS(UF_USERINFO) || HAS(UF_QUERY) ||
        HAS(UF_FRAGMENT) || buf[OFF(UF_HOST) - 1] == '[' || LEN(UF_HOST) >= sizeof(out->host))
        return ST_EINVAL;
    if (HAS(UF_PORT) && (LEN(UF_PORT) == 0 || u.port == 0))
        return ST_EINVAL;
    memcpy(out->host, buf + OFF(UF_HOST), LEN(UF_HOST));
    out->port = HAS(UF_PORT) ? u.port : tls ? 443 : 80;
    out->tls = tls;
    size_t plen = HAS(UF_PATH) ? LEN(UF_PATH) : 0;
    const char *path = buf + (HAS(UF_PATH) ? OFF(UF_PATH) : 0);
#undef HAS
#undef OFF
#undef LEN
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (plen >= sizeof(out->prefix))
        return ST_EINVAL;
    memcpy(out->prefix, path, plen);
    out->prefix[plen] = '\0';
    return 0;
}

int httpc_query_escape(st_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int rc;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            rc = st_buf_put_u8(b, c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = st_buf_append(b, e, 3);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- response parser -------------------------------------------------------------------- */

enum { PH_HEAD, PH_LINE, PH_DATA, PH_TRAIL };

/* Append [at, at+n) to a NUL-terminated field of capacity cap, truncating. */
static void field_append(char *dst, size_t cap, size_t *len, const char *at, size_t n)
{
    size_t room = *len + 1 < cap ? cap - 1 - *len : 0;
    if (n > room)
        n = room;
    memcpy(dst + *len, at, n);
    *len += n;
    dst[*len] = '\0';
}

/* Drop trailing spaces and tabs of a NUL-terminated field. */
static void field_rtrim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* A header's value is complete: keep it when it is one the CLI reads. */
static void header_done(httpc_resp_t *r)
{
    struct httpc_resp_priv *v = &r->priv;
    if (!v->in_value)
        return;
    v->in_value = false;
    char *dst = NULL;
    size_t cap = 0;
    if (strcasecmp(v->name, "content-type") == 0) {
        dst = r->content_type;
        cap = sizeof(r->content_type);
    } else if (strcasecmp(v->name, "retry-after") == 0) {
        dst = r->retry_after;
        cap = sizeof(r->retry_after);
    }
    if (dst != NULL) {
        size_t n = strlen(v->value) < cap ? strlen(v->value) : cap - 1;
        memcpy(dst, v->value, n);
        dst[n] = '\0';
        field_rtrim(dst);
    }
}

static int on_message_begin(http_parser *p)
{
    httpc_resp_t *r = p->data;
    r->reason[0] = r->content_type[0] = r->retry_after[0] = '\0';
    r->priv.reason_len = r->priv.name_len = r->priv.value_len = 0;
    r->priv.in_value = false;
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t n)
{
    httpc_resp_t *r = p->data;
    field_append(r->reason, sizeof(r->reason), &r->priv.reason_len, at, n);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    httpc_resp_t *r = p->data;
    struct httpc_resp_priv *v = &r->priv;
    if (v->phase != PH_HEAD)
        return 0; /* trailer fields are not read */
    if (v->in_value) {
        header_done(r);
        v->name_len = 0;
    }
    field_append(v->name, sizeof(v->name), &v->name_len, at, n);
    v->value_len = 0;
    v->value[0] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    httpc_resp_t *r = p->data;
    struct httpc_resp_priv *v = &r->priv;
    if (v->phase != PH_HEAD)
        return 0;
    v->in_value = true;
    field_append(v->value, sizeof(v->value), &v->value_len, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    httpc_resp_t *r = p->data;
    header_done(r);
    field_rtrim(r->reason);
    r->status = p->status_code;
    r->minor = p->http_minor;
    if (p->http_major != 1 || r->status < 100 || r->status > 599) {
        r->priv.cb_rc = ST_EPROTO;
        return -1;
    }
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->content_length = p->content_length == ULLONG_MAX ? -1 : (int64_t)p->content_length;
    r->keep_alive = http_should_keep_alive(p) != 0;
    r->priv.interim = r->status < 200 && r->status != 101;
    if (!r->priv.interim)
        r->head_done = true;
    r->priv.next_phase = r->chunked ? PH_LINE : PH_DATA;
    http_parser_pause(p, 1);
    /* 1: no body (HEAD, 1xx, 204, 304) whatever Content-Length says */
    return r->priv.head_request || r->status < 200 || r->status == 204 || r->status == 304;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    httpc_resp_t *r = p->data;
    if (r->priv.fn != NULL) {
        int rc = r->priv.fn(r->priv.ud, at, n);
        if (rc < 0) {
            r->priv.cb_rc = rc;
            return -1;
        }
    }
    r->body_bytes += n;
    r->priv.fed_body += n;
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    httpc_resp_t *r = p->data;
    r->priv.next_phase = p->content_length == 0 ? PH_TRAIL : PH_DATA;
    http_parser_pause(p, 1);
    return 0;
}

static int on_chunk_complete(http_parser *p)
{
    httpc_resp_t *r = p->data;
    if (r->priv.phase == PH_DATA) {
        r->priv.next_phase = PH_LINE;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    httpc_resp_t *r = p->data;
    if (r->priv.interim) { /* 100 Continue and friends: the real response follows */
        r->priv.next_phase = PH_HEAD;
        http_parser_pause(p, 1);
        return 0;
    }
    r->keep_alive = http_should_keep_alive(p) != 0;
    r->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings SETTINGS = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
};

void httpc_resp_init(httpc_resp_t *r, bool head_request)
{
    memset(r, 0, sizeof(*r));
    r->content_length = -1;
    r->priv.head_request = head_request;
    http_parser_init(&r->priv.parser, HTTP_RESPONSE);
    r->priv.parser.allow_chunked_length = 1; /* chunked wins over Content-Length */
    r->priv.parser.data = r;
}

/* Charge `n` framing bytes to the current phase; an error when over its limit. */
static int charge(httpc_resp_t *r, size_t n)
{
    struct httpc_resp_priv *v = &r->priv;
    v->phase_bytes += n;
    if (v->phase == PH_LINE && v->phase_bytes > MAX_CHUNK_LINE)
        return ST_EPROTO;
    if ((v->phase == PH_HEAD || v->phase == PH_TRAIL) && v->phase_bytes > HTTPC_MAX_HEAD)
        return ST_ELIMIT;
    return 0;
}

/* One http_parser_execute() step over [buf, buf+len); *used = bytes consumed. */
static int step(httpc_resp_t *r, const char *buf, size_t len, size_t *used)
{
    struct httpc_resp_priv *v = &r->priv;
    v->fed_body = 0;
    v->next_phase = v->phase;
    *used = http_parser_execute(&v->parser, &SETTINGS, buf, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&v->parser);
    if (e == HPE_PAUSED)
        http_parser_pause(&v->parser, 0);
    else if (e != HPE_OK)
        return v->cb_rc < 0 ? v->cb_rc : ST_EPROTO;
    int rc = charge(r, *used - v->fed_body);
    if (rc < 0)
        return rc;
    if (v->next_phase != v->phase) {
        v->phase = v->next_phase;
        v->phase_bytes = 0;
    }
    return 0;
}

int httpc_resp_feed(httpc_resp_t *r, const char *buf, size_t len, size_t *consumed,
                    httpc_body_fn fn, void *ud)
{
    size_t pos = 0;
    int rc = 0;
    r->priv.fn = fn;
    r->priv.ud = ud;
    while (!r->done && pos < len) {
        size_t used;
        rc = step(r, buf + pos, len - pos, &used);
        pos += used;
        if (rc < 0)
            break;
    }
    *consumed = pos;
    if (rc < 0)
        return rc;
    return r->done ? 1 : 0;
}

int httpc_resp_eof(httpc_resp_t *r)
{
    if (!r->done) {
        size_t used;
        r->priv.fn = NULL;
        if (step(r, NULL, 0, &used) < 0)
            return ST_ECLOSED;
    }
    return r->done ? 1 : ST_ECLOSED;
}

int httpc_collect(void *ud, const char *p, size_t n)
{
    st_buf_t *b = ud;
    if (b->len + n > ((size_t)256 << 20))
        return ST_ELIMIT;
    return st_buf_append(b, p, n);
}

/* ---- connections ------------------------------------------------------------------------ */

struct httpc_conn {
    httpc_url_t url;
    int fd;
    SSL_CTX *ssl_ctx; /* https: made on the first connect */
    SSL *ssl;         /* https: the session on fd */
    int connect_timeout_ms;
    int io_timeout_ms;
    char *rbuf;
    size_t rcap;
    char err[512];
};

httpc_conn_t *httpc_conn_create(const httpc_url_t *url, int connect_timeout_ms, int io_timeout_ms)
{
    httpc_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->url = *url;
    c->fd = -1;
    c->connect_timeout_ms = connect_timeout_ms;
    c->io_timeout_ms = io_timeout_ms;
    c->rcap = 64 * 1024;
    c->rbuf = malloc(c->rcap);
    if (c->rbuf == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void httpc_conn_close(httpc_conn_t *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void httpc_conn_destroy(httpc_conn_t *c)
{
    if (c == NULL)
        return;
    httpc_conn_close(c);
    SSL_CTX_free(c->ssl_ctx);
    free(c->rbuf);
    free(c);
}

const char *httpc_conn_errmsg(const httpc_conn_t *c)
{
    return c->err;
}

static int wait_fd(httpc_conn_t *c, short events, int timeout_ms, const char *what)
{
    struct pollfd pfd = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&pfd, 1, timeout_ms);
        if (n > 0)
            return 0;
        if (n == 0) {
            snprintf(c->err, sizeof(c->err), "%s %s:%u: timed out after %d ms", what, c->url.host,
                     c->url.port, timeout_ms);
            return ST_ETIMEDOUT;
        }
        if (errno != EINTR) {
            snprintf(c->err, sizeof(c->err), "poll: %s", strerror(errno));
            return ST_EIO;
        }
    }
}

static int do_connect(httpc_conn_t *c)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", c->url.port);
    int gai = getaddrinfo(c->url.host, port, &hints, &res);
    if (gai != 0) {
        snprintf(c->err, sizeof(c->err), "resolve %s: %s", c->url.host, gai_strerror(gai));
        return ST_EUNAVAIL;
    }
    int rc = ST_EUNAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            snprintf(c->err, sizeof(c->err), "socket: %s", strerror(errno));
            rc = ST_EIO;
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            rc = 0;
            break;
        }
        if (errno == EINPROGRESS) {
            rc = wait_fd(c, POLLOUT, c->connect_timeout_ms, "connect");
            if (rc == 0) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr == 0)
                    break;
                snprintf(c->err, sizeof(c->err), "connect %s:%u: %s", c->url.host, c->url.port,
                         strerror(soerr));
                rc = ST_EUNAVAIL;
            } else if (rc == ST_ETIMEDOUT) {
                rc = ST_EUNAVAIL;
            }
        } else {
            snprintf(c->err, sizeof(c->err), "connect %s:%u: %s", c->url.host, c->url.port,
                     strerror(errno));
            rc = ST_EUNAVAIL;
        }
        httpc_conn_close(c);
    }
    freeaddrinfo(res);
    return rc;
}

/* ---- TLS (https) ---- */

/* OpenSSL's reason for the last failure, with the certificate check's verdict. */
static void tls_errmsg(httpc_conn_t *c, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(c->err, sizeof(c->err),
                 "%s %s:%u: certificate verify failed: %s (pass the CA with --cacert)", what,
                 c->url.host, c->url.port, X509_verify_cert_error_string(vr));
    else
        snprintf(c->err, sizeof(c->err), "%s %s:%u: %s", what, c->url.host, c->url.port,
                 why ? why : "TLS error (is it an https port?)");
    ERR_clear_error();
}

/* Wait as OpenSSL asks after a call that returned r; 0 = try again. */
static int tls_wait(httpc_conn_t *c, int r, const char *what)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(c, POLLIN, c->io_timeout_ms, what);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(c, POLLOUT, c->io_timeout_ms, what);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 1; /* clean close */
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        ERR_clear_error();
        return errno == 0 || errno == EAGAIN ? 1 : ST_ECLOSED; /* EOF without close_notify */
    }
    tls_errmsg(c, what);
    return ST_ECLOSED;
}

static int tls_start(httpc_conn_t *c)
{
    ERR_clear_error();
    if (!c->ssl_ctx) {
        c->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!c->ssl_ctx)
            return ST_ENOMEM;
        SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
        int ok = c->url.cacert ? SSL_CTX_load_verify_locations(c->ssl_ctx, c->url.cacert, NULL)
                               : SSL_CTX_set_default_verify_paths(c->ssl_ctx);
        if (ok != 1) {
            snprintf(c->err, sizeof(c->err), "cannot load the CA certificates from %s",
                     c->url.cacert ? c->url.cacert : "the system's trust store");
            SSL_CTX_free(c->ssl_ctx);
            c->ssl_ctx = NULL;
            ERR_clear_error();
            return ST_EINVAL;
        }
    }
    c->ssl = SSL_new(c->ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return ST_ENOMEM;
    unsigned char ip[16];
    if (inet_pton(AF_INET, c->url.host, ip) == 1)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->url.host);
    else if (SSL_set_tlsext_host_name(c->ssl, c->url.host) != 1 ||
             SSL_set1_host(c->ssl, c->url.host) != 1)
        return ST_EINVAL;
    for (int i = 0; i < 1000; i++) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int rc = tls_wait(c, r, "TLS handshake with");
        if (rc == 1) {
            tls_errmsg(c, "TLS handshake with");
            return ST_EUNAVAIL;
        }
        if (rc < 0)
            return rc == ST_ECLOSED ? ST_EUNAVAIL : rc;
    }
    snprintf(c->err, sizeof(c->err), "TLS handshake with %s:%u did not finish", c->url.host,
             c->url.port);
    return ST_EUNAVAIL;
}

static int tls_send(httpc_conn_t *c, const void *p, size_t n)
{
    while (n > 0) {
        int w = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (w > 0) {
            p = (const char *)p + w;
            n -= (size_t)w;
            continue;
        }
        int rc = tls_wait(c, w, "send to");
        if (rc != 0)
            return rc < 0 ? rc : ST_ECLOSED;
    }
    return 0;
}

/* Like recv(): bytes, 0 at the end of the stream, or -1 with *err set. */
static ssize_t tls_recv(httpc_conn_t *c, int *err)
{
    for (;;) {
        int n = SSL_read(c->ssl, c->rbuf, c->rcap > INT_MAX ? INT_MAX : (int)c->rcap);
        if (n > 0)
            return n;
        int rc = tls_wait(c, n, "read from");
        if (rc == 1)
            return 0;
        if (rc < 0) {
            *err = rc;
            return -1;
        }
    }
}

static int send_all(httpc_conn_t *c, struct iovec *iov, int iovcnt)
{
    if (c->ssl) {
        for (int i = 0; i < iovcnt; i++) {
            int rc = tls_send(c, iov[i].iov_base, iov[i].iov_len);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    while (iovcnt > 0) {
        if (iov[0].iov_len == 0) {
            iov++;
            iovcnt--;
            continue;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int rc = wait_fd(c, POLLOUT, c->io_timeout_ms, "send to");
                if (rc < 0)
                    return rc;
                continue;
            }
            snprintf(c->err, sizeof(c->err), "send to %s:%u: %s", c->url.host, c->url.port,
                     strerror(errno));
            return ST_ECLOSED;
        }
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov[0].iov_len) {
            left -= iov[0].iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + left;
            iov[0].iov_len -= left;
        }
    }
    return 0;
}

/* One attempt. *got_bytes says whether any response byte arrived. */
static int attempt(httpc_conn_t *c, const st_buf_t *head, const void *body, size_t body_len,
                   httpc_resp_t *resp, bool head_req, httpc_body_fn fn, void *ud, bool *got_bytes)
{
    struct iovec iov[2] = {{.iov_base = head->data, .iov_len = head->len},
                           {.iov_base = (void *)body, .iov_len = body ? body_len : 0}};
    *got_bytes = false;
    int rc = send_all(c, iov, 2);
    if (rc < 0)
        return rc;
    httpc_resp_init(resp, head_req);
    for (;;) {
        int terr = 0;
        ssize_t n = c->ssl ? tls_recv(c, &terr) : recv(c->fd, c->rbuf, c->rcap, 0);
        if (n < 0 && terr)
            return terr;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if ((rc = wait_fd(c, POLLIN, c->io_timeout_ms, "read from")) < 0)
                    return rc;
                continue;
            }
            snprintf(c->err, sizeof(c->err), "read from %s:%u: %s", c->url.host, c->url.port,
                     strerror(errno));
            return ST_ECLOSED;
        }
        if (n == 0) {
            rc = httpc_resp_eof(resp);
            if (rc < 0)
                snprintf(c->err, sizeof(c->err), "%s:%u closed the connection %s", c->url.host,
                         c->url.port, *got_bytes ? "mid-response" : "before responding");
            return rc < 0 ? rc : 0;
        }
        *got_bytes = true;
        size_t used = 0; /* the parser keeps its own state: all bytes up to the message end go */
        rc = httpc_resp_feed(resp, c->rbuf, (size_t)n, &used, fn, ud);
        if (rc < 0) {
            if (rc == ST_EPROTO || rc == ST_ELIMIT)
                snprintf(c->err, sizeof(c->err), "malformed HTTP response from %s:%u (%s)",
                         c->url.host, c->url.port, st_strerror(rc));
            return rc;
        }
        if (rc == 1)
            return 0; /* bytes after the message (none without pipelining) are dropped */
    }
}

/* The Authorization header value every request carries (NULL: none). */
static const char *httpc_authorization;

void httpc_set_authorization(const char *value)
{
    httpc_authorization = value;
}

int httpc_request(httpc_conn_t *c, const char *method, const char *target,
                  const char *extra_headers, const void *body, size_t body_len, httpc_resp_t *resp,
                  httpc_body_fn fn, void *ud)
{
    st_buf_t head;
    st_buf_init(&head);
    char line[1024];
    int rc = 0;
    bool head_req = strcmp(method, "HEAD") == 0;
    int n = snprintf(line, sizeof(line), "%s %s", method, c->url.prefix);
    if ((rc = st_buf_append(&head, line, (size_t)n)) < 0 ||
        (rc = st_buf_append(&head, target, strlen(target))) < 0)
        goto out;
    n = snprintf(line, sizeof(line),
                 " HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: strata-cli/%s\r\nAccept-Encoding: "
                 "identity\r\n",
                 c->url.host, c->url.port, STRATA_VERSION);
    if ((rc = st_buf_append(&head, line, (size_t)n)) < 0)
        goto out;
    if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        n = snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body ? body_len : 0);
        if ((rc = st_buf_append(&head, line, (size_t)n)) < 0)
            goto out;
    }
    if (extra_headers && (rc = st_buf_append(&head, extra_headers, strlen(extra_headers))) < 0)
        goto out;
    if (httpc_authorization &&
        ((rc = st_buf_append(&head, "Authorization: ", 15)) < 0 ||
         (rc = st_buf_append(&head, httpc_authorization, strlen(httpc_authorization))) < 0 ||
         (rc = st_buf_append(&head, "\r\n", 2)) < 0))
        goto out;
    if ((rc = st_buf_append(&head, "\r\n", 2)) < 0)
        goto out;
    c->err[0] = '\0';
    for (int i = 0; i < 2; i++) {
        bool reused = c->fd >= 0;
        if (!reused && (rc = do_connect(c)) < 0)
            goto out;
        if (!reused && c->url.tls && (rc = tls_start(c)) < 0) {
            httpc_conn_close(c);
            goto out;
        }
        bool got = false;
        rc = attempt(c, &head, body, body_len, resp, head_req, fn, ud, &got);
        if (rc == 0) {
            if (!resp->keep_alive)
                httpc_conn_close(c);
            goto out;
        }
        httpc_conn_close(c);
        /* a stale keep-alive connection: retry once on a fresh one */
        if (!(reused && !got && (rc == ST_ECLOSED)))
            goto out;
    }
out:
    st_buf_deinit(&head);
    return rc;
}
