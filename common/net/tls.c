/*
 * tls — TLS sessions over OpenSSL memory BIOs; see tls.h.
 *
 * A session is an SSL object between two memory BIOs: rbio takes what the
 * peer sent (tls_conn_feed), wbio collects what must go to the peer
 * (tls_conn_take). The handshake advances inside feed; plaintext written
 * before it completes waits in `held` and is encrypted right after.
 *
 * Failure reasons come from the session, not from OpenSSL's error strings
 * alone: a first byte that is not a TLS handshake record is NOT_TLS (plain
 * HTTP or RPC on a TLS port) before OpenSSL sees it; a failed certificate
 * verification on either side is CERT; version and cipher refusals are
 * VERSION. The OpenSSL error queue is per thread and cleared around every
 * call so one session's error never shows up in another's message.
 */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "st_err.h"

#define HS_PIECE 4096 /* handshake bytes fed to OpenSSL at a time */

struct tls_ctx {
    int server;
    char *cert_file, *key_file, *ca_file;
    char *cert_pem, *key_pem, *ca_pem;
    size_t hs_max;
    SSL_CTX *cur; /* new sessions take a reference to it */
    uint64_t fails[TLS_FAIL__COUNT];
    uint64_t handshakes, reloads;
    metric_counter_t *m_fail[TLS_FAIL__COUNT];
    metric_counter_t *m_hs;
};

struct tls_conn {
    tls_ctx_t *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
    st_buf_t held; /* plaintext written before the handshake completed */
    size_t hs_in;  /* ciphertext bytes taken during the handshake */
    int established;
    int first_seen;
    tls_fail_t fail;
    char err[256];
    char peer[128];
};

static const char *const fail_names[TLS_FAIL__COUNT] = {
    "none", "not_tls", "version", "certificate", "limit", "timeout", "protocol", "identity"};

const char *tls_fail_name(tls_fail_t r)
{
    return (unsigned)r < TLS_FAIL__COUNT ? fail_names[r] : "unknown";
}

/* ---- context ------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *what, const char *name)
{
    if (!err || !errlen)
        return;
    unsigned long e = ERR_peek_last_error();
    char ossl[160] = "";
    if (e)
        ERR_error_string_n(e, ossl, sizeof ossl);
    snprintf(err, errlen, "%s%s%s%s%s", what, name ? " " : "", name ? name : "", e ? ": " : "",
             ossl);
    ERR_clear_error();
}

static int use_pem_chain(SSL_CTX *sc, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return 0;
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    int ok = x && SSL_CTX_use_certificate(sc, x) == 1;
    X509_free(x);
    while (ok) {
        X509 *extra = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!extra)
            break;
        if (SSL_CTX_add_extra_chain_cert(sc, extra) != 1) { /* takes ownership on success */
            X509_free(extra);
            ok = 0;
        }
    }
    BIO_free(b);
    if (ok)
        ERR_clear_error(); /* the end of the PEM text is not an error */
    return ok;
}

static int use_pem_key(SSL_CTX *sc, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return 0;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    int ok = k && SSL_CTX_use_PrivateKey(sc, k) == 1;
    EVP_PKEY_free(k);
    BIO_free(b);
    return ok;
}

static int add_pem_cas(SSL_CTX *sc, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return 0;
    X509_STORE *st = SSL_CTX_get_cert_store(sc);
    int n = 0;
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!x)
            break;
        if (X509_STORE_add_cert(st, x) == 1)
            n++;
        if (sc && n == 1) {
            STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
            if (names && sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(x))))
                SSL_CTX_set_client_CA_list(sc, names);
            else
                sk_X509_NAME_free(names);
        }
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    return n > 0;
}

/* TLS 1.2: ECDHE with AEAD ciphers only. TLS 1.3: OpenSSL's defaults (all AEAD). */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

