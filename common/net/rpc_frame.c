/* rpc_frame — node RPC framing and the receive state machine; see rpc_frame.h. */
#include "rpc_frame.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_varint.h"

/* Above this the receive buffer / scratch is released once it is empty: at
 * 2 MiB a write piece of 1 MiB (ROUTER_WRITE_PIECE) and its frame stay in a
 * kept buffer instead of a fresh one regrown (copied, faulted in) per frame. */
#define RX_KEEP_MAX (2u << 20)

const char *rpc_type_name(unsigned type)
{
    switch (type) {
    case RPC_HELLO:
        return "HELLO";
    case RPC_HELLO_ACK:
        return "HELLO_ACK";
    case RPC_ERROR:
        return "ERROR";
    case RPC_PING:
        return "PING";
    case RPC_PONG:
        return "PONG";
    case RPC_WRITE:
        return "WRITE";
    case RPC_WRITE_RESP:
        return "WRITE_RESP";
    case RPC_EXPORT:
        return "EXPORT";
    case RPC_EXPORT_RESP:
        return "EXPORT_RESP";
    case RPC_SERIES:
        return "SERIES";
    case RPC_SERIES_RESP:
        return "SERIES_RESP";
    case RPC_LABEL_NAMES:
        return "LABEL_NAMES";
    case RPC_LABEL_NAMES_RESP:
        return "LABEL_NAMES_RESP";
    case RPC_LABEL_VALUES:
        return "LABEL_VALUES";
    case RPC_LABEL_VALUES_RESP:
        return "LABEL_VALUES_RESP";
    case RPC_STATS:
        return "STATS";
    case RPC_STATS_RESP:
        return "STATS_RESP";
    case RPC_QUERY:
        return "QUERY";
    case RPC_QUERY_RESP:
        return "QUERY_RESP";
    case RPC_TSDB_STATUS:
        return "TSDB_STATUS";
    case RPC_TSDB_STATUS_RESP:
        return "TSDB_STATUS_RESP";
    case RPC_CANCEL:
        return "CANCEL";
    case RPC_CANCEL_RESP:
        return "CANCEL_RESP";
    case RPC_DELETE:
        return "DELETE";
    case RPC_DELETE_RESP:
        return "DELETE_RESP";
    case RPC_RULES:
        return "RULES";
    case RPC_RULES_RESP:
        return "RULES_RESP";
    case RPC_TOMBS:
        return "TOMBS";
    case RPC_TOMBS_RESP:
        return "TOMBS_RESP";
    case RPC_DIGEST:
        return "DIGEST";
    case RPC_DIGEST_RESP:
        return "DIGEST_RESP";
    case RPC_REPAIR_PULL:
        return "REPAIR_PULL";
    case RPC_REPAIR_PULL_RESP:
        return "REPAIR_PULL_RESP";
    case RPC_REPAIR:
        return "REPAIR";
    case RPC_REPAIR_RESP:
        return "REPAIR_RESP";
    case RPC_COPY_LIST:
        return "COPY_LIST";
    case RPC_COPY_LIST_RESP:
        return "COPY_LIST_RESP";
    case RPC_COPY_FETCH:
        return "COPY_FETCH";
    case RPC_COPY_FETCH_RESP:
        return "COPY_FETCH_RESP";
    case RPC_TOPN:
        return "TOPN";
    case RPC_TOPN_RESP:
        return "TOPN_RESP";
    case RPC_ROW_STATS:
        return "ROW_STATS";
    case RPC_ROW_STATS_RESP:
        return "ROW_STATS_RESP";
    }
    return "UNKNOWN";
}

static void put_header(uint8_t *p, uint32_t len, uint8_t type, uint8_t flags, uint64_t reqid)
{
    st_store_u32le(p, len);
    p[4] = type;
    p[5] = flags;
    st_store_u64le(p + 6, reqid);
}

int rpc_frame_header(uint8_t hdr[RPC_FRAME_HDR], uint8_t type, uint64_t reqid, size_t len)
{
    if (len > RPC_PAYLOAD_MAX)
        return ST_ELIMIT;
    put_header(hdr, (uint32_t)(RPC_FRAME_LEN_MIN + len), type, 0, reqid);
    return 0;
}

