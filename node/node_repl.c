/*
 * node_repl — coordinated writes, hinted handoff and peer health. See
 * node_repl.h for the model; docs/operations.md for what an operator sees.
 *
 * Forwards name series by reference (repl.h, repl_put_forward_refs: the
 * router's reference, else a 16-byte hash of the labels with this
 * process's secret seed) instead of their labels: a replica keeps the
 * references it learnt; one that answers ST_ENOREF for an entry (a new
 * series, or it restarted) gets that entry again at once with labels and
 * references, which it learns. Hints always hold labels: a router's
 * series by reference alone get theirs back from this node's engine
 * (node_write_expand) for such a resend and for every hint.
 *
 * A coordinated write (coord_t) lives until every outcome is in: the local
 * write job and one forward call per peer. It answers the router as soon
 * as every shard is decided and the local write is done; later outcomes
 * (quorum and async) only produce hints. A shard that missed its mode
 * waits for the outcome of each of its replicas (every forward is bounded
 * by replica_timeout), so its message gives the final count and names
 * every replica in placement order: "2 of 3 replicas acked (need 3): n1 ok,
 * n2 ok, n3 failed: replica is down".
 *
 * Replay (per peer, pipelined): peek a window of up to REPLAY_WINDOW hints
 * (pool) -> send them all at once (loop) -> when every answer is in, ack
 * the delivered prefix (pool) -> peek ... ; at the first hint not
 * delivered the window stops: a transport failure backs off and resends
 * from that hint (the later ones again too: writes are idempotent, and
 * versioned, so a resend never puts an older value back); a replica that
 * answers that the batch is invalid is retried
 * REPLAY_MAX_ATTEMPTS times, then the hint is dropped and counted
 * (reason="rejected"); other errors (I/O, a shard refusing writes) are
 * retried with backoff until the hint ages out (hint_max_age). Replay starts when the peer comes up
 * and on a 1 s tick while it is up.
 */
#include "node_repl.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hints.h"
#include "node_fault.h"
#include "node_write.h"
#include "st_err.h"
#include "st_file.h"
#include "st_time.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "wire.h"
#include "wire_fields.h"

#define REPL_MISSED_LOCAL 1 /* a done code: met without the coordinator's own copy */

#define REPLAY_MAX_ATTEMPTS 5
#define REPLAY_BACKOFF_MIN_MS 100
#define REPLAY_BACKOFF_MAX_MS 5000
#define TICK_MS 1000
#define REPLAY_WINDOW 8                 /* hints in flight per peer */
#define REPLAY_WINDOW_BYTES (16u << 20) /* ... holding at most about this much */

typedef struct peer peer_t;

/* One hint of the replay window: a NodeWrite ready to send, its outcome. */
typedef struct replay_slot {
    peer_t *p;
    uint8_t *msg;
    size_t len;
    uint32_t shard;
    int status; /* transport: 0 = answered */
    int code;   /* the replica's code when answered */
    char why[200];
} replay_slot_t;

struct peer {
    node_repl_t *r;
    uint32_t node;
    const char *id;
    rpc_client_t *cli;
    hints_t *h;
    atomic_int up;
    /* replay (loop thread) */
    int replaying;
    uv_timer_t timer;
    unsigned backoff_ms;
    int attempts;
    replay_slot_t win[REPLAY_WINDOW];
    size_t nwin;     /* hints in the window (0: none peeked) */
    size_t inflight; /* of them, calls not answered yet */
    int barrier;     /* the window holds an unversioned delete: nothing more joins it */
    size_t ack_k;    /* the delivered prefix being acked */
    int then_backoff;
    int job_rc;
    uv_work_t w;
    /* stats */
    atomic_int unsynced;
    atomic_uint_fast64_t rejected;
    atomic_uint_fast64_t unhinted; /* entries by references this node does not know */
    metric_counter_t *fwd_ok, *fwd_err, *fwd_labels;
    hints_stats_t snap; /* under r->mu */
};

struct node_repl {
    node_t *n;
    node_repl_observe_fn observe; /* node_repl_set_hooks */
    node_repl_peer_up_fn peer_up;
    uint32_t nnodes;
    peer_t *peers; /* [nnodes]; peers[self].cli == NULL */
    uv_timer_t tick;
    unsigned ticks;
    int closing;
    int sync_each; /* wal_durability = every_write: fsync each hint append */
    int64_t timeout_ms;
    uint64_t ref_seed;  /* series references (repl_series_ref): random, per process */
    pthread_mutex_t mu; /* snapshots */
    metric_counter_t *coord_writes, *coord_failed;
};

static void snapshot(peer_t *p)
{
    hints_stats_t s;
    hints_stats(p->h, &s);
    pthread_mutex_lock(&p->r->mu);
    hints_stats_t old = p->snap;
    p->snap = s;
    pthread_mutex_unlock(&p->r->mu);
    /* drops are rare and mean a replica will miss data: say so */
    if (s.dropped_size_records > old.dropped_size_records)
        st_error("hints dropped: the queue is over hint_max_bytes",
                 "peer=%s records=%llu total=%llu", p->id,
                 (unsigned long long)(s.dropped_size_records - old.dropped_size_records),
                 (unsigned long long)s.dropped_size_records);
    if (s.dropped_age_records > old.dropped_age_records)
        st_error("hints dropped: older than hint_max_age", "peer=%s records=%llu total=%llu", p->id,
                 (unsigned long long)(s.dropped_age_records - old.dropped_age_records),
                 (unsigned long long)s.dropped_age_records);
    if (s.dropped_corrupt_records > old.dropped_corrupt_records)
        st_error("hints dropped: damaged on disk", "peer=%s records=%llu total=%llu", p->id,
                 (unsigned long long)(s.dropped_corrupt_records - old.dropped_corrupt_records),
                 (unsigned long long)s.dropped_corrupt_records);
}

/* ---- hint appends ---------------------------------------------------- */

typedef struct hint_job {
    uv_work_t w;
    peer_t *p;
    size_t n;
    struct {
        uint32_t shard;
        uint8_t *msg;
        size_t len;
    } * items;
    int rc;
} hint_job_t;

static void kick(peer_t *p);

static void hint_work(uv_work_t *w)
{
    hint_job_t *j = w->data;
    node_fault_hint_delay(); /* test-only (node_fault.h) */
    int64_t t = st_now_ms();
    for (size_t i = 0; i < j->n; i++) {
        int rc = hints_append(j->p->h, j->items[i].shard, t, j->items[i].msg, j->items[i].len);
        if (rc && !j->rc)
            j->rc = rc;
    }
    if (j->p->r->sync_each) {
        int rc = hints_sync(j->p->h);
        if (rc && !j->rc)
            j->rc = rc;
    } else {
        atomic_store(&j->p->unsynced, 1);
    }
    snapshot(j->p);
}

static void hint_after(uv_work_t *w, int status)
{
    hint_job_t *j = w->data;
    (void)status;
    if (j->rc)
        st_error("cannot store hints; the replica will miss these writes until repaired",
                 "peer=%s batches=%zu err=\"%s\"", j->p->id, j->n, st_strerror(j->rc));
    for (size_t i = 0; i < j->n; i++)
        free(j->items[i].msg);
    free(j->items);
    peer_t *p = j->p;
    free(j);
    kick(p);
}

