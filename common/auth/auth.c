/*
 * auth — the users database: parse and format the users file, add, remove,
 * set passwords and tokens, and check credentials against it (see auth.h).
 *
 * How: users are kept in file order in one array; lookups by name are a
 * linear scan (a file holds at most AUTH_MAX_USERS users and lookups by
 * name happen once per request with a password, after the cache). A
 * confining selector is parsed with the PromQL selector parser at load and
 * its regexes compiled once (PCRE2, fully anchored like the index), so
 * checking a written series costs no parsing.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pcre2.h>

#include "selector.h"
#include "st_err.h"
#include "st_file.h"
#include "st_labels.h"
#include "st_text.h"

#define PW_SCHEME "pbkdf2-sha256"
#define TOKEN_SCHEME "sha256"

struct auth_user {
    char name[AUTH_NAME_MAX + 1];
    auth_role_t role;
    int has_pw, has_token;
    uint32_t iter;
    uint8_t salt[AUTH_SALT_LEN];
    uint8_t key[AUTH_KEY_LEN];
    uint8_t token_hash[32];
    size_t line;         /* in the file it was parsed from (for messages) */
    char *selector_text; /* NULL: not confined */
    selector_t sel;
    pcre2_code **re; /* [sel.n]: compiled for RE/NRE matchers, else NULL */
    /* the last password verified (SHA-256 of salt + password), memory only */
    int cache_set;
    uint8_t cache[32];
};

struct auth_db {
    auth_user_t **users;
    size_t n, cap;
    /* a parsed file (daemons) is indexed: users by name and by token hash,
     * sorted, for binary search; an edited db (the CLI) is scanned */
    int indexed;
    auth_user_t **by_name, **by_token;
    size_t ntoken;
};

const char *auth_role_name(auth_role_t r)
{
    static const char *const names[] = {"open", "read", "write", "admin"};
    return (unsigned)r < 4 ? names[r] : "?";
}

auth_role_t auth_role_parse(const char *s)
{
    for (int r = AUTH_ROLE_READ; r <= AUTH_ROLE_ADMIN; r++)
        if (strcmp(s, auth_role_name((auth_role_t)r)) == 0)
            return (auth_role_t)r;
    return AUTH_ROLE_NONE;
}

const char *auth_result_name(auth_result_t r)
{
    static const char *const names[AUTH_RESULT_COUNT] = {"ok", "missing", "malformed",
                                                         "bad_credentials", "bad_token"};
    return (unsigned)r < AUTH_RESULT_COUNT ? names[r] : "?";
}

/* ---- users -------------------------------------------------------------- */

static void user_free(auth_user_t *u)
{
    if (!u)
        return;
    if (u->re)
        for (size_t i = 0; i < u->sel.n; i++)
            pcre2_code_free(u->re[i]);
    free(u->re);
    if (u->selector_text)
        selector_free(&u->sel);
    free(u->selector_text);
    OPENSSL_cleanse(u, sizeof *u);
    free(u);
}

int auth_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > AUTH_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

/* Parse and compile the confining selector of u (text of len bytes). */
static int user_set_selector(auth_user_t *u, const char *s, size_t len, char *err, size_t errlen)
{
    char perr[200];
    if (len == 0)
        return 0;
    if (!(u->selector_text = strndup(s, len)))
        return ST_ENOMEM;
    int rc = selector_parse(s, len, &u->sel, perr, sizeof perr);
    if (rc) {
        free(u->selector_text);
        u->selector_text = NULL;
        snprintf(err, errlen, "bad selector: %s", perr);
        return ST_EPARSE;
    }
    if (!(u->re = calloc(u->sel.n ? u->sel.n : 1, sizeof *u->re)))
        return ST_ENOMEM;
    for (size_t i = 0; i < u->sel.n; i++) {
        const st_matcher_t *m = &u->sel.m[i];
        if (m->type != ST_MATCH_RE && m->type != ST_MATCH_NRE)
            continue;
        int ec;
        PCRE2_SIZE off;
        u->re[i] = pcre2_compile((PCRE2_SPTR)m->value, PCRE2_ZERO_TERMINATED,
                                 PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOTALL | PCRE2_UTF, &ec,
                                 &off, NULL);
        if (!u->re[i]) {
            snprintf(err, errlen, "bad selector: regex for label '%s' does not compile", m->name);
            return ST_EPARSE;
        }
    }
    return 0;
}

