/*
 * router_resp_int — what the files of the RESP door share (internal; only
 * router_resp*.c include it). The door is one module, router_resp.h, kept
 * in five files, each using only files listed below it:
 *
 *   router_resp.c       connections, the command table and dispatch,
 *                       connection commands and AUTH, metadata prefetch,
 *                       start/close
 *   router_resp_add.c   TS.ADD, TS.MADD and pipelined write batches,
 *                       TS.INCRBY/DECRBY
 *   router_resp_read.c  TS.GET/RANGE/REVRANGE/INFO, EXISTS/TYPE, the
 *                       many-key reads (MGET/MRANGE/QUERYINDEX/CARD/labels),
 *                       KEYS/SCAN, TS.JOIN, TS.STATS
 *   router_resp_keys.c  keys and their metadata series, exports, DEL/TS.DEL/
 *                       FLUSHALL, TS.CREATERULE/DELETERULE, TS.CREATE/ALTER
 *   router_resp_job.c   small helpers, the per-key cache, jobs (in-process
 *                       HTTP steps and direct writes)
 *
 * The types below are the connection (rconn_t), a command's job (job_t),
 * the per-key cache entry (ent_t), an export's series (xser_t) and the
 * command table's entry (cmd_t); functions used across the files carry the
 * rresp_ prefix.
 */
#ifndef STRATA_ROUTER_RESP_INT_H
#define STRATA_ROUTER_RESP_INT_H

#include "router_resp.h"
#include "router_delete.h"
#include "router_rules.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net_listen.h"
#include "resp.h"
#include "resp_cmd.h"
#include "resp_rules.h"
#include "resp_write.h"
#include "selector.h"
#include "st_err.h"
#include "st_labels.h"
#include "st_log.h"
#include "st_text.h"
#include "st_time.h"
#include "tls.h"

#define RESP_READ_BUF 65536
#define RESP_OUT_HIGH (16u << 20) /* queued reply bytes above which a connection stops reading */
#define RESP_MAX_CONNS 10000
#define RESP_META_TTL_MS 5000
#define RESP_CACHE_MAX 200000
#define RESP_CACHE_BUCKETS 65536
#define RESP_FAR_MS (2 * 86400000LL) /* "until the end of time" of a read: now + 2 days */
#define RESP_NAME_MAX 128
#define RESP_NOAUTH "NOAUTH Authentication required."
#define RESP_WRONGPASS "WRONGPASS invalid username-password pair or user is disabled."
#define RESP_TLS_HANDSHAKE_MS 10000 /* a TLS client must finish its handshake within */

typedef struct rconn rconn_t;
typedef struct job job_t;

/* The per-key cache entry. */
typedef struct ent {
    struct ent *next;
    char *key;
    int exists; /* a metadata series was found */
    resp_meta_t meta;
    char **kv; /* user labels: name, value, ... (owned) */
    size_t nl;
    int64_t meta_ts;    /* sample time of the current metadata series */
    uint64_t loaded_ms; /* when the metadata was read */
    int hi_known;       /* every sample of the key is at or before hi */
    int64_t hi;
    int last_known; /* (hi, last_v) is the newest sample */
    double last_v;
    uint64_t pf_gen; /* the metadata prefetch that asked for it last */
    unsigned pins;   /* jobs holding it (j->e): a full cache keeps it */
} ent_t;

struct router_resp {
    router_t *r;
    router_route_fn route;
    void *route_arg;
    uv_tcp_t listener;
    int listener_open;
    int port;
    rconn_t *conns;
    size_t nconns;
    uint64_t next_id;
    int closing;
    http_limits_t hl;
    ent_t **buckets;
    size_t nent;
    job_t *incr_head, *incr_tail; /* INCRBY/DECRBY waiting their turn */
    uint64_t pf_gen;              /* metadata prefetches so far */
    int incr_busy;
    metric_counter_t *m_conns, *m_errors, *m_proto, *m_cmds_other, *m_auth_fail, *m_auth_delayed;
    metric_counter_t *m_prefetch, *m_batches; /* metadata prefetches, pipelined write batches */
    tls_ctx_t *tls;                           /* not owned; NULL: plaintext */
    int auth_slow;                            /* password checks on the thread pool now */
    metric_gauge_t *m_open;
    metric_counter_t **m_cmd; /* [command table index] */
    char rbuf[RESP_READ_BUF];
    int rbuf_busy;
    void (*job_done)(rconn_t *c); /* a job ended: run the connection's next command */
};

