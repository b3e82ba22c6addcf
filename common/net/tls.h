/*
 * tls — TLS 1.2+ sessions over memory BIOs (OpenSSL), independent of any
 * socket: the libuv glue (http.c, rpc_uv.c, later the RESP and PostgreSQL
 * listeners) reads ciphertext from its stream and feeds it in, writes
 * whatever tls_conn_take() hands back, and sees only plaintext otherwise.
 * Nothing here blocks and nothing here touches a file descriptor, so the
 * handshake runs on the event loop and the whole server side can be fuzzed
 * from memory.
 *
 * Two objects:
 *   tls_ctx_t   certificate, key, trust anchors and policy (server or
 *               client side). tls_ctx_reload() re-reads the files and swaps
 *               them in atomically for new sessions; sessions already
 *               running keep the old ones (OpenSSL reference counts them).
 *               Handshake failures are counted per reason here.
 *   tls_conn_t  one session. Plaintext written before the handshake is
 *               done is held and sent once it is.
 *
 * Starting TLS on an already-accepted stream after N plaintext bytes (the
 * PostgreSQL SSLRequest answered with 'S', STARTTLS-like doors): create the
 * tls_conn_t when the plaintext part is over and feed it the bytes that
 * came after it; there is no other state to hand over.
 *
 * Limits: a handshake may take at most handshake_max_bytes of ciphertext
 * from the peer (TLS_FAIL_LIMIT); the time limit belongs to the glue (it
 * owns the timers) and is counted with tls_ctx_count_failure(TLS_FAIL_TIMEOUT).
 */
#ifndef STRATA_TLS_H
#define STRATA_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "st_buf.h"

/* Why a handshake (or a session) failed: the reason label of
 * strata_tls_handshake_failures_total. */
typedef enum tls_fail {
    TLS_FAIL_NONE = 0,
    TLS_FAIL_NOT_TLS,  /* the peer does not speak TLS (plain HTTP or RPC on a TLS port) */
    TLS_FAIL_VERSION,  /* protocol version or cipher not acceptable (below TLS 1.2, ...) */
    TLS_FAIL_CERT,     /* peer certificate missing, expired, wrong name or untrusted CA */
    TLS_FAIL_LIMIT,    /* handshake larger than handshake_max_bytes */
    TLS_FAIL_TIMEOUT,  /* handshake not done in time (counted by the glue) */
    TLS_FAIL_PROTOCOL, /* any other TLS error, including the peer's alert */
    TLS_FAIL_IDENTITY, /* RPC: the certificate does not name the node id the peer claims
                        * (counted by rpc_uv after the handshake, not by tls_conn_feed) */
    TLS_FAIL__COUNT
} tls_fail_t;

const char *tls_fail_name(tls_fail_t r);

#define TLS_HANDSHAKE_MAX_DEFAULT (64u * 1024u)

typedef struct tls_config {
    int server; /* 1: accept side; 0: connect side */
    /* PEM files (read at create and at every reload) ... */
    const char *cert_file; /* server: required; client: the certificate it presents (mTLS) */
    const char *key_file;
    const char *ca_file; /* server: clients must present a certificate signed by it;
                          * client: the server's certificate must chain to it (NULL:
                          * the system's default trust store) */
    /* ... or PEM text in memory (tests, fuzzing); a file wins when both are set */
    const char *cert_pem, *key_pem, *ca_pem;
    size_t handshake_max_bytes; /* 0: TLS_HANDSHAKE_MAX_DEFAULT */
} tls_config_t;

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* Build a context: TLS 1.2 minimum, forward-secret AEAD ciphers only, no
 * renegotiation, no compression, no session tickets. On failure err holds
 * one line naming the file and OpenSSL's reason; returns ST_ECONFIG,
 * ST_EINVAL or ST_ENOMEM. */
int tls_ctx_create(const tls_config_t *cfg, tls_ctx_t **out, char *err, size_t errlen);
/* Re-read the files; on success new sessions use them. On failure the old
 * ones stay in force and err says why. */
