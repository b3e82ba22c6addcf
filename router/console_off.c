/*
 * console_off — the empty asset table of a router built with
 * STRATA_CONSOLE=OFF (no npm at build time, minimal images): `/` then
 * answers a short text page saying so (router_console.c).
 */
#include "console_assets.h"

const console_asset_t console_assets[1] = {{0}};
const size_t console_nassets = 0;
