/*
 * st_varint — LEB128 varints, zigzag, and little-endian loads/stores.
 *
 * Decoders take (p, end) and never read past `end`: they return the number
 * of bytes consumed, 0 when the input ends mid-varint (need more bytes), or
 * -1 when the varint is longer than 10 bytes / overflows 64 bits.
 */
#ifndef ST_VARINT_H
#define ST_VARINT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ST_UVARINT_MAX 10

static inline uint64_t st_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t st_unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static inline size_t st_uvarint_put(uint8_t *p, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        p[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[i++] = (uint8_t)v;
    return i;
}

/* Bytes st_uvarint_put writes for v. */
static inline size_t st_uvarint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline int st_uvarint_get(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    for (int i = 0; i < ST_UVARINT_MAX; i++) {
        if (p + i >= end)
            return 0;
        uint8_t b = p[i];
        if (i == 9 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return i + 1;
        }
        shift += 7;
    }
    return -1;
}

static inline int st_svarint_get(const uint8_t *p, const uint8_t *end, int64_t *out)
{
    uint64_t u;
    int n = st_uvarint_get(p, end, &u);
    if (n > 0)
        *out = st_unzigzag(u);
    return n;
}

static inline void st_store_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void st_store_u64le(uint8_t *p, uint64_t v)
{
    st_store_u32le(p, (uint32_t)v);
    st_store_u32le(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t st_load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t st_load_u64le(const uint8_t *p)
{
    return (uint64_t)st_load_u32le(p) | (uint64_t)st_load_u32le(p + 4) << 32;
}

static inline uint64_t st_f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static inline double st_bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

#endif
