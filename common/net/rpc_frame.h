/*
 * rpc_frame — the node RPC wire framing, with no sockets and no libuv.
 *
 * One frame, all integers little-endian (docs/protocol.md has the full
 * byte-by-byte description):
 *
 *   offset size field
 *   0      4    len     u32: number of bytes after this field (>= 10)
 *   4      1    type    u8: rpc_type_t
 *   5      1    flags   u8: bit 0 = RPC_FLAG_LZ4, other bits must be 0
 *   6      8    reqid   u64: request id (0 = connection-level message)
 *   14     n    payload len - 10 bytes: a protobuf message chosen by type;
 *                       with RPC_FLAG_LZ4 it is u32 raw length followed by
 *                       one LZ4 block that decompresses to exactly raw bytes
 *
 * Limits are checked before anything is allocated: a length field above
 * max_frame is ST_ELIMIT as soon as its 4 bytes are seen, and so is a raw
 * (decompressed) length above max_frame.
 *
 * Two layers:
 *  - rpc_frame_encode / rpc_frame_decode work on one frame in a buffer;
 *  - rpc_rx_t is the per-connection receive state machine: it owns the read
 *    buffer (bytes are read straight into it: rpc_rx_reserve + rpc_rx_commit,
 *    or copied in with rpc_rx_push) and hands out complete frames with
 *    rpc_rx_next. It never holds more than one partial frame plus one read
 *    chunk, plus one decompressed payload, so a connection costs at most
 *    about 2 * max_frame + RPC_RX_CHUNK bytes however the peer behaves; and
 *    the buffer grows with the bytes that arrive, not with the length a
 *    frame announces, so memory follows what the peer actually sent.
 */
#ifndef RPC_FRAME_H
#define RPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"

/* 2: series travel by reference (SeriesSamples.ref, ST_ENOREF), which a
 * version-1 process would take for series without labels */
#define RPC_PROTOCOL_VERSION 2
#define RPC_FRAME_HDR 14                        /* len + type + flags + reqid */
#define RPC_FRAME_LEN_MIN 10                    /* smallest value of the len field */
#define RPC_FRAME_MAX_DEFAULT (64u << 20)       /* 64 MiB */
#define RPC_COMPRESS_MIN_DEFAULT (64u << 10)    /* 64 KiB */
#define RPC_PAYLOAD_MAX (UINT32_MAX - 10u - 4u) /* what a u32 len field can carry */
#define RPC_RX_CHUNK (64u << 10)                /* read size when no frame is pending */

#define RPC_FLAG_LZ4 0x01u
#define RPC_FLAGS_KNOWN RPC_FLAG_LZ4

typedef enum rpc_type {
    RPC_HELLO = 1,     /* client -> server, first frame: Hello */
    RPC_HELLO_ACK = 2, /* server -> client: Hello (the server's identity) */
    RPC_ERROR = 3,     /* either way: Error{code, message} */
    RPC_PING = 4,      /* client -> server, empty payload */
    RPC_PONG = 5,      /* server -> client, empty payload, same reqid */
    RPC_WRITE = 16,
    RPC_WRITE_RESP = 17,
    RPC_EXPORT = 18,
    RPC_EXPORT_RESP = 19,
    RPC_SERIES = 20,
    RPC_SERIES_RESP = 21,
    RPC_LABEL_NAMES = 22,
    RPC_LABEL_NAMES_RESP = 23,
    RPC_LABEL_VALUES = 24,
    RPC_LABEL_VALUES_RESP = 25,
    RPC_STATS = 26,
    RPC_STATS_RESP = 27,
    RPC_QUERY = 28,            /* QueryRequest: evaluate pushed-down PromQL */
    RPC_QUERY_RESP = 29,       /* QueryResponse */
    RPC_TSDB_STATUS = 30,      /* ReadRequest: cardinality of the shards' series */
    RPC_TSDB_STATUS_RESP = 31, /* TsdbStatusResponse */
    RPC_CANCEL = 32,           /* CancelRequest: stop the running QUERYs of a query id */
    RPC_CANCEL_RESP = 33,      /* empty */
    RPC_DELETE = 34,           /* DeleteRequest: dry run or purge (deletes ride RPC_WRITE) */
    RPC_DELETE_RESP = 35,      /* DeleteResponse */
    RPC_RULES = 38,            /* RulesRequest: offer / ask for the compaction rule set */
    RPC_RULES_RESP = 39,       /* RulesResponse: the node's rule set */
    RPC_TOMBS = 40,            /* TombsRequest: a shard's versioned deletes (repair) */
    RPC_TOMBS_RESP = 41,       /* TombsResponse */
    RPC_DIGEST = 44,           /* DigestRequest: a shard's digest (repair) */
    RPC_DIGEST_RESP = 45,      /* DigestResponse */
    RPC_REPAIR_PULL = 46,      /* RepairPullRequest: samples of some buckets and a window */
    RPC_REPAIR_PULL_RESP = 47, /* ReadResponse page */
    RPC_REPAIR = 48,           /* RepairRequest: repair / copy shards now */
    RPC_REPAIR_RESP = 49,      /* RepairResponse */
    RPC_COPY_LIST = 50,        /* CopyListRequest: a shard's segment files (copy) */
    RPC_COPY_LIST_RESP = 51,   /* CopyListResponse */
    RPC_COPY_FETCH = 52,       /* CopyFetchRequest: a chunk of one file */
    RPC_COPY_FETCH_RESP = 53,  /* CopyFetchResponse */
    RPC_ROW_STATS = 54,        /* ReadRequest: timestamp fingerprints per tag set (SQL count(*)) */
    RPC_ROW_STATS_RESP = 55,   /* RowStatsResponse */
    RPC_TOPN = 56,             /* TopnRequest: newest (oldest) row keys (SQL ORDER BY time) */
    RPC_TOPN_RESP = 57,        /* TopnResponse */
} rpc_type_t;

