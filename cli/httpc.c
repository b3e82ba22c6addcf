/*
 * httpc — blocking HTTP/1.1 client. See httpc.h.
 *
 * Response parser states (httpc_resp_feed):
 *
 *   HEAD --(1xx)--> HEAD
 *   HEAD --(HEAD request, 204, 304, Content-Length: 0)--> DONE
 *   HEAD --(chunked)--> CHUNK_SIZE --(n>0)--> CHUNK_DATA --> CHUNK_CRLF --> CHUNK_SIZE
 *                       CHUNK_SIZE --(0)--> TRAILER --(empty line)--> DONE
 *   HEAD --(Content-Length: n)--> BODY_LEN --(n bytes)--> DONE
 *   HEAD --(neither)--> BODY_EOF --(httpc_resp_eof)--> DONE
 */
#include "httpc.h"

#include <errno.h>
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

#include "st_err.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "dev"
#endif

enum {
    S_HEAD = 0,
    S_BODY_LEN,
    S_BODY_EOF,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_CRLF,
    S_TRAILER,
    S_DONE,
};

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
    if (strncasecmp(s, "http://", 7) == 0)
        s += 7;
    else if (strstr(s, "://") != NULL)
        return ST_EINVAL; /* https or anything else */
    size_t alen = strcspn(s, "/?#");
    const char *auth = s, *rest = s + alen;
    if (alen == 0 || memchr(auth, '@', alen) != NULL || auth[0] == '[')
        return ST_EINVAL;
    const char *colon = memchr(auth, ':', alen);
    size_t hlen = colon ? (size_t)(colon - auth) : alen;
    if (hlen == 0 || hlen >= sizeof(out->host))
        return ST_EINVAL;
    memcpy(out->host, auth, hlen);
    out->host[hlen] = '\0';
    out->port = 80;
    if (colon) {
        const char *p = colon + 1, *end = auth + alen;
        if (p == end || end - p > 5)
            return ST_EINVAL;
        unsigned long port = 0;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return ST_EINVAL;
            port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port == 0 || port > 65535)
            return ST_EINVAL;
        out->port = (uint16_t)port;
    }
    if (*rest == '?' || *rest == '#')
        return ST_EINVAL;
    size_t plen = strlen(rest);
    while (plen > 0 && rest[plen - 1] == '/')
        plen--;
    if (plen >= sizeof(out->prefix) || strpbrk(rest, "?# ") != NULL)
        return ST_EINVAL;
    memcpy(out->prefix, rest, plen);
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

void httpc_resp_init(httpc_resp_t *r, bool head_request)
{
    memset(r, 0, sizeof(*r));
    r->content_length = -1;
    r->no_body = head_request;
    r->state = S_HEAD;
}

/* Find the end of the line starting at p: returns the index just past '\n', or 0. */
static size_t line_end(const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    return nl ? (size_t)(nl - p) + 1 : 0;
}

/* Trim a [s, s+n) slice of spaces, tabs and a trailing CR. */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && ((*s)[*n - 1] == '\r' || (*s)[*n - 1] == '\n' || (*s)[*n - 1] == ' ' ||
                      (*s)[*n - 1] == '\t'))
        (*n)--;
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
}

static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= n; i++) {
        if (strncasecmp(v + i, tok, tl) == 0 && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + tl == n || v[i + tl] == ',' || v[i + tl] == ' ' || v[i + tl] == ';'))
            return true;
    }
    return false;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Parse a complete head [p, p+n) (ending with the empty line). */
