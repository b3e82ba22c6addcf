/*
 * Unit tests for common/net/rpc_uv: a real libuv loop, servers and clients on
 * 127.0.0.1 with ports chosen at run time. Each test drives the loop with
 * run_until() (bounded by a watchdog timer) and ends with every handle closed
 * and uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "rpc_frame.h"
#include "rpc_uv.h"
#include "st_err.h"
#include "st_log.h"
#include "st_varint.h"
#include "strata.pb-c.h"

#define FP_A 0x1479e4c05e26311cull
#define FP_B 0x0badc0ffee15600dull
#define WATCHDOG_MS 20000
#define NPIPE 1000

typedef struct pend {
    rpc_conn_t *conn;
    uint64_t reqid;
    uint8_t type;
    uint8_t *p;
    size_t len;
} pend_t;

typedef struct env {
    uv_loop_t loop;
    uv_timer_t watchdog;
    uv_timer_t tick; /* deferred replies */
    uv_timer_t sleep;
    int slept;
    rpc_server_t *srv;
    rpc_client_t *cli;
    int srv_closed, cli_closed;
    int mode; /* server handler behaviour */
    unsigned reply_delay_ms;
    /* deferred requests (server side) */
    pend_t *pend;
    size_t npend, cappend;
    size_t handled;
    char handler_peer[320];
    /* client side */
    int ncalls_done;
    int statuses[NPIPE];
    int order[NPIPE];
    int states[32];
    int nstates;
    char cli_log[8192];
    char srv_log[8192];
    uint8_t *big;
    size_t big_len;
    int big_ok;
} env_t;

enum { MODE_ECHO, MODE_DEFER_REVERSE, MODE_NEVER, MODE_DELAY };

/* ---- harness ---------------------------------------------------------- */

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    fail_msg("watchdog: test did not finish within %d ms", WATCHDOG_MS);
}

static void log_append(char *dst, size_t cap, int level, const char *msg, const char *kv)
{
    size_t n = strlen(dst);
    if (n < cap)
        snprintf(dst + n, cap - n, "level=%d msg=\"%s\" %s\n", level, msg, kv);
}

static void cli_log_fn(void *arg, int level, const char *msg, const char *kv)
{
    env_t *e = arg;
    log_append(e->cli_log, sizeof e->cli_log, level, msg, kv);
}

static void srv_log_fn(void *arg, int level, const char *msg, const char *kv)
{
    env_t *e = arg;
    log_append(e->srv_log, sizeof e->srv_log, level, msg, kv);
}

static void on_state(void *arg, rpc_client_t *cli, rpc_client_state_t s, int err)
{
    env_t *e = arg;
    (void)cli;
    (void)err;
    if (e->nstates < 32)
        e->states[e->nstates++] = (int)s;
}

static void reply_pending(env_t *e, int reverse)
{
    /* replies go out in reverse arrival order: out of order on purpose */
    size_t n = e->npend;
    for (size_t k = 0; k < n; k++) {
        pend_t *q = &e->pend[reverse ? n - 1 - k : k];
        int rc = rpc_conn_reply(q->conn, q->reqid, (uint8_t)(q->type + 1), q->p, q->len);
        assert_true(rc == 0 || rc == ST_ECLOSED);
        rpc_conn_release(q->conn);
        free(q->p);
    }
    e->npend = 0;
}

static void on_tick(uv_timer_t *t)
{
    env_t *e = t->data;
    reply_pending(e, e->mode == MODE_DEFER_REVERSE);
}

static void handler(void *arg, rpc_conn_t *conn, uint8_t type, uint64_t reqid,
                    const uint8_t *payload, size_t len)
{
    env_t *e = arg;
    e->handled++;
    snprintf(e->handler_peer, sizeof e->handler_peer, "%s", rpc_conn_peer_id(conn));
    switch (e->mode) {
    case MODE_ECHO:
        assert_int_equal(rpc_conn_reply(conn, reqid, (uint8_t)(type + 1), payload, len), 0);
        return;
    case MODE_NEVER:
        return;
    default:
        break;
    }
    if (e->npend == e->cappend) {
        e->cappend = e->cappend ? 2 * e->cappend : 64;
        e->pend = realloc(e->pend, e->cappend * sizeof *e->pend);
    }
    pend_t *q = &e->pend[e->npend++];
    rpc_conn_acquire(conn);
    q->conn = conn;
    q->reqid = reqid;
    q->type = type;
    q->len = len;
    q->p = malloc(len ? len : 1);
    if (len)
        memcpy(q->p, payload, len);
    if (!uv_is_active((uv_handle_t *)&e->tick))
        uv_timer_start(&e->tick, on_tick, e->mode == MODE_DELAY ? e->reply_delay_ms : 1, 0);
}