int rpc_frame_encode(st_buf_t *out, uint8_t type, uint64_t reqid, const void *payload, size_t len,
                     size_t compress_min)
{
    if (len > RPC_PAYLOAD_MAX)
        return ST_ELIMIT;
    if (compress_min > 0 && len >= compress_min && len > 4 && len <= LZ4_MAX_INPUT_SIZE) {
        int bound = LZ4_compressBound((int)len);
        /* only worth trying when the result may be smaller: reserve the bound */
        int rc = st_buf_reserve(out, RPC_FRAME_HDR + 4 + (size_t)bound);
        if (rc)
            return rc;
        uint8_t *p = out->data + out->len;
        int clen = LZ4_compress_default(payload, (char *)p + RPC_FRAME_HDR + 4, (int)len, bound);
        if (clen > 0 && (size_t)clen + 4 < len) {
            put_header(p, (uint32_t)(RPC_FRAME_LEN_MIN + 4 + (size_t)clen), type, RPC_FLAG_LZ4,
                       reqid);
            st_store_u32le(p + RPC_FRAME_HDR, (uint32_t)len);
            out->len += RPC_FRAME_HDR + 4 + (size_t)clen;
            return 0;
        }
    }
    int rc = st_buf_reserve(out, RPC_FRAME_HDR + len);
    if (rc)
        return rc;
    uint8_t *p = out->data + out->len;
    put_header(p, (uint32_t)(RPC_FRAME_LEN_MIN + len), type, 0, reqid);
    if (len)
        memcpy(p + RPC_FRAME_HDR, payload, len);
    out->len += RPC_FRAME_HDR + len;
    return 0;
}

int rpc_frame_decode(const uint8_t *buf, size_t len, size_t max_frame, st_buf_t *scratch,
                     rpc_frame_t *out, size_t *consumed)
{
    if (max_frame == 0)
        max_frame = RPC_FRAME_MAX_DEFAULT;
    if (!buf || len < 4)
        return ST_EAGAIN;
    uint32_t flen = st_load_u32le(buf);
    if (flen > max_frame)
        return ST_ELIMIT;
    if (flen < RPC_FRAME_LEN_MIN)
        return ST_EPROTO;
    if (len >= 6 && (buf[5] & ~RPC_FLAGS_KNOWN))
        return ST_EPROTO;
    if (len - 4 < flen)
        return ST_EAGAIN;
    uint8_t flags = buf[5];
    const uint8_t *payload = buf + RPC_FRAME_HDR;
    size_t plen = flen - RPC_FRAME_LEN_MIN;
    if (flags & RPC_FLAG_LZ4) {
        if (!scratch || plen < 4)
            return ST_EPROTO;
        uint32_t raw = st_load_u32le(payload);
        if (raw == 0)
            return ST_EPROTO;
        if (raw > max_frame || raw > LZ4_MAX_INPUT_SIZE)
            return ST_ELIMIT;
        st_buf_reset(scratch);
        int rc = st_buf_reserve(scratch, raw);
        if (rc)
            return rc;
        int n = LZ4_decompress_safe((const char *)payload + 4, (char *)scratch->data,
                                    (int)(plen - 4), (int)raw);
        if (n < 0 || (uint32_t)n != raw)
            return ST_ECORRUPT;
        scratch->len = raw;
        payload = scratch->data;
        plen = raw;
    }
    out->type = buf[4];
    out->flags = flags;
    out->reqid = st_load_u64le(buf + 6);
    out->payload = payload;
    out->len = plen;
    *consumed = 4 + (size_t)flen;
    return 0;
}

void rpc_rx_init(rpc_rx_t *rx, size_t max_frame)
{
    memset(rx, 0, sizeof *rx);
    rx->max_frame = max_frame ? max_frame : RPC_FRAME_MAX_DEFAULT;
    st_buf_init(&rx->scratch);
}

void rpc_rx_deinit(rpc_rx_t *rx)
{
    free(rx->buf);
    st_buf_deinit(&rx->scratch);
    rx->buf = NULL;
    rx->cap = rx->start = rx->end = 0;
}

/*
 * The capacity the buffer must have for the next read, once its avail
 * unconsumed bytes sit at its start and cap is what it has. A pending frame
 * whose size is known gets room to finish, but the buffer grows with what
 * has arrived (at most doubling per read), not with what was announced: a
 * frame announced at 64 MiB and never sent costs a chunk, and a peer must
 * send N bytes to make us hold about 2N.
 */
