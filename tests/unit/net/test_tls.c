/* Unit tests for common/net/tls: client and server sessions pumped into each
 * other in memory (no sockets): handshake and data both ways, mutual TLS,
 * a certificate from another CA, plaintext on a TLS port, the handshake
 * byte limit, the server name check, reload with a session running. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "st_err.h"
#include "tls.h"
#include "tls_test_certs.h"

typedef struct pair {
    tls_ctx_t *sctx, *cctx;
    tls_conn_t *s, *c;
    st_buf_t s_plain, c_plain;
    int s_rc, c_rc;
} pair_t;

static tls_ctx_t *mk_ctx(int server, const char *cert, const char *key, const char *ca)
{
    tls_config_t cfg = {.server = server, .cert_pem = cert, .key_pem = key, .ca_pem = ca};
    tls_ctx_t *ctx = NULL;
    char err[256];
    int rc = tls_ctx_create(&cfg, &ctx, err, sizeof err);
    if (rc)
        fprintf(stderr, "tls_ctx_create: %s\n", err);
    assert_int_equal(rc, 0);
    return ctx;
}

/* Move ciphertext both ways until nothing moves (bounded). */
static void pump(pair_t *p)
{
    for (int i = 0; i < 50; i++) {
        st_buf_t a, b;
        st_buf_init(&a);
        st_buf_init(&b);
        assert_int_equal(tls_conn_take(p->c, &a), 0);
        assert_int_equal(tls_conn_take(p->s, &b), 0);
        if (a.len == 0 && b.len == 0) {
            st_buf_deinit(&a);
            st_buf_deinit(&b);
            return;
        }
        if (a.len && p->s_rc == 0)
            p->s_rc = tls_conn_feed(p->s, a.data, a.len, &p->s_plain);
        if (b.len && p->c_rc == 0)
            p->c_rc = tls_conn_feed(p->c, b.data, b.len, &p->c_plain);
        st_buf_deinit(&a);
        st_buf_deinit(&b);
    }
    fail_msg("pump did not settle");
}

static void pair_open(pair_t *p, tls_ctx_t *sctx, tls_ctx_t *cctx, const char *host)
{
    memset(p, 0, sizeof *p);
    p->sctx = sctx;
    p->cctx = cctx;
    st_buf_init(&p->s_plain);
    st_buf_init(&p->c_plain);
    assert_int_equal(tls_conn_create(sctx, NULL, &p->s), 0);
    assert_int_equal(tls_conn_create(cctx, host, &p->c), 0);
}

static void pair_close(pair_t *p)
{
    tls_conn_destroy(p->s);
    tls_conn_destroy(p->c);
    st_buf_deinit(&p->s_plain);
    st_buf_deinit(&p->c_plain);
}

static void test_handshake_and_data(void **state)
{
    (void)state;
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, NULL);
    tls_ctx_t *c = mk_ctx(0, NULL, NULL, TT_CA_CRT);
    pair_t p;
    pair_open(&p, s, c, "127.0.0.1");
    /* written before the handshake: held, then sent */
    assert_int_equal(tls_conn_write(p.c, "hello ", 6), 0);
    assert_int_equal(tls_conn_write(p.c, "server", 6), 0);
    pump(&p);
    assert_int_equal(p.s_rc, 0);
    assert_int_equal(p.c_rc, 0);
    assert_true(tls_conn_established(p.s));
    assert_true(tls_conn_established(p.c));
    assert_int_equal(p.s_plain.len, 12);
    assert_memory_equal(p.s_plain.data, "hello server", 12);
    assert_string_equal(tls_conn_version(p.c), "TLSv1.3");
    /* a large reply crosses many records */
    size_t big = 300000;
    char *buf = malloc(big);
    for (size_t i = 0; i < big; i++)
        buf[i] = (char)('a' + i % 26);
    assert_int_equal(tls_conn_write(p.s, buf, big), 0);
    pump(&p);
    assert_int_equal(p.c_plain.len, big);
    assert_memory_equal(p.c_plain.data, buf, big);
    free(buf);
    assert_int_equal(tls_ctx_handshakes(s), 1);
    /* close_notify reads as end of stream */
    tls_conn_close_notify(p.c);
    st_buf_t out;
    st_buf_init(&out);
    assert_int_equal(tls_conn_take(p.c, &out), 0);
    assert_int_equal(tls_conn_feed(p.s, out.data, out.len, &p.s_plain), ST_ECLOSED);
    st_buf_deinit(&out);
    pair_close(&p);
    tls_ctx_destroy(s);
    tls_ctx_destroy(c);
}

