/*
 * scram — server side of SCRAM-SHA-256 (see scram.h): message parsers,
 * server-first, and the proof check with OpenSSL's HMAC / SHA-256 and a
 * constant-time compare (CRYPTO_memcmp).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "auth.h"
#include "scram.h"
#include "st_err.h"

/* Next attribute "x=value" of msg[*at..len) up to ',' or the end: 0 with
 * *name and the value, -1 at a malformed one. */
static int attr(const char *msg, size_t len, size_t *at, char *name, const char **v, size_t *vl)
{
    size_t i = *at;
    if (i + 2 > len || msg[i + 1] != '=' ||
        !((msg[i] >= 'a' && msg[i] <= 'z') || (msg[i] >= 'A' && msg[i] <= 'Z')))
        return -1;
    *name = msg[i];
    size_t j = i + 2;
    while (j < len && msg[j] != ',')
        j++;
    *v = msg + i + 2;
    *vl = j - i - 2;
    *at = j < len ? j + 1 : j;
    return 0;
}

/* A nonce: printable ASCII except ',' (RFC 5802 §7). */
static int nonce_ok(const char *s, size_t n)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
            return 0;
    return 1;
}

static int has_nul(const char *s, size_t n)
{
    return memchr(s, 0, n) != NULL;
}

int scram_parse_first(const char *msg, size_t len, scram_first_t *out)
{
    memset(out, 0, sizeof *out);
    if (len > SCRAM_MAX_MSG)
        return ST_ELIMIT;
    if (len < 3 || has_nul(msg, len))
        return ST_EPROTO;
    /* gs2-header: cbind-flag "," [authzid] "," */
    if (msg[0] != 'n' && msg[0] != 'y')
        return ST_EPROTO; /* "p=": channel binding, not offered */
    if (msg[1] != ',')
        return ST_EPROTO;
    size_t at = 2;
    if (msg[at] == 'a') {
        char nm;
        const char *v;
        size_t vl;
        if (attr(msg, len, &at, &nm, &v, &vl) || nm != 'a' || at > len || msg[at - 1] != ',')
            return ST_EPROTO;
    } else {
        if (msg[at] != ',')
            return ST_EPROTO;
        at++;
    }
    if (msg[at - 1] != ',')
        return ST_EPROTO;
    out->cbind = msg[0];
    out->gs2 = msg;
    out->gs2_len = at;
    out->bare = msg + at;
    out->bare_len = len - at;
    char nm;
    const char *v;
    size_t vl;
    if (attr(msg, len, &at, &nm, &v, &vl) || nm != 'n')
        return ST_EPROTO; /* also "m=": a mandatory extension we do not know */
    out->user = v;
    out->user_len = vl;
    if (attr(msg, len, &at, &nm, &v, &vl) || nm != 'r' || !nonce_ok(v, vl))
        return ST_EPROTO;
    out->nonce = v;
    out->nonce_len = vl;
    while (at < len) /* extensions: skipped, but they must be well formed */
        if (attr(msg, len, &at, &nm, &v, &vl))
            return ST_EPROTO;
    return 0;
}

int scram_parse_final(const char *msg, size_t len, scram_final_t *out)
{
    memset(out, 0, sizeof *out);
    if (len > SCRAM_MAX_MSG)
        return ST_ELIMIT;
    if (has_nul(msg, len))
        return ST_EPROTO;
    size_t at = 0;
    char nm;
    const char *v;
    size_t vl;
    if (attr(msg, len, &at, &nm, &v, &vl) || nm != 'c')
        return ST_EPROTO;
    out->cbind = v;
    out->cbind_len = vl;
    if (attr(msg, len, &at, &nm, &v, &vl) || nm != 'r' || !nonce_ok(v, vl))
        return ST_EPROTO;
    out->nonce = v;
    out->nonce_len = vl;
    for (;;) {
        size_t start = at;
        if (at >= len || attr(msg, len, &at, &nm, &v, &vl))
            return ST_EPROTO; /* no proof */
        if (nm == 'p') {
            if (at != len || start == 0)
                return ST_EPROTO; /* the proof is the last attribute */
            out->without_proof = start - 1;
            return auth_unb64(v, vl, out->proof, SCRAM_KEY_LEN) ? ST_EPROTO : 0;
        }
    }
}

static int b64(const uint8_t *p, size_t n, char *out, size_t cap)
{
    if ((n + 2) / 3 * 4 + 1 > cap)
        return ST_ELIMIT;
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return 0;
}

