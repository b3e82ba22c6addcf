/*
 * st_time — the two clocks Strata reads, in milliseconds:
 *   - st_now_ms: wall-clock time since the Unix epoch (CLOCK_REALTIME), for
 *     sample timestamps and anything compared across machines;
 *   - st_mono_ms: a monotonic clock (CLOCK_MONOTONIC) that never jumps, for
 *     deadlines, timeouts and elapsed times inside one process.
 * Code on a libuv loop keeps using uv_now(): its timers are scheduled
 * against that cached loop time.
 */
#ifndef ST_TIME_H
#define ST_TIME_H

#include <stdint.h>

int64_t st_now_ms(void);
int64_t st_mono_ms(void);

#endif
