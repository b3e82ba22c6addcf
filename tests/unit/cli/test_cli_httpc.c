/*
 * test_cli_httpc — the pure parts of the `strata` CLI (cli/): URL parsing and
 * query escaping, the incremental HTTP/1.1 response parser over http-parser
 * (Content-Length, chunked, read-until-close, 1xx, bodiless statuses, every
 * split point, the head/trailer/chunk-line limits, malformed responses),
 * time/duration parsing, latency percentiles, number and
 * progress-line formatting, line-protocol field counting, and the devops
 * generator's determinism and byte-compatibility with gen_devops.py.
 *
 * Built by the tests/unit glob; cli/CMakeLists.txt links it to strata_cli.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "devops.h"
#include "httpc.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_text.h"

/* ---- URLs ------------------------------------------------------------------------------ */

static void test_url_parse(void **state)
{
    (void)state;
    httpc_url_t u;
    assert_int_equal(httpc_url_parse("http://127.0.0.1:8086", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 8086);
    assert_string_equal(u.prefix, "");
    assert_int_equal(httpc_url_parse("HTTP://localhost/", &u), 0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 80);
    assert_string_equal(u.prefix, "");
    assert_int_equal(httpc_url_parse("10.0.0.1:9/strata/v1//", &u), 0);
    assert_string_equal(u.host, "10.0.0.1");
    assert_int_equal(u.port, 9);
    assert_string_equal(u.prefix, "/strata/v1");
    assert_int_equal(httpc_url_parse("http://127.0.0.1:65535", &u), 0);
    assert_int_equal(u.port, 65535);
    assert_int_equal(httpc_url_parse("router-1.example", &u), 0);
    assert_string_equal(u.host, "router-1.example");
    assert_int_equal(u.port, 80);

    assert_int_equal(httpc_url_parse("https://127.0.0.1:8086", &u), 0);
    assert_true(u.tls);
    assert_int_equal(u.port, 8086);
    assert_int_equal(httpc_url_parse("https://router.example/p", &u), 0);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.prefix, "/p");
    assert_int_equal(httpc_url_parse("http://127.0.0.1:8086", &u), 0);
    assert_false(u.tls);

    static const char *const bad[] = {"httpx://127.0.0.1:8086",
                                      "ftp://x",
                                      "",
                                      "http://",
                                      "http://:80",
                                      "http://127.0.0.1:",
                                      "http://127.0.0.1:0",
                                      "http://127.0.0.1:65536",
                                      "http://127.0.0.1:80x",
                                      "http://[::1]:80",
                                      "http://u:p@127.0.0.1:80",
                                      "http://127.0.0.1:8086?x=1",
                                      "http://127.0.0.1:123456",
                                      "http://127.0.0.1:8086#frag",
                                      "http://127.0.0.1:8086/a b",
                                      "http://bad!host:80",
                                      "h:1:2",
                                      "//h:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (httpc_url_parse(bad[i], &u) != ST_EINVAL)
            fail_msg("accepted bad URL '%s'", bad[i]);
    }
    assert_int_equal(httpc_url_parse(NULL, &u), ST_EINVAL);
}

static void test_query_escape(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(httpc_query_escape(&b, "rate(cpu{host=\"a b\"}[5m]) ~/é&+"), 0);
    st_buf_put_u8(&b, 0);
    assert_string_equal((char *)b.data,
                        "rate%28cpu%7Bhost%3D%22a%20b%22%7D%5B5m%5D%29%20~%2F%C3%A9%"
                        "26%2B");
    st_buf_reset(&b);
    assert_int_equal(httpc_query_escape(&b, "AZaz09-._~"), 0);
    st_buf_put_u8(&b, 0);
    assert_string_equal((char *)b.data, "AZaz09-._~");
    st_buf_deinit(&b);
}

/* ---- response parser -------------------------------------------------------------------- */

/*
 * Feed `raw` to a fresh parser in pieces of `step` bytes (0 = all at once),
 * keeping unconsumed bytes like the socket loop does; `eof` = the peer closes
 * after the bytes. Returns the final code; the de-chunked body goes to `body`.
 */
