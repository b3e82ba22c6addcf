/* Unit tests for common/net/rpc_frame: encode/decode, limits, LZ4, the rx state machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4.h>

#include "rpc_frame.h"
#include "st_err.h"
#include "st_varint.h"

static void fill_text(uint8_t *p, size_t n)
{
    static const char words[] = "cpu_usage_user{host=\"h1\",region=\"eu\"} 12.5 1700000000000\n";
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)words[i % (sizeof words - 1)];
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void test_header_layout(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 0x0102030405060708ull, "abc", 3, 0), 0);
    const uint8_t want[] = {13, 0, 0, 0, 16, 0, 8, 7, 6, 5, 4, 3, 2, 1, 'a', 'b', 'c'};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    st_buf_deinit(&b);
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 10, 1000, 70000, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int pattern = 0; pattern < 2; pattern++) {
            size_t n = sizes[i];
            uint8_t *p = malloc(n + 1);
            if (pattern)
                fill_random(p, n, n + 7);
            else
                fill_text(p, n);
            st_buf_t b, scratch;
            st_buf_init(&b);
            st_buf_init(&scratch);
            assert_int_equal(rpc_frame_encode(&b, RPC_EXPORT_RESP, 42 + i, p, n, 64 << 10), 0);
            /* compressed exactly when large, compressible text */
            int compressed = (b.data[5] & RPC_FLAG_LZ4) != 0;
            assert_int_equal(compressed, n >= (64 << 10) && !pattern);
            if (compressed)
                assert_true(b.len < n / 4);
            rpc_frame_t f;
            size_t used = 0;
            assert_int_equal(rpc_frame_decode(b.data, b.len, 0, &scratch, &f, &used), 0);
            assert_int_equal(used, b.len);
            assert_int_equal(f.type, RPC_EXPORT_RESP);
            assert_int_equal(f.reqid, 42 + i);
            assert_int_equal(f.len, n);
            if (n)
                assert_memory_equal(f.payload, p, n);
            if (!compressed) /* zero-copy */
                assert_ptr_equal(f.payload, b.data + RPC_FRAME_HDR);
            st_buf_deinit(&b);
            st_buf_deinit(&scratch);
            free(p);
        }
    }
}

static void test_split_byte_by_byte(void **state)
{
    (void)state;
    uint8_t p[200000];
    fill_text(p, sizeof p);
    for (int c = 0; c < 2; c++) {
        st_buf_t b, scratch;
        st_buf_init(&b);
        st_buf_init(&scratch);
        size_t n = c ? sizeof p : 100;
        assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 9, p, n, c ? 1024 : 0), 0);
        rpc_frame_t f;
        size_t used;
        for (size_t i = 0; i < b.len; i++)
            assert_int_equal(rpc_frame_decode(b.data, i, 0, &scratch, &f, &used), ST_EAGAIN);
        assert_int_equal(rpc_frame_decode(b.data, b.len, 0, &scratch, &f, &used), 0);
        assert_int_equal(f.len, n);
        assert_memory_equal(f.payload, p, n);

        /* the same through the rx state machine, one byte per push */
        rpc_rx_t rx;
        rpc_rx_init(&rx, 0);
        for (size_t i = 0; i < b.len; i++) {
            assert_int_equal(rpc_rx_next(&rx, &f), ST_EAGAIN);
            assert_int_equal(rpc_rx_push(&rx, b.data + i, 1), 0);
        }
        assert_int_equal(rpc_rx_next(&rx, &f), 0);
        assert_int_equal(f.reqid, 9);
        assert_int_equal(f.len, n);
        assert_memory_equal(f.payload, p, n);
        assert_int_equal(rpc_rx_next(&rx, &f), ST_EAGAIN);
        assert_int_equal(rpc_rx_buffered(&rx), 0);
        rpc_rx_deinit(&rx);
        st_buf_deinit(&b);
        st_buf_deinit(&scratch);
    }
}

