/* Unit tests for router/fanout, the scatter-gather core of reads, driven
 * without sockets: a fake transport records each request and the test
 * answers it. Covered: plan order, paging, the in-flight bound, held calls,
 * failover (replies of a failed group dropped), missing shards (503 text,
 * partial warning) and the end/idle lifetime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fanout.h"
#include "readplan.h"
#include "st_err.h"
#include "topo.h"

#define MAX_SENT 256

/* shards 0..5, RF 2, on three nodes */
static const char *INI = "[cluster]\nshards = 6\nreplication_factor = 2\n"
                         "[node \"n1\"]\nrpc = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n"
                         "[node \"n2\"]\nrpc = 127.0.0.1:7002\nhttp = 127.0.0.1:8002\n"
                         "[node \"n3\"]\nrpc = 127.0.0.1:7003\nhttp = 127.0.0.1:8003\n";

typedef struct sent {
    fanout_rpc_t *rpc;
    uint32_t node;
    size_t group, item;
    uint32_t cursor_shard;
    uint32_t shards[8];
    uint32_t nshards;
    int answered;
} sent_t;

typedef struct h {
    topo_t *t;
    fanout_t *f;
    unsigned up; /* bitmask of nodes up */
    sent_t sent[MAX_SENT];
    size_t nsent;
    size_t inflight, max_seen;
    int replies, failures, ends, idles;
    fanout_how_t how;
    int end_had_call;
    int send_fails;    /* fail this many sends at once */
    int reply_verdict; /* what the reply callback answers */
    uint32_t pages;    /* pages per item (cursor counts them) */
    fanout_call_t *held;
} h_t;

static int up_fn(void *arg, uint32_t node)
{
    return (((h_t *)arg)->up >> node) & 1;
}

static int fake_send(void *arg, uint32_t node, uint8_t type, const uint8_t *req, size_t len,
                     unsigned timeout_ms, fanout_rpc_t *rpc)
{
    h_t *h = arg;
    (void)type;
    (void)timeout_ms;
    if (h->send_fails) {
        h->send_fails--;
        return ST_EUNAVAIL;
    }
    assert_true(h->nsent < MAX_SENT);
    sent_t *s = &h->sent[h->nsent++];
    memset(s, 0, sizeof *s);
    s->rpc = rpc;
    s->node = node;
    /* the request the build callback wrote: group, item, cursor, shards */
    assert_true(len >= 3 * sizeof(uint64_t));
    uint64_t v[3];
    memcpy(v, req, sizeof v);
    s->group = v[0];
    s->item = v[1];
    s->cursor_shard = (uint32_t)v[2];
    s->nshards = (uint32_t)((len - sizeof v) / sizeof(uint32_t));
    assert_true(s->nshards <= 8);
    memcpy(s->shards, req + sizeof v, s->nshards * sizeof(uint32_t));
    h->inflight++;
    if (h->inflight > h->max_seen)
        h->max_seen = h->inflight;
    return 0;
}

static int cb_build(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                    st_buf_t *out)
{
    (void)ctx;
    *type = 1;
    *timeout_ms = 1000;
    uint64_t v[3] = {c->group, c->item, c->cursor_shard};
    st_buf_append(out, v, sizeof v);
    st_buf_append(out, c->shards, c->nshards * sizeof *c->shards);
    return 0;
}

static int cb_reply(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len)
{
    h_t *h = ctx;
    (void)payload;
    (void)len;
    h->replies++;
    if (h->reply_verdict == FANOUT_HOLD) {
        h->held = c;
        return FANOUT_HOLD;
    }
    if (h->pages && c->cursor_shard + 1 < h->pages) {
        c->cursor_shard++;
        return FANOUT_MORE;
    }
    return h->reply_verdict;
}

static int cb_failed(void *ctx, const fanout_call_t *c, const fanout_failure_t *why)
{
    h_t *h = ctx;
    (void)c;
    (void)why;
    h->failures++;
    return FANOUT_FAILOVER;
}

static void cb_end(void *ctx, fanout_how_t how, const fanout_call_t *c)
{
    h_t *h = ctx;
    assert_int_equal(h->idles, 0);
    h->ends++;
    h->how = how;
    h->end_had_call = c != NULL;
}

static void cb_idle(void *ctx)
{
    h_t *h = ctx;
    assert_int_equal(h->inflight, 0);
    h->idles++;
}