static int feed_all(const char *raw, size_t len, size_t step, bool head_req, bool eof,
                    httpc_resp_t *r, st_buf_t *body)
{
    httpc_resp_init(r, head_req);
    st_buf_reset(body);
    char *pending = malloc(len + 1);
    size_t have = 0, off = 0;
    int rc = 0;
    while (off < len) {
        size_t n = step == 0 ? len - off : (len - off < step ? len - off : step);
        memcpy(pending + have, raw + off, n);
        have += n;
        off += n;
        size_t used = 0;
        rc = httpc_resp_feed(r, pending, have, &used, httpc_collect, body);
        assert_true(used <= have);
        memmove(pending, pending + used, have - used);
        have -= used;
        if (rc != 0)
            break;
    }
    free(pending);
    if (rc == 0 && eof)
        rc = httpc_resp_eof(r);
    return rc;
}

static void check_body(const st_buf_t *b, const char *want)
{
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
}

static void test_resp_content_length(void **state)
{
    (void)state;
    const char *raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Content-Length: 13\r\nRetry-After: 2\r\n\r\n{\"a\":\"hello\"}";
    httpc_resp_t r;
    st_buf_t b;
    st_buf_init(&b);
    for (size_t step = 0; step <= strlen(raw); step++) {
        assert_int_equal(feed_all(raw, strlen(raw), step, false, false, &r, &b), 1);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.reason, "OK");
        assert_int_equal(r.content_length, 13);
        assert_false(r.chunked);
        assert_true(r.keep_alive);
        assert_true(r.done);
        assert_string_equal(r.content_type, "application/json");
        assert_string_equal(r.retry_after, "2");
        check_body(&b, "{\"a\":\"hello\"}");
    }
    /* bytes after the message are not consumed */
    const char *two = "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n";
    size_t used;
    httpc_resp_init(&r, false);
    assert_int_equal(httpc_resp_feed(&r, two, strlen(two), &used, NULL, NULL), 1);
    assert_int_equal(used, strlen("HTTP/1.1 204 No Content\r\n\r\n"));
    assert_int_equal(r.status, 204);
    assert_string_equal(r.reason, "No Content");
    /* a truncated body is an error at EOF */
    const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert_int_equal(feed_all(cut, strlen(cut), 0, false, true, &r, &b), ST_ECLOSED);
    /* bare LF line endings are tolerated */
    const char *lf = "HTTP/1.1 400 Bad Request\nContent-Length: 2\n\nhi";
    assert_int_equal(feed_all(lf, strlen(lf), 1, false, false, &r, &b), 1);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.reason, "Bad Request");
    check_body(&b, "hi");
    st_buf_deinit(&b);
}

static void test_resp_chunked(void **state)
{
    (void)state;
    const char *raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n"
                      "Content-Length: 999\r\n\r\n"
                      "5\r\nhello\r\n"
                      "1;ext=1\r\n,\r\n"
                      "0000A \r\n 01234567\n\r\n"
                      "0\r\nX-Trailer: yes\r\n\r\n";
    httpc_resp_t r;
    st_buf_t b;
    st_buf_init(&b);
    for (size_t step = 0; step <= strlen(raw); step++) {
        assert_int_equal(feed_all(raw, strlen(raw), step, false, false, &r, &b), 1);
        assert_true(r.chunked);
        assert_true(r.done);
        assert_int_equal(r.body_bytes, 16);
        check_body(&b, "hello, 01234567\n");
    }
    /* trailer fields do not replace head fields; split reads of a long chunked body */
    st_buf_t big0;
    st_buf_init(&big0);
    const char *h0 = "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nTransfer-Encoding: chunked\r\n\r\n";
    st_buf_append(&big0, h0, strlen(h0));
    for (int i = 0; i < 300; i++)
        st_buf_append(&big0, "7\r\nabcdefg\r\n", 12);
    const char *t0 = "0\r\nContent-Type: x/y\r\n\r\n";
    st_buf_append(&big0, t0, strlen(t0));
    for (size_t step = 1; step < 40; step += 7) {
        assert_int_equal(feed_all((char *)big0.data, big0.len, step, false, false, &r, &b), 1);
        assert_string_equal(r.content_type, "a/b");
        assert_int_equal(b.len, 2100);
        assert_memory_equal(b.data + 2093, "abcdefg", 7);
    }
    st_buf_deinit(&big0);
    /* a chunked stream without its last chunk is truncated */
    const char *cut = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
    assert_int_equal(feed_all(cut, strlen(cut), 0, false, true, &r, &b), ST_ECLOSED);
    check_body(&b, "abc");
    /* bad chunk sizes and missing CRLF after data */
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(feed_all(bad[i], strlen(bad[i]), 0, false, false, &r, &b), ST_EPROTO);
    /* an endless chunk-size line */
    st_buf_t big;
    st_buf_init(&big);
    const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    st_buf_append(&big, h, strlen(h));
    for (int i = 0; i < 2000; i++)
        st_buf_put_u8(&big, '0');
    assert_int_equal(feed_all((char *)big.data, big.len, 0, false, false, &r, &b), ST_EPROTO);
    st_buf_deinit(&big);
    st_buf_deinit(&b);
}

