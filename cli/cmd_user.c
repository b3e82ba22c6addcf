/*
 * cmd_user — `strata user add|list|remove|rotate`: edit a users file
 * (auth.h: NAME:ROLE:PASSWORD-HASH:TOKEN-HASH:SELECTOR) in place.
 *
 *   strata user add NAME --role read|write|admin [--selector SEL]
 *                        [--password-stdin] --file FILE
 *   strata user list --file FILE
 *   strata user remove NAME --file FILE
 *   strata user rotate NAME [--password-stdin] --file FILE
 *
 * add and rotate print a new API token on stdout, once: only its SHA-256
 * is kept. --password-stdin reads a password (the first line) from stdin
 * and stores its PBKDF2 hash. The file is rewritten atomically (mode 0600);
 * a missing file is created by add. Daemons read it on SIGHUP.
 * This runs locally; it does not talk to a router.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "auth.h"
#include "cli.h"
#include "st_err.h"

#define CMD "user"

typedef struct user_opts {
    cli_common_t common;
    const char *file;
    const char *role;
    const char *selector;
    bool password_stdin;
} user_opts_t;

/* The users at path; a missing file is an empty database when may_create. */
static int load(const char *path, bool may_create, auth_db_t **db)
{
    char err[600];
    struct stat st;
    if (may_create && stat(path, &st) != 0 && errno == ENOENT)
        return auth_db_create(db) ? cli_fail(CMD, "out of memory") : 0;
    if (auth_db_load_file(path, db, err, sizeof err) != 0)
        return cli_fail(CMD, "%s", err);
    return 0;
}

static int save(const auth_db_t *db, const char *path)
{
    char err[600];
    if (auth_db_save_file(db, path, err, sizeof err) != 0)
        return cli_fail(CMD, "%s", err);
    return 0;
}

/* The first line of stdin, without its newline. */
static int read_password(char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, stdin))
        return cli_fail(CMD, "--password-stdin: no password on stdin");
    size_t n = strcspn(buf, "\r\n");
    if (buf[n] == '\0' && n == cap - 1)
        return cli_fail(CMD, "--password-stdin: longer than %d bytes", AUTH_SECRET_MAX);
    buf[n] = '\0';
    if (n == 0)
        return cli_fail(CMD, "--password-stdin: empty password");
    if (strncmp(buf, AUTH_TOKEN_PREFIX, 3) == 0) /* it would be taken for a token */
        return cli_fail(CMD, "--password-stdin: a password must not start with \"%s\"",
                        AUTH_TOKEN_PREFIX);
    return 0;
}

/* A new token (printed) and, with --password-stdin, a new password. */
static int credentials(const user_opts_t *o, auth_db_t *db, const char *name)
{
    char token[AUTH_TOKEN_LEN + 1], pw[AUTH_SECRET_MAX + 2];
    int ret;
    if (o->password_stdin) {
        if ((ret = read_password(pw, sizeof pw)) != 0)
            return ret;
        if (auth_db_set_password(db, name, pw, 0) != 0)
            return cli_fail(CMD, "cannot hash the password");
        memset(pw, 0, sizeof pw);
    }
    if (auth_db_new_token(db, name, token) != 0)
        return cli_fail(CMD, "cannot make a token (no randomness)");
    if ((ret = save(db, o->file)) != 0)
        return ret;
    printf("%s\n", token);
    fprintf(stderr, "strata user: the token of '%s' is shown once; keep it (STRATA_TOKEN)\n", name);
    return CLI_EXIT_OK;
}

