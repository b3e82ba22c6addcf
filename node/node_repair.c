/*
 * node_repair — anti-entropy, on-demand repair and rebuilding an empty
 * replica (the design is in node_repair.h).
 *
 * A pass over (shard, peer): the peer's file list (RPC_COPY_LIST) and the
 * copy of the partitions this node holds nothing of (node_copy.c), the
 * sealed partitions to skip (found equal before, tokens unchanged), local
 * digest (cached per shard while the engine's content counters do not
 * move, and per sealed partition while its token holds), the peer's digest (RPC_DIGEST,
 * same shape), engine_digest_diff; for every window with cells the peer
 * has and we differ on, REPAIR_PULL pages of those buckets' series; each
 * series is merged with the local copy (one exact-label query). Pages
 * carry each sample's version (engine_iter_versions on the serving side);
 * the timestamps we lack, and those where the peer holds another value
 * with a HIGHER version than ours, are written with engine_write_v and the
 * peer's version (one call per run of equal versions), so the latest write
 * wins as it does everywhere else. A conflict where our version is higher
 * (or equal) is left: the peer pulls ours in its own pass (equal versions
 * with different values cannot come from one write; counted, not moved).
 * An RPC_REPAIR may name a time range (the router's read repair asks for
 * the range of the read that saw its replicas disagree): only the digest
 * windows overlapping it are pulled.
 *
 * Deletes go first in a pass: the peer's versioned tombstones this node
 * lacks (RPC_TOMBS, one call when both hold the same ones) are applied as
 * the deletes themselves would be (node_delete.c), so a replica that
 * missed a delete and all its hints gets it here, before any sample.
 *
 * The repair thread owns a private uv loop; a call is synchronous: queue
 * it with rpc_client_call and run the loop until its callback fires (the
 * client's own deadline bounds it). RPC_REPAIRs wait in a queue (mu) that
 * the thread serves between its own passes; finished ones go on a done
 * list and a uv_async wakes the node's loop to answer them. The async
 * handle stays open while any job is queued, running or unanswered, so a
 * shutting-down loop runs until each has its answer.
 */
#include "node_repair.h"

#include <inttypes.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "node_copy.h"
#include "st_file.h"
#include "st_time.h"
#include "st_varint.h"
#include "strata.pb-c.h"
#include "wire.h"

/* The encoded digest of one sealed partition (one window of the
 * partition's length), valid while the partition's token is the same. */
typedef struct part_digest {
    int64_t start;
    uint64_t token;
    uint32_t nbuckets;
    uint8_t *bytes;
    size_t len;
} part_digest_t;

/* Cached encoded digest of one shard, and of each of its sealed partitions. */
typedef struct digest_cache {
    uint64_t token[7]; /* engine content counters when computed */
    uint32_t nbuckets;
    int64_t window_ms;
    uint8_t *bytes;
    size_t len;
    part_digest_t *pd; /* ascending start */
    size_t npd;
} digest_cache_t;

/* What a pass over one (shard, peer) found and did. */
typedef struct pass_result {
    uint64_t cells, series, samples, conflicts, resolved, bytes, ms, tombs;
    uint64_t files, file_bytes, skipped; /* files copied, their bytes; partitions not compared */
    int64_t last_ms;
    int peer_rebuilding;
    char error[160];
} pass_result_t;

/* A sealed partition last found equal on this node and one peer: the
 * tokens (engine_part_token_t) both sides had then. */
typedef struct equal_part {
    uint32_t peer;
    int64_t start;
    uint64_t mine, theirs;
} equal_part_t;

typedef struct shard_state {
    pass_result_t last; /* summed over the peers of the last pass */
    int synced;         /* rebuild: pulled completely from one peer */
    equal_part_t *eq;   /* sealed partitions found equal, per peer */
    size_t neq, eqcap;
} shard_state_t;

struct node_repair {
    node_t *n;
    char *cluster, *node_id;
    uint64_t fingerprint;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu; /* states, cache */
    atomic_int stopping;
    atomic_int rebuilding;
    int no_files; /* STRATA_REPAIR_NO_FILES set: stream only (benchmark A/B) */
    uint32_t rebuild_total, rebuild_done;
    uint64_t rebuild_files, rebuild_bytes; /* copied / received while rebuilding (mu) */
    pthread_mutex_t run_mu;                /* one pass at a time */
    pthread_cond_t wake;                   /* a job queued, or stopping (mu) */
    node_repair_job_t *queue, *queue_tail; /* RPC_REPAIRs to run (mu) */
    node_repair_job_t *done;               /* run, to answer on the loop (mu) */
    size_t nqueued, pending;               /* queued; queued + running + done (mu) */
    uv_async_t async;                      /* wakes the loop for the done list */
    int async_open;                        /* (mu) */
    int sync_init;                         /* mu, run_mu and wake made */
    shard_state_t *state;                  /* [shards] */
    digest_cache_t *cache;                 /* [shards] */
    metric_counter_t *passes_ok, *passes_err, *cells, *series, *samples, *conflicts, *resolved,
        *bytes, *files, *file_bytes, *skipped, *tombs;
    metric_gauge_t *rebuild_gauge;
};

/* ---- digests and the marker ---- */

/* data_dir/name holding `content`, fsynced; a failure is logged. */
static void write_small_file(const char *data_dir, const char *name, const char *content)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", content) < 0 || fflush(f) || fsync(fileno(f))) {
        st_warn("cannot write the node marker", "path=%s err=\"%s\"", path, strerror(errno));
    }
    if (f)
        fclose(f);
}

int node_repair_fresh_dir(const char *data_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, NODE_REPAIR_REBUILDING);
    if (access(path, F_OK) == 0)
        return 1; /* a rebuild was cut short: start it again */
    snprintf(path, sizeof path, "%s/%s", data_dir, NODE_REPAIR_MARKER);
    if (access(path, F_OK) == 0)
        return 0;
    DIR *d = opendir(data_dir);
    if (!d)
        return 1;
    struct dirent *e;
    int fresh = 1;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "shard-", 6)) {
            fresh = 0;
            break;
        }
    closedir(d);
    if (fresh) /* before any shard directory exists */
        write_small_file(data_dir, NODE_REPAIR_REBUILDING, "rebuild started");
    return fresh;
}

/* The node is a full replica: the marker, then no rebuild pending. */
static void write_marker(node_t *n)
{
    write_small_file(n->data_dir, NODE_REPAIR_MARKER, n->node_id);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", n->data_dir, NODE_REPAIR_REBUILDING);
    if (unlink(path) != 0 && errno != ENOENT)
        st_warn("cannot remove the rebuild marker", "path=%s err=\"%s\"", path, strerror(errno));
}

/* Bucket count for a shard of `series` series: about 64 series a bucket. */
static uint32_t buckets_for(uint64_t series)
{
    uint32_t b = 64;
    while (b < 4096 && (uint64_t)b * 64 < series)
        b <<= 1;
    return b;
}

/* Counters that move whenever the content, or where it lives, changes:
 * a digest is cached only when they did not move while it was computed
 * (a scan that overlapped a flush or compaction is not kept). */
static void content_token(engine_t *e, uint64_t tok[7])
{
    engine_stats_t s;
    engine_get_stats(e, &s);
    tok[0] = s.samples_written;
    tok[1] = s.deletes;
    tok[2] = s.partitions;
    tok[3] = s.samples_too_old + s.series;
    tok[4] = s.flushes;
    tok[5] = s.compactions;
    tok[6] = s.segments_installed;
}

static int local_parts(engine_t *e, engine_part_token_t **lp, size_t *nlp);

static void part_digests_free(part_digest_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].bytes);
    free(v);
}

/* The entry of v[0, n) (sorted by start, as the partition lists are) for
 * the partition starting at start, or NULL: a binary search, so that a
 * shard of many thousand partitions is not compared pair by pair. */
static part_digest_t *part_find(part_digest_t *v, size_t n, int64_t start)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo].start == start ? &v[lo] : NULL;
}

/* The cached digest of sealed partition p (mu held): decoded into *out, or
 * NULL when there is none for its token. */
static engine_digest_t *part_cached(digest_cache_t *c, const engine_part_token_t *p, uint32_t nb)
{
    part_digest_t *x = part_find(c->pd, c->npd, p->start);
    engine_digest_t *d = NULL;
    if (!x || x->token != p->token || x->nbuckets != nb ||
        engine_digest_decode(x->bytes, x->len, &d))
        return NULL;
    return d;
}

