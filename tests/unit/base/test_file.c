/*
 * Unit tests for common/base/st_file: whole-buffer writes and reads, the
 * iovec walk (empty entries, an entry cut by a short write), directory
 * creation, directory fsync, and the error contract (ST_EIO with errno kept).
 * Each test works in its own mkdtemp directory under /tmp.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "st_err.h"
#include "st_file.h"

typedef struct tdir {
    char dir[64];
    char path[160];
} tdir_t;

static int setup(void **state)
{
    tdir_t *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    strcpy(t->dir, "/tmp/test_file.XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/f", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tdir_t *t = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    int rc = system(cmd);
    free(t);
    return rc == 0 ? 0 : -1;
}

/* The whole file, NUL-terminated, in buf (capacity cap); returns its length. */
static size_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
    close(fd);
    return (size_t)n;
}

static void test_write_all_and_pwrite_all(void **state)
{
    tdir_t *t = *state;
    int fd = open(t->path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(st_write_all(fd, "hello ", 6), 0);
    assert_int_equal(st_write_all(fd, "world", 5), 0);
    assert_int_equal(st_write_all(fd, "", 0), 0);
    /* pwrite leaves the file position alone */
    assert_int_equal(st_pwrite_all(fd, "W", 1, 6), 0);
    assert_int_equal(st_write_all(fd, "!", 1), 0);
    close(fd);
    char buf[64];
    assert_int_equal(slurp(t->path, buf, sizeof buf), 12);
    assert_string_equal(buf, "hello World!");

    /* a large buffer arrives whole */
    size_t big = 3u << 20;
    uint8_t *b = malloc(big), *r = malloc(big);
    assert_non_null(b);
    assert_non_null(r);
    for (size_t i = 0; i < big; i++)
        b[i] = (uint8_t)(i * 131 + 7);
    fd = open(t->path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(st_pwrite_all(fd, b, big, 100), 0);
    assert_int_equal(st_pread_all(fd, r, big, 100), 0);
    assert_memory_equal(b, r, big);
    close(fd);
    free(b);
    free(r);
}

static void test_pwritev_all(void **state)
{
    tdir_t *t = *state;
    int fd = open(t->path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    assert_true(fd >= 0);
    struct iovec v[5] = {
        {(void *)"", 0}, {(void *)"abc", 3}, {(void *)"", 0}, {(void *)"defg", 4}, {(void *)"", 0}};
    struct iovec copy[5];
    memcpy(copy, v, sizeof v);
    assert_int_equal(st_pwritev_all(fd, v, 5, 2), 0);
    assert_memory_equal(v, copy, sizeof v); /* the caller's array is untouched */
    assert_int_equal(st_pwritev_all(fd, v, 0, 0), 0);
    assert_int_equal(st_pwritev_all(fd, v, 1, 0), 0); /* only an empty entry */
    assert_int_equal(st_pwrite_all(fd, "xy", 2, 0), 0);
    close(fd);
    char buf[64];
    assert_int_equal(slurp(t->path, buf, sizeof buf), 9);
    assert_string_equal(buf, "xyabcdefg");
}

/*
 * A file size limit makes pwritev(2) stop short inside the second entry;
 * the rest of that entry is then refused (EFBIG): the bytes before the
 * limit are in place and the error comes back as ST_EIO with errno kept.
 */
static void test_pwritev_short_then_error(void **state)
{
    tdir_t *t = *state;
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    int fd = open(t->path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    assert_true(fd >= 0);
    lim = old;
    lim.rlim_cur = 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    struct iovec v[2] = {{(void *)"abcdef", 6}, {(void *)"ghijkl", 6}};
    errno = 0;
    int rc = st_pwritev_all(fd, v, 2, 0);
    int e = errno;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    close(fd);
    assert_int_equal(rc, ST_EIO);
    assert_int_equal(e, EFBIG);
    char buf[64];
    assert_int_equal(slurp(t->path, buf, sizeof buf), 10);
    assert_string_equal(buf, "abcdefghij");
}

static void test_pread_all(void **state)
{
    tdir_t *t = *state;
    int fd = open(t->path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(st_write_all(fd, "0123456789", 10), 0);
    char b[16] = {0};
    assert_int_equal(st_pread_all(fd, b, 4, 3), 0);
    assert_memory_equal(b, "3456", 4);
    assert_int_equal(st_pread_all(fd, b, 0, 100), 0);
    assert_int_equal(st_pread_all(fd, b, 4, 8), ST_EAGAIN); /* the file ends first */
    assert_int_equal(st_pread_all(fd, b, 1, 10), ST_EAGAIN);
    close(fd);
}

static void test_bad_fd(void **state)
{
    char b[4] = {0};
    struct iovec v = {b, sizeof b};
    errno = 0;
    assert_int_equal(st_write_all(-1, b, sizeof b), ST_EIO);
    assert_int_equal(errno, EBADF);
    errno = 0;
    assert_int_equal(st_pwrite_all(-1, b, sizeof b, 0), ST_EIO);
    assert_int_equal(errno, EBADF);
    errno = 0;
    assert_int_equal(st_pwritev_all(-1, &v, 1, 0), ST_EIO);
    assert_int_equal(errno, EBADF);
    errno = 0;
    assert_int_equal(st_pread_all(-1, b, sizeof b, 0), ST_EIO);
    assert_int_equal(errno, EBADF);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mkdir(void **state)
{
    tdir_t *t = *state;
    char p[256];
    snprintf(p, sizeof p, "%s/a", t->dir);
    assert_int_equal(st_mkdir(p), 0);
    assert_int_equal(st_mkdir(p), 0); /* already there */
    assert_true(is_dir(p));
    snprintf(p, sizeof p, "%s/x/y", t->dir);
    errno = 0;
    assert_int_equal(st_mkdir(p), ST_EIO); /* one level only */
    assert_int_equal(errno, ENOENT);

    snprintf(p, sizeof p, "%s/b/c//d/", t->dir);
    assert_int_equal(st_mkdir_p(p), 0);
    assert_int_equal(st_mkdir_p(p), 0);
    snprintf(p, sizeof p, "%s/b/c/d", t->dir);
    assert_true(is_dir(p));
    assert_int_equal(st_mkdir_p(""), 0);

    /* a file in the way */
    int fd = open(t->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof p, "%s/sub", t->path);
    errno = 0;
    assert_int_equal(st_mkdir_p(p), ST_EIO);
    assert_int_equal(errno, ENOTDIR);
}

static void test_fsync_dir(void **state)
{
    tdir_t *t = *state;
    assert_int_equal(st_fsync_dir(t->dir), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/missing", t->dir);
    errno = 0;
    assert_int_equal(st_fsync_dir(p), ST_EIO);
    assert_int_equal(errno, ENOENT);
    int fd = open(t->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    errno = 0;
    assert_int_equal(st_fsync_dir(t->path), ST_EIO); /* not a directory */
    assert_int_equal(errno, ENOTDIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_all_and_pwrite_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pwritev_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pwritev_short_then_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pread_all, setup, teardown),
        cmocka_unit_test(test_bad_fd),
        cmocka_unit_test_setup_teardown(test_mkdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
