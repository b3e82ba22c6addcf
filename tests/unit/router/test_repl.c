/* Unit tests for the pure replication rules: common/repl (quorum arithmetic,
 * NodeWrite envelopes), common/readplan (replica choice and failover) and
 * common/sset (folding replicas' answers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "readplan.h"
#include "repl.h"
#include "sset.h"
#include "st_err.h"
#include "strata.pb-c.h"
#include "topo.h"
#include "wire.h"

static void test_required(void **state)
{
    (void)state;
    assert_int_equal(repl_required(TOPO_WRITE_SYNC, 3), 3);
    assert_int_equal(repl_required(TOPO_WRITE_QUORUM, 3), 2);
    assert_int_equal(repl_required(TOPO_WRITE_QUORUM, 4), 3);
    assert_int_equal(repl_required(TOPO_WRITE_QUORUM, 5), 3);
    assert_int_equal(repl_required(TOPO_WRITE_QUORUM, 1), 1);
    assert_int_equal(repl_required(TOPO_WRITE_QUORUM, 2), 2);
    assert_int_equal(repl_required(TOPO_WRITE_ASYNC, 3), 1);
}

static void test_tally(void **state)
{
    (void)state;
    repl_tally_t t;
    /* quorum of 3: decided OK at the second ack, whatever comes later */
    repl_tally_init(&t, TOPO_WRITE_QUORUM, 3);
    assert_int_equal(repl_tally_add(&t, 1), REPL_PENDING);
    assert_int_equal(repl_tally_add(&t, 0), REPL_PENDING);
    assert_int_equal(repl_tally_add(&t, 1), REPL_OK);
    /* quorum of 3: two failures make it impossible */
    repl_tally_init(&t, TOPO_WRITE_QUORUM, 3);
    assert_int_equal(repl_tally_add(&t, 0), REPL_PENDING);
    assert_int_equal(repl_tally_add(&t, 0), REPL_FAILED);
    assert_int_equal(repl_tally_add(&t, 1), REPL_FAILED);
    /* sync: one failure is enough to fail */
    repl_tally_init(&t, TOPO_WRITE_SYNC, 3);
    assert_int_equal(repl_tally_add(&t, 1), REPL_PENDING);
    assert_int_equal(repl_tally_add(&t, 0), REPL_FAILED);
    /* async: the first ack decides, failures of the others do not matter */
    repl_tally_init(&t, TOPO_WRITE_ASYNC, 3);
    assert_int_equal(repl_tally_add(&t, 0), REPL_PENDING);
    assert_int_equal(repl_tally_add(&t, 0), REPL_PENDING);
    assert_int_equal(repl_tally_add(&t, 1), REPL_OK);
    /* more outcomes than replicas are ignored */
    repl_tally_init(&t, TOPO_WRITE_SYNC, 1);
    assert_int_equal(repl_tally_add(&t, 1), REPL_OK);
    assert_int_equal(repl_tally_add(&t, 0), REPL_OK);
    assert_int_equal(t.fails, 0);
}

static void test_consistency_param(void **state)
{
    (void)state;
    assert_int_equal(repl_consistency_param(NULL), 0);
    assert_int_equal(repl_consistency_param(""), 0);
    assert_int_equal(repl_consistency_param("sync"), 1 + TOPO_WRITE_SYNC);
    assert_int_equal(repl_consistency_param("all"), 1 + TOPO_WRITE_SYNC);
    assert_int_equal(repl_consistency_param("quorum"), 1 + TOPO_WRITE_QUORUM);
    assert_int_equal(repl_consistency_param("async"), 1 + TOPO_WRITE_ASYNC);
    assert_int_equal(repl_consistency_param("any"), 1 + TOPO_WRITE_ASYNC);
    assert_int_equal(repl_consistency_param("one"), 1 + TOPO_WRITE_ASYNC);
    assert_int_equal(repl_consistency_param("Quorum"), -1);
}

/* A NodeWrite is scanned into entries that re-assemble, byte for byte, into
 * a forwarded NodeWrite protobuf-c reads the same. */