int auth_user_allows(const auth_user_t *u, const st_label_t *l, size_t n)
{
    if (!u->selector_text)
        return 1;
    for (size_t i = 0; i < u->sel.n; i++) {
        const st_matcher_t *m = &u->sel.m[i];
        int k = st_labels_find(l, n, m->name);
        const char *v = k >= 0 ? l[k].value : "";
        size_t vl = k >= 0 ? l[k].value_len : 0;
        int hit;
        if (m->type == ST_MATCH_EQ || m->type == ST_MATCH_NE) {
            hit = strlen(m->value) == vl && memcmp(m->value, v, vl) == 0;
        } else {
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(u->re[i], NULL);
            if (!md)
                return 0;
            hit = pcre2_match(u->re[i], (PCRE2_SPTR)v, vl, 0, 0, md, NULL) >= 0;
            pcre2_match_data_free(md);
        }
        if (m->type == ST_MATCH_NE || m->type == ST_MATCH_NRE)
            hit = !hit;
        if (!hit)
            return 0;
    }
    return 1;
}

const char *auth_user_name(const auth_user_t *u)
{
    return u->name;
}
auth_role_t auth_user_role(const auth_user_t *u)
{
    return u->role;
}
const char *auth_user_selector(const auth_user_t *u)
{
    return u->selector_text;
}
size_t auth_user_matchers(const auth_user_t *u, const st_matcher_t **m)
{
    *m = u->sel.m;
    return u->selector_text ? u->sel.n : 0;
}
int auth_user_has_password(const auth_user_t *u)
{
    return u->has_pw;
}
int auth_user_has_token(const auth_user_t *u)
{
    return u->has_token;
}

int auth_user_scram(const auth_user_t *u, const uint8_t **salt, size_t *salt_len,
                    uint32_t *iterations, const uint8_t **salted_password)
{
    if (!u->has_pw)
        return ST_ENOENT;
    *salt = u->salt;
    *salt_len = AUTH_SALT_LEN;
    *iterations = u->iter;
    *salted_password = u->key;
    return 0;
}

/* ---- the database ------------------------------------------------------- */

int auth_db_create(auth_db_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : ST_ENOMEM;
}

void auth_db_destroy(auth_db_t *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        user_free(db->users[i]);
    free(db->users);
    free(db->by_name);
    free(db->by_token);
    free(db);
}

size_t auth_db_count(const auth_db_t *db)
{
    return db->n;
}

const auth_user_t *auth_db_user_at(const auth_db_t *db, size_t i)
{
    return i < db->n ? db->users[i] : NULL;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(auth_user_t *const *)a)->name, (*(auth_user_t *const *)b)->name);
}

static int cmp_token(const void *a, const void *b)
{
    return memcmp((*(auth_user_t *const *)a)->token_hash, (*(auth_user_t *const *)b)->token_hash,
                  32);
}

/* Sort the users by name and by token hash (after a parse). */
static int build_index(auth_db_t *db)
{
    size_t n = db->n ? db->n : 1;
    if (!(db->by_name = malloc(n * sizeof *db->by_name)) ||
        !(db->by_token = malloc(n * sizeof *db->by_token)))
        return ST_ENOMEM;
    if (db->n)
        memcpy(db->by_name, db->users, db->n * sizeof *db->users);
    if (db->n > 1)
        qsort(db->by_name, db->n, sizeof *db->by_name, cmp_name);
    for (size_t i = 0; i < db->n; i++)
        if (db->users[i]->has_token)
            db->by_token[db->ntoken++] = db->users[i];
    if (db->ntoken > 1)
        qsort(db->by_token, db->ntoken, sizeof *db->by_token, cmp_token);
    db->indexed = 1;
    return 0;
}

