/*
 * router_resp — the RESP door of strata-router (see router_resp.h and
 * docs/resp.md): connections, jobs, the key cache, the command table and
 * the connection commands; the TS.* commands live in router_resp_keys.c,
 * router_resp_add.c and router_resp_read.c (router_resp_int.h).
 *
 * Connections: one libuv TCP handle each, an input buffer parsed with
 * resp_parse() and an output buffer flushed after each batch of pipelined
 * commands. A command that needs the cluster (a "job") makes the
 * connection busy: reading stops (the client's further commands wait in
 * the socket: backpressure, and the parsed arguments, which point into the
 * input buffer, stay valid), and the next command runs when the job has
 * written its reply. Replies are therefore in command order.
 *
 * Jobs: each step is one in-process HTTP request (http_req_local) given to
 * the router's route table; its response body is collected (at most
 * [router] query_max_mb) and the next step runs from a zero timer, never
 * from inside the handler's respond call. Writes skip the route table's
 * text formats: their samples and metadata rows go to the write pipeline
 * as binary items (resp_write.h), answered like an HTTP write.
 *
 * Write batches: the TS.ADD/TS.MADD commands of one pipelined read become
 * one write (replies in command order when it completes; a sample the
 * pipeline rejected answers alone). TS.ADD keys whose settings are not
 * cached are read for the whole pipeline in one export first (prefetch).
 *
 * Keys and series (docs/resp.md): a TS key K is the series
 * {__name__="K"}; its labels and settings live in a metadata series
 * {__name__="__ts_meta__", __ts_key__="K", <labels>, __ts_retention__=...}
 * with one sample (value 1) at the time of the TS.CREATE/ALTER: the newest
 * such series of a key is its current settings. A key spelled as a series
 * (cpu{host="a"}) names that exact series (line protocol, remote write),
 * with no metadata.
 *
 * Security ([security] users_file, tls_cert/tls_key; docs/security.md):
 * AUTH/HELLO AUTH check the users file (the slow hash on the thread
 * pool); the connection's credential then rides on every in-process
 * request as its Authorization header, so the auth gate applies roles and
 * confinement as on HTTP. TLS: a tls_conn_t per connection over memory
 * BIOs, the router's HTTP context, a handshake deadline.
 *
 * Caches: per key, the router remembers the metadata for RESP_META_TTL_MS
 * and the highest timestamp it knows of (to skip the duplicate probe of a
 * TS.ADD past it). TS.CREATE/ALTER/DEL/TS.DEL/FLUSHALL through this router
 * update or forget it at once; another router's changes are seen within
 * RESP_META_TTL_MS. A job pins the entry it holds. TS.INCRBY/DECRBY run
 * one at a time per router.
 */
#include "router_resp_int.h"

/* ---- small helpers ------------------------------------------------------ */

/* ---- the key cache ---------------------------------------------------------- */

/* ---- connections: output -------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    rconn_t *c;
    size_t len;
    char data[];
} wreq_t;

static void conn_close(rconn_t *c);
static void conn_run(rconn_t *c);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void on_conn_closed(uv_handle_t *h)
{
    rconn_t *c = h->data;
    router_resp_t *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    metric_gauge_set(s->m_open, (double)s->nconns);
    st_buf_deinit(&c->in);
    st_buf_deinit(&c->out);
    free(c->argv);
    rresp_conn_forget_auth(c);
    tls_conn_destroy(c->tls);
    free(c);
}

static void hs_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void hs_timer_stop(rconn_t *c)
{
    if (c->hs_timer) {
        uv_close((uv_handle_t *)c->hs_timer, hs_timer_closed);
        c->hs_timer = NULL;
    }
}

/* Free the connection once nothing refers to it (no job, no write). */
static void conn_maybe_free(rconn_t *c)
{
    if (c->dead && !c->busy && c->nwrites == 0 && !c->uv_closing) {
        c->uv_closing = 1;
        hs_timer_stop(c);
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    }
}

static void conn_close(rconn_t *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (c->batch)
        rresp_batch_submit(c); /* its job ends the usual way, then the connection goes */
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    conn_maybe_free(c);
}

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    rconn_t *c = wr->c;
    c->wq -= wr->len;
    c->nwrites--;
    free(wr);
    if (status < 0) {
        conn_close(c);
        conn_maybe_free(c);
        return;
    }
    if (c->dead) {
        conn_maybe_free(c);
        return;
    }
    if (c->closing && c->nwrites == 0) {
        conn_close(c);
        return;
    }
    if (c->wq < RESP_OUT_HIGH / 2)
        conn_run(c);
}

/* Queue bytes for the socket as they are (ciphertext on a TLS connection). */
static void conn_write_raw(rconn_t *c, const void *data, size_t len)
{
    if (len == 0 || c->dead)
        return;
    wreq_t *wr = malloc(sizeof *wr + len);
    if (!wr) {
        conn_close(c);
        return;
    }
    memcpy(wr->data, data, len);
    wr->c = c;
    wr->len = len;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(wr);
        conn_close(c);
        return;
    }
    c->wq += wr->len;
    c->nwrites++;
}

/* Send what the TLS session has for the peer (handshake, records, alerts). */
static void conn_tls_send(rconn_t *c)
{
    if (!c->tls || tls_conn_out_pending(c->tls) == 0)
        return;
    st_buf_t t;
    st_buf_init(&t);
    if (tls_conn_take(c->tls, &t) == 0)
        conn_write_raw(c, t.data, t.len);
    else
        conn_close(c);
    st_buf_deinit(&t);
}

static void conn_flush(rconn_t *c)
{
    if (c->out.len == 0 || c->dead)
        return;
    if (c->tls) {
        int rc = tls_conn_write(c->tls, c->out.data, c->out.len);
        c->out.len = 0;
        if (rc) {
            conn_close(c);
            return;
        }
        conn_tls_send(c);
        return;
    }
    conn_write_raw(c, c->out.data, c->out.len);
    c->out.len = 0;
}

/* ---- jobs ---------------------------------------------------------------------- */

/* ---- the command table ----------------------------------------------------------- */

static const cmd_t commands[];
static const size_t ncommands;

/* A job ended (router_resp_job.c): free a dead connection, or run its next
 * command. */
static void job_done(rconn_t *c)
{
    if (c->dead)
        conn_maybe_free(c);
    else
        conn_run(c);
}
static const cmd_t *find_cmd(const resp_arg_t *a);

/* ---- connection commands ----------------------------------------------------------- */