static void env_init(env_t *e)
{
    memset(e, 0, sizeof *e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    uv_timer_init(&e->loop, &e->watchdog);
    uv_timer_start(&e->watchdog, on_watchdog, WATCHDOG_MS, 0);
    uv_timer_init(&e->loop, &e->tick);
    uv_timer_init(&e->loop, &e->sleep);
    e->tick.data = e;
    e->sleep.data = e;
}

static void run_until(env_t *e, const int *flag)
{
    while (!*flag)
        uv_run(&e->loop, UV_RUN_ONCE);
}

static void on_sleep(uv_timer_t *t)
{
    env_t *e = t->data;
    e->slept = 1;
}

static void run_for(env_t *e, unsigned ms)
{
    e->slept = 0;
    uv_timer_start(&e->sleep, on_sleep, ms, 0);
    run_until(e, &e->slept);
}

static void set_flag(void *arg)
{
    *(int *)arg = 1;
}

static void srv_closed_cb(void *arg)
{
    ((env_t *)arg)->srv_closed = 1;
}

static void cli_closed_cb(void *arg)
{
    ((env_t *)arg)->cli_closed = 1;
}

static void close_server(env_t *e)
{
    if (!e->srv)
        return;
    e->srv_closed = 0;
    rpc_server_close(e->srv, srv_closed_cb, e);
    run_until(e, &e->srv_closed);
    e->srv = NULL;
}

static void close_client(env_t *e)
{
    if (!e->cli)
        return;
    e->cli_closed = 0;
    rpc_client_close(e->cli, cli_closed_cb, e);
    run_until(e, &e->cli_closed);
    e->cli = NULL;
}

static void env_finish(env_t *e)
{
    for (size_t i = 0; i < e->npend; i++) {
        rpc_conn_release(e->pend[i].conn);
        free(e->pend[i].p);
    }
    e->npend = 0;
    close_client(e);
    close_server(e);
    uv_close((uv_handle_t *)&e->watchdog, NULL);
    uv_close((uv_handle_t *)&e->tick, NULL);
    uv_close((uv_handle_t *)&e->sleep, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    free(e->pend);
    free(e->big);
}

static const rpc_identity_t srv_id = {"demo", FP_A, "n1"};
static const rpc_identity_t cli_id = {"demo", FP_A, "router:127.0.0.1:8086"};

static void start_server(env_t *e, int port, const rpc_server_opts_t *o)
{
    rpc_server_opts_t so = {0};
    if (o)
        so = *o;
    so.log = srv_log_fn;
    so.log_arg = e;
    assert_int_equal(
        rpc_server_create(&e->loop, "127.0.0.1", port, &srv_id, &so, handler, e, &e->srv), 0);
    assert_true(rpc_server_port(e->srv) > 0);
}

static void start_client(env_t *e, int port, const rpc_identity_t *id, const rpc_client_opts_t *o)
{
    rpc_client_opts_t co = {0};
    if (o)
        co = *o;
    co.on_state = on_state;
    co.state_arg = e;
    co.log = cli_log_fn;
    co.log_arg = e;
    assert_int_equal(
        rpc_client_create(&e->loop, "127.0.0.1", port, id ? id : &cli_id, &co, &e->cli), 0);
}

/* A port that was free a moment ago: bind port 0, read it, close. */
static int free_port(env_t *e)
{
    start_server(e, 0, NULL);
    int port = rpc_server_port(e->srv);
    close_server(e);
    return port;
}

typedef struct callctx {
    env_t *e;
    int idx;
    int done;
    int status;
    uint8_t type;
    char text[128];
    uint64_t t0, t1;
} callctx_t;

static void call_cb(void *arg, int status, uint8_t type, const uint8_t *p, size_t len)
{
    callctx_t *c = arg;
    c->done++;
    c->status = status;
    c->type = type;
    c->t1 = uv_now(&c->e->loop);
    size_t n = len < sizeof c->text - 1 ? len : sizeof c->text - 1;
    if (n)
        memcpy(c->text, p, n);
    c->text[n] = '\0';
}

static int call_text(env_t *e, callctx_t *c, const char *text, unsigned timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->e = e;
    c->t0 = uv_now(&e->loop);
    return rpc_client_call(e->cli, RPC_STATS, text, strlen(text), timeout_ms, call_cb, c);
}

/* ---- tests ------------------------------------------------------------ */

static void test_handshake_ok(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    start_server(&e, 0, NULL);
    start_client(&e, rpc_server_port(e.srv), NULL, NULL);
    assert_int_equal(rpc_client_state(e.cli), RPC_CLIENT_CONNECTING);
    callctx_t c;
    assert_int_equal(call_text(&e, &c, "hello?", 2000), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.type, RPC_STATS_RESP);
    assert_string_equal(c.text, "hello?");
    assert_int_equal(rpc_client_state(e.cli), RPC_CLIENT_UP);
    assert_string_equal(rpc_client_peer_id(e.cli), "n1");
    assert_string_equal(e.handler_peer, "router:127.0.0.1:8086");
    assert_int_equal(e.nstates, 1);
    assert_int_equal(e.states[0], RPC_CLIENT_UP);
    rpc_server_stats_t st;
    rpc_server_stats(e.srv, &st);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.handshakes_refused, 0);
    assert_non_null(strstr(e.cli_log, "rpc peer up"));
    /* a handshake-level type is not a request */
    assert_int_equal(rpc_client_call(e.cli, RPC_PING, NULL, 0, 100, call_cb, &c), ST_EINVAL);
    env_finish(&e);
}

static void test_fingerprint_mismatch(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    start_server(&e, 0, NULL);
    rpc_identity_t other = {"demo", FP_B, "n7"};
    start_client(&e, rpc_server_port(e.srv), &other, NULL);
    callctx_t c;
    assert_int_equal(call_text(&e, &c, "x", 5000), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, ST_EUNAVAIL);
    assert_int_equal(e.handled, 0);
    assert_int_equal(rpc_client_state(e.cli), RPC_CLIENT_DOWN);
    assert_int_equal(e.nstates, 1);
    assert_int_equal(e.states[0], RPC_CLIENT_DOWN);
    /* loud on both sides, with the same explanation */
    const char *want = "topology fingerprint mismatch: mine 1479e4c05e26311c, yours "
                       "0badc0ffee15600d; check cluster.ini on both hosts";
    assert_non_null(strstr(e.srv_log, want));
    assert_non_null(strstr(e.srv_log, "rpc handshake refused"));
    assert_non_null(strstr(e.srv_log, "peer_node=n7"));
    assert_non_null(strstr(e.cli_log, want));
    assert_non_null(strstr(e.cli_log, "rpc handshake refused"));
    assert_non_null(strstr(e.cli_log, "level=3")); /* ST_LOG_ERROR */
    /* new calls fail fast while the peer refuses us */
    assert_int_equal(call_text(&e, &c, "y", 100), ST_EUNAVAIL);
    rpc_server_stats_t st;
    rpc_server_stats(e.srv, &st);
    assert_int_equal(st.handshakes_refused, 1);

    /* a cluster name mismatch is refused the same way */
    close_client(&e);
    e.cli_log[0] = e.srv_log[0] = '\0';
    rpc_identity_t other2 = {"prod", FP_A, "n7"};
    start_client(&e, rpc_server_port(e.srv), &other2, NULL);
    assert_int_equal(call_text(&e, &c, "x", 5000), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, ST_EUNAVAIL);
    assert_non_null(strstr(e.srv_log, "cluster name mismatch"));
    assert_non_null(strstr(e.cli_log, "cluster name mismatch"));
    env_finish(&e);
}

static void pipe_cb(void *arg, int status, uint8_t type, const uint8_t *p, size_t len)
{
    callctx_t *c = arg;
    env_t *e = c->e;
    char want[32];
    int n = snprintf(want, sizeof want, "req %d", c->idx);
    e->statuses[c->idx] = status;
    if (status == 0 && (type != RPC_WRITE_RESP || len != (size_t)n || memcmp(p, want, len) != 0))
        e->statuses[c->idx] = 99;
    e->order[e->ncalls_done++] = c->idx;
    c->done = 1;
}

static void test_pipelining_out_of_order(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    e.mode = MODE_DEFER_REVERSE;
    rpc_server_opts_t so = {.max_conn_inflight = 64};
    start_server(&e, 0, &so);
    start_client(&e, rpc_server_port(e.srv), NULL, NULL);
    callctx_t *c = calloc(NPIPE, sizeof *c);
    for (int i = 0; i < NPIPE; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "req %d", i);
        c[i].e = &e;
        c[i].idx = i;
        assert_int_equal(rpc_client_call(e.cli, RPC_WRITE, p, (size_t)n, 10000, pipe_cb, &c[i]), 0);
    }
    assert_int_equal(rpc_client_pending(e.cli), NPIPE);
    int all = 0;
    while (!all) {
        uv_run(&e.loop, UV_RUN_ONCE);
        all = e.ncalls_done == NPIPE;
    }
    int inversions = 0;
    for (int i = 0; i < NPIPE; i++) {
        assert_int_equal(e.statuses[i], 0);
        if (i > 0 && e.order[i] < e.order[i - 1])
            inversions++;
    }
    assert_true(inversions > 0); /* replies really came back out of order */
    assert_int_equal(rpc_client_pending(e.cli), 0);
    rpc_server_stats_t st;
    rpc_server_stats(e.srv, &st);
    assert_int_equal(st.requests, NPIPE);
    assert_true(st.read_pauses > 0); /* 64 in flight at most: reading paused */
    assert_int_equal(st.conns_accepted, 1);
    free(c);
    env_finish(&e);
}