static void test_scan_and_forward(void **state)
{
    (void)state;
    st_label_t l[2] = {{"__name__", "m", 8, 1}, {"h", "x", 1, 1}};
    int64_t ts[2] = {1000, 2000};
    double v[2] = {1.5, 2.5};
    st_buf_t b;
    st_buf_init(&b);
    for (uint32_t s = 3; s < 6; s++) {
        size_t mark;
        assert_int_equal(wire_begin(&b, 1, &mark), 0);
        assert_int_equal(wire_put_varint_field(&b, 1, s), 0);
        assert_int_equal(wire_put_series(&b, 2, l, 2, ts, v, 2), 0);
        wire_end(&b, mark);
    }
    assert_int_equal(repl_put_envelope(&b, 1 + TOPO_WRITE_SYNC, 0), 0);
    repl_envelope_t env;
    assert_int_equal(repl_scan(b.data, b.len, NULL, 0, &env), 0);
    assert_int_equal(env.n, 3);
    assert_int_equal(env.consistency, 1 + TOPO_WRITE_SYNC);
    assert_false(env.forwarded);
    repl_entry_t e[3];
    assert_int_equal(repl_scan(b.data, b.len, e, 3, &env), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(e[i].shard, 3 + i);
    /* forward entries 0 and 2 */
    st_buf_t f;
    st_buf_init(&f);
    assert_int_equal(repl_put_envelope(&f, 0, 1), 0);
    assert_int_equal(st_buf_append(&f, e[0].field, e[0].field_len), 0);
    assert_int_equal(repl_put_entry(&f, e[2].msg, e[2].msg_len), 0);
    Strata__NodeWrite *nw = strata__node_write__unpack(NULL, f.len, f.data);
    assert_non_null(nw);
    assert_true(nw->forwarded);
    assert_int_equal(nw->consistency, 0);
    assert_int_equal(nw->n_shards, 2);
    assert_int_equal(nw->shards[0]->shard, 3);
    assert_int_equal(nw->shards[1]->shard, 5);
    assert_int_equal(nw->shards[1]->n_series, 1);
    assert_int_equal(nw->shards[1]->series[0]->n_values, 2);
    strata__node_write__free_unpacked(nw, NULL);
    repl_envelope_t fe;
    assert_int_equal(repl_scan(f.data, f.len, NULL, 0, &fe), 0);
    assert_true(fe.forwarded);
    /* truncated input is corrupt, never read past the end */
    for (size_t cut = 1; cut < b.len; cut++) {
        int rc = repl_scan(b.data, cut, NULL, 0, &env);
        assert_true(rc == 0 || rc == ST_ECORRUPT);
    }
    st_buf_deinit(&b);
    st_buf_deinit(&f);
}

/* The coordinator stamps a version into every WriteRequest that has none;
 * protobuf-c reads it; an entry that carries one keeps it. */
static void test_stamp_version(void **state)
{
    (void)state;
    st_label_t l[1] = {{"__name__", "m", 8, 1}};
    int64_t ts = 1000;
    double v = 1.5;
    st_buf_t b, out;
    st_buf_init(&b);
    st_buf_init(&out);
    for (uint32_t s = 0; s < 2; s++) {
        size_t mark;
        assert_int_equal(wire_begin(&b, 1, &mark), 0);
        assert_int_equal(wire_put_varint_field(&b, 1, s), 0);
        assert_int_equal(wire_put_series(&b, 2, l, 1, &ts, &v, 1), 0);
        if (s == 1)
            assert_int_equal(wire_put_varint_field(&b, 4, 77), 0);
        wire_end(&b, mark);
    }
    assert_int_equal(repl_put_envelope(&b, 1 + TOPO_WRITE_QUORUM, 0), 0);
    uint64_t version = (UINT64_C(1765000000000) << 16) | 3;
    assert_int_equal(repl_stamp_version(b.data, b.len, version, &out), 0);
    Strata__NodeWrite *nw = strata__node_write__unpack(NULL, out.len, out.data);
    assert_non_null(nw);
    assert_int_equal(nw->n_shards, 2);
    assert_int_equal(nw->consistency, 1 + TOPO_WRITE_QUORUM);
    assert_true(nw->shards[0]->version == version);
    assert_int_equal(nw->shards[0]->n_series, 1);
    assert_int_equal(nw->shards[1]->version, 77);
    strata__node_write__free_unpacked(nw, NULL);
    repl_entry_t e[2];
    repl_envelope_t env;
    assert_int_equal(repl_scan(out.data, out.len, e, 2, &env), 0);
    assert_true(repl_entry_version(e[0].msg, e[0].msg_len) == version);
    assert_int_equal(repl_entry_version(e[1].msg, e[1].msg_len), 77);
    for (size_t cut = 1; cut < b.len; cut++) { /* truncated: corrupt or a prefix, never past */
        st_buf_reset(&out);
        int rc = repl_stamp_version(b.data, cut, version, &out);
        assert_true(rc == 0 || rc == ST_ECORRUPT);
    }
    st_buf_deinit(&b);
    st_buf_deinit(&out);
}

/* The coordinator's one pass: the forwarded envelope, every entry stamped
 * as repl_stamp_version stamps it, the received envelope read, the
 * entries found in the output (many of them: the list grows). */
static void test_stamp_forward(void **state)
{
    (void)state;
    st_label_t l[1] = {{"__name__", "m", 8, 1}};
    int64_t ts = 1000;
    double v = 1.5;
    st_buf_t b, out, ref;
    st_buf_init(&b);
    st_buf_init(&out);
    st_buf_init(&ref);
    assert_int_equal(repl_put_envelope(&b, 1 + TOPO_WRITE_SYNC, 0), 0);
    const uint32_t N = 100;
    for (uint32_t s = 0; s < N; s++) {
        size_t mark;
        assert_int_equal(wire_begin(&b, 1, &mark), 0);
        assert_int_equal(wire_put_varint_field(&b, 1, s), 0);
        assert_int_equal(wire_put_series(&b, 2, l, 1, &ts, &v, 1), 0);
        if (s % 3 == 1)
            assert_int_equal(wire_put_varint_field(&b, 4, 77), 0);
        wire_end(&b, mark);
    }
    uint64_t version = (UINT64_C(1765000000000) << 16) | 3;
    repl_entry_t *e = NULL;
    repl_envelope_t env;
    assert_int_equal(repl_stamp_forward(b.data, b.len, version, &out, &e, &env), 0);
    assert_non_null(e);
    assert_int_equal(env.n, N);
    assert_int_equal(env.consistency, 1 + TOPO_WRITE_SYNC);
    assert_false(env.forwarded);
    Strata__NodeWrite *nw = strata__node_write__unpack(NULL, out.len, out.data);
    assert_non_null(nw);
    assert_true(nw->forwarded);
    assert_int_equal(nw->consistency, 0);
    assert_int_equal(nw->n_shards, N);
    assert_int_equal(repl_stamp_version(b.data, b.len, version, &ref), 0);
    repl_entry_t r[100];
    repl_envelope_t renv;
    assert_int_equal(repl_scan(ref.data, ref.len, r, N, &renv), 0);
    for (uint32_t s = 0; s < N; s++) {
        assert_int_equal(e[s].shard, s);
        assert_int_equal(nw->shards[s]->shard, s);
        assert_true(nw->shards[s]->version == (s % 3 == 1 ? 77 : version));
        assert_int_equal(nw->shards[s]->n_series, 1);
        /* the same entry bytes as repl_stamp_version's, pointing into out */
        assert_int_equal(e[s].field_len, r[s].field_len);
        assert_memory_equal(e[s].field, r[s].field, r[s].field_len);
        assert_int_equal(e[s].msg_len, r[s].msg_len);
        assert_memory_equal(e[s].msg, r[s].msg, r[s].msg_len);
        assert_true(e[s].field >= out.data && e[s].field + e[s].field_len <= out.data + out.len);
    }
    strata__node_write__free_unpacked(nw, NULL);
    free(e);
    for (size_t cut = 1; cut < b.len; cut += 7) { /* truncated: corrupt or a prefix, never past */
        st_buf_reset(&out);
        e = NULL;
        int rc = repl_stamp_forward(b.data, cut, version, &out, &e, &env);
        assert_true(rc == 0 || rc == ST_ECORRUPT);
        assert_true(rc == 0 || e == NULL);
        free(e);
    }
    st_buf_deinit(&b);
    st_buf_deinit(&out);
    st_buf_deinit(&ref);
}

/* repl_put_forward_refs: the series of the chosen entries by reference
 * (protobuf-c reads it: field ref, no labels), the same labels give the
 * same reference under one seed and another under another seed, a series
 * that came with a reference (a router's) keeps it, samples, versions and
 * deletes as they were. */
static void test_forward_refs(void **state)
{
    (void)state;
    st_label_t la[2] = {{"__name__", "m", 8, 1}, {"host", "a", 4, 1}};
    st_label_t lb[2] = {{"__name__", "m", 8, 1}, {"host", "b", 4, 1}};
    int64_t ts[3] = {1000, 2000, 2500};
    double v[3] = {1.5, -2, 1e300};
    uint8_t given[WIRE_REF_LEN];
    memset(given, 0x7e, sizeof given);
    st_buf_t b, out, lab;
    st_buf_init(&b);
    st_buf_init(&out);
    st_buf_init(&lab);
    assert_int_equal(wire_put_labels(&lab, lb, 2), 0);
    wire_bytes_t lbr = {lab.data, lab.len};
    assert_int_equal(repl_put_envelope(&b, 0, 0), 0);
    for (uint32_t s = 0; s < 4; s++) {
        size_t mark;
        assert_int_equal(wire_begin(&b, 1, &mark), 0);
        assert_int_equal(wire_put_varint_field(&b, 1, s), 0);
        assert_int_equal(wire_put_series(&b, 2, la, 2, ts, v, 3 - s % 3), 0);
        if (s == 3) /* host=b with a router's reference */
            assert_int_equal(wire_put_series_enc_ref(&b, 2, &lbr, 1, given, ts, v, 1), 0);
        else
            assert_int_equal(wire_put_series(&b, 2, lb, 2, ts + s, v + s, 1), 0);
        assert_int_equal(wire_put_varint_field(&b, 4, 77 + s), 0);
        if (s == 2)
            assert_int_equal(wire_put_bytes_field(&b, 3, "", 0), 0); /* an (empty) delete */
        wire_end(&b, mark);
    }
    repl_entry_t e[4];
    repl_envelope_t env;
    assert_int_equal(repl_scan(b.data, b.len, e, 4, &env), 0);
    const size_t idx[3] = {2, 0, 3};
    uint8_t ref_b[WIRE_REF_LEN], seen_a[WIRE_REF_LEN];
    assert_int_equal(repl_put_forward_refs(&out, e, idx, 3, 99), 0);
    Strata__NodeWrite *nw = strata__node_write__unpack(NULL, out.len, out.data);
    assert_non_null(nw);
    assert_true(nw->forwarded);
    assert_int_equal(nw->n_shards, 3);
    for (size_t k = 0; k < 3; k++) {
        Strata__WriteRequest *w = nw->shards[k];
        uint32_t s = (uint32_t)idx[k];
        assert_int_equal(w->shard, s);
        assert_true(w->version == 77 + s);
        assert_true((w->delete_ != NULL) == (s == 2));
        assert_int_equal(w->n_series, 2);
        for (size_t j = 0; j < 2; j++) {
            Strata__SeriesSamples *x = w->series[j];
            assert_int_equal(x->n_labels, 0);
            assert_int_equal(x->ref.len, WIRE_REF_LEN);
            size_t n = j ? 1 : 3 - s % 3;
            assert_int_equal(x->n_timestamps, n);
            assert_int_equal(x->n_values, n);
            assert_true(x->values[0] == v[j ? (s == 3 ? 0 : s) : 0]);
            if (j == 0 && k == 0)
                memcpy(seen_a, x->ref.data, WIRE_REF_LEN);
            else if (j == 0)
                assert_memory_equal(x->ref.data, seen_a, WIRE_REF_LEN);
            if (j == 1 && s == 3) /* the reference it came with */
                assert_memory_equal(x->ref.data, given, WIRE_REF_LEN);
            else if (j == 1)
                memcpy(ref_b, x->ref.data, WIRE_REF_LEN);
        }
    }
    strata__node_write__free_unpacked(nw, NULL);
    assert_memory_not_equal(seen_a, ref_b, WIRE_REF_LEN);
    /* another seed, another reference */
    st_buf_reset(&out);
    assert_int_equal(repl_put_forward_refs(&out, e, NULL, 1, 100), 0);
    nw = strata__node_write__unpack(NULL, out.len, out.data);
    assert_non_null(nw);
    assert_memory_not_equal(nw->shards[0]->series[0]->ref.data, seen_a, WIRE_REF_LEN);
    strata__node_write__free_unpacked(nw, NULL);
    /* a truncated entry: corrupt, never a read past it */
    repl_entry_t cut = e[1];
    cut.msg_len -= 3;
    st_buf_reset(&out);
    assert_int_equal(repl_put_forward_refs(&out, &cut, NULL, 1, 99), ST_ECORRUPT);
    st_buf_deinit(&b);
    st_buf_deinit(&out);
    st_buf_deinit(&lab);
}

static const char *INI3 = "[cluster]\nshards = 6\nreplication_factor = 3\n"
                          "[node \"n1\"]\nrpc = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n"
                          "[node \"n2\"]\nrpc = 127.0.0.1:7002\nhttp = 127.0.0.1:8002\n"
                          "[node \"n3\"]\nrpc = 127.0.0.1:7003\nhttp = 127.0.0.1:8003\n";

static int up_mask(void *arg, uint32_t node)
{
    return (*(unsigned *)arg >> node) & 1;
}

static void check_plan(const readplan_t *p, const topo_t *t, uint32_t need_each)
{
    /* every non-missing shard appears in exactly need_each groups, on
     * distinct replicas of it */
    for (uint32_t s = 0; s < topo_shards(t); s++) {
        uint32_t seen = 0, nodes = 0;
        for (size_t g = 0; g < p->ng; g++)
            for (uint32_t i = 0; i < p->g[g].n; i++)
                if (p->g[g].shards[i] == s) {
                    assert_true(topo_replica_rank(t, s, p->g[g].node) >= 0);
                    assert_false(nodes & (1u << p->g[g].node));
                    nodes |= 1u << p->g[g].node;
                    seen++;
                }
        if (!p->missing[s])
            assert_int_equal(seen, need_each);
    }
}

static void test_readplan(void **state)
{
    (void)state;
    topo_t *t;
    char err[256];
    assert_int_equal(topo_load_string(INI3, NULL, &t, err, sizeof err), 0);
    unsigned up = 7;
    readplan_t p;
    /* one: first replica of each shard, one group per node */
    assert_int_equal(readplan_init(&p, t, 1, up_mask, &up), 0);
    assert_int_equal(p.ng, 3);
    assert_int_equal(p.nmissing, 0);
    check_plan(&p, t, 1);
    for (size_t g = 0; g < p.ng; g++)
        for (uint32_t i = 0; i < p.g[g].n; i++)
            assert_int_equal(topo_shard_replicas(t, p.g[g].shards[i])[0], p.g[g].node);
    /* group 0 fails: its shards go to their second replicas */
    uint32_t failed_node = p.g[0].node;
    up &= ~(1u << failed_node);
    assert_int_equal(readplan_failover(&p, 0, up_mask, &up), 0);
    assert_int_equal(p.nmissing, 0);
    for (size_t g = 3; g < p.ng; g++)
        assert_int_not_equal(p.g[g].node, failed_node);
    readplan_free(&p);

    /* quorum with one node down: two replicas each, none missing */
    up = 7u & ~2u;
    assert_int_equal(readplan_init(&p, t, 2, up_mask, &up), 0);
    assert_int_equal(p.nmissing, 0);
    check_plan(&p, t, 2);
    for (size_t g = 0; g < p.ng; g++)
        assert_int_not_equal(p.g[g].node, 1);
    /* a second node fails mid-read: every shard it answered is missing */
    size_t gi = 0;
    while (p.g[gi].node != 0)
        gi++;
    up = 4;
    assert_int_equal(readplan_failover(&p, gi, up_mask, &up), 0);
    assert_int_equal(p.nmissing, 6);
    char buf[64];
    readplan_missing_str(&p, buf, sizeof buf);
    assert_string_equal(buf, "0,1,2,3,4,5");
    readplan_free(&p);

    /* nothing up: everything missing, no groups */
    up = 0;
    assert_int_equal(readplan_init(&p, t, 1, up_mask, &up), 0);
    assert_int_equal(p.nmissing, 6);
    assert_int_equal(p.ng, 0);
    readplan_free(&p);
    /* need is clamped to RF */
    up = 7;
    assert_int_equal(readplan_init(&p, t, 9, up_mask, &up), 0);
    assert_int_equal(p.need, 3);
    check_plan(&p, t, 3);
    readplan_free(&p);
    topo_destroy(t);
}

static void page(st_buf_t *b, const char *host, const int64_t *ts, const double *v, size_t n)
{
    st_label_t l[2] = {{"__name__", "m", 8, 1}, {"host", host, 4, strlen(host)}};
    assert_int_equal(wire_put_series(b, 1, l, 2, ts, v, n), 0);
}

static void test_sset_merge(void **state)
{
    (void)state;
    sset_t ss;
    sset_init(&ss, 0);
    /* replica A then replica B for the same shard; B misses a sample, has a
     * later one, and disagrees on t=2000 (A, added first, wins) */
    st_buf_t a, b;
    st_buf_init(&a);
    st_buf_init(&b);
    int64_t ta[3] = {1000, 2000, 3000}, tb[3] = {1000, 2000, 4000}, tc[1] = {5};
    double va[3] = {1, 2, 3}, vb[3] = {1, 20, 4}, vc[1] = {7};
    page(&a, "x", ta, va, 3);
    page(&a, "y", tc, vc, 1);
    assert_int_equal(wire_put_varint_field(&a, 2, 1), 0);
    page(&b, "x", tb, vb, 3);
    page(&b, "y", tc, vc, 1);
    assert_int_equal(wire_put_varint_field(&b, 2, 0), 0);
    assert_int_equal(wire_put_varint_field(&b, 3, 2), 0);
    assert_int_equal(wire_put_varint_field(&b, 4, 17), 0);
    int done;
    uint32_t ns = 0;
    uint64_t np = 0;
    assert_int_equal(sset_add_page(&ss, a.data, a.len, &done, &ns, &np), 0);
    assert_true(done);
    assert_int_equal(sset_add_page(&ss, b.data, b.len, &done, &ns, &np), 0);
    assert_false(done);
    assert_int_equal(ns, 2);
    assert_int_equal(np, 17);
    assert_int_equal(ss.n, 4);
    assert_int_equal(sset_merge(&ss), 0);
    assert_int_equal(ss.n, 2);
    assert_string_equal(ss.s[0].labels[1].value, "x");
    assert_int_equal(ss.s[0].n, 4);
    int64_t want_t[4] = {1000, 2000, 3000, 4000};
    double want_v[4] = {1, 2, 3, 4};
    for (int i = 0; i < 4; i++) {
        assert_true(ss.s[0].ts[i] == want_t[i]);
        assert_true(ss.s[0].v[i] == want_v[i]);
    }
    assert_int_equal(ss.s[1].n, 1);
    assert_int_equal(ss.samples, 5);
    sset_free(&ss);
    /* the sample limit */
    sset_init(&ss, 3);
    assert_int_equal(sset_add_page(&ss, a.data, a.len, &done, &ns, &np), ST_ELIMIT);
    sset_free(&ss);
    /* truncated pages fail cleanly */
    for (size_t cut = 1; cut < a.len; cut++) {
        sset_init(&ss, 0);
        int rc = sset_add_page(&ss, a.data, cut, &done, &ns, &np);
        assert_true(rc == 0 || rc < 0);
        sset_free(&ss);
    }
    st_buf_deinit(&a);
    st_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required),          cmocka_unit_test(test_tally),
        cmocka_unit_test(test_consistency_param), cmocka_unit_test(test_scan_and_forward),
        cmocka_unit_test(test_readplan),          cmocka_unit_test(test_sset_merge),
        cmocka_unit_test(test_stamp_version),     cmocka_unit_test(test_stamp_forward),
        cmocka_unit_test(test_forward_refs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
