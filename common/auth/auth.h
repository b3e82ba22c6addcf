/*
 * auth — users, roles, passwords and API tokens (the users file), and the
 * credentials a client presents (HTTP Authorization header, InfluxDB u=/p=).
 *
 * Why: every door of a cluster (router HTTP, node HTTP, RESP, PostgreSQL)
 * asks the same question, "who is this and what may they do?", so one pure
 * library answers it (no sockets, no loop; CMocka- and fuzz-tested).
 *
 * The users file: one user per line, passwd-style, five fields split on the
 * first four ':' (the selector is the rest of the line and may hold ':'):
 *
 *     NAME:ROLE:PASSWORD-HASH:TOKEN-HASH:SELECTOR
 *     alice:admin:pbkdf2-sha256$600000$<salt b64>$<key b64>:sha256$<64 hex>:
 *     team-a:read::sha256$<64 hex>:{team="a"}
 *
 * NAME is 1..64 of [A-Za-z0-9._@-]; ROLE is read, write or admin (each
 * includes the ones before it); an empty hash field means "no password" /
 * "no token"; SELECTOR (empty: not confined) confines the user to the
 * series it matches. '#' starts a comment line; blank lines are skipped.
 * Limits: AUTH_FILE_MAX bytes, AUTH_MAX_USERS users, AUTH_LINE_MAX bytes a
 * line; names are unique. Errors are "FILE:LINE: reason" and never quote a
 * hash.
 *
 * Passwords: PBKDF2-HMAC-SHA256 (OpenSSL) with a 16-byte random salt and
 * the iteration count stored per hash (AUTH_PBKDF2_ITER by default). Chosen
 * over scrypt/argon2 because that exact value is SCRAM-SHA-256's
 * SaltedPassword (RFC 7677): the PostgreSQL door can run SCRAM from the
 * stored hash without ever knowing the password (auth_user_scram()).
 * Verifying a password is slow on purpose, so a password verified once is
 * remembered (SHA-256 of salt + password, in memory only) and later
 * requests with it cost one fast hash.
 *
 * Tokens: "st_" + 64 hex digits of 256 random bits; the file keeps only
 * SHA-256 of the token. A slow hash protects guessable secrets; nothing can
 * guess 2^256, so a fast hash loses nothing and keeps per-request checks
 * cheap. A parsed file is indexed (users sorted by name and by token
 * hash): a lookup is a binary search whatever the number of users, and
 * every final comparison of secrets is constant-time (CRYPTO_memcmp).
 *
 * Threads: an auth_db_t is used by one thread at a time (the loop thread of
 * a daemon; the password cache is written on verification).
 */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_matcher.h"

#define AUTH_FILE_MAX (1u << 20) /* bytes of a users file */
#define AUTH_MAX_USERS 10000
#define AUTH_LINE_MAX 8192      /* bytes of one line */
#define AUTH_NAME_MAX 64        /* bytes of a user name */
#define AUTH_SECRET_MAX 1024    /* bytes of a presented password or token */
#define AUTH_HEADER_MAX 4096    /* bytes of an Authorization header value */
#define AUTH_PBKDF2_ITER 600000 /* default iterations of a new password hash */
#define AUTH_PBKDF2_ITER_MIN 1000
#define AUTH_PBKDF2_ITER_MAX 10000000
#define AUTH_SALT_LEN 16
#define AUTH_KEY_LEN 32   /* PBKDF2 output = SCRAM SaltedPassword */
#define AUTH_TOKEN_LEN 67 /* "st_" + 64 hex */
#define AUTH_TOKEN_PREFIX "st_"

typedef enum auth_role {
    AUTH_ROLE_NONE = 0, /* route table: open, no credential needed */
    AUTH_ROLE_READ = 1,
    AUTH_ROLE_WRITE = 2,
    AUTH_ROLE_ADMIN = 3,
} auth_role_t;

/* 1 when [s, s+n) is a valid user name (1..AUTH_NAME_MAX of [A-Za-z0-9._@-]). */
int auth_name_ok(const char *s, size_t n);
/* "read", "write", "admin" ("open" for NONE). */
const char *auth_role_name(auth_role_t r);
/* The role called `s`, or AUTH_ROLE_NONE when it is none of the three. */
auth_role_t auth_role_parse(const char *s);

typedef struct auth_db auth_db_t;
typedef struct auth_user auth_user_t;

/* An empty database (no users). Returns 0 or ST_ENOMEM. */
int auth_db_create(auth_db_t **out);
/* Parse a users file text; name_for_errors prefixes messages. Returns 0,
 * or ST_ECONFIG / ST_ELIMIT with "NAME:LINE: reason" in err, ST_ENOMEM. */
int auth_db_parse(const char *text, size_t len, const char *name_for_errors, auth_db_t **out,
                  char *err, size_t errlen);
/* Read and parse the file at path (ST_EIO: cannot read it). */
int auth_db_load_file(const char *path, auth_db_t **out, char *err, size_t errlen);
void auth_db_destroy(auth_db_t *db);
/* The file text of db (what auth_db_parse reads back), appended to out. */
int auth_db_format(const auth_db_t *db, st_buf_t *out);
/* Write db to path atomically (temporary file, fsync, rename), mode 0600. */
int auth_db_save_file(const auth_db_t *db, const char *path, char *err, size_t errlen);

size_t auth_db_count(const auth_db_t *db);
const auth_user_t *auth_db_user_at(const auth_db_t *db, size_t i);
const auth_user_t *auth_db_find(const auth_db_t *db, const char *name);

