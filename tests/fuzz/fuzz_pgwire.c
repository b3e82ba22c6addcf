/*
 * fuzz_pgwire — the PostgreSQL protocol decoder on arbitrary byte streams.
 *
 * The first byte says whether the stream starts in the startup phase; then
 * messages are cut with pgw_next (every used length must lie inside the
 * buffer and make progress) and each body goes through the parser of its
 * type (startup parameters, Parse, Bind) and the field readers, as
 * router_pg.c does.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "pgwire.h"
#include "st_err.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int startup = data[0] & 1;
    data++, size--;
    size_t at = 0;
    static pgw_bind_t b;
    for (int guard = 0; guard < 10000 && at < size; guard++) {
        pgw_msg_t m;
        size_t used = 0;
        int rc = pgw_next(data + at, size - at, startup, &m, &used);
        if (rc) {
            check(rc == ST_EAGAIN || rc == ST_EPROTO || rc == ST_ELIMIT);
            break;
        }
        check(used > 0 && used <= size - at);
        check(m.body >= data + at && m.body + m.len <= data + at + used);
        at += used;
        if (startup) {
            pgw_startup_t su;
            if (m.code == PGW_PROTO_V3) {
                if (!pgw_parse_startup(&m, &su))
                    for (size_t i = 0; i < su.n; i++)
                        check(su.key[i] != NULL && su.val[i] != NULL);
                startup = 0;
            }
            continue;
        }
        pgw_parse_t p;
        pgw_rd_t r;
        const char *s;
        size_t n;
        int32_t i32;
        switch (m.type) {
        case 'P':
            if (!pgw_parse_parse(&m, &p))
                check(p.noid <= PGW_MAX_PARAMS && p.query != NULL);
            break;
        case 'B':
            if (!pgw_parse_bind(&m, &b))
                for (size_t i = 0; i < b.nparams; i++)
                    check(!b.pval[i] ||
                          (b.pval[i] >= m.body && b.pval[i] + b.plen[i] <= m.body + m.len));
            break;
        default:
            pgw_rd_init(&r, &m);
            while (!pgw_get_str(&r, &s, &n) && !pgw_get_i32(&r, &i32))
                check(s + n < (const char *)m.body + m.len);
        }
    }
    return 0;
}
