/*
 * cli_auth — the credential every request of the CLI carries: --token TOKEN
 * (else $STRATA_TOKEN) as "Authorization: Bearer TOKEN", or --user NAME
 * with the password from $STRATA_PASSWORD (else asked on the terminal,
 * without echo) as "Authorization: Basic ...". The options are global: every
 * command takes them (cli_opts_parse hands them here); the header goes to
 * httpc_set_authorization(). Secrets never appear in messages.
 */
#include "cli_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "httpc.h"

#define CLI_SECRET_MAX 1024

static const char *opt_token, *opt_user;
static char header[16 + 4 * (CLI_SECRET_MAX + 80) / 3 + 8];

void cli_auth_option(int which, const char *arg)
{
    if (which == CLI_AUTH_TOKEN)
        opt_token = arg;
    else
        opt_user = arg;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* The password of --user from the terminal, echo off. */
static int ask_password(char *buf, size_t cap)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty)
        return -1;
    struct termios old, quiet;
    int fd = fileno(tty), restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    fprintf(tty, "Password for %s: ", opt_user);
    fflush(tty);
    char *got = fgets(buf, (int)cap, tty);
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    if (!got)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

int cli_auth_apply(const char *cmd)
{
    const char *token = opt_token ? opt_token : getenv("STRATA_TOKEN");
    if (opt_token && opt_user)
        return cli_usage_error(cmd, "--token and --user exclude each other");
    if (token && *token && !opt_user) {
        if (strlen(token) > CLI_SECRET_MAX || strpbrk(token, " \t\r\n"))
            return cli_usage_error(cmd, "bad token (--token or STRATA_TOKEN)");
        snprintf(header, sizeof header, "Bearer %s", token);
        httpc_set_authorization(header);
        return 0;
    }
    if (!opt_user)
        return 0;
    char pw[CLI_SECRET_MAX + 2], pair[CLI_SECRET_MAX + 80];
    const char *env = getenv("STRATA_PASSWORD");
    if (env)
        snprintf(pw, sizeof pw, "%s", env);
    else if (ask_password(pw, sizeof pw) != 0)
        return cli_fail(cmd, "--user %s: no password (set STRATA_PASSWORD or use a terminal)",
                        opt_user);
    if (strlen(opt_user) > 64 || strchr(opt_user, ':') || strlen(pw) > CLI_SECRET_MAX)
        return cli_usage_error(cmd, "bad --user or password");
    int n = snprintf(pair, sizeof pair, "%s:%s", opt_user, pw);
    memcpy(header, "Basic ", 6);
    b64((const unsigned char *)pair, (size_t)n, header + 6);
    memset(pw, 0, sizeof pw);
    memset(pair, 0, sizeof pair);
    httpc_set_authorization(header);
    return 0;
}