static void test_two_frames_one_buffer(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(rpc_frame_encode(&b, RPC_PING, 1, NULL, 0, 0), 0);
    assert_int_equal(rpc_frame_encode(&b, RPC_SERIES, 2, "xyz", 3, 0), 0);
    rpc_frame_t f;
    size_t used;
    assert_int_equal(rpc_frame_decode(b.data, b.len, 0, NULL, &f, &used), 0);
    assert_int_equal(used, RPC_FRAME_HDR);
    assert_int_equal(f.type, RPC_PING);
    assert_int_equal(f.len, 0);
    assert_int_equal(rpc_frame_decode(b.data + used, b.len - used, 0, NULL, &f, &used), 0);
    assert_int_equal(f.type, RPC_SERIES);
    assert_int_equal(f.reqid, 2);
    assert_memory_equal(f.payload, "xyz", 3);

    rpc_rx_t rx;
    rpc_rx_init(&rx, 0);
    assert_int_equal(rpc_rx_push(&rx, b.data, b.len), 0);
    assert_int_equal(rpc_rx_next(&rx, &f), 0);
    assert_int_equal(f.reqid, 1);
    assert_int_equal(rpc_rx_next(&rx, &f), 0);
    assert_int_equal(f.reqid, 2);
    assert_int_equal(rpc_rx_next(&rx, &f), ST_EAGAIN);
    rpc_rx_deinit(&rx);
    st_buf_deinit(&b);
}

static void test_oversize_rejected_early(void **state)
{
    (void)state;
    /* only the length field: 4 GiB - 1 announced; rejected with 4 bytes seen */
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    rpc_frame_t f;
    size_t used;
    st_buf_t scratch;
    st_buf_init(&scratch);
    assert_int_equal(rpc_frame_decode(hdr, 4, 0, &scratch, &f, &used), ST_ELIMIT);
    /* a small limit */
    uint8_t h2[4];
    st_store_u32le(h2, 1001);
    assert_int_equal(rpc_frame_decode(h2, 4, 1000, &scratch, &f, &used), ST_ELIMIT);
    st_store_u32le(h2, 1000);
    assert_int_equal(rpc_frame_decode(h2, 4, 1000, &scratch, &f, &used), ST_EAGAIN);
    assert_null(scratch.data); /* nothing allocated */

    /* the rx machine: the error is sticky and its buffer stays small */
    rpc_rx_t rx;
    rpc_rx_init(&rx, 1000);
    assert_int_equal(rpc_rx_push(&rx, hdr, 4), 0);
    assert_int_equal(rpc_rx_next(&rx, &f), ST_ELIMIT);
    assert_int_equal(rpc_rx_next(&rx, &f), ST_ELIMIT);
    assert_true(rx.cap <= RPC_RX_CHUNK);
    rpc_rx_deinit(&rx);

    /* rx grows its buffer with the bytes received, not with the announced
     * length (an announced, never-sent frame costs one chunk), at most
     * doubling per read, and never past the frame plus a chunk */
    rpc_rx_init(&rx, 300000);
    st_store_u32le(h2, 250000);
    assert_int_equal(rpc_rx_push(&rx, h2, 4), 0);
    assert_int_equal(rpc_rx_next(&rx, &f), ST_EAGAIN);
    uint8_t *p;
    size_t n;
    assert_true(rpc_rx_reserve_cap(&rx) <= 2 * RPC_RX_CHUNK);
    assert_int_equal(rpc_rx_reserve(&rx, &p, &n), 0);
    assert_true(n >= 4096 && rx.cap <= 2 * RPC_RX_CHUNK);
    size_t got = 4;
    while (got < 250004) {
        size_t want = rpc_rx_reserve_cap(&rx);
        assert_int_equal(rpc_rx_reserve(&rx, &p, &n), 0);
        assert_int_equal(rx.cap, want);
        assert_true(rx.cap <= 2 * got + 2 * RPC_RX_CHUNK && rx.cap <= 250004 + RPC_RX_CHUNK);
        size_t k = n < 250004 - got ? n : 250004 - got;
        memset(p, 0, k);
        rpc_rx_commit(&rx, k);
        got += k;
    }
    assert_int_equal(rpc_rx_next(&rx, &f), 0);
    assert_int_equal(f.len, 250000 - 10);
    rpc_rx_deinit(&rx);

    /* compressed frame whose raw length is over the limit: rejected before decompressing */
    st_buf_t b;
    st_buf_init(&b);
    uint8_t big[5000];
    fill_text(big, sizeof big);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 1, big, sizeof big, 100), 0);
    assert_true(b.data[5] & RPC_FLAG_LZ4);
    assert_true(b.len < 1000);
    assert_int_equal(rpc_frame_decode(b.data, b.len, 1000, &scratch, &f, &used), ST_ELIMIT);
    assert_null(scratch.data);
    assert_int_equal(rpc_frame_decode(b.data, b.len, 5000, &scratch, &f, &used), 0);
    st_buf_deinit(&b);
    st_buf_deinit(&scratch);
}