static SSL_CTX *ctx_build(const tls_ctx_t *c, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *sc = SSL_CTX_new(c->server ? TLS_server_method() : TLS_client_method());
    if (!sc) {
        set_err(err, errlen, "cannot create a TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
    SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(sc, 0);
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(sc, TLS12_CIPHERS) != 1) {
        set_err(err, errlen, "cannot set the TLS 1.2 ciphers", NULL);
        goto fail;
    }
    int have_cert = 0;
    if (c->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(sc, c->cert_file) != 1) {
            set_err(err, errlen, "cannot load the certificate", c->cert_file);
            goto fail;
        }
        have_cert = 1;
    } else if (c->cert_pem) {
        if (!use_pem_chain(sc, c->cert_pem)) {
            set_err(err, errlen, "cannot load the certificate", "(PEM text)");
            goto fail;
        }
        have_cert = 1;
    }
    if (have_cert) {
        if (c->key_file) {
            if (SSL_CTX_use_PrivateKey_file(sc, c->key_file, SSL_FILETYPE_PEM) != 1) {
                set_err(err, errlen, "cannot load the private key", c->key_file);
                goto fail;
            }
        } else if (!c->key_pem || !use_pem_key(sc, c->key_pem)) {
            set_err(err, errlen, "cannot load the private key", "(none given)");
            goto fail;
        }
        if (SSL_CTX_check_private_key(sc) != 1) {
            set_err(err, errlen, "the private key does not match the certificate",
                    c->cert_file ? c->cert_file : "(PEM text)");
            goto fail;
        }
    } else if (c->server) {
        set_err(err, errlen, "a TLS server needs a certificate and a key", NULL);
        goto fail;
    }
    int have_ca = 0;
    if (c->ca_file) {
        if (SSL_CTX_load_verify_locations(sc, c->ca_file, NULL) != 1) {
            set_err(err, errlen, "cannot load the CA certificates", c->ca_file);
            goto fail;
        }
        if (c->server) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(sc, names);
        }
        have_ca = 1;
    } else if (c->ca_pem) {
        if (!add_pem_cas(sc, c->ca_pem)) {
            set_err(err, errlen, "cannot load the CA certificates", "(PEM text)");
            goto fail;
        }
        have_ca = 1;
    }
    if (c->server) {
        if (have_ca)
            SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    } else {
        if (!have_ca)
            SSL_CTX_set_default_verify_paths(sc);
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    }
    ERR_clear_error();
    return sc;
fail:
    SSL_CTX_free(sc);
    return NULL;
}

static char *dup_opt(const char *s, int *bad)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *bad = 1;
    return d;
}

void tls_ctx_destroy(tls_ctx_t *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->cur);
    free(ctx->cert_file);
    free(ctx->key_file);
    free(ctx->ca_file);
    free(ctx->cert_pem);
    free(ctx->key_pem);
    free(ctx->ca_pem);
    free(ctx);
}

int tls_ctx_create(const tls_config_t *cfg, tls_ctx_t **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || !out)
        return ST_EINVAL;
    *out = NULL;
    tls_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    int bad = 0;
    c->server = cfg->server;
    c->cert_file = dup_opt(cfg->cert_file, &bad);
    c->key_file = dup_opt(cfg->key_file, &bad);
    c->ca_file = dup_opt(cfg->ca_file, &bad);
    c->cert_pem = dup_opt(cfg->cert_pem, &bad);
    c->key_pem = dup_opt(cfg->key_pem, &bad);
    c->ca_pem = dup_opt(cfg->ca_pem, &bad);
    c->hs_max = cfg->handshake_max_bytes ? cfg->handshake_max_bytes : TLS_HANDSHAKE_MAX_DEFAULT;
    if (bad) {
        tls_ctx_destroy(c);
        return ST_ENOMEM;
    }
    c->cur = ctx_build(c, err, errlen);
    if (!c->cur) {
        tls_ctx_destroy(c);
        return ST_ECONFIG;
    }
    *out = c;
    return 0;
}

int tls_ctx_reload(tls_ctx_t *ctx, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    SSL_CTX *sc = ctx_build(ctx, err, errlen);
    if (!sc)
        return ST_ECONFIG;
    SSL_CTX_free(ctx->cur); /* running sessions hold their own reference */
    ctx->cur = sc;
    ctx->reloads++;
    return 0;
}

