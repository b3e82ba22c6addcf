/* test_topo — cluster.ini parsing, validation, placement, fingerprint, sharding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "st_err.h"
#include "st_labels.h"
#include "topo.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static topo_t *load_ok(const char *text)
{
    char err[512] = "";
    topo_t *t = NULL;
    int rc = topo_load_string(text, "t.ini", &t, err, sizeof err);
    if (rc != 0 || !t)
        fail_msg("expected the config to load, got %d: %s\n--- config ---\n%s", rc, err, text);
    return t;
}

/* The load must fail with ST_ECONFIG and a one-line message "<prefix><...needle...>". */
static void expect_err_at(const char *text, const char *prefix, const char *needle, int where)
{
    char err[512] = "";
    topo_t *t = (topo_t *)0x1;
    int rc = topo_load_string(text, "t.ini", &t, err, sizeof err);
    if (rc != ST_ECONFIG || t != NULL)
        fail_msg("case at test line %d: expected ST_ECONFIG, got %d (err '%s')", where, rc, err);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, needle))
        fail_msg("case at test line %d: expected '%s...%s', got '%s'", where, prefix, needle, err);
    if (strchr(err, '\n'))
        fail_msg("case at test line %d: message is not one line: '%s'", where, err);
}
#define expect_err(text, prefix, needle) expect_err_at(text, prefix, needle, __LINE__)

static uint64_t fp_of(const char *text)
{
    topo_t *t = load_ok(text);
    uint64_t fp = topo_fingerprint(t);
    topo_destroy(t);
    return fp;
}

/* Lines 1-3. */
#define CLUSTER12_RF2 "[cluster]\nshards = 12\nreplication_factor = 2\n"
/* 6 lines: two nodes. */
#define NODES2                                                                                     \
    "[node \"n1\"]\nrpc = 127.0.0.1:7401\nhttp = 127.0.0.1:7402\n"                                 \
    "[node \"n2\"]\nrpc = 127.0.0.1:7411\nhttp = 127.0.0.1:7412\n"
#define NODE3 "[node \"n3\"]\nrpc = 127.0.0.1:7421\nhttp = 127.0.0.1:7422\n"

/* The documented example cluster.ini, plus two more nodes so RF 3 is valid. */
static const char design_example[] =
    "[cluster]\n"
    "name               = demo\n"
    "shards             = 12            ; fixed for the life of the cluster\n"
    "replication_factor = 3\n"
    "write_consistency  = quorum        ; sync | quorum | async\n"
    "read_consistency   = one           ; one | quorum\n"
    "sharding           = series        ; series | metric\n"
    "\n"
    "[storage]\n"
    "wal_durability       = periodic    ; every_write | periodic | os_default | none\n"
    "wal_sync_interval_ms = 100\n"
    "partition            = 1d          ; time partition length\n"
    "retention            = 30d         ; 0 = forever\n"
    "memtable_max_mb      = 64\n"
    "memtable_max_age     = 60s\n"
    "\n"
    "[router]\n"
    "max_body_bytes   = 33554432\n"
    "request_timeout  = 30s\n"
    "\n"
    "[node \"n1\"]\n"
    "rpc  = 127.0.0.1:7401             ; host may be a DNS name, re-resolved on reconnect\n"
    "http = 127.0.0.1:7402\n"
    "; optional explicit placement; default: shard s -> nodes (s+k) mod N, k < RF\n"
    "; shards         = 0-3\n"
    "; replica_shards = 4-11\n"
    "\n"
    "[node \"n2\"]\n"
    "rpc  = 127.0.0.1:7411\n"
    "http = 127.0.0.1:7412\n"
    "\n"
    "[node \"n3\"]\n"
    "rpc  = 127.0.0.1:7421\n"
    "http = 127.0.0.1:7422\n";

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */

static void test_design_example(void **state)
{
    (void)state;
    topo_t *t = load_ok(design_example);
    assert_string_equal(topo_cluster_name(t), "demo");
    assert_int_equal(topo_shards(t), 12);
    assert_int_equal(topo_replication_factor(t), 3);
    assert_int_equal(topo_write_consistency(t), TOPO_WRITE_QUORUM);
    assert_int_equal(topo_read_consistency(t), TOPO_READ_ONE);
    assert_int_equal(topo_sharding(t), TOPO_SHARDING_SERIES);
    const topo_storage_t *s = topo_storage(t);
    assert_int_equal(s->wal_durability, TOPO_WAL_PERIODIC);
    assert_int_equal(s->wal_sync_interval_ms, 100);
    assert_int_equal(s->partition_ms, 86400000);
    assert_int_equal(s->retention_ms, 30LL * 86400000);
    assert_int_equal(s->memtable_max_bytes, 64u << 20);
    assert_int_equal(s->memtable_max_age_ms, 60000);
    assert_int_equal(topo_router(t)->max_body_bytes, 33554432);
    assert_int_equal(topo_router(t)->request_timeout_ms, 30000);
    assert_int_equal(topo_node_count(t), 3);
    assert_string_equal(topo_node_id(t, 0), "n1");
    assert_string_equal(topo_node_id(t, 2), "n3");
    assert_string_equal(topo_node_rpc(t, 0)->addr, "127.0.0.1:7401");
    assert_string_equal(topo_node_rpc(t, 0)->host, "127.0.0.1");
    assert_int_equal(topo_node_rpc(t, 0)->port, 7401);
    assert_string_equal(topo_node_http(t, 1)->addr, "127.0.0.1:7412");
    assert_int_equal(topo_node_http(t, 1)->port, 7412);
    assert_int_equal(topo_node_index(t, "n2"), 1);
    assert_int_equal(topo_node_index(t, "n4"), ST_ENOENT);
    assert_int_equal(topo_placement_explicit(t), 0);
    assert_string_equal(topo_write_consistency_name(topo_write_consistency(t)), "quorum");
    assert_string_equal(topo_wal_durability_name(s->wal_durability), "periodic");
    topo_destroy(t);
}

static void test_defaults(void **state)
{
    (void)state;
    topo_t *t = load_ok("[cluster]\nshards = 4\nreplication_factor = 1\n"
                        "[node \"a\"]\nrpc = a.example:1\nhttp = a.example:2\n");
    assert_string_equal(topo_cluster_name(t), "strata");
    assert_int_equal(topo_write_consistency(t), TOPO_WRITE_QUORUM);
    assert_int_equal(topo_read_consistency(t), TOPO_READ_ONE);
    assert_int_equal(topo_sharding(t), TOPO_SHARDING_SERIES);
    const topo_storage_t *s = topo_storage(t);
    assert_int_equal(s->wal_durability, TOPO_WAL_PERIODIC);
    assert_int_equal(s->wal_sync_interval_ms, 100);
    assert_int_equal(s->partition_ms, 86400000);
    assert_int_equal(s->retention_ms, 30LL * 86400000);
    assert_int_equal(s->memtable_max_bytes, 64u << 20);
    assert_int_equal(s->memtable_max_age_ms, 60000);
    assert_int_equal(topo_router(t)->max_body_bytes, 33554432);
    assert_int_equal(topo_router(t)->request_timeout_ms, 30000);
    assert_string_equal(topo_node_rpc(t, 0)->host, "a.example");
    const topo_replication_t *r = topo_replication(t);
    assert_int_equal(r->hint_max_bytes, 1u << 30);
    assert_int_equal(r->hint_max_age_ms, 24LL * 3600000);
    assert_int_equal(r->replica_timeout_ms, 5000);
    assert_int_equal(r->heartbeat_interval_ms, 1000);
    topo_destroy(t);
}