static size_t rx_need_cap(const rpc_rx_t *rx, size_t avail, size_t cap)
{
    size_t want = RPC_RX_CHUNK;
    if (avail >= 4) {
        /* the pending frame's size was checked by rpc_rx_next; check again
         * so that a reserve before next can't over-allocate */
        size_t flen = st_load_u32le(rx->buf + rx->start);
        if (flen <= rx->max_frame && 4 + flen > avail) {
            size_t rest = 4 + flen - avail;
            size_t step = avail > RPC_RX_CHUNK ? avail : RPC_RX_CHUNK;
            if (rest > want)
                want = rest < step ? rest : step;
        }
    }
    if (cap - avail >= want)
        return cap;
    if (cap == 0 && avail == 0 && rx->next_cap > want)
        return rx->next_cap; /* the size of the buffer a handler took (rpc_rx_detach) */
    size_t ncap = avail + want;
    /* grow at least geometrically while small, to keep reads efficient */
    if (ncap < 2 * cap && 2 * cap <= RX_KEEP_MAX)
        ncap = 2 * cap;
    return ncap;
}

size_t rpc_rx_reserve_cap(const rpc_rx_t *rx)
{
    size_t avail = rx->end - rx->start;
    size_t cap = avail == 0 && rx->cap > RX_KEEP_MAX ? 0 : rx->cap;
    return rx_need_cap(rx, avail, cap);
}

int rpc_rx_reserve(rpc_rx_t *rx, uint8_t **p, size_t *n)
{
    size_t avail = rx->end - rx->start;
    if (avail == 0) {
        rx->start = rx->end = 0;
        if (rx->cap > RX_KEEP_MAX) { /* a big frame went through: give the memory back */
            free(rx->buf);
            rx->buf = NULL;
            rx->cap = 0;
        }
    } else if (rx->start > 0) {
        memmove(rx->buf, rx->buf + rx->start, avail);
        rx->start = 0;
        rx->end = avail;
    }
    size_t ncap = rx_need_cap(rx, avail, rx->cap);
    if (ncap > rx->cap) {
        uint8_t *nb = realloc(rx->buf, ncap);
        if (!nb)
            return ST_ENOMEM;
        rx->buf = nb;
        rx->cap = ncap;
        rx->next_cap = 0;
    }
    *p = rx->buf + rx->end;
    *n = rx->cap - rx->end;
    return 0;
}

void rpc_rx_commit(rpc_rx_t *rx, size_t n)
{
    if (n > rx->cap - rx->end)
        n = rx->cap - rx->end;
    rx->end += n;
}

int rpc_rx_push(rpc_rx_t *rx, const void *p, size_t n)
{
    const uint8_t *s = p;
    while (n > 0) {
        uint8_t *dst;
        size_t room;
        int rc = rpc_rx_reserve(rx, &dst, &room);
        if (rc)
            return rc;
        size_t k = n < room ? n : room;
        memcpy(dst, s, k);
        rpc_rx_commit(rx, k);
        s += k;
        n -= k;
    }
    return 0;
}

int rpc_rx_next(rpc_rx_t *rx, rpc_frame_t *out)
{
    if (rx->err)
        return rx->err;
    if (rx->scratch.cap > RX_KEEP_MAX)
        st_buf_deinit(&rx->scratch);
    if (rx->end == rx->start)
        return ST_EAGAIN;
    size_t used = 0;
    int rc = rpc_frame_decode(rx->buf + rx->start, rx->end - rx->start, rx->max_frame, &rx->scratch,
                              out, &used);
    if (rc == 0) {
        rx->start += used;
        return 0;
    }
    if (rc != ST_EAGAIN)
        rx->err = rc;
    return rc;
}

uint8_t *rpc_rx_detach(rpc_rx_t *rx, const uint8_t *payload, size_t len)
{
    size_t fend = RPC_FRAME_HDR + len; /* the frame is buf[0, fend) */
    if (!rx->buf || payload != rx->buf + RPC_FRAME_HDR || rx->start != fend || 2 * fend < rx->cap)
        return NULL;
    size_t tail = rx->end - rx->start, keep = rx->cap < RX_KEEP_MAX ? rx->cap : RX_KEEP_MAX;
    if (tail > len / 2)
        return NULL;
    uint8_t *nb = NULL;
    if (tail) { /* the next frames' first bytes: into a buffer of the usual size */
        size_t ncap = keep > tail ? keep : tail;
        if (!(nb = malloc(ncap)))
            return NULL;
        memcpy(nb, rx->buf + rx->start, tail);
        keep = ncap;
    }
    uint8_t *b = rx->buf;
    rx->next_cap = keep;
    rx->buf = nb;
    rx->cap = nb ? keep : 0;
    rx->start = 0;
    rx->end = tail;
    return b;
}