static void test_bad_lz4(void **state)
{
    (void)state;
    uint8_t raw[4096];
    fill_text(raw, sizeof raw);
    st_buf_t b, scratch;
    st_buf_init(&b);
    st_buf_init(&scratch);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 5, raw, sizeof raw, 1), 0);
    assert_true(b.data[5] & RPC_FLAG_LZ4);
    rpc_frame_t f;
    size_t used;
    /* raw length one too many / too few */
    st_store_u32le(b.data + RPC_FRAME_HDR, sizeof raw + 1);
    assert_int_equal(rpc_frame_decode(b.data, b.len, 0, &scratch, &f, &used), ST_ECORRUPT);
    st_store_u32le(b.data + RPC_FRAME_HDR, sizeof raw - 1);
    assert_int_equal(rpc_frame_decode(b.data, b.len, 0, &scratch, &f, &used), ST_ECORRUPT);
    st_store_u32le(b.data + RPC_FRAME_HDR, 0);
    assert_int_equal(rpc_frame_decode(b.data, b.len, 0, &scratch, &f, &used), ST_EPROTO);
    st_store_u32le(b.data + RPC_FRAME_HDR, sizeof raw);
    assert_int_equal(rpc_frame_decode(b.data, b.len, 0, &scratch, &f, &used), 0);
    /* garbage LZ4 block */
    for (size_t i = RPC_FRAME_HDR + 4; i < b.len; i++)
        b.data[i] = 0xff;
    assert_int_equal(rpc_frame_decode(b.data, b.len, 0, &scratch, &f, &used), ST_ECORRUPT);
    /* compressed flag with a payload shorter than the raw-length field */
    uint8_t tiny[RPC_FRAME_HDR + 2] = {12, 0, 0, 0, RPC_WRITE, RPC_FLAG_LZ4};
    assert_int_equal(rpc_frame_decode(tiny, sizeof tiny, 0, &scratch, &f, &used), ST_EPROTO);
    /* no scratch: compressed frames are refused */
    st_buf_reset(&b);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 5, raw, sizeof raw, 1), 0);
    assert_int_equal(rpc_frame_decode(b.data, b.len, 0, NULL, &f, &used), ST_EPROTO);
    st_buf_deinit(&b);
    st_buf_deinit(&scratch);
}

static void test_truncated_compressed(void **state)
{
    (void)state;
    uint8_t raw[100000];
    fill_text(raw, sizeof raw);
    st_buf_t b, scratch;
    st_buf_init(&b);
    st_buf_init(&scratch);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 5, raw, sizeof raw, 1), 0);
    rpc_frame_t f;
    size_t used;
    /* the frame cut short: need more bytes */
    for (size_t cut = 0; cut < b.len; cut += 97)
        assert_int_equal(rpc_frame_decode(b.data, cut, 0, &scratch, &f, &used), ST_EAGAIN);
    /* the LZ4 block cut short but the length field agreeing: corrupt */
    for (size_t drop = 1; drop < 40; drop++) {
        uint8_t *c = malloc(b.len);
        memcpy(c, b.data, b.len);
        st_store_u32le(c, (uint32_t)(b.len - 4 - drop));
        assert_int_equal(rpc_frame_decode(c, b.len - drop, 0, &scratch, &f, &used), ST_ECORRUPT);
        free(c);
    }
    st_buf_deinit(&b);
    st_buf_deinit(&scratch);
}

static void test_garbage(void **state)
{
    (void)state;
    rpc_frame_t f;
    size_t used;
    st_buf_t scratch;
    st_buf_init(&scratch);
    /* length below the fixed header */
    for (uint32_t l = 0; l < RPC_FRAME_LEN_MIN; l++) {
        uint8_t h[RPC_FRAME_HDR] = {0};
        st_store_u32le(h, l);
        assert_int_equal(rpc_frame_decode(h, sizeof h, 0, &scratch, &f, &used), ST_EPROTO);
    }
    /* unknown flag bits, seen as soon as the flags byte arrives */
    uint8_t h[6] = {10, 0, 0, 0, RPC_WRITE, 0x80};
    assert_int_equal(rpc_frame_decode(h, sizeof h, 0, &scratch, &f, &used), ST_EPROTO);
    /* an HTTP request is not a frame ("GET " = 542393671 > 64 MiB) */
    const char *http = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(rpc_frame_decode((const uint8_t *)http, strlen(http), 0, &scratch, &f, &used),
                     ST_ELIMIT);
    /* random bytes never crash and never claim more than they have */
    uint8_t junk[256];
    for (uint64_t seed = 1; seed < 2000; seed++) {
        fill_random(junk, sizeof junk, seed);
        size_t n = seed % sizeof junk;
        if (n >= 4)
            st_store_u32le(junk, (uint32_t)(seed % 300)); /* plausible lengths too */
        int rc = rpc_frame_decode(junk, n, 1 << 20, &scratch, &f, &used);
        if (rc == 0)
            assert_true(used <= n);
        else
            assert_true(rc == ST_EAGAIN || rc == ST_EPROTO || rc == ST_ECORRUPT || rc == ST_ELIMIT);
    }
    st_buf_deinit(&scratch);
}

