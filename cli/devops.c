/*
 * devops — TSBS-like devops cpu workload. See devops.h.
 *
 * The PRNG is MT19937 seeded like CPython's random_seed() (init_by_array over
 * the 32-bit words of |seed|); random(), getrandbits()/_randbelow(), choice()
 * and gauss() (Box-Muller with the cached second value) follow CPython 3.x.
 */
#include "devops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"

#define MT_N 624
#define MT_M 397

static const char *const FIELDS[DEVOPS_FIELDS] = {
    "usage_user", "usage_system",  "usage_idle",  "usage_nice",  "usage_iowait",
    "usage_irq",  "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"};

typedef struct region {
    const char *name;
    int ndc;
    const char *dc[4];
} region_t;

static const region_t REGIONS[] = {
    {"us-east-1", 4, {"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"}},
    {"us-west-1", 2, {"us-west-1a", "us-west-1b"}},
    {"us-west-2", 3, {"us-west-2a", "us-west-2b", "us-west-2c"}},
    {"eu-west-1", 3, {"eu-west-1a", "eu-west-1b", "eu-west-1c"}},
    {"eu-central-1", 2, {"eu-central-1a", "eu-central-1b"}},
    {"ap-southeast-1", 2, {"ap-southeast-1a", "ap-southeast-1b"}},
    {"ap-southeast-2", 2, {"ap-southeast-2a", "ap-southeast-2b"}},
    {"ap-northeast-1", 2, {"ap-northeast-1a", "ap-northeast-1c"}},
    {"sa-east-1", 3, {"sa-east-1a", "sa-east-1b", "sa-east-1c"}},
};
static const char *const OS_CHOICES[] = {"Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"};
static const char *const ARCH_CHOICES[] = {"x64", "x86"};
static const char *const TEAM_CHOICES[] = {"SF", "NYC", "LON", "CHI"};
static const char *const SERVICE_VERSION_CHOICES[] = {"0", "1"};
static const char *const SERVICE_ENV_CHOICES[] = {"production", "staging", "test"};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define RACKS_PER_DC 100
#define N_SERVICES 20

struct devops {
    devops_cfg_t cfg;
    devops_rng_t rng;
    char **prefix; /* per host: "cpu,hostname=...,service_environment=... " */
    size_t *prefix_len;
    double *state; /* hosts x DEVOPS_FIELDS */
    uint64_t point;
    uint32_t host;
    char ts_text[32]; /* " <ns>\n" of the current point */
    size_t ts_len;
};

/* ---- MT19937, CPython-compatible ------------------------------------------------------- */

static void init_genrand(devops_rng_t *r, uint32_t s)
{
    r->mt[0] = s;
    for (int i = 1; i < MT_N; i++)
        r->mt[i] = 1812433253U * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->mti = MT_N;
}

void devops_rng_seed(devops_rng_t *r, uint64_t seed)
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    int klen = key[1] ? 2 : 1;
    init_genrand(r, 19650218U);
    int i = 1, j = 0;
    for (int k = MT_N > klen ? MT_N : klen; k; k--) {
        r->mt[i] =
            (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525U)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
        if (j >= klen)
            j = 0;
    }
    for (int k = MT_N - 1; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941U)) - (uint32_t)i;
        i++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
    }
    r->mt[0] = 0x80000000U;
    r->mti = MT_N;
    r->has_gauss_next = 0;
    r->gauss_next = 0;
}

