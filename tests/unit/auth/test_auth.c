/* test_auth — the users file, password and token hashes, roles,
 * confinement and the HTTP credential parser (common/auth/auth.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "st_err.h"
#include "st_labels.h"

/* A database of one user with a password (few iterations: fast tests). */
static auth_db_t *one_user(const char *name, auth_role_t role, const char *sel, const char *pw)
{
    auth_db_t *db;
    char err[300];
    assert_int_equal(auth_db_create(&db), 0);
    assert_int_equal(auth_db_add(db, name, role, sel, err, sizeof err), 0);
    if (pw)
        assert_int_equal(auth_db_set_password(db, name, pw, AUTH_PBKDF2_ITER_MIN), 0);
    return db;
}

static void parse_fails(const char *text, int rc, const char *needle)
{
    auth_db_t *db = (auth_db_t *)1;
    char err[400] = "";
    assert_int_equal(auth_db_parse(text, strlen(text), "u", &db, err, sizeof err), rc);
    assert_null(db);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not hold '%s'", err, needle);
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(auth_role_parse("read"), AUTH_ROLE_READ);
    assert_int_equal(auth_role_parse("write"), AUTH_ROLE_WRITE);
    assert_int_equal(auth_role_parse("admin"), AUTH_ROLE_ADMIN);
    assert_int_equal(auth_role_parse("root"), AUTH_ROLE_NONE);
    assert_true(AUTH_ROLE_READ < AUTH_ROLE_WRITE && AUTH_ROLE_WRITE < AUTH_ROLE_ADMIN);
    assert_string_equal(auth_role_name(AUTH_ROLE_WRITE), "write");
}

static void test_round_trip(void **state)
{
    (void)state;
    auth_db_t *db = one_user("alice", AUTH_ROLE_ADMIN, NULL, "s3cret");
    char err[300], tok[AUTH_TOKEN_LEN + 1];
    assert_int_equal(
        auth_db_add(db, "team-a", AUTH_ROLE_READ, "{team=\"a\",x=~\"y:.*\"}", err, sizeof err), 0);
    assert_int_equal(auth_db_new_token(db, "team-a", tok), 0);
    assert_int_equal(strlen(tok), AUTH_TOKEN_LEN);
    assert_memory_equal(tok, "st_", 3);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(auth_db_format(db, &b), 0);
    assert_null(memmem(b.data, b.len, tok, strlen(tok))); /* only the hash is kept */
    assert_null(memmem(b.data, b.len, "s3cret", 6));
    auth_db_t *back;
    assert_int_equal(auth_db_parse((const char *)b.data, b.len, "u", &back, err, sizeof err), 0);
    assert_int_equal(auth_db_count(back), 2);
    const auth_user_t *u = auth_db_find(back, "team-a");
    assert_non_null(u);
    assert_string_equal(auth_user_selector(u), "{team=\"a\",x=~\"y:.*\"}");
    const auth_user_t *got;
    assert_int_equal(auth_check_token(back, tok, strlen(tok), &got), AUTH_OK);
    assert_ptr_equal(got, u);
    assert_int_equal(auth_check_password(back, "alice", "s3cret", 6, &got), AUTH_OK);
    assert_string_equal(auth_user_name(got), "alice");
    assert_int_equal(auth_user_role(got), AUTH_ROLE_ADMIN);
    /* the same file text again */
    st_buf_t b2;
    st_buf_init(&b2);
    assert_int_equal(auth_db_format(back, &b2), 0);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);
    st_buf_deinit(&b);
    st_buf_deinit(&b2);
    auth_db_destroy(back);
    auth_db_destroy(db);
}