static void test_resp_no_body_and_interim(void **state)
{
    (void)state;
    httpc_resp_t r;
    st_buf_t b;
    st_buf_init(&b);
    const char *r204 = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
    assert_int_equal(feed_all(r204, strlen(r204), 0, false, false, &r, &b), 1);
    assert_int_equal(r.status, 204);
    assert_int_equal(b.len, 0);
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    assert_int_equal(feed_all(head, strlen(head), 0, true, false, &r, &b), 1);
    assert_int_equal(r.content_length, 5);
    assert_int_equal(b.len, 0);
    const char *cont = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n"
                       "Content-Length: 4\r\nConnection: close\r\n\r\nbusy";
    for (size_t step = 0; step <= strlen(cont); step += 3) {
        assert_int_equal(feed_all(cont, strlen(cont), step, false, false, &r, &b), 1);
        assert_int_equal(r.status, 503);
        assert_false(r.keep_alive);
        check_body(&b, "busy");
    }
    /* read until close (HTTP/1.0 style) */
    const char *eofb = "HTTP/1.0 200 OK\r\n\r\nall of it";
    assert_int_equal(feed_all(eofb, strlen(eofb), 0, false, false, &r, &b), 0);
    assert_false(r.done);
    assert_int_equal(httpc_resp_eof(&r), 1);
    assert_true(r.done);
    assert_false(r.keep_alive);
    check_body(&b, "all of it");
    /* HTTP/1.0 keep-alive only when asked */
    const char *ka = "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(feed_all(ka, strlen(ka), 0, false, false, &r, &b), 1);
    assert_true(r.keep_alive);
    /* EOF before a head */
    httpc_resp_init(&r, false);
    assert_int_equal(httpc_resp_eof(&r), ST_ECLOSED);
    st_buf_deinit(&b);
}

static int abort_cb(void *ud, const char *p, size_t n)
{
    (void)p;
    (void)n;
    int *calls = ud;
    (*calls)++;
    return ST_EIO;
}

/* One valid header line (41 bytes). */
#define PAD "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"

static void test_resp_errors(void **state)
{
    (void)state;
    httpc_resp_t r;
    st_buf_t b;
    st_buf_init(&b);
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "SMTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 600 Nope\r\n\r\n",
        "HTTP/0.9 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = feed_all(bad[i], strlen(bad[i]), 0, false, false, &r, &b);
        if (rc != ST_EPROTO)
            fail_msg("case %zu: got %d, want EPROTO", i, rc);
    }
    /* obsolete line folding: joined, as RFC 7230 3.2.4 asks of a user agent */
    const char *fold = "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Type: text/plain\r\n"
                       "Content-Length: 0\r\n\r\n";
    assert_int_equal(feed_all(fold, strlen(fold), 0, false, false, &r, &b), 1);
    assert_string_equal(r.content_type, "text/plain");
    /* a head that never ends */
    st_buf_t big;
    st_buf_init(&big);
    const char *h = "HTTP/1.1 200 OK\r\n";
    st_buf_append(&big, h, strlen(h));
    while (big.len < HTTPC_MAX_HEAD + 100)
        st_buf_append(&big, PAD, strlen(PAD));
    assert_int_equal(feed_all((char *)big.data, big.len, 0, false, false, &r, &b), ST_ELIMIT);
    /* ... also when it arrives in small reads */
    assert_int_equal(feed_all((char *)big.data, big.len, 1000, false, false, &r, &b), ST_ELIMIT);
    /* an endless trailer */
    st_buf_reset(&big);
    const char *t = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n";
    st_buf_append(&big, t, strlen(t));
    while (big.len < HTTPC_MAX_HEAD + 200)
        st_buf_append(&big, PAD, strlen(PAD));
    assert_int_equal(feed_all((char *)big.data, big.len, 4096, false, false, &r, &b), ST_ELIMIT);
    st_buf_deinit(&big);
    /* garbage instead of a response, and a response cut inside its head */
    const char *junk = "<html>hello</html>\r\n\r\n";
    assert_int_equal(feed_all(junk, strlen(junk), 0, false, false, &r, &b), ST_EPROTO);
    const char *cuth = "HTTP/1.1 200 OK\r\nContent-Le";
    assert_int_equal(feed_all(cuth, strlen(cuth), 0, false, true, &r, &b), ST_ECLOSED);
    /* the body callback's error stops the parser */
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    int calls = 0;
    size_t used;
    httpc_resp_init(&r, false);
    assert_int_equal(httpc_resp_feed(&r, ok, strlen(ok), &used, abort_cb, &calls), ST_EIO);
    assert_int_equal(calls, 1);
    st_buf_deinit(&b);
}