static void cmd_ping(rconn_t *c)
{
    if (c->argc > 2)
        return rresp_wrong_args(c, "ping");
    if (c->argc == 2)
        resp_bulk(&c->out, c->argv[1].p, c->argv[1].len);
    else
        resp_simple(&c->out, "PONG");
}

static void cmd_echo(rconn_t *c)
{
    resp_bulk(&c->out, c->argv[1].p, c->argv[1].len);
}

static void hello_reply(rconn_t *c)
{
    st_buf_t *o = &c->out;
    resp_map(o, c->proto, 7);
    resp_bulk_str(o, "server");
    resp_bulk_str(o, "strata");
    resp_bulk_str(o, "version");
    resp_bulk_str(o, STRATA_VERSION);
    resp_bulk_str(o, "proto");
    resp_int(o, c->proto);
    resp_bulk_str(o, "id");
    resp_int(o, (int64_t)c->id);
    resp_bulk_str(o, "mode");
    resp_bulk_str(o, "standalone");
    resp_bulk_str(o, "role");
    resp_bulk_str(o, "master");
    resp_bulk_str(o, "modules");
    resp_array(o, 1);
    resp_map(o, c->proto, 2);
    resp_bulk_str(o, "name");
    resp_bulk_str(o, "timeseries");
    resp_bulk_str(o, "ver");
    resp_int(o, 10000);
}

/* ---- AUTH ---------------------------------------------------------------
 * With [security] users_file, a connection runs nothing but AUTH, HELLO
 * ... AUTH, QUIT and RESET until it authenticates (-NOAUTH). AUTH checks
 * the password or token with the auth library (the slow hash on the
 * thread pool, never on the loop; at most AUTH_GATE_MAX_SLOW at once);
 * then every command's in-process HTTP requests carry the credential
 * (Bearer token, or Basic user:password: the gate has just cached the
 * password, so it is not hashed again), and the auth gate enforces roles
 * and selector confinement exactly as on HTTP. */

typedef struct authwork {
    uv_work_t w;
    job_t *job;
    const auth_user_t *u;
    char user[AUTH_NAME_MAX + 1];
    char pw[AUTH_SECRET_MAX + 1];
    size_t len;
    int ok;
    int proto;      /* HELLO: the protocol asked for (0: plain AUTH) */
    size_t setname; /* HELLO: argv index of SETNAME's value (0: none) */
} authwork_t;

static void authwork_free(void *p)
{
    authwork_t *a = p;
    volatile char *q = a->pw;
    for (size_t i = 0; i < sizeof a->pw; i++)
        q[i] = 0;
    free(a);
}

static int conn_needs_auth(const rconn_t *c)
{
    return !c->authed && auth_gate_enabled(c->s->r->auth);
}

static int b64_put(st_buf_t *b, const unsigned char *p, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char q[4] = {al[v >> 18], al[(v >> 12) & 63], i + 1 < n ? al[(v >> 6) & 63] : '=',
                     i + 2 < n ? al[v & 63] : '='};
        if (st_buf_append(b, q, 4))
            return ST_ENOMEM;
    }
    return 0;
}

static void hello_reply(rconn_t *c);

static void auth_wrongpass_late(job_t *j)
{
    j->c->auth_delay = NULL;
    resp_error(&j->c->out, RESP_WRONGPASS);
    rresp_job_end(j);
}

/* -WRONGPASS, counted and logged without secrets. The failure goes into
 * the auth gate's per-address table (shared with HTTP and PostgreSQL): an
 * address with recent failures at any door gets its answer late, the
 * connection held busy on a job whose timer writes it. j: the command's
 * job if it has one (it ends here, now or after the delay), else NULL. */
static void auth_failed(rconn_t *c, job_t *j, const char *user, const char *why)
{
    metric_counter_inc(c->s->m_auth_fail);
    uint64_t delay = c->s->closing ? 0 : auth_gate_note_failure(c->s->r->auth, c->peer);
    st_warn("RESP authentication failed", "reason=%s remote=%s user=%s delay_ms=%llu", why, c->peer,
            user && *user ? user : "-", (unsigned long long)delay);
    if (delay && !j)
        j = rresp_job_new(c); /* NULL: answered at once */
    if (delay && j) {
        metric_counter_inc(c->s->m_auth_delayed);
        c->auth_delay = j;
        j->next = auth_wrongpass_late;
        uv_timer_start(&j->timer, rresp_on_job_timer, delay, 0);
        return;
    }
    resp_error(&c->out, RESP_WRONGPASS);
    if (j)
        rresp_job_end(j);
}

/* The credential passed: remember it for the connection's requests and
 * answer AUTH (+OK) or HELLO (its map). */
static void auth_passed(rconn_t *c, const auth_user_t *u, const authwork_t *a, int token)
{
    rresp_conn_forget_auth(c);
    st_buf_t h;
    st_buf_init(&h);
    int rc;
    if (token) {
        rc = st_buf_append(&h, "Bearer ", 7);
        if (!rc)
            rc = st_buf_append(&h, a->pw, a->len);
    } else {
        st_buf_t pair;
        st_buf_init(&pair);
        rc = st_buf_append(&h, "Basic ", 6);
        if (!rc)
            rc = st_buf_append(&pair, a->user, strlen(a->user));
        if (!rc)
            rc = st_buf_put_u8(&pair, ':');
        if (!rc)
            rc = st_buf_append(&pair, a->pw, a->len);
        if (!rc)
            rc = b64_put(&h, pair.data, pair.len);
        if (pair.data)
            memset(pair.data, 0, pair.cap);
        st_buf_deinit(&pair);
    }
    if (!rc)
        rc = st_buf_put_u8(&h, 0);
    if (rc) {
        if (h.data)
            memset(h.data, 0, h.cap);
        st_buf_deinit(&h);
        resp_error(&c->out, "ERR out of memory");
        return;
    }
    c->authz = (char *)h.data; /* handed over: freed by rresp_conn_forget_auth */
    c->authed = 1;
    snprintf(c->user, sizeof c->user, "%s", auth_user_name(u));
    if (!a->proto) {
        resp_simple(&c->out, "OK");
        return;
    }
    c->proto = a->proto;
    if (a->setname) {
        const resp_arg_t *n = &c->argv[a->setname];
        size_t l = n->len < RESP_NAME_MAX - 1 ? n->len : RESP_NAME_MAX - 1;
        memcpy(c->name, n->p, l);
        c->name[l] = 0;
    }
    hello_reply(c);
}