/* A decoded frame. payload points into the input buffer when the frame was
 * not compressed (zero-copy) and into the caller's scratch buffer when it
 * was; either way it is valid until that memory is reused. */
typedef struct rpc_frame {
    uint8_t type;
    uint8_t flags; /* as received (RPC_FLAG_LZ4 tells the payload was compressed) */
    uint64_t reqid;
    const uint8_t *payload;
    size_t len;
} rpc_frame_t;

/* A stable name for a message type ("WRITE", "HELLO_ACK"), or "UNKNOWN". */
const char *rpc_type_name(unsigned type);

/*
 * Append one frame to `out` (existing contents are kept, so several frames
 * can be batched). The payload is LZ4-compressed when compress_min > 0,
 * len >= compress_min and compression saves space. Returns 0, ST_ELIMIT when
 * len > RPC_PAYLOAD_MAX, ST_ENOMEM (out unchanged).
 */
int rpc_frame_encode(st_buf_t *out, uint8_t type, uint64_t reqid, const void *payload, size_t len,
                     size_t compress_min);
/* The header alone of an uncompressed frame whose len payload bytes are
 * sent from elsewhere (a second write buffer). ST_ELIMIT over RPC_PAYLOAD_MAX. */
int rpc_frame_header(uint8_t hdr[RPC_FRAME_HDR], uint8_t type, uint64_t reqid, size_t len);

/*
 * Decode the frame at the start of buf[0..len). On success returns 0, fills
 * *out and sets *consumed to the frame's size on the wire. Otherwise returns
 * ST_EAGAIN (the frame is not complete yet: read more), ST_ELIMIT (length or
 * raw length above max_frame; known from the first 4 bytes), ST_EPROTO
 * (length below 10, unknown flag bits, a compressed payload shorter than its
 * raw-length field or a raw length of 0), ST_ECORRUPT (the LZ4 block does
 * not decompress to exactly the raw length), ST_ENOMEM. `scratch` receives
 * the decompressed payload (it is reset first); it may be NULL only if the
 * caller never accepts compressed frames (then ST_EPROTO).
 */
int rpc_frame_decode(const uint8_t *buf, size_t len, size_t max_frame, st_buf_t *scratch,
                     rpc_frame_t *out, size_t *consumed);

/* ---- per-connection receive state machine ---------------------------- */

typedef struct rpc_rx {
    uint8_t *buf;
    size_t cap;
    size_t start; /* first unconsumed byte */
    size_t end;   /* one past the last received byte */
    size_t max_frame;
    int err; /* sticky: the first decode error */
    st_buf_t scratch;
    size_t next_cap; /* after a detach: the new buffer's first size (the old one's, capped) */
} rpc_rx_t;

/* max_frame 0 = RPC_FRAME_MAX_DEFAULT. Allocates nothing. */
void rpc_rx_init(rpc_rx_t *rx, size_t max_frame);
void rpc_rx_deinit(rpc_rx_t *rx);

/*
 * Writable room for the next read: at least one byte; when the pending
 * frame's header is known, room towards finishing it, growing with the
 * bytes already received (the buffer at most doubles per call, never past
 * max_frame plus a chunk), RPC_RX_CHUNK otherwise. Invalidates frames
 * returned earlier. Returns 0 or ST_ENOMEM.
 */
int rpc_rx_reserve(rpc_rx_t *rx, uint8_t **OUT_p, size_t *OUT_n);
/* The capacity the buffer will have after the next rpc_rx_reserve (so a
 * caller can charge it to a budget before it is allocated). */
size_t rpc_rx_reserve_cap(const rpc_rx_t *rx);
/* Bytes the receiver holds in memory now (buffer plus scratch). */
static inline size_t rpc_rx_mem(const rpc_rx_t *rx)
{
    return rx->cap + rx->scratch.cap;
}
/* n bytes were written at the pointer rpc_rx_reserve returned. */
void rpc_rx_commit(rpc_rx_t *rx, size_t n);
/* Copy bytes in (tests, fuzzing, socketpairs). Returns 0 or ST_ENOMEM. */
int rpc_rx_push(rpc_rx_t *rx, const void *p, size_t n);

/*
 * The next complete frame: 0 (*out valid until the next rpc_rx_* call),
 * ST_EAGAIN (need more bytes) or a decode error, which is sticky: the
 * connection cannot be resynchronized and must be closed.
 */
int rpc_rx_next(rpc_rx_t *rx, rpc_frame_t *out);
/*
 * The buffer of rx itself, when the frame rpc_rx_next just handed out
 * (payload[0..len), not compressed) starts it and fills at least half of
 * it: the caller owns the block from then on (free() it; payload stays
 * where it is) and rx starts a new buffer, of the detached one's size (up
 * to the 2 MiB a connection keeps anyway), so that a stream of large frames
 * is not regrown from a chunk for each. Bytes already received after the
 * frame (the start of the next ones, at most half the frame's size) move
 * into the new buffer: copying them costs less than copying the payload.
 * NULL otherwise: copy the payload. Lets a receiver keep a large request
 * without copying it.
 */
uint8_t *rpc_rx_detach(rpc_rx_t *rx, const uint8_t *payload, size_t len);

/* Bytes received and not yet returned as frames. */
static inline size_t rpc_rx_buffered(const rpc_rx_t *rx)
{
    return rx->end - rx->start;
}

#endif