/* Queue hints for peer p: entries e[idx[k]] of a write. */
static void add_hints(peer_t *p, const repl_entry_t *e, const size_t *idx, size_t n)
{
    hint_job_t *j = calloc(1, sizeof *j);
    if (j)
        j->items = calloc(n, sizeof *j->items);
    if (!j || !j->items) {
        free(j);
        st_error("out of memory storing hints", "peer=%s batches=%zu", p->id, n);
        return;
    }
    j->p = p;
    for (size_t k = 0; k < n; k++) {
        /* with labels: a replay must not depend on references */
        const repl_entry_t *en = &e[idx[k]];
        st_buf_t b;
        st_buf_init(&b);
        int rc = node_write_expand(p->r->n, en->shard, en->msg, en->msg_len, &b);
        if (rc) {
            st_buf_deinit(&b);
            if (rc == ST_ENOREF) /* this node never knew them: the router sends them again */
                atomic_fetch_add(&p->unhinted, 1);
            continue;
        }
        j->items[j->n].shard = en->shard;
        j->items[j->n].msg = b.data ? b.data : malloc(1);
        j->items[j->n].len = b.len;
        if (!j->items[j->n].msg)
            continue;
        j->n++;
    }
    j->w.data = j;
    if (uv_queue_work(p->r->n->loop, &j->w, hint_work, hint_after) != 0) {
        st_error("cannot queue hint append", "peer=%s", p->id);
        for (size_t i = 0; i < j->n; i++)
            free(j->items[i].msg);
        free(j->items);
        free(j);
    }
}

/* ---- coordinated writes ---------------------------------------------- */

/* One replica's answer for one shard of a coordinated write. */
enum { OUT_PENDING = 0, OUT_OK, OUT_FAILED };
#define OUTCOME_WHY_MAX 120

typedef struct outcome {
    uint8_t state;
    uint8_t busy;           /* failed with ST_EBUSY: head over head_max_mb */
    uint32_t retry_after_s; /* what the busy replica asked for */
    char why[OUTCOME_WHY_MAX];
} outcome_t;

/* The stamped NodeWrite of a coordinated write, shared without copies by
 * the local job (its entries point into it) and the forwards
 * (rpc_client_call_shared); references are taken and dropped on the loop
 * thread only. A forward may hold it after its coord is gone (a write
 * still queued to a stalled peer). */
typedef struct wpay {
    int refs;
    st_buf_t b;
} wpay_t;

static void wpay_unref(void *arg)
{
    wpay_t *w = arg;
    if (w && --w->refs == 0) {
        st_buf_deinit(&w->b);
        free(w);
    }
}

typedef struct coord {
    node_repl_t *r;
    rpc_conn_t *conn;
    uint64_t reqid;
    wpay_t *pay;
    wpay_t *rpay; /* the forward of every entry by reference (NULL: not made) */
    repl_envelope_t env;
    topo_write_consistency_t mode;
    repl_entry_t *e;
    repl_tally_t *tally;
    node_shard_result_t *local;
    outcome_t *out; /* [entry * rf + replica rank]: who acked, who failed and why */
    uint32_t rf;
    int refs; /* outstanding outcomes: local job + peer calls */
    int local_done, replied, local_err;
    node_repl_done_fn done; /* node_repl_submit: called instead of replying on conn */
    void *done_arg;
    uv_work_t w;
} coord_t;

typedef struct fwd {
    coord_t *c;
    peer_t *p;
    int labels; /* sent with labels (after an ST_ENOREF) */
    size_t n;
    size_t idx[]; /* entries sent */
} fwd_t;

static void coord_free(coord_t *c)
{
    if (c->conn)
        rpc_conn_release(c->conn);
    wpay_unref(c->pay);
    wpay_unref(c->rpay);
    free(c->e);
    free(c->tally);
    free(c->local);
    free(c->out);
    free(c);
}

/* Replica `node` answered for entry i: ok, or failed with why (code: the
 * replica's ST_E* code when it answered, ST_EBUSY marks a busy node). */
static void note_code(coord_t *c, size_t i, uint32_t node, int ok, const char *why, int code,
                      uint32_t retry_after_s)
{
    int rank = topo_replica_rank(c->r->n->topo, c->e[i].shard, node);
    if (rank < 0 || (uint32_t)rank >= c->rf)
        return;
    outcome_t *o = &c->out[i * c->rf + (uint32_t)rank];
    o->state = ok ? OUT_OK : OUT_FAILED;
    o->busy = !ok && code == ST_EBUSY;
    o->retry_after_s = retry_after_s;
    snprintf(o->why, sizeof o->why, "%s", ok ? "" : why);
}

static void note(coord_t *c, size_t i, uint32_t node, int ok, const char *why)
{
    note_code(c, i, node, ok, why, 0, 0);
}

/* 1 when a replica of entry i failed busy; the largest Retry-After asked. */
static int entry_busy(const coord_t *c, size_t i, uint32_t *retry_after_s)
{
    int busy = 0;
    *retry_after_s = 0;
    for (uint32_t k = 0; k < c->rf; k++) {
        const outcome_t *o = &c->out[i * c->rf + k];
        if (!o->busy)
            continue;
        busy = 1;
        if (o->retry_after_s > *retry_after_s)
            *retry_after_s = o->retry_after_s;
    }
    return busy;
}

/* 1 while a failed entry still waits for some replica's answer: its
 * message names every replica's outcome, so it waits for them all (each
 * call is bounded by replica_timeout). */
static int failed_entry_pending(const coord_t *c)
{
    for (size_t i = 0; i < c->env.n; i++) {
        if (repl_tally_state(&c->tally[i]) != REPL_FAILED)
            continue;
        for (uint32_t k = 0; k < c->rf; k++)
            if (c->out[i * c->rf + k].state == OUT_PENDING)
                return 1;
    }
    return 0;
}