static const fanout_ops_t ops = {cb_build, cb_reply, cb_failed, cb_end, cb_idle};

static void setup_h(h_t *h, unsigned up, uint32_t need, int partial, size_t nitems,
                    size_t max_inflight)
{
    memset(h, 0, sizeof *h);
    char err[256];
    assert_int_equal(topo_load_string(INI, NULL, &h->t, err, sizeof err), 0);
    h->up = up;
    fanout_cfg_t cfg = {.topo = h->t,
                        .need = need,
                        .partial = partial,
                        .nitems = nitems,
                        .max_inflight = max_inflight,
                        .up = up_fn,
                        .up_arg = h,
                        .send = fake_send,
                        .send_arg = h,
                        .ops = &ops,
                        .ctx = h};
    assert_int_equal(fanout_create(&cfg, &h->f), 0);
}

static void teardown_h(h_t *h)
{
    fanout_destroy(h->f);
    topo_destroy(h->t);
}

/* Answer the oldest unanswered request (status 0 = success). */
static sent_t *answer_next(h_t *h, int status)
{
    for (size_t i = 0; i < h->nsent; i++) {
        sent_t *s = &h->sent[i];
        if (s->answered)
            continue;
        s->answered = 1;
        h->inflight--;
        fanout_reply(s->rpc, status, 0, (const uint8_t *)"", 0);
        return s;
    }
    fail_msg("nothing to answer");
    return NULL;
}

static void answer_all(h_t *h)
{
    for (int guard = 0; h->inflight && guard < MAX_SENT; guard++)
        answer_next(h, 0);
}

/* Every shard is asked once per item; groups outer, items inner. */
static void test_plan_order(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 2, 1);
    fanout_start(h.f);
    answer_all(&h);
    assert_int_equal(h.ends, 1);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    assert_int_equal(h.idles, 1);
    assert_int_equal(h.max_seen, 1);
    uint32_t asked[6][2] = {{0}};
    for (size_t i = 0; i < h.nsent; i++) {
        if (i)
            assert_true(h.sent[i].group > h.sent[i - 1].group ||
                        (h.sent[i].group == h.sent[i - 1].group &&
                         h.sent[i].item == h.sent[i - 1].item + 1));
        for (uint32_t k = 0; k < h.sent[i].nshards; k++) {
            uint32_t s = h.sent[i].shards[k];
            asked[s][h.sent[i].item]++;
            /* the first replica answers with read_consistency=one */
            assert_int_equal(h.sent[i].node, topo_shard_replicas(h.t, s)[0]);
        }
    }
    for (int s = 0; s < 6; s++)
        assert_true(asked[s][0] == 1 && asked[s][1] == 1);
    assert_string_equal(fanout_missing(h.f), "");
    char w[64] = "untouched";
    assert_int_equal(fanout_partial_warning(h.f, w, sizeof w), 0);
    assert_int_equal(fanout_failovers(h.f), 0);
    teardown_h(&h);
}

/* A call's next page goes out before anything else. */
static void test_paging(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 1, 1);
    h.pages = 3;
    fanout_start(h.f);
    answer_all(&h);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    assert_true(h.nsent % 3 == 0);
    for (size_t i = 0; i < h.nsent; i++) {
        assert_int_equal(h.sent[i].cursor_shard, i % 3);
        assert_int_equal(h.sent[i].item, 0);
        assert_int_equal(h.sent[i].group, h.sent[i - i % 3].group);
    }
    teardown_h(&h);
}

static void test_inflight_bound(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 2, 0, 3, 2); /* quorum: 2 replicas per shard */
    fanout_start(h.f);
    assert_int_equal(h.nsent, 2);
    answer_all(&h);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    assert_int_equal(h.max_seen, 2);
    assert_int_equal(h.nsent, 3 * 3); /* three node groups, three items */
    teardown_h(&h);
}

/* A held call keeps its slot until resumed. */
static void test_hold(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 1, 1);
    h.reply_verdict = FANOUT_HOLD;
    fanout_start(h.f);
    size_t groups = 0;
    while (h.inflight) {
        answer_next(&h, 0);
        assert_non_null(h.held);
        assert_int_equal(h.inflight, 0); /* nothing else went out meanwhile */
        assert_int_equal(h.ends, 0);
        fanout_call_t *c = h.held;
        h.held = NULL;
        groups++;
        fanout_resume(h.f, c, FANOUT_DONE);
    }
    assert_int_equal(groups, 3);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    assert_int_equal(h.idles, 1);
    teardown_h(&h);
}

