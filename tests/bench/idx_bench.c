/*
 * idx_bench — series registry and label index (node/engine/idx.h) on a
 * devops (TSBS cpu-like) shape: H hosts x 10 metrics, 10 tags per host.
 *
 * Usage: strata-idx_bench [hosts...]   (default: 1000 100000, i.e. 10k and 1M series)
 *
 * Prints ns per idx_add (building the index), ns per idx_lookup in ingest
 * order and in random order (hashes precomputed, as the caller does),
 * index memory and series.log bytes per series, persist / reopen time, and
 * select latency for three typical selectors.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "idx.h"
#include "idx_internal.h" /* idx_lookup_many (proposed API) */
#include "st_err.h"
#include "st_labels.h"

#define NMETRICS 10
#define NTAGS 11

static const char *const metrics[NMETRICS] = {
    "cpu_usage_user",   "cpu_usage_system",    "cpu_usage_idle",    "cpu_usage_nice",
    "cpu_usage_iowait", "cpu_usage_irq",       "cpu_usage_softirq", "cpu_usage_steal",
    "cpu_usage_guest",  "cpu_usage_guest_nice"};
static const char *const regions[] = {"us-east-1",      "us-west-1",      "us-west-2",
                                      "eu-west-1",      "eu-central-1",   "ap-southeast-1",
                                      "ap-southeast-2", "ap-northeast-1", "sa-east-1"};
static const char *const oses[] = {"Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"};
static const char *const archs[] = {"x64", "x86"};
static const char *const teams[] = {"SF", "NYC", "LON", "CHI"};
static const char *const envs[] = {"production", "staging", "test"};

typedef struct host {
    char hostname[24], datacenter[24], rack[8], service[8], version[8];
    const char *region, *os, *arch, *team, *env;
} host_t;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void make_host(host_t *h, uint32_t i)
{
    uint32_t r = (uint32_t)(i * 2654435761u);
    snprintf(h->hostname, sizeof h->hostname, "host_%u", i);
    h->region = regions[r % 9];
    snprintf(h->datacenter, sizeof h->datacenter, "%s%c", h->region, 'a' + (r >> 8) % 3);
    snprintf(h->rack, sizeof h->rack, "%u", (r >> 12) % 100);
    h->os = oses[(r >> 4) % 3];
    h->arch = archs[(r >> 6) % 2];
    h->team = teams[(r >> 10) % 4];
    snprintf(h->service, sizeof h->service, "%u", (r >> 16) % 20);
    snprintf(h->version, sizeof h->version, "%u", (r >> 20) % 2);
    h->env = envs[(r >> 22) % 3];
}

static void set(st_label_t *l, const char *n, const char *v)
{
    *l = (st_label_t){n, v, (uint32_t)strlen(n), (uint32_t)strlen(v)};
}

/* Labels of (host, metric), sorted; the metric is l[0] (__name__ sorts first). */
static void labels(st_label_t *l, const host_t *h, uint32_t m)
{
    set(&l[0], "__name__", metrics[m]);
    set(&l[1], "arch", h->arch);
    set(&l[2], "datacenter", h->datacenter);
    set(&l[3], "hostname", h->hostname);
    set(&l[4], "os", h->os);
    set(&l[5], "rack", h->rack);
    set(&l[6], "region", h->region);
    set(&l[7], "service", h->service);
    set(&l[8], "service_environment", h->env);
    set(&l[9], "service_version", h->version);
    set(&l[10], "team", h->team);
}

static void rm_dir(const char *d)
{
    char p[512];
    snprintf(p, sizeof p, "%s/series.log", d);
    unlink(p);
    rmdir(d);
}

static void bench_select(idx_t *x, const char *what, const st_matcher_t *m, size_t nm)
{
    uint32_t *ids;
    size_t n = 0;
    int reps = 0;
    double t0 = now_ns(), t;
    do {
        if (idx_select(x, m, nm, &ids, &n, NULL)) {
            printf("  select %-36s failed\n", what);
            return;
        }
        free(ids);
        reps++;
        t = now_ns();
    } while (t - t0 < 2e8 && reps < 10000);
    printf("  select %-36s %9zu series  %10.1f us\n", what, n, (t - t0) / reps / 1e3);
}