/* "n1 ok, n2 ok, n3 failed: connection refused", in placement order. */
static void outcomes_str(const coord_t *c, size_t i, char *buf, size_t cap)
{
    const topo_t *t = c->r->n->topo;
    const uint32_t *rep = topo_shard_replicas(t, c->e[i].shard);
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t k = 0; k < c->rf && off < cap; k++) {
        const outcome_t *o = &c->out[i * c->rf + k];
        const char *id = topo_node_id(t, rep[k]);
        const char *sep = k ? ", " : "";
        int w = o->state == OUT_OK ? snprintf(buf + off, cap - off, "%s%s ok", sep, id)
                : o->state == OUT_FAILED
                    ? snprintf(buf + off, cap - off, "%s%s failed: %s", sep, id, o->why)
                    : snprintf(buf + off, cap - off, "%s%s no answer", sep, id);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

static void maybe_reply(coord_t *c)
{
    node_repl_t *r = c->r;
    if (c->replied || !c->local_done)
        goto out;
    for (size_t i = 0; i < c->env.n; i++)
        if (repl_tally_state(&c->tally[i]) == REPL_PENDING)
            goto out;
    if (c->refs > 0 && failed_entry_pending(c))
        goto out;
    c->replied = 1;
    if (c->local_err) {
        if (c->done)
            c->done(c->done_arg, c->local_err, st_strerror(c->local_err));
        else
            rpc_conn_reply_error(c->conn, c->reqid, c->local_err, st_strerror(c->local_err));
        goto out;
    }
    node_shard_result_t *res = c->local;
    for (size_t i = 0; i < c->env.n; i++) {
        const repl_tally_t *t = &c->tally[i];
        if (repl_tally_state(t) == REPL_OK) {
            /* met, even if the local copy failed (then it is hinted); a
             * cardinality refusal of the local copy is still reported */
            res[i].coordinator_missed = c->local_err || res[i].code != 0;
            res[i].code = 0;
            res[i].retry_after_s = 0;
            if (!res[i].refused_samples)
                res[i].msg[0] = '\0';
            continue;
        }
        if (res[i].code == ST_ENOREF) { /* the router sends it again with labels */
            res[i].refused_samples = 0;
            continue;
        }
        metric_counter_inc(r->coord_failed);
        /* a replica refused as busy: the sender should slow down and retry
         * (503 + Retry-After), not try another coordinator at once */
        uint32_t ra;
        int busy = entry_busy(c, i, &ra);
        res[i].code = busy ? ST_EBUSY : ST_EUNAVAIL;
        res[i].retry_after_s = busy ? (ra ? ra : 1) : 0;
        res[i].refused_samples = 0;
        char who[sizeof res[i].msg];
        outcomes_str(c, i, who, sizeof who);
        /* a long list of replica outcomes is cut to the message size */
        if (snprintf(res[i].msg, sizeof res[i].msg,
                     "write consistency %s not met: %u of %u replicas acked (need %u): %s",
                     topo_write_consistency_name(c->mode), t->acks, t->rf, t->required, who) < 0)
            res[i].msg[0] = '\0';
    }
    if (c->done) {
        size_t bad = 0, missed = 0;
        while (bad < c->env.n && res[bad].code == 0)
            bad++;
        for (size_t i = 0; i < c->env.n; i++)
            missed += res[i].coordinator_missed != 0;
        /* met without this node's own copy: REPL_MISSED_LOCAL, so node_repl_submit
         * has the next replica coordinate it (which forwards it back here),
         * as a router does for a write whose coordinator missed it */
        c->done(c->done_arg,
                bad < c->env.n ? res[bad].code
                : missed       ? REPL_MISSED_LOCAL
                               : 0,
                bad < c->env.n ? res[bad].msg
                : missed       ? "the coordinator's own copy failed"
                               : "");
        goto out;
    }
    st_buf_t out;
    st_buf_init(&out);
    if (node_pack_write_result(res, c->env.n, &out) == 0)
        rpc_conn_reply(c->conn, c->reqid, RPC_WRITE_RESP, out.data, out.len);
    else
        rpc_conn_reply_error(c->conn, c->reqid, ST_ENOMEM, "out of memory");
    st_buf_deinit(&out);
out:
    if (c->refs == 0) {
        if (!c->replied) /* cannot happen: all outcomes in decide every shard */
            rpc_conn_reply_error(c->conn, c->reqid, ST_EPROTO, "write left undecided");
        coord_free(c);
    }
}

static void local_work(uv_work_t *w)
{
    coord_t *c = w->data;
    node_fault_t f = node_fault_local_write(); /* test-only (node_fault.h) */
    if (f != NODE_FAULT_NONE) {
        for (size_t i = 0; i < c->env.n; i++) {
            c->local[i].shard = c->e[i].shard;
            c->local[i].code = f == NODE_FAULT_FAIL ? ST_EIO : 0;
            snprintf(c->local[i].msg, sizeof c->local[i].msg, "%s",
                     f == NODE_FAULT_FAIL ? "test fault: local write failed" : "");
        }
        return;
    }
    c->local_err = node_write_local(c->r->n, c->e, c->env.n, c->local);
    if (!c->local_err && c->r->observe) /* this node coordinates (compaction rules) */
        c->r->observe(c->r->n, c->e, c->env.n, c->local);
}

static void local_after(uv_work_t *w, int status)
{
    coord_t *c = w->data;
    atomic_fetch_sub(&c->r->n->jobs, 1);
    if (status == UV_ECANCELED && !c->local_err)
        c->local_err = ST_ECLOSED;
    for (size_t i = 0; i < c->env.n; i++) {
        int ok = !c->local_err && c->local[i].code == 0;
        repl_tally_add(&c->tally[i], ok);
        note_code(c, i, (uint32_t)c->r->n->self, ok,
                  c->local_err ? st_strerror(c->local_err) : c->local[i].msg,
                  c->local_err ? c->local_err : c->local[i].code, c->local[i].retry_after_s);
    }
    c->local_done = 1;
    c->refs--;
    maybe_reply(c);
}

static void on_fwd(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len);
static void fwd_done(fwd_t *f, int status, const uint8_t *payload, size_t len, const char *why);

/* Send entries c->e[idx[0..k)] to p by reference; 0 or the call's error
 * (f not sent, the caller's). */
static int forward(coord_t *c, peer_t *p, fwd_t *f, const size_t *idx, size_t k)
{
    node_repl_t *r = c->r;
    f->labels = 0;
    if (k == c->env.n) { /* every entry: one message shared by the peers */
        if (!c->rpay) {
            wpay_t *w = calloc(1, sizeof *w);
            if (!w)
                return ST_ENOMEM;
            w->refs = 1;
            st_buf_init(&w->b);
            int rc = repl_put_forward_refs(&w->b, c->e, NULL, k, r->ref_seed);
            if (rc) {
                wpay_unref(w);
                return rc;
            }
            c->rpay = w;
        }
        c->rpay->refs++;
        int crc = rpc_client_call_shared(p->cli, RPC_WRITE, c->rpay->b.data, c->rpay->b.len,
                                         wpay_unref, c->rpay, (unsigned)r->timeout_ms, on_fwd, f);
        if (crc)
            c->rpay->refs--;
        return crc;
    }
    st_buf_t b;
    st_buf_init(&b);
    int rc = repl_put_forward_refs(&b, c->e, idx, k, r->ref_seed);
    if (!rc)
        rc = rpc_client_call(p->cli, RPC_WRITE, b.data, b.len, (unsigned)r->timeout_ms, on_fwd, f);
    st_buf_deinit(&b);
    return rc;
}

/* Entries answered ST_ENOREF: sent again at once with their labels (a
 * router's series by reference get theirs from this node's engines). */
static void forward_labels(coord_t *c, peer_t *p, const size_t *idx, size_t k)
{
    fwd_t *f = malloc(sizeof *f + k * sizeof f->idx[0]);
    st_buf_t b;
    st_buf_init(&b);
    int rc = f ? repl_put_envelope(&b, 0, 1) : ST_ENOMEM;
    size_t m = 0, q = 0;
    for (; q < k && !rc; q++) {
        const repl_entry_t *en = &c->e[idx[q]];
        size_t mark, len0 = b.len;
        rc = wire_begin(&b, WIRE_NODE_WRITE_SHARDS, &mark);
        int erc = rc ? rc : node_write_expand(c->r->n, en->shard, en->msg, en->msg_len, &b);
        if (erc == ST_ENOREF) { /* neither knows it: failed, not hinted (see add_hints) */
            b.len = len0;
            repl_tally_add(&c->tally[idx[q]], 0);
            note_code(c, idx[q], p->node, 0, "unknown series reference", ST_ENOREF, 0);
            atomic_fetch_add(&p->unhinted, 1);
            continue;
        }
        if ((rc = erc) == 0) {
            wire_end(&b, mark);
            f->idx[m++] = idx[q];
        } else {
            break; /* idx[q] not counted yet */
        }
    }
    if (rc || !m) {
        if (rc) { /* out of memory: a miss like any other, hinted: those taken and the rest */
            size_t miss = 0, *mi = malloc((m + k - q) * sizeof *mi + 1);
            for (size_t x = 0; mi && x < m; x++)
                mi[miss++] = f->idx[x];
            for (size_t x = q; mi && x < k; x++)
                mi[miss++] = idx[x];
            for (size_t x = 0; x < miss; x++) {
                repl_tally_add(&c->tally[mi[x]], 0);
                note(c, mi[x], p->node, 0, "out of memory");
            }
            if (miss)
                add_hints(p, c->e, mi, miss);
            free(mi);
        }
        st_buf_deinit(&b);
        free(f);
        return;
    }
    f->c = c;
    f->p = p;
    f->n = m;
    f->labels = 1;
    c->refs++;
    metric_counter_add(p->fwd_labels, m);
    int crc = c->r->closing ? ST_ECLOSED
                            : rpc_client_call(p->cli, RPC_WRITE, b.data, b.len,
                                              (unsigned)c->r->timeout_ms, on_fwd, f);
    st_buf_deinit(&b);
    if (crc)
        fwd_done(f, crc, NULL, 0, crc == ST_EBUSY ? "replica queue full" : st_strerror(crc));
}

static void fwd_done(fwd_t *f, int status, const uint8_t *payload, size_t len, const char *why)
{
    coord_t *c = f->c;
    peer_t *p = f->p;
    size_t *failed = malloc((f->n ? 2 * f->n : 1) * sizeof *failed);
    size_t nf = 0, nl = 0, *again = failed ? failed + f->n : NULL;
    Strata__NodeWriteResult *res = NULL;
    if (status == 0) {
        res = strata__node_write_result__unpack(NULL, len, payload);
        if (!res || res->n_results != f->n) {
            why = "malformed reply";
            status = ST_EPROTO;
        }
    }
    for (size_t k = 0; k < f->n; k++) {
        size_t i = f->idx[k];
        if (status == 0 && res->results[k]->code == ST_ENOREF && !f->labels && again) {
            again[nl++] = i; /* the replica does not know some references */
            continue;
        }
        int ok = status == 0 && res->results[k]->code == 0;
        repl_tally_add(&c->tally[i], ok);
        if (ok) {
            metric_counter_inc(p->fwd_ok);
            note(c, i, p->node, 1, NULL);
            continue;
        }
        metric_counter_inc(p->fwd_err);
        /* a replica whose local write failed (EIO, ENOSPC, EBUSY, ...) is a
         * miss like one that did not answer: counted against the mode and
         * hinted below */
        note_code(c, i, p->node, 0,
                  status ? why : (res->results[k]->error ? res->results[k]->error : "error"),
                  status ? status : res->results[k]->code,
                  status ? 0 : res->results[k]->retry_after_s);
        if (failed)
            failed[nf++] = i;
    }
    if (res)
        strata__node_write_result__free_unpacked(res, NULL);
    if (nf)
        add_hints(p, c->e, failed, nf);
    if (nl)
        forward_labels(c, p, again, nl);
    free(failed);
    free(f);
    c->refs--;
    maybe_reply(c);
}

static void on_fwd(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    fwd_t *f = arg;
    char why[200];
    if (status && type == RPC_ERROR && len)
        snprintf(why, sizeof why, "%.*s", (int)(len < 190 ? len : 190), (const char *)payload);
    else
        snprintf(why, sizeof why, "%s", status ? st_strerror(status) : "");
    fwd_done(f, status, payload, len, why);
}

static void coordinate(node_repl_t *r, rpc_conn_t *conn, uint64_t reqid, const uint8_t *payload,
                       size_t len, node_repl_done_fn done, void *done_arg)
{
    node_t *n = r->n;
    coord_t *c = calloc(1, sizeof *c);
    if (!c) {
        if (done)
            done(done_arg, ST_ENOMEM, "out of memory");
        else
            rpc_conn_reply_error(conn, reqid, ST_ENOMEM, "out of memory");
        return;
    }
    c->r = r;
    c->conn = conn;
    c->reqid = reqid;
    c->done = done;
    c->done_arg = done_arg;
    if (conn)
        rpc_conn_acquire(conn);
    int rc = 0;
    /* every WriteRequest gets this write's version (local copy, forwards
     * and hints alike: engine.h, VERSIONS), in one pass that also makes the
     * forwarded envelope and finds the entries */
    if (!rc && !(c->pay = calloc(1, sizeof *c->pay)))
        rc = ST_ENOMEM;
    if (!rc) {
        c->pay->refs = 1;
        st_buf_init(&c->pay->b);
        rc = repl_stamp_forward(payload, len, st_hlc_next(&n->hlc, st_now_ms()), &c->pay->b, &c->e,
                                &c->env);
    }
    size_t ne = c->env.n;
    if (!rc) {
        c->tally = calloc(ne ? ne : 1, sizeof *c->tally);
        c->local = calloc(ne ? ne : 1, sizeof *c->local);
        c->rf = topo_replication_factor(n->topo);
        c->out = calloc((ne ? ne : 1) * c->rf, sizeof *c->out);
        if (!c->tally || !c->local || !c->out)
            rc = ST_ENOMEM;
    }
    if (rc) {
        const char *why = rc == ST_ENOMEM ? "out of memory" : "malformed NodeWrite";
        if (done)
            done(done_arg, rc, why);
        else
            rpc_conn_reply_error(conn, reqid, rc, why);
        coord_free(c);
        return;
    }
    /* the envelope carries 1 + topo_write_consistency_t; 0: cluster.ini's */
    c->mode = c->env.consistency ? (topo_write_consistency_t)(c->env.consistency - 1)
                                 : topo_write_consistency(n->topo);
    uint32_t rf = topo_replication_factor(n->topo), nshards = topo_shards(n->topo);
    for (size_t i = 0; i < ne; i++)
        repl_tally_init(&c->tally[i], (int)c->mode, rf);
    metric_counter_inc(r->coord_writes);
    c->refs = 1; /* the local write */
    /* forward: one call per peer with the entries of the shards it holds */
    size_t *idx = malloc((ne ? ne : 1) * sizeof *idx);
    for (uint32_t pn = 0; idx && pn < r->nnodes; pn++) {
        peer_t *p = &r->peers[pn];
        if (pn == (uint32_t)n->self)
            continue;
        size_t k = 0;
        for (size_t i = 0; i < ne; i++)
            if (c->e[i].shard < nshards && topo_replica_rank(n->topo, c->e[i].shard, pn) >= 0)
                idx[k++] = i;
        if (!k)
            continue;
        fwd_t *f = malloc(sizeof *f + k * sizeof f->idx[0]);
        if (!f)
            continue; /* counted as no ack: the shard may fail its mode */
        f->c = c;
        f->p = p;
        f->n = k;
        memcpy(f->idx, idx, k * sizeof *idx);
        c->refs++;
        if (r->closing || rpc_client_state(p->cli) == RPC_CLIENT_DOWN) {
            fwd_done(f, ST_EUNAVAIL, NULL, 0, "replica is down");
            continue;
        }
        int crc = forward(c, p, f, idx, k);
        if (crc)
            fwd_done(f, crc, NULL, 0, crc == ST_EBUSY ? "replica queue full" : st_strerror(crc));
    }
    free(idx);
    /* the local write, on the pool (refs is 1 + calls still out) */
    c->w.data = c;
    atomic_fetch_add(&n->jobs, 1);
    if (uv_queue_work(n->loop, &c->w, local_work, local_after) != 0) {
        atomic_fetch_sub(&n->jobs, 1);
        c->local_err = ST_EBUSY;
        for (size_t i = 0; i < ne; i++)
            repl_tally_add(&c->tally[i], 0);
        c->local_done = 1;
        c->refs--;
        maybe_reply(c);
    }
}

void node_repl_write(node_repl_t *r, rpc_conn_t *conn, uint64_t reqid, const uint8_t *payload,
                     size_t len)
{
    coordinate(r, conn, reqid, payload, len, NULL, NULL);
}

/* node_repl_submit: a NodeWrite sent to a peer that coordinates it. */
typedef struct submit {
    node_repl_t *r;
    uint8_t *payload;
    size_t len;
    uint32_t shard, rank; /* the replica rank tried */
    node_repl_done_fn done;
    void *arg;
} submit_t;

static void submit_next(submit_t *s);

/* A coordinator answered: done, or the next replica coordinates it (a
 * failure other than busy, or a write met without the coordinator's own
 * copy: the next coordinator forwards it to every replica, that one
 * included). */
static void submit_end(submit_t *s, int code, const char *why)
{
    if (code && code != ST_EBUSY && ++s->rank < topo_replication_factor(s->r->n->topo)) {
        submit_next(s);
        return;
    }
    s->done(s->arg, code == REPL_MISSED_LOCAL ? 0 : code, code == REPL_MISSED_LOCAL ? "" : why);
    free(s->payload);
    free(s);
}

static void on_submitted(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    submit_t *s = arg;
    int code = status;
    char why[200] = "";
    if (!status && type == RPC_WRITE_RESP) {
        Strata__NodeWriteResult *res = strata__node_write_result__unpack(NULL, len, payload);
        code = res ? 0 : ST_EPROTO;
        for (size_t i = 0; res && i < res->n_results && !code; i++)
            if (res->results[i]->code) {
                code = res->results[i]->code;
                snprintf(why, sizeof why, "%s",
                         res->results[i]->error ? res->results[i]->error : "");
            }
        for (size_t i = 0; res && i < res->n_results && !code; i++)
            if (res->results[i]->coordinator_missed)
                code = REPL_MISSED_LOCAL; /* met, but not on the coordinator */
        if (res)
            strata__node_write_result__free_unpacked(res, NULL);
    } else if (status && type == RPC_ERROR && len) {
        snprintf(why, sizeof why, "%.*s", (int)(len < 190 ? len : 190), (const char *)payload);
    } else if (!status) {
        code = ST_EPROTO;
    }
    submit_end(s, code, why[0] ? why : code ? st_strerror(code) : "");
}

/* This node coordinated it (coordinate's done). */
static void on_submitted_here(void *arg, int code, const char *msg)
{
    submit_end(arg, code, msg);
}

static void submit_next(submit_t *s)
{
    node_repl_t *r = s->r;
    const uint32_t *rep = topo_shard_replicas(r->n->topo, s->shard);
    uint32_t rf = topo_replication_factor(r->n->topo);
    for (; s->rank < rf; s->rank++) {
        uint32_t node = rep[s->rank];
        if (node == (uint32_t)r->n->self) {
            coordinate(r, NULL, 0, s->payload, s->len, on_submitted_here, s);
            return;
        }
        peer_t *p = &r->peers[node];
        if (r->closing || !atomic_load(&p->up))
            continue;
        if (rpc_client_call(p->cli, RPC_WRITE, s->payload, s->len, (unsigned)r->timeout_ms,
                            on_submitted, s) == 0)
            return;
    }
    s->done(s->arg, ST_EUNAVAIL, "no replica of the shard is up");
    free(s->payload);
    free(s);
}

void node_repl_submit(node_repl_t *r, uint32_t shard, const uint8_t *payload, size_t len,
                      node_repl_done_fn done, void *arg)
{
    submit_t *s = calloc(1, sizeof *s);
    uint8_t *copy = malloc(len ? len : 1);
    if (!s || !copy || shard >= topo_shards(r->n->topo)) {
        free(s);
        free(copy);
        done(arg, s && copy ? ST_EINVAL : ST_ENOMEM, "cannot submit the write");
        return;
    }
    memcpy(copy, payload, len);
    *s = (submit_t){r, copy, len, shard, 0, done, arg};
    submit_next(s);
}

void node_repl_set_hooks(node_repl_t *r, node_repl_observe_fn observe, node_repl_peer_up_fn peer_up)
{
    r->observe = observe;
    r->peer_up = peer_up;
}

rpc_client_t *node_repl_peer(node_repl_t *r, uint32_t node)
{
    if (node >= r->nnodes || r->closing || !r->peers[node].cli || !atomic_load(&r->peers[node].up))
        return NULL;
    return r->peers[node].cli;
}

/* ---- replay ------------------------------------------------------------ */

static void replay_peek(peer_t *p);

static void win_free(peer_t *p)
{
    for (size_t i = 0; i < p->nwin; i++) {
        free(p->win[i].msg);
        p->win[i].msg = NULL;
    }
    p->nwin = 0;
    p->barrier = 0;
}

static void on_timer(uv_timer_t *t)
{
    peer_t *p = t->data;
    if (p->r->closing)
        return;
    if (!p->nwin) { /* a failed peek: start over */
        p->replaying = 0;
        kick(p);
        return;
    }
    if (!atomic_load(&p->up)) {
        win_free(p);
        p->replaying = 0; /* the UP transition kicks again */
        return;
    }
    replay_peek(p); /* peeking again starts at the same hint */
}

static void backoff(peer_t *p)
{
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : REPLAY_BACKOFF_MIN_MS;
    if (p->backoff_ms > REPLAY_BACKOFF_MAX_MS)
        p->backoff_ms = REPLAY_BACKOFF_MAX_MS;
    uv_timer_start(&p->timer, on_timer, p->backoff_ms, 0);
}

static void ack_work(uv_work_t *w)
{
    peer_t *p = w->data;
    p->job_rc = hints_ack_many(p->h, p->ack_k);
    snapshot(p);
}

static void ack_after(uv_work_t *w, int status)
{
    peer_t *p = w->data;
    (void)status;
    win_free(p);
    if (!p->then_backoff) {
        p->attempts = 0;
        p->backoff_ms = 0;
    }
    if (p->job_rc)
        st_warn("cannot persist the hint cursor (hints may be replayed twice)",
                "peer=%s err=\"%s\"", p->id, st_strerror(p->job_rc));
    if (p->r->closing || !atomic_load(&p->up)) {
        p->replaying = 0;
        return;
    }
    if (p->then_backoff)
        backoff(p);
    else
        replay_peek(p);
}

/* Ack the first k hints of the window, then peek the next window (or back
 * off first). */
static void replay_ack(peer_t *p, size_t k, int then_backoff)
{
    p->ack_k = k;
    p->then_backoff = then_backoff;
    p->w.data = p;
    if (uv_queue_work(p->r->n->loop, &p->w, ack_work, ack_after) != 0) {
        win_free(p);
        p->replaying = 0;
    }
}

/* Every answer of the window is in: ack the delivered prefix (hopeless
 * batches dropped after REPLAY_MAX_ATTEMPTS count as delivered). */
static void window_done(peer_t *p)
{
    if (p->r->closing) {
        win_free(p);
        p->replaying = 0;
        return;
    }
    size_t k = 0;
    int stop = 0;
    while (k < p->nwin && !stop) {
        replay_slot_t *sl = &p->win[k];
        if (sl->status) { /* the peer is gone or slow: from this hint again later */
            stop = 1;
            break;
        }
        if (sl->code == 0) {
            k++;
            continue;
        }
        /* a batch the replica finds invalid will never pass: drop it after a
         * few tries; anything else (a failing disk, a shard refusing writes)
         * may heal: keep it, with backoff, until hint_max_age */
        int hopeless = sl->code == ST_EINVAL || sl->code == ST_ECORRUPT || sl->code == ST_ELIMIT ||
                       sl->code == ST_EPROTO || sl->code == ST_EPARSE;
        if (++p->attempts >= REPLAY_MAX_ATTEMPTS && hopeless) {
            atomic_fetch_add(&p->rejected, 1);
            st_error("replica rejected a hint; dropping it",
                     "peer=%s shard=%u attempts=%d err=\"%s\"", p->id, sl->shard, p->attempts,
                     sl->why);
            p->attempts = 0;
            k++;
            continue;
        }
        st_warn("replica rejected a hint; retrying", "peer=%s shard=%u attempt=%d err=\"%s\"",
                p->id, sl->shard, p->attempts, sl->why);
        stop = 1;
    }
    if (k == 0) {
        win_free(p);
        backoff(p);
        return;
    }
    replay_ack(p, k, stop);
}

static void on_replayed(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    replay_slot_t *sl = arg;
    peer_t *p = sl->p;
    (void)type;
    sl->status = status;
    sl->code = 0;
    sl->why[0] = '\0';
    if (!status) {
        Strata__NodeWriteResult *res = strata__node_write_result__unpack(NULL, len, payload);
        sl->code = !res || res->n_results != 1 ? ST_EPROTO : res->results[0]->code;
        snprintf(sl->why, sizeof sl->why, "%s",
                 !res || res->n_results != 1 ? "malformed reply"
                 : res->results[0]->error    ? res->results[0]->error
                                             : "");
        if (res)
            strata__node_write_result__free_unpacked(res, NULL);
    }
    if (--p->inflight == 0)
        window_done(p);
}

/* Whether a stored WriteRequest carries a delete (field 3) without a
 * version (a hint stored before deletes were versioned). */
static int hint_is_unversioned_delete(const uint8_t *batch, size_t len)
{
    const uint8_t *q = batch, *end = batch + len;
    wire_field_t f;
    int del = 0;
    uint64_t version = 0;
    while (wire_next(&q, end, &f) == 1) {
        if (f.num == WIRE_WRITE_REQUEST_DELETE)
            del = 1;
        else if (f.num == WIRE_WRITE_REQUEST_VERSION && f.type == WIRE_VARINT)
            version = f.u;
    }
    return del && !version;
}

/* hints_peek_many callback: one hint into the next window slot, as a
 * forwarded NodeWrite. The replica may run the calls of one window in any
 * order; a versioned delete does not mind (it hides the lower versions and
 * only those, whenever they arrive: engine.h, VERSIONS), but an unversioned
 * one hides what its replica stored before it, so it travels alone: it ends
 * the window before it, and nothing joins a window that holds one. */
static int take_hint(void *arg, uint32_t shard, int64_t ts, const uint8_t *batch, size_t len)
{
    peer_t *p = arg;
    (void)ts;
    if (p->barrier)
        return ST_EAGAIN;
    if (hint_is_unversioned_delete(batch, len)) {
        if (p->nwin)
            return ST_EAGAIN;
        p->barrier = 1;
    }
    st_buf_t b;
    st_buf_init(&b);
    if (repl_put_envelope(&b, 0 /* consistency: none */, 1 /* forwarded */) ||
        repl_put_entry(&b, batch, len)) {
        st_buf_deinit(&b);
        return ST_ENOMEM;
    }
    replay_slot_t *sl = &p->win[p->nwin++];
    sl->p = p;
    sl->msg = b.data; /* owned now */
    sl->len = b.len;
    sl->shard = shard;
    return 0;
}

static void peek_work(uv_work_t *w)
{
    peer_t *p = w->data;
    size_t n;
    win_free(p);
    p->job_rc =
        hints_peek_many(p->h, st_now_ms(), REPLAY_WINDOW, REPLAY_WINDOW_BYTES, take_hint, p, &n);
    if (atomic_exchange(&p->unsynced, 0))
        hints_sync(p->h);
    snapshot(p);
}

static void peek_after(uv_work_t *w, int status)
{
    peer_t *p = w->data;
    (void)status;
    if (p->r->closing) {
        win_free(p);
        p->replaying = 0;
        return;
    }
    if (p->job_rc == ST_ENOENT) {
        p->replaying = 0;
        return;
    }
    if (p->job_rc) {
        st_warn("cannot read hints; retrying", "peer=%s err=\"%s\"", p->id, st_strerror(p->job_rc));
        backoff(p);
        return;
    }
    if (!atomic_load(&p->up)) {
        win_free(p);
        p->replaying = 0;
        return;
    }
    /* the whole window at once; a call that cannot even be queued counts as
     * a transport failure of its hint */
    p->inflight = p->nwin + 1; /* + 1: no window_done before every call is made */
    for (size_t i = 0; i < p->nwin; i++) {
        replay_slot_t *sl = &p->win[i];
        int rc = rpc_client_call(p->cli, RPC_WRITE, sl->msg, sl->len, (unsigned)p->r->timeout_ms,
                                 on_replayed, sl);
        if (rc) {
            sl->status = rc;
            p->inflight--;
        }
    }
    if (--p->inflight == 0)
        window_done(p);
}

static void replay_peek(peer_t *p)
{
    p->w.data = p;
    if (uv_queue_work(p->r->n->loop, &p->w, peek_work, peek_after) != 0)
        p->replaying = 0;
}

static void kick(peer_t *p)
{
    if (p->r->closing || p->replaying || !p->cli || !atomic_load(&p->up))
        return;
    p->replaying = 1;
    replay_peek(p);
}

static void sync_work(uv_work_t *w)
{
    peer_t *p = w->data;
    if (atomic_exchange(&p->unsynced, 0))
        hints_sync(p->h);
    snapshot(p);
}

static void sync_after(uv_work_t *w, int status)
{
    (void)status;
    free(w);
}

static void on_tick(uv_timer_t *t)
{
    node_repl_t *r = t->data;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        peer_t *p = &r->peers[i];
        if (!p->cli)
            continue;
        if (atomic_load(&p->up) && !p->replaying) {
            kick(p); /* also syncs and refreshes the snapshot */
            continue;
        }
        uv_work_t *w = malloc(sizeof *w);
        if (!w)
            continue;
        w->data = p;
        if (uv_queue_work(r->n->loop, w, sync_work, sync_after) != 0)
            free(w);
    }
}

