/*
 * rpc_uv — node RPC transport on libuv; see rpc_uv.h and docs/protocol.md.
 *
 * Server connection states (conn->state):
 *
 *   accept --> HANDSHAKE --HELLO ok (conn_handshake)--> READY
 *                 |  bad HELLO / timeout                 |  bad frame, EOF, error,
 *                 v  (conn_refuse, conn_fail)            v  rpc_server_close
 *              CLOSING --last write done / 1 s (conn_close)--> CLOSED --> freed when
 *                                                  the handles are closed and refs == 0
 *
 * In READY, conn_process() hands frames to the handler while the connection
 * is under its limits (unanswered requests, unwritten reply bytes); over
 * them it stops reading (uv_read_stop) and leaves the rest in the rx buffer.
 * A reply or a finished write that brings it back under restarts processing
 * from a 0 ms timer (never from inside rpc_conn_reply: no re-entry into the
 * handler).
 *
 * Client phases (cli->phase), with the public state in brackets:
 *
 *   BACKOFF --timer (client_connect)--> RESOLVING --uv_getaddrinfo cb--> CONNECTING
 *      ^                        [CONNECTING before the first success, else DOWN]  |
 *      |                                                      connected: send HELLO |
 *      +---- attempt_failed() <-- error / timeout / refused ---- HANDSHAKE <--------+
 *      |                                                            | HELLO_ACK ok
 *      +---- attempt_failed() <-- EOF / error / heartbeat --------- UP [UP]
 *
 * attempt_failed() closes the connection, fails the calls already written
 * (ST_ECLOSED: they may or may not have run), keeps the unwritten ones queued
 * and arms the backoff timer. Every pending call sits on a deadline-sorted
 * list served by one timer; a call that reaches its deadline fails with
 * ST_ETIMEDOUT (ST_EUNAVAIL if it was never sent because the peer was down).
 *
 * The server's listening socket (resolve, bind, listen) comes from
 * net_listen.c, shared with the HTTP server.
 *
 * Mutual TLS (opts.tls, a tls.h context on each side): the TLS session sits
 * under the frames. Reads go into a per-process ciphertext buffer, are
 * decrypted and pushed into the rx state machine (rpc_rx_push); each frame
 * is sealed (encrypted in place) before uv_write; handshake records go out
 * on their own. The client's HELLO waits inside the session until the TLS
 * handshake is done, so the existing handshake timeouts cover both. Byte
 * accounting (queued/out bytes, budgets) counts frame bytes, not
 * ciphertext. A TLS failure is logged on both sides ("rpc tls refused")
 * with the reason, and counted in strata_tls_handshake_failures_total.
 *
 * Under mutual TLS a certificate is tied to an identity (check_cert_id):
 * the id a peer claims in its HELLO / HELLO_ACK must be named by its
 * certificate (CN or DNS subjectAltName): a node's id, or "router" for a
 * router (whose HELLO says "router:<addr>"). A client given peer_node_id
 * also checks that the server is that node. A mismatch is refused like a
 * fingerprint mismatch (both sides log "rpc handshake refused") and counted
 * as strata_tls_handshake_failures_total{reason="identity"}.
 */
#include "rpc_uv.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_listen.h"
#include "st_err.h"
#include "st_list.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "tls.h"

#define ID_MAX 320          /* a node id, or "router:" + host:port */
#define HELLO_MAX 4096      /* a HELLO larger than this is a protocol error */
#define CLOSE_FLUSH_MS 1000 /* how long a refused peer gets to read our ERROR */
#define HT_BUCKETS 4096     /* client reqid -> call table (power of two) */
#define TLS_RBUF 65536      /* ciphertext read buffer (one per server / client connection) */
#define CC_WRITE_BUFS 16    /* buffers of one client write described on the stack */

/* One frame on its way out: freed in the write callback. A shared frame
 * (rpc_client_call_shared, _pieces) has only its header (and a small head)
 * in buf and the rest of its payload in the caller's memory (ext: one
 * piece in ext1, several in an array of their own), released through rel
 * once written or dropped. */
typedef struct wreq {
    uv_write_t req;
    st_buf_t buf;
    void *owner;
    size_t plain; /* frame bytes (buf holds ciphertext once sealed) */
    int counted;  /* client: counts towards queued_bytes */
    rpc_piece_t *ext;
    size_t next; /* pieces in ext */
    rpc_piece_t ext1;
    void (*rel)(void *arg);
    void *rel_arg;
} wreq_t;

/* ---- logging helpers --------------------------------------------------- */

typedef struct kvb {
    char s[1024];
    size_t n;
} kvb_t;