/*
 * The digest of a shard with windows of its partition length: each sealed
 * partition's cells come from the cache while its token holds (computed
 * once, alone, then kept); the rest -- partitions a head holds samples of,
 * partitions with a pending delete, time outside every partition with
 * segments -- is read in a few range scans. What was computed is kept only
 * if the partition's token did not move meanwhile.
 */
static int digest_by_parts(node_repair_t *r, engine_t *e, uint32_t shard, uint32_t nb, int64_t win,
                           engine_digest_t **out)
{
    engine_part_token_t *lp = NULL, *lp2 = NULL;
    size_t nlp = 0, nlp2 = 0, nfresh = 0;
    engine_digest_t *d = NULL;
    part_digest_t *fresh = NULL;
    int rc = local_parts(e, &lp, &nlp);
    if (!rc)
        rc = engine_digest_create(nb, win, &d);
    if (!rc && nlp && !(fresh = calloc(nlp, sizeof *fresh)))
        rc = ST_ENOMEM;
    int64_t from = INT64_MIN;
    for (size_t i = 0; i < nlp && !rc; i++) {
        if (!lp[i].sealed)
            continue;
        if (atomic_load(&r->stopping)) { /* a node that stops does not wait for this */
            rc = ST_ECLOSED;
            break;
        }
        if (lp[i].start > from && (rc = engine_digest_range(e, d, from, lp[i].start - 1)))
            break;
        from = lp[i].start + win;
        pthread_mutex_lock(&r->mu);
        engine_digest_t *pd = part_cached(&r->cache[shard], &lp[i], nb);
        pthread_mutex_unlock(&r->mu);
        int computed = !pd;
        if (computed && !(rc = engine_digest_create(nb, win, &pd)))
            rc = engine_digest_range(e, pd, lp[i].start, lp[i].start + win - 1);
        if (!rc)
            rc = engine_digest_merge(d, pd);
        if (!rc && computed) {
            part_digest_t *f = &fresh[nfresh];
            if (!engine_digest_encode(pd, &f->bytes, &f->len)) {
                f->start = lp[i].start;
                f->token = lp[i].token;
                f->nbuckets = nb;
                nfresh++;
            }
        }
        engine_digest_destroy(pd);
    }
    if (!rc)
        rc = engine_digest_range(e, d, from, INT64_MAX);
    /* keep: what was cached and is still listed, plus what was computed
     * and whose token held */
    if (!rc && !local_parts(e, &lp2, &nlp2)) {
        pthread_mutex_lock(&r->mu);
        digest_cache_t *c = &r->cache[shard];
        part_digest_t *keep = calloc(nlp2 + 1, sizeof *keep);
        size_t nk = 0;
        for (size_t i = 0; keep && i < nlp2; i++) {
            if (!lp2[i].sealed)
                continue;
            /* fresh and the cache are sorted by start like lp2 */
            part_digest_t *src = part_find(fresh, nfresh, lp2[i].start);
            if (src && src->token != lp2[i].token)
                src = NULL;
            if (!src) {
                src = part_find(c->pd, c->npd, lp2[i].start);
                if (src && (src->token != lp2[i].token || !src->bytes))
                    src = NULL;
            }
            if (src) {
                keep[nk++] = *src;
                src->bytes = NULL; /* moved */
            }
        }
        if (keep) {
            part_digests_free(c->pd, c->npd);
            c->pd = keep;
            c->npd = nk;
        }
        pthread_mutex_unlock(&r->mu);
    }
    for (size_t i = 0; i < nfresh; i++)
        free(fresh[i].bytes);
    free(fresh);
    free(lp);
    free(lp2);
    if (rc) {
        engine_digest_destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* The encoded digest of a local shard (a malloc'd copy in *out). */
static int shard_digest(node_t *n, uint32_t shard, uint32_t nb, int64_t window_ms, uint8_t **out,
                        size_t *len)
{
    engine_t *e = n->engines[shard];
    node_repair_t *r = n->repair;
    uint64_t tok[7], after[7];
    content_token(e, tok);
    if (r) {
        pthread_mutex_lock(&r->mu);
        digest_cache_t *c = &r->cache[shard];
        if (c->bytes && c->nbuckets == nb && c->window_ms == window_ms &&
            !memcmp(c->token, tok, sizeof tok)) {
            *out = malloc(c->len ? c->len : 1);
            if (*out)
                memcpy(*out, c->bytes, c->len);
            *len = c->len;
            pthread_mutex_unlock(&r->mu);
            return *out ? 0 : ST_ENOMEM;
        }
        pthread_mutex_unlock(&r->mu);
    }
    engine_digest_t *d;
    int rc = r && window_ms == engine_partition_ms(e)
                 ? digest_by_parts(r, e, shard, nb, window_ms, &d)
                 : engine_digest(e, nb, window_ms, &d);
    if (rc)
        return rc;
    rc = engine_digest_encode(d, out, len);
    engine_digest_destroy(d);
    content_token(e, after);
    if (rc || !r || memcmp(tok, after, sizeof tok))
        return rc;
    uint8_t *copy = malloc(*len ? *len : 1);
    if (copy) {
        memcpy(copy, *out, *len);
        pthread_mutex_lock(&r->mu);
        digest_cache_t *c = &r->cache[shard];
        free(c->bytes);
        c->bytes = copy;
        c->len = *len;
        c->nbuckets = nb;
        c->window_ms = window_ms;
        memcpy(c->token, tok, sizeof tok);
        pthread_mutex_unlock(&r->mu);
    }
    return 0;
}

static engine_t *local_engine(node_t *n, uint32_t shard, char *msg, size_t msglen)
{
    if (shard >= topo_shards(n->topo) || !n->engines[shard]) {
        snprintf(msg, msglen, "shard %u is not placed on node %s", shard, n->node_id);
        return NULL;
    }
    return n->engines[shard];
}

/* ---- server side: DIGEST, REPAIR_PULL ---- */

int node_repair_digest_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                           size_t msglen)
{
    Strata__DigestRequest *q = strata__digest_request__unpack(NULL, len, p);
    if (!q) {
        snprintf(msg, msglen, "malformed DigestRequest");
        return ST_EPROTO;
    }
    int rc = ST_EINVAL;
    uint8_t *d = NULL;
    size_t dl = 0;
    if (!local_engine(n, q->shard, msg, msglen))
        goto done;
    if (!q->nbuckets || q->nbuckets > ENGINE_DIGEST_BUCKETS_MAX || q->window_ms < 1) {
        snprintf(msg, msglen, "invalid digest shape: nbuckets %u (1..%u), window_ms %lld (>= 1)",
                 q->nbuckets, ENGINE_DIGEST_BUCKETS_MAX, (long long)q->window_ms);
        goto done;
    }
    if ((rc = shard_digest(n, q->shard, q->nbuckets, q->window_ms, &d, &dl))) {
        snprintf(msg, msglen, "shard %u digest: %s", q->shard,
                 rc == ST_ELIMIT ? "too many cells (window_ms too small)" : engine_last_error());
        goto done;
    }
    Strata__DigestResponse resp = STRATA__DIGEST_RESPONSE__INIT;
    resp.digest.data = d;
    resp.digest.len = dl;
    resp.rebuilding = n->repair && atomic_load(&n->repair->rebuilding);
    size_t sz = strata__digest_response__get_packed_size(&resp);
    if ((rc = st_buf_reserve(out, sz)))
        goto done;
    out->len = strata__digest_response__pack(&resp, out->data);
done:
    free(d);
    strata__digest_request__free_unpacked(q, NULL);
    return rc;
}

int node_repair_pull_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                         size_t msglen)
{
    Strata__RepairPullRequest *q = strata__repair_pull_request__unpack(NULL, len, p);
    if (!q) {
        snprintf(msg, msglen, "malformed RepairPullRequest");
        return ST_EPROTO;
    }
    int rc = ST_EINVAL;
    engine_t *e = local_engine(n, q->shard, msg, msglen);
    if (!e)
        goto done;
    if (!q->nbuckets || q->nbuckets > ENGINE_DIGEST_BUCKETS_MAX ||
        q->buckets.len != (q->nbuckets + 7) / 8 || q->end_ms < q->start_ms) {
        snprintf(msg, msglen, "invalid RepairPullRequest: nbuckets %u, bitmap %zu bytes",
                 q->nbuckets, q->buckets.len);
        goto done;
    }
    uint64_t max = q->max_samples ? q->max_samples : NODE_REPAIR_PAGE_SAMPLES;
    if (max > NODE_REPAIR_PAGE_MAX)
        max = NODE_REPAIR_PAGE_MAX;
    static const st_matcher_t all = {ST_MATCH_RE, ST_METRIC_LABEL, ".+"};
    engine_iter_t *it;
    if ((rc = engine_query(e, &all, 1, q->start_ms, q->end_ms, &it))) {
        snprintf(msg, msglen, "%s", engine_last_error());
        goto done;
    }
    engine_iter_seek(it, q->cursor_pos);
    const st_label_t *l;
    size_t nl, cnt;
    const int64_t *ts;
    const double *v;
    uint64_t samples = 0;
    int more = 0;
    while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &cnt)) == 1) {
        uint32_t b = engine_digest_bucket(l, nl, q->nbuckets);
        if (!(q->buckets.data[b / 8] & (1u << (b % 8))))
            continue;
        if ((rc = wire_put_series_v(out, WIRE_READ_RESPONSE_SERIES, l, nl, ts, v,
                                    engine_iter_versions(it), cnt)))
            break;
        samples += cnt;
        if (samples >= max) {
            more = 1;
            break;
        }
    }
    uint64_t pos = engine_iter_pos(it);
    engine_iter_destroy(it);
    if (rc < 0) {
        snprintf(msg, msglen, "shard %u: %s", q->shard, engine_last_error());
        goto done;
    }
    rc = wire_put_varint_field(out, WIRE_READ_RESPONSE_DONE, (uint64_t)!more);
    if (more)
        rc |= wire_put_varint_field(out, WIRE_READ_RESPONSE_NEXT_POS, pos);