static void big_cb(void *arg, int status, uint8_t type, const uint8_t *p, size_t len)
{
    callctx_t *c = arg;
    env_t *e = c->e;
    c->done = 1;
    c->status = status;
    e->big_ok =
        status == 0 && type == RPC_EXPORT_RESP && len == e->big_len && memcmp(p, e->big, len) == 0;
}

static void test_large_compressed(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    start_server(&e, 0, NULL);
    start_client(&e, rpc_server_port(e.srv), NULL, NULL);
    e.big_len = 8u << 20;
    e.big = malloc(e.big_len);
    size_t off = 0;
    for (unsigned i = 0; off < e.big_len; i++) {
        char line[96];
        int n = snprintf(line, sizeof line, "cpu_usage_user{host=\"host_%u\"} %u.%02u %u000\n",
                         i % 1000, i % 97, i % 100, 1700000000u + i / 1000);
        size_t k = (size_t)n < e.big_len - off ? (size_t)n : e.big_len - off;
        memcpy(e.big + off, line, k);
        off += k;
    }
    callctx_t c = {.e = &e};
    assert_int_equal(rpc_client_call(e.cli, RPC_EXPORT, e.big, e.big_len, 10000, big_cb, &c), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, 0);
    assert_true(e.big_ok);
    rpc_server_stats_t st;
    rpc_server_stats(e.srv, &st);
    assert_true(st.bytes_in < e.big_len / 3); /* LZ4 on the wire both ways */
    assert_true(st.bytes_out < e.big_len / 3);
    /* over the limit: refused at the call */
    rpc_client_t *small;
    rpc_client_opts_t co = {.max_frame = 1 << 20};
    assert_int_equal(
        rpc_client_create(&e.loop, "127.0.0.1", rpc_server_port(e.srv), &cli_id, &co, &small), 0);
    assert_int_equal(rpc_client_call(small, RPC_EXPORT, e.big, 2 << 20, 100, big_cb, &c),
                     ST_ELIMIT);
    int closed = 0;
    rpc_client_close(small, set_flag, &closed);
    run_until(&e, &closed);
    env_finish(&e);
}