/* A failed group's shards go to their next replicas; its late replies are
 * dropped. */
static void test_failover(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 2, 4);
    fanout_start(h.f);
    size_t first = h.nsent;
    assert_true(first >= 2);
    /* the first request fails: group 0 fails over */
    sent_t *s0 = answer_next(&h, ST_ETIMEDOUT);
    size_t g0 = s0->group;
    uint32_t n0 = s0->node;
    assert_int_equal(h.failures, 1);
    assert_true(fanout_group_failed(h.f, g0));
    assert_int_equal(fanout_failovers(h.f), 1);
    int replies_before = h.replies;
    answer_all(&h);
    /* the other item of group 0, if it was in flight, was not delivered */
    int dropped = 0;
    for (size_t i = 1; i < h.nsent; i++)
        dropped += h.sent[i].group == g0;
    assert_int_equal(h.replies - replies_before, (int)(h.nsent - 1 - (size_t)dropped));
    /* every shard of group 0 was asked again, elsewhere, for both items */
    for (uint32_t k = 0; k < s0->nshards; k++) {
        uint32_t s = s0->shards[k];
        int again = 0;
        for (size_t i = first; i < h.nsent; i++)
            for (uint32_t m = 0; m < h.sent[i].nshards; m++)
                if (h.sent[i].shards[m] == s) {
                    assert_true(h.sent[i].node != n0);
                    again++;
                }
        assert_int_equal(again, 2);
    }
    assert_int_equal(h.how, FANOUT_COMPLETE);
    assert_string_equal(fanout_missing(h.f), "");
    teardown_h(&h);
}

/* A send that fails at once is a failure like any other. */
static void test_send_failure(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 1, 1);
    h.send_fails = 1;
    fanout_start(h.f);
    assert_int_equal(h.failures, 1);
    answer_all(&h);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    assert_int_equal(fanout_failovers(h.f), 1);
    teardown_h(&h);
}

static void test_missing_at_start(void **state)
{
    (void)state;
    h_t h;
    /* n1 and n2 down: shards whose replicas are both on them are missing */
    setup_h(&h, 4, 1, 0, 1, 1);
    const char *missing = fanout_missing(h.f);
    assert_true(missing[0] != '\0');
    fanout_start(h.f);
    assert_int_equal(h.nsent, 0);
    assert_int_equal(h.how, FANOUT_UNAVAILABLE);
    assert_int_equal(h.end_had_call, 0);
    assert_int_equal(h.idles, 1);
    char msg[400], want[400];
    fanout_unavailable_msg(h.f, msg, sizeof msg);
    snprintf(want, sizeof want,
             "no replica answered for shard(s) %s (read_consistency=one); retry, or pass "
             "partial_response=1 to accept a partial result",
             missing);
    assert_string_equal(msg, want);
    teardown_h(&h);

    /* partial results allowed: the rest is read, the warning names them */
    setup_h(&h, 4, 1, 1, 1, 1);
    fanout_start(h.f);
    answer_all(&h);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    char w[300];
    size_t n = fanout_partial_warning(h.f, w, sizeof w);
    snprintf(want, sizeof want, "partial response: no replica answered for shard(s) %s",
             fanout_missing(h.f));
    assert_int_equal(n, strlen(want));
    assert_string_equal(w, want);
    teardown_h(&h);
}

/* RF 2 with one node down: a failover that finds no replica left is
 * UNAVAILABLE (with the call), unless partial results are allowed. */
static void test_missing_after_failover(void **state)
{
    (void)state;
    for (int partial = 0; partial < 2; partial++) {
        h_t h;
        setup_h(&h, 3, 1, partial, 1, 1); /* n3 down */
        fanout_start(h.f);
        /* groups are on n1 and n2; failing one leaves the shards it shares
         * with n3 without a replica */
        h.up = 1; /* n2 goes down too */
        sent_t *s = answer_next(&h, ST_ECLOSED);
        (void)s;
        if (!partial) {
            assert_int_equal(h.how, FANOUT_UNAVAILABLE);
            assert_int_equal(h.end_had_call, 1);
            assert_int_equal(h.ends, 1);
            assert_int_equal(h.idles, 1);
        } else {
            answer_all(&h);
            assert_int_equal(h.how, FANOUT_COMPLETE);
            assert_true(fanout_missing(h.f)[0] != '\0');
        }
        teardown_h(&h);
    }
}