done:
    strata__repair_pull_request__free_unpacked(q, NULL);
    return rc;
}

/* ---- synchronous calls on a private loop ---- */

typedef struct peers {
    uv_loop_t loop;
    rpc_client_t **cli; /* [nodes], created on first use */
    node_repair_t *r;
    int64_t win_from, win_to; /* pull only windows overlapping this range (0/0: all) */
} peers_t;

typedef struct wait {
    int done, status;
    st_buf_t reply;
} wait_t;

static void on_reply(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    (void)type;
    wait_t *w = arg;
    w->done = 1;
    w->status = status;
    w->reply.len = 0;
    if (len && st_buf_append(&w->reply, payload, len))
        w->status = ST_ENOMEM;
}

static int peers_init(peers_t *ps, node_repair_t *r)
{
    memset(ps, 0, sizeof *ps);
    ps->r = r;
    ps->cli = calloc(topo_node_count(r->n->topo), sizeof *ps->cli);
    if (!ps->cli)
        return ST_ENOMEM;
    if (uv_loop_init(&ps->loop)) {
        free(ps->cli);
        return ST_ENOMEM;
    }
    return 0;
}

static void on_cli_closed(void *arg)
{
    (void)arg;
}

static void peers_close(peers_t *ps)
{
    for (uint32_t i = 0; i < topo_node_count(ps->r->n->topo); i++)
        if (ps->cli[i])
            rpc_client_close(ps->cli[i], on_cli_closed, NULL);
    uv_run(&ps->loop, UV_RUN_DEFAULT);
    uv_loop_close(&ps->loop);
    free(ps->cli);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Call peer `node` and wait: 0 with the reply in w->reply, or ST_E* with
 * err set ("n2: <message>"). */
static int call(peers_t *ps, uint32_t node, uint8_t type, const void *p, size_t len, wait_t *w,
                char *err, size_t errlen)
{
    node_t *n = ps->r->n;
    const char *pid = topo_node_id(n->topo, node);
    if (!ps->cli[node]) {
        rpc_identity_t me = {ps->r->cluster, ps->r->fingerprint, ps->r->node_id};
        const topo_addr_t *a = topo_node_rpc(n->topo, node);
        const topo_replication_t *rc_ = topo_replication(n->topo);
        rpc_client_opts_t co = {
            .connect_timeout_ms =
                (unsigned)(rc_->replica_timeout_ms < 5000 ? rc_->replica_timeout_ms : 5000),
            .backoff_max_ms = 1000,
            .default_timeout_ms = NODE_REPAIR_CALL_TIMEOUT_MS,
            .log = node_rpc_log,
            .tls = n->tls.rpc_client,
        };
        int rc = rpc_client_create(&ps->loop, a->host, a->port, &me, &co, &ps->cli[node]);
        if (rc) {
            snprintf(err, errlen, "%s: cannot create a client: %s", pid, st_strerror(rc));
            return rc;
        }
    }
    w->done = 0;
    w->status = 0;
    int rc = rpc_client_call(ps->cli[node], type, p, len, 0, on_reply, w);
    if (rc) {
        snprintf(err, errlen, "%s: %s", pid, st_strerror(rc));
        return rc;
    }
    /* a timer wakes the loop: a peer that goes down, or a node that stops,
     * ends the wait at once (closing the client fails the call) */
    uv_timer_t tick;
    uv_timer_init(&ps->loop, &tick);
    uv_timer_start(&tick, on_tick, 50, 50);
    int unreachable = 0;
    while (!w->done) {
        uv_run(&ps->loop, UV_RUN_ONCE);
        if (!w->done &&
            (atomic_load(&ps->r->stopping) || rpc_client_state(ps->cli[node]) == RPC_CLIENT_DOWN)) {
            unreachable = !atomic_load(&ps->r->stopping);
            rpc_client_close(ps->cli[node], on_cli_closed, NULL);
            ps->cli[node] = NULL;
        }
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&ps->loop, UV_RUN_NOWAIT);
    if (unreachable) {
        snprintf(err, errlen, "%s: unreachable", pid);
        return ST_EUNAVAIL;
    }
    if (w->status) {
        if (w->status < 0 && w->reply.len) /* an ERROR frame's text */
            snprintf(err, errlen, "%s: %.*s", pid, (int)w->reply.len, (const char *)w->reply.data);
        else
            snprintf(err, errlen, "%s: %s", pid, st_strerror(w->status));
        return w->status;
    }
    return 0;
}

/* ---- the pass ---- */

/* Wait up to ms in steps of at most 50 ms (a stop ends it); returns 1
 * when stopping. */
static int nap(node_repair_t *r, int64_t ms)
{
    int64_t end = st_mono_ms() + ms, now;
    while (!atomic_load(&r->stopping) && (now = st_mono_ms()) < end) {
        int64_t step = end - now > 50 ? 50 : end - now;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&r->stopping);
}

/* Keep the received bytes under max_bytes_per_s since the pass began. */
static void rate_limit(node_repair_t *r, int64_t t0, uint64_t bytes)
{
    uint64_t rate = topo_replication(r->n->topo)->repair_max_bytes_per_s;
    if (rate)
        nap(r, t0 + (int64_t)(bytes * 1000 / rate) - st_mono_ms());
}

typedef struct cells {
    int64_t *start; /* windows with cells to pull, ascending */
    uint8_t *bits;  /* [nw * bitmap bytes] */
    size_t nw, cap, bmlen;
    uint64_t ncells;
    const int64_t *skip; /* windows not compared (sealed, found equal before), ascending */
    size_t nskip;
    int64_t *dw; /* windows with any differing cell, ascending */
    size_t ndw, dwcap;
} cells_t;

static int in_sorted(const int64_t *v, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x;
}

static int note_cell(void *arg, int64_t start, uint32_t b, uint64_t local, uint64_t remote)
{
    cells_t *c = arg;
    (void)local;
    if (in_sorted(c->skip, c->nskip, start))
        return 0;
    if (!c->ndw || c->dw[c->ndw - 1] != start) {
        if (c->ndw == c->dwcap && st_grow(&c->dw, &c->dwcap, sizeof *c->dw, 16))
            return ST_ENOMEM;
        c->dw[c->ndw++] = start;
    }
    if (!remote)
        return 0; /* the peer lacks samples here: its own pass pulls them */
    c->ncells++;
    if (!c->nw || c->start[c->nw - 1] != start) {
        if (c->nw == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 16;
            int64_t *s = realloc(c->start, cap * sizeof *s);
            if (!s)
                return ST_ENOMEM;
            c->start = s;
            uint8_t *bits = realloc(c->bits, cap * c->bmlen);
            if (!bits)
                return ST_ENOMEM;
            c->bits = bits;
            c->cap = cap;
        }
        c->start[c->nw] = start;
        memset(c->bits + c->nw * c->bmlen, 0, c->bmlen);
        c->nw++;
    }
    c->bits[(c->nw - 1) * c->bmlen + b / 8] |= (uint8_t)(1u << (b % 8));
    return 0;
}

/* Write samples [0, n) of one series with their versions, one
 * engine_write_v per run of equal versions (a full head: wait for the
 * flush, bounded). */
static int write_runs(node_repair_t *r, engine_t *e, const wire_series_t *ws, const int64_t *ts,
                      const double *v, const uint64_t *ver, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t j = i + 1;
        while (j < n && ver[j] == ver[i])
            j++;
        engine_series_batch_t b = {ws->labels, ws->nlabels, ts + i, v + i, j - i};
        for (int attempt = 0; attempt < 600 && !atomic_load(&r->stopping); attempt++) {
            engine_write_result_t wr;
            engine_write_result_init(&wr);
            rc = engine_write_v(e, &b, 1, ver[i], &wr);
            if (rc != ST_EBUSY)
                break;
            nap(r, 100); /* head full: wait for the flush */
        }
        if (rc == ST_ELIMIT)
            rc = 0; /* refused by a cardinality limit: counted by the engine */
        i = j;
    }
    return rc;
}

