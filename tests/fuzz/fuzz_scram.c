/* Fuzz target: the SCRAM-SHA-256 server side (scram.h) on any client
 * messages: the input split at its first NUL into client-first and
 * client-final; never crashes, never overruns, and accepts no proof made
 * without the key. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size;
    const char *m2 = nul ? (const char *)nul + 1 : "";
    size_t n2 = nul ? size - n1 - 1 : 0;
    scram_first_t f;
    scram_final_t g;
    scram_parse_first((const char *)data, n1, &f);
    scram_parse_final(m2, n2, &g);
    static scram_server_t s;
    static const uint8_t salt[16] = {1, 2, 3}, rnd[SCRAM_NONCE_BYTES] = {4, 5, 6};
    static const uint8_t key[SCRAM_KEY_LEN] = {7, 8, 9};
    if (scram_server_first(&s, (const char *)data, n1, salt, sizeof salt, 4096, rnd) == 0) {
        if (s.first_len != strlen(s.first) || s.nonce_len > sizeof s.nonce)
            abort();
        char out[128];
        if (scram_server_final(&s, m2, n2, key, out, sizeof out) == 0)
            abort(); /* a proof that matches a key it never saw */
        scram_server_final(&s, m2, n2, NULL, out, sizeof out);
    }
    return 0;
}