static void test_encode_limits(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 1, "x", (size_t)UINT32_MAX, 0), ST_ELIMIT);
    assert_int_equal(b.len, 0);
    /* incompressible data is sent raw even above compress_min */
    uint8_t r[2048];
    fill_random(r, sizeof r, 3);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 1, r, sizeof r, 16), 0);
    assert_int_equal(b.data[5], 0);
    assert_int_equal(b.len, RPC_FRAME_HDR + sizeof r);
    assert_string_equal(rpc_type_name(RPC_LABEL_VALUES_RESP), "LABEL_VALUES_RESP");
    assert_string_equal(rpc_type_name(RPC_CANCEL), "CANCEL");
    assert_string_equal(rpc_type_name(RPC_CANCEL_RESP), "CANCEL_RESP");
    assert_string_equal(rpc_type_name(200), "UNKNOWN");
    st_buf_deinit(&b);
}

static void test_rx_reads_and_trim(void **state)
{
    (void)state;
    /* many frames through reserve/commit in uneven chunks, one big one in the middle */
    st_buf_t b;
    st_buf_init(&b);
    uint8_t *big = malloc(3 << 20);
    fill_random(big, 3 << 20, 11);
    for (uint64_t i = 1; i <= 300; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "req-%llu", (unsigned long long)i);
        if (i == 150)
            assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, i, big, 3 << 20, 0), 0);
        else
            assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, i, p, (size_t)n, 0), 0);
    }
    rpc_rx_t rx;
    rpc_rx_init(&rx, 4 << 20);
    size_t off = 0;
    uint64_t next = 1;
    size_t step = 1;
    while (off < b.len || next <= 300) {
        uint8_t *dst;
        size_t room;
        assert_int_equal(rpc_rx_reserve(&rx, &dst, &room), 0);
        assert_true(room > 0);
        assert_true(rx.cap <= (4u << 20) + 2 * RPC_RX_CHUNK);
        size_t k = b.len - off < room ? b.len - off : room;
        if (k > step)
            k = step;
        step = step * 3 % 70001 + 1;
        memcpy(dst, b.data + off, k);
        rpc_rx_commit(&rx, k);
        off += k;
        rpc_frame_t f;
        int rc;
        while ((rc = rpc_rx_next(&rx, &f)) == 0) {
            assert_int_equal(f.reqid, next);
            if (next == 150) {
                assert_int_equal(f.len, 3 << 20);
                assert_memory_equal(f.payload, big, 3 << 20);
            }
            next++;
        }
        assert_int_equal(rc, ST_EAGAIN);
        if (off == b.len && next <= 300)
            fail_msg("frames missing at end of input");
    }
    /* after the big frame the buffer went back to a small size */
    uint8_t *dst;
    size_t room;
    assert_int_equal(rpc_rx_reserve(&rx, &dst, &room), 0);
    assert_true(rx.cap <= (1u << 20));
    rpc_rx_deinit(&rx);
    free(big);
    st_buf_deinit(&b);
}

/* rpc_rx_detach gives the buffer away only when the frame just handed out
 * starts it, is not compressed and what follows it is short (moved into
 * the new buffer); the rx goes on with a new buffer; the frame header
 * helper makes the header rpc_frame_encode makes. */
