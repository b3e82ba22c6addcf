/*
 * engine_util — the engine's leaf helpers: the per-thread error detail
 * (engine_last_error), the failure state behind engine_health (with the
 * log callback) and partition arithmetic.
 *
 * Every other engine file may call these; they call nothing of the engine
 * back, which keeps the call graph one-way: engine.c (open, write, the
 * background thread) uses engine_flush.c (partitions, flush, compaction,
 * retention) and engine_head.c; all of them use this file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine_internal.h"

static __thread char last_error[512];

const char *engine_last_error(void)
{
    return last_error;
}

void engine_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

void engine_clear_error(void)
{
    last_error[0] = '\0';
}

int64_t engine_part_start(const engine_t *e, int64_t ts)
{
    int64_t p = e->o.partition_ms;
    int64_t q = ts / p;
    if (ts % p < 0)
        q--;
    return q * p;
}

static const char *const fail_names[FAIL_KINDS] = {"flush", "WAL write", "compaction", "retention"};

void engine_fail(engine_t *e, int kind, const char *fmt, ...)
{
    char msg[sizeof e->fail[0]];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&e->health_mu);
    int changed = strcmp(e->fail[kind], msg) != 0;
    snprintf(e->fail[kind], sizeof e->fail[kind], "%s", msg);
    pthread_mutex_unlock(&e->health_mu);
    if (changed && e->o.log) {
        char line[512];
        snprintf(line, sizeof line, "%s failing (retried): %s [%s]", fail_names[kind], msg, e->dir);
        e->o.log(e->o.log_arg, ENGINE_LOG_ERROR, line);
    }
}

void engine_recovered(engine_t *e, int kind)
{
    pthread_mutex_lock(&e->health_mu);
    int was = e->fail[kind][0] != '\0';
    e->fail[kind][0] = '\0';
    pthread_mutex_unlock(&e->health_mu);
    if (was && e->o.log) {
        char line[512];
        snprintf(line, sizeof line, "%s recovered [%s]", fail_names[kind], e->dir);
        e->o.log(e->o.log_arg, ENGINE_LOG_INFO, line);
    }
}

int engine_health(engine_t *e, char *reason, size_t cap)
{
    int bad = 0;
    if (cap)
        reason[0] = '\0';
    pthread_mutex_lock(&e->health_mu);
    for (int k = 0; k < FAIL_KINDS && !bad; k++) {
        if (e->fail[k][0]) {
            bad = 1;
            if (cap)
                snprintf(reason, cap, "%s failing: %s", fail_names[k], e->fail[k]);
        }
    }
    pthread_mutex_unlock(&e->health_mu);
    return bad;
}