/* Merge one remote series of window [start, end] into the local engine. */
static int merge_series(node_repair_t *r, engine_t *e, const wire_series_t *ws, int64_t start,
                        int64_t end, int dry_run, pass_result_t *res, char *err, size_t errlen)
{
    size_t cap = ws->nvals, cnt = 0, c1 = cap ? cap : 1;
    int64_t *rts = malloc(c1 * sizeof *rts);
    double *rv = malloc(c1 * sizeof *rv);
    uint64_t *rver = malloc(c1 * sizeof *rver);
    int64_t *mts = malloc(c1 * sizeof *mts);
    double *mv = malloc(c1 * sizeof *mv);
    uint64_t *mver = malloc(c1 * sizeof *mver);
    st_matcher_t m[ST_LABELS_MAX];
    char *arena = NULL;
    int rc = ST_ENOMEM;
    if (!rts || !rv || !rver || !mts || !mv || !mver)
        goto out;
    if ((rc = wire_series_samples(ws, rts, rv, cap, &cnt)) ||
        (rc = wire_series_versions(ws, rver, cnt))) {
        snprintf(err, errlen, "malformed series in a repair page");
        goto out;
    }
    size_t asz = 0;
    for (size_t i = 0; i < ws->nlabels; i++)
        asz += ws->labels[i].name_len + ws->labels[i].value_len + 2;
    if (!(arena = malloc(asz ? asz : 1))) {
        rc = ST_ENOMEM;
        goto out;
    }
    char *a = arena;
    for (size_t i = 0; i < ws->nlabels; i++) {
        const st_label_t *l = &ws->labels[i];
        m[i].type = ST_MATCH_EQ;
        memcpy(a, l->name, l->name_len);
        a[l->name_len] = '\0';
        m[i].name = a;
        a += l->name_len + 1;
        memcpy(a, l->value, l->value_len);
        a[l->value_len] = '\0';
        m[i].value = a;
        a += l->value_len + 1;
    }
    /* the local samples of exactly this label set */
    const int64_t *lts = NULL;
    const double *lv = NULL;
    const uint64_t *lver = NULL;
    size_t ln = 0;
    engine_iter_t *it;
    if ((rc = engine_query(e, m, ws->nlabels, start, end, &it))) {
        snprintf(err, errlen, "local query: %s", engine_last_error());
        goto out;
    }
    const st_label_t *ll;
    size_t lnl;
    while ((rc = engine_iter_next(it, &ll, &lnl, &lts, &lv, &ln)) == 1)
        if (lnl == ws->nlabels)
            break;
    if (rc == 1)
        lver = engine_iter_versions(it);
    if (rc != 1 || !lver) {
        lts = NULL;
        ln = 0;
    }
    if (rc < 0) {
        engine_iter_destroy(it);
        snprintf(err, errlen, "local query: %s", engine_last_error());
        goto out;
    }
    size_t nm = 0, i = 0, j = 0;
    uint64_t conflicts = 0, resolved = 0;
    while (i < cnt) {
        while (j < ln && lts[j] < rts[i])
            j++;
        if (j < ln && lts[j] == rts[i]) {
            if (st_f64_bits(lv[j]) != st_f64_bits(rv[i])) {
                conflicts++;
                if (rver[i] > lver[j]) { /* the peer's write is the later one */
                    resolved++;
                    mts[nm] = rts[i];
                    mv[nm] = rv[i];
                    mver[nm++] = rver[i];
                }
            }
        } else {
            mts[nm] = rts[i];
            mv[nm] = rv[i];
            mver[nm++] = rver[i];
        }
        i++;
    }
    engine_iter_destroy(it);
    rc = 0;
    /* what a delete here covers stays deleted: the peer may not have heard
     * of the delete yet (its hint is still on its way) */
    nm = engine_tomb_drop_masked(e, ws->labels, ws->nlabels, mts, mv, mver, nm);
    res->conflicts += conflicts;
    res->resolved += resolved;
    metric_counter_add(r->conflicts, conflicts);
    if (!nm)
        goto out;
    res->series++;
    res->samples += nm;
    if (dry_run)
        goto out;
    metric_counter_add(r->resolved, resolved);
    metric_counter_inc(r->series);
    metric_counter_add(r->samples, nm);
    rc = write_runs(r, e, ws, mts, mv, mver, nm);
    if (rc)
        snprintf(err, errlen, "local write: %s",
                 rc == ST_EBUSY ? "head full" : engine_last_error());
out:
    free(rts);
    free(rv);
    free(rver);
    free(mts);
    free(mv);
    free(mver);
    free(arena);
    return rc;
}

/* Pull the cells of window w from the peer, page by page. */
static int pull_window(peers_t *ps, uint32_t shard, uint32_t peer, uint32_t nb, int64_t start,
                       int64_t end, const uint8_t *bits, size_t bmlen, int dry_run, int64_t t0,
                       pass_result_t *res)
{
    node_repair_t *r = ps->r;
    engine_t *e = r->n->engines[shard];
    uint64_t pos = 0;
    wait_t w = {0};
    st_buf_init(&w.reply);
    int rc = 0;
    for (int done = 0; !done && !rc;) {
        if (atomic_load(&r->stopping)) {
            snprintf(res->error, sizeof res->error, "stopped");
            rc = ST_ECLOSED;
            break;
        }
        Strata__RepairPullRequest q = STRATA__REPAIR_PULL_REQUEST__INIT;
        q.shard = shard;
        q.nbuckets = nb;
        q.start_ms = start;
        q.end_ms = end;
        q.buckets.data = (uint8_t *)bits;
        q.buckets.len = bmlen;
        q.cursor_pos = pos;
        q.max_samples = NODE_REPAIR_PAGE_SAMPLES;
        uint8_t buf[256 + 4096];
        size_t sz = strata__repair_pull_request__get_packed_size(&q);
        if (sz > sizeof buf) {
            rc = ST_ELIMIT;
            break;
        }
        strata__repair_pull_request__pack(&q, buf);
        if ((rc = call(ps, peer, RPC_REPAIR_PULL, buf, sz, &w, res->error, sizeof res->error)))
            break;
        res->bytes += w.reply.len;
        metric_counter_add(r->bytes, w.reply.len);
        const uint8_t *p = w.reply.data, *pend = w.reply.data + w.reply.len;
        wire_field_t f;
        done = 1;
        int k;
        while (!rc && (k = wire_next(&p, pend, &f)) == 1) {
            if (f.num == WIRE_READ_RESPONSE_SERIES && f.type == WIRE_LEN) {
                wire_series_t ws;
                if ((rc = wire_series_decode(f.data, f.len, &ws))) {
                    snprintf(res->error, sizeof res->error, "%s: malformed repair page",
                             topo_node_id(r->n->topo, peer));
                    break;
                }
                rc = merge_series(r, e, &ws, start, end, dry_run, res, res->error,
                                  sizeof res->error);
            } else if (f.num == WIRE_READ_RESPONSE_DONE && f.type == WIRE_VARINT) {
                done = f.u != 0;
            } else if (f.num == WIRE_READ_RESPONSE_NEXT_POS && f.type == WIRE_VARINT) {
                pos = f.u;
            }
        }
        if (!rc && k < 0) {
            rc = ST_ECORRUPT;
            snprintf(res->error, sizeof res->error, "%s: malformed repair page",
                     topo_node_id(r->n->topo, peer));
        }
        rate_limit(r, t0, res->bytes);
    }
    st_buf_deinit(&w.reply);
    return rc;
}

/* Deletes first: the peer's versioned tombstones this node lacks are
 * applied (node_delete.c) before any sample is pulled, so a replica that
 * missed a delete and all its hints gets it here. Skipped in one call when
 * both hold the same ones; a peer that does not know RPC_TOMBS is skipped. */