static void test_replication_section(void **state)
{
    (void)state;
    topo_t *t =
        load_ok(CLUSTER12_RF2 "[replication]\nhint_max_bytes = 64MiB\nhint_max_age = 2h\n"
                              "replica_timeout = 750ms\nheartbeat_interval = 200ms\n" NODES2);
    const topo_replication_t *r = topo_replication(t);
    assert_int_equal(r->hint_max_bytes, 64u << 20);
    assert_int_equal(r->hint_max_age_ms, 2 * 3600000);
    assert_int_equal(r->replica_timeout_ms, 750);
    assert_int_equal(r->heartbeat_interval_ms, 200);
    uint64_t fp = topo_fingerprint(t);
    topo_destroy(t);
    /* per host: not part of the fingerprint */
    t = load_ok(CLUSTER12_RF2 NODES2);
    assert_true(topo_fingerprint(t) == fp);
    topo_destroy(t);
    expect_err(CLUSTER12_RF2 "[replication]\nhint_max_bytes = 1KiB\n",
               "t.ini:5: ", "hint_max_bytes");
    expect_err(CLUSTER12_RF2 "[replication]\nreplica_timeout = 0s\n",
               "t.ini:5: ", "replica_timeout");
    expect_err(CLUSTER12_RF2 "[replication]\nhints = 1\n", "t.ini:5: ", "unknown key");
}

static void test_security_section(void **state)
{
    (void)state;
    topo_t *t = load_ok(CLUSTER12_RF2 NODES2);
    const topo_security_t *sec = topo_security(t);
    assert_null(sec->tls_cert);
    assert_int_equal(sec->rpc_tls, 0);
    topo_destroy(t);
    t = load_ok(CLUSTER12_RF2
                "[security]\ntls_cert = /etc/s/tls.crt\ntls_key = /etc/s/tls.key\n"
                "tls_client_ca = /etc/s/ca.crt\nrpc_tls = on\nrpc_ca = /etc/s/ca.crt\n"
                "rpc_cert = /etc/s/{id}.crt\nrpc_key = /etc/s/{id}.key\n" NODES2);
    sec = topo_security(t);
    assert_string_equal(sec->tls_cert, "/etc/s/tls.crt");
    assert_string_equal(sec->tls_key, "/etc/s/tls.key");
    assert_string_equal(sec->tls_client_ca, "/etc/s/ca.crt");
    assert_int_equal(sec->rpc_tls, 1);
    char path[64];
    assert_int_equal(topo_security_path(sec->rpc_cert, "n2", path, sizeof path), 0);
    assert_string_equal(path, "/etc/s/n2.crt");
    assert_int_equal(topo_security_path(sec->rpc_ca, "n2", path, sizeof path), 0);
    assert_string_equal(path, "/etc/s/ca.crt");
    assert_int_equal(topo_security_path(sec->rpc_cert, "n2", path, 8), ST_ELIMIT);
    topo_destroy(t);
    /* rpc_tls is in the fingerprint when on; TLS on listeners and off are not */
    uint64_t plain = fp_of(CLUSTER12_RF2 NODES2);
    assert_true(fp_of(CLUSTER12_RF2 "[security]\nrpc_tls = off\n" NODES2) == plain);
    assert_true(fp_of(CLUSTER12_RF2 "[security]\ntls_cert = a\ntls_key = b\n" NODES2) == plain);
    assert_true(fp_of(CLUSTER12_RF2 "[security]\nrpc_tls = on\nrpc_ca = c\nrpc_cert = d\n"
                                    "rpc_key = e\n" NODES2) != plain);
    expect_err(CLUSTER12_RF2 "[security]\ntls_cert = a\n" NODES2,
               "t.ini:5: ", "tls_cert and tls_key go together");
    expect_err(CLUSTER12_RF2 "[security]\nrpc_tls = on\nrpc_ca = c\n" NODES2,
               "t.ini:5: ", "rpc_tls = on needs rpc_ca, rpc_cert and rpc_key (missing rpc_cert)");
    expect_err(CLUSTER12_RF2 "[security]\nrpc_ca = c\n" NODES2,
               "t.ini:5: ", "rpc_ca is set but rpc_tls is off");
    expect_err(CLUSTER12_RF2 "[security]\nrpc_tls = yes\n" NODES2,
               "t.ini:5: ", "expected one of off | on");
    expect_err(CLUSTER12_RF2 "[security]\ntls_client_ca = c\n" NODES2,
               "t.ini:5: ", "tls_client_ca needs tls_cert");
    /* a router's RPC certificate names "router": no node may claim that id */
    expect_err(CLUSTER12_RF2 "[security]\nrpc_tls = on\nrpc_ca = c\nrpc_cert = d\nrpc_key = e\n"
                             "[node \"router\"]\nrpc = 127.0.0.1:7401\nhttp = 127.0.0.1:7402\n"
                             "[node \"n2\"]\nrpc = 127.0.0.1:7411\nhttp = 127.0.0.1:7412\n",
               "t.ini:5: ", "reserves the node id 'router'");
    topo_destroy(load_ok(CLUSTER12_RF2
                         "[node \"router\"]\nrpc = 127.0.0.1:7401\n"
                         "http = 127.0.0.1:7402\n"
                         "[node \"n2\"]\nrpc = 127.0.0.1:7411\nhttp = 127.0.0.1:7412\n"));
}

static void test_enums_and_names(void **state)
{
    (void)state;
    topo_t *t = load_ok("[cluster]\nname = prod-eu_1.x\nshards = 1\nreplication_factor = 1\n"
                        "write_consistency = async\nread_consistency = quorum\n"
                        "sharding = metric\n[storage]\nwal_durability = every_write\n"
                        "[node \"a\"]\nrpc = a:1\nhttp = a:2\n");
    assert_string_equal(topo_cluster_name(t), "prod-eu_1.x");
    assert_int_equal(topo_write_consistency(t), TOPO_WRITE_ASYNC);
    assert_int_equal(topo_read_consistency(t), TOPO_READ_QUORUM);
    assert_int_equal(topo_sharding(t), TOPO_SHARDING_METRIC);
    assert_int_equal(topo_storage(t)->wal_durability, TOPO_WAL_EVERY_WRITE);
    topo_destroy(t);
    t = load_ok("[cluster]\nshards = 1\nreplication_factor = 1\nwrite_consistency = sync\n"
                "[storage]\nwal_durability = none\n[node \"a\"]\nrpc = a:1\nhttp = a:2\n");
    assert_int_equal(topo_write_consistency(t), TOPO_WRITE_SYNC);
    assert_int_equal(topo_storage(t)->wal_durability, TOPO_WAL_NONE);
    topo_destroy(t);
    t = load_ok("[cluster]\nshards = 1\nreplication_factor = 1\n"
                "[storage]\nwal_durability = os_default\n[node \"a\"]\nrpc = a:1\nhttp = a:2\n");
    assert_int_equal(topo_storage(t)->wal_durability, TOPO_WAL_OS_DEFAULT);
    topo_destroy(t);
}