static void auth_slow_work(uv_work_t *w)
{
    authwork_t *a = w->data;
    a->ok = auth_password_slow(a->u, a->pw, a->len) == 1 && a->u != NULL;
}

static void auth_slow_after(uv_work_t *w, int status)
{
    authwork_t *a = w->data;
    job_t *job = a->job;
    rconn_t *c = job->c;
    c->s->auth_slow--;
    /* the users may have been reloaded meanwhile: check the name again */
    const auth_user_t *now = auth_db_find(auth_gate_db(c->s->r->auth), a->user);
    if (status == 0 && a->ok && now == a->u) {
        auth_password_remember(a->u, a->pw, a->len);
        auth_passed(c, a->u, a, 0);
        rresp_job_end(job);
    } else {
        auth_failed(c, job, a->user, "bad_credentials");
    }
}

/* AUTH [user] password, or HELLO proto AUTH user password [SETNAME n]. */
static void auth_start(rconn_t *c, const resp_arg_t *user, const resp_arg_t *pw, int proto,
                       size_t setname)
{
    auth_gate_t *g = c->s->r->auth;
    if (!auth_gate_enabled(g)) {
        resp_error(&c->out, "ERR AUTH <password> called without any password configured for the "
                            "default user. Are you sure your configuration is correct?");
        return;
    }
    authwork_t *a = calloc(1, sizeof *a);
    if (!a) {
        resp_error(&c->out, "ERR out of memory");
        return;
    }
    a->proto = proto;
    a->setname = setname;
    if (user && user->len > AUTH_NAME_MAX) {
        authwork_free(a);
        auth_failed(c, NULL, NULL, "malformed");
        return;
    }
    snprintf(a->user, sizeof a->user, "%.*s", user ? (int)user->len : 7,
             user ? user->p : "default");
    if (pw->len > AUTH_SECRET_MAX) {
        auth_failed(c, NULL, a->user, "malformed");
        authwork_free(a);
        return;
    }
    memcpy(a->pw, pw->p, pw->len);
    a->len = pw->len;
    auth_db_t *db = (auth_db_t *)auth_gate_db(g);
    const auth_user_t *u = NULL;
    if (a->len >= 3 && memcmp(a->pw, AUTH_TOKEN_PREFIX, 3) == 0) {
        if (auth_check_token(db, a->pw, a->len, &u) == AUTH_OK)
            auth_passed(c, u, a, 1);
        else
            auth_failed(c, NULL, a->user, "bad_token");
        authwork_free(a);
        return;
    }
    int r = auth_password_begin(db, a->user, a->pw, a->len, &u);
    if (r == AUTH_OK) {
        auth_passed(c, u, a, 0);
        authwork_free(a);
        return;
    }
    if (r != AUTH_SLOW) {
        auth_failed(c, NULL, a->user, auth_result_name((auth_result_t)r));
        authwork_free(a);
        return;
    }
    if (c->s->auth_slow >= AUTH_GATE_MAX_SLOW) {
        metric_counter_inc(c->s->m_errors);
        resp_error(&c->out, "ERR too many authentications in progress, try again");
        authwork_free(a);
        return;
    }
    job_t *j = rresp_job_new(c);
    if (!j) {
        authwork_free(a);
        rresp_fatal_oom(c);
        c->busy = 0;
        return;
    }
    a->u = u; /* NULL (no such user) still does the same work, then fails */
    j->ctx = a;
    j->ctx_free = authwork_free;
    a->w.data = a;
    a->job = j;
    if (uv_queue_work(c->s->r->loop, &a->w, auth_slow_work, auth_slow_after) != 0) {
        resp_error(&c->out, "ERR cannot check the password now");
        rresp_job_end(j);
        return;
    }
    c->s->auth_slow++;
}

static void cmd_hello(rconn_t *c)
{
    size_t i = 1, setname = 0;
    const resp_arg_t *user = NULL, *pw = NULL;
    int proto = c->proto;
    if (c->argc >= 2) {
        int64_t v;
        if (resp_parse_int(&c->argv[1], &v) || (v != 2 && v != 3)) {
            resp_error(&c->out, "NOPROTO unsupported protocol version");
            return;
        }
        proto = (int)v;
        i = 2;
    }
    while (i < c->argc) {
        if (resp_arg_is(&c->argv[i], "AUTH") && i + 2 < c->argc) {
            user = &c->argv[i + 1];
            pw = &c->argv[i + 2];
            i += 3;
        } else if (resp_arg_is(&c->argv[i], "SETNAME") && i + 1 < c->argc) {
            setname = i + 1;
            i += 2;
        } else {
            resp_errorf(&c->out, "ERR Syntax error in HELLO option '%.*s'",
                        (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len), c->argv[i].p);
            return;
        }
    }
    if (pw) {
        auth_start(c, user, pw, proto, setname);
        return;
    }
    if (conn_needs_auth(c)) {
        resp_error(&c->out, "NOAUTH HELLO must be called with the client already authenticated, "
                            "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                            "authenticate the client and select the RESP protocol version at the "
                            "same time");
        return;
    }
    c->proto = proto;
    if (setname) {
        const resp_arg_t *n = &c->argv[setname];
        size_t l = n->len < RESP_NAME_MAX - 1 ? n->len : RESP_NAME_MAX - 1;
        memcpy(c->name, n->p, l);
        c->name[l] = 0;
    }
    hello_reply(c);
}

static void cmd_auth(rconn_t *c)
{
    if (c->argc > 3)
        return rresp_wrong_args(c, "auth");
    auth_start(c, c->argc == 3 ? &c->argv[1] : NULL, &c->argv[c->argc - 1], 0, 0);
}

static void cmd_client(rconn_t *c)
{
    const resp_arg_t *sub = &c->argv[1];
    if (resp_arg_is(sub, "SETNAME") && c->argc == 3) {
        for (size_t i = 0; i < c->argv[2].len; i++)
            if (c->argv[2].p[i] == ' ' || c->argv[2].p[i] == '\n') {
                resp_error(&c->out, "ERR Client names cannot contain spaces, newlines or special "
                                    "characters.");
                return;
            }
        size_t n = c->argv[2].len < RESP_NAME_MAX - 1 ? c->argv[2].len : RESP_NAME_MAX - 1;
        memcpy(c->name, c->argv[2].p, n);
        c->name[n] = 0;
        resp_simple(&c->out, "OK");
    } else if (resp_arg_is(sub, "GETNAME") && c->argc == 2) {
        if (c->name[0])
            resp_bulk_str(&c->out, c->name);
        else
            resp_null(&c->out, c->proto);
    } else if (resp_arg_is(sub, "ID") && c->argc == 2) {
        resp_int(&c->out, (int64_t)c->id);
    } else if (resp_arg_is(sub, "SETINFO") && c->argc == 4) {
        resp_simple(&c->out, "OK");
    } else {
        resp_errorf(&c->out, "ERR unknown subcommand or wrong number of arguments for '%.*s'",
                    (int)(sub->len > 32 ? 32 : sub->len), sub->p);
    }
}

