/*
 * strata import FILE... — load files in the formats other tools write:
 *
 *   format  file names              endpoint                          samples per line
 *   lp      .lp .txt .influx        POST /write?precision=P           numeric fields
 *   json    .json .jsonl .ndjson    POST /api/v1/import               entries of "timestamps"
 *   prom    .prom                   POST /api/v1/import/prometheus    1 (not # or blank)
 *   csv     .csv (--csv-format)     POST /api/v1/import/csv?format=   metric columns of the spec
 *
 * A trailing .gz is decompressed (zlib; plain files pass through). Files are
 * loaded one after the other by cli_load (batches of whole lines, retries of
 * 429/5xx honouring Retry-After, 400s reported with file line numbers and
 * counted, the progress line).
 *
 * Resuming. Next to each FILE a state file FILE.strata-import records the
 * acknowledged mark (cli_load.h): every byte before it is stored. It is
 * rewritten (temp file + rename) at most every STATE_EVERY_S seconds while the
 * mark moves and once when the load stops, so after Ctrl-C, a lost
 * connection, a kill or a crash it names a point at or before where the
 * import really stopped. Text, one key=value a line:
 *
 *   strata-import 1          magic and version
 *   size=N  mtime=N          FILE's size and mtime (st_mtime) when it was written
 *   format=lp                the format used
 *   offset=N  line=N         the mark: uncompressed bytes and lines before it
 *   samples=N                samples acknowledged so far (all runs together)
 *   done=0|1                 1: FILE is complete (other files of the command were not)
 *
 * `--resume` starts each FILE at its state's mark (skips it when done=1); a
 * state of another FILE version (size or mtime differ) or format is an error.
 * Without --resume an existing state is replaced. When every FILE is loaded
 * the state files are removed. Reads of stdin ("-") are not resumable.
 *
 * Exit codes: 0 ok; 1 a failure, or lines rejected by the router; 2 usage;
 * 130 interrupted (SIGINT/SIGTERM; the state is saved, --resume continues).
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_load.h"
#include "gz.h"
#include "st_err.h"

static const char *CMD = "import";

#define STATE_SUFFIX ".strata-import"
#define STATE_EVERY_S 0.5

typedef struct import_opts {
    cli_common_t common;
    const char *format, *csv_format, *precision;
    uint64_t batch_lines, batch_bytes, conns, retries, max_errors;
    double progress_every;
    bool resume, quiet;
} import_opts_t;

/* ---- formats ------------------------------------------------------------------------------- */

static uint64_t count_lp(const char *line, size_t n, const void *arg)
{
    (void)arg;
    return cli_lp_count_fields(line, n);
}

static bool blank_or_comment(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i == n || s[i] == '#';
}

static uint64_t count_json(const char *s, size_t n, const void *arg)
{
    (void)arg;
    return cli_json_line_samples(s, n);
}

static uint64_t count_prom(const char *s, size_t n, const void *arg)
{
    (void)arg;
    return blank_or_comment(s, n) ? 0 : 1;
}

/* arg: the number of metric columns of the CSV spec. */
static uint64_t count_csv(const char *s, size_t n, const void *arg)
{
    return blank_or_comment(s, n) ? 0 : *(const uint64_t *)arg;
}

/* Metric columns of a VictoriaMetrics CSV spec ("1:label:host,2:metric:cpu"); 0 if malformed. */
static uint64_t csv_metric_columns(const char *spec)
{
    uint64_t metrics = 0;
    for (const char *p = spec; *p;) {
        size_t l = strcspn(p, ",");
        const char *c1 = memchr(p, ':', l);
        if (c1 == NULL || c1 == p)
            return 0;
        const char *t = c1 + 1;
        size_t tl = (size_t)(p + l - t);
        const char *c2 = memchr(t, ':', tl);
        if (c2)
            tl = (size_t)(c2 - t);
        if (tl == 6 && strncmp(t, "metric", 6) == 0)
            metrics++;
        else if (!((tl == 5 && strncmp(t, "label", 5) == 0) ||
                   (tl == 4 && strncmp(t, "time", 4) == 0)))
            return 0;
        p += l + (p[l] == ',');
    }
    return metrics;
}