static void count_release(void *arg)
{
    (*(int *)arg)++;
}

/* big_cb per call: c->idx = 1 when the echo matched */
static void shared_cb(void *arg, int status, uint8_t type, const uint8_t *p, size_t len)
{
    callctx_t *c = arg;
    big_cb(arg, status, type, p, len);
    c->idx = c->e->big_ok;
}

/* A server, a client with options co, and e.big: len patterned bytes. */
static void start_with_big(env_t *e, rpc_client_opts_t *co, size_t len)
{
    env_init(e);
    start_server(e, 0, NULL);
    start_client(e, rpc_server_port(e->srv), NULL, co);
    e->big_len = len;
    e->big = malloc(e->big_len);
    for (size_t i = 0; i < e->big_len; i++)
        e->big[i] = (uint8_t)(i * 7 + i / 251);
}

/* rpc_client_call_shared: one payload, several calls, no copy; released
 * once per call when written (or dropped unwritten); copied (and released
 * at once) when the frame is compressed; an error return keeps it. */
static void test_shared_payload(void **state)
{
    (void)state;
    env_t e;
    rpc_client_opts_t co = {.compress_min = SIZE_MAX};
    start_with_big(&e, &co, 3u << 20);
    int released = 0;
    callctx_t c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (callctx_t){.e = &e};
        assert_int_equal(rpc_client_call_shared(e.cli, RPC_EXPORT, e.big, e.big_len, count_release,
                                                &released, 10000, shared_cb, &c[i]),
                         0);
    }
    assert_int_equal(released, 0); /* never inside the call */
    for (int i = 0; i < 3; i++) {
        run_until(&e, &c[i].done);
        assert_int_equal(c[i].status, 0);
        assert_int_equal(c[i].idx, 1);
    }
    assert_int_equal(released, 3);
    /* an error return keeps the caller's reference */
    assert_int_equal(rpc_client_call_shared(e.cli, RPC_EXPORT, e.big, e.big_len, NULL, NULL, 1000,
                                            big_cb, &c[0]),
                     ST_EINVAL);
    assert_int_equal(rpc_client_call_shared(e.cli, RPC_PING, e.big, 10, count_release, &released,
                                            1000, big_cb, &c[0]),
                     ST_EINVAL);
    assert_int_equal(released, 3);
    close_client(&e);
    /* compressed: copied, released before the call returns, answered right */
    rpc_client_opts_t cz = {.compress_min = 1024};
    start_client(&e, rpc_server_port(e.srv), NULL, &cz);
    memset(e.big, 'x', e.big_len / 2);
    c[0] = (callctx_t){.e = &e};
    assert_int_equal(rpc_client_call_shared(e.cli, RPC_EXPORT, e.big, e.big_len, count_release,
                                            &released, 10000, big_cb, &c[0]),
                     0);
    assert_int_equal(released, 4);
    e.big_ok = 0;
    run_until(&e, &c[0].done);
    assert_int_equal(c[0].status, 0);
    assert_true(e.big_ok);
    close_client(&e);
    /* never written (nobody listens): released when the deadline fails it */
    int port = rpc_server_port(e.srv);
    close_server(&e);
    start_client(&e, port, NULL, &co);
    c[0] = (callctx_t){.e = &e};
    assert_int_equal(rpc_client_call_shared(e.cli, RPC_EXPORT, e.big, 100, count_release, &released,
                                            100, big_cb, &c[0]),
                     0);
    run_until(&e, &c[0].done);
    assert_int_equal(c[0].status, ST_EUNAVAIL);
    assert_int_equal(released, 5);
    /* queued when the client closes: released once too */
    c[1] = (callctx_t){.e = &e};
    assert_int_equal(rpc_client_call_shared(e.cli, RPC_EXPORT, e.big, 100, count_release, &released,
                                            10000, big_cb, &c[1]),
                     0);
    close_client(&e);
    assert_int_equal(c[1].done, 1);
    assert_int_equal(c[1].status, ST_ECLOSED);
    assert_int_equal(released, 6);
    env_finish(&e);
}

/* rpc_client_call_pieces: a copied head and pieces lying apart (more
 * than one write describes on the stack) arrive as one payload in order;
 * released once when written; an error return keeps the reference. */