static void test_inline_comment_rules(void **state)
{
    (void)state;
    topo_t *t = load_ok("\xef\xbb\xbf; a comment line\r\n"
                        "# another comment line\r\n"
                        "[cluster]   ; comment after a header\r\n"
                        "  name = c1 # hash comment after a value\r\n"
                        "\tshards = 8\t; tab before the comment\r\n"
                        "replication_factor=1 ;x\r\n"
                        "    ; indented comment\r\n"
                        "[node \"a\"] # header comment\n"
                        "   rpc = a:1 ; indented key\n"
                        "   http = a:2");
    assert_string_equal(topo_cluster_name(t), "c1");
    assert_int_equal(topo_shards(t), 8);
    assert_int_equal(topo_replication_factor(t), 1);
    assert_string_equal(topo_node_rpc(t, 0)->addr, "a:1");
    assert_string_equal(topo_node_http(t, 0)->addr, "a:2"); /* last line without '\n' */
    topo_destroy(t);
    /* a ';' or '#' glued to the value is part of it (and so a bad value here) */
    expect_err("[cluster]\nshards = 8;x\n", "t.ini:2: ", "bad value '8;x' for shards");
    expect_err("[cluster]\nname = a#b\n", "t.ini:2: ", "bad value 'a#b' for name");
    /* a long comment does not count against the line limit */
    char buf[2048];
    snprintf(buf, sizeof buf,
             "[cluster] ; %0500d\nshards = 1\nreplication_factor = 1\n"
             "[node \"a\"]\nrpc = a:1\nhttp = a:2\n",
             0);
    topo_destroy(load_ok(buf));
}

/* ------------------------------------------------------------------------ */
/* Durations and sizes                                                       */

static int64_t storage_val(const char *key, const char *value, int which)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "[cluster]\nshards = 1\nreplication_factor = 1\n[%s]\n%s = %s\n"
             "[node \"a\"]\nrpc = a:1\nhttp = a:2\n",
             strcmp(key, "max_body_bytes") == 0 || strcmp(key, "request_timeout") == 0 ? "router"
                                                                                       : "storage",
             key, value);
    topo_t *t = load_ok(buf);
    const topo_storage_t *s = topo_storage(t);
    int64_t v = 0;
    switch (which) {
    case 0:
        v = s->wal_sync_interval_ms;
        break;
    case 1:
        v = s->partition_ms;
        break;
    case 2:
        v = s->retention_ms;
        break;
    case 3:
        v = (int64_t)s->memtable_max_bytes;
        break;
    case 4:
        v = s->memtable_max_age_ms;
        break;
    case 5:
        v = (int64_t)topo_router(t)->max_body_bytes;
        break;
    case 6:
        v = topo_router(t)->request_timeout_ms;
        break;
    }
    topo_destroy(t);
    return v;
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value;
        int which;
        int64_t ms;
    } ok[] = {
        {"wal_sync_interval_ms", "250", 0, 250}, /* plain number: milliseconds */
        {"wal_sync_interval_ms", "1s", 0, 1000},
        {"wal_sync_interval_ms", "100ms", 0, 100},
        {"partition", "2h", 1, 7200000},
        {"partition", "1w", 1, 604800000},
        {"partition", "5m", 1, 300000},
        {"partition", "86400", 1, 86400000}, /* plain number: seconds */
        {"retention", "0", 2, 0},            /* forever */
        {"retention", "90d", 2, 90LL * 86400000},
        {"retention", "1h30m", 2, 5400000},
        {"memtable_max_age", "100ms", 4, 100},
        {"memtable_max_age", "60", 4, 60000},
        {"request_timeout", "5", 6, 5000},
        {"request_timeout", "1m30s", 6, 90000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = storage_val(ok[i].key, ok[i].value, ok[i].which);
        if (v != ok[i].ms)
            fail_msg("%s = %s: got %lld ms, want %lld", ok[i].key, ok[i].value, (long long)v,
                     (long long)ok[i].ms);
    }
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"partition", "5x"},
        {"partition", "1.5h"},
        {"partition", "-1d"},
        {"partition", "10 s"},
        {"partition", "d"},
        {"partition", "1d2"},
        {"partition", "30s"},                   /* below the 1m minimum */
        {"partition", "367d"},                  /* above the maximum */
        {"retention", "99999999999999999999d"}, /* overflow */
        {"retention", "999999999999w"},
        {"request_timeout", "2h"},
        {"wal_sync_interval_ms", "0"},
        {"memtable_max_age", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[512], want[256];
        snprintf(buf, sizeof buf,
                 "[cluster]\nshards = 1\nreplication_factor = 1\n[%s]\n\n%s = %s\n",
                 strcmp(bad[i].key, "request_timeout") == 0 ? "router" : "storage", bad[i].key,
                 bad[i].value);
        snprintf(want, sizeof want, "bad value '%s' for %s: expected a duration", bad[i].value,
                 bad[i].key);
        expect_err(buf, "t.ini:6: ", want);
    }
    /* the message says the range and the plain-number unit */
    expect_err("[storage]\npartition = 30s\n", "t.ini:2: ",
               "expected a duration from 1m to 366d such as 100ms, 60s, 5m, 2h, 1d, 1w (a plain "
               "number is in seconds)");
    expect_err("[storage]\nwal_sync_interval_ms = 2h\n", "t.ini:2: ", "is in milliseconds");
}

static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(storage_val("memtable_max_mb", "128", 3), 128LL << 20); /* plain: MiB */
    assert_int_equal(storage_val("memtable_max_mb", "512KiB", 3), 512LL << 10);
    assert_int_equal(storage_val("memtable_max_mb", "1GiB", 3), 1LL << 30);
    assert_int_equal(storage_val("memtable_max_mb", "1 GiB", 3), 1LL << 30);
    assert_int_equal(storage_val("max_body_bytes", "4096", 5), 4096); /* plain: bytes */
    assert_int_equal(storage_val("max_body_bytes", "32MiB", 5), 33554432);
    assert_int_equal(storage_val("max_body_bytes", "1048576B", 5), 1048576);
    expect_err("[storage]\nmemtable_max_mb = 64MB\n", "t.ini:2: ",
               "bad value '64MB' for memtable_max_mb: expected a size from 64KiB to 64GiB");
    expect_err("[storage]\nmemtable_max_mb = 0\n",
               "t.ini:2: ", "bad value '0' for memtable_max_mb");
    expect_err("[storage]\nmemtable_max_mb = 99999999999999999999\n",
               "t.ini:2: ", "bad value '99999999999999999999' for memtable_max_mb");
    expect_err("[router]\nmax_body_bytes = 1000\n", "t.ini:2: ",
               "bad value '1000' for max_body_bytes: expected a size from 1KiB to 4GiB");
    expect_err("[router]\nmax_body_bytes = 5GiB\n", "t.ini:2: ", "for max_body_bytes");
    expect_err("[router]\nmax_body_bytes = -1\n", "t.ini:2: ", "for max_body_bytes");
}