static int parse_head(httpc_resp_t *r, const char *p, size_t n)
{
    size_t ll = line_end(p, n);
    const char *l = p;
    size_t len = ll;
    trim(&l, &len);
    /* "HTTP/1.x SSS[ reason]" */
    if (len < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ')
        return ST_EPROTO;
    r->minor = l[7] - '0';
    if (l[9] < '1' || l[9] > '5' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9')
        return ST_EPROTO;
    if (len > 12 && l[12] != ' ')
        return ST_EPROTO;
    r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    r->reason[0] = '\0';
    if (len > 13)
        copy_value(r->reason, sizeof(r->reason), l + 13, len - 13);
    bool conn_close = false, conn_keep = false;
    int64_t cl = -1;
    r->chunked = false;
    r->content_type[0] = r->retry_after[0] = '\0';
    for (size_t off = ll; off < n;) {
        size_t e = line_end(p + off, n - off);
        if (e == 0)
            return ST_EPROTO;
        const char *h = p + off;
        size_t hl = e;
        off += e;
        while (hl > 0 && (h[hl - 1] == '\n' || h[hl - 1] == '\r'))
            hl--;
        if (hl == 0)
            break; /* the empty line */
        if (h[0] == ' ' || h[0] == '\t')
            return ST_EPROTO; /* obsolete line folding */
        const char *colon = memchr(h, ':', hl);
        if (colon == NULL || colon == h)
            return ST_EPROTO;
        size_t nl = (size_t)(colon - h);
        const char *v = colon + 1;
        size_t vl = hl - nl - 1;
        trim(&v, &vl);
#define HNAME(s) (nl == sizeof(s) - 1 && strncasecmp(h, s, nl) == 0)
        if (HNAME("content-length")) {
            if (vl == 0 || vl > 18)
                return ST_EPROTO;
            int64_t x = 0;
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return ST_EPROTO;
                x = x * 10 + (v[i] - '0');
            }
            if (cl >= 0 && cl != x)
                return ST_EPROTO; /* conflicting lengths */
            cl = x;
        } else if (HNAME("transfer-encoding")) {
            if (has_token(v, vl, "chunked"))
                r->chunked = true;
        } else if (HNAME("connection")) {
            if (has_token(v, vl, "close"))
                conn_close = true;
            if (has_token(v, vl, "keep-alive"))
                conn_keep = true;
        } else if (HNAME("content-type")) {
            copy_value(r->content_type, sizeof(r->content_type), v, vl);
        } else if (HNAME("retry-after")) {
            copy_value(r->retry_after, sizeof(r->retry_after), v, vl);
        }
#undef HNAME
    }
    r->content_length = cl;
    r->keep_alive = r->minor >= 1 ? !conn_close : (conn_keep && !conn_close);
    return 0;
}

/* Parse a chunk-size line [p, p+n) (including its newline). */
static int parse_chunk_size(const char *p, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    size_t i = 0;
    for (; i < n; i++) {
        char c = p[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            break;
        if (x >> 58)
            return ST_EPROTO; /* absurd size */
        x = x * 16 + (uint64_t)d;
    }
    if (i == 0)
        return ST_EPROTO;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i < n && p[i] != ';' && p[i] != '\r' && p[i] != '\n')
        return ST_EPROTO;
    *out = x;
    return 0;
}

int httpc_resp_feed(httpc_resp_t *r, const char *buf, size_t len, size_t *consumed,
                    httpc_body_fn fn, void *ud)
{
    size_t pos = 0;
    int rc = 0;
    while (r->state != S_DONE) {
        const char *p = buf + pos;
        size_t avail = len - pos;
        switch (r->state) {
        case S_HEAD: {
            /* find the empty line that ends the head */
            size_t off = 0, end = 0;
            while (off < avail) {
                size_t e = line_end(p + off, avail - off);
                if (e == 0)
                    break;
                if (e == 1 || (e == 2 && p[off] == '\r')) {
                    end = off + e;
                    break;
                }
                off += e;
            }
            if (end == 0) {
                if (avail >= HTTPC_MAX_HEAD) {
                    rc = ST_ELIMIT;
                    goto out;
                }
                goto out; /* need more */
            }
            if (end > HTTPC_MAX_HEAD) {
                rc = ST_ELIMIT;
                goto out;
            }
            if ((rc = parse_head(r, p, end)) < 0)
                goto out;
            pos += end;
            if (r->status >= 100 && r->status < 200 && r->status != 101)
                break; /* interim response: parse the next head */
            r->head_done = true;
            if (r->no_body || r->status == 204 || r->status == 304 || r->status == 101 ||
                (!r->chunked && r->content_length == 0)) {
                r->state = S_DONE;
            } else if (r->chunked) {
                r->state = S_CHUNK_SIZE;
            } else if (r->content_length > 0) {
                r->remaining = (uint64_t)r->content_length;
                r->state = S_BODY_LEN;
            } else {
                r->keep_alive = false;
                r->state = S_BODY_EOF;
            }
            break;
        }
        case S_BODY_LEN:
        case S_BODY_EOF:
        case S_CHUNK_DATA: {
            if (avail == 0)
                goto out;
            size_t n = avail;
            if (r->state != S_BODY_EOF && n > r->remaining)
                n = (size_t)r->remaining;
            if (fn && (rc = fn(ud, p, n)) < 0)
                goto out;
            r->body_bytes += n;
            pos += n;
            if (r->state != S_BODY_EOF) {
                r->remaining -= n;
                if (r->remaining == 0)
                    r->state = r->state == S_BODY_LEN ? S_DONE : S_CHUNK_CRLF;
            }
            break;
        }
        case S_CHUNK_SIZE: {
            size_t e = line_end(p, avail);
            if (e == 0) {
                if (avail > MAX_CHUNK_LINE)
                    rc = ST_EPROTO;
                goto out;
            }
            uint64_t sz;
            if ((rc = parse_chunk_size(p, e, &sz)) < 0)
                goto out;
            pos += e;
            if (sz == 0) {
                r->remaining = 0; /* trailer bytes seen */
                r->state = S_TRAILER;
            } else {
                r->remaining = sz;
                r->state = S_CHUNK_DATA;
            }
            break;
        }
        case S_CHUNK_CRLF:
            if (avail == 0)
                goto out;
            if (p[0] == '\n') {
                pos += 1;
            } else if (p[0] == '\r') {
                if (avail < 2)
                    goto out;
                if (p[1] != '\n') {
                    rc = ST_EPROTO;
                    goto out;
                }
                pos += 2;
            } else {
                rc = ST_EPROTO;
                goto out;
            }
            r->state = S_CHUNK_SIZE;
            break;
        case S_TRAILER: {
            size_t e = line_end(p, avail);
            if (e == 0) {
                if (avail > HTTPC_MAX_HEAD)
                    rc = ST_ELIMIT;
                goto out;
            }
            r->remaining += e;
            if (r->remaining > HTTPC_MAX_HEAD) {
                rc = ST_ELIMIT;
                goto out;
            }
            pos += e;
            if (e == 1 || (e == 2 && p[0] == '\r'))
                r->state = S_DONE;
            break;
        }
        }
    }
out:
    *consumed = pos;
    if (rc < 0)
        return rc;
    if (r->state == S_DONE) {
        r->done = true;
        return 1;
    }
    return 0;
}

int httpc_resp_eof(httpc_resp_t *r)
{
    if (r->state == S_BODY_EOF) {
        r->state = S_DONE;
        r->done = true;
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
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void httpc_conn_destroy(httpc_conn_t *c)
{
    if (c == NULL)
        return;
    httpc_conn_close(c);
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

static int send_all(httpc_conn_t *c, struct iovec *iov, int iovcnt)
{
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
    size_t have = 0;
    for (;;) {
        if (have == c->rcap) {
            /* an incomplete head or chunk line fills the buffer: grow (bounded by the parser) */
            char *nb = realloc(c->rbuf, c->rcap * 2);
            if (nb == NULL)
                return ST_ENOMEM;
            c->rbuf = nb;
            c->rcap *= 2;
        }
        ssize_t n = recv(c->fd, c->rbuf + have, c->rcap - have, 0);
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
        have += (size_t)n;
        size_t used = 0;
        rc = httpc_resp_feed(resp, c->rbuf, have, &used, fn, ud);
        if (rc < 0) {
            if (rc == ST_EPROTO || rc == ST_ELIMIT)
                snprintf(c->err, sizeof(c->err), "malformed HTTP response from %s:%u (%s)",
                         c->url.host, c->url.port, st_strerror(rc));
            return rc;
        }
        if (rc == 1)
            return 0; /* bytes after the message (none without pipelining) are dropped */
        memmove(c->rbuf, c->rbuf + used, have - used);
        have -= used;
    }
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
    if ((rc = st_buf_append(&head, "\r\n", 2)) < 0)
        goto out;
    c->err[0] = '\0';
    for (int i = 0; i < 2; i++) {
        bool reused = c->fd >= 0;
        if (!reused && (rc = do_connect(c)) < 0)
            goto out;
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
