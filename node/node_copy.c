/*
 * node_copy — copying a shard's sealed segment files from a replica (the
 * design is in node_copy.h).
 *
 * Receiving: list the source's files (COPY_LIST), keep the partitions
 * this engine has no segment of (engine_copy_part_empty), list those again
 * with checksums, fetch the source's series.log prefix and every file of
 * those partitions in 1 MiB chunks into the engine's scratch directory
 * (each chunk's CRC checked on arrival, each file's size and whole-file
 * CRC against the list), then engine_copy_install one partition at a time
 * (it verifies the segment format and every block CRC itself, maps series
 * ids and publishes atomically). A file that disappeared on the source
 * (compaction replaced it: ST_ENOENT) or a partition the engine refuses
 * leaves that partition to the pull repair. Memory: one chunk, plus the
 * source's index while installing.
 *
 * Serving: COPY_LIST is engine_copy_list, COPY_FETCH engine_copy_read of
 * at most NODE_COPY_CHUNK bytes.
 */
#include "node_copy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "st_crc32c.h"
#include "st_file.h"

/* ---- serving ---- */

static engine_t *shard_engine(node_t *n, uint32_t shard, char *msg, size_t msglen)
{
    if (shard >= topo_shards(n->topo) || !n->engines[shard]) {
        snprintf(msg, msglen, "shard %u is not placed on node %s", shard, n->node_id);
        return NULL;
    }
    return n->engines[shard];
}

int node_copy_list_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                       size_t msglen)
{
    Strata__CopyListRequest *q = strata__copy_list_request__unpack(NULL, len, p);
    if (!q) {
        snprintf(msg, msglen, "malformed CopyListRequest");
        return ST_EPROTO;
    }
    int rc = ST_EINVAL;
    engine_seg_file_t *f = NULL;
    size_t nf = 0;
    Strata__CopyFile *cf = NULL, **cfp = NULL;
    engine_t *e = shard_engine(n, q->shard, msg, msglen);
    if (!e)
        goto done;
    uint64_t slog = 0;
    if ((rc = engine_copy_list(e, q->parts, q->n_parts, q->checksums, &f, &nf, &slog))) {
        snprintf(msg, msglen, "shard %u: listing files: %s", q->shard, st_strerror(rc));
        goto done;
    }
    if (nf > NODE_COPY_LIST_MAX) {
        snprintf(msg, msglen, "shard %u has %zu segment files (at most %u a list)", q->shard, nf,
                 NODE_COPY_LIST_MAX);
        rc = ST_ELIMIT;
        goto done;
    }
    cf = calloc(nf ? nf : 1, sizeof *cf);
    cfp = calloc(nf ? nf : 1, sizeof *cfp);
    if (!cf || !cfp) {
        rc = ST_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < nf; i++) {
        strata__copy_file__init(&cf[i]);
        cf[i].part_start = f[i].part_start;
        cf[i].seq_min = f[i].seq_min;
        cf[i].seq_max = f[i].seq_max;
        cf[i].size = f[i].size;
        cf[i].crc = f[i].crc;
        cf[i].sealed = f[i].sealed;
        cfp[i] = &cf[i];
    }
    Strata__CopyListResponse resp = STRATA__COPY_LIST_RESPONSE__INIT;
    resp.files = cfp;
    resp.n_files = nf;
    resp.series_log = slog;
    resp.partition_ms = engine_partition_ms(e);
    size_t sz = strata__copy_list_response__get_packed_size(&resp);
    if ((rc = st_buf_reserve(out, sz)))
        goto done;
    out->len = strata__copy_list_response__pack(&resp, out->data);
done:
    free(f);
    free(cf);
    free(cfp);
    strata__copy_list_request__free_unpacked(q, NULL);
    return rc;
}

static void file_of(const Strata__CopyFile *c, engine_seg_file_t *f)
{
    memset(f, 0, sizeof *f);
    f->part_start = c->part_start;
    f->seq_min = c->seq_min;
    f->seq_max = c->seq_max;
    f->size = c->size;
    f->crc = c->crc;
    f->sealed = c->sealed;
}