int tls_ctx_metrics(tls_ctx_t *ctx, metrics_t *reg, const char *name)
{
    if (!ctx || !reg || !name)
        return ST_EINVAL;
    for (int i = 1; i < TLS_FAIL__COUNT; i++) {
        ctx->m_fail[i] = metrics_counter(
            reg, "strata_tls_handshake_failures_total",
            "TLS handshakes that failed, by reason: not_tls (plaintext on a TLS port), version "
            "(protocol or cipher refused), certificate (missing or untrusted peer certificate), "
            "limit (handshake over its byte limit), timeout, protocol (any other TLS error), "
            "identity (RPC: the certificate does not name the node id the peer claims).",
            "listener", name, "reason", fail_names[i], NULL);
        if (!ctx->m_fail[i])
            return ST_ENOMEM;
        metric_counter_add(ctx->m_fail[i], ctx->fails[i]);
    }
    ctx->m_hs = metrics_counter(reg, "strata_tls_handshakes_total", "TLS handshakes completed.",
                                "listener", name, NULL);
    if (!ctx->m_hs)
        return ST_ENOMEM;
    metric_counter_add(ctx->m_hs, ctx->handshakes);
    return 0;
}

void tls_ctx_count_failure(tls_ctx_t *ctx, tls_fail_t r)
{
    if (!ctx || r <= TLS_FAIL_NONE || r >= TLS_FAIL__COUNT)
        return;
    ctx->fails[r]++;
    metric_counter_inc(ctx->m_fail[r]);
}

uint64_t tls_ctx_failures(const tls_ctx_t *ctx, tls_fail_t r)
{
    return (unsigned)r < TLS_FAIL__COUNT ? ctx->fails[r] : 0;
}

uint64_t tls_ctx_handshakes(const tls_ctx_t *ctx)
{
    return ctx->handshakes;
}

uint64_t tls_ctx_reloads(const tls_ctx_t *ctx)
{
    return ctx->reloads;
}

int tls_ctx_wants_peer_cert(const tls_ctx_t *ctx)
{
    return ctx && ctx->server && (ctx->ca_file || ctx->ca_pem);
}

/* ---- sessions ----------------------------------------------------------- */

int tls_conn_create(tls_ctx_t *ctx, const char *peer_host, tls_conn_t **out)
{
    if (!ctx || !out)
        return ST_EINVAL;
    *out = NULL;
    tls_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    c->ctx = ctx;
    st_buf_init(&c->held);
    ERR_clear_error();
    c->ssl = SSL_new(ctx->cur);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return ST_ENOMEM;
    }
    /* an empty read BIO means "wait for more", not EOF */
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    if (ctx->server) {
        SSL_set_accept_state(c->ssl);
    } else {
        if (peer_host && *peer_host) {
            unsigned char ip[16];
            int is_ip =
                inet_pton(AF_INET, peer_host, ip) == 1 || inet_pton(AF_INET6, peer_host, ip) == 1;
            X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
            int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, peer_host)
                           : (SSL_set_tlsext_host_name(c->ssl, peer_host) == 1 &&
                              SSL_set1_host(c->ssl, peer_host) == 1);
            if (!ok) {
                tls_conn_destroy(c);
                ERR_clear_error();
                return ST_EINVAL;
            }
        }
        SSL_set_connect_state(c->ssl);
        SSL_do_handshake(c->ssl); /* queues the ClientHello */
        ERR_clear_error();
    }
    *out = c;
    return 0;
}

void tls_conn_destroy(tls_conn_t *c)
{
    if (!c)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    st_buf_deinit(&c->held);
    free(c);
}

static int reason_is(unsigned long e, int r)
{
    return e && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == r;
}

static tls_fail_t classify(tls_conn_t *c, unsigned long e)
{
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        return TLS_FAIL_CERT;
    if (reason_is(e, SSL_R_CERTIFICATE_VERIFY_FAILED) ||
        reason_is(e, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) ||
        reason_is(e, SSL_R_TLSV1_ALERT_UNKNOWN_CA) ||
        reason_is(e, SSL_R_SSLV3_ALERT_BAD_CERTIFICATE) ||
        reason_is(e, SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED) ||
        reason_is(e, SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN) ||
        reason_is(e, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED))
        return TLS_FAIL_CERT;
    if (reason_is(e, SSL_R_UNSUPPORTED_PROTOCOL) || reason_is(e, SSL_R_NO_PROTOCOLS_AVAILABLE) ||
        reason_is(e, SSL_R_VERSION_TOO_LOW) || reason_is(e, SSL_R_WRONG_VERSION_NUMBER) ||
        reason_is(e, SSL_R_NO_SHARED_CIPHER) || reason_is(e, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION))
        return TLS_FAIL_VERSION;
    if (reason_is(e, SSL_R_HTTP_REQUEST) || reason_is(e, SSL_R_HTTPS_PROXY_REQUEST))
        return TLS_FAIL_NOT_TLS;
    return TLS_FAIL_PROTOCOL;
}