static void cmd_select(rconn_t *c)
{
    int64_t db;
    if (resp_parse_int(&c->argv[1], &db))
        resp_error(&c->out, "ERR value is not an integer or out of range");
    else if (db != 0)
        resp_error(&c->out, "ERR DB index is out of range (Strata has one database: 0)");
    else
        resp_simple(&c->out, "OK");
}

static void cmd_quit(rconn_t *c)
{
    resp_simple(&c->out, "OK");
    c->closing = 1;
}

static void cmd_reset(rconn_t *c)
{
    rresp_conn_forget_auth(c);
    c->proto = 2;
    c->name[0] = 0;
    resp_simple(&c->out, "RESET");
}

static void command_entry(rconn_t *c, const cmd_t *k)
{
    st_buf_t *o = &c->out;
    char name[64];
    size_t n = strlen(k->name);
    for (size_t i = 0; i <= n && i < sizeof name; i++)
        name[i] = (char)((k->name[i] >= 'A' && k->name[i] <= 'Z') ? k->name[i] + 32 : k->name[i]);
    resp_array(o, 6);
    resp_bulk_str(o, name);
    resp_int(o, k->arity);
    int nf = !!(k->flags & CF_WRITE) + !!(k->flags & CF_READ) + !!(k->flags & CF_FAST);
    resp_set(o, c->proto, (size_t)nf);
    if (k->flags & CF_WRITE)
        resp_simple(o, "write");
    if (k->flags & CF_READ)
        resp_simple(o, "readonly");
    if (k->flags & CF_FAST)
        resp_simple(o, "fast");
    resp_int(o, k->first_key);
    resp_int(o, k->last_key);
    resp_int(o, k->step);
}

static const cmd_t *find_cmd(const resp_arg_t *a)
{
    for (size_t i = 0; i < ncommands; i++)
        if (resp_arg_is(a, commands[i].name))
            return &commands[i];
    return NULL;
}

static void cmd_command(rconn_t *c)
{
    st_buf_t *o = &c->out;
    if (c->argc == 1) {
        resp_array(o, ncommands);
        for (size_t i = 0; i < ncommands; i++)
            command_entry(c, &commands[i]);
        return;
    }
    const resp_arg_t *sub = &c->argv[1];
    if (resp_arg_is(sub, "COUNT")) {
        resp_int(o, (int64_t)ncommands);
    } else if (resp_arg_is(sub, "INFO")) {
        resp_array(o, c->argc - 2);
        for (size_t i = 2; i < c->argc; i++) {
            const cmd_t *k = find_cmd(&c->argv[i]);
            if (k)
                command_entry(c, k);
            else
                resp_null_array(o, c->proto);
        }
    } else if (resp_arg_is(sub, "DOCS")) {
        size_t n = 0;
        const cmd_t *sel[256];
        if (c->argc == 2)
            for (size_t i = 0; i < ncommands && n < 256; i++)
                sel[n++] = &commands[i];
        for (size_t i = 2; i < c->argc && n < 256; i++) {
            const cmd_t *k = find_cmd(&c->argv[i]);
            if (k)
                sel[n++] = k;
        }
        resp_map(o, c->proto, n);
        for (size_t i = 0; i < n; i++) {
            char name[64];
            size_t l = strlen(sel[i]->name);
            for (size_t q = 0; q <= l && q < sizeof name; q++)
                name[q] =
                    (char)((sel[i]->name[q] >= 'A' && sel[i]->name[q] <= 'Z') ? sel[i]->name[q] + 32
                                                                              : sel[i]->name[q]);
            resp_bulk_str(o, name);
            resp_map(o, c->proto, 4);
            resp_bulk_str(o, "summary");
            resp_bulk_str(o, sel[i]->summary);
            resp_bulk_str(o, "since");
            resp_bulk_str(o, "1.0.0");
            resp_bulk_str(o, "group");
            resp_bulk_str(o, strncmp(sel[i]->name, "TS.", 3) == 0 ? "module" : "connection");
            resp_bulk_str(o, "syntax");
            resp_bulk_str(o, sel[i]->args);
        }
    } else if (resp_arg_is(sub, "LIST")) {
        resp_array(o, ncommands);
        for (size_t i = 0; i < ncommands; i++)
            resp_bulk_str(o, commands[i].name);
    } else {
        resp_errorf(o, "ERR unknown subcommand '%.*s'", (int)(sub->len > 32 ? 32 : sub->len),
                    sub->p);
    }
}

static void cmd_info(rconn_t *c)
{
    router_resp_t *s = c->s;
    char t[1024];
    int n =
        snprintf(t, sizeof t,
                 "# Server\r\nredis_version:7.2.0\r\nstrata_version:%s\r\nredis_mode:standalone\r\n"
                 "tcp_port:%d\r\n\r\n# Clients\r\nconnected_clients:%zu\r\n\r\n"
                 "# Modules\r\nmodule:name=timeseries,ver=10000\r\n\r\n# Keyspace\r\n"
                 "db0:keys=%zu,expires=0\r\n",
                 STRATA_VERSION, s->port, s->nconns, s->nent);
    resp_bulk(&c->out, t, (size_t)n);
}

/* ---- the table -------------------------------------------------------------------- */