static void test_passwords(void **state)
{
    (void)state;
    auth_db_t *db = one_user("bob", AUTH_ROLE_READ, NULL, "pw");
    const auth_user_t *u;
    assert_int_equal(auth_check_password(db, "bob", "pw", 2, &u), AUTH_OK);
    assert_int_equal(auth_check_password(db, "bob", "pw", 2, &u), AUTH_OK); /* cached */
    assert_int_equal(auth_check_password(db, "bob", "pW", 2, &u), AUTH_BAD_CREDENTIALS);
    assert_null(u);
    assert_int_equal(auth_check_password(db, "bob", "p", 1, &u), AUTH_BAD_CREDENTIALS);
    assert_int_equal(auth_check_password(db, "eve", "pw", 2, &u), AUTH_BAD_CREDENTIALS);
    /* the three steps a daemon uses */
    auth_db_t *db2 = one_user("carl", AUTH_ROLE_WRITE, NULL, "x");
    assert_int_equal(auth_password_begin(db2, "carl", "x", 1, &u), AUTH_SLOW);
    assert_non_null(u);
    assert_int_equal(auth_password_slow(u, "y", 1), 0);
    assert_int_equal(auth_password_slow(u, "x", 1), 1);
    auth_password_remember(u, "x", 1);
    assert_int_equal(auth_password_begin(db2, "carl", "x", 1, &u), AUTH_OK);
    assert_int_equal(auth_password_begin(db2, "nobody", "x", 1, &u), AUTH_SLOW);
    assert_null(u);
    assert_int_equal(auth_password_slow(NULL, "x", 1), 0);
    /* SCRAM: the stored key is PBKDF2-HMAC-SHA256(password, salt, i) */
    const uint8_t *salt, *key;
    size_t sl;
    uint32_t it;
    u = auth_db_find(db2, "carl");
    assert_int_equal(auth_user_scram(u, &salt, &sl, &it, &key), 0);
    assert_int_equal(sl, AUTH_SALT_LEN);
    assert_int_equal(it, AUTH_PBKDF2_ITER_MIN);
    char err[100];
    assert_int_equal(auth_db_add(db2, "nopw", AUTH_ROLE_READ, NULL, err, sizeof err), 0);
    assert_int_equal(auth_user_scram(auth_db_find(db2, "nopw"), &salt, &sl, &it, &key), ST_ENOENT);
    auth_db_destroy(db2);
    auth_db_destroy(db);
}

/* A known PBKDF2-HMAC-SHA256 vector (RFC 7914 section 11: "passwd",
 * "salt", 1 iteration) cannot be used (the salt is 16 bytes here), so the
 * file is written by hand from Python's hashlib.pbkdf2_hmac('sha256',
 * b'password', b'0123456789abcdef', 1000). */
static void test_known_hash(void **state)
{
    (void)state;
    const char *text = "u1:read:pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$"
                       "hRRjgXWkW8ResfIvBP99J/T4vkgEmMRV/0tJTOjR59I=::\n";
    auth_db_t *db;
    char err[300];
    assert_int_equal(auth_db_parse(text, strlen(text), "u", &db, err, sizeof err), 0);
    const auth_user_t *u;
    assert_int_equal(auth_check_password(db, "u1", "password", 8, &u), AUTH_OK);
    auth_db_destroy(db);
}

static void test_bad_files(void **state)
{
    (void)state;
    parse_fails("alice:read::\n", ST_ECONFIG, "u:1: expected NAME:ROLE");
    parse_fails("# c\n\nbad name:read:::\n", ST_ECONFIG, "u:3: bad user name");
    parse_fails("a:root:::\n", ST_ECONFIG, "bad role for user 'a'");
    parse_fails("a:read:::\nb:read:::\na:write:::\n", ST_ECONFIG,
                "u:3: duplicate user 'a' (first at line 1)");
    parse_fails("a:read:md5$x:::\n", ST_ECONFIG, "bad password hash for user 'a'");
    parse_fails("a:read:pbkdf2-sha256$10$MDEyMzQ1Njc4OWFiY2RlZg==$"
                "Wxpz/hcm7fY7QtsT4KkeAcNwG6mHb2ybwvoxgnYTEmM=::\n",
                ST_ECONFIG, "bad password hash"); /* iterations under the minimum */
    parse_fails("a:read::sha256$abc:\n", ST_ECONFIG, "bad token hash for user 'a'");
    parse_fails("a:read:::{x=\n", ST_ECONFIG, "user 'a': bad selector");
    parse_fails("a:read:::{x=~\"(\"}\n", ST_ECONFIG, "does not compile");
    char *big = malloc(AUTH_FILE_MAX + 2);
    memset(big, '#', AUTH_FILE_MAX + 1);
    big[AUTH_FILE_MAX + 1] = '\0';
    parse_fails(big, ST_ELIMIT, "larger than");
    memset(big, 'a', AUTH_LINE_MAX + 10);
    big[AUTH_LINE_MAX + 10] = '\0';
    parse_fails(big, ST_ELIMIT, "u:1: line longer than");
    free(big);
    /* comments, blank lines, CRLF and a selector holding ':' are fine */
    const char *ok = "# users\r\n\r\n  a:read:::{x=\"1:2\"}\r\nb:admin:::\n";
    auth_db_t *db;
    char err[300];
    assert_int_equal(auth_db_parse(ok, strlen(ok), "u", &db, err, sizeof err), 0);
    assert_int_equal(auth_db_count(db), 2);
    assert_string_equal(auth_user_selector(auth_db_find(db, "a")), "{x=\"1:2\"}");
    assert_null(auth_user_selector(auth_db_find(db, "b")));
    auth_db_destroy(db);
}

