/* gz — gzip a request body (Content-Encoding: gzip) with zlib. */
#ifndef GZ_H
#define GZ_H

#include <stddef.h>

#include "st_buf.h"

/* Replace `out`'s contents with the gzip stream of [p, p+n). Returns 0 or ST_ENOMEM/ST_EIO. */
int gz_compress(st_buf_t *out, const void *p, size_t n, int level);

#endif
