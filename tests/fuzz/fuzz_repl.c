/* Fuzz target: a NodeWrite envelope (repl_scan: what a coordinator forwards,
 * repl_stamp_version: how it stamps its version, repl_put_forward_refs:
 * its series by reference)
 * and an EXPORT page folded into a series set (sset: quorum reads) never
 * crash, over-read or leak, and entries stay inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "repl.h"
#include "sset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    repl_envelope_t env;
    if (repl_scan(data, size, NULL, 0, &env) == 0 && env.n) {
        size_t n = env.n < 4096 ? env.n : 4096;
        repl_entry_t *e = malloc(n * sizeof *e);
        if (e && repl_scan(data, size, e, n, &env) == 0) {
            for (size_t i = 0; i < n; i++) {
                if (e[i].field < data || e[i].field + e[i].field_len > data + size ||
                    e[i].msg < e[i].field || e[i].msg + e[i].msg_len > e[i].field + e[i].field_len)
                    abort();
            }
            /* by reference: the same entries again */
            st_buf_t fw;
            st_buf_init(&fw);
            repl_envelope_t env3;
            if (repl_put_forward_refs(&fw, e, NULL, n, 7) == 0 &&
                (repl_scan(fw.data, fw.len, NULL, 0, &env3) != 0 || env3.n != n || !env3.forwarded))
                abort();
            st_buf_deinit(&fw);
        }
        free(e);
    }
    /* the coordinator's version stamp: a NodeWrite it accepts scans again
     * with the same entries, each now carrying a version */
    st_buf_t st;
    st_buf_init(&st);
    repl_envelope_t env2;
    if (repl_scan(data, size, NULL, 0, &env) == 0 && repl_stamp_version(data, size, 42, &st) == 0) {
        if (repl_scan(st.data, st.len, NULL, 0, &env2) != 0 || env2.n != env.n)
            abort();
    }
    st_buf_deinit(&st);
    sset_t ss;
    sset_init(&ss, 1u << 20);
    int done;
    uint32_t shard = 0;
    uint64_t pos = 0;
    /* the same page twice: the second copy folds into the first */
    if (sset_add_page(&ss, data, size, &done, &shard, &pos) == 0 &&
        sset_add_page(&ss, data, size, &done, &shard, &pos) == 0) {
        size_t before = ss.n;
        if (sset_merge(&ss) == 0 && ss.n > before)
            abort();
    }
    sset_free(&ss);
    return 0;
}
