/*
 * fuzz_topo — cluster.ini text into topo_load_string().
 *
 * The input is used as ini text (cut at the first NUL, as a C string would
 * be). A rejected config must come back with a one-line message; an accepted
 * one must satisfy the topology invariants checked below.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "topo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const topo_t *t)
{
    uint32_t shards = topo_shards(t), rf = topo_replication_factor(t), n = topo_node_count(t);
    if (shards < 1 || shards > TOPO_MAX_SHARDS || rf < 1 || rf > n)
        abort();
    uint64_t held = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t *sh;
        uint32_t c = topo_node_shards(t, i, &sh);
        for (uint32_t j = 0; j < c; j++)
            if (sh[j] >= shards || (j && sh[j] <= sh[j - 1]) || topo_replica_rank(t, sh[j], i) < 0)
                abort();
        held += c;
        if (topo_node_index(t, topo_node_id(t, i)) != (int)i)
            abort();
    }
    if (held != (uint64_t)shards * rf)
        abort();
    for (uint32_t s = 0; s < shards; s++) {
        const uint32_t *r = topo_shard_replicas(t, s);
        for (uint32_t k = 0; k < rf; k++) {
            if (r[k] >= n)
                abort();
            for (uint32_t j = 0; j < k; j++)
                if (r[j] == r[k])
                    abort();
        }
    }
    st_label_t l[2] = {{"__name__", "m", 8, 1}, {"host", "h", 4, 1}};
    if (topo_shard_of_labels(t, l, 2) >= shards)
        abort();
    char small[64];
    size_t len = topo_canonical(t, small, sizeof small);
    if (strlen(small) != (len < sizeof small ? len : sizeof small - 1))
        abort();
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (devnull)
        topo_print(t, devnull);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    topo_t *t = NULL;
    char err[256];
    int rc = topo_load_string(text, "fuzz.ini", &t, err, sizeof err);
    if (rc == 0) {
        check(t);
        topo_destroy(t);
    } else {
        if (t || (rc != ST_ECONFIG && rc != ST_ENOMEM) || strchr(err, '\n') ||
            strncmp(err, "fuzz.ini", 8) != 0)
            abort();
    }
    free(text);
    return 0;
}