int node_copy_fetch_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                        size_t msglen)
{
    Strata__CopyFetchRequest *q = strata__copy_fetch_request__unpack(NULL, len, p);
    if (!q) {
        snprintf(msg, msglen, "malformed CopyFetchRequest");
        return ST_EPROTO;
    }
    int rc = ST_EINVAL;
    uint8_t *buf = NULL;
    engine_t *e = shard_engine(n, q->shard, msg, msglen);
    if (!e)
        goto done;
    size_t cap = q->max_bytes && q->max_bytes < NODE_COPY_CHUNK ? q->max_bytes : NODE_COPY_CHUNK;
    if (!(buf = malloc(cap))) {
        rc = ST_ENOMEM;
        goto done;
    }
    engine_seg_file_t f;
    if (q->file)
        file_of(q->file, &f);
    size_t got = 0;
    if ((rc = engine_copy_read(e, q->file ? &f : NULL, q->limit, q->offset, buf, cap, &got))) {
        if (rc == ST_ENOENT)
            snprintf(msg, msglen, "shard %u: the file is gone (compacted or dropped)", q->shard);
        else
            snprintf(msg, msglen, "shard %u: reading a file: %s", q->shard, st_strerror(rc));
        goto done;
    }
    Strata__CopyFetchResponse resp = STRATA__COPY_FETCH_RESPONSE__INIT;
    resp.data.data = buf;
    resp.data.len = got;
    resp.crc = st_crc32c(0, buf, got);
    size_t sz = strata__copy_fetch_response__get_packed_size(&resp);
    if ((rc = st_buf_reserve(out, sz)))
        goto done;
    out->len = strata__copy_fetch_response__pack(&resp, out->data);
done:
    free(buf);
    strata__copy_fetch_request__free_unpacked(q, NULL);
    return rc;
}

/* ---- tokens ---- */

int node_copy_parts_msg(const Strata__CopyListResponse *r, engine_part_token_t **out, size_t *nout)
{
    engine_seg_file_t *f = malloc((r->n_files ? r->n_files : 1) * sizeof *f);
    if (!f)
        return ST_ENOMEM;
    for (size_t i = 0; i < r->n_files; i++)
        file_of(r->files[i], &f[i]);
    int rc = engine_copy_parts(f, r->n_files, out, nout);
    free(f);
    return rc;
}

/* ---- receiving ---- */

typedef struct copier {
    node_t *n;
    uint32_t shard;
    engine_t *e;
    const node_copy_io_t *io;
    node_copy_result_t *res;
    engine_copy_t *c;
    char *err;
    size_t errlen;
} copier_t;

static int list(copier_t *k, const int64_t *parts, size_t nparts, int checksums,
                Strata__CopyListResponse **out)
{
    Strata__CopyListRequest q = STRATA__COPY_LIST_REQUEST__INIT;
    q.shard = k->shard;
    q.checksums = checksums;
    q.parts = (int64_t *)parts;
    q.n_parts = nparts;
    size_t sz = strata__copy_list_request__get_packed_size(&q);
    uint8_t *b = malloc(sz ? sz : 1);
    if (!b)
        return ST_ENOMEM;
    strata__copy_list_request__pack(&q, b);
    const uint8_t *r;
    size_t rl;
    int rc = k->io->call(k->io->arg, RPC_COPY_LIST, b, sz, &r, &rl, k->err, k->errlen);
    free(b);
    if (rc)
        return rc;
    if (!(*out = strata__copy_list_response__unpack(NULL, rl, r))) {
        snprintf(k->err, k->errlen, "malformed CopyListResponse");
        return ST_EPROTO;
    }
    return 0;
}

/* Fetch file cf (NULL: series.log below limit) into path; the whole
 * file's CRC must be want_crc (when cf). */
static int fetch(copier_t *k, const Strata__CopyFile *cf, uint64_t limit, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(k->err, k->errlen, "cannot create %s: %s", path, strerror(errno));
        return ST_EIO;
    }
    uint64_t off = 0, want = cf ? cf->size : limit;
    uint32_t crc = 0;
    int rc = 0;
    while (!rc && off < want) {
        Strata__CopyFetchRequest q = STRATA__COPY_FETCH_REQUEST__INIT;
        q.shard = k->shard;
        q.file = (Strata__CopyFile *)cf;
        q.offset = off;
        q.max_bytes = NODE_COPY_CHUNK;
        q.limit = limit;
        uint8_t b[256];
        size_t sz = strata__copy_fetch_request__get_packed_size(&q);
        if (sz > sizeof b) {
            rc = ST_ELIMIT;
            break;
        }
        strata__copy_fetch_request__pack(&q, b);
        const uint8_t *r;
        size_t rl;
        if ((rc = k->io->call(k->io->arg, RPC_COPY_FETCH, b, sz, &r, &rl, k->err, k->errlen)))
            break;
        Strata__CopyFetchResponse *a = strata__copy_fetch_response__unpack(NULL, rl, r);
        if (!a || st_crc32c(0, a->data.data, a->data.len) != a->crc || !a->data.len ||
            a->data.len > want - off) {
            snprintf(k->err, k->errlen, "%s",
                     !a ? "malformed CopyFetchResponse" : "a file chunk arrived damaged or short");
            rc = ST_ECORRUPT;
        } else if ((rc = st_pwrite_all(fd, a->data.data, a->data.len, off))) {
            snprintf(k->err, k->errlen, "cannot write %s: %s", path, strerror(errno));
        } else {
            crc = st_crc32c(crc, a->data.data, a->data.len);
            off += a->data.len;
            k->res->bytes += a->data.len;
        }
        if (a)
            strata__copy_fetch_response__free_unpacked(a, NULL);
        if (!rc && k->io->progress && (rc = k->io->progress(k->io->arg, k->res->bytes)))
            snprintf(k->err, k->errlen, "stopped");
    }
    if (!rc && cf && crc != cf->crc) {
        snprintf(k->err, k->errlen,
                 "file %016" PRIx64 "-%016" PRIx64 " of partition %" PRId64 ": CRC mismatch",
                 cf->seq_max, cf->seq_min, cf->part_start);
        rc = ST_ECORRUPT;
    }
    if (close(fd) && !rc)
        rc = ST_EIO;
    return rc;
}

