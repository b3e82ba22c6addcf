/*
 * st_time — the two clocks Strata reads, in milliseconds:
 *   - st_now_ms: wall-clock time since the Unix epoch (CLOCK_REALTIME), for
 *     sample timestamps and anything compared across machines;
 *   - st_mono_ms: a monotonic clock (CLOCK_MONOTONIC) that never jumps, for
 *     deadlines, timeouts and elapsed times inside one process.
 * Code on a libuv loop keeps using uv_now(): its timers are scheduled
 * against that cached loop time. Also the calendar arithmetic dates need.
 */
#ifndef ST_TIME_H
#define ST_TIME_H

#include <stdint.h>

int64_t st_now_ms(void);
int64_t st_mono_ms(void);

/* Calendar arithmetic of the proleptic Gregorian calendar (Howard
 * Hinnant's algorithms), for every parser and printer of dates: days since
 * 1970-01-01 of year y, month m (1..12), day d (1..31), and back. */
int64_t st_days_from_civil(int64_t y, unsigned m, unsigned d);
void st_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

#endif