static void kvb_raw(kvb_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kvb_raw(kvb_t *k, const char *fmt, ...)
{
    if (k->n >= sizeof k->s - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(k->s + k->n, sizeof k->s - k->n, fmt, ap);
    va_end(ap);
    if (w > 0)
        k->n += (size_t)w < sizeof k->s - k->n ? (size_t)w : sizeof k->s - 1 - k->n;
}

/* key=value, quoting and escaping the value when it is not a bare word;
 * peer-supplied text is never trusted to be printable. */
static void kvb_str(kvb_t *k, const char *key, const char *val)
{
    int bare = val[0] != '\0';
    for (const char *p = val; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
            bare = 0;
    kvb_raw(k, "%s%s=", k->n ? " " : "", key);
    if (bare) {
        kvb_raw(k, "%.300s", val);
        return;
    }
    kvb_raw(k, "\"");
    size_t i = 0;
    for (const unsigned char *p = (const unsigned char *)val; *p && i < 300; p++, i++) {
        if (*p == '"' || *p == '\\')
            kvb_raw(k, "\\%c", *p);
        else if (*p < ' ' || *p >= 0x7f)
            kvb_raw(k, "\\x%02x", *p);
        else
            kvb_raw(k, "%c", *p);
    }
    kvb_raw(k, "\"");
}

static void emit(rpc_log_fn fn, void *arg, int level, const char *msg, const kvb_t *k)
{
    if (fn)
        fn(arg, level, msg, k->s);
}

static void copy_id(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Is host (a literal, "ip:port" or "[ip6]:port" as net_addr_name writes
 * it, or a name) this machine's loopback? Only what is loopback by its
 * spelling: 127.0.0.0/8, ::1, localhost. */
static int addr_is_loopback(const char *host)
{
    if (strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0)
        return 1;
    if (host[0] == '[')
        host++;
    return strncmp(host, "::1", 3) == 0 && (host[3] == 0 || host[3] == ']');
}

/* Encode a frame into a fresh write request. */
static int wreq_new(uint8_t type, uint64_t reqid, const void *p, size_t len, size_t compress_min,
                    wreq_t **out)
{
    wreq_t *w = malloc(sizeof *w);
    if (!w)
        return ST_ENOMEM;
    st_buf_init(&w->buf);
    w->counted = 0;
    w->owner = NULL;
    w->ext = NULL;
    w->next = 0;
    w->rel = NULL;
    w->rel_arg = NULL;
    int rc = rpc_frame_encode(&w->buf, type, reqid, p, len, compress_min);
    if (rc) {
        free(w);
        return rc;
    }
    w->plain = w->buf.len;
    *out = w;
    return 0;
}

static void wreq_release(wreq_t *w);

/* Encrypt the frame in w (and take any handshake bytes the session has
 * waiting): buf then holds what goes on the wire, and a shared payload is
 * given back at once. No-op without TLS. */
static int wreq_seal(tls_conn_t *t, wreq_t *w)
{
    if (!t)
        return 0;
    int rc = tls_conn_write(t, w->buf.data, w->buf.len);
    for (size_t i = 0; !rc && i < w->next; i++)
        rc = tls_conn_write(t, w->ext[i].p, w->ext[i].len);
    wreq_release(w); /* sealed: the ciphertext in buf is all that is sent */
    w->buf.len = 0;
    return rc ? rc : tls_conn_take(t, &w->buf);
}

/* A write request carrying only what the TLS session has to send (NULL: nothing). */
static wreq_t *wreq_tls_out(tls_conn_t *t)
{
    if (!t || tls_conn_out_pending(t) == 0)
        return NULL;
    wreq_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    st_buf_init(&w->buf);
    if (tls_conn_take(t, &w->buf) != 0) {
        st_buf_deinit(&w->buf);
        free(w);
        return NULL;
    }
    return w;
}

#define TLS_LOG_EVERY_MS 10000 /* a server logs refused TLS peers at ERROR this often */

/* Give a shared payload back to its owner (once). */
static void wreq_release(wreq_t *w)
{
    void (*rel)(void *) = w->rel;
    w->rel = NULL;
    if (w->ext != &w->ext1)
        free(w->ext);
    w->ext = NULL;
    w->next = 0;
    if (rel)
        rel(w->rel_arg);
}

static void wreq_free(wreq_t *w)
{
    wreq_release(w);
    st_buf_deinit(&w->buf);
    free(w);
}

static int pack_hello(const char *cluster, uint64_t fp, const char *node_id, st_buf_t *b)
{
    Strata__Hello h = STRATA__HELLO__INIT;
    h.protocol_version = RPC_PROTOCOL_VERSION;
    h.cluster_name = (char *)cluster;
    h.topology_fingerprint = fp;
    h.node_id = (char *)node_id;
    size_t n = strata__hello__get_packed_size(&h);
    int rc = st_buf_reserve(b, n);
    if (rc)
        return rc;
    b->len = strata__hello__pack(&h, b->data);
    return 0;
}

/* Compare a peer's HELLO / HELLO_ACK with our identity. 0 or an ST_E* code
 * with the reason in msg. */
static int check_hello(const Strata__Hello *h, const char *cluster, uint64_t fp, char *msg,
                       size_t cap)
{
    if (h->protocol_version != RPC_PROTOCOL_VERSION) {
        snprintf(msg, cap, "protocol version mismatch: mine %u, yours %u", RPC_PROTOCOL_VERSION,
                 h->protocol_version);
        return ST_EVERSION;
    }
    if (strcmp(h->cluster_name ? h->cluster_name : "", cluster) != 0) {
        snprintf(msg, cap,
                 "cluster name mismatch: mine \"%s\", yours \"%.64s\"; check cluster.ini on both "
                 "hosts",
                 cluster, h->cluster_name ? h->cluster_name : "");
        return ST_ECONFIG;
    }
    if (h->topology_fingerprint != fp) {
        snprintf(msg, cap,
                 "topology fingerprint mismatch: mine %016" PRIx64 ", yours %016" PRIx64
                 "; check cluster.ini on both hosts",
                 fp, (uint64_t)h->topology_fingerprint);
        return ST_ECONFIG;
    }
    return 0;
}

/* Mutual TLS: does the peer's certificate name the id it claims? 0, or
 * ST_ECONFIG with the reason in msg. No session (plaintext RPC): 0. */
static int check_cert_id(const tls_conn_t *t, const char *claimed, char *msg, size_t cap)
{
    if (!t)
        return 0;
    claimed = claimed ? claimed : "";
    const char *want = strncmp(claimed, "router:", 7) == 0 ? "router" : claimed;
    if (tls_conn_peer_named(t, want))
        return 0;
    snprintf(msg, cap,
             "certificate does not match the node id: the peer claims \"%.64s\", its RPC "
             "certificate (CN \"%.64s\") does not name \"%.64s\"; a node's rpc_cert must carry "
             "its node id as CN or DNS subjectAltName, a router's the name \"router\"",
             claimed, tls_conn_peer_name(t), want);
    return ST_ECONFIG;
}

/* Decode an ERROR payload: code (negative ST_E*; anything else -> EPROTO)
 * and message into msg. */
static int decode_error(const uint8_t *p, size_t len, char *msg, size_t cap)
{
    int code = ST_EPROTO;
    snprintf(msg, cap, "malformed ERROR message");
    Strata__Error *e = strata__error__unpack(NULL, len, p);
    if (e) {
        if (e->code < 0)
            code = e->code;
        snprintf(msg, cap, "%s", e->message ? e->message : "");
        strata__error__free_unpacked(e, NULL);
    }
    return code;
}

static int pack_error(int code, const char *message, st_buf_t *b)
{
    Strata__Error e = STRATA__ERROR__INIT;
    e.code = code;
    e.message = (char *)message;
    int rc = st_buf_reserve(b, strata__error__get_packed_size(&e));
    if (rc)
        return rc;
    b->len = strata__error__pack(&e, b->data);
    return 0;
}

/* ======================================================================= */
/* receive budget                                                           */
/* ======================================================================= */

struct rpc_budget {
    uint64_t max;
    _Atomic uint64_t used;
    metric_gauge_t *gauge; /* strata_rpc_inflight_bytes, once registered */
};

int rpc_budget_create(uint64_t max_bytes, rpc_budget_t **out)
{
    if (!out || max_bytes == 0)
        return ST_EINVAL;
    rpc_budget_t *b = calloc(1, sizeof *b);
    if (!b)
        return ST_ENOMEM;
    b->max = max_bytes;
    atomic_init(&b->used, 0);
    *out = b;
    return 0;
}

void rpc_budget_destroy(rpc_budget_t *b)
{
    free(b);
}

uint64_t rpc_budget_used(const rpc_budget_t *b)
{
    return atomic_load(&((rpc_budget_t *)b)->used);
}

uint64_t rpc_budget_max(const rpc_budget_t *b)
{
    return b->max;
}

/* Move what one receiver holds in b from *held to want. Growing past the
 * budget fails (returns -1, nothing changes); shrinking always works. */
static int budget_move(rpc_budget_t *b, size_t *held, size_t want)
{
    if (!b) {
        *held = want;
        return 0;
    }
    if (want > *held) {
        uint64_t add = want - *held;
        uint64_t cur = atomic_load(&b->used);
        do {
            if (cur + add > b->max)
                return -1;
        } while (!atomic_compare_exchange_weak(&b->used, &cur, cur + add));
    } else {
        atomic_fetch_sub(&b->used, (uint64_t)(*held - want));
    }
    *held = want;
    metric_gauge_set(b->gauge, (double)atomic_load(&b->used));
    return 0;
}

/* ======================================================================= */
/* server                                                                   */
/* ======================================================================= */

enum { CONN_HANDSHAKE, CONN_READY, CONN_CLOSING, CONN_CLOSED };

struct rpc_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* handshake timeout, close-flush timeout, or the 0 ms resume kick */
    rpc_server_t *srv;
    rpc_conn_t *prev, *next;
    int state;
    int refs;
    int handles; /* open uv handles (tcp + timer) */
    int reading;
    int kick_pending;        /* the timer runs conn_process on the next loop turn */
    int over_budget;         /* the alloc callback refused a buffer: cut in read_cb */
    uint64_t frame_start;    /* loop ms when the pending partial frame started, 0 = none */
    uint64_t write_progress; /* loop ms of the last completed write (or the first queued) */
    rpc_rx_t rx;
    size_t held;      /* bytes of rx charged to srv->o.budget */
    size_t out_bytes; /* encoded reply bytes not yet written */
    unsigned nwrites;
    unsigned inflight; /* requests handed to the handler and not answered */
    tls_conn_t *tls;   /* mutual TLS (srv->o.tls) */
    char peer_addr[80];
    char peer_id[ID_MAX];
    size_t compress_min; /* srv->o.compress_min, or SIZE_MAX (raw_loopback, loopback peer) */
};

struct rpc_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    char cluster[ID_MAX];
    char node_id[ID_MAX];
    uint64_t fp;
    rpc_server_opts_t o;
    rpc_handler_fn handler;
    void *arg;
    rpc_conn_t *conns;
    size_t nconns; /* connections whose handles are not closed yet */
    int port;
    int closing;
    int listener_open;
    void (*close_cb)(void *arg);
    void *close_arg;
    rpc_server_stats_t st;
    metric_counter_t *m_closed[RPC_CLOSE_NREASONS];
    uint8_t *tbuf;          /* TLS_RBUF bytes of ciphertext being read (TLS only) */
    uint64_t tls_log_next;  /* loop ms from which the next refusal is logged at ERROR */
    unsigned tls_log_quiet; /* refusals logged at DEBUG since the last ERROR line */
    st_buf_t tplain;        /* their plaintext, until pushed into the connection's rx */
};

static void conn_process(rpc_conn_t *conn);
static void conn_arm_frame(rpc_conn_t *conn);

static const char *const close_reason_names[RPC_CLOSE_NREASONS] = {
    "handshake_timeout", "frame_timeout", "write_timeout", "inflight", "bad_frame"};

const char *rpc_close_reason_name(rpc_close_reason_t r)
{
    return r < RPC_CLOSE_NREASONS ? close_reason_names[r] : "unknown";
}

static void count_close(rpc_server_t *srv, rpc_close_reason_t r)
{
    srv->st.closed[r]++;
    metric_counter_inc(srv->m_closed[r]);
}

/* Charge the receiver's memory now to the budget (shrinking never fails). */
static void conn_mem_sync(rpc_conn_t *conn)
{
    size_t now = rpc_rx_mem(&conn->rx);
    if (budget_move(conn->srv->o.budget, &conn->held, now) != 0) {
        /* grown by a decompressed payload: charge it anyway, the next
         * reserve sees the budget spent */
        rpc_budget_t *b = conn->srv->o.budget;
        atomic_fetch_add(&b->used, (uint64_t)(now - conn->held));
        conn->held = now;
    }
}

static void srv_log(rpc_server_t *srv, int level, const char *msg, const kvb_t *k)
{
    emit(srv->o.log, srv->o.log_arg, level, msg, k);
}

static void srv_maybe_finish(rpc_server_t *srv)
{
    if (!srv->closing || srv->listener_open || srv->nconns > 0)
        return;
    void (*cb)(void *) = srv->close_cb;
    void *arg = srv->close_arg;
    free(srv->tbuf);
    st_buf_deinit(&srv->tplain);
    free(srv);
    if (cb)
        cb(arg);
}

void rpc_conn_acquire(rpc_conn_t *conn)
{
    conn->refs++;
}

void rpc_conn_release(rpc_conn_t *conn)
{
    if (--conn->refs == 0)
        free(conn);
}

int rpc_conn_is_open(const rpc_conn_t *conn)
{
    return conn->state == CONN_READY;
}

const char *rpc_conn_peer_id(const rpc_conn_t *conn)
{
    return conn->peer_id;
}

const char *rpc_conn_peer_addr(const rpc_conn_t *conn)
{
    return conn->peer_addr;
}

static void conn_handle_closed(uv_handle_t *h)
{
    rpc_conn_t *conn = h->data;
    if (--conn->handles > 0)
        return;
    rpc_rx_deinit(&conn->rx);
    tls_conn_destroy(conn->tls);
    conn->tls = NULL;
    budget_move(conn->srv->o.budget, &conn->held, 0);
    rpc_server_t *srv = conn->srv;
    conn->srv = NULL;
    ST_LIST_REMOVE(srv->conns, conn);
    srv->nconns--;
    srv->st.conns_open = srv->nconns;
    rpc_conn_release(conn); /* the reference the open handles held */
    srv_maybe_finish(srv);
}

/* Close now: unwritten replies are dropped (their callbacks see ECANCELED). */
static void conn_close(rpc_conn_t *conn)
{
    if (conn->state == CONN_CLOSED)
        return;
    conn->state = CONN_CLOSED;
    conn->reading = 0;
    uv_timer_stop(&conn->timer);
    uv_close((uv_handle_t *)&conn->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&conn->timer, conn_handle_closed);
}

static void conn_close_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

/* Stop reading, let queued writes (an ERROR) go out, then close. */
static void conn_close_after_flush(rpc_conn_t *conn)
{
    if (conn->state >= CONN_CLOSING)
        return;
    conn->state = CONN_CLOSING;
    if (conn->reading) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->reading = 0;
    }
    if (conn->nwrites == 0) {
        conn_close(conn);
        return;
    }
    uv_timer_start(&conn->timer, conn_close_timeout, CLOSE_FLUSH_MS, 0);
}

static void conn_ready_timer_cb(uv_timer_t *t);

/* Resume processing buffered frames / reading from a fresh loop turn. */
static void conn_kick(rpc_conn_t *conn)
{
    if (conn->state == CONN_READY && !conn->reading && !conn->kick_pending) {
        conn->kick_pending = 1;
        uv_timer_start(&conn->timer, conn_ready_timer_cb, 0, 0);
    }
}

static void conn_write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    rpc_conn_t *conn = w->owner;
    conn->out_bytes -= w->plain;
    conn->nwrites--;
    wreq_free(w);
    if (conn->state == CONN_CLOSED)
        return;
    if (status < 0) {
        conn_close(conn);
        return;
    }
    conn->write_progress = uv_now(conn->srv->loop);
    if (conn->state == CONN_CLOSING && conn->nwrites == 0)
        conn_close(conn);
    else
        conn_kick(conn);
}

static int conn_write(rpc_conn_t *conn, wreq_t *w);

