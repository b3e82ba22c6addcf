/*
 * rpc_uv — the node RPC transport on libuv: a server and a client.
 *
 * Frames are rpc_frame.h's; payloads are opaque bytes to this module except
 * for HELLO / HELLO_ACK / ERROR (proto/strata.proto Hello and Error). The
 * protocol (handshake, pipelining, timeouts, backoff, backpressure, limits)
 * is specified in docs/protocol.md.
 *
 * Threads: everything here runs on the thread of the uv_loop_t it was
 * created on, including every callback. A handler that moves work to
 * uv_queue_work answers from the after-work callback (on the loop thread).
 *
 * Errors: functions return 0 or a negative ST_E* code. The module never
 * prints; what an operator must see (a refused handshake, a peer going down,
 * a bad frame) goes to the optional log callback as a level (ST_LOG_*), a
 * message and logfmt key/values, for the caller to write with st_log.
 */
#ifndef RPC_UV_H
#define RPC_UV_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"
#include "rpc_frame.h"
#include "tls.h"

typedef struct rpc_server rpc_server_t;
typedef struct rpc_conn rpc_conn_t;
typedef struct rpc_client rpc_client_t;

/* Who we are: sent in HELLO / HELLO_ACK and compared with the peer's. The
 * strings are copied by the _create functions. */
typedef struct rpc_identity {
    const char *cluster_name;
    uint64_t topology_fingerprint;
    const char *node_id; /* a node id, or "router:<host:port>" for a router */
} rpc_identity_t;

/* level: ST_LOG_*; kv: logfmt "key=value ..." (values quoted when needed). */
typedef void (*rpc_log_fn)(void *arg, int level, const char *msg, const char *kv);

/*
 * A budget of receive-buffer bytes (partial frames, frames waiting to be
 * handled, decompressed payloads) shared by every server connection and
 * client given it, normally one per process. A connection whose buffer
 * would take the total over max_bytes is closed (server: ERROR EBUSY, then
 * close; client: the attempt fails and reconnects), logged and counted:
 * memory stays bounded however many peers send partial frames. Thread-safe
 * (atomic), so servers and clients on different loops may share it.
 */
typedef struct rpc_budget rpc_budget_t;
int rpc_budget_create(uint64_t max_bytes, rpc_budget_t **out);
/* Destroy after every server and client using it is closed. */
void rpc_budget_destroy(rpc_budget_t *b);
uint64_t rpc_budget_used(const rpc_budget_t *b);
uint64_t rpc_budget_max(const rpc_budget_t *b);

/* ---- server ----------------------------------------------------------- */

/* Zero fields take the defaults in brackets. */
typedef struct rpc_server_opts {
    size_t max_frame;              /* [64 MiB] largest frame / decompressed payload accepted */
    size_t compress_min;           /* [64 KiB] LZ4 replies from this size; SIZE_MAX = never */
    int raw_loopback;              /* [0] 1: never LZ4 replies to a loopback peer (127/8, ::1):
                                      compressing costs more CPU than it saves in copies */
    size_t max_conn_out_bytes;     /* [16 MiB] unwritten reply bytes before reading pauses */
    unsigned max_conn_inflight;    /* [1024] unanswered requests before reading pauses */
    unsigned max_conns;            /* [4096] further connections are closed at accept */
    unsigned handshake_timeout_ms; /* [5000] a connection must send HELLO within this */
    unsigned frame_timeout_ms;     /* [30000] after the handshake, a frame whose first byte has
                                      arrived must complete within this (while we read), and
                                      queued replies must make progress within this */
    rpc_budget_t *budget;          /* [NULL: none] receive buffers, shared per process */
    rpc_log_fn log;
    void *log_arg;
    tls_ctx_t *tls; /* [NULL: plaintext] server-side TLS context (with a CA: mutual TLS);
                       not owned, must outlive the server */
} rpc_server_opts_t;

/*
 * A request after the handshake. payload is valid during the call only.
 * Every request must get exactly one reply (rpc_conn_reply or
 * rpc_conn_reply_error), now or later; to answer later, rpc_conn_acquire
 * the connection and release it after replying. PING is answered by the
 * transport and never reaches the handler.
 */
typedef void (*rpc_handler_fn)(void *arg, rpc_conn_t *conn, uint8_t type, uint64_t reqid,
                               const uint8_t *payload, size_t len);

/*
 * Listen on host:port (port 0 = an ephemeral port, see rpc_server_port;
 * host is an IP literal or a name resolved once, synchronously). opts may
 * be NULL. Returns 0, ST_EINVAL, ST_ENOMEM, ST_EIO (bind/listen failed:
 * address in use, ...).
 */
int rpc_server_create(uv_loop_t *loop, const char *host, int port, const rpc_identity_t *me,
                      const rpc_server_opts_t *opts, rpc_handler_fn handler, void *arg,
                      rpc_server_t **out);
/* The port actually bound. */
int rpc_server_port(const rpc_server_t *srv);
/* Close the listener and every connection (unsent replies are dropped);
 * cb(arg) runs once all handles are closed, then srv is freed. */
void rpc_server_close(rpc_server_t *srv, void (*cb)(void *arg), void *arg);