static void test_edit(void **state)
{
    (void)state;
    auth_db_t *db;
    char err[300], t1[AUTH_TOKEN_LEN + 1], t2[AUTH_TOKEN_LEN + 1];
    assert_int_equal(auth_db_create(&db), 0);
    assert_int_equal(auth_db_add(db, "x y", AUTH_ROLE_READ, NULL, err, sizeof err), ST_EINVAL);
    assert_int_equal(auth_db_add(db, "x", AUTH_ROLE_NONE, NULL, err, sizeof err), ST_EINVAL);
    assert_int_equal(auth_db_add(db, "x", AUTH_ROLE_READ, "{", err, sizeof err), ST_EPARSE);
    assert_int_equal(auth_db_add(db, "x", AUTH_ROLE_READ, NULL, err, sizeof err), 0);
    assert_int_equal(auth_db_add(db, "x", AUTH_ROLE_READ, NULL, err, sizeof err), ST_EEXIST);
    assert_int_equal(auth_db_new_token(db, "x", t1), 0);
    assert_int_equal(auth_db_new_token(db, "x", t2), 0); /* rotate */
    assert_string_not_equal(t1, t2);
    const auth_user_t *u;
    assert_int_equal(auth_check_token(db, t1, strlen(t1), &u), AUTH_BAD_TOKEN);
    assert_int_equal(auth_check_token(db, t2, strlen(t2), &u), AUTH_OK);
    assert_int_equal(auth_db_new_token(db, "nobody", t1), ST_ENOENT);
    assert_int_equal(auth_db_remove(db, "x"), 0);
    assert_int_equal(auth_db_remove(db, "x"), ST_ENOENT);
    assert_int_equal(auth_check_token(db, t2, strlen(t2), &u), AUTH_BAD_TOKEN);
    /* save and load a file */
    char path[] = "/tmp/test_auth_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(auth_db_add(db, "y", AUTH_ROLE_WRITE, NULL, err, sizeof err), 0);
    assert_int_equal(auth_db_save_file(db, path, err, sizeof err), 0);
    auth_db_t *back;
    assert_int_equal(auth_db_load_file(path, &back, err, sizeof err), 0);
    assert_int_equal(auth_user_role(auth_db_find(back, "y")), AUTH_ROLE_WRITE);
    auth_db_destroy(back);
    unlink(path);
    assert_int_equal(auth_db_load_file(path, &back, err, sizeof err), ST_EIO);
    auth_db_destroy(db);
}

