/*
 * auth_cred — what credential a request carries (see auth.h,
 * auth_cred_parse): the Authorization header's Basic / Bearer / Token
 * schemes, else InfluxDB's u= and p= query parameters.
 *
 * Pure and bounded: the header is at most AUTH_HEADER_MAX bytes, a name
 * AUTH_NAME_MAX, a secret AUTH_SECRET_MAX; anything longer or malformed is
 * AUTH_CRED_BAD with a static reason (no secret is ever copied into it).
 * Fuzzed by tests/fuzz/fuzz_auth_header.c.
 */
#include "auth.h"

#include <string.h>

#include <openssl/crypto.h>

static int ieq_prefix(const char *s, const char *scheme)
{
    size_t n = strlen(scheme);
    for (size_t i = 0; i < n; i++) {
        char a = s[i], b = scheme[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return 0;
    }
    return s[n] == ' ' || s[n] == '\t';
}

static void bad(auth_cred_t *c, const char *why)
{
    auth_cred_clear(c);
    c->kind = AUTH_CRED_BAD;
    c->why = why;
}

static int b64val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Standard base64, padding optional; -1 on a bad character or length. */
static long b64_decode(const char *s, size_t n, char *out, size_t cap)
{
    while (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (char)(acc >> bits & 0xff);
        }
    }
    return (long)o;
}

/* A secret that is a token: kind TOKEN; else a user + password. */
static void set_secret(auth_cred_t *c, const char *user, size_t ul, const char *pw, size_t pl)
{
    if (pl > AUTH_SECRET_MAX)
        return bad(c, "password or token too long");
    if (ul > AUTH_NAME_MAX)
        return bad(c, "user name too long");
    if (memchr(pw, '\0', pl) || memchr(user, '\0', ul))
        return bad(c, "NUL byte in credential");
    memcpy(c->secret, pw, pl);
    c->secret[pl] = '\0';
    c->secret_len = pl;
    if (pl > 3 && memcmp(pw, AUTH_TOKEN_PREFIX, 3) == 0) {
        c->kind = AUTH_CRED_TOKEN;
        return;
    }
    if (ul == 0)
        return bad(c, "empty user name");
    memcpy(c->user, user, ul);
    c->user[ul] = '\0';
    c->kind = AUTH_CRED_PASSWORD;
}

void auth_cred_clear(auth_cred_t *c)
{
    OPENSSL_cleanse(c, sizeof *c);
    c->kind = AUTH_CRED_NONE;
    c->why = NULL;
}

void auth_cred_parse(const char *h, const char *u, const char *p, auth_cred_t *c)
{
    auth_cred_clear(c);
    if (h) {
        size_t n = strnlen(h, AUTH_HEADER_MAX + 1);
        if (n > AUTH_HEADER_MAX)
            return bad(c, "Authorization header too long");
        const char *v = NULL;
        int basic = 0;
        if (ieq_prefix(h, "basic"))
            v = h + 5, basic = 1;
        else if (ieq_prefix(h, "bearer"))
            v = h + 6;
        else if (ieq_prefix(h, "token"))
            v = h + 5;
        else
            return bad(c, "unsupported Authorization scheme (expected Basic, Bearer or Token)");
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        if (vl == 0)
            return bad(c, "empty credential in Authorization header");
        if (!basic) {
            if (vl > AUTH_SECRET_MAX)
                return bad(c, "token too long");
            for (size_t i = 0; i < vl; i++)
                if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f)
                    return bad(c, "token holds a space or control character");
            memcpy(c->secret, v, vl);
            c->secret[vl] = '\0';
            c->secret_len = vl;
            c->kind = AUTH_CRED_TOKEN;
            return;
        }
        char dec[AUTH_NAME_MAX + AUTH_SECRET_MAX + 2];
        long dl = b64_decode(v, vl, dec, sizeof dec);
        if (dl < 0)
            return bad(c, "Basic credential is not base64 of user:password (or too long)");
        const char *colon = memchr(dec, ':', (size_t)dl);
        if (!colon) {
            OPENSSL_cleanse(dec, sizeof dec);
            return bad(c, "Basic credential has no ':' between user and password");
        }
        set_secret(c, dec, (size_t)(colon - dec), colon + 1, (size_t)(dec + dl - colon - 1));
        OPENSSL_cleanse(dec, sizeof dec);
        return;
    }
    if (p)
        set_secret(c, u ? u : "", u ? strlen(u) : 0, p, strlen(p));
    if (c->kind == AUTH_CRED_PASSWORD && !u)
        bad(c, "p= without u=");
}