static int sync_tombs(peers_t *ps, uint32_t shard, uint32_t peer, int dry_run, pass_result_t *res)
{
    node_repair_t *r = ps->r;
    wait_t w = {0};
    st_buf_init(&w.reply);
    Strata__TombsRequest q = STRATA__TOMBS_REQUEST__INIT;
    q.shard = shard;
    engine_tomb_summary(r->n->engines[shard], &q.count, &q.hash);
    int rc = 0, done = 0, same = 0;
    for (int pages = 0; !rc && !done && pages < 100000; pages++) {
        uint8_t qb[64];
        size_t qsz = strata__tombs_request__pack(&q, qb);
        if ((rc = call(ps, peer, RPC_TOMBS, qb, qsz, &w, res->error, sizeof res->error))) {
            if (rc == ST_EPROTO) { /* an older peer */
                res->error[0] = '\0';
                rc = 0;
            }
            break;
        }
        res->bytes += w.reply.len;
        metric_counter_add(r->bytes, w.reply.len);
        uint64_t applied = 0, next = 0;
        rc = node_delete_tombs_apply(r->n, shard, w.reply.data, w.reply.len, dry_run, &applied,
                                     &next, &done, &same, res->error, sizeof res->error);
        res->tombs += applied;
        if (!dry_run)
            metric_counter_add(r->tombs, applied);
        if (!done && next <= q.cursor)
            break; /* no progress: a confused peer */
        q.cursor = next;
    }
    st_buf_deinit(&w.reply);
    return rc;
}

/* ---- copying files; sealed partitions found equal ---- */

/* node_copy_io_t over call() to one peer. */
typedef struct copy_link {
    peers_t *ps;
    uint32_t peer;
    wait_t w;
    int64_t t0;
    uint64_t base; /* pass bytes before the copy (the rate limit counts both) */
} copy_link_t;

static int link_call(void *arg, uint8_t type, const void *p, size_t len, const uint8_t **reply,
                     size_t *rlen, char *err, size_t errlen)
{
    copy_link_t *l = arg;
    int rc = call(l->ps, l->peer, type, p, len, &l->w, err, errlen);
    if (!rc) {
        *reply = l->w.reply.data;
        *rlen = l->w.reply.len;
    }
    return rc;
}

static int link_progress(void *arg, uint64_t bytes)
{
    copy_link_t *l = arg;
    if (atomic_load(&l->ps->r->stopping))
        return ST_ECLOSED;
    rate_limit(l->ps->r, l->t0, l->base + bytes);
    return 0;
}

/* The peer's file list (NULL when it cannot give one: not an error of the
 * pass, whose digest call reports an unreachable peer). */
static Strata__CopyListResponse *peer_files(copy_link_t *l, uint32_t shard, pass_result_t *res)
{
    Strata__CopyListRequest q = STRATA__COPY_LIST_REQUEST__INIT;
    q.shard = shard;
    uint8_t qb[32];
    size_t qsz = strata__copy_list_request__pack(&q, qb);
    char err[160];
    if (call(l->ps, l->peer, RPC_COPY_LIST, qb, qsz, &l->w, err, sizeof err))
        return NULL;
    res->bytes += l->w.reply.len;
    metric_counter_add(l->ps->r->bytes, l->w.reply.len);
    return strata__copy_list_response__unpack(NULL, l->w.reply.len, l->w.reply.data);
}

static equal_part_t *equal_find(shard_state_t *st, uint32_t peer, int64_t start)
{
    for (size_t i = 0; i < st->neq; i++)
        if (st->eq[i].peer == peer && st->eq[i].start == start)
            return &st->eq[i];
    return NULL;
}

/* The partitions skipped this pass (ascending, *skip malloc'd). */
static size_t skip_set(node_repair_t *r, uint32_t shard, uint32_t peer,
                       const engine_part_token_t *lp, size_t nlp, const engine_part_token_t *pp,
                       size_t npp, int64_t **skip)
{
    *skip = nlp ? malloc(nlp * sizeof **skip) : NULL;
    if (!*skip)
        return 0;
    pthread_mutex_lock(&r->mu);
    shard_state_t *st = &r->state[shard];
    engine_part_equal_t *eq = malloc((st->neq ? st->neq : 1) * sizeof *eq);
    size_t neq = 0;
    for (size_t i = 0; eq && i < st->neq; i++)
        if (st->eq[i].peer == peer)
            eq[neq++] = (engine_part_equal_t){st->eq[i].start, st->eq[i].mine, st->eq[i].theirs};
    pthread_mutex_unlock(&r->mu);
    size_t k = eq ? engine_copy_skip(lp, nlp, pp, npp, eq, neq, *skip) : 0;
    free(eq);
    return k;
}

/* After a pass: remember the sealed partitions whose windows did not differ. */
static void remember_equal(node_repair_t *r, uint32_t shard, uint32_t peer,
                           const engine_part_token_t *lp, size_t nlp, const engine_part_token_t *pp,
                           size_t npp, const cells_t *c)
{
    pthread_mutex_lock(&r->mu);
    shard_state_t *st = &r->state[shard];
    for (size_t i = 0; i < nlp; i++) {
        const engine_part_token_t *t = engine_copy_part_find(pp, npp, lp[i].start);
        equal_part_t *q = equal_find(st, peer, lp[i].start);
        if (!lp[i].sealed || !t || !t->sealed || in_sorted(c->dw, c->ndw, lp[i].start)) {
            if (q) /* changed, or differs: compared again next time */
                *q = st->eq[--st->neq];
            continue;
        }
        if (!q) {
            if (st->neq == st->eqcap && st_grow(&st->eq, &st->eqcap, sizeof *st->eq, 16))
                break;
            q = &st->eq[st->neq++];
        }
        *q = (equal_part_t){peer, lp[i].start, lp[i].token, t->token};
    }
    pthread_mutex_unlock(&r->mu);
}

/* Copy the files of the partitions this node lacks (not in a dry run). */
static void copy_files(copy_link_t *l, uint32_t shard, const Strata__CopyListResponse *pf,
                       pass_result_t *res)
{
    node_repair_t *r = l->ps->r;
    node_copy_io_t io = {link_call, link_progress, l};
    node_copy_result_t cr;
    char err[160];
    l->base = res->bytes;
    int rc = node_copy_shard(r->n, shard, &io, pf, &cr, err, sizeof err);
    res->files += cr.files;
    res->file_bytes += cr.bytes;
    res->bytes += cr.bytes;
    res->samples += cr.samples;
    metric_counter_add(r->bytes, cr.bytes);
    metric_counter_add(r->files, cr.files);
    metric_counter_add(r->file_bytes, cr.bytes);
    metric_counter_add(r->samples, cr.samples);
    if (rc && rc != ST_ECLOSED)
        st_warn("copying segment files failed (the pull repair goes on)",
                "shard=%u peer=%s err=\"%s\"", shard, topo_node_id(r->n->topo, l->peer), err);
    if (cr.files)
        st_info("repair copied segment files",
                "shard=%u peer=%s partitions=%llu files=%llu "
                "bytes=%llu samples=%llu refused=%llu",
                shard, topo_node_id(r->n->topo, l->peer), (unsigned long long)cr.partitions,
                (unsigned long long)cr.files, (unsigned long long)cr.bytes,
                (unsigned long long)cr.samples, (unsigned long long)cr.refused);
}

/* The local partitions with their tokens. */
static int local_parts(engine_t *e, engine_part_token_t **lp, size_t *nlp)
{
    engine_seg_file_t *f;
    size_t nf;
    uint64_t slog;
    int rc = engine_copy_list(e, NULL, 0, 0, &f, &nf, &slog);
    if (rc)
        return rc;
    rc = engine_copy_parts(f, nf, lp, nlp);
    free(f);
    return rc;
}

/* One (shard, peer) pass: copy the files of partitions this node lacks,
 * then compare digests (skipping the sealed partitions found equal
 * before) and pull what differs. */