/* ---- times, durations, numbers ------------------------------------------------------------ */

static void test_parse_time_duration(void **state)
{
    (void)state;
    double d, now = 1700000000.0;
    assert_int_equal(cli_parse_duration("15s", &d), 0);
    assert_true(d == 15);
    assert_int_equal(cli_parse_duration("1h30m", &d), 0);
    assert_true(d == 5400);
    assert_int_equal(cli_parse_duration("500ms", &d), 0);
    assert_true(fabs(d - 0.5) < 1e-12);
    assert_int_equal(cli_parse_duration("2d", &d), 0);
    assert_true(d == 172800);
    assert_int_equal(cli_parse_duration("1w", &d), 0);
    assert_true(d == 604800);
    assert_int_equal(cli_parse_duration("0.25", &d), 0);
    assert_true(d == 0.25);
    static const char *const badd[] = {"", "s", "5x", "1h-", "-5s", "1.2.3", "h1"};
    for (size_t i = 0; i < sizeof(badd) / sizeof(badd[0]); i++)
        if (cli_parse_duration(badd[i], &d) != ST_EINVAL)
            fail_msg("accepted duration '%s'", badd[i]);

    double t;
    assert_int_equal(cli_parse_time("2016-01-01T00:00:00Z", now, &t), 0);
    assert_true(t == 1451606400);
    assert_int_equal(cli_parse_time("2016-01-01T02:00:00.5+02:00", now, &t), 0);
    assert_true(t == 1451606400.5);
    assert_int_equal(cli_parse_time("2015-12-31T19:00:00-05:00", now, &t), 0);
    assert_true(t == 1451606400);
    assert_int_equal(cli_parse_time("2016-01-01", now, &t), 0);
    assert_true(t == 1451606400);
    assert_int_equal(cli_parse_time("1451606400.25", now, &t), 0);
    assert_true(t == 1451606400.25);
    assert_int_equal(cli_parse_time("now", now, &t), 0);
    assert_true(t == now);
    assert_int_equal(cli_parse_time("-1h", now, &t), 0);
    assert_true(t == now - 3600);
    assert_int_equal(cli_parse_time("now-30m", now, &t), 0);
    assert_true(t == now - 1800);
    assert_int_equal(cli_parse_time("now+5m", now, &t), 0);
    assert_true(t == now + 300);
    static const char *const badt[] = {"",
                                       "yesterday",
                                       "2016-13-01",
                                       "2016-1-01",
                                       "2016-01-01T00:00:00",
                                       "2016-01-01T00:00Z",
                                       "now-",
                                       "now*5m",
                                       "2016-01-01T00:00:00.Z",
                                       "12ab"};
    for (size_t i = 0; i < sizeof(badt) / sizeof(badt[0]); i++)
        if (cli_parse_time(badt[i], now, &t) != ST_EINVAL)
            fail_msg("accepted time '%s'", badt[i]);
    char buf[40];
    cli_fmt_time(buf, sizeof(buf), 1451606400.5);
    assert_string_equal(buf, "2016-01-01T00:00:00.500Z");
    cli_fmt_time(buf, sizeof(buf), 1451606400.9996);
    assert_string_equal(buf, "2016-01-01T00:00:01.000Z");
}

