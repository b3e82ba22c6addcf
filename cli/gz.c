/* gz — gzip bodies and gzip-or-plain line reading with zlib. See gz.h. */
#include "gz.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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

struct gz_reader {
    gzFile f;
};

/* A regular file's uncompressed size: its size, or a gzip file's ISIZE (mod 2^32). */
static uint64_t file_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    unsigned char m[2], t[4];
    if (st.st_size < 18 || pread(fd, m, 2, 0) != 2 || m[0] != 0x1f || m[1] != 0x8b)
        return (uint64_t)st.st_size;
    if (pread(fd, t, 4, st.st_size - 4) != 4)
        return 0;
    return (uint64_t)t[0] | (uint64_t)t[1] << 8 | (uint64_t)t[2] << 16 | (uint64_t)t[3] << 24;
}

gz_reader_t *gz_reader_open(const char *path, uint64_t *size_out)
{
    int fd = strcmp(path, "-") == 0 ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    if (size_out)
        *size_out = file_size(fd);
    gz_reader_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->f = gzdopen(fd, "rb")) == NULL) {
        int e = r ? EIO : ENOMEM;
        free(r);
        close(fd);
        errno = e;
        return NULL;
    }
    gzbuffer(r->f, 256 * 1024);
    return r;
}

int gz_reader_seek(gz_reader_t *r, uint64_t offset)
{
    return gzseek(r->f, (z_off_t)offset, SEEK_SET) == (z_off_t)offset ? 0 : ST_EIO;
}

ssize_t gz_reader_line(void *src, char **buf, size_t *cap)
{
    gz_reader_t *r = src;
    size_t len = 0;
    for (;;) {
        if (*buf == NULL || *cap - len < 2) {
            size_t nc = *buf == NULL ? 65536 : *cap * 2;
            char *nb = realloc(*buf, nc);
            if (nb == NULL) {
                errno = ENOMEM;
                return -2;
            }
            *buf = nb;
            *cap = nc;
        }
        size_t room = *cap - len > INT_MAX ? INT_MAX : *cap - len;
        if (gzgets(r->f, *buf + len, (int)room) == NULL) {
            int zerr;
            gzerror(r->f, &zerr);
            if (zerr != Z_OK) {
                errno = EIO;
                return -2;
            }
            return len > 0 ? (ssize_t)len : -1;
        }
        size_t got = strlen(*buf + len);
        len += got;
        if (got + 1 < room || (len > 0 && (*buf)[len - 1] == '\n'))
            return (ssize_t)len; /* a whole line, or the last one */
    }
}

void gz_reader_close(gz_reader_t *r)
{
    if (r) {
        gzclose(r->f);
        free(r);
    }
}
