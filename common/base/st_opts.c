/*
 * st_opts — table-driven long options over getopt_long (see st_opts.h).
 *
 * The program's table is copied into a struct option array followed by the
 * built-ins (log-level, version, help); getopt_long returns each entry's
 * own value, which says which one it was. The usage text is the spec's
 * synopsis, the built-in [--log-level ...] line, then one line per listed
 * option with its help aligned at help_col.
 */
#include "st_opts.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "st_log.h"

enum { BUILTIN_LOG_LEVEL, BUILTIN_VERSION, BUILTIN_HELP, BUILTINS };

static const char *const builtin_names[BUILTINS] = {"log-level", "version", "help"};

/* getopt_long returns OPT_VAL_BASE + the option's index: past every
 * character, and distinct, so that an abbreviation two options share is
 * ambiguous (glibc takes entries with equal values for one option). */
#define OPT_VAL_BASE 256

static FILE *out_of(const st_opts_spec_t *spec)
{
    return spec->out ? spec->out : stdout;
}

static FILE *err_of(const st_opts_spec_t *spec)
{
    return spec->err ? spec->err : stderr;
}

/* Print text with every line after the first indented by `indent`. */
static void put_indented(FILE *f, const char *text, int indent)
{
    for (const char *p = text;;) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            fprintf(f, "%s\n", p);
            return;
        }
        fprintf(f, "%.*s\n%*s", (int)(nl - p), p, indent, "");
        p = nl + 1;
    }
}

void st_opts_usage(const st_opts_spec_t *spec, FILE *f)
{
    int indent = (int)(strlen("usage: ") + strlen(spec->prog) + 1);
    fprintf(f, "usage: %s ", spec->prog);
    put_indented(f, spec->synopsis, indent);
    fprintf(f, "%*s[--log-level debug|info|warn|error]\n\n", indent, "");
    for (size_t i = 0; i < spec->nopts; i++) {
        const st_opt_t *o = &spec->opts[i];
        if (!o->help)
            continue;
        int w = fprintf(f, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "%*s", w < spec->help_col ? spec->help_col - w : 2, "");
        put_indented(f, o->help, spec->help_col);
    }
    fprintf(f, "  --version, --help\n");
}

int st_opts_parse(const st_opts_spec_t *spec, int argc, char **argv)
{
    size_t n = spec->nopts;
    struct option *lo = calloc(n + BUILTINS + 1, sizeof *lo);
    if (!lo) {
        fprintf(err_of(spec), "%s: out of memory\n", spec->prog);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        lo[i] =
            (struct option){spec->opts[i].name, spec->opts[i].arg ? required_argument : no_argument,
                            NULL, OPT_VAL_BASE + (int)i};
    for (size_t b = 0; b < BUILTINS; b++)
        lo[n + b] = (struct option){builtin_names[b],
                                    b == BUILTIN_LOG_LEVEL ? required_argument : no_argument, NULL,
                                    OPT_VAL_BASE + (int)(n + b)};
    unsigned char *seen = calloc(n ? n : 1, 1);
    int rc = seen ? ST_OPTS_RUN : 1;
    if (!seen)
        fprintf(err_of(spec), "%s: out of memory\n", spec->prog);
    optind = 0; /* glibc: start over, as on a first call */
    int c;
    while (rc == ST_OPTS_RUN && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        size_t idx = (size_t)(c - OPT_VAL_BASE);
        if (c < OPT_VAL_BASE) { /* '?': getopt said why */
            st_opts_usage(spec, err_of(spec));
            rc = 2;
        } else if (idx < n) {
            const st_opt_t *o = &spec->opts[idx];
            seen[idx] = 1;
            if (o->arg && o->str)
                *o->str = optarg;
            else if (!o->arg && o->flag)
                *o->flag = 1;
        } else if (idx == n + BUILTIN_LOG_LEVEL) {
            int lv = st_log_parse_level(optarg);
            if (lv < 0) {
                fprintf(err_of(spec), "%s: unknown log level '%s'\n", spec->prog, optarg);
                rc = 2;
            } else {
                st_log_set_level(lv);
            }
        } else if (idx == n + BUILTIN_VERSION) {
            fprintf(out_of(spec), "%s %s\n", spec->prog, spec->version);
            rc = 0;
        } else {
            st_opts_usage(spec, out_of(spec));
            rc = 0;
        }
    }
    for (size_t i = 0; rc == ST_OPTS_RUN && i < n; i++) {
        if (spec->opts[i].required && !seen[i]) {
            fprintf(err_of(spec), "%s: --%s is required\n", spec->prog, spec->opts[i].name);
            st_opts_usage(spec, err_of(spec));
            rc = 2;
        }
    }
    if (rc == ST_OPTS_RUN && optind != argc) {
        fprintf(err_of(spec), "%s: unexpected argument\n", spec->prog);
        st_opts_usage(spec, err_of(spec));
        rc = 2;
    }
    free(seen);
    free(lo);
    return rc;
}