/* Why the server closed a connection by itself. */
typedef enum rpc_close_reason {
    RPC_CLOSE_HANDSHAKE_TIMEOUT = 0, /* no valid HELLO in handshake_timeout */
    RPC_CLOSE_FRAME_TIMEOUT,         /* a started frame did not complete in frame_timeout */
    RPC_CLOSE_WRITE_TIMEOUT,         /* queued replies made no progress in frame_timeout */
    RPC_CLOSE_INFLIGHT,              /* the receive budget (rpc_budget_t) was spent */
    RPC_CLOSE_BAD_FRAME,             /* malformed, oversized or unexpected frame */
    RPC_CLOSE_NREASONS
} rpc_close_reason_t;
/* The metric label value of r ("frame_timeout", ...). */
const char *rpc_close_reason_name(rpc_close_reason_t r);

typedef struct rpc_server_stats {
    uint64_t conns_accepted;
    uint64_t conns_open;
    uint64_t handshakes_refused;
    uint64_t closed[RPC_CLOSE_NREASONS]; /* connections cut by the server, by reason */
    uint64_t bad_frames;                 /* frames that made the server close a connection */
    uint64_t requests;
    uint64_t bytes_in; /* on the wire, headers included */
    uint64_t bytes_out;
    uint64_t read_pauses; /* times backpressure stopped reading a connection */
} rpc_server_stats_t;
void rpc_server_stats(const rpc_server_t *srv, rpc_server_stats_t *out);
/*
 * Register the server's metrics in reg with the label server="<name>":
 * strata_rpc_connections_closed_total{reason=handshake_timeout|
 * frame_timeout|write_timeout|inflight|bad_frame} and, when the server has a budget,
 * strata_rpc_inflight_bytes (the budget's bytes in use) and
 * strata_rpc_inflight_max_bytes. reg must outlive the server. Returns 0,
 * ST_ENOMEM or ST_EINVAL.
 */
int rpc_server_metrics(rpc_server_t *srv, metrics_t *reg, const char *name);

/*
 * Reply to request reqid with a frame of `type`. Returns 0; ST_ECLOSED when
 * the connection is gone (the reply is dropped, nothing else to do);
 * ST_ELIMIT when the payload is over max_frame (the client gets an ERROR
 * ELIMIT instead); ST_ENOMEM.
 */
int rpc_conn_reply(rpc_conn_t *conn, uint64_t reqid, uint8_t type, const void *payload, size_t len);
/*
 * From inside the handler, for the request it was given: take the memory
 * that holds payload instead of copying it, when the transport can give it
 * up (the frame arrived alone in the connection's receive buffer, not
 * compressed, and fills most of it). Returns the block to free() once done
 * with payload (which stays valid and where it is), or NULL: then payload
 * is valid during the call only, as always.
 */
void *rpc_conn_take_payload(rpc_conn_t *conn, const uint8_t *payload, size_t len);
/* Reply with an ERROR frame {code (negative ST_E*), message}. */
int rpc_conn_reply_error(rpc_conn_t *conn, uint64_t reqid, int code, const char *message);
void rpc_conn_acquire(rpc_conn_t *conn);
void rpc_conn_release(rpc_conn_t *conn);
/* 1 while replies can still be delivered. */
int rpc_conn_is_open(const rpc_conn_t *conn);
/* The peer's node_id from its HELLO ("n2", "router:10.0.0.5:8086"). */
const char *rpc_conn_peer_id(const rpc_conn_t *conn);
/* The peer's address "ip:port". */
const char *rpc_conn_peer_addr(const rpc_conn_t *conn);

/* ---- client ----------------------------------------------------------- */

typedef enum rpc_client_state {
    RPC_CLIENT_CONNECTING = 0, /* not connected yet, first attempt under way */
    RPC_CLIENT_UP = 1,         /* handshake done, requests flow */
    RPC_CLIENT_DOWN = 2,       /* an attempt failed or the connection was lost; retrying */
} rpc_client_state_t;

const char *rpc_client_state_name(rpc_client_state_t s);

/* A transition of rpc_client_state(); err: why it went DOWN (ST_EUNAVAIL
 * cannot connect or refused, ST_ECLOSED connection lost, ST_ETIMEDOUT
 * heartbeat or handshake timeout), 0 for UP. Never called after close. */
typedef void (*rpc_state_fn)(void *arg, rpc_client_t *cli, rpc_client_state_t state, int err);