/* ---- peers ------------------------------------------------------------- */

static void on_state(void *arg, rpc_client_t *cli, rpc_client_state_t state, int err)
{
    peer_t *p = arg;
    (void)cli;
    int was = atomic_exchange(&p->up, state == RPC_CLIENT_UP);
    if (state == RPC_CLIENT_UP && !was) {
        st_info("peer up", "peer=%s", p->id);
        kick(p);
        if (p->r->peer_up) /* the newest compaction rules win on both sides */
            p->r->peer_up(p->r->n, p->cli);
    } else if (state != RPC_CLIENT_UP && was) {
        st_warn("peer down", "peer=%s err=\"%s\"", p->id, st_strerror(err));
    }
}

/* The last hint-queue snapshot of peer p (any thread): 1, or 0 when p is
 * this node (no client, no queue). */
static int peer_snapshot(peer_t *p, hints_stats_t *out)
{
    if (!p->cli)
        return 0;
    pthread_mutex_lock(&p->r->mu);
    *out = p->snap;
    pthread_mutex_unlock(&p->r->mu);
    return 1;
}

/* A cut of damaged data loses at least one record even when their number
 * past the damage is unknown: count at least one per cut. */
static uint64_t corrupt_records(const hints_stats_t *s)
{
    return s->dropped_corrupt_records > s->corrupt_cuts ? s->dropped_corrupt_records
                                                        : s->corrupt_cuts;
}