static int conn_send(rpc_conn_t *conn, uint8_t type, uint64_t reqid, const void *p, size_t len)
{
    rpc_server_t *srv = conn->srv;
    if (len > srv->o.max_frame - RPC_FRAME_HDR)
        return ST_ELIMIT;
    wreq_t *w;
    int rc = wreq_new(type, reqid, p, len, conn->compress_min, &w);
    if (rc)
        return rc;
    if ((rc = wreq_seal(conn->tls, w)) != 0) {
        wreq_free(w);
        conn_close(conn);
        return ST_ECLOSED;
    }
    return conn_write(conn, w);
}

/* Queue w (sealed already) on the connection. */
static int conn_write(rpc_conn_t *conn, wreq_t *w)
{
    rpc_server_t *srv = conn->srv;
    w->owner = conn;
    uv_buf_t b = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
    int rc = uv_write(&w->req, (uv_stream_t *)&conn->tcp, &b, 1, conn_write_cb);
    if (rc) {
        wreq_free(w);
        conn_close(conn);
        return ST_ECLOSED;
    }
    if (conn->nwrites == 0)
        conn->write_progress = uv_now(srv->loop);
    conn->out_bytes += w->plain;
    conn->nwrites++;
    srv->st.bytes_out += w->plain;
    if (conn->nwrites == 1 && !uv_is_active((uv_handle_t *)&conn->timer))
        conn_arm_frame(conn);
    return 0;
}

static int conn_send_error(rpc_conn_t *conn, uint64_t reqid, int code, const char *msg)
{
    st_buf_t b;
    st_buf_init(&b);
    int rc = pack_error(code, msg, &b);
    if (rc == 0)
        rc = conn_send(conn, RPC_ERROR, reqid, b.data, b.len);
    st_buf_deinit(&b);
    return rc;
}

/* A connection-level failure: tell the peer why, log it, close. */
static void conn_fail(rpc_conn_t *conn, int code, const char *reason)
{
    rpc_server_t *srv = conn->srv;
    kvb_t k = {.n = 0};
    kvb_str(&k, "peer_addr", conn->peer_addr);
    if (conn->peer_id[0])
        kvb_str(&k, "peer_node", conn->peer_id);
    kvb_str(&k, "err", st_errname(code));
    kvb_str(&k, "reason", reason);
    srv_log(srv, ST_LOG_WARN, "rpc connection closed: bad input", &k);
    srv->st.bad_frames++;
    count_close(srv, RPC_CLOSE_BAD_FRAME);
    conn_send_error(conn, 0, code, reason);
    conn_close_after_flush(conn);
}

/* A connection over a bound (frame timeout, receive budget): log, count,
 * tell the peer, close. */
static void conn_cut(rpc_conn_t *conn, rpc_close_reason_t why, int code, const char *reason)
{
    rpc_server_t *srv = conn->srv;
    kvb_t k = {.n = 0};
    kvb_str(&k, "peer_addr", conn->peer_addr);
    if (conn->peer_id[0])
        kvb_str(&k, "peer_node", conn->peer_id);
    kvb_str(&k, "reason", rpc_close_reason_name(why));
    kvb_raw(&k, " buffered=%zu", rpc_rx_buffered(&conn->rx));
    if (srv->o.budget)
        kvb_raw(&k, " inflight=%" PRIu64 " inflight_max=%" PRIu64, rpc_budget_used(srv->o.budget),
                rpc_budget_max(srv->o.budget));
    srv_log(srv, ST_LOG_WARN, "rpc connection closed: over a limit", &k);
    count_close(srv, why);
    conn_send_error(conn, 0, code, reason);
    conn_close_after_flush(conn);
}

static void conn_refuse(rpc_conn_t *conn, int code, const char *reason)
{
    rpc_server_t *srv = conn->srv;
    kvb_t k = {.n = 0};
    kvb_str(&k, "peer_addr", conn->peer_addr);
    kvb_str(&k, "peer_node", conn->peer_id);
    kvb_str(&k, "err", st_errname(code));
    kvb_str(&k, "reason", reason);
    srv_log(srv, ST_LOG_ERROR, "rpc handshake refused", &k);
    srv->st.handshakes_refused++;
    conn_send_error(conn, 0, code, reason);
    conn_close_after_flush(conn);
}

static void conn_handshake(rpc_conn_t *conn, const rpc_frame_t *f)
{
    rpc_server_t *srv = conn->srv;
    char msg[320];
    if (f->type != RPC_HELLO) {
        snprintf(msg, sizeof msg, "expected HELLO as the first message, got type %u (%s)", f->type,
                 rpc_type_name(f->type));
        conn_refuse(conn, ST_EPROTO, msg);
        return;
    }
    Strata__Hello *h = f->len <= HELLO_MAX ? strata__hello__unpack(NULL, f->len, f->payload) : NULL;
    if (!h) {
        conn_refuse(conn, ST_EPROTO, "malformed HELLO message");
        return;
    }
    copy_id(conn->peer_id, sizeof conn->peer_id, h->node_id);
    int rc = check_hello(h, srv->cluster, srv->fp, msg, sizeof msg);
    if (rc == 0 && (rc = check_cert_id(conn->tls, h->node_id, msg, sizeof msg)) != 0)
        tls_ctx_count_failure(srv->o.tls, TLS_FAIL_IDENTITY);
    strata__hello__free_unpacked(h, NULL);
    if (rc) {
        conn_refuse(conn, rc, msg);
        return;
    }
    st_buf_t b;
    st_buf_init(&b);
    rc = pack_hello(srv->cluster, srv->fp, srv->node_id, &b);
    if (rc == 0)
        rc = conn_send(conn, RPC_HELLO_ACK, 0, b.data, b.len);
    st_buf_deinit(&b);
    if (rc) {
        conn_close(conn);
        return;
    }
    uv_timer_stop(&conn->timer);
    conn->state = CONN_READY;
    conn->rx.max_frame = srv->o.max_frame; /* HELLO_MAX until now */
    kvb_t k = {.n = 0};
    kvb_str(&k, "peer_addr", conn->peer_addr);
    kvb_str(&k, "peer_node", conn->peer_id);
    srv_log(srv, ST_LOG_DEBUG, "rpc peer connected", &k);
}

static void conn_dispatch(rpc_conn_t *conn, const rpc_frame_t *f)
{
    rpc_server_t *srv = conn->srv;
    char msg[128];
    switch (f->type) {
    case RPC_PING:
        conn_send(conn, RPC_PONG, f->reqid, NULL, 0);
        return;
    case RPC_HELLO:
    case RPC_HELLO_ACK:
    case RPC_ERROR:
    case RPC_PONG:
        snprintf(msg, sizeof msg, "unexpected %s after the handshake", rpc_type_name(f->type));
        conn_fail(conn, ST_EPROTO, msg);
        return;
    default:
        conn->inflight++;
        srv->st.requests++;
        srv->handler(srv->arg, conn, f->type, f->reqid, f->payload, f->len);
    }
}

static int conn_under_limits(const rpc_conn_t *conn)
{
    const rpc_server_opts_t *o = &conn->srv->o;
    return conn->inflight < o->max_conn_inflight && conn->out_bytes <= o->max_conn_out_bytes;
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    rpc_conn_t *conn = h->data;
    uint8_t *p;
    size_t n;
    (void)suggested; /* sized by the pending frame instead */
    if (conn->tls) { /* ciphertext: decrypted into rx in conn_tls_read */
        *buf = uv_buf_init((char *)conn->srv->tbuf, TLS_RBUF);
        return;
    }
    size_t need = rpc_rx_reserve_cap(&conn->rx) + conn->rx.scratch.cap;
    if (need > conn->held && budget_move(conn->srv->o.budget, &conn->held, need) != 0) {
        conn->over_budget = 1;
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS and cuts */
        return;
    }
    int rc = rpc_rx_reserve(&conn->rx, &p, &n);
    conn_mem_sync(conn);
    if (rc != 0) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    if (n > UINT32_MAX)
        n = UINT32_MAX;
    *buf = uv_buf_init((char *)p, (unsigned)n);
}

static void conn_cut_budget(rpc_conn_t *conn)
{
    char msg[160];
    snprintf(msg, sizeof msg,
             "server busy: RPC receive buffers are over the limit of %" PRIu64 " MiB; retry later",
             rpc_budget_max(conn->srv->o.budget) >> 20);
    conn_cut(conn, RPC_CLOSE_INFLIGHT, ST_EBUSY, msg);
}

/* A peer's TLS session failed: at ERROR once per TLS_LOG_EVERY_MS (with the
 * number logged at DEBUG since), else at DEBUG, so a peer retrying every
 * backoff does not flood the log. */
static void log_tls_failure(rpc_conn_t *conn)
{
    rpc_server_t *srv = conn->srv;
    uint64_t now = uv_now(srv->loop);
    int loud = now >= srv->tls_log_next;
    kvb_t k = {.n = 0};
    kvb_str(&k, "peer_addr", conn->peer_addr);
    kvb_str(&k, "reason", tls_fail_name(tls_conn_failure(conn->tls)));
    kvb_str(&k, "detail", tls_conn_error(conn->tls));
    if (loud) {
        if (srv->tls_log_quiet)
            kvb_raw(&k, " more_at_debug=%u", srv->tls_log_quiet);
        srv->tls_log_quiet = 0;
        srv->tls_log_next = now + TLS_LOG_EVERY_MS;
    } else {
        srv->tls_log_quiet++;
    }
    srv_log(srv, loud ? ST_LOG_ERROR : ST_LOG_DEBUG, "rpc tls refused", &k);
}

