/*
 * fuzz_driver — a stand-in for libFuzzer's main() in ordinary builds.
 *
 * Runs LLVMFuzzerTestOneInput over N pseudo-random inputs (deterministic
 * seed, mixed lengths, byte patterns biased toward small values) and over
 * any files named on the command line. Real fuzzing: build with
 * -DSTRATA_FUZZ=ON (clang) and run the target with libFuzzer flags.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

int main(int argc, char **argv)
{
    long iters = 10000;
    int files = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        long v = strtol(argv[i], &end, 10);
        if (*end == '\0') {
            iters = v;
            continue;
        }
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
        files++;
    }
    uint8_t *buf = malloc(65536);
    for (long it = 0; it < iters; it++) {
        size_t n = (size_t)(rnd() % 4 == 0 ? rnd() % 65536 : rnd() % 256);
        unsigned mode = (unsigned)(rnd() % 3);
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rnd();
            buf[i] = mode == 0 ? (uint8_t)r : mode == 1 ? (uint8_t)(r % 4) : (uint8_t)(r % 128);
        }
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
    }
    free(buf);
    printf("fuzz driver: %d files, %ld random inputs, no crash\n", files, iters);
    return 0;
}