typedef struct rpc_client_opts {
    size_t max_frame;            /* [64 MiB] */
    size_t compress_min;         /* [64 KiB] SIZE_MAX = never compress */
    int raw_loopback;            /* [0] 1: never compress when host is a loopback literal
                                    (127.x.y.z, ::1, localhost) */
    size_t max_queue_bytes;      /* [128 MiB] encoded request bytes not yet written */
    unsigned max_pending;        /* [16384] calls waiting for a reply (queued or sent) */
    unsigned connect_timeout_ms; /* [5000] TCP connect + handshake */
    unsigned backoff_min_ms;     /* [50] first reconnect delay, doubled per failure */
    unsigned backoff_max_ms;     /* [2000] */
    unsigned ping_interval_ms;   /* [0 = off] PING after this much silence; 2x = dead */
    unsigned default_timeout_ms; /* [30000] for calls with timeout_ms 0 */
    rpc_budget_t *budget;        /* [NULL: none] receive buffers, shared per process */
    rpc_state_fn on_state;
    void *state_arg;
    rpc_log_fn log;
    void *log_arg;
    tls_ctx_t *tls;           /* [NULL: plaintext] client-side TLS context; the server's certificate
                                 must name host. Not owned, must outlive the client */
    const char *peer_node_id; /* [NULL: any] with tls: the node id the server must claim in
                                 HELLO_ACK (and so name in its certificate); copied */
} rpc_client_opts_t;

/*
 * The result of a call. status: 0 (type/payload/len are the reply),
 * ST_ETIMEDOUT (no reply by the deadline; a late reply is dropped),
 * ST_EUNAVAIL (the deadline passed while the peer could not be reached, or
 * the peer refused the handshake), ST_ECLOSED (the connection was lost after
 * the request was sent, or the client was closed), or the negative code of
 * the peer's ERROR reply (then type is RPC_ERROR and payload/len hold the
 * error message text, not NUL-terminated). payload is valid during the call.
 */
typedef void (*rpc_call_cb)(void *arg, int status, uint8_t type, const uint8_t *payload,
                            size_t len);

/*
 * A client for host:port (host may be a DNS name: it is resolved with
 * uv_getaddrinfo on every connection attempt). Starts connecting at once
 * and reconnects with exponential backoff and jitter for as long as it
 * lives. opts may be NULL.
 */
int rpc_client_create(uv_loop_t *loop, const char *host, int port, const rpc_identity_t *me,
                      const rpc_client_opts_t *opts, rpc_client_t **out);
/*
 * Send a request (the payload is copied). timeout_ms 0 = default. Returns 0
 * and cb will be called exactly once, later (never from inside this call);
 * or returns an error and cb is never called: ST_EBUSY (max_pending or
 * max_queue_bytes reached: backpressure), ST_EUNAVAIL (the peer refused our
 * handshake: incompatible configuration), ST_ELIMIT (payload over
 * max_frame), ST_ECLOSED (closing), ST_EINVAL, ST_ENOMEM. Calls made while
 * not connected wait in the queue until the handshake or their deadline.
 */
int rpc_client_call(rpc_client_t *cli, uint8_t type, const void *payload, size_t len,
                    unsigned timeout_ms, rpc_call_cb cb, void *arg);
/*
 * rpc_client_call without the copy: payload[0..len) is sent from the
 * caller's memory (the frame header goes in its own small buffer, one
 * write of two buffers), so one payload can be shared by calls to several
 * peers. The transport holds it until release(rel_arg), called exactly
 * once, on the loop thread, when the bytes are no longer needed: after the
 * write completed or failed, or when the call ends before it was written
 * (deadline, lost connection, close). That is not tied to cb: a write may
 * still be queued to a stalled peer after the call timed out, so the
 * payload must stay valid and unchanged until release. With TLS, or when
 * the payload would be compressed (compress_min), the payload is copied as
 * by rpc_client_call and release runs before this returns. On an error
 * return (the codes of rpc_client_call) release is not called: the caller
 * still owns its reference.
 */
int rpc_client_call_shared(rpc_client_t *cli, uint8_t type, const void *payload, size_t len,
                           void (*release)(void *rel_arg), void *rel_arg, unsigned timeout_ms,
                           rpc_call_cb cb, void *arg);
/* One run of bytes of a payload sent in pieces (rpc_client_call_pieces). */
typedef struct rpc_piece {
    const void *p;
    size_t len;
} rpc_piece_t;
/*
 * rpc_client_call_shared for a payload made of several runs of the
 * caller's memory: one frame whose payload is head[0..head_len) (copied
 * with the frame header; may be empty) followed by pieces[0..npieces) in
 * order, sent from where they lie (one write of 1 + npieces buffers). The
 * pieces array itself is copied. release(rel_arg) covers every piece, with
 * the contract of rpc_client_call_shared (with TLS or compression the
 * pieces are copied into one payload and release runs before this
 * returns). ST_EINVAL without release or pieces.
 */
int rpc_client_call_pieces(rpc_client_t *cli, uint8_t type, const void *head, size_t head_len,
                           const rpc_piece_t *pieces, size_t npieces,
                           void (*release)(void *rel_arg), void *rel_arg, unsigned timeout_ms,
                           rpc_call_cb cb, void *arg);
rpc_client_state_t rpc_client_state(const rpc_client_t *cli);
/* The server's node id from HELLO_ACK ("" before the first handshake). */
const char *rpc_client_peer_id(const rpc_client_t *cli);
/* Calls waiting for their callback. */
size_t rpc_client_pending(const rpc_client_t *cli);
/* Fail every pending call with ST_ECLOSED (synchronously, inside this
 * call), close the connection; cb(arg) runs when all handles are closed,
 * then cli is freed. */
void rpc_client_close(rpc_client_t *cli, void (*cb)(void *arg), void *arg);

#endif
