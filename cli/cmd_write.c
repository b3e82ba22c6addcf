/*
 * strata write FILE — stream line protocol to POST /write in batches.
 *
 * The batching, retries, 400/413 handling and the progress line are
 * cli_load's (cli_load.h); this file is the command: its options, the
 * /write target, the file and the summary line.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_load.h"
#include "st_err.h"

static const char *CMD = "write";

/* ---- main ------------------------------------------------------------------------------------ */

typedef struct write_opts {
    cli_common_t common;
    uint64_t batch_lines, batch_bytes, conns, retries, max_errors;
    const char *precision, *consistency, *db;
    double progress_every;
    bool gzip, quiet;
} write_opts_t;

/* "/write?precision=..&consistency=..&db=.." into target; 0 or a usage error's exit code. */
static int write_target(char *target, size_t cap, const write_opts_t *o)
{
    st_buf_t tb;
    st_buf_init(&tb);
    st_buf_append(&tb, "/write?precision=", 17);
    httpc_query_escape(&tb, o->precision);
    if (o->consistency) {
        st_buf_append(&tb, "&consistency=", 13);
        httpc_query_escape(&tb, o->consistency);
    }
    if (o->db) {
        st_buf_append(&tb, "&db=", 4);
        httpc_query_escape(&tb, o->db);
    }
    int rc = 0;
    if (tb.len >= cap) {
        rc = cli_usage_error(CMD, "parameters too long");
    } else {
        memcpy(target, tb.data, tb.len);
        target[tb.len] = '\0';
    }
    st_buf_deinit(&tb);
    return rc;
}

static ssize_t file_next(void *src, char **buf, size_t *cap)
{
    ssize_t n = getline(buf, cap, src);
    return n >= 0 ? n : ferror((FILE *)src) ? -2 : -1;
}

static uint64_t lp_count(const char *line, size_t n, const void *arg)
{
    (void)arg;
    return cli_lp_count_fields(line, n);
}

static int run_write(void *opts, int argc, char **argv)
{
    (void)argc;
    const write_opts_t *o = opts;
    char target[512];
    const char *shown_router;
    load_cfg_t cfg = {
        .file = argv[0],
        .target = target,
        .headers = o->gzip ? "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Encoding: gzip\r\n"
                           : "Content-Type: text/plain; charset=utf-8\r\n",
        .gzip = o->gzip,
        .retries = (int)o->retries,
        .max_errors = o->max_errors,
        .io_timeout_ms = (int)(o->common.timeout * 1000),
        .conns = (size_t)o->conns,
        .batch_lines = o->batch_lines,
        .batch_bytes = o->batch_bytes,
        .quiet = o->quiet,
        .progress_every = o->progress_every,
        .count = lp_count,
        .next = file_next,
    };
    int rc = cli_common_router(CMD, &o->common, &cfg.url, &shown_router);
    if (rc == 0)
        rc = write_target(target, sizeof(target), o);
    if (rc != 0)
        return rc;
    FILE *in = strcmp(cfg.file, "-") == 0 ? stdin : fopen(cfg.file, "rb");
    if (in == NULL)
        return cli_fail(CMD, "%s: %s", cfg.file, strerror(errno));
    if (in == stdin)
        cfg.file = "stdin";
    struct stat stt;
    if (fstat(fileno(in), &stt) == 0 && S_ISREG(stt.st_mode))
        cfg.bytes_total = (uint64_t)stt.st_size;
    cfg.src = in;
    load_result_t r;
    double t0 = httpc_now();
    rc = load_run(&cfg, &r);
    if (in != stdin)
        fclose(in);
    if (rc < 0)
        return cli_fail(CMD, "%s", r.fatal);
    double el = httpc_now() - t0;
    if (el <= 0)
        el = 1e-9;
    printf("strata write: lines=%llu samples=%llu bytes=%llu seconds=%.2f samples_per_s=%.0f "
           "mb_per_s=%.1f rejected=%llu retries=%llu%s\n",
           (unsigned long long)r.lines, (unsigned long long)r.samples, (unsigned long long)r.bytes,
           el, (double)r.samples / el, (double)r.bytes / el / 1e6, (unsigned long long)r.rejected,
           (unsigned long long)r.retries, r.aborted ? " (incomplete)" : "");
    fflush(stdout);
    if (r.aborted)
        return cli_fail(CMD, "%s (%llu of %llu lines written)", r.fatal,
                        (unsigned long long)r.lines, (unsigned long long)r.lines_read);
    if (r.rejected)
        return cli_fail(CMD, "%llu line%s rejected by the router", (unsigned long long)r.rejected,
                        r.rejected == 1 ? "" : "s");
    return CLI_EXIT_OK;
}

