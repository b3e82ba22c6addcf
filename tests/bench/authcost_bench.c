/*
 * authcost_bench — what authentication costs one request on the loop
 * thread: parsing the Authorization header and checking a token (SHA-256
 * + a constant-time compare with every user's hash), and a password
 * already verified once (the cache: one SHA-256), with 1, 100 and 10000
 * users; and one PBKDF2 verification (the thread pool's cost of a first
 * or wrong password). Prints ns per check.
 *
 *   build/tests/bench/strata-authcost-bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    printf("%-8s %16s %18s %16s\n", "users", "token ns/check", "password ns/check",
           "header ns/parse");
    for (int nu = 1; nu <= 10000; nu *= 100) {
        auth_db_t *db;
        char err[200], name[32], tok[AUTH_TOKEN_LEN + 1], hdr[100];
        auth_db_create(&db);
        for (int i = 0; i < nu; i++) {
            snprintf(name, sizeof name, "u%d", i);
            auth_db_add(db, name, AUTH_ROLE_WRITE, NULL, err, sizeof err);
            auth_db_new_token(db, name, tok);
        }
        auth_db_set_password(db, name, "pw", AUTH_PBKDF2_ITER_MIN);
        /* the daemons' form: a parsed file (indexed) */
        st_buf_t text;
        st_buf_init(&text);
        auth_db_format(db, &text);
        auth_db_destroy(db);
        auth_db_parse((const char *)text.data, text.len, "bench", &db, err, sizeof err);
        st_buf_deinit(&text);
        snprintf(hdr, sizeof hdr, "Bearer %s", tok);
        const auth_user_t *u;
        auth_cred_t c;
        double t0 = now_s();
        for (long i = 0; i < iters; i++)
            auth_cred_parse(hdr, NULL, NULL, &c);
        double parse = (now_s() - t0) / (double)iters * 1e9;
        long n = iters;
        t0 = now_s();
        for (long i = 0; i < n; i++)
            if (auth_check_token(db, tok, strlen(tok), &u) != AUTH_OK)
                return 1;
        double tk = (now_s() - t0) / (double)n * 1e9;
        auth_check_password(db, name, "pw", 2, &u); /* fills the cache */
        t0 = now_s();
        for (long i = 0; i < iters; i++)
            if (auth_check_password(db, name, "pw", 2, &u) != AUTH_OK)
                return 1;
        double pw = (now_s() - t0) / (double)iters * 1e9;
        printf("%-8d %16.0f %18.0f %16.0f\n", nu, tk, pw, parse);
        auth_db_destroy(db);
    }
    auth_db_t *db;
    char err[200];
    auth_db_create(&db);
    auth_db_add(db, "p", AUTH_ROLE_READ, NULL, err, sizeof err);
    auth_db_set_password(db, "p", "pw", 0);
    const auth_user_t *u = auth_db_find(db, "p");
    double t0 = now_s();
    int ok = auth_password_slow(u, "pw", 2);
    printf("one PBKDF2-HMAC-SHA256 verification (%d iterations): %.1f ms (%s)\n", AUTH_PBKDF2_ITER,
           (now_s() - t0) * 1e3, ok ? "ok" : "FAILED");
    auth_db_destroy(db);
    return 0;
}