int scram_server_first(scram_server_t *s, const char *msg, size_t len, const uint8_t *salt,
                       size_t salt_len, uint32_t iterations, const uint8_t *rnd)
{
    scram_first_t f;
    int rc = scram_parse_first(msg, len, &f);
    if (rc)
        return rc;
    memcpy(s->gs2, f.gs2, f.gs2_len);
    s->gs2_len = f.gs2_len;
    memcpy(s->bare, f.bare, f.bare_len);
    s->bare_len = f.bare_len;
    char rn[64], sl[128];
    if (b64(rnd, SCRAM_NONCE_BYTES, rn, sizeof rn) || b64(salt, salt_len, sl, sizeof sl))
        return ST_ELIMIT;
    int n = snprintf(s->nonce, sizeof s->nonce, "%.*s%s", (int)f.nonce_len, f.nonce, rn);
    if (n < 0 || (size_t)n >= sizeof s->nonce)
        return ST_ELIMIT;
    s->nonce_len = (size_t)n;
    n = snprintf(s->first, sizeof s->first, "r=%s,s=%s,i=%u", s->nonce, sl, iterations);
    if (n < 0 || (size_t)n >= sizeof s->first)
        return ST_ELIMIT;
    s->first_len = (size_t)n;
    return 0;
}

static int hmac(const uint8_t *key, size_t klen, const void *d, size_t n, uint8_t *out)
{
    unsigned int ol = 0;
    return HMAC(EVP_sha256(), key, (int)klen, d, n, out, &ol) && ol == SCRAM_KEY_LEN ? 0
                                                                                     : ST_ENOMEM;
}

/* ClientSignature's key and the signature over auth message am. */
static int client_sig(const uint8_t *salted, const char *am, size_t n,
                      uint8_t stored[SCRAM_KEY_LEN], uint8_t sig[SCRAM_KEY_LEN],
                      uint8_t ckey[SCRAM_KEY_LEN])
{
    if (hmac(salted, SCRAM_KEY_LEN, "Client Key", 10, ckey))
        return ST_ENOMEM;
    SHA256(ckey, SCRAM_KEY_LEN, stored);
    return hmac(stored, SCRAM_KEY_LEN, am, n, sig);
}

int scram_client_proof(const uint8_t *salted_password, const char *auth_message, size_t len,
                       uint8_t proof[SCRAM_KEY_LEN])
{
    uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], ckey[SCRAM_KEY_LEN];
    int rc = client_sig(salted_password, auth_message, len, stored, sig, ckey);
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        proof[i] = ckey[i] ^ sig[i];
    return rc;
}

int scram_server_final(const scram_server_t *s, const char *msg, size_t len,
                       const uint8_t *salted_password, char *out, size_t cap)
{
    scram_final_t f;
    int rc = scram_parse_final(msg, len, &f);
    if (rc)
        return rc;
    char cb[SCRAM_MAX_MSG * 2];
    if (b64((const uint8_t *)s->gs2, s->gs2_len, cb, sizeof cb))
        return ST_ELIMIT;
    if (f.cbind_len != strlen(cb) || memcmp(f.cbind, cb, f.cbind_len) ||
        f.nonce_len != s->nonce_len || memcmp(f.nonce, s->nonce, f.nonce_len))
        return ST_EPROTO;
    /* AuthMessage = bare "," server-first "," final-without-proof */
    char am[sizeof s->bare + sizeof s->first + SCRAM_MAX_MSG + 2];
    size_t n = 0;
    memcpy(am, s->bare, s->bare_len);
    n += s->bare_len;
    am[n++] = ',';
    memcpy(am + n, s->first, s->first_len);
    n += s->first_len;
    am[n++] = ',';
    memcpy(am + n, msg, f.without_proof);
    n += f.without_proof;
    uint8_t dummy[SCRAM_KEY_LEN] = {0};
    const uint8_t *salted = salted_password ? salted_password : dummy;
    uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], ckey[SCRAM_KEY_LEN], h[SCRAM_KEY_LEN];
    if (client_sig(salted, am, n, stored, sig, ckey))
        return ST_ENOMEM;
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        ckey[i] = f.proof[i] ^ sig[i];
    SHA256(ckey, SCRAM_KEY_LEN, h);
    if (CRYPTO_memcmp(h, stored, SCRAM_KEY_LEN) != 0 || !salted_password)
        return ST_EINVAL;
    uint8_t skey[SCRAM_KEY_LEN], ssig[SCRAM_KEY_LEN];
    if (hmac(salted, SCRAM_KEY_LEN, "Server Key", 10, skey) ||
        hmac(skey, SCRAM_KEY_LEN, am, n, ssig))
        return ST_ENOMEM;
    if (cap < 3 || b64(ssig, SCRAM_KEY_LEN, out + 2, cap - 2))
        return ST_ELIMIT;
    out[0] = 'v';
    out[1] = '=';
    return 0;
}