/* ------------------------------------------------------------------------ */
/* Validation errors, each with its line                                     */

static void test_err_sections(void **state)
{
    (void)state;
    expect_err(CLUSTER12_RF2 "[clusterx]\n", "t.ini:4: ",
               "unknown section [clusterx] (expected [cluster], [storage], [router], "
               "[replication], [security], [downsampling], [retention] or [node");
    expect_err(CLUSTER12_RF2 "\n[Cluster]\nshards = 1\n", "t.ini:5: ", "unknown section [Cluster]");
    expect_err(CLUSTER12_RF2 "[node n1]\n", "t.ini:4: ", "expected [node \"ID\"] with a quoted id");
    expect_err(CLUSTER12_RF2 "[node]\n", "t.ini:4: ", "expected [node \"ID\"]");
    expect_err(CLUSTER12_RF2 "[node \"\"]\n", "t.ini:4: ", "bad node id");
    expect_err(CLUSTER12_RF2 "[node \"a b\"]\n", "t.ini:4: ", "bad node id");
    expect_err(CLUSTER12_RF2 "[node \"a/b\"]\n", "t.ini:4: ", "bad node id");
    expect_err(CLUSTER12_RF2 "[cluster\n", "t.ini:4: ", "without a closing ']'");
    expect_err(CLUSTER12_RF2 "[storage] x\n", "t.ini:4: ", "unexpected text after ']'");
    expect_err(CLUSTER12_RF2 "[storage]\n[router]\n[storage]\n",
               "t.ini:6: ", "duplicate section [storage] (first at line 4)");
    expect_err(CLUSTER12_RF2 NODES2 "\n[node \"n1\"]\nrpc = h:1\n",
               "t.ini:11: ", "duplicate node id 'n1' (first at line 4)");
    /* an empty [node] section is still seen (inih alone would not report it) */
    expect_err(CLUSTER12_RF2 NODES2 "[node \"n3\"]\n",
               "t.ini:10: ", "node 'n3' has no rpc address");
    expect_err(CLUSTER12_RF2 NODES2 "[node \"n3\"]\nrpc = h:1\n",
               "t.ini:10: ", "node 'n3' has no http address");
}

static void test_err_keys(void **state)
{
    (void)state;
    expect_err("shards = 1\n[cluster]\n", "t.ini:1: ", "key 'shards' is outside any section");
    expect_err(CLUSTER12_RF2 "foo = 1\n", "t.ini:4: ", "unknown key 'foo' in [cluster]");
    expect_err(CLUSTER12_RF2 NODES2 "rpcc = h:1\n",
               "t.ini:10: ", "unknown key 'rpcc' in [node \"n2\"]");
    expect_err(CLUSTER12_RF2 "[storage]\npartition = 1d\nretention_days = 3\n",
               "t.ini:6: ", "unknown key 'retention_days' in [storage]");
    expect_err(CLUSTER12_RF2 "[router]\nshards = 3\n",
               "t.ini:5: ", "unknown key 'shards' in [router]");
    expect_err("[cluster]\nshards = 12\nreplication_factor = 2\n\nshards = 12\n",
               "t.ini:5: ", "duplicate key 'shards' in [cluster] (first set at line 2)");
    expect_err(CLUSTER12_RF2 NODES2 "http = h:9\n",
               "t.ini:10: ", "duplicate key 'http' in [node \"n2\"] (first set at line 9)");
    expect_err(CLUSTER12_RF2 "just some words\n",
               "t.ini:4: ", "expected 'key = value' or a [section] header");
    expect_err(CLUSTER12_RF2 "name: demo\n", "t.ini:4: ", "expected 'key = value'");
    expect_err(CLUSTER12_RF2 "name: a=b\n", "t.ini:4: ", "a ':' comes before the '='");
    expect_err(CLUSTER12_RF2 "= 3\n", "t.ini:4: ", "missing key name");
    /* an indented key is a key, not a continuation of the previous value */
    expect_err("[cluster]\nshards = 12\n    shards = 12\n", "t.ini:3: ", "duplicate key 'shards'");
    char buf[600];
    snprintf(buf, sizeof buf, CLUSTER12_RF2 "name = %0300d\n", 0);
    expect_err(buf, "t.ini:4: ", "line too long");
}

static void test_err_values(void **state)
{
    (void)state;
    expect_err("[cluster]\nwrite_consistency = all\n", "t.ini:2: ",
               "bad value 'all' for write_consistency: expected one of sync | quorum | async");
    expect_err("[cluster]\nread_consistency = QUORUM\n", "t.ini:2: ",
               "bad value 'QUORUM' for read_consistency: expected one of one | quorum");
    expect_err("[cluster]\nsharding = label\n", "t.ini:2: ", "expected one of series | metric");
    expect_err("[storage]\nwal_durability = fsync\n",
               "t.ini:2: ", "expected one of every_write | periodic | os_default | none");
    expect_err("[cluster]\nname = my cluster\n", "t.ini:2: ", "bad value 'my cluster' for name");
    expect_err("[cluster]\nname =\n", "t.ini:2: ", "bad value '' for name");
    expect_err("[cluster]\nshards = 0\n",
               "t.ini:2: ", "bad value '0' for shards: expected an integer from 1 to 65536");
    expect_err("[cluster]\nshards = 65537\n", "t.ini:2: ", "bad value '65537' for shards");
    expect_err("[cluster]\nshards = 12abc\n", "t.ini:2: ", "bad value '12abc' for shards");
    expect_err("[cluster]\nshards = 99999999999999999999999\n", "t.ini:2: ", "for shards");
    expect_err("[cluster]\nreplication_factor = 0\n", "t.ini:2: ",
               "bad value '0' for replication_factor: expected an integer from 1 to 16");
    expect_err("[cluster]\nreplication_factor = -1\n", "t.ini:2: ", "for replication_factor");
    /* control characters never reach the message */
    expect_err("[cluster]\nname = a\x01\x1b[31mb\n", "t.ini:2: ", "bad value 'a??[31mb' for name");
}