static void test_percentile(void **state)
{
    (void)state;
    assert_true(cli_percentile(NULL, 0, 50) == 0);
    double one[] = {7};
    assert_true(cli_percentile(one, 1, 0) == 7);
    assert_true(cli_percentile(one, 1, 50) == 7);
    assert_true(cli_percentile(one, 1, 100) == 7);
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i + 1; /* 1..100 */
    assert_true(cli_percentile(v, 100, 50) == 50);
    assert_true(cli_percentile(v, 100, 90) == 90);
    assert_true(cli_percentile(v, 100, 99) == 99);
    assert_true(cli_percentile(v, 100, 99.5) == 100);
    assert_true(cli_percentile(v, 100, 100) == 100);
    assert_true(cli_percentile(v, 100, 0) == 1);
    assert_true(cli_percentile(v, 100, 1) == 1);
    assert_true(cli_percentile(v, 100, 1.01) == 2);
    double w[] = {10, 20, 30, 40, 50}; /* nearest rank: ceil(p/100*n) */
    assert_true(cli_percentile(w, 5, 20) == 10);
    assert_true(cli_percentile(w, 5, 21) == 20);
    assert_true(cli_percentile(w, 5, 50) == 30);
    assert_true(cli_percentile(w, 5, 90) == 50);
}

static void test_fmt_numbers(void **state)
{
    (void)state;
    char b[32];
    cli_fmt_count(b, sizeof(b), 0);
    assert_string_equal(b, "0");
    cli_fmt_count(b, sizeof(b), 999);
    assert_string_equal(b, "999");
    cli_fmt_count(b, sizeof(b), 1200);
    assert_string_equal(b, "1.20k");
    cli_fmt_count(b, sizeof(b), 2400000);
    assert_string_equal(b, "2.40M");
    cli_fmt_count(b, sizeof(b), 12345678);
    assert_string_equal(b, "12.3M");
    cli_fmt_count(b, sizeof(b), 999999);
    assert_string_equal(b, "1.00M");
    cli_fmt_count(b, sizeof(b), 1.5e9);
    assert_string_equal(b, "1.50G");
    cli_fmt_count(b, sizeof(b), NAN);
    assert_string_equal(b, "?");
    cli_fmt_bytes(b, sizeof(b), 512);
    assert_string_equal(b, "512 B");
    cli_fmt_bytes(b, sizeof(b), 1500);
    assert_string_equal(b, "1.50 kB");
    cli_fmt_bytes(b, sizeof(b), 120.3e6);
    assert_string_equal(b, "120 MB");
    cli_fmt_bytes(b, sizeof(b), 2.1e9);
    assert_string_equal(b, "2.10 GB");
    cli_fmt_eta(b, sizeof(b), 42);
    assert_string_equal(b, "0:42");
    cli_fmt_eta(b, sizeof(b), 725);
    assert_string_equal(b, "12:05");
    cli_fmt_eta(b, sizeof(b), 3723);
    assert_string_equal(b, "1:02:03");
    cli_fmt_eta(b, sizeof(b), -1);
    assert_string_equal(b, "--:--");
    cli_fmt_eta(b, sizeof(b), INFINITY);
    assert_string_equal(b, "--:--");
}

