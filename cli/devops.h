/*
 * devops — the TSBS-like devops "cpu-only" workload, generated in memory.
 *
 * Byte-for-byte the reference devops workload generator: the same
 * Mersenne Twister seeding as Python's random.Random(seed), the same order of
 * draws (host tags with choice()/randrange(), initial states with random(),
 * then gauss() steps), and the same formatting, so for equal arguments
 *  `strata bench --print` and the reference generator write identical line protocol:
 *
 *   cpu,hostname=host_0,region=...,service_environment=... usage_user=58,...,usage_guest_nice=38
 * 1451606400000000000
 *
 * H hosts, one point per host every interval seconds in time-major order
 * (all hosts at t, then all at t + interval ...), 10 fields per point, each
 * a random walk (step ~ N(0,1)) clamped to [0, 100]; values printed truncated
 * to integers (decimals = 0) or with `decimals` digits; timestamps in ns.
 */
#ifndef DEVOPS_H
#define DEVOPS_H

#include <stdint.h>

#include "st_buf.h"

#define DEVOPS_FIELDS 10

typedef struct devops_cfg {
    uint32_t hosts;
    uint64_t points;     /* per host */
    uint32_t interval_s; /* default 10 */
    int64_t start_s;     /* unix seconds, default 1451606400 (2016-01-01T00:00:00Z) */
    uint64_t seed;       /* default 1 */
    int decimals;        /* 0..17 */
} devops_cfg_t;

typedef struct devops devops_t;

/* Points per host for a duration in hours, as gen_devops.py: round(hours*3600/interval). */
uint64_t devops_points_for_hours(double hours, uint32_t interval_s);

/* Returns NULL on a bad config (hosts 0, interval 0, decimals out of range) or no memory. */
devops_t *devops_create(const devops_cfg_t *cfg);
void devops_destroy(devops_t *g);

/*
 * Append the next line (with its '\n') to b. Returns 1 when a line was
 * appended, 0 when every point is done, ST_ENOMEM.
 */
int devops_next_line(devops_t *g, st_buf_t *b);

/* ---- the Python-compatible PRNG, exposed for tests -------------------------------------- */

typedef struct devops_rng {
    uint32_t mt[624];
    int mti;
    double gauss_next;
    int has_gauss_next;
} devops_rng_t;

/* random.Random(seed) for a non-negative integer seed. */
void devops_rng_seed(devops_rng_t *r, uint64_t seed);
uint32_t devops_rng_u32(devops_rng_t *r);
double devops_rng_random(devops_rng_t *r);              /* random.random() */
uint32_t devops_rng_below(devops_rng_t *r, uint32_t n); /* random._randbelow(n), n >= 1 */
double devops_rng_gauss(devops_rng_t *r, double mu, double sigma);

#endif