/* Edits drop the index (the CLI's few lookups scan). */
static void unindex(auth_db_t *db)
{
    free(db->by_name);
    free(db->by_token);
    db->by_name = db->by_token = NULL;
    db->ntoken = 0;
    db->indexed = 0;
}

static auth_user_t *find(const auth_db_t *db, const char *name, size_t len)
{
    if (db->indexed) {
        size_t lo = 0, hi = db->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const char *k = db->by_name[mid]->name;
            int c = strncmp(k, name, len);
            if (c == 0 && k[len] != '\0')
                c = 1;
            if (c == 0)
                return db->by_name[mid];
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        return NULL;
    }
    for (size_t i = 0; i < db->n; i++)
        if (strlen(db->users[i]->name) == len && memcmp(db->users[i]->name, name, len) == 0)
            return db->users[i];
    return NULL;
}

const auth_user_t *auth_db_find(const auth_db_t *db, const char *name)
{
    return find(db, name, strlen(name));
}

static int push(auth_db_t *db, auth_user_t *u)
{
    if (db->n >= AUTH_MAX_USERS)
        return ST_ELIMIT;
    if (db->n == db->cap && st_grow(&db->users, &db->cap, sizeof *db->users, 16) != 0)
        return ST_ENOMEM;
    unindex(db);
    db->users[db->n++] = u;
    return 0;
}

int auth_db_add(auth_db_t *db, const char *name, auth_role_t role, const char *selector, char *err,
                size_t errlen)
{
    size_t nl = strlen(name);
    if (!auth_name_ok(name, nl)) {
        snprintf(err, errlen, "bad user name: expected 1 to %d of A-Z a-z 0-9 . _ @ -",
                 AUTH_NAME_MAX);
        return ST_EINVAL;
    }
    if (role < AUTH_ROLE_READ || role > AUTH_ROLE_ADMIN) {
        snprintf(err, errlen, "bad role: expected read, write or admin");
        return ST_EINVAL;
    }
    if (find(db, name, nl)) {
        snprintf(err, errlen, "user '%s' already exists", name);
        return ST_EEXIST;
    }
    if (selector && (strlen(selector) > AUTH_LINE_MAX / 2 || strchr(selector, '\n'))) {
        snprintf(err, errlen, "bad selector: longer than %d bytes or more than one line",
                 AUTH_LINE_MAX / 2);
        return ST_EPARSE;
    }
    auth_user_t *u = calloc(1, sizeof *u);
    if (!u)
        return ST_ENOMEM;
    memcpy(u->name, name, nl);
    u->role = role;
    int rc = selector ? user_set_selector(u, selector, strlen(selector), err, errlen) : 0;
    if (!rc && (rc = push(db, u)) == ST_ELIMIT)
        snprintf(err, errlen, "too many users (at most %d)", AUTH_MAX_USERS);
    if (rc)
        user_free(u);
    return rc;
}

int auth_db_remove(auth_db_t *db, const char *name)
{
    for (size_t i = 0; i < db->n; i++) {
        if (strcmp(db->users[i]->name, name) == 0) {
            unindex(db);
            user_free(db->users[i]);
            memmove(&db->users[i], &db->users[i + 1], (db->n - i - 1) * sizeof *db->users);
            db->n--;
            return 0;
        }
    }
    return ST_ENOENT;
}

static int pbkdf2(const char *pw, size_t len, const uint8_t *salt, uint32_t iter, uint8_t *key)
{
    return PKCS5_PBKDF2_HMAC(pw, (int)len, salt, AUTH_SALT_LEN, (int)iter, EVP_sha256(),
                             AUTH_KEY_LEN, key) == 1
               ? 0
               : ST_ENOMEM;
}

static void sha256(const void *a, size_t al, const void *b, size_t bl, uint8_t out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 32;
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(c, a, al) != 1 ||
        (bl && EVP_DigestUpdate(c, b, bl) != 1) || EVP_DigestFinal_ex(c, out, &n) != 1)
        memset(out, 0xff, 32); /* never equal to a real digest we compare with */
    EVP_MD_CTX_free(c);
}

