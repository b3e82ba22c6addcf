/*
 * test_cli_gz — the line reader `strata import` reads files with
 * (cli/gz.h): plain and gzip files give the same lines, a line longer than
 * the buffer comes back whole, the last line may lack its newline, a seek
 * to an uncompressed offset resumes mid-file, the size is the file's or the
 * gzip ISIZE, and truncated gzip data is a read error, not a silent end.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gz.h"
#include "st_buf.h"

static char *content(size_t *len)
{
    st_buf_t b;
    st_buf_init(&b);
    st_buf_append(&b, "first line\n", 11);
    for (int i = 0; i < 300000; i++) /* longer than the reader's first buffer */
        st_buf_put_u8(&b, (uint8_t)('a' + i % 26));
    st_buf_put_u8(&b, '\n');
    st_buf_append(&b, "\n", 1);
    st_buf_append(&b, "last, no newline", 16);
    *len = b.len;
    char *s = malloc(b.len);
    memcpy(s, b.data, b.len);
    st_buf_deinit(&b);
    return s;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Read every line of path into one buffer; returns the number of lines. */
static int read_all(const char *path, uint64_t seek, st_buf_t *out, uint64_t *size)
{
    gz_reader_t *r = gz_reader_open(path, size);
    assert_non_null(r);
    if (seek)
        assert_int_equal(gz_reader_seek(r, seek), 0);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    int lines = 0;
    while ((n = gz_reader_line(r, &buf, &cap)) >= 0) {
        st_buf_append(out, buf, (size_t)n);
        lines++;
    }
    assert_int_equal(n, -1);
    free(buf);
    gz_reader_close(r);
    return lines;
}

static void test_plain_and_gzip(void **state)
{
    (void)state;
    size_t len;
    char *s = content(&len);
    char plain[] = "/tmp/test_cli_gz_XXXXXX";
    int fd = mkstemp(plain);
    assert_true(fd >= 0);
    close(fd);
    write_file(plain, s, len);
    char gzp[64];
    snprintf(gzp, sizeof(gzp), "%s.gz", plain);
    st_buf_t z;
    st_buf_init(&z);
    assert_int_equal(gz_compress(&z, s, len, 6), 0);
    write_file(gzp, z.data, z.len);

    const char *paths[2] = {plain, gzp};
    for (int k = 0; k < 2; k++) {
        st_buf_t got;
        st_buf_init(&got);
        uint64_t size = 0;
        assert_int_equal(read_all(paths[k], 0, &got, &size), 4);
        assert_int_equal(size, len);
        assert_int_equal(got.len, len);
        assert_memory_equal(got.data, s, len);
        /* resume after the first line */
        st_buf_reset(&got);
        assert_int_equal(read_all(paths[k], 11, &got, NULL), 3);
        assert_int_equal(got.len, len - 11);
        assert_memory_equal(got.data, s + 11, len - 11);
        st_buf_deinit(&got);
    }

    /* truncated gzip: an error after the lines that were whole */
    write_file(gzp, z.data, z.len / 2);
    gz_reader_t *r = gz_reader_open(gzp, NULL);
    assert_non_null(r);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = gz_reader_line(r, &buf, &cap)) >= 0)
        ;
    assert_int_equal(n, -2);
    assert_int_equal(errno, EIO);
    free(buf);
    gz_reader_close(r);

    assert_null(gz_reader_open("/nonexistent/file.lp", NULL));
    assert_int_equal(errno, ENOENT);
    unlink(plain);
    unlink(gzp);
    st_buf_deinit(&z);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_gzip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