static int run_user(void *opts, int argc, char **argv)
{
    user_opts_t *o = opts;
    const char *verb = argv[0], *name = argc > 1 ? argv[1] : NULL;
    if (!o->file)
        return cli_usage_error(CMD, "--file FILE is required");
    bool is_list = strcmp(verb, "list") == 0;
    if (!is_list && strcmp(verb, "add") && strcmp(verb, "remove") && strcmp(verb, "rotate"))
        return cli_usage_error(CMD, "unknown action '%s' (add, list, remove or rotate)", verb);
    if (is_list ? argc != 1 : argc != 2)
        return cli_usage_error(CMD, is_list ? "list takes no NAME" : "%s needs one NAME", verb);
    bool is_add = strcmp(verb, "add") == 0;
    if (is_add != (o->role != NULL))
        return cli_usage_error(CMD, is_add ? "add needs --role read|write|admin"
                                           : "--role is for add only");
    if (!is_add && o->selector)
        return cli_usage_error(CMD, "--selector is for add only");
    auth_db_t *db = NULL;
    int ret = load(o->file, is_add, &db);
    if (ret)
        return ret;
    char err[400];
    if (is_list) {
        for (size_t i = 0; i < auth_db_count(db); i++) {
            const auth_user_t *u = auth_db_user_at(db, i);
            printf("%-20s %-6s %-9s %-6s %s\n", auth_user_name(u),
                   auth_role_name(auth_user_role(u)), auth_user_has_password(u) ? "password" : "-",
                   auth_user_has_token(u) ? "token" : "-",
                   auth_user_selector(u) ? auth_user_selector(u) : "");
        }
        ret = CLI_EXIT_OK;
    } else if (strcmp(verb, "remove") == 0) {
        if (auth_db_remove(db, name) != 0)
            ret = cli_fail(CMD, "no user '%s' in %s", name, o->file);
        else
            ret = save(db, o->file);
    } else if (is_add) {
        int rc = auth_db_add(db, name, auth_role_parse(o->role), o->selector, err, sizeof err);
        ret = rc == ST_ENOMEM ? cli_fail(CMD, "out of memory")
              : rc            ? cli_fail(CMD, "%s", err)
                              : credentials(o, db, name);
    } else if (!auth_db_find(db, name)) {
        ret = cli_fail(CMD, "no user '%s' in %s", name, o->file);
    } else {
        ret = credentials(o, db, name);
    }
    auth_db_destroy(db);
    return ret;
}

static const cli_opt_t USER_OPTS[] = {
    {.name = "file",
     .kind = CLI_STR,
     .off = offsetof(user_opts_t, file),
     .label = "--file FILE",
     .help = "the users file ([security] users_file)"},
    CLI_OPT_CHOICE(user_opts_t, role, "role", "read|write|admin", " (read|write|admin)",
                   "--role ROLE", "add: read, write (and read) or admin (everything)"),
    {.name = "selector",
     .kind = CLI_STR,
     .off = offsetof(user_opts_t, selector),
     .label = "--selector SEL",
     .help = "add: confine the user to the series SEL matches,\ne.g. '{team=\"a\"}'"},
    CLI_OPT_FLAG(user_opts_t, password_stdin, "password-stdin",
                 "add, rotate: set a password read from stdin"),
    CLI_OPT_END,
};

static const user_opts_t USER_DEFAULTS = {.common = CLI_COMMON_DEFAULTS};

const cli_cmd_t cli_cmd_user = {
    .name = "user",
    .args = "add|list|remove|rotate [NAME]",
    .summary = "manage the users file (roles, tokens, passwords)",
    .synopsis = "user add|list|remove|rotate [NAME] --file FILE [--role ROLE] [--selector SEL]\n"
                "       [--password-stdin]",
    .about = "Edit a users file. add and rotate print a new API token once; the file keeps\n"
             "only hashes. Send SIGHUP to strata-router and strata-node to reload it.\n\n",
    .footer = "\nEvery command that talks to a router also takes --token TOKEN (env\n"
              "STRATA_TOKEN) or --user NAME (password from env STRATA_PASSWORD, else asked).\n",
    .help_col = 22,
    .min_args = 1,
    .max_args = 2,
    .too_many = "too many arguments: one action and at most one NAME",
    .opts = USER_OPTS,
    .opts_size = sizeof(user_opts_t),
    .defaults = &USER_DEFAULTS,
    .run = run_user,
};
