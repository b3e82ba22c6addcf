/*
 * strata-shard-of — prints the documented shard of label sets, for tests.
 *
 * Why: an end-to-end test must check that the router stores every series on
 * the shard that topo_shard_of_labels() (common/cluster/topo.h) names. That
 * function uses XXH3, which Python's standard library lacks, so the
 * integration tests ask this tiny program instead of re-implementing it.
 *
 * How: `strata-shard-of CLUSTER_INI` loads the topology (shard count and
 * sharding mode) with topo_load_file(), then reads stdin line by line. Each
 * line is one label set: hex-encoded strings separated by single spaces,
 * alternately name and value (hex keeps any byte, even spaces and newlines,
 * out of the framing). The set is sorted into canonical order and the shard
 * printed, one decimal number per input line. Exit 0, or 1 with a message
 * on stderr for a bad config or a malformed line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_labels.h"
#include "st_text.h"
#include "topo.h"

#define MAX_LINE (1u << 20)

/* Decode the hex run [p, p+n) in place into d; returns the length or -1. */
static long unhex(const char *p, size_t n, char *d)
{
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = st_hexval((unsigned char)p[i]), lo = st_hexval((unsigned char)p[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        d[i / 2] = (char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

/* Parse one line into labels (pointing into line, decoded in place). */
static int parse_set(char *line, st_label_t *l, size_t *nl)
{
    size_t n = 0, k = 0;
    char *p = line;
    const char *name = NULL;
    uint32_t name_len = 0;
    while (*p) {
        char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        long d = unhex(p, len, p);
        if (d < 0)
            return -1;
        if (k++ % 2 == 0) {
            name = p;
            name_len = (uint32_t)d;
        } else {
            if (n == ST_LABELS_MAX)
                return -1;
            l[n].name = name;
            l[n].name_len = name_len;
            l[n].value = p;
            l[n].value_len = (uint32_t)d;
            n++;
        }
        if (!e)
            break;
        p = e + 1;
    }
    if (k % 2)
        return -1;
    *nl = n;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CLUSTER_INI < label sets (hex name value ...)\n", argv[0]);
        return 1;
    }
    char err[512];
    topo_t *t = NULL;
    if (topo_load_file(argv[1], &t, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    char *line = malloc(MAX_LINE);
    if (!line) {
        topo_destroy(t);
        return 1;
    }
    int rc = 0;
    unsigned long lineno = 0;
    while (fgets(line, MAX_LINE, stdin)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        st_label_t l[ST_LABELS_MAX];
        size_t n = 0;
        if (parse_set(line, l, &n) != 0) {
            fprintf(stderr, "stdin:%lu: malformed label set\n", lineno);
            rc = 1;
            break;
        }
        st_labels_sort(l, n);
        printf("%u\n", (unsigned)topo_shard_of_labels(t, l, n));
    }
    free(line);
    topo_destroy(t);
    return rc;
}
