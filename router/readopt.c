/*
 * readopt — read options from their text. See readopt.h.
 */
#include "readopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_S 1000LL
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define MS_PER_D (24 * MS_PER_H)
#define MS_PER_W (7 * MS_PER_D)
#define MS_PER_Y (365 * MS_PER_D)

static const struct {
    char c;
    int64_t ms;
} UNITS[] = {{'s', MS_PER_S}, {'m', MS_PER_M}, {'h', MS_PER_H},
             {'d', MS_PER_D}, {'w', MS_PER_W}, {'y', MS_PER_Y}};

int readopt_parse(const topo_t *t, const char *consistency, const char *partial, int *need,
                  int *partial_out, char *msg, size_t msglen)
{
    int quorum = topo_read_consistency(t) == TOPO_READ_QUORUM;
    const char *v = consistency;
    if (v && *v) {
        if (!strcmp(v, "one")) {
            quorum = 0;
        } else if (!strcmp(v, "quorum")) {
            quorum = 1;
        } else {
            snprintf(msg, msglen, "invalid parameter \"read_consistency\": \"%.32s\" (one, quorum)",
                     v);
            return -1;
        }
    }
    *need = quorum ? (int)(topo_replication_factor(t) / 2 + 1) : 1;
    *partial_out = partial && (!strcmp(partial, "1") || !strcmp(partial, "true"));
    return 0;
}

int64_t readopt_duration_ms(const char *s)
{
    char *end;
    double secs = strtod(s, &end);
    if (end != s && *end == '\0')
        return isfinite(secs) ? (int64_t)llround(secs * MS_PER_S) : -1;
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        int64_t n = 0;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            n = n * 10 + (*p++ - '0');
        int64_t unit = 0;
        if (p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p += 2;
        } else {
            for (size_t k = 0; k < sizeof UNITS / sizeof UNITS[0] && !unit; k++)
                if (*p == UNITS[k].c)
                    unit = UNITS[k].ms;
            if (!unit)
                return -1;
            p++;
        }
        total += n * unit;
    }
    return p == s ? -1 : total;
}