struct rconn {
    uv_tcp_t tcp;
    router_resp_t *s;
    rconn_t *prev, *next;
    st_buf_t in;
    size_t in_off;
    st_buf_t out;
    resp_arg_t *argv;
    size_t argcap, argc, cmd_used;
    int proto;
    char name[RESP_NAME_MAX];
    uint64_t id;
    int busy, closing, dead, reading, uv_closing;
    job_t *batch;  /* pipelined writes being gathered (router_resp write batches) */
    size_t pf_end; /* input before this offset was scanned by a metadata prefetch */
    size_t wq;
    int nwrites;
    char peer[64];
    tls_conn_t *tls;      /* NULL: plaintext */
    uv_timer_t *hs_timer; /* the TLS handshake's deadline (NULL: none running) */
    int authed;           /* AUTH succeeded (only meaningful with a users file) */
    char *authz;          /* the Authorization header its commands carry (NULL: none) */
    char user[AUTH_NAME_MAX + 1];
    job_t *auth_delay; /* a -WRONGPASS held back (per-address slowdown), NULL: none */
};

typedef void (*job_fn)(job_t *j);

struct job {
    uv_timer_t timer;
    rconn_t *c;
    router_resp_t *s;
    job_fn next;
    st_buf_t body;
    int status;
    int over; /* the response went over the collect limit */
    job_t *qnext;
    /* what commands keep between steps */
    const resp_arg_t *argv;
    size_t argc;
    int kind;
    char *key;
    size_t klen;
    int plain; /* key spelled as a series selector */
    ent_t *e;
    resp_tsopts_t o;
    resp_range_t rg;
    int64_t ts;
    double v;
    int dup;
    resp_write_t *wr; /* the samples and metadata rows of a write (resp_write.h) */
    void *ctx;
    void (*ctx_free)(void *);
    job_fn after_meta; /* job_meta's next step */
    int partial;       /* the next export may answer without some shards */
    int set_ret;       /* TS.CREATE/TS.ALTER: the key's retention entry changes */
    char missing[256]; /* X-Strata-Missing-Shards of the last answer ("" none) */
};

/* One series of an export answer. */
typedef struct xser {
    char **kv; /* name, value, ... (owned) */
    size_t nl;
    resp_samples_t s;
    char *key; /* its RESP key (owned) */
    int is_ts; /* a TS key (labels from metadata) */
} xser_t;

typedef struct xset {
    xser_t *v;
    size_t n, cap;
} xset_t;
typedef void (*cmd_fn)(rconn_t *c);

enum { CF_WRITE = 1, CF_READ = 2, CF_FAST = 4, CF_CONN = 8, CF_ADMIN = 16 };

typedef struct cmd {
    const char *name;
    int arity; /* Redis convention: n exact, -n at least n (the name counts) */
    int flags;
    cmd_fn fn;
    int first_key, last_key, step; /* key positions, for COMMAND */
    const char *summary;           /* COMMAND DOCS */
    const char *args;              /* COMMAND DOCS syntax hint */
} cmd_t;
#define RESP_SEL_CHUNK 48000 /* bytes of key alternatives in one selector */
#define RESP_SEL_MAX 15      /* selectors of one read (the router takes 16 match[]) */

/* ---- shared between the files ---- */

char *rresp_dupn(const char *p, size_t n);
void rresp_fatal_oom(rconn_t *c);
uint64_t rresp_hash_str(const char *s, size_t n);
void rresp_cache_clear(router_resp_t *s);
void rresp_conn_forget_auth(rconn_t *c);
int rresp_pct(st_buf_t *b, const char *s, size_t n);
int rresp_sel_matcher(st_buf_t *b, const char *name, st_match_type_t t, const char *value);
void rresp_ent_free_labels(ent_t *e);
void rresp_cache_forget(router_resp_t *s, const ent_t *only);
ent_t *rresp_cache_get(router_resp_t *s, const char *key, size_t n, int create);
void rresp_job_free_timer(uv_handle_t *h);
void rresp_job_end(job_t *j);
job_t *rresp_job_new(rconn_t *c);
void rresp_on_job_timer(uv_timer_t *t);
void rresp_job_http(job_t *j, const char *method, const char *target, const char *ctype,
                    const void *body, size_t len, job_fn next);
