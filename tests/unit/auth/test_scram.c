/* test_scram — SCRAM-SHA-256 server side (common/auth/scram.h): the
 * RFC 7677 example exchange, a round trip with our own server-first, and
 * the messages that must be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "auth.h"
#include "scram.h"
#include "st_err.h"

static void salted(const char *pw, const uint8_t *salt, size_t sl, int iter, uint8_t *out)
{
    assert_int_equal(PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, (int)sl, iter, EVP_sha256(),
                                       SCRAM_KEY_LEN, out),
                     1);
}

/* RFC 7677 section 3: user "user", password "pencil". */
static void test_rfc7677(void **state)
{
    (void)state;
    const char *first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const char *snonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const char *sfirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                         "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const char *final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    scram_first_t f;
    assert_int_equal(scram_parse_first(first, strlen(first), &f), 0);
    assert_int_equal(f.cbind, 'n');
    assert_int_equal(f.gs2_len, 3);
    assert_int_equal(f.user_len, 4);
    assert_memory_equal(f.user, "user", 4);
    assert_int_equal(f.nonce_len, 20);
    scram_server_t s = {0};
    memcpy(s.gs2, "n,,", 3);
    s.gs2_len = 3;
    s.bare_len = strlen(first) - 3;
    memcpy(s.bare, first + 3, s.bare_len);
    s.first_len = strlen(sfirst);
    memcpy(s.first, sfirst, s.first_len);
    s.nonce_len = strlen(snonce);
    memcpy(s.nonce, snonce, s.nonce_len);
    uint8_t salt[16], key[SCRAM_KEY_LEN];
    assert_int_equal(auth_unb64("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt, 16), 0);
    salted("pencil", salt, 16, 4096, key);
    char out[128];
    assert_int_equal(scram_server_final(&s, final, strlen(final), key, out, sizeof out), 0);
    assert_string_equal(out, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    /* another password; an unknown user */
    salted("pencil2", salt, 16, 4096, key);
    assert_int_equal(scram_server_final(&s, final, strlen(final), key, out, sizeof out), ST_EINVAL);
    assert_int_equal(scram_server_final(&s, final, strlen(final), NULL, out, sizeof out),
                     ST_EINVAL);
}

/* Our server-first, then a client computing its proof. */
static void test_round_trip(void **state)
{
    (void)state;
    uint8_t salt[16], key[SCRAM_KEY_LEN], rnd[SCRAM_NONCE_BYTES];
    for (size_t i = 0; i < sizeof salt; i++)
        salt[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t)(200 + i);
    salted("secret", salt, 16, 4096, key);
    for (int y = 0; y < 2; y++) {
        const char *first = y ? "y,,n=,r=abc" : "n,a=bob,n=bob,r=abc,x=ext";
        scram_server_t s;
        assert_int_equal(scram_server_first(&s, first, strlen(first), salt, 16, 4096, rnd), 0);
        assert_int_equal(strncmp(s.first, "r=abc", 5), 0);
        assert_non_null(strstr(s.first, ",i=4096"));
        static char cb[32], without[4096], am[16384], msg[8192];
        uint8_t proof[SCRAM_KEY_LEN];
        EVP_EncodeBlock((unsigned char *)cb, (const unsigned char *)s.gs2, (int)s.gs2_len);
        snprintf(without, sizeof without, "c=%s,r=%s", cb, s.nonce);
        snprintf(am, sizeof am, "%.*s,%s,%s", (int)s.bare_len, s.bare, s.first, without);
        assert_int_equal(scram_client_proof(key, am, strlen(am), proof), 0);
        char pb[64];
        EVP_EncodeBlock((unsigned char *)pb, proof, SCRAM_KEY_LEN);
        snprintf(msg, sizeof msg, "%s,p=%s", without, pb);
        char out[128];
        assert_int_equal(scram_server_final(&s, msg, strlen(msg), key, out, sizeof out), 0);
        assert_int_equal(strncmp(out, "v=", 2), 0);
        /* a flipped proof bit; another nonce; another channel binding */
        static char bad[8192];
        snprintf(bad, sizeof bad, "%s", msg);
        bad[strlen(bad) - 3] ^= 1;
        assert_int_not_equal(scram_server_final(&s, bad, strlen(bad), key, out, sizeof out), 0);
        snprintf(bad, sizeof bad, "c=%s,r=%sX,p=%s", cb, s.nonce, pb);
        assert_int_equal(scram_server_final(&s, bad, strlen(bad), key, out, sizeof out), ST_EPROTO);
        snprintf(bad, sizeof bad, "c=%s,r=%s,p=%s", y ? "biws" : "eSws", s.nonce, pb);
        assert_int_equal(scram_server_final(&s, bad, strlen(bad), key, out, sizeof out), ST_EPROTO);
    }
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad_first[] = {"",
                               "n,,",
                               "p=tls-server-end-point,,n=u,r=abc",
                               "n,,m=x,n=u,r=abc",
                               "n,,n=u",
                               "n,,n=u,r=",
                               "n,,n=u,r=a b",
                               "x,,n=u,r=abc",
                               "n,n=u,r=abc",
                               "n,,r=abc,n=u",
                               "n,,n=u,r=abc,=",
                               "n,a=x"};
    scram_first_t f;
    for (size_t i = 0; i < sizeof bad_first / sizeof bad_first[0]; i++)
        if (scram_parse_first(bad_first[i], strlen(bad_first[i]), &f) == 0)
            fail_msg("client-first '%s' was accepted", bad_first[i]);
    const char *bad_final[] = {"",
                               "c=biws",
                               "c=biws,r=abc",
                               "c=biws,r=abc,p=",
                               "c=biws,r=abc,p=AAAA",
                               "r=abc,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                               "c=biws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1"};
    scram_final_t g;
    for (size_t i = 0; i < sizeof bad_final / sizeof bad_final[0]; i++)
        if (scram_parse_final(bad_final[i], strlen(bad_final[i]), &g) == 0)
            fail_msg("client-final '%s' was accepted", bad_final[i]);
    const char *ok = "c=biws,r=abc,x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    assert_int_equal(scram_parse_final(ok, strlen(ok), &g), 0);
    assert_int_equal(g.without_proof, strlen("c=biws,r=abc,x=1"));
    char big[SCRAM_MAX_MSG + 10];
    memset(big, 'a', sizeof big);
    assert_int_equal(scram_parse_first(big, sizeof big, &f), ST_ELIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