static void test_err_addresses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "127.0.0.1",  "h:0",          "h:65536", "h:",   ":80",  "::1:80", "[::1]80",
        "[zz::1]:80", "[1.2.3.4]:80", "a b:1",   "h:1x", "[]:1", "h:-1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[256], want[128];
        snprintf(buf, sizeof buf, CLUSTER12_RF2 "[node \"a\"]\nrpc = %s\n", bad[i]);
        snprintf(want, sizeof want, "bad value '%s' for rpc: expected host:port", bad[i]);
        expect_err(buf, "t.ini:5: ", want);
    }
    /* rpc of one node = rpc of another */
    expect_err(CLUSTER12_RF2 NODES2 "[node \"n3\"]\nrpc = 127.0.0.1:7401\n", "t.ini:11: ",
               "duplicate address '127.0.0.1:7401': rpc of node 'n3' is already the rpc address "
               "of node 'n1' (line 5)");
    /* http = http */
    expect_err(CLUSTER12_RF2 NODES2 "[node \"n3\"]\nrpc = h:1\nhttp = 127.0.0.1:7412\n",
               "t.ini:12: ", "http of node 'n3' is already the http address of node 'n2' (line 9)");
    /* rpc of one = http of another */
    expect_err(CLUSTER12_RF2 NODES2 "[node \"n3\"]\nrpc = 127.0.0.1:7402\n",
               "t.ini:11: ", "rpc of node 'n3' is already the http address of node 'n1'");
    /* rpc = http in one node, host names compared without case */
    expect_err(CLUSTER12_RF2 "[node \"a\"]\nrpc = Node-A.local:7\nhttp = node-a.LOCAL:7\n",
               "t.ini:6: ", "node 'a': rpc and http are the same address");
    /* same port on different hosts is fine; IPv6 and DNS names are kept as written */
    topo_t *t = load_ok("[cluster]\nshards = 2\nreplication_factor = 2\n"
                        "[node \"a\"]\nrpc = [::1]:7401\nhttp = [fe80::1%eth0]:7402\n"
                        "[node \"b\"]\nrpc = strata-node-1.strata.default.svc:7401\n"
                        "http = 10.0.0.2:7402\n");
    assert_string_equal(topo_node_rpc(t, 0)->addr, "[::1]:7401");
    assert_string_equal(topo_node_rpc(t, 0)->host, "::1");
    assert_int_equal(topo_node_rpc(t, 0)->port, 7401);
    assert_string_equal(topo_node_http(t, 0)->host, "fe80::1%eth0");
    assert_string_equal(topo_node_rpc(t, 1)->host, "strata-node-1.strata.default.svc");
    topo_destroy(t);
}

static void test_err_cluster(void **state)
{
    (void)state;
    expect_err("[cluster]\nshards = 12\nreplication_factor = 3\n" NODES2,
               "t.ini:3: ", "replication_factor 3 is larger than the number of nodes (2)");
    expect_err(CLUSTER12_RF2, "t.ini: ", "no nodes: add at least one [node \"ID\"] section");
    expect_err("[cluster]\nreplication_factor = 1\n" NODES2,
               "t.ini:1: ", "[cluster] is missing the required key 'shards'");
    expect_err("[cluster]\nshards = 1\n" NODES2,
               "t.ini:1: ", "[cluster] is missing the required key 'replication_factor'");
    expect_err("[storage]\n" NODES2, "t.ini: ", "missing [cluster] section");
    expect_err("", "t.ini: ", "missing [cluster] section");
    /* the largest cluster is fine */
    topo_t *t = load_ok("[cluster]\nshards = 65536\nreplication_factor = 2\n" NODES2);
    assert_int_equal(topo_shards(t), 65536);
    assert_int_equal(topo_shard_replicas(t, 65535)[0], 1);
    topo_destroy(t);
}