/* Ciphertext from the peer: answer the handshake, push the plaintext into rx. */
static void conn_tls_read(rpc_conn_t *conn, const uint8_t *data, size_t n)
{
    rpc_server_t *srv = conn->srv;
    st_buf_t *plain = &srv->tplain;
    plain->len = 0;
    int rc = tls_conn_feed(conn->tls, data, n, plain);
    srv->st.bytes_in += n;
    wreq_t *w = wreq_tls_out(conn->tls);
    if (w && conn_write(conn, w) != 0)
        return;
    if (rc == ST_EPROTO && tls_conn_failure(conn->tls) == TLS_FAIL_NOT_TLS &&
        conn->state == CONN_HANDSHAKE) {
        /* a process with rpc_tls off: tell it why, in the plaintext it speaks */
        log_tls_failure(conn);
        tls_conn_destroy(conn->tls);
        conn->tls = NULL;
        conn_refuse(conn, ST_EPROTO,
                    "this node requires mutual TLS on RPC ([security] rpc_tls = on) and the "
                    "peer connected without TLS; rpc_tls must be the same on every process");
        return;
    }
    if (rc == ST_EPROTO) {
        log_tls_failure(conn);
        srv->st.handshakes_refused++;
        conn_close_after_flush(conn); /* the alert goes out first */
        return;
    }
    size_t len = plain->len;
    if (len > 0) {
        size_t need = rpc_rx_mem(&conn->rx) + len;
        if (need > conn->held && budget_move(srv->o.budget, &conn->held, need) != 0) {
            conn_cut_budget(conn);
            return;
        }
        if (rpc_rx_push(&conn->rx, plain->data, len) != 0) {
            conn_close(conn);
            return;
        }
        conn_mem_sync(conn);
        conn_process(conn);
    }
    if (rc == ST_ECLOSED && conn->state != CONN_CLOSED)
        conn_close(conn);
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    rpc_conn_t *conn = s->data;
    (void)buf; /* the buffer belongs to conn->rx (or is srv->tbuf with TLS) */
    if (nread > 0 && conn->tls) {
        conn_tls_read(conn, (const uint8_t *)buf->base, (size_t)nread);
    } else if (nread > 0) {
        rpc_rx_commit(&conn->rx, (size_t)nread);
        conn->srv->st.bytes_in += (uint64_t)nread;
        conn_process(conn);
    } else if (nread == UV_ENOBUFS && conn->over_budget) {
        conn_cut_budget(conn);
    } else if (nread < 0) {
        if (nread != UV_EOF) {
            kvb_t k = {.n = 0};
            kvb_str(&k, "peer_addr", conn->peer_addr);
            kvb_str(&k, "err", uv_strerror((int)nread));
            srv_log(conn->srv, ST_LOG_DEBUG, "rpc connection read error", &k);
        }
        conn_close(conn);
    }
}

/* Hand complete frames out while under the limits; then start or stop reading. */
static void conn_process(rpc_conn_t *conn)
{
    rpc_conn_acquire(conn);
    while (conn->state == CONN_HANDSHAKE || conn->state == CONN_READY) {
        if (conn->state == CONN_READY && !conn_under_limits(conn))
            break;
        rpc_frame_t f;
        int rc = rpc_rx_next(&conn->rx, &f);
        if (rc == ST_EAGAIN)
            break;
        if (rc < 0) {
            char msg[160];
            if (conn->state == CONN_HANDSHAKE && conn->rx.end > conn->rx.start &&
                conn->rx.buf[conn->rx.start] == 22 && !conn->tls)
                snprintf(msg, sizeof msg,
                         "the peer speaks TLS and this node has rpc_tls off: [security] rpc_tls "
                         "must be the same on every process");
            else if (rc == ST_ELIMIT && conn->state == CONN_HANDSHAKE)
                snprintf(msg, sizeof msg,
                         "frame larger than the limit of %zu bytes before the handshake (HELLO)",
                         conn->rx.max_frame);
            else if (rc == ST_ELIMIT)
                snprintf(msg, sizeof msg, "frame larger than the limit of %zu bytes",
                         conn->srv->o.max_frame);
            else
                snprintf(msg, sizeof msg, "bad frame: %s", st_strerror(rc));
            conn_fail(conn, rc, msg);
            break;
        }
        conn->frame_start = 0; /* a frame completed; the next one starts now */
        if (conn->state == CONN_HANDSHAKE)
            conn_handshake(conn, &f);
        else
            conn_dispatch(conn, &f);
    }
    int want =
        conn->state == CONN_HANDSHAKE || (conn->state == CONN_READY && conn_under_limits(conn));
    if (want && !conn->reading) {
        if (uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc_cb, conn_read_cb) == 0)
            conn->reading = 1;
        else
            conn_close(conn);
    } else if (!want && conn->reading && conn->state == CONN_READY) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->reading = 0;
        conn->srv->st.read_pauses++;
    }
    if (conn->state != CONN_CLOSED)
        conn_mem_sync(conn); /* rx_next may have dropped a large scratch */
    conn_arm_frame(conn);
    rpc_conn_release(conn);
}

/* After the handshake, while we read, a frame whose first bytes are here
 * must complete within frame_timeout (a paused connection is not the
 * peer's fault: its clock restarts when reading does); and replies queued
 * for the peer must make progress within the same time (a peer that never
 * reads would otherwise hold them for good). One timer, the earlier of the
 * two deadlines. */
static void conn_arm_frame(rpc_conn_t *conn)
{
    if (conn->state != CONN_READY || conn->kick_pending)
        return;
    uint64_t now = uv_now(conn->srv->loop), tmo = conn->srv->o.frame_timeout_ms;
    uint64_t deadline = UINT64_MAX;
    if (!conn->reading || rpc_rx_buffered(&conn->rx) == 0) {
        conn->frame_start = 0;
    } else {
        if (conn->frame_start == 0)
            conn->frame_start = now;
        deadline = conn->frame_start + tmo;
    }
    if (conn->nwrites > 0 && conn->write_progress + tmo < deadline)
        deadline = conn->write_progress + tmo;
    if (deadline == UINT64_MAX) {
        uv_timer_stop(&conn->timer);
        return;
    }
    uv_timer_start(&conn->timer, conn_ready_timer_cb, deadline > now ? deadline - now : 0, 0);
}

static void conn_ready_timer_cb(uv_timer_t *t)
{
    rpc_conn_t *conn = t->data;
    if (conn->state != CONN_READY)
        return;
    if (conn->kick_pending) {
        conn->kick_pending = 0;
        conn_process(conn);
        return;
    }
    uint64_t now = uv_now(conn->srv->loop);
    if (conn->frame_start && conn->reading && rpc_rx_buffered(&conn->rx) > 0 &&
        now >= conn->frame_start + conn->srv->o.frame_timeout_ms) {
        char msg[160];
        snprintf(msg, sizeof msg, "frame not completed within %u ms (%zu bytes received)",
                 conn->srv->o.frame_timeout_ms, rpc_rx_buffered(&conn->rx));
        conn_cut(conn, RPC_CLOSE_FRAME_TIMEOUT, ST_ETIMEDOUT, msg);
        return;
    }
    if (conn->nwrites > 0 && now >= conn->write_progress + conn->srv->o.frame_timeout_ms) {
        char msg[160];
        snprintf(msg, sizeof msg, "replies not read for %u ms (%zu bytes queued)",
                 conn->srv->o.frame_timeout_ms, conn->out_bytes);
        conn_cut(conn, RPC_CLOSE_WRITE_TIMEOUT, ST_ETIMEDOUT, msg);
        return;
    }
    conn_arm_frame(conn);
}

static void conn_handshake_timeout(uv_timer_t *t)
{
    rpc_conn_t *conn = t->data;
    if (conn->state != CONN_HANDSHAKE)
        return;
    kvb_t k = {.n = 0};
    kvb_str(&k, "peer_addr", conn->peer_addr);
    if (conn->tls && !tls_conn_established(conn->tls)) {
        tls_ctx_count_failure(conn->srv->o.tls, TLS_FAIL_TIMEOUT);
        kvb_str(&k, "tls", "handshake not completed");
    }
    srv_log(conn->srv, ST_LOG_WARN, "rpc handshake timeout", &k);
    count_close(conn->srv, RPC_CLOSE_HANDSHAKE_TIMEOUT);
    conn_close(conn);
}

static void srv_on_connection(uv_stream_t *ls, int status)
{
    rpc_server_t *srv = ls->data;
    if (status < 0) {
        kvb_t k = {.n = 0};
        kvb_str(&k, "err", uv_strerror(status));
        srv_log(srv, ST_LOG_WARN, "rpc accept failed", &k);
        return;
    }
    rpc_conn_t *conn = calloc(1, sizeof *conn);
    if (!conn)
        return; /* the connection stays in the backlog; retried on the next event */
    conn->srv = srv;
    conn->refs = 1;
    conn->state = CONN_HANDSHAKE;
    /* until the handshake only a HELLO may come: a frame announced larger
     * is refused at its first 4 bytes */
    rpc_rx_init(&conn->rx, HELLO_MAX + RPC_FRAME_HDR);
    conn->handles = net_conn_handles_init(srv->loop, &conn->tcp, &conn->timer, conn);
    ST_LIST_PUSH(srv->conns, conn);
    srv->nconns++;
    srv->st.conns_open = srv->nconns;
    if (net_accept(ls, &conn->tcp, conn->peer_addr, sizeof conn->peer_addr) != 0) {
        conn_close(conn);
        return;
    }
    srv->st.conns_accepted++;
    if (!conn->peer_addr[0])
        copy_id(conn->peer_addr, sizeof conn->peer_addr, "?");
    conn->compress_min =
        srv->o.raw_loopback && addr_is_loopback(conn->peer_addr) ? SIZE_MAX : srv->o.compress_min;
    if (srv->closing || srv->nconns > srv->o.max_conns) {
        kvb_t k = {.n = 0};
        kvb_str(&k, "peer_addr", conn->peer_addr);
        kvb_raw(&k, " max_conns=%u", srv->o.max_conns);
        srv_log(srv, ST_LOG_WARN, "rpc connection refused: too many connections", &k);
        conn_close(conn);
        return;
    }
    if (srv->o.tls && tls_conn_create(srv->o.tls, NULL, &conn->tls) != 0) {
        conn_close(conn);
        return;
    }
    uv_timer_start(&conn->timer, conn_handshake_timeout, srv->o.handshake_timeout_ms, 0);
    conn_process(conn); /* starts reading */
}

int rpc_conn_reply(rpc_conn_t *conn, uint64_t reqid, uint8_t type, const void *payload, size_t len)
{
    if (conn->state != CONN_READY)
        return ST_ECLOSED;
    if (conn->inflight > 0)
        conn->inflight--;
    int rc = conn_send(conn, type, reqid, payload, len);
    if (rc == ST_ELIMIT) {
        char msg[128];
        snprintf(msg, sizeof msg, "reply of %zu bytes is over the frame limit", len);
        conn_send_error(conn, reqid, ST_ELIMIT, msg);
    }
    conn_kick(conn);
    return rc;
}

void *rpc_conn_take_payload(rpc_conn_t *conn, const uint8_t *payload, size_t len)
{
    /* the budget follows: conn_process syncs held with the smaller rx */
    return conn->state == CONN_READY ? rpc_rx_detach(&conn->rx, payload, len) : NULL;
}