static int run(uint32_t nhosts)
{
    char dir[] = "/tmp/idx_bench_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    uint64_t ns = (uint64_t)nhosts * NMETRICS;
    host_t *hosts = malloc(nhosts * sizeof *hosts);
    uint64_t *hash = malloc(ns * sizeof *hash);
    uint32_t *perm = malloc(ns * sizeof *perm);
    if (!hosts || !hash || !perm)
        return 1;
    st_label_t l[NTAGS];
    for (uint32_t h = 0; h < nhosts; h++) {
        make_host(&hosts[h], h);
        for (uint32_t m = 0; m < NMETRICS; m++) {
            labels(l, &hosts[h], m);
            hash[h * NMETRICS + m] = st_labels_hash(l, NTAGS);
        }
    }
    for (uint64_t i = 0; i < ns; i++)
        perm[i] = (uint32_t)i;
    for (uint64_t i = ns - 1; i > 0; i--) {
        uint64_t j = rnd(i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }

    idx_t *x;
    int rc = idx_open(dir, &x);
    if (rc)
        return 1;
    printf("%u hosts x %d metrics = %llu series (%d labels each)\n", nhosts, NMETRICS,
           (unsigned long long)ns, NTAGS);

    double t0 = now_ns();
    for (uint32_t h = 0; h < nhosts; h++) {
        labels(l, &hosts[h], 0);
        for (uint32_t m = 0; m < NMETRICS; m++) {
            set(&l[0], "__name__", metrics[m]);
            uint32_t id;
            if (idx_add(x, l, NTAGS, hash[h * NMETRICS + m], &id) || id != h * NMETRICS + m)
                return 1;
        }
    }
    double t_add = now_ns() - t0;
    printf("  idx_add                   %8.1f ns/series\n", t_add / ns);

    uint64_t found = 0;
    double best = 1e300;
    for (int rep = 0; rep < 3; rep++) {
        t0 = now_ns();
        for (uint32_t h = 0; h < nhosts; h++) {
            labels(l, &hosts[h], 0);
            for (uint32_t m = 0; m < NMETRICS; m++) {
                l[0].value = metrics[m];
                l[0].value_len = (uint32_t)strlen(metrics[m]);
                uint32_t id;
                found += idx_lookup(x, l, NTAGS, hash[h * NMETRICS + m], &id) == 0;
            }
        }
        double t = now_ns() - t0;
        if (t < best)
            best = t;
    }
    printf("  idx_lookup, ingest order  %8.1f ns/lookup\n", best / ns);
    t0 = now_ns();
    for (uint64_t i = 0; i < ns; i++) {
        uint32_t s = perm[i], id;
        labels(l, &hosts[s / NMETRICS], s % NMETRICS);
        found += idx_lookup(x, l, NTAGS, hash[s], &id) == 0;
    }
    double t_rand = now_ns() - t0;
    /* the cost of building the label set alone, to subtract */
    volatile uint32_t sink = 0;
    t0 = now_ns();
    for (uint64_t i = 0; i < ns; i++) {
        uint32_t s = perm[i];
        labels(l, &hosts[s / NMETRICS], s % NMETRICS);
        sink += l[0].value_len + (uint32_t)hash[s];
    }
    double t_base = now_ns() - t0;
    printf("  idx_lookup, random order  %8.1f ns/lookup (%.1f incl. building labels)\n",
           (t_rand - t_base) / ns, t_rand / ns);
    if (found != ns * 4)
        printf("  !! lookups failed: %llu of %llu\n", (unsigned long long)found,
               (unsigned long long)ns * 4);

    /* batched lookups (idx_lookup_many), batches of BATCH series, labels prebuilt per batch */
    enum { BATCH = 1000 };
    static st_label_t blab[BATCH][NTAGS];
    static const st_label_t *bptr[BATCH];
    static size_t bn[BATCH];
    static uint64_t bh[BATCH];
    static uint32_t bids[BATCH];
    for (int order = 0; order < 2; order++) {
        double tb = 0;
        uint64_t bfound = 0;
        for (uint64_t i = 0; i < ns; i += BATCH) {
            size_t k = ns - i < BATCH ? (size_t)(ns - i) : BATCH;
            for (size_t j = 0; j < k; j++) {
                uint32_t sid = order ? perm[i + j] : (uint32_t)(i + j);
                labels(blab[j], &hosts[sid / NMETRICS], sid % NMETRICS);
                bptr[j] = blab[j];
                bn[j] = NTAGS;
                bh[j] = hash[sid];
            }
            t0 = now_ns();
            bfound += (uint64_t)idx_lookup_many(x, bptr, bn, bh, k, bids);
            tb += now_ns() - t0;
        }
        printf("  idx_lookup_many, %-7s %8.1f ns/lookup (batches of %d)\n",
               order ? "random" : "ingest", tb / ns, BATCH);
        if (bfound != ns)
            printf("  !! batched lookups failed\n");
    }

    printf("  memory                    %8.1f bytes/series (%.1f MiB)\n",
           (double)idx_mem_bytes(x) / ns, idx_mem_bytes(x) / 1048576.0);
    t0 = now_ns();
    if ((rc = idx_persist(x))) {
        printf("  persist failed: %s\n", st_strerror(rc));
        return 1;
    }
    double t_persist = now_ns() - t0;
    printf("  series.log                %8.2f bytes/series (%llu bytes), persist %.1f ms\n",
           (double)idx_disk_bytes(x) / ns, (unsigned long long)idx_disk_bytes(x), t_persist / 1e6);
    idx_close(x);
    t0 = now_ns();
    if (idx_open(dir, &x) || idx_count(x) != ns) {
        printf("  reopen failed\n");
        return 1;
    }
    printf("  reopen (replay)           %8.1f ms (%.0f ns/series)\n", (now_ns() - t0) / 1e6,
           (now_ns() - t0) / ns);

    bench_select(x, "{__name__=\"cpu_usage_user\"}",
                 (st_matcher_t[]){{ST_MATCH_EQ, "__name__", "cpu_usage_user"}}, 1);
    bench_select(x, "{hostname=\"host_7\"}", (st_matcher_t[]){{ST_MATCH_EQ, "hostname", "host_7"}},
                 1);
    bench_select(x, "{hostname=~\"host_1.*\"}",
                 (st_matcher_t[]){{ST_MATCH_RE, "hostname", "host_1.*"}}, 1);
    bench_select(x, "{hostname=~\"host_1[0-9]*\"} (PCRE2)",
                 (st_matcher_t[]){{ST_MATCH_RE, "hostname", "host_1[0-9]*"}}, 1);
    bench_select(x, "{__name__=\"cpu_usage_user\",hostname=~\"host_1.*\"}",
                 (st_matcher_t[]){{ST_MATCH_EQ, "__name__", "cpu_usage_user"},
                                  {ST_MATCH_RE, "hostname", "host_1.*"}},
                 2);
    bench_select(x, "{__name__=\"cpu_usage_user\",region!=\"us-east-1\"}",
                 (st_matcher_t[]){{ST_MATCH_EQ, "__name__", "cpu_usage_user"},
                                  {ST_MATCH_NE, "region", "us-east-1"}},
                 2);
    idx_close(x);
    rm_dir(dir);
    free(hosts);
    free(hash);
    free(perm);
    (void)sink;
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t def[] = {1000, 100000};
    int rc = 0;
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            rc |= run((uint32_t)strtoul(argv[i], NULL, 10));
    else
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++)
            rc |= run(def[i]);
    return rc;
}
