/*
 * auth_gate — credentials, roles and the slowdown at an HTTP door; see
 * auth_gate.h. Loop thread only.
 */
#include "auth_gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_list.h"
#include "st_log.h"
#include "st_text.h"
#include "st_time.h"

enum { FAIL_FORBIDDEN = AUTH_RESULT_COUNT, FAIL_COUNT };

struct slot {
    char addr[48]; /* "" = free */
    uint32_t fails;
    int64_t last_ms;
};

struct retired {
    auth_db_t *db;
    int64_t free_at_ms;
};

typedef struct delayed {
    uv_timer_t timer;
    auth_gate_t *g;
    http_req_t *req;
    auth_result_t why;
    const char *detail;
    struct delayed *prev, *next;
} delayed_t;

/* A password checked on the thread pool. */
typedef struct slow {
    uv_work_t w;
    auth_gate_t *g;
    http_req_t *req;
    auth_role_t need;
    auth_gate_next_fn next;
    void *ctx;
    const void *route;
    const auth_user_t *user; /* NULL: no such user (the work is done anyway) */
    int ok;
    auth_cred_t cred;
} slow_t;

struct auth_gate {
    uv_loop_t *loop;
    size_t nslow;
    char *path;
    auth_db_t *db;
    uv_signal_t sighup;
    int sig_on, closed;
    uv_timer_t retire_timer;
    struct retired retired[AUTH_GATE_MAX_RETIRED];
    size_t nretired;
    struct slot *slots; /* [AUTH_GATE_SLOTS] */
    delayed_t *pending; /* delayed 401s (a list) */
    size_t npending;
    metric_counter_t *fail[FAIL_COUNT], *delayed, *reload_ok, *reload_err;
    metric_gauge_t *users;
};

static const char *fail_name(int f)
{
    return f == FAIL_FORBIDDEN ? "forbidden" : auth_result_name((auth_result_t)f);
}

/* ---- the per-address slowdown --------------------------------------------- */

/* The address of "ip:port" / "[v6]:port" into out. */
static void client_addr(const char *remote, char *out, size_t cap)
{
    const char *colon = strrchr(remote, ':');
    size_t n = colon ? (size_t)(colon - remote) : strlen(remote);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, remote, n);
    out[n] = '\0';
}

static struct slot *slot_for(auth_gate_t *g, const char *addr, int64_t now)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    struct slot *oldest = NULL;
    for (int i = 0; i < 8; i++) {
        struct slot *s = &g->slots[(h + (uint64_t)i) % AUTH_GATE_SLOTS];
        if (strcmp(s->addr, addr) == 0) {
            if (now - s->last_ms > AUTH_GATE_FORGET_MS)
                s->fails = 0;
            return s;
        }
        if (!oldest || s->last_ms < oldest->last_ms)
            oldest = s;
    }
    snprintf(oldest->addr, sizeof oldest->addr, "%s", addr);
    oldest->fails = 0;
    oldest->last_ms = now;
    return oldest;
}

/* Count a failure from addr; the delay its answer gets (ms). */
static uint64_t note_failure(auth_gate_t *g, const char *addr)
{
    if (!g)
        return 0;
    int64_t now = st_mono_ms();
    struct slot *s = slot_for(g, addr, now);
    s->fails++;
    s->last_ms = now;
    if (s->fails <= AUTH_GATE_FREE_FAILS)
        return 0;
    uint32_t k = s->fails - AUTH_GATE_FREE_FAILS - 1;
    uint64_t d = k >= 5 ? AUTH_GATE_MAX_DELAY_MS : 250ull << k;
    return d > AUTH_GATE_MAX_DELAY_MS ? AUTH_GATE_MAX_DELAY_MS : d;
}

uint64_t auth_gate_note_failure(auth_gate_t *g, const char *remote)
{
    char addr[64];
    client_addr(remote ? remote : "", addr, sizeof addr);
    return note_failure(g, addr);
}

/* ---- answers -------------------------------------------------------------- */