int auth_db_set_password(auth_db_t *db, const char *name, const char *password, uint32_t iter)
{
    auth_user_t *u = find(db, name, strlen(name));
    if (!u)
        return ST_ENOENT;
    if (!iter)
        iter = AUTH_PBKDF2_ITER;
    if (iter < AUTH_PBKDF2_ITER_MIN || iter > AUTH_PBKDF2_ITER_MAX ||
        strlen(password) > AUTH_SECRET_MAX)
        return ST_EINVAL;
    if (RAND_bytes(u->salt, AUTH_SALT_LEN) != 1)
        return ST_EIO;
    u->iter = iter;
    int rc = pbkdf2(password, strlen(password), u->salt, iter, u->key);
    u->has_pw = rc == 0;
    u->cache_set = 0;
    return rc;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int auth_db_new_token(auth_db_t *db, const char *name, char *token)
{
    auth_user_t *u = find(db, name, strlen(name));
    if (!u)
        return ST_ENOENT;
    uint8_t rnd[32];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return ST_EIO;
    memcpy(token, AUTH_TOKEN_PREFIX, 3);
    hex(rnd, sizeof rnd, token + 3);
    OPENSSL_cleanse(rnd, sizeof rnd);
    unindex(db);
    sha256(token, AUTH_TOKEN_LEN, NULL, 0, u->token_hash);
    u->has_token = 1;
    return 0;
}

/* ---- the file ----------------------------------------------------------- */

static int unhex(const char *s, size_t n, uint8_t *out, size_t outlen)
{
    if (n != 2 * outlen)
        return -1;
    for (size_t i = 0; i < outlen; i++) {
        int a = st_hexval(s[2 * i]), b = st_hexval(s[2 * i + 1]);
        if (a < 0 || b < 0)
            return -1;
        out[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}

/* Standard base64 with padding (EVP_DecodeBlock), exactly `want` bytes. */
int auth_unb64(const char *s, size_t n, uint8_t *out, size_t want)
{
    uint8_t buf[96];
    if (n == 0 || n % 4 || n / 4 * 3 > sizeof buf)
        return -1;
    int k = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
    if (k < 0)
        return -1;
    size_t pad = (s[n - 1] == '=') + (s[n - 2] == '=');
    if ((size_t)k - pad != want)
        return -1;
    memcpy(out, buf, want);
    return 0;
}

/* "pbkdf2-sha256$ITER$SALT$KEY" into u. */
static int parse_pw(auth_user_t *u, const char *s, size_t n)
{
    size_t pl = strlen(PW_SCHEME);
    if (n <= pl + 1 || memcmp(s, PW_SCHEME "$", pl + 1) != 0)
        return -1;
    const char *p = s + pl + 1, *e = s + n;
    uint64_t it = 0;
    const char *q = p;
    while (q < e && *q >= '0' && *q <= '9' && q - p < 9)
        it = it * 10 + (uint64_t)(*q++ - '0');
    if (q == p || q >= e || *q != '$' || it < AUTH_PBKDF2_ITER_MIN || it > AUTH_PBKDF2_ITER_MAX)
        return -1;
    const char *salt = q + 1, *d = memchr(salt, '$', (size_t)(e - salt));
    if (!d || auth_unb64(salt, (size_t)(d - salt), u->salt, AUTH_SALT_LEN) ||
        auth_unb64(d + 1, (size_t)(e - d - 1), u->key, AUTH_KEY_LEN))
        return -1;
    u->iter = (uint32_t)it;
    u->has_pw = 1;
    return 0;
}

static int parse_token(auth_user_t *u, const char *s, size_t n)
{
    size_t pl = strlen(TOKEN_SCHEME);
    if (n <= pl + 1 || memcmp(s, TOKEN_SCHEME "$", pl + 1) != 0 ||
        unhex(s + pl + 1, n - pl - 1, u->token_hash, 32))
        return -1;
    u->has_token = 1;
    return 0;
}

struct perr {
    char *err;
    size_t errlen;
    const char *file;
};

__attribute__((format(printf, 4, 5))) static int fail(struct perr *pe, int rc, size_t line,
                                                      const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pe->errlen) {
        if (line)
            snprintf(pe->err, pe->errlen, "%s:%zu: %s", pe->file, line, msg);
        else
            snprintf(pe->err, pe->errlen, "%s: %s", pe->file, msg);
    }
    return rc;
}

static int parse_line(auth_db_t *db, const char *s, size_t n, size_t line, struct perr *pe)
{
    const char *f[5];
    size_t fl[5];
    const char *p = s, *e = s + n;
    for (int i = 0; i < 4; i++) {
        const char *c = memchr(p, ':', (size_t)(e - p));
        if (!c)
            return fail(pe, ST_ECONFIG, line,
                        "expected NAME:ROLE:PASSWORD-HASH:TOKEN-HASH:SELECTOR (%d ':' missing)",
                        4 - i);
        f[i] = p;
        fl[i] = (size_t)(c - p);
        p = c + 1;
    }
    f[4] = p;
    fl[4] = (size_t)(e - p);
    if (!auth_name_ok(f[0], fl[0]))
        return fail(pe, ST_ECONFIG, line, "bad user name: expected 1 to %d of A-Z a-z 0-9 . _ @ -",
                    AUTH_NAME_MAX);
    char role[8] = "";
    if (fl[1] < sizeof role)
        memcpy(role, f[1], fl[1]);
    auth_role_t r = auth_role_parse(role);
    if (r == AUTH_ROLE_NONE)
        return fail(pe, ST_ECONFIG, line, "bad role for user '%.*s': expected read, write or admin",
                    (int)fl[0], f[0]);
    auth_user_t *u = calloc(1, sizeof *u);
    if (!u)
        return ST_ENOMEM;
    memcpy(u->name, f[0], fl[0]);
    u->role = r;
    u->line = line;
    char why[260];
    int rc = 0;
    if (fl[2] && parse_pw(u, f[2], fl[2]))
        rc = fail(pe, ST_ECONFIG, line,
                  "bad password hash for user '%s': expected " PW_SCHEME
                  "$ITERATIONS$SALT$KEY (base64, %d-byte salt, %d-byte key)",
                  u->name, AUTH_SALT_LEN, AUTH_KEY_LEN);
    else if (fl[3] && parse_token(u, f[3], fl[3]))
        rc = fail(pe, ST_ECONFIG, line,
                  "bad token hash for user '%s': expected " TOKEN_SCHEME "$<64 hex digits>",
                  u->name);
    else if ((rc = user_set_selector(u, f[4], fl[4], why, sizeof why)) == ST_EPARSE)
        rc = fail(pe, ST_ECONFIG, line, "user '%s': %s", u->name, why);
    else if (!rc && (rc = push(db, u)) == ST_ELIMIT)
        rc = fail(pe, ST_ELIMIT, line, "too many users (at most %d)", AUTH_MAX_USERS);
    if (rc)
        user_free(u);
    return rc;
}

int auth_db_parse(const char *text, size_t len, const char *name, auth_db_t **out, char *err,
                  size_t errlen)
{
    struct perr pe = {err, errlen, name ? name : "<string>"};
    *out = NULL;
    if (errlen)
        err[0] = '\0';
    if (len > AUTH_FILE_MAX)
        return fail(&pe, ST_ELIMIT, 0, "larger than %u bytes", AUTH_FILE_MAX);
    auth_db_t *db;
    if (auth_db_create(&db))
        return ST_ENOMEM;
    const char *p = text, *e = text + len;
    size_t line = 0;
    int rc = 0;
    while (p < e && !rc) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl : e;
        line++;
        if (le - p > AUTH_LINE_MAX) {
            rc = fail(&pe, ST_ELIMIT, line, "line longer than %d bytes", AUTH_LINE_MAX);
            break;
        }
        if (le > p && le[-1] == '\r')
            le--;
        const char *s = p;
        while (s < le && (*s == ' ' || *s == '\t'))
            s++;
        if (s < le && *s != '#') {
            if (memchr(s, '\0', (size_t)(le - s)))
                rc = fail(&pe, ST_ECONFIG, line, "NUL byte in line");
            else
                rc = parse_line(db, s, (size_t)(le - s), line, &pe);
        }
        p = nl ? nl + 1 : e;
    }
    if (!rc && build_index(db))
        rc = ST_ENOMEM;
    /* names are unique: sorted, a duplicate is next to its first */
    for (size_t i = 1; !rc && i < db->n; i++) {
        const auth_user_t *a = db->by_name[i - 1], *b = db->by_name[i];
        if (strcmp(a->name, b->name) == 0)
            rc = fail(&pe, ST_ECONFIG, a->line > b->line ? a->line : b->line,
                      "duplicate user '%s' (first at line %zu)", a->name,
                      a->line < b->line ? a->line : b->line);
    }
    if (rc) {
        auth_db_destroy(db);
        return rc;
    }
    *out = db;
    return 0;
}

int auth_db_load_file(const char *path, auth_db_t **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return ST_EIO;
    }
    char *buf = malloc(AUTH_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return ST_ENOMEM;
    }
    size_t n = fread(buf, 1, AUTH_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    int rc;
    if (bad) {
        snprintf(err, errlen, "%s: cannot read", path);
        rc = ST_EIO;
    } else {
        rc = auth_db_parse(buf, n, path, out, err, errlen);
    }
    OPENSSL_cleanse(buf, n);
    free(buf);
    return rc;
}

int auth_db_format(const auth_db_t *db, st_buf_t *out)
{
    char line[AUTH_LINE_MAX + 256], salt[32], key[64], th[65];
    int rc = 0;
    static const char head[] =
        "# strata users: NAME:ROLE:PASSWORD-HASH:TOKEN-HASH:SELECTOR (strata user --help)\n";
    if ((rc = st_buf_append(out, head, sizeof head - 1)) < 0)
        return rc;
    for (size_t i = 0; i < db->n && !rc; i++) {
        const auth_user_t *u = db->users[i];
        int k = snprintf(line, sizeof line, "%s:%s:", u->name, auth_role_name(u->role));
        if (u->has_pw) {
            EVP_EncodeBlock((unsigned char *)salt, u->salt, AUTH_SALT_LEN);
            EVP_EncodeBlock((unsigned char *)key, u->key, AUTH_KEY_LEN);
            k += snprintf(line + k, sizeof line - (size_t)k, PW_SCHEME "$%u$%s$%s", u->iter, salt,
                          key);
        }
        line[k++] = ':';
        if (u->has_token) {
            hex(u->token_hash, 32, th);
            k += snprintf(line + k, sizeof line - (size_t)k, TOKEN_SCHEME "$%s", th);
        }
        k += snprintf(line + k, sizeof line - (size_t)k, ":%s\n",
                      u->selector_text ? u->selector_text : "");
        rc = st_buf_append(out, line, (size_t)k);
    }
    return rc < 0 ? rc : 0;
}

int auth_db_save_file(const auth_db_t *db, const char *path, char *err, size_t errlen)
{
    st_buf_t b;
    st_buf_init(&b);
    char tmp[4096];
    int rc = auth_db_format(db, &b);
    if (rc) {
        st_buf_deinit(&b);
        return rc;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        st_buf_deinit(&b);
        return ST_EIO;
    }
    rc = st_write_all(fd, b.data, b.len);
    if (!rc && fsync(fd) != 0)
        rc = ST_EIO;
    if (close(fd) != 0 && !rc)
        rc = ST_EIO;
    if (!rc && rename(tmp, path) != 0)
        rc = ST_EIO;
    if (rc) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
    }
    st_buf_deinit(&b);
    return rc;
}