/* Fetch and install the files [i, j) of one partition (ascending seq). */
static int copy_part(copier_t *k, Strata__CopyFile **files, size_t i, size_t j)
{
    size_t nf = j - i;
    char(*paths)[4096] = calloc(nf, sizeof *paths);
    const char **pp = calloc(nf, sizeof *pp);
    int rc = paths && pp ? 0 : ST_ENOMEM;
    int64_t start = files[i]->part_start;
    for (size_t f = 0; f < nf && !rc; f++) {
        char name[32];
        snprintf(name, sizeof name, "%zu.seg", f);
        pp[f] = engine_copy_path(k->c, name, paths[f], sizeof paths[f]);
        rc = fetch(k, files[i + f], 0, paths[f]);
    }
    uint64_t samples = 0;
    if (!rc) {
        rc = engine_copy_install(k->c, start, pp, nf, &samples);
        if (rc)
            snprintf(k->err, k->errlen, "%s", engine_last_error());
    } else {
        for (size_t f = 0; f < nf && pp; f++)
            if (pp[f])
                unlink(pp[f]);
    }
    free(paths);
    free(pp);
    if (rc == 0) {
        k->res->partitions++;
        k->res->files += nf;
        k->res->samples += samples;
        return 0;
    }
    if (rc == ST_ECLOSED || rc == ST_EUNAVAIL || !strcmp(k->err, "stopped"))
        return rc; /* the source went away or we stop: no point going on */
    st_warn("a partition was not copied as files (the pull repair fills it)",
            "shard=%u partition=%" PRId64 " err=\"%s\"", k->shard, start, k->err);
    k->res->refused++;
    k->err[0] = '\0';
    return 0;
}

int node_copy_shard(node_t *n, uint32_t shard, const node_copy_io_t *io,
                    const Strata__CopyListResponse *files, node_copy_result_t *res, char *err,
                    size_t errlen)
{
    memset(res, 0, sizeof *res);
    err[0] = '\0';
    copier_t k = {n, shard, n->engines[shard], io, res, NULL, err, errlen};
    Strata__CopyListResponse *own = NULL, *sums = NULL;
    int64_t *want = NULL;
    size_t nw = 0;
    int rc = 0;
    if (!k.e)
        return ST_EINVAL;
    if (!files) {
        if ((rc = list(&k, NULL, 0, 0, &own)))
            return rc;
        files = own;
    }
    if (files->partition_ms != engine_partition_ms(k.e))
        goto out; /* another partition length: files cannot be installed */
    want = malloc((files->n_files ? files->n_files : 1) * sizeof *want);
    if (!want) {
        rc = ST_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < files->n_files; i++) {
        int64_t s = files->files[i]->part_start;
        if ((nw && want[nw - 1] == s) || !engine_copy_part_empty(k.e, s))
            continue;
        want[nw++] = s;
    }
    if (!nw)
        goto out;
    if ((rc = list(&k, want, nw, 1, &sums)))
        goto out;
    if ((rc = engine_copy_begin(k.e, &k.c))) {
        snprintf(err, errlen, "%s", engine_last_error());
        goto out;
    }
    char slog[4096];
    engine_copy_path(k.c, "series.log", slog, sizeof slog);
    if ((rc = fetch(&k, NULL, sums->series_log, slog)))
        goto out;
    if ((rc = engine_copy_load_series(k.c))) {
        snprintf(err, errlen, "%s", engine_last_error());
        goto out;
    }
    for (size_t i = 0; i < sums->n_files && !rc;) {
        size_t j = i + 1;
        while (j < sums->n_files && sums->files[j]->part_start == sums->files[i]->part_start)
            j++;
        rc = copy_part(&k, sums->files, i, j);
        i = j;
    }
out:
    engine_copy_end(k.c);
    free(want);
    if (own)
        strata__copy_list_response__free_unpacked(own, NULL);
    if (sums)
        strata__copy_list_response__free_unpacked(sums, NULL);
    return rc;
}