static const cmd_t commands[] = {
    {"PING", -1, CF_FAST | CF_CONN, cmd_ping, 0, 0, 0, "Ping the server.", "PING [message]"},
    {"ECHO", 2, CF_FAST | CF_CONN, cmd_echo, 0, 0, 0, "Return the message.", "ECHO message"},
    {"HELLO", -1, CF_FAST | CF_CONN, cmd_hello, 0, 0, 0, "Handshake: protocol 2 or 3.",
     "HELLO [protover [AUTH username password] [SETNAME clientname]]"},
    {"AUTH", -2, CF_FAST | CF_CONN, cmd_auth, 0, 0, 0, "Authenticate the connection.",
     "AUTH [username] password"},
    {"CLIENT", -2, CF_CONN, cmd_client, 0, 0, 0, "Connection name and id.",
     "CLIENT SETNAME name | GETNAME | ID | SETINFO attr value"},
    {"SELECT", 2, CF_FAST | CF_CONN, cmd_select, 0, 0, 0, "Select database 0 (the only one).",
     "SELECT 0"},
    {"COMMAND", -1, CF_CONN, cmd_command, 0, 0, 0, "The command table.",
     "COMMAND [COUNT | INFO name... | DOCS [name...] | LIST]"},
    {"INFO", -1, CF_CONN, cmd_info, 0, 0, 0, "Server and keyspace information.", "INFO [section]"},
    {"QUIT", 1, CF_FAST | CF_CONN, cmd_quit, 0, 0, 0, "Close the connection.", "QUIT"},
    {"RESET", 1, CF_FAST | CF_CONN, cmd_reset, 0, 0, 0, "Reset the connection state.", "RESET"},
    {"DEL", -2, CF_WRITE, rresp_cmd_del, 1, -1, 1, "Delete series.", "DEL key [key ...]"},
    {"EXISTS", -2, CF_READ, rresp_cmd_exists, 1, -1, 1, "Count the keys that exist.",
     "EXISTS key [key ...]"},
    {"TYPE", 2, CF_READ, rresp_cmd_type, 1, 1, 1, "The type of a key.", "TYPE key"},
    {"KEYS", 2, CF_READ, rresp_cmd_keys, 0, 0, 0, "Keys matching a glob pattern.", "KEYS pattern"},
    {"SCAN", -2, CF_READ, rresp_cmd_scan, 0, 0, 0, "Keys matching a pattern, in one pass.",
     "SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]"},
    {"FLUSHALL", -1, CF_WRITE, rresp_cmd_flushall, 0, 0, 0, "Delete every series (when enabled).",
     "FLUSHALL [ASYNC | SYNC]"},
    {"TS.CREATE", -2, CF_WRITE, rresp_cmd_create, 1, 1, 1, "Create a time series.",
     "TS.CREATE key [RETENTION ms] [ENCODING COMPRESSED|UNCOMPRESSED] [CHUNK_SIZE size] "
     "[DUPLICATE_POLICY policy] [IGNORE maxTimeDiff maxValDiff] [LABELS label value ...]"},
    {"TS.ALTER", -2, CF_WRITE, rresp_cmd_alter, 1, 1, 1,
     "Change a time series' settings and labels.",
     "TS.ALTER key [RETENTION ms] [CHUNK_SIZE size] [DUPLICATE_POLICY policy] "
     "[IGNORE maxTimeDiff maxValDiff] [LABELS label value ...]"},
    {"TS.ADD", -4, CF_WRITE, rresp_cmd_add, 1, 1, 1, "Append a sample.",
     "TS.ADD key timestamp|* value [RETENTION ms] [ENCODING enc] [CHUNK_SIZE size] "
     "[DUPLICATE_POLICY policy] [ON_DUPLICATE policy] [IGNORE t v] [LABELS label value ...]"},
    {"TS.MADD", -4, CF_WRITE, rresp_cmd_madd, 1, -1, 3, "Append samples to several series.",
     "TS.MADD key timestamp value [key timestamp value ...]"},
    {"TS.INCRBY", -3, CF_WRITE, rresp_cmd_incrby, 1, 1, 1, "Add to the newest value.",
     "TS.INCRBY key addend [TIMESTAMP ts] [RETENTION ms] [UNCOMPRESSED] [CHUNK_SIZE size] "
     "[IGNORE t v] [LABELS label value ...]"},
    {"TS.DECRBY", -3, CF_WRITE, rresp_cmd_decrby, 1, 1, 1, "Subtract from the newest value.",
     "TS.DECRBY key subtrahend [TIMESTAMP ts] [RETENTION ms] [UNCOMPRESSED] [CHUNK_SIZE size] "
     "[IGNORE t v] [LABELS label value ...]"},
    {"TS.DEL", 4, CF_WRITE, rresp_cmd_ts_del, 1, 1, 1, "Delete samples in a range.",
     "TS.DEL key fromTimestamp toTimestamp"},
    {"TS.CREATERULE", -6, CF_WRITE, rresp_cmd_createrule, 1, 2, 1, "Create a compaction rule.",
     "TS.CREATERULE sourceKey destKey AGGREGATION aggregator bucketDuration [alignTimestamp]"},
    {"TS.DELETERULE", 3, CF_WRITE, rresp_cmd_deleterule, 1, 2, 1, "Delete a compaction rule.",
     "TS.DELETERULE sourceKey destKey"},
    {"TS.GET", -2, CF_READ, rresp_cmd_get, 1, 1, 1, "The newest sample.", "TS.GET key [LATEST]"},
    {"TS.MGET", -3, CF_READ, rresp_cmd_mget, 0, 0, 0, "The newest sample of each matching series.",
     "TS.MGET [LATEST] [WITHLABELS | SELECTED_LABELS label...] FILTER filterExpr..."},
    {"TS.RANGE", -4, CF_READ, rresp_cmd_range, 1, 1, 1, "Samples in a range.",
     "TS.RANGE key from to [LATEST] [FILTER_BY_TS ts...] [FILTER_BY_VALUE min max] [COUNT n] "
     "[[ALIGN align] AGGREGATION aggregator bucketDuration [BUCKETTIMESTAMP bt] [EMPTY]]"},
    {"TS.REVRANGE", -4, CF_READ, rresp_cmd_revrange, 1, 1, 1, "Samples in a range, newest first.",
     "TS.REVRANGE key from to [options as TS.RANGE]"},
    {"TS.MRANGE", -5, CF_READ, rresp_cmd_mrange, 0, 0, 0, "Samples in a range of matching series.",
     "TS.MRANGE from to [options as TS.RANGE] [WITHLABELS | SELECTED_LABELS label...] "
     "FILTER filterExpr... [GROUPBY label REDUCE reducer]"},
    {"TS.MREVRANGE", -5, CF_READ, rresp_cmd_mrevrange, 0, 0, 0,
     "Samples in a range of matching series, newest first.",
     "TS.MREVRANGE from to [options as TS.MRANGE]"},
    {"TS.JOIN", -5, CF_READ, rresp_cmd_join, 1, 2, 1, "Join two series on their timestamps.",
     "TS.JOIN left right from to [INNER | FULL | LEFT [EXCLUSIVE] | RIGHT [EXCLUSIVE] | ANTI | "
     "SEMI | ASOF [PREVIOUS | NEXT | NEAREST] [tolerance] [ALLOW_EXACT_MATCH bool]] "
     "[FILTER_BY_TS ts...] [FILTER_BY_VALUE min max] [COUNT n] [REDUCE op]"},
    {"TS.QUERYINDEX", -2, CF_READ, rresp_cmd_queryindex, 0, 0, 0, "Keys matching filters.",
     "TS.QUERYINDEX filterExpr..."},
    {"TS.CARD", -1, CF_READ, rresp_cmd_card, 0, 0, 0, "Number of matching series.",
     "TS.CARD [FILTER filterExpr...]"},
    {"TS.LABELNAMES", -1, CF_READ, rresp_cmd_labelnames, 0, 0, 0, "Label names of matching series.",
     "TS.LABELNAMES [FILTER filterExpr...]"},
    {"TS.LABELVALUES", -2, CF_READ, rresp_cmd_labelvalues, 0, 0, 0, "Values of a label.",
     "TS.LABELVALUES label [FILTER filterExpr...]"},
    {"TS.INFO", -2, CF_READ, rresp_cmd_tsinfo, 1, 1, 1, "A series' settings and statistics.",
     "TS.INFO key [DEBUG]"},
    {"TS.STATS", -1, CF_READ, rresp_cmd_stats, 0, 0, 0, "Keyspace statistics.", "TS.STATS"},
};
static const size_t ncommands = sizeof commands / sizeof commands[0];