uint32_t devops_rng_u32(devops_rng_t *r)
{
    static const uint32_t mag01[2] = {0x0U, 0x9908b0dfU};
    uint32_t y;
    if (r->mti >= MT_N) {
        int kk;
        for (kk = 0; kk < MT_N - MT_M; kk++) {
            y = (r->mt[kk] & 0x80000000U) | (r->mt[kk + 1] & 0x7fffffffU);
            r->mt[kk] = r->mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 1U];
        }
        for (; kk < MT_N - 1; kk++) {
            y = (r->mt[kk] & 0x80000000U) | (r->mt[kk + 1] & 0x7fffffffU);
            r->mt[kk] = r->mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1U];
        }
        y = (r->mt[MT_N - 1] & 0x80000000U) | (r->mt[0] & 0x7fffffffU);
        r->mt[MT_N - 1] = r->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1U];
        r->mti = 0;
    }
    y = r->mt[r->mti++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

double devops_rng_random(devops_rng_t *r)
{
    uint32_t a = devops_rng_u32(r) >> 5, b = devops_rng_u32(r) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

uint32_t devops_rng_below(devops_rng_t *r, uint32_t n)
{
    int k = 0;
    while (k < 32 && (n >> k) != 0)
        k++; /* n.bit_length() */
    uint32_t x;
    do {
        x = devops_rng_u32(r) >> (32 - k);
    } while (x >= n);
    return x;
}

double devops_rng_gauss(devops_rng_t *r, double mu, double sigma)
{
    double z;
    if (r->has_gauss_next) {
        z = r->gauss_next;
        r->has_gauss_next = 0;
    } else {
        double x2pi = devops_rng_random(r) * (2.0 * M_PI);
        double g2rad = sqrt(-2.0 * log(1.0 - devops_rng_random(r)));
        z = cos(x2pi) * g2rad;
        r->gauss_next = sin(x2pi) * g2rad;
        r->has_gauss_next = 1;
    }
    return mu + z * sigma;
}

/* ---- the generator -------------------------------------------------------------------- */

uint64_t devops_points_for_hours(double hours, uint32_t interval_s)
{
    if (!(hours > 0) || interval_s == 0)
        return 0;
    return (uint64_t)nearbyint(hours * 3600.0 / interval_s); /* round half to even, as Python */
}

void devops_destroy(devops_t *g)
{
    if (g == NULL)
        return;
    if (g->prefix)
        for (uint32_t i = 0; i < g->cfg.hosts; i++)
            free(g->prefix[i]);
    free(g->prefix);
    free(g->prefix_len);
    free(g->state);
    free(g);
}

static void set_ts(devops_t *g)
{
    int64_t ns = (g->cfg.start_s + (int64_t)(g->point * g->cfg.interval_s)) * 1000000000LL;
    g->ts_len = (size_t)snprintf(g->ts_text, sizeof(g->ts_text), " %lld\n", (long long)ns);
}

devops_t *devops_create(const devops_cfg_t *cfg)
{
    if (cfg->hosts == 0 || cfg->interval_s == 0 || cfg->decimals < 0 || cfg->decimals > 17)
        return NULL;
    devops_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->cfg = *cfg;
    uint32_t H = cfg->hosts;
    g->prefix = calloc(H, sizeof(*g->prefix));
    g->prefix_len = calloc(H, sizeof(*g->prefix_len));
    g->state = calloc((size_t)H * DEVOPS_FIELDS, sizeof(double));
    if (g->prefix == NULL || g->prefix_len == NULL || g->state == NULL)
        goto fail;
    devops_rng_seed(&g->rng, cfg->seed);
    devops_rng_t *r = &g->rng;
    for (uint32_t i = 0; i < H; i++) {
        const region_t *reg = &REGIONS[devops_rng_below(r, NELEM(REGIONS))];
        const char *dc = reg->dc[devops_rng_below(r, (uint32_t)reg->ndc)];
        uint32_t rack = devops_rng_below(r, RACKS_PER_DC);
        const char *os = OS_CHOICES[devops_rng_below(r, NELEM(OS_CHOICES))];
        const char *arch = ARCH_CHOICES[devops_rng_below(r, NELEM(ARCH_CHOICES))];
        const char *team = TEAM_CHOICES[devops_rng_below(r, NELEM(TEAM_CHOICES))];
        uint32_t service = devops_rng_below(r, N_SERVICES);
        const char *sv = SERVICE_VERSION_CHOICES[devops_rng_below(r, 2)];
        const char *env = SERVICE_ENV_CHOICES[devops_rng_below(r, NELEM(SERVICE_ENV_CHOICES))];
        char tmp[512];
        int n = snprintf(tmp, sizeof(tmp),
                         "cpu,hostname=host_%u,region=%s,datacenter=%s,rack=%u,os=%s,arch=%s,"
                         "team=%s,service=%u,service_version=%s,service_environment=%s ",
                         i, reg->name, dc, rack, os, arch, team, service, sv, env);
        g->prefix[i] = strdup(tmp);
        if (g->prefix[i] == NULL)
            goto fail;
        g->prefix_len[i] = (size_t)n;
    }
    for (size_t k = 0; k < (size_t)H * DEVOPS_FIELDS; k++)
        g->state[k] = devops_rng_random(r) * 100.0;
    set_ts(g);
    return g;
fail:
    devops_destroy(g);
    return NULL;
}

int devops_next_line(devops_t *g, st_buf_t *b)
{
    if (g->point >= g->cfg.points)
        return 0;
    uint32_t h = g->host;
    int rc = st_buf_reserve(b, g->prefix_len[h] + DEVOPS_FIELDS * (20 + 24) + g->ts_len);
    if (rc < 0)
        return rc;
    char *o = (char *)b->data + b->len, *start = o;
    memcpy(o, g->prefix[h], g->prefix_len[h]);
    o += g->prefix_len[h];
    double *st = g->state + (size_t)h * DEVOPS_FIELDS;
    for (int k = 0; k < DEVOPS_FIELDS; k++) {
        double v = st[k] + devops_rng_gauss(&g->rng, 0.0, 1.0);
        if (v > 100.0)
            v = 100.0;
        else if (v < 0.0)
            v = 0.0;
        st[k] = v;
        if (k)
            *o++ = ',';
        size_t fl = strlen(FIELDS[k]);
        memcpy(o, FIELDS[k], fl);
        o += fl;
        *o++ = '=';
        if (g->cfg.decimals == 0) {
            int iv = (int)v; /* truncation, as Python's int() */
            if (iv >= 100) {
                memcpy(o, "100", 3);
                o += 3;
            } else if (iv >= 10) {
                *o++ = (char)('0' + iv / 10);
                *o++ = (char)('0' + iv % 10);
            } else {
                *o++ = (char)('0' + iv);
            }
        } else {
            o += snprintf(o, 24, "%.*f", g->cfg.decimals, v);
        }
    }
    memcpy(o, g->ts_text, g->ts_len);
    o += g->ts_len;
    b->len += (size_t)(o - start);
    if (++g->host == g->cfg.hosts) {
        g->host = 0;
        g->point++;
        set_ts(g);
    }
    return 1;
}
