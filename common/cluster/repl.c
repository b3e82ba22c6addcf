/*
 * repl — quorum arithmetic and NodeWrite envelope handling for replicated
 * writes. See repl.h.
 */
#include "repl.h"

#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "st_err.h"
#include "st_varint.h"
#include "wire.h"

uint32_t repl_required(int mode, uint32_t rf)
{
    if (rf == 0)
        return 1;
    switch (mode) {
    case TOPO_WRITE_SYNC:
        return rf;
    case TOPO_WRITE_ASYNC:
        return 1;
    default:
        return rf / 2 + 1;
    }
}

void repl_tally_init(repl_tally_t *t, int mode, uint32_t rf)
{
    t->rf = rf ? rf : 1;
    t->required = repl_required(mode, t->rf);
    t->acks = t->fails = 0;
}

repl_state_t repl_tally_state(const repl_tally_t *t)
{
    if (t->acks >= t->required)
        return REPL_OK;
    if (t->rf - t->fails < t->required)
        return REPL_FAILED;
    return REPL_PENDING;
}

repl_state_t repl_tally_add(repl_tally_t *t, int ok)
{
    if (t->acks + t->fails < t->rf) {
        if (ok)
            t->acks++;
        else
            t->fails++;
    }
    return repl_tally_state(t);
}

static uint32_t shard_of(const uint8_t *p, size_t len, int *err)
{
    const uint8_t *q = p, *end = p + len;
    wire_field_t f;
    int rc;
    uint32_t shard = UINT32_MAX;
    while ((rc = wire_next(&q, end, &f)) == 1) {
        if (f.num == WIRE_WRITE_REQUEST_SHARD && f.type == WIRE_VARINT) {
            shard = f.u > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)f.u;
            break;
        }
    }
    if (rc < 0)
        *err = rc;
    return shard;
}

int repl_scan(const uint8_t *p, size_t len, repl_entry_t *entries, size_t cap, repl_envelope_t *env)
{
    const uint8_t *q = p, *end = p + len;
    wire_field_t f;
    int rc;
    memset(env, 0, sizeof *env);
    for (;;) {
        const uint8_t *start = q;
        if ((rc = wire_next(&q, end, &f)) != 1)
            break;
        if (f.num == WIRE_NODE_WRITE_SHARDS && f.type == WIRE_LEN) {
            int err = 0;
            uint32_t shard = shard_of(f.data, f.len, &err);
            if (err)
                return ST_ECORRUPT;
            if (env->n < cap)
                entries[env->n] = (repl_entry_t){start, (size_t)(q - start), f.data, f.len, shard};
            env->n++;
        } else if (f.num == WIRE_NODE_WRITE_CONSISTENCY && f.type == WIRE_VARINT) {
            env->consistency = f.u > 3 ? 0 : (uint32_t)f.u;
        } else if (f.num == WIRE_NODE_WRITE_FORWARDED && f.type == WIRE_VARINT) {
            env->forwarded = f.u != 0;
        }
    }
    return rc < 0 ? ST_ECORRUPT : 0;
}

int repl_put_envelope(st_buf_t *b, uint32_t consistency, int forwarded)
{
    int rc = 0;
    if (consistency)
        rc |= wire_put_varint_field(b, WIRE_NODE_WRITE_CONSISTENCY, consistency);
    if (forwarded)
        rc |= wire_put_varint_field(b, WIRE_NODE_WRITE_FORWARDED, 1);
    return rc ? ST_ENOMEM : 0;
}

int repl_put_entry(st_buf_t *b, const uint8_t *msg, size_t len)
{
    return wire_put_bytes_field(b, WIRE_NODE_WRITE_SHARDS, msg, len) ? ST_ENOMEM : 0;
}

void repl_series_ref(const uint8_t *lab, size_t len, uint64_t seed, uint8_t out[WIRE_REF_LEN])
{
    XXH128_hash_t h = XXH3_128bits_withSeed(lab, len, seed);
    memcpy(out, &h.low64, 8);
    memcpy(out + 8, &h.high64, 8);
}

/* Bytes of a LEN field of n bytes (key of field numbers < 16). */
static size_t len_field(size_t n)
{
    return 1 + (size_t)st_uvarint_len(n) + n;
}

static uint8_t *put_len_field(uint8_t *w, uint32_t num, const uint8_t *p, size_t n)
{
    *w++ = (uint8_t)(num << 3 | WIRE_LEN);
    w += st_uvarint_put(w, n);
    memcpy(w, p, n);
    return w + n;
}

