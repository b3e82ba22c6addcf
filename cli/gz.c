/* gz — gzip a request body with zlib. See gz.h. */
#include "gz.h"

#include <zlib.h>

#include "st_err.h"

int gz_compress(st_buf_t *out, const void *p, size_t n, int level)
{
    z_stream zs = {0};
    if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return ST_ENOMEM;
    st_buf_reset(out);
    int rc = st_buf_reserve(out, deflateBound(&zs, (uLong)n) + 64);
    if (rc < 0) {
        deflateEnd(&zs);
        return rc;
    }
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out->data;
    zs.avail_out = (uInt)(out->cap);
    int zr = deflate(&zs, Z_FINISH);
    out->len = zs.total_out;
    deflateEnd(&zs);
    return zr == Z_STREAM_END ? 0 : ST_EIO;
}
