/* Fuzz target: the users-file parser (auth_db_parse) must never crash, and
 * whatever it accepts must format back to a text it accepts again with the
 * same users. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

static void check(const char *text, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check((const char *)data, size);
    /* random bytes rarely make a valid line: also try them as the fields
     * of a well-formed one (the selector, then a name and a role) */
    if (size > 4096)
        return 0;
    char line[4200];
    int n = snprintf(line, sizeof line, "u:read:::%.*s", (int)size, (const char *)data);
    check(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    n = snprintf(line, sizeof line, "%.*s:::\n", (int)size, (const char *)data);
    check(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    return 0;
}

static void check(const char *data, size_t size)
{
    auth_db_t *db, *back;
    char err[512];
    if (auth_db_parse(data, size, "f", &db, err, sizeof err) != 0)
        return;
    st_buf_t b;
    st_buf_init(&b);
    if (auth_db_format(db, &b) != 0)
        abort();
    if (auth_db_parse((const char *)b.data, b.len, "f", &back, err, sizeof err) != 0)
        abort();
    if (auth_db_count(back) != auth_db_count(db))
        abort();
    for (size_t i = 0; i < auth_db_count(db); i++) {
        const auth_user_t *u = auth_db_user_at(db, i), *v = auth_db_user_at(back, i);
        if (strcmp(auth_user_name(u), auth_user_name(v)) || auth_user_role(u) != auth_user_role(v))
            abort();
        /* a token lookup never crashes whatever the bytes */
        const auth_user_t *got;
        auth_check_token(db, data, size < 200 ? size : 200, &got);
    }
    st_buf_deinit(&b);
    auth_db_destroy(back);
    auth_db_destroy(db);
}