/* One WriteRequest again with references (repl_put_forward_refs). */
static int put_entry_refs(st_buf_t *out, const uint8_t *msg, size_t len, uint64_t seed)
{
    size_t mark;
    if (wire_begin(out, WIRE_NODE_WRITE_SHARDS, &mark))
        return ST_ENOMEM;
    const uint8_t *q = msg, *end = msg + len;
    wire_field_t f;
    int rc;
    for (;;) {
        const uint8_t *start = q;
        if ((rc = wire_next(&q, end, &f)) != 1)
            break;
        wire_series_t s;
        if (!(f.num == WIRE_WRITE_REQUEST_SERIES && f.type == WIRE_LEN) ||
            wire_series_scan(f.data, f.len, &s) < 0 || !s.lab) {
            /* not a series, or one this cannot name: as it is (a malformed
             * one is the replica's to refuse) */
            if (st_buf_append(out, start, (size_t)(q - start)))
                return ST_ENOMEM;
            continue;
        }
        size_t inner = len_field(WIRE_REF_LEN) + (s.ts ? len_field(s.ts_len) : 0) +
                       (s.vals ? len_field(s.nvals * 8) : 0) + (s.vers ? len_field(s.vers_len) : 0);
        if (st_buf_reserve(out, len_field(inner)))
            return ST_ENOMEM;
        uint8_t *w = out->data + out->len, ref[WIRE_REF_LEN];
        *w++ = (uint8_t)(WIRE_WRITE_REQUEST_SERIES << 3 | WIRE_LEN);
        w += st_uvarint_put(w, inner);
        if (s.ref) /* named already (a router's reference): the same */
            memcpy(ref, s.ref, WIRE_REF_LEN);
        else
            repl_series_ref(s.lab, s.lab_len, seed, ref);
        w = put_len_field(w, WIRE_SERIES_SAMPLES_REF, ref, WIRE_REF_LEN);
        if (s.ts)
            w = put_len_field(w, WIRE_SERIES_SAMPLES_TIMESTAMPS, s.ts, s.ts_len);
        if (s.vals)
            w = put_len_field(w, WIRE_SERIES_SAMPLES_VALUES, s.vals, s.nvals * 8);
        if (s.vers)
            w = put_len_field(w, WIRE_SERIES_SAMPLES_VERSIONS, s.vers, s.vers_len);
        out->len = (size_t)(w - out->data);
    }
    if (rc < 0)
        return ST_ECORRUPT;
    wire_end(out, mark);
    return 0;
}

int repl_put_forward_refs(st_buf_t *out, const repl_entry_t *e, const size_t *idx, size_t k,
                          uint64_t seed)
{
    int rc = repl_put_envelope(out, 0, 1);
    for (size_t i = 0; i < k && !rc; i++) {
        const repl_entry_t *x = &e[idx ? idx[i] : i];
        rc = put_entry_refs(out, x->msg, x->msg_len, seed);
    }
    return rc;
}

uint64_t repl_entry_version(const uint8_t *msg, size_t len)
{
    const uint8_t *q = msg, *end = msg + len;
    wire_field_t f;
    uint64_t v = 0;
    while (wire_next(&q, end, &f) == 1)
        if (f.num == WIRE_WRITE_REQUEST_VERSION && f.type == WIRE_VARINT)
            v = f.u; /* the last occurrence wins (protobuf merge rule) */
    return v;
}

int repl_stamp_version(const uint8_t *p, size_t len, uint64_t version, st_buf_t *out)
{
    const uint8_t *q = p, *end = p + len;
    wire_field_t f;
    int rc;
    st_buf_t tail;
    st_buf_init(&tail);
    for (;;) {
        const uint8_t *start = q;
        if ((rc = wire_next(&q, end, &f)) != 1)
            break;
        if (f.num == WIRE_NODE_WRITE_SHARDS && f.type == WIRE_LEN && version &&
            repl_entry_version(f.data, f.len) == 0) {
            st_buf_reset(&tail);
            if (st_buf_append(&tail, f.data, f.len) ||
                wire_put_varint_field(&tail, WIRE_WRITE_REQUEST_VERSION, version) ||
                repl_put_entry(out, tail.data, tail.len)) {
                rc = ST_ENOMEM;
                break;
            }
        } else if (st_buf_append(out, start, (size_t)(q - start))) {
            rc = ST_ENOMEM;
            break;
        }
    }
    st_buf_deinit(&tail);
    return rc < 0 ? (rc == ST_ENOMEM ? rc : ST_ECORRUPT) : 0;
}

/* The shard and version of a WriteRequest in one pass (the last of each wins). */
static int entry_info(const uint8_t *msg, size_t len, uint32_t *shard, uint64_t *version)
{
    const uint8_t *q = msg, *end = msg + len;
    wire_field_t f;
    int rc, have_shard = 0;
    *shard = UINT32_MAX;
    *version = 0;
    while ((rc = wire_next(&q, end, &f)) == 1) {
        if (f.type != WIRE_VARINT)
            continue;
        if (f.num == WIRE_WRITE_REQUEST_SHARD && !have_shard) { /* as shard_of: the first */
            *shard = f.u > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)f.u;
            have_shard = 1;
        } else if (f.num == WIRE_WRITE_REQUEST_VERSION) {
            *version = f.u;
        }
    }
    return rc < 0 ? ST_ECORRUPT : 0;
}