/* The format of FILE from its name (a trailing .gz ignored), or NULL. */
static const char *format_of(const char *file)
{
    static const struct {
        const char *ext, *format;
    } EXT[] = {{".lp", "lp"},      {".txt", "lp"},      {".influx", "lp"}, {".json", "json"},
               {".jsonl", "json"}, {".ndjson", "json"}, {".prom", "prom"}, {".csv", "csv"}};
    size_t n = strlen(file);
    if (n > 3 && strcmp(file + n - 3, ".gz") == 0)
        n -= 3;
    for (size_t i = 0; i < sizeof(EXT) / sizeof(EXT[0]); i++) {
        size_t el = strlen(EXT[i].ext);
        if (n > el && strncmp(file + n - el, EXT[i].ext, el) == 0)
            return EXT[i].format;
    }
    return NULL;
}

/* ---- the state file -------------------------------------------------------------------------- */

typedef struct istate {
    char path[4096];
    uint64_t size, mtime;
    char format[8];
    load_mark_t mark;
    uint64_t samples_before; /* samples of earlier runs */
    bool done;
    double saved_at;
} istate_t;

static int state_save(const istate_t *s, const load_mark_t *m, bool done)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return ST_EIO;
    fprintf(f,
            "strata-import 1\nsize=%" PRIu64 "\nmtime=%" PRIu64 "\nformat=%s\noffset=%" PRIu64
            "\nline=%" PRIu64 "\nsamples=%" PRIu64 "\ndone=%d\n",
            s->size, s->mtime, s->format, m->offset, m->line, s->samples_before + m->samples,
            done ? 1 : 0);
    bool ok = fflush(f) == 0 && !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, s->path) != 0) {
        unlink(tmp);
        return ST_EIO;
    }
    return 0;
}

/* Read a state file: 0, ST_ENOENT when absent, ST_EPARSE when malformed. */
static int state_load(const char *path, istate_t *s)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? ST_ENOENT : ST_EIO;
    char line[256];
    int seen = 0;
    bool magic = false;
    while (fgets(line, sizeof(line), f)) {
        uint64_t v;
        char fmt[8];
        int done;
        if (strcmp(line, "strata-import 1\n") == 0)
            magic = true;
        else if (sscanf(line, "size=%" SCNu64, &v) == 1)
            s->size = v, seen |= 1;
        else if (sscanf(line, "mtime=%" SCNu64, &v) == 1)
            s->mtime = v, seen |= 2;
        else if (sscanf(line, "format=%7s", fmt) == 1)
            memcpy(s->format, fmt, sizeof(fmt)), seen |= 4;
        else if (sscanf(line, "offset=%" SCNu64, &v) == 1)
            s->mark.offset = v, seen |= 8;
        else if (sscanf(line, "line=%" SCNu64, &v) == 1)
            s->mark.line = v, seen |= 16;
        else if (sscanf(line, "samples=%" SCNu64, &v) == 1)
            s->samples_before = v, seen |= 32;
        else if (sscanf(line, "done=%d", &done) == 1)
            s->done = done != 0, seen |= 64;
    }
    fclose(f);
    return magic && seen == 127 ? 0 : ST_EPARSE;
}

static void on_mark(void *ud, const load_mark_t *m)
{
    istate_t *s = ud;
    double now = httpc_now();
    if (now - s->saved_at < STATE_EVERY_S)
        return;
    s->saved_at = now;
    state_save(s, m, false); /* a failed save keeps the older, earlier mark: still safe */
}

/* ---- one file ------------------------------------------------------------------------------- */

typedef struct totals {
    uint64_t files, lines, samples, bytes, rejected, retries;
} totals_t;