int rpc_conn_reply_error(rpc_conn_t *conn, uint64_t reqid, int code, const char *message)
{
    if (conn->state != CONN_READY)
        return ST_ECLOSED;
    if (conn->inflight > 0)
        conn->inflight--;
    int rc = conn_send_error(conn, reqid, code, message ? message : "");
    conn_kick(conn);
    return rc;
}

static void srv_listener_closed(uv_handle_t *h)
{
    rpc_server_t *srv = h->data;
    srv->listener_open = 0;
    srv_maybe_finish(srv);
}

static void opts_default_size(size_t *v, size_t def)
{
    if (*v == 0)
        *v = def;
}

static void opts_default_u(unsigned *v, unsigned def)
{
    if (*v == 0)
        *v = def;
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

int rpc_server_create(uv_loop_t *loop, const char *host, int port, const rpc_identity_t *me,
                      const rpc_server_opts_t *opts, rpc_handler_fn handler, void *arg,
                      rpc_server_t **out)
{
    if (!loop || !host || port < 0 || port > 65535 || !me || !me->cluster_name || !me->node_id ||
        !handler || !out)
        return ST_EINVAL;
    struct sockaddr_storage ss;
    int rc = net_resolve(host, port, &ss);
    if (rc)
        return rc;
    rpc_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return ST_ENOMEM;
    srv->loop = loop;
    copy_id(srv->cluster, sizeof srv->cluster, me->cluster_name);
    copy_id(srv->node_id, sizeof srv->node_id, me->node_id);
    srv->fp = me->topology_fingerprint;
    if (opts)
        srv->o = *opts;
    opts_default_size(&srv->o.max_frame, RPC_FRAME_MAX_DEFAULT);
    if (srv->o.max_frame < 64)
        srv->o.max_frame = 64;
    opts_default_size(&srv->o.compress_min, RPC_COMPRESS_MIN_DEFAULT);
    opts_default_size(&srv->o.max_conn_out_bytes, 16u << 20);
    opts_default_u(&srv->o.max_conn_inflight, 1024);
    opts_default_u(&srv->o.max_conns, 4096);
    opts_default_u(&srv->o.handshake_timeout_ms, 5000);
    opts_default_u(&srv->o.frame_timeout_ms, 30000);
    srv->handler = handler;
    srv->arg = arg;
    if (srv->o.tls && !(srv->tbuf = malloc(TLS_RBUF))) {
        free(srv);
        return ST_ENOMEM;
    }
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_open = 1;
    rc = net_listen_tcp(&srv->listener, &ss, srv_on_connection, &srv->port);
    if (rc) {
        /* freed on the next loop run, once the handle is closed */
        free(srv->tbuf);
        uv_close((uv_handle_t *)&srv->listener, free_on_close);
        return ST_EIO;
    }
    *out = srv;
    return 0;
}

int rpc_server_port(const rpc_server_t *srv)
{
    return srv->port;
}

void rpc_server_stats(const rpc_server_t *srv, rpc_server_stats_t *out)
{
    *out = srv->st;
}

int rpc_server_metrics(rpc_server_t *srv, metrics_t *reg, const char *name)
{
    if (!srv || !reg || !name)
        return ST_EINVAL;
    for (int i = 0; i < RPC_CLOSE_NREASONS; i++) {
        srv->m_closed[i] = metrics_counter(
            reg, "strata_rpc_connections_closed_total",
            "RPC connections the server cut, by reason: handshake_timeout, frame_timeout (a "
            "started frame not completed in rpc_frame_timeout), write_timeout (replies not read "
            "for rpc_frame_timeout), inflight (receive buffers over rpc_inflight_max_mb), "
            "bad_frame.",
            "server", name, "reason", close_reason_names[i], NULL);
        if (!srv->m_closed[i])
            return ST_ENOMEM;
        metric_counter_add(srv->m_closed[i], srv->st.closed[i]);
    }
    rpc_budget_t *b = srv->o.budget;
    if (!b)
        return 0;
    b->gauge = metrics_gauge(reg, "strata_rpc_inflight_bytes",
                             "RPC receive-buffer bytes held now (partial and waiting frames).",
                             "server", name, NULL);
    metric_gauge_t *mx = metrics_gauge(
        reg, "strata_rpc_inflight_max_bytes",
        "The limit on RPC receive-buffer bytes (rpc_inflight_max_mb).", "server", name, NULL);
    if (!b->gauge || !mx)
        return ST_ENOMEM;
    metric_gauge_set(b->gauge, (double)rpc_budget_used(b));
    metric_gauge_set(mx, (double)b->max);
    return 0;
}

void rpc_server_close(rpc_server_t *srv, void (*cb)(void *arg), void *arg)
{
    if (srv->closing)
        return;
    srv->closing = 1;
    srv->close_cb = cb;
    srv->close_arg = arg;
    uv_close((uv_handle_t *)&srv->listener, srv_listener_closed);
    for (rpc_conn_t *c = srv->conns; c; c = c->next)
        conn_close(c);
}

/* ======================================================================= */
/* client                                                                   */
/* ======================================================================= */

enum { PH_BACKOFF, PH_RESOLVING, PH_CONNECTING, PH_HANDSHAKE, PH_UP, PH_DEAD /* write failed */ };

typedef struct call {
    struct call *hnext;         /* reqid hash chain */
    struct call *dprev, *dnext; /* deadline-sorted list of every pending call */
    struct call *qprev, *qnext; /* FIFO of calls not written yet */
    struct call *fnext;         /* batch being failed */
    uint64_t reqid;
    uint64_t deadline;
    rpc_call_cb cb;
    void *arg;
    wreq_t *w; /* the encoded frame until it is handed to uv_write */
    int sent;
} call_t;

typedef struct cconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    rpc_client_t *cli;
    rpc_rx_t rx;
    size_t held;     /* bytes of rx charged to cli->o.budget */
    int over_budget; /* the alloc callback refused a buffer */
    int closed;
    tls_conn_t *tls; /* mutual TLS (cli->o.tls) */
    st_buf_t tplain; /* plaintext of the last read */
    uint8_t *tbuf;   /* TLS_RBUF bytes of ciphertext being read */
} cconn_t;