static void test_pieces_payload(void **state)
{
    (void)state;
    env_t e;
    rpc_client_opts_t co = {.compress_min = SIZE_MAX};
    start_with_big(&e, &co, (1u << 20) + 37);
    /* the payload after a 100-byte head, in 40 pieces stored in reverse
     * order in another buffer: only gathering them in order rebuilds it */
    enum { HEAD = 100, NP = 40 };
    size_t rest = e.big_len - HEAD, step = rest / NP;
    uint8_t *alt = malloc(rest);
    rpc_piece_t pc[NP];
    size_t at = 0;
    for (int i = 0; i < NP; i++) {
        size_t len = i == NP - 1 ? rest - at : step;
        uint8_t *dst = alt + rest - at - len; /* piece i near the end */
        memcpy(dst, e.big + HEAD + at, len);
        pc[i] = (rpc_piece_t){dst, len};
        at += len;
    }
    int released = 0;
    callctx_t c = {.e = &e};
    assert_int_equal(rpc_client_call_pieces(e.cli, RPC_EXPORT, e.big, HEAD, pc, NP, count_release,
                                            &released, 10000, shared_cb, &c),
                     0);
    assert_int_equal(released, 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.idx, 1);
    assert_int_equal(released, 1);
    /* no pieces, or no release: refused, nothing released */
    assert_int_equal(rpc_client_call_pieces(e.cli, RPC_EXPORT, e.big, HEAD, pc, 0, count_release,
                                            &released, 1000, shared_cb, &c),
                     ST_EINVAL);
    assert_int_equal(rpc_client_call_pieces(e.cli, RPC_EXPORT, e.big, HEAD, pc, NP, NULL, NULL,
                                            1000, shared_cb, &c),
                     ST_EINVAL);
    assert_int_equal(released, 1);
    close_client(&e);
    /* compressed: gathered into a copy, released before the call returns */
    rpc_client_opts_t cz = {.compress_min = 1024};
    start_client(&e, rpc_server_port(e.srv), NULL, &cz);
    c = (callctx_t){.e = &e};
    e.big_ok = 0;
    assert_int_equal(rpc_client_call_pieces(e.cli, RPC_EXPORT, e.big, HEAD, pc, NP, count_release,
                                            &released, 10000, shared_cb, &c),
                     0);
    assert_int_equal(released, 2);
    run_until(&e, &c.done);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.idx, 1);
    close_client(&e);
    free(alt);
    env_finish(&e);
}

static void test_timeout_and_late_reply(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    e.mode = MODE_NEVER;
    start_server(&e, 0, NULL);
    start_client(&e, rpc_server_port(e.srv), NULL, NULL);
    callctx_t c;
    assert_int_equal(call_text(&e, &c, "never", 150), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, ST_ETIMEDOUT);
    assert_true(c.t1 - c.t0 >= 140 && c.t1 - c.t0 < 2000);
    assert_int_equal(e.handled, 1);
    /* a reply that comes after the deadline is dropped: the callback ran once */
    e.mode = MODE_DELAY;
    e.reply_delay_ms = 300;
    callctx_t c2;
    assert_int_equal(call_text(&e, &c2, "late", 100), 0);
    run_until(&e, &c2.done);
    assert_int_equal(c2.status, ST_ETIMEDOUT);
    run_for(&e, 400);
    assert_int_equal(e.npend, 0); /* the server did reply */
    assert_int_equal(c2.done, 1);
    assert_int_equal(rpc_client_pending(e.cli), 0);
    /* and the connection is still fine */
    e.mode = MODE_ECHO;
    assert_int_equal(call_text(&e, &c, "after", 1000), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.text, "after");
    assert_int_equal(e.nstates, 1);
    env_finish(&e);
}

static void test_queue_then_connect(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    int port = free_port(&e);
    rpc_client_opts_t co = {.backoff_min_ms = 20, .backoff_max_ms = 200};
    start_client(&e, port, NULL, &co);
    callctx_t c[10];
    for (int i = 0; i < 10; i++) {
        char t[16];
        snprintf(t, sizeof t, "q%d", i);
        assert_int_equal(call_text(&e, &c[i], t, 8000), 0);
    }
    run_for(&e, 400);
    /* nobody listening: DOWN, calls still queued */
    assert_int_equal(rpc_client_state(e.cli), RPC_CLIENT_DOWN);
    assert_int_equal(rpc_client_pending(e.cli), 10);
    assert_int_equal(c[0].done, 0);
    assert_non_null(strstr(e.cli_log, "rpc peer unreachable"));
    /* the server comes up on that port: the backoff finds it */
    start_server(&e, port, NULL);
    run_until(&e, &c[9].done);
    for (int i = 0; i < 10; i++) {
        char t[16];
        snprintf(t, sizeof t, "q%d", i);
        assert_int_equal(c[i].done, 1);
        assert_int_equal(c[i].status, 0);
        assert_string_equal(c[i].text, t);
    }
    assert_int_equal(rpc_client_state(e.cli), RPC_CLIENT_UP);
    assert_int_equal(e.nstates, 2);
    assert_int_equal(e.states[0], RPC_CLIENT_DOWN);
    assert_int_equal(e.states[1], RPC_CLIENT_UP);
    env_finish(&e);
}

static void test_unreachable_deadline(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    int port = free_port(&e);
    rpc_client_opts_t co = {.backoff_min_ms = 20, .backoff_max_ms = 50};
    start_client(&e, port, NULL, &co);
    callctx_t c;
    assert_int_equal(call_text(&e, &c, "x", 200), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, ST_EUNAVAIL); /* never sent: the peer was down */
    env_finish(&e);
}