static int pass(peers_t *ps, uint32_t shard, uint32_t peer, int dry_run, pass_result_t *res)
{
    node_repair_t *r = ps->r;
    node_t *n = r->n;
    engine_t *e = n->engines[shard];
    int64_t t0 = st_mono_ms();
    memset(res, 0, sizeof *res);
    int64_t win = engine_partition_ms(e);
    copy_link_t lk = {ps, peer, {0}, t0, 0};
    st_buf_init(&lk.w.reply);
    engine_part_token_t *lp = NULL, *pp = NULL;
    size_t nlp = 0, npp = 0;
    int64_t *skip = NULL;
    /* deletes first, before any sample (files or pulled pages) arrives */
    int trc = sync_tombs(ps, shard, peer, dry_run, res);
    Strata__CopyListResponse *pf = trc ? NULL : peer_files(&lk, shard, res);
    if (pf && pf->partition_ms != win) {
        strata__copy_list_response__free_unpacked(pf, NULL);
        pf = NULL;
    }
    if (pf && !dry_run && !r->no_files)
        copy_files(&lk, shard, pf, res);
    if (pf && (node_copy_parts_msg(pf, &pp, &npp) || local_parts(e, &lp, &nlp))) {
        free(pp);
        pp = NULL;
        npp = 0;
    }
    engine_stats_t s;
    engine_get_stats(e, &s);
    uint32_t nb = buckets_for(s.series);
    uint8_t *mine = NULL;
    size_t mlen = 0;
    engine_digest_t *a = NULL, *b = NULL;
    cells_t c = {0};
    c.bmlen = (nb + 7) / 8;
    c.nskip = skip_set(r, shard, peer, lp, nlp, pp, npp, &skip);
    c.skip = skip;
    res->skipped = c.nskip;
    metric_counter_add(r->skipped, c.nskip);
    wait_t w = {0};
    st_buf_init(&w.reply);
    Strata__DigestResponse *dr = NULL;
    int rc = trc;
    if (rc)
        goto out;
    rc = shard_digest(n, shard, nb, win, &mine, &mlen);
    if (!rc)
        rc = engine_digest_decode(mine, mlen, &a);
    if (rc) {
        snprintf(res->error, sizeof res->error, "local digest: %s", st_strerror(rc));
        goto out;
    }
    Strata__DigestRequest q = STRATA__DIGEST_REQUEST__INIT;
    q.shard = shard;
    q.nbuckets = nb;
    q.window_ms = win;
    uint8_t qb[64];
    size_t qsz = strata__digest_request__pack(&q, qb);
    if ((rc = call(ps, peer, RPC_DIGEST, qb, qsz, &w, res->error, sizeof res->error)))
        goto out;
    res->bytes += w.reply.len;
    metric_counter_add(r->bytes, w.reply.len);
    dr = strata__digest_response__unpack(NULL, w.reply.len, w.reply.data);
    if (!dr || engine_digest_decode(dr->digest.data, dr->digest.len, &b)) {
        rc = ST_EPROTO;
        snprintf(res->error, sizeof res->error, "%s: malformed digest",
                 topo_node_id(n->topo, peer));
        goto out;
    }
    res->peer_rebuilding = dr->rebuilding;
    int64_t d = engine_digest_diff(a, b, note_cell, &c);
    if (d < 0) {
        rc = (int)d;
        snprintf(res->error, sizeof res->error, "digest compare: %s", st_strerror(rc));
        goto out;
    }
    res->cells = c.ncells;
    metric_counter_add(r->cells, c.ncells);
    for (size_t i = 0; i < c.nw && !rc; i++) {
        if ((ps->win_from || ps->win_to) &&
            (c.start[i] + win - 1 < ps->win_from || c.start[i] > ps->win_to))
            continue; /* outside the range a read repair asked for */
        rc = pull_window(ps, shard, peer, nb, c.start[i], c.start[i] + win - 1,
                         c.bits + i * c.bmlen, c.bmlen, dry_run, t0, res);
    }
    /* a peer that is itself rebuilding may lack what it has not pulled yet;
     * a read repair's time range compared only part of the shard */
    if (!rc && !dry_run && !dr->rebuilding && npp && !ps->win_from && !ps->win_to)
        remember_equal(r, shard, peer, lp, nlp, pp, npp, &c);
out:
    res->ms = (uint64_t)(st_mono_ms() - t0);
    res->last_ms = st_now_ms();
    metric_counter_inc(rc ? r->passes_err : r->passes_ok);
    if (dr)
        strata__digest_response__free_unpacked(dr, NULL);
    if (pf)
        strata__copy_list_response__free_unpacked(pf, NULL);
    st_buf_deinit(&w.reply);
    st_buf_deinit(&lk.w.reply);
    engine_digest_destroy(a);
    engine_digest_destroy(b);
    free(mine);
    free(c.start);
    free(c.bits);
    free(c.dw);
    free(skip);
    free(lp);
    free(pp);
    return rc;
}

/* Sum b into a (errors: the first kept). */
static void result_add(pass_result_t *a, const pass_result_t *b)
{
    a->cells += b->cells;
    a->series += b->series;
    a->samples += b->samples;
    a->conflicts += b->conflicts;
    a->resolved += b->resolved;
    a->bytes += b->bytes;
    a->files += b->files;
    a->file_bytes += b->file_bytes;
    a->skipped += b->skipped;
    a->ms += b->ms;
    a->tombs += b->tombs;
    a->last_ms = b->last_ms;
    if (!a->error[0] && b->error[0])
        snprintf(a->error, sizeof a->error, "%s", b->error);
}

/*
 * A repair of `shards` (NULL: every local shard) against their other
 * replicas (peer -1) or one of them. Results per shard into out[] (same
 * order as the shards repaired, *nout of them, capacity = shards of the
 * topology). Returns 0; ST_EINVAL with msg for a shard not local or a peer
 * not a replica of it.
 */
static int run(node_repair_t *r, const uint32_t *shards, size_t nshards, int peer, int dry_run,
               int64_t win_from, int64_t win_to, uint32_t *out_shard, pass_result_t *out,
               size_t *nout)
{
    node_t *n = r->n;
    const uint32_t *local;
    if (!shards)
        nshards = topo_node_shards(n->topo, (uint32_t)n->self, &local);
    else
        local = shards;
    peers_t ps;
    int rc = peers_init(&ps, r);
    if (rc)
        return rc;
    ps.win_from = win_from;
    ps.win_to = win_to;
    pthread_mutex_lock(&r->run_mu);
    size_t k = 0;
    for (size_t i = 0; i < nshards && !atomic_load(&r->stopping); i++) {
        uint32_t s = local[i];
        const uint32_t *rep = topo_shard_replicas(n->topo, s);
        uint32_t rf = topo_replication_factor(n->topo);
        pass_result_t sum = {0};
        int any_ok = 0;
        for (uint32_t j = 0; j < rf; j++) {
            if (rep[j] == (uint32_t)n->self || (peer >= 0 && rep[j] != (uint32_t)peer))
                continue;
            pass_result_t pr;
            int prc = pass(&ps, s, rep[j], dry_run, &pr);
            if (prc && !(prc == ST_EUNAVAIL && atomic_load(&r->rebuilding)))
                st_warn("repair pass failed", "shard=%u peer=%s err=\"%s\"", s,
                        topo_node_id(n->topo, rep[j]), pr.error);
            else if (pr.cells || pr.files || pr.tombs)
                st_info("repair pass",
                        "shard=%u peer=%s cells=%llu series=%llu samples=%llu "
                        "conflicts=%llu resolved=%llu tombstones=%llu bytes=%llu files=%llu "
                        "skipped=%llu ms=%llu dry_run=%d",
                        s, topo_node_id(n->topo, rep[j]), (unsigned long long)pr.cells,
                        (unsigned long long)pr.series, (unsigned long long)pr.samples,
                        (unsigned long long)pr.conflicts, (unsigned long long)pr.resolved,
                        (unsigned long long)pr.tombs, (unsigned long long)pr.bytes,
                        (unsigned long long)pr.files, (unsigned long long)pr.skipped,
                        (unsigned long long)pr.ms, dry_run);
            any_ok |= !prc;
            result_add(&sum, &pr);
            if (dry_run && !prc)
                break; /* nothing was written: the next peer would count it again */
        }
        pthread_mutex_lock(&r->mu);
        if (!dry_run)
            r->state[s].last = sum;
        if (atomic_load(&r->rebuilding)) {
            r->rebuild_files += sum.files;
            r->rebuild_bytes += sum.bytes;
        }
        if (any_ok && !dry_run && !win_from && !win_to && !r->state[s].synced) {
            /* pulled whole (not a read repair's time range): rebuilt */
            r->state[s].synced = 1;
            r->rebuild_done++;
        }
        pthread_mutex_unlock(&r->mu);
        if (out) {
            out_shard[k] = s;
            out[k++] = sum;
        }
    }
    if (nout)
        *nout = k;
    pthread_mutex_unlock(&r->run_mu);
    peers_close(&ps);
    return 0;
}

/* ---- RPC_REPAIR ---- */

