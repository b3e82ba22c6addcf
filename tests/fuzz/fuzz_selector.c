/* Fuzz target: the series selector parser must never crash or accept invalid UTF-8. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "selector.h"
#include "st_labels.h"
#include "st_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    selector_t sel;
    char err[256];
    if (selector_parse((const char *)data, size, &sel, err, sizeof err) == 0) {
        if (sel.n == 0 || sel.n > SELECTOR_MAX_MATCHERS)
            abort();
        for (size_t i = 0; i < sel.n; i++) {
            if (!st_utf8_valid(sel.m[i].value, strlen(sel.m[i].value)) ||
                (unsigned)sel.m[i].type > ST_MATCH_NRE)
                abort();
        }
        selector_free(&sel);
    }
    return 0;
}
