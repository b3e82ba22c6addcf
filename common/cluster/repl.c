/*
 * repl — quorum arithmetic and NodeWrite envelope handling for replicated
 * writes. See repl.h.
 */
#include "repl.h"

#include <string.h>

#include "st_err.h"
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
