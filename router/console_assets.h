/*
 * console_assets — the web console's files, embedded in strata-router.
 *
 * The table is generated at build time (console_embed.c writes
 * console_assets.c in the build directory from the esbuild output of
 * router/console/); with STRATA_CONSOLE=OFF console_off.c defines it
 * empty. Each file is held twice, as is and gzip-compressed (level 9,
 * done once at build time), with a strong ETag derived from its content,
 * so the router answers with no work per request (router_console.c).
 */
#ifndef CONSOLE_ASSETS_H
#define CONSOLE_ASSETS_H

#include <stddef.h>

typedef struct console_asset {
    const char *name;         /* file name in the bundle: "index.html", "app-5KQ2.js" */
    const char *content_type; /* "text/html; charset=utf-8", ... */
    const unsigned char *data;
    size_t len;
    const unsigned char *gz; /* the same bytes gzip-compressed */
    size_t gz_len;
    const char *etag; /* "\"<16 hex digits>\"" */
    int immutable;    /* its name holds a content hash: cache for a year */
} console_asset_t;

extern const console_asset_t console_assets[];
extern const size_t console_nassets; /* 0: the console was not built */

#endif
