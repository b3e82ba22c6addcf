/*
 * fuzz_rpc_frame — the RPC frame decoder and the per-connection receive
 * state machine (what a server runs on every byte a peer sends) on
 * arbitrary input.
 *
 * Byte 0 picks the limit (small limits reach the ELIMIT paths) and byte 1
 * the read-chunk pattern. The input is then (1) decoded frame by frame with
 * rpc_frame_decode, every frame re-encoded and decoded again to the same
 * content, and (2) fed through rpc_rx_t in uneven chunks via
 * reserve/commit, as libuv would. Invariants: a frame never claims more
 * bytes than it had, the payload lies inside the input or the scratch
 * buffer, both paths see the same frames, errors are sticky, and the rx
 * buffer never grows past the limit plus two read chunks, is exactly what
 * rpc_rx_reserve_cap predicted (what a budget was charged), and grows only
 * to a few times the bytes it holds, whatever a frame announces.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_frame.h"
#include "st_err.h"

#define MAXF 64

static void check(int ok)
{
    if (!ok)
        abort();
}

typedef struct seen {
    uint8_t type;
    uint64_t reqid;
    size_t len;
    uint32_t sum;
} seen_t;

static uint32_t sum(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t limits[] = {16, 64, 300, 4096, 1 << 16, RPC_FRAME_MAX_DEFAULT};
    size_t max_frame = limits[data[0] % 6];
    unsigned pattern = data[1];
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    /* (1) one buffer, frame after frame */
    seen_t a[MAXF];
    size_t na = 0;
    int enda = ST_EAGAIN;
    st_buf_t scratch, re, scratch2;
    st_buf_init(&scratch);
    st_buf_init(&re);
    st_buf_init(&scratch2);
    size_t off = 0;
    while (na < MAXF) {
        rpc_frame_t f;
        size_t used = 0;
        int rc = rpc_frame_decode(in + off, n - off, max_frame, &scratch, &f, &used);
        if (rc) {
            check(rc == ST_EAGAIN || rc == ST_ELIMIT || rc == ST_EPROTO || rc == ST_ECORRUPT);
            enda = rc;
            break;
        }
        check(used >= RPC_FRAME_HDR && used <= n - off);
        check(f.len <= max_frame);
        if (f.flags & RPC_FLAG_LZ4)
            check(f.payload == scratch.data && f.len == scratch.len);
        else
            check(f.payload == in + off + RPC_FRAME_HDR && f.len == used - RPC_FRAME_HDR);
        a[na].type = f.type;
        a[na].reqid = f.reqid;
        a[na].len = f.len;
        a[na].sum = sum(f.payload, f.len);
        /* re-encode (maybe compressed) and decode again: same frame */
        st_buf_reset(&re);
        check(rpc_frame_encode(&re, f.type, f.reqid, f.payload, f.len, pattern & 1 ? 8 : 0) == 0);
        rpc_frame_t g;
        size_t used2 = 0;
        int rc2 = rpc_frame_decode(re.data, re.len, RPC_FRAME_MAX_DEFAULT, &scratch2, &g, &used2);
        check(rc2 == 0 && used2 == re.len && g.type == f.type && g.reqid == f.reqid &&
              g.len == f.len && (f.len == 0 || memcmp(g.payload, f.payload, f.len) == 0));
        na++;
        off += used;
    }

    /* (2) the same bytes through the receive state machine, in chunks */
    rpc_rx_t rx;
    rpc_rx_init(&rx, max_frame);
    size_t nb = 0;
    int endb = ST_EAGAIN;
    size_t pos = 0;
    unsigned step = pattern | 1;
    for (;;) {
        rpc_frame_t f;
        int rc = ST_EAGAIN;
        while (nb < MAXF && (rc = rpc_rx_next(&rx, &f)) == 0) {
            check(nb < na);
            check(f.type == a[nb].type && f.reqid == a[nb].reqid && f.len == a[nb].len &&
                  sum(f.payload, f.len) == a[nb].sum);
            nb++;
        }
        if (nb == MAXF)
            break;
        if (rc != ST_EAGAIN) {
            endb = rc;
            check(rpc_rx_next(&rx, &f) == rc); /* sticky */
            break;
        }
        if (pos == n)
            break;
        uint8_t *dst;
        size_t room;
        size_t predicted = rpc_rx_reserve_cap(&rx), held = rpc_rx_buffered(&rx), had = rx.cap;
        if (rpc_rx_reserve(&rx, &dst, &room) != 0)
            break;
        check(room > 0);
        check(rx.cap <= max_frame + 4 + 2 * RPC_RX_CHUNK);
        /* what a budget is charged is what is allocated; the buffer follows
         * the bytes received, not the length a frame announces */
        check(rx.cap == predicted);
        check(rx.cap <= had || rx.cap <= 4 * held + 2 * RPC_RX_CHUNK);
        size_t k = step % 97 + 1;
        step = step * 31 + 7;
        if (k > room)
            k = room;
        if (k > n - pos)
            k = n - pos;
        memcpy(dst, in + pos, k);
        rpc_rx_commit(&rx, k);
        pos += k;
    }
    if (nb < MAXF && na < MAXF) {
        check(nb == na);
        check(endb == enda);
    }
    rpc_rx_deinit(&rx);
    st_buf_deinit(&scratch);
    st_buf_deinit(&scratch2);
    st_buf_deinit(&re);
    return 0;
}
