/*
 * resp_write — the RESP door's direct write path: the samples and metadata
 * rows of TS.ADD / TS.MADD / TS.INCRBY / TS.DECRBY / TS.CREATE / TS.ALTER
 * (one command, or every write command of one pipelined read) gathered as
 * binary items and handed to the router's write pipeline
 * (router_write_submit) with a build step of their own: no JSON or
 * line-protocol text is made or parsed on the way.
 *
 * Why: the text round trip (format a JSON line per sample, parse it back
 * on the thread pool) cost more than the write itself.
 *
 * How: resp_write_sample()/resp_write_meta() append fixed-size items to an
 * array and their strings to one arena (no allocation per sample once the
 * arrays have grown); resp_write_build() turns each item into a series on
 * the worker thread (labels sorted and validated as /api/v1/import does:
 * a key that is no valid series is rejected as that item, with the
 * import's reasons); every item carries a caller's tag, so after the write
 * the rejected items can be answered one by one (resp_write_rejected()).
 * resp_write_submit() runs the auth gate (write role) on an in-process
 * request and then the write pipeline: retention and max_future checks,
 * a confined user's selector, placement, consistency and the answers
 * (204/400/403/503) are the ones of every other write door.
 */
#ifndef RESP_WRITE_H
#define RESP_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "resp_cmd.h"
#include "router.h"

typedef struct resp_write resp_write_t;

/* Returns 0 or ST_ENOMEM. */
int resp_write_create(resp_write_t **out);
void resp_write_destroy(resp_write_t *w);
/* Items added so far, and the bytes they hold (for batch limits). */
size_t resp_write_count(const resp_write_t *w);
size_t resp_write_bytes(const resp_write_t *w);

/* A sample of key: the series {__name__="key"}, or (series 1) the series
 * the selector text key spells exactly (cpu{host="a"}). Returns 0 or
 * ST_ENOMEM. */
int resp_write_sample(resp_write_t *w, uint32_t tag, const char *key, size_t klen, int series,
                      int64_t ts, double v);
/* A metadata row of key: {__name__="__ts_meta__", __ts_key__=key, the
 * user labels kv (name, value, ...), the settings m} = 1 at ts. Returns 0
 * or ST_ENOMEM. */
int resp_write_meta(resp_write_t *w, uint32_t tag, const char *key, const resp_meta_t *m,
                    char *const *kv, size_t nl, int64_t ts);
/* Drop the items added after `count` (a command that could not finish). */
void resp_write_truncate(resp_write_t *w, size_t count);

/* Fill b with every item (item i is "line" i + 1) and finish it. Runs on
 * any thread. Returns 0 or ST_ENOMEM. */
int resp_write_build(resp_write_t *w, wbatch_t *b);

/* After the write: the reason item tag `tag` was rejected, or NULL (not
 * rejected, or not among the reasons kept: see resp_write_rejected_all). */
const char *resp_write_rejected(const resp_write_t *w, uint32_t tag);
/* 1 when every rejected item's reason is known. */
int resp_write_rejected_all(const resp_write_t *w);

/*
 * Write w's items: an in-process request carrying `authz` (the
 * Authorization header; NULL: none) from `peer`, answered through sink
 * like any http_req_local_as() request (204, or the write pipeline's
 * 400/403/503 JSON); the auth gate needs the write role. w is borrowed
 * until the write is over: the rejections above are set right after the
 * sink's final call returns, so read them (and free w) from a later loop
 * callback, e.g. a zero timer the sink starts.
 * Returns 0, or an ST_* code with nothing sent.
 */
int resp_write_submit(router_t *r, const http_limits_t *hl, resp_write_t *w, const char *authz,
                      const char *peer, http_sink_fn sink, void *sink_arg);

#endif