/* ---- checking ----------------------------------------------------------- */

auth_result_t auth_check_token(const auth_db_t *db, const char *token, size_t len,
                               const auth_user_t **user)
{
    uint8_t h[32];
    *user = NULL;
    sha256(token, len, NULL, 0, h);
    const auth_user_t *hit = NULL;
    if (db->indexed) {
        /* A binary search over the hashes. Its time depends on SHA-256 of
         * the presented token, which tells an attacker nothing about any
         * stored token (finding one would need a preimage); the match is
         * then confirmed in constant time. */
        size_t lo = 0, hi = db->ntoken;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = memcmp(db->by_token[mid]->token_hash, h, 32);
            if (c == 0) {
                lo = mid;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < db->ntoken && CRYPTO_memcmp(db->by_token[lo]->token_hash, h, 32) == 0)
            hit = db->by_token[lo];
        *user = hit;
        return hit ? AUTH_OK : AUTH_BAD_TOKEN;
    }
    for (size_t i = 0; i < db->n; i++) /* no early exit */
        if (db->users[i]->has_token && CRYPTO_memcmp(h, db->users[i]->token_hash, 32) == 0)
            hit = db->users[i];
    *user = hit;
    return hit ? AUTH_OK : AUTH_BAD_TOKEN;
}

int auth_password_begin(auth_db_t *db, const char *name, const char *pw, size_t len,
                        const auth_user_t **user)
{
    uint8_t c[32];
    auth_user_t *u = find(db, name, strlen(name));
    *user = u && u->has_pw ? u : NULL;
    if (!*user)
        return AUTH_SLOW;
    sha256(u->salt, AUTH_SALT_LEN, pw, len, c);
    return u->cache_set && CRYPTO_memcmp(c, u->cache, 32) == 0 ? AUTH_OK : AUTH_SLOW;
}