static void test_rx_detach(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    uint8_t *p = malloc(100000);
    for (size_t i = 0; i < 100000; i++)
        p[i] = (uint8_t)(i * 13);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 7, p, 100000, 0), 0);
    uint8_t hdr[RPC_FRAME_HDR];
    assert_int_equal(rpc_frame_header(hdr, RPC_WRITE, 7, 100000), 0);
    assert_memory_equal(hdr, b.data, RPC_FRAME_HDR);
    assert_int_equal(rpc_frame_header(hdr, RPC_WRITE, 7, (size_t)RPC_PAYLOAD_MAX + 1), ST_ELIMIT);
    rpc_rx_t rx;
    rpc_rx_init(&rx, 0);
    assert_int_equal(rpc_rx_push(&rx, b.data, b.len), 0);
    rpc_frame_t f;
    assert_null(rpc_rx_detach(&rx, b.data + RPC_FRAME_HDR, 100000)); /* not its payload */
    assert_int_equal(rpc_rx_next(&rx, &f), 0);
    uint8_t *blk = rpc_rx_detach(&rx, f.payload, f.len);
    assert_non_null(blk);
    assert_memory_equal(f.payload, p, 100000); /* still there, now ours */
    free(blk);
    /* the next buffer starts at the detached one's size: one allocation
     * for a frame like the last, not a regrowth from a chunk */
    size_t first = rpc_rx_reserve_cap(&rx);
    assert_true(first >= RPC_FRAME_HDR + 100000);
    uint8_t *room;
    size_t nroom;
    assert_int_equal(rpc_rx_reserve(&rx, &room, &nroom), 0);
    assert_int_equal(nroom, first);
    assert_int_equal(rx.next_cap, 0); /* once */
    /* rx still works; two frames in the buffer: no detach */
    assert_int_equal(rpc_rx_push(&rx, b.data, b.len), 0);
    assert_int_equal(rpc_rx_push(&rx, b.data, b.len), 0);
    assert_int_equal(rpc_rx_next(&rx, &f), 0);
    assert_null(rpc_rx_detach(&rx, f.payload, f.len));
    assert_memory_equal(f.payload, p, 100000);
    assert_int_equal(rpc_rx_next(&rx, &f), 0);
    assert_null(rpc_rx_detach(&rx, f.payload, f.len)); /* not at the buffer's start */
    assert_memory_equal(f.payload, p, 100000);
    assert_int_equal(rpc_rx_next(&rx, &f), ST_EAGAIN);
    /* a frame and the first 1000 bytes of the next: detached, the 1000
     * bytes move, and the next frame completes from there */
    rpc_rx_t rx2; /* a new connection's: sized by the frame */
    rpc_rx_init(&rx2, 0);
    uint8_t *two = malloc(2 * b.len);
    memcpy(two, b.data, b.len);
    memcpy(two + b.len, b.data, b.len);
    two[b.len + RPC_FRAME_HDR] ^= 0xff; /* the second payload differs */
    assert_int_equal(rpc_rx_push(&rx2, two, b.len + 1000), 0);
    assert_int_equal(rpc_rx_next(&rx2, &f), 0);
    blk = rpc_rx_detach(&rx2, f.payload, f.len);
    assert_non_null(blk);
    assert_memory_equal(f.payload, p, 100000);
    free(blk);
    assert_int_equal(rpc_rx_next(&rx2, &f), ST_EAGAIN); /* 1000 bytes: not a frame yet */
    assert_int_equal(rpc_rx_push(&rx2, two + b.len + 1000, b.len - 1000), 0);
    assert_int_equal(rpc_rx_next(&rx2, &f), 0);
    assert_int_equal(f.len, 100000);
    assert_memory_equal(f.payload, two + b.len + RPC_FRAME_HDR, 100000);
    assert_int_equal(rpc_rx_next(&rx2, &f), ST_EAGAIN);
    free(two);
    rpc_rx_deinit(&rx2);
    /* compressed: the payload is in scratch, never detached */
    memset(p, 'a', 100000);
    st_buf_reset(&b);
    assert_int_equal(rpc_frame_encode(&b, RPC_WRITE, 8, p, 100000, 1024), 0);
    assert_true(b.len < 100000);
    assert_int_equal(rpc_rx_push(&rx, b.data, b.len), 0);
    assert_int_equal(rpc_rx_next(&rx, &f), 0);
    assert_null(rpc_rx_detach(&rx, f.payload, f.len));
    assert_memory_equal(f.payload, p, 100000);
    rpc_rx_deinit(&rx);
    st_buf_deinit(&b);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_split_byte_by_byte),
        cmocka_unit_test(test_two_frames_one_buffer),
        cmocka_unit_test(test_oversize_rejected_early),
        cmocka_unit_test(test_bad_lz4),
        cmocka_unit_test(test_truncated_compressed),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_rx_reads_and_trim),
        cmocka_unit_test(test_rx_detach),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
