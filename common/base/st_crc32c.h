/*
 * st_crc32c — CRC-32C (Castagnoli), the checksum of every on-disk record
 * and block in Strata. Uses the SSE4.2 crc32 instruction when the CPU has
 * it, a slicing-by-8 table otherwise; both give identical results.
 */
#ifndef ST_CRC32C_H
#define ST_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend `crc` (0 to start) over `n` bytes at `p`. */
uint32_t st_crc32c(uint32_t crc, const void *p, size_t n);

#endif