struct rpc_client {
    uv_loop_t *loop;
    char host[256];
    char port_str[8];
    char cluster[ID_MAX];
    char node_id[ID_MAX];
    char peer_id[ID_MAX];
    char expect_id[ID_MAX]; /* o.peer_node_id ("" none) */
    uint64_t fp;
    rpc_client_opts_t o;
    uv_timer_t conn_timer; /* backoff, connect/handshake timeout, heartbeat */
    uv_timer_t dl_timer;   /* earliest call deadline */
    uv_getaddrinfo_t gai;
    int resolving;
    cconn_t *cc; /* current connection, NULL in BACKOFF / RESOLVING */
    unsigned live_cconns;
    int phase;
    rpc_client_state_t state;
    int refused;    /* the last handshake was refused: calls fail fast */
    int tls_failed; /* the last TLS session failed (logged loudly once) */
    unsigned attempts;
    uint64_t rng;
    uint64_t next_reqid;
    uint64_t last_rx;
    uint64_t last_hb_tick; /* when the heartbeat timer last ran */
    uint64_t tx_done;      /* request bytes the kernel took (write callbacks) */
    uint64_t tx_done_tick; /* tx_done at the last heartbeat tick */
    int ping_outstanding;
    call_t *dl_head, *dl_tail;
    call_t *q_head, *q_tail;
    call_t **ht;
    size_t npending;
    size_t queued_bytes;
    int closing;
    int handles;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void client_connect(rpc_client_t *cli);
static void client_maybe_finish(rpc_client_t *cli);
static void cc_process(cconn_t *cc);

const char *rpc_client_state_name(rpc_client_state_t s)
{
    switch (s) {
    case RPC_CLIENT_CONNECTING:
        return "connecting";
    case RPC_CLIENT_UP:
        return "up";
    case RPC_CLIENT_DOWN:
        return "down";
    }
    return "unknown";
}

static void cli_log(rpc_client_t *cli, int level, const char *msg, kvb_t *k)
{
    kvb_t full = {.n = 0};
    kvb_raw(&full, "peer=%s:%s", cli->host, cli->port_str);
    if (cli->peer_id[0])
        kvb_str(&full, "peer_node", cli->peer_id);
    if (k && k->n)
        kvb_raw(&full, " %s", k->s);
    emit(cli->o.log, cli->o.log_arg, level, msg, &full);
}

static void set_state(rpc_client_t *cli, rpc_client_state_t s, int err)
{
    if (cli->state == s)
        return;
    cli->state = s;
    if (cli->o.on_state && !cli->closing)
        cli->o.on_state(cli->o.state_arg, cli, s, err);
}

/* ---- pending calls ---- */

static call_t **ht_slot(rpc_client_t *cli, uint64_t reqid)
{
    return &cli->ht[reqid & (HT_BUCKETS - 1)];
}

static call_t *ht_find(rpc_client_t *cli, uint64_t reqid)
{
    for (call_t *c = *ht_slot(cli, reqid); c; c = c->hnext)
        if (c->reqid == reqid)
            return c;
    return NULL;
}

static void q_unlink(rpc_client_t *cli, call_t *c)
{
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        cli->q_head = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        cli->q_tail = c->qprev;
    c->qprev = c->qnext = NULL;
}

/* Take a call off every list; frees its unsent frame. */
static void call_remove(rpc_client_t *cli, call_t *c)
{
    for (call_t **pp = ht_slot(cli, c->reqid); *pp; pp = &(*pp)->hnext)
        if (*pp == c) {
            *pp = c->hnext;
            break;
        }
    if (c->dprev)
        c->dprev->dnext = c->dnext;
    else
        cli->dl_head = c->dnext;
    if (c->dnext)
        c->dnext->dprev = c->dprev;
    else
        cli->dl_tail = c->dprev;
    if (!c->sent)
        q_unlink(cli, c);
    if (c->w) {
        cli->queued_bytes -= c->w->plain;
        wreq_free(c->w);
        c->w = NULL;
    }
    cli->npending--;
}

static void dl_cb(uv_timer_t *t);

static void dl_rearm(rpc_client_t *cli)
{
    if (cli->closing)
        return;
    if (!cli->dl_head) {
        uv_timer_stop(&cli->dl_timer);
        return;
    }
    uint64_t now = uv_now(cli->loop);
    uint64_t d = cli->dl_head->deadline;
    uv_timer_start(&cli->dl_timer, dl_cb, d > now ? d - now : 0, 0);
}

/* Fail a batch: callbacks run after every list is consistent. */
static void run_failed(call_t *batch, int status_sent, int status_unsent)
{
    while (batch) {
        call_t *c = batch;
        batch = c->fnext;
        c->cb(c->arg, c->sent ? status_sent : status_unsent, 0, NULL, 0);
        free(c);
    }
}

/* Fail every pending call (all) or the ones already written (!all). */
static void fail_calls(rpc_client_t *cli, int all, int status)
{
    call_t *head = NULL, **tail = &head;
    for (call_t *c = cli->dl_head, *n; c; c = n) {
        n = c->dnext;
        if (!all && !c->sent)
            continue;
        call_remove(cli, c);
        c->fnext = NULL;
        *tail = c;
        tail = &c->fnext;
    }
    run_failed(head, status, status);
}

static void dl_cb(uv_timer_t *t)
{
    rpc_client_t *cli = t->data;
    uint64_t now = uv_now(cli->loop);
    call_t *head = NULL, **tail = &head;
    while (cli->dl_head && cli->dl_head->deadline <= now) {
        call_t *c = cli->dl_head;
        call_remove(cli, c);
        c->fnext = NULL;
        *tail = c;
        tail = &c->fnext;
    }
    run_failed(head, ST_ETIMEDOUT, cli->state == RPC_CLIENT_UP ? ST_ETIMEDOUT : ST_EUNAVAIL);
    dl_rearm(cli);
}

/* ---- connection ---- */

static void cc_closed_cb(uv_handle_t *h)
{
    cconn_t *cc = h->data;
    rpc_client_t *cli = cc->cli;
    rpc_rx_deinit(&cc->rx);
    budget_move(cli->o.budget, &cc->held, 0);
    tls_conn_destroy(cc->tls);
    st_buf_deinit(&cc->tplain);
    free(cc->tbuf);
    free(cc);
    cli->live_cconns--;
    client_maybe_finish(cli);
}

static void client_maybe_finish(rpc_client_t *cli)
{
    if (cli->closing && cli->handles == 0 && cli->live_cconns == 0 && !cli->resolving) {
        void (*cb)(void *) = cli->close_cb;
        void *arg = cli->close_arg;
        free(cli->ht);
        free(cli);
        if (cb)
            cb(arg);
    }
}

static void cc_close(cconn_t *cc)
{
    if (cc->closed)
        return;
    cc->closed = 1;
    uv_close((uv_handle_t *)&cc->tcp, cc_closed_cb);
}

static void conn_timer_cb(uv_timer_t *t);

static unsigned backoff_delay(rpc_client_t *cli)
{
    uint64_t d = cli->o.backoff_max_ms;
    if (!cli->refused) {
        unsigned shift = cli->attempts < 20 ? cli->attempts : 20;
        d = (uint64_t)cli->o.backoff_min_ms << shift;
        if (d > cli->o.backoff_max_ms)
            d = cli->o.backoff_max_ms;
    }
    cli->attempts++;
    /* xorshift64 jitter: uniform in [d/2, d] so peers don't reconnect in lockstep */
    cli->rng ^= cli->rng << 13;
    cli->rng ^= cli->rng >> 7;
    cli->rng ^= cli->rng << 17;
    return (unsigned)(d / 2 + cli->rng % (d / 2 + 1));
}

/*
 * The attempt or the connection failed: close it, go DOWN, fail the calls
 * already written with ST_ECLOSED, retry after the backoff delay.
 */
static void attempt_failed(rpc_client_t *cli, int err, const char *what, const char *detail)
{
    int was_up = cli->phase == PH_UP || cli->phase == PH_DEAD;
    if (cli->cc) {
        cc_close(cli->cc);
        cli->cc = NULL;
    }
    if (cli->closing)
        return;
    cli->phase = PH_BACKOFF;
    unsigned delay = backoff_delay(cli);
    uv_timer_start(&cli->conn_timer, conn_timer_cb, delay, 0);
    kvb_t k = {.n = 0};
    kvb_str(&k, "reason", what);
    if (detail)
        kvb_str(&k, "detail", detail);
    kvb_raw(&k, " retry_ms=%u", delay);
    if (was_up)
        cli_log(cli, ST_LOG_WARN, "rpc peer down", &k);
    else if (cli->state != RPC_CLIENT_DOWN)
        cli_log(cli, ST_LOG_WARN, "rpc peer unreachable", &k);
    else
        cli_log(cli, ST_LOG_DEBUG, "rpc connect attempt failed", &k);
    set_state(cli, RPC_CLIENT_DOWN, err);
    if (!cli->closing)
        fail_calls(cli, 0, ST_ECLOSED);
}

/* The peer answered our HELLO with an ERROR (or an incompatible HELLO_ACK). */
static void client_refused(rpc_client_t *cli, int code, const char *reason)
{
    kvb_t k = {.n = 0};
    kvb_str(&k, "err", st_errname(code));
    kvb_str(&k, "reason", reason);
    /* loud once; quieter while the peer keeps refusing every backoff_max */
    cli_log(cli, cli->refused ? ST_LOG_DEBUG : ST_LOG_ERROR, "rpc handshake refused", &k);
    cli->refused = 1;
    attempt_failed(cli, ST_EUNAVAIL, "handshake refused", NULL);
    if (!cli->closing)
        fail_calls(cli, 1, ST_EUNAVAIL);
}

static void cli_write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    cconn_t *cc = w->owner;
    rpc_client_t *cli = cc->cli;
    if (w->counted)
        cli->queued_bytes -= w->plain;
    if (status >= 0)
        cli->tx_done += w->plain;
    wreq_free(w);
    if (status < 0 && cc == cli->cc && !cc->closed && !cli->closing)
        attempt_failed(cli, ST_ECLOSED, "write failed", uv_strerror(status));
}

static int cc_write(cconn_t *cc, wreq_t *w)
{
    w->owner = cc;
    if (wreq_seal(cc->tls, w) != 0)
        return ST_ECLOSED;
    uv_buf_t few[CC_WRITE_BUFS], *b = few; /* uv_write keeps its own copy of the array */
    if (w->next >= CC_WRITE_BUFS && !(b = malloc((w->next + 1) * sizeof *b)))
        return ST_ENOMEM;
    b[0] = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
    for (size_t i = 0; i < w->next; i++)
        b[i + 1] = uv_buf_init((char *)(uintptr_t)w->ext[i].p, (unsigned)w->ext[i].len);
    int rc = uv_write(&w->req, (uv_stream_t *)&cc->tcp, b, (unsigned)w->next + 1, cli_write_cb);
    if (b != few)
        free(b);
    return rc;
}

/* Write every queued call (UP only). */
static void client_flush(rpc_client_t *cli)
{
    while (cli->q_head && cli->phase == PH_UP && cli->cc && !cli->cc->closed) {
        call_t *c = cli->q_head;
        q_unlink(cli, c);
        wreq_t *w = c->w;
        c->w = NULL;
        c->sent = 1;
        int rc = cc_write(cli->cc, w);
        if (rc) {
            /* put it back and fail the connection from the loop: no user
             * callback may run inside rpc_client_call */
            c->w = w;
            c->sent = 0;
            c->qnext = cli->q_head;
            if (cli->q_head)
                cli->q_head->qprev = c;
            else
                cli->q_tail = c;
            cli->q_head = c;
            cli->phase = PH_DEAD;
            uv_timer_start(&cli->conn_timer, conn_timer_cb, 0, 0);
            return;
        }
    }
}

static int send_small(rpc_client_t *cli, uint8_t type, const void *p, size_t len)
{
    wreq_t *w;
    int rc = wreq_new(type, 0, p, len, 0, &w);
    if (rc)
        return rc;
    rc = cc_write(cli->cc, w);
    if (rc) {
        wreq_free(w);
        return ST_ECLOSED;
    }
    return 0;
}

static void client_handshake(rpc_client_t *cli, const rpc_frame_t *f)
{
    char msg[320];
    if (f->type == RPC_ERROR) {
        int code = decode_error(f->payload, f->len, msg, sizeof msg);
        client_refused(cli, code, msg);
        return;
    }
    Strata__Hello *h = NULL;
    if (f->type == RPC_HELLO_ACK && f->len <= HELLO_MAX)
        h = strata__hello__unpack(NULL, f->len, f->payload);
    if (!h) {
        attempt_failed(cli, ST_EUNAVAIL, "bad handshake reply", rpc_type_name(f->type));
        return;
    }
    copy_id(cli->peer_id, sizeof cli->peer_id, h->node_id);
    int rc = check_hello(h, cli->cluster, cli->fp, msg, sizeof msg);
    if (rc == 0 && cli->cc->tls) {
        const char *id = h->node_id ? h->node_id : "";
        if (cli->expect_id[0] && strcmp(id, cli->expect_id) != 0) {
            snprintf(
                msg, sizeof msg,
                "wrong node: %.80s:%.7s answered as node \"%.64s\", the topology says \"%.64s\" "
                "is there",
                cli->host, cli->port_str, id, cli->expect_id);
            rc = ST_ECONFIG;
        } else {
            rc = check_cert_id(cli->cc->tls, id, msg, sizeof msg);
        }
        if (rc)
            tls_ctx_count_failure(cli->o.tls, TLS_FAIL_IDENTITY);
    }
    strata__hello__free_unpacked(h, NULL);
    if (rc) {
        client_refused(cli, rc, msg);
        return;
    }
    cli->phase = PH_UP;
    cli->attempts = 0;
    cli->refused = 0;
    cli->tls_failed = 0;
    cli->ping_outstanding = 0;
    cli->last_hb_tick = uv_now(cli->loop);
    uv_timer_stop(&cli->conn_timer);
    if (cli->o.ping_interval_ms)
        uv_timer_start(&cli->conn_timer, conn_timer_cb, cli->o.ping_interval_ms,
                       cli->o.ping_interval_ms);
    cli_log(cli, ST_LOG_INFO, "rpc peer up", NULL);
    set_state(cli, RPC_CLIENT_UP, 0);
    if (!cli->closing)
        client_flush(cli);
}