int auth_password_slow(const auth_user_t *u, const char *pw, size_t len)
{
    static const uint8_t dummy_salt[AUTH_SALT_LEN];
    uint8_t key[AUTH_KEY_LEN];
    if (!u) {
        pbkdf2(pw, len, dummy_salt, AUTH_PBKDF2_ITER, key);
        return 0;
    }
    int ok = pbkdf2(pw, len, u->salt, u->iter, key) == 0 && CRYPTO_memcmp(key, u->key, 32) == 0;
    OPENSSL_cleanse(key, sizeof key);
    return ok;
}

void auth_password_remember(const auth_user_t *cu, const char *pw, size_t len)
{
    auth_user_t *u = (auth_user_t *)(uintptr_t)cu; /* the cache is the one mutable part */
    sha256(u->salt, AUTH_SALT_LEN, pw, len, u->cache);
    u->cache_set = 1;
}

auth_result_t auth_check_password(auth_db_t *db, const char *name, const char *pw, size_t len,
                                  const auth_user_t **user)
{
    static const uint8_t dummy_salt[AUTH_SALT_LEN];
    uint8_t key[AUTH_KEY_LEN], c[32];
    *user = NULL;
    auth_user_t *u = find(db, name, strlen(name));
    if (!u || !u->has_pw) {
        /* the same work as a real check: the answer's time does not tell
         * whether the user exists */
        pbkdf2(pw, len, dummy_salt, AUTH_PBKDF2_ITER, key);
        return AUTH_BAD_CREDENTIALS;
    }
    sha256(u->salt, AUTH_SALT_LEN, pw, len, c);
    if (u->cache_set && CRYPTO_memcmp(c, u->cache, 32) == 0) {
        *user = u;
        return AUTH_OK;
    }
    if (pbkdf2(pw, len, u->salt, u->iter, key) != 0 || CRYPTO_memcmp(key, u->key, 32) != 0)
        return AUTH_BAD_CREDENTIALS;
    memcpy(u->cache, c, 32);
    u->cache_set = 1;
    *user = u;
    return AUTH_OK;
}

auth_result_t auth_check(auth_db_t *db, const auth_cred_t *c, const auth_user_t **user)
{
    *user = NULL;
    switch (c->kind) {
    case AUTH_CRED_NONE:
        return AUTH_MISSING;
    case AUTH_CRED_BAD:
        return AUTH_MALFORMED;
    case AUTH_CRED_TOKEN:
        return auth_check_token(db, c->secret, c->secret_len, user);
    case AUTH_CRED_PASSWORD:
        return auth_check_password(db, c->user, c->secret, c->secret_len, user);
    }
    return AUTH_MALFORMED;
}
