/*
 * Fuzz target: the PromQL parser must never crash, must fail with a message,
 * and whatever it accepts must print canonically: print -> parse -> print is
 * a fixed point. A reparse may only fail with ST_ELIMIT (the canonical text
 * adds parentheses, so it can be longer or nest deeper than the input).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promql.h"
#include "st_buf.h"
#include "st_err.h"

static char *print(const promql_expr_t *e, size_t *len)
{
    st_buf_t b;
    st_buf_init(&b);
    if (promql_format(promql_root(e), &b) != 0 || st_buf_put_u8(&b, 0) != 0)
        abort();
    *len = b.len - 1;
    return (char *)b.data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    promql_expr_t *e = NULL, *e2 = NULL;
    char err[256];
    unsigned flags = size && (data[0] & 0x80) ? PROMQL_F_LAX_FUNCS : 0;
    int rc = promql_parse_ex((const char *)data, size, flags, &e, err, sizeof err);
    if (rc != 0) {
        if (e || (rc != ST_EPARSE && rc != ST_ELIMIT && rc != ST_ENOMEM) || err[0] == '\0')
            abort();
        return 0;
    }
    size_t n1, n2;
    char *p1 = print(e, &n1);
    rc = promql_parse_ex(p1, n1, flags, &e2, err, sizeof err);
    if (rc == ST_ELIMIT) {
        free(p1);
        promql_free(e);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "reparse failed: %s\n  input: %.*s\n  print: %s\n", err, (int)size,
                (const char *)data, p1);
        abort();
    }
    char *p2 = print(e2, &n2);
    if (n1 != n2 || memcmp(p1, p2, n1) != 0) {
        fprintf(stderr, "not a fixed point:\n  %s\n  %s\n", p1, p2);
        abort();
    }
    free(p1);
    free(p2);
    promql_free(e);
    promql_free(e2);
    return 0;
}