/* Add a user (no password, no token). selector may be NULL/"" (not
 * confined). Returns 0, ST_EEXIST, ST_EINVAL (bad name/role, with err),
 * ST_EPARSE (bad selector, with err), ST_ELIMIT (too many users), ST_ENOMEM. */
int auth_db_add(auth_db_t *db, const char *name, auth_role_t role, const char *selector, char *err,
                size_t errlen);
/* Remove a user: 0 or ST_ENOENT. */
int auth_db_remove(auth_db_t *db, const char *name);
/* Set a user's password (a new salt; iterations 0 = AUTH_PBKDF2_ITER). */
int auth_db_set_password(auth_db_t *db, const char *name, const char *password,
                         uint32_t iterations);
/* Make a new random token for a user (replacing any old one) and write it,
 * NUL-terminated, to token[AUTH_TOKEN_LEN + 1]. 0, ST_ENOENT, ST_EIO (no
 * randomness). */
int auth_db_new_token(auth_db_t *db, const char *name, char *token);

const char *auth_user_name(const auth_user_t *u);
auth_role_t auth_user_role(const auth_user_t *u);
/* The confining selector as written, or NULL when the user is not confined. */
const char *auth_user_selector(const auth_user_t *u);
/* Its parsed matchers (valid as long as the db): count, *m set. 0 = not confined. */
size_t auth_user_matchers(const auth_user_t *u, const st_matcher_t **m);
int auth_user_has_password(const auth_user_t *u);
int auth_user_has_token(const auth_user_t *u);
/* The stored PBKDF2 parameters and key for SCRAM-SHA-256: the salt (its
 * length in *salt_len), the iteration count and SaltedPassword. Returns 0,
 * or ST_ENOENT when the user has no password. */
int auth_user_scram(const auth_user_t *u, const uint8_t **salt, size_t *salt_len,
                    uint32_t *iterations, const uint8_t **salted_password);

/* ---- credentials -------------------------------------------------------- */

typedef enum auth_cred_kind {
    AUTH_CRED_NONE = 0, /* nothing presented */
    AUTH_CRED_PASSWORD, /* user + password (Basic, u=/p=) */
    AUTH_CRED_TOKEN,    /* Bearer / Token / a password that is a token */
    AUTH_CRED_BAD,      /* presented but malformed */
} auth_cred_kind_t;

typedef struct auth_cred {
    auth_cred_kind_t kind;
    char user[AUTH_NAME_MAX + 1];
    char secret[AUTH_SECRET_MAX + 1]; /* password or token */
    size_t secret_len;
    const char *why; /* AUTH_CRED_BAD: a static reason */
} auth_cred_t;

/*
 * The credential of a request: the Authorization header value (NULL: none)
 * — "Basic base64(user:password)", "Bearer TOKEN", "Token TOKEN" (schemes
 * case-insensitive) —, else InfluxDB's u= and p= parameters (NULL: absent;
 * p alone is a token). A password that starts with "st_" is taken as a
 * token whatever the user name (Grafana and InfluxDB clients send tokens as
 * Basic passwords). Pure; never fails (kind says what it found).
 */
void auth_cred_parse(const char *authorization, const char *u_param, const char *p_param,
                     auth_cred_t *out);
/* Wipe the secret. */
void auth_cred_clear(auth_cred_t *c);

typedef enum auth_result {
    AUTH_OK = 0,
    AUTH_MISSING,         /* no credential */
    AUTH_MALFORMED,       /* a header that does not parse */
    AUTH_BAD_CREDENTIALS, /* unknown user or wrong password */
    AUTH_BAD_TOKEN,       /* no user holds this token */
    AUTH_RESULT_COUNT
} auth_result_t;
/* Metric label of a result: "ok", "missing", "malformed", "bad_credentials", "bad_token". */
const char *auth_result_name(auth_result_t r);

/* Check a credential: AUTH_OK with *user set, or why not. */
auth_result_t auth_check(auth_db_t *db, const auth_cred_t *c, const auth_user_t **user);
/* The same for doors with their own framing (RESP AUTH). */
auth_result_t auth_check_password(auth_db_t *db, const char *name, const char *password, size_t len,
                                  const auth_user_t **user);
auth_result_t auth_check_token(const auth_db_t *db, const char *token, size_t len,
                               const auth_user_t **user);
/*
 * auth_check_password in three steps, for a daemon that keeps the slow hash
 * off its loop: auth_password_begin (loop) answers at once from the cache
 * (AUTH_OK) or says AUTH_SLOW with *user the user (NULL: no such user, or
 * no password); auth_password_slow (any thread; u may be NULL: it then does
 * the same work and fails) runs PBKDF2; auth_password_remember (loop)
 * caches a password auth_password_slow accepted.
 */
#define AUTH_SLOW AUTH_RESULT_COUNT
int auth_password_begin(auth_db_t *db, const char *name, const char *password, size_t len,
                        const auth_user_t **user);
int auth_password_slow(const auth_user_t *u, const char *password, size_t len);
void auth_password_remember(const auth_user_t *u, const char *password, size_t len);

/* Does the series (sorted labels) satisfy the user's confinement? 1 yes
 * (always, when not confined), 0 no. Regex matchers are compiled at load. */
struct st_label;
int auth_user_allows(const auth_user_t *u, const struct st_label *labels, size_t n);

/* Standard padded base64 s[0..n) that decodes to exactly `want` bytes
 * (at most 72): 0, or -1. */
int auth_unb64(const char *s, size_t n, uint8_t *out, size_t want);

#endif