/* The partial warning names only the shards no replica answered for; a
 * quorum read answered by too few (but some) replicas is named apart, and a
 * failover that completes a shard leaves it out (issue 12). */
static void shard_list(const topo_t *t, int with_n1, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t s = 0; s < topo_shards(t); s++)
        if ((topo_replica_rank(t, s, 0) >= 0) == with_n1)
            off += (size_t)snprintf(buf + off, cap - off, "%s%u", off ? "," : "", s);
}

static void test_partial_warning_truth(void **state)
{
    (void)state;
    h_t h;
    char w[FANOUT_WARNING_MAX], want[FANOUT_WARNING_MAX], on1[64], off1[64];
    /* quorum (need 2 of RF 2), only n1 up */
    setup_h(&h, 1, 2, 1, 1, 1);
    shard_list(h.t, 1, on1, sizeof on1);
    shard_list(h.t, 0, off1, sizeof off1);
    fanout_start(h.f);
    answer_all(&h);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    snprintf(want, sizeof want,
             "partial response: no replica answered for shard(s) %s; partial response: fewer "
             "than 2 replicas (read_consistency=quorum) answered for shard(s) %s",
             off1, on1);
    assert_int_equal(fanout_partial_warning(h.f, w, sizeof w), strlen(want));
    assert_string_equal(w, want);
    teardown_h(&h);

    /* quorum, n1 and n2 up: the shards on both are complete, the rest short */
    setup_h(&h, 3, 2, 1, 1, 1);
    fanout_start(h.f);
    answer_all(&h);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    size_t n = fanout_partial_warning(h.f, w, sizeof w);
    assert_true(n > 0);
    assert_int_equal(n, strlen(w));
    assert_non_null(strstr(w, "fewer than 2 replicas"));
    assert_null(strstr(w, "no replica answered"));
    teardown_h(&h);

    /* one, every node up, a group fails and its shards fail over: complete,
     * no warning */
    setup_h(&h, 7, 1, 1, 1, 1);
    fanout_start(h.f);
    answer_next(&h, ST_ECLOSED);
    answer_all(&h);
    assert_int_equal(h.how, FANOUT_COMPLETE);
    assert_int_equal(fanout_failovers(h.f), 1);
    strcpy(w, "untouched");
    assert_int_equal(fanout_partial_warning(h.f, w, sizeof w), 0);
    assert_string_equal(w, "untouched");
    teardown_h(&h);
}

/* A stop drops replies still to come; idle waits for them. */
static void test_stop(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 2, 4);
    fanout_start(h.f);
    assert_true(h.inflight > 1);
    fanout_stop(h.f);
    assert_int_equal(h.idles, 0);
    int replies = h.replies;
    size_t nsent = h.nsent;
    answer_all(&h);
    assert_int_equal(h.replies, replies);
    assert_int_equal(h.nsent, nsent);
    assert_int_equal(h.ends, 0);
    assert_int_equal(h.idles, 1);
    teardown_h(&h);
}

/* The nodes that still owe an answer: the ones a stop must cancel. */
static void test_busy_nodes(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 2, 4);
    uint32_t nodes[3];
    assert_int_equal(fanout_busy_nodes(h.f, nodes, 3), 0);
    fanout_start(h.f);
    assert_int_equal(h.inflight, 4);
    /* what each node was sent and has not answered */
    unsigned want = 0;
    for (size_t i = 0; i < h.nsent; i++)
        want |= 1u << h.sent[i].node;
    size_t n = fanout_busy_nodes(h.f, nodes, 3);
    unsigned got = 0;
    for (size_t i = 0; i < n; i++)
        got |= 1u << nodes[i];
    assert_int_equal(got, want);
    assert_int_equal(fanout_busy_nodes(h.f, nodes, 1), 1); /* cap */
    fanout_stop(h.f);
    /* answer one node's calls: it is busy no more, the others still are */
    uint32_t first = h.sent[0].node;
    for (size_t i = 0; i < h.nsent; i++)
        if (h.sent[i].node == first && !h.sent[i].answered) {
            h.sent[i].answered = 1;
            h.inflight--;
            fanout_reply(h.sent[i].rpc, 0, 0, (const uint8_t *)"", 0);
        }
    n = fanout_busy_nodes(h.f, nodes, 3);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(nodes[i], first);
    assert_int_equal(n, (size_t)__builtin_popcount(want & ~(1u << first)));
    answer_all(&h);
    assert_int_equal(fanout_busy_nodes(h.f, nodes, 3), 0);
    assert_int_equal(h.idles, 1);
    teardown_h(&h);
}