static void test_err_buffer(void **state)
{
    (void)state;
    topo_t *t = (topo_t *)0x1;
    char small[8];
    assert_int_equal(topo_load_string("[x]\n", "a-long-file-name.ini", &t, small, sizeof small),
                     ST_ECONFIG);
    assert_null(t);
    assert_string_equal(small, "a-long-");
    assert_int_equal(topo_load_string("[x]\n", NULL, &t, NULL, 0), ST_ECONFIG);
    char err[256];
    assert_int_equal(topo_load_string("[x]\n", NULL, &t, err, sizeof err), ST_ECONFIG);
    assert_string_equal(err, "<string>:1: unknown section [x] (expected [cluster], [storage], "
                             "[router], [replication], [security], [downsampling], [retention] "
                             "or [node \"ID\"])");
    assert_int_equal(topo_load_string(NULL, NULL, &t, err, sizeof err), ST_EINVAL);
    assert_int_equal(topo_load_string("", NULL, NULL, err, sizeof err), ST_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Placement                                                                 */

static void test_default_placement_3x3(void **state)
{
    (void)state;
    topo_t *t = load_ok(design_example);
    for (uint32_t s = 0; s < 12; s++) {
        const uint32_t *r = topo_shard_replicas(t, s);
        for (uint32_t k = 0; k < 3; k++) {
            assert_int_equal(r[k], (s + k) % 3);
            assert_int_equal(topo_replica_rank(t, s, (s + k) % 3), (int)k);
        }
    }
    for (uint32_t i = 0; i < 3; i++) {
        const uint32_t *sh;
        assert_int_equal(topo_node_shards(t, i, &sh), 12);
        for (uint32_t s = 0; s < 12; s++)
            assert_int_equal(sh[s], s);
    }
    topo_destroy(t);
}

static void test_default_placement_5x2(void **state)
{
    (void)state;
    topo_t *t = load_ok("[cluster]\nshards = 12\nreplication_factor = 2\n" NODES2 NODE3
                        "[node \"n4\"]\nrpc = h4:1\nhttp = h4:2\n"
                        "[node \"n5\"]\nrpc = h5:1\nhttp = h5:2\n");
    assert_int_equal(topo_node_count(t), 5);
    for (uint32_t s = 0; s < 12; s++) {
        const uint32_t *r = topo_shard_replicas(t, s);
        assert_int_equal(r[0], s % 5);
        assert_int_equal(r[1], (s + 1) % 5);
    }
    /* n1 (index 0) leads 0, 5, 10 and follows 4, 9 */
    static const uint32_t n1[] = {0, 4, 5, 9, 10};
    const uint32_t *sh;
    assert_int_equal(topo_node_shards(t, 0, &sh), 5);
    assert_memory_equal(sh, n1, sizeof n1);
    assert_int_equal(topo_replica_rank(t, 4, 0), 1);
    assert_int_equal(topo_replica_rank(t, 1, 0), ST_ENOENT);
    uint32_t total = 0;
    for (uint32_t i = 0; i < 5; i++)
        total += topo_node_shards(t, i, &sh);
    assert_int_equal(total, 24);
    topo_destroy(t);
}

#define EXPLICIT_HEAD "[cluster]\nshards = 6\nreplication_factor = 2\n" /* lines 1-3 */

static void test_explicit_placement(void **state)
{
    (void)state;
    topo_t *t = load_ok(EXPLICIT_HEAD "[node \"n1\"]\nrpc = h1:1\nhttp = h1:2\nshards = 0-1\n"
                                      "replica_shards = 2-3\n"
                                      "[node \"n2\"]\nrpc = h2:1\nhttp = h2:2\nshards = 2,3\n"
                                      "replica_shards = 4 - 5\n"
                                      "[node \"n3\"]\nrpc = h3:1\nhttp = h3:2\nshards = 4-5\n"
                                      "replica_shards = 0-1\n");
    assert_int_equal(topo_placement_explicit(t), 1);
    static const uint32_t want[6][2] = {{0, 2}, {0, 2}, {1, 0}, {1, 0}, {2, 1}, {2, 1}};
    for (uint32_t s = 0; s < 6; s++)
        assert_memory_equal(topo_shard_replicas(t, s), want[s], sizeof want[s]);
    const uint32_t *sh;
    assert_int_equal(topo_node_shards(t, 2, &sh), 4);
    static const uint32_t n3[] = {0, 1, 4, 5};
    assert_memory_equal(sh, n3, sizeof n3);
    topo_destroy(t);

    /* followers come in file order after the leader; a node with no keys is a spare */
    t = load_ok("[cluster]\nshards = 2\nreplication_factor = 3\n"
                "[node \"a\"]\nrpc = a:1\nhttp = a:2\nreplica_shards = 0-1\n"
                "[node \"spare\"]\nrpc = s:1\nhttp = s:2\n"
                "[node \"b\"]\nrpc = b:1\nhttp = b:2\nreplica_shards = 0-1\n"
                "[node \"c\"]\nrpc = c:1\nhttp = c:2\nshards = 0-1\n");
    static const uint32_t want2[3] = {3, 0, 2};
    assert_memory_equal(topo_shard_replicas(t, 0), want2, sizeof want2);
    assert_memory_equal(topo_shard_replicas(t, 1), want2, sizeof want2);
    assert_int_equal(topo_node_shards(t, 1, &sh), 0);
    topo_destroy(t);
}

static void test_explicit_placement_errors(void **state)
{
    (void)state;
#define N1 "[node \"n1\"]\nrpc = h1:1\nhttp = h1:2\n" /* lines 4-6 */
#define N2 "[node \"n2\"]\nrpc = h2:1\nhttp = h2:2\n"
    /* two leaders: blamed on the second node's shards line */
    expect_err(EXPLICIT_HEAD N1 "shards = 0-5\n" N2 "shards = 5\nreplica_shards = 0-4\n",
               "t.ini:11: ", "shard 5 is led by both 'n1' and 'n2'");
    /* no leader */
    expect_err(EXPLICIT_HEAD N1 "shards = 0-4\nreplica_shards = 5\n" N2 "replica_shards = 0-5\n",
               "t.ini: ", "shard 5 has no leader: no node lists it in shards");
    /* fewer than RF replicas */
    expect_err(EXPLICIT_HEAD N1 "shards = 0-5\n" N2 "replica_shards = 0,2-5\n",
               "t.ini: ", "shard 1 has 1 replica (n1) but replication_factor is 2");
    /* more than RF replicas: blamed on the line adding the extra one */
    expect_err(
        EXPLICIT_HEAD N1 "shards = 0-5\n" N2 "replica_shards = 0-5\n" NODE3 "replica_shards = 3\n",
        "t.ini:15: ", "shard 3 has more than replication_factor (2) replicas: n1, n2 and n3");
    /* listed twice by one node */
    expect_err(EXPLICIT_HEAD N1 "shards = 0-3,2\n" N2,
               "t.ini:7: ", "node 'n1' lists shard 2 more than once");
    expect_err(EXPLICIT_HEAD N1 "shards = 0-3\nreplica_shards = 3-5\n" N2,
               "t.ini:8: ", "node 'n1' lists shard 3 more than once");
    /* out of range */
    expect_err(EXPLICIT_HEAD N1 "shards = 0-6\n" N2,
               "t.ini:7: ", "shard range 0-6 is out of range: shards are 0-5");
    expect_err(EXPLICIT_HEAD N1 "shards = 0-5\n" N2 "replica_shards = 0-4, 9\n",
               "t.ini:11: ", "shard 9 is out of range: shards are 0-5");
    /* shards given after the nodes: bounds still checked against it */
    expect_err(N1 "shards = 0-5\n[cluster]\nshards = 4\nreplication_factor = 1\n",
               "t.ini:4: ", "shard range 0-5 is out of range: shards are 0-3");
    /* syntax */
    static const char *const bad[] = {"3-1", "1,,2", "a",     "",          "1-",
                                      "-1",  "1 2",  "0-3;x", "4294967296"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[256], want[128];
        snprintf(buf, sizeof buf, EXPLICIT_HEAD N1 "replica_shards = %s\n", bad[i]);
        snprintf(want, sizeof want, "bad value '%s' for replica_shards: expected a list of shards",
                 bad[i]);
        expect_err(buf, "t.ini:7: ", want);
    }
#undef N1
#undef N2
}

/* ------------------------------------------------------------------------ */
/* Fingerprint                                                               */

static const char fp_base[] = "[cluster]\nname = demo\nshards = 6\nreplication_factor = 2\n"
                              "[node \"n1\"]\nrpc = h1:7401\nhttp = h1:7402\n"
                              "[node \"n2\"]\nrpc = h2:7401\nhttp = h2:7402\n"
                              "[node \"n3\"]\nrpc = h3:7401\nhttp = h3:7402\n";

static void test_fingerprint_stable(void **state)
{
    (void)state;
    topo_t *t = load_ok(fp_base);
    uint64_t fp = topo_fingerprint(t);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fp);
    assert_string_equal(topo_fingerprint_hex(t), hex);
    /* topo_canonical(): snprintf semantics, and it is what the fingerprint hashes */
    char small[10], big[4096];
    size_t n = topo_canonical(t, small, sizeof small);
    assert_true(n > sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(topo_canonical(t, big, sizeof big), n);
    assert_int_equal(strlen(big), n);
    assert_non_null(strstr(big, "cluster.write_consistency=quorum\n"));
    assert_non_null(strstr(big, "node n2 rpc=h2:7401\n"));
    assert_non_null(strstr(big, "shard 5 n3 n1\n"));
    assert_null(strstr(big, "7402")); /* http is not in it */
    topo_destroy(t);

    /* whitespace, comments, key order, section order, defaults written out,
     * [storage], [router] and http addresses: same fingerprint */
    static const char *const same[] = {
        "; reformatted\n[node \"n1\"]\n  http=h1:7402   ; x\n  rpc=H1:7401\n"
        "[cluster]\nreplication_factor=2\nshards=6\nname=demo\n"
        "write_consistency = quorum\nread_consistency = one\nsharding = series\n"
        "[node \"n2\"]\nrpc=h2:7401\nhttp=h2:7402\n[node \"n3\"]\nrpc=h3:7401\nhttp=h3:7402\n",
        "[storage]\nretention = 0\nwal_durability = none\n[router]\nrequest_timeout = 1s\n"
        "[cluster]\nname = demo\nshards = 6\nreplication_factor = 2\n"
        "[node \"n1\"]\nrpc = h1:7401\nhttp = h1:9999\n"
        "[node \"n2\"]\nrpc = h2:7401\nhttp = h2:9999\n"
        "[node \"n3\"]\nrpc = h3:7401\nhttp = h3:9999\n",
        /* the default placement written out explicitly */
        "[cluster]\nname = demo\nshards = 6\nreplication_factor = 2\n"
        "[node \"n1\"]\nrpc = h1:7401\nhttp = h1:7402\nshards = 0,3\nreplica_shards = 2,5\n"
        "[node \"n2\"]\nrpc = h2:7401\nhttp = h2:7402\nshards = 1,4\nreplica_shards = 0,3\n"
        "[node \"n3\"]\nrpc = h3:7401\nhttp = h3:7402\nshards = 2,5\nreplica_shards = 1,4\n",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (fp_of(same[i]) != fp)
            fail_msg("variant %zu changed the fingerprint", i);
}

static void test_fingerprint_sensitive(void **state)
{
    (void)state;
    uint64_t fp = fp_of(fp_base);
    static const struct {
        const char *from, *to;
    } edits[] = {
        {"name = demo", "name = demo2"},
        {"shards = 6", "shards = 7"},
        {"replication_factor = 2", "replication_factor = 3"},
        {"name = demo", "name = demo\nwrite_consistency = sync"},
        {"name = demo", "name = demo\nwrite_consistency = async"},
        {"name = demo", "name = demo\nread_consistency = quorum"},
        {"name = demo", "name = demo\nsharding = metric"},
        {"[node \"n2\"]", "[node \"n2x\"]"},
        {"rpc = h2:7401", "rpc = h2b:7401"},
        {"rpc = h2:7401", "rpc = h2:7501"},
        /* node order */
        {"[node \"n1\"]\nrpc = h1:7401\nhttp = h1:7402\n[node \"n2\"]\nrpc = h2:7401\nhttp = "
         "h2:7402\n",
         "[node \"n2\"]\nrpc = h2:7401\nhttp = h2:7402\n[node \"n1\"]\nrpc = h1:7401\nhttp = "
         "h1:7402\n"},
        /* placement */
        {"http = h1:7402\n", "http = h1:7402\nshards = 0-5\n"},
        {"http = h3:7402\n", "http = h3:7402\n[node \"n4\"]\nrpc = h4:1\nhttp = h4:2\n"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char buf[1024];
        const char *at = strstr(fp_base, edits[i].from);
        assert_non_null(at);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - fp_base), fp_base, edits[i].to,
                 at + strlen(edits[i].from));
        if (strstr(edits[i].to, "shards = 0-5")) /* complete the explicit placement */
            strcat(buf, "replica_shards = 0-5\n");
        if (fp_of(buf) == fp)
            fail_msg("edit %zu (%s -> %s) did not change the fingerprint", i, edits[i].from,
                     edits[i].to);
    }
}

static void test_fingerprint_pinned(void **state)
{
    (void)state;
    /* The handshake compares fingerprints across versions: a change here is a
     * protocol change (bump "strata-topology 1" in topo.c and document it). */
    topo_t *t = load_ok(design_example);
    assert_string_equal(topo_fingerprint_hex(t), "1479e4c05e26311c");
    topo_destroy(t);
}

/* ------------------------------------------------------------------------ */
/* Sharding                                                                  */

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static st_label_t lab(const char *name, const char *value)
{
    st_label_t l = {name, value, (uint32_t)strlen(name), (uint32_t)strlen(value)};
    return l;
}

static void test_shard_of_series(void **state)
{
    (void)state;
    topo_t *t = load_ok(design_example);
    uint32_t count[12] = {0};
    for (int i = 0; i < 10000; i++) {
        char host[32], region[32];
        snprintf(host, sizeof host, "host_%llu", (unsigned long long)(next_rand() % 100000));
        snprintf(region, sizeof region, "r%llu", (unsigned long long)(next_rand() % 7));
        st_label_t l[3] = {lab("__name__", "cpu_usage_user"), lab("host", host),
                           lab("region", region)};
        uint32_t s = topo_shard_of_labels(t, l, 3);
        assert_true(s < 12);
        assert_int_equal(s, st_series_hash(l, 3) % 12);
        count[s]++;
    }
    for (int s = 0; s < 12; s++)
        if (count[s] < 600 || count[s] > 1100) /* expected ~833 each */
            fail_msg("shard %d got %u of 10000 series", s, count[s]);
    /* Pinned: data placement must never change silently. */
    st_label_t fixed[2] = {lab("__name__", "cpu_usage_user"), lab("host", "h1")};
    assert_int_equal(topo_shard_of_labels(t, fixed, 2), 9);
    st_label_t fixed2[3] = {lab("__name__", "mem_used"), lab("dc", "eu-1"), lab("host", "h42")};
    assert_int_equal(topo_shard_of_labels(t, fixed2, 3), 2);
    topo_destroy(t);
}

static void test_shard_of_metric(void **state)
{
    (void)state;
    topo_t *t = load_ok("[cluster]\nshards = 12\nreplication_factor = 1\nsharding = metric\n"
                        "[node \"a\"]\nrpc = a:1\nhttp = a:2\n");
    uint32_t want = topo_shard_of_metric(t, "cpu_usage_user", 14);
    int seen[12] = {0};
    for (int i = 0; i < 1000; i++) {
        char host[32];
        snprintf(host, sizeof host, "h%d", i);
        st_label_t l[2] = {lab("__name__", "cpu_usage_user"), lab("host", host)};
        assert_int_equal(topo_shard_of_labels(t, l, 2), want);
        char metric[32];
        snprintf(metric, sizeof metric, "metric_%d", i);
        st_label_t m[2] = {lab("__name__", metric), lab("host", "h1")};
        seen[topo_shard_of_labels(t, m, 2)] = 1;
    }
    for (int s = 0; s < 12; s++)
        assert_true(seen[s]); /* different metrics do spread */
    /* pinned, and no __name__ hashes the empty name */
    assert_int_equal(want, 2);
    st_label_t noname[1] = {lab("host", "h1")};
    assert_int_equal(topo_shard_of_labels(t, noname, 1), topo_shard_of_metric(t, "", 0));
    topo_destroy(t);
}

/* ------------------------------------------------------------------------ */
/* Files and printing                                                        */

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_topo_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(design_example, f);
    fclose(f);
    topo_t *t = NULL;
    char err[512];
    assert_int_equal(topo_load_file(path, &t, err, sizeof err), 0);
    assert_string_equal(topo_fingerprint_hex(t), "1479e4c05e26311c");
    topo_destroy(t);

    f = fopen(path, "w");
    fputs("[cluster]\nshards = 4\n\nbogus = 1\n", f);
    fclose(f);
    assert_int_equal(topo_load_file(path, &t, err, sizeof err), ST_ECONFIG);
    char want[256];
    snprintf(want, sizeof want, "%s:4: unknown key 'bogus' in [cluster]", path);
    assert_string_equal(err, want);

    f = fopen(path, "w");
    fwrite("[cluster]\nshards = 4\0\n", 1, 22, f);
    fclose(f);
    assert_int_equal(topo_load_file(path, &t, err, sizeof err), ST_ECONFIG);
    snprintf(want, sizeof want, "%s:2: NUL byte", path);
    assert_true(strncmp(err, want, strlen(want)) == 0);
    unlink(path);

    assert_int_equal(topo_load_file(path, &t, err, sizeof err), ST_EIO);
    assert_null(t);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(topo_load_file("/tmp", &t, err, sizeof err), ST_EIO);
}

static void test_router_listen(void **state)
{
    (void)state;
    /* absent: the router's documented default */
    topo_t *t = load_ok(CLUSTER12_RF2 NODES2);
    const topo_addr_t *a = &topo_router(t)->listen;
    assert_string_equal(a->addr, "127.0.0.1:8086");
    assert_string_equal(a->host, "127.0.0.1");
    assert_int_equal(a->port, 8086);
    uint64_t fp = topo_fingerprint(t);
    topo_destroy(t);
    /* set: per host, not part of the fingerprint; may equal a node's address form */
    t = load_ok(CLUSTER12_RF2 "[router]\nlisten = 0.0.0.0:9000\n" NODES2);
    a = &topo_router(t)->listen;
    assert_string_equal(a->addr, "0.0.0.0:9000");
    assert_string_equal(a->host, "0.0.0.0");
    assert_int_equal(a->port, 9000);
    assert_true(topo_fingerprint(t) == fp);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    topo_print(t, f);
    fclose(f);
    assert_non_null(strstr(out, "listen 0.0.0.0:9000\n"));
    free(out);
    topo_destroy(t);
    t = load_ok(NODES2 "[router]\nlisten = [::]:8086\n" CLUSTER12_RF2);
    assert_string_equal(topo_router(t)->listen.host, "::");
    assert_string_equal(topo_router(t)->listen.addr, "[::]:8086");
    assert_true(topo_fingerprint(t) == fp);
    topo_destroy(t);
    t = load_ok(CLUSTER12_RF2 "[router]\nlisten = router.example:80\n" NODES2);
    assert_string_equal(topo_router(t)->listen.host, "router.example");
    topo_destroy(t);
    /* bad values: line-numbered, like node addresses */
    static const char *const bad[] = {"8086",  "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
                                      ":8086", "[::1]8086", "::1:8086",    "a b:1",
                                      "h:1x",  ""};
    char buf[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, CLUSTER12_RF2 "[router]\nrequest_timeout = 5s\nlisten = %s\n",
                 bad[i]);
        expect_err(buf, "t.ini:6: ", "for listen: expected host:port");
    }
    expect_err(CLUSTER12_RF2 "[router]\nlisten = h:1\nlisten = h:2\n",
               "t.ini:6: ", "duplicate key 'listen' in [router]");
    expect_err(CLUSTER12_RF2 "[storage]\nlisten = h:1\n",
               "t.ini:5: ", "unknown key 'listen' in [storage]");
}