static const cli_opt_t WRITE_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    CLI_OPT_U64(write_opts_t, batch_lines, "batch", 1, 10000000, " (1..10000000 lines)",
                "--batch LINES", "lines per request (default 5000)"),
    CLI_OPT_U64(write_opts_t, batch_bytes, "batch-bytes", 1024, (uint64_t)1 << 32,
                " (1024..4294967296)", "--batch-bytes BYTES",
                "bytes per request at most (default 8388608)"),
    CLI_OPT_CHOICE(write_opts_t, precision, "precision", "ns|us|u|ms|s|m|h", " (ns|us|ms|s|m|h)",
                   "--precision P", "ns|us|ms|s|m|h timestamps in FILE (default ns)"),
    CLI_OPT_U64(write_opts_t, conns, "conns", 1, 256, " (1..256)", "--conns N",
                "parallel connections (default 2)"),
    CLI_OPT_CHOICE(write_opts_t, consistency, "consistency", CLI_CONSISTENCY_CHOICES,
                   " (sync|quorum|async)", "--consistency C",
                   "sync|quorum|async, overrides the cluster's write_consistency"),
    {.name = "db",
     .kind = CLI_STR,
     .off = offsetof(write_opts_t, db),
     .label = "--db NAME",
     .help = "db parameter (accepted, ignored by Strata)"},
    CLI_OPT_FLAG(write_opts_t, gzip, "gzip", "send Content-Encoding: gzip bodies"),
    CLI_OPT_U64(write_opts_t, retries, "retries", 1, 1000, " (1..1000)", "--retries N",
                "attempts per batch on 429/5xx/connection errors (default 8)"),
    CLI_OPT_U64(write_opts_t, max_errors, "max-errors", 0, 1000000000, NULL, "--max-errors N",
                "rejected lines to print (default 50; all are counted)"),
    CLI_OPT_DURATION(write_opts_t, progress_every, "progress-interval", 0.1, false,
                     "--progress-interval S",
                     "seconds between progress lines when stderr is not a TTY\n"
                     "(default 10; a TTY gets a live bar)"),
    {.name = "quiet",
     .kind = CLI_FLAG,
     .off = offsetof(write_opts_t, quiet),
     .short_name = 'q',
     .label = "--quiet",
     .help = "no progress output"},
    CLI_OPT_TIMEOUT("per-request inactivity timeout"),
    CLI_OPT_END,
};

static const write_opts_t WRITE_DEFAULTS = {.common = CLI_COMMON_DEFAULTS,
                                            .batch_lines = 5000,
                                            .batch_bytes = 8 << 20,
                                            .conns = 2,
                                            .retries = 8,
                                            .max_errors = 50,
                                            .precision = "ns",
                                            .progress_every = 10};

const cli_cmd_t cli_cmd_write = {
    .name = "write",
    .args = "FILE",
    .summary = "load a line-protocol file ('-' = stdin)",
    .synopsis = "write FILE [options]     (FILE '-' = stdin)",
    .about = "Load an InfluxDB line-protocol file through POST /write.\n",
    .footer = "\nPrints a summary line on stdout. Exit 1 if a batch could not be written\n"
              "or the router rejected any line.\n",
    .help_col = 26,
    .min_args = 1,
    .max_args = 1,
    .too_many = "too many arguments",
    .opts = WRITE_OPTS,
    .opts_size = sizeof(write_opts_t),
    .defaults = &WRITE_DEFAULTS,
    .run = run_write,
};