static void test_server_closed_mid_flight(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    e.mode = MODE_DELAY;
    e.reply_delay_ms = 60000; /* holds the request (and a conn reference) */
    start_server(&e, 0, NULL);
    int port = rpc_server_port(e.srv);
    rpc_client_opts_t co = {.backoff_min_ms = 20, .backoff_max_ms = 100};
    start_client(&e, port, NULL, &co);
    callctx_t c;
    assert_int_equal(call_text(&e, &c, "in flight", 10000), 0);
    while (e.npend == 0)
        uv_run(&e.loop, UV_RUN_ONCE);
    uv_timer_stop(&e.tick);
    close_server(&e);
    run_until(&e, &c.done);
    assert_int_equal(c.status, ST_ECLOSED);
    /* replying on the closed connection is a harmless no-op */
    assert_false(rpc_conn_is_open(e.pend[0].conn));
    assert_int_equal(rpc_conn_reply(e.pend[0].conn, e.pend[0].reqid, RPC_STATS_RESP, "z", 1),
                     ST_ECLOSED);
    assert_int_equal(rpc_conn_reply_error(e.pend[0].conn, e.pend[0].reqid, ST_EIO, "z"),
                     ST_ECLOSED);
    rpc_conn_release(e.pend[0].conn);
    free(e.pend[0].p);
    e.npend = 0;
    assert_int_equal(e.states[0], RPC_CLIENT_UP);
    assert_int_equal(e.states[1], RPC_CLIENT_DOWN);
    assert_int_equal(rpc_client_state(e.cli), RPC_CLIENT_DOWN);
    assert_non_null(strstr(e.cli_log, "rpc peer down"));

    /* the server comes back on the same port: the client reconnects */
    e.mode = MODE_ECHO;
    start_server(&e, port, NULL);
    assert_int_equal(call_text(&e, &c, "again", 5000), 0);
    run_until(&e, &c.done);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.text, "again");
    assert_int_equal(e.nstates, 3);
    assert_int_equal(e.states[2], RPC_CLIENT_UP);
    env_finish(&e);
}

static int closed_count;
static void count_cb(void *arg, int status, uint8_t type, const uint8_t *p, size_t len)
{
    (void)type;
    (void)p;
    (void)len;
    int *st = arg;
    *st = status;
    closed_count++;
}

static void test_queue_full(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    int port = free_port(&e);
    rpc_client_opts_t co = {.max_pending = 4, .max_queue_bytes = 1000};
    start_client(&e, port, NULL, &co);
    int st[8];
    uint8_t p[900];
    memset(p, 'a', sizeof p);
    closed_count = 0;
    assert_int_equal(rpc_client_call(e.cli, RPC_WRITE, p, 800, 5000, count_cb, &st[0]), 0);
    /* 814 queued: 300 more would pass 1000 */
    assert_int_equal(rpc_client_call(e.cli, RPC_WRITE, p, 300, 5000, count_cb, &st[1]), ST_EBUSY);
    assert_int_equal(rpc_client_call(e.cli, RPC_WRITE, p, 100, 5000, count_cb, &st[1]), 0);
    assert_int_equal(rpc_client_call(e.cli, RPC_WRITE, p, 10, 5000, count_cb, &st[2]), 0);
    assert_int_equal(rpc_client_call(e.cli, RPC_WRITE, p, 10, 5000, count_cb, &st[3]), 0);
    /* count bound */
    assert_int_equal(rpc_client_call(e.cli, RPC_WRITE, p, 1, 5000, count_cb, &st[4]), ST_EBUSY);
    assert_int_equal(rpc_client_pending(e.cli), 4);
    assert_int_equal(closed_count, 0);
    /* close fails the queued calls with ST_ECLOSED */
    close_client(&e);
    assert_int_equal(closed_count, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(st[i], ST_ECLOSED);
    env_finish(&e);
}

/* ---- a raw TCP peer that sends garbage ---- */

typedef struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t in[4096];
    size_t inlen;
    int eof;
    const char *send;
    size_t send_len; /* 0: strlen(send) */
    int no_read;     /* never read what the server sends */
} raw_t;

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    raw_t *r = h->data;
    (void)s;
    *b = uv_buf_init((char *)r->in + r->inlen, (unsigned)(sizeof r->in - r->inlen));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    raw_t *r = s->data;
    (void)b;
    if (n > 0)
        r->inlen += (size_t)n;
    else if (n < 0)
        r->eof = 1;
}

static void raw_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void raw_connected(uv_connect_t *c, int status)
{
    raw_t *r = c->data;
    assert_int_equal(status, 0);
    size_t n = r->send_len ? r->send_len : strlen(r->send);
    uv_buf_t b = uv_buf_init((char *)r->send, (unsigned)n);
    assert_int_equal(uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written), 0);
    if (!r->no_read)
        assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
}

static void raw_closed(uv_handle_t *h)
{
    (void)h;
}