int repl_stamp_forward(const uint8_t *p, size_t len, uint64_t version, st_buf_t *out,
                       repl_entry_t **entries, repl_envelope_t *env)
{
    const uint8_t *q = p, *end = p + len;
    wire_field_t f;
    int rc;
    size_t cap = 0;
    repl_entry_t *e = NULL;
    memset(env, 0, sizeof *env);
    *entries = NULL;
    /* room for the whole message with a version in each of up to 64 entries
     * up front: growing later is correct (offsets below), just slower */
    if (st_buf_reserve(out, len + 16 + 64 * (1 + ST_UVARINT_MAX + ST_UVARINT_MAX)) ||
        repl_put_envelope(out, 0, 1))
        return ST_ENOMEM;
    for (;;) {
        const uint8_t *start = q;
        if ((rc = wire_next(&q, end, &f)) != 1)
            break;
        if (f.num == WIRE_NODE_WRITE_CONSISTENCY && f.type == WIRE_VARINT) {
            env->consistency = f.u > 3 ? 0 : (uint32_t)f.u;
            continue;
        }
        if (f.num == WIRE_NODE_WRITE_FORWARDED && f.type == WIRE_VARINT) {
            env->forwarded = f.u != 0;
            continue;
        }
        if (!(f.num == WIRE_NODE_WRITE_SHARDS && f.type == WIRE_LEN)) {
            if (st_buf_append(out, start, (size_t)(q - start))) {
                rc = ST_ENOMEM;
                break;
            }
            continue;
        }
        uint32_t shard;
        uint64_t has;
        if ((rc = entry_info(f.data, f.len, &shard, &has)) != 0)
            break;
        if (env->n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            repl_entry_t *ne = realloc(e, nc * sizeof *e);
            if (!ne) {
                rc = ST_ENOMEM;
                break;
            }
            e = ne;
            cap = nc;
        }
        /* offsets into out until the end: out may move while it grows */
        size_t field_off = out->len, msg_len = f.len;
        if (version && has == 0) { /* the field again, one varint longer: one copy */
            uint8_t vfield[1 + ST_UVARINT_MAX];
            vfield[0] = (uint8_t)(WIRE_WRITE_REQUEST_VERSION << 3 | WIRE_VARINT);
            size_t vl = 1 + st_uvarint_put(vfield + 1, version);
            msg_len = f.len + vl;
            if (st_buf_reserve(out, 2 * ST_UVARINT_MAX + msg_len)) {
                rc = ST_ENOMEM;
                break;
            }
            uint8_t *w = out->data + out->len;
            w += st_uvarint_put(w, (uint64_t)WIRE_NODE_WRITE_SHARDS << 3 | WIRE_LEN);
            w += st_uvarint_put(w, msg_len);
            memcpy(w, f.data, f.len);
            memcpy(w + f.len, vfield, vl);
            out->len = (size_t)(w - out->data) + msg_len;
        } else if (st_buf_append(out, start, (size_t)(q - start))) {
            rc = ST_ENOMEM;
            break;
        }
        e[env->n++] =
            (repl_entry_t){(const uint8_t *)(uintptr_t)field_off, out->len - field_off,
                           (const uint8_t *)(uintptr_t)(out->len - msg_len), msg_len, shard};
    }
    if (rc < 0) {
        free(e);
        env->n = 0;
        return rc == ST_ENOMEM ? rc : ST_ECORRUPT;
    }
    for (size_t i = 0; i < env->n; i++) {
        e[i].field = out->data + (uintptr_t)e[i].field;
        e[i].msg = out->data + (uintptr_t)e[i].msg;
    }
    *entries = e;
    return 0;
}

int repl_consistency_param(const char *s)
{
    if (!s || !*s)
        return 0;
    if (!strcmp(s, "sync") || !strcmp(s, "all"))
        return 1 + TOPO_WRITE_SYNC;
    if (!strcmp(s, "quorum"))
        return 1 + TOPO_WRITE_QUORUM;
    if (!strcmp(s, "async") || !strcmp(s, "any") || !strcmp(s, "one"))
        return 1 + TOPO_WRITE_ASYNC;
    return -1;
}

static const char *const limit_names[REPL_NLIMITS] = {"max_series", "max_new_series_per_hour",
                                                      "max_new_series_per_write", "other"};

const char *repl_limit_name(size_t i)
{
    return limit_names[i < REPL_NLIMITS ? i : REPL_NLIMITS - 1];
}

size_t repl_limit_index(const char *name)
{
    size_t i = 0;
    while (i < REPL_NLIMITS - 1 && strcmp(name, limit_names[i]) != 0)
        i++;
    return i;
}