/* Import one file. Returns 0, CLI_EXIT_INTERRUPTED, or CLI_EXIT_FAIL after printing why. */
static int import_file(const import_opts_t *o, const load_cfg_t *base, const char *file,
                       const char *format, bool last, totals_t *t)
{
    bool is_stdin = strcmp(file, "-") == 0;
    istate_t st = {0};
    snprintf(st.format, sizeof(st.format), "%s", format);
    struct stat sb;
    if (!is_stdin) {
        if (stat(file, &sb) != 0)
            return cli_fail(CMD, "%s: %s", file, strerror(errno));
        st.size = (uint64_t)sb.st_size;
        st.mtime = (uint64_t)sb.st_mtime;
        if (snprintf(st.path, sizeof(st.path), "%s%s", file, STATE_SUFFIX) >= (int)sizeof(st.path))
            return cli_fail(CMD, "%s: name too long", file);
    }
    istate_t old = {0};
    int src = is_stdin ? ST_ENOENT : state_load(st.path, &old);
    load_mark_t start = {0};
    if (o->resume && src == 0) {
        if (old.size != st.size || old.mtime != st.mtime)
            return cli_fail(CMD,
                            "%s changed since %s was written (size or mtime differ); delete the "
                            "state file to import it from the start",
                            file, st.path);
        if (strcmp(old.format, format) != 0)
            return cli_fail(CMD, "%s was written for --format %s, not %s", st.path, old.format,
                            format);
        if (old.done) {
            printf("strata import: %s: already complete (%s), skipped\n", file, st.path);
            return 0;
        }
        start = (load_mark_t){.offset = old.mark.offset, .line = old.mark.line};
        st.samples_before = old.samples_before;
        printf("strata import: %s: resuming at byte %" PRIu64 ", line %" PRIu64 "\n", file,
               start.offset, start.line + 1);
    } else if (o->resume && src != ST_ENOENT) {
        return cli_fail(CMD, "%s: unreadable state file (%s); delete it to start over", st.path,
                        st_strerror(src));
    } else if (!o->resume && src == 0 && !old.done) {
        printf("strata import: %s: an earlier import stopped at line %" PRIu64
               " (%s); starting over (--resume continues instead)\n",
               file, old.mark.line, st.path);
    }
    fflush(stdout);
    uint64_t size = 0;
    gz_reader_t *in = gz_reader_open(file, &size);
    if (in == NULL)
        return cli_fail(CMD, "%s: %s", file, strerror(errno));
    if (start.offset > 0 && gz_reader_seek(in, start.offset) < 0) {
        gz_reader_close(in);
        return cli_fail(CMD, "%s: cannot seek to byte %" PRIu64 " of %s", file, start.offset,
                        st.path);
    }
    load_cfg_t cfg = *base;
    cfg.file = is_stdin ? "stdin" : file;
    cfg.bytes_total = size > start.offset ? size - start.offset : 0;
    cfg.next = gz_reader_line;
    cfg.src = in;
    cfg.start = start;
    if (!is_stdin) {
        cfg.on_mark = on_mark;
        cfg.mark_ud = &st;
        st.saved_at = httpc_now();
        if (state_save(&st, &start, false) < 0) {
            gz_reader_close(in);
            return cli_fail(CMD, "cannot write %s: %s", st.path, strerror(errno));
        }
    }
    load_result_t r;
    int rc = load_run(&cfg, &r);
    gz_reader_close(in);
    if (rc < 0)
        return cli_fail(CMD, "%s", r.fatal);
    if (!is_stdin)
        state_save(&st, &r.mark, !r.aborted && !last);
    t->files++;
    t->lines += r.lines;
    t->samples += r.samples;
    t->bytes += r.bytes;
    t->rejected += r.rejected;
    t->retries += r.retries;
    printf("strata import: %s: format=%s lines=%" PRIu64 " samples=%" PRIu64 " bytes=%" PRIu64
           " rejected=%" PRIu64 "%s\n",
           cfg.file, format, r.lines, r.samples, r.bytes, r.rejected,
           r.aborted ? " (incomplete)" : "");
    fflush(stdout);
    if (!r.aborted)
        return 0;
    if (is_stdin)
        return cli_fail(CMD, "stdin: %s after line %" PRIu64 " (stdin cannot be resumed)", r.fatal,
                        r.mark.line);
    /* the loader's reasons mostly start with "FILE:LINES:"; name FILE once */
    bool named = strncmp(r.fatal, file, strlen(file)) == 0;
    fprintf(stderr,
            "strata import: %s%s%s; stopped at byte %" PRIu64 ", line %" PRIu64
            " (all before is stored; state in %s)\n"
            "strata import: run the same command with --resume to continue\n",
            named ? "" : file, named ? "" : ": ", r.fatal, r.mark.offset, r.mark.line, st.path);
    return r.interrupted ? CLI_EXIT_INTERRUPTED : CLI_EXIT_FAIL;
}

/* ---- the command --------------------------------------------------------------------------- */