static void test_garbage_peer(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    start_server(&e, 0, NULL);
    raw_t r;
    memset(&r, 0, sizeof r);
    r.send = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    uv_tcp_init(&e.loop, &r.tcp);
    r.tcp.data = &r;
    r.creq.data = &r;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", rpc_server_port(e.srv), &a);
    assert_int_equal(uv_tcp_connect(&r.creq, &r.tcp, (struct sockaddr *)&a, raw_connected), 0);
    run_until(&e, &r.eof);
    /* the server said why before closing */
    rpc_frame_t f;
    size_t used;
    st_buf_t scratch;
    st_buf_init(&scratch);
    assert_int_equal(rpc_frame_decode(r.in, r.inlen, 0, &scratch, &f, &used), 0);
    assert_int_equal(f.type, RPC_ERROR);
    assert_int_equal(f.reqid, 0);
    st_buf_deinit(&scratch);
    uv_close((uv_handle_t *)&r.tcp, raw_closed);
    rpc_server_stats_t st;
    rpc_server_stats(e.srv, &st);
    assert_int_equal(st.bad_frames, 1);
    assert_non_null(strstr(e.srv_log, "frame larger than the limit"));
    assert_int_equal(e.handled, 0);
    env_finish(&e);
}

/* A valid HELLO (as cli_id) followed by the first `sent` bytes of a frame
 * announcing `announced` payload bytes. */
static void hello_then_partial(st_buf_t *b, size_t announced, size_t sent)
{
    Strata__Hello h = STRATA__HELLO__INIT;
    h.protocol_version = RPC_PROTOCOL_VERSION;
    h.cluster_name = (char *)cli_id.cluster_name;
    h.topology_fingerprint = cli_id.topology_fingerprint;
    h.node_id = (char *)cli_id.node_id;
    uint8_t hb[512];
    size_t hn = strata__hello__pack(&h, hb);
    assert_int_equal(rpc_frame_encode(b, RPC_HELLO, 0, hb, hn, 0), 0);
    size_t at = b->len;
    uint8_t *payload = calloc(1, announced);
    assert_int_equal(rpc_frame_encode(b, RPC_WRITE, 7, payload, announced, 0), 0);
    free(payload);
    b->len = at + RPC_FRAME_HDR + sent; /* cut the frame short */
}

static void raw_start(env_t *e, raw_t *r, const st_buf_t *b)
{
    memset(r, 0, sizeof *r);
    r->send = (const char *)b->data;
    r->send_len = b->len;
    uv_tcp_init(&e->loop, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", rpc_server_port(e->srv), &a);
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&a, raw_connected), 0);
}

/* After a valid handshake, a frame that stops half-way is cut after
 * frame_timeout: ERROR ETIMEDOUT, close, counted; the frame announced at
 * 8 MiB costs the receive budget only what arrived. */
static void test_frame_timeout(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    rpc_budget_t *bud;
    assert_int_equal(rpc_budget_create(64u << 20, &bud), 0);
    rpc_server_opts_t so = {.frame_timeout_ms = 200, .budget = bud};
    start_server(&e, 0, &so);
    st_buf_t b;
    st_buf_init(&b);
    hello_then_partial(&b, 8u << 20, 1000);
    raw_t r;
    raw_start(&e, &r, &b);
    uint64_t t0 = uv_now(&e.loop);
    run_until(&e, &r.eof);
    assert_true(uv_now(&e.loop) - t0 >= 200);
    /* HELLO_ACK, then the ERROR saying why */
    rpc_frame_t f;
    size_t used, used2;
    st_buf_t scratch;
    st_buf_init(&scratch);
    assert_int_equal(rpc_frame_decode(r.in, r.inlen, 0, &scratch, &f, &used), 0);
    assert_int_equal(f.type, RPC_HELLO_ACK);
    assert_int_equal(rpc_frame_decode(r.in + used, r.inlen - used, 0, &scratch, &f, &used2), 0);
    assert_int_equal(f.type, RPC_ERROR);
    st_buf_deinit(&scratch);
    uv_close((uv_handle_t *)&r.tcp, raw_closed);
    rpc_server_stats_t st;
    rpc_server_stats(e.srv, &st);
    assert_int_equal(st.closed[RPC_CLOSE_FRAME_TIMEOUT], 1);
    assert_int_equal(e.handled, 0);
    assert_non_null(strstr(e.srv_log, "reason=frame_timeout"));
    close_server(&e);
    assert_int_equal(rpc_budget_used(bud), 0);
    rpc_budget_destroy(bud);
    st_buf_deinit(&b);
    env_finish(&e);
}

/* Several peers each hold part of a large frame: the receive budget is
 * never exceeded; the peers that would pass it are cut (ERROR EBUSY),
 * counted; everything is given back when the connections close. */