/* A call's share of the deadline: half when a replica could take over. */
static void test_try_ms(void **state)
{
    (void)state;
    assert_int_equal(fanout_try_ms(3000, 1, 3, 500), 1500);
    assert_int_equal(fanout_try_ms(1500, 1, 3, 500), 750);
    assert_int_equal(fanout_try_ms(800, 1, 3, 500), 500);
    assert_int_equal(fanout_try_ms(400, 1, 3, 500), 400);
    assert_int_equal(fanout_try_ms(3000, 1, 1, 500), 3000); /* RF 1: no failover */
    assert_int_equal(fanout_try_ms(3000, 2, 2, 500), 3000); /* quorum over every replica */
    assert_int_equal(fanout_try_ms(3000, 2, 3, 500), 1500);
    assert_int_equal(fanout_try_ms(0, 1, 3, 500), 0);
    assert_int_equal(fanout_try_ms(-5, 1, 1, 500), 0);
}

static void test_group_msg(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 7, 1, 0, 1, 1);
    fanout_start(h.f);
    sent_t *s = answer_next(&h, 0);
    char want[300], got[300];
    int off = snprintf(want, sizeof want, "no replica answered for shard(s) ");
    for (uint32_t k = 0; k < s->nshards; k++)
        off += snprintf(want + off, sizeof want - (size_t)off, "%s%u", k ? "," : "", s->shards[k]);
    snprintf(want + off, sizeof want - (size_t)off, " (node %s: boom)", topo_node_id(h.t, s->node));
    fanout_group_msg(h.f, s->group, "boom", got, sizeof got);
    assert_string_equal(got, want);
    answer_all(&h);
    teardown_h(&h);
}

/* up() levels for the read plan: node 0 is up but not preferred. */
static int up_pref_fn(void *arg, uint32_t node)
{
    (void)arg;
    return node == 0 ? 1 : READPLAN_PREFERRED;
}

/* A replica that is up but not preferred (degraded, behind) is asked last:
 * with read_consistency=one the next replica answers for its shards; a
 * quorum read still uses it when it must; plain 0/1 up functions keep
 * placement order. */
static void test_plan_prefers_healthy(void **state)
{
    (void)state;
    topo_t *t;
    char err[256];
    assert_int_equal(topo_load_string(INI, NULL, &t, err, sizeof err), 0);
    readplan_t p;
    assert_int_equal(readplan_init(&p, t, 1, up_pref_fn, NULL), 0);
    for (size_t g = 0; g < p.ng; g++)
        assert_int_not_equal(p.g[g].node, 0);
    assert_int_equal(p.nmissing, 0);
    readplan_free(&p);
    assert_int_equal(readplan_init(&p, t, 2, up_pref_fn, NULL), 0);
    uint32_t on0 = 0;
    for (size_t g = 0; g < p.ng; g++)
        if (p.g[g].node == 0)
            on0 += p.g[g].n;
    assert_int_equal(on0, 4); /* every shard placed on n1 (RF 2 of 6 shards on 3 nodes) */
    assert_int_equal(p.nmissing, 0);
    readplan_free(&p);
    h_t h = {.up = 7};
    assert_int_equal(readplan_init(&p, t, 1, up_fn, &h), 0);
    for (size_t g = 0; g < p.ng; g++)
        for (uint32_t k = 0; k < p.g[g].n; k++)
            assert_int_equal(p.g[g].node, topo_shard_replicas(t, p.g[g].shards[k])[0]);
    readplan_free(&p);
    topo_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_order),
        cmocka_unit_test(test_paging),
        cmocka_unit_test(test_inflight_bound),
        cmocka_unit_test(test_hold),
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_send_failure),
        cmocka_unit_test(test_missing_at_start),
        cmocka_unit_test(test_missing_after_failover),
        cmocka_unit_test(test_partial_warning_truth),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_busy_nodes),
        cmocka_unit_test(test_try_ms),
        cmocka_unit_test(test_group_msg),
        cmocka_unit_test(test_plan_prefers_healthy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