void rresp_job_write(job_t *j, job_fn next);
void rresp_reply_http_error(job_t *j, const char *what);
void rresp_xset_free(xset_t *x);
const char *rresp_kv_get(char *const *kv, size_t nl, const char *name);
int rresp_parse_export(const st_buf_t *body, xset_t *x, char *err, size_t errlen);
void rresp_job_export(job_t *j, const char *const *sels, size_t nsel, int64_t from, int64_t to,
                      job_fn next);
int rresp_key_selector(st_buf_t *b, const char *key, size_t klen, int *plain, char *err,
                       size_t errlen);
char *rresp_series_key(char *const *kv, size_t nl);
int rresp_exact_key(const xser_t *x, const char *key, int plain);
int rresp_key_unavailable(job_t *j, int meta_found);
void rresp_meta_fill(ent_t *e, const xser_t *best, int64_t bt);
void rresp_meta_from(ent_t *e, xset_t *x, const char *key);
void rresp_job_meta(job_t *j, job_fn next);
resp_write_t *rresp_job_wr(job_t *j);
int rresp_job_meta_row(job_t *j, uint32_t tag, const ent_t *e, int64_t ts);
int rresp_job_sample(job_t *j, uint32_t tag, const char *key, size_t klen, int plain, int64_t ts,
                     double v);
void rresp_reply_write_failed(job_t *j);
int rresp_meta_stale(const router_resp_t *s, const ent_t *e);
int rresp_ent_set_labels(ent_t *e, const resp_tsopts_t *o);
void rresp_wrong_args(rconn_t *c, const char *name);
void rresp_cmd_del(rconn_t *c);
void rresp_cmd_ts_del(rconn_t *c);
void rresp_cmd_flushall(rconn_t *c);
char *rresp_arg_selector(job_t *j, size_t i);
void rresp_cmd_createrule(rconn_t *c);
void rresp_cmd_deleterule(rconn_t *c);
int rresp_job_key(job_t *j, size_t i);
void rresp_cmd_create(rconn_t *c);
void rresp_cmd_alter(rconn_t *c);
void rresp_cmd_add(rconn_t *c);
int rresp_rejects_only(const job_t *j);
void rresp_batch_submit(rconn_t *c);
int rresp_key_is_series(const resp_arg_t *k);
void rresp_cmd_madd(rconn_t *c);
int rresp_ent_fresh(const router_resp_t *s, const ent_t *e);
int rresp_batch_try(rconn_t *c, const cmd_t *k, metric_counter_t *m);
void rresp_cmd_incrby(rconn_t *c);
void rresp_cmd_decrby(rconn_t *c);
void rresp_cmd_range(rconn_t *c);
void rresp_cmd_revrange(rconn_t *c);
void rresp_cmd_get(rconn_t *c);
void rresp_cmd_tsinfo(rconn_t *c);
void rresp_cmd_exists(rconn_t *c);
void rresp_cmd_type(rconn_t *c);
int rresp_key_selectors(st_buf_t *bufs, size_t max, size_t *n, const char *pname, const char *pval,
                        const char *label, char *const *keys, size_t nk);
void rresp_bufs_free(st_buf_t *b, size_t n);
void rresp_cmd_mrange(rconn_t *c);
void rresp_cmd_mrevrange(rconn_t *c);
void rresp_cmd_mget(rconn_t *c);
void rresp_cmd_queryindex(rconn_t *c);
void rresp_cmd_card(rconn_t *c);
void rresp_cmd_labelnames(rconn_t *c);
void rresp_cmd_labelvalues(rconn_t *c);
void rresp_cmd_keys(rconn_t *c);
void rresp_cmd_scan(rconn_t *c);
void rresp_cmd_join(rconn_t *c);
void rresp_cmd_stats(rconn_t *c);

#endif
