/*
 * cli_load — stream a line-oriented file to one router endpoint in batches
 * of whole lines: the engine behind `strata write` (line protocol to /write)
 * and `strata import` (line protocol, JSON lines, Prometheus text, CSV).
 *
 * Threads: the caller's thread reads lines from a source (load_cfg_t.next)
 * and cuts batches of at most batch_lines lines and batch_bytes bytes into a
 * bounded queue; `conns` workers each own one keep-alive connection and POST
 * batches from the queue; a progress thread prints the progress line
 * (cli_progress_format). Batches may complete out of order; every batch
 * remembers its first file line, so the router's batch-relative line numbers
 * in a 400 body become file line numbers.
 *
 * Per response: 204/200 ok; 400 partial write (print the rejected lines, go
 * on); 413 split the batch in two and send the halves; 429/5xx and
 * connection errors retry the same body with exponential backoff (Retry-After
 * honoured up to 30 s; the contract makes retries safe) up to `retries`
 * attempts; anything else stops the load.
 *
 * The acknowledged mark: batches are numbered as they are cut; the mark is
 * the end (byte offset, line) of the longest prefix of batches that all got
 * their answer (204, or a 400 whose rejected lines were reported). Every
 * byte before the mark is stored; a load stopped for any reason can restart
 * at the mark and lose nothing. To keep the mark close to the reader, no
 * batch is cut more than LOAD_WINDOW(conns) batches past it. on_mark is
 * called (under the loader's lock, so keep it short) each time it advances.
 */
#ifndef CLI_LOAD_H
#define CLI_LOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "httpc.h"

/* Where a load stands: everything before (offset, line) is acknowledged. */
typedef struct load_mark {
    uint64_t offset;  /* bytes of the (uncompressed) input */
    uint64_t line;    /* lines of the input */
    uint64_t samples; /* samples acknowledged since the load started */
} load_mark_t;

/* Samples in one line of the input (0 for blank lines and comments). */
typedef uint64_t (*load_count_fn)(const char *line, size_t n, const void *arg);
/* Next line with its '\n' into *buf (getline() semantics): its length, -1 at EOF, -2 on a
 * read error (errno says which). */
typedef ssize_t (*load_next_fn)(void *src, char **buf, size_t *cap);
typedef void (*load_mark_fn)(void *ud, const load_mark_t *mark);

typedef struct load_cfg {
    const char *file; /* shown in messages ("stdin", a path) */
    httpc_url_t url;
    const char *target;  /* path + query */
    const char *headers; /* request headers, each "Name: value\r\n" */
    bool gzip;           /* send Content-Encoding: gzip bodies */
    int retries;         /* attempts per batch */
    uint64_t max_errors; /* rejected lines to print */
    int io_timeout_ms;
    size_t conns;
    uint64_t batch_lines, batch_bytes;
    bool quiet;
    double progress_every; /* seconds between progress lines when stderr is not a TTY */
    uint64_t bytes_total;  /* bytes the source will deliver, 0 = unknown */
    load_count_fn count;
    const void *count_arg;
    load_next_fn next;
    void *src;
    load_mark_t start;      /* offset and line the source starts at (samples: 0) */
    load_mark_fn on_mark;   /* may be NULL */
    void *mark_ud;          /* for on_mark */
    atomic_bool *interrupt; /* set from outside (a signal) to stop; may be NULL */
} load_cfg_t;

typedef struct load_result {
    uint64_t lines, samples, bytes, rejected, retries; /* acknowledged */
    uint64_t lines_read;                               /* lines read from the source */
    bool aborted;                                      /* stopped before the end */
    bool interrupted;                                  /* ... because *interrupt was set */
    char fatal[512];                                   /* why, when aborted */
    load_mark_t mark;                                  /* the acknowledged mark at the end */
} load_result_t;

/* Batches cut past the mark at most. */
#define LOAD_WINDOW(conns) (4 * (conns) + 4)

/*
 * Run the load to the end of the source (or until it aborts). Returns 0 when
 * it ran (see res->aborted), or ST_ENOMEM / ST_EIO when it could not start
 * (threads, memory) with the reason in res->fatal.
 */
int load_run(const load_cfg_t *cfg, load_result_t *res /* OUT */);

#endif