static int fail(tls_conn_t *c, tls_fail_t why, const char *text)
{
    if (c->fail == TLS_FAIL_NONE) {
        c->fail = why;
        snprintf(c->err, sizeof c->err, "%s", text);
        tls_ctx_count_failure(c->ctx, why);
    }
    ERR_clear_error();
    return ST_EPROTO;
}

static int fail_ssl(tls_conn_t *c)
{
    unsigned long e = ERR_peek_last_error();
    tls_fail_t why = classify(c, e);
    char text[256] = "";
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        snprintf(text, sizeof text, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    else if (e)
        snprintf(text, sizeof text, "%s",
                 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "TLS error");
    else
        snprintf(text, sizeof text, "TLS error");
    return fail(c, why, text);
}

static int write_now(tls_conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        int n = len > (1u << 30) ? (1 << 30) : (int)len;
        int w = SSL_write(c->ssl, p, n);
        if (w <= 0)
            return fail_ssl(c);
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int tls_conn_feed(tls_conn_t *c, const void *data, size_t len, st_buf_t *plain)
{
    if (c->fail)
        return ST_EPROTO;
    ERR_clear_error();
    if (len > 0 && !c->first_seen) {
        c->first_seen = 1;
        /* a TLS connection opens with a handshake record (22); a peer that
         * answers with an alert (21) is TLS too */
        unsigned char b0 = *(const unsigned char *)data;
        if (b0 != 22 && b0 != 21)
            return fail(c, TLS_FAIL_NOT_TLS, "the peer does not speak TLS");
    }
    /* During the handshake, bytes go in a piece at a time so that what
     * follows the peer's last handshake message in the same read (TLS 1.3:
     * the client's first request right behind its Finished) is not charged
     * to the handshake limit. */
    const uint8_t *p = data;
    size_t left = len;
    while (!c->established && left > 0) {
        size_t n = left < HS_PIECE ? left : HS_PIECE;
        if (n > c->ctx->hs_max - c->hs_in) {
            char msg[96];
            snprintf(msg, sizeof msg, "handshake over the limit of %zu bytes", c->ctx->hs_max);
            return fail(c, TLS_FAIL_LIMIT, msg);
        }
        c->hs_in += n;
        if (BIO_write(c->rbio, p, (int)n) != (int)n)
            return fail(c, TLS_FAIL_PROTOCOL, "out of memory");
        p += n;
        left -= n;
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                continue;
            return fail_ssl(c);
        }
        c->established = 1;
        c->ctx->handshakes++;
        metric_counter_inc(c->ctx->m_hs);
        X509 *peer = SSL_get1_peer_certificate(c->ssl);
        if (peer) {
            X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, c->peer,
                                      sizeof c->peer);
            X509_free(peer);
        }
        if (c->held.len) {
            int rc = write_now(c, c->held.data, c->held.len);
            st_buf_deinit(&c->held);
            st_buf_init(&c->held);
            if (rc)
                return rc;
        }
    }
    if (!c->established)
        return 0;
    if (left > 0 && BIO_write(c->rbio, p, (int)left) != (int)left)
        return fail(c, TLS_FAIL_PROTOCOL, "out of memory");
    for (;;) {
        if (st_buf_reserve(plain, 16384) != 0)
            return fail(c, TLS_FAIL_PROTOCOL, "out of memory");
        size_t room = plain->cap - plain->len;
        int n =
            SSL_read(c->ssl, plain->data + plain->len, room > (1u << 30) ? (1 << 30) : (int)room);
        if (n > 0) {
            plain->len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify */
            ERR_clear_error();
            return ST_ECLOSED;
        }
        return fail_ssl(c);
    }
    ERR_clear_error();
    return 0;
}

int tls_conn_write(tls_conn_t *c, const void *data, size_t len)
{
    if (c->fail)
        return ST_EPROTO;
    if (len == 0)
        return 0;
    if (!c->established)
        return st_buf_append(&c->held, data, len) == 0 ? 0 : ST_ENOMEM;
    ERR_clear_error();
    return write_now(c, data, len);
}