/* TLS 1.3: the client's first data rides right behind its Finished, so the
 * server gets both in one read; that data is not the handshake's and must
 * not count against its byte limit. */
static void test_data_right_behind_the_handshake(void **state)
{
    (void)state;
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, NULL);
    tls_ctx_t *c = mk_ctx(0, NULL, NULL, TT_CA_CRT);
    pair_t p;
    pair_open(&p, s, c, "127.0.0.1");
    size_t big = 3 * TLS_HANDSHAKE_MAX_DEFAULT;
    char *buf = calloc(1, big);
    assert_int_equal(tls_conn_write(p.c, buf, big), 0);
    pump(&p);
    assert_int_equal(p.s_rc, 0);
    assert_int_equal(p.s_plain.len, big);
    free(buf);
    pair_close(&p);
    tls_ctx_destroy(s);
    tls_ctx_destroy(c);
}

/* Start TLS on a stream after N plaintext bytes (PostgreSQL: an 8-byte
 * SSLRequest answered 'S'): the glue keeps the first bytes, makes the
 * session and feeds it what came after them, here in the same read. */
static void test_starttls_after_plaintext(void **state)
{
    (void)state;
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, NULL);
    tls_ctx_t *c = mk_ctx(0, NULL, NULL, TT_CA_CRT);
    tls_conn_t *cli;
    assert_int_equal(tls_conn_create(c, "localhost", &cli), 0);
    static const uint8_t sslrequest[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    st_buf_t wire;
    st_buf_init(&wire);
    assert_int_equal(st_buf_append(&wire, sslrequest, 8), 0);
    assert_int_equal(tls_conn_take(cli, &wire), 0); /* the ClientHello, right behind */
    assert_true(wire.len > 8);
    assert_memory_equal(wire.data, sslrequest, 8);
    pair_t p;
    memset(&p, 0, sizeof p);
    st_buf_init(&p.s_plain);
    st_buf_init(&p.c_plain);
    p.c = cli;
    assert_int_equal(tls_conn_create(s, NULL, &p.s), 0);
    p.s_rc = tls_conn_feed(p.s, wire.data + 8, wire.len - 8, &p.s_plain);
    assert_int_equal(p.s_rc, 0);
    assert_int_equal(tls_conn_write(p.c, "SELECT 1", 8), 0);
    pump(&p);
    assert_true(tls_conn_established(p.s));
    assert_int_equal(p.s_plain.len, 8);
    st_buf_deinit(&wire);
    pair_close(&p);
    tls_ctx_destroy(s);
    tls_ctx_destroy(c);
}