static void respond_json_error(http_req_t *req, int status, const char *etype, const char *msg,
                               const http_header_t *h, size_t nh)
{
    st_buf_t b;
    st_buf_init(&b);
    ST_BUF_LIT(&b, "{\"status\":\"error\",\"errorType\":\"");
    st_buf_append(&b, etype, strlen(etype));
    ST_BUF_LIT(&b, "\",\"error\":");
    st_json_str(&b, msg, strlen(msg));
    ST_BUF_LIT(&b, "}");
    http_respond_headers(req, status, "application/json", h, nh, b.data, b.len);
    st_buf_deinit(&b);
}

static void respond_401(http_req_t *req, auth_result_t why, const char *detail)
{
    static const http_header_t h[] = {{"WWW-Authenticate", "Basic realm=\"strata\""},
                                      {"WWW-Authenticate", "Bearer realm=\"strata\""}};
    char msg[300];
    switch (why) {
    case AUTH_MISSING:
        snprintf(msg, sizeof msg,
                 "authentication required: send Authorization: Bearer <token> or Basic");
        break;
    case AUTH_MALFORMED:
        snprintf(msg, sizeof msg, "bad credentials: %s", detail ? detail : "malformed");
        break;
    case AUTH_BAD_TOKEN:
        snprintf(msg, sizeof msg, "invalid token");
        break;
    default:
        snprintf(msg, sizeof msg, "invalid user name or password");
        break;
    }
    respond_json_error(req, 401, "unauthorized", msg, h, 2);
}

static void on_delayed_closed(uv_handle_t *h)
{
    free(h->data);
}

