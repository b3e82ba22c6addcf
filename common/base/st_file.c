/*
 * st_file — whole-buffer I/O and directory helpers; see st_file.h.
 *
 * Each transfer loops until every byte moved: EINTR retries, a short count
 * advances, an error returns ST_EIO with errno untouched. st_pwritev_all
 * walks the caller's iovec array by index (it stays const): whole entries go
 * to pwritev(2), the rest of an entry cut by a short write goes to pwrite(2).
 */
#include "st_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_err.h"

/* A transfer of a non-empty request returned `r`: 1 = retry, 0 = progress, < 0 = error. */
static int check_io(ssize_t r)
{
    if (r < 0)
        return errno == EINTR ? 1 : ST_EIO;
    if (r == 0) {
        errno = EIO; /* no progress: never loop forever */
        return ST_EIO;
    }
    return 0;
}

/* write(2) at the file position when off < 0, else pwrite(2) at off. */
static int write_loop(int fd, const uint8_t *p, size_t len, int64_t off)
{
    while (len > 0) {
        ssize_t r = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, (off_t)off);
        int rc = check_io(r);
        if (rc > 0)
            continue;
        if (rc < 0)
            return rc;
        p += r;
        len -= (size_t)r;
        if (off >= 0)
            off += r;
    }
    return 0;
}

int st_write_all(int fd, const void *buf, size_t len)
{
    return write_loop(fd, buf, len, -1);
}

int st_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    if (off > INT64_MAX) {
        errno = EINVAL;
        return ST_EIO;
    }
    return write_loop(fd, buf, len, (int64_t)off);
}

int st_pwritev_all(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    int i = 0;
    size_t done = 0; /* bytes of iov[i] already written */
    for (;;) {
        while (i < iovcnt && done == iov[i].iov_len) {
            i++;
            done = 0;
        }
        if (i == iovcnt)
            return 0;
        ssize_t r = done == 0 ? pwritev(fd, iov + i, iovcnt - i, (off_t)off)
                              : pwrite(fd, (const uint8_t *)iov[i].iov_base + done,
                                       iov[i].iov_len - done, (off_t)off);
        int rc = check_io(r);
        if (rc > 0)
            continue;
        if (rc < 0)
            return rc;
        off += (uint64_t)r;
        size_t left = (size_t)r;
        while (left > 0) {
            size_t room = iov[i].iov_len - done;
            size_t k = left < room ? left : room;
            done += k;
            left -= k;
            if (done == iov[i].iov_len) {
                i++;
                done = 0;
            }
        }
    }
}

int st_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ST_EIO;
        }
        if (r == 0)
            return ST_EAGAIN; /* end of file first */
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int st_mkdir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return ST_EIO;
}

int st_mkdir_p(const char *path)
{
    size_t n = strlen(path);
    char *p = malloc(n + 1);
    if (!p)
        return ST_ENOMEM;
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (st_mkdir(p) != 0) {
            int e = errno;
            free(p);
            errno = e;
            return ST_EIO;
        }
        p[i] = c;
    }
    free(p);
    return 0;
}

int st_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ST_EIO;
    int rc = fsync(fd) == 0 ? 0 : ST_EIO;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}