static int collect(void *arg, st_buf_t *out)
{
    node_repl_t *r = arg;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"strata_hints_pending", "gauge", "Hinted writes not yet delivered to the peer."},
        {"strata_hints_pending_bytes", "gauge", "Bytes of hinted writes not yet delivered."},
        {"strata_hints_oldest_age_seconds", "gauge", "Age of the oldest pending hint."},
        {"strata_hints_appended_total", "counter", "Hints stored since start."},
        {"strata_hints_replayed_total", "counter", "Hints delivered since start."},
        {"strata_hints_dropped_total", "counter",
         "Hints dropped since start (size: over hint_max_bytes, age: over hint_max_age, "
         "corrupt: damaged on disk, rejected: refused by the replica, unknown_reference: "
         "series by references this node did not know either, never stored)."},
        {"strata_peer_up", "gauge", "1 while the RPC connection to the peer is up."},
    };
    int64_t now = st_now_ms();
    char tmp[512];
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        int k = snprintf(tmp, sizeof tmp, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help,
                         fam[f].name, fam[f].type);
        st_buf_append(out, tmp, (size_t)k);
        for (uint32_t i = 0; i < r->nnodes; i++) {
            peer_t *p = &r->peers[i];
            hints_stats_t s;
            if (!peer_snapshot(p, &s))
                continue;
            /* one value per peer: a count, except the age (seconds) and the
             * drops (one line per reason) */
            unsigned long long u;
            switch (f) {
            case 0:
                u = s.pending_records;
                break;
            case 1:
                u = s.pending_bytes;
                break;
            case 2:
                k = snprintf(tmp, sizeof tmp, "%s{peer=\"%s\"} %.3f\n", fam[f].name, p->id,
                             s.oldest_ts && s.pending_records ? (double)(now - s.oldest_ts) / 1000
                                                              : 0.0);
                st_buf_append(out, tmp, (size_t)k);
                continue;
            case 3:
                u = s.appended;
                break;
            case 4:
                u = s.acked - atomic_load(&p->rejected);
                break;
            case 5:
                k = snprintf(tmp, sizeof tmp,
                             "%s{peer=\"%s\",reason=\"size\"} %llu\n"
                             "%s{peer=\"%s\",reason=\"age\"} %llu\n"
                             "%s{peer=\"%s\",reason=\"corrupt\"} %llu\n"
                             "%s{peer=\"%s\",reason=\"rejected\"} %llu\n"
                             "%s{peer=\"%s\",reason=\"unknown_reference\"} %llu\n",
                             fam[f].name, p->id, (unsigned long long)s.dropped_size_records,
                             fam[f].name, p->id, (unsigned long long)s.dropped_age_records,
                             fam[f].name, p->id, (unsigned long long)corrupt_records(&s),
                             fam[f].name, p->id, (unsigned long long)atomic_load(&p->rejected),
                             fam[f].name, p->id, (unsigned long long)atomic_load(&p->unhinted));
                st_buf_append(out, tmp, (size_t)k);
                continue;
            default:
                u = (unsigned long long)atomic_load(&p->up);
            }
            k = snprintf(tmp, sizeof tmp, "%s{peer=\"%s\"} %llu\n", fam[f].name, p->id, u);
            st_buf_append(out, tmp, (size_t)k);
        }
    }
    return 0;
}