static void test_progress_format(void **state)
{
    (void)state;
    char out[512];
    cli_progress_t p = {.bytes_done = 50000000,
                        .bytes_total = 200000000,
                        .lines = 1200000,
                        .samples = 12000000,
                        .elapsed_s = 5};
    size_t n = cli_progress_format(out, sizeof(out), &p, true, 200);
    assert_string_equal(out, "[###---------]  25.0%  50.0 MB/200 MB  1.20M lines  "
                             "2.40M samples/s  ETA 0:15");
    assert_int_equal(n, strlen(out));
    /* cut to the terminal width - 1 */
    n = cli_progress_format(out, sizeof(out), &p, true, 40);
    assert_int_equal(n, 39);
    assert_int_equal(strlen(out), 39);
    /* unknown total (a pipe): no bar, elapsed instead of ETA */
    p.bytes_total = 0;
    p.rejected = 3;
    cli_progress_format(out, sizeof(out), &p, true, 200);
    assert_string_equal(out, "50.0 MB  1.20M lines  2.40M samples/s  0:05  3 rejected");
    /* done */
    p.bytes_total = 50000000;
    p.rejected = 0;
    cli_progress_format(out, sizeof(out), &p, true, 200);
    assert_string_equal(out, "[############] 100.0%  50.0 MB/50.0 MB  1.20M lines  "
                             "2.40M samples/s  ETA 0:00");
    /* not a tty */
    p.bytes_total = 200000000;
    cli_progress_format(out, sizeof(out), &p, false, 0);
    assert_string_equal(out, "progress: bytes=50000000/200000000 (25.0%) lines=1200000 "
                             "samples=12000000 rate=2400000 samples/s rejected=0 elapsed=5.0s "
                             "eta=15s");
    p.bytes_total = 0;
    cli_progress_format(out, sizeof(out), &p, false, 0);
    assert_string_equal(out, "progress: bytes=50000000 lines=1200000 samples=12000000 "
                             "rate=2400000 samples/s rejected=0 elapsed=5.0s");
    /* nothing yet */
    cli_progress_t z = {.bytes_total = 100};
    cli_progress_format(out, sizeof(out), &z, true, 200);
    assert_string_equal(out, "[------------]   0.0%  0 B/100 B  0 lines  0 samples/s  ETA --:--");
    /* tiny buffers never overflow */
    assert_int_equal(cli_progress_format(out, 8, &p, true, 200), 7);
    assert_int_equal(strlen(out), 7);
}

static void test_lp_count_fields(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        uint32_t want;
    } cases[] = {
        {"cpu,host=a usage_user=1,usage_system=2 1000\n", 2},
        {"cpu value=1", 1},
        {"m,t=a\\ b f=1,s=\"x, y=2 \\\"q\\\"\",g=3i,h=t 5\r\n", 3},
        {"m\\ x,t\\,=v\\=1 a=1", 1},
        {"", 0},
        {"   \n", 0},
        {"# comment a=1,b=2", 0},
        {"m s=\"only string\"", 0},
        {"bad_line_without_fields", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t got = cli_lp_count_fields(cases[i].line, strlen(cases[i].line));
        if (got != cases[i].want)
            fail_msg("'%s': %u fields, want %u", cases[i].line, got, cases[i].want);
    }
}

/* ---- devops generator ------------------------------------------------------------------------ */

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void gen_all(const devops_cfg_t *cfg, st_buf_t *b)
{
    devops_t *g = devops_create(cfg);
    assert_non_null(g);
    int rc;
    while ((rc = devops_next_line(g, b)) > 0)
        ;
    assert_int_equal(rc, 0);
    devops_destroy(g);
}

static void test_devops_rng_matches_python(void **state)
{
    (void)state;
    /* values from CPython 3.11: random.Random(1) */
    devops_rng_t r;
    devops_rng_seed(&r, 1);
    assert_int_equal(devops_rng_u32(&r), 577090037U);
    assert_int_equal(devops_rng_u32(&r), 2444712010U);
    assert_int_equal(devops_rng_u32(&r), 3639700191U);
    devops_rng_seed(&r, 1);
    assert_true(devops_rng_random(&r) == 0.13436424411240122);
    assert_true(devops_rng_random(&r) == 0.8474337369372327);
    assert_true(devops_rng_random(&r) == 0.763774618976614);
    devops_rng_seed(&r, 1);
    assert_true(fabs(devops_rng_gauss(&r, 0, 1) - 1.2881847531554629) < 1e-15);
    assert_true(fabs(devops_rng_gauss(&r, 0, 1) - 1.449445608699771) < 1e-15);
    assert_true(fabs(devops_rng_gauss(&r, 0, 1) - 0.06633580893826191) < 1e-15);
    devops_rng_seed(&r, ((uint64_t)1 << 40) + 5); /* a two-word seed */
    static const uint32_t want[] = {64, 66, 34, 84, 3};
    for (int i = 0; i < 5; i++)
        assert_int_equal(devops_rng_below(&r, 100), want[i]);
}

