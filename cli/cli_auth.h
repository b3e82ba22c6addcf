/*
 * cli_auth — the global --token / --user options and STRATA_TOKEN /
 * STRATA_PASSWORD: the Authorization header of every request (cli_auth.c).
 */
#ifndef CLI_AUTH_H
#define CLI_AUTH_H

enum { CLI_AUTH_TOKEN = 1, CLI_AUTH_USER = 2 };

/* Note --token (CLI_AUTH_TOKEN) or --user (CLI_AUTH_USER) = arg. */
void cli_auth_option(int which, const char *arg);
/* After the options: set the header (asking for a password if needed).
 * 0, or an exit code after a message naming cmd. */
int cli_auth_apply(const char *cmd);

#endif