/* ---- metadata prefetch for pipelined TS.ADD ------------------------------------ */

/* A pipelined TS.ADD whose key's settings are not cached would run alone
 * (a metadata read, then its write) and hold up the commands after it.
 * Instead, the TS.ADD keys without fresh settings in the connection's
 * buffered input (at most RESP_PREFETCH_KEYS) are read in one metadata
 * export; the commands then join write batches. A prefetch that fails
 * changes nothing: the commands take the one-by-one path, which answers
 * the errors. */
#define RESP_PREFETCH_KEYS 1024
#define RESP_PREFETCH_ARGS 64 /* commands with more arguments end the scan */

typedef struct pfetch {
    char **keys;
    size_t n;
    uint64_t gen;
} pfetch_t;

static void pfetch_free(void *p)
{
    pfetch_t *f = p;
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->keys[i]);
    free(f->keys);
    free(f);
}

static void prefetch_done(job_t *j)
{
    pfetch_t *f = j->ctx;
    xset_t x = {0};
    char err[256];
    if (j->status == 200 && !j->missing[0] && !rresp_parse_export(&j->body, &x, err, sizeof err)) {
        /* every key asked for: no settings, unless a series below says so */
        for (size_t i = 0; i < f->n; i++) {
            ent_t *e = rresp_cache_get(j->s, f->keys[i], strlen(f->keys[i]), 1);
            if (e) {
                rresp_meta_fill(e, NULL, 0);
                e->pf_gen = f->gen;
            }
        }
        for (size_t i = 0; i < x.n; i++) {
            const char *k = rresp_kv_get(x.v[i].kv, x.v[i].nl, RESP_TS_KEY_LABEL);
            ent_t *e = k ? rresp_cache_get(j->s, k, strlen(k), 0) : NULL;
            if (!e || e->pf_gen != f->gen || x.v[i].s.n == 0)
                continue;
            int64_t t = x.v[i].s.ts[x.v[i].s.n - 1];
            if (!e->exists || t >= e->meta_ts)
                rresp_meta_fill(e, &x.v[i], t);
        }
    }
    rresp_xset_free(&x);
    rresp_job_end(j);
}

/* The TS.ADD keys from the buffered input at c->in_off on whose settings
 * are not cached, read in one export (the connection waits). Returns 1
 * when started, 0 when there is nothing to read. */
static int prefetch_start(rconn_t *c)
{
    router_resp_t *s = c->s;
    resp_arg_t av[RESP_PREFETCH_ARGS];
    size_t off = c->in_off, argc, used;
    const char *msg;
    pfetch_t *f = calloc(1, sizeof *f);
    if (f)
        f->keys = calloc(RESP_PREFETCH_KEYS, sizeof *f->keys);
    if (!f || !f->keys) {
        pfetch_free(f);
        return 0;
    }
    f->gen = ++s->pf_gen;
    while (f->n < RESP_PREFETCH_KEYS &&
           resp_parse((const char *)c->in.data + off, c->in.len - off, av, RESP_PREFETCH_ARGS,
                      &argc, &used, &msg) == RESP_CMD) {
        off += used;
        if (argc < 4 || av[0].len != 6 || strncasecmp(av[0].p, "TS.ADD", 6) != 0)
            continue;
        const resp_arg_t *k = &av[1];
        if (k->len == 0 || memchr(k->p, 0, k->len) || rresp_key_is_series(k))
            continue;
        ent_t *e = rresp_cache_get(s, k->p, k->len, 1);
        if (!e || rresp_ent_fresh(s, e) || e->pf_gen == f->gen)
            continue;
        e->pf_gen = f->gen;
        if (!(f->keys[f->n] = rresp_dupn(k->p, k->len)))
            break;
        f->n++;
    }
    c->pf_end = off;
    st_buf_t bufs[RESP_SEL_MAX];
    size_t ns = 0;
    if (!f->n || rresp_key_selectors(bufs, RESP_SEL_MAX, &ns, "__name__", RESP_TS_META_NAME,
                                     RESP_TS_KEY_LABEL, f->keys, f->n)) {
        rresp_bufs_free(bufs, ns);
        pfetch_free(f);
        return 0;
    }
    job_t *j = rresp_job_new(c);
    if (!j) {
        rresp_bufs_free(bufs, ns);
        pfetch_free(f);
        return 0;
    }
    j->ctx = f;
    j->ctx_free = pfetch_free;
    const char *sels[RESP_SEL_MAX] = {0};
    for (size_t i = 0; i < ns; i++)
        sels[i] = (const char *)bufs[i].data;
    j->partial = 1;
    metric_counter_inc(s->m_prefetch);
    rresp_job_export(j, sels, ns, 0, INT64_MAX, prefetch_done);
    rresp_bufs_free(bufs, ns);
    return 1;
}

/* ---- dispatch and input ---------------------------------------------------------- */