static void test_mutual_tls(void **state)
{
    (void)state;
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, TT_CA_CRT);
    tls_ctx_t *good = mk_ctx(0, TT_CLI_CRT, TT_CLI_KEY, TT_CA_CRT);
    tls_ctx_t *none = mk_ctx(0, NULL, NULL, TT_CA_CRT);
    tls_ctx_t *evil = mk_ctx(0, TT_EVIL_CRT, TT_EVIL_KEY, TT_CA_CRT);
    pair_t p;
    pair_open(&p, s, good, "localhost");
    assert_int_equal(tls_conn_write(p.c, "x", 1), 0);
    pump(&p);
    assert_true(tls_conn_established(p.s));
    assert_string_equal(tls_conn_peer_name(p.s), "client");
    assert_int_equal(p.s_plain.len, 1);
    /* the names a certificate carries: CN or DNS subjectAltName, exactly */
    assert_true(tls_conn_peer_named(p.s, "client"));
    assert_true(tls_conn_peer_named(p.s, "localhost"));
    assert_false(tls_conn_peer_named(p.s, "clien"));
    assert_false(tls_conn_peer_named(p.s, "Client"));
    assert_false(tls_conn_peer_named(p.s, "127.0.0.1")); /* an IP SAN is not a name */
    assert_false(tls_conn_peer_named(p.s, ""));
    assert_true(tls_conn_peer_named(p.c, "server"));
    pair_close(&p);

    /* no client certificate: refused, counted as a certificate failure */
    pair_open(&p, s, none, "localhost");
    assert_int_equal(tls_conn_write(p.c, "x", 1), 0);
    pump(&p);
    assert_int_equal(p.s_rc, ST_EPROTO);
    assert_int_equal(tls_conn_failure(p.s), TLS_FAIL_CERT);
    assert_int_equal(p.s_plain.len, 0);
    assert_false(tls_conn_peer_named(p.s, "client"));
    pair_close(&p);

    /* a certificate from another CA: refused on the server, and the client
     * learns it from the alert */
    pair_open(&p, s, evil, "localhost");
    assert_int_equal(tls_conn_write(p.c, "x", 1), 0);
    pump(&p);
    assert_int_equal(p.s_rc, ST_EPROTO);
    assert_int_equal(tls_conn_failure(p.s), TLS_FAIL_CERT);
    assert_true(strstr(tls_conn_error(p.s), "certificate") != NULL);
    assert_int_equal(p.c_rc, ST_EPROTO);
    assert_int_equal(p.s_plain.len, 0);
    assert_int_equal(tls_ctx_failures(s, TLS_FAIL_CERT), 2);
    pair_close(&p);

    /* the server's certificate from another CA: the client refuses it */
    tls_ctx_t *s_evil = mk_ctx(1, TT_EVIL_CRT, TT_EVIL_KEY, NULL);
    pair_open(&p, s_evil, none, "127.0.0.1");
    pump(&p);
    assert_int_equal(p.c_rc, ST_EPROTO);
    assert_int_equal(tls_conn_failure(p.c), TLS_FAIL_CERT);
    pair_close(&p);
    tls_ctx_destroy(s_evil);
    tls_ctx_destroy(s);
    tls_ctx_destroy(good);
    tls_ctx_destroy(none);
    tls_ctx_destroy(evil);
}

static void test_wrong_name(void **state)
{
    (void)state;
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, NULL);
    tls_ctx_t *c = mk_ctx(0, NULL, NULL, TT_CA_CRT);
    pair_t p;
    pair_open(&p, s, c, "db.example.com");
    pump(&p);
    assert_int_equal(p.c_rc, ST_EPROTO);
    assert_int_equal(tls_conn_failure(p.c), TLS_FAIL_CERT);
    pair_close(&p);
    pair_open(&p, s, c, "10.1.2.3");
    pump(&p);
    assert_int_equal(tls_conn_failure(p.c), TLS_FAIL_CERT);
    pair_close(&p);
    tls_ctx_destroy(s);
    tls_ctx_destroy(c);
}

static void test_plaintext_and_limit(void **state)
{
    (void)state;
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, NULL);
    tls_conn_t *t;
    st_buf_t plain;
    st_buf_init(&plain);
    assert_int_equal(tls_conn_create(s, NULL, &t), 0);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(tls_conn_feed(t, req, strlen(req), &plain), ST_EPROTO);
    assert_int_equal(tls_conn_failure(t), TLS_FAIL_NOT_TLS);
    assert_int_equal(tls_conn_feed(t, req, strlen(req), &plain), ST_EPROTO); /* stays failed */
    assert_int_equal(tls_ctx_failures(s, TLS_FAIL_NOT_TLS), 1);
    tls_conn_destroy(t);

    /* a record header announcing a huge handshake, then bytes up to the limit */
    assert_int_equal(tls_conn_create(s, NULL, &t), 0);
    uint8_t hdr[5] = {22, 3, 1, 0x40, 0x00};
    assert_int_equal(tls_conn_feed(t, hdr, 5, &plain), 0);
    uint8_t *junk = calloc(1, TLS_HANDSHAKE_MAX_DEFAULT);
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = tls_conn_feed(t, junk, TLS_HANDSHAKE_MAX_DEFAULT / 2, &plain);
    assert_int_equal(rc, ST_EPROTO);
    assert_true(tls_conn_failure(t) == TLS_FAIL_LIMIT || tls_conn_failure(t) == TLS_FAIL_PROTOCOL);
    free(junk);
    tls_conn_destroy(t);
    assert_int_equal(plain.len, 0);
    st_buf_deinit(&plain);
    tls_ctx_destroy(s);
}