static int run_import(void *opts, int argc, char **argv)
{
    const import_opts_t *o = opts;
    const char *shown;
    load_cfg_t base = {
        .retries = (int)o->retries,
        .max_errors = o->max_errors,
        .io_timeout_ms = (int)(o->common.timeout * 1000),
        .conns = (size_t)o->conns,
        .batch_lines = o->batch_lines,
        .batch_bytes = o->batch_bytes,
        .quiet = o->quiet,
        .progress_every = o->progress_every,
        .interrupt = &cli_interrupted,
    };
    int rc = cli_common_router(CMD, &o->common, &base.url, &shown);
    if (rc != 0)
        return rc;
    uint64_t csv_cols = 0;
    if (o->csv_format && (csv_cols = csv_metric_columns(o->csv_format)) == 0)
        return cli_usage_error(CMD,
                               "bad --csv-format '%s' (N:metric:NAME, N:label:NAME, "
                               "N:time:FORMAT columns, at least one metric)",
                               o->csv_format);
    /* every file's format first: a usage error before anything is sent */
    const char **formats = calloc((size_t)argc, sizeof(*formats));
    if (formats == NULL)
        return cli_fail(CMD, "out of memory");
    for (int i = 0; i < argc; i++) {
        formats[i] = o->format ? o->format : format_of(argv[i]);
        if (formats[i] == NULL)
            rc = cli_usage_error(CMD,
                                 "cannot tell the format of '%s' from its name; pass --format "
                                 "lp|json|prom|csv",
                                 argv[i]);
        else if (strcmp(formats[i], "csv") == 0 && o->csv_format == NULL)
            rc = cli_usage_error(CMD, "%s: CSV needs --csv-format SPEC", argv[i]);
        else if (strcmp(argv[i], "-") == 0 && o->resume)
            rc = cli_usage_error(CMD, "stdin cannot be resumed");
        if (rc != 0) {
            free(formats);
            return rc;
        }
    }
    cli_catch_interrupt();

    st_buf_t target;
    st_buf_init(&target);
    totals_t t = {0};
    double t0 = httpc_now();
    int ret = CLI_EXIT_OK;
    for (int i = 0; i < argc && ret == CLI_EXIT_OK; i++) {
        const char *f = formats[i];
        st_buf_reset(&target);
        if (strcmp(f, "lp") == 0) {
            ST_BUF_LIT(&target, "/write?precision=");
            httpc_query_escape(&target, o->precision);
            base.headers = "Content-Type: text/plain; charset=utf-8\r\n";
            base.count = count_lp;
        } else if (strcmp(f, "json") == 0) {
            ST_BUF_LIT(&target, "/api/v1/import");
            base.headers = "Content-Type: application/json\r\n";
            base.count = count_json;
        } else if (strcmp(f, "prom") == 0) {
            ST_BUF_LIT(&target, "/api/v1/import/prometheus");
            base.headers = "Content-Type: text/plain; version=0.0.4\r\n";
            base.count = count_prom;
        } else {
            ST_BUF_LIT(&target, "/api/v1/import/csv?format=");
            httpc_query_escape(&target, o->csv_format);
            base.headers = "Content-Type: text/csv\r\n";
            base.count = count_csv;
            base.count_arg = &csv_cols;
        }
        if (st_buf_put_u8(&target, '\0') < 0) {
            ret = cli_fail(CMD, "out of memory");
            break;
        }
        base.target = (const char *)target.data;
        ret = import_file(o, &base, argv[i], f, i == argc - 1, &t);
    }
    double el = httpc_now() - t0;
    if (el <= 0)
        el = 1e-9;
    printf("strata import: files=%" PRIu64 " lines=%" PRIu64 " samples=%" PRIu64 " bytes=%" PRIu64
           " seconds=%.2f samples_per_s=%.0f rejected=%" PRIu64 " retries=%" PRIu64 "%s\n",
           t.files, t.lines, t.samples, t.bytes, el, (double)t.samples / el, t.rejected, t.retries,
           ret == CLI_EXIT_OK ? "" : " (incomplete)");
    fflush(stdout);
    if (ret == CLI_EXIT_OK) {
        for (int i = 0; i < argc; i++) {
            char sp[4200];
            snprintf(sp, sizeof(sp), "%s%s", argv[i], STATE_SUFFIX);
            if (strcmp(argv[i], "-") != 0)
                unlink(sp);
        }
        if (t.rejected)
            ret = cli_fail(CMD, "%" PRIu64 " line%s rejected by the router", t.rejected,
                           t.rejected == 1 ? "" : "s");
    }
    st_buf_deinit(&target);
    free(formats);
    return ret;
}