int tls_ctx_reload(tls_ctx_t *ctx, char *err, size_t errlen);
void tls_ctx_destroy(tls_ctx_t *ctx);
/* Register strata_tls_handshake_failures_total{listener=name,reason} and
 * strata_tls_handshakes_total{listener=name}; counts so far are carried over. */
int tls_ctx_metrics(tls_ctx_t *ctx, metrics_t *reg, const char *name);
void tls_ctx_count_failure(tls_ctx_t *ctx, tls_fail_t r);
uint64_t tls_ctx_failures(const tls_ctx_t *ctx, tls_fail_t r);
uint64_t tls_ctx_handshakes(const tls_ctx_t *ctx);
uint64_t tls_ctx_reloads(const tls_ctx_t *ctx);
/* 1 for a server context with a CA: every client must present a certificate
 * it signed (doors that also speak plaintext must refuse it then). */
int tls_ctx_wants_peer_cert(const tls_ctx_t *ctx);

/* A session. peer_host (client side, may be NULL): the server certificate
 * must name it (DNS name or IP address in its subjectAltName). */
int tls_conn_create(tls_ctx_t *ctx, const char *peer_host, tls_conn_t **out);
void tls_conn_destroy(tls_conn_t *c);

/* Ciphertext from the peer. Decrypted bytes are appended to plain. Returns
 * 0, or ST_EPROTO once the session failed (tls_conn_failure/_error say
 * why; the failure is counted once on the context). Either way
 * tls_conn_take() may hold bytes to send (a handshake message or an alert). */
int tls_conn_feed(tls_conn_t *c, const void *data, size_t len, st_buf_t *plain);
/* Plaintext to send: encrypted at once, or held until the handshake is done. */
int tls_conn_write(tls_conn_t *c, const void *data, size_t len);
/* Append the ciphertext waiting to be sent to out (0 or ST_ENOMEM). */
int tls_conn_take(tls_conn_t *c, st_buf_t *out);
size_t tls_conn_out_pending(const tls_conn_t *c);
/* Queue a close_notify alert (then take() and send it). */
void tls_conn_close_notify(tls_conn_t *c);

int tls_conn_established(const tls_conn_t *c);
tls_fail_t tls_conn_failure(const tls_conn_t *c);
const char *tls_conn_error(const tls_conn_t *c); /* "" while fine */
const char *tls_conn_version(const tls_conn_t *c);
/* The peer certificate's subject CN (or "" without one), for logs. */
const char *tls_conn_peer_name(const tls_conn_t *c);
/* 1 if the peer's (verified) certificate names `name`: a subject CN or a
 * DNS subjectAltName equal to it, byte for byte (no wildcards, no case
 * folding); 0 otherwise or without a certificate. */
int tls_conn_peer_named(const tls_conn_t *c, const char *name);

/* ---- a process's contexts ------------------------------------------------
 * What a daemon holds: the client-facing listener's context (HTTP and, later,
 * RESP and PostgreSQL), and for mutual TLS on RPC a server and a client
 * context with the same certificate and CA. Any of them may be NULL (off). */
typedef struct tls_files {
    const char *cert, *key; /* listeners: NULL = plaintext */
    const char *client_ca;  /* listeners: clients must present a certificate it signed */
    const char *rpc_ca;     /* NULL = plaintext RPC */
    const char *rpc_cert, *rpc_key;
} tls_files_t;

typedef struct tls_set {
    tls_ctx_t *listen;     /* server side of client-facing listeners */
    tls_ctx_t *rpc_server; /* NULL in the router (it only connects) */
    tls_ctx_t *rpc_client;
} tls_set_t;

/* Build the contexts f asks for (rpc_server only if want_rpc_server).
 * On failure err names the file and the reason and *out holds nothing. */
int tls_set_create(const tls_files_t *f, int want_rpc_server, tls_set_t *out, char *err,
                   size_t errlen);
/* SIGHUP: re-read every file; all or nothing per context (a context whose
 * files fail to load keeps its old certificates; err says which). */
int tls_set_reload(tls_set_t *s, char *err, size_t errlen);
/* Metrics with listener="<listen_name>", "rpc_server", "rpc_client". */
int tls_set_metrics(tls_set_t *s, metrics_t *reg, const char *listen_name);
void tls_set_destroy(tls_set_t *s);

#endif