static void test_version_floor(void **state)
{
    (void)state;
    /* a ClientHello offering only TLS 1.1 (legacy_version 0x0302, no
     * supported_versions extension) is refused as a version failure */
    static const uint8_t hello11[] = {
        22, 3,  1,    0,    45, /* record: handshake, 45 bytes */
        1,  0,  0,    41,       /* ClientHello, 41 bytes */
        3,  2,                  /* TLS 1.1 */
        1,  2,  3,    4,    5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
        18, 19, 20,   21,   22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 0, /* no session id */
        0,  2,  0xc0, 0x13, /* ECDHE-RSA-AES128-SHA */
        1,  0,              /* no compression */
    };
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, NULL);
    tls_conn_t *t;
    st_buf_t plain;
    st_buf_init(&plain);
    assert_int_equal(tls_conn_create(s, NULL, &t), 0);
    assert_int_equal(tls_conn_feed(t, hello11, sizeof hello11, &plain), ST_EPROTO);
    assert_int_equal(tls_conn_failure(t), TLS_FAIL_VERSION);
    st_buf_t out;
    st_buf_init(&out);
    assert_int_equal(tls_conn_take(t, &out), 0);
    assert_true(out.len > 0 && out.data[0] == 21); /* an alert goes back */
    st_buf_deinit(&out);
    tls_conn_destroy(t);
    st_buf_deinit(&plain);
    tls_ctx_destroy(s);
}

static void test_reload_keeps_sessions(void **state)
{
    (void)state;
    tls_ctx_t *s = mk_ctx(1, TT_SRV_CRT, TT_SRV_KEY, NULL);
    tls_ctx_t *c = mk_ctx(0, NULL, NULL, TT_CA_CRT);
    pair_t p;
    pair_open(&p, s, c, "127.0.0.1");
    pump(&p);
    assert_true(tls_conn_established(p.c));
    char err[256];
    assert_int_equal(tls_ctx_reload(s, err, sizeof err), 0);
    assert_int_equal(tls_ctx_reloads(s), 1);
    assert_int_equal(tls_conn_write(p.c, "after", 5), 0);
    pump(&p);
    assert_int_equal(p.s_plain.len, 5);
    pair_close(&p);
    /* a new session after the reload */
    pair_open(&p, s, c, "127.0.0.1");
    pump(&p);
    assert_true(tls_conn_established(p.s));
    pair_close(&p);
    tls_ctx_destroy(s);
    tls_ctx_destroy(c);
}

static void test_config_errors(void **state)
{
    (void)state;
    char err[256];
    tls_ctx_t *ctx = NULL;
    tls_config_t cfg = {.server = 1, .cert_file = "/nonexistent/tls.crt", .key_file = "/x"};
    assert_int_equal(tls_ctx_create(&cfg, &ctx, err, sizeof err), ST_ECONFIG);
    assert_null(ctx);
    assert_non_null(strstr(err, "/nonexistent/tls.crt"));
    tls_config_t nocert = {.server = 1};
    assert_int_equal(tls_ctx_create(&nocert, &ctx, err, sizeof err), ST_ECONFIG);
    tls_config_t mismatch = {.server = 1, .cert_pem = TT_SRV_CRT, .key_pem = TT_CLI_KEY};
    assert_int_equal(tls_ctx_create(&mismatch, &ctx, err, sizeof err), ST_ECONFIG);
    assert_non_null(strstr(err, "private key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_data_right_behind_the_handshake),
        cmocka_unit_test(test_starttls_after_plaintext),
        cmocka_unit_test(test_mutual_tls),
        cmocka_unit_test(test_wrong_name),
        cmocka_unit_test(test_plaintext_and_limit),
        cmocka_unit_test(test_version_floor),
        cmocka_unit_test(test_reload_keeps_sessions),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