static int run_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg, size_t msglen)
{
    node_repair_t *r = n->repair;
    if (!r) {
        snprintf(msg, msglen, "repair is not running on node %s", n->node_id);
        return ST_EUNAVAIL;
    }
    Strata__RepairRequest *q = strata__repair_request__unpack(NULL, len, p);
    if (!q) {
        snprintf(msg, msglen, "malformed RepairRequest");
        return ST_EPROTO;
    }
    int rc = ST_EINVAL, peer = -1;
    uint32_t ns = topo_shards(n->topo);
    uint32_t *shards = malloc(ns * sizeof *shards);
    pass_result_t *res = calloc(ns, sizeof *res);
    Strata__RepairState *st = calloc(ns, sizeof *st);
    Strata__RepairState **stp = calloc(ns, sizeof *stp);
    size_t nres = 0;
    if (!shards || !res || !st || !stp) {
        rc = ST_ENOMEM;
        goto done;
    }
    if (q->peer && q->peer[0]) {
        if ((peer = topo_node_index(n->topo, q->peer)) < 0) {
            snprintf(msg, msglen, "unknown node \"%.64s\"", q->peer);
            goto done;
        }
    }
    size_t nq = 0;
    for (size_t i = 0; i < q->n_shards; i++) {
        uint32_t s = q->shards[i];
        if (!local_engine(n, s, msg, msglen))
            goto done;
        if (peer >= 0 && (peer == n->self || topo_replica_rank(n->topo, s, (uint32_t)peer) < 0)) {
            snprintf(msg, msglen, "node %s is not another replica of shard %u", q->peer, s);
            goto done;
        }
        if (nq < ns)
            shards[nq++] = s;
    }
    if ((rc = run(r, q->n_shards ? shards : NULL, nq, peer, q->dry_run, q->start_ms, q->end_ms,
                  shards, res, &nres))) {
        snprintf(msg, msglen, "repair: %s", st_strerror(rc));
        goto done;
    }
    Strata__RepairResponse resp = STRATA__REPAIR_RESPONSE__INIT;
    resp.node_id = n->node_id;
    resp.dry_run = q->dry_run;
    for (size_t i = 0; i < nres; i++) {
        strata__repair_state__init(&st[i]);
        st[i].shard = shards[i];
        st[i].peer = peer >= 0 ? (char *)topo_node_id(n->topo, (uint32_t)peer) : "";
        st[i].last_ms = res[i].last_ms;
        st[i].cells_differing = res[i].cells;
        st[i].series_pulled = res[i].series;
        st[i].samples_pulled = res[i].samples;
        st[i].samples_conflicting = res[i].conflicts;
        st[i].samples_resolved = res[i].resolved;
        st[i].files_copied = res[i].files;
        st[i].partitions_skipped = res[i].skipped;
        st[i].bytes = res[i].bytes;
        st[i].duration_ms = res[i].ms;
        st[i].error = res[i].error;
        stp[i] = &st[i];
    }
    resp.n_shards = nres;
    resp.shards = stp;
    size_t sz = strata__repair_response__get_packed_size(&resp);
    if ((rc = st_buf_reserve(out, sz)))
        goto done;
    out->len = strata__repair_response__pack(&resp, out->data);
done:
    free(shards);
    free(res);
    free(st);
    free(stp);
    strata__repair_request__free_unpacked(q, NULL);
    return rc;
}

/* ---- the RPC_REPAIR queue ---- */