static void delayed_done(delayed_t *d)
{
    auth_gate_t *g = d->g;
    respond_401(d->req, d->why, d->detail);
    ST_LIST_REMOVE(g->pending, d);
    g->npending--;
    uv_timer_stop(&d->timer);
    d->timer.data = d;
    uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

static void on_delay(uv_timer_t *t)
{
    delayed_done(t->data);
}

static void fail(auth_gate_t *g, http_req_t *req, auth_result_t why, const auth_cred_t *c)
{
    char addr[48];
    client_addr(req->remote, addr, sizeof addr);
    metric_counter_inc(g->fail[why]);
    uint64_t delay = note_failure(g, addr);
    st_warn("authentication failed", "reason=%s remote=%s path=\"%s\" user=%s delay_ms=%llu",
            auth_result_name(why), addr, req->path,
            c->kind == AUTH_CRED_PASSWORD && auth_name_ok(c->user, strlen(c->user)) ? c->user : "-",
            (unsigned long long)delay);
    const char *detail = c->kind == AUTH_CRED_BAD ? c->why : NULL;
    delayed_t *d;
    if (!delay || g->closed || g->npending >= AUTH_GATE_MAX_PENDING ||
        !(d = calloc(1, sizeof *d))) {
        respond_401(req, why, detail);
        return;
    }
    metric_counter_inc(g->delayed);
    d->g = g;
    d->req = req;
    d->why = why;
    d->detail = detail;
    uv_timer_init(g->loop, &d->timer);
    d->timer.data = d;
    ST_LIST_PUSH(g->pending, d);
    g->npending++;
    uv_timer_start(&d->timer, on_delay, delay, 0);
}

void auth_gate_forbid(auth_gate_t *g, http_req_t *req, const char *what)
{
    const auth_user_t *u = auth_gate_user(req);
    char msg[400], addr[48];
    client_addr(req->remote, addr, sizeof addr);
    metric_counter_inc(g->fail[FAIL_FORBIDDEN]);
    st_warn("request forbidden", "remote=%s path=\"%s\" user=%s", addr, req->path,
            u ? auth_user_name(u) : "-");
    snprintf(msg, sizeof msg, "user '%s' %s", u ? auth_user_name(u) : "-", what);
    respond_json_error(req, 403, "forbidden", msg, NULL, 0);
}

/* The user is known: may it use a route of role need? 1 yes, 0 answered 403. */
static int allow(auth_gate_t *g, http_req_t *req, const auth_user_t *u, auth_role_t need)
{
    req->data = (void *)u;
    if (auth_user_role(u) < need) {
        char what[200];
        snprintf(what, sizeof what, "has role %s; %s needs the %s role",
                 auth_role_name(auth_user_role(u)), req->path, auth_role_name(need));
        auth_gate_forbid(g, req, what);
        return 0;
    }
    return 1;
}

static void slow_work(uv_work_t *w)
{
    slow_t *s = w->data;
    s->ok = auth_password_slow(s->user, s->cred.secret, s->cred.secret_len);
}

static void slow_after(uv_work_t *w, int status)
{
    slow_t *s = w->data;
    auth_gate_t *g = s->g;
    g->nslow--;
    if (status == 0 && s->ok && s->user) {
        auth_password_remember(s->user, s->cred.secret, s->cred.secret_len);
        if (allow(g, s->req, s->user, s->need))
            s->next(s->ctx, s->route, s->req);
    } else {
        fail(g, s->req, AUTH_BAD_CREDENTIALS, &s->cred);
    }
    auth_cred_clear(&s->cred);
    free(s);
}

int auth_gate_check(auth_gate_t *g, http_req_t *req, auth_role_t need, auth_gate_next_fn next,
                    void *ctx, const void *route)
{
    req->data = NULL;
    if (!g || !g->db || need == AUTH_ROLE_NONE)
        return 1;
    auth_cred_t c;
    auth_cred_parse(http_req_header(req, "Authorization"), http_req_param(req, "u"),
                    http_req_param(req, "p"), &c);
    const auth_user_t *u = NULL;
    int rc = c.kind == AUTH_CRED_PASSWORD
                 ? auth_password_begin(g->db, c.user, c.secret, c.secret_len, &u)
                 : (int)auth_check(g->db, &c, &u);
    slow_t *s = NULL;
    if (rc == AUTH_SLOW && g->nslow >= AUTH_GATE_MAX_SLOW) {
        static const http_header_t ra = {"Retry-After", "1"};
        respond_json_error(req, 503, "unavailable", "too many password checks at once; retry", &ra,
                           1);
    } else if (rc == AUTH_SLOW) {
        if ((s = calloc(1, sizeof *s)) != NULL) {
            *s = (slow_t){.g = g,
                          .req = req,
                          .need = need,
                          .next = next,
                          .ctx = ctx,
                          .route = route,
                          .user = u,
                          .cred = c};
            s->w.data = s;
            if (uv_queue_work(g->loop, &s->w, slow_work, slow_after) == 0) {
                g->nslow++;
                auth_cred_clear(&c);
                return 0;
            }
            auth_cred_clear(&s->cred);
            free(s);
        }
        respond_json_error(req, 503, "unavailable", "cannot queue the password check", NULL, 0);
    } else if (rc != AUTH_OK) {
        fail(g, req, (auth_result_t)rc, &c);
    }
    auth_cred_clear(&c);
    return rc == AUTH_OK ? allow(g, req, u, need) : 0;
}

const auth_user_t *auth_gate_user(const http_req_t *req)
{
    return req->data;
}

const auth_db_t *auth_gate_db(const auth_gate_t *g)
{
    return g ? g->db : NULL;
}

int auth_gate_enabled(const auth_gate_t *g)
{
    return g && g->db;
}

/* ---- reload --------------------------------------------------------------- */

static void on_retire(uv_timer_t *t)
{
    auth_gate_t *g = t->data;
    int64_t now = st_mono_ms();
    size_t k = 0;
    for (size_t i = 0; i < g->nretired; i++) {
        if (g->retired[i].free_at_ms <= now)
            auth_db_destroy(g->retired[i].db);
        else
            g->retired[k++] = g->retired[i];
    }
    g->nretired = k;
    if (k)
        uv_timer_start(&g->retire_timer, on_retire, AUTH_GATE_RETIRE_MS / 10, 0);
}

int auth_gate_reload(auth_gate_t *g, char *err, size_t errlen)
{
    if (!g->path)
        return 0;
    if (g->nretired >= AUTH_GATE_MAX_RETIRED) {
        snprintf(err, errlen, "too many reloads in %d s; old users still in use",
                 AUTH_GATE_RETIRE_MS / 1000);
        metric_counter_inc(g->reload_err);
        return ST_EBUSY;
    }
    auth_db_t *db;
    int rc = auth_db_load_file(g->path, &db, err, errlen);
    if (rc) {
        metric_counter_inc(g->reload_err);
        return rc;
    }
    g->retired[g->nretired++] = (struct retired){g->db, st_mono_ms() + AUTH_GATE_RETIRE_MS};
    g->db = db;
    metric_counter_inc(g->reload_ok);
    metric_gauge_set(g->users, (double)auth_db_count(db));
    if (!uv_is_active((uv_handle_t *)&g->retire_timer))
        uv_timer_start(&g->retire_timer, on_retire, AUTH_GATE_RETIRE_MS / 10, 0);
    return 0;
}

static void on_sighup(uv_signal_t *s, int signum)
{
    auth_gate_t *g = s->data;
    char err[512];
    (void)signum;
    if (auth_gate_reload(g, err, sizeof err) == 0)
        st_info("users file reloaded", "file=%s users=%zu", g->path, auth_db_count(g->db));
    else
        st_error("users file not reloaded; the old users stay", "err=\"%s\"", err);
}

/* ---- life ----------------------------------------------------------------- */

int auth_gate_create(uv_loop_t *loop, const char *path, metrics_t *m, const char *who,
                     auth_gate_t **out, char *err, size_t errlen)
{
    *out = NULL;
    auth_gate_t *g = calloc(1, sizeof *g);
    if (!g || !(g->slots = calloc(AUTH_GATE_SLOTS, sizeof *g->slots))) {
        free(g);
        return ST_ENOMEM;
    }
    g->loop = loop;
    for (int f = 0; f < FAIL_COUNT; f++) {
        if (f == AUTH_OK)
            continue;
        if (!(g->fail[f] = metrics_counter(
                  m, "strata_auth_failures_total",
                  "Requests refused by authentication (401) or by role or confinement (403), by "
                  "reason.",
                  "reason", fail_name(f), NULL)))
            goto nomem;
    }
    if (!(g->delayed = metrics_counter(m, "strata_auth_delayed_total",
                                       "401 answers delayed because their client address failed "
                                       "too often.",
                                       NULL)) ||
        !(g->reload_ok =
              metrics_counter(m, "strata_auth_reloads_total",
                              "Users file reloads (SIGHUP), by result.", "result", "ok", NULL)) ||
        !(g->reload_err = metrics_counter(m, "strata_auth_reloads_total",
                                          "Users file reloads (SIGHUP), by result.", "result",
                                          "error", NULL)) ||
        !(g->users = metrics_gauge(m, "strata_auth_users", "Users in the users file.", NULL)))
        goto nomem;
    uv_timer_init(loop, &g->retire_timer);
    g->retire_timer.data = g;
    if (!path) {
        st_warn("no [security] users_file: every request is accepted without credentials",
                "process=%s", who);
        *out = g;
        return 0;
    }
    int rc;
    if (!(g->path = strdup(path)))
        goto nomem;
    if ((rc = auth_db_load_file(path, &g->db, err, errlen)) != 0) {
        auth_gate_close(g);
        uv_run(loop, UV_RUN_NOWAIT);
        auth_gate_destroy(g);
        return rc;
    }
    metric_gauge_set(g->users, (double)auth_db_count(g->db));
    uv_signal_init(loop, &g->sighup);
    g->sighup.data = g;
    uv_signal_start(&g->sighup, on_sighup, SIGHUP);
    g->sig_on = 1;
    st_info("authentication on", "process=%s users_file=%s users=%zu", who, path,
            auth_db_count(g->db));
    *out = g;
    return 0;
nomem:
    free(g->slots);
    free(g);
    return ST_ENOMEM;
}

void auth_gate_close(auth_gate_t *g)
{
    if (!g || g->closed)
        return;
    g->closed = 1;
    while (g->pending)
        delayed_done(g->pending);
    if (g->sig_on)
        uv_close((uv_handle_t *)&g->sighup, NULL);
    uv_close((uv_handle_t *)&g->retire_timer, NULL);
}

void auth_gate_destroy(auth_gate_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nretired; i++)
        auth_db_destroy(g->retired[i].db);
    auth_db_destroy(g->db);
    free(g->path);
    free(g->slots);
    free(g);
}