static void test_confinement(void **state)
{
    (void)state;
    auth_db_t *db = one_user("c", AUTH_ROLE_WRITE, "{team=\"a\",env!~\"prod.*\"}", NULL);
    const auth_user_t *u = auth_db_find(db, "c");
    const st_matcher_t *m;
    assert_int_equal(auth_user_matchers(u, &m), 2);
    st_label_t l[3] = {{"__name__", "cpu", 8, 3}, {"env", "dev", 3, 3}, {"team", "a", 4, 1}};
    assert_true(auth_user_allows(u, l, 3));
    l[2].value = "b";
    assert_false(auth_user_allows(u, l, 3));
    l[2].value = "a";
    l[1].value = "prod1";
    l[1].value_len = 5;
    assert_false(auth_user_allows(u, l, 3));
    assert_false(auth_user_allows(u, l, 1)); /* no team label: "" != "a" */
    auth_db_t *db2 = one_user("free", AUTH_ROLE_READ, NULL, NULL);
    assert_true(auth_user_allows(auth_db_find(db2, "free"), l, 1));
    assert_int_equal(auth_user_matchers(auth_db_find(db2, "free"), &m), 0);
    auth_db_destroy(db2);
    auth_db_destroy(db);
}

static void test_credentials(void **state)
{
    (void)state;
    auth_cred_t c;
    auth_cred_parse(NULL, NULL, NULL, &c);
    assert_int_equal(c.kind, AUTH_CRED_NONE);
    auth_cred_parse("Basic YWxpY2U6cHc6eA==", NULL, NULL, &c); /* alice:pw:x */
    assert_int_equal(c.kind, AUTH_CRED_PASSWORD);
    assert_string_equal(c.user, "alice");
    assert_string_equal(c.secret, "pw:x");
    auth_cred_parse("basic YWxpY2U6cHc", NULL, NULL, &c); /* no padding */
    assert_int_equal(c.kind, AUTH_CRED_PASSWORD);
    assert_string_equal(c.secret, "pw");
    auth_cred_parse("Bearer st_abc", NULL, NULL, &c);
    assert_int_equal(c.kind, AUTH_CRED_TOKEN);
    assert_string_equal(c.secret, "st_abc");
    auth_cred_parse("Token   st_abc  ", NULL, NULL, &c);
    assert_int_equal(c.kind, AUTH_CRED_TOKEN);
    assert_string_equal(c.secret, "st_abc");
    auth_cred_parse("Basic eDpzdF90b2s=", NULL, NULL, &c); /* x:st_tok: a token */
    assert_int_equal(c.kind, AUTH_CRED_TOKEN);
    assert_string_equal(c.secret, "st_tok");
    auth_cred_parse(NULL, "u1", "p1", &c);
    assert_int_equal(c.kind, AUTH_CRED_PASSWORD);
    assert_string_equal(c.user, "u1");
    auth_cred_parse(NULL, NULL, "st_x", &c);
    assert_int_equal(c.kind, AUTH_CRED_TOKEN);
    /* the header wins over u=/p= */
    auth_cred_parse("Bearer st_h", "u", "p", &c);
    assert_string_equal(c.secret, "st_h");
    const char *bad[] = {"Digest x",
                         "Basic",
                         "Basic ",
                         "Bearer",
                         "Bearer a b",
                         "Basic !!!!",
                         "Basic bm9jb2xvbg==" /* nocolon */,
                         "Basic OnB3" /* :pw */,
                         "Basicx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        auth_cred_parse(bad[i], NULL, NULL, &c);
        if (c.kind != AUTH_CRED_BAD)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(c.why);
    }
    auth_cred_parse(NULL, NULL, "pw", &c); /* p= without u= and not a token */
    assert_int_equal(c.kind, AUTH_CRED_BAD);
    char *big = malloc(AUTH_HEADER_MAX + 10);
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', AUTH_HEADER_MAX);
    big[AUTH_HEADER_MAX + 7] = '\0';
    auth_cred_parse(big, NULL, NULL, &c);
    assert_int_equal(c.kind, AUTH_CRED_BAD);
    free(big);
    auth_cred_clear(&c);
    assert_int_equal(c.kind, AUTH_CRED_NONE);
    assert_int_equal(c.secret[0], 0);
    assert_string_equal(auth_result_name(AUTH_BAD_TOKEN), "bad_token");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles),       cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_passwords),   cmocka_unit_test(test_known_hash),
        cmocka_unit_test(test_bad_files),   cmocka_unit_test(test_edit),
        cmocka_unit_test(test_confinement), cmocka_unit_test(test_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