static void test_inflight_budget(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    rpc_budget_t *bud;
    assert_int_equal(rpc_budget_create(1u << 20, &bud), 0);
    rpc_server_opts_t so = {.frame_timeout_ms = 60000, .budget = bud};
    start_server(&e, 0, &so);
    enum { NPEER = 6 };
    st_buf_t b;
    st_buf_init(&b);
    hello_then_partial(&b, 4u << 20, 400u << 10);
    raw_t r[NPEER];
    for (int i = 0; i < NPEER; i++)
        raw_start(&e, &r[i], &b);
    rpc_server_stats_t st;
    for (int i = 0; i < 2000; i++) {
        run_for(&e, 5);
        assert_true(rpc_budget_used(bud) <= rpc_budget_max(bud));
        rpc_server_stats(e.srv, &st);
        int eofs = 0;
        for (int k = 0; k < NPEER; k++)
            eofs += r[k].eof;
        if (st.bytes_in >= NPEER * (uint64_t)b.len || eofs >= NPEER - 1)
            break;
    }
    rpc_server_stats(e.srv, &st);
    assert_true(st.closed[RPC_CLOSE_INFLIGHT] >= 1);
    assert_true(st.closed[RPC_CLOSE_INFLIGHT] <= NPEER);
    assert_non_null(strstr(e.srv_log, "reason=inflight"));
    for (int i = 0; i < NPEER; i++)
        uv_close((uv_handle_t *)&r[i].tcp, raw_closed);
    close_server(&e);
    assert_int_equal(rpc_budget_used(bud), 0);
    rpc_budget_destroy(bud);
    st_buf_deinit(&b);
    env_finish(&e);
}

/* A peer that sends requests and never reads the replies: once the
 * replies stop moving for frame_timeout the connection is cut (counted as
 * write_timeout) and its queued replies are freed. */
static void test_write_stall(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    rpc_server_opts_t so = {.frame_timeout_ms = 300};
    start_server(&e, 0, &so); /* MODE_ECHO: every request comes back */
    st_buf_t b;
    st_buf_init(&b);
    hello_then_partial(&b, 0, 0);
    b.len -= RPC_FRAME_HDR; /* keep only the HELLO */
    uint8_t *payload = malloc(1u << 20);
    uint64_t x = 88172645463325252ull; /* incompressible: replies are not LZ4-shrunk */
    for (size_t i = 0; i < (1u << 20); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload[i] = (uint8_t)x;
    }
    for (uint64_t i = 1; i <= 40; i++) /* 40 MiB of echoes: more than socket buffers */
        assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, i, payload, 1u << 20, 0), 0);
    free(payload);
    raw_t r;
    raw_start(&e, &r, &b);
    r.no_read = 1; /* raw_connected reads the flag after connect */
    rpc_server_stats_t st;
    for (int i = 0; i < 2000; i++) {
        run_for(&e, 10);
        rpc_server_stats(e.srv, &st);
        if (st.closed[RPC_CLOSE_WRITE_TIMEOUT] > 0)
            break;
    }
    assert_int_equal(st.closed[RPC_CLOSE_WRITE_TIMEOUT], 1);
    assert_non_null(strstr(e.srv_log, "reason=write_timeout"));
    uv_close((uv_handle_t *)&r.tcp, raw_closed);
    st_buf_deinit(&b);
    env_finish(&e);
}

/* Before the handshake only a HELLO-sized frame is accepted: a large
 * announced frame is refused at its first 4 bytes. */
static void test_big_frame_before_hello(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    start_server(&e, 0, NULL);
    uint8_t hdr[RPC_FRAME_HDR] = {0};
    st_store_u32le(hdr, 60u << 20);
    hdr[4] = RPC_HELLO;
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(st_buf_append(&b, hdr, sizeof hdr), 0);
    raw_t r;
    raw_start(&e, &r, &b);
    run_until(&e, &r.eof);
    uv_close((uv_handle_t *)&r.tcp, raw_closed);
    rpc_server_stats_t st;
    rpc_server_stats(e.srv, &st);
    assert_int_equal(st.closed[RPC_CLOSE_BAD_FRAME], 1);
    assert_non_null(strstr(e.srv_log, "before the handshake"));
    st_buf_deinit(&b);
    env_finish(&e);
}

static void test_heartbeat(void **state)
{
    (void)state;
    env_t e;
    env_init(&e);
    start_server(&e, 0, NULL);
    rpc_client_opts_t co = {.ping_interval_ms = 30};
    start_client(&e, rpc_server_port(e.srv), NULL, &co);
    callctx_t c;
    assert_int_equal(call_text(&e, &c, "hb", 1000), 0);
    run_until(&e, &c.done);
    rpc_server_stats_t before, after;
    rpc_server_stats(e.srv, &before);
    run_for(&e, 300);
    rpc_server_stats(e.srv, &after);
    assert_true(after.bytes_in >= before.bytes_in + 3 * RPC_FRAME_HDR); /* PINGs went out */
    assert_int_equal(after.requests, before.requests); /* never reach the handler */
    assert_int_equal(rpc_client_state(e.cli), RPC_CLIENT_UP);
    assert_int_equal(e.nstates, 1);
    env_finish(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_ok),
        cmocka_unit_test(test_fingerprint_mismatch),
        cmocka_unit_test(test_pipelining_out_of_order),
        cmocka_unit_test(test_large_compressed),
        cmocka_unit_test(test_timeout_and_late_reply),
        cmocka_unit_test(test_queue_then_connect),
        cmocka_unit_test(test_unreachable_deadline),
        cmocka_unit_test(test_server_closed_mid_flight),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_garbage_peer),
        cmocka_unit_test(test_frame_timeout),
        cmocka_unit_test(test_inflight_budget),
        cmocka_unit_test(test_write_stall),
        cmocka_unit_test(test_big_frame_before_hello),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_shared_payload),
        cmocka_unit_test(test_pieces_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