static void test_devops_generator(void **state)
{
    (void)state;
    devops_cfg_t cfg = {
        .hosts = 3, .points = 2, .interval_s = 10, .start_s = 1451606400, .seed = 1, .decimals = 0};
    st_buf_t a, b;
    st_buf_init(&a);
    st_buf_init(&b);
    gen_all(&cfg, &a);
    /* gen_devops.py --hosts 3 --points 2: 2026 bytes, FNV-1a below */
    assert_int_equal(a.len, 2026);
    assert_true(fnv1a(a.data, a.len) == 0x701b556961fa7f53ULL);
    const char *first =
        "cpu,hostname=host_0,region=us-west-2,datacenter=us-west-2c,rack=97,os=Ubuntu16.10,"
        "arch=x86,team=SF,service=15,service_version=1,service_environment=staging "
        "usage_user=64,usage_system=3,usage_idle=85,usage_nice=68,usage_iowait=95,usage_irq=73,"
        "usage_softirq=51,usage_steal=76,usage_guest=92,usage_guest_nice=56 1451606400000000000\n";
    assert_memory_equal(a.data, first, strlen(first));
    /* deterministic: the same config gives the same bytes */
    gen_all(&cfg, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    /* six lines, time-major: three hosts at t0 then three at t0 + 10 s */
    int lines = 0;
    for (size_t i = 0; i < a.len; i++)
        lines += a.data[i] == '\n';
    assert_int_equal(lines, 6);
    /* decimals and another seed (gen_devops.py --hosts 3 --points 2 --decimals 3 --seed 7) */
    cfg.decimals = 3;
    cfg.seed = 7;
    st_buf_reset(&b);
    gen_all(&cfg, &b);
    assert_int_equal(b.len, 2230);
    const char *last =
        "cpu,hostname=host_2,region=sa-east-1,datacenter=sa-east-1b,rack=7,os=Ubuntu15.10,"
        "arch=x64,team=NYC,service=18,service_version=0,service_environment=test "
        "usage_user=46.491,usage_system=92.411,usage_idle=36.909,usage_nice=25.181,"
        "usage_iowait=18.523,usage_irq=77.414,usage_softirq=7.025,usage_steal=31.298,"
        "usage_guest=50.966,usage_guest_nice=34.726 1451606410000000000\n";
    assert_memory_equal(b.data + b.len - strlen(last), last, strlen(last));
    /* 10 numeric fields per line */
    size_t off = 0;
    while (off < a.len) {
        const char *nl = memchr(a.data + off, '\n', a.len - off);
        assert_non_null(nl);
        size_t n = (size_t)(nl - (const char *)a.data) - off + 1;
        assert_int_equal(cli_lp_count_fields((const char *)a.data + off, n), DEVOPS_FIELDS);
        off += n;
    }
    /* points from hours, rounding half to even like Python */
    assert_int_equal(devops_points_for_hours(3, 10), 1080);
    assert_int_equal(devops_points_for_hours(0.5, 10), 180);
    assert_int_equal(devops_points_for_hours(25.0 / 3600, 10), 2); /* 2.5 -> 2 */
    assert_int_equal(devops_points_for_hours(35.0 / 3600, 10), 4); /* 3.5 -> 4 */
    /* bad configs */
    devops_cfg_t bad = cfg;
    bad.hosts = 0;
    assert_null(devops_create(&bad));
    bad = cfg;
    bad.interval_s = 0;
    assert_null(devops_create(&bad));
    bad = cfg;
    bad.decimals = 18;
    assert_null(devops_create(&bad));
    st_buf_deinit(&a);
    st_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_query_escape),
        cmocka_unit_test(test_resp_content_length),
        cmocka_unit_test(test_resp_chunked),
        cmocka_unit_test(test_resp_no_body_and_interim),
        cmocka_unit_test(test_resp_errors),
        cmocka_unit_test(test_parse_time_duration),
        cmocka_unit_test(test_percentile),
        cmocka_unit_test(test_fmt_numbers),
        cmocka_unit_test(test_progress_format),
        cmocka_unit_test(test_lp_count_fields),
        cmocka_unit_test(test_devops_rng_matches_python),
        cmocka_unit_test(test_devops_generator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