static void test_print(void **state)
{
    (void)state;
    topo_t *t = load_ok(design_example);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    topo_print(t, f);
    fclose(f);
    assert_non_null(strstr(out, "cluster demo: 12 shards, replication_factor 3"));
    assert_non_null(strstr(out, "n2"));
    assert_non_null(strstr(out, "rpc 127.0.0.1:7411"));
    assert_non_null(strstr(out, "http 127.0.0.1:7422"));
    assert_non_null(strstr(out, "shard 11: n3 n1 n2\n"));
    assert_non_null(strstr(out, "retention 30d"));
    assert_non_null(strstr(out, "fingerprint 1479e4c05e26311c\n"));
    free(out);
    topo_destroy(t);
}

static void test_lifecycle_sections(void **state)
{
    (void)state;
    topo_t *t = load_ok(CLUSTER12_RF2 NODES2 "[downsampling]\ntiers = 7d:1m, 90d:1h\n"
                                             "[storage]\nretention = 0\n"
                                             "[retention]\ncpu_usage = 7d\nmem = 0\n");
    const topo_tier_t *tt;
    assert_int_equal(topo_tiers(t, &tt), 2);
    assert_true(tt[0].age_ms == 7 * 86400000LL && tt[0].res_ms == 60000);
    assert_true(tt[1].age_ms == 90 * 86400000LL && tt[1].res_ms == 3600000);
    assert_int_equal(topo_retention_overrides(t), 2);
    assert_true(topo_retention_of(t, "cpu_usage", 9) == 7 * 86400000LL);
    assert_true(topo_retention_of(t, "cpu_usagex", 9) == 7 * 86400000LL); /* len counts */
    assert_true(topo_retention_of(t, "cpu", 3) == 0);                     /* [storage]: forever */
    assert_true(topo_retention_of(t, "mem", 3) == 0);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    topo_print(t, f);
    fclose(f);
    assert_non_null(strstr(out, "downsampling: tiers 7d:1m, 90d:1h\n"));
    assert_non_null(strstr(out, "retention overrides: 2 (cpu_usage 7d, mem forever)\n"));
    free(out);
    topo_destroy(t);
    t = load_ok(CLUSTER12_RF2 NODES2);
    assert_int_equal(topo_tiers(t, &tt), 0);
    assert_true(topo_retention_of(t, "x", 1) == 30 * 86400000LL);
    topo_destroy(t);
#define DS CLUSTER12_RF2 NODES2 "[storage]\nretention = 0\n[downsampling]\n"
    expect_err(DS "tiers = 7d:1m, 1d:1h\n",
               "t.ini:13: ", "tier 2: ages and resolutions must ascend");
    expect_err(DS "tiers = 7d:1m, 90d:90s\n",
               "t.ini:13: ", "tier 2: resolution must be a multiple of the previous tier's");
    expect_err(DS "tiers = 7d\n", "t.ini:13: ", "bad tier '7d': expected AGE:RESOLUTION");
    expect_err(DS "tiers = 7d:1x\n", "t.ini:13: ", "bad tier resolution '1x'");
    expect_err(DS "tiers = 1m:1h\n", "t.ini:13: ", "shorter than its age");
    expect_err(DS "tiers = 7d:7h\n", "t.ini:13: ", "tier 1: its resolution must divide [storage]");
    expect_err(DS "tiers = 7d:1m\ntiers = 8d:1m\n", "t.ini:14: ", "duplicate key 'tiers'");
    expect_err(DS "levels = 7d:1m\n", "t.ini:13: ", "unknown key 'levels' in [downsampling]");
#undef DS
    expect_err(CLUSTER12_RF2 NODES2 "[downsampling]\ntiers = 7d:1m, 90d:1h\n",
               "t.ini:", "tier 2: its age must be shorter than [storage] retention");
    expect_err(CLUSTER12_RF2 NODES2 "[retention]\n9cpu = 1d\n",
               "t.ini:11: ", "bad metric name '9cpu' in [retention]");
    expect_err(CLUSTER12_RF2 NODES2 "[retention]\ncpu = 1d\ncpu = 2d\n",
               "t.ini:12: ", "duplicate key 'cpu' in [retention]");
    expect_err(CLUSTER12_RF2 NODES2 "[retention]\ncpu = 60d\n",
               "t.ini:", "[retention] cpu: an override may only shorten [storage] retention");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_replication_section),
        cmocka_unit_test(test_security_section),
        cmocka_unit_test(test_router_listen),
        cmocka_unit_test(test_enums_and_names),
        cmocka_unit_test(test_inline_comment_rules),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_err_sections),
        cmocka_unit_test(test_err_keys),
        cmocka_unit_test(test_err_values),
        cmocka_unit_test(test_err_addresses),
        cmocka_unit_test(test_err_cluster),
        cmocka_unit_test(test_err_buffer),
        cmocka_unit_test(test_default_placement_3x3),
        cmocka_unit_test(test_default_placement_5x2),
        cmocka_unit_test(test_explicit_placement),
        cmocka_unit_test(test_explicit_placement_errors),
        cmocka_unit_test(test_fingerprint_stable),
        cmocka_unit_test(test_fingerprint_sensitive),
        cmocka_unit_test(test_fingerprint_pinned),
        cmocka_unit_test(test_shard_of_series),
        cmocka_unit_test(test_shard_of_metric),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_lifecycle_sections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
