/* Fuzz target: the credential parser (auth_cred_parse) on any Authorization
 * header and u=/p= values: never crashes, never overruns, and its results
 * keep their bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 3 * AUTH_HEADER_MAX)
        return 0;
    /* split the input at the first two NULs: header, u, p */
    char *buf = malloc(size + 3);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = buf[size + 2] = '\0';
    const char *h = buf, *u = h + strlen(h) + 1, *p = u + strlen(u) + 1;
    if (u > buf + size)
        u = NULL;
    if (!u || p > buf + size)
        p = NULL;
    auth_cred_t c;
    auth_cred_parse(size && data[0] == '!' ? NULL : h, u, p, &c);
    switch (c.kind) {
    case AUTH_CRED_NONE:
        break;
    case AUTH_CRED_BAD:
        if (!c.why)
            abort();
        break;
    case AUTH_CRED_PASSWORD:
        if (!auth_name_ok(c.user, strlen(c.user)) && !c.user[0])
            abort();
        /* fallthrough */
    case AUTH_CRED_TOKEN:
        if (c.secret_len > AUTH_SECRET_MAX || strlen(c.secret) != c.secret_len)
            abort();
        break;
    default:
        abort();
    }
    auth_cred_clear(&c);
    free(buf);
    return 0;
}