int node_repl_create(node_t *n, const rpc_identity_t *me, node_repl_t **out)
{
    *out = NULL;
    node_fault_init(); /* test-only knobs, read once at start */
    node_repl_t *r = calloc(1, sizeof *r);
    if (!r)
        return ST_ENOMEM;
    const topo_replication_t *rc_ = topo_replication(n->topo);
    r->n = n;
    r->nnodes = topo_node_count(n->topo);
    r->timeout_ms = rc_->replica_timeout_ms;
    r->sync_each = topo_storage(n->topo)->wal_durability == TOPO_WAL_EVERY_WRITE;
    if (getrandom(&r->ref_seed, sizeof r->ref_seed, 0) != (ssize_t)sizeof r->ref_seed)
        r->ref_seed = (uint64_t)st_now_ms() * 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
    pthread_mutex_init(&r->mu, NULL);
    r->peers = calloc(r->nnodes, sizeof *r->peers);
    if (!r->peers) {
        free(r);
        return ST_ENOMEM;
    }
    r->coord_writes = metrics_counter(n->metrics, "strata_node_coordinated_writes_total",
                                      "Writes this node coordinated (router requests).", NULL);
    r->coord_failed = metrics_counter(
        n->metrics, "strata_node_shard_consistency_failures_total",
        "Shard writes answered as failed: the write consistency was not met.", NULL);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hints", n->data_dir);
    if (st_mkdir(dir) != 0) {
        st_error("cannot create the hints directory", "dir=%s err=\"%s\"", dir, strerror(errno));
        return ST_EIO;
    }
    hints_opts_t ho = {
        .max_bytes = rc_->hint_max_bytes,
        .max_age_ms = rc_->hint_max_age_ms,
        .sync_mode = r->sync_each ? HINTS_SYNC_EVERY_APPEND : HINTS_SYNC_CALLER,
    };
    for (uint32_t i = 0; i < r->nnodes; i++) {
        peer_t *p = &r->peers[i];
        p->r = r;
        p->node = i;
        p->id = topo_node_id(n->topo, i);
        if (i == (uint32_t)n->self)
            continue;
        snprintf(dir, sizeof dir, "%s/hints/%s", n->data_dir, p->id);
        int rc = hints_open(dir, &ho, &p->h);
        if (rc) {
            st_error("cannot open the hint queue", "peer=%s dir=%s err=\"%s\"", p->id, dir,
                     st_strerror(rc));
            return rc;
        }
        hints_stats(p->h, &p->snap);
        if (p->snap.pending_records)
            st_info("hints pending for peer", "peer=%s records=%llu bytes=%llu", p->id,
                    (unsigned long long)p->snap.pending_records,
                    (unsigned long long)p->snap.pending_bytes);
        if (p->snap.corrupt_cuts)
            st_warn("damaged hints were cut", "peer=%s records=%llu bytes=%llu", p->id,
                    (unsigned long long)p->snap.dropped_corrupt_records,
                    (unsigned long long)p->snap.dropped_corrupt_bytes);
        p->fwd_ok = metrics_counter(n->metrics, "strata_replica_writes_total",
                                    "Shard batches forwarded to a replica, by outcome.", "peer",
                                    p->id, "result", "ok", NULL);
        p->fwd_err = metrics_counter(n->metrics, "strata_replica_writes_total",
                                     "Shard batches forwarded to a replica, by outcome.", "peer",
                                     p->id, "result", "error", NULL);
        p->fwd_labels = metrics_counter(
            n->metrics, "strata_replica_writes_with_labels_total",
            "Shard batches sent to a replica again with their labels: it did not know some "
            "series references (new series, or the replica restarted).",
            "peer", p->id, NULL);
        uv_timer_init(n->loop, &p->timer);
        p->timer.data = p;
        const topo_addr_t *a = topo_node_rpc(n->topo, i);
        rpc_client_opts_t co = {
            .ping_interval_ms = (unsigned)rc_->heartbeat_interval_ms,
            .connect_timeout_ms =
                (unsigned)(rc_->replica_timeout_ms < 5000 ? rc_->replica_timeout_ms : 5000),
            .backoff_max_ms = 1000,
            .default_timeout_ms = (unsigned)rc_->replica_timeout_ms,
            .on_state = on_state,
            .state_arg = p,
            .log = node_rpc_log,
            .tls = n->tls.rpc_client,
            .peer_node_id = p->id,
            .raw_loopback = 1,
        };
        rc = rpc_client_create(n->loop, a->host, a->port, me, &co, &p->cli);
        if (rc) {
            st_error("cannot create the peer client", "peer=%s err=\"%s\"", p->id, st_strerror(rc));
            return rc;
        }
    }
    if (metrics_collector(n->metrics, collect, r))
        return ST_ENOMEM;
    uv_timer_init(n->loop, &r->tick);
    r->tick.data = r;
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    *out = r;
    return 0;
}

