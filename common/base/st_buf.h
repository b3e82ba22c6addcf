/*
 * st_buf — a growable byte buffer for encoders.
 *
 * A value type (caller allocates, _init/_deinit). Appends grow the buffer
 * geometrically; on allocation failure the buffer keeps its old contents and
 * the call returns ST_ENOMEM. Little-endian fixed-width and LEB128 varint
 * writers live here so every encoder speaks the same byte order.
 */
#ifndef ST_BUF_H
#define ST_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct st_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} st_buf_t;

void st_buf_init(st_buf_t *b);
void st_buf_deinit(st_buf_t *b);
/* Make room for at least `extra` more bytes. */
int st_buf_reserve(st_buf_t *b, size_t extra);
int st_buf_append(st_buf_t *b, const void *p, size_t n);
int st_buf_put_u8(st_buf_t *b, uint8_t v);
int st_buf_put_u32le(st_buf_t *b, uint32_t v);
int st_buf_put_u64le(st_buf_t *b, uint64_t v);
int st_buf_put_uvarint(st_buf_t *b, uint64_t v);
int st_buf_put_svarint(st_buf_t *b, int64_t v);
/* Append a string literal (its length known at compile time). */
#define ST_BUF_LIT(b, lit) st_buf_append((b), (lit), sizeof(lit) - 1)
/*
 * Growable arrays: make room for element n (0-based) of the array whose
 * pointer is at *parr and whose capacity (in elements of `size` bytes) is
 * *cap: when n == *cap the capacity doubles (starting at `first`). On
 * failure the array is unchanged and ST_ENOMEM returned. Use:
 *   if (x->n == x->cap && st_grow(&x->items, &x->cap, sizeof *x->items, 16))
 *       return ST_ENOMEM;
 */
int st_grow(void *parr, size_t *cap, size_t size, size_t first);
static inline void st_buf_reset(st_buf_t *b)
{
    b->len = 0;
}

#endif