int node_repair_enqueue(node_repair_t *r, node_repair_job_t *job)
{
    if (!r) {
        snprintf(job->msg, job->msglen, "repair is not running on this node");
        return ST_EUNAVAIL;
    }
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (atomic_load(&r->stopping) || !r->async_open) {
        snprintf(job->msg, job->msglen, "node shutting down");
        rc = ST_ECLOSED;
    } else if (r->nqueued >= NODE_REPAIR_QUEUE_MAX) {
        snprintf(job->msg, job->msglen, "%u repairs already wait on node %s; retry later",
                 NODE_REPAIR_QUEUE_MAX, r->node_id);
        rc = ST_EBUSY;
    } else {
        job->next = NULL;
        if (r->queue_tail)
            r->queue_tail->next = job;
        else
            r->queue = job;
        r->queue_tail = job;
        r->nqueued++;
        r->pending++;
        pthread_cond_signal(&r->wake);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* The next queued job (NULL: none), off the queue. */
static node_repair_job_t *job_pop(node_repair_t *r)
{
    pthread_mutex_lock(&r->mu);
    node_repair_job_t *j = r->queue;
    if (j) {
        r->queue = j->next;
        if (!r->queue)
            r->queue_tail = NULL;
        r->nqueued--;
    }
    pthread_mutex_unlock(&r->mu);
    return j;
}

/* job onto the done list; the loop is woken under mu, so it cannot close
 * the handle between the two. */
static void job_finish(node_repair_t *r, node_repair_job_t *j)
{
    pthread_mutex_lock(&r->mu);
    j->next = r->done;
    r->done = j;
    if (r->async_open)
        uv_async_send(&r->async);
    pthread_mutex_unlock(&r->mu);
}

/* Run every queued job (repair thread); once stopping, answer them
 * ST_ECLOSED instead. */
static void serve_jobs(node_repair_t *r)
{
    node_repair_job_t *j;
    while ((j = job_pop(r))) {
        if (atomic_load(&r->stopping)) {
            j->err = ST_ECLOSED;
            snprintf(j->msg, j->msglen, "node shutting down");
        } else {
            j->err = run_rpc(r->n, j->payload, j->len, j->out, j->msg, j->msglen);
        }
        job_finish(r, j);
    }
}

/* Close the async handle once stopping and nothing is pending (loop). */
static void maybe_close(node_repair_t *r)
{
    pthread_mutex_lock(&r->mu);
    int close_now = r->async_open && atomic_load(&r->stopping) && !r->pending;
    if (close_now)
        r->async_open = 0;
    pthread_mutex_unlock(&r->mu);
    if (close_now)
        uv_close((uv_handle_t *)&r->async, NULL);
}

/* The loop's side: answer every finished job. */
static void on_done(uv_async_t *a)
{
    node_repair_t *r = a->data;
    pthread_mutex_lock(&r->mu);
    node_repair_job_t *j = r->done;
    r->done = NULL;
    pthread_mutex_unlock(&r->mu);
    size_t k = 0;
    while (j) {
        node_repair_job_t *next = j->next;
        j->done(j);
        j = next;
        k++;
    }
    pthread_mutex_lock(&r->mu);
    r->pending -= k;
    pthread_mutex_unlock(&r->mu);
    maybe_close(r);
}

/* Wait up to ms for a queued job (or a stop); 1 when stopping. */
static int idle(node_repair_t *r, int64_t ms)
{
    int64_t end = st_mono_ms() + ms;
    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->stopping) && !r->queue) {
        int64_t left = end - st_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (left % 1000) * 1000000L;
        ts.tv_sec += (time_t)(left / 1000 + ns / 1000000000L);
        ts.tv_nsec = (long)(ns % 1000000000L);
        pthread_cond_timedwait(&r->wake, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return atomic_load(&r->stopping);
}

/* ---- the repair thread ---- */

static void *repair_thread(void *arg)
{
    node_repair_t *r = arg;
    node_t *n = r->n;
    int64_t interval = topo_replication(n->topo)->repair_interval_ms;
    int64_t t0 = st_mono_ms();
    int64_t next = interval > 0 ? t0 + interval : INT64_MAX;
    while (!atomic_load(&r->stopping)) {
        serve_jobs(r);
        if (atomic_load(&r->rebuilding)) {
            run(r, NULL, 0, -1, 0, 0, 0, NULL, NULL, NULL);
            pthread_mutex_lock(&r->mu);
            int done = r->rebuild_done >= r->rebuild_total;
            pthread_mutex_unlock(&r->mu);
            if (done && !atomic_load(&r->stopping)) {
                atomic_store(&r->rebuilding, 0);
                metric_gauge_set(r->rebuild_gauge, 0);
                write_marker(n);
                st_info("rebuild finished: the node is a full replica again", "shards=%u ms=%lld",
                        r->rebuild_total, (long long)(st_mono_ms() - t0));
                continue;
            }
            idle(r, NODE_REPAIR_RETRY_MS);
            continue;
        }
        int64_t now = st_mono_ms();
        if (now >= next) {
            run(r, NULL, 0, -1, 0, 0, 0, NULL, NULL, NULL);
            next = st_mono_ms() + interval;
            continue;
        }
        idle(r, next - now < 3600 * 1000 ? next - now : 3600 * 1000);
    }
    serve_jobs(r); /* answer what is left: shutting down */
    return NULL;
}

int node_repair_create(node_t *n, const rpc_identity_t *me, int rebuild, node_repair_t **out)
{
    node_repair_t *r = calloc(1, sizeof *r);
    if (!r)
        return ST_ENOMEM;
    r->n = n;
    uint32_t ns = topo_shards(n->topo);
    r->cluster = strdup(me->cluster_name);
    r->node_id = strdup(me->node_id);
    r->fingerprint = me->topology_fingerprint;
    r->state = calloc(ns, sizeof *r->state);
    r->cache = calloc(ns, sizeof *r->cache);
    if (!r->cluster || !r->node_id || !r->state || !r->cache) {
        node_repair_destroy(r);
        return ST_ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->run_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    r->sync_init = 1;
    if (uv_async_init(n->loop, &r->async, on_done) != 0) {
        node_repair_destroy(r);
        return ST_ENOMEM;
    }
    r->async.data = r;
    r->async_open = 1;
    /* tests/bench/repair_bench.py: rebuild by streaming alone, to compare */
    r->no_files = getenv("STRATA_REPAIR_NO_FILES") != NULL;
    if (r->no_files)
        st_warn("repair streams samples and copies no files", "knob=%s", "STRATA_REPAIR_NO_FILES");
    metrics_t *m = n->metrics;
    static const char ph[] = "Repair passes (one local shard against one peer replica), by result.";
    r->passes_ok = metrics_counter(m, "strata_node_repair_passes_total", ph, "result", "ok", NULL);
    r->passes_err =
        metrics_counter(m, "strata_node_repair_passes_total", ph, "result", "error", NULL);
    r->cells = metrics_counter(m, "strata_node_repair_divergent_cells_total",
                               "Digest cells (time window x series bucket) found to differ from a "
                               "peer that holds samples there.",
                               NULL);
    r->series = metrics_counter(m, "strata_node_repair_series_total",
                                "Series that repair wrote missing samples into.", NULL);
    r->samples =
        metrics_counter(m, "strata_node_repair_samples_total",
                        "Samples this node lacked and repair wrote (pulled from peers).", NULL);
    r->conflicts = metrics_counter(m, "strata_node_repair_conflicts_total",
                                   "Samples a peer holds with the same timestamp and another "
                                   "value (the higher version wins: see ..._resolved_total).",
                                   NULL);
    r->resolved = metrics_counter(m, "strata_node_repair_conflicts_resolved_total",
                                  "Conflicting samples repair replaced with the peer's value "
                                  "because the peer's version was higher.",
                                  NULL);
    r->bytes = metrics_counter(m, "strata_node_repair_bytes_total",
                               "Repair bytes received from peers (digests and pages).", NULL);
    r->files = metrics_counter(m, "strata_node_repair_files_copied_total",
                               "Segment files copied from a peer replica as files and installed "
                               "(partitions this node had no segment of).",
                               NULL);
    r->file_bytes = metrics_counter(m, "strata_node_repair_file_bytes_total",
                                    "Bytes of segment files (and series.log) received to copy "
                                    "them (also in strata_node_repair_bytes_total).",
                                    NULL);
    r->skipped = metrics_counter(m, "strata_repair_partitions_skipped_total",
                                 "Sealed partitions a repair pass did not compare: unchanged on "
                                 "both replicas since they were last found equal.",
                                 NULL);
    r->tombs = metrics_counter(m, "strata_node_repair_tombstones_total",
                               "Deletes (versioned tombstones) this node lacked and repair "
                               "applied (from peers).",
                               NULL);
    r->rebuild_gauge =
        metrics_gauge(m, "strata_node_rebuilding",
                      "1 while the node rebuilds its shards from their replicas.", NULL);
    const uint32_t *local;
    r->rebuild_total = topo_node_shards(n->topo, (uint32_t)n->self, &local);
    if (rebuild && topo_replication_factor(n->topo) > 1 && r->rebuild_total) {
        atomic_store(&r->rebuilding, 1);
        metric_gauge_set(r->rebuild_gauge, 1);
        st_info("empty data directory: rebuilding the local shards from their replicas",
                "shards=%u", r->rebuild_total);
    } else {
        write_marker(n);
    }
    if (pthread_create(&r->thread, NULL, repair_thread, r)) {
        node_repair_destroy(r);
        return ST_ENOMEM;
    }
    r->thread_started = 1;
    *out = r;
    return 0;
}

/* Stopping: wake the thread from its wait. */
static void stop(node_repair_t *r)
{
    atomic_store(&r->stopping, 1);
    if (r->sync_init) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->wake);
        pthread_mutex_unlock(&r->mu);
    }
}

void node_repair_shutdown(node_repair_t *r)
{
    if (!r)
        return;
    stop(r);
    maybe_close(r); /* else on_done closes it after the last answer */
}

void node_repair_destroy(node_repair_t *r)
{
    if (!r)
        return;
    stop(r);
    if (r->thread_started)
        pthread_join(r->thread, NULL);
    if (r->sync_init) {
        /* jobs the loop had no turn to answer (it stopped without a
         * shutdown): answer them here, on the loop's thread */
        node_repair_job_t *j = r->done;
        for (r->done = NULL; j;) {
            node_repair_job_t *next = j->next;
            j->done(j);
            j = next;
        }
        if (r->async_open) {
            r->async_open = 0;
            uv_close((uv_handle_t *)&r->async, NULL);
            uv_run(r->n->loop, UV_RUN_NOWAIT); /* the close completes before the free */
        }
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->mu);
        pthread_mutex_destroy(&r->run_mu);
    }
    for (uint32_t s = 0; r->cache && s < topo_shards(r->n->topo); s++) {
        free(r->cache[s].bytes);
        part_digests_free(r->cache[s].pd, r->cache[s].npd);
    }
    free(r->cache);
    for (uint32_t s = 0; r->state && s < topo_shards(r->n->topo); s++)
        free(r->state[s].eq);
    free(r->state);
    free(r->cluster);
    free(r->node_id);
    free(r);
}

int node_repair_rebuilding(node_repair_t *r, char *why, size_t cap)
{
    if (cap)
        why[0] = '\0';
    if (!r || !atomic_load(&r->rebuilding))
        return 0;
    pthread_mutex_lock(&r->mu);
    snprintf(why, cap,
             "rebuilding: %u of %u shards pulled from their replicas (%llu segment files "
             "copied, %.1f MB received)",
             r->rebuild_done, r->rebuild_total, (unsigned long long)r->rebuild_files,
             (double)r->rebuild_bytes / 1e6);
    pthread_mutex_unlock(&r->mu);
    return 1;
}

int node_repair_stats(node_repair_t *r, Strata__NodeStats *st)
{
    if (!r)
        return 0;
    st->rebuilding = atomic_load(&r->rebuilding) != 0;
    const uint32_t *local;
    uint32_t nl = topo_node_shards(r->n->topo, (uint32_t)r->n->self, &local);
    Strata__RepairState **v = calloc(nl ? nl : 1, sizeof *v);
    Strata__RepairState *s = calloc(nl ? nl : 1, sizeof *s);
    char *errs = calloc(nl ? nl : 1, sizeof r->state[0].last.error);
    if (!v || !s || !errs) {
        free(v);
        free(s);
        free(errs);
        return ST_ENOMEM;
    }
    pthread_mutex_lock(&r->mu);
    for (uint32_t i = 0; i < nl; i++) {
        const pass_result_t *p = &r->state[local[i]].last;
        strata__repair_state__init(&s[i]);
        s[i].shard = local[i];
        s[i].peer = "";
        s[i].last_ms = p->last_ms;
        s[i].cells_differing = p->cells;
        s[i].series_pulled = p->series;
        s[i].samples_pulled = p->samples;
        s[i].samples_conflicting = p->conflicts;
        s[i].samples_resolved = p->resolved;
        s[i].files_copied = p->files;
        s[i].partitions_skipped = p->skipped;
        s[i].bytes = p->bytes;
        s[i].duration_ms = p->ms;
        char *e = errs + i * sizeof p->error;
        memcpy(e, p->error, sizeof p->error);
        s[i].error = e;
        v[i] = &s[i];
    }
    pthread_mutex_unlock(&r->mu);
    if (!nl) {
        free(v);
        free(s);
        free(errs);
        return 0;
    }
    st->n_repair = nl;
    st->repair = v;
    return 0;
}

void node_repair_stats_free(Strata__NodeStats *st)
{
    if (!st->repair)
        return;
    if (st->n_repair) {
        free(st->repair[0]->error); /* the errs block */
        free(st->repair[0]);        /* the states block */
    }
    free(st->repair);
    st->repair = NULL;
    st->n_repair = 0;
}