static void dispatch(rconn_t *c)
{
    router_resp_t *s = c->s;
    const cmd_t *k = find_cmd(&c->argv[0]);
    if (!k) {
        metric_counter_inc(s->m_cmds_other);
        metric_counter_inc(s->m_errors);
        resp_errorf(&c->out, "ERR unknown command '%.*s', with args beginning with: ",
                    (int)(c->argv[0].len > 64 ? 64 : c->argv[0].len), c->argv[0].p);
        return;
    }
    metric_counter_inc(s->m_cmd[k - commands]);
    if (conn_needs_auth(c) && k->fn != cmd_auth && k->fn != cmd_hello && k->fn != cmd_quit &&
        k->fn != cmd_reset) {
        metric_counter_inc(s->m_errors);
        resp_error(&c->out, RESP_NOAUTH);
        return;
    }
    if ((k->arity > 0 && c->argc != (size_t)k->arity) ||
        (k->arity < 0 && c->argc < (size_t)-k->arity)) {
        metric_counter_inc(s->m_errors);
        char low[64];
        size_t n = strlen(k->name);
        for (size_t i = 0; i <= n && i < sizeof low; i++)
            low[i] =
                (char)((k->name[i] >= 'A' && k->name[i] <= 'Z') ? k->name[i] + 32 : k->name[i]);
        rresp_wrong_args(c, low);
        return;
    }
    size_t before = c->out.len;
    k->fn(c);
    if (!c->busy && c->out.len > before && c->out.data[before] == '-')
        metric_counter_inc(s->m_errors);
}

static void conn_run(rconn_t *c)
{
    while (!c->busy && !c->closing && !c->dead && c->wq < RESP_OUT_HIGH) {
        if (!c->argv) {
            c->argcap = 1024;
            c->argv = malloc(c->argcap * sizeof *c->argv);
            if (!c->argv) {
                conn_close(c);
                return;
            }
        }
        size_t argc, used;
        const char *msg;
        int r = resp_parse((const char *)c->in.data + c->in_off, c->in.len - c->in_off, c->argv,
                           c->argcap, &argc, &used, &msg);
        if (r == RESP_ERROR && c->argcap < RESP_MAX_ARGS &&
            strcmp(msg, "too many arguments in one command") == 0) {
            resp_arg_t *na = realloc(c->argv, RESP_MAX_ARGS * sizeof *na);
            if (na) {
                c->argv = na;
                c->argcap = RESP_MAX_ARGS;
                continue;
            }
        }
        if (r == RESP_MORE) {
            if (c->batch)
                rresp_batch_submit(c);
            if (c->in.len - c->in_off > RESP_MAX_COMMAND) {
                metric_counter_inc(c->s->m_proto);
                resp_error(&c->out, "ERR Protocol error: command too large");
                c->closing = 1;
            }
            break;
        }
        if (r == RESP_ERROR && c->batch) { /* the batch's replies come first */
            rresp_batch_submit(c);
            break;
        }
        if (r == RESP_ERROR) {
            metric_counter_inc(c->s->m_proto);
            resp_errorf(&c->out, "ERR Protocol error: %s", msg);
            c->closing = 1;
            break;
        }
        c->argc = argc;
        c->cmd_used = used;
        const cmd_t *bk = argc && !conn_needs_auth(c) ? find_cmd(&c->argv[0]) : NULL;
        int bt = argc && !conn_needs_auth(c)
                     ? rresp_batch_try(c, bk, bk ? c->s->m_cmd[bk - commands] : NULL)
                     : 0;
        if (bt == 1) {
            c->in_off += used;
            c->cmd_used = 0;
            continue;
        }
        if (bt < 0 && c->in_off >= c->pf_end) { /* read the settings of the keys ahead */
            c->cmd_used = 0;
            if (c->batch) { /* the batch goes first; this command comes back here */
                rresp_batch_submit(c);
                break;
            }
            if (prefetch_start(c))
                break;
        }
        if (c->batch) { /* the batch goes first; this command waits for it */
            c->cmd_used = 0;
            rresp_batch_submit(c);
            break;
        }
        if (argc)
            dispatch(c);
        if (!c->busy) {
            c->in_off += c->cmd_used;
            c->cmd_used = 0;
        }
    }
    if (c->batch && !c->dead)
        rresp_batch_submit(c);
    if (c->dead)
        return;
    if (!c->busy) {
        if (c->in_off == c->in.len) {
            c->in.len = 0;
            c->in_off = 0;
            c->pf_end = 0;
        } else if (c->in_off > (1u << 16)) {
            memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
            c->in.len -= c->in_off;
            c->pf_end = c->pf_end > c->in_off ? c->pf_end - c->in_off : 0;
            c->in_off = 0;
        }
    }
    conn_flush(c);
    if (c->dead)
        return;
    if (c->closing) {
        if (c->nwrites == 0)
            conn_close(c);
        else if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        return;
    }
    int want = !c->busy && c->wq < RESP_OUT_HIGH;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    rconn_t *c = h->data;
    (void)hint;
    if (c->s->rbuf_busy) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    c->s->rbuf_busy = 1;
    buf->base = c->s->rbuf;
    buf->len = RESP_READ_BUF;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    rconn_t *c = st->data;
    if (buf->base == c->s->rbuf)
        c->s->rbuf_busy = 0;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    if (c->tls) {
        int rc = tls_conn_feed(c->tls, buf->base, (size_t)n, &c->in);
        conn_tls_send(c);
        if (rc == ST_EPROTO && !c->dead) {
            metric_counter_inc(c->s->m_proto);
            st_warn("RESP TLS handshake failed", "remote=%s reason=%s err=\"%s\"", c->peer,
                    tls_fail_name(tls_conn_failure(c->tls)), tls_conn_error(c->tls));
            if (tls_conn_failure(c->tls) == TLS_FAIL_NOT_TLS && !tls_conn_established(c->tls)) {
                static const char plain[] = "-ERR Protocol error: this port speaks TLS only\r\n";
                conn_write_raw(c, plain, sizeof plain - 1);
            }
            c->closing = 1;
            if (c->nwrites == 0)
                conn_close(c);
            else if (c->reading) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = 0;
            }
            return;
        }
        if (rc) {
            conn_close(c);
            return;
        }
        if (tls_conn_established(c->tls))
            hs_timer_stop(c);
    } else if (st_buf_append(&c->in, buf->base, (size_t)n)) {
        conn_close(c);
        return;
    }
    if (c->dead)
        return;
    conn_run(c);
}