static void on_cli_closed(void *arg)
{
    (void)arg;
}

void node_repl_shutdown(node_repl_t *r)
{
    if (!r || r->closing)
        return;
    r->closing = 1;
    uv_timer_stop(&r->tick);
    uv_close((uv_handle_t *)&r->tick, NULL);
    for (uint32_t i = 0; i < r->nnodes; i++) {
        peer_t *p = &r->peers[i];
        if (!p->cli)
            continue;
        uv_timer_stop(&p->timer);
        uv_close((uv_handle_t *)&p->timer, NULL);
        rpc_client_close(p->cli, on_cli_closed, NULL);
    }
}

void node_repl_destroy(node_repl_t *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        peer_t *p = &r->peers[i];
        if (p->h) {
            int rc = hints_close(p->h);
            if (rc)
                st_error("closing the hint queue failed", "peer=%s err=\"%s\"", p->id,
                         st_strerror(rc));
        }
        win_free(p);
    }
    pthread_mutex_destroy(&r->mu);
    free(r->peers);
    free(r);
}

int node_repl_stats(node_repl_t *r, Strata__NodeStats *st)
{
    size_t np = 0;
    for (uint32_t i = 0; i < r->nnodes; i++)
        np += r->peers[i].cli != NULL;
    Strata__PeerHints *h = calloc(np ? np : 1, sizeof *h);
    Strata__PeerHints **hp = calloc(np ? np : 1, sizeof *hp);
    Strata__PeerState *s = calloc(np ? np : 1, sizeof *s);
    Strata__PeerState **sp = calloc(np ? np : 1, sizeof *sp);
    if (!h || !hp || !s || !sp) {
        free(h);
        free(hp);
        free(s);
        free(sp);
        return ST_ENOMEM;
    }
    size_t k = 0;
    hp[0] = h; /* node_repl_stats_free frees through [0] */
    sp[0] = s;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        peer_t *p = &r->peers[i];
        hints_stats_t hs;
        if (!peer_snapshot(p, &hs))
            continue;
        strata__peer_hints__init(&h[k]);
        h[k].peer = (char *)p->id;
        h[k].pending_records = hs.pending_records;
        h[k].pending_bytes = hs.pending_bytes;
        h[k].oldest_ts = hs.pending_records ? hs.oldest_ts : 0;
        h[k].dropped_records = hs.dropped_size_records + hs.dropped_age_records +
                               corrupt_records(&hs) + atomic_load(&p->rejected) +
                               atomic_load(&p->unhinted);
        hp[k] = &h[k];
        strata__peer_state__init(&s[k]);
        s[k].peer = (char *)p->id;
        s[k].up = atomic_load(&p->up) != 0;
        sp[k] = &s[k];
        k++;
    }
    st->n_hints = k;
    st->hints = hp;
    st->n_peers = k;
    st->peers = sp;
    return 0;
}

void node_repl_stats_free(Strata__NodeStats *st)
{
    if (st->hints)
        free(st->hints[0]);
    free(st->hints);
    if (st->peers)
        free(st->peers[0]);
    free(st->peers);
    st->hints = NULL;
    st->peers = NULL;
    st->n_hints = st->n_peers = 0;
}
