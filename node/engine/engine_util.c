/*
 * engine_util — the engine's leaf helpers: the per-thread error detail
 * (engine_last_error), the wall clock and partition arithmetic.
 *
 * Every other engine file may call these; they call nothing of the engine
 * back, which keeps the call graph one-way: engine.c (open, write, the
 * background thread) uses engine_flush.c (partitions, flush, compaction,
 * retention) and engine_head.c; all of them use this file.
 */
#include <stdarg.h>
#include <stdio.h>
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