static void on_hs_timeout(uv_timer_t *t)
{
    rconn_t *c = t->data;
    hs_timer_stop(c);
    if (c->dead || tls_conn_established(c->tls))
        return;
    tls_ctx_count_failure(c->s->tls, TLS_FAIL_TIMEOUT);
    metric_counter_inc(c->s->m_proto);
    st_warn("RESP TLS handshake timed out", "remote=%s", c->peer);
    conn_close(c);
}

/* A TLS connection gets RESP_TLS_HANDSHAKE_MS to finish its handshake. */
static void hs_timer_start(rconn_t *c)
{
    c->hs_timer = malloc(sizeof *c->hs_timer);
    if (!c->hs_timer)
        return; /* no deadline: the connection still works */
    uv_timer_init(c->s->r->loop, c->hs_timer);
    c->hs_timer->data = c;
    uv_timer_start(c->hs_timer, on_hs_timeout, RESP_TLS_HANDSHAKE_MS, 0);
}

static void on_connection(uv_stream_t *ls, int status)
{
    router_resp_t *s = ls->data;
    if (status < 0 || s->closing)
        return;
    rconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    c->proto = 2;
    uv_tcp_init(s->r->loop, &c->tcp);
    c->tcp.data = c;
    if (net_accept(ls, &c->tcp, c->peer, sizeof c->peer) != 0 || s->nconns >= RESP_MAX_CONNS ||
        (s->tls && tls_conn_create(s->tls, NULL, &c->tls) != 0)) {
        c->dead = 1;
        c->uv_closing = 1;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        if (s->nconns > RESP_MAX_CONNS) {
            static const char full[] = "-ERR max number of clients reached\r\n";
            uv_buf_t b = uv_buf_init((char *)full, sizeof full - 1);
            uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    c->id = ++s->next_id;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    metric_counter_inc(s->m_conns);
    metric_gauge_set(s->m_open, (double)s->nconns);
    if (c->tls)
        hs_timer_start(c);
    conn_run(c);
}

static int register_metrics(router_resp_t *s)
{
    metrics_t *m = s->r->metrics;
    s->m_conns =
        metrics_counter(m, "strata_resp_connections_total", "RESP connections accepted.", NULL);
    s->m_open = metrics_gauge(m, "strata_resp_connections", "RESP connections open.", NULL);
    s->m_errors = metrics_counter(m, "strata_resp_errors_total",
                                  "RESP commands answered with an error.", NULL);
    s->m_proto = metrics_counter(m, "strata_resp_protocol_errors_total",
                                 "RESP connections closed on a protocol error or a limit.", NULL);
    s->m_cmds_other = metrics_counter(m, "strata_resp_commands_total", "RESP commands, by name.",
                                      "command", "unknown", NULL);
    s->m_cmd = calloc(ncommands, sizeof *s->m_cmd);
    s->m_auth_fail = metrics_counter(m, "strata_resp_auth_failures_total",
                                     "RESP AUTH/HELLO AUTH attempts refused (WRONGPASS).", NULL);
    s->m_auth_delayed = metrics_counter(
        m, "strata_resp_auth_delayed_total",
        "RESP AUTH/HELLO AUTH refusals answered late: the client address had recent failed "
        "logins at any door (HTTP, RESP, PostgreSQL).",
        NULL);
    s->m_prefetch =
        metrics_counter(m, "strata_resp_meta_prefetches_total",
                        "Metadata reads for the TS.ADD keys of a pipeline at once.", NULL);
    s->m_batches =
        metrics_counter(m, "strata_resp_write_batches_total",
                        "Writes of pipelined TS.ADD/TS.MADD commands gathered into one.", NULL);
    if (!s->m_conns || !s->m_open || !s->m_errors || !s->m_proto || !s->m_cmds_other || !s->m_cmd ||
        !s->m_auth_fail || !s->m_auth_delayed || !s->m_prefetch || !s->m_batches)
        return ST_ENOMEM;
    for (size_t i = 0; i < ncommands; i++) {
        char low[64];
        size_t n = strlen(commands[i].name);
        for (size_t q = 0; q <= n && q < sizeof low; q++)
            low[q] = (char)((commands[i].name[q] >= 'A' && commands[i].name[q] <= 'Z')
                                ? commands[i].name[q] + 32
                                : commands[i].name[q]);
        if (!(s->m_cmd[i] = metrics_counter(m, "strata_resp_commands_total",
                                            "RESP commands, by name.", "command", low, NULL)))
            return ST_ENOMEM;
    }
    return 0;
}

int router_resp_start(router_t *r, const char *host, int port, router_route_fn route, void *arg,
                      router_resp_t **out)
{
    *out = NULL;
    router_resp_t *s = calloc(1, sizeof *s);
    if (!s)
        return ST_ENOMEM;
    s->r = r;
    s->job_done = job_done;
    s->route = route;
    s->route_arg = arg;
    s->buckets = calloc(RESP_CACHE_BUCKETS, sizeof *s->buckets);
    http_limits_default(&s->hl);
    s->hl.max_body_bytes = RESP_MAX_COMMAND * 4u;
    s->hl.max_url_bytes = 65536;
    if (!s->buckets || register_metrics(s)) {
        free(s->buckets);
        free(s->m_cmd);
        free(s);
        return ST_ENOMEM;
    }
    struct sockaddr_storage ss;
    int rc = net_resolve(host, port, &ss);
    if (!rc) {
        uv_tcp_init(r->loop, &s->listener);
        s->listener.data = s;
        s->listener_open = 1;
        rc = net_listen_tcp(&s->listener, &ss, on_connection, &s->port);
    }
    if (rc) {
        if (s->listener_open)
            uv_close((uv_handle_t *)&s->listener, NULL);
        /* the handle is closed on the next loop turn; s stays allocated
         * (the process exits on this error) */
        return rc < 0 && rc != ST_EINVAL ? ST_EIO : rc;
    }
    *out = s;
    return 0;
}

void router_resp_set_tls(router_resp_t *s, tls_ctx_t *tls)
{
    s->tls = tls;
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

void router_resp_close(router_resp_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    if (s->listener_open) {
        s->listener_open = 0;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    }
    for (rconn_t *c = s->conns; c; c = c->next) {
        if (c->auth_delay) /* answer a held -WRONGPASS now rather than hold the shutdown */
            uv_timer_start(&c->auth_delay->timer, rresp_on_job_timer, 0, 0);
        if (!c->dead)
            conn_close(c);
    }
}