static const cli_opt_t IMPORT_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    CLI_OPT_CHOICE(import_opts_t, format, "format", "lp|json|prom|csv", " (lp|json|prom|csv)",
                   "--format F",
                   "lp|json|prom|csv for every FILE (default: by name,\n"
                   ".lp .txt .influx .json .jsonl .ndjson .prom .csv,\n"
                   "each optionally .gz)"),
    {.name = "csv-format",
     .kind = CLI_STR,
     .off = offsetof(import_opts_t, csv_format),
     .label = "--csv-format SPEC",
     .help = "CSV columns, VictoriaMetrics' spec, e.g.\n"
             "1:label:host,2:time:unix_s,3:metric:cpu"},
    CLI_OPT_CHOICE(import_opts_t, precision, "precision", "ns|us|u|ms|s|m|h", " (ns|us|ms|s|m|h)",
                   "--precision P", "lp timestamps: ns|us|ms|s|m|h (default ns)"),
    CLI_OPT_FLAG(import_opts_t, resume, "resume",
                 "continue at FILE" STATE_SUFFIX "'s mark (see below)"),
    CLI_OPT_U64(import_opts_t, batch_lines, "batch", 1, 10000000, " (1..10000000 lines)",
                "--batch LINES", "lines per request (default 5000)"),
    CLI_OPT_U64(import_opts_t, batch_bytes, "batch-bytes", 1024, (uint64_t)1 << 32,
                " (1024..4294967296)", "--batch-bytes BYTES",
                "bytes per request at most (default 8388608)"),
    CLI_OPT_U64(import_opts_t, conns, "conns", 1, 256, " (1..256)", "--conns N",
                "parallel connections (default 2)"),
    CLI_OPT_U64(import_opts_t, retries, "retries", 1, 1000, " (1..1000)", "--retries N",
                "attempts per batch on 429/5xx/connection errors (default 8)"),
    CLI_OPT_U64(import_opts_t, max_errors, "max-errors", 0, 1000000000, NULL, "--max-errors N",
                "rejected lines to print (default 50; all are counted)"),
    CLI_OPT_DURATION(import_opts_t, progress_every, "progress-interval", 0.1, false,
                     "--progress-interval S",
                     "seconds between progress lines when stderr is not a TTY\n"
                     "(default 10; a TTY gets a live bar)"),
    {.name = "quiet",
     .kind = CLI_FLAG,
     .off = offsetof(import_opts_t, quiet),
     .short_name = 'q',
     .label = "--quiet",
     .help = "no progress output"},
    CLI_OPT_TIMEOUT("per-request inactivity timeout"),
    CLI_OPT_END,
};

static const import_opts_t IMPORT_DEFAULTS = {.common = CLI_COMMON_DEFAULTS,
                                              .precision = "ns",
                                              .batch_lines = 5000,
                                              .batch_bytes = 8 << 20,
                                              .conns = 2,
                                              .retries = 8,
                                              .max_errors = 50,
                                              .progress_every = 10};

const cli_cmd_t cli_cmd_import = {
    .name = "import",
    .args = "FILE...",
    .summary = "load line protocol, JSON lines, Prometheus text or CSV files",
    .synopsis = "import FILE... [--format lp|json|prom|csv] [--csv-format SPEC] [--resume]",
    .about = "Load files through the router's write and import endpoints: InfluxDB line\n"
             "protocol (/write), JSON lines as /api/v1/export writes them (/api/v1/import),\n"
             "Prometheus text (/api/v1/import/prometheus) or CSV (/api/v1/import/csv).\n"
             "FILE.gz is decompressed. '-' reads stdin (not resumable).\n",
    .footer = "\nResuming: FILE" STATE_SUFFIX " holds the last acknowledged position (byte\n"
              "offset and line; everything before it is stored). After Ctrl-C, a lost\n"
              "connection or a crash, the same command with --resume continues there.\n"
              "The state files are removed when every FILE is loaded.\n"
              "\nPrints a line per FILE and a summary on stdout. Exit codes: 0 ok, 1 failure\n"
              "or lines rejected by the router (reported as FILE:LINE: reason), 2 usage\n"
              "error, 130 interrupted (state saved).\n",
    .help_col = 26,
    .min_args = 1,
    .max_args = -1,
    .opts = IMPORT_OPTS,
    .opts_size = sizeof(import_opts_t),
    .defaults = &IMPORT_DEFAULTS,
    .run = run_import,
};