static void client_on_frame(rpc_client_t *cli, const rpc_frame_t *f)
{
    char msg[320];
    if (f->reqid == 0) {
        if (f->type == RPC_PONG)
            return;
        if (f->type == RPC_ERROR) {
            int code = decode_error(f->payload, f->len, msg, sizeof msg);
            kvb_t k = {.n = 0};
            kvb_str(&k, "err", st_errname(code));
            kvb_str(&k, "reason", msg);
            cli_log(cli, ST_LOG_WARN, "rpc peer reported a connection error", &k);
            return; /* the peer closes the connection next */
        }
        attempt_failed(cli, ST_ECLOSED, "protocol error", rpc_type_name(f->type));
        return;
    }
    call_t *c = ht_find(cli, f->reqid);
    if (!c || !c->sent)
        return; /* late reply after a timeout: dropped */
    call_remove(cli, c);
    if (f->type == RPC_ERROR) {
        int code = decode_error(f->payload, f->len, msg, sizeof msg);
        c->cb(c->arg, code, RPC_ERROR, (const uint8_t *)msg, strlen(msg));
    } else {
        c->cb(c->arg, 0, f->type, f->payload, f->len);
    }
    free(c);
}

static void cc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    cconn_t *cc = h->data;
    uint8_t *p;
    size_t n;
    (void)suggested;
    if (cc->tls) { /* ciphertext: decrypted into rx in cc_tls_read */
        *buf = uv_buf_init((char *)cc->tbuf, TLS_RBUF);
        return;
    }
    size_t need = rpc_rx_reserve_cap(&cc->rx) + cc->rx.scratch.cap;
    if (need > cc->held && budget_move(cc->cli->o.budget, &cc->held, need) != 0) {
        cc->over_budget = 1;
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    int rc = rpc_rx_reserve(&cc->rx, &p, &n);
    if (budget_move(cc->cli->o.budget, &cc->held, rpc_rx_mem(&cc->rx)) != 0)
        cc->over_budget = 1; /* cannot happen: charged above */
    if (rc != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    if (n > UINT32_MAX)
        n = UINT32_MAX;
    *buf = uv_buf_init((char *)p, (unsigned)n);
}

/* Ciphertext from the server: finish the handshake (our HELLO follows),
 * push the plaintext into rx. */
static void cc_tls_read(cconn_t *cc, const uint8_t *data, size_t n)
{
    rpc_client_t *cli = cc->cli;
    cc->tplain.len = 0;
    int rc = tls_conn_feed(cc->tls, data, n, &cc->tplain);
    wreq_t *w = wreq_tls_out(cc->tls);
    if (w) {
        w->owner = cc;
        uv_buf_t b = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
        if (uv_write(&w->req, (uv_stream_t *)&cc->tcp, &b, 1, cli_write_cb) != 0)
            wreq_free(w);
    }
    if (rc == ST_EPROTO) {
        char what[300];
        kvb_t k = {.n = 0};
        kvb_str(&k, "reason", tls_fail_name(tls_conn_failure(cc->tls)));
        kvb_str(&k, "detail", tls_conn_error(cc->tls));
        cli_log(cli, cli->tls_failed ? ST_LOG_DEBUG : ST_LOG_ERROR, "rpc tls refused", &k);
        cli->tls_failed = 1;
        snprintf(what, sizeof what, "tls refused (%s)", tls_fail_name(tls_conn_failure(cc->tls)));
        attempt_failed(cli, ST_EUNAVAIL, what,
                       tls_conn_failure(cc->tls) == TLS_FAIL_NOT_TLS
                           ? "the peer does not speak TLS: rpc_tls must be on on every process"
                           : tls_conn_error(cc->tls));
        return;
    }
    size_t len = cc->tplain.len;
    if (len > 0) {
        size_t need = rpc_rx_mem(&cc->rx) + len;
        if ((need > cc->held && budget_move(cli->o.budget, &cc->held, need) != 0) ||
            rpc_rx_push(&cc->rx, cc->tplain.data, len) != 0) {
            attempt_failed(cli, ST_ECLOSED, "rpc receive buffers over rpc_inflight_max_mb", NULL);
            return;
        }
        cc_process(cc);
    }
    if (rc == ST_ECLOSED && cc == cli->cc && !cc->closed && !cli->closing)
        attempt_failed(cli, ST_ECLOSED, "connection lost", "closed by peer");
}

static void cc_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cconn_t *cc = s->data;
    rpc_client_t *cli = cc->cli;
    (void)buf; /* owned by cc->rx (or cc->tbuf with TLS) */
    if (nread > 0 && cc->tls) {
        if (cc == cli->cc && !cc->closed && !cli->closing)
            cc_tls_read(cc, (const uint8_t *)buf->base, (size_t)nread);
    } else if (nread > 0) {
        rpc_rx_commit(&cc->rx, (size_t)nread);
        cc_process(cc);
    } else if (nread < 0 && cc == cli->cc && !cc->closed && !cli->closing) {
        if (nread == UV_ENOBUFS && cc->over_budget)
            attempt_failed(cli, ST_ECLOSED, "rpc receive buffers over rpc_inflight_max_mb", NULL);
        else
            attempt_failed(cli, ST_ECLOSED, "connection lost",
                           nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
    }
}

static void cc_process(cconn_t *cc)
{
    rpc_client_t *cli = cc->cli;
    while (!cc->closed && cc == cli->cc && !cli->closing) {
        rpc_frame_t f;
        int rc = rpc_rx_next(&cc->rx, &f);
        if (rc == ST_EAGAIN)
            break;
        if (rc < 0) {
            kvb_t k = {.n = 0};
            kvb_str(&k, "err", st_errname(rc));
            cli_log(cli, ST_LOG_WARN, "rpc bad frame from peer", &k);
            attempt_failed(cli, ST_ECLOSED, "bad frame", st_strerror(rc));
            break;
        }
        cli->last_rx = uv_now(cli->loop);
        cli->ping_outstanding = 0;
        if (cli->phase == PH_HANDSHAKE)
            client_handshake(cli, &f);
        else
            client_on_frame(cli, &f);
    }
}

static void cc_on_connect(uv_connect_t *req, int status)
{
    cconn_t *cc = req->data;
    rpc_client_t *cli = cc->cli;
    if (cc->closed || cc != cli->cc || cli->closing)
        return;
    if (status < 0) {
        attempt_failed(cli, ST_EUNAVAIL, "connect failed", uv_strerror(status));
        return;
    }
    int rc = 0;
    if (cli->o.tls) { /* the ClientHello goes out with the HELLO frame below */
        st_buf_init(&cc->tplain);
        cc->tbuf = malloc(TLS_RBUF);
        rc = cc->tbuf ? tls_conn_create(cli->o.tls, cli->host, &cc->tls) : ST_ENOMEM;
    }
    st_buf_t b;
    st_buf_init(&b);
    if (rc == 0)
        rc = pack_hello(cli->cluster, cli->fp, cli->node_id, &b);
    if (rc == 0)
        rc = send_small(cli, RPC_HELLO, b.data, b.len);
    st_buf_deinit(&b);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&cc->tcp, cc_alloc_cb, cc_read_cb);
    if (rc) {
        attempt_failed(cli, ST_EUNAVAIL, "cannot send HELLO", st_strerror(rc));
        return;
    }
    cli->phase = PH_HANDSHAKE;
}

static void cli_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rpc_client_t *cli = req->data;
    cli->resolving = 0;
    if (cli->closing) {
        uv_freeaddrinfo(res);
        client_maybe_finish(cli);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        attempt_failed(cli, ST_EUNAVAIL, "cannot resolve host", uv_strerror(status));
        return;
    }
    cconn_t *cc = calloc(1, sizeof *cc);
    if (!cc) {
        uv_freeaddrinfo(res);
        attempt_failed(cli, ST_EUNAVAIL, "out of memory", NULL);
        return;
    }
    cc->cli = cli;
    rpc_rx_init(&cc->rx, cli->o.max_frame);
    uv_tcp_init(cli->loop, &cc->tcp);
    cc->tcp.data = cc;
    cc->creq.data = cc;
    cli->live_cconns++;
    cli->cc = cc;
    uv_tcp_nodelay(&cc->tcp, 1);
    int rc = uv_tcp_connect(&cc->creq, &cc->tcp, res->ai_addr, cc_on_connect);
    uv_freeaddrinfo(res);
    if (rc) {
        attempt_failed(cli, ST_EUNAVAIL, "connect failed", uv_strerror(rc));
        return;
    }
    cli->phase = PH_CONNECTING;
    uv_timer_start(&cli->conn_timer, conn_timer_cb, cli->o.connect_timeout_ms, 0);
}

static void client_connect(rpc_client_t *cli)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    cli->phase = PH_RESOLVING;
    cli->gai.data = cli;
    int rc =
        uv_getaddrinfo(cli->loop, &cli->gai, cli_on_resolved, cli->host, cli->port_str, &hints);
    if (rc) {
        attempt_failed(cli, ST_EUNAVAIL, "cannot resolve host", uv_strerror(rc));
        return;
    }
    cli->resolving = 1;
}

static void conn_timer_cb(uv_timer_t *t)
{
    rpc_client_t *cli = t->data;
    switch (cli->phase) {
    case PH_BACKOFF:
        client_connect(cli);
        return;
    case PH_CONNECTING:
    case PH_HANDSHAKE:
        attempt_failed(cli, ST_ETIMEDOUT,
                       cli->phase == PH_CONNECTING ? "connect timeout" : "handshake timeout", NULL);
        return;
    case PH_UP: {
        uint64_t now = uv_now(cli->loop), idle = now - cli->last_rx;
        uint64_t iv = cli->o.ping_interval_ms, late = now - cli->last_hb_tick;
        cli->last_hb_tick = now;
        /* libuv runs timers before it polls for input: after our own loop
         * was stalled (a long callback), the peer's PONG may be waiting
         * unread. Judge the peer only on a timer that ran on time. */
        if (late > iv + iv / 2)
            return;
        /* a PING queued behind megabytes of requests is answered late: while
         * requests wait in our write queue and the peer keeps taking them
         * (the kernel accepted more since the last tick), it is alive */
        size_t backlog = cli->cc ? uv_stream_get_write_queue_size((uv_stream_t *)&cli->cc->tcp) : 0;
        int progress = backlog && cli->tx_done != cli->tx_done_tick;
        cli->tx_done_tick = cli->tx_done;
        if (progress) {
            cli->last_rx = now;
            cli->ping_outstanding = 0;
            return;
        }
        if (cli->ping_outstanding && idle >= 2 * iv) {
            attempt_failed(cli, ST_ETIMEDOUT, "heartbeat timeout", NULL);
        } else if (!cli->ping_outstanding && idle >= iv) {
            if (send_small(cli, RPC_PING, NULL, 0) == 0)
                cli->ping_outstanding = 1;
        }
        return;
    }
    case PH_DEAD:
        attempt_failed(cli, ST_ECLOSED, "write failed", NULL);
        return;
    default:
        return;
    }
}

