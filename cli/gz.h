/*
 * gz — gzip with zlib for the CLI: compress a request body
 * (Content-Encoding: gzip), and read an input file line by line whether it
 * is gzip-compressed or plain (zlib's transparent mode), with a seek to an
 * uncompressed offset for resuming.
 */
#ifndef GZ_H
#define GZ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "st_buf.h"

/* Replace `out`'s contents with the gzip stream of [p, p+n). Returns 0 or ST_ENOMEM/ST_EIO. */
int gz_compress(st_buf_t *out, const void *p, size_t n, int level);

typedef struct gz_reader gz_reader_t;

/*
 * Open `path` ("-" = stdin) for reading lines. *size_out (may be NULL) gets
 * the uncompressed size when known: the file's size, or a single-member gzip
 * file's ISIZE trailer; 0 when unknown (a pipe). NULL with errno on failure.
 */
gz_reader_t *gz_reader_open(const char *path, uint64_t *size_out /* OUT */);
/* Skip to uncompressed byte `offset`. Returns 0 or ST_EIO. */
int gz_reader_seek(gz_reader_t *r, uint64_t offset);
/*
 * The next line with its '\n' (the last may lack it) into *buf, grown as
 * getline() does: its length, -1 at the end, -2 on a read error or corrupt
 * or truncated gzip data (errno = EIO). `src` is a gz_reader_t.
 */
ssize_t gz_reader_line(void *src, char **buf, size_t *cap);
void gz_reader_close(gz_reader_t *r);

#endif
