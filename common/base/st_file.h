/*
 * st_file — the few POSIX file chores every durable module repeats: write or
 * read a whole buffer despite short transfers and EINTR, create directories,
 * fsync a directory so that a create / rename / unlink in it survives a
 * power cut.
 *
 * Conventions: 0 on success, ST_EIO on a failed system call with errno left
 * as that call set it (callers may report strerror(errno)), ST_ENOMEM when a
 * path copy cannot be allocated. A transfer that makes no progress (write
 * returning 0) is ST_EIO with errno = EIO. Nothing here logs or keeps state;
 * every function is thread-safe as far as the file descriptor allows.
 */
#ifndef ST_FILE_H
#define ST_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* write(2) all `len` bytes of `buf` at the file position. */
int st_write_all(int fd, const void *buf, size_t len);
/* pwrite(2) all `len` bytes of `buf` at offset `off` (the file position is unchanged). */
int st_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* pwritev(2) all bytes of iov[0..iovcnt) at offset `off`; `iov` is not modified. */
int st_pwritev_all(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
/*
 * pread(2) exactly `len` bytes at offset `off`. ST_EIO on a read error,
 * ST_EAGAIN when the file ends first (it is shorter than the caller thought).
 */
int st_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* mkdir(path, 0755); an existing entry of that name is success. */
int st_mkdir(const char *path);
/* st_mkdir of every component of `path` in turn ("a", "a/b", "a/b/c"). */
int st_mkdir_p(const char *path);
/* open the directory `path` and fsync(2) it. */
int st_fsync_dir(const char *path);

#endif
