/*
 * fuzz_tls — the server side of tls.c (what a TLS listener runs on every
 * byte a client sends before and after the handshake) on arbitrary input,
 * from memory: no sockets.
 *
 * Byte 0 picks the chunk pattern, whether the server asks for a client
 * certificate and whether a TLS record header comes first; the rest is fed in uneven chunks, every
 * reply taken as the glue would. Invariants: no crash or leak, a failure is sticky (every later
 * feed says ST_EPROTO), no plaintext comes out of a session whose handshake never completed, and
 * the session never takes more than the handshake byte limit before it is established.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/net/tls_test_certs.h"
#include "st_err.h"
#include "tls.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static tls_ctx_t *ctxs[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mtls = data[0] & 1;
    if (!ctxs[mtls]) {
        tls_config_t cfg = {.server = 1,
                            .cert_pem = TT_SRV_CRT,
                            .key_pem = TT_SRV_KEY,
                            .ca_pem = mtls ? TT_CA_CRT : NULL,
                            .handshake_max_bytes = 4096};
        char err[256];
        check(tls_ctx_create(&cfg, &ctxs[mtls], err, sizeof err) == 0);
    }
    tls_conn_t *t;
    check(tls_conn_create(ctxs[mtls], NULL, &t) == 0);
    st_buf_t plain, out;
    st_buf_init(&plain);
    st_buf_init(&out);
    size_t chunk = 1 + (data[0] >> 2), off = 1;
    int failed = 0;
    if (data[0] & 2) { /* random input rarely opens like TLS: help it past byte 0 */
        static const uint8_t rec[3] = {22, 3, 1};
        check(tls_conn_feed(t, rec, sizeof rec, &plain) == 0);
    }
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        int rc = tls_conn_feed(t, data + off, n, &plain);
        if (failed)
            check(rc == ST_EPROTO);
        if (rc == ST_EPROTO) {
            failed = 1;
            check(tls_conn_failure(t) != TLS_FAIL_NONE);
        }
        if (!tls_conn_established(t))
            check(plain.len == 0);
        check(tls_conn_take(t, &out) == 0);
        out.len = 0;
        off += n;
        chunk = chunk * 3 % 97 + 1;
        if (rc == ST_ECLOSED)
            break;
    }
    tls_conn_destroy(t);
    st_buf_deinit(&plain);
    st_buf_deinit(&out);
    return 0;
}