size_t tls_conn_out_pending(const tls_conn_t *c)
{
    return BIO_ctrl_pending(c->wbio);
}

int tls_conn_take(tls_conn_t *c, st_buf_t *out)
{
    size_t n = BIO_ctrl_pending(c->wbio);
    if (n == 0)
        return 0;
    if (st_buf_reserve(out, n) != 0)
        return ST_ENOMEM;
    int r = BIO_read(c->wbio, out->data + out->len, (int)n);
    if (r > 0)
        out->len += (size_t)r;
    return 0;
}

void tls_conn_close_notify(tls_conn_t *c)
{
    if (c->established && !c->fail) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
}

int tls_conn_established(const tls_conn_t *c)
{
    return c->established && !c->fail;
}

tls_fail_t tls_conn_failure(const tls_conn_t *c)
{
    return c->fail;
}

const char *tls_conn_error(const tls_conn_t *c)
{
    return c->err;
}

const char *tls_conn_version(const tls_conn_t *c)
{
    return SSL_get_version(c->ssl);
}

const char *tls_conn_peer_name(const tls_conn_t *c)
{
    return c->peer;
}

static int asn1_is(const ASN1_STRING *a, const char *name, size_t n)
{
    return a && (size_t)ASN1_STRING_length(a) == n &&
           memcmp(ASN1_STRING_get0_data(a), name, n) == 0;
}

int tls_conn_peer_named(const tls_conn_t *c, const char *name)
{
    if (!c || !c->established || !name || !*name)
        return 0;
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    if (!x)
        return 0;
    size_t n = strlen(name);
    const X509_NAME *subj = X509_get_subject_name(x);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;)
        if (asn1_is(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)), name, n))
            return 1;
    int found = 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && !found && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        found = g->type == GEN_DNS && asn1_is(g->d.dNSName, name, n);
    }
    GENERAL_NAMES_free(sans);
    ERR_clear_error();
    return found;
}

/* ---- a process's contexts ------------------------------------------------ */

int tls_set_create(const tls_files_t *f, int want_rpc_server, tls_set_t *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = 0;
    if (f->cert) {
        tls_config_t c = {
            .server = 1, .cert_file = f->cert, .key_file = f->key, .ca_file = f->client_ca};
        rc = tls_ctx_create(&c, &out->listen, err, errlen);
    }
    if (rc == 0 && f->rpc_ca && want_rpc_server) {
        tls_config_t c = {
            .server = 1, .cert_file = f->rpc_cert, .key_file = f->rpc_key, .ca_file = f->rpc_ca};
        rc = tls_ctx_create(&c, &out->rpc_server, err, errlen);
    }
    if (rc == 0 && f->rpc_ca) {
        tls_config_t c = {
            .server = 0, .cert_file = f->rpc_cert, .key_file = f->rpc_key, .ca_file = f->rpc_ca};
        rc = tls_ctx_create(&c, &out->rpc_client, err, errlen);
    }
    if (rc)
        tls_set_destroy(out);
    return rc;
}

int tls_set_reload(tls_set_t *s, char *err, size_t errlen)
{
    tls_ctx_t *all[3] = {s->listen, s->rpc_server, s->rpc_client};
    int first = 0;
    for (int i = 0; i < 3; i++) {
        char e[512];
        int rc = all[i] ? tls_ctx_reload(all[i], e, sizeof e) : 0;
        if (rc && !first) {
            first = rc;
            if (err && errlen)
                snprintf(err, errlen, "%s", e);
        }
    }
    return first;
}

int tls_set_metrics(tls_set_t *s, metrics_t *reg, const char *listen_name)
{
    int rc = 0;
    if (s->listen)
        rc = tls_ctx_metrics(s->listen, reg, listen_name);
    if (!rc && s->rpc_server)
        rc = tls_ctx_metrics(s->rpc_server, reg, "rpc_server");
    if (!rc && s->rpc_client)
        rc = tls_ctx_metrics(s->rpc_client, reg, "rpc_client");
    return rc;
}

void tls_set_destroy(tls_set_t *s)
{
    tls_ctx_destroy(s->listen);
    tls_ctx_destroy(s->rpc_server);
    tls_ctx_destroy(s->rpc_client);
    memset(s, 0, sizeof *s);
}