int rpc_client_create(uv_loop_t *loop, const char *host, int port, const rpc_identity_t *me,
                      const rpc_client_opts_t *opts, rpc_client_t **out)
{
    if (!loop || !host || !host[0] || strlen(host) >= 256 || port <= 0 || port > 65535 || !me ||
        !me->cluster_name || !me->node_id || !out)
        return ST_EINVAL;
    rpc_client_t *cli = calloc(1, sizeof *cli);
    if (!cli)
        return ST_ENOMEM;
    cli->ht = calloc(HT_BUCKETS, sizeof *cli->ht);
    if (!cli->ht) {
        free(cli);
        return ST_ENOMEM;
    }
    cli->loop = loop;
    copy_id(cli->host, sizeof cli->host, host);
    snprintf(cli->port_str, sizeof cli->port_str, "%d", port);
    copy_id(cli->cluster, sizeof cli->cluster, me->cluster_name);
    copy_id(cli->node_id, sizeof cli->node_id, me->node_id);
    cli->fp = me->topology_fingerprint;
    if (opts)
        cli->o = *opts;
    copy_id(cli->expect_id, sizeof cli->expect_id, cli->o.peer_node_id);
    cli->o.peer_node_id = NULL; /* the copy above is used */
    opts_default_size(&cli->o.max_frame, RPC_FRAME_MAX_DEFAULT);
    if (cli->o.max_frame < 64)
        cli->o.max_frame = 64;
    opts_default_size(&cli->o.compress_min, RPC_COMPRESS_MIN_DEFAULT);
    if (cli->o.raw_loopback && addr_is_loopback(cli->host))
        cli->o.compress_min = SIZE_MAX;
    opts_default_size(&cli->o.max_queue_bytes, 128u << 20);
    opts_default_u(&cli->o.max_pending, 16384);
    opts_default_u(&cli->o.connect_timeout_ms, 5000);
    opts_default_u(&cli->o.backoff_min_ms, 50);
    opts_default_u(&cli->o.backoff_max_ms, 2000);
    if (cli->o.backoff_max_ms < cli->o.backoff_min_ms)
        cli->o.backoff_max_ms = cli->o.backoff_min_ms;
    opts_default_u(&cli->o.default_timeout_ms, 30000);
    cli->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)cli) | 1;
    cli->next_reqid = 1;
    cli->state = RPC_CLIENT_CONNECTING;
    cli->phase = PH_BACKOFF;
    uv_timer_init(loop, &cli->conn_timer);
    uv_timer_init(loop, &cli->dl_timer);
    cli->conn_timer.data = cli;
    cli->dl_timer.data = cli;
    cli->handles = 2;
    /* first attempt from the loop, so no callback runs inside create */
    uv_timer_start(&cli->conn_timer, conn_timer_cb, 0, 0);
    *out = cli;
    return 0;
}

/* The checks every call passes before anything is allocated. */
static int call_check(rpc_client_t *cli, uint8_t type, const void *payload, size_t len,
                      size_t total, rpc_call_cb cb)
{
    if (!cb || (len && !payload) || type < RPC_WRITE)
        return ST_EINVAL;
    if (cli->closing)
        return ST_ECLOSED;
    if (cli->refused)
        return ST_EUNAVAIL;
    if (total > cli->o.max_frame - RPC_FRAME_HDR)
        return ST_ELIMIT;
    if (cli->npending >= cli->o.max_pending)
        return ST_EBUSY;
    if (cli->queued_bytes > 0 && cli->queued_bytes + total + RPC_FRAME_HDR > cli->o.max_queue_bytes)
        return ST_EBUSY;
    return 0;
}

/* Queue call c, whose frame c->w is made: tables, deadline, write. */
static void call_enqueue(rpc_client_t *cli, call_t *c, unsigned timeout_ms, rpc_call_cb cb,
                         void *arg)
{
    c->w->counted = 1;
    c->cb = cb;
    c->arg = arg;
    c->deadline = uv_now(cli->loop) + (timeout_ms ? timeout_ms : cli->o.default_timeout_ms);
    cli->queued_bytes += c->w->plain;
    cli->npending++;
    call_t **slot = ht_slot(cli, c->reqid);
    c->hnext = *slot;
    *slot = c;
    /* deadline list: insert from the tail (deadlines mostly arrive in order) */
    call_t *p = cli->dl_tail;
    while (p && p->deadline > c->deadline)
        p = p->dprev;
    c->dprev = p;
    c->dnext = p ? p->dnext : cli->dl_head;
    if (c->dnext)
        c->dnext->dprev = c;
    else
        cli->dl_tail = c;
    if (p)
        p->dnext = c;
    else
        cli->dl_head = c;
    c->qprev = cli->q_tail;
    if (cli->q_tail)
        cli->q_tail->qnext = c;
    else
        cli->q_head = c;
    cli->q_tail = c;
    if (cli->dl_head == c)
        dl_rearm(cli);
    if (cli->phase == PH_UP)
        client_flush(cli);
}

/* A call whose frame is the payload encoded (release NULL), or a header
 * and `head` with the caller's pieces behind them (shared: released once
 * written). */
static int call_start(rpc_client_t *cli, uint8_t type, const void *payload, size_t len,
                      const rpc_piece_t *pieces, size_t npieces, void (*release)(void *rel_arg),
                      void *rel_arg, unsigned timeout_ms, rpc_call_cb cb, void *arg)
{
    size_t total = len;
    for (size_t i = 0; i < npieces; i++)
        total += pieces[i].len;
    int rc = call_check(cli, type, payload, len, total, cb);
    if (rc)
        return rc;
    call_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    c->reqid = cli->next_reqid++;
    if (!release) {
        rc = wreq_new(type, c->reqid, payload, len, cli->o.compress_min, &c->w);
    } else {
        rc = wreq_new(type, c->reqid, NULL, 0, 0, &c->w); /* an empty frame: its header's room */
        wreq_t *w = rc ? NULL : c->w;
        if (w)
            rc = rpc_frame_header(w->buf.data, type, c->reqid, total); /* ... counting ext */
        if (w && !rc && len)
            rc = st_buf_append(&w->buf, payload, len);
        if (w && !rc) {
            w->ext = npieces == 1 ? &w->ext1 : malloc(npieces * sizeof *w->ext);
            if (!w->ext)
                rc = ST_ENOMEM;
        }
        if (w && !rc) {
            memcpy(w->ext, pieces, npieces * sizeof *w->ext);
            w->next = npieces;
            w->plain = w->buf.len + (total - len);
            w->rel = release;
            w->rel_arg = rel_arg;
        } else if (w) {
            w->ext = NULL; /* the caller keeps its reference on an error */
            wreq_free(w);
        }
    }
    if (rc) {
        free(c);
        return rc;
    }
    call_enqueue(cli, c, timeout_ms, cb, arg);
    return 0;
}

int rpc_client_call(rpc_client_t *cli, uint8_t type, const void *payload, size_t len,
                    unsigned timeout_ms, rpc_call_cb cb, void *arg)
{
    return call_start(cli, type, payload, len, NULL, 0, NULL, NULL, timeout_ms, cb, arg);
}

int rpc_client_call_pieces(rpc_client_t *cli, uint8_t type, const void *head, size_t head_len,
                           const rpc_piece_t *pieces, size_t npieces,
                           void (*release)(void *rel_arg), void *rel_arg, unsigned timeout_ms,
                           rpc_call_cb cb, void *arg)
{
    if (!release || !npieces || (head_len && !head))
        return ST_EINVAL;
    size_t total = head_len;
    for (size_t i = 0; i < npieces; i++) {
        if (pieces[i].len && !pieces[i].p)
            return ST_EINVAL;
        total += pieces[i].len;
    }
    /* TLS seals a copy anyway, and a compressed frame is a new buffer:
     * the payload is copied as rpc_client_call would (several runs are
     * gathered first; a lone piece is that payload already) */
    if (cli->o.tls || (cli->o.compress_min > 0 && total >= cli->o.compress_min)) {
        if (!head_len && npieces == 1) {
            int rc = call_start(cli, type, pieces[0].p, pieces[0].len, NULL, 0, NULL, NULL,
                                timeout_ms, cb, arg);
            if (!rc)
                release(rel_arg);
            return rc;
        }
        uint8_t *all = malloc(total ? total : 1);
        if (!all)
            return ST_ENOMEM;
        size_t at = head_len;
        if (head_len)
            memcpy(all, head, head_len);
        for (size_t i = 0; i < npieces; i++) {
            if (pieces[i].len)
                memcpy(all + at, pieces[i].p, pieces[i].len);
            at += pieces[i].len;
        }
        int rc = call_start(cli, type, all, total, NULL, 0, NULL, NULL, timeout_ms, cb, arg);
        free(all);
        if (!rc)
            release(rel_arg);
        return rc;
    }
    return call_start(cli, type, head, head_len, pieces, npieces, release, rel_arg, timeout_ms, cb,
                      arg);
}

int rpc_client_call_shared(rpc_client_t *cli, uint8_t type, const void *payload, size_t len,
                           void (*release)(void *rel_arg), void *rel_arg, unsigned timeout_ms,
                           rpc_call_cb cb, void *arg)
{
    rpc_piece_t one = {payload, len};
    return rpc_client_call_pieces(cli, type, NULL, 0, &one, 1, release, rel_arg, timeout_ms, cb,
                                  arg);
}

rpc_client_state_t rpc_client_state(const rpc_client_t *cli)
{
    return cli->state;
}

const char *rpc_client_peer_id(const rpc_client_t *cli)
{
    return cli->peer_id;
}

size_t rpc_client_pending(const rpc_client_t *cli)
{
    return cli->npending;
}

static void cli_handle_closed(uv_handle_t *h)
{
    rpc_client_t *cli = h->data;
    cli->handles--;
    client_maybe_finish(cli);
}

void rpc_client_close(rpc_client_t *cli, void (*cb)(void *arg), void *arg)
{
    if (cli->closing)
        return;
    cli->closing = 1;
    cli->close_cb = cb;
    cli->close_arg = arg;
    fail_calls(cli, 1, ST_ECLOSED);
    if (cli->cc) {
        cc_close(cli->cc);
        cli->cc = NULL;
    }
    if (cli->resolving)
        uv_cancel((uv_req_t *)&cli->gai);
    uv_close((uv_handle_t *)&cli->conn_timer, cli_handle_closed);
    uv_close((uv_handle_t *)&cli->dl_timer, cli_handle_closed);
}
