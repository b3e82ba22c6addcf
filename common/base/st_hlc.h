/*
 * st_hlc — a hybrid logical clock: the version every coordinated write
 * carries, so that replicas agree on which of two writes of one (series,
 * timestamp) is the later one, whatever order they arrive in.
 *
 * A version is a uint64: the high 48 bits are wall-clock milliseconds since
 * the Unix epoch, the low 16 bits a counter that orders versions issued in
 * the same millisecond (or while the wall clock stands behind the last
 * version). Versions from one clock strictly increase; a clock that sees a
 * version from another node (st_hlc_observe) never issues a lower one
 * afterwards, so causally later writes get higher versions even across
 * nodes with skewed clocks. Version 0 means "unversioned" (data written
 * before versions existed) and is lower than every issued version.
 *
 * Thread-safe (one atomic word, compare-and-swap); no allocation.
 */
#ifndef ST_HLC_H
#define ST_HLC_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct st_hlc {
    _Atomic uint64_t last;
} st_hlc_t;

#define ST_HLC_COUNTER_BITS 16

/* The version of wall-clock ms `ms` with counter `c`, and its parts. */
static inline uint64_t st_hlc_make(int64_t ms, uint32_t c)
{
    return ((uint64_t)ms << ST_HLC_COUNTER_BITS) | (c & 0xffffu);
}
static inline int64_t st_hlc_ms(uint64_t version)
{
    return (int64_t)(version >> ST_HLC_COUNTER_BITS);
}

void st_hlc_init(st_hlc_t *c);
/* A new version, higher than every version this clock issued or observed;
 * now_ms is the wall clock (st_now_ms()). */
uint64_t st_hlc_next(st_hlc_t *c, int64_t now_ms);
/* A version seen from elsewhere: later st_hlc_next results exceed it. */
void st_hlc_observe(st_hlc_t *c, uint64_t version);

#endif
