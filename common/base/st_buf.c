/* st_buf — growable byte buffer; see st_buf.h. */
#include "st_buf.h"

#include <stdlib.h>

#include "st_err.h"
#include "st_varint.h"

void st_buf_init(st_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void st_buf_deinit(st_buf_t *b)
{
    free(b->data);
    st_buf_init(b);
}

int st_buf_reserve(st_buf_t *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return ST_ENOMEM;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return ST_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int st_buf_append(st_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = st_buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int st_buf_put_u8(st_buf_t *b, uint8_t v)
{
    return st_buf_append(b, &v, 1);
}

int st_buf_put_u32le(st_buf_t *b, uint32_t v)
{
    uint8_t t[4];
    st_store_u32le(t, v);
    return st_buf_append(b, t, 4);
}

int st_buf_put_u64le(st_buf_t *b, uint64_t v)
{
    uint8_t t[8];
    st_store_u64le(t, v);
    return st_buf_append(b, t, 8);
}

int st_buf_put_uvarint(st_buf_t *b, uint64_t v)
{
    int rc = st_buf_reserve(b, ST_UVARINT_MAX);
    if (rc)
        return rc;
    b->len += st_uvarint_put(b->data + b->len, v);
    return 0;
}

int st_buf_put_svarint(st_buf_t *b, int64_t v)
{
    return st_buf_put_uvarint(b, st_zigzag(v));
}

int st_grow(void *parr, size_t *cap, size_t size, size_t first)
{
    size_t nc = *cap ? *cap * 2 : first;
    if (nc < *cap || nc > SIZE_MAX / size)
        return ST_ENOMEM;
    void *old;
    memcpy(&old, parr, sizeof old);
    void *p = realloc(old, nc * size);
    if (!p)
        return ST_ENOMEM;
    memcpy(parr, &p, sizeof p);
    *cap = nc;
    return 0;
}
